/*
 * opts.c - socket options and ownership: controlling_process, the active
 * modes, TCP_NODELAY, the output queue watermarks, the kernel's buffer
 * sizes and linger, getopts, and port terms.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "net/net_internal.h"
#include "runtime/io.h"

#define PORT_TAG (UINT64_C(1) << 63)

int keel_net_controlling_process(keel_socket h, keel_term new_owner) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (!keel_is_local_pid(new_owner))
    return KEEL_EBADARG;
  keel_term me = keel__net_caller();
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if (s->owner != me) {
    keel__net_unlock(s);
    return KEEL_ENOTOWNER;
  }
  if (new_owner != me) {
    rc = keel__net_set_owner_locked(s, new_owner);
    if (rc != KEEL_OK && me != 0)
      keel__net_set_owner_locked(s, me); /* back to the caller, alive */
  }
  keel__net_unlock(s);
  return rc;
}

int keel_net_set_active(keel_socket h, keel_net_active mode, int32_t n) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if ((unsigned)mode > KEEL_NET_ACTIVE_N ||
      (mode == KEEL_NET_ACTIVE_N && (n < -32768 || n > 32767)))
    return KEEL_EINVAL;
  keel_term me = keel__net_caller();
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if (s->flags & NS_LISTEN)
    rc = KEEL_EINVAL;
  else if (s->owner != me || me == 0)
    rc = KEEL_ENOTOWNER;
  if (rc != KEEL_OK) {
    keel__net_unlock(s);
    return rc;
  }
  if (mode == KEEL_NET_ACTIVE_N) {
    int32_t sum = (s->active == KEEL_NET_ACTIVE_N ? s->active_n : 0) + n;
    if (sum > 32767)
      sum = 32767;
    if (sum <= 0) {
      s->active = KEEL_NET_PASSIVE;
      s->active_n = 0;
      keel__net_notify(s->owner, keel__net_tag(s, "tcp_passive"), s->h,
                       KEEL_NONE);
    } else {
      s->active = KEEL_NET_ACTIVE_N;
      s->active_n = (int16_t)sum;
    }
  } else {
    s->active = (uint8_t)mode;
    s->active_n = 0;
  }
  bool closed = false;
  if (s->active != KEEL_NET_PASSIVE)
    closed = keel__net_deliver_active_locked(s);
  keel__net_unlock(s);
  if (closed)
    keel__net_sock_free(s);
  return KEEL_OK;
}

int keel_net_set_nodelay(keel_socket h, bool on) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  int v = on ? 1 : 0;
  if ((s->flags & NS_LISTEN) || s->kind != NK_TCP)
    rc = KEEL_EINVAL;
  else if (setsockopt(keel__io_fd(h), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) !=
           0)
    rc = KEEL_EIO;
  keel__net_unlock(s);
  return rc;
}

int keel_net_set_watermarks(keel_socket h, size_t low, size_t high) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (high == 0 || low > high || high > UINT32_MAX)
    return KEEL_EINVAL;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  s->low = (uint32_t)low;
  s->high = (uint32_t)high;
  if (!(s->flags & NS_LISTEN) && s->qbytes <= s->low && s->ww.n > 0)
    keel__net_wake_all(s, &s->ww);
  keel__net_unlock(s);
  return KEEL_OK;
}

int64_t keel_net_queued(keel_socket h) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  int64_t q = (int64_t)s->qbytes;
  keel__net_unlock(s);
  return q;
}

keel_term keel_net_port(keel_heap *h, keel_socket s) {
  if (h == NULL || s == KEEL_SOCKET_NONE)
    return KEEL_NONE;
  keel_port_parts pp;
  pp.node = keel_term_local_node(&pp.creation);
  pp.id = s | PORT_TAG;
  return keel_port_make(h, &pp);
}

int keel_net_socket_of(keel_term port, keel_socket *out) {
  keel_port_parts pp;
  uint32_t creation;
  if (out == NULL || keel_port_get(port, &pp) != KEEL_OK ||
      pp.node != keel_term_local_node(&creation) || pp.creation != creation ||
      !(pp.id & PORT_TAG) || (pp.id & ~PORT_TAG) == 0)
    return KEEL_EBADARG;
  *out = pp.id & ~PORT_TAG;
  return KEEL_OK;
}

/* Locks a socket for an option: KEEL_OK with *out locked. */
static int lock_any(keel_socket h, net_sock **out) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  *out = keel__net_lock(h);
  return *out != NULL ? KEEL_OK : KEEL_ECLOSED;
}

static int set_int(int fd, int level, int name, int v) {
  return setsockopt(fd, level, name, &v, sizeof v) == 0 ? KEEL_OK : KEEL_EIO;
}

int keel_net_set_buffers(keel_socket h, size_t recbuf, size_t sndbuf) {
  if (recbuf > INT_MAX / 2 || sndbuf > INT_MAX / 2)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_any(h, &s);
  if (rc != KEEL_OK)
    return rc;
  int fd = keel__io_fd(h);
  if (recbuf != 0)
    rc = set_int(fd, SOL_SOCKET, SO_RCVBUF, (int)recbuf);
  if (rc == KEEL_OK && sndbuf != 0)
    rc = set_int(fd, SOL_SOCKET, SO_SNDBUF, (int)sndbuf);
  keel__net_unlock(s);
  return rc;
}

int keel_net_set_linger(keel_socket h, bool on, int secs) {
  if (secs < 0 || secs > UINT16_MAX)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_any(h, &s);
  if (rc != KEEL_OK)
    return rc;
  struct linger l = {.l_onoff = on ? 1 : 0, .l_linger = secs};
  if (s->kind != NK_TCP)
    rc = KEEL_EINVAL;
  else if (setsockopt(keel__io_fd(h), SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0)
    rc = KEEL_EIO;
  else {
    s->linger_on = on;
    s->linger_secs = (uint16_t)secs;
  }
  keel__net_unlock(s);
  return rc;
}

static int get_int(int fd, int level, int name, int *v) {
  socklen_t len = sizeof *v;
  *v = 0;
  return getsockopt(fd, level, name, v, &len) == 0 ? KEEL_OK : KEEL_EIO;
}

/* The kernel's options of a locked socket. */
static int kernel_opts(const net_sock *s, int fd, int family,
                       keel_net_opts *o) {
  int v, rc = get_int(fd, SOL_SOCKET, SO_RCVBUF, &v);
  o->recbuf = (size_t)v;
  if (rc == KEEL_OK)
    rc = get_int(fd, SOL_SOCKET, SO_SNDBUF, &v);
  o->sndbuf = (size_t)v;
  if (rc == KEEL_OK && s->kind == NK_TCP) {
    struct linger l = {0, 0};
    socklen_t len = sizeof l;
    rc = getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 ? KEEL_OK
                                                              : KEEL_EIO;
    o->linger_on = l.l_onoff != 0;
    o->linger_secs = l.l_linger;
    if (rc == KEEL_OK)
      rc = get_int(fd, IPPROTO_TCP, TCP_NODELAY, &v);
    o->nodelay = v != 0;
  }
  if (rc == KEEL_OK && s->kind == NK_UDP) {
    rc = get_int(fd, SOL_SOCKET, SO_BROADCAST, &v);
    o->broadcast = v != 0;
    if (rc == KEEL_OK && family == AF_INET) {
      unsigned char c = 0;
      socklen_t len = sizeof c;
      if (getsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &c, &len) != 0)
        return KEEL_EIO;
      o->multicast_ttl = c;
      len = sizeof c;
      if (getsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &c, &len) != 0)
        return KEEL_EIO;
      o->multicast_loop = c != 0;
    }
  }
  return rc;
}

int keel_net_getopts(keel_socket h, keel_net_opts *out) {
  if (out == NULL)
    return KEEL_EINVAL;
  net_sock *s;
  int rc = lock_any(h, &s);
  if (rc != KEEL_OK)
    return rc;
  memset(out, 0, sizeof *out);
  out->active = (keel_net_active)s->active;
  out->active_n = s->active_n;
  out->packet = (keel_net_packet)s->packet;
  out->packet_size = s->packet_max;
  out->line_length = s->line_len;
  out->line_delimiter = s->line_delim;
  out->low_watermark = s->low;
  out->high_watermark = s->high;
  out->send_timeout = s->send_timeout;
  out->send_timeout_close = s->send_timeout_close;
  int fd = keel__io_fd(h);
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  socklen_t sl = sizeof sa;
  int family = getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 ? sa.ss_family
                                                                 : AF_UNSPEC;
  rc = kernel_opts(s, fd, family, out);
  keel__net_unlock(s);
  return rc;
}

/* keel_net_setopts' steps but the active mode, in the order of the bits. */
static int set_some(keel_socket h, const keel_net_opts *o, unsigned w) {
  int rc = KEEL_OK;
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_PACKET))
    rc = keel_net_set_packet(h, o->packet, o->packet_size);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_LINE))
    rc = keel_net_set_line(h, o->line_length, o->line_delimiter);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_NODELAY))
    rc = keel_net_set_nodelay(h, o->nodelay);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_BUFFERS))
    rc = keel_net_set_buffers(h, o->recbuf, o->sndbuf);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_LINGER))
    rc = keel_net_set_linger(h, o->linger_on, o->linger_secs);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_WATERMARKS))
    rc = keel_net_set_watermarks(h, o->low_watermark, o->high_watermark);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_SEND_TIMEOUT))
    rc = keel_net_set_send_timeout(h, o->send_timeout, o->send_timeout_close);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_BROADCAST))
    rc = keel_net_udp_set_broadcast(h, o->broadcast);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_MULTICAST_TTL))
    rc = keel_net_udp_set_multicast_ttl(h, o->multicast_ttl);
  if (rc == KEEL_OK && (w & KEEL_NET_OPT_MULTICAST_LOOP))
    rc = keel_net_udp_set_multicast_loop(h, o->multicast_loop);
  return rc;
}

int keel_net_setopts(keel_socket h, const keel_net_opts *opts, unsigned which) {
  if (opts == NULL || (which & ~((KEEL_NET_OPT_MULTICAST_LOOP << 1) - 1u)))
    return KEEL_EINVAL;
  int rc = set_some(h, opts, which);
  if (rc == KEEL_OK && (which & KEEL_NET_OPT_ACTIVE))
    rc = keel_net_set_active(h, opts->active, opts->active_n);
  return rc;
}
