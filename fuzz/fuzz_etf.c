/*
 * fuzz_etf.c - libFuzzer target for the ETF decoder.
 *
 * Decodes the input in safe and unsafe mode; whenever decoding succeeds,
 * the term is re-encoded, decoded again and must be exactly equal, and the
 * re-encoding must be as long as keel_etf_size() says. Any crash, sanitizer
 * report or failed check is a finding.
 */
#include <stdint.h>
#include <stdlib.h>

#include "keel/etf.h"
#include "keel/term.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(keel_term t) {
  keel_buf b;
  keel_buf_init(&b);
  if (keel_etf_encode(&b, t, NULL) != KEEL_OK)
    abort();
  if (keel_etf_size(t) != (long long)b.len - 1)
    abort();
  keel_heap h2;
  keel_heap_init(&h2);
  keel_term back;
  size_t used = 0;
  if (keel_etf_decode(&h2, b.data, b.len, &used, &back, NULL) != KEEL_OK ||
      used != b.len || !keel_eq_exact(back, t))
    abort();
  keel_heap_destroy(&h2);
  keel_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const keel_etf_decode_opts safe = {.safe = 1,
                                            .max_uncompressed = 1 << 20};
  static const keel_etf_decode_opts unsafe = {.safe = 0,
                                              .max_uncompressed = 1 << 20};
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  size_t used = 0;
  if (keel_etf_decode(&h, data, size, &used, &t, &safe) == KEEL_OK) {
    if (used > size)
      abort();
    check_round_trip(t);
  }
  keel_heap_destroy(&h);
  keel_heap_init(&h);
  if (keel_etf_decode(&h, data, size, &used, &t, &unsafe) == KEEL_OK) {
    if (used > size)
      abort();
    check_round_trip(t);
  }
  keel_heap_destroy(&h);
  return 0;
}
