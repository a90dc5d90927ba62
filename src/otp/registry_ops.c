/*
 * registry_ops.c - the registry's per-pid reads, update_value, dispatch,
 * metadata, and via name resolution ({via, Module, Name}).
 */
#include <stdatomic.h>

#include "keel/ets.h"
#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "otp/registry_internal.h"

int keel_registry_keys(keel_registry *reg, keel_term pid, keel_heap *h,
                       keel_term *out) {
  if (reg == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  /* One {Pid, Key} per entry: a key pid holds several entries under comes
   * that many times, as in Elixir. */
  return keel_ets_lookup_element(reg->pids, pid, 2, KEEL_NIL, h, out);
}

int keel_registry_values(keel_registry *reg, keel_term key, keel_term pid,
                         keel_heap *h, keel_term *out) {
  if (out == NULL)
    return KEEL_EINVAL;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  keel_term l;
  int rc = keel_registry_lookup(reg, key, h, &l);
  if (rc != KEEL_OK)
    return rc;
  keel_term acc = KEEL_NIL;
  for (; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == pid &&
        (acc = keel_cons(h, keel_tuple_get(keel_hd(l), 1), acc)) == KEEL_NONE)
      return KEEL_ENOMEM;
  *out = acc;
  return KEEL_OK;
}

int keel_registry_update_value(keel_registry *reg, keel_term key,
                               keel_registry_update_fn fn, void *arg,
                               keel_heap *h, keel_term *new_out,
                               keel_term *old_out) {
  if (reg == NULL || key == KEEL_NONE || fn == NULL || h == NULL)
    return KEEL_EINVAL;
  if (reg->keys != KEEL_REGISTRY_UNIQUE)
    return KEEL_EUNSUPPORTED;
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_ESTATE;
  keel_term pid = keel_self(self);
  keel_ets_tab t = reg->parts[keel__registry_part(reg, key)];
  keel_term objs;
  int rc = keel_ets_lookup(t, key, h, &objs);
  if (rc != KEEL_OK)
    return rc;
  /* Only pid writes its own entry, so it cannot change under us. */
  if (!keel_is_cons(objs) || keel_tuple_get(keel_hd(objs), 1) != pid)
    return KEEL_ENOENT;
  keel_term old = keel_tuple_get(keel_hd(objs), 2);
  keel_term nv = fn(old, h, arg);
  if (nv == KEEL_NONE)
    nv = old;
  keel_term spec = keel_tuple(h, 2, keel_small(3), nv);
  if (spec == KEEL_NONE)
    return KEEL_ENOMEM;
  rc = keel_ets_update_element(t, key, spec, KEEL_NONE);
  if (rc < 0)
    return rc;
  if (new_out != NULL)
    *new_out = nv;
  if (old_out != NULL)
    *old_out = old;
  return KEEL_OK;
}

int keel_registry_dispatch(keel_registry *reg, keel_term key,
                           keel_registry_dispatch_fn fn, void *arg) {
  if (reg == NULL || key == KEEL_NONE || fn == NULL)
    return KEEL_EINVAL;
  unsigned lo = 0, hi = reg->nparts;
  if (reg->keys != KEEL_REGISTRY_DUPLICATE) {
    lo = keel__registry_part(reg, key);
    hi = lo + 1;
  }
  int calls = 0;
  for (unsigned i = lo; i < hi; i++) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term acc;
    int rc = keel_ets_lookup_elements(reg->parts[i], key, 2, 2, &h, &acc);
    if (rc == KEEL_OK && keel_is_cons(acc)) {
      fn(acc, arg);
      calls++;
    }
    keel_heap_destroy(&h);
    if (rc != KEEL_OK)
      return rc;
  }
  return calls;
}

int keel_registry_meta(keel_registry *reg, keel_term key, keel_heap *h,
                       keel_term *out) {
  if (reg == NULL || key == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  return keel_ets_lookup_element(reg->meta, key, 2, KEEL_NONE, h, out);
}

int keel_registry_put_meta(keel_registry *reg, keel_term key, keel_term value) {
  if (reg == NULL || key == KEEL_NONE || value == KEEL_NONE)
    return KEEL_EINVAL;
  uint64_t buf[4];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 4);
  return keel_ets_insert(reg->meta, keel_tuple(&h, 2, key, value));
}

/* ---- via ---------------------------------------------------------------- */

static struct {
  _Atomic keel_term module;
  const keel_via_module *_Atomic ops;
} vias[KEEL_VIA_MAX_MODULES];
static atomic_flag via_lock = ATOMIC_FLAG_INIT;

int keel_via_add(keel_term module, const keel_via_module *m) {
  if (!keel_is_atom(module) || m == NULL ||
      m->version != KEEL_VIA_MODULE_VERSION || m->whereis_name == NULL)
    return KEEL_EINVAL;
  while (atomic_flag_test_and_set(&via_lock)) {
  }
  int rc = KEEL_ESYSLIMIT;
  for (int i = 0; i < KEEL_VIA_MAX_MODULES; i++) {
    keel_term cur = atomic_load(&vias[i].module);
    if (cur == module) {
      rc = KEEL_EEXIST;
      break;
    }
    if (cur == KEEL_NONE) {
      atomic_store(&vias[i].ops, m);
      atomic_store(&vias[i].module, module);
      rc = KEEL_OK;
      break;
    }
  }
  atomic_flag_clear(&via_lock);
  return rc;
}

static const keel_via_module *via_find(keel_term module) {
  for (int i = 0; i < KEEL_VIA_MAX_MODULES; i++) {
    keel_term cur = atomic_load(&vias[i].module);
    if (cur == KEEL_NONE)
      return NULL;
    if (cur == module)
      return atomic_load(&vias[i].ops);
  }
  return NULL;
}

static const keel_via_module global_via = {
    .version = KEEL_VIA_MODULE_VERSION,
    .whereis_name = keel_global_whereis_name,
    .register_name = keel_global_register_name,
    .unregister_name = keel_global_unregister_name};

/* For {via, M, N}: M's module (or NULL) and N; {global, N} goes through
 * the global names. */
static bool is_via(keel_term name, const keel_via_module **m, keel_term *n) {
  if (keel_is_tuple(name) && keel_tuple_arity(name) == 2 &&
      keel_tuple_get(name, 0) == keel_atom("global")) {
    *m = &global_via;
    *n = keel_tuple_get(name, 1);
    return true;
  }
  if (!keel_is_tuple(name) || keel_tuple_arity(name) != 3 ||
      keel_tuple_get(name, 0) != keel_atom("via"))
    return false;
  *m = via_find(keel_tuple_get(name, 1));
  *n = keel_tuple_get(name, 2);
  return true;
}

keel_term keel_name_whereis(keel_term name) {
  const keel_via_module *m;
  keel_term n;
  if (keel_is_local_pid(name))
    return name;
  if (keel_is_atom(name))
    return keel_whereis(name);
  if (is_via(name, &m, &n) && m != NULL)
    return m->whereis_name(n);
  return KEEL_ATOM(UNDEFINED);
}

int keel_name_register(keel_term name, keel_term pid) {
  const keel_via_module *m;
  keel_term n;
  if (keel_is_atom(name))
    return keel_register(name, pid);
  if (!is_via(name, &m, &n))
    return KEEL_EBADARG;
  if (m == NULL || m->register_name == NULL)
    return KEEL_ENOENT;
  return m->register_name(n, pid);
}

int keel_name_unregister(keel_term name) {
  const keel_via_module *m;
  keel_term n;
  if (keel_is_atom(name))
    return keel_unregister(name);
  if (!is_via(name, &m, &n))
    return KEEL_EBADARG;
  if (m == NULL || m->unregister_name == NULL)
    return KEEL_ENOENT;
  return m->unregister_name(n);
}

int keel_name_send(keel_term name, keel_term msg) {
  if (!keel_is_local_pid(name) && !keel_is_atom(name) &&
      !(keel_is_tuple(name) &&
        (keel_tuple_arity(name) == 3 || keel_tuple_arity(name) == 2)))
    return KEEL_EBADARG;
  const keel_via_module *m;
  keel_term n;
  if (is_via(name, &m, &n) && m != NULL && m->send != NULL)
    return m->send(n, msg);
  keel_term pid = keel_name_whereis(name);
  if (!keel_is_local_pid(pid))
    return KEEL_ENOPROC;
  return keel_send(pid, msg);
}
