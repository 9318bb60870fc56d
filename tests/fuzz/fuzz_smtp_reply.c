/*
 * libFuzzer harness for smtp_reply, the reading of a server's replies that
 * sluice-bench send (and the delivery client) run on whatever the peer
 * sends.  The input is cut after each LF, as the callers do.  Invariants,
 * not only "no crash":
 *  - a line that parses has a code 200..599 and its text lies inside the
 *    line, before its CRLF;
 *  - every line of one reply carries the code of its first line, and only
 *    the first line is marked first;
 *  - a line that does not end in CRLF never parses;
 *  - smtp_ehlo_ext_line on any text sets only known bits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/smtp_reply.h"

#define ALL_EXTS                                                                                   \
	(SMTP_EXT_PIPELINING | SMTP_EXT_CHUNKING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |             \
	 SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN | SMTP_EXT_STARTTLS | SMTP_EXT_ENHANCEDSTATUSCODES)

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
	const char *p = (const char *)data, *end = p + size;
	struct smtp_reply_parser parser;
	struct smtp_ehlo_exts exts = {0};
	unsigned reply_code = 0; /* code of the reply in progress, per the invariants */

	smtp_reply_parser_init(&parser);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
		struct smtp_reply_line rl;
		int rc = smtp_reply_parse_line(&parser, p, len, &rl);

		if (rc < 0) {
			reply_code = 0;
		} else {
			check(len >= 5 && p[len - 2] == '\r' && p[len - 1] == '\n', "CRLF ends it");
			check(rl.code >= 200 && rl.code <= 599, "code in 200..599");
			check(rl.text >= p && rl.text + rl.text_len <= p + len - 2, "text inside");
			check(rl.first == (reply_code == 0), "first marks the first line");
			check(reply_code == 0 || rl.code == reply_code, "one code per reply");
			check((rc == 1) == rl.last, "rc says last");
			reply_code = rl.last ? 0 : rl.code;
			if (!rl.first)
				smtp_ehlo_ext_line(&exts, rl.text, rl.text_len);
		}
		p += len;
	}
	check((exts.flags & ~(unsigned)ALL_EXTS) == 0, "only known extension bits");
	return 0;
}
