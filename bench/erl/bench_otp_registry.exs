# bench_otp_registry.exs - the Registry part of `keel bench otp` on Elixir's
# Registry (one partition, the default):
#   registry_register_per_s  Regs integer keys of a unique Registry (value
#                            nil) registered by Regs / PerProc processes,
#                            spawned first, then all told to go at once
#   registry_lookup_per_s    then Registry.lookup/2 of every key, by one
#                            process
#   registry_register_1p_per_s
#                            one process registers itself under Regs1 keys
#                            of a fresh unique Registry
#   registry_dispatch_per_s  Dups processes registered under one key of a
#                            duplicate Registry; Registry.dispatch/3 calls
#                            whose callback sends to every entry, per second
# Run as: elixir --erl "+S 2:2" bench_otp_registry.exs Regs PerProc Dups
#             Rounds Regs1
# Prints "<metric> <value>" lines, as bench_erl.c parses them.
defmodule BenchOtpRegistry do
  def main(args) do
    [regs, per_proc, dups, rounds, regs1] = Enum.map(args, &String.to_integer/1)
    {:ok, _} = Registry.start_link(keys: :unique, name: BenchOtpRegistry.U)
    {:ok, _} = Registry.start_link(keys: :duplicate, name: BenchOtpRegistry.D)
    {:ok, _} = Registry.start_link(keys: :unique, name: BenchOtpRegistry.U1)
    parent = self()
    nprocs = div(regs, per_proc)

    pids =
      for i <- 0..(nprocs - 1) do
        spawn_link(fn ->
          receive do: (:go -> :ok)
          register(BenchOtpRegistry.U, i * per_proc, per_proc)
          send(parent, :registered)
          drop()
        end)
      end

    t0 = System.monotonic_time(:nanosecond)
    for pid <- pids, do: send(pid, :go)
    for _ <- pids, do: (receive do: (:registered -> :ok))
    t1 = System.monotonic_time(:nanosecond)
    out("registry_register_per_s", regs / ((t1 - t0) / 1.0e9))

    spawn_link(fn ->
      t0 = System.monotonic_time(:nanosecond)
      lookup(regs)
      t1 = System.monotonic_time(:nanosecond)
      send(parent, {:lookup, regs / ((t1 - t0) / 1.0e9)})
    end)

    receive do: ({:lookup, r} -> out("registry_lookup_per_s", r))

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

    spawn_link(fn ->
      t0 = System.monotonic_time(:nanosecond)
      register(BenchOtpRegistry.U1, 0, regs1)
      t1 = System.monotonic_time(:nanosecond)
      send(parent, {:one, regs1 / ((t1 - t0) / 1.0e9)})
    end)

    receive do: ({:one, r} -> out("registry_register_1p_per_s", r))
  end

  defp out(name, v), do: IO.puts("#{name} #{:erlang.float_to_binary(v, decimals: 1)}")

  # Registers the calling process under keys base..base + k - 1.
  defp register(_reg, _base, 0), do: :ok

  defp register(reg, base, k) do
    {:ok, _} = Registry.register(reg, base + k - 1, nil)
    register(reg, base, k - 1)
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
