%% bench_ets.erl - the BEAM side of `keel bench tables`: ETS lookup, insert
%% (overwrite and new keys) and update_counter throughput on a public set,
%% one process on a set with default options (BEAM's fastest for one
%% process), and lookups from 2 processes on a set with read_concurrency.
%% Run as: erl +S 2:2 -noshell -run bench_ets main full|quick -s init stop
%% Prints "<metric> <value>" lines, as bench_tables.c parses them.
%%
%% Every loop is a tight tail-recursive function over integers: the key
%% comes from a 32-bit LCG whose products stay below 2^53 (small integers,
%% no bignum per step), and nothing is built per operation but the object
%% an insert stores.
-module(bench_ets).
-export([main/1]).

main([Mode]) ->
    {N, Keys} = case Mode of
                    "quick" -> {20000, 10000};
                    _ -> {1000000, 100000}
                end,
    report(ets_lookups_per_s, run(lookup, 1, N, Keys, [])),
    report(ets_inserts_per_s, run(insert, 1, N, Keys, [])),
    report(ets_inserts_new_per_s, run(insert_new, 1, N, 0, [])),
    report(ets_mt_lookups_per_s,
           run(lookup, 2, N, Keys, [{read_concurrency, true}])),
    report(ets_update_counter_per_s, run(update_counter, 1, N, Keys, [])),
    ok.

report(Name, V) -> io:format("~s ~.1f~n", [Name, V]).

%% Operations per second of P processes each doing N operations Op on a
%% public set (with options Opts) prefilled with {K, 0} for K < Keys.
run(Op, P, N, Keys, Opts) ->
    T = ets:new(t, [set, public | Opts]),
    ets:insert(T, [{K, 0} || K <- lists:seq(0, Keys - 1)]),
    Self = self(),
    Go = make_ref(),
    Pids = [spawn_link(fun() ->
                               receive Go -> ok end,
                               loop(Op, T, N, Keys, I * 7919 + 1),
                               Self ! {done, self()}
                       end) || I <- lists:seq(1, P)],
    T0 = erlang:monotonic_time(nanosecond),
    [Pid ! Go || Pid <- Pids],
    [receive {done, Pid} -> ok end || Pid <- Pids],
    T1 = erlang:monotonic_time(nanosecond),
    ets:delete(T),
    P * N / ((T1 - T0) / 1.0e9).

next(S) -> (S * 1664525 + 1013904223) band 16#ffffffff.

key(S, Keys) -> (S bsr 8) rem Keys.

loop(_, _, 0, _, _) -> ok;
loop(lookup, T, N, Keys, S) ->
    S1 = next(S),
    _ = ets:lookup(T, key(S1, Keys)),
    loop(lookup, T, N - 1, Keys, S1);
loop(insert, T, N, Keys, S) ->
    S1 = next(S),
    true = ets:insert(T, {key(S1, Keys), N}),
    loop(insert, T, N - 1, Keys, S1);
loop(insert_new, T, N, Keys, S) ->
    true = ets:insert(T, {N, N}),
    loop(insert_new, T, N - 1, Keys, S);
loop(update_counter, T, N, Keys, S) ->
    S1 = next(S),
    _ = ets:update_counter(T, key(S1, Keys), 1),
    loop(update_counter, T, N - 1, Keys, S1).
