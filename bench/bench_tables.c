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
#define MAX_RUNS 15

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

static void usage(void) {
  fprintf(stderr, "usage: keel bench tables [--quick] [--runs N] "
                  "[--no-beam]\n");
}

static int parse_args(int argc, char **argv, bool *quick, bool *beam,
                      int *runs) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i == 0 && strcmp(a, "tables") == 0)
      continue;
    if (strcmp(a, "--quick") == 0) {
      *quick = true;
    } else if (strcmp(a, "--no-beam") == 0) {
      *beam = false;
    } else if (strcmp(a, "--runs") == 0 && i + 1 < argc) {
      *runs = atoi(argv[++i]);
      if (*runs < 1 || *runs > MAX_RUNS)
        return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

int keel_bench_tables(int argc, char **argv) {
  bool quick = false, beam = true;
  int runs = -1;
  if (parse_args(argc, argv, &quick, &beam, &runs) != 0) {
    usage();
    return 2;
  }
  if (runs < 0)
    runs = quick ? 1 : 3;
  char dir[4096];
  if (beam && keel_bench_erl_prepare("bench_ets", dir, sizeof dir) != 0)
    return 1;
  double k[NMETRICS][MAX_RUNS], b[NMETRICS][MAX_RUNS], tmp[NMETRICS];
  int rc = 0;
  for (int r = 0; r < runs && rc == 0; r++) {
    if (run_keel(quick, tmp) != 0) {
      fprintf(stderr, "keel bench: tables failed on Keel\n");
      rc = 1;
    }
    for (int i = 0; i < NMETRICS; i++)
      k[i][r] = tmp[i];
    if (rc == 0 && beam &&
        keel_bench_erl_run(dir, "bench_ets", "", quick ? "quick" : "full",
                           metric_names, NMETRICS, tmp) != 0) {
      fprintf(stderr, "keel bench: tables failed on BEAM\n");
      rc = 1;
    }
    for (int i = 0; beam && i < NMETRICS; i++)
      b[i][r] = tmp[i];
  }
  for (int i = 0; i < NMETRICS && rc == 0; i++) {
    double kv = keel_bench_median(k[i], runs);
    printf("keel %s %.0f ops/s\n", metric_names[i], kv);
    if (!beam)
      continue;
    double bv = keel_bench_median(b[i], runs);
    printf("beam %s %.0f ops/s\n", metric_names[i], bv);
    printf("ratio %s %.2f\n", metric_names[i], bv > 0 ? kv / bv : 0.0);
  }
  if (beam)
    keel_bench_erl_cleanup("bench_ets", dir);
  return rc;
}
