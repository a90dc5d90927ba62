/*
 * assets_internal.h - the table of embedded browser files, generated at
 * build time by cmake/embed_assets.cmake from src/dashboard/assets/.
 */
#ifndef KEEL_DASH_ASSETS_INTERNAL_H
#define KEEL_DASH_ASSETS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct keel__dash_asset {
  const char *path; /* "/index.html" */
  const uint8_t *data;
  size_t len;
} keel__dash_asset;

extern const keel__dash_asset keel__dash_assets[];
extern const size_t keel__dash_nassets;

#endif /* KEEL_DASH_ASSETS_INTERNAL_H */
