/*
 * tls.c - TLS sessions on Keel's sockets: OpenSSL with memory BIOs.
 *
 * The session never touches the descriptor. Bytes read from it go into
 * the session's read BIO; whatever OpenSSL writes (records, handshake
 * messages, alerts) lands in its write BIO and is moved to the socket's
 * own output path (written at once, or queued with its watermarks and
 * flushed by the poll thread). So the poller, the generation-counted
 * handles, the owners, the waiters and the close-with-linger of the TCP
 * sockets serve TLS sockets unchanged. Everything here runs with the
 * socket's slot locked.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "keel/clock.h"
#include "net/net_internal.h"
#include "net/tls_internal.h"
#include "runtime/io.h"

/* Bytes read from the descriptor at most per read (a record is at most
 * 16 KiB plus its header and tag). */
#define TLS_RAW (32u * 1024u)

typedef struct net_tls {
  SSL *ssl;
  BIO *rb, *wb; /* owned by ssl */
  keel_tls_ctx *ctx;
  bool done;                /* handshake finished */
  bool notified;            /* close_notify sent */
  int fail;                 /* 0, or the error that ended the session */
  int sys_errno;            /* for KEEL_EIO: the transport's errno */
  net_chunk *phead, *ptail; /* plaintext sent before the handshake ended */
  char reason[120];
} net_tls;

static pthread_key_t raw_key;
static pthread_once_t raw_once = PTHREAD_ONCE_INIT;

static void raw_init(void) {
  pthread_key_create(&raw_key, free);
}

/* The calling thread's buffer for ciphertext (freed when it ends). */
static uint8_t *raw_buf(void) {
  pthread_once(&raw_once, raw_init);
  uint8_t *b = pthread_getspecific(raw_key);
  if (b == NULL && (b = malloc(TLS_RAW)) != NULL)
    pthread_setspecific(raw_key, b);
  return b;
}

void keel__tls_free(net_tls *t) {
  for (net_chunk *c = t->phead, *nx; c != NULL; c = nx) {
    nx = c->next;
    free(c);
  }
  SSL_free(t->ssl);
  keel__tls_ctx_unref(t->ctx);
  free(t);
}

/* ---- moving ciphertext ---------------------------------------------------
 */

/* Moves what OpenSSL wrote to the socket's output path. */
static int drain(net_sock *s) {
  net_tls *t = s->tls;
  char *p = NULL;
  long n = BIO_get_mem_data(t->wb, &p);
  if (n <= 0)
    return KEEL_OK;
  int rc = (s->flags & NS_BROKEN)
               ? KEEL_ECLOSED
               : keel__net_send_raw_locked(s, (const uint8_t *)p, (size_t)n);
  (void)BIO_reset(t->wb);
  return rc;
}

/* Reads ciphertext from the descriptor into the read BIO: > 0 bytes, 0
 * none for now, KEEL_ECLOSED (EOF), KEEL_EIO (an error, in sys_errno). */
static int64_t fill(net_sock *s) {
  net_tls *t = s->tls;
  uint8_t *buf = raw_buf();
  if (buf == NULL)
    return 0; /* retried at the next event or call */
  for (;;) {
    ssize_t n = recv(keel__io_fd(s->h), buf, TLS_RAW, MSG_DONTWAIT);
    if (n > 0) {
      if (BIO_write(t->rb, buf, (int)n) != (int)n)
        return KEEL_ENOMEM;
      return n;
    }
    if (n == 0)
      return KEEL_ECLOSED;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    t->sys_errno = errno;
    return KEEL_EIO;
  }
}

/* Records the failure of the session (once) with its reason. */
static int fail(net_sock *s, int rc, const char *why) {
  net_tls *t = s->tls;
  if (t->fail != 0)
    return t->fail;
  long vr = SSL_get_verify_result(t->ssl);
  /* (Without verification OpenSSL still records a result: ignored.) */
  if (rc == KEEL_ETLS && !t->done && t->ctx->verify && vr != X509_V_OK) {
    rc = KEEL_EVERIFY;
    why = X509_verify_cert_error_string(vr);
  } else if (rc == KEEL_ETLS && why == NULL) {
    unsigned long e = ERR_peek_last_error();
    why = e != 0 ? ERR_reason_error_string(e) : NULL;
  }
  if (rc == KEEL_EIO && why == NULL)
    why = strerror(t->sys_errno);
  snprintf(t->reason, sizeof t->reason, "%s",
           why != NULL ? why : "tls failure");
  t->fail = rc;
  ERR_clear_error();
  return rc;
}

/* The outcome of an OpenSSL call that returned r <= 0. */
static int ssl_failure(net_sock *s, int r) {
  int e = SSL_get_error(s->tls->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return KEEL_EBUSY;
  if (e == SSL_ERROR_ZERO_RETURN)
    return KEEL_ECLOSED;
  return fail(s, KEEL_ETLS, NULL);
}

/* ---- plaintext out --------------------------------------------------------
 */

static int write_plain(net_sock *s, const uint8_t *p, size_t len) {
  net_tls *t = s->tls;
  while (len > 0) {
    int chunk = len > (1u << 20) ? (1 << 20) : (int)len;
    ERR_clear_error();
    int n = SSL_write(t->ssl, p, chunk);
    if (n <= 0) { /* no renegotiation: a write never waits for a read */
      int rc = ssl_failure(s, n);
      drain(s);
      if (rc == KEEL_EBUSY)
        fail(s, KEEL_ETLS, "write refused");
      return KEEL_ECLOSED;
    }
    p += n;
    len -= (size_t)n;
    int rc = drain(s);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

static int pend(net_tls *t, const uint8_t *p, size_t len) {
  return keel__net_chunk_append(&t->phead, &t->ptail, p, len);
}

int keel__tls_send_locked(net_sock *s, const uint8_t *p, size_t len) {
  net_tls *t = s->tls;
  if (t->fail != 0 || t->notified)
    return KEEL_ECLOSED;
  if (!t->done || t->phead != NULL)
    return pend(t, p, len);
  return write_plain(s, p, len);
}

/* After any OpenSSL call: its output goes out; once the handshake is
 * done, the plaintext kept meanwhile is sent. */
static void after_io(net_sock *s) {
  net_tls *t = s->tls;
  drain(s);
  if (t->done || !SSL_is_init_finished(t->ssl))
    return;
  t->done = true;
  while (t->phead != NULL && t->fail == 0) {
    net_chunk *c = t->phead;
    t->phead = c->next;
    if (t->phead == NULL)
      t->ptail = NULL;
    if (write_plain(s, c->data, c->len) != KEEL_OK)
      s->flags |= NS_BROKEN;
    free(c);
  }
}

/* ---- plaintext in ---------------------------------------------------------
 */

int64_t keel__tls_read_locked(net_sock *s, uint8_t *buf, size_t cap) {
  net_tls *t = s->tls;
  for (;;) {
    if (t->fail != 0)
      return t->fail;
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    int rc = n > 0 ? KEEL_OK : ssl_failure(s, n);
    after_io(s);
    if (n > 0)
      return n;
    if (rc != KEEL_EBUSY)
      return rc;
    int64_t f = fill(s);
    if (f == 0) {
      s->flags &= (uint8_t)~NS_RREADY;
      return 0;
    }
    if (f == KEEL_EIO || f == KEEL_ENOMEM)
      return fail(s, (int)f, NULL);
    if (f < 0)
      return f; /* EOF */
  }
}

/* One step of the handshake: KEEL_OK (done), KEEL_EBUSY (waits for
 * bytes), or the failure. */
static int handshake_step(net_sock *s) {
  net_tls *t = s->tls;
  for (;;) {
    if (t->fail != 0)
      return t->fail;
    if (t->done)
      return KEEL_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int rc = r == 1 ? KEEL_OK : ssl_failure(s, r);
    after_io(s);
    if (rc != KEEL_EBUSY)
      return rc == KEEL_ECLOSED ? fail(s, KEEL_ECLOSED, "closed") : rc;
    int64_t f = fill(s);
    if (f == 0) {
      s->flags &= (uint8_t)~NS_RREADY;
      return KEEL_EBUSY;
    }
    if (f < 0)
      return fail(s, (int)f, f == KEEL_ECLOSED ? "closed" : NULL);
  }
}

keel_term keel__tls_reason(keel_heap *h, const net_sock *s) {
  const net_tls *t = s->tls;
  if (t->fail == KEEL_EIO && t->sys_errno != 0)
    return keel__net_errno_atom(t->sys_errno);
  keel_term text = keel_binary(h, t->reason, strlen(t->reason));
  keel_term r =
      text != KEEL_NONE ? keel_tuple(h, 2, keel_atom("tls"), text) : KEEL_NONE;
  return r != KEEL_NONE ? r : keel_atom("tls");
}

void keel__tls_close_notify_locked(net_sock *s) {
  net_tls *t = s->tls;
  if (t->notified || t->fail != 0 || !t->done || (s->flags & NS_BROKEN))
    return;
  t->notified = true;
  ERR_clear_error();
  (void)SSL_shutdown(t->ssl);
  drain(s);
  ERR_clear_error();
}

/* ---- public calls ---------------------------------------------------------
 */

static bool is_ip(const char *name) {
  unsigned char a[16];
  return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

static int session_new(keel_tls_ctx *ctx, const char *name, net_tls **out) {
  net_tls *t = calloc(1, sizeof *t);
  if (t == NULL)
    return KEEL_ENOMEM;
  t->ssl = SSL_new(ctx->ssl);
  t->rb = BIO_new(BIO_s_mem());
  t->wb = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rb == NULL || t->wb == NULL) {
    BIO_free(t->rb);
    BIO_free(t->wb);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return KEEL_ENOMEM;
  }
  BIO_set_mem_eof_return(t->rb, -1); /* empty: retry, not EOF */
  BIO_set_mem_eof_return(t->wb, -1);
  SSL_set_bio(t->ssl, t->rb, t->wb);
  int ok = 1;
  if (ctx->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (name != NULL && !is_ip(name))
      ok = SSL_set_tlsext_host_name(t->ssl, name);
    if (ok == 1 && name != NULL && ctx->verify)
      ok = is_ip(name)
               ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name)
               : SSL_set1_host(t->ssl, name);
  }
  if (ok != 1) {
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return KEEL_EINVAL;
  }
  keel__tls_ctx_ref(ctx);
  t->ctx = ctx;
  *out = t;
  return KEEL_OK;
}

int keel_tls_upgrade(keel_socket h, keel_tls_ctx *ctx,
                     const keel_tls_conn_opts *opts) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (ctx == NULL)
    return KEEL_EINVAL;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if ((s->flags & NS_LISTEN) || s->kind != NK_TCP)
    rc = KEEL_EINVAL;
  else if (s->tls != NULL)
    rc = KEEL_ESTATE;
  else
    rc = session_new(ctx, opts != NULL ? opts->server_name : NULL, &s->tls);
  if (rc == KEEL_OK && !ctx->server) { /* the ClientHello goes out */
    ERR_clear_error();
    int r = SSL_do_handshake(s->tls->ssl);
    if (r != 1)
      (void)ssl_failure(s, r);
    after_io(s);
  }
  keel__net_unlock(s);
  return rc;
}

static void copy_reason(const keel_tls_conn_opts *o, const char *why) {
  if (o != NULL && o->reason != NULL && o->reason_cap > 0)
    snprintf(o->reason, o->reason_cap, "%s", why);
}

/* Ends a failed handshake: the reason to the caller, the socket closed
 * (its alert flushed first). */
static int handshake_failed(net_sock *s, int rc, const keel_tls_conn_opts *o) {
  copy_reason(o, rc == KEEL_ETIMEDOUT ? "handshake timeout" : s->tls->reason);
  bool freed = keel__net_close_locked(s);
  keel__net_unlock(s);
  if (freed)
    keel__net_sock_free(s);
  return rc;
}

int keel_tls_handshake(keel_socket h, int64_t timeout_ms,
                       const keel_tls_conn_opts *opts) {
  int rc = keel__net_check();
  if (rc == KEEL_OK)
    rc = keel__net_may_wait(timeout_ms);
  if (rc != KEEL_OK)
    return rc;
  uint64_t deadline = keel__net_deadline(timeout_ms);
  keel_term me = keel__net_caller();
  for (;;) {
    net_sock *s = keel__net_lock(h);
    if (s == NULL)
      return KEEL_ECLOSED;
    if (s->tls == NULL || (s->flags & NS_LISTEN))
      rc = KEEL_EINVAL;
    else if (s->owner != me)
      rc = KEEL_ENOTOWNER;
    if (rc != KEEL_OK) {
      keel__net_unlock(s);
      return rc;
    }
    rc = handshake_step(s);
    if (rc == KEEL_OK) {
      keel__net_unlock(s);
      return KEEL_OK;
    }
    if (rc == KEEL_EBUSY &&
        (timeout_ms == 0 || keel_monotonic_ns() >= deadline))
      rc = KEEL_ETIMEDOUT;
    if (rc != KEEL_EBUSY)
      return handshake_failed(s, rc, opts);
    rc = keel__net_wait(s, false, deadline);
    if (rc == KEEL_ETIMEDOUT)
      rc = KEEL_OK; /* the next step sees the deadline passed */
    else if (rc != KEEL_OK)
      return rc;
  }
}

/* The time left of a timeout started at t0 (KEEL_INFINITY stays). */
static int64_t left_ms(int64_t timeout_ms, uint64_t t0) {
  if (timeout_ms < 0)
    return timeout_ms;
  uint64_t spent = (keel_monotonic_ns() - t0) / 1000000u;
  return spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int64_t)spent;
}

static int upgrade_and_handshake(keel_socket s, keel_tls_ctx *ctx,
                                 const keel_tls_conn_opts *o,
                                 int64_t timeout_ms, uint64_t t0) {
  int rc = keel_tls_upgrade(s, ctx, o);
  if (rc != KEEL_OK) {
    keel_net_close(s);
    return rc;
  }
  return keel_tls_handshake(s, left_ms(timeout_ms, t0), o);
}

int keel_tls_connect(const char *ip, uint16_t port, keel_tls_ctx *ctx,
                     const keel_tls_conn_opts *opts, int64_t timeout_ms,
                     keel_socket *out) {
  if (ctx == NULL || ctx->server || out == NULL)
    return KEEL_EINVAL;
  uint64_t t0 = keel_monotonic_ns();
  keel_socket s;
  int rc = keel_net_connect(ip, port, timeout_ms, &s);
  if (rc != KEEL_OK)
    return rc;
  keel_tls_conn_opts o = {.server_name = ip};
  if (opts != NULL) {
    o = *opts;
    if (o.server_name == NULL)
      o.server_name = ip;
  }
  rc = upgrade_and_handshake(s, ctx, &o, timeout_ms, t0);
  if (rc == KEEL_OK)
    *out = s;
  return rc;
}

int keel_tls_accept(keel_socket listen, keel_tls_ctx *ctx,
                    const keel_tls_conn_opts *opts, int64_t timeout_ms,
                    keel_socket *out) {
  if (ctx == NULL || !ctx->server || out == NULL)
    return KEEL_EINVAL;
  uint64_t t0 = keel_monotonic_ns();
  keel_socket s;
  int rc = keel_net_accept(listen, timeout_ms, &s);
  if (rc != KEEL_OK)
    return rc;
  rc = upgrade_and_handshake(s, ctx, opts, timeout_ms, t0);
  if (rc == KEEL_OK)
    *out = s;
  return rc;
}

/* ---- introspection --------------------------------------------------------
 */

bool keel_tls_established(keel_socket h) {
  if (keel__net_check() != KEEL_OK)
    return false;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return false;
  bool ok = s->tls != NULL && s->tls->done && s->tls->fail == 0;
  keel__net_unlock(s);
  return ok;
}

static int copy_out(const char *v, size_t n, char *buf, size_t cap) {
  if (n + 1 > cap)
    return KEEL_ENOSPC;
  memcpy(buf, v, n);
  buf[n] = '\0';
  return (int)n;
}

static int info(keel_socket h, char *buf, size_t cap, bool alpn) {
  int rc = keel__net_check();
  if (rc != KEEL_OK)
    return rc;
  if (buf == NULL)
    return KEEL_EINVAL;
  net_sock *s = keel__net_lock(h);
  if (s == NULL)
    return KEEL_ECLOSED;
  if (s->tls == NULL) {
    rc = KEEL_EINVAL;
  } else if (!s->tls->done) {
    rc = KEEL_ENOENT;
  } else if (alpn) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(s->tls->ssl, &p, &n);
    rc = n == 0 ? KEEL_ENOENT : copy_out((const char *)p, n, buf, cap);
  } else {
    const char *v = SSL_get_version(s->tls->ssl);
    rc = copy_out(v, strlen(v), buf, cap);
  }
  keel__net_unlock(s);
  return rc;
}

int keel_tls_negotiated_protocol(keel_socket s, char *buf, size_t cap) {
  return info(s, buf, cap, true);
}

int keel_tls_version(keel_socket s, char *buf, size_t cap) {
  return info(s, buf, cap, false);
}
