/* spool_commit: the committer thread (group commit) and the free-space check. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "queue/spool_pvt.h"

static struct timespec ns_to_ts(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / 1000000000ull),
				 .tv_nsec = (long)(ns % 1000000000ull)};
}

void spool_space_check(struct spool *sp)
{
	struct statvfs st;
	if (fstatvfs(sp->dirfd, &st) != 0) {
		log_err("spool: statvfs failed path=%s: %s", sp->dir, strerror(errno));
		return;
	}
	uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
	bool ok = avail >= sp->cfg.min_free;
	bool was = atomic_exchange(&sp->space_ok, ok);
	if (was && !ok)
		log_warn("spool: free space under the floor path=%s avail=%" PRIu64
			 " min_free=%" PRIu64 ": new messages get 452 (knob: spool_min_free)",
			 sp->dir, avail, sp->cfg.min_free);
	else if (!was && ok)
		log_info("spool: free space back over the floor path=%s avail=%" PRIu64, sp->dir,
			 avail);
	/* Near max_size, segments sealed at the cap (spool_append) may be
	 * all delivered with no journal sync left to reclaim them. */
	if (sp->cfg.max_size &&
	    atomic_load_explicit(&sp->bytes, memory_order_relaxed) > sp->cfg.max_size / 10 * 9 &&
	    pthread_mutex_trylock(&sp->jsync_lock) == 0) {
		spool_reclaim_locked(sp);
		pthread_mutex_unlock(&sp->jsync_lock);
	}
}

void spool_commit_kick(struct spool *sp)
{
	unsigned n = atomic_fetch_add_explicit(&sp->pending, 1, memory_order_acq_rel) + 1;
	/* Wake the committer for the first record of a batch (it then
	 * gathers for commit_interval_us) and when the batch is full.  It
	 * re-checks pending under the lock before waiting, so no wake-up is
	 * lost. */
	if (n == 1 || n == sp->cfg.commit_batch) {
		pthread_mutex_lock(&sp->lock);
		pthread_cond_signal(&sp->cond);
		pthread_mutex_unlock(&sp->lock);
	}
}

static int sync_fd(struct spool *sp, int fd, uint32_t seg)
{
	atomic_fetch_add_explicit(&sp->st_syncs, 1, memory_order_relaxed);
	if (fdatasync(fd) == 0)
		return 0;
	int e = -errno;
	char name[64];
	spool_seg_name(name, sizeof(name), seg, "dat");
	log_err("spool: fdatasync failed path=%s/%s: %s: its unsynced messages get 451", sp->dir,
		name, strerror(-e));
	return e;
}

/* Take this batch's snapshot of w under its lock: LSN first, so every byte
 * it covers is in the current fd or a retired one (the worker changes
 * those only under the lock, before writing). */
static bool writer_snapshot(struct spool_writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->c_snap = atomic_load_explicit(&w->appended, memory_order_acquire);
	w->c_fd = w->fd;
	w->c_cur_start = w->cur_start;
	w->c_seg = w->seg ? w->seg->id : 0;
	w->c_need_dirsync = w->cur_need_dirsync;
	/* Copy, not steal: the worker reserved room in its array before
	 * creating a segment and relies on that room at retire time. */
	w->c_nretired = 0;
	if (w->nretired > w->c_retired_cap) {
		struct spool_retired *v = realloc(w->c_retired, w->nretired * sizeof(*v));
		if (v) {
			w->c_retired = v;
			w->c_retired_cap = w->nretired;
		}
	}
	if (w->nretired <= w->c_retired_cap) {
		if (w->nretired)
			memcpy(w->c_retired, w->retired, w->nretired * sizeof(*w->retired));
		w->c_nretired = w->nretired;
		w->nretired = 0;
	} else {
		/* No memory to take the retired fds: the LSN read above may
		 * cover bytes that only they hold, unsynced.  Publish nothing
		 * for this writer now and try again in the next batch. */
		w->c_snap = w->synced;
		atomic_fetch_add_explicit(&w->sp->pending, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&w->lock);
	bool need = w->c_need_dirsync && w->c_fd >= 0 && w->c_snap > w->c_cur_start;
	for (size_t i = 0; i < w->c_nretired; i++)
		need |= w->c_retired[i].need_dirsync;
	w->c_dir_needed = need;
	return need;
}

static void writer_publish_failed(struct spool_writer *w, uint64_t snap)
{
	/* The floor is where spool_writer_durable() stays until the worker
	 * has seen this failure; keep the older, lower floor if it has not
	 * seen the previous one yet. */
	uint64_t failed = atomic_load_explicit(&w->failed, memory_order_relaxed);
	if (atomic_load_explicit(&w->failed_seen, memory_order_relaxed) >= failed)
		atomic_store_explicit(&w->fail_floor,
				      atomic_load_explicit(&w->durable, memory_order_relaxed),
				      memory_order_relaxed);
	if (snap > failed)
		atomic_store_explicit(&w->failed, snap, memory_order_release);
	atomic_store_explicit(&w->need_roll, true, memory_order_release);
}

/* Sync what w appended up to its snapshot; publish durable or failed. */
static void writer_commit(struct spool *sp, struct spool_writer *w, int dir_rc)
{
	uint64_t snap = w->c_snap;
	bool dirty = snap > w->synced;
	int rc = 0;
	bool cur_bad = false;

	if (dirty && w->has_bad_seg) {
		/* Linux reports a writeback error once: a later fdatasync of the
		 * same file may succeed although the data is gone. */
		bool on_bad = w->c_fd >= 0 && w->c_seg == w->bad_seg;
		/* A retired bad segment only matters if bytes went there
		 * after the failure was published. */
		for (size_t i = 0; i < w->c_nretired; i++)
			on_bad |= w->c_retired[i].seg == w->bad_seg &&
				  w->c_retired[i].end_lsn > w->synced;
		if (on_bad)
			rc = -EIO;
	}
	/* One fdatasync per segment holding bytes past the last batch: the
	 * current one if records went there, each retired one if its last
	 * bytes were not covered yet. */
	bool cur_dirty = w->c_fd >= 0 && snap > w->synced && snap > w->c_cur_start;
	if (cur_dirty && sync_fd(sp, w->c_fd, w->c_seg) < 0) {
		rc = -EIO;
		cur_bad = true;
	}
	for (size_t i = 0; i < w->c_nretired; i++) {
		struct spool_retired *r = &w->c_retired[i];
		if (r->end_lsn > w->synced && sync_fd(sp, r->fd, r->seg) < 0)
			rc = -EIO;
		if (close(r->fd) != 0 && rc == 0)
			rc = -EIO; /* NFS-like close errors: treat as a sync failure */
		if (w->has_bad_seg && r->seg == w->bad_seg)
			w->has_bad_seg = false; /* closed: nothing more lands there */
	}
	w->c_nretired = 0;
	if (dirty && dir_rc < 0 && w->c_dir_needed)
		rc = dir_rc;
	if (!dirty)
		return;
	if (rc < 0) {
		if (cur_bad || (w->has_bad_seg && w->c_seg == w->bad_seg)) {
			w->has_bad_seg = w->c_fd >= 0;
			w->bad_seg = w->c_seg;
		}
		writer_publish_failed(w, snap);
		log_err("spool: sync failed worker=%u lsn=%" PRIu64 " durable=%" PRIu64
			": the writer moves to a new segment",
			w->worker, snap, atomic_load(&w->durable));
	} else {
		atomic_store_explicit(&w->durable, snap, memory_order_release);
	}
	w->synced = snap;
	/* Under the lock and re-checked: a worker may have closed its writer
	 * since the snapshot, and it frees the wake argument (closes its
	 * eventfd) as soon as spool_writer_close() returns. */
	pthread_mutex_lock(&w->lock);
	if (!w->closed && w->wake)
		w->wake(w->arg);
	pthread_mutex_unlock(&w->lock);
}

void spool_commit_batch(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	struct spool_writer *head = sp->writers;
	pthread_mutex_unlock(&sp->lock);

	/* New segment files need their directory entry durable before any of
	 * their records is acknowledged: one directory fsync per batch. */
	bool need_dir = false;
	for (struct spool_writer *w = head; w; w = w->next)
		need_dir |= writer_snapshot(w);
	int dir_rc = need_dir ? spool_dir_sync(sp) : 0;
	for (struct spool_writer *w = head; w; w = w->next) {
		if (need_dir && dir_rc == 0 && w->c_need_dirsync) {
			pthread_mutex_lock(&w->lock);
			if (w->fd == w->c_fd)
				w->cur_need_dirsync = false;
			pthread_mutex_unlock(&w->lock);
		}
		writer_commit(sp, w, dir_rc);
	}
}

static void *committer_main(void *arg)
{
	struct spool *sp = arg;
	uint64_t interval_ns = (uint64_t)sp->cfg.commit_interval_us * 1000;
	struct timespec ts;

	pthread_setname_np(pthread_self(), "spool-commit");
	pthread_mutex_lock(&sp->lock);
	for (;;) {
		while (!sp->stop && atomic_load(&sp->pending) == 0) {
			uint64_t now = spool_now_ns();
			if (now >= sp->next_space_check) {
				sp->next_space_check = now + SPOOL_SPACE_CHECK_NS;
				pthread_mutex_unlock(&sp->lock);
				spool_space_check(sp);
				pthread_mutex_lock(&sp->lock);
				continue;
			}
			ts = ns_to_ts(sp->next_space_check);
			pthread_cond_timedwait(&sp->cond, &sp->lock, &ts);
		}
		if (!sp->stop && interval_ns) {
			/* Gather: at most commit_interval_us after the first
			 * record, less once commit_batch records wait. */
			ts = ns_to_ts(spool_now_ns() + interval_ns);
			while (!sp->stop && atomic_load(&sp->pending) < sp->cfg.commit_batch)
				if (pthread_cond_timedwait(&sp->cond, &sp->lock, &ts) == ETIMEDOUT)
					break;
		}
		bool stop = sp->stop;
		atomic_exchange(&sp->pending, 0);
		pthread_mutex_unlock(&sp->lock);
		spool_commit_batch(sp);
		uint64_t now = spool_now_ns();
		pthread_mutex_lock(&sp->lock);
		if (stop)
			break;
		if (now >= sp->next_space_check) {
			sp->next_space_check = now + SPOOL_SPACE_CHECK_NS;
			pthread_mutex_unlock(&sp->lock);
			spool_space_check(sp);
			pthread_mutex_lock(&sp->lock);
		}
	}
	pthread_mutex_unlock(&sp->lock);
	return NULL;
}

int spool_commit_start(struct spool *sp)
{
	if (sp->started)
		return -EALREADY;
	sp->stop = false;
	int e = pthread_create(&sp->committer, NULL, committer_main, sp);
	if (e != 0)
		return -e;
	sp->started = true;
	return 0;
}

void spool_commit_stop(struct spool *sp)
{
	if (!sp->started)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->stop = true;
	pthread_cond_signal(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	pthread_join(sp->committer, NULL);
	sp->started = false;
}
