/*
 * pages.c - the processes, process, tables and supervision pages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "keel/ets.h"
#include "keel/signals.h"
#include "keel/supervisor.h"

/* ---- processes ---------------------------------------------------------- */

typedef enum sort_col {
  COL_MEMORY,
  COL_REDUCTIONS,
  COL_QUEUE,
  COL_NAME,
  COL_PID
} sort_col;

static const char *const col_names[] = {"memory", "reductions",
                                        "message_queue_len", "name", "pid"};

typedef struct prow {
  keel_process_info_t pi;
  uint64_t reds; /* over the last interval */
  const char *name;
  size_t name_len;
} prow;

typedef struct pquery {
  sort_col col;
  bool asc;
  size_t limit;
} pquery;

static int parse_query(keel_term params, pquery *q) {
  *q = (pquery){COL_MEMORY, false, KEEL_DASHBOARD_ROWS};
  keel_term v;
  char buf[32];
  if (keel__dash_param(params, "sort", &v) == KEEL_OK) {
    if (!keel__dash_text(v, buf, sizeof buf))
      return KEEL_EBADARG;
    size_t i = 0;
    while (i < 5 && strcmp(buf, col_names[i]) != 0)
      i++;
    if (i == 5)
      return KEEL_EBADARG;
    q->col = (sort_col)i;
    q->asc = q->col == COL_NAME || q->col == COL_PID;
  }
  if (keel__dash_param(params, "dir", &v) == KEEL_OK) {
    if (!keel__dash_text(v, buf, sizeof buf) ||
        (strcmp(buf, "asc") != 0 && strcmp(buf, "desc") != 0))
      return KEEL_EBADARG;
    q->asc = buf[0] == 'a';
  }
  if (keel__dash_param(params, "limit", &v) == KEEL_OK) {
    int64_t n;
    if (keel_get_int64(v, &n) != KEEL_OK || n < 1 ||
        n > KEEL_DASHBOARD_MAX_ROWS)
      return KEEL_EBADARG;
    q->limit = (size_t)n;
  }
  return KEEL_OK;
}

static int cmp_u64(uint64_t a, uint64_t b) {
  return a < b ? -1 : a > b;
}

static int cmp_name(const prow *a, const prow *b) {
  size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
  int c = n ? memcmp(a->name, b->name, n) : 0;
  return c ? c : cmp_u64(a->name_len, b->name_len);
}

static int cmp_col(const prow *a, const prow *b, sort_col col) {
  switch (col) {
  case COL_MEMORY:
    return cmp_u64(a->pi.memory, b->pi.memory);
  case COL_REDUCTIONS:
    return cmp_u64(a->reds, b->reds);
  case COL_QUEUE:
    return cmp_u64(a->pi.message_queue_len, b->pi.message_queue_len);
  case COL_NAME:
    return cmp_name(a, b);
  case COL_PID:
    break;
  }
  return 0;
}

static _Thread_local pquery sort_q;

static int cmp_rows(const void *x, const void *y) {
  const prow *a = x, *b = y;
  int c = cmp_col(a, b, sort_q.col);
  if (!sort_q.asc)
    c = -c;
  if (c == 0) /* ties by pid, always ascending: a stable order */
    c = cmp_u64(keel_pid_local_number(a->pi.pid),
                keel_pid_local_number(b->pi.pid));
  return c;
}

static keel_term fn_name(keel_heap *h, const keel_process_info_t *pi) {
  if (pi->entry_name != NULL)
    return keel_binary(h, pi->entry_name, strlen(pi->entry_name));
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%p", pi->entry);
  return keel_binary(h, buf, (size_t)n);
}

static keel_term name_term(keel_heap *h, keel_term name) {
  size_t len = 0;
  const char *s = keel_is_atom(name) && name != keel_atom("undefined")
                      ? keel_atom_name(name, &len)
                      : "";
  return keel_binary(h, s, len);
}

/* A queue length left unknown by keel_process_info (the caller cannot
 * wait for the process's answer: a handler process) becomes the length
 * the process published at the end of its last run. */
static void queue_fill(keel_process_info_t *pi) {
  size_t n;
  if (pi->message_queue_len == SIZE_MAX &&
      keel_process_queue_len(pi->pid, &n) == KEEL_OK)
    pi->message_queue_len = n;
}

/* A queue length, or null when unknown (the process died meanwhile). */
static keel_term queue_term(keel_heap *h, size_t len) {
  return len == SIZE_MAX ? keel_atom("null") : keel_uint(h, len);
}

static keel_term process_row(keel_heap *h, const prow *r) {
  keel_term pid = keel__dash_printed(h, r->pi.pid);
  static const char *const k[] = {"id",
                                  "pid",
                                  "name",
                                  "current_function",
                                  "memory",
                                  "reductions",
                                  "message_queue_len",
                                  "status",
                                  "kind"};
  keel_term v[] = {
      pid,
      pid,
      name_term(h, r->pi.registered_name),
      fn_name(h, &r->pi),
      keel_uint(h, r->pi.memory),
      keel_uint(h, r->reds),
      queue_term(h, r->pi.message_queue_len),
      keel_atom(r->pi.status == KEEL_PROC_RUNNABLE ? "runnable" : "waiting"),
      keel_atom(r->pi.fiber ? "fiber" : "handler")};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

/* Every live process's row, read without the parts in skip
 * (KEEL_PINFO_*); *n receives the count. */
static prow *collect_rows(keel_dashboard *d, unsigned skip, size_t *n) {
  size_t cap = keel_processes(NULL, 0) + 64;
  keel_term *pids = malloc(cap * sizeof *pids);
  prow *rows = malloc(cap * sizeof *rows);
  if (pids == NULL || rows == NULL) {
    free(pids);
    free(rows);
    return NULL;
  }
  size_t got = keel_processes(pids, cap), k = 0;
  got = got < cap ? got : cap;
  for (size_t i = 0; i < got; i++) {
    prow *r = &rows[k];
    if (keel_process_info_ex(pids[i], skip, &r->pi) != KEEL_OK)
      continue;
    uint64_t num = keel_pid_local_number(pids[i]);
    uint64_t a = keel__dash_reds(&d->prev, num);
    uint64_t b = keel__dash_reds(&d->cur, num);
    r->reds = b > a ? b - a : 0;
    r->name = "";
    r->name_len = 0;
    if (keel_is_atom(r->pi.registered_name) &&
        r->pi.registered_name != keel_atom("undefined"))
      r->name = keel_atom_name(r->pi.registered_name, &r->name_len);
    k++;
  }
  free(pids);
  *n = k;
  return rows;
}

bool keel__dash_shared_key(const char *page, keel_term params, char *key,
                           size_t n) {
  static const char *const shared[] = {"home", "supervision", "tables",
                                       "metrics", "presence"};
  for (size_t i = 0; i < sizeof shared / sizeof *shared; i++)
    if (strcmp(page, shared[i]) == 0)
      return snprintf(key, n, "%s", page) < (int)n;
  keel_term v;
  pquery q;
  if (strcmp(page, "processes") != 0 ||
      keel__dash_param(params, "pid", &v) == KEEL_OK ||
      parse_query(params, &q) != KEEL_OK)
    return false;
  return snprintf(key, n, "processes:%s:%s:%zu", col_names[q.col],
                  q.asc ? "asc" : "desc", q.limit) < (int)n;
}

static keel_term detail_term(keel_heap *h, keel_term pid);

int keel__dash_processes(keel_dashboard *d, keel_term params, keel_heap *h,
                         keel_term *out) {
  pquery q;
  int rc = parse_query(params, &q);
  if (rc != KEEL_OK)
    return rc;
  /* Every process is read cheaply; only the rows shown are asked for
   * their queue length (unless it is the sort key) and function name. */
  size_t n;
  prow *rows = collect_rows(d, KEEL_PINFO_NO_SYMBOL | KEEL_PINFO_NO_QUEUE, &n);
  if (rows == NULL)
    return KEEL_ENOMEM;
  /* Asking a process for its queue length waits for its answer: never
   * with d->mu held, which the process may need (a telemetry handler of
   * this dashboard, say) before it can answer. */
  pthread_mutex_unlock(&d->mu);
  /* Sorting by queue reads every published length (no round trip). */
  for (size_t i = 0; q.col == COL_QUEUE && i < n; i++)
    queue_fill(&rows[i].pi);
  sort_q = q; /* thread-local; qsort does not switch fibers */
  qsort(rows, n, sizeof *rows, cmp_rows);
  size_t m = n < q.limit ? n : q.limit;
  for (size_t i = 0; i < m; i++) {
    keel_process_info_t full;
    if (keel_process_info(rows[i].pi.pid, &full) == KEEL_OK) {
      rows[i].pi.entry_name = full.entry_name;
      rows[i].pi.message_queue_len = full.message_queue_len;
    }
    queue_fill(&rows[i].pi);
  }
  keel_term *terms = malloc((m ? m : 1) * sizeof *terms);
  rc = terms ? KEEL_OK : KEEL_ENOMEM;
  for (size_t i = 0; i < m && rc == KEEL_OK; i++) {
    terms[i] = process_row(h, &rows[i]);
    rc = terms[i] == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  free(rows);
  if (rc != KEEL_OK) {
    free(terms);
    pthread_mutex_lock(&d->mu); /* the caller unlocks */
    return rc;
  }
  keel_term sel = keel_atom("null"), p;
  if (keel__dash_param(params, "pid", &p) == KEEL_OK)
    sel = detail_term(h, p);
  pthread_mutex_lock(&d->mu); /* the caller unlocks */
  static const char *const k[] = {"page",  "total", "sort",    "dir",
                                  "limit", "rows",  "selected"};
  keel_term v[] = {keel_atom("processes"),
                   keel_uint(h, n),
                   keel_atom(col_names[q.col]),
                   keel_atom(q.asc ? "asc" : "desc"),
                   keel_small((int64_t)q.limit),
                   m ? keel_list_from(h, m, terms) : KEEL_NIL,
                   sel};
  free(terms);
  *out = keel__dash_map(h, sizeof k / sizeof *k, k, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- one process -------------------------------------------------------- */

/* The local pid a printed pid (binary or atom text) names, or KEEL_NONE. */
static keel_term parse_pid(keel_term t) {
  char buf[64];
  if (keel_is_local_pid(t))
    return t;
  if (!keel__dash_text(t, buf, sizeof buf))
    return KEEL_NONE;
  uint64_t words[16];
  keel_heap tmp;
  keel_heap_init_fixed(&tmp, words, 16);
  keel_term pid;
  int rc = keel_parse(&tmp, buf, strlen(buf), &pid, NULL);
  keel_heap_destroy(&tmp);
  return rc == KEEL_OK && keel_is_local_pid(pid) ? pid : KEEL_NONE;
}

keel_term keel__dash_parse_pid(keel_term t) {
  return parse_pid(t);
}

/* The printed pids of list l (at most KEEL_DASHBOARD_RELATIONS). */
static keel_term printed_list(keel_heap *h, keel_term l) {
  if (!keel_is_cons(l))
    return KEEL_NIL;
  keel_term rest = printed_list(h, keel_tl(l));
  return keel_cons(h, keel__dash_printed(h, keel_hd(l)), rest);
}

/* The link, monitor and monitored-by pid lists of pid (empty when the
 * caller cannot wait for them, or the process is gone meanwhile). */
static void relation_lists(keel_heap *h, keel_term pid, keel_term out[3]) {
  keel_process_relations_t r;
  out[0] = out[1] = out[2] = KEEL_NIL;
  if (keel_process_relations(pid, KEEL_DASHBOARD_RELATIONS, h, &r) != KEEL_OK)
    return;
  out[0] = printed_list(h, r.links);
  out[1] = printed_list(h, r.monitors);
  out[2] = printed_list(h, r.monitored_by);
}

/* The detail map of pid (a printed pid); alive false when it is dead. */
static keel_term detail_term(keel_heap *h, keel_term p) {
  keel_term pid = parse_pid(p);
  keel_process_info_t pi;
  if (pid == KEEL_NONE || keel_process_info(pid, &pi) != KEEL_OK) {
    static const char *const k[] = {"id", "alive"};
    keel_term v[] = {keel_is_local_pid(p) ? keel__dash_printed(h, p)
                     : keel_is_binary(p)  ? p
                                          : keel_binary(h, "", 0),
                     keel_atom("false")};
    return keel__dash_map(h, 2, k, v);
  }
  queue_fill(&pi);
  keel_term id = keel__dash_printed(h, pid);
  static const char *const k[] = {"id",
                                  "pid",
                                  "alive",
                                  "name",
                                  "status",
                                  "kind",
                                  "current_function",
                                  "memory",
                                  "heap_bytes",
                                  "reductions",
                                  "message_queue_len",
                                  "links",
                                  "monitors",
                                  "monitored_by",
                                  "link_pids",
                                  "monitor_pids",
                                  "monitored_by_pids"};
  keel_term rel[3];
  relation_lists(h, pid, rel);
  keel_term v[] = {
      id,
      id,
      keel_atom("true"),
      name_term(h, pi.registered_name),
      keel_atom(pi.status == KEEL_PROC_RUNNABLE ? "runnable" : "waiting"),
      keel_atom(pi.fiber ? "fiber" : "handler"),
      fn_name(h, &pi),
      keel_uint(h, pi.memory),
      keel_uint(h, pi.heap_bytes),
      keel_uint(h, pi.reductions),
      queue_term(h, pi.message_queue_len),
      keel_uint(h, pi.links),
      keel_uint(h, pi.monitors),
      keel_uint(h, pi.monitored_by),
      rel[0],
      rel[1],
      rel[2]};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

int keel__dash_process(keel_dashboard *d, keel_term params, keel_heap *h,
                       keel_term *out) {
  keel_term p;
  if (keel__dash_param(params, "pid", &p) != KEEL_OK)
    return KEEL_EBADARG;
  keel_term pid = parse_pid(p);
  keel_process_info_t pi;
  if (pid == KEEL_NONE)
    return KEEL_EBADARG;
  pthread_mutex_unlock(&d->mu); /* process_info waits: see processes */
  int rc = KEEL_OK;
  if (keel_process_info(pid, &pi) != KEEL_OK) {
    rc = KEEL_ENOPROC;
  } else {
    static const char *const k[] = {"page", "process"};
    keel_term v[] = {keel_atom("process"), detail_term(h, pid)};
    *out = keel__dash_map(h, 2, k, v);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  pthread_mutex_lock(&d->mu); /* the caller unlocks */
  return rc;
}

/* ---- tables ------------------------------------------------------------- */

static const char *type_name(keel_ets_type t) {
  static const char *const n[] = {"set", "ordered_set", "bag", "duplicate_bag"};
  return (unsigned)t < 4 ? n[t] : "unknown";
}

static const char *access_name(keel_ets_access a) {
  static const char *const n[] = {"protected", "public", "private"};
  return (unsigned)a < 3 ? n[a] : "unknown";
}

static keel_term table_row(keel_heap *h, keel_term tabterm,
                           const keel_ets_info *in) {
  static const char *const k[] = {"id",     "name",  "type",       "size",
                                  "memory", "owner", "protection", "keypos"};
  keel_term v[] = {keel__dash_printed(h, tabterm),
                   in->name != KEEL_NONE ? name_term(h, in->name)
                                         : keel_binary(h, "", 0),
                   keel_atom(type_name(in->type)),
                   keel_uint(h, in->size),
                   keel_uint(h, (uint64_t)in->memory * 8u),
                   in->owner != KEEL_NONE ? keel__dash_printed(h, in->owner)
                                          : keel_binary(h, "", 0),
                   keel_atom(access_name(in->access)),
                   keel_small(in->keypos)};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

int keel__dash_tables(keel_dashboard *d, keel_heap *h, keel_term *out) {
  (void)d;
  keel_heap th;
  keel_heap_init(&th);
  keel_term all, rows = KEEL_NIL;
  size_t n = 0;
  int rc = keel_ets_all(&th, &all);
  for (; rc == KEEL_OK && keel_is_cons(all); all = keel_tl(all)) {
    keel_ets_tab t;
    keel_ets_info in;
    if (keel_ets_tab_from_term(keel_hd(all), &t) != KEEL_OK ||
        keel_ets_info_get(t, &in) != KEEL_OK)
      continue; /* deleted meanwhile */
    keel_term row = table_row(h, keel_hd(all), &in);
    rows = row == KEEL_NONE ? KEEL_NONE : keel_cons(h, row, rows);
    rc = rows == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
    n++;
  }
  keel_heap_destroy(&th);
  if (rc != KEEL_OK)
    return rc;
  static const char *const k[] = {"page", "count", "rows"};
  keel_term v[] = {keel_atom("tables"), keel_small((int64_t)n), rows};
  *out = keel__dash_map(h, 3, k, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- supervision -------------------------------------------------------- */

static keel_term sup_node(keel_dashboard *d, keel_heap *h, keel_term sup,
                          keel_term id, keel_term name, unsigned depth);

static keel_term child_node(keel_dashboard *d, keel_heap *h, keel_term sup,
                            keel_term t, unsigned depth) {
  keel_term id = keel_tuple_get(t, 0), child = keel_tuple_get(t, 1);
  bool is_sup = keel_tuple_get(t, 2) == keel_atom("supervisor");
  pthread_mutex_lock(&d->mu);
  uint64_t restarts = keel__dash_restarts(d, sup, id);
  pthread_mutex_unlock(&d->mu);
  if (is_sup && keel_is_local_pid(child) && depth < KEEL_DASHBOARD_MAX_DEPTH) {
    keel_term n = sup_node(d, h, child, id, KEEL_NONE, depth + 1);
    return n == KEEL_NONE ? n
                          : keel_map_put(h, n, keel_atom("restarts"),
                                         keel_uint(h, restarts));
  }
  keel_term key = id == keel_atom("undefined") ? child : id;
  static const char *const k[] = {"id",   "label",    "pid",
                                  "type", "restarts", "children"};
  keel_term v[] = {
      keel__dash_printed(h, key),   keel__dash_printed(h, id),
      keel__dash_printed(h, child), keel_atom(is_sup ? "supervisor" : "worker"),
      keel_uint(h, restarts),       KEEL_NIL};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

/* The tree below supervisor sup (a local pid). */
static keel_term sup_node(keel_dashboard *d, keel_heap *h, keel_term sup,
                          keel_term id, keel_term name, unsigned depth) {
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term kids, rows = KEEL_NIL, err = KEEL_NONE;
  int rc = keel_sup_which_children(sup, &tmp, &kids);
  if (rc == KEEL_OK) {
    size_t n = 0;
    keel_list_length(kids, &n);
    keel_term *v = malloc((n ? n : 1) * sizeof *v);
    size_t i = 0;
    for (keel_term l = kids; v && keel_is_cons(l); l = keel_tl(l))
      if (keel_is_tuple(keel_hd(l)) && keel_tuple_arity(keel_hd(l)) == 3)
        v[i++] = child_node(d, h, sup, keel_hd(l), depth);
    rows = v ? keel_list_from(h, i, v) : KEEL_NONE;
    free(v);
  } else {
    const char *e = keel_strerror(rc);
    err = keel_binary(h, e, strlen(e));
  }
  keel_heap_destroy(&tmp);
  keel_term label = name != KEEL_NONE ? name : id;
  static const char *const k[] = {"id",       "label",    "pid",  "type",
                                  "restarts", "children", "error"};
  keel_term v[] = {
      keel__dash_printed(h, id == keel_atom("undefined") ? sup : id),
      keel__dash_printed(h, label),
      keel__dash_printed(h, sup),
      keel_atom("supervisor"),
      keel_small(0),
      rows == KEEL_NONE ? KEEL_NIL : rows,
      err != KEEL_NONE ? err : keel_atom("null")};
  return keel__dash_map(h, sizeof k / sizeof *k, k, v);
}

int keel__dash_supervision(keel_dashboard *d, keel_heap *h, keel_term *out) {
  keel_term roots[KEEL_DASHBOARD_MAX_ROOTS];
  size_t n = 0;
  for (size_t i = 0; i < d->nroots; i++) {
    keel_term r = d->roots[i];
    keel_term pid = keel_is_atom(r) ? keel_whereis(r) : r;
    if (!keel_is_local_pid(pid))
      continue; /* not registered now (restarting) */
    roots[n] = sup_node(d, h, pid, r, r, 0);
    if (roots[n] == KEEL_NONE)
      return KEEL_ENOMEM;
    n++;
  }
  static const char *const k[] = {"page", "roots"};
  keel_term v[] = {keel_atom("supervision"), keel_list_from(h, n, roots)};
  if (n == 0)
    v[1] = KEEL_NIL;
  *out = keel__dash_map(h, 2, k, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* Whether the caller may wait for a reply (which_children is a call). */
static bool may_wait(void) {
  keel_proc *self = keel_current();
  return self == NULL || keel_proc_is_fiber(self);
}

void keel__dash_supervision_cache(keel_dashboard *d) {
  if (!may_wait())
    return;
  keel_heap nh;
  keel_heap_init(&nh);
  keel_term tree;
  if (keel__dash_supervision(d, &nh, &tree) != KEEL_OK) {
    keel_heap_destroy(&nh);
    return;
  }
  pthread_mutex_lock(&d->mu);
  keel_heap old = d->sup_heap;
  d->sup_heap = nh;
  d->sup_tree = tree;
  pthread_mutex_unlock(&d->mu);
  keel_heap_destroy(&old);
}

int keel__dash_supervision_any(keel_dashboard *d, keel_heap *h,
                               keel_term *out) {
  if (may_wait())
    return keel__dash_supervision(d, h, out);
  pthread_mutex_lock(&d->mu);
  keel_term t = d->sup_tree;
  int rc = KEEL_OK;
  if (t != KEEL_NONE) {
    *out = keel_term_copy(h, t);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  pthread_mutex_unlock(&d->mu);
  if (t == KEEL_NONE) { /* no sample yet: the roots, without children */
    static const char *const k[] = {"page", "roots"};
    keel_term v[] = {keel_atom("supervision"), KEEL_NIL};
    *out = keel__dash_map(h, 2, k, v);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  return rc;
}
