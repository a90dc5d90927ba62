/*
 * keel/ets.h - ETS-like term storage: tables of tuples shared between
 * processes and threads (layer 4, tables).
 *
 * A table holds tuples ("objects"); element `keypos` (1-based) of each
 * object is its key. Four types, as in Erlang's ets:
 *   set            one object per key, keys compared exactly (1 =/= 1.0)
 *   ordered_set    one object per key, kept in term order, keys compared
 *                  with == (1 and 1.0 are the same key)
 *   bag            many objects per key, no two identical objects
 *   duplicate_bag  many objects per key, identical objects allowed
 *
 * Storage: every object is copied into the table as one flat allocation
 * (large binaries and resources are shared by reference count, as
 * keel_term_copy does). Reads copy objects out into a heap the caller
 * passes, so a result never points into the table.
 *
 * Table ids (keel_ets_tab) are generation-counted handles: once a table is
 * deleted its id names nothing, and every call with it returns
 * KEEL_EBADARG, also after the slot is reused by a new table. 0 is never a
 * valid id.
 *
 * Callers and access. The calling process is keel_current(); its pid is
 * the caller's identity. protected (the default): the owner writes,
 * everyone reads; public: everyone reads and writes; private: only the
 * owner reads or writes. A thread that is not running a process (the
 * main thread, a test thread, a C library thread) has full access to
 * every table: it acts with the owner's rights. A table created from such
 * a thread has no owner (owner = KEEL_NONE) unless opts.owner names one,
 * and then lives until deleted explicitly or by keel_ets_delete_all_tables.
 * No process owns an ownerless table: processes may write it only if it is
 * public, and never delete it (create tables meant for processes as
 * public, or give them an owner).
 *
 * Lifetime. Tables do not need a running node: the table registry is
 * global to the OS process. A table is freed by keel_ets_delete, when its
 * owner exits (the runtime's exit hook deletes it or hands it to its heir;
 * see docs/tables.md) or by keel_ets_delete_all_tables. Sending
 * 'ETS-TRANSFER' messages (heir, give_away) needs a running node.
 *
 * Atomicity and isolation (ETS5): every call that writes one object is
 * atomic and isolated; insert of a list is atomic (all objects become
 * visible together for ordered_set; for the hashed types every object of
 * the list is inserted while all the stripes it touches are locked).
 * Traversals (first/next/last/prev, tab2list, match, select) see no
 * consistent snapshot under concurrent writes, but a traversal by
 * first/next or by a continuation never fails, never repeats a key and
 * visits every object present throughout exactly once; see
 * docs/tables.md.
 *
 * Errors are negative KEEL_E* codes, Erlang's badarg being KEEL_EBADARG
 * (a stale id, a non-tuple object, a tuple shorter than keypos, an access
 * violation, a malformed argument), KEEL_ENOENT a missing key where
 * Erlang raises badarg for it, KEEL_ENOMEM out of memory.
 *
 * Thread-safety: every function is callable from any thread and any
 * process at the same time, on the same or different tables, except that
 * a keel_heap passed in belongs to the calling thread.
 */
#ifndef KEEL_ETS_H
#define KEEL_ETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A table id; 0 is never valid. */
typedef uint64_t keel_ets_tab;

typedef enum keel_ets_type {
  KEEL_ETS_SET = 0,
  KEEL_ETS_ORDERED_SET,
  KEEL_ETS_BAG,
  KEEL_ETS_DUPLICATE_BAG
} keel_ets_type;

typedef enum keel_ets_access {
  KEEL_ETS_PROTECTED = 0,
  KEEL_ETS_PUBLIC,
  KEEL_ETS_PRIVATE
} keel_ets_access;

/* Options of keel_ets_new. Zero-initialise, then set what you need. */
typedef struct keel_ets_opts {
  keel_ets_type type;
  keel_ets_access access;
  /* named_table: an atom, or KEEL_NONE (0) for an unnamed table. */
  keel_term name;
  /* Key position, 1-based; 0 means 1. */
  unsigned keypos;
  /* Owner pid (a local pid); KEEL_NONE: the calling process, or no owner
   * when called from a thread that runs no process. */
  keel_term owner;
  /* {heir, Pid, Data}: a local pid or KEEL_NONE (no heir). heir_data is
   * copied into the table (KEEL_NONE means the atom undefined). */
  keel_term heir;
  keel_term heir_data;
  /* duplicate_bag only (a Keel extension; KEEL_EINVAL with another type):
   * the objects of one key are kept in no particular order (lookup, take,
   * select and traversal may return them in any order; today newest
   * first), so that an insert costs O(1) however many objects share its
   * key. false (the default): insertion order, as ETS documents, and an
   * insert walks the objects of its key. */
  bool any_order;
} keel_ets_opts;

/* What keel_ets_info reports. */
typedef struct keel_ets_info {
  size_t size;     /* objects */
  size_t memory;   /* words (8 bytes) used by the table and its objects */
  keel_term owner; /* KEEL_NONE when the table has no owner */
  keel_term heir;  /* KEEL_NONE when none */
  keel_term name;  /* the name atom, or KEEL_NONE */
  keel_ets_type type;
  keel_ets_access access;
  unsigned keypos;
} keel_ets_info;

/* ---- Tables ------------------------------------------------------------ */

/* Creates a table (opts may be NULL: an unnamed protected set, keypos 1).
 * *out receives its id. Errors: KEEL_EINVAL (bad type/access, keypos > 2^24,
 * name not an atom, owner/heir not a local pid), KEEL_EEXIST (a table
 * with that name exists), KEEL_ESYSLIMIT (too many tables), KEEL_ENOMEM. */
int keel_ets_new(const keel_ets_opts *opts, keel_ets_tab *out);

/* Deletes a table and frees its objects. Only the owner (or a thread that
 * runs no process) may delete it, whatever its access, as in Erlang.
 * Errors: KEEL_EBADARG (stale id, not the owner). Waits for calls in
 * progress on the table to finish; calls that start later get
 * KEEL_EBADARG. */
int keel_ets_delete(keel_ets_tab tab);

/* Finds a named table. KEEL_OK, KEEL_ENOENT (no such name), KEEL_EBADARG
 * (name not an atom). */
int keel_ets_whereis(keel_term name, keel_ets_tab *out);

/* A term naming the table: its name atom for a named table, otherwise
 * the id as an integer (the Tab element of 'ETS-TRANSFER' messages).
 * KEEL_NONE for a stale id. */
keel_term keel_ets_tab_term(keel_ets_tab tab);

/* The table a term names (an atom: keel_ets_whereis; an integer: an id).
 * KEEL_OK, KEEL_ENOENT, KEEL_EBADARG. The id is not checked further. */
int keel_ets_tab_from_term(keel_term t, keel_ets_tab *out);

/* Fills *out. Any caller may ask, whatever the table's access (as
 * ets:info/1). KEEL_OK or KEEL_EBADARG (stale id). */
int keel_ets_info_get(keel_ets_tab tab, keel_ets_info *out);

/* Words (8 bytes) the table uses; negative error as keel_ets_info_get. */
int64_t keel_ets_memory(keel_ets_tab tab);

/* Makes pid the owner and sends it {'ETS-TRANSFER', Tab, FromPid, Data}
 * (FromPid: the old owner, or undefined). The caller must be the owner (or
 * a thread that runs no process). Errors: KEEL_EBADARG (stale id, not the
 * owner, pid not a local pid, pid already the owner), KEEL_ESTATE (no node
 * runs to deliver the message; nothing changed). A pid that is dead gets
 * the table nevertheless (the runtime cannot tell yet). */
int keel_ets_give_away(keel_ets_tab tab, keel_term pid, keel_term data);

/* Deletes every table (e.g. before the OS process exits, or between
 * tests). No other call may run concurrently. */
void keel_ets_delete_all_tables(void);

/* ets:all/0: a list (built in h) of every live table as a term (see
 * keel_ets_tab_term). KEEL_OK or KEEL_ENOMEM. */
int keel_ets_all(keel_heap *h, keel_term *out);

/* Number of live tables. Thread-safe. */
size_t keel_ets_count(void);

/* ---- Writing ----------------------------------------------------------- */

/* Inserts one object (a tuple) or a proper list of objects, replacing
 * objects with the same key in a set/ordered_set. Atomic (see above).
 * Errors: KEEL_EBADARG (not a tuple, tuple shorter than keypos, improper
 * list, no write access, stale id), KEEL_ENOMEM (nothing inserted). */
int keel_ets_insert(keel_ets_tab tab, keel_term objs);

/* As keel_ets_insert, but inserts nothing if any key is already present
 * (or repeated within the list). Returns 1 (inserted) or 0. */
int keel_ets_insert_new(keel_ets_tab tab, keel_term objs);

/* Deletes every object with that key. KEEL_OK (also when absent). */
int keel_ets_delete_key(keel_ets_tab tab, keel_term key);

/* Deletes the object(s) exactly equal (=:=) to obj. KEEL_OK. */
int keel_ets_delete_object(keel_ets_tab tab, keel_term obj);

/* Deletes every object. KEEL_OK. */
int keel_ets_delete_all_objects(keel_ets_tab tab);

/* Removes the objects with that key and returns them as a list built in h
 * ([] when absent). */
int keel_ets_take(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out);

/* Atomic counter update (set and ordered_set only). ops is Incr (an
 * integer, applied to position keypos + 1), {Pos, Incr},
 * {Pos, Incr, Threshold, SetValue} (if the result passes Threshold,
 * upwards for Incr >= 0, downwards otherwise, it becomes SetValue) or a
 * proper list of those. dflt: KEEL_NONE, or the object inserted first when
 * the key is missing (its key is replaced by `key`). *out (built in h) is
 * the new value, or a list of the new values for a list of ops.
 * Counters are 64-bit: a result outside int64 gives KEEL_ESYSLIMIT and
 * changes nothing (bignum counters are not supported).
 * Errors: KEEL_ENOENT (key missing, no default), KEEL_EBADARG (bag type,
 * bad op, Pos is keypos or out of range, element not an integer, no
 * write access), KEEL_ESYSLIMIT, KEEL_ENOMEM. Nothing changes on error. */
int keel_ets_update_counter(keel_ets_tab tab, keel_term key, keel_term ops,
                            keel_term dflt, keel_heap *h, keel_term *out);

/* Replaces elements of the object with that key: spec is {Pos, Value} or
 * a proper list of those (set and ordered_set only). dflt as in
 * update_counter. Returns 1 (updated) or 0 (key missing, no default).
 * Errors: KEEL_EBADARG (Pos is keypos or out of range, bad spec, bag). */
int keel_ets_update_element(keel_ets_tab tab, keel_term key, keel_term spec,
                            keel_term dflt);

/* ---- Reading ----------------------------------------------------------- */

/* The objects with that key, as a list built in h ([] when none). Bag
 * objects come in insertion order. */
int keel_ets_lookup(keel_ets_tab tab, keel_term key, keel_heap *h,
                    keel_term *out);

/* Element pos (1-based) of the object with that key (for bags: the list of
 * that element of each object). dflt: returned when the key is missing, or
 * KEEL_NONE. Errors: KEEL_ENOENT (missing, no default), KEEL_EBADARG (pos
 * beyond an object's size, pos 0). */
int keel_ets_lookup_element(keel_ets_tab tab, keel_term key, size_t pos,
                            keel_term dflt, keel_heap *h, keel_term *out);

/* Elements pos..pos + n - 1 (1-based, n >= 1) of each object with that
 * key, each as an n-tuple built in h, in a list in lookup's order ([] when
 * none): lookup_element of several elements at once, without copying the
 * rest of the objects (a Keel extension). Errors: KEEL_EINVAL (h or out
 * NULL), KEEL_EBADARG (stale table, no read right, pos or n 0, an object
 * shorter than pos + n - 1), KEEL_ENOMEM. Thread-safe. */
int keel_ets_lookup_elements(keel_ets_tab tab, keel_term key, size_t pos,
                             size_t n, keel_heap *h, keel_term *out);

/* Deletes the objects with that key whose element pos (1-based) is =:=
 * value, in one pass over the key's objects (objects shorter than pos
 * stay): delete_object on one element, for a bag's key holding objects of
 * many owners, say (a Keel extension). Returns how many were deleted, or
 * KEEL_EINVAL (value KEEL_NONE), KEEL_EBADARG (stale table, no write
 * right, key KEEL_NONE, pos 0), KEEL_ENOMEM (nothing deleted).
 * Thread-safe. */
int64_t keel_ets_delete_by_element(keel_ets_tab tab, keel_term key, size_t pos,
                                   keel_term value);

/* 1 when an object with that key exists, 0 otherwise. */
int keel_ets_member(keel_ets_tab tab, keel_term key);

/* Traversal. Each returns 1 with the key copied into h, or 0 at the end of
 * the table (*out = '$end_of_table'). set types iterate in hash order,
 * ordered_set in term order. next/prev of a key that is not in the table:
 * ordered_set continues from its place in term order; the hashed types
 * continue from its place in their fixed hash order. So a traversal never
 * fails (no badarg for a key deleted meanwhile) and visits each key that
 * stays in the table exactly once, under any concurrent writes and
 * whether or not the table is fixed (keel_ets_safe_fixtable).
 * prev/last on hashed types behave as next/first, as in ETS. */
int keel_ets_first(keel_ets_tab tab, keel_heap *h, keel_term *out);
int keel_ets_last(keel_ets_tab tab, keel_heap *h, keel_term *out);
int keel_ets_next(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out);
int keel_ets_prev(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out);

/* Every object, as a list built in h. */
int keel_ets_tab2list(keel_ets_tab tab, keel_heap *h, keel_term *out);

/* ---- Match specifications ---------------------------------------------- */

/* A match specification is the Erlang term [{Head, Guards, Body}, ...]
 * (write it with keel_parse/keel_build). Head is a tuple pattern with
 * variables '$1', '$2', ... and '_'; Guards a list of guard expressions;
 * Body a list of expressions whose last value is the result. Expressions:
 * '$N', '$_' (the object), '$$' (all variables), constants, {const, X},
 * {{E1, ..., En}} (a tuple), lists of expressions, and calls {Op, Args...}
 * with Op one of: < > =< >= == /= =:= =/=, andalso orelse and or not xor,
 * + - * div rem abs, element, size, hd, tl, is_atom is_integer is_float
 * is_number is_tuple is_list is_binary is_pid is_map is_reference.
 * A guard that raises (e.g. '+' on an atom) fails the clause.
 * A head whose key element is fully bound (no variables) becomes a single
 * key lookup. */
typedef struct keel_ets_ms keel_ets_ms;

/* Compiles a match spec; *out is owned by the caller (keel_ets_ms_free).
 * Errors: KEEL_EBADARG (malformed spec, unknown function, a variable
 * beyond '$255'), KEEL_ELIMIT (nesting deeper than 1000), KEEL_ENOMEM. */
int keel_ets_ms_compile(keel_term spec, keel_ets_ms **out);
void keel_ets_ms_free(keel_ets_ms *ms);

/* Runs a compiled spec against one term (ets:match_spec_run on one
 * object). Returns 1 with the result in h, 0 when no clause matches. */
int keel_ets_ms_run(const keel_ets_ms *ms, keel_term obj, keel_heap *h,
                    keel_term *out);

/* select/2 with a spec term: the results of matching objects, as a list
 * built in h. */
int keel_ets_select(keel_ets_tab tab, keel_term spec, keel_heap *h,
                    keel_term *out);
/* select with a compiled spec. */
int keel_ets_select_ms(keel_ets_tab tab, const keel_ets_ms *ms, keel_heap *h,
                       keel_term *out);
/* Number of objects for which the spec returns true. */
int64_t keel_ets_select_count(keel_ets_tab tab, keel_term spec);
/* Deletes the objects for which the spec returns true (needs write
 * access); returns how many. */
int64_t keel_ets_select_delete(keel_ets_tab tab, keel_term spec);

/* ets:select_reverse/2: as keel_ets_select, in reverse term order for an
 * ordered_set (for the other types the same as keel_ets_select). */
int keel_ets_select_reverse(keel_ets_tab tab, keel_term spec, keel_heap *h,
                            keel_term *out);

/* ets:match_delete/2: deletes the objects matching pattern (needs write
 * access); returns how many. */
int64_t keel_ets_match_delete(keel_ets_tab tab, keel_term pattern);

/* ets:match/2: a list with, for each matching object, the list of the
 * pattern's '$N' bindings in variable order. */
int keel_ets_match(keel_ets_tab tab, keel_term pattern, keel_heap *h,
                   keel_term *out);
/* ets:match_object/2: the matching objects. */
int keel_ets_match_object(keel_ets_tab tab, keel_term pattern, keel_heap *h,
                          keel_term *out);

/* ---- Continuations (select/3, select/1, match/3, match/1, ...) -------- */

/* A continuation: the rest of a chunked select. Owned by the caller, who
 * frees it with keel_ets_cont_free (also after the table is deleted). One
 * thread at a time uses it; keel_ets_select_next advances it in place (an
 * Erlang continuation is a value that can be replayed; this one cannot).
 *
 * Resumption: a continuation remembers the last key it delivered and the
 * next chunk starts strictly after it in the table's order (term order
 * for ordered_set, a fixed hash order for the other types; see
 * docs/tables.md). So under concurrent inserts and deletes a chunked
 * select never fails and never delivers a key twice, and every object
 * present from the first call to the last is delivered exactly once
 * (objects inserted or deleted meanwhile may or may not be); this holds
 * for every type, with or without keel_ets_safe_fixtable.
 *
 * Chunks: at most `limit` results, except that the objects of one key of
 * a bag or duplicate_bag always come in the same chunk (a chunk may exceed
 * limit by the rest of one key's objects). */
typedef struct keel_ets_cont keel_ets_cont;

/* ets:select/3: the first chunk of the results of spec (a term; see
 * keel_ets_select). Returns 1 with *out a non-empty list built in h and
 * *cont a new continuation (pass it to keel_ets_select_next, free it with
 * keel_ets_cont_free), or 0 when nothing matches: *out = '$end_of_table'
 * and *cont = NULL. Errors (nothing allocated, *cont = NULL): KEEL_EBADARG
 * (stale id, malformed spec, limit 0, no read access), KEEL_ELIMIT,
 * KEEL_ENOMEM, KEEL_EINVAL (a NULL pointer). */
int keel_ets_select_limit(keel_ets_tab tab, keel_term spec, size_t limit,
                          keel_heap *h, keel_term *out, keel_ets_cont **cont);

/* ets:select_reverse/3: as keel_ets_select_limit, in reverse term order
 * for an ordered_set (the same as keel_ets_select_limit for the other
 * types, as in ETS). */
int keel_ets_select_reverse_limit(keel_ets_tab tab, keel_term spec,
                                  size_t limit, keel_heap *h, keel_term *out,
                                  keel_ets_cont **cont);

/* ets:match/3 and ets:match_object/3: as keel_ets_select_limit with the
 * spec [{Pattern, [], ['$$']}] and [{Pattern, [], ['$_']}]. */
int keel_ets_match_limit(keel_ets_tab tab, keel_term pattern, size_t limit,
                         keel_heap *h, keel_term *out, keel_ets_cont **cont);
int keel_ets_match_object_limit(keel_ets_tab tab, keel_term pattern,
                                size_t limit, keel_heap *h, keel_term *out,
                                keel_ets_cont **cont);

/* ets:select/1, match/1, match_object/1: the next chunk. Returns 1 with
 * *out a non-empty list built in h (cont advanced), or 0 at the end
 * (*out = '$end_of_table'; every later call returns 0 too). Errors:
 * KEEL_EBADARG when the table was deleted (also when a new table took its
 * slot: ids are generation-counted) or the caller lost read access;
 * KEEL_ENOMEM (cont unchanged). cont stays valid and must still be freed. */
int keel_ets_select_next(keel_ets_cont *cont, keel_heap *h, keel_term *out);

/* Frees a continuation (NULL is ignored). */
void keel_ets_cont_free(keel_ets_cont *cont);

/* ---- safe_fixtable ------------------------------------------------------ */

/* ets:safe_fixtable/2. fix true: the calling process fixes the table once
 * more; false: releases one of its fixations (nothing if it holds none).
 * Fixations are counted per process (N fixes need N releases) and all of
 * a process's fixations are released when it dies. Threads that run no
 * process share one fixer, shown as the atom undefined; they must release
 * explicitly. Needs read access. KEEL_OK, or KEEL_EBADARG (stale id, no
 * access), KEEL_ENOMEM.
 *
 * Keel's traversals (first/next, continuations) already visit every
 * object present throughout exactly once, fixed or not (see above and
 * docs/tables.md), and deletions are never deferred; a fixation is kept
 * for compatibility and introspection. */
int keel_ets_safe_fixtable(keel_ets_tab tab, bool fix);

/* ets:info(Tab, safe_fixed_monotonic_time): false when the table is not
 * fixed, else {FixedAt, [{Pid, Count}, ...]} built in h, FixedAt being
 * keel_monotonic_ns() when the first current fixation was taken. Any
 * caller may ask. KEEL_OK, KEEL_EBADARG (stale id), KEEL_ENOMEM. */
int keel_ets_safe_fixed(keel_ets_tab tab, keel_heap *h, keel_term *out);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_ETS_H */
