/*
 * fiber_ctx.c - the stackful context switch (see fiber_ctx.h).
 *
 * The switch itself is a small assembly routine, keel__ctx_swap(save_sp,
 * new_sp, from): it pushes the callee-saved registers (and the FP control
 * state) on the current stack, stores the stack pointer into *save_sp,
 * loads new_sp, pops the other context's registers and returns on its
 * stack. Its third argument travels through in a register and comes back
 * as the return value of the resumed side, which thus learns which context
 * switched to it (needed by the ASan annotations) without thread-local
 * state, so a suspended context could later resume on another thread.
 *
 * A fresh context is a hand-built frame whose saved return address is
 * keel__ctx_stub: the stub moves the context pointer and the "from" value
 * into argument registers and calls ctx_start(), which runs the entry.
 */
#include "runtime/fiber_ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "keel/error.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_CTX_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define KEEL_CTX_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(KEEL_CTX_ASAN)
#define KEEL_CTX_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(KEEL_CTX_TSAN)
#define KEEL_CTX_TSAN 1
#endif

#ifdef KEEL_CTX_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef KEEL_CTX_TSAN
#include <sanitizer/tsan_interface.h>
#define KEEL_CTX_NO_TSAN __attribute__((no_sanitize_thread))
#else
#define KEEL_CTX_NO_TSAN
#endif

#define CTX_MIN_STACK 4096u

#if KEEL_HAVE_FIBERS

#define CTX_HIDDEN __attribute__((visibility("hidden")))
CTX_HIDDEN void *keel__ctx_swap(void **save_sp, void *new_sp, void *from);
CTX_HIDDEN void keel__ctx_stub(void);

#if defined(__APPLE__)
#define CTX_SYM(s) "_" #s
#define CTX_FUNC(s) ".private_extern " CTX_SYM(s) "\n"
#define CTX_END(s)
#else
#define CTX_SYM(s) #s
#define CTX_FUNC(s)                                                            \
  ".hidden " CTX_SYM(s) "\n"                                                   \
                        ".type " CTX_SYM(s) ", %function\n"
#define CTX_END(s) ".size " CTX_SYM(s) ", .-" CTX_SYM(s) "\n"
#endif

#if defined(__x86_64__)
/* Frame, from the saved sp upwards: MXCSR (4 bytes) and x87 control word
 * (4 bytes), r15, r14, r13, r12, rbx, rbp, return address. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl " CTX_SYM(keel__ctx_swap) "\n" CTX_FUNC(keel__ctx_swap) CTX_SYM(
        keel__ctx_swap) ":\n"
                        "  pushq %rbp\n"
                        "  pushq %rbx\n"
                        "  pushq %r12\n"
                        "  pushq %r13\n"
                        "  pushq %r14\n"
                        "  pushq %r15\n"
                        "  subq $8, %rsp\n"
                        "  stmxcsr (%rsp)\n"
                        "  fnstcw 4(%rsp)\n"
                        "  movq %rsp, (%rdi)\n"
                        "  movq %rsi, %rsp\n"
                        "  ldmxcsr (%rsp)\n"
                        "  fldcw 4(%rsp)\n"
                        "  addq $8, %rsp\n"
                        "  popq %r15\n"
                        "  popq %r14\n"
                        "  popq %r13\n"
                        "  popq %r12\n"
                        "  popq %rbx\n"
                        "  popq %rbp\n"
                        "  movq %rdx, %rax\n"
                        "  ret\n" CTX_END(
                            keel__ctx_swap) ".p2align 4\n"
                                            ".globl " CTX_SYM(
                                                keel__ctx_stub) "\n" CTX_FUNC(keel__ctx_stub)
                                                CTX_SYM(
                                                    keel__ctx_stub) ":\n"
                                                                    "  movq "
                                                                    "%r12, "
                                                                    "%rdi\n"
                                                                    "  movq "
                                                                    "%rdx, "
                                                                    "%rsi\n"
                                                                    "  callq "
                                                                    "*%r13\n"
                                                                    "  "
                                                                    "ud2"
                                                                    "\n" CTX_END(
                                                                        keel__ctx_stub));

#define CTX_FRAME_WORDS 8
#define CTX_MXCSR_DEFAULT UINT64_C(0x1f80)
#define CTX_X87CW_DEFAULT UINT64_C(0x037f)

static void *frame_init(uintptr_t top, keel__ctx *ctx, void (*start)(void)) {
  uint64_t *s = (uint64_t *)(top - 16); /* 16-aligned after the stub's ret */
  uint64_t *f = s - CTX_FRAME_WORDS;
  f[0] = CTX_MXCSR_DEFAULT | (CTX_X87CW_DEFAULT << 32);
  f[1] = 0;                          /* r15 */
  f[2] = 0;                          /* r14 */
  f[3] = (uint64_t)(uintptr_t)start; /* r13: called by the stub */
  f[4] = (uint64_t)(uintptr_t)ctx;   /* r12: its first argument */
  f[5] = 0;                          /* rbx */
  f[6] = 0;                          /* rbp: ends frame-pointer walks */
  f[7] = (uint64_t)(uintptr_t)&keel__ctx_stub;
  return f;
}

#elif defined(__aarch64__)
/* Frame (176 bytes): x19..x28 at 0..72, x29 at 80, x30 (lr) at 88, d8..d15
 * at 96..152, FPCR at 160. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl " CTX_SYM(keel__ctx_swap) "\n" CTX_FUNC(keel__ctx_swap) CTX_SYM(
        keel__ctx_swap) ":\n"
                        "  sub sp, sp, #176\n"
                        "  stp x19, x20, [sp, #0]\n"
                        "  stp x21, x22, [sp, #16]\n"
                        "  stp x23, x24, [sp, #32]\n"
                        "  stp x25, x26, [sp, #48]\n"
                        "  stp x27, x28, [sp, #64]\n"
                        "  stp x29, x30, [sp, #80]\n"
                        "  stp d8, d9, [sp, #96]\n"
                        "  stp d10, d11, [sp, #112]\n"
                        "  stp d12, d13, [sp, #128]\n"
                        "  stp d14, d15, [sp, #144]\n"
                        "  mrs x9, fpcr\n"
                        "  str x9, [sp, #160]\n"
                        "  mov x9, sp\n"
                        "  str x9, [x0]\n"
                        "  mov sp, x1\n"
                        "  ldr x9, [sp, #160]\n"
                        "  msr fpcr, x9\n"
                        "  ldp x19, x20, [sp, #0]\n"
                        "  ldp x21, x22, [sp, #16]\n"
                        "  ldp x23, x24, [sp, #32]\n"
                        "  ldp x25, x26, [sp, #48]\n"
                        "  ldp x27, x28, [sp, #64]\n"
                        "  ldp x29, x30, [sp, #80]\n"
                        "  ldp d8, d9, [sp, #96]\n"
                        "  ldp d10, d11, [sp, #112]\n"
                        "  ldp d12, d13, [sp, #128]\n"
                        "  ldp d14, d15, [sp, #144]\n"
                        "  add sp, sp, #176\n"
                        "  mov x0, x2\n"
                        "  ret\n" CTX_END(
                            keel__ctx_swap) ".p2align 4\n"
                                            ".globl " CTX_SYM(
                                                keel__ctx_stub) "\n" CTX_FUNC(keel__ctx_stub)
                                                CTX_SYM(
                                                    keel__ctx_stub) ":\n"
                                                                    "  mov x0, "
                                                                    "x19\n"
                                                                    "  mov x1, "
                                                                    "x2\n"
                                                                    "  blr "
                                                                    "x20\n"
                                                                    "  brk "
                                                                    "#0"
                                                                    "\n" CTX_END(
                                                                        keel__ctx_stub));

#define CTX_FRAME_WORDS 22

static void *frame_init(uintptr_t top, keel__ctx *ctx, void (*start)(void)) {
  uint64_t *f = (uint64_t *)top - CTX_FRAME_WORDS;
  for (int i = 0; i < CTX_FRAME_WORDS; i++)
    f[i] = 0;                        /* callee-saved registers, FPCR */
  f[0] = (uint64_t)(uintptr_t)ctx;   /* x19: the stub's first argument */
  f[1] = (uint64_t)(uintptr_t)start; /* x20: called by the stub */
  f[11] = (uint64_t)(uintptr_t)&keel__ctx_stub; /* x30 */
  return f;
}
#endif

/* Sanitizer bookkeeping once a context runs again; `prev` switched to it. */
static void after_switch(keel__ctx *self, keel__ctx *prev) {
#ifdef KEEL_CTX_ASAN
  const void *bottom = NULL;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(self->asan_fake, &bottom, &size);
  self->asan_fake = NULL;
  if (prev && !prev->stack_lo) { /* the thread stack: learn its bounds */
    prev->stack_lo = bottom;
    prev->stack_size = size;
  }
#else
  (void)self;
  (void)prev;
#endif
}

/* First function on a fresh context's stack (called by the stub). */
static void ctx_start(keel__ctx *self, keel__ctx *prev) {
  after_switch(self, prev);
  self->entry(self->arg);
  fprintf(stderr, "keel: internal error: fiber entry function returned "
                  "(a fiber must end with keel__ctx_exit_to)\n");
  abort();
}

/* Switch with the sanitizer annotations; `dying`: `from` never resumes. */
static inline KEEL_CTX_NO_TSAN void do_switch(keel__ctx *from, keel__ctx *to,
                                              int dying) {
#ifdef KEEL_CTX_ASAN
  __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->stack_lo,
                                 to->stack_size);
#else
  (void)dying;
#endif
#ifdef KEEL_CTX_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  keel__ctx *prev = keel__ctx_swap(&from->sp, to->sp, from);
  after_switch(from, prev);
}

int keel__ctx_init_current(keel__ctx *ctx) {
  if (!ctx)
    return KEEL_EINVAL;
  *ctx = (keel__ctx){0};
#ifdef KEEL_CTX_TSAN
  ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
  return KEEL_OK;
}

int keel__ctx_make(keel__ctx *ctx, void *stack_lo, size_t stack_size,
                   keel__ctx_entry entry, void *arg) {
  if (!ctx || !stack_lo || !entry || stack_size < CTX_MIN_STACK)
    return KEEL_EINVAL;
  uintptr_t lo = (uintptr_t)stack_lo;
  if (UINTPTR_MAX - lo < stack_size)
    return KEEL_EINVAL;
  *ctx = (keel__ctx){0};
  ctx->entry = entry;
  ctx->arg = arg;
  ctx->stack_lo = stack_lo;
  ctx->stack_size = stack_size;
#ifdef KEEL_CTX_TSAN
  ctx->tsan_fiber = __tsan_create_fiber(0);
  if (!ctx->tsan_fiber)
    return KEEL_ENOMEM;
  ctx->tsan_owned = 1;
#endif
  uintptr_t top = (lo + stack_size) & ~(uintptr_t)15;
  ctx->sp = frame_init(top, ctx, (void (*)(void))ctx_start);
  return KEEL_OK;
}

KEEL_CTX_NO_TSAN int keel__ctx_switch(keel__ctx *from, keel__ctx *to) {
  if (!from || !to || from == to)
    return KEEL_EINVAL;
  do_switch(from, to, 0);
  return KEEL_OK;
}

KEEL_CTX_NO_TSAN int keel__ctx_exit_to(keel__ctx *from, keel__ctx *to) {
  if (!from || !to || from == to)
    return KEEL_EINVAL;
  do_switch(from, to, 1);
  fprintf(stderr, "keel: internal error: finished fiber was resumed\n");
  abort();
}

void keel__ctx_destroy(keel__ctx *ctx) {
  if (!ctx)
    return;
#ifdef KEEL_CTX_TSAN
  if (ctx->tsan_owned && ctx->tsan_fiber)
    __tsan_destroy_fiber(ctx->tsan_fiber);
#endif
  ctx->tsan_fiber = NULL;
  ctx->tsan_owned = 0;
}

#else /* !KEEL_HAVE_FIBERS */

int keel__ctx_init_current(keel__ctx *ctx) {
  (void)ctx;
  return KEEL_EUNSUPPORTED;
}

int keel__ctx_make(keel__ctx *ctx, void *stack_lo, size_t stack_size,
                   keel__ctx_entry entry, void *arg) {
  (void)ctx;
  (void)stack_lo;
  (void)stack_size;
  (void)entry;
  (void)arg;
  return KEEL_EUNSUPPORTED;
}

int keel__ctx_switch(keel__ctx *from, keel__ctx *to) {
  (void)from;
  (void)to;
  return KEEL_EUNSUPPORTED;
}

int keel__ctx_exit_to(keel__ctx *from, keel__ctx *to) {
  (void)from;
  (void)to;
  return KEEL_EUNSUPPORTED;
}

void keel__ctx_destroy(keel__ctx *ctx) {
  (void)ctx;
}

#endif /* KEEL_HAVE_FIBERS */
