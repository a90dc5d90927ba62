/*
 * build.c - terms from Erlang syntax with '~' placeholders (keel_build).
 *
 * The format is parsed by the common term parser (parse.c) in builder
 * mode: each directive consumes its C arguments in order and becomes the
 * corresponding term, anywhere a term may appear.
 */
#include <string.h>

#include "term/text_internal.h"

int keel_build_v(keel_heap *h, keel_term *out, const char *fmt, va_list ap) {
  if (h == NULL || out == NULL || fmt == NULL)
    return KEEL_EINVAL;
  va_list cp;
  va_copy(cp, ap);
  keel__parse_mode mode = {&cp, NULL};
  int rc = keel__parse(h, fmt, strlen(fmt), out, NULL, &mode);
  va_end(cp);
  if (rc < 0)
    *out = KEEL_NONE;
  return rc;
}

keel_term keel_build(keel_heap *h, const char *fmt, ...) {
  va_list ap;
  keel_term t;
  va_start(ap, fmt);
  int rc = keel_build_v(h, &t, fmt, ap);
  va_end(ap);
  return rc < 0 ? KEEL_NONE : t;
}
