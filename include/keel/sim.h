/*
 * keel/sim.h - the deterministic simulation mode: a node whose schedulers
 * are all simulated on the calling thread, every choice coming from one
 * seeded generator, with virtual time.
 *
 * Started with keel_sim_start instead of keel_node_start (and stopped with
 * keel_node_stop), the node runs no threads. The thread that started it
 * drives it with keel_sim_step / keel_sim_run: each step picks a simulated
 * scheduler at random and lets it make one scheduling decision (fire its
 * due timers, take its runnext, its ring, the inject queue, or steal from a
 * random victim) and run that process for a slice whose budget is also
 * drawn at random, so preemption points vary. When nothing can run, the
 * virtual clock jumps to the next timer deadline; now and then it also
 * advances a little while work is pending, so timers fire at different
 * points. The same seed (and the same program) replays the same
 * interleaving exactly; keel_sim_trace() summarises it.
 *
 * Everything else is the ordinary runtime: processes, fibers, signals,
 * timers (on the virtual clock) and sends from the driving thread work as
 * on a threaded node. Code must not block a simulated process on anything
 * but the runtime (a handler waiting for another thread would wait
 * forever). Only the driving thread may call the functions below, send,
 * spawn, or stop the node.
 */
#ifndef KEEL_SIM_H
#define KEEL_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts a simulated node. opts as for keel_node_start (schedulers = how
 * many to simulate; 0 = 1). seed 0: the value of the environment variable
 * KEEL_SEED if set, else one derived from the clock (keel_sim_seed() tells
 * which, so a failure can be replayed with KEEL_SEED=<n>).
 * Errors: as keel_node_start; KEEL_EUNSUPPORTED where fibers have no
 * context switch. */
int keel_sim_start(const keel_node_opts *opts, uint64_t seed);

/* Whether the running node is simulated. */
bool keel_sim_active(void);

/* Seed of the running simulation (0 when none runs). */
uint64_t keel_sim_seed(void);

/* Makes one step. Returns 1 when something happened (a process ran, timers
 * fired, or virtual time advanced), 0 when nothing ever can any more (no
 * runnable process and no pending timer), KEEL_ESTATE when no simulation
 * runs or the caller is not the driving thread's context. */
int keel_sim_step(void);

/* Steps until done(arg) returns true (checked before each step; done may
 * be NULL), the node is quiescent, or max_steps steps were made. Returns
 * KEEL_OK when done() became true, KEEL_ENOENT when the node went
 * quiescent first (with done NULL: KEEL_OK), KEEL_ETIMEDOUT after
 * max_steps, KEEL_ESTATE. */
int keel_sim_run(bool (*done)(void *arg), void *arg, uint64_t max_steps);

/* Virtual time since the start, in milliseconds (0 when none runs). */
uint64_t keel_sim_time_ms(void);

/* Moves the virtual clock forward by ms milliseconds (nothing runs;
 * timers that became due fire at the next steps). KEEL_ESTATE when no
 * simulation runs or the caller is not the driving thread. */
int keel_sim_advance(uint64_t ms);

/* A hash of every decision made so far (which scheduler ran which process,
 * and each jump of the clock): equal for two runs of the same program with
 * the same seed. */
uint64_t keel_sim_trace(void);

/* Steps made so far. */
uint64_t keel_sim_steps(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_SIM_H */
