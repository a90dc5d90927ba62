/*
 * lanes.c - delivery to lane subscriptions, and the lane writers: threads
 * of an instance (keel_pubsub_opts.lane_writers) that share the
 * deliveries of a large broadcast with the broadcasting thread.
 *
 * A broadcast encodes its message once per lane class, splits its lanes
 * into contiguous parts, hands one part to each idle writer, delivers the
 * first part itself, and returns once every part is done, so the
 * broadcasts of one sender still reach each lane in the order sent.
 */
#include <stdlib.h>
#include <string.h>

#include "keel/runtime.h"
#include "pubsub/pubsub_internal.h"

/* Lanes per part below which a broadcast does not split. */
enum { PART_MIN = 256 };

/* ---- payloads ------------------------------------------------------------ */

/* The payload of cls (NULL: none), encoded on first use. */
static void *payload_of(ps_payloads *lp, const keel_pubsub_lane_class *cls,
                        keel_term msg) {
  for (unsigned i = 0; i < lp->n; i++)
    if (lp->cls[i] == cls)
      return lp->payload[i];
  if (lp->n == PS_LANE_CLASSES)
    return NULL; /* too many classes in one topic: plain delivery */
  void *p = cls->encode(msg, cls->cls_arg);
  lp->cls[lp->n] = cls;
  lp->payload[lp->n++] = p;
  return p;
}

static void *payload_find(const ps_payloads *lp,
                          const keel_pubsub_lane_class *cls) {
  for (unsigned i = 0; i < lp->n; i++)
    if (lp->cls[i] == cls)
      return lp->payload[i];
  return NULL;
}

/* Delivers to lanes[0..n) with the payloads already encoded. */
static int64_t deliver_part(const ps_lane *lanes, size_t n,
                            const ps_payloads *lp, keel_term from,
                            keel_term msg) {
  int64_t sent = 0;
  for (size_t i = 0; i < n; i++) {
    const ps_lane *l = &lanes[i];
    if (l->pid == from)
      continue;
    void *p = payload_find(lp, l->cls);
    int rc = p != NULL ? l->cls->deliver(l->lane, p) : keel_send(l->pid, msg);
    sent += rc == KEEL_OK;
  }
  return sent;
}

/* ---- the writers ----------------------------------------------------------
 */

/* One broadcast's parts handed to writers. */
typedef struct ps_job {
  const ps_lane *lanes;
  size_t n; /* lanes per part */
  size_t total;
  const ps_payloads *lp;
  keel_term from, msg;
  unsigned next, parts; /* next part to take, parts in all */
  unsigned left;        /* parts not finished */
  int64_t sent;
  pthread_cond_t done;
} ps_job;

struct ps_writers {
  pthread_mutex_t mu;
  pthread_cond_t work;
  ps_job *job; /* the job writers take parts of, or NULL */
  unsigned nthreads;
  bool quit;
  pthread_t *threads;
};

/* Takes a part of the current job (under mu); false when none is left. */
static bool take_part(ps_writers *w, ps_job **job, size_t *lo, size_t *hi) {
  ps_job *j = w->job;
  if (j == NULL || j->next == j->parts)
    return false;
  unsigned k = j->next++;
  if (j->next == j->parts)
    w->job = NULL; /* every part is taken */
  *job = j;
  *lo = (size_t)k * j->n;
  *hi = k + 1 == j->parts ? j->total : *lo + j->n;
  return true;
}

static void part_done(ps_writers *w, ps_job *j, int64_t sent) {
  pthread_mutex_lock(&w->mu);
  j->sent += sent;
  if (--j->left == 0)
    pthread_cond_signal(&j->done);
  pthread_mutex_unlock(&w->mu);
}

static void *writer_main(void *arg) {
  ps_writers *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    ps_job *j;
    size_t lo, hi;
    if (take_part(w, &j, &lo, &hi)) {
      pthread_mutex_unlock(&w->mu);
      int64_t sent =
          deliver_part(j->lanes + lo, hi - lo, j->lp, j->from, j->msg);
      part_done(w, j, sent);
      pthread_mutex_lock(&w->mu);
      continue;
    }
    if (w->quit)
      break;
    pthread_cond_wait(&w->work, &w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int ps_writers_start(unsigned n, ps_writers **out) {
  *out = NULL;
  if (n == 0)
    return KEEL_OK;
  ps_writers *w = calloc(1, sizeof *w);
  pthread_t *t = calloc(n, sizeof *t);
  if (w == NULL || t == NULL) {
    free(w);
    free(t);
    return KEEL_ENOMEM;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->work, NULL);
  w->threads = t;
  for (; w->nthreads < n; w->nthreads++)
    if (pthread_create(&t[w->nthreads], NULL, writer_main, w) != 0)
      break;
  if (w->nthreads == 0) {
    ps_writers_stop(w);
    return KEEL_ESYSLIMIT;
  }
  *out = w;
  return KEEL_OK;
}

void ps_writers_stop(ps_writers *w) {
  if (w == NULL)
    return;
  pthread_mutex_lock(&w->mu);
  w->quit = true;
  pthread_cond_broadcast(&w->work);
  pthread_mutex_unlock(&w->mu);
  for (unsigned i = 0; i < w->nthreads; i++)
    pthread_join(w->threads[i], NULL);
  pthread_cond_destroy(&w->work);
  pthread_mutex_destroy(&w->mu);
  free(w->threads);
  free(w);
}

/* Shares lanes[0..n) between the caller and the writers; false when the
 * writers are busy with another broadcast (the caller then delivers
 * alone). */
static bool shared(ps_writers *w, const ps_lane *lanes, size_t n,
                   const ps_payloads *lp, keel_term from, keel_term msg,
                   int64_t *sent) {
  unsigned parts = w->nthreads + 1;
  if (n / parts < PART_MIN)
    parts = (unsigned)(n / PART_MIN);
  if (parts < 2)
    return false;
  ps_job j = {.lanes = lanes,
              .n = n / parts,
              .total = n,
              .lp = lp,
              .from = from,
              .msg = msg,
              .next = 1, /* part 0 is the caller's */
              .parts = parts,
              .left = parts - 1};
  pthread_mutex_lock(&w->mu);
  if (w->job != NULL || w->quit) {
    pthread_mutex_unlock(&w->mu);
    return false;
  }
  pthread_cond_init(&j.done, NULL);
  /* j lives on this stack until every part is done (waited for below). */
  /* cppcheck-suppress autoVariables */
  w->job = &j;
  pthread_cond_broadcast(&w->work);
  pthread_mutex_unlock(&w->mu);
  int64_t own = deliver_part(lanes, j.n, lp, from, msg);
  pthread_mutex_lock(&w->mu);
  /* Parts no writer took yet: the caller does them too. */
  ps_job *jj;
  size_t lo, hi;
  while (w->job == &j && take_part(w, &jj, &lo, &hi)) {
    pthread_mutex_unlock(&w->mu);
    int64_t s = deliver_part(lanes + lo, hi - lo, lp, from, msg);
    pthread_mutex_lock(&w->mu);
    j.sent += s;
    j.left--;
  }
  while (j.left > 0)
    pthread_cond_wait(&j.done, &w->mu);
  pthread_mutex_unlock(&w->mu);
  pthread_cond_destroy(&j.done);
  *sent = own + j.sent;
  return true;
}

int64_t ps_deliver_lanes(ps_writers *w, const ps_lane *lanes, size_t n,
                         keel_term from, keel_term msg) {
  ps_payloads lp = {.n = 0};
  for (size_t i = 0; i < n; i++)
    if (lanes[i].pid != from)
      (void)payload_of(&lp, lanes[i].cls, msg);
  int64_t sent = 0;
  if (w == NULL || !shared(w, lanes, n, &lp, from, msg, &sent))
    sent = deliver_part(lanes, n, &lp, from, msg);
  for (unsigned i = 0; i < lp.n; i++)
    if (lp.payload[i] != NULL)
      lp.cls[i]->payload_free(lp.payload[i]);
  return sent;
}
