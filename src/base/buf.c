/* buf.c - growable byte buffer. */
#include "keel/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/error.h"

void keel_buf_init(keel_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void keel_buf_free(keel_buf *b) {
  free(b->data);
  keel_buf_init(b);
}

int keel_buf_reserve(keel_buf *b, size_t extra) {
  if (extra <= b->cap - b->len)
    return KEEL_OK;
  if (extra > SIZE_MAX / 2 - b->len)
    return KEEL_ENOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (p == NULL)
    return KEEL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return KEEL_OK;
}

int keel_buf_append(keel_buf *b, const void *data, size_t n) {
  if (n == 0)
    return KEEL_OK;
  int rc = keel_buf_reserve(b, n);
  if (rc != KEEL_OK)
    return rc;
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return KEEL_OK;
}

int keel_buf_putc(keel_buf *b, uint8_t c) {
  if (b->len == b->cap && keel_buf_reserve(b, 1) != KEEL_OK)
    return KEEL_ENOMEM;
  b->data[b->len++] = c;
  return KEEL_OK;
}

int keel_buf_printf(keel_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return KEEL_EINVAL;
  if ((size_t)n < sizeof small)
    return keel_buf_append(b, small, (size_t)n);
  /* Too long for the scratch buffer: format straight into the buffer. */
  int rc = keel_buf_reserve(b, (size_t)n + 1);
  if (rc != KEEL_OK)
    return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return KEEL_OK;
}

uint8_t *keel_buf_take(keel_buf *b, size_t *len) {
  uint8_t *p = b->data;
  if (len != NULL)
    *len = b->len;
  keel_buf_init(b);
  return p;
}
