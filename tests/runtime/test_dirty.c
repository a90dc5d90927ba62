/* Dirty pools: synchronous dirty calls from fiber processes, asynchronous
 * ones from handler processes ({dirty_done, Tag, Result}), the liveness
 * check from dirty work, and node stop waiting for dirty work. Scenarios
 * run with 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "keel/clock.h"
#include "keel/dirty.h"
#include "keel/runtime.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

/* ---- a gate the test thread opens (bounded wait) ----------------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_set(bool open) {
  pthread_mutex_lock(&gate_mu);
  gate_open = open;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
}

static bool gate_wait(void) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += TIMEOUT_S;
  pthread_mutex_lock(&gate_mu);
  int rc = 0;
  while (!gate_open && rc == 0)
    rc = pthread_cond_timedwait(&gate_cv, &gate_mu, &dl);
  bool ok = gate_open;
  pthread_mutex_unlock(&gate_mu);
  return ok;
}

/* ---- fiber: synchronous dirty calls ------------------------------------ */

static _Atomic int failures;

/* Checks that run off the test thread (where Criterion cannot assert)
 * count failures and keep the line of the last one for the report. */
static _Atomic int failed_line;
#define check(ok) check_at((ok), __LINE__)
static void check_at(bool ok, int line) {
  if (!ok) {
    atomic_store(&failed_line, line);
    atomic_fetch_add(&failures, 1);
  }
}

/* Sum of 1..n, on a dirty thread: not a scheduler, no current process. */
static int dirty_sum(void *arg) {
  int n = *(int *)arg;
  check(keel_current() == NULL && keel__rt_tl_sched == NULL);
  check(keel_dirty_process_alive());
  int s = 0;
  for (int i = 1; i <= n; i++)
    s += i;
  return s;
}

static void summer(keel_proc *self, void *arg) {
  (void)arg;
  for (int n = 0; n < 200; n++) {
    int r = n % 2 == 0 ? keel_dirty_cpu(self, dirty_sum, &n)
                       : keel_dirty_io(self, dirty_sum, &n);
    check(r == n * (n + 1) / 2);   /* closed form */
    check(keel_current() == self); /* back on a scheduler */
    check(keel__rt_tl_sched != NULL);
  }
  signal_event();
}

Test(dirty, fiber_calls_return_results) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&failures, 0);
    for (int i = 0; i < 8; i++)
      cr_assert_eq(keel_spawn_fiber(summer, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(8));
    cr_assert_eq(atomic_load(&failures), 0);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.dirty_jobs, 8 * 200);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* While a fiber waits in a dirty call (held until the test opens the gate)
 * its scheduler runs other processes, and messages sent to the fiber are
 * queued and received afterwards in order. */
static int dirty_gate(void *arg) {
  (void)arg;
  signal_event(); /* the dirty work has started */
  return gate_wait() ? 42 : -1;
}

static void gated(keel_proc *self, void *arg) {
  (void)arg;
  check(keel_dirty_io(self, dirty_gate, NULL) == 42);
  for (int64_t i = 0; i < 3; i++) {
    keel_term m;
    check(keel_receive(self, NULL, NULL, 0, &m) == KEEL_OK &&
          m == keel_small(i));
  }
  signal_event();
}

static keel_handler_status reporter(keel_proc *self, keel_term msg,
                                    void *state) {
  (void)self;
  (void)msg;
  (void)state;
  signal_event();
  return KEEL_CONTINUE;
}

Test(dirty, scheduler_runs_others_meanwhile) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&failures, 0);
    gate_set(false);
    keel_term f, r;
    cr_assert_eq(keel_spawn_fiber(gated, NULL, NULL, &f), KEEL_OK);
    cr_assert(wait_events(1), "dirty work started");
    for (int64_t i = 0; i < 3; i++)
      cr_assert_eq(keel_send(f, keel_small(i)), KEEL_OK);
    /* With one scheduler this proves it is not held by the fiber. */
    cr_assert_eq(keel_spawn(reporter, NULL, NULL, &r), KEEL_OK);
    for (long i = 0; i < 50; i++) {
      cr_assert_eq(keel_send(r, KEEL_NIL), KEEL_OK);
      cr_assert(wait_events(2 + i), "a handler ran during the dirty call");
    }
    gate_set(true);
    cr_assert(wait_events(52), "fiber resumed");
    cr_assert_eq(atomic_load(&failures), 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- handler: asynchronous dirty calls --------------------------------- */

#define NJOBS 50

static int dirty_square(void *arg) {
  intptr_t i = (intptr_t)arg;
  check(keel_dirty_process_alive());
  return (int)(i * i);
}

typedef struct collector {
  int seen[NJOBS];
  int got;
} collector;

/* On 'go', starts NJOBS jobs tagged {job, I}; checks every answer. */
static keel_handler_status async_handler(keel_proc *self, keel_term msg,
                                         void *state) {
  collector *c = state;
  keel_term dd = keel_atom("dirty_done");
  if (msg == KEEL_ATOM(OK)) {
    check(keel_dirty_process_alive());
    keel_heap h;
    keel_heap_init(&h);
    for (intptr_t i = 0; i < NJOBS; i++) {
      keel_term tag = keel_tuple(&h, 2, keel_atom("job"), keel_small(i));
      int rc = i % 2 ? keel_dirty_io_async(self, dirty_square, (void *)i, tag)
                     : keel_dirty_cpu_async(self, dirty_square, (void *)i, tag);
      check(rc == KEEL_OK);
    }
    keel_heap_destroy(&h);
    return KEEL_CONTINUE;
  }
  /* {dirty_done, {job, I}, I*I} */
  bool shape = keel_is_tuple(msg) && keel_tuple_arity(msg) == 3 &&
               keel_tuple_get(msg, 0) == dd;
  check(shape);
  if (!shape)
    return KEEL_CONTINUE;
  int64_t i = keel_small_value(keel_tuple_get(keel_tuple_get(msg, 1), 1));
  check(i >= 0 && i < NJOBS && c->seen[i] == 0);
  check(keel_tuple_get(msg, 2) == keel_small(i * i));
  if (i >= 0 && i < NJOBS)
    c->seen[i]++;
  if (++c->got == NJOBS)
    signal_event();
  return KEEL_CONTINUE;
}

Test(dirty, handler_async_delivers_completion) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&failures, 0);
    collector col = {0};
    keel_term p;
    cr_assert_eq(keel_spawn(async_handler, &col, NULL, &p), KEEL_OK);
    cr_assert_eq(keel_send(p, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&failures), 0);
    for (int i = 0; i < NJOBS; i++)
      cr_assert_eq(col.seen[i], 1);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- liveness ------------------------------------------------------------ */

static _Atomic int saw_dead;

/* Polls keel_dirty_process_alive until false (bounded). */
static int dirty_poll(void *arg) {
  (void)arg;
  check(keel_dirty_process_alive());
  signal_event(); /* running, process alive */
  uint64_t t0 = keel_monotonic_ns();
  while (keel_dirty_process_alive())
    if (keel_monotonic_ns() - t0 > (uint64_t)TIMEOUT_S * 1000000000u)
      return -1;
  atomic_store(&saw_dead, 1);
  signal_event();
  return 0;
}

static keel_handler_status poll_owner(keel_proc *self, keel_term msg,
                                      void *state) {
  (void)state;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  check(keel_dirty_cpu_async(self, dirty_poll, NULL, KEEL_NIL) == KEEL_OK);
  return KEEL_CONTINUE;
}

Test(dirty, alive_turns_false_when_process_exits) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&failures, 0);
    atomic_store(&saw_dead, 0);
    cr_assert(!keel_dirty_process_alive()); /* not a process, not dirty */
    keel_term p;
    cr_assert_eq(keel_spawn(poll_owner, NULL, NULL, &p), KEEL_OK);
    cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
    cr_assert(wait_events(1), "dirty work running");
    cr_assert_eq(atomic_load(&saw_dead), 0);
    cr_assert_eq(keel_send(p, KEEL_ATOM(STOP)), KEEL_OK);
    cr_assert(wait_events(2), "dirty work saw the exit");
    cr_assert_eq(atomic_load(&saw_dead), 1);
    cr_assert_eq(atomic_load(&failures), 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- node stop ----------------------------------------------------------- */

static _Atomic int finished;
static _Atomic int terminated;

/* Runs until the node stops (alive turns false), then finishes. */
static int dirty_until_stop(void *arg) {
  (void)arg;
  signal_event();
  uint64_t t0 = keel_monotonic_ns();
  while (keel_dirty_process_alive())
    if (keel_monotonic_ns() - t0 > (uint64_t)TIMEOUT_S * 1000000000u)
      break;
  atomic_fetch_add(&finished, 1);
  return 0;
}

static void stopper_fiber(keel_proc *self, void *arg) {
  (void)arg;
  (void)keel_dirty_cpu(self, dirty_until_stop, NULL);
  check(false); /* never resumed: the node stopped */
}

static void on_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)state;
  check(reason == KEEL_ATOM(SHUTDOWN));
  atomic_fetch_add(&terminated, 1);
}

/* Queued behind the io pool's only thread; owns (frees) its argument. */
static int dirty_owned(void *arg) {
  free(arg);
  atomic_fetch_add(&finished, 1);
  return 0;
}

static keel_handler_status queuer(keel_proc *self, keel_term msg, void *state) {
  (void)msg;
  (void)state;
  check(keel_dirty_io_async(self, dirty_until_stop, NULL, KEEL_NIL) == KEEL_OK);
  for (int i = 0; i < 5; i++)
    check(keel_dirty_io_async(self, dirty_owned, malloc(64), KEEL_NIL) ==
          KEEL_OK);
  signal_event();
  return KEEL_CONTINUE;
}

Test(dirty, node_stop_waits_for_dirty_work) {
  for (size_t c = 0; c < NCONF; c++) {
    keel_node_opts o = {.schedulers = sched_counts[c], .dirty_io = 1};
    cr_assert_eq(keel_node_start(&o), KEEL_OK);
    reset_events();
    atomic_store(&failures, 0);
    atomic_store(&finished, 0);
    atomic_store(&terminated, 0);
    keel_spawn_opts so = {.terminate = on_terminate};
    cr_assert_eq(keel_spawn_fiber(stopper_fiber, NULL, &so, NULL), KEEL_OK);
    keel_term q;
    cr_assert_eq(keel_spawn(queuer, NULL, &so, &q), KEEL_OK);
    cr_assert_eq(keel_send(q, KEEL_NIL), KEEL_OK);
    /* The fiber's job and the io pool's first job run; 5 more queued. */
    cr_assert(wait_events(3));
    cr_assert_eq(atomic_load(&finished), 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&finished), 2 + 5, "every job ran to its end");
    cr_assert_eq(atomic_load(&terminated), 2);
    cr_assert_eq(atomic_load(&failures), 0, "check at line %d failed (%zu)",
                 atomic_load(&failed_line), c);
    cr_assert_eq(keel__rt_fiber_stacks_left, 0);
  }
}

/* ---- pool threads start on demand -------------------------------------- */

static int count_threads(void) {
  DIR *d = opendir("/proc/self/task");
  int k = 0;
  if (d == NULL)
    return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.')
      k++;
  closedir(d);
  return k;
}

static _Atomic int started_jobs;

static int dirty_gated_job(void *arg) {
  (void)arg;
  atomic_fetch_add(&started_jobs, 1);
  signal_event();
  return gate_wait() ? 0 : -1;
}

static keel_handler_status gated_submitter(keel_proc *self, keel_term msg,
                                           void *state) {
  (void)state;
  if (msg == KEEL_NIL) {
    for (int i = 0; i < 20; i++)
      check(keel_dirty_io_async(self, dirty_gated_job, NULL, KEEL_NIL) ==
            KEEL_OK);
    return KEEL_CONTINUE;
  }
  signal_event(); /* a {dirty_done, [], 0} */
  check(keel_tuple_get(msg, 2) == keel_small(0));
  return KEEL_CONTINUE;
}

/* No pool thread exists until a job is queued; then at most dirty_io run
 * at once (4 of 20 gated jobs start), and all 20 finish once the gate
 * opens. */
Test(dirty, pool_threads_start_on_demand) {
  int before = count_threads();
  cr_assert_gt(before, 0);
  keel_node_opts o = {.schedulers = 2, .dirty_io = 4};
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  reset_events();
  atomic_store(&failures, 0);
  atomic_store(&started_jobs, 0);
  gate_set(false);
  /* 2 schedulers and the watchdog; no pool thread. */
  cr_assert_eq(count_threads(), before + 3);
  keel_term p;
  cr_assert_eq(keel_spawn(gated_submitter, NULL, NULL, &p), KEEL_OK);
  cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
  cr_assert(wait_events(4), "4 jobs started");
  cr_assert_eq(count_threads(), before + 3 + 4);
  cr_assert_eq(atomic_load(&started_jobs), 4);
  gate_set(true);
  cr_assert(wait_events(4 + 16 + 20), "all jobs ran and answered");
  cr_assert_eq(count_threads(), before + 3 + 4);
  cr_assert_eq(atomic_load(&failures), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(count_threads(), before);
}

/* ---- errors ---------------------------------------------------------------
 */

static int dirty_noop(void *arg) {
  (void)arg;
  return 7;
}

static int dirty_try_stop(void *arg) {
  (void)arg;
  return keel_node_stop();
}

static keel_handler_status misuse(keel_proc *self, keel_term msg, void *state) {
  (void)msg;
  (void)state;
  /* A handler process cannot wait: the synchronous form is for fibers. */
  check(keel_dirty_cpu(self, dirty_noop, NULL) == KEEL_ESTATE);
  check(keel_dirty_io(self, dirty_noop, NULL) == KEEL_ESTATE);
  check(keel_dirty_cpu_async(self, NULL, NULL, KEEL_NIL) == KEEL_EINVAL);
  check(keel_dirty_cpu_async(self, dirty_noop, NULL, KEEL_NONE) == KEEL_EINVAL);
  check(keel_dirty_process_alive());
  check(keel_dirty_cpu_async(self, dirty_try_stop, NULL, KEEL_ATOM(OK)) ==
        KEEL_OK);
  return KEEL_CONTINUE;
}

static keel_handler_status misuse_answer(keel_proc *self, keel_term msg,
                                         void *state) {
  if (keel_is_tuple(msg)) { /* {dirty_done, ok, KEEL_ESTATE} */
    check(keel_tuple_get(msg, 2) == keel_small(KEEL_ESTATE));
    signal_event();
    return KEEL_CONTINUE;
  }
  return misuse(self, msg, state);
}

static void fiber_misuse(keel_proc *self, void *arg) {
  (void)arg;
  check(keel_dirty_cpu(self, NULL, NULL) == KEEL_EINVAL);
  check(keel_dirty_cpu(NULL, dirty_noop, NULL) == KEEL_ESTATE);
  check(keel_dirty_cpu(self, dirty_noop, NULL) == 7);
  signal_event();
}

Test(dirty, errors) {
  cr_assert_eq(keel_dirty_cpu(NULL, dirty_noop, NULL), KEEL_ESTATE);
  cr_assert_eq(keel_dirty_cpu_async(NULL, dirty_noop, NULL, KEEL_NIL),
               KEEL_ESTATE);
  start_node(2, 0);
  atomic_store(&failures, 0);
  keel_term p;
  cr_assert_eq(keel_spawn(misuse_answer, NULL, NULL, &p), KEEL_OK);
  cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
  cr_assert_eq(keel_spawn_fiber(fiber_misuse, NULL, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(2));
  /* From the test thread: not a process. */
  cr_assert_eq(keel_dirty_cpu_async(NULL, dirty_noop, NULL, KEEL_NIL),
               KEEL_ESTATE);
  cr_assert_eq(atomic_load(&failures), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
