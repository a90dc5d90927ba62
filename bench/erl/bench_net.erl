%% bench_net.erl - the BEAM side of `keel bench net`: TCP request/response
%% round trips per second over loopback, 64-byte requests echoed by
%% connection processes in {active, once} mode, with 1 and 50 client
%% processes each on its own connection doing passive send/recv.
%% Run as: erl +S 2:2 -noshell -run bench_net main full|quick -s init stop
%% Prints "<metric> <value>" lines, as bench_net.c parses them.
-module(bench_net).
-export([main/1]).

main([Mode]) ->
    N = case Mode of
            "quick" -> 5000;
            _ -> 100000
        end,
    [run(C, N) || C <- [1, 50]],
    ok.

run(C, N) ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true},
                                 {backlog, 1024}, {nodelay, true}]),
    {ok, Port} = inet:port(L),
    Acceptors = [spawn(fun() -> acceptor(L) end) || _ <- lists:seq(1, 4)],
    Self = self(),
    Per = N div C,
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() -> client(Port, Per), Self ! {done, self()} end)
            || _ <- lists:seq(1, C)],
    [receive {done, P} -> ok end || P <- Pids],
    T1 = erlang:monotonic_time(nanosecond),
    io:format("tcp_rr_per_s_~b ~.1f~n", [C, C * Per / ((T1 - T0) / 1.0e9)]),
    [exit(A, kill) || A <- Acceptors],
    gen_tcp:close(L).

acceptor(L) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            P = spawn(fun() -> receive go -> ok end,
                               inet:setopts(S, [{active, once}]), conn(S) end),
            ok = gen_tcp:controlling_process(S, P),
            P ! go,
            acceptor(L);
        _ -> ok
    end.

conn(S) ->
    receive
        {tcp, S, D} ->
            gen_tcp:send(S, D),
            inet:setopts(S, [{active, once}]),
            conn(S);
        {tcp_closed, S} -> ok
    end.

client(Port, Per) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port,
                              [binary, {active, false}, {nodelay, true}]),
    B = binary:copy(<<"x">>, 64),
    loop(S, B, Per),
    gen_tcp:close(S).

loop(_, _, 0) -> ok;
loop(S, B, K) ->
    ok = gen_tcp:send(S, B),
    {ok, _} = gen_tcp:recv(S, 64),
    loop(S, B, K - 1).
