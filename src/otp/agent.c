/*
 * agent.c - Elixir's Agent on gen_server: requests {Op, Fn} carry the C
 * function and its argument in a resource only C code of this OS process
 * can make; the functions run in the agent's handle_call / handle_cast.
 */
#include <stdint.h>

#include "keel/agent.h"
#include "otp/gen_server_internal.h"

static keel_term A(const char *s) {
  return keel_atom(s);
}

/* Tag of the agent's function carriers. */
static const char agent_tag = 'a';

/* {Op, Fn} built in h (KEEL_NONE when h is full). */
static keel_term request(keel_heap *h, const char *op, keel__gs_fn fn,
                         void *arg) {
  keel_term f = keel__gs_ptr_term(h, &agent_tag, fn, arg);
  return f == KEEL_NONE ? KEEL_NONE : keel_tuple(h, 2, A(op), f);
}

/* The op and function of a request; false for anything else. */
static bool decode(keel_term req, keel_term *op, keel__gs_fn *fn, void **arg) {
  const void *a;
  if (!keel_is_tuple(req) || keel_tuple_arity(req) != 2 ||
      !keel__gs_ptr_get(keel_tuple_get(req, 1), &agent_tag, fn, &a))
    return false;
  *op = keel_tuple_get(req, 0);
  *arg = (void *)(uintptr_t)a;
  return true;
}

static keel_gs_ret ag_init(keel_gen_server *gs, keel_term req, keel_term *s) {
  keel_term op;
  keel__gs_fn fn;
  void *arg;
  keel_term st = KEEL_NONE;
  if (decode(req, &op, &fn, &arg))
    st = ((keel_agent_fn)fn)(keel_gs_heap(gs), KEEL_ATOM(UNDEFINED), arg);
  if (st == KEEL_NONE)
    return keel_gs_stop(gs, A("init_failed"));
  *s = st;
  return keel_gs_ok(gs);
}

static keel_gs_ret ag_call(keel_gen_server *gs, keel_term req, keel_term from,
                           keel_term *s) {
  (void)from;
  keel_heap *h = keel_gs_heap(gs);
  keel_term op, v = KEEL_NONE, n = KEEL_NONE;
  keel__gs_fn fn;
  void *arg;
  if (!decode(req, &op, &fn, &arg))
    return keel_gs_reply(gs,
                         keel_tuple(h, 2, KEEL_ATOM(ERROR), KEEL_ATOM(BADARG)));
  if (op == A("get")) {
    v = ((keel_agent_fn)fn)(h, *s, arg);
  } else if (op == A("update")) {
    n = ((keel_agent_fn)fn)(h, *s, arg);
    v = KEEL_ATOM(OK);
  } else if (op == A("get_and_update")) {
    v = ((keel_agent_gu_fn)fn)(h, *s, arg, &n);
  }
  if (n != KEEL_NONE)
    *s = n;
  return keel_gs_reply(gs, v != KEEL_NONE ? v : KEEL_ATOM(UNDEFINED));
}

static keel_gs_ret ag_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  keel_term op;
  keel__gs_fn fn;
  void *arg;
  if (decode(msg, &op, &fn, &arg) && op == A("cast")) {
    keel_term n = ((keel_agent_fn)fn)(keel_gs_heap(gs), *s, arg);
    if (n != KEEL_NONE)
      *s = n;
  }
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
  keel_term a = request(&h, "init", (keel__gs_fn)init, arg);
  int rc = a == KEEL_NONE ? KEEL_ENOMEM
                          : keel_gen_server_start(&agent_mod, a, opts, pid);
  keel_heap_destroy(&h);
  return rc;
}

static int agent_call(keel_term agent, const char *op, keel__gs_fn fn,
                      void *arg, int64_t tmo, keel_heap *h, keel_term *out) {
  if (fn == NULL)
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
  return agent_call(agent, "get", (keel__gs_fn)fn, arg, timeout_ms, h, value);
}

int keel_agent_update(keel_term agent, keel_agent_fn fn, void *arg,
                      int64_t timeout_ms) {
  return agent_call(agent, "update", (keel__gs_fn)fn, arg, timeout_ms, NULL,
                    NULL);
}

int keel_agent_get_and_update(keel_term agent, keel_agent_gu_fn fn, void *arg,
                              int64_t timeout_ms, keel_heap *h,
                              keel_term *value) {
  if (h == NULL || value == NULL)
    return KEEL_EINVAL;
  return agent_call(agent, "get_and_update", (keel__gs_fn)fn, arg, timeout_ms,
                    h, value);
}

int keel_agent_cast(keel_term agent, keel_agent_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term req = request(&h, "cast", (keel__gs_fn)fn, arg);
  int rc = req == KEEL_NONE ? KEEL_ENOMEM : keel_gen_server_cast(agent, req);
  keel_heap_destroy(&h);
  return rc;
}

int keel_agent_stop(keel_term agent, keel_term reason, int64_t timeout_ms) {
  return keel_gen_server_stop(agent, reason, timeout_ms);
}
