/*
 * static.c - serving files from a directory (keel_http_route_static).
 *
 * The request's rest-of-path is percent-decoded into a bounded buffer and
 * checked segment by segment before it is joined to the directory: no
 * "..", no empty path, no NUL or backslash, so a request never names a
 * file outside the directory (symbolic links inside it are followed, as
 * by most servers; do not put links you would not serve there).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "keel/error.h"

enum { STATIC_MAX_FILE = 16 << 20, STATIC_MAX_PATH = 1024 };

typedef struct static_dir {
  char *dir;
} static_dir;

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes src[0..n) into out (NUL-terminated); false on a bad escape, a
 * NUL, a backslash or overflow. */
static bool url_decode(const char *src, size_t n, char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    if (c == '%') {
      if (i + 2 >= n)
        return false;
      int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '\\' || k + 1 >= cap)
      return false;
    out[k++] = c;
  }
  out[k] = '\0';
  return true;
}

/* True when no segment of path is "." or ".." (or empty at the end). */
static bool safe_path(const char *path) {
  if (path[0] == '\0')
    return false;
  for (const char *p = path; *p != '\0';) {
    const char *e = strchr(p, '/');
    size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
    if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
      return false;
    if (e == NULL)
      break;
    p = e + 1;
  }
  return true;
}

static const char *content_type(const char *path) {
  static const char *const map[][2] = {
      {".html", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".gif", "image/gif"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"}};
  const char *dot = strrchr(path, '.');
  for (size_t i = 0; dot != NULL && i < sizeof map / sizeof map[0]; i++)
    if (strcmp(dot, map[i][0]) == 0)
      return map[i][1];
  return "application/octet-stream";
}

static int answer(keel_http_response *resp, int status) {
  const char *r = keel__http_reason(status);
  return keel_http_respond(resp, status, "text/plain; charset=utf-8", r,
                           strlen(r));
}

/* Reads the regular file at full into resp. */
static int send_file(keel_http_response *resp, const char *full) {
  int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    fd = open(full, O_RDONLY | O_CLOEXEC); /* a link inside the dir */
  if (fd < 0)
    return answer(resp, errno == EACCES ? 403 : 404);
  struct stat st;
  int rc;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = answer(resp, 404);
  } else if (st.st_size > STATIC_MAX_FILE) {
    rc = answer(resp, 413);
  } else {
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n > 0 ? n : 1);
    while (buf != NULL && got < n) {
      ssize_t r = read(fd, buf + got, n - got);
      if (r <= 0)
        break;
      got += (size_t)r;
    }
    rc = buf == NULL
             ? KEEL_ENOMEM
             : keel_http_respond(resp, 200, content_type(full), buf, got);
    free(buf);
  }
  close(fd);
  return rc;
}

static int serve(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  const static_dir *sd = arg;
  size_t n = 0;
  const char *rest = keel_http_param_get(req, "path", &n);
  char rel[STATIC_MAX_PATH], full[STATIC_MAX_PATH * 2];
  if (rest == NULL || !url_decode(rest, n, rel, sizeof rel) || !safe_path(rel))
    return answer(resp, rest != NULL && n == 0 ? 404 : 400);
  snprintf(full, sizeof full, "%s/%s", sd->dir, rel);
  return send_file(resp, full);
}

int keel_http_route_static(keel_http_router *r, const char *prefix,
                           const char *dir) {
  if (r == NULL || prefix == NULL || prefix[0] != '/' || dir == NULL ||
      strlen(prefix) > 200)
    return KEEL_EINVAL;
  static_dir *sd = malloc(sizeof *sd);
  char pattern[256];
  size_t pl = strlen(prefix);
  while (pl > 1 && prefix[pl - 1] == '/')
    pl--;
  snprintf(pattern, sizeof pattern, "%.*s/*path", (int)(pl > 1 ? pl : 0),
           prefix);
  if (sd == NULL || (sd->dir = strdup(dir)) == NULL) {
    free(sd);
    return KEEL_ENOMEM;
  }
  int rc = keel__http_router_keep(r, sd->dir);
  if (rc == KEEL_OK)
    rc = keel__http_router_keep(r, sd);
  else
    free(sd->dir);
  if (rc != KEEL_OK)
    free(sd);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", pattern, serve, sd);
  return rc;
}
