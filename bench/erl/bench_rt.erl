%% bench_rt.erl - the BEAM side of `keel bench` runtime workloads.
%%
%% Each workload is written the idiomatic way: processes block in receive,
%% messages are plain terms. Run as
%%   erl +S 2:2 +P 4000000 -noshell -pa DIR -run bench_rt main WORKLOAD N [M]
%% It prints one "<metric> <value>" line per figure.
-module(bench_rt).
-export([main/1]).

main([W | Args]) ->
    Ns = [list_to_integer(A) || A <- Args],
    Results = run(W, Ns),
    [io:format("~s ~p~n", [K, V]) || {K, V} <- Results],
    ok.

run("spawn", [N]) -> spawn_bench(N);
run("spawn_fiber", [N]) ->
    %% Every BEAM process is what Keel calls a fiber: the same idle spawn
    %% (100k processes), and the same stop (a message each, then exit).
    [{spawn_per_s, S}, {mem_per_proc, M}, {kill_ms, K}] = spawn_bench(N),
    [{fiber_spawn_per_s, S}, {fiber_mem_per_proc, M}, {fiber_kill_ms, K}];
run("ring", [N, Hops]) -> ring_bench(N, Hops);
run("pingpong", [N]) -> pingpong_bench(N);
run("cast", [N]) -> cast_bench(N);
run("fanout", [Subs, Rounds]) -> fanout_bench(Subs, Rounds);
run("fanin", [Total]) -> fanin_bench(Total);
run("timers", [N]) -> timers_bench(N);
run("switch", [N]) -> switch_bench(N);
run("call_backlog", [Backlog, Calls]) -> call_backlog_bench(Backlog, Calls);
run("link_exit", [N]) -> link_exit_bench(N);
run("monitor", [N]) -> monitor_bench(N);
run("down", [N]) -> down_bench(N);
run("idle", [Ms]) -> idle_bench(Ms);
run("wake", [N]) -> wake_bench(N).

now_ns() -> erlang:monotonic_time(nanosecond).

page_kb() ->
    list_to_integer(string:trim(os:cmd("getconf PAGESIZE"))) div 1024.

rss_kb(PageKb) ->
    {ok, B} = file:read_file("/proc/self/statm"),
    [_, Res | _] = binary:split(B, <<" ">>, [global]),
    binary_to_integer(Res) * PageKb.

%% spawn: N idle processes alive at once, then kill them all.
spawn_bench(N) ->
    Parent = self(),
    PageKb = page_kb(),
    erlang:garbage_collect(),
    R0 = rss_kb(PageKb),
    T0 = now_ns(),
    Pids = spawn_n(N, Parent, []),
    T1 = now_ns(),
    R1 = rss_kb(PageKb),
    [P ! stop || P <- Pids],
    wait_n(N),
    T2 = now_ns(),
    [{spawn_per_s, N * 1.0e9 / (T1 - T0)},
     {mem_per_proc, (R1 - R0) * 1024 / N},
     {kill_ms, (T2 - T1) / 1.0e6}].

spawn_n(0, _Parent, Acc) -> Acc;
spawn_n(K, Parent, Acc) ->
    P = spawn(fun() -> receive stop -> Parent ! done end end),
    spawn_n(K - 1, Parent, [P | Acc]).

wait_n(0) -> ok;
wait_n(K) -> receive done -> wait_n(K - 1) end.

%% ring: N processes pass a token Hops times.
ring_bench(N, Hops) ->
    Parent = self(),
    Pids = [spawn(fun() -> ring_init(Parent) end) || _ <- lists:seq(1, N)],
    Nexts = tl(Pids) ++ [hd(Pids)],
    [P ! {next, Nx} || {P, Nx} <- lists:zip(Pids, Nexts)],
    T0 = now_ns(),
    hd(Pids) ! Hops,
    receive done -> ok end,
    T1 = now_ns(),
    [exit(P, kill) || P <- Pids],
    [{ring_hops_per_s, Hops * 1.0e9 / (T1 - T0)}].

ring_init(Parent) ->
    receive {next, Next} -> ring_loop(Next, Parent) end.

ring_loop(Next, Parent) ->
    receive
        0 -> Parent ! done, ring_loop(Next, Parent);
        K -> Next ! K - 1, ring_loop(Next, Parent)
    end.

%% pingpong: two processes bounce a counter N times.
pingpong_bench(N) ->
    Parent = self(),
    A = spawn(fun() -> pp_init(Parent) end),
    B = spawn(fun() -> pp_init(Parent) end),
    A ! {peer, B},
    B ! {peer, A},
    T0 = now_ns(),
    A ! N,
    receive done -> ok end,
    T1 = now_ns(),
    exit(A, kill),
    exit(B, kill),
    [{pingpong_msgs_per_s, N * 1.0e9 / (T1 - T0)}].

pp_init(Parent) ->
    receive {peer, Peer} -> pp_loop(Peer, Parent) end.

pp_loop(Peer, Parent) ->
    receive
        0 -> Parent ! done, pp_loop(Peer, Parent);
        K -> Peer ! K - 1, pp_loop(Peer, Parent)
    end.

%% cast: one sender floods one receiver with N messages.
cast_bench(N) ->
    Parent = self(),
    PageKb = page_kb(),
    erlang:garbage_collect(),
    R0 = rss_kb(PageKb),
    Recv = spawn(fun() -> cast_recv(N, Parent) end),
    T0 = now_ns(),
    spawn(fun() -> cast_send(Recv, N) end),
    Peak = cast_wait(R0, PageKb),
    T1 = now_ns(),
    [{cast_msgs_per_s, N * 1.0e9 / (T1 - T0)},
     {cast_rss_peak_kb, Peak - R0}].

cast_send(_Recv, 0) -> ok;
cast_send(Recv, K) -> Recv ! K, cast_send(Recv, K - 1).

cast_recv(0, Parent) -> Parent ! done;
cast_recv(K, Parent) -> receive _ -> cast_recv(K - 1, Parent) end.

cast_wait(Peak, PageKb) ->
    receive
        done -> max(Peak, rss_kb(PageKb))
    after 5 ->
        cast_wait(max(Peak, rss_kb(PageKb)), PageKb)
    end.

%% timers: N processes each get 'arm' and wait in a receive whose timeout
%% ends at one common deadline 100 ms after arming starts, so the N
%% timeouts fire as one burst. A ticker process keeps itself runnable by
%% messaging itself; the metric is the longest gap between two of its
%% iterations that ends after the deadline, until every timeout has fired.
timers_bench(N) ->
    Parent = self(),
    Count = atomics:new(1, []),
    Pids = [spawn(fun() -> timer_wait(Parent, Count, N) end)
            || _ <- lists:seq(1, N)],
    Deadline = now_ns() + 100000000,
    Ticker = spawn(fun() -> ticker(Parent, Deadline, 0, 0) end),
    [P ! {arm, Deadline} || P <- Pids],
    receive all_fired -> ok end,
    Ticker ! stop,
    receive {max_gap, Gap} -> ok end,
    [{timer_burst_delay_ms, Gap / 1.0e6}].

timer_wait(Parent, Count, N) ->
    receive
        {arm, Deadline} ->
            Ms = max(0, (Deadline - now_ns() + 999999) div 1000000),
            receive
            after Ms ->
                case atomics:add_get(Count, 1, 1) of
                    N -> Parent ! all_fired;
                    _ -> ok
                end
            end
    end.

ticker(Parent, Deadline, Last, Max) ->
    self() ! tick,
    receive
        stop -> Parent ! {max_gap, Max};
        tick ->
            Now = now_ns(),
            Max1 = case Now >= Deadline andalso Last =/= 0 of
                       true -> max(Max, Now - Last);
                       false -> Max
                   end,
            ticker(Parent, Deadline, Now, Max1)
    end.

%% switch: the cost of one process switch. BEAM has no user-level context
%% switch, so the nearest idiomatic measure is erlang:yield/0: each call
%% switches the process out to its scheduler and back in, two switches.
switch_bench(N) ->
    Parent = self(),
    P = spawn(fun() ->
                      receive go -> ok end,
                      T0 = now_ns(),
                      yield_loop(N),
                      Parent ! {done, now_ns() - T0}
              end),
    P ! go,
    receive {done, Ns} -> [{switch_ns, Ns / (2 * N)}] end.

yield_loop(0) -> ok;
yield_loop(N) -> erlang:yield(), yield_loop(N - 1).

%% idle: the node up with no work for Ms milliseconds; CPU used by the whole
%% OS process, in percent of one core.
idle_bench(Ms) ->
    Ticks = list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))),
    C0 = cpu_ticks(),
    T0 = now_ns(),
    timer:sleep(Ms),
    C1 = cpu_ticks(),
    T1 = now_ns(),
    [{idle_cpu_pct, (C1 - C0) / Ticks * 1.0e9 / (T1 - T0) * 100}].

cpu_ticks() ->
    {ok, B} = file:read_file("/proc/self/stat"),
    [_, Rest] = binary:split(B, <<") ">>),
    Fields = binary:split(Rest, <<" ">>, [global]),
    binary_to_integer(lists:nth(12, Fields)) +
        binary_to_integer(lists:nth(13, Fields)).

%% fanout: one process sends Rounds messages to each of Subs subscribers.
fanout_bench(NSubs, Rounds) ->
    Parent = self(),
    Subs = [spawn(fun() -> sub_loop(Rounds, Parent) end)
            || _ <- lists:seq(1, NSubs)],
    T0 = now_ns(),
    spawn(fun() -> publish(Subs, Rounds) end),
    wait_n(NSubs),
    T1 = now_ns(),
    [{fanout_deliveries_per_s, NSubs * Rounds * 1.0e9 / (T1 - T0)}].

publish(_Subs, 0) -> ok;
publish(Subs, K) ->
    [S ! K || S <- Subs],
    publish(Subs, K - 1).

sub_loop(0, Parent) -> Parent ! done;
sub_loop(K, Parent) -> receive _ -> sub_loop(K - 1, Parent) end.

%% fanin: N = 1, 2, 8 senders share Total messages to one receiver.
fanin_bench(Total) ->
    [{list_to_atom("fanin_msgs_per_s_" ++ integer_to_list(N)),
      fanin_once(N, Total)} || N <- [1, 2, 8]].

fanin_once(N, Total) ->
    Parent = self(),
    Recv = spawn(fun() -> cast_recv(Total, Parent) end),
    Per = Total div N,
    T0 = now_ns(),
    [spawn(fun() -> cast_send(Recv, Per) end) || _ <- lists:seq(1, N)],
    receive done -> ok end,
    T1 = now_ns(),
    Total * 1.0e9 / (T1 - T0).

%% call_backlog: a caller with Backlog unrelated messages in its queue makes
%% Calls request/reply calls; make_ref() right before the receive lets the
%% compiler's receive marker skip the backlog, as gen_server:call does.
call_backlog_bench(Backlog, Calls) ->
    Server = spawn(fun backlog_server/0),
    Parent = self(),
    spawn(fun() ->
                  [self() ! {junk, I} || I <- lists:seq(1, Backlog)],
                  T0 = now_ns(),
                  backlog_calls(Server, Calls),
                  T1 = now_ns(),
                  Parent ! {done, T1 - T0}
          end),
    receive {done, Ns} -> ok end,
    exit(Server, kill),
    [{backlog_calls_per_s, Calls * 1.0e9 / Ns}].

backlog_calls(_Server, 0) -> ok;
backlog_calls(Server, K) ->
    Ref = make_ref(),
    Server ! {'$gen_call', self(), Ref},
    receive {Ref, _} -> ok end,
    backlog_calls(Server, K - 1).

backlog_server() ->
    receive {'$gen_call', From, Ref} -> From ! {Ref, ok} end,
    backlog_server().

%% link_exit: a root spawn_links N workers and is killed; the time until
%% they are all gone (process count back to where it was).
link_exit_bench(N) ->
    Base = erlang:system_info(process_count),
    Parent = self(),
    Root = spawn(fun() ->
                         [spawn_link(fun() -> receive stop -> ok end end)
                          || _ <- lists:seq(1, N)],
                         Parent ! up,
                         receive never -> ok end
                 end),
    receive up -> ok end,
    T0 = now_ns(),
    exit(Root, kill),
    wait_count(Base),
    T1 = now_ns(),
    [{link_cascade_ms, (T1 - T0) / 1.0e6}].

wait_count(Base) ->
    case erlang:system_info(process_count) =< Base of
        true -> ok;
        false -> erlang:yield(), wait_count(Base)
    end.

%% monitor: monitor + demonitor(flush) of a live process, N pairs.
monitor_bench(N) ->
    Target = spawn(fun() -> receive stop -> ok end end),
    T0 = now_ns(),
    monitor_loop(Target, N),
    T1 = now_ns(),
    Target ! stop,
    [{monitor_pairs_per_s, N * 1.0e9 / (T1 - T0)}].

monitor_loop(_T, 0) -> ok;
monitor_loop(T, K) ->
    Ref = erlang:monitor(process, T),
    erlang:demonitor(Ref, [flush]),
    monitor_loop(T, K - 1).

%% down: N monitored processes exit; the monitor takes every 'DOWN'.
down_bench(N) ->
    Pids = [begin
                {P, _} = spawn_monitor(fun() -> receive stop -> ok end end),
                P
            end || _ <- lists:seq(1, N)],
    T0 = now_ns(),
    [P ! stop || P <- Pids],
    down_wait(N),
    T1 = now_ns(),
    [{down_per_s, N * 1.0e9 / (T1 - T0)}].

down_wait(0) -> ok;
down_wait(K) -> receive {'DOWN', _, process, _, _} -> down_wait(K - 1) end.

%% wake: a process sleeping 2 ms between sends sends its send time to an
%% idle receiver N times; the receiver records how late it ran.
wake_bench(N) ->
    Parent = self(),
    Rx = spawn(fun() -> wake_rx(N, [], Parent) end),
    wake_send(Rx, N),
    Ds = receive {wake_delays, L} -> lists:sort(L) end,
    [{wake_p50_us, pct_us(Ds, N, 0.5)}, {wake_p99_us, pct_us(Ds, N, 0.99)}].

wake_send(_Rx, 0) -> ok;
wake_send(Rx, K) ->
    receive after 2 -> ok end,
    Rx ! {wake, now_ns()},
    wake_send(Rx, K - 1).

wake_rx(0, Acc, Parent) -> Parent ! {wake_delays, Acc};
wake_rx(K, Acc, Parent) ->
    receive {wake, T0} -> wake_rx(K - 1, [now_ns() - T0 | Acc], Parent) end.

pct_us(Sorted, N, P) ->
    lists:nth(round(P * (N - 1)) + 1, Sorted) / 1000.
