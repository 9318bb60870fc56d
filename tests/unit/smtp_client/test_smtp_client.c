/*
 * Unit tests for the SMTP/LMTP client engine (control/smtp_client): server
 * replies are scripted, and the exact octets the engine writes and every
 * per-recipient result are checked.  Greeting, EHLO/HELO/LHLO, extension
 * parsing, pipelined and lockstep transactions, dot-stuffing across body
 * slices, the local SIZE/SMTPUTF8/8BITMIME decisions, MAIL/RCPT
 * parameters, LMTP per-recipient replies, RSET between messages, QUIT,
 * EOF, timeouts, wait_seconds, malformed replies, and the same transcripts
 * fed whole, one byte at a time and split at every offset.
 *
 * Results are logged one line each, "R<k> <code> <enh> <stage>[ L]" for
 * rcpt_result (L: local) and "D" for msg_done, and compared as a string.
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

/* ---- construction ----------------------------------------------------- */

static void test_new_invalid(void **state)
{
	static const char *const bad[] = {"", "a b", "a\r\nMAIL", "tab\there", "del\x7f"};
	struct smtp_client_cfg cfg = {.helo_name = NULL};
	struct smtp_client_ops no_done = {.rcpt_result = tc_ops.rcpt_result};
	char longname[300];

	(void)state;
	errno = 0;
	assert_null(smtp_client_new(&cfg, &tc_ops, NULL));
	assert_int_equal(errno, EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.helo_name = bad[i];
		errno = 0;
		if (smtp_client_new(&cfg, &tc_ops, NULL) != NULL || errno != EINVAL)
			fail_msg("helo_name \"%s\" accepted", bad[i]);
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cfg.helo_name = longname;
	assert_null(smtp_client_new(&cfg, &tc_ops, NULL));
	cfg.helo_name = HELO;
	errno = 0;
	assert_null(smtp_client_new(&cfg, &no_done, NULL));
	assert_int_equal(errno, EINVAL);
	smtp_client_free(NULL);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_client_state_str(SMTP_CLIENT_GREETING), "greeting");
	assert_string_equal(smtp_client_state_str(SMTP_CLIENT_READY), "ready");
	assert_string_equal(smtp_client_state_str(SMTP_CLIENT_CLOSED), "closed");
	assert_string_equal(smtp_client_state_str((enum smtp_client_state)99), "unknown");
}

/* ---- greeting and hello ------------------------------------------------ */

static void test_greeting_then_ehlo(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);

	(void)state;
	expect_state(t, SMTP_CLIENT_GREETING);
	expect_out(t, "");
	assert_null(smtp_client_session_error(t->c));
	feed_ok(t, "220-mx.test ESMTP\r\n");
	expect_out(t, ""); /* not until the last line */
	feed_ok(t, "220 second line\r\n");
	expect_out(t, "EHLO client.test\r\n");
	expect_state(t, SMTP_CLIENT_HELLO);
	feed_ok(t, EHLO_PIPE);
	expect_state(t, SMTP_CLIENT_READY);
	expect_out(t, "");
	assert_null(smtp_client_session_error(t->c));
	expect_wait(t, 0);
	t_free(t);
}

static void test_greeting_refused(void **state)
{
	static const struct {
		const char *in;
		uint16_t code;
		const char *enh, *text;
	} cases[] = {
	    {"554 5.7.1 no service for you\r\n", 554, "5.7.1", "no service for you"},
	    {"421 busy, try later\r\n", 421, "4.0.0", "busy, try later"},
	    {"450-4.3.2 going down\r\n450 4.3.2 soon\r\n", 450, "4.3.2", "going down; soon"},
	    {"554\r\n", 554, "5.0.0", ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_new(SMTP_CLIENT_SMTP);
		const struct smtp_client_result *se;

		snprintf(g_ctx, sizeof(g_ctx), "greeting case %zu:", i);
		feed_ok(t, cases[i].in);
		se = smtp_client_session_error(t->c);
		assert_non_null(se);
		assert_int_equal(se->code, cases[i].code);
		assert_string_equal(se->enh, cases[i].enh);
		assert_string_equal(se->text, cases[i].text);
		assert_string_equal(se->stage, "greeting");
		assert_false(se->local);
		/* RFC 5321 3.1: the client QUITs. */
		expect_out(t, "QUIT\r\n");
		expect_state(t, SMTP_CLIENT_QUITTING);
		assert_int_equal(t_send_rc(t, &(struct smtp_client_msg){0}), -EBUSY);
		feed_ok(t, "221 bye\r\n");
		expect_state(t, SMTP_CLIENT_CLOSED);
		expect_out(t, "");
		/* Still the greeting's error. */
		assert_int_equal(smtp_client_session_error(t->c)->code, cases[i].code);
		expect_log(t, "");
		t_free(t);
	}
	g_ctx[0] = '\0';
}

static void test_greeting_not_220(void **state)
{
	static const char *const bad[] = {"250 hello\r\n", "354 what\r\n", "221 bye\r\n"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tc *t = t_new(SMTP_CLIENT_SMTP);
		const struct smtp_client_result *se;

		assert_int_equal(t_feed(t, bad[i]), -EPROTO);
		expect_state(t, SMTP_CLIENT_CLOSED);
		expect_out(t, "");
		se = smtp_client_session_error(t->c);
		assert_non_null(se);
		assert_int_equal(se->code, 421);
		assert_string_equal(se->enh, "4.5.0");
		assert_true(se->local);
		assert_int_equal(t_feed(t, "220 ok\r\n"), -EPROTO); /* sticky */
		t_free(t);
	}
}

static void test_greeting_eof_timeout(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);
	const struct smtp_client_result *se;

	(void)state;
	feed_ok(t, "220 partial"); /* no CRLF yet */
	smtp_client_eof(t->c, NULL);
	expect_state(t, SMTP_CLIENT_CLOSED);
	se = smtp_client_session_error(t->c);
	assert_non_null(se);
	assert_int_equal(se->code, 421);
	assert_string_equal(se->enh, "4.4.2");
	assert_true(se->local);
	assert_string_equal(se->stage, "connection");
	assert_string_equal(se->text, "connection lost (EOF) waiting for greeting");
	expect_out(t, "");
	t_free(t);

	t = t_new(SMTP_CLIENT_SMTP);
	smtp_client_timeout(t->c);
	se = smtp_client_session_error(t->c);
	assert_non_null(se);
	assert_string_equal(se->text, "timeout waiting for reply to greeting");
	expect_state(t, SMTP_CLIENT_CLOSED);
	t_free(t);
}

static void test_ehlo_extensions(void **state)
{
	static const struct {
		const char *reply;
		unsigned flags;
		uint64_t size_max;
	} cases[] = {
	    {EHLO_ALL,
	     SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
		 SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES,
	     10000},
	    {"250 mx.test\r\n", 0, 0},
	    {"250-mx.test PIPELINING\r\n250 SIZE 5\r\n", SMTP_EXT_SIZE, 5}, /* the domain line */
	    {"250-mx.test\r\n250-pipelining\r\n250-size\r\n250 dsn\r\n",
	     SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_DSN, 0},
	    {"250-mx.test\r\n250-SIZE huge\r\n250-PIPELININGX\r\n250 8BITMIME\r\n",
	     SMTP_EXT_SIZE | SMTP_EXT_8BITMIME, 0},
	    {"250-mx.test\r\n250-STARTTLS\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
	     SMTP_EXT_STARTTLS | SMTP_EXT_CHUNKING | SMTP_EXT_SMTPUTF8, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_open(SMTP_CLIENT_SMTP, cases[i].reply);
		const struct smtp_ehlo_exts *e = smtp_client_exts(t->c);

		if (e->flags != cases[i].flags || e->size_max != cases[i].size_max)
			fail_msg("ehlo case %zu: flags got %#x want %#x, size got %llu want %llu",
				 i, e->flags, cases[i].flags, (unsigned long long)e->size_max,
				 (unsigned long long)cases[i].size_max);
		t_free(t);
	}
}

static void test_ehlo_refused_helo(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);
	struct mf f;

	(void)state;
	feed_ok(t, "220 mx.test\r\n");
	expect_out(t, "EHLO client.test\r\n");
	/* Keywords in a 5xx reply do not count. */
	feed_ok(t, "502-5.5.1 no EHLO\r\n502 PIPELINING\r\n");
	expect_out(t, "HELO client.test\r\n");
	expect_state(t, SMTP_CLIENT_HELLO);
	feed_ok(t, "250 mx.test\r\n");
	expect_state(t, SMTP_CLIENT_READY);
	assert_int_equal(smtp_client_exts(t->c)->flags, 0);
	assert_null(smtp_client_session_error(t->c));
	/* No extensions: lockstep, no parameters. */
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_A);
	mf_free(&f);
	t_free(t);
}

static void test_hello_refused(void **state)
{
	static const struct {
		enum smtp_client_proto proto;
		const char *replies[2]; /* to the first hello, to HELO */
		const char *stage;
		uint16_t code;
	} cases[] = {
	    {SMTP_CLIENT_SMTP, {"500 what\r\n", "550 5.7.1 go away\r\n"}, "HELO", 550},
	    {SMTP_CLIENT_SMTP, {"421 4.3.2 shutting down\r\n", NULL}, "EHLO", 421},
	    {SMTP_CLIENT_SMTP, {"554 5.7.1 no\r\n", "421 bye\r\n"}, "HELO", 421},
	    {SMTP_CLIENT_LMTP, {"500 5.5.1 what\r\n", NULL}, "LHLO", 500},
	    {SMTP_CLIENT_LMTP, {"451 later\r\n", NULL}, "LHLO", 451},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_new(cases[i].proto);
		const struct smtp_client_result *se;

		snprintf(g_ctx, sizeof(g_ctx), "hello case %zu:", i);
		feed_ok(t, "220 mx.test\r\n");
		t_out(t);
		feed_ok(t, cases[i].replies[0]);
		if (cases[i].replies[1]) {
			expect_out(t, "HELO client.test\r\n");
			assert_null(smtp_client_session_error(t->c));
			feed_ok(t, cases[i].replies[1]);
		}
		se = smtp_client_session_error(t->c);
		assert_non_null(se);
		assert_string_equal(se->stage, cases[i].stage);
		assert_int_equal(se->code, cases[i].code);
		assert_false(se->local);
		expect_out(t, "QUIT\r\n");
		expect_state(t, SMTP_CLIENT_QUITTING);
		smtp_client_eof(t->c, NULL);
		expect_state(t, SMTP_CLIENT_CLOSED);
		assert_string_equal(smtp_client_session_error(t->c)->stage, cases[i].stage);
		t_free(t);
	}
	g_ctx[0] = '\0';

	/* A 3xx to EHLO is nonsense. */
	struct tc *t = t_new(SMTP_CLIENT_SMTP);

	feed_ok(t, "220 mx.test\r\n");
	t_out(t);
	assert_int_equal(t_feed(t, "354 go\r\n"), -EPROTO);
	expect_state(t, SMTP_CLIENT_CLOSED);
	assert_string_equal(smtp_client_session_error(t->c)->enh, "4.5.0");
	t_free(t);
}

/* ---- transactions ------------------------------------------------------ */

/* Pipelined: MAIL, every RCPT and DATA in one write; mixed RCPT replies
 * land on the right k. */
static void sc_pipelined(struct tc *t)
{
	struct mf f;
	const void *p;
	size_t n;
	const char *cmds = MAIL_S RCPT_A RCPT_B RCPT_C RCPT_D "DATA\r\n";

	t_hello(t, EHLO_PIPE);
	mf_init(&f, "s@y.test", R4, BODY);
	t_send(t, &f.m);
	expect_state(t, SMTP_CLIENT_BUSY);
	/* RFC 2920: one output, all commands. */
	n = smtp_client_output(t->c, &p);
	expect_bytes("pipelined commands", p, n, cmds, strlen(cmds));
	smtp_client_output_done(t->c, n);
	expect_out(t, "");
	feed_ok(t, "250 2.1.0 ok\r\n550 5.1.1 a unknown\r\n250 2.1.5 ok\r\n"
		   "450 4.2.1 c later\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_log(t, "R0 550 5.1.1 RCPT\nR2 450 4.2.1 RCPT\n");
	expect_text(t, 0, "a unknown");
	expect_out(t, BODY ".\r\n");
	expect_state(t, SMTP_CLIENT_BUSY);
	feed_ok(t, "250 2.0.0 queued as X1\r\n");
	expect_log(t, "R1 250 2.0.0 end of data\nR3 250 2.0.0 end of data\nD\n");
	expect_text(t, 1, "queued as X1");
	assert_false(t->res[1].local);
	assert_int_equal(t->res[1].stage_state, SMTP_CLIENT_BUSY);
	expect_state(t, SMTP_CLIENT_READY);
	expect_wait(t, 0);
	expect_out(t, "");
	mf_free(&f);
}

/* Lockstep: one command, one reply. */
static void sc_lockstep(struct tc *t)
{
	struct mf f;

	t_hello(t, EHLO_LOCK);
	mf_init(&f, "s@y.test", R3, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_A);
	feed_ok(t, "550 5.1.1 no such user\r\n");
	expect_log(t, "R0 550 5.1.1 RCPT\n");
	expect_out(t, RCPT_B);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_C);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, "DATA\r\n");
	feed_ok(t, "354 go\r\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "250-2.0.0 ok\r\n250 2.0.0 queued\r\n");
	expect_log(t, "R1 250 2.0.0 end of data\nR2 250 2.0.0 end of data\nD\n");
	expect_text(t, 1, "ok; queued");
	expect_state(t, SMTP_CLIENT_READY);
	mf_free(&f);
}

/* LMTP: one reply per accepted recipient after the dot, in RCPT order. */
static void sc_lmtp(struct tc *t)
{
	struct mf f;

	t_hello(t, "250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
	mf_init(&f, "s@y.test", R4, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A RCPT_B RCPT_C RCPT_D "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n550 5.1.1 no b\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	expect_log(t, "R1 550 5.1.1 RCPT\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "250 2.1.5 a delivered\r\n452 4.2.2 c over quota\r\n");
	expect_log(t, "R0 250 2.1.5 end of data\nR2 452 4.2.2 end of data\n");
	expect_state(t, SMTP_CLIENT_BUSY);
	expect_text(t, 2, "c over quota");
	feed_ok(t, "250 2.1.5 d delivered\r\n");
	expect_log(t, "R3 250 2.1.5 end of data\nD\n");
	expect_state(t, SMTP_CLIENT_READY);
	/* The next message needs no RSET: LMTP ended the transaction. */
	mf_free(&f);
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "550 5.2.0 mailbox broken\r\n");
	expect_log(t, "R0 550 5.2.0 end of data\nD\n");
	smtp_client_quit(t->c);
	expect_out(t, "QUIT\r\n");
	feed_ok(t, "221 bye\r\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	mf_free(&f);
}

/* A protocol error in the middle of a pipelined reply batch. */
static void sc_mixed_codes(struct tc *t)
{
	struct mf f;

	t_hello(t, EHLO_PIPE);
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	assert_int_equal(t_feed(t, "250 ok\r\n250-ok\r\n550 no\r\n250 ok\r\n"), -EPROTO);
	expect_log(t, "R0 421 4.5.0 connection L\nR1 421 4.5.0 connection L\nD\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_out(t, "");
	mf_free(&f);
}

static void test_pipelined(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);

	(void)state;
	sc_pipelined(t);
	t_free(t);
}

static void test_lockstep(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);

	(void)state;
	sc_lockstep(t);
	t_free(t);
}

static void test_no_pipelining_cfg(void **state)
{
	struct tc *t = t_new_mode(SMTP_CLIENT_SMTP, true, NULL, FEED_WHOLE, 0);
	struct mf f;

	(void)state;
	t_hello(t, EHLO_PIPE); /* offered, but we said no */
	assert_true(smtp_client_exts(t->c)->flags & SMTP_EXT_PIPELINING);
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_A);
	mf_free(&f);
	t_free(t);
}

static void test_lmtp(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_LMTP);

	(void)state;
	sc_lmtp(t);
	t_free(t);
}

static void test_lmtp_extra_reply(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_LMTP, "250 lmtp.test\r\n");
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_A);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_B);
	feed_ok(t, "550 no\r\n");
	expect_out(t, "DATA\r\n");
	feed_ok(t, "354 go\r\n");
	expect_out(t, BODY ".\r\n");
	/* One accepted recipient, so one reply; a second is unsolicited. */
	assert_int_equal(t_feed(t, "250 ok a\r\n250 ok b\r\n"), -EPROTO);
	expect_log(t, "R1 550 5.0.0 RCPT\nR0 250 2.0.0 end of data\nD\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	mf_free(&f);
	t_free(t);
}

static void test_lmtp_first_refused(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_LMTP, "250-lmtp.test\r\n250 PIPELINING\r\n");
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R4, BODY);
	t_send(t, &f.m);
	t_out(t);
	/* k 0 and 2 refused: the data replies are k 1 and 3's. */
	feed_ok(t, "250 ok\r\n550 5.1.1 no a\r\n250 ok\r\n450 4.2.1 no c\r\n250 ok\r\n354 go\r\n");
	expect_log(t, "R0 550 5.1.1 RCPT\nR2 450 4.2.1 RCPT\n");
	t_out(t);
	feed_ok(t, "452 4.2.2 b full\r\n");
	expect_log(t, "R1 452 4.2.2 end of data\n");
	expect_text(t, 1, "b full");
	feed_ok(t, "250 2.1.5 d ok\r\n");
	expect_log(t, "R3 250 2.1.5 end of data\nD\n");
	mf_free(&f);
	t_free(t);
}

static void test_lmtp_all_refused(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_LMTP, "250-lmtp.test\r\n250 PIPELINING\r\n");
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	/* RFC 2033: a 354 with nobody accepted would leave no reply to wait on. */
	assert_int_equal(t_feed(t, "250 ok\r\n550 no\r\n550 no\r\n354 go\r\n"), -EPROTO);
	expect_log(t, "R0 550 5.0.0 RCPT\nR1 550 5.0.0 RCPT\nD\n");
	expect_out(t, "");
	mf_free(&f);
	t_free(t);

	t = t_open(SMTP_CLIENT_LMTP, "250-lmtp.test\r\n250 PIPELINING\r\n");
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n550 no\r\n550 no\r\n503 5.5.1 no recipients\r\n");
	expect_log(t, "R0 550 5.0.0 RCPT\nR1 550 5.0.0 RCPT\nD\n");
	expect_state(t, SMTP_CLIENT_READY);
	expect_out(t, "");
	mf_free(&f);
	t_free(t);
}

static void test_all_refused_pipelined(void **state)
{
	struct mf f, g;

	(void)state;
	/* DATA refused (RFC 2920 3.1: the expected 554/503). */
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);

	mf_init(&f, "s@y.test", R2, BODY);
	mf_init(&g, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t,
		"250 ok\r\n550 5.1.1 no a\r\n451 4.3.0 no b\r\n554 5.5.1 no valid recipients\r\n");
	expect_log(t, "R0 550 5.1.1 RCPT\nR1 451 4.3.0 RCPT\nD\n");
	expect_out(t, ""); /* no body */
	expect_state(t, SMTP_CLIENT_READY);
	/* MAIL opened a transaction: the next one resets it first. */
	t_send(t, &g.m);
	expect_out(t, "RSET\r\n" MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	t_free(t);

	/* DATA got 354 anyway: a lone dot ends it, no body. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n550 no a\r\n550 no b\r\n354 go\r\n");
	expect_log(t, "R0 550 5.0.0 RCPT\nR1 550 5.0.0 RCPT\n");
	expect_out(t, ".\r\n");
	feed_ok(t, "554 5.5.1 empty\r\n");
	expect_log(t, "D\n");
	expect_state(t, SMTP_CLIENT_READY);
	t_send(t, &g.m);
	expect_out(t, "RSET\r\n" MAIL_S RCPT_A "DATA\r\n");
	t_free(t);
	mf_free(&f);
	mf_free(&g);
}

static void test_all_refused_lockstep(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_LOCK);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, RCPT_A);
	feed_ok(t, "550 no\r\n");
	expect_out(t, RCPT_B);
	feed_ok(t, "550 no\r\n");
	expect_log(t, "R0 550 5.0.0 RCPT\nR1 550 5.0.0 RCPT\nD\n");
	expect_out(t, ""); /* no DATA */
	expect_state(t, SMTP_CLIENT_READY);
	t_send(t, &f.m);
	expect_out(t, "RSET\r\n");
	expect_wait(t, 120);
	feed_ok(t, "250 ok\r\n");
	expect_out(t, MAIL_S);
	mf_free(&f);
	t_free(t);
}

static void test_mail_refused(void **state)
{
	struct mf f;
	struct tc *t;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	/* Lockstep: no RCPT follows, and no transaction is left to reset. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_LOCK);
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	feed_ok(t, "553 5.7.1 sender refused\r\n");
	expect_log(t, "R0 553 5.7.1 MAIL\nR1 553 5.7.1 MAIL\nD\n");
	expect_text(t, 1, "sender refused");
	expect_out(t, "");
	t_send(t, &f.m);
	expect_out(t, MAIL_S);
	t_free(t);

	/* Pipelined: the 503s to RCPT and DATA are consumed. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "451 4.3.0 try later\r\n");
	expect_log(t, "R0 451 4.3.0 MAIL\nR1 451 4.3.0 MAIL\n");
	expect_state(t, SMTP_CLIENT_BUSY);
	feed_ok(t, "503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n");
	expect_log(t, "D\n");
	expect_state(t, SMTP_CLIENT_READY);
	expect_out(t, "");
	t_free(t);
	mf_free(&f);
}

static void test_data_refused(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R3, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n451 4.3.1 no space\r\n");
	expect_log(t, "R1 550 5.0.0 RCPT\nR0 451 4.3.1 DATA\nR2 451 4.3.1 DATA\nD\n");
	expect_out(t, "");
	expect_state(t, SMTP_CLIENT_READY);
	/* A 2xx to DATA is nonsense. */
	t_send(t, &f.m);
	t_out(t);
	assert_int_equal(t_feed(t, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"),
			 -EPROTO);
	expect_log(t, "R0 421 4.5.0 connection L\nR1 421 4.5.0 connection L\n"
		      "R2 421 4.5.0 connection L\nD\n");
	mf_free(&f);
	t_free(t);
}

static void test_end_of_data_refused(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R3, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n250 ok\r\n550 5.1.1 no c\r\n354 go\r\n");
	expect_log(t, "R2 550 5.1.1 RCPT\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "452 4.3.1 insufficient system storage\r\n");
	expect_log(t, "R0 452 4.3.1 end of data\nR1 452 4.3.1 end of data\nD\n");
	expect_text(t, 0, "insufficient system storage");
	/* The failed transaction may linger: RSET first. */
	t_send(t, &f.m);
	expect_out(t, "RSET\r\n" MAIL_S RCPT_A RCPT_B RCPT_C "DATA\r\n");
	/* A 3xx after the dot is nonsense. */
	feed_ok(t, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	assert_int_equal(t_feed(t, "354 again\r\n"), -EPROTO);
	expect_log(t, "R0 421 4.5.0 connection L\nR1 421 4.5.0 connection L\n"
		      "R2 421 4.5.0 connection L\nD\n");
	mf_free(&f);
	t_free(t);
}

static void test_rset_refused(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	feed_ok(t, "451 later\r\n");
	expect_log(t, "R0 451 4.0.0 end of data\nD\n");
	t_send(t, &f.m);
	expect_out(t, "RSET\r\n" MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "500 what\r\n");
	expect_log(t, "R0 421 4.4.2 RSET L\nD\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_out(t, "");
	mf_free(&f);
	t_free(t);
}

/* ---- several messages -------------------------------------------------- */

static void test_second_message(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	/* After a 250 the server holds nothing: no RSET. */
	t_send(t, &f.m);
	expect_out(t, MAIL_S RCPT_A "DATA\r\n");
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out(t, BODY ".\r\n");
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	assert_int_equal(t->ndone, 2);
	mf_free(&f);
	t_free(t);
}

/* From msg_done: start the next message (what the relay does). */
static void chain_next(struct tc *t)
{
	struct mf *g = t->user;

	t->on_done = NULL;
	t->in_msg = true;
	t->nrcpts = g->m.nrcpts;
	memset(t->nres, 0, sizeof(t->nres));
	assert_int_equal(smtp_client_send(t->c, &g->m), 0);
}

static void test_send_from_msg_done(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f, g;

	(void)state;
	mf_init(&f, "s@y.test", R1, BODY);
	mf_init(&g, "s2@y.test", R2, "second\r\n");
	t->on_done = chain_next;
	t->user = &g;
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	/* The dot's reply and the next message's replies in one read. */
	feed_ok(t, "250 ok\r\n250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\nR1 550 5.0.0 RCPT\n");
	expect_out(t, "MAIL FROM:<s2@y.test>\r\n" RCPT_A RCPT_B "DATA\r\nsecond\r\n.\r\n");
	feed_ok(t, "250 ok\r\n");
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");

	/* And chaining out of a local decision, inside send. */
	mf_free(&g);
	mf_init(&g, "s3@y.test", R1, "third\r\n");
	t->on_done = chain_next;
	f.m.body = (const uint8_t *)"8bit \xff\r\n";
	f.m.body_len = 9;
	t_free(t);
	t = t_open(SMTP_CLIENT_SMTP, "250-mx.test\r\n250 PIPELINING\r\n");
	t->on_done = chain_next;
	t->user = &g;
	t_send(t, &f.m);
	expect_log(t, "R0 554 5.6.3 MAIL L\nD\n");
	expect_out(t, "MAIL FROM:<s3@y.test>\r\n" RCPT_A "DATA\r\n");
	mf_free(&f);
	mf_free(&g);
	t_free(t);
}

/* ---- the end of a session --------------------------------------------------- */

static void test_quit(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	smtp_client_quit(t->c);
	expect_state(t, SMTP_CLIENT_QUITTING);
	expect_wait(t, 120);
	expect_out(t, "QUIT\r\n");
	feed_ok(t, "221 2.0.0 bye\r\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_wait(t, 0);
	expect_out(t, "");
	assert_null(smtp_client_session_error(t->c));
	/* Later bytes are ignored; nothing else happens. */
	feed_ok(t, "250 what\r\n");
	smtp_client_eof(t->c, NULL);
	smtp_client_timeout(t->c);
	smtp_client_quit(t->c);
	mf_init(&f, "s@y.test", R1, BODY);
	assert_int_equal(t_send_rc(t, &f.m), -EBUSY);
	expect_log(t, "");
	expect_out(t, "");
	mf_free(&f);
	t_free(t);

	/* QUIT and EOF, or a garbled answer: closed either way, and the
	 * unwritten QUIT is dropped. */
	static const char *const ends[] = {NULL, "garbage\r\n", "221 bye\n"};

	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
		smtp_client_quit(t->c);
		if (ends[i])
			feed_ok(t, ends[i]);
		else
			smtp_client_eof(t->c, NULL);
		expect_state(t, SMTP_CLIENT_CLOSED);
		expect_out(t, "");
		t_free(t);
	}
	/* An overlong line after QUIT. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	smtp_client_quit(t->c);
	{
		char big[SMTP_CLIENT_LINE_MAX + 8];

		memset(big, 'x', sizeof(big));
		assert_int_equal(smtp_client_feed(t->c, big, sizeof(big)), 0);
	}
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_out(t, "");
	t_free(t);
}

static void test_quit_other_states(void **state)
{
	struct tc *t = t_new(SMTP_CLIENT_SMTP);
	struct mf f;

	(void)state;
	smtp_client_quit(t->c); /* GREETING: just close */
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_out(t, "");
	t_free(t);

	t = t_open(SMTP_CLIENT_SMTP, EHLO_LOCK);
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	smtp_client_quit(t->c); /* BUSY: outstanding recipients get 421 */
	expect_log(t, "R0 421 4.4.2 connection L\nR1 421 4.4.2 connection L\nD\n");
	expect_text(t, 1, "connection closed by us waiting for RCPT");
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_out(t, "");
	assert_null(smtp_client_session_error(t->c));
	mf_free(&f);
	t_free(t);
}

/* Lockstep, two recipients, to a given point: 0 greeting, 1 EHLO, 2 MAIL,
 * 3 second RCPT, 4 DATA, 5 body (354 came, nothing written), 6 dot. */
static struct tc *to_stage(int stage, struct mf *f, const struct smtp_client_timeouts *to)
{
	struct tc *t = t_new_mode(SMTP_CLIENT_SMTP, false, to, FEED_WHOLE, 0);

	mf_init(f, "s@y.test", R2, BODY);
	if (stage == 0)
		return t;
	feed_ok(t, "220 mx\r\n");
	t_out(t);
	if (stage == 1)
		return t;
	feed_ok(t, EHLO_LOCK);
	t_send(t, &f->m);
	t_out(t);
	if (stage == 2)
		return t;
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	if (stage == 3)
		return t;
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	if (stage == 4)
		return t;
	feed_ok(t, "354 go\r\n");
	if (stage == 5)
		return t;
	t_out(t);
	return t;
}

static void test_eof_timeout(void **state)
{
	static const char *const waits[] = {"greeting", "EHLO", "MAIL",	      "RCPT",
					    "DATA",	"DATA", "end of data"};

	(void)state;
	for (int how = 0; how < 3; how++) {
		for (int stage = 0; stage <= 6; stage++) {
			struct mf f;
			struct tc *t = to_stage(stage, &f, NULL);
			char want[160];

			snprintf(g_ctx, sizeof(g_ctx), "how %d stage %d:", how, stage);
			if (how == 0) {
				smtp_client_eof(t->c, NULL);
				snprintf(want, sizeof(want), "connection lost (EOF) waiting for %s",
					 waits[stage]);
			} else if (how == 1) {
				smtp_client_eof(t->c, "Connection reset by peer");
				snprintf(
				    want, sizeof(want),
				    "connection lost (Connection reset by peer) waiting for %s",
				    waits[stage]);
			} else {
				smtp_client_timeout(t->c);
				if (stage == 5)
					snprintf(want, sizeof(want),
						 "timeout writing the message body");
				else
					snprintf(want, sizeof(want),
						 "timeout waiting for reply to %s", waits[stage]);
			}
			expect_state(t, SMTP_CLIENT_CLOSED);
			expect_out(t, "");
			expect_wait(t, 0);
			if (stage < 2) {
				const struct smtp_client_result *se =
				    smtp_client_session_error(t->c);

				assert_non_null(se);
				assert_string_equal(se->text, want);
				assert_string_equal(se->enh, "4.4.2");
				assert_int_equal(se->code, 421);
				expect_log(t, "");
			} else {
				assert_null(smtp_client_session_error(t->c));
				expect_log(t, "R0 421 4.4.2 connection L\n"
					      "R1 421 4.4.2 connection L\nD\n");
				expect_text(t, 0, want);
				expect_text(t, 1, want);
			}
			/* Once. */
			smtp_client_eof(t->c, NULL);
			smtp_client_timeout(t->c);
			feed_ok(t, "250 ok\r\n");
			expect_log(t, "");
			assert_int_equal(t->ndone, stage < 2 ? 0u : 1u);
			mf_free(&f);
			t_free(t);
		}
	}
	g_ctx[0] = '\0';
}

static void test_eof_lmtp_partial(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_LMTP, "250-lmtp\r\n250 PIPELINING\r\n");
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R3, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	feed_ok(t, "250 2.1.5 a ok\r\n");
	expect_log(t, "R0 250 2.1.5 end of data\n");
	smtp_client_eof(t->c, NULL);
	/* Only the two still open, once, then msg_done once. */
	expect_log(t, "R1 421 4.4.2 connection L\nR2 421 4.4.2 connection L\nD\n");
	expect_text(t, 2, "connection lost (EOF) waiting for end of data");
	smtp_client_eof(t->c, NULL);
	expect_log(t, "");
	mf_free(&f);
	t_free(t);
}

static void test_eof_ready(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);

	(void)state;
	smtp_client_eof(t->c, NULL);
	expect_state(t, SMTP_CLIENT_CLOSED);
	assert_null(smtp_client_session_error(t->c));
	expect_log(t, "");
	t_free(t);
}

static void test_wait_seconds(void **state)
{
	const struct smtp_client_timeouts to = {11, 12, 13, 14, 15, 16, 17, 18};
	struct tc *t = t_new_mode(SMTP_CLIENT_SMTP, false, &to, FEED_WHOLE, 0);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	expect_wait(t, 11);
	feed_ok(t, "220 mx\r\n");
	t_out(t);
	expect_wait(t, 12);
	feed_ok(t, "502 no\r\n");
	t_out(t);
	expect_wait(t, 12); /* HELO too */
	feed_ok(t, "250 mx\r\n");
	expect_wait(t, 0);
	t_send(t, &f.m);
	t_out(t);
	expect_wait(t, 13);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	expect_wait(t, 14);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	expect_wait(t, 14);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	expect_wait(t, 15);
	feed_ok(t, "354 go\r\n");
	expect_wait(t, 16);
	t_out(t);
	expect_wait(t, 17);
	feed_ok(t, "451 later\r\n");
	expect_wait(t, 0);
	t_send(t, &f.m);
	expect_out(t, "RSET\r\n");
	expect_wait(t, 18);
	feed_ok(t, "250 ok\r\n");
	expect_wait(t, 13);
	feed_ok(t, "250 ok\r\n250 ok\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	feed_ok(t, "354 go\r\n");
	t_out(t);
	feed_ok(t, "250 ok\r\n");
	smtp_client_quit(t->c);
	expect_wait(t, 18);
	feed_ok(t, "221 bye\r\n");
	expect_wait(t, 0);
	mf_free(&f);
	t_free(t);

	/* Pipelined: what is waited on is the oldest unanswered command. */
	t = t_new_mode(SMTP_CLIENT_SMTP, false, &to, FEED_WHOLE, 0);
	t_hello(t, EHLO_PIPE);
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	expect_wait(t, 13);
	feed_ok(t, "250 ok\r\n");
	expect_wait(t, 14);
	feed_ok(t, "250 ok\r\n250 ok\r\n");
	expect_wait(t, 15);
	mf_free(&f);
	t_free(t);

	/* Zero means the RFC 5321 4.5.3.2 values. */
	t = t_new(SMTP_CLIENT_SMTP);
	expect_wait(t, 300);
	feed_ok(t, "220 mx\r\n");
	t_out(t);
	expect_wait(t, 300);
	feed_ok(t, EHLO_LOCK);
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	t_out(t);
	expect_wait(t, 300);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	expect_wait(t, 300);
	feed_ok(t, "250 ok\r\n");
	t_out(t);
	expect_wait(t, 120);
	feed_ok(t, "354 go\r\n");
	expect_wait(t, 180);
	t_out(t);
	expect_wait(t, 600);
	mf_free(&f);
	t_free(t);
}

/* ---- malformed replies ---------------------------------------------------------- */

static char *repeat_lines(const char *line, unsigned n, const char *last)
{
	size_t ll = strlen(line), la = strlen(last);
	char *s = malloc(ll * n + la + 1);

	assert_non_null(s);
	for (unsigned i = 0; i < n; i++)
		memcpy(s + i * ll, line, ll);
	memcpy(s + n * ll, last, la + 1);
	return s;
}

static char *long_line(size_t total) /* "250 xxx...\r\n", total octets */
{
	char *s = malloc(total + 1);

	assert_non_null(s);
	memcpy(s, "250 ", 4);
	memset(s + 4, 'x', total - 6);
	memcpy(s + total - 2, "\r\n", 3);
	return s;
}

static void test_malformed(void **state)
{
	char *lines101 = repeat_lines("250-x\r\n", SMTP_CLIENT_REPLY_LINES, "250 x\r\n");
	char *over = long_line(SMTP_CLIENT_LINE_MAX + 1);
	const char *cases[] = {
	    "250 ok\n",	    /* bare LF */
	    "250 o\rk\r\n", /* bare CR inside */
	    "2x0 ok\r\n",   /* bad code */
	    "650 ok\r\n",   /* no such class */
	    "150 ok\r\n",
	    "25\r\n",
	    "250_ok\r\n", /* bad separator */
	    "\r\n",
	    "250-ok\r\n251 ok\r\n", /* mixed codes */
	    "250-ok\r\n550 no\r\n",
	    "354 what\r\n", /* 3xx to RCPT */
	    over,
	    lines101,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int mode = FEED_WHOLE; mode <= FEED_BYTES; mode++) {
			struct tc *t = t_new_mode(SMTP_CLIENT_SMTP, false, NULL, mode, 0);
			struct mf f;

			snprintf(g_ctx, sizeof(g_ctx), "malformed case %zu mode %d:", i, mode);
			t_hello(t, EHLO_PIPE);
			mf_init(&f, "s@y.test", R2, BODY);
			t_send(t, &f.m);
			t_out(t);
			feed_ok(t, "250 ok\r\n");
			if (t_feed(t, cases[i]) != -EPROTO)
				fail_msg("%s not -EPROTO", g_ctx);
			expect_log(t, "R0 421 4.5.0 connection L\nR1 421 4.5.0 connection L\nD\n");
			if (strncmp(t->texts[0], "protocol error: ", 16) != 0)
				fail_msg("%s text \"%s\"", g_ctx, t->texts[0]);
			expect_state(t, SMTP_CLIENT_CLOSED);
			expect_out(t, "");
			assert_int_equal(t_feed(t, "250 ok\r\n"), -EPROTO); /* sticky */
			smtp_client_eof(t->c, NULL);
			expect_log(t, "");
			mf_free(&f);
			t_free(t);
		}
	}
	g_ctx[0] = '\0';
	free(lines101);
	free(over);
}

static void test_limits_exact(void **state)
{
	char *lines100 = repeat_lines("250-x\r\n", SMTP_CLIENT_REPLY_LINES - 1, "250 x\r\n");
	char *at = long_line(SMTP_CLIENT_LINE_MAX);
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	mf_init(&f, "s@y.test", R2, BODY);
	t_send(t, &f.m);
	t_out(t);
	/* At the limits: fine. */
	feed_ok(t, lines100);
	feed_ok(t, at);
	expect_log(t, "");
	feed_ok(t, "550 no\r\n354 go\r\n");
	expect_log(t, "R1 550 5.0.0 RCPT\n");
	/* A line text longer than the cap is cut to it. */
	t_out(t);
	feed_ok(t, at);
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	assert_int_equal(strlen(t->texts[0]), SMTP_CLIENT_TEXT_MAX);
	mf_free(&f);
	free(lines100);
	free(at);
	t_free(t);
}

static void test_unsolicited(void **state)
{
	struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	struct mf f;

	(void)state;
	/* READY: nobody asked. */
	assert_int_equal(t_feed(t, "250 ok\r\n"), -EPROTO);
	expect_state(t, SMTP_CLIENT_CLOSED);
	expect_log(t, "");
	t_free(t);

	/* More replies than commands. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	mf_init(&f, "s@y.test", R1, BODY);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	t_out(t);
	assert_int_equal(t_feed(t, "250 ok\r\n250 extra\r\n"), -EPROTO);
	expect_log(t, "R0 250 2.0.0 end of data\nD\n");
	expect_state(t, SMTP_CLIENT_CLOSED);
	t_free(t);

	/* A reply while the body is being written. */
	t = t_open(SMTP_CLIENT_SMTP, EHLO_PIPE);
	t_send(t, &f.m);
	t_out(t);
	feed_ok(t, "250 ok\r\n250 ok\r\n354 go\r\n");
	assert_int_equal(t_feed(t, "250 early\r\n"), -EPROTO);
	expect_log(t, "R0 421 4.5.0 connection L\nD\n");
	expect_out(t, "");
	t_free(t);

	/* Greeting and the EHLO reply in one read is fine (we cannot tell). */
	t = t_new(SMTP_CLIENT_SMTP);
	feed_ok(t, "220 mx\r\n250 mx\r\n");
	expect_state(t, SMTP_CLIENT_READY);
	t_free(t);
	mf_free(&f);
}

static void test_reply_text(void **state)
{
	static const struct {
		const char *reply, *enh, *text;
	} cases[] = {
	    {"550-5.1.1 first\r\n550 5.1.1 second\r\n", "5.1.1", "first; second"},
	    {"550 5.7.1\r\n", "5.7.1", ""},
	    {"550 5.7.1bad\r\n", "5.0.0", "5.7.1bad"},
	    {"550 4.7.1 wrong class\r\n", "5.0.0", "4.7.1 wrong class"},
	    {"550 5.1234.1 too long\r\n", "5.0.0", "5.1234.1 too long"},
	    {"550 5.123.456 x\r\n", "5.123.456", "x"},
	    {"550 bad\x01\x7f\xff!\r\n", "5.0.0", "bad?!"},
	    {"550-\r\n550 x\r\n", "5.0.0", "x"},
	    {"550\r\n", "5.0.0", ""},
	    {"550-x\r\n550-\r\n550 y\r\n", "5.0.0", "x; y"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tc *t = t_open(SMTP_CLIENT_SMTP, EHLO_LOCK);
		struct mf f;

		snprintf(g_ctx, sizeof(g_ctx), "text case %zu:", i);
		mf_init(&f, "s@y.test", R1, BODY);
		t_send(t, &f.m);
		t_out(t);
		feed_ok(t, "250 ok\r\n");
		t_out(t);
		feed_ok(t, cases[i].reply);
		assert_int_equal(t->nres[0], 1);
		assert_string_equal(t->res[0].enh, cases[i].enh);
		expect_text(t, 0, cases[i].text);
		assert_string_equal(t->res[0].stage, "RCPT");
		mf_free(&f);
		t_free(t);
	}
	g_ctx[0] = '\0';
}

/* ---- the same transcript however it is cut ------------------------------------ */

static void run_splits(void (*sc)(struct tc *t), enum smtp_client_proto proto, const char *name)
{
	struct tc *ref = t_new(proto);

	snprintf(g_ctx, sizeof(g_ctx), "%s whole:", name);
	sc(ref);
	for (size_t split = 0; split <= 160; split++) {
		for (int bytes = 0; bytes < 2; bytes++) {
			struct tc *t;

			if (bytes && split > 0)
				break;
			t = t_new_mode(proto, false, NULL, bytes ? FEED_BYTES : FEED_SPLIT, split);
			t->write_chunk = bytes ? 1 : split % 7;
			snprintf(g_ctx, sizeof(g_ctx), "%s %s %zu:", name,
				 bytes ? "bytes" : "split", split);
			sc(t);
			expect_bytes("all results", t->full, t->full_len, ref->full, ref->full_len);
			expect_bytes("all output", t->wire, t->wire_len, ref->wire, ref->wire_len);
			expect_state(t, smtp_client_state(ref->c));
			t_free(t);
		}
	}
	g_ctx[0] = '\0';
	t_free(ref);
}

static void test_splits(void **state)
{
	(void)state;
	run_splits(sc_pipelined, SMTP_CLIENT_SMTP, "pipelined");
	run_splits(sc_lockstep, SMTP_CLIENT_SMTP, "lockstep");
	run_splits(sc_lmtp, SMTP_CLIENT_LMTP, "lmtp");
	run_splits(sc_mixed_codes, SMTP_CLIENT_SMTP, "mixed codes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_invalid),
	    cmocka_unit_test(test_state_names),
	    cmocka_unit_test(test_greeting_then_ehlo),
	    cmocka_unit_test(test_greeting_refused),
	    cmocka_unit_test(test_greeting_not_220),
	    cmocka_unit_test(test_greeting_eof_timeout),
	    cmocka_unit_test(test_ehlo_extensions),
	    cmocka_unit_test(test_ehlo_refused_helo),
	    cmocka_unit_test(test_hello_refused),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_lockstep),
	    cmocka_unit_test(test_no_pipelining_cfg),
	    cmocka_unit_test(test_lmtp),
	    cmocka_unit_test(test_lmtp_extra_reply),
	    cmocka_unit_test(test_lmtp_first_refused),
	    cmocka_unit_test(test_lmtp_all_refused),
	    cmocka_unit_test(test_all_refused_pipelined),
	    cmocka_unit_test(test_all_refused_lockstep),
	    cmocka_unit_test(test_mail_refused),
	    cmocka_unit_test(test_data_refused),
	    cmocka_unit_test(test_end_of_data_refused),
	    cmocka_unit_test(test_rset_refused),
	    cmocka_unit_test(test_second_message),
	    cmocka_unit_test(test_send_from_msg_done),
	    cmocka_unit_test(test_quit),
	    cmocka_unit_test(test_quit_other_states),
	    cmocka_unit_test(test_eof_timeout),
	    cmocka_unit_test(test_eof_lmtp_partial),
	    cmocka_unit_test(test_eof_ready),
	    cmocka_unit_test(test_wait_seconds),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_limits_exact),
	    cmocka_unit_test(test_unsolicited),
	    cmocka_unit_test(test_reply_text),
	    cmocka_unit_test(test_splits),
	};

	int failed = cmocka_run_group_tests_name("smtp_client", tests, NULL, NULL);

	return failed + test_smtp_client_msg_run();
}
