/* Unit tests for the SMTP engine: every command in every state, reply
 * codes, MAIL/RCPT parameters, address syntax, BDAT, bare CR/LF, limits,
 * timeouts and memory.  Table-driven; failures print got and want. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/smtp_engine.h"

#define OUT_MAX 65536

/* One session plus what it produced. */
struct sess {
	struct smtp_engine_cfg cfg;
	struct smtp_engine *e;
	char out[OUT_MAX];     /* all replies so far */
	size_t out_len;
	unsigned events;       /* events seen */
	int decide_code;       /* reply for MAIL/RCPT events (250 if 0) */
	char body[8192];       /* last SMTP_EV_MESSAGE body */
	size_t body_len;
	struct envelope env;   /* copy of the scalar fields of the last message */
	char rcpt0_orcpt[128]; /* first recipient's ORCPT of the last message */
	uint8_t rcpt0_notify;
	uint32_t nrcpts;
	char envid[128];
	char proto[16];
	bool closed;
};

static void sess_init(struct sess *s, const struct smtp_engine_cfg *cfg)
{
	memset(s, 0, sizeof(*s));
	if (cfg) {
		s->cfg = *cfg;
	} else {
		s->cfg.hostname = "mx.test";
		s->cfg.max_message_size = 1000;
		s->cfg.max_recipients = 5;
		s->cfg.max_errors = 50;
	}
	s->e = smtp_engine_new(&s->cfg, "198.51.100.7");
	assert_non_null(s->e);
	smtp_engine_start(s->e);
}

static void sess_drain(struct sess *s);

/* A session past the greeting (already in s->out). */
static void sess_start(struct sess *s, const struct smtp_engine_cfg *cfg)
{
	sess_init(s, cfg);
	sess_drain(s);
}

static void sess_drain(struct sess *s)
{
	size_t n;
	const uint8_t *o = smtp_engine_output(s->e, &n);
	assert_true(s->out_len + n < OUT_MAX);
	if (n)
		memcpy(s->out + s->out_len, o, n);
	s->out_len += n;
	s->out[s->out_len] = '\0';
	smtp_engine_output_consumed(s->e, n);
}

static void sess_on_event(struct sess *s)
{
	const struct smtp_event *ev = smtp_engine_event(s->e);
	enum smtp_rc rc;
	assert_non_null(ev);
	assert_int_equal(smtp_engine_timeout_kind(s->e), SMTP_TIMEOUT_NONE);
	s->events++;
	if (ev->type == SMTP_EV_MESSAGE) {
		const struct envelope *env = ev->env;
		assert_true(ev->body_len < sizeof(s->body));
		memcpy(s->body, ev->body, ev->body_len);
		s->body_len = ev->body_len;
		s->env.size_hint = env->size_hint;
		s->env.body = env->body;
		s->env.ret = env->ret;
		s->env.smtputf8 = env->smtputf8;
		s->nrcpts = env->nrcpts;
		snprintf(s->envid, sizeof(s->envid), "%s", env->envid ? env->envid : "-");
		snprintf(s->proto, sizeof(s->proto), "%s", env->protocol);
		if (env->nrcpts) {
			snprintf(s->rcpt0_orcpt, sizeof(s->rcpt0_orcpt), "%s",
				 env->rcpts[0].orcpt ? env->rcpts[0].orcpt : "-");
			s->rcpt0_notify = env->rcpts[0].notify;
		}
		rc = smtp_engine_resume(s->e, 250, "2.0.0 Ok: queued as T", false);
	} else {
		int code = s->decide_code ? s->decide_code : 250;
		rc = smtp_engine_resume(s->e, code, code < 400 ? "2.1.0 Ok" : "5.7.1 No",
					code >= 400);
	}
	if (rc == SMTP_RC_CLOSE)
		s->closed = true;
}

/* Feed input (all of it, resuming events) and collect the output. */
static void sess_feed(struct sess *s, const void *in, size_t len)
{
	const uint8_t *p = in;
	while (len && !s->closed) {
		enum smtp_rc rc;
		size_t n = smtp_engine_feed(s->e, p, len, &rc);
		p += n;
		len -= n;
		if (rc == SMTP_RC_EVENT)
			sess_on_event(s);
		else if (rc == SMTP_RC_CLOSE)
			s->closed = true;
		else
			assert_int_equal(len, 0);
	}
	sess_drain(s);
}

static void sess_send(struct sess *s, const char *in)
{
	sess_feed(s, in, strlen(in));
}

/* The output since mark. */
static const char *sess_since(struct sess *s, size_t mark)
{
	return s->out + mark;
}

static void sess_free(struct sess *s)
{
	smtp_engine_free(s->e);
	s->e = NULL;
}

static void expect_prefix(const char *what, const char *got, const char *want)
{
	if (strncmp(got, want, strlen(want)) != 0)
		fail_msg("%s:\n  got:  %.200s\n  want: %s...", what, got, want);
}

static void expect_eq(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fail_msg("%s:\n  got:  %.400s\n  want: %s", what, got, want);
}

/* ---- every command in every state ---- */

static const struct {
	const char *name;
	const char *setup;
} states[] = {
	{"greeted", ""},
	{"helo", "HELO c\r\n"},
	{"ehlo", "EHLO c\r\n"},
	{"mail", "EHLO c\r\nMAIL FROM:<a@example.org>\r\n"},
	{"rcpt", "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"},
	{"bdat", "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 1\r\nx"},
};

enum { S_GREET, S_HELO, S_EHLO, S_MAIL, S_RCPT, S_BDAT, S_N };

static const struct {
	const char *cmd;
	const char *want[S_N]; /* reply prefix per state */
} state_cmds[] = {
	{"EHLO x\r\n", {"250-mx.test", "250-mx.test", "250-mx.test", "250-mx.test", "250-mx.test",
			"250-mx.test"}},
	{"HELO x\r\n", {"250 mx.test", "250 mx.test", "250 mx.test", "250 mx.test", "250 mx.test",
			"250 mx.test"}},
	{"MAIL FROM:<z@example.org>\r\n",
	 {"503 5.5.1", "250 2.1.0", "250 2.1.0", "503 5.5.1", "503 5.5.1", "503 5.5.1"}},
	{"RCPT TO:<z@example.org>\r\n",
	 {"503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.1.0", "250 2.1.0", "503 5.5.1"}},
	{"DATA\r\n", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "554 5.5.1", "354 ", "503 5.5.1"}},
	{"BDAT 1\r\nz", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.0.0 1 octets",
			  "250 2.0.0 1 octets"}},
	{"BDAT 0 LAST\r\n", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.0.0 Ok: q",
			     "250 2.0.0 Ok: q"}},
	{"RSET\r\n", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
	{"NOOP\r\n", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
	{"HELP\r\n", {"214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0"}},
	{"VRFY a\r\n", {"252 2.5.0", "252 2.5.0", "252 2.5.0", "252 2.5.0", "252 2.5.0", "252 2.5.0"}},
	{"EXPN a\r\n", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
	{"XYZZY\r\n", {"500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1"}},
	{"QUIT\r\n", {"221 2.0.0 Bye", "221 2.0.0 Bye", "221 2.0.0 Bye", "221 2.0.0 Bye",
		      "221 2.0.0 Bye", "221 2.0.0 Bye"}},
};

static void test_command_state_table(void **unused)
{
	(void)unused;
	for (size_t c = 0; c < sizeof(state_cmds) / sizeof(state_cmds[0]); c++) {
		for (int st = 0; st < S_N; st++) {
			struct sess s;
			char what[128];
			sess_start(&s, NULL);
			sess_send(&s, states[st].setup);
			size_t mark = s.out_len;
			sess_send(&s, state_cmds[c].cmd);
			snprintf(what, sizeof(what), "state %s, command %.*s", states[st].name,
				 (int)strcspn(state_cmds[c].cmd, "\r"), state_cmds[c].cmd);
			expect_prefix(what, sess_since(&s, mark), state_cmds[c].want[st]);
			/* QUIT closes; nothing else does. */
			assert_int_equal(s.closed, strncmp(state_cmds[c].cmd, "QUIT", 4) == 0);
			sess_free(&s);
		}
	}
}

/* ---- replies that need a specific set-up ---- */

static const struct {
	const char *input;
	const char *want; /* whole output after the greeting */
} reply_cases[] = {
	{"EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n"},
	{"HELO   \r\n", "501 5.5.4 Syntax: EHLO hostname\r\n"},
	{"\r\n", "500 5.5.2 Error: bad syntax\r\n"},
	{" NOOP\r\n", "500 5.5.2 Error: bad syntax\r\n"},
	{"NOOP\n", "500 5.5.2 Bare <LF> not allowed\r\n"},
	{"NO\rOP\r\n", "500 5.5.2 Bare <CR> not allowed\r\n"},
	{"NO\0OP\r\n", "500 5.5.2 NUL not allowed in a command\r\n"},
	{"HELO c\r\nMAIL FROM:<a@b.example> SIZE=1\r\n", "250 mx.test\r\n555 5.5.4 Parameters need EHLO\r\n"},
	{"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n", NULL},
	{"QUIT\r\nNOOP\r\n", "221 2.0.0 Bye\r\n"},
	{"RSET extra\r\n", "501 5.5.4 Syntax error: no parameters allowed\r\n"},
	{"VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n"},
};

static void test_reply_table(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		struct sess s;
		sess_start(&s, NULL);
		size_t mark = s.out_len;
		/* Inputs may hold a NUL: feed by the literal's length via strlen of parts. */
		const char *in = reply_cases[i].input;
		size_t len = strlen(in);
		if (strncmp(in, "NO", 2) == 0 && in[2] == '\0')
			len = 7; /* "NO\0OP\r\n" */
		sess_feed(&s, in, len);
		if (reply_cases[i].want)
			expect_eq(in, sess_since(&s, mark), reply_cases[i].want);
		else
			assert_non_null(strstr(sess_since(&s, mark), "552 5.3.4 "));
		sess_free(&s);
	}
}

static void test_greeting_and_ehlo(void **unused)
{
	(void)unused;
	struct sess s;
	sess_init(&s, NULL);
	expect_eq("greeting", s.out, "");
	sess_drain(&s);
	expect_eq("greeting", s.out, "220 mx.test ESMTP sluice\r\n");
	size_t mark = s.out_len;
	sess_send(&s, "EHLO client.example\r\n");
	expect_eq("EHLO", sess_since(&s, mark),
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
		  "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n"
		  "250 HELP\r\n");
	sess_free(&s);
}

/* ---- MAIL parameters ---- */

static const struct {
	const char *params;
	const char *want;
	uint64_t size;
	uint8_t body, ret;
	bool utf8;
	const char *envid;
} mail_cases[] = {
	{"", "250 ", 0, 0, 0, false, "-"},
	{" SIZE=0", "250 ", 0, 0, 0, false, "-"},
	{" SIZE=1000", "250 ", 1000, 0, 0, false, "-"},
	{" SIZE=1001", "552 5.3.4", 0, 0, 0, false, NULL},
	{" SIZE=", "501 5.5.4", 0, 0, 0, false, NULL},
	{" SIZE", "501 5.5.4", 0, 0, 0, false, NULL},
	{" SIZE=12a", "501 5.5.4", 0, 0, 0, false, NULL},
	{" SIZE=1 SIZE=2", "501 5.5.4", 0, 0, 0, false, NULL},
	{" SIZE=100000000000000000000", "501 5.5.4", 0, 0, 0, false, NULL},
	{" BODY=7BIT", "250 ", 0, 1, 0, false, "-"},
	{" body=8bitmime", "250 ", 0, 2, 0, false, "-"},
	{" BODY=BINARYMIME", "501 5.5.4", 0, 0, 0, false, NULL},
	{" BODY", "501 5.5.4", 0, 0, 0, false, NULL},
	{" SMTPUTF8", "250 ", 0, 0, 0, true, "-"},
	{" SMTPUTF8=1", "501 5.5.4", 0, 0, 0, false, NULL},
	{" RET=FULL", "250 ", 0, 0, 1, false, "-"},
	{" RET=hdrs", "250 ", 0, 0, 2, false, "-"},
	{" RET=NONE", "501 5.5.4", 0, 0, 0, false, NULL},
	{" ENVID=abc+2Bdef", "250 ", 0, 0, 0, false, "abc+2Bdef"},
	{" ENVID=abc+2bdef", "501 5.5.4", 0, 0, 0, false, NULL},
	{" ENVID=abc+", "501 5.5.4", 0, 0, 0, false, NULL},
	{" ENVID=a\x7f", "501 5.5.4", 0, 0, 0, false, NULL},
	{" ENVID=12345678901234567890123456789012345678901234567890123456789012345678901234567890"
	 "12345678901234567890",
	 "250 ", 0, 0, 0, false,
	 "1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678"
	 "901234567890"},
	{" ENVID=12345678901234567890123456789012345678901234567890123456789012345678901234567890"
	 "123456789012345678901",
	 "501 5.5.4", 0, 0, 0, false, NULL},
	{" SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x", "250 ", 10, 2, 2, true, "x"},
	{" X-UNKNOWN=1", "555 5.5.4", 0, 0, 0, false, NULL},
	{" AUTH=<>", "555 5.5.4", 0, 0, 0, false, NULL},
	{" -BAD=1", "501 5.5.4", 0, 0, 0, false, NULL},
	{" A=B=C", "501 5.5.4", 0, 0, 0, false, NULL},
	{"  SIZE=5  ", "250 ", 5, 0, 0, false, "-"},
};

static void test_mail_params(void **unused)
{
	(void)unused;
	char line[600];
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		struct sess s;
		sess_start(&s, NULL);
		sess_send(&s, "EHLO c\r\n");
		size_t mark = s.out_len;
		snprintf(line, sizeof(line), "MAIL FROM:<a@example.org>%s\r\n", mail_cases[i].params);
		sess_send(&s, line);
		expect_prefix(line, sess_since(&s, mark), mail_cases[i].want);
		if (mail_cases[i].envid) {
			sess_send(&s, "RCPT TO:<b@example.net>\r\nDATA\r\n.\r\n");
			if (s.body_len != 0 || s.events != 3)
				fail_msg("%s: events %u", line, s.events);
			assert_int_equal(s.env.size_hint, mail_cases[i].size);
			assert_int_equal(s.env.body, mail_cases[i].body);
			assert_int_equal(s.env.ret, mail_cases[i].ret);
			assert_int_equal(s.env.smtputf8, mail_cases[i].utf8);
			expect_eq(line, s.envid, mail_cases[i].envid);
			expect_eq(line, s.proto, mail_cases[i].utf8 ? "UTF8SMTP" : "ESMTP");
		} else {
			assert_int_equal(s.events, 0);
			assert_false(smtp_engine_in_transaction(s.e));
		}
		sess_free(&s);
	}
}

/* ---- RCPT parameters ---- */

static const struct {
	const char *params;
	const char *want;
	uint8_t notify;
	const char *orcpt;
} rcpt_cases[] = {
	{"", "250 ", 0, "-"},
	{" NOTIFY=NEVER", "250 ", 1, "-"},
	{" NOTIFY=SUCCESS", "250 ", 2, "-"},
	{" NOTIFY=FAILURE", "250 ", 4, "-"},
	{" NOTIFY=DELAY", "250 ", 8, "-"},
	{" notify=success,failure,delay", "250 ", 14, "-"},
	{" NOTIFY=FAILURE,FAILURE", "250 ", 4, "-"},
	{" NOTIFY=NEVER,DELAY", "501 5.5.4", 0, NULL},
	{" NOTIFY=DELAY,NEVER", "501 5.5.4", 0, NULL},
	{" NOTIFY=", "501 5.5.4", 0, NULL},
	{" NOTIFY=,SUCCESS", "501 5.5.4", 0, NULL},
	{" NOTIFY=SUCCESS,", "501 5.5.4", 0, NULL},
	{" NOTIFY=ALWAYS", "501 5.5.4", 0, NULL},
	{" NOTIFY", "501 5.5.4", 0, NULL},
	{" NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4", 0, NULL},
	{" ORCPT=rfc822;b@example.net", "250 ", 0, "rfc822;b@example.net"},
	{" ORCPT=rfc822;b+40example.net", "250 ", 0, "rfc822;b+40example.net"},
	{" ORCPT=rfc822;b+4", "501 5.5.4", 0, NULL},
	{" ORCPT=rfc822;b+4g", "501 5.5.4", 0, NULL},
	{" ORCPT=rfc822;", "501 5.5.4", 0, NULL},
	{" ORCPT=;b@example.net", "501 5.5.4", 0, NULL},
	{" ORCPT=rfc822", "501 5.5.4", 0, NULL},
	{" ORCPT=rfc(822;b", "501 5.5.4", 0, NULL},
	{" ORCPT=a;b ORCPT=a;b", "501 5.5.4", 0, NULL},
	{" NOTIFY=SUCCESS,DELAY ORCPT=utf-8;b@example.net", "250 ", 10, "utf-8;b@example.net"},
	{" FOO=BAR", "555 5.5.4", 0, NULL},
	{" SIZE=10", "555 5.5.4", 0, NULL},
};

static void test_rcpt_params(void **unused)
{
	(void)unused;
	char line[600];
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		struct sess s;
		sess_start(&s, NULL);
		sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\n");
		size_t mark = s.out_len;
		snprintf(line, sizeof(line), "RCPT TO:<b@example.net>%s\r\n", rcpt_cases[i].params);
		sess_send(&s, line);
		expect_prefix(line, sess_since(&s, mark), rcpt_cases[i].want);
		sess_send(&s, "DATA\r\n.\r\n");
		if (rcpt_cases[i].orcpt) {
			assert_int_equal(s.nrcpts, 1);
			assert_int_equal(s.rcpt0_notify, rcpt_cases[i].notify);
			expect_eq(line, s.rcpt0_orcpt, rcpt_cases[i].orcpt);
		} else {
			assert_int_equal(s.events, 1); /* MAIL only */
		}
		sess_free(&s);
	}
}

/* ---- address syntax ---- */

static const struct {
	const char *addr;
	bool utf8;    /* MAIL with SMTPUTF8 */
	bool mail_ok; /* as reverse-path */
	bool rcpt_ok; /* as forward-path */
	const char *mailbox;
	const char *domain;
} addr_cases[] = {
	{"<a@example.org>", false, true, true, "a@example.org", "example.org"},
	{"<A.B-c+d@sub.Example.ORG>", false, true, true, "A.B-c+d@sub.Example.ORG", "sub.Example.ORG"},
	{"<!#$%&'*+-/=?^_`{|}~@example.org>", false, true, true, NULL, "example.org"},
	{"<>", false, true, false, "", ""},
	{"<postmaster>", false, false, true, "postmaster", ""},
	{"<POSTMASTER>", false, false, true, "POSTMASTER", ""},
	{"<postmaster@example.org>", false, true, true, "postmaster@example.org", "example.org"},
	{"<a@b>", false, true, true, "a@b", "b"},
	{"<a@1.2.3.4>", false, true, true, "a@1.2.3.4", "1.2.3.4"},
	{"<a@[1.2.3.4]>", false, true, true, "a@[1.2.3.4]", "[1.2.3.4]"},
	{"<a@[IPv6:::1]>", false, true, true, "a@[IPv6:::1]", "[IPv6:::1]"},
	{"<a@[ipv6:2001:db8::1]>", false, true, true, NULL, "[ipv6:2001:db8::1]"},
	{"<a@[IPv6:1.2.3.4]>", false, false, false, NULL, NULL},
	{"<a@[1.2.3]>", false, false, false, NULL, NULL},
	{"<a@[1.2.3.4.5]>", false, false, false, NULL, NULL},
	{"<a@[]>", false, false, false, NULL, NULL},
	{"<a@[1.2.3.4]x>", false, false, false, NULL, NULL},
	{"<\"a b\"@example.org>", false, true, true, "\"a b\"@example.org", "example.org"},
	{"<\"a\\\"b\"@example.org>", false, true, true, NULL, "example.org"},
	{"<\"a@b\"@example.org>", false, true, true, "\"a@b\"@example.org", "example.org"},
	{"<\"a>b\"@example.org>", false, true, true, "\"a>b\"@example.org", "example.org"},
	{"<\"\"@example.org>", false, true, true, NULL, "example.org"},
	{"<@r1.example:a@example.org>", false, true, true, "a@example.org", "example.org"},
	{"<@r1.example,@r2.example:a@example.org>", false, true, true, "a@example.org", "example.org"},
	{"<@r1.example,r2.example:a@example.org>", false, false, false, NULL, NULL},
	{"<@:a@example.org>", false, false, false, NULL, NULL},
	{"<@r1.example:>", false, false, false, NULL, NULL},
	{"<a>", false, false, false, NULL, NULL},
	{"<a@>", false, false, false, NULL, NULL},
	{"<@example.org>", false, false, false, NULL, NULL},
	{"<a@@example.org>", false, false, false, NULL, NULL},
	{"<a.@example.org>", false, false, false, NULL, NULL},
	{"<.a@example.org>", false, false, false, NULL, NULL},
	{"<a..b@example.org>", false, false, false, NULL, NULL},
	{"<a b@example.org>", false, false, false, NULL, NULL},
	{"<a(b)@example.org>", false, false, false, NULL, NULL},
	{"<a@exa_mple.org>", false, false, false, NULL, NULL},
	{"<a@-example.org>", false, false, false, NULL, NULL},
	{"<a@example-.org>", false, false, false, NULL, NULL},
	{"<a@ex--ample.org>", false, true, true, NULL, "ex--ample.org"},
	{"<a@example..org>", false, false, false, NULL, NULL},
	{"<a@.example.org>", false, false, false, NULL, NULL},
	{"<a@example.org.>", false, false, false, NULL, NULL},
	{"<\"a\x01\"@example.org>", false, false, false, NULL, NULL},
	{"<\"a\\\x01\"@example.org>", false, false, false, NULL, NULL},
	{"<j\xc3\xa9@example.org>", false, false, false, NULL, NULL},
	{"<j\xc3\xa9@example.org>", true, true, true, "j\xc3\xa9@example.org", "example.org"},
	{"<a@\xc3\xa9xample.org>", true, true, true, NULL, "\xc3\xa9xample.org"},
	{"<a@\xc3\xa9xample.org>", false, false, false, NULL, NULL},
	{"<\"\xe2\x82\xac\"@example.org>", true, true, true, NULL, "example.org"},
	{"<\"\xe2\x82\xac\"@example.org>", false, false, false, NULL, NULL},
	{"<j\xc3@example.org>", true, false, false, NULL, NULL},
	{"<j\xc0\xafx@example.org>", true, false, false, NULL, NULL},	      /* overlong */
	{"<j\xe0\x80\xafx@example.org>", true, false, false, NULL, NULL},     /* overlong */
	{"<j\xed\xa0\x80x@example.org>", true, false, false, NULL, NULL},     /* surrogate */
	{"<j\xf4\x90\x80\x80x@example.org>", true, false, false, NULL, NULL}, /* > U+10FFFF */
	{"<j\xf0\x9f\x98\x80@example.org>", true, true, true, NULL, "example.org"},
	{"<j\x80@example.org>", true, false, false, NULL, NULL},
	{"<a@b.c", false, false, false, NULL, NULL},
	{"a@b.c", false, false, false, NULL, NULL},
	{"<a@b.c> x", false, false, false, NULL, NULL}, /* "x" is an unknown parameter */
	/* local part 64 ok, 65 not */
	{"<1234567890123456789012345678901234567890123456789012345678901234@example.org>", false,
	 true, true, NULL, "example.org"},
	{"<12345678901234567890123456789012345678901234567890123456789012345@example.org>", false,
	 false, false, NULL, NULL},
};

static void test_address_table(void **unused)
{
	(void)unused;
	char line[600];
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		for (int rcpt = 0; rcpt < 2; rcpt++) {
			struct sess s;
			const char *utf8 = addr_cases[i].utf8 ? " SMTPUTF8" : "";
			bool ok = rcpt ? addr_cases[i].rcpt_ok : addr_cases[i].mail_ok;
			const struct smtp_event *ev;
			sess_start(&s, NULL);
			sess_send(&s, "EHLO c\r\n");
			if (rcpt) {
				snprintf(line, sizeof(line), "MAIL FROM:<a@example.org>%s\r\n", utf8);
				sess_send(&s, line);
				snprintf(line, sizeof(line), "RCPT TO:%s\r\n", addr_cases[i].addr);
			} else {
				snprintf(line, sizeof(line), "MAIL FROM:%s%s\r\n", addr_cases[i].addr,
					 utf8);
			}
			size_t mark = s.out_len;
			/* Stop at the event to look at it. */
			enum smtp_rc rc;
			size_t n = smtp_engine_feed(s.e, (const uint8_t *)line, strlen(line), &rc);
			assert_int_equal(n, strlen(line));
			sess_drain(&s);
			ev = smtp_engine_event(s.e);
			if (ok != (ev != NULL))
				fail_msg("%s %s: got %s (%s), want %s", rcpt ? "RCPT" : "MAIL",
					 addr_cases[i].addr, ev ? "accepted" : "refused",
					 sess_since(&s, mark), ok ? "accepted" : "refused");
			if (!ok) {
				const char *want = !strchr(addr_cases[i].addr, '<') ||
							   !strchr(addr_cases[i].addr, '>') ||
							   strstr(addr_cases[i].addr, "> ")
						       ? (strstr(addr_cases[i].addr, "> ")
								  ? "555 5.5.4"
								  : "501 5.5.4")
						   : rcpt ? "501 5.1.3"
							  : "501 5.1.7";
				expect_prefix(addr_cases[i].addr, sess_since(&s, mark), want);
			} else {
				if (addr_cases[i].mailbox)
					expect_eq("mailbox", ev->addr, addr_cases[i].mailbox);
				expect_eq("domain", ev->domain, addr_cases[i].domain);
				assert_int_equal(ev->type, rcpt ? SMTP_EV_RCPT : SMTP_EV_MAIL);
				smtp_engine_resume(s.e, 250, "2.1.0 Ok", false);
			}
			sess_free(&s);
		}
	}
}

/* ---- DATA body: dot-unstuffing, bare CR/LF, size ---- */

static const struct {
	const char *data; /* after 354, up to and including the final dot */
	bool lenient;
	const char *want; /* reply after the data */
	const char *body; /* body given with the event, or NULL for none */
} data_cases[] = {
	{".\r\n", false, "250 2.0.0", ""},
	{"a\r\n.\r\n", false, "250 2.0.0", "a\r\n"},
	{"..\r\n.\r\n", false, "250 2.0.0", ".\r\n"},
	{"..a\r\n.b\r\n. \r\n.\r\n", false, "250 2.0.0", ".a\r\nb\r\n \r\n"},
	{"a.\r\n\r\n.\r\n", false, "250 2.0.0", "a.\r\n\r\n"},
	{"a\nb\r\n.\r\n", false, "550 5.6.0", NULL},
	{"a\rb\r\n.\r\n", false, "550 5.6.0", NULL},
	{"a\r\n.\n.\r\n.\r\n", false, "550 5.6.0", NULL}, /* ".\n" is not an end */
	{"a\n.\n\r\n.\r\n", false, "550 5.6.0", NULL},
	{"a\r\n.\r.\r\n.\r\n", false, "550 5.6.0", NULL},
	{"a\r\r\n.\r\n", false, "550 5.6.0", NULL},
	{"a\nb\r\n.\r\n", true, "250 2.0.0", "a\r\nb\r\n"},
	{"a\rb\r\n.\r\n", true, "250 2.0.0", "a\r\nb\r\n"},
	{"a\n.\r\n.\r\n", true, "250 2.0.0", "a\r\n.\r\n"},
	{"a\r.\r\n.\r\n", true, "250 2.0.0", "a\r\n.\r\n"},
	{"a\r\r\n.\r\n", true, "250 2.0.0", "a\r\n\r\n"},
	{"\n\n.\r\n.\r\n", true, "250 2.0.0", "\r\n\r\n.\r\n"},
	{"\x01\x02\xff\r\n.\r\n", false, "250 2.0.0", "\x01\x02\xff\r\n"},
};

static void test_data_table(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		struct sess s;
		struct smtp_engine_cfg cfg = {.hostname = "mx.test",
					      .max_message_size = 1000,
					      .max_recipients = 5,
					      .max_errors = 50,
					      .lenient_bare_lf = data_cases[i].lenient};
		sess_start(&s, &cfg);
		sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
		size_t mark = s.out_len;
		sess_send(&s, data_cases[i].data);
		expect_prefix(data_cases[i].data, sess_since(&s, mark), data_cases[i].want);
		if (data_cases[i].body) {
			assert_int_equal(s.events, 3);
			if (s.body_len != strlen(data_cases[i].body) ||
			    memcmp(s.body, data_cases[i].body, s.body_len) != 0)
				fail_msg("case %zu body: got %.*s want %s", i, (int)s.body_len, s.body,
					 data_cases[i].body);
		} else {
			assert_int_equal(s.events, 2);
		}
		/* The session goes on: a new transaction works. */
		assert_false(smtp_engine_in_transaction(s.e));
		mark = s.out_len;
		sess_send(&s, "MAIL FROM:<a@example.org>\r\n");
		expect_prefix("next MAIL", sess_since(&s, mark), "250 ");
		sess_free(&s);
	}
}

static void test_data_size_limit(void **unused)
{
	(void)unused;
	struct smtp_engine_cfg cfg = {.hostname = "mx.test", .max_message_size = 10};
	struct sess s;
	sess_start(&s, &cfg);
	sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	size_t mark = s.out_len;
	/* 12 octets: over; the buffer is dropped at once, the "." still ends it. */
	sess_send(&s, "0123456789");
	assert_true(smtp_engine_memory(s.e) < 8192);
	sess_send(&s, "\r\n.\r\n");
	expect_eq("too big", sess_since(&s, mark), "552 5.3.4 Message size exceeds fixed limit\r\n");
	assert_int_equal(s.events, 2);
	/* Exactly 10 octets with the CRLF: accepted. */
	sess_send(&s, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n01234567\r\n.\r\n");
	assert_int_equal(s.events, 5);
	assert_int_equal(s.body_len, 10);
	sess_free(&s);
}

/* ---- BDAT ---- */

static const struct {
	const char *input; /* after RCPT */
	size_t len;	   /* 0: strlen */
	bool lenient;
	uint64_t max;
	const char *want;
	const char *body;
} bdat_cases[] = {
	{"BDAT 0 LAST\r\n", 0, false, 100, "250 2.0.0 Ok: queued as T\r\n", ""},
	{"BDAT 3 LAST\r\nab\n", 0, false, 100,
	 "550 5.6.0 Message refused: bare CR or LF in data (see RFC 5321 2.3.8)\r\n", NULL},
	{"BDAT 3 LAST\r\nab\n", 0, true, 100, "250 2.0.0 Ok: queued as T\r\n", "ab\r\n"},
	{"BDAT 2\r\nabBDAT 3 LAST\r\n\r\n.", 0, false, 100,
	 "250 2.0.0 2 octets received\r\n250 2.0.0 Ok: queued as T\r\n", "ab\r\n."},
	{"BDAT 1\r\n\rBDAT 1 LAST\r\n\n", 0, false, 100,
	 "250 2.0.0 1 octets received\r\n250 2.0.0 Ok: queued as T\r\n", "\r\n"},
	{"BDAT 1\r\n\rBDAT 0 LAST\r\n", 0, false, 100,
	 "250 2.0.0 1 octets received\r\n550 5.6.0 Message refused: bare CR or LF in data (see "
	 "RFC 5321 2.3.8)\r\n",
	 NULL},
	{"BDAT 1\r\n\rBDAT 0 LAST\r\n", 0, true, 100,
	 "250 2.0.0 1 octets received\r\n250 2.0.0 Ok: queued as T\r\n", "\r\n"},
	{"BDAT 5 LAST\r\n\0\0\0\0\0", 18, false, 100, "250 2.0.0 Ok: queued as T\r\n", NULL},
	{"BDAT 11 LAST\r\n12345678901", 0, false, 10,
	 "552 5.3.4 Message size exceeds fixed limit\r\n", NULL},
	{"BDAT 10 LAST\r\n1234567890", 0, false, 10, "250 2.0.0 Ok: queued as T\r\n", "1234567890"},
	{"BDAT 6\r\n123456BDAT 5 LAST\r\n12345", 0, false, 10,
	 "250 2.0.0 6 octets received\r\n552 5.3.4 Message size exceeds fixed limit\r\n", NULL},
	/* normalisation can push a body over the limit; chunk counts stay raw */
	{"BDAT 10 LAST\r\n123456789\n", 0, true, 10,
	 "552 5.3.4 Message size exceeds fixed limit\r\n", NULL},
	{"BDAT 1 LAST\r\nxNOOP\r\n", 0, false, 10, "250 2.0.0 Ok: queued as T\r\n250 2.0.0 Ok\r\n",
	 "x"},
	{"BDAT  1\r\n", 0, false, 10, "501 5.5.4 Syntax: BDAT size [LAST]\r\n", NULL},
	{"BDAT 1 LAST LAST\r\n", 0, false, 10, "501 5.5.4 Syntax: BDAT size [LAST]\r\n", NULL},
	{"BDAT +1\r\n", 0, false, 10, "501 5.5.4 Syntax: BDAT size [LAST]\r\n", NULL},
};

static void test_bdat_table(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < sizeof(bdat_cases) / sizeof(bdat_cases[0]); i++) {
		struct smtp_engine_cfg cfg = {.hostname = "mx.test",
					      .max_message_size = bdat_cases[i].max,
					      .max_errors = 50,
					      .lenient_bare_lf = bdat_cases[i].lenient};
		struct sess s;
		sess_start(&s, &cfg);
		sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
		size_t mark = s.out_len;
		size_t len = bdat_cases[i].len ? bdat_cases[i].len : strlen(bdat_cases[i].input);
		sess_feed(&s, bdat_cases[i].input, len);
		expect_eq(bdat_cases[i].input, sess_since(&s, mark), bdat_cases[i].want);
		if (bdat_cases[i].body) {
			if (s.body_len != strlen(bdat_cases[i].body) ||
			    memcmp(s.body, bdat_cases[i].body, s.body_len) != 0)
				fail_msg("case %zu body: got %.*s want %s", i, (int)s.body_len, s.body,
					 bdat_cases[i].body);
		}
		sess_free(&s);
	}
}

/* A BDAT chunk split in many feeds: timeout kind is DATA_BLOCK inside. */
static void test_bdat_split_and_timeout_kind(void **unused)
{
	(void)unused;
	struct sess s;
	sess_start(&s, NULL);
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_COMMAND);
	sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 6 LAST\r\n");
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_DATA_BLOCK);
	assert_true(smtp_engine_in_transaction(s.e));
	sess_send(&s, "ab");
	sess_send(&s, "cd\r");
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_DATA_BLOCK);
	enum smtp_rc rc;
	size_t n = smtp_engine_feed(s.e, (const uint8_t *)"\nNOOP\r\n", 7, &rc);
	assert_int_equal(n, 1);
	assert_int_equal(rc, SMTP_RC_EVENT);
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_NONE);
	assert_true(smtp_engine_in_transaction(s.e));
	/* While paused nothing is consumed. */
	assert_int_equal(smtp_engine_feed(s.e, (const uint8_t *)"NOOP\r\n", 6, &rc), 0);
	assert_int_equal(rc, SMTP_RC_EVENT);
	const struct smtp_event *ev = smtp_engine_event(s.e);
	assert_int_equal(ev->type, SMTP_EV_MESSAGE);
	assert_int_equal(ev->body_len, 6);
	assert_memory_equal(ev->body, "abcd\r\n", 6);
	assert_int_equal(smtp_engine_resume(s.e, 250, "2.0.0 Ok", false), SMTP_RC_OK);
	assert_false(smtp_engine_in_transaction(s.e));
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_COMMAND);
	sess_send(&s, "DATA\r\n");
	size_t mark = s.out_len;
	sess_send(&s, "MAIL FROM:<x@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_DATA_BLOCK);
	assert_int_equal(smtp_engine_timeout(s.e), SMTP_RC_CLOSE);
	sess_drain(&s);
	assert_non_null(strstr(sess_since(&s, mark), "421 4.4.2 mx.test Error: timeout exceeded\r\n"));
	assert_int_equal(smtp_engine_timeout_kind(s.e), SMTP_TIMEOUT_NONE);
	assert_int_equal(smtp_engine_feed(s.e, (const uint8_t *)"NOOP\r\n", 6, &rc), 0);
	assert_int_equal(rc, SMTP_RC_CLOSE);
	sess_free(&s);
}

/* ---- limits ---- */

static void test_line_too_long(void **unused)
{
	(void)unused;
	char line[2048];
	static const struct {
		size_t len; /* octets before CRLF */
		const char *want;
	} cases[] = {
		{510, "250 2.0.0 Ok\r\n"},
		{511, "500 5.5.2 Line too long\r\n"},
		{512, "500 5.5.2 Line too long\r\n"},
		{2000, "500 5.5.2 Line too long\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sess s;
		sess_start(&s, NULL);
		memset(line, 'x', sizeof(line));
		memcpy(line, "NOOP ", 5);
		memcpy(line + cases[i].len, "\r\n", 2);
		size_t mark = s.out_len;
		sess_feed(&s, line, cases[i].len + 2);
		expect_eq("long line", sess_since(&s, mark), cases[i].want);
		assert_true(smtp_engine_memory(s.e) < 8192);
		sess_free(&s);
	}
}

static void test_too_many_errors(void **unused)
{
	(void)unused;
	for (unsigned max = 1; max <= 4; max++) {
		struct smtp_engine_cfg cfg = {.hostname = "mx.test", .max_errors = max};
		struct sess s;
		sess_start(&s, &cfg);
		for (unsigned i = 0; i < max + 2 && !s.closed; i++)
			sess_send(&s, "BOGUS\r\n");
		assert_true(s.closed);
		char want[256] = "220 mx.test ESMTP sluice\r\n";
		for (unsigned i = 0; i < max; i++)
			strcat(want, "500 5.5.1 Error: command not recognized\r\n");
		strcat(want, "421 4.7.0 mx.test Too many errors\r\n");
		expect_eq("errors", s.out, want);
		sess_free(&s);
	}
	/* Policy refusals counted by the caller; 0 = no limit. */
	struct smtp_engine_cfg cfg = {.hostname = "mx.test", .max_errors = 2};
	struct sess s;
	sess_start(&s, &cfg);
	s.decide_code = 550;
	sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\n");
	assert_false(s.closed);
	sess_send(&s, "MAIL FROM:<a@example.org>\r\n");
	assert_true(s.closed);
	assert_non_null(strstr(s.out, "550 5.7.1 No\r\n421 4.7.0 mx.test Too many errors\r\n"));
	sess_free(&s);
	struct smtp_engine_cfg unlimited = {.hostname = "mx.test"};
	sess_start(&s, &unlimited);
	for (int i = 0; i < 1000; i++)
		sess_send(&s, "BOGUS\r\n");
	assert_false(s.closed);
	sess_free(&s);
}

static void test_too_many_recipients(void **unused)
{
	(void)unused;
	struct smtp_engine_cfg cfg = {.hostname = "mx.test", .max_recipients = 3, .max_errors = 2};
	struct sess s;
	sess_start(&s, &cfg);
	sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\n");
	for (int i = 0; i < 3; i++)
		sess_send(&s, "RCPT TO:<b@example.net>\r\n");
	assert_int_equal(s.events, 4);
	size_t mark = s.out_len;
	for (int i = 0; i < 5; i++)
		sess_send(&s, "RCPT TO:<b@example.net>\r\n");
	assert_int_equal(s.events, 4); /* no pause */
	assert_false(s.closed);	       /* not counted as client errors */
	expect_prefix("452", sess_since(&s, mark), "452 4.5.3 Error: too many recipients\r\n452");
	sess_send(&s, "DATA\r\n.\r\n");
	assert_int_equal(s.nrcpts, 3);
	sess_free(&s);
}

static void test_timeouts_shutdown_refuse(void **unused)
{
	(void)unused;
	struct sess s;
	sess_init(&s, NULL);
	assert_int_equal(smtp_engine_shutdown(s.e), SMTP_RC_CLOSE);
	sess_drain(&s);
	expect_eq("shutdown", s.out,
		  "220 mx.test ESMTP sluice\r\n421 4.3.2 mx.test Service shutting down\r\n");
	/* Idempotent: nothing more once closed. */
	assert_int_equal(smtp_engine_timeout(s.e), SMTP_RC_CLOSE);
	sess_drain(&s);
	expect_eq("after close", s.out,
		  "220 mx.test ESMTP sluice\r\n421 4.3.2 mx.test Service shutting down\r\n");
	sess_free(&s);

	struct smtp_engine_cfg cfg = {.hostname = "mx.test"};
	struct smtp_engine *e = smtp_engine_new(&cfg, "192.0.2.9");
	assert_int_equal(smtp_engine_refuse(e, 421, "4.7.0 Too many connections"), SMTP_RC_CLOSE);
	size_t n;
	const uint8_t *o = smtp_engine_output(e, &n);
	assert_int_equal(n, strlen("421 4.7.0 Too many connections\r\n"));
	assert_memory_equal(o, "421 4.7.0 Too many connections\r\n", n);
	/* Partial consumption keeps the rest. */
	smtp_engine_output_consumed(e, 4);
	o = smtp_engine_output(e, &n);
	assert_memory_equal(o, "4.7.0", 5);
	smtp_engine_output_consumed(e, 1000);
	assert_null(smtp_engine_output(e, &n));
	assert_int_equal(n, 0);
	smtp_engine_free(e);
	smtp_engine_free(NULL);
}

static void test_resume_texts(void **unused)
{
	(void)unused;
	struct sess s;
	sess_start(&s, NULL);
	enum smtp_rc rc;
	const char *in = "EHLO c\r\nMAIL FROM:<a@example.org>\r\n";
	size_t n = smtp_engine_feed(s.e, (const uint8_t *)in, strlen(in), &rc);
	assert_int_equal(rc, SMTP_RC_EVENT);
	assert_int_equal(n, strlen(in));
	assert_false(smtp_engine_in_transaction(s.e));
	/* A text with CR/LF cannot break the framing. */
	assert_int_equal(smtp_engine_resume(s.e, 250, "2.1.0 Ok\r\nEVIL", false), SMTP_RC_OK);
	assert_true(smtp_engine_in_transaction(s.e));
	/* Resume when not paused does nothing. */
	assert_int_equal(smtp_engine_resume(s.e, 250, "x", false), SMTP_RC_OK);
	sess_drain(&s);
	assert_non_null(strstr(s.out, "250 2.1.0 Ok  EVIL\r\n"));
	assert_null(strstr(s.out, "\r\nx"));
	sess_free(&s);
}

/* ---- memory ---- */

static void test_memory(void **unused)
{
	(void)unused;
	struct sess s;
	sess_start(&s, NULL);
	size_t fresh = smtp_engine_memory(s.e);
	sess_drain(&s);
	size_t idle = smtp_engine_memory(s.e);
	print_message("engine memory: new %zu, idle %zu bytes\n", fresh, idle);
	assert_true(idle < 8192);
	assert_true(idle < 2048); /* struct + inline line buffer */
	sess_send(&s, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	sess_send(&s, "some body text\r\n");
	size_t during = smtp_engine_memory(s.e);
	assert_true(during > idle + 1000); /* the body buffer exists now */
	sess_send(&s, ".\r\n");
	size_t after = smtp_engine_memory(s.e);
	print_message("engine memory: in DATA %zu, after the message %zu bytes\n", during, after);
	assert_true(after < 8192);
	assert_true(after <= idle + 64); /* body and envelope freed, only the helo name */
	sess_free(&s);
}

/* Pipelined input stops right after the line that raised an event. */
static void test_pipelining_stops_at_event(void **unused)
{
	(void)unused;
	struct sess s;
	sess_start(&s, NULL);
	const char *in = "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nNOOP\r\n";
	enum smtp_rc rc;
	size_t n = smtp_engine_feed(s.e, (const uint8_t *)in, strlen(in), &rc);
	assert_int_equal(rc, SMTP_RC_EVENT);
	assert_int_equal(n, strlen("EHLO c\r\nMAIL FROM:<a@example.org>\r\n"));
	const struct smtp_event *ev = smtp_engine_event(s.e);
	assert_int_equal(ev->type, SMTP_EV_MAIL);
	expect_eq("addr", ev->addr, "a@example.org");
	expect_eq("domain", ev->domain, "example.org");
	smtp_engine_resume(s.e, 250, "2.1.0 Ok", false);
	in += n;
	n = smtp_engine_feed(s.e, (const uint8_t *)in, strlen(in), &rc);
	assert_int_equal(rc, SMTP_RC_EVENT);
	assert_int_equal(n, strlen("RCPT TO:<b@example.net>\r\n"));
	ev = smtp_engine_event(s.e);
	assert_int_equal(ev->type, SMTP_EV_RCPT);
	assert_null(ev->orcpt);
	smtp_engine_resume(s.e, 550, "5.1.1 No such user", true);
	in += n;
	n = smtp_engine_feed(s.e, (const uint8_t *)in, strlen(in), &rc);
	assert_int_equal(rc, SMTP_RC_OK);
	assert_null(smtp_engine_event(s.e));
	sess_drain(&s);
	assert_non_null(strstr(s.out, "250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n250 2.0.0 Ok\r\n"));
	sess_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_and_ehlo),
		cmocka_unit_test(test_command_state_table),
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_address_table),
		cmocka_unit_test(test_data_table),
		cmocka_unit_test(test_data_size_limit),
		cmocka_unit_test(test_bdat_table),
		cmocka_unit_test(test_bdat_split_and_timeout_kind),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_too_many_recipients),
		cmocka_unit_test(test_timeouts_shutdown_refuse),
		cmocka_unit_test(test_resume_texts),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_pipelining_stops_at_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
