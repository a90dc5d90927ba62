/*
 * text_internal.h - shared pieces of the term text layer (print.c, parse.c,
 * build.c, pattern.c). Not a public header.
 */
#ifndef KEEL_TEXT_INTERNAL_H
#define KEEL_TEXT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/term.h"

/* Deepest nesting of tuples, lists, maps and binaries the parser accepts. */
#define KEEL__PARSE_MAX_DEPTH 100000

/* Longest integer literal (digits) the parser accepts: conversion is
 * quadratic in the length. */
#define KEEL__PARSE_MAX_DIGITS 100000

/* Pattern variables are KEEL_IMM_PATVAR immediates whose payload holds a
 * variable slot (bits 6..37, KEEL__PATVAR_ANY for "_") and a type code
 * (bits 38..45, see keel__pat_type). */
#define KEEL__PATVAR_ANY 0xffffffffu

enum keel__pat_type {
  KEEL__PT_ANY = 0,
  KEEL__PT_INTEGER,
  KEEL__PT_FLOAT,
  KEEL__PT_NUMBER,
  KEEL__PT_ATOM,
  KEEL__PT_BINARY,
  KEEL__PT_BITSTRING,
  KEEL__PT_LIST,
  KEEL__PT_TUPLE,
  KEEL__PT_MAP,
  KEEL__PT_PID,
  KEEL__PT_REF,
  KEEL__PT_PORT,
  KEEL__PT_FUN
};

static inline keel_term keel__patvar(uint32_t slot, unsigned type) {
  return ((uint64_t)type << 38) | ((uint64_t)slot << 6) | KEEL_IMM_PATVAR;
}
static inline bool keel__is_patvar(keel_term t) {
  return (t & KEEL_IMM_MASK) == KEEL_IMM_PATVAR;
}
static inline uint32_t keel__patvar_slot(keel_term t) {
  return (uint32_t)(t >> 6);
}
static inline unsigned keel__patvar_type(keel_term t) {
  return (unsigned)((t >> 38) & 0xff);
}

/* Variable table filled by the parser in pattern mode. */
typedef struct keel__patvars {
  char **names; /* malloc'd NUL-terminated names, index = slot */
  size_t n, cap;
} keel__patvars;

/* Parser mode: plain text (keel_parse), builder (~ directives consume *ap),
 * pattern (also variables, recorded in vars). */
typedef struct keel__parse_mode {
  va_list *ap;         /* NULL: '~' is a syntax error */
  keel__patvars *vars; /* NULL: variables are a syntax error */
} keel__parse_mode;

/* The common parser behind keel_parse, keel_build_v and patterns. On error
 * *consumed (if not NULL) receives the offset of the offending token. */
int keel__parse(keel_heap *h, const char *text, size_t len, keel_term *out,
                size_t *consumed, const keel__parse_mode *mode);

/* Frees the names of a variable table. */
void keel__patvars_free(keel__patvars *v);

#endif /* KEEL_TEXT_INTERNAL_H */
