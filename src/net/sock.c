/*
 * sock.c - socket state: creation, locking, owners (and their death),
 * waiter lists and blocking waits.
 *
 * Owners: a socket with an owner is on the chain of its owner's bucket
 * (by pid hash). The runtime exit hook of an owner walks its bucket and
 * closes the sockets it still owns, on the dying process's thread. Lock
 * order: a socket's slot lock, then a bucket lock (the hook collects
 * handles under the bucket lock and locks the sockets after releasing it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "keel/clock.h"
#include "keel/signals.h"
#include "net/net_internal.h"
#include "runtime/io.h"

#define NB_BITS 10
#define NB_COUNT (1u << NB_BITS)

static struct {
  pthread_mutex_t lock;
  net_sock *head;
} buckets[NB_COUNT];

static pthread_once_t net_once = PTHREAD_ONCE_INIT;
static int hook_id = -1;
static keel_term wake_atom;

static void on_owner_exit(keel_term pid, keel_term reason, void *arg);

static void net_init(void) {
  for (unsigned i = 0; i < NB_COUNT; i++)
    pthread_mutex_init(&buckets[i].lock, NULL);
  wake_atom = keel_atom("$keel_net_wake");
  hook_id = keel_exit_hook_add(on_owner_exit, NULL);
}

keel_term keel__net_wake_atom(void) {
  return wake_atom;
}

int keel__net_check(void) {
  pthread_once(&net_once, net_init);
  if (!keel__io_available()) {
    keel_node_stats st;
    return keel_node_stats_get(&st) == KEEL_OK ? KEEL_EUNSUPPORTED
                                               : KEEL_ESTATE;
  }
  return KEEL_OK;
}

keel_term keel__net_caller(void) {
  keel_proc *p = keel_current();
  return p != NULL ? keel_self(p) : 0;
}

/* ---- owners -------------------------------------------------------------- */

static unsigned bucket_of(keel_term pid) {
  return (unsigned)((pid * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - NB_BITS));
}

static void bucket_insert(net_sock *s) {
  unsigned b = bucket_of(s->owner);
  pthread_mutex_lock(&buckets[b].lock);
  s->onext = buckets[b].head;
  buckets[b].head = s;
  pthread_mutex_unlock(&buckets[b].lock);
}

static void bucket_remove(net_sock *s) {
  unsigned b = bucket_of(s->owner);
  pthread_mutex_lock(&buckets[b].lock);
  for (net_sock **pp = &buckets[b].head; *pp != NULL; pp = &(*pp)->onext)
    if (*pp == s) {
      *pp = s->onext;
      break;
    }
  pthread_mutex_unlock(&buckets[b].lock);
  s->onext = NULL;
}

int keel__net_set_owner_locked(net_sock *s, keel_term owner) {
  if (s->owner != 0)
    bucket_remove(s);
  s->owner = owner;
  if (owner == 0)
    return KEEL_OK;
  if (hook_id < 0) {
    s->owner = 0;
    return KEEL_ESYSLIMIT;
  }
  /* Inserted before arming: an owner that dies after a successful arm
   * finds the socket in its bucket. */
  bucket_insert(s);
  int rc = keel_exit_hook_arm(owner, hook_id);
  if (rc != KEEL_OK) {
    bucket_remove(s);
    s->owner = 0;
  }
  return rc;
}

static void on_owner_exit(keel_term pid, keel_term reason, void *arg) {
  (void)reason;
  (void)arg;
  unsigned b = bucket_of(pid);
  keel_socket small[16], *hs = small;
  size_t n = 0, cap = 16;
  pthread_mutex_lock(&buckets[b].lock);
  for (net_sock *s = buckets[b].head; s != NULL; s = s->onext) {
    if (s->owner != pid)
      continue;
    if (n == cap) {
      keel_socket *g = malloc(2 * cap * sizeof *g);
      if (g == NULL)
        break; /* the rest stays open until closed or the node stops */
      memcpy(g, hs, n * sizeof *g);
      if (hs != small)
        free(hs);
      hs = g;
      cap *= 2;
    }
    hs[n++] = s->h;
  }
  pthread_mutex_unlock(&buckets[b].lock);
  for (size_t i = 0; i < n; i++) {
    net_sock *s = keel__net_lock(hs[i]);
    if (s == NULL)
      continue;
    bool freed = s->owner == pid && keel__net_close_locked(s);
    keel__net_unlock(s);
    if (freed)
      keel__net_sock_free(s);
  }
  if (hs != small)
    free(hs);
}

/* ---- life ---------------------------------------------------------------- */

static void on_event(void *obj, uint64_t h, uint32_t events);

void keel__net_sock_free(void *obj) {
  net_sock *s = obj;
  if (s == NULL)
    return;
  for (net_chunk *c = s->qhead, *nx; c != NULL; c = nx) {
    nx = c->next;
    free(c);
  }
  free(s->rw.v);
  free(s->ww.v);
  free(s->rx);
  if (s->tls != NULL)
    keel__tls_free(s->tls);
  free(s);
}

/* Node stop: the socket of no process is freed with the node. */
static void sock_free_at_stop(void *obj) {
  net_sock *s = obj;
  if (s->owner != 0)
    bucket_remove(s);
  keel__net_sock_free(s);
}

int keel__net_sock_new(int fd, bool listen, keel_term owner, keel_socket *out) {
  return keel__net_sock_new_kind(fd, listen, NK_TCP, owner, out);
}

int keel__net_sock_new_kind(int fd, bool listen, uint8_t kind, keel_term owner,
                            keel_socket *out) {
  net_sock *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(fd);
    return KEEL_ENOMEM;
  }
  s->kind = kind;
  s->send_timeout = KEEL_INFINITY;
  s->packet_max = KEEL_NET_PACKET_MAX_DEFAULT;
  s->line_delim = '\n';
  s->flags = listen ? NS_LISTEN : NS_RREADY;
  s->low = KEEL_NET_LOW_WATERMARK_DEFAULT;
  s->high = KEEL_NET_HIGH_WATERMARK_DEFAULT;
  int rc = keel__io_open(fd, on_event, sock_free_at_stop, s, &s->h);
  if (rc != KEEL_OK) {
    close(fd);
    free(s);
    return rc;
  }
  keel_socket h = s->h;
  if (owner != 0) {
    s = keel__net_lock(h);
    if (s == NULL)
      return KEEL_ECLOSED;
    rc = keel__net_set_owner_locked(s, owner);
    if (rc != KEEL_OK)
      keel__net_close_now_locked(s);
    keel__net_unlock(s);
    if (rc != KEEL_OK) {
      keel__net_sock_free(s);
      return rc;
    }
  }
  *out = h;
  return KEEL_OK;
}

net_sock *keel__net_lock(keel_socket h) {
  net_sock *s = keel__io_lock(h);
  if (s != NULL && (s->flags & NS_CLOSING)) {
    keel__io_unlock(h); /* lingering: closed for its users */
    return NULL;
  }
  return s;
}

void keel__net_unlock(net_sock *s) {
  keel__io_unlock(s->h);
}

static void forget_waiters(net_sock *s) {
  keel__net_wake_all(s, &s->rw);
  if (s->flags & NS_LISTEN) {
    for (uint32_t i = 0; i < s->ww.n; i++)
      keel__net_notify(s->ww.v[i] & NW_PID_MASK, "tcp_accept_error", s->h,
                       keel_atom("closed"));
    s->ww.n = 0;
  } else {
    keel__net_wake_all(s, &s->ww);
  }
  if (s->owner != 0) {
    bucket_remove(s);
    s->owner = 0;
  }
}

void keel__net_close_now_locked(net_sock *s) {
  forget_waiters(s);
  if (s->linger_on && s->linger_secs > 0) { /* close(2) must not block */
    struct linger l = {0, 0};
    (void)setsockopt(keel__io_fd(s->h), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  for (net_chunk *c = s->qhead, *nx; c != NULL; c = nx) {
    nx = c->next;
    free(c);
  }
  s->qhead = s->qtail = NULL;
  s->qbytes = s->qoff = 0;
  s->flags |= NS_DEAD;
  keel__io_close_locked(s->h);
}

bool keel__net_close_locked(net_sock *s) {
  if (s->tls != NULL && !(s->flags & NS_SHUT_WR))
    keel__tls_close_notify_locked(s); /* queued: flushed before the close */
  /* {linger, {true, 0}}: an abortive close, the queue dropped. */
  bool abort = s->linger_on && s->linger_secs == 0;
  if (s->qhead == NULL || abort || (s->flags & (NS_BROKEN | NS_LISTEN))) {
    keel__net_close_now_locked(s);
    return true;
  }
  /* Waiters see the handle stale from now on; the poll thread flushes
   * and closes (keel__net_flush_locked). */
  forget_waiters(s);
  s->flags |= NS_CLOSING;
  s->active = KEEL_NET_PASSIVE;
  return false;
}

/* ---- waiters ------------------------------------------------------------- */

int keel__net_wl_add(net_wlist *l, uint64_t e) {
  for (uint32_t i = 0; i < l->n; i++)
    if (l->v[i] == e)
      return KEEL_OK;
  if (l->n == l->cap) {
    uint32_t cap = l->cap != 0 ? 2 * l->cap : 2;
    uint64_t *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = e;
  return KEEL_OK;
}

bool keel__net_wl_remove(net_wlist *l, uint64_t e) {
  for (uint32_t i = 0; i < l->n; i++)
    if (l->v[i] == e) {
      memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
      l->n--;
      return true;
    }
  return false;
}

void keel__net_wake_all(net_sock *s, net_wlist *l) {
  for (uint32_t i = 0; i < l->n; i++) {
    keel_term pid = l->v[i] & NW_PID_MASK;
    if ((l->v[i] >> NW_KIND_SHIFT) == NW_NOTIFY)
      keel__net_notify(pid, "tcp_writable", s->h, KEEL_NONE);
    else
      keel__io_send(pid, wake_atom);
  }
  l->n = 0;
  if (l->cap > 8) { /* a burst of waiters: give the memory back */
    free(l->v);
    l->v = NULL;
    l->cap = 0;
  }
}

uint64_t keel__net_deadline(int64_t timeout_ms) {
  if (timeout_ms < 0)
    return UINT64_MAX;
  return keel_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
}

static bool match_wake(keel_term msg, void *arg) {
  (void)arg;
  return msg == wake_atom;
}

static int wait_thread(net_sock *s, bool write, uint64_t deadline) {
  int fd = keel__io_fd(s->h);
  keel__net_unlock(s);
  uint64_t now = keel_monotonic_ns();
  if (now >= deadline)
    return KEEL_ETIMEDOUT;
  /* Bounded slices: a close by another thread is seen within one. */
  uint64_t left_ms = (deadline - now + 999999u) / 1000000u;
  struct pollfd pf = {.fd = fd, .events = write ? POLLOUT : POLLIN};
  poll(&pf, 1, left_ms < 50 ? (int)left_ms : 50);
  return KEEL_OK;
}

int keel__net_wait(net_sock *s, bool write, uint64_t deadline) {
  keel_proc *p = keel_current();
  if (p == NULL)
    return wait_thread(s, write, deadline);
  keel_socket h = s->h;
  if (!keel_proc_is_fiber(p)) {
    keel__net_unlock(s);
    return KEEL_ESTATE;
  }
  uint64_t e = keel_self(p) | NW_FIBER << NW_KIND_SHIFT;
  int rc = keel__net_wl_add(write ? &s->ww : &s->rw, e);
  keel__net_unlock(s);
  if (rc != KEEL_OK)
    return rc;
  int64_t tmo = KEEL_INFINITY;
  if (deadline != UINT64_MAX) {
    uint64_t now = keel_monotonic_ns();
    tmo =
        now >= deadline ? 0 : (int64_t)((deadline - now + 999999u) / 1000000u);
  }
  keel_term msg;
  rc = keel_receive(p, match_wake, NULL, tmo, &msg);
  if (rc == KEEL_OK)
    return KEEL_OK;
  /* Withdraw; a wake already sent (under the lock) must be consumed. */
  bool pending = true;
  net_sock *s2 = keel__net_lock(h);
  if (s2 != NULL) {
    pending = !keel__net_wl_remove(write ? &s2->ww : &s2->rw, e);
    keel__net_unlock(s2);
  }
  if (pending)
    keel_receive(p, match_wake, NULL, KEEL_INFINITY, &msg);
  return rc;
}

/* ---- messages ------------------------------------------------------------ */

void keel__net_notify(keel_term to, const char *tag, keel_socket s,
                      keel_term extra) {
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_term port = keel_net_port(&h, s);
  keel_term t = extra == KEEL_NONE
                    ? keel_tuple(&h, 2, keel_atom(tag), port)
                    : keel_tuple(&h, 3, keel_atom(tag), port, extra);
  if (t != KEEL_NONE)
    keel__io_send(to, t);
  keel_heap_destroy(&h);
}

const char *keel__net_tag(const net_sock *s, const char *tcp_tag) {
  if (s->kind == NK_UDP && strcmp(tcp_tag, "tcp_passive") == 0)
    return "udp_passive";
  if (s->tls == NULL)
    return tcp_tag;
  if (strcmp(tcp_tag, "tcp") == 0)
    return "ssl";
  if (strcmp(tcp_tag, "tcp_closed") == 0)
    return "ssl_closed";
  if (strcmp(tcp_tag, "tcp_error") == 0)
    return "ssl_error";
  if (strcmp(tcp_tag, "tcp_passive") == 0)
    return "ssl_passive";
  return tcp_tag;
}

keel_term keel__net_errno_atom(int e) {
  switch (e) {
  case ECONNRESET:
    return keel_atom("econnreset");
  case EPIPE:
    return keel_atom("epipe");
  case ETIMEDOUT:
    return keel_atom("etimedout");
  case ECONNREFUSED:
    return keel_atom("econnrefused");
  case EHOSTUNREACH:
    return keel_atom("ehostunreach");
  case EMFILE:
    return keel_atom("emfile");
  case ENFILE:
    return keel_atom("enfile");
  case ENOBUFS:
    return keel_atom("enobufs");
  case ENOMEM:
    return keel_atom("enomem");
  default:
    return keel_atom("eio");
  }
}

/* ---- poll thread ----------------------------------------------------------
 */

static void on_event(void *obj, uint64_t h, uint32_t events) {
  (void)h;
  net_sock *s = obj;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    s->flags |= NS_RREADY;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    s->flags |= NS_RDHUP;
  if (s->flags & NS_LISTEN) {
    if (s->ww.n > 0)
      keel__net_serve_async_locked(s);
    if (s->rw.n > 0)
      keel__net_wake_all(s, &s->rw);
    return;
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
    keel__net_flush_locked(s);
  if (s->flags & NS_DEAD)
    return; /* the flush of a lingering socket closed it */
  if (s->flags & NS_CLOSING) {
    if (events & (EPOLLHUP | EPOLLERR)) /* the peer is gone */
      keel__net_close_now_locked(s);
    return;
  }
  if (!(s->flags & NS_RREADY))
    return;
  if (s->active != KEEL_NET_PASSIVE)
    keel__net_deliver_active_locked(s);
  else if (s->rw.n > 0)
    keel__net_wake_all(s, &s->rw);
}
