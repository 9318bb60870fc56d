/* sluice-bench: load generator, sink and verifier (see bench/README.md). */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

static const char usage[] = "usage: sluice-bench send|sink|verify [options]   (--help after a subcommand)\n"
			    "  send    SMTP load generator\n"
			    "  sink    verifying SMTP sink with fault injection\n"
			    "  verify  check Maildir copies for loss, duplicates and damage\n";

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "send") == 0)
		return bench_send_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "sink") == 0)
		return bench_sink_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return bench_verify_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	fprintf(stderr, "sluice-bench: unknown subcommand '%s'\n%s", argv[1], usage);
	return 2;
}
