%% bench_otp.erl - the BEAM side of `keel bench otp` (the Registry part is
%% bench_otp_registry.exs):
%%   gen_server_call_per_s_1/_8   gen_server:call round trips, 1 and 8
%%                                clients calling one server
%%   call_1c_*                    1 client -> 1 server, every call timed
%%                                (erlang:monotonic_time) into a histogram
%%                                of 10 ns buckets: calls/s, p50, p99 (us)
%%   call_100c_1s / _100s         100 clients -> 1 server / 100 servers
%%   restart_per_s, restart_latency_us
%%                                a one_for_one supervisor (intensity above
%%                                the run's restarts) restarting a killed
%%                                gen_server child; the child tells the
%%                                driver its pid from handle_continue; the
%%                                latency is kill to that message (median)
%%   idle_server_mem / _rss       gen_servers whose init returns hibernate:
%%                                erlang:memory(total) and RSS growth per
%%                                server
%% Run as: erl +S 2:2 +P 4000000 -noshell -run bench_otp main
%%             Calls8 Calls Restarts Idle -s init stop
%% Prints "<metric> <value>" lines, as bench_erl.c parses them.
-module(bench_otp).
-behaviour(gen_server).
-export([main/1, init/1, handle_call/3, handle_cast/2, handle_continue/2,
         start_child/1]).

-define(BUCKET_NS, 10).
-define(BUCKETS, 1000000).

main(Args) ->
    [Calls8, Calls, Restarts, Idle] = [list_to_integer(A) || A <- Args],
    %% Supervisor reports of 100k restarts would measure the logger.
    logger:set_primary_config(level, none),
    out("gen_server_call_per_s_1", calls(1, 1, Calls8, none)),
    out("gen_server_call_per_s_8", calls(8, 1, Calls8, none)),
    H = counters:new(?BUCKETS, []),
    out("call_1c_calls_per_s", calls(1, 1, Calls, H)),
    out("call_1c_p50_us", pct_us(H, Calls, 0.50)),
    out("call_1c_p99_us", pct_us(H, Calls, 0.99)),
    out("call_100c_1s_calls_per_s", calls(100, 1, Calls, none)),
    out("call_100c_100s_calls_per_s", calls(100, 100, Calls, none)),
    {Rate, Lat} = restart(Restarts),
    out("restart_per_s", Rate),
    out("restart_latency_us", Lat),
    {Mem, Rss} = idle(Idle),
    out("idle_server_mem", Mem),
    out("idle_server_rss", Rss),
    ok.

out(Name, V) -> io:format("~s ~.3f~n", [Name, float(V)]).

now_ns() -> erlang:monotonic_time(nanosecond).

%% ---- gen_server callbacks (the servers, the child, the idle servers) ----
%% and the supervisor's init (this module is also the supervisor's callback
%% module; only gen_server is declared, as both behaviours need init/1).

init(count) -> {ok, 0};
init({child, Driver}) -> {ok, Driver, {continue, notify}};
init(idle) -> {ok, idle, hibernate};
init({sup, Driver, Intensity}) ->
    {ok, {#{strategy => one_for_one, intensity => Intensity, period => 1},
          [#{id => child, start => {?MODULE, start_child, [Driver]}}]}}.

handle_call(get, _From, N) -> {reply, N, N + 1}.
handle_cast(_, S) -> {noreply, S}.

handle_continue(notify, Driver) ->
    Driver ! {started, self()},
    {noreply, Driver}.

start_child(Driver) -> gen_server:start_link(?MODULE, {child, Driver}, []).

%% ---- calls ----

calls(C, S, N, H) ->
    Servers = list_to_tuple([element(2, gen_server:start(?MODULE, count, []))
                             || _ <- lists:seq(1, S)]),
    Self = self(),
    Per = N div C,
    T0 = now_ns(),
    Pids = [spawn_link(fun() ->
                               Srv = element(I rem S + 1, Servers),
                               loop(Srv, Per, H),
                               Self ! {done, self()}
                       end)
            || I <- lists:seq(0, C - 1)],
    [receive {done, P} -> ok end || P <- Pids],
    T1 = now_ns(),
    [gen_server:stop(Srv) || Srv <- tuple_to_list(Servers)],
    C * Per / ((T1 - T0) / 1.0e9).

loop(_, 0, _) -> ok;
loop(S, K, none) ->
    _ = gen_server:call(S, get),
    loop(S, K - 1, none);
loop(S, K, H) ->
    T0 = erlang:monotonic_time(nanosecond),
    _ = gen_server:call(S, get),
    D = erlang:monotonic_time(nanosecond) - T0,
    counters:add(H, min(D div ?BUCKET_NS, ?BUCKETS - 1) + 1, 1),
    loop(S, K - 1, H).

%% The p-quantile of the histogram in microseconds (bucket middle).
pct_us(H, N, P) -> pct_us(H, trunc(N * P), 1, 0).

pct_us(_, _, I, _) when I > ?BUCKETS -> ?BUCKETS * ?BUCKET_NS / 1000;
pct_us(H, Want, I, Seen0) ->
    Seen = Seen0 + counters:get(H, I),
    case Seen > Want of
        true -> (I - 1 + 0.5) * ?BUCKET_NS / 1000;
        false -> pct_us(H, Want, I + 1, Seen)
    end.

%% ---- restart ----

restart(N) ->
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, self(), N + 100}),
    Child = receive {started, P} -> P end,
    H = counters:new(?BUCKETS, []),
    T0 = now_ns(),
    restart_loop(N, Child, H),
    T1 = now_ns(),
    unlink(Sup),
    exit(Sup, shutdown),
    {N / ((T1 - T0) / 1.0e9), pct_us(H, N, 0.50)}.

restart_loop(0, _, _) -> ok;
restart_loop(K, Child, H) ->
    T = now_ns(),
    exit(Child, kill),
    receive
        {started, New} ->
            D = now_ns() - T,
            counters:add(H, min(D div ?BUCKET_NS, ?BUCKETS - 1) + 1, 1),
            restart_loop(K - 1, New, H)
    end.

%% ---- idle hibernated servers ----

page_size() -> list_to_integer(string:trim(os:cmd("getconf PAGESIZE"))).

rss(Page) ->
    {ok, B} = file:read_file("/proc/self/statm"),
    [_, Res | _] = binary:split(B, <<" ">>, [global]),
    binary_to_integer(Res) * Page.

idle(N) ->
    Page = page_size(),
    erlang:garbage_collect(),
    M0 = erlang:memory(total),
    R0 = rss(Page),
    idle_start(N),
    M1 = erlang:memory(total),
    R1 = rss(Page),
    {(M1 - M0) / N, (R1 - R0) / N}.

idle_start(0) -> ok;
idle_start(K) ->
    {ok, _} = gen_server:start(?MODULE, idle, []),
    idle_start(K - 1).
