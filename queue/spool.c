/* spool: open/close, writers and the append path, reads, stats. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "queue/spool_pvt.h"

#define SPOOL_DEFAULT_SEGMENT (64ull << 20)

uint64_t spool_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void spool_seg_name(char *buf, size_t len, uint32_t id, const char *ext)
{
	snprintf(buf, len, "seg-%016" PRIX64 ".%s", (uint64_t)id, ext);
}

int spool_name_parse(const char *name, uint32_t *id, bool *is_jnl)
{
	/* Exactly "seg-" 16 upper-case hex ".dat" or ".jnl". */
	if (strlen(name) != 24 || memcmp(name, "seg-", 4) != 0 || name[20] != '.')
		return -EINVAL;
	if (strcmp(name + 21, "dat") == 0)
		*is_jnl = false;
	else if (strcmp(name + 21, "jnl") == 0)
		*is_jnl = true;
	else
		return -EINVAL;
	uint64_t v = 0;
	for (int i = 4; i < 20; i++) {
		char c = name[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	if (v == 0 || v > UINT32_MAX)
		return -ERANGE;
	*id = (uint32_t)v;
	return 0;
}

int spool_dir_sync(struct spool *sp)
{
	if (fsync(sp->dirfd) == 0)
		return 0;
	int e = -errno;
	log_err("spool: fsync of directory failed path=%s: %s", sp->dir, strerror(-e));
	return e;
}

struct spool_seg *spool_seg_new(uint32_t id, int64_t live, bool sealed)
{
	struct spool_seg *seg = calloc(1, sizeof(*seg));
	if (!seg)
		return NULL;
	seg->id = id;
	atomic_init(&seg->live, live);
	atomic_init(&seg->sealed, sealed);
	atomic_init(&seg->bytes, 0);
	pthread_mutex_init(&seg->jlock, NULL);
	seg->jfd = -1;
	return seg;
}

void spool_seg_free(struct spool_seg *seg)
{
	if (!seg)
		return;
	if (seg->jfd >= 0)
		close(seg->jfd);
	pthread_mutex_destroy(&seg->jlock);
	free(seg);
}

/* Binary search; returns the index of id or where it would go. */
static size_t seg_index_locked(const struct spool *sp, uint32_t id)
{
	size_t lo = 0, hi = sp->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sp->segs[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct spool_seg *spool_seg_find_locked(struct spool *sp, uint32_t id)
{
	size_t i = seg_index_locked(sp, id);
	return i < sp->nsegs && sp->segs[i]->id == id ? sp->segs[i] : NULL;
}

int spool_seg_insert(struct spool *sp, struct spool_seg *seg)
{
	int rc = 0;
	pthread_rwlock_wrlock(&sp->seg_lock);
	if (sp->nsegs == sp->segs_cap) {
		size_t cap = sp->segs_cap ? sp->segs_cap * 2 : 16;
		struct spool_seg **v = realloc(sp->segs, cap * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
		sp->segs = v;
		sp->segs_cap = cap;
	}
	/* Writers allocate ids with an atomic and insert afterwards, so two
	 * rolls may arrive out of order: keep the table sorted. */
	size_t i = seg_index_locked(sp, seg->id);
	memmove(&sp->segs[i + 1], &sp->segs[i], (sp->nsegs - i) * sizeof(sp->segs[0]));
	sp->segs[i] = seg;
	sp->nsegs++;
	atomic_fetch_add_explicit(&sp->st_segments, 1, memory_order_relaxed);
out:
	pthread_rwlock_unlock(&sp->seg_lock);
	return rc;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != 0)
			continue;
		char c = buf[i];
		buf[i] = 0;
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
	}
	return 0;
}

/* The id high-water mark: segment ids stay unique across restarts even
 * when every segment was reclaimed (queue ids in old logs never repeat). */
static uint32_t ids_load(struct spool *sp)
{
	char buf[32];
	int fd = openat(sp->dirfd, SPOOL_IDS_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* Exactly what spool_ids_reserve() writes: decimal digits, '\n'.
	 * Anything else (damage) is ignored rather than trusted: "-1" read
	 * by strtoull would exhaust the ids; the segment scan still keeps
	 * ids above every file present. */
	size_t digits = strspn(buf, "0123456789");
	unsigned long long v = digits && digits <= 10 ? strtoull(buf, NULL, 10) : UINT32_MAX;
	if (v >= UINT32_MAX || strcmp(buf + digits, "\n") != 0) {
		log_warn("spool: ignoring a damaged %s/%s", sp->dir, SPOOL_IDS_FILE);
		return 0;
	}
	return (uint32_t)v;
}

int spool_ids_reserve(struct spool *sp, uint32_t from)
{
	char buf[32];
	int rc = 0;

	pthread_mutex_lock(&sp->ids_lock);
	if (sp->id_limit && from < sp->id_limit)
		goto out; /* another roll extended it */
	uint64_t limit = (uint64_t)from + SPOOL_IDS_RESERVE;
	if (limit >= UINT32_MAX)
		limit = UINT32_MAX - 1;
	int len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", limit);
	int fd = openat(sp->dirfd, SPOOL_IDS_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	errno = 0;
	if (write(fd, buf, (size_t)len) != len || fsync(fd) != 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(sp->dirfd, SPOOL_IDS_FILE ".tmp", sp->dirfd, SPOOL_IDS_FILE) != 0)
		rc = -errno;
	if (rc == 0)
		rc = spool_dir_sync(sp);
	if (rc == 0)
		atomic_store(&sp->id_limit, (uint32_t)limit);
out:
	pthread_mutex_unlock(&sp->ids_lock);
	return rc;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

DIR *spool_dir_open(struct spool *sp, int *err)
{
	/* A dup, so closedir() leaves sp->dirfd open. */
	int fd = dup(sp->dirfd);
	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		*err = -errno;
		close(fd);
		return NULL;
	}
	rewinddir(d);
	return d;
}

/* Highest segment id present, so new ids keep increasing across restarts. */
static int scan_max_id(struct spool *sp, uint32_t *max)
{
	int err;
	DIR *d = spool_dir_open(sp, &err);
	if (!d)
		return err;
	struct dirent *de;
	*max = 0;
	while ((de = readdir(d)) != NULL) {
		uint32_t id;
		bool jnl;
		int rc = spool_name_parse(de->d_name, &id, &jnl);
		if (rc == -ERANGE) {
			closedir(d);
			return -ERANGE;
		}
		if (rc == 0 && id > *max)
			*max = id;
	}
	closedir(d);
	return 0;
}

struct spool *spool_open(const struct spool_cfg *cfg, char *err, size_t errlen)
{
	int rc;
	if (!cfg || !cfg->dir || !*cfg->dir) {
		errf(err, errlen, "spool: no directory configured");
		return NULL;
	}
	struct spool *sp = calloc(1, sizeof(*sp));
	if (!sp || !(sp->dir = strdup(cfg->dir))) {
		errf(err, errlen, "spool: out of memory");
		free(sp);
		return NULL;
	}
	sp->cfg = *cfg;
	sp->cfg.dir = sp->dir;
	if (sp->cfg.segment_size == 0)
		sp->cfg.segment_size = SPOOL_DEFAULT_SEGMENT;
	if (sp->cfg.segment_size > UINT32_MAX)
		sp->cfg.segment_size = UINT32_MAX; /* record offsets are 32-bit */
	if (sp->cfg.commit_batch == 0)
		sp->cfg.commit_batch = 1;
	sp->dirfd = -1;

	if ((rc = mkdir_p(sp->dir)) < 0) {
		errf(err, errlen, "cannot create spool directory %s: %s", sp->dir, strerror(-rc));
		goto fail;
	}
	sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		errf(err, errlen, "cannot open spool directory %s: %s", sp->dir, strerror(errno));
		goto fail;
	}
	/* Two processes appending to one spool would corrupt it. */
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
		errf(err, errlen, "spool directory %s is in use by another process (flock: %s)",
		     sp->dir, strerror(errno));
		goto fail;
	}
	uint32_t max = 0;
	if ((rc = scan_max_id(sp, &max)) < 0) {
		errf(err, errlen, "cannot scan spool directory %s: %s", sp->dir,
		     rc == -ERANGE ? "a segment file name has an id over 32 bits (not ours?)"
				   : strerror(-rc));
		goto fail;
	}
	if (max == UINT32_MAX) {
		errf(err, errlen, "spool directory %s: segment ids exhausted", sp->dir);
		goto fail;
	}
	uint32_t hwm = ids_load(sp);
	atomic_init(&sp->next_id, hwm > max + 1 ? hwm : max + 1);
	pthread_mutex_init(&sp->ids_lock, NULL);
	if ((rc = spool_ids_reserve(sp, atomic_load(&sp->next_id))) < 0) {
		errf(err, errlen, "cannot write %s/%s: %s", sp->dir, SPOOL_IDS_FILE, strerror(-rc));
		pthread_mutex_destroy(&sp->ids_lock);
		goto fail;
	}
	atomic_init(&sp->space_ok, true);
	pthread_rwlock_init(&sp->seg_lock, NULL);
	pthread_mutex_init(&sp->jsync_lock, NULL);
	pthread_mutex_init(&sp->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->cond, &ca);
	pthread_condattr_destroy(&ca);
	spool_space_check(sp);
	sp->next_space_check = spool_now_ns() + SPOOL_SPACE_CHECK_NS;
	return sp;
fail:
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	free(sp->dir);
	free(sp);
	return NULL;
}

int spool_start(struct spool *sp)
{
	return spool_commit_start(sp);
}

struct spool_writer *spool_writer_new(struct spool *sp, unsigned worker, spool_wake_fn *wake,
				      void *arg)
{
	struct spool_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->sp = sp;
	w->worker = worker;
	w->wake = wake;
	w->arg = arg;
	w->fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	/* The segment file is created by the first append: no empty files
	 * for idle workers. */
	pthread_mutex_lock(&sp->lock);
	w->next = sp->writers;
	sp->writers = w;
	pthread_mutex_unlock(&sp->lock);
	return w;
}

/* Hand the current segment to the committer (it syncs and closes the fd)
 * and seal it.  Worker thread; the caller reserved room in retired. */
static void writer_retire_locked(struct spool_writer *w)
{
	if (!w->seg)
		return;
	w->retired[w->nretired++] = (struct spool_retired){
	    .fd = w->fd,
	    .seg = w->seg->id,
	    .end_lsn = atomic_load_explicit(&w->appended, memory_order_relaxed),
	    .need_dirsync = w->cur_need_dirsync};
	atomic_store_explicit(&w->seg->sealed, true, memory_order_release);
	w->seg = NULL;
	w->fd = -1;
	w->cur_need_dirsync = false;
}

static int writer_reserve_retired(struct spool_writer *w)
{
	int rc = 0;
	pthread_mutex_lock(&w->lock);
	if (w->nretired == w->retired_cap) {
		size_t cap = w->retired_cap ? w->retired_cap * 2 : 4;
		struct spool_retired *v = realloc(w->retired, cap * sizeof(*v));
		if (!v)
			rc = -ENOMEM;
		else {
			w->retired = v;
			w->retired_cap = cap;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

/* Open a new segment for w, retiring the current one.  Worker thread. */
static int writer_roll(struct spool_writer *w)
{
	struct spool *sp = w->sp;
	char name[64];
	int rc;

	if ((rc = writer_reserve_retired(w)) < 0)
		return rc;
	uint32_t id = atomic_fetch_add_explicit(&sp->next_id, 1, memory_order_relaxed);
	if (id == 0 || id == UINT32_MAX) {
		log_err("spool: segment ids exhausted path=%s", sp->dir);
		return -EOVERFLOW;
	}
	if (id >= atomic_load(&sp->id_limit) && (rc = spool_ids_reserve(sp, id)) < 0)
		log_warn("spool: cannot extend the segment id mark path=%s/%s: %s: ids may "
			 "repeat after a restart",
			 sp->dir, SPOOL_IDS_FILE, strerror(-rc));
	spool_seg_name(name, sizeof(name), id, "dat");
	int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOSPC || rc == -EDQUOT)
			atomic_store(&sp->space_ok, false);
		log_err("spool: cannot create segment path=%s/%s: %s", sp->dir, name,
			strerror(-rc));
		return rc;
	}
	struct spool_seg *seg = spool_seg_new(id, 0, false);
	if (!seg || (rc = spool_seg_insert(sp, seg)) < 0) {
		spool_seg_free(seg);
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		return -ENOMEM;
	}
	pthread_mutex_lock(&w->lock);
	writer_retire_locked(w);
	w->seg = seg;
	w->fd = fd;
	w->cur_need_dirsync = true; /* the committer fsyncs the dir before acking */
	w->cur_start = atomic_load_explicit(&w->appended, memory_order_relaxed);
	pthread_mutex_unlock(&w->lock);
	w->off = 0;
	w->broken = false;
	return 0;
}

void spool_writer_close(struct spool_writer *w)
{
	if (!w || w->closed)
		return;
	if (writer_reserve_retired(w) < 0) {
		/* XXX: no memory to hand the fd over: the segment stays unsealed
		 * (not reclaimed) until restart; the data is still synced by
		 * spool_close's last batch through w->fd. */
		w->closed = true;
		return;
	}
	pthread_mutex_lock(&w->lock);
	writer_retire_locked(w);
	w->closed = true;
	pthread_mutex_unlock(&w->lock);
	spool_commit_kick(w->sp);
}

/* writev all of iov, across short writes.  0 or -errno. */
static int write_full(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		size_t left = (size_t)n;
		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

void spool_writer_allow_over_max_size(struct spool_writer *w)
{
	w->over_max_size = true;
}

int spool_append(struct spool_writer *w, const struct envelope *env, const void *body,
		 size_t body_len, struct spool_ref *ref, char *qid, uint64_t *lsn)
{
	struct spool *sp = w->sp;
	uint8_t stackbuf[SPOOL_HDR_STACK];
	uint8_t *hdr = stackbuf;
	size_t hdr_len;
	int rc;

	if (w->closed)
		return -EBADF;
	if (!atomic_load_explicit(&sp->space_ok, memory_order_relaxed))
		return -ENOSPC;
	if ((rc = spool_record_hdr_len(env, &hdr_len)) < 0)
		return rc;
	if (body_len > UINT32_MAX - hdr_len || (body_len && !body))
		return body_len && !body ? -EINVAL : -EFBIG;
	uint64_t total = hdr_len + body_len;
	/* max_size bounds the disk a backlog may take: refuse, never fill
	 * the disk (a racing append may pass it by one record). */
	if (sp->cfg.max_size && !w->over_max_size &&
	    atomic_load_explicit(&sp->bytes, memory_order_relaxed) + total > sp->cfg.max_size) {
		/* Seal the segment being written: a live segment is never
		 * reclaimed, so without this a cap below segment_size would
		 * stay full after its mail is delivered. */
		if (w->seg && w->off > 0 && !w->broken && writer_roll(w) < 0)
			w->broken = true;
		return -ENOSPC;
	}
	if (hdr_len > sizeof(stackbuf) && !(hdr = malloc(hdr_len)))
		return -ENOMEM;
	spool_record_build(env, body, body_len, hdr, hdr_len);

	if (!w->seg || w->broken || atomic_load_explicit(&w->need_roll, memory_order_acquire) ||
	    (w->off && w->off + total > sp->cfg.segment_size) || w->off + total > UINT32_MAX) {
		atomic_store_explicit(&w->need_roll, false, memory_order_relaxed);
		if ((rc = writer_roll(w)) < 0) {
			w->broken = true; /* try again on the next append */
			goto out;
		}
	}
	struct iovec iov[2] = {{hdr, hdr_len}, {(void *)body, body_len}};
	if ((rc = write_full(w->fd, iov, body_len ? 2 : 1)) < 0) {
		/* The segment may now end in a partial record: never append
		 * after it (recovery stops at the first torn record). */
		w->broken = true;
		if (rc == -ENOSPC || rc == -EDQUOT)
			atomic_store(&sp->space_ok, false);
		char name[64];
		spool_seg_name(name, sizeof(name), w->seg->id, "dat");
		log_err("spool: append failed worker=%u path=%s/%s offset=%" PRIu64 ": %s",
			w->worker, sp->dir, name, w->off, strerror(-rc));
		goto out;
	}
	atomic_fetch_add_explicit(&w->seg->live, env->nrcpts, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->seg->bytes, total, memory_order_relaxed);
	atomic_fetch_add_explicit(&sp->bytes, total, memory_order_relaxed);
	ref->seg = w->seg->id;
	ref->offset = (uint32_t)w->off;
	ref->len = (uint32_t)total;
	if (qid)
		spool_qid_format(ref, qid);
	w->off += total;
	uint64_t end = atomic_load_explicit(&w->appended, memory_order_relaxed) + total;
	atomic_store_explicit(&w->appended, end, memory_order_release);
	*lsn = end;
	atomic_fetch_add_explicit(&sp->st_appended, 1, memory_order_relaxed);
	spool_commit_kick(sp);
out:
	if (hdr != stackbuf)
		free(hdr);
	return rc;
}

uint64_t spool_writer_durable(const struct spool_writer *w)
{
	/* A sync failure the worker has not seen yet (through
	 * spool_writer_failed) hides any later durable progress: otherwise a
	 * worker woken late would see durable past the failed range and send
	 * 250 for records that were lost.  Read failed first, then the floor
	 * the committer stored before it. */
	uint64_t failed = atomic_load_explicit(&w->failed, memory_order_acquire);
	if (failed > atomic_load_explicit(&w->failed_seen, memory_order_relaxed))
		return atomic_load_explicit(&w->fail_floor, memory_order_relaxed);
	return atomic_load_explicit(&w->durable, memory_order_acquire);
}

uint64_t spool_writer_failed(const struct spool_writer *w)
{
	struct spool_writer *mw = (struct spool_writer *)w; /* worker-side state */
	uint64_t failed = atomic_load_explicit(&w->failed, memory_order_acquire);
	atomic_store_explicit(&mw->failed_seen, failed, memory_order_relaxed);
	return failed;
}

bool spool_space_ok(const struct spool *sp)
{
	return atomic_load_explicit(&sp->space_ok, memory_order_relaxed);
}

int spool_read(struct spool *sp, const struct spool_ref *ref, struct envelope *env, uint8_t **body,
	       size_t *body_len)
{
	char name[64];
	int rc = 0;

	memset(env, 0, sizeof(*env));
	*body = NULL;
	*body_len = 0;
	if (ref->len < SPOOL_REC_FIXED + 8)
		return -EBADMSG;
	spool_seg_name(name, sizeof(name), ref->seg, "dat");
	int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t *buf = malloc(ref->len);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < ref->len) {
		ssize_t n = pread(fd, buf + got, ref->len - got, (off_t)ref->offset + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EBADMSG; /* short file: not our record */
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	const uint8_t *b;
	size_t blen;
	if (rc == 0 && (rc = spool_record_parse(buf, ref->len, env, &b, &blen)) == 0) {
		memmove(buf, b, blen);
		*body = buf;
		*body_len = blen;
		return 0;
	}
	free(buf);
	return rc;
}

void spool_get_stats(const struct spool *sp, struct spool_stats *out)
{
	out->appended = atomic_load_explicit(&sp->st_appended, memory_order_relaxed);
	out->syncs = atomic_load_explicit(&sp->st_syncs, memory_order_relaxed);
	out->segments = atomic_load_explicit(&sp->st_segments, memory_order_relaxed);
	out->reclaimed = atomic_load_explicit(&sp->st_reclaimed, memory_order_relaxed);
	out->bytes = atomic_load_explicit(&sp->bytes, memory_order_relaxed);
}

void spool_close(struct spool *sp)
{
	if (!sp)
		return;
	struct spool_writer *w;
	for (w = sp->writers; w; w = w->next) {
		if (!w->closed) {
			log_warn("spool: writer worker=%u still open at spool_close", w->worker);
			spool_writer_close(w);
		}
	}
	/* The committer's last batch syncs and closes everything appended;
	 * without a committer, run that batch here. */
	if (sp->started)
		spool_commit_stop(sp);
	else
		spool_commit_batch(sp);
	spool_journal_sync(sp);
	while ((w = sp->writers) != NULL) {
		sp->writers = w->next;
		if (w->fd >= 0)
			close(w->fd);
		for (size_t i = 0; i < w->nretired; i++)
			close(w->retired[i].fd);
		free(w->retired);
		free(w->c_retired);
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
	for (size_t i = 0; i < sp->nsegs; i++)
		spool_seg_free(sp->segs[i]);
	free(sp->segs);
	pthread_rwlock_destroy(&sp->seg_lock);
	pthread_mutex_destroy(&sp->jsync_lock);
	pthread_mutex_destroy(&sp->lock);
	pthread_mutex_destroy(&sp->ids_lock);
	pthread_cond_destroy(&sp->cond);
	close(sp->dirfd);
	free(sp->dir);
	free(sp);
}
