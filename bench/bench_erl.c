/*
 * bench_erl.c - the BEAM side shared by the benchmark suites (see
 * bench_erl.h).
 */
#include "bench_erl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The path of bench/erl/<module>.<ext> in src; 0 or -1. */
static int source_of(const char *module, const char *ext, char *src,
                     size_t size) {
  const char *root = getenv("KEEL_SOURCE_DIR");
  if (root != NULL) {
    snprintf(src, size, "%s/bench/erl/%s.%s", root, module, ext);
  } else {
    snprintf(src, size, "%s", __FILE__);
    char *slash = strrchr(src, '/');
    size_t off = slash != NULL ? (size_t)(slash - src) + 1 : 0;
    snprintf(src + off, size - off, "erl/%s.%s", module, ext);
  }
  if (access(src, R_OK) != 0) {
    fprintf(stderr, "keel bench: %s not found (set KEEL_SOURCE_DIR)\n", src);
    return -1;
  }
  return 0;
}

int keel_bench_exs_prepare(const char *module, char *path, size_t size) {
  return source_of(module, "exs", path, size);
}

int keel_bench_erl_prepare(const char *module, char *dir, size_t size) {
  char src[4096];
  if (source_of(module, "erl", src, sizeof src) != 0)
    return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, size, "%s/keel-bench-XXXXXX", tmp != NULL ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("keel bench: mkdtemp");
    return -1;
  }
  char cmd[8400];
  snprintf(cmd, sizeof cmd, "erlc -o '%s' '%s'", dir, src);
  if (system(cmd) != 0) {
    fprintf(stderr, "keel bench: erlc failed (is erlang installed?)\n");
    return -1;
  }
  return 0;
}

void keel_bench_erl_cleanup(const char *module, const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s.beam", dir, module);
  unlink(path);
  rmdir(dir);
}

/* Runs cmd and reads its "<name> <value>" lines into out. */
static int read_figures(const char *cmd, const char *const *names, int n,
                        double *out) {
  char line[256];
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return -1;
  int found = 0;
  while (fgets(line, sizeof line, p) != NULL) {
    char name[128];
    double v;
    if (sscanf(line, "%127s %lf", name, &v) != 2)
      continue;
    for (int i = 0; i < n; i++)
      if (strcmp(name, names[i]) == 0) {
        out[i] = v;
        found++;
      }
  }
  int st = pclose(p);
  return st == 0 && found == n ? 0 : -1;
}

int keel_bench_erl_run(const char *dir, const char *module, const char *flags,
                       const char *args, const char *const *names, int n,
                       double *out) {
  char cmd[4800];
  snprintf(cmd, sizeof cmd,
           "erl +S 2:2 %s -noshell -pa '%s' -run %s main %s -s init stop",
           flags, dir, module, args);
  return read_figures(cmd, names, n, out);
}

int keel_bench_exs_run(const char *path, const char *args,
                       const char *const *names, int n, double *out) {
  char cmd[4800];
  snprintf(cmd, sizeof cmd, "elixir --erl '+S 2:2' '%s' %s", path, args);
  return read_figures(cmd, names, n, out);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double keel_bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int suite_args(const keel_bench_suite *s, int argc, char **argv,
                      bool *quick, bool *beam, int *runs) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i == 0 && strcmp(a, s->name) == 0)
      continue;
    if (strcmp(a, "--quick") == 0) {
      *quick = true;
    } else if (strcmp(a, "--no-beam") == 0) {
      *beam = false;
    } else if (strcmp(a, "--runs") == 0 && i + 1 < argc) {
      *runs = atoi(argv[++i]);
      if (*runs < 1 || *runs > KEEL_BENCH_SUITE_RUNS)
        return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

int keel_bench_suite_main(const keel_bench_suite *s, int argc, char **argv) {
  bool quick = false, beam = true;
  int runs = -1;
  if (s->nmetrics > KEEL_BENCH_SUITE_METRICS ||
      suite_args(s, argc, argv, &quick, &beam, &runs) != 0) {
    fprintf(stderr, "usage: keel bench %s [--quick] [--runs N] [--no-beam]\n",
            s->name);
    return 2;
  }
  if (runs < 0)
    runs = quick ? 1 : 3;
  char dir[4096];
  if (beam &&
      (s->elixir ? keel_bench_exs_prepare(s->module, dir, sizeof dir)
                 : keel_bench_erl_prepare(s->module, dir, sizeof dir)) != 0)
    return 1;
  double k[KEEL_BENCH_SUITE_METRICS][KEEL_BENCH_SUITE_RUNS];
  double b[KEEL_BENCH_SUITE_METRICS][KEEL_BENCH_SUITE_RUNS];
  double tmp[KEEL_BENCH_SUITE_METRICS];
  int rc = 0;
  for (int r = 0; r < runs && rc == 0; r++) {
    if (s->run_keel(quick, tmp) != 0) {
      fprintf(stderr, "keel bench: %s failed on Keel\n", s->name);
      rc = 1;
    }
    for (int i = 0; i < s->nmetrics; i++)
      k[i][r] = tmp[i];
    const char *mode = quick ? "quick" : "full";
    if (rc == 0 && beam &&
        (s->elixir ? keel_bench_exs_run(dir, mode, s->metrics, s->nmetrics, tmp)
                   : keel_bench_erl_run(dir, s->module, "", mode, s->metrics,
                                        s->nmetrics, tmp)) != 0) {
      fprintf(stderr, "keel bench: %s failed on BEAM\n", s->name);
      rc = 1;
    }
    for (int i = 0; beam && i < s->nmetrics; i++)
      b[i][r] = tmp[i];
  }
  double km[KEEL_BENCH_SUITE_METRICS], bm[KEEL_BENCH_SUITE_METRICS];
  for (int i = 0; i < s->nmetrics && rc == 0; i++) {
    double kv = km[i] = keel_bench_median(k[i], runs);
    printf("keel %s %.0f %s\n", s->metrics[i], kv, s->unit);
    if (!beam)
      continue;
    double bv = bm[i] = keel_bench_median(b[i], runs);
    printf("beam %s %.0f %s\n", s->metrics[i], bv, s->unit);
    printf("ratio %s %.2f\n", s->metrics[i], bv > 0 ? kv / bv : 0.0);
  }
  if (rc == 0 && s->derived != NULL)
    s->derived(km, beam ? bm : NULL);
  fflush(stdout);
  if (beam && !s->elixir)
    keel_bench_erl_cleanup(s->module, dir);
  return rc;
}
