/* A counter server, as the Elixir GenServer:
 *
 *   defmodule Counter do
 *     use GenServer
 *     def init(n), do: {:ok, n}
 *     def handle_call(:get, _from, n), do: {:reply, n, n}
 *     def handle_call({:add, k}, _from, n), do: {:reply, n + k, n + k}
 *     def handle_cast(:reset, _n), do: {:noreply, 0}
 *   end
 */
#include <keel/gen_server.h>
#include <stdio.h>

static keel_gs_ret init(keel_gen_server *gs, keel_term n, keel_term *state) {
  *state = n;
  return keel_gs_ok(gs);
}

static keel_gs_ret handle_call(keel_gen_server *gs, keel_term req,
                               keel_term from, keel_term *n) {
  (void)from;
  if (keel_is_tuple(req)) { /* {add, K} */
    int64_t k = 0, v = 0;
    keel_get_int64(keel_tuple_get(req, 1), &k);
    keel_get_int64(*n, &v);
    *n = keel_int(keel_gs_heap(gs), v + k);
  }
  return keel_gs_reply(gs, *n); /* get, and add's new value */
}

static keel_gs_ret handle_cast(keel_gen_server *gs, keel_term msg,
                               keel_term *n) {
  (void)msg; /* reset */
  *n = keel_small(0);
  return keel_gs_ok(gs);
}

static const keel_gen_server_module counter = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "counter",
    .init = init,
    .handle_call = handle_call,
    .handle_cast = handle_cast,
};

int main(void) {
  if (keel_node_start(NULL) != KEEL_OK)
    return 1;
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_server_opts opts = {.name = keel_atom("counter")};
  int rc = keel_gen_server_start(&counter, keel_small(0), &opts, NULL);
  keel_term n = KEEL_NONE;
  if (rc == KEEL_OK)
    rc = keel_gen_server_call(keel_atom("counter"), keel_build(&h, "{add, 5}"),
                              KEEL_GEN_SERVER_CALL_TIMEOUT, &h, &n);
  if (rc == KEEL_OK)
    rc = keel_gen_server_call(keel_atom("counter"), keel_atom("get"),
                              KEEL_GEN_SERVER_CALL_TIMEOUT, &h, &n);
  if (rc == KEEL_OK) {
    printf("counter = ");
    keel_fprint(stdout, n, NULL); /* counter = 5 */
    putchar('\n');
  } else {
    fprintf(stderr, "error: %s\n", keel_strerror(rc));
  }
  keel_gen_server_cast(keel_atom("counter"), keel_atom("reset"));
  keel_heap_destroy(&h);
  keel_node_stop();
  return rc == KEEL_OK ? 0 : 1;
}
