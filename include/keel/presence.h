/*
 * keel/presence.h - Phoenix.Presence on one node: who is present on a
 * topic, with metadata, and join/leave diffs on a pubsub (layer 7,
 * pubsub). See docs/pubsub.md.
 *
 * A presence is (topic, pid, key, meta): a local process pid is present on
 * topic under key with meta, a map. One key may carry several metas (one
 * per tracked pid, or per track of the same pid under other topics: a
 * user with several tabs). Tracking adds a unique phx_ref (a binary) to
 * the meta; update also adds phx_ref_prev, the ref it replaces.
 *
 * Every change is broadcast on the instance's pubsub to the topic itself,
 * on this node (local_broadcast), as
 *     {presence_diff, Topic, Joins, Leaves}
 * with Joins and Leaves maps Key => [Meta] (an update is a leave of the
 * old meta and a join of the new one, as Phoenix sends it). Diffs of one
 * instance are queued in the order of its changes and broadcast from that
 * queue by one thread at a time, so a subscriber that applies them in
 * arrival order rebuilds list(). A diff may arrive shortly after the call
 * that caused it returns (another thread may be broadcasting the queue).
 *
 * A tracked process's presences go when it dies (a runtime exit hook, on
 * its thread before its links and monitors are told), with leave diffs.
 *
 * Reads (list, get_by_key) take the instance's read lock and no message:
 * no server call.
 *
 * Local only: Phoenix.Tracker's cluster-wide delta-CRDT (replicas,
 * heartbeats, clocks) is deferred until Keel has distribution; see
 * docs/pubsub.md.
 *
 * Thread-safety: every function may be called from any thread and process
 * concurrently; an instance must not be used after keel_presence_stop
 * (calls with its stale handle return KEEL_EBADARG).
 */
#ifndef KEEL_PRESENCE_H
#define KEEL_PRESENCE_H

#include <stdint.h>

#include "keel/pubsub.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A presence instance: a generation-counted id (0 is never valid). */
typedef struct keel_presence {
  uint64_t id;
} keel_presence;

/* Most presence instances alive at once. */
#define KEEL_PRESENCE_MAX 32u

/* Starts a presence instance broadcasting its diffs on pubsub (which must
 * outlive it; a diff to a stopped pubsub is dropped). Errors: KEEL_EINVAL
 * (out NULL), KEEL_EBADARG (pubsub stale), KEEL_ESYSLIMIT
 * (KEEL_PRESENCE_MAX alive), KEEL_ENOMEM. */
int keel_presence_start(keel_pubsub pubsub, keel_presence *out);

/* Stops it: every presence goes, without diffs. KEEL_OK or KEEL_EBADARG. */
int keel_presence_stop(keel_presence pr);

/* Tracks local pid on topic under key with meta (a map; KEEL_NONE: the
 * empty map), all copied, and broadcasts the join. Stores the phx_ref
 * given (a binary) in *ref, built in h (h and ref may be NULL).
 * Errors: KEEL_EEXIST (pid already tracked on topic under key, Phoenix's
 * already_tracked), KEEL_ENOPROC (pid dead), KEEL_EBADARG (stale handle,
 * pid not a local pid, meta not a map), KEEL_EINVAL (topic or key
 * KEEL_NONE), KEEL_ENOMEM. */
int keel_presence_track(keel_presence pr, keel_term pid, keel_term topic,
                        keel_term key, keel_term meta, keel_heap *h,
                        keel_term *ref);

/* Replaces the meta of (pid, topic, key): the new meta gets a new phx_ref
 * and phx_ref_prev; broadcasts a leave of the old and a join of the new
 * one. Errors: KEEL_ENOENT (not tracked), and track's. */
int keel_presence_update(keel_presence pr, keel_term pid, keel_term topic,
                         keel_term key, keel_term meta, keel_heap *h,
                         keel_term *ref);

/* Untracks (pid, topic, key) and broadcasts the leave. KEEL_OK also when
 * it was not tracked. Errors: KEEL_EBADARG, KEEL_EINVAL. */
int keel_presence_untrack(keel_presence pr, keel_term pid, keel_term topic,
                          keel_term key);

/* Untracks every presence of pid, with leaves (one diff per topic). */
int keel_presence_untrack_all(keel_presence pr, keel_term pid);

/* The presences on topic: a map Key => [Meta] built in h (#{} when none).
 * Errors: KEEL_EBADARG, KEEL_EINVAL, KEEL_ENOMEM. */
int keel_presence_list(keel_presence pr, keel_term topic, keel_heap *h,
                       keel_term *out);

/* The metas of key on topic, a list built in h ([] when none). */
int keel_presence_get_by_key(keel_presence pr, keel_term topic, keel_term key,
                             keel_heap *h, keel_term *out);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_PRESENCE_H */
