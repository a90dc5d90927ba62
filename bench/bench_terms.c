/*
 * bench_terms.c - ETF encode/decode throughput, Keel against BEAM.
 *
 * Keel side: each term is encoded (or decoded) in a loop; the iteration
 * count is calibrated by doubling until one run lasts long enough, and the
 * best of three runs is kept (the machine may be shared). BEAM
 * side: the terms are written as ETF files to a temporary directory, a
 * small Erlang module (embedded below) is compiled there with erlc, and
 * `erl -noshell` runs term_to_binary(T, [{minor_version, 2}]) and
 * binary_to_term(B) with the same iteration counts, after one warm-up run,
 * also keeping the best of three. Both sides measure CPU time: Keel the
 * process CPU clock, BEAM statistics(runtime) with one scheduler that does
 * not busy-wait (+S 1:1 +sbwt none), so the figure is the loop's own cost.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "keel/etf.h"
#include "keel/term.h"

#define NTERMS 5

typedef struct bterm {
  const char *name;
  keel_term t;
  keel_buf etf;
  long enc_iters, dec_iters;
  double keel_enc, keel_dec; /* seconds for the iterations */
  double beam_enc, beam_dec; /* < 0: unavailable */
} bterm;

/* CPU time of this process: the measured loops are single-threaded, and
 * CPU time is far less disturbed than wall time on a shared machine. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the terms -------------------------------------------------------- */

static keel_term small_map(keel_heap *h) {
  keel_term tags[3] = {keel_atom("admin"), keel_atom("ops"), keel_atom("dev")};
  keel_term pk[3] = {keel_atom("user"), keel_atom("tags"), keel_atom("score")};
  keel_term pv[3] = {keel_binary(h, "alice", 5), keel_list_from(h, 3, tags),
                     keel_float(h, 3.5)};
  keel_term k[5] = {keel_atom("type"), keel_atom("id"), keel_atom("from"),
                    keel_atom("payload"), keel_atom("ts")};
  keel_term v[5] = {keel_atom("request"), keel_small(12345),
                    keel_pid_local(4711), keel_map_from(h, 3, pk, pv),
                    keel_int(h, INT64_C(1700000000000))};
  return keel_map_from(h, 5, k, v);
}

static keel_term int_list(keel_heap *h) {
  keel_term xs[1000];
  for (int i = 0; i < 1000; i++)
    xs[i] = keel_small(i * 7);
  return keel_list_from(h, 1000, xs);
}

/* A complete binary tree of 2-tuples, depth 10, with mixed leaves. */
static keel_term tuple_tree(keel_heap *h) {
  keel_term level[1024];
  for (int i = 0; i < 1024; i++)
    level[i] = i % 2 ? keel_small(i) : keel_atom("leaf");
  for (int n = 512; n >= 1; n /= 2)
    for (int i = 0; i < n; i++)
      level[i] = keel_tuple(h, 2, level[2 * i], level[2 * i + 1]);
  return level[0];
}

static keel_term big_binary(keel_heap *h) {
  uint8_t *d;
  keel_term t = keel_binary_new(h, 65536, &d);
  for (int i = 0; i < 65536; i++)
    d[i] = (uint8_t)(i * 31 + 7);
  return t;
}

/* About 1 KB: a list of user records as a server would send them. */
static keel_term mixed(keel_heap *h) {
  keel_term recs[8];
  static const char *names[] = {"alice", "bob",   "carol", "dave",
                                "erin",  "frank", "grace", "heidi"};
  for (int i = 0; i < 8; i++) {
    keel_term k[3] = {keel_atom("email"), keel_atom("age"),
                      keel_atom("active")};
    keel_term v[3] = {keel_binary(h, "someone@example.com", 19),
                      keel_small(20 + i),
                      i % 2 ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE)};
    recs[i] = keel_tuple(h, 6, keel_atom("user"), keel_small(1000 + i),
                         keel_binary(h, names[i], strlen(names[i])),
                         keel_string(h, "member"), keel_map_from(h, 3, k, v),
                         keel_float(h, 1.25 * i));
  }
  return keel_tuple(h, 3, KEEL_ATOM(OK), keel_list_from(h, 8, recs),
                    keel_small(8));
}

/* ---- Keel measurements ------------------------------------------------ */

static double keel_encode_run(bterm *b, long iters) {
  keel_buf out;
  keel_buf_init(&out);
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    out.len = 0;
    if (keel_etf_encode(&out, b->t, NULL) != KEEL_OK)
      abort();
  }
  double t = now() - t0;
  keel_buf_free(&out);
  return t;
}

static double keel_decode_run(bterm *b, long iters) {
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term t;
    if (keel_etf_decode(&h, b->etf.data, b->etf.len, NULL, &t, NULL) != KEEL_OK)
      abort();
    keel_heap_destroy(&h);
  }
  return now() - t0;
}

/* Doubles the iteration count until a run takes at least `target` s. */
static long calibrate(bterm *b, double (*run)(bterm *, long), double target,
                      double *secs) {
  long n = 1;
  for (;;) {
    double t = run(b, n);
    if (t >= target || n > (1L << 40)) {
      /* Best of three runs after the warm one: the machine may be busy. */
      *secs = run(b, n);
      for (int i = 0; i < 2; i++) {
        t = run(b, n);
        *secs = t < *secs ? t : *secs;
      }
      return n;
    }
    n = t < target / 64 ? n * 16 : n * 2;
  }
}

/* ---- BEAM measurements ------------------------------------------------ */

static const char *const ERL_SRC =
    "-module(keel_bench_etf).\n"
    "-export([main/1]).\n"
    "main([Dir | Specs]) ->\n"
    "    [run(Dir, S) || S <- Specs], halt(0).\n"
    "run(Dir, Spec) ->\n"
    "    [Name, E, D] = string:split(Spec, \":\", all),\n"
    "    {ok, B} = file:read_file(filename:join(Dir, Name ++ \".etf\")),\n"
    "    T = binary_to_term(B),\n"
    "    NE = list_to_integer(E), ND = list_to_integer(D),\n"
    "    enc(T, NE), dec(B, ND),\n"
    "    TE = best(fun() -> enc(T, NE) end, 3),\n"
    "    TD = best(fun() -> dec(B, ND) end, 3),\n"
    "    io:format(\"~s ~.9f ~.9f~n\", [Name, TE / 1.0e6, TD / 1.0e6]).\n"
    "best(F, K) -> lists:min([cpu(F) || _ <- lists:seq(1, K)]).\n"
    "cpu(F) ->\n"
    "    {T0, _} = statistics(runtime), F(), {T1, _} = statistics(runtime),\n"
    "    (T1 - T0) * 1000.\n"
    "enc(_, 0) -> ok;\n"
    "enc(T, N) -> _ = term_to_binary(T, [{minor_version, 2}]), enc(T, N - "
    "1).\n"
    "dec(_, 0) -> ok;\n"
    "dec(B, N) -> _ = binary_to_term(B), dec(B, N - 1).\n";

static int write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL)
    return -1;
  size_t w = fwrite(data, 1, len, f);
  return fclose(f) == 0 && w == len ? 0 : -1;
}

static bool have_erl(void) {
  return system("command -v erl >/dev/null 2>&1 && "
                "command -v erlc >/dev/null 2>&1") == 0;
}

/* Writes the terms and the module to dir, runs BEAM, fills beam_*. */
static int run_beam(bterm *ts, const char *dir) {
  char path[4200], cmd[16384];
  snprintf(path, sizeof path, "%s/keel_bench_etf.erl", dir);
  if (write_file(path, ERL_SRC, strlen(ERL_SRC)) < 0)
    return -1;
  int n = snprintf(cmd, sizeof cmd,
                   "erlc -o '%s' '%s' && erl +S 1:1 +sbwt none +sbwtdcpu none "
                   "+sbwtdio none -noshell -pa '%s' -eval "
                   "'keel_bench_etf:main(init:get_plain_arguments())' "
                   "-extra '%s'",
                   dir, path, dir, dir);
  for (int i = 0; i < NTERMS; i++) {
    snprintf(path, sizeof path, "%s/%s.etf", dir, ts[i].name);
    if (write_file(path, ts[i].etf.data, ts[i].etf.len) < 0)
      return -1;
    n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s:%ld:%ld", ts[i].name,
                  ts[i].enc_iters, ts[i].dec_iters);
  }
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return -1;
  char line[512], name[128];
  double te, td;
  while (fgets(line, sizeof line, p) != NULL) {
    if (sscanf(line, "%127s %lf %lf", name, &te, &td) != 3)
      continue;
    for (int i = 0; i < NTERMS; i++)
      if (strcmp(name, ts[i].name) == 0) {
        ts[i].beam_enc = te;
        ts[i].beam_dec = td;
      }
  }
  return pclose(p) == 0 ? 0 : -1;
}

static int beam_side(bterm *ts) {
  char dir[4096];
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/keel_bench_XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL)
    return -1;
  int rc = run_beam(ts, dir);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    rc = -1;
  return rc;
}

/* ---- report ----------------------------------------------------------- */

static void report(const char *what, const char *name, size_t bytes, long iters,
                   double keel_s, double beam_s) {
  double mb = (double)bytes * (double)iters / 1e6;
  printf("keel etf_%s_%s %.1f MB/s\n", what, name, mb / keel_s);
  if (beam_s < 0) {
    printf("beam etf_%s_%s unavailable\n", what, name);
    return;
  }
  printf("beam etf_%s_%s %.1f MB/s\n", what, name, mb / beam_s);
  printf("ratio etf_%s_%s %.2f\n", what, name, beam_s / keel_s);
}

int keel_bench_terms(int argc, char **argv) {
  bool quick = false, beam = true;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (strcmp(argv[i], "--no-beam") == 0)
      beam = false;
    else {
      fprintf(stderr, "usage: keel bench terms [--quick] [--no-beam]\n");
      return 2;
    }
  }
  keel_heap h;
  keel_heap_init(&h);
  bterm ts[NTERMS] = {{.name = "small_map", .t = small_map(&h)},
                      {.name = "int_list", .t = int_list(&h)},
                      {.name = "tuple_tree", .t = tuple_tree(&h)},
                      {.name = "binary_64k", .t = big_binary(&h)},
                      {.name = "mixed_1k", .t = mixed(&h)}};
  double target = quick ? 0.01 : 0.25;
  int rc = 0;
  for (int i = 0; i < NTERMS && rc == 0; i++) {
    keel_buf_init(&ts[i].etf);
    if (ts[i].t == KEEL_NONE ||
        keel_etf_encode(&ts[i].etf, ts[i].t, NULL) != KEEL_OK) {
      rc = 1;
      break;
    }
    ts[i].enc_iters =
        calibrate(&ts[i], keel_encode_run, target, &ts[i].keel_enc);
    ts[i].dec_iters =
        calibrate(&ts[i], keel_decode_run, target, &ts[i].keel_dec);
    ts[i].beam_enc = ts[i].beam_dec = -1;
  }
  if (rc == 0 && beam && have_erl() && beam_side(ts) < 0)
    fprintf(stderr, "keel bench terms: the BEAM side failed\n");
  for (int i = 0; i < NTERMS && rc == 0; i++) {
    report("encode", ts[i].name, ts[i].etf.len, ts[i].enc_iters, ts[i].keel_enc,
           ts[i].beam_enc);
    report("decode", ts[i].name, ts[i].etf.len, ts[i].dec_iters, ts[i].keel_dec,
           ts[i].beam_dec);
  }
  for (int i = 0; i < NTERMS; i++)
    keel_buf_free(&ts[i].etf);
  keel_heap_destroy(&h);
  return rc;
}
