/*
 * dataplane: the receiving side of sluiced: N worker threads, each pinned to
 * a core, each with its own SO_REUSEPORT listener per configured listen
 * address and its own epoll loop, sharing nothing on the hot path.
 *
 * Owns: listeners, connections, SMTP sessions (smtp_engine), each worker's
 * spool writer, connection limits (total and per client address), command
 * timeouts (RFC 5321 4.5.3.2), back-pressure (a session paused on a decision
 * or with unsent replies is not read from), and the release of 250 replies
 * when the committer says their records are durable.
 *
 * RCPT policy per recipient, from the current route table (RCU, read
 * lock-free; workers are urcu-qsbr readers, offline while in epoll_wait):
 *	ROUTE_LOCAL, user known or catch-all	-> 250 2.1.5
 *	ROUTE_LOCAL, unknown user		-> 550 5.1.1
 *	ROUTE_RELAY / ROUTE_RELAY_VIA		-> 250 2.1.5 (queued for relay)
 *	ROUTE_REJECT				-> 550 5.7.1
 *	no route, client in relay_networks	-> 250 2.1.5 (relay)
 *	no route otherwise			-> 554 5.7.1 relay access denied
 * MAIL when the spool is under its free-space floor -> 452 4.3.1.
 *
 * Thread context: dataplane_start/stop from the main thread.
 */
#ifndef SLUICE_DATAPLANE_H
#define SLUICE_DATAPLANE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "queue/spool.h"

/* Called on a worker thread once a message's 250 went out (its record is
 * durable): hand it to delivery.  Must not block. */
typedef void dataplane_submit_fn(void *arg, const struct spool_ref *ref, uint32_t nrcpts);

struct dataplane_params {
	const struct config *cfg;    /* must outlive the dataplane */
	struct spool *spool;	     /* committer already started */
	dataplane_submit_fn *submit;
	void *submit_arg;
};

struct dataplane;

/* Bind every listener on every worker and start the workers.  Returns NULL
 * with err set ("127.0.0.1:2525: Address already in use") on failure. */
struct dataplane *dataplane_start(const struct dataplane_params *p, char *err, size_t errlen);

/*
 * Graceful stop: close listeners, answer idle sessions 421 4.3.2, let
 * sessions waiting for a commit get their reply, wait (bounded by a few
 * seconds) for the rest, close writers, join the workers and free.
 */
void dataplane_stop(struct dataplane *dp);

/* Counters summed over workers (approximate while running). */
struct dataplane_stats {
	uint64_t connections;	/* accepted since start */
	uint64_t refused;	/* connections refused by limits */
	uint64_t messages;	/* messages acknowledged with 250 */
	uint64_t open;		/* connections open now */
};
void dataplane_get_stats(struct dataplane *dp, struct dataplane_stats *out);

/* The port listener i (index in cfg->listeners) is bound to: its configured
 * port, or when that is 0 the port the kernel chose for the first worker,
 * which every other worker then shares (SO_REUSEPORT).  0 for a bad index.
 * Any thread while the dataplane runs (tests, logs). */
uint16_t dataplane_listen_port(const struct dataplane *dp, unsigned listener);

#endif
