/* Unit tests for dsn: NOTIFY rules and the structure of composed notices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/dsn.h"

#define NOW 1700000000
#define QID "00C0FFEE12345678"

static const char sample_body[] = "From: Alice <alice@example.org>\r\n"
				  "To: Bob <bob@example.net>\r\n"
				  "Subject: Lunch\r\n"
				  "\r\n"
				  "BODY-MARKER see you at noon\r\n";

/* ------------------------------------------------------------ helpers */

/* A message under test, owned by the test. */
struct composed {
	struct envelope notice;
	uint8_t *msg;
	size_t len;
	char *text; /* msg NUL-terminated, for strstr */
	char boundary[128];
};

static void env_init(struct envelope *env, const char *sender, unsigned nrcpts, uint8_t notify)
{
	memset(env, 0, sizeof(*env));
	env->sender = strdup(sender);
	env->protocol = "ESMTP";
	env->arrival = NOW - 3600;
	assert_non_null(env->sender);
	for (unsigned i = 0; i < nrcpts; i++) {
		char addr[64];
		snprintf(addr, sizeof(addr), "rcpt%u@example.net", i);
		assert_int_equal(envelope_add_rcpt(env, addr, NULL, notify), 0);
	}
}

static struct dsn_rcpt rcpt_of(uint32_t i, enum dsn_action a, const char *status)
{
	return (struct dsn_rcpt){.rcpt = i,
				 .action = a,
				 .status = status,
				 .diagnostic = "smtp; 550 5.1.1 user unknown",
				 .remote_mta = "mx1.example.net",
				 .last_attempt = NOW - 60,
				 .will_retry_until = NOW + 86400};
}

static struct dsn_report report_of(const struct envelope *env, const struct dsn_rcpt *r,
				   unsigned n)
{
	return (struct dsn_report){.reporting_mta = "relay.example.com",
				   .qid = QID,
				   .env = env,
				   .body = (const uint8_t *)sample_body,
				   .body_len = strlen(sample_body),
				   .rcpts = r,
				   .nrcpts = n,
				   .now = NOW,
				   .unique = 7};
}

/* Every line ends in CRLF, no bare CR or LF, none over 998 octets. */
static void check_lines(const uint8_t *m, size_t n)
{
	size_t start = 0;

	assert_true(n >= 2);
	for (size_t i = 0; i < n; i++) {
		if (m[i] == '\r') {
			if (i + 1 >= n || m[i + 1] != '\n')
				fail_msg("bare CR at offset %zu", i);
			if (i - start > 998)
				fail_msg("line at offset %zu is %zu octets, want <= 998", start, i - start);
			i++;
			start = i + 1;
		} else if (m[i] == '\n') {
			fail_msg("bare LF at offset %zu", i);
		}
	}
	if (start != n)
		fail_msg("message does not end in CRLF");
}

static void compose_ok(const struct dsn_report *rep, struct composed *c)
{
	memset(c, 0, sizeof(*c));
	int rc = dsn_compose(rep, &c->notice, &c->msg, &c->len);
	if (rc != 0)
		fail_msg("dsn_compose: got %d, want 0", rc);
	assert_non_null(c->msg);
	check_lines(c->msg, c->len);
	c->text = malloc(c->len + 1);
	assert_non_null(c->text);
	memcpy(c->text, c->msg, c->len);
	c->text[c->len] = '\0';
	assert_int_equal(strlen(c->text), c->len);
	const char *b = strstr(c->text, "boundary=\"");
	assert_non_null(b);
	b += strlen("boundary=\"");
	size_t bl = strcspn(b, "\"");
	assert_true(bl > 0 && bl <= 70); /* RFC 2046 5.1.1 */
	memcpy(c->boundary, b, bl);
	c->boundary[bl] = '\0';
}

static void composed_free(struct composed *c)
{
	free(c->msg);
	free(c->text);
	envelope_free(&c->notice);
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Body part i (0-based) as a new string: its header fields, blank line, content. */
static char *part(const struct composed *c, unsigned i)
{
	char delim[140];
	snprintf(delim, sizeof(delim), "\r\n--%s", c->boundary);
	const char *p = c->text;
	for (unsigned k = 0; k <= i; k++) {
		p = strstr(p, delim);
		if (!p)
			fail_msg("part %u: delimiter %u missing", i, k);
		p += strlen(delim);
		if (strncmp(p, "--", 2) == 0)
			fail_msg("part %u: close delimiter reached", i);
		assert_memory_equal(p, "\r\n", 2);
		p += 2;
	}
	const char *end = strstr(p, delim);
	assert_non_null(end);
	char *s = strndup(p, (size_t)(end - p));
	assert_non_null(s);
	return s;
}

/* The line "field" appears whole (between CRLFs) in s. */
static bool has_line(const char *s, const char *field)
{
	char buf[1200];
	snprintf(buf, sizeof(buf), "\n%s\r\n", field);
	return strstr(s, buf) != NULL || (strncmp(s, field, strlen(field)) == 0 &&
					   strncmp(s + strlen(field), "\r\n", 2) == 0);
}

static void want_line(const char *s, const char *field)
{
	if (!has_line(s, field))
		fail_msg("want line '%s' in:\n%s", field, s);
}

static void want_no(const char *s, const char *needle)
{
	assert_non_null(s);
	if (strstr(s, needle))
		fail_msg("did not want '%s' in:\n%s", needle, s);
}

/* ------------------------------------------------------------ dsn_wanted */

static void test_action_str(void **state)
{
	(void)state;
	assert_string_equal(dsn_action_str(DSN_ACTION_FAILED), "failed");
	assert_string_equal(dsn_action_str(DSN_ACTION_DELAYED), "delayed");
	assert_string_equal(dsn_action_str(DSN_ACTION_DELIVERED), "delivered");
	assert_string_equal(dsn_action_str(DSN_ACTION_RELAYED), "relayed");
	assert_string_equal(dsn_action_str((enum dsn_action)99), "unknown");
}

#define N ENVELOPE_NOTIFY_NEVER
#define S ENVELOPE_NOTIFY_SUCCESS
#define F ENVELOPE_NOTIFY_FAILURE
#define D ENVELOPE_NOTIFY_DELAY

/* RFC 3461 4.1: every NOTIFY combination against every action. */
static const struct {
	uint8_t notify;
	bool failed, delayed, delivered, relayed;
} wanted_cases[] = {
    {0, true, true, false, false}, /* absent: FAILURE,DELAY */
    {N, false, false, false, false},
    {S, false, false, true, true},
    {F, true, false, false, false},
    {D, false, true, false, false},
    {S | F, true, false, true, true},
    {S | D, false, true, true, true},
    {F | D, true, true, false, false},
    {S | F | D, true, true, true, true},
    {N | S, false, false, false, false}, /* NEVER wins (not valid SMTP anyway) */
    {N | F | D, false, false, false, false},
};

static void test_wanted_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(wanted_cases) / sizeof(wanted_cases[0]); i++) {
		struct envelope env;
		bool want[4] = {wanted_cases[i].failed, wanted_cases[i].delayed,
				wanted_cases[i].delivered, wanted_cases[i].relayed};

		env_init(&env, "alice@example.org", 1, wanted_cases[i].notify);
		for (int a = 0; a < 4; a++) {
			bool got = dsn_wanted(&env, 0, (enum dsn_action)a);
			if (got != want[a])
				fail_msg("notify 0x%02x action %s: got %d, want %d",
					 wanted_cases[i].notify, dsn_action_str((enum dsn_action)a),
					 got, want[a]);
		}
		envelope_free(&env);
	}
}

static void test_wanted_null_sender_and_range(void **state)
{
	struct envelope env;

	(void)state;
	env_init(&env, "", 2, S | F | D);
	for (int a = 0; a < 4; a++)
		assert_false(dsn_wanted(&env, 0, (enum dsn_action)a));
	envelope_free(&env);

	env_init(&env, "alice@example.org", 2, 0);
	assert_true(dsn_wanted(&env, 1, DSN_ACTION_FAILED));
	assert_false(dsn_wanted(&env, 2, DSN_ACTION_FAILED));
	assert_false(dsn_wanted(NULL, 0, DSN_ACTION_FAILED));
	envelope_free(&env);
}

/* ------------------------------------------------------------ compose */

static void test_failed_structure(void **state)
{
	struct envelope env;
	struct dsn_rcpt r[2];
	struct composed c;

	(void)state;
	env_init(&env, "alice@example.org", 3, 0);
	r[0] = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	r[1] = rcpt_of(2, DSN_ACTION_FAILED, "5.2.2");
	r[1].diagnostic = NULL;
	r[1].remote_mta = NULL;
	struct dsn_report rep = report_of(&env, r, 2);
	compose_ok(&rep, &c);

	/* Top-level header section. */
	want_line(c.text, "From: Mail Delivery System <MAILER-DAEMON@relay.example.com>");
	want_line(c.text, "To: <alice@example.org>");
	want_line(c.text, "Subject: Undelivered Mail Returned to Sender");
	want_line(c.text, "Date: Tue, 14 Nov 2023 22:13:20 +0000");
	want_line(c.text, "Message-ID: <1700000000.7." QID "@relay.example.com>");
	want_line(c.text, "Auto-Submitted: auto-replied");
	want_line(c.text, "MIME-Version: 1.0");
	assert_non_null(strstr(c.text, "Content-Type: multipart/report; "
				       "report-type=delivery-status;"));

	/* Three delimiters and one close delimiter, at line starts. */
	char delim[140], close[140];
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", c.boundary);
	snprintf(close, sizeof(close), "\r\n--%s--\r\n", c.boundary);
	assert_int_equal(count(c.text, delim), 3);
	assert_int_equal(count(c.text, close), 1);
	assert_string_equal(c.text + c.len - strlen(close), close);

	char *p1 = part(&c, 0), *p2 = part(&c, 1), *p3 = part(&c, 2);
	assert_true(has_line(p1, "Content-Type: text/plain; charset=us-ascii"));
	want_line(p2, "Content-Type: message/delivery-status");
	want_line(p3, "Content-Type: message/rfc822");
	want_line(p3, "Content-Transfer-Encoding: 7bit");

	/* Human part names each recipient and what happened. */
	assert_non_null(strstr(p1, "<rcpt0@example.net>: delivery failed (status 5.1.1)"));
	assert_non_null(strstr(p1, "<rcpt2@example.net>: delivery failed (status 5.2.2)"));
	assert_non_null(strstr(p1, "smtp; 550 5.1.1 user unknown"));
	want_no(p1, "rcpt1@");

	/* Per-message fields, then one block per recipient. */
	want_line(p2, "Reporting-MTA: dns; relay.example.com");
	want_line(p2, "X-Sluice-Queue-ID: " QID);
	want_line(p2, "Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000");
	want_no(p2, "Original-Envelope-Id");
	want_no(p2, "Original-Recipient");
	assert_non_null(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; rcpt0@example.net\r\n"
				   "Action: failed\r\n"
				   "Status: 5.1.1\r\n"
				   "Remote-MTA: dns; mx1.example.net\r\n"
				   "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
				   "Last-Attempt-Date: Tue, 14 Nov 2023 22:12:20 +0000\r\n"));
	assert_non_null(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; rcpt2@example.net\r\n"
				   "Action: failed\r\n"
				   "Status: 5.2.2\r\n"
				   "Last-Attempt-Date: Tue, 14 Nov 2023 22:12:20 +0000\r\n"));
	want_no(p2, "Will-Retry-Until"); /* delayed only */
	assert_int_equal(count(p2, "Final-Recipient:"), 2);

	/* The whole original comes back unchanged, after the part's blank line. */
	const char *orig = strstr(p3, "\r\n\r\n");
	assert_non_null(orig);
	assert_string_equal(orig + 4, sample_body);

	/* The notice's own envelope. */
	assert_string_equal(c.notice.sender, "");
	assert_int_equal(c.notice.nrcpts, 1);
	assert_string_equal(c.notice.rcpts[0].addr, "alice@example.org");
	assert_null(c.notice.rcpts[0].orcpt);
	assert_int_equal(c.notice.rcpts[0].notify, ENVELOPE_NOTIFY_NEVER);
	assert_string_equal(c.notice.protocol, "ESMTP");
	assert_int_equal(c.notice.body, ENVELOPE_BODY_7BIT);
	assert_false(c.notice.smtputf8);
	assert_null(c.notice.envid);

	free(p1);
	free(p2);
	free(p3);
	composed_free(&c);
	envelope_free(&env);
}

static void test_orcpt_envid_when_given(void **state)
{
	struct envelope env;
	struct dsn_rcpt r[2];
	struct composed c;

	(void)state;
	env_init(&env, "alice@example.org", 0, 0);
	assert_int_equal(envelope_add_rcpt(&env, "a@example.net", "rfc822;a+2Bx@example.net", 0), 0);
	assert_int_equal(envelope_add_rcpt(&env, "b@example.net", NULL, 0), 0);
	env.envid = strdup("ENV+2B42");
	r[0] = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	r[1] = rcpt_of(1, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, r, 2);
	compose_ok(&rep, &c);
	char *p2 = part(&c, 1);
	/* The envelope holds xtext; the report holds the decoded text. */
	want_line(p2, "Original-Envelope-Id: ENV+42");
	assert_non_null(strstr(p2, "\r\n\r\nOriginal-Recipient: rfc822;a+x@example.net\r\n"
				   "Final-Recipient: rfc822; a@example.net\r\n"));
	assert_non_null(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; b@example.net\r\n"));
	assert_int_equal(count(p2, "Original-Recipient:"), 1);
	/* RFC 3464 2.2: per-message fields in order, the extension last. */
	assert_non_null(strstr(p2, "\r\n\r\nOriginal-Envelope-Id: ENV+42\r\n"
				   "Reporting-MTA: dns; relay.example.com\r\n"
				   "Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000\r\n"
				   "X-Sluice-Queue-ID: " QID "\r\n\r\n"));
	free(p2);
	composed_free(&c);
	envelope_free(&env);
}

/* xtext that decodes to control or 8-bit octets, or is not xtext, stays encoded. */
static const struct {
	const char *envid, *orcpt;       /* as the envelope holds them */
	const char *want_envid, *want_or; /* the report's field values */
} xtext_cases[] = {
    {"A+0D+0AB", "rfc822;x+0D+0AX-Evil:+201@example.net", "A+0D+0AB",
     "rfc822;x+0D+0AX-Evil:+201@example.net"},
    {"caf+C3+A9", "rfc822;caf+C3+A9@example.net", "caf+C3+A9", "rfc822;caf+C3+A9@example.net"},
    {"bad+2", "rfc822;bad+zz@example.net", "bad+2", "rfc822;bad+zz@example.net"},
    {"lower+2b", "RFC822;Mixed+2BCase@Example.NET", "lower+2b", "RFC822;Mixed+Case@Example.NET"},
    {"sp+20ace", "unknown;a+20b", "sp ace", "unknown;a b"},
};

static void test_xtext_fallback(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(xtext_cases) / sizeof(xtext_cases[0]); i++) {
		struct envelope env;
		struct dsn_rcpt r;
		struct composed c;
		char want[256];

		env_init(&env, "alice@example.org", 0, 0);
		assert_int_equal(envelope_add_rcpt(&env, "a@example.net", xtext_cases[i].orcpt, 0), 0);
		env.envid = strdup(xtext_cases[i].envid);
		r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
		struct dsn_report rep = report_of(&env, &r, 1);
		compose_ok(&rep, &c);
		char *p2 = part(&c, 1);
		snprintf(want, sizeof(want), "Original-Envelope-Id: %s", xtext_cases[i].want_envid);
		want_line(p2, want);
		snprintf(want, sizeof(want), "Original-Recipient: %s", xtext_cases[i].want_or);
		want_line(p2, want);
		want_no(c.text, "\nX-Evil");
		for (size_t k = 0; k < c.len; k++)
			assert_true(c.msg[k] < 0x80);
		free(p2);
		composed_free(&c);
		envelope_free(&env);
	}
}

/* Part 3 for each RET and kind (RFC 3461 4.3 and the module's defaults). */
static const struct {
	uint8_t ret;
	enum dsn_action action;
	bool full;
} ret_cases[] = {
    {ENVELOPE_RET_UNSET, DSN_ACTION_FAILED, true},
    {ENVELOPE_RET_UNSET, DSN_ACTION_DELAYED, false},
    {ENVELOPE_RET_UNSET, DSN_ACTION_DELIVERED, false},
    {ENVELOPE_RET_UNSET, DSN_ACTION_RELAYED, false},
    {ENVELOPE_RET_FULL, DSN_ACTION_FAILED, true},
    {ENVELOPE_RET_FULL, DSN_ACTION_DELAYED, false}, /* no failure: headers only */
    {ENVELOPE_RET_FULL, DSN_ACTION_DELIVERED, false},
    {ENVELOPE_RET_HDRS, DSN_ACTION_FAILED, false},
    {ENVELOPE_RET_HDRS, DSN_ACTION_DELAYED, false},
    {ENVELOPE_RET_HDRS, DSN_ACTION_DELIVERED, false},
};

static void test_ret_variants(void **state)
{
	static const char *const subjects[] = {
	    "Subject: Undelivered Mail Returned to Sender",
	    "Subject: Delayed Mail (still being retried)",
	    "Subject: Successful Mail Delivery Report",
	    "Subject: Successful Mail Delivery Report",
	};
	static const char *const statuses[] = {"5.1.1", "4.4.1", "2.0.0", "2.0.0"};

	(void)state;
	for (size_t i = 0; i < sizeof(ret_cases) / sizeof(ret_cases[0]); i++) {
		struct envelope env;
		struct dsn_rcpt r;
		struct composed c;
		enum dsn_action a = ret_cases[i].action;

		env_init(&env, "alice@example.org", 1, 0);
		env.ret = ret_cases[i].ret;
		r = rcpt_of(0, a, statuses[a]);
		struct dsn_report rep = report_of(&env, &r, 1);
		compose_ok(&rep, &c);
		want_line(c.text, subjects[a]);
		char *p2 = part(&c, 1), *p3 = part(&c, 2);
		char action[64];
		snprintf(action, sizeof(action), "Action: %s", dsn_action_str(a));
		want_line(p2, action);
		if (a == DSN_ACTION_DELAYED)
			want_line(p2, "Will-Retry-Until: Wed, 15 Nov 2023 22:13:20 +0000");
		else
			want_no(p2, "Will-Retry-Until");
		if (ret_cases[i].full) {
			want_line(p3, "Content-Type: message/rfc822");
			assert_non_null(strstr(p3, "BODY-MARKER"));
			assert_non_null(strstr(c.text, "The original message is attached."));
		} else {
			want_line(p3, "Content-Type: text/rfc822-headers");
			want_no(p3, "BODY-MARKER");
			/* Exactly the header section of the original. */
			const char *h = strstr(p3, "\r\n\r\n");
			assert_non_null(h);
			assert_string_equal(h + 4, "From: Alice <alice@example.org>\r\n"
						   "To: Bob <bob@example.net>\r\n"
						   "Subject: Lunch\r\n");
		}
		free(p2);
		free(p3);
		composed_free(&c);
		envelope_free(&env);
	}
}

static void test_size_cap(void **state)
{
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;

	(void)state;
	env_init(&env, "alice@example.org", 1, 0);
	env.ret = ENVELOPE_RET_FULL;
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, &r, 1);

	rep.max_return = strlen(sample_body); /* exactly at the cap: whole */
	compose_ok(&rep, &c);
	char *p3 = part(&c, 2);
	want_line(p3, "Content-Type: message/rfc822");
	assert_non_null(strstr(p3, "BODY-MARKER"));
	free(p3);
	composed_free(&c);

	rep.max_return = strlen(sample_body) - 1; /* one over: headers only, said so */
	compose_ok(&rep, &c);
	p3 = part(&c, 2);
	want_line(p3, "Content-Type: text/rfc822-headers");
	want_no(p3, "BODY-MARKER");
	assert_non_null(strstr(p3, "Subject: Lunch\r\n"));
	char *p1 = part(&c, 0);
	char note[128];
	snprintf(note, sizeof(note), "The original message was %zu octets", strlen(sample_body));
	assert_non_null(strstr(p1, note));
	free(p1);
	free(p3);
	composed_free(&c);

	rep.max_return = 40; /* even the headers are too big: cut at a line */
	compose_ok(&rep, &c);
	p3 = part(&c, 2);
	const char *h = strstr(p3, "\r\n\r\n");
	assert_non_null(h);
	assert_string_equal(h + 4, "From: Alice <alice@example.org>\r\n");
	assert_non_null(strstr(c.text, "cut short at 40 octets"));
	free(p3);
	composed_free(&c);
	envelope_free(&env);
}

/* An original holding the boundary the first try would pick. */
static void test_boundary_not_in_content(void **state)
{
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;
	char first[128], body[512];

	(void)state;
	env_init(&env, "alice@example.org", 1, 0);
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, &r, 1);
	compose_ok(&rep, &c);
	snprintf(first, sizeof(first), "%s", c.boundary);
	composed_free(&c);

	snprintf(body, sizeof(body), "Subject: trap\r\n\r\n--%s\r\nContent-Type: text/html\r\n\r\n",
		 first);
	rep.body = (const uint8_t *)body;
	rep.body_len = strlen(body);
	compose_ok(&rep, &c);
	assert_string_not_equal(c.boundary, first);
	/* Content-Type parameter, three delimiters, one close: nowhere else. */
	assert_int_equal(count(c.text, c.boundary), 5);
	assert_non_null(strstr(c.text, first)); /* the trap came back intact */
	composed_free(&c);
	envelope_free(&env);
}

static void test_invalid(void **state)
{
	struct envelope env, notice;
	struct dsn_rcpt r[2];
	uint8_t *msg = (uint8_t *)"x";
	size_t len = 5;

	(void)state;
	env_init(&env, "", 2, 0);
	r[0] = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	r[1] = rcpt_of(1, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, r, 1);
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL); /* null sender */
	assert_null(msg);
	assert_int_equal(len, 0);
	assert_null(notice.sender);
	assert_int_equal(notice.nrcpts, 0);
	envelope_free(&env);

	env_init(&env, "alice@example.org", 2, 0);
	rep = report_of(&env, r, 0);
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL); /* no recipients */

	rep = report_of(&env, r, 2);
	r[1].action = DSN_ACTION_DELAYED;
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL); /* mixed kinds */
	r[0].action = DSN_ACTION_DELIVERED;
	r[1].action = DSN_ACTION_RELAYED;
	r[0].status = r[1].status = "2.0.0";
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), 0); /* successes share one */
	free(msg);
	envelope_free(&notice);

	static const char *const bad_status[] = {"", "5", "5.1", "5.1.", "3.1.1", "5.1.1.1",
						 "5.1111.1", "5.a.1", "5.1.1 ", NULL};
	for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
		r[0] = rcpt_of(0, DSN_ACTION_FAILED, bad_status[i]);
		rep = report_of(&env, r, 1);
		if (dsn_compose(&rep, &notice, &msg, &len) != -EINVAL)
			fail_msg("status '%s': want -EINVAL", bad_status[i] ? bad_status[i] : "NULL");
	}
	r[0] = rcpt_of(2, DSN_ACTION_FAILED, "5.1.1"); /* index out of range */
	rep = report_of(&env, r, 1);
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL);

	r[0] = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	rep = report_of(&env, r, 1);
	rep.reporting_mta = "bad host\r\nX: y";
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL);
	rep.reporting_mta = NULL;
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL);
	rep = report_of(&env, r, 1);
	rep.qid = "q id";
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), -EINVAL);
	rep.qid = NULL; /* no queue id is fine */
	assert_int_equal(dsn_compose(&rep, &notice, &msg, &len), 0);
	assert_null(memmem(msg, len, "X-Sluice-Queue-ID", 17));
	free(msg);
	envelope_free(&notice);
	envelope_free(&env);
}

/* Remote text cannot add fields, lines or 8-bit octets to an ASCII notice. */
static void test_diagnostic_sanitized(void **state)
{
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;
	char longdiag[3000];
	size_t n = 0;

	(void)state;
	env_init(&env, "alice@example.org", 1, 0);
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	r.diagnostic = "smtp; 550 no\r\nX-Evil: 1\r\n\r\n--x\nbare\rcr \xff\xc3\xa9 end";
	r.remote_mta = "mx\r\nX-Evil2: 1";
	struct dsn_report rep = report_of(&env, &r, 1);
	compose_ok(&rep, &c);
	want_no(c.text, "\nX-Evil");
	char *p2 = part(&c, 1);
	want_line(p2, "Diagnostic-Code: smtp; 550 no X-Evil: 1 --x bare cr ??? end");
	want_line(p2, "Remote-MTA: dns; mx X-Evil2: 1");
	assert_int_equal(c.notice.body, ENVELOPE_BODY_7BIT);
	for (size_t i = 0; i < c.len; i++)
		assert_true(c.msg[i] < 0x80);
	free(p2);
	composed_free(&c);

	/* A diagnostic without a type gets one (RFC 3464 2.3.6). */
	r.diagnostic = "mailbox full";
	r.remote_mta = NULL;
	compose_ok(&rep, &c);
	want_line(c.text, "Diagnostic-Code: X-Sluice; mailbox full");
	composed_free(&c);

	/* Long ones are folded under 998 (check_lines) and cut at the limit. */
	n = (size_t)snprintf(longdiag, sizeof(longdiag), "smtp; 550");
	while (n < sizeof(longdiag) - 20)
		n += (size_t)snprintf(longdiag + n, sizeof(longdiag) - n, " w%zu", n);
	r.diagnostic = longdiag;
	compose_ok(&rep, &c);
	p2 = part(&c, 1);
	assert_non_null(strstr(p2, "Diagnostic-Code: smtp; 550 w9 w12"));
	assert_non_null(strstr(p2, "\r\n w")); /* folded before a space */
	free(p2);
	composed_free(&c);

	/* One word longer than a line: cut, not left over 998. */
	memset(longdiag, 'A', sizeof(longdiag) - 1);
	longdiag[sizeof(longdiag) - 1] = '\0';
	memcpy(longdiag, "smtp;", 5);
	compose_ok(&rep, &c);
	composed_free(&c);
	envelope_free(&env);
}

/* Well-formed UTF-8 octets, in order, with CRLF SP folds removed. */
static void check_utf8_unfolded(const char *s, const char *want_word, size_t want_n)
{
	size_t got = 0;
	const char *p = strstr(s, want_word);

	assert_non_null(p);
	while (*p) {
		if (strncmp(p, "\r\n ", 3) == 0) {
			p += 3;
			continue;
		}
		if (strncmp(p, want_word, strlen(want_word)) != 0)
			break;
		p += strlen(want_word);
		got++;
	}
	if (got != want_n)
		fail_msg("got %zu copies of the 2-octet sequence in a row, want %zu", got, want_n);
}

/* A word of UTF-8 longer than a line is cut between sequences, never inside one. */
static void test_long_utf8_word(void **state)
{
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;
	char diag[2100];
	size_t n;

	(void)state;
	env_init(&env, "j\xc3\xb6rg@example.org", 1, 0);
	env.smtputf8 = true;
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	/*
	 * "smtp; " then 1000 x U+00E9 as one word: it starts in column 23, so
	 * octet 998 of the line is the second of a sequence.
	 */
	n = (size_t)snprintf(diag, sizeof(diag), "smtp; ");
	for (int i = 0; i < 1000; i++, n += 2)
		memcpy(diag + n, "\xc3\xa9", 2);
	diag[n] = '\0';
	r.diagnostic = diag;
	struct dsn_report rep = report_of(&env, &r, 1);
	compose_ok(&rep, &c); /* line lengths checked inside */
	char *p2 = part(&c, 1);
	/* Every continuation line starts with a lead octet after its space. */
	for (const char *p = strstr(p2, "\r\n "); p; p = strstr(p + 1, "\r\n "))
		if (((unsigned char)p[3] & 0xc0) == 0x80)
			fail_msg("fold inside a UTF-8 sequence at offset %zu", (size_t)(p - p2));
	check_utf8_unfolded(p2, "\xc3\xa9", 1000);
	free(p2);
	composed_free(&c);
	envelope_free(&env);
}

/* An 8-bit original returned whole: BODY=8BITMIME and CTE 8bit. */
static void test_8bit_original(void **state)
{
	static const char body8[] = "Subject: caf\xc3\xa9\r\n\r\nBODY-MARKER na\xc3\xafve\r\n";
	static const char body8b[] = "Subject: plain\r\n\r\nBODY-MARKER na\xc3\xafve\r\n";
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;

	(void)state;
	env_init(&env, "alice@example.org", 1, 0);
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, &r, 1);
	rep.body = (const uint8_t *)body8b;
	rep.body_len = strlen(body8b);
	compose_ok(&rep, &c);
	assert_int_equal(c.notice.body, ENVELOPE_BODY_8BITMIME);
	char *p3 = part(&c, 2);
	want_line(p3, "Content-Transfer-Encoding: 8bit");
	assert_non_null(strstr(p3, "na\xc3\xafve"));
	want_line(c.text, "Content-Transfer-Encoding: 8bit");
	char *p1 = part(&c, 0);
	want_line(p1, "Content-Transfer-Encoding: 7bit");
	free(p1);
	free(p3);
	composed_free(&c);

	/* Headers only, 8-bit only in the body: the notice is 7bit. */
	env.ret = ENVELOPE_RET_HDRS;
	compose_ok(&rep, &c);
	assert_int_equal(c.notice.body, ENVELOPE_BODY_7BIT);
	composed_free(&c);

	/* 8-bit headers returned: the part says 8bit. */
	rep.body = (const uint8_t *)body8;
	rep.body_len = strlen(body8);
	compose_ok(&rep, &c);
	assert_int_equal(c.notice.body, ENVELOPE_BODY_8BITMIME);
	p3 = part(&c, 2);
	want_line(p3, "Content-Type: text/rfc822-headers");
	want_line(p3, "Content-Transfer-Encoding: 8bit");
	free(p3);
	composed_free(&c);
	envelope_free(&env);
}

/* RFC 6533: a UTF-8 address makes the report global. */
static void test_utf8(void **state)
{
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;

	(void)state;
	env_init(&env, "j\xc3\xb6rg@example.org", 0, 0);
	assert_int_equal(envelope_add_rcpt(&env, "b\xc3\xb8@example.net", NULL, 0), 0);
	env.smtputf8 = true;
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	r.diagnostic = "smtp; 550 <b\xc3\xb8@example.net> unknown \xff";
	struct dsn_report rep = report_of(&env, &r, 1);
	compose_ok(&rep, &c);
	assert_true(c.notice.smtputf8);
	assert_int_equal(c.notice.body, ENVELOPE_BODY_8BITMIME);
	assert_string_equal(c.notice.rcpts[0].addr, "j\xc3\xb6rg@example.org");
	assert_non_null(strstr(c.text, "report-type=global-delivery-status"));
	want_line(c.text, "To: <j\xc3\xb6rg@example.org>");
	char *p1 = part(&c, 0), *p2 = part(&c, 1), *p3 = part(&c, 2);
	want_line(p1, "Content-Type: text/plain; charset=utf-8");
	want_line(p2, "Content-Type: message/global-delivery-status");
	want_line(p2, "Final-Recipient: utf-8; b\xc3\xb8@example.net");
	/* Well-formed UTF-8 stays, a stray octet does not. */
	want_line(p2, "Diagnostic-Code: smtp; 550 <b\xc3\xb8@example.net> unknown ?");
	want_line(p3, "Content-Type: message/global");
	free(p1);
	free(p2);
	free(p3);
	composed_free(&c);

	env.ret = ENVELOPE_RET_HDRS;
	compose_ok(&rep, &c);
	p3 = part(&c, 2);
	want_line(p3, "Content-Type: message/global-headers");
	free(p3);
	composed_free(&c);
	envelope_free(&env);
}

/* Bare LF or CR in a spooled original never reach the notice. */
static void test_bare_line_ends_normalized(void **state)
{
	static const char odd[] = "Subject: odd\n\nline1\rline2\nlast";
	struct envelope env;
	struct dsn_rcpt r;
	struct composed c;

	(void)state;
	env_init(&env, "alice@example.org", 1, 0);
	r = rcpt_of(0, DSN_ACTION_FAILED, "5.1.1");
	struct dsn_report rep = report_of(&env, &r, 1);
	rep.body = (const uint8_t *)odd;
	rep.body_len = strlen(odd);
	compose_ok(&rep, &c); /* check_lines inside */
	char *p3 = part(&c, 2);
	assert_non_null(strstr(p3, "\r\n\r\nSubject: odd\r\n\r\nline1\r\nline2\r\nlast\r\n"));
	free(p3);
	composed_free(&c);
	envelope_free(&env);
}

/* Many recipients and a long sender keep every line legal. */
static void test_many_rcpts_long_fields(void **state)
{
	struct envelope env;
	struct dsn_rcpt r[40];
	struct composed c;
	char sender[400];

	(void)state;
	memset(sender, 'x', sizeof(sender) - 20);
	snprintf(sender + sizeof(sender) - 20, 20, "@example.org");
	env_init(&env, sender, 40, D);
	for (unsigned i = 0; i < 40; i++)
		r[i] = rcpt_of(i, DSN_ACTION_DELAYED, "4.4.1");
	struct dsn_report rep = report_of(&env, r, 40);
	compose_ok(&rep, &c);
	char *p2 = part(&c, 1);
	assert_int_equal(count(p2, "Action: delayed\r\n"), 40);
	assert_int_equal(count(p2, "Will-Retry-Until: "), 40);
	free(p2);
	composed_free(&c);
	envelope_free(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_action_str),
	    cmocka_unit_test(test_wanted_table),
	    cmocka_unit_test(test_wanted_null_sender_and_range),
	    cmocka_unit_test(test_failed_structure),
	    cmocka_unit_test(test_orcpt_envid_when_given),
	    cmocka_unit_test(test_xtext_fallback),
	    cmocka_unit_test(test_ret_variants),
	    cmocka_unit_test(test_size_cap),
	    cmocka_unit_test(test_boundary_not_in_content),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_diagnostic_sanitized),
	    cmocka_unit_test(test_long_utf8_word),
	    cmocka_unit_test(test_8bit_original),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_bare_line_ends_normalized),
	    cmocka_unit_test(test_many_rcpts_long_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
