/* Stress: 1k processes linked in a random tree (some trap exits), then
 * random kills, one cascade at a time. A model of OTP's rules predicts who
 * dies and with which reason: a death spreads along links to every
 * non-trapping neighbour with the same reason (kill arrives as 'killed'),
 * and stops at trapping ones, which get {'EXIT', From, Reason}. An observer
 * monitoring everyone must see exactly the predicted 'DOWN' reasons, and
 * each trapping neighbour the predicted exit message; nobody else dies.
 * 1, 2 and 8 schedulers; TSan in CI. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define MAXN 1000
#define KILLS 15

static int nproc;
static int parent_of[MAXN];
static bool traps[MAXN];
static keel_term pids[MAXN];
static _Atomic keel_term down_reason[MAXN]; /* 0: no 'DOWN' seen */
static _Atomic keel_term exit_reason[MAXN]; /* last 'EXIT' a trapper got */
static atomic_long downs, exits, ready;

static int index_of(keel_term pid) {
  for (int i = 0; i < nproc; i++)
    if (pids[i] == pid)
      return i;
  return -1;
}

static keel_handler_status member(keel_proc *self, keel_term msg, void *st) {
  int i = (int)(intptr_t)st;
  if (keel_is_tuple(msg) && keel_tuple_get(msg, 0) == KEEL_ATOM(EXIT)) {
    atomic_store(&exit_reason[i], keel_tuple_get(msg, 2)); /* atoms only */
    atomic_fetch_add(&exits, 1);
  } else if (msg == keel_atom("init")) {
    keel_trap_exit(self, traps[i]);
    if (parent_of[i] >= 0)
      cr_assert_eq(keel_link(self, pids[parent_of[i]]), KEEL_OK);
    atomic_fetch_add(&ready, 1);
  } else if (keel_is_tuple(msg)) { /* {ping, From} */
    (void)keel_send(keel_tuple_get(msg, 1), keel_atom("pong"));
  }
  return KEEL_CONTINUE;
}

static void observer(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref;
  for (int i = 0; i < nproc; i++)
    (void)keel_monitor(self, pids[i], 0, &h, &ref);
  /* Each monitor is in place once its target answers a later ping. */
  uint64_t buf[8];
  for (int i = 0; i < nproc; i++) {
    keel_heap s;
    keel_heap_init_fixed(&s, buf, 8);
    (void)keel_send(pids[i],
                    keel_tuple(&s, 2, keel_atom("ping"), keel_self(self)));
  }
  keel_term m, pong = keel_atom("pong");
  for (int i = 0; i < nproc; i++)
    (void)keel_receive(self, NULL, NULL, 30000, &m);
  (void)pong;
  atomic_fetch_add(&ready, 1);
  while (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK) {
    if (!keel_is_tuple(m))
      continue;
    int i = index_of(keel_tuple_get(m, 3));
    if (i >= 0) {
      atomic_store(&down_reason[i], keel_tuple_get(m, 4));
      atomic_fetch_add(&downs, 1);
    }
  }
}

/* The model: who dies, with which reason, when i gets exit(i, r). Fills
 * dead_now (deaths of this cascade, each with `got`) and trap_msgs (how
 * many exit messages trapping neighbours get). */
static bool alive_m[MAXN];

static bool linked(int a, int b) {
  return parent_of[a] == b || parent_of[b] == a;
}

static int cascade(int x, keel_term r, keel_term *expect_exit, int *deaths) {
  int msgs = 0;
  keel_term dying = r == KEEL_ATOM(KILL) ? KEEL_ATOM(KILLED) : r;
  if (traps[x] && r != KEEL_ATOM(KILL)) {
    expect_exit[x] = r; /* a message, no death */
    return 1;
  }
  int stack[MAXN], top = 0;
  alive_m[x] = false;
  stack[top++] = x;
  (*deaths)++;
  while (top > 0) {
    int d = stack[--top];
    for (int j = 0; j < nproc; j++) {
      if (!alive_m[j] || !linked(d, j))
        continue;
      if (traps[j]) {
        expect_exit[j] = dying;
        msgs++;
      } else {
        alive_m[j] = false;
        stack[top++] = j;
        (*deaths)++;
      }
    }
  }
  return msgs;
}

static bool counts_reach(void *arg) {
  long *want = arg;
  return atomic_load(&downs) >= want[0] && atomic_load(&exits) >= want[1];
}

static void run(unsigned nsched, uint32_t seed) {
  start_node(nsched, 0);
  double scale =
      getenv("KEEL_TEST_SCALE") ? atof(getenv("KEEL_TEST_SCALE")) : 1.0;
  nproc = (int)(MAXN * (scale > 0 && scale < 1 ? scale : 1.0));
  if (nproc < 50)
    nproc = 50;
  uint32_t x = seed;
  for (int i = 0; i < nproc; i++) {
    x = x * 1103515245u + 12345u;
    parent_of[i] = i == 0 ? -1 : (int)((x >> 8) % (uint32_t)i);
    traps[i] = ((x >> 20) % 5) == 0;
    alive_m[i] = true;
    atomic_store(&down_reason[i], 0);
    atomic_store(&exit_reason[i], 0);
    cr_assert_eq(keel_spawn(member, (void *)(intptr_t)i, NULL, &pids[i]),
                 KEEL_OK);
  }
  atomic_store(&downs, 0);
  atomic_store(&exits, 0);
  atomic_store(&ready, 0);
  /* Links are made in index order: a parent exists before its child. */
  for (int i = 0; i < nproc; i++)
    cr_assert_eq(keel_send(pids[i], keel_atom("init")), KEEL_OK);
  long want_ready = nproc;
  while (atomic_load(&ready) < want_ready)
    sched_yield();
  cr_assert_eq(keel_spawn_fiber(observer, NULL, NULL, NULL), KEEL_OK);
  while (atomic_load(&ready) < want_ready + 1)
    sched_yield();
  long want[2] = {0, 0};
  keel_term expect_exit[MAXN];
  for (int k = 0; k < KILLS; k++) {
    int alive_idx[MAXN], na = 0;
    for (int i = 0; i < nproc; i++)
      if (alive_m[i])
        alive_idx[na++] = i;
    if (na == 0)
      break;
    x = x * 1103515245u + 12345u;
    int victim = alive_idx[(x >> 8) % (uint32_t)na];
    char name[32];
    snprintf(name, sizeof name, "boom%d", k);
    keel_term r = (x >> 24) % 3 == 0 ? KEEL_ATOM(KILL) : keel_atom(name);
    bool before[MAXN];
    memcpy(before, alive_m, sizeof before);
    for (int i = 0; i < nproc; i++)
      expect_exit[i] = 0;
    int deaths = 0;
    int msgs = cascade(victim, r, expect_exit, &deaths);
    want[0] += deaths;
    want[1] += msgs;
    cr_assert_eq(keel_exit(pids[victim], r), KEEL_OK);
    cr_assert(wait_until(counts_reach, want),
              "kill %d (seed %u, %u sched): %ld/%ld downs, %ld/%ld exits", k,
              seed, nsched, atomic_load(&downs), want[0], atomic_load(&exits),
              want[1]);
    keel_term dying = r == KEEL_ATOM(KILL) ? KEEL_ATOM(KILLED) : r;
    for (int i = 0; i < nproc; i++) {
      if (before[i] && !alive_m[i])
        cr_assert_eq(atomic_load(&down_reason[i]), dying,
                     "kill %d: member %d's 'DOWN' reason", k, i);
      if (expect_exit[i] != 0)
        cr_assert_eq(atomic_load(&exit_reason[i]), expect_exit[i],
                     "kill %d: trapping member %d's 'EXIT'", k, i);
    }
  }
  /* Nobody else died: exactly the survivors of the model are alive. */
  int survivors = 0;
  for (int i = 0; i < nproc; i++)
    survivors += alive_m[i];
  keel_node_stats st;
  cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
  cr_assert_eq(st.processes, (size_t)survivors + 1, "seed %u", seed);
  cr_assert_eq(atomic_load(&downs), want[0], "no extra 'DOWN'");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

Test(link_stress, random_trees_random_kills_reasons_as_otp) {
  for (size_t c = 0; c < NCONF; c++)
    for (uint32_t seed = 1; seed <= 3; seed++)
      run(sched_counts[c], seed * 7919u + (uint32_t)c);
}
