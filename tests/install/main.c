/* Install test consumer: uses only the installed public headers. */
#include <keel/error.h>
#include <keel/term.h>
#include <keel/version.h>
#include <stdio.h>
#include <string.h>

/* Reports a failed check and returns 1. */
static int fail(const char *what) {
  fprintf(stderr, "keel consumer: %s\n", what);
  return 1;
}

int main(void) {
  if (strcmp(keel_version(), KEEL_VERSION_STRING) != 0)
    return fail("keel_version() differs from the installed header");
  if (keel_version_number() != KEEL_VERSION_NUMBER)
    return fail("keel_version_number() differs from the installed header");

  keel_heap h;
  keel_heap_init(&h);
  keel_term items[3] = {keel_small(1), keel_atom("two"),
                        keel_binary(&h, "three", 5)};
  keel_term list = keel_list_from(&h, 3, items);
  keel_term t = keel_tuple(&h, 2, keel_atom("ok"), list);
  int rc = 0;
  size_t len = 0;
  size_t blen = 0;
  if (!keel_is_tuple(t) || keel_tuple_arity(t) != 2)
    rc = fail("tuple");
  else if (keel_list_length(keel_tuple_get(t, 1), &len) != KEEL_OK || len != 3)
    rc = fail("list length");
  else if (keel_tuple_get(t, 0) != keel_atom("ok"))
    rc = fail("atoms are not interned");
  else if (keel_small_value(keel_hd(list)) != 1)
    rc = fail("small integer");
  else if (memcmp(keel_binary_data(items[2], &blen), "three", 5) != 0 ||
           blen != 5)
    rc = fail("binary");
  keel_heap_destroy(&h);
  if (rc == 0)
    printf("ok: keel %s\n", keel_version());
  return rc;
}
