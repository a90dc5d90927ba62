/*
 * ref.c - node-unique references (erlang:make_ref) and pid references
 * (aliases).
 *
 * A reference number comes from a node-wide 62-bit counter; schedulers take
 * blocks of RT_REF_BLOCK numbers so that making a ref costs no shared
 * atomic operation in the common case. A plain ref is a 3-word local ref
 * (as OTP's: 18 + 32 + 32 bits, holding the number); a pid ref (alias)
 * has 5 words, the last two naming the owning process, so a send to it
 * is routed without any table lookup.
 */
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"

#define RT_REF_BLOCK 1024u
#define RT_REF_LIMIT (UINT64_C(1) << RT_EK_SHIFT)

uint64_t keel__rt_ref_next(rt_node *n) {
  rt_sched *s = keel__rt_tl_sched;
  if (s == NULL)
    return atomic_fetch_add_explicit(&n->ref_next, 1, memory_order_relaxed);
  if (s->ref_cur == s->ref_end) {
    s->ref_cur = atomic_fetch_add_explicit(&n->ref_next, RT_REF_BLOCK,
                                           memory_order_relaxed);
    s->ref_end = s->ref_cur + RT_REF_BLOCK;
  }
  return s->ref_cur++;
}

keel_term keel__rt_ref_term(keel_heap *h, uint64_t num, uint64_t owner) {
  keel_ref_parts r;
  r.node = keel_term_local_node(&r.creation);
  r.len = owner != RT_NO_PID ? 5 : 3;
  r.id[0] = (uint32_t)(num & 0x3ffffu);
  r.id[1] = (uint32_t)(num >> 18);
  r.id[2] = (uint32_t)(num >> 50);
  r.id[3] = (uint32_t)owner;
  r.id[4] = (uint32_t)(owner >> 32);
  return keel_ref_make(h, &r);
}

bool keel__rt_ref_decode(keel_term t, uint64_t *num, uint64_t *owner) {
  keel_ref_parts r;
  if (keel_ref_get(t, &r) != KEEL_OK || (r.len != 3 && r.len != 5))
    return false;
  uint32_t creation;
  keel_term node = keel_term_local_node(&creation);
  if (r.node != node || r.creation != creation || r.id[0] > 0x3ffffu ||
      r.id[2] >= (1u << 12))
    return false;
  *num = (uint64_t)r.id[0] | (uint64_t)r.id[1] << 18 | (uint64_t)r.id[2] << 50;
  *owner = r.len == 5 ? ((uint64_t)r.id[4] << 32 | r.id[3]) : RT_NO_PID;
  return *num != 0 && (r.len == 3 || *owner <= KEEL_PID_NUMBER_MAX);
}

keel_term keel_make_ref(keel_heap *h) {
  rt_node *n = keel__rt;
  if (n == NULL || h == NULL)
    return KEEL_NONE;
  return keel__rt_ref_term(h, keel__rt_ref_next(n), RT_NO_PID);
}
