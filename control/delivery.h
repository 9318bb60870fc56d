/*
 * delivery: the local delivery agent thread.  Takes messages whose 250 went
 * out (from the workers) or that recovery found pending, looks up each
 * pending recipient's route (RCU reader) and:
 *	ROUTE_LOCAL		-> Maildir (maildir.h), then journal DELIVERED
 *	ROUTE_REJECT, or local user no longer known -> journal FAILED (notices:
 *				   the relay issue)
 *	ROUTE_RELAY[_VIA] or no route (relay client) -> held in the queue for
 *				   remote delivery (the relay issue); stays pending
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

/* hostname goes into Received: ("by HOSTNAME").  Returns NULL on ENOMEM. */
struct delivery *delivery_new(struct spool *sp, const char *hostname);

/* Start the delivery thread.  Returns 0 or -errno. */
int delivery_start(struct delivery *d);

/* Queue a stored message; every recipient is pending.  Any thread, never
 * blocks.  Matches dataplane_submit_fn. */
void delivery_submit(void *d, const struct spool_ref *ref, uint32_t nrcpts);

/* Queue a recovered message; only recipients with pending[i] are tried.
 * Before or after delivery_start; main thread.  Returns 0 or -ENOMEM. */
int delivery_submit_recovered(struct delivery *d, const struct spool_ref *ref,
			      const bool *pending, uint32_t nrcpts);

/* Deliver everything queued so far, sync the journal, stop and free. */
void delivery_stop(struct delivery *d);

struct delivery_stats {
	uint64_t delivered; /* recipient copies written to Maildir */
	uint64_t failed;    /* recipients failed permanently */
	uint64_t held;	    /* recipients waiting for remote delivery */
};
void delivery_get_stats(struct delivery *d, struct delivery_stats *out);

#endif
