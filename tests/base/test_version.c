/* Library version: header, library and build metadata agree. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/version.h"

/* Reads a whole file under $KEEL_BINARY_DIR into a NUL-terminated buffer. */
static char *read_build_file(const char *name) {
  const char *dir = getenv("KEEL_BINARY_DIR");
  cr_assert_not_null(dir, "KEEL_BINARY_DIR must be set by ctest");
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert(n > 0 && (size_t)n < sizeof path);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  char *text = calloc(1, 65536);
  cr_assert_not_null(text);
  size_t got = fread(text, 1, 65535, f);
  fclose(f);
  cr_assert(got > 0, "%s is empty", path);
  return text;
}

Test(version, string_matches_header) {
  const char *v = keel_version();
  cr_assert_not_null(v);
  cr_assert_str_eq(v, KEEL_VERSION_STRING);
  cr_assert_eq(keel_version(), v, "must be a static string");
}

Test(version, string_has_three_numeric_components) {
  const char *v = keel_version();
  int major = -1, minor = -1, patch = -1, used = 0;
  cr_assert_eq(sscanf(v, "%d.%d.%d%n", &major, &minor, &patch, &used), 3);
  cr_assert_eq((size_t)used, strlen(v), "trailing junk in \"%s\"", v);
  cr_assert_eq(major, KEEL_VERSION_MAJOR);
  cr_assert_eq(minor, KEEL_VERSION_MINOR);
  cr_assert_eq(patch, KEEL_VERSION_PATCH);
  cr_assert(minor < 100 && patch < 100, "KEEL_VERSION_NUMBER would collide");
  cr_assert_eq(keel_version_number(), major * 10000 + minor * 100 + patch);
  cr_assert_eq(keel_version_number(), KEEL_VERSION_NUMBER);
}

Test(version, pkg_config_file_agrees) {
  char *pc = read_build_file("keel.pc");
  char want[64];
  snprintf(want, sizeof want, "\nVersion: %s\n", keel_version());
  cr_assert_not_null(strstr(pc, want), "keel.pc lacks \"%s\":\n%s", want + 1,
                     pc);
  cr_assert_not_null(strstr(pc, "-lkeel"));
  free(pc);
}

Test(version, cmake_package_version_agrees) {
  char *cfg = read_build_file("KeelConfigVersion.cmake");
  char want[64];
  snprintf(want, sizeof want, "set(PACKAGE_VERSION \"%s\")", keel_version());
  cr_assert_not_null(strstr(cfg, want), "KeelConfigVersion.cmake lacks %s",
                     want);
  free(cfg);
}
