/*
 * test_io.c - the runtime's I/O poller (white box, runtime/io.h): handles
 * carry a generation, so a reused slot and a reused descriptor number
 * never reach the old user; events reach the event function with the
 * slot locked; the poll thread starts with the first descriptor; a
 * simulated node has no poller. 1, 2 and 8 schedulers.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "keel/runtime.h"
#include "keel/sim.h"
#include "runtime/io.h"

static const unsigned sched_counts[] = {1, 2, 8};

typedef struct obj {
  int id;
  _Atomic int events;
  _Atomic uint64_t last_handle;
} obj;

static void on_ev(void *o, uint64_t h, uint32_t events) {
  obj *b = o;
  (void)events;
  atomic_store(&b->last_handle, h);
  atomic_fetch_add(&b->events, 1);
}

static void on_free(void *o) {
  (void)o;
}

static bool wait_events(obj *b, int n) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&b->events) < n) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > 30)
      return false;
  }
  return true;
}

static void close_handle(uint64_t h) {
  cr_assert_not_null(keel__io_lock(h));
  keel__io_close_locked(h);
  keel__io_unlock(h);
}

Test(io, generations_and_reuse) {
  for (size_t k = 0; k < 3; k++) {
    keel_node_opts o = {.schedulers = sched_counts[k]};
    cr_assert_eq(keel_node_start(&o), KEEL_OK);
    obj a = {.id = 1}, b = {.id = 2};
    int p1[2], p2[2];
    cr_assert_eq(pipe2(p1, O_NONBLOCK | O_CLOEXEC), 0);
    uint64_t ha = 0, hb = 0;
    cr_assert_eq(keel__io_open(p1[0], on_ev, on_free, &a, &ha), KEEL_OK);
    cr_assert_neq(ha, 0);
    /* An event reaches a with its handle. */
    cr_assert_eq(write(p1[1], "x", 1), 1);
    cr_assert(wait_events(&a, 1));
    cr_assert_eq(atomic_load(&a.last_handle), ha);
    cr_assert_eq(keel__io_lock(ha), &a);
    keel__io_unlock(ha);
    int fd_a = p1[0];
    close_handle(ha); /* closes p1[0] */
    cr_assert_null(keel__io_lock(ha), "stale after close");
    close(p1[1]);
    /* The next pipe reuses the descriptor number and the slot. */
    cr_assert_eq(pipe2(p2, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(p2[0], fd_a, "the kernel reuses the lowest number");
    cr_assert_eq(keel__io_open(p2[0], on_ev, on_free, &b, &hb), KEEL_OK);
    cr_assert_eq((uint32_t)hb, (uint32_t)ha, "same slot");
    cr_assert_neq(hb, ha, "another generation");
    cr_assert_null(keel__io_lock(ha), "the old handle names nothing");
    int before_a = atomic_load(&a.events);
    cr_assert_eq(write(p2[1], "y", 1), 1);
    cr_assert(wait_events(&b, 1));
    cr_assert_eq(atomic_load(&b.last_handle), hb);
    cr_assert_eq(atomic_load(&a.events), before_a, "a never hears of b");
    cr_assert_null(keel__io_lock(0));
    cr_assert_null(keel__io_lock(UINT64_C(0x7fffffff00000000) | 12345u));
    close_handle(hb);
    close(p2[1]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel__io_lock(hb), NULL, "no node");
  }
}

/* Slots still open at node stop are freed with the node. */
static _Atomic int freed;
static void count_free(void *o) {
  (void)o;
  atomic_fetch_add(&freed, 1);
}

Test(io, stop_frees_open_slots) {
  keel_node_opts o = {.schedulers = 2};
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  atomic_store(&freed, 0);
  int p[2];
  cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  obj a = {.id = 1};
  uint64_t h;
  cr_assert_eq(keel__io_open(p[0], on_ev, count_free, &a, &h), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(atomic_load(&freed), 1);
  cr_assert_eq(fcntl(p[0], F_GETFD), -1, "the descriptor was closed");
  close(p[1]);
}

Test(io, simulation_and_no_node) {
  int p[2];
  cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  uint64_t h;
  obj a = {0};
  cr_assert_eq(keel__io_open(p[0], on_ev, on_free, &a, &h), KEEL_ESTATE);
  keel_node_opts o = {.schedulers = 1};
  cr_assert_eq(keel_sim_start(&o, 7), KEEL_OK);
  cr_assert_eq(keel__io_open(p[0], on_ev, on_free, &a, &h), KEEL_EUNSUPPORTED);
  cr_assert(!keel__io_available());
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  close(p[0]);
  close(p[1]);
}
