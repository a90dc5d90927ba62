/*
 * task_internal.h - pieces shared by the Task files: the task process body
 * and its start protocol, the proxy fiber that lets plain threads block on
 * process work, and a clock that follows simulated time.
 *
 * Start protocol: a task fiber first waits for the message
 * {'$task_go', Alias, Spec, Input, Callers} (Callers: its $callers list;
 * Spec: a resource holding the function
 * and its argument; Alias: where {Alias, Result} goes, or 'undefined').
 * A task started for an owner that is not its spawner (async_nolink)
 * monitors that owner while it waits and ends quietly if the owner dies.
 */
#ifndef KEEL_OTP_TASK_INTERNAL_H
#define KEEL_OTP_TASK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/task.h"

/* Spawns a task fiber waiting for its go message. owner: KEEL_NONE or the
 * pid to monitor while waiting. link: link it to the calling process. */
int keel__task_spawn(keel_term owner, bool link, keel_term *pid);

/* Sends the go message to a task spawned by keel__task_spawn. alias may be
 * KEEL_ATOM(UNDEFINED) (no reply). */
int keel__task_go(keel_term pid, keel_term alias, keel_task_fn fn, void *arg,
                  keel_term input);

/* Runs body(self, ctx) in a fresh fiber process and blocks the calling
 * plain thread until that fiber has ended. KEEL_OK when body ran to its
 * end, KEEL_ESTATE when called from a process, in simulation mode, with no
 * node, or when the fiber was terminated before body returned (node
 * stop); spawn errors otherwise. */
int keel__task_proxy(void (*body)(keel_proc *self, void *ctx), void *ctx);

/* The Spec term of a go message (built in h; KEEL_NONE when out of
 * memory), and reading one back (false: not a Spec). */
keel_term keel__task_spec_term(keel_heap *h, keel_task_fn fn, void *arg);
bool keel__task_spec_get(keel_term t, keel_task_fn *fn, void **arg);

/* The callers list a task started by the calling thread inherits:
 * [Self | Self's callers] in a process, [] elsewhere (built in h;
 * KEEL_NONE when out of memory). */
keel_term keel__task_child_callers(keel_heap *h);

/* Milliseconds on the clock receive timeouts use (virtual in simulation
 * mode). */
uint64_t keel__task_now_ms(void);

/* Whether msg is {Ref, _} or {'DOWN', Ref, process, _, _} for ref. */
bool keel__task_msg_for(keel_term ref, keel_term msg);

#endif /* KEEL_OTP_TASK_INTERNAL_H */
