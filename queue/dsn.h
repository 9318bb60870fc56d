/*
 * dsn: delivery status notifications, the notices a relay sends back to the
 * sender when a recipient failed, is delayed, or (NOTIFY=SUCCESS) was
 * delivered or relayed.
 *
 * Owns: who wants a notice (RFC 3461 section 4.1 NOTIFY rules, no notice to
 * the null sender), and the notice itself: a multipart/report message
 * (RFC 6522) with a human part, a message/delivery-status part (RFC 3464;
 * message/global-delivery-status when an address is UTF-8, RFC 6533) and the
 * original's content or headers as RET asks (RFC 3461 section 4.3), plus the
 * envelope the notice travels in (null sender, NOTIFY=NEVER).
 *
 * Used by the queue: it calls dsn_compose() when it decides a notice is due
 * and spools the result like any message.
 *
 * Thread context: none of its own; pure functions, safe from any thread.
 *
 * Security: diagnostics and remote host names come from remote servers.
 * They are cleaned of CR, LF and other control octets, and of 8-bit octets
 * unless the notice is UTF-8, so they cannot add header fields or parts; the
 * MIME boundary is checked against every part it encloses.  A notice goes to
 * the null sender's opposite only: an original with the null sender never
 * gets one (no mail loops, RFC 3461 section 6.1, RFC 5321 section 4.5.5).
 */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

/* What happened to one recipient (RFC 3464 section 2.3.3). */
enum dsn_action {
	DSN_ACTION_FAILED,    /* permanent failure: the message is returned */
	DSN_ACTION_DELAYED,   /* still queued past the delay warning time */
	DSN_ACTION_DELIVERED, /* delivered to the mailbox (NOTIFY=SUCCESS) */
	DSN_ACTION_RELAYED,   /* handed to a server that does not offer DSN */
};

/* "failed", "delayed", "delivered", "relayed"; "unknown" for other values. */
const char *dsn_action_str(enum dsn_action a);

/* Largest diagnostic text, in octets, copied into a notice (longer is cut). */
#define DSN_DIAGNOSTIC_MAX 2048

/* Returned content cap when dsn_report.max_return is 0. */
#define DSN_MAX_RETURN_DEFAULT (1024 * 1024)

/* One recipient to report on. */
struct dsn_rcpt {
	uint32_t rcpt;		  /* index into env->rcpts */
	enum dsn_action action;	  /* what happened */
	const char *status;	  /* RFC 3463 code "5.1.1"; class 2, 4 or 5 */
	const char *diagnostic;	  /* "smtp; 550 5.1.1 <x@y>: user unknown", or NULL */
	const char *remote_mta;	  /* "mx1.example.net" (written "dns; ..."), or NULL */
	int64_t last_attempt;	  /* Unix time; 0 = none */
	int64_t will_retry_until; /* delayed only: Unix time; 0 = omit */
};

/* Everything one notice reports. */
struct dsn_report {
	const char *reporting_mta;   /* our host name: letters, digits, '.', '-' */
	const char *qid;	     /* original's queue id ([A-Za-z0-9._-]), or NULL */
	const struct envelope *env;  /* the original envelope */
	const uint8_t *body;	     /* the original message, CRLF lines */
	size_t body_len;	     /* octets in body */
	const struct dsn_rcpt *rcpts; /* recipients reported on */
	unsigned nrcpts;	     /* all failed, or all delayed, or delivered/relayed */
	int64_t now;		     /* Unix time for Date: and the Message-ID */
	uint64_t unique;	     /* caller's unique number (Message-ID, boundary) */
	size_t max_return;	     /* return whole originals up to this size; 0 = default */
};

/*
 * Would the sender want a notice of this kind for recipient r?  False for the
 * null sender, for r out of range and for NOTIFY=NEVER; FAILED and DELAYED
 * when NOTIFY is absent (RFC 3461 section 4.1: the default is FAILURE,DELAY)
 * or includes the kind; DELIVERED and RELAYED only with NOTIFY=SUCCESS.
 * Thread context: any.
 */
bool dsn_wanted(const struct envelope *env, uint32_t r, enum dsn_action action);

/*
 * Compose the notice for rep.  On success returns 0 and fills *notice (which
 * the caller releases with envelope_free(); its previous content is not
 * freed): sender "" (null), one recipient env->sender with NOTIFY=NEVER,
 * protocol "ESMTP", arrival rep->now, body 8BITMIME when the notice holds
 * 8-bit octets (else 7BIT), smtputf8 when a UTF-8 address is involved or the
 * original was SMTPUTF8.  *msg gets the message (malloc'd, CRLF lines, every
 * header line at most 998 octets, not dot-stuffed; the caller frees it) and
 * *msg_len its length.
 *
 * Content returned (RFC 3461 section 4.3): a failure notice returns the
 * whole original unless RET=HDRS asked for its header section; delay and
 * success notices return the headers only, RET=FULL or not (a notice that
 * reports no failure SHOULD); an original over max_return octets is
 * returned as headers only, and the human part says so.
 *
 * Returns -EINVAL for a null-sender original, nrcpts == 0, a recipient index
 * out of range, mixed kinds, a malformed status, or a missing or malformed
 * reporting_mta or qid; -ENOMEM.  On error *notice is zeroed and *msg NULL.
 * Thread context: any.
 */
int dsn_compose(const struct dsn_report *rep, struct envelope *notice, uint8_t **msg,
		size_t *msg_len);

#endif
