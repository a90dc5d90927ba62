/* Error codes: every KEEL_ERRNO_MAP entry has a distinct, non-empty name and
 * message, and unknown codes get the documented fallbacks. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <limits.h>
#include <string.h>

#include "keel/error.h"

typedef struct entry {
  const char *name; /* "KEEL_" + the X-macro name */
  int value;
  const char *msg;
} entry;

static const entry entries[] = {
#define KEEL_TEST_ENTRY_(name, value, msg) {"KEEL_" #name, (value), (msg)},
    KEEL_ERRNO_MAP(KEEL_TEST_ENTRY_)
#undef KEEL_TEST_ENTRY_
};

#define NENTRIES (sizeof entries / sizeof entries[0])

Test(error, every_code_has_its_name_and_message) {
  cr_assert_gt(NENTRIES, 1);
  for (size_t i = 0; i < NENTRIES; i++) {
    const char *name = keel_err_name(entries[i].value);
    const char *msg = keel_strerror(entries[i].value);
    cr_assert_not_null(name);
    cr_assert_not_null(msg);
    cr_expect_str_eq(name, entries[i].name);
    cr_expect_str_eq(msg, entries[i].msg);
    cr_expect_gt(strlen(msg), 0, "%s has an empty message", name);
    cr_expect_str_neq(msg, "unknown error", "%s", name);
    cr_expect_str_neq(name, "KEEL_E?");
    /* Names are C identifiers: KEEL_ then upper-case letters or digits. */
    cr_expect_eq(strncmp(name, "KEEL_", 5), 0, "%s", name);
    cr_expect_gt(strlen(name), 5, "%s", name);
    for (const char *p = name; *p; p++)
      cr_expect(isupper((unsigned char)*p) || isdigit((unsigned char)*p) ||
                    *p == '_',
                "%s", name);
  }
}

Test(error, codes_names_and_messages_are_distinct) {
  for (size_t i = 0; i < NENTRIES; i++)
    for (size_t j = i + 1; j < NENTRIES; j++) {
      cr_expect_neq(entries[i].value, entries[j].value, "%s and %s",
                    entries[i].name, entries[j].name);
      cr_expect_str_neq(keel_err_name(entries[i].value),
                        keel_err_name(entries[j].value));
      cr_expect_str_neq(keel_strerror(entries[i].value),
                        keel_strerror(entries[j].value));
    }
}

Test(error, success_is_zero_and_errors_are_negative) {
  cr_assert_eq(KEEL_OK, 0);
  cr_assert_str_eq(keel_err_name(0), "KEEL_OK");
  for (size_t i = 0; i < NENTRIES; i++)
    if (entries[i].value != KEEL_OK)
      cr_expect_lt(entries[i].value, 0, "%s", entries[i].name);
}

Test(error, numeric_values_are_stable) {
  /* The header makes the values part of the ABI. */
  cr_assert_eq(KEEL_ENOMEM, -1);
  cr_assert_eq(KEEL_EINVAL, -2);
  cr_assert_eq(KEEL_EBADARG, -3);
  cr_assert_eq(KEEL_EDECODE, -4);
  cr_assert_eq(KEEL_ELIMIT, -6);
  cr_assert_eq(KEEL_EPARSE, -10);
  cr_assert_eq(KEEL_ENOENT, -14);
  cr_assert_eq(KEEL_ENOPROC, -18);
}

Test(error, unknown_codes_get_fallbacks) {
  int lowest = 0;
  for (size_t i = 0; i < NENTRIES; i++)
    if (entries[i].value < lowest)
      lowest = entries[i].value;
  const int unknown[] = {1, 42, lowest - 1, lowest - 1000, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *name = keel_err_name(unknown[i]);
    const char *msg = keel_strerror(unknown[i]);
    cr_assert_not_null(name);
    cr_assert_not_null(msg);
    cr_expect_str_eq(name, "KEEL_E?", "code %d", unknown[i]);
    cr_expect_str_eq(msg, "unknown error", "code %d", unknown[i]);
  }
  /* Every value between the lowest and zero that the map does not list is
   * unknown too. */
  for (int v = lowest; v <= 0; v++) {
    bool listed = false;
    for (size_t i = 0; i < NENTRIES; i++)
      listed = listed || entries[i].value == v;
    if (!listed)
      cr_expect_str_eq(keel_err_name(v), "KEEL_E?", "code %d", v);
  }
}

Test(error, strings_are_static) {
  /* Same pointer on every call: static strings, safe to keep and share. */
  for (size_t i = 0; i < NENTRIES; i++) {
    cr_expect_eq(keel_err_name(entries[i].value),
                 keel_err_name(entries[i].value));
    cr_expect_eq(keel_strerror(entries[i].value),
                 keel_strerror(entries[i].value));
  }
  cr_expect_eq(keel_strerror(7777), keel_strerror(7777));
}
