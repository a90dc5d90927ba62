/* Fuse handles: keel_fuse_ask_h answers as keel_fuse_ask does while the
 * fuse stays installed, and a handle taken before a remove is stale for
 * good (also after the name is installed again). */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "fuse/fuse_test.h"

static keel_term A, B;

static void init_names(void) {
  A = keel_atom("db");
  B = keel_atom("cache");
}

Test(fuse_handle, follows_melts_heals_and_admin, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(1, 1000, 500);
  keel_fuse_handle h;
  cr_assert_eq(keel_fuse_handle_get(fs, A, &h), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_handle_get(fs, A, &h), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK,
               "1 melt does not exceed 1");
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_BLOWN);
  advance_ms(&c, 500);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK, "the handle's ask heals");
  cr_assert_eq(keel_fuse_circuit_disable(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_circuit_enable(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK);
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_reset(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK);
  /* A reinstall keeps the handle (the fuse was never removed). */
  keel_fuse_melt(fs, A);
  keel_fuse_melt(fs, A);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_FUSE_OK);
  keel_fuses_destroy(fs);
}

Test(fuse_handle, stale_after_remove_even_when_reinstalled,
     .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(0, 1000, 500);
  keel_fuse_handle ha, hb, ha2;
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_install(fs, B, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_handle_get(fs, A, &ha), KEEL_OK);
  cr_assert_eq(keel_fuse_handle_get(fs, B, &hb), KEEL_OK);
  keel_fuse_melt(fs, B); /* B blows, A stays ok */
  cr_assert_eq(keel_fuse_ask_h(fs, ha), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, hb), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_remove(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, ha), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_handle_get(fs, A, &ha2), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask(fs, A), KEEL_FUSE_OK, "the name is back");
  cr_assert_eq(keel_fuse_ask_h(fs, ha), KEEL_ENOENT, "the old handle is not");
  cr_assert_eq(keel_fuse_handle_get(fs, A, &ha2), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, ha2), KEEL_FUSE_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, hb), KEEL_FUSE_BLOWN, "B is untouched");
  /* A second remove and reinstall makes ha2 stale too. */
  cr_assert_eq(keel_fuse_remove(fs, A), KEEL_OK);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(fs, ha2), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_ask_h(fs, ha), KEEL_ENOENT);
  keel_fuses_destroy(fs);
}

Test(fuse_handle, bad_arguments, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(1, 1000, 500);
  keel_fuse_handle h = {0};
  cr_assert_eq(keel_fuse_ask_h(fs, h), KEEL_ENOENT, "a zeroed handle");
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  cr_assert_eq(keel_fuse_handle_get(fs, A, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_fuse_handle_get(NULL, A, &h), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_handle_get(fs, KEEL_NONE, &h), KEEL_ENOENT);
  cr_assert_eq(keel_fuse_handle_get(fs, A, &h), KEEL_OK);
  cr_assert_eq(keel_fuse_ask_h(NULL, h), KEEL_ENOENT);
  keel_fuses_destroy(fs);
}

/* Names that are not immediates (tuples, binaries) hash through keel_hash;
 * atoms and small integers through the word mix: both find their fuse. */
Test(fuse_handle, boxed_and_immediate_names, .init = init_names) {
  test_clock c;
  keel_fuses *fs = set_on(&c, 1);
  keel_fuse_opts o = standard(0, 1000, 500);
  keel_heap hp;
  keel_heap_init(&hp);
  keel_term names[4] = {A, keel_small(42),
                        keel_tuple(&hp, 2, keel_atom("svc"), keel_small(7)),
                        keel_binary(&hp, "name", 4)};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(keel_fuse_install(fs, names[i], &o), KEEL_OK);
  keel_fuse_melt(fs, names[2]);
  keel_heap hp2;
  keel_heap_init(&hp2); /* an equal tuple built elsewhere finds the fuse */
  keel_term same = keel_tuple(&hp2, 2, keel_atom("svc"), keel_small(7));
  for (int i = 0; i < 4; i++) {
    keel_fuse_handle h;
    cr_assert_eq(keel_fuse_handle_get(fs, names[i], &h), KEEL_OK);
    cr_assert_eq(keel_fuse_ask_h(fs, h),
                 i == 2 ? KEEL_FUSE_BLOWN : KEEL_FUSE_OK);
  }
  cr_assert_eq(keel_fuse_ask(fs, same), KEEL_FUSE_BLOWN);
  cr_assert_eq(keel_fuse_ask(fs, keel_small(43)), KEEL_ENOENT);
  keel_heap_destroy(&hp2);
  keel_heap_destroy(&hp);
  keel_fuses_destroy(fs);
}

/* Threads ask through handles while another removes and reinstalls the
 * fuse: every answer is ok, blown or not-found, and once a thread has seen
 * not-found its handle never answers anything else. */
typedef struct asker {
  keel_fuses *fs;
  keel_fuse_handle h;
  _Atomic int *stop;
  int bad;
  long asks;
} asker;

static void *ask_main(void *arg) {
  asker *a = arg;
  bool gone = false;
  while (!atomic_load(a->stop) || a->asks < 1000) {
    int r = keel_fuse_ask_h(a->fs, a->h);
    if (r != KEEL_FUSE_OK && r != KEEL_FUSE_BLOWN && r != KEEL_ENOENT)
      a->bad++;
    if (gone && r != KEEL_ENOENT)
      a->bad++;
    gone = gone || r == KEEL_ENOENT;
    a->asks++;
  }
  return NULL;
}

Test(fuse_handle, stale_under_concurrent_remove, .init = init_names) {
  keel_fuses *fs = NULL;
  cr_assert_eq(keel_fuses_create(NULL, &fs), KEEL_OK);
  keel_fuse_opts o = standard(3, 1000, 1000);
  cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
  _Atomic int stop = 0;
  asker a[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    a[i] = (asker){.fs = fs, .stop = &stop};
    cr_assert_eq(keel_fuse_handle_get(fs, A, &a[i].h), KEEL_OK);
    cr_assert_eq(pthread_create(&th[i], NULL, ask_main, &a[i]), 0);
  }
  for (int round = 0; round < 200; round++) {
    keel_fuse_melt(fs, A);
    if (round % 10 == 9) {
      cr_assert_eq(keel_fuse_remove(fs, A), KEEL_OK);
      cr_assert_eq(keel_fuse_install(fs, A, &o), KEEL_OK);
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(a[i].bad, 0);
    cr_assert_eq(keel_fuse_ask_h(fs, a[i].h), KEEL_ENOENT,
                 "handles taken before the removes are stale");
  }
  keel_fuses_destroy(fs);
}
