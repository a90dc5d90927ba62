/*
 * bench_tables.c - ETS-like table throughput on Keel and on BEAM.
 *
 * Keel side: 1 and 2 threads (not processes: the tables need no node) on
 * one public set prefilled with {K, 0} for K < keys, each doing n
 * operations on keys from the same LCG as bench/erl/bench_ets.erl:
 * lookup (the object copied into the thread's heap), insert {K, N},
 * update_counter(K, 1). BEAM side: the same on an ETS public set with
 * write_concurrency and read_concurrency, processes on `erl +S 2:2`.
 * Runs alternate Keel and BEAM; medians are printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_tables.h"
#include "keel/clock.h"
#include "keel/ets.h"

#define NMETRICS 6

static const char *const metric_names[NMETRICS] = {
    "ets_lookup_per_s_1",         "ets_lookup_per_s_2",
    "ets_insert_per_s_1",         "ets_insert_per_s_2",
    "ets_update_counter_per_s_1", "ets_update_counter_per_s_2"};

enum { OP_LOOKUP, OP_INSERT, OP_COUNTER };

typedef struct worker {
  keel_ets_tab tab;
  int op;
  long n, keys;
  uint32_t seed;
  int errors;
} worker;

static uint32_t next(uint32_t s) {
  return (uint32_t)(((uint64_t)s * 1103515245u + 12345u) & 0x7fffffffu);
}

static void *work(void *p) {
  worker *w = p;
  keel_heap h;
  keel_heap_init(&h);
  uint32_t s = w->seed;
  keel_term r;
  for (long i = w->n; i > 0; i--) {
    s = next(s);
    keel_term k = keel_small((int64_t)(s % (uint32_t)w->keys));
    int rc;
    if (w->op == OP_LOOKUP)
      rc = keel_ets_lookup(w->tab, k, &h, &r);
    else if (w->op == OP_INSERT)
      rc = keel_ets_insert(w->tab, keel_tuple(&h, 2, k, keel_small(i)));
    else
      rc = keel_ets_update_counter(w->tab, k, keel_small(1), KEEL_NONE, &h, &r);
    w->errors += rc != KEEL_OK;
    if ((i & 1023) == 0) { /* keep the result heap small */
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

/* ops/s of nthreads doing op; negative on failure. */
static double run_one(int op, int nthreads, long n, long keys) {
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab tab;
  if (keel_ets_new(&o, &tab) != KEEL_OK)
    return -1;
  keel_heap h;
  keel_heap_init(&h);
  for (long k = 0; k < keys; k++)
    keel_ets_insert(tab, keel_tuple(&h, 2, keel_small(k), keel_small(0)));
  keel_heap_destroy(&h);
  worker w[2];
  pthread_t th[2];
  uint64_t t0 = keel_monotonic_ns();
  for (int i = 0; i < nthreads; i++) {
    w[i] = (worker){.tab = tab,
                    .op = op,
                    .n = n,
                    .keys = keys,
                    .seed = (uint32_t)(i + 1) * 7919u + 1};
    if (pthread_create(&th[i], NULL, work, &w[i]) != 0)
      return -1;
  }
  int errors = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    errors += w[i].errors;
  }
  uint64_t t1 = keel_monotonic_ns();
  keel_ets_delete(tab);
  if (errors != 0)
    return -1;
  return (double)n * nthreads / ((double)(t1 - t0) / 1e9);
}

static int run_keel(bool quick, double *out) {
  long n = quick ? 20000 : 1000000, keys = quick ? 10000 : 100000;
  for (int m = 0; m < NMETRICS; m++) {
    out[m] = run_one(m / 2, m % 2 + 1, n, keys);
    if (out[m] < 0)
      return -1;
  }
  return 0;
}

/* ---- BEAM ---- */

/* ---- driver ---- */

int keel_bench_tables(int argc, char **argv) {
  static const keel_bench_suite suite = {
      "tables", "bench_ets", metric_names, NMETRICS, "ops/s", run_keel, false};
  return keel_bench_suite_main(&suite, argc, argv);
}
