/* Registry: one process with very many entries (200,000 unique keys, and
 * 200,000 entries of a duplicate registry, some keys held many times)
 * registers them, unregisters some, then dies: its entries are all gone
 * afterwards and another process's stay. Counts are asserted, never
 * times (the per-entry costs are in `keel bench otp`). 1, 2 and 8
 * schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define NKEYS_FULL 200000
#define MANY 1000 /* entries under 'many' (values 0..MANY-1) */
#define SAME 1000 /* entries under 'same' (all value nil) */

typedef struct bulk_case {
  keel_registry *uniq, *dup;
  int nkeys; /* NKEYS_FULL * KEEL_TEST_SCALE (sanitizer builds use less) */
  _Atomic int failed; /* first failing step + 1, or 0 */
} bulk_case;

static int scaled_keys(void) {
  const char *e = getenv("KEEL_TEST_SCALE");
  double f = e != NULL ? atof(e) : 1.0;
  int n = (int)(NKEYS_FULL * (f > 0 && f <= 1 ? f : 1.0));
  return n < 4 * (MANY + SAME) ? 4 * (MANY + SAME) : n;
}

static void fail(bulk_case *c, int step) {
  int zero = 0;
  (void)atomic_compare_exchange_strong(&c->failed, &zero, step + 1);
}

static int64_t keys_of(keel_registry *r, keel_term pid) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term l;
  size_t n = 0;
  int rc = keel_registry_keys(r, pid, &h, &l);
  if (rc == KEEL_OK)
    rc = keel_list_length(l, &n);
  keel_heap_destroy(&h);
  return rc == KEEL_OK ? (int64_t)n : rc;
}

/* Registers nkeys unique keys, and nkeys duplicate entries: distinct
 * keys, then 'many' MANY times and 'same' SAME times; unregisters half of
 * 'many' by value; then waits to be told to die. */
static void hoarder(keel_proc *self, void *arg) {
  bulk_case *c = arg;
  keel_term me = keel_self(self);
  for (int i = 0; i < c->nkeys; i++)
    if (keel_registry_register(c->uniq, keel_small(i), keel_small(i)) !=
        KEEL_OK) {
      fail(c, 0);
      break;
    }
  for (int i = 0; i < c->nkeys - MANY - SAME; i++)
    if (keel_registry_register(c->dup, keel_small(i), keel_small(i)) !=
        KEEL_OK) {
      fail(c, 1);
      break;
    }
  for (int i = 0; i < MANY; i++)
    if (keel_registry_register(c->dup, keel_atom("many"), keel_small(i)) !=
        KEEL_OK)
      fail(c, 2);
  for (int i = 0; i < SAME; i++)
    if (keel_registry_register(c->dup, keel_atom("same"), keel_atom("nil")) !=
        KEEL_OK)
      fail(c, 3);
  if (keys_of(c->uniq, me) != c->nkeys || keys_of(c->dup, me) != c->nkeys)
    fail(c, 4);
  /* half of 'many' by value: one {Pid, many} per entry left */
  keel_heap h;
  keel_heap_init(&h);
  keel_term guard = keel_build(&h, "[{'<', '$1', ~i}]", MANY / 2);
  if (keel_registry_unregister_match(c->dup, keel_atom("many"), keel_atom("$1"),
                                     guard) != MANY / 2)
    fail(c, 5);
  keel_heap_destroy(&h);
  if (keys_of(c->dup, me) != c->nkeys - MANY / 2 ||
      keel_registry_count(c->dup) != c->nkeys - MANY / 2 + 1)
    fail(c, 6);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 60000, &m);
}

static void bystander(keel_proc *self, void *arg) {
  bulk_case *c = arg;
  if (keel_registry_register(c->uniq, keel_atom("other"), KEEL_NIL) !=
          KEEL_OK ||
      keel_registry_register(c->dup, keel_atom("same"), KEEL_NIL) != KEEL_OK)
    fail(c, 7);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 60000, &m);
}

static bool only_bystander_left(void *arg) {
  bulk_case *c = arg;
  return keel_registry_count(c->uniq) == 1 && keel_registry_count(c->dup) == 1;
}

Test(registry_bulk, one_process_with_many_entries_dies, .timeout = 600) {
  char cfg[96];
  for (size_t k = 0; config_start_sim(k, false, cfg, sizeof cfg); k++) {
    bulk_case c = {.nkeys = scaled_keys()};
    keel_registry_opts ou = {.keys = KEEL_REGISTRY_UNIQUE};
    keel_registry_opts od = {.keys = KEEL_REGISTRY_DUPLICATE, .partitions = 4};
    cr_assert_eq(keel_registry_new(&ou, &c.uniq), KEEL_OK);
    cr_assert_eq(keel_registry_new(&od, &c.dup), KEEL_OK);
    long base = events;
    keel_term other, pid;
    cr_assert_eq(keel_spawn_fiber(bystander, &c, NULL, &other), KEEL_OK);
    cr_assert(wait_events(base + 1));
    cr_assert_eq(keel_spawn_fiber(hoarder, &c, NULL, &pid), KEEL_OK);
    /* a slow build (sanitizers on a loaded machine) may take minutes */
    bool done = false;
    for (int i = 0; i < 10 && !done; i++)
      done = wait_events(base + 2);
    cr_assert(done, "%s", cfg);
    cr_assert_eq(atomic_load(&c.failed), 0, "%s: step %d", cfg,
                 atomic_load(&c.failed) - 1);
    cr_assert_eq(keel_registry_count(c.uniq), c.nkeys + 1);
    cr_assert_eq(keel_registry_count(c.dup), c.nkeys - MANY / 2 + 1);
    cr_assert_eq(keel_registry_whereis(c.uniq, keel_small(c.nkeys - 1)), pid);
    cr_assert_eq(keel_exit(pid, KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_until(only_bystander_left, &c), "%s", cfg);
    cr_assert_eq(keys_of(c.uniq, pid), 0);
    cr_assert_eq(keys_of(c.dup, pid), 0);
    cr_assert_eq(keys_of(c.dup, other), 1);
    cr_assert_eq(keel_registry_whereis(c.uniq, keel_atom("other")), other);
    cr_assert_eq(keel_registry_whereis(c.uniq, keel_small(0)),
                 KEEL_ATOM(UNDEFINED));
    keel_heap h;
    keel_heap_init(&h);
    keel_term l;
    cr_assert_eq(keel_registry_lookup(c.dup, keel_atom("same"), &h, &l),
                 KEEL_OK);
    cr_assert(keel_eq_exact(l, keel_build(&h, "[{~t, []}]", other)));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_send(other, KEEL_ATOM(OK)), KEEL_OK);
    config_stop();
    cr_assert_eq(keel_registry_delete(c.uniq), KEEL_OK);
    cr_assert_eq(keel_registry_delete(c.dup), KEEL_OK);
  }
}
