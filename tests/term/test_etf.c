/* External term format: byte vectors from the ETF specification, old forms,
 * truncation, hostile input and round trips of terms built with the C API.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "keel/etf.h"
#include "keel/term.h"
#include "term/term_internal.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(etf, .init = setup, .fini = teardown);

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define NB(...) sizeof((const uint8_t[]){__VA_ARGS__})

/* Encodes t with the given minor version and checks the exact bytes, the
 * size function, and that decoding gives back an exactly equal term. */
static void check_vec(keel_term t, int minor, const uint8_t *want, size_t n) {
  keel_buf b;
  keel_buf_init(&b);
  keel_etf_encode_opts o = {.minor_version = minor};
  cr_assert_eq(keel_etf_encode(&b, t, &o), KEEL_OK);
  cr_assert_eq(b.len, n, "length %zu, expected %zu", b.len, n);
  cr_assert_arr_eq(b.data, want, n);
  if (minor != 1)
    cr_assert_eq(keel_etf_size(t), (long long)n - 1);
  keel_term back;
  size_t used = 0;
  cr_assert_eq(keel_etf_decode(&h, b.data, b.len, &used, &back, NULL), KEEL_OK);
  cr_assert_eq(used, n);
  cr_assert(keel_eq_exact(back, t));
  keel_buf_free(&b);
}
#define VEC(t, ...) check_vec((t), 2, BYTES(__VA_ARGS__), NB(__VA_ARGS__))
#define VEC1(t, ...) check_vec((t), 1, BYTES(__VA_ARGS__), NB(__VA_ARGS__))

static int dec(const uint8_t *b, size_t n, keel_term *out) {
  return keel_etf_decode(&h, b, n, NULL, out, NULL);
}
#define DEC(out, ...) dec(BYTES(__VA_ARGS__), NB(__VA_ARGS__), (out))

Test(etf, integers) {
  VEC(keel_small(0), 131, 97, 0);
  VEC(keel_small(255), 131, 97, 255);
  VEC(keel_small(256), 131, 98, 0, 0, 1, 0);
  VEC(keel_small(-1), 131, 98, 255, 255, 255, 255);
  VEC(keel_small(INT32_MIN), 131, 98, 128, 0, 0, 0);
  VEC(keel_small((int64_t)INT32_MAX + 1), 131, 110, 4, 0, 0, 0, 0, 128);
  VEC(keel_small(-((int64_t)1 << 40)), 131, 110, 6, 1, 0, 0, 0, 0, 0, 1);
  VEC(keel_uint(&h, UINT64_MAX), 131, 110, 8, 0, 255, 255, 255, 255, 255, 255,
      255, 255);
  uint64_t limbs[2] = {0, 1}; /* 2^64 */
  VEC(keel_bigint(&h, true, limbs, 2), 131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0,
      1);
}

Test(etf, large_big) {
  uint64_t limbs[33] = {0};
  limbs[32] = 1; /* 2^2048: 257 bytes */
  keel_term t = keel_bigint(&h, false, limbs, 33);
  uint8_t want[1 + 1 + 4 + 1 + 257] = {131, 111, 0, 0, 1, 1, 0};
  want[sizeof want - 1] = 1;
  check_vec(t, 2, want, sizeof want);
}

Test(etf, floats) {
  VEC(keel_float(&h, 1.5), 131, 70, 63, 248, 0, 0, 0, 0, 0, 0);
  VEC(keel_float(&h, -0.0), 131, 70, 128, 0, 0, 0, 0, 0, 0, 0);
  keel_term t;
  cr_assert_eq(DEC(&t, 131, 70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 70, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1), KEEL_EDECODE);
}

Test(etf, atoms) {
  VEC(keel_atom("abc"), 131, 119, 3, 'a', 'b', 'c');
  VEC1(keel_atom("abc"), 131, 100, 0, 3, 'a', 'b', 'c');
  VEC(keel_atom("\xc3\xa5"), 131, 119, 2, 0xc3, 0xa5);
  VEC1(keel_atom("\xc3\xa5"), 131, 100, 0, 1, 0xe5);
  VEC1(keel_atom("\xe2\x88\x80"), 131, 119, 3, 0xe2, 0x88, 0x80);
  /* 255 two-byte characters: 510 bytes, ATOM_UTF8_EXT. */
  char name[511];
  for (int i = 0; i < 255; i++)
    memcpy(name + 2 * i, "\xc3\xa9", 2);
  keel_term a;
  cr_assert_eq(keel_atom_intern(name, 510, &a), KEEL_OK);
  uint8_t want[4 + 510] = {131, 118, 1, 254};
  memcpy(want + 4, name, 510);
  check_vec(a, 2, want, sizeof want);
}

Test(etf, tuples_lists_strings) {
  VEC(keel_tuple(&h, 0), 131, 104, 0);
  VEC(keel_tuple(&h, 2, keel_small(1), keel_small(2)), 131, 104, 2, 97, 1, 97,
      2);
  VEC(KEEL_NIL, 131, 106);
  VEC(keel_string(&h, "abc"), 131, 107, 0, 3, 'a', 'b', 'c');
  keel_term xs[2] = {keel_small(1), keel_small(2)};
  VEC(keel_list_from_tail(&h, 2, xs, keel_small(3)), 131, 108, 0, 0, 0, 2, 97,
      1, 97, 2, 97, 3);
  VEC(keel_list_from(&h, 1, (keel_term[]){keel_small(256)}), 131, 108, 0, 0, 0,
      1, 98, 0, 0, 1, 0, 106);
  VEC(keel_list_from(&h, 1, (keel_term[]){keel_atom("a")}), 131, 108, 0, 0, 0,
      1, 119, 1, 'a', 106);
  /* String element inside a list that is not a string. */
  VEC(keel_list_from(&h, 2,
                     (keel_term[]){keel_string(&h, "a"), keel_small(-1)}),
      131, 108, 0, 0, 0, 2, 107, 0, 1, 'a', 98, 255, 255, 255, 255, 106);
}

Test(etf, large_tuple_and_long_string) {
  keel_term *el;
  keel_term t = keel_tuple_new(&h, 256, &el);
  for (int i = 0; i < 256; i++)
    el[i] = KEEL_NIL;
  uint8_t want[6 + 256] = {131, 105, 0, 0, 1, 0};
  memset(want + 6, 106, 256);
  check_vec(t, 2, want, sizeof want);
  /* 65535 bytes is still a string; 65536 is a list. */
  keel_term *cells = malloc(65536 * sizeof *cells);
  for (int i = 0; i < 65536; i++)
    cells[i] = keel_small(7);
  keel_term s = keel_list_from(&h, 65535, cells);
  cr_assert_eq(keel_etf_size(s), 3 + 65535);
  keel_term l = keel_list_from(&h, 65536, cells);
  cr_assert_eq(keel_etf_size(l), 5 + 2 * 65536 + 1);
  free(cells);
}

Test(etf, binaries_and_maps) {
  VEC(keel_binary(&h, "\x01\x02\x03", 3), 131, 109, 0, 0, 0, 3, 1, 2, 3);
  VEC(keel_binary(&h, "", 0), 131, 109, 0, 0, 0, 0);
  VEC(keel_bitstring(&h, "\xff", 3), 131, 77, 0, 0, 0, 1, 3, 0xe0);
  keel_term k[2] = {keel_atom("b"), keel_atom("a")};
  keel_term v[2] = {keel_small(2), keel_small(1)};
  VEC(keel_map_from(&h, 2, k, v), 131, 116, 0, 0, 0, 2, 119, 1, 'a', 97, 1, 119,
      1, 'b', 97, 2);
  VEC(keel_map_new(&h), 131, 116, 0, 0, 0, 0);
}

Test(etf, pids_refs_ports_funs) {
  VEC(keel_pid_local(5), 131, 88, 119, 13, 'n', 'o', 'n', 'o', 'd', 'e', '@',
      'n', 'o', 'h', 'o', 's', 't', 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0);
  keel_pid_parts pp = {
      .node = keel_atom("a"), .id = 1, .serial = 2, .creation = 3};
  VEC(keel_pid_make(&h, &pp), 131, 88, 119, 1, 'a', 0, 0, 0, 1, 0, 0, 0, 2, 0,
      0, 0, 3);
  keel_ref_parts rp = {
      .node = keel_atom("a"), .creation = 1, .len = 3, .id = {1, 2, 3}};
  VEC(keel_ref_make(&h, &rp), 131, 90, 0, 3, 119, 1, 'a', 0, 0, 0, 1, 0, 0, 0,
      1, 0, 0, 0, 2, 0, 0, 0, 3);
  keel_port_parts po = {.node = keel_atom("a"), .id = 5, .creation = 1};
  VEC(keel_port_make(&h, &po), 131, 89, 119, 1, 'a', 0, 0, 0, 5, 0, 0, 0, 1);
  po.id = (uint64_t)1 << 40;
  VEC(keel_port_make(&h, &po), 131, 120, 119, 1, 'a', 0, 0, 1, 0, 0, 0, 0, 0, 0,
      0, 0, 1);
  VEC(keel_export_fun(&h, keel_atom("m"), keel_atom("f"), 2), 131, 113, 119, 1,
      'm', 119, 1, 'f', 97, 2);
}

Test(etf, unencodable_terms) {
  keel_buf b;
  keel_buf_init(&b);
  keel_buf_putc(&b, 'x');
  keel_resource *r = keel_resource_new(8, NULL);
  keel_term t = keel_tuple(&h, 2, keel_small(1), keel_resource_term(&h, r));
  keel_resource_release(r);
  cr_assert_eq(keel_etf_encode(&b, t, NULL), KEEL_EBADARG);
  cr_assert_eq(b.len, 1, "output restored on error");
  cr_assert_eq(keel_etf_size(KEEL_NONE), KEEL_EBADARG);
  keel_buf_free(&b);
}

Test(etf, old_forms_decode) {
  keel_term t;
  cr_assert_eq(DEC(&t, 131, 115, 1, 0xe5), KEEL_OK);
  cr_assert_eq(t, keel_atom("\xc3\xa5"));
  cr_assert_eq(DEC(&t, 131, 100, 0, 2, 'o', 'k'), KEEL_OK);
  cr_assert_eq(t, KEEL_ATOM(OK));
  cr_assert_eq(DEC(&t, 131, 118, 0, 2, 'o', 'k'), KEEL_OK);
  cr_assert_eq(t, KEEL_ATOM(OK));
  /* PID_EXT, one-byte creation. */
  cr_assert_eq(DEC(&t, 131, 103, 100, 0, 1, 'a', 0, 0, 0, 1, 0, 0, 0, 2, 3),
               KEEL_OK);
  keel_pid_parts pp;
  cr_assert_eq(keel_pid_get(t, &pp), KEEL_OK);
  cr_assert(pp.id == 1 && pp.serial == 2 && pp.creation == 3);
  cr_assert_eq(pp.node, keel_atom("a"));
  /* REFERENCE_EXT and NEW_REFERENCE_EXT. */
  keel_ref_parts rp;
  cr_assert_eq(DEC(&t, 131, 101, 100, 0, 1, 'a', 0, 0, 0, 5, 1), KEEL_OK);
  cr_assert_eq(keel_ref_get(t, &rp), KEEL_OK);
  cr_assert(rp.len == 1 && rp.id[0] == 5 && rp.creation == 1);
  cr_assert_eq(
      DEC(&t, 131, 114, 0, 2, 100, 0, 1, 'a', 2, 0, 0, 0, 7, 0, 0, 0, 8),
      KEEL_OK);
  cr_assert_eq(keel_ref_get(t, &rp), KEEL_OK);
  cr_assert(rp.len == 2 && rp.id[0] == 7 && rp.id[1] == 8 && rp.creation == 2);
  /* PORT_EXT. */
  keel_port_parts po;
  cr_assert_eq(DEC(&t, 131, 102, 100, 0, 1, 'a', 0, 0, 0, 9, 1), KEEL_OK);
  cr_assert_eq(keel_port_get(t, &po), KEEL_OK);
  cr_assert(po.id == 9 && po.creation == 1);
  /* FLOAT_EXT, as written by term_to_binary(1.5, [{minor_version, 0}]). */
  uint8_t fl[33] = {131, 99};
  memcpy(fl + 2, "1.50000000000000000000e+00", 26);
  cr_assert_eq(dec(fl, sizeof fl, &t), KEEL_OK);
  double d;
  cr_assert_eq(keel_get_double(t, &d), KEEL_OK);
  cr_assert_eq(d, 1.5);
  memcpy(fl + 2, "1.5x", 4);
  cr_assert_eq(dec(fl, sizeof fl, &t), KEEL_EDECODE);
  memcpy(fl + 2, "inf\0", 4);
  cr_assert_eq(dec(fl, sizeof fl, &t), KEEL_EDECODE);
  memcpy(fl + 2, "1e999", 5);
  cr_assert_eq(dec(fl, sizeof fl, &t), KEEL_EDECODE);
  /* Big integers that fit a small are normalised; any non-zero sign byte
   * means negative. */
  cr_assert_eq(DEC(&t, 131, 110, 2, 0, 1, 0), KEEL_OK);
  cr_assert_eq(t, keel_small(1));
  cr_assert_eq(DEC(&t, 131, 110, 1, 5, 1), KEEL_OK);
  cr_assert_eq(t, keel_small(-1));
  cr_assert_eq(DEC(&t, 131, 110, 0, 0), KEEL_OK);
  cr_assert_eq(t, keel_small(0));
  cr_assert_eq(DEC(&t, 131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0x20), KEEL_OK);
  cr_assert_eq(t, keel_small(KEEL_SMALL_MIN));
  /* LIST_EXT of length 0 is just its tail; bit count masks unused bits. */
  cr_assert_eq(DEC(&t, 131, 108, 0, 0, 0, 0, 97, 4), KEEL_OK);
  cr_assert_eq(t, keel_small(4));
  cr_assert_eq(DEC(&t, 131, 77, 0, 0, 0, 1, 3, 0xff), KEEL_OK);
  cr_assert_eq(keel_bitstring_bits(t), 3);
  cr_assert_eq(keel_binary_data(t, NULL)[0], 0xe0);
}

Test(etf, maps_normalised_and_duplicates_rejected) {
  keel_term t;
  cr_assert_eq(
      DEC(&t, 131, 116, 0, 0, 0, 2, 119, 1, 'b', 97, 2, 119, 1, 'a', 97, 1),
      KEEL_OK);
  keel_term k, v;
  keel_map_at(t, 0, &k, &v);
  cr_assert_eq(k, keel_atom("a"));
  cr_assert_eq(v, keel_small(1));
  cr_assert_eq(keel_map_get(t, keel_atom("b"), &v), KEEL_OK);
  cr_assert_eq(v, keel_small(2));
  cr_assert_eq(DEC(&t, 131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2),
               KEEL_EDECODE);
  /* 1 and 1.0 are different keys. */
  cr_assert_eq(DEC(&t, 131, 116, 0, 0, 0, 2, 70, 63, 240, 0, 0, 0, 0, 0, 0, 106,
                   97, 1, 106),
               KEEL_OK);
  cr_assert_eq(keel_map_size(t), 2);
  keel_map_at(t, 0, &k, NULL);
  cr_assert_eq(k, keel_small(1), "integers sort before floats");
}

Test(etf, large_maps_sorted_and_checked) {
  uint8_t buf[6 + 40 * 4];
  size_t n = 0;
  buf[n++] = 131;
  buf[n++] = 116;
  buf[n++] = 0, buf[n++] = 0, buf[n++] = 0, buf[n++] = 40;
  for (int i = 0; i < 40; i++) {
    buf[n++] = 97;
    buf[n++] = (uint8_t)(39 - i);
    buf[n++] = 97;
    buf[n++] = (uint8_t)i;
  }
  keel_term t, v;
  cr_assert_eq(dec(buf, n, &t), KEEL_OK);
  for (int i = 0; i < 40; i++) {
    keel_term k;
    keel_map_at(t, (size_t)i, &k, &v);
    cr_assert_eq(k, keel_small(i));
    cr_assert_eq(v, keel_small(39 - i));
  }
  buf[6 + 4 * 39 + 1] = 39; /* last key duplicates the first */
  cr_assert_eq(dec(buf, n, &t), KEEL_EDECODE);
}

Test(etf, malformed_inputs) {
  keel_term t;
  cr_assert_eq(DEC(&t, 130, 106), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 1), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 119, 2, 0xc3, 0x28), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 119, 2, 0xc0, 0x80), KEEL_EDECODE, "overlong");
  cr_assert_eq(DEC(&t, 131, 113, 119, 1, 'm', 119, 1, 'f', 98, 0, 0, 0, 1),
               KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 113, 119, 1, 'm', 106, 97, 1), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 77, 0, 0, 0, 1, 0, 255), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 77, 0, 0, 0, 1, 9, 255), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 77, 0, 0, 0, 0, 8), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 90, 0, 6, 119, 1, 'a', 0, 0, 0, 0), KEEL_EDECODE);
  cr_assert_eq(DEC(&t, 131, 88, 106, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
               KEEL_EDECODE, "pid node must be an atom");
  cr_assert_eq(DEC(&t, 131, 112, 0, 0, 0, 0), KEEL_EUNSUPPORTED);
  cr_assert_eq(DEC(&t, 131, 82, 0), KEEL_EUNSUPPORTED);
  cr_assert_eq(DEC(&t, 131, 104, 1, 80, 0, 0, 0, 0), KEEL_EDECODE,
               "compression only at the top");
  /* Latin-1 atoms of more than 255 characters. */
  uint8_t la[4 + 256] = {131, 100, 1, 0};
  memset(la + 4, 'x', 256);
  cr_assert_eq(dec(la, sizeof la, &t), KEEL_EDECODE);
  la[1] = 118;
  cr_assert_eq(dec(la, sizeof la, &t), KEEL_EDECODE);
  cr_assert_eq(keel_etf_decode(&h, NULL, 0, NULL, &t, NULL), KEEL_ETRUNC);
}

Test(etf, huge_declared_lengths) {
  keel_term t;
  cr_assert_eq(DEC(&t, 131, 105, 255, 255, 255, 255, 106), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 108, 255, 255, 255, 255, 106), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 116, 255, 255, 255, 255, 106), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 109, 255, 255, 255, 255, 1), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 77, 255, 255, 255, 255, 3, 1), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 107, 255, 255, 1), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 111, 255, 255, 255, 255, 0, 1), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 118, 255, 255, 'a'), KEEL_ETRUNC);
  cr_assert_eq(DEC(&t, 131, 90, 0, 5, 119, 1, 'a', 0, 0, 0, 0, 1), KEEL_ETRUNC);
}

Test(etf, safe_mode) {
  keel_etf_decode_opts o = {.safe = 1};
  keel_term t;
  const uint8_t unk[] = {131, 119, 12,  'n', 'o', '_', 's', 'u',
                         'c', 'h', '_', 'a', 't', 'o', 'm'};
  cr_assert_eq(keel_etf_decode(&h, unk, sizeof unk, NULL, &t, &o), KEEL_ENOENT);
  cr_assert_eq(keel_atom_find("no_such_atom", 12, &t), KEEL_ENOENT);
  const uint8_t known[] = {131, 119, 2, 'o', 'k'};
  cr_assert_eq(keel_etf_decode(&h, known, sizeof known, NULL, &t, &o), KEEL_OK);
  cr_assert_eq(t, KEEL_ATOM(OK));
  cr_assert_eq(keel_etf_decode(&h, unk, sizeof unk, NULL, &t, NULL), KEEL_OK);
}

Test(etf, trailing_bytes_and_used) {
  keel_term t;
  size_t used = 0;
  const uint8_t b[] = {131, 104, 1, 106, 0xde, 0xad};
  cr_assert_eq(keel_etf_decode(&h, b, sizeof b, &used, &t, NULL), KEEL_OK);
  cr_assert_eq(used, 4);
}

Test(etf, large_binary_is_refcounted) {
  uint8_t data[100];
  for (int i = 0; i < 100; i++)
    data[i] = (uint8_t)i;
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_etf_encode(&b, keel_binary(&h, data, 100), NULL), KEEL_OK);
  keel_term t;
  cr_assert_eq(dec(b.data, b.len, &t), KEEL_OK);
  cr_assert_eq(keel__box_type(t), KEEL_BOX_REFCBIN);
  size_t len;
  const uint8_t *p = keel_binary_data(t, &len);
  cr_assert_eq(len, 100);
  cr_assert_arr_eq(p, data, 100);
  cr_assert(p < b.data || p >= b.data + b.len, "input is not retained");
  keel_buf_free(&b);
}

/* ---- compression --------------------------------------------------------- */

Test(etf, compressed_matches_erlang) {
  /* term_to_binary(lists:duplicate(100, a), [compressed]) on OTP 25. */
  static const uint8_t want[] = {131, 80,  0,  0,  1,  150, 120, 156, 203, 97,
                                 96,  96,  72, 73, 97, 96,  76,  28,  197, 131,
                                 7,   103, 1,  0,  48, 70,  78,  147};
  keel_term xs[100];
  for (int i = 0; i < 100; i++)
    xs[i] = keel_atom("a");
  keel_term l = keel_list_from(&h, 100, xs);
  keel_buf b;
  keel_buf_init(&b);
  keel_etf_encode_opts o = {.compressed = 6, .minor_version = 1};
  cr_assert_eq(keel_etf_encode(&b, l, &o), KEEL_OK);
  cr_assert_eq(b.len, sizeof want);
  cr_assert_arr_eq(b.data, want, sizeof want);
  keel_term back;
  size_t used;
  cr_assert_eq(keel_etf_decode(&h, b.data, b.len, &used, &back, NULL), KEEL_OK);
  cr_assert_eq(used, b.len);
  cr_assert(keel_eq_exact(back, l));
  /* A term that does not shrink stays uncompressed. */
  b.len = 0;
  cr_assert_eq(keel_etf_encode(&b, keel_small(1), &o), KEEL_OK);
  cr_assert_eq(b.len, 3);
  cr_assert_eq(b.data[1], 97);
  keel_buf_free(&b);
}

/* 131, 80, size, zlib(raw). */
static size_t make_compressed(uint8_t *out, size_t cap, uint32_t declared,
                              const uint8_t *raw, size_t n) {
  uLongf zl = (uLongf)(cap - 6);
  cr_assert_eq(compress(out + 6, &zl, raw, (uLong)n), Z_OK);
  out[0] = 131;
  out[1] = 80;
  out[2] = (uint8_t)(declared >> 24);
  out[3] = (uint8_t)(declared >> 16);
  out[4] = (uint8_t)(declared >> 8);
  out[5] = (uint8_t)declared;
  return 6 + zl;
}

Test(etf, compressed_hostile) {
  size_t big = 1 << 20;
  uint8_t *raw = calloc(big, 1);
  raw[0] = 109; /* BINARY_EXT of big - 5 zero bytes */
  raw[1] = 0, raw[2] = 0x0f, raw[3] = 0xff, raw[4] = 0xfb;
  uint8_t *z = malloc(big);
  keel_term t;
  /* Honest size decodes. */
  size_t zn = make_compressed(z, big, (uint32_t)big, raw, big);
  cr_assert_eq(dec(z, zn, &t), KEEL_OK);
  cr_assert(keel_is_binary(t));
  /* A bomb that lies about its size: more data than declared. */
  zn = make_compressed(z, big, 100, raw, big);
  cr_assert_eq(dec(z, zn, &t), KEEL_EDECODE);
  /* Less data than declared. */
  zn = make_compressed(z, big, (uint32_t)big + 1, raw, big);
  cr_assert_eq(dec(z, zn, &t), KEEL_EDECODE);
  /* Declared size over the cap. */
  keel_etf_decode_opts o = {.max_uncompressed = 1000};
  zn = make_compressed(z, big, (uint32_t)big, raw, big);
  cr_assert_eq(keel_etf_decode(&h, z, zn, NULL, &t, &o), KEEL_ELIMIT);
  cr_assert_eq(DEC(&t, 131, 80, 255, 255, 255, 255, 120, 156), KEEL_ELIMIT);
  /* Truncated stream and garbage stream. */
  zn = make_compressed(z, big, (uint32_t)big, raw, big);
  cr_assert_eq(dec(z, zn / 2, &t), KEEL_ETRUNC);
  z[6] ^= 0xff;
  cr_assert_eq(dec(z, zn, &t), KEEL_EDECODE);
  /* Inner term shorter than the declared data: accepted, as Erlang does. */
  const uint8_t inner[] = {97, 1, 1};
  zn = make_compressed(z, big, 3, inner, 3);
  cr_assert_eq(dec(z, zn, &t), KEEL_OK);
  cr_assert_eq(t, keel_small(1));
  /* Inner term longer than the data. */
  const uint8_t cut[] = {104, 2, 97};
  zn = make_compressed(z, big, 3, cut, 3);
  cr_assert_eq(dec(z, zn, &t), KEEL_EDECODE);
  free(raw);
  free(z);
}

/* ---- deep nesting -------------------------------------------------------- */

static uint8_t *deep_input(size_t depth, bool tuple, size_t *n) {
  size_t per = tuple ? 2 : 6;
  uint8_t *b = malloc(1 + per * depth + 1);
  size_t k = 0;
  b[k++] = 131;
  for (size_t i = 0; i < depth; i++) {
    if (tuple) {
      b[k++] = 104;
      b[k++] = 1;
    } else {
      const uint8_t hdr[5] = {108, 0, 0, 0, 1};
      memcpy(b + k, hdr, 5);
      k += 5;
    }
  }
  b[k++] = 106;
  if (!tuple)
    for (size_t i = 0; i < depth; i++)
      b[k++] = 106;
  *n = k;
  return b;
}

static void check_deep(bool tuple) {
  size_t depth = 1000000, n;
  uint8_t *in = deep_input(depth, tuple, &n);
  keel_term t;
  cr_assert_eq(dec(in, n, &t), KEEL_OK);
  size_t d = 0;
  while (tuple ? keel_is_tuple(t) : keel_is_cons(t)) {
    t = tuple ? keel_tuple_get(t, 0) : keel_hd(t);
    d++;
  }
  cr_assert_eq(d, depth);
  cr_assert(keel_is_nil(t));
  /* The same bytes come back out. */
  cr_assert_eq(dec(in, n, &t), KEEL_OK);
  cr_assert_eq(keel_etf_size(t), (long long)n - 1);
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_etf_encode(&b, t, NULL), KEEL_OK);
  cr_assert_eq(b.len, n);
  cr_assert_arr_eq(b.data, in, n);
  /* Every truncation of a deep input fails cleanly (a few prefixes). */
  for (size_t cut = 1; cut < n; cut += n / 7)
    cr_assert_eq(dec(in, cut, &t), KEEL_ETRUNC);
  keel_buf_free(&b);
  free(in);
}

Test(etf, deep_lists) {
  check_deep(false);
}

Test(etf, deep_tuples) {
  check_deep(true);
}

/* ---- random round trips and truncation ----------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static keel_term gen(int depth);

static keel_term gen_scalar(void) {
  static const char *atoms[] = {
      "a", "ok", "\xc3\xa5\xc3\xa4", "\xe2\x88\x80x", "nonode@nohost", "b"};
  uint64_t limbs[3] = {rnd(), rnd(), rnd()};
  keel_ref_parts rp = {.node = keel_atom("n@h"),
                       .creation = (uint32_t)rnd(),
                       .len = 1 + rnd() % 5,
                       .id = {(uint32_t)rnd(), 2, 3, 4, (uint32_t)rnd()}};
  keel_pid_parts pp = {.node = keel_atom("n@h"),
                       .id = (uint32_t)rnd(),
                       .serial = (uint32_t)rnd(),
                       .creation = 7};
  keel_port_parts po = {
      .node = keel_atom("n@h"), .id = rnd() >> (rnd() % 64), .creation = 9};
  uint8_t bytes[200];
  for (size_t i = 0; i < sizeof bytes; i++)
    bytes[i] = (uint8_t)rnd();
  switch (rnd() % 13) {
  case 0:
    return keel_small((int64_t)(rnd() % 600) - 300);
  case 1:
    return keel_int(&h, (int64_t)rnd() >> (rnd() % 64));
  case 2:
    return keel_bigint(&h, rnd() & 1, limbs, 1 + rnd() % 3);
  case 3:
    return keel_float(&h, (double)(int64_t)rnd() / 1e6);
  case 4:
    return keel_atom(atoms[rnd() % 6]);
  case 5:
    return keel_binary(&h, bytes, rnd() % 150);
  case 6:
    return keel_bitstring(&h, bytes, rnd() % 1000);
  case 7:
    return keel_ref_make(&h, &rp);
  case 8:
    return keel_pid_make(&h, &pp);
  case 9:
    return keel_port_make(&h, &po);
  case 10:
    return keel_export_fun(&h, keel_atom("m"), keel_atom("f"), (uint8_t)rnd());
  case 11:
    return keel_pid_local(rnd() % 100000);
  default:
    return keel_string(&h, "hello");
  }
}

static keel_term gen(int depth) {
  keel_term xs[40], ys[40];
  size_t n = rnd() % (depth == 1 && rnd() % 4 == 0 ? 40 : 6);
  if (depth <= 0 || rnd() % 3 == 0)
    return gen_scalar();
  for (size_t i = 0; i < n; i++) {
    xs[i] = gen(depth - 1);
    ys[i] = gen(depth - 1);
  }
  switch (rnd() % 4) {
  case 0:
    return keel_tuple_from(&h, n, xs);
  case 1:
    return keel_list_from(&h, n, xs);
  case 2:
    return keel_list_from_tail(&h, n, xs, n > 0 ? ys[0] : keel_small(1));
  default:
    return keel_map_from(&h, n, xs, ys);
  }
}

Test(etf, random_round_trips_and_truncation) {
  rng_state = 0x9e3779b97f4a7c15u;
  keel_buf b;
  keel_buf_init(&b);
  for (int iter = 0; iter < 400; iter++) {
    keel_term t = gen(4);
    cr_assert_neq(t, KEEL_NONE);
    b.len = 0;
    keel_etf_encode_opts o = {.compressed = iter % 3 == 0 ? 6 : 0};
    int rc = keel_etf_encode(&b, t, &o);
    cr_assert_eq(rc, KEEL_OK, "iteration %d: %d", iter, rc);
    if (o.compressed == 0)
      cr_assert_eq(keel_etf_size(t), (long long)b.len - 1);
    keel_term back;
    size_t used;
    cr_assert_eq(keel_etf_decode(&h, b.data, b.len, &used, &back, NULL),
                 KEEL_OK);
    cr_assert_eq(used, b.len);
    cr_assert(keel_eq_exact(back, t), "iteration %d", iter);
    if (iter % 4 != 0 || b.len > 20000)
      continue;
    for (size_t cut = 0; cut < b.len; cut++) {
      rc = keel_etf_decode(&h, b.data, cut, NULL, &back, NULL);
      cr_assert(rc == KEEL_ETRUNC || (o.compressed && rc == KEEL_EDECODE),
                "cut %zu of %zu: %d", cut, b.len, rc);
    }
  }
  keel_buf_free(&b);
}

Test(etf, port_id_boundary_follows_otp) {
  /* OTP 25: term_to_binary of a port with id 16#fffffff is NEW_PORT_EXT,
   * with id 16#10000000 V4_PORT_EXT. */
  keel_port_parts po = {.node = keel_atom("a"), .id = 0xfffffff, .creation = 3};
  VEC(keel_port_make(&h, &po), 131, 89, 119, 1, 'a', 15, 255, 255, 255, 0, 0, 0,
      3);
  po.id = 0x10000000;
  VEC(keel_port_make(&h, &po), 131, 120, 119, 1, 'a', 0, 0, 0, 0, 16, 0, 0, 0,
      0, 0, 0, 3);
}

Test(etf, fixed_heap_too_small) {
  uint64_t words[4];
  keel_heap fh;
  keel_heap_init_fixed(&fh, words, 4);
  keel_term t;
  const uint8_t b[] = {131, 104, 4, 97, 1, 97, 2, 97, 3, 97, 4};
  cr_assert_eq(keel_etf_decode(&fh, b, sizeof b, NULL, &t, NULL), KEEL_ENOMEM);
  const uint8_t c[] = {131, 104, 2, 97, 1, 97, 2};
  cr_assert_eq(keel_etf_decode(&fh, c, sizeof c, NULL, &t, NULL), KEEL_OK);
  cr_assert_eq(keel_tuple_get(t, 1), keel_small(2));
  keel_heap_destroy(&fh);
}

Test(etf, safe_mode_checks_node_atoms) {
  keel_etf_decode_opts o = {.safe = 1};
  keel_term t;
  const uint8_t pid[] = {131, 88,  119, 14,  'u', 'n', 'k', 'n', 'o', 'w',
                         'n', '_', 'n', 'o', 'd', 'e', '@', 'x', 0,   0,
                         0,   1,   0,   0,   0,   0,   0,   0,   0,   0};
  cr_assert_eq(keel_etf_decode(&h, pid, sizeof pid, NULL, &t, &o), KEEL_ENOENT);
}

Test(etf, local_pid_decodes_to_immediate) {
  keel_term t;
  cr_assert_eq(DEC(&t, 131, 88, 119, 13, 'n', 'o', 'n', 'o', 'd', 'e', '@', 'n',
                   'o', 'h', 'o', 's', 't', 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0),
               KEEL_OK);
  cr_assert(keel_is_local_pid(t));
  cr_assert_eq(keel_pid_local_number(t), 9 | (UINT64_C(1) << 32));
  /* Another creation is another node: a boxed pid. */
  cr_assert_eq(DEC(&t, 131, 88, 119, 13, 'n', 'o', 'n', 'o', 'd', 'e', '@', 'n',
                   'o', 'h', 'o', 's', 't', 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 5),
               KEEL_OK);
  cr_assert(keel_is_pid(t) && !keel_is_local_pid(t));
}
