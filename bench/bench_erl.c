/*
 * bench_erl.c - the BEAM side shared by the benchmark suites (see
 * bench_erl.h).
 */
#include "bench_erl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int keel_bench_erl_prepare(const char *module, char *dir, size_t size) {
  char src[4096];
  const char *root = getenv("KEEL_SOURCE_DIR");
  if (root != NULL) {
    snprintf(src, sizeof src, "%s/bench/erl/%s.erl", root, module);
  } else {
    snprintf(src, sizeof src, "%s", __FILE__);
    char *slash = strrchr(src, '/');
    size_t off = slash != NULL ? (size_t)(slash - src) + 1 : 0;
    snprintf(src + off, sizeof src - off, "erl/%s.erl", module);
  }
  if (access(src, R_OK) != 0) {
    fprintf(stderr, "keel bench: %s not found (set KEEL_SOURCE_DIR)\n", src);
    return -1;
  }
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

int keel_bench_erl_run(const char *dir, const char *module, const char *flags,
                       const char *args, const char *const *names, int n,
                       double *out) {
  char cmd[4800], line[256];
  snprintf(cmd, sizeof cmd,
           "erl +S 2:2 %s -noshell -pa '%s' -run %s main %s -s init stop",
           flags, dir, module, args);
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double keel_bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
