/*
 * ets_table.c - the table registry: generation-counted ids, names,
 * creation and deletion, ownership (give_away, heirs, owner exit), info.
 *
 * Slots live in chunks that are never freed, so a stale id always reads
 * valid memory. A slot's control word is
 *
 *   ctl = generation << 32 | LIVE << 31
 *
 * A call pins the slot by incrementing one of ETS_LANES pin counters (the
 * calling thread's lane, each on its own cache line, so threads using one
 * table do not bounce a shared line), then checks generation and LIVE (a
 * mismatch unpins and fails with KEEL_EBADARG). Delete clears LIVE under
 * the registry lock, waits until every lane drains, frees the table and
 * then moves the generation on, so a stale id never reaches a new table.
 * Lock-free readers of set tables do not pin: they run in a read section
 * (ets_rcu.c) and delete waits for a grace period after clearing LIVE.
 * Increment-then-check against clear-then-wait is Dekker's pattern: both
 * sides use sequentially consistent operations.
 * The id is generation << ETS_IDX_BITS | index, generation >= 1, so it is
 * never 0 and fits a small integer.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "tables/ets_internal.h"

#define ETS_IDX_BITS 20
#define ETS_CHUNK 64
#define ETS_MAX_CHUNKS ((1u << ETS_IDX_BITS) / ETS_CHUNK)
#define ETS_LIVE (UINT64_C(1) << 31)
#define ETS_LANES 8

typedef struct ets_lane {
  _Atomic uint64_t pins;
  char pad[56];
} ets_lane;

_Static_assert(sizeof(ets_lane) == 64, "one lane per cache line");

typedef struct ets_slot {
  _Atomic uint64_t ctl;
  keel__ets_table *_Atomic tab;
  char pad[48];
  ets_lane lanes[ETS_LANES];
} ets_slot;

static struct {
  pthread_mutex_t lock;
  ets_slot *_Atomic chunks[ETS_MAX_CHUNKS];
  uint32_t nslots; /* slots handed out so far (high-water mark) */
  uint32_t *free;  /* free slot stack */
  size_t nfree, capfree;
  size_t live;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static ets_slot *slot_at(uint32_t idx) {
  ets_slot *c =
      atomic_load_explicit(&reg.chunks[idx / ETS_CHUNK], memory_order_acquire);
  return c == NULL ? NULL : &c[idx % ETS_CHUNK];
}

keel_term keel__ets_atom_eot(void) {
  return keel_atom("$end_of_table");
}

/* ---- pins ---- */

/* The calling thread's pin lane, assigned round-robin on first use. A
 * call never yields between pin and unpin, so a fiber finds the same
 * lane on both sides. */
static _Atomic unsigned lane_next;
static _Thread_local unsigned my_lane = ETS_LANES;

static unsigned lane(void) {
  if (my_lane == ETS_LANES)
    my_lane = atomic_fetch_add_explicit(&lane_next, 1, memory_order_relaxed) %
              ETS_LANES;
  return my_lane;
}

int keel__ets_acquire(keel_ets_tab id, keel__ets_table **out) {
  uint32_t idx = (uint32_t)(id & ((1u << ETS_IDX_BITS) - 1));
  uint64_t gen = id >> ETS_IDX_BITS;
  if (gen == 0 || gen > UINT32_MAX)
    return KEEL_EBADARG;
  ets_slot *s = slot_at(idx);
  if (s == NULL)
    return KEEL_EBADARG;
  _Atomic uint64_t *pins = &s->lanes[lane()].pins;
  atomic_fetch_add_explicit(pins, 1, memory_order_seq_cst);
  uint64_t v = atomic_load_explicit(&s->ctl, memory_order_seq_cst);
  if ((v >> 32) != gen || !(v & ETS_LIVE)) {
    atomic_fetch_sub_explicit(pins, 1, memory_order_release);
    return KEEL_EBADARG;
  }
  *out = atomic_load_explicit(&s->tab, memory_order_acquire);
  return KEEL_OK;
}

int keel__ets_peek_table(keel_ets_tab id, keel__ets_table **out) {
  uint32_t idx = (uint32_t)(id & ((1u << ETS_IDX_BITS) - 1));
  uint64_t gen = id >> ETS_IDX_BITS;
  ets_slot *s = gen == 0 || gen > UINT32_MAX ? NULL : slot_at(idx);
  if (s == NULL)
    return KEEL_EBADARG;
  uint64_t v = atomic_load_explicit(&s->ctl, memory_order_acquire);
  if ((v >> 32) != gen || !(v & ETS_LIVE))
    return KEEL_EBADARG;
  *out = atomic_load_explicit(&s->tab, memory_order_acquire);
  return *out != NULL ? KEEL_OK : KEEL_EBADARG;
}

void keel__ets_release(keel_ets_tab id) {
  ets_slot *s = slot_at((uint32_t)(id & ((1u << ETS_IDX_BITS) - 1)));
  atomic_fetch_sub_explicit(&s->lanes[lane()].pins, 1, memory_order_release);
}

/* ---- the owner's death ----
 *
 * The tables layer registers one runtime exit hook and arms it for every
 * process that comes to own a table (creation, give_away, inheritance): its
 * death runs keel__ets_owner_exit before its links and monitors hear of
 * it, so whoever sees the 'DOWN' also sees the table gone or inherited. */

static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
static int hook_id = -1;

static void on_owner_exit(keel_term pid, keel_term reason, void *arg) {
  (void)reason, (void)arg;
  keel__ets_fix_exit(pid);
  keel__ets_owner_exit(pid);
}

static void hook_init(void) {
  hook_id = keel_exit_hook_add(on_owner_exit, NULL);
}

int keel__ets_arm(keel_term pid) {
  if (!keel_is_local_pid(pid))
    return KEEL_OK;
  (void)pthread_once(&hook_once, hook_init);
  if (hook_id < 0)
    return KEEL_ESYSLIMIT;
  int rc = keel_exit_hook_arm(pid, hook_id);
  return rc == KEEL_ESTATE ? KEEL_OK : rc;
}

keel_term keel__ets_caller(void) {
  keel_proc *p = keel_current();
  return p == NULL ? KEEL_NONE : keel_self(p);
}

int keel__ets_check(const keel__ets_table *t, bool write) {
  if (t->access == KEEL_ETS_PUBLIC)
    return KEEL_OK;
  keel_term me = keel__ets_caller();
  if (me == KEEL_NONE)
    return KEEL_OK;
  if (me == atomic_load_explicit(&t->owner, memory_order_relaxed))
    return KEEL_OK;
  if (t->access == KEEL_ETS_PROTECTED && !write)
    return KEEL_OK;
  return KEEL_EBADARG;
}

/* ---- slots (registry lock held) ---- */

static int slot_take(uint32_t *idx) {
  if (reg.nfree > 0) {
    *idx = reg.free[--reg.nfree];
    return KEEL_OK;
  }
  if (reg.nslots >= (1u << ETS_IDX_BITS))
    return KEEL_ESYSLIMIT;
  uint32_t c = reg.nslots / ETS_CHUNK;
  if (atomic_load_explicit(&reg.chunks[c], memory_order_relaxed) == NULL) {
    /* cache-line aligned, so that each lane has its own line */
    ets_slot *chunk = aligned_alloc(64, ETS_CHUNK * sizeof *chunk);
    if (chunk == NULL)
      return KEEL_ENOMEM;
    memset(chunk, 0, ETS_CHUNK * sizeof *chunk);
    for (size_t i = 0; i < ETS_CHUNK; i++)
      atomic_init(&chunk[i].ctl, UINT64_C(1) << 32);
    atomic_store_explicit(&reg.chunks[c], chunk, memory_order_release);
  }
  *idx = reg.nslots++;
  return KEEL_OK;
}

static int slot_give_back(uint32_t idx) {
  if (reg.nfree == reg.capfree) {
    size_t cap = reg.capfree ? reg.capfree * 2 : 64;
    uint32_t *f = realloc(reg.free, cap * sizeof *f);
    if (f == NULL)
      return KEEL_ENOMEM; /* the slot is leaked, never reused */
    reg.free = f;
    reg.capfree = cap;
  }
  reg.free[reg.nfree++] = idx;
  return KEEL_OK;
}

/* The live table with that name (registry lock held), or NULL. */
static keel__ets_table *find_name(keel_term name) {
  for (uint32_t i = 0; i < reg.nslots; i++) {
    ets_slot *s = slot_at(i);
    if (!(atomic_load_explicit(&s->ctl, memory_order_relaxed) & ETS_LIVE))
      continue;
    keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
    if (t != NULL && t->name == name)
      return t;
  }
  return NULL;
}

/* ---- new ---- */

static int check_opts(const keel_ets_opts *o) {
  if ((unsigned)o->type > KEEL_ETS_DUPLICATE_BAG ||
      (unsigned)o->access > KEEL_ETS_PRIVATE || o->keypos > (1u << 24))
    return KEEL_EINVAL;
  if (o->name != KEEL_NONE && !keel_is_atom(o->name))
    return KEEL_EINVAL;
  if (o->any_order && o->type != KEEL_ETS_DUPLICATE_BAG)
    return KEEL_EINVAL;
  if (o->owner != KEEL_NONE && !keel_is_local_pid(o->owner))
    return KEEL_EINVAL;
  if (o->heir != KEEL_NONE && !keel_is_local_pid(o->heir))
    return KEEL_EINVAL;
  return KEEL_OK;
}

static void table_free(keel__ets_table *t) {
  keel__ets_store_destroy(t);
  keel__ets_fix_destroy(&t->fix);
  keel__ets_obj_free(t->heir_data);
  free(t);
}

static keel__ets_table *table_make(const keel_ets_opts *o, int *rc) {
  keel__ets_table *t = calloc(1, sizeof *t);
  if (t == NULL) {
    *rc = KEEL_ENOMEM;
    return NULL;
  }
  t->type = o->type;
  t->any_order = o->any_order;
  t->access = o->access;
  t->keypos = o->keypos ? o->keypos : 1;
  t->name = o->name;
  t->heir = o->heir;
  atomic_init(&t->owner, o->owner != KEEL_NONE ? o->owner : keel__ets_caller());
  if (o->heir != KEEL_NONE) {
    keel_term d = o->heir_data ? o->heir_data : KEEL_ATOM(UNDEFINED);
    t->heir_data = keel__ets_obj_new(d, 0, false);
    if (t->heir_data == NULL) {
      free(t);
      *rc = KEEL_ENOMEM;
      return NULL;
    }
  }
  *rc = keel__ets_fix_init(&t->fix);
  if (*rc == KEEL_OK) {
    *rc = keel__ets_store_init(t);
    if (*rc != KEEL_OK)
      keel__ets_fix_destroy(&t->fix);
  }
  if (*rc != KEEL_OK) {
    keel__ets_obj_free(t->heir_data);
    free(t);
    return NULL;
  }
  return t;
}

int keel_ets_new(const keel_ets_opts *opts, keel_ets_tab *out) {
  keel_ets_opts def = {0};
  const keel_ets_opts *o = opts ? opts : &def;
  if (out == NULL)
    return KEEL_EINVAL;
  int rc = check_opts(o);
  if (rc != KEEL_OK)
    return rc;
  keel__ets_table *t = table_make(o, &rc);
  if (t == NULL)
    return rc;
  rc = keel__ets_arm(atomic_load_explicit(&t->owner, memory_order_relaxed));
  if (rc != KEEL_OK) { /* a dead owner would never delete it */
    table_free(t);
    return rc == KEEL_ENOPROC ? KEEL_EBADARG : rc;
  }
  pthread_mutex_lock(&reg.lock);
  uint32_t idx = 0;
  if (o->name != KEEL_NONE && find_name(o->name) != NULL)
    rc = KEEL_EEXIST;
  else
    rc = slot_take(&idx);
  if (rc != KEEL_OK) {
    pthread_mutex_unlock(&reg.lock);
    table_free(t);
    return rc;
  }
  ets_slot *s = slot_at(idx);
  uint64_t gen = atomic_load_explicit(&s->ctl, memory_order_relaxed) >> 32;
  t->id = gen << ETS_IDX_BITS | idx;
  atomic_store_explicit(&s->tab, t, memory_order_release);
  atomic_fetch_or_explicit(&s->ctl, ETS_LIVE, memory_order_release);
  reg.live++;
  pthread_mutex_unlock(&reg.lock);
  *out = t->id;
  return KEEL_OK;
}

/* ---- delete ---- */

/* Retires a live slot (registry lock held by the caller, released here):
 * waits for the pins, frees the table, moves the generation on. */
static void retire_unlock(ets_slot *s, uint32_t idx) {
  keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
  atomic_fetch_and_explicit(&s->ctl, ~ETS_LIVE, memory_order_seq_cst);
  reg.live--;
  pthread_mutex_unlock(&reg.lock);
  for (unsigned i = 0; i < ETS_LANES; i++)
    while (atomic_load_explicit(&s->lanes[i].pins, memory_order_seq_cst) != 0)
      sched_yield();
  keel__ets_synchronize(); /* lock-free readers (keel__ets_peek_table) */
  table_free(t);
  pthread_mutex_lock(&reg.lock);
  uint64_t gen = (atomic_load_explicit(&s->ctl, memory_order_relaxed) >> 32);
  gen = gen >= UINT32_MAX ? 1 : gen + 1;
  atomic_store_explicit(&s->tab, NULL, memory_order_relaxed);
  atomic_store_explicit(&s->ctl, gen << 32, memory_order_release);
  slot_give_back(idx);
  pthread_mutex_unlock(&reg.lock);
}

/* Locks the registry and checks id; on KEEL_OK the lock is held. */
static int lock_live(keel_ets_tab id, ets_slot **sp, uint32_t *idxp) {
  uint32_t idx = (uint32_t)(id & ((1u << ETS_IDX_BITS) - 1));
  uint64_t gen = id >> ETS_IDX_BITS;
  pthread_mutex_lock(&reg.lock);
  ets_slot *s = idx < reg.nslots ? slot_at(idx) : NULL;
  if (s == NULL || gen == 0) {
    pthread_mutex_unlock(&reg.lock);
    return KEEL_EBADARG;
  }
  uint64_t v = atomic_load_explicit(&s->ctl, memory_order_relaxed);
  if ((v >> 32) != gen || !(v & ETS_LIVE)) {
    pthread_mutex_unlock(&reg.lock);
    return KEEL_EBADARG;
  }
  *sp = s;
  *idxp = idx;
  return KEEL_OK;
}

static bool is_owner(const keel__ets_table *t) {
  keel_term me = keel__ets_caller();
  return me == KEEL_NONE ||
         me == atomic_load_explicit(&t->owner, memory_order_relaxed);
}

int keel_ets_delete(keel_ets_tab tab) {
  ets_slot *s;
  uint32_t idx;
  int rc = lock_live(tab, &s, &idx);
  if (rc != KEEL_OK)
    return rc;
  if (!is_owner(atomic_load_explicit(&s->tab, memory_order_relaxed))) {
    pthread_mutex_unlock(&reg.lock);
    return KEEL_EBADARG;
  }
  retire_unlock(s, idx);
  return KEEL_OK;
}

void keel_ets_delete_all_tables(void) {
  pthread_mutex_lock(&reg.lock);
  for (uint32_t i = 0; i < reg.nslots; i++) {
    ets_slot *s = slot_at(i);
    if (atomic_load_explicit(&s->ctl, memory_order_relaxed) & ETS_LIVE) {
      retire_unlock(s, i);
      pthread_mutex_lock(&reg.lock);
    }
  }
  pthread_mutex_unlock(&reg.lock);
}

int keel_ets_all(keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_term l = KEEL_NIL;
  pthread_mutex_lock(&reg.lock);
  for (uint32_t i = reg.nslots; i-- > 0 && l != KEEL_NONE;) {
    ets_slot *s = slot_at(i);
    if (!(atomic_load_explicit(&s->ctl, memory_order_relaxed) & ETS_LIVE))
      continue;
    keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
    keel_term tt = t->name != KEEL_NONE ? t->name : keel_small((int64_t)t->id);
    l = keel_cons(h, tt, l);
  }
  pthread_mutex_unlock(&reg.lock);
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

void keel__ets_each_table(void (*fn)(keel__ets_table *t, void *arg),
                          void *arg) {
  pthread_mutex_lock(&reg.lock);
  uint32_t n = reg.nslots;
  pthread_mutex_unlock(&reg.lock);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t v = atomic_load_explicit(&slot_at(i)->ctl, memory_order_acquire);
    if (!(v & ETS_LIVE))
      continue;
    keel_ets_tab id = (v >> 32) << ETS_IDX_BITS | i;
    keel__ets_table *t;
    if (keel__ets_acquire(id, &t) != KEEL_OK)
      continue;
    fn(t, arg);
    keel__ets_release(id);
  }
}

size_t keel_ets_count(void) {
  pthread_mutex_lock(&reg.lock);
  size_t n = reg.live;
  pthread_mutex_unlock(&reg.lock);
  return n;
}

/* ---- names ---- */

int keel_ets_whereis(keel_term name, keel_ets_tab *out) {
  if (!keel_is_atom(name) || out == NULL)
    return KEEL_EBADARG;
  pthread_mutex_lock(&reg.lock);
  keel__ets_table *t = find_name(name);
  if (t != NULL)
    *out = t->id;
  pthread_mutex_unlock(&reg.lock);
  return t != NULL ? KEEL_OK : KEEL_ENOENT;
}

keel_term keel_ets_tab_term(keel_ets_tab tab) {
  keel__ets_table *t;
  if (keel__ets_acquire(tab, &t) != KEEL_OK)
    return KEEL_NONE;
  keel_term r = t->name != KEEL_NONE ? t->name : keel_small((int64_t)tab);
  keel__ets_release(tab);
  return r;
}

int keel_ets_tab_from_term(keel_term t, keel_ets_tab *out) {
  if (out == NULL)
    return KEEL_EBADARG;
  if (keel_is_atom(t))
    return keel_ets_whereis(t, out);
  if (keel_is_small(t) && keel_small_value(t) > 0) {
    *out = (keel_ets_tab)keel_small_value(t);
    return KEEL_OK;
  }
  return KEEL_EBADARG;
}

/* ---- info ---- */

int keel_ets_info_get(keel_ets_tab tab, keel_ets_info *out) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  if (out != NULL) { /* as ets:info/1, open to every caller */
    out->size = atomic_load_explicit(&t->size, memory_order_relaxed);
    size_t extra = sizeof *t;
    /* Object words, the table, its stripes and one pointer per object
     * (bucket or array slot; a set's
     * bucket is a 64-byte line). */
    extra += atomic_load_explicit(&t->size, memory_order_relaxed) *
             (t->type == KEEL_ETS_SET ? sizeof(ets_line) : sizeof(void *));
    if (keel__ets_hashed(t)) {
      extra += ETS_STRIPES * sizeof(ets_stripe);
    }
    out->memory = atomic_load_explicit(&t->words, memory_order_relaxed) +
                  extra / sizeof(uint64_t);
    pthread_mutex_lock(&reg.lock);
    out->owner = atomic_load_explicit(&t->owner, memory_order_relaxed);
    out->heir = t->heir;
    pthread_mutex_unlock(&reg.lock);
    out->name = t->name;
    out->type = t->type;
    out->access = t->access;
    out->keypos = t->keypos;
  }
  keel__ets_release(tab);
  return rc;
}

int64_t keel_ets_memory(keel_ets_tab tab) {
  keel_ets_info in;
  int rc = keel_ets_info_get(tab, &in);
  return rc != KEEL_OK ? rc : (int64_t)in.memory;
}

/* ---- ownership ----
 *
 * 'ETS-TRANSFER' messages are built under the registry lock but sent
 * after it is released: keel_send may switch a fiber process out, which
 * must never happen while a mutex is held. The owner changes first; if
 * the message cannot be sent the change is undone (give_away) or the
 * table is deleted (owner exit). */

/* {'ETS-TRANSFER', Tab, From, Data} in h (registry lock held). */
static keel_term transfer_msg(keel_heap *h, const keel__ets_table *t,
                              keel_term from, keel_term data) {
  keel_term tabt = t->name != KEEL_NONE ? t->name : keel_small((int64_t)t->id);
  return keel_tuple(h, 4, keel_atom("ETS-TRANSFER"), tabt,
                    from != KEEL_NONE ? from : KEEL_ATOM(UNDEFINED),
                    keel_term_copy(h, data));
}

/* Sets the owner of table id back from `now` to `to` if the table still
 * lives and is still owned by `now`. */
static void owner_cas(keel_ets_tab id, keel_term now, keel_term to) {
  ets_slot *s;
  uint32_t idx;
  if (lock_live(id, &s, &idx) != KEEL_OK)
    return;
  keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
  if (atomic_load_explicit(&t->owner, memory_order_relaxed) == now)
    atomic_store_explicit(&t->owner, to, memory_order_relaxed);
  pthread_mutex_unlock(&reg.lock);
}

int keel_ets_give_away(keel_ets_tab tab, keel_term pid, keel_term data) {
  if (!keel_is_local_pid(pid) || data == KEEL_NONE)
    return KEEL_EBADARG;
  ets_slot *s;
  uint32_t idx;
  int rc = lock_live(tab, &s, &idx);
  if (rc != KEEL_OK)
    return rc;
  keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
  keel_term old = atomic_load_explicit(&t->owner, memory_order_relaxed);
  if (!is_owner(t) || old == pid) {
    pthread_mutex_unlock(&reg.lock);
    return KEEL_EBADARG;
  }
  if (keel__ets_arm(pid) != KEEL_OK) { /* a dead receiver: badarg */
    pthread_mutex_unlock(&reg.lock);
    return KEEL_EBADARG;
  }
  keel_heap h;
  keel_heap_init(&h);
  keel_term msg = transfer_msg(&h, t, old, data);
  if (msg != KEEL_NONE)
    atomic_store_explicit(&t->owner, pid, memory_order_relaxed);
  pthread_mutex_unlock(&reg.lock);
  rc = msg == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, msg);
  if (rc != KEEL_OK && msg != KEEL_NONE)
    owner_cas(tab, pid, old);
  keel_heap_destroy(&h);
  return rc;
}

/* Slot i, if owned by pid: hand it to its heir or retire it. */
static void owner_exit_slot(uint32_t i, keel_term pid) {
  pthread_mutex_lock(&reg.lock);
  ets_slot *s = slot_at(i);
  keel__ets_table *t = atomic_load_explicit(&s->tab, memory_order_relaxed);
  if (!(atomic_load_explicit(&s->ctl, memory_order_relaxed) & ETS_LIVE) ||
      atomic_load_explicit(&t->owner, memory_order_relaxed) != pid) {
    pthread_mutex_unlock(&reg.lock);
    return;
  }
  keel_term heir = t->heir;
  keel_heap h;
  keel_heap_init(&h);
  keel_term msg =
      heir != KEEL_NONE && heir != pid && keel__ets_arm(heir) == KEEL_OK
          ? transfer_msg(&h, t, pid, keel__ets_obj_term(t->heir_data))
          : KEEL_NONE;
  if (msg == KEEL_NONE) {
    retire_unlock(s, i);
    keel_heap_destroy(&h);
    return;
  }
  keel_ets_tab id = t->id;
  atomic_store_explicit(&t->owner, heir, memory_order_relaxed);
  pthread_mutex_unlock(&reg.lock);
  if (keel_send(heir, msg) != KEEL_OK) {
    ets_slot *s2;
    uint32_t i2;
    if (lock_live(id, &s2, &i2) == KEEL_OK) {
      keel__ets_table *t2 =
          atomic_load_explicit(&s2->tab, memory_order_relaxed);
      if (atomic_load_explicit(&t2->owner, memory_order_relaxed) == heir)
        retire_unlock(s2, i2);
      else
        pthread_mutex_unlock(&reg.lock);
    }
  }
  keel_heap_destroy(&h);
}

void keel__ets_owner_exit(keel_term pid) {
  if (pid == KEEL_NONE)
    return;
  pthread_mutex_lock(&reg.lock);
  uint32_t n = reg.nslots;
  pthread_mutex_unlock(&reg.lock);
  for (uint32_t i = 0; i < n; i++)
    owner_exit_slot(i, pid);
}
