/* Property test of the ETF codec and of term order against real Erlang.
 *
 * tests/term/etf_gen.erl (run with escript) generates random terms with a
 * seed and writes term_to_binary(T, [{minor_version, 2}]) for each. Keel
 * decodes every record, re-encodes it and must produce the same bytes
 * (except around maps of more than 32 pairs, written in hash order by
 * Erlang). Keel then writes back its encodings, its keel_cmp sort order of
 * the terms and, for adjacent pairs, keel_cmp/keel_eq/keel_eq_exact; the
 * script checks that binary_to_term gives the original terms and that the
 * order and equalities agree with lists:sort, ==, =:=.
 *
 * Environment: KEEL_SEED (default: time-based, printed on failure),
 * KEEL_ETF_N (default 2000), KEEL_SKIP_ERL=1 to skip when erl is missing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keel/etf.h"
#include "keel/term.h"

static bool on_path(const char *prog) {
  const char *path = getenv("PATH");
  if (path == NULL)
    return false;
  char *copy = strdup(path), *save = NULL;
  bool found = false;
  for (char *dir = strtok_r(copy, ":", &save); dir && !found;
       dir = strtok_r(NULL, ":", &save)) {
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", dir, prog);
    found = access(full, X_OK) == 0;
  }
  free(copy);
  return found;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

/* Runs a command, returns its exit status; its output goes to out. */
static int run(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p, "cannot run %s", cmd);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = 0;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static void put32(keel_buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  keel_buf_append(b, x, 4);
}

static const keel_term *sort_terms;

/* Stable merge sort of indices by keel_cmp. */
static void msort(uint32_t *idx, uint32_t *tmp, size_t n) {
  if (n < 2)
    return;
  size_t mid = n / 2, i = 0, j = mid, k = 0;
  msort(idx, tmp, mid);
  msort(idx + mid, tmp, n - mid);
  while (i < mid && j < n)
    tmp[k++] = keel_cmp(sort_terms[idx[j]], sort_terms[idx[i]]) < 0 ? idx[j++]
                                                                    : idx[i++];
  while (i < mid)
    tmp[k++] = idx[i++];
  while (j < n)
    tmp[k++] = idx[j++];
  memcpy(idx, tmp, n * sizeof *idx);
}

/* Decodes every record, checks re-encoding, and appends Keel's encodings
 * to kb. Returns the number of terms. */
static size_t forward(keel_heap *h, const uint8_t *tb, size_t tlen,
                      keel_term **terms, keel_buf *kb, unsigned long seed) {
  size_t n = 0, cap = 256;
  *terms = malloc(cap * sizeof **terms);
  keel_buf enc;
  keel_buf_init(&enc);
  for (size_t off = 0; off < tlen; n++) {
    cr_assert(tlen - off >= 5, "seed %lu: bad terms file", seed);
    size_t len = get32(tb + off);
    int exact = tb[off + 4];
    const uint8_t *e = tb + off + 5;
    off += 5 + len;
    keel_term t;
    size_t used = 0;
    int rc = keel_etf_decode(h, e, len, &used, &t, NULL);
    cr_assert_eq(rc, KEEL_OK, "seed %lu term %zu: decode error %d", seed, n,
                 rc);
    cr_assert_eq(used, len, "seed %lu term %zu: used %zu of %zu", seed, n, used,
                 len);
    enc.len = 0;
    cr_assert_eq(keel_etf_encode(&enc, t, NULL), KEEL_OK);
    cr_assert_eq(keel_etf_size(t), (long long)enc.len - 1);
    if (exact) {
      cr_assert_eq(enc.len, len, "seed %lu term %zu: length %zu vs %zu", seed,
                   n, enc.len, len);
      cr_assert_arr_eq(enc.data, e, len, "seed %lu term %zu: bytes differ",
                       seed, n);
    }
    put32(kb, (uint32_t)enc.len);
    keel_buf_append(kb, enc.data, enc.len);
    if (n == cap)
      *terms = realloc(*terms, (cap *= 2) * sizeof **terms);
    (*terms)[n] = t;
  }
  keel_buf_free(&enc);
  return n;
}

/* Appends the keel_cmp order of terms and the flags of adjacent pairs. */
static void order(const keel_term *terms, size_t n, keel_buf *kb) {
  uint32_t *idx = malloc(2 * n * sizeof *idx);
  for (size_t i = 0; i < n; i++)
    idx[i] = (uint32_t)i;
  sort_terms = terms;
  msort(idx, idx + n, n);
  for (size_t i = 0; i < n; i++)
    put32(kb, idx[i]);
  for (size_t i = 0; i + 1 < n; i++) {
    keel_term a = terms[idx[i]], b = terms[idx[i + 1]];
    int c = keel_cmp(a, b);
    uint8_t f =
        (uint8_t)((c < 0 ? 1 : 0) | (c == 0 ? 2 : 0) | (keel_eq(a, b) ? 4 : 0) |
                  (keel_eq_exact(a, b) ? 8 : 0));
    keel_buf_putc(kb, f);
  }
  free(idx);
}

Test(etf_erl, matches_erlang) {
  if (!on_path("erl") || !on_path("escript")) {
    const char *skip = getenv("KEEL_SKIP_ERL");
    if (skip != NULL && strcmp(skip, "1") == 0)
      cr_skip_test("erl not on PATH (KEEL_SKIP_ERL=1)");
    cr_assert_fail("erl/escript not found on PATH: install Erlang/OTP or set "
                   "KEEL_SKIP_ERL=1 to skip this test");
  }
  const char *src = getenv("KEEL_SOURCE_DIR");
  cr_assert_not_null(src, "KEEL_SOURCE_DIR not set (run through ctest)");
  const char *seed_env = getenv("KEEL_SEED");
  unsigned long seed =
      seed_env != NULL ? strtoul(seed_env, NULL, 10)
                       : (unsigned long)time(NULL) ^ (unsigned long)getpid();
  const char *n_env = getenv("KEEL_ETF_N");
  long count = n_env != NULL ? atol(n_env) : 2000;
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/keel_etf_XXXXXX", tmp ? tmp : "/tmp");
  cr_assert_not_null(mkdtemp(dir));
  char terms_path[4200], keel_path[4200], cmd[13000], out[8192];
  snprintf(terms_path, sizeof terms_path, "%s/terms.bin", dir);
  snprintf(keel_path, sizeof keel_path, "%s/keel.bin", dir);

  snprintf(cmd, sizeof cmd,
           "escript '%s/tests/term/etf_gen.erl' gen %lu %ld '%s' 2>&1", src,
           seed, count, terms_path);
  int st = run(cmd, out, sizeof out);
  cr_assert_eq(st, 0, "seed %lu: generator failed (%d): %s", seed, st, out);

  size_t tlen;
  uint8_t *tb = read_file(terms_path, &tlen);
  keel_heap h;
  keel_heap_init(&h);
  keel_buf kb;
  keel_buf_init(&kb);
  keel_term *terms;
  size_t n = forward(&h, tb, tlen, &terms, &kb, seed);
  cr_assert_eq(n, (size_t)count);
  order(terms, n, &kb);
  FILE *f = fopen(keel_path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(kb.data, 1, kb.len, f), kb.len);
  fclose(f);

  snprintf(cmd, sizeof cmd,
           "escript '%s/tests/term/etf_gen.erl' check '%s' '%s' 2>&1", src,
           terms_path, keel_path);
  st = run(cmd, out, sizeof out);
  cr_assert_eq(st, 0, "seed %lu: Erlang check failed: %s", seed, out);
  cr_assert(strncmp(out, "ok ", 3) == 0, "seed %lu: %s", seed, out);

  unlink(terms_path);
  unlink(keel_path);
  rmdir(dir);
  free(terms);
  free(tb);
  keel_buf_free(&kb);
  keel_heap_destroy(&h);
}
