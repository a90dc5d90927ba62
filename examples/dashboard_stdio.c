/* The dashboard's C side driven over stdin/stdout, without a network: a
 * node with a small supervised workload whose dashboard sessions are fed
 * by lines. It shows what an HTTP/WebSocket server has to do, and lets
 * the browser test (tests/dashboard/browser, --bridge) run the real UI
 * against real snapshots by routing the page's requests through it.
 *
 * Input lines:   open <id>            a WebSocket to /live opened
 *                msg <id> <json>      a text frame from it
 *                close <id>           it closed
 *                get <id> <path>      an HTTP GET (assets, /api/<page>?q,
 *                                     /metrics)
 * Output lines:  {"id":<id>,"frame":<json>}     a frame to send
 *                {"id":<id>,"status":N,"type":"...","body":"..."}
 * Every 500 ms each session ticks. End of input stops the node.
 * Build: part of the examples (example_dashboard_stdio). */
#include <keel/dashboard.h>
#include <keel/ets.h>
#include <keel/json.h>
#include <keel/metrics.h>
#include <keel/runtime.h>
#include <keel/signals.h>
#include <keel/supervisor.h>
#include <keel/telemetry.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64

static keel_tel_event *work_done;

/* A worker: handles a tick every 100 ms (a receive timeout), emits a
 * telemetry event, and crashes now and then so the supervisor restarts
 * it. Not static, so the dashboard shows its name. */
void demo_worker(keel_proc *self, void *arg);
void demo_worker(keel_proc *self, void *arg) {
  uintptr_t n = (uintptr_t)arg, round = 0;
  for (;;) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, 100, &m) != KEEL_ETIMEDOUT)
      continue;
    for (int i = 0; i < 20; i++) /* some message traffic */
      keel_send(keel_self(self), keel_small(i));
    keel_tel_meta md = {keel_atom("worker"), keel_small((int64_t)n)};
    keel_tel_execute(work_done, NULL, 0, &md, 1);
    if (++round % (50 + 17 * n) == 0) {
      keel_stop(self, keel_atom("crash"));
      return;
    }
  }
}

static int start_worker(keel_proc *sup, void *arg, keel_term extra,
                        keel_term *pid) {
  (void)sup;
  (void)extra;
  keel_spawn_opts o = {.link = true};
  return keel_spawn_fiber(demo_worker, arg, &o, pid);
}

static keel_term start_workload(void) {
  static keel_sup_child_spec cs[3];
  const char *ids[3] = {"ingest", "transform", "publish"};
  for (uintptr_t i = 0; i < 3; i++)
    cs[i] = (keel_sup_child_spec){
        .id = keel_atom(ids[i]), .start = start_worker, .arg = (void *)i};
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.intensity = 1000;
  s.children = cs;
  s.nchildren = 3;
  s.name = keel_atom("demo_sup");
  keel_term sup = KEEL_NONE;
  if (keel_sup_start_link(&s, &sup) != KEEL_OK)
    fprintf(stderr, "dashboard_stdio: the supervisor did not start\n");
  return sup;
}

typedef struct conn {
  int id;
  keel_dashboard_session *s;
} conn;

static conn conns[MAX_CONNS];

static void put_frame(int id, const keel_buf *b) {
  if (b->len > 0)
    printf("{\"id\":%d,\"frame\":%.*s}\n", id, (int)b->len,
           (const char *)b->data);
}

static void put_http(int id, int status, const char *type, const void *body,
                     size_t len) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t = keel_build(&h,
                           "#{id => ~i, status => ~i, type => ~b, "
                           "body => ~B}",
                           id, status, type, body, len);
  keel_buf b;
  keel_buf_init(&b);
  if (t != KEEL_NONE && keel_json_encode(&b, t, NULL) == KEEL_OK)
    printf("%.*s\n", (int)b.len, (const char *)b.data);
  keel_buf_free(&b);
  keel_heap_destroy(&h);
}

static void get(keel_dashboard *d, keel_metrics *m, int id, char *path) {
  const uint8_t *data;
  size_t len;
  const char *type;
  keel_buf b;
  keel_buf_init(&b);
  if (strncmp(path, "/api/", 5) == 0) {
    char *q = strchr(path, '?');
    if (q != NULL)
      *q++ = '\0';
    int rc = keel_dashboard_api(d, path + 5, q, &b);
    int status = rc == KEEL_OK                             ? 200
                 : rc == KEEL_EBADARG                      ? 400
                 : rc == KEEL_ENOENT || rc == KEEL_ENOPROC ? 404
                                                           : 500;
    put_http(id, status, "application/json", b.data, b.len);
  } else if (strcmp(path, "/metrics") == 0) {
    keel_metrics_prometheus(m, &b);
    put_http(id, 200, "text/plain; version=0.0.4", b.data, b.len);
  } else if (keel_dashboard_asset(path, &data, &len, &type) == KEEL_OK) {
    put_http(id, 200, type, data, len);
  } else {
    put_http(id, 404, "text/plain", "not found", 9);
  }
  keel_buf_free(&b);
}

/* The presence feed: one entry per open connection. */
static void feed_presence(keel_dashboard *d) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term l = KEEL_NIL;
  for (int i = MAX_CONNS - 1; i >= 0; i--)
    if (conns[i].s != NULL) {
      const char *page = keel_dashboard_session_page(conns[i].s);
      char id[32];
      snprintf(id, sizeof id, "conn-%d", conns[i].id);
      l = keel_cons(
          &h, keel_build(&h, "#{id => ~b, page => ~b}", id, page ? page : "-"),
          l);
    }
  keel_dashboard_set_presence(d, l);
  keel_heap_destroy(&h);
}

static conn *find(int id) {
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].s != NULL && conns[i].id == id)
      return &conns[i];
  return NULL;
}

static void line(keel_dashboard *d, keel_metrics *m, char *l) {
  int id, off = 0;
  char verb[8];
  if (sscanf(l, "%7s %d %n", verb, &id, &off) < 2)
    return;
  char *rest = l + off;
  conn *c = find(id);
  keel_buf b;
  keel_buf_init(&b);
  if (strcmp(verb, "open") == 0 && c == NULL) {
    for (int i = 0; i < MAX_CONNS; i++)
      if (conns[i].s == NULL) {
        if (keel_dashboard_session_create(d, &conns[i].s) == KEEL_OK)
          conns[i].id = id;
        break;
      }
  } else if (strcmp(verb, "msg") == 0 && c != NULL) {
    keel_dashboard_session_input(c->s, rest, strlen(rest), &b);
    put_frame(id, &b);
  } else if (strcmp(verb, "close") == 0 && c != NULL) {
    keel_dashboard_session_destroy(c->s);
    c->s = NULL;
  } else if (strcmp(verb, "get") == 0) {
    get(d, m, id, rest);
  }
  keel_buf_free(&b);
  feed_presence(d);
  fflush(stdout);
}

static void tick(keel_dashboard *d) {
  keel_dashboard_sample(d);
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].s != NULL) {
      keel_buf b;
      keel_buf_init(&b);
      keel_dashboard_session_tick(conns[i].s, &b);
      put_frame(conns[i].id, &b);
      keel_buf_free(&b);
    }
  fflush(stdout);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reads stdin lines and ticks every 500 ms until end of input. */
static void serve(keel_dashboard *d, keel_metrics *m) {
  static char buf[1 << 16];
  size_t have = 0;
  uint64_t next = now_ms() + KEEL_DASHBOARD_INTERVAL_MS;
  for (;;) {
    uint64_t t = now_ms();
    if (t >= next) {
      tick(d);
      next = t + KEEL_DASHBOARD_INTERVAL_MS;
    }
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (poll(&p, 1, (int)(next - t)) <= 0)
      continue;
    ssize_t n = read(0, buf + have, sizeof buf - 1 - have);
    if (n <= 0)
      return;
    have += (size_t)n;
    char *nl;
    while ((nl = memchr(buf, '\n', have)) != NULL) {
      *nl = '\0';
      line(d, m, buf);
      have -= (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, have);
    }
    if (have == sizeof buf - 1)
      have = 0; /* an overlong line is dropped */
  }
}

int main(void) {
  keel_node_opts o = {.schedulers = 2};
  if (keel_node_start(&o) != KEEL_OK ||
      keel_tel_event_parse("demo.work.done", &work_done) != KEEL_OK)
    return 1;
  keel_metrics *m;
  keel_metrics_create(&m);
  static const char *const tags[] = {"worker"};
  keel_metric_spec spec = {.type = KEEL_METRIC_COUNTER,
                           .name = "demo.work.done.count",
                           .tags = tags,
                           .ntags = 1};
  keel_metrics_add(m, &spec);
  keel_term sup = start_workload();
  keel_ets_opts to = {.access = KEEL_ETS_PUBLIC, .name = keel_atom("sessions")};
  keel_ets_tab tab;
  keel_ets_new(&to, &tab);
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < 100; i++)
    keel_ets_insert(tab, keel_build(&h, "{~i, <<\"session\">>}", i));
  keel_heap_destroy(&h);
  keel_term root = keel_atom("demo_sup");
  keel_dashboard_opts dopts = {.metrics = m,
                               .sup_roots = &root,
                               .nsup_roots = 1,
                               .node_name = "demo@127.0.0.1"};
  keel_dashboard *d;
  if (keel_dashboard_create(&dopts, &d) != KEEL_OK)
    return 1;
  serve(d, m);
  for (int i = 0; i < MAX_CONNS; i++)
    keel_dashboard_session_destroy(conns[i].s);
  keel_dashboard_destroy(d);
  if (sup != KEEL_NONE)
    keel_sup_stop(sup);
  keel_metrics_destroy(m);
  keel_ets_delete_all_tables();
  keel_node_stop();
  return 0;
}
