/*
 * task_stream.c - Task.async_stream over an array: at most
 * max_concurrency tasks at once, each with its own deadline from its
 * start, results in input or completion order.
 */
#include <stdlib.h>

#include "keel/task.h"
#include "otp/task_internal.h"

#define STREAM_DEFAULT_TIMEOUT_MS 5000

typedef struct slot {
  keel_task t;
  size_t idx;        /* input index */
  uint64_t deadline; /* ms on keel__task_now_ms's clock */
  bool busy;
} slot;

typedef struct stream {
  keel_proc *self;
  const keel_term *inputs;
  size_t n;
  keel_task_fn fn;
  void *arg;
  keel_task_stream_opts o;
  keel_heap *h;
  keel_term *results;
  slot *slots;
  size_t nslots, running, next, emitted;
  keel_heap refs; /* monitor refs of the tasks */
} stream;

static int start_one(stream *s, slot *sl) {
  keel_term in = s->inputs[s->next];
  int rc = s->o.supervisor != KEEL_NONE
               ? keel_task_sup_async_nolink(s->self, s->o.supervisor, s->fn,
                                            s->arg, in, &s->refs, &sl->t)
               : keel_task_async(s->self, s->fn, s->arg, in, &s->refs, &sl->t);
  if (rc != KEEL_OK)
    return rc;
  sl->idx = s->next++;
  sl->busy = true;
  sl->deadline = s->o.timeout_ms < 0
                     ? UINT64_MAX
                     : keel__task_now_ms() + (uint64_t)s->o.timeout_ms;
  s->running++;
  return KEEL_OK;
}

/* Stores {ok, V} / {exit, R} for sl's input and frees the slot. */
static int emit(stream *s, slot *sl, keel_task_status st, keel_term v) {
  keel_term tag = st == KEEL_TASK_REPLY ? KEEL_ATOM(OK) : keel_atom("exit");
  keel_term val = keel_term_copy(s->h, v);
  if (val != KEEL_NONE && st != KEEL_TASK_REPLY && s->o.zip_input_on_exit)
    val = keel_tuple(s->h, 2, keel_term_copy(s->h, s->inputs[sl->idx]), val);
  keel_term r = val == KEEL_NONE ? KEEL_NONE : keel_tuple(s->h, 2, tag, val);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  s->results[s->o.unordered ? s->emitted : sl->idx] = r;
  s->emitted++;
  sl->busy = false;
  s->running--;
  return KEEL_OK;
}

static void kill_all(stream *s) {
  for (size_t i = 0; i < s->nslots; i++)
    if (s->slots[i].busy) {
      keel_task_result r;
      (void)keel_task_shutdown(s->self, &s->slots[i].t, KEEL_TASK_BRUTAL_KILL,
                               s->h, &r);
      s->slots[i].busy = false;
    }
  s->running = 0;
}

static bool any_match(keel_term msg, void *arg) {
  const stream *s = arg;
  for (size_t i = 0; i < s->nslots; i++)
    if (s->slots[i].busy && keel__task_msg_for(s->slots[i].t.ref, msg))
      return true;
  return false;
}

/* The overrun tasks: exit mode fails the stream, kill mode ends them. */
static int expire(stream *s) {
  uint64_t now = keel__task_now_ms();
  for (size_t i = 0; i < s->nslots; i++) {
    slot *sl = &s->slots[i];
    if (!sl->busy || sl->deadline > now)
      continue;
    if (s->o.on_timeout == KEEL_TASK_TIMEOUT_EXIT)
      return KEEL_ETIMEDOUT;
    keel_task_result r;
    keel_heap tmp;
    keel_heap_init(&tmp);
    int rc =
        keel_task_shutdown(s->self, &sl->t, KEEL_TASK_BRUTAL_KILL, &tmp, &r);
    if (rc == KEEL_OK)
      rc = r.status == KEEL_TASK_PENDING
               ? emit(s, sl, KEEL_TASK_EXIT, KEEL_ATOM(TIMEOUT))
               : emit(s, sl, r.status, r.value);
    keel_heap_destroy(&tmp);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

static int64_t wait_ms(const stream *s) {
  uint64_t first = UINT64_MAX, now = keel__task_now_ms();
  for (size_t i = 0; i < s->nslots; i++)
    if (s->slots[i].busy && s->slots[i].deadline < first)
      first = s->slots[i].deadline;
  if (first == UINT64_MAX)
    return KEEL_INFINITY;
  return first <= now ? 0 : (int64_t)(first - now);
}

static int step(stream *s) {
  for (size_t i = 0; i < s->nslots && s->next < s->n; i++)
    if (!s->slots[i].busy) {
      int rc = start_one(s, &s->slots[i]);
      if (rc != KEEL_OK)
        return rc;
    }
  keel_term m;
  int rc = keel_receive(s->self, any_match, s, wait_ms(s), &m);
  if (rc == KEEL_ETIMEDOUT)
    return expire(s);
  if (rc != KEEL_OK)
    return rc;
  for (size_t i = 0; i < s->nslots; i++) {
    keel_task_result r;
    if (s->slots[i].busy && keel_task_reply_match(&s->slots[i].t, m, &r))
      return emit(s, &s->slots[i], r.status, r.value);
  }
  return KEEL_OK;
}

int keel_task_async_stream(keel_proc *self, const keel_term *inputs, size_t n,
                           keel_task_fn fn, void *arg,
                           const keel_task_stream_opts *opts, keel_heap *h,
                           keel_term *results) {
  if (self == NULL || fn == NULL || h == NULL ||
      (n > 0 && (inputs == NULL || results == NULL)))
    return KEEL_EINVAL;
  if (keel_current() != self || !keel_proc_is_fiber(self))
    return KEEL_ESTATE;
  stream s = {.self = self,
              .inputs = inputs,
              .n = n,
              .fn = fn,
              .arg = arg,
              .h = h,
              .results = results};
  s.o = opts != NULL ? *opts : (keel_task_stream_opts){0};
  if (opts == NULL)
    s.o.supervisor = KEEL_NONE;
  if (s.o.timeout_ms == 0)
    s.o.timeout_ms = STREAM_DEFAULT_TIMEOUT_MS;
  if (s.o.timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  size_t maxc =
      s.o.max_concurrency != 0 ? s.o.max_concurrency : keel_node_schedulers();
  s.nslots = maxc < n ? maxc : n;
  if (n == 0)
    return KEEL_OK;
  s.slots = calloc(s.nslots, sizeof *s.slots);
  if (s.slots == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&s.refs);
  int rc = KEEL_OK;
  while (rc == KEEL_OK && (s.next < n || s.running > 0))
    rc = step(&s);
  if (rc != KEEL_OK)
    kill_all(&s);
  keel_heap_destroy(&s.refs);
  free(s.slots);
  return rc;
}
