/*
 * names.c - registered process names (erlang:register/whereis).
 *
 * The table is indexed by atom index: chunks of RT_NAME_CHUNK atomic
 * words holding pid number + 1 (0 = free), allocated on first use and freed at
 * node stop, so whereis is two loads and no lock. A process's own name lives in
 * its PCB (keel_proc.name), so a death releases it without searching.
 *
 * Registering another process pins it (as a sender does) while both
 * sides are written: a death waits for the pin, then finds the name and
 * clears it, so a name can never outlive its process.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"

#define RT_NAME_CHUNK_BITS 12
#define RT_NAME_CHUNK (1u << RT_NAME_CHUNK_BITS)

typedef struct rt_names {
  size_t nchunks;
  _Atomic(_Atomic uint64_t *) chunks[];
} rt_names;

int keel__rt_names_init(rt_node *n) {
  size_t nchunks = (keel_atom_limit() + RT_NAME_CHUNK - 1) / RT_NAME_CHUNK;
  rt_names *t = calloc(1, sizeof *t + nchunks * sizeof t->chunks[0]);
  if (t == NULL)
    return KEEL_ENOMEM;
  t->nchunks = nchunks;
  n->names = t;
  return KEEL_OK;
}

void keel__rt_names_destroy(rt_node *n) {
  rt_names *t = n->names;
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->nchunks; i++)
    free((void *)atomic_load_explicit(&t->chunks[i], memory_order_relaxed));
  free(t);
  n->names = NULL;
}

/* The slot of atom index idx; created when `create`. NULL when absent. */
static _Atomic uint64_t *slot_of(rt_names *t, uint32_t idx, bool create) {
  size_t c = idx >> RT_NAME_CHUNK_BITS;
  if (c >= t->nchunks)
    return NULL;
  _Atomic uint64_t *chunk =
      atomic_load_explicit(&t->chunks[c], memory_order_acquire);
  if (chunk == NULL && create) {
    _Atomic uint64_t *fresh =
        keel__fault() ? NULL : calloc(RT_NAME_CHUNK, sizeof *fresh);
    if (fresh == NULL)
      return NULL;
    _Atomic uint64_t *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&t->chunks[c], &expected, fresh,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
      chunk = fresh;
    else {
      free((void *)fresh);
      chunk = expected;
    }
  }
  return chunk == NULL ? NULL : &chunk[idx & (RT_NAME_CHUNK - 1)];
}

static bool valid_name(keel_term name) {
  return keel_is_atom(name) && name != KEEL_ATOM(UNDEFINED);
}

int keel_register(keel_term name, keel_term pid) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!valid_name(name) || !keel_is_local_pid(pid))
    return KEEL_EBADARG;
  uint32_t idx = keel_atom_index(name);
  _Atomic uint64_t *slot = slot_of(n->names, idx, true);
  if (slot == NULL)
    return KEEL_ENOMEM;
  uint64_t num = keel_pid_local_number(pid);
  keel_proc *p = keel__rt_pin(n, num);
  uint64_t word = num + 1;
  if (p == NULL)
    return KEEL_ENOPROC;
  int rc = KEEL_OK;
  uint64_t free_slot = 0;
  uint32_t no_name = 0;
  if (!atomic_compare_exchange_strong_explicit(
          slot, &free_slot, word, memory_order_acq_rel, memory_order_relaxed))
    rc = KEEL_EEXIST;
  else if (!atomic_compare_exchange_strong_explicit(&p->name, &no_name, idx + 1,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed)) {
    uint64_t mine = word;
    (void)atomic_compare_exchange_strong_explicit(
        slot, &mine, 0, memory_order_acq_rel, memory_order_relaxed);
    rc = KEEL_EEXIST; /* pid has a name already */
  }
  keel__rt_unpin(p);
  return rc;
}

int keel_unregister(keel_term name) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!valid_name(name))
    return KEEL_EBADARG;
  uint32_t idx = keel_atom_index(name);
  _Atomic uint64_t *slot = slot_of(n->names, idx, false);
  uint64_t word = slot != NULL ? atomic_load(slot) : 0;
  if (word == 0 || !atomic_compare_exchange_strong(slot, &word, 0))
    return KEEL_ENOENT;
  keel_proc *p = keel__rt_slot(n, (uint32_t)((word - 1) & RT_IDX_MASK));
  uint32_t mine = idx + 1;
  if (p != NULL)
    (void)atomic_compare_exchange_strong(&p->name, &mine, 0);
  return KEEL_OK;
}

keel_term keel_whereis(keel_term name) {
  rt_node *n = keel__rt;
  if (n == NULL || !valid_name(name))
    return KEEL_ATOM(UNDEFINED);
  _Atomic uint64_t *slot = slot_of(n->names, keel_atom_index(name), false);
  uint64_t word =
      slot != NULL ? atomic_load_explicit(slot, memory_order_acquire) : 0;
  return word != 0 ? keel_pid_local(word - 1) : KEEL_ATOM(UNDEFINED);
}

keel_term keel_registered_name(keel_term pid) {
  rt_node *n = keel__rt;
  if (n == NULL || !keel_is_local_pid(pid))
    return KEEL_ATOM(UNDEFINED);
  keel_proc *p = keel__rt_lookup(n, keel_pid_local_number(pid));
  uint32_t v = p != NULL ? atomic_load(&p->name) : 0;
  return v != 0 ? keel_atom_from_index(v - 1) : KEEL_ATOM(UNDEFINED);
}

void keel__rt_name_release(rt_node *n, keel_proc *p) {
  uint32_t v = atomic_exchange_explicit(&p->name, 0, memory_order_acq_rel);
  if (v == 0)
    return;
  _Atomic uint64_t *slot = slot_of(n->names, v - 1, false);
  uint64_t mine = p->pid_number + 1;
  if (slot != NULL)
    (void)atomic_compare_exchange_strong_explicit(
        slot, &mine, 0, memory_order_acq_rel, memory_order_relaxed);
}
