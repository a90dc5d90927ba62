/*
 * bench_dash.c - the live dashboard's server cost per refresh with many
 * open pages.
 *
 * The server is this process: a node of 2 schedulers serving the
 * dashboard's routes (keel_dashboard_web) on 127.0.0.1. The pages are a
 * child process (forked before the node starts) that opens N WebSockets
 * to /live, joins the same page on each, and counts the frames each
 * receives from one epoll loop. Once every page has its first snapshot,
 * the server ticks T times, one tick per 500 ms (keel_dashboard_sample and
 * keel_dashboard_web_tick, as the node's ticker does), and then waits until its
 * CPU use settles (whatever work the ticks queued is done). The server's CPU
 * time (all threads, getrusage) over that window divided by T is the CPU per
 * update. The same run measures both paths: shared renderers (one
 * rendering and one fastlane frame per page per tick) and per-session
 * rendering (each page's process renders, diffs and sends its own).
 *
 * Printed:
 *   keel dash_cpu_per_tick_shared <v> ms
 *   keel dash_cpu_per_tick_per_session <v> ms
 *   keel dash_frames_per_page_shared <v>       frames each page received
 *   keel dash_frames_per_page_per_session <v>  (the join's snapshot and
 *                                               the updates)
 *   ratio dash_cpu_per_tick <per_session / shared>
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_dash.h"
#include "keel/clock.h"
#include "keel/dashboard_web.h"
#include "keel/http.h"
#include "keel/pubsub.h"
#include "keel/runtime.h"

/* ---- the pages (child process) ---------------------------------------- */

typedef struct page_conn {
  int fd;
  uint8_t h[10];
  unsigned hn, hneed;
  uint64_t left;   /* payload bytes still to come */
  uint64_t frames; /* whole frames received */
} page_conn;

static bool write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t k = write(fd, c, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    c += k;
    n -= (size_t)k;
  }
  return true;
}

static bool read_all(int fd, void *p, size_t n) {
  char *c = p;
  while (n > 0) {
    ssize_t k = read(fd, c, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    c += k;
    n -= (size_t)k;
  }
  return true;
}

/* Counts the whole server frames in b[0..n). */
static void page_feed(page_conn *c, const uint8_t *b, size_t n) {
  while (n > 0) {
    if (c->left > 0) {
      size_t take = c->left < n ? (size_t)c->left : n;
      c->left -= take;
      b += take;
      n -= take;
      c->frames += c->left == 0;
      continue;
    }
    c->h[c->hn++] = *b++;
    n--;
    if (c->hn == 2) {
      unsigned l7 = c->h[1] & 0x7f;
      c->hneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
    }
    if (c->hn < 2 || c->hn < c->hneed)
      continue;
    uint64_t len = c->h[1] & 0x7f;
    if (len >= 126) {
      len = 0;
      for (unsigned i = 2; i < c->hneed; i++)
        len = len << 8 | c->h[i];
    }
    c->hn = 0;
    c->left = len;
    c->frames += len == 0;
  }
}

/* Connects one page and sends its join (a masked text frame). */
static int page_open(uint16_t port, const char *join) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const char *req = "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  char head[1024];
  size_t got = 0;
  if (!write_all(fd, req, strlen(req)))
    return -1;
  while (got < 4 || memcmp(head + got - 4, "\r\n\r\n", 4) != 0) {
    if (got == sizeof head || read(fd, head + got, 1) != 1)
      return -1;
    got++;
  }
  if (strncmp(head, "HTTP/1.1 101", 12) != 0)
    return -1;
  size_t n = strlen(join);
  uint8_t f[256] = {0x81, (uint8_t)(0x80 | n), 1, 2, 3, 4};
  for (size_t i = 0; i < n; i++)
    f[6 + i] = (uint8_t)join[i] ^ f[2 + i % 4];
  if (n > 125 || !write_all(fd, f, 6 + n))
    return -1;
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

/* The child: opens the pages, says 'R' on rep once each has a frame, and
 * on 'S' from ctl reports the frames received in all and exits. */
static int pages_main(int ctl, int rep, int users, const char *join) {
  uint16_t port;
  if (!read_all(ctl, &port, sizeof port))
    return 1;
  page_conn *cs = calloc((size_t)users, sizeof *cs);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
  for (int i = 0; i < users; i++) {
    cs[i].fd = page_open(port, join);
    if (cs[i].fd < 0)
      return 1;
    ev.data.u64 = (uint64_t)i;
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  static uint8_t buf[1 << 16];
  struct epoll_event evs[256];
  bool ready = false;
  for (;;) {
    int k = epoll_wait(ep, evs, 256, 100);
    for (int j = 0; j < k; j++) {
      if (evs[j].data.u64 == UINT64_MAX) {
        uint64_t total = 0;
        for (int i = 0; i < users; i++)
          total += cs[i].frames;
        return write_all(rep, &total, sizeof total) ? 0 : 1;
      }
      page_conn *c = &cs[evs[j].data.u64];
      ssize_t n;
      while ((n = read(c->fd, buf, sizeof buf)) > 0)
        page_feed(c, buf, (size_t)n);
    }
    if (!ready) {
      int i = 0;
      while (i < users && cs[i].frames > 0)
        i++;
      if (i == users) {
        ready = true;
        if (!write_all(rep, "R", 1))
          return 1;
      }
    }
  }
}

/* ---- the server --------------------------------------------------------- */

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void sleep_until(uint64_t ns) {
  for (uint64_t now; (now = keel_monotonic_ns()) < ns;) {
    struct timespec ts = {(time_t)((ns - now) / 1000000000u),
                          (long)((ns - now) % 1000000000u)};
    nanosleep(&ts, NULL);
  }
}

typedef struct dash_result {
  double cpu_per_tick_ms, frames_per_page;
} dash_result;

/* The server's side of one mode; the child has been forked. */
static int serve(int ctl, int rep, bool per_session, int users, int ticks,
                 dash_result *r) {
  keel_node_opts no = {.schedulers = 2};
  keel_pubsub ps;
  keel_dashboard *d;
  keel_dashboard_web *w = NULL;
  keel_http_server *srv = NULL;
  if (keel_node_start(&no) != KEEL_OK)
    return 1;
  keel_http_router *router = keel_http_router_new();
  keel_http_server_opts so = {.bind = "127.0.0.1"};
  int rc = keel_pubsub_start(NULL, &ps) == KEEL_OK &&
                   keel_dashboard_create(NULL, &d) == KEEL_OK
               ? 0
               : 1;
  keel_dashboard_web_opts wo = {
      .dashboard = d, .pubsub = ps, .per_session = per_session};
  if (rc != 0 || keel_dashboard_web_create(&wo, &w) != KEEL_OK ||
      keel_dashboard_web_mount(w, router) != KEEL_OK ||
      keel_http_server_start(&so, router, &srv) != KEEL_OK)
    return 1;
  uint16_t port = keel_http_server_port(srv);
  char ok = 0;
  struct pollfd pf = {rep, POLLIN, 0};
  if (!write_all(ctl, &port, sizeof port) || poll(&pf, 1, 120000) != 1 ||
      !read_all(rep, &ok, 1) || ok != 'R')
    return 1;
  double c0 = cpu_ms();
  uint64_t t0 = keel_monotonic_ns();
  for (int i = 0; i < ticks; i++) {
    sleep_until(t0 + (uint64_t)(i + 1) * 500000000u);
    (void)keel_dashboard_sample(d); /* as the node's ticker does */
    (void)keel_dashboard_web_tick(w);
  }
  /* Until the work the ticks queued is done: 200 ms using < 5 ms. */
  for (int i = 0; i < 300; i++) {
    double a = cpu_ms();
    sleep_until(keel_monotonic_ns() + 200000000u);
    if (cpu_ms() - a < 5.0)
      break;
  }
  r->cpu_per_tick_ms = (cpu_ms() - c0) / ticks;
  uint64_t frames = 0;
  if (!write_all(ctl, "S", 1) || !read_all(rep, &frames, sizeof frames))
    rc = 1;
  r->frames_per_page = (double)frames / users;
  keel_http_server_stop(srv);
  keel_dashboard_web_destroy(w);
  keel_dashboard_destroy(d);
  (void)keel_pubsub_stop(ps);
  (void)keel_node_stop();
  keel_http_router_free(router);
  return rc;
}

static int run_mode(bool per_session, int users, int ticks, const char *join,
                    dash_result *r) {
  int ctl[2], rep[2];
  if (pipe(ctl) != 0 || pipe(rep) != 0)
    return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(ctl[1]);
    close(rep[0]);
    _exit(pages_main(ctl[0], rep[1], users, join));
  }
  close(ctl[0]);
  close(rep[1]);
  int rc = pid < 0 ? 1 : serve(ctl[1], rep[0], per_session, users, ticks, r);
  close(ctl[1]);
  close(rep[0]);
  int st = 0;
  if (pid > 0) {
    if (rc != 0)
      kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
  }
  return rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
}

static void raise_files(int users) {
  struct rlimit rl;
  rlim_t want = (rlim_t)users + 256;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int keel_bench_dashboard(int argc, char **argv) {
  int users = 1000, ticks = 10;
  const char *page = "home";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--users") == 0 && i + 1 < argc)
      users = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ticks") == 0 && i + 1 < argc)
      ticks = atoi(argv[++i]);
    else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
      page = argv[++i];
    else {
      fprintf(stderr, "usage: keel bench dashboard [--users N] [--ticks T] "
                      "[--page home|processes]\n");
      return 2;
    }
  }
  const char *join = strcmp(page, "processes") == 0
                         ? "{\"join\":\"processes\",\"params\":{\"sort\":"
                           "\"memory\",\"dir\":\"desc\",\"limit\":50}}"
                         : "{\"join\":\"home\"}";
  if (users < 1 || ticks < 1 ||
      (strcmp(page, "home") != 0 && strcmp(page, "processes") != 0)) {
    fprintf(stderr, "keel bench dashboard: bad arguments\n");
    return 2;
  }
  raise_files(users);
  dash_result shared, per;
  if (run_mode(false, users, ticks, join, &shared) != 0 ||
      run_mode(true, users, ticks, join, &per) != 0) {
    fprintf(stderr, "keel bench dashboard: a run failed\n");
    return 1;
  }
  printf("keel dash_cpu_per_tick_shared %.2f ms\n", shared.cpu_per_tick_ms);
  printf("keel dash_cpu_per_tick_per_session %.2f ms\n", per.cpu_per_tick_ms);
  printf("keel dash_frames_per_page_shared %.1f\n", shared.frames_per_page);
  printf("keel dash_frames_per_page_per_session %.1f\n", per.frames_per_page);
  printf("ratio dash_cpu_per_tick %.1f\n",
         per.cpu_per_tick_ms / shared.cpu_per_tick_ms);
  return 0;
}
