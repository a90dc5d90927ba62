/* PubSub at scale and under contention: 10,000 subscribers of one topic
 * (every one receives a broadcast; half unsubscribe, half die), and
 * fibers subscribing, broadcasting, unsubscribing and dying concurrently
 * on 1, 2 and 8 schedulers (run under TSan by test-tsan). */
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "keel/pubsub.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define MANY 10000

typedef struct many {
  keel_pubsub ps;
  keel_term topic;
  _Atomic long got;
  keel_term *pids; /* index i's pid: i is its subscription's value */
} many;

/* Index of pid in m->pids (linear: called once per check). */
static long index_of(const many *m, keel_term pid) {
  for (long i = 0; i < MANY; i++)
    if (m->pids[i] == pid)
      return i;
  return -1;
}

/* 'sub' subscribes, 'unsub' unsubscribes (each then counts an event);
 * any other message is a delivery. */
static keel_handler_status many_sub(keel_proc *self, keel_term msg,
                                    void *state) {
  many *m = state;
  if (msg == keel_atom("sub")) {
    if (keel_pubsub_subscribe(m->ps, m->topic,
                              keel_small(index_of(m, keel_self(self)))) ==
        KEEL_OK)
      signal_event();
  } else if (msg == keel_atom("unsub")) {
    if (keel_pubsub_unsubscribe(m->ps, m->topic) == KEEL_OK)
      signal_event();
  } else {
    atomic_fetch_add(&m->got, 1);
  }
  return KEEL_CONTINUE;
}

static bool got_reached(void *arg) {
  void **a = arg;
  return atomic_load(&((many *)a[0])->got) >= *(long *)a[1];
}

static bool count_is(void *arg) {
  void **a = arg;
  many *m = a[0];
  return keel_pubsub_count(m->ps, m->topic) == *(long *)a[1];
}

Test(pubsub_stress, ten_thousand_subscribers) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], MANY + 64);
    many m = {.topic = keel_atom("hot")};
    atomic_init(&m.got, 0);
    cr_assert_eq(keel_pubsub_start(NULL, &m.ps), KEEL_OK);
    keel_term *pids = calloc(MANY, sizeof *pids);
    cr_assert_not_null(pids);
    m.pids = pids;
    for (int i = 0; i < MANY; i++)
      cr_assert_eq(keel_spawn(many_sub, &m, NULL, &pids[i]), KEEL_OK);
    for (int i = 0; i < MANY; i++)
      cr_assert_eq(keel_send(pids[i], keel_atom("sub")), KEEL_OK);
    cr_assert(wait_events(MANY), "all subscribed");
    cr_assert_eq(keel_pubsub_count(m.ps, m.topic), MANY);
    cr_assert_eq(keel_pubsub_broadcast(m.ps, m.topic, keel_small(1), NULL),
                 MANY);
    long target = MANY;
    void *a[2] = {&m, &target};
    cr_assert(wait_until(got_reached, a), "every subscriber got it");
    /* even ones unsubscribe, odd ones die */
    reset_events();
    for (int i = 0; i < MANY; i += 2)
      cr_assert_eq(keel_send(pids[i], keel_atom("unsub")), KEEL_OK);
    cr_assert(wait_events(MANY / 2));
    cr_assert_eq(keel_pubsub_count(m.ps, m.topic), MANY / 2);
    /* swap-removal kept every remaining entry's pid and value together */
    keel_heap h;
    keel_heap_init(&h);
    keel_term l;
    cr_assert_eq(keel_pubsub_subscribers(m.ps, m.topic, &h, &l), KEEL_OK);
    long seen = 0;
    for (; keel_is_cons(l); l = keel_tl(l), seen++) {
      int64_t v = keel_small_value(keel_tuple_get(keel_hd(l), 1));
      cr_assert(v % 2 == 1 && v < MANY);
      cr_assert_eq(pids[v], keel_tuple_get(keel_hd(l), 0));
    }
    cr_assert_eq(seen, MANY / 2);
    keel_heap_destroy(&h);
    for (int i = 1; i < MANY; i += 2)
      cr_assert_eq(keel_exit(pids[i], keel_atom("kill")), KEEL_OK);
    long zero = 0;
    void *z[2] = {&m, &zero};
    cr_assert(wait_until(count_is, z), "the dead are gone");
    cr_assert_eq(keel_pubsub_broadcast(m.ps, m.topic, keel_small(2), NULL), 0);
    cr_assert_eq(keel_pubsub_stop(m.ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&m.got), MANY, "nothing after unsubscribing");
    free(pids);
  }
}

/* ---- concurrent churn ---- */

#define FIBERS 24
#define ITERS 300
#define TOPICS 4

typedef struct churn {
  keel_pubsub ps;
  keel_term topics[TOPICS];
  _Atomic int done;
} churn;

typedef struct churn_arg {
  churn *c;
  int id;
} churn_arg;

static void churner(keel_proc *self, void *arg) {
  churn_arg *ca = arg;
  churn *c = ca->c;
  for (int i = 0; i < ITERS; i++) {
    keel_term t = c->topics[(ca->id + i) % TOPICS];
    (void)keel_pubsub_subscribe(c->ps, t, keel_small(i));
    (void)keel_pubsub_broadcast_from(
        c->ps, keel_self(self), c->topics[i % TOPICS], keel_small(i), NULL);
    if (i % 3 != 0)
      (void)keel_pubsub_unsubscribe(c->ps, t);
    keel_term m;
    while (keel_receive(self, NULL, NULL, 0, &m) == KEEL_OK)
      ;
  }
  atomic_fetch_add(&c->done, 1);
  signal_event();
  /* odd fibers exit still subscribed (the exit hook cleans up); even ones
   * unsubscribe everything first */
  for (int t = 0; ca->id % 2 == 0 && t < TOPICS; t++)
    (void)keel_pubsub_unsubscribe(c->ps, c->topics[t]);
}

static bool all_empty(void *arg) {
  churn *c = arg;
  for (int t = 0; t < TOPICS; t++)
    if (keel_pubsub_count(c->ps, c->topics[t]) != 0)
      return false;
  return true;
}

Test(pubsub_stress, concurrent_churn) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    churn c = {.topics = {keel_atom("c0"), keel_atom("c1"), keel_atom("c2"),
                          keel_atom("c3")}};
    atomic_init(&c.done, 0);
    keel_pubsub_opts o = {.name = KEEL_NONE, .partitions = 2};
    cr_assert_eq(keel_pubsub_start(&o, &c.ps), KEEL_OK);
    churn_arg args[FIBERS];
    for (int i = 0; i < FIBERS; i++) {
      args[i] = (churn_arg){&c, i};
      cr_assert_eq(keel_spawn_fiber(churner, &args[i], NULL, NULL), KEEL_OK);
    }
    /* the test thread broadcasts meanwhile */
    for (int i = 0; atomic_load(&c.done) < FIBERS && i < 100000; i++)
      cr_assert_geq(
          keel_pubsub_broadcast(c.ps, c.topics[i % TOPICS], KEEL_NIL, NULL), 0);
    cr_assert(wait_events(FIBERS));
    cr_assert(wait_until(all_empty, &c), "every subscription went");
    cr_assert_eq(keel_pubsub_stop(c.ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
