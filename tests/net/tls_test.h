/*
 * tls_test.h - a throwaway PKI for the TLS tests, made with OpenSSL at
 * test time in a fresh temporary directory: a CA, a server certificate it
 * signs (names: IP 127.0.0.1 and DNS localhost; ECDSA P-256), and a
 * second CA that signs nothing the server has (an untrusted one). Files
 * and PEM texts of each. Header-only: include once per test file.
 */
#ifndef KEEL_TLS_TEST_H
#define KEEL_TLS_TEST_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct test_pki {
  char dir[256];
  char ca_file[320], cert_file[320], key_file[320], other_ca_file[320];
  char *ca_pem, *cert_pem, *key_pem;
} test_pki;

static inline bool pki_ext(X509 *x, X509 *issuer, int nid, const char *v) {
  X509V3_CTX c;
  X509V3_set_ctx_nodb(&c);
  X509V3_set_ctx(&c, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
  bool ok = e != NULL && X509_add_ext(x, e, -1) == 1;
  X509_EXTENSION_free(e);
  return ok;
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed). */
static inline X509 *pki_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                             EVP_PKEY *issuer_key, long serial) {
  X509 *x = X509_new();
  if (x == NULL)
    return NULL;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                             -1, -1, 0);
  X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n);
  bool ok;
  if (issuer == NULL)
    ok = pki_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE") &&
         pki_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         pki_ext(x, NULL, NID_subject_key_identifier, "hash");
  else
    ok = pki_ext(x, issuer, NID_basic_constraints, "CA:FALSE") &&
         pki_ext(x, issuer, NID_subject_alt_name,
                 "IP:127.0.0.1,DNS:localhost") &&
         pki_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
  if (!ok ||
      X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static inline char *pki_pem(X509 *x, EVP_PKEY *k) {
  BIO *b = BIO_new(BIO_s_mem());
  if (x != NULL)
    PEM_write_bio_X509(b, x);
  else
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *s = malloc((size_t)n + 1);
  memcpy(s, p, (size_t)n);
  s[n] = '\0';
  BIO_free(b);
  return s;
}

static inline bool pki_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return false;
  bool ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

/* Makes the PKI; false on any failure. */
static inline bool pki_make(test_pki *p) {
  memset(p, 0, sizeof *p);
  const char *tmp = getenv("TMPDIR");
  snprintf(p->dir, sizeof p->dir, "%s/keel-tls-XXXXXX",
           tmp != NULL ? tmp : "/tmp");
  if (mkdtemp(p->dir) == NULL)
    return false;
  EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256"),
           *other_key = EVP_EC_gen("P-256");
  X509 *ca = pki_cert(ca_key, "Keel Test CA", NULL, NULL, 1);
  X509 *leaf = pki_cert(key, "localhost", ca, ca_key, 2);
  X509 *other = pki_cert(other_key, "Keel Other CA", NULL, NULL, 3);
  bool ok = ca != NULL && leaf != NULL && other != NULL;
  if (ok) {
    p->ca_pem = pki_pem(ca, NULL);
    p->cert_pem = pki_pem(leaf, NULL);
    p->key_pem = pki_pem(NULL, key);
    char *other_pem = pki_pem(other, NULL);
    snprintf(p->ca_file, sizeof p->ca_file, "%s/ca.pem", p->dir);
    snprintf(p->cert_file, sizeof p->cert_file, "%s/cert.pem", p->dir);
    snprintf(p->key_file, sizeof p->key_file, "%s/key.pem", p->dir);
    snprintf(p->other_ca_file, sizeof p->other_ca_file, "%s/other.pem", p->dir);
    ok = pki_write(p->ca_file, p->ca_pem) &&
         pki_write(p->cert_file, p->cert_pem) &&
         pki_write(p->key_file, p->key_pem) &&
         pki_write(p->other_ca_file, other_pem);
    free(other_pem);
  }
  X509_free(ca);
  X509_free(leaf);
  X509_free(other);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
  EVP_PKEY_free(other_key);
  return ok;
}

static inline void pki_remove(test_pki *p) {
  unlink(p->ca_file);
  unlink(p->cert_file);
  unlink(p->key_file);
  unlink(p->other_ca_file);
  rmdir(p->dir);
  free(p->ca_pem);
  free(p->cert_pem);
  free(p->key_pem);
}

#endif /* KEEL_TLS_TEST_H */
