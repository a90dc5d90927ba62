/* Task.async_stream with a concurrency limit, ordered results and a
 * per-task timeout that kills the late task, as in Elixir:
 *
 *   1..6
 *   |> Task.async_stream(&count_primes/1, max_concurrency: 2,
 *                        timeout: 1000, on_timeout: :kill_task)
 *   |> Enum.each(&IO.inspect/1)
 *
 * Each input n counts the primes below n * 1000; input 4 stands for a
 * stuck job (it waits for a message that never comes), so its task is
 * killed after the timeout and its result is {exit, timeout}. The others
 * still come back in input order.
 */
#include <keel/task.h>
#include <stdio.h>

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

static keel_term job(keel_proc *self, void *arg, keel_term input,
                     keel_heap *h) {
  (void)arg;
  (void)h;
  int64_t n = keel_small_value(input);
  if (n == 4) { /* stuck: nobody ever sends this message */
    keel_term msg;
    (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &msg);
  }
  return keel_small(count_primes(n * 1000));
}

/* Runs in a fiber (keel_task_run's proxy): the stream, then the results
 * as a list. */
static keel_term stream(keel_proc *self, void *arg, keel_term input,
                        keel_heap *h) {
  (void)arg;
  (void)input;
  keel_term inputs[6], results[6];
  for (int i = 0; i < 6; i++)
    inputs[i] = keel_small(i + 1);
  keel_task_stream_opts opts = {.max_concurrency = 2,
                                .timeout_ms = 1000,
                                .on_timeout = KEEL_TASK_TIMEOUT_KILL};
  int rc =
      keel_task_async_stream(self, inputs, 6, job, NULL, &opts, h, results);
  if (rc != KEEL_OK)
    return keel_tuple(h, 2, KEEL_ATOM(ERROR), keel_atom(keel_strerror(rc)));
  return keel_list_from(h, 6, results);
}

int main(void) {
  if (keel_node_start(NULL) != KEEL_OK)
    return 1;
  keel_heap h;
  keel_heap_init(&h);
  keel_task_result r;
  int rc = keel_task_run(stream, NULL, KEEL_NIL, 10000, &h, &r);
  if (rc == KEEL_OK && r.status == KEEL_TASK_REPLY && keel_is_list(r.value)) {
    keel_term l = r.value;
    for (int n = 1; keel_is_cons(l); l = keel_tl(l), n++) {
      printf("%d: ", n);
      keel_fprint(stdout, keel_hd(l), NULL);
      putchar('\n');
    }
  } else {
    fprintf(stderr, "error: %s\n", rc != KEEL_OK ? keel_strerror(rc) : "");
    rc = rc != KEEL_OK ? rc : KEEL_ESTATE;
  }
  keel_heap_destroy(&h);
  keel_node_stop();
  return rc == KEEL_OK ? 0 : 1;
}
