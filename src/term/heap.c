/*
 * heap.c - term heaps (arenas) and deep copy.
 *
 * A heap is a chain of chunks with a bump pointer. Terms are never freed
 * one by one; the whole heap goes at once. Boxes that hold a counted
 * reference to something outside the heap (large binaries, resources) are
 * chained from h->offheap so destroy can drop those references.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "term/term_internal.h"

#define FIRST_CHUNK_WORDS 64
#define MAX_CHUNK_WORDS (64 * 1024)

struct keel_heap_chunk {
  struct keel_heap_chunk *next;
  size_t words;
  uint64_t data[];
};

void keel_heap_init(keel_heap *h) {
  h->top = NULL;
  h->end = NULL;
  h->chunks = NULL;
  h->offheap = NULL;
  h->next_words = FIRST_CHUNK_WORDS;
  h->used_words = 0;
  h->fixed = 0;
}

void keel_heap_init_sized(keel_heap *h, size_t words) {
  keel_heap_init(h);
  if (words > FIRST_CHUNK_WORDS)
    h->next_words = words < MAX_CHUNK_WORDS ? words : MAX_CHUNK_WORDS;
}

void keel_heap_init_fixed(keel_heap *h, uint64_t *buf, size_t words) {
  keel_heap_init(h);
  h->top = buf;
  h->end = buf + words;
  h->fixed = 1;
}

static uint64_t **offheap_next(uint64_t *box) {
  size_t at = keel__hdr_type(box[0]) == KEEL_BOX_REFCBIN ? 3 : 2;
  return (uint64_t **)&box[at];
}

keel_offheap *keel_heap_take_offheap(keel_heap *h) {
  keel_offheap *chain = (keel_offheap *)h->offheap;
  h->offheap = NULL;
  return chain;
}

void keel_offheap_release(keel_offheap *chain) {
  for (uint64_t *box = (uint64_t *)chain; box != NULL;) {
    uint64_t *next = *offheap_next(box);
    if (keel__hdr_type(box[0]) == KEEL_BOX_REFCBIN)
      keel__binobj_release((keel_binobj *)(uintptr_t)box[2]);
    else
      keel_resource_release((keel_resource *)(uintptr_t)box[1]);
    box = next;
  }
}

void keel_heap_destroy(keel_heap *h) {
  keel_offheap_release(keel_heap_take_offheap(h));
  for (struct keel_heap_chunk *c = h->chunks; c != NULL;) {
    struct keel_heap_chunk *next = c->next;
    free(c);
    c = next;
  }
  keel_heap_init(h);
}

static uint64_t *alloc_slow(keel_heap *h, size_t words) {
  if (h->fixed)
    return NULL;
  size_t cw = h->next_words;
  if (words > cw / 2) {
    /* A large request gets a chunk of its own, kept behind the current
     * one so the current chunk's free space is not wasted. */
    if (words > (SIZE_MAX - sizeof(struct keel_heap_chunk)) / 8)
      return NULL;
    struct keel_heap_chunk *c =
        keel__fault() ? NULL : malloc(sizeof *c + words * 8);
    if (c == NULL)
      return NULL;
    c->words = words;
    if (h->chunks != NULL) {
      c->next = h->chunks->next;
      h->chunks->next = c;
    } else {
      c->next = NULL;
      h->chunks = c;
      h->top = h->end = c->data + words;
    }
    h->used_words += words;
    return c->data;
  }
  struct keel_heap_chunk *c = keel__fault() ? NULL : malloc(sizeof *c + cw * 8);
  if (c == NULL)
    return NULL;
  c->words = cw;
  c->next = h->chunks;
  h->chunks = c;
  h->top = c->data + words;
  h->end = c->data + cw;
  if (h->next_words < MAX_CHUNK_WORDS)
    h->next_words *= 2;
  h->used_words += words;
  return c->data;
}

uint64_t *keel_heap_alloc(keel_heap *h, size_t words) {
  if (words <= (size_t)(h->end - h->top)) {
    uint64_t *p = h->top;
    h->top += words;
    h->used_words += words;
    return p;
  }
  return alloc_slow(h, words);
}

size_t keel_heap_used_words(const keel_heap *h) {
  return h->used_words;
}

void keel__heap_link_offheap(keel_heap *h, uint64_t *box) {
  *offheap_next(box) = h->offheap;
  h->offheap = box;
}

/* ---- explicit stacks for iterative walks --------------------------------- */

typedef struct walk_stack {
  uint64_t **items;
  size_t len, cap;
  uint64_t *inline_items[32];
} walk_stack;

static void ws_init(walk_stack *s) {
  s->items = s->inline_items;
  s->len = 0;
  s->cap = sizeof s->inline_items / sizeof s->inline_items[0];
}

static void ws_free(walk_stack *s) {
  if (s->items != s->inline_items)
    free(s->items);
}

static bool ws_push(walk_stack *s, uint64_t *p) {
  if (s->len == s->cap) {
    size_t cap = s->cap * 2;
    uint64_t **n = malloc(cap * sizeof *n);
    if (n == NULL)
      return false;
    memcpy(n, s->items, s->len * sizeof *n);
    ws_free(s);
    s->items = n;
    s->cap = cap;
  }
  s->items[s->len++] = p;
  return true;
}

static bool is_pointer(keel_term t) {
  return t != KEEL_NONE && (t & KEEL_TAG_MASK) <= KEEL_TAG_CONS;
}

/* Pushes the addresses of every pointer-valued word in [from, from + n). */
static bool push_slots(walk_stack *s, uint64_t *from, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is_pointer(from[i]) && !ws_push(s, &from[i]))
      return false;
  return true;
}

/* Words of one object and pushes (into s) the slots of its children;
 * walks a list's spine in place instead of pushing tails. */
static bool size_one(walk_stack *s, keel_term t, size_t *words) {
  while (keel_is_cons(t)) {
    uint64_t *cell = keel__cons_ptr(t);
    *words += 2;
    if (is_pointer(cell[0]) && !ws_push(s, &cell[0]))
      return false;
    t = cell[1];
  }
  if (!keel_is_boxed(t))
    return true;
  uint64_t *box = keel__box(t);
  *words += keel__box_words(box[0]);
  unsigned type = keel__hdr_type(box[0]);
  size_t n = keel__hdr_size(box[0]);
  if (type == KEEL_BOX_TUPLE)
    return push_slots(s, box + 1, n);
  if (type == KEEL_BOX_MAP)
    return push_slots(s, box + 1, 2 * n);
  return true;
}

size_t keel_term_copy_words(keel_term t) {
  walk_stack s;
  ws_init(&s);
  size_t words = 0;
  bool ok = size_one(&s, t, &words);
  while (ok && s.len > 0)
    ok = size_one(&s, *s.items[--s.len], &words);
  ws_free(&s);
  return ok ? words : SIZE_MAX;
}

/* Copies one box shallowly into dst; children slots are pushed. */
static keel_term copy_box(keel_heap *dst, walk_stack *s, keel_term t) {
  uint64_t *box = keel__box(t);
  size_t words = keel__box_words(box[0]);
  uint64_t *to = keel_heap_alloc(dst, words);
  if (to == NULL)
    return KEEL_NONE;
  memcpy(to, box, words * 8);
  size_t n = keel__hdr_size(box[0]);
  switch (keel__hdr_type(box[0])) {
  case KEEL_BOX_TUPLE:
    if (!push_slots(s, to + 1, n))
      return KEEL_NONE;
    break;
  case KEEL_BOX_MAP:
    if (!push_slots(s, to + 1, 2 * n))
      return KEEL_NONE;
    break;
  case KEEL_BOX_REFCBIN:
    /* relaxed: taking a new reference while one is held needs no order. */
    atomic_fetch_add_explicit(&((keel_binobj *)(uintptr_t)to[2])->refc, 1,
                              memory_order_relaxed);
    keel__heap_link_offheap(dst, to);
    break;
  case KEEL_BOX_RESOURCE:
    keel_resource_retain((keel_resource *)(uintptr_t)to[1]);
    keel__heap_link_offheap(dst, to);
    break;
  default:
    break;
  }
  return keel__boxed(to);
}

/* Copies the term stored in *slot and rewrites *slot to the copy. */
static bool copy_slot(keel_heap *dst, walk_stack *s, uint64_t *slot) {
  keel_term t = *slot;
  while (keel_is_cons(t)) {
    uint64_t *cell = keel_heap_alloc(dst, 2);
    if (cell == NULL)
      return false;
    const uint64_t *from = keel__cons_ptr(t);
    cell[0] = from[0];
    cell[1] = KEEL_NIL; /* patched below; keeps the cell valid meanwhile */
    *slot = keel__cons_term(cell);
    if (is_pointer(cell[0]) && !ws_push(s, &cell[0]))
      return false;
    slot = &cell[1];
    t = from[1];
  }
  if (keel_is_boxed(t)) {
    t = copy_box(dst, s, t);
    if (t == KEEL_NONE)
      return false;
  }
  *slot = t;
  return true;
}

keel_term keel_term_copy(keel_heap *dst, keel_term t) {
  if (!is_pointer(t))
    return t;
  walk_stack s;
  ws_init(&s);
  uint64_t root = t;
  bool ok = copy_slot(dst, &s, &root);
  while (ok && s.len > 0)
    ok = copy_slot(dst, &s, s.items[--s.len]);
  ws_free(&s);
  return ok ? root : KEEL_NONE;
}
