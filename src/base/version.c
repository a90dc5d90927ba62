/* version.c - version of the linked library. */
#include "keel/version.h"

const char *keel_version(void) {
  return KEEL_VERSION_STRING;
}

int keel_version_number(void) {
  return KEEL_VERSION_NUMBER;
}
