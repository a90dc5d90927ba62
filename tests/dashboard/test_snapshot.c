/* Dashboard page snapshots (keel/dashboard.h) hold what the runtime has:
 * spawned processes in the count and the rows, a registered busy process
 * at the top by reductions, a table with its size and owner, a
 * supervision tree that follows a restart, metric rings, the presence
 * feed, and a kill event that a supervisor answers with a restart. Each
 * scenario runs with 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/dashboard.h"
#include "keel/ets.h"
#include "keel/json.h"
#include "keel/telemetry.h"
#include "keel/version.h"
#include "otp/sup_test.h"

static keel_term field(keel_term m, const char *k) {
  keel_term v;
  cr_assert(keel_is_map(m));
  cr_assert_eq(keel_map_get(m, keel_atom(k), &v), KEEL_OK, "no key %s", k);
  return v;
}

static int64_t int_field(keel_term m, const char *k) {
  int64_t v;
  cr_assert_eq(keel_get_int64(field(m, k), &v), KEEL_OK, "%s", k);
  return v;
}

static bool bin_is(keel_term b, const char *s) {
  size_t n;
  if (!keel_is_binary(b))
    return false;
  const uint8_t *p = keel_binary_data(b, &n);
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

static keel_term printed(keel_heap *h, keel_term t) {
  char buf[64];
  int n = keel_print(buf, sizeof buf, t, NULL);
  return keel_binary(h, buf, (size_t)n);
}

static size_t list_len(keel_term l) {
  size_t n;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  return n;
}

/* The snapshot must be JSON-encodable. */
static keel_term snap(keel_dashboard *d, const char *page, keel_term params,
                      keel_heap *h) {
  keel_term out;
  cr_assert_eq(keel_dashboard_page_snapshot(d, page, params, h, &out), KEEL_OK,
               "%s", page);
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_json_encode(&b, out, NULL), KEEL_OK, "%s json", page);
  keel_buf_free(&b);
  return out;
}

static keel_handler_status idle(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  (void)st;
  if (msg == keel_atom("ping"))
    signal_event();
  return KEEL_CONTINUE;
}

static keel_term spawn_idle(void) {
  keel_term pid;
  cr_assert_eq(keel_spawn(idle, NULL, NULL, &pid), KEEL_OK);
  return pid;
}

/* Links to and monitors the pid at arg, then waits. */
static void link_and_monitor(keel_proc *self, void *arg) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m;
  (void)keel_link(self, *(keel_term *)arg);
  (void)keel_monitor(self, *(keel_term *)arg, 0, &h, &ref);
  signal_event();
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
  keel_heap_destroy(&h);
}

static keel_dashboard *dash(const keel_term *roots, size_t n, keel_metrics *m) {
  keel_dashboard_opts o = {
      .sup_roots = roots, .nsup_roots = n, .metrics = m, .history = 4};
  keel_dashboard *d;
  cr_assert_eq(keel_dashboard_create(&o, &d), KEEL_OK);
  return d;
}

Test(dashboard_snapshot, home_counts_processes_and_schedulers) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_dashboard *d = dash(NULL, 0, NULL);
    keel_heap h;
    keel_heap_init(&h);
    keel_term before = snap(d, "home", KEEL_NONE, &h);
    for (int i = 0; i < 50; i++)
      spawn_idle();
    cr_assert_eq(keel_dashboard_sample(d), KEEL_OK); /* memory is sampled */
    keel_term after = snap(d, "home", KEEL_NONE, &h);
    cr_assert_eq(int_field(after, "process_count") -
                     int_field(before, "process_count"),
                 50);
    cr_assert_eq(list_len(field(after, "schedulers")), sched_counts[k]);
    cr_assert(bin_is(field(after, "version"), keel_version()));
    keel_term mem = field(after, "memory");
    cr_assert_gt(int_field(mem, "processes"), 0);
    cr_assert_gt(int_field(mem, "total"), 0);
    keel_heap_destroy(&h);
    keel_dashboard_destroy(d);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(dashboard_snapshot, processes_rows_sort_and_detail) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_dashboard *d = dash(NULL, 0, NULL);
    for (int i = 0; i < 20; i++)
      spawn_idle();
    keel_term busy = spawn_idle();
    cr_assert_eq(keel_register(keel_atom("dash_probe"), busy), KEEL_OK);
    cr_assert_eq(keel_dashboard_sample(d), KEEL_OK);
    for (int i = 0; i < 200; i++)
      keel_send(busy, keel_atom("ping"));
    cr_assert(wait_events(200));
    cr_assert_eq(keel_dashboard_sample(d), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term params = keel_build(&h, "#{sort => reductions, limit => 5}");
    keel_term p = snap(d, "processes", params, &h);
    keel_term rows = field(p, "rows");
    cr_assert_eq(list_len(rows), 5);
    cr_assert_geq(int_field(p, "total"), 21);
    keel_term top = keel_hd(rows);
    cr_assert(bin_is(field(top, "name"), "dash_probe"));
    cr_assert(keel_eq_exact(field(top, "pid"), printed(&h, busy)));
    cr_assert_gt(int_field(top, "reductions"), 0);
    /* by memory, descending: non-increasing */
    params = keel_build(&h, "#{<<\"sort\">> => <<\"memory\">>}");
    rows = field(snap(d, "processes", params, &h), "rows");
    for (int64_t last = INT64_MAX; keel_is_cons(rows); rows = keel_tl(rows)) {
      cr_assert_leq(int_field(keel_hd(rows), "memory"), last);
      last = int_field(keel_hd(rows), "memory");
    }
    /* detail of one pid, inside the processes page and alone */
    params =
        keel_map_put(&h, keel_map_new(&h), keel_atom("pid"), printed(&h, busy));
    keel_term sel = field(snap(d, "processes", params, &h), "selected");
    cr_assert_eq(field(sel, "alive"), keel_atom("true"));
    cr_assert(bin_is(field(sel, "name"), "dash_probe"));
    cr_assert_eq(int_field(sel, "links"), 0);
    cr_assert_eq(field(sel, "link_pids"), KEEL_NIL);
    /* a process that links to it and monitors it: listed by pid */
    keel_term watcher;
    cr_assert_eq(keel_spawn_fiber(link_and_monitor, &busy, NULL, &watcher),
                 KEEL_OK);
    cr_assert(wait_events(201));
    sel = field(snap(d, "processes", params, &h), "selected");
    keel_term want = keel_cons(&h, printed(&h, watcher), KEEL_NIL);
    cr_assert(keel_eq_exact(field(sel, "link_pids"), want));
    cr_assert(keel_eq_exact(field(sel, "monitored_by_pids"), want));
    cr_assert_eq(field(sel, "monitor_pids"), KEEL_NIL);
    keel_term one = field(snap(d, "process", params, &h), "process");
    cr_assert(keel_eq_exact(field(one, "id"), printed(&h, busy)));
    keel_term bad = keel_build(&h, "#{sort => nope}"), out;
    cr_assert_eq(keel_dashboard_page_snapshot(d, "processes", bad, &h, &out),
                 KEEL_EBADARG);
    cr_assert_eq(keel_dashboard_page_snapshot(d, "nope", KEEL_NONE, &h, &out),
                 KEEL_ENOENT);
    keel_heap_destroy(&h);
    keel_dashboard_destroy(d);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static keel_term find_row(keel_term rows, const char *key, const char *val) {
  for (; keel_is_cons(rows); rows = keel_tl(rows))
    if (bin_is(field(keel_hd(rows), key), val))
      return keel_hd(rows);
  return KEEL_NONE;
}

Test(dashboard_snapshot, tables_show_size_type_owner) {
  start_node(2, 0);
  keel_dashboard *d = dash(NULL, 0, NULL);
  keel_term owner = spawn_idle();
  keel_ets_opts o = {.type = KEEL_ETS_ORDERED_SET,
                     .access = KEEL_ETS_PUBLIC,
                     .name = keel_atom("dash_tab"),
                     .owner = owner};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(keel_ets_insert(t, keel_build(&h, "{~i, x}", i)), KEEL_OK);
  keel_term row = find_row(field(snap(d, "tables", KEEL_NONE, &h), "rows"),
                           "name", "dash_tab");
  cr_assert_neq(row, KEEL_NONE);
  cr_assert_eq(int_field(row, "size"), 10);
  cr_assert_eq(field(row, "type"), keel_atom("ordered_set"));
  cr_assert_eq(field(row, "protection"), keel_atom("public"));
  cr_assert(keel_eq_exact(field(row, "owner"), printed(&h, owner)));
  cr_assert_gt(int_field(row, "memory"), 0);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  row = find_row(field(snap(d, "tables", KEEL_NONE, &h), "rows"), "name",
                 "dash_tab");
  cr_assert_eq(row, KEEL_NONE);
  keel_heap_destroy(&h);
  keel_dashboard_destroy(d);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

static keel_term child_pid(keel_term sup, const char *id) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term l, r = KEEL_NONE;
  cr_assert_eq(keel_sup_which_children(sup, &h, &l), KEEL_OK);
  for (; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == keel_atom(id))
      r = keel_tuple_get(keel_hd(l), 1);
  keel_heap_destroy(&h);
  return r;
}

typedef struct restarted {
  keel_term sup, old;
} restarted;

static bool is_restarted(void *arg) {
  restarted *r = arg;
  keel_term p = child_pid(r->sup, "b");
  return keel_is_local_pid(p) && p != r->old;
}

/* The tree's child `id` of root 0. */
static keel_term tree_child(keel_dashboard *d, keel_heap *h, const char *id) {
  keel_term roots = field(snap(d, "supervision", KEEL_NONE, h), "roots");
  cr_assert_eq(list_len(roots), 1);
  return find_row(field(keel_hd(roots), "children"), "label", id);
}

Test(dashboard_snapshot, supervision_tree_follows_a_kill_and_restart) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg w[3] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}};
    keel_sup_child_spec cs[3] = {worker_spec(&w[0]), worker_spec(&w[1]),
                                 worker_spec(&w[2])};
    keel_sup_spec s = KEEL_SUP_SPEC_INIT;
    s.children = cs;
    s.nchildren = 3;
    s.name = keel_atom("dash_sup");
    keel_term sup;
    cr_assert_eq(keel_sup_start_link(&s, &sup), KEEL_OK);
    keel_term root = keel_atom("dash_sup");
    keel_dashboard *d = dash(&root, 1, NULL);
    keel_heap h;
    keel_heap_init(&h);
    keel_term b = child_pid(sup, "b");
    keel_term node = tree_child(d, &h, "b");
    cr_assert_neq(node, KEEL_NONE);
    cr_assert(keel_eq_exact(field(node, "pid"), printed(&h, b)));
    cr_assert_eq(field(node, "type"), keel_atom("worker"));
    cr_assert_eq(int_field(node, "restarts"), 0);
    cr_assert_neq(tree_child(d, &h, "a"), KEEL_NONE);
    cr_assert_neq(tree_child(d, &h, "c"), KEEL_NONE);
    /* kill b the way the UI does */
    keel_term ev = keel_build(&h,
                              "#{<<\"event\">> => <<\"kill\">>, "
                              "<<\"pid\">> => ~t}",
                              printed(&h, b));
    keel_term np, reply;
    cr_assert_eq(keel_dashboard_handle_event(d, ev, KEEL_NONE, &h, &np, &reply),
                 KEEL_OK);
    cr_assert_eq(keel_map_size(reply), 1);
    cr_assert_eq(keel_map_get(reply, keel_atom("ok"), &np), KEEL_OK);
    restarted r = {sup, b};
    cr_assert(wait_until(is_restarted, &r));
    keel_term b2 = child_pid(sup, "b");
    node = tree_child(d, &h, "b");
    cr_assert(keel_eq_exact(field(node, "pid"), printed(&h, b2)));
    cr_assert_eq(int_field(node, "restarts"), 1);
    /* a kill of a dead pid is an error reply */
    cr_assert_eq(keel_dashboard_handle_event(d, ev, KEEL_NONE, &h, &np, &reply),
                 KEEL_OK);
    cr_assert_eq(keel_map_get(reply, keel_atom("error"), &np), KEEL_OK);
    keel_heap_destroy(&h);
    keel_dashboard_destroy(d);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(dashboard_snapshot, metrics_keep_a_ring_of_samples) {
  start_node(2, 0);
  keel_metrics *m;
  cr_assert_eq(keel_metrics_create(&m), KEEL_OK);
  keel_metric_spec spec = {.type = KEEL_METRIC_COUNTER,
                           .name = "dash.test.tick.count"};
  cr_assert_eq(keel_metrics_add(m, &spec), KEEL_OK);
  keel_dashboard *d = dash(NULL, 0, m); /* history 4, first sample taken */
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("dash.test.tick", &ev), KEEL_OK);
  for (int i = 1; i <= 6; i++) {
    keel_tel_execute(ev, NULL, 0, NULL, 0);
    cr_assert_eq(keel_dashboard_sample(d), KEEL_OK);
  }
  keel_heap h;
  keel_heap_init(&h);
  keel_term series = field(snap(d, "metrics", KEEL_NONE, &h), "series");
  keel_term row = find_row(series, "name", "dash.test.tick.count");
  cr_assert_neq(row, KEEL_NONE);
  keel_term pts = field(row, "points");
  cr_assert_eq(list_len(pts), 4); /* the ring keeps the last 4 */
  double v[4];
  size_t i = 0;
  for (keel_term l = pts; keel_is_cons(l); l = keel_tl(l))
    cr_assert_eq(keel_get_number(keel_hd(keel_tl(keel_hd(l))), &v[i++]),
                 KEEL_OK);
  cr_assert(v[0] == 3 && v[1] == 4 && v[2] == 5 && v[3] == 6);
  cr_assert_neq(find_row(series, "name", "keel.vm.process_count"), KEEL_NONE);
  keel_heap_destroy(&h);
  keel_dashboard_destroy(d);
  keel_metrics_destroy(m);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(dashboard_snapshot, presence_is_the_list_fed_in) {
  start_node(1, 0);
  keel_dashboard *d = dash(NULL, 0, NULL);
  keel_heap h;
  keel_heap_init(&h);
  keel_term l = keel_build(&h, "[#{id => <<\"u1\">>, page => <<\"home\">>}, "
                               "#{id => <<\"u2\">>, page => <<\"tables\">>}]");
  cr_assert_eq(keel_dashboard_set_presence(d, l), KEEL_OK);
  keel_term p = snap(d, "presence", KEEL_NONE, &h);
  cr_assert_eq(int_field(p, "count"), 2);
  cr_assert(keel_eq_exact(field(p, "users"), l));
  cr_assert_eq(keel_dashboard_set_presence(d, keel_atom("x")), KEEL_EINVAL);
  keel_heap_destroy(&h);
  keel_dashboard_destroy(d);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
