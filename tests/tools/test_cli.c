/* The keel command-line tool, run as a separate process. ETF output is
 * compared with the real Erlang's term_to_binary/2 (set KEEL_SKIP_ERL=1 to
 * skip that comparison where erl is not installed). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keel/error.h"
#include "keel/etf.h"
#include "keel/term.h"
#include "keel/version.h"

extern char **environ;

typedef struct result {
  int status; /* exit status, or 128 + signal number */
  char *out;  /* NUL-terminated captured stdout */
  size_t out_len;
  char *err; /* NUL-terminated captured stderr */
} result;

static void result_free(result *r) {
  free(r->out);
  free(r->err);
}

static const char *keel_path(void) {
  static char path[4096];
  const char *dir = getenv("KEEL_BINARY_DIR");
  cr_assert_not_null(dir, "KEEL_BINARY_DIR must be set (ctest sets it)");
  snprintf(path, sizeof path, "%s/keel", dir);
  return path;
}

/* Reads everything from fd (from its start) into a NUL-terminated buffer. */
static char *slurp(int fd, size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  cr_assert_not_null(buf);
  lseek(fd, 0, SEEK_SET);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      cr_assert_not_null(buf);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    cr_assert_geq(r, 0, "read: %s", strerror(errno));
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

static int temp_fd(void) {
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  int fd = dup(fileno(f));
  fclose(f);
  cr_assert_geq(fd, 0);
  return fd;
}

static int wait_status(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs prog (searched in PATH) with argv, feeding in[0..in_len) on stdin and
 * capturing stdout and stderr. Returns false if it could not be started. */
static bool run_prog(const char *prog, char *const argv[], const void *in,
                     size_t in_len, result *r) {
  int fds[3] = {temp_fd(), temp_fd(), temp_fd()};
  if (in_len > 0)
    cr_assert_eq(write(fds[0], in, in_len), (ssize_t)in_len);
  lseek(fds[0], 0, SEEK_SET);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  for (int i = 0; i < 3; i++)
    posix_spawn_file_actions_adddup2(&fa, fds[i], i);
  pid_t pid;
  int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc == 0) {
    r->status = wait_status(pid);
    r->out = slurp(fds[1], &r->out_len);
    r->err = slurp(fds[2], NULL);
  }
  for (int i = 0; i < 3; i++)
    close(fds[i]);
  return rc == 0;
}

/* Runs the keel binary with the NULL-terminated argument list. */
static result run_keel(const void *in, size_t in_len, const char *const *args) {
  char *argv[16] = {(char *)keel_path()};
  size_t n = 1;
  for (; args[n - 1] != NULL; n++) {
    cr_assert_lt(n, 15);
    argv[n] = (char *)args[n - 1];
  }
  argv[n] = NULL;
  result r = {0};
  cr_assert(run_prog(argv[0], argv, in, in_len, &r), "cannot run %s", argv[0]);
  return r;
}

#define KEEL(in, len, ...)                                                     \
  run_keel(in, len, (const char *const[]){__VA_ARGS__, NULL})

/* keel_print of the parsed text, plus a newline: what decode must print. */
static char *expected_print(const char *text) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  cr_assert_eq(keel_parse(&h, text, strlen(text), &t, NULL), KEEL_OK,
               "parse %s", text);
  char *p = keel_print_alloc(t, NULL);
  cr_assert_not_null(p);
  char *line = malloc(strlen(p) + 2);
  cr_assert_not_null(line);
  sprintf(line, "%s\n", p);
  free(p);
  keel_heap_destroy(&h);
  return line;
}

static const char *const sample_terms[] = {
    "{ok,[1,2,3],<<\"bin\">>}",
    "#{a => 1,<<\"k\">> => [x|y],{1,2} => 2.5}",
    "-123456789012345678901234567890",
    "3.25",
    "'héllo wörld'",
    "\"a string\"",
    "[]",
    "{}",
    "[255,256,100000,-1,2147483648,-2147483649]",
    "<<0,1,2,255>>",
    "{[{a,b}],#{},\"\",<<>>}",
    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
};
#define NSAMPLES (sizeof sample_terms / sizeof sample_terms[0])

Test(cli, version_matches_library) {
  result r = KEEL(NULL, 0, "version");
  char want[64];
  snprintf(want, sizeof want, "keel %s\n", keel_version());
  cr_assert_eq(r.status, 0);
  cr_assert_str_eq(r.out, want);
  result_free(&r);
  r = KEEL(NULL, 0, "--version");
  cr_assert_eq(r.status, 0);
  cr_assert_str_eq(r.out, want);
  result_free(&r);
}

Test(cli, unknown_command_and_bad_options_fail) {
  result r = KEEL(NULL, 0, "frobnicate");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "unknown command") != NULL, "stderr: %s", r.err);
  result_free(&r);
  r = KEEL(NULL, 0, "run", "--workers", "0");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "--workers") != NULL, "stderr: %s", r.err);
  result_free(&r);
  r = KEEL(NULL, 0, "term", "encode", "--minor-version=3", "ok");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "minor-version") != NULL, "stderr: %s", r.err);
  result_free(&r);
  r = KEEL(NULL, 0, "bench", "no_such_suite");
  cr_assert_eq(r.status, 2);
  result_free(&r);
}

/* encode with the given option (or none), then decode from stdin. */
static void check_roundtrip(const char *text, const char *opt) {
  result enc = opt ? KEEL(NULL, 0, "term", "encode", opt, text)
                   : KEEL(NULL, 0, "term", "encode", text);
  cr_assert_eq(enc.status, 0, "encode %s: %s", text, enc.err);
  cr_assert_gt(enc.out_len, 1);
  cr_assert_eq((unsigned char)enc.out[0], KEEL_ETF_VERSION);
  result dec = KEEL(enc.out, enc.out_len, "term", "decode");
  cr_assert_eq(dec.status, 0, "decode %s: %s", text, dec.err);
  char *want = expected_print(text);
  cr_assert_str_eq(dec.out, want, "round-trip of %s (%s)", text,
                   opt ? opt : "default");
  free(want);
  result_free(&enc);
  result_free(&dec);
}

Test(cli, encode_decode_roundtrip) {
  for (size_t i = 0; i < NSAMPLES; i++) {
    check_roundtrip(sample_terms[i], NULL);
    check_roundtrip(sample_terms[i], "--compressed");
    check_roundtrip(sample_terms[i], "--minor-version=1");
  }
}

Test(cli, print_matches_library) {
  for (size_t i = 0; i < NSAMPLES; i++) {
    result r = KEEL(NULL, 0, "term", "print", sample_terms[i]);
    char *want = expected_print(sample_terms[i]);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.out, want);
    free(want);
    result_free(&r);
  }
}

Test(cli, decode_reads_file_and_concatenated_terms) {
  result a = KEEL(NULL, 0, "term", "encode", "{a,1}");
  result b = KEEL(NULL, 0, "term", "encode", "[b]");
  cr_assert_eq(a.status + b.status, 0);
  char path[] = "/tmp/keel_cli_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, a.out, a.out_len), (ssize_t)a.out_len);
  cr_assert_eq(write(fd, b.out, b.out_len), (ssize_t)b.out_len);
  close(fd);
  result d = KEEL(NULL, 0, "term", "decode", path);
  unlink(path);
  cr_assert_eq(d.status, 0, "%s", d.err);
  cr_assert_str_eq(d.out, "{a,1}\n[b]\n");
  result_free(&a);
  result_free(&b);
  result_free(&d);
}

static void check_decode_fails(const void *in, size_t len, const char *what) {
  result r = KEEL(in, len, "term", "decode");
  cr_assert_neq(r.status, 0, "%s: decode succeeded", what);
  cr_assert(strstr(r.err, "keel: term decode: ") != NULL, "%s: stderr '%s'",
            what, r.err);
  cr_assert_str_eq(r.out, "", "%s", what);
  result_free(&r);
}

Test(cli, bad_input_fails_with_message) {
  check_decode_fails("", 0, "empty input");
  check_decode_fails("\x83\xff\x01\x02", 4, "unknown tag");
  check_decode_fails("hello world", 11, "bad version byte");
  /* SMALL_TUPLE_EXT of arity 3 holding one element only. */
  check_decode_fails("\x83h\x03\x61\x01", 5, "truncated tuple");
  result r = KEEL(NULL, 0, "term", "decode", "/nonexistent/keel_input");
  cr_assert_neq(r.status, 0);
  cr_assert(strstr(r.err, "/nonexistent/keel_input") != NULL, "%s", r.err);
  result_free(&r);
  r = KEEL(NULL, 0, "term", "encode", "{unclosed, tuple");
  cr_assert_neq(r.status, 0);
  cr_assert(strstr(r.err, "keel: term encode: ") != NULL, "%s", r.err);
  cr_assert_eq(r.out_len, 0);
  result_free(&r);
  r = KEEL(NULL, 0, "term", "print", "{a} trailing");
  cr_assert_neq(r.status, 0);
  result_free(&r);
}

Test(cli, safe_decode_refuses_new_atoms) {
  /* SMALL_ATOM_UTF8_EXT (119) with a name nobody has interned. */
  const char etf[] = "\x83\x77\x10zq_unknown_atom1";
  result r = KEEL(etf, sizeof etf - 1, "term", "decode", "--safe");
  cr_assert_neq(r.status, 0);
  cr_assert(strstr(r.err, "keel: term decode: ") != NULL, "%s", r.err);
  result_free(&r);
  r = KEEL(etf, sizeof etf - 1, "term", "decode");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_str_eq(r.out, "zq_unknown_atom1\n");
  result_free(&r);
  r = KEEL("\x83\x77\x02ok", 5, "term", "decode", "--safe");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_str_eq(r.out, "ok\n");
  result_free(&r);
}

/* ---- comparison with the real Erlang ----------------------------------- */

static void hex(const char *bytes, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02X", (unsigned char)bytes[i]);
  out[2 * n] = '\0';
}

/* Runs erl on the sample terms; returns its output: per term one line
 * "<hex minor 2> <hex minor 1> <hex compressed>". NULL when the test is to
 * be skipped. */
static char *erl_encodings(void) {
  char path[] = "/tmp/keel_cli_terms_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *f = fdopen(fd, "w");
  for (size_t i = 0; i < NSAMPLES; i++)
    fprintf(f, "%s.\n", sample_terms[i]);
  fclose(f);
  char eval[1024];
  snprintf(eval, sizeof eval,
           "{ok,Ts}=file:consult(\"%s\"),"
           "H=fun(T,O)->binary:encode_hex(term_to_binary(T,O)) end,"
           "[io:format(\"~s ~s ~s~n\",[H(T,[{minor_version,2}]),"
           "H(T,[{minor_version,1}]),H(T,[{compressed,6}])]) || T <- Ts],"
           "halt().",
           path);
  char *argv[] = {"erl", "-noshell", "-eval", eval, NULL};
  result r = {0};
  bool started = run_prog("erl", argv, NULL, 0, &r);
  unlink(path);
  const char *skip = getenv("KEEL_SKIP_ERL");
  if (!started || r.status == 127) {
    if (skip && strcmp(skip, "1") == 0)
      return NULL;
    cr_assert_fail("erl is not installed (set KEEL_SKIP_ERL=1 to skip)");
  }
  cr_assert_eq(r.status, 0, "erl failed: %s", r.err);
  free(r.err);
  return r.out;
}

static void check_against_erl(const char *text, const char *opt,
                              const char *want) {
  result r = KEEL(NULL, 0, "term", "encode", opt, text);
  cr_assert_eq(r.status, 0, "%s", r.err);
  char *got = malloc(2 * r.out_len + 1);
  cr_assert_not_null(got);
  hex(r.out, r.out_len, got);
  cr_assert_str_eq(got, want, "%s %s", opt, text);
  free(got);
  result_free(&r);
}

/* Decodes erl's hex-encoded output with keel and compares the printed
 * term with the library's printing of the sample text. */
static void check_decode_of_erl(const char *text, const char *hexbytes) {
  size_t n = strlen(hexbytes) / 2;
  unsigned char *bytes = malloc(n + 1);
  cr_assert_not_null(bytes);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(sscanf(hexbytes + 2 * i, "%2hhx", &bytes[i]), 1);
  result r = KEEL(bytes, n, "term", "decode");
  char *want = expected_print(text);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_str_eq(r.out, want, "decoding erl's encoding of %s", text);
  free(want);
  free(bytes);
  result_free(&r);
}

Test(cli, encode_matches_erlang) {
  char *erl = erl_encodings();
  if (erl == NULL)
    cr_skip_test("KEEL_SKIP_ERL=1 and erl missing");
  bool compressed_seen = false;
  char *save = NULL, *line = strtok_r(erl, "\n", &save);
  for (size_t i = 0; i < NSAMPLES; i++, line = strtok_r(NULL, "\n", &save)) {
    cr_assert_not_null(line, "erl printed too few lines");
    char *v1 = strchr(line, ' ');
    cr_assert_not_null(v1);
    *v1++ = '\0';
    char *zip = strchr(v1, ' ');
    cr_assert_not_null(zip);
    *zip++ = '\0';
    check_against_erl(sample_terms[i], "--minor-version=2", line);
    check_against_erl(sample_terms[i], "--minor-version=1", v1);
    check_decode_of_erl(sample_terms[i], line);
    check_decode_of_erl(sample_terms[i], zip);
    compressed_seen |= strncmp(zip, "8350", 4) == 0; /* COMPRESSED tag */
  }
  cr_assert(compressed_seen, "no sample was large enough to compress");
  free(erl);
}

/* ---- the demo node ------------------------------------------------------ */

Test(cli, run_with_duration_restarts_and_stops) {
  result r = KEEL(NULL, 0, "run", "--duration", "2", "--workers", "2",
                  "--crash-every", "0.5", "--port", "0", "--rate", "200");
  cr_assert_eq(r.status, 0, "stdout: %s\nstderr: %s", r.out, r.err);
  cr_assert(strstr(r.out, "worker 1: ") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, " round-trips\n") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "supervisor: restarted worker 0") != NULL, "%s",
            r.out);
  cr_assert(strstr(r.out, "keel: stopped\n") != NULL, "%s", r.out);
  result_free(&r);
}

Test(cli, run_gives_up_after_too_many_restarts) {
  result r = KEEL(NULL, 0, "run", "--duration", "60", "--crash-every", "0.02",
                  "--port", "0", "--rate", "200");
  cr_assert_eq(r.status, 1, "stdout: %s\nstderr: %s", r.out, r.err);
  cr_assert(strstr(r.out, "giving up") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "(3 restarts in the last 5 s)") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "keel: supervisor gave up\n") != NULL, "%s", r.out);
  result_free(&r);
}

/* Reads from fd until the text read contains needle (or EOF); returns the
 * text's length. */
static size_t read_until(int fd, char *buf, size_t size, const char *needle) {
  size_t n = 0;
  buf[0] = '\0';
  while (n + 1 < size && strstr(buf, needle) == NULL) {
    ssize_t r = read(fd, buf + n, size - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
    buf[n] = '\0';
  }
  return n;
}

/* Starts `keel run` (with no signal blocked) with 3 workers that never
 * crash, waits until the node has started, sends sig and expects a clean
 * stop. Returns the whole output (caller frees). */
static char *run_and_signal(int sig, const char *name) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  char *argv[] = {
      (char *)keel_path(), "run", "--port",        "0", "--rate", "200",
      "--workers",         "3",   "--crash-every", "0", NULL};
  pid_t pid;
  posix_spawnattr_t sa;
  posix_spawnattr_init(&sa);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&sa, &none);
  posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK);
  int rc = posix_spawn(&pid, argv[0], &fa, &sa, argv, environ);
  posix_spawnattr_destroy(&sa);
  posix_spawn_file_actions_destroy(&fa);
  cr_assert_eq(rc, 0);
  close(p[1]);
  char first[4096];
  size_t n = read_until(p[0], first, sizeof first, "keel: node started");
  cr_assert(strstr(first, "keel: node started") != NULL, "%s", first);
  cr_assert_eq(kill(pid, sig), 0);
  size_t len;
  char *rest = slurp(p[0], &len);
  close(p[0]);
  char *all = malloc(n + len + 1);
  cr_assert_not_null(all);
  memcpy(all, first, n);
  memcpy(all + n, rest, len + 1);
  free(rest);
  cr_assert_eq(wait_status(pid), 0, "output: %s", all);
  char want[64];
  snprintf(want, sizeof want, "keel: received %s\n", name);
  cr_assert(strstr(all, want) != NULL, "%s", all);
  cr_assert(strstr(all, "keel: stopped\n") != NULL, "%s", all);
  return all;
}

static void check_stops_on(int sig, const char *name) {
  free(run_and_signal(sig, name));
}

Test(cli, run_stops_cleanly_on_sigterm) {
  check_stops_on(SIGTERM, "SIGTERM");
}

Test(cli, run_stops_cleanly_on_sigint) {
  check_stops_on(SIGINT, "SIGINT");
}

/* The demo is an application: SIGTERM stops it in order (application
 * stop, then demo_sup's children in reverse start order, the workers'
 * supervisor its workers in reverse order too) before the node stops. */
Test(cli, run_sigterm_ordered_application_shutdown) {
  char *out = run_and_signal(SIGTERM, "SIGTERM");
  static const char *const order[] = {"demo: started demo_aggregator\n",
                                      "demo: started demo_worker_0\n",
                                      "demo: started demo_worker_1\n",
                                      "demo: started demo_worker_2\n",
                                      "demo: started demo_producer\n",
                                      "keel: node started",
                                      "demo: application stopping\n",
                                      "demo: stopped demo_producer\n",
                                      "demo: stopped demo_worker_2\n",
                                      "demo: stopped demo_worker_1\n",
                                      "demo: stopped demo_worker_0\n",
                                      "demo: stopped demo_aggregator\n",
                                      "demo: application stopped\n",
                                      "keel: received SIGTERM\n",
                                      "keel: stopped\n"};
  const char *at = out;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    const char *f = strstr(at, order[i]);
    cr_assert_not_null(f, "'%s' missing or out of order in:\n%s", order[i],
                       out);
    at = f + strlen(order[i]);
  }
  /* each stop line once */
  const char *again = strstr(at, "demo: stopped");
  cr_assert_null(again, "%s", out);
  free(out);
}

/* ---- documentation ------------------------------------------------------ */

static char *read_source_file(const char *rel) {
  const char *dir = getenv("KEEL_SOURCE_DIR");
  cr_assert_not_null(dir, "KEEL_SOURCE_DIR must be set (ctest sets it)");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  int fd = open(path, O_RDONLY);
  cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
  char *text = slurp(fd, NULL);
  close(fd);
  return text;
}

Test(docs, readme_example_is_examples_hello_terms) {
  char *readme = read_source_file("README.md");
  char *example = read_source_file("examples/hello_terms.c");
  char *start = strstr(readme, "```c\n");
  cr_assert_not_null(start, "README.md has no C code block");
  start += 5;
  char *end = strstr(start, "```");
  cr_assert_not_null(end);
  *end = '\0';
  cr_assert_str_eq(start, example,
                   "the README example differs from examples/hello_terms.c");
  free(readme);
  free(example);
}

/* The second C block of the README is examples/counter.c, and it runs. */
Test(docs, readme_counter_is_examples_counter_and_runs) {
  char *readme = read_source_file("README.md");
  char *example = read_source_file("examples/counter.c");
  char *first = strstr(readme, "```c\n");
  cr_assert_not_null(first);
  char *start = strstr(first + 5, "```c\n");
  cr_assert_not_null(start, "README.md has no second C code block");
  start += 5;
  char *end = strstr(start, "```");
  cr_assert_not_null(end);
  *end = '\0';
  cr_assert_str_eq(start, example,
                   "the README counter differs from examples/counter.c");
  free(readme);
  free(example);
  char path[4096];
  snprintf(path, sizeof path, "%s/example_counter", getenv("KEEL_BINARY_DIR"));
  char *argv[] = {path, NULL};
  result r = {0};
  cr_assert(run_prog(path, argv, NULL, 0, &r), "cannot run %s", path);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_str_eq(r.out, "counter = 5\n");
  result_free(&r);
}

/* Runs build/example_<name> and returns what it did. */
static result run_example(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/example_%s", getenv("KEEL_BINARY_DIR"), name);
  char *argv[] = {path, NULL};
  result r = {0};
  cr_assert(run_prog(path, argv, NULL, 0, &r), "cannot run %s", path);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  return r;
}

/* Primes below n, by trial division (the examples' figures). */
static long primes_below(long n) {
  long count = 0;
  for (long k = 2; k < n; k++) {
    long d = 2;
    while (d * d <= k && k % d != 0)
      d++;
    count += d * d > k;
  }
  return count;
}

/* The worker pool hands jobs out round-robin, survives worker_2's crash
 * (restarted with a fresh state) and stops its children in reverse. */
Test(docs, worker_pool_example_runs) {
  result r = run_example("worker_pool");
  char want[2048];
  size_t off = 0;
  for (long job = 1; job <= 6; job++)
    off += (size_t)snprintf(
        want + off, sizeof want - off, "worker_%ld: %ld primes below %ld\n",
        (job - 1) % 3 + 1, primes_below(job * 1000), job * 1000);
  off += (size_t)snprintf(want + off, sizeof want - off,
                          "worker_2 stops: boom\ncrash worker_2: %s\n"
                          "worker_1 has done 2 jobs\n"
                          "worker_2 has done 0 jobs\n"
                          "worker_3 has done 2 jobs\n",
                          keel_strerror(KEEL_ENOPROC));
  for (long job = 7; job <= 9; job++)
    off += (size_t)snprintf(
        want + off, sizeof want - off, "worker_%ld: %ld primes below %ld\n",
        (job - 1) % 3 + 1, primes_below(job * 1000), job * 1000);
  snprintf(want + off, sizeof want - off,
           "stopping the pool\nworker_3 stops: shutdown\n"
           "worker_2 stops: shutdown\nworker_1 stops: shutdown\n");
  cr_assert_str_eq(r.out, want);
  result_free(&r);
}

/* async_stream: results in input order, the stuck input 4 killed on its
 * timeout ({exit, timeout}), the others counted. */
Test(docs, async_stream_example_runs) {
  result r = run_example("async_stream");
  char want[512];
  size_t off = 0;
  for (long n = 1; n <= 6; n++)
    off += n == 4
               ? (size_t)snprintf(want + off, sizeof want - off,
                                  "4: {exit,timeout}\n")
               : (size_t)snprintf(want + off, sizeof want - off,
                                  "%ld: {ok,%ld}\n", n, primes_below(n * 1000));
  cr_assert_str_eq(r.out, want);
  result_free(&r);
}

/* ---- benchmarks ---------------------------------------------------------- */

Test(cli, bench_dispatches_to_suites) {
  result r = KEEL(NULL, 0, "bench", "terms", "--quick", "--no-beam");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(strstr(r.out, "keel etf_encode_") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "keel etf_decode_") != NULL, "%s", r.out);
  result_free(&r);
  r = KEEL(NULL, 0, "bench", "net", "--quick", "--no-beam");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(strstr(r.out, "keel tcp_rr_per_s_1 ") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "keel tcp_rr_per_s_50 ") != NULL, "%s", r.out);
  result_free(&r);
  r = KEEL(NULL, 0, "bench", "terms", "--no-such-option");
  cr_assert_eq(r.status, 2, "%s", r.out);
  result_free(&r);
  r = KEEL(NULL, 0, "bench");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "terms") != NULL, "usage lists suites: %s", r.err);
  cr_assert(strstr(r.err, "runtime") != NULL, "usage lists suites: %s", r.err);
  cr_assert(strstr(r.err, "pubsub") != NULL, "usage lists suites: %s", r.err);
  result_free(&r);
  r = KEEL(NULL, 0, "bench", "pubsub", "--quick", "--no-beam");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(strstr(r.out, "keel pubsub_deliveries_per_s ") != NULL, "%s",
            r.out);
  result_free(&r);
}

/* `keel bench otp` measures every metric of the OTP table (tiny sizes,
 * Keel only) and rejects an unknown size. */
Test(cli, bench_otp_prints_every_metric) {
  static const char *const names[] = {"gen_server_call_per_s_1",
                                      "call_1c_calls_per_s",
                                      "call_1c_p50_us",
                                      "call_1c_p99_us",
                                      "call_100c_1s_calls_per_s",
                                      "call_100c_100s_calls_per_s",
                                      "restart_per_s",
                                      "restart_latency_us",
                                      "idle_server_mem",
                                      "registry_register_per_s",
                                      "registry_lookup_per_s",
                                      "registry_dispatch_per_s"};
  result r = KEEL(NULL, 0, "bench", "otp", "--quick", "--no-beam", "--size",
                  "calls=2000", "--size", "restarts=200", "--size", "idle=500",
                  "--size", "regs=1000", "--size", "regs1=100");
  cr_assert_eq(r.status, 0, "%s", r.err);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char line[128];
    snprintf(line, sizeof line, "keel %s ", names[i]);
    cr_assert(strstr(r.out, line) != NULL, "no %s in %s", names[i], r.out);
  }
  result_free(&r);
  r = KEEL(NULL, 0, "bench", "otp", "--size", "nonsense=3");
  cr_assert_eq(r.status, 2, "%s", r.out);
  result_free(&r);
}

/* The README example runs and prints what it promises: the term (as the
 * library prints the same term parsed from text), then an exact ETF round
 * trip whose size is the library's own encoding size. */
Test(docs, hello_terms_example_runs) {
  char path[4096];
  snprintf(path, sizeof path, "%s/example_hello_terms",
           getenv("KEEL_BINARY_DIR"));
  char *argv[] = {path, NULL};
  result r = {0};
  cr_assert(run_prog(path, argv, NULL, 0, &r), "cannot run %s", path);
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  char *want = expected_print("{hello, \"world\", [42, 2.5], #{lang => "
                              "<<\"C\">>}}");
  size_t wl = strlen(want);
  cr_assert(strncmp(r.out, want, wl) == 0, "got: %s", r.out);
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  const char *text = "{hello, \"world\", [42, 2.5], #{lang => <<\"C\">>}}";
  cr_assert_eq(keel_parse(&h, text, strlen(text), &t, NULL), KEEL_OK);
  char line[128];
  snprintf(line, sizeof line, "%lld bytes of ETF, round-trip exact\n",
           keel_etf_size(t) + 1);
  cr_assert_str_eq(r.out + wl, line);
  keel_heap_destroy(&h);
  free(want);
  result_free(&r);
}
