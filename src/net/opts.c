/*
 * opts.c - socket options and ownership: controlling_process, the active
 * modes, TCP_NODELAY, the output queue watermarks, and port terms.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
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
