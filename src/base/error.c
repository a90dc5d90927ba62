/* error.c - names and messages of KEEL_E* codes. */
#include "keel/error.h"

const char *keel_strerror(int err) {
  switch (err) {
#define KEEL_ERR_MSG_(name, value, msg)                                        \
  case (value):                                                                \
    return (msg);
    KEEL_ERRNO_MAP(KEEL_ERR_MSG_)
#undef KEEL_ERR_MSG_
  default:
    return "unknown error";
  }
}

const char *keel_err_name(int err) {
  switch (err) {
#define KEEL_ERR_NAME_(name, value, msg)                                       \
  case (value):                                                                \
    return "KEEL_" #name;
    KEEL_ERRNO_MAP(KEEL_ERR_NAME_)
#undef KEEL_ERR_NAME_
  default:
    return "KEEL_E?";
  }
}
