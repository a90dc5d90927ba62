/*
 * bench_runtime.c - runtime workloads on Keel and on BEAM, side by side.
 *
 * Keel side: each run starts a node with 2 schedulers (as `erl +S 2:2`),
 * runs one workload with handler processes and stops the node. BEAM side:
 * bench/erl/bench_rt.erl, the same workload written idiomatically. Runs
 * alternate Keel, BEAM, Keel, ... and the median of each side is printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_runtime.h"
#include "keel/clock.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/fiber_ctx.h"
#include "runtime/stack_pool.h"

#define MAX_METRICS 4
#define MAX_RUNS 15

typedef struct metric {
  const char *name;
  const char *unit;
  bool higher_better;
  double floor; /* a figure below this counts as this in ratios */
} metric;

typedef struct workload {
  const char *name;
  int (*run)(bool quick, double *out); /* fills out[i] per metric */
  int (*beam_args)(bool quick, char *buf, size_t size);
  metric metrics[MAX_METRICS];
  int nmetrics;
} workload;

/* ---- helpers ----------------------------------------------------------- */

/* Bytes the C heap hands out (in use, small blocks and mmapped ones):
 * unlike RSS, it does not depend on what an earlier run left resident. */
static long heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return (long)(mi.uordblks + mi.hblkhd);
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &size, &res) != 2)
    res = 0;
  fclose(f);
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double secs(uint64_t t0, uint64_t t1) {
  return (double)(t1 - t0) / 1e9;
}

/* Completion flag set by a process, waited for by the bench thread. */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static bool done_flag;

static void done_reset(void) {
  pthread_mutex_lock(&done_mu);
  done_flag = false;
  pthread_mutex_unlock(&done_mu);
}

static void done_signal(void) {
  pthread_mutex_lock(&done_mu);
  done_flag = true;
  pthread_cond_broadcast(&done_cv);
  pthread_mutex_unlock(&done_mu);
}

/* Waits for the flag, sampling RSS every 5 ms into *peak_kb (may be NULL).
 * Returns false after 120 s. */
static bool done_wait(long *peak_kb) {
  uint64_t limit = keel_monotonic_ns() + UINT64_C(120000000000);
  pthread_mutex_lock(&done_mu);
  while (!done_flag && keel_monotonic_ns() < limit) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 5000000;
    if (dl.tv_nsec >= 1000000000) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&done_cv, &done_mu, &dl);
    if (peak_kb != NULL) {
      long r = rss_kb();
      if (r > *peak_kb)
        *peak_kb = r;
    }
  }
  bool ok = done_flag;
  pthread_mutex_unlock(&done_mu);
  return ok;
}

static int node_up(size_t max_procs) {
  keel_node_opts o = {.schedulers = 2, .max_processes = max_procs};
  int rc = keel_node_start(&o);
  if (rc != KEEL_OK)
    fprintf(stderr, "keel bench: node start: %s\n", keel_strerror(rc));
  done_reset();
  return rc;
}

/* ---- spawn ------------------------------------------------------------- */

static _Atomic size_t spawn_alive;

static keel_handler_status idle_proc(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)self;
  (void)msg;
  (void)state;
  return KEEL_EXIT; /* any message stops it */
}

static void idle_gone(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  (void)state;
  if (atomic_fetch_sub(&spawn_alive, 1) == 1)
    done_signal();
}

static size_t spawn_n(bool quick) {
  return quick ? 10000 : 1000000;
}

static int run_spawn(bool quick, double *out) {
  size_t n = spawn_n(quick);
  keel_term *pids = malloc(n * sizeof *pids);
  if (pids == NULL || node_up(n + 1024) != KEEL_OK) {
    free(pids);
    return -1;
  }
  memset(pids, 0, n * sizeof *pids); /* touch it before measuring RSS */
  atomic_store(&spawn_alive, n);
  keel_spawn_opts so = {.terminate = idle_gone};
  long r0 = heap_in_use();
  uint64_t t0 = keel_monotonic_ns();
  for (size_t i = 0; i < n; i++) {
    if (keel_spawn(idle_proc, NULL, &so, &pids[i]) != KEEL_OK) {
      fprintf(stderr, "keel bench: spawn %zu failed\n", i);
      keel_node_stop();
      free(pids);
      return -1;
    }
  }
  uint64_t t1 = keel_monotonic_ns();
  long r1 = heap_in_use();
  for (size_t i = 0; i < n; i++)
    keel_send(pids[i], KEEL_ATOM(STOP));
  bool ok = done_wait(NULL);
  uint64_t t2 = keel_monotonic_ns();
  keel_node_stop();
  free(pids);
  out[0] = (double)n / secs(t0, t1);
  out[1] = (double)(r1 - r0) / (double)n;
  out[2] = secs(t1, t2) * 1e3;
  return ok ? 0 : -1;
}

static int beam_spawn(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "spawn %zu", spawn_n(quick));
}

/* ---- ring -------------------------------------------------------------- */

static keel_handler_status ring_proc(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)self;
  int64_t k = keel_small_value(msg);
  if (k == 0)
    done_signal();
  else
    keel_send(*(keel_term *)state, keel_small(k - 1));
  return KEEL_CONTINUE;
}

static void ring_sizes(bool quick, size_t *n, long *hops) {
  *n = quick ? 1000 : 10000;
  *hops = quick ? 20000 : 1000000;
}

static int run_ring(bool quick, double *out) {
  size_t n;
  long hops;
  ring_sizes(quick, &n, &hops);
  keel_term *next = malloc(n * sizeof *next);
  keel_term *pids = malloc(n * sizeof *pids);
  if (next == NULL || pids == NULL || node_up(n + 16) != KEEL_OK) {
    free(next);
    free(pids);
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    keel_spawn(ring_proc, &next[i], NULL, &pids[i]);
  for (size_t i = 0; i < n; i++)
    next[i] = pids[(i + 1) % n];
  uint64_t t0 = keel_monotonic_ns();
  keel_send(pids[0], keel_small(hops));
  bool ok = done_wait(NULL);
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  free(next);
  free(pids);
  out[0] = (double)hops / secs(t0, t1);
  return ok ? 0 : -1;
}

static int beam_ring(bool quick, char *buf, size_t size) {
  size_t n;
  long hops;
  ring_sizes(quick, &n, &hops);
  return snprintf(buf, size, "ring %zu %ld", n, hops);
}

/* ---- pingpong ---------------------------------------------------------- */

static long pingpong_n(bool quick) {
  return quick ? 20000 : 2000000;
}

static int run_pingpong(bool quick, double *out) {
  long n = pingpong_n(quick);
  keel_term peer[2], pids[2];
  if (node_up(16) != KEEL_OK)
    return -1;
  for (int i = 0; i < 2; i++)
    keel_spawn(ring_proc, &peer[i], NULL, &pids[i]);
  peer[0] = pids[1];
  peer[1] = pids[0];
  uint64_t t0 = keel_monotonic_ns();
  keel_send(pids[0], keel_small(n));
  bool ok = done_wait(NULL);
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  out[0] = (double)n / secs(t0, t1);
  return ok ? 0 : -1;
}

static int beam_pingpong(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "pingpong %ld", pingpong_n(quick));
}

/* ---- cast -------------------------------------------------------------- */

typedef struct cast_state {
  keel_term to;
  long left;
} cast_state;

static keel_handler_status cast_recv(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)self;
  (void)msg;
  if (--*(long *)state == 0)
    done_signal();
  return KEEL_CONTINUE;
}

/* Sends a batch per message and messages itself to go on, so it stays a
 * well-behaved process (it yields when its budget runs out). */
static keel_handler_status cast_send(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)msg;
  cast_state *cs = state;
  for (int k = 0; k < 1000 && cs->left > 0; k++, cs->left--)
    keel_send(cs->to, keel_small(cs->left));
  if (cs->left > 0)
    keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

static long cast_n(bool quick) {
  return quick ? 100000 : 10000000;
}

static int run_cast(bool quick, double *out) {
  long n = cast_n(quick), count = n;
  if (node_up(16) != KEEL_OK)
    return -1;
  keel_term recv, send;
  keel_spawn(cast_recv, &count, NULL, &recv);
  cast_state cs = {recv, n};
  keel_spawn(cast_send, &cs, NULL, &send);
  long r0 = rss_kb(), peak = r0;
  uint64_t t0 = keel_monotonic_ns();
  keel_send(send, KEEL_NIL);
  bool ok = done_wait(&peak);
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  out[0] = (double)n / secs(t0, t1);
  out[1] = (double)(peak - r0);
  return ok ? 0 : -1;
}

static int beam_cast(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "cast %ld", cast_n(quick));
}

/* ---- fanout ------------------------------------------------------------ */

#define FANOUT_SUBS 1000

typedef struct fanout_pub {
  keel_term subs[FANOUT_SUBS];
  long rounds_left;
} fanout_pub;

static long fanout_rounds(bool quick) {
  return quick ? 20 : 2000;
}

static _Atomic long fanout_finished;

static keel_handler_status fanout_sub(keel_proc *self, keel_term msg,
                                      void *state) {
  (void)self;
  (void)msg;
  if (--*(long *)state == 0 &&
      atomic_fetch_add(&fanout_finished, 1) + 1 == FANOUT_SUBS)
    done_signal();
  return KEEL_CONTINUE;
}

/* One round per message, then a message to itself to go on. */
static keel_handler_status fanout_publisher(keel_proc *self, keel_term msg,
                                            void *state) {
  (void)msg;
  fanout_pub *p = state;
  for (int i = 0; i < FANOUT_SUBS; i++)
    keel_send(p->subs[i], keel_small(p->rounds_left));
  if (--p->rounds_left > 0)
    keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

static int run_fanout(bool quick, double *out) {
  long rounds = fanout_rounds(quick);
  fanout_pub *p = malloc(sizeof *p);
  long *left = malloc(FANOUT_SUBS * sizeof *left);
  if (p == NULL || left == NULL || node_up(FANOUT_SUBS + 16) != KEEL_OK) {
    free(p);
    free(left);
    return -1;
  }
  atomic_store(&fanout_finished, 0);
  for (int i = 0; i < FANOUT_SUBS; i++) {
    left[i] = rounds;
    keel_spawn(fanout_sub, &left[i], NULL, &p->subs[i]);
  }
  p->rounds_left = rounds;
  keel_term pub;
  keel_spawn(fanout_publisher, p, NULL, &pub);
  uint64_t t0 = keel_monotonic_ns();
  keel_send(pub, KEEL_NIL);
  bool ok = done_wait(NULL);
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  free(p);
  free(left);
  out[0] = (double)rounds * FANOUT_SUBS / secs(t0, t1);
  return ok ? 0 : -1;
}

static int beam_fanout(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "fanout %d %ld", FANOUT_SUBS,
                  fanout_rounds(quick));
}

/* ---- fanin ------------------------------------------------------------- */

typedef struct fanin_tx {
  keel_term to;
  long left;
} fanin_tx;

static long fanin_total(bool quick) {
  return quick ? 40000 : 4000000;
}

static keel_handler_status fanin_sender(keel_proc *self, keel_term msg,
                                        void *state) {
  (void)msg;
  fanin_tx *tx = state;
  for (int k = 0; k < 1000 && tx->left > 0; k++, tx->left--)
    keel_send(tx->to, keel_small(tx->left));
  if (tx->left > 0)
    keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

static double fanin_once(bool quick, int nsenders) {
  long total = fanin_total(quick), count = total;
  fanin_tx tx[8];
  if (node_up(16) != KEEL_OK)
    return -1;
  keel_term recv;
  keel_spawn(cast_recv, &count, NULL, &recv);
  keel_term pids[8];
  for (int i = 0; i < nsenders; i++) {
    tx[i] = (fanin_tx){recv, total / nsenders};
    keel_spawn(fanin_sender, &tx[i], NULL, &pids[i]);
  }
  uint64_t t0 = keel_monotonic_ns();
  for (int i = 0; i < nsenders; i++)
    keel_send(pids[i], KEEL_NIL);
  bool ok = done_wait(NULL);
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  return ok ? (double)total / secs(t0, t1) : -1;
}

static int run_fanin(bool quick, double *out) {
  static const int ns[3] = {1, 2, 8};
  for (int i = 0; i < 3; i++)
    if ((out[i] = fanin_once(quick, ns[i])) < 0)
      return -1;
  return 0;
}

static int beam_fanin(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "fanin %ld", fanin_total(quick));
}

/* ---- timers ------------------------------------------------------------ */

/* N processes each get {arm} and set a receive timeout for one common
 * deadline 100 ms after arming starts (so the N timeouts fire as one
 * burst). Meanwhile a ticker process keeps itself runnable by messaging
 * itself; the metric is the longest gap between two of its handler calls
 * that ends after the deadline, until every timeout has fired. */
static size_t timers_n(bool quick) {
  return quick ? 20000 : 1000000;
}

static _Atomic size_t tm_fired;
static size_t tm_total;
static _Atomic uint64_t tm_max_gap;
static _Atomic int tm_stop;
static uint64_t tm_deadline_ns;

static keel_handler_status tm_proc(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)state;
  if (keel_proc_timed_out(self)) {
    if (atomic_fetch_add(&tm_fired, 1) + 1 == tm_total)
      done_signal();
    return KEEL_CONTINUE;
  }
  (void)msg;
  uint64_t now = keel_monotonic_ns();
  uint64_t ms =
      now >= tm_deadline_ns ? 0 : (tm_deadline_ns - now + 999999) / 1000000;
  keel_proc_set_timeout(self, (int64_t)ms);
  return KEEL_CONTINUE;
}

typedef struct tm_ticker {
  uint64_t last;
} tm_ticker;

static keel_handler_status tm_tick(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)msg;
  tm_ticker *t = state;
  uint64_t now = keel_monotonic_ns();
  if (now >= tm_deadline_ns && t->last != 0 &&
      now - t->last > atomic_load(&tm_max_gap))
    atomic_store(&tm_max_gap, now - t->last);
  t->last = now;
  if (!atomic_load(&tm_stop))
    keel_send(keel_self(self), KEEL_ATOM(OK));
  return KEEL_CONTINUE;
}

typedef struct tm_armer {
  keel_term *pids;
  size_t next, n;
} tm_armer;

/* Arms 256 processes per call, then messages itself to go on (as a BEAM
 * process sending in a loop is preempted by reductions). */
static keel_handler_status tm_arm(keel_proc *self, keel_term msg, void *state) {
  (void)msg;
  tm_armer *a = state;
  for (int k = 0; k < 256 && a->next < a->n; k++)
    keel_send(a->pids[a->next++], KEEL_ATOM(OK));
  if (a->next < a->n)
    keel_send(keel_self(self), KEEL_ATOM(OK));
  return KEEL_CONTINUE;
}

static int run_timers(bool quick, double *out) {
  size_t n = timers_n(quick);
  if (node_up(n + 16) != KEEL_OK)
    return -1;
  keel_term *pids = malloc(n * sizeof *pids);
  if (pids == NULL) {
    keel_node_stop();
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (keel_spawn(tm_proc, NULL, NULL, &pids[i]) != KEEL_OK) {
      free(pids);
      keel_node_stop();
      return -1;
    }
  tm_total = n;
  atomic_store(&tm_fired, 0);
  atomic_store(&tm_max_gap, 0);
  atomic_store(&tm_stop, 0);
  tm_ticker ticker = {0};
  tm_armer armer = {pids, 0, n};
  keel_term tp, ap;
  tm_deadline_ns = keel_monotonic_ns() + 100 * UINT64_C(1000000);
  keel_spawn(tm_tick, &ticker, NULL, &tp);
  keel_spawn(tm_arm, &armer, NULL, &ap);
  keel_send(tp, KEEL_ATOM(OK));
  keel_send(ap, KEEL_ATOM(OK));
  bool ok = done_wait(NULL);
  atomic_store(&tm_stop, 1);
  keel_node_stop();
  free(pids);
  out[0] = (double)atomic_load(&tm_max_gap) / 1e6;
  return ok ? 0 : -1;
}

static int beam_timers(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "timers %zu", timers_n(quick));
}

/* ---- idle -------------------------------------------------------------- */

static long idle_ms(bool quick) {
  return quick ? 1000 : 10000;
}

static double cpu_secs(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The node up with a few idle processes and nothing to do: CPU used by the
 * whole OS process over the window, in percent of one core. */
static int run_idle(bool quick, double *out) {
  if (node_up(64) != KEEL_OK)
    return -1;
  for (int i = 0; i < 16; i++)
    keel_spawn(idle_proc, NULL, NULL, NULL);
  long ms = idle_ms(quick);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  double c0 = cpu_secs();
  uint64_t t0 = keel_monotonic_ns();
  while (nanosleep(&ts, &ts) != 0)
    ;
  double c1 = cpu_secs();
  uint64_t t1 = keel_monotonic_ns();
  keel_node_stop();
  out[0] = (c1 - c0) / secs(t0, t1) * 100.0;
  return 0;
}

static int beam_idle(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "idle %ld", idle_ms(quick));
}

/* ---- wake -------------------------------------------------------------- */

/* wake: with the node idle (schedulers parked), a thread outside it sends
 * a process its send time every 2 ms; the process records how long after
 * the send it ran. Percentiles of that delay over n sends. */
static long wake_n(bool quick) {
  return quick ? 200 : 2000;
}

static uint64_t *wake_delays;
static long wake_got, wake_want;

static keel_handler_status wake_rx(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  (void)st;
  uint64_t now = keel_monotonic_ns();
  wake_delays[wake_got] = now - (uint64_t)keel_small_value(msg);
  if (++wake_got == wake_want)
    done_signal();
  return KEEL_CONTINUE;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *sorted, long n, double p) {
  long i = (long)(p * (double)(n - 1) + 0.5);
  return (double)sorted[i] / 1e3;
}

static int run_wake(bool quick, double *out) {
  long n = wake_n(quick);
  wake_delays = calloc((size_t)n, sizeof *wake_delays);
  if (wake_delays == NULL || node_up(64) != KEEL_OK) {
    free(wake_delays);
    return -1;
  }
  wake_got = 0;
  wake_want = n;
  keel_term rx;
  int rc = keel_spawn(wake_rx, NULL, NULL, &rx);
  for (long i = 0; rc == KEEL_OK && i < n; i++) {
    struct timespec ts = {0, 2000000};
    while (nanosleep(&ts, &ts) != 0)
      ;
    rc = keel_send(rx, keel_small((int64_t)keel_monotonic_ns()));
  }
  bool ok = rc == KEEL_OK && done_wait(NULL);
  keel_node_stop();
  if (ok) {
    qsort(wake_delays, (size_t)n, sizeof *wake_delays, cmp_u64);
    out[0] = pct_us(wake_delays, n, 0.5);
    out[1] = pct_us(wake_delays, n, 0.99);
  }
  free(wake_delays);
  return ok ? 0 : -1;
}

static int beam_wake(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "wake %ld", wake_n(quick));
}

/* ---- spawn_fiber ------------------------------------------------------- */

/* Idle fiber processes (16 KiB stacks), 100k alive at once, spawned by a
 * fiber as BEAM's spawner is a process: each runs once and blocks in
 * keel_receive; then the spawner sends each a message, on which it exits.
 * With MADV_GUARD_INSTALL guards a slab of 64 stacks is one memory map; on
 * kernels without it (mprotect guards, two maps per stack) the map budget
 * stops the run near 30k with an error. */
static size_t fiber_n(bool quick) {
  return quick ? 2000 : 100000;
}

static _Atomic size_t fibers_blocked, fibers_gone;

typedef struct fiber_spawner {
  size_t n;
  keel_term *pids;
  _Atomic int rc; /* 1 until the spawn loop ends, then its result */
} fiber_spawner;

static void idle_fiber(keel_proc *self, void *arg) {
  (void)arg;
  keel_term msg;
  atomic_fetch_add(&fibers_blocked, 1);
  keel_receive(self, NULL, NULL, KEEL_INFINITY, &msg);
  if (atomic_fetch_add(&fibers_gone, 1) + 1 == (size_t)arg)
    done_signal();
}

/* Spawns n idle fibers, waits for 'go', then stops them all. */
static void spawner_fiber(keel_proc *self, void *arg) {
  fiber_spawner *sp = arg;
  keel_spawn_opts so = {.stack_size = 16 * 1024};
  int rc = KEEL_OK;
  for (size_t i = 0; i < sp->n && rc == KEEL_OK; i++)
    rc = keel_spawn_fiber(idle_fiber, (void *)(uintptr_t)sp->n, &so,
                          &sp->pids[i]);
  atomic_store(&sp->rc, rc);
  keel_term msg;
  keel_receive(self, NULL, NULL, KEEL_INFINITY, &msg);
  for (size_t i = 0; i < sp->n && rc == KEEL_OK; i++)
    keel_send(sp->pids[i], KEEL_ATOM(STOP));
}

/* Polls (a benchmark may) until *v reaches n or the spawn loop failed. */
static bool fibers_wait(_Atomic size_t *v, size_t n, fiber_spawner *sp) {
  struct timespec poll = {0, 100000};
  uint64_t limit = keel_monotonic_ns() + UINT64_C(120000000000);
  while (atomic_load(v) < n && keel_monotonic_ns() < limit) {
    int rc = atomic_load(&sp->rc);
    if (rc != 1 && rc != KEEL_OK)
      return false;
    nanosleep(&poll, NULL);
  }
  return atomic_load(v) >= n;
}

static int run_spawn_fiber(bool quick, double *out) {
  fiber_spawner sp = {.n = fiber_n(quick)};
  sp.pids = calloc(sp.n, sizeof *sp.pids); /* touched before measuring */
  if (sp.pids == NULL || node_up(sp.n + 1024) != KEEL_OK) {
    free(sp.pids);
    return -1;
  }
  atomic_store(&sp.rc, 1);
  atomic_store(&fibers_blocked, 0);
  atomic_store(&fibers_gone, 0);
  done_reset();
  keel_term spawner;
  long r0 = rss_kb();
  uint64_t t0 = keel_monotonic_ns();
  bool ok = keel_spawn_fiber(spawner_fiber, &sp, NULL, &spawner) == KEEL_OK &&
            fibers_wait(&fibers_blocked, sp.n, &sp);
  uint64_t t1 = keel_monotonic_ns();
  long r1 = rss_kb();
  if (ok)
    keel_send(spawner, KEEL_ATOM(OK));
  ok = ok && done_wait(NULL);
  uint64_t t2 = keel_monotonic_ns();
  if (!ok)
    fprintf(stderr, "keel bench: fiber spawn failed: %s\n",
            keel_strerror(atomic_load(&sp.rc)));
  keel_node_stop();
  free(sp.pids);
  out[0] = (double)sp.n / secs(t0, t1);
  out[1] = (double)(r1 - r0) * 1024.0 / (double)sp.n;
  out[2] = secs(t1, t2) * 1e3;
  return ok ? 0 : -1;
}

static int beam_spawn_fiber(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "spawn_fiber %zu", fiber_n(quick));
}

/* ---- switch ------------------------------------------------------------ */

/* One fiber context switch: main and a fiber switch back and forth; each
 * round trip is two switches. */
static long switch_n(bool quick) {
  return quick ? 200000 : 20000000;
}

typedef struct switch_bench {
  keel__ctx main_ctx, fib_ctx;
} switch_bench;

static void switch_fiber(void *arg) {
  switch_bench *sb = arg;
  for (;;)
    keel__ctx_switch(&sb->fib_ctx, &sb->main_ctx);
}

static int run_switch(bool quick, double *out) {
#if KEEL_HAVE_FIBERS
  keel__stack_pool_opts po = {.stack_size = 64 * 1024};
  keel__stack_pool *pool = keel__stack_pool_new(&po);
  keel__stack *st = NULL;
  if (pool == NULL ||
      keel__stack_alloc(pool, KEEL_STACK_NO_CACHE, &st) != KEEL_OK) {
    keel__stack_pool_destroy(pool);
    return -1;
  }
  switch_bench sb;
  keel__ctx_init_current(&sb.main_ctx);
  keel__ctx_make(&sb.fib_ctx, st->lo, st->size, switch_fiber, &sb);
  long n = switch_n(quick);
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < n; i++)
    keel__ctx_switch(&sb.main_ctx, &sb.fib_ctx);
  uint64_t t1 = keel_monotonic_ns();
  keel__ctx_destroy(&sb.fib_ctx);
  keel__ctx_destroy(&sb.main_ctx);
  keel__stack_free(pool, KEEL_STACK_NO_CACHE, st, false);
  keel__stack_pool_destroy(pool);
  out[0] = (double)(t1 - t0) / (2.0 * (double)n);
  return 0;
#else
  (void)quick;
  (void)out;
  return -1;
#endif
}

static int beam_switch(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "switch %ld", switch_n(quick) / 10);
}

/* ---- the table --------------------------------------------------------- */

/* ---- call_backlog: calls made with a long queue ------------------------ */

/* A caller with `backlog` unrelated messages in its own queue makes `calls`
 * request/reply calls to a server; each call makes a fresh ref, marks its
 * queue (keel_receive_mark, BEAM's recv_mark) and waits for {Ref, Reply},
 * so the backlog is never scanned (without the mark every call would
 * examine all of it). */
static long backlog_n(bool quick) {
  return quick ? 5000 : 100000;
}

static long backlog_calls(bool quick) {
  return quick ? 500 : 20000;
}

typedef struct backlog_run {
  keel_term server;
  long backlog, calls;
  uint64_t t0, t1;
} backlog_run;

static keel_handler_status backlog_server(keel_proc *self, keel_term msg,
                                          void *state) {
  (void)self, (void)state;
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_send(keel_tuple_get(msg, 1),
            keel_tuple(&h, 2, keel_tuple_get(msg, 2), KEEL_ATOM(OK)));
  return KEEL_CONTINUE;
}

static bool is_reply(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 2 &&
         keel_eq_exact(keel_tuple_get(m, 0), *(keel_term *)arg);
}

static void backlog_caller(keel_proc *self, void *arg) {
  backlog_run *r = arg;
  keel_term me = keel_self(self);
  for (long i = 0; i < r->backlog; i++)
    keel_send(me, keel_small(i));
  r->t0 = keel_monotonic_ns();
  uint64_t buf[32];
  for (long i = 0; i < r->calls; i++) {
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 32);
    keel_term ref = keel_make_ref(&h), m;
    keel_receive_mark(self);
    keel_send(r->server, keel_tuple(&h, 3, KEEL_ATOM(CALL), me, ref));
    if (keel_receive(self, is_reply, &ref, 10000, &m) != KEEL_OK)
      return; /* done_wait times out: the run fails */
  }
  r->t1 = keel_monotonic_ns();
  done_signal();
}

static int run_call_backlog(bool quick, double *out) {
  backlog_run r = {.backlog = backlog_n(quick), .calls = backlog_calls(quick)};
  if (node_up(16) != KEEL_OK)
    return -1;
  keel_spawn(backlog_server, NULL, NULL, &r.server);
  keel_spawn_fiber(backlog_caller, &r, NULL, NULL);
  bool ok = done_wait(NULL);
  keel_node_stop();
  out[0] = ok ? (double)r.calls / secs(r.t0, r.t1) : 0;
  return ok ? 0 : -1;
}

static int beam_call_backlog(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "call_backlog %ld %ld", backlog_n(quick),
                  backlog_calls(quick));
}

/* ---- link_exit, monitor, down: the costs of relations ------------------- */

static long relations_n(bool quick) {
  return quick ? 5000 : 100000;
}

static _Atomic long rel_left;
static uint64_t rel_t0, rel_t1;

static keel_handler_status rel_worker(keel_proc *self, keel_term msg,
                                      void *state) {
  (void)self, (void)state;
  return msg == KEEL_ATOM(STOP) ? KEEL_EXIT : KEEL_CONTINUE;
}

static void rel_gone(keel_proc *self, keel_term reason, void *state) {
  (void)self, (void)reason, (void)state;
  if (atomic_fetch_sub(&rel_left, 1) == 1) {
    rel_t1 = keel_monotonic_ns();
    done_signal();
  }
}

/* link_exit: a root spawn_links n workers, then is killed: the time until
 * every worker has died of the link exit. */
static void link_root(keel_proc *self, void *arg) {
  long n = *(long *)arg;
  keel_spawn_opts so = {.link = true, .terminate = rel_gone};
  for (long i = 0; i < n; i++)
    keel_spawn(rel_worker, NULL, &so, NULL);
  keel_term m;
  keel_receive(self, NULL, NULL, KEEL_INFINITY, &m); /* killed here */
}

static int run_link_exit(bool quick, double *out) {
  long n = relations_n(quick);
  if (node_up((size_t)n + 1024) != KEEL_OK)
    return -1;
  atomic_store(&rel_left, n);
  keel_term root;
  keel_spawn_fiber(link_root, &n, NULL, &root);
  keel_node_stats st;
  do /* until every worker is up */
    keel_node_stats_get(&st);
  while (st.spawned < (uint64_t)n + 1);
  rel_t0 = keel_monotonic_ns();
  keel_exit(root, KEEL_ATOM(KILL));
  bool ok = done_wait(NULL);
  keel_node_stop();
  out[0] = secs(rel_t0, rel_t1) * 1e3;
  return ok ? 0 : -1;
}

static int beam_link_exit(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "link_exit %ld", relations_n(quick));
}

/* monitor: a fiber monitors and demonitors a live process n times. */
static double rel_rate;

static void monitor_loop(keel_proc *self, void *arg) {
  long n = *(long *)arg * 10;
  keel_term target;
  keel_spawn(rel_worker, NULL, NULL, &target);
  uint64_t buf[16];
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < n; i++) {
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 16);
    keel_term ref;
    keel_monitor(self, target, 0, &h, &ref);
    keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
  }
  rel_rate = (double)n / secs(t0, keel_monotonic_ns());
  keel_send(target, KEEL_ATOM(STOP));
  done_signal();
}

static int run_monitor(bool quick, double *out) {
  long n = relations_n(quick);
  if (node_up(1024) != KEEL_OK)
    return -1;
  keel_spawn_fiber(monitor_loop, &n, NULL, NULL);
  bool ok = done_wait(NULL);
  keel_node_stop();
  out[0] = rel_rate;
  return ok ? 0 : -1;
}

static int beam_monitor(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "monitor %ld", relations_n(quick) * 10);
}

/* down: n monitored processes exit; the monitor takes every 'DOWN'. */
static void down_loop(keel_proc *self, void *arg) {
  long n = *(long *)arg;
  keel_term *pids = malloc((size_t)n * sizeof *pids);
  keel_heap h;
  keel_heap_init(&h);
  for (long i = 0; i < n; i++) {
    keel_term ref;
    keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
    keel_spawn(rel_worker, NULL, &so, &pids[i]);
  }
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < n; i++)
    keel_send(pids[i], KEEL_ATOM(STOP));
  keel_term m;
  long got = 0;
  while (got < n && keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK)
    got++;
  rel_rate = got == n ? (double)n / secs(t0, keel_monotonic_ns()) : 0;
  keel_heap_destroy(&h);
  free(pids);
  done_signal();
}

static int run_down(bool quick, double *out) {
  long n = relations_n(quick);
  if (node_up((size_t)n + 1024) != KEEL_OK)
    return -1;
  keel_spawn_fiber(down_loop, &n, NULL, NULL);
  bool ok = done_wait(NULL);
  keel_node_stop();
  out[0] = rel_rate;
  return ok && rel_rate > 0 ? 0 : -1;
}

static int beam_down(bool quick, char *buf, size_t size) {
  return snprintf(buf, size, "down %ld", relations_n(quick));
}

static const workload workloads[] = {
    {"spawn",
     run_spawn,
     beam_spawn,
     {{"spawn_per_s", "procs/s", true, 0},
      {"mem_per_proc", "bytes", false, 0},
      {"kill_ms", "ms", false, 0}},
     3},
    {"ring", run_ring, beam_ring, {{"ring_hops_per_s", "hops/s", true, 0}}, 1},
    {"pingpong",
     run_pingpong,
     beam_pingpong,
     {{"pingpong_msgs_per_s", "msgs/s", true, 0}},
     1},
    {"cast",
     run_cast,
     beam_cast,
     {{"cast_msgs_per_s", "msgs/s", true, 0},
      {"cast_rss_peak_kb", "kB", false, 4}},
     2},
    {"fanout",
     run_fanout,
     beam_fanout,
     {{"fanout_deliveries_per_s", "msgs/s", true, 0}},
     1},
    {"fanin",
     run_fanin,
     beam_fanin,
     {{"fanin_msgs_per_s_1", "msgs/s", true, 0},
      {"fanin_msgs_per_s_2", "msgs/s", true, 0},
      {"fanin_msgs_per_s_8", "msgs/s", true, 0}},
     3},
    {"timers",
     run_timers,
     beam_timers,
     {{"timer_burst_delay_ms", "ms", false, 0.01}},
     1},
    {"spawn_fiber",
     run_spawn_fiber,
     beam_spawn_fiber,
     {{"fiber_spawn_per_s", "procs/s", true, 0},
      {"fiber_mem_per_proc", "bytes", false, 0},
      {"fiber_kill_ms", "ms", false, 0}},
     3},
    {"switch", run_switch, beam_switch, {{"switch_ns", "ns", false, 0}}, 1},
    {"link_exit",
     run_link_exit,
     beam_link_exit,
     {{"link_cascade_ms", "ms", false, 0}},
     1},
    {"monitor",
     run_monitor,
     beam_monitor,
     {{"monitor_pairs_per_s", "pairs/s", true, 0}},
     1},
    {"down", run_down, beam_down, {{"down_per_s", "downs/s", true, 0}}, 1},
    {"call_backlog",
     run_call_backlog,
     beam_call_backlog,
     {{"backlog_calls_per_s", "calls/s", true, 0}},
     1},
    {"idle", run_idle, beam_idle, {{"idle_cpu_pct", "%", false, 0.01}}, 1},
    {"wake",
     run_wake,
     beam_wake,
     {{"wake_p50_us", "us", false, 0.01}, {"wake_p99_us", "us", false, 0.01}},
     2},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

/* ---- the BEAM side ----------------------------------------------------- */

/* Runs bench_rt.erl for workload w: its figures go to out. */
static int beam_run(const char *dir, const workload *w, bool quick,
                    double *out) {
  char args[128];
  const char *names[MAX_METRICS];
  w->beam_args(quick, args, sizeof args);
  for (int i = 0; i < w->nmetrics; i++)
    names[i] = w->metrics[i].name;
  return keel_bench_erl_run(dir, "bench_rt", "+P 4000000", args, names,
                            w->nmetrics, out);
}

/* ---- driver ------------------------------------------------------------ */

static void print_value(const char *side, const metric *m, double v) {
  printf("%s %s %.*f %s\n", side, m->name, v >= 1000 ? 0 : 2, v, m->unit);
}

static int run_workload(const workload *w, bool quick, int runs,
                        const char *beam_dir) {
  double k[MAX_METRICS][MAX_RUNS], b[MAX_METRICS][MAX_RUNS], tmp[MAX_METRICS];
  for (int r = 0; r < runs; r++) {
    if (w->run(quick, tmp) != 0) {
      fprintf(stderr, "keel bench: %s failed on Keel\n", w->name);
      return 1;
    }
    for (int i = 0; i < w->nmetrics; i++)
      k[i][r] = tmp[i];
    if (beam_dir == NULL)
      continue;
    if (beam_run(beam_dir, w, quick, tmp) != 0) {
      fprintf(stderr, "keel bench: %s failed on BEAM\n", w->name);
      return 1;
    }
    for (int i = 0; i < w->nmetrics; i++)
      b[i][r] = tmp[i];
  }
  for (int i = 0; i < w->nmetrics; i++) {
    const metric *m = &w->metrics[i];
    double kv = keel_bench_median(k[i], runs);
    print_value("keel", m, kv);
    if (beam_dir == NULL)
      continue;
    double bv = keel_bench_median(b[i], runs);
    print_value("beam", m, bv);
    double lo = m->floor > 0 ? m->floor : 1e-9;
    double kf = kv > lo ? kv : lo, bf = bv > lo ? bv : lo;
    double ratio = m->higher_better ? kf / bf : bf / kf;
    printf("ratio %s %.2f\n", m->name, ratio);
  }
  fflush(stdout);
  return 0;
}

static const workload *find_workload(const char *name) {
  for (size_t i = 0; i < NWORKLOADS; i++)
    if (strcmp(workloads[i].name, name) == 0)
      return &workloads[i];
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: keel bench runtime "
          "[spawn|spawn_fiber|ring|pingpong|cast|fanout|fanin|timers|"
          "switch|link_exit|monitor|down|call_backlog|idle|wake|all]... "
          "[--quick] [--runs N] [--no-beam]\n");
}

int keel_bench_runtime(int argc, char **argv) {
  bool quick = false, beam = true;
  int runs = -1;
  const workload *sel[NWORKLOADS * 4];
  size_t nsel = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--quick") == 0) {
      quick = true;
    } else if (strcmp(a, "--no-beam") == 0) {
      beam = false;
    } else if (strcmp(a, "--runs") == 0 && i + 1 < argc) {
      runs = atoi(argv[++i]);
      if (runs < 1 || runs > MAX_RUNS) {
        usage();
        return 2;
      }
    } else if (i == 0 && strcmp(a, "runtime") == 0) {
      continue; /* the suite's own name, as dispatched by `keel bench` */
    } else if (strcmp(a, "all") == 0) {
      for (size_t k = 0; k < NWORKLOADS && nsel < NWORKLOADS * 4; k++)
        sel[nsel++] = &workloads[k];
    } else if (find_workload(a) != NULL) {
      if (nsel < NWORKLOADS * 4)
        sel[nsel++] = find_workload(a);
    } else {
      usage();
      return 2;
    }
  }
  if (nsel == 0)
    for (size_t k = 0; k < NWORKLOADS; k++)
      sel[nsel++] = &workloads[k];
  if (runs < 0)
    runs = quick ? 1 : 3;
  char dir[4096];
  if (beam && keel_bench_erl_prepare("bench_rt", dir, sizeof dir) != 0)
    return 1;
  int rc = 0;
  for (size_t i = 0; i < nsel && rc == 0; i++)
    rc = run_workload(sel[i], quick, runs, beam ? dir : NULL);
  if (beam)
    keel_bench_erl_cleanup("bench_rt", dir);
  return rc;
}
