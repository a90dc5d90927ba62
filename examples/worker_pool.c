/* A supervised worker pool: three worker gen_servers and a round-robin
 * dispatcher under one one_for_one supervisor, as in Elixir:
 *
 *   children = [Dispatcher | for i <- 1..3, do: {Worker, i}]
 *   {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
 *   worker = GenServer.call(Dispatcher, :checkout)   # :worker_1, :worker_2..
 *   GenServer.call(worker, {:primes_below, 1000})
 *
 * A worker counts primes and the jobs it has done. One job crashes
 * worker_2: the supervisor starts a fresh worker_2 (its job count back
 * to 0) and the pool carries on. Supervisor.stop then stops the children
 * in reverse order, each running its terminate callback.
 */
#include <keel/gen_server.h>
#include <keel/registry.h>
#include <keel/supervisor.h>
#include <stdio.h>
#include <time.h>

#define WORKERS 3

static keel_term worker_name(int64_t i) {
  char name[32]; /* "worker_" and any int64 */
  snprintf(name, sizeof name, "worker_%lld", (long long)i);
  return keel_atom(name);
}

/* ---- a worker: state {Id, Jobs} ---- */

static keel_gs_ret w_init(keel_gen_server *gs, keel_term id, keel_term *s) {
  *s = keel_tuple(keel_gs_heap(gs), 2, id, keel_small(0));
  return keel_gs_ok(gs);
}

static int64_t count_primes(int64_t below) {
  int64_t count = 0;
  for (int64_t n = 2; n < below; n++) {
    int64_t d = 2;
    while (d * d <= n && n % d != 0)
      d++;
    count += d * d > n;
  }
  return count;
}

static keel_gs_ret w_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)from;
  keel_term id = keel_tuple_get(*s, 0);
  int64_t jobs = keel_small_value(keel_tuple_get(*s, 1));
  if (req == keel_atom("jobs"))
    return keel_gs_reply(gs, keel_small(jobs));
  if (req == keel_atom("crash"))
    return keel_gs_stop(gs, keel_atom("boom"));
  /* {primes_below, N} */
  int64_t n = keel_small_value(keel_tuple_get(req, 1));
  *s = keel_tuple(keel_gs_heap(gs), 2, id, keel_small(jobs + 1));
  return keel_gs_reply(gs, keel_small(count_primes(n)));
}

static void w_terminate(keel_gen_server *gs, keel_term reason, keel_term s) {
  (void)gs;
  printf("worker_%lld stops: ",
         (long long)keel_small_value(keel_tuple_get(s, 0)));
  keel_fprint(stdout, reason, NULL);
  putchar('\n');
}

static const keel_gen_server_module worker = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "worker",
    .init = w_init,
    .handle_call = w_call,
    .terminate = w_terminate,
};

static int start_worker(keel_proc *sup, void *arg, keel_term extra,
                        keel_term *pid) {
  (void)sup;
  (void)extra;
  int64_t i = *(const int64_t *)arg;
  keel_gen_server_opts o = {.name = worker_name(i),
                            .link = true,
                            .trap_exit = true}; /* terminate on shutdown */
  return keel_gen_server_start(&worker, keel_small(i), &o, pid);
}

/* ---- the dispatcher: state = the index of the next worker ---- */

static keel_gs_ret d_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  (void)arg;
  *s = keel_small(0);
  return keel_gs_ok(gs);
}

static keel_gs_ret d_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)req; /* checkout */
  (void)from;
  int64_t next = keel_small_value(*s);
  *s = keel_small((next + 1) % WORKERS);
  return keel_gs_reply(gs, worker_name(next + 1));
}

static const keel_gen_server_module dispatcher = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "dispatcher",
    .init = d_init,
    .handle_call = d_call,
};

static int start_dispatcher(keel_proc *sup, void *arg, keel_term extra,
                            keel_term *pid) {
  (void)sup;
  (void)arg;
  (void)extra;
  keel_gen_server_opts o = {.name = keel_atom("dispatcher"), .link = true};
  return keel_gen_server_start(&dispatcher, KEEL_NIL, &o, pid);
}

/* ---- the client side ---- */

static int call(keel_term server, keel_term req, keel_heap *h, keel_term *out) {
  return keel_gen_server_call(server, req, KEEL_GEN_SERVER_CALL_TIMEOUT, h,
                              out);
}

/* Checks a worker out of the dispatcher and runs one job on it. */
static int run_job(keel_heap *h, int64_t below) {
  keel_term w, primes;
  int rc = call(keel_atom("dispatcher"), keel_atom("checkout"), h, &w);
  if (rc == KEEL_OK)
    rc = call(w, keel_build(h, "{primes_below, ~L}", (long long)below), h,
              &primes);
  if (rc == KEEL_OK)
    printf("%s: %lld primes below %lld\n", keel_atom_name(w, NULL),
           (long long)keel_small_value(primes), (long long)below);
  return rc;
}

/* Waits (at most 5 s) until name is registered to a process other than
 * old: the supervisor's restart. */
static int wait_restart(keel_term name, keel_term old) {
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < 5000; i++) {
    keel_term pid = keel_name_whereis(name);
    if (pid != old && keel_is_local_pid(pid))
      return KEEL_OK;
    nanosleep(&ms, NULL);
  }
  return KEEL_ETIMEDOUT;
}

static int print_jobs(keel_heap *h) {
  for (int64_t i = 1; i <= WORKERS; i++) {
    keel_term jobs;
    int rc = call(worker_name(i), keel_atom("jobs"), h, &jobs);
    if (rc != KEEL_OK)
      return rc;
    printf("worker_%lld has done %lld jobs\n", (long long)i,
           (long long)keel_small_value(jobs));
  }
  return KEEL_OK;
}

static int use_pool(keel_heap *h) {
  int rc = KEEL_OK;
  for (int64_t job = 1; job <= 6 && rc == KEEL_OK; job++)
    rc = run_job(h, job * 1000);
  keel_term old = keel_name_whereis(worker_name(2)), unused;
  if (rc == KEEL_OK) { /* the call fails: the worker died on it */
    printf("crash worker_2: %s\n",
           keel_strerror(call(worker_name(2), keel_atom("crash"), h, &unused)));
    rc = wait_restart(worker_name(2), old);
  }
  if (rc == KEEL_OK)
    rc = print_jobs(h);
  for (int64_t job = 7; job <= 9 && rc == KEEL_OK; job++)
    rc = run_job(h, job * 1000);
  return rc;
}

int main(void) {
  if (keel_node_start(NULL) != KEEL_OK)
    return 1;
  static const int64_t ids[WORKERS] = {1, 2, 3};
  keel_sup_child_spec children[1 + WORKERS] = {
      {.id = keel_atom("dispatcher"), .start = start_dispatcher}};
  for (int i = 0; i < WORKERS; i++)
    children[1 + i] = (keel_sup_child_spec){.id = worker_name(ids[i]),
                                            .start = start_worker,
                                            .arg = (void *)&ids[i]};
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT; /* one_for_one, 3 restarts in 5 s */
  spec.children = children;
  spec.nchildren = 1 + WORKERS;
  keel_term sup;
  int rc = keel_sup_start_link(&spec, &sup);
  keel_heap h;
  keel_heap_init(&h);
  if (rc == KEEL_OK) {
    rc = use_pool(&h);
    printf("stopping the pool\n");
    int stop = keel_sup_stop(sup);
    rc = rc == KEEL_OK ? stop : rc;
  }
  if (rc != KEEL_OK)
    fprintf(stderr, "error: %s\n", keel_strerror(rc));
  keel_heap_destroy(&h);
  keel_node_stop();
  return rc == KEEL_OK ? 0 : 1;
}
