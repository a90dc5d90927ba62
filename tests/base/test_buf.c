/* keel_buf and error names. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "keel/buf.h"
#include "keel/error.h"

Test(buf, append_grows_and_keeps_bytes) {
  keel_buf b;
  keel_buf_init(&b);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(keel_buf_putc(&b, (uint8_t)i), KEEL_OK);
  cr_assert_eq(b.len, 10000);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(b.data[i], (uint8_t)i);
  cr_assert_eq(keel_buf_append(&b, "abc", 3), KEEL_OK);
  cr_assert_eq(memcmp(b.data + 10000, "abc", 3), 0);
  cr_assert_eq(keel_buf_append(&b, NULL, 0), KEEL_OK);
  cr_assert_eq(keel_buf_reserve(&b, SIZE_MAX), KEEL_ENOMEM);
  cr_assert_eq(b.len, 10003);
  keel_buf_free(&b);
  cr_assert_null(b.data);
  cr_assert_eq(b.len, 0);
}

Test(buf, printf_short_and_long) {
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_buf_printf(&b, "%d-%s", 42, "x"), KEEL_OK);
  char big[1000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(keel_buf_printf(&b, "[%s]", big), KEEL_OK);
  cr_assert_eq(b.len, 4 + 1001);
  cr_assert_eq(memcmp(b.data, "42-x[q", 6), 0);
  cr_assert_eq(b.data[b.len - 1], ']');
  size_t n;
  uint8_t *p = keel_buf_take(&b, &n);
  cr_assert_eq(n, 1005);
  cr_assert_eq(b.len, 0);
  free(p);
}

Test(error, names_and_messages) {
  cr_assert_str_eq(keel_err_name(KEEL_EDECODE), "KEEL_EDECODE");
  cr_assert_str_eq(keel_err_name(KEEL_OK), "KEEL_OK");
  cr_assert_str_eq(keel_strerror(KEEL_ENOMEM), "out of memory");
  cr_assert_str_eq(keel_strerror(12345), "unknown error");
  cr_assert_str_eq(keel_err_name(-999), "KEEL_E?");
}
