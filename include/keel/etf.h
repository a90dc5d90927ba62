/*
 * keel/etf.h - Erlang's external term format (version 131).
 *
 * Encoding writes the same bytes as term_to_binary/2 of OTP 26 with
 * [{minor_version, 2}] (UTF-8 atoms, NEW_FLOAT_EXT, NEW_PID_EXT,
 * NEWER_REFERENCE_EXT, V4_PORT_EXT only when an id needs more than 28 bits),
 * except that maps of more than 32 pairs are written in key order where
 * Erlang writes them in its internal hash order; both decode to equal maps.
 *
 * Decoding accepts every form OTP emits outside the distribution header
 * (old and new pids/refs/ports, Latin-1 and UTF-8 atoms, FLOAT_EXT, STRING_EXT,
 * BIT_BINARY_EXT, MAP_EXT, EXPORT_EXT, zlib-compressed terms) and treats its
 * input as hostile: every read is bounds-checked, nesting depth costs no C
 * stack, memory is allocated once after a validating pass and is bounded by
 * a small multiple of the input size (plus the declared size of compressed
 * data, itself capped), and all failures are error codes.
 *
 * Thread-safety: both directions are reentrant; decoding may intern atoms
 * (the atom table is thread-safe).
 */
#ifndef KEEL_ETF_H
#define KEEL_ETF_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_ETF_VERSION 131

typedef struct keel_etf_encode_opts {
  int compressed;    /* 0: never; 1..9: zlib level (as {compressed, N}) */
  int minor_version; /* 2 (default when 0): UTF-8 atoms; 1: Latin-1 atoms
                        where possible, as OTP 25 by default */
} keel_etf_encode_opts;

typedef struct keel_etf_decode_opts {
  int safe;                /* non-zero: refuse to create new atoms
                              (binary_to_term(B, [safe])) */
  size_t max_uncompressed; /* cap on a compressed term's declared size;
                              0 means 64 MiB */
} keel_etf_decode_opts;

/* Appends the encoding of t (starting with the version byte) to out.
 * opts may be NULL. Errors: KEEL_ENOMEM; KEEL_EBADARG for terms ETF cannot
 * carry (resources, KEEL_NONE, pattern variables). On error out->len is
 * restored. */
int keel_etf_encode(keel_buf *out, keel_term t,
                    const keel_etf_encode_opts *opts);

/* Exact encoded size of t without the version byte and uncompressed, or a
 * negative error (KEEL_EBADARG). */
long long keel_etf_size(keel_term t);

/* Decodes one term starting with the version byte from buf[0..len) into h.
 * *used (may be NULL) receives the bytes consumed; trailing bytes are not
 * an error. opts may be NULL.
 * Errors: KEEL_ETRUNC (input ends early), KEEL_EDECODE (malformed: unknown
 * tag, bad UTF-8 atom, bad version, non-canonical forms Erlang rejects),
 * KEEL_ELIMIT (a size cap exceeded), KEEL_ENOENT (safe mode and an unknown
 * atom), KEEL_ESYSLIMIT (atom table full), KEEL_EUNSUPPORTED (closures,
 * atom cache references), KEEL_ENOMEM. Nothing is left allocated in h that
 * matters on error (the heap keeps its memory until destroyed). */
int keel_etf_decode(keel_heap *h, const uint8_t *buf, size_t len, size_t *used,
                    keel_term *out, const keel_etf_decode_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_ETF_H */
