/*
 * http_test.h - a blocking loopback client for the server tests: plain
 * POSIX sockets (so the server is exercised by a client that shares no
 * code with it) plus a WebSocket client on the frame codec in client mode.
 * Every read is bounded by SO_RCVTIMEO; nothing sleeps.
 */
#ifndef KEEL_HTTP_TEST_H
#define KEEL_HTTP_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "http/ws_frame.h"
#include "keel/error.h"

#define CLIENT_TIMEOUT_S 20

static inline int cli_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct timeval tv = {CLIENT_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect");
  return fd;
}

static inline void cli_send(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    cr_assert_gt(n, 0, "send");
    p += n;
    len -= (size_t)n;
  }
}

static inline void cli_sends(int fd, const char *s) {
  cli_send(fd, s, strlen(s));
}

/* Reads until `want` bytes arrived or the peer closed; returns the count
 * (fails the test on a timeout). */
static inline size_t cli_read(int fd, void *buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    ssize_t n = recv(fd, (char *)buf + got, want - got, 0);
    cr_assert_geq(n, 0, "recv timed out or failed");
    if (n == 0)
      break;
    got += (size_t)n;
  }
  return got;
}

/* True when the peer has closed: the next read is EOF (or a reset). */
static inline bool cli_closed(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One HTTP response, read by Content-Length. */
typedef struct cli_resp {
  int status;
  char head[4096];
  char body[65536];
  size_t body_len;
} cli_resp;

/* Reads one response; false if the connection closed first. */
static inline bool cli_response(int fd, cli_resp *r) {
  size_t n = 0;
  memset(r, 0, sizeof *r);
  while (n < sizeof r->head - 1) {
    if (cli_read(fd, r->head + n, 1) == 0)
      return false;
    n++;
    if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  r->head[n] = '\0';
  cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1, "%s", r->head);
  const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
  size_t len = cl != NULL ? strtoul(cl + 18, NULL, 10) : 0;
  cr_assert_lt(len, sizeof r->body);
  r->body_len = cli_read(fd, r->body, len);
  cr_assert_eq(r->body_len, len);
  return true;
}

/* ---- WebSocket client
 * -------------------------------------------------------- */

static const uint8_t CLI_MASK[4] = {0xa1, 0x5b, 0x33, 0x0c};

static inline int ws_connect(uint16_t port, const char *path) {
  int fd = cli_connect(port);
  char req[512];
  snprintf(req, sizeof req,
           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: keep-alive, Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n",
           path);
  cli_sends(fd, req);
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
  cr_assert_not_null(
      strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  return fd;
}

static inline void ws_send(int fd, uint8_t op, bool fin, const void *data,
                           size_t len) {
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel__ws_encode(&b, op, fin, data, len, CLI_MASK), KEEL_OK);
  cli_send(fd, b.data, b.len);
  keel_buf_free(&b);
}

typedef struct ws_frame_in {
  uint8_t op;
  uint16_t code;
  size_t len;
  char data[70000];
} ws_frame_in;

/* Reads one unfragmented server frame; false when the connection closed. */
static inline bool ws_recv(int fd, ws_frame_in *f) {
  uint8_t h[10];
  if (cli_read(fd, h, 2) < 2)
    return false;
  cr_assert_eq(h[1] & 0x80, 0, "server frames are unmasked");
  cr_assert_eq(h[0] & 0x80, 0x80, "server frames are whole");
  f->op = h[0] & 0x0F;
  size_t len = h[1] & 0x7F;
  if (len == 126) {
    cr_assert_eq(cli_read(fd, h, 2), 2);
    len = ((size_t)h[0] << 8) | h[1];
  } else if (len == 127) {
    cr_assert_eq(cli_read(fd, h, 8), 8);
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | h[i];
  }
  cr_assert_lt(len, sizeof f->data);
  f->len = cli_read(fd, f->data, len);
  cr_assert_eq(f->len, len);
  f->code = 0;
  if (f->op == KEEL__WS_CLOSE && len >= 2)
    f->code = (uint16_t)(((uint8_t)f->data[0] << 8) | (uint8_t)f->data[1]);
  return true;
}

#endif /* KEEL_HTTP_TEST_H */
