/*
 * tls_internal.h - the TLS context shared by tls_ctx.c and tls.c.
 */
#ifndef KEEL_TLS_INTERNAL_H
#define KEEL_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "keel/tls.h"

struct keel_tls_ctx {
  SSL_CTX *ssl;
  atomic_uint refs; /* the creator's, plus one per session */
  bool server;
  bool verify;         /* the peer's certificate is checked */
  unsigned char *alpn; /* ALPN wire format (length-prefixed), or NULL */
  unsigned int alpn_len;
};

/* Takes / drops a reference; the last drop frees the context. */
void keel__tls_ctx_ref(keel_tls_ctx *c);
void keel__tls_ctx_unref(keel_tls_ctx *c);

#endif /* KEEL_TLS_INTERNAL_H */
