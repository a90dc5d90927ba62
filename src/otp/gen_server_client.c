/*
 * gen_server_client.c - the caller's side of gen_server: start with init
 * acknowledgement, call (monitor + alias with reply_demonitor, receive
 * mark), cast, reply, stop, send_request / receive_response /
 * check_response and the sys-like requests. Blocking work runs in the
 * calling fiber, or in a proxy fiber while a plain thread waits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "keel/clock.h"
#include "keel/gen_server.h"
#include "keel/registry.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "keel/telemetry.h"
#include "otp/gen_server_internal.h"

/* An atom looked up once (atoms live as long as the OS process). */
static keel_term cached_atom(_Atomic keel_term *slot, const char *name) {
  keel_term a = atomic_load_explicit(slot, memory_order_relaxed);
  if (a == KEEL_NONE) {
    a = keel_atom(name);
    atomic_store_explicit(slot, a, memory_order_relaxed);
  }
  return a;
}

keel_term keel__gs_atom_init(void) {
  static _Atomic keel_term a;
  return cached_atom(&a, "$gen_init");
}

keel_term keel__gs_atom_system(void) {
  static _Atomic keel_term a;
  return cached_atom(&a, "$gen_system");
}

const char keel__gs_tag_replace_state = 'r';
const char keel__gs_tag_change_code = 'c';

typedef struct gs_ptr {
  const void *tag;
  keel__gs_fn fn;
  const void *arg;
} gs_ptr;

keel_term keel__gs_ptr_term(keel_heap *h, const void *tag, keel__gs_fn fn,
                            const void *arg) {
  keel_resource *r = keel_resource_new(sizeof(gs_ptr), NULL);
  if (r == NULL)
    return KEEL_NONE;
  gs_ptr *p = keel_resource_data(r);
  p->tag = tag;
  p->fn = fn;
  p->arg = arg;
  keel_term t = keel_resource_term(h, r);
  keel_resource_release(r);
  return t;
}

bool keel__gs_ptr_get(keel_term t, const void *tag, keel__gs_fn *fn,
                      const void **arg) {
  keel_resource *r = keel_resource_get(t);
  if (r == NULL)
    return false;
  const gs_ptr *p = keel_resource_data(r);
  if (p->tag != tag)
    return false;
  *fn = p->fn;
  *arg = p->arg;
  return true;
}

/* ---- running blocking work --------------------------------------------- */

typedef struct proxy {
  keel__gs_blocking_fn fn;
  void *arg;
  int rc;
  bool done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} proxy;

static void proxy_main(keel_proc *self, void *arg) {
  proxy *p = arg;
  p->rc = p->fn(self, p->arg);
}

/* Terminate callback of the proxy: signals the waiting thread whatever
 * ended the proxy (p->rc stays KEEL_ESTATE if it was killed). */
static void proxy_done(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  proxy *p = state;
  pthread_mutex_lock(&p->mu);
  p->done = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static bool proxy_finished(void *arg) {
  proxy *p = arg;
  pthread_mutex_lock(&p->mu);
  bool done = p->done;
  pthread_mutex_unlock(&p->mu);
  return done;
}

/* Waits for the proxy: on a threaded node on the condition variable; on a
 * simulated one (keel/sim.h) by driving the simulation, which runs on this
 * thread. A simulation that goes quiet first will never finish the work:
 * the proxy is killed (its terminate still signals) and the wait fails. */
static int proxy_wait(proxy *p, keel_term pid) {
  if (keel_sim_active()) {
    if (keel_sim_run(proxy_finished, p, UINT64_MAX) == KEEL_OK)
      return p->rc;
    (void)keel_exit(pid, KEEL_ATOM(KILL));
    (void)keel_sim_run(proxy_finished, p, UINT64_MAX);
    return KEEL_ETIMEDOUT;
  }
  pthread_mutex_lock(&p->mu);
  while (!p->done)
    pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  return p->rc;
}

int keel__gs_run_blocking(keel__gs_blocking_fn fn, void *arg) {
  keel_proc *cur = keel_current();
  if (cur != NULL)
    return keel_proc_is_fiber(cur) ? fn(cur, arg) : KEEL_ESTATE;
  proxy p = {.fn = fn, .arg = arg, .rc = KEEL_ESTATE};
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  keel_spawn_opts so = {.terminate = proxy_done};
  keel_term pid;
  int rc = keel_spawn_fiber(proxy_main, &p, &so, &pid);
  if (rc == KEEL_OK)
    rc = proxy_wait(&p, pid);
  pthread_cond_destroy(&p.cv);
  pthread_mutex_destroy(&p.mu);
  return rc;
}

/* ---- waiting for a reply or a 'DOWN' ----------------------------------- */

/* {Ref, _} or {'DOWN', Ref, process, _, _}. */
static bool match_ref(keel_term m, void *arg) {
  keel_term ref = *(const keel_term *)arg;
  if (!keel_is_tuple(m))
    return false;
  size_t n = keel_tuple_arity(m);
  if (n == 2)
    return keel_eq_exact(keel_tuple_get(m, 0), ref);
  return n == 5 && keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), ref);
}

static int store(keel_heap *h, keel_term *out, keel_term t) {
  keel_term c = keel_term_copy(h, t);
  if (c == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = c;
  return KEEL_OK;
}

/* Takes m, a message matching ref: KEEL_OK with the reply, or
 * KEEL_ENOPROC with the 'DOWN' reason. */
static int take(keel_term m, keel_heap *h, keel_term *out) {
  if (keel_tuple_arity(m) == 2) {
    int rc = store(h, out, keel_tuple_get(m, 1));
    return rc;
  }
  int rc = store(h, out, keel_tuple_get(m, 4));
  return rc == KEEL_OK ? KEEL_ENOPROC : rc;
}

/* Waits for the answer to ref (a monitor of self, possibly with an alias).
 * On timeout the monitor and alias end (a late reply is dropped) and one
 * reply that slipped in before that is still taken, as OTP's gen:call. */
static int await_ref(keel_proc *self, keel_term ref, int64_t tmo, keel_heap *h,
                     keel_term *out) {
  keel_term m;
  int rc = keel_receive(self, match_ref, &ref, tmo, &m);
  if (rc == KEEL_ETIMEDOUT) {
    (void)keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
    rc = keel_receive(self, match_ref, &ref, 0, &m);
    if (rc == KEEL_ETIMEDOUT) {
      *out = KEEL_ATOM(TIMEOUT);
      return KEEL_ETIMEDOUT;
    }
  }
  return rc == KEEL_OK ? take(m, h, out) : rc;
}

static bool bad_timeout(int64_t tmo) {
  return tmo < KEEL_INFINITY || (tmo > 0 && (uint64_t)tmo > KEEL_TIMER_MAX_MS);
}

/* Whether name is {via, Module, Name} with an atom Module, or
 * {global, Name}. */
static bool is_via_name(keel_term name) {
  if (keel_is_tuple(name) && keel_tuple_arity(name) == 2)
    return keel_tuple_get(name, 0) == keel_atom("global");
  return keel_is_tuple(name) && keel_tuple_arity(name) == 3 &&
         keel_tuple_get(name, 0) == keel_atom("via") &&
         keel_is_atom(keel_tuple_get(name, 1));
}

/* The pid of server (a pid, a registered name or a via name): KEEL_OK,
 * KEEL_ENOPROC (no such name) or KEEL_EBADARG. */
static int resolve(keel_term server, keel_term *pid) {
  if (keel_is_atom(server) || is_via_name(server)) {
    *pid = keel_name_whereis(server);
    return keel_is_local_pid(*pid) ? KEEL_OK : KEEL_ENOPROC;
  }
  *pid = server;
  return keel_is_local_pid(server) ? KEEL_OK : KEEL_EBADARG;
}

/* Marks the receive, then monitors pid with an alias that ends with the
 * first reply. The mark goes first: a 'DOWN' for a dead pid may be queued
 * by keel_monitor itself, and older messages cannot hold the new ref. */
static int mark_and_monitor(keel_proc *self, keel_term pid, keel_heap *h,
                            keel_term *ref) {
  int rc = keel_receive_mark(self);
  if (rc == KEEL_OK)
    rc = keel_monitor(
        self, pid, KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, h, ref);
  return rc;
}

/* ---- call --------------------------------------------------------------- */

/* Words of a call's own terms: an alias ref, {Pid, Ref} and {Tag, From,
 * Request}. */
#define CALL_SCRATCH_WORDS 24

int keel__gs_call_from(keel_proc *self, keel_term tag, keel_term server,
                       keel_term request, int64_t timeout_ms, keel_heap *h,
                       keel_term *reply) {
  keel_term pid;
  int rc = resolve(server, &pid);
  if (rc != KEEL_OK) {
    *reply = KEEL_ATOM(NOPROC);
    return rc;
  }
  if (pid == keel_self(self)) {
    *reply = keel_atom("calling_self");
    return KEEL_ESTATE;
  }
  /* The alias ref and two tuples (the request is referenced, not copied):
   * a fixed buffer on the stack, no allocation. */
  uint64_t words[CALL_SCRATCH_WORDS];
  keel_heap scratch;
  keel_heap_init_fixed(&scratch, words, CALL_SCRATCH_WORDS);
  keel_term ref;
  rc = mark_and_monitor(self, pid, &scratch, &ref);
  keel_term msg = KEEL_NONE;
  if (rc == KEEL_OK) {
    keel_term from = keel_tuple(&scratch, 2, keel_self(self), ref);
    if (from != KEEL_NONE)
      msg = keel_tuple(&scratch, 3, tag, from, request);
    rc = msg == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, msg);
    if (rc == KEEL_OK)
      rc = await_ref(self, ref, timeout_ms, h, reply);
    else
      (void)keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
  }
  keel_heap_destroy(&scratch);
  return rc;
}

typedef struct call_ctx {
  keel_term tag, server, request;
  int64_t timeout;
  keel_heap *h;
  keel_term *reply;
} call_ctx;

static int call_fn(keel_proc *self, void *arg) {
  call_ctx *c = arg;
  return keel__gs_call_from(self, c->tag, c->server, c->request, c->timeout,
                            c->h, c->reply);
}

int keel__gs_call(keel_term tag, keel_term server, keel_term request,
                  int64_t timeout_ms, keel_heap *h, keel_term *reply) {
  if (h == NULL || reply == NULL || bad_timeout(timeout_ms) ||
      request == KEEL_NONE)
    return KEEL_EINVAL;
  call_ctx c = {tag, server, request, timeout_ms, h, reply};
  return keel__gs_run_blocking(call_fn, &c);
}

/* ---- opt-in call latency events ------------------------------------------ */

static atomic_bool call_events;
static _Atomic(keel_tel_event *) ev_call_stop;

void keel_gen_server_call_telemetry(bool on) {
  atomic_store_explicit(&call_events, on, memory_order_relaxed);
}

static keel_tel_event *call_stop_event(void) {
  keel_tel_event *e = atomic_load_explicit(&ev_call_stop, memory_order_acquire);
  if (e == NULL) {
    keel_term a[4] = {keel_atom("keel"), keel_atom("gen_server"),
                      keel_atom("call"), keel_atom("stop")};
    if (keel_tel_event_get(a, 4, &e) != KEEL_OK)
      return NULL;
    atomic_store_explicit(&ev_call_stop, e, memory_order_release);
  }
  return e;
}

static void report_call(keel_term server, uint64_t t0, uint64_t t1, int rc,
                        keel_term reply) {
  keel_tel_measure m[2] = {{keel_atom("duration"), (double)(t1 - t0)},
                           {keel_atom("monotonic_time"), (double)t1}};
  keel_tel_meta md[3] = {
      {keel_atom("server"), server},
      {keel_atom("result"), rc == KEEL_OK ? KEEL_ATOM(OK) : KEEL_ATOM(ERROR)},
      {KEEL_ATOM(ERROR),
       rc == KEEL_OK || reply == KEEL_NONE ? KEEL_ATOM(UNDEFINED) : reply}};
  keel_tel_execute(call_stop_event(), m, 2, md, 3);
}

int keel_gen_server_call(keel_term server, keel_term request,
                         int64_t timeout_ms, keel_heap *h, keel_term *reply) {
  if (!atomic_load_explicit(&call_events, memory_order_relaxed))
    return keel__gs_call(KEEL_ATOM(CALL), server, request, timeout_ms, h,
                         reply);
  if (reply != NULL) /* read after the call whatever path it took */
    *reply = KEEL_NONE;
  uint64_t t0 = keel_monotonic_ns();
  int rc =
      keel__gs_call(KEEL_ATOM(CALL), server, request, timeout_ms, h, reply);
  report_call(server, t0, keel_monotonic_ns(), rc,
              reply != NULL ? *reply : KEEL_NONE);
  return rc;
}

int keel_gen_server_cast(keel_term server, keel_term msg) {
  if (msg == KEEL_NONE)
    return KEEL_EINVAL;
  bool via = is_via_name(server);
  if (!keel_is_atom(server) && !keel_is_local_pid(server) && !via)
    return KEEL_EBADARG;
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term m = keel_tuple(&h, 2, KEEL_ATOM(CAST), msg);
  int rc = m == KEEL_NONE ? KEEL_ENOMEM
           : via          ? keel_name_send(server, m)
                          : keel_send(server, m);
  keel_heap_destroy(&h);
  return rc == KEEL_ENOPROC ? KEEL_OK : rc;
}

int keel_gen_server_reply(keel_term from, keel_term reply) {
  if (!keel_is_tuple(from) || keel_tuple_arity(from) != 2 ||
      !keel_is_ref(keel_tuple_get(from, 1)) || reply == KEEL_NONE)
    return KEEL_EBADARG;
  keel_term tag = keel_tuple_get(from, 1);
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term m = keel_tuple(&h, 2, tag, reply);
  int rc = m == KEEL_NONE ? KEEL_ENOMEM : keel_send(tag, m);
  keel_heap_destroy(&h);
  return rc;
}

/* ---- send_request ------------------------------------------------------- */

int keel_gen_server_send_request(keel_term server, keel_term request,
                                 keel_heap *h, keel_term *req_id) {
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_ESTATE;
  if (h == NULL || req_id == NULL || request == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid;
  int rc = resolve(server, &pid);
  if (rc != KEEL_OK)
    return rc;
  keel_term ref;
  rc = keel_monitor(self, pid,
                    KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, h, &ref);
  if (rc != KEEL_OK)
    return rc;
  keel_heap scratch;
  keel_heap_init(&scratch);
  keel_term from = keel_tuple(&scratch, 2, keel_self(self), ref);
  keel_term msg = from == KEEL_NONE
                      ? KEEL_NONE
                      : keel_tuple(&scratch, 3, KEEL_ATOM(CALL), from, request);
  rc = msg == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, msg);
  keel_heap_destroy(&scratch);
  if (rc != KEEL_OK) {
    (void)keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
    return rc;
  }
  *req_id = ref;
  return KEEL_OK;
}

/* The checks of receive_response and wait_response: KEEL_OK with *self
 * the calling fiber, else the error. */
static int response_args(keel_term req_id, int64_t timeout_ms,
                         const keel_heap *h, const keel_term *reply,
                         keel_proc **self) {
  *self = keel_current();
  if (*self == NULL || !keel_proc_is_fiber(*self))
    return KEEL_ESTATE;
  if (h == NULL || reply == NULL || !keel_is_ref(req_id) ||
      bad_timeout(timeout_ms))
    return KEEL_EINVAL;
  return KEEL_OK;
}

int keel_gen_server_receive_response(keel_term req_id, int64_t timeout_ms,
                                     keel_heap *h, keel_term *reply) {
  keel_proc *self;
  int rc = response_args(req_id, timeout_ms, h, reply, &self);
  return rc == KEEL_OK ? await_ref(self, req_id, timeout_ms, h, reply) : rc;
}

int keel_gen_server_wait_response(keel_term req_id, int64_t timeout_ms,
                                  keel_heap *h, keel_term *reply) {
  keel_proc *self;
  int rc = response_args(req_id, timeout_ms, h, reply, &self);
  if (rc != KEEL_OK)
    return rc;
  keel_term ref = req_id, m;
  rc = keel_receive(self, match_ref, &ref, timeout_ms, &m);
  return rc == KEEL_OK ? take(m, h, reply) : rc;
}

int keel_gen_server_check_response(keel_term msg, keel_term req_id,
                                   keel_heap *h, keel_term *reply) {
  if (h == NULL || reply == NULL || !keel_is_ref(req_id))
    return KEEL_EINVAL;
  keel_term ref = req_id;
  if (!match_ref(msg, &ref))
    return KEEL_ENOMATCH;
  return take(msg, h, reply);
}

/* ---- stop ---------------------------------------------------------------- */

typedef struct stop_ctx {
  keel_term server, reason;
  int64_t timeout;
} stop_ctx;

static int stop_fn(keel_proc *self, void *arg) {
  stop_ctx *c = arg;
  keel_term pid;
  int rc = resolve(c->server, &pid);
  if (rc != KEEL_OK)
    return rc;
  keel_heap scratch;
  keel_heap_init(&scratch);
  keel_term ref, out = KEEL_NONE;
  rc = keel_receive_mark(self);
  if (rc == KEEL_OK)
    rc = keel_monitor(self, pid, 0, &scratch, &ref);
  if (rc == KEEL_OK) {
    keel_term req = keel_tuple(&scratch, 2, keel_atom("terminate"), c->reason);
    keel_term from = keel_tuple(&scratch, 2, keel_self(self), ref);
    keel_term msg =
        req == KEEL_NONE || from == KEEL_NONE
            ? KEEL_NONE
            : keel_tuple(&scratch, 3, keel__gs_atom_system(), from, req);
    rc = msg == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, msg);
    if (rc == KEEL_OK) {
      rc = await_ref(self, ref, c->timeout, &scratch, &out);
      if (rc == KEEL_ENOPROC) /* the 'DOWN': noproc when it was not alive */
        rc = out == KEEL_ATOM(NOPROC) ? KEEL_ENOPROC : KEEL_OK;
    }
  }
  keel_heap_destroy(&scratch);
  return rc;
}

int keel_gen_server_stop(keel_term server, keel_term reason,
                         int64_t timeout_ms) {
  if (reason == KEEL_NONE || bad_timeout(timeout_ms))
    return KEEL_EINVAL;
  stop_ctx c = {server, reason, timeout_ms};
  return keel__gs_run_blocking(stop_fn, &c);
}

/* ---- start --------------------------------------------------------------- */

typedef struct start_ctx {
  keel__gs_spawn_fn spawn;
  const void *mod;
  keel_term arg;
  const keel_gen_server_opts *o;
  keel_term *pid;
  bool linked; /* the caller is a process and asked for a link */
} start_ctx;

static int spawn_gs(const void *mod, const keel_gen_server_opts *o, bool link,
                    keel_term parent, keel_term *pid) {
  keel_gen_server *gs = calloc(1, sizeof *gs);
  if (gs == NULL)
    return KEEL_ENOMEM;
  gs->mod = mod;
  keel_heap_init(&gs->name_heap);
  gs->name = keel_term_copy(&gs->name_heap, o->name);
  if (gs->name == KEEL_NONE && o->name != KEEL_NONE) {
    keel_heap_destroy(&gs->name_heap);
    free(gs);
    return KEEL_ENOMEM;
  }
  gs->hibernate_after = o->hibernate_after_ms;
  gs->fiber = o->fiber;
  gs->trap_exit = o->trap_exit;
  gs->parent = parent;
  gs->timeout = -1;
  gs->next_wait = KEEL_INFINITY;
  keel_spawn_opts so = {.terminate = keel__gs_free,
                        .link = link,
                        .stack_size = o->stack_size,
                        .monitor_ref = o->monitor_ref,
                        .monitor_heap = o->monitor_heap};
  int rc = gs->fiber ? keel_spawn_fiber(keel__gs_fiber_main, gs, &so, pid)
                     : keel_spawn(keel__gs_handler, gs, &so, pid);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&gs->name_heap);
    free(gs);
  }
  return rc;
}

static int spawn_server(start_ctx *c, keel_term parent, keel_term *pid) {
  return c->spawn(c->mod, c->o, c->linked, parent, pid);
}

static int send_init(keel_term pid, keel_term ack, keel_term arg) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = keel_tuple(&h, 3, keel__gs_atom_init(), ack, arg);
  int rc = m == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, m);
  keel_heap_destroy(&h);
  return rc;
}

static void set_reason(const keel_gen_server_opts *o, keel_term r) {
  if (o->reason_heap != NULL && o->reason != NULL) {
    keel_term c = keel_term_copy(o->reason_heap, r);
    *o->reason = c != KEEL_NONE ? c : KEEL_ATOM(SYSTEM_LIMIT);
  }
}

/* What init's acknowledgement ok | ignore | {stop, R} |
 * {error, {already_started, P}} means for the starter. */
static int decode_ack(start_ctx *c, keel_term ack, keel_term *pid) {
  if (ack == KEEL_ATOM(OK))
    return KEEL_OK;
  if (ack == KEEL_ATOM(IGNORE))
    return KEEL_GEN_SERVER_IGNORED;
  keel_term r = keel_tuple_get(ack, 1);
  if (keel_tuple_get(ack, 0) == KEEL_ATOM(ERROR)) {
    *pid = keel_tuple_get(r, 1);
    set_reason(c->o, r);
    return KEEL_EEXIST;
  }
  set_reason(c->o, r);
  return KEEL_ENOPROC;
}

/* Kills a server whose init took too long, leaving no trace in self. */
static void abandon(keel_proc *self, keel_term pid, keel_term ref,
                    bool linked) {
  if (linked) {
    (void)keel_unlink(self, pid);
    (void)keel_flush_exit(self, pid);
  }
  (void)keel_exit(pid, KEEL_ATOM(KILL));
  if (ref != KEEL_NONE)
    (void)keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
}

static int start_fn(keel_proc *self, void *arg) {
  start_ctx *c = arg;
  keel_term pid;
  int rc = spawn_server(c, c->linked ? keel_self(self) : KEEL_NONE, &pid);
  if (rc != KEEL_OK)
    return rc;
  keel_heap scratch;
  keel_heap_init(&scratch);
  keel_term ref = KEEL_NONE, ack = KEEL_NONE;
  rc = mark_and_monitor(self, pid, &scratch, &ref);
  if (rc == KEEL_OK)
    rc = send_init(pid, ref, c->arg);
  if (rc == KEEL_OK) {
    int64_t tmo = c->o->timeout_ms == 0 ? 5000 : c->o->timeout_ms;
    rc = await_ref(self, ref, tmo, &scratch, &ack);
  }
  if (rc == KEEL_OK) {
    rc = decode_ack(c, ack, &pid);
  } else if (rc == KEEL_ENOPROC) {
    set_reason(c->o, ack);
  } else { /* timed out, or out of memory: the server is not wanted */
    if (rc == KEEL_ETIMEDOUT)
      set_reason(c->o, KEEL_ATOM(TIMEOUT));
    abandon(self, pid, ref, c->linked);
  }
  if (c->pid != NULL && (rc == KEEL_OK || rc == KEEL_EEXIST))
    *c->pid = pid;
  keel_heap_destroy(&scratch);
  return rc;
}

/* From a handler process: spawn and send init, without waiting. */
static int start_async(start_ctx *c, keel_proc *self) {
  keel_term pid;
  int rc = spawn_server(c, c->linked ? keel_self(self) : KEEL_NONE, &pid);
  if (rc != KEEL_OK)
    return rc;
  rc = send_init(pid, KEEL_ATOM(UNDEFINED), c->arg);
  if (rc != KEEL_OK) {
    (void)keel_exit(pid, KEEL_ATOM(KILL));
    return rc;
  }
  if (c->pid != NULL)
    *c->pid = pid;
  return KEEL_OK;
}

int keel_gen_server_start(const keel_gen_server_module *mod, keel_term arg,
                          const keel_gen_server_opts *opts, keel_term *pid) {
  static const keel_gen_server_opts none = {0};
  const keel_gen_server_opts *o = opts != NULL ? opts : &none;
  if (mod == NULL || mod->init == NULL ||
      mod->version != KEEL_GEN_SERVER_MODULE_V1 || arg == KEEL_NONE ||
      (o->name != KEEL_NONE && !is_via_name(o->name) &&
       (!keel_is_atom(o->name) || o->name == KEEL_ATOM(UNDEFINED))) ||
      bad_timeout(o->timeout_ms) || o->hibernate_after_ms < 0)
    return KEEL_EINVAL;
  return keel__gs_start(spawn_gs, mod, arg, o, pid);
}

int keel__gs_start(keel__gs_spawn_fn spawn, const void *mod, keel_term arg,
                   const keel_gen_server_opts *o, keel_term *pid) {
  keel_proc *cur = keel_current();
  if (o->monitor_ref != NULL && (cur == NULL || o->monitor_heap == NULL))
    return cur == NULL ? KEEL_ESTATE : KEEL_EINVAL;
  start_ctx c = {spawn, mod, arg, o, pid, o->link && cur != NULL};
  if (cur != NULL && !keel_proc_is_fiber(cur))
    return start_async(&c, cur);
  return keel__gs_run_blocking(start_fn, &c);
}

/* ---- sys ----------------------------------------------------------------- */

static int sys_call(keel_term server, keel_term req, int64_t tmo, keel_heap *h,
                    keel_term *out) {
  return keel__gs_call(keel__gs_atom_system(), server, req, tmo, h, out);
}

int keel_gen_server_get_state(keel_term server, int64_t timeout_ms,
                              keel_heap *h, keel_term *state) {
  return sys_call(server, keel_atom("get_state"), timeout_ms, h, state);
}

int keel_gen_server_get_status(keel_term server, int64_t timeout_ms,
                               keel_heap *h, keel_term *status) {
  return sys_call(server, keel_atom("get_status"), timeout_ms, h, status);
}

/* A request {Tag, Ptr, Extra} whose Ptr carries (fn, arg); the answer
 * is ok or {error, Code}. */
int keel__gs_sys_ptr(keel_term server, const char *tag, const void *ptag,
                     keel__gs_fn fn, const void *arg, keel_term extra,
                     int64_t tmo) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term p = keel__gs_ptr_term(&h, ptag, fn, arg);
  keel_term req =
      p == KEEL_NONE ? KEEL_NONE : keel_tuple(&h, 3, keel_atom(tag), p, extra);
  keel_term out = KEEL_NONE;
  int rc =
      req == KEEL_NONE ? KEEL_ENOMEM : sys_call(server, req, tmo, &h, &out);
  if (rc == KEEL_OK && out != KEEL_ATOM(OK)) { /* {error, Code} */
    int64_t code = KEEL_EINVAL;
    if (keel_is_tuple(out) && keel_tuple_arity(out) == 2)
      (void)keel_get_int64(keel_tuple_get(out, 1), &code);
    rc = (int)code;
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_gen_server_replace_state(keel_term server, keel_gs_state_fn fn,
                                  void *arg, int64_t timeout_ms) {
  if (fn == NULL)
    return KEEL_EINVAL;
  return keel__gs_sys_ptr(server, "replace_state", &keel__gs_tag_replace_state,
                          (keel__gs_fn)fn, arg, KEEL_NIL, timeout_ms);
}

static int sys_simple(keel_term server, keel_term req, int64_t tmo) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term out;
  int rc = sys_call(server, req, tmo, &h, &out);
  keel_heap_destroy(&h);
  return rc;
}

int keel_gen_server_suspend(keel_term server, int64_t timeout_ms) {
  return sys_simple(server, keel_atom("suspend"), timeout_ms);
}

int keel_gen_server_resume(keel_term server, int64_t timeout_ms) {
  return sys_simple(server, keel_atom("resume"), timeout_ms);
}

int keel_gen_server_trace(keel_term server, bool on, int64_t timeout_ms) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term req = keel_tuple(&h, 2, keel_atom("trace"),
                             on ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
  int rc = req == KEEL_NONE ? KEEL_ENOMEM : sys_simple(server, req, timeout_ms);
  keel_heap_destroy(&h);
  return rc;
}

int keel_gen_server_change_code(keel_term server,
                                const keel_gen_server_module *new_mod,
                                keel_term extra, int64_t timeout_ms) {
  if (new_mod == NULL || new_mod->init == NULL ||
      new_mod->version != KEEL_GEN_SERVER_MODULE_V1 || extra == KEEL_NONE)
    return KEEL_EINVAL;
  return keel__gs_sys_ptr(server, "change_code", &keel__gs_tag_change_code,
                          NULL, new_mod, extra, timeout_ms);
}
