/*
 * response.c - building and writing HTTP responses.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http_internal.h"
#include "keel/error.h"
#include "keel/json.h"

const char *keel__http_reason(int status) {
  switch (status) {
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 426:
    return "Upgrade Required";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}

void keel__http_response_reset(keel_http_response *resp, bool trim) {
  resp->status = 0;
  resp->ctype[0] = '\0';
  if (trim) {
    keel_buf_free(&resp->headers);
    keel_buf_free(&resp->body);
  } else {
    resp->headers.len = 0;
    resp->body.len = 0;
  }
}

static bool has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

int keel_http_set_header(keel_http_response *resp, const char *name,
                         const char *value) {
  if (resp == NULL || name == NULL || value == NULL || name[0] == '\0' ||
      has_crlf(name) || has_crlf(value) || strchr(name, ':') != NULL)
    return KEEL_EINVAL;
  return keel_buf_printf(&resp->headers, "%s: %s\r\n", name, value);
}

int keel_http_respond(keel_http_response *resp, int status,
                      const char *content_type, const void *body, size_t len) {
  if (resp == NULL || status < 100 || status > 599 || (body == NULL && len > 0))
    return KEEL_EINVAL;
  if (content_type != NULL &&
      (has_crlf(content_type) || strlen(content_type) >= sizeof resp->ctype))
    return KEEL_EINVAL;
  resp->body.len = 0;
  if (len > 0 && keel_buf_append(&resp->body, body, len) != KEEL_OK)
    return KEEL_ENOMEM;
  snprintf(resp->ctype, sizeof resp->ctype, "%s",
           content_type != NULL ? content_type : "");
  resp->status = status;
  return KEEL_OK;
}

int keel_http_respond_json(keel_http_response *resp, int status,
                           keel_term json) {
  if (resp == NULL || status < 100 || status > 599)
    return KEEL_EINVAL;
  resp->body.len = 0;
  int rc = keel_json_encode(&resp->body, json, NULL);
  if (rc != KEEL_OK) {
    resp->body.len = 0;
    return rc;
  }
  snprintf(resp->ctype, sizeof resp->ctype, "application/json");
  resp->status = status;
  return KEEL_OK;
}

/* "Date: ...\r\n" for now, formatted once per second per thread. */
static const char *date_line(void) {
  static _Thread_local time_t cached = -1;
  static _Thread_local char line[48];
  time_t now = time(NULL);
  if (now != cached) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached = now;
  }
  return line;
}

int keel__http_response_write(const keel_http_response *resp, keel_buf *out,
                              bool keep_alive, bool head_only,
                              const char *server) {
  int st = resp->status;
  size_t need = 160 + resp->headers.len + (head_only ? 0 : resp->body.len);
  if (keel_buf_reserve(out, need) != KEEL_OK)
    return KEEL_ENOMEM;
  int rc = keel_buf_printf(out, "HTTP/1.1 %d %s\r\nServer: %s\r\n%s", st,
                           keel__http_reason(st), server, date_line());
  if (rc == KEEL_OK && resp->headers.len > 0)
    rc = keel_buf_append(out, resp->headers.data, resp->headers.len);
  if (rc == KEEL_OK && resp->ctype[0] != '\0')
    rc = keel_buf_printf(out, "Content-Type: %s\r\n", resp->ctype);
  bool bodyless = st < 200 || st == 204 || st == 304;
  if (rc == KEEL_OK && !bodyless)
    rc = keel_buf_printf(out, "Content-Length: %zu\r\n", resp->body.len);
  if (rc == KEEL_OK)
    rc = keel_buf_printf(out, "%s\r\n",
                         keep_alive ? "" : "Connection: close\r\n");
  if (rc == KEEL_OK && !head_only && !bodyless && resp->body.len > 0)
    rc = keel_buf_append(out, resp->body.data, resp->body.len);
  return rc;
}

int keel__http_write_status(keel_buf *out, int status, bool keep_alive,
                            const char *server) {
  keel_http_response r;
  memset(&r, 0, sizeof r);
  keel_buf_init(&r.headers);
  keel_buf_init(&r.body);
  const char *reason = keel__http_reason(status);
  int rc = keel_http_respond(&r, status, "text/plain; charset=utf-8", reason,
                             strlen(reason));
  if (rc == KEEL_OK)
    rc = keel__http_response_write(&r, out, keep_alive, false, server);
  keel__http_response_reset(&r, true);
  return rc;
}
