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
 * mailbox to a private list of the fiber (owner-only). Each receive first
 * re-examines that list, then pops new arrivals; a wake-up continues with
 * the mailbox, so skipped messages are never scanned twice by one receive
 * (the save pointer). Receive timeouts use the handler processes' timeout
 * record (p->tmo): it arrives through the mailbox, behind every message
 * delivered before it fired.
 *
 * Stacks come from per-size-class pools of the node (stack_pool.c) under
 * one mutex; the number of live stacks is bounded below vm.max_map_count
 * (two mappings per stack), beyond which spawn returns KEEL_ESYSLIMIT.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/fiber_ctx.h"
#include "runtime/rt_internal.h"
#include "runtime/stack_pool.h"
#include "runtime/timer.h"

#define RT_FB_CLASSES 8 /* 16 KiB << 0..7: 16 KiB .. 2 MiB */
#define RT_FB_CACHE 256 /* free stacks kept per class */

enum {
  RT_FB_NEW,
  RT_FB_RUN,
  RT_FB_YIELD,
  RT_FB_BLOCK,
  RT_FB_DONE,
  RT_FB_SUSPEND
};

typedef struct rt_fiber {
  keel__ctx ctx;
  keel__stack *stack;
  unsigned cls;
  keel_fiber_fn fn;
  void *arg;
  keel_proc *proc;
  rt_sched *sched; /* scheduler that resumed it last */
  int why;         /* RT_FB_*: why it last switched to its scheduler */
  rt_msg *held;    /* message returned by the last receive */
  rt_msg *saved_head, *saved_tail; /* examined, not taken, in order */
  void (*after)(void *);           /* RT_FB_SUSPEND: run by the scheduler */
  void *after_arg;
} rt_fiber;

typedef struct rt_fibers {
  pthread_mutex_t lock;
  keel__stack_pool *pools[RT_FB_CLASSES];
  size_t live;  /* stacks handed out */
  size_t limit; /* most live stacks */
} rt_fibers;

/* ---- stacks ------------------------------------------------------------ */

static size_t stack_limit(void) {
  long maps = 65530;
  FILE *fp = fopen("/proc/sys/vm/max_map_count", "r");
  if (fp != NULL) {
    if (fscanf(fp, "%ld", &maps) != 1)
      maps = 65530;
    fclose(fp);
  }
  /* Two mappings per stack; leave room for everything else. */
  long lim = maps / 2 - 2048;
  return lim < 64 ? 64 : (size_t)lim;
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

int keel__rt_fibers_init(rt_node *n) {
  rt_fibers *F = calloc(1, sizeof *F);
  if (F == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&F->lock, NULL);
  F->limit = stack_limit();
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
  keel__rt_fiber_stacks_left = F->live;
  (void)sigaction(SIGSEGV, &prev_segv, NULL);
  for (unsigned i = 0; i < RT_FB_CLASSES; i++)
    keel__stack_pool_destroy(F->pools[i]);
  pthread_mutex_destroy(&F->lock);
  free(F);
  n->fibers = NULL;
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

static int stack_get(rt_fibers *F, unsigned cls, keel__stack **out) {
  int rc = KEEL_OK;
  pthread_mutex_lock(&F->lock);
  if (F->live >= F->limit) {
    rc = KEEL_ESYSLIMIT;
  } else {
    if (F->pools[cls] == NULL)
      F->pools[cls] =
          keel__stack_pool_new(KEEL_FIBER_STACK_MIN << cls, RT_FB_CACHE);
    *out = keel__stack_alloc(F->pools[cls]);
    if (*out == NULL)
      rc = KEEL_ENOMEM;
    else
      F->live++;
  }
  pthread_mutex_unlock(&F->lock);
  return rc;
}

static void stack_put(rt_fibers *F, unsigned cls, keel__stack *st) {
  pthread_mutex_lock(&F->lock);
  keel__stack_free(F->pools[cls], st);
  F->live--;
  pthread_mutex_unlock(&F->lock);
}

/* ---- private list of skipped messages ---------------------------------- */

static rt_msg *msg_next(rt_msg *m) {
  return (rt_msg *)(void *)atomic_load_explicit(&m->link.next,
                                                memory_order_relaxed);
}

static void msg_set_next(rt_msg *m, rt_msg *next) {
  atomic_store_explicit(&m->link.next, next == NULL ? NULL : &next->link,
                        memory_order_relaxed);
}

static void saved_append(rt_fiber *f, rt_msg *m) {
  msg_set_next(m, NULL);
  if (f->saved_tail != NULL)
    msg_set_next(f->saved_tail, m);
  else
    f->saved_head = m;
  f->saved_tail = m;
}

/* Unlinks and returns the oldest skipped message that matches, or NULL. */
static rt_msg *saved_take(rt_fiber *f, keel_receive_match_fn match, void *arg) {
  rt_msg *prev = NULL;
  for (rt_msg *m = f->saved_head; m != NULL; prev = m, m = msg_next(m)) {
    if (match != NULL && !match(m->term, arg))
      continue;
    rt_msg *next = msg_next(m);
    if (prev != NULL)
      msg_set_next(prev, next);
    else
      f->saved_head = next;
    if (f->saved_tail == m)
      f->saved_tail = prev;
    return m;
  }
  return NULL;
}

/* ---- switching --------------------------------------------------------- */

/* Switches from the running fiber of p to its scheduler. Returns when some
 * scheduler (maybe on another thread) resumes it. */
__attribute__((noinline)) static void fiber_switch(keel_proc *p, int why) {
  rt_fiber *f = p->fiber;
  f->why = why;
  (void)keel__ctx_switch(&f->ctx, &f->sched->ctx);
}

static void fiber_entry(void *arg) {
  rt_fiber *f = arg;
  f->fn(f->proc, f->arg);
  f->why = RT_FB_DONE;
  (void)keel__ctx_exit_to(&f->ctx, &f->sched->ctx);
  abort(); /* unreachable: a finished fiber is never resumed */
}

void keel__rt_fiber_run(rt_node *n, rt_sched *s, keel_proc *p) {
  rt_fiber *f = p->fiber;
  keel__rt_tl_proc = p;
  for (;;) {
    p->budget = s->slice;
    f->sched = s;
    f->why = RT_FB_RUN;
    (void)keel__ctx_switch(&s->ctx, &f->ctx);
    s->slice = p->budget > 0 ? p->budget : 0;
    if (f->why == RT_FB_DONE) {
      keel__rt_proc_die(n, p); /* the slot may be reused from here on */
      break;
    }
    if (f->why == RT_FB_YIELD) {
      keel__rt_requeue(n, s, p);
      break;
    }
    if (f->why == RT_FB_SUSPEND) {
      f->after(f->after_arg); /* p may run elsewhere from here on */
      break;
    }
    /* Blocked in receive: idle unless mail came meanwhile. */
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
  for (rt_msg *m = f->saved_head; m != NULL;) {
    rt_msg *next = msg_next(m);
    keel__rt_free_msg(m);
    m = next;
  }
  keel__ctx_destroy(&f->ctx);
  stack_put(n->fibers, f->cls, f->stack);
  free(f);
}

/* Whether self is a fiber running on the calling thread right now. */
static bool running_fiber(const keel_proc *self) {
  return self != NULL && self->fiber != NULL && self->fiber->why == RT_FB_RUN &&
         keel__rt_tl_proc == self;
}

void keel__rt_fiber_budget_yield(keel_proc *p) {
  if (p->fiber->why == RT_FB_RUN)
    fiber_switch(p, RT_FB_YIELD);
}

int keel_fiber_yield(keel_proc *self) {
  if (!running_fiber(self))
    return KEEL_ESTATE;
  fiber_switch(self, RT_FB_YIELD);
  return KEEL_OK;
}

int keel__rt_fiber_suspend(keel_proc *p, void (*after)(void *), void *arg) {
  if (!running_fiber(p))
    return KEEL_ESTATE;
  p->fiber->after = after;
  p->fiber->after_arg = arg;
  fiber_switch(p, RT_FB_SUSPEND);
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
  rt_fiber *f = calloc(1, sizeof *f);
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
  rc = keel__ctx_make(&f->ctx, f->stack->lo, f->stack->size, fiber_entry, f);
  keel_proc *p = NULL;
  if (rc == KEEL_OK)
    rc = keel__rt_spawn_common(n, NULL, arg, opts, f, &p);
  if (rc != KEEL_OK) {
    keel__ctx_destroy(&f->ctx);
    stack_put(n->fibers, f->cls, f->stack);
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
  *msg_out = m->term;
  return KEEL_OK;
}

/* Pops new arrivals until one matches; blocks while the mailbox is empty.
 * Returns KEEL_OK with *out set, or KEEL_ETIMEDOUT, or an arming error. */
static int receive_wait(keel_proc *self, keel_receive_match_fn match, void *arg,
                        int64_t timeout_ms, rt_msg **out) {
  rt_fiber *f = self->fiber;
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
      continue;
    }
    if (m->term == KEEL_NONE) { /* a timer record (timer.h) */
      if (keel__rt_timeout_popped(keel__rt, self, m))
        return KEEL_ETIMEDOUT;
      continue; /* a stale timeout */
    }
    if (match == NULL || match(m->term, arg)) {
      *out = m;
      return KEEL_OK;
    }
    saved_append(f, m);
  }
}

int keel_receive(keel_proc *self, keel_receive_match_fn match, void *match_arg,
                 int64_t timeout_ms, keel_term *msg_out) {
  if (self == NULL || msg_out == NULL || timeout_ms < KEEL_INFINITY ||
      (timeout_ms > 0 && (uint64_t)timeout_ms > KEEL_TIMER_MAX_MS))
    return KEEL_EINVAL;
  if (!running_fiber(self))
    return KEEL_ESTATE;
  rt_fiber *f = self->fiber;
  if (f->held != NULL) {
    keel__rt_free_msg(f->held);
    f->held = NULL;
  }
  if (self->tmo != NULL) /* a keel_proc_set_timeout: replaced */
    keel__rt_proc_timeout_clear(keel__rt, self);
  if (self->budget <= 0)
    fiber_switch(self, RT_FB_YIELD);
  rt_msg *m = saved_take(f, match, match_arg);
  if (m == NULL) {
    int rc = receive_wait(self, match, match_arg, timeout_ms, &m);
    if (rc != KEEL_OK) {
      if (self->tmo != NULL)
        keel__rt_proc_timeout_clear(keel__rt, self);
      return rc;
    }
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
