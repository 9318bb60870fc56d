/* test_spool: unit tests of the spool (record format, append, group commit,
 * journal, reclamation, recovery, error paths). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/envelope.h"
#include "queue/spool.h"
#include "queue/spool_pvt.h"

/* ---- helpers ---- */

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_error(__VA_ARGS__);                                                  \
			fail_msg("%s", #cond);                                                     \
		}                                                                                  \
	} while (0)

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static char *tmpdir_new(void)
{
	char *d = strdup("/tmp/spool-unit-XXXXXX");
	assert_non_null(d);
	assert_non_null(mkdtemp(d));
	return d;
}

static void tmpdir_free(char *d)
{
	nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(d);
}

static struct spool *open_spool(const char *dir, uint64_t segsize, uint64_t min_free)
{
	struct spool_cfg cfg = {.dir = dir,
				.segment_size = segsize,
				.min_free = min_free,
				.commit_interval_us = 1000,
				.commit_batch = 64};
	char err[256] = "";
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	CHECK(sp, "spool_open(%s): %s\n", dir, err);
	return sp;
}

/* Count files in dir whose name ends with ext. */
static int count_files(const char *dir, const char *ext)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "ls %s | grep -c '%s$'", dir, ext);
	FILE *f = popen(cmd, "r");
	int n = -1;
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static void env_fill(struct envelope *e, unsigned nrcpts, unsigned seed)
{
	char buf[128];
	memset(e, 0, sizeof(*e));
	snprintf(buf, sizeof(buf), "sender%u@example.org", seed);
	e->sender = strdup(buf);
	e->envid = seed % 2 ? strdup("QQ314159") : NULL;
	e->ret = (uint8_t)(seed % 3);
	e->body = (uint8_t)((seed / 3) % 3);
	e->smtputf8 = seed % 5 == 0;
	e->size_hint = 1000u * seed;
	e->helo = seed % 4 ? strdup("client.example.net") : NULL;
	e->client_addr = strdup(seed % 2 ? "192.0.2.1" : "2001:db8::1");
	e->protocol = envelope_protocol_name(seed % 5);
	e->arrival = 1700000000 + seed;
	for (unsigned i = 0; i < nrcpts; i++) {
		snprintf(buf, sizeof(buf), "rcpt%u-%u@example.com", seed, i);
		char orcpt[160];
		snprintf(orcpt, sizeof(orcpt), "rfc822;%s", buf);
		assert_int_equal(envelope_add_rcpt(e, buf, i % 2 ? orcpt : NULL, (uint8_t)(i % 16)),
				 0);
	}
}

static int streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

#define S(x) ((x) ? (x) : "(null)")

static void env_check_equal(const struct envelope *got, const struct envelope *want)
{
	CHECK(streq_null(got->sender, want->sender), "sender got=%s want=%s\n", S(got->sender),
	      S(want->sender));
	CHECK(streq_null(got->envid, want->envid), "envid got=%s want=%s\n", S(got->envid),
	      S(want->envid));
	CHECK(streq_null(got->helo, want->helo), "helo got=%s want=%s\n", S(got->helo),
	      S(want->helo));
	CHECK(streq_null(got->client_addr, want->client_addr), "client got=%s want=%s\n",
	      S(got->client_addr), S(want->client_addr));
	CHECK(streq_null(got->protocol, want->protocol ? want->protocol : ""),
	      "protocol got=%s want=%s\n", S(got->protocol), S(want->protocol));
	CHECK(got->ret == want->ret && got->body == want->body && got->smtputf8 == want->smtputf8 &&
		  got->size_hint == want->size_hint && got->arrival == want->arrival,
	      "scalars got ret=%u body=%u utf8=%d size=%" PRIu64 " arr=%" PRId64
	      " want ret=%u body=%u utf8=%d size=%" PRIu64 " arr=%" PRId64 "\n",
	      got->ret, got->body, got->smtputf8, got->size_hint, got->arrival, want->ret,
	      want->body, want->smtputf8, want->size_hint, want->arrival);
	CHECK(got->nrcpts == want->nrcpts, "nrcpts got=%u want=%u\n", got->nrcpts, want->nrcpts);
	for (uint32_t i = 0; i < want->nrcpts; i++) {
		CHECK(streq_null(got->rcpts[i].addr, want->rcpts[i].addr) &&
			  streq_null(got->rcpts[i].orcpt, want->rcpts[i].orcpt) &&
			  got->rcpts[i].notify == want->rcpts[i].notify,
		      "rcpt %u got=%s/%s/%u want=%s/%s/%u\n", i, S(got->rcpts[i].addr),
		      S(got->rcpts[i].orcpt), got->rcpts[i].notify, S(want->rcpts[i].addr),
		      S(want->rcpts[i].orcpt), want->rcpts[i].notify);
	}
}

static uint8_t *body_make(size_t len, unsigned seed)
{
	uint8_t *b = malloc(len ? len : 1);
	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)("abcdefghij\r\n"[(i + seed) % 12]);
	return b;
}

/* Build a whole record in one buffer (header + body). */
static uint8_t *record_make(const struct envelope *env, const uint8_t *body, size_t body_len,
			    size_t *len)
{
	size_t hl;
	assert_int_equal(spool_record_hdr_len(env, &hl), 0);
	uint8_t *r = malloc(hl + body_len);
	assert_non_null(r);
	spool_record_build(env, body, body_len, r, hl);
	memcpy(r + hl, body, body_len);
	*len = hl + body_len;
	return r;
}

/* ---- record format ---- */

static void test_record_roundtrip(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		unsigned nrcpts;
		size_t body_len;
		unsigned seed;
	} cases[] = {
	    {"one rcpt, small body", 1, 100, 1}, {"all fields, empty body", 2, 0, 3},
	    {"big body 4 MiB", 1, 4u << 20, 4},	 {"many rcpts", 1000, 512, 5},
	    {"null envid/helo", 3, 10, 2},	 {"utf8", 1, 7, 10},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct envelope want, got, again;
		env_fill(&want, cases[c].nrcpts, cases[c].seed);
		uint8_t *body = body_make(cases[c].body_len, cases[c].seed);
		size_t len;
		uint8_t *rec = record_make(&want, body, cases[c].body_len, &len);
		const uint8_t *gb;
		size_t gbl;
		int rc = spool_record_parse(rec, len, &got, &gb, &gbl);
		CHECK(rc == 0, "case %s: parse got=%d want=0\n", cases[c].name, rc);
		env_check_equal(&got, &want);
		CHECK(gbl == cases[c].body_len && memcmp(gb, body, gbl) == 0,
		      "case %s: body len got=%zu want=%zu\n", cases[c].name, gbl,
		      cases[c].body_len);
		/* Re-serialising the parsed record gives the same bytes. */
		size_t len2;
		uint8_t *rec2 = record_make(&got, gb, gbl, &len2);
		CHECK(len2 == len && memcmp(rec, rec2, len) == 0,
		      "case %s: re-serialised differs\n", cases[c].name);
		/* Truncated by one byte: refused. */
		rc = spool_record_parse(rec, len - 1, &again, &gb, &gbl);
		CHECK(rc == -EBADMSG, "case %s: truncated got=%d want=%d\n", cases[c].name, rc,
		      -EBADMSG);
		envelope_free(&want);
		envelope_free(&got);
		free(body);
		free(rec);
		free(rec2);
	}
}

/* Every single-byte change anywhere in a record is refused. */
static void test_record_corrupt_every_byte(void **state)
{
	(void)state;
	struct envelope env, got;
	env_fill(&env, 2, 7);
	uint8_t *body = body_make(64, 1);
	size_t len;
	uint8_t *rec = record_make(&env, body, 64, &len);
	for (size_t i = 0; i < len; i++) {
		const uint8_t *b;
		size_t bl;
		rec[i] ^= 0x41;
		int rc = spool_record_parse(rec, len, &got, &b, &bl);
		CHECK(rc == -EBADMSG, "flip at %zu: got=%d want=%d\n", i, rc, -EBADMSG);
		rec[i] ^= 0x41;
	}
	envelope_free(&env);
	free(body);
	free(rec);
}

static void test_record_refuse_bad_env(void **state)
{
	(void)state;
	struct envelope env = {0};
	size_t len;
	int rc = spool_record_hdr_len(&env, &len);
	CHECK(rc == -EINVAL, "no rcpts: got=%d want=%d\n", rc, -EINVAL);
	env_fill(&env, 1, 1);
	char *big = malloc(70000);
	memset(big, 'a', 69999);
	big[69999] = 0;
	free(env.helo);
	env.helo = big;
	rc = spool_record_hdr_len(&env, &len);
	CHECK(rc == -E2BIG, "long helo: got=%d want=%d\n", rc, -E2BIG);
	envelope_free(&env);
}

static void test_qid(void **state)
{
	(void)state;
	static const struct {
		uint32_t seg, off;
		const char *qid;
	} ok[] = {
	    {0, 0, "0000000000000000"},
	    {1, 0x1234, "0000000100001234"},
	    {0xDEADBEEF, 0xFFFFFFFF, "DEADBEEFFFFFFFFF"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char q[SPOOL_QID_LEN + 1];
		struct spool_ref r = {ok[i].seg, ok[i].off, 0}, back = {0, 0, 0};
		spool_qid_format(&r, q);
		CHECK(strcmp(q, ok[i].qid) == 0, "format got=%s want=%s\n", q, ok[i].qid);
		int rc = spool_qid_parse(q, &back);
		CHECK(rc == 0 && back.seg == r.seg && back.offset == r.offset,
		      "parse %s got=%d %08X/%08X\n", q, rc, back.seg, back.offset);
	}
	static const char *const bad[] = {"",
					  "000000010000123",
					  "00000001000012345",
					  "000000010000abcd",
					  "00000001 0001234",
					  "G000000000000000"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spool_ref r;
		int rc = spool_qid_parse(bad[i], &r);
		CHECK(rc == -EINVAL, "parse \"%s\" got=%d want=%d\n", bad[i], rc, -EINVAL);
	}
}

/* ---- append, group commit, durable LSN ---- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned wakes;
};

static void waiter_wake(void *arg)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->wakes++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Block until the writer's durable LSN reaches lsn (woken by the committer). */
static void wait_durable(struct waiter *wt, struct spool_writer *w, uint64_t lsn)
{
	pthread_mutex_lock(&wt->mu);
	while (spool_writer_durable(w) < lsn && spool_writer_failed(w) < lsn)
		pthread_cond_wait(&wt->cv, &wt->mu);
	pthread_mutex_unlock(&wt->mu);
}

static void test_append_durable(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_cfg cfg = {.dir = dir,
				.segment_size = 1 << 20,
				.commit_interval_us = 1000000, /* batch fills first */
				.commit_batch = 50};
	char err[256];
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(spool_recover(sp, NULL, NULL), 0);
	assert_int_equal(spool_start(sp), 0);
	struct waiter wt = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct spool_writer *w = spool_writer_new(sp, 0, waiter_wake, &wt);
	assert_non_null(w);

	enum { N = 50 };
	struct spool_ref refs[N];
	uint64_t lsns[N], prev = 0;
	for (int i = 0; i < N; i++) {
		struct envelope env;
		env_fill(&env, 1 + i % 3, (unsigned)i);
		uint8_t *body = body_make((size_t)i * 37, (unsigned)i);
		char qid[SPOOL_QID_LEN + 1];
		int rc = spool_append(w, &env, body, (size_t)i * 37, &refs[i], qid, &lsns[i]);
		CHECK(rc == 0, "append %d: got=%d\n", i, rc);
		CHECK(lsns[i] == prev + refs[i].len, "lsn %d got=%" PRIu64 " want=%" PRIu64 "\n", i,
		      lsns[i], prev + refs[i].len);
		char want[SPOOL_QID_LEN + 1];
		spool_qid_format(&refs[i], want);
		CHECK(strcmp(qid, want) == 0, "qid got=%s want=%s\n", qid, want);
		prev = lsns[i];
		envelope_free(&env);
		free(body);
	}
	wait_durable(&wt, w, lsns[N - 1]);
	CHECK(spool_writer_durable(w) == lsns[N - 1] && spool_writer_failed(w) == 0,
	      "durable got=%" PRIu64 " want=%" PRIu64 " failed=%" PRIu64 "\n",
	      spool_writer_durable(w), lsns[N - 1], spool_writer_failed(w));
	struct spool_stats st;
	spool_get_stats(sp, &st);
	/* 50 records, one batch (commit_batch = 50): a handful of syncs at
	 * most (the first record may start its own batch), never one each. */
	CHECK(st.appended == N && st.syncs <= 4, "stats appended=%" PRIu64 " syncs=%" PRIu64 "\n",
	      st.appended, st.syncs);
	CHECK(wt.wakes >= 1, "wakes=%u\n", wt.wakes);
	for (int i = 0; i < N; i++) {
		struct envelope want, got;
		uint8_t *body;
		size_t bl;
		env_fill(&want, 1 + i % 3, (unsigned)i);
		int rc = spool_read(sp, &refs[i], &got, &body, &bl);
		CHECK(rc == 0, "read %d got=%d\n", i, rc);
		env_check_equal(&got, &want);
		uint8_t *wb = body_make((size_t)i * 37, (unsigned)i);
		CHECK(bl == (size_t)i * 37 && memcmp(body, wb, bl) == 0, "body %d len=%zu\n", i,
		      bl);
		free(wb);
		free(body);
		envelope_free(&want);
		envelope_free(&got);
	}
	/* A wrong ref is refused, not misread. */
	struct spool_ref bad = refs[1];
	bad.offset += 1;
	struct envelope e;
	uint8_t *b;
	size_t bl;
	int rc = spool_read(sp, &bad, &e, &b, &bl);
	CHECK(rc == -EBADMSG, "bad ref got=%d want=%d\n", rc, -EBADMSG);
	spool_writer_close(w);
	spool_close(sp);
	tmpdir_free(dir);
}

static void test_segment_roll(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 4096, 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	uint32_t last_seg = 0, rolls = 0;
	uint8_t *body = body_make(1024, 3);
	struct spool_ref refs[20];
	for (int i = 0; i < 20; i++) {
		struct envelope env;
		env_fill(&env, 1, 1);
		uint64_t lsn;
		assert_int_equal(spool_append(w, &env, body, 1024, &refs[i], NULL, &lsn), 0);
		CHECK(refs[i].seg >= last_seg, "seg id went down: %u after %u\n", refs[i].seg,
		      last_seg);
		CHECK(refs[i].offset + refs[i].len <= 4096, "record %d past segment_size\n", i);
		rolls += refs[i].seg != last_seg;
		last_seg = refs[i].seg;
		envelope_free(&env);
	}
	/* 1 KiB body + ~100 bytes of envelope: 3 records per 4 KiB segment. */
	CHECK(rolls == 7, "segments got=%u want=7\n", rolls);
	spool_commit_batch(sp); /* no committer thread: drive it directly */
	CHECK(spool_writer_durable(w) > 0, "durable=%" PRIu64 "\n", spool_writer_durable(w));
	int n = count_files(dir, ".dat");
	CHECK(n == 7, "files got=%d want=7\n", n);
	for (int i = 0; i < 20; i++) {
		struct envelope e;
		uint8_t *b;
		size_t bl;
		CHECK(spool_read(sp, &refs[i], &e, &b, &bl) == 0 && bl == 1024, "read %d\n", i);
		envelope_free(&e);
		free(b);
	}
	spool_writer_close(w);
	spool_close(sp);
	free(body);
	tmpdir_free(dir);
}

/* ---- journal and reclamation ---- */

static void test_journal_reclaim(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 4096, 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	uint8_t *body = body_make(1500, 3);
	struct spool_ref refs[6];
	for (int i = 0; i < 6; i++) {
		struct envelope env;
		env_fill(&env, 2, 1);
		uint64_t lsn;
		assert_int_equal(spool_append(w, &env, body, 1500, &refs[i], NULL, &lsn), 0);
		envelope_free(&env);
	}
	spool_commit_batch(sp);
	int n = count_files(dir, ".dat");
	CHECK(n == 3, "dat files got=%d want=3\n", n);
	/* Everything final but one recipient of the last record. */
	for (int i = 0; i < 6; i++)
		for (uint32_t r = 0; r < 2; r++)
			if (i != 5 || r != 1)
				assert_int_equal(spool_journal_final(sp, &refs[i], r,
								     r ? SPOOL_RCPT_FAILED
								       : SPOOL_RCPT_DELIVERED),
						 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	/* Two sealed segments all final: gone.  The open one stays. */
	n = count_files(dir, ".dat");
	int j = count_files(dir, ".jnl");
	CHECK(n == 1 && j == 1, "after sync dat=%d jnl=%d want 1/1\n", n, j);
	struct spool_stats st;
	spool_get_stats(sp, &st);
	CHECK(st.reclaimed == 2 && st.segments == 1, "reclaimed=%" PRIu64 " segments=%" PRIu64 "\n",
	      st.reclaimed, st.segments);
	/* Sealing the last one is not enough while a recipient is pending. */
	spool_writer_close(w);
	spool_commit_batch(sp);
	assert_int_equal(spool_journal_sync(sp), 0);
	CHECK(count_files(dir, ".dat") == 1, "pending segment deleted\n");
	assert_int_equal(spool_journal_final(sp, &refs[5], 1, SPOOL_RCPT_DELIVERED), 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	n = count_files(dir, ".dat");
	j = count_files(dir, ".jnl");
	CHECK(n == 0 && j == 0, "end dat=%d jnl=%d want 0/0\n", n, j);
	int rc = spool_journal_final(sp, &refs[0], 0, SPOOL_RCPT_DELIVERED);
	CHECK(rc == -ENOENT, "final on reclaimed got=%d want=%d\n", rc, -ENOENT);
	rc = spool_journal_final(sp, &refs[0], 0, SPOOL_RCPT_PENDING);
	CHECK(rc == -EINVAL, "final PENDING got=%d want=%d\n", rc, -EINVAL);
	spool_close(sp);
	free(body);
	tmpdir_free(dir);
}

/* Segment ids keep increasing across restarts, even when all was reclaimed. */
static void test_ids_across_restart(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	uint32_t last = 0;
	for (int round = 0; round < 3; round++) {
		struct spool *sp = open_spool(dir, 1 << 20, 0);
		assert_int_equal(spool_recover(sp, NULL, NULL), 0);
		struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
		struct envelope env;
		env_fill(&env, 1, 1);
		struct spool_ref ref;
		uint64_t lsn;
		assert_int_equal(spool_append(w, &env, "x", 1, &ref, NULL, &lsn), 0);
		CHECK(ref.seg > last, "round %d seg got=%u want > %u\n", round, ref.seg, last);
		last = ref.seg;
		spool_writer_close(w);
		spool_commit_batch(sp);
		assert_int_equal(spool_journal_final(sp, &ref, 0, SPOOL_RCPT_DELIVERED), 0);
		assert_int_equal(spool_journal_sync(sp), 0);
		CHECK(count_files(dir, ".dat") == 0, "round %d: not reclaimed\n", round);
		envelope_free(&env);
		spool_close(sp);
	}
	tmpdir_free(dir);
}

/* ---- recovery ---- */

struct rec_seen {
	unsigned n;
	struct spool_ref refs[64];
	bool pending[64][4];
	bool noticed[64][4];
	uint32_t nrcpts[64];
	size_t body_len[64];
	struct spool *sp;
};

static int collect(void *arg, const struct spool_ref *ref, const char *qid,
		   const struct envelope *env, const bool *pending, const bool *noticed)
{
	struct rec_seen *s = arg;
	char want[SPOOL_QID_LEN + 1];
	spool_qid_format(ref, want);
	CHECK(strcmp(qid, want) == 0, "qid got=%s want=%s\n", qid, want);
	if (s->n >= 64)
		return -E2BIG;
	s->refs[s->n] = *ref;
	s->nrcpts[s->n] = env->nrcpts;
	for (uint32_t i = 0; i < env->nrcpts && i < 4; i++) {
		s->pending[s->n][i] = pending[i];
		s->noticed[s->n][i] = noticed[i];
	}
	s->n++;
	return 0;
}

static uint8_t *file_read(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void file_write(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Write n records (nrcpts each) into a fresh spool in dir and close it.
 * Returns the segment path in seg_path and the refs. */
static void spool_fill(const char *dir, int n, uint32_t nrcpts, struct spool_ref *refs,
		       char *seg_path, size_t plen)
{
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	for (int i = 0; i < n; i++) {
		struct envelope env;
		env_fill(&env, nrcpts, (unsigned)i);
		uint8_t *body = body_make(200 + (size_t)i, (unsigned)i);
		uint64_t lsn;
		assert_int_equal(spool_append(w, &env, body, 200 + (size_t)i, &refs[i], NULL, &lsn),
				 0);
		envelope_free(&env);
		free(body);
	}
	/* A crash: no writer close, so the segment is not sealed; the
	 * spool_close final sync still runs (as the page cache would keep the
	 * data over a kill -9). */
	spool_close(sp);
	char name[64];
	spool_seg_name(name, sizeof(name), refs[0].seg, "dat");
	snprintf(seg_path, plen, "%s/%s", dir, name);
}

static void test_recover_torn_every_offset(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_ref refs[3];
	char path[512];
	spool_fill(dir, 3, 1, refs, path, sizeof(path));
	size_t full_len;
	uint8_t *full = file_read(path, &full_len);
	uint32_t last = refs[2].offset;
	CHECK(full_len == (size_t)last + refs[2].len, "file len=%zu\n", full_len);
	for (size_t cut = last; cut <= full_len; cut++) {
		file_write(path, full, cut);
		struct rec_seen seen = {0};
		struct spool *sp = open_spool(dir, 1 << 20, 0);
		int rc = spool_recover(sp, collect, &seen);
		unsigned want = cut == full_len ? 3 : 2;
		CHECK(rc == 0 && seen.n == want, "cut=%zu: rc=%d records got=%u want=%u\n", cut, rc,
		      seen.n, want);
		for (unsigned i = 0; i < seen.n; i++) {
			CHECK(seen.refs[i].offset == refs[i].offset &&
				  seen.refs[i].len == refs[i].len,
			      "cut=%zu rec %u: got %u/%u want %u/%u\n", cut, i, seen.refs[i].offset,
			      seen.refs[i].len, refs[i].offset, refs[i].len);
			struct envelope e;
			uint8_t *b;
			size_t bl;
			CHECK(spool_read(sp, &seen.refs[i], &e, &b, &bl) == 0 && bl == 200 + i,
			      "cut=%zu: read %u\n", cut, i);
			envelope_free(&e);
			free(b);
		}
		off_t sz = file_size(path);
		off_t want_sz = cut == full_len ? (off_t)full_len : (off_t)last;
		CHECK(sz == want_sz, "cut=%zu: file size got=%lld want=%lld\n", cut, (long long)sz,
		      (long long)want_sz);
		spool_close(sp);
	}
	free(full);
	tmpdir_free(dir);
}

/*
 * A bad CRC in the middle record: recovery stops there and cuts the file,
 * so the good record after it is dropped as well (it cannot be trusted to
 * be framed right).  Documented behaviour: a bit flip on disk costs every
 * record after it in that segment; the log line says how many bytes.
 */
static void test_recover_corrupt_middle(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_ref refs[3];
	char path[512];
	spool_fill(dir, 3, 1, refs, path, sizeof(path));
	size_t len;
	uint8_t *data = file_read(path, &len);
	data[refs[1].offset + refs[1].len - 10] ^= 0x01; /* a body byte of record 1 */
	file_write(path, data, len);
	struct rec_seen seen = {0};
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, collect, &seen), 0);
	CHECK(seen.n == 1 && seen.refs[0].offset == 0, "records got=%u want=1\n", seen.n);
	CHECK(file_size(path) == (off_t)refs[1].offset, "size got=%lld want=%u\n",
	      (long long)file_size(path), refs[1].offset);
	struct envelope e;
	uint8_t *b;
	size_t bl;
	int rc = spool_read(sp, &refs[1], &e, &b, &bl);
	CHECK(rc == -EBADMSG, "read dropped record got=%d want=%d\n", rc, -EBADMSG);
	spool_close(sp);
	free(data);
	tmpdir_free(dir);
}

static void test_recover_journal(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_ref refs[3];
	char path[512];
	spool_fill(dir, 3, 3, refs, path, sizeof(path));
	/* Journal: record 0 rcpt 1 delivered; record 1 all final. */
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, NULL, NULL), 0);
	assert_int_equal(spool_journal_final(sp, &refs[0], 1, SPOOL_RCPT_DELIVERED), 0);
	for (uint32_t r = 0; r < 3; r++)
		assert_int_equal(spool_journal_final(sp, &refs[1], r, SPOOL_RCPT_FAILED), 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	spool_close(sp);
	/* A torn journal entry at the end (crash mid-write): ignored. */
	char jpath[600];
	snprintf(jpath, sizeof(jpath), "%.*s.jnl", (int)(strlen(path) - 4), path);
	size_t jlen;
	uint8_t *j = file_read(jpath, &jlen);
	CHECK(jlen == 4 * SPOOL_JNL_ENTRY, "journal len got=%zu want=%d\n", jlen,
	      4 * SPOOL_JNL_ENTRY);
	uint8_t torn[SPOOL_JNL_ENTRY + 7];
	spool_jnl_entry_build(torn, refs[0].offset, 0, SPOOL_RCPT_DELIVERED);
	uint8_t *j2 = malloc(jlen + 7);
	memcpy(j2, j, jlen);
	memcpy(j2 + jlen, torn, 7);
	file_write(jpath, j2, jlen + 7);

	struct rec_seen seen = {0};
	sp = open_spool(dir, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, collect, &seen), 0);
	CHECK(seen.n == 2, "records got=%u want=2\n", seen.n);
	CHECK(seen.refs[0].offset == refs[0].offset && seen.pending[0][0] && !seen.pending[0][1] &&
		  seen.pending[0][2],
	      "record 0 pending got=%d%d%d want=101\n", seen.pending[0][0], seen.pending[0][1],
	      seen.pending[0][2]);
	CHECK(seen.refs[1].offset == refs[2].offset && seen.pending[1][0] && seen.pending[1][1] &&
		  seen.pending[1][2],
	      "record 2 pending got=%d%d%d want=111\n", seen.pending[1][0], seen.pending[1][1],
	      seen.pending[1][2]);
	CHECK(file_size(jpath) == (off_t)jlen, "journal size got=%lld want=%zu\n",
	      (long long)file_size(jpath), jlen);
	/* Finishing the rest at run time reclaims the recovered (sealed) segment. */
	for (uint32_t r = 0; r < 3; r++) {
		if (r != 1)
			assert_int_equal(spool_journal_final(sp, &refs[0], r, SPOOL_RCPT_DELIVERED),
					 0);
		assert_int_equal(spool_journal_final(sp, &refs[2], r, SPOOL_RCPT_DELIVERED), 0);
	}
	assert_int_equal(spool_journal_sync(sp), 0);
	CHECK(file_size(path) < 0 && file_size(jpath) < 0, "recovered segment not reclaimed\n");
	spool_close(sp);
	free(j);
	free(j2);
	tmpdir_free(dir);
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	uint8_t *b = file_read(from, &len);
	file_write(to, b, len);
	free(b);
}

static void test_recover_all_final_deleted(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	char *dir2 = tmpdir_new();
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	struct spool_ref refs[2];
	for (int i = 0; i < 2; i++) {
		struct envelope env;
		env_fill(&env, 2, 1);
		uint64_t lsn;
		assert_int_equal(spool_append(w, &env, "body\r\n", 6, &refs[i], NULL, &lsn), 0);
		envelope_free(&env);
	}
	spool_commit_batch(sp);
	for (int i = 0; i < 2; i++)
		for (uint32_t r = 0; r < 2; r++)
			assert_int_equal(spool_journal_final(sp, &refs[i], r, SPOOL_RCPT_DELIVERED),
					 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	/* The writer still appends to it, so it is not reclaimed yet: copy
	 * the files as a crash would leave them. */
	char name[64], a[600], b[600];
	for (int k = 0; k < 2; k++) {
		spool_seg_name(name, sizeof(name), refs[0].seg, k ? "jnl" : "dat");
		snprintf(a, sizeof(a), "%s/%s", dir, name);
		snprintf(b, sizeof(b), "%s/%s", dir2, name);
		copy_file(a, b);
	}
	/* And an orphan journal. */
	spool_seg_name(name, sizeof(name), refs[0].seg + 100, "jnl");
	snprintf(b, sizeof(b), "%s/%s", dir2, name);
	file_write(b, (const uint8_t *)"", 0);
	spool_writer_close(w);
	spool_close(sp);

	struct rec_seen seen = {0};
	sp = open_spool(dir2, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, collect, &seen), 0);
	CHECK(seen.n == 0, "records got=%u want=0\n", seen.n);
	int n = count_files(dir2, ".dat"), j = count_files(dir2, ".jnl");
	CHECK(n == 0 && j == 0, "files left dat=%d jnl=%d\n", n, j);
	/* New segment ids stay above the recovered ones. */
	w = spool_writer_new(sp, 0, NULL, NULL);
	struct envelope env;
	env_fill(&env, 1, 1);
	struct spool_ref ref;
	uint64_t lsn;
	assert_int_equal(spool_append(w, &env, "x", 1, &ref, NULL, &lsn), 0);
	CHECK(ref.seg > refs[0].seg + 100, "new seg %u not above %u\n", ref.seg, refs[0].seg + 100);
	envelope_free(&env);
	spool_writer_close(w);
	spool_close(sp);
	tmpdir_free(dir);
	tmpdir_free(dir2);
}

/* ---- error paths ---- */

static void test_min_free(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 1 << 20, UINT64_MAX);
	CHECK(!spool_space_ok(sp), "space_ok with min_free huge\n");
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	struct envelope env;
	env_fill(&env, 1, 1);
	struct spool_ref ref;
	uint64_t lsn;
	int rc = spool_append(w, &env, "x", 1, &ref, NULL, &lsn);
	CHECK(rc == -ENOSPC, "append got=%d want=%d\n", rc, -ENOSPC);
	CHECK(count_files(dir, ".dat") == 0, "a segment was created\n");
	envelope_free(&env);
	spool_writer_close(w);
	spool_close(sp);
	tmpdir_free(dir);
}

/* A write that fails (file size limit) returns -errno; the next append goes
 * to a new segment, and what was appended before stays readable.  In a
 * child, since RLIMIT_FSIZE is per process. */
static void test_write_error(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {8192, 8192};
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(10);
		struct spool_cfg cfg = {.dir = dir, .segment_size = 1 << 20, .commit_batch = 1};
		char err[256];
		struct spool *sp = spool_open(&cfg, err, sizeof(err));
		if (!sp)
			_exit(11);
		struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
		uint8_t body[3000];
		memset(body, 'a', sizeof(body));
		struct envelope env;
		memset(&env, 0, sizeof(env));
		env.sender = strdup("a@b");
		if (envelope_add_rcpt(&env, "c@d", NULL, 0) != 0)
			_exit(12);
		struct spool_ref r1, r2, r3;
		uint64_t lsn1, lsn2, lsn3;
		if (spool_append(w, &env, body, sizeof(body), &r1, NULL, &lsn1) != 0 ||
		    spool_append(w, &env, body, sizeof(body), &r2, NULL, &lsn2) != 0)
			_exit(13);
		int rc = spool_append(w, &env, body, sizeof(body), &r3, NULL, &lsn3);
		if (rc != -EFBIG)
			_exit(14);
		if (spool_append(w, &env, body, sizeof(body), &r3, NULL, &lsn3) != 0)
			_exit(15);
		if (r3.seg == r1.seg || r3.offset != 0 || lsn3 != lsn2 + r3.len)
			_exit(16);
		spool_commit_batch(sp);
		if (spool_writer_durable(w) != lsn3 || spool_writer_failed(w) != 0)
			_exit(17);
		struct envelope e;
		uint8_t *b;
		size_t bl;
		if (spool_read(sp, &r2, &e, &b, &bl) != 0 || bl != sizeof(body))
			_exit(18);
		envelope_free(&e);
		free(b);
		envelope_free(&env);
		spool_writer_close(w);
		spool_close(sp);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "child status got=%d (exit code = failing step) want=0\n",
	      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	tmpdir_free(dir);
}

/* An fdatasync that fails publishes the failed LSN, hides later durable
 * progress until the worker has read it, and moves the writer to a new
 * segment. */
static void test_sync_error(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	struct envelope env;
	env_fill(&env, 1, 1);
	struct spool_ref r1, r2, r3, r4;
	uint64_t l1, l2, l3, l4;
	assert_int_equal(spool_append(w, &env, "one", 3, &r1, NULL, &l1), 0);
	spool_commit_batch(sp);
	CHECK(spool_writer_durable(w) == l1, "durable got=%" PRIu64 " want=%" PRIu64 "\n",
	      spool_writer_durable(w), l1);
	assert_int_equal(spool_append(w, &env, "two", 3, &r2, NULL, &l2), 0);
	/* fdatasync on a pipe fails with EINVAL: the fault injection. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	int saved = dup(w->fd);
	assert_true(dup2(p[0], w->fd) >= 0);
	spool_commit_batch(sp);
	assert_true(dup2(saved, w->fd) >= 0); /* the retired fd is the real file again */
	close(saved);
	close(p[0]);
	close(p[1]);
	/* The worker has not read failed yet; a later good batch must not make
	 * record 2 look durable. */
	assert_int_equal(spool_append(w, &env, "three", 5, &r3, NULL, &l3), 0);
	CHECK(r3.seg != r2.seg && r3.offset == 0, "no roll after sync error: seg %u -> %u\n",
	      r2.seg, r3.seg);
	spool_commit_batch(sp);
	uint64_t d = spool_writer_durable(w), f = spool_writer_failed(w);
	CHECK(d == l1 && f == l2,
	      "first look: durable=%" PRIu64 " failed=%" PRIu64 " want %" PRIu64 "/%" PRIu64 "\n",
	      d, f, l1, l2);
	d = spool_writer_durable(w);
	CHECK(d == l3, "second look: durable=%" PRIu64 " want=%" PRIu64 "\n", d, l3);
	/* The new segment works normally. */
	assert_int_equal(spool_append(w, &env, "four", 4, &r4, NULL, &l4), 0);
	spool_commit_batch(sp);
	CHECK(spool_writer_durable(w) == l4 && spool_writer_failed(w) == l2,
	      "after: durable=%" PRIu64 " failed=%" PRIu64 "\n", spool_writer_durable(w),
	      spool_writer_failed(w));
	envelope_free(&env);
	spool_writer_close(w);
	spool_close(sp);
	tmpdir_free(dir);
}

/*
 * After spool_writer_close() returns, the committer must never call that
 * writer's wake again: the worker frees its wake argument and closes its
 * eventfd right after (a late write could land in a reused fd).  The
 * committer snapshots every writer before it syncs and wakes them one by
 * one; the close here happens in between, from the first writer's wake.
 */
struct close_race {
	struct spool_writer *victim; /* closed from the other writer's wake */
	bool closed;		     /* victim was closed */
	unsigned late_wakes;	     /* victim woken after its close */
};

static void race_victim_wake(void *arg)
{
	struct close_race *cr = arg;
	if (cr->closed)
		cr->late_wakes++;
}

static void race_other_wake(void *arg)
{
	struct close_race *cr = arg;
	if (!cr->closed) {
		spool_writer_close(cr->victim);
		cr->closed = true;
	}
}

static void test_no_wake_after_close(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	struct close_race cr = {0};
	/* Writers are listed newest first: other is committed before victim. */
	struct spool_writer *victim = spool_writer_new(sp, 0, race_victim_wake, &cr);
	struct spool_writer *other = spool_writer_new(sp, 1, race_other_wake, &cr);
	cr.victim = victim;
	struct envelope env;
	env_fill(&env, 1, 1);
	struct spool_ref r;
	uint64_t lv, lo;
	assert_int_equal(spool_append(victim, &env, "v", 1, &r, NULL, &lv), 0);
	assert_int_equal(spool_append(other, &env, "o", 1, &r, NULL, &lo), 0);
	spool_commit_batch(sp);
	CHECK(cr.closed, "other's wake did not run\n");
	CHECK(cr.late_wakes == 0, "victim woken after close: got=%u want=0\n", cr.late_wakes);
	/* Its records are still synced: only the wake-up is skipped. */
	CHECK(spool_writer_durable(victim) == lv, "victim durable got=%" PRIu64 " want=%" PRIu64 "\n",
	      spool_writer_durable(victim), lv);
	envelope_free(&env);
	spool_writer_close(other);
	spool_close(sp);
	tmpdir_free(dir);
}

/* A damaged next-id file (not a clean decimal) is ignored, not taken as a
 * huge mark that would exhaust the segment ids. */
static void test_ids_file_damaged(void **state)
{
	(void)state;
	static const char *const bad[] = {"-1\n",   "9999999999\n", "99999999999999999999\n",
					  "12ab\n", "\n",	       ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dir = tmpdir_new();
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_IDS_FILE);
		file_write(path, (const uint8_t *)bad[i], strlen(bad[i]));
		struct spool *sp = open_spool(dir, 1 << 20, 0);
		assert_int_equal(spool_recover(sp, NULL, NULL), 0);
		struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
		struct envelope env;
		env_fill(&env, 1, 1);
		struct spool_ref ref = {0};
		uint64_t lsn;
		int rc = spool_append(w, &env, "x", 1, &ref, NULL, &lsn);
		CHECK(rc == 0 && ref.seg < 1000000, "next-id %zu: append rc=%d seg=%u want 0, small\n",
		      i, rc, ref.seg);
		envelope_free(&env);
		spool_writer_close(w);
		spool_close(sp);
		tmpdir_free(dir);
	}
}

static void test_dir_in_use(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	struct spool_cfg cfg = {.dir = dir};
	char err[256] = "";
	struct spool *sp2 = spool_open(&cfg, err, sizeof(err));
	CHECK(!sp2 && strstr(err, "in use"), "second open got=%p err=%s\n", (void *)sp2, err);
	spool_close(sp);
	tmpdir_free(dir);
}

/* A delay notice is remembered across a restart and is not final: the
 * recipient stays pending and the segment is not reclaimed. */
static void test_recover_delay_noticed(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_ref refs[1];
	char path[512];
	spool_fill(dir, 1, 2, refs, path, sizeof(path));
	struct spool *sp = open_spool(dir, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, NULL, NULL), 0);
	assert_int_equal(spool_journal_delay_noticed(sp, &refs[0], 1), 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	spool_close(sp);
	CHECK(count_files(dir, ".dat") == 1, "segment reclaimed by a non-final entry\n");

	struct rec_seen seen = {0};
	sp = open_spool(dir, 1 << 20, 0);
	assert_int_equal(spool_recover(sp, collect, &seen), 0);
	CHECK(seen.n == 1 && seen.pending[0][0] && seen.pending[0][1],
	      "pending got n=%u %d%d want 1: 11\n", seen.n, seen.pending[0][0],
	      seen.pending[0][1]);
	CHECK(!seen.noticed[0][0] && seen.noticed[0][1], "noticed got=%d%d want=01\n",
	      seen.noticed[0][0], seen.noticed[0][1]);
	/* Both final now: reclaimed although one had a notice entry too. */
	assert_int_equal(spool_journal_final(sp, &refs[0], 0, SPOOL_RCPT_DELIVERED), 0);
	assert_int_equal(spool_journal_final(sp, &refs[0], 1, SPOOL_RCPT_FAILED), 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	CHECK(count_files(dir, ".dat") == 0, "segment not reclaimed when all final\n");
	spool_close(sp);
	tmpdir_free(dir);
}

/* max_size: an append that would pass it gets -ENOSPC (452 4.3.1); space
 * freed by reclamation, and counted again after a restart. */
static void test_max_size(void **state)
{
	(void)state;
	char *dir = tmpdir_new();
	struct spool_cfg cfg = {.dir = dir,
				.segment_size = 4096,
				.max_size = 10000,
				.commit_interval_us = 1000,
				.commit_batch = 64};
	char err[256] = "";
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	CHECK(sp, "spool_open: %s\n", err);
	assert_int_equal(spool_recover(sp, NULL, NULL), 0);
	assert_int_equal(spool_start(sp), 0);
	struct spool_writer *w = spool_writer_new(sp, 0, NULL, NULL);
	struct envelope env;
	env_fill(&env, 1, 1);
	uint8_t *body = body_make(3000, 1);
	struct spool_ref refs[8];
	uint64_t lsn;
	int n = 0, rc = 0;
	while (n < 8 && (rc = spool_append(w, &env, body, 3000, &refs[n], NULL, &lsn)) == 0)
		n++;
	CHECK(rc == -ENOSPC && n == 3, "appends got=%d rc=%d want 3 then -ENOSPC\n", n, rc);
	struct spool_stats st;
	spool_get_stats(sp, &st);
	CHECK(st.bytes > 9000 && st.bytes <= 10000, "bytes got=%llu\n",
	      (unsigned long long)st.bytes);
	spool_writer_close(w);
	spool_close(sp);

	/* After a restart the recovered segments count against max_size. */
	sp = spool_open(&cfg, err, sizeof(err));
	CHECK(sp, "spool_open: %s\n", err);
	assert_int_equal(spool_recover(sp, NULL, NULL), 0);
	assert_int_equal(spool_start(sp), 0);
	w = spool_writer_new(sp, 0, NULL, NULL);
	struct spool_ref r2;
	rc = spool_append(w, &env, body, 3000, &r2, NULL, &lsn);
	CHECK(rc == -ENOSPC, "after restart got=%d want -ENOSPC\n", rc);
	/* Delivering (and reclaiming) the first segment makes room. */
	assert_int_equal(spool_journal_final(sp, &refs[0], 0, SPOOL_RCPT_DELIVERED), 0);
	assert_int_equal(spool_journal_sync(sp), 0);
	rc = spool_append(w, &env, body, 3000, &r2, NULL, &lsn);
	CHECK(rc == 0, "after reclaim got=%d want 0\n", rc);
	spool_writer_close(w);
	spool_close(sp);
	envelope_free(&env);
	free(body);
	tmpdir_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_roundtrip),
	    cmocka_unit_test(test_record_corrupt_every_byte),
	    cmocka_unit_test(test_record_refuse_bad_env),
	    cmocka_unit_test(test_qid),
	    cmocka_unit_test(test_append_durable),
	    cmocka_unit_test(test_segment_roll),
	    cmocka_unit_test(test_journal_reclaim),
	    cmocka_unit_test(test_ids_across_restart),
	    cmocka_unit_test(test_recover_torn_every_offset),
	    cmocka_unit_test(test_recover_corrupt_middle),
	    cmocka_unit_test(test_recover_journal),
	    cmocka_unit_test(test_recover_all_final_deleted),
	    cmocka_unit_test(test_min_free),
	    cmocka_unit_test(test_write_error),
	    cmocka_unit_test(test_sync_error),
	    cmocka_unit_test(test_dir_in_use),
	    cmocka_unit_test(test_no_wake_after_close),
	    cmocka_unit_test(test_ids_file_damaged),
	    cmocka_unit_test(test_recover_delay_noticed),
	    cmocka_unit_test(test_max_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
