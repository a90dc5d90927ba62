/*
 * keel/dirty.h - dirty work: C code that runs for long (CPU-bound) or
 * blocks (I/O, system calls) runs on a dirty pool's thread instead of a
 * scheduler, so the scheduler keeps running the other processes (BEAM's
 * dirty schedulers).
 *
 * A node has two pools (keel_node_opts.dirty_cpu, as many threads as
 * schedulers by default, and dirty_io, 10 by default; threads are started
 * on demand up to that number). A job is a function and its argument; jobs
 * of one pool start in submission order, each on a free thread of the
 * pool.
 *
 * Fiber processes call keel_dirty_cpu / keel_dirty_io: the fiber is
 * suspended (it stays on its own stack, which no thread runs meanwhile),
 * fn(arg) runs on a pool thread, and the fiber resumes on a scheduler with
 * fn's result. Handler processes call keel_dirty_cpu_async /
 * keel_dirty_io_async and get the result as a message. Either way the
 * process's mailbox works as usual meanwhile: messages sent to it are
 * queued.
 *
 * Dirty code runs on a plain thread: keel_current() is NULL there, so it
 * must not use the process's heap or state; it may call keel_send,
 * keel_spawn and the term functions on heaps of its own. Node stop waits
 * for every job already submitted; long jobs should poll
 * keel_dirty_process_alive() and give up when it turns false.
 */
#ifndef KEEL_DIRTY_H
#define KEEL_DIRTY_H

#include <stdbool.h>

#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default size of the dirty I/O pool (BEAM's +SDio). */
#define KEEL_DIRTY_IO_DEFAULT 10u

/* Dirty work: runs on a pool thread and returns a result. For the
 * synchronous calls any int may be returned (the call returns it as is);
 * for the asynchronous ones the result is delivered as an integer term. */
typedef int (*keel_dirty_fn)(void *arg);

/* Runs fn(arg) on the dirty CPU pool while the calling fiber process is
 * suspended, and returns fn's result once it is done; the fiber may then
 * be on another scheduler thread. Meanwhile the scheduler runs other
 * processes and messages to self are queued normally. arg is owned by the
 * caller (it stays valid: the caller waits). If fn's result may be
 * negative, tell it from the errors below by what fn can return.
 * Errors (fn did not run): KEEL_EINVAL (fn NULL), KEEL_ESTATE (self is not
 * a fiber process running on the calling thread, or the node is
 * stopping). If the pool has no thread and none can be started, fn runs
 * on the scheduler instead (blocking it) rather than never. */
int keel_dirty_cpu(keel_proc *self, keel_dirty_fn fn, void *arg);

/* keel_dirty_cpu on the dirty I/O pool (for blocking calls). */
int keel_dirty_io(keel_proc *self, keel_dirty_fn fn, void *arg);

/* Asynchronous form, for any process (handler processes above all):
 * queues fn(arg) on the dirty CPU pool and returns at once. When fn
 * returns R, the message {dirty_done, Tag, R} (Tag a copy of tag, R an
 * integer) is sent to self; if self has died meanwhile, it is dropped.
 * arg is owned by the caller's code and must stay valid until fn has run
 * (fn may free it). tag is copied now.
 * Errors (fn will not run): KEEL_EINVAL (fn NULL, tag KEEL_NONE),
 * KEEL_ESTATE (self is not the process running on the calling thread, or
 * the node is stopping), KEEL_ENOMEM, KEEL_EIO (the pool has no thread and
 * none could be started). */
int keel_dirty_cpu_async(keel_proc *self, keel_dirty_fn fn, void *arg,
                         keel_term tag);

/* keel_dirty_cpu_async on the dirty I/O pool. */
int keel_dirty_io_async(keel_proc *self, keel_dirty_fn fn, void *arg,
                        keel_term tag);

/* Whether the process on whose behalf the calling thread works is still
 * alive (BEAM's enif_is_current_process_alive): on a dirty pool thread
 * inside fn, the process that submitted the job; false once it has
 * terminated or is terminating, and false once the node is stopping. On a
 * scheduler running a process, whether that process is not terminating.
 * false on any other thread. Long dirty work polls it to give up early. */
bool keel_dirty_process_alive(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DIRTY_H */
