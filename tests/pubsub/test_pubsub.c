/* PubSub (PS1-PS3, PS5): instances and handles, subscribe/unsubscribe,
 * the broadcast calls, broadcast_from exclusion, per-sender order, custom
 * and fastlane dispatchers, the node adapter hook, removal at death and a
 * supervised instance. 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/etf.h"
#include "keel/supervisor.h"
#include "pubsub/ps_test.h"

static keel_pubsub start_ps(const char *name) {
  keel_pubsub_opts o = {.name = name != NULL ? keel_atom(name) : KEEL_NONE};
  keel_pubsub ps;
  cr_assert_eq(keel_pubsub_start(&o, &ps), KEEL_OK);
  return ps;
}

Test(pubsub, instances_and_stale_handles) {
  start_node(1, 0);
  keel_pubsub a = start_ps("ps_a"), b, c;
  keel_pubsub_opts o = {.name = keel_atom("ps_a")};
  cr_assert_eq(keel_pubsub_start(&o, &b), KEEL_EEXIST);
  o.partitions = KEEL_PUBSUB_MAX_PARTITIONS + 1;
  o.name = KEEL_NONE;
  cr_assert_eq(keel_pubsub_start(&o, &b), KEEL_EINVAL);
  o.name = keel_small(3);
  o.partitions = 0;
  cr_assert_eq(keel_pubsub_start(&o, &b), KEEL_EINVAL);
  cr_assert_eq(keel_pubsub_whereis(keel_atom("ps_a"), &b), KEEL_OK);
  cr_assert_eq(b.id, a.id);
  cr_assert_eq(keel_pubsub_whereis(keel_atom("ps_none"), &b), KEEL_ENOENT);
  cr_assert_eq(keel_pubsub_subscribe(a, keel_atom("t"), KEEL_NONE), KEEL_ESTATE,
               "a thread is not a process");
  cr_assert_eq(keel_pubsub_stop(a), KEEL_OK);
  cr_assert_eq(keel_pubsub_stop(a), KEEL_EBADARG);
  cr_assert_eq(keel_pubsub_whereis(keel_atom("ps_a"), &b), KEEL_ENOENT);
  /* a new instance in the same slot: the old handle stays stale */
  c = start_ps("ps_a");
  cr_assert_neq(c.id, a.id);
  cr_assert_eq(keel_pubsub_count(a, keel_atom("t")), KEEL_EBADARG);
  cr_assert_eq(keel_pubsub_broadcast(a, keel_atom("t"), KEEL_NIL, NULL),
               KEEL_EBADARG);
  cr_assert_eq(keel_pubsub_count(c, keel_atom("t")), 0);
  cr_assert_eq(keel_pubsub_count((keel_pubsub){0}, keel_atom("t")),
               KEEL_EBADARG);
  cr_assert_eq(keel_pubsub_stop(c), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(pubsub, subscribe_broadcast_unsubscribe) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps = start_ps(NULL);
    sub_state *a = sub_new(ps), *b = sub_new(ps);
    keel_heap h;
    keel_heap_init(&h);
    keel_term t = keel_build(&h, "{room, 1}"), other = keel_atom("other");
    cr_assert_eq(sub_subscribe(a, t, keel_atom("va")), KEEL_OK);
    cr_assert_eq(sub_subscribe(b, t, KEEL_NONE), KEEL_OK);
    cr_assert_eq(sub_subscribe(b, other, KEEL_NONE), KEEL_OK);
    cr_assert_eq(keel_pubsub_count(ps, t), 2);
    keel_term l;
    cr_assert_eq(keel_pubsub_subscribers(ps, t, &h, &l), KEEL_OK);
    size_t len = 0;
    cr_assert_eq(keel_list_length(l, &len), KEEL_OK);
    cr_assert_eq(len, 2);
    bool saw_va = false;
    for (; keel_is_cons(l); l = keel_tl(l)) {
      keel_term e = keel_hd(l);
      if (keel_tuple_get(e, 0) == a->pid)
        saw_va = keel_tuple_get(e, 1) == keel_atom("va");
      else
        cr_assert_eq(keel_tuple_get(e, 1), keel_atom("nil"));
    }
    cr_assert(saw_va);
    /* broadcast reaches both; local_broadcast and direct_broadcast to the
     * local node too; another node needs an adapter */
    cr_assert_eq(keel_pubsub_broadcast(ps, t, keel_small(1), NULL), 2);
    cr_assert_eq(keel_pubsub_local_broadcast(ps, t, keel_small(2), NULL), 2);
    cr_assert_eq(keel_pubsub_direct_broadcast(ps, keel_term_local_node(NULL), t,
                                              keel_small(3), NULL),
                 2);
    cr_assert_eq(keel_pubsub_direct_broadcast(ps, keel_atom("x@y"), t,
                                              keel_small(4), NULL),
                 KEEL_EUNSUPPORTED);
    cr_assert(sub_wait(a, 3) && sub_wait(b, 3));
    for (size_t i = 0; i < 3; i++) {
      cr_assert_eq(sub_log(a, i), keel_small((int64_t)i + 1));
      cr_assert_eq(sub_log(b, i), keel_small((int64_t)i + 1));
    }
    /* a second subscription doubles delivery; unsubscribe drops both */
    cr_assert_eq(sub_subscribe(a, t, KEEL_NONE), KEEL_OK);
    cr_assert_eq(keel_pubsub_count(ps, t), 3);
    cr_assert_eq(keel_pubsub_broadcast(ps, t, keel_small(5), NULL), 3);
    cr_assert_eq(sub_unsubscribe(a, t), KEEL_OK);
    cr_assert_eq(sub_unsubscribe(a, t), KEEL_OK, "none left: still ok");
    cr_assert_eq(keel_pubsub_count(ps, t), 1);
    cr_assert_eq(keel_pubsub_broadcast(ps, t, keel_small(6), NULL), 1);
    cr_assert_eq(keel_pubsub_broadcast(ps, other, keel_small(7), NULL), 1);
    cr_assert(sub_wait(b, 6));
    cr_assert(sub_wait(a, 5));
    cr_assert_eq(sub_log(b, 4), keel_small(6));
    cr_assert_eq(sub_log(b, 5), keel_small(7));
    /* a's last two messages are the doubled 5; nothing after */
    cr_assert_eq(sub_log(a, 3), keel_small(5));
    cr_assert_eq(sub_log(a, 4), keel_small(5));
    cr_assert_eq(keel_pubsub_broadcast(ps, keel_atom("nobody"), KEEL_NIL, NULL),
                 0);
    cr_assert_eq(keel_pubsub_broadcast(ps, KEEL_NONE, KEEL_NIL, NULL),
                 KEEL_EINVAL);
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(sub_nlog(a), 5, "a got nothing after unsubscribing");
    keel_heap_destroy(&h);
    sub_free(a);
    sub_free(b);
  }
}

Test(pubsub, broadcast_from_excludes_sender) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps = start_ps(NULL);
    sub_state *a = sub_new(ps), *b = sub_new(ps);
    keel_term t = keel_atom("room");
    cr_assert_eq(sub_subscribe(a, t, KEEL_NONE), KEEL_OK);
    cr_assert_eq(sub_subscribe(b, t, KEEL_NONE), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    int rc = sub_cmd(a, keel_tuple(&h, 4, keel_atom("cmd"),
                                   keel_atom("broadcast_from"), t,
                                   keel_atom("from_a")));
    cr_assert_eq(rc, 1, "one subscriber besides the sender");
    cr_assert_eq(keel_pubsub_local_broadcast_from(ps, b->pid, t,
                                                  keel_atom("from_b"), NULL),
                 1);
    /* a marker to both: a's log must hold only from_b then the marker */
    cr_assert_eq(keel_pubsub_broadcast(ps, t, keel_atom("mark"), NULL), 2);
    cr_assert(sub_wait(a, 2) && sub_wait(b, 2));
    cr_assert_eq(sub_log(a, 0), keel_atom("from_b"));
    cr_assert_eq(sub_log(a, 1), keel_atom("mark"));
    cr_assert_eq(sub_log(b, 0), keel_atom("from_a"));
    cr_assert_eq(sub_log(b, 1), keel_atom("mark"));
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    keel_heap_destroy(&h);
    sub_free(a);
    sub_free(b);
  }
}

/* ---- order per sender ---- */

#define ORDER_N 400

typedef struct order_arg {
  keel_pubsub ps;
  int id;
} order_arg;

static void order_sender(keel_proc *self, void *arg) {
  (void)self;
  order_arg *o = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < ORDER_N; i++) {
    keel_term m = keel_tuple(&h, 2, keel_small(o->id), keel_small(i));
    (void)keel_pubsub_broadcast(o->ps, keel_atom("ord"), m, NULL);
  }
  keel_heap_destroy(&h);
}

Test(pubsub, order_per_sender) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps = start_ps(NULL);
    sub_state *s[2] = {sub_new(ps), sub_new(ps)};
    for (int i = 0; i < 2; i++)
      cr_assert_eq(sub_subscribe(s[i], keel_atom("ord"), KEEL_NONE), KEEL_OK);
    order_arg oa[3] = {{ps, 0}, {ps, 1}, {ps, 2}};
    for (int i = 0; i < 3; i++)
      cr_assert_eq(keel_spawn_fiber(order_sender, &oa[i], NULL, NULL), KEEL_OK);
    for (int i = 0; i < 2; i++) {
      cr_assert(sub_wait(s[i], 3 * ORDER_N), "got %ld",
                atomic_load(&s[i]->received));
      int next[3] = {0, 0, 0};
      for (size_t j = 0; j < 3 * ORDER_N; j++) {
        keel_term m = sub_log(s[i], j);
        int64_t id = keel_small_value(keel_tuple_get(m, 0));
        cr_assert_eq(keel_small_value(keel_tuple_get(m, 1)), next[id],
                     "sender %d out of order", (int)id);
        next[id]++;
      }
    }
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    sub_free(s[0]);
    sub_free(s[1]);
  }
}

/* ---- dispatchers ---- */

typedef struct seen {
  size_t n;
  keel_term from, value0;
  int reentry;
  keel_pubsub ps;
} seen;

static int64_t counting(const keel_pubsub_entry *subs, size_t n, keel_term from,
                        keel_term msg, void *arg) {
  seen *s = arg;
  s->n = n;
  s->from = from;
  s->value0 = subs[0].value;
  /* no lock is held: the dispatcher may use the instance, even the same
   * topic's partition */
  s->reentry = (int)keel_pubsub_broadcast(s->ps, keel_atom("x"), msg, NULL) +
               (int)keel_pubsub_count(s->ps, keel_atom("d"));
  return 42;
}

Test(pubsub, custom_dispatcher) {
  start_node(2, 0);
  keel_pubsub ps = start_ps(NULL);
  sub_state *a = sub_new(ps);
  cr_assert_eq(sub_subscribe(a, keel_atom("d"), keel_atom("meta")), KEEL_OK);
  seen sn = {.ps = ps};
  keel_pubsub_dispatcher d = {
      .name = keel_atom("counting"), .fn = counting, .arg = &sn};
  cr_assert_eq(keel_pubsub_broadcast_from(ps, keel_small(9), keel_atom("d"),
                                          KEEL_NIL, &d),
               42);
  cr_assert_eq(sn.n, 1);
  cr_assert_eq(sn.from, keel_small(9));
  cr_assert_eq(sn.value0, keel_atom("meta"));
  cr_assert_eq(sn.reentry, 1, "0 sent to x, 1 subscriber of d");
  keel_pubsub_dispatcher bad = {.fn = NULL};
  cr_assert_eq(keel_pubsub_broadcast(ps, keel_atom("d"), KEEL_NIL, &bad),
               KEEL_EINVAL);
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sub_free(a);
}

Test(pubsub, fastlane_encodes_once) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps = start_ps(NULL);
    sub_state *chan[2] = {sub_new(ps), sub_new(ps)};
    sub_state *sock[2] = {sub_new(ps), sub_new(ps)};
    sub_state *plain = sub_new(ps);
    keel_heap h;
    keel_heap_init(&h);
    keel_term t = keel_atom("fl");
    for (int i = 0; i < 2; i++) {
      keel_term v = keel_tuple(&h, 3, keel_atom("fastlane"), sock[i]->pid,
                               keel_atom("frame"));
      cr_assert_eq(sub_subscribe(chan[i], t, v), KEEL_OK);
    }
    cr_assert_eq(sub_subscribe(plain, t, KEEL_NONE), KEEL_OK);
    char big[300];
    memset(big, 'z', sizeof big);
    keel_term msg =
        keel_tuple(&h, 2, keel_atom("event"), keel_binary(&h, big, sizeof big));
    cr_assert_eq(
        keel_pubsub_broadcast(ps, t, msg, &keel_pubsub_fastlane_dispatcher), 3);
    cr_assert(sub_wait(sock[0], 1) && sub_wait(sock[1], 1) &&
              sub_wait(plain, 1));
    cr_assert(keel_eq_exact(sub_log(plain, 0), msg));
    cr_assert_eq(sub_nlog(chan[0]) + sub_nlog(chan[1]), 0);
    const uint8_t *data[2];
    for (int i = 0; i < 2; i++) {
      keel_term f = sub_log(sock[i], 0);
      cr_assert_eq(keel_tuple_get(f, 0), keel_atom("frame"));
      size_t n;
      data[i] = keel_binary_data(keel_tuple_get(f, 1), &n);
      keel_term dec;
      cr_assert_eq(keel_etf_decode(&h, data[i], n, NULL, &dec, NULL), KEEL_OK);
      cr_assert(keel_eq_exact(dec, msg));
    }
    cr_assert_eq(data[0], data[1], "one encoded binary, shared");
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    keel_heap_destroy(&h);
    for (int i = 0; i < 2; i++) {
      sub_free(chan[i]);
      sub_free(sock[i]);
    }
    sub_free(plain);
  }
}

/* ---- node adapter ---- */

typedef struct calls {
  int broadcasts, directs;
  keel_term from, dispatcher, node;
} calls;

static int ad_broadcast(keel_pubsub ps, keel_term topic, keel_term msg,
                        keel_term from, keel_term dispatcher, void *arg) {
  (void)ps;
  (void)topic;
  (void)msg;
  calls *c = arg;
  c->broadcasts++;
  c->from = from;
  c->dispatcher = dispatcher;
  return KEEL_OK;
}

static int ad_direct(keel_pubsub ps, keel_term node, keel_term topic,
                     keel_term msg, keel_term from, keel_term dispatcher,
                     void *arg) {
  (void)ps;
  (void)topic;
  (void)msg;
  (void)from;
  calls *c = arg;
  c->directs++;
  c->node = node;
  c->dispatcher = dispatcher;
  return KEEL_OK;
}

Test(pubsub, node_adapter_hook) {
  start_node(1, 0);
  calls c = {0};
  keel_pubsub_adapter ad = {ad_broadcast, ad_direct, &c};
  keel_pubsub_opts o = {.name = KEEL_NONE, .adapter = &ad};
  keel_pubsub ps;
  cr_assert_eq(keel_pubsub_start(&o, &ps), KEEL_OK);
  keel_term t = keel_atom("t");
  cr_assert_eq(keel_pubsub_broadcast(ps, t, KEEL_NIL, NULL), 0);
  cr_assert_eq(c.broadcasts, 1);
  cr_assert_eq(c.from, KEEL_NONE);
  cr_assert_eq(c.dispatcher, keel_atom("default"));
  cr_assert_eq(keel_pubsub_broadcast_from(ps, keel_small(1), t, KEEL_NIL,
                                          &keel_pubsub_fastlane_dispatcher),
               0);
  cr_assert_eq(c.broadcasts, 2);
  cr_assert_eq(c.from, keel_small(1));
  cr_assert_eq(c.dispatcher, keel_atom("fastlane"));
  cr_assert_eq(keel_pubsub_local_broadcast(ps, t, KEEL_NIL, NULL), 0);
  cr_assert_eq(
      keel_pubsub_local_broadcast_from(ps, keel_small(1), t, KEEL_NIL, NULL),
      0);
  cr_assert_eq(c.broadcasts, 2, "local broadcasts stay local");
  cr_assert_eq(
      keel_pubsub_direct_broadcast(ps, keel_atom("n2@h"), t, KEEL_NIL, NULL),
      0);
  cr_assert_eq(c.directs, 1);
  cr_assert_eq(c.node, keel_atom("n2@h"));
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- death ---- */

static bool count_is_zero(void *arg) {
  void **a = arg;
  return keel_pubsub_count(*(keel_pubsub *)a[0], *(keel_term *)a[1]) == 0;
}

/* A fiber that monitors pid, waits for its 'DOWN' and records the
 * topic's count at that moment. */
typedef struct watch {
  keel_pubsub ps;
  keel_term pid, topic;
  _Atomic int64_t count_at_down;
} watch;

static void watcher(keel_proc *self, void *arg) {
  watch *w = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m;
  if (keel_monitor(self, w->pid, 0, &h, &ref) == KEEL_OK) {
    signal_event();
    if (keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK)
      atomic_store(&w->count_at_down, keel_pubsub_count(w->ps, w->topic));
  }
  keel_heap_destroy(&h);
  signal_event();
}

Test(pubsub, death_removes_subscriptions) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps = start_ps(NULL);
    sub_state *a = sub_new(ps), *b = sub_new(ps);
    keel_term t = keel_atom("dt");
    for (int i = 0; i < 3; i++)
      cr_assert_eq(sub_subscribe(a, t, KEEL_NONE), KEEL_OK);
    cr_assert_eq(sub_subscribe(a, keel_atom("dt2"), KEEL_NONE), KEEL_OK);
    cr_assert_eq(sub_subscribe(b, t, KEEL_NONE), KEEL_OK);
    cr_assert_eq(keel_pubsub_count(ps, t), 4);
    watch w = {.ps = ps, .pid = a->pid, .topic = t};
    atomic_init(&w.count_at_down, -1);
    reset_events();
    cr_assert_eq(keel_spawn_fiber(watcher, &w, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "monitor set");
    cr_assert_eq(keel_exit(a->pid, keel_atom("kill")), KEEL_OK);
    cr_assert(wait_events(2), "DOWN seen");
    cr_assert_eq(atomic_load(&w.count_at_down), 1,
                 "gone before the DOWN is seen");
    keel_term t2 = keel_atom("dt2");
    void *arg[2] = {&ps, &t2};
    cr_assert(wait_until(count_is_zero, arg));
    cr_assert_eq(keel_pubsub_broadcast(ps, t, KEEL_NIL, NULL), 1);
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    sub_free(a);
    sub_free(b);
  }
}

/* ---- supervised ---- */

static bool whereis_gone(void *arg) {
  keel_pubsub p;
  return keel_pubsub_whereis(*(keel_term *)arg, &p) == KEEL_ENOENT;
}

Test(pubsub, supervised_instance) {
  start_node(2, 0);
  keel_pubsub_opts po = {.name = keel_atom("sup_ps")};
  keel_sup_child_spec child = {
      .id = keel_atom("pubsub"), .start = keel_pubsub_child_start, .arg = &po};
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT;
  spec.children = &child;
  spec.nchildren = 1;
  keel_term sup;
  cr_assert_eq(keel_sup_start_link(&spec, &sup), KEEL_OK);
  keel_pubsub ps;
  cr_assert_eq(keel_pubsub_whereis(keel_atom("sup_ps"), &ps), KEEL_OK);
  sub_state *a = sub_new(ps);
  cr_assert_eq(sub_subscribe(a, keel_atom("s"), KEEL_NONE), KEEL_OK);
  cr_assert_eq(keel_pubsub_broadcast(ps, keel_atom("s"), KEEL_NIL, NULL), 1);
  cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
  keel_term name = keel_atom("sup_ps");
  cr_assert(wait_until(whereis_gone, &name));
  cr_assert_eq(keel_pubsub_count(ps, keel_atom("s")), KEEL_EBADARG);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sub_free(a);
}
