/*
 * pattern.c - compiled patterns and allocation-free matching.
 *
 * A pattern is parsed (parse.c, pattern mode) into a term of its own heap
 * in which variables are KEEL_IMM_PATVAR immediates, then flattened in
 * pre-order into an instruction array. Matching walks the instructions
 * once; containers push a frame (a run of subject terms still to visit: a
 * tuple's elements, a cons cell's head and tail, or the values a map
 * pattern looks up) onto a fixed array on the C stack. A frame is popped as
 * its last item is taken, so long lists and the last elements of tuples
 * cost no depth; the deepest stack a pattern needs is computed at compile
 * time and bounded by KEEL__PAT_MAX_DEPTH.
 *
 * Map patterns follow Erlang: #{k := V} matches any map that has key k
 * (other keys are ignored), so #{} matches every map.
 *
 * Matching itself never allocates; comparing a literal or a repeated
 * variable uses keel_eq_exact(), which only allocates for terms nested
 * deeper than its inline stack.
 */
#include <stdlib.h>
#include <string.h>

#include "term/term_internal.h"
#include "term/text_internal.h"

#define KEEL__PAT_MAX_DEPTH 128
#define KEEL__PAT_MAX_VARS 256

enum op { OP_ANY, OP_VAR, OP_LIT, OP_TUPLE, OP_CONS, OP_MAP };

typedef struct instr {
  uint8_t op;
  uint8_t type;          /* OP_VAR, OP_ANY: required type (KEEL__PT_*) */
  uint32_t slot;         /* OP_VAR */
  size_t n;              /* OP_TUPLE arity, OP_MAP key count */
  keel_term lit;         /* OP_LIT */
  const keel_term *keys; /* OP_MAP: keys to look up, in order */
} instr;

struct keel_pattern {
  keel_heap heap;
  instr *code;
  size_t ncode;
  keel__patvars vars;
};

typedef struct mframe {
  const keel_term *items; /* elements, or keys to look up in map */
  bool lookup;
  keel_term map;
  size_t i, n;
} mframe;

static bool type_ok(unsigned type, keel_term t) {
  switch (type) {
  case KEEL__PT_INTEGER:
    return keel_is_integer(t);
  case KEEL__PT_FLOAT:
    return keel_is_float(t);
  case KEEL__PT_NUMBER:
    return keel_is_number(t);
  case KEEL__PT_ATOM:
    return keel_is_atom(t);
  case KEEL__PT_BINARY:
    return keel_is_binary(t);
  case KEEL__PT_BITSTRING:
    return keel_is_bitstring(t);
  case KEEL__PT_LIST:
    return keel_is_list(t);
  case KEEL__PT_TUPLE:
    return keel_is_tuple(t);
  case KEEL__PT_MAP:
    return keel_is_map(t);
  case KEEL__PT_PID:
    return keel_is_pid(t);
  case KEEL__PT_REF:
    return keel_is_ref(t);
  case KEEL__PT_PORT:
    return keel_is_port(t);
  case KEEL__PT_FUN:
    return keel_is_fun(t);
  default:
    return true;
  }
}

/* ---- compiling -------------------------------------------------------------
 */

typedef struct tvec {
  keel_term *v;
  size_t n, cap;
} tvec;

static int tpush(tvec *s, keel_term t) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 32;
    keel_term *v = realloc(s->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = t;
  return KEEL_OK;
}

static int emit(keel_pattern *p, size_t *cap, instr in) {
  if (p->ncode == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    instr *c = realloc(p->code, nc * sizeof *c);
    if (c == NULL)
      return KEEL_ENOMEM;
    p->code = c;
    *cap = nc;
  }
  p->code[p->ncode++] = in;
  return KEEL_OK;
}

/* true when t contains a pattern variable (map keys must not). */
static int has_var(keel_term t, bool *found) {
  tvec st = {0};
  int rc = tpush(&st, t);
  *found = false;
  while (rc == KEEL_OK && st.n > 0 && !*found) {
    keel_term x = st.v[--st.n];
    if (keel__is_patvar(x)) {
      *found = true;
    } else if (keel_is_tuple(x)) {
      for (size_t i = 0; i < keel_tuple_arity(x) && rc == KEEL_OK; i++)
        rc = tpush(&st, keel_tuple_get(x, i));
    } else if (keel_is_cons(x)) {
      rc = tpush(&st, keel_hd(x));
      if (rc == KEEL_OK)
        rc = tpush(&st, keel_tl(x));
    } else if (keel_is_map(x)) {
      for (size_t i = 0; i < 2 * keel_map_size(x) && rc == KEEL_OK; i++)
        rc = tpush(&st, keel__map_keys(x)[i]);
    }
  }
  free(st.v);
  return rc;
}

/* Emits the instruction for t and pushes its children (reversed). */
static int flatten_one(keel_pattern *p, size_t *cap, tvec *st, keel_term t) {
  instr in = {.op = OP_LIT, .lit = t};
  const keel_term *kids = NULL;
  size_t nk = 0;
  if (keel__is_patvar(t)) {
    in.slot = keel__patvar_slot(t);
    in.type = (uint8_t)keel__patvar_type(t);
    in.op = in.slot == KEEL__PATVAR_ANY ? OP_ANY : OP_VAR;
  } else if (keel_is_tuple(t)) {
    in.op = OP_TUPLE;
    in.n = nk = keel_tuple_arity(t);
    kids = keel_tuple_elems(t);
  } else if (keel_is_cons(t)) {
    in.op = OP_CONS;
    nk = 2;
    kids = keel__cons_ptr(t);
  } else if (keel_is_map(t)) {
    in.op = OP_MAP;
    in.n = nk = keel_map_size(t);
    in.keys = keel__map_keys(t);
    kids = keel__map_values(t);
    for (size_t i = 0; i < nk; i++) {
      bool var;
      int rc = has_var(in.keys[i], &var);
      if (rc < 0)
        return rc;
      if (var)
        return KEEL_EPARSE; /* keys of map patterns must be literals */
    }
  }
  int rc = emit(p, cap, in);
  for (size_t i = nk; i-- > 0 && rc == KEEL_OK;)
    rc = tpush(st, kids[i]);
  return rc;
}

/* Replays the frame discipline of keel_match to find the deepest stack. */
static int check_depth(const keel_pattern *p) {
  size_t left[KEEL__PAT_MAX_DEPTH] = {0}, sp = 0;
  for (size_t i = 0; i < p->ncode; i++) {
    if (i > 0 && sp > 0 && --left[sp - 1] == 0)
      sp--;
    const instr *in = &p->code[i];
    size_t n = in->op == OP_CONS                        ? 2
               : in->op == OP_TUPLE || in->op == OP_MAP ? in->n
                                                        : 0;
    if (n > 0) {
      if (sp == KEEL__PAT_MAX_DEPTH)
        return KEEL_ELIMIT;
      left[sp++] = n;
    }
  }
  return KEEL_OK;
}

static int compile(keel_pattern *p, keel_term root) {
  tvec st = {0};
  size_t cap = 0;
  int rc = tpush(&st, root);
  while (rc == KEEL_OK && st.n > 0)
    rc = flatten_one(p, &cap, &st, st.v[--st.n]);
  free(st.v);
  return rc == KEEL_OK ? check_depth(p) : rc;
}

int keel_pattern_compile_v(keel_pattern **out, const char *fmt, va_list ap) {
  if (out == NULL || fmt == NULL)
    return KEEL_EINVAL;
  *out = NULL;
  keel_pattern *p = calloc(1, sizeof *p);
  if (p == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&p->heap);
  va_list cp;
  va_copy(cp, ap);
  keel__parse_mode mode = {&cp, &p->vars};
  keel_term root;
  int rc = keel__parse(&p->heap, fmt, strlen(fmt), &root, NULL, &mode);
  va_end(cp);
  if (rc == KEEL_OK && p->vars.n > KEEL__PAT_MAX_VARS)
    rc = KEEL_ELIMIT;
  if (rc == KEEL_OK)
    rc = compile(p, root);
  if (rc < 0) {
    keel_pattern_free(p);
    return rc;
  }
  *out = p;
  return KEEL_OK;
}

int keel_pattern_compile(keel_pattern **out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = keel_pattern_compile_v(out, fmt, ap);
  va_end(ap);
  return rc;
}

void keel_pattern_free(keel_pattern *p) {
  if (p == NULL)
    return;
  keel__patvars_free(&p->vars);
  free(p->code);
  keel_heap_destroy(&p->heap);
  free(p);
}

size_t keel_pattern_nvars(const keel_pattern *p) {
  return p == NULL ? 0 : p->vars.n;
}

int keel_pattern_var(const keel_pattern *p, const char *name) {
  if (p == NULL || name == NULL)
    return -1;
  for (size_t i = 0; i < p->vars.n; i++)
    if (strcmp(p->vars.names[i], name) == 0)
      return (int)i;
  return -1;
}

/* ---- matching --------------------------------------------------------------
 */

/* Next subject term from the top frame; false when a map lacks a key. */
static bool next_item(mframe *st, size_t *sp, keel_term *out) {
  if (*sp == 0)
    return false; /* cannot happen: the code was checked at compile time */
  mframe *f = &st[*sp - 1];
  if (!f->lookup) {
    *out = f->items[f->i];
  } else if (keel_map_get(f->map, f->items[f->i], out) != KEEL_OK) {
    return false;
  }
  if (++f->i == f->n)
    (*sp)--;
  return true;
}

static bool bind(const instr *in, keel_term cur, keel_term *caps,
                 uint64_t *seen) {
  if (!type_ok(in->type, cur))
    return false;
  if (in->op == OP_ANY)
    return true;
  uint64_t bit = UINT64_C(1) << (in->slot % 64);
  if (seen[in->slot / 64] & bit)
    return keel_eq_exact(caps[in->slot], cur);
  seen[in->slot / 64] |= bit;
  caps[in->slot] = cur;
  return true;
}

/* Checks the shape of a container and opens its frame. */
static bool open_frame(const instr *in, keel_term cur, mframe *st, size_t *sp) {
  mframe f = {0};
  switch (in->op) {
  case OP_TUPLE:
    if (!keel_is_tuple(cur) || keel_tuple_arity(cur) != in->n)
      return false;
    f.items = keel_tuple_elems(cur);
    break;
  case OP_CONS:
    if (!keel_is_cons(cur))
      return false;
    f.items = keel__cons_ptr(cur);
    break;
  default:
    if (!keel_is_map(cur))
      return false;
    f.items = in->keys;
    f.lookup = true;
    f.map = cur;
    break;
  }
  f.n = in->op == OP_CONS ? 2 : in->n;
  if (f.n > 0)
    st[(*sp)++] = f;
  return true;
}

bool keel_match(const keel_pattern *p, keel_term t, keel_term *caps) {
  mframe st[KEEL__PAT_MAX_DEPTH];
  keel_term local[KEEL__PAT_MAX_VARS];
  uint64_t seen[KEEL__PAT_MAX_VARS / 64] = {0};
  size_t sp = 0;
  keel_term cur = t;
  if (p == NULL || t == KEEL_NONE)
    return false;
  keel_term *vals = caps != NULL ? caps : local;
  for (size_t i = 0; i < p->ncode; i++) {
    const instr *in = &p->code[i];
    if (i > 0 && !next_item(st, &sp, &cur))
      return false;
    bool ok;
    switch (in->op) {
    case OP_ANY:
    case OP_VAR:
      ok = bind(in, cur, vals, seen);
      break;
    case OP_LIT:
      ok = keel_eq_exact(cur, in->lit);
      break;
    default:
      ok = open_frame(in, cur, st, &sp);
      break;
    }
    if (!ok)
      return false;
  }
  return true;
}
