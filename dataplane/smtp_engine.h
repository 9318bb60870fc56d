/*
 * smtp_engine: the SMTP server protocol engine, sans-I/O.
 *
 * Owns: one SMTP session's protocol state (RFC 5321 command/reply dialogue,
 * the current MAIL transaction and its body).  It takes bytes in, queues
 * reply bytes out, and pauses with an event when it needs a decision that
 * only the caller can make (accept this sender? route this recipient? store
 * this message?).  It never touches a socket, file, route table or clock, so
 * the kernel and DPDK backends, the tests and the fuzzers drive the same code.
 *
 * Thread context: one engine belongs to one thread (its worker) at a time.
 * The config it points to is read-only and shared.
 *
 * RFCs: 5321 (SMTP), 3463 (enhanced status codes, on every reply after the
 * greeting), 2920 (PIPELINING: replies are the same whatever the split of the
 * input), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8), 3030 (CHUNKING,
 * BDAT), 3461 (DSN: RET, ENVID, NOTIFY, ORCPT), 2034 (ENHANCEDSTATUSCODES).
 *
 * Security: only CRLF ends a command line or the data (CRLF.CRLF); a bare
 * LF or bare CR inside the data makes the message refused (550 5.6.0) unless
 * cfg->lenient_bare_lf, which normalises it to CRLF (SMTP smuggling).
 * Command lines are at most 512 octets including CRLF (500 5.5.2 beyond).
 * Memory per idle session is the struct alone; the body buffer exists only
 * during DATA/BDAT and is freed with the transaction.
 *
 * Usage (one connection):
 *	e = smtp_engine_new(cfg, "192.0.2.1");
 *	smtp_engine_start(e);                  // queues the 220 greeting
 *	loop:
 *	  n = smtp_engine_feed(e, in, len, &rc); // consumes n bytes
 *	  send smtp_engine_output(); smtp_engine_output_consumed();
 *	  rc == SMTP_RC_EVENT: look at smtp_engine_event(), decide (maybe later,
 *	    e.g. after fdatasync), then smtp_engine_resume(); feed the rest
 *	    of the input (in + n) again
 *	  rc == SMTP_RC_CLOSE: send the output, then close
 */
#ifndef SLUICE_SMTP_ENGINE_H
#define SLUICE_SMTP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

/* Longest command line, CRLF included (RFC 5321 4.5.3.1.4). */
#define SMTP_LINE_MAX 512

/* Settings shared by every session of one listener; read-only. */
struct smtp_engine_cfg {
	const char *hostname;	   /* our name in the greeting and EHLO reply */
	uint64_t max_message_size; /* SIZE limit in octets; 552 5.3.4 beyond */
	unsigned max_recipients;   /* per transaction; 452 4.5.3 beyond */
	unsigned max_errors;	   /* client errors before 421 and close */
	bool lenient_bare_lf;	   /* normalise bare LF/CR in the data to CRLF instead of 550 5.6.0 */
	bool submission;	   /* role submission (RFC 6409) rather than mta */
};

/* What smtp_engine_feed() and smtp_engine_resume() return. */
enum smtp_rc {
	SMTP_RC_OK = 0,	   /* input consumed; output may be pending; feed more */
	SMTP_RC_EVENT = 1, /* paused: an event needs a decision (smtp_engine_resume) */
	SMTP_RC_CLOSE = 2, /* send the pending output, then close the connection */
};

/* The decision the engine is waiting for. */
enum smtp_event_type {
	SMTP_EV_NONE = 0,
	SMTP_EV_MAIL,	 /* MAIL FROM parsed: accept the sender? (spool space, policy) */
	SMTP_EV_RCPT,	 /* RCPT TO parsed: route it (250, 550 5.1.1, 554 5.7.1, ...) */
	SMTP_EV_MESSAGE, /* end of data: store tx, reply once durable (250 or 451) */
};

/* The pending event; valid until smtp_engine_resume(). */
struct smtp_event {
	enum smtp_event_type type;
	const char *addr;	      /* MAIL/RCPT: the mailbox without <> ("" = null sender) */
	const char *domain;	      /* MAIL/RCPT: the part after the last '@', or "" */
	const char *orcpt;	      /* RCPT: ORCPT= or NULL */
	uint8_t notify;		      /* RCPT: ENVELOPE_NOTIFY_* bits */
	const struct envelope *env;   /* MESSAGE: the envelope (helo/client/protocol filled) */
	const uint8_t *body;	      /* MESSAGE: the message, dot-unstuffed, CRLF lines */
	size_t body_len;	      /* MESSAGE: its length */
};

struct smtp_engine;

/*
 * Create a session for a client at client_addr (text form, copied).  Queues
 * nothing yet.  Returns NULL when out of memory.  cfg must outlive it.
 */
struct smtp_engine *smtp_engine_new(const struct smtp_engine_cfg *cfg, const char *client_addr);

/* Free the session, its transaction and buffers.  NULL is fine. */
void smtp_engine_free(struct smtp_engine *e);

/* Queue the 220 greeting. */
void smtp_engine_start(struct smtp_engine *e);

/*
 * Refuse the session instead of greeting it: queue "code text" (for example
 * 421, "4.7.0 Too many connections from your address") and return
 * SMTP_RC_CLOSE.
 */
enum smtp_rc smtp_engine_refuse(struct smtp_engine *e, int code, const char *text);

/*
 * Consume input.  Returns how many bytes of buf were consumed and sets *rc.
 * With SMTP_RC_OK everything was consumed.  With SMTP_RC_EVENT the engine
 * consumed up to and including the line (or BDAT chunk) that raised the
 * event; keep the rest and feed it after smtp_engine_resume().  While paused
 * or closed it consumes nothing.
 */
size_t smtp_engine_feed(struct smtp_engine *e, const uint8_t *buf, size_t len, enum smtp_rc *rc);

/* The pending event, or NULL when not paused. */
const struct smtp_event *smtp_engine_event(const struct smtp_engine *e);

/*
 * Answer the pending event with a reply: code (250, 451, 550, ...) and text
 * starting with the enhanced status code ("2.1.5 Ok").  For SMTP_EV_RCPT a
 * 2xx adds the recipient to the transaction; for SMTP_EV_MAIL a 2xx starts
 * it; for SMTP_EV_MESSAGE any reply ends the transaction and frees the body.
 * 4xx/5xx count as client errors only when the caller says so (policy
 * refusals do; our own 451 does not): pass count_error.
 * Returns SMTP_RC_OK, or SMTP_RC_CLOSE when the error limit was reached.
 */
enum smtp_rc smtp_engine_resume(struct smtp_engine *e, int code, const char *text,
				bool count_error);

/* Pending output bytes (replies); *len is 0 when there are none. */
const uint8_t *smtp_engine_output(const struct smtp_engine *e, size_t *len);

/* The caller has sent n bytes of the output. */
void smtp_engine_output_consumed(struct smtp_engine *e, size_t n);

/* Which RFC 5321 4.5.3.2 timeout applies now. */
enum smtp_timeout {
	SMTP_TIMEOUT_COMMAND = 0, /* waiting for a command (5 minutes) */
	SMTP_TIMEOUT_DATA_BLOCK,  /* inside DATA or a BDAT chunk (3 minutes) */
	SMTP_TIMEOUT_NONE,	  /* paused on an event: the server's turn, no client timeout */
};
enum smtp_timeout smtp_engine_timeout_kind(const struct smtp_engine *e);

/* The client timed out: queue 421 4.4.2 and return SMTP_RC_CLOSE. */
enum smtp_rc smtp_engine_timeout(struct smtp_engine *e);

/* The server is shutting down: queue 421 4.3.2 and return SMTP_RC_CLOSE.
 * Call only when not paused on SMTP_EV_MESSAGE (that one gets its reply). */
enum smtp_rc smtp_engine_shutdown(struct smtp_engine *e);

/* True between MAIL and the end of the transaction. */
bool smtp_engine_in_transaction(const struct smtp_engine *e);

/* Bytes this session holds on the heap now (struct + buffers); for the
 * memory-per-connection figure. */
size_t smtp_engine_memory(const struct smtp_engine *e);

#endif
