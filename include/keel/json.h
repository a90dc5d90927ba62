/*
 * keel/json.h - JSON (RFC 8259) to and from terms.
 *
 * Mapping, decoding:
 *   object -> map with binary keys (a repeated key: the last one wins)
 *   array  -> proper list
 *   string -> binary (UTF-8; escapes decoded, \uD83D\uDE00 pairs joined)
 *   number -> integer when it has no fraction or exponent (big integers
 *             included), float otherwise
 *   true / false / null -> the atoms true, false, null
 * Mapping, encoding:
 *   map    -> object; keys may be binaries, atoms or integers (written as
 *             strings); any other key type is KEEL_EBADARG
 *   list   -> array (proper lists only)
 *   binary -> string (must be valid UTF-8, else KEEL_EBADARG)
 *   atom   -> true/false/null literals, other atoms as strings
 *   integer, float -> number (floats in shortest round-trip form)
 *   anything else (tuples, pids, refs, ...) -> KEEL_EBADARG
 *
 * The decoder treats its input as hostile: bounded nesting depth
 * (KEEL_JSON_MAX_DEPTH), strict RFC 8259 grammar, no crash on any input.
 * Thread-safety: reentrant.
 */
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <stddef.h>

#include "keel/buf.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_JSON_MAX_DEPTH 512

/* Longest integer the decoder accepts, in digits (decoding is quadratic in
 * the digit count; longer integers are KEEL_ELIMIT). */
#define KEEL_JSON_MAX_INT_DIGITS 10000

typedef struct keel_json_opts {
  int pretty; /* encoding: non-zero indents with two spaces */
} keel_json_opts;

/* Appends the JSON text of t to out (no NUL). opts may be NULL.
 * Errors: KEEL_EBADARG (a term JSON cannot represent), KEEL_EINVAL (out is
 * NULL), KEEL_ENOMEM. On error out->len is restored. */
int keel_json_encode(keel_buf *out, keel_term t, const keel_json_opts *opts);

/* Decodes exactly one JSON value (surrounding whitespace allowed) from
 * text[0..len) into h. Errors: KEEL_EPARSE (malformed, or trailing data),
 * KEEL_ELIMIT (nesting deeper than KEEL_JSON_MAX_DEPTH, or an integer longer
 * than KEEL_JSON_MAX_INT_DIGITS), KEEL_ERANGE (a number beyond the range of
 * a double, such as 1e400: Erlang has no infinities), KEEL_EINVAL (a NULL
 * argument), KEEL_ENOMEM. */
int keel_json_decode(keel_heap *h, const char *text, size_t len,
                     keel_term *out);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_JSON_H */
