/*
 * test_ws_frame.c - the WebSocket frame codec against RFC 6455's rules,
 * including its own examples (section 5.7) and a random round trip.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "http/ws_frame.h"
#include "keel/error.h"

typedef struct got {
  int n;
  uint8_t op[16];
  char data[16][256];
  size_t len[16];
  uint16_t code[16];
} got;

static int collect(const keel__ws_msg *m, void *arg) {
  got *g = arg;
  cr_assert_lt(g->n, 16);
  g->op[g->n] = m->op;
  g->len[g->n] = m->len;
  g->code[g->n] = m->close_code;
  if (m->len < sizeof g->data[0])
    memcpy(g->data[g->n], m->data, m->len);
  g->n++;
  return 0;
}

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Decodes bytes as a server; returns the result, *code the close code. */
static long server_decode(keel__ws_decoder *d, uint8_t *b, size_t n, got *g,
                          uint16_t *code) {
  *code = 0;
  return keel__ws_decode(d, b, n, collect, g, code, NULL);
}

Test(ws_frame, rfc_examples) {
  /* 5.7: a single-frame masked text message "Hello". */
  uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                     0x7f, 0x9f, 0x4d, 0x51, 0x58};
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 0);
  got g = {0};
  uint16_t code;
  cr_assert_eq(server_decode(&d, hello, sizeof hello, &g, &code),
               (long)sizeof hello);
  cr_assert_eq(g.n, 1);
  cr_assert_eq(g.op[0], KEEL__WS_TEXT);
  cr_assert_eq(g.len[0], 5);
  cr_assert_arr_eq(g.data[0], "Hello", 5);
  /* The unmasked form a server sends encodes to the RFC's bytes. */
  keel_buf b;
  keel_buf_init(&b);
  cr_assert_eq(keel__ws_encode(&b, KEEL__WS_TEXT, true, "Hello", 5, NULL),
               KEEL_OK);
  uint8_t want[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  cr_assert_eq(b.len, sizeof want);
  cr_assert_arr_eq(b.data, want, sizeof want);
  keel_buf_free(&b);
  keel__ws_decoder_free(&d);
}

Test(ws_frame, fragments_and_interleaved_ping) {
  keel_buf b;
  keel_buf_init(&b);
  keel__ws_encode(&b, KEEL__WS_TEXT, false, "Hel", 3, MASK);
  keel__ws_encode(&b, KEEL__WS_PING, true, "p", 1, MASK);
  keel__ws_encode(&b, KEEL__WS_CONT, true, "lo", 2, MASK);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 0);
  got g = {0};
  uint16_t code;
  /* Byte by byte: partial headers and payloads wait for more. */
  size_t off = 0;
  for (size_t end = 1; end <= b.len; end++) {
    long n = server_decode(&d, b.data + off, end - off, &g, &code);
    cr_assert_geq(n, 0);
    off += (size_t)n;
  }
  cr_assert_eq(off, b.len);
  cr_assert_eq(g.n, 2);
  cr_assert_eq(g.op[0], KEEL__WS_PING);
  cr_assert_eq(g.op[1], KEEL__WS_TEXT);
  cr_assert_eq(g.len[1], 5);
  cr_assert_arr_eq(g.data[1], "Hello", 5);
  cr_assert_eq(d.msg.data, NULL, "no buffer kept after the message");
  keel_buf_free(&b);
  keel__ws_decoder_free(&d);
}

/* Expects the bytes to be refused with `want` as close code. */
static void refused(const uint8_t *bytes, size_t n, bool server, size_t max,
                    uint16_t want) {
  uint8_t copy[512];
  cr_assert_leq(n, sizeof copy);
  memcpy(copy, bytes, n);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, server, max);
  got g = {0};
  uint16_t code = 0;
  long r = keel__ws_decode(&d, copy, n, collect, &g, &code, NULL);
  cr_assert_eq(r, KEEL_EDECODE, "accepted: %ld", r);
  cr_assert_eq(code, want, "code %u, want %u", code, want);
  keel__ws_decoder_free(&d);
}

static size_t frame(uint8_t *out, uint8_t b0, const void *pay, size_t n,
                    bool masked) {
  keel_buf b;
  keel_buf_init(&b);
  keel__ws_encode(&b, b0 & 0x0F, (b0 & 0x80) != 0, pay, n,
                  masked ? MASK : NULL);
  b.data[0] = b0; /* reserved bits too */
  memcpy(out, b.data, b.len);
  size_t len = b.len;
  keel_buf_free(&b);
  return len;
}

Test(ws_frame, protocol_errors) {
  uint8_t f[300];
  size_t n;
  n = frame(f, 0x81, "x", 1, false); /* a client must mask */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x81, "x", 1, true); /* a server must not */
  refused(f, n, false, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0xC1, "x", 1, true); /* RSV1 without an extension */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x83, "x", 1, true); /* reserved data opcode */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x8B, "x", 1, true); /* reserved control opcode */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x09, "x", 1, true); /* fragmented ping */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  char big[126];
  memset(big, 'a', sizeof big);
  n = frame(f, 0x89, big, sizeof big, true); /* control over 125 bytes */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x80, "x", 1, true); /* continuation of nothing */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  size_t n1 = frame(f, 0x01, "a", 1, true); /* new message mid-message */
  n = frame(f + n1, 0x81, "b", 1, true);
  refused(f, n1 + n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x88, "\x03", 1, true); /* one-byte close payload */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x88, "\x03\xed", 2, true); /* close code 1005 on the wire */
  refused(f, n, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  n = frame(f, 0x88, "\x03\xe8\xff", 3, true); /* reason not UTF-8 */
  refused(f, n, true, 0, KEEL__WS_CLOSE_BAD_DATA);
}

Test(ws_frame, utf8_rules) {
  uint8_t f[64];
  size_t n;
  const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff",
                       "\xe2\x82"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    n = frame(f, 0x81, bad[i], strlen(bad[i]), true);
    refused(f, n, true, 0, KEEL__WS_CLOSE_BAD_DATA);
  }
  /* Valid text split inside a character across two fragments. */
  keel_buf b;
  keel_buf_init(&b);
  const char *euro = "\xe2\x82\xac";
  keel__ws_encode(&b, KEEL__WS_TEXT, false, euro, 1, MASK);
  keel__ws_encode(&b, KEEL__WS_CONT, true, euro + 1, 2, MASK);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 0);
  got g = {0};
  uint16_t code;
  cr_assert_eq(server_decode(&d, b.data, b.len, &g, &code), (long)b.len);
  cr_assert_eq(g.n, 1);
  cr_assert_arr_eq(g.data[0], euro, 3);
  keel_buf_free(&b);
  keel__ws_decoder_free(&d);
  /* A fragment that cuts a character is fine; one that ends the message
   * mid-character is not. */
  keel_buf_init(&b);
  keel__ws_encode(&b, KEEL__WS_TEXT, true, euro, 2, MASK);
  refused(b.data, b.len, true, 0, KEEL__WS_CLOSE_BAD_DATA);
  keel_buf_free(&b);
}

Test(ws_frame, size_limit_from_header) {
  /* A header announcing 1 GiB is refused before any payload arrives. */
  uint8_t h[14] = {0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4};
  refused(h, sizeof h, true, 1 << 20, KEEL__WS_CLOSE_TOO_BIG);
  /* The 63-bit rule: the top bit of a 64-bit length must be clear. */
  uint8_t top[14] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
  refused(top, sizeof top, true, 0, KEEL__WS_CLOSE_PROTOCOL);
  /* Fragments add up against the limit. */
  keel_buf b;
  keel_buf_init(&b);
  char chunk[600];
  memset(chunk, 'z', sizeof chunk);
  keel__ws_encode(&b, KEEL__WS_BINARY, false, chunk, sizeof chunk, MASK);
  keel__ws_encode(&b, KEEL__WS_CONT, true, chunk, sizeof chunk, MASK);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 1000);
  got g = {0};
  uint16_t code = 0;
  cr_assert_eq(keel__ws_decode(&d, b.data, b.len, collect, &g, &code, NULL),
               KEEL_EDECODE);
  cr_assert_eq(code, KEEL__WS_CLOSE_TOO_BIG);
  keel_buf_free(&b);
  keel__ws_decoder_free(&d);
}

Test(ws_frame, close_frames) {
  keel_buf b;
  keel_buf_init(&b);
  keel__ws_encode_close(&b, 1000, "bye", MASK);
  keel__ws_encode(&b, KEEL__WS_CLOSE, true, NULL, 0, MASK);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 0);
  got g = {0};
  uint16_t code;
  cr_assert_eq(server_decode(&d, b.data, b.len, &g, &code), (long)b.len);
  cr_assert_eq(g.n, 2);
  cr_assert_eq(g.code[0], 1000);
  cr_assert_eq(g.len[0], 3);
  cr_assert_arr_eq(g.data[0], "bye", 3);
  cr_assert_eq(g.code[1], KEEL__WS_CLOSE_NO_STATUS);
  keel_buf_free(&b);
  keel__ws_decoder_free(&d);
  /* A long reason is cut to fit a control frame. */
  char reason[300];
  memset(reason, 'r', sizeof reason - 1);
  reason[sizeof reason - 1] = '\0';
  keel_buf_init(&b);
  keel__ws_encode_close(&b, 1001, reason, NULL);
  cr_assert_eq(b.len, 2 + 125);
  keel_buf_free(&b);
  cr_assert(keel__ws_close_code_valid(1000));
  cr_assert(keel__ws_close_code_valid(4999));
  cr_assert_not(keel__ws_close_code_valid(1004));
  cr_assert_not(keel__ws_close_code_valid(1006));
  cr_assert_not(keel__ws_close_code_valid(2999));
  cr_assert_not(keel__ws_close_code_valid(5000));
}

/* Every length encoding and random payloads survive a round trip, in
 * both directions, delivered whole whatever the split of the bytes. */
Test(ws_frame, random_round_trip) {
  srand(7);
  size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    uint8_t *pay = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
      pay[i] = (uint8_t)rand();
    for (int side = 0; side < 2; side++) {
      keel_buf b;
      keel_buf_init(&b);
      cr_assert_eq(keel__ws_encode(&b, KEEL__WS_BINARY, true, pay, n,
                                   side ? MASK : NULL),
                   KEEL_OK);
      keel__ws_decoder d;
      keel__ws_decoder_init(&d, side == 1, 0);
      size_t cut = n > 0 ? (size_t)rand() % b.len : 1, need = 0;
      got g = {0};
      uint16_t code;
      long r = keel__ws_decode(&d, b.data, cut, collect, &g, &code, &need);
      cr_assert_eq(r, 0);
      cr_assert_eq(g.n, 0);
      if (need != 0)
        cr_assert_eq(need, b.len, "need %zu of %zu", need, b.len);
      r = keel__ws_decode(&d, b.data, b.len, collect, &g, &code, NULL);
      cr_assert_eq(r, (long)b.len);
      cr_assert_eq(g.n, 1);
      cr_assert_eq(g.len[0], n);
      if (n < sizeof g.data[0])
        cr_assert_arr_eq(g.data[0], pay, n);
      keel_buf_free(&b);
      keel__ws_decoder_free(&d);
    }
    free(pay);
  }
}

Test(ws_frame, accept_key) {
  char out[29];
  /* RFC 6455 section 1.3's example. */
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  cr_assert_eq(keel__ws_accept_key(key, strlen(key), out), KEEL_OK);
  cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  cr_assert_eq(keel__ws_accept_key("short", 5, out), KEEL_EINVAL);
  cr_assert_eq(keel__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ!=", 24, out),
               KEEL_EINVAL);
  cr_assert_eq(keel__ws_accept_key("dGhlIHNhbXB*ZSBub25jZQ==", 24, out),
               KEEL_EINVAL);
}

/* A reference UTF-8 check written from RFC 3629's table, code point by
 * code point (no state machine). */
static bool ref_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t c = s[i], cp;
    size_t len;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n)
      return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

/* The validator agrees with the reference on random texts, fed whole and
 * cut at every split point, including long ASCII runs. */
Test(ws_frame, utf8_matches_reference) {
  srand(11);
  uint8_t s[64];
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)rand() % sizeof s;
    for (size_t i = 0; i < n; i++) {
      int r = rand() % 10;
      s[i] = r < 6   ? (uint8_t)(rand() % 0x80)
             : r < 8 ? (uint8_t)(0x80 + rand() % 0x40)
                     : (uint8_t)(0xC0 + rand() % 0x40);
    }
    if (round % 3 == 0 && n >= 4) { /* a real character somewhere */
      static const char *const ok[] = {"\xc3\xa9", "\xe2\x82\xac",
                                       "\xf0\x9f\x98\x80", "\xed\x9f\xbf"};
      const char *c = ok[rand() % 4];
      memcpy(s + rand() % (n - strlen(c) + 1), c, strlen(c));
    }
    bool want = ref_utf8(s, n);
    keel__utf8 u = {0, 0x80, 0xBF};
    bool whole = keel__utf8_feed(&u, s, n) && keel__utf8_done(&u);
    cr_assert_eq(whole, want, "round %d, %zu bytes", round, n);
    size_t cut = n > 0 ? (size_t)rand() % n : 0;
    keel__utf8 v = {0, 0x80, 0xBF};
    bool split = keel__utf8_feed(&v, s, cut) &&
                 keel__utf8_feed(&v, s + cut, n - cut) && keel__utf8_done(&v);
    cr_assert_eq(split, want, "round %d cut at %zu", round, cut);
  }
}
