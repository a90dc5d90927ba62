/* Introspection: keel_process_info and keel_processes on live, busy and
 * dead processes. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/telemetry.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static bool hold_go;
static atomic_long handled;

/* Holds its scheduler on the first message until released. */
keel_handler_status introspect_holder(keel_proc *self, keel_term msg, void *st);
keel_handler_status introspect_holder(keel_proc *self, keel_term msg,
                                      void *st) {
  (void)self, (void)st, (void)msg;
  if (atomic_fetch_add(&handled, 1) == 0) {
    pthread_mutex_lock(&hold_mu);
    signal_event();
    while (!hold_go)
      pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
  }
  if (atomic_load(&handled) == 51)
    signal_event();
  return KEEL_CONTINUE;
}

static keel_handler_status idle_handler(keel_proc *self, keel_term msg,
                                        void *st) {
  (void)st;
  return msg == KEEL_ATOM(STOP) ? keel_stop(self, KEEL_ATOM(NORMAL))
                                : KEEL_CONTINUE;
}

static void linker(keel_proc *self, void *arg) {
  keel_term *peers = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  (void)keel_link(self, peers[0]);
  (void)keel_link(self, peers[1]);
  (void)keel_monitor(self, peers[0], 0, &h, &ref);
  keel_term m;
  signal_event();
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
  keel_heap_destroy(&h);
}

Test(introspect, queue_length_status_reductions_and_relations) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&handled, 0);
    hold_go = false;
    keel_term busy, idle, fib;
    /* A bounded queue is counted on the send path: its length needs no
     * answer from the (held) process. */
    keel_spawn_opts counted = {.max_queue = 1000};
    cr_assert_eq(keel_spawn(introspect_holder, NULL, &counted, &busy), KEEL_OK);
    cr_assert_eq(keel_spawn(idle_handler, NULL, NULL, &idle), KEEL_OK);
    cr_assert_eq(keel_register(keel_atom("introspected"), idle), KEEL_OK);
    cr_assert_eq(keel_send(busy, keel_small(0)), KEEL_OK);
    cr_assert(wait_events(1)); /* held in its first message */
    for (int i = 1; i <= 50; i++)
      cr_assert_eq(keel_send(busy, keel_small(i)), KEEL_OK);
    keel_process_info_t info;
    cr_assert_eq(keel_process_info(busy, &info), KEEL_OK);
    cr_assert_eq(info.message_queue_len, 50, "50 queued behind the held one");
    cr_assert_eq(info.status, KEEL_PROC_RUNNABLE);
    cr_assert(!info.fiber);
    cr_assert_eq(info.entry, (const void *)introspect_holder);
    if (info.entry_name != NULL)
      cr_assert_str_eq(info.entry_name, "introspect_holder");
    pthread_mutex_lock(&hold_mu);
    hold_go = true;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
    cr_assert(wait_events(2)); /* all 51 handled */
    keel_term peers[2] = {busy, idle};
    cr_assert_eq(keel_spawn_fiber(linker, peers, NULL, &fib), KEEL_OK);
    cr_assert(wait_events(3));
    /* The linker published its figures when it blocked; the idle
     * process when it handled the link signal. (Each question to a
     * process that does not count its queue wakes it: it is waiting
     * again soon after answering.) */
    keel_process_info_t li, ii, bi;
    do {
      cr_assert_eq(keel_process_info(fib, &li), KEEL_OK);
      cr_assert_eq(keel_process_info(idle, &ii), KEEL_OK);
      cr_assert_eq(keel_process_info(busy, &bi), KEEL_OK);
    } while (li.status != KEEL_PROC_WAITING || ii.links != 1 ||
             ii.status != KEEL_PROC_WAITING || bi.monitored_by != 1 ||
             bi.links != 1);
    cr_assert(li.fiber);
    cr_assert_eq(li.entry, (const void *)linker);
    cr_assert_eq(li.links, 2);
    cr_assert_eq(li.monitors, 1);
    cr_assert_eq(li.message_queue_len, 0);
    cr_assert_eq(ii.registered_name, keel_atom("introspected"));
    cr_assert_eq(ii.status, KEEL_PROC_WAITING);
    cr_assert_geq(ii.memory, 192);
    /* busy handled 51 messages: at least 51 x KEEL_COST_MESSAGE. */
    cr_assert_eq(keel_process_info(busy, &info), KEEL_OK);
    cr_assert_geq(info.reductions, 51 * KEEL_COST_MESSAGE);
    cr_assert_eq(info.message_queue_len, 0);
    /* The process list. */
    keel_term pids[8];
    size_t total = keel_processes(pids, 8);
    cr_assert_eq(total, 3);
    bool found[3] = {false};
    for (size_t i = 0; i < total; i++) {
      found[0] |= pids[i] == busy;
      found[1] |= pids[i] == idle;
      found[2] |= pids[i] == fib;
    }
    cr_assert(found[0] && found[1] && found[2]);
    cr_assert_eq(keel_processes(NULL, 0), 3);
    cr_assert_eq(keel_processes(pids, 1), 3, "the total, even when cut");
    /* Dead and bad pids. */
    cr_assert_eq(keel_exit(fib, KEEL_ATOM(KILL)), KEEL_OK);
    /* killed, and through its links the two others ('killed' too) */
    while (keel_processes(NULL, 0) != 0)
      sched_yield();
    cr_assert_eq(keel_process_info(fib, &info), KEEL_ENOPROC);
    cr_assert_eq(keel_process_info(busy, &info), KEEL_ENOPROC);
    cr_assert_eq(keel_process_info(keel_small(1), &info), KEEL_EBADARG);
    cr_assert_eq(keel_process_info(busy, NULL), KEEL_EINVAL);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  keel_process_info_t info;
  cr_assert_eq(keel_process_info(keel_pid_local(0), &info), KEEL_ESTATE);
  cr_assert_eq(keel_processes(NULL, 0), 0);
}

/* ---- the queue length of an unbounded queue: asked, answered ------------ */

static bool only_stop(keel_term m, void *arg) {
  (void)arg;
  return m == KEEL_ATOM(STOP);
}

static void skipper(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  signal_event();
  /* Waits for 'stop' only: everything else stays queued. */
  (void)keel_receive(self, only_stop, NULL, KEEL_INFINITY, &m);
}

Test(introspect, unbounded_queue_length_is_asked_of_the_process) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(skipper, NULL, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(1));
    for (int i = 0; i < 37; i++)
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
    keel_process_info_t info;
    cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
    cr_assert_eq(info.message_queue_len, 37, "(%u schedulers)",
                 sched_counts[c]);
    cr_assert_eq(keel_send(pid, KEEL_ATOM(STOP)), KEEL_OK);
    while (keel_process_info(pid, &info) == KEEL_OK)
      sched_yield();
    cr_assert_eq(keel_process_info(pid, &info), KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  /* And in the simulation, from the driving thread. */
  start_sim(3);
  keel_term pid;
  cr_assert_eq(keel_spawn_fiber(skipper, NULL, NULL, &pid), KEEL_OK);
  cr_assert(wait_events(1));
  for (int i = 0; i < 12; i++)
    cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
  keel_process_info_t info;
  cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
  cr_assert_eq(info.message_queue_len, 12);
  stop_sim();
}

/* keel_process_info_ex skips the queue round trip and the symbol lookup
 * when asked, and reads the rest as keel_process_info does. */
Test(introspect, info_ex_skips_queue_and_symbol) {
  start_node(2, 0);
  keel_term pid;
  cr_assert_eq(keel_spawn_fiber(skipper, NULL, NULL, &pid), KEEL_OK);
  cr_assert(wait_events(1));
  for (int i = 0; i < 9; i++)
    cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
  keel_process_info_t full, cheap, same;
  cr_assert_eq(keel_process_info(pid, &full), KEEL_OK);
  cr_assert_eq(full.message_queue_len, 9);
  cr_assert_eq(keel_process_info_ex(pid, 0, &same), KEEL_OK);
  cr_assert_eq(same.message_queue_len, 9);
  cr_assert_eq(keel_process_info_ex(
                   pid, KEEL_PINFO_NO_QUEUE | KEEL_PINFO_NO_SYMBOL, &cheap),
               KEEL_OK);
  cr_assert_eq(cheap.message_queue_len, SIZE_MAX);
  cr_assert_null(cheap.entry_name);
  cr_assert_eq(cheap.pid, pid);
  cr_assert(cheap.fiber);
  cr_assert_eq(cheap.entry, full.entry);
  cr_assert_eq(cheap.memory, full.memory);
  cr_assert_eq(keel_process_info_ex(pid, KEEL_PINFO_NO_SYMBOL, &cheap),
               KEEL_OK);
  cr_assert_eq(cheap.message_queue_len, 9, "the queue is still asked");
  cr_assert_eq(keel_send(pid, KEEL_ATOM(STOP)), KEEL_OK);
  while (keel_process_info_ex(pid, KEEL_PINFO_NO_QUEUE, &cheap) == KEEL_OK)
    sched_yield();
  cr_assert_eq(keel_process_info_ex(pid, KEEL_PINFO_NO_QUEUE, &cheap),
               KEEL_ENOPROC);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- message-queue limits ---------------------------------------------- */

static void release_holder(void) {
  pthread_mutex_lock(&hold_mu);
  hold_go = true;
  pthread_cond_broadcast(&hold_cv);
  pthread_mutex_unlock(&hold_mu);
}

static void down_watch(keel_proc *self, void *arg) {
  keel_term *pr = arg; /* [0] the pid to watch, [1] its exit reason */
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m;
  (void)keel_monitor(self, pr[0], 0, &h, &ref);
  signal_event();
  if (keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK)
    pr[1] = keel_tuple_get(m, 4);
  keel_heap_destroy(&h);
  signal_event();
}

Test(introspect, max_queue_drops_or_kills) {
  for (int kill = 0; kill < 2; kill++) {
    start_node(2, 0);
    atomic_store(&handled, 0);
    hold_go = false;
    keel_spawn_opts so = {.max_queue = 10,
                          .queue_policy =
                              kill ? KEEL_QUEUE_KILL : KEEL_QUEUE_DROP_NEW};
    keel_term pid, watch[2] = {KEEL_NONE, KEEL_NONE};
    cr_assert_eq(keel_spawn(introspect_holder, NULL, &so, &pid), KEEL_OK);
    watch[0] = pid;
    cr_assert_eq(keel_spawn_fiber(down_watch, watch, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(keel_send(pid, keel_small(0)), KEEL_OK);
    cr_assert(wait_events(2)); /* held in its first message */
    for (int i = 1; i <= 25; i++)
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.messages_dropped, 15, "25 sent, 10 fit");
    keel_process_info_t info;
    cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
    cr_assert_eq(info.message_queue_len, 10);
    release_holder();
    if (kill) {
      cr_assert(wait_events(3));
      cr_assert_eq(watch[1], KEEL_ATOM(KILLED), "a full queue kills");
      cr_assert_lt(atomic_load(&handled), 51);
    } else {
      while (atomic_load(&handled) < 11)
        sched_yield();
      cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
      cr_assert_eq(info.message_queue_len, 0);
      cr_assert_eq(atomic_load(&handled), 11, "the held one and 10 more");
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  start_node(1, 0);
  keel_spawn_opts bad = {.priority = (keel_priority)9};
  cr_assert_eq(keel_spawn(idle_handler, NULL, &bad, NULL), KEEL_EINVAL);
  keel_spawn_opts bad2 = {.queue_policy = (keel_queue_policy)5};
  cr_assert_eq(keel_spawn(idle_handler, NULL, &bad2, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- long message queue events ----------------------------------------- */

static atomic_int long_on_events, long_off_events;
static atomic_long long_on_len;

static int on_long_queue(const keel_tel_event *ev, const keel_tel_measure *m,
                         size_t nm, const keel_tel_meta *md, size_t nmd,
                         void *cfg) {
  (void)ev, (void)cfg;
  double len = 0;
  keel_term on = KEEL_NONE;
  (void)keel_tel_measure_get(m, nm, keel_atom("length"), &len);
  (void)keel_tel_meta_get(md, nmd, keel_atom("long"), &on);
  if (on == KEEL_ATOM(TRUE)) {
    atomic_store(&long_on_len, (long)len);
    atomic_fetch_add(&long_on_events, 1);
  } else {
    atomic_fetch_add(&long_off_events, 1);
  }
  return 0;
}

Test(introspect, long_message_queue_events_on_and_off) {
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.runtime.long_message_queue", &ev),
               KEEL_OK);
  cr_assert_eq(
      keel_tel_attach(keel_atom("lmq_test"), &ev, 1, on_long_queue, NULL),
      KEEL_OK);
  start_node(2, 0);
  atomic_store(&handled, 0);
  hold_go = false;
  keel_spawn_opts so = {.long_queue_on = 20, .long_queue_off = 5};
  keel_term pid;
  cr_assert_eq(keel_spawn(introspect_holder, NULL, &so, &pid), KEEL_OK);
  cr_assert_eq(keel_send(pid, keel_small(0)), KEEL_OK);
  cr_assert(wait_events(1)); /* held */
  for (int i = 1; i <= 30; i++)
    cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
  cr_assert_eq(atomic_load(&long_on_events), 1, "on once, at 20");
  cr_assert_eq(atomic_load(&long_on_len), 20);
  cr_assert_eq(atomic_load(&long_off_events), 0);
  release_holder();
  while (atomic_load(&handled) < 31)
    sched_yield();
  cr_assert_eq(atomic_load(&long_off_events), 1, "off once, at 5");
  cr_assert_eq(atomic_load(&long_on_events), 1);
  keel_spawn_opts bad = {.long_queue_on = 5, .long_queue_off = 5};
  cr_assert_eq(keel_spawn(introspect_holder, NULL, &bad, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_tel_detach(keel_atom("lmq_test")), KEEL_OK);
}

/* ---- keel_process_relations ---------------------------------------------- */

static atomic_long rel_bad;

static void rel_check(bool ok, long bit) {
  if (!ok)
    atomic_fetch_or(&rel_bad, bit);
}

static bool has_pid(keel_term l, keel_term pid, size_t times) {
  size_t k = 0;
  for (; keel_is_cons(l); l = keel_tl(l))
    k += keel_hd(l) == pid;
  return k == times;
}

static size_t list_len(keel_term l) {
  size_t len = 0;
  for (; keel_is_cons(l); l = keel_tl(l))
    len++;
  return len;
}

/* A second monitor of the target, from another process. */
static void other_monitor(keel_proc *self, void *arg) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m;
  rel_check(keel_monitor(self, *(keel_term *)arg, 0, &h, &ref) == KEEL_OK, 1);
  signal_event();
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
  keel_heap_destroy(&h);
}

static keel_handler_status rel_handler(keel_proc *self, keel_term msg,
                                       void *st) {
  (void)msg;
  (void)st;
  keel_heap h;
  keel_heap_init(&h);
  keel_process_relations_t r;
  rel_check(keel_process_relations(keel_self(self), 4, &h, &r) == KEEL_ESTATE,
            2); /* a handler cannot wait */
  keel_heap_destroy(&h);
  signal_event();
  return keel_stop(self, KEEL_ATOM(NORMAL));
}

static void relations_scenario(keel_proc *self, void *arg) {
  keel_term target = *(keel_term *)arg, other, r1, r2;
  keel_heap h;
  keel_heap_init(&h);
  keel_term me = keel_self(self);
  rel_check(keel_link(self, target) == KEEL_OK, 4);
  rel_check(keel_monitor(self, target, 0, &h, &r1) == KEEL_OK, 4);
  rel_check(keel_monitor(self, target, 0, &h, &r2) == KEEL_OK, 4);
  rel_check(keel_spawn_fiber(other_monitor, arg, NULL, &other) == KEEL_OK, 4);
  keel_process_relations_t r;
  /* The target, asked right away: the monitor signals are idle-lazy but
   * the question comes after them. The other monitor is waited for. */
  keel_term m;
  for (int i = 0; i < 5000; i++) {
    rel_check(keel_process_relations(target, 8, &h, &r) == KEEL_OK, 8);
    if (r.nmonitored_by == 3)
      break;
    (void)keel_receive(self, NULL, NULL, 1, &m);
  }
  rel_check(r.nlinks == 1 && has_pid(r.links, me, 1) && r.nmonitors == 0 &&
                r.monitors == KEEL_NIL,
            16);
  rel_check(r.nmonitored_by == 3 && has_pid(r.monitored_by, me, 2) &&
                has_pid(r.monitored_by, other, 1),
            32);
  /* Our own view, and a short list with complete counts. */
  rel_check(keel_process_relations(me, 1, &h, &r) == KEEL_OK && r.nlinks == 1 &&
                r.nmonitors == 2 && list_len(r.monitors) == 1 &&
                has_pid(r.monitors, target, 1) && r.nmonitored_by == 0,
            64);
  (void)keel_demonitor(self, r1, 0);
  rel_check(keel_unlink(self, target) == KEEL_OK, 128);
  rel_check(keel_process_relations(target, 8, &h, &r) == KEEL_OK &&
                r.nlinks == 0 && r.nmonitored_by == 2 &&
                has_pid(r.monitored_by, me, 1),
            256);
  keel_heap_destroy(&h);
  (void)keel_exit(other, KEEL_ATOM(KILL));
  signal_event();
}

static bool gone_pid(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

Test(introspect, relations_list_links_and_monitors) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&rel_bad, 0);
    keel_term target, h_pid;
    cr_assert_eq(keel_spawn(idle_handler, NULL, NULL, &target), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(relations_scenario, &target, NULL, NULL),
                 KEEL_OK);
    cr_assert(wait_events(2), "scenario finished");
    cr_assert_eq(atomic_load(&rel_bad), 0, "violations %#lx (%u schedulers)",
                 atomic_load(&rel_bad), sched_counts[c]);
    /* From a plain thread, and the errors. */
    keel_heap h;
    keel_heap_init(&h);
    keel_process_relations_t r;
    cr_assert_eq(keel_process_relations(target, 8, &h, &r), KEEL_OK);
    cr_assert_eq(r.nlinks, 0);
    cr_assert_eq(keel_process_relations(keel_atom("x"), 8, &h, &r),
                 KEEL_EBADARG);
    cr_assert_eq(keel_process_relations(target, 0, &h, &r), KEEL_EINVAL);
    cr_assert_eq(keel_process_relations(target, 8, NULL, &r), KEEL_EINVAL);
    cr_assert_eq(keel_send(target, KEEL_ATOM(STOP)), KEEL_OK);
    cr_assert(wait_until(gone_pid, &target));
    cr_assert_eq(keel_process_relations(target, 8, &h, &r), KEEL_ENOPROC);
    reset_events();
    cr_assert_eq(keel_spawn(rel_handler, NULL, NULL, &h_pid), KEEL_OK);
    cr_assert_eq(keel_send(h_pid, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&rel_bad), 0, "handler: %#lx",
                 atomic_load(&rel_bad));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static atomic_long qlen_seen;

/* Reads the queue length of the pid it is sent, from a handler process
 * (which cannot wait for an answer), and reports it. */
static keel_handler_status qlen_reader(keel_proc *self, keel_term msg,
                                       void *st) {
  (void)self, (void)st;
  size_t n = 0;
  int rc = keel_process_queue_len(msg, &n);
  atomic_store(&qlen_seen, rc == KEEL_OK ? (long)n : (long)rc);
  signal_event();
  return KEEL_CONTINUE;
}

typedef struct qlen_probe {
  keel_term pid;
  size_t want;
} qlen_probe;

static bool qlen_is(void *arg) {
  qlen_probe *q = arg;
  size_t n = SIZE_MAX;
  return keel_process_queue_len(q->pid, &n) == KEEL_OK && n == q->want;
}

/* keel_process_queue_len reads the length a process published (no round
 * trip), from a thread and from a handler process, and refuses stale and
 * malformed pids. */
Test(introspect, queue_len_is_read_without_asking) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_term pid, reader, idle;
    cr_assert_eq(keel_spawn_fiber(skipper, NULL, NULL, &pid), KEEL_OK);
    cr_assert_eq(keel_spawn(qlen_reader, NULL, NULL, &reader), KEEL_OK);
    cr_assert_eq(keel_spawn(idle_handler, NULL, NULL, &idle), KEEL_OK);
    cr_assert(wait_events(1));
    size_t n = SIZE_MAX;
    cr_assert_eq(keel_process_queue_len(idle, &n), KEEL_OK);
    cr_assert_eq(n, 0);
    for (int i = 0; i < 37; i++)
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
    /* The skipper publishes its skipped messages when it parks again. */
    qlen_probe q = {pid, 37};
    cr_assert(wait_until(qlen_is, &q), "(%u schedulers)", sched_counts[c]);
    cr_assert_eq(keel_send(reader, pid), KEEL_OK);
    cr_assert(wait_events(2));
    cr_assert_eq(atomic_load(&qlen_seen), 37, "read from a handler");
    cr_assert_eq(keel_process_queue_len(keel_small(3), &n), KEEL_EBADARG);
    cr_assert_eq(keel_process_queue_len(pid, NULL), KEEL_EINVAL);
    cr_assert_eq(keel_send(pid, KEEL_ATOM(STOP)), KEEL_OK);
    while (keel_process_queue_len(pid, &n) == KEEL_OK)
      sched_yield();
    cr_assert_eq(keel_process_queue_len(pid, &n), KEEL_ENOPROC);
    /* The stale pid stays refused once its slot holds a new process. */
    uint64_t slot = keel_pid_local_number(pid) & RT_IDX_MASK;
    keel_term next = KEEL_NONE;
    for (int i = 0; i < 100000 && next == KEEL_NONE; i++) {
      keel_term t;
      cr_assert_eq(keel_spawn(idle_handler, NULL, NULL, &t), KEEL_OK);
      if ((keel_pid_local_number(t) & RT_IDX_MASK) == slot)
        next = t;
    }
    cr_assert_neq(next, KEEL_NONE, "the slot was reused");
    cr_assert_neq(next, pid);
    cr_assert_eq(keel_process_queue_len(pid, &n), KEEL_ENOPROC);
    cr_assert_eq(keel_process_queue_len(next, &n), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  cr_assert_eq(keel_process_queue_len(keel_small(3), NULL), KEEL_ESTATE);
}
