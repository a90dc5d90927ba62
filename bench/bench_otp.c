/*
 * bench_otp.c - OTP behaviours on Keel and on BEAM: gen_server calls,
 * supervisor restarts, idle hibernated servers (this file) and the
 * Registry (bench_otp_registry.c).
 *
 * Every Keel workload runs on a fresh node of 2 schedulers; the BEAM side
 * is bench/erl/bench_otp.erl on `erl +S 2:2` (calls, restarts, idle
 * servers) and bench/erl/bench_otp_registry.exs on `elixir --erl "+S 2:2"`
 * (Elixir's Registry). Both sides get the same sizes: otp_sizes_of, then
 * any --size NAME=N.
 *
 * calls: handler-process servers whose handle_call answers with a counter
 *   it increments, called by client fibers through keel_gen_server_call
 *   (BEAM: gen_server:call/2 from plain processes). 1 client -> 1 server
 *   also times every call on its own (keel_monotonic_ns, i.e.
 *   clock_gettime(CLOCK_MONOTONIC); BEAM: erlang:monotonic_time) into a
 *   histogram of 10 ns buckets, for p50/p99.
 * restart: a one_for_one supervisor (intensity above the run's restarts)
 *   with one permanent gen_server child that tells a driver process its
 *   pid from handle_continue (after the start acknowledgement); period
 *   1 s, the shortest window, since both sides scan the window's restarts
 *   on every restart; the
 *   driver kills it (exit(Pid, kill)) and waits for the replacement's
 *   message, n times. Latency is per restart, kill to message (median).
 * idle: n gen_servers whose init returns hibernate, started one after the
 *   other by one process; bytes per server as the growth of the C heap in
 *   use (mallinfo2, as the runtime suite's mem_per_proc) and of the RSS.
 *   BEAM: erlang:memory(total) and RSS growth.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_otp.h"
#include "bench_otp_internal.h"
#include "keel/clock.h"
#include "keel/gen_server.h"
#include "keel/signals.h"
#include "keel/supervisor.h"

/* ---- shared helpers ------------------------------------------------------ */

otp_sizes otp_sizes_of(bool quick) {
  if (quick)
    return (otp_sizes){.calls = 20000,
                       .calls8 = 20000,
                       .restarts = 2000,
                       .idle = 10000,
                       .regs = 20000,
                       .per_proc = 10,
                       .regs1 = 1000,
                       .dups = 100,
                       .rounds = 20};
  return (otp_sizes){.calls = 1000000,
                     .calls8 = 400000,
                     .restarts = 100000,
                     .idle = 1000000,
                     .regs = 1000000,
                     .per_proc = 10,
                     .regs1 = 5000,
                     .dups = 1000,
                     .rounds = 1000};
}

int otp_hist_init(otp_hist *h) {
  h->n = 0;
  h->b = calloc(OTP_HIST_BUCKETS, sizeof *h->b);
  return h->b != NULL ? 0 : -1;
}

void otp_hist_destroy(otp_hist *h) {
  free(h->b);
  h->b = NULL;
}

void otp_hist_add(otp_hist *h, uint64_t ns) {
  uint64_t i = ns / OTP_HIST_NS;
  h->b[i < OTP_HIST_BUCKETS ? i : OTP_HIST_BUCKETS - 1]++;
  h->n++;
}

double otp_hist_pct_us(const otp_hist *h, double p) {
  uint64_t want = (uint64_t)((double)h->n * p), seen = 0;
  for (size_t i = 0; i < OTP_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen > want)
      return ((double)i + 0.5) * OTP_HIST_NS / 1e3;
  }
  return (double)OTP_HIST_BUCKETS * OTP_HIST_NS / 1e3;
}

void otp_done_init(otp_done *d) {
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  d->done = false;
  d->rc = 0;
}

void otp_done_destroy(otp_done *d) {
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
}

void otp_done_signal(otp_done *d, int rc) {
  pthread_mutex_lock(&d->mu);
  d->done = true;
  d->rc = rc;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

int otp_done_wait(otp_done *d) {
  uint64_t limit = keel_monotonic_ns() + UINT64_C(600000000000);
  pthread_mutex_lock(&d->mu);
  while (!d->done && keel_monotonic_ns() < limit) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 1;
    pthread_cond_timedwait(&d->cv, &d->mu, &dl);
  }
  int rc = d->done ? d->rc : -1;
  pthread_mutex_unlock(&d->mu);
  return rc;
}

int otp_node_up(size_t max_procs) {
  keel_node_opts o = {.schedulers = 2, .max_processes = max_procs};
  int rc = keel_node_start(&o);
  if (rc != KEEL_OK)
    fprintf(stderr, "keel bench otp: node start: %s\n", keel_strerror(rc));
  return rc == KEEL_OK ? 0 : -1;
}

double otp_secs(uint64_t t0, uint64_t t1) {
  return (double)(t1 - t0) / 1e9;
}

/* ---- calls --------------------------------------------------------------- */

static keel_gs_ret b_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = arg;
  return keel_gs_ok(gs);
}

static keel_gs_ret b_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)req;
  (void)from;
  keel_term r = *s;
  *s = keel_small(keel_small_value(*s) + 1);
  return keel_gs_reply(gs, r);
}

static const keel_gen_server_module bench_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "bench_server",
    .init = b_init,
    .handle_call = b_call,
};

typedef struct call_run {
  keel_term servers[100];
  int nservers;
  long per_client;
  otp_hist *hist; /* one client only: each call timed into it */
  atomic_int next, left, errors;
  otp_done done;
} call_run;

static void client(keel_proc *self, void *arg) {
  (void)self;
  call_run *cr = arg;
  int me = atomic_fetch_add(&cr->next, 1);
  keel_term server = cr->servers[me % cr->nservers];
  keel_heap h;
  keel_heap_init(&h);
  for (long i = 0; i < cr->per_client; i++) {
    uint64_t t0 = cr->hist != NULL ? keel_monotonic_ns() : 0;
    keel_term r;
    if (keel_gen_server_call(server, KEEL_ATOM(OK), KEEL_INFINITY, &h, &r) !=
        KEEL_OK) {
      atomic_fetch_add(&cr->errors, 1);
      break;
    }
    if (cr->hist != NULL)
      otp_hist_add(cr->hist, keel_monotonic_ns() - t0);
  }
  keel_heap_destroy(&h);
  if (atomic_fetch_sub(&cr->left, 1) == 1)
    otp_done_signal(&cr->done, 0);
}

/* c clients calling s servers (client i calls server i mod s), n calls in
 * all; calls per second, or < 0 on failure. */
static double run_calls(int c, int s, long n, otp_hist *hist) {
  if (otp_node_up((size_t)c + (size_t)s + 64) != 0)
    return -1;
  call_run *cr = calloc(1, sizeof *cr);
  if (cr == NULL) {
    (void)keel_node_stop();
    return -1;
  }
  double v = -1;
  cr->nservers = s;
  cr->per_client = n / c;
  cr->hist = hist;
  atomic_init(&cr->left, c);
  otp_done_init(&cr->done);
  int started = 0;
  while (started < s && keel_gen_server_start(&bench_mod, keel_small(0), NULL,
                                              &cr->servers[started]) == KEEL_OK)
    started++;
  if (started == s) {
    uint64_t t0 = keel_monotonic_ns();
    int spawned = 0;
    for (int i = 0; i < c; i++)
      spawned += keel_spawn_fiber(client, cr, NULL, NULL) == KEEL_OK;
    if (spawned == c && otp_done_wait(&cr->done) == 0 &&
        atomic_load(&cr->errors) == 0)
      v = (double)(cr->per_client * c) / otp_secs(t0, keel_monotonic_ns());
  }
  (void)keel_node_stop();
  otp_done_destroy(&cr->done);
  free(cr);
  return v;
}

static int run_call_metrics(const otp_sizes *z, double *out) {
  otp_hist h;
  if (otp_hist_init(&h) != 0)
    return -1;
  out[M_CALL_1] = run_calls(1, 1, z->calls8, NULL);
  out[M_CALL_8] = run_calls(8, 1, z->calls8, NULL);
  out[M_C1_RATE] = run_calls(1, 1, z->calls, &h);
  out[M_C1_P50] = otp_hist_pct_us(&h, 0.50);
  out[M_C1_P99] = otp_hist_pct_us(&h, 0.99);
  out[M_C100_1S] = run_calls(100, 1, z->calls, NULL);
  out[M_C100_100S] = run_calls(100, 100, z->calls, NULL);
  otp_hist_destroy(&h);
  for (int m = M_CALL_1; m <= M_C100_100S; m++)
    if (out[m] < 0)
      return -1;
  return 0;
}

/* ---- restart ------------------------------------------------------------- */

static keel_gs_ret child_init(keel_gen_server *gs, keel_term driver,
                              keel_term *s) {
  *s = driver;
  keel_gs_continue(gs, KEEL_ATOM(OK));
  return keel_gs_ok(gs);
}

/* After the start acknowledgement: tell the driver who we are. */
static keel_gs_ret child_continue(keel_gen_server *gs, keel_term cont,
                                  keel_term *s) {
  (void)cont;
  (void)keel_send(*s, keel_gs_self(gs));
  return keel_gs_ok(gs);
}

static const keel_gen_server_module child_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "bench_child",
    .init = child_init,
    .handle_continue = child_continue,
};

static int child_start(keel_proc *sup, void *arg, keel_term extra,
                       keel_term *pid) {
  (void)sup;
  (void)extra;
  keel_gen_server_opts o = {.link = true};
  return keel_gen_server_start(&child_mod, *(keel_term *)arg, &o, pid);
}

typedef struct restart_run {
  long n;
  keel_term driver;
  otp_hist hist;
  double secs;
  otp_done done;
} restart_run;

static int restart_loop(keel_proc *self, restart_run *rr) {
  keel_term child;
  if (keel_receive(self, NULL, NULL, 10000, &child) != KEEL_OK)
    return -1;
  uint64_t t0 = keel_monotonic_ns();
  for (long i = 0; i < rr->n; i++) {
    uint64_t t = keel_monotonic_ns();
    if (keel_exit(child, KEEL_ATOM(KILL)) != KEEL_OK ||
        keel_receive(self, NULL, NULL, 10000, &child) != KEEL_OK)
      return -1;
    otp_hist_add(&rr->hist, keel_monotonic_ns() - t);
  }
  rr->secs = otp_secs(t0, keel_monotonic_ns());
  return 0;
}

static void restart_driver(keel_proc *self, void *arg) {
  restart_run *rr = arg;
  rr->driver = keel_self(self);
  keel_sup_child_spec child = {.id = KEEL_ATOM(OK),
                               .start = child_start,
                               .arg = &rr->driver,
                               .restart = KEEL_SUP_PERMANENT};
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT;
  spec.intensity = (unsigned)rr->n + 100; /* never gives up */
  spec.period_ms = 1000;
  spec.children = &child;
  spec.nchildren = 1;
  keel_term sup;
  int rc = keel_sup_start_link(&spec, &sup);
  if (rc == KEEL_OK) {
    rc = restart_loop(self, rr);
    (void)keel_sup_stop(sup);
  } else {
    fprintf(stderr, "keel bench otp: supervisor: %s\n", keel_strerror(rc));
  }
  otp_done_signal(&rr->done, rc == KEEL_OK ? 0 : -1);
}

static int run_restart(const otp_sizes *z, double *out) {
  restart_run *rr = calloc(1, sizeof *rr);
  if (rr == NULL || otp_hist_init(&rr->hist) != 0 || otp_node_up(1024) != 0) {
    if (rr != NULL)
      otp_hist_destroy(&rr->hist);
    free(rr);
    return -1;
  }
  rr->n = z->restarts;
  otp_done_init(&rr->done);
  int rc = keel_spawn_fiber(restart_driver, rr, NULL, NULL) == KEEL_OK
               ? otp_done_wait(&rr->done)
               : -1;
  (void)keel_node_stop();
  out[M_RESTART_RATE] = (double)rr->n / rr->secs;
  out[M_RESTART_LAT] = otp_hist_pct_us(&rr->hist, 0.50);
  otp_done_destroy(&rr->done);
  otp_hist_destroy(&rr->hist);
  free(rr);
  return rc;
}

/* ---- idle hibernated servers --------------------------------------------- */

static keel_gs_ret idle_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = arg;
  keel_gs_hibernate(gs);
  return keel_gs_ok(gs);
}

static const keel_gen_server_module idle_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "bench_idle",
    .init = idle_init,
};

typedef struct idle_run {
  long n;
  otp_done done;
} idle_run;

static void idle_starter(keel_proc *self, void *arg) {
  (void)self;
  idle_run *ir = arg;
  int rc = KEEL_OK;
  for (long i = 0; i < ir->n && rc == KEEL_OK; i++)
    rc = keel_gen_server_start(&idle_mod, KEEL_NIL, NULL, NULL);
  if (rc != KEEL_OK)
    fprintf(stderr, "keel bench otp: idle server start: %s\n",
            keel_strerror(rc));
  otp_done_signal(&ir->done, rc == KEEL_OK ? 0 : -1);
}

static long heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return (long)(mi.uordblks + mi.hblkhd);
}

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &size, &res) != 2)
    res = 0;
  fclose(f);
  return res * sysconf(_SC_PAGESIZE);
}

static int run_idle(const otp_sizes *z, double *out) {
  idle_run ir = {.n = z->idle};
  if (otp_node_up((size_t)ir.n + 1024) != 0)
    return -1;
  otp_done_init(&ir.done);
  long h0 = heap_in_use(), r0 = rss_bytes();
  int rc = keel_spawn_fiber(idle_starter, &ir, NULL, NULL) == KEEL_OK
               ? otp_done_wait(&ir.done)
               : -1;
  long h1 = heap_in_use(), r1 = rss_bytes();
  (void)keel_node_stop();
  otp_done_destroy(&ir.done);
  out[M_IDLE_MEM] = (double)(h1 - h0) / (double)ir.n;
  out[M_IDLE_RSS] = (double)(r1 - r0) / (double)ir.n;
  return rc;
}

/* ---- driver -------------------------------------------------------------- */

static const otp_metric metrics[M_COUNT] = {
    [M_CALL_1] = {"gen_server_call_per_s_1", "calls/s", true},
    [M_CALL_8] = {"gen_server_call_per_s_8", "calls/s", true},
    [M_C1_RATE] = {"call_1c_calls_per_s", "calls/s", true},
    [M_C1_P50] = {"call_1c_p50_us", "us", false},
    [M_C1_P99] = {"call_1c_p99_us", "us", false},
    [M_C100_1S] = {"call_100c_1s_calls_per_s", "calls/s", true},
    [M_C100_100S] = {"call_100c_100s_calls_per_s", "calls/s", true},
    [M_RESTART_RATE] = {"restart_per_s", "restarts/s", true},
    [M_RESTART_LAT] = {"restart_latency_us", "us", false},
    [M_IDLE_MEM] = {"idle_server_mem", "bytes", false},
    [M_IDLE_RSS] = {"idle_server_rss", "bytes", false},
    [M_REG_REGISTER] = {"registry_register_per_s", "ops/s", true},
    [M_REG_LOOKUP] = {"registry_lookup_per_s", "ops/s", true},
    [M_REG_DISPATCH] = {"registry_dispatch_per_s", "dispatches/s", true},
    [M_REG_REGISTER_1P] = {"registry_register_1p_per_s", "ops/s", true},
};

static int run_keel(const otp_sizes *z, double *out) {
  if (run_call_metrics(z, out) != 0) {
    fprintf(stderr, "keel bench otp: calls failed\n");
    return -1;
  }
  if (run_restart(z, out) != 0) {
    fprintf(stderr, "keel bench otp: restart failed\n");
    return -1;
  }
  if (run_idle(z, out) != 0) {
    fprintf(stderr, "keel bench otp: idle servers failed\n");
    return -1;
  }
  if (otp_run_registry(z, out) != 0) {
    fprintf(stderr, "keel bench otp: registry failed\n");
    return -1;
  }
  return 0;
}

typedef struct otp_args {
  bool quick, beam;
  int runs;
  otp_sizes z;
} otp_args;

/* --size name=N: overrides one size of otp_sizes. 0 or -1. */
static int set_size(otp_sizes *z, const char *arg) {
  static const struct {
    const char *name;
    size_t off;
  } fields[] = {{"calls", offsetof(otp_sizes, calls)},
                {"calls8", offsetof(otp_sizes, calls8)},
                {"restarts", offsetof(otp_sizes, restarts)},
                {"idle", offsetof(otp_sizes, idle)},
                {"regs", offsetof(otp_sizes, regs)},
                {"per_proc", offsetof(otp_sizes, per_proc)},
                {"regs1", offsetof(otp_sizes, regs1)},
                {"dups", offsetof(otp_sizes, dups)},
                {"rounds", offsetof(otp_sizes, rounds)}};
  const char *eq = strchr(arg, '=');
  if (eq == NULL)
    return -1;
  char *end;
  long v = strtol(eq + 1, &end, 10);
  if (*end != '\0' || v < 1 || v > 100000000)
    return -1;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (strlen(fields[i].name) == (size_t)(eq - arg) &&
        strncmp(arg, fields[i].name, (size_t)(eq - arg)) == 0) {
      *(long *)((char *)z + fields[i].off) = v;
      return 0;
    }
  return -1;
}

static int parse_args(int argc, char **argv, otp_args *a) {
  *a = (otp_args){.beam = true, .runs = -1};
  for (int i = 0; i < argc; i++) /* --quick first: --size overrides it */
    a->quick |= strcmp(argv[i], "--quick") == 0;
  a->z = otp_sizes_of(a->quick);
  for (int i = 0; i < argc; i++) {
    if (i == 0 && strcmp(argv[i], "otp") == 0)
      continue;
    if (strcmp(argv[i], "--quick") == 0) {
      continue;
    } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      if (set_size(&a->z, argv[++i]) != 0)
        return -1;
    } else if (strcmp(argv[i], "--no-beam") == 0) {
      a->beam = false;
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      a->runs = atoi(argv[++i]);
      if (a->runs < 1 || a->runs > KEEL_BENCH_SUITE_RUNS)
        return -1;
    } else {
      return -1;
    }
  }
  if (a->runs < 0)
    a->runs = a->quick ? 1 : 3;
  return 0;
}

typedef struct beam_side {
  char erl_dir[4096], exs[4096];
} beam_side;

/* One BEAM run of every metric into out. */
static int run_beam(const beam_side *b, const otp_sizes *z, double *out) {
  const char *names[M_COUNT];
  for (int i = 0; i < M_COUNT; i++)
    names[i] = metrics[i].name;
  char args[256];
  snprintf(args, sizeof args, "%ld %ld %ld %ld", z->calls8, z->calls,
           z->restarts, z->idle);
  if (keel_bench_erl_run(b->erl_dir, "bench_otp", "+P 4000000", args, names,
                         M_REG_REGISTER, out) != 0) {
    fprintf(stderr, "keel bench otp: erl failed\n");
    return -1;
  }
  snprintf(args, sizeof args, "%ld %ld %ld %ld %ld", z->regs, z->per_proc,
           z->dups, z->rounds, z->regs1);
  if (keel_bench_exs_run(b->exs, args, names + M_REG_REGISTER,
                         M_COUNT - M_REG_REGISTER, out + M_REG_REGISTER) != 0) {
    fprintf(stderr, "keel bench otp: elixir failed\n");
    return -1;
  }
  return 0;
}

static void print_medians(double (*k)[KEEL_BENCH_SUITE_RUNS],
                          double (*b)[KEEL_BENCH_SUITE_RUNS], int runs,
                          bool beam) {
  for (int i = 0; i < M_COUNT; i++) {
    const otp_metric *m = &metrics[i];
    double kv = keel_bench_median(k[i], runs);
    printf("keel %s %.*f %s\n", m->name, kv < 100 ? 3 : 0, kv, m->unit);
    if (!beam)
      continue;
    double bv = keel_bench_median(b[i], runs);
    printf("beam %s %.*f %s\n", m->name, bv < 100 ? 3 : 0, bv, m->unit);
    double ratio =
        m->higher_better ? (bv > 0 ? kv / bv : 0) : (kv > 0 ? bv / kv : 0);
    printf("ratio %s %.2f\n", m->name, ratio);
  }
}

int keel_bench_otp(int argc, char **argv) {
  otp_args a;
  if (parse_args(argc, argv, &a) != 0) {
    fprintf(stderr, "usage: keel bench otp [--quick] [--runs N] [--no-beam] "
                    "[--size NAME=N]...\n");
    return 2;
  }
  if (a.z.per_proc > a.z.regs)
    a.z.per_proc = a.z.regs;
  const otp_sizes z = a.z;
  beam_side bs;
  if (a.beam &&
      keel_bench_erl_prepare("bench_otp", bs.erl_dir, sizeof bs.erl_dir) != 0)
    return 1;
  if (a.beam && keel_bench_exs_prepare("bench_otp_registry", bs.exs,
                                       sizeof bs.exs) != 0) {
    keel_bench_erl_cleanup("bench_otp", bs.erl_dir);
    return 1;
  }
  static double k[M_COUNT][KEEL_BENCH_SUITE_RUNS],
      b[M_COUNT][KEEL_BENCH_SUITE_RUNS];
  double tmp[M_COUNT] = {0};
  int rc = 0;
  for (int r = 0; r < a.runs && rc == 0; r++) {
    rc = run_keel(&z, tmp) != 0 ? 1 : 0;
    for (int i = 0; i < M_COUNT; i++)
      k[i][r] = tmp[i];
    if (rc == 0 && a.beam)
      rc = run_beam(&bs, &z, tmp) != 0 ? 1 : 0;
    for (int i = 0; a.beam && i < M_COUNT; i++)
      b[i][r] = tmp[i];
  }
  if (rc == 0)
    print_medians(k, b, a.runs, a.beam);
  if (a.beam)
    keel_bench_erl_cleanup("bench_otp", bs.erl_dir);
  return rc;
}
