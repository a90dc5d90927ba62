/*
 * keel/term.h - Erlang terms as C values.
 *
 * A keel_term is one 64-bit tagged word. Immediates (small integers, atoms,
 * [], local pids) live entirely in the word; everything else (tuples, cons
 * cells, floats, big integers, binaries, maps, remote pids, refs, ports, funs,
 * resources) is a pointer to words allocated in a keel_heap.
 *
 * Ownership rules
 * ---------------
 * - Terms are immutable once built. Nothing in Keel ever writes to a term
 *   that another thread can see.
 * - A boxed term lives exactly as long as the keel_heap it was built in.
 *   keel_heap_destroy() frees every term in the heap at once; there is no
 *   per-term free. Immediates need no heap at all.
 * - A term may point into its own heap, or into any heap that outlives it.
 *   To keep a term beyond its heap's life (e.g. to send it to another
 *   process), copy it with keel_term_copy(): the copy is flat, lives in the
 *   destination heap and shares nothing mutable with the source.
 * - Binaries larger than KEEL_HEAP_BIN_MAX bytes and resources live outside
 *   heaps in reference-counted objects. Copying such a term copies a small
 *   handle and increments the count (no bytes are copied); destroying a heap
 *   decrements the counts of everything it references. Counts are atomic,
 *   so these objects may be shared between threads freely.
 * - Sending a small term therefore costs one allocation (the message's
 *   fixed heap, sized by keel_term_copy_words()) and one flat copy, and a
 *   large binary is never copied.
 *
 * Thread-safety: a keel_heap belongs to one thread at a time. Reading terms
 * (accessors, compare, hash, print, encode) is safe from any number of
 * threads as long as the heap holding them is not destroyed meanwhile. The
 * atom table is global and thread-safe; looking up an existing atom takes no
 * lock.
 *
 * Term order (keel_cmp) is Erlang's:
 *   number < atom < reference < fun < port < pid < tuple < map < nil < list
 *   < bitstring.
 */
#ifndef KEEL_TERM_H
#define KEEL_TERM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The tagged word                                                          */
/* ------------------------------------------------------------------------ */

typedef uint64_t keel_term;

/* "No term": returned by constructors on failure. Never a valid term. */
#define KEEL_NONE ((keel_term)0)

/* Low two bits of a keel_term. */
#define KEEL_TAG_MASK 0x3u
#define KEEL_TAG_BOXED 0x0u /* pointer to a header word (8-aligned) */
#define KEEL_TAG_CONS 0x1u  /* pointer to [head, tail] | 1 */
#define KEEL_TAG_SMALL 0x2u /* 62-bit signed integer << 2 */
#define KEEL_TAG_IMM 0x3u   /* other immediates, see KEEL_IMM_* */

/* Immediates: bits 2..5 are a sub-tag, bits 6..63 the payload. */
#define KEEL_IMM_MASK 0x3fu
#define KEEL_IMM_ATOM 0x03u   /* payload: atom index */
#define KEEL_IMM_NIL 0x07u    /* payload: 0 */
#define KEEL_IMM_PID 0x0bu    /* payload: local pid number (58 bits) */
#define KEEL_IMM_PATVAR 0x0fu /* payload: pattern variable (patterns only) */

#define KEEL_NIL ((keel_term)KEEL_IMM_NIL)

/* Range of integers that are immediates. */
#define KEEL_SMALL_MAX ((int64_t)((UINT64_C(1) << 61) - 1))
#define KEEL_SMALL_MIN (-KEEL_SMALL_MAX - 1)

/* Largest local pid number that fits an immediate. */
#define KEEL_PID_NUMBER_MAX ((UINT64_C(1) << 58) - 1)

/* Largest binary stored inside a heap; larger ones are reference-counted. */
#define KEEL_HEAP_BIN_MAX 64

/* Longest atom, in characters (code points), as in Erlang. */
#define KEEL_ATOM_MAX_CHARS 255

static inline bool keel_is_small(keel_term t) {
  return (t & KEEL_TAG_MASK) == KEEL_TAG_SMALL;
}
static inline bool keel_is_atom(keel_term t) {
  return (t & KEEL_IMM_MASK) == KEEL_IMM_ATOM;
}
static inline bool keel_is_nil(keel_term t) {
  return t == KEEL_NIL;
}
static inline bool keel_is_cons(keel_term t) {
  return (t & KEEL_TAG_MASK) == KEEL_TAG_CONS;
}
/* A list is [] or a cons cell (proper or not). */
static inline bool keel_is_list(keel_term t) {
  return keel_is_nil(t) || keel_is_cons(t);
}
static inline bool keel_is_boxed(keel_term t) {
  return t != KEEL_NONE && (t & KEEL_TAG_MASK) == KEEL_TAG_BOXED;
}
static inline bool keel_is_local_pid(keel_term t) {
  return (t & KEEL_IMM_MASK) == KEEL_IMM_PID;
}

/* Makes a small integer. v must be within [KEEL_SMALL_MIN, KEEL_SMALL_MAX]. */
static inline keel_term keel_small(int64_t v) {
  return ((uint64_t)v << 2) | KEEL_TAG_SMALL;
}
/* Value of a small integer (t must satisfy keel_is_small). */
static inline int64_t keel_small_value(keel_term t) {
  return (int64_t)t >> 2;
}

/* Makes a local pid from its number (<= KEEL_PID_NUMBER_MAX). The runtime
 * decides what the number means; the term layer only stores it. */
static inline keel_term keel_pid_local(uint64_t number) {
  return (number << 6) | KEEL_IMM_PID;
}
static inline uint64_t keel_pid_local_number(keel_term t) {
  return t >> 6;
}

/* Atom from its index in the atom table (see keel_atom_index). */
static inline keel_term keel_atom_from_index(uint32_t index) {
  return ((uint64_t)index << 6) | KEEL_IMM_ATOM;
}
static inline uint32_t keel_atom_index(keel_term a) {
  return (uint32_t)(a >> 6);
}

/* Kinds of term, in Erlang's term order. */
typedef enum keel_type {
  KEEL_T_NONE = 0,
  KEEL_T_INTEGER, /* small or big */
  KEEL_T_FLOAT,
  KEEL_T_ATOM,
  KEEL_T_REF,
  KEEL_T_RESOURCE, /* orders like a reference */
  KEEL_T_FUN,
  KEEL_T_PORT,
  KEEL_T_PID,
  KEEL_T_TUPLE,
  KEEL_T_MAP,
  KEEL_T_NIL,
  KEEL_T_LIST,  /* a cons cell */
  KEEL_T_BINARY /* binaries and bitstrings */
} keel_type;

/* Kind of a term. KEEL_T_NONE for KEEL_NONE. Thread-safe, never fails. */
keel_type keel_type_of(keel_term t);

/* Name of a type ("integer", "tuple", ...). Never NULL. */
const char *keel_type_name(keel_type ty);

/* ------------------------------------------------------------------------ */
/* Heaps                                                                    */
/* ------------------------------------------------------------------------ */

struct keel_heap_chunk;

/* An arena of term memory. The struct is public so that it can live on the
 * stack or inside another object; its fields are private. */
typedef struct keel_heap {
  uint64_t *top;                  /* next free word of the current chunk */
  uint64_t *end;                  /* end of the current chunk */
  struct keel_heap_chunk *chunks; /* owned chunks, newest first */
  uint64_t *offheap;              /* boxes that hold a counted reference */
  size_t next_words;              /* size of the next chunk to allocate */
  size_t used_words;              /* words handed out so far */
  unsigned fixed;                 /* 1: caller-provided single buffer */
} keel_heap;

/* Prepares an empty growable heap. Never fails; memory comes on demand. */
void keel_heap_init(keel_heap *h);

/* keel_heap_init whose first chunk (allocated on first use) holds at least
 * `words` words, up to the largest chunk size: for owners that know they
 * will need that much (a process's min_heap_size). */
void keel_heap_init_sized(keel_heap *h, size_t words);

/* Prepares a heap over a caller-provided buffer of `words` 8-byte words
 * (8-aligned). Allocation fails (returns NULL / KEEL_NONE) once the buffer is
 * full: this is how a message is built with exactly one allocation, sized
 * with keel_term_copy_words(). The buffer stays the caller's. */
void keel_heap_init_fixed(keel_heap *h, uint64_t *buf, size_t words);

/* Frees every term of the heap and drops the heap's references to
 * reference-counted binaries and resources. The heap may be re-initialised
 * afterwards. */
void keel_heap_destroy(keel_heap *h);

/* Allocates `words` uninitialised words. NULL on out-of-memory (or a full
 * fixed heap). The memory is freed with the heap. */
uint64_t *keel_heap_alloc(keel_heap *h, size_t words);

/* Number of words handed out by this heap so far. */
size_t keel_heap_used_words(const keel_heap *h);

/* The chain of counted references (large binaries, resources) a heap holds.
 * Opaque; NULL is the empty chain. */
typedef struct keel_offheap keel_offheap;

/* Detaches h's chain of counted references and returns it; h keeps its
 * words but no longer drops those references when destroyed. For owners
 * that keep a fixed heap's words without its keel_heap struct (a message
 * is one allocation: header + words + this pointer). The caller owns the
 * chain and must pass it to keel_offheap_release() exactly once, after the
 * last use of the terms in those words. Not thread-safe for one heap. */
keel_offheap *keel_heap_take_offheap(keel_heap *h);

/* Drops the references of a chain from keel_heap_take_offheap() (NULL is
 * fine). May run destructors of resources whose last reference goes. */
void keel_offheap_release(keel_offheap *chain);

/* Deep-copies t into dst. Binaries above KEEL_HEAP_BIN_MAX bytes and
 * resources are shared (reference count incremented), everything else is
 * copied. Needs exactly keel_term_copy_words(t) words. Iterative: safe on
 * arbitrarily deep terms. Returns KEEL_NONE on out-of-memory. Immediates are
 * returned unchanged without touching dst. */
keel_term keel_term_copy(keel_heap *dst, keel_term t);

/* Number of heap words keel_term_copy(t) will use (0 for immediates). */
size_t keel_term_copy_words(keel_term t);

/* ------------------------------------------------------------------------ */
/* Atoms                                                                    */
/* ------------------------------------------------------------------------ */

/* Atoms Keel itself uses, with fixed indices (usable as constants). */
#define KEEL_ATOM_LIST(X)                                                      \
  X(FALSE, "false")                                                            \
  X(TRUE, "true")                                                              \
  X(OK, "ok")                                                                  \
  X(ERROR, "error")                                                            \
  X(UNDEFINED, "undefined")                                                    \
  X(NONODE, "nonode@nohost")                                                   \
  X(NULL, "null")                                                              \
  X(NIL, "nil")                                                                \
  X(NORMAL, "normal")                                                          \
  X(KILL, "kill")                                                              \
  X(KILLED, "killed")                                                          \
  X(SHUTDOWN, "shutdown")                                                      \
  X(NOPROC, "noproc")                                                          \
  X(NOCONNECTION, "noconnection")                                              \
  X(EXIT, "EXIT")                                                              \
  X(DOWN, "DOWN")                                                              \
  X(PROCESS, "process")                                                        \
  X(INFINITY, "infinity")                                                      \
  X(TIMEOUT, "timeout")                                                        \
  X(BADARG, "badarg")                                                          \
  X(BADARITH, "badarith")                                                      \
  X(BADMATCH, "badmatch")                                                      \
  X(SYSTEM_LIMIT, "system_limit")                                              \
  X(REPLY, "reply")                                                            \
  X(NOREPLY, "noreply")                                                        \
  X(STOP, "stop")                                                              \
  X(IGNORE, "ignore")                                                          \
  X(CALL, "$gen_call")                                                         \
  X(CAST, "$gen_cast")                                                         \
  X(INFO, "info")                                                              \
  X(CONTINUE, "continue")                                                      \
  X(HIBERNATE, "hibernate")                                                    \
  X(TRAP_EXIT, "trap_exit")                                                    \
  X(ALIAS, "alias")

enum keel_atom_id {
#define KEEL_ATOM_ENUM_(id, text) KEEL_ATOMI_##id,
  KEEL_ATOM_LIST(KEEL_ATOM_ENUM_)
#undef KEEL_ATOM_ENUM_
      KEEL_ATOMI_COUNT_
};

/* Constant atom terms: KEEL_ATOM(OK), KEEL_ATOM(TRUE), ... */
#define KEEL_ATOM(id) (((keel_term)KEEL_ATOMI_##id << 6) | KEEL_IMM_ATOM)

/* Interns the UTF-8 text name[0..len) and stores the atom in *out.
 * Errors: KEEL_EINVAL (not valid UTF-8), KEEL_ELIMIT (more
 * than KEEL_ATOM_MAX_CHARS characters), KEEL_ESYSLIMIT (atom table full).
 * Thread-safe; an existing atom is found without taking a lock. */
int keel_atom_intern(const char *name, size_t len, keel_term *out);

/* Finds an existing atom without creating one (binary_to_existing_atom).
 * KEEL_OK or KEEL_ENOENT. Thread-safe, lock-free. */
int keel_atom_find(const char *name, size_t len, keel_term *out);

/* Convenience: interns a NUL-terminated name; KEEL_NONE on any error. */
keel_term keel_atom(const char *name);

/* UTF-8 text of an atom (not NUL-terminated unless noted: it is, in fact,
 * always followed by a NUL). The pointer stays valid for the life of the
 * process. *len may be NULL. Lock-free. */
const char *keel_atom_name(keel_term atom, size_t *len);

/* Number of atoms in the table; and its capacity (the atom limit). */
size_t keel_atom_count(void);
size_t keel_atom_limit(void);
/* Bytes the atom table uses (its index, chunks and entries; atoms are
 * never freed, so it only grows). Lock-free. */
size_t keel_atom_memory(void);

/* Node identity used for local pids/refs/ports when they are encoded or
 * compared with remote ones. Defaults to 'nonode@nohost', creation 0.
 * Not thread-safe with respect to concurrent encoding: call at start-up. */
void keel_term_set_local_node(keel_term node, uint32_t creation);
keel_term keel_term_local_node(uint32_t *creation);

/* ------------------------------------------------------------------------ */
/* Numbers                                                                  */
/* ------------------------------------------------------------------------ */

/* An integer: a small immediate when it fits, otherwise a big integer built
 * in h. KEEL_NONE on out-of-memory. */
keel_term keel_int(keel_heap *h, int64_t v);
keel_term keel_uint(keel_heap *h, uint64_t v);

/* A big (or small, when it fits) integer from magnitude limbs, least
 * significant first; negative != 0 means negative. Normalises leading zero
 * limbs and returns a small integer whenever the value fits one.
 * KEEL_NONE on out-of-memory. */
keel_term keel_bigint(keel_heap *h, bool negative, const uint64_t *limbs,
                      size_t nlimbs);

/* Limbs of an integer term (small ones are presented as one limb backed by
 * *scratch). KEEL_OK or KEEL_EBADARG when t is not an integer. */
int keel_integer_limbs(keel_term t, bool *negative, const uint64_t **limbs,
                       size_t *nlimbs, uint64_t *scratch);

/* Parses an integer in `base` (2..36) with optional sign, no whitespace.
 * KEEL_OK, KEEL_EPARSE, KEEL_EINVAL (bad base) or KEEL_ENOMEM. */
int keel_integer_parse(keel_heap *h, const char *s, size_t len, int base,
                       keel_term *out);

/* Writes an integer in `base` (2..36, upper-case digits) to buf, NUL-
 * terminated. Returns the length it needs (without NUL) like snprintf, or a
 * negative error (KEEL_EBADARG, KEEL_EINVAL). */
int keel_integer_format(char *buf, size_t size, keel_term t, int base);

/* Integer value accessors: KEEL_OK, KEEL_EBADARG (not an integer) or
 * KEEL_ERANGE (does not fit). */
int keel_get_int64(keel_term t, int64_t *out);
int keel_get_uint64(keel_term t, uint64_t *out);

/* A float. KEEL_NONE on out-of-memory or when v is NaN or infinite (Erlang
 * floats are finite). */
keel_term keel_float(keel_heap *h, double v);

/* Float value: KEEL_OK or KEEL_EBADARG (not a float). */
int keel_get_double(keel_term t, double *out);

/* Any number as a double (integers converted, big ones may round or give
 * KEEL_ERANGE when beyond double range). */
int keel_get_number(keel_term t, double *out);

bool keel_is_integer(keel_term t);
bool keel_is_float(keel_term t);
static inline bool keel_is_number(keel_term t) {
  return keel_is_integer(t) || keel_is_float(t);
}

/* ------------------------------------------------------------------------ */
/* Tuples and lists                                                         */
/* ------------------------------------------------------------------------ */

/* A tuple of `arity` elements given as variadic keel_term arguments.
 * KEEL_NONE on out-of-memory or if any element is KEEL_NONE. */
keel_term keel_tuple(keel_heap *h, size_t arity, ...);

/* A tuple copied from elems[0..arity). */
keel_term keel_tuple_from(keel_heap *h, size_t arity, const keel_term *elems);

/* An uninitialised tuple: *elems receives its element array, which the
 * caller must fill completely before the term is used anywhere else. */
keel_term keel_tuple_new(keel_heap *h, size_t arity, keel_term **elems);

bool keel_is_tuple(keel_term t);
/* Arity of a tuple (t must be a tuple). */
size_t keel_tuple_arity(keel_term t);
/* Elements of a tuple (t must be a tuple); index i in [0, arity). */
const keel_term *keel_tuple_elems(keel_term t);
static inline keel_term keel_tuple_get(keel_term t, size_t i) {
  return keel_tuple_elems(t)[i];
}

/* A cons cell [head | tail]. KEEL_NONE on out-of-memory. */
keel_term keel_cons(keel_heap *h, keel_term head, keel_term tail);
/* Head and tail of a cons cell (t must satisfy keel_is_cons). */
static inline keel_term keel_hd(keel_term t) {
  return ((const keel_term *)(uintptr_t)(t - KEEL_TAG_CONS))[0];
}
static inline keel_term keel_tl(keel_term t) {
  return ((const keel_term *)(uintptr_t)(t - KEEL_TAG_CONS))[1];
}

/* A proper list of elems[0..n) (tail [] ), or with the given tail. */
keel_term keel_list_from(keel_heap *h, size_t n, const keel_term *elems);
keel_term keel_list_from_tail(keel_heap *h, size_t n, const keel_term *elems,
                              keel_term tail);

/* Length of a proper list: KEEL_OK, or KEEL_EBADARG for a non-list or an
 * improper list. */
int keel_list_length(keel_term t, size_t *len);

/* A string as Erlang sees it: a list of character codes decoded from UTF-8
 * text. KEEL_NONE on invalid UTF-8 or out-of-memory. */
keel_term keel_string(keel_heap *h, const char *utf8);
keel_term keel_string_n(keel_heap *h, const char *utf8, size_t len);

/* ------------------------------------------------------------------------ */
/* Binaries and bitstrings                                                  */
/* ------------------------------------------------------------------------ */

/* A binary holding a copy of data[0..len). Up to KEEL_HEAP_BIN_MAX bytes it
 * lives in the heap; beyond that in a shared, reference-counted object.
 * KEEL_NONE on out-of-memory. */
keel_term keel_binary(keel_heap *h, const void *data, size_t len);

/* A binary of `len` bytes whose contents the caller writes through *data
 * before the term is used anywhere else (shared or not). */
keel_term keel_binary_new(keel_heap *h, size_t len, uint8_t **data);

/* Bytes held by the live reference-counted (large, shared) binaries of the
 * whole program, and in *count (may be NULL) how many there are; binaries
 * of at most KEEL_HEAP_BIN_MAX bytes live inside heaps and are not
 * counted. A relaxed snapshot. Lock-free. */
size_t keel_binary_memory(size_t *count);

/* A bitstring of `nbits` bits from data (the last byte's low bits unused).
 * Unused trailing bits are cleared in the stored copy. */
keel_term keel_bitstring(keel_heap *h, const void *data, size_t nbits);

/* A sub-binary of bin's bytes [off, off + len). Shares the parent's bytes
 * when the parent is reference-counted; copies (<= 64 bytes) otherwise.
 * KEEL_NONE when out of range, when bin is not a whole-byte binary, or on
 * out-of-memory. */
keel_term keel_sub_binary(keel_heap *h, keel_term bin, size_t off, size_t len);

/* true for binaries and bitstrings. */
bool keel_is_bitstring(keel_term t);
/* true for whole-byte binaries only. */
bool keel_is_binary(keel_term t);

/* Bytes of a binary or bitstring; *len gets the byte count (for a bitstring
 * this includes the partial last byte). t must satisfy keel_is_bitstring. */
const uint8_t *keel_binary_data(keel_term t, size_t *len);

/* Size in bits of a binary or bitstring. */
size_t keel_bitstring_bits(keel_term t);

/* ------------------------------------------------------------------------ */
/* Maps                                                                     */
/* ------------------------------------------------------------------------ */

/* A map from n key/value pairs. Keys are compared exactly (1 and 1.0 are
 * different keys); on duplicates the last pair wins. KEEL_NONE on
 * out-of-memory. Keys are kept sorted in map-key order, so lookup is
 * O(log n) and iteration order is Erlang's. */
keel_term keel_map_from(keel_heap *h, size_t n, const keel_term *keys,
                        const keel_term *values);

/* The empty map (no allocation needed beyond one header word in h). */
keel_term keel_map_new(keel_heap *h);

/* A copy of map with key set to value. O(n). KEEL_NONE on out-of-memory. */
keel_term keel_map_put(keel_heap *h, keel_term map, keel_term key,
                       keel_term value);

bool keel_is_map(keel_term t);
/* Number of pairs (t must be a map). */
size_t keel_map_size(keel_term map);
/* Looks up key (exact match). KEEL_OK or KEEL_ENOENT. */
int keel_map_get(keel_term map, keel_term key, keel_term *value);
/* The i-th pair in key order, i in [0, size). */
void keel_map_at(keel_term map, size_t i, keel_term *key, keel_term *value);

/* ------------------------------------------------------------------------ */
/* Pids, references, ports, funs                                            */
/* ------------------------------------------------------------------------ */

/* The parts of a pid as ETF sees them. For a local pid, id is the low 32
 * bits of its number and serial the rest. */
typedef struct keel_pid_parts {
  keel_term node;
  uint32_t id;
  uint32_t serial;
  uint32_t creation;
} keel_pid_parts;

/* A pid from its parts: an immediate when node and creation are the local
 * node's and the number fits, otherwise a boxed remote pid in h. */
keel_term keel_pid_make(keel_heap *h, const keel_pid_parts *p);
bool keel_is_pid(keel_term t);
/* KEEL_OK or KEEL_EBADARG. */
int keel_pid_get(keel_term t, keel_pid_parts *p);

#define KEEL_REF_MAX_WORDS 5
typedef struct keel_ref_parts {
  keel_term node;
  uint32_t creation;
  uint32_t len; /* 1..KEEL_REF_MAX_WORDS */
  uint32_t id[KEEL_REF_MAX_WORDS];
} keel_ref_parts;

keel_term keel_ref_make(keel_heap *h, const keel_ref_parts *r);
bool keel_is_ref(keel_term t);
int keel_ref_get(keel_term t, keel_ref_parts *r);

typedef struct keel_port_parts {
  keel_term node;
  uint64_t id;
  uint32_t creation;
} keel_port_parts;

keel_term keel_port_make(keel_heap *h, const keel_port_parts *p);
bool keel_is_port(keel_term t);
int keel_port_get(keel_term t, keel_port_parts *p);

/* An external fun fun M:F/A (EXPORT_EXT). Local closures are not
 * representable in Keel. */
keel_term keel_export_fun(keel_heap *h, keel_term module, keel_term function,
                          uint8_t arity);
bool keel_is_fun(keel_term t);
int keel_fun_get(keel_term t, keel_term *module, keel_term *function,
                 uint8_t *arity);

/* ------------------------------------------------------------------------ */
/* Resources: opaque C objects, reference-counted                           */
/* ------------------------------------------------------------------------ */

typedef struct keel_resource keel_resource;
typedef void (*keel_resource_dtor)(void *data);

/* Allocates a resource with `size` bytes of zeroed user data and one
 * reference owned by the caller. dtor (may be NULL) runs once, when the last
 * reference goes, on whichever thread drops it. NULL on out-of-memory. */
keel_resource *keel_resource_new(size_t size, keel_resource_dtor dtor);
void *keel_resource_data(keel_resource *r);
void keel_resource_retain(keel_resource *r);
void keel_resource_release(keel_resource *r);

/* A term referring to r; the heap takes its own reference. */
keel_term keel_resource_term(keel_heap *h, keel_resource *r);
bool keel_is_resource(keel_term t);
/* The resource behind a term (borrowed: valid while the term's heap lives)
 * or NULL when t is not a resource term. */
keel_resource *keel_resource_get(keel_term t);

/* ------------------------------------------------------------------------ */
/* Order, equality, hashing                                                 */
/* ------------------------------------------------------------------------ */

/* Erlang's total order: negative, 0 or positive. Numbers compare by value
 * (1 == 1.0 compares 0). Iterative; safe on deep terms. */
int keel_cmp(keel_term a, keel_term b);

/* a == b in Erlang (1 == 1.0 is true). */
bool keel_eq(keel_term a, keel_term b);

/* a =:= b in Erlang (1 =:= 1.0 is false). */
bool keel_eq_exact(keel_term a, keel_term b);

/* A 64-bit hash consistent with keel_eq_exact, stable across runs, threads
 * and machines of the same byte order (atoms hash by name, never by index
 * or address). */
uint64_t keel_hash(keel_term t);

/* ------------------------------------------------------------------------ */
/* Text: printing, parsing, building, patterns                              */
/* ------------------------------------------------------------------------ */

typedef struct keel_print_opts {
  unsigned depth;  /* like ~P: 0 means unlimited; deeper parts print "..." */
  bool no_strings; /* print lists of codes as lists, not "strings" */
} keel_print_opts;

/* Prints t in Erlang syntax (~p without line breaks) into buf (NUL-
 * terminated, truncated to size). Returns the full length needed without the
 * NUL, like snprintf, or a negative error. opts may be NULL. Thread-safe. */
int keel_print(char *buf, size_t size, keel_term t,
               const keel_print_opts *opts);

/* Same, returned in a malloc'd NUL-terminated string the caller frees.
 * NULL on out-of-memory. */
char *keel_print_alloc(keel_term t, const keel_print_opts *opts);

/* Same, to a stdio stream. Returns bytes written or a negative error. */
int keel_fprint(FILE *f, keel_term t, const keel_print_opts *opts);

/* Parses one term written in Erlang syntax from text[0..len) into h.
 * Accepts atoms, integers (also 16#FF and $c), floats, "strings", <<...>>
 * binaries, tuples, lists, maps, and the printed forms <0.1.2>,
 * #Ref<0.1.2.3> and #Port<0.1> (remote ones as #Pid<node.Creation.Id.Serial>,
 * #Ref<node.Creation.C.B.A>, #Port<node.Creation.Id>). A trailing '.' and
 * whitespace/comments are allowed.
 * consumed NULL: the whole text must be one term. consumed non-NULL:
 * parsing stops after the term (so several terms can be read from one
 * buffer) and *consumed receives the bytes used, or on error the offset
 * where parsing stopped.
 * Errors: KEEL_EPARSE (with nothing allocated that matters), KEEL_ELIMIT
 * (nesting deeper than 100,000, an integer longer than 100,000 digits),
 * KEEL_ENOMEM. It allocates in proportion to the text. */
int keel_parse(keel_heap *h, const char *text, size_t len, keel_term *out,
               size_t *consumed);

/* Builds a term from Erlang syntax with ~ placeholders taking C arguments:
 *   ~i int        ~l long        ~L long long    ~u unsigned long
 *   ~f double     ~a atom name (const char *)   ~s charlist from UTF-8
 *   ~b binary from NUL-terminated text (const char *)
 *   ~B binary from (const void *, size_t)        ~t a keel_term
 *   ~~ a literal '~' (inside quoted text)
 * Example: keel_build(h, "{ok, ~i, ~b}", 42, "x") -> {ok,42,<<"x">>}.
 * Returns KEEL_NONE on a syntax error, bad argument or out-of-memory; use
 * keel_build_v() to learn which. */
keel_term keel_build(keel_heap *h, const char *fmt, ...);
int keel_build_v(keel_heap *h, keel_term *out, const char *fmt, va_list ap);

/* Compiled pattern for matching terms without allocating.
 *
 * Pattern text is Erlang term syntax plus:
 *   _ and _Name       match anything, bind nothing
 *   Name              capture (variables numbered 0.. in order of first
 *                     appearance; a repeated variable must match an exactly
 *                     equal term each time)
 *   Name:type         capture only if the term has that type: int, integer,
 *                     float, number, atom, binary, bitstring, list, tuple,
 *                     map, pid, ref, port, fun
 *   ~ placeholders    as in keel_build, inserting literal values (e.g. the
 *                     reference a reply must carry); the values are copied
 *                     into the pattern, so the caller's heap may go away
 *   #{k := V}         matches any map that has key k (a literal), as in
 *                     Erlang; #{} matches every map
 * Literals match exactly (=:=). Limits: 256 variables, 128 containers open
 * at once (checked at compile time; long lists cost no depth).
 */
typedef struct keel_pattern keel_pattern;

/* Compiles a pattern; *out is owned by the caller (keel_pattern_free).
 * Errors: KEEL_EPARSE, KEEL_EINVAL (bad type name), KEEL_ENOMEM. */
int keel_pattern_compile(keel_pattern **out, const char *fmt, ...);
int keel_pattern_compile_v(keel_pattern **out, const char *fmt, va_list ap);
void keel_pattern_free(keel_pattern *p);

/* Number of capture slots, and the slot of a named variable (-1 if none). */
size_t keel_pattern_nvars(const keel_pattern *p);
int keel_pattern_var(const keel_pattern *p, const char *name);

/* Matches t against p. On success fills caps[0..nvars) (caps may be NULL)
 * and returns true; on failure caps' contents are unspecified. Does not
 * allocate, except that comparing a literal or a repeated variable against
 * a subterm nested more than 32 levels deep may take memory for the
 * comparison's stack. Thread-safe (a compiled pattern is read-only). */
bool keel_match(const keel_pattern *p, keel_term t, keel_term *caps);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_TERM_H */
