/*
 * libFuzzer harness for benchmsg_verify(), the parser that sluice-bench's
 * sink and verifier run on every copy an MTA hands back.  Invariants, not
 * only "no crash":
 *  - the verdict is one of the enum's values and has a name;
 *  - an OK copy's recorded body length fits the input (as CRLF at most
 *    twice the octets);
 *  - prefixing a header line never turns a verdict into OK or out of OK
 *    (headers added by a relay do not matter), unless the input has no
 *    header/body split at all.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/benchmsg.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "invariant failed: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char added[] = "Received: from fuzz by fuzz; Thu, 1 Jan 2026\r\n";
	struct benchmsg_info info, info2;
	enum benchmsg_verdict v = benchmsg_verify(data, size, &info);

	check(v >= BENCHMSG_OK && v <= BENCHMSG_BAD_CRC, "verdict in range");
	check(benchmsg_verdict_name(v)[0] != '?', "verdict has a name");
	if (v == BENCHMSG_OK)
		check(info.body_len <= 2 * (uint64_t)size, "body length fits the input");

	/* Only CRLF inputs: the added line must not change the line-end mode. */
	const uint8_t *nl = memchr(data, '\n', size);

	if (!nl || nl == data || nl[-1] != '\r')
		return 0;
	uint8_t *copy = malloc(sizeof(added) - 1 + size);

	if (!copy)
		return 0;
	memcpy(copy, added, sizeof(added) - 1);
	memcpy(copy + sizeof(added) - 1, data, size);
	enum benchmsg_verdict v2 = benchmsg_verify(copy, sizeof(added) - 1 + size, &info2);

	/* The input may itself start with an empty line (no headers). */
	if (!(data[0] == '\r' && size > 1 && data[1] == '\n'))
		check((v == BENCHMSG_OK) == (v2 == BENCHMSG_OK), "an added header changes nothing");
	free(copy);
	return 0;
}
