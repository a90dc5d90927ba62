/*
 * demo_node.c - the supervised pipeline of `keel run` (see demo_node.h),
 * declared as the application `demo`.
 */
#include "demo_node.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "demo.h"
#include "keel/application.h"
#include "keel/clock.h"
#include "keel/error.h"
#include "keel/gen_server.h"
#include "keel/supervisor.h"

enum { TICK_MS = 10 };

typedef struct worker_arg {
  struct keel_demo *demo;
  unsigned idx;
} worker_arg; /* a worker child's start argument */

struct keel_demo {
  keel_demo_opts o;
  keel_ets_tab table;
  keel_term root;
  keel_term worker_names[KEEL_DEMO_MAX_WORKERS];
  worker_arg wargs[KEEL_DEMO_MAX_WORKERS];
  uint64_t rng[KEEL_DEMO_MAX_WORKERS];
  _Atomic uint64_t crash_at_ns; /* worker 0's next crash, 0: none */
  uint64_t last_tick_ns;        /* producer only */
  double owed;                  /* jobs due, not yet cast */
  /* Whether each child printed its first start: the workers, then the
   * aggregator and the producer. Written only by that child's processes,
   * one after the other. */
  bool announced[KEEL_DEMO_MAX_WORKERS + 2];
};

static keel_term atom_job, atom_done, atom_tick, name_aggregator;

/* The running demo: one per node, read by every callback. */
static keel_demo *the_demo;

/* ---- workers ------------------------------------------------------------- */

/* Slots of announced[] of the aggregator and the producer. */
#define SLOT_AGGREGATOR KEEL_DEMO_MAX_WORKERS
#define SLOT_PRODUCER (KEEL_DEMO_MAX_WORKERS + 1)

/* The registered name of the server in slot i. */
static const char *slot_name(const keel_demo *d, unsigned i, char *buf,
                             size_t size) {
  if (i == SLOT_AGGREGATOR)
    return "demo_aggregator";
  if (i == SLOT_PRODUCER)
    return "demo_producer";
  const char *n = keel_atom_name(d->worker_names[i], NULL);
  snprintf(buf, size, "%s", n != NULL ? n : "?");
  return buf;
}

/* Prints "demo: started NAME" the first time the server of slot i starts
 * (restarts are reported by the supervisor). */
static void announce(unsigned i) {
  keel_demo *d = the_demo;
  if (d == NULL || d->announced[i])
    return;
  d->announced[i] = true;
  char buf[40];
  printf("demo: started %s\n", slot_name(d, i, buf, sizeof buf));
}

/* Workers, aggregator and producer: the state is a small integer (the
 * worker's index, or the slot of the others). */
static keel_gs_ret s_init(keel_gen_server *gs, keel_term arg, keel_term *st) {
  *st = arg;
  announce((unsigned)keel_small_value(arg));
  return keel_gs_ok(gs);
}

/* They trap exits, so the supervisor's shutdown runs terminate: the
 * ordered shutdown is printed (a crash is reported by the supervisor). */
static void s_terminate(keel_gen_server *gs, keel_term reason, keel_term st) {
  (void)gs;
  keel_demo *d = the_demo;
  if (d == NULL || reason != KEEL_ATOM(SHUTDOWN))
    return;
  char buf[40];
  printf("demo: stopped %s\n",
         slot_name(d, (unsigned)keel_small_value(st), buf, sizeof buf));
}

static keel_gs_ret w_cast(keel_gen_server *gs, keel_term msg, keel_term *st) {
  keel_demo *d = the_demo;
  worker_arg *wa = &d->wargs[keel_small_value(*st)];
  if (!keel_is_tuple(msg) || keel_tuple_get(msg, 0) != atom_job)
    return keel_gs_ok(gs);
  const char *what = NULL;
  if (d->rng[wa->idx] == 0)
    d->rng[wa->idx] = 0x9e3779b97f4a7c15ull ^ ((uint64_t)wa->idx << 32);
  int rc = keel_demo_roundtrip(&d->rng[wa->idx], &what);
  if (rc != KEEL_OK)
    return keel_gs_stop(gs, keel_atom(what != NULL ? what : "codec_error"));
  keel_heap *h = keel_gs_heap(gs);
  (void)keel_gen_server_cast(name_aggregator,
                             keel_tuple(h, 2, atom_done, keel_small(wa->idx)));
  uint64_t at = atomic_load(&d->crash_at_ns);
  if (wa->idx == 0 && at != 0 && keel_monotonic_ns() >= at) {
    atomic_store(&d->crash_at_ns,
                 keel_monotonic_ns() + (uint64_t)(d->o.crash_every * 1e9));
    return keel_gs_stop(gs, keel_atom("simulated_crash"));
  }
  return keel_gs_ok(gs);
}

static const keel_gen_server_module worker_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "demo_worker",
    .init = s_init,
    .handle_cast = w_cast,
    .terminate = s_terminate,
};

static int start_worker(keel_proc *sup, void *arg, keel_term extra,
                        keel_term *pid) {
  (void)sup;
  (void)extra;
  worker_arg *wa = arg;
  keel_gen_server_opts o = {
      .name = wa->demo->worker_names[wa->idx], .link = true, .trap_exit = true};
  return keel_gen_server_start(&worker_mod, keel_small(wa->idx), &o, pid);
}

/* ---- aggregator ---------------------------------------------------------- */

static keel_gs_ret a_cast(keel_gen_server *gs, keel_term msg, keel_term *st) {
  (void)st;
  keel_demo *d = the_demo;
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 2 &&
      keel_tuple_get(msg, 0) == atom_done) {
    keel_heap *h = keel_gs_heap(gs);
    keel_term key = keel_tuple_get(msg, 1);
    keel_term out;
    (void)keel_ets_update_counter(d->table, key, keel_small(1),
                                  keel_tuple(h, 2, key, keel_small(0)), h,
                                  &out);
  }
  return keel_gs_ok(gs);
}

static const keel_gen_server_module aggregator_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "demo_aggregator",
    .init = s_init,
    .handle_cast = a_cast,
    .terminate = s_terminate,
};

/* ---- producer ------------------------------------------------------------ */

static keel_gs_ret p_init(keel_gen_server *gs, keel_term arg, keel_term *st) {
  *st = arg;
  announce((unsigned)keel_small_value(arg));
  keel_timer_ref t;
  (void)keel_send_after(keel_gs_self(gs), atom_tick, TICK_MS, &t);
  return keel_gs_ok(gs);
}

static keel_gs_ret p_info(keel_gen_server *gs, keel_term msg, keel_term *st) {
  (void)st;
  keel_demo *d = the_demo;
  if (msg != atom_tick)
    return keel_gs_ok(gs);
  /* Jobs due since the last tick: the rate holds whatever the timer's
   * actual period. */
  uint64_t t = keel_monotonic_ns();
  uint64_t since = d->last_tick_ns != 0 ? t - d->last_tick_ns : 0;
  d->last_tick_ns = t;
  d->owed += (double)d->o.rate * (double)since / 1e9;
  unsigned batch = d->owed < 1e6 ? (unsigned)d->owed : 1000000u;
  d->owed -= batch;
  keel_heap *h = keel_gs_heap(gs);
  for (unsigned k = 0; k < batch; k++) {
    keel_term job = keel_tuple(h, 2, atom_job, keel_small(k));
    (void)keel_gen_server_cast(d->worker_names[k % d->o.workers], job);
  }
  keel_timer_ref timer;
  (void)keel_send_after(keel_gs_self(gs), atom_tick, TICK_MS, &timer);
  return keel_gs_ok(gs);
}

static const keel_gen_server_module producer_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "demo_producer",
    .init = p_init,
    .handle_info = p_info,
    .terminate = s_terminate,
};

/* ---- the tree ------------------------------------------------------------ */

typedef struct named_server {
  const keel_gen_server_module *mod;
  const char *name;
  unsigned slot;
} named_server;

static const named_server aggregator = {&aggregator_mod, "demo_aggregator",
                                        SLOT_AGGREGATOR};
static const named_server producer = {&producer_mod, "demo_producer",
                                      SLOT_PRODUCER};

static int start_named(keel_proc *sup, void *arg, keel_term extra,
                       keel_term *pid) {
  (void)sup;
  (void)extra;
  const named_server *ns = arg;
  keel_gen_server_opts o = {
      .name = keel_atom(ns->name), .link = true, .trap_exit = true};
  return keel_gen_server_start(ns->mod, keel_small(ns->slot), &o, pid);
}

static int start_workers_sup(keel_proc *sup, void *arg, keel_term extra,
                             keel_term *pid) {
  (void)sup;
  (void)extra;
  keel_demo *d = arg;
  keel_sup_child_spec ch[KEEL_DEMO_MAX_WORKERS];
  for (unsigned i = 0; i < d->o.workers; i++)
    ch[i] = (keel_sup_child_spec){.id = d->worker_names[i],
                                  .start = start_worker,
                                  .arg = &d->wargs[i],
                                  .restart = KEEL_SUP_PERMANENT};
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT;
  spec.children = ch;
  spec.nchildren = d->o.workers;
  spec.name = keel_atom("demo_workers");
  return keel_sup_start_link(&spec, pid);
}

/* The application's start: the root supervisor, linked to its master. */
static int demo_app_start(const keel_application *app, keel_app_type type,
                          keel_term *sup, void **state) {
  (void)app;
  (void)type;
  keel_demo *d = the_demo;
  keel_sup_child_spec ch[] = {
      {.id = keel_atom("demo_aggregator"),
       .start = start_named,
       .arg = (void *)&aggregator},
      {.id = keel_atom("demo_workers"),
       .start = start_workers_sup,
       .arg = d,
       .type = KEEL_SUP_SUPERVISOR,
       .shutdown = KEEL_INFINITY},
      {.id = keel_atom("demo_producer"),
       .start = start_named,
       .arg = (void *)&producer},
  };
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT;
  spec.children = ch;
  spec.nchildren = sizeof ch / sizeof ch[0];
  spec.name = keel_atom("demo_sup");
  int rc = keel_sup_start_link(&spec, sup);
  if (rc == KEEL_OK)
    d->root = *sup;
  *state = d;
  return rc;
}

static void demo_app_prep_stop(const keel_application *app, void *state) {
  (void)app;
  (void)state;
  printf("demo: application stopping\n");
}

static void demo_app_stop(const keel_application *app, void *state) {
  (void)app;
  (void)state;
  printf("demo: application stopped\n");
}

static const keel_application demo_app = {.version = KEEL_APPLICATION_V1,
                                          .name = "demo",
                                          .vsn = "1.0.0",
                                          .description =
                                              "the keel run demo pipeline",
                                          .start = demo_app_start,
                                          .prep_stop = demo_app_prep_stop,
                                          .stop = demo_app_stop};

static void demo_free(keel_demo *d) {
  (void)keel_ets_delete(d->table);
  if (the_demo == d)
    the_demo = NULL;
  free(d);
}

int keel_demo_start(const keel_demo_opts *opts, keel_demo **out) {
  if (opts->workers == 0 || opts->workers > KEEL_DEMO_MAX_WORKERS)
    return KEEL_EINVAL;
  keel_demo *d = calloc(1, sizeof *d);
  if (d == NULL)
    return KEEL_ENOMEM;
  d->o = *opts;
  if (d->o.rate == 0)
    d->o.rate = 2000;
  atom_job = keel_atom("job");
  atom_done = keel_atom("done");
  atom_tick = keel_atom("tick");
  name_aggregator = keel_atom("demo_aggregator");
  for (unsigned i = 0; i < d->o.workers; i++) {
    char name[32];
    snprintf(name, sizeof name, "demo_worker_%u", i);
    d->worker_names[i] = keel_atom(name);
    d->wargs[i] = (worker_arg){d, i};
  }
  if (d->o.crash_every > 0)
    atomic_store(&d->crash_at_ns,
                 keel_monotonic_ns() + (uint64_t)(d->o.crash_every * 1e9));
  keel_ets_opts to = {.type = KEEL_ETS_SET,
                      .access = KEEL_ETS_PUBLIC,
                      .name = keel_atom("demo_results")};
  int rc = keel_ets_new(&to, &d->table);
  if (rc != KEEL_OK) {
    free(d);
    return rc;
  }
  the_demo = d;
  rc = keel_application_load(&demo_app);
  if (rc == KEEL_OK || rc == KEEL_EEXIST)
    rc = keel_application_ensure_all_started(keel_atom("demo"),
                                             KEEL_APP_PERMANENT, NULL, NULL);
  if (rc != KEEL_OK) {
    (void)keel_application_unload(keel_atom("demo"));
    demo_free(d);
    return rc;
  }
  *out = d;
  return KEEL_OK;
}

keel_term keel_demo_root(const keel_demo *d) {
  return d->root;
}

uint64_t keel_demo_done(const keel_demo *d, unsigned i) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term v = KEEL_NONE;
  uint64_t n = 0;
  if (keel_ets_lookup_element(d->table, keel_small(i), 2, KEEL_NONE, &h, &v) ==
          KEEL_OK &&
      keel_is_small(v))
    n = (uint64_t)keel_small_value(v);
  keel_heap_destroy(&h);
  return n;
}

void keel_demo_stop(keel_demo *d) {
  if (d == NULL)
    return;
  /* prep_stop, the tree in reverse start order, stop; nothing to do when
   * the tree already ended (the root gave up) */
  (void)keel_application_stop(keel_atom("demo"));
  (void)keel_application_unload(keel_atom("demo"));
  demo_free(d);
}
