/*
 * spool_bench: durable records per second through the spool's group commit.
 *
 * W writer threads (default 2) append records of S bytes of body (default
 * 1024) as fast as they can, each with up to N records waiting for their
 * 250 (default 256, like that many connections); the committer batches the
 * fdatasyncs.  Prints durable records/s, fdatasyncs/s, records per sync and
 * the append-to-durable latency (p50/p99).
 *
 *	spool_bench [-d dir] [-t seconds] [-w writers] [-s body bytes]
 *		    [-n window] [-i commit_interval_us] [-b commit_batch]
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/envelope.h"
#include "common/log.h"
#include "queue/spool.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct bw {
	struct spool *sp;
	struct spool_writer *w;
	pthread_t th;
	unsigned id, window;
	size_t body_len;
	uint64_t stop_at;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t *lsn, *t0; /* ring of in-flight records */
	unsigned head, count;
	uint64_t done;
	uint64_t *lat; /* latency samples, ns */
	size_t nlat, cap;
};

static void bw_wake(void *arg)
{
	struct bw *b = arg;
	pthread_mutex_lock(&b->mu);
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void bw_release(struct bw *b)
{
	uint64_t d = spool_writer_durable(b->w);
	uint64_t f = spool_writer_failed(b->w);
	uint64_t t = now_ns();
	while (b->count && (b->lsn[b->head] <= d || b->lsn[b->head] <= f)) {
		if (b->nlat < b->cap)
			b->lat[b->nlat++] = t - b->t0[b->head];
		b->head = (b->head + 1) % b->window;
		b->count--;
		b->done++;
	}
}

static void *bw_main(void *arg)
{
	struct bw *b = arg;
	uint8_t *body = malloc(b->body_len ? b->body_len : 1);
	memset(body, 'x', b->body_len);
	struct envelope env;
	memset(&env, 0, sizeof(env));
	env.sender = strdup("bench@example.org");
	env.client_addr = strdup("192.0.2.1");
	env.helo = strdup("bench.example.org");
	env.protocol = "ESMTP";
	envelope_add_rcpt(&env, "user@example.com", NULL, 0);
	while (now_ns() < b->stop_at) {
		pthread_mutex_lock(&b->mu);
		bw_release(b);
		while (b->count == b->window) {
			pthread_cond_wait(&b->cv, &b->mu);
			bw_release(b);
		}
		pthread_mutex_unlock(&b->mu);
		unsigned slot = (b->head + b->count) % b->window;
		struct spool_ref ref;
		b->t0[slot] = now_ns();
		int rc = spool_append(b->w, &env, body, b->body_len, &ref, NULL, &b->lsn[slot]);
		if (rc < 0) {
			fprintf(stderr, "append: %s\n", strerror(-rc));
			exit(1);
		}
		pthread_mutex_lock(&b->mu);
		b->count++;
		pthread_mutex_unlock(&b->mu);
	}
	/* Drain. */
	pthread_mutex_lock(&b->mu);
	bw_release(b);
	while (b->count) {
		pthread_cond_wait(&b->cv, &b->mu);
		bw_release(b);
	}
	pthread_mutex_unlock(&b->mu);
	envelope_free(&env);
	free(body);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	unsigned seconds = 5, writers = 2, window = 256, interval = 1000, batch = 256;
	size_t body_len = 1024;
	int opt;
	while ((opt = getopt(argc, argv, "d:t:w:s:n:i:b:")) != -1) {
		switch (opt) {
		case 'd':
			dir = optarg;
			break;
		case 't':
			seconds = (unsigned)atoi(optarg);
			break;
		case 'w':
			writers = (unsigned)atoi(optarg);
			break;
		case 's':
			body_len = (size_t)atol(optarg);
			break;
		case 'n':
			window = (unsigned)atoi(optarg);
			break;
		case 'i':
			interval = (unsigned)atoi(optarg);
			break;
		case 'b':
			batch = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: %s [-d dir] [-t s] [-w writers] [-s bytes] [-n window] "
				"[-i interval_us] [-b batch]\n",
				argv[0]);
			return 2;
		}
	}
	char tmp[] = "/tmp/spool-bench-XXXXXX";
	if (!dir && !(dir = mkdtemp(tmp))) {
		perror("mkdtemp");
		return 1;
	}
	log_set_level(LOG_LEVEL_WARN);
	struct spool_cfg cfg = {.dir = dir,
				.segment_size = 64ull << 20,
				.commit_interval_us = interval,
				.commit_batch = batch};
	char err[256];
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	if (!sp || spool_recover(sp, NULL, NULL) < 0 || spool_start(sp) < 0) {
		fprintf(stderr, "spool: %s\n", sp ? "recover/start failed" : err);
		return 1;
	}
	struct bw *bs = calloc(writers, sizeof(*bs));
	uint64_t t0 = now_ns(), stop_at = t0 + (uint64_t)seconds * 1000000000ull;
	for (unsigned i = 0; i < writers; i++) {
		struct bw *b = &bs[i];
		b->sp = sp;
		b->id = i;
		b->window = window;
		b->body_len = body_len;
		b->stop_at = stop_at;
		b->lsn = calloc(window, sizeof(uint64_t));
		b->t0 = calloc(window, sizeof(uint64_t));
		b->cap = 1 << 22;
		b->lat = malloc(b->cap * sizeof(uint64_t));
		pthread_mutex_init(&b->mu, NULL);
		pthread_cond_init(&b->cv, NULL);
		b->w = spool_writer_new(sp, i, bw_wake, b);
		pthread_create(&b->th, NULL, bw_main, b);
	}
	uint64_t done = 0;
	size_t nlat = 0;
	for (unsigned i = 0; i < writers; i++) {
		pthread_join(bs[i].th, NULL);
		done += bs[i].done;
		nlat += bs[i].nlat;
	}
	double el = (double)(now_ns() - t0) / 1e9;
	struct spool_stats st;
	spool_get_stats(sp, &st);
	uint64_t *lat = malloc((nlat ? nlat : 1) * sizeof(uint64_t));
	size_t k = 0;
	for (unsigned i = 0; i < writers; i++) {
		memcpy(lat + k, bs[i].lat, bs[i].nlat * sizeof(uint64_t));
		k += bs[i].nlat;
	}
	qsort(lat, nlat, sizeof(uint64_t), cmp_u64);
	printf("spool_bench: writers=%u body=%zu window=%u interval_us=%u batch=%u seconds=%.2f\n",
	       writers, body_len, window, interval, batch, el);
	printf("durable records/s=%.0f  MB/s=%.1f  fdatasync/s=%.0f  records/sync=%.1f  "
	       "latency p50=%.0fus p99=%.0fus\n",
	       (double)done / el, (double)done * (double)body_len / el / 1e6, (double)st.syncs / el,
	       st.syncs ? (double)done / (double)st.syncs : 0.0,
	       nlat ? (double)lat[nlat / 2] / 1e3 : 0.0,
	       nlat ? (double)lat[nlat * 99 / 100] / 1e3 : 0.0);
	for (unsigned i = 0; i < writers; i++) {
		spool_writer_close(bs[i].w);
		free(bs[i].lsn);
		free(bs[i].t0);
		free(bs[i].lat);
	}
	spool_close(sp);
	free(lat);
	free(bs);
	if (dir == tmp) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", tmp);
	}
	return 0;
}
