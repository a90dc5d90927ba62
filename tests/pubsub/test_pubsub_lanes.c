/*
 * test_pubsub_lanes.c - lane subscriptions (keel_pubsub_subscribe_lane)
 * with a recording lane class: one encode per class per broadcast, every
 * lane gets every broadcast once and each sender's in order, also when
 * lane writers share a broadcast; broadcast_from skips the sender's
 * lanes; a message with no lane form goes to the process; unsubscribing
 * and death drop pubsub's references. 1, 2 and 8 schedulers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "pubsub/ps_test.h"

enum { NLANES = 1200, NSENDERS = 2, NMSGS = 40 };

/* A recording lane: the messages it got, per sender, in order. */
typedef struct rec_lane {
  _Atomic int refs;
  pthread_mutex_t mu;
  int next[NSENDERS]; /* next expected sequence number of each sender */
  int got;
  bool bad; /* a message out of order or twice */
} rec_lane;

static _Atomic long encodes, frees;

/* The payload: the message's {Sender, Seq} as two ints; NULL for any
 * other message (it then goes to the process). */
static void *rec_encode(keel_term msg, void *cls_arg) {
  (void)cls_arg;
  if (!keel_is_tuple(msg) || keel_tuple_arity(msg) != 2)
    return NULL;
  int *p = malloc(2 * sizeof *p);
  cr_assert_not_null(p);
  p[0] = (int)keel_small_value(keel_tuple_get(msg, 0));
  p[1] = (int)keel_small_value(keel_tuple_get(msg, 1));
  atomic_fetch_add(&encodes, 1);
  return p;
}

static int rec_deliver(void *lane, void *payload) {
  rec_lane *l = lane;
  const int *p = payload;
  pthread_mutex_lock(&l->mu);
  if (p[0] < 0 || p[0] >= NSENDERS || l->next[p[0]] != p[1])
    l->bad = true;
  else
    l->next[p[0]]++;
  l->got++;
  pthread_mutex_unlock(&l->mu);
  return KEEL_OK;
}

static void rec_payload_free(void *payload) {
  atomic_fetch_add(&frees, 1);
  free(payload);
}

static void rec_ref(void *lane) {
  atomic_fetch_add(&((rec_lane *)lane)->refs, 1);
}

static void rec_unref(void *lane) {
  atomic_fetch_sub(&((rec_lane *)lane)->refs, 1);
}

static const keel_pubsub_lane_class rec_cls = {
    rec_encode, rec_deliver, rec_payload_free, rec_ref, rec_unref, NULL};

static rec_lane lanes[NLANES];

/* The subscriber: subscribes every lane, reports, then logs what it
 * receives until told to exit. */
typedef struct owner {
  keel_pubsub ps;
  keel_term topic;
  _Atomic int subscribed; /* 1 ok, -1 failed */
  _Atomic int plain;      /* messages received as messages */
} owner;

static void owner_main(keel_proc *self, void *arg) {
  owner *o = arg;
  int rc = KEEL_OK;
  for (int i = 0; i < NLANES && rc == KEEL_OK; i++)
    rc = keel_pubsub_subscribe_lane(o->ps, o->topic, &rec_cls, &lanes[i]);
  atomic_store(&o->subscribed, rc == KEEL_OK ? 1 : -1);
  signal_event();
  for (;;) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK ||
        m == keel_atom("exit"))
      return;
    if (m == keel_atom("unsub")) {
      (void)keel_pubsub_unsubscribe(o->ps, o->topic);
      signal_event();
      continue;
    }
    atomic_fetch_add(&o->plain, 1);
    signal_event();
  }
}

typedef struct sender {
  keel_pubsub ps;
  keel_term topic;
  int id;
  _Atomic int failed;
} sender;

static void *sender_main(void *arg) {
  sender *s = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int k = 0; k < NMSGS; k++) {
    keel_term m = keel_tuple(&h, 2, keel_small(s->id), keel_small(k));
    if (keel_pubsub_local_broadcast(s->ps, s->topic, m, NULL) != NLANES)
      atomic_store(&s->failed, 1);
  }
  keel_heap_destroy(&h);
  return NULL;
}

static bool lanes_unreferenced(void *arg) {
  (void)arg;
  for (int i = 0; i < NLANES; i++)
    if (atomic_load(&lanes[i].refs) != 0)
      return false;
  return true;
}

static void run(unsigned nsched, unsigned writers) {
  start_node(nsched, 0);
  keel_pubsub_opts po = {.name = KEEL_NONE, .lane_writers = writers};
  keel_pubsub ps;
  cr_assert_eq(keel_pubsub_start(&po, &ps), KEEL_OK);
  memset(lanes, 0, sizeof lanes);
  for (int i = 0; i < NLANES; i++)
    pthread_mutex_init(&lanes[i].mu, NULL);
  atomic_store(&encodes, 0);
  atomic_store(&frees, 0);
  owner o = {.ps = ps, .topic = keel_atom("lanes")};
  keel_term opid;
  cr_assert_eq(keel_spawn_fiber(owner_main, &o, NULL, &opid), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&o.subscribed), 1);
  cr_assert_eq(keel_pubsub_count(ps, o.topic), NLANES);
  /* Two senders at once: each lane gets each message once, each
   * sender's in order; one encode per broadcast. */
  sender s[NSENDERS];
  pthread_t th[NSENDERS];
  for (int i = 0; i < NSENDERS; i++) {
    s[i] = (sender){.ps = ps, .topic = o.topic, .id = i};
    cr_assert_eq(pthread_create(&th[i], NULL, sender_main, &s[i]), 0);
  }
  for (int i = 0; i < NSENDERS; i++) {
    cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(atomic_load(&s[i].failed), 0);
  }
  for (int i = 0; i < NLANES; i++) {
    cr_assert_not(lanes[i].bad, "lane %d: out of order or twice", i);
    cr_assert_eq(lanes[i].got, NSENDERS * NMSGS, "lane %d", i);
  }
  cr_assert_eq(atomic_load(&encodes), NSENDERS * NMSGS);
  cr_assert_eq(atomic_load(&frees), NSENDERS * NMSGS);
  /* broadcast_from the owner skips its lanes. */
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = keel_tuple(&h, 2, keel_small(0), keel_small(NMSGS));
  cr_assert_eq(keel_pubsub_local_broadcast_from(ps, opid, o.topic, m, NULL), 0);
  /* No lane form: one message per lane to the process. */
  cr_assert_eq(keel_pubsub_local_broadcast(ps, o.topic, keel_atom("x"), NULL),
               NLANES);
  cr_assert(wait_events(1 + NLANES));
  cr_assert_eq(atomic_load(&o.plain), NLANES);
  keel_heap_destroy(&h);
  /* Unsubscribing drops pubsub's references; nothing is delivered. */
  cr_assert_eq(keel_send(opid, keel_atom("unsub")), KEEL_OK);
  cr_assert(wait_events(2 + NLANES));
  cr_assert_eq(keel_pubsub_count(ps, o.topic), 0);
  cr_assert(wait_until(lanes_unreferenced, NULL));
  /* Death drops them too. */
  cr_assert_eq(keel_send(opid, keel_atom("exit")), KEEL_OK);
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  for (int i = 0; i < NLANES; i++)
    pthread_mutex_destroy(&lanes[i].mu);
}

Test(pubsub_lanes, every_lane_gets_each_senders_broadcasts_once_in_order) {
  for (size_t k = 0; k < NCONF; k++)
    run(sched_counts[k], 0);
}

Test(pubsub_lanes, lane_writers_share_a_broadcast_and_keep_order) {
  for (size_t k = 0; k < NCONF; k++)
    run(sched_counts[k], 2);
}

/* A process that dies with lane subscriptions: they go, with pubsub's
 * references. */
static void dier(keel_proc *self, void *arg) {
  (void)self;
  owner *o = arg;
  int rc = KEEL_OK;
  for (int i = 0; i < 10 && rc == KEEL_OK; i++)
    rc = keel_pubsub_subscribe_lane(o->ps, o->topic, &rec_cls, &lanes[i]);
  atomic_store(&o->subscribed, rc == KEEL_OK ? 1 : -1);
  signal_event();
}

static bool count_zero(void *arg) {
  owner *o = arg;
  return keel_pubsub_count(o->ps, o->topic) == 0;
}

Test(pubsub_lanes, death_and_bad_arguments) {
  start_node(2, 0);
  keel_pubsub ps;
  cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
  memset(lanes, 0, sizeof lanes);
  owner o = {.ps = ps, .topic = keel_atom("d")};
  cr_assert_eq(keel_pubsub_subscribe_lane(ps, o.topic, &rec_cls, &lanes[0]),
               KEEL_ESTATE, "a thread is not a process");
  keel_pubsub_lane_class bad = rec_cls;
  bad.deliver = NULL;
  cr_assert_eq(keel_pubsub_subscribe_lane(ps, o.topic, &bad, &lanes[0]),
               KEEL_EINVAL);
  cr_assert_eq(keel_pubsub_subscribe_lane(ps, o.topic, &rec_cls, NULL),
               KEEL_EINVAL);
  keel_pubsub_opts po = {.lane_writers = KEEL_PUBSUB_MAX_LANE_WRITERS + 1};
  keel_pubsub other;
  cr_assert_eq(keel_pubsub_start(&po, &other), KEEL_EINVAL);
  cr_assert_eq(keel_spawn_fiber(dier, &o, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&o.subscribed), 1);
  cr_assert(wait_until(count_zero, &o));
  cr_assert(wait_until(lanes_unreferenced, NULL));
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
