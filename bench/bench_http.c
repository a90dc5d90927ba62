/*
 * bench_http.c - HTTP keep-alive throughput and tail latency, Keel's
 * server beside nginx serving the same bytes, both measured by wrk on
 * loopback in the same run.
 *
 * Keel: a node of 2 schedulers serving GET /json with a small JSON body
 * built per request. nginx: 2 worker processes answering the same path
 * with the same body from its config (`return 200 '...'`). wrk: 2 threads,
 * 64 keep-alive connections, --latency. Runs alternate Keel and nginx and
 * the medians are printed:
 *   keel http_req_per_s <v> req/s     nginx http_req_per_s <v> req/s
 *   ratio http_req_per_s <keel/nginx> (target >= 0.5)
 *   keel http_p99_ms <v> ms           nginx http_p99_ms <v> ms
 * Without wrk the suite fails; without nginx it prints "unavailable".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_http.h"
#include "keel/http.h"
#include "keel/json.h"

#define BODY "{\"message\":\"Hello, World!\"}"

enum { MAX_RUNS = 15 };

static int json_route(const keel_http_request *req, keel_http_response *resp,
                      void *arg) {
  (void)req;
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term k = keel_atom("message");
  keel_term v = keel_binary(&h, "Hello, World!", 13);
  keel_term m = keel_map_from(&h, 1, &k, &v);
  int rc = keel_http_respond_json(resp, 200, m);
  keel_heap_destroy(&h);
  return rc;
}

/* Runs wrk against port; fills req/s and p99 (ms). 0 or -1. */
static int run_wrk(uint16_t port, int secs, double *rps, double *p99) {
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "wrk -t2 -c64 -d%ds --latency http://127.0.0.1:%u/json 2>&1", secs,
           port);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return -1;
  char line[512];
  *rps = *p99 = -1;
  while (fgets(line, sizeof line, p) != NULL) {
    double v;
    char unit[8];
    if (sscanf(line, "Requests/sec: %lf", &v) == 1)
      *rps = v;
    else if (sscanf(line, " 99%% %lf%7s", &v, unit) == 2)
      *p99 = strcmp(unit, "us") == 0  ? v / 1000.0
             : strcmp(unit, "s") == 0 ? v * 1000.0
                                      : v;
  }
  int st = pclose(p);
  return st == 0 && *rps > 0 && *p99 >= 0 ? 0 : -1;
}

static int keel_once(int secs, double *rps, double *p99) {
  keel_node_opts no = {.schedulers = 2};
  if (keel_node_start(&no) != KEEL_OK)
    return -1;
  keel_http_router *r = keel_http_router_new();
  keel_http_server *srv = NULL;
  int rc = -1;
  if (r != NULL && keel_http_route(r, "GET", "/json", json_route, NULL) == 0 &&
      keel_http_server_start(NULL, r, &srv) == KEEL_OK)
    rc = run_wrk(keel_http_server_port(srv), secs, rps, p99);
  keel_http_server_stop(srv);
  keel_node_stop();
  keel_http_router_free(r);
  return rc;
}

/* A free loopback port (bound, read and released). */
static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static bool port_open(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

static const char *nginx_path(void) {
  static const char *const paths[] = {"/usr/sbin/nginx", "/usr/bin/nginx"};
  for (size_t i = 0; i < 2; i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

/* Writes an nginx config serving BODY at /json on port into dir. */
static int nginx_conf(const char *dir, uint16_t port) {
  char path[512];
  snprintf(path, sizeof path, "%s/nginx.conf", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return -1;
  fprintf(f,
          "daemon off;\nworker_processes 2;\npid %s/nginx.pid;\n"
          "error_log %s/error.log;\nevents { worker_connections 4096; }\n"
          "http {\n  access_log off;\n"
          "  client_body_temp_path %s; proxy_temp_path %s;\n"
          "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
          "  keepalive_requests 1000000;\n"
          "  server {\n    listen 127.0.0.1:%u;\n"
          "    location /json { default_type application/json;\n"
          "      return 200 '%s'; }\n  }\n}\n",
          dir, dir, dir, dir, dir, dir, dir, port, BODY);
  return fclose(f) == 0 ? 0 : -1;
}

static int nginx_once(const char *dir, int secs, double *rps, double *p99) {
  uint16_t port = free_port();
  const char *bin = nginx_path();
  if (port == 0 || bin == NULL || nginx_conf(dir, port) != 0)
    return -1;
  char conf[512];
  snprintf(conf, sizeof conf, "%s/nginx.conf", dir);
  pid_t pid = fork();
  if (pid == 0) {
    execl(bin, "nginx", "-e", "/dev/null", "-p", dir, "-c", conf, (char *)NULL);
    _exit(127);
  }
  if (pid < 0)
    return -1;
  int rc = -1;
  for (int i = 0; i < 500 && !port_open(port); i++) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL); /* waiting for a child process to listen */
  }
  if (port_open(port))
    rc = run_wrk(port, secs, rps, p99);
  kill(pid, SIGQUIT);
  waitpid(pid, NULL, 0);
  return rc;
}

static void print(const char *who, const char *metric, double v,
                  const char *unit) {
  if (v < 0)
    printf("%s %s unavailable\n", who, metric);
  else
    printf("%s %s %.2f %s\n", who, metric, v, unit);
}

int keel_bench_http(int argc, char **argv) {
  bool quick = false, no_nginx = false;
  int runs = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (strcmp(argv[i], "--no-nginx") == 0)
      no_nginx = true;
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: keel bench http [--quick] [--runs N] "
                      "[--no-nginx]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > MAX_RUNS)
    runs = 3;
  if (quick)
    runs = 1;
  int secs = quick ? 2 : 5;
  signal(SIGPIPE, SIG_IGN);
  char dir[] = "/tmp/keel-bench-nginx.XXXXXX";
  bool have_nginx = !no_nginx && nginx_path() != NULL && mkdtemp(dir) != NULL;
  double kr[MAX_RUNS], kp[MAX_RUNS], nr[MAX_RUNS], np[MAX_RUNS];
  int nk = 0, nn = 0;
  for (int i = 0; i < runs; i++) {
    if (keel_once(secs, &kr[nk], &kp[nk]) == 0)
      nk++;
    if (have_nginx && nginx_once(dir, secs, &nr[nn], &np[nn]) == 0)
      nn++;
  }
  if (have_nginx) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
      fprintf(stderr, "bench http: could not remove %s\n", dir);
  }
  if (nk == 0) {
    fprintf(stderr,
            "bench http: wrk against Keel failed (is wrk installed?)\n");
    return 1;
  }
  double k_rps = keel_bench_median(kr, nk), k_p99 = keel_bench_median(kp, nk);
  double n_rps = nn > 0 ? keel_bench_median(nr, nn) : -1;
  double n_p99 = nn > 0 ? keel_bench_median(np, nn) : -1;
  print("keel", "http_req_per_s", k_rps, "req/s");
  print("nginx", "http_req_per_s", n_rps, "req/s");
  if (n_rps > 0)
    printf("ratio http_req_per_s %.2f\n", k_rps / n_rps);
  print("keel", "http_p99_ms", k_p99, "ms");
  print("nginx", "http_p99_ms", n_p99, "ms");
  return 0;
}
