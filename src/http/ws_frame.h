/*
 * ws_frame.h - the WebSocket frame codec of RFC 6455 (internal).
 *
 * A pure codec: bytes in, messages out, and frames encoded into a keel_buf.
 * It knows nothing of sockets or processes, so it is tested and fuzzed on
 * its own and both the server and the test clients use it.
 *
 * Why not wslay: its event context costs 9.4 KiB per connection before a
 * byte is read, more than the whole budget of an idle WebSocket connection
 * (8 KiB). This decoder is 40 bytes at rest and allocates only while a
 * fragmented message is being reassembled.
 *
 * Decoding checks everything RFC 6455 asks of an endpoint: the masking
 * rule for the side, zero reserved bits, known opcodes, control frames
 * unfragmented and at most 125 bytes, continuation order, minimal length
 * encodings are not required (the RFC says "MUST" for senders only), close
 * payloads (a valid code, UTF-8 reason), UTF-8 text across fragments, and
 * the message size limit, checked from the frame header before any payload
 * is buffered. A violation yields the close code to send (1002, 1007, 1009).
 */
#ifndef KEEL_HTTP_WS_FRAME_H
#define KEEL_HTTP_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"

enum {
  KEEL__WS_CONT = 0x0,
  KEEL__WS_TEXT = 0x1,
  KEEL__WS_BINARY = 0x2,
  KEEL__WS_CLOSE = 0x8,
  KEEL__WS_PING = 0x9,
  KEEL__WS_PONG = 0xA,
};

/* Close codes the decoder produces. */
enum {
  KEEL__WS_CLOSE_NORMAL = 1000,
  KEEL__WS_CLOSE_GOING_AWAY = 1001,
  KEEL__WS_CLOSE_PROTOCOL = 1002,
  KEEL__WS_CLOSE_NO_STATUS = 1005, /* never sent: an empty close frame */
  KEEL__WS_CLOSE_BAD_DATA = 1007,
  KEEL__WS_CLOSE_POLICY = 1008,
  KEEL__WS_CLOSE_TOO_BIG = 1009,
  KEEL__WS_CLOSE_ERROR = 1011,
};

/* Incremental UTF-8 validation state: 0 is "at a character boundary". */
typedef struct keel__utf8 {
  uint32_t need;  /* continuation bytes still expected */
  uint8_t lo, hi; /* allowed range of the next continuation byte */
} keel__utf8;

/* Feeds n bytes; false on the first byte that cannot be valid UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF included). */
bool keel__utf8_feed(keel__utf8 *u, const uint8_t *s, size_t n);

/* True if the state is at a character boundary (a complete text). */
static inline bool keel__utf8_done(const keel__utf8 *u) {
  return u->need == 0;
}

/* One complete message or control frame, as delivered by the decoder.
 * data points into the caller's input or the decoder's reassembly buffer:
 * valid only during the callback. close_code: for KEEL__WS_CLOSE, the code
 * received (KEEL__WS_CLOSE_NO_STATUS for an empty payload); data/len is
 * then the reason text. */
typedef struct keel__ws_msg {
  uint8_t op; /* TEXT, BINARY, CLOSE, PING or PONG */
  const uint8_t *data;
  size_t len;
  uint16_t close_code;
} keel__ws_msg;

/* Receives a message; a nonzero return stops decoding and is returned by
 * keel__ws_decode (the consumed count then covers this message's frame). */
typedef int (*keel__ws_msg_fn)(const keel__ws_msg *m, void *arg);

typedef struct keel__ws_decoder {
  size_t max_message; /* limit on a message's payload; 0: no limit */
  bool server;        /* frames must be masked (server side) or must not */
  uint8_t msg_op;     /* TEXT/BINARY being reassembled, 0 between */
  keel__utf8 utf8;    /* validation of the text being reassembled */
  keel_buf msg;       /* reassembled payload (fragmented messages only) */
} keel__ws_decoder;

/* Prepares a decoder; nothing is allocated until a fragmented message. */
void keel__ws_decoder_init(keel__ws_decoder *d, bool server,
                           size_t max_message);

/* Releases the reassembly buffer. The decoder may be re-initialised. */
void keel__ws_decoder_free(keel__ws_decoder *d);

/* Decodes the complete frames at the start of in[0..len) (payloads are
 * unmasked in place) and calls fn for each complete message and control
 * frame. Returns the number of bytes consumed (the caller keeps the rest
 * and calls again with more bytes appended), fn's nonzero result, or
 * KEEL_EDECODE with *close_code set to the code to close with.
 * *need, when not NULL, receives the total size of the next frame once its
 * header is complete (0 when even the header is incomplete), so the
 * caller can size its buffer. */
long keel__ws_decode(keel__ws_decoder *d, uint8_t *in, size_t len,
                     keel__ws_msg_fn fn, void *arg, uint16_t *close_code,
                     size_t *need);

/* Appends one frame: fin bit, opcode, payload, masked with `mask` when it
 * is not NULL (client side). KEEL_OK or KEEL_ENOMEM. */
int keel__ws_encode(keel_buf *out, uint8_t op, bool fin, const void *data,
                    size_t len, const uint8_t mask[4]);

/* Appends a close frame with `code` (none when 0) and a reason, truncated
 * to fit the 125-byte control payload. KEEL_OK or KEEL_ENOMEM. */
int keel__ws_encode_close(keel_buf *out, uint16_t code, const char *reason,
                          const uint8_t mask[4]);

/* True for a close code an endpoint may send (1000-1003, 1007-1014,
 * 3000-4999). */
bool keel__ws_close_code_valid(uint16_t code);

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key: base64 of the
 * SHA-1 of key + the RFC's GUID, NUL-terminated into out (29 bytes).
 * KEEL_OK, or KEEL_EINVAL for a key that is not 24 base64 characters. */
int keel__ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif /* KEEL_HTTP_WS_FRAME_H */
