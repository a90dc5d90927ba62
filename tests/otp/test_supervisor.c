/* Supervisors (keel/supervisor.h): strategies, restart types, intensity
 * (also on virtual time), shutdown protocol, start failures, retried
 * restarts, the child API, auto_shutdown and nested supervisors. The
 * intent of OTP's supervisor_SUITE cases, listed in
 * docs/behaviours/supervisor.md. Each scenario runs with 1, 2 and 8
 * schedulers; the expected logs are written from the strategy rules, not
 * taken from a run. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/signals.h"
#include "keel/supervisor.h"
#include "keel/telemetry.h"
#include "otp/sup_test.h"
#include "runtime/rt_test.h"

static keel_term pid_of(keel_term sup, const char *id) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term l, r = KEEL_NONE;
  cr_assert_eq(keel_sup_which_children(sup, &h, &l), KEEL_OK);
  for (; keel_is_cons(l); l = keel_tl(l)) {
    keel_term t = keel_hd(l);
    if (keel_tuple_get(t, 0) == keel_atom(id))
      r = keel_tuple_get(t, 1); /* pids and atoms are immediates */
  }
  keel_heap_destroy(&h);
  return r;
}

static keel_term start3(keel_sup_strategy st, wcfg *w) {
  keel_sup_child_spec cs[3];
  for (int i = 0; i < 3; i++)
    cs[i] = worker_spec(&w[i]);
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.strategy = st;
  s.children = cs;
  s.nchildren = 3;
  keel_term sup;
  cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
  return sup;
}

static void strategy_case(keel_sup_strategy st, const char *expect) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_term sup = start3(st, w);
    cr_assert(wait_log("+a+b+c"));
    keel_term a = pid_of(sup, "a"), b = pid_of(sup, "b");
    keel_term c = pid_of(sup, "c");
    keel_send(b, keel_atom("crash"));
    cr_assert(wait_log(expect), "log %s want %s", log_get(), expect);
    keel_term b2 = pid_of(sup, "b");
    cr_assert(keel_is_local_pid(b2) && b2 != b);
    bool all = st == KEEL_SUP_ONE_FOR_ALL, rest = st != KEEL_SUP_ONE_FOR_ONE;
    cr_assert_eq(pid_of(sup, "a") != a, all);
    cr_assert_eq(pid_of(sup, "c") != c, rest);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_eq(keel_process_info(sup, &(keel_process_info_t){0}),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, ordered_start_reverse_stop_and_counts) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_term sup = start3(KEEL_SUP_ONE_FOR_ONE, w);
    cr_assert_str_eq(log_get(), "+a+b+c"); /* start_link returned after */
    keel_sup_counts n;
    cr_assert_eq(keel_sup_count_children(sup, &n), KEEL_OK);
    cr_assert_eq(n.specs, 3);
    cr_assert_eq(n.active, 3);
    cr_assert_eq(n.workers, 3);
    cr_assert_eq(n.supervisors, 0);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_str_eq(log_get(), "+a+b+c-c-b-a");
    cr_assert_eq(keel_sup_stop(sup), KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, one_for_one_restarts_only_the_dead_child) {
  strategy_case(KEEL_SUP_ONE_FOR_ONE, "+a+b+c-b+b");
}

Test(supervisor, one_for_all_stops_others_reverse_then_starts_all) {
  strategy_case(KEEL_SUP_ONE_FOR_ALL, "+a+b+c-b-c-a+a+b+c");
}

Test(supervisor, rest_for_one_restarts_the_later_children) {
  strategy_case(KEEL_SUP_REST_FOR_ONE, "+a+b+c-b-c+b+c");
}

Test(supervisor, restart_types_permanent_transient_temporary) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_sup_child_spec cs[3];
    for (int i = 0; i < 3; i++)
      cs[i] = worker_spec(&w[i]);
    cs[1].restart = KEEL_SUP_TRANSIENT;
    cs[2].restart = KEEL_SUP_TEMPORARY;
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.children = cs;
    s.nchildren = 3;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    keel_send(pid_of(sup, "b"), keel_atom("crash")); /* abnormal: again */
    cr_assert(wait_log("+a+b+c-b+b"));
    keel_send(pid_of(sup, "b"), keel_atom("normal")); /* normal: no */
    cr_assert(wait_log("+a+b+c-b+b-b"));
    keel_send(pid_of(sup, "c"), keel_atom("crash")); /* temporary: gone */
    cr_assert(wait_log("+a+b+c-b+b-b-c"));
    keel_send(pid_of(sup, "a"), keel_atom("normal")); /* permanent: again */
    cr_assert(wait_log("+a+b+c-b+b-b-c-a+a"));
    cr_assert_eq(pid_of(sup, "b"), KEEL_ATOM(UNDEFINED));
    cr_assert_eq(pid_of(sup, "c"), KEEL_NONE);
    keel_sup_counts n;
    cr_assert_eq(keel_sup_count_children(sup, &n), KEEL_OK);
    cr_assert_eq(n.specs, 2);
    cr_assert_eq(n.active, 1);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static bool sup_dead(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

static bool starts_reached(void *arg) {
  wcfg *w = arg;
  return atomic_load(&w->starts) >= w->want;
}

/* Intensity 1 in 1000 ms on virtual time: restarts 1000 ms apart are
 * always allowed; two within the window end the supervisor with
 * shutdown, after its children are stopped. */
Test(supervisor, intensity_window_exact_on_virtual_time) {
  for (uint64_t seed = sim_seed_first(), e = seed + sim_seed_count(); seed < e;
       seed++) {
    start_sim(seed);
    log_reset();
    tel_attach();
    wcfg w = {.tag = 'a'};
    keel_sup_child_spec cs = worker_spec(&w);
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.intensity = 1;
    s.period_ms = 1000;
    s.children = &cs;
    s.nchildren = 1;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    for (int i = 0; i < 4; i++) {
      keel_send(pid_of(sup, "a"), keel_atom("crash"));
      w.want = i + 2;
      cr_assert(wait_until(starts_reached, &w), "restart %d", i);
      /* the next crash comes a whole period after this restart */
      cr_assert_eq(keel_sim_advance(1000), KEEL_OK);
    }
    cr_assert(!sup_dead(&sup));
    keel_send(pid_of(sup, "a"), keel_atom("crash"));
    w.want = 6;
    cr_assert(wait_until(starts_reached, &w));
    keel_send(pid_of(sup, "a"), keel_atom("crash"));
    cr_assert(wait_until(sup_dead, &sup));
    cr_assert_eq(atomic_load(&w.starts), 6);
    cr_assert_eq(tel_count(TEL_SHUTDOWN), 1);
    keel_term lr = tel_last_reason();
    cr_assert_eq(lr, keel_atom("reached_max_restart_intensity"), "%s",
                 lr != KEEL_NONE ? keel_atom_name(lr, NULL) : "none");
    tel_detach();
    stop_sim();
  }
}

/* Intensity 3 in 1000 ms on virtual time: restarts at 0, 400 and 800 ms
 * fill the window; at 1100 ms the one of 0 ms has left it, so one more
 * restart is allowed (the window wraps its ring of 4 slots) and a fifth
 * at the same time, the fourth within 1000 ms, ends the supervisor. */
Test(supervisor, intensity_window_drops_only_expired_restarts) {
  for (uint64_t seed = sim_seed_first(), e = seed + sim_seed_count(); seed < e;
       seed++) {
    start_sim(seed);
    log_reset();
    tel_attach();
    wcfg w = {.tag = 'a'};
    keel_sup_child_spec cs = worker_spec(&w);
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.intensity = 3;
    s.period_ms = 1000;
    s.children = &cs;
    s.nchildren = 1;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    static const uint64_t gaps[4] = {0, 400, 400, 300}; /* 0, 400, 800, 1100 */
    for (int i = 0; i < 4; i++) {
      cr_assert_eq(keel_sim_advance(gaps[i]), KEEL_OK);
      keel_send(pid_of(sup, "a"), keel_atom("crash"));
      w.want = i + 2;
      cr_assert(wait_until(starts_reached, &w), "restart %d", i);
    }
    cr_assert(!sup_dead(&sup));
    keel_send(pid_of(sup, "a"), keel_atom("crash"));
    cr_assert(wait_until(sup_dead, &sup));
    cr_assert_eq(atomic_load(&w.starts), 5);
    cr_assert_eq(tel_last_reason(), keel_atom("reached_max_restart_intensity"));
    tel_detach();
    stop_sim();
  }
}

Test(supervisor, intensity_exceeded_stops_children_and_supervisor) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[2] = {{.tag = 'a'}, {.tag = 'b'}};
    keel_sup_child_spec cs[2] = {worker_spec(&w[0]), worker_spec(&w[1])};
    keel_sup_spec s = KEEL_SUP_SPEC_INIT; /* 3 in 5 s */
    s.children = cs;
    s.nchildren = 2;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    const char *want[] = {"+a+b-b+b", "+a+b-b+b-b+b", "+a+b-b+b-b+b-b+b"};
    for (int i = 0; i < 3; i++) {
      keel_send(pid_of(sup, "b"), keel_atom("crash"));
      cr_assert(wait_log(want[i]));
    }
    keel_send(pid_of(sup, "b"), keel_atom("crash"));
    cr_assert(wait_until(sup_dead, &sup));
    cr_assert_str_eq(log_get(), "+a+b-b+b-b+b-b+b-b-a");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, shutdown_timeout_brutal_kill_and_infinity) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    tel_attach();
    /* a: traps and ignores shutdown (killed after 30 ms); b: brutal kill;
     * c: traps and leaves on shutdown, waited for forever. */
    wcfg w[3] = {{.tag = 'a', .trap = true, .deaf = true},
                 {.tag = 'b', .trap = true, .deaf = true},
                 {.tag = 'c', .trap = true}};
    keel_sup_child_spec cs[3];
    for (int i = 0; i < 3; i++)
      cs[i] = worker_spec(&w[i]);
    cs[0].shutdown = 30;
    cs[1].shutdown = KEEL_SUP_BRUTAL_KILL;
    cs[2].shutdown = KEEL_INFINITY;
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.children = cs;
    s.nchildren = 3;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_str_eq(log_get(), "+a+b+c-c-b-a");
    cr_assert_eq(atomic_load(&w[0].got_shutdown), 1);
    cr_assert_eq(atomic_load(&w[1].got_shutdown), 0);
    cr_assert_eq(atomic_load(&w[2].got_shutdown), 1);
    /* only a's kill after its timeout is an error */
    cr_assert_eq(tel_count(TEL_SHUTDOWN_ERROR), 1);
    cr_assert_eq(tel_last_reason(), KEEL_ATOM(KILLED));
    tel_detach();
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, failed_start_aborts_and_stops_started_children) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b', .fail = 1}, {.tag = 'c'}};
    keel_sup_child_spec cs[3];
    for (int i = 0; i < 3; i++)
      cs[i] = worker_spec(&w[i]);
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.children = cs;
    s.nchildren = 3;
    s.name = keel_atom("failing_sup");
    cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EIO);
    cr_assert_str_eq(log_get(), "+a!b-a");
    /* ignore keeps a child with no pid */
    w[1].fail = 0;
    w[1].ignore = true;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    cr_assert_eq(keel_whereis(keel_atom("failing_sup")), sup);
    cr_assert_eq(pid_of(sup, "b"), KEEL_ATOM(UNDEFINED));
    cr_assert(keel_is_local_pid(pid_of(sup, "c")));
    cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EEXIST);
    cr_assert_eq(keel_sup_stop(keel_atom("failing_sup")), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, failed_restart_is_retried_and_counts) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    tel_attach();
    wcfg w = {.tag = 'a'};
    keel_sup_child_spec cs = worker_spec(&w);
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.intensity = 10;
    s.children = &cs;
    s.nchildren = 1;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    w.fail = 2; /* the next two starts fail */
    keel_send(pid_of(sup, "a"), keel_atom("crash"));
    cr_assert(wait_log("+a-a!a!a+a"));
    cr_assert(keel_is_local_pid(pid_of(sup, "a")));
    cr_assert_eq(tel_count(TEL_START_ERROR), 2);
    cr_assert_eq(tel_count(TEL_RESTART), 3);
    /* with intensity 1, failing restarts exhaust it */
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    s.intensity = 1;
    log_reset();
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    w.fail = 100;
    keel_send(pid_of(sup, "a"), keel_atom("crash"));
    cr_assert(wait_until(sup_dead, &sup));
    cr_assert_str_eq(log_get(), "+a-a!a");
    tel_detach();
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, child_api) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[2] = {{.tag = 'a'}, {.tag = 'b'}};
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    keel_term sup, p, p2;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    keel_sup_child_spec a = worker_spec(&w[0]);
    cr_assert_eq(keel_sup_start_child(sup, &a, &p), KEEL_OK);
    cr_assert_eq(pid_of(sup, "a"), p);
    cr_assert_eq(keel_sup_start_child(sup, &a, NULL), KEEL_EEXIST);
    keel_sup_child_spec bad = a;
    bad.id = keel_atom("x");
    bad.significant = true;
    cr_assert_eq(keel_sup_start_child(sup, &bad, NULL), KEEL_EINVAL);
    keel_sup_child_spec b = worker_spec(&w[1]);
    b.type = KEEL_SUP_SUPERVISOR; /* counted as one */
    cr_assert_eq(keel_sup_start_child(sup, &b, NULL), KEEL_OK);
    cr_assert_eq(keel_sup_delete_child(sup, keel_atom("a")), KEEL_ESTATE);
    cr_assert_eq(keel_sup_restart_child(sup, keel_atom("a"), NULL),
                 KEEL_ESTATE);
    cr_assert_eq(keel_sup_terminate_child(sup, keel_atom("a")), KEEL_OK);
    cr_assert_eq(pid_of(sup, "a"), KEEL_ATOM(UNDEFINED));
    keel_sup_counts n;
    cr_assert_eq(keel_sup_count_children(sup, &n), KEEL_OK);
    cr_assert(n.specs == 2 && n.active == 1 && n.supervisors == 1 &&
              n.workers == 1);
    cr_assert_eq(keel_sup_restart_child(sup, keel_atom("a"), &p2), KEEL_OK);
    cr_assert(keel_is_local_pid(p2) && p2 != p);
    cr_assert_eq(keel_sup_terminate_child(sup, keel_atom("a")), KEEL_OK);
    cr_assert_eq(keel_sup_delete_child(sup, keel_atom("a")), KEEL_OK);
    cr_assert_eq(pid_of(sup, "a"), KEEL_NONE);
    cr_assert_eq(keel_sup_delete_child(sup, keel_atom("a")), KEEL_ENOENT);
    cr_assert_eq(keel_sup_terminate_child(sup, keel_atom("zz")), KEEL_ENOENT);
    cr_assert_eq(keel_sup_restart_child(sup, keel_atom("zz"), NULL),
                 KEEL_ENOENT);
    cr_assert_str_eq(log_get(), "+a+b-a+a-a");
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_eq(keel_sup_start_child(sup, &a, NULL), KEEL_ENOPROC);
    cr_assert_eq(keel_sup_count_children(keel_atom("nobody"), &n),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* get_childspec returns what was given (shutdown resolved), for a static
 * supervisor by id and a dynamic one by pid; check_childspecs applies
 * start_link's checks without starting anything. */
Test(supervisor, get_childspec_and_check_childspecs) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[2] = {{.tag = 'a'}, {.tag = 'b'}};
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    keel_sup_child_spec cs[2] = {worker_spec(&w[0]), worker_spec(&w[1])};
    cs[1].restart = KEEL_SUP_TRANSIENT;
    cs[1].shutdown = 250;
    cs[1].type = KEEL_SUP_SUPERVISOR;
    s.children = cs;
    s.nchildren = 2;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_sup_child_spec got;
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("b"), &h, &got),
                 KEEL_OK);
    cr_assert_eq(got.id, keel_atom("b"));
    cr_assert_eq(got.start, cs[1].start);
    cr_assert_eq(got.arg, (void *)&w[1]);
    cr_assert_eq(got.restart, KEEL_SUP_TRANSIENT);
    cr_assert_eq(got.shutdown, 250);
    cr_assert_eq(got.type, KEEL_SUP_SUPERVISOR);
    cr_assert(!got.significant);
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("a"), &h, &got),
                 KEEL_OK);
    cr_assert_eq(got.shutdown, 5000, "the default, resolved");
    cr_assert_eq(got.restart, KEEL_SUP_PERMANENT);
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("zz"), &h, &got),
                 KEEL_ENOENT);
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("a"), NULL, &got),
                 KEEL_EINVAL);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("a"), &h, &got),
                 KEEL_ENOPROC);
    /* check_childspecs */
    cr_assert_eq(keel_sup_check_childspecs(cs, 2, KEEL_SUP_AUTO_NEVER),
                 KEEL_OK);
    cr_assert_eq(keel_sup_check_childspecs(NULL, 0, KEEL_SUP_AUTO_NEVER),
                 KEEL_OK);
    keel_sup_child_spec dup[2] = {cs[0], cs[0]};
    cr_assert_eq(keel_sup_check_childspecs(dup, 2, KEEL_SUP_AUTO_NEVER),
                 KEEL_EINVAL);
    keel_sup_child_spec sig = cs[1];
    sig.significant = true; /* transient: allowed, not with auto never */
    cr_assert_eq(keel_sup_check_childspecs(&sig, 1, KEEL_SUP_AUTO_NEVER),
                 KEEL_EINVAL);
    cr_assert_eq(
        keel_sup_check_childspecs(&sig, 1, KEEL_SUP_AUTO_ANY_SIGNIFICANT),
        KEEL_OK);
    keel_sup_child_spec nostart = cs[0];
    nostart.start = NULL;
    cr_assert_eq(keel_sup_check_childspecs(&nostart, 1, KEEL_SUP_AUTO_NEVER),
                 KEEL_EINVAL);
    cr_assert_str_eq(log_get(), "+a+b-b-a", "nothing started by the checks");
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, bad_specs_are_refused) {
  start_node(1, 0);
  wcfg w = {.tag = 'a'};
  keel_sup_child_spec cs[2] = {worker_spec(&w), worker_spec(&w)};
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.children = cs;
  s.nchildren = 2; /* duplicate id */
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  s.nchildren = 1;
  s.period_ms = 0;
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  s.period_ms = 5000;
  cs[0].restart = KEEL_SUP_TRANSIENT;
  cs[0].significant = true; /* with auto_shutdown never */
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  cs[0].restart = KEEL_SUP_PERMANENT;
  s.auto_shutdown = KEEL_SUP_AUTO_ANY_SIGNIFICANT; /* significant permanent */
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  cs[0].significant = false;
  cs[0].shutdown = -5;
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  cs[0].shutdown = 0;
  cs[0].start = NULL;
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  s.version = 99;
  cr_assert_eq(keel_sup_start_link(&s, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_sup_start_link(NULL, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_sup_stop(keel_small(3)), KEEL_EBADARG);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

static void auto_case(keel_sup_auto_shutdown mode) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_sup_child_spec cs[3];
    for (int i = 0; i < 3; i++)
      cs[i] = worker_spec(&w[i]);
    cs[1].restart = KEEL_SUP_TRANSIENT;
    cs[1].significant = true;
    cs[2].restart = KEEL_SUP_TEMPORARY;
    cs[2].significant = true;
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.auto_shutdown = mode;
    s.children = cs;
    s.nchildren = 3;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    /* stopped by the supervisor: no auto shutdown */
    cr_assert_eq(keel_sup_terminate_child(sup, keel_atom("b")), KEEL_OK);
    cr_assert_eq(keel_sup_restart_child(sup, keel_atom("b"), NULL), KEEL_OK);
    /* a significant transient child crashing is restarted */
    keel_send(pid_of(sup, "b"), keel_atom("crash"));
    cr_assert(wait_log("+a+b+c-b+b-b+b"));
    keel_send(pid_of(sup, "b"), keel_atom("normal"));
    if (mode == KEEL_SUP_AUTO_ALL_SIGNIFICANT) {
      cr_assert(wait_log("+a+b+c-b+b-b+b-b"));
      cr_assert(!sup_dead(&sup)); /* c still runs */
      cr_assert(keel_is_local_pid(pid_of(sup, "c")));
      keel_send(pid_of(sup, "c"), keel_atom("normal"));
      cr_assert(wait_until(sup_dead, &sup));
      cr_assert_str_eq(log_get(), "+a+b+c-b+b-b+b-b-c-a");
    } else {
      cr_assert(wait_until(sup_dead, &sup));
      cr_assert_str_eq(log_get(), "+a+b+c-b+b-b+b-b-c-a");
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(supervisor, auto_shutdown_any_significant) {
  auto_case(KEEL_SUP_AUTO_ANY_SIGNIFICANT);
}

Test(supervisor, auto_shutdown_all_significant) {
  auto_case(KEEL_SUP_AUTO_ALL_SIGNIFICANT);
}

/* A nested supervisor's start function (runs in the outer supervisor). */
static int start_inner(keel_proc *sup, void *arg, keel_term extra,
                       keel_term *pid) {
  (void)sup;
  (void)extra;
  wcfg *w = arg;
  keel_sup_child_spec cs = worker_spec(w);
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.children = &cs;
  s.nchildren = 1;
  return keel_sup_start_link(&s, pid);
}

typedef struct owner_arg {
  wcfg *w;
  atomic_long sup;
} owner_arg;

/* A fiber that starts a supervisor tree, then exits with reason bye. */
static void owner(keel_proc *self, void *arg) {
  owner_arg *o = arg;
  keel_sup_child_spec cs[2] = {worker_spec(&o->w[0]),
                               {.id = keel_atom("inner"),
                                .start = start_inner,
                                .arg = &o->w[1],
                                .type = KEEL_SUP_SUPERVISOR}};
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.children = cs;
  s.nchildren = 2;
  keel_term sup;
  if (keel_sup_start_link(&s, &sup) == KEEL_OK)
    atomic_store(&o->sup, (long)sup);
  signal_event();
  keel_stop(self, keel_atom("bye"));
}

Test(supervisor, nested_tree_started_from_a_fiber_stops_with_its_parent) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[2] = {{.tag = 'a'}, {.tag = 'i'}};
    owner_arg o = {.w = w};
    cr_assert_eq(keel_spawn_fiber(owner, &o, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    keel_term sup = (keel_term)atomic_load(&o.sup);
    cr_assert(keel_is_local_pid(sup));
    /* the parent's exit stops the tree in reverse order */
    cr_assert(wait_until(sup_dead, &sup));
    cr_assert_str_eq(log_get(), "+a+i-i-a");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static keel_handler_status caller_handler(keel_proc *self, keel_term m,
                                          void *st) {
  (void)self;
  atomic_int *rc = st;
  keel_sup_counts n;
  atomic_store(rc, keel_sup_count_children(m, &n));
  signal_event();
  return KEEL_EXIT;
}

Test(supervisor, handler_processes_cannot_wait) {
  start_node(2, 0);
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  keel_term sup, h;
  cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
  atomic_int rc = 1;
  cr_assert_eq(keel_spawn(caller_handler, &rc, NULL, &h), KEEL_OK);
  keel_send(h, sup);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&rc), KEEL_ESTATE);
  cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

static bool no_processes(void *arg) {
  (void)arg;
  keel_node_stats st;
  return keel_node_stats_get(&st) == KEEL_OK && st.processes == 0;
}

/* Random crashes (random child, random strategy from the seed) on
 * virtual time: afterwards every child runs exactly once, and stopping the
 * supervisor leaves no process behind. */
Test(supervisor, random_crashes_keep_the_right_children_and_leak_nothing) {
  for (uint64_t seed = sim_seed_first(), e = seed + sim_seed_count(); seed < e;
       seed++) {
    start_sim(seed);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_sup_child_spec cs[3];
    for (int i = 0; i < 3; i++)
      cs[i] = worker_spec(&w[i]);
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.strategy = (keel_sup_strategy)(seed % 3);
    s.intensity = 1000;
    s.children = cs;
    s.nchildren = 3;
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    uint64_t x = seed * 0x9e3779b97f4a7c15u + 1;
    for (int i = 0; i < 40; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      char id[2] = {(char)('a' + x % 3), '\0'};
      keel_term p = pid_of(sup, id);
      if (keel_is_local_pid(p))
        keel_send(p, keel_atom(x & 8 ? "crash" : "normal"));
      for (int j = 0; j < (int)(x >> 20) % 50; j++)
        keel_sim_step();
    }
    for (int i = 0; i < 3; i++) {
      char id[2] = {w[i].tag, '\0'};
      keel_term p = KEEL_NONE;
      for (int t = 0; t < 1000 && !keel_is_local_pid(p); t++) {
        keel_sim_step();
        p = pid_of(sup, id);
      }
      cr_assert(keel_is_local_pid(p), "seed %llu child %s",
                (unsigned long long)seed, id);
    }
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.processes, 4); /* the supervisor and its 3 children */
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert(wait_until(no_processes, NULL));
    stop_sim();
  }
}
