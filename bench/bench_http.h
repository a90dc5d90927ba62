/*
 * bench_http.h - HTTP keep-alive throughput beside nginx (see
 * bench_http.c).
 */
#ifndef KEEL_BENCH_HTTP_H
#define KEEL_BENCH_HTTP_H

/* `keel bench http [--quick] [--runs N] [--no-nginx]`: wrk against Keel's
 * HTTP server and against nginx serving the same bytes, alternating runs;
 * prints keel/nginx/ratio lines of http_req_per_s and http_p99_ms.
 * Returns 0, 1 when wrk cannot measure Keel, 2 on a usage error. */
int keel_bench_http(int argc, char **argv);

#endif /* KEEL_BENCH_HTTP_H */
