/* G18: links and monitors to pids of another node, and the loss of the
 * connection. A fake remote node stands in for the distribution layer:
 * the send router and the signal hook record what the runtime hands to
 * it, and the scenario declares the connection up and down. Runs with 1,
 * 2 and 8 schedulers, then in the simulation for each seed. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

/* ---- the fake remote node ------------------------------------------------ */

static struct {
  atomic_int sent, link, unlink, monitor, demonitor, exit, exit2;
  _Atomic keel_term exit_reason; /* an atom */
  _Atomic keel_term exit2_from, exit2_reason;
} far_seen;

static int far_router(keel_term pid, keel_term msg, void *arg) {
  (void)pid, (void)msg, (void)arg;
  atomic_fetch_add(&far_seen.sent, 1);
  return KEEL_OK;
}

static void far_hook(keel_dist_signal kind, keel_term from, keel_term to,
                     keel_term ref, keel_term reason, void *arg) {
  (void)from, (void)to, (void)arg;
  switch (kind) {
  case KEEL_DIST_LINK:
    atomic_fetch_add(&far_seen.link, 1);
    break;
  case KEEL_DIST_UNLINK:
    atomic_fetch_add(&far_seen.unlink, 1);
    break;
  case KEEL_DIST_MONITOR:
    if (ref != KEEL_NONE)
      atomic_fetch_add(&far_seen.monitor, 1);
    break;
  case KEEL_DIST_DEMONITOR:
    atomic_fetch_add(&far_seen.demonitor, 1);
    break;
  case KEEL_DIST_EXIT:
    atomic_fetch_add(&far_seen.exit, 1);
    atomic_store(&far_seen.exit_reason, reason);
    break;
  case KEEL_DIST_EXIT2:
    atomic_fetch_add(&far_seen.exit2, 1);
    atomic_store(&far_seen.exit2_from, from); /* local pid or undefined */
    atomic_store(&far_seen.exit2_reason, reason);
    break;
  }
}

/* Pids of two remote nodes: far (lost in the scenario) and near (stays). */
static keel_heap pid_heap;
static keel_term far_pid, near_pid;

static keel_term atom(const char *s) {
  return keel_atom(s);
}

static void make_pids(void) {
  keel_heap_init(&pid_heap);
  keel_pid_parts a = {.node = atom("far@host"), .id = 5, .creation = 3};
  keel_pid_parts b = {.node = atom("near@host"), .id = 6, .creation = 3};
  far_pid = keel_pid_make(&pid_heap, &a);
  near_pid = keel_pid_make(&pid_heap, &b);
  cr_assert(keel_is_pid(far_pid) && !keel_is_local_pid(far_pid));
}

/* ---- helpers ------------------------------------------------------------- */

static bool m_tag(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 2 &&
         keel_tuple_get(m, 0) == *(keel_term *)arg;
}

static bool m_exit_from(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 3 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(EXIT) &&
         keel_eq_exact(keel_tuple_get(m, 1), *(keel_term *)arg);
}

static bool m_down_ref(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 5 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), *(keel_term *)arg);
}

#define WAIT_MS (TIMEOUT_S * 1000)

/* Sends {Tag, Value} to `to`. */
static void report(keel_term to, const char *tag, keel_term v) {
  uint64_t buf[4];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 4);
  (void)keel_send(to, keel_tuple(&h, 2, atom(tag), v));
}

/* The value of the next {Tag, V} (KEEL_NONE on timeout). */
static keel_term await_tag(keel_proc *self, const char *tag) {
  keel_term t = atom(tag), m;
  if (keel_receive(self, m_tag, &t, WAIT_MS, &m) != KEEL_OK)
    return KEEL_NONE;
  return keel_tuple_get(m, 1);
}

/* The reason of the 'DOWN' of ref; with pid_out, also checks the pid in
 * it is `pid` (KEEL_NONE when not). */
static keel_term await_down(keel_proc *self, keel_term ref, keel_term pid) {
  keel_term m;
  if (keel_receive(self, m_down_ref, &ref, WAIT_MS, &m) != KEEL_OK)
    return KEEL_NONE;
  if (pid != KEEL_NONE && !keel_eq_exact(keel_tuple_get(m, 3), pid))
    return KEEL_NONE;
  return keel_tuple_get(m, 4);
}

/* ---- the processes ------------------------------------------------------- */

/* Monitors far twice and near once; reports whether both far 'DOWN's come
 * with noconnection and far's pid, and the near monitor is still active. */
static void monitorer(keel_proc *self, void *arg) {
  keel_term boss = *(keel_term *)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term r1, r2, r3;
  bool ok = keel_monitor(self, far_pid, 0, &h, &r1) == KEEL_OK &&
            keel_monitor(self, far_pid, 0, &h, &r2) == KEEL_OK &&
            keel_monitor(self, near_pid, 0, &h, &r3) == KEEL_OK &&
            !keel_eq_exact(r1, r2);
  report(boss, "ready", KEEL_ATOM(OK));
  keel_term nc = atom("noconnection");
  ok = ok && await_down(self, r1, far_pid) == nc &&
       await_down(self, r2, far_pid) == nc &&
       keel_demonitor(self, r3, 0) == 1; /* near's did not fire */
  keel_heap_destroy(&h);
  report(boss, "monitorer", ok ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
}

/* Traps exits, links far twice (one link); reports the exit's reason and
 * whether a second one came with it (it must not: one link, one exit). */
static void trapper(keel_proc *self, void *arg) {
  keel_term boss = *(keel_term *)arg;
  keel_trap_exit(self, true);
  bool ok = keel_link(self, far_pid) == KEEL_OK &&
            keel_link(self, far_pid) == KEEL_OK;
  report(boss, "ready", KEEL_ATOM(OK));
  keel_term m;
  keel_term reason = KEEL_NONE;
  if (keel_receive(self, m_exit_from, &far_pid, WAIT_MS, &m) == KEEL_OK)
    reason = keel_tuple_get(m, 2);
  if (keel_receive(self, m_exit_from, &far_pid, 0, &m) == KEEL_OK)
    ok = false;
  report(boss, "trapper", ok ? reason : KEEL_ATOM(FALSE));
}

/* Links far without trapping: dies of the connection loss. */
static void linker(keel_proc *self, void *arg) {
  keel_term boss = *(keel_term *)arg;
  if (keel_link(self, far_pid) != KEEL_OK)
    return;
  report(boss, "ready", KEEL_ATOM(OK));
  keel_term m;
  (void)keel_receive(self, NULL, NULL, WAIT_MS, &m);
  report(boss, "linker_survived", KEEL_ATOM(TRUE));
}

/* Links and unlinks far, then monitors it: when the 'DOWN' comes, no exit
 * from far is queued (the unlinked link did not fire). */
static void unlinker(keel_proc *self, void *arg) {
  keel_term boss = *(keel_term *)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_trap_exit(self, true);
  keel_term ref;
  bool ok = keel_link(self, far_pid) == KEEL_OK &&
            keel_unlink(self, far_pid) == KEEL_OK &&
            keel_monitor(self, far_pid, 0, &h, &ref) == KEEL_OK;
  report(boss, "ready", KEEL_ATOM(OK));
  keel_term m;
  ok = ok && await_down(self, ref, far_pid) == atom("noconnection") &&
       keel_receive(self, m_exit_from, &far_pid, 0, &m) == KEEL_ETIMEDOUT;
  keel_heap_destroy(&h);
  report(boss, "unlinker", ok ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
}

/* Links near, then ends with reason 'bye' (the hook hears of it). */
static void leaver(keel_proc *self, void *arg) {
  (void)arg;
  (void)keel_link(self, near_pid);
  keel_stop(self, atom("bye"));
}

typedef struct g18_obs {
  atomic_int ready_ok, told, told_again, down_twice, is_up_far, is_up_near;
  _Atomic keel_term monitorer, trapper, linker_down, unlinker;
  _Atomic keel_term down_after, exit_after, link_dead_down, new_conn_down;
  _Atomic keel_term leaver_down;
} g18_obs;

/* Spawns fn monitored; returns the ref (built in h). */
static keel_term spawn_watched(keel_proc *self, keel_fiber_fn fn, void *arg,
                               keel_heap *h) {
  (void)self;
  keel_term ref = KEEL_NONE;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = h};
  if (keel_spawn_fiber(fn, arg, &so, NULL) != KEEL_OK)
    return KEEL_NONE;
  return ref;
}

static void conductor(keel_proc *self, void *arg) {
  g18_obs *o = arg;
  keel_term me = keel_self(self);
  keel_heap h;
  keel_heap_init(&h);
  int ok = keel_dist_nodeup(atom("far@host")) == KEEL_OK &&
           keel_dist_nodeup(atom("near@host")) == KEEL_OK &&
           keel_dist_nodeup(atom("far@host")) == KEEL_OK;
  keel_fiber_fn kids[] = {monitorer, trapper, linker, unlinker};
  keel_term linker_ref = KEEL_NONE;
  for (int i = 0; i < 4; i++) {
    keel_term ref = spawn_watched(self, kids[i], &me, &h);
    if (kids[i] == linker)
      linker_ref = ref;
  }
  for (int i = 0; i < 4; i++)
    ok &= await_tag(self, "ready") == KEEL_ATOM(OK);
  atomic_store(&o->ready_ok, ok);
  /* The connection to far is lost. */
  atomic_store(&o->told, keel_dist_nodedown(atom("far@host")));
  atomic_store(&o->told_again, keel_dist_nodedown(atom("far@host")));
  atomic_store(&o->monitorer, await_tag(self, "monitorer"));
  atomic_store(&o->trapper, await_tag(self, "trapper"));
  atomic_store(&o->unlinker, await_tag(self, "unlinker"));
  atomic_store(&o->linker_down, await_down(self, linker_ref, KEEL_NONE));
  atomic_store(&o->is_up_far, keel_dist_is_up(atom("far@host")));
  atomic_store(&o->is_up_near, keel_dist_is_up(atom("near@host")));
  /* Relations made while far is down answer at once. */
  keel_term ref, m;
  if (keel_monitor(self, far_pid, 0, &h, &ref) == KEEL_OK &&
      keel_receive(self, m_down_ref, &ref, 0, &m) == KEEL_OK &&
      keel_eq_exact(keel_tuple_get(m, 3), far_pid))
    atomic_store(&o->down_after, keel_tuple_get(m, 4));
  keel_trap_exit(self, true);
  if (keel_link(self, far_pid) == KEEL_OK &&
      keel_receive(self, m_exit_from, &far_pid, WAIT_MS, &m) == KEEL_OK)
    atomic_store(&o->exit_after, keel_tuple_get(m, 2));
  keel_trap_exit(self, false);
  ref = spawn_watched(self, linker, &me, &h); /* dies at its receive */
  atomic_store(&o->link_dead_down, await_down(self, ref, KEEL_NONE));
  /* A new connection: a monitor made on it fires at its end. */
  if (keel_dist_nodeup(atom("far@host")) == KEEL_OK &&
      keel_monitor(self, far_pid, 0, &h, &ref) == KEEL_OK &&
      keel_dist_nodedown(atom("far@host")) >= 1)
    atomic_store(&o->new_conn_down, await_down(self, ref, far_pid));
  /* A process linked to a pid of a node that is up tells the node when it
   * dies. */
  ref = spawn_watched(self, leaver, NULL, &h);
  atomic_store(&o->leaver_down, await_down(self, ref, KEEL_NONE));
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals_remote, g18_connection_loss_gives_noconnection) {
  make_pids();
  keel_term nc = atom("noconnection");
  char cfg[96];
  size_t c = 0;
  for (; config_start(c, cfg, sizeof cfg); c++) {
    memset(&far_seen, 0, sizeof far_seen);
    keel_set_remote_router(far_router, NULL);
    keel_set_dist_signal_hook(far_hook, NULL);
    g18_obs o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(keel_spawn_fiber(conductor, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%s)", cfg);
    cr_assert(atomic_load(&o.ready_ok), "%s", cfg);
    /* monitorer, trapper, linker, unlinker (its monitor) were told. */
    cr_assert_geq(atomic_load(&o.told), 4, "%s", cfg);
    cr_assert_eq(atomic_load(&o.told_again), 0, "down already (%s)", cfg);
    cr_assert_eq(atomic_load(&o.monitorer), KEEL_ATOM(TRUE), "%s", cfg);
    cr_assert_eq(atomic_load(&o.trapper), nc, "trapped exit (%s)", cfg);
    cr_assert_eq(atomic_load(&o.linker_down), nc, "link exit (%s)", cfg);
    cr_assert_eq(atomic_load(&o.unlinker), KEEL_ATOM(TRUE), "%s", cfg);
    cr_assert(!atomic_load(&o.is_up_far) && atomic_load(&o.is_up_near));
    cr_assert_eq(atomic_load(&o.down_after), nc, "monitor, down (%s)", cfg);
    cr_assert_eq(atomic_load(&o.exit_after), nc, "link, down (%s)", cfg);
    cr_assert_eq(atomic_load(&o.link_dead_down), nc, "%s", cfg);
    cr_assert_eq(atomic_load(&o.new_conn_down), nc, "second connection");
    cr_assert_eq(atomic_load(&o.leaver_down), atom("bye"));
    /* What the fake node was told: trapper, linker, unlinker and leaver
     * linked (one link each), unlinker unlinked; monitorer's three monitors,
     * unlinker's, and the one on the second connection; monitorer's
     * demonitor of near; leaver's exit. */
    cr_assert_eq(atomic_load(&far_seen.link), 4, "%s", cfg);
    cr_assert_eq(atomic_load(&far_seen.unlink), 1, "%s", cfg);
    cr_assert_eq(atomic_load(&far_seen.monitor), 5, "%s", cfg);
    cr_assert_eq(atomic_load(&far_seen.demonitor), 1, "%s", cfg);
    cr_assert_eq(atomic_load(&far_seen.exit), 1, "%s", cfg);
    cr_assert_eq(atomic_load(&far_seen.exit_reason), atom("bye"));
    cr_assert_eq(keel_send(far_pid, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert_eq(atomic_load(&far_seen.sent), 1, "the router has the sends");
    if (sim_mode)
      stop_sim();
    else
      cr_assert_eq(keel_node_stop(), KEEL_OK);
    keel_set_remote_router(NULL, NULL);
    keel_set_dist_signal_hook(NULL, NULL);
    cr_assert(!keel_dist_is_up(atom("near@host")), "reset at node stop");
  }
  printf("G18: %zu configurations\n", c);
  keel_heap_destroy(&pid_heap);
}

/* ---- signals the other node sends ---------------------------------------- */

/* Traps exits, links and monitors far, sends its pid and ref to the boss,
 * then reports: the 'DOWN' reason, the link exit's reason, and that the
 * second 'DOWN' and link exit were dropped (the marker, an exit/2 sent
 * after them on the same channel, finds neither before it). */
static void receiver(keel_proc *self, void *arg) {
  keel_term boss = *(keel_term *)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_trap_exit(self, true);
  keel_term ref;
  bool ok = keel_link(self, far_pid) == KEEL_OK &&
            keel_monitor(self, far_pid, 0, &h, &ref) == KEEL_OK;
  uint64_t buf[16];
  keel_heap mh;
  keel_heap_init_fixed(&mh, buf, 16);
  (void)keel_send(boss,
                  keel_tuple(&mh, 3, atom("receiver"), keel_self(self), ref));
  keel_term down = await_down(self, ref, far_pid), m;
  keel_term first = KEEL_NONE, marker = KEEL_NONE;
  if (keel_receive(self, m_exit_from, &far_pid, WAIT_MS, &m) == KEEL_OK)
    first = keel_tuple_get(m, 2);
  if (keel_receive(self, m_exit_from, &far_pid, WAIT_MS, &m) == KEEL_OK)
    marker = keel_tuple_get(m, 2);
  ok = ok && down == atom("gone") && first == atom("bye") &&
       marker == atom("marker") &&
       keel_receive(self, m_down_ref, &ref, 0, &m) == KEEL_ETIMEDOUT;
  keel_heap_destroy(&h);
  report(boss, "received", ok ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
}

static bool m_receiver(keel_term m, void *arg) {
  (void)arg;
  return keel_is_tuple(m) && keel_tuple_arity(m) == 3 &&
         keel_tuple_get(m, 0) == atom("receiver");
}

/* Waits forever (killed by far's exit/2 with 'kill'). */
static void sitter(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
}

typedef struct from_far_obs {
  _Atomic keel_term received, killed;
  atomic_int rc;
} from_far_obs;

static void far_sender(keel_proc *self, void *arg) {
  from_far_obs *o = arg;
  keel_term me = keel_self(self), m;
  keel_heap h;
  keel_heap_init(&h);
  int rc = keel_dist_nodeup(atom("far@host"));
  (void)spawn_watched(self, receiver, &me, &h);
  if (keel_receive(self, m_receiver, NULL, WAIT_MS, &m) == KEEL_OK) {
    keel_term to = keel_tuple_get(m, 1), ref = keel_tuple_get(m, 2);
    /* far's 'DOWN' and link exit; a second link exit finds no link. */
    if (rc == KEEL_OK)
      rc = keel_dist_down(far_pid, to, ref, atom("gone"));
    if (rc == KEEL_OK)
      rc = keel_dist_down(far_pid, to, ref, atom("twice")); /* dropped */
    if (rc == KEEL_OK)
      rc = keel_dist_exit(far_pid, to, atom("bye"), true);
    if (rc == KEEL_OK)
      rc = keel_dist_exit(far_pid, to, atom("second"), true);
    if (rc == KEEL_OK)
      rc = keel_dist_exit(far_pid, to, atom("marker"), false);
    atomic_store(&o->received, await_tag(self, "received"));
  }
  keel_term victim, ref;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  if (rc == KEEL_OK && keel_spawn_fiber(sitter, NULL, &so, &victim) == KEEL_OK)
    rc = keel_dist_exit(far_pid, victim, KEEL_ATOM(KILL), false);
  if (rc == KEEL_OK)
    atomic_store(&o->killed, await_down(self, ref, KEEL_NONE));
  atomic_store(&o->rc, rc);
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals_remote, g18_exits_and_downs_from_the_other_node) {
  make_pids();
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    from_far_obs o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(keel_spawn_fiber(far_sender, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%s)", cfg);
    cr_assert_eq(atomic_load(&o.rc), KEEL_OK, "%s", cfg);
    cr_assert_eq(atomic_load(&o.received), KEEL_ATOM(TRUE), "%s", cfg);
    cr_assert_eq(atomic_load(&o.killed), KEEL_ATOM(KILLED), "%s", cfg);
    if (sim_mode)
      stop_sim();
    else
      cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  keel_heap_destroy(&pid_heap);
}

Test(signals_remote, g18_api_errors) {
  cr_assert_eq(keel_dist_nodeup(atom("far@host")), KEEL_ESTATE);
  cr_assert_eq(keel_dist_nodedown(atom("far@host")), KEEL_ESTATE);
  start_node(1, 0);
  cr_assert_eq(keel_dist_nodeup(keel_small(1)), KEEL_EBADARG);
  cr_assert_eq(keel_dist_nodeup(keel_term_local_node(NULL)), KEEL_EBADARG);
  cr_assert_eq(keel_dist_nodedown(keel_small(1)), KEEL_EBADARG);
  cr_assert_eq(keel_dist_nodedown(atom("never@host")), 0);
  cr_assert(!keel_dist_is_up(atom("never@host")));
  make_pids();
  keel_term local = keel_pid_local(1);
  cr_assert_eq(keel_dist_exit(local, local, KEEL_ATOM(NORMAL), true),
               KEEL_EBADARG);
  cr_assert_eq(keel_dist_exit(far_pid, far_pid, KEEL_ATOM(NORMAL), true),
               KEEL_EBADARG);
  cr_assert_eq(keel_dist_exit(far_pid, local, KEEL_NONE, true), KEEL_EINVAL);
  cr_assert_eq(keel_dist_down(far_pid, local, KEEL_ATOM(OK), KEEL_ATOM(NORMAL)),
               KEEL_EBADARG);
  keel_heap_destroy(&pid_heap);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* exit(Pid, Reason) to a pid of another node goes to the layer when the
 * node is up, and nowhere when it is not. */
static void exit2_sender(keel_proc *self, void *arg) {
  atomic_int *rc = arg;
  int a = keel_exit(far_pid, atom("go_away"));
  atomic_store(rc, a == KEEL_OK && keel_self(self) != KEEL_NONE ? 1 : -1);
  signal_event();
}

Test(signals_remote, g18_exit_to_a_pid_of_another_node) {
  make_pids();
  start_node(2, 0);
  memset(&far_seen, 0, sizeof far_seen);
  keel_set_dist_signal_hook(far_hook, NULL);
  /* Not up: nothing is sent. */
  cr_assert_eq(keel_exit(far_pid, atom("go_away")), KEEL_OK);
  cr_assert_eq(atomic_load(&far_seen.exit2), 0);
  cr_assert_eq(keel_dist_nodeup(atom("far@host")), KEEL_OK);
  /* From a thread: From is 'undefined'. */
  cr_assert_eq(keel_exit(far_pid, KEEL_ATOM(KILL)), KEEL_OK);
  cr_assert_eq(atomic_load(&far_seen.exit2), 1);
  cr_assert_eq(atomic_load(&far_seen.exit2_from), KEEL_ATOM(UNDEFINED));
  cr_assert_eq(atomic_load(&far_seen.exit2_reason), KEEL_ATOM(KILL));
  /* From a process: From is its pid. */
  atomic_int rc = 0;
  keel_term sender;
  cr_assert_eq(keel_spawn_fiber(exit2_sender, &rc, NULL, &sender), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&rc), 1);
  cr_assert_eq(atomic_load(&far_seen.exit2), 2);
  cr_assert_eq(atomic_load(&far_seen.exit2_from), sender);
  cr_assert_eq(atomic_load(&far_seen.exit2_reason), atom("go_away"));
  cr_assert_eq(keel_exit(keel_small(3), KEEL_ATOM(KILL)), KEEL_EBADARG);
  cr_assert_eq(keel_exit(far_pid, KEEL_NONE), KEEL_EINVAL);
  cr_assert_eq(keel_dist_nodedown(atom("far@host")), 0);
  keel_set_dist_signal_hook(NULL, NULL);
  keel_heap_destroy(&pid_heap);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
