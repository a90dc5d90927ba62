/*
 * diff.c - the LiveView-style diff between two snapshots and its apply
 * (the browser's applyDiff in assets/diff.js mirrors apply_node).
 *
 * A diff node is a map with one of these shapes:
 *   #{}                          nothing changed
 *   #{v => New}                  replace with New
 *   #{m => #{K => Node}, r => [K]}  map patch: changed or added keys (an
 *                                added key's node is #{v => _}), removed
 *                                keys; either part may be absent
 *   #{k => #{d => [Id], u => [[Id, Node]], a => [Row], o => [Id]}}
 *                                keyed rows (maps with an id key): deleted,
 *                                updated, added (appended in order), and
 *                                the new order of ids when it is not "old
 *                                order minus deleted, then added"
 *   #{s => N, p => [Item]}       list: drop N from the head, append Items
 */
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "keel/dashboard.h"

typedef struct dctx {
  keel_heap *h;
  int err;
} dctx;

/* A growable array of terms (malloc'd scratch, never on the heap). */
typedef struct tvec {
  keel_term *v;
  size_t n, cap;
} tvec;

static int tv_push(tvec *t, keel_term x) {
  if (t->n == t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 16;
    keel_term *nv = realloc(t->v, nc * sizeof *nv);
    if (nv == NULL)
      return KEEL_ENOMEM;
    t->v = nv;
    t->cap = nc;
  }
  t->v[t->n++] = x;
  return KEEL_OK;
}

static void tv_free(tvec *t) {
  free(t->v);
  t->v = NULL;
  t->n = t->cap = 0;
}

/* ---- an index of row ids ------------------------------------------------ */

typedef struct idindex {
  size_t cap;    /* power of two */
  int64_t *slot; /* position + 1, 0 = empty */
  const keel_term *ids;
} idindex;

static int idx_init(idindex *x, const keel_term *ids, size_t n) {
  x->cap = 16;
  while (x->cap < 2 * n)
    x->cap *= 2;
  x->slot = calloc(x->cap, sizeof *x->slot);
  x->ids = ids;
  return x->slot ? KEEL_OK : KEEL_ENOMEM;
}

static int64_t idx_find(const idindex *x, keel_term id) {
  size_t i = (size_t)keel_hash(id) & (x->cap - 1);
  for (; x->slot[i] != 0; i = (i + 1) & (x->cap - 1))
    if (keel_eq_exact(x->ids[x->slot[i] - 1], id))
      return x->slot[i] - 1;
  return -1;
}

/* Inserts position pos; false when its id is already there. */
static bool idx_add(idindex *x, size_t pos) {
  keel_term id = x->ids[pos];
  size_t i = (size_t)keel_hash(id) & (x->cap - 1);
  for (; x->slot[i] != 0; i = (i + 1) & (x->cap - 1))
    if (keel_eq_exact(x->ids[x->slot[i] - 1], id))
      return false;
  x->slot[i] = (int64_t)pos + 1;
  return true;
}

/* ---- shared helpers ----------------------------------------------------- */

/* Elements of a proper list into a malloc'd array; false when improper. */
static int list_elems(keel_term l, tvec *out) {
  size_t n;
  if (keel_list_length(l, &n) != KEEL_OK)
    return KEEL_EBADARG;
  for (; keel_is_cons(l); l = keel_tl(l))
    if (tv_push(out, keel_hd(l)) != KEEL_OK)
      return KEEL_ENOMEM;
  return KEEL_OK;
}

/* Ids of rows: KEEL_OK when every element is a map with an id key. */
static int row_ids(const tvec *rows, tvec *ids) {
  for (size_t i = 0; i < rows->n; i++) {
    keel_term id;
    if (!keel_is_map(rows->v[i]) ||
        keel__dash_param(rows->v[i], "id", &id) != KEEL_OK)
      return KEEL_EBADARG;
    if (tv_push(ids, id) != KEEL_OK)
      return KEEL_ENOMEM;
  }
  return KEEL_OK;
}

static keel_term map1(dctx *c, const char *k, keel_term v) {
  keel_term key = keel_atom(k);
  keel_term m = keel_map_from(c->h, 1, &key, &v);
  if (m == KEEL_NONE)
    c->err = KEEL_ENOMEM;
  return m;
}

static keel_term list_of(dctx *c, const tvec *t) {
  keel_term l = keel_list_from(c->h, t->n, t->v);
  if (l == KEEL_NONE && t->n > 0)
    c->err = KEEL_ENOMEM;
  return l;
}

/* ---- diff --------------------------------------------------------------- */

static keel_term dnode(dctx *c, keel_term a, keel_term b);

static keel_term replace(dctx *c, keel_term b) {
  return map1(c, "v", b);
}

static keel_term diff_map(dctx *c, keel_term a, keel_term b) {
  tvec ks = {0}, ns = {0}, rm = {0};
  size_t nb = keel_map_size(b), na = keel_map_size(a);
  for (size_t i = 0; i < nb && !c->err; i++) {
    keel_term k, vb, va;
    keel_map_at(b, i, &k, &vb);
    keel_term node =
        keel_map_get(a, k, &va) == KEEL_OK ? dnode(c, va, vb) : replace(c, vb);
    if (node != KEEL_NONE && !c->err &&
        (tv_push(&ks, k) != KEEL_OK || tv_push(&ns, node) != KEEL_OK))
      c->err = KEEL_ENOMEM;
  }
  for (size_t i = 0; i < na && !c->err; i++) {
    keel_term k, va, vb;
    keel_map_at(a, i, &k, &va);
    if (keel_map_get(b, k, &vb) != KEEL_OK && tv_push(&rm, k) != KEEL_OK)
      c->err = KEEL_ENOMEM;
  }
  keel_term keys[2], vals[2];
  size_t n = 0;
  if (!c->err && ks.n > 0) {
    keys[n] = keel_atom("m");
    vals[n] = keel_map_from(c->h, ks.n, ks.v, ns.v);
    c->err = vals[n++] == KEEL_NONE ? KEEL_ENOMEM : 0;
  }
  if (!c->err && rm.n > 0) {
    keys[n] = keel_atom("r");
    vals[n++] = list_of(c, &rm);
  }
  tv_free(&ks);
  tv_free(&ns);
  tv_free(&rm);
  if (c->err || n == 0)
    return KEEL_NONE;
  keel_term m = keel_map_from(c->h, n, keys, vals);
  if (m == KEEL_NONE)
    c->err = KEEL_ENOMEM;
  return m;
}

/* Whether the new order of ids is "old order minus deleted, then added". */
static bool natural_order(const tvec *aid, const idindex *bx, const tvec *bid,
                          const idindex *ax) {
  size_t j = 0;
  for (size_t i = 0; i < aid->n; i++) {
    if (idx_find(bx, aid->v[i]) < 0)
      continue; /* deleted */
    if (j >= bid->n || !keel_eq_exact(aid->v[i], bid->v[j]))
      return false;
    j++;
  }
  for (; j < bid->n; j++)
    if (idx_find(ax, bid->v[j]) >= 0)
      return false; /* a kept row after an added one */
  return true;
}

typedef struct kparts {
  tvec d, u, a;
} kparts;

static void kparts_free(kparts *p) {
  tv_free(&p->d);
  tv_free(&p->u);
  tv_free(&p->a);
}

static void keyed_parts(dctx *c, const tvec *ar, const tvec *aid,
                        const idindex *ax, const tvec *br, const tvec *bid,
                        const idindex *bx, kparts *p) {
  for (size_t i = 0; i < aid->n && !c->err; i++)
    if (idx_find(bx, aid->v[i]) < 0 && tv_push(&p->d, aid->v[i]) != KEEL_OK)
      c->err = KEEL_ENOMEM;
  for (size_t j = 0; j < bid->n && !c->err; j++) {
    int64_t i = idx_find(ax, bid->v[j]);
    if (i < 0) {
      if (tv_push(&p->a, br->v[j]) != KEEL_OK)
        c->err = KEEL_ENOMEM;
      continue;
    }
    keel_term node = dnode(c, ar->v[i], br->v[j]);
    if (node == KEEL_NONE || c->err)
      continue;
    keel_term pair[2] = {bid->v[j], node};
    keel_term l = keel_list_from(c->h, 2, pair);
    if (l == KEEL_NONE || tv_push(&p->u, l) != KEEL_OK)
      c->err = KEEL_ENOMEM;
  }
}

static keel_term keyed_node(dctx *c, kparts *p, const tvec *bid, bool order) {
  keel_term keys[4], vals[4];
  size_t n = 0;
  const char *names[3] = {"a", "d", "u"};
  const tvec *parts[3] = {&p->a, &p->d, &p->u};
  for (int i = 0; i < 3; i++)
    if (parts[i]->n > 0) {
      keys[n] = keel_atom(names[i]);
      vals[n++] = list_of(c, parts[i]);
    }
  if (!order) {
    keys[n] = keel_atom("o");
    vals[n++] = list_of(c, bid);
  }
  if (c->err || n == 0)
    return KEEL_NONE;
  keel_term inner = keel_map_from(c->h, n, keys, vals);
  if (inner == KEEL_NONE) {
    c->err = KEEL_ENOMEM;
    return KEEL_NONE;
  }
  return map1(c, "k", inner);
}

/* Keyed diff of two row lists; *ok false when they are not keyed rows. */
static keel_term diff_keyed(dctx *c, const tvec *ar, const tvec *br, bool *ok) {
  tvec aid = {0}, bid = {0};
  idindex ax = {0}, bx = {0};
  keel_term r = KEEL_NONE;
  *ok = false;
  if (row_ids(ar, &aid) != KEEL_OK || row_ids(br, &bid) != KEEL_OK ||
      idx_init(&ax, aid.v, aid.n) != KEEL_OK ||
      idx_init(&bx, bid.v, bid.n) != KEEL_OK)
    goto out;
  for (size_t i = 0; i < aid.n; i++)
    if (!idx_add(&ax, i))
      goto out;
  for (size_t i = 0; i < bid.n; i++)
    if (!idx_add(&bx, i))
      goto out;
  *ok = true;
  kparts p = {0};
  keyed_parts(c, ar, &aid, &ax, br, &bid, &bx, &p);
  if (!c->err)
    r = keyed_node(c, &p, &bid, natural_order(&aid, &bx, &bid, &ax));
  kparts_free(&p);
out:
  free(ax.slot);
  free(bx.slot);
  tv_free(&aid);
  tv_free(&bid);
  return r;
}

/* b is a[s..] followed by a tail: the smallest such s, or -1. */
static int64_t shift_of(const tvec *a, const tvec *b) {
  for (size_t s = 0; s < a->n; s++) {
    size_t keep = a->n - s;
    if (keep > b->n || !keel_eq_exact(a->v[s], b->v[0]))
      continue;
    size_t i = 1;
    while (i < keep && keel_eq_exact(a->v[s + i], b->v[i]))
      i++;
    if (i == keep)
      return (int64_t)s;
  }
  return -1;
}

static keel_term diff_shift(dctx *c, const tvec *a, const tvec *b, bool *ok) {
  *ok = false;
  if (a->n == 0 || b->n == 0)
    return KEEL_NONE;
  int64_t s = shift_of(a, b);
  if (s < 0)
    return KEEL_NONE;
  size_t keep = a->n - (size_t)s;
  *ok = true;
  keel_term keys[2] = {keel_atom("p"), keel_atom("s")};
  keel_term vals[2];
  vals[0] = keel_list_from(c->h, b->n - keep, b->v + keep);
  vals[1] = keel_small(s);
  keel_term m = vals[0] == KEEL_NONE && b->n > keep
                    ? KEEL_NONE
                    : keel_map_from(c->h, 2, keys, vals);
  if (m == KEEL_NONE)
    c->err = KEEL_ENOMEM;
  return m;
}

static keel_term diff_list(dctx *c, keel_term a, keel_term b) {
  tvec av = {0}, bv = {0};
  keel_term r = KEEL_NONE;
  bool ok = false;
  if (list_elems(a, &av) == KEEL_OK && list_elems(b, &bv) == KEEL_OK) {
    r = diff_keyed(c, &av, &bv, &ok);
    if (!ok && !c->err)
      r = diff_shift(c, &av, &bv, &ok);
  }
  tv_free(&av);
  tv_free(&bv);
  return ok || c->err ? r : replace(c, b);
}

/* The node turning a into b, or KEEL_NONE when they are equal (or on an
 * error, recorded in c->err). */
static keel_term dnode(dctx *c, keel_term a, keel_term b) {
  if (c->err || keel_eq_exact(a, b))
    return KEEL_NONE;
  if (keel_is_map(a) && keel_is_map(b))
    return diff_map(c, a, b);
  if (keel_is_list(a) && keel_is_list(b) && !keel_is_nil(a) && !keel_is_nil(b))
    return diff_list(c, a, b);
  return replace(c, b);
}

int keel_dashboard_diff(keel_term old, keel_term new_, keel_heap *h,
                        keel_term *out) {
  if (h == NULL || out == NULL || old == KEEL_NONE || new_ == KEEL_NONE)
    return KEEL_EINVAL;
  dctx c = {.h = h};
  keel_term node = dnode(&c, old, new_);
  if (c.err)
    return c.err;
  if (node == KEEL_NONE)
    node = keel_map_new(h);
  if (node == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = node;
  return KEEL_OK;
}

bool keel_dashboard_diff_empty(keel_term diff) {
  return keel_is_map(diff) && keel_map_size(diff) == 0;
}

/* ---- apply -------------------------------------------------------------- */

static int apply_node(dctx *c, keel_term old, keel_term node, keel_term *out);

/* A diff decoded from JSON has binary keys; one built here atom keys. */
static int get(keel_term m, const char *k, keel_term *v) {
  return keel__dash_param(m, k, v) == KEEL_OK;
}

static int apply_map(dctx *c, keel_term old, keel_term node, keel_term *out) {
  keel_term m = KEEL_NONE, r = KEEL_NIL;
  get(node, "m", &m);
  get(node, "r", &r);
  if (!keel_is_map(old) || (m != KEEL_NONE && !keel_is_map(m)) ||
      !keel_is_list(r))
    return KEEL_EBADARG;
  tvec ks = {0}, vs = {0};
  int rc = KEEL_OK;
  for (size_t i = 0; i < keel_map_size(old) && rc == KEEL_OK; i++) {
    keel_term k, v, x;
    keel_map_at(old, i, &k, &v);
    bool removed = false;
    for (keel_term l = r; keel_is_cons(l) && !removed; l = keel_tl(l))
      removed = keel_eq_exact(keel_hd(l), k);
    if (removed || (m != KEEL_NONE && keel_map_get(m, k, &x) == KEEL_OK))
      continue;
    if (tv_push(&ks, k) != KEEL_OK || tv_push(&vs, v) != KEEL_OK)
      rc = KEEL_ENOMEM;
  }
  size_t nm = m != KEEL_NONE ? keel_map_size(m) : 0;
  for (size_t i = 0; i < nm && rc == KEEL_OK; i++) {
    keel_term k, sub, ov = KEEL_NONE, nv;
    keel_map_at(m, i, &k, &sub);
    keel_map_get(old, k, &ov);
    rc = apply_node(c, ov, sub, &nv);
    if (rc == KEEL_OK &&
        (tv_push(&ks, k) != KEEL_OK || tv_push(&vs, nv) != KEEL_OK))
      rc = KEEL_ENOMEM;
  }
  if (rc == KEEL_OK) {
    *out = keel_map_from(c->h, ks.n, ks.v, vs.v);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  tv_free(&ks);
  tv_free(&vs);
  return rc;
}

static int apply_shift(dctx *c, keel_term old, keel_term node, keel_term *out) {
  keel_term s, p;
  int64_t n;
  if (!get(node, "s", &s) || !get(node, "p", &p) ||
      keel_get_int64(s, &n) != KEEL_OK || n < 0 || !keel_is_list(old))
    return KEEL_EBADARG;
  tvec ov = {0}, pv = {0};
  int rc = list_elems(old, &ov);
  if (rc == KEEL_OK)
    rc = list_elems(p, &pv);
  if (rc == KEEL_OK && (size_t)n > ov.n)
    rc = KEEL_EBADARG;
  for (size_t i = 0; i < pv.n && rc == KEEL_OK; i++)
    rc = tv_push(&ov, pv.v[i]);
  if (rc == KEEL_OK) {
    *out = keel_list_from(c->h, ov.n - (size_t)n, ov.v + n);
    rc = *out == KEEL_NONE && ov.n > (size_t)n ? KEEL_ENOMEM : KEEL_OK;
  }
  tv_free(&ov);
  tv_free(&pv);
  return rc;
}

/* Rows of the keyed result, before ordering: old rows (updated, minus
 * deleted) then added rows; ids parallel. */
static int keyed_rows(dctx *c, keel_term k, tvec *rows, tvec *ids) {
  keel_term d = KEEL_NIL, u = KEEL_NIL, a = KEEL_NIL;
  get(k, "d", &d);
  get(k, "u", &u);
  get(k, "a", &a);
  idindex x = {0};
  int rc = row_ids(rows, ids);
  if (rc == KEEL_OK)
    rc = idx_init(&x, ids->v, ids->n);
  for (size_t i = 0; i < ids->n && rc == KEEL_OK; i++)
    rc = idx_add(&x, i) ? KEEL_OK : KEEL_EBADARG;
  for (keel_term l = u; keel_is_cons(l) && rc == KEEL_OK; l = keel_tl(l)) {
    keel_term pr = keel_hd(l);
    size_t len;
    if (keel_list_length(pr, &len) != KEEL_OK || len != 2) {
      rc = KEEL_EBADARG;
      break;
    }
    int64_t i = idx_find(&x, keel_hd(pr));
    rc = i < 0 || (size_t)i >= rows->n || rows->v == NULL
             ? KEEL_EBADARG
             : apply_node(c, rows->v[i], keel_hd(keel_tl(pr)), &rows->v[i]);
  }
  for (keel_term l = d; keel_is_cons(l) && rc == KEEL_OK; l = keel_tl(l)) {
    int64_t i = idx_find(&x, keel_hd(l));
    if (i < 0 || (size_t)i >= rows->n || rows->v == NULL)
      rc = KEEL_EBADARG;
    else
      rows->v[i] = KEEL_NONE; /* deleted; ids->v[i] stays for the index */
  }
  free(x.slot);
  size_t w = 0;
  for (size_t i = 0; rows->v && ids->v && i < rows->n && i < ids->n; i++)
    if (rows->v[i] != KEEL_NONE) {
      ids->v[w] = ids->v[i];
      rows->v[w++] = rows->v[i];
    }
  rows->n = ids->n = w;
  for (keel_term l = a; keel_is_cons(l) && rc == KEEL_OK; l = keel_tl(l))
    rc = tv_push(rows, keel_hd(l));
  if (rc == KEEL_OK && keel_is_cons(a)) {
    ids->n = 0;
    rc = row_ids(rows, ids);
  }
  return rc;
}

static int order_rows(keel_term o, tvec *rows, tvec *ids) {
  idindex x = {0};
  tvec out = {0};
  int rc = idx_init(&x, ids->v, ids->n);
  for (size_t i = 0; i < ids->n && rc == KEEL_OK; i++)
    rc = idx_add(&x, i) ? KEEL_OK : KEEL_EBADARG;
  for (keel_term l = o; keel_is_cons(l) && rc == KEEL_OK; l = keel_tl(l)) {
    int64_t i = idx_find(&x, keel_hd(l));
    rc = i < 0 ? KEEL_EBADARG : tv_push(&out, rows->v[i]);
  }
  if (rc == KEEL_OK && out.n != rows->n)
    rc = KEEL_EBADARG;
  free(x.slot);
  if (rc == KEEL_OK) {
    tv_free(rows);
    *rows = out;
  } else {
    tv_free(&out);
  }
  return rc;
}

static int apply_keyed(dctx *c, keel_term old, keel_term k, keel_term *out) {
  if (!keel_is_map(k) || !keel_is_list(old))
    return KEEL_EBADARG;
  tvec rows = {0}, ids = {0};
  keel_term o = KEEL_NONE;
  int rc = list_elems(old, &rows);
  if (rc == KEEL_OK)
    rc = keyed_rows(c, k, &rows, &ids);
  if (rc == KEEL_OK && get(k, "o", &o))
    rc = order_rows(o, &rows, &ids);
  if (rc == KEEL_OK) {
    *out = keel_list_from(c->h, rows.n, rows.v);
    rc = *out == KEEL_NONE && rows.n > 0 ? KEEL_ENOMEM : KEEL_OK;
  }
  tv_free(&rows);
  tv_free(&ids);
  return rc;
}

static int apply_node(dctx *c, keel_term old, keel_term node, keel_term *out) {
  keel_term x;
  if (!keel_is_map(node))
    return KEEL_EBADARG;
  if (keel_map_size(node) == 0) {
    *out = old;
    return old == KEEL_NONE ? KEEL_EBADARG : KEEL_OK;
  }
  if (get(node, "v", &x)) {
    *out = x;
    return KEEL_OK;
  }
  if (old == KEEL_NONE)
    return KEEL_EBADARG; /* only a replacement may add a key */
  if (get(node, "k", &x))
    return apply_keyed(c, old, x, out);
  if (get(node, "s", &x))
    return apply_shift(c, old, node, out);
  if (get(node, "m", &x) || get(node, "r", &x))
    return apply_map(c, old, node, out);
  return KEEL_EBADARG;
}

int keel_dashboard_diff_apply(keel_term old, keel_term diff, keel_heap *h,
                              keel_term *out) {
  if (h == NULL || out == NULL || old == KEEL_NONE || diff == KEEL_NONE)
    return KEEL_EINVAL;
  dctx c = {.h = h};
  return apply_node(&c, old, diff, out);
}
