/*
 * assets.c - lookup of the embedded browser files.
 */
#include <string.h>

#include "dashboard/assets_internal.h"
#include "keel/dashboard.h"

static const char *content_type(const char *path, size_t n) {
  static const struct {
    const char *ext, *type;
  } types[] = {{".html", "text/html; charset=utf-8"},
               {".css", "text/css; charset=utf-8"},
               {".js", "text/javascript; charset=utf-8"},
               {".svg", "image/svg+xml"},
               {".json", "application/json"}};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
    size_t e = strlen(types[i].ext);
    if (n >= e && memcmp(path + n - e, types[i].ext, e) == 0)
      return types[i].type;
  }
  return "application/octet-stream";
}

int keel_dashboard_asset(const char *path, const uint8_t **data, size_t *len,
                         const char **ctype) {
  if (path == NULL || data == NULL || len == NULL || ctype == NULL)
    return KEEL_EINVAL;
  size_t n = strcspn(path, "?#");
  if (n == 0 || (n == 1 && path[0] == '/')) {
    path = "/index.html";
    n = strlen(path);
  }
  for (size_t i = 0; i < keel__dash_nassets; i++) {
    const keel__dash_asset *a = &keel__dash_assets[i];
    if (strlen(a->path) == n && memcmp(a->path, path, n) == 0) {
      *data = a->data;
      *len = a->len;
      *ctype = content_type(a->path, n);
      return KEEL_OK;
    }
  }
  return KEEL_ENOENT;
}
