/*
 * web.h - the web side of `keel run`: metrics over the runtime's events,
 * a poller sampling them, the live dashboard and the HTTP server that
 * serves it.
 */
#ifndef KEEL_CLI_WEB_H
#define KEEL_CLI_WEB_H

#include <stdint.h>

#include "keel/term.h"

typedef struct keel_web_opts {
  const char *bind;   /* NULL: 127.0.0.1 */
  uint16_t port;      /* 0: an ephemeral port */
  keel_term root_sup; /* the tree the supervision page shows */
} keel_web_opts;

typedef struct keel_web keel_web;

/* Starts everything on the running node (from a thread that is not a
 * process). KEEL_OK with *out set, or the first error (nothing is left
 * running then). */
int keel_web_start(const keel_web_opts *opts, keel_web **out);

/* The port the HTTP server listens on. */
uint16_t keel_web_port(const keel_web *w);

/* Stops the server, the poller and the dashboard; frees w. NULL: no-op. */
void keel_web_stop(keel_web *w);

#endif /* KEEL_CLI_WEB_H */
