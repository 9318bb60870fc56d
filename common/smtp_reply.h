/*
 * smtp_reply: the client side's reading of SMTP replies (RFC 5321 4.2),
 * one line at a time, and of the extensions an EHLO reply lists (RFC 5321
 * 4.1.1.1, 2920, 3030, 1870, 6152, 6531, 3461, 3207, 2034).
 *
 * Owns: what a reply line must be (three digits, the first 2..5, then SP,
 * "-" or the end of the line; CRLF only), that every line of a multi-line
 * reply carries one code, and the EHLO keywords with the SIZE value.
 * Used by sluice-bench send, and meant for the delivery SMTP client.
 *
 * Sans-I/O: the caller cuts its input after each LF and hands every line,
 * CRLF included; the parser never reads past len.  Strict: a line that does
 * not end in CRLF (a bare LF) is malformed, like one without a code.
 *
 * Thread context: none of its own; one parser per connection.
 * Security: the input is the peer's.  A malformed line returns -EBADMSG
 * and the caller should close the connection: nothing after it can be
 * matched to a command.
 */
#ifndef SLUICE_SMTP_REPLY_H
#define SLUICE_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Between replies, or inside a multi-line one. */
struct smtp_reply_parser {
	uint16_t code; /* code of the multi-line reply in progress; 0 between replies */
};

/* One parsed reply line. */
struct smtp_reply_line {
	uint16_t code;	  /* 200..599 */
	bool first;	  /* the reply's first line (EHLO: the domain, not a keyword) */
	bool last;	  /* the reply's last line: SP after the code, or no text */
	const char *text; /* after the code and its separator, CRLF excluded */
	size_t text_len;
};

/* Make p ready for the first reply of a connection. */
void smtp_reply_parser_init(struct smtp_reply_parser *p);

/*
 * Parse one line (len octets, ending in CRLF) into *out.  Returns 1 when it
 * was the reply's last line (the reply is complete, out->code is its code),
 * 0 for a continuation line, -EBADMSG when the line is malformed or its code
 * differs from the reply's first line.  After -EBADMSG the parser is reset.
 */
int smtp_reply_parse_line(struct smtp_reply_parser *p, const char *line, size_t len,
			  struct smtp_reply_line *out);

/* EHLO extensions (one bit each). */
#define SMTP_EXT_PIPELINING 0x0001	    /* RFC 2920 */
#define SMTP_EXT_CHUNKING 0x0002	    /* RFC 3030: BDAT */
#define SMTP_EXT_SIZE 0x0004		    /* RFC 1870 */
#define SMTP_EXT_8BITMIME 0x0008	    /* RFC 6152 */
#define SMTP_EXT_SMTPUTF8 0x0010	    /* RFC 6531 */
#define SMTP_EXT_DSN 0x0020		    /* RFC 3461 */
#define SMTP_EXT_STARTTLS 0x0040	    /* RFC 3207 */
#define SMTP_EXT_ENHANCEDSTATUSCODES 0x0080 /* RFC 2034 */

/* What a server's EHLO reply offered. */
struct smtp_ehlo_exts {
	unsigned flags;	   /* SMTP_EXT_* */
	uint64_t size_max; /* SIZE's value; 0 when SIZE came without one (no fixed limit) */
};

/*
 * Note the keyword on one line of a 2xx EHLO reply (out->text of a line
 * that is not out->first).  Unknown keywords are ignored; a SIZE value
 * that is not a number is taken as no fixed limit.
 */
void smtp_ehlo_ext_line(struct smtp_ehlo_exts *e, const char *text, size_t len);

#endif
