/* gen_server names {via, Module, Name}: through the Registry's via module
 * and through a via module of the test (with its own send). Start, call,
 * cast, the sys functions and stop by name; a taken name; the name going
 * when the server dies or its init fails. Every scenario runs with 1, 2
 * and 8 schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "keel/gen_server.h"
#include "keel/registry.h"
#include "keel/signals.h"
#include "keel/telemetry.h"
#include "runtime/rt_test.h"

#define TMO 30000

/* A counter: cast inc adds one, call get answers it. Init with 'fail'
 * stops. */
static keel_gs_ret c_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  if (arg == keel_atom("fail"))
    return keel_gs_stop(gs, keel_atom("failed"));
  *s = keel_small(0);
  return keel_gs_ok(gs);
}

static keel_gs_ret c_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)req;
  (void)from;
  return keel_gs_reply(gs, *s);
}

static keel_gs_ret c_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  (void)msg;
  *s = keel_small(keel_small_value(*s) + 1);
  return keel_gs_ok(gs);
}

static const keel_gen_server_module cmod = {.version =
                                                KEEL_GEN_SERVER_MODULE_V1,
                                            .name = "counter",
                                            .init = c_init,
                                            .handle_call = c_call,
                                            .handle_cast = c_cast};

static int64_t get(keel_term name) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  cr_assert_eq(keel_gen_server_call(name, keel_atom("get"), TMO, &h, &r),
               KEEL_OK);
  keel_heap_destroy(&h);
  return keel_small_value(r);
}

/* ---- a via module with one slot per name atom (the test's) -------------- */

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static keel_term slot_name = KEEL_NONE, slot_pid = KEEL_NONE;
static atomic_long sends, unregisters;

static keel_term s_whereis(keel_term name) {
  pthread_mutex_lock(&slot_mu);
  keel_term p = name == slot_name ? slot_pid : KEEL_ATOM(UNDEFINED);
  pthread_mutex_unlock(&slot_mu);
  return p;
}

static int s_register(keel_term name, keel_term pid) {
  if (!keel_is_atom(name))
    return KEEL_EBADARG;
  pthread_mutex_lock(&slot_mu);
  int rc = slot_name == KEEL_NONE ? KEEL_OK : KEEL_EEXIST;
  if (rc == KEEL_OK) {
    slot_name = name;
    slot_pid = pid;
  }
  pthread_mutex_unlock(&slot_mu);
  return rc;
}

static int s_unregister(keel_term name) {
  pthread_mutex_lock(&slot_mu);
  if (name == slot_name)
    slot_name = slot_pid = KEEL_NONE;
  pthread_mutex_unlock(&slot_mu);
  atomic_fetch_add(&unregisters, 1);
  return KEEL_OK;
}

static int s_send(keel_term name, keel_term msg) {
  atomic_fetch_add(&sends, 1);
  keel_term pid = s_whereis(name);
  return keel_is_local_pid(pid) ? keel_send(pid, msg) : KEEL_ENOPROC;
}

static const keel_via_module slot_via = {.version = KEEL_VIA_MODULE_VERSION,
                                         .whereis_name = s_whereis,
                                         .register_name = s_register,
                                         .unregister_name = s_unregister,
                                         .send = s_send};

static bool gone(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

Test(gen_server_via, registry_via_names) {
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    keel_registry_opts ro = {.name = keel_atom("names")};
    keel_registry *reg;
    cr_assert_eq(keel_registry_new(&ro, &reg), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term name = keel_build(&h, "{via, registry, {names, {counter, 1}}}");
    keel_term pid, other = KEEL_NONE;
    keel_gen_server_opts o = {.name = name};
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &pid), KEEL_OK);
    cr_assert_eq(keel_name_whereis(name), pid);
    cr_assert_eq(keel_registry_whereis(reg, keel_build(&h, "{counter, 1}")),
                 pid);
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &other),
                 KEEL_EEXIST, "the name is taken");
    cr_assert_eq(other, pid, "the owner comes back");
    cr_assert_eq(keel_gen_server_cast(name, keel_atom("inc")), KEEL_OK);
    cr_assert_eq(keel_gen_server_cast(name, keel_atom("inc")), KEEL_OK);
    cr_assert_eq(get(name), 2);
    keel_term st;
    cr_assert_eq(keel_gen_server_get_state(name, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(st, keel_small(2));
    cr_assert_eq(keel_gen_server_stop(name, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert(wait_until(gone, &pid));
    cr_assert_eq(keel_name_whereis(name), KEEL_ATOM(UNDEFINED),
                 "the entry went with the server");
    keel_term r;
    cr_assert_eq(keel_gen_server_call(name, keel_atom("get"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(r, KEEL_ATOM(NOPROC));
    cr_assert_eq(keel_gen_server_cast(name, keel_atom("inc")), KEEL_OK,
                 "a cast to nobody is fine");
    cr_assert_eq(keel_gen_server_stop(name, KEEL_ATOM(NORMAL), TMO),
                 KEEL_ENOPROC);
    /* The name is free again; an init failure frees it too. */
    cr_assert_eq(keel_gen_server_start(&cmod, keel_atom("fail"), &o, &pid),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_name_whereis(name), KEEL_ATOM(UNDEFINED));
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &pid), KEEL_OK);
    cr_assert_eq(get(name), 0);
    cr_assert_eq(keel_gen_server_stop(pid, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    /* Unknown module, malformed names. */
    keel_term unknown = keel_build(&h, "{via, nomod, x}");
    cr_assert_eq(keel_gen_server_call(unknown, keel_atom("get"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_gen_server_cast(unknown, keel_atom("inc")), KEEL_OK);
    keel_gen_server_opts bad = {.name = keel_build(&h, "{via, \"m\", x}")};
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &bad, &pid),
                 KEEL_EINVAL);
    bad.name = keel_build(&h, "{vio, registry, x}");
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &bad, &pid),
                 KEEL_EINVAL);
    cr_assert_eq(keel_gen_server_cast(bad.name, keel_atom("inc")),
                 KEEL_EBADARG);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_registry_delete(reg), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_server_via, custom_via_module_with_send) {
  cr_assert_eq(keel_via_add(keel_atom("slot"), &slot_via), KEEL_OK);
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term name = keel_build(&h, "{via, slot, one}");
    keel_gen_server_opts o = {.name = name, .fiber = (i % 2) == 1};
    keel_term pid;
    long s0 = atomic_load(&sends), u0 = atomic_load(&unregisters);
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &pid), KEEL_OK);
    cr_assert_eq(s_whereis(keel_atom("one")), pid);
    cr_assert_eq(keel_gen_server_cast(name, keel_atom("inc")), KEEL_OK);
    cr_assert_eq(atomic_load(&sends), s0 + 1, "the module's send");
    cr_assert_eq(get(name), 1);
    cr_assert_eq(keel_gen_server_stop(name, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert(wait_until(gone, &pid));
    /* This module does not watch its processes: its name stays. */
    cr_assert_eq(atomic_load(&unregisters), u0);
    cr_assert_eq(keel_name_unregister(name), KEEL_OK);
    /* A failed init unregisters the name. */
    cr_assert_eq(keel_gen_server_start(&cmod, keel_atom("fail"), &o, &pid),
                 KEEL_ENOPROC);
    cr_assert_eq(atomic_load(&unregisters), u0 + 2);
    cr_assert_eq(s_whereis(keel_atom("one")), KEEL_ATOM(UNDEFINED));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- opt-in call latency events ------------------------------------------ */

static atomic_long call_events, call_errors;
static _Atomic keel_term last_server;

static int on_call(const keel_tel_event *ev, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *cfg) {
  (void)ev;
  (void)cfg;
  double d = -1;
  keel_term res = KEEL_NONE, srv = KEEL_NONE;
  cr_assert_eq(keel_tel_measure_get(m, nm, keel_atom("duration"), &d), KEEL_OK);
  cr_assert(d >= 0);
  cr_assert_eq(keel_tel_meta_get(md, nmd, keel_atom("result"), &res), KEEL_OK);
  cr_assert_eq(keel_tel_meta_get(md, nmd, keel_atom("server"), &srv), KEEL_OK);
  if (keel_is_local_pid(srv))
    atomic_store(&last_server, srv);
  if (res == KEEL_ATOM(ERROR))
    atomic_fetch_add(&call_errors, 1);
  atomic_fetch_add(&call_events, 1);
  return 0;
}

Test(gen_server_via, call_latency_events_are_opt_in) {
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.gen_server.call.stop", &ev), KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("lat"), &ev, 1, on_call, NULL),
               KEEL_OK);
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    keel_term pid;
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, NULL, &pid), KEEL_OK);
    long e0 = atomic_load(&call_events), x0 = atomic_load(&call_errors);
    cr_assert_eq(get(pid), 0);
    cr_assert_eq(atomic_load(&call_events), e0, "off by default");
    keel_gen_server_call_telemetry(true);
    cr_assert_eq(get(pid), 0);
    cr_assert_eq(get(pid), 0);
    cr_assert_eq(atomic_load(&call_events), e0 + 2);
    cr_assert_eq(atomic_load(&last_server), pid);
    cr_assert_eq(keel_gen_server_stop(pid, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term r;
    cr_assert_eq(keel_gen_server_call(pid, keel_atom("get"), TMO, &h, &r),
                 KEEL_ENOPROC);
    keel_heap_destroy(&h);
    cr_assert_eq(atomic_load(&call_events), e0 + 3);
    cr_assert_eq(atomic_load(&call_errors), x0 + 1);
    keel_gen_server_call_telemetry(false);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  cr_assert_eq(keel_tel_detach(keel_atom("lat")), KEEL_OK);
}

/* ---- {global, Name}: node-local global names ------------------------------
 */

static void hold(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, TMO, &m);
}

/* Monitors the holder, wakes it through its global name and, once its
 * 'DOWN' arrives (exit hooks run before it), records whether both names
 * were gone. */
static atomic_int names_gone_at_down;

static void watch_holder(keel_proc *self, void *arg) {
  keel_term p = *(keel_term *)arg, ref, m;
  keel_heap h;
  keel_heap_init(&h);
  bool ok =
      keel_monitor(self, p, 0, &h, &ref) == KEEL_OK &&
      keel_name_send(keel_build(&h, "{global, g2}"), KEEL_NIL) == KEEL_OK &&
      keel_receive(self, NULL, NULL, TMO, &m) == KEEL_OK &&
      keel_global_whereis_name(keel_atom("g1")) == KEEL_ATOM(UNDEFINED) &&
      keel_global_whereis_name(keel_atom("g2")) == KEEL_ATOM(UNDEFINED);
  atomic_store(&names_gone_at_down, ok ? 1 : -1);
  keel_heap_destroy(&h);
  signal_event();
}

Test(gen_server_via, global_names) {
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term name = keel_build(&h, "{global, {db, \"main\"}}");
    keel_gen_server_opts o = {.name = name};
    keel_term pid, other;
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &pid), KEEL_OK);
    cr_assert_eq(keel_global_whereis_name(keel_build(&h, "{db, \"main\"}")),
                 pid);
    cr_assert_eq(keel_gen_server_start(&cmod, KEEL_NIL, &o, &other),
                 KEEL_EEXIST);
    cr_assert_eq(other, pid);
    cr_assert_eq(keel_gen_server_cast(name, keel_atom("inc")), KEEL_OK);
    cr_assert_eq(get(name), 1);
    keel_term names;
    cr_assert_eq(keel_global_registered_names(&h, &names), KEEL_OK);
    cr_assert(keel_eq_exact(names, keel_build(&h, "[{db, \"main\"}]")));
    cr_assert_eq(keel_gen_server_stop(name, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert_eq(keel_name_whereis(name), KEEL_ATOM(UNDEFINED),
                 "gone with its process");
    /* Any process, several names; a kill removes them all. */
    keel_term p;
    cr_assert_eq(keel_spawn_fiber(hold, NULL, NULL, &p), KEEL_OK);
    cr_assert_eq(keel_global_register_name(keel_atom("g1"), p), KEEL_OK);
    cr_assert_eq(keel_global_register_name(keel_atom("g2"), p), KEEL_OK);
    cr_assert_eq(keel_global_register_name(keel_atom("g1"), p), KEEL_EEXIST);
    reset_events();
    atomic_store(&names_gone_at_down, 0);
    cr_assert_eq(keel_spawn_fiber(watch_holder, &p, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&names_gone_at_down), 1,
                 "both names gone before the holder's 'DOWN'");
    cr_assert(wait_until(gone, &p));
    cr_assert_eq(keel_global_register_name(keel_atom("g3"), p), KEEL_ENOPROC,
                 "a dead pid");
    cr_assert_eq(keel_global_whereis_name(keel_atom("g3")),
                 KEEL_ATOM(UNDEFINED));
    cr_assert_eq(keel_global_registered_names(&h, &names), KEEL_OK);
    cr_assert_eq(names, KEEL_NIL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
