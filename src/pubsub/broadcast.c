/*
 * broadcast.c - the broadcast calls, the default and fastlane dispatchers
 * and the node adapter calls.
 *
 * A broadcast read-locks the topic's partition only, copies the topic's
 * subscriber array (one memcpy; no term is built), unlocks, and then runs
 * the dispatcher and the node adapter with no lock held.
 */
#include <stdlib.h>
#include <string.h>

#include "keel/buf.h"
#include "keel/etf.h"
#include "keel/runtime.h"
#include "pubsub/pubsub_internal.h"

static int64_t default_dispatch(const keel_pubsub_entry *subs, size_t n,
                                keel_term from, keel_term msg, void *arg) {
  (void)arg;
  int64_t sent = 0;
  for (size_t i = 0; i < n; i++) {
    if (subs[i].pid == from)
      continue;
    int rc = keel_send(subs[i].pid, msg);
    if (rc == KEEL_OK)
      sent++;
    else if (rc == KEEL_ESTATE)
      return rc;
  }
  return sent;
}

/* A subscription value {fastlane, Pid, Tag}: *to and *tag. */
static bool fastlane_of(keel_term v, keel_term fl, keel_term *to,
                        keel_term *tag) {
  if (!keel_is_tuple(v) || keel_tuple_arity(v) != 3 ||
      keel_tuple_get(v, 0) != fl)
    return false;
  *to = keel_tuple_get(v, 1);
  *tag = keel_tuple_get(v, 2);
  return true;
}

/* The message {Tag, Bin} with msg encoded once into Bin, built in h. */
static keel_term encoded(keel_heap *h, keel_term msg, keel_term tag,
                         keel_term *bin) {
  if (*bin == KEEL_NONE) {
    keel_buf b;
    keel_buf_init(&b);
    if (keel_etf_encode(&b, msg, NULL) == KEEL_OK)
      *bin = keel_binary(h, b.data, b.len);
    keel_buf_free(&b);
  }
  return *bin != KEEL_NONE ? keel_tuple(h, 2, tag, *bin) : KEEL_NONE;
}

static int64_t fastlane_dispatch(const keel_pubsub_entry *subs, size_t n,
                                 keel_term from, keel_term msg, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term bin = KEEL_NONE, last_tag = KEEL_NONE, frame = KEEL_NONE;
  keel_term fl = keel_atom("fastlane");
  int64_t sent = 0;
  for (size_t i = 0; i < n; i++) {
    if (subs[i].pid == from)
      continue;
    keel_term to = subs[i].pid, tag, m = msg;
    if (fastlane_of(subs[i].value, fl, &to, &tag)) {
      if (tag != last_tag || frame == KEEL_NONE) {
        frame = encoded(&h, msg, tag, &bin);
        last_tag = tag;
      }
      m = frame;
    }
    if (m != KEEL_NONE && keel_send(to, m) == KEEL_OK)
      sent++;
  }
  keel_heap_destroy(&h);
  return sent;
}

const keel_pubsub_dispatcher keel_pubsub_default_dispatcher = {
    .name = KEEL_NONE, .fn = default_dispatch, .arg = NULL};
const keel_pubsub_dispatcher keel_pubsub_fastlane_dispatcher = {
    .name = KEEL_NONE, .fn = fastlane_dispatch, .arg = NULL};

/* The name a dispatcher is forwarded under. */
static keel_term dispatcher_name(const keel_pubsub_dispatcher *d) {
  if (d->fn == fastlane_dispatch)
    return keel_atom("fastlane");
  if (d->name != KEEL_NONE)
    return d->name;
  return keel_atom("default");
}

enum { REMOTE_NONE, REMOTE_ALL };

/* Entries copied onto the stack below this many subscribers. */
#define SNAP_STACK 64

/* A copy of a topic's subscribers taken under the partition's read lock,
 * so the dispatcher runs with no lock held: keel_send may switch a fiber
 * out, and a lock must never be held across that. Boxed values are
 * copied into h (the subscription owning them may go meanwhile); lanes
 * are referenced (their subscription may be removed meanwhile). */
typedef struct snap {
  keel_pubsub_entry stack[SNAP_STACK];
  keel_pubsub_entry *e;
  size_t n;
  ps_lane *lanes;
  size_t nl;
  keel_heap h;
} snap;

/* Copies a boxed value of e into s's heap. */
static int snap_own(snap *s, keel_pubsub_entry *e) {
  if (keel_term_copy_words(e->value) > 0 &&
      (e->value = keel_term_copy(&s->h, e->value)) == KEEL_NONE)
    return KEEL_ENOMEM;
  return KEEL_OK;
}

/* Splits t's entries into plain ones (s->e) and lanes (s->lanes). */
static int snap_split(snap *s, const ps_topic *t) {
  size_t plain = t->n - t->nlanes;
  if (plain > SNAP_STACK && (s->e = malloc(plain * sizeof *s->e)) == NULL)
    return KEEL_ENOMEM;
  if ((s->lanes = malloc(t->nlanes * sizeof *s->lanes)) == NULL)
    return KEEL_ENOMEM;
  for (size_t i = 0; i < t->n; i++) {
    const ps_sub *b = t->back[i];
    if (b->lane_cls != NULL) {
      b->lane_cls->lane_ref(b->lane);
      s->lanes[s->nl++] = (ps_lane){b->lane_cls, b->lane, t->subs[i].pid};
    } else if (s->n < plain) {
      s->e[s->n] = t->subs[i];
      if (t->nboxed > 0 && snap_own(s, &s->e[s->n]) != KEEL_OK)
        return KEEL_ENOMEM;
      s->n++;
    }
  }
  return KEEL_OK;
}

static int snap_take(snap *s, const ps_topic *t) {
  s->e = s->stack;
  s->n = 0;
  s->lanes = NULL;
  s->nl = 0;
  if (t == NULL)
    return KEEL_OK;
  if (t->nlanes > 0)
    return snap_split(s, t);
  if (t->n > SNAP_STACK && (s->e = malloc(t->n * sizeof *s->e)) == NULL)
    return KEEL_ENOMEM;
  if (t->n > 0)
    memcpy(s->e, t->subs, t->n * sizeof *s->e);
  s->n = t->n;
  for (size_t i = 0; t->nboxed > 0 && i < s->n; i++)
    if (snap_own(s, &s->e[i]) != KEEL_OK)
      return KEEL_ENOMEM;
  return KEEL_OK;
}

static void snap_free(snap *s) {
  for (size_t i = 0; i < s->nl; i++)
    s->lanes[i].cls->lane_unref(s->lanes[i].lane);
  free(s->lanes);
  if (s->e != s->stack)
    free(s->e);
  keel_heap_destroy(&s->h);
}

static int64_t dispatch(keel_pubsub ps, keel_term from, keel_term topic,
                        keel_term msg, const keel_pubsub_dispatcher *d,
                        int remote) {
  if (topic == KEEL_NONE || msg == KEEL_NONE || (d != NULL && d->fn == NULL))
    return KEEL_EINVAL;
  if (d == NULL)
    d = &keel_pubsub_default_dispatcher;
  ps_ctx c;
  int rc = ps_enter(ps, topic, false, &c);
  if (rc != KEEL_OK)
    return rc;
  keel_pubsub_adapter ad;
  bool has = ps_adapter(&c, &ad);
  snap s;
  keel_heap_init(&s.h);
  rc = snap_take(&s, ps_topic_find(&c, topic));
  ps_writers *w = s.nl > 0 ? ps_writers_get(&c) : NULL;
  ps_exit(&c);
  int64_t n = rc;
  if (rc == KEEL_OK)
    n = s.n > 0 ? d->fn(s.e, s.n, from, msg, d->arg) : 0;
  if (n >= 0 && s.nl > 0)
    n += ps_deliver_lanes(w, s.lanes, s.nl, from, msg);
  ps_writers_put(ps, w);
  snap_free(&s);
  if (n >= 0 && remote == REMOTE_ALL && has && ad.broadcast != NULL) {
    rc = ad.broadcast(ps, topic, msg, from, dispatcher_name(d), ad.arg);
    if (rc < 0)
      return rc;
  }
  return n;
}

int64_t keel_pubsub_broadcast(keel_pubsub ps, keel_term topic, keel_term msg,
                              const keel_pubsub_dispatcher *d) {
  return dispatch(ps, KEEL_NONE, topic, msg, d, REMOTE_ALL);
}

int64_t keel_pubsub_broadcast_from(keel_pubsub ps, keel_term from,
                                   keel_term topic, keel_term msg,
                                   const keel_pubsub_dispatcher *d) {
  return dispatch(ps, from, topic, msg, d, REMOTE_ALL);
}

int64_t keel_pubsub_local_broadcast(keel_pubsub ps, keel_term topic,
                                    keel_term msg,
                                    const keel_pubsub_dispatcher *d) {
  return dispatch(ps, KEEL_NONE, topic, msg, d, REMOTE_NONE);
}

int64_t keel_pubsub_local_broadcast_from(keel_pubsub ps, keel_term from,
                                         keel_term topic, keel_term msg,
                                         const keel_pubsub_dispatcher *d) {
  return dispatch(ps, from, topic, msg, d, REMOTE_NONE);
}

int64_t keel_pubsub_direct_broadcast(keel_pubsub ps, keel_term node,
                                     keel_term topic, keel_term msg,
                                     const keel_pubsub_dispatcher *d) {
  if (!keel_is_atom(node))
    return KEEL_EINVAL;
  if (node == keel_term_local_node(NULL))
    return dispatch(ps, KEEL_NONE, topic, msg, d, REMOTE_NONE);
  if (topic == KEEL_NONE || msg == KEEL_NONE)
    return KEEL_EINVAL;
  ps_ctx c;
  int rc = ps_enter(ps, topic, false, &c);
  if (rc != KEEL_OK)
    return rc;
  keel_pubsub_adapter ad;
  bool has = ps_adapter(&c, &ad);
  ps_exit(&c);
  if (!has || ad.direct_broadcast == NULL)
    return KEEL_EUNSUPPORTED;
  const keel_pubsub_dispatcher *dd =
      d != NULL ? d : &keel_pubsub_default_dispatcher;
  rc = ad.direct_broadcast(ps, node, topic, msg, KEEL_NONE, dispatcher_name(dd),
                           ad.arg);
  return rc < 0 ? rc : 0;
}
