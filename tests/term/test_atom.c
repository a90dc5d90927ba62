/* The atom table: interning, validation, limits and concurrency. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "keel/term.h"

Test(atom, predefined_atoms_have_their_names) {
  cr_assert_str_eq(keel_atom_name(KEEL_ATOM(OK), NULL), "ok");
  cr_assert_str_eq(keel_atom_name(KEEL_ATOM(EXIT), NULL), "EXIT");
  cr_assert_eq(keel_atom("ok"), KEEL_ATOM(OK));
  cr_assert_eq(keel_atom("$gen_call"), KEEL_ATOM(CALL));
  cr_assert_eq(keel_atom("nonode@nohost"), KEEL_ATOM(NONODE));
}

Test(atom, interning_is_idempotent) {
  keel_term a = keel_atom("hello_world");
  cr_assert_neq(a, KEEL_NONE);
  cr_assert_eq(keel_atom("hello_world"), a);
  size_t n;
  cr_assert_str_eq(keel_atom_name(a, &n), "hello_world");
  cr_assert_eq(n, 11);
  keel_term b;
  cr_assert_eq(keel_atom_find("hello_world", 11, &b), KEEL_OK);
  cr_assert_eq(a, b);
  cr_assert_eq(keel_atom_find("never_interned_xyz", 18, &b), KEEL_ENOENT);
}

Test(atom, embedded_nul_and_empty) {
  keel_term a, b;
  cr_assert_eq(keel_atom_intern("a\0b", 3, &a), KEEL_OK);
  cr_assert_eq(keel_atom_intern("a", 1, &b), KEEL_OK);
  cr_assert_neq(a, b);
  size_t n;
  keel_atom_name(a, &n);
  cr_assert_eq(n, 3);
  cr_assert_eq(keel_atom_intern("", 0, &a), KEEL_OK);
  cr_assert_str_eq(keel_atom_name(a, NULL), "");
}

Test(atom, validation_and_length_limit) {
  keel_term a;
  char name[1100];
  memset(name, 'x', 255);
  cr_assert_eq(keel_atom_intern(name, 255, &a), KEEL_OK);
  cr_assert_eq(keel_atom_intern(name, 256, &a), KEEL_ELIMIT);
  /* 255 four-byte characters are allowed: the limit is in characters. */
  for (int i = 0; i < 255; i++)
    memcpy(name + 4 * i, "\xf0\x9f\x98\x80", 4);
  cr_assert_eq(keel_atom_intern(name, 1020, &a), KEEL_OK);
  cr_assert_eq(keel_atom_intern("\xff", 1, &a), KEEL_EINVAL);
  cr_assert_eq(keel_atom_intern("\xe2\x82", 2, &a), KEEL_EINVAL);
  cr_assert_eq(keel_atom(NULL), KEEL_NONE);
  cr_assert_eq(keel_atom_name(keel_small(1), NULL)[0], '\0');
}

#define THREADS 4
#define PER_THREAD 20000

static keel_term results[THREADS][PER_THREAD];

static void *intern_many(void *arg) {
  int id = (int)(intptr_t)arg;
  char buf[32];
  for (int i = 0; i < PER_THREAD; i++) {
    /* All threads intern the same names in different orders. */
    int k = (id % 2 == 0) ? i : PER_THREAD - 1 - i;
    int n = snprintf(buf, sizeof buf, "conc_%d", k);
    keel_term a;
    if (keel_atom_intern(buf, (size_t)n, &a) != KEEL_OK)
      a = KEEL_NONE;
    results[id][k] = a;
  }
  return NULL;
}

Test(atom, concurrent_interning_agrees) {
  size_t before = keel_atom_count();
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, intern_many, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (int k = 0; k < PER_THREAD; k++) {
    cr_assert_neq(results[0][k], KEEL_NONE);
    for (int i = 1; i < THREADS; i++)
      cr_assert_eq(results[i][k], results[0][k], "one atom per name");
    char buf[32];
    snprintf(buf, sizeof buf, "conc_%d", k);
    cr_assert_str_eq(keel_atom_name(results[0][k], NULL), buf);
  }
  cr_assert_eq(keel_atom_count(), before + PER_THREAD);
  cr_assert_geq(keel_atom_limit(), 1000000);
}
