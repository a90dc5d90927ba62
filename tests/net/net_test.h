/*
 * net_test.h - helpers of the socket tests: scenarios run in fiber
 * processes, which record failed checks (the test thread asserts them);
 * the test thread waits for the scenario's fibers to finish with a bound.
 * Header-only: include once per test file.
 */
#ifndef KEEL_NET_TEST_H
#define KEEL_NET_TEST_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "keel/net.h"
#include "keel/runtime.h"

static const unsigned sched_counts[] = {1, 2, 8};
#define NCONF (sizeof sched_counts / sizeof sched_counts[0])
#define TIMEOUT_S 120
/* Receive timeouts of the scenarios: generous, never reached when all
 * is well. */
#define LONG_MS 30000

static _Atomic int fails;
static char fail_msg[512];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long done;

static inline void note_fail(int line, const char *what, long long v) {
  if (atomic_fetch_add(&fails, 1) == 0)
    snprintf(fail_msg, sizeof fail_msg, "line %d: %s (value %lld)", line, what,
             v);
}

/* Records a failed check; the value shown is v. */
#define CHECKV(cond, v)                                                        \
  do {                                                                         \
    if (!(cond))                                                               \
      note_fail(__LINE__, #cond, (long long)(v));                              \
  } while (0)
#define CHECK(cond) CHECKV(cond, 0)

static inline void mark_done(void) {
  pthread_mutex_lock(&mu);
  done++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits until `target` fibers called mark_done (bounded). */
static inline bool wait_done(long target) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += TIMEOUT_S;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (done < target && rc == 0)
    rc = pthread_cond_timedwait(&cv, &mu, &dl);
  bool ok = done >= target;
  pthread_mutex_unlock(&mu);
  return ok;
}

static inline void start_node(unsigned nsched) {
  keel_node_opts o = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&o), KEEL_OK, "start with %u", nsched);
  atomic_store(&fails, 0);
  fail_msg[0] = '\0';
  pthread_mutex_lock(&mu);
  done = 0;
  pthread_mutex_unlock(&mu);
}

static inline void stop_node(unsigned nsched, long expect_done) {
  bool ok = wait_done(expect_done);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert(ok, "%u schedulers: scenario did not finish (%ld of %ld)", nsched,
            done, expect_done);
  cr_assert_eq(atomic_load(&fails), 0, "%u schedulers: %s", nsched, fail_msg);
}

static inline keel_term spawn_f(keel_fiber_fn fn, void *arg) {
  keel_term pid = 0;
  cr_assert_eq(keel_spawn_fiber(fn, arg, NULL, &pid), KEEL_OK);
  return pid;
}

/* The bound port of a listening socket. */
static inline uint16_t port_of(keel_socket l) {
  keel_net_addr a;
  return keel_net_sockname(l, &a) == KEEL_OK ? a.port : 0;
}

/* Sockets of the message {Tag, Port, ...} (KEEL_SOCKET_NONE if not). */
static inline bool msg_is(keel_term m, const char *tag, keel_socket *s) {
  if (!keel_is_tuple(m) || keel_tuple_arity(m) < 1 ||
      keel_tuple_get(m, 0) != keel_atom(tag))
    return false;
  if (s != NULL && keel_tuple_arity(m) < 2)
    return false;
  return s == NULL || keel_net_socket_of(keel_tuple_get(m, 1), s) == KEEL_OK;
}

/* Raises the descriptor limit to its hard limit (for many connections). */
static inline rlim_t raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0)
    return 0;
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

/* Receives the first message whose tag is `tag` (others stay queued). */
typedef struct tag_match {
  const char *tag;
} tag_match;

static inline bool match_tag(keel_term m, void *arg) {
  return msg_is(m, ((tag_match *)arg)->tag, NULL);
}

static inline int recv_tag(keel_proc *self, const char *tag, int64_t ms,
                           keel_term *out) {
  tag_match tm = {tag};
  return keel_receive(self, match_tag, &tm, ms, out);
}

#endif /* KEEL_NET_TEST_H */
