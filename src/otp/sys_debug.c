/*
 * sys_debug.c - sys:statistics and sys:log for the behaviours (see
 * sys_debug.h).
 */
#include <time.h>

#include "otp/sys_debug.h"

void keel__sysdbg_init(keel__sysdbg *d) {
  *d = (keel__sysdbg){.log = KEEL_NIL};
}

/* Drops the oldest event: the log is rebuilt from its log_n - 1 newest. */
static bool drop_oldest(keel__sysdbg *d, keel_heap *h) {
  keel_term keep[KEEL_SYS_LOG_MAX], l = d->log, nl = KEEL_NIL;
  unsigned k = 0;
  for (; k + 1 < d->log_n && keel_is_cons(l); l = keel_tl(l))
    keep[k++] = keel_hd(l);
  while (k > 0 && nl != KEEL_NONE)
    nl = keel_cons(h, keep[--k], nl);
  if (nl == KEEL_NONE)
    return false;
  d->log = nl;
  d->log_n--;
  return true;
}

void keel__sysdbg_event(keel__sysdbg *d, keel_heap *h, const char *tag,
                        keel_term a, keel_term b) {
  if (d->log_max == 0)
    return;
  keel_term ev = b == KEEL_NONE ? keel_tuple(h, 2, keel_atom(tag), a)
                                : keel_tuple(h, 3, keel_atom(tag), a, b);
  if (ev == KEEL_NONE || (d->log_n == d->log_max && !drop_oldest(d, h)))
    return; /* out of memory: the event is not logged */
  keel_term l = keel_cons(h, ev, d->log);
  if (l != KEEL_NONE) {
    d->log = l;
    d->log_n++;
  }
}

/* Unix time in ms. */
static int64_t wall_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint64_t reductions(keel_proc *self) {
  keel_process_info_t in;
  return keel_process_info_ex(keel_self(self),
                              KEEL_PINFO_NO_QUEUE | KEEL_PINFO_NO_SYMBOL,
                              &in) == KEEL_OK
             ? in.reductions
             : 0;
}

keel_term keel__sysdbg_statistics(keel__sysdbg *d, keel_proc *self,
                                  keel_heap *h, keel_term flag) {
  if (flag == KEEL_ATOM(TRUE)) {
    d->stats_on = true;
    d->start_ms = wall_ms();
    d->in = d->out = 0;
    d->red0 = reductions(self);
  } else if (flag == KEEL_ATOM(FALSE)) {
    d->stats_on = false;
  } else if (!d->stats_on) {
    return keel_atom("no_statistics");
  } else {
    uint64_t red = reductions(self);
    return keel_build(h,
                      "[{start_time, ~L}, {current_time, ~L}, "
                      "{reductions, ~L}, {messages_in, ~L}, "
                      "{messages_out, ~L}]",
                      (long long)d->start_ms, (long long)wall_ms(),
                      (long long)(red >= d->red0 ? red - d->red0 : 0),
                      (long long)d->in, (long long)d->out);
  }
  return KEEL_ATOM(OK);
}

keel_term keel__sysdbg_log(keel__sysdbg *d, keel_heap *h, keel_term arg) {
  if (arg == keel_atom("get")) {
    if (d->log_max == 0)
      return keel_atom("no_log");
    keel_term out = KEEL_NIL;
    for (keel_term l = d->log; keel_is_cons(l) && out != KEEL_NONE;
         l = keel_tl(l))
      out = keel_cons(h, keel_hd(l), out);
    return out;
  }
  int64_t n;
  if (keel_get_int64(arg, &n) != KEEL_OK || n < 0 || n > KEEL_SYS_LOG_MAX)
    return keel_atom("badarg");
  d->log_max = (unsigned)n;
  d->log = KEEL_NIL;
  d->log_n = 0;
  return KEEL_ATOM(OK);
}
