/*
 * net_internal.h - the state of one socket and the helpers shared by the
 * files of src/net.
 *
 * A socket's state (net_sock) hangs off a slot of the runtime's I/O table
 * (runtime/io.h) and is guarded by that slot's mutex: every function here
 * named *_locked runs with it held. The state is freed only after the
 * slot is closed and unlocked, so whoever holds the lock may use it.
 */
#ifndef KEEL_NET_INTERNAL_H
#define KEEL_NET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "keel/net.h"

/* Flags of net_sock. */
#define NS_RREADY 0x01u  /* may have data (or connections) to read */
#define NS_EOF 0x02u     /* the peer closed or reset (read side done) */
#define NS_BROKEN 0x04u  /* writing failed (EPIPE, reset): sends fail */
#define NS_SHUT_WR 0x08u /* write side shut (or shutting once flushed) */
#define NS_LISTEN 0x10u  /* a listening socket */
#define NS_CLOSING 0x20u /* closed by its user, flushing its queue */
#define NS_DEAD 0x40u    /* closed: the slot is no longer its */
#define NS_RDHUP 0x80u   /* an event reported the peer's FIN or an error */

/* Waiter entries: a pid term with its kind in the two top bits (local pid
 * terms never use them). */
#define NW_KIND_SHIFT 62
#define NW_FIBER UINT64_C(0)  /* a fiber blocked: gets the wake atom */
#define NW_NOTIFY UINT64_C(1) /* writers: gets {tcp_writable, S} */
#define NW_ASYNC UINT64_C(2)  /* acceptors: accept on its behalf */
#define NW_PID_MASK ((UINT64_C(1) << NW_KIND_SHIFT) - 1)

typedef struct net_wlist {
  uint64_t *v;
  uint32_t n, cap;
} net_wlist;

/* A chunk of the output queue. */
typedef struct net_chunk {
  struct net_chunk *next;
  size_t len;
  uint8_t data[];
} net_chunk;

/* Appends a copy of p[0..len) as a new chunk to the list *head..*tail.
 * KEEL_OK or KEEL_ENOMEM (the list is unchanged). */
int keel__net_chunk_append(net_chunk **head, net_chunk **tail, const uint8_t *p,
                           size_t len);

struct net_tls; /* tls.c: the TLS session of a TLS socket */

/* Kinds of socket. */
#define NK_TCP 0
#define NK_UDP 1

typedef struct net_sock {
  uint64_t h;             /* handle (the keel_socket) */
  struct net_tls *tls;    /* NULL: plain TCP */
  keel_term owner;        /* local pid term, or 0: none */
  struct net_sock *onext; /* chain of the owner's bucket */
  uint8_t flags;
  uint8_t active; /* keel_net_active */
  int16_t active_n;
  uint8_t kind;            /* NK_TCP, NK_UDP */
  uint8_t packet;          /* keel_net_packet: framing of recv and send */
  bool send_timeout_close; /* close when a send times out */
  uint32_t packet_max;     /* largest frame accepted (bytes) */
  uint32_t line_len;       /* line mode: longer lines come in pieces; 0 */
  uint8_t line_delim;      /* line mode: the byte that ends a line */
  uint8_t http_state;      /* http packets: 0 a start line next, 1 headers */
  bool linger_on;          /* SO_LINGER set {true, linger_secs} */
  uint16_t linger_secs;
  int64_t send_timeout; /* ms a send may wait; KEEL_INFINITY: forever */
  uint8_t *rx;          /* framing: bytes read, not yet delivered */
  size_t rxlen, rxcap;
  uint32_t low, high; /* watermarks */
  net_wlist rw, ww;   /* waiting to read/accept, to write */
  net_chunk *qhead, *qtail;
  size_t qoff; /* bytes of qhead already written */
  size_t qbytes;
} net_sock;

/* Atoms of the messages. */
keel_term keel__net_wake_atom(void);

/* sock.c */
int keel__net_check(void); /* KEEL_OK, KEEL_ESTATE, KEEL_EUNSUPPORTED */
/* Creates the state of a registered socket for fd, owned by owner (0:
 * none), stores its handle. On error closes fd. */
int keel__net_sock_new(int fd, bool listen, keel_term owner, keel_socket *out);
/* The same for a socket of a given kind (NK_TCP, NK_UDP). */
int keel__net_sock_new_kind(int fd, bool listen, uint8_t kind, keel_term owner,
                            keel_socket *out);
/* Locks s's slot; NULL when stale or closed. */
net_sock *keel__net_lock(keel_socket h);
void keel__net_unlock(net_sock *s);
/* Closes a locked socket now: wakes its waiters, drops its queue,
 * forgets its owner and closes the descriptor. The caller unlocks, then
 * frees with keel__net_sock_free (except in the poll thread's event
 * function, where the runtime frees it). */
void keel__net_close_now_locked(net_sock *s);
/* The close of gen_tcp:close and of an owner's death: as close_now, but a
 * socket whose output queue is not empty lingers (its handle is already
 * stale for every caller) until the poll thread has flushed the queue or
 * writing fails, then closes. Returns true when the socket is closed (the
 * caller frees it), false when it lingers (the poll thread frees it). */
bool keel__net_close_locked(net_sock *s);
void keel__net_sock_free(void *obj);
/* Sets the owner of a locked socket (0: none) and arms the exit hook.
 * Errors: KEEL_ENOPROC (owner dead: the owner is then none),
 * KEEL_ESYSLIMIT. */
int keel__net_set_owner_locked(net_sock *s, keel_term owner);
/* The calling process's pid, or 0 on a thread. */
keel_term keel__net_caller(void);
/* Waiter lists. */
int keel__net_wl_add(net_wlist *l, uint64_t e);
bool keel__net_wl_remove(net_wlist *l, uint64_t e);
/* Wakes (and empties) a list; listen: the socket's handle for messages. */
void keel__net_wake_all(net_sock *s, net_wlist *l);
/* Reads and delivers active messages while the mode allows and data is
 * there; returns true when it closed the socket (EOF or error). */
bool keel__net_deliver_active_locked(net_sock *s);
/* One message delivered: counts it against the active mode (once turns
 * passive; N counts down and sends {tcp_passive, S} at 0). */
void keel__net_count_active(net_sock *s);
/* The calling thread's read buffer of KEEL__NET_RBUF bytes; NULL when out
 * of memory. */
#define KEEL__NET_RBUF (64u * 1024u)
uint8_t *keel__net_rbuf(void);
/* Writes what the queue holds; wakes writers at the low watermark. */
void keel__net_flush_locked(net_sock *s);
/* Serves the queued asynchronous accepts of a listening socket. */
void keel__net_serve_async_locked(net_sock *s);
/* Blocks the caller until s (handle h, locked on entry, unlocked on
 * return) may be ready to read (write false) or write, or until the
 * monotonic deadline (ns, UINT64_MAX: none). KEEL_OK (retry),
 * KEEL_ETIMEDOUT, KEEL_ESTATE (a handler process), KEEL_ENOMEM. */
int keel__net_wait(net_sock *s, bool write, uint64_t deadline);
/* Deadline of a timeout in ms (KEEL_INFINITY: UINT64_MAX). */
uint64_t keel__net_deadline(int64_t timeout_ms);
/* Sends {Tag, Port} or {Tag, Port, Extra} (extra KEEL_NONE: none). */
void keel__net_notify(keel_term to, const char *tag, keel_socket s,
                      keel_term extra);
/* The errno atom of e (econnreset, ...). */
keel_term keel__net_errno_atom(int e);
/* The tag of a message about s: tcp_tag ("tcp", "tcp_closed", ...) as is,
 * or its ssl_ counterpart on a TLS socket. */
const char *keel__net_tag(const net_sock *s, const char *tcp_tag);

/* tcp.c: writes bytes to the descriptor as far as the kernel takes them,
 * queues the rest (no watermark check). KEEL_OK, KEEL_ECLOSED (writing
 * failed: the socket is marked broken), KEEL_ENOMEM. */
int keel__net_send_raw_locked(net_sock *s, const uint8_t *p, size_t len);
/* packet.c: framing (all with the socket locked). The next complete
 * frame in s->rx: 1 with its header length and payload length, 0 when
 * more bytes are needed, KEEL_ELIMIT when the frame is over packet_max.
 * In raw mode the buffered bytes (if any) are one frame. */
int keel__net_frame_next(const net_sock *s, size_t *hdr, size_t *len);
/* Drops n bytes from the head of s->rx. */
void keel__net_rx_consume(net_sock *s, size_t n);
/* Appends bytes to s->rx. KEEL_OK or KEEL_ENOMEM. */
int keel__net_rx_append(net_sock *s, const uint8_t *p, size_t n);
/* Reads plain bytes (TCP or TLS): > 0 bytes, 0 none for now (NS_RREADY
 * cleared), KEEL_ECLOSED (EOF: NS_EOF set), or an error (NS_EOF set;
 * *err the errno of a TCP failure, 0 for TLS: see keel__tls_reason). */
int64_t keel__net_read_some_locked(net_sock *s, uint8_t *buf, size_t cap,
                                   int *err);
/* Passive recv of a framing socket (or one holding buffered bytes): the
 * frame's length, KEEL_ETIMEDOUT when none is complete yet (wait and
 * retry), KEEL_ENOSPC (frame longer than cap: it stays), KEEL_ELIMIT,
 * KEEL_ECLOSED, KEEL_ENOMEM or a TLS error. */
int64_t keel__net_recv_framed_locked(net_sock *s, uint8_t *buf, size_t cap);
/* Sends data framed as s->packet says (a 1, 2 or 4-byte length first).
 * KEEL_OK, KEEL_ELIMIT (longer than the header can tell), KEEL_ECLOSED,
 * KEEL_ENOMEM. */
int keel__net_send_framed_locked(net_sock *s, const uint8_t *p, size_t len);

/* http_packet.c: inet's http packets. The length of the packet at
 * p[0..n) (a line; in the headers, with the lines folded into it): > 0,
 * 0 when more bytes are needed, KEEL_ELIMIT when over max. */
int64_t keel__http_packet_len(const uint8_t *p, size_t n, bool headers,
                              size_t max);
/* Decodes one packet in h (see http_packet.c for the terms) and advances
 * *state (0: a start line is next, 1: headers). KEEL_NONE when out of
 * memory (*state unchanged). */
keel_term keel__http_packet_decode(keel_heap *h, const uint8_t *p, size_t len,
                                   uint8_t *state, bool bin);
/* Advances *state past one packet without keeping its term. */
void keel__http_packet_step(const uint8_t *p, size_t len, uint8_t *state);
/* packet.c: whether the socket's packet type is an http one, and
 * whether it decodes to binaries. */
bool keel__net_packet_http(const net_sock *s);
bool keel__net_packet_http_bin(const net_sock *s);
/* packet.c: a frame of s->rx[0..len) is being taken: advances the http
 * state of an http socket. */
void keel__net_frame_taken(net_sock *s, size_t len);
/* packet.c: passive recv of an http socket: the next packet decoded in
 * hp into *out (KEEL_OK), or as keel__net_recv_framed_locked. */
int keel__net_recv_http_locked(net_sock *s, keel_heap *hp, keel_term *out);

/* udp.c: active delivery of datagrams ({udp, S, Ip, Port, Data}) while
 * the mode allows (keel__net_deliver_active_locked calls it). */
void keel__udp_deliver_active_locked(net_sock *s);
/* tcp.c: a numeric address text and port as a sockaddr. KEEL_OK or
 * KEEL_EINVAL. */
int keel__net_parse_addr(const char *ip, uint16_t port,
                         struct sockaddr_storage *sa, socklen_t *len);
struct addrinfo;
/* tcp.c: the addresses of a host name (getaddrinfo with the family and
 * socket type given), never resolved on a scheduler thread: a fiber has
 * it done on the dirty I/O pool, a thread does it itself, a handler
 * process cannot wait (KEEL_ESTATE). KEEL_OK (free *out with
 * freeaddrinfo), KEEL_ENOENT, KEEL_ENOMEM, KEEL_EIO, KEEL_ESTATE. */
int keel__net_resolve(const char *host, uint16_t port, int family, int socktype,
                      struct addrinfo **out);
/* tcp.c: whether name can be a host name (letters, digits, '-', '_',
 * '.'; at most 253 bytes): anything else is refused without a lookup. */
bool keel__net_host_name_ok(const char *name);
/* tcp.c: the KEEL_E* code of an errno value. */
int keel__net_map_errno(int e);
/* Whether the caller may wait timeout_ms (KEEL_OK, KEEL_EINVAL,
 * KEEL_ESTATE: a handler process with timeout != 0). */
int keel__net_may_wait(int64_t timeout_ms);

/* tls.c: the TLS session of a socket (all with the socket locked). */
void keel__tls_free(struct net_tls *t);
/* Sends plaintext: encrypted and written/queued, or kept until the
 * handshake is done. KEEL_OK, KEEL_ECLOSED, KEEL_ENOMEM. */
int keel__tls_send_locked(net_sock *s, const uint8_t *p, size_t len);
/* Reads plaintext (advancing the handshake): > 0 bytes; 0 none for now
 * (NS_RREADY cleared); KEEL_ECLOSED (the peer closed: close_notify or
 * EOF); KEEL_ETLS / KEEL_EVERIFY / KEEL_EIO (the session failed; its
 * reason is keel__tls_reason's). */
int64_t keel__tls_read_locked(net_sock *s, uint8_t *buf, size_t cap);
/* The Reason of {ssl_error, S, Reason} for the failure of s, built in h. */
keel_term keel__tls_reason(keel_heap *h, const net_sock *s);
/* Sends close_notify once (a session whose handshake is done and that
 * has not failed), before a close or a write shutdown. */
void keel__tls_close_notify_locked(net_sock *s);

#endif /* KEEL_NET_INTERNAL_H */
