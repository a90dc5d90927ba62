/*
 * forward.c - telemetry_test:attach_event_handlers: a handler that sends
 * each event as a message {EventName, Ref, Measurements, Metadata} to a
 * process.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "keel/metrics.h"
#include "keel/runtime.h"

typedef struct forwarder {
  keel_term pid;
  keel_term ref; /* in heap; also the handler id */
  keel_heap heap;
  struct forwarder *next;
} forwarder;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static forwarder *g_list;
static _Atomic uint32_t g_ref_ids;

static keel_term number(keel_heap *h, double v) {
  if (v == trunc(v) && fabs(v) < 9007199254740992.0)
    return keel_int(h, (int64_t)v);
  return keel_float(h, v);
}

static keel_term measurements_map(keel_heap *h, const keel_tel_measure *m,
                                  size_t nm) {
  keel_term map = keel_map_new(h);
  for (size_t i = 0; i < nm && map != KEEL_NONE; i++) {
    keel_term v = number(h, m[i].value);
    map = v ? keel_map_put(h, map, m[i].key, v) : KEEL_NONE;
  }
  return map;
}

static keel_term metadata_map(keel_heap *h, const keel_tel_meta *md,
                              size_t nmd) {
  keel_term map = keel_map_new(h);
  for (size_t i = 0; i < nmd && map != KEEL_NONE; i++)
    map = keel_map_put(h, map, md[i].key, md[i].value);
  return map;
}

static int forward(const keel_tel_event *ev, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd,
                   void *config) {
  const forwarder *f = config;
  keel_heap h;
  keel_heap_init(&h);
  keel_term mm = measurements_map(&h, m, nm);
  keel_term mdm = mm ? metadata_map(&h, md, nmd) : KEEL_NONE;
  keel_term msg =
      mdm ? keel_tuple(&h, 4, keel_tel_event_name(ev), f->ref, mm, mdm)
          : KEEL_NONE;
  if (msg != KEEL_NONE)
    (void)keel_send(f->pid, msg); /* no node, dead pid: nothing to do */
  keel_heap_destroy(&h);
  return 0;
}

static keel_term new_ref(keel_heap *h) {
  keel_ref_parts r = {0};
  r.node = keel_term_local_node(&r.creation);
  r.len = 3;
  r.id[0] = atomic_fetch_add(&g_ref_ids, 1) + 1;
  r.id[1] = 0x7e1u; /* marks references made here */
  return keel_ref_make(h, &r);
}

int keel_tel_forward_attach(keel_term pid, keel_tel_event *const *events,
                            size_t n, keel_heap *h, keel_term *ref) {
  if (h == NULL || ref == NULL)
    return KEEL_EINVAL;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  forwarder *f = calloc(1, sizeof *f);
  if (f == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&f->heap);
  f->pid = pid;
  f->ref = new_ref(&f->heap);
  keel_term out = f->ref ? keel_term_copy(h, f->ref) : KEEL_NONE;
  int rc = out ? keel_tel_attach(f->ref, events, n, forward, f) : KEEL_ENOMEM;
  if (rc != KEEL_OK) {
    keel_heap_destroy(&f->heap);
    free(f);
    return rc;
  }
  pthread_mutex_lock(&g_mu);
  f->next = g_list;
  g_list = f;
  pthread_mutex_unlock(&g_mu);
  *ref = out;
  return KEEL_OK;
}

int keel_tel_forward_detach(keel_term ref) {
  forwarder *f = NULL;
  pthread_mutex_lock(&g_mu);
  for (forwarder **pp = &g_list; *pp != NULL; pp = &(*pp)->next) {
    if (keel_eq_exact((*pp)->ref, ref)) {
      f = *pp;
      *pp = f->next;
      break;
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (f == NULL)
    return KEEL_ENOENT;
  (void)keel_tel_detach(f->ref);
  keel_heap_destroy(&f->heap);
  free(f);
  return KEEL_OK;
}
