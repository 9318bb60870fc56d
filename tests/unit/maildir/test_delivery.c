/*
 * End to end: the real spool (queue/) and routing table (config/) with the
 * delivery thread: append, deliver, journal, reopen, recover, deliver the
 * rest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/envelope.h"
#include "delivery_tutil.h"

#define HOST "mx.test"

struct fx {
	char *dir;
	char spooldir[512];
	char root[512];
	char broken[512]; /* a regular file first: broken.test deliveries fail */
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_mkdtemp("delivery-e2e");
	assert_non_null(f->dir);
	snprintf(f->spooldir, sizeof(f->spooldir), "%s/spool", f->dir);
	snprintf(f->root, sizeof(f->root), "%s/mail", f->dir);
	snprintf(f->broken, sizeof(f->broken), "%s/broken", f->dir);
	int fd = open(f->broken, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	tu_publish_routes(f->root, f->broken);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	route_publish(NULL);
	tu_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct spool *open_spool(struct fx *f)
{
	struct spool_cfg cfg = {
	    .dir = f->spooldir,
	    .segment_size = 1 << 20,
	    .min_free = 0,
	    .commit_interval_us = 500,
	    .commit_batch = 8,
	};
	char err[256] = "";
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	if (sp == NULL)
		fail_msg("spool_open %s: %s", f->spooldir, err);
	return sp;
}

/* What spool_recover() reported. */
struct recovered {
	int n;
	struct spool_ref ref;
	char qid[SPOOL_QID_LEN + 1];
	uint32_t nrcpts;
	bool pending[8];
};

static int recover_cb(void *arg, const struct spool_ref *ref, const char *qid,
		      const struct envelope *env, const bool *pending, const bool *noticed)
{
	struct recovered *r = arg;
	(void)noticed;
	r->n++;
	r->ref = *ref;
	snprintf(r->qid, sizeof(r->qid), "%s", qid);
	r->nrcpts = env->nrcpts;
	for (uint32_t i = 0; i < env->nrcpts && i < 8; i++)
		r->pending[i] = pending[i];
	return 0;
}

static void wake_noop(void *arg)
{
	(void)arg;
}

static void check_pending(const struct recovered *r, const bool *want, uint32_t n)
{
	if (r->n != 1)
		fail_msg("recovered messages got %d want 1", r->n);
	if (r->nrcpts != n)
		fail_msg("recovered nrcpts got %u want %u", r->nrcpts, n);
	for (uint32_t i = 0; i < n; i++)
		if (r->pending[i] != want[i])
			fail_msg("rcpt %u: pending got %d want %d", i, r->pending[i], want[i]);
}

static void check_stats(const struct delivery_stats *got, uint64_t dl, uint64_t fl, uint64_t hd)
{
	if (got->delivered != dl || got->failed != fl || got->held != hd)
		fail_msg("stats got delivered=%llu failed=%llu held=%llu want %llu/%llu/%llu",
			 (unsigned long long)got->delivered, (unsigned long long)got->failed,
			 (unsigned long long)got->held, (unsigned long long)dl,
			 (unsigned long long)fl, (unsigned long long)hd);
}

static void test_end_to_end(void **state)
{
	struct fx *f = *state;

	/* 1. Store a message with four recipients. */
	struct spool *sp = open_spool(f);
	struct recovered rec = {0};
	assert_int_equal(spool_recover(sp, recover_cb, &rec), 0);
	assert_int_equal(rec.n, 0);
	assert_int_equal(spool_start(sp), 0);
	struct spool_writer *w = spool_writer_new(sp, 0, wake_noop, NULL);
	assert_non_null(w);
	struct envelope env = {0};
	env.sender = strdup("sender@remote.test");
	assert_int_equal(envelope_add_rcpt(&env, "alice@example.com", NULL, 0), 0);
	assert_int_equal(envelope_add_rcpt(&env, "x@relay.example", NULL, 0), 0);
	assert_int_equal(envelope_add_rcpt(&env, "nobody@example.com", NULL, 0), 0);
	assert_int_equal(envelope_add_rcpt(&env, "alice@broken.test", NULL, 0), 0);
	env.helo = strdup("client.test");
	env.client_addr = strdup("127.0.0.1");
	env.protocol = "ESMTP";
	env.arrival = 1795381200;
	static const char body[] = "Subject: e2e\r\nFrom: s@remote.test\r\n\r\nhello\r\n"
				   "\r\nbye\r\n";
	struct spool_ref ref;
	char qid[SPOOL_QID_LEN + 1];
	uint64_t lsn = 0;
	assert_int_equal(spool_append(w, &env, body, sizeof(body) - 1, &ref, qid, &lsn), 0);
	envelope_free(&env);
	/* Delivery starts after the 250, i.e. once the record is durable. */
	for (int i = 0; i < 20000 && spool_writer_durable(w) < lsn; i++)
		usleep(1000); /* bounded poll for the committer */
	assert_true(spool_writer_durable(w) >= lsn);

	/* 2. Deliver: alice copied, relay held, nobody failed, broken.test
	 * deferred (temporary). */
	struct delivery *d = delivery_new(sp, HOST);
	assert_non_null(d);
	assert_int_equal(delivery_start(d), 0);
	delivery_submit(d, &ref, 4);
	struct delivery_stats want = {.delivered = 1, .failed = 1, .held = 1}, got;
	tu_wait_stats(d, &want, &got);
	delivery_stop(d);
	check_stats(&got, 1, 1, 1);

	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/alice/new", names, 4), 1);
	char *copy = tu_read(f->root, "example.com/alice/new", names[0]);
	char exp[1024];
	snprintf(exp, sizeof(exp),
		 "Received: from client.test ([127.0.0.1])\n"
		 "\tby mx.test (sluice) with ESMTP id %s\n"
		 "\tfor <alice@example.com>; Sun, 22 Nov 2026 21:00:00 +0000\n"
		 "Subject: e2e\nFrom: s@remote.test\n\nhello\n\nbye\n",
		 qid);
	if (copy == NULL || strcmp(copy, exp) != 0)
		fail_msg("copy:\n got: [%s]\nwant: [%s]", copy, exp);
	free(copy);
	/* The crash-recovery link in tmp/ went once the journal was synced. */
	assert_int_equal(tu_list(f->root, "example.com/alice/tmp", names, 4), 0);
	spool_writer_close(w);
	spool_close(sp);

	/* 3. Reopen: the journal says alice delivered and nobody failed. */
	sp = open_spool(f);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(spool_recover(sp, recover_cb, &rec), 0);
	static const bool pending1[] = {false, true, false, true};
	check_pending(&rec, pending1, 4);
	assert_string_equal(rec.qid, qid);

	/* 4. Fix the disk, submit the recovered message: only the pending
	 * local recipient gets a copy; alice@example.com does not get a
	 * second one. */
	assert_int_equal(unlink(f->broken), 0);
	assert_int_equal(spool_start(sp), 0);
	d = delivery_new(sp, HOST);
	assert_non_null(d);
	assert_int_equal(delivery_submit_recovered(d, &rec.ref, rec.pending, NULL, rec.nrcpts), 0);
	assert_int_equal(delivery_start(d), 0);
	struct delivery_stats want2 = {.delivered = 1, .held = 1};
	tu_wait_stats(d, &want2, &got);
	delivery_stop(d);
	check_stats(&got, 1, 0, 1);
	assert_int_equal(tu_list(f->root, "example.com/alice/new", names, 4), 1);
	assert_int_equal(tu_list(f->broken, "broken.test/alice/new", names, 4), 1);
	spool_close(sp);

	/* 5. Only the relay recipient is left. */
	sp = open_spool(f);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(spool_recover(sp, recover_cb, &rec), 0);
	static const bool pending2[] = {false, true, false, false};
	check_pending(&rec, pending2, 4);
	assert_int_equal(spool_start(sp), 0);
	spool_close(sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_end_to_end, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
