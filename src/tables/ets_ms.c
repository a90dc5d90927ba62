/*
 * ets_ms.c - match specifications: compile [{Head, Guards, Body}] once,
 * then run the clauses against objects.
 *
 * Compiling copies the spec into the compiled object's own heap, replacing
 * the variable atoms by pattern-variable immediates (KEEL_IMM_PATVAR, never
 * a valid term elsewhere), so matching never looks at atom names:
 *   '_'  -> VAR_ANY     '$N' (0 <= N <= 255) -> VAR(N)
 *   '$_' -> VAR_OBJ     '$$' -> VAR_ALL
 * Inside {const, X} nothing is replaced. Expressions are checked at
 * compile time (known functions, arities); a guard or body that fails at
 * run time (a type error, an unbound variable, an overflow) fails the
 * clause, as a raising guard does in Erlang.
 */
#include <stdlib.h>
#include <string.h>

#include "tables/ets_ms.h"

#define MS_MAX_DEPTH 1000
#define PV(n) (((keel_term)(n) << 6) | KEEL_IMM_PATVAR)
#define VAR_ANY PV(0)
#define VAR(n) PV((n) + 1)
#define VAR_OBJ PV(300)
#define VAR_ALL PV(301)

static bool is_pv(keel_term t) {
  return (t & KEEL_IMM_MASK) == KEEL_IMM_PATVAR;
}
static unsigned pv_num(keel_term t) {
  return (unsigned)(t >> 6);
}

/* ---- functions ---- */

enum ms_op {
  OP_LT,
  OP_GT,
  OP_LE,
  OP_GE,
  OP_EQ,
  OP_NE,
  OP_EXEQ,
  OP_EXNE,
  OP_ANDALSO,
  OP_ORELSE,
  OP_AND,
  OP_OR,
  OP_NOT,
  OP_XOR,
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_REM,
  OP_ABS,
  OP_ELEMENT,
  OP_SIZE,
  OP_HD,
  OP_TL,
  OP_IS_ATOM,
  OP_IS_INTEGER,
  OP_IS_FLOAT,
  OP_IS_NUMBER,
  OP_IS_TUPLE,
  OP_IS_LIST,
  OP_IS_BINARY,
  OP_IS_PID,
  OP_IS_MAP,
  OP_IS_REF,
  OP_CONST,
  OP_COUNT_
};

static const struct {
  const char *name;
  int min, max; /* arity range */
} ms_ops[OP_COUNT_] = {
    [OP_LT] = {"<", 2, 2},
    [OP_GT] = {">", 2, 2},
    [OP_LE] = {"=<", 2, 2},
    [OP_GE] = {">=", 2, 2},
    [OP_EQ] = {"==", 2, 2},
    [OP_NE] = {"/=", 2, 2},
    [OP_EXEQ] = {"=:=", 2, 2},
    [OP_EXNE] = {"=/=", 2, 2},
    [OP_ANDALSO] = {"andalso", 1, 255},
    [OP_ORELSE] = {"orelse", 1, 255},
    [OP_AND] = {"and", 1, 255},
    [OP_OR] = {"or", 1, 255},
    [OP_NOT] = {"not", 1, 1},
    [OP_XOR] = {"xor", 2, 2},
    [OP_ADD] = {"+", 1, 2},
    [OP_SUB] = {"-", 1, 2},
    [OP_MUL] = {"*", 2, 2},
    [OP_DIV] = {"div", 2, 2},
    [OP_REM] = {"rem", 2, 2},
    [OP_ABS] = {"abs", 1, 1},
    [OP_ELEMENT] = {"element", 2, 2},
    [OP_SIZE] = {"size", 1, 1},
    [OP_HD] = {"hd", 1, 1},
    [OP_TL] = {"tl", 1, 1},
    [OP_IS_ATOM] = {"is_atom", 1, 1},
    [OP_IS_INTEGER] = {"is_integer", 1, 1},
    [OP_IS_FLOAT] = {"is_float", 1, 1},
    [OP_IS_NUMBER] = {"is_number", 1, 1},
    [OP_IS_TUPLE] = {"is_tuple", 1, 1},
    [OP_IS_LIST] = {"is_list", 1, 1},
    [OP_IS_BINARY] = {"is_binary", 1, 1},
    [OP_IS_PID] = {"is_pid", 1, 1},
    [OP_IS_MAP] = {"is_map", 1, 1},
    [OP_IS_REF] = {"is_reference", 1, 1},
    [OP_CONST] = {"const", 1, 1},
};

static int op_of(keel_term a) {
  if (!keel_is_atom(a))
    return -1;
  size_t len;
  const char *n = keel_atom_name(a, &len);
  for (int i = 0; i < OP_COUNT_; i++)
    if (strlen(ms_ops[i].name) == len && memcmp(ms_ops[i].name, n, len) == 0)
      return i;
  return -1;
}

/* ---- compile ---- */

typedef struct cctx {
  keel_heap *h;
  unsigned maxvar; /* highest N + 1 seen in the head */
  int err;
} cctx;

/* A variable atom's replacement, or KEEL_NONE. */
static keel_term var_of(keel_term a, cctx *c) {
  size_t len;
  const char *n = keel_atom_name(a, &len);
  if (len == 1 && n[0] == '_')
    return VAR_ANY;
  if (len < 2 || n[0] != '$')
    return KEEL_NONE;
  if (len == 2 && n[1] == '_')
    return VAR_OBJ;
  if (len == 2 && n[1] == '$')
    return VAR_ALL;
  unsigned v = 0;
  for (size_t i = 1; i < len; i++) {
    if (n[i] < '0' || n[i] > '9')
      return KEEL_NONE;
    v = v * 10 + (unsigned)(n[i] - '0');
    if (v > MS_MAXVAR) {
      c->err = KEEL_EBADARG;
      return KEEL_NONE;
    }
  }
  if (v + 1 > c->maxvar)
    c->maxvar = v + 1;
  return VAR(v);
}

static keel_term xform(keel_term t, bool expr, int depth, cctx *c);

static keel_term xform_tuple(keel_term t, bool expr, int depth, cctx *c) {
  size_t n = keel_tuple_arity(t);
  if (expr && n == 2 && op_of(keel_tuple_get(t, 0)) == OP_CONST)
    return keel_tuple(c->h, 2, keel_tuple_get(t, 0),
                      keel_term_copy(c->h, keel_tuple_get(t, 1)));
  keel_term *el;
  keel_term r = keel_tuple_new(c->h, n, &el);
  if (r == KEEL_NONE)
    return KEEL_NONE;
  for (size_t i = 0; i < n; i++) {
    el[i] = xform(keel_tuple_get(t, i), expr, depth + 1, c);
    if (el[i] == KEEL_NONE) {
      for (size_t j = i; j < n; j++)
        el[j] = KEEL_NIL;
      return KEEL_NONE;
    }
  }
  return r;
}

static keel_term xform_list(keel_term t, bool expr, int depth, cctx *c) {
  size_t n = 0;
  keel_term l = t;
  for (; keel_is_cons(l); l = keel_tl(l))
    n++;
  keel_term *v = malloc(n * sizeof *v);
  if (v == NULL)
    return KEEL_NONE;
  keel_term tail = xform(l, expr, depth + 1, c);
  size_t i = 0;
  for (l = t; tail != KEEL_NONE && keel_is_cons(l); l = keel_tl(l)) {
    v[i] = xform(keel_hd(l), expr, depth + 1, c);
    if (v[i++] == KEEL_NONE)
      tail = KEEL_NONE;
  }
  keel_term r =
      tail == KEEL_NONE ? KEEL_NONE : keel_list_from_tail(c->h, n, v, tail);
  free(v);
  return r;
}

static keel_term xform(keel_term t, bool expr, int depth, cctx *c) {
  if (depth > MS_MAX_DEPTH) {
    c->err = KEEL_ELIMIT;
    return KEEL_NONE;
  }
  if (keel_is_atom(t)) {
    keel_term v = var_of(t, c);
    return v != KEEL_NONE ? v : (c->err ? KEEL_NONE : t);
  }
  if (keel_is_tuple(t))
    return xform_tuple(t, expr, depth, c);
  if (keel_is_cons(t))
    return xform_list(t, expr, depth, c);
  return keel_term_copy(c->h, t);
}

/* Checks an expression: known calls with their arities. */
static bool check_expr(keel_term e, int depth) {
  if (depth > MS_MAX_DEPTH)
    return false;
  if (keel_is_cons(e)) {
    for (; keel_is_cons(e); e = keel_tl(e))
      if (!check_expr(keel_hd(e), depth + 1))
        return false;
    return keel_is_nil(e);
  }
  if (!keel_is_tuple(e))
    return true;
  size_t n = keel_tuple_arity(e);
  if (n == 0)
    return false;
  if (n == 1 && keel_is_tuple(keel_tuple_get(e, 0))) {
    keel_term in = keel_tuple_get(e, 0);
    for (size_t i = 0; i < keel_tuple_arity(in); i++)
      if (!check_expr(keel_tuple_get(in, i), depth + 1))
        return false;
    return true;
  }
  int op = op_of(keel_tuple_get(e, 0));
  if (op < 0 || (int)n - 1 < ms_ops[op].min || (int)n - 1 > ms_ops[op].max)
    return false;
  if (op == OP_CONST)
    return true;
  for (size_t i = 1; i < n; i++)
    if (!check_expr(keel_tuple_get(e, i), depth + 1))
      return false;
  return true;
}

static bool check_list(keel_term l, bool nonempty) {
  size_t len;
  if (keel_list_length(l, &len) != KEEL_OK || (nonempty && len == 0))
    return false;
  for (; keel_is_cons(l); l = keel_tl(l))
    if (!check_expr(keel_hd(l), 0))
      return false;
  return true;
}

static int compile_clause(keel_term cl, keel__ms_clause *out, keel_heap *h) {
  if (!keel_is_tuple(cl) || keel_tuple_arity(cl) != 3)
    return KEEL_EBADARG;
  cctx c = {.h = h};
  keel_term head = keel_tuple_get(cl, 0);
  if (!keel_is_tuple(head) && !keel_is_atom(head))
    return KEEL_EBADARG;
  out->head = xform(head, false, 0, &c);
  out->maxvar = c.maxvar;
  out->guards = out->head ? xform(keel_tuple_get(cl, 1), true, 0, &c) : 0;
  out->body = out->guards ? xform(keel_tuple_get(cl, 2), true, 0, &c) : 0;
  if (c.err)
    return c.err;
  if (out->body == KEEL_NONE)
    return KEEL_ENOMEM;
  if (!check_list(out->guards, false) || !check_list(out->body, true))
    return KEEL_EBADARG;
  return KEEL_OK;
}

int keel_ets_ms_compile(keel_term spec, keel_ets_ms **out) {
  size_t n;
  if (out == NULL)
    return KEEL_EINVAL;
  if (keel_list_length(spec, &n) != KEEL_OK)
    return KEEL_EBADARG;
  keel_ets_ms *ms = calloc(1, sizeof *ms);
  if (ms == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&ms->heap);
  ms->c = calloc(n ? n : 1, sizeof *ms->c);
  int rc = ms->c == NULL ? KEEL_ENOMEM : KEEL_OK;
  for (keel_term l = spec; rc == KEEL_OK && keel_is_cons(l); l = keel_tl(l))
    rc = compile_clause(keel_hd(l), &ms->c[ms->n++], &ms->heap);
  if (rc != KEEL_OK) {
    keel_ets_ms_free(ms);
    return rc;
  }
  *out = ms;
  return KEEL_OK;
}

void keel_ets_ms_free(keel_ets_ms *ms) {
  if (ms == NULL)
    return;
  keel_heap_destroy(&ms->heap);
  free(ms->c);
  free(ms);
}

/* ---- matching the head ---- */

static bool match(keel_term p, keel_term t, keel_term *b) {
  for (;;) {
    if (is_pv(p)) {
      unsigned v = pv_num(p);
      if (v == 0)
        return true;
      if (b[v - 1] == KEEL_NONE) {
        b[v - 1] = t;
        return true;
      }
      return keel_eq_exact(b[v - 1], t);
    }
    if (keel_is_tuple(p)) {
      if (!keel_is_tuple(t) || keel_tuple_arity(t) != keel_tuple_arity(p))
        return false;
      size_t n = keel_tuple_arity(p);
      for (size_t i = 0; i < n; i++)
        if (!match(keel_tuple_get(p, i), keel_tuple_get(t, i), b))
          return false;
      return true;
    }
    if (keel_is_cons(p)) {
      if (!keel_is_cons(t) || !match(keel_hd(p), keel_hd(t), b))
        return false;
      p = keel_tl(p);
      t = keel_tl(t);
      continue;
    }
    return keel_eq_exact(p, t);
  }
}

bool keel__ms_ground(keel_term p) {
  if (is_pv(p))
    return false;
  if (keel_is_tuple(p)) {
    for (size_t i = 0; i < keel_tuple_arity(p); i++)
      if (!keel__ms_ground(keel_tuple_get(p, i)))
        return false;
    return true;
  }
  for (; keel_is_cons(p); p = keel_tl(p))
    if (!keel__ms_ground(keel_hd(p)))
      return false;
  return !is_pv(p);
}

/* ---- evaluation ---- */

typedef struct ectx {
  keel_term *b;
  unsigned maxvar;
  keel_term obj;
  keel_heap *h;
} ectx;

static keel_term eval(keel_term e, ectx *x);

static keel_term boolean(bool v) {
  return v ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE);
}

static int truth(keel_term t) {
  if (t == KEEL_ATOM(TRUE))
    return 1;
  return t == KEEL_ATOM(FALSE) ? 0 : -1;
}

static keel_term arith(int op, keel_term a, keel_term b, keel_heap *h) {
  int64_t x, y, r;
  if (keel_get_int64(a, &x) == KEEL_OK && keel_get_int64(b, &y) == KEEL_OK) {
    bool ovf = false;
    switch (op) {
    case OP_ADD:
      ovf = __builtin_add_overflow(x, y, &r);
      break;
    case OP_SUB:
      ovf = __builtin_sub_overflow(x, y, &r);
      break;
    case OP_MUL:
      ovf = __builtin_mul_overflow(x, y, &r);
      break;
    case OP_DIV:
    case OP_REM:
      if (y == 0 || (x == INT64_MIN && y == -1))
        return KEEL_NONE;
      r = op == OP_DIV ? x / y : x % y;
      break;
    default:
      return KEEL_NONE;
    }
    return ovf ? KEEL_NONE : keel_int(h, r);
  }
  double dx, dy;
  if (op == OP_DIV || op == OP_REM || !keel_is_number(a) ||
      !keel_is_number(b) || keel_get_number(a, &dx) != KEEL_OK ||
      keel_get_number(b, &dy) != KEEL_OK)
    return KEEL_NONE;
  double d = op == OP_ADD ? dx + dy : op == OP_SUB ? dx - dy : dx * dy;
  return keel_float(h, d);
}

static keel_term compare(int op, keel_term a, keel_term b) {
  int c = keel_cmp(a, b);
  switch (op) {
  case OP_LT:
    return boolean(c < 0);
  case OP_GT:
    return boolean(c > 0);
  case OP_LE:
    return boolean(c <= 0);
  case OP_GE:
    return boolean(c >= 0);
  case OP_EQ:
    return boolean(c == 0);
  case OP_NE:
    return boolean(c != 0);
  case OP_EXEQ:
    return boolean(keel_eq_exact(a, b));
  default:
    return boolean(!keel_eq_exact(a, b));
  }
}

static keel_term type_test(int op, keel_term a) {
  switch (op) {
  case OP_IS_ATOM:
    return boolean(keel_is_atom(a));
  case OP_IS_INTEGER:
    return boolean(keel_is_integer(a));
  case OP_IS_FLOAT:
    return boolean(keel_is_float(a));
  case OP_IS_NUMBER:
    return boolean(keel_is_number(a));
  case OP_IS_TUPLE:
    return boolean(keel_is_tuple(a));
  case OP_IS_LIST:
    return boolean(keel_is_list(a));
  case OP_IS_BINARY:
    return boolean(keel_is_binary(a));
  case OP_IS_PID:
    return boolean(keel_is_pid(a));
  case OP_IS_MAP:
    return boolean(keel_is_map(a));
  default:
    return boolean(keel_is_ref(a));
  }
}

/* andalso/orelse (short-circuit) and and/or (strict), n-ary. */
static keel_term logic(int op, keel_term e, ectx *x) {
  size_t n = keel_tuple_arity(e);
  bool stop_on = op == OP_ORELSE || op == OP_OR; /* value that decides */
  bool decided = false;
  for (size_t i = 1; i < n; i++) {
    int v = truth(eval(keel_tuple_get(e, i), x));
    if (v < 0)
      return KEEL_NONE;
    if ((v == 1) == stop_on) {
      decided = true;
      if (op == OP_ANDALSO || op == OP_ORELSE)
        break;
    }
  }
  return boolean(decided ? stop_on : !stop_on);
}

static keel_term unary(int op, keel_term a, keel_heap *h) {
  int64_t v;
  double d;
  switch (op) {
  case OP_NOT: {
    int t = truth(a);
    return t < 0 ? KEEL_NONE : boolean(t == 0);
  }
  case OP_ADD:
    return keel_is_number(a) ? a : KEEL_NONE;
  case OP_SUB:
  case OP_ABS:
    if (keel_get_int64(a, &v) == KEEL_OK)
      return v == INT64_MIN ? KEEL_NONE
             : op == OP_SUB ? keel_int(h, -v)
                            : keel_int(h, v < 0 ? -v : v);
    if (keel_get_double(a, &d) == KEEL_OK)
      return keel_float(h, op == OP_SUB ? -d : (d < 0 ? -d : d));
    return KEEL_NONE;
  case OP_SIZE:
    if (keel_is_tuple(a))
      return keel_small((int64_t)keel_tuple_arity(a));
    if (keel_is_binary(a)) {
      size_t len;
      keel_binary_data(a, &len);
      return keel_small((int64_t)len);
    }
    return KEEL_NONE;
  case OP_HD:
    return keel_is_cons(a) ? keel_hd(a) : KEEL_NONE;
  case OP_TL:
    return keel_is_cons(a) ? keel_tl(a) : KEEL_NONE;
  default:
    return type_test(op, a);
  }
}

static keel_term call(keel_term e, ectx *x) {
  int op = op_of(keel_tuple_get(e, 0));
  if (op == OP_CONST)
    return keel_tuple_get(e, 1);
  if (op == OP_ANDALSO || op == OP_ORELSE || op == OP_AND || op == OP_OR)
    return logic(op, e, x);
  keel_term a = eval(keel_tuple_get(e, 1), x);
  if (a == KEEL_NONE)
    return KEEL_NONE;
  if (keel_tuple_arity(e) == 2)
    return unary(op, a, x->h);
  keel_term b = eval(keel_tuple_get(e, 2), x);
  if (b == KEEL_NONE)
    return KEEL_NONE;
  if (op <= OP_EXNE)
    return compare(op, a, b);
  if (op == OP_XOR) {
    int ta = truth(a), tb = truth(b);
    return ta < 0 || tb < 0 ? KEEL_NONE : boolean(ta != tb);
  }
  if (op == OP_ELEMENT) {
    int64_t i;
    if (keel_get_int64(a, &i) != KEEL_OK || !keel_is_tuple(b) || i < 1 ||
        (uint64_t)i > keel_tuple_arity(b))
      return KEEL_NONE;
    return keel_tuple_get(b, (size_t)i - 1);
  }
  return arith(op, a, b, x->h);
}

static keel_term eval_var(keel_term e, ectx *x) {
  if (e == VAR_OBJ)
    return x->obj;
  if (e == VAR_ALL) {
    keel_term l = KEEL_NIL;
    for (unsigned i = x->maxvar; i-- > 0 && l != KEEL_NONE;)
      if (x->b[i] != KEEL_NONE)
        l = keel_cons(x->h, x->b[i], l);
    return l;
  }
  unsigned v = pv_num(e);
  return v == 0 || v > x->maxvar ? KEEL_NONE : x->b[v - 1];
}

static keel_term eval(keel_term e, ectx *x) {
  if (is_pv(e))
    return eval_var(e, x);
  if (keel_is_cons(e)) {
    keel_term head = eval(keel_hd(e), x);
    keel_term tail = head == KEEL_NONE ? KEEL_NONE : eval(keel_tl(e), x);
    return tail == KEEL_NONE ? KEEL_NONE : keel_cons(x->h, head, tail);
  }
  if (!keel_is_tuple(e))
    return e;
  if (keel_tuple_arity(e) == 1) { /* {{E1, ..., En}} */
    keel_term in = keel_tuple_get(e, 0);
    keel_term *el;
    size_t n = keel_tuple_arity(in);
    keel_term r = keel_tuple_new(x->h, n, &el);
    if (r == KEEL_NONE)
      return KEEL_NONE;
    for (size_t i = 0; i < n; i++)
      el[i] = KEEL_NIL;
    for (size_t i = 0; i < n; i++)
      if ((el[i] = eval(keel_tuple_get(in, i), x)) == KEEL_NONE)
        return KEEL_NONE;
    return r;
  }
  return call(e, x);
}

keel_term keel__ms_run(const keel_ets_ms *ms, keel_term obj, keel_heap *h) {
  keel_term b[MS_MAXVAR + 1];
  for (size_t c = 0; c < ms->n; c++) {
    const keel__ms_clause *cl = &ms->c[c];
    for (unsigned i = 0; i < cl->maxvar; i++)
      b[i] = KEEL_NONE;
    if (!match(cl->head, obj, b))
      continue;
    ectx x = {.b = b, .maxvar = cl->maxvar, .obj = obj, .h = h};
    bool ok = true;
    for (keel_term g = cl->guards; ok && keel_is_cons(g); g = keel_tl(g))
      ok = eval(keel_hd(g), &x) == KEEL_ATOM(TRUE);
    if (!ok)
      continue;
    keel_term r = KEEL_NONE;
    for (keel_term l = cl->body; keel_is_cons(l); l = keel_tl(l))
      if ((r = eval(keel_hd(l), &x)) == KEEL_NONE)
        break;
    if (r != KEEL_NONE)
      return r;
  }
  return KEEL_NONE;
}

int keel_ets_ms_run(const keel_ets_ms *ms, keel_term obj, keel_heap *h,
                    keel_term *out) {
  if (ms == NULL || h == NULL || out == NULL || obj == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term r = keel__ms_run(ms, obj, &tmp);
  int rc = 0;
  if (r != KEEL_NONE) {
    *out = keel_term_copy(h, r);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : 1;
  }
  keel_heap_destroy(&tmp);
  return rc;
}
