/*
 * term_internal.h - layout of boxed terms, shared by the term layer's files.
 *
 * Not a public header: code outside src/term/ uses keel/term.h only.
 *
 * A boxed term points at a header word: bits 0..5 the box type, bits 6..63
 * a size field whose meaning depends on the type. Layouts (word offsets from
 * the header):
 *
 *   TUPLE    size = arity      [1..arity] elements
 *   POSBIG   size = nlimbs     [1..n] magnitude limbs, least significant
 *   NEGBIG   size = nlimbs     first; never fits a small (normalised)
 *   FLOAT    size = 1          [1] double
 *   HEAPBIN  size = nbits      [1..] bytes inline, ceil(nbits/8) used
 *   REFCBIN  size = nbits      [1] const uint8_t *bytes  [2] keel_binobj *
 *                              [3] next off-heap box of the same heap
 *   MAP      size = n          [1..n] keys in map-key order, [n+1..2n] values
 *   EXTPID   size = 0          [1] node atom  [2] id | serial << 32
 *                              [3] creation
 *   PORT     size = 0          [1] node atom  [2] id  [3] creation
 *   REF      size = len (1..5) [1] node atom  [2] creation  [3..5] ids,
 *                              two uint32 per word, id[0] in the low half
 *   FUN      size = 0          [1] module atom [2] function atom [3] arity
 *   RESOURCE size = 0          [1] keel_resource *  [2] next off-heap box
 *
 * Bitstrings (nbits % 8 != 0) keep their unused trailing bits zero, so byte
 * comparison and hashing of the last byte are well defined.
 *
 * Off-heap boxes (REFCBIN, RESOURCE) are chained through their "next" word
 * from keel_heap.offheap; keel_heap_destroy() walks the chain and drops one
 * reference per box.
 */
#ifndef KEEL_TERM_INTERNAL_H
#define KEEL_TERM_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "keel/term.h"

enum keel__box_type {
  KEEL_BOX_TUPLE = 1,
  KEEL_BOX_POSBIG,
  KEEL_BOX_NEGBIG,
  KEEL_BOX_FLOAT,
  KEEL_BOX_HEAPBIN,
  KEEL_BOX_REFCBIN,
  KEEL_BOX_MAP,
  KEEL_BOX_EXTPID,
  KEEL_BOX_PORT,
  KEEL_BOX_REF,
  KEEL_BOX_FUN,
  KEEL_BOX_RESOURCE
};

#define KEEL_REFCBIN_WORDS 4
#define KEEL_RESOURCE_WORDS 3
#define KEEL_EXTPID_WORDS 4
#define KEEL_PORT_WORDS 4
#define KEEL_REF_WORDS 6
#define KEEL_FUN_WORDS 4
#define KEEL_FLOAT_WORDS 2

/* A shared, immutable byte array. refc counts the boxes (in any heap) and
 * other owners referring to it. */
typedef struct keel_binobj {
  _Atomic size_t refc;
  size_t size;
  uint8_t data[];
} keel_binobj;

struct keel_resource {
  _Atomic size_t refc;
  keel_resource_dtor dtor;
  _Alignas(16) unsigned char data[];
};

static inline uint64_t *keel__box(keel_term t) {
  return (uint64_t *)(uintptr_t)t;
}
static inline keel_term keel__boxed(const uint64_t *p) {
  return (keel_term)(uintptr_t)p;
}
static inline uint64_t *keel__cons_ptr(keel_term t) {
  return (uint64_t *)(uintptr_t)(t - KEEL_TAG_CONS);
}
static inline keel_term keel__cons_term(const uint64_t *p) {
  return (keel_term)(uintptr_t)p | KEEL_TAG_CONS;
}
static inline uint64_t keel__hdr(unsigned type, uint64_t size) {
  return (size << 6) | type;
}
static inline unsigned keel__hdr_type(uint64_t hdr) {
  return (unsigned)(hdr & 0x3f);
}
static inline uint64_t keel__hdr_size(uint64_t hdr) {
  return hdr >> 6;
}

/* Box type of t, or 0 when t is not boxed. */
static inline unsigned keel__box_type(keel_term t) {
  return keel_is_boxed(t) ? keel__hdr_type(keel__box(t)[0]) : 0;
}

/* Words a boxed object occupies, header included, from its header. */
static inline size_t keel__box_words(uint64_t hdr) {
  uint64_t n = keel__hdr_size(hdr);
  switch (keel__hdr_type(hdr)) {
  case KEEL_BOX_TUPLE:
  case KEEL_BOX_POSBIG:
  case KEEL_BOX_NEGBIG:
    return 1 + n;
  case KEEL_BOX_FLOAT:
    return KEEL_FLOAT_WORDS;
  case KEEL_BOX_HEAPBIN:
    return 1 + (n + 63) / 64;
  case KEEL_BOX_REFCBIN:
    return KEEL_REFCBIN_WORDS;
  case KEEL_BOX_MAP:
    return 1 + 2 * n;
  case KEEL_BOX_EXTPID:
    return KEEL_EXTPID_WORDS;
  case KEEL_BOX_PORT:
    return KEEL_PORT_WORDS;
  case KEEL_BOX_REF:
    return KEEL_REF_WORDS;
  case KEEL_BOX_FUN:
    return KEEL_FUN_WORDS;
  case KEEL_BOX_RESOURCE:
    return KEEL_RESOURCE_WORDS;
  default:
    return 1;
  }
}

/* Pointer to the bytes of a HEAPBIN or REFCBIN box. */
static inline const uint8_t *keel__bin_bytes(const uint64_t *box) {
  return keel__hdr_type(box[0]) == KEEL_BOX_HEAPBIN
             ? (const uint8_t *)(box + 1)
             : (const uint8_t *)(uintptr_t)box[1];
}

static inline double keel__float_value(keel_term t) {
  double d;
  memcpy(&d, keel__box(t) + 1, sizeof d);
  return d;
}

/* Map internals. */
static inline const keel_term *keel__map_keys(keel_term m) {
  return keel__box(m) + 1;
}
static inline const keel_term *keel__map_values(keel_term m) {
  return keel__box(m) + 1 + keel__hdr_size(keel__box(m)[0]);
}

/* Map-key order: term order where all integers sort before all floats, and
 * exact equality (1 and 1.0 differ). Implemented in compare.c. */
int keel__map_key_cmp(keel_term a, keel_term b);

/* Links a freshly built off-heap box into h's chain (the box's "next" word
 * is written here). */
void keel__heap_link_offheap(keel_heap *h, uint64_t *box);

/* Allocates a binobj of `size` bytes with refc 1. NULL on out-of-memory. */
keel_binobj *keel__binobj_new(size_t size);
void keel__binobj_release(keel_binobj *b);

/* A REFCBIN box over obj's bytes [off, off + nbits/8); takes a new
 * reference to obj. */
keel_term keel__refcbin_make(keel_heap *h, keel_binobj *obj, size_t off,
                             size_t nbits);

/* Value of c as a digit in bases up to 36 (either case), or 99 when c is
 * not a digit (including EOF-like negative values). */
static inline int keel__digit_value(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z')
    return c - 'A' + 10;
  return 99;
}

/* Atom internals: hash of the atom's name (cached in the table). */
uint64_t keel__atom_hash(keel_term atom);

/* Validates UTF-8 and counts code points. Returns the count or -1. */
long keel__utf8_count(const uint8_t *s, size_t len);

/* Local node identity (see keel_term_set_local_node). */
extern keel_term keel__local_node;
extern uint32_t keel__local_creation;

#endif /* KEEL_TERM_INTERNAL_H */
