/*
 * bench_otp_registry.c - the Registry workloads of `keel bench otp`.
 *
 * Unique keys: one fiber registers itself under regs integer keys (value
 * nil), then looks every key up (keel_registry_lookup, a list of
 * {Pid, Value} as Registry.lookup/2 returns). Duplicate keys: dups handler
 * processes register under one key of a duplicate registry, then a fiber
 * makes rounds keel_registry_dispatch calls whose callback sends to every
 * entry (Registry.dispatch/3); the figure is dispatches per second, each
 * reaching dups processes. Both registries have one partition, Elixir's
 * default. The BEAM side is bench/erl/bench_otp_registry.exs.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_otp_internal.h"
#include "keel/clock.h"
#include "keel/registry.h"
#include "keel/runtime.h"

typedef struct reg_run {
  keel_registry *reg, *reg1;
  const otp_sizes *z;
  double register_per_s, lookup_per_s, dispatch_per_s, register1_per_s;
  long nprocs;
  _Atomic long subscribed;
  _Atomic int failed;
  otp_done done;
} reg_run;

static int lookups(reg_run *rr) {
  keel_heap h;
  keel_heap_init(&h);
  int rc = KEEL_OK;
  for (long i = 0; i < rr->z->regs && rc == KEEL_OK; i++) {
    keel_term out;
    if ((i & 1023) == 0) { /* drop the lists built so far */
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
    rc = keel_registry_lookup(rr->reg, keel_small(i), &h, &out);
    if (rc == KEEL_OK && !keel_is_cons(out))
      rc = KEEL_ENOENT;
  }
  keel_heap_destroy(&h);
  return rc;
}

/* One registering process: registers per_proc keys from base on its
 * first message. */
typedef struct registrar {
  reg_run *rr;
  long base;
} registrar;

static keel_handler_status register_keys(keel_proc *self, keel_term msg,
                                         void *state) {
  (void)self;
  (void)msg;
  registrar *g = state;
  reg_run *rr = g->rr;
  keel_term nil = keel_atom("nil");
  int rc = KEEL_OK;
  for (long j = 0; j < rr->z->per_proc && rc == KEEL_OK; j++)
    rc = keel_registry_register(rr->reg, keel_small(g->base + j), nil);
  if (rc != KEEL_OK)
    atomic_store(&rr->failed, rc);
  if (atomic_fetch_add(&rr->subscribed, 1) + 1 == rr->nprocs)
    otp_done_signal(&rr->done, 0);
  return KEEL_CONTINUE;
}

static void lookup_fiber(keel_proc *self, void *arg) {
  (void)self;
  reg_run *rr = arg;
  uint64_t t0 = keel_monotonic_ns();
  int rc = lookups(rr);
  rr->lookup_per_s = (double)rr->z->regs / otp_secs(t0, keel_monotonic_ns());
  if (rc != KEEL_OK)
    fprintf(stderr, "keel bench otp: registry lookup: %s\n", keel_strerror(rc));
  otp_done_signal(&rr->done, rc == KEEL_OK ? 0 : -1);
}

/* regs keys registered by regs / per_proc processes at once (spawned
 * first, then each told to go), then looked up by one fiber. */
static int run_unique(reg_run *rr) {
  keel_registry_opts o = {.keys = KEEL_REGISTRY_UNIQUE};
  rr->nprocs = rr->z->regs / rr->z->per_proc;
  keel_term *pids = calloc((size_t)rr->nprocs, sizeof *pids);
  registrar *gs = calloc((size_t)rr->nprocs, sizeof *gs);
  int rc =
      pids != NULL && gs != NULL && keel_registry_new(&o, &rr->reg) == KEEL_OK
          ? 0
          : -1;
  for (long i = 0; i < rr->nprocs && rc == 0; i++) {
    gs[i] = (registrar){rr, i * rr->z->per_proc};
    rc = keel_spawn(register_keys, &gs[i], NULL, &pids[i]) == KEEL_OK ? 0 : -1;
  }
  otp_done_init(&rr->done);
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < rr->nprocs && rc == 0; i++)
    rc = keel_send(pids[i], KEEL_NIL) == KEEL_OK ? 0 : -1;
  if (rc == 0)
    rc = otp_done_wait(&rr->done);
  rr->register_per_s = (double)rr->z->regs / otp_secs(t0, keel_monotonic_ns());
  otp_done_destroy(&rr->done);
  if (rc == 0 && atomic_load(&rr->failed) != KEEL_OK) {
    fprintf(stderr, "keel bench otp: registry register: %s\n",
            keel_strerror(atomic_load(&rr->failed)));
    rc = -1;
  }
  otp_done_init(&rr->done);
  if (rc == 0)
    rc = keel_spawn_fiber(lookup_fiber, rr, NULL, NULL) == KEEL_OK
             ? otp_done_wait(&rr->done)
             : -1;
  otp_done_destroy(&rr->done);
  free(pids);
  free(gs);
  return rc;
}

/* One fiber registers itself under regs1 keys of a fresh unique registry
 * (the shape in which a process's own keys pile up). */
static void one_proc_fiber(keel_proc *self, void *arg) {
  (void)self;
  reg_run *rr = arg;
  keel_term nil = keel_atom("nil");
  int rc = KEEL_OK;
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < rr->z->regs1 && rc == KEEL_OK; i++)
    rc = keel_registry_register(rr->reg1, keel_small(i), nil);
  rr->register1_per_s =
      (double)rr->z->regs1 / otp_secs(t0, keel_monotonic_ns());
  otp_done_signal(&rr->done, rc == KEEL_OK ? 0 : -1);
}

static int run_one_proc(reg_run *rr) {
  keel_registry_opts o = {.keys = KEEL_REGISTRY_UNIQUE};
  if (keel_registry_new(&o, &rr->reg1) != KEEL_OK)
    return -1;
  otp_done_init(&rr->done);
  int rc = keel_spawn_fiber(one_proc_fiber, rr, NULL, NULL) == KEEL_OK
               ? otp_done_wait(&rr->done)
               : -1;
  otp_done_destroy(&rr->done);
  return rc;
}

/* A duplicate-key entry: registers on its first message (nil), then drops
 * what it receives. */
static keel_handler_status member(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  reg_run *rr = state;
  if (msg == KEEL_NIL &&
      keel_registry_register(rr->reg, KEEL_ATOM(OK), KEEL_NIL) == KEEL_OK &&
      atomic_fetch_add(&rr->subscribed, 1) + 1 == rr->z->dups)
    otp_done_signal(&rr->done, 0);
  return KEEL_CONTINUE;
}

typedef struct dispatch_arg {
  keel_term msg;
  int failed;
} dispatch_arg;

static void send_all(keel_term entries, void *arg) {
  dispatch_arg *da = arg;
  for (keel_term l = entries; keel_is_cons(l); l = keel_tl(l))
    da->failed |= keel_send(keel_tuple_get(keel_hd(l), 0), da->msg) != KEEL_OK;
}

static void dispatch_fiber(keel_proc *self, void *arg) {
  (void)self;
  reg_run *rr = arg;
  dispatch_arg da = {0};
  int rc = 0;
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < rr->z->rounds && rc == 0; i++) {
    da.msg = keel_small(i);
    if (keel_registry_dispatch(rr->reg, KEEL_ATOM(OK), send_all, &da) != 1 ||
        da.failed)
      rc = -1;
  }
  rr->dispatch_per_s =
      (double)rr->z->rounds / otp_secs(t0, keel_monotonic_ns());
  otp_done_signal(&rr->done, rc);
}

static int run_duplicate(reg_run *rr) {
  keel_registry_opts o = {.keys = KEEL_REGISTRY_DUPLICATE};
  if (keel_registry_new(&o, &rr->reg) != KEEL_OK)
    return -1;
  otp_done_init(&rr->done);
  int rc = 0;
  for (long i = 0; i < rr->z->dups && rc == 0; i++) {
    keel_term pid;
    rc = keel_spawn(member, rr, NULL, &pid) == KEEL_OK &&
                 keel_send(pid, KEEL_NIL) == KEEL_OK
             ? 0
             : -1;
  }
  if (rc == 0)
    rc = otp_done_wait(&rr->done);
  otp_done_destroy(&rr->done);
  if (rc != 0)
    return -1;
  otp_done_init(&rr->done);
  rc = keel_spawn_fiber(dispatch_fiber, rr, NULL, NULL) == KEEL_OK
           ? otp_done_wait(&rr->done)
           : -1;
  otp_done_destroy(&rr->done);
  return rc;
}

int otp_run_registry(const otp_sizes *z, double *out) {
  reg_run *rr = calloc(1, sizeof *rr);
  if (rr == NULL ||
      otp_node_up((size_t)(z->dups + z->regs / z->per_proc) + 1024) != 0) {
    free(rr);
    return -1;
  }
  rr->z = z;
  int rc = run_unique(rr);
  keel_registry *unique = rr->reg;
  rr->reg = NULL;
  atomic_store(&rr->subscribed, 0);
  if (rc == 0)
    rc = run_duplicate(rr);
  if (rc == 0)
    rc = run_one_proc(rr);
  (void)keel_node_stop();
  (void)keel_registry_delete(unique);
  (void)keel_registry_delete(rr->reg);
  (void)keel_registry_delete(rr->reg1);
  out[M_REG_REGISTER] = rr->register_per_s;
  out[M_REG_LOOKUP] = rr->lookup_per_s;
  out[M_REG_DISPATCH] = rr->dispatch_per_s;
  out[M_REG_REGISTER_1P] = rr->register1_per_s;
  free(rr);
  return rc;
}
