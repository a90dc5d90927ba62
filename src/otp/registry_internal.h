/*
 * registry_internal.h - the registry object, shared by registry.c and
 * registry_ops.c (private to src/otp).
 */
#ifndef KEEL_OTP_REGISTRY_INTERNAL_H
#define KEEL_OTP_REGISTRY_INTERNAL_H

#include "keel/ets.h"
#include "keel/registry.h"

struct keel_registry {
  keel_registry *next; /* in the list of live registries */
  keel_registry_kind keys;
  unsigned nparts;
  keel_term name; /* atom or KEEL_NONE */
  size_t nlisteners;
  keel_term listeners[KEEL_REGISTRY_MAX_LISTENERS];
  keel_ets_tab pids; /* duplicate_bag {Pid, Key}, one per entry */
  keel_ets_tab meta; /* set {Key, Value} */
  keel_ets_tab parts[KEEL_REGISTRY_MAX_PARTITIONS];
};

/* The partition of a term hashed by (key or pid). */
static inline unsigned keel__registry_part(const keel_registry *reg,
                                           keel_term by) {
  return reg->nparts <= 1 ? 0 : (unsigned)(keel_hash(by) % reg->nparts);
}

#endif
