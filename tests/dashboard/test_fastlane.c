/* The shared page renderers of the web dashboard (keel/dashboard_web.h):
 * WebSocket clients join, switch and leave pages at random while the
 * pages tick; each client rebuilds its page from the full snapshot and
 * the diffs it receives, which must come without a gap or a duplicate
 * (versions), and must equal the renderer's current rendering (a model
 * check). A renderer stops once nobody watches; per-session rendering
 * still works; /api/processes has real queue lengths. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "dashboard/web_internal.h"
#include "http/http_test.h"
#include "keel/dashboard_web.h"
#include "keel/json.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

typedef struct page_key {
  const char *key, *join;
} page_key;

static const page_key keys[] = {
    {"home", "{\"join\":\"home\"}"},
    {"tables", "{\"join\":\"tables\"}"},
    {"metrics", "{\"join\":\"metrics\"}"},
    {"processes:memory:desc:50",
     "{\"join\":\"processes\",\"params\":{\"sort\":\"memory\",\"dir\":"
     "\"desc\",\"limit\":50}}"},
    {"processes:pid:asc:20",
     "{\"join\":\"processes\",\"params\":{\"sort\":\"pid\",\"dir\":\"asc\","
     "\"limit\":20}}"},
};
#define NKEYS (sizeof keys / sizeof *keys)
#define MAXCL 12

/* One browser: its page as rebuilt from the frames. */
typedef struct client {
  int fd;
  size_t key;
  bool have;   /* got the full snapshot of its current join */
  bool rejoin; /* told that its page's renderer ended */
  uint64_t ver;
  keel_heap h;
  keel_term state;
} client;

static struct fixture {
  keel_pubsub ps;
  keel_dashboard *d;
  keel_dashboard_web *w;
  keel_http_router *r;
  keel_http_server *srv;
  uint16_t port;
} fx;

static ws_frame_in frame_buf;

static void fx_start(unsigned nsched, bool per_session) {
  start_node(nsched, 0);
  cr_assert_eq(keel_pubsub_start(NULL, &fx.ps), KEEL_OK);
  cr_assert_eq(keel_dashboard_create(NULL, &fx.d), KEEL_OK);
  keel_dashboard_web_opts o = {
      .dashboard = fx.d, .pubsub = fx.ps, .per_session = per_session};
  cr_assert_eq(keel_dashboard_web_create(&o, &fx.w), KEEL_OK);
  fx.r = keel_http_router_new();
  cr_assert_eq(keel_dashboard_web_mount(fx.w, fx.r), KEEL_OK);
  keel_http_server_opts so = {0};
  cr_assert_eq(keel_http_server_start(&so, fx.r, &fx.srv), KEEL_OK);
  fx.port = keel_http_server_port(fx.srv);
}

static void fx_stop(void) {
  keel_http_server_stop(fx.srv);
  keel_dashboard_web_destroy(fx.w);
  keel_dashboard_destroy(fx.d);
  cr_assert_eq(keel_pubsub_stop(fx.ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(fx.r);
}

static keel_term bget(keel_term m, const char *k) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term v = KEEL_NONE;
  keel_map_get(m, keel_binary(&h, k, strlen(k)), &v);
  keel_heap_destroy(&h);
  return v;
}

static void client_join(client *c, size_t key) {
  c->key = key;
  c->have = false;
  ws_send(c->fd, KEEL__WS_TEXT, true, keys[key].join, strlen(keys[key].join));
}

static void client_open(client *c, size_t key) {
  c->fd = ws_connect(fx.port, "/live");
  c->rejoin = false;
  keel_heap_init(&c->h);
  c->state = KEEL_NONE;
  client_join(c, key);
}

static void client_close(client *c) {
  close(c->fd);
  keel_heap_destroy(&c->h);
}

/* Reads one frame and applies it to the client's page. Before the full
 * snapshot of its join, frames of the page it left are dropped; after it,
 * every frame is the diff to the next version. */
static void client_read(client *c) {
  cr_assert(ws_recv(c->fd, &frame_buf), "the server closed a page");
  cr_assert_eq(frame_buf.op, KEEL__WS_TEXT);
  keel_heap fh;
  keel_heap_init(&fh);
  keel_term f;
  cr_assert_eq(keel_json_decode(&fh, frame_buf.data, frame_buf.len, &f),
               KEEL_OK);
  cr_assert_eq(bget(f, "error"), KEEL_NONE, "%.*s", (int)frame_buf.len,
               frame_buf.data);
  if (bget(f, "rejoin") == keel_atom("true")) {
    c->rejoin = true;
    keel_heap_destroy(&fh);
    return;
  }
  keel_term full = bget(f, "full"), diff = bget(f, "diff");
  int64_t v = -1;
  cr_assert_eq(keel_get_int64(bget(f, "v"), &v), KEEL_OK, "a versioned frame");
  if (full != KEEL_NONE) {
    /* Only the join's snapshot: a page does not resend it. */
    cr_assert(!c->have, "a second full snapshot (version %lld)", (long long)v);
    keel_heap_destroy(&c->h);
    keel_heap_init(&c->h);
    c->state = keel_term_copy(&c->h, full);
    c->ver = (uint64_t)v;
    c->have = true;
  } else if (c->have) {
    cr_assert_neq(diff, KEEL_NONE);
    cr_assert_eq((uint64_t)v, c->ver + 1, "version %lld after %llu: %s",
                 (long long)v, (unsigned long long)c->ver,
                 (uint64_t)v <= c->ver ? "a duplicate" : "a gap");
    keel_heap nh;
    keel_heap_init(&nh);
    keel_term ns;
    cr_assert_eq(keel_dashboard_diff_apply(c->state, diff, &nh, &ns), KEEL_OK);
    ns = keel_term_copy(&nh, ns);
    keel_heap_destroy(&c->h);
    c->h = nh;
    c->state = ns;
    c->ver = (uint64_t)v;
  }
  keel_heap_destroy(&fh);
}

/* The renderer's rendering as a browser decodes it (JSON round trip). */
static keel_term as_json(keel_heap *h, keel_term t) {
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel_json_encode(&b, t, NULL), KEEL_OK);
  keel_term out;
  cr_assert_eq(keel_json_decode(h, (const char *)b.data, b.len, &out), KEEL_OK);
  keel_buf_free(&b);
  return out;
}

/* Reads the client's frames until it is at the renderer's current
 * version, then compares its page with the rendering. */
static void client_sync(client *c) {
  for (int i = 0; i < 100000; i++) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term snap;
    uint64_t ver = 0;
    int rc = keel__dash_web_peek(fx.w, keys[c->key].key, &h, &snap, &ver);
    cr_assert(rc == KEEL_OK || rc == KEEL_ENOENT);
    if (rc == KEEL_OK && c->have && c->ver == ver) {
      cr_assert(keel_eq_exact(as_json(&h, snap), c->state),
                "client at version %llu of %s differs from the renderer",
                (unsigned long long)ver, keys[c->key].key);
      keel_heap_destroy(&h);
      return;
    }
    keel_heap_destroy(&h);
    if (rc == KEEL_OK && c->have)
      cr_assert_lt(c->ver, ver, "a client ahead of its renderer");
    client_read(c); /* the snapshot, or the next diff, is on its way */
  }
  cr_assert_fail("client never caught up");
}

static bool all_left(void *arg) {
  (void)arg;
  (void)keel_dashboard_web_tick(fx.w);
  return keel_dashboard_web_renderers(fx.w) == 0 &&
         keel_dashboard_web_sessions(fx.w) == 0;
}

Test(dashboard_fastlane, random_joins_see_the_renderers_page) {
  srand(7);
  for (size_t k = 0; k < NCONF; k++) {
    fx_start(sched_counts[k], false);
    client cl[MAXCL];
    size_t n = 0, opened = 0;
    for (int round = 0; round < 60; round++) {
      int act = rand() % 4;
      if (n == 0 || (act <= 1 && n < MAXCL)) {
        client_open(&cl[n++], (size_t)rand() % NKEYS);
        opened++;
      } else if (act == 2) {
        client_join(&cl[(size_t)rand() % n], (size_t)rand() % NKEYS);
      } else {
        size_t i = (size_t)rand() % n;
        client_close(&cl[i]);
        cl[i] = cl[--n];
      }
      cr_assert_geq(keel_dashboard_web_tick(fx.w), 0);
      for (size_t i = 0; i < n; i++)
        client_sync(&cl[i]);
      /* One renderer per watched page at most (some may still be
       * stopping after their last socket left). */
      cr_assert_leq(keel_dashboard_web_renderers(fx.w), NKEYS);
    }
    cr_assert_gt(opened, 10);
    while (n > 0)
      client_close(&cl[--n]);
    /* Every renderer stops once its last socket has gone. */
    cr_assert(wait_until(all_left, NULL), "renderers left: %zu",
              keel_dashboard_web_renderers(fx.w));
    keel_heap h;
    keel_heap_init(&h);
    keel_term snap;
    uint64_t ver;
    cr_assert_eq(keel__dash_web_peek(fx.w, "home", &h, &snap, &ver),
                 KEEL_ENOENT);
    keel_heap_destroy(&h);
    fx_stop();
  }
}

/* Many sockets on one page: one renderer, and every socket gets the same
 * versions; a killed renderer is replaced when the pages join again. */
Test(dashboard_fastlane, one_renderer_per_page) {
  for (size_t k = 0; k < NCONF; k++) {
    fx_start(sched_counts[k], false);
    client cl[8];
    for (size_t i = 0; i < 8; i++)
      client_open(&cl[i], 0);
    for (int t = 0; t < 5; t++) {
      cr_assert_geq(keel_dashboard_web_tick(fx.w), 0);
      for (size_t i = 0; i < 8; i++)
        client_sync(&cl[i]);
      cr_assert_eq(keel_dashboard_web_renderers(fx.w), 1);
    }
    /* A killed renderer tells its sockets to join again; the joins start
     * a new one, and the pages go on from its snapshot. */
    keel_term old = keel__dash_web_renderer(fx.w, "home");
    cr_assert_neq(old, KEEL_NONE);
    cr_assert_eq(keel_exit(old, keel_atom("kill")), KEEL_OK);
    for (size_t i = 0; i < 8; i++) {
      while (!cl[i].rejoin)
        client_read(&cl[i]);
      client_join(&cl[i], 0);
    }
    for (int t = 0; t < 3; t++) {
      cr_assert_geq(keel_dashboard_web_tick(fx.w), 0);
      for (size_t i = 0; i < 8; i++)
        client_sync(&cl[i]);
    }
    cr_assert_eq(keel_dashboard_web_renderers(fx.w), 1);
    cr_assert(!keel_eq_exact(keel__dash_web_renderer(fx.w, "home"), old));
    for (size_t i = 0; i < 8; i++)
      client_close(&cl[i]);
    cr_assert(wait_until(all_left, NULL));
    fx_stop();
  }
}

/* With per_session set every page renders its own diffs, unversioned,
 * and no renderer runs. */
Test(dashboard_fastlane, per_session_pages_still_render) {
  fx_start(2, true);
  int fd = ws_connect(fx.port, "/live");
  ws_send(fd, KEEL__WS_TEXT, true, keys[0].join, strlen(keys[0].join));
  bool full = false, diff = false;
  for (int i = 0; i < 1000 && !(full && diff); i++) {
    if (full)
      cr_assert_geq(keel_dashboard_web_tick(fx.w), 0);
    cr_assert(ws_recv(fd, &frame_buf));
    keel_heap h;
    keel_heap_init(&h);
    keel_term f;
    cr_assert_eq(keel_json_decode(&h, frame_buf.data, frame_buf.len, &f),
                 KEEL_OK);
    cr_assert_eq(bget(f, "v"), KEEL_NONE);
    full = full || bget(f, "full") != KEEL_NONE;
    diff = diff || bget(f, "diff") != KEEL_NONE;
    keel_heap_destroy(&h);
  }
  cr_assert(full && diff);
  cr_assert_eq(keel_dashboard_web_renderers(fx.w), 0);
  close(fd);
  cr_assert(wait_until(all_left, NULL));
  fx_stop();
}

static keel_handler_status idle_proc(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)msg, (void)st;
  return KEEL_CONTINUE;
}

/* The next frame of fd, decoded into h. */
static keel_term next_frame(int fd, keel_heap *h) {
  cr_assert(ws_recv(fd, &frame_buf));
  keel_term f;
  cr_assert_eq(keel_json_decode(h, frame_buf.data, frame_buf.len, &f), KEEL_OK);
  return f;
}

/* A page with private state (a process selected on the processes page)
 * is rendered by its own page process, unversioned, with no renderer;
 * going back to a shared page attaches it to one. */
Test(dashboard_fastlane, private_pages_stay_per_session) {
  fx_start(2, false);
  keel_term pid;
  cr_assert_eq(keel_spawn(idle_proc, NULL, NULL, &pid), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term printed = keel__dash_printed(&h, pid);
  size_t plen;
  const uint8_t *pd = keel_binary_data(printed, &plen);
  char join[256];
  int n = snprintf(join, sizeof join,
                   "{\"join\":\"processes\",\"params\":{\"pid\":\"%.*s\"}}",
                   (int)plen, (const char *)pd);
  int fd = ws_connect(fx.port, "/live");
  ws_send(fd, KEEL__WS_TEXT, true, join, (size_t)n);
  keel_term f = next_frame(fd, &h);
  cr_assert_neq(bget(f, "full"), KEEL_NONE);
  cr_assert_eq(bget(f, "v"), KEEL_NONE, "not a shared page");
  cr_assert_neq(bget(bget(f, "full"), "selected"), keel_atom("null"));
  bool diff = false;
  for (int i = 0; i < 50 && !diff; i++) {
    cr_assert_geq(keel_dashboard_web_tick(fx.w), 1, "the page takes ticks");
    cr_assert_eq(keel_dashboard_web_renderers(fx.w), 0);
    /* A ping answers after this tick's frame, if any. */
    ws_send(fd, KEEL__WS_TEXT, true, "{\"ping\":1}", 10);
    for (;;) {
      f = next_frame(fd, &h);
      if (bget(f, "pong") != KEEL_NONE)
        break;
      cr_assert_eq(bget(f, "v"), KEEL_NONE);
      diff = diff || bget(f, "diff") != KEEL_NONE;
    }
  }
  cr_assert(diff, "the private page got its diffs");
  ws_send(fd, KEEL__WS_TEXT, true, keys[0].join, strlen(keys[0].join));
  do
    f = next_frame(fd, &h);
  while (bget(f, "full") == KEEL_NONE);
  cr_assert_neq(bget(f, "v"), KEEL_NONE, "home is shared");
  cr_assert_eq(keel_dashboard_web_renderers(fx.w), 1);
  keel_heap_destroy(&h);
  close(fd);
  cr_assert(wait_until(all_left, NULL));
  fx_stop();
}

static bool only_go(keel_term m, void *arg) {
  (void)arg;
  return m == keel_atom("go");
}

/* Holds every message but 'go' in its queue. */
static void holder(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, only_go, NULL, KEEL_INFINITY, &m);
}

typedef struct qprobe {
  keel_term pid;
  size_t want;
} qprobe;

static bool queue_is(void *arg) {
  qprobe *q = arg;
  size_t n = 0;
  return keel_process_queue_len(q->pid, &n) == KEEL_OK && n == q->want;
}

/* The HTTP API runs in handler processes, which cannot wait for a
 * process's answer: queue lengths are the published ones, not null. */
Test(dashboard_fastlane, api_processes_has_queue_lengths) {
  for (size_t k = 0; k < NCONF; k++) {
    fx_start(sched_counts[k], false);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(holder, NULL, NULL, &pid), KEEL_OK);
    for (int i = 0; i < 25; i++)
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
    qprobe q = {pid, 25};
    cr_assert(wait_until(queue_is, &q));
    int fd = cli_connect(fx.port);
    cli_sends(fd, "GET /api/processes?sort=message_queue_len&limit=5 "
                  "HTTP/1.1\r\nHost: x\r\n\r\n");
    static cli_resp r;
    cr_assert(cli_response(fd, &r));
    cr_assert_eq(r.status, 200);
    keel_heap h;
    keel_heap_init(&h);
    keel_term body, rows;
    cr_assert_eq(keel_json_decode(&h, r.body, r.body_len, &body), KEEL_OK);
    rows = bget(body, "rows");
    cr_assert(keel_is_cons(rows));
    keel_term top = keel_hd(rows);
    keel_term want = keel__dash_printed(&h, pid);
    cr_assert(keel_eq_exact(bget(top, "pid"), want), "%.*s", (int)r.body_len,
              r.body);
    int64_t len = -1;
    cr_assert_eq(keel_get_int64(bget(top, "message_queue_len"), &len), KEEL_OK);
    cr_assert_eq(len, 25);
    for (keel_term l = rows; keel_is_cons(l); l = keel_tl(l))
      cr_assert_neq(bget(keel_hd(l), "message_queue_len"), keel_atom("null"));
    keel_heap_destroy(&h);
    close(fd);
    cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
    fx_stop();
  }
}
