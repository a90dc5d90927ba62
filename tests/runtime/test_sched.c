/* Scheduling: per-sender FIFO (G3), no lost wake-up (G24) and fairness
 * (G25). Every scenario runs with 1, 2 and 8 schedulers; every wait has a
 * timeout so a lost wake-up fails the test instead of hanging it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "keel/runtime.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

/* Raises the expected event count by k and returns the new target. */
static long expected;
static long events_target_add(int k) {
  expected += k;
  return expected;
}

static void start(unsigned nsched) {
  start_node(nsched, 0);
  expected = 0;
}

/* ---- G3: per-sender FIFO ----------------------------------------------- */

#define NSENDERS 6 /* 4 processes + 2 foreign threads */
#define PER_SENDER 20000

typedef struct fifo_rx {
  long next[NSENDERS];
  long errors;
  long total;
} fifo_rx;

static keel_handler_status fifo_receiver(keel_proc *self, keel_term msg,
                                         void *state) {
  (void)self;
  fifo_rx *rx = state;
  int64_t sender = keel_small_value(keel_tuple_get(msg, 0));
  int64_t seq = keel_small_value(keel_tuple_get(msg, 1));
  if (sender < 0 || sender >= NSENDERS || seq != rx->next[sender])
    rx->errors++;
  else
    rx->next[sender]++;
  if (++rx->total == (long)NSENDERS * PER_SENDER)
    signal_event();
  return KEEL_CONTINUE;
}

typedef struct fifo_tx {
  keel_term to;
  int id;
  long seq;
} fifo_tx;

/* Sends a batch per message, then messages itself to continue, so the
 * senders interleave with each other and with preemption. */
static keel_handler_status fifo_sender(keel_proc *self, keel_term msg,
                                       void *state) {
  (void)msg;
  fifo_tx *tx = state;
  keel_heap h;
  keel_heap_init(&h);
  for (int k = 0; k < 250 && tx->seq < PER_SENDER; k++, tx->seq++)
    keel_send(tx->to,
              keel_tuple(&h, 2, keel_small(tx->id), keel_small(tx->seq)));
  keel_heap_destroy(&h);
  if (tx->seq < PER_SENDER)
    keel_send(keel_self(self), KEEL_ATOM(CONTINUE));
  return KEEL_CONTINUE;
}

static void *fifo_thread(void *arg) {
  fifo_tx *tx = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (; tx->seq < PER_SENDER; tx->seq++) {
    keel_send(tx->to,
              keel_tuple(&h, 2, keel_small(tx->id), keel_small(tx->seq)));
    if (tx->seq % 1024 == 0) {
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

Test(sched, g03_per_sender_fifo) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    fifo_rx rx = {{0}, 0, 0};
    keel_term rpid;
    cr_assert_eq(keel_spawn(fifo_receiver, &rx, NULL, &rpid), KEEL_OK);
    fifo_tx tx[NSENDERS];
    for (int i = 0; i < NSENDERS; i++)
      tx[i] = (fifo_tx){rpid, i, 0};
    for (int i = 0; i < 4; i++) {
      keel_term spid;
      cr_assert_eq(keel_spawn(fifo_sender, &tx[i], NULL, &spid), KEEL_OK);
      cr_assert_eq(keel_send(spid, KEEL_ATOM(CONTINUE)), KEEL_OK);
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
      pthread_create(&th[i], NULL, fifo_thread, &tx[4 + i]);
    for (int i = 0; i < 2; i++)
      pthread_join(th[i], NULL);
    cr_assert(wait_events(1), "all messages received (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(rx.errors, 0, "out-of-order messages");
    for (int i = 0; i < NSENDERS; i++)
      cr_assert_eq(rx.next[i], PER_SENDER);
  }
}

/* ---- G24: no lost wake-up ---------------------------------------------- */

/* Ping-pong: the message is {Peer, Count}; the handler sends {self, Count-1}
 * back to Peer until Count reaches 0. */
static keel_handler_status ponger(keel_proc *self, keel_term msg, void *state) {
  (void)state;
  keel_term peer = keel_tuple_get(msg, 0);
  int64_t count = keel_small_value(keel_tuple_get(msg, 1));
  if (count == 0) {
    signal_event();
    return KEEL_CONTINUE;
  }
  keel_heap h;
  keel_heap_init(&h);
  keel_send(peer, keel_tuple(&h, 2, keel_self(self), keel_small(count - 1)));
  keel_heap_destroy(&h);
  return KEEL_CONTINUE;
}

static void kick(keel_term a, keel_term b, int64_t rounds) {
  keel_heap h;
  keel_heap_init(&h);
  cr_assert_eq(keel_send(a, keel_tuple(&h, 2, b, keel_small(rounds))), KEEL_OK);
  keel_heap_destroy(&h);
}

Test(sched, g24_pingpong_pairs_complete) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    enum { PAIRS = 16, ROUNDS = 5000 };
    for (int i = 0; i < PAIRS; i++) {
      keel_term a, b;
      cr_assert_eq(keel_spawn(ponger, NULL, NULL, &a), KEEL_OK);
      cr_assert_eq(keel_spawn(ponger, NULL, NULL, &b), KEEL_OK);
      kick(a, b, ROUNDS);
    }
    cr_assert(wait_events(PAIRS), "every pair finished (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Waits until every scheduler is parked on its futex (idle bit set). */
static bool wait_all_parked(void) {
  rt_node *n = keel__rt;
  uint64_t all =
      n->nsched == 64 ? ~UINT64_C(0) : (UINT64_C(1) << n->nsched) - 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&n->idle_mask) != all) {
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (t1.tv_sec - t0.tv_sec > TIMEOUT_S)
      return false;
    sched_yield();
  }
  return true;
}

static keel_handler_status echo(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  if (keel_is_local_pid(msg)) /* forward once, then report */
    keel_send(msg, KEEL_NIL);
  else
    signal_event();
  return KEEL_CONTINUE;
}

/* Every scheduler parked, then one message (or a burst) arrives: it must be
 * handled without any periodic tick to rescue it. */
Test(sched, g24_wake_from_full_park) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    enum { NP = 32 };
    keel_term p[NP];
    for (int i = 0; i < NP; i++)
      cr_assert_eq(keel_spawn(echo, NULL, NULL, &p[i]), KEEL_OK);
    long ev = 0;
    for (int round = 0; round < 60; round++) {
      cr_assert(wait_all_parked(), "schedulers park when idle");
      if (round % 2 == 0) {
        /* One message that hops from one process to another. */
        cr_assert_eq(keel_send(p[round % NP], p[(round + 1) % NP]), KEEL_OK);
        ev += 1;
      } else {
        for (int i = 0; i < NP; i++) /* a burst */
          cr_assert_eq(keel_send(p[i], p[(i + round) % NP]), KEEL_OK);
        ev += NP;
      }
      cr_assert(wait_events(ev), "round %d handled (%u schedulers)", round,
                sched_counts[c]);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- G25: fairness ----------------------------------------------------- */

/* A process that keeps itself busy forever by messaging itself: it only
 * ever leaves its scheduler when its budget runs out. */
static keel_handler_status spinner(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)msg;
  (void)state;
  keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

static keel_handler_status reporter(keel_proc *self, keel_term msg,
                                    void *state) {
  (void)self;
  (void)msg;
  (void)state;
  signal_event();
  return KEEL_CONTINUE;
}

Test(sched, g25_busy_processes_do_not_starve_others) {
  for (size_t c = 0; c < NCONF; c++) {
    unsigned ns = sched_counts[c];
    start(ns);
    /* Per scheduler: one flooding ping-pong pair and one self-looper. */
    for (unsigned i = 0; i < ns; i++) {
      keel_term a, b, s;
      cr_assert_eq(keel_spawn(ponger, NULL, NULL, &a), KEEL_OK);
      cr_assert_eq(keel_spawn(ponger, NULL, NULL, &b), KEEL_OK);
      kick(a, b, KEEL_SMALL_MAX);
      cr_assert_eq(keel_spawn(spinner, NULL, NULL, &s), KEEL_OK);
      cr_assert_eq(keel_send(s, KEEL_NIL), KEEL_OK);
    }
    keel_term r;
    cr_assert_eq(keel_spawn(reporter, NULL, NULL, &r), KEEL_OK);
    for (long i = 1; i <= 200; i++) {
      cr_assert_eq(keel_send(r, KEEL_NIL), KEEL_OK);
      cr_assert(wait_events(i), "third process starved (%u schedulers)", ns);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* The same from inside the node: a process on a busy scheduler messages a
 * third process, which must run although the sender's scheduler never
 * runs dry. */
static keel_handler_status relay(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  keel_send(msg, KEEL_NIL);
  return KEEL_CONTINUE;
}

/* With a spinner busy on every scheduler, a process woken by `waker` (sent
 * the reporter's pid each round) must still run, `rounds` times. */
static void check_woken_runs(keel_handler_fn waker, long rounds) {
  for (size_t c = 0; c < NCONF; c++) {
    unsigned ns = sched_counts[c];
    start(ns);
    for (unsigned i = 0; i < ns; i++) {
      keel_term s;
      cr_assert_eq(keel_spawn(spinner, NULL, NULL, &s), KEEL_OK);
      cr_assert_eq(keel_send(s, KEEL_NIL), KEEL_OK);
    }
    keel_term w, rep;
    cr_assert_eq(keel_spawn(waker, NULL, NULL, &w), KEEL_OK);
    cr_assert_eq(keel_spawn(reporter, NULL, NULL, &rep), KEEL_OK);
    for (long i = 1; i <= rounds; i++) {
      cr_assert_eq(keel_send(w, rep), KEEL_OK);
      cr_assert(wait_events(i), "woken process starved (%u schedulers)", ns);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(sched, g25_process_woken_by_busy_peer_runs) {
  check_woken_runs(relay, 100);
}

/* Wake-up churn: a message hops a random number of times between random
 * processes, and the next round starts after a random busy pause, so the
 * schedulers are caught spinning, about to park, or parked. */
static keel_term churn_pids[64];
static _Atomic uint32_t churn_seed;

static keel_handler_status hopper(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  int64_t hops = keel_small_value(msg);
  if (hops == 0) {
    signal_event();
    return KEEL_CONTINUE;
  }
  uint32_t r = atomic_fetch_add(&churn_seed, 2654435761u);
  keel_send(churn_pids[(r >> 16) % 64], keel_small(hops - 1));
  return KEEL_CONTINUE;
}

Test(sched, g24_wake_up_churn) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    for (int i = 0; i < 64; i++)
      cr_assert_eq(keel_spawn(hopper, NULL, NULL, &churn_pids[i]), KEEL_OK);
    srand(42 + (unsigned)c);
    for (long round = 1; round <= 1500; round++) {
      int burst = 1 + rand() % 3;
      for (int k = 0; k < burst; k++)
        cr_assert_eq(keel_send(churn_pids[rand() % 64], keel_small(rand() % 8)),
                     KEEL_OK);
      cr_assert(wait_events(events_target_add(burst)),
                "round %ld lost a wake-up (%u schedulers)", round,
                sched_counts[c]);
      struct timespec t0, t1;
      long pause_ns = (rand() % 60) * 1000;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      do /* a busy pause, not a sleep: no synchronisation relies on it */
        clock_gettime(CLOCK_MONOTONIC, &t1);
      while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) <
             pause_ns);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* With nothing to do, the schedulers sleep: no periodic tick burns CPU. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(sched, idle_node_uses_no_cpu) {
  start(8);
  keel_term p;
  cr_assert_eq(keel_spawn(reporter, NULL, NULL, &p), KEEL_OK);
  cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert(wait_all_parked());
  double c0 = cpu_seconds();
  /* A measurement window, not synchronisation. */
  struct timespec win = {0, 400000000};
  while (nanosleep(&win, &win) != 0)
    ;
  double used = cpu_seconds() - c0;
  printf("idle node (8 schedulers): %.4f s of CPU in 0.4 s\n", used);
  cr_assert_lt(used, 0.04, "idle node used %.3f s of CPU in 0.4 s", used);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* A process woken by one whose slice ran out must not wait behind a busy
 * process forever (the woken process sits in runnext, the busy one keeps
 * coming back through the ring). */
static keel_handler_status exhausting_waker(keel_proc *self, keel_term msg,
                                            void *state) {
  (void)self;
  (void)state;
  keel_send(msg, KEEL_NIL); /* wakes the reporter */
  /* Use up the slice with sends to a pid that names no process. */
  for (int i = 0; i < KEEL_SLICE_BUDGET / KEEL_COST_SEND; i++)
    keel_send(keel_pid_local(KEEL_PID_NUMBER_MAX), KEEL_NIL);
  return KEEL_CONTINUE;
}

Test(sched, g25_woken_by_exhausted_waker_runs) {
  check_woken_runs(exhausting_waker, 50);
}

/* ---- priorities and keel_yield ----------------------------------------- */

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int order[64], norder;
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void record(int id) {
  pthread_mutex_lock(&order_mu);
  if (norder < 64)
    order[norder++] = id;
  pthread_mutex_unlock(&order_mu);
}

/* Holds the (only) scheduler until the gate opens. */
static keel_handler_status gate(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)msg, (void)st;
  pthread_mutex_lock(&gate_mu);
  signal_event();
  while (!gate_open)
    pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);
  return KEEL_CONTINUE;
}

static keel_handler_status recorder(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)st;
  record((int)keel_small_value(msg));
  signal_event();
  return KEEL_CONTINUE;
}

static void open_gate(void) {
  pthread_mutex_lock(&gate_mu);
  gate_open = true;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
}

Test(sched, priorities_max_then_high_then_normal_and_low) {
  start_node(1, 0);
  norder = 0;
  gate_open = false;
  keel_term g;
  cr_assert_eq(keel_spawn(gate, NULL, NULL, &g), KEEL_OK);
  cr_assert_eq(keel_send(g, KEEL_ATOM(OK)), KEEL_OK);
  cr_assert(wait_events(1)); /* the scheduler is held */
  /* ids: 1-3 normal, 4 low, 5 high, 6 max; made runnable in this order */
  keel_priority prios[7] = {0,
                            KEEL_PRIO_NORMAL,
                            KEEL_PRIO_NORMAL,
                            KEEL_PRIO_NORMAL,
                            KEEL_PRIO_LOW,
                            KEEL_PRIO_HIGH,
                            KEEL_PRIO_MAX};
  for (int id = 1; id <= 6; id++) {
    keel_spawn_opts so = {.priority = prios[id]};
    keel_term pid;
    cr_assert_eq(keel_spawn(recorder, NULL, &so, &pid), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_small(id)), KEEL_OK);
  }
  open_gate();
  cr_assert(wait_events(7));
  cr_assert_eq(norder, 6);
  cr_assert_eq(order[0], 6, "max first");
  cr_assert_eq(order[1], 5, "then high");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

static atomic_bool spin_stop;
static atomic_long low_runs;

static keel_handler_status busy_self(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  if (!atomic_load(&spin_stop))
    (void)keel_send(keel_self(self), msg);
  return KEEL_CONTINUE;
}

static keel_handler_status low_one(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  atomic_fetch_add(&low_runs, 1);
  if (atomic_load(&low_runs) < 20)
    (void)keel_send(keel_self(self), msg); /* stays runnable, at low */
  else
    signal_event();
  return KEEL_CONTINUE;
}

Test(sched, g25_low_priority_is_not_starved_by_normal) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&spin_stop, false);
    atomic_store(&low_runs, 0);
    /* More busy normal processes than schedulers, never idle. */
    for (unsigned i = 0; i < 4 * sched_counts[c]; i++) {
      keel_term pid;
      cr_assert_eq(keel_spawn(busy_self, NULL, NULL, &pid), KEEL_OK);
      cr_assert_eq(keel_send(pid, KEEL_ATOM(OK)), KEEL_OK);
    }
    keel_spawn_opts so = {.priority = KEEL_PRIO_LOW};
    keel_term low;
    cr_assert_eq(keel_spawn(low_one, NULL, &so, &low), KEEL_OK);
    cr_assert_eq(keel_send(low, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert(wait_events(1), "the low process ran 20 times (%u sched)",
              sched_counts[c]);
    atomic_store(&spin_stop, true);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static keel_handler_status yielder(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  int v = (int)keel_small_value(msg);
  record(v);
  if (v == 1)
    cr_assert_eq(keel_yield(self), KEEL_OK);
  signal_event();
  return KEEL_CONTINUE;
}

Test(sched, handler_yield_lets_others_run_before_its_next_message) {
  start_node(1, 0);
  norder = 0;
  gate_open = false;
  keel_term g, a, b;
  cr_assert_eq(keel_spawn(gate, NULL, NULL, &g), KEEL_OK);
  cr_assert_eq(keel_spawn(yielder, NULL, NULL, &a), KEEL_OK);
  cr_assert_eq(keel_spawn(recorder, NULL, NULL, &b), KEEL_OK);
  cr_assert_eq(keel_send(g, KEEL_ATOM(OK)), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(keel_send(a, keel_small(1)), KEEL_OK);
  cr_assert_eq(keel_send(a, keel_small(2)), KEEL_OK);
  cr_assert_eq(keel_send(b, keel_small(10)), KEEL_OK);
  open_gate();
  cr_assert(wait_events(4));
  cr_assert_eq(norder, 3);
  cr_assert_eq(order[0], 1);
  cr_assert_eq(order[1], 10, "b ran between a's two messages");
  cr_assert_eq(order[2], 2);
  cr_assert_eq(keel_yield(NULL), KEEL_ESTATE);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
