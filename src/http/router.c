/*
 * router.c - method + path routing with :name and *rest parameters.
 *
 * Patterns are split into segments once, when added; matching walks the
 * request path segment by segment without copying. Routes are few (tens),
 * so a linear scan in insertion order is both simplest and fast.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_internal.h"
#include "keel/error.h"

typedef struct route_seg {
  char *text; /* literal text, or the parameter's name */
  size_t len; /* of a literal */
  char kind;  /* 'l' literal, ':' one segment, '*' the rest */
} route_seg;

typedef struct route {
  char method[16]; /* "*" for any */
  route_seg *segs;
  size_t nsegs;
  keel_http_handler_fn fn;
  const keel_ws_handler *ws;
  void *arg;
  bool stream; /* the body is read by the handler (keel_http_read_body) */
} route;

struct keel_http_router {
  route *routes;
  size_t n, cap;
  void **kept; /* freed with the router */
  size_t nkept;
  bool has_stream; /* some route streams its request bodies */
};

keel_http_router *keel_http_router_new(void) {
  return calloc(1, sizeof(keel_http_router));
}

static void route_free(route *rt) {
  for (size_t i = 0; i < rt->nsegs; i++)
    free(rt->segs[i].text);
  free(rt->segs);
}

void keel_http_router_free(keel_http_router *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n; i++)
    route_free(&r->routes[i]);
  for (size_t i = 0; i < r->nkept; i++)
    free(r->kept[i]);
  free(r->kept);
  free(r->routes);
  free(r);
}

/* Splits a pattern such as "/a/:b" into segments. KEEL_OK, KEEL_EINVAL,
 * KEEL_ENOMEM. */
static int parse_pattern(const char *pattern, route *rt) {
  if (pattern == NULL || pattern[0] != '/')
    return KEEL_EINVAL;
  size_t nparams = 0;
  for (const char *p = pattern + 1; *p != '\0';) {
    const char *end = strchr(p, '/');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    route_seg s = {.kind = 'l', .len = len};
    if (len > 0 && (p[0] == ':' || p[0] == '*')) {
      s.kind = p[0];
      p++;
      len--;
      if (len == 0 || ++nparams > KEEL_HTTP_MAX_PARAMS ||
          (s.kind == '*' && end != NULL))
        return KEEL_EINVAL;
    }
    route_seg *segs = realloc(rt->segs, (rt->nsegs + 1) * sizeof *segs);
    if (segs == NULL)
      return KEEL_ENOMEM;
    rt->segs = segs;
    s.text = strndup(p, len);
    if (s.text == NULL)
      return KEEL_ENOMEM;
    rt->segs[rt->nsegs++] = s;
    if (end == NULL)
      break;
    p = end + 1;
  }
  return KEEL_OK;
}

static int add(keel_http_router *r, const char *method, const char *pattern,
               keel_http_handler_fn fn, const keel_ws_handler *ws, void *arg,
               bool stream) {
  if (r == NULL || method == NULL || strlen(method) >= sizeof(route){0}.method)
    return KEEL_EINVAL;
  route rt = {.fn = fn, .ws = ws, .arg = arg, .stream = stream};
  strcpy(rt.method, method);
  int rc = parse_pattern(pattern, &rt);
  if (rc == KEEL_OK && r->n == r->cap) {
    size_t cap = r->cap != 0 ? 2 * r->cap : 8;
    route *routes = realloc(r->routes, cap * sizeof *routes);
    if (routes == NULL)
      rc = KEEL_ENOMEM;
    else {
      r->routes = routes;
      r->cap = cap;
    }
  }
  if (rc != KEEL_OK) {
    route_free(&rt);
    return rc;
  }
  r->routes[r->n++] = rt;
  r->has_stream |= stream;
  return KEEL_OK;
}

int keel__http_router_keep(keel_http_router *r, void *p) {
  void **k = realloc(r->kept, (r->nkept + 1) * sizeof *k);
  if (k == NULL)
    return KEEL_ENOMEM;
  r->kept = k;
  r->kept[r->nkept++] = p;
  return KEEL_OK;
}

int keel_http_route(keel_http_router *r, const char *method,
                    const char *pattern, keel_http_handler_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  return add(r, method, pattern, fn, NULL, arg, false);
}

int keel_http_route_stream(keel_http_router *r, const char *method,
                           const char *pattern, keel_http_handler_fn fn,
                           void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  return add(r, method, pattern, fn, NULL, arg, true);
}

bool keel__http_router_streams(const keel_http_router *r) {
  return r->has_stream;
}

int keel_http_route_ws(keel_http_router *r, const char *pattern,
                       const keel_ws_handler *h, void *arg) {
  if (h == NULL)
    return KEEL_EINVAL;
  return add(r, "GET", pattern, NULL, h, arg, false);
}

/* Matches path against rt's segments, binding parameters into m. */
static bool path_match(const route *rt, const char *path, size_t len,
                       keel__http_match *m) {
  m->nparams = 0;
  size_t i = 1; /* past the leading '/' */
  if (len == 0 || path[0] != '/')
    return false;
  if (rt->nsegs == 0)
    return len == 1;
  for (size_t k = 0; k < rt->nsegs; k++) {
    const route_seg *s = &rt->segs[k];
    if (s->kind == '*') {
      size_t at = i <= len ? i : len;
      m->params[m->nparams++] = (keel_http_param){s->text, path + at, len - at};
      return true;
    }
    if (i > len)
      return false;
    size_t end = i;
    while (end < len && path[end] != '/')
      end++;
    size_t sl = end - i;
    if (s->kind == ':') {
      if (sl == 0)
        return false;
      m->params[m->nparams++] = (keel_http_param){s->text, path + i, sl};
    } else if (sl != s->len || memcmp(path + i, s->text, sl) != 0) {
      return false;
    }
    i = end + 1;
  }
  return i > len; /* every byte of the path was matched */
}

int keel__http_route_find(const keel_http_router *r, const char *method,
                          const char *path, size_t path_len,
                          keel__http_match *m) {
  bool path_seen = false;
  if (strcmp(method, "HEAD") == 0)
    method = "GET";
  for (size_t k = 0; k < r->n; k++) {
    const route *rt = &r->routes[k];
    if (!path_match(rt, path, path_len, m))
      continue;
    path_seen = true;
    if (strcmp(rt->method, "*") != 0 && strcmp(rt->method, method) != 0)
      continue;
    m->fn = rt->fn;
    m->ws = rt->ws;
    m->arg = rt->arg;
    m->stream = rt->stream;
    return 200;
  }
  return path_seen ? 405 : 404;
}
