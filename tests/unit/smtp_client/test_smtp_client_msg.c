/*
 * Unit tests for smtp_client: the message itself.  Dot-stuffing (RFC 5321
 * 4.5.2) across body slices, the final CRLF.CRLF, the local SIZE /
 * SMTPUTF8 / 8BITMIME decisions, and the MAIL and RCPT parameters
 * (SIZE=, BODY=, SMTPUTF8, RET=, ENVID=, NOTIFY=, ORCPT=) that depend on
 * what the server offered.  Run from test_smtp_client.c's main.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_tutil.h"

/* ---- the body ------------------------------------------------------- */

/* One recipient, pipelined, up to 354; returns what was written for the
 * body (t->out). */
static void body_session(struct tc *t, const char *body, size_t len)
{
	struct mf f;

	t_hello(t, EHLO_PIPE);
	mf_init(&f, "s@y.test", R1, NULL);
	f.m.body = (const uint8_t *)body;
	f.m.body_len = len;
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_wait(t, 180);
	t_out(t);
	expect_wait(t, 600);
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	mf_free(&f);
}

static void test_dot_stuffing(void **state)
{
	static const struct {
		const char *body, *wire;
	} cases[] = {
	    {"a\r\n.b\r\n..\r\n.\r\nend\r\n", "a\r\n..b\r\n...\r\n..\r\nend\r\n.\r\n"},
	    {".x\r\n", "..x\r\n.\r\n"},
	    {".\r\n", "..\r\n.\r\n"},
	    {".", "..\r\n.\r\n"},
	    {"", ".\r\n"},
	    {"abc", "abc\r\n.\r\n"},
	    {"abc\r\n", "abc\r\n.\r\n"},
	    {"a.b\r\n x.\r\n", "a.b\r\n x.\r\n.\r\n"},
	    {"x\r\n.", "x\r\n..\r\n.\r\n"},
	    {"\r\n.\r\n\r\n", "\r\n..\r\n\r\n.\r\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_new(SMTP_CLIENT_SMTP);

		snprintf(g_ctx, sizeof(g_ctx), "dot case %zu:", i);
		body_session(t, cases[i].body, strlen(cases[i].body));
		/* Everything after the commands is the stuffed body and its dot. */
		const char *pre = "EHLO " HELO "\r\n" MAIL_S RCPT_A "DATA\r\n";
		size_t pl = strlen(pre);

		assert_true(t->wire_len >= pl);
		expect_bytes("wire prefix", t->wire, pl, pre, pl);
		expect_bytes("body", t->wire + pl, t->wire_len - pl, cases[i].wire,
			     strlen(cases[i].wire));
		t_free(t);
	}
	g_ctx[0] = '\0';
}

/* The reference: RFC 5321 4.5.2 done the obvious way. */
static char *ref_stuff(const char *b, size_t len, size_t *out_len)
{
	char *o = malloc(2 * len + 8);
	size_t j = 0;

	assert_non_null(o);
	for (size_t i = 0; i < len; i++) {
		if (b[i] == '.' && (i == 0 || b[i - 1] == '\n'))
			o[j++] = '.';
		o[j++] = b[i];
	}
	if (!(len >= 2 && b[len - 2] == '\r' && b[len - 1] == '\n') && len) {
		o[j++] = '\r';
		o[j++] = '\n';
	}
	memcpy(o + j, ".\r\n", 3);
	*out_len = j + 3;
	return o;
}

struct bodybuf {
	char *p;
	size_t len, cap;
};

static void bb_add(struct bodybuf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void bb_rep(struct bodybuf *b, char ch, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bb_add(b, &ch, 1);
}

static void check_big_body(const struct bodybuf *b, size_t write_chunk)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);
	const char *pre = "EHLO " HELO "\r\n" MAIL_S RCPT_A "DATA\r\n";
	size_t rl, pl = strlen(pre);
	char *ref = ref_stuff(b->p, b->len, &rl);

	t->write_chunk = write_chunk;
	body_session(t, b->p, b->len);
	assert_true(t->wire_len >= pl);
	expect_bytes("wire prefix", t->wire, pl, pre, pl);
	expect_bytes("stuffed body", t->wire + pl, t->wire_len - pl, ref, rl);
	/* Sliced, never copied whole: at most one slice plus the final dot. */
	if (t->max_slice > SMTP_CLIENT_SLICE + 5)
		fail_msg("%s a slice of %zu octets", g_ctx, t->max_slice);
	if (b->len > SMTP_CLIENT_SLICE && t->nslices < 4)
		fail_msg("%s %u slices for %zu octets", g_ctx, t->nslices, b->len);
	free(ref);
	t_free(t);
}

static void test_body_slices(void **state)
{
	(void)state;
	/* A dot line at every position around the first slice boundary,
	 * with its CRLF split there too. */
	for (size_t delta = 0; delta <= 6; delta++) {
		struct bodybuf b = {0};

		snprintf(g_ctx, sizeof(g_ctx), "slice delta %zu:", delta);
		bb_rep(&b, 'a', SMTP_CLIENT_SLICE - delta);
		bb_add(&b, "\r\n.x\r\n..y\r\n", 11);
		bb_rep(&b, 'b', SMTP_CLIENT_SLICE + 3);
		bb_add(&b, "\r\n.\r\n.end", 9);
		check_big_body(&b, 0);
		check_big_body(&b, 4093); /* short writes */
		free(b.p);
	}
	/* A body of nothing but dot lines: every line stuffed, ~3 slices. */
	{
		struct bodybuf b = {0};

		snprintf(g_ctx, sizeof(g_ctx), "dot lines:");
		for (int i = 0; i < 50000; i++)
			bb_add(&b, ".\r\n", 3);
		check_big_body(&b, 0);
		free(b.p);
	}
	/* First octet a dot, big body. */
	{
		struct bodybuf b = {0};

		snprintf(g_ctx, sizeof(g_ctx), "leading dot:");
		bb_add(&b, ".", 1);
		bb_rep(&b, 'c', 3 * SMTP_CLIENT_SLICE);
		check_big_body(&b, 0);
		free(b.p);
	}
	g_ctx[0] = '\0';
}

/* ---- local decisions ------------------------------------------------------ */

static void expect_local_refusal(struct tc *t, const struct smtp_client_msg *m, uint16_t code,
				 const char *enh)
{
	unsigned done = t->ndone;
	char want[256];
	size_t n = 0;

	t_send(t, m);
	/* Decided inside send: results and msg_done before it returned. */
	assert_int_equal(t->ndone, done + 1);
	for (uint32_t k = 0; k < m->nrcpts; k++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "R%u %u %s MAIL L\n", k, code,
				      enh);
	snprintf(want + n, sizeof(want) - n, "D\n");
	expect_log(t, want);
	expect_out(t, "");
	expect_state(t, SMTP_CLIENT_READY);
	expect_wait(t, 0);
}

static void test_size_limit(void **state)
{
	struct tc *t =
	    t_open(SMTP_CLIENT_SMTP, "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
	char body[102];
	struct mf f;

	(void)state;
	memset(body, 'x', 99);
	memcpy(body + 99, "\r\n", 3); /* 101 octets */
	mf_init(&f, "s@y.test", R2, body);
	expect_local_refusal(t, &f.m, 552, "5.3.4");
	/* At the limit it goes, with SIZE=. */
	f.m.body_len = 100;
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> SIZE=100\r\n" RCPT_A RCPT_B "DATA\r\n");
	mf_free(&f);
	t_free(t);

	/* SIZE without a number: no fixed limit, SIZE= still given. */
	t = t_open(SMTP_CLIENT_SMTP, "250-mx.test\r\n250 SIZE\r\n");
	mf_init(&f, "s@y.test", R1, body);
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> SIZE=101\r\n");
	mf_free(&f);
	t_free(t);
}

static void test_smtputf8(void **state)
{
	static const char *const UR[] = {"j\xc3\xb6rg@x.test", NULL};
	const char *hdr8 = "Subject: gr\xc3\xbc\xc3\x9f\x65\r\n\r\nhi\r\n";
	const char *body8 = "Subject: hi\r\n\r\ngr\xc3\xbc\xc3\x9f\x65\r\n";
	struct tc *t;
	struct mf f;

	(void)state;
	/* A UTF-8 address needs SMTPUTF8: refused locally without it. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	mf_init(&f, "s@y.test", UR, BODY);
	f.env.smtputf8 = true;
	expect_local_refusal(t, &f.m, 553, "5.6.7");
	mf_free(&f);
	/* A UTF-8 sender, likewise. */
	mf_init(&f, "\xc3\xa5@y.test", R1, BODY);
	f.env.smtputf8 = true;
	expect_local_refusal(t, &f.m, 553, "5.6.7");
	mf_free(&f);
	/* UTF-8 in the header section. */
	mf_init(&f, "s@y.test", R1, hdr8);
	f.env.smtputf8 = true;
	expect_local_refusal(t, &f.m, 553, "5.6.7");
	mf_free(&f);
	/* SMTPUTF8 asked for but nothing needs it: downgraded, sent plain. */
	mf_init(&f, "s@y.test", R1, BODY);
	f.env.smtputf8 = true;
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	mf_free(&f);
	/* 8-bit only below the header: 8BITMIME is enough. */
	mf_init(&f, "s@y.test", R1, body8);
	f.env.smtputf8 = true;
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> BODY=8BITMIME\r\n" RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n451 later\r\n");
	expect_log(t, "R0 451 4.0.0 DATA\nD\n");
	mf_free(&f);
	/* An empty header section: the 8-bit text after it is body. */
	mf_init(&f, "s@y.test", R1, "\r\ngr\xc3\xbc\xc3\x9f\x65\r\n\r\nmore\r\n");
	f.env.smtputf8 = true;
	t_send(t, &f.m);
	expect_out(t, "RSET\r\nMAIL FROM:<s@y.test> BODY=8BITMIME\r\n" RCPT_A "DATA\r\n");
	mf_free(&f);
	t_free(t);

	/* A UTF-8 address without the flag still needs SMTPUTF8. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	mf_init(&f, "s@y.test", UR, BODY);
	expect_local_refusal(t, &f.m, 553, "5.6.7");
	mf_free(&f);
	t_free(t);

	/* Offered: the parameter goes on MAIL. */
	t = t_open(SMTP_CLIENT_SMTP,
		   "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
	mf_init(&f, "s@y.test", UR, hdr8);
	f.env.smtputf8 = true;
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> BODY=8BITMIME SMTPUTF8\r\n"
		      "RCPT TO:<j\xc3\xb6rg@x.test>\r\nDATA\r\n");
	mf_free(&f);
	t_free(t);
	t = t_open(SMTP_CLIENT_SMTP, "250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
	mf_init(&f, "s@y.test", UR, BODY);
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@x.test>\r\nDATA\r\n");
	mf_free(&f);
	t_free(t);
}

static void test_8bitmime(void **state)
{
	const char *body8 = "Subject: hi\r\n\r\ncaf\xc3\xa9\r\n";
	struct tc *t;
	struct mf f;

	(void)state;
	/* No 8BITMIME: an 8-bit body cannot go (RFC 6152 3). */
	t = t_open(SMTP_CLIENT_SMTP, "250-mx.test\r\n250 PIPELINING\r\n");
	mf_init(&f, "s@y.test", R2, body8);
	expect_local_refusal(t, &f.m, 554, "5.6.3");
	mf_free(&f);
	/* BODY=8BITMIME declared but the body is 7-bit: sent, no BODY=. */
	mf_init(&f, "s@y.test", R1, BODY);
	f.env.body = ENVELOPE_BODY_8BITMIME;
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A "DATA\r\n");
	mf_free(&f);
	t_free(t);

	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	mf_init(&f, "s@y.test", R1, body8);
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> BODY=8BITMIME\r\n" RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out(t, "Subject: hi\r\n\r\ncaf\xc3\xa9\r\n.\r\n");
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	mf_free(&f);
	/* Declared 8BITMIME, 7-bit content, offered: passed on. */
	mf_init(&f, "s@y.test", R1, BODY);
	f.env.body = ENVELOPE_BODY_8BITMIME;
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<s@y.test> BODY=8BITMIME\r\n" RCPT_A "DATA\r\n");
	mf_free(&f);
	t_free(t);
}

/* ---- parameters ---------------------------------------------------- */

static void dsn_env(struct mf *f)
{
	static const char *const none[] = {NULL};

	mf_init(f, "s@y.test", none, "hi\r\n");
	f->env.envid = strdup("QQ+2Bid");
	f->env.ret = ENVELOPE_RET_HDRS;
	f->env.body = ENVELOPE_BODY_8BITMIME;
	f->env.smtputf8 = true;
	assert_int_equal(envelope_add_rcpt(&f->env, "a@x.test", "rfc822;a@x.test",
					   ENVELOPE_NOTIFY_SUCCESS | ENVELOPE_NOTIFY_FAILURE),
			 0);
	assert_int_equal(envelope_add_rcpt(&f->env, "b@x.test", NULL, ENVELOPE_NOTIFY_NEVER), 0);
	assert_int_equal(envelope_add_rcpt(&f->env, "c@x.test", NULL, 0), 0);
	assert_int_equal(envelope_add_rcpt(&f->env, "d@x.test", "rfc822;D+40x.test",
					   ENVELOPE_NOTIFY_DELAY | ENVELOPE_NOTIFY_FAILURE |
					       ENVELOPE_NOTIFY_SUCCESS),
			 0);
	for (uint32_t i = 0; i < 4; i++)
		f->idx[i] = i;
	f->m.nrcpts = 4;
}

static void test_params(void **state)
{
	static const struct {
		const char *ehlo;
		uint8_t ret;
		const char *want;
	} cases[] = {
	    {EHLO_ALL, ENVELOPE_RET_HDRS,
	     "MAIL FROM:<s@y.test> SIZE=4 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2Bid\r\n"
	     "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.test\r\n"
	     "RCPT TO:<b@x.test> NOTIFY=NEVER\r\n"
	     "RCPT TO:<c@x.test>\r\n"
	     "RCPT TO:<d@x.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;D+40x.test\r\n"
	     "DATA\r\n"},
	    {"250-mx.test\r\n250-PIPELINING\r\n250 DSN\r\n", ENVELOPE_RET_FULL,
	     "MAIL FROM:<s@y.test> RET=FULL ENVID=QQ+2Bid\r\n"
	     "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.test\r\n"
	     "RCPT TO:<b@x.test> NOTIFY=NEVER\r\n"
	     "RCPT TO:<c@x.test>\r\n"
	     "RCPT TO:<d@x.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;D+40x.test\r\n"
	     "DATA\r\n"},
	    {"250-mx.test\r\n250-PIPELINING\r\n250 DSN\r\n", ENVELOPE_RET_UNSET,
	     "MAIL FROM:<s@y.test> ENVID=QQ+2Bid\r\n"
	     "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.test\r\n"
	     "RCPT TO:<b@x.test> NOTIFY=NEVER\r\n"
	     "RCPT TO:<c@x.test>\r\n"
	     "RCPT TO:<d@x.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;D+40x.test\r\n"
	     "DATA\r\n"},
	    /* Nothing offered that the parameters need: none of them. */
	    {"250-mx.test\r\n250 PIPELINING\r\n", ENVELOPE_RET_HDRS,
	     "MAIL FROM:<s@y.test>\r\n" RCPT_A RCPT_B RCPT_C RCPT_D "DATA\r\n"},
	    {"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250 8BITMIME\r\n", ENVELOPE_RET_HDRS,
	     "MAIL FROM:<s@y.test> SIZE=4 BODY=8BITMIME\r\n" RCPT_A RCPT_B RCPT_C RCPT_D
	     "DATA\r\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_open(SMTP_CLIENT_SMTP, cases[i].ehlo);
		struct mf f;

		snprintf(g_ctx, sizeof(g_ctx), "params case %zu:", i);
		dsn_env(&f);
		f.env.ret = cases[i].ret;
		t_send(t, &f.m);
		expect_out(t, cases[i].want);
		mf_free(&f);
		t_free(t);
	}
	g_ctx[0] = '\0';
}

static void test_null_sender_and_index_map(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "", R3, BODY);
	/* This transaction carries env recipients 2 and 0, in that order. */
	f.idx[0] = 2;
	f.idx[1] = 0;
	f.m.nrcpts = 2;
	t_send(t, &f.m);
	expect_out(t, "MAIL FROM:<>\r\n" RCPT_C RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n550 5.1.1 no c\r\n250 ok\r\n354 go\r\n");
	expect_log(t, "R0 550 5.1.1 RCPT\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R1 250 2.0.0 end of data\nD\n");
	mf_free(&f);
	t_free(t);
}

static void test_send_errors(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	assert_int_equal(t_send_rc(t, &f.m), -EBUSY); /* GREETING */
	t_hello(t, EHLO_PIPE);

	f.m.nrcpts = 0;
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	f.m.nrcpts = 2;
	f.idx[1] = 2; /* out of range */
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	f.idx[1] = 1;
	free(f.env.sender);
	f.env.sender = strdup("s@y.test> SIZE=1"); /* a space */
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	free(f.env.sender);
	f.env.sender = strdup("s@y.test\r\nRSET");
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	free(f.env.sender);
	f.env.sender = strdup("s@y.test");
	free(f.env.rcpts[1].addr);
	f.env.rcpts[1].addr = strdup("b@x.test\rDATA");
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	free(f.env.rcpts[1].addr);
	f.env.rcpts[1].addr = strdup("b@x.test");
	f.env.envid = strdup("a b");
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	free(f.env.envid);
	f.env.envid = NULL;
	f.env.rcpts[0].orcpt = strdup("rfc822;\x01");
	assert_int_equal(t_send_rc(t, &f.m), -EINVAL);
	free(f.env.rcpts[0].orcpt);
	f.env.rcpts[0].orcpt = NULL;
	assert_int_equal(t_send_rc(t, NULL), -EINVAL);
	/* None of that ran a callback or wrote anything. */
	expect_log(t, "");
	expect_out(t, "");
	expect_state(t, SMTP_CLIENT_READY);

	t_send(t, &f.m);
	assert_int_equal(t_send_rc(t, &f.m), -EBUSY); /* BUSY */
	mf_free(&f);
	t_free(t);
}

int test_smtp_client_msg_run(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dot_stuffing),
	    cmocka_unit_test(test_body_slices),
	    cmocka_unit_test(test_size_limit),
	    cmocka_unit_test(test_smtputf8),
	    cmocka_unit_test(test_8bitmime),
	    cmocka_unit_test(test_params),
	    cmocka_unit_test(test_null_sender_and_index_map),
	    cmocka_unit_test(test_send_errors),
	};

	return cmocka_run_group_tests_name("smtp_client_msg", tests, NULL, NULL);
}
