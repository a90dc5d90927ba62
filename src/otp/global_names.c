/*
 * global_names.c - {global, Name}: OTP's global name registry, node-local
 * until distribution lands. A table of (Name, Pid) under one lock; an exit
 * hook armed on each registered pid removes its names when it dies, before
 * its links and monitors are told.
 */
#include <pthread.h>
#include <stdlib.h>

#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"

typedef struct gname {
  keel_heap heap; /* holds name */
  keel_term name, pid;
} gname;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static gname *g_tab;
static size_t g_n, g_cap;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_hook = -1;

static void drop_at(size_t i) {
  keel_heap_destroy(&g_tab[i].heap);
  g_tab[i] = g_tab[--g_n];
}

static void on_exit_hook(keel_term pid, keel_term reason, void *arg) {
  (void)reason;
  (void)arg;
  pthread_mutex_lock(&g_lock);
  for (size_t i = g_n; i-- > 0;)
    if (g_tab[i].pid == pid)
      drop_at(i);
  pthread_mutex_unlock(&g_lock);
}

static void g_init(void) {
  g_hook = keel_exit_hook_add(on_exit_hook, NULL);
}

/* Index of name, or g_n (lock held). */
static size_t find(keel_term name) {
  size_t i = 0;
  while (i < g_n && !keel_eq_exact(g_tab[i].name, name))
    i++;
  return i;
}

static int add(keel_term name, keel_term pid) {
  if (find(name) < g_n)
    return KEEL_EEXIST;
  if (g_n == g_cap) {
    size_t cap = g_cap == 0 ? 16 : g_cap * 2;
    gname *t = realloc(g_tab, cap * sizeof *t);
    if (t == NULL)
      return KEEL_ENOMEM;
    g_tab = t;
    g_cap = cap;
  }
  gname *e = &g_tab[g_n];
  keel_heap_init(&e->heap);
  e->name = keel_term_copy(&e->heap, name);
  if (e->name == KEEL_NONE) {
    keel_heap_destroy(&e->heap);
    return KEEL_ENOMEM;
  }
  e->pid = pid;
  g_n++;
  return KEEL_OK;
}

int keel_global_register_name(keel_term name, keel_term pid) {
  if (name == KEEL_NONE || !keel_is_local_pid(pid))
    return KEEL_EBADARG;
  pthread_once(&g_once, g_init);
  if (g_hook < 0)
    return KEEL_ESYSLIMIT;
  pthread_mutex_lock(&g_lock);
  int rc = add(name, pid);
  pthread_mutex_unlock(&g_lock);
  if (rc != KEEL_OK)
    return rc;
  /* Armed after the entry exists: a death from here on removes it. */
  rc = keel_exit_hook_arm(pid, g_hook);
  if (rc != KEEL_OK) {
    pthread_mutex_lock(&g_lock);
    size_t i = find(name);
    if (i < g_n && g_tab[i].pid == pid)
      drop_at(i);
    pthread_mutex_unlock(&g_lock);
  }
  return rc;
}

int keel_global_unregister_name(keel_term name) {
  pthread_mutex_lock(&g_lock);
  size_t i = find(name);
  if (i < g_n)
    drop_at(i);
  pthread_mutex_unlock(&g_lock);
  return KEEL_OK;
}

keel_term keel_global_whereis_name(keel_term name) {
  pthread_mutex_lock(&g_lock);
  size_t i = find(name);
  keel_term pid = i < g_n ? g_tab[i].pid : KEEL_ATOM(UNDEFINED);
  pthread_mutex_unlock(&g_lock);
  return pid;
}

int keel_global_registered_names(keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  pthread_mutex_lock(&g_lock);
  keel_term l = KEEL_NIL;
  for (size_t i = 0; i < g_n && l != KEEL_NONE; i++) {
    keel_term c = keel_term_copy(h, g_tab[i].name);
    l = c != KEEL_NONE ? keel_cons(h, c, l) : KEEL_NONE;
  }
  pthread_mutex_unlock(&g_lock);
  *out = l;
  return l != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
}
