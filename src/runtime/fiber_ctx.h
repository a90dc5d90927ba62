/*
 * fiber_ctx.h - execution contexts for stackful fibers (internal).
 *
 * A keel__ctx holds the saved stack pointer of a suspended execution
 * context; the callee-saved registers live on that context's own stack.
 * keel__ctx_switch() saves the current context into `from` and resumes `to`:
 *
 *   x86_64 (SysV): rbx, rbp, r12-r15, rsp, MXCSR and the x87 control word;
 *   aarch64 (AAPCS64): x19-x29, lr, sp, d8-d15 and FPCR.
 *
 * The thread's own stack becomes a context with keel__ctx_init_current();
 * a fresh context on a caller-provided stack comes from keel__ctx_make().
 * Contexts are not thread-safe: one thread switches among its contexts.
 *
 * Under AddressSanitizer each switch is announced with
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber; under
 * ThreadSanitizer each context owns a TSan fiber (__tsan_create_fiber,
 * __tsan_switch_to_fiber, __tsan_destroy_fiber).
 *
 * KEEL_HAVE_FIBERS is 1 where the switch is implemented (x86_64, aarch64)
 * and 0 elsewhere; there every function returns KEEL_EUNSUPPORTED.
 */
#ifndef KEEL_FIBER_CTX_H
#define KEEL_FIBER_CTX_H

#include <stddef.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define KEEL_HAVE_FIBERS 1
#else
#define KEEL_HAVE_FIBERS 0
#endif

/* Entry function of a fresh context. It must never return: a fiber ends by
 * switching away for good (keel__ctx_exit_to). Returning aborts the process
 * with a message, as that is a runtime bug. */
typedef void (*keel__ctx_entry)(void *arg);

/* A suspended (or running) execution context. Treat as opaque. */
typedef struct keel__ctx {
  void *sp;              /* saved stack pointer while suspended */
  keel__ctx_entry entry; /* fresh contexts: first function to run */
  void *arg;             /* its argument */
  const void *stack_lo;  /* lowest usable address (NULL: thread stack) */
  size_t stack_size;     /* usable bytes (0: unknown, thread stack) */
  void *asan_fake;       /* ASan fake-stack handle while suspended */
  void *tsan_fiber;      /* TSan fiber of this context */
  int tsan_owned;        /* tsan_fiber was created by keel__ctx_make */
} keel__ctx;

/* Turn the calling thread's current stack into context `ctx`, so that it
 * can be the `from` of a switch and be resumed later. Returns KEEL_OK, or
 * KEEL_EINVAL (NULL ctx) or KEEL_EUNSUPPORTED. */
int keel__ctx_init_current(keel__ctx *ctx);

/* Prepare `ctx` so that the first switch to it calls entry(arg) on the stack
 * [stack_lo, stack_lo + stack_size). The stack must be at least 4 KiB;
 * stack_lo need not be aligned (the usable part is aligned inwards).
 * Returns KEEL_OK, KEEL_EINVAL (NULL argument, stack too small),
 * KEEL_ENOMEM (sanitizer fiber could not be created) or KEEL_EUNSUPPORTED. */
int keel__ctx_make(keel__ctx *ctx, void *stack_lo, size_t stack_size,
                   keel__ctx_entry entry, void *arg);

/* Save the running context into `from` and resume `to`. Returns (KEEL_OK)
 * when some context later switches back to `from`. `to` must be suspended:
 * made by keel__ctx_make and not yet run, or saved by an earlier switch.
 * Returns KEEL_EINVAL for NULL arguments, KEEL_EUNSUPPORTED where fibers are
 * not available. */
int keel__ctx_switch(keel__ctx *from, keel__ctx *to);

/* Like keel__ctx_switch, for a context that will never be resumed (a fiber
 * finishing): sanitizers release its fake stack. Does not return when the
 * arguments are valid; returns KEEL_EINVAL or KEEL_EUNSUPPORTED otherwise. */
int keel__ctx_exit_to(keel__ctx *from, keel__ctx *to);

/* Release what keel__ctx_make allocated (the TSan fiber). `ctx` must not be
 * the running context. The stack itself belongs to the caller. NULL is a
 * no-op. */
void keel__ctx_destroy(keel__ctx *ctx);

#endif /* KEEL_FIBER_CTX_H */
