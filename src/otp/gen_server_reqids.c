/*
 * gen_server_reqids.c - request-id collections (OTP 25's gen_server:
 * reqids_new/add/size/to_list, send_request/4 and the receive_response,
 * wait_response and check_response forms taking a collection).
 *
 * A collection is an array of {ReqId, Label} whose terms live in the
 * collection's own heap; a removed entry's words stay until the
 * collection empties, when the heap is reset. A response is recognised
 * as one of keel_gen_server_send_request's: {ReqId, Reply} through the
 * request's alias, or the monitor's {'DOWN', ReqId, process, _, Reason}.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "keel/gen_server.h"
#include "keel/signals.h"

typedef struct reqid {
  keel_term ref, label;
} reqid;

struct keel_gen_server_reqids {
  reqid *v;
  size_t n, cap;
  keel_heap heap;
};

keel_gen_server_reqids *keel_gen_server_reqids_new(void) {
  keel_gen_server_reqids *c = keel__fault() ? NULL : calloc(1, sizeof *c);
  if (c != NULL)
    keel_heap_init(&c->heap);
  return c;
}

void keel_gen_server_reqids_free(keel_gen_server_reqids *c) {
  if (c == NULL)
    return;
  keel_heap_destroy(&c->heap);
  free(c->v);
  free(c);
}

size_t keel_gen_server_reqids_size(const keel_gen_server_reqids *c) {
  return c != NULL ? c->n : 0;
}

/* The index of ref in c, or c->n. */
static size_t find(const keel_gen_server_reqids *c, keel_term ref) {
  size_t i = 0;
  while (i < c->n && !keel_eq_exact(c->v[i].ref, ref))
    i++;
  return i;
}

int keel_gen_server_reqids_add(keel_gen_server_reqids *c, keel_term req_id,
                               keel_term label) {
  if (c == NULL || !keel_is_ref(req_id) || label == KEEL_NONE)
    return KEEL_EINVAL;
  if (find(c, req_id) < c->n)
    return KEEL_EEXIST;
  if (c->n == c->cap) {
    size_t cap = c->cap != 0 ? 2 * c->cap : 8;
    reqid *v = keel__fault() ? NULL : realloc(c->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    c->v = v;
    c->cap = cap;
  }
  keel_term r = keel_term_copy(&c->heap, req_id);
  keel_term l = r != KEEL_NONE ? keel_term_copy(&c->heap, label) : KEEL_NONE;
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  c->v[c->n++] = (reqid){r, l};
  return KEEL_OK;
}

int keel_gen_server_reqids_to_list(const keel_gen_server_reqids *c,
                                   keel_heap *h, keel_term *out) {
  if (c == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_term l = KEEL_NIL;
  for (size_t i = c->n; i-- > 0;) {
    keel_term t = keel_tuple(h, 2, c->v[i].ref, c->v[i].label);
    l = t != KEEL_NONE ? keel_cons(h, t, l) : KEEL_NONE;
    if (l == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  *out = l;
  return KEEL_OK;
}

/* Removes entry i, keeping the order of the others. */
static void remove_at(keel_gen_server_reqids *c, size_t i) {
  for (size_t j = i + 1; j < c->n; j++)
    c->v[j - 1] = c->v[j];
  if (--c->n == 0) { /* nothing refers to the heap any more */
    keel_heap_destroy(&c->heap);
    keel_heap_init(&c->heap);
  }
}

int keel_gen_server_send_request_to(keel_term server, keel_term request,
                                    keel_term label,
                                    keel_gen_server_reqids *c) {
  if (c == NULL || label == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  int rc = keel_gen_server_send_request(server, request, &h, &ref);
  if (rc == KEEL_OK && (rc = keel_gen_server_reqids_add(c, ref, label)) !=
                           KEEL_OK) /* not tracked: abandoned */
    (void)keel_demonitor(keel_current(), ref, KEEL_DEMONITOR_FLUSH);
  keel_heap_destroy(&h);
  return rc;
}

/* The request of c that msg answers, or c->n. */
static size_t answered(const keel_gen_server_reqids *c, keel_term msg) {
  if (!keel_is_tuple(msg))
    return c->n;
  size_t a = keel_tuple_arity(msg);
  if (a == 2)
    return find(c, keel_tuple_get(msg, 0));
  if (a == 5 && keel_tuple_get(msg, 0) == KEEL_ATOM(DOWN) &&
      keel_tuple_get(msg, 2) == KEEL_ATOM(PROCESS))
    return find(c, keel_tuple_get(msg, 1));
  return c->n;
}

static bool match_any(keel_term msg, void *arg) {
  const keel_gen_server_reqids *c = arg;
  return answered(c, msg) < c->n;
}

/* Takes msg, the answer to request i of c: the reply or the 'DOWN'
 * reason and the label into h; removes the request when del. */
static int take(keel_gen_server_reqids *c, size_t i, keel_term msg, bool del,
                keel_heap *h, keel_term *reply, keel_term *label) {
  bool down = keel_tuple_arity(msg) == 5;
  keel_term r = keel_term_copy(h, keel_tuple_get(msg, down ? 4 : 1));
  keel_term l = r != KEEL_NONE ? keel_term_copy(h, c->v[i].label) : KEEL_NONE;
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *reply = r;
  *label = l;
  if (del)
    remove_at(c, i);
  return down ? KEEL_ENOPROC : KEEL_OK;
}

static bool bad_out(const keel_gen_server_reqids *c, const keel_heap *h,
                    const keel_term *reply, const keel_term *label) {
  return c == NULL || h == NULL || reply == NULL || label == NULL;
}

static int wait_any(keel_gen_server_reqids *c, int64_t timeout_ms, bool del,
                    bool abandon, keel_heap *h, keel_term *reply,
                    keel_term *label) {
  keel_proc *self = keel_current();
  if (self == NULL || !keel_proc_is_fiber(self))
    return KEEL_ESTATE;
  if (bad_out(c, h, reply, label) || timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  if (c->n == 0)
    return KEEL_ENOENT;
  keel_term m;
  int rc = keel_receive(self, match_any, c, timeout_ms, &m);
  if (rc == KEEL_OK)
    return take(c, answered(c, m), m, del, h, reply, label);
  if (rc == KEEL_ETIMEDOUT && abandon) {
    /* Every request ends; answers already queued go too. */
    for (size_t i = 0; i < c->n; i++)
      (void)keel_demonitor(self, c->v[i].ref, KEEL_DEMONITOR_FLUSH);
    while (keel_receive(self, match_any, c, 0, &m) == KEEL_OK)
      ;
    while (c->n > 0)
      remove_at(c, c->n - 1);
  }
  return rc;
}

int keel_gen_server_receive_response_in(keel_gen_server_reqids *c,
                                        int64_t timeout_ms, bool del,
                                        keel_heap *h, keel_term *reply,
                                        keel_term *label) {
  return wait_any(c, timeout_ms, del, true, h, reply, label);
}

int keel_gen_server_wait_response_in(keel_gen_server_reqids *c,
                                     int64_t timeout_ms, bool del, keel_heap *h,
                                     keel_term *reply, keel_term *label) {
  return wait_any(c, timeout_ms, del, false, h, reply, label);
}

int keel_gen_server_check_response_in(keel_term msg, keel_gen_server_reqids *c,
                                      bool del, keel_heap *h, keel_term *reply,
                                      keel_term *label) {
  if (bad_out(c, h, reply, label) || msg == KEEL_NONE)
    return KEEL_EINVAL;
  if (c->n == 0)
    return KEEL_ENOENT;
  size_t i = answered(c, msg);
  if (i == c->n)
    return KEEL_ENOMATCH;
  return take(c, i, msg, del, h, reply, label);
}
