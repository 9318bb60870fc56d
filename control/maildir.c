/* maildir: batched, durable Maildir delivery (see maildir.h). */
#include "control/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/*
 * Why one syncfs() per filesystem instead of fdatasync() per file: each
 * fdatasync of a small new file commits the ext4 journal on its own (about
 * 200 us on the appliance; 260-450 us measured on the dev VM), which caps
 * one delivery thread at a few thousand copies a second.  syncfs() writes
 * back every dirty page of the filesystem and commits the journal once: on
 * the dev VM one syncfs after 256 new 4 KiB files took 4-9 ms, 20-40 us a
 * file.  The price: it also flushes unrelated dirty data on that
 * filesystem, so the Maildir store should be its own filesystem (or at
 * least not share one with bulk writers).  Since Linux 5.8 syncfs()
 * reports writeback errors of the filesystem (errseq, sampled when the fd
 * was opened, and we open new/ afresh per batch), so a failed write-back
 * is not silently lost.
 *
 * The same syncfs also makes the mkdir()s of new mailboxes durable, because
 * they happened before it in the same batch.
 */

/* Directories are created with this mode (private to the mail user). */
#define MD_DIR_MODE 0700
/* Message files are created with this mode. */
#define MD_FILE_MODE 0600
/* Entries in the per-thread "this mailbox exists" cache (power of two). */
#define MD_KNOWN_SLOTS 256
/* iovecs handed to one writev() (well under IOV_MAX). */
#define MD_IOV_CHUNK 64
/* Longest host part kept in a unique name (escapes included), so a name
 * always fits NAME_MAX. */
#define MD_HOST_MAX 64
/* Attempts at a fresh unique name when one exists already (EEXIST). */
#define MD_NAME_TRIES 4

/* Per-process delivery counter for unique names (the Q<n> part). */
static atomic_uint_fast64_t md_counter;

/*
 * Hashes of mailbox paths this thread created or found.  Direct mapped: a
 * collision only costs a few extra mkdir() calls, and a false "exists" is
 * harmless too, because opening tmp/ then fails with ENOENT and we
 * recreate.  Zero means an empty slot.
 */
static _Thread_local uint64_t md_known[MD_KNOWN_SLOTS];

/* One distinct mailbox (ROOT/DOMAIN/USER) touched by the batch. */
struct md_box {
	char path[PATH_MAX]; /* ROOT/DOMAIN/USER */
	int tmpfd;	     /* tmp/ directory, or -1 */
	int newfd;	     /* new/ directory, or -1 */
	uint64_t hash;	     /* md_hash(path) */
	dev_t dev;	     /* filesystem of new/ (for one syncfs per fs) */
	int err;	     /* sticky: opening the mailbox failed (-errno) */
	unsigned renamed;    /* copies put in (or found in) new/: fsync it */
	bool synced;	     /* its filesystem was synced by this batch */
};

/* Per-job state of the batch, parallel to the caller's jobs[]. */
struct md_item {
	int box;		    /* index into boxes[], or -1 */
	char name[NAME_MAX + 1];    /* unique name in new/ */
	char tmpname[NAME_MAX + 1]; /* name in tmp/: name, or <tag>.<host> */
	bool in_tmp;		    /* tmp/<tmpname> exists and is ours */
	bool in_new;		    /* new/<name> exists (renamed or linked) */
	bool found;		    /* tag: an earlier attempt delivered it */
};

static uint64_t md_hash(const char *s)
{
	/* FNV-1a; never 0, so 0 can mark an empty slot. */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h ? h : 1;
}

static bool md_known_has(const char *path)
{
	uint64_t h = md_hash(path);
	return md_known[h & (MD_KNOWN_SLOTS - 1)] == h;
}

static void md_known_set(const char *path, bool exists)
{
	uint64_t h = md_hash(path);
	uint64_t *slot = &md_known[h & (MD_KNOWN_SLOTS - 1)];
	if (exists)
		*slot = h;
	else if (*slot == h)
		*slot = 0;
}

static bool md_safe_byte(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-=?^_`{|}~.", c) != NULL;
}

int maildir_safe_name(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0'; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		/*
		 * A leading '.' is encoded so no name is ".", ".." or hidden.
		 * Escapes use upper-case hex while the passthrough is lower
		 * case, so an escape never equals a literal "%2e" from input.
		 */
		if (md_safe_byte(c) && !(i == 0 && c == '.')) {
			if (o + 1 >= outlen)
				goto toolong;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= outlen)
				goto toolong;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	if (outlen == 0)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
toolong:
	if (outlen > 0)
		out[0] = '\0';
	return -ENAMETOOLONG;
}

/* Host part of a unique name: '/' and ':' are written \057 and \072, as the
 * Maildir convention says, so the name stays one path component and the
 * ":2," info suffix stays unambiguous. */
static void md_host_part(const char *hostname, char *out, size_t outlen)
{
	size_t o = 0;
	if (hostname == NULL || hostname[0] == '\0')
		hostname = "localhost";
	for (const char *p = hostname; *p && o + 5 < outlen; p++) {
		if (*p == '/') {
			memcpy(out + o, "\\057", 4);
			o += 4;
		} else if (*p == ':') {
			memcpy(out + o, "\\072", 4);
			o += 4;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

/* mkdir -p: try the leaf first; only on ENOENT walk up to the parent. */
static int md_mkdir_p(char *path)
{
	if (mkdir(path, MD_DIR_MODE) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -errno;
	char *slash = strrchr(path, '/');
	if (slash == NULL || slash == path)
		return -ENOENT;
	*slash = '\0';
	int rc = md_mkdir_p(path);
	*slash = '/';
	if (rc < 0)
		return rc;
	if (mkdir(path, MD_DIR_MODE) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* Create ROOT/DOMAIN/USER and its tmp, new and cur. */
static int md_box_create(const char *box)
{
	static const char *const subs[] = {"tmp", "new", "cur"};
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		int n = snprintf(path, sizeof(path), "%s/%s", box, subs[i]);
		if (n < 0 || (size_t)n >= sizeof(path))
			return -ENAMETOOLONG;
		int rc = md_mkdir_p(path);
		if (rc < 0) {
			log_warn("maildir: mkdir %s: %s", path, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int md_open_dir(const char *box, const char *sub)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", box, sub);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void md_box_close(struct md_box *b)
{
	/* Read-only directory descriptors: a close error carries no data. */
	if (b->tmpfd >= 0)
		(void)close(b->tmpfd);
	if (b->newfd >= 0)
		(void)close(b->newfd);
	b->tmpfd = b->newfd = -1;
}

/* Open tmp/ and new/ of the mailbox, creating it when missing (or when it
 * was removed behind our back: ENOENT drops the cache entry and retries). */
static int md_box_open(struct md_box *b)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!md_known_has(b->path)) {
			int rc = md_box_create(b->path);
			if (rc < 0)
				return rc;
			md_known_set(b->path, true);
		}
		int tfd = md_open_dir(b->path, "tmp");
		int nfd = tfd >= 0 ? md_open_dir(b->path, "new") : tfd;
		if (tfd >= 0 && nfd >= 0) {
			struct stat st;
			if (fstat(nfd, &st) < 0) {
				int rc = -errno;
				(void)close(tfd);
				(void)close(nfd);
				return rc;
			}
			b->tmpfd = tfd;
			b->newfd = nfd;
			b->dev = st.st_dev;
			return 0;
		}
		int rc = tfd < 0 ? tfd : nfd;
		if (tfd >= 0)
			(void)close(tfd);
		md_known_set(b->path, false);
		if (rc != -ENOENT) {
			log_warn("maildir: open %s: %s", b->path, strerror(-rc));
			return rc;
		}
	}
	return -ENOENT;
}

/* The batch's mailboxes, found by path through a small open-addressing
 * index (a batch of 256 messages to 256 mailboxes must not cost 32k strcmp). */
struct md_batch {
	struct md_box *boxes; /* one per distinct mailbox, at most one per job */
	size_t nboxes;
	uint32_t *index;	    /* box number + 1, or 0 for an empty slot */
	size_t mask;		    /* index slots - 1 (power of two, >= 2 * jobs) */
	long pid;		    /* for unique names */
	char host[MD_HOST_MAX + 1]; /* host part of unique names (cut) */
};

/* Find or add the batch entry for mailbox path (opening it when new). */
static int md_box_get(struct md_batch *bt, const char *path)
{
	uint64_t h = md_hash(path);
	size_t slot = h & bt->mask;
	while (bt->index[slot] != 0) {
		struct md_box *b = &bt->boxes[bt->index[slot] - 1];
		if (b->hash == h && strcmp(b->path, path) == 0)
			return (int)(bt->index[slot] - 1);
		slot = (slot + 1) & bt->mask;
	}
	struct md_box *b = &bt->boxes[bt->nboxes];
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->hash = h;
	b->tmpfd = b->newfd = -1;
	b->dev = 0;
	b->renamed = 0;
	b->synced = false;
	b->err = md_box_open(b);
	bt->index[slot] = (uint32_t)++bt->nboxes;
	return (int)(bt->nboxes - 1);
}

/* writev() everything, across short writes and more than IOV_MAX entries. */
static int md_write_all(int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec cur[MD_IOV_CHUNK];
	int i = 0;
	size_t skip = 0; /* bytes of iov[i] already written */
	while (i < iovcnt) {
		int k = 0;
		for (int j = i; j < iovcnt && k < MD_IOV_CHUNK; j++) {
			size_t off = j == i ? skip : 0;
			if (iov[j].iov_len == off)
				continue;
			cur[k].iov_base = (char *)iov[j].iov_base + off;
			cur[k].iov_len = iov[j].iov_len - off;
			k++;
		}
		if (k == 0)
			return 0;
		ssize_t w = writev(fd, cur, k);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		size_t left = (size_t)w;
		while (i < iovcnt && left >= iov[i].iov_len - skip) {
			left -= iov[i].iov_len - skip;
			skip = 0;
			i++;
		}
		skip += left;
	}
	return 0;
}

static size_t md_iov_size(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* The unique name for new/ (and tmp/ without a tag) into it->name. */
static int md_unique_name(const struct md_batch *bt, struct md_item *it, size_t size)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -errno;
	uint64_t q = atomic_fetch_add(&md_counter, 1) + 1;
	int n = snprintf(it->name, sizeof(it->name), "%lld.M%ldP%ldQ%llu.%s,S=%zu",
			 (long long)ts.tv_sec, ts.tv_nsec / 1000, bt->pid, (unsigned long long)q,
			 bt->host, size);
	if (n < 0 || (size_t)n >= sizeof(it->name))
		return -ENAMETOOLONG;
	return 0;
}

static bool md_tag_ok(const char *tag)
{
	if (tag[0] == '\0' || tag[0] == '.')
		return false;
	for (const char *p = tag; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* tmp/<tag>.<host>: the stable name a retry looks for. */
static int md_tag_name(const char *tag, const char *host, char *out, size_t outlen)
{
	if (!md_tag_ok(tag))
		return -EINVAL;
	int n = snprintf(out, outlen, "%s.%s", tag, host);
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * tmp/<tag>.<host> exists already.  Returns 1 when it is an earlier
 * attempt's delivered copy (link count > 1: new/ or cur/ holds it too), 0
 * when it is a stale half (removed here, so the caller can create it), or
 * -errno (-EEXIST: another job of this batch has the same tag).
 */
static int md_tag_existing(const struct md_item *items, size_t idx, struct md_box *b)
{
	const struct md_item *it = &items[idx];
	for (size_t k = 0; k < idx; k++)
		if (items[k].box == it->box && (items[k].in_tmp || items[k].found) &&
		    strcmp(items[k].tmpname, it->tmpname) == 0)
			return -EEXIST;
	struct stat st;
	if (fstatat(b->tmpfd, it->tmpname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return -EEXIST;
	if (st.st_nlink > 1)
		return 1;
	/* Written but never linked into new/: the attempt died before its
	 * sync; nothing was delivered.  Start over. */
	if (unlinkat(b->tmpfd, it->tmpname, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Create the tmp/ file exclusively and write the copy into it.  Returns 0,
 * 1 when a tagged copy from an earlier attempt was found, or -errno. */
static int md_write_tmp(const struct md_batch *bt, struct md_item *items, size_t idx,
			struct md_box *b, const struct maildir_job *job)
{
	struct md_item *it = &items[idx];
	size_t size = md_iov_size(job->iov, job->iovcnt);
	int fd = -1, rc;
	if (job->tag != NULL) {
		rc = md_tag_name(job->tag, bt->host, it->tmpname, sizeof(it->tmpname));
		if (rc == 0)
			rc = md_unique_name(bt, it, size);
		if (rc < 0)
			return rc;
		for (int attempt = 0; attempt < 2; attempt++) {
			fd = openat(b->tmpfd, it->tmpname, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
				    MD_FILE_MODE);
			if (fd >= 0 || errno != EEXIST)
				break;
			rc = md_tag_existing(items, idx, b);
			if (rc != 0) {
				if (rc < 0)
					log_warn("maildir: %s/tmp/%s exists: %s", b->path,
						 it->tmpname, strerror(-rc));
				return rc;
			}
			errno = EEXIST;
		}
	} else {
		for (int attempt = 0; attempt < MD_NAME_TRIES; attempt++) {
			rc = md_unique_name(bt, it, size);
			if (rc < 0)
				return rc;
			memcpy(it->tmpname, it->name, sizeof(it->tmpname));
			fd = openat(b->tmpfd, it->tmpname, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
				    MD_FILE_MODE);
			if (fd >= 0 || errno != EEXIST)
				break;
		}
	}
	if (fd < 0) {
		rc = -errno;
		log_warn("maildir: create %s/tmp/%s: %s", b->path, it->tmpname, strerror(-rc));
		return rc;
	}
	it->in_tmp = true;
	rc = md_write_all(fd, job->iov, job->iovcnt);
	if (rc < 0)
		log_warn("maildir: write %s/tmp/%s: %s", b->path, it->tmpname, strerror(-rc));
	/* close() can report a deferred write error (NFS, quota): check it. */
	if (close(fd) < 0 && rc == 0) {
		rc = -errno;
		log_warn("maildir: close %s/tmp/%s: %s", b->path, it->tmpname, strerror(-rc));
	}
	return rc;
}

/* Undo a job: remove its files from new/ and tmp/ and record the error. */
static void md_item_fail(struct md_box *boxes, struct md_item *it, struct maildir_job *job, int err)
{
	if (it->box >= 0) {
		struct md_box *b = &boxes[it->box];
		if (it->in_new && unlinkat(b->newfd, it->name, 0) < 0 && errno != ENOENT)
			log_err("maildir: unlink %s/new/%s: %s", b->path, it->name,
				strerror(errno));
		if (it->in_tmp && unlinkat(b->tmpfd, it->tmpname, 0) < 0 && errno != ENOENT)
			log_err("maildir: unlink %s/tmp/%s: %s", b->path, it->tmpname,
				strerror(errno));
	}
	it->in_tmp = it->in_new = false;
	job->result = err;
}

/* Build ROOT/DOMAIN/USER for a job, with safe names.  Returns 0 or -errno. */
static int md_job_path(const struct maildir_job *job, char *path, size_t pathlen)
{
	char dom[NAME_MAX + 1], user[NAME_MAX + 1];
	if (job->root == NULL || job->root[0] == '\0' || job->domain == NULL || job->user == NULL)
		return -EINVAL;
	int rc = maildir_safe_name(job->domain, dom, sizeof(dom));
	if (rc == 0)
		rc = maildir_safe_name(job->user, user, sizeof(user));
	if (rc < 0)
		return rc;
	/* An empty name would make ROOT/DOMAIN itself (or ROOT) the mailbox. */
	if (dom[0] == '\0' || user[0] == '\0')
		return -EINVAL;
	int n = snprintf(path, pathlen, "%s/%s/%s", job->root, dom, user);
	if (n < 0 || (size_t)n >= pathlen)
		return -ENAMETOOLONG;
	return 0;
}

size_t maildir_deliver_batch(struct maildir_job *jobs, size_t n, const char *hostname)
{
	if (n == 0)
		return 0;
	struct md_batch bt = {.pid = (long)getpid()};
	size_t slots = 16;
	while (slots < 2 * n)
		slots *= 2;
	bt.mask = slots - 1;
	struct md_item *items = calloc(n, sizeof(*items));
	bt.boxes = malloc(n * sizeof(*bt.boxes));
	bt.index = calloc(slots, sizeof(*bt.index));
	if (items == NULL || bt.boxes == NULL || bt.index == NULL || n > UINT32_MAX / 2) {
		free(items);
		free(bt.boxes);
		free(bt.index);
		for (size_t i = 0; i < n; i++)
			jobs[i].result = -ENOMEM;
		log_err("maildir: out of memory for a batch of %zu", n);
		return 0;
	}
	struct md_box *boxes = bt.boxes;
	md_host_part(hostname, bt.host, sizeof(bt.host));
	size_t written = 0;

	/* 1. Write every copy to tmp/. */
	for (size_t i = 0; i < n; i++) {
		struct md_item *it = &items[i];
		char path[PATH_MAX];
		it->box = -1;
		int rc = md_job_path(&jobs[i], path, sizeof(path));
		if (rc < 0) {
			log_warn("maildir: bad mailbox domain=%s user=%s: %s",
				 jobs[i].domain ? jobs[i].domain : "(null)",
				 jobs[i].user ? jobs[i].user : "(null)", strerror(-rc));
			md_item_fail(boxes, it, &jobs[i], rc);
			continue;
		}
		it->box = md_box_get(&bt, path);
		struct md_box *b = &boxes[it->box];
		rc = b->err;
		if (rc == 0)
			rc = md_write_tmp(&bt, items, i, b, &jobs[i]);
		if (rc < 0) {
			md_item_fail(boxes, it, &jobs[i], rc);
			continue;
		}
		jobs[i].result = 0;
		if (rc == 1) {
			/* Delivered by an earlier attempt; still fsync new/
			 * below in case that attempt died before doing so. */
			it->found = jobs[i].found = true;
			b->renamed++;
			continue;
		}
		written++;
	}

	/* 2. One syncfs per filesystem holding a written copy. */
	for (size_t i = 0; i < n && written > 0; i++) {
		if (!items[i].in_tmp)
			continue;
		struct md_box *b = &boxes[items[i].box];
		if (b->synced)
			continue;
		int rc = syncfs(b->newfd) < 0 ? -errno : 0;
		if (rc < 0)
			log_err("maildir: syncfs (under %s): %s", b->path, strerror(-rc));
		for (size_t k = 0; k < bt.nboxes; k++) {
			if (boxes[k].err != 0 || boxes[k].dev != b->dev)
				continue;
			boxes[k].synced = true;
			if (rc < 0)
				boxes[k].err = rc;
		}
	}

	/* 3. Rename each durable copy into new/. */
	for (size_t i = 0; i < n; i++) {
		struct md_item *it = &items[i];
		if (!it->in_tmp)
			continue;
		struct md_box *b = &boxes[it->box];
		int rc = b->err;
		if (rc == 0 && jobs[i].tag != NULL) {
			/* Keep tmp/<tag>.<host>: its link count tells a retry
			 * that this copy exists (maildir_release_batch). */
			if (linkat(b->tmpfd, it->tmpname, b->newfd, it->name, 0) < 0) {
				rc = -errno;
				log_warn("maildir: link %s/tmp/%s to new/: %s", b->path,
					 it->tmpname, strerror(-rc));
			}
		} else if (rc == 0) {
			if (renameat(b->tmpfd, it->tmpname, b->newfd, it->name) < 0) {
				rc = -errno;
				log_warn("maildir: rename %s/tmp/%s to new/: %s", b->path,
					 it->tmpname, strerror(-rc));
			} else {
				it->in_tmp = false;
			}
		}
		if (rc < 0) {
			md_item_fail(boxes, it, &jobs[i], rc);
			continue;
		}
		it->in_new = true;
		b->renamed++;
	}

	/* 4. fsync each new/ once: on Linux the rename is only durable when its
	 * directory is (see STYLE.md on fsqueue_envelope_dump). */
	size_t delivered = 0;
	for (size_t k = 0; k < bt.nboxes; k++) {
		struct md_box *b = &boxes[k];
		if (b->renamed > 0 && fsync(b->newfd) < 0) {
			b->err = -errno;
			log_err("maildir: fsync %s/new: %s", b->path, strerror(-b->err));
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct md_item *it = &items[i];
		if (it->found) {
			/* An earlier copy we cannot take back: on a failed
			 * fsync say so, and the retry finds it again. */
			if (boxes[it->box].err < 0)
				jobs[i].result = boxes[it->box].err;
			else
				delivered++;
			continue;
		}
		if (!it->in_new)
			continue;
		struct md_box *b = &boxes[it->box];
		if (b->err < 0) {
			/* Not known durable: take it back so a retry cannot
			 * leave two copies.  XXX: best effort after EIO. */
			md_item_fail(boxes, it, &jobs[i], b->err);
			continue;
		}
		delivered++;
	}

	for (size_t k = 0; k < bt.nboxes; k++)
		md_box_close(&boxes[k]);
	free(bt.index);
	free(bt.boxes);
	free(items);
	return delivered;
}

void maildir_release_batch(const struct maildir_job *jobs, size_t n, const char *hostname)
{
	char host[MD_HOST_MAX + 1];
	md_host_part(hostname, host, sizeof(host));
	for (size_t i = 0; i < n; i++) {
		const struct maildir_job *job = &jobs[i];
		char box[PATH_MAX], name[NAME_MAX + 1], path[PATH_MAX];
		if (job->tag == NULL || job->result != 0)
			continue;
		if (md_job_path(job, box, sizeof(box)) < 0 ||
		    md_tag_name(job->tag, host, name, sizeof(name)) < 0)
			continue;
		int len = snprintf(path, sizeof(path), "%s/tmp/%s", box, name);
		if (len < 0 || (size_t)len >= sizeof(path))
			continue;
		/* No sync: a link that reappears after a crash only makes a
		 * retry (there is none: the journal says delivered) find it. */
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("maildir: unlink %s: %s", path, strerror(errno));
	}
}
