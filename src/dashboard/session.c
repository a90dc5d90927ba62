/*
 * session.c - the protocol of one page (docs/dashboard.md): join, events,
 * the periodic diff, and the JSON HTTP API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "keel/json.h"
#include "keel/signals.h"

/* Params the pages know, in the normalised params map. */
static const char *const param_names[] = {"sort", "dir", "limit", "pid"};
#define NPARAMS 4

/* params with atom keys, only the known ones, built in h (KEEL_NONE stays
 * KEEL_NONE). Values that are null remove the key. */
static keel_term normalise(keel_heap *h, keel_term params, const char *set,
                           keel_term value) {
  keel_term ks[NPARAMS], vs[NPARAMS];
  size_t n = 0;
  for (size_t i = 0; i < NPARAMS; i++) {
    keel_term v;
    bool have = keel__dash_param(params, param_names[i], &v) == KEEL_OK;
    if (set != NULL && strcmp(set, param_names[i]) == 0) {
      v = value;
      have = true;
    }
    if (!have || v == keel_atom("null"))
      continue;
    ks[n] = keel_atom(param_names[i]);
    vs[n++] = keel_term_copy(h, v);
    if (vs[n - 1] == KEEL_NONE)
      return KEEL_NONE;
  }
  return keel_map_from(h, n, ks, vs);
}

static keel_term reply_map(keel_heap *h, const char *key, const char *text) {
  keel_term k = keel_atom(key);
  keel_term v = text ? keel_binary(h, text, strlen(text)) : keel_atom("true");
  return keel_map_from(h, 1, &k, &v);
}

static int kill_event(keel_term event, keel_heap *h, keel_term *reply) {
  keel_term p, pid = KEEL_NONE;
  if (keel__dash_param(event, "pid", &p) == KEEL_OK)
    pid = keel__dash_parse_pid(p);
  keel_process_info_t pi;
  if (pid == KEEL_NONE)
    *reply = reply_map(h, "error", "not a pid");
  else if (keel_process_info(pid, &pi) != KEEL_OK)
    *reply = reply_map(h, "error", "no such process");
  else if (keel_exit(pid, keel_atom("kill")) != KEEL_OK)
    *reply = reply_map(h, "error", "exit failed");
  else
    *reply = reply_map(h, "ok", NULL);
  return *reply == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

int keel_dashboard_handle_event(keel_dashboard *d, keel_term event,
                                keel_term params, keel_heap *h,
                                keel_term *params_out, keel_term *reply) {
  if (d == NULL || h == NULL || params_out == NULL || reply == NULL)
    return KEEL_EINVAL;
  char name[16];
  keel_term ev, v;
  if (!keel_is_map(event) || keel__dash_param(event, "event", &ev) != KEEL_OK ||
      !keel__dash_text(ev, name, sizeof name))
    return KEEL_EBADARG;
  *params_out = params;
  if (strcmp(name, "kill") == 0)
    return kill_event(event, h, reply);
  const char *set = NULL;
  keel_term value = keel_atom("null");
  if (strcmp(name, "sort") == 0 &&
      keel__dash_param(event, "by", &value) == KEEL_OK) {
    set = "sort";
  } else if (strcmp(name, "limit") == 0 &&
             keel__dash_param(event, "limit", &value) == KEEL_OK) {
    set = "limit";
  } else if (strcmp(name, "select") == 0) {
    set = "pid";
    keel__dash_param(event, "pid", &value);
  } else {
    *reply = reply_map(h, "error", "unknown event");
    return *reply == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  keel_term np = normalise(h, params, set, value);
  if (np != KEEL_NONE && strcmp(set, "sort") == 0 &&
      keel__dash_param(event, "dir", &v) == KEEL_OK)
    np = normalise(h, np, "dir", v);
  *reply = reply_map(h, "ok", NULL);
  if (np == KEEL_NONE || *reply == KEEL_NONE)
    return KEEL_ENOMEM;
  *params_out = np;
  return KEEL_OK;
}

/* ---- sessions ----------------------------------------------------------- */

struct keel_dashboard_session {
  keel_dashboard *d;
  char page[16];  /* "" until joined */
  keel_heap heap; /* params and last */
  keel_term params, last;
  int last_err;
  bool share;   /* shared pages are rendered by the owner's renderers */
  bool shared;  /* showing one now: key names it */
  uint64_t gen; /* moves when shared or key changes */
  char key[96];
};

void keel__dash_session_share(keel_dashboard_session *s, bool on) {
  if (s != NULL)
    s->share = on;
}

bool keel__dash_session_shared(const keel_dashboard_session *s, char *key,
                               size_t n, uint64_t *gen) {
  *gen = s->gen;
  if (!s->shared)
    return false;
  snprintf(key, n, "%s", s->key);
  return true;
}

keel_term keel__dash_session_params(const keel_dashboard_session *s) {
  return s->params;
}

int keel_dashboard_session_create(keel_dashboard *d,
                                  keel_dashboard_session **out) {
  if (d == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_dashboard_session *s = calloc(1, sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->d = d;
  keel_heap_init(&s->heap);
  s->params = s->last = KEEL_NONE;
  *out = s;
  return KEEL_OK;
}

void keel_dashboard_session_destroy(keel_dashboard_session *s) {
  if (s == NULL)
    return;
  keel_heap_destroy(&s->heap);
  free(s);
}

const char *keel_dashboard_session_page(const keel_dashboard_session *s) {
  return s != NULL && s->page[0] ? s->page : NULL;
}

/* Appends {key: t, more...} as JSON; pairs of (name, term). */
static int frame(keel_buf *out, size_t n, const char *const *keys,
                 const keel_term *vals) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term ks[4], vs[4];
  size_t m = 0;
  for (size_t i = 0; i < n && i < 4; i++)
    if (vals[i] != KEEL_NONE) {
      ks[m] = keel_atom(keys[i]);
      vs[m++] = vals[i];
    }
  keel_term t = keel_map_from(&h, m, ks, vs);
  int rc = t == KEEL_NONE ? KEEL_ENOMEM : keel_json_encode(out, t, NULL);
  keel_heap_destroy(&h);
  return rc;
}

/* A frame of one key. */
static int frame1(keel_buf *out, const char *key, keel_term val) {
  const char *keys[1] = {key};
  keel_term vals[1] = {val};
  return frame(out, 1, keys, vals);
}

static int error_frame(keel_buf *out, int code) {
  keel_heap h;
  keel_heap_init(&h);
  const char *e = keel_strerror(code);
  keel_term v = keel_binary(&h, e, strlen(e));
  int rc = v == KEEL_NONE ? KEEL_ENOMEM : frame1(out, "error", v);
  keel_heap_destroy(&h);
  return rc;
}

/* Takes a new snapshot with params; full: send it whole, else a diff when
 * it changed. reply (may be KEEL_NONE) goes in the same frame. */
/* refresh of a session whose page is rendered by a shared renderer: it
 * only records the page's params (a new target when full or when the key
 * changed) and sends the reply. */
static int refresh_shared(keel_dashboard_session *s, const char *key,
                          keel_term params, bool full, keel_term reply,
                          keel_buf *out) {
  if (full || !s->shared || strcmp(key, s->key) != 0) {
    keel_heap nh;
    keel_heap_init(&nh);
    keel_term np =
        params == KEEL_NONE ? KEEL_NONE : keel_term_copy(&nh, params);
    if (params != KEEL_NONE && np == KEEL_NONE) {
      keel_heap_destroy(&nh);
      return KEEL_ENOMEM;
    }
    keel_heap_destroy(&s->heap);
    s->heap = nh;
    s->params = np;
    s->last = KEEL_NONE;
    s->last_err = 0;
    s->shared = true;
    snprintf(s->key, sizeof s->key, "%s", key);
    s->gen++;
  }
  if (reply == KEEL_NONE)
    return KEEL_OK;
  static const char *const k[] = {"page", "reply"};
  keel_term v[] = {keel_atom(s->page), reply};
  return frame(out, 2, k, v);
}

static int refresh(keel_dashboard_session *s, keel_term params, bool full,
                   keel_term reply, keel_buf *out) {
  char key[96];
  if (s->share && keel__dash_shared_key(s->page, params, key, sizeof key))
    return refresh_shared(s, key, params, full, reply, out);
  if (s->shared) { /* to a private page */
    s->shared = false;
    s->gen++;
  }
  keel_heap nh, dh;
  keel_heap_init(&nh);
  keel_heap_init(&dh);
  keel_term np = params == KEEL_NONE ? KEEL_NONE : keel_term_copy(&nh, params);
  keel_term snap = KEEL_NONE, diff = KEEL_NONE;
  int rc = keel_dashboard_page_snapshot(s->d, s->page, np, &nh, &snap);
  if (rc == KEEL_OK && !full && s->last != KEEL_NONE) {
    rc = keel_dashboard_diff(s->last, snap, &dh, &diff);
    if (rc == KEEL_OK && keel_dashboard_diff_empty(diff))
      diff = KEEL_NONE;
  }
  if (rc == KEEL_OK) {
    bool whole = full || s->last == KEEL_NONE;
    static const char *const k[] = {"page", "full", "diff", "reply"};
    keel_term v[] = {keel_atom(s->page), whole ? snap : KEEL_NONE, diff, reply};
    if (whole || diff != KEEL_NONE || reply != KEEL_NONE)
      rc = frame(out, 4, k, v);
    keel_heap_destroy(&s->heap);
    s->heap = nh;
    s->params = np;
    s->last = snap;
    s->last_err = 0;
  } else {
    /* Reported once in an error frame (again only when it changes);
     * the snapshot's error is returned for the caller to act on. */
    keel_heap_destroy(&nh);
    int err = rc;
    if (full || err != s->last_err)
      rc = error_frame(out, err);
    if (rc == KEEL_OK)
      rc = err;
    s->last_err = err;
  }
  keel_heap_destroy(&dh);
  return rc;
}

static const char *const pages[] = {"home",        "processes", "process",
                                    "supervision", "tables",    "metrics",
                                    "presence"};

static int join(keel_dashboard_session *s, keel_term msg, keel_term page,
                keel_buf *out) {
  char name[16];
  size_t i = 0;
  if (keel__dash_text(page, name, sizeof name))
    while (i < sizeof pages / sizeof *pages && strcmp(pages[i], name) != 0)
      i++;
  if (i == sizeof pages / sizeof *pages || !keel__dash_text(page, name, 16))
    return error_frame(out, KEEL_ENOENT);
  keel_heap ph;
  keel_heap_init(&ph);
  keel_term p = KEEL_NONE;
  int rc = KEEL_OK;
  if (keel__dash_param(msg, "params", &p) == KEEL_OK) {
    p = keel_is_map(p) ? normalise(&ph, p, NULL, KEEL_NONE) : KEEL_NONE;
    rc = p == KEEL_NONE ? KEEL_EBADARG : KEEL_OK;
  }
  if (rc == KEEL_OK) {
    memcpy(s->page, name, strlen(name) + 1);
    s->last = KEEL_NONE;
    rc = refresh(s, p, true, KEEL_NONE, out);
    if (rc < 0 && rc != KEEL_ENOMEM && rc != KEEL_EINVAL) {
      s->page[0] = '\0'; /* reported in an error frame; not joined */
      rc = KEEL_OK;
    }
  } else {
    rc = error_frame(out, rc);
  }
  keel_heap_destroy(&ph);
  return rc;
}

static int event(keel_dashboard_session *s, keel_term msg, keel_buf *out) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term np, reply;
  int rc = keel_dashboard_handle_event(s->d, msg, s->params, &h, &np, &reply);
  if (rc == KEEL_EBADARG)
    rc = error_frame(out, rc);
  else if (rc == KEEL_OK && s->page[0] == '\0') {
    rc = frame1(out, "reply", reply);
  } else if (rc == KEEL_OK) {
    bool changed =
        !(np == s->params || (np != KEEL_NONE && s->params != KEEL_NONE &&
                              keel_eq_exact(np, s->params)));
    rc = refresh(s, np, changed, reply, out);
    if (rc < 0 && rc != KEEL_ENOMEM)
      rc = KEEL_OK;
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_dashboard_session_input(keel_dashboard_session *s, const char *text,
                                 size_t len, keel_buf *out) {
  if (s == NULL || out == NULL || (text == NULL && len > 0))
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term msg, v;
  int rc = keel_json_decode(&h, text ? text : "", len, &msg);
  if (rc != KEEL_OK || !keel_is_map(msg))
    rc = rc == KEEL_ENOMEM ? rc : error_frame(out, KEEL_EPARSE);
  else if (keel__dash_param(msg, "join", &v) == KEEL_OK)
    rc = join(s, msg, v, out);
  else if (keel__dash_param(msg, "event", &v) == KEEL_OK)
    rc = event(s, msg, out);
  else if (keel__dash_param(msg, "ping", &v) == KEEL_OK) {
    rc = frame1(out, "pong", v);
  } else
    rc = error_frame(out, KEEL_EBADARG);
  keel_heap_destroy(&h);
  return rc;
}

int keel_dashboard_session_tick(keel_dashboard_session *s, keel_buf *out) {
  if (s == NULL || out == NULL)
    return KEEL_EINVAL;
  if (s->page[0] == '\0' || s->shared)
    return KEEL_OK;
  int rc = refresh(s, s->params, false, KEEL_NONE, out);
  return rc == KEEL_ENOMEM || rc == KEEL_EINVAL ? rc : KEEL_OK;
}

/* ---- HTTP API ----------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into buf (size > n); returns the length. */
static size_t pct_decode(const char *s, size_t n, char *buf) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
        hexval(s[i + 2]) >= 0) {
      buf[w++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      buf[w++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  buf[w] = '\0';
  return w;
}

static keel_term query_value(keel_heap *h, const char *v, size_t n) {
  bool digits = n > 0 && n < 18;
  for (size_t i = 0; i < n && digits; i++)
    digits = v[i] >= '0' && v[i] <= '9';
  return digits ? keel_small(strtoll(v, NULL, 10)) : keel_binary(h, v, n);
}

static keel_term parse_query(keel_heap *h, const char *q) {
  keel_term params = keel_map_new(h);
  while (q != NULL && *q && params != KEEL_NONE) {
    const char *amp = strchr(q, '&');
    size_t n = amp ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', n);
    if (eq != NULL && n < 256) {
      char k[256], v[256];
      size_t kn = pct_decode(q, (size_t)(eq - q), k);
      size_t vn = pct_decode(eq + 1, n - (size_t)(eq - q) - 1, v);
      params =
          keel_map_put(h, params, keel_binary(h, k, kn), query_value(h, v, vn));
    }
    q = amp ? amp + 1 : NULL;
  }
  return params;
}

int keel_dashboard_api(keel_dashboard *d, const char *page, const char *query,
                       keel_buf *out) {
  if (d == NULL || page == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term params = parse_query(&h, query), snap;
  int rc = params == KEEL_NONE
               ? KEEL_ENOMEM
               : keel_dashboard_page_snapshot(d, page, params, &h, &snap);
  if (rc == KEEL_OK)
    rc = keel_json_encode(out, snap, NULL);
  keel_heap_destroy(&h);
  return rc;
}
