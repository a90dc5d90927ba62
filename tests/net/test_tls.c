/*
 * test_tls.c - TLS sockets (keel/tls.h) with Keel on both ends, over a
 * PKI made at test time: echo round trips in passive and active modes,
 * ALPN and version, a large transfer checked byte for byte, verification
 * failures (wrong name, untrusted CA), garbage and random bytes sent to a
 * TLS server by a plain TCP client, the handshake timeout, and context
 * errors. 1, 2 and 8 schedulers.
 */
#include "keel/tls.h"
#include "net/net_test.h"
#include "net/tls_test.h"

#define STACK (256u * 1024u)

static test_pki pki;
static keel_tls_ctx *srv_ctx, *cli_ctx;
static keel_socket listen_s;
static uint16_t port;

static void setup_pki(void) {
  cr_assert(pki_make(&pki), "test PKI");
}

static void make_ctxs(void) {
  static const char *const alpn_srv[] = {"keel/1", "http/1.1"};
  static const char *const alpn_cli[] = {"other", "keel/1"};
  keel_tls_ctx_opts so = {.server = true,
                          .cert_file = pki.cert_file,
                          .key_file = pki.key_file,
                          .alpn = alpn_srv,
                          .alpn_count = 2};
  cr_assert_eq(keel_tls_ctx_create(&so, &srv_ctx), KEEL_OK);
  /* The client's from PEM buffers. */
  keel_tls_ctx_opts co = {
      .ca_pem = pki.ca_pem, .alpn = alpn_cli, .alpn_count = 2};
  cr_assert_eq(keel_tls_ctx_create(&co, &cli_ctx), KEEL_OK);
}

static void start(unsigned nsched) {
  start_node(nsched);
  make_ctxs();
  keel_net_listen_opts lo = {.port = 0};
  cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
  port = port_of(listen_s);
}

static void stop(unsigned nsched, long expect) {
  bool ok = wait_done(expect);
  keel_net_close(listen_s);
  keel_tls_ctx_destroy(srv_ctx);
  keel_tls_ctx_destroy(cli_ctx);
  cr_assert(ok, "%u schedulers: scenario did not finish", nsched);
  stop_node(nsched, expect);
}

static keel_term spawn_tls(keel_fiber_fn fn, void *arg) {
  keel_spawn_opts o = {.stack_size = STACK};
  keel_term pid = 0;
  cr_assert_eq(keel_spawn_fiber(fn, arg, &o, &pid), KEEL_OK);
  return pid;
}

static bool read_n(keel_socket s, uint8_t *buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    int64_t k = keel_net_recv(s, buf + have, n - have, LONG_MS);
    if (k <= 0)
      return false;
    have += (size_t)k;
  }
  return true;
}

/* Receives {ssl, S, Data} into buf: its length or a negative code. */
static int64_t recv_ssl(keel_proc *self, keel_socket s, void *buf, size_t cap) {
  keel_term m;
  int rc = recv_tag(self, "ssl", LONG_MS, &m);
  if (rc != KEEL_OK)
    return rc;
  keel_socket from;
  size_t len;
  if (!msg_is(m, "ssl", &from) || from != s || keel_tuple_arity(m) != 3)
    return KEEL_EBADARG;
  const uint8_t *d = keel_binary_data(keel_tuple_get(m, 2), &len);
  if (d == NULL || len > cap)
    return KEEL_ENOSPC;
  memcpy(buf, d, len);
  return (int64_t)len;
}

/* ---- echo ------------------------------------------------------------------
 */

#define ROUNDS 20

/* Passive server: keel_tls_accept, then echo until the client closes. */
static void echo_passive(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  int rc = keel_tls_accept(listen_s, srv_ctx, NULL, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  if (rc == KEEL_OK) {
    CHECK(keel_tls_established(c));
    uint8_t buf[256];
    int64_t n;
    while ((n = keel_net_recv(c, buf, sizeof buf, LONG_MS)) > 0)
      CHECK(keel_net_send(c, buf, (size_t)n) == KEEL_OK);
    CHECKV(n == KEEL_ECLOSED, n);
    keel_net_close(c);
  }
  mark_done();
}

/* Active once server: the handshake runs as the data is delivered. */
static void echo_active(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c;
  int rc = keel_net_accept(listen_s, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  CHECK(keel_tls_upgrade(c, srv_ctx, NULL) == KEEL_OK);
  CHECK(keel_tls_upgrade(c, srv_ctx, NULL) == KEEL_ESTATE);
  for (int i = 0; i < ROUNDS; i++) {
    CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
    uint8_t buf[256];
    size_t have = 0;
    while (have < 8) { /* a message may be split in records */
      int64_t n = recv_ssl(self, c, buf + have, sizeof buf - have);
      CHECKV(n > 0, n);
      if (n <= 0)
        break;
      have += (size_t)n;
      if (have < 8)
        CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
    }
    CHECK(keel_net_send(c, buf, have) == KEEL_OK);
  }
  CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
  keel_term m;
  CHECK(recv_tag(self, "ssl_closed", LONG_MS, &m) == KEEL_OK);
  CHECK(keel_net_send(c, "x", 1) == KEEL_ECLOSED);
  mark_done();
}

static void echo_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  char reason[128] = "";
  keel_tls_conn_opts o = {.reason = reason, .reason_cap = sizeof reason};
  int rc = keel_tls_connect("127.0.0.1", port, cli_ctx, &o, LONG_MS, &s);
  CHECKV(rc == KEEL_OK, rc);
  if (rc != KEEL_OK) {
    fprintf(stderr, "connect: %s\n", reason);
    mark_done();
    return;
  }
  char v[32], p[32];
  CHECK(keel_tls_version(s, v, sizeof v) > 0 && strcmp(v, "TLSv1.3") == 0);
  CHECK(keel_tls_negotiated_protocol(s, p, sizeof p) == 6 &&
        strcmp(p, "keel/1") == 0);
  CHECK(keel_tls_negotiated_protocol(s, p, 3) == KEEL_ENOSPC);
  for (int i = 0; i < ROUNDS; i++) {
    uint8_t out[8], in[8];
    for (int k = 0; k < 8; k++)
      out[k] = (uint8_t)(i * 8 + k);
    CHECK(keel_net_send(s, out, 8) == KEEL_OK);
    CHECK(read_n(s, in, 8) && memcmp(in, out, 8) == 0);
  }
  CHECK(keel_net_close(s) == KEEL_OK);
  CHECK(keel_net_send(s, "x", 1) == KEEL_ECLOSED);
  mark_done();
}

Test(tls, echo_passive_and_active, .timeout = 4 * TIMEOUT_S) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    spawn_tls(echo_passive, NULL);
    spawn_tls(echo_client, NULL);
    cr_assert(wait_done(2), "passive echo did not finish");
    spawn_tls(echo_active, NULL);
    spawn_tls(echo_client, NULL);
    stop(sched_counts[i], 4);
  }
  pki_remove(&pki);
}

/* ---- large transfer --------------------------------------------------------
 */

#define BIG ((size_t)4 << 20)

static uint8_t pattern(size_t i, unsigned seed) {
  uint32_t x = (uint32_t)(i / 4) * 2654435761u + seed;
  x ^= x >> 13;
  return (uint8_t)(x >> (8 * (i % 4)));
}

/* Reads BIG bytes and compares them with the pattern. (The buffer is the
 * fiber's own: a fiber may resume on another thread after a wait.) */
static bool check_in(keel_socket s, unsigned seed) {
  uint8_t *buf = malloc(65536);
  size_t have = 0;
  bool ok = buf != NULL;
  while (ok && have < BIG) {
    int64_t n = keel_net_recv(s, buf, 65536, LONG_MS);
    ok = n > 0;
    for (int64_t k = 0; ok && k < n; k++)
      ok = buf[k] == pattern(have + (size_t)k, seed);
    if (ok)
      have += (size_t)n;
  }
  free(buf);
  return ok;
}

static bool send_out(keel_socket s, unsigned seed) {
  uint8_t *b = malloc(BIG);
  if (b == NULL)
    return false;
  for (size_t i = 0; i < BIG; i++)
    b[i] = pattern(i, seed);
  bool ok = true;
  /* In pieces of odd sizes: records do not line up with sends. */
  for (size_t off = 0, step = 100003; off < BIG && ok; off += step)
    ok = keel_net_send(s, b + off, off + step > BIG ? BIG - off : step) ==
         KEEL_OK;
  free(b);
  return ok;
}

static void big_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  int rc = keel_tls_accept(listen_s, srv_ctx, NULL, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  CHECK(check_in(c, 1));
  CHECK(send_out(c, 2));
  uint8_t b;
  CHECK(keel_net_recv(c, &b, 1, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

static void big_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  int rc = keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, LONG_MS, &s);
  CHECKV(rc == KEEL_OK, rc);
  CHECK(send_out(s, 1));
  CHECK(check_in(s, 2));
  keel_net_close(s);
  mark_done();
}

Test(tls, large_transfer, .timeout = 4 * TIMEOUT_S) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    spawn_tls(big_server, NULL);
    spawn_tls(big_client, NULL);
    stop(sched_counts[i], 2);
  }
  pki_remove(&pki);
}

/* ---- verification ----------------------------------------------------------
 */

static void refusing_server(keel_proc *self, void *arg) {
  (void)self;
  int n = *(int *)arg;
  for (int i = 0; i < n; i++) {
    keel_socket c;
    int rc = keel_tls_accept(listen_s, srv_ctx, NULL, LONG_MS, &c);
    /* The client's alert, or its close. */
    CHECKV(rc == KEEL_ETLS || rc == KEEL_ECLOSED, rc);
  }
  mark_done();
}

static void verify_clients(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  char reason[128] = "";
  keel_tls_conn_opts o = {.server_name = "wrong.example",
                          .reason = reason,
                          .reason_cap = sizeof reason};
  keel_socket s = KEEL_SOCKET_NONE;
  int rc = keel_tls_connect("127.0.0.1", port, cli_ctx, &o, LONG_MS, &s);
  CHECKV(rc == KEEL_EVERIFY, rc);
  CHECK(strstr(reason, "hostname mismatch") != NULL);
  CHECK(s == KEEL_SOCKET_NONE);

  keel_tls_ctx *other;
  keel_tls_ctx_opts co = {.ca_file = pki.other_ca_file};
  CHECK(keel_tls_ctx_create(&co, &other) == KEEL_OK);
  reason[0] = '\0';
  o.server_name = "localhost";
  rc = keel_tls_connect("127.0.0.1", port, other, &o, LONG_MS, &s);
  CHECKV(rc == KEEL_EVERIFY, rc);
  CHECK(strstr(reason, "local issuer") != NULL);
  keel_tls_ctx_destroy(other);
  mark_done();
}

Test(tls, verify_failures) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    int n = 2;
    spawn_tls(refusing_server, &n);
    spawn_tls(verify_clients, NULL);
    stop(sched_counts[i], 2);
  }
  pki_remove(&pki);
}

/* ---- hostile peers ---------------------------------------------------------
 */

/* A plain TCP client: sends len bytes, then expects to be closed. */
static void plain_garbage(keel_socket s, const uint8_t *data, size_t len) {
  if (len > 0)
    CHECK(keel_net_send(s, data, len) == KEEL_OK);
  uint8_t buf[512];
  int64_t n;
  while ((n = keel_net_recv(s, buf, sizeof buf, LONG_MS)) > 0)
    ; /* an alert, maybe */
  CHECKV(n == KEEL_ECLOSED, n);
  keel_net_close(s);
}

#define FUZZ 40

static void garbage_server(keel_proc *self, void *arg) {
  (void)arg;
  /* Blocking handshakes: each garbage connection fails cleanly. */
  for (int i = 0; i < FUZZ + 1; i++) {
    keel_socket c;
    int rc = keel_tls_accept(listen_s, srv_ctx, NULL, LONG_MS, &c);
    CHECKV(rc == KEEL_ETLS || rc == KEEL_ECLOSED, rc);
  }
  /* Active mode: {ssl_error, S, {tls, Text}} then {ssl_closed, S}. */
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_tls_upgrade(c, srv_ctx, NULL) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  keel_term m;
  CHECK(recv_tag(self, "ssl_error", LONG_MS, &m) == KEEL_OK);
  keel_term r = keel_tuple_get(m, 2);
  CHECK(keel_is_tuple(r) && keel_tuple_get(r, 0) == keel_atom("tls") &&
        keel_is_binary(keel_tuple_get(r, 1)));
  CHECK(recv_tag(self, "ssl_closed", LONG_MS, &m) == KEEL_OK);
  /* Still serving: a real client gets through. */
  int rc = keel_tls_accept(listen_s, srv_ctx, NULL, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  uint8_t b[4];
  CHECK(read_n(c, b, 4) && memcmp(b, "ping", 4) == 0);
  CHECK(keel_net_send(c, "pong", 4) == KEEL_OK);
  keel_net_close(c);
  mark_done();
}

static void garbage_clients(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  uint32_t x = 12345;
  uint8_t data[2048];
  for (int i = 0; i < FUZZ + 2; i++) {
    keel_socket s;
    CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
    size_t len = 0;
    if (i == 0 || i == FUZZ + 1) {
      const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
      len = strlen(http);
      memcpy(data, http, len);
    } else {
      len = 1 + (x % sizeof data);
      for (size_t k = 0; k < len; k++) {
        x = x * 1103515245u + 12345u;
        data[k] = (uint8_t)(x >> 16);
      }
      if (i % 2 == 0) { /* a handshake record header with a random body */
        data[0] = 0x16;
        data[1] = 0x03;
        data[2] = (uint8_t)(i % 4);
        if (len > 5) {
          data[3] = (uint8_t)((len - 5) >> 8);
          data[4] = (uint8_t)(len - 5);
        }
        if (len > 6)
          data[5] = 0x01; /* ClientHello */
      }
    }
    plain_garbage(s, data, len);
  }
  keel_socket s;
  int rc = keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, LONG_MS, &s);
  CHECKV(rc == KEEL_OK, rc);
  CHECK(keel_net_send(s, "ping", 4) == KEEL_OK);
  uint8_t b[4];
  CHECK(read_n(s, b, 4) && memcmp(b, "pong", 4) == 0);
  keel_net_close(s);
  mark_done();
}

Test(tls, garbage_is_closed, .timeout = 4 * TIMEOUT_S) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    spawn_tls(garbage_server, NULL);
    spawn_tls(garbage_clients, NULL);
    stop(sched_counts[i], 2);
  }
  pki_remove(&pki);
}

/* ---- handshake timeout -----------------------------------------------------
 */

static void timeout_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  char reason[64] = "";
  keel_tls_conn_opts o = {.reason = reason, .reason_cap = sizeof reason};
  int rc = keel_tls_accept(listen_s, srv_ctx, &o, 300, &c);
  CHECKV(rc == KEEL_ETIMEDOUT, rc);
  CHECK(strcmp(reason, "handshake timeout") == 0);
  mark_done();
}

static void silent_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  plain_garbage(s, NULL, 0); /* sends nothing: closed by the server */
  mark_done();
}

Test(tls, handshake_timeout) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    spawn_tls(timeout_server, NULL);
    spawn_tls(silent_client, NULL);
    stop(sched_counts[i], 2);
  }
  pki_remove(&pki);
}

/* ---- contexts
 * ----------------------------------------------------------------
 */

Test(tls, ctx_errors) {
  setup_pki();
  keel_tls_ctx *c = NULL;
  keel_tls_ctx_opts o = {.server = true};
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_EINVAL); /* no cert */
  cr_assert_eq(keel_tls_ctx_create(NULL, &c), KEEL_EINVAL);
  o.cert_file = "/nonexistent/cert.pem";
  o.key_file = pki.key_file;
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_ENOENT);
  o.cert_file = NULL;
  o.cert_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n";
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_EDECODE);
  o.cert_pem = pki.ca_pem; /* the key is not the CA's */
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_EINVAL);
  o.cert_pem = pki.cert_pem;
  o.min_version = 11;
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_EINVAL);
  o.min_version = 13;
  static const char *const bad_alpn[] = {""};
  o.alpn = bad_alpn;
  o.alpn_count = 1;
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_EINVAL);
  o.alpn_count = 0;
  cr_assert_eq(keel_tls_ctx_create(&o, &c), KEEL_OK);
  keel_tls_ctx_destroy(c);
  keel_tls_ctx_opts co = {.verify = KEEL_TLS_VERIFY_PEER_REQUIRED};
  cr_assert_eq(keel_tls_ctx_create(&co, &c), KEEL_EINVAL);
  keel_tls_ctx_destroy(NULL);
  pki_remove(&pki);
}

/* ---- client certificates, active N, half close
 * -------------------------------
 */

static keel_tls_ctx *mtls_ctx;

static void mtls_server(keel_proc *self, void *arg) {
  (void)arg;
  char reason[128] = "";
  keel_tls_conn_opts o = {.reason = reason, .reason_cap = sizeof reason};
  keel_socket c;
  /* A client without a certificate is refused. */
  int rc = keel_tls_accept(listen_s, mtls_ctx, &o, LONG_MS, &c);
  CHECKV(rc == KEEL_ETLS, rc);
  CHECK(strstr(reason, "certificate") != NULL);
  /* One with a certificate the CA signed gets in. */
  rc = keel_tls_accept(listen_s, mtls_ctx, NULL, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 2) == KEEL_OK);
  char buf[16];
  for (int i = 0; i < 2; i++) {
    int64_t n = recv_ssl(self, c, buf, sizeof buf);
    CHECKV(n == 3, n);
    CHECK(keel_net_send(c, i == 0 ? "1" : "2", 1) == KEEL_OK);
  }
  keel_term m;
  CHECK(recv_tag(self, "ssl_passive", LONG_MS, &m) == KEEL_OK);
  /* The client's write shutdown is its close_notify: EOF here, while
   * this side may still send. */
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == KEEL_ECLOSED);
  CHECK(keel_net_send(c, "bye", 3) == KEEL_OK);
  keel_net_close(c);
  mark_done();
}

static void mtls_clients(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  /* TLS 1.3: the client is done before the server checks it; the
   * refusal comes as an alert on the first read. */
  int rc = keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, LONG_MS, &s);
  if (rc == KEEL_OK) {
    char b[4];
    rc = (int)keel_net_recv(s, b, sizeof b, LONG_MS);
    keel_net_close(s);
  }
  CHECKV(rc == KEEL_ETLS, rc);
  keel_tls_ctx *cert_ctx;
  keel_tls_ctx_opts co = {.ca_file = pki.ca_file,
                          .cert_file = pki.cert_file,
                          .key_file = pki.key_file};
  CHECK(keel_tls_ctx_create(&co, &cert_ctx) == KEEL_OK);
  rc = keel_tls_connect("127.0.0.1", port, cert_ctx, NULL, LONG_MS, &s);
  keel_tls_ctx_destroy(cert_ctx); /* the socket keeps what it needs */
  CHECKV(rc == KEEL_OK, rc);
  uint8_t b[3];
  CHECK(keel_net_send(s, "one", 3) == KEEL_OK);
  CHECK(read_n(s, b, 1) && b[0] == '1');
  CHECK(keel_net_send(s, "two", 3) == KEEL_OK);
  CHECK(read_n(s, b, 1) && b[0] == '2');
  CHECK(keel_net_shutdown(s, KEEL_NET_SHUT_WRITE) == KEEL_OK);
  CHECK(keel_net_send(s, "x", 1) == KEEL_ECLOSED);
  CHECK(read_n(s, b, 3) && memcmp(b, "bye", 3) == 0);
  CHECK(keel_net_recv(s, b, 1, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(s);
  mark_done();
}

Test(tls, client_certs_active_n_and_half_close) {
  setup_pki();
  for (unsigned i = 0; i < NCONF; i++) {
    start(sched_counts[i]);
    keel_tls_ctx_opts so = {.server = true,
                            .cert_pem = pki.cert_pem,
                            .key_pem = pki.key_pem,
                            .ca_file = pki.ca_file,
                            .verify = KEEL_TLS_VERIFY_PEER_REQUIRED};
    cr_assert_eq(keel_tls_ctx_create(&so, &mtls_ctx), KEEL_OK);
    spawn_tls(mtls_server, NULL);
    spawn_tls(mtls_clients, NULL);
    stop(sched_counts[i], 2);
    keel_tls_ctx_destroy(mtls_ctx);
  }
  pki_remove(&pki);
}
