/*
 * fiber.c - fiber (stackful) processes: spawn, selective receive, yield,
 * and their stacks.
 *
 * A fiber process is an ordinary process (same PCB, mailbox, control word
 * and run queues) whose PCB points to a fiber record: its context, its
 * stack and its receive state. The scheduler runs it by switching from its
 * own context (rt_sched.ctx) into the fiber's; the fiber switches back when
 * it blocks in keel_receive, when its budget is used up, or when its body
 * returns. Going idle after a block is done by the scheduler, on its own
 * stack, once the fiber's registers are saved: from the moment the process
 * is IDLE a sender may make it runnable on another scheduler, which then
 * resumes it there. Code on the fiber reaches its current scheduler through
 * the fiber record (f->sched, written by whoever resumes it), never through
 * a thread_local cached across a switch.
 *
 * Receive: messages examined and not taken move, in order, from the
 * mailbox to the process's inner queue (owner-only, signal.h). Each
 * receive first re-examines that queue, then pops new arrivals; a wake-up
 * continues after the last message examined, so skipped messages are never
 * scanned twice by one receive (the save pointer). Signals met on the way
 * are handled as they come, and a pending signal is handled before
 * anything else whenever the fiber resumes (so a kill stops it before any
 * more of its code, match functions included, runs). Receive timeouts use
 * the handler processes' timeout record (p->tmo): it arrives through the
 * mailbox, behind every message delivered before it fired.
 *
 * Stacks come from one pool per size class (stack_pool.c): slabs of many
 * stacks, a lock-free cache per scheduler (index = scheduler id) and a
 * locked depot for other threads. The pools share one budget of memory
 * maps below vm.max_map_count, beyond which spawn returns KEEL_ESYSLIMIT
 * (with MADV_GUARD_INSTALL guards a slab is one map for all its stacks;
 * with mprotect guards each stack costs two).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/futex.h"
#include "runtime/fiber_ctx.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"
#include "runtime/stack_pool.h"
#include "runtime/timer.h"

#define RT_FB_CLASSES 8        /* 16 KiB << 0..7: 16 KiB .. 2 MiB */
#define RT_FB_KEEP_SLABS 1     /* free slabs kept mapped per class */
#define RT_FB_MAP_RESERVE 4096 /* maps left for everything but stacks */

enum {
  RT_FB_NEW,
  RT_FB_RUN,
  RT_FB_YIELD,
  RT_FB_BLOCK,
  RT_FB_DONE,
  RT_FB_HIBERNATE, /* dropped its stack; starts afresh at its next run */
  RT_FB_SUSPEND    /* parked by a dirty call (dirty.c) */
};

typedef struct rt_fiber {
  keel__ctx ctx;
  keel__stack *stack;
  unsigned cls;
  keel_fiber_fn fn;
  void *arg;
  keel_proc *proc;
  rt_sched *sched;    /* scheduler that resumed it last */
  int why;            /* RT_FB_*: why it last switched to its scheduler */
  rt_msg *held;       /* message returned by the last receive */
  rt_sig *mark;       /* the live receive mark (keel_receive_mark), or NULL */
  keel_fiber_fn cont; /* the continuation after a hibernation, or NULL */
  void *cont_arg;
  unsigned inert;        /* spent marks left in the inner queue */
  void (*after)(void *); /* RT_FB_SUSPEND: run by the scheduler */
  void *after_arg;
} rt_fiber;

typedef struct rt_fibers {
  keel__stack_pool *pools[RT_FB_CLASSES];
  keel__stack_budget budget; /* memory maps the pools may use */
} rt_fibers;

/* ---- stacks ------------------------------------------------------------ */

/* Memory maps the stack pools may use: vm.max_map_count less a reserve
 * for everything else in the OS process. */
static size_t map_budget(void) {
  long maps = 65530;
  FILE *fp = fopen("/proc/sys/vm/max_map_count", "r");
  if (fp != NULL) {
    if (fscanf(fp, "%ld", &maps) != 1)
      maps = 65530;
    fclose(fp);
  }
  if (maps < 2 * RT_FB_MAP_RESERVE)
    return maps > 256 ? (size_t)maps / 2 : 128;
  return (size_t)maps - RT_FB_MAP_RESERVE;
}

/* ---- stack overflow report ---------------------------------------------- */

static struct sigaction prev_segv;
static size_t guard_bytes;

static void put_str(char *buf, size_t *len, const char *str) {
  while (*str != '\0' && *len < 127)
    buf[(*len)++] = *str++;
}

static void put_u64(char *buf, size_t *len, uint64_t v) {
  char d[24];
  int k = 0;
  do {
    d[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (k > 0 && *len < 127)
    buf[(*len)++] = d[--k];
}

/* Whether addr faulted just below the running fiber's stack (its guard
 * page, or a large frame that jumped over it). */
static bool fiber_overflow(const keel_proc *p, uintptr_t addr) {
  if (p == NULL || p->fiber == NULL || p->fiber->why != RT_FB_RUN)
    return false;
  uintptr_t lo = (uintptr_t)p->fiber->stack->lo;
  return addr < lo && addr + 16 * guard_bytes >= lo;
}

/* SIGSEGV on a scheduler thread's alternate stack: names the process whose
 * fiber overflowed and aborts (the fiber may hold locks or be inside
 * malloc, so only the whole OS process can be stopped safely). Other faults
 * go to the previous handler. Async-signal-safe. */
static void on_segv(int sig, siginfo_t *si, void *uc) {
  keel_proc *p = keel__rt_tl_proc;
  if (fiber_overflow(p, (uintptr_t)si->si_addr)) {
    char buf[128];
    size_t len = 0;
    put_str(buf, &len, "keel: stack overflow in process <0.");
    put_u64(buf, &len, p->pid_number & RT_IDX_MASK);
    put_str(buf, &len, ".");
    put_u64(buf, &len, p->pid_number >> RT_IDX_BITS);
    put_str(buf, &len, "> (");
    put_u64(buf, &len, p->fiber->stack->size / 1024);
    put_str(buf, &len, " KiB stack)\n");
    (void)!write(STDERR_FILENO, buf, len);
    abort();
  }
  if ((prev_segv.sa_flags & SA_SIGINFO) != 0 &&
      prev_segv.sa_sigaction != NULL) {
    prev_segv.sa_sigaction(sig, si, uc);
  } else if (prev_segv.sa_handler != SIG_DFL &&
             prev_segv.sa_handler != SIG_IGN) {
    prev_segv.sa_handler(sig);
  } else {
    signal(SIGSEGV, SIG_DFL); /* the fault repeats and kills the process */
  }
}

void *keel__rt_fiber_thread_init(void) {
  stack_t old;
  if (sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_DISABLE) == 0)
    return NULL; /* the thread has one already (e.g. a sanitizer's) */
  stack_t ss = {.ss_size = 64 * 1024, .ss_flags = 0};
  ss.ss_sp = malloc(ss.ss_size);
  if (ss.ss_sp == NULL || sigaltstack(&ss, NULL) != 0) {
    free(ss.ss_sp);
    return NULL;
  }
  return ss.ss_sp;
}

void keel__rt_fiber_thread_fini(void *altstack) {
  if (altstack == NULL)
    return;
  stack_t ss = {.ss_flags = SS_DISABLE};
  (void)sigaltstack(&ss, NULL);
  free(altstack);
}

static void fibers_free(rt_fibers *F) {
  for (unsigned i = 0; i < RT_FB_CLASSES; i++)
    keel__stack_pool_destroy(F->pools[i]);
  free(F);
}

int keel__rt_fibers_init(rt_node *n) {
  rt_fibers *F = calloc(1, sizeof *F);
  if (F == NULL)
    return KEEL_ENOMEM;
  F->budget.max = map_budget();
  for (unsigned c = 0; c < RT_FB_CLASSES; c++) {
    keel__stack_pool_opts o = {.stack_size = KEEL_FIBER_STACK_MIN << c,
                               .ncaches = n->nsched,
                               .keep_empty = RT_FB_KEEP_SLABS,
                               .budget = &F->budget};
    F->pools[c] = keel__stack_pool_new(&o);
    if (F->pools[c] == NULL) {
      fibers_free(F);
      return KEEL_ENOMEM;
    }
  }
  n->fibers = F;
  guard_bytes = keel__stack_guard_size();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGSEGV, &sa, &prev_segv);
  return KEEL_OK;
}

size_t keel__rt_fiber_stacks_left;

void keel__rt_fibers_destroy(rt_node *n) {
  rt_fibers *F = n->fibers;
  if (F == NULL)
    return;
  size_t live = 0;
  for (unsigned i = 0; i < RT_FB_CLASSES; i++)
    live += keel__stack_pool_get_stats(F->pools[i]).live;
  keel__rt_fiber_stacks_left = live;
  (void)sigaction(SIGSEGV, &prev_segv, NULL);
  fibers_free(F);
  n->fibers = NULL;
}

int keel__rt_fiber_stack_stats(keel__stack_pool_stats *out, int *guard) {
  rt_node *n = keel__rt;
  if (n == NULL || n->fibers == NULL || out == NULL)
    return KEEL_ESTATE;
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < RT_FB_CLASSES; i++) {
    keel__stack_pool_stats s = keel__stack_pool_get_stats(n->fibers->pools[i]);
    out->live += s.live;
    out->cached += s.cached;
    out->free += s.free;
    out->mapped += s.mapped;
    out->slabs += s.slabs;
    out->maps += s.maps;
    out->fresh += s.fresh;
    out->reused += s.reused;
    out->trimmed += s.trimmed;
    out->unmapped += s.unmapped;
    out->refills += s.refills;
    out->flushes += s.flushes;
  }
  if (guard != NULL)
    *guard = (int)keel__stack_pool_guard(n->fibers->pools[0]);
  return KEEL_OK;
}

/* Size class of a requested stack size, or -1 when too large. */
static int stack_class(size_t size) {
  if (size == 0)
    size = KEEL_FIBER_STACK_DEFAULT;
  for (int c = 0; c < RT_FB_CLASSES; c++)
    if (size <= (KEEL_FIBER_STACK_MIN << c))
      return c;
  return -1;
}

/* The calling thread's cache in every pool: its scheduler's, or none. */
static unsigned stack_cache_index(void) {
  rt_sched *s = keel__rt_tl_sched;
  return s != NULL ? s->id : KEEL_STACK_NO_CACHE;
}

static int stack_get(rt_fibers *F, unsigned cls, keel__stack **out) {
  return keel__stack_alloc(F->pools[cls], stack_cache_index(), out);
}

/* Returns a stack. While the node stops, stacks are not trimmed: their
 * pools are about to be unmapped. */
static void stack_put(rt_node *n, unsigned cls, keel__stack *st) {
  bool stopping = atomic_load_explicit(&n->stopping, memory_order_relaxed);
  keel__stack_free(n->fibers->pools[cls], stack_cache_index(), st, !stopping);
}

/* ---- switching --------------------------------------------------------- */

/* Switches from the running fiber of p to its scheduler. Returns when some
 * scheduler (maybe on another thread) resumes it. */
__attribute__((noinline)) static void fiber_switch(keel_proc *p, int why) {
  rt_fiber *f = p->fiber;
  f->why = why;
  (void)keel__ctx_switch(&f->ctx, &f->sched->ctx);
}

/* Ends the running fiber at once (a signal killed it; exit_reason is
 * set): it is never resumed. */
__attribute__((noreturn)) static void fiber_die(keel_proc *p) {
  rt_fiber *f = p->fiber;
  f->why = RT_FB_DONE;
  (void)keel__ctx_exit_to(&f->ctx, &f->sched->ctx);
  abort(); /* unreachable: a finished fiber is never resumed */
}

/* Handles the signals waiting for p (the fiber runs): dies if one kills
 * it. Messages fetched on the way join the inner queue unexamined. */
static void fiber_signals(keel_proc *p) {
  if (keel__rt_sig_pending_take(p) && keel__rt_sig_drain(keel__rt, p))
    fiber_die(p);
}

static void fiber_entry(void *arg) {
  rt_fiber *f = arg;
  fiber_signals(f->proc); /* killed before it ever ran */
  if (f->cont != NULL)
    f->cont(f->proc, f->cont_arg); /* woken from hibernation */
  else
    f->fn(f->proc, f->arg);
  f->why = RT_FB_DONE;
  (void)keel__ctx_exit_to(&f->ctx, &f->sched->ctx);
  abort(); /* unreachable: a finished fiber is never resumed */
}

/* Makes a new fiber's context, on the scheduler that runs it first rather
 * than in spawn: the first touch of a fresh stack (a page fault and a
 * zeroed page) is then paid by the thread that uses the page, not by the
 * spawner. Making a context fails only when TSan cannot create its fiber
 * state; the process then exits with reason system_limit. */
static bool fiber_first_run(rt_node *n, keel_proc *p) {
  rt_fiber *f = p->fiber;
  if ((f->stack != NULL ||
       stack_get(n->fibers, f->cls, &f->stack) == KEEL_OK) &&
      keel__ctx_make(&f->ctx, f->stack->lo, f->stack->size, fiber_entry, f) ==
          KEEL_OK)
    return true;
  p->exit_reason = KEEL_ATOM(SYSTEM_LIMIT);
  keel__rt_proc_die(n, p);
  return false;
}

void keel__rt_fiber_run(rt_node *n, rt_sched *s, keel_proc *p) {
  rt_fiber *f = p->fiber;
  keel__rt_tl_proc = p;
  int32_t used = 0;
  for (;;) {
    /* Once the node stops the fiber is not resumed again: node stop
     * terminates it (see sched_main). */
    if (atomic_load_explicit(&n->stopping, memory_order_acquire)) {
      keel__rt_publish(p, used);
      break;
    }
    if (f->why == RT_FB_NEW && f->stack == NULL) {
      /* Hibernating: signals are handled here, on the scheduler's stack;
       * only a message wakes the continuation. */
      if (keel__rt_sig_pending_take(p) && keel__rt_sig_drain(n, p)) {
        keel__rt_proc_die(n, p);
        keel__rt_tl_proc = NULL;
        return;
      }
      if (p->inner_head == NULL && !keel__mbox_has_mail(p)) {
        if (keel__rt_try_idle(p)) /* still hibernating */
          break;
        continue; /* something came meanwhile */
      }
    }
    if (f->why == RT_FB_NEW && !fiber_first_run(n, p)) {
      keel__rt_tl_proc = NULL;
      return;
    }
    p->budget = s->slice;
    used += s->slice;
    f->sched = s;
    f->why = RT_FB_RUN;
    (void)keel__ctx_switch(&s->ctx, &f->ctx);
    s->slice = p->budget > 0 ? p->budget : 0;
    used -= s->slice;
    if (f->why == RT_FB_DONE) {
      keel__rt_proc_die(n, p); /* the slot may be reused from here on */
      keel__rt_tl_proc = NULL;
      return;
    }
    if (f->why == RT_FB_YIELD) {
      keel__rt_publish(p, used);
      keel__rt_requeue(n, s, p);
      break;
    }
    if (f->why == RT_FB_SUSPEND) {
      keel__rt_publish(p, used);
      f->after(f->after_arg); /* p may run elsewhere from here on */
      break;
    }
    if (f->why == RT_FB_HIBERNATE) { /* its stack is ours to drop */
      keel__ctx_destroy(&f->ctx);
      stack_put(n, f->cls, f->stack);
      f->stack = NULL;
      f->why = RT_FB_NEW;
      keel__rt_publish(p, used);
      used = 0;
      if (s->slice <= 0) {
        keel__rt_requeue(n, s, p);
        break;
      }
      /* The loop's top decides: idle only if nothing is queued, inner
       * queue included (messages fetched before the hibernation must
       * wake the continuation, not wait for the next send). */
      continue;
    }
    /* Blocked in receive: idle unless mail came meanwhile. */
    keel__rt_publish(p, used); /* before p may run elsewhere */
    used = 0;
    if (keel__rt_try_idle(p)) /* p may run elsewhere from here on */
      break;
    if (s->slice <= 0) {
      keel__rt_requeue(n, s, p);
      break;
    }
  }
  keel__rt_tl_proc = NULL;
}

void keel__rt_fiber_release(rt_node *n, keel_proc *p) {
  rt_fiber *f = p->fiber;
  p->fiber = NULL;
  if (f->held != NULL)
    keel__rt_free_msg(f->held);
  keel__ctx_destroy(&f->ctx);
  if (f->stack != NULL) /* NULL while hibernating */
    stack_put(n, f->cls, f->stack);
  free(f);
}

/* Whether self is a fiber running on the calling thread right now. */
static bool running_fiber(const keel_proc *self) {
  return self != NULL && self->fiber != NULL && self->fiber->why == RT_FB_RUN &&
         keel__rt_tl_proc == self;
}

rt_sched *keel__rt_fiber_budget_yield(keel_proc *p) {
  if (p->fiber->why == RT_FB_RUN) {
    fiber_switch(p, RT_FB_YIELD);
    fiber_signals(p);
  }
  return p->fiber->sched;
}

int keel_fiber_yield(keel_proc *self) {
  if (!running_fiber(self))
    return KEEL_ESTATE;
  fiber_switch(self, RT_FB_YIELD);
  fiber_signals(self);
  return KEEL_OK;
}

/* Frees the message the last receive returned (valid until the next
 * receive) and clears an armed timeout. */
static void end_last_receive(keel_proc *self) {
  rt_fiber *f = self->fiber;
  if (f->held != NULL) {
    keel__rt_free_msg(f->held);
    f->held = NULL;
  }
  if (self->tmo != NULL)
    keel__rt_proc_timeout_clear(keel__rt, self);
}

int keel_fiber_hibernate(keel_proc *self, keel_fiber_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  if (!running_fiber(self))
    return KEEL_ESTATE;
  rt_fiber *f = self->fiber;
  end_last_receive(self);
  f->cont = fn; /* f->fn stays the entry introspection reports */
  f->cont_arg = arg;
  f->why = RT_FB_HIBERNATE;
  (void)keel__ctx_exit_to(&f->ctx, &f->sched->ctx);
  abort(); /* unreachable: the old stack is never resumed */
}

const void *keel__rt_fiber_entry(const keel_proc *p) {
  return p->fiber != NULL ? (const void *)p->fiber->fn : NULL;
}

int keel__rt_fiber_suspend(keel_proc *p, void (*after)(void *), void *arg) {
  if (!running_fiber(p))
    return KEEL_ESTATE;
  p->fiber->after = after;
  p->fiber->after_arg = arg;
  fiber_switch(p, RT_FB_SUSPEND);
  fiber_signals(p); /* a kill while it waited ends it here */
  return KEEL_OK;
}

bool keel_proc_is_fiber(const keel_proc *self) {
  return self != NULL && self->fiber != NULL;
}

/* ---- spawn ------------------------------------------------------------- */

int keel_spawn_fiber(keel_fiber_fn fn, void *arg, const keel_spawn_opts *opts,
                     keel_term *pid) {
  rt_node *n = keel__rt;
  if (n == NULL || atomic_load_explicit(&n->stopping, memory_order_relaxed))
    return KEEL_ESTATE;
  if (fn == NULL)
    return KEEL_EINVAL;
  if (!KEEL_HAVE_FIBERS)
    return KEEL_EUNSUPPORTED;
  int cls = stack_class(opts != NULL ? opts->stack_size : 0);
  if (cls < 0)
    return KEEL_EINVAL;
  rt_fiber *f = keel__fault() ? NULL : calloc(1, sizeof *f);
  if (f == NULL)
    return KEEL_ENOMEM;
  f->cls = (unsigned)cls;
  f->fn = fn;
  f->arg = arg;
  f->why = RT_FB_NEW;
  int rc = stack_get(n->fibers, f->cls, &f->stack);
  if (rc != KEEL_OK) {
    free(f);
    return rc;
  }
  /* The context is made at the first run (fiber_first_run). */
  keel_proc *p = NULL;
  rc = keel__rt_spawn_common(n, NULL, arg, opts, f, &p);
  if (rc != KEEL_OK) {
    stack_put(n, f->cls, f->stack);
    free(f);
    return rc;
  }
  f->proc = p;
  if (pid != NULL)
    *pid = keel_pid_local(p->pid_number);
  keel__rt_make_runnable(n, p); /* p may run from here on */
  return KEEL_OK;
}

/* ---- receive ----------------------------------------------------------- */

static int receive_taken(keel_proc *self, rt_msg *m, keel_term *msg_out) {
  if (self->tmo != NULL)
    keel__rt_proc_timeout_clear(keel__rt, self);
  self->fiber->held = m;
  self->budget -= KEEL_COST_MESSAGE;
  keel__rt_mq_out(self, 1);
  *msg_out = m->term;
  return KEEL_OK;
}

/* Outcome of scanning the inner queue. */
enum { SCAN_NONE, SCAN_TAKEN, SCAN_TIMEOUT };

/* Examines the inner queue after *last (NULL: from its head), in order:
 * unlinks and returns through *out the first message that matches
 * (SCAN_TAKEN), or SCAN_TIMEOUT at self's armed timeout record; timer
 * records that are stale are released, and so are receive marks that are
 * no longer live. *last ends at the last entry examined and kept. */
static int inner_scan(keel_proc *self, rt_msg **last,
                      keel_receive_match_fn match, void *arg, rt_msg **out) {
  rt_msg *prev = *last;
  rt_msg *m = prev != NULL ? rt_msg_next(prev) : self->inner_head;
  while (m != NULL) {
    rt_msg *next = rt_msg_next(m);
    if (rt_entry_is_signal(m)) { /* a receive mark */
      if ((rt_sig *)m == self->fiber->mark) {
        prev = m;
      } else {
        keel__rt_inner_unlink(self, prev, m);
        keel__rt_sig_free((rt_sig *)m);
      }
    } else if (m->term == KEEL_NONE) { /* a timer record (timer.h) */
      keel__rt_inner_unlink(self, prev, m);
      if (keel__rt_timeout_popped(keel__rt, self, m))
        return SCAN_TIMEOUT;
    } else if (match == NULL || match(m->term, arg)) {
      keel__rt_inner_unlink(self, prev, m);
      *out = m;
      return SCAN_TAKEN;
    } else {
      prev = m;
    }
    m = next;
  }
  *last = prev;
  return SCAN_NONE;
}

/* Pops new arrivals until one matches; blocks while the mailbox is empty.
 * Returns KEEL_OK with *out set, or KEEL_ETIMEDOUT, or an arming error.
 * last: the last inner-queue entry examined so far by this receive.
 * *owe (a yield owed for a used-up slice) is cleared once it blocks. */
static int receive_wait(keel_proc *self, keel_receive_match_fn match, void *arg,
                        int64_t timeout_ms, rt_msg *last, rt_msg **out,
                        bool *owe) {
  bool armed = false;
  for (;;) {
    rt_msg *m = keel__mbox_pop(self);
    if (m == NULL) {
      if (timeout_ms == 0)
        return KEEL_ETIMEDOUT;
      if (timeout_ms > 0 && !armed) {
        int rc = keel_proc_set_timeout(self, timeout_ms);
        if (rc != KEEL_OK)
          return rc;
        armed = true;
      }
      fiber_switch(self, RT_FB_BLOCK);
      *owe = false;
      if (keel__rt_sig_pending_take(self)) {
        if (keel__rt_sig_drain(keel__rt, self))
          fiber_die(self);
        int st = inner_scan(self, &last, match, arg, out);
        if (st != SCAN_NONE)
          return st == SCAN_TAKEN ? KEEL_OK : KEEL_ETIMEDOUT;
      }
      continue;
    }
    if (rt_entry_is_signal(m) && ((rt_sig *)m)->kind == RT_SIG_MARK) {
      ((rt_sig *)m)->key = 1; /* a position: kept in order */
      keel__rt_inner_append(self, m);
      last = m;
      continue;
    }
    if (rt_entry_is_signal(m)) {
      bool die = false;
      m = keel__rt_sig_handle(keel__rt, self, (rt_sig *)m, &die);
      if (die)
        fiber_die(self);
      if (m == NULL)
        continue;
    } else if (m->term == KEEL_NONE) { /* a timer record (timer.h) */
      if (keel__rt_timeout_popped(keel__rt, self, m))
        return KEEL_ETIMEDOUT;
      continue; /* a stale timeout */
    }
    if (match == NULL || match(m->term, arg)) {
      *out = m;
      return KEEL_OK;
    }
    keel__rt_inner_append(self, m);
    last = m;
  }
}

/* A marked receive: returns the inner-queue entry after which scanning
 * starts (everything up to it predates the mark), fetching the mailbox up
 * to the mark first when it is still there; ends the mark. */
/* Frees the spent marks of the inner queue (all but the live one). */
static void sweep_marks(keel_proc *self) {
  rt_msg *prev = NULL;
  for (rt_msg *m = self->inner_head; m != NULL;) {
    rt_msg *next = rt_msg_next(m);
    if (rt_entry_is_signal(m) && (rt_sig *)m != self->fiber->mark) {
      keel__rt_inner_unlink(self, prev, m);
      keel__rt_sig_free((rt_sig *)m);
    } else {
      prev = m;
    }
    m = next;
  }
  self->fiber->inert = 0;
}

/* The live mark of a fiber whose queues were empty when it marked: no
 * entry predates the mark, so the receive scans from the inner queue's
 * head. Never queued. */
static rt_sig mark_at_empty;

static rt_msg *skip_to_mark(keel_proc *self) {
  rt_fiber *f = self->fiber;
  rt_sig *mk = f->mark;
  rt_msg *last;
  if (mk == &mark_at_empty) {
    f->mark = NULL;
    return NULL;
  }
  if (f->inert >= 64) /* bounded: a full receive would free them too */
    sweep_marks(self);
  if (mk->key != 0) {
    last = (rt_msg *)mk; /* in the inner queue: left there, inert */
    f->inert++;
  } else {
    /* Still in the mailbox: everything before it moves to the inner
     * queue unexamined (signals are handled as always). */
    for (;;) {
      rt_msg *m = keel__mbox_pop(self);
      if (m == (rt_msg *)mk)
        break;
      if (m == NULL) {             /* a sender ahead of the mark is mid-push */
        if (keel__rt->sim != NULL) /* no thread ends it: the simulation */
          keel__rt_sim_finish_pushes(keel__rt, self);
        keel__cpu_relax();
        continue;
      }
      if (rt_entry_is_signal(m) && ((rt_sig *)m)->kind != RT_SIG_MARK) {
        bool die = false;
        m = keel__rt_sig_handle(keel__rt, self, (rt_sig *)m, &die);
        if (die)
          fiber_die(self);
        if (m == NULL)
          continue;
      }
      keel__rt_inner_append(self, m);
    }
    keel__rt_sig_free(mk);
    last = self->inner_tail;
  }
  f->mark = NULL;
  return last;
}

int keel_receive_mark(keel_proc *self) {
  if (!running_fiber(self))
    return KEEL_ESTATE;
  /* Nothing queued (an older live mark would be): nothing to skip. A
   * message still being pushed counts as later than the mark. */
  if (self->inner_head == NULL && !keel__mbox_has_mail(self)) {
    self->fiber->mark = &mark_at_empty;
    return KEEL_OK;
  }
  rt_sig *mk = keel__rt_sig_new(keel__rt, RT_SIG_MARK, 0, self->pid_number, 0,
                                KEEL_NONE);
  if (mk == NULL)
    return KEEL_ENOMEM;
  self->fiber->mark = mk; /* an older live mark becomes inert */
  keel__mbox_push(self, (rt_msg *)mk);
  return KEEL_OK;
}

int keel_receive(keel_proc *self, keel_receive_match_fn match, void *match_arg,
                 int64_t timeout_ms, keel_term *msg_out) {
  if (self == NULL || msg_out == NULL || timeout_ms < KEEL_INFINITY ||
      (timeout_ms > 0 && (uint64_t)timeout_ms > KEEL_TIMER_MAX_MS))
    return KEEL_EINVAL;
  if (!running_fiber(self))
    return KEEL_ESTATE;
  rt_fiber *f = self->fiber;
  end_last_receive(self); /* a keel_proc_set_timeout is replaced */
  /* A used-up slice is given up where the receive would go on running:
   * a receive that blocks gives way anyway, and yielding first (to the
   * back of the ring, next to the process this one just woke into
   * runnext) would wake another scheduler to steal one of the two. */
  bool owe = self->budget <= 0;
  if (owe && timeout_ms == 0) { /* a poll: give way first, as before */
    fiber_switch(self, RT_FB_YIELD);
    owe = false;
  }
  fiber_signals(self);
  rt_msg *m = NULL, *last = f->mark != NULL ? skip_to_mark(self) : NULL;
  int st = inner_scan(self, &last, match, match_arg, &m);
  if (st == SCAN_TIMEOUT) /* not expected: the armed timeout was cleared */
    return KEEL_ETIMEDOUT;
  if (st == SCAN_NONE) {
    int rc = receive_wait(self, match, match_arg, timeout_ms, last, &m, &owe);
    if (rc != KEEL_OK) {
      if (self->tmo != NULL)
        keel__rt_proc_timeout_clear(keel__rt, self);
      return rc;
    }
  }
  if (owe) {     /* found without blocking: give way now, holding m */
    f->held = m; /* freed with the fiber if a signal kills it meanwhile */
    fiber_switch(self, RT_FB_YIELD);
    fiber_signals(self);
    f->held = NULL;
  }
  return receive_taken(self, m, msg_out);
}

typedef struct pattern_arg {
  const keel_pattern *p;
  keel_term *caps;
} pattern_arg;

static bool pattern_match(keel_term msg, void *arg) {
  pattern_arg *pa = arg;
  return keel_match(pa->p, msg, pa->caps);
}

int keel_receive_pattern(keel_proc *self, const keel_pattern *p,
                         int64_t timeout_ms, keel_term *msg_out,
                         keel_term *caps) {
  if (p == NULL)
    return KEEL_EINVAL;
  pattern_arg pa = {p, caps};
  return keel_receive(self, pattern_match, &pa, timeout_ms, msg_out);
}
