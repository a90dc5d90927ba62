/*
 * events.c - what readiness does to a socket: active delivery of the data
 * read, flushing the output queue, asynchronous accepts. These run with
 * the socket locked, on the poll thread or on the thread of a call that
 * re-arms the socket (set_active, accept_async).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/net_internal.h"
#include "runtime/io.h"

/* Bytes read at most per read in active mode. */
#define NET_RBUF KEEL__NET_RBUF

static pthread_key_t rbuf_key;
static pthread_once_t rbuf_once = PTHREAD_ONCE_INIT;

static void rbuf_init(void) {
  pthread_key_create(&rbuf_key, free);
}

/* The calling thread's read buffer (freed when the thread ends). */
uint8_t *keel__net_rbuf(void) {
  pthread_once(&rbuf_once, rbuf_init);
  uint8_t *b = pthread_getspecific(rbuf_key);
  if (b == NULL && (b = malloc(NET_RBUF)) != NULL)
    pthread_setspecific(rbuf_key, b);
  return b;
}

static keel_term atom_tcp, atom_ssl;
static pthread_once_t atom_once = PTHREAD_ONCE_INIT;

static void atoms_init(void) {
  atom_tcp = keel_atom("tcp");
  atom_ssl = keel_atom("ssl");
}

static keel_term build_data(keel_heap *h, net_sock *s, const uint8_t *data,
                            size_t len) {
  keel_term port = keel_net_port(h, s->h);
  keel_term bin = port != KEEL_NONE ? keel_binary(h, data, len) : KEEL_NONE;
  keel_term tag = s->tls != NULL ? atom_ssl : atom_tcp;
  return bin != KEEL_NONE ? keel_tuple(h, 3, tag, port, bin) : KEEL_NONE;
}

/* {tcp, S, Data} to the owner: built on the stack (a binary above
 * KEEL_HEAP_BIN_MAX bytes is counted, off the heap), copied by the send. */
static void send_data(net_sock *s, const uint8_t *data, size_t len) {
  pthread_once(&atom_once, atoms_init);
  uint64_t words[32];
  keel_heap h;
  keel_heap_init_fixed(&h, words, 32);
  keel_term t = build_data(&h, s, data, len);
  if (t == KEEL_NONE) { /* did not fit */
    keel_heap_destroy(&h);
    keel_heap_init(&h);
    t = build_data(&h, s, data, len);
  }
  if (t != KEEL_NONE)
    keel__io_send(s->owner, t);
  keel_heap_destroy(&h);
}

void keel__net_count_active(net_sock *s) {
  if (s->active == KEEL_NET_ONCE) {
    s->active = KEEL_NET_PASSIVE;
  } else if (s->active == KEEL_NET_ACTIVE_N && --s->active_n <= 0) {
    s->active = KEEL_NET_PASSIVE;
    s->active_n = 0;
    keel__net_notify(s->owner, keel__net_tag(s, "tcp_passive"), s->h,
                     KEEL_NONE);
  }
}

/* The read failed (n: KEEL_ECLOSED at EOF, else an error; err its errno
 * on TCP): {tcp_error, S, Reason} unless EOF, then {tcp_closed, S}, and
 * the socket closes (as Erlang's exit_on_close). A TLS socket flushes its
 * alert or close_notify reply first. Returns true when it is closed. */
static bool read_failed(net_sock *s, int64_t n, int err) {
  if (s->tls != NULL) {
    if (n != KEEL_ECLOSED) {
      uint64_t words[64];
      keel_heap h;
      keel_heap_init_fixed(&h, words, 64);
      keel__net_notify(s->owner, "ssl_error", s->h, keel__tls_reason(&h, s));
      keel_heap_destroy(&h);
    }
    keel__net_notify(s->owner, "ssl_closed", s->h, KEEL_NONE);
    return keel__net_close_locked(s);
  }
  if (n != KEEL_ECLOSED)
    keel__net_notify(s->owner, "tcp_error", s->h, keel__net_errno_atom(err));
  keel__net_notify(s->owner, "tcp_closed", s->h, KEEL_NONE);
  keel__net_close_now_locked(s);
  return true;
}

/* {http, S, Packet} (ssl on TLS) for the http packet s->rx[0..len). */
static bool send_http(net_sock *s, size_t len) {
  keel_heap h;
  keel_heap_init(&h);
  uint8_t *state = &s->http_state;
  if (s->packet == KEEL_NET_PACKET_HTTPH ||
      s->packet == KEEL_NET_PACKET_HTTPH_BIN)
    *state = 1;
  uint8_t before = *state;
  keel_term pkt = keel__http_packet_decode(&h, s->rx, len, state,
                                           keel__net_packet_http_bin(s));
  keel_term port = pkt != KEEL_NONE ? keel_net_port(&h, s->h) : KEEL_NONE;
  keel_term t =
      port != KEEL_NONE
          ? keel_tuple(&h, 3, keel_atom(s->tls != NULL ? "ssl" : "http"), port,
                       pkt)
          : KEEL_NONE;
  if (t != KEEL_NONE)
    keel__io_send(s->owner, t);
  else
    *state = before; /* the packet stays, to be decoded again */
  keel_heap_destroy(&h);
  return t != KEEL_NONE;
}

/* Delivers the complete frames buffered in s->rx while the mode allows.
 * Returns 1 when it closed the socket (a frame over the limit), else 0. */
static int deliver_frames(net_sock *s) {
  while (s->active != KEEL_NET_PASSIVE) {
    size_t hdr = 0, len = 0;
    int r = keel__net_frame_next(s, &hdr, &len);
    if (r == 0)
      return 0;
    if (r < 0) {
      keel__net_notify(s->owner, keel__net_tag(s, "tcp_error"), s->h,
                       keel_atom("emsgsize"));
      keel__net_notify(s->owner, keel__net_tag(s, "tcp_closed"), s->h,
                       KEEL_NONE);
      if (s->tls != NULL)
        return keel__net_close_locked(s) ? 1 : 2;
      keel__net_close_now_locked(s);
      return 1;
    }
    if (keel__net_packet_http(s)) {
      if (!send_http(s, len))
        return 0; /* out of memory: retried at the next event or re-arm */
    } else {
      send_data(s, s->rx + hdr, len);
    }
    keel__net_rx_consume(s, hdr + len);
    keel__net_count_active(s);
  }
  return 0;
}

bool keel__net_deliver_active_locked(net_sock *s) {
  pthread_once(&atom_once, atoms_init);
  if (s->kind == NK_UDP) {
    keel__udp_deliver_active_locked(s);
    return false;
  }
  bool framing = s->packet != KEEL_NET_PACKET_RAW;
  while (s->active != KEEL_NET_PASSIVE) {
    if (framing || s->rxlen > 0) {
      int d = deliver_frames(s);
      if (d != 0)
        return d == 1;
      if (s->active == KEEL_NET_PASSIVE)
        break;
    }
    if (!(s->flags & NS_RREADY) || (s->flags & NS_EOF))
      break;
    uint8_t *buf = keel__net_rbuf();
    if (buf == NULL)
      return false; /* retried at the next event or re-arm */
    int err;
    int64_t n = keel__net_read_some_locked(s, buf, NET_RBUF, &err);
    if (n == 0)
      break;
    if (n < 0)
      return read_failed(s, n, err);
    if (framing) {
      if (keel__net_rx_append(s, buf, (size_t)n) != KEEL_OK)
        return read_failed(s, KEEL_EIO, ENOMEM);
      continue;
    }
    send_data(s, buf, (size_t)n);
    keel__net_count_active(s);
  }
  return false;
}

static void drop_queue(net_sock *s) {
  for (net_chunk *c = s->qhead, *nx; c != NULL; c = nx) {
    nx = c->next;
    free(c);
  }
  s->qhead = s->qtail = NULL;
  s->qbytes = s->qoff = 0;
}

/* Takes n written bytes off the head of the queue. */
static void consume(net_sock *s, size_t n) {
  s->qbytes -= n;
  while (n > 0) {
    net_chunk *c = s->qhead;
    size_t left = c->len - s->qoff;
    if (n < left) {
      s->qoff += n;
      return;
    }
    n -= left;
    s->qhead = c->next;
    s->qoff = 0;
    free(c);
  }
}

#define FLUSH_IOV 16

void keel__net_flush_locked(net_sock *s) {
  int fd = keel__io_fd(s->h);
  bool had = s->qhead != NULL;
  while (s->qhead != NULL) {
    /* Up to FLUSH_IOV chunks in one sendmsg. */
    struct iovec iov[FLUSH_IOV];
    int k = 0;
    size_t off = s->qoff;
    for (net_chunk *c = s->qhead; c != NULL && k < FLUSH_IOV; c = c->next) {
      iov[k].iov_base = c->data + off;
      iov[k].iov_len = c->len - off;
      k++;
      off = 0;
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      consume(s, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    s->flags |= NS_BROKEN;
    drop_queue(s);
  }
  if (s->flags & NS_CLOSING) {
    if (s->qhead == NULL) /* flushed, or writing failed: close now */
      keel__net_close_now_locked(s);
    return;
  }
  if (s->qhead == NULL) {
    s->qtail = NULL;
    if (had && (s->flags & NS_SHUT_WR))
      shutdown(fd, SHUT_WR);
  }
  if (s->qbytes <= s->low && s->ww.n > 0)
    keel__net_wake_all(s, &s->ww);
}

void keel__net_serve_async_locked(net_sock *s) {
  int lfd = keel__io_fd(s->h);
  while (s->ww.n > 0) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->flags &= (uint8_t)~NS_RREADY;
        return;
      }
      /* Out of descriptors or memory: the first waiter is told. */
      keel_term pid = s->ww.v[0] & NW_PID_MASK;
      keel__net_wl_remove(&s->ww, s->ww.v[0]);
      keel__net_notify(pid, "tcp_accept_error", s->h,
                       keel__net_errno_atom(errno));
      return;
    }
    keel_term pid = s->ww.v[0] & NW_PID_MASK;
    keel__net_wl_remove(&s->ww, s->ww.v[0]);
    keel_socket ns;
    int rc = keel__net_sock_new(fd, false, pid, &ns);
    if (rc == KEEL_OK) {
      uint64_t buf[8];
      keel_heap h;
      keel_heap_init_fixed(&h, buf, 8);
      keel__net_notify(pid, "tcp_accept", s->h, keel_net_port(&h, ns));
      keel_heap_destroy(&h);
    } else if (rc != KEEL_ENOPROC) {
      keel__net_notify(
          pid, "tcp_accept_error", s->h,
          keel_atom(rc == KEEL_ENOMEM ? "enomem" : "system_limit"));
    }
  }
}
