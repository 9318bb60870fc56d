/*
 * envelope: the SMTP envelope of one message, as the engine collects it and
 * the spool stores it.
 *
 * Owned by: whoever built it.  The SMTP engine fills one per transaction
 * (dataplane), the spool serialises it into a record and parses it back
 * (queue), delivery reads it (control).  Plain data, no locking.
 *
 * RFCs: 5321 (reverse-path, forward-path), 3461 (DSN: RET, ENVID, NOTIFY,
 * ORCPT), 6152 (8BITMIME), 6531 (SMTPUTF8), 1870 (SIZE).
 *
 * Strings are NUL-terminated, heap-allocated (envelope_free releases them),
 * and never contain CR or LF: the engine refuses such input.
 */
#ifndef SLUICE_ENVELOPE_H
#define SLUICE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 3461 RET= on MAIL FROM. */
enum envelope_ret {
	ENVELOPE_RET_UNSET = 0, /* no RET parameter: the server chooses */
	ENVELOPE_RET_FULL = 1,	/* return the whole message in a notice */
	ENVELOPE_RET_HDRS = 2,	/* return only the headers */
};

/* BODY= on MAIL FROM (RFC 6152, RFC 1652). */
enum envelope_body {
	ENVELOPE_BODY_UNSET = 0,
	ENVELOPE_BODY_7BIT = 1,
	ENVELOPE_BODY_8BITMIME = 2,
};

/* RFC 3461 NOTIFY= bits on RCPT TO; 0 means no NOTIFY parameter given. */
#define ENVELOPE_NOTIFY_NEVER 0x01   /* NOTIFY=NEVER: no notice at all */
#define ENVELOPE_NOTIFY_SUCCESS 0x02 /* notice on delivery */
#define ENVELOPE_NOTIFY_FAILURE 0x04 /* notice on failure */
#define ENVELOPE_NOTIFY_DELAY 0x08   /* notice on delay */

/* One recipient (forward-path) with its DSN parameters. */
struct envelope_rcpt {
	char *addr;	/* mailbox "local@domain", without <>; never empty */
	char *orcpt;	/* ORCPT= as given ("rfc822;xtext"), or NULL */
	uint8_t notify; /* ENVELOPE_NOTIFY_* bits, 0 when not given */
};

/* The envelope of one message and where it came from. */
struct envelope {
	char *sender;		    /* reverse-path without <>; "" is the null sender */
	char *envid;		    /* ENVID= (xtext, still encoded), or NULL */
	uint8_t ret;		    /* enum envelope_ret */
	uint8_t body;		    /* enum envelope_body */
	bool smtputf8;		    /* SMTPUTF8 given on MAIL FROM */
	uint64_t size_hint;	    /* SIZE= given on MAIL FROM, 0 if none */
	struct envelope_rcpt *rcpts; /* accepted recipients, in RCPT order */
	uint32_t nrcpts;	    /* number of entries in rcpts */
	uint32_t rcpts_cap;	    /* allocated entries in rcpts */
	char *helo;		    /* HELO/EHLO argument as given, or NULL */
	char *client_addr;	    /* peer address as text ("192.0.2.1", "2001:db8::1") */
	const char *protocol;	    /* "SMTP", "ESMTP", "UTF8SMTP": static string */
	int64_t arrival;	    /* arrival, Unix time in seconds (set by the receiver) */
};

/*
 * Append one recipient, copying addr and orcpt.  Returns 0 or -ENOMEM.
 * Thread context: any, on an envelope the caller owns.
 */
int envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt, uint8_t notify);

/*
 * Release every string and the recipient array and zero the struct, so it
 * can be reused for the next transaction.  Safe on a zeroed envelope.
 */
void envelope_free(struct envelope *env);

/* Returns the static name for a protocol that the spool stores by number. */
const char *envelope_protocol_name(unsigned id);
/* Returns the number the spool stores for a protocol name, 0 if unknown. */
unsigned envelope_protocol_id(const char *name);

#endif
