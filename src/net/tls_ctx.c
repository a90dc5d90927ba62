/*
 * tls_ctx.c - keel_tls_ctx: an OpenSSL SSL_CTX loaded from the options of
 * keel/tls.h (certificate chain, key, CAs, verify mode, ALPN, versions).
 */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/tls_internal.h"

void keel__tls_ctx_ref(keel_tls_ctx *c) {
  atomic_fetch_add(&c->refs, 1);
}

void keel__tls_ctx_unref(keel_tls_ctx *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  SSL_CTX_free(c->ssl);
  free(c->alpn);
  free(c);
}

void keel_tls_ctx_destroy(keel_tls_ctx *ctx) {
  keel__tls_ctx_unref(ctx);
}

/* A server's ALPN choice: the first of its own list the client offers. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)ssl;
  keel_tls_ctx *c = arg;
  unsigned char *o = NULL;
  if (SSL_select_next_proto(&o, outlen, c->alpn, c->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

static int build_alpn(keel_tls_ctx *c, const keel_tls_ctx_opts *o) {
  if (o->alpn_count == 0)
    return KEEL_OK;
  if (o->alpn == NULL)
    return KEEL_EINVAL;
  size_t total = 0;
  for (size_t i = 0; i < o->alpn_count; i++) {
    size_t n = o->alpn[i] != NULL ? strlen(o->alpn[i]) : 0;
    if (n == 0 || n > 255)
      return KEEL_EINVAL;
    total += 1 + n;
  }
  if (total > 65535)
    return KEEL_EINVAL;
  if ((c->alpn = malloc(total)) == NULL)
    return KEEL_ENOMEM;
  size_t off = 0;
  for (size_t i = 0; i < o->alpn_count; i++) {
    size_t n = strlen(o->alpn[i]);
    c->alpn[off++] = (unsigned char)n;
    memcpy(c->alpn + off, o->alpn[i], n);
    off += n;
  }
  c->alpn_len = (unsigned int)total;
  if (c->server) {
    SSL_CTX_set_alpn_select_cb(c->ssl, alpn_select, c);
    return KEEL_OK;
  }
  return SSL_CTX_set_alpn_protos(c->ssl, c->alpn, c->alpn_len) == 0
             ? KEEL_OK
             : KEEL_ENOMEM;
}

static int file_error(const char *path) {
  return access(path, R_OK) != 0 ? KEEL_ENOENT : KEEL_EDECODE;
}

/* Certificate chain from a PEM buffer: the leaf, then the chain. */
static int use_cert_pem(SSL_CTX *ctx, const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (b == NULL)
    return KEEL_ENOMEM;
  int rc = KEEL_OK;
  X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
  if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1)
    rc = KEEL_EDECODE;
  X509_free(leaf);
  X509 *x;
  while (rc == KEEL_OK && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
      X509_free(x);
      rc = KEEL_ENOMEM;
    }
  BIO_free(b);
  ERR_clear_error(); /* the end of the buffer reads as an error */
  return rc;
}

/* The private key from a file or a buffer: KEEL_EDECODE when it does not
 * parse, KEEL_EINVAL when it is not the certificate's. */
static int use_key(SSL_CTX *ctx, const char *file, const char *pem) {
  BIO *b = file != NULL ? BIO_new_file(file, "r") : BIO_new_mem_buf(pem, -1);
  if (b == NULL)
    return file != NULL ? KEEL_ENOENT : KEEL_ENOMEM;
  EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  int rc = k == NULL                             ? KEEL_EDECODE
           : SSL_CTX_use_PrivateKey(ctx, k) != 1 ? KEEL_EINVAL
                                                 : KEEL_OK;
  EVP_PKEY_free(k);
  BIO_free(b);
  return rc;
}

static int add_ca_pem(SSL_CTX *ctx, const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (b == NULL)
    return KEEL_ENOMEM;
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  int n = 0;
  X509 *x;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(st, x) == 1)
      n++;
    X509_free(x);
  }
  BIO_free(b);
  ERR_clear_error();
  return n > 0 ? KEEL_OK : KEEL_EDECODE;
}

static int load_identity(keel_tls_ctx *c, const keel_tls_ctx_opts *o) {
  bool has_cert = o->cert_file != NULL || o->cert_pem != NULL;
  bool has_key = o->key_file != NULL || o->key_pem != NULL;
  if (has_cert != has_key || (c->server && !has_cert))
    return KEEL_EINVAL;
  if (!has_cert)
    return KEEL_OK;
  int rc = KEEL_OK;
  if (o->cert_file != NULL) {
    if (SSL_CTX_use_certificate_chain_file(c->ssl, o->cert_file) != 1)
      rc = file_error(o->cert_file);
  } else {
    rc = use_cert_pem(c->ssl, o->cert_pem);
  }
  if (rc == KEEL_OK)
    rc = use_key(c->ssl, o->key_file, o->key_pem);
  if (rc == KEEL_OK && SSL_CTX_check_private_key(c->ssl) != 1)
    rc = KEEL_EINVAL;
  return rc;
}

static int load_trust(keel_tls_ctx *c, const keel_tls_ctx_opts *o) {
  int rc = KEEL_OK;
  if (o->ca_file != NULL &&
      SSL_CTX_load_verify_locations(c->ssl, o->ca_file, NULL) != 1)
    rc = file_error(o->ca_file);
  if (rc == KEEL_OK && o->ca_pem != NULL)
    rc = add_ca_pem(c->ssl, o->ca_pem);
  if (rc == KEEL_OK && c->verify && !c->server && o->ca_file == NULL &&
      o->ca_pem == NULL)
    SSL_CTX_set_default_verify_paths(c->ssl);
  int mode = SSL_VERIFY_NONE;
  if (c->verify)
    mode = SSL_VERIFY_PEER;
  if (o->verify == KEEL_TLS_VERIFY_PEER_REQUIRED)
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(c->ssl, mode, NULL);
  return rc;
}

static int configure(keel_tls_ctx *c, const keel_tls_ctx_opts *o) {
  if (SSL_CTX_set_min_proto_version(
          c->ssl, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1)
    return KEEL_EINVAL;
  /* No renegotiation (a TLS 1.2 peer cannot restart the handshake). */
  SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION);
  int rc = load_identity(c, o);
  if (rc == KEEL_OK)
    rc = load_trust(c, o);
  if (rc == KEEL_OK)
    rc = build_alpn(c, o);
  return rc;
}

int keel_tls_ctx_create(const keel_tls_ctx_opts *opts, keel_tls_ctx **out) {
  if (opts == NULL || out == NULL ||
      (opts->min_version != 0 && opts->min_version != 12 &&
       opts->min_version != 13) ||
      (unsigned)opts->verify > KEEL_TLS_VERIFY_PEER_REQUIRED ||
      (!opts->server && opts->verify == KEEL_TLS_VERIFY_PEER_REQUIRED))
    return KEEL_EINVAL;
  keel_tls_ctx *c = calloc(1, sizeof *c);
  if (c == NULL)
    return KEEL_ENOMEM;
  atomic_init(&c->refs, 1);
  c->server = opts->server;
  c->verify = opts->verify == KEEL_TLS_VERIFY_DEFAULT
                  ? !opts->server
                  : opts->verify != KEEL_TLS_VERIFY_NONE;
  c->ssl = SSL_CTX_new(c->server ? TLS_server_method() : TLS_client_method());
  int rc = c->ssl != NULL ? configure(c, opts) : KEEL_ENOMEM;
  ERR_clear_error();
  if (rc != KEEL_OK) {
    keel__tls_ctx_unref(c);
    return rc;
  }
  *out = c;
  return KEEL_OK;
}
