/*
 * demo_node.h - the workload `keel run` supervises: a producer feeding a
 * pool of workers whose results an aggregator writes into a table.
 *
 *   demo_sup (one_for_one, 3 restarts in 5 s)
 *   ├── demo_aggregator   gen_server: counts results per worker into the
 *   │                     public table demo_results ({Worker, Count})
 *   ├── demo_workers      supervisor (one_for_one, 3 restarts in 5 s)
 *   │   ├── demo_worker_0 gen_server: each {job, Seq} cast pushes a random
 *   │   │                 term through ETF and JSON; worker 0 crashes on
 *   │   │                 purpose every crash_every seconds
 *   │   └── ...
 *   └── demo_producer     gen_server: every 10 ms casts a batch of jobs to
 *                         the workers, round robin, at a steady rate
 *
 * Everything runs as Keel processes on the node's schedulers; the table
 * has no owner, so it outlives restarts of the aggregator.
 *
 * The tree is the application `demo` (keel/application.h), started as a
 * permanent application with keel_application_ensure_all_started: its
 * master is demo_sup's parent, and demo_sup giving up is a permanent
 * application's exit (the exit handler of keel_application_set_exit_handler
 * hears of it). The servers trap exits, so the ordered shutdown of
 * keel_demo_stop (application stop: prep_stop, then demo_sup stopping its
 * children in reverse start order, then stop) prints one line each:
 *   demo: started demo_aggregator        (first start of each server)
 *   demo: started demo_worker_0 ... demo_worker_N-1
 *   demo: started demo_producer
 *   demo: application stopping
 *   demo: stopped demo_producer          (shutdown: reverse start order)
 *   demo: stopped demo_worker_N-1 ... demo_worker_0
 *   demo: stopped demo_aggregator
 *   demo: application stopped
 */
#ifndef KEEL_CLI_DEMO_NODE_H
#define KEEL_CLI_DEMO_NODE_H

#include <stdint.h>

#include "keel/ets.h"
#include "keel/runtime.h"

#define KEEL_DEMO_MAX_WORKERS 64

typedef struct keel_demo_opts {
  unsigned workers;   /* 1..KEEL_DEMO_MAX_WORKERS */
  double crash_every; /* seconds between worker 0's crashes; 0: never */
  unsigned rate;      /* jobs per second in all; 0: 2000 */
} keel_demo_opts;

typedef struct keel_demo keel_demo;

/* Creates the table, loads the application `demo` and starts it with
 * ensure_all_started on the running node (from a thread that is not a
 * process). KEEL_OK with *out set, or an error of keel_ets_new or of the
 * application's start (keel_sup_start_link's). One demo at a time. */
int keel_demo_start(const keel_demo_opts *opts, keel_demo **out);

/* The root supervisor's pid. */
keel_term keel_demo_root(const keel_demo *d);

/* Jobs worker i has completed so far (read from the table). */
uint64_t keel_demo_done(const keel_demo *d, unsigned i);

/* Stops the application (ordered shutdown, if still running), unloads
 * it, deletes the table and frees d. */
void keel_demo_stop(keel_demo *d);

#endif /* KEEL_CLI_DEMO_NODE_H */
