/*
 * bench_pubsub.h - PubSub broadcast benchmark, side by side with Elixir.
 */
#ifndef KEEL_BENCH_PUBSUB_H
#define KEEL_BENCH_PUBSUB_H

/* Deliveries per second of broadcasts to one topic with 10,000
 * subscriber processes on a node of 2 schedulers (keel_pubsub_broadcast,
 * default dispatcher), and the same with Elixir's Registry.dispatch over a
 * duplicate-key Registry of 10,000 registered processes sending to each
 * entry (what Phoenix.PubSub does locally; bench/erl/bench_pubsub.exs run
 * by `elixir --erl "+S 2:2"`). A delivery counts once its subscriber has
 * received the message: each subscriber counts its messages and the run
 * ends when all have received every broadcast. Then, with the 10,000
 * still subscribed, subscribe + unsubscribe cycles per second of one more
 * process on the same topic (pubsub_sub_unsub_per_s; Registry.register
 * and Registry.unregister on BEAM). Prints, for each metric,
 *   keel <metric> <value> per_s
 *   beam <metric> <value> per_s
 *   ratio <metric> <value>     (> 1 means Keel is faster)
 * Arguments (argv[0] = "pubsub"): --quick, --runs N (median; default 3,
 * quick 1), --no-beam. Returns 0, 2 on a usage error, 1 on a failure. */
int keel_bench_pubsub(int argc, char **argv);

#endif /* KEEL_BENCH_PUBSUB_H */
