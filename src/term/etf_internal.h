/*
 * etf_internal.h - tag values of the external term format and byte helpers
 * shared by etf_encode.c and etf_decode.c (and white-box tests).
 */
#ifndef KEEL_ETF_INTERNAL_H
#define KEEL_ETF_INTERNAL_H

#include <stdint.h>

enum keel__etf_tag {
  KEEL_ETF_COMPRESSED = 80,
  KEEL_ETF_NEW_FLOAT = 70,
  KEEL_ETF_BIT_BINARY = 77,
  KEEL_ETF_ATOM_CACHE_REF = 82,
  KEEL_ETF_DIST_HEADER = 68,
  KEEL_ETF_NEW_PID = 88,
  KEEL_ETF_NEW_PORT = 89,
  KEEL_ETF_NEWER_REFERENCE = 90,
  KEEL_ETF_SMALL_INTEGER = 97,
  KEEL_ETF_INTEGER = 98,
  KEEL_ETF_FLOAT = 99,
  KEEL_ETF_ATOM = 100,
  KEEL_ETF_REFERENCE = 101,
  KEEL_ETF_PORT = 102,
  KEEL_ETF_PID = 103,
  KEEL_ETF_SMALL_TUPLE = 104,
  KEEL_ETF_LARGE_TUPLE = 105,
  KEEL_ETF_NIL = 106,
  KEEL_ETF_STRING = 107,
  KEEL_ETF_LIST = 108,
  KEEL_ETF_BINARY = 109,
  KEEL_ETF_SMALL_BIG = 110,
  KEEL_ETF_LARGE_BIG = 111,
  KEEL_ETF_NEW_FUN = 112,
  KEEL_ETF_EXPORT = 113,
  KEEL_ETF_NEW_REFERENCE = 114,
  KEEL_ETF_SMALL_ATOM = 115,
  KEEL_ETF_MAP = 116,
  KEEL_ETF_FUN = 117,
  KEEL_ETF_ATOM_UTF8 = 118,
  KEEL_ETF_SMALL_ATOM_UTF8 = 119,
  KEEL_ETF_V4_PORT = 120,
  KEEL_ETF_LOCAL = 121
};

/* Longest list that is written as STRING_EXT. */
#define KEEL_ETF_STRING_MAX 0xffff

static inline uint32_t keel__get_be16(const uint8_t *p) {
  return (uint32_t)p[0] << 8 | p[1];
}
static inline uint32_t keel__get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static inline uint64_t keel__get_be64(const uint8_t *p) {
  return (uint64_t)keel__get_be32(p) << 32 | keel__get_be32(p + 4);
}
static inline void keel__put_be16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void keel__put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void keel__put_be64(uint8_t *p, uint64_t v) {
  keel__put_be32(p, (uint32_t)(v >> 32));
  keel__put_be32(p + 4, (uint32_t)v);
}

#endif /* KEEL_ETF_INTERNAL_H */
