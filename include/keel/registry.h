/*
 * keel/registry.h - Elixir's Registry: a local key/value process registry
 * (layer 5, otp), and the `via` name resolution other behaviours use.
 *
 * A registry maps keys to (pid, value) entries. Keys are
 *   unique          one entry per key (partitioned by key hash);
 *   duplicate       many entries per key, partitioned by pid hash (as
 *                   Elixir's :duplicate / {:duplicate, :pid});
 *   duplicate_key   many entries per key, partitioned by key hash
 *                   ({:duplicate, :key}: a lookup reads one partition).
 * Each partition is one ETS table of {Key, Pid, Value} objects (a set for
 * unique keys, a duplicate_bag otherwise) plus one duplicate_bag of
 * {Pid, Key}, one object per entry, that indexes the keys of every
 * registered pid. A registration costs O(1) however many entries the
 * process or the key already has; the cleanup at a process's death costs
 * O(its entries) (plus, for a duplicate key, the other entries under
 * it). Reads (lookup, match,
 * select, count, ...) go straight to the tables from the calling thread;
 * no process is involved.
 *
 * Only a process registers itself (register, unregister, update_value
 * act on the calling process's entries: keel_current()). Its entries
 * are removed when it dies by a runtime exit hook armed at its first
 * registration: the removal runs on the dying process's thread before
 * its links and monitors are told, so by the time anyone sees its 'DOWN'
 * or 'EXIT' every entry is gone (there is no window).
 *
 * A registry created from a process has its tables owned by that process
 * (as Elixir's registry belongs to its supervisor): when the process
 * dies the tables go and every call returns KEEL_EBADARG until the
 * registry is deleted. A registry created from a thread that runs no
 * process lives until keel_registry_delete.
 *
 * Thread-safety: every function may be called from any thread and any
 * process concurrently, except that a registry must not be used while or
 * after keel_registry_delete runs on it, and a keel_heap passed in belongs
 * to the calling thread.
 */
#ifndef KEEL_REGISTRY_H
#define KEEL_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_registry keel_registry;

typedef enum keel_registry_kind {
  KEEL_REGISTRY_UNIQUE = 0,
  KEEL_REGISTRY_DUPLICATE,    /* partitioned by pid */
  KEEL_REGISTRY_DUPLICATE_KEY /* partitioned by key */
} keel_registry_kind;

/* Most partitions and listeners of one registry. */
#define KEEL_REGISTRY_MAX_PARTITIONS 256u
#define KEEL_REGISTRY_MAX_LISTENERS 16u

/* Options of keel_registry_new. Zero-initialise, then set what you need. */
typedef struct keel_registry_opts {
  keel_registry_kind keys;
  /* Partitions; 0 means 1. At most KEEL_REGISTRY_MAX_PARTITIONS. */
  unsigned partitions;
  /* An atom naming the registry (keel_registry_find, via names, the
   * listener messages), or KEEL_NONE: unnamed (messages then name it
   * 'undefined'). */
  keel_term name;
  /* Local pids told of every registration with the message
   * {register, Name, Key, Pid, Value} and of every removal (unregister or
   * death) with {unregister, Name, Key, Pid} (Elixir's :listeners). */
  const keel_term *listeners;
  size_t nlisteners;
} keel_registry_opts;

/* Creates a registry (opts NULL: unique keys, one partition, unnamed).
 * *out is owned by the caller until keel_registry_delete.
 * Errors: KEEL_EINVAL (bad keys, partitions or listener count, name not
 * an atom, listener not a local pid, out NULL), KEEL_EEXIST (a registry
 * with that name exists), KEEL_ESYSLIMIT (no exit hook or table left),
 * KEEL_ENOMEM. */
int keel_registry_new(const keel_registry_opts *opts, keel_registry **out);

/* Deletes a registry, its tables and its entries (no listener is told).
 * Waits for cleanups of dying processes in progress on it. NULL is a
 * no-op. KEEL_OK. */
int keel_registry_delete(keel_registry *reg);

/* The registry named name (an atom), or NULL. */
keel_registry *keel_registry_find(keel_term name);

/* Registers the calling process under key with value (both copied).
 * Unique keys: KEEL_EEXIST when the key has an entry (also the caller's
 * own); duplicate keys: a process may register one key many times.
 * Errors: KEEL_ESTATE (caller is not a process), KEEL_EINVAL (reg NULL,
 * key or value KEEL_NONE), KEEL_EBADARG (tables gone), KEEL_ENOMEM. */
int keel_registry_register(keel_registry *reg, keel_term key, keel_term value);

/* Removes every entry of the calling process under key. KEEL_OK also when
 * there is none. Errors: KEEL_ESTATE, KEEL_EINVAL, KEEL_EBADARG. */
int keel_registry_unregister(keel_registry *reg, keel_term key);

/* Removes the calling process's entries under key whose value matches
 * pattern (an ETS match-spec head element, e.g. '_' or {'$1', x}) and
 * guards (a list of match-spec guards, KEEL_NIL for none). Returns how
 * many were removed, or KEEL_ESTATE, KEEL_EINVAL, KEEL_EBADARG (bad
 * pattern or guard). */
int64_t keel_registry_unregister_match(keel_registry *reg, keel_term key,
                                       keel_term pattern, keel_term guards);

/* The entries under key as a list of {Pid, Value}, built in h ([] when
 * none), in no particular order for duplicate keys (as Elixir's). Errors:
 * KEEL_EINVAL (NULL argument), KEEL_EBADARG, KEEL_ENOMEM. */
int keel_registry_lookup(keel_registry *reg, keel_term key, keel_heap *h,
                         keel_term *out);

/* The pid registered under a unique key, or 'undefined' (also for a
 * duplicate registry: the pid of one of its entries). Never a dead process once
 * the process's 'DOWN' could have been seen. */
keel_term keel_registry_whereis(keel_registry *reg, keel_term key);

/* Registry.match: the {Pid, Value} entries under key whose value matches
 * pattern and guards (see unregister_match), as a list built in h.
 * The key is used as a literal head element: a key containing the atoms
 * '_' or '$N' matches as a pattern would. */
int keel_registry_match(keel_registry *reg, keel_term key, keel_term pattern,
                        keel_term guards, keel_heap *h, keel_term *out);

/* Registry.select: runs the match spec over every {Key, Pid, Value} entry
 * of every partition; the results, concatenated, built in h. Errors:
 * KEEL_EBADARG (malformed spec), KEEL_EINVAL, KEEL_ENOMEM. */
int keel_registry_select(keel_registry *reg, keel_term spec, keel_heap *h,
                         keel_term *out);

/* Number of entries (Registry.count), of entries under key matching
 * pattern and guards (count_match), and of entries for which spec returns
 * true (count_select). Negative KEEL_E* on error. */
int64_t keel_registry_count(keel_registry *reg);
int64_t keel_registry_count_match(keel_registry *reg, keel_term key,
                                  keel_term pattern, keel_term guards);
int64_t keel_registry_count_select(keel_registry *reg, keel_term spec);

/* The keys pid is registered under, as a list built in h, in no
 * particular order: a key comes as many times as pid has entries under
 * it (Elixir's Registry.keys; only a duplicate registry has several).
 * Errors: KEEL_EINVAL (NULL argument), KEEL_EBADARG (pid not a local
 * pid, tables gone), KEEL_ENOMEM. */
int keel_registry_keys(keel_registry *reg, keel_term pid, keel_heap *h,
                       keel_term *out);

/* The values pid has under key (Registry.values), as a list built in h. */
int keel_registry_values(keel_registry *reg, keel_term key, keel_term pid,
                         keel_heap *h, keel_term *out);

/* Computes a new value from the old one: built in h, KEEL_NONE to keep
 * the old value. */
typedef keel_term (*keel_registry_update_fn)(keel_term old, keel_heap *h,
                                             void *arg);

/* Registry.update_value (unique keys): when the calling process owns the
 * entry under key, replaces its value with fn(old) and stores the new and
 * old values (built in h) in *new_out / *old_out (either may be NULL).
 * Errors: KEEL_ENOENT (no entry, or another process's), KEEL_EUNSUPPORTED
 * (duplicate registry), KEEL_ESTATE, KEEL_EINVAL, KEEL_EBADARG. */
int keel_registry_update_value(keel_registry *reg, keel_term key,
                               keel_registry_update_fn fn, void *arg,
                               keel_heap *h, keel_term *new_out,
                               keel_term *old_out);

/* Called by dispatch with the entries of one partition, a non-empty list
 * of {Pid, Value} that lives until it returns. */
typedef void (*keel_registry_dispatch_fn)(keel_term entries, void *arg);

/* Registry.dispatch: calls fn on the calling thread once per partition
 * that has entries under key (serially). Returns the number of calls, or
 * KEEL_EINVAL, KEEL_EBADARG, KEEL_ENOMEM. */
int keel_registry_dispatch(keel_registry *reg, keel_term key,
                           keel_registry_dispatch_fn fn, void *arg);

/* Registry.meta / put_meta: registry-wide metadata. meta copies the value
 * into h; KEEL_ENOENT when absent. put_meta copies key and value in. */
int keel_registry_meta(keel_registry *reg, keel_term key, keel_heap *h,
                       keel_term *out);
int keel_registry_put_meta(keel_registry *reg, keel_term key, keel_term value);

/* ------------------------------------------------------------------------ */
/* Via names: {via, Module, Name}                                           */
/* ------------------------------------------------------------------------ */

#define KEEL_VIA_MODULE_VERSION 1

/* A name module (OTP's via callback module): how {via, Module, Name}
 * resolves. Static storage; the functions must not block. */
typedef struct keel_via_module {
  int version; /* KEEL_VIA_MODULE_VERSION */
  /* The pid Name names, or 'undefined'. */
  keel_term (*whereis_name)(keel_term name);
  /* Registers pid under Name: KEEL_OK or a negative KEEL_E*. */
  int (*register_name)(keel_term name, keel_term pid);
  /* Removes Name: KEEL_OK or a negative KEEL_E*. */
  int (*unregister_name)(keel_term name);
  /* Optional (NULL: send to whereis_name's pid): sends msg to the process
   * Name names (Module:send/2). KEEL_OK, KEEL_ENOPROC when Name names no
   * process, or a negative KEEL_E*. */
  int (*send)(keel_term name, keel_term msg);
} keel_via_module;

/* Most via modules. */
#define KEEL_VIA_MAX_MODULES 16

/* Installs m as the module named by the atom module (for the life of the
 * program). Errors: KEEL_EINVAL (not an atom, NULL, wrong version or a
 * NULL whereis_name), KEEL_EEXIST (module taken), KEEL_ESYSLIMIT. The
 * registry installs itself as 'registry' at its first keel_registry_new:
 * {via, registry, {RegName, Key}} and {via, registry, {RegName, Key,
 * Value}} then name processes (register_name registers the calling
 * process, which must be pid). Thread-safe. */
int keel_via_add(keel_term module, const keel_via_module *m);

/* ---- {global, Name} ------------------------------------------------------
 * OTP's global names, node-local until distribution lands (a deliberate
 * difference: a name is unique on this node only, and no other node sees
 * it). Names are any terms (copied); a process may have several. A name
 * goes when its process dies, before the process's links and monitors are
 * told. Thread-safe. */

/* global:register_name. KEEL_OK, KEEL_EEXIST (the name is taken),
 * KEEL_EBADARG (pid not a local pid, name KEEL_NONE), KEEL_ENOPROC (pid
 * is dead), KEEL_ESYSLIMIT (no exit hook left), KEEL_ENOMEM. */
int keel_global_register_name(keel_term name, keel_term pid);
/* global:unregister_name: KEEL_OK, also when the name is not registered. */
int keel_global_unregister_name(keel_term name);
/* global:whereis_name: the pid, or 'undefined'. */
keel_term keel_global_whereis_name(keel_term name);
/* global:registered_names: a list of the names, built in h. KEEL_OK,
 * KEEL_EINVAL, KEEL_ENOMEM. */
int keel_global_registered_names(keel_heap *h, keel_term *out);

/* Resolves a process name: a local pid (itself), an atom (keel_whereis),
 * {global, Name} (keel_global_whereis_name) or {via, Module, Name}. Returns the
 * pid or 'undefined' (also for a malformed name or an unknown module).
 * Thread-safe. */
keel_term keel_name_whereis(keel_term name);

/* Registers pid under name: an atom (keel_register), {global, Name} or
 * {via, M, Name}.
 * Errors: KEEL_EBADARG (malformed name), KEEL_ENOENT (unknown module),
 * and the module's or keel_register's errors. */
int keel_name_register(keel_term name, keel_term pid);

/* Removes a name registered with keel_name_register. */
int keel_name_unregister(keel_term name);

/* Sends msg to the process name resolves to (erlang:send with a name, or
 * Module:send: the via module's send when it has one, else a send to its
 * whereis_name's pid). Errors: KEEL_ENOPROC (the name resolves to nothing, as
 * OTP's badarg/exit), KEEL_EBADARG, and keel_send's errors. */
int keel_name_send(keel_term name, keel_term msg);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_REGISTRY_H */
