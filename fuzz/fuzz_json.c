/* libFuzzer target for the JSON codec.
 *
 * Decodes the input; whatever is accepted must encode (compact and pretty)
 * and decode again to an exactly equal term. Rejections must be one of the
 * documented error codes. */
#include <stdint.h>
#include <stdlib.h>

#include "keel/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static void round_trip(keel_term t, int pretty) {
  keel_buf b;
  keel_buf_init(&b);
  keel_json_opts o = {pretty};
  check(keel_json_encode(&b, t, &o) == KEEL_OK);
  keel_heap h2;
  keel_heap_init(&h2);
  keel_term back = KEEL_NONE;
  check(keel_json_decode(&h2, (const char *)b.data, b.len, &back) == KEEL_OK);
  check(keel_eq_exact(back, t));
  keel_heap_destroy(&h2);
  keel_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t = KEEL_NONE;
  int rc = keel_json_decode(&h, (const char *)data, size, &t);
  if (rc == KEEL_OK) {
    round_trip(t, 0);
    round_trip(t, 1);
  } else {
    check(rc == KEEL_EPARSE || rc == KEEL_ELIMIT || rc == KEEL_ERANGE ||
          rc == KEEL_ENOMEM);
  }
  keel_heap_destroy(&h);
  return 0;
}
