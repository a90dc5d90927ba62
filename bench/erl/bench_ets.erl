%% bench_ets.erl - the BEAM side of `keel bench tables`: ETS lookup, insert
%% and update_counter throughput on a public set with 1 and 2 processes.
%% Run as: erl +S 2:2 -noshell -run bench_ets main full|quick -s init stop
%% Prints "<metric> <value>" lines, as bench_tables.c parses them.
-module(bench_ets).
-export([main/1]).

main([Mode]) ->
    {N, Keys} = case Mode of
                    "quick" -> {20000, 10000};
                    _ -> {1000000, 100000}
                end,
    [run(Op, P, N, Keys) || Op <- [lookup, insert, update_counter],
                            P <- [1, 2]],
    ok.

run(Op, P, N, Keys) ->
    T = ets:new(t, [set, public, {write_concurrency, true},
                    {read_concurrency, true}]),
    ets:insert(T, [{K, 0} || K <- lists:seq(0, Keys - 1)]),
    Self = self(),
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() ->
                               loop(Op, T, N, Keys, I * 7919 + 1),
                               Self ! {done, self()}
                       end) || I <- lists:seq(1, P)],
    [receive {done, Pid} -> ok end || Pid <- Pids],
    T1 = erlang:monotonic_time(nanosecond),
    io:format("ets_~s_per_s_~b ~.1f~n", [Op, P, P * N / ((T1 - T0) / 1.0e9)]),
    ets:delete(T).

next(S) -> (S * 1103515245 + 12345) band 16#7fffffff.

loop(_, _, 0, _, _) -> ok;
loop(lookup, T, N, Keys, S) ->
    S1 = next(S),
    _ = ets:lookup(T, S1 rem Keys),
    loop(lookup, T, N - 1, Keys, S1);
loop(insert, T, N, Keys, S) ->
    S1 = next(S),
    true = ets:insert(T, {S1 rem Keys, N}),
    loop(insert, T, N - 1, Keys, S1);
loop(update_counter, T, N, Keys, S) ->
    S1 = next(S),
    _ = ets:update_counter(T, S1 rem Keys, 1),
    loop(update_counter, T, N - 1, Keys, S1).
