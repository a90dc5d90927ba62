/* gen_statem: the ordering rules of OTP's gen_statem_SUITE, run on a
 * scripted machine (tests/otp/gsm_test.h) as a handler and as a fiber
 * process with 1, 2 and 8 schedulers: postpone (retried in order after a
 * state change, not after keep_state), next_event (before everything, in
 * order, also before retried postponed events), zero timeouts (after
 * inserted events, before messages), state timeout (cancelled by a state
 * change, kept otherwise), event timeout (cancelled by any event, even an
 * inserted one or another timeout), generic timeouts (start, cancel,
 * update, infinity), state enter calls (initial, on change, repeat_state,
 * forbidden results), calls (reply, postponed call, stop_and_reply,
 * timeout); the timeouts again in virtual time under the simulation of
 * keel/sim.h. Timer ordering is asserted through timers to the same
 * process, which fire in deadline order, never through elapsed time. */
#include "otp/gsm_test.h"

#define FOR_CONFIGS                                                            \
  for (size_t c = 0; c < NCONF; c++)                                           \
    for (int fiber = 0; fiber < 2; fiber++)

Test(gen_statem, postpone_retried_in_order_after_state_change) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cast(sm, "{s, e1, [{in, a, [postpone]}]}");
    cast(sm, "{s, e2, [{in, a, [postpone]}]}");
    cast(sm, "{s, k, []}"); /* keep_state: nothing retried */
    cast(sm, "{s, go, [{next, b}]}");
    cast(sm, "{s, e3, []}");
    expect_log(sm, "[{cast,e1,a},{cast,e2,a},{cast,k,a},{cast,go,a},"
                   "{cast,e1,b},{cast,e2,b},{cast,e3,b}]");
    /* the event being postponed while the state changes is retried too */
    cast(sm, "{s, p, [postpone, {next, c}]}");
    expect_log(sm, "[{cast,e1,a},{cast,e2,a},{cast,k,a},{cast,go,a},"
                   "{cast,e1,b},{cast,e2,b},{cast,e3,b},{cast,p,b},"
                   "{cast,p,c}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, next_event_inserted_in_order_before_postponed) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cast(sm, "{s, p1, [postpone]}");
    cast(sm, "{s, go, [{ins, internal, i1}, "
             "{ins, internal, {s, i2, [{ins, cast, i3}]}}, {next, b}]}");
    cast(sm, "{s, later, []}");
    expect_log(sm, "[{cast,p1,a},{cast,go,a},{internal,i1,b},"
                   "{internal,i2,b},{cast,i3,b},{cast,p1,b},{cast,later,b}]");
    /* inserted events of any type, also from init */
    keel_term sm2 = start_sm(&plain_mod, fiber,
                             "{a, [{ins, info, x}, {ins, {timeout, n}, y}]}");
    expect_log(sm2, "[{info,x,a},{{timeout,n},y,a}]");
    stop_sm(sm);
    stop_sm(sm2);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, zero_timeouts_after_inserted_events) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* the event timeout 0 is cancelled by the queued events */
    cast(sm, "{s, z, [{st, 0, st0}, {gt, g, 0, g0}, {et, 0, e0}, "
             "{ins, internal, n1}, {ins, internal, n2}]}");
    cast(sm, "{s, later, []}");
    expect_log(sm, "[{cast,z,a},{internal,n1,a},{internal,n2,a},"
                   "{state_timeout,st0,a},{{timeout,g},g0,a},"
                   "{cast,later,a}]");
    /* alone, an event timeout of 0 fires */
    cast(sm, "{s, z2, [{et, 0, e0}]}");
    expect_log(sm, "[{cast,z,a},{internal,n1,a},{internal,n2,a},"
                   "{state_timeout,st0,a},{{timeout,g},g0,a},"
                   "{cast,later,a},{cast,z2,a},{timeout,e0,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, state_timeout_cancelled_by_state_change_only) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* the probe fires after the state timeout's deadline: had the state
     * timeout survived the change, it would be logged first */
    cast(sm, "{s, arm, [{st, 20, st_a}, "
             "{ins, internal, {s, go, [{next, b}, {gt, probe, 60, p}]}}]}");
    expect_log(sm, "[{cast,arm,a},{internal,go,a},{{timeout,probe},p,b}]");
    /* keep_state and repeat_state keep it; setting it again restarts it
     * with the new content; a transition that changes state and sets it
     * keeps the new one */
    cast(sm, "{s, arm2, [{st, 20, old}, {ins, internal, {s, k, [repeat]}}, "
             "{st, 20, st_b}]}");
    cast(sm, "{s, arm3, [{next, c}, {st, 10, st_c}]}");
    expect_log(sm, "[{cast,arm,a},{internal,go,a},{{timeout,probe},p,b},"
                   "{cast,arm2,b},{internal,k,b},{cast,arm3,b},"
                   "{state_timeout,st_c,c}]");
    /* cancel */
    cast(sm, "{s, arm4, [{st, 10, no}, {cancel, state}, "
             "{gt, probe, 40, p2}]}");
    expect_log(sm, "[{cast,arm,a},{internal,go,a},{{timeout,probe},p,b},"
                   "{cast,arm2,b},{internal,k,b},{cast,arm3,b},"
                   "{state_timeout,st_c,c},{cast,arm4,c},"
                   "{{timeout,probe},p2,c}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, event_timeout_cancelled_by_any_event) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* fires when nothing comes */
    cast(sm, "{s, e, [{et, 5, et1}]}");
    expect_log(sm, "[{cast,e,a},{timeout,et1,a}]");
    /* a generic timeout is an event: it cancels the event timeout */
    cast(sm, "{s, e2, [{et, 40, no}, {gt, g, 10, {s, g, []}}, "
             "{gt, probe, 80, p}]}");
    expect_log(sm, "[{cast,e,a},{timeout,et1,a},{cast,e2,a},"
                   "{{timeout,g},g,a},{{timeout,probe},p,a}]");
    /* an inserted event: the event timeout is not even started */
    cast(sm, "{s, e3, [{et, 10, no}, {ins, internal, i}, "
             "{gt, probe, 40, p2}]}");
    expect_log(sm, "[{cast,e,a},{timeout,et1,a},{cast,e2,a},"
                   "{{timeout,g},g,a},{{timeout,probe},p,a},{cast,e3,a},"
                   "{internal,i,a},{{timeout,probe},p2,a}]");
    /* infinity: no timer */
    cast(sm, "{s, e4, [{et, infinity, no}, {gt, probe, 10, p3}]}");
    expect_log(sm, "[{cast,e,a},{timeout,et1,a},{cast,e2,a},"
                   "{{timeout,g},g,a},{{timeout,probe},p,a},{cast,e3,a},"
                   "{internal,i,a},{{timeout,probe},p2,a},{cast,e4,a},"
                   "{{timeout,probe},p3,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, generic_timeouts_start_cancel_update_survive_state_change) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cast(sm, "{s, g, [{gt, t1, 20, {s, t1, [{next, b}]}}, {gt, t2, 60, c2}, "
             "{gt, t3, 40, c3}, {cancel, t3}, {update, t2, c2b}, "
             "{update, t4, c4}, {gt, t5, 10, c5}, {gt, t5, infinity, c5}]}");
    expect_log(sm, "[{cast,g,a},{{timeout,t4},c4,a},{{timeout,t1},t1,a},"
                   "{{timeout,t2},c2b,b}]");
    /* restarting a running one replaces it */
    cast(sm, "{s, r, [{gt, t, 10, first}, {gt, t, 20, second}, "
             "{gt, probe, 50, p}]}");
    expect_log(sm, "[{cast,g,a},{{timeout,t4},c4,a},{{timeout,t1},t1,a},"
                   "{{timeout,t2},c2b,b},{cast,r,b},{{timeout,t},second,b},"
                   "{{timeout,probe},p,b}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, state_enter_calls) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&enter_mod, fiber, "{a, []}");
    cast(sm, "{s, go, [{next, {b, [{st, 0, bst}]}}]}");
    cast(sm, "{s, k, []}");
    cast(sm, "{s, r, [repeat]}");
    cast(sm, "{s, same, [{next, {b, [{st, 0, bst}]}}]}");
    expect_log(sm, "[{enter,a,a},{cast,go,a},{enter,a,b},"
                   "{state_timeout,bst,b},{cast,k,b},{cast,r,b},"
                   "{enter,b,b},{state_timeout,bst,b},{cast,same,b}]");
    /* an enter call may not change the state */
    cast(sm, "{s, bad, [{next, {c, [{next, d}]}}]}");
    cr_assert(wait_until(proc_gone, &sm));
    cr_assert_eq(atomic_load(&last_reason), A("other"));
    /* nor postpone */
    sm = start_sm(&enter_mod, fiber, "{a, []}");
    cast(sm, "{s, bad, [{next, {c, [postpone]}}]}");
    cr_assert(wait_until(proc_gone, &sm));
    /* nor insert events (from init's enter call either) */
    sm = start_sm(&enter_mod, fiber, "{{a, [{ins, internal, x}]}, []}");
    cr_assert(wait_until(proc_gone, &sm));
    cr_assert_eq(atomic_load(&terminated), 3);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, calls_postponed_call_stop_and_reply_timeout) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cr_assert_eq(call(sm, "{s, c1, [{reply, r1}]}", KEEL_OK, &h), A("r1"));
    /* several replies in one action list: both reach their callers */
    cr_assert_eq(call(sm,
                      "{s, c2, [{in, a, [postpone, "
                      "{gt, go, 10, {s, go, [{next, b}]}}]}, "
                      "{in, b, [{reply, late_ok}]}]}",
                      KEEL_OK, &h),
                 A("late_ok"));
    expect_log(sm, "[{call,c1,a},{call,c2,a},{{timeout,go},go,a},"
                   "{call,c2,b}]");
    keel_term r;
    cr_assert_eq(
        keel_gen_statem_call(sm, keel_build(&h, "{s, slow, []}"), 20, &h, &r),
        KEEL_ETIMEDOUT);
    cr_assert_eq(r, KEEL_ATOM(TIMEOUT));
    cr_assert_eq(
        call(sm, "{s, bye, [{stop_reply, normal, bye_reply}]}", KEEL_OK, &h),
        A("bye_reply"));
    cr_assert(wait_until(proc_gone, &sm));
    cr_assert_eq(atomic_load(&terminated), 1);
    cr_assert_eq(atomic_load(&last_reason), KEEL_ATOM(NORMAL));
    /* stop from a call, as seen by the caller */
    sm = start_sm(&plain_mod, fiber, "{a, []}");
    cr_assert_eq(call(sm, "{s, die, [{stop, died}]}", KEEL_ENOPROC, &h),
                 A("died"));
    cr_assert_eq(atomic_load(&last_reason), A("died"));
    cr_assert_eq(call(sm, "{s, x, []}", KEEL_ENOPROC, &h), KEEL_ATOM(NOPROC));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* The same rules in virtual time (keel/sim.h): timeouts of seconds to
 * minutes, every interleaving the seeds choose. */
Test(gen_statem, timeouts_in_virtual_time_under_simulation) {
  for (uint64_t k = 0; k < sim_seed_count(); k++) {
    uint64_t seed = sim_seed_first() + k;
    start_sim(seed);
    atomic_store(&terminated, 0);
    keel_term sm = start_sm(&plain_mod, seed % 2, "{a, []}");
    cast(sm, "{s, arm, [{st, 50000, st1}, "
             "{gt, g1, 20000, {s, g1, [{next, b}, {st, 10000, st2}]}}, "
             "{gt, g2, 40000, g2}, {et, 5000, et1}]}");
    expect_log(sm, "[{cast,arm,a},{timeout,et1,a},{{timeout,g1},g1,a},"
                   "{state_timeout,st2,b},{{timeout,g2},g2,b}]");
    /* the cancelled state timeout st1 (due at 50 s) never comes: a probe
     * due after it is the next event */
    cast(sm, "{s, probe, [{gt, p, 120000, p}]}");
    expect_log(sm, "[{cast,arm,a},{timeout,et1,a},{{timeout,g1},g1,a},"
                   "{state_timeout,st2,b},{{timeout,g2},g2,b},"
                   "{cast,probe,b},{{timeout,p},p,b}]");
    stop_sm(sm);
    stop_sim();
  }
}

Test(gen_statem, event_timeout_update_and_cancel) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* update keeps the time set earlier in the list, with new content */
    cast(sm, "{s, u, [{et, 20, old}, {update, event, new}, "
             "{gt, probe, 60, p}]}");
    expect_log(sm, "[{cast,u,a},{timeout,new,a},{{timeout,probe},p,a}]");
    /* with none set, an update is an event timeout of 0 */
    cast(sm, "{s, u2, [{update, event, z}]}");
    expect_log(sm, "[{cast,u,a},{timeout,new,a},{{timeout,probe},p,a},"
                   "{cast,u2,a},{timeout,z,a}]");
    /* cancel */
    cast(sm, "{s, u3, [{et, 10, no}, {cancel, event}, {gt, probe, 40, p2}]}");
    expect_log(sm, "[{cast,u,a},{timeout,new,a},{{timeout,probe},p,a},"
                   "{cast,u2,a},{timeout,z,a},{cast,u3,a},"
                   "{{timeout,probe},p2,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_statem, cancel_every_generic_timeout) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* running ones (g4, started by the previous transition) and ones set
     * earlier in the list, of 0 (g2) or not (g1); the state timeout and
     * generic timeouts set after stay */
    cast(sm, "{s, arm, [{gt, g4, 30, no4}, {ins, internal, {s, ca, "
             "[{gt, g1, 10, no1}, {gt, g2, 0, no2}, {st, 30, st_ok}, "
             "cancel_generic, {gt, g3, 20, yes}]}}]}");
    expect_log(sm, "[{cast,arm,a},{internal,ca,a},{{timeout,g3},yes,a},"
                   "{state_timeout,st_ok,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* A zero timeout set earlier in the same action list is cancelled,
 * updated or restarted by a later action, as OTP's queue of zero
 * timeouts is. */
Test(gen_statem, zero_timeouts_changed_later_in_the_list) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cast(sm, "{s, z, [{st, 0, s0}, {cancel, state}, {gt, g, 0, g0}, "
             "{update, g, g1}, {gt, h, 0, h0}, {gt, h, 10, h10}]}");
    expect_log(sm, "[{cast,z,a},{{timeout,g},g1,a},{{timeout,h},h10,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
