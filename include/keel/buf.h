/*
 * keel/buf.h - a growable byte buffer, the output type of every encoder.
 *
 * Ownership: the caller owns the keel_buf struct (usually on its stack) and
 * the bytes it points to; keel_buf_free() releases the bytes. A keel_buf must
 * not be used by two threads at once.
 */
#ifndef KEEL_BUF_H
#define KEEL_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_buf {
  uint8_t *data; /* bytes written so far; NULL until the first write */
  size_t len;    /* number of valid bytes */
  size_t cap;    /* allocated size of data */
} keel_buf;

/* Prepares an empty buffer. Never fails (allocates lazily). */
void keel_buf_init(keel_buf *b);

/* Releases the bytes and leaves the buffer empty and reusable. */
void keel_buf_free(keel_buf *b);

/* Makes room for at least `extra` more bytes. KEEL_OK or KEEL_ENOMEM. */
int keel_buf_reserve(keel_buf *b, size_t extra);

/* Appends n bytes. KEEL_OK or KEEL_ENOMEM (the buffer is unchanged then). */
int keel_buf_append(keel_buf *b, const void *data, size_t n);

/* Appends one byte. KEEL_OK or KEEL_ENOMEM. */
int keel_buf_putc(keel_buf *b, uint8_t c);

/* Appends formatted text (printf syntax, no NUL stored).
 * KEEL_OK, KEEL_ENOMEM or KEEL_EINVAL (bad format). */
int keel_buf_printf(keel_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Takes the bytes out of the buffer: returns them (caller frees with free())
 * and leaves the buffer empty. *len receives the length. May return NULL when
 * the buffer is empty. */
uint8_t *keel_buf_take(keel_buf *b, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_BUF_H */
