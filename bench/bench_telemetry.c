/*
 * bench_telemetry.c - `keel bench telemetry`: ns per operation of the
 * telemetry, metrics and fuse hot paths, single-threaded, in the thread's
 * CPU time. Keel only (Debian's Erlang ships neither telemetry nor fuse):
 * the figures with an absolute target (telemetry_emit_ns, fuse_ask_ns,
 * fuse_ask_h_ns) are followed by a line
 *   target <metric> <= <ns> met|missed
 */
#include "bench_telemetry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/clock.h"
#include "keel/fuse.h"
#include "keel/metrics.h"
#include "keel/telemetry.h"

typedef struct ctx {
  keel_tel_event *ev;
  keel_tel_span_events span;
  keel_fuses *fuses;
  keel_term name;
  keel_fuse_handle handle;
  keel_tel_measure m[1];
  keel_tel_meta md[1];
} ctx;

typedef void (*op_fn)(ctx *c, long n);

static void op_execute(ctx *c, long n) {
  for (long i = 0; i < n; i++)
    keel_tel_execute(c->ev, c->m, 1, c->md, 1);
}

static void op_span(ctx *c, long n) {
  for (long i = 0; i < n; i++) {
    keel_tel_span s;
    keel_tel_span_start(&s, &c->span, c->md, 1);
    keel_tel_span_stop(&s, NULL, 0, c->md, 1);
  }
}

static volatile int sink;
static void op_fuse_ask(ctx *c, long n) {
  for (long i = 0; i < n; i++)
    sink += keel_fuse_ask(c->fuses, c->name);
}

static void op_fuse_ask_h(ctx *c, long n) {
  for (long i = 0; i < n; i++)
    sink += keel_fuse_ask_h(c->fuses, c->handle);
}

static int nop(const keel_tel_event *e, const keel_tel_measure *m, size_t nm,
               const keel_tel_meta *md, size_t nmd, void *cfg) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)cfg;
  return 0;
}

/* Two threads, each running op_execute n times; returns the mean CPU time
 * per op of the two threads (CLOCK_THREAD_CPUTIME_ID), which equals the
 * single-thread figure when execute scales, whatever else the machine
 * runs. */
typedef struct par_arg {
  ctx *c;
  long n;
  double ns;
} par_arg;

static double thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *par_main(void *arg) {
  par_arg *a = arg;
  double t0 = thread_cpu_ns();
  op_execute(a->c, a->n);
  a->ns = (thread_cpu_ns() - t0) / (double)a->n;
  return NULL;
}

static double execute_2_threads(ctx *c, long n) {
  pthread_t th;
  par_arg a = {c, n, 0}, b = {c, n, 0};
  if (pthread_create(&th, NULL, par_main, &a) != 0)
    return -1;
  par_main(&b);
  pthread_join(th, NULL);
  return (a.ns + b.ns) / 2;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median ns per op over runs, in the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): on a shared machine wall time mostly shows
 * how often other tenants preempt the thread. */
static double measure(op_fn f, ctx *c, long n, int runs) {
  double t[16];
  f(c, n / 10 + 1); /* warm-up */
  for (int r = 0; r < runs; r++) {
    double t0 = thread_cpu_ns();
    f(c, n);
    t[r] = (thread_cpu_ns() - t0) / (double)n;
  }
  qsort(t, (size_t)runs, sizeof t[0], cmp_double);
  return t[runs / 2];
}

static int setup(ctx *c) {
  memset(c, 0, sizeof *c);
  keel_term prefix[2] = {keel_atom("bench"), keel_atom("span")};
  if (keel_tel_event_parse("bench.event", &c->ev) != KEEL_OK ||
      keel_tel_span_events_get(prefix, 2, &c->span) != KEEL_OK ||
      keel_fuses_create(NULL, &c->fuses) != KEEL_OK)
    return 1;
  c->name = keel_atom("bench_fuse");
  keel_fuse_opts fo = {.max_melts = 5, .window_ms = 1000, .reset_ms = 1000};
  if (keel_fuse_install(c->fuses, c->name, &fo) != KEEL_OK ||
      keel_fuse_handle_get(c->fuses, c->name, &c->handle) != KEEL_OK)
    return 1;
  c->m[0] = (keel_tel_measure){keel_atom("latency"), 12.5};
  c->md[0] = (keel_tel_meta){keel_atom("method"), keel_atom("get")};
  return 0;
}

static int parse_args(int argc, char **argv, long *n, int *runs) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      *n = 100000;
      *runs = 1;
    } else if (strcmp(argv[i], "--no-beam") == 0) {
      continue; /* there is no BEAM side */
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      *runs = atoi(argv[++i]);
      if (*runs < 1 || *runs > 15)
        return 2;
    } else {
      fprintf(stderr, "keel bench telemetry: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  return 0;
}

static void report(const char *name, double ns) {
  printf("keel %s %.2f ns/op\n", name, ns);
  fflush(stdout);
}

/* A figure with an absolute target (the table). */
static void report_target(const char *name, double ns, double target) {
  report(name, ns);
  printf("target %s <= %.0f ns/op %s\n", name, target,
         ns <= target ? "met" : "missed");
  fflush(stdout);
}

int keel_bench_telemetry(int argc, char **argv) {
  long n = 5000000;
  int runs = 5;
  int rc = parse_args(argc, argv, &n, &runs);
  if (rc != 0)
    return rc;
  ctx c;
  keel_metrics *reg = NULL;
  if (setup(&c) != 0 || keel_metrics_create(&reg) != KEEL_OK)
    return 1;
  report("tel_execute_0_handlers", measure(op_execute, &c, n, runs));
  report("tel_span_0_handlers", measure(op_span, &c, n, runs));
  if (keel_tel_attach(keel_atom("bench_nop"), &c.ev, 1, nop, NULL) != KEEL_OK)
    return 1;
  report_target("telemetry_emit_ns", measure(op_execute, &c, n, runs), 50);
  report("tel_execute_1_handler_2_threads_cpu", execute_2_threads(&c, n));
  keel_tel_detach(keel_atom("bench_nop"));
  static const char *const tags[] = {"method"};
  keel_metric_spec counter = {.type = KEEL_METRIC_COUNTER,
                              .name = "bench.event.count",
                              .tags = tags,
                              .ntags = 1};
  if (keel_metrics_add(reg, &counter) != KEEL_OK)
    return 1;
  report("metric_counter_1_tag", measure(op_execute, &c, n, runs));
  keel_metrics_destroy(reg);
  static const double bounds[] = {1, 5, 10, 50, 100, 500};
  keel_metric_spec dist = {.type = KEEL_METRIC_DISTRIBUTION,
                           .name = "bench.event.latency",
                           .tags = tags,
                           .ntags = 1,
                           .buckets = bounds,
                           .nbuckets = 6};
  if (keel_metrics_create(&reg) != KEEL_OK ||
      keel_metrics_add(reg, &dist) != KEEL_OK)
    return 1;
  report("metric_distribution_1_tag", measure(op_execute, &c, n, runs));
  keel_metrics_destroy(reg);
  if (keel_fuse_ask(c.fuses, c.name) != KEEL_FUSE_OK ||
      keel_fuse_ask_h(c.fuses, c.handle) != KEEL_FUSE_OK)
    return 1;
  report_target("fuse_ask_ns", measure(op_fuse_ask, &c, n, runs), 20);
  report_target("fuse_ask_h_ns", measure(op_fuse_ask_h, &c, n, runs), 20);
  keel_fuses_destroy(c.fuses);
  return 0;
}
