/*
 * registry.c - Elixir's Registry on ETS tables and a runtime exit hook.
 *
 * Per partition: a table of {Key, Pid, Value} (set for unique keys,
 * duplicate_bag otherwise). Per registry: a duplicate_bag {Pid, Key} with
 * one object per entry (which keys a pid holds, each as many times as it
 * has entries under it, as Elixir's pid table) and a set for metadata.
 * The duplicate_bags keep their objects in any order, so that adding one
 * costs O(1) however many a pid or a key already has (Elixir leaves the
 * order of lookup, keys and dispatch unspecified). Only a process writes its
 * own entries (register/unregister/update_value act on self, and the exit hook
 * runs on the dying process's own thread), so the two writes of a registration
 * need no lock: nobody else touches those objects.
 *
 * Registries are kept in a list guarded by a read-write lock: the exit
 * hook walks it under the read lock (short table operations only), and
 * delete unlinks under the write lock, so a registry is never freed under
 * a running cleanup.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "otp/registry_internal.h"

static pthread_rwlock_t regs_lock = PTHREAD_RWLOCK_INITIALIZER;
static keel_registry *regs_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static int reg_hook_id = -1;

static keel_ets_tab part_of(const keel_registry *reg, keel_term key,
                            keel_term pid) {
  keel_term by = reg->keys == KEEL_REGISTRY_DUPLICATE ? pid : key;
  return reg->parts[keel__registry_part(reg, by)];
}

static keel_term reg_name_term(const keel_registry *reg) {
  return reg->name != KEEL_NONE ? reg->name : KEEL_ATOM(UNDEFINED);
}

static void notify(const keel_registry *reg, keel_term key, keel_term pid,
                   keel_term value) {
  if (reg->nlisteners == 0)
    return;
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = value != KEEL_NONE
                    ? keel_tuple(&h, 5, keel_atom("register"),
                                 reg_name_term(reg), key, pid, value)
                    : keel_tuple(&h, 4, keel_atom("unregister"),
                                 reg_name_term(reg), key, pid);
  for (size_t i = 0; m != KEEL_NONE && i < reg->nlisteners; i++)
    (void)keel_send(reg->listeners[i], m);
  keel_heap_destroy(&h);
}

/* Removes pid's entries under key (pid is the caller or the dying
 * process), and with rows its {Pid, Key} objects of the pid index;
 * returns how many entries, or a negative error. */
static int64_t drop_key(keel_registry *reg, keel_term key, keel_term pid,
                        bool tell, bool rows) {
  /* One pass over the key's entries, whoever else has some there. */
  int64_t n = keel_ets_delete_by_element(part_of(reg, key, pid), key, 2, pid);
  if (n < 0)
    return n;
  if (rows) {
    uint64_t buf[4];
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 4);
    int rc = keel_ets_delete_object(reg->pids, keel_tuple(&h, 2, pid, key));
    if (rc != KEEL_OK)
      return rc;
  }
  if (n > 0 && tell)
    notify(reg, key, pid, KEEL_NONE);
  return n;
}

/* Runs on the dying process's thread: takes its pid index objects (one
 * per entry) and removes the entries they name, O(its entries). A key it
 * holds several entries under comes several times: the first drop
 * removes them all, the others find none. */
static void on_exit_hook(keel_term pid, keel_term reason, void *arg) {
  (void)reason;
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  pthread_rwlock_rdlock(&regs_lock);
  for (keel_registry *r = regs_head; r != NULL; r = r->next) {
    keel_term rows;
    if (keel_ets_take(r->pids, pid, &h, &rows) != KEEL_OK)
      continue;
    for (; keel_is_cons(rows); rows = keel_tl(rows))
      (void)drop_key(r, keel_tuple_get(keel_hd(rows), 1), pid, true, false);
  }
  pthread_rwlock_unlock(&regs_lock);
  keel_heap_destroy(&h);
}

static keel_term via_whereis(keel_term name);
static int via_register(keel_term name, keel_term pid);
static int via_unregister(keel_term name);

static const keel_via_module registry_via = {.version = KEEL_VIA_MODULE_VERSION,
                                             .whereis_name = via_whereis,
                                             .register_name = via_register,
                                             .unregister_name = via_unregister};

static void reg_init_once(void) {
  reg_hook_id = keel_exit_hook_add(on_exit_hook, NULL);
  (void)keel_via_add(keel_atom("registry"), &registry_via);
}

static int make_tables(keel_registry *reg) {
  keel_ets_opts o = {.access = KEEL_ETS_PUBLIC};
  bool unique = reg->keys == KEEL_REGISTRY_UNIQUE;
  o.type = unique ? KEEL_ETS_SET : KEEL_ETS_DUPLICATE_BAG;
  o.any_order = !unique;
  for (unsigned i = 0; i < reg->nparts; i++) {
    int rc = keel_ets_new(&o, &reg->parts[i]);
    if (rc != KEEL_OK)
      return rc;
  }
  o.type = KEEL_ETS_DUPLICATE_BAG;
  o.any_order = true;
  int rc = keel_ets_new(&o, &reg->pids);
  if (rc != KEEL_OK)
    return rc;
  o.type = KEEL_ETS_SET;
  o.any_order = false;
  return keel_ets_new(&o, &reg->meta);
}

static void free_tables(keel_registry *reg) {
  for (unsigned i = 0; i < reg->nparts; i++)
    if (reg->parts[i] != 0)
      (void)keel_ets_delete(reg->parts[i]);
  if (reg->pids != 0)
    (void)keel_ets_delete(reg->pids);
  if (reg->meta != 0)
    (void)keel_ets_delete(reg->meta);
}

static int check_opts(const keel_registry_opts *o) {
  if ((unsigned)o->keys > KEEL_REGISTRY_DUPLICATE_KEY ||
      o->partitions > KEEL_REGISTRY_MAX_PARTITIONS ||
      o->nlisteners > KEEL_REGISTRY_MAX_LISTENERS ||
      (o->nlisteners > 0 && o->listeners == NULL) ||
      (o->name != KEEL_NONE && !keel_is_atom(o->name)))
    return KEEL_EINVAL;
  for (size_t i = 0; i < o->nlisteners; i++)
    if (!keel_is_local_pid(o->listeners[i]))
      return KEEL_EINVAL;
  return KEEL_OK;
}

static keel_registry *find_locked(keel_term name) {
  for (keel_registry *r = regs_head; r != NULL; r = r->next)
    if (r->name == name)
      return r;
  return NULL;
}

static int publish(keel_registry *reg) {
  pthread_rwlock_wrlock(&regs_lock);
  if (reg->name != KEEL_NONE && find_locked(reg->name) != NULL) {
    pthread_rwlock_unlock(&regs_lock);
    return KEEL_EEXIST;
  }
  reg->next = regs_head;
  regs_head = reg;
  pthread_rwlock_unlock(&regs_lock);
  return KEEL_OK;
}

int keel_registry_new(const keel_registry_opts *opts, keel_registry **out) {
  static const keel_registry_opts dflt = {0};
  const keel_registry_opts *o = opts != NULL ? opts : &dflt;
  if (out == NULL || check_opts(o) != KEEL_OK)
    return KEEL_EINVAL;
  pthread_once(&reg_once, reg_init_once);
  if (reg_hook_id < 0)
    return KEEL_ESYSLIMIT;
  keel_registry *reg = calloc(1, sizeof *reg);
  if (reg == NULL)
    return KEEL_ENOMEM;
  reg->keys = o->keys;
  reg->nparts = o->partitions != 0 ? o->partitions : 1;
  reg->name = o->name;
  reg->nlisteners = o->nlisteners;
  for (size_t i = 0; i < o->nlisteners; i++)
    reg->listeners[i] = o->listeners[i];
  int rc = make_tables(reg);
  if (rc == KEEL_OK)
    rc = publish(reg);
  if (rc != KEEL_OK) {
    free_tables(reg);
    free(reg);
    return rc;
  }
  *out = reg;
  return KEEL_OK;
}

int keel_registry_delete(keel_registry *reg) {
  if (reg == NULL)
    return KEEL_OK;
  pthread_rwlock_wrlock(&regs_lock);
  for (keel_registry **pp = &regs_head; *pp != NULL; pp = &(*pp)->next)
    if (*pp == reg) {
      *pp = reg->next;
      break;
    }
  pthread_rwlock_unlock(&regs_lock);
  free_tables(reg);
  free(reg);
  return KEEL_OK;
}

keel_registry *keel_registry_find(keel_term name) {
  if (!keel_is_atom(name))
    return NULL;
  pthread_rwlock_rdlock(&regs_lock);
  keel_registry *r = find_locked(name);
  pthread_rwlock_unlock(&regs_lock);
  return r;
}

/* The calling process's pid, or KEEL_NONE. */
static keel_term self_pid(void) {
  keel_proc *p = keel_current();
  return p != NULL ? keel_self(p) : KEEL_NONE;
}

static int insert_entry(keel_registry *reg, keel_ets_tab t, keel_term obj) {
  if (reg->keys == KEEL_REGISTRY_UNIQUE) {
    int rc = keel_ets_insert_new(t, obj);
    return rc == 1 ? KEEL_OK : rc == 0 ? KEEL_EEXIST : rc;
  }
  return keel_ets_insert(t, obj);
}

int keel_registry_register(keel_registry *reg, keel_term key, keel_term value) {
  if (reg == NULL || key == KEEL_NONE || value == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid = self_pid();
  if (pid == KEEL_NONE)
    return KEEL_ESTATE;
  int rc = keel_exit_hook_arm(pid, reg_hook_id);
  if (rc != KEEL_OK)
    return rc;
  keel_ets_tab t = part_of(reg, key, pid);
  uint64_t buf[8]; /* the two tuples: 4 + 3 words */
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term obj = keel_tuple(&h, 3, key, pid, value);
  keel_term row = keel_tuple(&h, 2, pid, key);
  rc = insert_entry(reg, t, obj);
  if (rc == KEEL_OK) {
    rc = keel_ets_insert(reg->pids, row);
    if (rc != KEEL_OK)
      (void)keel_ets_delete_object(t, obj);
  }
  if (rc == KEEL_OK)
    notify(reg, key, pid, value);
  return rc;
}

int keel_registry_unregister(keel_registry *reg, keel_term key) {
  if (reg == NULL || key == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid = self_pid();
  if (pid == KEEL_NONE)
    return KEEL_ESTATE;
  int64_t n = drop_key(reg, key, pid, true, true);
  return n < 0 ? (int)n : KEEL_OK;
}

/* [{{Key, PidPat, Pattern}, Guards, [Body]}] built in h. */
static keel_term key_spec(keel_heap *h, keel_term key, keel_term pid_pat,
                          keel_term pattern, keel_term guards, keel_term body) {
  keel_term head = keel_tuple(h, 3, key, pid_pat, pattern);
  keel_term clause =
      keel_tuple(h, 3, head, guards, keel_cons(h, body, KEEL_NIL));
  return keel_cons(h, clause, KEEL_NIL);
}

int64_t keel_registry_unregister_match(keel_registry *reg, keel_term key,
                                       keel_term pattern, keel_term guards) {
  if (reg == NULL || key == KEEL_NONE || pattern == KEEL_NONE ||
      guards == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid = self_pid();
  if (pid == KEEL_NONE)
    return KEEL_ESTATE;
  keel_ets_tab t = part_of(reg, key, pid);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = key_spec(&h, key, pid, pattern, guards, keel_atom("$_"));
  keel_term objs;
  int64_t n = 0;
  int rc = keel_ets_select(t, spec, &h, &objs);
  for (; rc == KEEL_OK && keel_is_cons(objs); objs = keel_tl(objs), n++)
    rc = keel_ets_delete_object(t, keel_hd(objs));
  if (rc == KEEL_OK && n > 0) {
    /* The pid index keeps one {Pid, Key} per entry left: delete_object
     * removes them all, then as many as are left go back (only pid
     * writes its own objects, so nobody sees them half-way but readers
     * of keys/2). */
    int64_t left = keel_ets_select_count(
        t, key_spec(&h, key, pid, keel_atom("_"), KEEL_NIL, KEEL_ATOM(TRUE)));
    keel_term row = keel_tuple(&h, 2, pid, key);
    rc = left < 0 ? (int)left : keel_ets_delete_object(reg->pids, row);
    for (int64_t i = 0; rc == KEEL_OK && i < left; i++)
      rc = keel_ets_insert(reg->pids, row);
    if (rc == KEEL_OK)
      notify(reg, key, pid, KEEL_NONE);
  }
  keel_heap_destroy(&h);
  return rc == KEEL_OK ? n : rc;
}

/* Prepends {Pid, Value} of each {Key, Pid, Value} of objs to acc, in h. */
static keel_term to_pid_values(keel_heap *h, keel_term objs, keel_term acc) {
  for (; keel_is_cons(objs) && acc != KEEL_NONE; objs = keel_tl(objs)) {
    keel_term o = keel_hd(objs);
    keel_term pv = keel_tuple(h, 2, keel_tuple_get(o, 1),
                              keel_term_copy(h, keel_tuple_get(o, 2)));
    acc = pv == KEEL_NONE ? KEEL_NONE : keel_cons(h, pv, acc);
  }
  return acc;
}

/* Whether every partition must be read for key. */
static bool all_parts(const keel_registry *reg) {
  return reg->keys == KEEL_REGISTRY_DUPLICATE && reg->nparts > 1;
}

static void key_parts(const keel_registry *reg, keel_term key, unsigned *lo,
                      unsigned *hi) {
  *lo = 0;
  *hi = reg->nparts;
  if (all_parts(reg))
    return;
  *lo = keel__registry_part(reg, key);
  *hi = *lo + 1;
}

/* Elements pos..pos + n - 1 of the entries under key, as n-tuples in a
 * list built in h: one table read per partition, copied straight into h. */
static int read_parts(keel_registry *reg, keel_term key, size_t pos, size_t n,
                      keel_heap *h, keel_term *out) {
  unsigned lo, hi;
  key_parts(reg, key, &lo, &hi);
  if (hi == lo + 1) /* one partition: its list as it is */
    return keel_ets_lookup_elements(reg->parts[lo], key, pos, n, h, out);
  keel_term acc = KEEL_NIL;
  for (unsigned i = lo; i < hi; i++) {
    keel_term l;
    int rc = keel_ets_lookup_elements(reg->parts[i], key, pos, n, h, &l);
    if (rc != KEEL_OK)
      return rc;
    for (; keel_is_cons(l); l = keel_tl(l))
      if ((acc = keel_cons(h, keel_hd(l), acc)) == KEEL_NONE)
        return KEEL_ENOMEM;
  }
  *out = acc;
  return KEEL_OK;
}

int keel_registry_lookup(keel_registry *reg, keel_term key, keel_heap *h,
                         keel_term *out) {
  if (reg == NULL || key == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  return read_parts(reg, key, 2, 2, h, out);
}

keel_term keel_registry_whereis(keel_registry *reg, keel_term key) {
  if (reg == NULL || key == KEEL_NONE)
    return KEEL_ATOM(UNDEFINED);
  uint64_t buf[8]; /* [{Pid}]: a unique key's answer needs 4 words */
  keel_heap h;
  if (reg->keys == KEEL_REGISTRY_UNIQUE)
    keel_heap_init_fixed(&h, buf, 8);
  else
    keel_heap_init(&h);
  keel_term l, pid = KEEL_ATOM(UNDEFINED);
  if (read_parts(reg, key, 2, 1, &h, &l) == KEEL_OK && keel_is_cons(l))
    pid = keel_tuple_get(keel_hd(l), 0);
  keel_heap_destroy(&h);
  return pid;
}

/* Runs spec over the partitions [lo, hi) and appends the results in h. */
static int select_parts(keel_registry *reg, unsigned lo, unsigned hi,
                        keel_term spec, keel_heap *h, keel_term *out) {
  keel_term acc = KEEL_NIL;
  for (unsigned i = lo; i < hi; i++) {
    keel_term res;
    int rc = keel_ets_select(reg->parts[i], spec, h, &res);
    if (rc != KEEL_OK)
      return rc;
    for (; keel_is_cons(res); res = keel_tl(res))
      if ((acc = keel_cons(h, keel_hd(res), acc)) == KEEL_NONE)
        return KEEL_ENOMEM;
  }
  *out = acc;
  return KEEL_OK;
}

int keel_registry_match(keel_registry *reg, keel_term key, keel_term pattern,
                        keel_term guards, keel_heap *h, keel_term *out) {
  if (reg == NULL || key == KEEL_NONE || pattern == KEEL_NONE ||
      guards == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term spec =
      key_spec(&tmp, key, keel_atom("_"), pattern, guards, keel_atom("$_"));
  unsigned lo, hi;
  key_parts(reg, key, &lo, &hi);
  keel_term objs;
  int rc = select_parts(reg, lo, hi, spec, &tmp, &objs);
  keel_term acc = rc == KEEL_OK ? to_pid_values(h, objs, KEEL_NIL) : KEEL_NIL;
  if (rc == KEEL_OK && acc == KEEL_NONE)
    rc = KEEL_ENOMEM;
  keel_heap_destroy(&tmp);
  if (rc == KEEL_OK)
    *out = acc;
  return rc;
}

int keel_registry_select(keel_registry *reg, keel_term spec, keel_heap *h,
                         keel_term *out) {
  if (reg == NULL || spec == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  return select_parts(reg, 0, reg->nparts, spec, h, out);
}

int64_t keel_registry_count(keel_registry *reg) {
  if (reg == NULL)
    return KEEL_EINVAL;
  int64_t n = 0;
  for (unsigned i = 0; i < reg->nparts; i++) {
    keel_ets_info info;
    int rc = keel_ets_info_get(reg->parts[i], &info);
    if (rc != KEEL_OK)
      return rc;
    n += (int64_t)info.size;
  }
  return n;
}

static int64_t count_parts(keel_registry *reg, unsigned lo, unsigned hi,
                           keel_term spec) {
  int64_t n = 0;
  for (unsigned i = lo; i < hi; i++) {
    int64_t c = keel_ets_select_count(reg->parts[i], spec);
    if (c < 0)
      return c;
    n += c;
  }
  return n;
}

int64_t keel_registry_count_match(keel_registry *reg, keel_term key,
                                  keel_term pattern, keel_term guards) {
  if (reg == NULL || key == KEEL_NONE || pattern == KEEL_NONE ||
      guards == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec =
      key_spec(&h, key, keel_atom("_"), pattern, guards, KEEL_ATOM(TRUE));
  unsigned lo, hi;
  key_parts(reg, key, &lo, &hi);
  int64_t n = spec == KEEL_NONE ? KEEL_ENOMEM : count_parts(reg, lo, hi, spec);
  keel_heap_destroy(&h);
  return n;
}

int64_t keel_registry_count_select(keel_registry *reg, keel_term spec) {
  if (reg == NULL || spec == KEEL_NONE)
    return KEEL_EINVAL;
  return count_parts(reg, 0, reg->nparts, spec);
}

/* ---- {via, registry, {RegName, Key}} or {RegName, Key, Value} ---------- */

static keel_registry *via_reg(keel_term name) {
  if (!keel_is_tuple(name) || keel_tuple_arity(name) < 2 ||
      keel_tuple_arity(name) > 3)
    return NULL;
  return keel_registry_find(keel_tuple_get(name, 0));
}

static keel_term via_whereis(keel_term name) {
  keel_registry *reg = via_reg(name);
  return reg != NULL ? keel_registry_whereis(reg, keel_tuple_get(name, 1))
                     : KEEL_ATOM(UNDEFINED);
}

static int via_register(keel_term name, keel_term pid) {
  keel_registry *reg = via_reg(name);
  if (reg == NULL)
    return KEEL_ENOENT;
  if (pid != self_pid())
    return KEEL_ESTATE;
  keel_term value = keel_tuple_arity(name) == 3 ? keel_tuple_get(name, 2)
                                                : KEEL_ATOM(UNDEFINED);
  return keel_registry_register(reg, keel_tuple_get(name, 1), value);
}

static int via_unregister(keel_term name) {
  keel_registry *reg = via_reg(name);
  return reg != NULL ? keel_registry_unregister(reg, keel_tuple_get(name, 1))
                     : KEEL_ENOENT;
}
