/*
 * packet.c - gen_tcp's {packet, 1|2|4|line} framing and send_timeout: the
 * receive buffer of partial frames, frame extraction, framed sends, and
 * the options that set them.
 *
 * A framing socket reads whatever the kernel has into its receive buffer
 * (s->rx) and hands out whole frames only: one per passive recv, one per
 * active message. A length header over the socket's packet_max (or a line
 * longer than it) is a frame that will never be accepted: the stream
 * cannot be resynchronised, so recv keeps failing with KEEL_ELIMIT and
 * active delivery reports {tcp_error, S, emsgsize} and closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/net_internal.h"
#include "runtime/io.h"

static size_t header_len(uint8_t packet) {
  return packet == KEEL_NET_PACKET_1   ? 1
         : packet == KEEL_NET_PACKET_2 ? 2
         : packet == KEEL_NET_PACKET_4 ? 4
                                       : 0;
}

/* Line mode: a line up to and with the delimiter; with a line_length
 * under packet_max, a longer line comes in pieces of line_length bytes
 * (the last one with the delimiter), as inet_drv cuts a line at its
 * buffer size, and never fails. */
static int line_next(const net_sock *s, size_t *len, size_t *hdr) {
  size_t max = s->packet_max, piece = s->line_len;
  if (piece >= max)
    piece = 0; /* packet_size refuses such a line first */
  const uint8_t *d =
      s->rxlen > 0 ? memchr(s->rx, s->line_delim, s->rxlen) : NULL;
  *hdr = 0;
  if (d == NULL) {
    if (piece != 0 && s->rxlen >= piece) {
      *len = piece;
      return 1;
    }
    return s->rxlen > max ? KEEL_ELIMIT : 0;
  }
  size_t n = (size_t)(d - s->rx) + 1;
  if (piece != 0 && n > piece)
    n = piece;
  *len = n;
  return n > max ? KEEL_ELIMIT : 1;
}

bool keel__net_packet_http(const net_sock *s) {
  return s->packet >= KEEL_NET_PACKET_HTTP &&
         s->packet <= KEEL_NET_PACKET_HTTPH_BIN;
}

bool keel__net_packet_http_bin(const net_sock *s) {
  return s->packet == KEEL_NET_PACKET_HTTP_BIN ||
         s->packet == KEEL_NET_PACKET_HTTPH_BIN;
}

/* The http state a packet is decoded in (httph: always the headers). */
static uint8_t *http_state(net_sock *s) {
  if (s->packet == KEEL_NET_PACKET_HTTPH ||
      s->packet == KEEL_NET_PACKET_HTTPH_BIN)
    s->http_state = 1;
  return &s->http_state;
}

void keel__net_frame_taken(net_sock *s, size_t len) {
  if (keel__net_packet_http(s))
    keel__http_packet_step(s->rx, len, http_state(s));
}

int keel__net_frame_next(const net_sock *s, size_t *hdr, size_t *len) {
  size_t max = s->packet_max;
  if (s->packet == KEEL_NET_PACKET_RAW) {
    *hdr = 0;
    *len = s->rxlen;
    return s->rxlen > 0 ? 1 : 0;
  }
  if (s->packet == KEEL_NET_PACKET_LINE)
    return line_next(s, len, hdr);
  if (keel__net_packet_http(s)) {
    bool headers = s->http_state != 0 || s->packet == KEEL_NET_PACKET_HTTPH ||
                   s->packet == KEEL_NET_PACKET_HTTPH_BIN;
    int64_t n = keel__http_packet_len(s->rx, s->rxlen, headers, max);
    if (n <= 0)
      return (int)n;
    *hdr = 0;
    *len = (size_t)n;
    return 1;
  }
  size_t h = header_len(s->packet);
  if (s->rxlen < h)
    return 0;
  size_t n = 0;
  for (size_t i = 0; i < h; i++)
    n = n << 8 | s->rx[i];
  if (n > max)
    return KEEL_ELIMIT;
  if (s->rxlen - h < n)
    return 0;
  *hdr = h;
  *len = n;
  return 1;
}

void keel__net_rx_consume(net_sock *s, size_t n) {
  s->rxlen -= n;
  if (s->rxlen > 0)
    memmove(s->rx, s->rx + n, s->rxlen);
  else if (s->rxcap > 64 * 1024) { /* a big frame went by: shrink */
    free(s->rx);
    s->rx = NULL;
    s->rxcap = 0;
  }
}

int keel__net_rx_append(net_sock *s, const uint8_t *p, size_t n) {
  if (s->rxcap - s->rxlen < n) {
    size_t cap = s->rxcap != 0 ? s->rxcap : 4096;
    while (cap - s->rxlen < n)
      cap *= 2;
    uint8_t *rx = realloc(s->rx, cap);
    if (rx == NULL)
      return KEEL_ENOMEM;
    s->rx = rx;
    s->rxcap = cap;
  }
  memcpy(s->rx + s->rxlen, p, n);
  s->rxlen += n;
  return KEEL_OK;
}

int64_t keel__net_read_some_locked(net_sock *s, uint8_t *buf, size_t cap,
                                   int *err) {
  *err = 0;
  if (s->tls != NULL) {
    int64_t n = keel__tls_read_locked(s, buf, cap);
    if (n < 0)
      s->flags |= NS_EOF;
    return n;
  }
  for (;;) {
    ssize_t n = recv(keel__io_fd(s->h), buf, cap, MSG_DONTWAIT);
    if (n > 0) {
      /* A short read drained the socket; anything arriving later brings
       * a new edge. Not so a FIN already reported with the data (the
       * event had EPOLLRDHUP): only a read sees it, so RREADY stays. */
      if ((size_t)n < cap && !(s->flags & NS_RDHUP))
        s->flags &= (uint8_t)~NS_RREADY;
      return n;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      s->flags &= (uint8_t)~NS_RREADY;
      return 0;
    }
    s->flags |= NS_EOF;
    if (n == 0)
      return KEEL_ECLOSED;
    *err = errno;
    return KEEL_EIO;
  }
}

/* No whole frame is buffered: reads what the kernel has into s->rx.
 * KEEL_OK (look again), KEEL_ETIMEDOUT (nothing yet), KEEL_ECLOSED (EOF:
 * a partial frame is dropped), KEEL_ENOMEM or a TLS error. */
static int64_t read_more(net_sock *s) {
  if (s->flags & NS_EOF)
    return KEEL_ECLOSED;
  uint8_t *tmp = keel__net_rbuf();
  if (tmp == NULL)
    return KEEL_ENOMEM;
  int err;
  int64_t n = keel__net_read_some_locked(s, tmp, KEEL__NET_RBUF, &err);
  if (n == 0)
    return KEEL_ETIMEDOUT;
  if (n < 0)
    return n == KEEL_EIO && s->tls == NULL ? KEEL_ECLOSED : n;
  return keel__net_rx_append(s, tmp, (size_t)n);
}

int64_t keel__net_recv_framed_locked(net_sock *s, uint8_t *buf, size_t cap) {
  for (;;) {
    size_t hdr = 0, len = 0;
    int r = keel__net_frame_next(s, &hdr, &len);
    if (r < 0)
      return r;
    if (r == 1 && s->packet == KEEL_NET_PACKET_RAW) {
      len = len < cap ? len : cap; /* raw: what is buffered, as it fits */
      memcpy(buf, s->rx, len);
      keel__net_rx_consume(s, len);
      return (int64_t)len;
    }
    if (r == 1) {
      if (len > cap)
        return KEEL_ENOSPC;
      if (len > 0)
        memcpy(buf, s->rx + hdr, len);
      keel__net_frame_taken(s, len);
      keel__net_rx_consume(s, hdr + len);
      return (int64_t)len;
    }
    int64_t n = read_more(s);
    if (n != KEEL_OK)
      return n;
  }
}

int keel__net_recv_http_locked(net_sock *s, keel_heap *hp, keel_term *out) {
  for (;;) {
    size_t hdr = 0, len = 0;
    int r = keel__net_frame_next(s, &hdr, &len);
    if (r < 0)
      return r;
    if (r == 1) {
      keel_term t = keel__http_packet_decode(hp, s->rx, len, http_state(s),
                                             keel__net_packet_http_bin(s));
      if (t == KEEL_NONE)
        return KEEL_ENOMEM; /* the packet stays */
      keel__net_rx_consume(s, len);
      *out = t;
      return KEEL_OK;
    }
    int64_t n = read_more(s);
    if (n != KEEL_OK)
      return (int)n;
  }
}

/* Writes p[0..len) as plaintext (TLS) or raw bytes. */
static int put(net_sock *s, const uint8_t *p, size_t len) {
  return s->tls != NULL ? keel__tls_send_locked(s, p, len)
                        : keel__net_send_raw_locked(s, p, len);
}

int keel__net_send_framed_locked(net_sock *s, const uint8_t *p, size_t len) {
  size_t h = header_len(s->packet);
  if (h == 0)
    return len > 0 ? put(s, p, len) : KEEL_OK;
  if (h < 8 && len >= (size_t)1 << (8 * h))
    return KEEL_ELIMIT;
  uint8_t small[4 + 1024];
  uint8_t *hd = small;
  for (size_t i = 0; i < h; i++)
    hd[i] = (uint8_t)(len >> (8 * (h - 1 - i)));
  if (len <= 1024) { /* one write for a small frame */
    if (len > 0)
      memcpy(small + h, p, len);
    return put(s, small, h + len);
  }
  int rc = put(s, hd, h);
  return rc == KEEL_OK ? put(s, p, len) : rc;
}

/* Locks a connected (not listening) TCP socket. */
static int lock_stream(keel_socket h, net_sock **out) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if ((s->flags & NS_LISTEN) || s->kind != NK_TCP) {
    keel__net_unlock(s);
    return KEEL_EINVAL;
  }
  *out = s;
  return KEEL_OK;
}

int keel_net_set_packet(keel_socket h, keel_net_packet type, size_t max) {
  if ((unsigned)type > KEEL_NET_PACKET_HTTPH_BIN ||
      (unsigned)type == 3 /* no such type */)
    return KEEL_EINVAL;
  if (max > UINT32_MAX)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_stream(h, &s);
  if (rc != KEEL_OK)
    return rc;
  s->packet = (uint8_t)type;
  s->http_state = 0; /* http: a start line comes first */
  s->packet_max = max != 0 ? (uint32_t)max : KEEL_NET_PACKET_MAX_DEFAULT;
  bool closed = false;
  if (s->active != KEEL_NET_PASSIVE) /* frames may be buffered already */
    closed = keel__net_deliver_active_locked(s);
  keel__net_unlock(s);
  if (closed)
    keel__net_sock_free(s);
  return KEEL_OK;
}

int keel_net_set_send_timeout(keel_socket h, int64_t timeout_ms,
                              bool close_on_timeout) {
  if (timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_stream(h, &s);
  if (rc != KEEL_OK)
    return rc;
  s->send_timeout = timeout_ms;
  s->send_timeout_close = close_on_timeout;
  keel__net_unlock(s);
  return KEEL_OK;
}

int keel_net_set_line(keel_socket h, size_t line_length, uint8_t delimiter) {
  if (line_length > UINT32_MAX)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_stream(h, &s);
  if (rc != KEEL_OK)
    return rc;
  s->line_len = (uint32_t)line_length;
  s->line_delim = delimiter;
  bool closed = false;
  if (s->active != KEEL_NET_PASSIVE) /* lines may be buffered already */
    closed = keel__net_deliver_active_locked(s);
  keel__net_unlock(s);
  if (closed)
    keel__net_sock_free(s);
  return KEEL_OK;
}
