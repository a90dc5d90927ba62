/*
 * keel/tls.h - TLS over Keel's TCP sockets, modelled on Erlang's ssl
 * (layer: net). The protocol is OpenSSL 3's libssl.
 *
 * A TLS socket is a keel_socket of keel/net.h whose bytes pass through a
 * TLS session: keel_tls_upgrade attaches the session to a connected TCP
 * socket (ssl:connect/3 and ssl:handshake/2 on a gen_tcp socket), and from
 * then on the calls of keel/net.h carry plaintext on it:
 *   keel_net_send        encrypts (before the handshake is done, the bytes
 *                        wait and are encrypted once it is);
 *   keel_net_recv        decrypts; the handshake advances as it reads;
 *   keel_net_set_active  the active messages are ssl's:
 *                          {ssl, Sock, Data}          Data a binary
 *                          {ssl_closed, Sock}         peer closed (its
 *                                                     close_notify or EOF)
 *                          {ssl_error, Sock, Reason}  then {ssl_closed, Sock}
 *                          {ssl_passive, Sock}        active N reached 0
 *                        Reason is {tls, Text} (Text a binary: OpenSSL's
 *                        reason, e.g. <<"wrong version number">>, or the
 *                        verification's, e.g. <<"hostname mismatch">>) or
 *                        an errno atom of the transport (econnreset).
 *                        {tcp_writable, Sock} keeps its name;
 *   keel_net_close       sends close_notify, then closes as gen_tcp does
 *                        (the queue, alert included, is flushed first);
 *   keel_net_shutdown, _peername, _sockname, _controlling_process,
 *   _set_nodelay, _set_watermarks, _queued: as on TCP (the output queue
 *   and its watermarks count encrypted bytes).
 * The handle, its generation, owner rules and blocking rules are those of
 * keel/net.h. The TLS session is freed with the socket.
 *
 * Where the crypto runs: in the caller of keel_net_send / keel_net_recv /
 * keel_tls_handshake / keel_net_set_active, and in the node's poll thread
 * for data that arrives in active mode (decryption and, for a socket made
 * active before its handshake ended, the handshake itself).
 *
 * Fibers doing TLS need more stack than plain TCP: OpenSSL's handshake
 * uses tens of KiB; give them at least 128 KiB (keel_spawn_opts
 * stack_size).
 *
 * Failures: a peer's bad bytes (garbage instead of a ClientHello, a
 * corrupt record) end the session with an alert and close the socket; they
 * are reported as KEEL_ETLS, a failed certificate verification as
 * KEEL_EVERIFY, never as a crash.
 *
 * Thread-safety: as keel/net.h; a context may be shared by any number of
 * sockets and threads.
 */
#ifndef KEEL_TLS_H
#define KEEL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Peer verification (ssl's verify option). */
typedef enum keel_tls_verify {
  /* Client: KEEL_TLS_VERIFY_PEER; server: KEEL_TLS_VERIFY_NONE. */
  KEEL_TLS_VERIFY_DEFAULT = 0,
  KEEL_TLS_VERIFY_NONE = 1, /* verify_none: any certificate is taken */
  /* verify_peer: a client checks the server's chain against the CAs and
   * its name against the server name; a server asks for a client
   * certificate and checks it when one is sent. */
  KEEL_TLS_VERIFY_PEER = 2,
  /* Server only: as PEER, and a client without a certificate is refused
   * (fail_if_no_peer_cert). */
  KEEL_TLS_VERIFY_PEER_REQUIRED = 3
} keel_tls_verify;

/* Options of keel_tls_ctx_create. Zero-initialise, then set what you
 * need. Every string is read during the call only. */
typedef struct keel_tls_ctx_opts {
  bool server; /* the role of the sockets using this context */
  /* Own certificate chain (leaf first) and private key, PEM: from files,
   * or from NUL-terminated buffers (a file wins when both are set). A
   * server needs them; a client only for client authentication. */
  const char *cert_file, *key_file;
  const char *cert_pem, *key_pem;
  /* Trusted CAs, PEM (file and/or buffer). None given: a verifying
   * client uses the system's default store. */
  const char *ca_file;
  const char *ca_pem;
  keel_tls_verify verify;
  /* ALPN protocols in order of preference (e.g. "h2", "http/1.1"), each
   * 1..255 bytes. A client offers them; a server picks the first of its
   * own list that the client offers (no overlap: no protocol is
   * negotiated, the handshake goes on). NULL/0: no ALPN. */
  const char *const *alpn;
  size_t alpn_count;
  /* Lowest version: 0 or 12 = TLS 1.2, 13 = TLS 1.3. The highest is
   * OpenSSL's (TLS 1.3). */
  int min_version;
} keel_tls_ctx_opts;

/* A TLS configuration: OpenSSL's SSL_CTX with the options above. */
typedef struct keel_tls_ctx keel_tls_ctx;

/* Creates a context (ssl's options, loaded once). *out belongs to the
 * caller until keel_tls_ctx_destroy; sockets using it keep what they need
 * alive, so it may be destroyed while they live on. Errors: KEEL_EINVAL
 * (opts/out NULL, a server without certificate or key, key not matching
 * the certificate, bad ALPN entry, min_version not 0/12/13, a client
 * with PEER_REQUIRED), KEEL_ENOENT (a file cannot be read), KEEL_EDECODE
 * (PEM that does not parse), KEEL_ENOMEM. Any thread. */
int keel_tls_ctx_create(const keel_tls_ctx_opts *opts, keel_tls_ctx **out);

/* Drops the caller's context; NULL is a no-op. Any thread. */
void keel_tls_ctx_destroy(keel_tls_ctx *ctx);

/* Per-connection options of keel_tls_upgrade / _connect / _accept.
 * Zero-initialise. */
typedef struct keel_tls_conn_opts {
  /* Client: the name sent as SNI (unless it is a numeric address) and
   * checked against the server's certificate when verifying (DNS name, or
   * IP address for a numeric one). NULL: keel_tls_connect uses its ip;
   * keel_tls_upgrade then checks no name (chain only). Server: unused. */
  const char *server_name;
  /* Optional: the failure's reason text (NUL-terminated, truncated to
   * reason_cap) when a handshake fails. */
  char *reason;
  size_t reason_cap;
} keel_tls_conn_opts;

/* Attaches a TLS session (role of ctx) to the connected TCP socket s and
 * starts the handshake without waiting (a client sends its ClientHello).
 * From here on s is a TLS socket (see above); the handshake advances as
 * its owner reads (keel_net_recv, active mode) or waits in
 * keel_tls_handshake. Bytes already received as TCP stay TCP's: call this
 * before any. Anyone may call it. opts may be NULL. Errors: KEEL_ECLOSED,
 * KEEL_EINVAL (ctx NULL, a listening socket), KEEL_ESTATE (already TLS),
 * KEEL_ENOMEM, KEEL_EUNSUPPORTED (simulated node). */
int keel_tls_upgrade(keel_socket s, keel_tls_ctx *ctx,
                     const keel_tls_conn_opts *opts);

/* Drives the handshake of an upgraded socket to its end, waiting at most
 * timeout_ms (ssl:handshake/2; 0: one step without waiting). Owner only.
 * On any failure the socket is closed (after its alert is flushed).
 * Errors: KEEL_ETIMEDOUT (handshake timeout), KEEL_EVERIFY (the peer's
 * certificate failed verification), KEEL_ETLS (any other TLS failure: a
 * non-TLS peer, an alert, no common version or cipher), KEEL_ECLOSED (the
 * peer closed, or s is closed), KEEL_EINVAL (not a TLS socket),
 * KEEL_ENOTOWNER, KEEL_ESTATE (a handler process with timeout != 0),
 * KEEL_EUNSUPPORTED. opts (may be NULL): only its reason buffer is used. */
int keel_tls_handshake(keel_socket s, int64_t timeout_ms,
                       const keel_tls_conn_opts *opts);

/* ssl:connect/4: keel_net_connect, keel_tls_upgrade with a client ctx,
 * keel_tls_handshake, all within timeout_ms. The socket is passive and
 * owned by the caller. Errors: those three's (nothing is left open). */
int keel_tls_connect(const char *ip, uint16_t port, keel_tls_ctx *ctx,
                     const keel_tls_conn_opts *opts, int64_t timeout_ms,
                     keel_socket *out);

/* ssl:transport_accept + ssl:handshake: keel_net_accept on the TCP
 * listening socket listen, then the server handshake with a server ctx,
 * all within timeout_ms. A failed handshake closes that connection and
 * returns its error (call again for the next). Errors: those of
 * keel_net_accept and keel_tls_handshake. */
int keel_tls_accept(keel_socket listen, keel_tls_ctx *ctx,
                    const keel_tls_conn_opts *opts, int64_t timeout_ms,
                    keel_socket *out);

/* Whether s is an open TLS socket whose handshake is done. */
bool keel_tls_established(keel_socket s);

/* The ALPN protocol negotiated (ssl:negotiated_protocol/1), copied
 * NUL-terminated into buf. Returns its length; KEEL_ENOENT (none
 * negotiated, or handshake not done), KEEL_ENOSPC (cap too small),
 * KEEL_EINVAL (not a TLS socket, buf NULL), KEEL_ECLOSED. */
int keel_tls_negotiated_protocol(keel_socket s, char *buf, size_t cap);

/* The protocol version in use ("TLSv1.3", "TLSv1.2"), copied as above.
 * Errors: KEEL_ENOENT (handshake not done), KEEL_ENOSPC, KEEL_EINVAL,
 * KEEL_ECLOSED. */
int keel_tls_version(keel_socket s, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_TLS_H */
