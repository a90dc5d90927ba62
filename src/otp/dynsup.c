/*
 * dynsup.c - dynamic supervisors (keel/dynamic_supervisor.h): the
 * supervisor process of supervisor.c in its dynamic mode.
 */
#include "keel/dynamic_supervisor.h"
#include "otp/supervisor_internal.h"

int keel_dynsup_start_link(const keel_dynsup_spec *spec, keel_term *pid) {
  size_t len;
  if (spec == NULL || spec->version != KEEL_SUP_VERSION ||
      spec->period_ms == 0 ||
      keel_list_length(spec->extra_args, &len) != KEEL_OK)
    return KEEL_EINVAL;
  if (spec->name != KEEL_NONE && !keel_is_atom(spec->name))
    return KEEL_EBADARG;
  keel__sup *s = keel__sup_new(true);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->strategy = KEEL_SUP_ONE_FOR_ONE;
  s->intensity = spec->intensity;
  s->period_ms = spec->period_ms;
  s->max_children = spec->max_children;
  s->name = spec->name;
  s->extra = keel_term_copy(&s->xh, spec->extra_args);
  if (s->extra == KEEL_NONE) {
    keel__sup_free(s);
    return KEEL_ENOMEM;
  }
  return keel__sup_launch(s, pid);
}

int keel_dynsup_start_child(keel_term sup, const keel_sup_child_spec *spec,
                            keel_term *pid) {
  if (spec == NULL)
    return KEEL_EINVAL;
  keel_sup_child_spec cs = *spec;
  cs.id = KEEL_ATOM(UNDEFINED);
  return keel_sup_start_child(sup, &cs, pid);
}
