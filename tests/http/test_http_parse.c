/*
 * test_http_parse.c - the request reader, the router and the response
 * writer, without sockets: bytes in, requests and responses out.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "http/http_internal.h"
#include "http/http_parse.h"
#include "keel/error.h"

static keel__http_reader rd;

static void setup(void) {
  keel__http_reader_init(&rd, 1024, 64);
}

static void teardown(void) {
  keel__http_reader_free(&rd);
}

TestSuite(http_parse, .init = setup, .fini = teardown);

static bool hdr_is(const keel_http_request *r, const char *name,
                   const char *want) {
  size_t len;
  const char *v = keel_http_header_get(r, name, &len);
  return v != NULL && len == strlen(want) && memcmp(v, want, len) == 0;
}

Test(http_parse, pipelined_requests_one_at_a_time) {
  const char *in = "GET /a?x=1&y HTTP/1.1\r\nHost: h\r\nX-Long: 12345\r\n\r\n"
                   "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                   "GET /c HTTP/1.0\r\n\r\n";
  size_t len = strlen(in), off = 0;
  keel_http_request req;
  off += keel__http_reader_feed(&rd, in, len);
  cr_assert(rd.complete);
  cr_assert_eq(keel__http_reader_request(&rd, &req), KEEL_OK);
  cr_assert_str_eq(req.method, "GET");
  cr_assert_eq(req.path_len, 2);
  cr_assert_arr_eq(req.path, "/a", 2);
  size_t ql;
  const char *q = keel_http_query_get(&req, "x", &ql);
  cr_assert(q != NULL && ql == 1 && q[0] == '1');
  q = keel_http_query_get(&req, "y", &ql);
  cr_assert(q != NULL && ql == 0);
  cr_assert_null(keel_http_query_get(&req, "z", NULL));
  cr_assert(hdr_is(&req, "host", "h"));
  cr_assert(hdr_is(&req, "X-LONG", "12345"));
  cr_assert(req.keep_alive);
  keel__http_reader_next(&rd, false);

  off += keel__http_reader_feed(&rd, in + off, len - off);
  cr_assert(rd.complete);
  cr_assert_eq(keel__http_reader_request(&rd, &req), KEEL_OK);
  cr_assert_str_eq(req.method, "POST");
  cr_assert_eq(req.body_len, 5);
  cr_assert_arr_eq(req.body, "hello", 5);
  keel__http_reader_next(&rd, true);

  off += keel__http_reader_feed(&rd, in + off, len - off);
  cr_assert(rd.complete);
  cr_assert_eq(off, len);
  cr_assert_eq(keel__http_reader_request(&rd, &req), KEEL_OK);
  cr_assert_not(req.keep_alive, "HTTP/1.0 without keep-alive closes");
  cr_assert_eq(req.version_minor, 0);
}

Test(http_parse, byte_by_byte_with_chunked_body) {
  const char *in = "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
  size_t len = strlen(in);
  for (size_t i = 0; i < len; i++) {
    cr_assert_not(rd.complete, "complete early at %zu", i);
    cr_assert_eq(keel__http_reader_feed(&rd, in + i, 1), 1);
    cr_assert_eq(rd.status, 0);
  }
  cr_assert(rd.complete);
  keel_http_request req;
  cr_assert_eq(keel__http_reader_request(&rd, &req), KEEL_OK);
  cr_assert_eq(req.body_len, 7);
  cr_assert_arr_eq(req.body, "abcdefg", 7);
}

static int feed_status(const char *in) {
  keel__http_reader_next(&rd, true);
  http_parser_init(&rd.parser, HTTP_REQUEST);
  rd.parser.data = &rd;
  rd.status = 0;
  (void)keel__http_reader_feed(&rd, in, strlen(in));
  return rd.status;
}

Test(http_parse, limits_and_malformed) {
  char big[2048];
  snprintf(big, sizeof big, "GET /%01500d HTTP/1.1\r\n\r\n", 0);
  cr_assert_eq(feed_status(big), 414);
  snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: %01500d\r\n\r\n", 0);
  cr_assert_eq(feed_status(big), 431);
  cr_assert_eq(feed_status("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n"),
               413, "refused from the header, before the body");
  cr_assert_eq(feed_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
                           "\r\n\r\n41\r\n"
                           "0123456789012345678901234567890123456789"
                           "01234567890123456789012345\r\n"),
               413, "a chunked body over the limit");
  cr_assert_eq(feed_status("GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
  cr_assert_eq(feed_status("\x01\x02garbage\r\n\r\n"), 400);
  cr_assert_eq(feed_status("GET / HTTP/1.1\r\nContent-Length: 1\r\n"
                           "Content-Length: 2\r\n\r\n"),
               400, "two lengths: request smuggling");
  cr_assert_eq(feed_status("GET / HTTP/1.1\r\n\r\n"), 0);
  cr_assert(rd.complete);
}

Test(http_parse, upgrade_leaves_the_rest) {
  const char *in = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\n\r\n\x81\x80rest";
  size_t len = strlen(in);
  size_t n = keel__http_reader_feed(&rd, in, len);
  cr_assert(rd.complete);
  cr_assert(rd.upgrade);
  cr_assert_eq(len - n, 6, "the frame bytes are not consumed");
  keel_http_request req;
  cr_assert_eq(keel__http_reader_request(&rd, &req), KEEL_OK);
  cr_assert_not(req.keep_alive);
}

/* ---- router ----------------------------------------------------------- */

static int h_a(const keel_http_request *req, keel_http_response *resp,
               void *arg) {
  (void)req;
  (void)resp;
  (void)arg;
  return 0;
}

static int h_b(const keel_http_request *req, keel_http_response *resp,
               void *arg) {
  (void)req;
  (void)resp;
  (void)arg;
  return 1;
}

Test(http_router, matching) {
  keel_http_router *r = keel_http_router_new();
  cr_assert_not_null(r);
  static const keel_ws_handler wsh = {0};
  cr_assert_eq(keel_http_route(r, "GET", "/", h_a, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(r, "GET", "/api/:page", h_a, "api"), KEEL_OK);
  cr_assert_eq(keel_http_route(r, "POST", "/api/:page/:id", h_b, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route(r, "*", "/static/*path", h_b, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route_ws(r, "/live", &wsh, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(r, "GET", "no-slash", h_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_http_route(r, "GET", "/*a/b", h_a, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_http_route(r, "GET", "/:", h_a, NULL), KEEL_EINVAL);

  keel__http_match m;
  cr_assert_eq(keel__http_route_find(r, "GET", "/", 1, &m), 200);
  cr_assert_eq(m.fn, h_a);
  cr_assert_eq(m.nparams, 0);
  cr_assert_eq(keel__http_route_find(r, "HEAD", "/api/home", 9, &m), 200);
  cr_assert_eq(m.arg, "api");
  cr_assert_eq(m.nparams, 1);
  cr_assert_str_eq(m.params[0].name, "page");
  cr_assert_eq(m.params[0].value_len, 4);
  cr_assert_arr_eq(m.params[0].value, "home", 4);
  cr_assert_eq(keel__http_route_find(r, "DELETE", "/api/home", 9, &m), 405);
  cr_assert_eq(keel__http_route_find(r, "POST", "/api/x/7", 8, &m), 200);
  cr_assert_eq(m.fn, h_b);
  cr_assert_eq(m.nparams, 2);
  cr_assert_arr_eq(m.params[1].value, "7", 1);
  cr_assert_eq(keel__http_route_find(r, "GET", "/api//", 6, &m), 404);
  cr_assert_eq(keel__http_route_find(r, "GET", "/api", 4, &m), 404);
  cr_assert_eq(keel__http_route_find(r, "PUT", "/static/css/a.css", 17, &m),
               200);
  cr_assert_eq(m.params[0].value_len, 9);
  cr_assert_arr_eq(m.params[0].value, "css/a.css", 9);
  cr_assert_eq(keel__http_route_find(r, "GET", "/live", 5, &m), 200);
  cr_assert_eq(m.ws, &wsh);
  cr_assert_null(m.fn);
  cr_assert_eq(keel__http_route_find(r, "GET", "/nope", 5, &m), 404);
  keel_http_router_free(r);
}

/* ---- responses
 * --------------------------------------------------------------- */

Test(http_response, writing) {
  keel_http_response resp;
  memset(&resp, 0, sizeof resp);
  cr_assert_eq(keel_http_respond(&resp, 99, NULL, NULL, 0), KEEL_EINVAL);
  cr_assert_eq(keel_http_set_header(&resp, "X-A", "1\r\nInjected: yes"),
               KEEL_EINVAL);
  cr_assert_eq(keel_http_set_header(&resp, "X-A", "1"), KEEL_OK);
  cr_assert_eq(keel_http_respond(&resp, 201, "text/plain", "body", 4), KEEL_OK);
  keel_buf out;
  keel_buf_init(&out);
  cr_assert_eq(keel__http_response_write(&resp, &out, true, false, "keel"),
               KEEL_OK);
  keel_buf_putc(&out, 0);
  const char *s = (const char *)out.data;
  cr_assert(strncmp(s, "HTTP/1.1 201 Created\r\n", 22) == 0, "%s", s);
  cr_assert_not_null(strstr(s, "\r\nX-A: 1\r\n"));
  cr_assert_not_null(strstr(s, "\r\nContent-Length: 4\r\n"));
  cr_assert_not_null(strstr(s, "\r\nDate: "));
  cr_assert_null(strstr(s, "Connection: close"));
  cr_assert(strcmp(s + strlen(s) - 8, "\r\n\r\nbody") == 0, "%s", s);
  out.len = 0;
  cr_assert_eq(keel__http_response_write(&resp, &out, false, true, "keel"),
               KEEL_OK);
  keel_buf_putc(&out, 0);
  s = (const char *)out.data;
  cr_assert_not_null(strstr(s, "Connection: close\r\n\r\n"));
  cr_assert_not_null(strstr(s, "Content-Length: 4\r\n"), "HEAD keeps it");
  cr_assert_null(strstr(s, "body"), "HEAD has no body");
  keel__http_response_reset(&resp, true);
  keel_buf_free(&out);
}
