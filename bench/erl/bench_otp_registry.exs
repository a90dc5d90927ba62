# bench_otp_registry.exs - the Registry part of `keel bench otp` on Elixir's
# Registry (one partition, the default):
#   registry_register_per_s  one process registers itself under Regs
#                            integer keys of a unique Registry (value nil)
#   registry_lookup_per_s    then Registry.lookup/2 of every key
#   registry_dispatch_per_s  Dups processes registered under one key of a
#                            duplicate Registry; Registry.dispatch/3 calls
#                            whose callback sends to every entry, per second
# Run as: elixir --erl "+S 2:2" bench_otp_registry.exs Regs Dups Rounds
# Prints "<metric> <value>" lines, as bench_erl.c parses them.
defmodule BenchOtpRegistry do
  def main(args) do
    [regs, dups, rounds] = Enum.map(args, &String.to_integer/1)
    {:ok, _} = Registry.start_link(keys: :unique, name: BenchOtpRegistry.U)
    {:ok, _} = Registry.start_link(keys: :duplicate, name: BenchOtpRegistry.D)
    parent = self()

    spawn_link(fn ->
      t0 = System.monotonic_time(:nanosecond)
      register(regs)
      t1 = System.monotonic_time(:nanosecond)
      lookup(regs)
      t2 = System.monotonic_time(:nanosecond)
      send(parent, {:unique, regs / ((t1 - t0) / 1.0e9), regs / ((t2 - t1) / 1.0e9)})
    end)

    {reg_rate, lookup_rate} = receive do: ({:unique, r, l} -> {r, l})
    out("registry_register_per_s", reg_rate)
    out("registry_lookup_per_s", lookup_rate)

    for _ <- 1..dups do
      spawn_link(fn ->
        {:ok, _} = Registry.register(BenchOtpRegistry.D, :topic, nil)
        send(parent, :ready)
        drop()
      end)
    end

    for _ <- 1..dups, do: (receive do: (:ready -> :ok))

    spawn_link(fn ->
      t0 = System.monotonic_time(:nanosecond)
      dispatch(rounds)
      t1 = System.monotonic_time(:nanosecond)
      send(parent, {:dispatch, rounds / ((t1 - t0) / 1.0e9)})
    end)

    receive do: ({:dispatch, r} -> out("registry_dispatch_per_s", r))
  end

  defp out(name, v), do: IO.puts("#{name} #{:erlang.float_to_binary(v, decimals: 1)}")

  defp register(0), do: :ok

  defp register(k) do
    {:ok, _} = Registry.register(BenchOtpRegistry.U, k - 1, nil)
    register(k - 1)
  end

  defp lookup(0), do: :ok

  defp lookup(k) do
    [{_, nil}] = Registry.lookup(BenchOtpRegistry.U, k - 1)
    lookup(k - 1)
  end

  defp drop do
    receive do
      _ -> drop()
    end
  end

  defp dispatch(0), do: :ok

  defp dispatch(k) do
    Registry.dispatch(BenchOtpRegistry.D, :topic, fn entries ->
      for {pid, _} <- entries, do: send(pid, k)
    end)

    dispatch(k - 1)
  end
end

BenchOtpRegistry.main(System.argv())
