/* Telemetry under concurrency: attach and detach while 1, 2 and 8 threads
 * execute. Checks that detach (outside a handler) returns only once the
 * handler can no longer run, so its config can be freed at once (ASan and
 * TSan would see a use after free otherwise), and that no call is lost
 * for a handler that stays attached. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "keel/clock.h"
#include "keel/telemetry.h"

static const unsigned thread_counts[] = {1, 2, 8};
#define ROUNDS 20
#define PER_THREAD 5000
/* Bound of every wait: a lost event fails the test instead of hanging. */
#define TIMEOUT_S 30

typedef struct cfg {
  atomic_long calls;
  atomic_bool detached; /* set once detach has returned */
  atomic_long late;     /* calls that saw detached set */
} cfg;

static atomic_long g_late;

static int counting(const keel_tel_event *e, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd;
  cfg *x = c;
  if (atomic_load(&x->detached))
    atomic_fetch_add(&g_late, 1);
  atomic_fetch_add(&x->calls, 1);
  return 0;
}

static keel_tel_event *g_ev;
static atomic_bool g_stop;

static void *emitter(void *arg) {
  long *done = arg;
  keel_tel_measure m[1] = {{keel_atom("n"), 1}};
  long i = 0;
  while (i < PER_THREAD || !atomic_load(&g_stop)) {
    keel_tel_execute(g_ev, m, 1, NULL, 0);
    i++;
  }
  *done = i;
  return NULL;
}

static void run(unsigned nthreads) {
  cr_assert_eq(keel_tel_event_parse("conc.ev", &g_ev), KEEL_OK);
  atomic_store(&g_stop, false);
  atomic_store(&g_late, 0);
  /* A handler attached for the whole run counts every execute. */
  cfg *steady = calloc(1, sizeof *steady);
  cr_assert_eq(keel_tel_attach(keel_atom("steady"), &g_ev, 1, counting, steady),
               KEEL_OK);
  pthread_t th[8];
  long done[8] = {0};
  for (unsigned i = 0; i < nthreads; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, emitter, &done[i]), 0);
  for (int r = 0; r < ROUNDS; r++) {
    cfg *c = calloc(1, sizeof *c);
    keel_term id = keel_small(r);
    cr_assert_eq(keel_tel_attach(id, &g_ev, 1, counting, c), KEEL_OK);
    cr_assert_eq(keel_tel_detach(id), KEEL_OK);
    atomic_store(&c->detached, true);
    free(c);
  }
  atomic_store(&g_stop, true);
  long total = 0;
  for (unsigned i = 0; i < nthreads; i++) {
    cr_assert_eq(pthread_join(th[i], NULL), 0);
    total += done[i];
  }
  cr_assert_eq(atomic_load(&g_late), 0, "a handler ran after its detach");
  cr_assert_eq(atomic_load(&steady->calls), total, "steady handler: %ld of %ld",
               atomic_load(&steady->calls), total);
  cr_assert_eq(keel_tel_detach(keel_atom("steady")), KEEL_OK);
  free(steady);
}

Test(telemetry_concurrent, attach_detach_while_executing) {
  for (size_t i = 0; i < sizeof thread_counts / sizeof thread_counts[0]; i++)
    run(thread_counts[i]);
}

/* Handlers that fail on other threads while the main thread attaches. */
static int fail_once(const keel_tel_event *e, const keel_tel_measure *m,
                     size_t nm, const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  return KEEL_EINVAL;
}

static atomic_long g_failures;
static int count_failure(const keel_tel_event *e, const keel_tel_measure *m,
                         size_t nm, const keel_tel_meta *md, size_t nmd,
                         void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  atomic_fetch_add(&g_failures, 1);
  return 0;
}

/* Waits until g_failures exceeds `before`; false after TIMEOUT_S. */
static bool wait_failures(long before) {
  uint64_t deadline = keel_monotonic_ns() + (uint64_t)TIMEOUT_S * 1000000000u;
  while (atomic_load(&g_failures) <= before) {
    if (keel_monotonic_ns() > deadline)
      return false;
    sched_yield();
  }
  return true;
}

Test(telemetry_concurrent, failing_handlers_detach_under_load) {
  for (size_t k = 0; k < sizeof thread_counts / sizeof thread_counts[0]; k++) {
    cr_assert_eq(keel_tel_event_parse("conc.fail", &g_ev), KEEL_OK);
    keel_tel_event *fail;
    cr_assert_eq(keel_tel_event_parse("telemetry.handler.failure", &fail),
                 KEEL_OK);
    cr_assert_eq(
        keel_tel_attach(keel_atom("obs"), &fail, 1, count_failure, NULL),
        KEEL_OK);
    atomic_store(&g_stop, false);
    pthread_t th[8];
    long done[8];
    for (unsigned i = 0; i < thread_counts[k]; i++)
      cr_assert_eq(pthread_create(&th[i], NULL, emitter, &done[i]), 0);
    for (int r = 0; r < ROUNDS; r++) {
      long before = atomic_load(&g_failures);
      cr_assert_eq(keel_tel_attach(keel_small(r), &g_ev, 1, fail_once, NULL),
                   KEEL_OK);
      /* An emitter calls it, detaches it, then reports the failure. */
      cr_assert(wait_failures(before), "no failure reported in %d s",
                TIMEOUT_S);
      cr_assert_eq(keel_tel_detach(keel_small(r)), KEEL_ENOENT);
    }
    atomic_store(&g_stop, true);
    for (unsigned i = 0; i < thread_counts[k]; i++)
      pthread_join(th[i], NULL);
    keel_heap h;
    keel_heap_init(&h);
    keel_term left;
    cr_assert_eq(keel_tel_list_handlers(NULL, 0, &h, &left), KEEL_OK);
    size_t n;
    cr_assert_eq(keel_list_length(left, &n), KEEL_OK);
    cr_assert_eq(n, 1, "only the observer is left");
    keel_heap_destroy(&h);
    cr_assert_eq(keel_tel_detach(keel_atom("obs")), KEEL_OK);
    cr_assert_eq(keel_tel_synchronize(), KEEL_OK);
  }
  cr_assert_gt(atomic_load(&g_failures), 0);
}
