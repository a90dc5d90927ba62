/* Emitting allocates nothing: keel_tel_execute with no handler, with a
 * handler, and a metric recording into an existing series, counted by
 * malloc wrappers in this executable (which forward to glibc's). Not
 * built into sanitizer runs, whose runtimes own malloc. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stddef.h>

#include "keel/metrics.h"
#include "keel/telemetry.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NOALLOC_SKIP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NOALLOC_SKIP 1
#endif
#endif

#ifndef NOALLOC_SKIP
static atomic_long g_allocs;
static atomic_bool g_counting;

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);
void free(void *p);

void *malloc(size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed))
    atomic_fetch_add(&g_allocs, 1);
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed))
    atomic_fetch_add(&g_allocs, 1);
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed))
    atomic_fetch_add(&g_allocs, 1);
  return __libc_realloc(p, n);
}
void free(void *p) {
  __libc_free(p);
}

static int nop(const keel_tel_event *e, const keel_tel_measure *m, size_t nm,
               const keel_tel_meta *md, size_t nmd, void *c) {
  (void)e, (void)m, (void)nm, (void)md, (void)nmd, (void)c;
  return 0;
}

/* Allocations made by n executes of e. */
static long allocs_of_execute(keel_tel_event *e, int n) {
  keel_tel_measure m[1] = {{keel_atom("latency"), 3}};
  keel_tel_meta md[1] = {{keel_atom("method"), keel_atom("get")}};
  atomic_store(&g_allocs, 0);
  atomic_store(&g_counting, true);
  for (int i = 0; i < n; i++)
    keel_tel_execute(e, m, 1, md, 1);
  atomic_store(&g_counting, false);
  return atomic_load(&g_allocs);
}

Test(telemetry_noalloc, execute_allocates_nothing) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("noalloc.req", &e), KEEL_OK);
  /* The wrappers do count: an attach allocates. */
  atomic_store(&g_allocs, 0);
  atomic_store(&g_counting, true);
  cr_assert_eq(keel_tel_attach(keel_atom("probe"), &e, 1, nop, NULL), KEEL_OK);
  atomic_store(&g_counting, false);
  cr_assert_gt(atomic_load(&g_allocs), 0);
  cr_assert_eq(keel_tel_detach(keel_atom("probe")), KEEL_OK);

  cr_assert_eq(allocs_of_execute(e, 1000), 0, "no handler");
  cr_assert_eq(keel_tel_attach(keel_atom("nop"), &e, 1, nop, NULL), KEEL_OK);
  cr_assert_eq(allocs_of_execute(e, 1000), 0, "one handler");
  cr_assert_eq(keel_tel_detach(keel_atom("nop")), KEEL_OK);

  keel_metrics *reg;
  cr_assert_eq(keel_metrics_create(&reg), KEEL_OK);
  static const char *const tags[] = {"method"};
  static const double bounds[] = {1, 10};
  keel_metric_spec spec = {.type = KEEL_METRIC_DISTRIBUTION,
                           .name = "noalloc.req.latency",
                           .tags = tags,
                           .ntags = 1,
                           .buckets = bounds,
                           .nbuckets = 2};
  cr_assert_eq(keel_metrics_add(reg, &spec), KEEL_OK);
  cr_assert_gt(allocs_of_execute(e, 1), 0, "the first event makes a series");
  cr_assert_eq(allocs_of_execute(e, 1000), 0, "recording into it");
  keel_metrics_destroy(reg);
}
#else
Test(telemetry_noalloc, execute_allocates_nothing) {
  cr_skip_test("malloc belongs to the sanitizer runtime in this build");
}
#endif
