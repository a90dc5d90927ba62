/*
 * test_ws_fastlane.c - PubSub broadcasts written to WebSocket connections
 * through their fastlane (keel_ws_fastlane_subscribe), with real clients
 * on loopback, on 1, 2 and 8 schedulers: every subscriber gets every
 * frame once and in order, also interleaved with the connection's own
 * frames and behind the connection's own output while its socket is
 * busy (which does not count against the lane bound); unsubscribing and
 * death remove the lane; a consumer that does not read is closed with
 * 1008 while the others go on.
 */
#include "http_test.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "keel/http.h"
#include "keel/pubsub.h"
#include "keel/runtime.h"
#include "keel/signals.h"

static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;
static keel_pubsub ps;
static keel_heap th;
static keel_term topic;
static _Atomic int terms, last_code;
static _Atomic int bigs_queued;

enum { BIG_OWN = 60000 };

/* ---- the route ---------------------------------------------------------- */

/* Broadcasts text to the topic from any thread or process. */
static int64_t bcast(const char *text) {
  keel_heap h;
  keel_heap_init(&h);
  int64_t n = keel_pubsub_local_broadcast(
      ps, topic, keel_binary(&h, text, strlen(text)), NULL);
  keel_heap_destroy(&h);
  return n;
}

static int fl_init(keel_ws *ws, const keel_http_request *req, void **state) {
  (void)req;
  (void)state;
  return keel_ws_fastlane_subscribe(ws, ps, topic, KEEL_WS_TEXT);
}

/* "unsub": unsubscribes and answers "unsubscribed"; "echo:X": answers X;
 * "mix:N": for k < N sends own-k itself, then broadcasts bc-k. */
static int fl_msg(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                  size_t len, void *state) {
  (void)kind;
  (void)state;
  char text[64];
  snprintf(text, sizeof text, "%.*s", (int)len, (const char *)data);
  if (strcmp(text, "unsub") == 0) {
    int rc = keel_pubsub_unsubscribe(ps, topic);
    return rc == KEEL_OK ? keel_ws_send(ws, KEEL_WS_TEXT, "unsubscribed", 12)
                         : rc;
  }
  if (strncmp(text, "echo:", 5) == 0)
    return keel_ws_send(ws, KEEL_WS_TEXT, text + 5, strlen(text + 5));
  int n = 0;
  if (sscanf(text, "big:%d", &n) == 1) {
    static char big[BIG_OWN];
    for (int k = 0; k < n; k++) {
      memset(big, 'b', sizeof big);
      snprintf(big, 16, "big-%d", k);
      int rc = keel_ws_send(ws, KEEL_WS_BINARY, big, sizeof big);
      if (rc != KEEL_OK)
        return rc;
    }
    atomic_fetch_add(&bigs_queued, 1);
    return KEEL_OK;
  }
  if (sscanf(text, "mix:%d", &n) != 1)
    return KEEL_OK;
  for (int k = 0; k < n; k++) {
    char b[32];
    int bl = snprintf(b, sizeof b, "own-%d", k);
    int rc = keel_ws_send(ws, KEEL_WS_TEXT, b, (size_t)bl);
    snprintf(b, sizeof b, "bc-%d", k);
    if (rc != KEEL_OK || bcast(b) < 1)
      return KEEL_EIO;
  }
  return KEEL_OK;
}

/* A broadcast that is not a binary reaches the process: {push, Bin}. */
static int fl_info(keel_ws *ws, keel_term msg, void *state) {
  (void)state;
  size_t n;
  const uint8_t *d = keel_is_tuple(msg) && keel_tuple_arity(msg) == 2
                         ? keel_binary_data(keel_tuple_get(msg, 1), &n)
                         : NULL;
  return d != NULL ? keel_ws_send(ws, KEEL_WS_TEXT, d, n) : KEEL_OK;
}

static void fl_term(keel_ws *ws, uint16_t code, void *state) {
  (void)ws;
  (void)state;
  atomic_store(&last_code, code);
  atomic_fetch_add(&terms, 1);
}

static const keel_ws_handler fl_h = {fl_init, fl_msg, fl_info, fl_term};

static void start(unsigned nsched, const keel_http_server_opts *o) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
  keel_heap_init(&th);
  topic = keel_binary(&th, "live", 4);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route_ws(router, "/fl", &fl_h, NULL), KEEL_OK);
  keel_http_server_opts opts = {0};
  if (o != NULL)
    opts = *o;
  cr_assert_eq(keel_http_server_start(&opts, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  atomic_store(&terms, 0);
  atomic_store(&last_code, 0);
  atomic_store(&bigs_queued, 0);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
  keel_heap_destroy(&th);
}

static const unsigned scheds[] = {1, 2, 8};

/* Waits (bounded, yielding) until the topic has n subscriptions. */
static bool count_reaches(int64_t n) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (keel_pubsub_count(ps, topic) != n) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > CLIENT_TIMEOUT_S)
      return false;
  }
  return true;
}

static bool terms_reach(int n) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&terms) < n) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > CLIENT_TIMEOUT_S)
      return false;
  }
  return true;
}

/* Reads one text frame into text (NUL-terminated). */
static void recv_text(int fd, ws_frame_in *f, char *text, size_t cap) {
  cr_assert(ws_recv(fd, f), "connection closed");
  cr_assert_eq(f->op, KEEL__WS_TEXT);
  cr_assert_lt(f->len, cap);
  memcpy(text, f->data, f->len);
  text[f->len] = '\0';
}

/* ---- every subscriber, every frame, once, in order --------------------- */

enum { NCLIENTS = 6, NMSGS = 200 };

static void delivery(unsigned nsched) {
  start(nsched, NULL);
  int fd[NCLIENTS];
  for (int i = 0; i < NCLIENTS; i++)
    fd[i] = ws_connect(port, "/fl");
  cr_assert(count_reaches(NCLIENTS));
  char text[64];
  for (int m = 0; m < NMSGS; m++) {
    snprintf(text, sizeof text, "m-%d", m);
    cr_assert_eq(bcast(text), NCLIENTS);
  }
  /* A message that is not a binary goes to the process (on_info). */
  keel_heap h;
  keel_heap_init(&h);
  keel_term push =
      keel_tuple(&h, 2, keel_atom("push"), keel_binary(&h, "via-info", 8));
  cr_assert_eq(keel_pubsub_local_broadcast(ps, topic, push, NULL), NCLIENTS);
  keel_heap_destroy(&h);
  cr_assert_eq(bcast("end"), NCLIENTS);
  ws_frame_in *f = malloc(sizeof *f);
  for (int i = 0; i < NCLIENTS; i++) {
    for (int m = 0; m < NMSGS; m++) {
      char want[32];
      snprintf(want, sizeof want, "m-%d", m);
      recv_text(fd[i], f, text, sizeof text);
      cr_assert_str_eq(text, want, "client %d", i);
    }
    /* The on_info frame and the next lane frame: both, but the process
     * and the lane are two senders, so in either order. */
    char a[64], b[64];
    recv_text(fd[i], f, a, sizeof a);
    recv_text(fd[i], f, b, sizeof b);
    cr_assert((strcmp(a, "via-info") == 0 && strcmp(b, "end") == 0) ||
                  (strcmp(a, "end") == 0 && strcmp(b, "via-info") == 0),
              "%s %s", a, b);
    /* Nothing more was queued: the next frame is the echo. */
    ws_send(fd[i], KEEL__WS_TEXT, true, "echo:last", 9);
    recv_text(fd[i], f, text, sizeof text);
    cr_assert_str_eq(text, "last");
  }
  for (int i = 0; i < NCLIENTS; i++)
    close(fd[i]);
  cr_assert(count_reaches(0));
  free(f);
  stop();
}

Test(ws_fastlane, every_subscriber_gets_every_frame_once_in_order) {
  for (size_t i = 0; i < 3; i++)
    delivery(scheds[i]);
}

/* ---- interleaved with the connection's own frames ---------------------- */

enum { NMIX = 60, NEXT = 120 };

typedef struct pos_check {
  int own, bc, ext; /* next expected index of each sequence */
} pos_check;

static void check_frame(pos_check *p, const char *text) {
  int k;
  if (sscanf(text, "own-%d", &k) == 1) {
    cr_assert_eq(k, p->own, "own frames in order: %s", text);
    /* own-k was sent after bc-(k-1) was broadcast: it must follow it. */
    cr_assert_eq(p->bc, k, "own-%d before bc-%d", k, k - 1);
    p->own++;
  } else if (sscanf(text, "bc-%d", &k) == 1) {
    cr_assert_eq(k, p->bc, "broadcast frames in order: %s", text);
    /* bc-k was broadcast after own-k was sent: it must follow it. */
    cr_assert_lt(k, p->own, "bc-%d before own-%d", k, k);
    p->bc++;
  } else {
    cr_assert_eq(sscanf(text, "x-%d", &k), 1, "unexpected %s", text);
    cr_assert_eq(k, p->ext, "outside broadcasts in order: %s", text);
    p->ext++;
  }
}

static void *outside_broadcaster(void *arg) {
  (void)arg;
  for (int i = 0; i < NEXT; i++) {
    char text[32];
    snprintf(text, sizeof text, "x-%d", i);
    if (bcast(text) < 1)
      return (void *)1;
  }
  return NULL;
}

static void interleaved(unsigned nsched) {
  start(nsched, NULL);
  int a = ws_connect(port, "/fl"), b = ws_connect(port, "/fl");
  cr_assert(count_reaches(2));
  pthread_t th_out;
  cr_assert_eq(pthread_create(&th_out, NULL, outside_broadcaster, NULL), 0);
  char cmd[32];
  snprintf(cmd, sizeof cmd, "mix:%d", NMIX);
  ws_send(a, KEEL__WS_TEXT, true, cmd, strlen(cmd));
  void *res;
  cr_assert_eq(pthread_join(th_out, &res), 0);
  cr_assert_null(res);
  ws_frame_in *f = malloc(sizeof *f);
  char text[64];
  pos_check pa = {0}, pb = {0};
  while (pa.own < NMIX || pa.bc < NMIX || pa.ext < NEXT) {
    recv_text(a, f, text, sizeof text);
    check_frame(&pa, text);
  }
  /* b gets the broadcasts only (own-k went to a). */
  pb.own = NMIX;
  while (pb.bc < NMIX || pb.ext < NEXT) {
    recv_text(b, f, text, sizeof text);
    check_frame(&pb, text);
  }
  for (int i = 0; i < 2; i++) {
    int fd = i == 0 ? a : b;
    ws_send(fd, KEEL__WS_TEXT, true, "echo:done", 9);
    recv_text(fd, f, text, sizeof text);
    cr_assert_str_eq(text, "done", "nothing delivered twice");
    close(fd);
  }
  cr_assert(count_reaches(0));
  free(f);
  stop();
}

Test(ws_fastlane, broadcasts_keep_order_with_the_connections_own_frames) {
  for (size_t i = 0; i < 3; i++)
    interleaved(scheds[i]);
}

/* ---- unsubscribe and death ---------------------------------------------- */

static void cleanup(unsigned nsched) {
  start(nsched, NULL);
  int a = ws_connect(port, "/fl"), b = ws_connect(port, "/fl"),
      c = ws_connect(port, "/fl");
  cr_assert(count_reaches(3));
  ws_frame_in *f = malloc(sizeof *f);
  char text[64];
  /* a unsubscribes: later broadcasts do not reach it. */
  ws_send(a, KEEL__WS_TEXT, true, "unsub", 5);
  recv_text(a, f, text, sizeof text);
  cr_assert_str_eq(text, "unsubscribed");
  cr_assert_eq(keel_pubsub_count(ps, topic), 2);
  cr_assert_eq(bcast("after-unsub"), 2);
  ws_send(a, KEEL__WS_TEXT, true, "echo:a", 6);
  recv_text(a, f, text, sizeof text);
  cr_assert_str_eq(text, "a", "no broadcast after unsubscribing");
  recv_text(b, f, text, sizeof text);
  cr_assert_str_eq(text, "after-unsub");
  recv_text(c, f, text, sizeof text);
  cr_assert_str_eq(text, "after-unsub");
  /* b's client goes away: its subscription goes with its process. */
  close(b);
  cr_assert(count_reaches(1));
  cr_assert(terms_reach(1));
  /* c's connection process is killed: the same. */
  keel_heap h;
  keel_heap_init(&h);
  keel_term subs;
  cr_assert_eq(keel_pubsub_subscribers(ps, topic, &h, &subs), KEEL_OK);
  cr_assert(keel_is_cons(subs));
  keel_term pid = keel_tuple_get(keel_hd(subs), 0);
  cr_assert_eq(keel_tuple_get(keel_hd(subs), 1), keel_atom("lane"));
  cr_assert_eq(keel_exit(pid, keel_atom("kill")), KEEL_OK);
  keel_heap_destroy(&h);
  cr_assert(count_reaches(0));
  if (ws_recv(c, f)) /* a close frame may come first (1001) */
    cr_assert_eq(f->op, KEEL__WS_CLOSE);
  cr_assert(cli_closed(c));
  cr_assert_eq(bcast("nobody"), 0);
  /* a still works as a plain connection. */
  ws_send(a, KEEL__WS_TEXT, true, "echo:still", 10);
  recv_text(a, f, text, sizeof text);
  cr_assert_str_eq(text, "still");
  close(a);
  close(b);
  close(c);
  free(f);
  stop();
}

Test(ws_fastlane, unsubscribe_and_death_remove_the_lane) {
  for (size_t i = 0; i < 3; i++)
    cleanup(scheds[i]);
}

/* ---- a consumer that does not read -------------------------------------- */

enum { BIG = 16 * 1024, MAX_ROUNDS = 20000 };

static int64_t bcast_big(char *buf, int round) {
  snprintf(buf, 16, "%015d", round);
  buf[15] = '-';
  keel_heap h;
  keel_heap_init(&h);
  int64_t n =
      keel_pubsub_local_broadcast(ps, topic, keel_binary(&h, buf, BIG), NULL);
  keel_heap_destroy(&h);
  return n;
}

static void slow_consumer(unsigned nsched) {
  keel_http_server_opts o = {.ws_lane_max_bytes = 64 * 1024};
  start(nsched, &o);
  int slow = ws_connect(port, "/fl"), fast = ws_connect(port, "/fl");
  cr_assert(count_reaches(2));
  char *buf = malloc(BIG);
  memset(buf, 'p', BIG);
  ws_frame_in *f = malloc(sizeof *f);
  /* The slow client reads nothing; the fast one reads every frame. The
   * slow one's socket fills up, then its lane, and it is dropped. */
  int round = 0;
  int64_t sent = 2;
  for (; round < MAX_ROUNDS && sent == 2; round++) {
    sent = bcast_big(buf, round);
    cr_assert(ws_recv(fast, f));
    cr_assert_eq(f->len, BIG);
    cr_assert_eq(atoi(f->data), round, "fast client in order");
  }
  cr_assert_eq(sent, 1, "the slow consumer was dropped");
  /* The fast one goes on. */
  for (int k = 0; k < 5; k++, round++) {
    cr_assert_eq(bcast_big(buf, round), 1);
    cr_assert(ws_recv(fast, f));
    cr_assert_eq(atoi(f->data), round);
  }
  /* The slow one was closed with 1008 after the frames it had been sent,
   * in order and whole. */
  int next = 0;
  for (;;) {
    cr_assert(ws_recv(slow, f), "the close frame comes");
    if (f->op == KEEL__WS_CLOSE)
      break;
    cr_assert_eq(f->len, BIG);
    cr_assert_eq(atoi(f->data), next, "slow client in order");
    next++;
  }
  cr_assert_eq(f->code, 1008);
  cr_assert_lt(next, round);
  cr_assert(terms_reach(1));
  cr_assert_eq(atomic_load(&last_code), 1008);
  close(slow);
  cr_assert(count_reaches(1));
  close(fast);
  free(f);
  free(buf);
  stop();
}

Test(ws_fastlane, a_slow_consumer_is_closed_with_1008_and_blocks_nobody) {
  for (size_t i = 0; i < 3; i++)
    slow_consumer(scheds[i]);
}

/* ---- behind the connection's own output on a busy socket ---------------- */

enum { NBATCH = 2, BATCH_BIG = 60, NSMALL = 3 };

static bool bigs_done(int n) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&bigs_queued) < n) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > CLIENT_TIMEOUT_S)
      return false;
  }
  return true;
}

/* A WebSocket client with a small receive buffer (so the server's socket
 * backs up after a few MB rather than tens). */
static int ws_connect_small(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  int rcv = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct timeval tv = {CLIENT_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect");
  cli_sends(fd, "GET /fl HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n");
  char head[1024];
  size_t n = 0;
  while (n < sizeof head - 1) {
    cr_assert_eq(cli_read(fd, head + n, 1), 1, "handshake cut");
    n++;
    if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  head[n] = '\0';
  cr_assert(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "%s", head);
  return fd;
}

static void behind_own_output(unsigned nsched) {
  /* The connection's own output does not count against the lane bound:
   * the first command's messages fill the socket's queue, the second's
   * wait in the connection (its socket busy) when the broadcasts come. */
  keel_http_server_opts o = {.ws_lane_max_bytes = 64 * 1024};
  start(nsched, &o);
  int fd = ws_connect_small();
  cr_assert(count_reaches(1));
  static const int batch[NBATCH] = {BATCH_BIG, BATCH_BIG};
  for (int b = 0; b < NBATCH; b++) { /* one read, one callback each */
    char cmd[16];
    snprintf(cmd, sizeof cmd, "big:%d", batch[b]);
    ws_send(fd, KEEL__WS_TEXT, true, cmd, strlen(cmd));
    cr_assert(bigs_done(b + 1));
  }
  char text[64];
  for (int k = 0; k < NSMALL; k++) {
    snprintf(text, sizeof text, "small-%d", k);
    cr_assert_eq(bcast(text), 1);
  }
  ws_frame_in *f = malloc(sizeof *f);
  for (int b = 0; b < NBATCH; b++)
    for (int k = 0; k < batch[b]; k++) {
      char want[16];
      snprintf(want, sizeof want, "big-%d", k);
      cr_assert(ws_recv(fd, f), "closed before big-%d", k);
      cr_assert_eq(f->op, KEEL__WS_BINARY, "big-%d: op %d code %d", k, f->op,
                   f->code);
      cr_assert_eq(f->len, BIG_OWN);
      cr_assert_str_eq(f->data, want);
    }
  for (int k = 0; k < NSMALL; k++) {
    char want[16];
    snprintf(want, sizeof want, "small-%d", k);
    recv_text(fd, f, text, sizeof text);
    cr_assert_str_eq(text, want);
  }
  ws_send(fd, KEEL__WS_TEXT, true, "echo:after", 10);
  recv_text(fd, f, text, sizeof text);
  cr_assert_str_eq(text, "after");
  close(fd);
  cr_assert(count_reaches(0));
  free(f);
  stop();
}

Test(ws_fastlane, broadcasts_wait_behind_the_connections_own_output) {
  for (size_t i = 0; i < 3; i++)
    behind_own_output(scheds[i]);
}
