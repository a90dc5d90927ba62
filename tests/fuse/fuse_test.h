/*
 * fuse_test.h - a test clock the fuse tests advance by hand. Header-only:
 * include once per test file.
 */
#ifndef KEEL_FUSE_TEST_H
#define KEEL_FUSE_TEST_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>

#include "keel/fuse.h"

typedef struct test_clock {
  _Atomic uint64_t ns;
} test_clock;

static inline uint64_t test_clock_read(void *arg) {
  return atomic_load(&((test_clock *)arg)->ns);
}

static inline void advance_ms(test_clock *c, uint64_t ms) {
  atomic_fetch_add(&c->ns, ms * 1000000u);
}

/* A set on clock c (starting at 1 s, so times are never 0). */
static inline keel_fuses *set_on(test_clock *c, uint64_t seed) {
  atomic_store(&c->ns, UINT64_C(1000000000));
  keel_fuses_opts o = {.clock = test_clock_read, .clock_arg = c, .seed = seed};
  keel_fuses *fs = NULL;
  cr_assert_eq(keel_fuses_create(&o, &fs), KEEL_OK);
  return fs;
}

static inline keel_fuse_opts standard(uint32_t max, uint64_t window_ms,
                                      uint64_t reset_ms) {
  keel_fuse_opts o = {.strategy = KEEL_FUSE_STANDARD,
                      .max_melts = max,
                      .window_ms = window_ms,
                      .reset_ms = reset_ms};
  return o;
}

#endif /* KEEL_FUSE_TEST_H */
