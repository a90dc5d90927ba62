/*
 * udp.c - the gen_udp-like calls of keel/net.h: datagram sockets on the
 * socket state of sock.c (same handles, owners, active modes and poller):
 * open, send (to a numeric address, a host name or the connected peer),
 * recv, connect, IPv4 multicast and broadcast options.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net_internal.h"
#include "runtime/io.h"

int keel_net_udp_open(const keel_net_udp_opts *o, keel_socket *out) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (o == NULL || out == NULL)
    return KEEL_EINVAL;
  struct sockaddr_storage sa;
  socklen_t len;
  if (keel__net_parse_addr(o->ip != NULL ? o->ip : "127.0.0.1", o->port, &sa,
                           &len) != KEEL_OK)
    return KEEL_EINVAL;
  int fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return keel__net_map_errno(errno);
  int one = 1;
  if ((o->reuseaddr &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) ||
      bind(fd, (struct sockaddr *)&sa, len) != 0) {
    rc = keel__net_map_errno(errno);
    close(fd);
    return rc;
  }
  return keel__net_sock_new_kind(fd, false, NK_UDP, keel__net_caller(), out);
}

/* Locks h and checks it is a UDP socket (KEEL_OK, KEEL_ECLOSED,
 * KEEL_EINVAL); on success *out is locked. */
static int lock_udp(keel_socket h, net_sock **out) {
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if (s->kind != NK_UDP) {
    keel__net_unlock(s);
    return KEEL_EINVAL;
  }
  *out = s;
  return KEEL_OK;
}

/* The address family of the UDP socket h (AF_INET, AF_INET6). */
static int udp_family(keel_socket h, int *family) {
  net_sock *s;
  int rc = lock_udp(h, &s);
  if (rc != KEEL_OK)
    return rc;
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  socklen_t sl = sizeof sa;
  rc = getsockname(keel__io_fd(h), (struct sockaddr *)&sa, &sl) == 0 ? KEEL_OK
                                                                     : KEEL_EIO;
  *family = sa.ss_family;
  keel__net_unlock(s);
  return rc;
}

/* The destination host:port as a sockaddr: a numeric address as it is, a
 * host name resolved (without the socket's lock) to its first address of
 * the socket's family, as gen_udp's inet:getaddr(Host, Family). */
static int udp_dest(keel_socket h, const char *host, uint16_t port,
                    struct sockaddr_storage *sa, socklen_t *sl) {
  if (keel__net_parse_addr(host, port, sa, sl) == KEEL_OK)
    return KEEL_OK;
  if (!keel__net_host_name_ok(host))
    return KEEL_EINVAL;
  int family, rc = udp_family(h, &family);
  if (rc != KEEL_OK)
    return rc;
  struct addrinfo *res;
  if ((rc = keel__net_resolve(host, port, family, SOCK_DGRAM, &res)) != KEEL_OK)
    return rc;
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *sl = res->ai_addrlen;
  freeaddrinfo(res);
  return KEEL_OK;
}

int keel_net_udp_send(keel_socket h, const char *ip, uint16_t port,
                      const void *data, size_t len) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (data == NULL && len > 0)
    return KEEL_EINVAL;
  struct sockaddr_storage sa;
  socklen_t sl = 0; /* 0: to the connected peer */
  if (ip != NULL && (rc = udp_dest(h, ip, port, &sa, &sl)) != KEEL_OK)
    return rc;
  keel_proc *p = keel_current();
  for (;;) {
    net_sock *s;
    if ((rc = lock_udp(h, &s)) != KEEL_OK)
      return rc;
    ssize_t n = sendto(keel__io_fd(h), data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       sl != 0 ? (struct sockaddr *)&sa : NULL, sl);
    int e = errno;
    if (n >= 0 || e == EINTR || (e != EAGAIN && e != EWOULDBLOCK)) {
      keel__net_unlock(s);
      if (n >= 0)
        return KEEL_OK;
      if (e == EINTR)
        continue;
      return e == EMSGSIZE       ? KEEL_ELIMIT
             : e == EDESTADDRREQ ? KEEL_ESTATE
                                 : keel__net_map_errno(e);
    }
    /* The send buffer is full: wait for room (a handler cannot). */
    if (p != NULL && !keel_proc_is_fiber(p)) {
      keel__net_unlock(s);
      return KEEL_EBUSY;
    }
    if ((rc = keel__net_wait(s, true, UINT64_MAX)) != KEEL_OK)
      return rc;
  }
}

int keel_net_udp_connect(keel_socket h, const char *host, uint16_t port) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (host == NULL)
    return KEEL_EINVAL;
  struct sockaddr_storage sa;
  socklen_t sl;
  if ((rc = udp_dest(h, host, port, &sa, &sl)) != KEEL_OK)
    return rc;
  net_sock *s;
  if ((rc = lock_udp(h, &s)) != KEEL_OK)
    return rc;
  if (s->owner != keel__net_caller())
    rc = KEEL_ENOTOWNER;
  else if (connect(keel__io_fd(h), (struct sockaddr *)&sa, sl) != 0)
    rc = errno == EAFNOSUPPORT || errno == EINVAL ? KEEL_EINVAL
                                                  : keel__net_map_errno(errno);
  keel__net_unlock(s);
  return rc;
}

/* Sets an IPPROTO_IP option of an IPv4 UDP socket. */
static int set_ip_opt(keel_socket h, int name, const void *v, socklen_t len) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s;
  if ((rc = lock_udp(h, &s)) != KEEL_OK)
    return rc;
  if (setsockopt(keel__io_fd(h), IPPROTO_IP, name, v, len) != 0)
    rc = errno == EADDRNOTAVAIL || errno == ENODEV ? KEEL_ENOENT
         : errno == ENOPROTOOPT || errno == EINVAL ? KEEL_EINVAL
                                                   : keel__net_map_errno(errno);
  keel__net_unlock(s);
  return rc;
}

/* A numeric IPv4 address (NULL: INADDR_ANY). */
static int ipv4(const char *ip, struct in_addr *out) {
  if (ip == NULL) {
    out->s_addr = htonl(INADDR_ANY);
    return KEEL_OK;
  }
  return inet_pton(AF_INET, ip, out) == 1 ? KEEL_OK : KEEL_EINVAL;
}

int keel_net_udp_membership(keel_socket h, bool add, const char *group,
                            const char *iface) {
  struct ip_mreq m;
  if (group == NULL || ipv4(group, &m.imr_multiaddr) != KEEL_OK ||
      !IN_MULTICAST(ntohl(m.imr_multiaddr.s_addr)) ||
      ipv4(iface, &m.imr_interface) != KEEL_OK)
    return KEEL_EINVAL;
  return set_ip_opt(h, add ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m,
                    sizeof m);
}

int keel_net_udp_set_multicast_ttl(keel_socket h, int ttl) {
  if (ttl < 0 || ttl > 255)
    return KEEL_EINVAL;
  return set_ip_opt(h, IP_MULTICAST_TTL, &ttl, sizeof ttl);
}

int keel_net_udp_set_multicast_loop(keel_socket h, bool on) {
  int v = on ? 1 : 0;
  return set_ip_opt(h, IP_MULTICAST_LOOP, &v, sizeof v);
}

int keel_net_udp_set_multicast_if(keel_socket h, const char *iface) {
  struct in_addr a;
  if (ipv4(iface, &a) != KEEL_OK)
    return KEEL_EINVAL;
  return set_ip_opt(h, IP_MULTICAST_IF, &a, sizeof a);
}

int keel_net_udp_set_broadcast(keel_socket h, bool on) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  net_sock *s;
  if ((rc = lock_udp(h, &s)) != KEEL_OK)
    return rc;
  int v = on ? 1 : 0;
  if (setsockopt(keel__io_fd(h), SOL_SOCKET, SO_BROADCAST, &v, sizeof v) != 0)
    rc = KEEL_EIO;
  keel__net_unlock(s);
  return rc;
}

/* The address of a sockaddr as keel_net_addr. */
static void addr_out(const struct sockaddr_storage *sa, keel_net_addr *out) {
  memset(out, 0, sizeof *out);
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, out->ip, sizeof out->ip);
    out->port = ntohs(a->sin_port);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, out->ip, sizeof out->ip);
    out->port = ntohs(a->sin6_port);
  }
}

int64_t keel_net_udp_recv(keel_socket h, void *buf, size_t cap,
                          int64_t timeout_ms, keel_net_addr *from) {
  int rc = keel__net_check();
  if (rc == KEEL_OK && buf == NULL && cap > 0)
    rc = KEEL_EINVAL;
  if (rc == KEEL_OK)
    rc = keel__net_may_wait(timeout_ms);
  if (rc != KEEL_OK)
    return rc;
  uint64_t deadline = keel__net_deadline(timeout_ms);
  keel_term me = keel__net_caller();
  for (;;) {
    net_sock *s;
    if ((rc = lock_udp(h, &s)) != KEEL_OK)
      return rc;
    if (s->active != KEEL_NET_PASSIVE)
      rc = KEEL_EINVAL;
    else if (s->owner != me)
      rc = KEEL_ENOTOWNER;
    if (rc != KEEL_OK) {
      keel__net_unlock(s);
      return rc;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    ssize_t n = recvfrom(keel__io_fd(h), buf, cap, MSG_DONTWAIT,
                         (struct sockaddr *)&sa, &sl);
    int e = errno;
    if (n >= 0) {
      keel__net_unlock(s);
      if (from != NULL)
        addr_out(&sa, from);
      return n;
    }
    if (e != EAGAIN && e != EWOULDBLOCK) {
      keel__net_unlock(s); /* EINTR, or an ICMP error: read again */
      continue;
    }
    s->flags &= (uint8_t)~NS_RREADY;
    if (timeout_ms == 0) {
      keel__net_unlock(s);
      return KEEL_ETIMEDOUT;
    }
    if ((rc = keel__net_wait(s, false, deadline)) != KEEL_OK)
      return rc;
  }
}

/* The Ip of a message: {A, B, C, D} or the eight 16-bit groups of IPv6. */
static keel_term ip_term(keel_heap *hp, const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET6) {
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    keel_term g[8];
    for (int i = 0; i < 8; i++)
      g[i] = keel_small((int64_t)b[2 * i] << 8 | b[2 * i + 1]);
    return keel_tuple(hp, 8, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
  }
  const uint8_t *b =
      (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
  return keel_tuple(hp, 4, keel_small(b[0]), keel_small(b[1]), keel_small(b[2]),
                    keel_small(b[3]));
}

static uint16_t port_num(const struct sockaddr_storage *sa) {
  return ntohs(sa->ss_family == AF_INET6
                   ? ((const struct sockaddr_in6 *)sa)->sin6_port
                   : ((const struct sockaddr_in *)sa)->sin_port);
}

static keel_term build_udp(keel_heap *hp, net_sock *s,
                           const struct sockaddr_storage *sa,
                           const uint8_t *data, size_t len) {
  keel_term port = keel_net_port(hp, s->h);
  keel_term ip = port != KEEL_NONE ? ip_term(hp, sa) : KEEL_NONE;
  keel_term bin = ip != KEEL_NONE ? keel_binary(hp, data, len) : KEEL_NONE;
  if (bin == KEEL_NONE)
    return KEEL_NONE;
  return keel_tuple(hp, 5, keel_atom("udp"), port, ip, keel_small(port_num(sa)),
                    bin);
}

/* {udp, S, Ip, Port, Data} to the owner. */
static void send_datagram(net_sock *s, const struct sockaddr_storage *sa,
                          const uint8_t *data, size_t len) {
  uint64_t words[48];
  keel_heap hp;
  keel_heap_init_fixed(&hp, words, 48);
  keel_term t = build_udp(&hp, s, sa, data, len);
  if (t == KEEL_NONE) { /* did not fit */
    keel_heap_destroy(&hp);
    keel_heap_init(&hp);
    t = build_udp(&hp, s, sa, data, len);
  }
  if (t != KEEL_NONE)
    keel__io_send(s->owner, t);
  keel_heap_destroy(&hp);
}

void keel__udp_deliver_active_locked(net_sock *s) {
  int fd = keel__io_fd(s->h);
  while (s->active != KEEL_NET_PASSIVE && (s->flags & NS_RREADY)) {
    uint8_t *buf = keel__net_rbuf();
    if (buf == NULL)
      return; /* retried at the next event or re-arm */
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    ssize_t n = recvfrom(fd, buf, KEEL__NET_RBUF, MSG_DONTWAIT,
                         (struct sockaddr *)&sa, &sl);
    if (n >= 0) {
      send_datagram(s, &sa, buf, (size_t)n);
      keel__net_count_active(s);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s->flags &= (uint8_t)~NS_RREADY;
      return;
    }
    /* EINTR, or a pending ICMP error (read and cleared): go on. */
  }
}
