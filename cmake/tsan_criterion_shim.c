/*
 * tsan_criterion_shim.c - lets Criterion test binaries start under
 * ThreadSanitizer. Linked into tests only when KEEL_SANITIZE=thread.
 *
 * Criterion's sandbox (BoxFort) maps a shared arena at a random address
 * between 0x200000000000 and 0x600000000000, drawn with rand_r() and tried
 * 10 times. TSan reserves almost all of that range for shadow memory and
 * refuses fixed mappings outside its application ranges, so the binary
 * usually aborts with "Could not initialize inheritable arena". This file
 * interposes rand_r(): calls coming from libcriterion get offsets inside
 * TSan's mid application range (0x550000000000-0x568000000000, walking down
 * from its top, far above PIE binaries); every other caller gets glibc's
 * algorithm unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* BoxFort: base = 0x200000000000 + (rand_r() & 0x3fffff) * 2^24. */
#define ARENA_SLOT_TOP 0x367fffu  /* 0x567fff000000 */
#define ARENA_SLOT_COUNT 0x18000u /* down to 0x550000000000 */

/* glibc's rand_r() algorithm. */
static int glibc_rand_r(unsigned int *seed) {
  unsigned int next = *seed;
  unsigned int result;
  next = next * 1103515245u + 12345u;
  result = (next / 65536u) % 2048u;
  next = next * 1103515245u + 12345u;
  result = (result << 10) ^ ((next / 65536u) % 1024u);
  next = next * 1103515245u + 12345u;
  result = (result << 10) ^ ((next / 65536u) % 1024u);
  *seed = next;
  return (int)result;
}

int rand_r(unsigned int *seed) {
  static unsigned int tries;
  Dl_info info;
  if (dladdr(__builtin_return_address(0), &info) && info.dli_fname != NULL &&
      strstr(info.dli_fname, "libcriterion") != NULL) {
    unsigned int k = __atomic_fetch_add(&tries, 1u, __ATOMIC_RELAXED);
    return (int)(ARENA_SLOT_TOP - k % ARENA_SLOT_COUNT);
  }
  return glibc_rand_r(seed);
}
