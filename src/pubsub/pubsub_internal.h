/*
 * pubsub_internal.h - what the pubsub layer's files share (private to
 * src/pubsub): an intrusive chained hash map, owned term copies, and the
 * one runtime exit hook pubsub and presence share.
 */
#ifndef KEEL_PUBSUB_INTERNAL_H
#define KEEL_PUBSUB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "keel/pubsub.h"
#include "keel/term.h"

/* A node of a ps_map: embed it as the first member of the element. */
typedef struct ps_hnode {
  struct ps_hnode *next;
  uint64_t hash;
} ps_hnode;

/* A chained hash map that grows at load 1; the caller compares keys. */
typedef struct ps_map {
  ps_hnode **b;
  size_t nb; /* power of two, or 0 */
  size_t n;
} ps_map;

/* The first node of hash's chain (follow ->next, check ->hash). */
ps_hnode *ps_map_chain(const ps_map *m, uint64_t hash);
/* Adds node (its hash set). KEEL_OK or KEEL_ENOMEM. */
int ps_map_add(ps_map *m, ps_hnode *node);
/* Removes node, which must be in m. */
void ps_map_del(ps_map *m, ps_hnode *node);
/* Frees the bucket array (not the nodes). */
void ps_map_free(ps_map *m);

/* A term copied into its own allocation (or an immediate). */
typedef struct ps_owned {
  uint64_t *words;
  keel_offheap *off;
} ps_owned;

/* Copies t into o; returns the copy or KEEL_NONE on out-of-memory. */
keel_term ps_own(ps_owned *o, keel_term t);
/* Frees what ps_own made. */
void ps_disown(ps_owned *o);

/* ---- pubsub instances ---- */

typedef struct ps_sub ps_sub;
/* An instance's lane writers (keel_pubsub_opts.lane_writers; lanes.c). */
typedef struct ps_writers ps_writers;

/* A topic: its subscribers in a dense array (swap-remove), and for each
 * entry the subscription that owns it. */
typedef struct ps_topic {
  ps_hnode node;
  keel_term topic;
  ps_owned own;
  size_t n, cap;
  size_t nboxed; /* entries whose value is not an immediate */
  size_t nlanes; /* entries that are lane subscriptions */
  keel_pubsub_entry *subs;
  ps_sub **back;
} ps_topic;

/* A process's subscriptions in one partition. */
typedef struct ps_proc {
  ps_hnode node;
  keel_term pid;
  ps_sub *subs;
} ps_proc;

struct ps_sub {
  ps_topic *topic;
  size_t idx; /* in topic->subs */
  ps_proc *proc;
  ps_sub *pnext, *pprev;
  ps_owned val;
  const keel_pubsub_lane_class *lane_cls; /* NULL: a plain subscription */
  void *lane;
};

typedef struct ps_part {
  pthread_rwlock_t lock;
  ps_map topics; /* of ps_topic */
  ps_map procs;  /* of ps_proc, by pid */
  _Atomic size_t nprocs;
} __attribute__((aligned(64))) ps_part;

typedef struct ps_inst {
  keel_term name; /* under the instances' mutex */
  ps_part *parts; /* KEEL_PUBSUB_MAX_PARTITIONS, allocated once */
  keel_pubsub_adapter adapter;
  ps_writers *writers;   /* set before open, cleared after stop's clear */
  _Atomic uint32_t busy; /* broadcasts using writers */
  _Atomic uint32_t gen;
  _Atomic unsigned nparts;
  _Atomic bool open;
  bool used; /* slot taken (under the instances' mutex) */
  bool has_adapter;
} ps_inst;

/* A locked partition of a live instance. */
typedef struct ps_ctx {
  ps_inst *inst;
  ps_part *part;
  uint64_t hash; /* of the topic */
} ps_ctx;

/* Locks the partition of topic (for writing or reading) after checking
 * the handle: KEEL_OK or KEEL_EBADARG (stale). Nothing that can switch a
 * fiber out (keel_send, receive) may run while it is held. */
int ps_enter(keel_pubsub ps, keel_term topic, bool write, ps_ctx *c);
void ps_exit(ps_ctx *c);
/* The topic record of c's partition, or NULL. */
ps_topic *ps_topic_find(ps_ctx *c, keel_term topic);
/* Copies the node adapter of c's instance; false when it has none. */
bool ps_adapter(const ps_ctx *c, keel_pubsub_adapter *out);
/* The lane writers of c's live instance (NULL: none), taken while c is
 * held; they stay valid (keel_pubsub_stop waits) until ps_writers_put,
 * which the caller must call once it is done with them (NULL: no-op). */
ps_writers *ps_writers_get(const ps_ctx *c);
void ps_writers_put(keel_pubsub ps, ps_writers *w);

/* ---- lanes (lanes.c) ---- */

/* A lane subscription as a broadcast delivers to it (holding a reference
 * on lane). */
typedef struct ps_lane {
  const keel_pubsub_lane_class *cls;
  void *lane;
  keel_term pid;
} ps_lane;

/* The payloads of one broadcast, one per lane class. */
enum { PS_LANE_CLASSES = 8 };
typedef struct ps_payloads {
  const keel_pubsub_lane_class *cls[PS_LANE_CLASSES];
  void *payload[PS_LANE_CLASSES];
  unsigned n;
} ps_payloads;

/* Starts n writer threads (*out NULL when n is 0). KEEL_OK, KEEL_ENOMEM,
 * KEEL_ESYSLIMIT (no thread could be started). */
int ps_writers_start(unsigned n, ps_writers **out);
/* Stops and joins them (NULL: no-op); no broadcast may be using them. */
void ps_writers_stop(ps_writers *w);

/* Delivers msg to lanes[0..n) except from's (w NULL: on the calling
 * thread alone); returns the number delivered. */
int64_t ps_deliver_lanes(ps_writers *w, const ps_lane *lanes, size_t n,
                         keel_term from, keel_term msg);

/* Arms the shared exit hook for a local pid (keel_exit_hook_arm's
 * errors, or KEEL_ESYSLIMIT when no hook could be added). When the pid
 * dies the hook removes its subscriptions and then its presences. */
int ps_arm(keel_term pid);

/* Presence's part of the exit hook (presence.c). */
void ps_presence_on_death(keel_term pid);

#endif
