/*
 * clock.c - monotonic time in nanoseconds.
 */
#include <time.h>

#include "keel/clock.h"

uint64_t keel_monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}
