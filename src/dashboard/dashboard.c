/*
 * dashboard.c - the dashboard object: samples of the node (rates are
 * computed between the last two), the presence list, supervisor restart
 * counts from telemetry, page dispatch and the home page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dashboard/dash_internal.h"
#include "keel/clock.h"
#include "keel/ets.h"
#include "keel/telemetry.h"
#include "keel/version.h"

/* ---- small term helpers -------------------------------------------------- */

int keel__dash_param(keel_term params, const char *key, keel_term *out) {
  if (params == KEEL_NONE || !keel_is_map(params))
    return KEEL_ENOENT;
  if (keel_map_get(params, keel_atom(key), out) == KEEL_OK)
    return KEEL_OK;
  size_t n = strlen(key);
  for (size_t i = 0; i < keel_map_size(params); i++) {
    keel_term k, v;
    keel_map_at(params, i, &k, &v);
    size_t len;
    if (keel_is_binary(k)) {
      const uint8_t *p = keel_binary_data(k, &len);
      if (len == n && memcmp(p, key, n) == 0) {
        *out = v;
        return KEEL_OK;
      }
    }
  }
  return KEEL_ENOENT;
}

bool keel__dash_text(keel_term t, char *buf, size_t size) {
  const char *p;
  size_t len;
  if (keel_is_atom(t))
    p = keel_atom_name(t, &len);
  else if (keel_is_binary(t))
    p = (const char *)keel_binary_data(t, &len);
  else
    return false;
  if (len >= size)
    return false;
  memcpy(buf, p, len);
  buf[len] = '\0';
  return true;
}

keel_term keel__dash_printed(keel_heap *h, keel_term t) {
  char buf[256];
  int n = keel_print(buf, sizeof buf, t, NULL);
  if (n < 0)
    return keel_binary(h, "?", 1);
  return keel_binary(h, buf,
                     (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

keel_term keel__dash_map(keel_heap *h, size_t n, const char *const *keys,
                         const keel_term *vals) {
  keel_term ks[32];
  if (n > 32)
    return KEEL_NONE;
  for (size_t i = 0; i < n; i++) {
    if (vals[i] == KEEL_NONE)
      return KEEL_NONE;
    ks[i] = keel_atom(keys[i]);
  }
  return keel_map_from(h, n, ks, vals);
}

/* ---- restarts ----------------------------------------------------------- */

static uint64_t restart_key(keel_term sup, keel_term id) {
  return keel_hash(sup) * 0x9e3779b97f4a7c15u ^ keel_hash(id);
}

static int on_restart(const keel_tel_event *ev, const keel_tel_measure *m,
                      size_t nm, const keel_tel_meta *md, size_t nmd,
                      void *config) {
  (void)ev;
  (void)m;
  (void)nm;
  keel_dashboard *d = config;
  keel_term sup = KEEL_NONE, id = KEEL_NONE;
  keel_tel_meta_get(md, nmd, keel_atom("supervisor"), &sup);
  keel_tel_meta_get(md, nmd, keel_atom("id"), &id);
  uint64_t key = restart_key(sup, id);
  pthread_mutex_lock(&d->mu);
  d->restarts_total++;
  size_t i = 0;
  while (i < d->nrestarts && d->restarts[i].key != key)
    i++;
  if (i == d->nrestarts && i < DASH_MAX_RESTARTS)
    d->restarts[d->nrestarts++] = (dash_restart){key, 0};
  if (i < d->nrestarts)
    d->restarts[i].count++;
  pthread_mutex_unlock(&d->mu);
  return 0;
}

uint64_t keel__dash_restarts(const keel_dashboard *d, keel_term sup,
                             keel_term id) {
  uint64_t key = restart_key(sup, id);
  for (size_t i = 0; i < d->nrestarts; i++)
    if (d->restarts[i].key == key)
      return d->restarts[i].count;
  return 0;
}

/* ---- create / destroy --------------------------------------------------- */

static int attach_restarts(keel_dashboard *d) {
  keel_tel_event *ev;
  int rc = keel_tel_event_parse("keel.supervisor.child_restart", &ev);
  if (rc != KEEL_OK)
    return rc;
  char name[64];
  snprintf(name, sizeof name, "keel_dashboard_%p", (void *)d);
  d->tel_id = keel_build(&d->tel_heap, "{keel_dashboard, ~b}", name);
  if (d->tel_id == KEEL_NONE)
    return KEEL_ENOMEM;
  return keel_tel_attach(d->tel_id, &ev, 1, on_restart, d);
}

int keel_dashboard_create(const keel_dashboard_opts *opts,
                          keel_dashboard **out) {
  keel_dashboard_opts o = opts ? *opts : (keel_dashboard_opts){0};
  if (out == NULL || o.nsup_roots > KEEL_DASHBOARD_MAX_ROOTS ||
      (o.nsup_roots > 0 && o.sup_roots == NULL))
    return KEEL_EINVAL;
  for (size_t i = 0; i < o.nsup_roots; i++)
    if (!keel_is_local_pid(o.sup_roots[i]) && !keel_is_atom(o.sup_roots[i]))
      return KEEL_EINVAL;
  keel_dashboard *d = calloc(1, sizeof *d);
  if (d == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&d->mu, NULL);
  d->metrics = o.metrics;
  d->history = o.history ? o.history : KEEL_DASHBOARD_HISTORY;
  d->interval_ms = o.interval_ms ? o.interval_ms : KEEL_DASHBOARD_INTERVAL_MS;
  if (o.nsup_roots > 0)
    memcpy(d->roots, o.sup_roots, o.nsup_roots * sizeof(keel_term));
  d->nroots = o.nsup_roots;
  snprintf(d->node_name, sizeof d->node_name, "%s",
           o.node_name ? o.node_name : "keel");
  keel_heap_init(&d->pres_heap);
  keel_heap_init(&d->sup_heap);
  d->sup_tree = KEEL_NONE;
  keel_heap_init(&d->tel_heap);
  d->presence = KEEL_NIL;
  int rc = attach_restarts(d);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&d->tel_heap);
    d->tel_id = KEEL_NONE;
    keel_dashboard_destroy(d);
    return rc;
  }
  if (keel_node_schedulers() > 0) {
    pthread_mutex_lock(&d->mu);
    keel__dash_sample_locked(d, true);
    pthread_mutex_unlock(&d->mu);
  }
  *out = d;
  return KEEL_OK;
}

void keel_dashboard_destroy(keel_dashboard *d) {
  if (d == NULL)
    return;
  if (d->tel_id != KEEL_NONE) {
    keel_tel_detach(d->tel_id);
    keel_heap_destroy(&d->tel_heap);
  }
  keel__dash_metrics_free(d);
  free(d->prev.reds);
  free(d->cur.reds);
  keel_heap_destroy(&d->pres_heap);
  keel_heap_destroy(&d->sup_heap);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

/* ---- samples ------------------------------------------------------------ */

static int cmp_red(const void *a, const void *b) {
  uint64_t x = ((const dash_red *)a)->pid, y = ((const dash_red *)b)->pid;
  return x < y ? -1 : x > y;
}

uint64_t keel__dash_reds(const dash_sample *s, uint64_t pid) {
  size_t lo = 0, hi = s->nreds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->reds[mid].pid < pid)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < s->nreds && s->reds[lo].pid == pid ? s->reds[lo].reds : 0;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Fills s with the reductions of every live process. */
static int sample_reds(dash_sample *s) {
  size_t n = keel_processes(NULL, 0) + 64;
  keel_term *pids = malloc(n * sizeof *pids);
  dash_red *reds = malloc(n * sizeof *reds);
  if (pids == NULL || reds == NULL) {
    free(pids);
    free(reds);
    return KEEL_ENOMEM;
  }
  size_t got = keel_processes(pids, n), k = 0;
  got = got < n ? got : n;
  s->reds_total = 0;
  s->proc_memory = 0;
  for (size_t i = 0; i < got; i++) {
    keel_process_info_t pi;
    if (keel_process_info_ex(pids[i],
                             KEEL_PINFO_NO_QUEUE | KEEL_PINFO_NO_SYMBOL,
                             &pi) != KEEL_OK)
      continue;
    reds[k++] = (dash_red){keel_pid_local_number(pids[i]), pi.reductions};
    s->reds_total += pi.reductions;
    s->proc_memory += pi.memory;
  }
  free(pids);
  qsort(reds, k, sizeof *reds, cmp_red);
  free(s->reds);
  s->reds = reds;
  s->nreds = k;
  return KEEL_OK;
}

int keel__dash_sample_locked(keel_dashboard *d, bool force) {
  uint64_t now = keel_monotonic_ns();
  if (!force && d->cur.t_ns != 0 &&
      now - d->cur.t_ns < (uint64_t)d->interval_ms * 1000000u)
    return KEEL_OK;
  keel_node_stats ns;
  if (keel_node_stats_get(&ns) != KEEL_OK)
    return KEEL_ESTATE;
  /* The current sample becomes the previous one; its reds array is
   * reused for the new sample. */
  dash_red *spare = d->prev.reds;
  d->prev = d->cur;
  d->cur.reds = spare;
  d->cur.nreds = 0;
  d->cur.t_ns = now;
  d->cur.wall_ms = wall_ms();
  d->cur.messages_sent = ns.messages_sent;
  int n = keel_sched_utilisation(d->cur.st, KEEL_MAX_SCHEDULERS);
  d->cur.nsched = n > 0 ? (unsigned)n : 0;
  int rc = sample_reds(&d->cur);
  if (rc == KEEL_OK)
    rc = keel__dash_metrics_sample(d);
  return rc;
}

int keel_dashboard_sample(keel_dashboard *d) {
  if (d == NULL)
    return KEEL_EINVAL;
  pthread_mutex_lock(&d->mu);
  int rc = keel__dash_sample_locked(d, true);
  pthread_mutex_unlock(&d->mu);
  keel__dash_supervision_cache(d);
  return rc;
}

int keel_dashboard_set_presence(keel_dashboard *d, keel_term list) {
  if (d == NULL || !keel_is_list(list))
    return KEEL_EINVAL;
  keel_heap nh;
  keel_heap_init(&nh);
  keel_term copy = keel_term_copy(&nh, list);
  if (copy == KEEL_NONE) {
    keel_heap_destroy(&nh);
    return KEEL_ENOMEM;
  }
  pthread_mutex_lock(&d->mu);
  keel_heap old = d->pres_heap;
  d->pres_heap = nh;
  d->presence = copy;
  pthread_mutex_unlock(&d->mu);
  keel_heap_destroy(&old);
  return KEEL_OK;
}

/* ---- home --------------------------------------------------------------- */

static double rate(uint64_t a, uint64_t b, uint64_t dt_ns) {
  return dt_ns == 0 || b < a ? 0.0 : (double)(b - a) * 1e9 / (double)dt_ns;
}

static keel_term schedulers_term(keel_dashboard *d, keel_heap *h,
                                 size_t *shared) {
  size_t rq[KEEL_MAX_SCHEDULERS] = {0};
  keel_sched_run_queues(rq, KEEL_MAX_SCHEDULERS, shared);
  keel_term rows[KEEL_MAX_SCHEDULERS];
  unsigned n = d->cur.nsched;
  for (unsigned i = 0; i < n; i++) {
    const keel_sched_time *a = &d->prev.st[i], *b = &d->cur.st[i];
    double u = 0.0;
    if (d->prev.t_ns != 0 && i < d->prev.nsched && b->total_ns > a->total_ns)
      u = (double)(b->busy_ns - a->busy_ns) /
          (double)(b->total_ns - a->total_ns);
    u = u < 0 ? 0 : u > 1 ? 1 : u;
    static const char *const k[] = {"id", "utilisation", "run_queue"};
    keel_term v[] = {keel_small(i + 1), keel_float(h, u),
                     keel_small((int64_t)rq[i])};
    rows[i] = keel__dash_map(h, 3, k, v);
    if (rows[i] == KEEL_NONE)
      return KEEL_NONE;
  }
  return keel_list_from(h, n, rows);
}

/* Resident set size of the OS process, in bytes (0 when unknown). */
static uint64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size = 0, res = 0;
  if (f == NULL)
    return 0;
  if (fscanf(f, "%llu %llu", &size, &res) != 2)
    res = 0;
  fclose(f);
  return (uint64_t)res * 4096u;
}

static keel_term memory_term(keel_heap *h, uint64_t procs, int64_t msgs) {
  uint64_t tables = 0;
  keel_heap th;
  keel_heap_init(&th);
  keel_term all;
  if (keel_ets_all(&th, &all) == KEEL_OK)
    for (; keel_is_cons(all); all = keel_tl(all)) {
      keel_ets_tab t;
      if (keel_ets_tab_from_term(keel_hd(all), &t) == KEEL_OK) {
        int64_t w = keel_ets_memory(t);
        tables += w > 0 ? (uint64_t)w * 8u : 0;
      }
    }
  keel_heap_destroy(&th);
  static const char *const k[] = {"processes", "tables",   "binaries",
                                  "atoms",     "messages", "total"};
  keel_term v[] = {keel_uint(h, procs),
                   keel_uint(h, tables),
                   keel_uint(h, keel_binary_memory(NULL)),
                   keel_uint(h, keel_atom_memory()),
                   keel_small(msgs > 0 ? msgs : 0),
                   keel_uint(h, rss_bytes())};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

int keel__dash_home(keel_dashboard *d, keel_heap *h, keel_term *out) {
  keel_node_stats ns;
  if (keel_node_stats_get(&ns) != KEEL_OK)
    return KEEL_ESTATE;
  uint64_t dt = d->prev.t_ns ? d->cur.t_ns - d->prev.t_ns : 0;
  size_t shared = 0;
  keel_term scheds = schedulers_term(d, h, &shared);
  static const char *const k[] = {
      "page",          "node",          "version",        "uptime_ms",
      "schedulers",    "run_queue",     "process_count",  "process_limit",
      "spawned",       "memory",        "messages_per_s", "reductions_per_s",
      "messages_sent", "ets_tables",    "restarts",       "atoms",
      "atom_limit",    "long_schedules"};
  keel_term v[] = {
      keel_atom("home"),
      keel_binary(h, d->node_name, strlen(d->node_name)),
      keel_binary(h, keel_version(), strlen(keel_version())),
      keel_uint(h, d->cur.nsched ? d->cur.st[0].total_ns / 1000000u : 0),
      scheds,
      keel_small((int64_t)shared),
      keel_uint(h, ns.processes),
      keel_uint(h, KEEL_DEFAULT_MAX_PROCESSES),
      keel_uint(h, ns.spawned),
      memory_term(h, d->cur.proc_memory, ns.messages_live),
      keel_float(h, rate(d->prev.messages_sent, d->cur.messages_sent, dt)),
      keel_float(h, rate(d->prev.reds_total, d->cur.reds_total, dt)),
      keel_uint(h, ns.messages_sent),
      keel_uint(h, keel_ets_count()),
      keel_uint(h, d->restarts_total),
      keel_uint(h, keel_atom_count()),
      keel_uint(h, keel_atom_limit()),
      keel_uint(h, ns.long_schedules)};
  *out = keel__dash_map(h, sizeof k / sizeof *k, k, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- dispatch ----------------------------------------------------------- */

int keel_dashboard_page_snapshot(keel_dashboard *d, const char *page,
                                 keel_term params, keel_heap *h,
                                 keel_term *out) {
  if (d == NULL || page == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (keel_node_schedulers() == 0)
    return KEEL_ESTATE;
  if (strcmp(page, "supervision") == 0)
    return keel__dash_supervision_any(d, h, out); /* not under mu */
  pthread_mutex_lock(&d->mu);
  int rc = keel__dash_sample_locked(d, false);
  if (rc != KEEL_OK)
    ;
  else if (strcmp(page, "home") == 0)
    rc = keel__dash_home(d, h, out);
  else if (strcmp(page, "processes") == 0)
    rc = keel__dash_processes(d, params, h, out);
  else if (strcmp(page, "process") == 0)
    rc = keel__dash_process(d, params, h, out);
  else if (strcmp(page, "tables") == 0)
    rc = keel__dash_tables(d, h, out);
  else if (strcmp(page, "metrics") == 0)
    rc = keel__dash_metrics(d, h, out);
  else if (strcmp(page, "presence") == 0) {
    keel_term l = keel_term_copy(h, d->presence);
    size_t n = 0;
    keel_list_length(l, &n);
    static const char *const k[] = {"page", "count", "users"};
    keel_term v[] = {keel_atom("presence"), keel_small((int64_t)n), l};
    *out = keel__dash_map(h, 3, k, v);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  } else
    rc = KEEL_ENOENT;
  pthread_mutex_unlock(&d->mu);
  return rc;
}
