# bench_pubsub.exs - the BEAM side of `keel bench pubsub`: deliveries per
# second of broadcasts to 10,000 subscribers through Registry.dispatch on a
# duplicate-key Registry (Phoenix.PubSub's local path, default dispatcher:
# send/2 to every entry; one partition, Phoenix's default pool_size).
# Then pubsub_sub_unsub_per_s: one process registers under the same key
# and unregisters, in a loop, while the 10,000 stay registered (fewer
# cycles than Keel's run: each unregister scans the key's 10,000 entries).
# Run as: elixir --erl "+S 2:2" bench_pubsub.exs full|quick
# Prints "<metric> <value>" lines, as bench_erl.c parses them.
defmodule BenchPubSub do
  @subs 10_000

  def main([mode]) do
    rounds = if mode == "quick", do: 20, else: 200
    cycles = if mode == "quick", do: 50, else: 500
    {:ok, _} = Registry.start_link(keys: :duplicate, name: BenchPubSub.Reg)
    parent = self()

    pids =
      for _ <- 1..@subs do
        spawn_link(fn ->
          {:ok, _} = Registry.register(BenchPubSub.Reg, "bench_topic", nil)
          send(parent, :ready)
          count(rounds, parent)
        end)
      end

    for _ <- pids, do: (receive do: (:ready -> :ok))
    t0 = System.monotonic_time(:nanosecond)
    spawn_link(fn -> publish(rounds) end)
    for _ <- pids, do: (receive do: (:done -> :ok))
    t1 = System.monotonic_time(:nanosecond)
    rate = rounds * @subs / ((t1 - t0) / 1.0e9)
    IO.puts("pubsub_deliveries_per_s #{:erlang.float_to_binary(rate, decimals: 1)}")

    # Subscribe + unsubscribe cycles on the same topic, 10,000 resident.
    t0 = System.monotonic_time(:nanosecond)

    spawn_link(fn ->
      churn(cycles)
      send(parent, :churned)
    end)

    receive do: (:churned -> :ok)
    t1 = System.monotonic_time(:nanosecond)
    rate = cycles / ((t1 - t0) / 1.0e9)
    IO.puts("pubsub_sub_unsub_per_s #{:erlang.float_to_binary(rate, decimals: 1)}")
  end

  defp churn(0), do: :ok

  defp churn(left) do
    {:ok, _} = Registry.register(BenchPubSub.Reg, "bench_topic", nil)
    :ok = Registry.unregister(BenchPubSub.Reg, "bench_topic")
    churn(left - 1)
  end

  defp count(0, parent), do: send(parent, :done)

  defp count(left, parent) do
    receive do
      _ -> count(left - 1, parent)
    end
  end

  defp publish(0), do: :ok

  defp publish(left) do
    Registry.dispatch(BenchPubSub.Reg, "bench_topic", fn entries ->
      for {pid, _} <- entries, do: send(pid, left)
    end)

    publish(left - 1)
  end
end

BenchPubSub.main(System.argv())
