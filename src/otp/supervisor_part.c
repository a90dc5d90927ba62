/*
 * supervisor_part.c - partition supervisors (keel/dynamic_supervisor.h): a
 * static one_for_one supervisor whose children are registered dynamic
 * supervisors, found by key without asking the parent.
 */
#include <stdio.h>
#include <string.h>

#include "keel/dynamic_supervisor.h"
#include "keel/signals.h"
#include "otp/supervisor_internal.h"

#define PARTITIONS_MAX 4096u

/* The atom "<name>_<i>": creates it when `create`, else finds it. */
static int part_name(keel_term name, unsigned i, bool create, keel_term *out) {
  size_t len;
  const char *base = keel_atom_name(name, &len);
  char buf[KEEL_ATOM_MAX_CHARS * 4 + 16];
  int n = snprintf(buf, sizeof buf, "%.*s_%u", (int)len, base, i);
  if (n < 0 || (size_t)n >= sizeof buf)
    return KEEL_ELIMIT;
  return create ? keel_atom_intern(buf, (size_t)n, out)
                : keel_atom_find(buf, (size_t)n, out);
}

/* Starts partition i; extra is {Name, Intensity, PeriodMs, MaxChildren,
 * ExtraArgs} (the partition supervisor's own). */
static int part_start(keel_proc *sup, void *arg, keel_term extra,
                      keel_term *pid) {
  (void)sup;
  unsigned i = (unsigned)(uintptr_t)arg;
  int64_t in, per, max;
  if (keel_get_int64(keel_tuple_get(extra, 1), &in) != KEEL_OK ||
      keel_get_int64(keel_tuple_get(extra, 2), &per) != KEEL_OK ||
      keel_get_int64(keel_tuple_get(extra, 3), &max) != KEEL_OK)
    return KEEL_EINVAL;
  keel_dynsup_spec ds = KEEL_DYNSUP_SPEC_INIT;
  ds.intensity = (unsigned)in;
  ds.period_ms = (uint64_t)per;
  ds.max_children = (size_t)max;
  ds.extra_args = keel_tuple_get(extra, 4);
  int rc = part_name(keel_tuple_get(extra, 0), i, true, &ds.name);
  return rc != KEEL_OK ? rc : keel_dynsup_start_link(&ds, pid);
}

static int check(const keel_partsup_spec *spec) {
  size_t len;
  if (spec == NULL || spec->version != KEEL_SUP_VERSION ||
      spec->child.version != KEEL_SUP_VERSION || spec->child.period_ms == 0 ||
      spec->partitions > PARTITIONS_MAX || !keel_is_atom(spec->name) ||
      keel_list_length(spec->child.extra_args, &len) != KEEL_OK)
    return KEEL_EINVAL;
  return KEEL_OK;
}

int keel_partsup_start_link(const keel_partsup_spec *spec, keel_term *pid) {
  int rc = check(spec);
  if (rc != KEEL_OK)
    return rc;
  unsigned parts =
      spec->partitions != 0 ? spec->partitions : keel_node_schedulers();
  keel__sup *s = keel__sup_new(false);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->strategy = KEEL_SUP_ONE_FOR_ONE;
  s->intensity = spec->child.intensity;
  s->period_ms = spec->child.period_ms;
  s->name = spec->name;
  s->extra =
      keel_tuple(&s->xh, 5, spec->name, keel_small(spec->child.intensity),
                 keel_int(&s->xh, (int64_t)spec->child.period_ms),
                 keel_int(&s->xh, (int64_t)spec->child.max_children),
                 keel_term_copy(&s->xh, spec->child.extra_args));
  rc = s->extra == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  for (unsigned i = 0; i < (parts != 0 ? parts : 1) && rc == KEEL_OK; i++) {
    keel_sup_child_spec cs = {.id = keel_small(i),
                              .start = part_start,
                              .arg = (void *)(uintptr_t)i,
                              .type = KEEL_SUP_SUPERVISOR};
    rc = keel__sup_add_spec(s, &cs);
  }
  if (rc != KEEL_OK) {
    keel__sup_free(s);
    return rc;
  }
  return keel__sup_launch(s, pid);
}

int keel_partsup_partitions(keel_term name) {
  keel_sup_counts n;
  int rc = keel_sup_count_children(name, &n);
  return rc != KEEL_OK ? rc : (int)n.specs;
}

int keel_partsup_whereis(keel_term name, keel_term key, unsigned partitions,
                         keel_term *pid) {
  if (partitions == 0 || pid == NULL || key == KEEL_NONE)
    return KEEL_EINVAL;
  if (!keel_is_atom(name))
    return KEEL_EBADARG;
  keel_term pname;
  if (part_name(name, (unsigned)(keel_hash(key) % partitions), false, &pname) !=
      KEEL_OK)
    return KEEL_ENOPROC;
  keel_term p = keel_whereis(pname);
  if (p == KEEL_ATOM(UNDEFINED))
    return KEEL_ENOPROC;
  *pid = p;
  return KEEL_OK;
}
