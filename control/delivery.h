/*
 * delivery: the local delivery agent thread.  Takes messages whose 250 went
 * out (from the workers) or that recovery found pending, looks up each
 * pending recipient's route (RCU reader) and:
 *	ROUTE_LOCAL		-> Maildir (maildir.h), then journal DELIVERED
 *	ROUTE_LOCAL with lmtp	-> the remote agent, to the LMTP server
 *	ROUTE_RELAY[_VIA] or no route (relay client) -> the remote agent (MX
 *				   lookup, or the smart host), grouped per destination
 *	ROUTE_REJECT, or local user no longer known -> the remote agent fails
 *				   them, so the sender gets a notice (control/relay.h)
 * Without a remote agent (delivery_set_remote not called: unit tests)
 * remote recipients stay pending and failures are journalled directly.
 * A Received: header (RFC 5321 4.4) with the queue id is prepended to each
 * copy.  One log line per delivered/failed/held recipient, queue id first.
 * Journal entries are synced once per batch (spool_journal_sync), which also
 * reclaims finished segments.
 *
 * Thread context: delivery_submit() from any thread (wait-free queue);
 * everything else from the main thread.
 */
#ifndef SLUICE_DELIVERY_H
#define SLUICE_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "queue/spool.h"

struct delivery;
struct relay_submission;

/* Where remote recipients go: relay_submit() in sluiced. */
typedef int delivery_remote_fn(void *arg, const struct relay_submission *s);

/* hostname goes into Received: ("by HOSTNAME").  Returns NULL on ENOMEM. */
struct delivery *delivery_new(struct spool *sp, const char *hostname);

/* Hand remote, LMTP and failed recipients to fn(arg, ...).  Before
 * delivery_start. */
void delivery_set_remote(struct delivery *d, delivery_remote_fn *fn, void *arg);

/* Start the delivery thread.  Returns 0 or -errno. */
int delivery_start(struct delivery *d);

/* Queue a stored message; every recipient is pending.  Any thread, never
 * blocks.  Matches dataplane_submit_fn. */
void delivery_submit(void *d, const struct spool_ref *ref, uint32_t nrcpts);

/* Queue a recovered message; only recipients with pending[i] are tried;
 * noticed[i] (may be NULL) says a delay notice went out already.  Before
 * or after delivery_start; main thread.  Returns 0 or -ENOMEM. */
int delivery_submit_recovered(struct delivery *d, const struct spool_ref *ref,
			      const bool *pending, const bool *noticed, uint32_t nrcpts);

/* Deliver everything queued so far, sync the journal, stop and free. */
void delivery_stop(struct delivery *d);

struct delivery_stats {
	uint64_t delivered; /* recipient copies written to Maildir */
	uint64_t failed;    /* recipients failed permanently */
	uint64_t held;	    /* recipients handed to the remote agent (or, without one,
			       left pending) */
};
void delivery_get_stats(struct delivery *d, struct delivery_stats *out);

#endif
