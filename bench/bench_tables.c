/*
 * bench_tables.c - ETS-like table throughput on Keel and on BEAM.
 *
 * Keel side: threads (not processes: the tables need no node) on one
 * public set prefilled with {K, 0} for K < keys, each doing n operations
 * on keys from the same LCG as bench/erl/bench_ets.erl: lookup (the
 * object copied into the thread's heap), insert {K, N} (overwrite), insert
 * {N, N} into an empty table (n new keys), update_counter(K, 1); and
 * lookups from 2 threads at once. BEAM side: the same on an ETS public
 * set, one process (default options) or 2 processes (read_concurrency) on
 * `erl +S 2:2`. Runs alternate Keel and BEAM; medians are printed, then
 * the 2-thread lookup rate over the 1-thread rate (ets_mt_scaling).
 *
 * Each thread's results go to a fixed heap over a small buffer that is
 * reset when half full (a process heap's bump allocation and an all-
 * garbage minor collection), so no malloc is timed but the table's own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_tables.h"
#include "keel/clock.h"
#include "keel/ets.h"

#define NMETRICS 5

static const char *const metric_names[NMETRICS] = {
    "ets_lookups_per_s", "ets_inserts_per_s", "ets_inserts_new_per_s",
    "ets_mt_lookups_per_s", "ets_update_counter_per_s"};

enum { M_LOOKUP, M_INSERT, M_INSERT_NEW, M_MT_LOOKUP, M_COUNTER };
enum { OP_LOOKUP, OP_INSERT, OP_INSERT_NEW, OP_COUNTER };

#define HEAP_WORDS 4096

typedef struct worker {
  keel_ets_tab tab;
  int op;
  long n, keys;
  uint32_t seed;
  int errors;
  double cpu_ns;   /* the thread's CPU time for its n operations */
  _Atomic int *go; /* set once every thread is created */
} worker;

static uint32_t next(uint32_t s) {
  return s * 1664525u + 1013904223u;
}

static keel_term key_of(uint32_t s, long keys) {
  return keel_small((int64_t)((s >> 8) % (uint32_t)keys));
}

static double thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *work(void *p) {
  worker *w = p;
  static _Thread_local uint64_t buf[HEAP_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, HEAP_WORDS);
  uint32_t s = w->seed;
  keel_term r;
  while (!atomic_load_explicit(w->go, memory_order_acquire))
    sched_yield();
  double c0 = thread_cpu_ns();
  for (long i = w->n; i > 0; i--) {
    int rc;
    if (w->op == OP_INSERT_NEW) {
      rc = keel_ets_insert(w->tab,
                           keel_tuple(&h, 2, keel_small(i), keel_small(i)));
    } else {
      s = next(s);
      keel_term k = key_of(s, w->keys);
      if (w->op == OP_LOOKUP)
        rc = keel_ets_lookup(w->tab, k, &h, &r);
      else if (w->op == OP_INSERT)
        rc = keel_ets_insert(w->tab, keel_tuple(&h, 2, k, keel_small(i)));
      else
        rc = keel_ets_update_counter(w->tab, k, keel_small(1), KEEL_NONE, &h,
                                     &r);
    }
    w->errors += rc != KEEL_OK;
    if (keel_heap_used_words(&h) > HEAP_WORDS / 2) {
      keel_heap_destroy(&h);
      keel_heap_init_fixed(&h, buf, HEAP_WORDS);
    }
  }
  w->cpu_ns = thread_cpu_ns() - c0;
  keel_heap_destroy(&h);
  return NULL;
}

/* ops/s of nthreads (1 or 2) each doing n op's on a table of `keys`
 * objects; negative on failure. The clock runs from the flag that
 * releases the threads to the last join. *cpu_ns gets the threads' mean
 * CPU time per operation. */
static double run_one(int op, int nthreads, long n, long keys, double *cpu_ns) {
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab tab;
  if (keel_ets_new(&o, &tab) != KEEL_OK)
    return -1;
  keel_heap h;
  keel_heap_init(&h);
  for (long k = 0; op != OP_INSERT_NEW && k < keys; k++)
    keel_ets_insert(tab, keel_tuple(&h, 2, keel_small(k), keel_small(0)));
  keel_heap_destroy(&h);
  worker w[2];
  pthread_t th[2];
  _Atomic int go = 0;
  int started = 0;
  for (int i = 0; i < nthreads; i++) {
    w[i] = (worker){.tab = tab,
                    .op = op,
                    .n = n,
                    .keys = keys,
                    .seed = (uint32_t)(i + 1) * 7919u + 1,
                    .go = &go};
    if (pthread_create(&th[i], NULL, work, &w[i]) != 0)
      break;
    started++;
  }
  uint64_t t0 = keel_monotonic_ns();
  atomic_store_explicit(&go, 1, memory_order_release);
  int errors = started < nthreads;
  *cpu_ns = 0;
  for (int i = 0; i < started; i++) {
    pthread_join(th[i], NULL);
    errors += w[i].errors;
    *cpu_ns += w[i].cpu_ns / (double)n / nthreads;
  }
  uint64_t t1 = keel_monotonic_ns();
  keel_ets_delete(tab);
  if (errors != 0)
    return -1;
  return (double)n * nthreads / ((double)(t1 - t0) / 1e9);
}

/* Per run: the CPU-time scaling of the 2-thread lookups (see derived),
 * and each metric's CPU ns per operation (the threads' own CPU time:
 * steadier than wall time on a machine shared with other work). */
static double cpu_scaling[KEEL_BENCH_SUITE_RUNS];
static int ncpu_scaling;
static double cpu_ns_op[NMETRICS][KEEL_BENCH_SUITE_RUNS];
static int ncpu_ns;

static int run_keel(bool quick, double *out) {
  long n = quick ? 20000 : 1000000, keys = quick ? 10000 : 100000;
  static const int op[NMETRICS] = {OP_LOOKUP, OP_INSERT, OP_INSERT_NEW,
                                   OP_LOOKUP, OP_COUNTER};
  double cpu[NMETRICS];
  for (int m = 0; m < NMETRICS; m++) {
    out[m] = run_one(op[m], m == M_MT_LOOKUP ? 2 : 1, n, keys, &cpu[m]);
    if (out[m] < 0)
      return -1;
  }
  if (ncpu_scaling < KEEL_BENCH_SUITE_RUNS && cpu[M_MT_LOOKUP] > 0)
    cpu_scaling[ncpu_scaling++] = 2 * cpu[M_LOOKUP] / cpu[M_MT_LOOKUP];
  if (ncpu_ns < KEEL_BENCH_SUITE_RUNS) {
    for (int m = 0; m < NMETRICS; m++)
      cpu_ns_op[m][ncpu_ns] = cpu[m];
    ncpu_ns++;
  }
  return 0;
}

/* The 2-thread (2-process) lookup rate over the 1-thread rate; and on
 * Keel the same from CPU time (2 x the 1-thread CPU ns per lookup over
 * the 2 threads' mean): what the 2 threads would reach on 2 idle cores,
 * below 2 only by contention between them (shared lines, locks). */
static void derived(const double *keel, const double *beam) {
  if (keel[M_LOOKUP] > 0)
    printf("keel ets_mt_scaling %.2f x\n", keel[M_MT_LOOKUP] / keel[M_LOOKUP]);
  if (ncpu_scaling > 0)
    printf("keel ets_mt_scaling_cpu %.2f x\n",
           keel_bench_median(cpu_scaling, ncpu_scaling));
  if (beam != NULL && beam[M_LOOKUP] > 0)
    printf("beam ets_mt_scaling %.2f x\n", beam[M_MT_LOOKUP] / beam[M_LOOKUP]);
  for (int m = 0; m < NMETRICS && ncpu_ns > 0; m++) {
    size_t len = strlen(metric_names[m]) - strlen("_per_s");
    printf("keel %.*s_cpu_ns %.1f ns\n", (int)len, metric_names[m],
           keel_bench_median(cpu_ns_op[m], ncpu_ns));
  }
}

int keel_bench_tables(int argc, char **argv) {
  static const keel_bench_suite suite = {.name = "tables",
                                         .module = "bench_ets",
                                         .metrics = metric_names,
                                         .nmetrics = NMETRICS,
                                         .unit = "ops/s",
                                         .run_keel = run_keel,
                                         .derived = derived};
  return keel_bench_suite_main(&suite, argc, argv);
}
