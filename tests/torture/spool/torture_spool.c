/*
 * torture_spool: kill -9 while two writers append, then recover.
 *
 * Each round forks a child that opens the spool (recovering what earlier
 * rounds left), starts the committer and runs two writer threads appending
 * records as fast as they can.  For every record whose LSN became durable
 * (what would get a 250) the child writes "<qid> <body hash>\n" to a pipe.
 * The parent SIGKILLs the child after a random number of acknowledgements
 * or a random time, then recovers the spool and checks:
 *  - every acknowledged qid not yet finalised is recovered, with the body
 *    hash it was acknowledged with;
 *  - every recovered record is intact (the sender carries its body hash).
 * It then journals half of the acknowledged messages (and every
 * unacknowledged one) as delivered, so later rounds also exercise the
 * journal, reclamation and segment ids across restarts.
 *
 *	torture_spool [rounds] [seed]     (SPOOL_TORTURE_SEED also sets the seed)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/envelope.h"
#include "common/log.h"
#include "queue/spool.h"
#include "queue/spool_pvt.h"

#define WINDOW 128 /* records in flight per writer (connections waiting for 250) */

static int failures;

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		fprintf(stderr, "FAIL: " __VA_ARGS__);                                             \
		failures++;                                                                        \
	} while (0)

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t hash64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- child ---- */

struct inflight {
	uint64_t lsn;
	uint64_t hash;
	char qid[SPOOL_QID_LEN + 1];
};

struct worker {
	struct spool *sp;
	struct spool_writer *w;
	unsigned id;
	int pipe_fd;
	uint64_t seed;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct inflight q[WINDOW];
	unsigned head, count;
};

static void worker_wake(void *arg)
{
	struct worker *k = arg;
	pthread_mutex_lock(&k->mu);
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

/* Send the acknowledgements the durable LSN now covers. */
static void worker_release(struct worker *k)
{
	uint64_t durable = spool_writer_durable(k->w);
	uint64_t failed = spool_writer_failed(k->w);
	while (k->count) {
		struct inflight *f = &k->q[k->head];
		if (f->lsn > durable && f->lsn > failed)
			break;
		if (f->lsn <= durable) {
			char line[64];
			int n =
			    snprintf(line, sizeof(line), "%s %016" PRIx64 "\n", f->qid, f->hash);
			/* Under PIPE_BUF: atomic, the two threads' lines never mix. */
			if (write(k->pipe_fd, line, (size_t)n) != n)
				_exit(3);
		}
		k->head = (k->head + 1) % WINDOW;
		k->count--;
	}
}

static void *worker_main(void *arg)
{
	struct worker *k = arg;
	uint8_t *body = malloc(8192);
	if (!body)
		_exit(4);
	for (;;) {
		size_t len = rng_next(&k->seed) % 6000;
		if (rng_next(&k->seed) % 8 == 0)
			len = 0;
		for (size_t i = 0; i < len; i += 8) {
			uint64_t v = rng_next(&k->seed);
			memcpy(body + i, &v, len - i < 8 ? len - i : 8);
		}
		uint64_t h = hash64(body, len);
		struct envelope env;
		memset(&env, 0, sizeof(env));
		char sender[64];
		snprintf(sender, sizeof(sender), "h%016" PRIx64 "@w%u.torture.test", h, k->id);
		env.sender = strdup(sender);
		env.protocol = "ESMTP";
		env.arrival = (int64_t)time(NULL);
		unsigned nr = 1 + (unsigned)(rng_next(&k->seed) % 3);
		for (unsigned i = 0; i < nr; i++)
			if (envelope_add_rcpt(&env, "rcpt@torture.test", NULL, 0) != 0)
				_exit(5);
		pthread_mutex_lock(&k->mu);
		while (k->count == WINDOW) {
			worker_release(k);
			if (k->count == WINDOW)
				pthread_cond_wait(&k->cv, &k->mu);
		}
		pthread_mutex_unlock(&k->mu);
		struct inflight *f = &k->q[(k->head + k->count) % WINDOW];
		struct spool_ref ref;
		int rc = spool_append(k->w, &env, body, len, &ref, f->qid, &f->lsn);
		envelope_free(&env);
		if (rc < 0) {
			fprintf(stderr, "child: append: %s\n", strerror(-rc));
			_exit(6);
		}
		f->hash = h;
		pthread_mutex_lock(&k->mu);
		k->count++;
		worker_release(k);
		pthread_mutex_unlock(&k->mu);
	}
	return NULL;
}

static void child_main(const char *dir, int pipe_fd, uint64_t seed, uint64_t segsize)
{
	struct spool_cfg cfg = {
	    .dir = dir, .segment_size = segsize, .commit_interval_us = 200, .commit_batch = 32};
	char err[256];
	log_set_level(LOG_LEVEL_ERR);
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	if (!sp) {
		fprintf(stderr, "child: %s\n", err);
		_exit(2);
	}
	if (spool_recover(sp, NULL, NULL) < 0 || spool_start(sp) < 0)
		_exit(2);
	static struct worker ks[2];
	pthread_t th[2];
	for (unsigned i = 0; i < 2; i++) {
		struct worker *k = &ks[i];
		k->sp = sp;
		k->id = i;
		k->pipe_fd = pipe_fd;
		k->seed = seed * 2 + i + 1;
		pthread_mutex_init(&k->mu, NULL);
		pthread_cond_init(&k->cv, NULL);
		k->w = spool_writer_new(sp, i, worker_wake, k);
		if (!k->w || pthread_create(&th[i], NULL, worker_main, k) != 0)
			_exit(2);
	}
	pthread_join(th[0], NULL); /* never returns: SIGKILL ends us */
	_exit(0);
}

/* ---- parent ---- */

/* Open-addressing map qid (as seg << 32 | offset) -> body hash. */
struct map {
	uint64_t *keys, *vals;
	uint8_t *used; /* 0 empty, 1 live, 2 deleted */
	size_t cap, n;
};

static size_t map_slot(const struct map *m, uint64_t key)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
}

static void map_put(struct map *m, uint64_t key, uint64_t val);

static void map_grow(struct map *m)
{
	struct map old = *m;
	m->cap = old.cap ? old.cap * 2 : 1024;
	m->keys = calloc(m->cap, sizeof(uint64_t));
	m->vals = calloc(m->cap, sizeof(uint64_t));
	m->used = calloc(m->cap, 1);
	m->n = 0;
	if (!m->keys || !m->vals || !m->used)
		abort();
	for (size_t i = 0; i < old.cap; i++)
		if (old.used[i] == 1)
			map_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
	free(old.used);
}

static uint64_t *map_get(struct map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = map_slot(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (m->used[i] == 0)
			return NULL;
		if (m->used[i] == 1 && m->keys[i] == key)
			return &m->vals[i];
	}
}

static void map_put(struct map *m, uint64_t key, uint64_t val)
{
	uint64_t *v = map_get(m, key);
	if (v) {
		*v = val;
		return;
	}
	if ((m->n + 1) * 2 > m->cap)
		map_grow(m);
	size_t i = map_slot(m, key);
	while (m->used[i] == 1)
		i = (i + 1) & (m->cap - 1);
	m->used[i] = 1;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
}

static void map_del(struct map *m, uint64_t key)
{
	uint64_t *v = map_get(m, key);
	if (v) {
		m->used[v - m->vals] = 2;
		m->n--;
	}
}

struct check_ctx {
	struct spool *sp;
	struct map *acked; /* acknowledged, not yet finalised */
	struct map *seen;  /* recovered this round: key -> 1 */
	struct spool_ref *refs;
	uint32_t *nrcpts;
	size_t nrefs, cap;
	unsigned corrupt;
};

static int check_one(void *arg, const struct spool_ref *ref, const char *qid,
		     const struct envelope *env, const bool *pending, const bool *noticed)
{
	struct check_ctx *c = arg;
	(void)pending;
	(void)noticed;
	uint64_t key = (uint64_t)ref->seg << 32 | ref->offset;
	struct envelope e2;
	uint8_t *body;
	size_t len;
	int rc = spool_read(c->sp, ref, &e2, &body, &len);
	if (rc < 0) {
		FAIL("%s: spool_read: %s\n", qid, strerror(-rc));
		return 0;
	}
	uint64_t h = hash64(body, len), want;
	if (sscanf(env->sender, "h%" SCNx64, &want) != 1 || want != h) {
		FAIL("%s: body hash %016" PRIx64 " does not match sender %s\n", qid, h,
		     env->sender);
		c->corrupt++;
	}
	uint64_t *ack = map_get(c->acked, key);
	if (ack && *ack != h)
		FAIL("%s: acknowledged hash %016" PRIx64 " recovered %016" PRIx64 "\n", qid, *ack,
		     h);
	map_put(c->seen, key, 1);
	if (c->nrefs == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->refs = realloc(c->refs, c->cap * sizeof(*c->refs));
		c->nrcpts = realloc(c->nrcpts, c->cap * sizeof(*c->nrcpts));
		if (!c->refs || !c->nrcpts)
			abort();
	}
	c->refs[c->nrefs] = *ref;
	c->nrcpts[c->nrefs++] = env->nrcpts;
	envelope_free(&e2);
	free(body);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Parse "<qid> <hash>\n" lines from buf; returns bytes consumed. */
static size_t take_lines(char *buf, size_t len, struct map *acked, unsigned *count)
{
	size_t off = 0;
	for (;;) {
		char *nl = memchr(buf + off, '\n', len - off);
		if (!nl)
			return off;
		*nl = 0;
		char qid[SPOOL_QID_LEN + 1];
		uint64_t h;
		struct spool_ref ref;
		if (sscanf(buf + off, "%16s %" SCNx64, qid, &h) != 2 ||
		    spool_qid_parse(qid, &ref) < 0) {
			FAIL("bad line from child: %s\n", buf + off);
		} else {
			map_put(acked, (uint64_t)ref.seg << 32 | ref.offset, h);
			(*count)++;
		}
		off = (size_t)(nl - buf) + 1;
	}
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 8;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0;
	if (!seed && getenv("SPOOL_TORTURE_SEED"))
		seed = strtoull(getenv("SPOOL_TORTURE_SEED"), NULL, 0);
	if (!seed)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("torture_spool: rounds=%u seed=%" PRIu64 "\n", rounds, seed);
	fflush(stdout);
	char dir[] = "/tmp/spool-torture-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	struct map acked = {0};
	uint64_t rng = seed;
	unsigned total_acked = 0, total_recovered = 0;
	for (unsigned r = 0; r < rounds && !failures; r++) {
		unsigned want_acks = 50 + (unsigned)(rng_next(&rng) % 3000);
		uint64_t max_ms = 20 + rng_next(&rng) % 400;
		uint64_t segsize = (rng_next(&rng) % 2) ? 64 << 10 : 1 << 20;
		int p[2];
		if (pipe(p) != 0) {
			perror("pipe");
			return 1;
		}
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			close(p[0]);
			child_main(dir, p[1], rng_next(&rng) + r, segsize);
		}
		close(p[1]);
		/* Read acknowledgements until the budget, then kill -9. */
		static char buf[1 << 16];
		size_t have = 0;
		unsigned got = 0;
		uint64_t deadline = now_ms() + max_ms;
		bool killed = false;
		for (;;) {
			uint64_t now = now_ms();
			if (!killed && (got >= want_acks || now >= deadline)) {
				kill(pid, SIGKILL);
				killed = true;
			}
			struct pollfd pfd = {p[0], POLLIN, 0};
			int timeout = killed ? -1 : (int)(deadline - now);
			if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
				perror("poll");
				return 1;
			}
			if (!(pfd.revents & (POLLIN | POLLHUP)))
				continue;
			ssize_t n = read(p[0], buf + have, sizeof(buf) - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				perror("read");
				return 1;
			}
			if (n == 0)
				break; /* child dead: every line it wrote is in */
			have += (size_t)n;
			size_t used = take_lines(buf, have, &acked, &got);
			memmove(buf, buf + used, have - used);
			have -= used;
		}
		close(p[0]);
		int status;
		waitpid(pid, &status, 0);
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
			FAIL("round %u: child ended by itself (status %d) before the kill\n", r,
			     status);
			break;
		}
		total_acked += got;

		/* Recover and check. */
		struct spool_cfg cfg = {.dir = dir, .segment_size = segsize};
		char err[256];
		log_set_level(LOG_LEVEL_WARN);
		struct spool *sp = spool_open(&cfg, err, sizeof(err));
		if (!sp) {
			FAIL("round %u: spool_open: %s\n", r, err);
			break;
		}
		struct map seen = {0};
		struct check_ctx c = {.sp = sp, .acked = &acked, .seen = &seen};
		int rc = spool_recover(sp, check_one, &c);
		if (rc < 0)
			FAIL("round %u: spool_recover: %s\n", r, strerror(-rc));
		unsigned missing = 0;
		for (size_t i = 0; i < acked.cap; i++) {
			if (acked.used[i] != 1 || map_get(&seen, acked.keys[i]))
				continue;
			if (missing++ < 10)
				FAIL("round %u: acknowledged %08" PRIX64 "%08" PRIX64
				     " not recovered\n",
				     r, acked.keys[i] >> 32, acked.keys[i] & 0xffffffff);
		}
		total_recovered += (unsigned)c.nrefs;
		printf("round %u: acked=%u (pending %zu) recovered=%zu missing=%u corrupt=%u "
		       "segsize=%" PRIu64 "\n",
		       r, got, acked.n, c.nrefs, missing, c.corrupt, segsize);
		fflush(stdout);
		/* Finalise every unacknowledged one and half the acknowledged. */
		for (size_t i = 0; i < c.nrefs; i++) {
			uint64_t key = (uint64_t)c.refs[i].seg << 32 | c.refs[i].offset;
			if (map_get(&acked, key) && rng_next(&rng) % 2)
				continue;
			for (uint32_t k = 0; k < c.nrcpts[i]; k++)
				if (spool_journal_final(sp, &c.refs[i], k, SPOOL_RCPT_DELIVERED) <
				    0)
					FAIL("journal_final\n");
			map_del(&acked, key);
		}
		if (spool_journal_sync(sp) < 0)
			FAIL("journal_sync\n");
		spool_close(sp);
		free(c.refs);
		free(c.nrcpts);
		free(seen.keys);
		free(seen.vals);
		free(seen.used);
	}
	printf("torture_spool: %s acked=%u recovered=%u seed=%" PRIu64 "\n",
	       failures ? "FAILED" : "ok", total_acked, total_recovered, seed);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(acked.keys);
	free(acked.vals);
	free(acked.used);
	return failures ? 1 : 0;
}
