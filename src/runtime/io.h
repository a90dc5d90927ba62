/*
 * io.h - the node's I/O poller (runtime layer, internal).
 *
 * One poll thread per node (started with the first descriptor) waits in
 * epoll_wait on every registered descriptor (edge-triggered: EPOLLIN | EPOLLOUT
 * | EPOLLRDHUP | EPOLLET, registered once, no epoll_ctl per wait) and turns
 * readiness into work: it calls the descriptor's event function, which
 * typically sends a message to the process waiting on it. A process waiting on
 * a descriptor costs no thread.
 *
 * Descriptors live in a slot table of fixed chunks (never freed while the
 * node runs) with a generation per slot. A handle is (generation << 32 |
 * slot index), never 0, and is what epoll carries for the descriptor;
 * closing a slot bumps its generation, so a stale handle (or an event
 * already read by the poll thread for a descriptor since closed, whose
 * number the kernel may have reused) never reaches the slot's next user.
 * Each slot has its own mutex (the object's lock): lookups take no
 * table-wide lock; only opening and closing touch the free list.
 *
 * Not available on a simulated node (keel__io_open returns
 * KEEL_EUNSUPPORTED).
 */
#ifndef KEEL_RUNTIME_IO_H
#define KEEL_RUNTIME_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/term.h"

struct rt_node;
struct keel_node_opts;

/* Called by the poll thread with the slot locked, obj the slot's object,
 * events the epoll bits. Must not block; may send messages. When it
 * closes the slot (keel__io_close_locked), the poll thread frees obj with
 * the slot's free function once the slot is unlocked. */
typedef void (*keel__io_event_fn)(void *obj, uint64_t handle, uint32_t events);
/* Called at node stop (no thread runs any more) for each slot still open:
 * frees obj. The io layer closes the descriptor afterwards. */
typedef void (*keel__io_free_fn)(void *obj);

/* Most descriptors in the table. */
#define KEEL__IO_MAX_SLOTS (1u << 20)

/* Registers fd (non-blocking, owned by the slot from now on) with obj.
 * Stores the handle in *handle (which may live in obj: it is written with
 * the slot locked, before the first event). Errors: KEEL_ESTATE (no node),
 * KEEL_EUNSUPPORTED (simulated node), KEEL_ESYSLIMIT (table full),
 * KEEL_ENOMEM, KEEL_EIO (epoll_ctl failed, or the poll thread could not
 * be started). On error fd is left open. */
int keel__io_open(int fd, keel__io_event_fn ev, keel__io_free_fn fr, void *obj,
                  uint64_t *handle);

/* Locks the slot of handle and returns its object, or NULL (nothing
 * locked) when the handle is stale, closed or there is no node. */
void *keel__io_lock(uint64_t handle);
/* Unlocks a slot locked by keel__io_lock (also after
 * keel__io_close_locked). */
void keel__io_unlock(uint64_t handle);

/* With the slot locked: the descriptor is removed from epoll and closed,
 * the generation bumped (every later keel__io_lock of handle fails) and
 * the slot goes back to the free list once unlocked. The caller still
 * frees its object (after unlocking). */
void keel__io_close_locked(uint64_t handle);

/* The descriptor of a locked slot. */
int keel__io_fd(uint64_t handle);

/* keel_send that never switches the calling fiber out (a plain
 * keel_send does when the fiber's slice is used up): for senders that
 * hold a slot lock, which must be released on the thread that took it.
 * The send is still charged to the fiber's budget. */
int keel__io_send(keel_term pid, keel_term msg);

/* Whether a threaded node with a poller runs. */
bool keel__io_available(void);

/* Node start (threaded nodes only: the epoll set; the thread starts with
 * the first keel__io_open) and stop: stop joins the poll thread (after
 * the schedulers) and refuses later opens; destroy frees every slot still open
 * (after the processes are gone). */
int keel__rt_io_start(struct rt_node *n);
void keel__rt_io_stop(struct rt_node *n);
void keel__rt_io_destroy(struct rt_node *n);

#endif /* KEEL_RUNTIME_IO_H */
