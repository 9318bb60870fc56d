/*
 * smtp_client: the sans-I/O SMTP/LMTP client engine that delivery drives.
 *
 * Owns: one client session to one server: the greeting, EHLO (with HELO
 * fallback) or LHLO, MAIL/RCPT/DATA transactions with or without
 * pipelining, dot-stuffing of the body, RSET between transactions, QUIT,
 * the reading of every reply and the mapping of replies to recipients.
 * It never touches a socket, a clock or a file: the caller feeds the bytes
 * the server sent (smtp_client_feed), writes what smtp_client_output
 * offers, arms a timer for smtp_client_wait_seconds and reports EOF and
 * timeouts.  Per-recipient outcomes arrive through struct smtp_client_ops.
 *
 * RFCs: 5321 (SMTP; 4.5.3.2 timeouts; 4.5.2 dot-stuffing), 2920
 * (PIPELINING), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8), 3461 (DSN),
 * 2033 (LMTP), 2034 and 3463 (enhanced status codes).
 *
 * Thread context: none of its own; one engine per connection, used by one
 * thread at a time.  Callbacks run inside the call that caused them
 * (feed, eof, timeout, send, quit).  From msg_done the caller may call
 * smtp_client_send or smtp_client_quit; from rcpt_result only the
 * read-only getters.  Never smtp_client_free from a callback.
 *
 * Security: everything fed is the peer's.  Replies are read strictly
 * (CRLF only, one code per reply, at most SMTP_CLIENT_LINE_MAX octets a
 * line and SMTP_CLIENT_REPLY_LINES lines a reply); a reply that breaks
 * the rules, or one that nobody asked for, ends the session (-EPROTO).
 * Reply texts handed on have controls and non-ASCII octets replaced by '?'
 * and capped, so they are safe for logs and DSNs.
 */
#ifndef SLUICE_SMTP_CLIENT_H
#define SLUICE_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"
#include "common/smtp_reply.h"

/* Longest reply line we read, CRLF included (RFC 5321 4.5.3.1.5 says 512;
 * we are lenient up to this). */
#define SMTP_CLIENT_LINE_MAX 2048
/* Most lines in one reply (a long EHLO list fits easily). */
#define SMTP_CLIENT_REPLY_LINES 100
/* Longest reply text handed to callbacks, NUL excluded. */
#define SMTP_CLIENT_TEXT_MAX 400
/* Most octets of dot-stuffed body in one output slice (plus the final dot). */
#define SMTP_CLIENT_SLICE 65536

enum smtp_client_proto {
	SMTP_CLIENT_SMTP = 0, /* RFC 5321 */
	SMTP_CLIENT_LMTP,     /* RFC 2033: LHLO, one end-of-data reply per recipient */
};

enum smtp_client_state {
	SMTP_CLIENT_GREETING, /* waiting for the 220 */
	SMTP_CLIENT_HELLO,    /* EHLO (then HELO fallback) or LHLO sent */
	SMTP_CLIENT_READY,    /* idle: smtp_client_send() may start a message */
	SMTP_CLIENT_BUSY,     /* a transaction is under way */
	SMTP_CLIENT_QUITTING, /* QUIT sent: wait for 221 or EOF, then close */
	SMTP_CLIENT_CLOSED,   /* done: close the socket */
};

/* Static name of a state for logs ("greeting", "ready", ...). */
const char *smtp_client_state_str(enum smtp_client_state s);

/* RFC 5321 4.5.3.2 timeouts, seconds (0 = the RFC's value). */
struct smtp_client_timeouts {
	unsigned greeting;   /* 300: waiting for the 220 */
	unsigned hello;	     /* 300: EHLO/HELO/LHLO (the RFC has none; MAIL's) */
	unsigned mail;	     /* 300: MAIL FROM */
	unsigned rcpt;	     /* 300: RCPT TO */
	unsigned data_init;  /* 120: DATA until 354 */
	unsigned data_block; /* 180: while the body is being written */
	unsigned data_term;  /* 600: after the final dot */
	unsigned rset_quit;  /* 120: RSET and QUIT (the RFC has none; ours) */
};

struct smtp_client_cfg {
	const char *helo_name;	/* our name for EHLO/HELO/LHLO; copied; required */
	enum smtp_client_proto proto;
	bool no_pipelining;	/* do not pipeline even when offered */
	struct smtp_client_timeouts timeouts;
};

/* One outcome: a server reply, or a decision of ours (local = true). */
struct smtp_client_result {
	uint16_t code;	  /* 250, 451, 550, ... (local decisions use 4xx/5xx too) */
	char enh[16];	  /* enhanced status "5.1.1" from the reply (RFC 3463/2034), or one
			     we chose; server replies without one get 2.0.0/4.0.0/5.0.0 */
	const char *text; /* reply text, lines joined with "; ", the enhanced code taken
			     off, controls removed, at most SMTP_CLIENT_TEXT_MAX octets;
			     valid during the callback only */
	bool local;	  /* decided by us, not said by the server */
	enum smtp_client_state stage_state; /* the engine's state when it was decided */
	const char *stage; /* what it answered: "greeting", "EHLO", "HELO", "LHLO",
			      "RSET", "MAIL", "RCPT", "DATA", "end of data"; or
			      "connection" (EOF, timeout, protocol error, our close) */
};

/*
 * One transaction.  The engine copies this struct; env, the rcpts array
 * and body stay the caller's and must stay alive until msg_done.
 */
struct smtp_client_msg {
	const struct envelope *env; /* sender, ENVID/RET/BODY/SMTPUTF8, recipients */
	const uint32_t *rcpts;	    /* indexes into env->rcpts for this transaction */
	uint32_t nrcpts;	    /* at least 1 */
	const uint8_t *body;	    /* the message, CRLF lines, NOT dot-stuffed */
	size_t body_len;
};

struct smtp_client_ops {
	/* Recipient k (index into msg->rcpts, not env->rcpts) has its result:
	 * 2xx delivered, 4xx deferred, 5xx failed.  Exactly once per recipient
	 * per message. */
	void (*rcpt_result)(void *arg, uint32_t k, const struct smtp_client_result *r);
	/* Every recipient of the message has its result; the engine is READY
	 * again (or QUITTING/CLOSED).  Exactly once per accepted send. */
	void (*msg_done)(void *arg);
};

struct smtp_client;

/*
 * A new engine waiting for the greeting.  cfg is copied (helo_name too);
 * ops and arg are kept.  Returns NULL with errno EINVAL (no helo_name, or
 * one with spaces or controls) or ENOMEM.
 */
struct smtp_client *smtp_client_new(const struct smtp_client_cfg *cfg,
				    const struct smtp_client_ops *ops, void *arg);

/* Release the engine.  No callbacks run: outstanding recipients get no
 * result.  NULL is a no-op. */
void smtp_client_free(struct smtp_client *c);

/*
 * Feed bytes read from the server, cut anywhere.  Returns 0, or -EPROTO
 * when the server broke the protocol (malformed reply, reply nobody asked
 * for, too long a line or reply): outstanding recipients then get a 421
 * 4.5.0 local result, the state becomes CLOSED and later feeds return
 * -EPROTO again.  Bytes after the session ended are ignored.
 */
int smtp_client_feed(struct smtp_client *c, const void *data, size_t len);

/* The peer closed (EOF) or the socket failed (why: for the text, may be
 * NULL): outstanding recipients get 421 4.4.2 "connection lost ...", state
 * CLOSED. */
void smtp_client_eof(struct smtp_client *c, const char *why);

/* The timer for the current wait ran out: outstanding recipients get 421
 * 4.4.2 "timeout waiting for reply to RCPT" (or the stage waited on),
 * state CLOSED. */
void smtp_client_timeout(struct smtp_client *c);

/*
 * Bytes waiting to be written: returns their count (0 if none) and points
 * *data at them; valid until the next call into the engine.  A body is
 * produced one dot-stuffed slice (at most SMTP_CLIENT_SLICE octets) at a
 * time, never copied whole.
 */
size_t smtp_client_output(struct smtp_client *c, const void **data);

/* n of the bytes smtp_client_output offered were written (n <= that count). */
void smtp_client_output_done(struct smtp_client *c, size_t n);

/*
 * Start a message; READY only.  When the server's extensions rule it out
 * (SIZE limit: 552 5.3.4; SMTPUTF8 needed but not offered: 553 5.6.7;
 * 8-bit body without 8BITMIME: 554 5.6.3) every recipient gets that local
 * result and msg_done runs before this returns; nothing is sent and the
 * state stays READY.  Returns 0, -EBUSY when not READY, -EINVAL for no
 * recipients, an index out of range or an address with controls, -ENOMEM.
 */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m);

/* Polite end: from READY sends QUIT (state QUITTING).  From any other state
 * it just closes (CLOSED); a transaction under way gives its outstanding
 * recipients 421 4.4.2 and runs msg_done. */
void smtp_client_quit(struct smtp_client *c);

enum smtp_client_state smtp_client_state(const struct smtp_client *c);

/* Seconds the caller may wait for the server now (the RFC 5321 4.5.3.2
 * class of what we wait on; data_block while the body is written), 0 when
 * we are not waiting (READY, CLOSED). */
unsigned smtp_client_wait_seconds(const struct smtp_client *c);

/* What the server offered in EHLO/LHLO (valid from READY; zero after HELO). */
const struct smtp_ehlo_exts *smtp_client_exts(const struct smtp_client *c);

/*
 * Why the session ended before READY (greeting not 220, EHLO and HELO or
 * LHLO refused, protocol error, EOF, timeout): the result to fall over to
 * the next MX host or defer on (a 5xx greeting keeps its 5xx).  NULL while
 * none.  Valid until smtp_client_free.
 */
const struct smtp_client_result *smtp_client_session_error(const struct smtp_client *c);

#endif
