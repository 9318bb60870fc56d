/*
 * Unit tests for control/delivery.c against an in-memory spool (a mock at
 * the disk edge: it records every journal state, which the real spool does
 * not expose) and the real routing table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/envelope.h"
#include "delivery_tutil.h"

#define HOST "mx.test"
#define MAXREC 2048
#define MAXRCPT 8

/* ---- the mock spool: records by ref.offset ---- */

struct mock_rec {
	const char *rcpts[MAXRCPT];
	uint32_t nrcpts;
	const char *helo;
	const char *client; /* client address; NULL = "192.0.2.7" */
	const char *body;
	int read_err; /* spool_read returns this when non-zero */
};

static struct mock_rec mock_recs[MAXREC];
static atomic_int mock_state[MAXREC][MAXRCPT]; /* journalled states, -1 = none */
static atomic_int mock_syncs;
static atomic_int mock_sync_failures; /* fail this many syncs with -EIO */
static atomic_int mock_syncs_ok;
static atomic_int mock_final_fail; /* spool_journal_final fails with -EIO */
static atomic_int mock_reads;

static void mock_reset(void)
{
	memset(mock_recs, 0, sizeof(mock_recs));
	for (int i = 0; i < MAXREC; i++)
		for (int k = 0; k < MAXRCPT; k++)
			atomic_store(&mock_state[i][k], -1);
	atomic_store(&mock_syncs, 0);
	atomic_store(&mock_sync_failures, 0);
	atomic_store(&mock_syncs_ok, 0);
	atomic_store(&mock_final_fail, 0);
	atomic_store(&mock_reads, 0);
}

int spool_read(struct spool *sp, const struct spool_ref *ref, struct envelope *env, uint8_t **body,
	       size_t *body_len)
{
	(void)sp;
	atomic_fetch_add(&mock_reads, 1);
	const struct mock_rec *r = &mock_recs[ref->offset];
	if (r->read_err)
		return r->read_err;
	memset(env, 0, sizeof(*env));
	env->sender = strdup("sender@remote.test");
	for (uint32_t i = 0; i < r->nrcpts; i++)
		envelope_add_rcpt(env, r->rcpts[i], NULL, 0);
	env->helo = r->helo ? strdup(r->helo) : NULL;
	env->client_addr = strdup(r->client ? r->client : "192.0.2.7");
	env->protocol = "ESMTP";
	env->arrival = 1795381200; /* Sun, 22 Nov 2026 21:00:00 +0000 */
	*body_len = strlen(r->body);
	*body = malloc(*body_len + 1);
	memcpy(*body, r->body, *body_len + 1);
	return 0;
}

int spool_journal_final(struct spool *sp, const struct spool_ref *ref, uint32_t rcpt,
			enum spool_rcpt_state state)
{
	(void)sp;
	if (atomic_load(&mock_final_fail))
		return -EIO;
	atomic_store(&mock_state[ref->offset][rcpt], (int)state);
	return 0;
}

int spool_journal_sync(struct spool *sp)
{
	(void)sp;
	atomic_fetch_add(&mock_syncs, 1);
	if (atomic_load(&mock_sync_failures) > 0) {
		atomic_fetch_sub(&mock_sync_failures, 1);
		return -EIO;
	}
	atomic_fetch_add(&mock_syncs_ok, 1);
	return 0;
}

void spool_qid_format(const struct spool_ref *ref, char *qid)
{
	snprintf(qid, SPOOL_QID_LEN + 1, "%08X%08X", ref->seg, ref->offset);
}

/* ---- fixture ---- */

struct fx {
	char *dir;
	char root[512];
	char broken[512]; /* a regular file: every mailbox under it fails */
	struct delivery *d;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_mkdtemp("delivery");
	assert_non_null(f->dir);
	snprintf(f->root, sizeof(f->root), "%s/mail", f->dir);
	snprintf(f->broken, sizeof(f->broken), "%s/file", f->dir);
	int fd = open(f->broken, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	mock_reset();
	tu_publish_routes(f->root, f->broken);
	f->d = delivery_new((struct spool *)f, HOST);
	assert_non_null(f->d);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	if (f->d)
		delivery_stop(f->d);
	route_publish(NULL);
	tu_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct spool_ref ref_of(uint32_t i)
{
	struct spool_ref r = {.seg = 1, .offset = i, .len = 100};
	return r;
}

static void check_states(uint32_t rec, const int *want, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		int got = atomic_load(&mock_state[rec][i]);
		if (got != want[i])
			fail_msg("record %u rcpt %u: journal state got %d want %d", rec, i, got,
				 want[i]);
	}
}

static void check_stats(const struct delivery_stats *got, uint64_t dl, uint64_t fl, uint64_t hd)
{
	if (got->delivered != dl || got->failed != fl || got->held != hd)
		fail_msg("stats got delivered=%llu failed=%llu held=%llu want %llu/%llu/%llu",
			 (unsigned long long)got->delivered, (unsigned long long)got->failed,
			 (unsigned long long)got->held, (unsigned long long)dl,
			 (unsigned long long)fl, (unsigned long long)hd);
}

/* The only file in ROOT/mailbox/new, or fail. */
static char *only_copy(const char *root, const char *mailbox)
{
	char names[4][256], sub[512];
	snprintf(sub, sizeof(sub), "%s/new", mailbox);
	int n = tu_list(root, sub, names, 4);
	if (n != 1)
		fail_msg("%s/%s: files got %d want 1", root, sub, n);
	return tu_read(root, sub, names[0]);
}

#define NONE (-1)
#define DLV SPOOL_RCPT_DELIVERED
#define FLD SPOOL_RCPT_FAILED

/* ---- tests ---- */

/* Every route kind in one message; exact copy; journal and stats. */
static void test_routes_and_copy(void **state)
{
	struct fx *f = *state;
	mock_recs[1] = (struct mock_rec){
	    .rcpts = {"alice@Example.COM", "x@relay.example", "nobody@example.com",
		      "y@reject.example", "z@unrouted.test", "w@via.example"},
	    .nrcpts = 6,
	    .helo = "client.test",
	    .body = "Subject: hi\r\n\r\nline1\r\n..dots stay\r\n\r\n",
	};
	assert_int_equal(delivery_start(f->d), 0);
	struct spool_ref r = ref_of(1);
	delivery_submit(f->d, &r, 6);
	struct delivery_stats want = {.delivered = 1, .failed = 2, .held = 3}, got;
	if (!tu_wait_stats(f->d, &want, &got))
		check_stats(&got, 1, 2, 3);
	delivery_stop(f->d);
	f->d = NULL;
	check_stats(&got, 1, 2, 3);
	static const int ws[] = {DLV, NONE, FLD, FLD, NONE, NONE};
	check_states(1, ws, 6);
	assert_true(atomic_load(&mock_syncs) >= 1);

	char *copy = only_copy(f->root, "example.com/alice");
	const char *exp = "Received: from client.test ([192.0.2.7])\n"
			  "\tby mx.test (sluice) with ESMTP id 0000000100000001\n"
			  "\tfor <alice@Example.COM>; Sun, 22 Nov 2026 21:00:00 +0000\n"
			  "Subject: hi\n\nline1\n..dots stay\n\n";
	if (strcmp(copy, exp) != 0)
		fail_msg("copy:\n got: [%s]\nwant: [%s]", copy, exp);
	free(copy);
	char tnames[4][256];
	assert_int_equal(tu_list(f->root, "example.com/alice/tmp", tnames, 4), 0);
	/* Nothing for the unknown user. */
	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/nobody", names, 4), -ENOENT);
}

/* A recovered message with a pending bitmap: only pending ones are tried;
 * submitted before delivery_start. */
static void test_recovered_pending(void **state)
{
	struct fx *f = *state;
	mock_recs[2] = (struct mock_rec){
	    .client = "2001:db8::7",
	    .rcpts = {"alice@example.com", "bob@example.com", "carol@catchall.test"},
	    .nrcpts = 3,
	    .body = "x\r\n",
	};
	static const bool pending[] = {false, true, true};
	struct spool_ref r = ref_of(2);
	assert_int_equal(delivery_submit_recovered(f->d, &r, pending, NULL, 3), 0);
	assert_int_equal(delivery_start(f->d), 0);
	struct delivery_stats want = {.delivered = 2}, got;
	tu_wait_stats(f->d, &want, &got);
	delivery_stop(f->d);
	f->d = NULL;
	check_stats(&got, 2, 0, 0);
	static const int ws[] = {NONE, DLV, DLV};
	check_states(2, ws, 3);
	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/alice", names, 4), -ENOENT);
	char *copy = only_copy(f->root, "example.com/bob");
	/* No HELO: "from unknown"; an IPv6 client is an IPv6 address literal. */
	const char *exp = "Received: from unknown ([IPv6:2001:db8::7])\n"
			  "\tby mx.test (sluice) with ESMTP id 0000000100000002\n"
			  "\tfor <bob@example.com>; Sun, 22 Nov 2026 21:00:00 +0000\n"
			  "x\n";
	if (strcmp(copy, exp) != 0)
		fail_msg("copy:\n got: [%s]\nwant: [%s]", copy, exp);
	free(copy);
	copy = only_copy(f->root, "catchall.test/carol");
	free(copy);
}

/* A Maildir failure is temporary: the recipient stays pending, the rest of
 * the message is done, and a later try delivers once the disk is fixed. */
static void test_temporary_failure_retries(void **state)
{
	struct fx *f = *state;
	mock_recs[3] = (struct mock_rec){
	    .rcpts = {"alice@broken.test", "bob@example.com"},
	    .nrcpts = 2,
	    .body = "x\r\n",
	};
	assert_int_equal(delivery_start(f->d), 0);
	struct spool_ref r = ref_of(3);
	delivery_submit(f->d, &r, 2);
	struct delivery_stats want = {.delivered = 1}, got;
	tu_wait_stats(f->d, &want, &got);
	check_stats(&got, 1, 0, 0);
	int reads = atomic_load(&mock_reads);
	assert_int_equal(atomic_load(&mock_state[3][0]), NONE);
	/* Fix the disk: the retry (first one after 5 s) delivers alice. */
	assert_int_equal(unlink(f->broken), 0);
	want.delivered = 2;
	if (!tu_wait_stats(f->d, &want, &got))
		check_stats(&got, 2, 0, 0);
	delivery_stop(f->d);
	f->d = NULL;
	check_stats(&got, 2, 0, 0);
	static const int ws[] = {DLV, DLV};
	check_states(3, ws, 2);
	assert_true(atomic_load(&mock_reads) > reads);
	/* bob got exactly one copy: the retry only tried alice. */
	free(only_copy(f->root, "example.com/bob"));
	free(only_copy(f->broken, "broken.test/alice"));
}

/* Deferred at stop: stays pending (recovery takes it at the next start). */
static void test_deferred_stays_pending_at_stop(void **state)
{
	struct fx *f = *state;
	mock_recs[4] =
	    (struct mock_rec){.rcpts = {"alice@broken.test"}, .nrcpts = 1, .body = "x\r\n"};
	mock_recs[5] =
	    (struct mock_rec){.rcpts = {"bob@example.com"}, .nrcpts = 1, .body = "y\r\n"};
	assert_int_equal(delivery_start(f->d), 0);
	struct spool_ref r4 = ref_of(4), r5 = ref_of(5);
	delivery_submit(f->d, &r4, 1);
	delivery_submit(f->d, &r5, 1);
	delivery_stop(f->d);
	f->d = NULL;
	assert_int_equal(atomic_load(&mock_state[4][0]), NONE);
	assert_int_equal(atomic_load(&mock_state[5][0]), DLV);
}

/* Read errors: a corrupt record fails its pending recipients; a record
 * that is gone is skipped. */
static void test_read_errors(void **state)
{
	struct fx *f = *state;
	mock_recs[6] = (struct mock_rec){.nrcpts = 2, .read_err = -EBADMSG};
	mock_recs[7] = (struct mock_rec){.nrcpts = 1, .read_err = -ENOENT};
	static const bool pending[] = {true, false};
	struct spool_ref r6 = ref_of(6), r7 = ref_of(7);
	assert_int_equal(delivery_submit_recovered(f->d, &r6, pending, NULL, 2), 0);
	assert_int_equal(delivery_submit_recovered(f->d, &r7, NULL, NULL, 1), 0);
	assert_int_equal(delivery_start(f->d), 0);
	delivery_stop(f->d);
	f->d = NULL;
	static const int w6[] = {FLD, NONE};
	check_states(6, w6, 2);
	assert_int_equal(atomic_load(&mock_state[7][0]), NONE);
}

/* Submitters on several threads at once; every message delivered once.
 * Exercises the sleep/wake handshake (no lost wake-up: the wait is
 * bounded and would fail the test). */
#define SUBMITTERS 4
#define PER_SUBMITTER 250

struct submitter {
	struct delivery *d;
	uint32_t first;
};

static void *submit_many(void *arg)
{
	struct submitter *s = arg;
	for (uint32_t i = 0; i < PER_SUBMITTER; i++) {
		struct spool_ref r = ref_of(s->first + i);
		delivery_submit(s->d, &r, 1);
		if (i % 50 == 0)
			sched_yield(); /* let the thread fall asleep now and then */
	}
	return NULL;
}

static void test_concurrent_submit(void **state)
{
	struct fx *f = *state;
	for (uint32_t i = 0; i < SUBMITTERS * PER_SUBMITTER; i++)
		mock_recs[100 + i] =
		    (struct mock_rec){.rcpts = {"bob@example.com"}, .nrcpts = 1, .body = "m\r\n"};
	assert_int_equal(delivery_start(f->d), 0);
	pthread_t th[SUBMITTERS];
	struct submitter s[SUBMITTERS];
	for (int k = 0; k < SUBMITTERS; k++) {
		s[k] = (struct submitter){.d = f->d, .first = 100 + (uint32_t)k * PER_SUBMITTER};
		assert_int_equal(pthread_create(&th[k], NULL, submit_many, &s[k]), 0);
	}
	for (int k = 0; k < SUBMITTERS; k++)
		pthread_join(th[k], NULL);
	struct delivery_stats want = {.delivered = SUBMITTERS * PER_SUBMITTER}, got;
	bool ok = tu_wait_stats(f->d, &want, &got);
	/* Still running here: the wake-up, not delivery_stop, got them out. */
	if (!ok)
		check_stats(&got, SUBMITTERS * PER_SUBMITTER, 0, 0);
	delivery_stop(f->d);
	f->d = NULL;
	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/bob/new", names, 4),
			 SUBMITTERS * PER_SUBMITTER);
	for (uint32_t i = 0; i < SUBMITTERS * PER_SUBMITTER; i++)
		if (atomic_load(&mock_state[100 + i][0]) != DLV)
			fail_msg("record %u: not delivered", 100 + i);
}

/* delivery_stop delivers what is still queued. */
static void test_stop_drains(void **state)
{
	struct fx *f = *state;
	for (uint32_t i = 0; i < 600; i++)
		mock_recs[100 + i] =
		    (struct mock_rec){.rcpts = {"alice@example.com"}, .nrcpts = 1, .body = "m\r\n"};
	assert_int_equal(delivery_start(f->d), 0);
	for (uint32_t i = 0; i < 600; i++) {
		struct spool_ref r = ref_of(100 + i);
		delivery_submit(f->d, &r, 1);
	}
	struct delivery *d = f->d;
	f->d = NULL;
	delivery_stop(d);
	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/alice/new", names, 4), 600);
}

/* A failed journal sync is retried without new work arriving. */
static void test_journal_sync_retried(void **state)
{
	struct fx *f = *state;
	mock_recs[8] =
	    (struct mock_rec){.rcpts = {"bob@example.com"}, .nrcpts = 1, .body = "x\r\n"};
	atomic_store(&mock_sync_failures, 1);
	assert_int_equal(delivery_start(f->d), 0);
	struct spool_ref r = ref_of(8);
	delivery_submit(f->d, &r, 1);
	struct timespec t0, now, nap = {0, 1000000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		nanosleep(&nap, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (atomic_load(&mock_syncs_ok) == 0 && now.tv_sec - t0.tv_sec < 20);
	/* Still running: the thread retried on its own, not at stop. */
	int ok = atomic_load(&mock_syncs_ok), all = atomic_load(&mock_syncs);
	if (ok != 1 || all != 2)
		fail_msg("journal syncs got ok=%d calls=%d want ok=1 calls=2", ok, all);
	assert_int_equal(atomic_load(&mock_state[8][0]), DLV);
}

/* The copy was written but its DELIVERED never reached the journal (as
 * after a kill -9 before the journal sync): the retry after recovery finds
 * the copy and writes no second one. */
static void test_no_second_copy_after_lost_journal(void **state)
{
	struct fx *f = *state;
	mock_recs[9] =
	    (struct mock_rec){.rcpts = {"bob@example.com"}, .nrcpts = 1, .body = "x\r\n"};
	atomic_store(&mock_final_fail, 1);
	assert_int_equal(delivery_start(f->d), 0);
	struct spool_ref r = ref_of(9);
	delivery_submit(f->d, &r, 1);
	struct delivery_stats want = {.delivered = 1}, got;
	tu_wait_stats(f->d, &want, &got);
	delivery_stop(f->d);
	f->d = NULL;
	assert_int_equal(atomic_load(&mock_state[9][0]), NONE);
	char names[4][256];
	assert_int_equal(tu_list(f->root, "example.com/bob/tmp", names, 4), 1);

	/* "Restart": the journal works again, recovery submits the message. */
	atomic_store(&mock_final_fail, 0);
	f->d = delivery_new((struct spool *)f, HOST);
	static const bool pending[] = {true};
	assert_int_equal(delivery_submit_recovered(f->d, &r, pending, NULL, 1), 0);
	assert_int_equal(delivery_start(f->d), 0);
	tu_wait_stats(f->d, &want, &got);
	delivery_stop(f->d);
	f->d = NULL;
	check_stats(&got, 1, 0, 0);
	assert_int_equal(atomic_load(&mock_state[9][0]), DLV);
	assert_int_equal(tu_list(f->root, "example.com/bob/new", names, 4), 1);
	assert_int_equal(tu_list(f->root, "example.com/bob/tmp", names, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_routes_and_copy, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_recovered_pending, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_deferred_stays_pending_at_stop, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_read_errors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_submit, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stop_drains, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_journal_sync_retried, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_no_second_copy_after_lost_journal, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_temporary_failure_retries, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
