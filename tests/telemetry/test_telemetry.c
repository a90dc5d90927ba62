/* Telemetry core: event descriptors, attach/detach/execute, handler failure
 * (TEL1-TEL3), list_handlers and spans (TEL4). */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/clock.h"
#include "keel/telemetry.h"

static keel_tel_event *ev(const char *dotted) {
  keel_tel_event *e = NULL;
  cr_assert_eq(keel_tel_event_parse(dotted, &e), KEEL_OK, "%s", dotted);
  return e;
}

/* The term parsed from Erlang text, in h: an oracle independent of the
 * telemetry code's own list building. */
static keel_term parsed(keel_heap *h, const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(h, text, strlen(text), &t, NULL), KEEL_OK);
  return t;
}

Test(telemetry, events_are_interned_and_named) {
  keel_term atoms[3] = {keel_atom("t1"), keel_atom("req"), keel_atom("stop")};
  keel_tel_event *a = NULL, *b = NULL;
  cr_assert_eq(keel_tel_event_get(atoms, 3, &a), KEEL_OK);
  cr_assert_eq(keel_tel_event_get(atoms, 3, &b), KEEL_OK);
  cr_assert_eq(a, b);
  cr_assert_eq(ev("t1.req.stop"), a);
  cr_assert_neq(ev("t1.req"), a);
  keel_heap h;
  keel_heap_init(&h);
  cr_assert(keel_eq_exact(keel_tel_event_name(a), parsed(&h, "[t1,req,stop]")));
  const keel_term *got;
  cr_assert_eq(keel_tel_event_atoms(a, &got), 3);
  cr_assert_eq(got[2], atoms[2]);
  keel_heap_destroy(&h);
}

Test(telemetry, bad_event_names_are_errors) {
  keel_tel_event *e = NULL;
  keel_term bad[2] = {keel_atom("x"), keel_small(1)};
  cr_assert_eq(keel_tel_event_get(bad, 2, &e), KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_get(bad, 0, &e), KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_get(bad, 1, NULL), KEEL_EINVAL);
  keel_term many[KEEL_TEL_NAME_MAX + 1];
  for (size_t i = 0; i <= KEEL_TEL_NAME_MAX; i++)
    many[i] = keel_atom("x");
  cr_assert_eq(keel_tel_event_get(many, KEEL_TEL_NAME_MAX + 1, &e),
               KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_parse("a..b", &e), KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_parse("", &e), KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_parse("a.", &e), KEEL_EINVAL);
  cr_assert_eq(keel_tel_event_parse(NULL, &e), KEEL_EINVAL);
}

/* A log of handler calls. */
typedef struct call_log {
  int n;
  char who[16];
  double value;
  keel_term meta;
} call_log;

static int log_handler(const keel_tel_event *e, const keel_tel_measure *m,
                       size_t nm, const keel_tel_meta *md, size_t nmd,
                       void *config) {
  (void)e;
  call_log *log = config;
  double v = -1;
  keel_tel_measure_get(m, nm, keel_atom("latency"), &v);
  log->value = v;
  keel_term t = KEEL_NONE;
  keel_tel_meta_get(md, nmd, keel_atom("route"), &t);
  log->meta = t;
  if (log->n < (int)sizeof log->who - 1)
    log->who[log->n] = 'a';
  log->n++;
  return KEEL_OK;
}

static char order[8];
static int norder;
static int order_a(const keel_tel_event *e, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  order[norder++] = 'a';
  return 0;
}
static int order_b(const keel_tel_event *e, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  order[norder++] = 'b';
  return 0;
}

Test(telemetry, execute_runs_handlers_in_attach_order) {
  keel_tel_event *e = ev("t2.order");
  keel_term ida = keel_atom("t2a"), idb = keel_atom("t2b");
  cr_assert_eq(keel_tel_attach(ida, &e, 1, order_a, NULL), KEEL_OK);
  cr_assert_eq(keel_tel_attach(idb, &e, 1, order_b, NULL), KEEL_OK);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(norder, 2);
  cr_assert_eq(memcmp(order, "ab", 2), 0);
  cr_assert_eq(keel_tel_detach(ida), KEEL_OK);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(norder, 3);
  cr_assert_eq(order[2], 'b');
  cr_assert_eq(keel_tel_detach(idb), KEEL_OK);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(norder, 3);
}

Test(telemetry, measurements_metadata_and_ids) {
  keel_tel_event *e = ev("t3.req");
  call_log log = {0};
  keel_heap h;
  keel_heap_init(&h);
  keel_term id = parsed(&h, "{my_handler, <<\"x\">>, 7}");
  cr_assert_eq(keel_tel_attach(id, &e, 1, log_handler, &log), KEEL_OK);
  /* An equal id (built separately) is a duplicate. */
  keel_term id2 = parsed(&h, "{my_handler, <<\"x\">>, 7}");
  cr_assert_eq(keel_tel_attach(id2, &e, 1, log_handler, &log), KEEL_EEXIST);
  keel_term route = parsed(&h, "<<\"/users\">>");
  keel_tel_measure m[2] = {{keel_atom("count"), 1},
                           {keel_atom("latency"), 12.5}};
  keel_tel_meta md[1] = {{keel_atom("route"), route}};
  keel_tel_execute(e, m, 2, md, 1);
  cr_assert_eq(log.n, 1);
  cr_assert_float_eq(log.value, 12.5, 1e-12);
  cr_assert(keel_eq_exact(log.meta, route));
  cr_assert_eq(keel_tel_detach(id2), KEEL_OK);
  cr_assert_eq(keel_tel_detach(id), KEEL_ENOENT);
  keel_tel_execute(e, m, 2, md, 1);
  cr_assert_eq(log.n, 1);
  keel_heap_destroy(&h);
}

Test(telemetry, bad_attach_arguments) {
  keel_tel_event *e = ev("t4.x");
  keel_tel_event *two[2] = {e, e};
  keel_tel_event *null_ev = NULL;
  keel_term id = keel_atom("t4");
  cr_assert_eq(keel_tel_attach(id, &e, 1, NULL, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_tel_attach(id, &e, 0, order_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_tel_attach(id, two, 2, order_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_tel_attach(id, &null_ev, 1, order_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_tel_attach(KEEL_NONE, &e, 1, order_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_tel_detach(id), KEEL_ENOENT);
  keel_tel_execute(NULL, NULL, 0, NULL, 0); /* no crash */
}

/* ---- TEL3 ---------------------------------------------------------------- */

static int fail_calls;
static int failing(const keel_tel_event *e, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  fail_calls++;
  return KEEL_EBADARG;
}

typedef struct failure_seen {
  int n;
  keel_heap heap;
  keel_term id, name, kind, reason, stack;
} failure_seen;

static int on_failure(const keel_tel_event *e, const keel_tel_measure *m,
                      size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e;
  failure_seen *f = c;
  f->n++;
  cr_assert_eq(keel_tel_measure_get(m, nm, keel_atom("monotonic_time"), NULL),
               KEEL_OK);
  keel_term t;
  cr_assert_eq(keel_tel_meta_get(md, nmd, keel_atom("handler_id"), &t),
               KEEL_OK);
  f->id = keel_term_copy(&f->heap, t);
  cr_assert_eq(keel_tel_meta_get(md, nmd, keel_atom("event_name"), &t),
               KEEL_OK);
  f->name = keel_term_copy(&f->heap, t);
  keel_tel_meta_get(md, nmd, keel_atom("kind"), &f->kind);
  keel_tel_meta_get(md, nmd, keel_atom("reason"), &f->reason);
  keel_tel_meta_get(md, nmd, keel_atom("stacktrace"), &f->stack);
  return 0;
}

Test(telemetry, failing_handler_is_detached_everywhere_and_reported) {
  keel_tel_event *evs[2] = {ev("t5.a"), ev("t5.b")};
  keel_tel_event *fail = ev("telemetry.handler.failure");
  failure_seen f = {0};
  keel_heap_init(&f.heap);
  keel_heap h;
  keel_heap_init(&h);
  cr_assert_eq(keel_tel_attach(keel_atom("t5_obs"), &fail, 1, on_failure, &f),
               KEEL_OK);
  keel_term id = parsed(&h, "{bad, 5}");
  cr_assert_eq(keel_tel_attach(id, evs, 2, failing, NULL), KEEL_OK);
  call_log log = {0};
  cr_assert_eq(keel_tel_attach(keel_atom("t5_ok"), evs, 1, log_handler, &log),
               KEEL_OK);
  keel_tel_execute(evs[0], NULL, 0, NULL, 0);
  cr_assert_eq(fail_calls, 1);
  cr_assert_eq(log.n, 1, "a later handler still runs");
  cr_assert_eq(f.n, 1);
  cr_assert(keel_eq_exact(f.id, id));
  cr_assert(keel_eq_exact(f.name, parsed(&h, "[t5,a]")));
  cr_assert_eq(f.kind, KEEL_ATOM(ERROR));
  cr_assert_eq(f.reason, keel_small(KEEL_EBADARG));
  cr_assert_eq(f.stack, KEEL_NIL);
  /* Detached from both events. */
  keel_tel_execute(evs[0], NULL, 0, NULL, 0);
  keel_tel_execute(evs[1], NULL, 0, NULL, 0);
  cr_assert_eq(fail_calls, 1);
  cr_assert_eq(f.n, 1);
  cr_assert_eq(keel_tel_detach(id), KEEL_ENOENT);
  cr_assert_eq(keel_tel_synchronize(), KEEL_OK);
  keel_tel_detach(keel_atom("t5_obs"));
  keel_tel_detach(keel_atom("t5_ok"));
  keel_heap_destroy(&f.heap);
  keel_heap_destroy(&h);
}

Test(telemetry, list_handlers_by_prefix) {
  keel_tel_event *evs[3] = {ev("t6.x.start"), ev("t6.x.stop"), ev("t6.y")};
  cr_assert_eq(keel_tel_attach(keel_atom("t6a"), evs, 2, order_a, NULL),
               KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("t6b"), evs + 2, 1, order_b, NULL),
               KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term pre[2] = {keel_atom("t6"), keel_atom("x")};
  keel_term got;
  cr_assert_eq(keel_tel_list_handlers(pre, 2, &h, &got), KEEL_OK);
  cr_assert(
      keel_eq_exact(got, parsed(&h, "[{t6a,[t6,x,start]},{t6a,[t6,x,stop]}]")));
  cr_assert_eq(keel_tel_list_handlers(pre, 1, &h, &got), KEEL_OK);
  cr_assert(keel_eq_exact(
      got, parsed(&h, "[{t6a,[t6,x,start]},{t6a,[t6,x,stop]},{t6b,[t6,y]}]")));
  keel_term none[1] = {keel_atom("t6_nothing")};
  cr_assert_eq(keel_tel_list_handlers(none, 1, &h, &got), KEEL_OK);
  cr_assert_eq(got, KEEL_NIL);
  cr_assert_eq(keel_tel_list_handlers(pre, 1, NULL, &got), KEEL_EINVAL);
  keel_tel_detach(keel_atom("t6a"));
  keel_tel_detach(keel_atom("t6b"));
  keel_heap_destroy(&h);
}

/* ---- handlers that attach and detach while running ------------------------
 */

static int self_detaching(const keel_tel_event *e, const keel_tel_measure *m,
                          size_t nm, const keel_tel_meta *md, size_t nmd,
                          void *c) {
  (void)m, (void)nm, (void)md, (void)nmd;
  int *calls = c;
  (*calls)++;
  keel_tel_event *other = NULL;
  cr_assert_eq(keel_tel_event_parse("t7.other", &other), KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("t7_new"), &other, 1, order_a, NULL),
               KEEL_OK);
  cr_assert_eq(keel_tel_synchronize(), KEEL_ESTATE);
  cr_assert_eq(keel_tel_detach(keel_atom("t7_self")), KEEL_OK);
  (void)e;
  return 0;
}

Test(telemetry, handler_may_attach_and_detach_itself) {
  keel_tel_event *e = ev("t7.main");
  int calls = 0;
  cr_assert_eq(
      keel_tel_attach(keel_atom("t7_self"), &e, 1, self_detaching, &calls),
      KEEL_OK);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(calls, 1);
  norder = 0;
  keel_tel_execute(ev("t7.other"), NULL, 0, NULL, 0);
  cr_assert_eq(norder, 1);
  cr_assert_eq(keel_tel_detach(keel_atom("t7_new")), KEEL_OK);
  cr_assert_eq(keel_tel_synchronize(), KEEL_OK);
}

/* ---- spans ----------------------------------------------------------------
 */

typedef struct span_seen {
  int starts, stops, exceptions;
  double start_mono, stop_mono, duration, extra;
  keel_term ctx_start, ctx_stop, kind, reason, user;
} span_seen;

static int on_span(const keel_tel_event *e, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  span_seen *s = c;
  const keel_term *atoms;
  size_t n = keel_tel_event_atoms(e, &atoms);
  const char *last = keel_atom_name(atoms[n - 1], NULL);
  keel_term ctx = KEEL_NONE;
  cr_assert_eq(
      keel_tel_meta_get(md, nmd, keel_atom("telemetry_span_context"), &ctx),
      KEEL_OK);
  keel_tel_meta_get(md, nmd, keel_atom("user"), &s->user);
  if (strcmp(last, "start") == 0) {
    s->starts++;
    s->ctx_start = ctx;
    keel_tel_measure_get(m, nm, keel_atom("monotonic_time"), &s->start_mono);
    cr_assert_eq(keel_tel_measure_get(m, nm, keel_atom("system_time"), NULL),
                 KEEL_OK);
    return 0;
  }
  s->ctx_stop = ctx;
  keel_tel_measure_get(m, nm, keel_atom("monotonic_time"), &s->stop_mono);
  cr_assert_eq(keel_tel_measure_get(m, nm, keel_atom("duration"), &s->duration),
               KEEL_OK);
  keel_tel_measure_get(m, nm, keel_atom("rows"), &s->extra);
  if (strcmp(last, "stop") == 0) {
    s->stops++;
  } else {
    s->exceptions++;
    keel_tel_meta_get(md, nmd, keel_atom("kind"), &s->kind);
    keel_tel_meta_get(md, nmd, keel_atom("reason"), &s->reason);
  }
  return 0;
}

static int span_ok(void *arg) {
  (void)arg;
  return 3;
}
static int span_fail(void *arg) {
  (void)arg;
  return KEEL_ETIMEDOUT;
}

Test(telemetry, span_start_stop_and_exception) {
  keel_term prefix[2] = {keel_atom("t8"), keel_atom("db")};
  keel_tel_span_events se;
  cr_assert_eq(keel_tel_span_events_get(prefix, 2, &se), KEEL_OK);
  cr_assert_eq(se.stop, ev("t8.db.stop"));
  span_seen s = {0};
  keel_tel_event *all[3] = {se.start, se.stop, se.exception};
  cr_assert_eq(keel_tel_attach(keel_atom("t8"), all, 3, on_span, &s), KEEL_OK);

  keel_tel_meta md[1] = {{keel_atom("user"), keel_small(9)}};
  uint64_t before = keel_monotonic_ns();
  keel_tel_span sp;
  cr_assert_eq(keel_tel_span_start(&sp, &se, md, 1), KEEL_OK);
  /* duration cannot be overridden; other extras pass through. */
  keel_tel_measure extra[2] = {{keel_atom("duration"), -5},
                               {keel_atom("rows"), 42}};
  cr_assert_eq(keel_tel_span_stop(&sp, extra, 2, md, 1), KEEL_OK);
  uint64_t after = keel_monotonic_ns();
  cr_assert_eq(s.starts, 1);
  cr_assert_eq(s.stops, 1);
  cr_assert_eq(s.ctx_start, s.ctx_stop);
  cr_assert_eq(s.user, keel_small(9));
  cr_assert_geq(s.start_mono, (double)before);
  cr_assert_leq(s.stop_mono, (double)after);
  cr_assert_float_eq(s.duration, s.stop_mono - s.start_mono, 0.5);
  cr_assert_geq(s.duration, 0);
  cr_assert_float_eq(s.extra, 42, 0);

  cr_assert_eq(keel_tel_span_run(&se, NULL, 0, span_ok, NULL), 3);
  cr_assert_eq(s.stops, 2);
  cr_assert_eq(keel_tel_span_run(&se, NULL, 0, span_fail, NULL),
               KEEL_ETIMEDOUT);
  cr_assert_eq(s.exceptions, 1);
  cr_assert_eq(s.kind, KEEL_ATOM(ERROR));
  cr_assert_eq(s.reason, keel_small(KEEL_ETIMEDOUT));
  cr_assert_eq(s.ctx_start, s.ctx_stop);

  /* A user-supplied context is kept. */
  keel_tel_meta mine[1] = {
      {keel_atom("telemetry_span_context"), keel_atom("mine")}};
  cr_assert_eq(keel_tel_span_start(&sp, &se, mine, 1), KEEL_OK);
  cr_assert_eq(keel_tel_span_stop(&sp, NULL, 0, NULL, 0), KEEL_OK);
  cr_assert_eq(s.ctx_start, keel_atom("mine"));
  cr_assert_eq(s.ctx_stop, keel_atom("mine"));

  keel_tel_meta big[KEEL_TEL_SPAN_META_MAX + 1] = {0};
  cr_assert_eq(keel_tel_span_start(&sp, &se, big, KEEL_TEL_SPAN_META_MAX + 1),
               KEEL_ELIMIT);
  cr_assert_eq(keel_tel_span_start(NULL, &se, NULL, 0), KEEL_EINVAL);
  cr_assert_eq(keel_tel_span_events_get(prefix, 0, &se), KEEL_EINVAL);
  keel_tel_detach(keel_atom("t8"));
}
