/*
 * relay: the remote delivery agent thread ("sluice-relay").  Takes
 * recipients the delivery thread routed away from Maildir, grouped by
 * destination, and delivers them over SMTP (MX hosts found in DNS, or a
 * smart host) or LMTP (a mail store); retries what was deferred on the
 * queue's schedule (queue/retry.h); sends delay and failure notices
 * (queue/dsn.h), and journals every outcome in the spool.
 *
 * Owns: destinations (a domain's MX hosts, a smart host or an LMTP server,
 * each with its ready jobs, its connection count and its idle connections),
 * jobs (one stored message and the recipients it has for one destination:
 * the in-memory queue index, bodies stay on disk), the timer heap of
 * deferred jobs, outbound connections (non-blocking sockets driving the
 * sans-I/O control/smtp_client engine), the DNS resolver (dns/dns.h), and a
 * spool writer for notices.
 *
 * Limits: relay_max_connections in total, relay_dest_connections per
 * destination, relay_msgs_per_connection per connection; an idle connection
 * waits relay_idle_timeout for the next message to its destination (the
 * connection cache).  Hosts are tried in MX order and their addresses in
 * turn; a connection failure, a greeting other than 220, a failed EHLO or a
 * timeout falls over to the next address.
 *
 * Outcomes per recipient: 2xx -> DELIVERED (and, with NOTIFY=SUCCESS, a
 * "relayed" notice when the server does not offer DSN, a "delivered" one
 * after LMTP or Maildir; a server with DSN gets NOTIFY passed on); 5xx (or a DNS answer that rules
 * delivery out: NXDOMAIN, null MX) -> FAILED after its failure notice is
 * durably queued; 4xx -> deferred: tried again after retry_delay_ms(), a
 * delay notice once delay_warning has passed (journalled, so never twice),
 * a failure notice once max_lifetime has.  A notice is composed, appended
 * to the spool with the null sender, and only once it is durable is the
 * recipient's FAILED or DELAY_NOTICED journalled; a kill -9 in between
 * repeats that one notice, never loses it.  A null-sender message never
 * gets a notice.
 *
 * Thread context: relay_submit() from any thread (wait-free queue); the rest
 * from the main thread.  Shutdown order: relay_stop, then delivery_stop
 * (it may still submit), then relay_free.
 */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "queue/retry.h"
#include "queue/spool.h"

/* Where notices go once durable: delivery_submit() in sluiced. */
typedef void relay_notice_fn(void *arg, const struct spool_ref *ref, uint32_t nrcpts);

/* Where a job goes. */
enum relay_kind {
	RELAY_KIND_MX = 0, /* name is a mail domain: MX, then A/AAAA (RFC 5321 5.1) */
	RELAY_KIND_HOST,   /* name is a smart host (name or address literal) on port */
	RELAY_KIND_LMTP,   /* name is an LMTP server (name or address literal) on port */
	RELAY_KIND_FAIL,   /* no destination: fail the recipients now (notice) */
	RELAY_KIND_DELIVERED, /* delivered and journalled already (Maildir): only the
				 NOTIFY=SUCCESS notices are left to send */
};

struct relay_cfg {
	const char *hostname;	       /* EHLO name, Received:, notices */
	const char *dns_servers;       /* NULL = /etc/resolv.conf */
	unsigned dns_timeout_ms;
	bool ipv6;		       /* AAAA and IPv6 connections */
	uint16_t mx_port;	       /* port of MX hosts (25) */
	unsigned max_conns;	       /* outbound connections in total */
	unsigned dest_conns;	       /* per destination */
	unsigned msgs_per_conn;	       /* messages per connection */
	unsigned idle_timeout_s;       /* connection cache */
	unsigned connect_timeout_s;
	unsigned timeout_command_s;    /* greeting, EHLO, MAIL, RCPT, RSET, QUIT */
	unsigned timeout_data_init_s;
	unsigned timeout_data_block_s;
	unsigned timeout_data_end_s;
	struct retry_policy retry;
};

/* What the submitter hands over for one message and one destination. */
struct relay_submission {
	struct spool_ref ref;	  /* the stored message */
	int64_t arrival;	  /* its arrival (Unix seconds): lifetime, notices */
	enum relay_kind kind;
	const char *name;	  /* domain or host (copied); unused for FAIL */
	uint16_t port;		  /* HOST/LMTP (MX uses mx_port) */
	const uint32_t *rcpts;	  /* recipient indexes into the record */
	const bool *noticed;	  /* per entry of rcpts: delay notice already sent; NULL = none */
	uint32_t nrcpts;
	const char *fail_status;  /* FAIL: "5.1.1"; DELIVERED: "2.0.0" */
	const char *fail_text;	  /* FAIL: diagnostic ("unknown user"); DELIVERED: what happened */
};

struct relay;

/* A relay agent (no thread yet).  Durable notices go to notice(arg, ...)
 * for delivery (NULL: they wait in the spool for the next start).
 * Returns NULL with err set (DNS set-up, memory). */
struct relay *relay_new(struct spool *sp, relay_notice_fn *notice, void *notice_arg,
			const struct relay_cfg *cfg, char *err, size_t errlen);

/* Start the thread.  Returns 0 or -errno. */
int relay_start(struct relay *r);

/* Queue recipients of a stored message for one destination.  Any thread,
 * never blocks.  Returns 0, or -ENOMEM (they stay pending in the spool and
 * come back at the next start). */
int relay_submit(struct relay *r, const struct relay_submission *s);

/* Stop the thread: close connections (what is in flight stays pending),
 * journal the notices already durable (handing them to delivery, which
 * must still run) and sync the journal.  relay_submit stays safe (it only
 * queues) until relay_free. */
void relay_stop(struct relay *r);

/* Stop if still running, and free.  Deferred jobs stay pending in the
 * spool for the next start. */
void relay_free(struct relay *r);

struct relay_stats {
	uint64_t delivered;	/* recipients a server accepted */
	uint64_t deferred;	/* recipient attempts that ended in a temporary failure */
	uint64_t failed;	/* recipients failed for good */
	uint64_t notices;	/* notices queued (failure and delay) */
	uint64_t connections;	/* connections opened */
	uint64_t reused;	/* messages sent on a connection that had sent one before */
	uint64_t queued;	/* jobs in memory now (ready, in flight or deferred) */
	uint64_t queued_rcpts;	/* their recipients */
};
void relay_get_stats(struct relay *r, struct relay_stats *out);

#endif
