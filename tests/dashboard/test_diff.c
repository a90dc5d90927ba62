/* The dashboard diff (keel_dashboard_diff / keel_dashboard_diff_apply):
 * for random pairs of snapshot-like terms, applying the diff to the old
 * term gives exactly the new one, a term diffed with itself gives the
 * empty diff, every diff is JSON-encodable, and small changes give small
 * diffs; the browser's applyDiff agrees on the same pairs. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/dashboard.h"
#include "keel/json.h"

static uint64_t rng_state;

static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static unsigned below(unsigned n) {
  return (unsigned)(rnd() % n);
}

static const char *const keys[] = {"a",    "b",    "c", "memory",
                                   "name", "rows", "x", "y"};

static keel_term gen(keel_heap *h, unsigned depth);

static keel_term gen_scalar(keel_heap *h) {
  switch (below(5)) {
  case 0:
    return keel_small((int64_t)below(100) - 50);
  case 1:
    return keel_float(h, (double)below(1000) / 8.0);
  case 2: {
    char s[8];
    snprintf(s, sizeof s, "s%u", below(6));
    return keel_binary(h, s, strlen(s));
  }
  case 3:
    return keel_atom(below(2) ? "true" : "null");
  default:
    return keel_uint(h, (uint64_t)1 << 62 | below(4)); /* a big integer */
  }
}

static keel_term gen_map(keel_heap *h, unsigned depth) {
  keel_term ks[8], vs[8];
  size_t n = below(6);
  for (size_t i = 0; i < n; i++) {
    ks[i] = keel_atom(keys[below(8)]);
    vs[i] = gen(h, depth + 1);
  }
  return keel_map_from(h, n, ks, vs);
}

/* A list of rows with ids drawn from a small pool (unique). */
static keel_term gen_rows(keel_heap *h, unsigned depth) {
  keel_term rows[12];
  size_t n = 0;
  unsigned used = 0;
  for (unsigned k = below(12); k > 0; k--) {
    unsigned id = below(12);
    if (used & (1u << id))
      continue;
    used |= 1u << id;
    keel_term row = gen_map(h, depth + 1);
    rows[n++] = keel_map_put(h, row, keel_atom("id"), keel_small(id));
  }
  return keel_list_from(h, n, rows);
}

static keel_term gen_list(keel_heap *h, unsigned depth) {
  keel_term v[10];
  size_t n = below(10);
  for (size_t i = 0; i < n; i++)
    v[i] = depth > 2 ? gen_scalar(h) : gen(h, depth + 1);
  return keel_list_from(h, n, v);
}

static keel_term gen(keel_heap *h, unsigned depth) {
  if (depth > 3)
    return gen_scalar(h);
  switch (below(6)) {
  case 0:
  case 1:
    return gen_scalar(h);
  case 2:
    return gen_map(h, depth);
  case 3:
    return gen_rows(h, depth);
  default:
    return gen_list(h, depth);
  }
}

/* A random edit of t: the new term of a pair, sharing most of old. */
static keel_term mutate(keel_heap *h, keel_term t, unsigned depth);

static keel_term mutate_map(keel_heap *h, keel_term t, unsigned depth) {
  size_t n = keel_map_size(t);
  keel_term ks[16], vs[16];
  size_t m = 0;
  for (size_t i = 0; i < n && m < 14; i++) {
    keel_map_at(t, i, &ks[m], &vs[m]);
    unsigned r = below(6);
    if (r == 0)
      continue; /* removed */
    if (r == 1)
      vs[m] = mutate(h, vs[m], depth + 1);
    m++;
  }
  if (below(3) == 0) {
    ks[m] = keel_atom(keys[below(8)]);
    vs[m++] = gen(h, depth + 1);
  }
  return keel_map_from(h, m, ks, vs);
}

static keel_term mutate_list(keel_heap *h, keel_term t, unsigned depth) {
  keel_term v[32];
  size_t n = 0;
  for (keel_term l = t; keel_is_cons(l) && n < 24; l = keel_tl(l))
    v[n++] = keel_hd(l);
  switch (below(5)) {
  case 0: /* sliding window: drop the head, append */
    if (n > 0) {
      memmove(v, v + 1, (n - 1) * sizeof *v);
      n--;
    }
    v[n++] = gen_scalar(h);
    break;
  case 1: /* reorder */
    for (size_t i = n; i > 1; i--) {
      size_t j = below((unsigned)i);
      keel_term x = v[i - 1];
      v[i - 1] = v[j];
      v[j] = x;
    }
    break;
  case 2: /* edit elements in place (rows keep their id) */
    for (size_t i = 0; i < n; i++)
      if (below(3) == 0 && keel_is_map(v[i])) {
        keel_term id;
        keel_term nv = mutate_map(h, v[i], depth + 1);
        if (keel_map_get(v[i], keel_atom("id"), &id) == KEEL_OK)
          nv = keel_map_put(h, nv, keel_atom("id"), id);
        v[i] = nv;
      } else if (below(4) == 0) {
        v[i] = gen_scalar(h);
      }
    break;
  case 3: /* delete some */
    for (size_t i = 0; i < n;)
      if (below(3) == 0) {
        memmove(v + i, v + i + 1, (n - i - 1) * sizeof *v);
        n--;
      } else {
        i++;
      }
    break;
  default:
    return gen(h, depth);
  }
  return keel_list_from(h, n, v);
}

static keel_term mutate(keel_heap *h, keel_term t, unsigned depth) {
  if (below(8) == 0)
    return t;
  if (keel_is_map(t))
    return mutate_map(h, t, depth);
  if (keel_is_list(t) && !keel_is_nil(t))
    return mutate_list(h, t, depth);
  return below(2) ? gen(h, depth) : t;
}

static FILE *vectors;

static void check_pair(keel_term a, keel_term b) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term d, back;
  cr_assert_eq(keel_dashboard_diff(a, b, &h, &d), KEEL_OK);
  cr_assert_eq(keel_dashboard_diff_empty(d), keel_eq_exact(a, b));
  cr_assert_eq(keel_dashboard_diff_apply(a, d, &h, &back), KEEL_OK);
  if (!keel_eq_exact(back, b)) {
    char *sa = keel_print_alloc(a, NULL), *sb = keel_print_alloc(b, NULL);
    char *sd = keel_print_alloc(d, NULL), *sr = keel_print_alloc(back, NULL);
    cr_assert_fail("apply(diff) differs\n old %s\n new %s\n diff %s\n got %s",
                   sa, sb, sd, sr);
  }
  keel_term self;
  cr_assert_eq(keel_dashboard_diff(b, b, &h, &self), KEEL_OK);
  cr_assert(keel_dashboard_diff_empty(self));
  keel_buf j;
  keel_buf_init(&j);
  cr_assert_eq(keel_json_encode(&j, d, NULL), KEEL_OK);
  if (vectors != NULL) {
    keel_buf_append(&j, "\t", 1);
    keel_json_encode(&j, a, NULL);
    keel_buf_append(&j, "\t", 1);
    keel_json_encode(&j, b, NULL);
    fprintf(vectors, "%.*s\n", (int)j.len, (const char *)j.data);
  }
  keel_buf_free(&j);
  keel_heap_destroy(&h);
}

Test(dashboard_diff, random_pairs_round_trip) {
  for (unsigned seed = 1; seed <= 20000; seed++) {
    rng_state = seed * 0x9e3779b97f4a7c15u;
    keel_heap h;
    keel_heap_init(&h);
    keel_term a = gen_map(&h, 0);
    keel_term b = below(4) == 0 ? gen_map(&h, 0) : mutate(&h, a, 0);
    check_pair(a, b);
    keel_heap_destroy(&h);
  }
}

/* Row-level edits of a keyed list: cells of kept rows change (ids kept),
 * rows are deleted, rows with new ids are inserted anywhere, and the order
 * may be shuffled. */
static keel_term mutate_rows(keel_heap *h, keel_term rows) {
  keel_term v[40];
  size_t n = 0;
  unsigned used = 0;
  for (keel_term l = rows; keel_is_cons(l) && n < 12; l = keel_tl(l)) {
    keel_term row = keel_hd(l), id;
    keel_map_get(row, keel_atom("id"), &id);
    if (below(4) == 0)
      continue; /* deleted */
    used |= 1u << keel_small_value(id);
    if (below(3) == 0)
      row = keel_map_put(h, row, keel_atom(keys[below(8)]), gen_scalar(h));
    v[n++] = row;
  }
  for (unsigned k = below(4); k > 0; k--) {
    unsigned id = 12 + below(12); /* never an old id */
    if (used & (1u << id))
      continue;
    used |= 1u << id;
    size_t at = below((unsigned)n + 1);
    memmove(v + at + 1, v + at, (n - at) * sizeof *v);
    v[at] = keel_map_put(h, gen_map(h, 2), keel_atom("id"), keel_small(id));
    n++;
  }
  if (below(3) == 0)
    for (size_t i = n; i > 1; i--) {
      size_t j = below((unsigned)i);
      keel_term x = v[i - 1];
      v[i - 1] = v[j];
      v[j] = x;
    }
  return keel_list_from(h, n, v);
}

Test(dashboard_diff, random_row_edits_round_trip) {
  unsigned keyed = 0;
  for (unsigned seed = 1; seed <= 10000; seed++) {
    rng_state = seed * 0xbf58476d1ce4e5b9u;
    keel_heap h;
    keel_heap_init(&h);
    keel_term k = keel_atom("rows");
    keel_term ra = gen_rows(&h, 1);
    keel_term a = keel_map_from(&h, 1, &k, &ra);
    keel_term rb = mutate_rows(&h, ra);
    keel_term b = keel_map_from(&h, 1, &k, &rb);
    check_pair(a, b);
    keel_term d, node, inner;
    cr_assert_eq(keel_dashboard_diff(a, b, &h, &d), KEEL_OK);
    if (keel_map_get(d, keel_atom("m"), &node) == KEEL_OK &&
        keel_map_get(node, keel_atom("rows"), &node) == KEEL_OK &&
        keel_map_get(node, keel_atom("k"), &inner) == KEEL_OK)
      keyed++;
    keel_heap_destroy(&h);
  }
  cr_assert_gt(keyed, 5000, "the keyed form is used (%u of 10000)", keyed);
}

Test(dashboard_diff, equal_terms_give_the_empty_diff) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term a = keel_build(&h, "#{rows => [#{id => 1, v => 2.5}], n => 3}");
  keel_term b = keel_build(&h, "#{rows => [#{id => 1, v => 2.5}], n => 3}");
  keel_term d;
  cr_assert_eq(keel_dashboard_diff(a, b, &h, &d), KEEL_OK);
  cr_assert(keel_dashboard_diff_empty(d));
  keel_heap_destroy(&h);
}

Test(dashboard_diff, a_changed_row_sends_only_that_cell) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term a =
      keel_build(&h, "#{rows => [#{id => 1, v => 1, w => <<\"big text\">>}, "
                     "#{id => 2, v => 2, w => <<\"big text\">>}], n => 3}");
  keel_term b =
      keel_build(&h, "#{rows => [#{id => 1, v => 1, w => <<\"big text\">>}, "
                     "#{id => 2, v => 7, w => <<\"big text\">>}], n => 3}");
  keel_term d,
      want = keel_build(&h, "#{m => #{rows => #{k => #{u => [[2, #{m => #{v => "
                            "#{v => 7}}}]]}}}}");
  cr_assert_eq(keel_dashboard_diff(a, b, &h, &d), KEEL_OK);
  cr_assert(keel_eq_exact(d, want));
  keel_heap_destroy(&h);
}

Test(dashboard_diff, a_sliding_series_sends_the_shift_and_tail) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term a = keel_build(&h, "#{p => [[1, 1.0], [2, 2.0], [3, 3.0]]}");
  keel_term b = keel_build(&h, "#{p => [[2, 2.0], [3, 3.0], [4, 4.5]]}");
  keel_term d, want = keel_build(&h, "#{m => #{p => #{s => 1, p => [[4, "
                                     "4.5]]}}}");
  cr_assert_eq(keel_dashboard_diff(a, b, &h, &d), KEEL_OK);
  cr_assert(keel_eq_exact(d, want));
  keel_heap_destroy(&h);
}

Test(dashboard_diff, malformed_diffs_are_refused) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term a = keel_build(&h, "#{rows => [#{id => 1}], n => 3}"), out;
  const char *bad[] = {"#{m => 3}",
                       "#{m => #{zz => #{m => #{}}}}",
                       "#{m => #{rows => #{k => #{d => [9]}}}}",
                       "#{m => #{rows => #{k => #{o => [1, 1]}}}}",
                       "#{m => #{rows => #{s => 5, p => []}}}",
                       "#{m => #{n => #{k => #{}}}}",
                       "#{q => 1}",
                       "[1]"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    keel_term d = keel_build(&h, bad[i]);
    cr_assert_neq(d, KEEL_NONE, "%s", bad[i]);
    cr_assert_eq(keel_dashboard_diff_apply(a, d, &h, &out), KEEL_EBADARG, "%s",
                 bad[i]);
  }
  keel_heap_destroy(&h);
}

/* The browser's applyDiff (assets/diff.js) on the same random pairs, run
 * with node when it is installed. */
Test(dashboard_diff, the_browser_apply_agrees) {
  const char *src = getenv("KEEL_SOURCE_DIR");
  if (src == NULL || access("/usr/bin/node", X_OK) != 0) {
    cr_skip_test("node or KEEL_SOURCE_DIR missing");
  }
  char path[] = "/tmp/keel_dash_vectorsXXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  vectors = fdopen(fd, "w");
  cr_assert_not_null(vectors);
  for (unsigned seed = 1; seed <= 3000; seed++) {
    rng_state = seed * 0x2545f4914f6cdd1du;
    keel_heap h;
    keel_heap_init(&h);
    keel_term a, b;
    if (seed % 2 == 0) { /* row edits: the keyed form */
      keel_term k = keel_atom("rows");
      keel_term ra = gen_rows(&h, 1), rb = mutate_rows(&h, ra);
      a = keel_map_from(&h, 1, &k, &ra);
      b = keel_map_from(&h, 1, &k, &rb);
    } else {
      a = gen_map(&h, 0);
      b = below(4) == 0 ? gen_map(&h, 0) : mutate(&h, a, 0);
    }
    check_pair(a, b);
    keel_heap_destroy(&h);
  }
  fclose(vectors);
  vectors = NULL;
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/node %s/tests/dashboard/browser/diff_vectors.mjs %s", src,
           path);
  int rc = system(cmd);
  unlink(path);
  cr_assert_eq(rc, 0, "node applyDiff disagrees (see output)");
}
