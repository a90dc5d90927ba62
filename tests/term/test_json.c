/* JSON decoder and encoder: RFC 8259 cases in the style of JSONTestSuite
 * (y_ must be accepted, n_ rejected), limits, and random round trips. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(json, .init = setup, .fini = teardown);

typedef struct doc {
  const char *name;
  const char *text;
  size_t len;
} doc;

#define DOC(name, lit)                                                         \
  { name, lit, sizeof(lit) - 1 }

static int decode(const char *text, size_t len, keel_term *out) {
  return keel_json_decode(&h, text, len, out);
}

static keel_term dec_ok(const char *text) {
  keel_term t = KEEL_NONE;
  int rc = decode(text, strlen(text), &t);
  cr_assert_eq(rc, KEEL_OK, "decoding %s: %s", text, keel_err_name(rc));
  return t;
}

/* Encodes t into a malloc'd NUL-terminated string (asserting success). */
static char *enc_ok(keel_term t, int pretty) {
  keel_buf b;
  keel_buf_init(&b);
  keel_json_opts o = {pretty};
  int rc = keel_json_encode(&b, t, &o);
  cr_assert_eq(rc, KEEL_OK, "encode: %s", keel_err_name(rc));
  cr_assert_eq(keel_buf_putc(&b, 0), KEEL_OK);
  return (char *)keel_buf_take(&b, NULL);
}

static keel_term bin(const char *s) {
  return keel_binary(&h, s, strlen(s));
}

/* ---- accepted documents ------------------------------------------------ */

static const doc y_docs[] = {
    DOC("y_array_arraysWithSpaces", "[[]   ]"),
    DOC("y_array_empty", "[]"),
    DOC("y_array_empty-string", "[\"\"]"),
    DOC("y_array_false", "[false]"),
    DOC("y_array_heterogeneous", "[null, 1, \"1\", {}]"),
    DOC("y_array_with_1_and_newline", "[1\n]"),
    DOC("y_array_with_leading_space", " [1]"),
    DOC("y_array_with_several_null", "[1,null,null,null,2]"),
    DOC("y_array_with_trailing_space", "[2] "),
    DOC("y_number", "[123e65]"),
    DOC("y_number_0e+1", "[0e+1]"),
    DOC("y_number_0e1", "[0e1]"),
    DOC("y_number_after_space", "[ 4]"),
    DOC("y_number_double_close_to_zero",
        "[-0.00000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000001]"),
    DOC("y_number_int_with_exp", "[20e1]"),
    DOC("y_number_minus_zero", "[-0]"),
    DOC("y_number_negative_int", "[-123]"),
    DOC("y_number_negative_one", "[-1]"),
    DOC("y_number_real_capital_e", "[1E22]"),
    DOC("y_number_real_capital_e_neg_exp", "[1E-2]"),
    DOC("y_number_real_capital_e_pos_exp", "[1E+2]"),
    DOC("y_number_real_fraction_exponent", "[123.456e78]"),
    DOC("y_number_real_underflow", "[123e-10000000]"),
    DOC("y_number_too_big_pos_int", "[100000000000000000000]"),
    DOC("y_number_very_big_negative_int",
        "[-237462374673276894279832749832423479823246327846]"),
    DOC("y_object", "{\"asd\":\"sdf\", \"dfg\":\"fgh\"}"),
    DOC("y_object_duplicated_key", "{\"a\":\"b\",\"a\":\"c\"}"),
    DOC("y_object_empty", "{}"),
    DOC("y_object_empty_key", "{\"\":0}"),
    DOC("y_object_escaped_null_in_key", "{\"foo\\u0000bar\": 42}"),
    DOC("y_object_extreme_numbers", "{ \"min\": -1.0e+28, \"max\": 1.0e+28 }"),
    DOC("y_object_with_newlines", "{\n\"a\": \"b\"\n}"),
    DOC("y_string_1_2_3_bytes_UTF-8_sequences", "[\"\\u0060\\u012a\\u12AB\"]"),
    DOC("y_string_accepted_surrogate_pair", "[\"\\uD801\\udc37\"]"),
    DOC("y_string_allowed_escapes", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
    DOC("y_string_comments", "[\"a/*b*/c/*d//e\"]"),
    DOC("y_string_escaped_control_character", "[\"\\u0012\"]"),
    DOC("y_string_last_surrogates_1_and_2", "[\"\\uDBFF\\uDFFF\"]"),
    DOC("y_string_nonCharacterInUTF-8_U+FFFF", "[\"\xef\xbf\xbf\"]"),
    DOC("y_string_unicode_U+10FFFE_nonchar", "[\"\xf4\x8f\xbf\xbe\"]"),
    DOC("y_string_utf8", "[\"\xe2\x82\xac\xf0\x9d\x84\x9e\"]"),
    DOC("y_string_with_del_character", "[\"a\x7f"
                                       "a\"]"),
    DOC("y_string_null_escape", "\"\\u0000\""),
    DOC("y_structure_lonely_false", "false"),
    DOC("y_structure_lonely_int", "42"),
    DOC("y_structure_lonely_negative_real", "-0.1"),
    DOC("y_structure_lonely_null", "null"),
    DOC("y_structure_lonely_string", "\"asd\""),
    DOC("y_structure_string_empty", "\"\""),
    DOC("y_structure_trailing_newline", "[\"a\"]\n"),
    DOC("y_structure_true_in_array", "[true]"),
    DOC("y_structure_whitespace_array", " \t\r\n[] \t\r\n"),
};

Test(json, accepts_valid_documents) {
  for (size_t i = 0; i < sizeof y_docs / sizeof y_docs[0]; i++) {
    keel_term t = KEEL_NONE;
    int rc = decode(y_docs[i].text, y_docs[i].len, &t);
    cr_expect_eq(rc, KEEL_OK, "%s: %s", y_docs[i].name, keel_err_name(rc));
    cr_expect_neq(t, KEEL_NONE, "%s", y_docs[i].name);
  }
}

/* ---- rejected documents ------------------------------------------------ */

static const doc n_docs[] = {
    DOC("n_array_1_true_without_comma", "[1 true]"),
    DOC("n_array_comma_after_close", "[\"\"],"),
    DOC("n_array_comma_and_number", "[,1]"),
    DOC("n_array_double_comma", "[1,,2]"),
    DOC("n_array_extra_close", "[\"x\"]]"),
    DOC("n_array_extra_comma", "[\"\",]"),
    DOC("n_array_incomplete", "[\"x\""),
    DOC("n_array_inner_array_no_comma", "[3[4]]"),
    DOC("n_array_missing_value", "[   , \"\"]"),
    DOC("n_array_newlines_unclosed", "[\"a\",\n4\n,1,"),
    DOC("n_array_number_and_comma", "[1,]"),
    DOC("n_array_star_inside", "[*]"),
    DOC("n_array_unclosed", "[\"\""),
    DOC("n_incomplete_false", "[fals]"),
    DOC("n_incomplete_null", "[nul]"),
    DOC("n_incomplete_true", "[tru]"),
    DOC("n_literal_capitalised", "[True]"),
    DOC("n_literal_trailing_letters", "[truex]"),
    DOC("n_number_++", "[++1234]"),
    DOC("n_number_+1", "[+1]"),
    DOC("n_number_+Inf", "[+Inf]"),
    DOC("n_number_-01", "[-01]"),
    DOC("n_number_-1.0.", "[-1.0.]"),
    DOC("n_number_-2.", "[-2.]"),
    DOC("n_number_-NaN", "[-NaN]"),
    DOC("n_number_.-1", "[.-1]"),
    DOC("n_number_.2e-3", "[.2e-3]"),
    DOC("n_number_0.1.2", "[0.1.2]"),
    DOC("n_number_0.3e+", "[0.3e+]"),
    DOC("n_number_0.e1", "[0.e1]"),
    DOC("n_number_0_capital_E+", "[0E+]"),
    DOC("n_number_1.0e-", "[1.0e-]"),
    DOC("n_number_1_000", "[1 000.0]"),
    DOC("n_number_2.e+3", "[2.e+3]"),
    DOC("n_number_Inf", "[Inf]"),
    DOC("n_number_NaN", "[NaN]"),
    DOC("n_number_expression", "[1+2]"),
    DOC("n_number_hex_1_digit", "[0x1]"),
    DOC("n_number_infinity", "[Infinity]"),
    DOC("n_number_minus_infinity", "[-Infinity]"),
    DOC("n_number_minus_sign_with_trailing_garbage", "[-foo]"),
    DOC("n_number_minus_space_1", "[- 1]"),
    DOC("n_number_neg_int_starting_with_zero", "[-012]"),
    DOC("n_number_neg_real_without_int_part", "[-.123]"),
    DOC("n_number_real_without_fractional_part", "[1.]"),
    DOC("n_number_with_leading_zero", "[012]"),
    DOC("n_number_lone_minus", "-"),
    DOC("n_object_bad_value", "[\"x\", truth]"),
    DOC("n_object_comma_instead_of_colon", "{\"x\", null}"),
    DOC("n_object_double_colon", "{\"x\"::\"b\"}"),
    DOC("n_object_missing_colon", "{\"a\" b}"),
    DOC("n_object_missing_key", "{:\"b\"}"),
    DOC("n_object_missing_value", "{\"a\":"),
    DOC("n_object_missing_value_before_close", "{\"a\":}"),
    DOC("n_object_non_string_key", "{1:1}"),
    DOC("n_object_single_quote", "{'a':0}"),
    DOC("n_object_trailing_comma", "{\"id\":0,}"),
    DOC("n_object_leading_comma", "{,\"id\":0}"),
    DOC("n_object_unquoted_key", "{a: \"b\"}"),
    DOC("n_object_with_trailing_garbage", "{\"a\":\"b\"}#"),
    DOC("n_object_closed_by_bracket", "{\"a\":1]"),
    DOC("n_array_closed_by_brace", "[1}"),
    DOC("n_string_1_surrogate_then_escape", "[\"\\uD800\\\"]"),
    DOC("n_string_escape_x", "[\"\\x00\"]"),
    DOC("n_string_escaped_backslash_bad", "[\"\\\\\\\"]"),
    DOC("n_string_incomplete_surrogate", "[\"\\uD834\\uDd\"]"),
    DOC("n_string_incomplete_escape", "[\"\\u00"),
    DOC("n_string_invalid_utf8_after_escape", "[\"\\\xe5\"]"),
    DOC("n_string_single_quote", "['single quote']"),
    DOC("n_string_unescaped_newline", "[\"new\nline\"]"),
    DOC("n_string_unescaped_tab", "[\"\t\"]"),
    DOC("n_string_unescaped_nul", "[\"a\0b\"]"),
    DOC("n_string_invalid_backslash_esc", "[\"\\a\"]"),
    DOC("n_string_escaped_nul_char", "[\"\\\0\"]"),
    DOC("n_string_unterminated", "\"abc"),
    /* Lone surrogates (JSONTestSuite lists them as i_; Keel rejects). */
    DOC("i_string_1st_surrogate_but_2nd_missing", "[\"\\uDADA\"]"),
    DOC("i_string_lone_second_surrogate", "[\"\\uDFAA\"]"),
    DOC("i_string_surrogate_then_bmp", "[\"\\uD800\\u0041\"]"),
    DOC("i_string_inverted_surrogates", "[\"\\uDC00\\uD800\"]"),
    /* Malformed UTF-8. */
    DOC("i_string_UTF-8_invalid_sequence", "[\"\xe6\x97\xa5\xd1\x88\xfa\"]"),
    DOC("i_string_overlong_sequence_2_bytes", "[\"\xc0\xaf\"]"),
    DOC("i_string_overlong_sequence_3_bytes", "[\"\xe0\x80\xaf\"]"),
    DOC("i_string_overlong_sequence_4_bytes", "[\"\xf0\x80\x80\xaf\"]"),
    DOC("i_string_not_in_unicode_range", "[\"\xf4\xbf\xbf\xbf\"]"),
    DOC("i_string_utf8_surrogate_U+D800", "[\"\xed\xa0\x80\"]"),
    DOC("i_string_truncated_utf8", "[\"\xe2\x82\"]"),
    DOC("i_string_lone_continuation", "[\"\x80\"]"),
    DOC("i_string_iso_latin_1", "[\"\xe9\"]"),
    DOC("i_string_UTF-16LE_with_BOM", "\xff\xfe[\0\"\0"),
    DOC("n_structure_UTF8_BOM_no_data", "\xef\xbb\xbf"),
    DOC("n_structure_UTF8_BOM_empty_object", "\xef\xbb\xbf{}"),
    DOC("n_structure_no_data", ""),
    DOC("n_single_space", " "),
    DOC("n_structure_double_array", "[][]"),
    DOC("n_structure_lone-open-bracket", "["),
    DOC("n_structure_lone-open-brace", "{"),
    DOC("n_structure_close_unopened_array", "1]"),
    DOC("n_structure_null-byte-outside-string", "[\0]"),
    DOC("n_structure_object_with_comment", "{\"a\":/*comment*/\"b\"}"),
    DOC("n_structure_trailing_#", "{\"a\": true} \"x\""),
    DOC("n_structure_whitespace_formfeed", "[\f]"),
    DOC("n_structure_unclosed_object", "{\"asd\":\"asd\""),
    DOC("n_structure_trailing_nul", "1\0"),
};

Test(json, rejects_malformed_documents) {
  for (size_t i = 0; i < sizeof n_docs / sizeof n_docs[0]; i++) {
    keel_term t = KEEL_NONE;
    int rc = decode(n_docs[i].text, n_docs[i].len, &t);
    cr_expect_eq(rc, KEEL_EPARSE, "%s: got %s", n_docs[i].name,
                 keel_err_name(rc));
    cr_expect_eq(t, KEEL_NONE, "%s: output written", n_docs[i].name);
  }
}

Test(json, every_prefix_of_a_document_is_rejected) {
  const char text[] = "{\"a\":[1,-2.5e3,\"x\\u00e9\\ud83d\\ude00\",true,"
                      "false,null,{}],\"b\":{\"c\":[]}}";
  keel_term t;
  cr_assert_eq(decode(text, sizeof text - 1, &t), KEEL_OK);
  /* No prefix is a document: each one ends inside an open object. */
  for (size_t n = 0; n + 1 < sizeof text; n++)
    cr_expect_eq(decode(text, n, &t), KEEL_EPARSE, "prefix of %zu bytes", n);
}

Test(json, bad_arguments) {
  keel_term t;
  cr_assert_eq(keel_json_decode(NULL, "1", 1, &t), KEEL_EINVAL);
  cr_assert_eq(keel_json_decode(&h, "1", 1, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_json_decode(&h, NULL, 1, &t), KEEL_EINVAL);
  cr_assert_eq(keel_json_decode(&h, NULL, 0, &t), KEEL_EPARSE);
  cr_assert_eq(keel_json_encode(NULL, KEEL_NIL, NULL), KEEL_EINVAL);
}

/* ---- decoded values ---------------------------------------------------- */

Test(json, scalars_map_to_terms) {
  cr_assert_eq(dec_ok("true"), KEEL_ATOM(TRUE));
  cr_assert_eq(dec_ok("false"), KEEL_ATOM(FALSE));
  cr_assert_eq(dec_ok(" null "), KEEL_ATOM(NULL));
  cr_assert_eq(dec_ok("-0"), keel_small(0));
  cr_assert_eq(dec_ok("[]"), KEEL_NIL);
  cr_assert_eq(dec_ok("-123"), keel_small(-123));
  int64_t v;
  cr_assert_eq(keel_get_int64(dec_ok("999999999999999999"), &v), KEEL_OK);
  cr_assert_eq(v, INT64_C(999999999999999999));
  cr_assert_eq(keel_get_int64(dec_ok("-9223372036854775808"), &v), KEEL_OK);
  cr_assert_eq(v, INT64_MIN);
  keel_term e = keel_map_new(&h);
  cr_assert(keel_eq_exact(dec_ok("{}"), e));
}

Test(json, big_integers_are_exact) {
  const char *digits[] = {"100000000000000000000",
                          "-237462374673276894279832749832423479823246327846",
                          "18446744073709551616", "-18446744073709551617"};
  for (size_t i = 0; i < 4; i++) {
    keel_term want;
    cr_assert_eq(
        keel_integer_parse(&h, digits[i], strlen(digits[i]), 10, &want),
        KEEL_OK);
    keel_term got = dec_ok(digits[i]);
    cr_assert(keel_is_integer(got));
    cr_assert(keel_eq_exact(got, want), "%s", digits[i]);
  }
}

Test(json, integer_length_is_bounded) {
  /* 10000 digits are accepted (and exact); one more is KEEL_ELIMIT, so a
   * hostile document cannot buy quadratic conversion time. */
  size_t n = 10001;
  char *s = malloc(n + 3);
  cr_assert_not_null(s);
  s[0] = '[';
  s[1] = '-';
  memset(s + 2, '9', n);
  s[n + 2] = ']';
  keel_term t, want;
  cr_assert_eq(decode(s, n + 3, &t), KEEL_ELIMIT);
  memmove(s + 1, s + 2, n + 1); /* drop the '-': 10001 digits again */
  cr_assert_eq(decode(s, n + 2, &t), KEEL_ELIMIT);
  s[n] = ']';
  cr_assert_eq(decode(s, n + 1, &t), KEEL_OK);
  cr_assert_eq(keel_integer_parse(&h, s + 1, n - 1, 10, &want), KEEL_OK);
  cr_assert(keel_eq_exact(keel_hd(t), want));
  /* Long fractions are fine: only integers are bounded. */
  s[1] = '0';
  s[2] = '.';
  cr_assert_eq(decode(s, n + 1, &t), KEEL_OK);
  cr_assert(keel_is_float(keel_hd(t)));
  free(s);
}

static double dec_double(const char *text) {
  double d = NAN;
  keel_term t = dec_ok(text);
  cr_assert(keel_is_float(t), "%s is not a float", text);
  cr_assert_eq(keel_get_double(t, &d), KEEL_OK);
  return d;
}

Test(json, floats_are_correctly_rounded) {
  /* The C compiler's own decimal conversion is the oracle here. */
  cr_assert_eq(dec_double("0.1"), 0.1);
  cr_assert_eq(dec_double("1E22"), 1e22);
  cr_assert_eq(dec_double("20e1"), 200.0);
  cr_assert_eq(dec_double("0e1"), 0.0);
  cr_assert_eq(dec_double("-1.0e+28"), -1.0e+28);
  cr_assert_eq(dec_double("2.2250738585072011e-308"), 2.2250738585072011e-308);
  cr_assert_eq(dec_double("2.2250738585072012e-308"), 2.2250738585072012e-308);
  cr_assert_eq(dec_double("4.9406564584124654e-324"), 4.9406564584124654e-324);
  cr_assert_eq(dec_double("1.7976931348623157e308"), 1.7976931348623157e308);
  cr_assert_eq(dec_double("9007199254740993.0"), 9007199254740993.0);
  cr_assert_eq(dec_double("123e-10000000"), 0.0);
  cr_assert_eq(dec_double("1.2345678901234567e22"), 1.2345678901234567e22);
  cr_assert_eq(dec_double("9007199254740993e-22"), 9007199254740993e-22);
  cr_assert_eq(dec_double("9007199254740992e-22"), 9007199254740992e-22);
  cr_assert_eq(dec_double("0.0000000000000000000000000000001"), 1e-31);
  cr_assert_eq(dec_double("1e+0022"), 1e22);
  cr_assert_eq(dec_double("1e23"), 1e23);
  cr_assert_eq(dec_double("-123.456e-7"), -123.456e-7);
  cr_assert_eq(dec_double("10000000000000000000.5"), 10000000000000000000.5);
  double z = dec_double("-0.0");
  cr_assert(z == 0.0 && signbit(z));
  keel_term t;
  cr_assert_eq(decode("1.5e999", 7, &t), KEEL_ERANGE);
  cr_assert_eq(decode("[-1e309]", 8, &t), KEEL_ERANGE);
}

Test(json, random_decimals_match_strtod) {
  /* glibc's strtod is correctly rounded: it is the oracle for texts that
   * take the decoder's fast path as well as those that do not. */
  uint64_t x = 0x853c49e6748fea9bu;
  char text[64];
  for (int i = 0; i < 30000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int ni = 1 + (int)(x % 17), nf = (int)(x >> 8 & 7), e = (int)(x >> 16 & 63);
    uint64_t m = x >> 24;
    int n = snprintf(text, sizeof text, "%s%.*llu", x >> 62 & 1 ? "-" : "", ni,
                     (unsigned long long)(m % 100000000000000000u));
    if (text[n - ni] == '0' && ni > 1)
      text[n - ni] = '1';
    if (nf > 0)
      n += snprintf(text + n, sizeof text - (size_t)n, ".%.*llu", nf,
                    (unsigned long long)(x % 10000000u));
    if (nf == 0 || x >> 61 & 1)
      n += snprintf(text + n, sizeof text - (size_t)n, "e%d", e - 32);
    double got = dec_double(text), want = strtod(text, NULL);
    cr_assert_eq(memcmp(&got, &want, sizeof got), 0, "%s", text);
  }
}

static keel_term map_get(keel_term m, const char *key) {
  keel_term v = KEEL_NONE;
  cr_assert_eq(keel_map_get(m, bin(key), &v), KEEL_OK, "key %s", key);
  return v;
}

static void assert_bin(keel_term t, const char *bytes, size_t len) {
  cr_assert(keel_is_binary(t));
  size_t n;
  const uint8_t *d = keel_binary_data(t, &n);
  cr_assert_eq(n, len);
  cr_assert_eq(memcmp(d, bytes, len), 0);
}

Test(json, strings_unescape) {
  assert_bin(dec_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), "\"\\/\b\f\n\r\t", 8);
  assert_bin(dec_ok("\"\\u0060\\u012a\\u12AB\""), "`\xc4\xaa\xe1\x8a\xab", 6);
  assert_bin(dec_ok("\"\\uD801\\udc37\""), "\xf0\x90\x90\xb7", 4);
  assert_bin(dec_ok("\"\\uDBFF\\uDFFF\""), "\xf4\x8f\xbf\xbf", 4);
  assert_bin(dec_ok("\"a\\u0000b\""), "a\0b", 3);
  assert_bin(dec_ok("\"\xe2\x82\xac\""), "\xe2\x82\xac", 3);
  /* Long enough to leave the heap (> KEEL_HEAP_BIN_MAX bytes). */
  char text[302], want[300];
  text[0] = '"';
  for (int i = 0; i < 300; i++)
    text[1 + i] = want[i] = (char)('a' + i % 26);
  text[301] = '"';
  keel_term t;
  cr_assert_eq(decode(text, sizeof text, &t), KEEL_OK);
  assert_bin(t, want, 300);
}

Test(json, objects_become_maps_and_last_key_wins) {
  keel_term m = dec_ok("{\"b\":1,\"a\":[true,{\"x\":null}],\"b\":\"c\"}");
  cr_assert(keel_is_map(m));
  cr_assert_eq(keel_map_size(m), 2);
  assert_bin(map_get(m, "b"), "c", 1);
  keel_term a = map_get(m, "a");
  size_t n;
  cr_assert_eq(keel_list_length(a, &n), KEEL_OK);
  cr_assert_eq(n, 2);
  cr_assert_eq(keel_hd(a), KEEL_ATOM(TRUE));
  cr_assert_eq(map_get(keel_hd(keel_tl(a)), "x"), KEEL_ATOM(NULL));
  keel_term k = keel_map_new(&h);
  cr_assert_eq(keel_map_get(dec_ok("{\"\":0}"), bin(""), &k), KEEL_OK);
  cr_assert_eq(k, keel_small(0));
}

Test(json, many_keys) {
  /* 2000 distinct keys plus one repeat of each even key. */
  keel_buf b;
  keel_buf_init(&b);
  keel_buf_putc(&b, '{');
  for (int i = 0; i < 2000; i++)
    keel_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
  for (int i = 0; i < 2000; i += 2)
    keel_buf_printf(&b, ",\"k%d\":%d", i, -i);
  keel_buf_putc(&b, '}');
  keel_term m;
  cr_assert_eq(decode((char *)b.data, b.len, &m), KEEL_OK);
  keel_buf_free(&b);
  cr_assert_eq(keel_map_size(m), 2000);
  char key[16];
  for (int i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    cr_assert_eq(map_get(m, key), keel_small(i % 2 ? i : -i));
  }
}

Test(json, full_fixed_heap_is_enomem) {
  /* Every heap size from 0 words up fails cleanly with KEEL_ENOMEM until
   * the document fits, and from then on decodes to the same term. */
  static uint64_t words[128];
  const char *text = "[\"a fairly long string\",[1,2,3,4,5,6,7,8,9,10],"
                     "{\"k\":1.5,\"j\":123456789012345678901234567890}]";
  keel_term want = dec_ok(text);
  size_t fits = 0;
  for (size_t n = 0; n <= 128; n++) {
    keel_heap fixed;
    keel_heap_init_fixed(&fixed, words, n);
    keel_term t = KEEL_NONE;
    int rc = keel_json_decode(&fixed, text, strlen(text), &t);
    if (fits == 0 && rc == KEEL_OK)
      fits = n;
    if (fits == 0) {
      cr_assert_eq(rc, KEEL_ENOMEM, "%zu words: %s", n, keel_err_name(rc));
      cr_assert_eq(t, KEEL_NONE);
    } else {
      cr_assert_eq(rc, KEEL_OK, "%zu words", n);
      cr_assert(keel_eq_exact(t, want));
    }
    keel_heap_destroy(&fixed);
  }
  cr_assert_gt(fits, 10);
  cr_assert_lt(fits, 128);
}

/* ---- nesting limit ----------------------------------------------------- */

static char *nested(size_t depth, const char *open, const char *close,
                    size_t *len) {
  size_t no = strlen(open), nc = strlen(close);
  char *s = malloc(depth * (no + nc) + 2);
  cr_assert_not_null(s);
  size_t k = 0;
  for (size_t i = 0; i < depth; i++, k += no)
    memcpy(s + k, open, no);
  s[k++] = '1';
  for (size_t i = 0; i < depth; i++, k += nc)
    memcpy(s + k, close, nc);
  *len = k;
  return s;
}

Test(json, nesting_limit) {
  size_t len;
  keel_term t;
  char *s = nested(KEEL_JSON_MAX_DEPTH, "[", "]", &len);
  cr_assert_eq(decode(s, len, &t), KEEL_OK);
  for (int i = 0; i < KEEL_JSON_MAX_DEPTH; i++) {
    cr_assert(keel_is_cons(t));
    t = keel_hd(t);
  }
  cr_assert_eq(t, keel_small(1));
  free(s);
  s = nested(KEEL_JSON_MAX_DEPTH + 1, "[", "]", &len);
  cr_assert_eq(decode(s, len, &t), KEEL_ELIMIT);
  free(s);
  s = nested(KEEL_JSON_MAX_DEPTH, "{\"a\":", "}", &len);
  cr_assert_eq(decode(s, len, &t), KEEL_OK);
  free(s);
  s = nested(KEEL_JSON_MAX_DEPTH + 1, "{\"a\":", "}", &len);
  cr_assert_eq(decode(s, len, &t), KEEL_ELIMIT);
  free(s);
  /* Empty containers at the limit still count as one level. */
  s = nested(KEEL_JSON_MAX_DEPTH, "[", "]", &len);
  s[KEEL_JSON_MAX_DEPTH] = ']'; /* 512 '[' then 512 ']' */
  cr_assert_eq(decode(s, len - 1, &t), KEEL_OK);
  free(s);
  /* A megabyte of '[' fails cleanly, without recursion. */
  size_t big = 1 << 20;
  s = malloc(big);
  memset(s, '[', big);
  cr_assert_eq(decode(s, big, &t), KEEL_ELIMIT);
  free(s);
}

/* ---- encoder ----------------------------------------------------------- */

static void assert_enc(keel_term t, int pretty, const char *want) {
  char *got = enc_ok(t, pretty);
  cr_assert_str_eq(got, want);
  free(got);
}

Test(json, encodes_scalars) {
  assert_enc(KEEL_ATOM(TRUE), 0, "true");
  assert_enc(KEEL_ATOM(FALSE), 0, "false");
  assert_enc(KEEL_ATOM(NULL), 0, "null");
  assert_enc(keel_atom("hello world"), 0, "\"hello world\"");
  assert_enc(keel_small(-42), 0, "-42");
  assert_enc(keel_int(&h, INT64_MIN), 0, "-9223372036854775808");
  assert_enc(keel_uint(&h, UINT64_MAX), 0, "18446744073709551615");
  assert_enc(KEEL_NIL, 0, "[]");
  assert_enc(keel_map_new(&h), 0, "{}");
  assert_enc(bin(""), 0, "\"\"");
  assert_enc(keel_binary(&h, "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f\0", 15), 0,
             "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\\u0000\"");
  assert_enc(bin("\xe2\x82\xac\xf0\x9d\x84\x9e"), 0,
             "\"\xe2\x82\xac\xf0\x9d\x84\x9e\"");
}

Test(json, encodes_shared_and_sub_binaries) {
  char text[200];
  for (int i = 0; i < 200; i++)
    text[i] = (char)('A' + i % 26);
  keel_term big = keel_binary(&h, text, sizeof text);
  keel_term sub = keel_sub_binary(&h, big, 100, 3);
  cr_assert_neq(sub, KEEL_NONE);
  assert_enc(sub, 0, "\"WXY\"");
  char *s = enc_ok(big, 0);
  cr_assert_eq(strlen(s), 202);
  cr_assert_eq(memcmp(s + 1, text, 200), 0);
  free(s);
}

Test(json, encodes_big_integers) {
  const char *d = "-237462374673276894279832749832423479823246327846";
  keel_term t;
  cr_assert_eq(keel_integer_parse(&h, d, strlen(d), 10, &t), KEEL_OK);
  assert_enc(t, 0, d);
  assert_enc(t, 1, d);
}

Test(json, encodes_floats_shortest) {
  assert_enc(keel_float(&h, 0.1), 0, "0.1");
  assert_enc(keel_float(&h, 1.0), 0, "1.0");
  assert_enc(keel_float(&h, -0.0), 0, "-0.0");
  assert_enc(keel_float(&h, 1e100), 0, "1e+100");
  assert_enc(keel_float(&h, 0.30000000000000004), 0, "0.30000000000000004");
  assert_enc(keel_float(&h, 1.7976931348623157e308), 0,
             "1.7976931348623157e+308");
  assert_enc(keel_float(&h, 123456789012.0), 0, "123456789012.0");
  /* Random bit patterns: the text reads back as the same double and as a
   * float term, and uses no more than 17 significant digits. */
  uint64_t s = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 20000; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    double v;
    memcpy(&v, &s, sizeof v);
    if (!isfinite(v))
      continue;
    char *txt = enc_ok(keel_float(&h, v), 0);
    cr_assert_eq(strtod(txt, NULL), v, "%s", txt);
    cr_assert(strpbrk(txt, ".e") != NULL, "%s", txt);
    double back = NAN;
    keel_term t = dec_ok(txt);
    cr_assert_eq(keel_get_double(t, &back), KEEL_OK);
    cr_assert_eq(memcmp(&back, &v, sizeof v), 0, "%s", txt);
    free(txt);
  }
}

Test(json, encodes_containers_in_map_order) {
  keel_term keys[] = {bin("b"), keel_atom("a"), keel_small(7), bin("a")};
  keel_term xs[] = {keel_small(1), bin("x"), KEEL_NIL};
  keel_term vals[] = {keel_list_from(&h, 3, xs), KEEL_ATOM(NULL),
                      keel_map_new(&h), KEEL_ATOM(TRUE)};
  keel_term m = keel_map_from(&h, 4, keys, vals);
  /* Map order: integers, then atoms, then binaries. */
  assert_enc(m, 0, "{\"7\":{},\"a\":null,\"a\":true,\"b\":[1,\"x\",[]]}");
  assert_enc(m, 1,
             "{\n  \"7\": {},\n  \"a\": null,\n  \"a\": true,\n"
             "  \"b\": [\n    1,\n    \"x\",\n    []\n  ]\n}");
  keel_term big;
  cr_assert_eq(keel_integer_parse(&h, "-100000000000000000000", 22, 10, &big),
               KEEL_OK);
  keel_term k2[] = {big}, v2[] = {keel_small(0)};
  assert_enc(keel_map_from(&h, 1, k2, v2), 0, "{\"-100000000000000000000\":0}");
}

static void assert_badarg(keel_term t) {
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_buf_append(&b, "keep", 4), KEEL_OK);
  cr_assert_eq(keel_json_encode(&b, t, NULL), KEEL_EBADARG);
  cr_assert_eq(b.len, 4, "output not restored");
  cr_assert_eq(memcmp(b.data, "keep", 4), 0);
  keel_buf_free(&b);
}

Test(json, rejects_unrepresentable_terms) {
  assert_badarg(keel_tuple(&h, 1, keel_small(1)));
  assert_badarg(keel_pid_local(5));
  assert_badarg(keel_cons(&h, keel_small(1), keel_small(2)));
  keel_term xs[] = {keel_small(1), keel_small(2), bin("long enough")};
  assert_badarg(keel_list_from_tail(&h, 3, xs, bin("tail")));
  assert_badarg(bin("\xff"));
  assert_badarg(bin("ok\xed\xa0\x80"));
  assert_badarg(bin("\xe2\x82"));
  assert_badarg(keel_bitstring(&h, "\xff", 7));
  assert_badarg(keel_export_fun(&h, keel_atom("m"), keel_atom("f"), 1));
  keel_term fk[] = {keel_float(&h, 1.5)}, v[] = {keel_small(1)};
  assert_badarg(keel_map_from(&h, 1, fk, v));
  keel_term tk[] = {keel_tuple(&h, 0)};
  assert_badarg(keel_map_from(&h, 1, tk, v));
  keel_term bk[] = {bin("\xc0\xaf")};
  assert_badarg(keel_map_from(&h, 1, bk, v));
  /* Deep inside a container: the partial output is dropped too. */
  keel_term inner[] = {keel_small(1), keel_tuple(&h, 0)};
  keel_term l = keel_list_from(&h, 2, inner);
  keel_term ks[] = {bin("a")}, vs[] = {l};
  assert_badarg(keel_map_from(&h, 1, ks, vs));
}

Test(json, encoder_is_iterative) {
  /* 200000 nested lists: far deeper than any C stack would allow for a
   * recursive encoder. Decoding the result must hit the depth limit. */
  size_t depth = 200000;
  keel_term t = keel_small(1);
  for (size_t i = 0; i < depth; i++)
    t = keel_cons(&h, t, KEEL_NIL);
  char *s = enc_ok(t, 0);
  size_t len = strlen(s);
  cr_assert_eq(len, 2 * depth + 1);
  cr_assert_eq(s[0], '[');
  cr_assert_eq(s[depth], '1');
  cr_assert_eq(s[len - 1], ']');
  keel_term back;
  cr_assert_eq(decode(s, len, &back), KEEL_ELIMIT);
  free(s);
}

/* ---- random round trips ------------------------------------------------ */

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t next(rng *r) {
  uint64_t x = r->s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return r->s = x;
}

static uint32_t pick(rng *r, uint32_t n) {
  return (uint32_t)(next(r) % n);
}

/* Random valid UTF-8 text including quotes, backslashes, controls and
 * characters of every encoded length. */
static keel_term rand_binary(rng *r) {
  static const uint32_t special[] = {'"',    '\\',   '/',     0,
                                     '\n',   0x1f,   0x7f,    0xe9,
                                     0x20ac, 0xffff, 0x1f600, 0x10ffff};
  uint8_t buf[400];
  size_t n = 0, want = pick(r, 4) == 0 ? pick(r, 90) : pick(r, 12);
  for (size_t i = 0; i < want; i++) {
    uint32_t cp;
    switch (pick(r, 4)) {
    case 0:
      cp = special[pick(r, sizeof special / sizeof special[0])];
      break;
    case 1:
      cp = 0x80 + pick(r, 0x10ffff - 0x80);
      if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 'x';
      break;
    default:
      cp = 0x20 + pick(r, 0x5f);
    }
    uint8_t *o = buf + n;
    if (cp < 0x80) {
      o[0] = (uint8_t)cp, n += 1;
    } else if (cp < 0x800) {
      o[0] = (uint8_t)(0xc0 | cp >> 6), o[1] = (uint8_t)(0x80 | (cp & 63));
      n += 2;
    } else if (cp < 0x10000) {
      o[0] = (uint8_t)(0xe0 | cp >> 12);
      o[1] = (uint8_t)(0x80 | (cp >> 6 & 63));
      o[2] = (uint8_t)(0x80 | (cp & 63));
      n += 3;
    } else {
      o[0] = (uint8_t)(0xf0 | cp >> 18);
      o[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
      o[2] = (uint8_t)(0x80 | (cp >> 6 & 63));
      o[3] = (uint8_t)(0x80 | (cp & 63));
      n += 4;
    }
  }
  return keel_binary(&h, buf, n);
}

static keel_term rand_number(rng *r) {
  switch (pick(r, 4)) {
  case 0:
    return keel_small((int64_t)pick(r, 2001) - 1000);
  case 1:
    return keel_int(&h, (int64_t)next(r));
  case 2: {
    uint64_t limbs[4] = {next(r), next(r), next(r), next(r)};
    return keel_bigint(&h, pick(r, 2), limbs, 1 + pick(r, 4));
  }
  default: {
    double v;
    do {
      uint64_t bits = next(r);
      memcpy(&v, &bits, sizeof v);
    } while (!isfinite(v));
    return keel_float(&h, pick(r, 2) ? v : (double)(int32_t)next(r) / 64);
  }
  }
}

static keel_term rand_term(rng *r, int depth) {
  uint32_t k = pick(r, depth > 0 ? 9 : 6);
  static const keel_term lits[] = {KEEL_ATOM(TRUE), KEEL_ATOM(FALSE),
                                   KEEL_ATOM(NULL)};
  if (k < 2)
    return rand_number(r);
  if (k < 4)
    return rand_binary(r);
  if (k < 6)
    return lits[pick(r, 3)];
  keel_term items[8], vals[8];
  size_t n = pick(r, 9);
  for (size_t i = 0; i < n; i++) {
    items[i] = rand_binary(r);
    vals[i] = rand_term(r, depth - 1);
  }
  if (k < 8)
    return keel_map_from(&h, n, items, vals);
  return keel_list_from(&h, n, vals);
}

Test(json, random_terms_round_trip) {
  rng r = {0x2545f4914f6cdd1du};
  for (int i = 0; i < 1500; i++) {
    keel_term t = rand_term(&r, 1 + pick(&r, 5));
    cr_assert_neq(t, KEEL_NONE);
    for (int pretty = 0; pretty < 2; pretty++) {
      keel_buf b;
      keel_buf_init(&b);
      keel_json_opts o = {pretty};
      cr_assert_eq(keel_json_encode(&b, t, &o), KEEL_OK);
      keel_term back = KEEL_NONE;
      int rc = decode((char *)b.data, b.len, &back);
      cr_assert_eq(rc, KEEL_OK, "case %d: %s on %.*s", i, keel_err_name(rc),
                   (int)b.len, (char *)b.data);
      cr_assert(keel_eq_exact(back, t), "case %d differs: %.*s", i, (int)b.len,
                (char *)b.data);
      keel_buf_free(&b);
    }
  }
}

Test(json, atom_keys_decode_as_binaries) {
  keel_term keys[] = {keel_atom("k"), keel_small(12)};
  keel_term vals[] = {keel_atom("v"), KEEL_ATOM(TRUE)};
  char *s = enc_ok(keel_map_from(&h, 2, keys, vals), 0);
  cr_assert_str_eq(s, "{\"12\":true,\"k\":\"v\"}");
  keel_term m = dec_ok(s);
  free(s);
  assert_bin(map_get(m, "k"), "v", 1);
  cr_assert_eq(map_get(m, "12"), KEEL_ATOM(TRUE));
}
