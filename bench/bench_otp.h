/*
 * bench_otp.h - OTP behaviour benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_OTP_H
#define KEEL_BENCH_OTP_H

/* gen_server call round trips per second with 1 and 8 client fibers
 * calling one handler-process server (keel_gen_server_call), on a node of
 * 2 schedulers, and the same with gen_server:call on `erl +S 2:2`
 * (bench/erl/bench_otp.erl). Prints
 *   keel <metric> <value> calls/s
 *   beam <metric> <value> calls/s
 *   ratio <metric> <value>        (> 1 means Keel is faster)
 * Arguments (argv[0] = "otp"): --quick, --runs N (median; default 3,
 * quick 1), --no-beam. Returns 0, 2 on a usage error, 1 on a failure. */
int keel_bench_otp(int argc, char **argv);

#endif /* KEEL_BENCH_OTP_H */
