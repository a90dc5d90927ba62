/* Tables used from processes: access rights checked against the calling
 * process, ownership (owner exit with and without an heir, give_away and
 * the 'ETS-TRANSFER' messages) and counters updated by many processes.
 * Every scenario runs with 1, 2 and 8 schedulers. The owner-exit hook is
 * called directly, as the runtime's process-exit hook will. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/ets.h"
#include "runtime/rt_test.h"
#include "tables/ets_internal.h"

/* What a worker process does on 'go', and what it saw. */
typedef struct job {
  void (*fn)(keel_proc *self, struct job *j);
  keel_ets_tab tab;
  keel_ets_opts opts;
  int rc[8];
  /* last 'ETS-TRANSFER' received (immediate fields only) */
  int transfers;
  keel_term tr_tab, tr_from, tr_data;
} job;

static keel_handler_status worker(keel_proc *self, keel_term msg, void *st) {
  job *j = st;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 4 &&
      keel_tuple_get(msg, 0) == keel_atom("ETS-TRANSFER")) {
    j->transfers++;
    j->tr_tab = keel_tuple_get(msg, 1);
    j->tr_from = keel_tuple_get(msg, 2);
    j->tr_data = keel_tuple_get(msg, 3);
  } else if (j->fn != NULL) {
    j->fn(self, j);
  }
  signal_event();
  return KEEL_CONTINUE;
}

static keel_term spawn_worker(job *j) {
  keel_term pid;
  cr_assert_eq(keel_spawn(worker, j, NULL, &pid), KEEL_OK);
  return pid;
}

/* Sends 'go' and waits for the worker's event. */
static void run_job(keel_term pid, void (*fn)(keel_proc *, job *), job *j) {
  j->fn = fn;
  long before;
  pthread_mutex_lock(&mu);
  before = events;
  pthread_mutex_unlock(&mu);
  cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
  cr_assert(wait_events(before + 1), "worker did not answer");
}

static void create(keel_proc *self, job *j) {
  (void)self;
  j->rc[0] = keel_ets_new(&j->opts, &j->tab);
}

static void use(keel_proc *self, job *j) {
  (void)self;
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  j->rc[0] = keel_ets_insert(j->tab, keel_build(&h, "{k, 1}"));
  j->rc[1] = keel_ets_lookup(j->tab, keel_atom("k"), &h, &r);
  j->rc[2] = keel_ets_member(j->tab, keel_atom("k"));
  j->rc[3] = keel_ets_update_counter(j->tab, keel_atom("k"), keel_small(1),
                                     KEEL_NONE, &h, &r);
  j->rc[4] =
      (int)keel_ets_select_count(j->tab, keel_build(&h, "[{'_', [], [true]}]"));
  j->rc[5] = keel_ets_delete_all_objects(j->tab);
  keel_ets_info in;
  j->rc[6] = keel_ets_info_get(j->tab, &in);
  keel_heap_destroy(&h);
}

static void del(keel_proc *self, job *j) {
  (void)self;
  j->rc[0] = keel_ets_delete(j->tab);
}

static void give(keel_proc *self, job *j) {
  (void)self;
  j->rc[0] = keel_ets_give_away(j->tab, j->opts.heir, keel_small(77));
}

static void each_sched(void (*scenario)(void)) {
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    scenario();
    keel_ets_delete_all_tables();
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- access ---- */

static void access_scenario(void) {
  job owner = {0}, other = {0};
  keel_term op = spawn_worker(&owner), xp = spawn_worker(&other);
  const keel_ets_access kinds[] = {KEEL_ETS_PROTECTED, KEEL_ETS_PRIVATE,
                                   KEEL_ETS_PUBLIC};
  for (int k = 0; k < 3; k++) {
    owner.opts = (keel_ets_opts){.access = kinds[k]};
    run_job(op, create, &owner);
    cr_assert_eq(owner.rc[0], KEEL_OK);
    keel_ets_info in;
    cr_assert_eq(keel_ets_info_get(owner.tab, &in), KEEL_OK);
    cr_assert_eq(in.owner, op);
    cr_assert_eq(in.access, kinds[k]);
    /* another process */
    other.tab = owner.tab;
    run_job(xp, use, &other);
    bool can_read = kinds[k] != KEEL_ETS_PRIVATE;
    bool can_write = kinds[k] == KEEL_ETS_PUBLIC;
    cr_assert_eq(other.rc[0], can_write ? KEEL_OK : KEEL_EBADARG);
    cr_assert_eq(other.rc[1], can_read ? KEEL_OK : KEEL_EBADARG);
    cr_assert_eq(other.rc[2], can_read ? (can_write ? 1 : 0) : KEEL_EBADARG);
    cr_assert_eq(other.rc[3], can_write ? KEEL_OK : KEEL_EBADARG);
    cr_assert_eq(other.rc[4], can_read ? (can_write ? 1 : 0) : KEEL_EBADARG);
    cr_assert_eq(other.rc[5], can_write ? KEEL_OK : KEEL_EBADARG);
    cr_assert_eq(other.rc[6], KEEL_OK); /* info is open to everyone */
    /* the owner may do everything */
    run_job(op, use, &owner);
    for (int i = 0; i < 6; i++)
      cr_assert_geq(owner.rc[i], 0, "owner op %d", i);
    /* only the owner deletes, whatever the access */
    run_job(xp, del, &other);
    cr_assert_eq(other.rc[0], KEEL_EBADARG);
    run_job(op, del, &owner);
    cr_assert_eq(owner.rc[0], KEEL_OK);
    cr_assert_eq(keel_ets_member(owner.tab, keel_atom("k")), KEEL_EBADARG);
  }
  /* a protected table created outside any process has no owner: every
   * process reads it, none writes or deletes it */
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(NULL, &t), KEEL_OK);
  other.tab = t;
  run_job(xp, use, &other);
  cr_assert_eq(other.rc[0], KEEL_EBADARG);
  cr_assert_eq(other.rc[1], KEEL_OK);
  run_job(xp, del, &other);
  cr_assert_eq(other.rc[0], KEEL_EBADARG);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  keel_send(op, KEEL_ATOM(STOP));
  keel_send(xp, KEEL_ATOM(STOP));
}

Test(owner, access_from_processes) {
  each_sched(access_scenario);
}

/* ---- owner exit, heir, give_away ---- */

static void heir_scenario(void) {
  job owner = {0}, heir = {0}, third = {0};
  keel_term op = spawn_worker(&owner), hp = spawn_worker(&heir);
  keel_term tp = spawn_worker(&third);
  /* no heir: the table goes with its owner */
  owner.opts = (keel_ets_opts){0};
  run_job(op, create, &owner);
  keel_ets_tab plain = owner.tab;
  size_t before = keel_ets_count();
  /* with an heir */
  owner.opts = (keel_ets_opts){.name = keel_atom("inherited"),
                               .heir = hp,
                               .heir_data = keel_atom("my_data")};
  run_job(op, create, &owner);
  keel_ets_tab inh = owner.tab;
  cr_assert_eq(keel_ets_count(), before + 1);
  long ev;
  pthread_mutex_lock(&mu);
  ev = events;
  pthread_mutex_unlock(&mu);
  keel__ets_owner_exit(op);
  cr_assert(wait_events(ev + 1), "heir got no 'ETS-TRANSFER'");
  cr_assert_eq(keel_ets_count(), before);
  cr_assert_eq(keel_ets_member(plain, keel_atom("k")), KEEL_EBADARG);
  cr_assert_eq(heir.transfers, 1);
  cr_assert_eq(heir.tr_tab, keel_atom("inherited"));
  cr_assert_eq(heir.tr_from, op);
  cr_assert_eq(heir.tr_data, keel_atom("my_data"));
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(inh, &in), KEEL_OK);
  cr_assert_eq(in.owner, hp);
  /* the heir now writes the protected table; the old owner cannot */
  heir.tab = inh;
  run_job(hp, use, &heir);
  cr_assert_eq(heir.rc[0], KEEL_OK);
  owner.tab = inh;
  run_job(op, use, &owner);
  cr_assert_eq(owner.rc[0], KEEL_EBADARG);
  /* give_away: only the owner, never to itself */
  third.tab = inh;
  third.opts.heir = op;
  run_job(tp, give, &third);
  cr_assert_eq(third.rc[0], KEEL_EBADARG);
  heir.opts.heir = hp;
  run_job(hp, give, &heir);
  cr_assert_eq(heir.rc[0], KEEL_EBADARG);
  heir.opts.heir = tp;
  pthread_mutex_lock(&mu);
  ev = events;
  pthread_mutex_unlock(&mu);
  run_job(hp, give, &heir); /* one event for the job, one for the message */
  cr_assert_eq(heir.rc[0], KEEL_OK);
  cr_assert(wait_events(ev + 2));
  cr_assert_eq(third.transfers, 1);
  cr_assert_eq(third.tr_from, hp);
  cr_assert_eq(third.tr_data, keel_small(77));
  cr_assert_eq(keel_ets_info_get(inh, &in), KEEL_OK);
  cr_assert_eq(in.owner, tp);
  /* the new owner's exit: its heir is still hp, which gets it back */
  pthread_mutex_lock(&mu);
  ev = events;
  pthread_mutex_unlock(&mu);
  keel__ets_owner_exit(tp);
  cr_assert(wait_events(ev + 1));
  cr_assert_eq(heir.transfers, 2);
  cr_assert_eq(heir.tr_from, tp);
  /* the heir's own exit: it is the heir, so the table is deleted */
  keel__ets_owner_exit(hp);
  cr_assert_eq(keel_ets_info_get(inh, &in), KEEL_EBADARG);
  keel_ets_tab w;
  cr_assert_eq(keel_ets_whereis(keel_atom("inherited"), &w), KEEL_ENOENT);
  /* a pid owning nothing: nothing happens */
  size_t n = keel_ets_count();
  keel__ets_owner_exit(op);
  keel__ets_owner_exit(KEEL_NONE);
  cr_assert_eq(keel_ets_count(), n);
  keel_send(op, KEEL_ATOM(STOP));
  keel_send(hp, KEEL_ATOM(STOP));
  keel_send(tp, KEEL_ATOM(STOP));
}

Test(owner, owner_exit_heir_give_away) {
  each_sched(heir_scenario);
}

Test(owner, explicit_owner_and_no_node) {
  /* with no node, tables work; transfers cannot be sent */
  keel_ets_opts o = {.owner = keel_pid_local(12345)};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.owner, keel_pid_local(12345));
  cr_assert_eq(keel_ets_give_away(t, keel_pid_local(7), KEEL_NIL), KEEL_ESTATE);
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.owner, keel_pid_local(12345));
  cr_assert_eq(keel_ets_give_away(t, keel_atom("x"), KEEL_NIL), KEEL_EBADARG);
  keel__ets_owner_exit(keel_pid_local(12345));
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_EBADARG);
  /* an heir that cannot be told (no node): the table is deleted */
  o.heir = keel_pid_local(7);
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  keel__ets_owner_exit(keel_pid_local(12345));
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_EBADARG);
  cr_assert_eq(keel_ets_count(), 0);
}

/* ---- counters from many processes ---- */

#define NPROCS 16
#define INCS 500

static keel_ets_tab shared_tab;

static void bump(keel_proc *self, job *j) {
  (void)self;
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  keel_term dflt = keel_build(&h, "{c, 0}");
  j->rc[0] = 0;
  for (int i = 0; i < INCS; i++)
    if (keel_ets_update_counter(shared_tab, keel_atom("c"), keel_small(1), dflt,
                                &h, &r) != KEEL_OK)
      j->rc[0]++;
  keel_heap_destroy(&h);
}

static void counter_scenario(void) {
  keel_ets_opts o = {.access = KEEL_ETS_PUBLIC};
  cr_assert_eq(keel_ets_new(&o, &shared_tab), KEEL_OK);
  job jobs[NPROCS];
  keel_term pids[NPROCS];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < NPROCS; i++) {
    jobs[i].fn = bump;
    pids[i] = spawn_worker(&jobs[i]);
  }
  for (int i = 0; i < NPROCS; i++)
    cr_assert_eq(keel_send(pids[i], keel_atom("go")), KEEL_OK);
  cr_assert(wait_events(NPROCS));
  keel_heap h;
  keel_heap_init(&h);
  keel_term v;
  cr_assert_eq(
      keel_ets_lookup_element(shared_tab, keel_atom("c"), 2, KEEL_NONE, &h, &v),
      KEEL_OK);
  cr_assert_eq(v, keel_small(NPROCS * INCS));
  for (int i = 0; i < NPROCS; i++) {
    cr_assert_eq(jobs[i].rc[0], 0);
    keel_send(pids[i], KEEL_ATOM(STOP));
  }
  keel_heap_destroy(&h);
}

Test(owner, counters_from_processes) {
  each_sched(counter_scenario);
}
