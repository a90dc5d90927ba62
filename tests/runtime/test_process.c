/* Processes: spawn, send, exit, pid safety (G27), no leaks at death (G28),
 * the process limit and API errors. Every scenario runs with 1, 2 and 8
 * schedulers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "keel/runtime.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

/* Waits until no process is alive; false on timeout. */
static bool wait_no_processes(void) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    if (st.processes == 0)
      return true;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > TIMEOUT_S)
      return false;
    sched_yield();
  }
}

/* ---- handlers ---------------------------------------------------------- */

/* Exits on 'stop'; otherwise counts the message in *state. */
static keel_handler_status counting(keel_proc *self, keel_term msg,
                                    void *state) {
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  atomic_fetch_add((_Atomic long *)state, 1);
  return KEEL_CONTINUE;
}

static void on_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  (void)state;
  signal_event();
}

/* Answers 'probe' with an event; exits on 'stop'; counts anything else. */
static _Atomic long stray;
static keel_handler_status prober(keel_proc *self, keel_term msg, void *state) {
  (void)state;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  if (msg == KEEL_ATOM(INFO))
    signal_event();
  else
    atomic_fetch_add(&stray, 1);
  return KEEL_CONTINUE;
}

/* ---- tests ------------------------------------------------------------- */

Test(process, pcb_is_small) {
  printf("sizeof(keel_proc) = %zu bytes\n", sizeof(keel_proc));
  cr_assert_leq(sizeof(keel_proc), 256);
}

Test(process, api_errors) {
  keel_term pid;
  cr_assert_eq(keel_send(keel_pid_local(0), KEEL_NIL), KEEL_ESTATE);
  cr_assert_eq(keel_spawn(prober, NULL, NULL, &pid), KEEL_ESTATE);
  cr_assert_eq(keel_node_stop(), KEEL_ESTATE);
  keel_node_opts bad = {.schedulers = KEEL_MAX_SCHEDULERS + 1};
  cr_assert_eq(keel_node_start(&bad), KEEL_EINVAL);
  start_node(2, 0);
  cr_assert_eq(keel_node_start(NULL), KEEL_ESTATE);
  cr_assert_eq(keel_spawn(NULL, NULL, NULL, &pid), KEEL_EINVAL);
  cr_assert_eq(keel_spawn(prober, NULL, NULL, &pid), KEEL_OK);
  cr_assert(keel_is_local_pid(pid));
  cr_assert_eq(keel_send(keel_small(3), KEEL_NIL), KEEL_EBADARG);
  cr_assert_eq(keel_send(pid, KEEL_NONE), KEEL_EINVAL);
  /* A pid that was never handed out is a silent no-op. */
  cr_assert_eq(keel_send(keel_pid_local(KEEL_PID_NUMBER_MAX), KEEL_NIL),
               KEEL_OK);
  cr_assert_null(keel_current());
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_node_schedulers(), 0);
}

/* A handler that checks it gets a deep copy of a structured term, keeps a
 * copy in its own heap across messages, and reports a match. */
static keel_handler_status keeper(keel_proc *self, keel_term msg, void *state) {
  keel_term *kept = state;
  cr_assert_eq(keel_current(), self);
  if (*kept == KEEL_NONE) {
    *kept = keel_term_copy(keel_proc_heap(self), msg);
    return KEEL_CONTINUE;
  }
  if (keel_eq_exact(*kept, msg))
    signal_event();
  return KEEL_CONTINUE;
}

Test(process, messages_are_copies_and_state_persists) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_term kept = KEEL_NONE, pid;
    cr_assert_eq(keel_spawn(keeper, &kept, NULL, &pid), KEEL_OK);
    for (int i = 0; i < 50; i++) {
      keel_heap h;
      keel_heap_init(&h);
      char big[200];
      memset(big, 'x', sizeof big);
      keel_term t = keel_build(
          &h, "{msg, [1, 2.5, <<\"abc\">>], ~B, #{k => v}}", big, sizeof big);
      cr_assert_neq(t, KEEL_NONE);
      cr_assert_eq(keel_send(pid, t), KEEL_OK);
      keel_heap_destroy(&h); /* the message must not depend on h */
    }
    cr_assert(wait_events(49), "49 equal copies seen");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* G27: once a process is dead, its pid never reaches the process that
 * reuses its slot. */
Test(process, g27_stale_pid_never_reaches_new_process) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&stray, 0);
    keel_term old;
    cr_assert_eq(keel_spawn(prober, NULL, NULL, &old), KEEL_OK);
    long ev = 0;
    for (int round = 0; round < 300; round++) {
      cr_assert_eq(keel_send(old, KEEL_ATOM(STOP)), KEEL_OK);
      cr_assert(wait_no_processes());
      keel_term fresh;
      cr_assert_eq(keel_spawn(prober, NULL, NULL, &fresh), KEEL_OK);
      uint64_t a = keel_pid_local_number(old), b = keel_pid_local_number(fresh);
      cr_assert_eq(a & RT_IDX_MASK, b & RT_IDX_MASK, "slot reused");
      cr_assert_neq(a, b, "new generation");
      /* Stale sends, then a probe on the same (FIFO) channel: if any stale
       * message had been delivered it would be counted before the probe. */
      for (int k = 0; k < 5; k++)
        cr_assert_eq(keel_send(old, keel_small(k)), KEEL_OK);
      cr_assert_eq(keel_send(fresh, KEEL_ATOM(INFO)), KEEL_OK);
      cr_assert(wait_events(++ev));
      cr_assert_eq(atomic_load(&stray), 0, "stale message delivered");
      old = fresh;
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* G27 under concurrency: threads hammer stale pids while their slots are
 * being reused; a new process must never receive one of those messages. */
static _Atomic int hammer_stop;
static keel_term hammer_targets[64];
static _Atomic size_t hammer_n;

static void *hammer(void *arg) {
  (void)arg;
  while (!atomic_load(&hammer_stop)) {
    size_t n = atomic_load(&hammer_n);
    for (size_t i = 0; i < n; i++)
      keel_send(hammer_targets[i], keel_small(7));
  }
  return NULL;
}

Test(process, g27_stale_pid_concurrent_reuse) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&stray, 0);
    atomic_store(&hammer_stop, 0);
    /* Pids of processes already dead, published before the threads start. */
    size_t n = 64;
    for (size_t i = 0; i < n; i++) {
      cr_assert_eq(keel_spawn(prober, NULL, NULL, &hammer_targets[i]), KEEL_OK);
      cr_assert_eq(keel_send(hammer_targets[i], KEEL_ATOM(STOP)), KEEL_OK);
    }
    cr_assert(wait_no_processes());
    atomic_store(&hammer_n, n);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
      pthread_create(&th[i], NULL, hammer, NULL);
    long ev = 0;
    for (int round = 0; round < 200; round++) {
      keel_term fresh[8];
      for (int k = 0; k < 8; k++)
        cr_assert_eq(keel_spawn(prober, NULL, NULL, &fresh[k]), KEEL_OK);
      for (int k = 0; k < 8; k++)
        cr_assert_eq(keel_send(fresh[k], KEEL_ATOM(INFO)), KEEL_OK);
      ev += 8;
      cr_assert(wait_events(ev));
      for (int k = 0; k < 8; k++)
        cr_assert_eq(keel_send(fresh[k], KEEL_ATOM(STOP)), KEEL_OK);
      cr_assert(wait_no_processes());
    }
    atomic_store(&hammer_stop, 1);
    for (int i = 0; i < 2; i++)
      pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&stray), 0, "stale message delivered");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* G28: messages queued behind a process's death, or still queued at node
 * stop, are freed, and their references to shared objects dropped. */
static _Atomic int dtor_runs;
static void res_dtor(void *data) {
  (void)data;
  atomic_fetch_add(&dtor_runs, 1);
}

Test(process, g28_no_leaks_at_death) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&dtor_runs, 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_resource *r = keel_resource_new(16, res_dtor);
    cr_assert_not_null(r);
    keel_term rt = keel_resource_term(&h, r);
    keel_resource_release(r); /* the term's box holds the reference now */
    uint8_t bytes[500] = {1};
    keel_term bin = keel_binary(&h, bytes, sizeof bytes);
    keel_term payload = keel_tuple(&h, 2, rt, bin);
    _Atomic long seen = 0;
    keel_spawn_opts so = {.terminate = on_terminate};
    keel_term pid;
    cr_assert_eq(keel_spawn(counting, &seen, &so, &pid), KEEL_OK);
    for (int i = 0; i < 100; i++)
      cr_assert_eq(keel_send(pid, payload), KEEL_OK);
    cr_assert_eq(keel_send(pid, KEEL_ATOM(STOP)), KEEL_OK);
    for (int i = 0; i < 2000; i++) /* left behind, or sent after death */
      cr_assert_eq(keel_send(pid, payload), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert(wait_no_processes());
    cr_assert_eq(atomic_load(&seen), 100, "messages before stop handled");
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.messages_live, 0, "messages leaked: %lld",
                 (long long)st.messages_live);
    keel_heap_destroy(&h);
    cr_assert_eq(atomic_load(&dtor_runs), 1, "resource released once");

    /* Processes with full mailboxes at node stop. */
    keel_heap_init(&h);
    r = keel_resource_new(16, res_dtor);
    rt = keel_resource_term(&h, r);
    keel_resource_release(r);
    _Atomic long many = 0;
    for (int k = 0; k < 50; k++) {
      cr_assert_eq(keel_spawn(counting, &many, &so, &pid), KEEL_OK);
      for (int i = 0; i < 200; i++)
        cr_assert_eq(keel_send(pid, rt), KEEL_OK);
    }
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&dtor_runs), 2, "queued references dropped");
  }
}

/* Spawning beyond the limit fails with KEEL_ESYSLIMIT; a freed slot makes
 * room again. */
Test(process, spawn_limit) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 100);
    keel_term pids[100], extra;
    for (int i = 0; i < 100; i++)
      cr_assert_eq(keel_spawn(prober, NULL, NULL, &pids[i]), KEEL_OK);
    cr_assert_eq(keel_spawn(prober, NULL, NULL, &extra), KEEL_ESYSLIMIT);
    cr_assert_eq(keel_spawn(prober, NULL, NULL, &extra), KEEL_ESYSLIMIT);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.processes, 100);
    cr_assert_eq(keel_send(pids[17], KEEL_ATOM(STOP)), KEEL_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      int rc = keel_spawn(prober, NULL, NULL, &extra);
      if (rc == KEEL_OK)
        break;
      cr_assert_eq(rc, KEEL_ESYSLIMIT);
      clock_gettime(CLOCK_MONOTONIC, &t1);
      cr_assert_lt(t1.tv_sec - t0.tv_sec, TIMEOUT_S, "slot never freed");
      sched_yield();
    }
    cr_assert_eq(keel_spawn(prober, NULL, NULL, &extra), KEEL_ESYSLIMIT);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Exit reasons reach the terminate callback; node stop terminates the
 * survivors with 'shutdown'. */
static keel_term reasons[2];
static _Atomic int nreasons;
static void record_reason(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)state;
  int i = atomic_fetch_add(&nreasons, 1);
  if (i < 2)
    reasons[i] =
        keel_is_atom(reason) ? reason : keel_small(keel_is_list(reason));
  signal_event();
}

static keel_handler_status exiter(keel_proc *self, keel_term msg, void *state) {
  (void)state;
  if (keel_is_list(msg))
    return keel_stop(self, msg); /* a boxed reason, copied on exit */
  return KEEL_CONTINUE;
}

Test(process, exit_reasons) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&nreasons, 0);
    keel_spawn_opts so = {.terminate = record_reason};
    keel_term a, b;
    cr_assert_eq(keel_spawn(exiter, NULL, &so, &a), KEEL_OK);
    cr_assert_eq(keel_spawn(exiter, NULL, &so, &b), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    cr_assert_eq(keel_send(a, keel_build(&h, "[bye, 1]")), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert(wait_events(1));
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&nreasons), 2);
    cr_assert_eq(reasons[0], keel_small(1), "list reason seen");
    cr_assert_eq(reasons[1], KEEL_ATOM(SHUTDOWN));
  }
}

/* Small messages are recycled through per-scheduler caches: a flood from
 * processes on some schedulers to a receiver that dies half-way leaves no
 * message behind, whatever the scheduler count. */
typedef struct flood {
  keel_term to;
  int left;
} flood;

static keel_handler_status flooder(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)msg;
  flood *f = state;
  for (int k = 0; k < 300 && f->left > 0; k++, f->left--)
    keel_send(f->to, keel_small(f->left));
  if (f->left > 0)
    keel_send(keel_self(self), KEEL_NIL);
  else
    signal_event();
  return KEEL_CONTINUE;
}

static keel_handler_status dies_at_zero(keel_proc *self, keel_term msg,
                                        void *state) {
  long *n = state;
  if (++*n == 20000)
    return keel_stop(self, KEEL_ATOM(NORMAL));
  (void)msg;
  return KEEL_CONTINUE;
}

Test(process, g28_small_message_flood_no_leaks) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    long got = 0;
    keel_term rx;
    cr_assert_eq(keel_spawn(dies_at_zero, &got, NULL, &rx), KEEL_OK);
    flood f[4];
    for (int i = 0; i < 4; i++) {
      f[i] = (flood){rx, 10000};
      keel_term tx;
      cr_assert_eq(keel_spawn(flooder, &f[i], NULL, &tx), KEEL_OK);
      cr_assert_eq(keel_send(tx, KEEL_NIL), KEEL_OK);
    }
    cr_assert(wait_events(4), "flooders done");
    /* Once the receiver is gone and the flooders' last messages are
     * freed (just after their handlers return), nothing may be left. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    keel_node_stats st;
    for (;;) {
      cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
      if (st.processes == 4 && st.messages_live == 0)
        break;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      cr_assert_lt(t1.tv_sec - t0.tv_sec, TIMEOUT_S,
                   "%zu processes, %lld messages live", st.processes,
                   (long long)st.messages_live);
      sched_yield();
    }
    cr_assert_eq(got, 20000, "handled exactly up to its exit");
    cr_assert_geq(st.messages_sent, 20000);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Processes spawn processes and message them from inside handlers. */
static keel_handler_status child(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  (void)msg;
  signal_event();
  return keel_stop(self, KEEL_ATOM(NORMAL));
}

static keel_handler_status parent(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  for (int64_t i = 0; i < keel_small_value(msg); i++) {
    keel_term pid;
    cr_assert_eq(keel_spawn(child, NULL, NULL, &pid), KEEL_OK);
    cr_assert_eq(keel_send(pid, KEEL_NIL), KEEL_OK);
  }
  return KEEL_CONTINUE;
}

Test(process, spawn_from_handlers) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_term pids[4];
    for (int i = 0; i < 4; i++) {
      cr_assert_eq(keel_spawn(parent, NULL, NULL, &pids[i]), KEEL_OK);
      cr_assert_eq(keel_send(pids[i], keel_small(2500)), KEEL_OK);
    }
    cr_assert(wait_events(10000), "every child ran");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Terminate callbacks run at node stop may not spawn (the node is going
 * away); they get KEEL_ESTATE instead of leaking a process. */
static _Atomic int spawn_rc_at_stop = 1;
static void spawn_on_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  (void)state;
  atomic_store(&spawn_rc_at_stop, keel_spawn(prober, NULL, NULL, NULL));
}

Test(process, no_spawn_during_stop) {
  start_node(2, 0);
  keel_spawn_opts so = {.terminate = spawn_on_terminate};
  cr_assert_eq(keel_spawn(prober, NULL, &so, NULL), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(atomic_load(&spawn_rc_at_stop), KEEL_ESTATE);
}
