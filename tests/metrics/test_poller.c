/* The poller (POL1) sampling node figures, and the forwarding testing utility
 * (TEL6), on nodes of 1, 2 and 8 schedulers. */
#include "runtime/rt_test.h"

#include <stdatomic.h>
#include <string.h>

#include "keel/metrics.h"

/* ---- poller ---------------------------------------------------------------
 */

static atomic_long g_rounds;
static _Atomic double g_procs;
static atomic_long g_custom;

static int on_counts(const keel_tel_event *e, const keel_tel_measure *m,
                     size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)md, (void)nmd, (void)c;
  double v = -1;
  keel_tel_measure_get(m, nm, keel_atom("process_count"), &v);
  atomic_store(&g_procs, v);
  atomic_fetch_add(&g_rounds, 1);
  signal_event();
  return 0;
}

static void custom_measure(void *arg) {
  atomic_fetch_add(&g_custom, (long)(intptr_t)arg);
}

static keel_handler_status idle(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)msg, (void)st;
  return KEEL_CONTINUE;
}

Test(poller, samples_node_stats_until_stopped) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("keel.vm.system_counts", &e), KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("pol"), &e, 1, on_counts, NULL),
               KEEL_OK);
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    const int nprocs = 25;
    for (int i = 0; i < nprocs; i++)
      cr_assert_eq(keel_spawn(idle, NULL, NULL, NULL), KEEL_OK);
    atomic_store(&g_rounds, 0);
    atomic_store(&g_custom, 0);
    keel_poller_fn fns[1] = {custom_measure};
    void *args[1] = {(void *)(intptr_t)10};
    keel_poller_opts o = {.period_ms = 5,
                          .node_stats = true,
                          .fns = fns,
                          .args = args,
                          .nfns = 1};
    keel_poller *p;
    cr_assert_eq(keel_poller_start(&o, &p), KEEL_OK);
    cr_assert(wait_events(3), "fewer than 3 rounds in %d s", TIMEOUT_S);
    keel_poller_stop(p);
    long rounds = atomic_load(&g_rounds);
    cr_assert_geq(rounds, 3);
    /* Stop waited for the round in progress: every round ran the custom
     * measurement once. */
    cr_assert_eq(atomic_load(&g_custom), 10 * rounds);
    cr_assert_float_eq(atomic_load(&g_procs), (double)nprocs, 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  keel_tel_detach(keel_atom("pol"));
}

Test(poller, stops_during_the_initial_delay_and_rejects_bad_options) {
  keel_poller_opts o = {
      .period_ms = 10, .init_delay_ms = 3600 * 1000, .node_stats = true};
  keel_poller *p;
  cr_assert_eq(keel_poller_start(&o, &p), KEEL_OK);
  keel_poller_stop(p); /* must not wait an hour */
  keel_poller_opts none = {.period_ms = 10};
  cr_assert_eq(keel_poller_start(&none, &p), KEEL_EINVAL);
  keel_poller_opts nofns = {.nfns = 1};
  cr_assert_eq(keel_poller_start(&nofns, &p), KEEL_EINVAL);
  keel_poller_opts longp = {.period_ms = UINT64_C(1) << 33, .node_stats = true};
  cr_assert_eq(keel_poller_start(&longp, &p), KEEL_EINVAL);
  cr_assert_eq(keel_poller_start(NULL, &p), KEEL_EINVAL);
  keel_poller_stop(NULL);
}

/* ---- forwarding ------------------------------------------------------------
 */

static pthread_mutex_t g_mu2 = PTHREAD_MUTEX_INITIALIZER;
static keel_heap g_heap;
static keel_term g_msgs[8];
static int g_nmsgs;

static keel_handler_status collect(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)st;
  pthread_mutex_lock(&g_mu2);
  if (g_nmsgs < 8)
    g_msgs[g_nmsgs++] = keel_term_copy(&g_heap, msg);
  pthread_mutex_unlock(&g_mu2);
  signal_event();
  return KEEL_CONTINUE;
}

static keel_term parsed(keel_heap *h, const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(h, text, strlen(text), &t, NULL), KEEL_OK);
  return t;
}

Test(forward, events_arrive_as_messages) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_heap_init(&g_heap);
    g_nmsgs = 0;
    keel_term pid;
    cr_assert_eq(keel_spawn(collect, NULL, NULL, &pid), KEEL_OK);
    keel_tel_event *evs[2];
    cr_assert_eq(keel_tel_event_parse("fw.a", &evs[0]), KEEL_OK);
    cr_assert_eq(keel_tel_event_parse("fw.b.c", &evs[1]), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term ref;
    cr_assert_eq(keel_tel_forward_attach(pid, evs, 2, &h, &ref), KEEL_OK);
    cr_assert(keel_is_ref(ref));
    keel_tel_measure m[2] = {{keel_atom("n"), 3}, {keel_atom("t"), 1.5}};
    keel_tel_meta md[1] = {{keel_atom("k"), parsed(&h, "<<\"v\">>")}};
    keel_tel_execute(evs[0], m, 2, md, 1);
    keel_tel_execute(evs[1], NULL, 0, NULL, 0);
    cr_assert(wait_events(2));
    cr_assert_eq(keel_tel_forward_detach(ref), KEEL_OK);
    cr_assert_eq(keel_tel_forward_detach(ref), KEEL_ENOENT);
    keel_tel_execute(evs[0], m, 2, md, 1); /* not forwarded any more */
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(g_nmsgs, 2);
    /* Messages from one thread to one process arrive in order. */
    keel_term want[2] = {
        parsed(&h, "{[fw,a], r, #{n => 3, t => 1.5}, #{k => <<\"v\">>}}"),
        parsed(&h, "{[fw,b,c], r, #{}, #{}}")};
    for (int i = 0; i < 2; i++) {
      keel_term got = g_msgs[i];
      cr_assert_eq(keel_tuple_arity(got), 4);
      for (size_t j = 0; j < 4; j++) {
        keel_term exp = j == 1 ? ref : keel_tuple_get(want[i], j);
        cr_assert(keel_eq_exact(keel_tuple_get(got, j), exp),
                  "message %d element %zu", i, j);
      }
    }
    keel_heap_destroy(&h);
    keel_heap_destroy(&g_heap);
  }
}

Test(forward, bad_arguments) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("fw.x", &e), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  cr_assert_eq(keel_tel_forward_attach(keel_atom("notapid"), &e, 1, &h, &ref),
               KEEL_EBADARG);
  cr_assert_eq(keel_tel_forward_attach(keel_pid_local(1), &e, 0, &h, &ref),
               KEEL_EINVAL);
  cr_assert_eq(keel_tel_forward_attach(keel_pid_local(1), &e, 1, NULL, &ref),
               KEEL_EINVAL);
  /* Without a node the handler ignores the send error and stays. */
  cr_assert_eq(keel_tel_forward_attach(keel_pid_local(1), &e, 1, &h, &ref),
               KEEL_OK);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(keel_tel_forward_detach(ref), KEEL_OK);
  keel_heap_destroy(&h);
}
