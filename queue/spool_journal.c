/* spool_journal: recipient outcomes per segment, their sync, and reclamation. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "queue/spool_pvt.h"

/* Open the journal of seg; caller holds seg->jlock. */
static int journal_open_locked(struct spool *sp, struct spool_seg *seg)
{
	char name[64];
	spool_seg_name(name, sizeof(name), seg->id, "jnl");
	int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	bool created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = openat(sp->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		int e = -errno;
		log_err("spool: cannot open journal path=%s/%s: %s", sp->dir, name, strerror(-e));
		return e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	seg->jfd = fd;
	seg->jsize = (uint64_t)st.st_size;
	seg->jcreated |= created;
	return 0;
}

/* Append one entry; final says whether it ends the recipient's life. */
static int journal_append(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt,
			  enum spool_rcpt_state state, bool final)
{
	uint8_t e[SPOOL_JNL_ENTRY];
	int rc = 0;

	spool_jnl_entry_build(e, ref->offset, rcpt, (uint8_t)state);
	/* The read lock keeps the segment from being reclaimed under us. */
	pthread_rwlock_rdlock(&sp->seg_lock);
	struct spool_seg *seg = spool_seg_find_locked(sp, ref->seg);
	if (!seg) {
		pthread_rwlock_unlock(&sp->seg_lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&seg->jlock);
	if (seg->jfd < 0 && (rc = journal_open_locked(sp, seg)) < 0)
		goto out;
	ssize_t n;
	do
		n = write(seg->jfd, e, sizeof(e));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(e)) {
		rc = n < 0 ? -errno : -ENOSPC;
		/* A partial entry would misalign every later one: cut it. */
		if (n > 0 && ftruncate(seg->jfd, (off_t)seg->jsize) != 0)
			log_err("spool: cannot undo a partial journal entry seg=%08" PRIX32 ": %s",
				seg->id, strerror(errno));
		log_err("spool: journal write failed seg=%08" PRIX32 " path=%s: %s", seg->id,
			sp->dir, strerror(-rc));
		goto out;
	}
	seg->jsize += sizeof(e);
	seg->jcount++;
	seg->jfinal += final;
out:
	pthread_mutex_unlock(&seg->jlock);
	pthread_rwlock_unlock(&sp->seg_lock);
	return rc;
}

int spool_journal_final(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt,
			enum spool_rcpt_state state)
{
	if (state != SPOOL_RCPT_DELIVERED && state != SPOOL_RCPT_FAILED)
		return -EINVAL;
	return journal_append(sp, ref, rcpt, state, true);
}

int spool_journal_delay_noticed(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt)
{
	return journal_append(sp, ref, rcpt, SPOOL_RCPT_DELAY_NOTICED, false);
}

struct jsync_item {
	struct spool_seg *seg;
	int fd;
	uint32_t count; /* final entries: recipients that stop being live */
	bool created;
};

int spool_journal_sync(struct spool *sp)
{
	struct jsync_item *items = NULL;
	size_t n = 0;
	int rc = 0;

	/* One at a time: a second caller must not return before the first
	 * one's fdatasync covered its entries.  Also keeps segments alive:
	 * only code under jsync_lock frees them. */
	pthread_mutex_lock(&sp->jsync_lock);
	pthread_rwlock_rdlock(&sp->seg_lock);
	if (sp->nsegs && !(items = calloc(sp->nsegs, sizeof(*items)))) {
		pthread_rwlock_unlock(&sp->seg_lock);
		pthread_mutex_unlock(&sp->jsync_lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sp->nsegs; i++) {
		struct spool_seg *seg = sp->segs[i];
		pthread_mutex_lock(&seg->jlock);
		if (seg->jcount || seg->jcreated) {
			items[n++] = (struct jsync_item){seg, seg->jfd, seg->jfinal, seg->jcreated};
			seg->jcount = 0;
			seg->jfinal = 0;
			seg->jcreated = false;
		}
		pthread_mutex_unlock(&seg->jlock);
	}
	pthread_rwlock_unlock(&sp->seg_lock);

	bool created = false;
	for (size_t i = 0; i < n; i++) {
		created |= items[i].created;
		if (fdatasync(items[i].fd) != 0) {
			rc = -errno;
			log_err("spool: journal fdatasync failed seg=%08" PRIX32 " path=%s: %s",
				items[i].seg->id, sp->dir, strerror(-rc));
			/* Not applied: the segment stays until a restart,
			 * whose recovery delivers again what may be lost. */
			items[i].count = 0;
		}
	}
	if (created) {
		int e = spool_dir_sync(sp);
		if (e < 0) {
			rc = e;
			for (size_t i = 0; i < n; i++)
				if (items[i].created)
					items[i].count = 0;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!items[i].count)
			continue;
		int64_t left =
		    atomic_fetch_sub(&items[i].seg->live, items[i].count) - items[i].count;
		if (left < 0)
			log_err("spool: seg=%08" PRIX32 " live=%" PRId64
				": a recipient was made final twice",
				items[i].seg->id, left);
	}
	free(items);
	int e = spool_reclaim_locked(sp);
	pthread_mutex_unlock(&sp->jsync_lock);
	return rc < 0 ? rc : e;
}

static int unlink_ok(struct spool *sp, uint32_t id, const char *ext)
{
	char name[64];
	spool_seg_name(name, sizeof(name), id, ext);
	if (unlinkat(sp->dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	int e = -errno;
	log_err("spool: cannot delete path=%s/%s: %s", sp->dir, name, strerror(-e));
	return e;
}

int spool_reclaim_locked(struct spool *sp)
{
	struct spool_seg **dead = NULL;
	size_t n = 0;
	int rc = 0;

	pthread_rwlock_rdlock(&sp->seg_lock);
	for (size_t i = 0; i < sp->nsegs; i++) {
		struct spool_seg *seg = sp->segs[i];
		if (!atomic_load_explicit(&seg->sealed, memory_order_acquire) ||
		    atomic_load(&seg->live) > 0)
			continue;
		if (!dead && !(dead = calloc(sp->nsegs, sizeof(*dead)))) {
			rc = -ENOMEM;
			break;
		}
		dead[n++] = seg;
	}
	pthread_rwlock_unlock(&sp->seg_lock);
	if (!n) {
		free(dead);
		return rc;
	}
	/* Data first: after a crash in between, a .jnl without its .dat is
	 * an orphan that recovery deletes, while a .dat without its journal
	 * would be delivered again. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (unlink_ok(sp, dead[i]->id, "dat") < 0 ||
		    unlink_ok(sp, dead[i]->id, "jnl") < 0) {
			rc = -EIO;
			continue;
		}
		dead[k++] = dead[i];
	}
	if (k) {
		int e = spool_dir_sync(sp);
		if (e < 0)
			rc = e;
	}
	pthread_rwlock_wrlock(&sp->seg_lock);
	for (size_t i = 0; i < k; i++) {
		struct spool_seg *seg = dead[i];
		size_t j = 0;
		while (j < sp->nsegs && sp->segs[j] != seg)
			j++;
		SLUICE_ASSERT(j < sp->nsegs);
		memmove(&sp->segs[j], &sp->segs[j + 1], (sp->nsegs - j - 1) * sizeof(sp->segs[0]));
		sp->nsegs--;
	}
	pthread_rwlock_unlock(&sp->seg_lock);
	for (size_t i = 0; i < k; i++) {
		atomic_fetch_sub(&sp->bytes, atomic_load(&dead[i]->bytes));
		spool_seg_free(dead[i]);
		atomic_fetch_sub(&sp->st_segments, 1);
		atomic_fetch_add(&sp->st_reclaimed, 1);
	}
	free(dead);
	return rc;
}
