/* libFuzzer target for the term text parser and printer.
 *
 * Parses the input; whatever is accepted must print (as ~p, as ~w and with
 * a depth limit, which must not crash), and the unlimited forms must parse
 * back to an exactly equal term. Rejections must be documented error
 * codes. Inputs without '~' are also compiled as patterns and matched
 * against the parsed term. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel/term.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static void round_trip(keel_term t, const keel_print_opts *o) {
  char *s = keel_print_alloc(t, o);
  check(s != NULL);
  keel_heap h2;
  keel_heap_init(&h2);
  keel_term back = KEEL_NONE;
  size_t used = 0;
  check(keel_parse(&h2, s, strlen(s), &back, &used) == KEEL_OK);
  check(used == strlen(s));
  check(keel_eq_exact(back, t));
  keel_heap_destroy(&h2);
  free(s);
}

static void as_pattern(const char *text, keel_term subject) {
  keel_pattern *p = NULL;
  if (strchr(text, '~') != NULL)
    return; /* directives would read arguments that are not there */
  int rc = keel_pattern_compile(&p, text);
  if (rc == KEEL_OK) {
    keel_term caps[256];
    check(keel_pattern_nvars(p) <= 256);
    (void)keel_match(p, subject, caps);
    keel_pattern_free(p);
  } else {
    check(rc == KEEL_EPARSE || rc == KEEL_EINVAL || rc == KEEL_ELIMIT ||
          rc == KEEL_ENOMEM || rc == KEEL_ESYSLIMIT);
    check(p == NULL);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t = KEEL_NONE;
  int rc = keel_parse(&h, (const char *)data, size, &t, NULL);
  if (rc == KEEL_OK) {
    keel_print_opts w = {.no_strings = true};
    keel_print_opts d = {.depth = 1 + (unsigned)(size % 7)};
    round_trip(t, NULL);
    round_trip(t, &w);
    char *s = keel_print_alloc(t, &d);
    check(s != NULL);
    free(s);
  } else {
    check(rc == KEEL_EPARSE || rc == KEEL_ELIMIT || rc == KEEL_ENOMEM ||
          rc == KEEL_ESYSLIMIT);
  }
  char *text = malloc(size + 1);
  if (text != NULL) {
    memcpy(text, data, size);
    text[size] = '\0';
    if (strlen(text) == size)
      as_pattern(text, rc == KEEL_OK ? t : keel_atom("none"));
    free(text);
  }
  keel_heap_destroy(&h);
  return 0;
}
