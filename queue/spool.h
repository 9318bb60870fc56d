/*
 * spool: the durable message store with group commit.
 *
 * Owns: the spool directory: append-only segment files (one open segment per
 * dataplane worker, "seg-<16 hex id>.dat"), one state journal per segment
 * ("seg-<id>.jnl", recipient outcomes), the committer thread, start-up
 * recovery and reclamation.
 *
 * Record format (little-endian), one per message, appended with one write:
 *	u32 magic "SLR1" | u32 total length | u32 CRC32C of everything after
 *	this field | envelope fields (length-prefixed) | body
 * A torn or corrupt tail record is ignored at recovery (its client never
 * got a 250: the 250 waits for fdatasync).
 *
 * Queue id: 16 upper-case hex digits, segment id (8) then record offset (8),
 * so a queue id locates its record.
 *
 * Durability contract: spool_append() returns the writer position (LSN)
 * just past the record.  The committer fdatasyncs dirty segments in batches
 * (commit_interval_us / commit_batch) and only then raises the writer's
 * durable LSN and calls its wake-up; the worker releases the 250 replies of
 * every record whose end LSN <= spool_writer_durable().  If a sync fails, the
 * writer's records past the durable LSN are failed (spool_writer_failed()),
 * they get 451 4.3.0, and the writer moves to a new segment.
 *
 * Journal: delivery calls spool_journal_final() per recipient and
 * spool_journal_sync() per batch; a segment whose every recipient is final
 * and that no writer appends to any more is deleted with its journal.
 *
 * Thread context: a spool_writer belongs to one worker thread; the
 * committer is its own thread; journal calls come from delivery threads
 * (internally locked per segment); spool_read() from any thread.
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

#define SPOOL_QID_LEN 16

struct spool_cfg {
	const char *dir;	     /* created if missing (with parents) */
	uint64_t segment_size;	     /* roll a segment after this many bytes */
	uint64_t min_free;	     /* free-space floor in bytes (statvfs f_bavail) */
	uint64_t max_size;	     /* bytes all segments may take; 0 = no limit */
	unsigned commit_interval_us; /* longest a record waits for its batch */
	unsigned commit_batch;	     /* sync at once when this many records wait */
};

/* Where a record lives. */
struct spool_ref {
	uint32_t seg;	 /* segment id */
	uint32_t offset; /* record offset in the segment */
	uint32_t len;	 /* record length */
};

/* Recipient states in the journal. */
enum spool_rcpt_state {
	SPOOL_RCPT_PENDING = 0,
	SPOOL_RCPT_DELIVERED = 1,
	SPOOL_RCPT_FAILED = 2,	 /* permanent failure (its notice, if due, is queued first) */
	SPOOL_RCPT_DELAY_NOTICED = 3, /* not final: the delay notice was queued */
};

struct spool;
struct spool_writer;

/* Called by the committer when a writer's durable or failed LSN moved.
 * Runs on the committer thread with the writer's internal lock held: it must
 * only wake the worker (eventfd).  Never called once spool_writer_close()
 * has returned, so the worker may free arg right after. */
typedef void spool_wake_fn(void *arg);

/* Called by spool_recover() for each message with pending recipients.
 * pending[i] is true for recipients still to deliver, noticed[i] for those
 * whose delay notice was already queued.  env, pending and noticed are
 * valid during the call only.  Return 0 to go on, <0 to stop. */
typedef int spool_recover_fn(void *arg, const struct spool_ref *ref, const char *qid,
			     const struct envelope *env, const bool *pending,
			     const bool *noticed);

/* Open (create) the spool directory; no threads yet.  NULL + err on failure. */
struct spool *spool_open(const struct spool_cfg *cfg, char *err, size_t errlen);

/*
 * Scan existing segments and journals, drop torn tails (log what was
 * dropped), delete segments whose recipients are all final, and call cb for
 * each message still pending.  Call once, after spool_open and before any
 * writer exists.  Returns 0 or -errno.
 */
int spool_recover(struct spool *sp, spool_recover_fn *cb, void *arg);

/* Start the committer thread.  Returns 0 or -errno. */
int spool_start(struct spool *sp);

/* Stop the committer after a final sync of everything appended; close all.
 * Writers must be closed first. */
void spool_close(struct spool *sp);

/* A writer for one worker; wake(arg) runs on the committer after a sync. */
struct spool_writer *spool_writer_new(struct spool *sp, unsigned worker, spool_wake_fn *wake,
				      void *arg);

/* Seal the writer's segment (it becomes reclaimable); its appended records
 * stay durable-pending until the committer syncs them.  Worker thread. */
void spool_writer_close(struct spool_writer *w);

/*
 * Append one message (env: sender, recipients, DSN fields, helo, client,
 * protocol, arrival; body: dot-unstuffed, CRLF).  On success fills ref, qid
 * (SPOOL_QID_LEN + 1 bytes) and *lsn (durable once spool_writer_durable()
 * reaches it) and returns 0.  Errors: -ENOSPC (under the free-space floor,
 * or the spool would pass max_size: 452 4.3.1), other -errno (write
 * failed: 451 4.3.0).  Worker thread.
 */
int spool_append(struct spool_writer *w, const struct envelope *env, const void *body,
		 size_t body_len, struct spool_ref *ref, char *qid, uint64_t *lsn);

/* Let w's appends pass max_size (not the free-space floor).  For the
 * relay's notices: a full spool of deferred mail drains only through the
 * failure notices that let it be reclaimed.  Before w's first append. */
void spool_writer_allow_over_max_size(struct spool_writer *w);

/* Highest LSN known durable.  Worker thread (acquire load). */
uint64_t spool_writer_durable(const struct spool_writer *w);

/* Highest LSN lost to a sync error (records in (durable, failed] must get
 * 451); 0 if none.  Worker thread. */
uint64_t spool_writer_failed(const struct spool_writer *w);

/* False when free space is under the floor (checked by the committer about
 * once a second, and on ENOSPC).  Any thread. */
bool spool_space_ok(const struct spool *sp);

/*
 * Read a record: fills env (caller frees with envelope_free) and *body (a
 * malloc'd buffer the caller frees) after checking the CRC.  Returns 0,
 * -EBADMSG on a corrupt record, or -errno.  Any thread.
 */
int spool_read(struct spool *sp, const struct spool_ref *ref, struct envelope *env,
	       uint8_t **body, size_t *body_len);

/* Format a queue id from a ref (qid has SPOOL_QID_LEN + 1 bytes). */
void spool_qid_format(const struct spool_ref *ref, char *qid);

/*
 * Journal a recipient's final state (DELIVERED or FAILED).  Not durable until
 * spool_journal_sync().  Returns 0 or -errno.  Delivery threads.
 */
int spool_journal_final(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt,
			enum spool_rcpt_state state);

/* Journal that recipient rcpt's delay notice was queued (not final).  Not
 * durable until spool_journal_sync().  Returns 0 or -errno. */
int spool_journal_delay_noticed(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt);

/*
 * Make every journal entry so far durable (one fdatasync per dirty journal),
 * then reclaim segments that became all-final.  Returns 0 or -errno.
 */
int spool_journal_sync(struct spool *sp);

/* Counters for logs and metrics. */
struct spool_stats {
	uint64_t appended;   /* records appended since start */
	uint64_t syncs;	     /* fdatasync calls by the committer */
	uint64_t segments;   /* segment files present */
	uint64_t reclaimed;  /* segments deleted */
	uint64_t bytes;	     /* bytes in segment files (what max_size limits) */
};
void spool_get_stats(const struct spool *sp, struct spool_stats *out);

#endif
