/*
 * ws_frame.c - the WebSocket frame codec (see ws_frame.h).
 */
#include "http/ws_frame.h"

#include <openssl/evp.h>
#include <string.h>

#include "keel/error.h"

/* ---- UTF-8 -------------------------------------------------------------- */

bool keel__utf8_feed(keel__utf8 *u, const uint8_t *s, size_t n) {
  uint32_t need = u->need;
  uint8_t lo = u->lo, hi = u->hi;
  for (size_t i = 0; i < n; i++) {
    if (need == 0) { /* ASCII runs, eight bytes at a time */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w & 0x8080808080808080ull) != 0)
          break;
        i += 8;
      }
      if (i == n)
        break;
    }
    uint8_t c = s[i];
    if (need != 0) {
      if (c < lo || c > hi)
        return false;
      need--;
      lo = 0x80;
      hi = 0xBF;
      continue;
    }
    if (c < 0x80)
      continue;
    lo = 0x80;
    hi = 0xBF;
    if (c < 0xC2) {
      return false; /* a stray continuation byte or an overlong lead */
    } else if (c < 0xE0) {
      need = 1;
    } else if (c < 0xF0) {
      need = 2;
      lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
      hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
    } else if (c < 0xF5) {
      need = 3;
      lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
      hi = c == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
    } else {
      return false;
    }
  }
  u->need = need;
  u->lo = lo;
  u->hi = hi;
  return true;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
  keel__utf8 u = {0, 0x80, 0xBF};
  return keel__utf8_feed(&u, s, n) && keel__utf8_done(&u);
}

/* ---- decoding ------------------------------------------------------------ */

void keel__ws_decoder_init(keel__ws_decoder *d, bool server,
                           size_t max_message) {
  memset(d, 0, sizeof *d);
  d->server = server;
  d->max_message = max_message;
  keel_buf_init(&d->msg);
}

void keel__ws_decoder_free(keel__ws_decoder *d) {
  keel_buf_free(&d->msg);
  d->msg_op = 0;
}

bool keel__ws_close_code_valid(uint16_t code) {
  if (code >= 1000 && code <= 1003)
    return true;
  if (code >= 1007 && code <= 1014)
    return true;
  return code >= 3000 && code <= 4999;
}

static uint64_t be_read(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

static void unmask(uint8_t *p, size_t n, const uint8_t key[4]) {
  size_t i = 0;
  uint32_t k;
  memcpy(&k, key, 4);
  for (; i + 4 <= n; i += 4) {
    uint32_t w;
    memcpy(&w, p + i, 4);
    w ^= k;
    memcpy(p + i, &w, 4);
  }
  for (; i < n; i++)
    p[i] ^= key[i & 3];
}

/* A parsed frame header. */
typedef struct ws_hdr {
  bool fin, masked;
  uint8_t op, rsv;
  uint64_t plen;
  size_t hlen;
} ws_hdr;

/* Reads a header from p[0..avail): 1 if complete, 0 if more bytes are
 * needed. */
static int hdr_read(const uint8_t *p, size_t avail, ws_hdr *h) {
  if (avail < 2)
    return 0;
  h->fin = (p[0] & 0x80) != 0;
  h->rsv = p[0] & 0x70;
  h->op = p[0] & 0x0F;
  h->masked = (p[1] & 0x80) != 0;
  h->plen = p[1] & 0x7F;
  h->hlen = 2;
  if (h->plen == 126) {
    if (avail < 4)
      return 0;
    h->plen = be_read(p + 2, 2);
    h->hlen = 4;
  } else if (h->plen == 127) {
    if (avail < 10)
      return 0;
    h->plen = be_read(p + 2, 8);
    h->hlen = 10;
  }
  if (h->masked)
    h->hlen += 4;
  return 1;
}

/* The close code a header violates, 0 when it is acceptable here. */
static uint16_t hdr_check(const keel__ws_decoder *d, const ws_hdr *h) {
  if (h->rsv != 0 || h->masked != d->server || (h->plen >> 63) != 0)
    return KEEL__WS_CLOSE_PROTOCOL;
  if (h->op >= 0x8) {
    if (h->op > KEEL__WS_PONG || !h->fin || h->plen > 125)
      return KEEL__WS_CLOSE_PROTOCOL;
    return 0;
  }
  if (h->op > KEEL__WS_BINARY)
    return KEEL__WS_CLOSE_PROTOCOL;
  if ((h->op == KEEL__WS_CONT) != (d->msg_op != 0))
    return KEEL__WS_CLOSE_PROTOCOL; /* continuation order */
  uint64_t total = h->plen + (h->op == KEEL__WS_CONT ? d->msg.len : 0);
  if (d->max_message != 0 && total > d->max_message)
    return KEEL__WS_CLOSE_TOO_BIG;
  return 0;
}

static int control(const uint8_t *pay, size_t n, uint8_t op, keel__ws_msg_fn fn,
                   void *arg, uint16_t *close_code) {
  keel__ws_msg m = {.op = op, .data = pay, .len = n};
  if (op == KEEL__WS_CLOSE) {
    m.close_code = KEEL__WS_CLOSE_NO_STATUS;
    if (n == 1) {
      *close_code = KEEL__WS_CLOSE_PROTOCOL;
      return KEEL_EDECODE;
    }
    if (n >= 2) {
      m.close_code = (uint16_t)be_read(pay, 2);
      m.data = pay + 2;
      m.len = n - 2;
      if (!keel__ws_close_code_valid(m.close_code)) {
        *close_code = KEEL__WS_CLOSE_PROTOCOL;
        return KEEL_EDECODE;
      }
      if (!utf8_valid(m.data, m.len)) {
        *close_code = KEEL__WS_CLOSE_BAD_DATA;
        return KEEL_EDECODE;
      }
    }
  }
  return fn(&m, arg);
}

/* A data frame: delivered at once when it is a whole message, otherwise
 * reassembled. */
static int data(keel__ws_decoder *d, const ws_hdr *h, const uint8_t *pay,
                keel__ws_msg_fn fn, void *arg, uint16_t *close_code) {
  size_t n = (size_t)h->plen;
  if (h->op != KEEL__WS_CONT) {
    d->msg_op = h->op;
    d->utf8 = (keel__utf8){0, 0x80, 0xBF};
  }
  bool text = d->msg_op == KEEL__WS_TEXT;
  if (text && (!keel__utf8_feed(&d->utf8, pay, n) ||
               (h->fin && !keel__utf8_done(&d->utf8)))) {
    *close_code = KEEL__WS_CLOSE_BAD_DATA;
    return KEEL_EDECODE;
  }
  if (h->fin && h->op != KEEL__WS_CONT) { /* a whole message: no copy */
    d->msg_op = 0;
    keel__ws_msg m = {.op = h->op, .data = pay, .len = n};
    return fn(&m, arg);
  }
  if (keel_buf_append(&d->msg, pay, n) != KEEL_OK) {
    *close_code = KEEL__WS_CLOSE_TOO_BIG;
    return KEEL_ENOMEM;
  }
  if (!h->fin)
    return 0;
  keel__ws_msg m = {.op = d->msg_op, .data = d->msg.data, .len = d->msg.len};
  d->msg_op = 0;
  int rc = fn(&m, arg);
  keel_buf_free(&d->msg); /* an idle connection holds no buffer */
  return rc;
}

long keel__ws_decode(keel__ws_decoder *d, uint8_t *in, size_t len,
                     keel__ws_msg_fn fn, void *arg, uint16_t *close_code,
                     size_t *need) {
  size_t off = 0;
  if (need != NULL)
    *need = 0;
  for (;;) {
    ws_hdr h;
    uint8_t *p = in + off;
    size_t avail = len - off;
    if (!hdr_read(p, avail, &h))
      return (long)off;
    uint16_t bad = hdr_check(d, &h);
    if (bad != 0) {
      *close_code = bad;
      return KEEL_EDECODE;
    }
    if (need != NULL)
      *need = h.hlen + (size_t)h.plen;
    if (avail < h.hlen || avail - h.hlen < h.plen)
      return (long)off;
    uint8_t *pay = p + h.hlen;
    if (h.masked)
      unmask(pay, (size_t)h.plen, pay - 4);
    off += h.hlen + (size_t)h.plen;
    int rc = h.op >= 0x8
                 ? control(pay, (size_t)h.plen, h.op, fn, arg, close_code)
                 : data(d, &h, pay, fn, arg, close_code);
    if (rc != 0)
      return rc;
    if (need != NULL)
      *need = 0;
  }
}

/* ---- encoding ------------------------------------------------------------ */

int keel__ws_encode(keel_buf *out, uint8_t op, bool fin, const void *data,
                    size_t len, const uint8_t mask[4]) {
  uint8_t h[14];
  size_t hl = 2;
  h[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0F));
  h[1] = mask != NULL ? 0x80 : 0;
  if (len < 126) {
    h[1] |= (uint8_t)len;
  } else if (len <= 0xFFFF) {
    h[1] |= 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    hl = 4;
  } else {
    h[1] |= 127;
    for (int i = 0; i < 8; i++)
      h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    hl = 10;
  }
  if (mask != NULL) {
    memcpy(h + hl, mask, 4);
    hl += 4;
  }
  if (keel_buf_reserve(out, hl + len) != KEEL_OK)
    return KEEL_ENOMEM;
  (void)keel_buf_append(out, h, hl);
  if (len > 0) {
    uint8_t *dst = out->data + out->len;
    (void)keel_buf_append(out, data, len);
    if (mask != NULL)
      unmask(dst, len, mask);
  }
  return KEEL_OK;
}

int keel__ws_encode_close(keel_buf *out, uint16_t code, const char *reason,
                          const uint8_t mask[4]) {
  uint8_t pay[125];
  size_t n = 0;
  if (code != 0) {
    pay[0] = (uint8_t)(code >> 8);
    pay[1] = (uint8_t)code;
    n = 2;
    size_t rl = reason != NULL ? strlen(reason) : 0;
    if (rl > sizeof pay - 2)
      rl = sizeof pay - 2;
    if (rl > 0)
      memcpy(pay + 2, reason, rl);
    n += rl;
  }
  return keel__ws_encode(out, KEEL__WS_CLOSE, true, pay, n, mask);
}

/* ---- handshake ----------------------------------------------------------- */

static bool b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int keel__ws_accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  if (key_len != 24 || key[22] != '=' || key[23] != '=')
    return KEEL_EINVAL;
  for (size_t i = 0; i < 22; i++)
    if (!b64_char(key[i]))
      return KEEL_EINVAL;
  char cat[24 + sizeof guid];
  memcpy(cat, key, 24);
  memcpy(cat + 24, guid, sizeof guid - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(cat, 24 + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL) !=
          1 ||
      mdlen != 20)
    return KEEL_EINVAL;
  EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 chars and a NUL */
  return KEEL_OK;
}
