/*
 * keel/version.h - library version.
 *
 * This header is the single source of truth for the Keel version: the build
 * (CMakeLists.txt) reads the three KEEL_VERSION_* numbers from it, so the
 * CMake project version, the shared library's SOVERSION, keel.pc and
 * KeelConfigVersion.cmake always agree with what the code reports.
 * Keep each number on its own "#define NAME value" line.
 */
#ifndef KEEL_VERSION_H
#define KEEL_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_VERSION_MAJOR 0
#define KEEL_VERSION_MINOR 1
#define KEEL_VERSION_PATCH 0

#define KEEL_VERSION_STR_(x) #x
#define KEEL_VERSION_XSTR_(x) KEEL_VERSION_STR_(x)

/* "MAJOR.MINOR.PATCH" of the headers being compiled against. */
#define KEEL_VERSION_STRING                                                    \
  KEEL_VERSION_XSTR_(KEEL_VERSION_MAJOR)                                       \
  "." KEEL_VERSION_XSTR_(KEEL_VERSION_MINOR) "." KEEL_VERSION_XSTR_(           \
      KEEL_VERSION_PATCH)

/* Version as one comparable number: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define KEEL_VERSION_NUMBER                                                    \
  (KEEL_VERSION_MAJOR * 10000 + KEEL_VERSION_MINOR * 100 + KEEL_VERSION_PATCH)

/*
 * Version of the library actually linked, as "MAJOR.MINOR.PATCH" (compare
 * with KEEL_VERSION_STRING to detect a header/library mismatch). Never NULL;
 * points to a static string; thread-safe.
 */
const char *keel_version(void);

/* Version of the linked library as KEEL_VERSION_NUMBER computes it. */
int keel_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_VERSION_H */
