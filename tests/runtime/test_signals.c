/* The guarantees of exit signals, links and monitors (G-numbers of the
 * reference: see docs/semantics.md), each as a named test run with 1, 2
 * and 8 schedulers. Scenarios run inside fiber processes that record what
 * they observed; the test thread waits for them (bounded) and asserts. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"
#include "runtime/signal.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct obs {
  keel_term peer;    /* a pid the scenario needs */
  keel_term reason;  /* an observed reason (atoms only) */
  atomic_long n;     /* a count the scenario reports */
  atomic_long bad;   /* violations seen */
  atomic_int rc;     /* a return code */
  atomic_bool flag;  /* a yes/no answer */
  atomic_long phase; /* progress marker */
} obs;

static keel_term atom(const char *s) {
  return keel_atom(s);
}

static bool m_exit_from(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 3 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(EXIT) &&
         keel_tuple_get(m, 1) == *(keel_term *)arg;
}

static bool m_down_ref(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 5 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), *(keel_term *)arg);
}

static bool m_is(keel_term m, void *arg) {
  return m == *(keel_term *)arg;
}

/* Waits for a 'DOWN' of ref and returns its reason (an atom), or
 * KEEL_NONE on timeout. */
static keel_term await_down(keel_proc *self, keel_term ref) {
  keel_term m;
  if (keel_receive(self, m_down_ref, &ref, TIMEOUT_S * 1000, &m) != KEEL_OK)
    return KEEL_NONE;
  return keel_tuple_get(m, 4);
}

/* Handler that ignores every message except 'stop' and answers 'ping'
 * messages {ping, From} with 'pong'. */
static keel_handler_status idler(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 2 &&
      keel_tuple_get(msg, 0) == atom("ping"))
    (void)keel_send(keel_tuple_get(msg, 1), atom("pong"));
  return KEEL_CONTINUE;
}

/* Handler that stops with the reason it is sent. */
static keel_handler_status stopper(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  return keel_stop(self, msg);
}

/* Whether pid answers a ping within the bound (it is alive). */
static bool pings(keel_proc *self, keel_term pid) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  (void)keel_send(pid, keel_tuple(&h, 2, atom("ping"), keel_self(self)));
  keel_term pong = atom("pong"), m;
  return keel_receive(self, m_is, &pong, 2000, &m) == KEEL_OK;
}

/* Runs fn as a fiber with each scheduler count on threads, then in the
 * deterministic simulation for each seed (see rt_test.h); fn reports with
 * signal_event() and check() asserts on o afterwards, given a description
 * of the configuration (a failing seed replays with KEEL_SEED=<n>). */
static void each_config(keel_fiber_fn fn, void (*check)(obs *, const char *)) {
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    obs o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(keel_spawn_fiber(fn, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%s)", cfg);
    check(&o, cfg);
    config_stop();
  }
}

/* ---- G1, G2: ordering ----------------------------------------------- */

#define SENDERS 4
#define PER_SENDER 2000

typedef struct g1_arg {
  keel_term receiver;
  int id;
} g1_arg;

/* A sender: links to the receiver, then sends PER_SENDER numbered messages
 * with monitor/demonitor/unlink/link calls interleaved, then dies with
 * reason {done, Id}. */
static void g1_sender(keel_proc *self, void *arg) {
  g1_arg *a = arg;
  uint64_t buf[32];
  keel_heap h;
  (void)keel_link(self, a->receiver);
  for (int i = 0; i < PER_SENDER; i++) {
    keel_heap_init_fixed(&h, buf, 32);
    (void)keel_send(a->receiver,
                    keel_tuple(&h, 2, keel_small(a->id), keel_small(i)));
    if (i % 97 == 0) {
      keel_term ref;
      (void)keel_monitor(self, a->receiver, 0, &h, &ref);
      (void)keel_demonitor(self, ref, 0);
    }
    if (i % 131 == 0) {
      (void)keel_unlink(self, a->receiver);
      (void)keel_link(self, a->receiver);
    }
  }
  keel_heap_init_fixed(&h, buf, 32);
  keel_stop(self, keel_tuple(&h, 2, atom("done"), keel_small(a->id)));
}

static void g1_receiver(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_trap_exit(self, true);
  static g1_arg args[SENDERS];
  keel_term pids[SENDERS];
  long next[SENDERS] = {0};
  for (int s = 0; s < SENDERS; s++) {
    args[s].receiver = keel_self(self);
    args[s].id = s;
    (void)keel_spawn_fiber(g1_sender, &args[s], NULL, &pids[s]);
  }
  int exits = 0;
  while (exits < SENDERS) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, TIMEOUT_S * 1000, &m) != KEEL_OK)
      break;
    if (keel_tuple_get(m, 0) == KEEL_ATOM(EXIT)) {
      keel_term r = keel_tuple_get(m, 2);
      int id = (int)keel_small_value(keel_tuple_get(r, 1));
      /* G2: the death comes after every message of that sender. */
      if (keel_tuple_get(m, 1) != pids[id] || next[id] != PER_SENDER)
        atomic_fetch_add(&o->bad, 1);
      exits++;
      continue;
    }
    int id = (int)keel_small_value(keel_tuple_get(m, 0));
    long seq = keel_small_value(keel_tuple_get(m, 1));
    if (seq != next[id]) /* G1: pairwise FIFO */
      atomic_fetch_add(&o->bad, 1);
    next[id] = seq + 1;
    atomic_fetch_add(&o->n, 1);
  }
  atomic_store(&o->phase, exits);
  signal_event();
}

static void g1_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "order violations with %s", ns);
  cr_assert_eq(atomic_load(&o->n), SENDERS * PER_SENDER);
  cr_assert_eq(atomic_load(&o->phase), SENDERS);
}

Test(signals, g01_g02_pairwise_fifo_across_signal_kinds_and_death_last) {
  each_config(g1_receiver, g1_check);
}

/* G2 with a monitor: the 'DOWN' comes after the dead process's messages. */
static void g2_child(keel_proc *self, void *arg) {
  keel_term parent = *(keel_term *)arg;
  keel_term go = atom("go"), m;
  (void)keel_receive(self, m_is, &go, TIMEOUT_S * 1000, &m);
  for (int i = 0; i < 100; i++)
    (void)keel_send(parent, keel_small(i));
}

static void g2_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_term me = keel_self(self), child, ref;
  keel_heap h;
  keel_heap_init(&h);
  (void)keel_spawn_fiber(g2_child, &me, NULL, &child);
  (void)keel_monitor(self, child, 0, &h, &ref);
  (void)keel_send(child, atom("go"));
  long expect = 0;
  for (;;) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, TIMEOUT_S * 1000, &m) != KEEL_OK)
      break;
    if (keel_is_tuple(m)) {
      o->reason = keel_tuple_get(m, 4);
      break;
    }
    if (keel_small_value(m) != expect++)
      atomic_fetch_add(&o->bad, 1);
  }
  atomic_store(&o->n, expect);
  keel_heap_destroy(&h);
  signal_event();
}

static void g2_check(obs *o, const char *ns) {
  (void)ns;
  cr_assert_eq(atomic_load(&o->bad), 0);
  cr_assert_eq(atomic_load(&o->n), 100, "all messages before the DOWN");
  cr_assert_eq(o->reason, KEEL_ATOM(NORMAL));
}

Test(signals, g02_messages_before_down) {
  each_config(g2_scenario, g2_check);
}

/* ---- G5: signals overtake a message backlog ------------------------- */

static atomic_long g5_handled;
static pthread_mutex_t g5_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g5_cv = PTHREAD_COND_INITIALIZER;
static bool g5_go;

static keel_handler_status g5_worker(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)st, (void)msg;
  if (atomic_fetch_add(&g5_handled, 1) == 0) {
    /* The first message holds the worker until the backlog and the kill
     * are queued behind it. */
    pthread_mutex_lock(&g5_mu);
    signal_event();
    while (!g5_go)
      pthread_cond_wait(&g5_cv, &g5_mu);
    pthread_mutex_unlock(&g5_mu);
  }
  return KEEL_CONTINUE;
}

static void g5_watcher(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  (void)keel_monitor(self, o->peer, 0, &h, &ref);
  signal_event();
  o->reason = await_down(self, ref);
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals, g05_kill_overtakes_a_message_backlog) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&g5_handled, 0);
    g5_go = false;
    obs o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(keel_spawn(g5_worker, NULL, NULL, &o.peer), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(g5_watcher, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1)); /* monitoring */
    cr_assert_eq(keel_send(o.peer, keel_small(0)), KEEL_OK);
    cr_assert(wait_events(2)); /* the worker holds */
    for (int i = 0; i < 10000; i++)
      cr_assert_eq(keel_send(o.peer, keel_small(i)), KEEL_OK);
    cr_assert_eq(keel_exit(o.peer, KEEL_ATOM(KILL)), KEEL_OK);
    pthread_mutex_lock(&g5_mu);
    g5_go = true;
    pthread_cond_broadcast(&g5_cv);
    pthread_mutex_unlock(&g5_mu);
    cr_assert(wait_events(3));
    cr_assert_eq(o.reason, KEEL_ATOM(KILLED));
    /* At most the rest of one slice ran after the kill was queued. */
    cr_assert_lt(atomic_load(&g5_handled),
                 1 + KEEL_SLICE_BUDGET / KEEL_COST_MESSAGE + 1);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- G6 .. G10: exit signal semantics ------------------------------- */

/* Spawns an idler linked to self, exits it with `reason` as a link exit
 * (by making it stop with that reason), and reports whether self
 * survived (it is non-trapping). */
static void g6_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_term child;
  keel_spawn_opts so = {.link = true};
  (void)keel_spawn(stopper, NULL, &so, &child);
  keel_term ref;
  keel_heap h;
  keel_heap_init(&h);
  (void)keel_monitor(self, child, 0, &h, &ref);
  (void)keel_send(child, KEEL_ATOM(NORMAL)); /* it stops with 'normal' */
  o->reason = await_down(self, ref);
  /* A signal from the child after its death would have been handled by
   * now (FIFO): still alive. */
  atomic_store(&o->flag, true);
  keel_heap_destroy(&h);
  signal_event();
}

static void g6_check(obs *o, const char *ns) {
  (void)ns;
  cr_assert_eq(o->reason, KEEL_ATOM(NORMAL));
  cr_assert(atomic_load(&o->flag), "a normal link exit is ignored");
}

Test(signals, g06_normal_link_exit_ignored_by_non_trapping) {
  each_config(g6_scenario, g6_check);
}

/* G7: a linked process dying with `boom` (or `kill`) kills a non-trapping
 * partner with the same reason; observed by a monitor from outside. */
typedef struct g7_arg {
  keel_term reason;
  keel_term victim;
} g7_arg;

static void g7_victim(keel_proc *self, void *arg) {
  g7_arg *a = arg;
  keel_term child;
  keel_spawn_opts so = {.link = true};
  (void)keel_spawn(stopper, NULL, &so, &child);
  (void)keel_send(child, a->reason);
  keel_term never = atom("never"), m;
  (void)keel_receive(self, m_is, &never, KEEL_INFINITY, &m);
}

static void g7_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_term reasons[2] = {atom("boom"), KEEL_ATOM(KILL)};
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < 2; i++) {
    g7_arg a = {.reason = reasons[i]};
    keel_term victim, ref;
    keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
    (void)keel_spawn_fiber(g7_victim, &a, &so, &victim);
    if (await_down(self, ref) != reasons[i])
      atomic_fetch_add(&o->bad, 1);
  }
  keel_heap_destroy(&h);
  signal_event();
}

static void g7_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "same reason, kill stays kill (%s)",
               ns);
}

Test(signals, g07_link_exit_kills_with_same_reason_kill_included) {
  each_config(g7_scenario, g7_check);
}

/* G8: exit(P, kill) kills a trapping P with 'killed'; P's link partner
 * (trapping) receives 'killed'. */
static void g8_target(keel_proc *self, void *arg) {
  (void)arg;
  keel_trap_exit(self, true);
  keel_term never = atom("never"), m;
  (void)keel_receive(self, m_is, &never, KEEL_INFINITY, &m);
}

static void g8_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_trap_exit(self, true);
  keel_term target, ref;
  keel_heap h;
  keel_heap_init(&h);
  keel_spawn_opts so = {.link = true, .monitor_ref = &ref, .monitor_heap = &h};
  (void)keel_spawn_fiber(g8_target, NULL, &so, &target);
  (void)keel_exit(target, KEEL_ATOM(KILL));
  o->reason = await_down(self, ref);
  keel_term m;
  if (keel_receive(self, m_exit_from, &target, TIMEOUT_S * 1000, &m) == KEEL_OK)
    o->peer = keel_tuple_get(m, 2);
  keel_heap_destroy(&h);
  signal_event();
}

static void g8_check(obs *o, const char *ns) {
  (void)ns;
  cr_assert_eq(o->reason, KEEL_ATOM(KILLED));
  cr_assert_eq(o->peer, KEEL_ATOM(KILLED), "link partners see killed");
}

Test(signals, g08_exit_kill_is_untrappable_and_becomes_killed) {
  each_config(g8_scenario, g8_check);
}

/* G9: a trapping process gets {'EXIT', From, R} for exit(P, R), R normal
 * included, and for link exits. G10: exit(P, normal) to a non-trapping P is
 * dropped; exit(self(), normal) ends the caller with 'normal'. */
static void g10_self_exit(keel_proc *self, void *arg) {
  (void)arg;
  (void)keel_exit(keel_self(self), KEEL_ATOM(NORMAL));
  keel_term never = atom("never"), m;
  (void)keel_receive(self, m_is, &never, KEEL_INFINITY, &m);
}

static void g9_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_trap_exit(self, true);
  keel_term me = keel_self(self), m;
  /* exit(self(), normal) while trapping: a message. */
  (void)keel_exit(me, KEEL_ATOM(NORMAL));
  if (keel_receive(self, m_exit_from, &me, TIMEOUT_S * 1000, &m) != KEEL_OK ||
      keel_tuple_get(m, 2) != KEEL_ATOM(NORMAL))
    atomic_fetch_add(&o->bad, 1);
  /* A link exit with 'normal' while trapping: a message too. */
  keel_term child;
  keel_spawn_opts so = {.link = true};
  (void)keel_spawn(stopper, NULL, &so, &child);
  (void)keel_send(child, KEEL_ATOM(NORMAL));
  if (keel_receive(self, m_exit_from, &child, TIMEOUT_S * 1000, &m) !=
          KEEL_OK ||
      keel_tuple_get(m, 2) != KEEL_ATOM(NORMAL))
    atomic_fetch_add(&o->bad, 2);
  /* G10: exit(P, normal) to a non-trapping idler: it survives. */
  keel_term idle;
  (void)keel_spawn(idler, NULL, NULL, &idle);
  (void)keel_exit(idle, KEEL_ATOM(NORMAL));
  if (!pings(self, idle))
    atomic_fetch_add(&o->bad, 4);
  (void)keel_send(idle, KEEL_ATOM(STOP));
  /* G10: exit(self(), normal) from a non-trapping process ends it. */
  keel_term ref, selfish;
  keel_heap h;
  keel_heap_init(&h);
  keel_spawn_opts so2 = {.monitor_ref = &ref, .monitor_heap = &h};
  (void)keel_spawn_fiber(g10_self_exit, NULL, &so2, &selfish);
  o->reason = await_down(self, ref);
  keel_heap_destroy(&h);
  signal_event();
}

static void g9_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "violations %ld with %s",
               atomic_load(&o->bad), ns);
  cr_assert_eq(o->reason, KEEL_ATOM(NORMAL));
}

Test(signals, g09_g10_trapping_and_normal_exits) {
  each_config(g9_scenario, g9_check);
}

/* ---- G11, G12: links to the dead, idempotent links ------------------ */

static void g11_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_term dead, ref, m;
  keel_heap h;
  keel_heap_init(&h);
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  (void)keel_spawn(stopper, NULL, &so, &dead);
  (void)keel_send(dead, KEEL_ATOM(NORMAL));
  (void)await_down(self, ref);
  atomic_store(&o->rc, keel_link(self, dead)); /* non-trapping */
  keel_trap_exit(self, true);
  if (keel_link(self, dead) != KEEL_OK ||
      keel_receive(self, m_exit_from, &dead, TIMEOUT_S * 1000, &m) != KEEL_OK ||
      keel_tuple_get(m, 2) != KEEL_ATOM(NOPROC))
    atomic_fetch_add(&o->bad, 1);
  keel_heap_destroy(&h);
  signal_event();
}

static void g11_check(obs *o, const char *ns) {
  (void)ns;
  cr_assert_eq(atomic_load(&o->rc), KEEL_ENOPROC);
  cr_assert_eq(atomic_load(&o->bad), 0);
}

Test(signals, g11_link_to_dead_gives_noproc) {
  each_config(g11_scenario, g11_check);
}

static void g12_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_trap_exit(self, true);
  keel_term child, m;
  (void)keel_spawn(stopper, NULL, NULL, &child);
  for (int i = 0; i < 5; i++)
    (void)keel_link(self, child);
  rt_ent *e = keel__rt_ent_find(
      self->ext, RT_EK_KEY(RT_EK_LINK, keel_pid_local_number(child)));
  atomic_store(&o->flag, e != NULL && self->ext->nlinks == 1);
  (void)keel_send(child, atom("bye"));
  if (keel_receive(self, m_exit_from, &child, TIMEOUT_S * 1000, &m) !=
          KEEL_OK ||
      keel_tuple_get(m, 2) != atom("bye"))
    atomic_fetch_add(&o->bad, 1);
  atomic_store(&o->phase, 1);
  signal_event();
  /* The test thread checks the child is fully gone, then says 'check'. */
  keel_term check = atom("check");
  (void)keel_receive(self, m_is, &check, TIMEOUT_S * 1000, &m);
  if (keel_receive(self, m_exit_from, &child, 0, &m) == KEEL_OK)
    atomic_fetch_add(&o->bad, 2); /* a second exit signal */
  signal_event();
}

static bool procs_are(void *arg) {
  keel_node_stats st;
  return keel_node_stats_get(&st) == KEEL_OK && st.processes == *(size_t *)arg;
}

/* Starts configuration c of NCONF threaded ones then the simulated seeds;
 * describes it in cfg. Returns false past the last one. */
Test(signals, g12_links_are_idempotent_one_death_one_exit) {
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    obs o;
    memset(&o, 0, sizeof o);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(g12_scenario, &o, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(1), "%s", cfg);
    /* only the scenario is left once the child's death is complete */
    size_t one = 1;
    cr_assert(wait_until(procs_are, &one), "%s", cfg);
    cr_assert_eq(keel_send(pid, atom("check")), KEEL_OK);
    cr_assert(wait_events(2), "%s", cfg);
    cr_assert(atomic_load(&o.flag), "one link entry (%s)", cfg);
    cr_assert_eq(atomic_load(&o.bad), 0, "%s", cfg);
    config_stop();
  }
}

/* ---- G13: the unlink guarantee -------------------------------------- */

#define G13_ROUNDS 300

static void g13_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_trap_exit(self, true);
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < G13_ROUNDS; i++) {
    keel_term child, ref, m;
    keel_spawn_opts so = {
        .link = true, .monitor_ref = &ref, .monitor_heap = &h};
    (void)keel_spawn(stopper, NULL, &so, &child);
    (void)keel_send(child, atom("crash")); /* races with the unlink */
    (void)keel_unlink(self, child);
    (void)keel_flush_exit(self, child);
    (void)await_down(self, ref); /* the child is dead and said all */
    if (keel_receive(self, m_exit_from, &child, 0, &m) == KEEL_OK)
      atomic_fetch_add(&o->bad, 1);
  }
  keel_heap_destroy(&h);
  signal_event();
}

static void g13_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "EXIT after unlink+flush (%s)", ns);
}

Test(signals, g13_unlink_guarantee) {
  each_config(g13_scenario, g13_check);
}

/* ---- G14: resources before notification ------------------------------ */

static void g14_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < 200; i++) {
    keel_term child, ref;
    keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
    (void)keel_spawn(stopper, NULL, &so, &child);
    if (keel_register(atom("g14_name"), child) != KEEL_OK)
      atomic_fetch_add(&o->bad, 1);
    (void)keel_send(atom("g14_name"), atom("bye"));
    (void)await_down(self, ref);
    if (keel_whereis(atom("g14_name")) != KEEL_ATOM(UNDEFINED) ||
        keel__rt_lookup(keel__rt, keel_pid_local_number(child)) != NULL)
      atomic_fetch_add(&o->bad, 1);
  }
  keel_heap_destroy(&h);
  signal_event();
}

static void g14_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "name or pid outlived DOWN (%s)", ns);
}

Test(signals, g14_name_and_pid_released_before_down) {
  each_config(g14_scenario, g14_check);
}

/* ---- G15: both sides agree after link/unlink races ------------------- */

typedef struct g15_arg {
  keel_term peer;
  uint32_t seed;
  int view; /* 1 linked, 0 not, -1 undecided */
} g15_arg;

static void g15_side(keel_proc *self, void *arg) {
  g15_arg *a = arg;
  keel_term go = atom("go"), m;
  (void)keel_receive(self, m_is, &go, TIMEOUT_S * 1000, &m);
  uint32_t x = a->seed;
  for (int i = 0; i < 64; i++) {
    x = x * 1103515245u + 12345u;
    if ((x >> 16) & 1)
      (void)keel_link(self, a->peer);
    else
      (void)keel_unlink(self, a->peer);
    if ((x >> 17) & 1)
      (void)keel_fiber_yield(self);
  }
  /* Two rounds of 'done': afterwards every link signal and every
   * acknowledgement between the two has been handled. */
  keel_term d1 = atom("done1"), d2 = atom("done2");
  (void)keel_send(a->peer, d1);
  (void)keel_receive(self, m_is, &d1, TIMEOUT_S * 1000, &m);
  (void)keel_send(a->peer, d2);
  (void)keel_receive(self, m_is, &d2, TIMEOUT_S * 1000, &m);
  rt_ent *e = keel__rt_ent_find(
      self->ext, RT_EK_KEY(RT_EK_LINK, keel_pid_local_number(a->peer)));
  __atomic_store_n(&a->view,
                   e == NULL                    ? 0
                   : e->state == RT_LINK_ACTIVE ? 1
                                                : -1,
                   __ATOMIC_RELEASE);
  keel_term never = atom("never");
  (void)keel_receive(self, m_is, &never, KEEL_INFINITY, &m);
}

static bool views_set(void *arg) {
  g15_arg *ab = arg;
  return __atomic_load_n(&ab[0].view, __ATOMIC_ACQUIRE) != -2 &&
         __atomic_load_n(&ab[1].view, __ATOMIC_ACQUIRE) != -2;
}

Test(signals, g15_link_protocol_sides_agree) {
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    uint32_t rounds = sim_mode ? 10 : 100;
    for (uint32_t seed = 1; seed <= rounds; seed++) {
      g15_arg ab[2] = {{.seed = seed, .view = -2},
                       {.seed = seed * 7919u, .view = -2}};
      keel_term pa, pb;
      cr_assert_eq(keel_spawn_fiber(g15_side, &ab[0], NULL, &pa), KEEL_OK);
      cr_assert_eq(keel_spawn_fiber(g15_side, &ab[1], NULL, &pb), KEEL_OK);
      ab[0].peer = pb;
      ab[1].peer = pa;
      /* The fibers read their peer only after 'go' (a message: ordered). */
      cr_assert_eq(keel_send(pa, atom("go")), KEEL_OK);
      cr_assert_eq(keel_send(pb, atom("go")), KEEL_OK);
      cr_assert(wait_until(views_set, ab), "round %u, %s", seed, cfg);
      cr_assert_geq(ab[0].view, 0, "round %u: unlinking stays (%s)", seed, cfg);
      cr_assert_eq(ab[0].view, ab[1].view, "round %u: sides disagree (%s)",
                   seed, cfg);
      cr_assert_eq(keel_exit(pa, KEEL_ATOM(KILL)), KEEL_OK);
      cr_assert_eq(keel_exit(pb, KEEL_ATOM(KILL)), KEEL_OK);
      size_t zero = 0;
      cr_assert(wait_until(procs_are, &zero), "%s", cfg);
    }
    config_stop();
  }
}

/* ---- G16, G17: monitors ---------------------------------------------- */

static void g16_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term dead, r0, r1, r2;
  keel_spawn_opts so = {.monitor_ref = &r0, .monitor_heap = &h};
  (void)keel_spawn(stopper, NULL, &so, &dead);
  (void)keel_send(dead, KEEL_ATOM(NORMAL));
  (void)await_down(self, r0);
  /* Two monitors of a dead pid: two independent 'DOWN' noproc. */
  (void)keel_monitor(self, dead, 0, &h, &r1);
  (void)keel_monitor(self, dead, 0, &h, &r2);
  if (keel_eq_exact(r1, r2) || await_down(self, r2) != KEEL_ATOM(NOPROC) ||
      await_down(self, r1) != KEEL_ATOM(NOPROC))
    atomic_fetch_add(&o->bad, 1);
  /* Exactly one each: nothing more for either ref. */
  keel_term m;
  if (keel_receive(self, m_down_ref, &r1, 0, &m) == KEEL_OK ||
      keel_receive(self, m_down_ref, &r2, 0, &m) == KEEL_OK)
    atomic_fetch_add(&o->bad, 2);
  /* Two monitors of a live process: both fire with its reason. */
  keel_term live;
  (void)keel_spawn(stopper, NULL, NULL, &live);
  (void)keel_monitor(self, live, 0, &h, &r1);
  (void)keel_monitor(self, live, 0, &h, &r2);
  (void)keel_send(live, atom("gone"));
  if (await_down(self, r1) != atom("gone") ||
      await_down(self, r2) != atom("gone"))
    atomic_fetch_add(&o->bad, 4);
  keel_heap_destroy(&h);
  signal_event();
}

static void g16_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "violations %ld (%s)",
               atomic_load(&o->bad), ns);
}

Test(signals, g16_monitor_noproc_and_one_down_per_monitor) {
  each_config(g16_scenario, g16_check);
}

static void g17_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  long fired = 0;
  for (int i = 0; i < 300; i++) {
    keel_term child, ref, guard, m;
    keel_spawn_opts so = {.monitor_ref = &guard, .monitor_heap = &h};
    (void)keel_spawn(stopper, NULL, &so, &child);
    (void)keel_monitor(self, child, 0, &h, &ref);
    (void)keel_send(child, atom("bye")); /* races with the demonitor */
    int was = keel_demonitor(self, ref, i % 2 ? KEEL_DEMONITOR_FLUSH : 0);
    (void)await_down(self, guard); /* the child's signals have all come */
    bool got = keel_receive(self, m_down_ref, &ref, 0, &m) == KEEL_OK;
    /* Without flush a DOWN may have been queued already, but only if the
     * demonitor found the monitor gone; with flush never. */
    if (got && (i % 2 || was == 1))
      atomic_fetch_add(&o->bad, 1);
    fired += was == 0;
    if (keel_demonitor(self, ref, 0) != 0) /* ended: 0 */
      atomic_fetch_add(&o->bad, 2);
  }
  atomic_store(&o->n, fired);
  keel_heap_destroy(&h);
  signal_event();
}

static void g17_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "DOWN after demonitor (%s)", ns);
}

Test(signals, g17_demonitor_guarantee) {
  each_config(g17_scenario, g17_check);
}

/* ---- G23: a blocked fiber killed runs no more user code -------------- */

static atomic_long g23_calls;

static bool g23_match(keel_term m, void *arg) {
  (void)m, (void)arg;
  atomic_fetch_add(&g23_calls, 1);
  return false;
}

static void g23_blocked(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  signal_event();
  (void)keel_receive(self, g23_match, NULL, KEEL_INFINITY, &m);
  atomic_fetch_add(&g23_calls, 1000); /* never reached */
}

static void g23_watch(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  (void)keel_monitor(self, o->peer, 0, &h, &ref);
  signal_event();
  o->reason = await_down(self, ref);
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals, g23_killed_while_blocked_runs_no_user_code) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&g23_calls, 0);
    obs o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(keel_spawn_fiber(g23_blocked, NULL, NULL, &o.peer), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(keel_spawn_fiber(g23_watch, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(2));
    /* A kill and then a message: the fiber handles the kill first when it
     * resumes, so the match function never sees the message. */
    cr_assert_eq(keel_exit(o.peer, atom("shot")), KEEL_OK);
    cr_assert_eq(keel_send(o.peer, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert(wait_events(3));
    cr_assert_eq(o.reason, atom("shot"));
    cr_assert_eq(atomic_load(&g23_calls), 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- names, aliases, spawn options ----------------------------------- */

Test(signals, names_register_whereis_unregister) {
  start_node(2, 0);
  keel_term a, b;
  cr_assert_eq(keel_spawn(idler, NULL, NULL, &a), KEEL_OK);
  cr_assert_eq(keel_spawn(idler, NULL, NULL, &b), KEEL_OK);
  keel_term name = atom("names_a");
  cr_assert_eq(keel_whereis(name), KEEL_ATOM(UNDEFINED));
  cr_assert_eq(keel_register(name, a), KEEL_OK);
  cr_assert_eq(keel_whereis(name), a);
  cr_assert_eq(keel_registered_name(a), name);
  cr_assert_eq(keel_register(name, b), KEEL_EEXIST, "name taken");
  cr_assert_eq(keel_register(atom("names_b"), a), KEEL_EEXIST, "a is named");
  cr_assert_eq(keel_register(KEEL_ATOM(UNDEFINED), b), KEEL_EBADARG);
  cr_assert_eq(keel_register(keel_small(1), b), KEEL_EBADARG);
  cr_assert_eq(keel_register(name, keel_small(1)), KEEL_EBADARG);
  cr_assert_eq(keel_send(atom("nobody_here"), KEEL_ATOM(OK)), KEEL_ENOPROC);
  cr_assert_eq(keel_send(name, KEEL_ATOM(STOP)), KEEL_OK);
  keel_node_stats st;
  do
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
  while (st.processes != 1);
  cr_assert_eq(keel_whereis(name), KEEL_ATOM(UNDEFINED), "released at death");
  cr_assert_eq(keel_register(name, a), KEEL_ENOPROC, "a is dead");
  cr_assert_eq(keel_register(name, b), KEEL_OK);
  cr_assert_eq(keel_unregister(name), KEEL_OK);
  cr_assert_eq(keel_unregister(name), KEEL_ENOENT);
  cr_assert_eq(keel_registered_name(b), KEEL_ATOM(UNDEFINED));
  cr_assert_eq(keel_register(atom("names_b"), b), KEEL_OK, "b is free again");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_whereis(name), KEEL_ATOM(UNDEFINED), "no node");
}

static void alias_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term al, m, one = keel_small(1), two = keel_small(2);
  (void)keel_alias(self, &h, &al);
  (void)keel_send(al, one);
  if (keel_receive(self, m_is, &one, TIMEOUT_S * 1000, &m) != KEEL_OK)
    atomic_fetch_add(&o->bad, 1);
  if (keel_unalias(self, al) != 1 || keel_unalias(self, al) != 0)
    atomic_fetch_add(&o->bad, 2);
  (void)keel_send(al, two);              /* dropped */
  (void)keel_send(keel_self(self), one); /* a marker behind it */
  (void)keel_receive(self, m_is, &one, TIMEOUT_S * 1000, &m);
  if (keel_receive(self, m_is, &two, 0, &m) == KEEL_OK)
    atomic_fetch_add(&o->bad, 4);
  /* A monitor alias with reply_demonitor: the first reply ends both. */
  keel_term server, ref;
  (void)keel_spawn(idler, NULL, NULL, &server);
  (void)keel_monitor(self, server,
                     KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, &h,
                     &ref);
  (void)keel_send(ref, one);
  (void)keel_send(ref, two); /* after the first: dropped */
  if (keel_receive(self, m_is, &one, TIMEOUT_S * 1000, &m) != KEEL_OK)
    atomic_fetch_add(&o->bad, 8);
  (void)keel_send(server, KEEL_ATOM(STOP));
  (void)keel_send(keel_self(self), one);
  (void)keel_receive(self, m_is, &one, TIMEOUT_S * 1000, &m);
  if (keel_demonitor(self, ref, 0) != 0)
    atomic_fetch_add(&o->bad, 16); /* ended by the reply */
  if (keel_receive(self, m_is, &two, 0, &m) == KEEL_OK)
    atomic_fetch_add(&o->bad, 32);
  keel_heap_destroy(&h);
  signal_event();
}

static void alias_check(obs *o, const char *ns) {
  cr_assert_eq(atomic_load(&o->bad), 0, "alias violations %ld (%s)",
               atomic_load(&o->bad), ns);
}

Test(signals, aliases_deliver_until_deactivated) {
  each_config(alias_scenario, alias_check);
}

Test(signals, api_errors) {
  cr_assert_eq(keel_exit(keel_pid_local(1), KEEL_ATOM(KILL)), KEEL_ESTATE);
  cr_assert_eq(keel_make_ref(NULL), KEEL_NONE);
  start_node(1, 0);
  keel_heap h;
  keel_heap_init(&h);
  keel_term r1 = keel_make_ref(&h), r2 = keel_make_ref(&h);
  cr_assert(keel_is_ref(r1));
  cr_assert(!keel_eq_exact(r1, r2), "refs are unique");
  cr_assert_eq(keel_exit(keel_small(3), KEEL_ATOM(KILL)), KEEL_EBADARG);
  cr_assert_eq(keel_exit(keel_pid_local(1), KEEL_NONE), KEEL_EINVAL);
  cr_assert_eq(keel_send(r1, KEEL_ATOM(OK)), KEEL_EBADARG, "not an alias");
  keel_spawn_opts so = {.link = true};
  cr_assert_eq(keel_spawn(idler, NULL, &so, NULL), KEEL_ESTATE,
               "spawn_link needs a calling process");
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- exit hooks -----------------------------------------------------------
 */

static atomic_long hook_calls;
static keel_term hook_pid, hook_reason;
static int hook_id = -1;

static void on_exit_hook(keel_term pid, keel_term reason, void *arg) {
  (void)arg;
  hook_pid = pid;
  hook_reason = reason; /* an atom in this test */
  atomic_fetch_add(&hook_calls, 1);
}

/* The hook has run by the time the 'DOWN' is seen. */
static void hook_scenario(keel_proc *self, void *arg) {
  obs *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term child, ref, plain, ref2;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  (void)keel_spawn(stopper, NULL, &so, &child);
  keel_spawn_opts so2 = {.monitor_ref = &ref2, .monitor_heap = &h};
  (void)keel_spawn(stopper, NULL, &so2, &plain);
  atomic_store(&o->rc, keel_exit_hook_arm(child, hook_id));
  (void)keel_exit_hook_arm(child, hook_id); /* twice: still once */
  (void)keel_send(plain, atom("unhooked"));
  (void)await_down(self, ref2);
  if (atomic_load(&hook_calls) != 0)
    atomic_fetch_add(&o->bad, 1); /* not armed: not called */
  (void)keel_send(child, atom("hooked"));
  (void)await_down(self, ref);
  if (atomic_load(&hook_calls) != 1 || hook_pid != child ||
      hook_reason != atom("hooked"))
    atomic_fetch_add(&o->bad, 2);
  if (keel_exit_hook_arm(child, hook_id) != KEEL_ENOPROC)
    atomic_fetch_add(&o->bad, 4);
  keel_heap_destroy(&h);
  signal_event();
}

static void hook_check(obs *o, const char *cfg) {
  cr_assert_eq(atomic_load(&o->rc), KEEL_OK, "%s", cfg);
  cr_assert_eq(atomic_load(&o->bad), 0, "hook violations %ld (%s)",
               atomic_load(&o->bad), cfg);
  atomic_store(&hook_calls, 0);
}

Test(signals, exit_hooks_run_once_before_down) {
  cr_assert_eq(keel_exit_hook_add(NULL, NULL), KEEL_EINVAL);
  hook_id = keel_exit_hook_add(on_exit_hook, NULL);
  cr_assert_geq(hook_id, 0);
  cr_assert_eq(keel_exit_hook_arm(keel_pid_local(1), hook_id), KEEL_ESTATE);
  each_config(hook_scenario, hook_check);
  start_node(1, 0);
  cr_assert_eq(keel_exit_hook_arm(keel_pid_local(1), KEEL_EXIT_HOOKS_MAX),
               KEEL_EINVAL);
  cr_assert_eq(keel_exit_hook_arm(keel_small(1), hook_id), KEEL_EBADARG);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  int extra = 0;
  while (keel_exit_hook_add(on_exit_hook, NULL) >= 0)
    extra++;
  cr_assert_eq(extra, KEEL_EXIT_HOOKS_MAX - 1 - hook_id, "hooks are bounded");
}

/* ---- a crash propagating along a chain of links ---------------------- */

#define CHAIN 6

/* Links to its predecessor (arg: the pid, KEEL_NONE for the first), then
 * waits; the one at index `trap_at` traps exits and reports the exit
 * message it gets. */
typedef struct chain_arg {
  keel_term prev;
  bool trap;
  keel_term got; /* the reason of the 'EXIT' a trapping member received */
} chain_arg;

static void chain_member(keel_proc *self, void *arg) {
  chain_arg *a = arg;
  if (a->trap)
    keel_trap_exit(self, true);
  if (a->prev != KEEL_NONE)
    (void)keel_link(self, a->prev);
  signal_event();
  keel_term m;
  while (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK) {
    if (keel_is_tuple(m) && keel_tuple_get(m, 0) == KEEL_ATOM(EXIT)) {
      a->got = keel_tuple_get(m, 2);
      signal_event();
    } else if (keel_is_tuple(m)) { /* {ping, From} */
      (void)keel_send(keel_tuple_get(m, 1), atom("pong"));
    } else if (keel_is_atom(m)) {
      keel_stop(self, m); /* crash with the atom as reason */
      return;
    }
  }
}

static void chain_watch(keel_proc *self, void *arg) {
  keel_term *pids = arg; /* CHAIN pids, then CHAIN reasons out */
  keel_heap h;
  keel_heap_init(&h);
  keel_term refs[CHAIN];
  for (int i = 0; i < CHAIN; i++)
    (void)keel_monitor(self, pids[i], 0, &h, &refs[i]);
  /* A monitor is set up when its target handles the request: a ping
   * answered after it (same pair, so in order) proves it. */
  for (int i = 0; i < CHAIN; i++)
    if (!pings(self, pids[i]))
      pids[CHAIN + i] = atom("no_pong");
  signal_event();
  for (int got = 0; got < CHAIN - 1; got++) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, 30000, &m) != KEEL_OK)
      break;
    for (int i = 0; i < CHAIN; i++)
      if (keel_eq_exact(keel_tuple_get(m, 1), refs[i]))
        pids[CHAIN + i] = keel_tuple_get(m, 4); /* atoms */
  }
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals, crash_propagates_along_links_until_a_trapping_process) {
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    /* 0 - 1 - 2 (traps) - 3 - 4 - 5: 5 crashes with 'boom'. 3, 4 and 5
     * die with 'boom'; 2 gets {'EXIT', 3, boom} and lives, so 0 and 1
     * never hear of it. */
    chain_arg a[CHAIN];
    keel_term watch[2 * CHAIN];
    memset(a, 0, sizeof a);
    for (int i = 0; i < CHAIN; i++) {
      a[i].prev = i == 0 ? KEEL_NONE : watch[i - 1];
      a[i].trap = i == 2;
      a[i].got = KEEL_NONE;
      cr_assert_eq(keel_spawn_fiber(chain_member, &a[i], NULL, &watch[i]),
                   KEEL_OK);
      cr_assert(wait_events(i + 1), "%s", cfg);
    }
    for (int i = 0; i < CHAIN; i++)
      watch[CHAIN + i] = KEEL_NONE;
    cr_assert_eq(keel_spawn_fiber(chain_watch, watch, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(CHAIN + 1), "%s", cfg);
    cr_assert_eq(keel_send(watch[CHAIN - 1], atom("boom")), KEEL_OK);
    /* The trapping member's message, and the three deaths. */
    cr_assert(wait_events(CHAIN + 2), "%s", cfg);
    keel_node_stats st;
    do
      cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    while (st.processes > 4 && (sim_mode ? keel_sim_step() >= 0 : true));
    cr_assert_eq(a[2].got, atom("boom"), "the trapping member gets it (%s)",
                 cfg);
    cr_assert_eq(st.processes, 4, "0, 1, 2 and the watcher live (%s)", cfg);
    for (int i = 0; i < 3; i++)
      cr_assert_neq(keel__rt_lookup(keel__rt, keel_pid_local_number(watch[i])),
                    NULL, "member %d lives (%s)", i, cfg);
    /* exit(0, kill): 0 dies with 'killed' and passes 'killed' on to 1
     * (G8); 2 traps again, and the watcher has its five 'DOWN's. */
    cr_assert_eq(keel_exit(watch[0], KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_events(CHAIN + 4), "%s", cfg);
    for (int i = 3; i < CHAIN; i++)
      cr_assert_eq(watch[CHAIN + i], atom("boom"), "member %d: boom (%s)", i,
                   cfg);
    cr_assert_eq(watch[CHAIN + 0], KEEL_ATOM(KILLED), "%s", cfg);
    cr_assert_eq(watch[CHAIN + 1], KEEL_ATOM(KILLED), "%s", cfg);
    config_stop();
  }
}

/* ---- pids of other nodes --------------------------------------------------
 */

static keel_term routed_pid, routed_msg;
static int routed;

static int router(keel_term pid, keel_term msg, void *arg) {
  routed_pid = pid;
  routed_msg = msg; /* atoms and a pid living in the test's heap */
  routed++;
  return *(int *)arg;
}

Test(signals, remote_pids_go_to_the_router) {
  start_node(1, 0);
  keel_heap h;
  keel_heap_init(&h);
  keel_pid_parts parts = {
      .node = keel_atom("other@host"), .id = 5, .serial = 0, .creation = 3};
  keel_term remote = keel_pid_make(&h, &parts);
  cr_assert(keel_is_pid(remote) && !keel_is_local_pid(remote));
  cr_assert_eq(keel_send(remote, KEEL_ATOM(OK)), KEEL_OK, "dropped silently");
  int answer = KEEL_ENOMEM;
  keel_set_remote_router(router, &answer);
  cr_assert_eq(keel_send(remote, keel_atom("hello")), KEEL_ENOMEM);
  cr_assert_eq(routed, 1);
  cr_assert(keel_eq_exact(routed_pid, remote));
  cr_assert_eq(routed_msg, keel_atom("hello"));
  keel_set_remote_router(NULL, NULL);
  cr_assert_eq(keel_send(remote, KEEL_ATOM(OK)), KEEL_OK);
  cr_assert_eq(routed, 1);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- G28: nothing leaks ---------------------------------------------- */

Test(signals, g28_no_leaks_after_deaths_with_relations) {
  start_node(2, 0);
  keel_term a, b;
  cr_assert_eq(keel_spawn(idler, NULL, NULL, &a), KEEL_OK);
  cr_assert_eq(keel_spawn(idler, NULL, NULL, &b), KEEL_OK);
  obs o;
  memset(&o, 0, sizeof o);
  cr_assert_eq(keel_spawn_fiber(g13_scenario, &o, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(keel_send(a, KEEL_ATOM(STOP)), KEEL_OK);
  cr_assert_eq(keel_send(b, KEEL_ATOM(STOP)), KEEL_OK);
  keel_node_stats st;
  do
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
  while (st.processes != 0 || st.messages_live != 0);
  cr_assert_eq(st.messages_live, 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
