/*
 * ws_lane.c - the WebSocket fastlane: PubSub broadcasts written to a
 * connection's socket by the broadcasting thread, without waking the
 * connection process.
 *
 * A broadcast encodes its message once into a complete frame (a
 * reference-counted lane_frame shared by every lane of its kind) and
 * hands it to each lane. A lane that is free writes the frame to the
 * socket at once (keel_net_try_send). A lane is held while its connection
 * process has output of its own in progress (during every handler call,
 * and while the socket waits for {tcp_writable, S}): frames then queue in
 * the lane, and the process moves them to its output after what it wrote
 * before them, so the connection's own frames and the lane's stay in the
 * order they were sent.
 *
 * Slow consumers: a frame the socket refuses (its output queue above the
 * high watermark) is queued and the process is woken once to take over
 * (it then waits for {tcp_writable, S}). A lane whose frames not yet
 * taken by the socket (queued, or moved to the connection's output:
 * c->lane_out) would exceed the server's ws_lane_max_bytes is closed: its
 * frames are dropped and the connection is closed with 1008 (policy violation).
 *
 * Locking: the lane's mutex is taken before the socket's (never the other
 * way), and nothing that can switch a fiber out runs under it.
 */
#include <stdlib.h>
#include <string.h>

#include "http/conn.h"
#include "keel/error.h"

/* A complete frame shared by the lanes of one broadcast. */
typedef struct lane_frame {
  _Atomic uint32_t refs;
  size_t len;
  uint8_t data[];
} lane_frame;

struct keel__ws_lane {
  _Atomic uint32_t refs;
  pthread_mutex_t mu;
  keel_socket sock;
  keel_term pid;
  keel__http_conn *conn; /* used only by the connection process itself */
  size_t max;            /* bytes a lane may queue */
  bool held;             /* the process has output in progress: frames queue */
  bool closed;
  bool kicked; /* the process was woken to take over the queue */
  lane_frame **q;
  size_t qn, qcap, qbytes;
};

static keel_term kick_atom(void) {
  return keel_atom("$keel_ws_lane_kick");
}

static keel_term overflow_atom(void) {
  return keel_atom("$keel_ws_lane_overflow");
}

/* ---- frames ------------------------------------------------------------ */

static void frame_unref(lane_frame *f) {
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    free(f);
}

static void *lane_encode(keel_term msg, void *cls_arg) {
  uint8_t op = (uint8_t)(uintptr_t)cls_arg;
  if (!keel_is_binary(msg))
    return NULL; /* not a binary: the process gets it (on_info) */
  size_t n = 0;
  const uint8_t *d = keel_binary_data(msg, &n);
  if (op == KEEL__WS_TEXT) {
    keel__utf8 u = {0, 0x80, 0xBF};
    if (!keel__utf8_feed(&u, d, n) || !keel__utf8_done(&u))
      return NULL;
  }
  keel_buf b;
  keel_buf_init(&b);
  lane_frame *f = NULL;
  if (keel__ws_encode(&b, op, true, d, n, NULL) == KEEL_OK &&
      (f = malloc(sizeof *f + b.len)) != NULL) {
    atomic_init(&f->refs, 1);
    f->len = b.len;
    memcpy(f->data, b.data, b.len);
  }
  keel_buf_free(&b);
  return f;
}

static void lane_payload_free(void *payload) {
  frame_unref(payload);
}

/* ---- lanes ------------------------------------------------------------- */

static void lane_ref(void *arg) {
  keel__ws_lane *l = arg;
  atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

/* Drops the queued frames (under the lock). */
static void queue_drop_locked(keel__ws_lane *l) {
  for (size_t i = 0; i < l->qn; i++)
    frame_unref(l->q[i]);
  l->qn = 0;
  l->qbytes = 0;
}

static void lane_unref(void *arg) {
  keel__ws_lane *l = arg;
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
    return;
  queue_drop_locked(l); /* the last reference: nobody else holds it */
  free(l->q);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

/* Queues f (under the lock): KEEL_OK, or KEEL_EBUSY when the lane would
 * exceed its bound (it is then closed: the caller tells the process). */
static int queue_locked(keel__ws_lane *l, lane_frame *f) {
  if (l->qbytes + f->len > l->max) {
    l->closed = true;
    queue_drop_locked(l);
    return KEEL_EBUSY;
  }
  if (l->qn == l->qcap) {
    size_t cap = l->qcap != 0 ? 2 * l->qcap : 4;
    lane_frame **q = realloc(l->q, cap * sizeof(lane_frame *));
    if (q == NULL)
      return KEEL_ENOMEM; /* this frame is lost; the lane goes on */
    l->q = q;
    l->qcap = cap;
  }
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  l->q[l->qn++] = f;
  l->qbytes += f->len;
  return KEEL_OK;
}

static int lane_deliver(void *arg, void *payload) {
  keel__ws_lane *l = arg;
  lane_frame *f = payload;
  keel_term tell = KEEL_NONE;
  int rc;
  keel_proc *self = keel_current();
  pthread_mutex_lock(&l->mu);
  if (l->closed) {
    rc = KEEL_ECLOSED;
  } else if (self != NULL && keel_self(self) == l->pid &&
             l->conn->mode == CONN_WS) {
    /* The connection broadcasting from its own callback: the frame goes
     * after what the callback sent before, and before what it sends
     * next (its own order as a sender). */
    rc = keel_buf_append(&l->conn->out, f->data, f->len);
    l->conn->lane_out += f->len;
    if (rc == KEEL_OK && l->conn->lane_out > l->max) {
      l->closed = true;
      queue_drop_locked(l);
      rc = KEEL_EBUSY;
    }
  } else if (l->held || l->qn > 0) {
    rc = queue_locked(l, f);
  } else if ((rc = keel_net_try_send(l->sock, f->data, f->len)) == KEEL_EBUSY) {
    /* The socket is backed up: queue, and let the process wait for
     * {tcp_writable, S} on the lane's behalf. */
    rc = queue_locked(l, f);
    l->held = rc == KEEL_OK;
    if (rc == KEEL_OK && !l->kicked) {
      l->kicked = true;
      tell = kick_atom();
    }
  } else if (rc == KEEL_ECLOSED) {
    l->closed = true;
  }
  if (rc == KEEL_EBUSY)
    tell = overflow_atom();
  pthread_mutex_unlock(&l->mu);
  if (tell != KEEL_NONE)
    (void)keel_send(l->pid, tell);
  return rc;
}

static const keel_pubsub_lane_class lane_text = {
    lane_encode, lane_deliver, lane_payload_free,
    lane_ref,    lane_unref,   (void *)(uintptr_t)KEEL__WS_TEXT};
static const keel_pubsub_lane_class lane_binary = {
    lane_encode, lane_deliver, lane_payload_free,
    lane_ref,    lane_unref,   (void *)(uintptr_t)KEEL__WS_BINARY};

/* ---- the connection process's side ------------------------------------ */

bool keel__ws_lane_msg(keel__http_conn *c, keel_term msg) {
  if (msg == kick_atom())
    return true; /* the hold and release around the handler do the work */
  if (msg != overflow_atom())
    return false;
  if (c->mode == CONN_WS && !c->close_sent)
    keel__ws_fail(c, KEEL__WS_CLOSE_POLICY);
  return true;
}

void keel__ws_lane_hold(keel__http_conn *c) {
  keel__ws_lane *l = c->lane;
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  l->held = true;
  l->kicked = false;
  bool over = false;
  for (size_t i = 0; i < l->qn && !over; i++) {
    c->lane_out += l->q[i]->len;
    over = keel_buf_append(&c->out, l->q[i]->data, l->q[i]->len) != KEEL_OK ||
           c->lane_out > l->max;
  }
  queue_drop_locked(l);
  if (over)
    l->closed = true;
  pthread_mutex_unlock(&l->mu);
  if (over && c->mode == CONN_WS && !c->close_sent)
    keel__ws_fail(c, KEEL__WS_CLOSE_POLICY);
}

int keel__ws_lane_release(keel__http_conn *c) {
  keel__ws_lane *l = c->lane;
  if (l == NULL)
    return KEEL_OK;
  if (c->mode != CONN_WS || c->close_sent)
    keel__ws_lane_close(c);
  for (;;) {
    pthread_mutex_lock(&l->mu);
    if (l->closed || l->qn == 0 || c->busy) {
      /* Free unless the socket still refuses what the process holds. */
      l->held = c->busy && !l->closed;
      pthread_mutex_unlock(&l->mu);
      return KEEL_OK;
    }
    int rc = KEEL_OK;
    for (size_t i = 0; i < l->qn && rc == KEEL_OK; i++) {
      c->lane_out += l->q[i]->len;
      rc = keel_buf_append(&c->out, l->q[i]->data, l->q[i]->len);
    }
    queue_drop_locked(l);
    pthread_mutex_unlock(&l->mu);
    if (rc != KEEL_OK || (rc = keel__conn_flush(c)) != KEEL_OK)
      return rc;
  }
}

void keel__ws_lane_close(keel__http_conn *c) {
  keel__ws_lane *l = c->lane;
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  l->closed = true;
  l->held = false;
  queue_drop_locked(l);
  pthread_mutex_unlock(&l->mu);
}

void keel__ws_lane_free(keel__http_conn *c) {
  if (c->lane == NULL)
    return;
  keel__ws_lane_close(c);
  lane_unref(c->lane);
  c->lane = NULL;
}

/* ---- public API ------------------------------------------------------- */

int keel_ws_fastlane_subscribe(keel_ws *ws, keel_pubsub ps, keel_term topic,
                               keel_ws_kind kind) {
  if (ws == NULL || (kind != KEEL_WS_TEXT && kind != KEEL_WS_BINARY))
    return KEEL_EINVAL;
  keel__http_conn *c = ws->conn;
  if (keel_current() == NULL || keel_current() != c->self || c->wsh == NULL ||
      c->close_sent || c->mode == CONN_CLOSING)
    return KEEL_ESTATE;
  if (c->lane == NULL) {
    keel__ws_lane *l = calloc(1, sizeof *l);
    if (l == NULL)
      return KEEL_ENOMEM;
    atomic_init(&l->refs, 1); /* the connection's */
    pthread_mutex_init(&l->mu, NULL);
    l->sock = c->sock;
    l->pid = c->pid;
    l->conn = c;
    l->max = c->srv->o.ws_lane_max_bytes;
    l->held = true; /* inside a handler call: released at its end */
    c->lane = l;
  } else {
    /* Frames queued in the lane so far (of earlier subscriptions) go to
     * the output now, ahead of what the caller sends after subscribing
     * (a page's snapshot after a rejoin must not be overtaken by the old
     * subscription's frames, which would read as newer). */
    keel__ws_lane_hold(c);
  }
  return keel_pubsub_subscribe_lane(
      ps, topic, kind == KEEL_WS_TEXT ? &lane_text : &lane_binary, c->lane);
}
