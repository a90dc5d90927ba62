/*
 * ws_conn.c - WebSocket mode of a connection process (RFC 6455).
 *
 * Frames are decoded from the connection's input buffer, which holds only
 * the bytes of an incomplete frame between messages (none when idle).
 * Pings are answered with pongs, the closing handshake is completed in
 * either direction, and every protocol violation closes with its code.
 * The route's terminate callback runs exactly once, whatever ends the
 * connection.
 */
#include <string.h>

#include "http/conn.h"
#include "keel/error.h"

enum { CLOSE_WAIT_MS = 5000 };

void keel__ws_end(keel__http_conn *c, uint16_t code) {
  const keel_ws_handler *h = c->wsh;
  if (h == NULL)
    return;
  c->wsh = NULL; /* once */
  if (h->terminate != NULL)
    h->terminate(&c->ws, code, c->ws_state);
  c->ws_state = NULL;
}

/* Sends a close frame (once). */
static void send_close(keel__http_conn *c, uint16_t code, const char *why) {
  if (c->close_sent)
    return;
  c->close_sent = true;
  keel__ws_lane_close(c); /* no data frame after our close */
  (void)keel__ws_encode_close(&c->out, code, why, NULL);
}

/* Ends the connection after a violation or a failed callback. */
void keel__ws_fail(keel__http_conn *c, uint16_t code) {
  send_close(c, code, NULL);
  keel__ws_end(c, code);
  keel__conn_close_after_flush(c);
}

static int on_msg(const keel__ws_msg *m, void *arg) {
  keel__http_conn *c = arg;
  switch (m->op) {
  case KEEL__WS_TEXT:
  case KEEL__WS_BINARY:
    if (c->close_sent || c->wsh == NULL || c->wsh->on_message == NULL)
      return 0; /* after our close: dropped, as the RFC allows */
    if (c->wsh->on_message(&c->ws, (keel_ws_kind)m->op, m->data, m->len,
                           c->ws_state) < 0) {
      keel__ws_fail(c, KEEL__WS_CLOSE_ERROR);
      return KEEL_ESTATE;
    }
    return 0;
  case KEEL__WS_PING:
    if (!c->close_sent)
      (void)keel__ws_encode(&c->out, KEEL__WS_PONG, true, m->data, m->len,
                            NULL);
    return 0;
  case KEEL__WS_CLOSE: {
    c->close_received = true;
    c->close_code = m->close_code;
    /* Echo the code (none for an empty close) and finish. */
    uint16_t echo =
        m->close_code == KEEL__WS_CLOSE_NO_STATUS ? 0 : m->close_code;
    send_close(c, echo, NULL);
    keel__ws_end(c, m->close_code);
    keel__conn_close_after_flush(c);
    return KEEL_ESTATE; /* nothing after a close frame counts */
  }
  default:
    return 0; /* pongs */
  }
}

bool keel__ws_on_data(keel__http_conn *c, const uint8_t *data, size_t len) {
  if (keel_buf_append(&c->in, data, len) != KEEL_OK) {
    keel__ws_fail(c, KEEL__WS_CLOSE_ERROR);
    return true;
  }
  uint16_t code = 0;
  long n =
      keel__ws_decode(&c->wsd, c->in.data, c->in.len, on_msg, c, &code, NULL);
  if (n < 0) {
    if (c->mode == CONN_WS) /* a decode error, not a close we handled */
      keel__ws_fail(c, code != 0 ? code : KEEL__WS_CLOSE_ERROR);
    keel_buf_free(&c->in);
    return true;
  }
  size_t rest = c->in.len - (size_t)n;
  if (rest == 0) {
    keel_buf_free(&c->in); /* an idle connection holds no buffer */
  } else if (n > 0) {
    memmove(c->in.data, c->in.data + n, rest);
    c->in.len = rest;
  }
  return true;
}

bool keel__ws_on_info(keel__http_conn *c, keel_term msg) {
  if (keel__ws_lane_msg(c, msg))
    return true;
  if (c->wsh == NULL || c->wsh->on_info == NULL || c->close_sent)
    return true;
  if (c->wsh->on_info(&c->ws, msg, c->ws_state) < 0)
    keel__ws_fail(c, KEEL__WS_CLOSE_ERROR);
  return true;
}

int keel__ws_start(keel__http_conn *c, const uint8_t *rest, size_t len) {
  c->mode = CONN_WS;
  c->deadline = 0;
  keel__ws_decoder_init(&c->wsd, true, c->srv->o.max_ws_message);
  if (len > 0)
    (void)keel__ws_on_data(c, rest, len);
  return KEEL_OK;
}

/* ---- public API ------------------------------------------------------- */

int keel_ws_send(keel_ws *ws, keel_ws_kind kind, const void *data, size_t len) {
  if (ws == NULL || (data == NULL && len > 0) ||
      (kind != KEEL_WS_TEXT && kind != KEEL_WS_BINARY))
    return KEEL_EINVAL;
  keel__http_conn *c = ws->conn;
  if (c->mode != CONN_WS || c->close_sent)
    return KEEL_ESTATE;
  if (kind == KEEL_WS_TEXT) {
    keel__utf8 u = {0, 0x80, 0xBF};
    if (!keel__utf8_feed(&u, data, len) || !keel__utf8_done(&u))
      return KEEL_EINVAL;
  }
  size_t cap = c->srv->o.max_ws_message * 4;
  if (c->out.len > cap)
    return KEEL_EBUSY; /* a reader this slow drops messages */
  return keel__ws_encode(&c->out, (uint8_t)kind, true, data, len, NULL);
}

int keel_ws_close(keel_ws *ws, uint16_t code, const char *reason) {
  if (ws == NULL || (code != 0 && !keel__ws_close_code_valid(code)))
    return KEEL_EINVAL;
  keel__http_conn *c = ws->conn;
  if (c->mode != CONN_WS || c->close_sent)
    return KEEL_ESTATE;
  send_close(c, code, reason);
  c->close_code = code != 0 ? code : KEEL__WS_CLOSE_NO_STATUS;
  keel__conn_set_deadline(c, CLOSE_WAIT_MS); /* for the peer's answer */
  return KEEL_OK;
}

keel_term keel_ws_pid(const keel_ws *ws) {
  return ws != NULL ? ws->conn->pid : KEEL_NONE;
}

keel_proc *keel_ws_proc(keel_ws *ws) {
  return ws != NULL ? ws->conn->self : NULL;
}
