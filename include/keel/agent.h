/*
 * keel/agent.h - Elixir's Agent: a gen_server holding one state term that
 * callers read and change by functions run inside the agent process, one
 * at a time (so every get, update and get_and_update is atomic).
 *
 * Functions are C function pointers with an argument pointer. They run in
 * the agent, on its heap h (build new terms there); state is the current
 * state. The blocking calls (start, get, update, get_and_update, stop)
 * work from fiber processes and plain threads, not from handler processes
 * (KEEL_ESTATE; keel_agent_cast works from anywhere). For the blocking
 * calls arg need only live until the call returns; for keel_agent_cast
 * until the function has run.
 */
#ifndef KEEL_AGENT_H
#define KEEL_AGENT_H

#include "keel/gen_server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* init: returns the first state (state is 'undefined'); get: returns the
 * value to give the caller; update and cast: return the new state.
 * Returning KEEL_NONE: init fails the start (reason init_failed); an
 * update keeps the old state. */
typedef keel_term (*keel_agent_fn)(keel_heap *h, keel_term state, void *arg);

/* get_and_update: returns the caller's value and stores the new state in
 * *new_state (left unchanged: the state stays). */
typedef keel_term (*keel_agent_gu_fn)(keel_heap *h, keel_term state, void *arg,
                                      keel_term *new_state);

/* Agent.start / start_link: starts an agent whose state is init(h,
 * undefined, arg). opts as keel_gen_server_start's (name, link, timeout,
 * fiber...; may be NULL). Returns as keel_gen_server_start does:
 * KEEL_OK with *pid, KEEL_EEXIST, KEEL_ENOPROC (init returned KEEL_NONE),
 * KEEL_EINVAL (init NULL). Thread-safe. */
int keel_agent_start(keel_agent_fn init, void *arg,
                     const keel_gen_server_opts *opts, keel_term *pid);

/* Agent.get: fn(state) copied into h as *value; the state is unchanged.
 * Errors as keel_gen_server_call (KEEL_ENOPROC, KEEL_ETIMEDOUT, ...) and
 * KEEL_EINVAL for a NULL fn. */
int keel_agent_get(keel_term agent, keel_agent_fn fn, void *arg,
                   int64_t timeout_ms, keel_heap *h, keel_term *value);

/* Agent.update: the state becomes fn(state); returns once it has. */
int keel_agent_update(keel_term agent, keel_agent_fn fn, void *arg,
                      int64_t timeout_ms);

/* Agent.get_and_update: atomically reads and replaces the state. */
int keel_agent_get_and_update(keel_term agent, keel_agent_gu_fn fn, void *arg,
                              int64_t timeout_ms, keel_heap *h,
                              keel_term *value);

/* Agent.cast: the state becomes fn(state), asynchronously. KEEL_OK even
 * if the agent is dead (as gen_server cast). */
int keel_agent_cast(keel_term agent, keel_agent_fn fn, void *arg);

/* Agent.stop: keel_gen_server_stop. */
int keel_agent_stop(keel_term agent, keel_term reason, int64_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_AGENT_H */
