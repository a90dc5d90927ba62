/* Stackful fibers, step 1: the context switch (fiber_ctx.c) and the stack
 * pool (stack_pool.c). Exact interleavings of a main context and several
 * fibers, callee-saved registers and FP control state across switches,
 * deep recursion on a fiber stack, and 10k fibers through a pool with a
 * bounded cache. Prints the cost of a switch. */
#include <criterion/criterion.h>
#include <fenv.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/error.h"
#include "runtime/fiber_ctx.h"
#include "runtime/stack_pool.h"

#if KEEL_HAVE_FIBERS

/* A pool of `size`-byte stacks (0: the default) without per-thread caches,
 * and a stack from it (NULL on failure). */
static keel__stack_pool *test_pool(size_t size) {
  keel__stack_pool_opts o = {.stack_size = size};
  return keel__stack_pool_new(&o);
}

static keel__stack *test_stack(keel__stack_pool *pool) {
  keel__stack *st = NULL;
  return keel__stack_alloc(pool, KEEL_STACK_NO_CACHE, &st) == KEEL_OK ? st
                                                                      : NULL;
}

static keel__ctx main_ctx;

/* ---- ping-pong: exact interleaving ------------------------------------- */

#define NFIB 4
#define ROUNDS 5
#define LOG_MAX 256

struct pp {
  keel__ctx ctx[NFIB];
  int log[LOG_MAX]; /* fiber i in round r logs 1000 + 100 * i + r */
  int nlog;
  int value; /* passed main -> fiber -> main */
  int finished;
};
static struct pp pp;

static void pp_log(int v) {
  if (pp.nlog < LOG_MAX)
    pp.log[pp.nlog++] = v;
}

static void pp_fiber(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int r = 0; r < ROUNDS; r++) {
    pp_log(1000 + 100 * id + r);
    pp.value = pp.value * 2 + id; /* main checks this on return */
    keel__ctx_switch(&pp.ctx[id], &main_ctx);
  }
  pp.finished++;
  keel__ctx_exit_to(&pp.ctx[id], &main_ctx);
}

Test(fiber_ctx, ping_pong_interleaving) {
  keel__stack_pool *pool = test_pool(0);
  cr_assert_not_null(pool);
  keel__stack *st[NFIB];
  memset(&pp, 0, sizeof pp);
  cr_assert_eq(keel__ctx_init_current(&main_ctx), KEEL_OK);
  for (int i = 0; i < NFIB; i++) {
    st[i] = test_stack(pool);
    cr_assert_not_null(st[i]);
    cr_assert_eq(keel__ctx_make(&pp.ctx[i], st[i]->lo, st[i]->size, pp_fiber,
                                (void *)(intptr_t)i),
                 KEEL_OK);
  }
  int expect[LOG_MAX], n = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < NFIB; i++) {
      pp_log(r * 10 + i); /* main's own entry before the switch */
      expect[n++] = r * 10 + i;
      expect[n++] = 1000 + 100 * i + r;
      pp.value = r + i;
      cr_assert_eq(keel__ctx_switch(&main_ctx, &pp.ctx[i]), KEEL_OK);
      cr_assert_eq(pp.value, (r + i) * 2 + i, "round %d fiber %d", r, i);
    }
  }
  for (int i = 0; i < NFIB; i++) {
    cr_assert_eq(keel__ctx_switch(&main_ctx, &pp.ctx[i]), KEEL_OK);
    cr_assert_eq(pp.finished, i + 1);
  }
  cr_assert_eq(pp.nlog, n);
  for (int k = 0; k < n; k++)
    cr_assert_eq(pp.log[k], expect[k], "log entry %d: %d, expected %d", k,
                 pp.log[k], expect[k]);
  for (int i = 0; i < NFIB; i++) {
    keel__ctx_destroy(&pp.ctx[i]);
    keel__stack_free(pool, KEEL_STACK_NO_CACHE, st[i], false);
  }
  keel__stack_pool_stats s = keel__stack_pool_get_stats(pool);
  cr_assert_eq(s.live, 0);
  keel__stack_pool_destroy(pool);
}

/* ---- registers and FP state ------------------------------------------- */

static keel__ctx reg_ctx;
static volatile int reg_fiber_ok = 1;
static volatile int reg_running = 1;

/* Overwrite every callee-saved register, then switch away. */
static void clobber_and_yield(void) {
#if defined(__x86_64__)
  __asm__ volatile("movq $-1, %%rbx\n\tmovq $-1, %%r12\n\tmovq $-1, %%r13\n\t"
                   "movq $-1, %%r14\n\tmovq $-1, %%r15\n\t" ::
                       : "rbx", "r12", "r13", "r14", "r15");
#elif defined(__aarch64__)
  __asm__ volatile("mov x19, #-1\n\tmov x20, #-1\n\tmov x21, #-1\n\t"
                   "mov x22, #-1\n\tmov x23, #-1\n\tmov x24, #-1\n\t"
                   "mov x25, #-1\n\tmov x26, #-1\n\tmov x27, #-1\n\t"
                   "mov x28, #-1\n\tfmov d8, xzr\n\tfmov d9, xzr\n\t"
                   "fmov d10, xzr\n\tfmov d11, xzr\n\tfmov d12, xzr\n\t"
                   "fmov d13, xzr\n\tfmov d14, xzr\n\tfmov d15, xzr\n\t" ::
                       : "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26",
                         "x27", "x28", "d8", "d9", "d10", "d11", "d12", "d13",
                         "d14", "d15");
#endif
  keel__ctx_switch(&reg_ctx, &main_ctx);
}

static void reg_fiber(void *arg) {
  (void)arg;
  while (reg_running) {
    /* FP: values computed before and after a switch agree, and this
     * fiber keeps its own rounding mode (main runs with FE_UPWARD). */
    volatile double a = 1.0, b = 3.0;
    volatile double before = a / b;
    if (fegetround() != FE_TONEAREST)
      reg_fiber_ok = 0;
    clobber_and_yield();
    volatile double after = a / b;
    if (before != after || fegetround() != FE_TONEAREST)
      reg_fiber_ok = 0;
  }
  keel__ctx_exit_to(&reg_ctx, &main_ctx);
}

static __attribute__((noinline)) void no_switch(keel__ctx *from,
                                                keel__ctx *to) {
  __asm__ volatile("" ::"r"(from), "r"(to) : "memory");
}

/* Accumulators live across the switch call: at -O2 they sit in callee-saved
 * registers. The same computation without switching is the oracle. */
static __attribute__((noinline, optimize("O2"))) void
mix(int switching, int iters, uint64_t out[6], double dout[4]) {
  uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
  double x = 1.5, y = 2.25, z = 3.125, w = 4.0625;
  for (int i = 0; i < iters; i++) {
    a = a * 6364136223846793005u + 1442695040888963407u;
    b ^= a >> 7;
    c += b * 31;
    d = (d << 3) ^ c;
    e += d ^ a;
    f ^= e + (uint64_t)i;
    x = x * 1.0001 + y;
    y = y * 0.9999 + z;
    z = z + w * 0.5;
    w = w * 1.0000001 + x * 1e-9;
    if (switching)
      keel__ctx_switch(&main_ctx, &reg_ctx);
    else
      no_switch(&main_ctx, &reg_ctx);
  }
  out[0] = a, out[1] = b, out[2] = c, out[3] = d, out[4] = e, out[5] = f;
  dout[0] = x, dout[1] = y, dout[2] = z, dout[3] = w;
}

Test(fiber_ctx, registers_and_fp_preserved) {
  keel__stack_pool *pool = test_pool(0);
  keel__stack *st = test_stack(pool);
  cr_assert_not_null(st);
  cr_assert_eq(keel__ctx_init_current(&main_ctx), KEEL_OK);
  cr_assert_eq(keel__ctx_make(&reg_ctx, st->lo, st->size, reg_fiber, NULL),
               KEEL_OK);
  uint64_t want[6], got[6];
  double dwant[4], dgot[4];
  cr_assert_eq(fesetround(FE_UPWARD), 0);
  mix(0, 100, want, dwant);
  mix(1, 100, got, dgot);
  cr_assert_eq(fegetround(), FE_UPWARD, "main's rounding mode was lost");
  cr_assert_eq(fesetround(FE_TONEAREST), 0);
  reg_running = 0;
  keel__ctx_switch(&main_ctx, &reg_ctx);
  cr_assert(reg_fiber_ok, "fiber saw its FP values or rounding mode change");
  for (int i = 0; i < 6; i++)
    cr_assert_eq(got[i], want[i], "integer accumulator %d", i);
  for (int i = 0; i < 4; i++)
    cr_assert(dgot[i] == dwant[i], "double accumulator %d", i);
  keel__ctx_destroy(&reg_ctx);
  keel__stack_free(pool, KEEL_STACK_NO_CACHE, st, false);
  keel__stack_pool_destroy(pool);
}

/* ---- deep recursion ---------------------------------------------------- */

static keel__ctx rec_ctx;
static uintptr_t rec_top, rec_limit;
static long rec_depth, rec_sum;

static __attribute__((noinline)) long recurse(long depth) {
  volatile char pad[128];
  pad[0] = (char)depth;
  pad[127] = pad[0];
  uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
  if (rec_top - fp >= rec_limit) {
    rec_depth = depth;
    return depth;
  }
  return depth + recurse(depth + 1) + (pad[127] - (char)depth);
}

static void rec_fiber(void *arg) {
  (void)arg;
  rec_sum = recurse(1);
  keel__ctx_exit_to(&rec_ctx, &main_ctx);
}

Test(fiber_ctx, deep_recursion_fits) {
  keel__stack_pool *pool = test_pool(256 * 1024);
  keel__stack *st = test_stack(pool);
  cr_assert_not_null(st);
  rec_top = (uintptr_t)st->lo + st->size;
  rec_limit = st->size * 3 / 4; /* stop with a quarter of the stack left */
  cr_assert_eq(keel__ctx_init_current(&main_ctx), KEEL_OK);
  cr_assert_eq(keel__ctx_make(&rec_ctx, st->lo, st->size, rec_fiber, NULL),
               KEEL_OK);
  keel__ctx_switch(&main_ctx, &rec_ctx);
  cr_assert_geq(rec_depth, 100, "recursion stopped at %ld", rec_depth);
  cr_assert_eq(rec_sum, rec_depth * (rec_depth + 1) / 2);
  cr_log_info("recursion depth %ld in %zu KiB", rec_depth, st->size / 1024);
  keel__ctx_destroy(&rec_ctx);
  keel__stack_free(pool, KEEL_STACK_NO_CACHE, st, false);
  keel__stack_pool_destroy(pool);
}

/* The stack pool itself (slabs, guards, caches, trimming, accounting) is
 * tested in test_stack_pool.c. */

/* ---- many fibers -------------------------------------------------------- */

#define MANY 10000
#define BATCH 50

static keel__ctx many_ctx[BATCH];
static long many_ran;

static void many_fiber(void *arg) {
  int i = (int)(intptr_t)arg;
  many_ran++;
  keel__ctx_exit_to(&many_ctx[i], &main_ctx);
}

Test(fiber_ctx, ten_thousand_fibers_no_leak) {
  /* One per-thread cache of 16 stacks, owned by this thread. */
  keel__stack_pool_opts o = {
      .stack_size = 16 * 1024, .ncaches = 1, .cache_max = 16};
  keel__stack_pool *pool = keel__stack_pool_new(&o);
  cr_assert_not_null(pool);
  cr_assert_eq(keel__ctx_init_current(&main_ctx), KEEL_OK);
  keel__stack *st[BATCH];
  size_t max_live = 0;
  for (int done = 0; done < MANY; done += BATCH) {
    for (int i = 0; i < BATCH; i++) {
      cr_assert_eq(keel__stack_alloc(pool, 0, &st[i]), KEEL_OK);
      cr_assert_eq(keel__ctx_make(&many_ctx[i], st[i]->lo, st[i]->size,
                                  many_fiber, (void *)(intptr_t)i),
                   KEEL_OK);
    }
    keel__stack_pool_stats s = keel__stack_pool_get_stats(pool);
    max_live = s.live > max_live ? s.live : max_live;
    for (int i = 0; i < BATCH; i++) {
      keel__ctx_switch(&main_ctx, &many_ctx[i]);
      keel__ctx_destroy(&many_ctx[i]);
      keel__stack_free(pool, 0, st[i], true);
    }
  }
  keel__stack_pool_stats s = keel__stack_pool_get_stats(pool);
  cr_assert_eq(many_ran, MANY);
  cr_assert_eq(s.live, 0);
  cr_assert_leq(s.cached, 16);
  cr_assert_eq(max_live, BATCH);
  cr_assert_eq(s.fresh + s.reused, MANY, "every allocation accounted for");
  /* Stacks are reused: never more fresh ones than the peak need plus one
   * cache refill. */
  cr_assert_leq(s.fresh, BATCH + 8, "fresh stacks %zu", s.fresh);
  keel__stack_pool_destroy(pool);
}

/* ---- bad arguments ------------------------------------------------------ */

static void never(void *arg) {
  (void)arg;
}

Test(fiber_ctx, bad_arguments) {
  keel__ctx c;
  char small[64];
  cr_assert_eq(keel__ctx_init_current(NULL), KEEL_EINVAL);
  cr_assert_eq(keel__ctx_make(NULL, small, sizeof small, never, NULL),
               KEEL_EINVAL);
  cr_assert_eq(keel__ctx_make(&c, small, sizeof small, never, NULL),
               KEEL_EINVAL);
  cr_assert_eq(keel__ctx_make(&c, NULL, 65536, never, NULL), KEEL_EINVAL);
  cr_assert_eq(keel__ctx_make(&c, small, 65536, NULL, NULL), KEEL_EINVAL);
  cr_assert_eq(keel__ctx_switch(NULL, &c), KEEL_EINVAL);
  cr_assert_eq(keel__ctx_switch(&c, &c), KEEL_EINVAL);
  cr_assert_eq(keel__ctx_exit_to(&c, NULL), KEEL_EINVAL);
  keel__ctx_destroy(NULL);
}

/* ---- switch cost (printed, not asserted) -------------------------------- */

static keel__ctx bench_ctx;
static volatile int bench_stop;

static void bench_fiber(void *arg) {
  (void)arg;
  while (!bench_stop)
    keel__ctx_switch(&bench_ctx, &main_ctx);
  keel__ctx_exit_to(&bench_ctx, &main_ctx);
}

Test(fiber_ctx, switch_cost) {
  keel__stack_pool *pool = test_pool(0);
  keel__stack *st = test_stack(pool);
  cr_assert_not_null(st);
  cr_assert_eq(keel__ctx_init_current(&main_ctx), KEEL_OK);
  cr_assert_eq(keel__ctx_make(&bench_ctx, st->lo, st->size, bench_fiber, NULL),
               KEEL_OK);
  const long n = 200000;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++)
    keel__ctx_switch(&main_ctx, &bench_ctx);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  bench_stop = 1;
  keel__ctx_switch(&main_ctx, &bench_ctx);
  double ns =
      (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  printf("fiber_ctx: %.1f ns per switch (%ld round trips)\n", ns / (2.0 * n),
         n);
  cr_assert(ns > 0);
  keel__ctx_destroy(&bench_ctx);
  keel__stack_free(pool, KEEL_STACK_NO_CACHE, st, false);
  keel__stack_pool_destroy(pool);
}

#else /* !KEEL_HAVE_FIBERS */

Test(fiber_ctx, unsupported_arch_reports) {
  keel__ctx c;
  char stack[8192];
  cr_assert_eq(keel__ctx_init_current(&c), KEEL_EUNSUPPORTED);
  cr_assert_eq(keel__ctx_make(&c, stack, sizeof stack, NULL, NULL),
               KEEL_EUNSUPPORTED);
  cr_assert_eq(keel__ctx_switch(&c, &c), KEEL_EUNSUPPORTED);
}

#endif
