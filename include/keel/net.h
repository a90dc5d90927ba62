/*
 * keel/net.h - TCP and UDP sockets modelled on gen_tcp, gen_udp and inet
 * (layer: net). UDP sockets have their own section below; what follows
 * holds for both unless it says TCP.
 *
 * A socket is a keel_socket: a 64-bit handle naming a slot of the node's
 * I/O table and its generation. Once a socket is closed its handle names
 * nothing (a later socket reusing the slot has another generation), so
 * every call on a stale handle fails with KEEL_ECLOSED and no poller event
 * for the old descriptor ever reaches the new socket. In messages a socket
 * appears as a port term (keel_net_port) whose id is that handle; convert
 * with keel_net_socket_of.
 *
 * Owner (controlling process): the process that created the socket
 * (listen, connect, accept), or none when it was created from a thread
 * that is not a process. Only the owner may recv, set the active mode or
 * hand the socket over (keel_net_controlling_process); anyone may send,
 * close, shut down and read the addresses. When the owner dies the socket
 * is closed (the peer sees EOF), as in Erlang.
 *
 * Blocking: calls that wait (accept, connect, recv, send over the high
 * watermark) block only the calling fiber process (keel_spawn_fiber); its
 * scheduler runs other processes and no thread waits on the socket (the
 * node's poll thread watches the descriptor). From a thread that is not a
 * process they block that thread in poll(2). From a handler process they
 * do not block: timeout 0 is the only accepted timeout there (anything
 * else is KEEL_ESTATE); use the active mode or keel_net_accept_async.
 *
 * Active mode messages (sent to the owner), exactly as Erlang's:
 *   {tcp, Sock, Data}            Data a binary
 *   {tcp_closed, Sock}           the peer closed; the socket is closed
 *   {tcp_error, Sock, Reason}    Reason an errno atom (econnreset...);
 *                                followed by {tcp_closed, Sock}
 *   {tcp_passive, Sock}          an active N count reached 0
 * and from Keel's own additions:
 *   {tcp_accept, Listen, Sock}   keel_net_accept_async succeeded; the
 *                                new socket is owned by the receiver
 *   {tcp_accept_error, Listen, Reason}
 *   {tcp_writable, Sock}         a send refused with KEEL_EBUSY may be
 *                                retried (queue at or below low watermark)
 *   {tcp_handoff, Sock}          acceptor pool: the socket is now yours
 *
 * TLS: keel/tls.h turns a connected socket into a TLS socket; the calls
 * here then carry plaintext (send encrypts, recv decrypts and may also
 * fail with KEEL_ETLS or KEEL_EVERIFY, close sends close_notify) and the
 * active messages are ssl's ({ssl, S, Data}, {ssl_closed, S}, ...).
 *
 * Simulation: a simulated node (keel/sim.h) has no poller and no real I/O;
 * every call here returns KEEL_EUNSUPPORTED on it.
 *
 * Thread-safety: every function may be called from any process or thread
 * concurrently; each socket has its own lock, held only for the duration
 * of one non-blocking step.
 */
#ifndef KEEL_NET_H
#define KEEL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A socket handle; 0 is never a socket. */
typedef uint64_t keel_socket;
#define KEEL_SOCKET_NONE ((keel_socket)0)

/* Default output queue watermarks (bytes), see keel_net_send. */
#define KEEL_NET_HIGH_WATERMARK_DEFAULT ((size_t)64 * 1024)
#define KEEL_NET_LOW_WATERMARK_DEFAULT ((size_t)32 * 1024)

/* An address: a numeric IPv4 or IPv6 text and a port. */
typedef struct keel_net_addr {
  char ip[48];
  uint16_t port;
} keel_net_addr;

/* Options of keel_net_listen. Zero-initialise, then set what you need. */
typedef struct keel_net_listen_opts {
  const char *ip; /* numeric address to bind; NULL = "127.0.0.1" */
  uint16_t port;  /* 0 = an ephemeral port (read it with sockname) */
  int backlog;    /* 0 = 1024 (capped by net.core.somaxconn) */
  bool reuseaddr; /* SO_REUSEADDR */
} keel_net_listen_opts;

/* Opens a listening TCP socket (gen_tcp:listen, active false). The owner
 * is the calling process, or none. On success stores it in *out.
 * Errors: KEEL_EINVAL (opts or out NULL, ip not a numeric address),
 * KEEL_EADDRINUSE, KEEL_ESTATE (no node), KEEL_EUNSUPPORTED (simulated
 * node), KEEL_ESYSLIMIT (out of descriptors), KEEL_ENOMEM, KEEL_EIO. */
int keel_net_listen(const keel_net_listen_opts *opts, keel_socket *out);

/* Accepts a connection on a listening socket (gen_tcp:accept), waiting at
 * most timeout_ms (0: only one already pending; KEEL_INFINITY: forever).
 * Many processes may wait on one listening socket at once. The new socket
 * is passive and owned by the caller. Errors: KEEL_ETIMEDOUT, KEEL_ECLOSED
 * (listen is closed, also while waiting), KEEL_EINVAL (not a listening
 * socket, out NULL), KEEL_ESTATE (a handler process with timeout != 0),
 * KEEL_ESYSLIMIT (out of descriptors), KEEL_ENOMEM, KEEL_EUNSUPPORTED. */
int keel_net_accept(keel_socket listen, int64_t timeout_ms, keel_socket *out);

/* Asynchronous accept for handler processes: the next connection on
 * listen becomes a socket owned by `dest` (a local pid), which receives
 * {tcp_accept, Listen, Sock} (or {tcp_accept_error, Listen, Reason}).
 * One connection per call; calls queue up. Errors: KEEL_ECLOSED,
 * KEEL_EINVAL (not a listening socket), KEEL_EBADARG (dest not a local
 * pid), KEEL_ENOMEM, KEEL_EUNSUPPORTED. */
int keel_net_accept_async(keel_socket listen, keel_term dest);

/* Connects to ip:port (gen_tcp:connect), waiting at most timeout_ms. ip
 * is a numeric IPv4/IPv6 address or a host name ("localhost"): a name is
 * resolved with getaddrinfo, never on a scheduler thread (a fiber has it
 * run on the node's dirty I/O pool and is suspended meanwhile; a thread
 * calls it itself; a handler process cannot wait for it: KEEL_ESTATE),
 * and its addresses are tried in getaddrinfo's order until one connects
 * (the timeout covers them all). The new socket is passive and owned by
 * the caller. Errors: KEEL_ETIMEDOUT, KEEL_ECONNREFUSED (the last address
 * tried refused), KEEL_ENOENT (the name does not resolve), KEEL_EINVAL
 * (ip NULL, out NULL, ip neither a numeric address nor a host name:
 * empty, over 253 bytes, a character other than letters, digits, '-',
 * '_', '.'), KEEL_ESTATE (handler process with timeout != 0, or with a
 * host name), KEEL_ESYSLIMIT, KEEL_EIO, KEEL_EUNSUPPORTED. */
int keel_net_connect(const char *ip, uint16_t port, int64_t timeout_ms,
                     keel_socket *out);

/* Sends len bytes (gen_tcp:send). The bytes are written at once as far as
 * the kernel buffer takes them; the rest is copied to the socket's output
 * queue, which the poll thread flushes when the socket becomes writable.
 * Bytes are sent in call order. When the queue already holds more than
 * the high watermark:
 *   - a fiber process blocks until it is back at or below the low
 *     watermark (inet's busy port), then queues its bytes;
 *   - a handler process or a thread gets KEEL_EBUSY and nothing is
 *     queued; a process later receives {tcp_writable, Sock} once the queue
 *     is at or below the low watermark.
 * One call may take the queue above the high watermark (it is a soft
 * limit, as inet's). KEEL_OK means every byte was written or queued, not
 * that the peer got it. Errors: KEEL_ECLOSED (closed, stale handle, write
 * side shut down, or the connection was reset), KEEL_EBUSY, KEEL_EINVAL
 * (data NULL with len > 0, a listening socket), KEEL_ENOMEM,
 * KEEL_EUNSUPPORTED. */
int keel_net_send(keel_socket s, const void *data, size_t len);

/* keel_net_send that never waits and registers nobody: over the high
 * watermark it returns KEEL_EBUSY (nothing queued, no {tcp_writable, S}
 * for the caller) whatever the caller is (a fiber, or a thread with a
 * send_timeout, included). For writers
 * that push to sockets they do not own (a broadcast writing to many
 * connections). Errors as keel_net_send. */
int keel_net_try_send(keel_socket s, const void *data, size_t len);

/* Receives up to cap bytes into buf (gen_tcp:recv(S, 0) in passive mode),
 * waiting at most timeout_ms for at least one. Returns the number of
 * bytes (> 0). Owner only, passive sockets only. Errors: KEEL_ECLOSED
 * (the peer closed or reset the connection, or the socket is closed),
 * KEEL_ETIMEDOUT, KEEL_ENOTOWNER, KEEL_EINVAL (buf NULL, cap 0, active
 * socket, listening socket), KEEL_ESTATE (handler process, timeout != 0),
 * KEEL_EUNSUPPORTED. */
int64_t keel_net_recv(keel_socket s, void *buf, size_t cap, int64_t timeout_ms);

/* Closes the socket (gen_tcp:close): the handle is stale at once for
 * every caller, every process waiting on it wakes with KEEL_ECLOSED. Bytes
 * still in the output queue are not dropped: the poll thread flushes them
 * in the background (until done, or writing fails), then closes the
 * descriptor. The same happens when the owner dies. Anyone may close.
 * Errors: KEEL_ECLOSED (already closed or stale), KEEL_EUNSUPPORTED. */
int keel_net_close(keel_socket s);

/* Shuts down one or both directions (gen_tcp:shutdown). A write shutdown
 * is done once the output queue is flushed. */
typedef enum keel_net_how {
  KEEL_NET_SHUT_READ = 0,
  KEEL_NET_SHUT_WRITE = 1,
  KEEL_NET_SHUT_READ_WRITE = 2
} keel_net_how;

/* Errors: KEEL_ECLOSED, KEEL_EINVAL (how out of range, listening socket),
 * KEEL_EUNSUPPORTED. */
int keel_net_shutdown(keel_socket s, keel_net_how how);

/* The peer's and the local address (inet:peername, inet:sockname).
 * Errors: KEEL_ECLOSED, KEEL_EINVAL (out NULL; peername of a listening
 * socket), KEEL_EIO (not connected), KEEL_EUNSUPPORTED. */
int keel_net_peername(keel_socket s, keel_net_addr *out);
int keel_net_sockname(keel_socket s, keel_net_addr *out);

/* Makes new_owner (a live local pid) the socket's owner
 * (gen_tcp:controlling_process). Only the current owner may call it (a
 * thread may when the socket has no owner). Active messages not yet sent
 * go to the new owner; those already delivered stay with the old one.
 * Errors: KEEL_ENOTOWNER, KEEL_ECLOSED, KEEL_ENOPROC (new_owner is dead),
 * KEEL_EBADARG (not a local pid), KEEL_ESYSLIMIT (no exit hook left),
 * KEEL_EUNSUPPORTED. */
int keel_net_controlling_process(keel_socket s, keel_term new_owner);

/* Active modes (inet:setopts(S, [{active, A}])). */
typedef enum keel_net_active {
  KEEL_NET_PASSIVE = 0, /* false: data is read with keel_net_recv */
  KEEL_NET_ONCE = 1,    /* once: one message, then passive */
  KEEL_NET_ACTIVE = 2,  /* true: every chunk as a message, no flow control */
  KEEL_NET_ACTIVE_N = 3 /* N: n is added to the count (as Erlang's, the
                           sum is capped at 32767); when it reaches 0 the
                           socket turns passive and {tcp_passive, Sock} is
                           sent (also at once when the sum is <= 0) */
} keel_net_active;

/* Sets the active mode; n is used by KEEL_NET_ACTIVE_N only. Data
 * already readable is delivered at once. Owner only (a socket without an
 * owner has nobody to deliver to: KEEL_ENOTOWNER). Errors:
 * KEEL_ENOTOWNER, KEEL_ECLOSED, KEEL_EINVAL (mode out of range, n outside
 * -32768..32767, a listening socket), KEEL_EUNSUPPORTED. */
int keel_net_set_active(keel_socket s, keel_net_active mode, int32_t n);

/* Sets TCP_NODELAY. Errors: KEEL_ECLOSED, KEEL_EINVAL (listening socket),
 * KEEL_EUNSUPPORTED. */
int keel_net_set_nodelay(keel_socket s, bool on);

/* Sets the output queue watermarks (inet's high_watermark and
 * low_watermark), low <= high, high > 0. Errors: KEEL_ECLOSED,
 * KEEL_EINVAL, KEEL_EUNSUPPORTED. */
int keel_net_set_watermarks(keel_socket s, size_t low, size_t high);

/* Framing of a TCP socket's data (inet's packet option). */
typedef enum keel_net_packet {
  KEEL_NET_PACKET_RAW = 0,  /* {packet, raw}: a byte stream (the default) */
  KEEL_NET_PACKET_1 = 1,    /* {packet, 1}: a 1-byte big-endian length */
  KEEL_NET_PACKET_2 = 2,    /* {packet, 2}: a 2-byte big-endian length */
  KEEL_NET_PACKET_4 = 4,    /* {packet, 4}: a 4-byte big-endian length */
  KEEL_NET_PACKET_LINE = 5, /* {packet, line}: up to and with each '\n' */
  /* {packet, http | http_bin | httph | httph_bin}: HTTP/1.x heads, one
   * line a packet (a header with its folded lines), decoded into the
   * terms of erlang:decode_packet: see keel_net_recv_http. */
  KEEL_NET_PACKET_HTTP = 6,     /* strings as lists of bytes */
  KEEL_NET_PACKET_HTTP_BIN = 7, /* strings as binaries */
  KEEL_NET_PACKET_HTTPH = 8,    /* headers only (no start line first) */
  KEEL_NET_PACKET_HTTPH_BIN = 9
} keel_net_packet;

/* The largest frame a framing socket accepts when max_size is 0. */
#define KEEL_NET_PACKET_MAX_DEFAULT ((size_t)64 * 1024 * 1024)

/* Sets the framing of s (inet:setopts(S, [{packet, P}, {packet_size,
 * Max}])), for both directions:
 *   - keel_net_send prefixes each call's bytes with their length as a
 *     1, 2 or 4-byte big-endian header (so one send is one frame; a
 *     zero-length send is an empty frame); line mode sends as is;
 *   - keel_net_recv returns exactly one frame's payload (without the
 *     header; a line with its '\n'), possibly 0 bytes, and active modes
 *     deliver one frame per {tcp, S, Data} message, counted one each
 *     against once/N. Bytes read that do not make a whole frame yet are
 *     kept by the socket; a partial frame at EOF is dropped.
 * max_size bounds a frame's payload (a line's length); 0 means
 * KEEL_NET_PACKET_MAX_DEFAULT. A header announcing more (or a line
 * growing past it without its '\n') makes recv fail with KEEL_ELIMIT
 * (every later recv too: the stream cannot be resynchronised), and an
 * active socket sends {tcp_error, S, emsgsize} then {tcp_closed, S} and
 * closes. Works on TLS sockets (framing of the plaintext). Changing the
 * framing affects the bytes not delivered yet (an http type starts at a
 * start line). The http types frame received bytes only (sends go as
 * they are): see keel_net_recv_http. Errors: KEEL_ECLOSED, KEEL_EINVAL
 * (type out of range, max_size over 4 GiB - 1, a listening or UDP
 * socket), KEEL_EUNSUPPORTED. */
int keel_net_set_packet(keel_socket s, keel_net_packet type, size_t max_size);

/* Receives the next HTTP packet of a socket in an http packet mode
 * (gen_tcp:recv(S, 0) with {packet, http | http_bin | httph |
 * httph_bin}), decoded in heap, waiting at most timeout_ms (blocking rules
 * as keel_net_recv). The packets and terms are erlang:decode_packet's:
 *   {http_request, Method, Uri, {Major, Minor}}  (HTTP/0.9: {0, 9})
 *   {http_response, {Major, Minor}, Code, Reason}
 *   {http_header, Index, Field, UnmodifiedField, Value}
 *   http_eoh                         (the empty line ending the head)
 *   {http_error, Line}               (a line that does not parse, CRLF
 *                                     included; the stream goes on)
 * Strings are lists of bytes (http, httph) or binaries (_bin). Method is
 * an atom for OPTIONS, GET, HEAD, POST, PUT, DELETE, TRACE (case
 * sensitive), else a string. Uri is '*', {abs_path, Path},
 * {absoluteURI, http | https, Host, Port | undefined, Path},
 * {scheme, Scheme, Rest} or a string. Field is an atom for the 52 header
 * names inet knows ('Content-Length', ...; Index is its 1-based place in
 * inet's table), else a string with its case normalised as inet does
 * (Content-length -> Content-Length; Index 0); a name over 50 bytes is
 * kept as it is. UnmodifiedField is the name as received, Value the
 * value after the blanks that follow the colon (folded lines stay in it,
 * CRLF and all). A line over the packet size fails as other frames do
 * (KEEL_ELIMIT). The socket starts with a start line (http, http_bin) and
 * after http_eoh expects one again; switch to KEEL_NET_PACKET_RAW (or a
 * length framing) to read a body: the bytes after the head stay
 * buffered. keel_net_recv on such a socket returns a packet's raw bytes
 * (and advances the same way); active modes send {http, S, Packet}
 * ({ssl, S, Packet} on TLS). Owner only. Errors: those of keel_net_recv,
 * KEEL_EINVAL (heap or out NULL, not an http packet mode), KEEL_ENOMEM (the
 * packet stays). */
int keel_net_recv_http(keel_socket s, keel_heap *heap, int64_t timeout_ms,
                       keel_term *out);

/* Decodes one HTTP packet from data[0..len) (erlang:decode_packet(Type,
 * Bin, [{packet_size, Max}]) for an http type): the packet's term in h
 * (see keel_net_recv_http; http and http_bin decode a start line,
 * httph and httph_bin a header or http_eoh) and its length in *used.
 * max 0: KEEL_NET_PACKET_MAX_DEFAULT. Errors: KEEL_ETRUNC (more bytes
 * are needed: decode_packet's {more, undefined}), KEEL_ELIMIT (the line
 * is longer than max), KEEL_EINVAL (a NULL argument, type not an http
 * type), KEEL_ENOMEM. Thread-safe (pure). */
int keel_net_decode_http(keel_heap *h, keel_net_packet type, const void *data,
                         size_t len, size_t max, size_t *used, keel_term *out);

/* Sets the line mode's options (inet's line_delimiter, and the
 * line_length of erlang:decode_packet): lines end with `delimiter`
 * ('\n' by default) and, when line_length is not 0 (the default: no
 * limit but the packet size), a longer line is delivered in pieces of
 * line_length bytes, the last piece ending with the delimiter, as
 * gen_tcp cuts a line at its receive buffer size. A piece is a frame as
 * any line (one recv, one active message). A line_length of the packet
 * size (max_size of keel_net_set_packet) or more has no effect: a line
 * over the packet size fails with KEEL_ELIMIT first. Applies to the
 * bytes not delivered yet; used in KEEL_NET_PACKET_LINE mode only.
 * Errors: KEEL_ECLOSED, KEEL_EINVAL (line_length over 4 GiB - 1, a
 * listening or UDP socket), KEEL_EUNSUPPORTED. */
int keel_net_set_line(keel_socket s, size_t line_length, uint8_t delimiter);

/* Sets the kernel's buffer sizes (inet's recbuf and sndbuf: SO_RCVBUF,
 * SO_SNDBUF); 0 leaves one unchanged. Linux doubles the value (its
 * bookkeeping) and caps it at net.core.rmem_max / wmem_max; read the
 * result with keel_net_getopts. On a listening socket the accepted
 * sockets inherit them (set recbuf before connections arrive for the TCP
 * window to use it). TCP and UDP sockets. Errors: KEEL_ECLOSED,
 * KEEL_EINVAL (a size over INT_MAX / 2), KEEL_EIO, KEEL_EUNSUPPORTED. */
int keel_net_set_buffers(keel_socket s, size_t recbuf, size_t sndbuf);

/* Sets inet's linger option {linger, {On, Secs}} (SO_LINGER) of a TCP
 * socket. {true, 0} makes keel_net_close (and the owner's death) abort
 * the connection: the output queue is dropped and the peer gets a reset
 * instead of a FIN. {true, Secs > 0} is kept for getopts and set in the
 * kernel, but keel_net_close still flushes the output queue in the
 * background as without it, and the kernel's linger is turned off right
 * before the descriptor is closed, so that no thread ever blocks in
 * close(2) (the kernel then sends what it holds in the background, as it
 * does when a linger timeout passes). {false, _} is the default.
 * Errors: KEEL_ECLOSED, KEEL_EINVAL (secs outside 0..65535, a UDP
 * socket), KEEL_EIO, KEEL_EUNSUPPORTED. */
int keel_net_set_linger(keel_socket s, bool on, int secs);

/* A socket's options (inet:getopts). */
typedef struct keel_net_opts {
  keel_net_active active;
  int32_t active_n;       /* KEEL_NET_ACTIVE_N: the count left */
  keel_net_packet packet; /* TCP; KEEL_NET_PACKET_RAW for UDP */
  size_t packet_size;     /* the frame limit in force */
  size_t line_length;     /* 0: none */
  uint8_t line_delimiter;
  bool nodelay;          /* TCP_NODELAY (TCP) */
  size_t recbuf, sndbuf; /* SO_RCVBUF, SO_SNDBUF, as the kernel says */
  bool linger_on;        /* SO_LINGER, as the kernel says (TCP) */
  int linger_secs;
  size_t low_watermark, high_watermark;
  int64_t send_timeout; /* KEEL_INFINITY: none */
  bool send_timeout_close;
  bool broadcast;      /* SO_BROADCAST (UDP) */
  int multicast_ttl;   /* IP_MULTICAST_TTL (UDP over IPv4) */
  bool multicast_loop; /* IP_MULTICAST_LOOP (UDP over IPv4) */
} keel_net_opts;

/* Which fields of a keel_net_opts keel_net_setopts applies. */
enum {
  KEEL_NET_OPT_ACTIVE = 1u << 0,       /* active, active_n */
  KEEL_NET_OPT_PACKET = 1u << 1,       /* packet, packet_size */
  KEEL_NET_OPT_LINE = 1u << 2,         /* line_length, line_delimiter */
  KEEL_NET_OPT_NODELAY = 1u << 3,      /* nodelay */
  KEEL_NET_OPT_BUFFERS = 1u << 4,      /* recbuf, sndbuf (0: unchanged) */
  KEEL_NET_OPT_LINGER = 1u << 5,       /* linger_on, linger_secs */
  KEEL_NET_OPT_WATERMARKS = 1u << 6,   /* low_watermark, high_watermark */
  KEEL_NET_OPT_SEND_TIMEOUT = 1u << 7, /* send_timeout, send_timeout_close */
  KEEL_NET_OPT_BROADCAST = 1u << 8,    /* broadcast (UDP) */
  KEEL_NET_OPT_MULTICAST_TTL = 1u << 9,
  KEEL_NET_OPT_MULTICAST_LOOP = 1u << 10
};

/* Sets several options at once (inet:setopts(S, [...])): the fields of
 * *opts named by the KEEL_NET_OPT_* bits of `which`, each through its
 * own setter above (keel_net_set_active last, so that data buffered
 * under the new framing is delivered under it). Not atomic: on an error
 * the options before it in the order of the bits stay set, those after
 * are not set. For active, active_n is the n of keel_net_set_active;
 * packet_size 0 is the default. Errors: those of the setters, KEEL_EINVAL
 * (opts NULL, an unknown bit). */
int keel_net_setopts(keel_socket s, const struct keel_net_opts *opts,
                     unsigned which);

/* Reads the options of s into *out; the kernel's ones with getsockopt(2)
 * (those that do not apply to the socket's kind are 0). Anyone may call
 * it. Errors: KEEL_ECLOSED, KEEL_EINVAL (out NULL), KEEL_EIO,
 * KEEL_EUNSUPPORTED. */
int keel_net_getopts(keel_socket s, keel_net_opts *out);

/* Sets inet's send_timeout and send_timeout_close: a keel_net_send that
 * has to wait for the output queue to drain below the low watermark
 * (the peer does not read) waits at most timeout_ms (KEEL_INFINITY, the
 * default: forever), then fails with KEEL_ETIMEDOUT, its bytes not
 * queued. With close_on_timeout the socket is then closed at once, its
 * queued bytes dropped (the handle is stale; the peer sees the close).
 * With a finite timeout a thread (not a process) waits too, instead of
 * getting KEEL_EBUSY; a handler process still gets KEEL_EBUSY (it never
 * waits). Errors: KEEL_ECLOSED, KEEL_EINVAL (timeout_ms < -1, listening
 * or UDP socket), KEEL_EUNSUPPORTED. */
int keel_net_set_send_timeout(keel_socket s, int64_t timeout_ms,
                              bool close_on_timeout);

/* Bytes in the output queue (written by send, not yet taken by the
 * kernel). Errors: KEEL_ECLOSED, KEEL_EUNSUPPORTED. */
int64_t keel_net_queued(keel_socket s);

/* The port term naming s, built in h (4 words); KEEL_NONE when h is full
 * or s is KEEL_SOCKET_NONE. Works for stale handles too. */
keel_term keel_net_port(keel_heap *h, keel_socket s);

/* The socket named by a port term of keel_net_port. Errors: KEEL_EBADARG
 * (not a port, or a port that is no socket of this node). Does not check
 * that the socket is still open. */
int keel_net_socket_of(keel_term port, keel_socket *out);

/* ------------------------------------------------------------------------ */
/* UDP (as gen_udp)                                                          */
/* ------------------------------------------------------------------------ */

/* A UDP socket is a keel_socket like a TCP one: generation-counted handle,
 * an owner (closed when the owner dies), keel_net_close,
 * keel_net_controlling_process, keel_net_sockname and keel_net_set_active
 * work on it as on TCP sockets (keel_net_peername after
 * keel_net_udp_connect). keel_net_send/recv/shutdown/set_nodelay/
 * set_linger and the packet options refuse it (KEEL_EINVAL). Active messages:
 *   {udp, Sock, Ip, PortNo, Data}  Ip {A,B,C,D} (or the eight 16-bit
 *                                  groups of an IPv6 address), PortNo an
 *                                  integer, Data a binary (may be empty)
 *   {udp_passive, Sock}            an active N count reached 0
 * A datagram is never split nor merged; there is no udp_closed message. */

/* Options of keel_net_udp_open. Zero-initialise, then set what you need. */
typedef struct keel_net_udp_opts {
  const char *ip; /* numeric address to bind; NULL = "127.0.0.1" */
  uint16_t port;  /* 0 = an ephemeral port (read it with sockname) */
  bool reuseaddr; /* SO_REUSEADDR */
} keel_net_udp_opts;

/* Opens a UDP socket bound to ip:port (gen_udp:open, active false), owned
 * by the calling process (or none from a thread). On success stores it in
 * *out. Errors: KEEL_EINVAL (opts or out NULL, ip not a numeric address),
 * KEEL_EADDRINUSE, KEEL_ESTATE (no node), KEEL_EUNSUPPORTED (simulated
 * node), KEEL_ESYSLIMIT, KEEL_ENOMEM, KEEL_EIO. */
int keel_net_udp_open(const keel_net_udp_opts *opts, keel_socket *out);

/* Sends one datagram of len bytes (0 allowed) from socket s
 * (gen_udp:send/4) to ip:port, or, with ip NULL, to the peer of a
 * connected socket (gen_udp:send/2 after keel_net_udp_connect). ip is a
 * numeric address or a host name ("localhost"), resolved as
 * keel_net_connect resolves it (never on a scheduler thread; a handler
 * process gets KEEL_ESTATE) to its first address of the socket's family.
 * Anyone may send. When the kernel's send buffer is full a fiber or a
 * thread waits for room; a handler process gets KEEL_EBUSY. Errors:
 * KEEL_ECLOSED (closed or stale), KEEL_EINVAL (ip neither numeric nor a
 * host name, data NULL with len > 0, not a UDP socket, address family
 * other than the socket's), KEEL_ENOENT (the name does not resolve),
 * KEEL_ESTATE (ip NULL on a socket that is not connected; a handler
 * process with a host name), KEEL_ECONNREFUSED (connected socket: an
 * ICMP port unreachable came back for an earlier datagram), KEEL_ELIMIT
 * (datagram too large: emsgsize), KEEL_EBUSY, KEEL_EUNSUPPORTED,
 * KEEL_EIO. */
int keel_net_udp_send(keel_socket s, const char *ip, uint16_t port,
                      const void *data, size_t len);

/* Connects a UDP socket to host:port (gen_udp:connect/3): sends with ip
 * NULL go there, and only datagrams from that address and port are
 * received (the kernel drops the others). host is numeric or a name,
 * resolved as in keel_net_udp_send. It may be called again to change the
 * peer. Owner only (a thread when the socket has no owner). Errors:
 * KEEL_ECLOSED, KEEL_ENOTOWNER, KEEL_EINVAL (host NULL or malformed, not
 * a UDP socket, another address family), KEEL_ENOENT, KEEL_ESTATE (a
 * handler process with a host name), KEEL_EUNSUPPORTED, KEEL_EIO. */
int keel_net_udp_connect(keel_socket s, const char *host, uint16_t port);

/* IPv4 multicast (inet's add_membership, drop_membership, multicast_ttl,
 * multicast_loop, multicast_if) and broadcast options of a UDP socket.
 * Addresses are numeric IPv4 texts; iface names the local interface by
 * its address (NULL: INADDR_ANY, the kernel chooses). To receive a
 * group's datagrams, bind the socket to the group address (or to
 * 0.0.0.0) with the group's port and join the group on an interface.
 * keel_net_getopts reads ttl, loop and broadcast back. Anyone may set
 * them. Errors: KEEL_ECLOSED, KEEL_EINVAL (group not a multicast
 * address, an address not numeric IPv4, ttl outside 0..255, not a UDP
 * socket or not IPv4), KEEL_ENOENT (no interface with that address;
 * dropping a group not joined), KEEL_EADDRINUSE (joining a group twice),
 * KEEL_EUNSUPPORTED, KEEL_EIO. */
int keel_net_udp_membership(keel_socket s, bool add, const char *group,
                            const char *iface);
int keel_net_udp_set_multicast_ttl(keel_socket s, int ttl);
int keel_net_udp_set_multicast_loop(keel_socket s, bool on);
int keel_net_udp_set_multicast_if(keel_socket s, const char *iface);
int keel_net_udp_set_broadcast(keel_socket s, bool on);

/* Receives one datagram into buf (gen_udp:recv in passive mode), waiting
 * at most timeout_ms for it (blocking rules as keel_net_recv). Returns its
 * length (>= 0; a datagram longer than cap is truncated to cap, the rest
 * is lost, as recv(2)) and, when from is not NULL, the sender's address.
 * Owner only, passive sockets only. Errors: KEEL_ETIMEDOUT, KEEL_ECLOSED,
 * KEEL_ENOTOWNER, KEEL_EINVAL (buf NULL with cap > 0, active socket, not a
 * UDP socket), KEEL_ESTATE (handler process, timeout != 0),
 * KEEL_EUNSUPPORTED. */
int64_t keel_net_udp_recv(keel_socket s, void *buf, size_t cap,
                          int64_t timeout_ms, keel_net_addr *from);

/* ------------------------------------------------------------------------ */
/* Acceptor pool (as ranch)                                                  */
/* ------------------------------------------------------------------------ */

/* Starts the process that will own a new connection: called in an
 * acceptor process (a fiber) with the accepted socket, still owned by the
 * acceptor. It spawns the connection process (handler or fiber) and
 * stores its pid in *pid; it must not use the socket for receiving. The
 * pool then makes that process the owner and sends it {tcp_handoff, Sock}:
 * it may use the socket from that message on. A negative return (or a
 * dead pid) closes the socket. */
typedef int (*keel_net_start_fn)(keel_socket sock, void *arg, keel_term *pid);

typedef struct keel_net_pool_opts {
  keel_net_listen_opts listen;
  unsigned acceptors; /* acceptor processes; 0 = 10 */
  keel_net_start_fn start;
  void *arg; /* passed to start; the caller's */
} keel_net_pool_opts;

typedef struct keel_net_pool keel_net_pool;

/* Opens the listening socket (owned by no process) and spawns the
 * acceptor fibers, each looping on keel_net_accept. *out is owned by the
 * caller until keel_net_pool_stop. Errors: those of keel_net_listen and
 * keel_spawn_fiber, KEEL_EINVAL (start NULL). */
int keel_net_pool_start(const keel_net_pool_opts *opts, keel_net_pool **out);

/* The listening socket of a pool (for sockname: the bound port). */
keel_socket keel_net_pool_socket(const keel_net_pool *pool);

/* Stops accepting: closes the listening socket, which ends the acceptors;
 * connections already handed over live on. Does not wait: the pool's
 * memory is freed by the last acceptor to end. NULL is a no-op. */
void keel_net_pool_stop(keel_net_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_NET_H */
