/*
 * dash_internal.h - the dashboard's state shared by its sources (sampler
 * in dashboard.c, pages in pages.c and metrics_page.c, protocol in
 * session.c).
 */
#ifndef KEEL_DASH_INTERNAL_H
#define KEEL_DASH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/dashboard.h"
#include "keel/runtime.h"

/* Reductions of one process at a sample. */
typedef struct dash_red {
  uint64_t pid; /* local pid number */
  uint64_t reds;
} dash_red;

/* One sample of the node. */
typedef struct dash_sample {
  uint64_t t_ns;    /* monotonic */
  uint64_t wall_ms; /* realtime, for chart axes */
  keel_sched_time st[KEEL_MAX_SCHEDULERS];
  unsigned nsched;
  dash_red *reds; /* sorted by pid */
  size_t nreds;
  uint64_t messages_sent, reds_total;
  uint64_t proc_memory; /* control blocks and heaps of every process */
} dash_sample;

/* The ring of one metric series. */
typedef struct dash_series {
  char *id;   /* name and tags, unique */
  char *name; /* dotted metric name */
  char *tags; /* "k=v,k=v", may be empty */
  const char *kind;
  double *val;
  uint64_t *at;   /* wall ms */
  size_t head, n; /* oldest at head, n <= history */
} dash_series;

#define DASH_MAX_SERIES 256u
#define DASH_MAX_RESTARTS 1024u

typedef struct dash_restart {
  uint64_t key; /* hash of {Supervisor, Id} */
  uint64_t count;
} dash_restart;

struct keel_dashboard {
  pthread_mutex_t mu; /* everything below */
  keel_metrics *metrics;
  unsigned history, interval_ms;
  keel_term roots[KEEL_DASHBOARD_MAX_ROOTS]; /* immediates */
  size_t nroots;
  char node_name[64];
  dash_sample prev, cur; /* cur.t_ns == 0: no sample yet */
  dash_series *series;
  size_t nseries;
  keel_heap pres_heap;
  keel_term presence;
  keel_heap sup_heap; /* the supervision page as last walked by a sample */
  keel_term sup_tree; /* KEEL_NONE until then */
  dash_restart restarts[DASH_MAX_RESTARTS];
  size_t nrestarts;
  uint64_t restarts_total;
  keel_heap tel_heap;
  keel_term tel_id;
};

/* Takes a sample when the last one is older than interval (call under
 * d->mu). */
int keel__dash_sample_locked(keel_dashboard *d, bool force);

/* Reductions of pid in a sample (0 when absent). */
uint64_t keel__dash_reds(const dash_sample *s, uint64_t pid);

/* Restarts counted for {sup, id}. Call under d->mu. */
uint64_t keel__dash_restarts(const keel_dashboard *d, keel_term sup,
                             keel_term id);

/* Page builders (called with d->mu held; the supervision page without).
 * processes and process release d->mu while they wait for a process's
 * answer (queue lengths) and take it again before returning. */
int keel__dash_home(keel_dashboard *d, keel_heap *h, keel_term *out);
int keel__dash_processes(keel_dashboard *d, keel_term params, keel_heap *h,
                         keel_term *out);
int keel__dash_process(keel_dashboard *d, keel_term params, keel_heap *h,
                       keel_term *out);
int keel__dash_tables(keel_dashboard *d, keel_heap *h, keel_term *out);
int keel__dash_metrics(keel_dashboard *d, keel_heap *h, keel_term *out);
int keel__dash_supervision(keel_dashboard *d, keel_heap *h, keel_term *out);
/* The supervision page for a caller that cannot wait (a handler process:
 * which_children is a call): the tree cached by the last sample taken by a
 * thread or fiber, or a live walk when the caller may wait. */
int keel__dash_supervision_any(keel_dashboard *d, keel_heap *h, keel_term *out);
/* Walks the tree into the cache (no lock held; takes d->mu to swap). */
void keel__dash_supervision_cache(keel_dashboard *d);
/* Samples the metric rings (under d->mu). */
int keel__dash_metrics_sample(keel_dashboard *d);
void keel__dash_metrics_free(keel_dashboard *d);

/* The key of a page that every session showing it with these params
 * renders alike, written to key (size n): true for home, supervision,
 * tables, metrics, presence, and processes without a selected pid (the
 * key names its sort, direction and limit, so equivalent params share
 * it); false for the pages of private state (process, a selection) and
 * for bad params (the session reports those). */
bool keel__dash_shared_key(const char *page, keel_term params, char *key,
                           size_t n);

/* Shared rendering (web.c): with it on, a session that joins a shared
 * page (or whose event keeps it on one) renders nothing itself: it
 * records page and params, and its owner attaches the socket to the
 * page's renderer. Its tick then does nothing. */
void keel__dash_session_share(keel_dashboard_session *s, bool on);
/* Whether the session shows a shared page now (its key in key, size n),
 * and in *gen a counter that moves whenever that changes (a join, new
 * params, a move to a private page). */
bool keel__dash_session_shared(const keel_dashboard_session *s, char *key,
                               size_t n, uint64_t *gen);
/* The page and params of the session (params KEEL_NONE: none; owned by
 * the session until its next input). */
keel_term keel__dash_session_params(const keel_dashboard_session *s);

/* A param of a map with atom or binary keys: KEEL_OK or KEEL_ENOENT. */
int keel__dash_param(keel_term params, const char *key, keel_term *out);
/* The text of an atom or binary param into buf (NUL-terminated); false
 * when it is neither or too long. */
bool keel__dash_text(keel_term t, char *buf, size_t size);
/* A binary of printed t (pids as <0.N.0>). KEEL_NONE on out-of-memory. */
keel_term keel__dash_printed(keel_heap *h, keel_term t);
/* A map from n atom-named keys. KEEL_NONE on out-of-memory. */
keel_term keel__dash_map(keel_heap *h, size_t n, const char *const *keys,
                         const keel_term *vals);
/* The local pid a pid term or printed pid ("<0.12.0>") names, or
 * KEEL_NONE. */
keel_term keel__dash_parse_pid(keel_term t);

#endif /* KEEL_DASH_INTERNAL_H */
