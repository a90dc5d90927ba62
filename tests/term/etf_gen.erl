#!/usr/bin/env escript
%% -*- erlang -*-
%%
%% Oracle for tests/term/test_etf_erl.c.
%%
%%   etf_gen.erl gen Seed N TermsFile
%%     Writes N random terms as records <<Len:32, Exact:8, Etf/binary>>,
%%     Etf = term_to_binary(T, [{minor_version, 2}]). Exact is 1 when the
%%     bytes are canonical (no map of more than 32 pairs, whose order is
%%     Erlang's hash order), so another encoder must reproduce them.
%%
%%   etf_gen.erl check TermsFile KeelFile
%%     KeelFile holds N records <<Len:32, Etf/binary>> (the other encoder's
%%     output for each term, in order), then N indices <<I:32>> giving that
%%     implementation's sort order, then N-1 flag bytes for adjacent pairs
%%     in that order (bit 0: A < B, bit 1: compare equal, bit 2: A == B,
%%     bit 3: A =:= B). Checks every one against Erlang and exits non-zero
%%     on the first mismatch.
-mode(compile).

main(["gen", Seed, N, File]) ->
    rand:seed(exsss, {list_to_integer(Seed), 17, 42}),
    Terms = [term(3) || _ <- lists:seq(1, list_to_integer(N))],
    Recs = [record(T) || T <- Terms],
    ok = file:write_file(File, Recs),
    halt(0);
main(["check", TermsFile, KeelFile]) ->
    {ok, TB} = file:read_file(TermsFile),
    {ok, KB} = file:read_file(KeelFile),
    Terms = [binary_to_term(E) || {_, E} <- read_terms(TB)],
    N = length(Terms),
    {Encs, Rest} = read_n(KB, N, []),
    check_decode(Terms, Encs, 0),
    {Order, Flags} = read_order(Rest, N),
    check_order(Terms, Order, Flags),
    io:format("ok ~b terms~n", [N]),
    halt(0);
main(_) ->
    io:format(standard_error, "usage: etf_gen.erl gen|check ...~n", []),
    halt(2).

record(T) ->
    E = term_to_binary(T, [{minor_version, 2}]),
    X = case canonical(T) of true -> 1; false -> 0 end,
    <<(byte_size(E)):32, X:8, E/binary>>.

%% ---- reading -------------------------------------------------------------

read_terms(<<Len:32, X:8, E:Len/binary, Rest/binary>>) ->
    [{X, E} | read_terms(Rest)];
read_terms(<<>>) -> [].

read_n(B, 0, Acc) -> {lists:reverse(Acc), B};
read_n(<<Len:32, E:Len/binary, Rest/binary>>, K, Acc) ->
    read_n(Rest, K - 1, [E | Acc]).

read_order(B, N) ->
    <<Idx:(4 * N)/binary, Flags/binary>> = B,
    {[I || <<I:32>> <= Idx], [F || <<F:8>> <= Flags]}.

%% ---- checks --------------------------------------------------------------

check_decode([], [], _) -> ok;
check_decode([T | Ts], [E | Es], I) ->
    case catch binary_to_term(E) of
        V when V =:= T -> check_decode(Ts, Es, I + 1);
        Other ->
            case same(T, Other) of
                true -> check_decode(Ts, Es, I + 1);
                false ->
                    {A, B} = diff(T, Other),
                    fail("term ~b: decoded differently; first difference "
                         "~P vs ~P", [I, A, 12, B, 12])
            end
    end.

%% =:= that does not depend on the internal layout of large maps: on
%% OTP 25, two equal hash maps built in different insertion orders can
%% compare unequal with =:= when keys collide.
same(A, B) when is_map(A), is_map(B) ->
    map_size(A) =:= map_size(B) andalso
        lists:all(fun({K, V}) ->
                          case maps:find(K, B) of
                              {ok, W} -> same(V, W);
                              error -> false
                          end
                  end, maps:to_list(A));
same(A, B) when is_tuple(A), is_tuple(B), tuple_size(A) =:= tuple_size(B) ->
    same(tuple_to_list(A), tuple_to_list(B));
same([X | Xs], [Y | Ys]) -> same(X, Y) andalso same(Xs, Ys);
same(A, B) -> A =:= B.

%% The smallest differing pair of sub-terms of A and B.
diff(A, B) when is_tuple(A), is_tuple(B), tuple_size(A) =:= tuple_size(B) ->
    diff(tuple_to_list(A), tuple_to_list(B));
diff([X | Xs], [Y | Ys]) when X =:= Y -> diff(Xs, Ys);
diff([X | _], [Y | _]) -> diff(X, Y);
diff(A, B) when is_map(A), is_map(B), map_size(A) =:= map_size(B) ->
    diff(lists:sort(maps:to_list(A)), lists:sort(maps:to_list(B)));
diff(A, B) -> {A, B}.

check_order(Terms, Order, Flags) ->
    Tup = list_to_tuple(Terms),
    lists:sort(Order) =:= lists:seq(0, length(Terms) - 1)
        orelse fail("order is not a permutation", []),
    Sorted = [element(I + 1, Tup) || I <- Order],
    check_pairs(Sorted, Order, Flags),
    Ref = lists:sort(Terms),
    lists:all(fun({A, B}) -> A == B end, lists:zip(Ref, Sorted))
        orelse fail("order differs from lists:sort", []).

check_pairs([A, B | Rest], [IA, IB | IR], [F | Fs]) ->
    Want = (case A < B of true -> 1; false -> 0 end)
        bor (case A == B of true -> 2 bor 4; false -> 0 end)
        bor (case same(A, B) of true -> 8; false -> 0 end),
    Want =:= F orelse
        fail("pair ~b/~b: ~P vs ~P: flags ~b, expected ~b",
             [IA, IB, A, 12, B, 12, F, Want]),
    check_pairs([B | Rest], [IB | IR], Fs);
check_pairs(_, _, []) -> ok.

fail(Fmt, Args) ->
    io:format("MISMATCH: " ++ Fmt ++ "~n", Args),
    halt(1).

%% ---- generation ----------------------------------------------------------

canonical(T) when is_map(T) ->
    map_size(T) =< 32 andalso
        lists:all(fun({K, V}) -> canonical(K) andalso canonical(V) end,
                  maps:to_list(T));
canonical(T) when is_tuple(T) -> canonical(tuple_to_list(T));
canonical([H | T]) -> canonical(H) andalso canonical(T);
canonical(_) -> true.

%% OTP 25 cannot look up some external references in hash maps (a map
%% built with such a key does not find it again), so large maps do not use
%% references as keys.
big_map_key() ->
    case scalar() of
        R when is_reference(R) -> big_map_key();
        K -> K
    end.

pick(L) -> lists:nth(rand:uniform(length(L)), L).

term(0) -> scalar();
term(D) ->
    case rand:uniform(10) of
        1 -> list_to_tuple([term(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        2 -> [term(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        3 -> [term(D - 1) | term(0)];
        4 -> maps:from_list([{term(D - 1), term(D - 1)}
                             || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        5 when D =:= 1 ->
            maps:from_list([{big_map_key(), term(0)}
                            || _ <- lists:seq(1, 30 + rand:uniform(20))]);
        6 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(8))];
        _ -> scalar()
    end.

scalar() ->
    case rand:uniform(16) of
        1 -> rand:uniform(600) - 300;
        2 -> rand:uniform(1 bsl 40) - (1 bsl 39);
        3 -> (rand:uniform(1 bsl 70) - (1 bsl 69)) bsl rand:uniform(200);
        4 -> (rand:uniform(2001) - 1001) / 8;
        5 -> pick([0.0, -0.0, 1.0, -1.0, 1.0e300, -2.5e-300, 5.0e-324, 3.0]);
        6 -> pick([a, b, ok, '', 'hello world', 'å', 'Ärger', '∀x', '日本',
                   list_to_atom(lists:duplicate(255, $z)),
                   list_to_atom(lists:duplicate(255, 16#1F600))]);
        7 -> rand:bytes(rand:uniform(100) - 1);
        8 -> <<(rand:bytes(rand:uniform(5) - 1))/binary,
               (rand:uniform(127)):(rand:uniform(7))>>;
        9 -> pid();
        10 -> ref();
        11 -> port();
        12 -> pick([fun erlang:self/0, fun lists:map/2, fun mod:fn/255]);
        13 -> pick([self(), 1, 1.0, 2, a, [], {}, #{}, <<>>, "a"]);
        14 -> rand:uniform(3);
        15 -> float(rand:uniform(3));
        _ -> []
    end.

node_atom() -> pick([<<119, 9, "fake@host">>, <<119, 6, "b@h", 16#c3, 16#a5, $x>>]).

pid() ->
    binary_to_term(<<131, 88, (node_atom())/binary, (rand:uniform(1 bsl 32) - 1):32,
                     (rand:uniform(1 bsl 32) - 1):32, (rand:uniform(4)):32>>).

ref() ->
    L = rand:uniform(5),
    Ids = << <<(rand:uniform(1 bsl 32) - 1):32>> || _ <- lists:seq(1, L) >>,
    binary_to_term(<<131, 90, L:16, (node_atom())/binary, (rand:uniform(4)):32,
                     Ids/binary>>).

port() ->
    case rand:uniform(2) of
        1 -> binary_to_term(<<131, 89, (node_atom())/binary,
                              (rand:uniform(1 bsl 32) - 1):32, 3:32>>);
        2 -> binary_to_term(<<131, 120, (node_atom())/binary,
                              (rand:uniform(1 bsl 64) - 1):64, 3:32>>)
    end.
