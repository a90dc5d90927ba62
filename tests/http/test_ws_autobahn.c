/*
 * test_ws_autobahn.c - the cases of the Autobahn WebSocket test suite's
 * fuzzing client (sections 1-7, 9 and 10 of its catalogue) reproduced
 * against Keel's server on loopback: an echo route, and a client writing
 * raw frames (any RSV bits, opcodes, fragmentation, chopped into small TCP
 * writes) and checking what comes back, frame by frame. A case passes as
 * Autobahn's "OK"/"NON-STRICT" would: the expected echoes and pongs in
 * order, a protocol violation answered by a close with the expected code
 * and the connection closed, nothing else in between. Every case runs on
 * 1, 2 and 8 schedulers. docs/http.md lists the sections and what is not
 * reproduced (compression, timing).
 */
#include "http_test.h" /* first: it defines _GNU_SOURCE */

#include "keel/http.h"
#include "keel/runtime.h"

static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;

static int echo_msg(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                    size_t len, void *state) {
  (void)state;
  return keel_ws_send(ws, kind, data, len);
}

static const keel_ws_handler echo_h = {NULL, echo_msg, NULL, NULL};

static void start(unsigned nsched) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route_ws(router, "/", &echo_h, NULL), KEEL_OK);
  keel_http_server_opts o = {.max_ws_message = 16u << 20};
  cr_assert_eq(keel_http_server_start(&o, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
}

/* ---- raw frames ---------------------------------------------------------- */

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9 };
enum { OP_PONG = 10 };

/* Appends one masked client frame: byte 0 is fin | rsv | op as given. */
static void frame(keel_buf *b, bool fin, uint8_t rsv, uint8_t op,
                  const void *data, size_t len) {
  uint8_t h[14];
  size_t n = 0;
  h[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op);
  if (len < 126) {
    h[n++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    h[n++] = 0x80 | 126;
    h[n++] = (uint8_t)(len >> 8);
    h[n++] = (uint8_t)len;
  } else {
    h[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(h + n, CLI_MASK, 4);
  n += 4;
  cr_assert_eq(keel_buf_append(b, h, n), KEEL_OK);
  size_t at = b->len;
  cr_assert_eq(keel_buf_append(b, data, len), KEEL_OK);
  for (size_t i = 0; i < len; i++)
    b->data[at + i] ^= CLI_MASK[i & 3];
}

/* Sends b in writes of at most chop bytes (0: one write). */
static void send_chopped(int fd, keel_buf *b, size_t chop) {
  size_t step = chop == 0 ? b->len : chop;
  for (size_t at = 0; at < b->len; at += step)
    cli_send(fd, b->data + at, b->len - at < step ? b->len - at : step);
  b->len = 0;
}

/* A server frame of any size. */
typedef struct in_frame {
  uint8_t op;
  bool fin;
  uint8_t *data;
  size_t len;
} in_frame;

/* Reads one server frame; false when the connection closed first. */
static bool recv_frame(int fd, in_frame *f) {
  uint8_t h[8];
  if (cli_read(fd, h, 2) < 2)
    return false;
  cr_assert_eq(h[1] & 0x80, 0, "server frames are unmasked");
  cr_assert_eq(h[0] & 0x70, 0, "no RSV bits from the server");
  f->fin = (h[0] & 0x80) != 0;
  f->op = h[0] & 0x0F;
  uint64_t len = h[1] & 0x7F;
  if (len == 126) {
    cr_assert_eq(cli_read(fd, h, 2), 2);
    len = ((uint64_t)h[0] << 8) | h[1];
  } else if (len == 127) {
    cr_assert_eq(cli_read(fd, h, 8), 8);
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | h[i];
  }
  cr_assert_leq(len, 64u << 20);
  free(f->data);
  f->data = malloc(len + 1);
  cr_assert_not_null(f->data);
  f->len = cli_read(fd, f->data, (size_t)len);
  cr_assert_eq(f->len, len);
  return true;
}

/* Reads one whole server message (the server may fragment it). */
static bool recv_msg(int fd, in_frame *m) {
  in_frame f = {0};
  if (!recv_frame(fd, &f))
    return false;
  *m = f;
  while (!f.fin) {
    in_frame c = {0};
    cr_assert(recv_frame(fd, &c), "message cut");
    cr_assert_eq(c.op, OP_CONT);
    m->data = realloc(m->data, m->len + c.len + 1);
    memcpy(m->data + m->len, c.data, c.len);
    m->len += c.len;
    f.fin = c.fin;
    free(c.data);
  }
  return true;
}

/* ---- case steps ---------------------------------------------------------- */

typedef enum step_kind {
  S_SEND,  /* a frame: fin, rsv, op, payload */
  S_FLUSH, /* writes what was queued, in writes of `chop` bytes */
  S_RECV,  /* expects the message op with this payload */
  S_FAIL,  /* expects a close with `code`, then the connection closed */
  S_CLOSE, /* a clean close by the client: close 1000, echoed, closed */
  S_END
} step_kind;

/* Payloads: text (NULL, or a string of len bytes) or a generated run
 * (gen != 0: len bytes of a pattern, ASCII for text, all byte values for
 * binary). */
typedef struct step {
  step_kind k;
  bool fin;
  uint8_t rsv, op;
  const char *data;
  size_t len;
  char gen;      /* 't': ASCII pattern, 'b': binary pattern */
  size_t chop;   /* S_FLUSH: bytes per write */
  uint16_t code; /* S_FAIL: the close code; S_RECV of a close: its code */
} step;

static void fill(uint8_t *p, size_t len, char gen) {
  for (size_t i = 0; i < len; i++)
    p[i] = gen == 't' ? (uint8_t)('a' + i % 26) : (uint8_t)(i * 31 + 7);
}

/* The payload of a step (malloc'd, len+1 bytes). */
static uint8_t *payload(const step *s, size_t *len) {
  *len = s->data != NULL && s->gen == 0 ? (s->len ? s->len : strlen(s->data))
                                        : s->len;
  uint8_t *p = malloc(*len + 1);
  cr_assert_not_null(p);
  if (s->gen != 0)
    fill(p, *len, s->gen);
  else if (*len > 0)
    memcpy(p, s->data, *len);
  return p;
}

static void expect_msg(int fd, const step *s, const char *id) {
  in_frame m = {0};
  cr_assert(recv_msg(fd, &m), "case %s: closed, expected op %u", id, s->op);
  cr_assert_eq(m.op, s->op, "case %s: op %u, expected %u", id, m.op, s->op);
  size_t len;
  uint8_t *want = payload(s, &len);
  cr_assert_eq(m.len, len, "case %s: %zu bytes, expected %zu", id, m.len, len);
  cr_assert(len == 0 || memcmp(m.data, want, len) == 0, "case %s: payload", id);
  free(want);
  free(m.data);
}

/* A close frame's code, 0 when it has no payload. */
static uint16_t close_code(const in_frame *f) {
  return f->len >= 2 ? (uint16_t)((f->data[0] << 8) | f->data[1]) : 0;
}

static void expect_fail(int fd, uint16_t code, const char *id) {
  in_frame f = {0};
  cr_assert(recv_frame(fd, &f), "case %s: closed without a close frame", id);
  cr_assert_eq(f.op, OP_CLOSE, "case %s: op %u, expected a close", id, f.op);
  cr_assert_eq(close_code(&f), code, "case %s: code %u, expected %u", id,
               close_code(&f), code);
  free(f.data);
  cr_assert(cli_closed(fd), "case %s: still open after the close", id);
}

/* The client closes with 1000 (and a second frame, per `extra`); the
 * server answers with a close of code `want` (0: empty or 1000) and
 * closes the connection; no other frame comes first. */
static void expect_close(int fd, uint16_t want, const char *id) {
  in_frame f = {0};
  cr_assert(recv_frame(fd, &f), "case %s: closed without a close frame", id);
  cr_assert_eq(f.op, OP_CLOSE, "case %s: op %u before the close", id, f.op);
  uint16_t c = close_code(&f);
  if (want == 0)
    cr_assert(c == 0 || c == 1000, "case %s: code %u", id, c);
  else
    cr_assert_eq(c, want, "case %s: code %u, expected %u", id, c, want);
  free(f.data);
  cr_assert(cli_closed(fd), "case %s: still open after the close", id);
}

static void run_case(const char *id, const step *steps) {
  int fd = ws_connect(port, "/");
  keel_buf b;
  keel_buf_init(&b);
  for (const step *s = steps; s->k != S_END; s++) {
    size_t len;
    uint8_t *p;
    switch (s->k) {
    case S_SEND:
      p = payload(s, &len);
      frame(&b, s->fin, s->rsv, s->op, p, len);
      free(p);
      break;
    case S_FLUSH:
      send_chopped(fd, &b, s->chop);
      break;
    case S_RECV:
      send_chopped(fd, &b, 0);
      if (s->op == OP_CLOSE)
        expect_close(fd, s->code, id);
      else
        expect_msg(fd, s, id);
      break;
    case S_FAIL:
      send_chopped(fd, &b, 0);
      expect_fail(fd, s->code, id);
      break;
    case S_CLOSE:
      frame(&b, true, 0, OP_CLOSE, "\x03\xe8", 2);
      send_chopped(fd, &b, 0);
      expect_close(fd, 1000, id);
      break;
    default:
      break;
    }
  }
  keel_buf_free(&b);
  close(fd);
}

/* Step constructors. */
#define TX(op, str)                                                            \
  { S_SEND, true, 0, op, str, 0, 0, 0, 0 }
#define TXN(op, str, n)                                                        \
  { S_SEND, true, 0, op, str, n, 0, 0, 0 }
#define TXF(fin, op, str)                                                      \
  { S_SEND, fin, 0, op, str, 0, 0, 0, 0 }
#define TXR(rsv, op, str)                                                      \
  { S_SEND, true, rsv, op, str, 0, 0, 0, 0 }
#define TXG(fin, op, gen, n)                                                   \
  { S_SEND, fin, 0, op, NULL, n, gen, 0, 0 }
#define FLUSH(chop)                                                            \
  { S_FLUSH, false, 0, 0, NULL, 0, 0, chop, 0 }
#define RX(op, str)                                                            \
  { S_RECV, true, 0, op, str, 0, 0, 0, 0 }
#define RXN(op, str, n)                                                        \
  { S_RECV, true, 0, op, str, n, 0, 0, 0 }
#define RXG(op, gen, n)                                                        \
  { S_RECV, true, 0, op, NULL, n, gen, 0, 0 }
#define RX_CLOSE(code)                                                         \
  { S_RECV, true, 0, OP_CLOSE, NULL, 0, 0, 0, code }
#define FAIL(code)                                                             \
  { S_FAIL, false, 0, 0, NULL, 0, 0, 0, code }
#define CLOSE                                                                  \
  { S_CLOSE, false, 0, 0, NULL, 0, 0, 0, 0 }
#define END                                                                    \
  { S_END, false, 0, 0, NULL, 0, 0, 0, 0 }

typedef struct ab_case {
  const char *id;
  step steps[24];
} ab_case;

/* ---- 1: framing; 2: pings and pongs ------------------------------------- */

static const ab_case framing[] = {
    {"1.1.1", {TXG(true, OP_TEXT, 't', 0), RXG(OP_TEXT, 't', 0), CLOSE, END}},
    {"1.1.2",
     {TXG(true, OP_TEXT, 't', 125), RXG(OP_TEXT, 't', 125), CLOSE, END}},
    {"1.1.3",
     {TXG(true, OP_TEXT, 't', 126), RXG(OP_TEXT, 't', 126), CLOSE, END}},
    {"1.1.4",
     {TXG(true, OP_TEXT, 't', 127), RXG(OP_TEXT, 't', 127), CLOSE, END}},
    {"1.1.5",
     {TXG(true, OP_TEXT, 't', 128), RXG(OP_TEXT, 't', 128), CLOSE, END}},
    {"1.1.6",
     {TXG(true, OP_TEXT, 't', 65535), RXG(OP_TEXT, 't', 65535), CLOSE, END}},
    {"1.1.7",
     {TXG(true, OP_TEXT, 't', 65536), RXG(OP_TEXT, 't', 65536), CLOSE, END}},
    {"1.1.8",
     {TXG(true, OP_TEXT, 't', 65536), FLUSH(997), RXG(OP_TEXT, 't', 65536),
      CLOSE, END}},
    {"1.2.1", {TXG(true, OP_BIN, 'b', 0), RXG(OP_BIN, 'b', 0), CLOSE, END}},
    {"1.2.2", {TXG(true, OP_BIN, 'b', 125), RXG(OP_BIN, 'b', 125), CLOSE, END}},
    {"1.2.3", {TXG(true, OP_BIN, 'b', 126), RXG(OP_BIN, 'b', 126), CLOSE, END}},
    {"1.2.4", {TXG(true, OP_BIN, 'b', 127), RXG(OP_BIN, 'b', 127), CLOSE, END}},
    {"1.2.5", {TXG(true, OP_BIN, 'b', 128), RXG(OP_BIN, 'b', 128), CLOSE, END}},
    {"1.2.6",
     {TXG(true, OP_BIN, 'b', 65535), RXG(OP_BIN, 'b', 65535), CLOSE, END}},
    {"1.2.7",
     {TXG(true, OP_BIN, 'b', 65536), RXG(OP_BIN, 'b', 65536), CLOSE, END}},
    {"1.2.8",
     {TXG(true, OP_BIN, 'b', 65536), FLUSH(997), RXG(OP_BIN, 'b', 65536), CLOSE,
      END}},
    {"2.1", {TX(OP_PING, ""), RX(OP_PONG, ""), CLOSE, END}},
    {"2.2",
     {TX(OP_PING, "Hello, world!"), RX(OP_PONG, "Hello, world!"), CLOSE, END}},
    {"2.3",
     {TXN(OP_PING, "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8),
      RXN(OP_PONG, "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8), CLOSE, END}},
    {"2.4", {TXG(true, OP_PING, 'b', 125), RXG(OP_PONG, 'b', 125), CLOSE, END}},
    {"2.5", {TXG(true, OP_PING, 'b', 126), FAIL(1002), END}},
    {"2.6",
     {TXG(true, OP_PING, 'b', 125), FLUSH(1), RXG(OP_PONG, 'b', 125), CLOSE,
      END}},
    {"2.7", {TX(OP_PONG, ""), CLOSE, END}},
    {"2.8", {TX(OP_PONG, "unsolicited pong payload"), CLOSE, END}},
    {"2.9",
     {TX(OP_PONG, "unsolicited pong payload"), TX(OP_PING, "ping payload"),
      RX(OP_PONG, "ping payload"), CLOSE, END}},
    {"2.10",
     {TX(OP_PING, "p0"),
      TX(OP_PING, "p1"),
      TX(OP_PING, "p2"),
      TX(OP_PING, "p3"),
      TX(OP_PING, "p4"),
      TX(OP_PING, "p5"),
      TX(OP_PING, "p6"),
      TX(OP_PING, "p7"),
      TX(OP_PING, "p8"),
      TX(OP_PING, "p9"),
      RX(OP_PONG, "p0"),
      RX(OP_PONG, "p1"),
      RX(OP_PONG, "p2"),
      RX(OP_PONG, "p3"),
      RX(OP_PONG, "p4"),
      RX(OP_PONG, "p5"),
      RX(OP_PONG, "p6"),
      RX(OP_PONG, "p7"),
      RX(OP_PONG, "p8"),
      RX(OP_PONG, "p9"),
      CLOSE,
      END}},
    {"2.11",
     {TX(OP_PING, "p0"), TX(OP_PING, "p1"), TX(OP_PING, "p2"), FLUSH(1),
      RX(OP_PONG, "p0"), RX(OP_PONG, "p1"), RX(OP_PONG, "p2"), CLOSE, END}},
};

/* ---- 3: reserved bits; 4: opcodes ---------------------------------------- */

static const ab_case reserved[] = {
    {"3.1", {TXR(1, OP_TEXT, "Hello, world!"), FAIL(1002), END}},
    {"3.2",
     {TX(OP_TEXT, "small"), TXR(2, OP_TEXT, "small"), TX(OP_PING, ""),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
    {"3.3",
     {TX(OP_TEXT, "small"), FLUSH(0), RX(OP_TEXT, "small"),
      TXR(3, OP_TEXT, "small"), TX(OP_PING, ""), FAIL(1002), END}},
    {"3.4",
     {TX(OP_TEXT, "small"), TXR(4, OP_TEXT, "small"), TX(OP_PING, ""), FLUSH(1),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
    {"3.5", {TXR(5, OP_BIN, "\x00\xff\xfe"), FAIL(1002), END}},
    {"3.6", {TXR(6, OP_PING, "ping"), FAIL(1002), END}},
    {"3.7", {TXR(7, OP_CLOSE, "\x03\xe8"), FAIL(1002), END}},
    {"4.1.1", {TX(3, ""), FAIL(1002), END}},
    {"4.1.2", {TX(4, "reserved opcode payload"), FAIL(1002), END}},
    {"4.1.3",
     {TX(OP_TEXT, "small"), TX(5, ""), TX(OP_PING, ""), RX(OP_TEXT, "small"),
      FAIL(1002), END}},
    {"4.1.4",
     {TX(OP_TEXT, "small"), TX(6, "payload"), TX(OP_PING, ""),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
    {"4.1.5",
     {TX(OP_TEXT, "small"), TX(7, "payload"), TX(OP_PING, ""), FLUSH(1),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
    {"4.2.1", {TX(11, ""), FAIL(1002), END}},
    {"4.2.2", {TX(12, "reserved opcode payload"), FAIL(1002), END}},
    {"4.2.3",
     {TX(OP_TEXT, "small"), TX(13, ""), TX(OP_PING, ""), RX(OP_TEXT, "small"),
      FAIL(1002), END}},
    {"4.2.4",
     {TX(OP_TEXT, "small"), TX(14, "payload"), TX(OP_PING, ""),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
    {"4.2.5",
     {TX(OP_TEXT, "small"), TX(15, "payload"), TX(OP_PING, ""), FLUSH(1),
      RX(OP_TEXT, "small"), FAIL(1002), END}},
};

/* ---- 5: fragmentation ---------------------------------------------------- */

static const ab_case fragments[] = {
    {"5.1",
     {TXF(false, OP_PING, "frag1"), TXF(true, OP_CONT, "frag2"), FAIL(1002),
      END}},
    {"5.2",
     {TXF(false, OP_PONG, "frag1"), TXF(true, OP_CONT, "frag2"), FAIL(1002),
      END}},
    {"5.3",
     {TXF(false, OP_TEXT, "frag1"), TXF(true, OP_CONT, "frag2"),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.4",
     {TXF(false, OP_TEXT, "frag1"), FLUSH(0), TXF(true, OP_CONT, "frag2"),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.5",
     {TXF(false, OP_TEXT, "frag1"), TXF(true, OP_CONT, "frag2"), FLUSH(1),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.6",
     {TXF(false, OP_TEXT, "frag1"), TX(OP_PING, "ping payload"),
      TXF(true, OP_CONT, "frag2"), RX(OP_PONG, "ping payload"),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.7",
     {TXF(false, OP_TEXT, "frag1"), FLUSH(0), TX(OP_PING, "ping payload"),
      FLUSH(0), TXF(true, OP_CONT, "frag2"), RX(OP_PONG, "ping payload"),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.8",
     {TXF(false, OP_TEXT, "frag1"), TX(OP_PING, "ping payload"),
      TXF(true, OP_CONT, "frag2"), FLUSH(1), RX(OP_PONG, "ping payload"),
      RX(OP_TEXT, "frag1frag2"), CLOSE, END}},
    {"5.9",
     {TXF(true, OP_CONT, "non-continuation payload"), TX(OP_TEXT, "Hello"),
      FAIL(1002), END}},
    {"5.10",
     {TXF(true, OP_CONT, "non-continuation payload"), TX(OP_TEXT, "Hello"),
      FLUSH(1), FAIL(1002), END}},
    {"5.12",
     {TXF(false, OP_CONT, "non-continuation payload"), TX(OP_TEXT, "Hello"),
      FAIL(1002), END}},
    {"5.15",
     {TXF(false, OP_TEXT, "fragment1"), TXF(true, OP_CONT, "fragment2"),
      TXF(false, OP_CONT, "fragment3"), TXF(true, OP_TEXT, "fragment4"),
      RX(OP_TEXT, "fragment1fragment2"), FAIL(1002), END}},
    {"5.16",
     {TXF(false, OP_CONT, "fragment1"), TXF(true, OP_TEXT, "fragment2"),
      TXF(true, OP_CONT, "fragment3"), FAIL(1002), END}},
    {"5.18",
     {TXF(false, OP_TEXT, "fragment1"), TXF(true, OP_TEXT, "fragment2"),
      FAIL(1002), END}},
    {"5.19",
     {TXF(false, OP_TEXT, "f1"), TXF(false, OP_CONT, "f2"),
      TX(OP_PING, "pongme 1!"), TXF(false, OP_CONT, "f3"),
      TXF(false, OP_CONT, "f4"), TX(OP_PING, "pongme 2!"),
      TXF(true, OP_CONT, "f5"), RX(OP_PONG, "pongme 1!"),
      RX(OP_PONG, "pongme 2!"), RX(OP_TEXT, "f1f2f3f4f5"), CLOSE, END}},
    {"5.20",
     {TXF(false, OP_TEXT, "f1"), FLUSH(0), TXF(false, OP_CONT, "f2"),
      TX(OP_PING, "pongme 1!"), FLUSH(1), RX(OP_PONG, "pongme 1!"),
      TXF(false, OP_CONT, "f3"), TXF(true, OP_CONT, "f4"),
      RX(OP_TEXT, "f1f2f3f4"), CLOSE, END}},
};

/* ---- 6: UTF-8 ------------------------------------------------------------ */

#define HELLO_UTF8                                                             \
  "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"

static const ab_case utf8[] = {
    {"6.1.1", {TX(OP_TEXT, ""), RX(OP_TEXT, ""), CLOSE, END}},
    {"6.1.2",
     {TXF(false, OP_TEXT, ""), TXF(false, OP_CONT, ""), TXF(true, OP_CONT, ""),
      RX(OP_TEXT, ""), CLOSE, END}},
    {"6.1.3",
     {TXF(false, OP_TEXT, ""), TXF(false, OP_CONT, "middle"),
      TXF(true, OP_CONT, ""), RX(OP_TEXT, "middle"), CLOSE, END}},
    {"6.2.1", {TX(OP_TEXT, HELLO_UTF8), RX(OP_TEXT, HELLO_UTF8), CLOSE, END}},
    {"6.2.2", /* split between code points */
     {TXF(false, OP_TEXT, "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6"),
      TXF(true, OP_CONT, "\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"),
      RX(OP_TEXT, HELLO_UTF8), CLOSE, END}},
    {"6.2.3", /* split inside code points, one byte per frame */
     {TXF(false, OP_TEXT, "\xce"), TXF(false, OP_CONT, "\xba"),
      TXF(false, OP_CONT, "\xe1"), TXF(false, OP_CONT, "\xbd"),
      TXF(true, OP_CONT, "\xb9"), RX(OP_TEXT, "\xce\xba\xe1\xbd\xb9"), CLOSE,
      END}},
    {"6.2.4",
     {TXF(false, OP_TEXT, "\xf0\x9f"), TXF(false, OP_CONT, "\x98"),
      TXF(true, OP_CONT, "\x80"), RX(OP_TEXT, "\xf0\x9f\x98\x80"), CLOSE, END}},
    {"6.3.1",
     {TX(OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                  "edited"),
      FAIL(1007), END}},
    {"6.3.2",
     {TXF(false, OP_TEXT, "\xce\xba\xe1\xbd\xb9"),
      TXF(true, OP_CONT, "\xed\xa0\x80"), FAIL(1007), END}},
    {"6.4.1", /* fail fast: the rest of the message is never sent */
     {TXF(false, OP_TEXT, "\xce\xba\xe1\xbd\xb9\xf4\x90\x80\x80"), FAIL(1007),
      END}},
    {"6.4.2",
     {TXF(false, OP_TEXT, "\xce\xba\xe1\xbd\xb9\xf4"),
      TXF(false, OP_CONT, "\x90"), FAIL(1007), END}},
    {"6.4.3", {TXF(false, OP_TEXT, "\xc0\xaf"), FAIL(1007), END}},
    {"6.5.1", {TX(OP_TEXT, "\x7f"), RX(OP_TEXT, "\x7f"), CLOSE, END}},
    {"6.5.2", {TX(OP_TEXT, "\xc2\x80"), RX(OP_TEXT, "\xc2\x80"), CLOSE, END}},
    {"6.5.3", {TX(OP_TEXT, "\xdf\xbf"), RX(OP_TEXT, "\xdf\xbf"), CLOSE, END}},
    {"6.5.4",
     {TX(OP_TEXT, "\xe0\xa0\x80"), RX(OP_TEXT, "\xe0\xa0\x80"), CLOSE, END}},
    {"6.5.5",
     {TX(OP_TEXT, "\xef\xbf\xbf"), RX(OP_TEXT, "\xef\xbf\xbf"), CLOSE, END}},
    {"6.5.6",
     {TX(OP_TEXT, "\xed\x9f\xbf"), RX(OP_TEXT, "\xed\x9f\xbf"), CLOSE, END}},
    {"6.5.7",
     {TX(OP_TEXT, "\xee\x80\x80"), RX(OP_TEXT, "\xee\x80\x80"), CLOSE, END}},
    {"6.5.8",
     {TX(OP_TEXT, "\xf0\x90\x80\x80"), RX(OP_TEXT, "\xf0\x90\x80\x80"), CLOSE,
      END}},
    {"6.5.9",
     {TX(OP_TEXT, "\xf4\x8f\xbf\xbf"), RX(OP_TEXT, "\xf4\x8f\xbf\xbf"), CLOSE,
      END}},
    {"6.6.1", {TX(OP_TEXT, "\xf4\x90\x80\x80"), FAIL(1007), END}}, /* >10FFFF */
    {"6.6.2", {TX(OP_TEXT, "\x80"), FAIL(1007), END}}, /* lone continuation */
    {"6.6.3", {TX(OP_TEXT, "\xc0\x80"), FAIL(1007), END}},     /* overlong */
    {"6.6.4", {TX(OP_TEXT, "\xe0\x80\xaf"), FAIL(1007), END}}, /* overlong */
    {"6.6.5", {TX(OP_TEXT, "\xf0\x80\x80\xaf"), FAIL(1007), END}},
    {"6.6.6", {TX(OP_TEXT, "\xed\xa0\x80"), FAIL(1007), END}}, /* surrogate */
    {"6.6.7", {TX(OP_TEXT, "\xed\xbf\xbf"), FAIL(1007), END}}, /* surrogate */
    {"6.6.8", {TX(OP_TEXT, "\xce"), FAIL(1007), END}}, /* cut at the end */
    {"6.6.9", {TX(OP_TEXT, "\xf8\x88\x80\x80\x80"), FAIL(1007), END}},
    {"6.6.10", {TX(OP_TEXT, "\xfe"), FAIL(1007), END}},
    {"6.6.11", {TX(OP_TEXT, "\xff"), FAIL(1007), END}},
};

/* ---- 7: closing ---------------------------------------------------------- */

static const ab_case closing[] = {
    {"7.1.1",
     {TX(OP_TEXT, "Hello World!"), RX(OP_TEXT, "Hello World!"), CLOSE, END}},
    /* a second close, a ping and a text after the close: all ignored */
    {"7.1.2",
     {TXN(OP_CLOSE, "\x03\xe8", 2), TXN(OP_CLOSE, "\x03\xe8", 2),
      RX_CLOSE(1000), END}},
    {"7.1.3",
     {TXN(OP_CLOSE, "\x03\xe8", 2), TX(OP_PING, "Hello World!"), RX_CLOSE(1000),
      END}},
    {"7.1.4",
     {TXN(OP_CLOSE, "\x03\xe8", 2), TX(OP_TEXT, "Hello World!"), RX_CLOSE(1000),
      END}},
    {"7.1.5",
     {TXF(false, OP_TEXT, "fragment1"), TXN(OP_CLOSE, "\x03\xe8", 2),
      TXF(true, OP_CONT, "fragment2"), RX_CLOSE(1000), END}},
    {"7.1.6",
     {TXG(true, OP_TEXT, 't', 262144), TX(OP_TEXT, "Hello World!"),
      TXN(OP_CLOSE, "\x03\xe8", 2), TX(OP_PING, ""), RXG(OP_TEXT, 't', 262144),
      RX(OP_TEXT, "Hello World!"), RX_CLOSE(1000), END}},
    {"7.3.1", {TX(OP_CLOSE, ""), RX_CLOSE(0), END}},
    {"7.3.2", {TX(OP_CLOSE, "a"), FAIL(1002), END}},
    {"7.3.3", {TXN(OP_CLOSE, "\x03\xe8", 2), RX_CLOSE(1000), END}},
    {"7.3.4", {TX(OP_CLOSE, "\x03\xe8Hello World!"), RX_CLOSE(1000), END}},
    {"7.5.1",
     {TX(OP_CLOSE, "\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed"
                   "\xa0\x80\x65\x64\x69\x74\x65\x64"),
      FAIL(1007), END}},
};

/* 7.7.x: a close with a valid code is answered with that code (or 1000);
 * 7.9.x: an invalid code fails the connection with 1002. */
static const uint16_t valid_codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                       1010, 1011, 3000, 3999, 4000, 4999};
static const uint16_t invalid_codes[] = {0,    999,  1004, 1005, 1006, 1015,
                                         1016, 1100, 2000, 2999, 5000, 65535};

static void close_codes(void) {
  char id[16];
  for (size_t i = 0; i < sizeof valid_codes / sizeof *valid_codes; i++) {
    uint16_t c = valid_codes[i];
    char p[2] = {(char)(c >> 8), (char)c};
    snprintf(id, sizeof id, "7.7.%zu", i + 1);
    int fd = ws_connect(port, "/");
    keel_buf b;
    keel_buf_init(&b);
    frame(&b, true, 0, OP_CLOSE, p, 2);
    send_chopped(fd, &b, 0);
    in_frame f = {0};
    cr_assert(recv_frame(fd, &f), "case %s", id);
    cr_assert_eq(f.op, OP_CLOSE, "case %s", id);
    cr_assert(close_code(&f) == c || close_code(&f) == 1000, "case %s: %u", id,
              close_code(&f));
    cr_assert(cli_closed(fd), "case %s", id);
    free(f.data);
    keel_buf_free(&b);
    close(fd);
  }
  for (size_t i = 0; i < sizeof invalid_codes / sizeof *invalid_codes; i++) {
    uint16_t c = invalid_codes[i];
    char p[2] = {(char)(c >> 8), (char)c};
    snprintf(id, sizeof id, "7.9.%zu", i + 1);
    step s[] = {TXN(OP_CLOSE, p, 2), FAIL(1002), END};
    run_case(id, s);
  }
}

/* 7.3.5 / 7.3.6: a close with a reason of 123 bytes (the largest that
 * fits a control frame) is answered; 124 bytes is a protocol error. */
static void close_reasons(void) {
  char p[2 + 124];
  p[0] = 0x03;
  p[1] = (char)0xe8;
  memset(p + 2, 'a', 124);
  run_case("7.3.5", (step[]){TXN(OP_CLOSE, p, 2 + 123), RX_CLOSE(1000), END});
  run_case("7.3.6", (step[]){TXN(OP_CLOSE, p, 2 + 124), FAIL(1002), END});
}

/* ---- 9, 10: large messages, many fragments ------------------------------- */

static void limits(void) {
  static const size_t sizes[] = {65536, 262144, 1048576, 4194304};
  char id[16];
  for (size_t i = 0; i < 4; i++) {
    snprintf(id, sizeof id, "9.1.%zu", i + 1);
    run_case(id, (step[]){TXG(true, OP_TEXT, 't', sizes[i]),
                          RXG(OP_TEXT, 't', sizes[i]), CLOSE, END});
    snprintf(id, sizeof id, "9.2.%zu", i + 1);
    run_case(id, (step[]){TXG(true, OP_BIN, 'b', sizes[i]),
                          RXG(OP_BIN, 'b', sizes[i]), CLOSE, END});
  }
  /* 9.3/9.4: a 1 MiB message in fragments of 64 B .. 1 MiB (the pattern
   * restarts per fragment, so the expected text is built the same way) */
  static const size_t frags[] = {64, 256, 1024, 4096, 65536, 1048576};
  for (size_t i = 0; i < sizeof frags / sizeof *frags; i++) {
    size_t total = 1048576, fl = frags[i];
    int fd = ws_connect(port, "/");
    keel_buf b;
    keel_buf_init(&b);
    uint8_t *chunk = malloc(fl), *want = malloc(total);
    fill(chunk, fl, 't');
    for (size_t at = 0; at < total; at += fl) {
      frame(&b, at + fl == total, 0, at == 0 ? OP_TEXT : OP_CONT, chunk, fl);
      memcpy(want + at, chunk, fl);
      if (b.len > (1u << 20))
        send_chopped(fd, &b, 0);
    }
    send_chopped(fd, &b, 0);
    in_frame m = {0};
    cr_assert(recv_msg(fd, &m), "case 9.3.%zu", i + 1);
    cr_assert_eq(m.op, OP_TEXT);
    cr_assert_eq(m.len, total, "case 9.3.%zu", i + 1);
    cr_assert(memcmp(m.data, want, total) == 0, "case 9.3.%zu", i + 1);
    free(m.data);
    frame(&b, true, 0, OP_CLOSE, "\x03\xe8", 2);
    send_chopped(fd, &b, 0);
    expect_close(fd, 1000, "9.3");
    keel_buf_free(&b);
    free(chunk);
    free(want);
    close(fd);
  }
  /* 10.1.1: 65536 bytes in one message sent in 1300-byte TCP writes */
  run_case("10.1.1", (step[]){TXG(true, OP_TEXT, 't', 65536), FLUSH(1300),
                              RXG(OP_TEXT, 't', 65536), CLOSE, END});
}

static void run_all(const ab_case *cases, size_t n) {
  for (size_t i = 0; i < n; i++)
    run_case(cases[i].id, cases[i].steps);
}

#define RUN_ALL(cases) run_all(cases, sizeof cases / sizeof *cases)

static const unsigned scheds[] = {1, 2, 8};

Test(ws_autobahn, framing_and_pings) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    RUN_ALL(framing);
    stop();
  }
}

Test(ws_autobahn, reserved_bits_and_opcodes) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    RUN_ALL(reserved);
    stop();
  }
}

Test(ws_autobahn, fragmentation) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    RUN_ALL(fragments);
    stop();
  }
}

Test(ws_autobahn, utf8_handling) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    RUN_ALL(utf8);
    stop();
  }
}

Test(ws_autobahn, close_handling) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    RUN_ALL(closing);
    close_reasons();
    close_codes();
    stop();
  }
}

Test(ws_autobahn, large_messages_and_fragments) {
  for (size_t i = 0; i < 3; i++) {
    start(scheds[i]);
    limits();
    stop();
  }
}
