/*
 * bench: the sluice-bench program's subcommands and the small helpers they
 * share (argument parsing, clocks, pinning).
 *
 *	sluice-bench send    load generator (send.c)
 *	sluice-bench sink    verifying SMTP sink with fault injection (sink.c)
 *	sluice-bench verify  Maildir verifier (verify.c)
 *
 * Each *_main() takes the arguments after the subcommand name (argv[0] is
 * the subcommand) and returns the process exit status.
 *
 * Thread context: the helpers are safe from any thread.
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

int bench_send_main(int argc, char **argv);
int bench_sink_main(int argc, char **argv);
int bench_verify_main(int argc, char **argv);

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);

/* Parse a decimal count in [min, max] (digits only); -1 when malformed or
 * out of range. */
int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parse a run id: exactly 8 hex digits; -1 otherwise. */
int bench_parse_run(const char *s, uint32_t *out);

/* Parse "1024", "10k", "1m", "64M" (binary multiples); -1 when malformed. */
int bench_parse_size(const char *s, uint64_t *out);

/* Parse "HOST:PORT" or "[V6]:PORT" into a socket address; -1 when
 * malformed (numeric addresses only: no DNS). */
int bench_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Number of online cores (at least 1). */
unsigned bench_cores(void);

/* Pin the calling thread to core (modulo the core count); best effort. */
void bench_pin(unsigned core);

#endif
