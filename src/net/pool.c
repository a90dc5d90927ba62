/*
 * pool.c - an acceptor pool (as ranch): N acceptor fibers accept on one
 * listening socket and hand each connection to a process started by the
 * user's callback.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "net/net_internal.h"

int keel__net_listen_as(const keel_net_listen_opts *o, keel_term owner,
                        keel_socket *out);

struct keel_net_pool {
  keel_socket listen;
  keel_net_start_fn start;
  void *arg;
  _Atomic unsigned refs; /* acceptors alive + the owner's (until stop) */
};

static void pool_release(keel_net_pool *p) {
  if (atomic_fetch_sub(&p->refs, 1) == 1)
    free(p);
}

static void acceptor_end(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  pool_release(state);
}

static void hand_over(keel_net_pool *p, keel_socket c) {
  keel_term pid = 0;
  int rc = p->start(c, p->arg, &pid);
  if (rc >= 0)
    rc = keel_net_controlling_process(c, pid);
  if (rc < 0) {
    keel_net_close(c);
    return;
  }
  keel__net_notify(pid, "tcp_handoff", c, KEEL_NONE);
}

static bool match_none(keel_term msg, void *arg) {
  (void)msg;
  (void)arg;
  return false;
}

static void acceptor(keel_proc *self, void *arg) {
  keel_net_pool *p = arg;
  for (;;) {
    keel_socket c;
    int rc = keel_net_accept(p->listen, KEEL_INFINITY, &c);
    if (rc == KEEL_OK) {
      hand_over(p, c);
    } else if (rc == KEEL_ECLOSED) {
      return;
    } else {
      /* Out of descriptors or memory: back off a little (ranch too). */
      keel_term msg;
      keel_receive(self, match_none, NULL, 10, &msg);
    }
  }
}

int keel_net_pool_start(const keel_net_pool_opts *o, keel_net_pool **out) {
  if (o == NULL || out == NULL || o->start == NULL)
    return KEEL_EINVAL;
  keel_net_pool *p = calloc(1, sizeof *p);
  if (p == NULL)
    return KEEL_ENOMEM;
  p->start = o->start;
  p->arg = o->arg;
  int rc = keel__net_listen_as(&o->listen, 0, &p->listen);
  if (rc != KEEL_OK) {
    free(p);
    return rc;
  }
  unsigned n = o->acceptors != 0 ? o->acceptors : 10;
  atomic_init(&p->refs, 1);
  keel_spawn_opts so = {
      .terminate = acceptor_end,
  };
  for (unsigned i = 0; i < n && rc == KEEL_OK; i++) {
    atomic_fetch_add(&p->refs, 1);
    rc = keel_spawn_fiber(acceptor, p, &so, NULL);
    if (rc != KEEL_OK)
      atomic_fetch_sub(&p->refs, 1);
  }
  if (rc != KEEL_OK) {
    keel_net_pool_stop(p);
    return rc;
  }
  *out = p;
  return KEEL_OK;
}

keel_socket keel_net_pool_socket(const keel_net_pool *pool) {
  return pool != NULL ? pool->listen : KEEL_SOCKET_NONE;
}

void keel_net_pool_stop(keel_net_pool *pool) {
  if (pool == NULL)
    return;
  keel_net_close(pool->listen);
  pool_release(pool);
}
