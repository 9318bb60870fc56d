/*
 * benchmsg: the messages sluice-bench sends and the proof that each arrived
 * exactly once and intact.
 *
 * Owns: the message format, the shared body pool, verification of a
 * received copy, and the set of (run, seq, recipient) keys already seen.
 *
 * A message is RFC 5322 headers, one of them
 *	X-Sluice-Bench: run=RUN seq=SEQ rcpts=N body=LEN crc=CRC
 * (RUN and CRC 8 hex digits, SEQ/N/LEN decimal), an empty line, and LEN
 * octets of body: whole CRLF lines cut from a pool of printable text whose
 * lines never start with '.' (no dot-stuffing needed, so DATA and BDAT
 * send the same bytes).  CRC is the CRC-32C of the body with CRLF line
 * ends.  An MTA in between may add or rewrite headers (Received:,
 * Delivered-To:, ...) and a Maildir copy may end lines with LF alone;
 * neither breaks verification.  Recipients are r<K>@<domain>, K = 0..N-1,
 * so the recipient index of a copy comes from its envelope address (or,
 * in a Maildir, from the mailbox directory name).
 *
 * Thread context: a pool is read-only after benchmsg_pool_new() and shared
 * by every thread.  A seen-set is safe to use from any number of threads.
 */
#ifndef SLUICE_BENCHMSG_H
#define SLUICE_BENCHMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest header block benchmsg_build() writes. */
#define BENCHMSG_HDR_MAX 512

/* The largest message body the pool can give (bytes). */
#define BENCHMSG_BODY_MAX (12u << 20)

struct benchmsg_pool;

/* Make the body pool (about BENCHMSG_BODY_MAX plus slack of text, from a
 * fixed seed so every run sends the same bytes).  NULL when out of memory. */
struct benchmsg_pool *benchmsg_pool_new(void);
void benchmsg_pool_free(struct benchmsg_pool *pool);

/* One message ready to send: hdr (in the struct), then body (in the pool). */
struct benchmsg {
	char hdr[BENCHMSG_HDR_MAX]; /* header block, ending with the empty line */
	size_t hdr_len;
	const uint8_t *body; /* points into the pool; whole CRLF lines */
	size_t body_len;
	uint32_t crc; /* CRC-32C of body */
};

/*
 * Build message seq of run with about size octets in all (header + body;
 * the body is at least one line and whole lines, at most
 * BENCHMSG_BODY_MAX), for rcpts recipients in domain, from sender.
 * Returns 0, or -1 when a string does not fit the header block.
 */
int benchmsg_build(const struct benchmsg_pool *pool, uint32_t run, uint64_t seq, unsigned rcpts,
		   size_t size, const char *sender, const char *domain, struct benchmsg *m);

/* Write recipient k's address (r<k>@domain) into buf; returns its length,
 * or -1 when it does not fit. */
int benchmsg_rcpt(char *buf, size_t cap, unsigned k, const char *domain);

/* The recipient index K of an address r<K>@..., or a local part r<K>;
 * -1 when addr is not of that form. */
long benchmsg_rcpt_index(const char *addr);

/* What verification found. */
enum benchmsg_verdict {
	BENCHMSG_OK = 0,
	BENCHMSG_FOREIGN,  /* no X-Sluice-Bench header: not ours */
	BENCHMSG_BAD_HDR,  /* the header is there but malformed */
	BENCHMSG_BAD_LEN,  /* body length differs */
	BENCHMSG_BAD_CRC,  /* body bytes differ */
};

struct benchmsg_info {
	uint32_t run;
	uint64_t seq;
	unsigned rcpts;
	uint64_t body_len;
	uint32_t crc;
};

/*
 * Verify one received copy (headers and body, CRLF or LF line ends, no
 * SMTP dot-stuffing, no final "."): find the X-Sluice-Bench header in the
 * header block, check the body's length and CRC.  Fills *info whenever the
 * header parsed (every verdict but FOREIGN and BAD_HDR).
 */
enum benchmsg_verdict benchmsg_verify(const uint8_t *msg, size_t len, struct benchmsg_info *info);

/* Short name of a verdict ("ok", "foreign", "bad-header", ...). */
const char *benchmsg_verdict_name(enum benchmsg_verdict v);

/* Which (run, seq, recipient) copies have arrived. */
struct benchmsg_seen;

struct benchmsg_seen *benchmsg_seen_new(void);
void benchmsg_seen_free(struct benchmsg_seen *s);

/* Record a copy (rcpt below UINT32_MAX); true if it is the first of its
 * key, false for a duplicate.  Aborts when out of memory (a benchmark cannot go on). */
bool benchmsg_seen_add(struct benchmsg_seen *s, uint32_t run, uint64_t seq, unsigned rcpt);

/* Number of distinct keys recorded. */
uint64_t benchmsg_seen_count(const struct benchmsg_seen *s);

#endif
