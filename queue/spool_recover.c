/* spool_recover: the start-up scan of segments and journals. */
#include <dirent.h>
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

struct id_list {
	uint32_t *v;
	size_t n, cap;
};

static int id_push(struct id_list *l, uint32_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list_segments(struct spool *sp, struct id_list *dat, struct id_list *jnl)
{
	int err;
	DIR *d = spool_dir_open(sp, &err);
	if (!d)
		return err;
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		uint32_t id;
		bool is_jnl;
		if (spool_name_parse(de->d_name, &id, &is_jnl) == 0)
			rc = id_push(is_jnl ? jnl : dat, id);
	}
	closedir(d);
	if (dat->n)
		qsort(dat->v, dat->n, sizeof(uint32_t), cmp_u32);
	if (jnl->n)
		qsort(jnl->v, jnl->n, sizeof(uint32_t), cmp_u32);
	return rc;
}

/* pread up to len bytes; returns bytes read (short at end of file) or -errno. */
static ssize_t read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The journal of one segment, as sorted keys offset << 32 | rcpt. */
struct journal_keys {
	uint64_t *final;   /* DELIVERED or FAILED */
	size_t nfinal;
	uint64_t *noticed; /* DELAY_NOTICED: the delay notice went out */
	size_t nnoticed;
};

/* Load the journal of segment id into *jk.  Cuts a torn last entry off
 * the file so later appends stay aligned; skips entries with a bad CRC. */
static int journal_load(struct spool *sp, uint32_t id, struct journal_keys *jk)
{
	char name[64];
	struct stat st;
	int rc = 0;

	memset(jk, 0, sizeof(*jk));
	spool_seg_name(name, sizeof(name), id, "jnl");
	int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size, whole = size / SPOOL_JNL_ENTRY * SPOOL_JNL_ENTRY;
	if (whole != size) {
		if (ftruncate(fd, (off_t)whole) != 0 || fsync(fd) != 0) {
			rc = -errno;
			log_err("spool: cannot truncate journal path=%s/%s: %s", sp->dir, name,
				strerror(-rc));
			goto out;
		}
		log_warn("spool: seg %08" PRIX32 ": dropped %" PRIu64
			 " bytes of torn journal tail at offset %" PRIu64,
			 id, size - whole, whole);
	}
	if (!whole)
		goto out;
	/* These entries are about to be applied (recipients skipped, maybe
	 * the segment deleted): make them durable first, as
	 * spool_journal_sync() would have (the crash may have come before). */
	if (fdatasync(fd) != 0) {
		rc = -errno;
		log_err("spool: cannot sync journal path=%s/%s: %s", sp->dir, name, strerror(-rc));
		goto out;
	}
	uint8_t *buf = malloc(whole);
	uint64_t *k = malloc(whole / SPOOL_JNL_ENTRY * sizeof(*k));
	uint64_t *nk = malloc(whole / SPOOL_JNL_ENTRY * sizeof(*nk));
	if (!buf || !k || !nk) {
		free(buf);
		free(k);
		free(nk);
		rc = -ENOMEM;
		goto out;
	}
	ssize_t n = read_at(fd, buf, whole, 0);
	if (n < 0) {
		rc = (int)n;
		free(buf);
		free(k);
		free(nk);
		goto out;
	}
	size_t cnt = 0, ncnt = 0, bad = 0;
	for (size_t off = 0; off + SPOOL_JNL_ENTRY <= (size_t)n; off += SPOOL_JNL_ENTRY) {
		uint32_t roff, rcpt;
		uint8_t state;
		if (spool_jnl_entry_parse(buf + off, &roff, &rcpt, &state) < 0) {
			bad++; /* the recipient stays pending: a duplicate, not a loss */
			continue;
		}
		if (state == SPOOL_RCPT_DELAY_NOTICED)
			nk[ncnt++] = (uint64_t)roff << 32 | rcpt;
		else
			k[cnt++] = (uint64_t)roff << 32 | rcpt;
	}
	if (bad)
		log_warn("spool: seg %08" PRIX32 ": %zu corrupt journal entries ignored", id, bad);
	free(buf);
	if (cnt)
		qsort(k, cnt, sizeof(*k), cmp_u64);
	if (ncnt)
		qsort(nk, ncnt, sizeof(*nk), cmp_u64);
	jk->final = k;
	jk->nfinal = cnt;
	jk->noticed = nk;
	jk->nnoticed = ncnt;
out:
	close(fd);
	return rc;
}

static bool key_present(const uint64_t *keys, size_t n, uint32_t off, uint32_t rcpt)
{
	uint64_t key = (uint64_t)off << 32 | rcpt;
	return n && bsearch(&key, keys, n, sizeof(key), cmp_u64) != NULL;
}

static int delete_segment(struct spool *sp, uint32_t id)
{
	char name[64];
	static const char *const exts[] = {"dat", "jnl"};
	for (int i = 0; i < 2; i++) {
		spool_seg_name(name, sizeof(name), id, exts[i]);
		if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT) {
			int e = -errno;
			log_err("spool: cannot delete path=%s/%s: %s", sp->dir, name, strerror(-e));
			return e;
		}
	}
	atomic_fetch_add(&sp->st_reclaimed, 1);
	return 0;
}

/*
 * Scan one segment: report pending messages, cut a torn or corrupt tail,
 * then delete the segment if nothing is pending or register it sealed.
 */
static int recover_segment(struct spool *sp, uint32_t id, spool_recover_fn *cb, void *arg,
			   bool *deleted)
{
	char name[64];
	struct stat st;
	struct journal_keys jk = {0};
	uint8_t *buf = NULL;
	size_t buf_cap = 0;
	bool *pending = NULL, *noticed = NULL;
	int64_t live = 0;
	int rc;

	*deleted = false;
	spool_seg_name(name, sizeof(name), id, "dat");
	int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err("spool: cannot open path=%s/%s: %s", sp->dir, name, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = journal_load(sp, id, &jk)) < 0)
		goto out;

	uint64_t size = (uint64_t)st.st_size, off = 0;
	const char *why = NULL;
	while (off < size) {
		uint8_t h[12];
		ssize_t n = read_at(fd, h, sizeof(h), off);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n < (ssize_t)sizeof(h)) {
			why = "short header";
			break;
		}
		uint32_t len = spool_get32(h + 4);
		if (spool_get32(h) != SPOOL_MAGIC) {
			why = "bad magic";
			break;
		}
		if (len < SPOOL_REC_FIXED + 8 || off + len > UINT32_MAX) {
			why = "bad length";
			break;
		}
		if (len > size - off) {
			why = "short record";
			break;
		}
		if (len > buf_cap) {
			uint8_t *b = realloc(buf, len);
			if (!b) {
				rc = -ENOMEM;
				goto out;
			}
			buf = b;
			buf_cap = len;
		}
		n = read_at(fd, buf, len, off);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n < (ssize_t)len) {
			why = "short record";
			break;
		}
		struct envelope env;
		const uint8_t *body;
		size_t body_len;
		rc = spool_record_parse(buf, len, &env, &body, &body_len);
		if (rc == -ENOMEM)
			goto out;
		if (rc < 0) {
			rc = 0;
			why = "bad crc or fields";
			break;
		}
		bool *p = realloc(pending, env.nrcpts * sizeof(*p));
		if (p)
			pending = p;
		bool *q = p ? realloc(noticed, env.nrcpts * sizeof(*q)) : NULL;
		if (!q) {
			envelope_free(&env);
			rc = -ENOMEM;
			goto out;
		}
		noticed = q;
		uint32_t npend = 0;
		for (uint32_t i = 0; i < env.nrcpts; i++) {
			pending[i] = !key_present(jk.final, jk.nfinal, (uint32_t)off, i);
			noticed[i] = key_present(jk.noticed, jk.nnoticed, (uint32_t)off, i);
			npend += pending[i];
		}
		if (npend) {
			struct spool_ref ref = {.seg = id, .offset = (uint32_t)off, .len = len};
			char qid[SPOOL_QID_LEN + 1];
			spool_qid_format(&ref, qid);
			rc = cb ? cb(arg, &ref, qid, &env, pending, noticed) : 0;
			live += npend;
		}
		envelope_free(&env);
		if (rc < 0)
			goto out;
		off += len;
	}
	if (off < size) {
		/* Never acknowledged if torn (the 250 waits for the sync);
		 * if corrupt in the middle, what follows cannot be framed
		 * any more.  Cut it so the segment ends at a record. */
		if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
			rc = -errno;
			log_err("spool: cannot truncate path=%s/%s: %s", sp->dir, name,
				strerror(-rc));
			goto out;
		}
		log_warn("spool: seg %08" PRIX32 ": dropped %" PRIu64
			 " bytes of torn tail at offset %" PRIu64 " reason=%s",
			 id, size - off, off, why);
	}
	if (live == 0) {
		rc = delete_segment(sp, id);
		*deleted = rc == 0;
		goto out;
	}
	/* Sealed: recovered segments are never appended to again. */
	struct spool_seg *seg = spool_seg_new(id, live, true);
	if (!seg || (rc = spool_seg_insert(sp, seg)) < 0) {
		spool_seg_free(seg);
		rc = -ENOMEM;
		goto out;
	}
	atomic_store(&seg->bytes, off);
	atomic_fetch_add(&sp->bytes, off);
out:
	close(fd);
	free(jk.final);
	free(jk.noticed);
	free(buf);
	free(pending);
	free(noticed);
	return rc;
}

int spool_recover(struct spool *sp, spool_recover_fn *cb, void *arg)
{
	struct id_list dat = {0}, jnl = {0};
	bool dir_dirty = false;
	int rc = list_segments(sp, &dat, &jnl);
	if (rc < 0)
		goto out;
	/* A journal without its segment: the segment was reclaimed and the
	 * crash came before the journal went. */
	for (size_t i = 0; i < jnl.n; i++) {
		if (dat.n && bsearch(&jnl.v[i], dat.v, dat.n, sizeof(uint32_t), cmp_u32))
			continue;
		char name[64];
		spool_seg_name(name, sizeof(name), jnl.v[i], "jnl");
		if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT) {
			rc = -errno;
			goto out;
		}
		dir_dirty = true;
	}
	/* A journal's directory entry may not be durable yet (the crash came
	 * before spool_journal_sync's directory fsync): one fsync covers all. */
	dir_dirty |= jnl.n > 0;
	for (size_t i = 0; i < dat.n; i++) {
		bool deleted;
		if ((rc = recover_segment(sp, dat.v[i], cb, arg, &deleted)) < 0)
			goto out;
		dir_dirty |= deleted;
	}
out:
	if (dir_dirty) {
		int e = spool_dir_sync(sp);
		if (rc == 0)
			rc = e;
	}
	free(dat.v);
	free(jnl.v);
	return rc;
}
