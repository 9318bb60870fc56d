/*
 * The relay's bookkeeping after an attempt (control/relay_job.c) against the
 * real spool, without the thread or any network: per-recipient outcomes,
 * the retry heap, delay and failure notices, what is journalled and what a
 * restart recovers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/envelope.h"
#include "control/relay_pvt.h"
#include "maildir/delivery_tutil.h"

#define MIN_S 60
#define WARN_S 600
#define LIFE_S 3600

struct fx {
	char *dir;
	char spooldir[512];
	struct spool *sp;
	struct spool_writer *w; /* the originals */
	struct relay *r;
};

static void wake_noop(void *arg)
{
	(void)arg;
}

static struct spool *open_spool(struct fx *f)
{
	struct spool_cfg cfg = {
	    .dir = f->spooldir,
	    .segment_size = 1 << 20,
	    .commit_interval_us = 200,
	    .commit_batch = 4,
	};
	char err[256] = "";
	struct spool *sp = spool_open(&cfg, err, sizeof(err));
	if (!sp)
		fail_msg("spool_open: %s", err);
	return sp;
}

static void relay_up(struct fx *f)
{
	struct relay_cfg cfg = {
	    .hostname = "mx.test",
	    .dns_servers = "127.0.0.1:1",
	    .mx_port = 25,
	    .max_conns = 10,
	    .dest_conns = 2,
	    .msgs_per_conn = 10,
	    .retry = {.min_s = MIN_S, .max_s = 4 * MIN_S, .delay_warning_s = WARN_S,
		      .max_lifetime_s = LIFE_S},
	};
	char err[256] = "";
	f->r = relay_new(f->sp, NULL, NULL, &cfg, err, sizeof(err));
	if (!f->r)
		fail_msg("relay_new: %s", err);
	/* What relay_start does, minus the thread. */
	f->r->w = spool_writer_new(f->sp, 9999, wake_noop, NULL);
	assert_non_null(f->r->w);
	spool_writer_allow_over_max_size(f->r->w);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_mkdtemp("relay-unit");
	assert_non_null(f->dir);
	snprintf(f->spooldir, sizeof(f->spooldir), "%s/spool", f->dir);
	f->sp = open_spool(f);
	assert_int_equal(spool_recover(f->sp, NULL, NULL), 0);
	assert_int_equal(spool_start(f->sp), 0);
	f->w = spool_writer_new(f->sp, 0, wake_noop, NULL);
	relay_up(f);
	*state = f;
	return 0;
}

static void fx_down(struct fx *f)
{
	if (f->r)
		relay_free(f->r);
	f->r = NULL;
	if (f->w)
		spool_writer_close(f->w);
	f->w = NULL;
	if (f->sp)
		spool_close(f->sp);
	f->sp = NULL;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	fx_down(f);
	tu_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static const char BODY[] = "From: a@x.test\r\nSubject: t\r\nMessage-ID: <m1@x.test>\r\n\r\nhi\r\n";

/* Append a message from sender to n recipients r0@remote.test...; wait
 * until it is durable. */
static struct spool_ref append(struct fx *f, const char *sender, uint32_t n, uint8_t notify,
			       int64_t arrival)
{
	struct envelope env = {0};
	env.sender = strdup(sender);
	env.protocol = "ESMTP";
	env.arrival = arrival;
	env.client_addr = strdup("192.0.2.1");
	for (uint32_t i = 0; i < n; i++) {
		char a[64];
		snprintf(a, sizeof(a), "r%u@remote.test", i);
		assert_int_equal(envelope_add_rcpt(&env, a, NULL, notify), 0);
	}
	struct spool_ref ref;
	char qid[SPOOL_QID_LEN + 1];
	uint64_t lsn;
	assert_int_equal(spool_append(f->w, &env, BODY, strlen(BODY), &ref, qid, &lsn), 0);
	envelope_free(&env);
	for (int i = 0; i < 5000 && spool_writer_durable(f->w) < lsn; i++)
		usleep(1000);
	assert_true(spool_writer_durable(f->w) >= lsn);
	return ref;
}

static struct relay_job *job_of(struct fx *f, struct spool_ref ref, uint32_t n, int64_t arrival)
{
	struct relay_job *job = calloc(1, sizeof(*job) + n * sizeof(job->rcpts[0]));
	job->ref = ref;
	job->arrival = arrival;
	job->nrcpts = n;
	for (uint32_t i = 0; i < n; i++)
		job->rcpts[i] = i;
	relay_count(&f->r->st_queued, 1);
	relay_count(&f->r->st_queued_rcpts, n);
	return job;
}

static void result(struct relay_result *res, uint16_t code, const char *enh, const char *text)
{
	memset(res, 0, sizeof(*res));
	relay_result_set(res, code, enh, text);
}

/* Every queued notice durable, its journal entries written and synced. */
static void settle(struct fx *f)
{
	for (int i = 0; i < 5000 && f->r->nw_head; i++) {
		relay_notice_poll(f->r);
		if (f->r->nw_head)
			usleep(1000);
	}
	assert_null(f->r->nw_head);
	relay_journal_sync(f->r);
	assert_false(f->r->journal_dirty);
}

struct seen {
	int messages;
	int notices; /* null-sender records */
	bool pending[8], noticed[8]; /* of the non-notice message */
	uint32_t nrcpts;
	char notice_to[64];
	struct spool_ref notice_ref;	/* the last */
	struct spool_ref notice_refs[8]; /* in spool order */
};

static int recover_cb(void *arg, const struct spool_ref *ref, const char *qid,
		      const struct envelope *env, const bool *pending, const bool *noticed)
{
	struct seen *s = arg;
	(void)qid;
	if (env->sender[0] == '\0') {
		if (s->notices < 8)
			s->notice_refs[s->notices] = *ref;
		s->notices++;
		s->notice_ref = *ref;
		snprintf(s->notice_to, sizeof(s->notice_to), "%s", env->rcpts[0].addr);
		return 0;
	}
	s->messages++;
	s->nrcpts = env->nrcpts;
	for (uint32_t i = 0; i < env->nrcpts && i < 8; i++) {
		s->pending[i] = pending[i];
		s->noticed[i] = noticed[i];
	}
	return 0;
}

/* Stop everything and recover the spool as a restart would. */
static struct seen restart(struct fx *f)
{
	struct seen s = {0};
	fx_down(f);
	f->sp = open_spool(f);
	assert_int_equal(spool_recover(f->sp, recover_cb, &s), 0);
	return s;
}

/* The body of the notice at ref, NUL-terminated. */
static char *notice_text(struct fx *f, struct spool_ref ref)
{
	struct envelope env = {0};
	uint8_t *body = NULL;
	size_t len = 0;
	assert_int_equal(spool_read(f->sp, &ref, &env, &body, &len), 0);
	envelope_free(&env);
	char *s = malloc(len + 1);
	memcpy(s, body, len);
	s[len] = '\0';
	free(body);
	return s;
}

static void test_outcomes(void **state)
{
	struct fx *f = *state;
	int64_t now = time(NULL);
	struct spool_ref ref = append(f, "alice@x.test", 3, 0, now);
	struct relay_job *job = job_of(f, ref, 3, now);
	struct relay_result res[3], lost;
	result(&res[0], 250, "2.0.0", "ok");
	result(&res[1], 451, "4.2.0", "later");
	result(&res[2], 550, "5.1.1", "no such user");
	result(&lost, 421, "4.4.2", "lost");
	int64_t t0 = relay_now_ms();
	relay_job_finish(f->r, job, res, &lost, NULL, NULL, 0, "mx1.remote.test");

	struct relay_stats st;
	relay_get_stats(f->r, &st);
	assert_int_equal(st.delivered, 1);
	assert_int_equal(st.failed, 1);
	assert_int_equal(st.deferred, 1);
	assert_int_equal(st.notices, 1);
	assert_int_equal(st.queued, 1);
	assert_int_equal(st.queued_rcpts, 1);
	/* The deferred one waits min_s +-25% on the heap, alone. */
	assert_int_equal(f->r->nheap, 1);
	struct relay_job *d = f->r->heap[0];
	assert_int_equal(d->nrcpts, 1);
	assert_int_equal(RELAY_RCPT_INDEX(d->rcpts[0]), 1);
	assert_int_equal(d->tries, 1);
	int64_t wait = d->retry_at - t0;
	if (wait < MIN_S * 750 - 50 || wait > MIN_S * 1250 + 1000)
		fail_msg("retry in %lld ms, want %d s +-25%%", (long long)wait, MIN_S);
	/* FAILED waits for the notice to be durable. */
	assert_non_null(f->r->nw_head);
	assert_int_equal(f->r->nw_head->state, SPOOL_RCPT_FAILED);
	assert_int_equal(f->r->nw_head->n, 1);
	assert_int_equal(f->r->nw_head->rcpts[0], 2);
	settle(f);

	struct seen s = restart(f);
	assert_int_equal(s.messages, 1);
	assert_int_equal(s.nrcpts, 3);
	assert_false(s.pending[0]); /* delivered */
	assert_true(s.pending[1]);  /* deferred */
	assert_false(s.pending[2]); /* failed, noticed */
	assert_int_equal(s.notices, 1);
	assert_string_equal(s.notice_to, "alice@x.test");
	char *text = notice_text(f, s.notice_ref);
	assert_non_null(strstr(text, "Final-Recipient: rfc822; r2@remote.test"));
	assert_non_null(strstr(text, "Status: 5.1.1"));
	assert_non_null(strstr(text, "Diagnostic-Code: smtp; 550 5.1.1 no such user"));
	assert_non_null(strstr(text, "Remote-MTA: dns; mx1.remote.test"));
	assert_null(strstr(text, "r1@remote.test")); /* the deferred one is not reported */
	free(text);
	for (int i = 0; i < 3; i++)
		relay_result_clear(&res[i]);
	relay_result_clear(&lost);
}

static void test_no_notice_for_null_sender_or_never(void **state)
{
	struct fx *f = *state;
	int64_t now = time(NULL);
	struct spool_ref a = append(f, "", 1, 0, now);
	struct spool_ref b = append(f, "bob@x.test", 1, ENVELOPE_NOTIFY_NEVER, now);
	struct relay_result fail;
	result(&fail, 550, "5.7.1", "refused");
	relay_job_finish(f->r, job_of(f, a, 1, now), NULL, &fail, NULL, NULL, 0, "mx");
	relay_job_finish(f->r, job_of(f, b, 1, now), NULL, &fail, NULL, NULL, 0, "mx");
	struct relay_stats st;
	relay_get_stats(f->r, &st);
	assert_int_equal(st.failed, 2);
	assert_int_equal(st.notices, 0);
	assert_null(f->r->nw_head);
	assert_int_equal(st.queued, 0);
	settle(f);
	struct seen s = restart(f);
	assert_int_equal(s.messages, 0); /* both final: nothing pending */
	assert_int_equal(s.notices, 0);
	relay_result_clear(&fail);
}

static void test_delay_notice_once(void **state)
{
	struct fx *f = *state;
	int64_t arrival = time(NULL) - WARN_S - 5;
	struct spool_ref ref = append(f, "carol@x.test", 2, 0, arrival);
	struct relay_result later;
	result(&later, 451, "4.4.1", "connection refused");
	later.local = true;
	relay_job_finish(f->r, job_of(f, ref, 2, arrival), NULL, &later, NULL, NULL, 0, NULL);
	assert_int_equal(f->r->nheap, 1);
	struct relay_job *job = relay_heap_pop(f->r);
	assert_true(job->rcpts[0] & RELAY_RCPT_NOTICED);
	assert_true(job->rcpts[1] & RELAY_RCPT_NOTICED);
	assert_non_null(f->r->nw_head);
	assert_int_equal(f->r->nw_head->state, SPOOL_RCPT_DELAY_NOTICED);
	assert_int_equal(f->r->nw_head->n, 2);
	settle(f);
	/* The next failed try sends no second delay notice. */
	relay_job_finish(f->r, job, NULL, &later, NULL, NULL, 0, NULL);
	assert_null(f->r->nw_head);
	struct relay_stats st;
	relay_get_stats(f->r, &st);
	assert_int_equal(st.notices, 1);
	assert_int_equal(st.deferred, 4);

	struct seen s = restart(f);
	assert_int_equal(s.messages, 1);
	assert_true(s.pending[0] && s.pending[1]);
	assert_true(s.noticed[0] && s.noticed[1]); /* survives the restart */
	assert_int_equal(s.notices, 1);
	char *text = notice_text(f, s.notice_ref);
	assert_non_null(strstr(text, "Action: delayed"));
	assert_non_null(strstr(text, "Status: 4.4.1"));
	assert_non_null(strstr(text, "Diagnostic-Code: X-Sluice; connection refused"));
	assert_non_null(strstr(text, "Will-Retry-Until: "));
	assert_null(strstr(text, "Remote-MTA")); /* our own decision: no server */
	free(text);
	relay_result_clear(&later);
}

static void test_expired_fails_with_5_4_7(void **state)
{
	struct fx *f = *state;
	int64_t arrival = time(NULL) - LIFE_S - 5;
	struct spool_ref ref = append(f, "dave@x.test", 1, 0, arrival);
	struct relay_result later;
	result(&later, 452, "4.2.2", "mailbox full");
	relay_job_finish(f->r, job_of(f, ref, 1, arrival), NULL, &later, NULL, NULL, 0, "mx");
	assert_int_equal(f->r->nheap, 0);
	settle(f);
	struct seen s = restart(f);
	assert_int_equal(s.messages, 0);
	assert_int_equal(s.notices, 1);
	char *text = notice_text(f, s.notice_ref);
	assert_non_null(strstr(text, "Action: failed"));
	assert_non_null(strstr(text, "Status: 5.4.7"));
	assert_non_null(strstr(text, "smtp; 452 4.2.2 mailbox full"));
	free(text);
	relay_result_clear(&later);
}

static void test_success_notices(void **state)
{
	struct fx *f = *state;
	int64_t now = time(NULL);
	/* r0 asked NOTIFY=SUCCESS, r1 did not; the server had no DSN. */
	struct spool_ref ref = append(f, "erin@x.test", 2, 0, now);
	struct envelope env = {0};
	uint8_t *body = NULL;
	size_t len = 0;
	assert_int_equal(spool_read(f->sp, &ref, &env, &body, &len), 0);
	env.rcpts[0].notify = ENVELOPE_NOTIFY_SUCCESS;
	struct relay_job *job = job_of(f, ref, 2, now);
	job->flags = RELAY_JOB_SAY_RELAYED;
	struct relay_result ok;
	result(&ok, 250, "2.0.0", "queued there");
	relay_job_finish(f->r, job, NULL, &ok, &env, body, len, "mx9.remote.test");
	envelope_free(&env);
	free(body);
	struct relay_stats st;
	relay_get_stats(f->r, &st);
	assert_int_equal(st.delivered, 2);
	assert_int_equal(st.notices, 1);
	assert_non_null(f->r->nw_head);
	assert_int_equal(f->r->nw_head->state, SPOOL_RCPT_PENDING); /* nothing to journal */
	settle(f);

	/* Delivered into Maildir (journalled there) with NOTIFY=SUCCESS: the
	 * "delivered" notice only, no second journal entry. */
	struct spool_ref ref2 = append(f, "fred@x.test", 1, ENVELOPE_NOTIFY_SUCCESS, now);
	assert_int_equal(spool_journal_final(f->sp, &ref2, 0, SPOOL_RCPT_DELIVERED), 0);
	struct relay_job *job2 = job_of(f, ref2, 1, now);
	job2->flags = RELAY_JOB_SAY_DELIVERED | RELAY_JOB_JOURNALLED;
	relay_job_finish(f->r, job2, NULL, &ok, NULL, NULL, 0, NULL);
	relay_get_stats(f->r, &st);
	assert_int_equal(st.delivered, 2); /* counted by delivery, not here */
	assert_int_equal(st.notices, 2);
	settle(f);

	struct seen s = {0};
	fx_down(f);
	f->sp = open_spool(f);
	assert_int_equal(spool_recover(f->sp, recover_cb, &s), 0);
	assert_int_equal(s.messages, 0); /* both originals final */
	assert_int_equal(s.notices, 2);
	char *t1 = notice_text(f, s.notice_refs[0]);
	assert_non_null(strstr(t1, "Action: relayed"));
	assert_non_null(strstr(t1, "Final-Recipient: rfc822; r0@remote.test"));
	assert_null(strstr(t1, "r1@remote.test")); /* no NOTIFY=SUCCESS: not reported */
	assert_non_null(strstr(t1, "Remote-MTA: dns; mx9.remote.test"));
	char *t2 = notice_text(f, s.notice_refs[1]);
	assert_non_null(strstr(t2, "Action: delivered"));
	assert_non_null(strstr(t2, "Status: 2.0.0"));
	free(t1);
	free(t2);
	relay_result_clear(&ok);
}

static void test_heap_order(void **state)
{
	struct fx *f = *state;
	int64_t at[] = {50, 10, 40, 10, 30, 20, 60, 0};
	size_t n = sizeof(at) / sizeof(at[0]);
	struct spool_ref ref = {0};
	for (size_t i = 0; i < n; i++) {
		struct relay_job *j = job_of(f, ref, 1, 0);
		j->retry_at = at[i];
		relay_heap_push(f->r, j);
	}
	int64_t last = -1;
	for (size_t i = 0; i < n; i++) {
		struct relay_job *j = relay_heap_pop(f->r);
		assert_true(j->retry_at >= last);
		last = j->retry_at;
		relay_job_free(f->r, j);
	}
	assert_int_equal(f->r->nheap, 0);
	struct relay_stats st;
	relay_get_stats(f->r, &st);
	assert_int_equal(st.queued, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_outcomes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_no_notice_for_null_sender_or_never, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delay_notice_once, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_expired_fails_with_5_4_7, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_success_notices, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_heap_order, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
