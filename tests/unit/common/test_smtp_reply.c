/* Unit tests for smtp_reply: reply lines, multi-line replies, EHLO keywords. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/smtp_reply.h"

/* One line on a fresh parser. */
static const struct {
	const char *line;
	int rc;		  /* 1 last line, 0 continuation, -EBADMSG */
	unsigned code;	  /* when rc >= 0 */
	const char *text; /* when rc >= 0 */
} single_cases[] = {
    {"250 2.0.0 Ok\r\n", 1, 250, "2.0.0 Ok"},
    {"220-sink greets you\r\n", 0, 220, "sink greets you"},
    {"354 \r\n", 1, 354, ""},
    {"250\r\n", 1, 250, ""},	    /* RFC 5321 4.2: the text is optional */
    {"599 odd\r\n", 1, 599, "odd"}, /* any digits after the first are taken */
    {"421 4.3.2 going down\r\n", 1, 421, "4.3.2 going down"},
    {"250 Ok\n", -EBADMSG, 0, NULL},	 /* bare LF */
    {"250 Ok\r", -EBADMSG, 0, NULL},	 /* no LF */
    {"250 O\rk\r\n", -EBADMSG, 0, NULL}, /* CR inside the text */
    {"25 Ok\r\n", -EBADMSG, 0, NULL},
    {"2500 Ok\r\n", -EBADMSG, 0, NULL}, /* no separator after three digits */
    {"150 Ok\r\n", -EBADMSG, 0, NULL},	/* first digit 2..5 */
    {"650 Ok\r\n", -EBADMSG, 0, NULL},
    {"2a0 Ok\r\n", -EBADMSG, 0, NULL},
    {"250\r\r\n", -EBADMSG, 0, NULL},
    {"\r\n", -EBADMSG, 0, NULL},
    {"", -EBADMSG, 0, NULL},
};

static void test_single_lines(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(single_cases) / sizeof(single_cases[0]); i++) {
		struct smtp_reply_parser p;
		struct smtp_reply_line rl;
		const char *line = single_cases[i].line;
		int rc;

		smtp_reply_parser_init(&p);
		rc = smtp_reply_parse_line(&p, line, strlen(line), &rl);
		if (rc != single_cases[i].rc)
			fail_msg("line %zu %.*s: got rc %d, want %d", i, (int)strcspn(line, "\r\n"),
				 line, rc, single_cases[i].rc);
		if (rc < 0)
			continue;
		if (rl.code != single_cases[i].code || !rl.first ||
		    rl.text_len != strlen(single_cases[i].text) ||
		    memcmp(rl.text, single_cases[i].text, rl.text_len) != 0)
			fail_msg("line %zu: got code %u first %d text '%.*s', want %u 1 '%s'", i,
				 rl.code, rl.first, (int)rl.text_len, rl.text, single_cases[i].code,
				 single_cases[i].text);
	}
}

/* A multi-line reply: one code throughout, first and last marked. */
static void test_multi_line(void **state)
{
	static const char *const lines[] = {"250-sink.test\r\n", "250-PIPELINING\r\n",
					    "250-SIZE 1000\r\n", "250 CHUNKING\r\n"};
	struct smtp_reply_parser p;
	struct smtp_reply_line rl;

	(void)state;
	smtp_reply_parser_init(&p);
	for (size_t i = 0; i < 4; i++) {
		int rc = smtp_reply_parse_line(&p, lines[i], strlen(lines[i]), &rl);

		assert_int_equal(rc, i == 3 ? 1 : 0);
		assert_int_equal(rl.code, 250);
		assert_int_equal(rl.first, i == 0);
		assert_int_equal(rl.last, i == 3);
	}
	/* The next reply starts afresh. */
	assert_int_equal(smtp_reply_parse_line(&p, "221 Bye\r\n", 9, &rl), 1);
	assert_true(rl.first);
	assert_int_equal(rl.code, 221);
}

/* RFC 5321 4.2.1: a reply whose lines change code is malformed; the
 * parser resets after it. */
static void test_code_change(void **state)
{
	struct smtp_reply_parser p;
	struct smtp_reply_line rl;

	(void)state;
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_parse_line(&p, "250-a\r\n", 7, &rl), 0);
	assert_int_equal(smtp_reply_parse_line(&p, "251 b\r\n", 7, &rl), -EBADMSG);
	assert_int_equal(smtp_reply_parse_line(&p, "251 b\r\n", 7, &rl), 1);
	assert_true(rl.first);
}

static const struct {
	const char *text;
	unsigned flags;
	uint64_t size_max;
} ehlo_cases[] = {
    {"PIPELINING", SMTP_EXT_PIPELINING, 0},
    {"pipelining", SMTP_EXT_PIPELINING, 0}, /* keywords are case-blind */
    {"PIPELININGX", 0, 0},
    {"CHUNKING", SMTP_EXT_CHUNKING, 0},
    {"SIZE", SMTP_EXT_SIZE, 0},
    {"SIZE 10240000", SMTP_EXT_SIZE, 10240000},
    {"SIZE 0", SMTP_EXT_SIZE, 0},
    {"SIZE 12x", SMTP_EXT_SIZE, 0},			/* not a number: no fixed limit */
    {"SIZE 99999999999999999999999", SMTP_EXT_SIZE, 0}, /* overflow: no fixed limit */
    {"8BITMIME", SMTP_EXT_8BITMIME, 0},
    {"SMTPUTF8", SMTP_EXT_SMTPUTF8, 0},
    {"DSN", SMTP_EXT_DSN, 0},
    {"STARTTLS", SMTP_EXT_STARTTLS, 0},
    {"ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES, 0},
    {"AUTH PLAIN LOGIN", 0, 0},
    {"", 0, 0},
};

static void test_ehlo_keywords(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ehlo_cases) / sizeof(ehlo_cases[0]); i++) {
		struct smtp_ehlo_exts e = {0};

		smtp_ehlo_ext_line(&e, ehlo_cases[i].text, strlen(ehlo_cases[i].text));
		if (e.flags != ehlo_cases[i].flags || e.size_max != ehlo_cases[i].size_max)
			fail_msg("'%s': got flags %#x size %llu, want %#x %llu", ehlo_cases[i].text,
				 e.flags, (unsigned long long)e.size_max, ehlo_cases[i].flags,
				 (unsigned long long)ehlo_cases[i].size_max);
	}
}

/* Lines of an EHLO reply accumulate. */
static void test_ehlo_accumulates(void **state)
{
	struct smtp_ehlo_exts e = {0};

	(void)state;
	smtp_ehlo_ext_line(&e, "PIPELINING", 10);
	smtp_ehlo_ext_line(&e, "SIZE 5000", 9);
	smtp_ehlo_ext_line(&e, "CHUNKING", 8);
	assert_int_equal(e.flags, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_CHUNKING);
	assert_int_equal(e.size_max, 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_lines),     cmocka_unit_test(test_multi_line),
	    cmocka_unit_test(test_code_change),	     cmocka_unit_test(test_ehlo_keywords),
	    cmocka_unit_test(test_ehlo_accumulates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
