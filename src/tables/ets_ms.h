/*
 * ets_ms.h - compiled match specifications (private to the tables layer).
 */
#ifndef KEEL_TABLES_ETS_MS_H
#define KEEL_TABLES_ETS_MS_H

#include <stdbool.h>

#include "tables/ets_internal.h"

/* Highest variable number: '$0' .. '$255'. */
#define MS_MAXVAR 255

typedef struct keel__ms_clause {
  keel_term head, guards, body; /* in the spec's heap, variables replaced */
  unsigned maxvar;              /* highest variable number in head + 1 */
} keel__ms_clause;

struct keel_ets_ms {
  keel_heap heap;
  keel__ms_clause *c;
  size_t n;
};

/* Result of the first matching clause (built in h, may point into obj or
 * the spec), or KEEL_NONE when no clause matches. */
keel_term keel__ms_run(const keel_ets_ms *ms, keel_term obj, keel_heap *h);

/* true when a compiled head subterm holds no variable. */
bool keel__ms_ground(keel_term p);

/* The key of a one-clause spec whose head binds element keypos with no
 * variable in it (a single-key lookup), or KEEL_NONE. */
keel_term keel__ets_bound_key(const keel_ets_ms *ms, unsigned keypos);

#endif /* KEEL_TABLES_ETS_MS_H */
