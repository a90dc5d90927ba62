/*
 * demo.h - the work done by the demo node's workers: random terms pushed
 * through the ETF and JSON codecs and checked for exact round-trips.
 */
#ifndef KEEL_CLI_DEMO_H
#define KEEL_CLI_DEMO_H

#include <stdint.h>

/* Builds one random term, encodes it to ETF and decodes it back, then one
 * random JSON-representable term through JSON, and checks that both come
 * back exactly equal (=:=). *rng is the caller's xorshift64 state (never 0).
 * Returns KEEL_OK, the codec's error, or KEEL_ENOMATCH when a decoded term
 * differs from the original (*what then names the codec). */
int keel_demo_roundtrip(uint64_t *rng, const char **what);

#endif /* KEEL_CLI_DEMO_H */
