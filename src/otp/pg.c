/*
 * pg.c - OTP's pg on ETS tables, a per-scope mutex for writers and a
 * runtime exit hook for members and monitoring processes.
 *
 * Tables of a scope:
 *   groups   set {Group, Members}      Members: a pid once per join
 *   pids     bag {Pid, Group}          the groups a pid is in
 *   mons     bag {Key, Ref, Pid}       Key: {scope} or {group, Group}
 *   monrefs  set {Ref, Key, Pid}
 *   monpids  bag {Pid, Ref}            the monitors a process holds
 * Readers use `groups` only, without the lock. Writers (and the exit hook)
 * take the scope's mutex for a few table operations; scopes are kept in a
 * list under a read-write lock so that a scope is not freed while the exit
 * hook works on it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "keel/ets.h"
#include "keel/pg.h"
#include "keel/runtime.h"
#include "keel/signals.h"

/* One writer's notifications, in sending order: [{Dest, Msg}]. */
typedef struct pg_batch {
  struct pg_batch *next;
  keel_heap h;
  keel_term items;
} pg_batch;

/* Batches waiting for the scope's dispatcher process, in the order of the
 * changes (appended under the scope lock). Shared by the scope and its
 * dispatcher; freed by whichever lets go last. */
typedef struct pg_outq {
  pthread_mutex_t lock;
  pg_batch *head, **tail;
  _Atomic int refs;
} pg_outq;

struct keel_pg_scope {
  keel_pg_scope *next;
  keel_term name;
  pthread_mutex_t lock;
  keel_ets_tab groups, pids, mons, monrefs, monpids;
  pg_outq *outq;
  keel_term dispatcher; /* pid of the process that sends notifications */
};

static pthread_rwlock_t scopes_lock = PTHREAD_RWLOCK_INITIALIZER;
static keel_pg_scope *scopes_head;
static pthread_once_t pg_once = PTHREAD_ONCE_INIT;
static int pg_hook_id = -1;

/* ---- helpers --------------------------------------------------------------
 */

static keel_term scope_key(keel_heap *h) {
  return keel_tuple(h, 1, keel_atom("scope"));
}

static keel_term group_key(keel_heap *h, keel_term group) {
  return keel_tuple(h, 2, keel_atom("group"), group);
}

/* The members of group ([] when none), in h. */
static int members_of(keel_pg_scope *s, keel_term group, keel_heap *h,
                      keel_term *out) {
  return keel_ets_lookup_element(s->groups, group, 2, KEEL_NIL, h, out);
}

/* Notifications are not sent by writers: a fiber may yield inside
 * keel_send, so it must not send while it holds the scope lock (another
 * process on its thread would then wait for the lock forever), and sending
 * after unlocking would let two writers' notifications overtake each
 * other. Writers queue {Dest, Msg} pairs here (in h) while they hold the
 * lock, move them to the scope's outq before unlocking, and wake the
 * scope's dispatcher, a handler process that sends every batch in order:
 * all notifications of a scope come from one sender, in the order of the
 * changes, as from pg's scope server. The thread-local list is used only
 * between lock and unlock, where nothing can yield. */
static _Thread_local keel_term tl_outbox;

/* Queues {Ref, What, Group, Pids} for the monitors under key. */
static void notify_key(keel_pg_scope *s, keel_term key, keel_term what,
                       keel_term group, keel_term pids, keel_heap *h) {
  keel_term rows;
  if (keel_ets_lookup(s->mons, key, h, &rows) != KEEL_OK)
    return;
  for (; keel_is_cons(rows); rows = keel_tl(rows)) {
    keel_term r = keel_hd(rows);
    keel_term m = keel_tuple(h, 4, keel_tuple_get(r, 1), what, group, pids);
    keel_term item = keel_tuple(h, 2, keel_tuple_get(r, 2), m);
    keel_term q = keel_cons(h, item, tl_outbox);
    if (m != KEEL_NONE && item != KEEL_NONE && q != KEEL_NONE)
      tl_outbox = q;
  }
}

static void outq_release(pg_outq *q) {
  if (atomic_fetch_sub(&q->refs, 1) != 1)
    return;
  for (pg_batch *b = q->head, *nb; b != NULL; b = nb) {
    nb = b->next;
    keel_heap_destroy(&b->h);
    free(b);
  }
  pthread_mutex_destroy(&q->lock);
  free(q);
}

/* Moves what tl_outbox holds (newest first) to a batch at the end of q.
 * Out of memory: the notifications are dropped. */
static void outq_push(pg_outq *q, keel_term items) {
  pg_batch *b = malloc(sizeof *b);
  if (b == NULL)
    return;
  b->next = NULL;
  keel_heap_init(&b->h);
  b->items = KEEL_NIL;
  for (; keel_is_cons(items); items = keel_tl(items)) {
    keel_term c = keel_term_copy(&b->h, keel_hd(items));
    keel_term l = c != KEEL_NONE ? keel_cons(&b->h, c, b->items) : KEEL_NONE;
    if (l == KEEL_NONE) {
      keel_heap_destroy(&b->h);
      free(b);
      return;
    }
    b->items = l;
  }
  pthread_mutex_lock(&q->lock);
  *q->tail = b;
  q->tail = &b->next;
  pthread_mutex_unlock(&q->lock);
}

static keel_handler_status dispatcher(keel_proc *self, keel_term msg,
                                      void *state) {
  pg_outq *q = state;
  pthread_mutex_lock(&q->lock);
  pg_batch *b = q->head;
  q->head = NULL;
  q->tail = &q->head;
  pthread_mutex_unlock(&q->lock);
  for (pg_batch *nb; b != NULL; b = nb) {
    nb = b->next;
    for (keel_term l = b->items; keel_is_cons(l); l = keel_tl(l))
      (void)keel_send(keel_tuple_get(keel_hd(l), 0),
                      keel_tuple_get(keel_hd(l), 1));
    keel_heap_destroy(&b->h);
    free(b);
  }
  return msg == keel_atom("stop") ? keel_stop(self, KEEL_ATOM(NORMAL))
                                  : KEEL_CONTINUE;
}

static void dispatcher_terminate(keel_proc *self, keel_term reason,
                                 void *state) {
  (void)self;
  (void)reason;
  outq_release(state);
}

/* Queues the notifications, unlocks s and wakes its dispatcher. */
static void unlock_and_flush(keel_pg_scope *s, keel_heap *h) {
  (void)h;
  keel_term q = tl_outbox;
  tl_outbox = KEEL_NIL;
  if (keel_is_cons(q))
    outq_push(s->outq, q);
  pthread_mutex_unlock(&s->lock);
  if (keel_is_cons(q))
    (void)keel_send(s->dispatcher, keel_atom("flush"));
}

/* Locks s and starts an empty outbox. */
static void lock_scope(keel_pg_scope *s) {
  pthread_mutex_lock(&s->lock);
  tl_outbox = KEEL_NIL;
}

static void notify(keel_pg_scope *s, keel_term what, keel_term group,
                   keel_term pids, keel_heap *h) {
  notify_key(s, scope_key(h), what, group, pids, h);
  notify_key(s, group_key(h, group), what, group, pids, h);
}

/* Stores members as group's list (deleting the group when empty). */
static int store_members(keel_pg_scope *s, keel_term group, keel_term members,
                         keel_heap *h) {
  if (keel_is_nil(members))
    return keel_ets_delete_key(s->groups, group);
  keel_term obj = keel_tuple(h, 2, group, members);
  return obj != KEEL_NONE ? keel_ets_insert(s->groups, obj) : KEEL_ENOMEM;
}

/* l without its first occurrence of pid (*found tells whether there was
 * one), in h. */
static keel_term remove_one(keel_heap *h, keel_term l, keel_term pid,
                            bool *found) {
  keel_term acc = KEEL_NIL;
  *found = false;
  for (; keel_is_cons(l) && acc != KEEL_NONE; l = keel_tl(l))
    if (!*found && keel_hd(l) == pid)
      *found = true;
    else
      acc = keel_cons(h, keel_hd(l), acc);
  return acc;
}

static bool contains(keel_term l, keel_term pid) {
  for (; keel_is_cons(l); l = keel_tl(l))
    if (keel_hd(l) == pid)
      return true;
  return false;
}

/* pids as a list of local pids (a single pid becomes [Pid]). */
static int pid_list(keel_heap *h, keel_term pids, keel_term *out) {
  if (keel_is_local_pid(pids)) {
    *out = keel_cons(h, pids, KEEL_NIL);
    return *out != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
  }
  size_t n;
  if (!keel_is_cons(pids) || keel_list_length(pids, &n) != KEEL_OK)
    return KEEL_EBADARG;
  for (keel_term l = pids; keel_is_cons(l); l = keel_tl(l))
    if (!keel_is_local_pid(keel_hd(l)))
      return KEEL_EBADARG;
  *out = pids;
  return KEEL_OK;
}

/* ---- exit hook ------------------------------------------------------------
 */

/* Removes every membership of pid in s (lock held). */
static void drop_member(keel_pg_scope *s, keel_term pid, keel_heap *h) {
  keel_term rows;
  if (keel_ets_take(s->pids, pid, h, &rows) != KEEL_OK)
    return;
  for (; keel_is_cons(rows); rows = keel_tl(rows)) {
    keel_term group = keel_tuple_get(keel_hd(rows), 1);
    keel_term members, left = KEEL_NIL, kept = KEEL_NIL;
    if (members_of(s, group, h, &members) != KEEL_OK)
      continue;
    for (; keel_is_cons(members); members = keel_tl(members))
      if (keel_hd(members) == pid)
        left = keel_cons(h, pid, left);
      else
        kept = keel_cons(h, keel_hd(members), kept);
    if (left == KEEL_NONE || kept == KEEL_NONE)
      continue;
    (void)store_members(s, group, kept, h);
    if (keel_is_cons(left))
      notify(s, keel_atom("leave"), group, left, h);
  }
}

/* Ends the monitor ref (lock held); true when it was active. */
static bool drop_monitor(keel_pg_scope *s, keel_term ref, keel_heap *h) {
  keel_term rows;
  if (keel_ets_take(s->monrefs, ref, h, &rows) != KEEL_OK ||
      !keel_is_cons(rows))
    return false;
  keel_term r = keel_hd(rows); /* {Ref, Key, Pid} */
  keel_term key = keel_tuple_get(r, 1), pid = keel_tuple_get(r, 2);
  (void)keel_ets_delete_object(s->mons, keel_tuple(h, 3, key, ref, pid));
  (void)keel_ets_delete_object(s->monpids, keel_tuple(h, 2, pid, ref));
  return true;
}

static void on_exit_hook(keel_term pid, keel_term reason, void *arg) {
  (void)reason;
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  pthread_rwlock_rdlock(&scopes_lock);
  for (keel_pg_scope *s = scopes_head; s != NULL; s = s->next) {
    lock_scope(s);
    drop_member(s, pid, &h);
    keel_term refs;
    if (keel_ets_lookup(s->monpids, pid, &h, &refs) == KEEL_OK)
      for (; keel_is_cons(refs); refs = keel_tl(refs))
        (void)drop_monitor(s, keel_tuple_get(keel_hd(refs), 1), &h);
    unlock_and_flush(s, &h);
  }
  pthread_rwlock_unlock(&scopes_lock);
  keel_heap_destroy(&h);
}

static void pg_init_once(void) {
  pg_hook_id = keel_exit_hook_add(on_exit_hook, NULL);
}

/* ---- scopes -----------------------------------------------------------------
 */

static void free_scope(keel_pg_scope *s) {
  keel_ets_tab *tabs[] = {&s->groups, &s->pids, &s->mons, &s->monrefs,
                          &s->monpids};
  for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++)
    if (*tabs[i] != 0)
      (void)keel_ets_delete(*tabs[i]);
  /* The dispatcher sends what is queued, then ends (with no node running
   * it is gone already and has let go of the outq). */
  if (s->outq != NULL) {
    (void)keel_send(s->dispatcher, keel_atom("stop"));
    outq_release(s->outq);
  }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* The outq and its dispatcher (which holds one reference). */
static int start_dispatcher(keel_pg_scope *s) {
  pg_outq *q = calloc(1, sizeof *q);
  if (q == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&q->lock, NULL);
  q->tail = &q->head;
  atomic_init(&q->refs, 2);
  keel_spawn_opts o = {.terminate = dispatcher_terminate};
  int rc = keel_spawn(dispatcher, q, &o, &s->dispatcher);
  if (rc != KEEL_OK) {
    pthread_mutex_destroy(&q->lock);
    free(q);
    return rc;
  }
  s->outq = q;
  return KEEL_OK;
}

static int make_tables(keel_pg_scope *s) {
  keel_ets_opts o = {.access = KEEL_ETS_PUBLIC, .type = KEEL_ETS_SET};
  int rc = keel_ets_new(&o, &s->groups);
  if (rc == KEEL_OK)
    rc = keel_ets_new(&o, &s->monrefs);
  o.type = KEEL_ETS_BAG;
  if (rc == KEEL_OK)
    rc = keel_ets_new(&o, &s->pids);
  if (rc == KEEL_OK)
    rc = keel_ets_new(&o, &s->mons);
  if (rc == KEEL_OK)
    rc = keel_ets_new(&o, &s->monpids);
  return rc;
}

static keel_pg_scope *find_locked(keel_term name) {
  for (keel_pg_scope *s = scopes_head; s != NULL; s = s->next)
    if (s->name == name)
      return s;
  return NULL;
}

int keel_pg_scope_new(keel_term name, keel_pg_scope **out) {
  if (out == NULL || (name != KEEL_NONE && !keel_is_atom(name)))
    return KEEL_EINVAL;
  pthread_once(&pg_once, pg_init_once);
  if (pg_hook_id < 0)
    return KEEL_ESYSLIMIT;
  keel_pg_scope *s = calloc(1, sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->name = name;
  pthread_mutex_init(&s->lock, NULL);
  int rc = make_tables(s);
  if (rc == KEEL_OK)
    rc = start_dispatcher(s);
  if (rc == KEEL_OK) {
    pthread_rwlock_wrlock(&scopes_lock);
    if (name != KEEL_NONE && find_locked(name) != NULL) {
      rc = KEEL_EEXIST;
    } else {
      s->next = scopes_head;
      scopes_head = s;
    }
    pthread_rwlock_unlock(&scopes_lock);
  }
  if (rc != KEEL_OK) {
    free_scope(s);
    return rc;
  }
  *out = s;
  return KEEL_OK;
}

int keel_pg_scope_delete(keel_pg_scope *scope) {
  if (scope == NULL)
    return KEEL_OK;
  pthread_rwlock_wrlock(&scopes_lock);
  for (keel_pg_scope **pp = &scopes_head; *pp != NULL; pp = &(*pp)->next)
    if (*pp == scope) {
      *pp = scope->next;
      break;
    }
  pthread_rwlock_unlock(&scopes_lock);
  pthread_mutex_lock(&scope->lock); /* writers in progress finish */
  pthread_mutex_unlock(&scope->lock);
  free_scope(scope);
  return KEEL_OK;
}

keel_pg_scope *keel_pg_scope_find(keel_term name) {
  if (!keel_is_atom(name))
    return NULL;
  pthread_rwlock_rdlock(&scopes_lock);
  keel_pg_scope *s = find_locked(name);
  pthread_rwlock_unlock(&scopes_lock);
  return s;
}

/* ---- join and leave ------------------------------------------------------ */

static int join_locked(keel_pg_scope *s, keel_term group, keel_term list,
                       keel_heap *h) {
  for (keel_term l = list; keel_is_cons(l); l = keel_tl(l)) {
    int rc = keel_exit_hook_arm(keel_hd(l), pg_hook_id);
    if (rc != KEEL_OK)
      return rc;
  }
  keel_term members;
  int rc = members_of(s, group, h, &members);
  for (keel_term l = list; rc == KEEL_OK && keel_is_cons(l); l = keel_tl(l)) {
    keel_term row = keel_tuple(h, 2, keel_hd(l), group);
    members = keel_cons(h, keel_hd(l), members);
    rc = row == KEEL_NONE || members == KEEL_NONE
             ? KEEL_ENOMEM
             : keel_ets_insert(s->pids, row);
  }
  if (rc == KEEL_OK)
    rc = store_members(s, group, members, h);
  if (rc == KEEL_OK)
    notify(s, keel_atom("join"), group, list, h);
  return rc;
}

/* Runs a membership change on the pids (a pid or a list of them) under the
 * scope's lock. Arming and inserting under the lock: a member dying
 * meanwhile has its hook wait for the lock, then finds (and removes) its
 * rows. */
static int change_membership(keel_pg_scope *scope, keel_term group,
                             keel_term pids,
                             int (*op)(keel_pg_scope *, keel_term, keel_term,
                                       keel_heap *)) {
  if (scope == NULL)
    return KEEL_EINVAL;
  if (group == KEEL_NONE)
    return KEEL_EBADARG;
  keel_heap h;
  keel_heap_init(&h);
  keel_term list;
  int rc = pid_list(&h, pids, &list);
  if (rc == KEEL_OK) {
    lock_scope(scope);
    rc = op(scope, group, list, &h);
    unlock_and_flush(scope, &h);
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_pg_join(keel_pg_scope *scope, keel_term group, keel_term pids) {
  return change_membership(scope, group, pids, join_locked);
}

static int leave_locked(keel_pg_scope *s, keel_term group, keel_term list,
                        keel_heap *h) {
  keel_term members, left = KEEL_NIL;
  int rc = members_of(s, group, h, &members);
  for (keel_term l = list; rc == KEEL_OK && keel_is_cons(l); l = keel_tl(l)) {
    bool found;
    keel_term rest = remove_one(h, members, keel_hd(l), &found);
    if (rest == KEEL_NONE)
      return KEEL_ENOMEM;
    if (!found)
      continue;
    members = rest;
    if ((left = keel_cons(h, keel_hd(l), left)) == KEEL_NONE)
      return KEEL_ENOMEM;
    if (!contains(members, keel_hd(l)))
      rc = keel_ets_delete_object(s->pids, keel_tuple(h, 2, keel_hd(l), group));
  }
  if (rc != KEEL_OK)
    return rc;
  if (keel_is_nil(left))
    return KEEL_ENOENT;
  rc = store_members(s, group, members, h);
  if (rc == KEEL_OK)
    notify(s, keel_atom("leave"), group, left, h);
  return rc;
}

int keel_pg_leave(keel_pg_scope *scope, keel_term group, keel_term pids) {
  return change_membership(scope, group, pids, leave_locked);
}

/* ---- reads ------------------------------------------------------------------
 */

int keel_pg_get_members(keel_pg_scope *scope, keel_term group, keel_heap *h,
                        keel_term *out) {
  if (scope == NULL || group == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  return members_of(scope, group, h, out);
}

int keel_pg_get_local_members(keel_pg_scope *scope, keel_term group,
                              keel_heap *h, keel_term *out) {
  return keel_pg_get_members(scope, group, h, out);
}

int keel_pg_which_groups(keel_pg_scope *scope, keel_heap *h, keel_term *out) {
  if (scope == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term spec = keel_build(&tmp, "[{{'$1', '_'}, [], ['$1']}]");
  int rc = spec != KEEL_NONE ? keel_ets_select(scope->groups, spec, h, out)
                             : KEEL_ENOMEM;
  keel_heap_destroy(&tmp);
  return rc;
}

/* ---- monitors
 * ---------------------------------------------------------------- */

/* The map Group => Members of every group, in h. */
static int groups_map(keel_pg_scope *s, keel_heap *h, keel_term *out) {
  keel_term all;
  int rc = keel_ets_tab2list(s->groups, h, &all);
  keel_term m = keel_map_new(h);
  for (; rc == KEEL_OK && keel_is_cons(all); all = keel_tl(all)) {
    keel_term o = keel_hd(all);
    m = m != KEEL_NONE
            ? keel_map_put(h, m, keel_tuple_get(o, 0), keel_tuple_get(o, 1))
            : KEEL_NONE;
  }
  if (rc == KEEL_OK && m == KEEL_NONE)
    rc = KEEL_ENOMEM;
  if (rc == KEEL_OK)
    *out = m;
  return rc;
}

/* Adds a monitor under key for the calling process (lock held). */
static int add_monitor(keel_pg_scope *s, keel_term key, keel_term pid,
                       keel_heap *h, keel_term *ref) {
  int rc = keel_exit_hook_arm(pid, pg_hook_id);
  if (rc != KEEL_OK)
    return rc;
  keel_term r = keel_make_ref(h);
  keel_term a = keel_tuple(h, 3, key, r, pid);
  keel_term b = keel_tuple(h, 3, r, key, pid);
  keel_term c = keel_tuple(h, 2, pid, r);
  if (r == KEEL_NONE || a == KEEL_NONE || b == KEEL_NONE || c == KEEL_NONE)
    return KEEL_ENOMEM;
  rc = keel_ets_insert(s->mons, a);
  if (rc == KEEL_OK)
    rc = keel_ets_insert(s->monrefs, b);
  if (rc == KEEL_OK)
    rc = keel_ets_insert(s->monpids, c);
  if (rc != KEEL_OK)
    (void)drop_monitor(s, r, h);
  else
    *ref = r;
  return rc;
}

static int monitor_common(keel_pg_scope *s, keel_term group, keel_heap *h,
                          keel_term *ref, keel_term *snapshot) {
  if (s == NULL || h == NULL || ref == NULL)
    return KEEL_EINVAL;
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_ESTATE;
  keel_term key = group == KEEL_NONE ? scope_key(h) : group_key(h, group);
  if (key == KEEL_NONE)
    return KEEL_ENOMEM;
  pthread_mutex_lock(&s->lock);
  keel_term snap = KEEL_NIL;
  int rc = group == KEEL_NONE ? groups_map(s, h, &snap)
                              : members_of(s, group, h, &snap);
  if (rc == KEEL_OK)
    rc = add_monitor(s, key, keel_self(self), h, ref);
  pthread_mutex_unlock(&s->lock);
  if (rc == KEEL_OK && snapshot != NULL)
    *snapshot = snap;
  return rc;
}

int keel_pg_monitor_scope(keel_pg_scope *scope, keel_heap *h, keel_term *ref,
                          keel_term *groups) {
  return monitor_common(scope, KEEL_NONE, h, ref, groups);
}

int keel_pg_monitor(keel_pg_scope *scope, keel_term group, keel_heap *h,
                    keel_term *ref, keel_term *members) {
  if (group == KEEL_NONE)
    return KEEL_EINVAL;
  return monitor_common(scope, group, h, ref, members);
}

int keel_pg_demonitor(keel_pg_scope *scope, keel_term ref) {
  if (scope == NULL || ref == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  pthread_mutex_lock(&scope->lock);
  bool was = drop_monitor(scope, ref, &h);
  pthread_mutex_unlock(&scope->lock);
  keel_heap_destroy(&h);
  return was ? KEEL_OK : KEEL_ENOENT;
}
