/*
 * bench_otp_internal.h - what the files of `keel bench otp` share: sizes,
 * metric slots, a latency histogram and a completion flag.
 */
#ifndef KEEL_BENCH_OTP_INTERNAL_H
#define KEEL_BENCH_OTP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sizes of one run; the BEAM side gets the same. */
typedef struct otp_sizes {
  long calls;    /* calls of the call_1c/100c workloads */
  long calls8;   /* calls of gen_server_call_per_s_1/_8 */
  long restarts; /* supervisor restarts */
  long idle;     /* idle hibernated servers */
  long regs;     /* unique registrations, then as many lookups */
  long per_proc; /* keys each registering process registers */
  long regs1;    /* registrations by one process alone */
  long dups;     /* processes under the one duplicate key */
  long rounds;   /* dispatches to them */
} otp_sizes;

/* quick: the CI smoke sizes; else the sizes. */
otp_sizes otp_sizes_of(bool quick);

/* Metric slots, in print order. The Elixir script prints the M_REG_* ones. */
enum {
  M_CALL_1,
  M_CALL_8,
  M_C1_RATE,
  M_C1_P50,
  M_C1_P99,
  M_C100_1S,
  M_C100_100S,
  M_RESTART_RATE,
  M_RESTART_LAT,
  M_IDLE_MEM,
  M_IDLE_RSS,
  M_REG_REGISTER,
  M_REG_LOOKUP,
  M_REG_DISPATCH,
  M_REG_REGISTER_1P,
  M_COUNT
};

typedef struct otp_metric {
  const char *name, *unit;
  bool higher_better; /* ratio = keel/beam if so, else beam/keel */
} otp_metric;

/* Latencies in 10 ns buckets up to 10 ms (the last bucket takes the
 * rest); one writer. */
#define OTP_HIST_NS 10
#define OTP_HIST_BUCKETS 1000000
typedef struct otp_hist {
  uint32_t *b;
  uint64_t n;
} otp_hist;

int otp_hist_init(otp_hist *h); /* 0 or -1 (no memory) */
void otp_hist_destroy(otp_hist *h);
void otp_hist_add(otp_hist *h, uint64_t ns);
/* The p-quantile (0..1) in microseconds, at its bucket's middle. */
double otp_hist_pct_us(const otp_hist *h, double p);

/* A flag a process sets with a result code and a thread waits for. */
typedef struct otp_done {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rc;
} otp_done;

void otp_done_init(otp_done *d);
void otp_done_destroy(otp_done *d);
void otp_done_signal(otp_done *d, int rc);
/* The signalled code, or -1 after 600 s. */
int otp_done_wait(otp_done *d);

/* Starts a node of 2 schedulers; 0 or -1 (with a message). */
int otp_node_up(size_t max_procs);
double otp_secs(uint64_t t0, uint64_t t1);

/* The registry workloads (bench_otp_registry.c) into out[M_REG_*]. */
int otp_run_registry(const otp_sizes *z, double *out);

#endif /* KEEL_BENCH_OTP_INTERNAL_H */
