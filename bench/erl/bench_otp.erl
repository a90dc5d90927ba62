%% bench_otp.erl - the BEAM side of `keel bench otp`: gen_server:call round
%% trips per second, with 1 and 8 client processes calling one server.
%% Run as: erl +S 2:2 -noshell -run bench_otp main full|quick -s init stop
%% Prints "<metric> <value>" lines, as bench_otp.c parses them.
-module(bench_otp).
-behaviour(gen_server).
-export([main/1, init/1, handle_call/3, handle_cast/2]).

main([Mode]) ->
    N = case Mode of
            "quick" -> 20000;
            _ -> 400000
        end,
    [run(C, N) || C <- [1, 8]],
    ok.

init(N) -> {ok, N}.
handle_call(get, _From, N) -> {reply, N, N + 1}.
handle_cast(_, N) -> {noreply, N}.

run(C, N) ->
    {ok, S} = gen_server:start(?MODULE, 0, []),
    Self = self(),
    Per = N div C,
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() -> loop(S, Per), Self ! {done, self()} end)
            || _ <- lists:seq(1, C)],
    [receive {done, P} -> ok end || P <- Pids],
    T1 = erlang:monotonic_time(nanosecond),
    io:format("gen_server_call_per_s_~b ~.1f~n",
              [C, C * Per / ((T1 - T0) / 1.0e9)]),
    gen_server:stop(S).

loop(_, 0) -> ok;
loop(S, K) ->
    _ = gen_server:call(S, get),
    loop(S, K - 1).
