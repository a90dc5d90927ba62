/* A property test of the signal machinery in the deterministic
 * simulation: processes make random link, unlink, monitor, demonitor,
 * exit, trap, spawn_link and send calls on each other; once the node is
 * quiescent (nothing can run, nothing is in flight) the relations of the
 * survivors must be consistent:
 *   - links are symmetric: a live process has an active link to b exactly
 *     when b has one to a, and nobody keeps a link to a dead process;
 *   - a live process monitors only live processes, and is monitored only
 *     by live ones that monitor it with the same ref;
 *   - nothing is left half-done (no UNLINKING entry, no queued signal);
 *   - once everyone is gone no message or timer is left.
 * Each seed replays exactly; a failure names its KEEL_SEED. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"
#include "runtime/signal.h"

#define WORKERS 6
#define OPS 60

static keel_term workers[WORKERS];

typedef struct worker_arg {
  uint64_t rng;
  int index;
} worker_arg;

static uint64_t next_rand(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static void short_child(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 3, &m);
  keel_stop(self, keel_atom("child_done"));
}

/* One random operation of worker `me` on a random peer. */
static void random_op(keel_proc *self, worker_arg *a, keel_heap *h,
                      keel_term *refs, int *nrefs) {
  uint64_t r = next_rand(&a->rng);
  keel_term peer = workers[(r >> 8) % WORKERS];
  keel_term m;
  switch (r % 12) {
  case 0:
  case 1:
    (void)keel_link(self, peer);
    break;
  case 2:
  case 3:
    (void)keel_unlink(self, peer);
    break;
  case 4:
    if (*nrefs < 32)
      (void)keel_monitor(self, peer, 0, h, &refs[(*nrefs)++]);
    break;
  case 5:
    if (*nrefs > 0)
      (void)keel_demonitor(self, refs[(r >> 16) % (unsigned)*nrefs],
                           (r >> 20) & 1 ? KEEL_DEMONITOR_FLUSH : 0);
    break;
  case 6:
    (void)keel_send(peer, keel_small((int64_t)(r & 0xff)));
    break;
  case 7:
    (void)keel_trap_exit(self, (r >> 12) & 1);
    break;
  case 8:
    if ((r >> 24) % 8 == 0) /* rarely: one of the reasons */
      (void)keel_exit(peer, (r >> 28) % 3 == 0   ? KEEL_ATOM(KILL)
                            : (r >> 28) % 3 == 1 ? KEEL_ATOM(NORMAL)
                                                 : keel_atom("shot"));
    break;
  case 9: {
    keel_spawn_opts so = {.link = true};
    (void)keel_spawn_fiber(short_child, NULL, &so, NULL);
    break;
  }
  case 10:
    (void)keel_receive(self, NULL, NULL, 0, &m);
    break;
  default:
    (void)keel_fiber_yield(self);
    break;
  }
}

static void worker(keel_proc *self, void *arg) {
  worker_arg *a = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term refs[32];
  int nrefs = 0;
  keel_term m;
  /* Wait until every worker's pid is known. */
  keel_term go = keel_atom("go");
  while (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK &&
         m != go)
    ;
  for (int i = 0; i < OPS; i++)
    random_op(self, a, &h, refs, &nrefs);
  /* Then keep taking whatever comes, forever. */
  while (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK)
    ;
  keel_heap_destroy(&h);
}

/* The checks, on the quiescent simulated node (nothing runs: the owner-only
 * tables can be read from here). */
static void check_relations(uint64_t seed) {
  rt_node *n = keel__rt;
  keel_term pids[64];
  size_t np = keel_processes(pids, 64);
  cr_assert_leq(np, 64);
  for (size_t i = 0; i < np; i++) {
    keel_proc *p = keel__rt_lookup(n, keel_pid_local_number(pids[i]));
    cr_assert_not_null(p);
    cr_assert(!keel__mbox_has_mail(p) || !(atomic_load(&p->ctl) & RT_SIGPEND),
              "seed %llu: a signal still queued", (unsigned long long)seed);
    rt_ext *x = p->ext;
    if (x == NULL)
      continue;
    for (uint32_t k = 0; k < x->cap; k++) {
      rt_ent *e = &x->tab[k];
      uint64_t kind = e->key >> RT_EK_SHIFT, v = e->key & RT_EK_VAL_MASK;
      if (e->key == 0 || kind == RT_EK_ALIAS)
        continue;
      if (kind == RT_EK_LINK) {
        keel_proc *q = keel__rt_lookup(n, v);
        /* An unlink toward a process that died meanwhile stays unlinking
         * (link.c); toward a live one it must have finished. */
        if (e->state == RT_LINK_UNLINKING) {
          cr_assert_null(q, "seed %llu: an unlink never finished",
                         (unsigned long long)seed);
          continue;
        }
        cr_assert_not_null(q, "seed %llu: %llu has a link to dead %llu",
                           (unsigned long long)seed,
                           (unsigned long long)p->pid_number,
                           (unsigned long long)v);
        rt_ent *back =
            keel__rt_ent_find(q->ext, RT_EK_KEY(RT_EK_LINK, p->pid_number));
        cr_assert(back != NULL && back->state == RT_LINK_ACTIVE,
                  "seed %llu: a one-sided link", (unsigned long long)seed);
      } else {
        keel_proc *q = keel__rt_lookup(n, e->peer);
        cr_assert_not_null(q, "seed %llu: a monitor with a dead side",
                           (unsigned long long)seed);
        uint64_t other = kind == RT_EK_MON ? RT_EK_MON_BY : RT_EK_MON;
        rt_ent *back = keel__rt_ent_find(q->ext, RT_EK_KEY(other, v));
        cr_assert(back != NULL && back->peer == p->pid_number,
                  "seed %llu: a one-sided monitor", (unsigned long long)seed);
      }
    }
  }
}

static void handle_lazy_signals(uint64_t seed) {
  keel_term pids[64];
  size_t np = keel_processes(pids, 64);
  for (size_t i = 0; i < np; i++) {
    keel_process_info_t pi;
    cr_assert_eq(keel_process_info_ex(
                     pids[i], KEEL_PINFO_NO_QUEUE | KEEL_PINFO_NO_SYMBOL, &pi),
                 KEEL_OK);
  }
  cr_assert_eq(keel_sim_run(NULL, NULL, SIM_MAX_STEPS), KEEL_OK,
               "seed %llu: quiescent after the lazy signals",
               (unsigned long long)seed);
}

static bool all_gone(void *arg) {
  (void)arg;
  return keel_processes(NULL, 0) == 0;
}

Test(sim_props, relations_stay_consistent_under_random_signals) {
  uint64_t first = sim_seed_first(), count = sim_seed_count() * 5;
  for (uint64_t seed = first; seed < first + count; seed++) {
    start_sim(seed);
    static worker_arg args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
      args[i] = (worker_arg){.rng = seed * 1000 + (uint64_t)i, .index = i};
      cr_assert_eq(keel_spawn_fiber(worker, &args[i], NULL, &workers[i]),
                   KEEL_OK);
    }
    for (int i = 0; i < WORKERS; i++)
      cr_assert_eq(keel_send(workers[i], keel_atom("go")), KEEL_OK);
    cr_assert_eq(keel_sim_run(NULL, NULL, SIM_MAX_STEPS), KEEL_OK,
                 "seed %llu: quiescent", (unsigned long long)seed);
    /* Monitor and demonitor signals do not wake an idle process: they may
     * still wait in a mailbox. Introspection makes their receivers handle
     * them; then the node must settle again. */
    handle_lazy_signals(seed);
    check_relations(seed);
    /* Everyone goes; nothing may be left. */
    keel_term pids[64];
    size_t np = keel_processes(pids, 64);
    for (size_t i = 0; i < np; i++)
      cr_assert_eq(keel_exit(pids[i], KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_until(all_gone, NULL));
    cr_assert_eq(keel_sim_run(NULL, NULL, SIM_MAX_STEPS), KEEL_OK);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.messages_live, 0, "seed %llu: messages left",
                 (unsigned long long)seed);
    cr_assert_eq(st.timers, 0, "seed %llu: timers left",
                 (unsigned long long)seed);
    stop_sim();
  }
}
