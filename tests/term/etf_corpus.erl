#!/usr/bin/env escript
%% -*- erlang -*-
%% Writes the seed corpus of fuzz/fuzz_etf.c: one term_to_binary output per
%% file, covering every tag (old forms included), into the given directory.
%%   escript tests/term/etf_corpus.erl fuzz/corpus/etf
-mode(compile).

main([Dir]) ->
    Node = <<119, 9, "fake@host">>,
    Old = [<<131, 100, 0, 3, "abc">>,
           <<131, 115, 1, 229>>,
           <<131, 103, 100, 0, 1, $a, 1:32, 2:32, 3>>,
           <<131, 101, 100, 0, 1, $a, 5:32, 1>>,
           <<131, 114, 0, 2, 100, 0, 1, $a, 2, 7:32, 8:32>>,
           <<131, 102, 100, 0, 1, $a, 9:32, 1>>,
           <<131, 99, "1.50000000000000000000e+00", 0, 0, 0, 0, 0>>,
           <<131, 88, Node/binary, 1:32, 2:32, 3:32>>,
           <<131, 90, 0, 3, Node/binary, 1:32, 1:32, 2:32, 3:32>>,
           <<131, 89, Node/binary, 5:32, 1:32>>,
           <<131, 120, Node/binary, (1 bsl 40):64, 1:32>>,
           <<131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3>>,
           <<131, 77, 0, 0, 0, 1, 3, 224>>],
    Terms = [0, 255, 256, -1, 1 bsl 31, -(1 bsl 64), 1 bsl 2100, 1.5, -0.0,
             abc, 'å', '∀x', list_to_atom(lists:duplicate(255, 16#e9)),
             {}, {a, 1, "s"}, list_to_tuple(lists:seq(1, 300)), [], "hello",
             [1, [2, [3]] | 4], <<>>, <<1, 2, 3>>, binary:copy(<<7>>, 100),
             <<5:3>>, #{}, #{a => 1, <<"k">> => [x]},
             maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
             fun lists:map/2, self(), [{deep, [{nested, #{k => {v}}}]}]],
    Compressed = [term_to_binary(lists:duplicate(200, abc), [compressed]),
                  term_to_binary(binary:copy(<<"xy">>, 500), [{compressed, 9}])],
    All = Old ++ [term_to_binary(T, [{minor_version, 2}]) || T <- Terms]
        ++ Compressed,
    lists:foldl(fun(B, I) ->
                        Name = io_lib:format("~s/seed_~2..0b", [Dir, I]),
                        ok = file:write_file(Name, B),
                        I + 1
                end, 0, All),
    io:format("~b files~n", [length(All)]).
