/*
 * http_parse.c - one connection's request reader (see http_parse.h).
 */
#include "http/http_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/error.h"

static keel__http_reader *reader_of(http_parser *p) {
  return (keel__http_reader *)p->data;
}

/* Appends a piece of the head, enforcing the limit. */
static int head_append(keel__http_reader *r, const char *at, size_t n,
                       int over_status) {
  if (r->head.len + n > r->max_head) {
    r->status = over_status;
    return -1;
  }
  if (keel_buf_append(&r->head, at, n) != KEEL_OK) {
    r->status = 503;
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  reader_of(p)->started = true;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  keel__http_reader *r = reader_of(p);
  if (head_append(r, at, n, 414) != 0)
    return -1;
  r->url_len += (uint32_t)n;
  return 0;
}

static int new_header(keel__http_reader *r) {
  if (r->nhdrs == r->cap) {
    uint32_t cap = r->cap != 0 ? 2 * r->cap : 16;
    keel__http_hdr *h = realloc(r->hdrs, cap * sizeof *h);
    if (h == NULL) {
      r->status = 503;
      return -1;
    }
    r->hdrs = h;
    r->cap = cap;
  }
  keel__http_hdr *h = &r->hdrs[r->nhdrs++];
  h->name_off = (uint32_t)r->head.len;
  h->name_len = 0;
  h->value_off = (uint32_t)r->head.len;
  h->value_len = 0;
  r->in_value = false;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  keel__http_reader *r = reader_of(p);
  if ((r->nhdrs == 0 || r->in_value) && new_header(r) != 0)
    return -1;
  if (head_append(r, at, n, 431) != 0)
    return -1;
  keel__http_hdr *h = &r->hdrs[r->nhdrs - 1];
  h->name_len += (uint32_t)n;
  h->value_off = (uint32_t)r->head.len;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  keel__http_reader *r = reader_of(p);
  if (r->nhdrs == 0)
    return -1; /* http-parser never calls it first */
  r->in_value = true;
  if (head_append(r, at, n, 431) != 0)
    return -1;
  r->hdrs[r->nhdrs - 1].value_len += (uint32_t)n;
  return 0;
}

/* Whether the head's Expect field (if any) is exactly 100-continue (a
 * case-insensitive token, optional whitespace around it): 1, 0 when
 * there is none, -1 for any other expectation. */
static int expectation(const keel__http_reader *r) {
  const char *base = (const char *)r->head.data;
  int found = 0;
  for (uint32_t i = 0; i < r->nhdrs; i++) {
    const keel__http_hdr *h = &r->hdrs[i];
    if (h->name_len != 6 || strncasecmp(base + h->name_off, "expect", 6) != 0)
      continue;
    const char *v = base + h->value_off;
    size_t n = h->value_len;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
      v++;
      n--;
    }
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
      n--;
    if (n != 12 || strncasecmp(v, "100-continue", 12) != 0)
      return -1;
    found = 1;
  }
  return found;
}

static int on_headers_complete(http_parser *p) {
  keel__http_reader *r = reader_of(p);
  if (p->http_major == 1 && p->http_minor >= 1) { /* 1.0: ignored */
    int e = expectation(r);
    if (e < 0) {
      r->status = 417;
      return -1;
    }
    r->expect_continue =
        e == 1 &&
        ((p->flags & F_CHUNKED) != 0 ||
         ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > 0));
  }
  if (r->on_head != NULL) {
    int st = r->on_head(r, r->head_ctx);
    if (st != 0) {
      r->status = st;
      return -1;
    }
  }
  if (!r->stream && (p->flags & F_CONTENTLENGTH) != 0 &&
      p->content_length > r->max_body) {
    r->status = 413;
    return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  keel__http_reader *r = reader_of(p);
  r->body_seen = true;
  if (r->discard) {
    r->discarded += n;
    if (r->discarded <= r->max_body)
      return 0;
    r->status = -1; /* too much to drop: close */
    return -1;
  }
  if (!r->stream && r->body.len + n > r->max_body) {
    r->status = 413;
    return -1;
  }
  if (keel_buf_append(&r->body, at, n) != KEEL_OK) {
    r->status = 503;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  keel__http_reader *r = reader_of(p);
  r->complete = true;
  http_parser_pause(p, 1); /* one request at a time */
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void keel__http_reader_init(keel__http_reader *r, size_t max_head,
                            size_t max_body) {
  memset(r, 0, sizeof *r);
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
  r->max_head = max_head;
  r->max_body = max_body;
  keel_buf_init(&r->head);
  keel_buf_init(&r->body);
}

void keel__http_reader_free(keel__http_reader *r) {
  keel_buf_free(&r->head);
  keel_buf_free(&r->body);
  free(r->hdrs);
  free(r->view);
  r->hdrs = NULL;
  r->view = NULL;
  r->nhdrs = r->cap = 0;
}

/* The status for a parser error (callbacks set their own first). */
static int error_status(const keel__http_reader *r) {
  if (r->status != 0)
    return r->status;
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  return e == HPE_HEADER_OVERFLOW ? 431 : 400;
}

size_t keel__http_reader_feed(keel__http_reader *r, const char *data,
                              size_t len) {
  if (r->complete || r->status != 0)
    return 0;
  if (HTTP_PARSER_ERRNO(&r->parser) == HPE_PAUSED)
    http_parser_pause(&r->parser, 0);
  size_t n = http_parser_execute(&r->parser, &settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (r->parser.upgrade) {
    r->complete = true; /* the rest is the new protocol's */
    r->upgrade = true;
  } else if (e != HPE_OK && e != HPE_PAUSED) {
    r->status = error_status(r);
    r->complete = false;
  }
  return n;
}

static int build_view(keel__http_reader *r) {
  free(r->view);
  r->view = NULL;
  if (r->nhdrs == 0)
    return KEEL_OK;
  r->view = malloc(r->nhdrs * sizeof *r->view);
  if (r->view == NULL)
    return KEEL_ENOMEM;
  const char *base = (const char *)r->head.data;
  for (uint32_t i = 0; i < r->nhdrs; i++) {
    const keel__http_hdr *h = &r->hdrs[i];
    r->view[i] = (keel_http_header){base + h->name_off, h->name_len,
                                    base + h->value_off, h->value_len};
  }
  return KEEL_OK;
}

int keel__http_reader_request(keel__http_reader *r, keel_http_request *req) {
  memset(req, 0, sizeof *req);
  const char *url = (const char *)r->head.data;
  struct http_parser_url u;
  http_parser_url_init(&u);
  bool connect = r->parser.method == HTTP_CONNECT;
  if (r->url_len == 0 ||
      http_parser_parse_url(url, r->url_len, connect, &u) != 0)
    return KEEL_EDECODE;
  if ((u.field_set & (1 << UF_PATH)) != 0) {
    req->path = url + u.field_data[UF_PATH].off;
    req->path_len = u.field_data[UF_PATH].len;
  } else {
    req->path = "/";
    req->path_len = 1;
  }
  if ((u.field_set & (1 << UF_QUERY)) != 0) {
    req->query = url + u.field_data[UF_QUERY].off;
    req->query_len = u.field_data[UF_QUERY].len;
  }
  if (build_view(r) != KEEL_OK)
    return KEEL_ENOMEM;
  req->method = http_method_str((enum http_method)r->parser.method);
  req->headers = r->view;
  req->nheaders = r->nhdrs;
  req->body = r->body.data;
  req->body_len = r->body.len;
  req->version_major = r->parser.http_major;
  req->version_minor = r->parser.http_minor;
  req->keep_alive = http_should_keep_alive(&r->parser) != 0 && !r->upgrade;
  return KEEL_OK;
}

void keel__http_reader_next(keel__http_reader *r, bool trim) {
  r->head.len = 0;
  r->body.len = 0;
  r->nhdrs = 0;
  r->url_len = 0;
  r->in_value = false;
  r->started = false;
  r->complete = false;
  r->upgrade = false;
  r->stream = false;
  r->discard = false;
  r->discarded = 0;
  r->expect_continue = false;
  r->continue_sent = false;
  r->body_seen = false;
  if (trim) {
    keel_buf_free(&r->head);
    keel_buf_free(&r->body);
    free(r->hdrs);
    free(r->view);
    r->hdrs = NULL;
    r->view = NULL;
    r->cap = 0;
  }
}

bool keel__http_reader_wants_continue(const keel__http_reader *r) {
  return r->expect_continue && !r->continue_sent && !r->body_seen &&
         !r->complete && r->status == 0;
}
