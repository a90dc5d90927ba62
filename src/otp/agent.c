/*
 * agent.c - Elixir's Agent on gen_server: requests {Op, Fn, Arg} carry C
 * function and argument pointers as integers (local to this OS process);
 * the functions run in the agent's handle_call / handle_cast.
 */
#include <stdint.h>

#include "keel/agent.h"

static keel_term A(const char *s) {
  return keel_atom(s);
}

static void *ptr_of(keel_term t) {
  uint64_t v = 0;
  (void)keel_get_uint64(t, &v);
  return (void *)(uintptr_t)v;
}

/* {Op, Fn, Arg} built in h (KEEL_NONE when h is full). */
static keel_term request(keel_heap *h, const char *op, uintptr_t fn,
                         void *arg) {
  keel_term f = keel_uint(h, (uint64_t)fn);
  keel_term a = keel_uint(h, (uint64_t)(uintptr_t)arg);
  if (f == KEEL_NONE || a == KEEL_NONE)
    return KEEL_NONE;
  return keel_tuple(h, 3, A(op), f, a);
}

static keel_gs_ret ag_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  keel_agent_fn fn = (keel_agent_fn)ptr_of(keel_tuple_get(arg, 1));
  keel_term st = fn(keel_gs_heap(gs), KEEL_ATOM(UNDEFINED),
                    ptr_of(keel_tuple_get(arg, 2)));
  if (st == KEEL_NONE)
    return keel_gs_stop(gs, A("init_failed"));
  *s = st;
  return keel_gs_ok(gs);
}

static keel_gs_ret ag_call(keel_gen_server *gs, keel_term req, keel_term from,
                           keel_term *s) {
  (void)from;
  keel_heap *h = keel_gs_heap(gs);
  keel_term op = keel_tuple_get(req, 0);
  void *fp = ptr_of(keel_tuple_get(req, 1));
  void *arg = ptr_of(keel_tuple_get(req, 2));
  if (op == A("get")) {
    keel_term v = ((keel_agent_fn)fp)(h, *s, arg);
    return keel_gs_reply(gs, v != KEEL_NONE ? v : KEEL_ATOM(UNDEFINED));
  }
  if (op == A("update")) {
    keel_term n = ((keel_agent_fn)fp)(h, *s, arg);
    if (n != KEEL_NONE)
      *s = n;
    return keel_gs_reply(gs, KEEL_ATOM(OK));
  }
  keel_term n = *s;
  keel_term v = ((keel_agent_gu_fn)fp)(h, *s, arg, &n);
  if (n != KEEL_NONE)
    *s = n;
  return keel_gs_reply(gs, v != KEEL_NONE ? v : KEEL_ATOM(UNDEFINED));
}

static keel_gs_ret ag_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  keel_agent_fn fn = (keel_agent_fn)ptr_of(keel_tuple_get(msg, 1));
  keel_term n = fn(keel_gs_heap(gs), *s, ptr_of(keel_tuple_get(msg, 2)));
  if (n != KEEL_NONE)
    *s = n;
  return keel_gs_ok(gs);
}

static const keel_gen_server_module agent_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "agent",
    .init = ag_init,
    .handle_call = ag_call,
    .handle_cast = ag_cast,
};

int keel_agent_start(keel_agent_fn init, void *arg,
                     const keel_gen_server_opts *opts, keel_term *pid) {
  if (init == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term a = request(&h, "init", (uintptr_t)init, arg);
  int rc = a == KEEL_NONE ? KEEL_ENOMEM
                          : keel_gen_server_start(&agent_mod, a, opts, pid);
  keel_heap_destroy(&h);
  return rc;
}

static int agent_call(keel_term agent, const char *op, uintptr_t fn, void *arg,
                      int64_t tmo, keel_heap *h, keel_term *out) {
  if (fn == 0)
    return KEEL_EINVAL;
  keel_heap scratch;
  keel_heap_init(&scratch);
  keel_term req = request(&scratch, op, fn, arg);
  keel_term r;
  int rc = req == KEEL_NONE
               ? KEEL_ENOMEM
               : keel_gen_server_call(agent, req, tmo, h != NULL ? h : &scratch,
                                      out != NULL ? out : &r);
  keel_heap_destroy(&scratch);
  return rc;
}

int keel_agent_get(keel_term agent, keel_agent_fn fn, void *arg,
                   int64_t timeout_ms, keel_heap *h, keel_term *value) {
  if (h == NULL || value == NULL)
    return KEEL_EINVAL;
  return agent_call(agent, "get", (uintptr_t)fn, arg, timeout_ms, h, value);
}

int keel_agent_update(keel_term agent, keel_agent_fn fn, void *arg,
                      int64_t timeout_ms) {
  return agent_call(agent, "update", (uintptr_t)fn, arg, timeout_ms, NULL,
                    NULL);
}

int keel_agent_get_and_update(keel_term agent, keel_agent_gu_fn fn, void *arg,
                              int64_t timeout_ms, keel_heap *h,
                              keel_term *value) {
  if (h == NULL || value == NULL)
    return KEEL_EINVAL;
  return agent_call(agent, "get_and_update", (uintptr_t)fn, arg, timeout_ms, h,
                    value);
}

int keel_agent_cast(keel_term agent, keel_agent_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term req = request(&h, "cast", (uintptr_t)fn, arg);
  int rc = req == KEEL_NONE ? KEEL_ENOMEM : keel_gen_server_cast(agent, req);
  keel_heap_destroy(&h);
  return rc;
}

int keel_agent_stop(keel_term agent, keel_term reason, int64_t timeout_ms) {
  return keel_gen_server_stop(agent, reason, timeout_ms);
}
