/*
 * task.c - Task: the task process, async / yield / await / yield_many /
 * shutdown / ignore, fire-and-forget starts and keel_task_run for plain
 * threads through a proxy fiber (see keel/task.h).
 */
#include <pthread.h>
#include <stdint.h>

#include "keel/clock.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "keel/task.h"
#include "otp/task_internal.h"

/* What a go message carries besides the input: a resource (terms from
 * outside the node, e.g. decoded ETF, cannot forge one) holding the
 * function and its argument, tagged with a magic number. */
#define TASK_SPEC_MAGIC UINT64_C(0x6b65656c7461736b)

typedef struct task_spec {
  uint64_t magic;
  keel_task_fn fn;
  void *arg;
} task_spec;

keel_term keel__task_spec_term(keel_heap *h, keel_task_fn fn, void *arg) {
  keel_resource *r = keel_resource_new(sizeof(task_spec), NULL);
  if (r == NULL)
    return KEEL_NONE;
  task_spec *sp = keel_resource_data(r);
  *sp = (task_spec){TASK_SPEC_MAGIC, fn, arg};
  keel_term t = keel_resource_term(h, r);
  keel_resource_release(r);
  return t;
}

bool keel__task_spec_get(keel_term t, keel_task_fn *fn, void **arg) {
  keel_resource *r = keel_resource_get(t);
  if (r == NULL)
    return false;
  const task_spec *sp = keel_resource_data(r);
  if (sp->magic != TASK_SPEC_MAGIC || sp->fn == NULL)
    return false;
  *fn = sp->fn;
  *arg = sp->arg;
  return true;
}

static keel_term go_atom(void) {
  return keel_atom("$task_go");
}

uint64_t keel__task_now_ms(void) {
  if (keel_sim_active())
    return keel_sim_time_ms();
  return keel_monotonic_ns() / 1000000u;
}

bool keel__task_msg_for(keel_term ref, keel_term msg) {
  if (!keel_is_tuple(msg))
    return false;
  size_t ar = keel_tuple_arity(msg);
  if (ar == 2)
    return keel_eq_exact(keel_tuple_get(msg, 0), ref);
  return ar == 5 && keel_tuple_get(msg, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(msg, 1), ref);
}

/* ---- the task process --------------------------------------------------- */

typedef struct go_match_arg {
  keel_term go;
  keel_term owner_mon; /* KEEL_NONE when the owner is not monitored */
} go_match_arg;

static bool go_match(keel_term msg, void *arg) {
  const go_match_arg *a = arg;
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 5 &&
      keel_tuple_get(msg, 0) == a->go)
    return true;
  return a->owner_mon != KEEL_NONE && keel__task_msg_for(a->owner_mon, msg);
}

/* A running task's state (its state pointer while its function runs). */
typedef struct task_ctx {
  keel_term callers; /* [Owner, Owner's owner, ...] */
} task_ctx;

static void task_body(keel_proc *self, void *arg);

/* Whether self is a task fiber whose function runs: its ctx, else NULL. */
static task_ctx *running_task(keel_proc *self) {
  keel_process_info_t pi;
  if (keel_process_info(keel_self(self), &pi) != KEEL_OK || !pi.fiber ||
      pi.entry != (const void *)(uintptr_t)task_body)
    return NULL;
  return keel_proc_state(self); /* NULL until its go message came */
}

keel_term keel__task_child_callers(keel_heap *h) {
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_NIL;
  const task_ctx *c = running_task(self);
  return keel_cons(h, keel_self(self), c != NULL ? c->callers : KEEL_NIL);
}

int keel_task_callers(keel_proc *self, keel_heap *h, keel_term *list) {
  if (self == NULL || h == NULL || list == NULL)
    return KEEL_EINVAL;
  if (keel_current() != self)
    return KEEL_ESTATE;
  const task_ctx *c = running_task(self);
  keel_term l = c != NULL ? keel_term_copy(h, c->callers) : KEEL_NIL;
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *list = l;
  return KEEL_OK;
}

static void task_body(keel_proc *self, void *arg) {
  keel_term owner = (keel_term)(uintptr_t)arg;
  keel_heap *ph = keel_proc_heap(self);
  keel_proc_set_state(self, NULL); /* no task_ctx until go */
  go_match_arg ga = {.go = go_atom(), .owner_mon = KEEL_NONE};
  if (owner != KEEL_NONE &&
      keel_monitor(self, owner, 0, ph, &ga.owner_mon) != KEEL_OK)
    return;
  keel_term m;
  if (keel_receive(self, go_match, &ga, KEEL_INFINITY, &m) != KEEL_OK ||
      keel_tuple_arity(m) != 5)
    return; /* the owner died before it let the task run */
  if (ga.owner_mon != KEEL_NONE)
    (void)keel_demonitor(self, ga.owner_mon, KEEL_DEMONITOR_FLUSH);
  task_spec spec;
  if (!keel__task_spec_get(keel_tuple_get(m, 2), &spec.fn, &spec.arg))
    return;
  keel_term alias = keel_term_copy(ph, keel_tuple_get(m, 1));
  keel_term input = keel_term_copy(ph, keel_tuple_get(m, 3));
  task_ctx ctx = {.callers = keel_term_copy(ph, keel_tuple_get(m, 4))};
  if (alias == KEEL_NONE || input == KEEL_NONE || ctx.callers == KEEL_NONE) {
    (void)keel_stop(self, KEEL_ATOM(SYSTEM_LIMIT));
    return;
  }
  keel_proc_set_state(self, &ctx);
  keel_term v = spec.fn(self, spec.arg, input, ph);
  keel_proc_set_state(self, NULL);
  if (v == KEEL_NONE || alias == KEEL_ATOM(UNDEFINED))
    return;
  keel_term reply = keel_tuple(ph, 2, alias, v);
  if (reply == KEEL_NONE || keel_send(alias, reply) != KEEL_OK)
    (void)keel_stop(self, KEEL_ATOM(SYSTEM_LIMIT));
}

int keel__task_spawn(keel_term owner, bool link, keel_term *pid) {
  keel_spawn_opts o = {.link = link};
  return keel_spawn_fiber(task_body, (void *)(uintptr_t)owner, &o, pid);
}

int keel__task_go(keel_term pid, keel_term alias, keel_task_fn fn, void *arg,
                  keel_term input) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term sb = keel__task_spec_term(&h, fn, arg);
  keel_term callers = keel__task_child_callers(&h);
  keel_term go = sb == KEEL_NONE || callers == KEEL_NONE
                     ? KEEL_NONE
                     : keel_tuple(&h, 5, go_atom(), alias, sb, input, callers);
  int rc = go == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, go);
  keel_heap_destroy(&h);
  return rc;
}

/* ---- async and friends ----------------------------------------------------
 */

int keel_task_async(keel_proc *self, keel_task_fn fn, void *arg,
                    keel_term input, keel_heap *h, keel_task *out) {
  if (self == NULL || fn == NULL || h == NULL || out == NULL ||
      input == KEEL_NONE)
    return KEEL_EINVAL;
  if (keel_current() != self)
    return KEEL_ESTATE;
  keel_term pid, ref;
  int rc = keel__task_spawn(KEEL_NONE, true, &pid);
  if (rc != KEEL_OK)
    return rc;
  rc = keel_monitor(self, pid,
                    KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, h, &ref);
  if (rc == KEEL_OK)
    rc = keel__task_go(pid, ref, fn, arg, input);
  if (rc != KEEL_OK) {
    (void)keel_unlink(self, pid);
    (void)keel_exit(pid, KEEL_ATOM(KILL));
    return rc;
  }
  *out = (keel_task){
      .pid = pid, .ref = ref, .owner = keel_self(self), .linked = true};
  return KEEL_OK;
}

bool keel_task_reply_match(const keel_task *t, keel_term msg,
                           keel_task_result *out) {
  if (t == NULL || !keel__task_msg_for(t->ref, msg))
    return false;
  if (out != NULL) {
    bool down = keel_tuple_arity(msg) == 5;
    out->status = down ? KEEL_TASK_EXIT : KEEL_TASK_REPLY;
    out->value = keel_tuple_get(msg, down ? 4 : 1);
  }
  return true;
}

static int check_owner(keel_proc *self, const keel_task *t) {
  if (self == NULL || t == NULL)
    return KEEL_EINVAL;
  if (keel_current() != self || t->owner != keel_self(self))
    return KEEL_ESTATE;
  return KEEL_OK;
}

/* Stores what msg says about t into out, copying into h. */
static int take_answer(const keel_task *t, keel_term msg, keel_heap *h,
                       keel_task_result *out) {
  keel_task_result r;
  if (!keel_task_reply_match(t, msg, &r))
    return KEEL_EINVAL;
  keel_term v = keel_term_copy(h, r.value);
  if (v == KEEL_NONE)
    return KEEL_ENOMEM;
  out->status = r.status;
  out->value = v;
  return KEEL_OK;
}

typedef struct many_arg {
  const keel_task *tasks;
  size_t n;
  const keel_task_result *out;
} many_arg;

static bool many_match(keel_term msg, void *arg) {
  const many_arg *a = arg;
  for (size_t i = 0; i < a->n; i++)
    if (a->out[i].status == KEEL_TASK_PENDING &&
        keel__task_msg_for(a->tasks[i].ref, msg))
      return true;
  return false;
}

static int64_t remaining(int64_t timeout_ms, uint64_t deadline) {
  if (timeout_ms < 0)
    return KEEL_INFINITY;
  uint64_t now = keel__task_now_ms();
  return now >= deadline ? 0 : (int64_t)(deadline - now);
}

int keel_task_yield_many(keel_proc *self, keel_task *tasks, size_t n,
                         int64_t timeout_ms, keel_heap *h,
                         keel_task_result *out) {
  if (self == NULL || h == NULL || (n > 0 && (tasks == NULL || out == NULL)) ||
      timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  for (size_t i = 0; i < n; i++) {
    int rc = check_owner(self, &tasks[i]);
    if (rc != KEEL_OK)
      return rc;
    out[i] = (keel_task_result){KEEL_TASK_PENDING, KEEL_NONE};
  }
  uint64_t deadline =
      timeout_ms < 0 ? 0 : keel__task_now_ms() + (uint64_t)timeout_ms;
  many_arg ma = {tasks, n, out};
  size_t done = 0;
  while (done < n) {
    keel_term m;
    int rc = keel_receive(self, many_match, &ma,
                          remaining(timeout_ms, deadline), &m);
    if (rc == KEEL_ETIMEDOUT)
      break;
    if (rc != KEEL_OK)
      return rc;
    for (size_t i = 0; i < n; i++) {
      if (out[i].status != KEEL_TASK_PENDING ||
          !keel__task_msg_for(tasks[i].ref, m))
        continue;
      rc = take_answer(&tasks[i], m, h, &out[i]);
      if (rc != KEEL_OK)
        return rc;
      done++;
      break;
    }
  }
  return (int)done;
}

int keel_task_yield(keel_proc *self, keel_task *t, int64_t timeout_ms,
                    keel_heap *h, keel_task_result *out) {
  if (t == NULL || out == NULL)
    return KEEL_EINVAL;
  int rc = keel_task_yield_many(self, t, 1, timeout_ms, h, out);
  if (rc < 0)
    return rc;
  return rc == 1 ? KEEL_OK : KEEL_ETIMEDOUT;
}

int keel_task_await(keel_proc *self, keel_task *t, int64_t timeout_ms,
                    keel_heap *h, keel_term *value) {
  if (value == NULL)
    return KEEL_EINVAL;
  keel_task_result r;
  int rc = keel_task_yield(self, t, timeout_ms, h, &r);
  if (rc != KEEL_OK)
    return rc;
  *value = r.value;
  return r.status == KEEL_TASK_REPLY ? KEEL_OK : KEEL_ENOPROC;
}

int keel_task_shutdown(keel_proc *self, keel_task *t, int64_t timeout_ms,
                       keel_heap *h, keel_task_result *out) {
  int rc = check_owner(self, t);
  if (rc != KEEL_OK)
    return rc;
  if (h == NULL || out == NULL || timeout_ms < KEEL_TASK_BRUTAL_KILL)
    return KEEL_EINVAL;
  bool brutal = timeout_ms == KEEL_TASK_BRUTAL_KILL;
  if (t->linked && (rc = keel_unlink(self, t->pid)) != KEEL_OK)
    return rc;
  t->linked = false;
  rc = keel_exit(t->pid, brutal ? KEEL_ATOM(KILL) : KEEL_ATOM(SHUTDOWN));
  if (rc == KEEL_OK)
    rc = keel_task_yield(self, t, brutal ? KEEL_INFINITY : timeout_ms, h, out);
  if (rc == KEEL_ETIMEDOUT) {
    rc = keel_exit(t->pid, KEEL_ATOM(KILL));
    if (rc == KEEL_OK)
      rc = keel_task_yield(self, t, KEEL_INFINITY, h, out);
  }
  (void)keel_flush_exit(self, t->pid);
  if (rc != KEEL_OK)
    return rc;
  if (out->status == KEEL_TASK_EXIT &&
      (out->value == KEEL_ATOM(SHUTDOWN) || out->value == KEEL_ATOM(KILLED)))
    *out = (keel_task_result){KEEL_TASK_PENDING, KEEL_NONE};
  return KEEL_OK;
}

static bool ref_match(keel_term msg, void *arg) {
  return keel__task_msg_for(*(const keel_term *)arg, msg);
}

int keel_task_ignore(keel_proc *self, keel_task *t, keel_heap *h,
                     keel_task_result *out) {
  if (self == NULL || t == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (keel_current() != self || t->owner != keel_self(self))
    return KEEL_ESTATE;
  if (t->linked) {
    int rc = keel_unlink(self, t->pid);
    if (rc != KEEL_OK)
      return rc;
    t->linked = false;
  }
  /* No DOWN is queued after this, and no reply through the alias either;
   * what is already queued stays. */
  (void)keel_demonitor(self, t->ref, 0);
  *out = (keel_task_result){KEEL_TASK_PENDING, KEEL_NONE};
  if (!keel_proc_is_fiber(self))
    return KEEL_OK; /* a handler sees a queued answer in its handler */
  keel_term m;
  if (keel_receive(self, ref_match, &t->ref, 0, &m) == KEEL_OK)
    return take_answer(t, m, h, out);
  return KEEL_OK;
}

int keel_task_start(keel_task_fn fn, void *arg, keel_term input, bool link,
                    keel_term *pid) {
  if (fn == NULL || input == KEEL_NONE)
    return KEEL_EINVAL;
  keel_proc *self = keel_current();
  if (link && self == NULL)
    return KEEL_ESTATE;
  keel_term p;
  int rc = keel__task_spawn(KEEL_NONE, link, &p);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__task_go(p, KEEL_ATOM(UNDEFINED), fn, arg, input);
  if (rc != KEEL_OK) {
    if (link)
      (void)keel_unlink(self, p);
    (void)keel_exit(p, KEEL_ATOM(KILL));
    return rc;
  }
  if (pid != NULL)
    *pid = p;
  return KEEL_OK;
}

/* ---- plain threads ----------------------------------------------------------
 */

typedef struct proxy_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done, ran;
  void (*body)(keel_proc *self, void *ctx);
  void *ctx;
} proxy_ctx;

static void proxy_body(keel_proc *self, void *arg) {
  proxy_ctx *p = arg;
  p->body(self, p->ctx);
  p->ran = true;
}

static void proxy_end(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  proxy_ctx *p = state;
  pthread_mutex_lock(&p->mu);
  p->done = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

int keel__task_proxy(void (*body)(keel_proc *self, void *ctx), void *ctx) {
  if (keel_current() != NULL || keel_sim_active() ||
      keel_node_schedulers() == 0)
    return KEEL_ESTATE;
  proxy_ctx p = {.body = body, .ctx = ctx};
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  keel_spawn_opts o = {.terminate = proxy_end};
  int rc = keel_spawn_fiber(proxy_body, &p, &o, NULL);
  if (rc == KEEL_OK) {
    pthread_mutex_lock(&p.mu);
    while (!p.done)
      pthread_cond_wait(&p.cv, &p.mu);
    pthread_mutex_unlock(&p.mu);
    rc = p.ran ? KEEL_OK : KEEL_ESTATE;
  }
  pthread_cond_destroy(&p.cv);
  pthread_mutex_destroy(&p.mu);
  return rc;
}

typedef struct run_ctx {
  keel_task_fn fn;
  void *arg;
  keel_term input;
  int64_t timeout_ms;
  keel_heap *h;
  keel_task_result *out;
  int rc;
} run_ctx;

static void run_body(keel_proc *self, void *arg) {
  run_ctx *c = arg;
  keel_task t;
  (void)keel_trap_exit(self, true); /* a crashing task must not kill us */
  c->rc =
      keel_task_async(self, c->fn, c->arg, c->input, keel_proc_heap(self), &t);
  if (c->rc != KEEL_OK)
    return;
  c->rc = keel_task_yield(self, &t, c->timeout_ms, c->h, c->out);
  if (c->rc == KEEL_ETIMEDOUT) {
    keel_task_result r;
    int rc = keel_task_shutdown(self, &t, KEEL_TASK_BRUTAL_KILL, c->h, &r);
    if (rc != KEEL_OK)
      c->rc = rc;
    else if (r.status != KEEL_TASK_PENDING) {
      *c->out = r; /* it answered just before the kill */
      c->rc = KEEL_OK;
    }
  }
}

int keel_task_run(keel_task_fn fn, void *arg, keel_term input,
                  int64_t timeout_ms, keel_heap *h, keel_task_result *out) {
  if (fn == NULL || h == NULL || out == NULL || input == KEEL_NONE ||
      timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  run_ctx c = {fn, arg, input, timeout_ms, h, out, KEEL_ESTATE};
  int rc = keel__task_proxy(run_body, &c);
  return rc != KEEL_OK ? rc : c.rc;
}
