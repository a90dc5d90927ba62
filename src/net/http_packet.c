/*
 * http_packet.c - inet's {packet, http | http_bin | httph | httph_bin}:
 * the packet boundaries (a line; in the headers a line and the lines
 * folded into it) and the decoding of one packet into the terms of
 * erlang:decode_packet:
 *
 *   {http_request, Method, Uri, {Major, Minor}}
 *   {http_response, {Major, Minor}, Code, Reason}
 *   {http_header, Index, Field, UnmodifiedField, Value}
 *   http_eoh
 *   {http_error, Line}
 *
 * Strings are lists of bytes (http, httph) or binaries (the _bin types).
 * Method is an atom for the seven methods of RFC 2068 ('GET', ...), else
 * a string; Field an atom for the header names inet knows (Index their
 * 1-based place in its table), else the name with its case normalised
 * (Index 0). Uri is '*', {abs_path, Path}, {absoluteURI, http | https,
 * Host, Port | undefined, Path}, {scheme, Scheme, Rest} or a string.
 *
 * Every decoded piece lies inside the packet; numbers have at most 9
 * digits (more is an http_error, never an overflow).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "keel/net.h"
#include "net/net_internal.h"

/* The header names that decode to atoms, in inet's order (the Index). */
static const char *const known_fields[] = {"Cache-Control",
                                           "Connection",
                                           "Date",
                                           "Pragma",
                                           "Transfer-Encoding",
                                           "Upgrade",
                                           "Via",
                                           "Accept",
                                           "Accept-Charset",
                                           "Accept-Encoding",
                                           "Accept-Language",
                                           "Authorization",
                                           "From",
                                           "Host",
                                           "If-Modified-Since",
                                           "If-Match",
                                           "If-None-Match",
                                           "If-Range",
                                           "If-Unmodified-Since",
                                           "Max-Forwards",
                                           "Proxy-Authorization",
                                           "Range",
                                           "Referer",
                                           "User-Agent",
                                           "Age",
                                           "Location",
                                           "Proxy-Authenticate",
                                           "Public",
                                           "Retry-After",
                                           "Server",
                                           "Vary",
                                           "Warning",
                                           "Www-Authenticate",
                                           "Allow",
                                           "Content-Base",
                                           "Content-Encoding",
                                           "Content-Language",
                                           "Content-Length",
                                           "Content-Location",
                                           "Content-Md5",
                                           "Content-Range",
                                           "Content-Type",
                                           "Etag",
                                           "Expires",
                                           "Last-Modified",
                                           "Accept-Ranges",
                                           "Set-Cookie",
                                           "Set-Cookie2",
                                           "X-Forwarded-For",
                                           "Cookie",
                                           "Keep-Alive",
                                           "Proxy-Connection"};

static const char *const known_methods[] = {"OPTIONS", "GET",    "HEAD", "POST",
                                            "PUT",     "DELETE", "TRACE"};

#define NKNOWN(a) (sizeof(a) / sizeof(a)[0])
#define MAX_NAME 50 /* longer field names are left as they are */

static bool is_http_type(unsigned t) {
  return t >= KEEL_NET_PACKET_HTTP && t <= KEEL_NET_PACKET_HTTPH_BIN;
}

static bool is_sp(uint8_t c) {
  return c == ' ' || c == '\t';
}

/* A token character (RFC 2616's: not a control, space or separator). */
static bool is_tchar(uint8_t c) {
  return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* ---- boundaries ------------------------------------------------------------
 */

int64_t keel__http_packet_len(const uint8_t *p, size_t n, bool headers,
                              size_t max) {
  if (n == 0)
    return 0;
  if ((n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n'))
    return n > max ? KEEL_ELIMIT : (int64_t)n; /* the empty line */
  size_t from = 0;
  for (;;) {
    const uint8_t *nl = memchr(p + from, '\n', n - from);
    if (nl == NULL)
      return n >= max ? KEEL_ELIMIT : 0;
    size_t len = (size_t)(nl - p) + 1;
    if (len > max)
      return KEEL_ELIMIT;
    if (!headers)
      return (int64_t)len;
    if (len == n)
      return 0; /* a folded line may follow: wait for its first byte */
    if (!is_sp(p[len]) || len <= 2)
      return (int64_t)len;
    from = len; /* obs-fold: the value goes on */
  }
}

/* ---- terms -----------------------------------------------------------------
 */

typedef struct dec {
  keel_heap *h;
  bool bin;
  bool oom;
} dec;

/* A string: a binary (_bin types) or a list of bytes. */
static keel_term str(dec *d, const uint8_t *p, size_t n) {
  if (d->oom)
    return KEEL_NIL;
  keel_term t;
  if (d->bin) {
    t = keel_binary(d->h, p, n);
  } else {
    t = KEEL_NIL;
    for (size_t i = n; i > 0 && t != KEEL_NONE; i--)
      t = keel_cons(d->h, keel_small(p[i - 1]), t);
  }
  if (t == KEEL_NONE) {
    d->oom = true;
    return KEEL_NIL;
  }
  return t;
}

static keel_term tup(dec *d, keel_term t) {
  if (t == KEEL_NONE)
    d->oom = true;
  return t;
}

/* Up to 9 decimal digits at p[*i..n): the value, or -1 when there is no
 * digit or too many. */
static int64_t number(const uint8_t *p, size_t n, size_t *i) {
  size_t s = *i;
  int64_t v = 0;
  while (*i < n && p[*i] >= '0' && p[*i] <= '9' && *i - s < 9)
    v = v * 10 + (p[(*i)++] - '0');
  if (*i == s || (*i < n && p[*i] >= '0' && p[*i] <= '9'))
    return -1;
  return v;
}

/* "HTTP/Major.Minor" at p[*i..n): the {Major, Minor} tuple, KEEL_NONE
 * when malformed. */
static keel_term version(dec *d, const uint8_t *p, size_t n, size_t *i) {
  if (n - *i < 5 || memcmp(p + *i, "HTTP/", 5) != 0)
    return KEEL_NONE;
  *i += 5;
  int64_t major = number(p, n, i);
  if (major < 0 || *i >= n || p[*i] != '.')
    return KEEL_NONE;
  (*i)++;
  int64_t minor = number(p, n, i);
  if (minor < 0)
    return KEEL_NONE;
  return tup(d, keel_tuple(d->h, 2, keel_small(major), keel_small(minor)));
}

static void skip_sp(const uint8_t *p, size_t n, size_t *i) {
  while (*i < n && is_sp(p[*i]))
    (*i)++;
}

/* {absoluteURI, Scheme, Host, Port, Path} of the part after "scheme://". */
static keel_term absolute_uri(dec *d, keel_term scheme, const uint8_t *p,
                              size_t n) {
  const uint8_t *slash = memchr(p, '/', n);
  size_t hl = slash != NULL ? (size_t)(slash - p) : n; /* host[:port] */
  keel_term path =
      slash != NULL ? str(d, slash, n - hl) : str(d, (const uint8_t *)"/", 1);
  size_t host_len = hl, port_at = hl;
  if (hl > 0 && p[0] == '[' && memchr(p, ']', hl) != NULL) { /* [v6] */
    host_len = (size_t)((const uint8_t *)memchr(p, ']', hl) - p) + 1;
    if (host_len < hl && p[host_len] == ':')
      port_at = host_len + 1;
  } else {
    const uint8_t *colon = memchr(p, ':', hl);
    if (colon != NULL) {
      host_len = (size_t)(colon - p);
      port_at = host_len + 1;
    }
  }
  keel_term port = keel_atom("undefined");
  if (port_at < hl) {
    size_t i = port_at;
    int64_t v = number(p, hl, &i);
    if (v > 0 && i == hl)
      port = keel_small(v);
  }
  keel_term host = str(d, p, host_len);
  return tup(d, keel_tuple(d->h, 5, keel_atom("absoluteURI"), scheme, host,
                           port, path));
}

static keel_term uri(dec *d, const uint8_t *p, size_t n) {
  if (n == 1 && p[0] == '*')
    return keel_atom("*");
  if (n <= 1 || p[0] == '/')
    return tup(d, keel_tuple(d->h, 2, keel_atom("abs_path"), str(d, p, n)));
  if (n >= 7 && strncasecmp((const char *)p, "http://", 7) == 0)
    return absolute_uri(d, keel_atom("http"), p + 7, n - 7);
  if (n >= 8 && strncasecmp((const char *)p, "https://", 8) == 0)
    return absolute_uri(d, keel_atom("https"), p + 8, n - 8);
  const uint8_t *colon = memchr(p, ':', n);
  if (colon == NULL)
    return str(d, p, n);
  size_t sl = (size_t)(colon - p);
  return tup(d, keel_tuple(d->h, 3, keel_atom("scheme"), str(d, p, sl),
                           str(d, colon + 1, n - sl - 1)));
}

/* Status-Line: HTTP/M.m SP+ Code [SP+ Reason]. */
static keel_term response(dec *d, const uint8_t *p, size_t n) {
  size_t i = 0;
  keel_term v = version(d, p, n, &i);
  if (v == KEEL_NONE || i >= n || !is_sp(p[i]))
    return KEEL_NONE;
  skip_sp(p, n, &i);
  int64_t code = 0;
  if (i < n && p[i] >= '0' && p[i] <= '9' && (code = number(p, n, &i)) < 0)
    return KEEL_NONE;
  size_t before = i;
  skip_sp(p, n, &i);
  if (i == before && i < n)
    return KEEL_NONE; /* the code runs into the reason */
  return tup(d, keel_tuple(d->h, 4, keel_atom("http_response"), v,
                           keel_small(code), str(d, p + i, n - i)));
}

/* Request-Line: Method SP+ Request-URI [SP+ HTTP/M.m]. */
static keel_term request(dec *d, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar(p[i]))
    i++;
  size_t ml = i;
  if (ml == 0 || i >= n || !is_sp(p[i]))
    return KEEL_NONE;
  keel_term method = KEEL_NONE;
  for (size_t k = 0; k < NKNOWN(known_methods); k++)
    if (strlen(known_methods[k]) == ml && memcmp(known_methods[k], p, ml) == 0)
      method = keel_atom(known_methods[k]);
  if (method == KEEL_NONE)
    method = str(d, p, ml);
  skip_sp(p, n, &i);
  size_t us = i;
  while (i < n && !is_sp(p[i]))
    i++;
  if (i == us)
    return KEEL_NONE;
  keel_term u = uri(d, p + us, i - us);
  skip_sp(p, n, &i);
  keel_term v;
  if (i == n) /* HTTP/0.9 */
    v = tup(d, keel_tuple(d->h, 2, keel_small(0), keel_small(9)));
  else if ((v = version(d, p, n, &i)) == KEEL_NONE || i != n)
    return KEEL_NONE;
  return tup(d, keel_tuple(d->h, 4, keel_atom("http_request"), method, u, v));
}

/* Header: Name ":" SP* Value (folded lines kept in the value). */
static keel_term header(dec *d, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar(p[i]))
    i++;
  size_t nl = i;
  if (nl == 0 || i >= n || p[i] != ':')
    return KEEL_NONE;
  char norm[MAX_NAME];
  keel_term field = KEEL_NONE;
  int64_t index = 0;
  if (nl <= MAX_NAME) {
    bool up = true; /* Content-Length: capitals after '-' */
    for (size_t k = 0; k < nl; k++) {
      char c = (char)p[k];
      norm[k] = up && c >= 'a' && c <= 'z'    ? (char)(c - 32)
                : !up && c >= 'A' && c <= 'Z' ? (char)(c + 32)
                                              : c;
      up = c == '-';
    }
    for (size_t k = 0; k < NKNOWN(known_fields) && index == 0; k++)
      if (strlen(known_fields[k]) == nl &&
          memcmp(known_fields[k], norm, nl) == 0)
        index = (int64_t)k + 1;
    field = index != 0 ? keel_atom(known_fields[index - 1])
                       : str(d, (const uint8_t *)norm, nl);
  } else {
    field = str(d, p, nl);
  }
  i++;
  skip_sp(p, n, &i);
  return tup(d, keel_tuple(d->h, 5, keel_atom("http_header"), keel_small(index),
                           field, str(d, p, nl), str(d, p + i, n - i)));
}

keel_term keel__http_packet_decode(keel_heap *h, const uint8_t *p, size_t len,
                                   uint8_t *state, bool bin) {
  dec d = {.h = h, .bin = bin};
  uint8_t before = *state;
  size_t n = len; /* without the line's CRLF or LF */
  if (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n')
    n -= 2;
  else if (n >= 1 && p[n - 1] == '\n')
    n -= 1;
  keel_term t;
  if (*state == 0) {
    t = n >= 5 && memcmp(p, "HTTP/", 5) == 0 ? response(&d, p, n)
                                             : request(&d, p, n);
    if (t != KEEL_NONE)
      *state = 1;
  } else if (n == 0) {
    *state = 0;
    t = keel_atom("http_eoh");
  } else {
    t = header(&d, p, n);
  }
  if (t == KEEL_NONE && !d.oom)
    t = tup(&d, keel_tuple(h, 2, keel_atom("http_error"), str(&d, p, len)));
  if (d.oom) {
    *state = before;
    return KEEL_NONE;
  }
  return t;
}

void keel__http_packet_step(const uint8_t *p, size_t len, uint8_t *state) {
  keel_heap h;
  keel_heap_init(&h);
  (void)keel__http_packet_decode(&h, p, len, state, true);
  keel_heap_destroy(&h);
}

int keel_net_decode_http(keel_heap *h, keel_net_packet type, const void *data,
                         size_t len, size_t max, size_t *used, keel_term *out) {
  if (h == NULL || out == NULL || used == NULL || (data == NULL && len > 0) ||
      !is_http_type((unsigned)type))
    return KEEL_EINVAL;
  bool headers =
      type == KEEL_NET_PACKET_HTTPH || type == KEEL_NET_PACKET_HTTPH_BIN;
  int64_t n = keel__http_packet_len(
      data, len, headers, max != 0 ? max : KEEL_NET_PACKET_MAX_DEFAULT);
  if (n < 0)
    return (int)n;
  if (n == 0)
    return KEEL_ETRUNC;
  uint8_t state = headers ? 1 : 0;
  bool bin =
      type == KEEL_NET_PACKET_HTTP_BIN || type == KEEL_NET_PACKET_HTTPH_BIN;
  keel_term t = keel__http_packet_decode(h, data, (size_t)n, &state, bin);
  if (t == KEEL_NONE)
    return KEEL_ENOMEM;
  *used = (size_t)n;
  *out = t;
  return KEEL_OK;
}
