/*
 * engine_bench: SMTP engine hot path.  One pipelined session sends N
 * messages of about 1 KiB (MAIL, RCPT, DATA, body, "."), fed in 64 KiB
 * reads; every event is answered at once.  Prints messages/s on one core
 * and cycles per input byte (rdtsc on x86).
 *
 *	cc -O2 -D_GNU_SOURCE -I. bench/micro/engine_bench.c dataplane/smtp_engine*.c \
 *	   common/envelope.c common/log.c -o /tmp/engine_bench && /tmp/engine_bench [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_RDTSC 1
#endif

#include "dataplane/smtp_engine.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	struct smtp_engine_cfg cfg = {.hostname = "bench.test",
				      .max_message_size = 10 << 20,
				      .max_recipients = 100,
				      .max_errors = 10};
	char msg[2048];
	size_t mlen = 0;
	mlen += (size_t)sprintf(msg + mlen, "MAIL FROM:<sender@example.org> SIZE=1024\r\n"
					    "RCPT TO:<rcpt@example.net>\r\nDATA\r\n");
	mlen += (size_t)sprintf(msg + mlen, "From: sender@example.org\r\nTo: rcpt@example.net\r\n"
					    "Subject: bench\r\n\r\n");
	while (mlen < 1024 + 60)
		mlen += (size_t)sprintf(msg + mlen, "%s\r\n",
					"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do e");
	mlen += (size_t)sprintf(msg + mlen, ".\r\n");

	/* 64 KiB of whole messages, fed again and again (pipelining). */
	size_t per = 65536 / mlen, blen = per * mlen;
	char *buf = malloc(blen);
	for (size_t i = 0; i < per; i++)
		memcpy(buf + i * mlen, msg, mlen);

	struct smtp_engine *e = smtp_engine_new(&cfg, "192.0.2.1");
	enum smtp_rc rc;
	size_t olen;
	smtp_engine_start(e);
	smtp_engine_feed(e, (const uint8_t *)"EHLO bench\r\n", 12, &rc);
	smtp_engine_output(e, &olen);
	smtp_engine_output_consumed(e, olen);

	long done = 0;
	unsigned long long bytes = 0;
	double t0 = now();
#ifdef HAVE_RDTSC
	unsigned long long c0 = __rdtsc();
#endif
	while (done < n) {
		size_t off = 0;
		while (off < blen) {
			off += smtp_engine_feed(e, (const uint8_t *)buf + off, blen - off, &rc);
			if (rc == SMTP_RC_EVENT) {
				const struct smtp_event *ev = smtp_engine_event(e);
				if (ev->type == SMTP_EV_MESSAGE) {
					done++;
					smtp_engine_resume(e, 250, "2.0.0 Ok: queued as X", false);
				} else {
					smtp_engine_resume(e, 250, "2.1.0 Ok", false);
				}
			} else if (rc == SMTP_RC_CLOSE) {
				fprintf(stderr, "closed?\n");
				return 1;
			}
			smtp_engine_output(e, &olen);
			smtp_engine_output_consumed(e, olen);
		}
		bytes += blen;
	}
#ifdef HAVE_RDTSC
	unsigned long long c1 = __rdtsc();
#endif
	double t = now() - t0;
	printf("messages: %ld of %zu bytes in %.3f s: %.0f messages/s per core, %.1f MB/s\n", done,
	       mlen, t, (double)done / t, (double)bytes / t / 1e6);
#ifdef HAVE_RDTSC
	printf("cycles/byte (TSC): %.2f, cycles/message: %.0f\n", (double)(c1 - c0) / (double)bytes,
	       (double)(c1 - c0) / (double)done);
#endif
	printf("idle session memory: %zu bytes\n", smtp_engine_memory(e));
	smtp_engine_free(e);
	free(buf);
	return 0;
}
