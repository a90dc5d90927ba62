/*
 * atom.c - the global atom table.
 *
 * Design notes
 * ------------
 * Atoms are never freed, so both directions of the table can be read
 * without a lock:
 *  - index -> entry: a two-level array. A chunk of CHUNK_SIZE entry
 *    pointers is allocated (under the lock) before any index inside it is
 *    handed out, and published with a release store; readers acquire it.
 *  - name -> index: open addressing over a power-of-two array of 32-bit
 *    slots holding index + 1 (0 = empty). Slots only ever change from 0 to
 *    a value, under the lock, with a release store after the entry is
 *    fully written; a reader that acquires a non-zero slot therefore sees
 *    a complete entry. The array has twice as many slots as the atom limit,
 *    so probing always ends at an empty slot.
 * Writers (new atoms) serialise on one mutex. The first KEEL_ATOMI_COUNT_
 * atoms are Keel's predefined ones (KEEL_ATOM(...)), interned by a
 * constructor before main().
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "term/term_internal.h"

#define ATOM_LIMIT (1u << 20)
#define CHUNK_BITS 12
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define NCHUNKS (ATOM_LIMIT / CHUNK_SIZE)
#define NSLOTS (2u * ATOM_LIMIT)

typedef struct atom_entry {
  uint64_t hash;
  uint32_t len;
  char name[]; /* len bytes, then a NUL */
} atom_entry;

typedef struct atom_chunk {
  atom_entry *_Atomic entries[CHUNK_SIZE];
} atom_chunk;

static struct {
  atom_chunk *_Atomic chunks[NCHUNKS];
  _Atomic uint32_t *slots; /* NSLOTS */
  _Atomic uint32_t count;
  pthread_mutex_t lock;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

keel_term keel__local_node = KEEL_ATOM(NONODE);
uint32_t keel__local_creation = 0;

/* FNV-1a, then a final avalanche: stable across runs and machines. */
static uint64_t name_hash(const char *s, size_t len) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < len; i++) {
    h ^= (uint8_t)s[i];
    h *= UINT64_C(0x100000001b3);
  }
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  return h;
}

long keel__utf8_count(const uint8_t *s, size_t len) {
  long n = 0;
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      n++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      k = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      k = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      k = 3;
      cp = c & 0x07;
    } else {
      return -1;
    }
    if (len - i <= k)
      return -1;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return -1;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return -1;
    i += k + 1;
    n++;
  }
  return n;
}

static atom_entry *entry_at(uint32_t index) {
  /* acquire: pairs with the release store that published the chunk. */
  atom_chunk *c = atomic_load_explicit(&table.chunks[index >> CHUNK_BITS],
                                       memory_order_acquire);
  if (c == NULL)
    return NULL;
  /* acquire: pairs with the release store of the entry pointer. */
  return atomic_load_explicit(&c->entries[index & (CHUNK_SIZE - 1)],
                              memory_order_acquire);
}

/* Probes for name; returns the slot index where it is, or the empty slot
 * where it would go (*found tells which). */
static uint32_t probe(const char *name, size_t len, uint64_t h, bool *found) {
  uint32_t mask = NSLOTS - 1;
  for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
    /* acquire: a non-zero slot's entry is fully written (see notes). */
    uint32_t v = atomic_load_explicit(&table.slots[i], memory_order_acquire);
    if (v == 0) {
      *found = false;
      return i;
    }
    atom_entry *e = entry_at(v - 1);
    if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0) {
      *found = true;
      return i;
    }
  }
}

int keel_atom_find(const char *name, size_t len, keel_term *out) {
  if (table.slots == NULL)
    return KEEL_ENOENT;
  bool found;
  uint32_t slot = probe(name, len, name_hash(name, len), &found);
  if (!found)
    return KEEL_ENOENT;
  uint32_t v = atomic_load_explicit(&table.slots[slot], memory_order_relaxed);
  *out = keel_atom_from_index(v - 1);
  return KEEL_OK;
}

/* Bytes of the atom entries made so far (names and headers). */
static _Atomic size_t entry_bytes;

size_t keel_atom_memory(void) {
  size_t count = keel_atom_count();
  size_t chunks = (count + CHUNK_SIZE - 1) / CHUNK_SIZE;
  return sizeof table + chunks * sizeof(atom_chunk) +
         atomic_load_explicit(&entry_bytes, memory_order_relaxed);
}

static int insert_locked(const char *name, size_t len, uint64_t h,
                         uint32_t slot, keel_term *out) {
  uint32_t index = atomic_load_explicit(&table.count, memory_order_relaxed);
  if (index >= ATOM_LIMIT)
    return KEEL_ESYSLIMIT;
  atom_chunk *c = atomic_load_explicit(&table.chunks[index >> CHUNK_BITS],
                                       memory_order_relaxed);
  if (c == NULL) {
    c = calloc(1, sizeof *c);
    if (c == NULL)
      return KEEL_ENOMEM;
    /* release: the zeroed chunk is visible before its pointer. */
    atomic_store_explicit(&table.chunks[index >> CHUNK_BITS], c,
                          memory_order_release);
  }
  atom_entry *e = malloc(sizeof *e + len + 1);
  if (e == NULL)
    return KEEL_ENOMEM;
  atomic_fetch_add_explicit(&entry_bytes, sizeof *e + len + 1,
                            memory_order_relaxed);
  e->hash = h;
  e->len = (uint32_t)len;
  memcpy(e->name, name, len);
  e->name[len] = '\0';
  /* release: the entry's bytes are visible before its pointer and slot. */
  atomic_store_explicit(&c->entries[index & (CHUNK_SIZE - 1)], e,
                        memory_order_release);
  atomic_store_explicit(&table.slots[slot], index + 1, memory_order_release);
  atomic_store_explicit(&table.count, index + 1, memory_order_release);
  *out = keel_atom_from_index(index);
  return KEEL_OK;
}

int keel_atom_intern(const char *name, size_t len, keel_term *out) {
  if (name == NULL && len > 0)
    return KEEL_EINVAL;
  long chars = keel__utf8_count((const uint8_t *)name, len);
  if (chars < 0)
    return KEEL_EINVAL;
  if (chars > KEEL_ATOM_MAX_CHARS)
    return KEEL_ELIMIT;
  if (table.slots == NULL)
    return KEEL_ENOMEM; /* the constructor could not allocate the table */
  uint64_t h = name_hash(name, len);
  bool found;
  uint32_t slot = probe(name, len, h, &found);
  if (found) {
    *out = keel_atom_from_index(
        atomic_load_explicit(&table.slots[slot], memory_order_relaxed) - 1);
    return KEEL_OK;
  }
  pthread_mutex_lock(&table.lock);
  /* Re-probe under the lock: another thread may have inserted it. */
  slot = probe(name, len, h, &found);
  int rc = KEEL_OK;
  if (found)
    *out = keel_atom_from_index(
        atomic_load_explicit(&table.slots[slot], memory_order_relaxed) - 1);
  else
    rc = insert_locked(name, len, h, slot, out);
  pthread_mutex_unlock(&table.lock);
  return rc;
}

keel_term keel_atom(const char *name) {
  keel_term a;
  if (name == NULL || keel_atom_intern(name, strlen(name), &a) != KEEL_OK)
    return KEEL_NONE;
  return a;
}

const char *keel_atom_name(keel_term atom, size_t *len) {
  atom_entry *e = keel_is_atom(atom) ? entry_at(keel_atom_index(atom)) : NULL;
  if (e == NULL) {
    if (len != NULL)
      *len = 0;
    return "";
  }
  if (len != NULL)
    *len = e->len;
  return e->name;
}

uint64_t keel__atom_hash(keel_term atom) {
  atom_entry *e = entry_at(keel_atom_index(atom));
  return e != NULL ? e->hash : 0;
}

size_t keel_atom_count(void) {
  return atomic_load_explicit(&table.count, memory_order_acquire);
}

size_t keel_atom_limit(void) {
  return ATOM_LIMIT;
}

void keel_term_set_local_node(keel_term node, uint32_t creation) {
  keel__local_node = node;
  keel__local_creation = creation;
}

keel_term keel_term_local_node(uint32_t *creation) {
  if (creation != NULL)
    *creation = keel__local_creation;
  return keel__local_node;
}

__attribute__((constructor)) static void atom_table_init(void) {
  static const char *const predefined[] = {
#define KEEL_ATOM_NAME_(id, text) text,
      KEEL_ATOM_LIST(KEEL_ATOM_NAME_)
#undef KEEL_ATOM_NAME_
  };
  /* calloc of a large array maps zero pages lazily: cheap until used. */
  table.slots = calloc(NSLOTS, sizeof *table.slots);
  if (table.slots == NULL)
    return;
  for (size_t i = 0; i < KEEL_ATOMI_COUNT_; i++) {
    keel_term a;
    (void)keel_atom_intern(predefined[i], strlen(predefined[i]), &a);
  }
}
