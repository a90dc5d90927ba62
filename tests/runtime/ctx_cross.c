/* The fiber context switch, checked on its own so it can run where the
 * test framework does not: built for another architecture (aarch64) with
 * a cross compiler and run under user-mode emulation (scripts/
 * cross-ctx-test.sh). Three fibers ping-pong with main many times; each
 * keeps callee-saved integer and floating-point values live across its
 * switches (the compiler puts them in callee-saved registers), its own
 * rounding mode, and a deep call chain; the last one ends with
 * keel__ctx_exit_to. Prints "ctx: ok" and exits 0, or names the check
 * that failed and exits 1. */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "keel/error.h"
#include "runtime/fiber_ctx.h"

#define FIBERS 3
#define ROUNDS 10000
#define STACK (64 * 1024)

static keel__ctx main_ctx, fib[FIBERS];
static int failures;

static void fail(const char *what, int i) {
  fprintf(stderr, "ctx: %s (fiber %d)\n", what, i);
  failures++;
}

/* Recursion that keeps a value per frame, to use the fiber's stack. */
static uint64_t deep(int n, uint64_t acc) {
  volatile uint64_t here = acc * 31 + (uint64_t)n;
  if (n == 0)
    return here;
  return deep(n - 1, here) ^ here;
}

static void body(void *arg) {
  int i = (int)(intptr_t)arg;
  uint64_t a = 0x1111111111111111ull * (uint64_t)(i + 1), b = ~a;
  double x = 1.0 + i, y = 0.5;
  (void)fesetround(i == 1 ? FE_DOWNWARD : FE_TONEAREST);
  int want_round = fegetround();
  uint64_t d0 = deep(200, (uint64_t)i);
  for (int r = 0; r < ROUNDS; r++) {
    a += (uint64_t)r;
    b ^= a;
    x = x * 1.0000001 + y;
    if (keel__ctx_switch(&fib[i], &main_ctx) != KEEL_OK)
      fail("switch back to main", i);
    if (fegetround() != want_round)
      fail("rounding mode kept", i);
  }
  uint64_t a2 = 0x1111111111111111ull * (uint64_t)(i + 1), b2 = ~a2;
  double x2 = 1.0 + i;
  for (int r = 0; r < ROUNDS; r++) {
    a2 += (uint64_t)r;
    b2 ^= a2;
    x2 = x2 * 1.0000001 + y;
  }
  if (a != a2 || b != b2)
    fail("integer values kept across switches", i);
  if (x != x2)
    fail("floating-point values kept across switches", i);
  if (deep(200, (uint64_t)i) != d0)
    fail("stack contents", i);
  (void)keel__ctx_exit_to(&fib[i], &main_ctx);
  fail("resumed after exit", i);
}

int main(void) {
  if (!KEEL_HAVE_FIBERS) {
    puts("ctx: no fibers on this architecture");
    return 0;
  }
  static unsigned char stacks[FIBERS][STACK];
  if (keel__ctx_init_current(&main_ctx) != KEEL_OK)
    fail("init current", -1);
  for (int i = 0; i < FIBERS; i++)
    if (keel__ctx_make(&fib[i], stacks[i], STACK, body, (void *)(intptr_t)i) !=
        KEEL_OK)
      fail("make", i);
  (void)fesetround(FE_UPWARD);
  volatile double keep = 2.0 / 3.0;
  /* ROUNDS switches into each fiber, then one more to let it finish. */
  for (int r = 0; r <= ROUNDS; r++)
    for (int i = 0; i < FIBERS; i++)
      if (keel__ctx_switch(&main_ctx, &fib[i]) != KEEL_OK)
        fail("switch to fiber", i);
  if (fegetround() != FE_UPWARD)
    fail("main's rounding mode kept", -1);
  if (keep != 2.0 / 3.0)
    fail("main's value kept", -1);
  for (int i = 0; i < FIBERS; i++)
    keel__ctx_destroy(&fib[i]);
  if (failures != 0)
    return 1;
  puts("ctx: ok");
  return 0;
}
