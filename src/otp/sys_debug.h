/*
 * sys_debug.h - sys:statistics and sys:log for the behaviours (gen_server,
 * gen_statem): the counters and the event log a behaviour keeps in its
 * control block, and the answers to the {statistics, Flag} and
 * {log, N | get} system requests. Owner-only (the behaviour's process).
 */
#ifndef KEEL_OTP_SYS_DEBUG_H
#define KEEL_OTP_SYS_DEBUG_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/runtime.h"
#include "keel/term.h"

/* Most events a log keeps. */
#define KEEL_SYS_LOG_MAX 64

typedef struct keel__sysdbg {
  bool stats_on; /* counting since start_ms (Unix time) */
  int64_t start_ms;
  uint64_t in, out; /* messages handled, replies sent */
  uint64_t red0;    /* the process's reductions at start_ms */
  keel_term log;    /* the last log_max events, newest first; a root of
                       the behaviour's heap compaction */
  unsigned log_max, log_n;
} keel__sysdbg;

/* An empty state (counting and logging off). */
void keel__sysdbg_init(keel__sysdbg *d);
/* Appends event {Tag, A} or {Tag, A, B} (b KEEL_NONE: none), built in h,
 * when logging is on; keeps the last log_max. */
void keel__sysdbg_event(keel__sysdbg *d, keel_heap *h, const char *tag,
                        keel_term a, keel_term b);
/* The answer to {statistics, true | false | get} of process self: ok, the
 * figures [{start_time, Ms}, {current_time, Ms}, {reductions, R},
 * {messages_in, N}, {messages_out, N}] (in h), or no_statistics. */
keel_term keel__sysdbg_statistics(keel__sysdbg *d, keel_proc *self,
                                  keel_heap *h, keel_term flag);
/* The answer to {log, N | get}: ok, the events oldest first (in h),
 * no_log, or badarg (N not in 0..KEEL_SYS_LOG_MAX). */
keel_term keel__sysdbg_log(keel__sysdbg *d, keel_heap *h, keel_term arg);

#endif
