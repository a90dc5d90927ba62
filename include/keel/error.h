/*
 * keel/error.h - error codes shared by every Keel subsystem.
 *
 * Every fallible Keel function returns either a non-negative value on success
 * or a negative KEEL_E* code. Codes are stable: their numeric values are part
 * of the ABI. keel_strerror() and keel_err_name() never return NULL and are
 * thread-safe (they return pointers to static strings).
 */
#ifndef KEEL_ERROR_H
#define KEEL_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro: name, value, message. */
#define KEEL_ERRNO_MAP(X)                                                      \
  X(OK, 0, "success")                                                          \
  X(ENOMEM, -1, "out of memory")                                               \
  X(EINVAL, -2, "invalid argument")                                            \
  X(EBADARG, -3, "bad argument: term has the wrong type")                      \
  X(EDECODE, -4, "malformed encoded data")                                     \
  X(ETRUNC, -5, "input truncated")                                             \
  X(ELIMIT, -6, "size or depth limit exceeded")                                \
  X(EUNSUPPORTED, -7, "unsupported feature or encoding")                       \
  X(ESYSLIMIT, -8, "system limit reached")                                     \
  X(ERANGE, -9, "value out of range")                                          \
  X(EPARSE, -10, "syntax error")                                               \
  X(ENOMATCH, -11, "no match")                                                 \
  X(ENOSPC, -12, "buffer too small")                                           \
  X(EIO, -13, "input/output error")                                            \
  X(ENOENT, -14, "not found")                                                  \
  X(EEXIST, -15, "already exists")                                             \
  X(ETIMEDOUT, -16, "timed out")                                               \
  X(ESTATE, -17, "operation not valid in the current state")                   \
  X(ENOPROC, -18, "no such process")                                           \
  X(ECLOSED, -19, "socket closed")                                             \
  X(EBUSY, -20, "busy: queue above its high watermark, retry later")           \
  X(ENOTOWNER, -21, "caller is not the owner")                                 \
  X(ECONNREFUSED, -22, "connection refused")                                   \
  X(EADDRINUSE, -23, "address already in use")                                 \
  X(ETLS, -24, "TLS handshake or protocol failure")                            \
  X(EVERIFY, -25, "peer certificate verification failed")

enum keel_err {
#define KEEL_ERR_ENUM_(name, value, msg) KEEL_##name = (value),
  KEEL_ERRNO_MAP(KEEL_ERR_ENUM_)
#undef KEEL_ERR_ENUM_
};

/* Human-readable message for an error code ("unknown error" if unknown). */
const char *keel_strerror(int err);

/* Symbolic name of an error code, e.g. "KEEL_EDECODE" ("KEEL_E?" if unknown).
 */
const char *keel_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_ERROR_H */
