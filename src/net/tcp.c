/*
 * tcp.c - the gen_tcp-like calls of keel/net.h on top of the socket state
 * of sock.c and the runtime's poller.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keel/dirty.h"
#include "net/net_internal.h"
#include "runtime/io.h"

#define PORT_TAG (UINT64_C(1) << 63)

int keel__net_map_errno(int e) {
  switch (e) {
  case EMFILE:
  case ENFILE:
    return KEEL_ESYSLIMIT;
  case ENOMEM:
  case ENOBUFS:
    return KEEL_ENOMEM;
  case EADDRINUSE:
    return KEEL_EADDRINUSE;
  case ECONNREFUSED:
    return KEEL_ECONNREFUSED;
  case ETIMEDOUT:
    return KEEL_ETIMEDOUT;
  case EADDRNOTAVAIL:
  case EAFNOSUPPORT:
  case EINVAL:
    return KEEL_EINVAL;
  case EPIPE:
  case ECONNRESET:
  case ENOTCONN:
    return KEEL_ECLOSED;
  default:
    return KEEL_EIO;
  }
}

/* Whether the caller may wait: a thread or a fiber, or timeout 0. */
int keel__net_may_wait(int64_t timeout_ms) {
  if (timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  keel_proc *p = keel_current();
  if (timeout_ms != 0 && p != NULL && !keel_proc_is_fiber(p))
    return KEEL_ESTATE;
  return KEEL_OK;
}

int keel__net_parse_addr(const char *ip, uint16_t port,
                         struct sockaddr_storage *sa, socklen_t *len) {
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    *len = sizeof *a4;
    return KEEL_OK;
  }
  if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    *len = sizeof *a6;
    return KEEL_OK;
  }
  return KEEL_EINVAL;
}

int keel__net_listen_as(const keel_net_listen_opts *o, keel_term owner,
                        keel_socket *out);

int keel__net_listen_as(const keel_net_listen_opts *o, keel_term owner,
                        keel_socket *out) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (o == NULL || out == NULL || o->backlog < 0)
    return KEEL_EINVAL;
  struct sockaddr_storage sa;
  socklen_t len;
  if (keel__net_parse_addr(o->ip != NULL ? o->ip : "127.0.0.1", o->port, &sa,
                           &len) != KEEL_OK)
    return KEEL_EINVAL;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return keel__net_map_errno(errno);
  int one = 1;
  if ((o->reuseaddr &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) ||
      bind(fd, (struct sockaddr *)&sa, len) != 0 ||
      listen(fd, o->backlog != 0 ? o->backlog : 1024) != 0) {
    rc = keel__net_map_errno(errno);
    close(fd);
    return rc;
  }
  return keel__net_sock_new(fd, true, owner, out);
}

int keel_net_listen(const keel_net_listen_opts *opts, keel_socket *out) {
  return keel__net_listen_as(opts, keel__net_caller(), out);
}

int keel_net_accept(keel_socket listen, int64_t timeout_ms, keel_socket *out) {
  int rc = keel__net_check();
  if (rc == KEEL_OK && out == NULL)
    rc = KEEL_EINVAL;
  if (rc == KEEL_OK)
    rc = keel__net_may_wait(timeout_ms);
  if (rc != KEEL_OK)
    return rc;
  uint64_t deadline = keel__net_deadline(timeout_ms);
  for (;;) {
    net_sock *s = keel__net_lock(listen);
    if (s == NULL)
      return KEEL_ECLOSED;
    if (!(s->flags & NS_LISTEN)) {
      keel__net_unlock(s);
      return KEEL_EINVAL;
    }
    int fd =
        accept4(keel__io_fd(listen), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      keel__net_unlock(s);
      return keel__net_sock_new(fd, false, keel__net_caller(), out);
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED) {
      keel__net_unlock(s);
      continue;
    }
    if (e != EAGAIN && e != EWOULDBLOCK) {
      keel__net_unlock(s);
      return keel__net_map_errno(e);
    }
    if (timeout_ms == 0) {
      keel__net_unlock(s);
      return KEEL_ETIMEDOUT;
    }
    if ((rc = keel__net_wait(s, false, deadline)) != KEEL_OK)
      return rc;
  }
}

int keel_net_accept_async(keel_socket listen, keel_term dest) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (!keel_is_local_pid(dest))
    return KEEL_EBADARG;
  net_sock *s = keel__net_lock(listen);
  if (s == NULL)
    return KEEL_ECLOSED;
  if (!(s->flags & NS_LISTEN))
    rc = KEEL_EINVAL;
  else if ((rc = keel__net_wl_add(&s->ww, dest | NW_ASYNC << NW_KIND_SHIFT)) ==
           KEEL_OK)
    keel__net_serve_async_locked(s); /* connections already pending */
  keel__net_unlock(s);
  return rc;
}

/* Waits until a connect in progress on h ends. */
static int connect_wait(keel_socket h, uint64_t deadline, bool poll_only) {
  for (;;) {
    net_sock *s = keel__net_lock(h);
    if (s == NULL)
      return KEEL_ECLOSED;
    int fd = keel__io_fd(h), err = 0;
    socklen_t el = sizeof err;
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err != 0) {
      keel__net_unlock(s);
      return keel__net_map_errno(err);
    }
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0) {
      keel__net_unlock(s);
      return KEEL_OK;
    }
    if (poll_only) {
      keel__net_unlock(s);
      return KEEL_ETIMEDOUT;
    }
    int rc = keel__net_wait(s, true, deadline);
    if (rc != KEEL_OK)
      return rc;
  }
}

/* Connects to one address: the new socket in *out. */
static int connect_one(const struct sockaddr *sa, socklen_t len,
                       uint64_t deadline, bool poll_only, keel_socket *out) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return keel__net_map_errno(errno);
  if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
    int rc = keel__net_map_errno(errno);
    close(fd);
    return rc;
  }
  keel_socket h;
  int rc = keel__net_sock_new(fd, false, keel__net_caller(), &h);
  if (rc != KEEL_OK)
    return rc;
  rc = connect_wait(h, deadline, poll_only);
  if (rc != KEEL_OK) {
    keel_net_close(h);
    return rc;
  }
  *out = h;
  return KEEL_OK;
}

typedef struct resolve_job {
  const char *host;
  uint16_t port;
  int family, socktype;
  struct addrinfo *res;
  int gai; /* getaddrinfo's result */
} resolve_job;

/* Runs getaddrinfo (on a dirty I/O thread for a fiber). */
static int resolve_fn(void *arg) {
  resolve_job *j = arg;
  char ps[8];
  snprintf(ps, sizeof ps, "%u", (unsigned)j->port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = j->family;
  hints.ai_socktype = j->socktype;
  j->gai = getaddrinfo(j->host, ps, &hints, &j->res);
  return 0;
}

int keel__net_resolve(const char *host, uint16_t port, int family, int socktype,
                      struct addrinfo **out) {
  resolve_job j = {
      .host = host, .port = port, .family = family, .socktype = socktype};
  keel_proc *p = keel_current();
  if (p == NULL)
    (void)resolve_fn(&j);
  else if (!keel_proc_is_fiber(p))
    return KEEL_ESTATE;
  else {
    int rc = keel_dirty_io(p, resolve_fn, &j);
    if (rc != KEEL_OK)
      return rc;
  }
  if (j.gai == EAI_MEMORY)
    return KEEL_ENOMEM;
  if (j.gai == EAI_SYSTEM)
    return KEEL_EIO;
  if (j.gai != 0 || j.res == NULL)
    return KEEL_ENOENT; /* no such name, or none of that kind */
  *out = j.res;
  return KEEL_OK;
}

bool keel__net_host_name_ok(const char *name) {
  size_t n = 0;
  for (const char *c = name; *c != '\0'; c++, n++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.'))
      return false;
  return n > 0 && n <= 253;
}

int keel_net_connect(const char *ip, uint16_t port, int64_t timeout_ms,
                     keel_socket *out) {
  int rc = keel__net_check();
  if (rc == KEEL_OK && (ip == NULL || out == NULL || ip[0] == '\0'))
    rc = KEEL_EINVAL;
  if (rc == KEEL_OK)
    rc = keel__net_may_wait(timeout_ms);
  if (rc != KEEL_OK)
    return rc;
  uint64_t deadline = keel__net_deadline(timeout_ms);
  struct sockaddr_storage sa;
  socklen_t len;
  if (keel__net_parse_addr(ip, port, &sa, &len) == KEEL_OK)
    return connect_one((struct sockaddr *)&sa, len, deadline, timeout_ms == 0,
                       out);
  if (!keel__net_host_name_ok(ip))
    return KEEL_EINVAL;
  struct addrinfo *res;
  if ((rc = keel__net_resolve(ip, port, AF_UNSPEC, SOCK_STREAM, &res)) !=
      KEEL_OK)
    return rc;
  /* Each address in getaddrinfo's order until one connects. */
  rc = KEEL_ENOENT;
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    rc = connect_one(a->ai_addr, a->ai_addrlen, deadline, timeout_ms == 0, out);
    if (rc == KEEL_OK || rc == KEEL_ETIMEDOUT)
      break;
  }
  freeaddrinfo(res);
  return rc;
}

int keel__net_chunk_append(net_chunk **head, net_chunk **tail, const uint8_t *p,
                           size_t len) {
  net_chunk *c = malloc(sizeof *c + len);
  if (c == NULL)
    return KEEL_ENOMEM;
  c->next = NULL;
  c->len = len;
  memcpy(c->data, p, len);
  if (*tail != NULL)
    (*tail)->next = c;
  else
    *head = c;
  *tail = c;
  return KEEL_OK;
}

/* Appends data to the output queue. */
static int enqueue(net_sock *s, const uint8_t *p, size_t len) {
  int rc = keel__net_chunk_append(&s->qhead, &s->qtail, p, len);
  if (rc == KEEL_OK)
    s->qbytes += len;
  return rc;
}

int keel__net_send_raw_locked(net_sock *s, const uint8_t *p, size_t len) {
  if (s->qhead == NULL) {
    int fd = keel__io_fd(s->h);
    while (len > 0) {
      ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        p += n;
        len -= (size_t)n;
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      s->flags |= NS_BROKEN;
      return KEEL_ECLOSED;
    }
  }
  return len > 0 ? enqueue(s, p, len) : KEEL_OK;
}

/* The send_timeout ran out: KEEL_ETIMEDOUT, and the socket is closed at
 * once if it says so (send_timeout_close). */
static int send_timed_out(keel_socket h) {
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ETIMEDOUT;
  bool close_it = s->send_timeout_close;
  if (close_it)
    keel__net_close_now_locked(s);
  keel__net_unlock(s);
  if (close_it)
    keel__net_sock_free(s);
  return KEEL_ETIMEDOUT;
}

/* keel_net_send; wait: a fiber (or a thread with a send_timeout) may
 * block and a process caller is told {tcp_writable, S} later (false:
 * neither, KEEL_EBUSY at once). */
static int send_common(keel_socket h, const void *data, size_t len, bool wait) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (data == NULL && len > 0)
    return KEEL_EINVAL;
  keel_proc *p = wait ? keel_current() : NULL;
  bool fiber = p != NULL && keel_proc_is_fiber(p);
  uint64_t deadline = 0; /* set at the first wait */
  for (;;) {
    net_sock *s = keel__net_lock(h);
    if (s == NULL)
      return KEEL_ECLOSED;
    bool may_wait = wait && (fiber || (p == NULL && s->send_timeout >= 0));
    if ((s->flags & NS_LISTEN) || s->kind != NK_TCP)
      rc = KEEL_EINVAL;
    else if (s->flags & (NS_BROKEN | NS_SHUT_WR))
      rc = KEEL_ECLOSED;
    else if (s->qbytes > s->high && may_wait) {
      if (deadline == 0)
        deadline = keel__net_deadline(s->send_timeout);
      rc = keel__net_wait(s, true, deadline);
      if (rc == KEEL_ETIMEDOUT)
        return send_timed_out(h);
      if (rc != KEEL_OK)
        return rc;
      continue;
    } else if (s->qbytes > s->high) {
      rc = KEEL_EBUSY;
      if (p != NULL)
        keel__net_wl_add(&s->ww, keel_self(p) | NW_NOTIFY << NW_KIND_SHIFT);
    } else if (s->packet != KEEL_NET_PACKET_RAW) {
      rc = keel__net_send_framed_locked(s, data, len);
    } else if (len > 0) {
      rc = s->tls != NULL ? keel__tls_send_locked(s, data, len)
                          : keel__net_send_raw_locked(s, data, len);
    }
    keel__net_unlock(s);
    return rc;
  }
}

int keel_net_send(keel_socket h, const void *data, size_t len) {
  return send_common(h, data, len, true);
}

int keel_net_try_send(keel_socket h, const void *data, size_t len) {
  return send_common(h, data, len, false);
}

/* One step of a passive recv on a locked socket: > 0 (or 0 for an empty
 * frame) bytes, KEEL_ETIMEDOUT when nothing is there yet, or an error. */
static int64_t recv_step(net_sock *s, uint8_t *buf, size_t cap) {
  if (s->packet != KEEL_NET_PACKET_RAW || s->rxlen > 0)
    return keel__net_recv_framed_locked(s, buf, cap);
  if (s->flags & NS_EOF)
    return KEEL_ECLOSED;
  int err;
  int64_t n = keel__net_read_some_locked(s, buf, cap, &err);
  if (n == 0)
    return KEEL_ETIMEDOUT;
  if (n == KEEL_EIO && s->tls == NULL)
    return KEEL_ECLOSED; /* reset and the like */
  return n;
}

/* keel_net_recv (hp NULL) and keel_net_recv_http (into hp, *out). */
static int64_t recv_any(keel_socket h, void *buf, size_t cap,
                        int64_t timeout_ms, keel_heap *hp, keel_term *out) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if ((rc = keel__net_may_wait(timeout_ms)) != KEEL_OK)
    return rc;
  uint64_t deadline = keel__net_deadline(timeout_ms);
  keel_term me = keel__net_caller();
  for (;;) {
    net_sock *s = keel__net_lock(h);
    if (s == NULL)
      return KEEL_ECLOSED;
    if ((s->flags & NS_LISTEN) || s->kind != NK_TCP ||
        s->active != KEEL_NET_PASSIVE ||
        (hp != NULL && !keel__net_packet_http(s)))
      rc = KEEL_EINVAL;
    else if (s->owner != me)
      rc = KEEL_ENOTOWNER;
    if (rc != KEEL_OK) {
      keel__net_unlock(s);
      return rc;
    }
    int64_t n = hp != NULL ? keel__net_recv_http_locked(s, hp, out)
                           : recv_step(s, buf, cap);
    if (n != KEEL_ETIMEDOUT || timeout_ms == 0) {
      keel__net_unlock(s);
      return n;
    }
    if ((rc = keel__net_wait(s, false, deadline)) != KEEL_OK)
      return rc;
  }
}

int64_t keel_net_recv(keel_socket h, void *buf, size_t cap,
                      int64_t timeout_ms) {
  if (buf == NULL || cap == 0)
    return keel__net_check() != KEEL_OK ? keel__net_check() : KEEL_EINVAL;
  return recv_any(h, buf, cap, timeout_ms, NULL, NULL);
}

int keel_net_recv_http(keel_socket h, keel_heap *hp, int64_t timeout_ms,
                       keel_term *out) {
  if (hp == NULL || out == NULL)
    return keel__net_check() != KEEL_OK ? keel__net_check() : KEEL_EINVAL;
  return (int)recv_any(h, NULL, 0, timeout_ms, hp, out);
}

int keel_net_close(keel_socket h) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  bool freed = keel__net_close_locked(s);
  keel__net_unlock(s);
  if (freed)
    keel__net_sock_free(s);
  return KEEL_OK;
}

int keel_net_shutdown(keel_socket h, keel_net_how how) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if ((unsigned)how > KEEL_NET_SHUT_READ_WRITE)
    return KEEL_EINVAL;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  int fd = keel__io_fd(h);
  if ((s->flags & NS_LISTEN) || s->kind != NK_TCP) {
    rc = KEEL_EINVAL;
  } else {
    if (how != KEEL_NET_SHUT_WRITE)
      shutdown(fd, SHUT_RD);
    if (how != KEEL_NET_SHUT_READ) {
      if (s->tls != NULL && !(s->flags & NS_SHUT_WR))
        keel__tls_close_notify_locked(s);
      s->flags |= NS_SHUT_WR;
      if (s->qhead == NULL)
        shutdown(fd, SHUT_WR); /* else once the queue is flushed */
    }
  }
  keel__net_unlock(s);
  return rc;
}

static int addr_of(keel_socket h, keel_net_addr *out, bool peer) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (out == NULL)
    return KEEL_EINVAL;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  socklen_t len = sizeof sa;
  int fd = keel__io_fd(h);
  if (peer && (s->flags & NS_LISTEN))
    rc = KEEL_EINVAL;
  else if ((peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
                 : getsockname(fd, (struct sockaddr *)&sa, &len)) != 0)
    rc = KEEL_EIO;
  keel__net_unlock(s);
  if (rc != KEEL_OK)
    return rc;
  memset(out, 0, sizeof *out);
  if (sa.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&sa;
    inet_ntop(AF_INET, &a->sin_addr, out->ip, sizeof out->ip);
    out->port = ntohs(a->sin_port);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
    inet_ntop(AF_INET6, &a->sin6_addr, out->ip, sizeof out->ip);
    out->port = ntohs(a->sin6_port);
  }
  return KEEL_OK;
}

int keel_net_peername(keel_socket s, keel_net_addr *out) {
  return addr_of(s, out, true);
}

int keel_net_sockname(keel_socket s, keel_net_addr *out) {
  return addr_of(s, out, false);
}
