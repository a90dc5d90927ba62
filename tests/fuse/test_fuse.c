/* Fuse semantics (FU1-FU8) on a test clock, including a randomised
 * comparison with a model written from fuse_server.erl. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/fuse_test.h"
#include "keel/telemetry.h"

static keel_term A;

static void init_names(void) {
  A = keel_atom("db");
}

Test(fuse, blows_when_melts_exceed_max_and_heals_fully, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(2, 1000, 500);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "2 melts do not exceed 2");
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  advance_ms(&c, 499);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  advance_ms(&c, 1);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "healed after reset ms");
  /* Fully healed (no half-open state, no memory of melts): two melts are
   * fine again, the third blows. */
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  keel_fuses_destroy(fs);
}

Test(fuse, sliding_window_boundaries, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(2, 1000, 100);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  keel_fuse_melt(fs, A); /* t = 0 */
  advance_ms(&c, 600);
  keel_fuse_melt(fs, A); /* t = 600 */
  advance_ms(&c, 400);
  keel_fuse_melt(fs, A); /* t = 1000: the melt at 0 is exactly out */
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  advance_ms(&c, 1);
  keel_fuse_melt(fs, A); /* t = 1001: 600, 1000, 1001 are in */
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  keel_fuses_destroy(fs);
}

Test(fuse, zero_max_melts_and_zero_window, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts zero_max = standard(0, 100, 10);
  cr_assert_eq(keel_fuse_install(fs, A, &zero_max), KEEL_OK);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "MaxR = 0: one melt");
  keel_fuse_opts zero_window = standard(0, 0, 10);
  cr_assert_eq(keel_fuse_install(fs, A, &zero_window), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "reinstall resets");
  for (int i = 0; i < 10; i++)
    keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "window 0: nothing counts");
  keel_fuses_destroy(fs);
}

Test(fuse, bad_options_and_names, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(1, 10, 10);
  o.strategy = (keel_fuse_strategy)7;
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_EINVAL);
  o = standard(KEEL_FUSE_MAX_MELTS + 1, 10, 10);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_EINVAL);
  o = standard(1, UINT64_C(1) << 40, 10);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_EINVAL);
  o.strategy = KEEL_FUSE_FAULT_INJECTION;
  o.window_ms = 10;
  double bad_rates[] = {0, -0.5, 1.5, __builtin_nan("")};
  for (size_t i = 0; i < 4; i++) {
    o.rate = bad_rates[i];
    cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_EINVAL, "rate %g",
                 bad_rates[i]);
  }
  cr_assert_eq(keel_fuse_install(fs, A, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_fuse_install(fs, KEEL_NONE, &o), KEEL_EINVAL);
  cr_assert_eq(keel_fuse_install(NULL, A, &o), KEEL_EINVAL);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_ENOENT, "nothing was installed");
  cr_assert_eq(keel_fuse_ask(NULL, A), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_melt(fs, A), KEEL_OK, "melt of unknown is ok");
  cr_assert_eq(keel_fuse_reset(fs, A), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_remove(fs, A), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_circuit_disable(fs, A), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_circuit_enable(fs, A), KEEL_ENOENT);
  keel_fuses_opts big = {.max_fuses = (size_t)KEEL_FUSES_MAX + 1};
  keel_fuses *x;
  cr_assert_eq(keel_fuses_create(&big, &x), KEEL_EINVAL);
  keel_fuses_destroy(fs);
}

Test(fuse, names_are_terms_and_the_set_is_bounded) {
  test_clock c;
  atomic_store(&c.ns, 1);
  keel_fuses_opts so = {
      .clock = test_clock_read, .clock_arg = &c, .max_fuses = 3};
  keel_fuses *fs;
  cr_assert_eq(keel_fuses_create(&so, &fs), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term n1 = keel_build(&h, "{svc, ~s}", "a");
  keel_term n1b = keel_build(&h, "{svc, ~s}", "a");
  keel_term n2 = keel_build(&h, "{svc, ~s}", "b");
  keel_fuse_opts o = standard(0, 100, 100);
  cr_assert_eq(keel_fuse_install(fs, n1, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_install(fs, n2, &o), KEEL_OK);
  keel_fuse_melt(fs, n1b); /* an equal term names the same fuse */
  cr_assert_eq(keel_fuse_ask(fs, n1), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_ask(fs, n2), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_install(fs, keel_small(3), &o), KEEL_OK);
  cr_assert_eq(keel_fuse_install(fs, keel_small(4), &o), KEEL_ESYSLIMIT);
  /* A removed name keeps its slot and can come back. */
  cr_assert_eq(keel_fuse_remove(fs, n2), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, n2), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_install(fs, n2, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, n2), KEEL_FUSE_OK);
  keel_heap_destroy(&h);
  keel_fuses_destroy(fs);
}

Test(fuse, fault_injection_rate, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 42);
  keel_fuse_opts o = {.strategy = KEEL_FUSE_FAULT_INJECTION,
                      .rate = 0.25,
                      .max_melts = 3,
                      .window_ms = 100,
                      .reset_ms = 100};
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  const int n = 20000;
  int blown = 0;
  for (int i = 0; i < n; i++)
    blown += keel_fuse_ask(fs, A) == KEEL_FUSE_BLOWN;
  /* Binomial(20000, 0.25): mean 5000, sd 61; 6 sd either side. */
  cr_assert(blown > 5000 - 370 && blown < 5000 + 370, "blown %d", blown);
  /* Melting blows it for real: then every ask is blown. */
  for (int i = 0; i < 4; i++)
    keel_fuse_melt(fs, A);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  o.rate = 1.0;
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "rate 1");
  keel_fuses_destroy(fs);
}

static int runs;
static int work_ok(void *arg) {
  (void)arg;
  runs++;
  return KEEL_FUSE_OK;
}
static int work_melt(void *arg) {
  (void)arg;
  runs++;
  return KEEL_FUSE_MELT;
}

Test(fuse, run_asks_and_melts, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(1, 1000, 1000);
  cr_assert_eq(keel_fuse_run(fs, A, work_ok, NULL), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_run(fs, A, work_ok, NULL), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_run(fs, A, work_melt, NULL), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_run(fs, A, work_melt, NULL), KEEL_FUSE_OK);
  cr_assert_eq(runs, 3);
  cr_assert_eq(keel_fuse_run(fs, A, work_ok, NULL), KEEL_FUSE_BLOWN);
  cr_assert_eq(runs, 3, "a blown fuse does not run the work");
  cr_assert_eq(keel_fuse_run(fs, A, NULL, NULL), KEEL_EINVAL);
  keel_fuses_destroy(fs);
}

Test(fuse, circuit_disable_dominates_everything_but_remove,
     .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(1, 1000, 100);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_circuit_enable(fs, A), KEEL_OK, "idempotent");
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_circuit_disable(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_reset(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "reset");
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "reinstall");
  advance_ms(&c, 1000);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "time");
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A);
  advance_ms(&c, 1000);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN, "melts and time");
  cr_assert_eq(keel_fuse_circuit_enable(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "enabled: ok, no melts");
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_circuit_disable(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_remove(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_ENOENT);
  /* After remove, a new install starts enabled. */
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  keel_fuses_destroy(fs);
}

/* ---- telemetry events (FU8) ------------------------------------------------
 */

typedef struct seen {
  int blown, recovered;
  keel_term last_name;
} seen;

static int on_fuse_event(const keel_tel_event *e, const keel_tel_measure *m,
                         size_t nm, const keel_tel_meta *md, size_t nmd,
                         void *cfg) {
  (void)m, (void)nm;
  seen *s = cfg;
  const keel_term *atoms;
  size_t n = keel_tel_event_atoms(e, &atoms);
  if (strcmp(keel_atom_name(atoms[n - 1], NULL), "blown") == 0)
    s->blown++;
  else
    s->recovered++;
  keel_tel_meta_get(md, nmd, keel_atom("name"), &s->last_name);
  return 0;
}

Test(fuse, blown_and_recovered_events, .init = init_names) {
  keel_tel_event *evs[2];
  cr_assert_eq(keel_tel_event_parse("keel.fuse.blown", &evs[0]), KEEL_OK);
  cr_assert_eq(keel_tel_event_parse("keel.fuse.recovered", &evs[1]), KEEL_OK);
  seen s = {0};
  cr_assert_eq(
      keel_tel_attach(keel_atom("fuse_obs"), evs, 2, on_fuse_event, &s),
      KEEL_OK);
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(0, 1000, 100);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A); /* already blown: no second event */
  cr_assert_eq(s.blown, 1);
  cr_assert_eq(s.last_name, A);
  advance_ms(&c, 100);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK);
  cr_assert_eq(s.recovered, 1);
  cr_assert_eq(keel_fuse_circuit_disable(fs, A), KEEL_OK);
  cr_assert_eq(s.blown, 2);
  cr_assert_eq(keel_fuse_circuit_enable(fs, A), KEEL_OK);
  cr_assert_eq(s.recovered, 2);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_reset(fs, A), KEEL_OK);
  cr_assert_eq(s.blown, 3);
  cr_assert_eq(s.recovered, 3);
  keel_tel_detach(keel_atom("fuse_obs"));
  keel_fuses_destroy(fs);
}

/* ---- model-based test -------------------------------------------------------
 * The model follows fuse_server.erl literally: a newest-first list of melt
 * times filtered by Now - T < Period, an explicit timer that fires before
 * the next operation at or after its time, and an `enabled` flag. */

#define MODEL_MAX_HIST 64

typedef struct model {
  bool exists, enabled, blown, timer;
  uint64_t due, period, heal;
  uint32_t intensity;
  int nhist;
  uint64_t hist[MODEL_MAX_HIST];
} model;

static void model_fix(model *m) {
  if (m->enabled)
    m->blown = false;
}

static void model_timers(model *m, uint64_t now) {
  if (m->exists && m->timer && now >= m->due) {
    model_fix(m);
    m->timer = false;
    m->nhist = 0;
  }
}

static void model_melt(model *m, uint64_t now) {
  if (!m->exists)
    return;
  /* add_restart_([Now | R], Now, Period): keep the prefix in period. */
  uint64_t all[MODEL_MAX_HIST + 1], kept[MODEL_MAX_HIST];
  all[0] = now;
  memcpy(all + 1, m->hist, sizeof all[0] * (size_t)m->nhist);
  int n = 0;
  for (int i = 0; i <= m->nhist && n < MODEL_MAX_HIST; i++) {
    if (now - all[i] >= m->period)
      break;
    kept[n++] = all[i];
  }
  memcpy(m->hist, kept, sizeof kept[0] * (size_t)n);
  m->nhist = n;
  if ((uint32_t)n > m->intensity && m->enabled) {
    m->blown = true;
    if (!m->timer) {
      m->timer = true;
      m->due = now + m->heal;
    }
  }
}

static void model_install(model *m, uint32_t i, uint64_t period,
                          uint64_t heal) {
  bool en = m->exists ? m->enabled : true;
  m->exists = true;
  m->enabled = en;
  m->intensity = i;
  m->period = period;
  m->heal = heal;
  m->timer = false;
  m->nhist = 0;
  m->blown = !en;
}

Test(fuse, matches_a_model_of_fuse_server, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  unsigned seed = 12345;
  for (int trial = 0; trial < 50; trial++) {
    model m = {0};
    keel_fuse_remove(fs, A);
    for (int step = 0; step < 400; step++) {
      uint64_t now = atomic_load(&c.ns);
      model_timers(&m, now);
      int op = rand_r(&seed) % 100;
      if (op < 40) {
        keel_fuse_melt(fs, A);
        model_melt(&m, now);
      } else if (op < 65) {
        advance_ms(&c, (uint64_t)(rand_r(&seed) % 40));
      } else if (op < 72) {
        uint32_t i = (uint32_t)(rand_r(&seed) % 4);
        uint64_t per = (uint64_t)(rand_r(&seed) % 60);
        uint64_t heal = (uint64_t)(rand_r(&seed) % 80);
        keel_fuse_opts o = standard(i, per, heal);
        cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
        model_install(&m, i, per * 1000000u, heal * 1000000u);
      } else if (op < 78) {
        int rc = keel_fuse_reset(fs, A);
        cr_assert_eq(rc, m.exists ? KEEL_OK : KEEL_ENOENT);
        if (m.exists) {
          model_fix(&m);
          m.timer = false;
          m.nhist = 0;
        }
      } else if (op < 84) {
        cr_assert_eq(keel_fuse_circuit_disable(fs, A),
                     m.exists ? KEEL_OK : KEEL_ENOENT);
        if (m.exists && m.enabled) {
          m.blown = true;
          m.timer = false;
          m.enabled = false;
        }
      } else if (op < 92) {
        cr_assert_eq(keel_fuse_circuit_enable(fs, A),
                     m.exists ? KEEL_OK : KEEL_ENOENT);
        if (m.exists && !m.enabled) {
          m.enabled = true;
          model_fix(&m);
          m.nhist = 0;
        }
      } else if (op < 94) {
        cr_assert_eq(keel_fuse_remove(fs, A), m.exists ? KEEL_OK : KEEL_ENOENT);
        m.exists = false;
      }
      model_timers(&m, atomic_load(&c.ns));
      int want = !m.exists ? KEEL_ENOENT
                 : m.blown ? KEEL_FUSE_BLOWN
                           : KEEL_FUSE_OK;
      cr_assert_eq(keel_fuse_ask(fs, A), want, "trial %d step %d op %d", trial,
                   step, op);
    }
  }
  keel_fuses_destroy(fs);
}

/* ---- alarm monitor (FU8) ----------------------------------------------------
 */

static int alarm_events[2];
static int on_alarm(const keel_tel_event *e, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  const keel_term *atoms;
  size_t n = keel_tel_event_atoms(e, &atoms);
  alarm_events[atoms[n - 1] == keel_atom("alarm_set") ? 0 : 1]++;
  return 0;
}

Test(fuse, alarm_set_when_blown_and_cleared_after_three_ok_rounds,
     .init = init_names) {
  keel_tel_event *evs[2];
  cr_assert_eq(keel_tel_event_parse("keel.fuse.alarm_set", &evs[0]), KEEL_OK);
  cr_assert_eq(keel_tel_event_parse("keel.fuse.alarm_cleared", &evs[1]),
               KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("al"), evs, 2, on_alarm, NULL),
               KEEL_OK);
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_term other = keel_atom("other");
  keel_fuse_opts o = standard(0, 1000, 100);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_install(fs, other, &o), KEEL_OK);
  cr_assert_eq(keel_fuses_monitor(fs), 0);
  cr_assert_eq(keel_fuse_alarm(fs, A), 0);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuses_monitor(fs), 1);
  cr_assert_eq(keel_fuse_alarm(fs, A), 1);
  cr_assert_eq(keel_fuse_alarm(fs, other), 0);
  cr_assert_eq(keel_fuses_monitor(fs), 1, "still blown: raised once");
  cr_assert_eq(alarm_events[0], 1);
  advance_ms(&c, 100); /* heals */
  cr_assert_eq(keel_fuses_monitor(fs), 1, "ok round 1");
  cr_assert_eq(keel_fuses_monitor(fs), 1, "ok round 2");
  keel_fuse_melt(fs, A); /* blown again: the count starts over */
  cr_assert_eq(keel_fuses_monitor(fs), 1);
  advance_ms(&c, 100);
  cr_assert_eq(keel_fuses_monitor(fs), 1);
  cr_assert_eq(keel_fuses_monitor(fs), 1);
  cr_assert_eq(alarm_events[1], 0);
  cr_assert_eq(keel_fuses_monitor(fs), 0, "third ok round clears");
  cr_assert_eq(keel_fuse_alarm(fs, A), 0);
  cr_assert_eq(alarm_events[0], 1);
  cr_assert_eq(alarm_events[1], 1);
  /* A disabled fuse raises its alarm too. */
  cr_assert_eq(keel_fuse_circuit_disable(fs, other), KEEL_OK);
  cr_assert_eq(keel_fuses_monitor(fs), 1);
  cr_assert_eq(keel_fuse_alarm(fs, other), 1);
  cr_assert_eq(keel_fuse_alarm(fs, keel_atom("nope")), KEEL_ENOENT);
  cr_assert_eq(keel_fuses_monitor(NULL), KEEL_EINVAL);
  keel_tel_detach(keel_atom("al"));
  keel_fuses_destroy(fs);
}
