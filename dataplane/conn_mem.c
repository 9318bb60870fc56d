/* conn_mem: the global budget for message bodies buffered in memory. */
/*
 * XXX: until bodies stream into the spool, each session holds its whole
 * message in memory (up to max_message_size).  This file bounds the sum:
 *
 * - dp->mem_used counts, over all sessions of all workers, the bytes each
 *   engine holds beyond its idle size (smtp_engine_memory() - mem_base),
 *   plus the reservation of feeds under way.  It is exact after every
 *   dp_mem_sync() and drops to 0 when every session is gone.
 * - Outside a transaction a session is always fed: it holds (almost)
 *   nothing and its growth is a few reply bytes.
 * - Inside one, a feed of n bytes first reserves its worst growth: the
 *   body buffer doubles, so it may grow by the session's whole share plus
 *   2n (and a little for replies and the envelope).  When that does not fit
 *   in the budget the session is parked: not read, not fed, its timeout
 *   still running.  So sessions below the budget never push mem_used past
 *   it, even with every worker reserving at once.
 * - Parked sessions all hold memory, and only finishing a message frees it,
 *   so parking all of them would wait for the timeouts.  One session at a
 *   time, process-wide, holds the pass: it is fed past the budget until its
 *   transaction ends (the reply to its message frees the body) or it
 *   closes.  The peak is therefore the budget plus about one message.
 */
#include <stdio.h>

#include "common/log.h"
#include "dataplane/dataplane_pvt.h"

/* Reservation beyond body growth: replies and envelope strings that one
 * feed inside a transaction may add (one RCPT line's worth, roughly). */
#define DP_MEM_SLACK (8 * 1024)

static void mem_peak_update(struct dataplane *dp, uint64_t v)
{
	uint64_t p = atomic_load_explicit(&dp->mem_peak, memory_order_relaxed);

	while (v > p && !atomic_compare_exchange_weak_explicit(
			    &dp->mem_peak, &p, v, memory_order_relaxed, memory_order_relaxed))
		;
}

static uint64_t mem_resume_mark(const struct dataplane *dp)
{
	return dp->mem_budget / 100 * DP_MEM_RESUME_PCT;
}

static void mem_pass_give_back(struct dataplane *dp, struct dp_conn *c)
{
	struct dp_conn *want = c;

	/* A load first: this runs on every feed, the line is shared. */
	if (atomic_load_explicit(&dp->mem_pass, memory_order_relaxed) == c)
		atomic_compare_exchange_strong(&dp->mem_pass, &want, NULL);
}

bool dp_mem_admit(struct dp_worker *w, struct dp_conn *c, size_t n)
{
	struct dataplane *dp = w->dp;
	uint64_t want, cur;
	struct dp_conn *none = NULL;

	if (!dp->mem_budget || !smtp_engine_in_transaction(c->eng))
		return true;
	if (atomic_load(&dp->mem_pass) == c)
		return true;
	SLUICE_ASSERT(c->mem_resv == 0);
	want = (uint64_t)c->mem_share + 2 * (uint64_t)n + DP_MEM_SLACK;
	cur = atomic_load(&dp->mem_used);
	while (cur + want <= dp->mem_budget) {
		if (atomic_compare_exchange_weak(&dp->mem_used, &cur, cur + want)) {
			c->mem_resv = (size_t)want;
			mem_peak_update(dp, cur + want);
			return true;
		}
	}
	/* No room: take the pass if nobody has it, so that some session
	 * always finishes its message and frees its share. */
	return atomic_compare_exchange_strong(&dp->mem_pass, &none, c);
}

void dp_mem_sync(struct dp_worker *w, struct dp_conn *c)
{
	struct dataplane *dp = w->dp;
	size_t now = smtp_engine_memory(c->eng);
	size_t share = now > c->mem_base ? now - c->mem_base : 0;
	size_t held = c->mem_share + c->mem_resv;
	uint64_t v;

	c->mem_share = share;
	c->mem_resv = 0;
	if (share > held) {
		v = atomic_fetch_add(&dp->mem_used, share - held) + (share - held);
		mem_peak_update(dp, v);
	} else if (share < held) {
		v = atomic_fetch_sub(&dp->mem_used, held - share) - (held - share);
		if (v < mem_resume_mark(dp) && atomic_load(&dp->mem_over)) {
			bool over = true;

			if (atomic_compare_exchange_strong(&dp->mem_over, &over, false) &&
			    atomic_exchange(&dp->mem_logged, false))
				log_info("memory budget cleared: max_body_memory=%llu used=%llu; "
					 "resuming reads",
					 (unsigned long long)dp->mem_budget, (unsigned long long)v);
		}
	}
	if (!smtp_engine_in_transaction(c->eng))
		mem_pass_give_back(dp, c);
}

void dp_mem_close(struct dp_worker *w, struct dp_conn *c)
{
	mem_pass_give_back(w->dp, c);
}

void dp_mem_release(struct dp_worker *w, struct dp_conn *c)
{
	size_t held = c->mem_share + c->mem_resv;

	mem_pass_give_back(w->dp, c);
	if (held)
		atomic_fetch_sub(&w->dp->mem_used, held);
	c->mem_share = c->mem_resv = 0;
}

void dp_mem_park(struct dp_worker *w, struct dp_conn *c)
{
	struct dataplane *dp = w->dp;
	bool over = false;
	uint64_t last;

	if (dp_list_linked(&c->ready))
		dp_list_del(&c->ready);
	c->flags |= DP_CONN_F_MEMWAIT;
	dp_list_add_tail(&w->memwait, &c->ready);
	atomic_fetch_add_explicit(&dp->mem_parks, 1, memory_order_relaxed);
	if (!atomic_compare_exchange_strong(&dp->mem_over, &over, true))
		return;
	/* A budget hovering at the mark must not flood the log. */
	last = atomic_load(&dp->mem_log_ms);
	if (last && w->now < last + DP_MEM_LOG_MS)
		return;
	if (!atomic_compare_exchange_strong(&dp->mem_log_ms, &last, w->now ? w->now : 1))
		return;
	atomic_store(&dp->mem_logged, true);
	log_warn("memory budget reached: max_body_memory=%llu used=%llu worker=%u; pausing reads "
		 "(raise max_body_memory or lower max_message_size or max_connections)",
		 (unsigned long long)dp->mem_budget, (unsigned long long)atomic_load(&dp->mem_used),
		 w->id);
}

void dp_mem_run_parked(struct dp_worker *w)
{
	struct dataplane *dp = w->dp;
	struct dp_list batch;

	if (dp_list_empty(&w->memwait))
		return;
	if (atomic_load(&dp->mem_used) >= mem_resume_mark(dp) && atomic_load(&dp->mem_pass))
		return;
	/* Take the list: a session that parks again waits for a later turn. */
	batch = w->memwait;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	dp_list_init(&w->memwait);
	while (!dp_list_empty(&batch)) {
		struct dp_conn *c = dp_container_of(batch.next, struct dp_conn, ready);

		dp_list_del(&c->ready);
		c->flags &= ~DP_CONN_F_MEMWAIT;
		dp_conn_run(w, c);
	}
}
