/*
 * maildir: write message copies into Maildir folders, durably, in batches.
 *
 * For each job: create ROOT/DOMAIN/USER/{tmp,new,cur} on first use (mode
 * 0700), write the copy to tmp/<unique>, and once every file of the batch
 * is written make them durable with one sync, rename (with a tag: link, see
 * below) each to new/<unique>, and fsync every new/ directory touched (once
 * per directory per batch).
 * Unique names follow the Maildir convention:
 *	<secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>
 * DOMAIN and USER are made safe for a path: lowercased, and every byte that
 * is not a letter, digit or one of "!#$%&'*+-=?^_`{|}~." is written %XX, as
 * is a leading '.'; so "../x" can never leave ROOT.
 *
 * Exactly once across a crash (optional, per job): with a tag, the copy is
 * written to tmp/<tag>.<host> and hard-linked (not renamed) into
 * new/<unique>, the way qmail delivers.  The caller journals the delivery
 * durably, then calls maildir_release_batch() to drop the tmp/ links.  If
 * the process dies in between, the retry finds tmp/<tag>.<host> with a link
 * count above 1 (new/ or, once a reader moved it, cur/ still holds it),
 * writes no second copy and reports the job delivered with found set.
 *
 * Thread context: any thread; no shared state besides the name counter
 * (atomic).
 */
#ifndef SLUICE_MAILDIR_H
#define SLUICE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct maildir_job {
	const char *root;	 /* Maildir root of the route */
	const char *domain;	 /* recipient domain (made safe here) */
	const char *user;	 /* recipient local part (made safe here) */
	const struct iovec *iov; /* the copy: Received: header, then the message */
	int iovcnt;
	int result;		 /* out: 0, or -errno (what failed is logged) */
	const char *tag;	 /* optional: stable id of this copy, [A-Za-z0-9._-],
				  * unique per message and recipient; NULL = none */
	bool found;		 /* out (tag only): an earlier attempt's copy was
				  * found, none written now */
};

/*
 * Deliver n jobs; sets each job's result.  Returns the number delivered.
 * A job that fails leaves no file in new/ (its tmp/ file is removed).
 */
size_t maildir_deliver_batch(struct maildir_job *jobs, size_t n, const char *hostname);

/*
 * For jobs with a tag and result 0: remove the tmp/ link kept for crash
 * recovery.  Call once the delivery is durably recorded elsewhere.  Errors
 * are logged (a left-over link costs only space until a Maildir reader's
 * tmp/ clean-up).  hostname as given to maildir_deliver_batch().
 */
void maildir_release_batch(const struct maildir_job *jobs, size_t n, const char *hostname);

/* Write the safe form of a domain or local part into out (outlen bytes,
 * NUL-terminated).  Returns 0 or -ENAMETOOLONG. */
int maildir_safe_name(const char *in, char *out, size_t outlen);

#endif
