/* Fiber processes: spawn, selective receive with save pointer, timeouts,
 * budget yields, migration between schedulers, destruction of blocked
 * fibers at node stop, 100k fibers alive at once, stack reuse through the
 * schedulers' caches and stack overflow reports on both guard paths.
 * Every scenario runs with 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/clock.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"
#include "runtime/signal.h"
#include "runtime/stack_pool.h"

static void start(unsigned nsched) {
  start_node(nsched, 0);
}

static bool is_atom(keel_term msg, void *arg) {
  return msg == *(keel_term *)arg;
}

/* ---- ping-pong --------------------------------------------------------- */

#define ROUNDS 2000

/* Handler: replies I to From for every {From, I}; exits on 'stop'. */
static keel_handler_status echo(keel_proc *self, keel_term msg, void *state) {
  (void)state;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  (void)keel_send(keel_tuple_get(msg, 0), keel_tuple_get(msg, 1));
  return KEEL_CONTINUE;
}

/* Fiber echo: the same as a fiber. */
static void fiber_echo(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  while (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK &&
         m != KEEL_ATOM(STOP))
    (void)keel_send(keel_tuple_get(m, 0), keel_tuple_get(m, 1));
}

typedef struct pinger {
  keel_term peer;
  atomic_long ok; /* rounds answered with the right number */
} pinger;

static void fiber_pinger(keel_proc *self, void *arg) {
  pinger *pg = arg;
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  for (int i = 0; i < ROUNDS; i++) {
    keel_term req = keel_tuple(&h, 2, keel_self(self), keel_small(i));
    cr_assert_eq(keel_send(pg->peer, req), KEEL_OK);
    keel_heap_destroy(&h);
    keel_heap_init_fixed(&h, buf, 8);
    keel_term m;
    if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK)
      break;
    if (m == keel_small(i))
      atomic_fetch_add(&pg->ok, 1);
  }
  (void)keel_send(pg->peer, KEEL_ATOM(STOP));
  signal_event();
}

static void pingpong(bool fiber_peer) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    pinger pg = {0};
    if (fiber_peer)
      cr_assert_eq(keel_spawn_fiber(fiber_echo, NULL, NULL, &pg.peer), KEEL_OK);
    else
      cr_assert_eq(keel_spawn(echo, NULL, NULL, &pg.peer), KEEL_OK);
    uint64_t t0 = keel_monotonic_ns();
    cr_assert_eq(keel_spawn_fiber(fiber_pinger, &pg, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "ping-pong stalled (%u schedulers)",
              sched_counts[c]);
    double secs = (double)(keel_monotonic_ns() - t0) / 1e9;
    printf("fiber ping-pong with a %s, %u schedulers: %.0f round trips/s "
           "(%d rounds, not asserted)\n",
           fiber_peer ? "fiber" : "handler", sched_counts[c], ROUNDS / secs,
           ROUNDS);
    cr_assert_eq(atomic_load(&pg.ok), ROUNDS);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(fiber, pingpong_with_handler) {
  pingpong(false);
}

Test(fiber, pingpong_with_fiber) {
  pingpong(true);
}

/* ---- selective receive ------------------------------------------------- */

typedef struct selective {
  int rc[8];
  keel_term got[8];
} selective;

static void fiber_selective(keel_proc *self, void *arg) {
  selective *sv = arg;
  keel_term go = keel_atom("go");
  keel_pattern *pat = NULL;
  cr_assert_eq(keel_pattern_compile(&pat, "{x, X}"), KEEL_OK);
  keel_term caps[1];
  /* 'go' arrives last: everything before it is skipped and kept. */
  sv->rc[0] = keel_receive(self, is_atom, &go, KEEL_INFINITY, &sv->got[0]);
  sv->rc[1] = keel_receive_pattern(self, pat, KEEL_INFINITY, &sv->got[1], caps);
  sv->got[1] = caps[0]; /* the captured integer (a small: no heap) */
  for (int i = 2; i < 7; i++)
    sv->rc[i] = keel_receive(self, NULL, NULL, 0, &sv->got[i]);
  keel_term m;
  sv->rc[7] = keel_receive(self, NULL, NULL, 0, &m); /* now empty */
  keel_pattern_free(pat);
  signal_event();
}

Test(fiber, g03_selective_receive_keeps_order) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    selective sv;
    memset(&sv, 0, sizeof sv);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(fiber_selective, &sv, NULL, &pid), KEEL_OK);
    uint64_t buf[4];
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 4);
    cr_assert_eq(keel_send(pid, keel_small(1)), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_small(2)), KEEL_OK);
    cr_assert_eq(
        keel_send(pid, keel_tuple(&h, 2, keel_atom("x"), keel_small(42))),
        KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_small(3)), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_small(4)), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_small(5)), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert(wait_events(1));
    for (int i = 0; i < 7; i++)
      cr_assert_eq(sv.rc[i], KEEL_OK, "receive %d: %d", i, sv.rc[i]);
    cr_assert_eq(sv.got[0], keel_atom("go"));
    cr_assert_eq(sv.got[1], keel_small(42));
    for (int i = 2; i < 7; i++)
      cr_assert_eq(sv.got[i], keel_small(i - 1), "message %d out of order", i);
    cr_assert_eq(sv.rc[7], KEEL_ETIMEDOUT);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- save pointer ------------------------------------------------------ */

#define NJUNK 100

static atomic_long match_calls;

static bool counting_match(keel_term msg, void *arg) {
  atomic_fetch_add(&match_calls, 1);
  return msg == *(keel_term *)arg;
}

static void fiber_save_pointer(keel_proc *self, void *arg) {
  int *rc = arg;
  keel_term go = keel_atom("go"), m;
  *rc = keel_receive(self, counting_match, &go, KEEL_INFINITY, &m);
  signal_event();
}

/* Waits (bounded) until match_calls reaches target. */
static bool wait_calls(long target) {
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&match_calls) < target) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > TIMEOUT_S)
      return false;
    sched_yield();
  }
  return true;
}

Test(fiber, wakeup_scans_only_new_messages) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    atomic_store(&match_calls, 0);
    int rc = -1;
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(fiber_save_pointer, &rc, NULL, &pid),
                 KEEL_OK);
    /* One message per wake-up: each is examined once, never again. */
    for (long i = 0; i < NJUNK; i++) {
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
      cr_assert(wait_calls(i + 1));
    }
    cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(rc, KEEL_OK);
    cr_assert_eq(atomic_load(&match_calls), NJUNK + 1);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- timeouts ---------------------------------------------------------- */

typedef struct timeouts {
  int rc_poll, rc_timed, rc_a, rc_b, rc_late, rc_empty;
  keel_term a, b;
  uint64_t timed_ns, late_ns;
} timeouts;

#define WAIT_MS 30

static void fiber_timeouts(keel_proc *self, void *arg) {
  timeouts *t = arg;
  keel_term go = keel_atom("go"), c = keel_atom("c"), late = keel_atom("late");
  keel_term m;
  t->rc_empty = keel_receive(self, NULL, NULL, 0, &m);
  signal_event(); /* the test sends only now */
  (void)keel_receive(self, is_atom, &go, KEEL_INFINITY, &m);
  t->rc_poll = keel_receive(self, is_atom, &c, 0, &m);
  uint64_t t0 = keel_monotonic_ns();
  t->rc_timed = keel_receive(self, is_atom, &c, WAIT_MS, &m);
  t->timed_ns = keel_monotonic_ns() - t0;
  /* The mailbox still holds a and b, in order. */
  t->rc_a = keel_receive(self, NULL, NULL, 0, &t->a);
  t->rc_b = keel_receive(self, NULL, NULL, 0, &t->b);
  /* A message due long before the deadline wins. */
  t0 = keel_monotonic_ns();
  cr_assert_eq(keel_send_after(keel_self(self), late, 5, NULL), KEEL_OK);
  t->rc_late = keel_receive(self, is_atom, &late, 20000, &m);
  t->late_ns = keel_monotonic_ns() - t0;
  signal_event();
}

Test(fiber, g19_g20_receive_timeouts) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    timeouts t;
    memset(&t, 0, sizeof t);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(fiber_timeouts, &t, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(keel_send(pid, keel_atom("a")), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_atom("b")), KEEL_OK);
    cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
    cr_assert(wait_events(2));
    cr_assert_eq(t.rc_empty, KEEL_ETIMEDOUT);
    cr_assert_eq(t.rc_poll, KEEL_ETIMEDOUT);
    cr_assert_eq(t.rc_timed, KEEL_ETIMEDOUT);
    cr_assert_geq(t.timed_ns, (uint64_t)WAIT_MS * 1000000u, "woke early");
    cr_assert_eq(t.rc_a, KEEL_OK);
    cr_assert_eq(t.a, keel_atom("a"));
    cr_assert_eq(t.rc_b, KEEL_OK);
    cr_assert_eq(t.b, keel_atom("b"));
    cr_assert_eq(t.rc_late, KEEL_OK);
    cr_assert_lt(t.late_ns, (uint64_t)20000 * 1000000u);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- node stop with blocked fibers ------------------------------------- */

#define NBLOCKED 1000

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static atomic_int terminated;

static void on_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)state;
  if (reason == KEEL_ATOM(SHUTDOWN))
    atomic_fetch_add(&terminated, 1);
}

static void fiber_block(keel_proc *self, void *arg) {
  (void)arg;
  keel_term stop = KEEL_ATOM(STOP), m;
  signal_event();
  (void)keel_receive(self, is_atom, &stop, KEEL_INFINITY, &m);
  cr_assert_fail("a blocked fiber was resumed at node stop");
}

static size_t count_maps(void) {
  FILE *fp = fopen("/proc/self/maps", "r");
  cr_assert_not_null(fp);
  size_t lines = 0;
  for (int ch; (ch = fgetc(fp)) != EOF;)
    lines += ch == '\n';
  fclose(fp);
  return lines;
}

Test(fiber, node_stop_destroys_blocked_fibers) {
  for (size_t c = 0; c < NCONF; c++) {
    size_t maps0 = count_maps();
    start(sched_counts[c]);
    atomic_store(&terminated, 0);
    keel_spawn_opts o = {.terminate = on_terminate};
    for (int i = 0; i < NBLOCKED; i++) {
      keel_term pid;
      cr_assert_eq(keel_spawn_fiber(fiber_block, NULL, &o, &pid), KEEL_OK);
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK); /* not 'stop' */
    }
    cr_assert(wait_events(NBLOCKED));
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.processes, NBLOCKED);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&terminated), NBLOCKED);
    cr_assert_eq(keel__rt_fiber_stacks_left, 0, "stacks not returned");
    /* A leak of the slabs would show as extra mappings (thousands with
     * mprotect guards); allow the schedulers' cached thread stacks. Not
     * under TSan, which maps shadow memory for every stack touched, nor
     * ASan, which maps fake stacks and shadow as threads need them. */
    size_t maps1 = count_maps();
    if (!UNDER_TSAN && !UNDER_ASAN)
      cr_assert_leq(maps1, maps0 + 2 * 8 + 8, "maps %zu -> %zu", maps0, maps1);
  }
}

/* ---- migration --------------------------------------------------------- */

#define NMIGRANTS 64
#define MIGRANT_ROUNDS 300

static atomic_long migrations, migrant_ok;

static void fiber_migrant(keel_proc *self, void *arg) {
  long seed = (long)(intptr_t)arg;
  volatile long local[16];
  for (int k = 0; k < 16; k++)
    local[k] = seed * 31 + k;
  long sum = 0;
  bool ok = true;
  for (int i = 0; i < MIGRANT_ROUNDS; i++) {
    pthread_t before = pthread_self();
    cr_assert_eq(keel_send(keel_self(self), keel_small(i)), KEEL_OK);
    keel_term m;
    if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK ||
        m != keel_small(i))
      ok = false;
    sum += keel_small_value(m);
    (void)keel_fiber_yield(self);
    if (!pthread_equal(before, pthread_self()))
      atomic_fetch_add(&migrations, 1);
    if (keel_current() != self)
      ok = false;
  }
  for (int k = 0; k < 16; k++)
    if (local[k] != seed * 31 + k)
      ok = false;
  if (ok && sum == (long)MIGRANT_ROUNDS * (MIGRANT_ROUNDS - 1) / 2)
    atomic_fetch_add(&migrant_ok, 1);
  signal_event();
}

Test(fiber, migration_keeps_state) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    atomic_store(&migrations, 0);
    atomic_store(&migrant_ok, 0);
    for (long i = 0; i < NMIGRANTS; i++)
      cr_assert_eq(
          keel_spawn_fiber(fiber_migrant, (void *)(intptr_t)i, NULL, NULL),
          KEEL_OK);
    cr_assert(wait_events(NMIGRANTS));
    cr_assert_eq(atomic_load(&migrant_ok), NMIGRANTS);
    printf("fiber migration: %u schedulers, %ld resumptions on another "
           "thread\n",
           sched_counts[c], atomic_load(&migrations));
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- fairness ---------------------------------------------------------- */

#define SEND_CAP 2000000

static atomic_bool handler_ran, flood_saw_handler;
static atomic_long sink_count;

static keel_handler_status sink(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)state;
  if (msg == keel_atom("ping"))
    atomic_store(&handler_ran, true);
  else
    atomic_fetch_add(&sink_count, 1);
  return KEEL_CONTINUE;
}

static void fiber_flood(keel_proc *self, void *arg) {
  (void)self;
  keel_term peer = *(keel_term *)arg;
  long sent = 0;
  signal_event();
  while (!atomic_load(&handler_ran) && sent < SEND_CAP) {
    (void)keel_send(peer, keel_small(sent));
    sent++;
  }
  atomic_store(&flood_saw_handler, atomic_load(&handler_ran));
  signal_event();
}

static void busy_sender(bool dead_target) {
  start(1);
  atomic_store(&handler_ran, false);
  atomic_store(&flood_saw_handler, false);
  atomic_store(&sink_count, 0);
  keel_term h;
  cr_assert_eq(keel_spawn(sink, NULL, NULL, &h), KEEL_OK);
  /* A pid whose slot lies beyond the process table: sends are no-ops. */
  keel_term dead = keel_pid_local(RT_IDX_MASK);
  cr_assert_eq(
      keel_spawn_fiber(fiber_flood, dead_target ? &dead : &h, NULL, NULL),
      KEEL_OK);
  cr_assert(wait_events(1)); /* the flood runs */
  cr_assert_eq(keel_send(h, keel_atom("ping")), KEEL_OK);
  cr_assert(wait_events(2));
  cr_assert(atomic_load(&flood_saw_handler),
            "the handler did not run while the fiber was sending");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(fiber, busy_sender_does_not_starve_handler) {
  busy_sender(false);
}

Test(fiber, busy_sender_to_dead_pid_does_not_starve_handler) {
  busy_sender(true);
}

/* ---- stack overflow ---------------------------------------------------- */

/* Far deeper than any stack: the bound only keeps the compiler from
 * calling the recursion infinite. */
static volatile long recurse_limit = 1L << 40;

__attribute__((noinline)) static long recurse(long depth) {
  volatile char frame[512];
  frame[0] = (char)depth;
  if (depth >= recurse_limit)
    return 0;
  return recurse(depth + 1) + frame[0];
}

static void fiber_overflow(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  (void)recurse(0);
}

/* In a child: a fiber with a 16 KiB stack recurses without bound. `guard`
 * names the guard mechanism to force through KEEL_STACK_GUARD (NULL: the
 * probe decides); the child reports the one its node uses first. */
static void overflow_child(const char *guard) {
  if (guard != NULL && setenv("KEEL_STACK_GUARD", guard, 1) != 0)
    _exit(2);
  keel_node_opts o = {.schedulers = 2};
  if (keel_node_start(&o) != KEEL_OK)
    _exit(3);
  keel__stack_pool_stats st;
  int mode = 0;
  if (keel__rt_fiber_stack_stats(&st, &mode) != KEEL_OK)
    _exit(6);
  const char *name = mode == KEEL_STACK_GUARD_MADVISE    ? "guard=madvise\n"
                     : mode == KEEL_STACK_GUARD_MPROTECT ? "guard=mprotect\n"
                                                         : "guard=?\n";
  (void)!write(STDERR_FILENO, name, strlen(name));
  keel_spawn_opts so = {.stack_size = KEEL_FIBER_STACK_MIN};
  if (keel_spawn_fiber(fiber_overflow, NULL, &so, NULL) != KEEL_OK)
    _exit(4);
  for (int i = 0; i < TIMEOUT_S * 100; i++)
    (void)nanosleep(&(struct timespec){0, 10000000}, NULL); /* not sync */
  _exit(5);
}

/* Runs overflow_child(guard) in a child process: it must die of SIGABRT
 * after naming the process and its stack size, on the expected guard
 * path. */
static void overflow_death(const char *guard, const char *expect_mode) {
  if (UNDER_TSAN) /* TSan cannot start threads after a multithreaded fork */
    cr_skip_test("death test not run under TSan");
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t child = fork();
  cr_assert_geq(child, 0);
  if (child == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    overflow_child(guard);
  }
  close(fds[1]);
  char out[4096];
  size_t len = 0;
  for (ssize_t r; len < sizeof out - 1 &&
                  (r = read(fds[0], out + len, sizeof out - 1 - len)) > 0;)
    len += (size_t)r;
  out[len] = '\0';
  close(fds[0]);
  int status;
  cr_assert_eq(waitpid(child, &status, 0), child);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
            "child status %#x, output: %s", status, out);
  cr_assert_not_null(strstr(out, expect_mode), "output: %s", out);
  cr_assert_not_null(strstr(out, "keel: stack overflow in process <0."),
                     "output: %s", out);
  cr_assert_not_null(strstr(out, "(16 KiB stack)"), "output: %s", out);
}

Test(fiber, stack_overflow_names_the_process) {
  unsetenv("KEEL_STACK_GUARD");
  if (keel__stack_guard_probe() != KEEL_STACK_GUARD_MADVISE)
    cr_skip_test("no MADV_GUARD_INSTALL: the mprotect test covers it");
  overflow_death(NULL, "guard=madvise");
}

Test(fiber, stack_overflow_names_the_process_mprotect_guards) {
  overflow_death("mprotect", "guard=mprotect");
}

/* ---- 100k fibers ------------------------------------------------------- */

#define NMANY 100000

/* n * KEEL_TEST_SCALE (a positive number; 1 when unset), at least 1. */
static size_t scaled(size_t n) {
  const char *e = getenv("KEEL_TEST_SCALE");
  double s = e != NULL ? strtod(e, NULL) : 1.0;
  if (!(s > 0))
    s = 1.0;
  size_t v = (size_t)((double)n * s);
  return v < 1 ? 1 : v;
}

static long rss_kb(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  cr_assert_not_null(fp);
  long pages = 0, res = 0;
  cr_assert_eq(fscanf(fp, "%ld %ld", &pages, &res), 2);
  fclose(fp);
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static atomic_long once_blocked, once_ok, once_done;
static long once_n;
static uintptr_t *once_sp; /* an address on each fiber's stack */

/* Blocks for one message, checks it is its own number, exits. */
static void fiber_once(keel_proc *self, void *arg) {
  keel_term m;
  once_sp[(intptr_t)arg] = (uintptr_t)&m;
  if (atomic_fetch_add(&once_blocked, 1) + 1 == once_n)
    signal_event();
  if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK &&
      m == keel_small((int64_t)(intptr_t)arg))
    atomic_fetch_add(&once_ok, 1);
  if (atomic_fetch_add(&once_done, 1) + 1 == once_n)
    signal_event();
}

/* How many of addrs[0..n) lie in a mapping of /proc/self/maps. */
static size_t still_mapped(const uintptr_t *addrs, size_t n) {
  uintptr_t lo[4096], hi[4096];
  size_t nmaps = 0;
  FILE *fp = fopen("/proc/self/maps", "r");
  cr_assert_not_null(fp);
  char line[512];
  while (nmaps < 4096 && fgets(line, sizeof line, fp) != NULL)
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo[nmaps], &hi[nmaps]) == 2)
      nmaps++;
  fclose(fp);
  size_t hits = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < nmaps; k++)
      if (addrs[i] >= lo[k] && addrs[i] < hi[k]) {
        hits++;
        break;
      }
  return hits;
}

static void many_fibers(unsigned nsched) {
  size_t maps0 = count_maps();
  start(nsched);
  keel__stack_pool_stats st;
  int mode = 0;
  cr_assert_eq(keel__rt_fiber_stack_stats(&st, &mode), KEEL_OK);
  size_t n = scaled(NMANY);
  if (UNDER_TSAN && n > 4000)
    n = 4000; /* TSan keeps a large state per fiber */
  if (mode == KEEL_STACK_GUARD_MPROTECT && n > 20000)
    n = 20000; /* two maps per stack: vm.max_map_count caps near 30k */
  once_n = (long)n;
  atomic_store(&once_blocked, 0);
  atomic_store(&once_ok, 0);
  atomic_store(&once_done, 0);
  keel_term *pids = calloc(n, sizeof *pids);
  once_sp = calloc(n, sizeof *once_sp);
  cr_assert_not_null(pids);
  cr_assert_not_null(once_sp);
  long rss0 = rss_kb();
  keel_spawn_opts so = {.stack_size = KEEL_FIBER_STACK_MIN};
  for (size_t i = 0; i < n; i++) {
    int rc = keel_spawn_fiber(fiber_once, (void *)(intptr_t)i, &so, &pids[i]);
    cr_assert_eq(rc, KEEL_OK, "spawn %zu: %s", i, keel_strerror(rc));
  }
  cr_assert(wait_events(1), "%ld of %zu fibers blocked",
            atomic_load(&once_blocked), n);
  long rss1 = rss_kb();
  size_t maps1 = count_maps();
  cr_assert_eq(keel__rt_fiber_stack_stats(&st, NULL), KEEL_OK);
  cr_assert_eq(st.live, n);
  double per = (double)(rss1 - rss0) * 1024.0 / (double)n;
  printf("%zu fibers on %u schedulers: %.0f B resident each, %zu slabs, "
         "%zu more maps\n",
         n, nsched, per, st.slabs, maps1 - maps0);
  if (mode == KEEL_STACK_GUARD_MADVISE && !UNDER_TSAN && !UNDER_ASAN)
    cr_assert_leq(maps1 - maps0, n / KEEL_STACK_SLAB_MAX + 64,
                  "madvise guards: one map per slab, not per stack");
  if (!UNDER_TSAN && !UNDER_ASAN)
    cr_assert_leq(per, 16384.0, "%.0f bytes per idle fiber", per);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(keel_send(pids[i], keel_small((int64_t)i)), KEEL_OK);
  cr_assert(wait_events(2), "%ld of %zu fibers done", atomic_load(&once_done),
            n);
  cr_assert_eq(atomic_load(&once_ok), (long)n);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel__rt_fiber_stacks_left, 0, "stacks not returned");
  /* Every slab was unmapped: the pools' own count of live mappings is
   * exact. The kernel's view agrees loosely: a mapping made after the stop
   * (a thread's 64 MiB malloc arena reservation, glibc's caches) may reuse
   * the freed range and cover a few thousand of the old stack addresses,
   * but a pool that kept its slabs would show all n. Allow two arenas'
   * worth of reuse. */
  cr_assert_eq(keel__stack_pool_slabs_mapped(), 0, "slabs still mapped");
  size_t left = still_mapped(once_sp, n);
  size_t reuse = 2 * ((size_t)64 << 20) / KEEL_FIBER_STACK_MIN;
  if (n > 2 * reuse)
    cr_assert_leq(left, reuse, "%zu of %zu stacks still mapped", left, n);
  free(pids);
  free(once_sp);
}

Test(fiber, hundred_thousand_fibers_1) {
  many_fibers(1);
}

Test(fiber, hundred_thousand_fibers_2) {
  many_fibers(2);
}

Test(fiber, hundred_thousand_fibers_8) {
  many_fibers(8);
}

/* With mprotect guards (two maps per stack) spawning stops at the map
 * budget with KEEL_ESYSLIMIT, exactly where the documented rule puts it:
 * (vm.max_map_count - 4096) maps, 128 per slab of 64 stacks. */
static long max_map_count(void) {
  FILE *fp = fopen("/proc/sys/vm/max_map_count", "r");
  long v = -1;
  if (fp != NULL) {
    if (fscanf(fp, "%ld", &v) != 1)
      v = -1;
    fclose(fp);
  }
  return v;
}

static void fiber_block_quiet(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
}

Test(fiber, spawn_beyond_map_budget_is_a_system_limit) {
  long maps = max_map_count();
  if (maps < 8192)
    cr_skip_test("vm.max_map_count %ld: too small for this test", maps);
  long expect = (maps - 4096) / (2 * 64) * 64;
  if (expect > 40000 || UNDER_TSAN || UNDER_ASAN)
    cr_skip_test("%ld stacks to the limit: too many here", expect);
  cr_assert_eq(setenv("KEEL_STACK_GUARD", "mprotect", 1), 0);
  start(2);
  keel_spawn_opts so = {.stack_size = KEEL_FIBER_STACK_MIN};
  long n = 0;
  int rc;
  while ((rc = keel_spawn_fiber(fiber_block_quiet, NULL, &so, NULL)) ==
             KEEL_OK &&
         n < 2 * expect)
    n++;
  cr_assert_eq(rc, KEEL_ESYSLIMIT, "spawn %ld: %s", n, keel_strerror(rc));
  cr_assert_eq(n, expect);
  keel_term pid;
  keel_spawn_opts big = {.stack_size = 64 * 1024}; /* another class */
  cr_assert_eq(keel_spawn_fiber(fiber_block_quiet, NULL, &big, &pid),
               KEEL_ESYSLIMIT, "the budget is shared by every size class");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel__rt_fiber_stacks_left, 0);
  unsetenv("KEEL_STACK_GUARD");
}

/* ---- stack reuse through the schedulers' caches ----------------------- */

#define SPAWNERS 8
#define SPAWN_ROUNDS 50
#define PER_ROUND 16

static atomic_long children_done, children_moved;
static long children_total;

/* Yields once (it may resume elsewhere) and exits: its stack goes back to
 * the cache of whichever scheduler runs its death. */
static void fiber_child(keel_proc *self, void *arg) {
  pthread_t *spawner_thread = arg;
  (void)keel_fiber_yield(self);
  if (!pthread_equal(*spawner_thread, pthread_self()))
    atomic_fetch_add(&children_moved, 1);
  if (atomic_fetch_add(&children_done, 1) + 1 == children_total)
    signal_event();
}

/* Spawns PER_ROUND children per round, yielding between rounds; each
 * round's children get the thread of that round, never rewritten. */
static void fiber_spawner(keel_proc *self, void *arg) {
  (void)arg;
  pthread_t *rounds = malloc(SPAWN_ROUNDS * sizeof *rounds);
  cr_assert_not_null(rounds);
  keel_proc_set_state(self, rounds); /* freed by the test at the end */
  for (int r = 0; r < SPAWN_ROUNDS; r++) {
    rounds[r] = pthread_self();
    for (int k = 0; k < PER_ROUND; k++)
      cr_assert_eq(keel_spawn_fiber(fiber_child, &rounds[r], NULL, NULL),
                   KEEL_OK);
    (void)keel_fiber_yield(self);
  }
  signal_event();
}

static pthread_t *spawner_threads[SPAWNERS];
static atomic_int spawner_slots;

static void spawner_gone(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  spawner_threads[atomic_fetch_add(&spawner_slots, 1)] = state;
}

Test(fiber, stacks_reused_across_schedulers) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    children_total = SPAWNERS * SPAWN_ROUNDS * PER_ROUND;
    atomic_store(&children_done, 0);
    atomic_store(&children_moved, 0);
    atomic_store(&spawner_slots, 0);
    keel_spawn_opts o = {.terminate = spawner_gone};
    for (int i = 0; i < SPAWNERS; i++)
      cr_assert_eq(keel_spawn_fiber(fiber_spawner, NULL, &o, NULL), KEEL_OK);
    cr_assert(wait_events(SPAWNERS + 1), "children stalled");
    keel__stack_pool_stats st;
    cr_assert_eq(keel__rt_fiber_stack_stats(&st, NULL), KEEL_OK);
    size_t allocs = st.fresh + st.reused;
    printf("stack reuse, %u schedulers: %zu stacks for %zu fibers, %zu "
           "cached, %ld children ended on another thread\n",
           sched_counts[c], st.fresh, allocs, st.cached,
           atomic_load(&children_moved));
    cr_assert_eq(allocs, (size_t)(children_total + SPAWNERS));
    cr_assert_lt(st.fresh, allocs / 4, "stacks are reused");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel__rt_fiber_stacks_left, 0, "stacks not returned");
    for (int i = 0; i < SPAWNERS; i++)
      free(spawner_threads[i]);
  }
}

/* ---- errors ------------------------------------------------------------ */

static void fiber_nop(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  signal_event();
}

Test(fiber, errors) {
  cr_assert_eq(keel_spawn_fiber(fiber_nop, NULL, NULL, NULL), KEEL_ESTATE);
  start(2);
  cr_assert_eq(keel_spawn_fiber(NULL, NULL, NULL, NULL), KEEL_EINVAL);
  keel_spawn_opts big = {.stack_size = KEEL_FIBER_STACK_MAX + 1};
  cr_assert_eq(keel_spawn_fiber(fiber_nop, NULL, &big, NULL), KEEL_EINVAL);
  keel_spawn_opts small = {.stack_size = 1};
  cr_assert_eq(keel_spawn_fiber(fiber_nop, NULL, &small, NULL), KEEL_OK);
  keel_term m;
  cr_assert_eq(keel_receive(NULL, NULL, NULL, 0, &m), KEEL_EINVAL);
  cr_assert_eq(keel_fiber_yield(NULL), KEEL_ESTATE);
  cr_assert(wait_events(1));
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- receive marks: a call past a long backlog ------------------------- */

#define BACKLOG 100000

typedef struct mark_arg {
  keel_term server;
  bool use_mark;
  bool signal_in_between; /* a drain moves the mark to the inner queue */
  long match_calls;       /* of the reply receive */
  long in_order;          /* backlog messages received back in order */
  bool exit_seen;
} mark_arg;

static bool reply_for(keel_term m, void *arg) {
  void **a = arg;
  (*(long *)a[1])++;
  return keel_is_tuple(m) && keel_tuple_arity(m) == 2 &&
         keel_eq_exact(keel_tuple_get(m, 0), *(keel_term *)a[0]);
}

/* Handler: answers {call, From, Ref} with {Ref, ok}. */
static keel_handler_status mark_server(keel_proc *self, keel_term msg,
                                       void *st) {
  (void)self, (void)st;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  (void)keel_send(keel_tuple_get(msg, 1),
                  keel_tuple(&h, 2, keel_tuple_get(msg, 2), KEEL_ATOM(OK)));
  return KEEL_CONTINUE;
}

static void mark_caller(keel_proc *self, void *arg) {
  mark_arg *a = arg;
  keel_term me = keel_self(self);
  keel_trap_exit(self, true);
  for (int i = 0; i < BACKLOG; i++)
    (void)keel_send(me, keel_small(i));
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref = keel_make_ref(&h);
  if (a->use_mark)
    cr_assert_eq(keel_receive_mark(self), KEEL_OK);
  if (a->signal_in_between)
    (void)keel_exit(me, keel_atom("poke"));
  (void)keel_send(a->server, keel_tuple(&h, 3, keel_atom("call"), me, ref));
  void *margs[2] = {&ref, &a->match_calls};
  keel_term m;
  cr_assert_eq(keel_receive(self, reply_for, margs, 30000, &m), KEEL_OK);
  /* The backlog is all still there, in order. */
  for (long i = 0; i < BACKLOG; i++) {
    if (keel_receive(self, NULL, NULL, 0, &m) != KEEL_OK)
      break;
    if (keel_is_tuple(m)) { /* the poke's 'EXIT' comes after the backlog */
      a->exit_seen = true;
      i--;
      continue;
    }
    if (keel_small_value(m) == i)
      a->in_order++;
  }
  if (a->signal_in_between && !a->exit_seen &&
      keel_receive(self, NULL, NULL, 0, &m) == KEEL_OK && keel_is_tuple(m))
    a->exit_seen = true;
  keel_heap_destroy(&h);
  (void)keel_send(a->server, KEEL_ATOM(STOP));
  signal_event();
}

static void mark_case(bool use_mark, bool signal_in_between) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    mark_arg a = {.use_mark = use_mark, .signal_in_between = signal_in_between};
    cr_assert_eq(keel_spawn(mark_server, NULL, NULL, &a.server), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(mark_caller, &a, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(a.in_order, BACKLOG, "backlog intact (%u)", sched_counts[c]);
    cr_assert_eq(a.exit_seen, signal_in_between);
    if (use_mark)
      cr_assert_leq(a.match_calls, 3, "%ld match calls past the mark (%u)",
                    a.match_calls, sched_counts[c]);
    else
      cr_assert_geq(a.match_calls, BACKLOG, "an unmarked receive scans all");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(fiber, receive_mark_skips_the_backlog) {
  mark_case(true, false);
}

Test(fiber, receive_mark_after_a_signal_drain) {
  mark_case(true, true);
}

Test(fiber, unmarked_call_scans_the_backlog) {
  mark_case(false, false);
}

/* A mark taken with both queues empty: what arrives later is examined, a
 * later mark replaces it, and nothing is lost. */
static void empty_mark_caller(keel_proc *self, void *arg) {
  mark_arg *a = arg;
  keel_term me = keel_self(self);
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref = keel_make_ref(&h);
  cr_assert_eq(keel_receive_mark(self), KEEL_OK); /* nothing queued */
  (void)keel_send(me, keel_small(1));             /* after the mark */
  (void)keel_send(a->server, keel_tuple(&h, 3, keel_atom("call"), me, ref));
  void *margs[2] = {&ref, &a->match_calls};
  keel_term m;
  cr_assert_eq(keel_receive(self, reply_for, margs, 30000, &m), KEEL_OK);
  cr_assert_eq(keel_receive(self, NULL, NULL, 0, &m), KEEL_OK);
  a->in_order += m == keel_small(1);
  /* Empty again: a mark, then a message, then a second mark. */
  cr_assert_eq(keel_receive_mark(self), KEEL_OK);
  (void)keel_send(me, keel_small(2));
  cr_assert_eq(keel_receive_mark(self), KEEL_OK);
  (void)keel_send(me, keel_small(3));
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  a->in_order += m == keel_small(3); /* 2 predates the second mark */
  cr_assert_eq(keel_receive(self, NULL, NULL, 0, &m), KEEL_OK);
  a->in_order += m == keel_small(2); /* still queued */
  a->exit_seen = keel_receive(self, NULL, NULL, 0, &m) == KEEL_ETIMEDOUT;
  keel_heap_destroy(&h);
  (void)keel_send(a->server, KEEL_ATOM(STOP));
  signal_event();
}

Test(fiber, receive_mark_on_empty_queues) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    mark_arg a = {.use_mark = true};
    cr_assert_eq(keel_spawn(mark_server, NULL, NULL, &a.server), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(empty_mark_caller, &a, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(a.in_order, 3, "messages after the marks (%u)",
                 sched_counts[c]);
    cr_assert(a.exit_seen, "nothing else queued (%u)", sched_counts[c]);
    cr_assert_geq(a.match_calls, 1);
    cr_assert_leq(a.match_calls, 2, "%ld match calls (%u)", a.match_calls,
                  sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- hibernation ------------------------------------------------------- */

typedef struct hib_arg {
  atomic_int phase; /* 1 before hibernating, 2 woken in the continuation */
  keel_term woke_with;
  bool queued_first; /* a message is queued before it hibernates */
} hib_arg;

static size_t live_stacks(void) {
  keel__stack_pool_stats st;
  cr_assert_eq(keel__rt_fiber_stack_stats(&st, NULL), KEEL_OK);
  return st.live;
}

/* live_stacks() once it reads 0, or what it reads after 10 s: the
 * statistics sum per-scheduler caches without a lock, so a stack moving
 * between a cache and the shared depot can be seen twice for a moment. */
static size_t settled_live_stacks(void) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  size_t live = live_stacks();
  while (live != 0) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > 10)
      break;
    live = live_stacks();
  }
  return live;
}

static void hib_after(keel_proc *self, void *arg) {
  hib_arg *a = arg;
  keel_term m;
  if (keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK)
    a->woke_with = m; /* an atom: outlives the receive */
  atomic_store(&a->phase, 2);
  signal_event();
}

static void hib_before(keel_proc *self, void *arg) {
  hib_arg *a = arg;
  if (a->queued_first)
    (void)keel_send(keel_self(self), keel_atom("early"));
  atomic_store(&a->phase, 1);
  signal_event();
  cr_assert_eq(keel_fiber_hibernate(self, NULL, NULL), KEEL_EINVAL);
  (void)keel_fiber_hibernate(self, hib_after, a);
  atomic_store(&a->phase, 99); /* never reached */
}

Test(fiber, hibernate_drops_the_stack_and_wakes_in_the_continuation) {
  for (size_t c = 0; c < NCONF; c++) {
    for (int queued = 0; queued < 2; queued++) {
      start(sched_counts[c]);
      hib_arg a = {.queued_first = queued};
      keel_term pid;
      cr_assert_eq(keel_spawn_fiber(hib_before, &a, NULL, &pid), KEEL_OK);
      cr_assert(wait_events(1));
      if (!queued) {
        /* Hibernated: its stack went back to the pool. */
        keel_process_info_t info;
        do
          cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
        while (info.status != KEEL_PROC_WAITING);
        cr_assert_eq(settled_live_stacks(), 0, "no stack while hibernating");
        cr_assert_eq(keel_send(pid, keel_atom("wake")), KEEL_OK);
      }
      cr_assert(wait_events(2));
      cr_assert_eq(atomic_load(&a.phase), 2);
      cr_assert_eq(a.woke_with, keel_atom(queued ? "early" : "wake"));
      cr_assert_eq(keel_node_stop(), KEEL_OK);
      cr_assert_eq(keel__rt_fiber_stacks_left, 0);
    }
  }
}

Test(fiber, hibernating_fiber_killed_leaks_nothing) {
  start(2);
  hib_arg a = {0};
  keel_term pid;
  cr_assert_eq(keel_spawn_fiber(hib_before, &a, NULL, &pid), KEEL_OK);
  cr_assert(wait_events(1));
  keel_process_info_t info;
  do
    cr_assert_eq(keel_process_info(pid, &info), KEEL_OK);
  while (info.status != KEEL_PROC_WAITING);
  cr_assert_eq(keel_exit(pid, KEEL_ATOM(KILL)), KEEL_OK);
  while (keel_process_info(pid, &info) == KEEL_OK)
    sched_yield();
  cr_assert_eq(settled_live_stacks(), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel__rt_fiber_stacks_left, 0);
}

/* Handler-side: compacting the heap keeps the roots, frees the rest. */
static atomic_long compact_before, compact_after;
static atomic_bool compact_same;

static keel_handler_status compactor(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  keel_heap *h = keel_proc_heap(self);
  keel_term keep = keel_term_copy(h, msg);
  for (int i = 0; i < 1000; i++) /* garbage */
    (void)keel_tuple(h, 3, keel_small(i), keel_small(i), keel_small(i));
  atomic_store(&compact_before, (long)keel_heap_used_words(h));
  keel_term roots[2] = {keep, KEEL_NONE};
  cr_assert_eq(keel_proc_compact(self, roots, 2), KEEL_OK);
  atomic_store(&compact_after,
               (long)keel_heap_used_words(keel_proc_heap(self)));
  atomic_store(&compact_same,
               keel_eq_exact(roots[0], msg) && roots[1] == KEEL_NONE);
  cr_assert_eq(keel_proc_compact(self, NULL, 1), KEEL_EINVAL);
  signal_event();
  return KEEL_CONTINUE;
}

Test(fiber, compact_keeps_roots_and_frees_the_rest) {
  start(1);
  keel_term pid;
  cr_assert_eq(keel_spawn(compactor, NULL, NULL, &pid), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term msg = keel_tuple(&h, 2, keel_atom("state"),
                             keel_binary(&h, "some bytes to keep", 18));
  cr_assert_eq(keel_send(pid, msg), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert(atomic_load(&compact_same), "the root survives, equal");
  cr_assert_gt(atomic_load(&compact_before), 4000);
  cr_assert_lt(atomic_load(&compact_after), 20, "garbage freed");
  cr_assert_eq(keel_proc_compact(NULL, NULL, 0), KEEL_ESTATE);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* Spent marks that reached the inner queue do not pile up. */
static void mark_churn(keel_proc *self, void *arg) {
  long *left_marks = arg;
  keel_term me = keel_self(self);
  keel_trap_exit(self, true);
  keel_term server;
  (void)keel_spawn(mark_server, NULL, NULL, &server);
  uint64_t buf[16];
  for (int i = 0; i < 500; i++) {
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 16);
    keel_term ref = keel_make_ref(&h), m;
    cr_assert_eq(keel_receive_mark(self), KEEL_OK);
    (void)keel_exit(me, keel_atom("poke")); /* a signal: drains the mark */
    (void)keel_send(server, keel_tuple(&h, 3, keel_atom("call"), me, ref));
    long calls = 0;
    void *margs[2] = {&ref, &calls};
    cr_assert_eq(keel_receive(self, reply_for, margs, 30000, &m), KEEL_OK);
  }
  long marks = 0, exits = 0;
  for (rt_msg *m = self->inner_head; m != NULL; m = rt_msg_next(m)) {
    marks += rt_entry_is_signal(m);
    exits += m->term != KEEL_NONE;
  }
  *left_marks = marks;
  cr_assert_eq(exits, 500, "the pokes stay queued");
  (void)keel_send(server, KEEL_ATOM(STOP));
  signal_event();
}

Test(fiber, spent_receive_marks_are_swept) {
  start(2);
  long left = -1;
  cr_assert_eq(keel_spawn_fiber(mark_churn, &left, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_leq(left, 64, "%ld marks left", left);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- hibernation with messages already fetched ---------------------- */

static _Atomic long hib_seen;

/* Takes one message, then hibernates; the continuation is itself. */
static void hib_one(keel_proc *self, void *arg) {
  keel_term m;
  if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK)
    return;
  atomic_fetch_add(&hib_seen, 1);
  signal_event();
  (void)keel_fiber_hibernate(self, hib_one, arg);
}

/* A burst sent while the fiber runs lands in its inner queue; each
 * hibernation must then wake the continuation at once rather than wait
 * for the next send (a lost wake-up once left the rest unread). */
Test(fiber, hibernate_with_fetched_messages_keeps_going) {
  for (size_t k = 0; k < NCONF; k++) {
    start(sched_counts[k]);
    atomic_store(&hib_seen, 0);
    reset_events();
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(hib_one, NULL, NULL, &pid), KEEL_OK);
    enum { BURST = 2000 };
    for (int i = 0; i < BURST; i++)
      cr_assert_eq(keel_send(pid, keel_small(i)), KEEL_OK);
    cr_assert(wait_events(BURST), "%ld of %d taken on %u schedulers",
              atomic_load(&hib_seen), BURST, sched_counts[k]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
