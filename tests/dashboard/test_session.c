/* The dashboard protocol in bytes (keel_dashboard_session_*): a join gets
 * the full snapshot, a tick after a change gets a diff that, applied to
 * the client's state decoded from JSON, gives the page's new state; no
 * frame when nothing changed; events change params; hostile frames get
 * error replies. Also the JSON API and the embedded assets. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <string.h>

#include "keel/dashboard.h"
#include "keel/json.h"
#include "runtime/rt_test.h"

static keel_term decode(keel_heap *h, const keel_buf *b) {
  keel_term t;
  cr_assert_gt(b->len, 0);
  cr_assert_eq(keel_json_decode(h, (const char *)b->data, b->len, &t), KEEL_OK,
               "%.*s", (int)b->len, (const char *)b->data);
  return t;
}

static keel_term bget(keel_term m, const char *k) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term v = KEEL_NONE;
  keel_map_get(m, keel_binary(&h, k, strlen(k)), &v);
  keel_heap_destroy(&h);
  return v;
}

static int64_t bint(keel_term m, const char *k) {
  int64_t v = -1;
  cr_assert_eq(keel_get_int64(bget(m, k), &v), KEEL_OK, "%s", k);
  return v;
}

static keel_term input(keel_dashboard_session *s, keel_heap *h,
                       const char *text) {
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_dashboard_session_input(s, text, strlen(text), &b),
               KEEL_OK);
  keel_term t = decode(h, &b);
  keel_buf_free(&b);
  return t;
}

static keel_handler_status idle(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  (void)msg;
  (void)st;
  return KEEL_CONTINUE;
}

Test(dashboard_session, join_then_diffs_rebuild_the_state) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_dashboard *d;
    cr_assert_eq(keel_dashboard_create(NULL, &d), KEEL_OK);
    keel_dashboard_session *s;
    cr_assert_eq(keel_dashboard_session_create(d, &s), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term f = input(s, &h,
                        "{\"join\":\"processes\","
                        "\"params\":{\"sort\":\"pid\",\"limit\":500}}");
    keel_term state = bget(f, "full");
    cr_assert_neq(state, KEEL_NONE);
    cr_assert_str_eq(keel_dashboard_session_page(s), "processes");
    int64_t n0 = bint(state, "total");
    for (int i = 0; i < 7; i++)
      cr_assert_eq(keel_spawn(idle, NULL, NULL, NULL), KEEL_OK);
    keel_buf b;
    keel_buf_init(&b);
    cr_assert_eq(keel_dashboard_session_tick(s, &b), KEEL_OK);
    keel_term fr = decode(&h, &b);
    keel_term diff = bget(fr, "diff");
    cr_assert_neq(diff, KEEL_NONE);
    cr_assert_eq(keel_dashboard_diff_apply(state, diff, &h, &state), KEEL_OK);
    cr_assert_eq(bint(state, "total"), n0 + 7);
    size_t rows;
    cr_assert_eq(keel_list_length(bget(state, "rows"), &rows), KEEL_OK);
    cr_assert_eq((int64_t)rows, n0 + 7);
    /* the rebuilt state is what the API reports now */
    keel_buf api;
    keel_buf_init(&api);
    cr_assert_eq(keel_dashboard_api(d, "processes", "sort=pid&limit=500", &api),
                 KEEL_OK);
    keel_term now = decode(&h, &api);
    cr_assert(keel_eq_exact(bget(now, "rows"), bget(state, "rows")) ||
              bint(now, "total") == n0 + 7);
    keel_buf_free(&api);
    keel_buf_free(&b);
    keel_heap_destroy(&h);
    keel_dashboard_session_destroy(s);
    keel_dashboard_destroy(d);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(dashboard_session, no_frame_when_nothing_changed) {
  start_node(1, 0);
  keel_dashboard *d;
  cr_assert_eq(keel_dashboard_create(NULL, &d), KEEL_OK);
  keel_dashboard_session *s;
  cr_assert_eq(keel_dashboard_session_create(d, &s), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term f = input(s, &h, "{\"join\":\"presence\"}");
  cr_assert_eq(bint(bget(f, "full"), "count"), 0);
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_dashboard_session_tick(s, &b), KEEL_OK);
  cr_assert_eq(b.len, 0);
  keel_term l = keel_build(&h, "[#{id => <<\"u1\">>}]");
  cr_assert_eq(keel_dashboard_set_presence(d, l), KEEL_OK);
  cr_assert_eq(keel_dashboard_session_tick(s, &b), KEEL_OK);
  keel_term diff = bget(decode(&h, &b), "diff");
  keel_term state;
  cr_assert_eq(keel_dashboard_diff_apply(bget(f, "full"), diff, &h, &state),
               KEEL_OK);
  cr_assert_eq(bint(state, "count"), 1);
  keel_buf_free(&b);
  keel_heap_destroy(&h);
  keel_dashboard_session_destroy(s);
  keel_dashboard_destroy(d);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(dashboard_session, events_and_hostile_frames) {
  start_node(2, 0);
  keel_dashboard *d;
  cr_assert_eq(keel_dashboard_create(NULL, &d), KEEL_OK);
  keel_dashboard_session *s;
  cr_assert_eq(keel_dashboard_session_create(d, &s), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  input(s, &h, "{\"join\":\"processes\"}");
  keel_term f = input(s, &h,
                      "{\"event\":\"sort\",\"by\":\"reductions\","
                      "\"dir\":\"asc\"}");
  keel_term full = bget(f, "full");
  cr_assert_neq(full, KEEL_NONE, "a params change resends the page");
  cr_assert(
      keel_eq_exact(bget(full, "sort"), keel_binary(&h, "reductions", 10)));
  cr_assert(keel_eq_exact(bget(full, "dir"), keel_binary(&h, "asc", 3)));
  cr_assert_neq(bget(bget(f, "reply"), "ok"), KEEL_NONE);
  f = input(s, &h, "{\"event\":\"kill\",\"pid\":\"<0.99999.0>\"}");
  cr_assert_neq(bget(bget(f, "reply"), "error"), KEEL_NONE);
  const char *bad[] = {"",
                       "nope",
                       "[1,2]",
                       "{\"join\":\"nowhere\"}",
                       "{\"join\":42}",
                       "{\"join\":\"processes\",\"params\":{\"sort\":1}}",
                       "{\"event\":17}",
                       "{\"what\":1}",
                       "{\"join\":\"processes\",\"params\":7}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    keel_buf b;
    keel_buf_init(&b);
    cr_assert_eq(keel_dashboard_session_input(s, bad[i], strlen(bad[i]), &b),
                 KEEL_OK, "%s", bad[i]);
    cr_assert_neq(bget(decode(&h, &b), "error"), KEEL_NONE, "%s", bad[i]);
    keel_buf_free(&b);
  }
  f = input(s, &h, "{\"ping\":5}");
  cr_assert_eq(bint(f, "pong"), 5);
  keel_heap_destroy(&h);
  keel_dashboard_session_destroy(s);
  keel_dashboard_destroy(d);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(dashboard_session, assets_are_embedded) {
  const uint8_t *data;
  size_t len;
  const char *ct;
  cr_assert_eq(keel_dashboard_asset("/", &data, &len, &ct), KEEL_OK);
  cr_assert_str_eq(ct, "text/html; charset=utf-8");
  cr_assert_gt(len, 100);
  cr_assert(memmem(data, len, "data-testid", 11) != NULL);
  const char *js[] = {"/app.js", "/diff.js", "/chart.js"};
  for (size_t i = 0; i < 3; i++) {
    cr_assert_eq(keel_dashboard_asset(js[i], &data, &len, &ct), KEEL_OK, "%s",
                 js[i]);
    cr_assert_str_eq(ct, "text/javascript; charset=utf-8");
  }
  cr_assert_eq(keel_dashboard_asset("/app.css?v=1", &data, &len, &ct), KEEL_OK);
  cr_assert_str_eq(ct, "text/css; charset=utf-8");
  cr_assert_eq(keel_dashboard_asset("/nope.js", &data, &len, &ct), KEEL_ENOENT);
  cr_assert_eq(keel_dashboard_asset("/../etc/passwd", &data, &len, &ct),
               KEEL_ENOENT);
}
