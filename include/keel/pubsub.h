/*
 * keel/pubsub.h - Phoenix.PubSub: topic-based publish/subscribe between
 * processes (layer 7, pubsub). See docs/pubsub.md.
 *
 * A pubsub instance holds subscriptions: (topic, pid, value) triples, a
 * topic being any term. Only a process subscribes itself; a process may
 * subscribe to a topic several times (it then gets each message once per
 * subscription, as with Phoenix). Its subscriptions go when it dies: a
 * runtime exit hook removes them on the dying process's thread before its
 * links and monitors are told.
 *
 * Storage: topics are spread over partitions by their hash. A partition is
 * a hash table of topics under a reader-writer lock; a topic keeps its
 * subscribers in a dense array (swap-remove: unsubscribing is O(1) in the
 * topic's size, so a topic with 150k subscribers has no quadratic churn)
 * and a per-pid index in the partition finds a process's subscriptions.
 * A broadcast takes the read lock of the topic's partition only (no lock
 * of the instance, no lock shared by partitions) for as long as it takes
 * to copy the topic's subscriber array (one memcpy of pid/value pairs),
 * then dispatches with no lock held.
 *
 * Guarantees (Phoenix's): fire and forget (no persistence, no ack);
 * messages from one sender arrive at each subscriber in the order sent
 * (keel_send's per-pair order); nothing orders the messages of different
 * senders.
 *
 * Handles: a keel_pubsub is a generation-counted id. Once its instance is
 * stopped every call with it returns KEEL_EBADARG, also when a new
 * instance has taken the same slot.
 *
 * Distribution: broadcast and broadcast_from dispatch locally and then
 * call the instance's node adapter (keel_pubsub_adapter), which a
 * distribution layer installs to forward {forward_to_local, Topic, Msg,
 * DispatcherName} to one process per remote node (Phoenix's PG2 adapter);
 * without one, every broadcast is local and direct_broadcast reaches the
 * local node only.
 *
 * Thread-safety: every function may be called from any thread and process
 * concurrently, dispatchers included (they run with no lock held).
 */
#ifndef KEEL_PUBSUB_H
#define KEEL_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pubsub instance: a generation-counted id (0 is never valid). */
typedef struct keel_pubsub {
  uint64_t id;
} keel_pubsub;

/* Most instances alive at once, and partitions of one instance. */
#define KEEL_PUBSUB_MAX 64u
#define KEEL_PUBSUB_MAX_PARTITIONS 64u
#define KEEL_PUBSUB_DEFAULT_PARTITIONS 8u
#define KEEL_PUBSUB_MAX_LANE_WRITERS 64u

/* One subscription as a dispatcher sees it. */
typedef struct keel_pubsub_entry {
  keel_term pid;
  keel_term value; /* the subscription's value ('nil' when none given) */
} keel_pubsub_entry;

/* A dispatcher: delivers msg to the n subscribers of a topic, skipping
 * those whose pid is `from` (KEEL_NONE: skip none). subs and msg live
 * until it returns (subs is a snapshot taken when the broadcast began).
 * Returns the number of messages sent (>= 0) or a negative KEEL_E*. Runs
 * on the broadcasting thread (or fiber), with no lock held. */
typedef int64_t (*keel_pubsub_dispatch_fn)(const keel_pubsub_entry *subs,
                                           size_t n, keel_term from,
                                           keel_term msg, void *arg);

/* A dispatcher and its name. The name (an atom) is what a node adapter
 * forwards, so the remote node must know a dispatcher of that name.
 * Static storage, or at least outliving every broadcast that uses it. */
typedef struct keel_pubsub_dispatcher {
  keel_term name;
  keel_pubsub_dispatch_fn fn;
  void *arg;
} keel_pubsub_dispatcher;

/* The default dispatcher ('default'): keel_send(pid, msg) to each. */
extern const keel_pubsub_dispatcher keel_pubsub_default_dispatcher;

/* The fastlane dispatcher ('fastlane', Phoenix channels' fastlane): a
 * subscription whose value is {fastlane, Pid, Tag} makes it send {Tag,
 * Bin} to Pid instead of msg to the subscriber, Bin being msg encoded as
 * ETF (keel_etf_encode) once per broadcast, however many such
 * subscribers there are; others get msg. Above KEEL_HEAP_BIN_MAX bytes
 * Bin is reference-counted, so every subscriber's message shares its
 * bytes (no copy per subscriber). */
extern const keel_pubsub_dispatcher keel_pubsub_fastlane_dispatcher;

/* The node adapter: how a broadcast leaves this node. A distribution layer
 * installs one per instance; every function is optional. Called on the
 * broadcasting thread after the local dispatch and outside any lock. */
typedef struct keel_pubsub_adapter {
  /* Forward to every other node (broadcast, broadcast_from): each node
   * then dispatches locally with the dispatcher named dispatcher. Return
   * KEEL_OK or a negative KEEL_E* (the broadcast returns it). */
  int (*broadcast)(keel_pubsub ps, keel_term topic, keel_term msg,
                   keel_term from, keel_term dispatcher, void *arg);
  /* direct_broadcast to node, a node other than the local one. */
  int (*direct_broadcast)(keel_pubsub ps, keel_term node, keel_term topic,
                          keel_term msg, keel_term from, keel_term dispatcher,
                          void *arg);
  void *arg;
} keel_pubsub_adapter;

/* Options of keel_pubsub_start. Zero-initialise, then set what you need. */
typedef struct keel_pubsub_opts {
  /* An atom naming the instance (keel_pubsub_whereis), or KEEL_NONE. */
  keel_term name;
  /* Partitions: 0 means KEEL_PUBSUB_DEFAULT_PARTITIONS; at most
   * KEEL_PUBSUB_MAX_PARTITIONS. */
  unsigned partitions;
  /* Node adapter; NULL: local only. Copied. */
  const keel_pubsub_adapter *adapter;
  /* Lane writers: threads of the instance that share the deliveries of a
   * broadcast to many lane subscriptions (keel_pubsub_subscribe_lane)
   * with the broadcasting thread, which waits for them (so one sender's
   * broadcasts still reach each lane in order). A broadcast splits when
   * it has at least 256 lanes per part and the writers are idle. 0: none,
   * the broadcaster delivers alone. At most KEEL_PUBSUB_MAX_LANE_WRITERS. */
  unsigned lane_writers;
} keel_pubsub_opts;

/* Starts a standalone instance (opts NULL: unnamed, default partitions,
 * no lane writers). It lives until keel_pubsub_stop. Errors: KEEL_EINVAL
 * (bad opts, out NULL), KEEL_EEXIST (name taken), KEEL_ESYSLIMIT
 * (KEEL_PUBSUB_MAX instances alive, no exit hook left, no writer thread
 * could be started), KEEL_ENOMEM. Thread-safe. */
int keel_pubsub_start(const keel_pubsub_opts *opts, keel_pubsub *out);

/* Stops an instance: drops every subscription (nobody is told) and makes
 * the handle stale. Waits for broadcasts in progress on it, then stops
 * its lane writers (so never call it from a lane's deliver). KEEL_OK, or
 * KEEL_EBADARG (stale or unknown handle). Thread-safe. */
int keel_pubsub_stop(keel_pubsub ps);

/* A supervisor child's start function (keel_sup_start_fn): arg is a
 * const keel_pubsub_opts * (copied; it needs a name to be found). Spawns
 * an owner process linked to sup that starts the instance and stops it
 * when the owner exits (the supervisor's shutdown, a kill, or the
 * supervisor's own death). A restart starts a new instance under the same
 * name: find it again with keel_pubsub_whereis (an old handle is stale).
 * Returns keel_pubsub_start's and keel_spawn's errors. */
int keel_pubsub_child_start(keel_proc *sup, void *arg, keel_term extra,
                            keel_term *pid);

/* The instance named name: KEEL_OK and *out, or KEEL_ENOENT. */
int keel_pubsub_whereis(keel_term name, keel_pubsub *out);

/* Subscribes the calling process to topic with value (KEEL_NONE: 'nil'),
 * both copied. Errors: KEEL_ESTATE (the caller is not a process), KEEL_EINVAL
 * (topic KEEL_NONE), KEEL_EBADARG (stale handle), KEEL_ENOMEM. */
int keel_pubsub_subscribe(keel_pubsub ps, keel_term topic, keel_term value);

/* A lane class: how pubsub delivers a broadcast to a lane subscription
 * (keel_pubsub_subscribe_lane) without going through the subscriber's
 * process, e.g. by writing to its socket (keel/http.h's WebSocket
 * fastlane). Static storage, or at least outliving its subscriptions.
 * Every function runs on the broadcasting thread (or fiber) with no pubsub
 * lock held, except lane_ref and lane_unref, which may run under a
 * partition lock and must neither block nor call into pubsub. */
typedef struct keel_pubsub_lane_class {
  /* Encodes msg once per broadcast for every lane of this class: returns
   * a payload (freed with payload_free after the broadcast's last
   * deliver), or NULL when msg has no lane form (or on out-of-memory):
   * this broadcast then sends msg to those subscribers' pids as to plain
   * subscribers. */
  void *(*encode)(keel_term msg, void *cls_arg);
  /* Delivers a payload to one lane. KEEL_OK counts as a message sent; a
   * negative KEEL_E* is not counted (what a failure means for the
   * subscriber is the lane's business: a closed lane, say). */
  int (*deliver)(void *lane, void *payload);
  void (*payload_free)(void *payload);
  /* Reference counting of a lane: pubsub holds one reference per
   * subscription and one per broadcast delivering to it. */
  void (*lane_ref)(void *lane);
  void (*lane_unref)(void *lane);
  void *cls_arg;
} keel_pubsub_lane_class;

/* Subscribes the calling process to topic through a lane: a broadcast
 * (any dispatcher, local or forwarded from another node) encodes its
 * message once per lane class and hands the payload to cls->deliver(lane)
 * instead of sending the message to the process. The subscription is the
 * process's as any other: keel_pubsub_unsubscribe and the process's death
 * remove it (dropping pubsub's reference on lane), broadcast_from skips
 * it, count and subscribers include it (its value is 'lane'). Takes a
 * reference on lane (cls->lane_ref) on success. Errors: as subscribe,
 * KEEL_EINVAL (cls, one of its functions, or lane NULL). */
int keel_pubsub_subscribe_lane(keel_pubsub ps, keel_term topic,
                               const keel_pubsub_lane_class *cls, void *lane);

/* Removes every subscription of the calling process to topic; KEEL_OK also
 * when there is none. O(the caller's subscriptions in the topic's
 * partition), whatever the topic's size. Errors as subscribe. */
int keel_pubsub_unsubscribe(keel_pubsub ps, keel_term topic);

/* Phoenix.PubSub.broadcast: dispatches msg to every subscriber of topic on
 * this node with d (NULL: the default dispatcher), then hands it to the
 * node adapter. Returns the number of local messages sent (>= 0) or a
 * negative KEEL_E*: KEEL_EBADARG (stale handle), KEEL_EINVAL (topic or msg
 * KEEL_NONE), KEEL_ENOMEM (no snapshot), the dispatcher's and the adapter's
 * errors. */
int64_t keel_pubsub_broadcast(keel_pubsub ps, keel_term topic, keel_term msg,
                              const keel_pubsub_dispatcher *d);

/* broadcast_from: as broadcast, skipping the subscriptions of from (a
 * pid, usually the caller's own). */
int64_t keel_pubsub_broadcast_from(keel_pubsub ps, keel_term from,
                                   keel_term topic, keel_term msg,
                                   const keel_pubsub_dispatcher *d);

/* local_broadcast and local_broadcast_from: this node only (the adapter is
 * not called). */
int64_t keel_pubsub_local_broadcast(keel_pubsub ps, keel_term topic,
                                    keel_term msg,
                                    const keel_pubsub_dispatcher *d);
int64_t keel_pubsub_local_broadcast_from(keel_pubsub ps, keel_term from,
                                         keel_term topic, keel_term msg,
                                         const keel_pubsub_dispatcher *d);

/* direct_broadcast: to the subscribers on node only (an atom). The local
 * node (keel_term_local_node) dispatches here; another node goes through
 * the adapter's direct_broadcast, KEEL_EUNSUPPORTED without one. */
int64_t keel_pubsub_direct_broadcast(keel_pubsub ps, keel_term node,
                                     keel_term topic, keel_term msg,
                                     const keel_pubsub_dispatcher *d);

/* Number of subscriptions to topic (>= 0), or KEEL_EBADARG/KEEL_EINVAL. */
int64_t keel_pubsub_count(keel_pubsub ps, keel_term topic);

/* The subscriptions to topic as a list of {Pid, Value}, built in h. */
int keel_pubsub_subscribers(keel_pubsub ps, keel_term topic, keel_heap *h,
                            keel_term *out);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_PUBSUB_H */
