/*
 * bench_ws.c - many WebSocket users, each receiving a dashboard-sized
 * update every 500 ms: how many, how late, how much memory each.
 *
 * The server is this process: a node of 2 schedulers, Keel's HTTP server
 * with a WebSocket route whose connections subscribe to a PubSub topic
 * through the WebSocket fastlane (keel_ws_fastlane_subscribe; with
 * --no-fastlane as plain subscribers whose process pushes each update
 * with keel_ws_send). Every 500 ms, at fixed times, one local broadcast
 * sends the update, stamped with the monotonic clock: on the fastlane the
 * broadcasting thread and the instance's lane writers (--writers, default
 * 1) write one shared frame to every socket. The clients are child
 * processes (forked before the node starts), each holding its share of
 * the connections in one epoll loop and recording, for every update, now
 * - stamp. Clients bind source addresses 127.<run>.1.1, 127.<run>.2.1,
 * ... with explicit ports, so that more connections than one address's
 * ephemeral ports fit and no port search is needed.
 *
 * Printed:
 *   keel ws_users <n> users            connections that got every update
 *   keel ws_push_p99_ms <v> ms         99th percentile of push latency
 *   keel ws_mem_per_conn <v> B         server RSS growth per idle
 *                                      connection (after the handshakes,
 *                                      before any update)
 *   keel ws_server_cpu_per_push <v> us server CPU time (all threads) over
 *                                      the update phase per update received
 *   keel ws_client_cpu_per_push <v> us the same for the client processes
 * The number of users is capped by the open-file limit, which is raised
 * first (up to fs.nr_open when permitted, else to the hard limit).
 * KEEL_BENCH_WS_TRACE=1 prints each broadcast's wall and CPU time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_ws.h"
#include "http/ws_frame.h"
#include "keel/clock.h"
#include "keel/http.h"
#include "keel/pubsub.h"

enum {
  NCHILD = 2,
  UPDATE_BYTES = 512,
  PERIOD_MS = 500,
  MAX_PENDING = 256,
  FD_SPARE = 200 /* the server's descriptors besides its connections */
};

/* ---- the clients (child processes) ------------------------------------ */

typedef struct client {
  int fd;
  int state; /* 0 handshake sent, 1 open */
  uint32_t got;
  size_t have;
  uint8_t buf[UPDATE_BYTES + 64];
} client;

/* Latency histogram: 10 us buckets up to 10 s. */
enum { HBUCKETS = 1000000 };

typedef struct child_report {
  uint32_t connected, complete;
  uint64_t samples;
  double p99_ms;
  double cpu_ms; /* the process's CPU time (user + system) so far */
} child_report;

static double cpu_ms(int who) {
  struct rusage ru;
  if (getrusage(who, &ru) != 0)
    return 0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* Source addresses: 127.<run>.<idx / 40000 + 1>.1, ports 10000 + idx %
 * 40000, bound explicitly (bind or connect picking a free port searches
 * the ports in use: quadratic over 20,000 connections). <run> changes
 * from run to run so that the TIME_WAIT sockets of the last run do not
 * collide; a port that is taken anyway falls back to a kernel choice. */
static uint32_t run_net;

static int client_bind(int fd, int idx, bool explicit_port) {
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr =
      htonl(0x7F000001u | run_net << 16 | (uint32_t)(idx / 40000 + 1) << 8);
  if (explicit_port) {
    src.sin_port = htons((uint16_t)(10000 + idx % 40000));
    return bind(fd, (struct sockaddr *)&src, sizeof src);
  }
  int one = 1;
  (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  return bind(fd, (struct sockaddr *)&src, sizeof src);
}

static int client_open(uint16_t port, int idx) {
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = -1;
  for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
      return -1;
    if (client_bind(fd, idx, attempt == 0) != 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0)
    return -1;
  static const char req[] = "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n";
  if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)sizeof req - 1 ||
      fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

typedef struct child_ctx {
  client *cl;
  uint32_t *hist;
  uint64_t samples;
  uint32_t open;
} child_ctx;

static int on_frame(const keel__ws_msg *m, void *arg) {
  child_ctx *x = arg;
  if (m->op != KEEL__WS_TEXT || m->len < 8)
    return 0;
  uint64_t stamp = strtoull((const char *)m->data, NULL, 10);
  uint64_t now = keel_monotonic_ns();
  uint64_t b = now > stamp ? (now - stamp) / 10000 : 0;
  x->hist[b < HBUCKETS ? b : HBUCKETS - 1]++;
  x->samples++;
  return 0;
}

/* Reads what a client has: the handshake answer, then frames. */
static void client_read(child_ctx *x, client *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
    if (n <= 0)
      return;
    c->have += (size_t)n;
    if (c->state == 0) {
      uint8_t *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
      if (end == NULL)
        continue;
      size_t hl = (size_t)(end - c->buf) + 4;
      if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0)
        return;
      c->state = 1;
      x->open++;
      memmove(c->buf, c->buf + hl, c->have - hl);
      c->have -= hl;
    }
    keel__ws_decoder d;
    keel__ws_decoder_init(&d, false, 0);
    uint16_t code;
    size_t before = x->samples;
    long used = keel__ws_decode(&d, c->buf, c->have, on_frame, x, &code, NULL);
    keel__ws_decoder_free(&d);
    if (used < 0)
      return;
    c->got += (uint32_t)(x->samples - before);
    memmove(c->buf, c->buf + used, c->have - (size_t)used);
    c->have -= (size_t)used;
  }
}

static double hist_p99(const uint32_t *hist, uint64_t n) {
  uint64_t want = n - n / 100, seen = 0;
  for (size_t b = 0; b < HBUCKETS; b++) {
    seen += hist[b];
    if (seen >= want && n > 0)
      return (double)(b + 1) * 0.01;
  }
  return -1;
}

/* The client process: connects nconn clients, reports, waits for the
 * updates, reports again. */
static void child_main(int in, int out, int first, int nconn, int updates) {
  uint16_t port;
  if (read(in, &port, sizeof port) != sizeof port)
    _exit(1);
  child_ctx x = {.cl = calloc((size_t)nconn, sizeof(client)),
                 .hist = calloc(HBUCKETS, sizeof(uint32_t))};
  int ep = epoll_create1(0);
  if (x.cl == NULL || x.hist == NULL || ep < 0)
    _exit(1);
  struct epoll_event evs[256];
  uint64_t t0 = keel_monotonic_ns();
  uint32_t opened = 0;
  for (int i = 0; i < nconn; i++) {
    /* At most MAX_PENDING handshakes in flight: a burst of connects
     * overflows the listen backlog and costs SYN retransmissions. */
    while (opened - x.open >= MAX_PENDING &&
           keel_monotonic_ns() - t0 < 60000000000u) {
      int n = epoll_wait(ep, evs, 256, 100);
      for (int k = 0; k < n; k++)
        client_read(&x, evs[k].data.ptr);
    }
    client *c = &x.cl[i];
    c->fd = client_open(port, first + i);
    if (c->fd < 0)
      continue;
    opened++;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  while (x.open < (uint32_t)nconn && keel_monotonic_ns() - t0 < 60000000000u) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++)
      client_read(&x, evs[i].data.ptr);
  }
  child_report r = {.connected = x.open, .cpu_ms = cpu_ms(RUSAGE_SELF)};
  char go;
  if (write(out, &r, sizeof r) != sizeof r || read(in, &go, 1) != 1)
    _exit(1);
  /* The window opens when the parent starts the updates, not when this
   * child finished connecting (the other may still be connecting). */
  uint64_t span = (uint64_t)(updates + 2) * PERIOD_MS * 1000000u;
  t0 = keel_monotonic_ns();
  uint64_t want = (uint64_t)updates * x.open;
  while (x.samples < want && keel_monotonic_ns() - t0 < span) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++)
      client_read(&x, evs[i].data.ptr);
  }
  for (int i = 0; i < nconn; i++)
    if (x.cl[i].state == 1 && x.cl[i].got >= (uint32_t)updates)
      r.complete++;
  r.samples = x.samples;
  r.p99_ms = hist_p99(x.hist, x.samples);
  r.cpu_ms = cpu_ms(RUSAGE_SELF) - r.cpu_ms;
  if (write(out, &r, sizeof r) != sizeof r)
    _exit(1);
  _exit(0);
}

/* ---- the server
 * ---------------------------------------------------------------- */

/* Every connection subscribes to one topic; an update is one local
 * broadcast, as the dashboard's refresh is. */
static keel_pubsub ps;
static keel_term topic;

static bool fastlane = true;

static int live_init(keel_ws *ws, const keel_http_request *req, void **st) {
  (void)req;
  (void)st;
  return fastlane ? keel_ws_fastlane_subscribe(ws, ps, topic, KEEL_WS_TEXT)
                  : keel_pubsub_subscribe(ps, topic, KEEL_NIL);
}

static int live_info(keel_ws *ws, keel_term msg, void *st) {
  (void)st;
  size_t n;
  const uint8_t *d = keel_binary_data(msg, &n);
  return d != NULL ? keel_ws_send(ws, KEEL_WS_TEXT, d, n) : 0;
}

static const keel_ws_handler live = {live_init, NULL, live_info, NULL};

/* One update: a stamp, then padding to UPDATE_BYTES (a diff's size). */
static void broadcast(void) {
  char text[UPDATE_BYTES];
  memset(text, ' ', sizeof text);
  int n = snprintf(text, sizeof text, "%llu",
                   (unsigned long long)keel_monotonic_ns());
  text[n] = ' ';
  keel_heap h;
  keel_heap_init(&h);
  keel_term bin = keel_binary(&h, text, sizeof text);
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  uint64_t t0 = keel_monotonic_ns();
  int64_t sent = keel_pubsub_local_broadcast(ps, topic, bin, NULL);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  if (getenv("KEEL_BENCH_WS_TRACE") != NULL)
    fprintf(stderr, "broadcast: %lld sent in %.1f ms (%.1f ms cpu)\n",
            (long long)sent, (double)(keel_monotonic_ns() - t0) / 1e6,
            (double)(c1.tv_sec - c0.tv_sec) * 1e3 +
                (double)(c1.tv_nsec - c0.tv_nsec) / 1e6);
  keel_heap_destroy(&h);
}

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return res * sysconf(_SC_PAGESIZE);
}

/* fs.nr_open: the most a hard RLIMIT_NOFILE may be raised to (root). */
static rlim_t nr_open(void) {
  FILE *f = fopen("/proc/sys/fs/nr_open", "r");
  unsigned long long v = 0;
  if (f != NULL) {
    if (fscanf(f, "%llu", &v) != 1)
      v = 0;
    fclose(f);
  }
  return (rlim_t)v;
}

/* Raises the open-file limit towards want: both limits up to fs.nr_open
 * when permitted (root), else the soft limit up to the hard one. Returns
 * the soft limit now in force; the client processes, forked later,
 * inherit it. */
static long raise_nofile(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 1024;
  rlim_t top = nr_open();
  if (want > rl.rlim_max && top > rl.rlim_max) {
    struct rlimit up = {want < top ? want : top, want < top ? want : top};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      rl = up;
  }
  if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < want) {
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  (void)getrlimit(RLIMIT_NOFILE, &rl);
  return (long)rl.rlim_cur;
}

int keel_bench_ws(int argc, char **argv) {
  int users = 20000, updates = 10;
  unsigned writers = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      users = 2000;
      updates = 4;
    } else if (strcmp(argv[i], "--writers") == 0 && i + 1 < argc) {
      writers = (unsigned)atoi(argv[++i]);
    } else if (strcmp(argv[i], "--no-fastlane") == 0) {
      fastlane = false;
    } else if (strcmp(argv[i], "--users") == 0 && i + 1 < argc) {
      users = atoi(argv[++i]);
    } else {
      fprintf(stderr,
              "usage: keel bench ws [--quick] [--users N] [--no-fastlane] "
              "[--writers N]\n");
      return 2;
    }
  }
  long cap = raise_nofile((rlim_t)users + FD_SPARE) - FD_SPARE;
  if (users > cap) {
    fprintf(stderr, "bench ws: %d users capped to %ld by the open-file limit\n",
            users, cap);
    users = (int)cap;
  }
  signal(SIGPIPE, SIG_IGN);
  run_net = 1 + (uint32_t)(getpid() ^ time(NULL)) % 250u;
  int to_child[NCHILD][2], from_child[NCHILD][2];
  pid_t kids[NCHILD];
  int per = users / NCHILD;
  for (int k = 0; k < NCHILD; k++) {
    if (pipe(to_child[k]) != 0 || pipe(from_child[k]) != 0)
      return 1;
    kids[k] = fork();
    if (kids[k] == 0)
      child_main(to_child[k][0], from_child[k][1], k * per, per, updates);
  }
  keel_node_opts no = {.schedulers = 2};
  keel_pubsub_opts pso = {.name = KEEL_NONE, .lane_writers = writers};
  keel_http_router *r = keel_http_router_new();
  keel_http_server *srv = NULL;
  keel_http_server_opts so = {.acceptors = 8};
  keel_heap th;
  keel_heap_init(&th);
  topic = keel_binary(&th, "updates", 7);
  if (keel_node_start(&no) != KEEL_OK || r == NULL ||
      keel_pubsub_start(&pso, &ps) != KEEL_OK ||
      keel_http_route_ws(r, "/live", &live, NULL) != KEEL_OK ||
      keel_http_server_start(&so, r, &srv) != KEEL_OK)
    return 1;
  uint16_t port = keel_http_server_port(srv);
  long rss0 = rss_bytes();
  for (int k = 0; k < NCHILD; k++)
    if (write(to_child[k][1], &port, sizeof port) != sizeof port)
      return 1;
  child_report rep[NCHILD];
  uint32_t connected = 0;
  for (int k = 0; k < NCHILD; k++) {
    if (read(from_child[k][0], &rep[k], sizeof rep[k]) != sizeof rep[k])
      return 1;
    connected += rep[k].connected;
  }
  long rss1 = rss_bytes();
  double cpu0 = cpu_ms(RUSAGE_SELF);
  for (int k = 0; k < NCHILD; k++)
    if (write(to_child[k][1], "g", 1) != 1)
      return 1;
  /* One update per period at fixed times (a broadcast that takes longer
   * than the period delays the next one, as a dashboard's ticker would). */
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (int u = 0; u < updates; u++) {
    next.tv_nsec += PERIOD_MS * 1000000L;
    next.tv_sec += next.tv_nsec / 1000000000L;
    next.tv_nsec %= 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) ==
           EINTR) {
    }
    broadcast();
  }
  uint32_t complete = 0;
  double p99 = 0, client_ms = 0;
  uint64_t pushes = 0;
  for (int k = 0; k < NCHILD; k++) {
    if (read(from_child[k][0], &rep[k], sizeof rep[k]) != sizeof rep[k])
      return 1;
    complete += rep[k].complete;
    pushes += rep[k].samples;
    client_ms += rep[k].cpu_ms;
    if (rep[k].p99_ms > p99)
      p99 = rep[k].p99_ms;
    waitpid(kids[k], NULL, 0);
  }
  double server_ms = cpu_ms(RUSAGE_SELF) - cpu0;
  keel_http_server_stop(srv);
  (void)keel_pubsub_stop(ps);
  keel_node_stop();
  keel_http_router_free(r);
  keel_heap_destroy(&th);
  printf("keel ws_users %u users (of %d asked, %u connected)\n", complete,
         users, connected);
  printf("keel ws_push_p99_ms %.2f ms\n", p99);
  printf("keel ws_mem_per_conn %.0f B\n",
         connected > 0 ? (double)(rss1 - rss0) / connected : 0.0);
  /* CPU per update received, over the update phase: what the load on the
   * machine does not change much (the latency above it does). */
  if (pushes > 0) {
    printf("keel ws_server_cpu_per_push %.2f us\n",
           server_ms * 1e3 / (double)pushes);
    printf("keel ws_client_cpu_per_push %.2f us\n",
           client_ms * 1e3 / (double)pushes);
  }
  return complete > 0 ? 0 : 1;
}
