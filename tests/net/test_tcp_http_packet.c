/*
 * test_tcp_http_packet.c - {packet, http | http_bin | httph | httph_bin}:
 * keel_net_decode_http against erlang:decode_packet's terms (request and
 * status lines, every Uri form, HTTP/0.9, known and unknown header names,
 * folded values, http_eoh, http_error lines, more bytes needed, the
 * packet size); a socket reading a request head cut into pieces
 * (keel_net_recv_http), the body in raw mode, a pipelined request after
 * it, raw recv of the packets, and active once/N with {http, S, Packet}.
 * 1, 2 and 8 schedulers.
 */
#include <stdint.h>
#include <stdlib.h>

#include "net/net_test.h"

/* ---- the decoder ------------------------------------------------------------
 */

typedef struct dcase {
  keel_net_packet type;
  const char *in;
  const char *want; /* Erlang text of the term */
  size_t used;
} dcase;

static const dcase cases[] = {
    {KEEL_NET_PACKET_HTTP, "GET /a?b HTTP/1.1\r\nHost: x\r\n",
     "{http_request,'GET',{abs_path,\"/a?b\"},{1,1}}", 19},
    {KEEL_NET_PACKET_HTTP_BIN, "POST http://h.example:8080/p HTTP/1.0\r\n",
     "{http_request,'POST',{absoluteURI,http,<<\"h.example\">>,8080,<<\"/"
     "p\">>},"
     "{1,0}}",
     39},
    {KEEL_NET_PACKET_HTTP_BIN, "PATCH https://[::1]:443 HTTP/1.1\r\n",
     "{http_request,<<\"PATCH\">>,{absoluteURI,https,<<\"[::1]\">>,443,"
     "<<\"/\">>},{1,1}}",
     34},
    {KEEL_NET_PACKET_HTTP_BIN, "GET HTTP://h:x/ HTTP/1.1\r\n",
     "{http_request,'GET',{absoluteURI,http,<<\"h\">>,undefined,<<\"/\">>},"
     "{1,1}}",
     26},
    {KEEL_NET_PACKET_HTTP, "OPTIONS * HTTP/1.1\r\n",
     "{http_request,'OPTIONS','*',{1,1}}", 20},
    {KEEL_NET_PACKET_HTTP, "GET /old\r\n",
     "{http_request,'GET',{abs_path,\"/old\"},{0,9}}", 10},
    {KEEL_NET_PACKET_HTTP_BIN, "CONNECT h:443 HTTP/1.1\r\n",
     "{http_request,<<\"CONNECT\">>,{scheme,<<\"h\">>,<<\"443\">>},{1,1}}", 24},
    {KEEL_NET_PACKET_HTTP_BIN, "get  foo   HTTP/1.1\n",
     "{http_request,<<\"get\">>,<<\"foo\">>,{1,1}}", 20},
    {KEEL_NET_PACKET_HTTP, "HTTP/1.1 200 OK\r\n",
     "{http_response,{1,1},200,\"OK\"}", 17},
    {KEEL_NET_PACKET_HTTP_BIN, "HTTP/1.0 404 Not Found\r\n",
     "{http_response,{1,0},404,<<\"Not Found\">>}", 24},
    {KEEL_NET_PACKET_HTTP, "HTTP/1.1 204\r\n", "{http_response,{1,1},204,[]}",
     14},
    {KEEL_NET_PACKET_HTTPH_BIN, "content-length:  42\r\nX",
     "{http_header,38,'Content-Length',<<\"content-length\">>,<<\"42\">>}", 21},
    {KEEL_NET_PACKET_HTTPH, "HOST:x\r\n\r\n",
     "{http_header,14,'Host',\"HOST\",\"x\"}", 8},
    {KEEL_NET_PACKET_HTTPH, "x-my-HEADER: v\r\n\r\n",
     "{http_header,0,\"X-My-Header\",\"x-my-HEADER\",\"v\"}", 16},
    {KEEL_NET_PACKET_HTTPH_BIN, "X-Long: a\r\n b\r\n\r\n",
     "{http_header,0,<<\"X-Long\">>,<<\"X-Long\">>,<<\"a\\r\\n b\">>}", 15},
    {KEEL_NET_PACKET_HTTPH, "\r\nGET", "http_eoh", 2},
    {KEEL_NET_PACKET_HTTPH_BIN, "\n", "http_eoh", 1},
    {KEEL_NET_PACKET_HTTP, "garbage\r\n", "{http_error,\"garbage\\r\\n\"}", 9},
    {KEEL_NET_PACKET_HTTP, "\r\n", "{http_error,\"\\r\\n\"}", 2},
    {KEEL_NET_PACKET_HTTPH_BIN, "no colon here\r\n\r\n",
     "{http_error,<<\"no colon here\\r\\n\">>}", 15},
    {KEEL_NET_PACKET_HTTPH_BIN, ": empty\r\n\r\n",
     "{http_error,<<\": empty\\r\\n\">>}", 9},
    {KEEL_NET_PACKET_HTTP_BIN, "GET / HTTP/1.1234567890\r\n",
     "{http_error,<<\"GET / HTTP/1.1234567890\\r\\n\">>}", 25},
    {KEEL_NET_PACKET_HTTP_BIN, "GET / HTTP/1.1 x\r\n",
     "{http_error,<<\"GET / HTTP/1.1 x\\r\\n\">>}", 18},
    {KEEL_NET_PACKET_HTTP_BIN, "HTTP/1.1 200OK\r\n",
     "{http_error,<<\"HTTP/1.1 200OK\\r\\n\">>}", 16},
    {KEEL_NET_PACKET_HTTP_BIN, "HTTP/x 200 OK\r\n",
     "{http_error,<<\"HTTP/x 200 OK\\r\\n\">>}", 15},
};

Test(tcp_http_packet, decode_like_decode_packet) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const dcase *c = &cases[i];
    keel_heap h;
    keel_heap_init(&h);
    keel_term got = KEEL_NONE, want = KEEL_NONE;
    size_t used = 0;
    int rc =
        keel_net_decode_http(&h, c->type, c->in, strlen(c->in), 0, &used, &got);
    cr_assert_eq(rc, KEEL_OK, "case %zu: %d", i, rc);
    cr_assert_eq(keel_parse(&h, c->want, strlen(c->want), &want, NULL), KEEL_OK,
                 "case %zu: bad expectation", i);
    char *txt = keel_print_alloc(got, NULL);
    cr_assert(keel_eq_exact(got, want), "case %zu: got %s", i, txt);
    cr_assert_eq(used, c->used, "case %zu: used %zu", i, used);
    free(txt);
    keel_heap_destroy(&h);
  }
}

Test(tcp_http_packet, decode_needs_more_or_refuses) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  size_t used;
  /* No line end yet; a header that may still be folded. */
  cr_assert_eq(keel_net_decode_http(&h, KEEL_NET_PACKET_HTTP, "GET / HTTP/1.1",
                                    14, 0, &used, &t),
               KEEL_ETRUNC);
  cr_assert_eq(keel_net_decode_http(&h, KEEL_NET_PACKET_HTTPH, "Host: x\r\n", 9,
                                    0, &used, &t),
               KEEL_ETRUNC);
  cr_assert_eq(
      keel_net_decode_http(&h, KEEL_NET_PACKET_HTTP, "", 0, 0, &used, &t),
      KEEL_ETRUNC);
  /* Over the packet size, with or without the line end. */
  cr_assert_eq(keel_net_decode_http(&h, KEEL_NET_PACKET_HTTP,
                                    "GET /abcdefgh HTTP/1.1\r\n", 24, 8, &used,
                                    &t),
               KEEL_ELIMIT);
  cr_assert_eq(keel_net_decode_http(&h, KEEL_NET_PACKET_HTTP, "GET /abcdefgh",
                                    13, 8, &used, &t),
               KEEL_ELIMIT);
  cr_assert_eq(keel_net_decode_http(&h, KEEL_NET_PACKET_HTTPH,
                                    "A: b\r\n c\r\n d\r\n", 15, 8, &used, &t),
               KEEL_ELIMIT);
  /* The empty line too (found by the packet fuzzer). */
  cr_assert_eq(
      keel_net_decode_http(&h, KEEL_NET_PACKET_HTTPH, "\r\n", 2, 1, &used, &t),
      KEEL_ELIMIT);
  cr_assert_eq(
      keel_net_decode_http(&h, KEEL_NET_PACKET_HTTPH, "\r\n", 2, 2, &used, &t),
      KEEL_OK);
  cr_assert_eq(t, keel_atom("http_eoh"));
  /* Misuse. */
  cr_assert_eq(
      keel_net_decode_http(&h, KEEL_NET_PACKET_LINE, "x\n", 2, 0, &used, &t),
      KEEL_EINVAL);
  cr_assert_eq(
      keel_net_decode_http(NULL, KEEL_NET_PACKET_HTTP, "x\n", 2, 0, &used, &t),
      KEEL_EINVAL);
  cr_assert_eq(
      keel_net_decode_http(&h, KEEL_NET_PACKET_HTTP, NULL, 2, 0, &used, &t),
      KEEL_EINVAL);
  keel_heap_destroy(&h);
}

/* ---- sockets ---------------------------------------------------------------
 */

static keel_socket listen_s;
static uint16_t port;

static bool is(keel_term t, const char *text) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term want;
  bool ok = keel_parse(&h, text, strlen(text), &want, NULL) == KEEL_OK &&
            keel_eq_exact(t, want);
  keel_heap_destroy(&h);
  return ok;
}

/* The next packet of a passive http socket is `text`. */
static bool next_is(keel_socket c, const char *text) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  int rc = keel_net_recv_http(c, &h, LONG_MS, &t);
  bool ok = rc == KEEL_OK && is(t, text);
  if (!ok) {
    char *txt = rc == KEEL_OK ? keel_print_alloc(t, NULL) : NULL;
    fprintf(stderr, "want %s, got %s (rc %d)\n", text, txt != NULL ? txt : "-",
            rc);
    free(txt);
  }
  keel_heap_destroy(&h);
  return ok;
}

/* The next {http, S, Packet} is `text`. */
static bool msg_is_packet(keel_proc *self, keel_socket c, const char *text) {
  keel_term m;
  keel_socket from;
  return recv_tag(self, "http", LONG_MS, &m) == KEEL_OK &&
         msg_is(m, "http", &from) && from == c && keel_tuple_arity(m) == 3 &&
         is(keel_tuple_get(m, 2), text);
}

static void http_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = KEEL_SOCKET_NONE;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  char buf[64];
  /* Not an http socket yet. */
  keel_heap h;
  keel_heap_init(&h);
  keel_term t;
  CHECK(keel_net_recv_http(c, &h, 0, &t) == KEEL_EINVAL);
  CHECK(keel_net_recv_http(c, NULL, 0, &t) == KEEL_EINVAL);
  keel_heap_destroy(&h);
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_HTTP_BIN, 0) == KEEL_OK);
  CHECK(keel_net_send(c, "1", 1) == KEEL_OK);
  CHECK(next_is(c, "{http_request,'POST',{abs_path,<<\"/up\">>},{1,1}}"));
  CHECK(next_is(c, "{http_header,14,'Host',<<\"Host\">>,<<\"x\">>}"));
  CHECK(next_is(c, "{http_header,0,<<\"X-Fold\">>,<<\"x-fold\">>,"
                   "<<\"a\\r\\n\\tb\">>}"));
  CHECK(next_is(c, "{http_header,38,'Content-Length',<<\"Content-Length\">>,"
                   "<<\"5\">>}"));
  CHECK(next_is(c, "http_eoh"));
  /* The body in raw mode: the bytes after the head stayed. */
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_RAW, 0) == KEEL_OK);
  int64_t n = 0;
  for (int64_t got = 0; got < 5 && n >= 0; got += n) /* "hel", then "lo" */
    n = keel_net_recv(c, buf + got, (size_t)(5 - got), LONG_MS);
  CHECKV(n > 0 && memcmp(buf, "hello", 5) == 0, n);
  /* The pipelined request, its lines as raw packets first. */
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_HTTP, 0) == KEEL_OK);
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 16 && memcmp(buf, "GET /x HTTP/1.0\n", 16) == 0, n);
  CHECK(next_is(c, "{http_error,\"bad header\\n\"}"));
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 1 && buf[0] == '\n', n); /* http_eoh, raw */
  /* Active: a response head as {http, S, Packet}, strings as lists. */
  CHECK(keel_net_send(c, "2", 1) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
  CHECK(msg_is_packet(self, c, "{http_response,{1,1},200,\"OK\"}"));
  keel_term m;
  CHECK(recv_tag(self, "http", 200, &m) == KEEL_ETIMEDOUT); /* once */
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 2) == KEEL_OK);
  CHECK(msg_is_packet(self, c,
                      "{http_header,42,'Content-Type',"
                      "\"content-type\",\"text/plain\"}"));
  CHECK(msg_is_packet(self, c, "http_eoh"));
  CHECK(recv_tag(self, "tcp_passive", LONG_MS, &m) == KEEL_OK);
  /* A line over the packet size. */
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_HTTPH, 16) == KEEL_OK);
  CHECK(keel_net_send(c, "3", 1) == KEEL_OK);
  keel_heap_init(&h);
  int rc = keel_net_recv_http(c, &h, LONG_MS, &t);
  CHECKV(rc == KEEL_ELIMIT, rc);
  keel_heap_destroy(&h);
  keel_net_close(c);
  mark_done();
}

static void http_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = KEEL_SOCKET_NONE;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &c) == KEEL_OK);
  char buf[8];
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  static const char *pieces[] = {"POST /u",
                                 "p HTTP/1.1\r\nHo",
                                 "st: x\r\nx-fold: a\r\n",
                                 "\tb\r\nContent-Length: 5\r",
                                 "\n\r\nhel",
                                 "loGET /x HTTP/1.0\nbad header\n\n"};
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
    CHECK(keel_net_send(c, pieces[i], strlen(pieces[i])) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  CHECK(keel_net_send(c, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
                      45) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  CHECK(keel_net_send(c, "X-Very-Long-Name: value\r\n", 25) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

Test(tcp_http_packet, socket_passive_active_body) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_listen_opts lo = {.port = 0};
    cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
    port = port_of(listen_s);
    spawn_f(http_server, NULL);
    spawn_f(http_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}
