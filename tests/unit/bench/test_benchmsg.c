/* Unit tests for benchmsg (message format, verification, seen-set) and the
 * sluice-bench argument helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/benchmsg.h"

static struct benchmsg_pool *pool;

static int pool_setup(void **state)
{
	(void)state;
	pool = benchmsg_pool_new();
	return pool ? 0 : -1;
}

static int pool_teardown(void **state)
{
	(void)state;
	benchmsg_pool_free(pool);
	return 0;
}

/* The whole message as one buffer (header block + body). */
static uint8_t *flatten(const struct benchmsg *m, size_t *len)
{
	uint8_t *buf = malloc(m->hdr_len + m->body_len);

	assert_non_null(buf);
	memcpy(buf, m->hdr, m->hdr_len);
	memcpy(buf + m->hdr_len, m->body, m->body_len);
	*len = m->hdr_len + m->body_len;
	return buf;
}

/* CRLF -> LF, as a Maildir copy stores it. */
static size_t to_lf(uint8_t *buf, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++)
		if (!(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n'))
			buf[o++] = buf[i];
	return o;
}

static void build(uint64_t seq, unsigned rcpts, size_t size, struct benchmsg *m)
{
	assert_int_equal(benchmsg_build(pool, 0xdeadbeef, seq, rcpts, size, "bench@sluice-bench.test",
					"example.test", m),
			 0);
}

static void test_build_then_verify(void **state)
{
	struct benchmsg m;
	struct benchmsg_info info;
	size_t len;

	(void)state;
	build(42, 3, 1024, &m);
	uint8_t *msg = flatten(&m, &len);

	assert_int_equal(benchmsg_verify(msg, len, &info), BENCHMSG_OK);
	assert_int_equal(info.run, 0xdeadbeef);
	assert_int_equal(info.seq, 42);
	assert_int_equal(info.rcpts, 3);
	assert_int_equal(info.body_len, m.body_len);
	assert_int_equal(info.crc, m.crc);
	free(msg);
}

static void test_sizes(void **state)
{
	static const size_t sizes[] = {1, 300, 1024, 10240, 102400, 10u << 20};
	struct benchmsg m;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		build(i, 1, sizes[i], &m);
		size_t total = m.hdr_len + m.body_len;

		assert_true(m.body_len >= 78 && m.body_len % 78 == 0);
		/* Within one line of the asked size once it is above the header's. */
		if (sizes[i] > 400) { /* half a line either way */
			if (total + 39 < sizes[i] || total > sizes[i] + 39)
				fail_msg("size %zu gave %zu", sizes[i], total);
		}
	}
	build(7, 1, 64u << 20, &m);
	assert_true(m.body_len <= BENCHMSG_BODY_MAX);
}

/* No body line starts with '.', so DATA needs no dot-stuffing. */
static void test_no_leading_dot(void **state)
{
	struct benchmsg m;

	(void)state;
	build(1, 1, 10u << 20, &m);
	for (size_t i = 0; i < m.body_len; i += 78) {
		assert_true(m.body[i] != '.');
		assert_memory_equal(m.body + i + 76, "\r\n", 2);
	}
}

static void test_messages_differ(void **state)
{
	struct benchmsg a, b;

	(void)state;
	build(1, 1, 1024, &a);
	build(2, 1, 1024, &b);
	assert_true(a.crc != b.crc);
}

/* An MTA's added headers and a Maildir's LF line ends do not matter. */
static void test_verify_relayed_copy(void **state)
{
	static const char added[] = "Return-Path: <bench@sluice-bench.test>\r\n"
				    "Delivered-To: r2@example.test\r\n"
				    "Received: from x by y with ESMTP id 1;\r\n\tThu, 1 Jan 2026\r\n";
	struct benchmsg m;
	struct benchmsg_info info;
	size_t len;

	(void)state;
	build(9, 3, 4096, &m);
	uint8_t *msg = flatten(&m, &len);
	uint8_t *copy = malloc(sizeof(added) + len);

	memcpy(copy, added, sizeof(added) - 1);
	memcpy(copy + sizeof(added) - 1, msg, len);
	size_t copy_len = sizeof(added) - 1 + len;

	assert_int_equal(benchmsg_verify(copy, copy_len, &info), BENCHMSG_OK);
	copy_len = to_lf(copy, copy_len);
	assert_int_equal(benchmsg_verify(copy, copy_len, &info), BENCHMSG_OK);
	assert_int_equal(info.seq, 9);
	free(copy);
	free(msg);
}

static void test_verify_damage(void **state)
{
	struct benchmsg m;
	struct benchmsg_info info;
	size_t len;

	(void)state;
	build(5, 1, 2048, &m);
	uint8_t *msg = flatten(&m, &len);

	msg[len - 10] ^= 0x01; /* one bit in the body */
	assert_int_equal(benchmsg_verify(msg, len, &info), BENCHMSG_BAD_CRC);
	msg[len - 10] ^= 0x01;
	assert_int_equal(benchmsg_verify(msg, len - 78, &info), BENCHMSG_BAD_LEN);
	assert_int_equal(benchmsg_verify(msg, m.hdr_len - 2, &info), BENCHMSG_BAD_HDR);

	char *field = strstr((char *)msg, "X-Sluice-Bench:");

	assert_non_null(field);
	field[2] = 'Y'; /* no longer our header */
	assert_int_equal(benchmsg_verify(msg, len, &info), BENCHMSG_FOREIGN);
	field[2] = 'S';
	char *crc = strstr(field, "crc=");

	crc[4] = 'x'; /* not hex */
	assert_int_equal(benchmsg_verify(msg, len, &info), BENCHMSG_BAD_HDR);
	free(msg);
	assert_string_equal(benchmsg_verdict_name(BENCHMSG_BAD_CRC), "bad-crc");
}

static void test_rcpt(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(benchmsg_rcpt(buf, sizeof(buf), 17, "example.test"), 16);
	assert_string_equal(buf, "r17@example.test");
	assert_int_equal(benchmsg_rcpt(buf, 5, 17, "example.test"), -1);
	assert_int_equal(benchmsg_rcpt_index("r17@example.test"), 17);
	assert_int_equal(benchmsg_rcpt_index("r0"), 0);
	assert_int_equal(benchmsg_rcpt_index("r01@x"), -1);
	assert_int_equal(benchmsg_rcpt_index("r@x"), -1);
	assert_int_equal(benchmsg_rcpt_index("user@x"), -1);
	assert_int_equal(benchmsg_rcpt_index("r12x@x"), -1);
	assert_int_equal(benchmsg_rcpt_index("r99999999999999@x"), -1);
}

static void test_seen(void **state)
{
	struct benchmsg_seen *s = benchmsg_seen_new();

	(void)state;
	assert_true(benchmsg_seen_add(s, 1, 0, 0));
	assert_false(benchmsg_seen_add(s, 1, 0, 0));
	assert_true(benchmsg_seen_add(s, 1, 0, 1)); /* another recipient */
	assert_true(benchmsg_seen_add(s, 2, 0, 0)); /* another run */
	assert_true(benchmsg_seen_add(s, 1, 1, 0)); /* another message */
	for (uint64_t i = 0; i < 200000; i++)
		assert_true(benchmsg_seen_add(s, 7, i, 3)); /* growth keeps keys */
	for (uint64_t i = 0; i < 200000; i += 997)
		assert_false(benchmsg_seen_add(s, 7, i, 3));
	assert_int_equal(benchmsg_seen_count(s), 4 + 200000);
	benchmsg_seen_free(s);
}

struct seen_race {
	struct benchmsg_seen *s;
	unsigned fresh;
};

static void *add_all(void *arg)
{
	struct seen_race *r = arg;

	for (uint64_t i = 0; i < 50000; i++)
		r->fresh += benchmsg_seen_add(r->s, 3, i, 0);
	return NULL;
}

/* Threads adding the same keys: each key is fresh exactly once. */
static void test_seen_threads(void **state)
{
	struct benchmsg_seen *s = benchmsg_seen_new();
	struct seen_race r[4];
	pthread_t t[4];
	unsigned total = 0;

	(void)state;
	for (int i = 0; i < 4; i++) {
		r[i] = (struct seen_race){.s = s};
		pthread_create(&t[i], NULL, add_all, &r[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		total += r[i].fresh;
	}
	assert_int_equal(total, 50000);
	assert_int_equal(benchmsg_seen_count(s), 50000);
	benchmsg_seen_free(s);
}

static void test_parse_size(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(bench_parse_size("1024", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(bench_parse_size("10k", &v), 0);
	assert_int_equal(v, 10240);
	assert_int_equal(bench_parse_size("64M", &v), 0);
	assert_int_equal(v, 64u << 20);
	assert_int_equal(bench_parse_size("", &v), -1);
	assert_int_equal(bench_parse_size("k", &v), -1);
	assert_int_equal(bench_parse_size("10kb", &v), -1);
	assert_int_equal(bench_parse_size("-1", &v), -1);
	assert_int_equal(bench_parse_size("99999999999999999999g", &v), -1);
}

static void test_parse_u64_and_run(void **state)
{
	uint64_t v;
	uint32_t run;

	(void)state;
	assert_int_equal(bench_parse_u64("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(bench_parse_u64("10", 0, 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(bench_parse_u64("11", 0, 10, &v), -1);
	assert_int_equal(bench_parse_u64("0", 1, 10, &v), -1);
	assert_int_equal(bench_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(bench_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -1);
	assert_int_equal(bench_parse_u64("-1", 0, 10, &v), -1);
	assert_int_equal(bench_parse_u64(" 1", 0, 10, &v), -1);
	assert_int_equal(bench_parse_u64("1x", 0, 10, &v), -1);
	assert_int_equal(bench_parse_u64("", 0, 10, &v), -1);

	assert_int_equal(bench_parse_run("0badCAFE", &run), 0);
	assert_int_equal(run, 0x0badcafe);
	assert_int_equal(bench_parse_run("00000000", &run), 0);
	assert_int_equal(run, 0);
	assert_int_equal(bench_parse_run("0x123456", &run), -1); /* no prefix */
	assert_int_equal(bench_parse_run("1234567", &run), -1);
	assert_int_equal(bench_parse_run("123456789", &run), -1);
	assert_int_equal(bench_parse_run("-1234567", &run), -1);
	assert_int_equal(bench_parse_run("1234567g", &run), -1);
}

static void test_parse_hostport(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;

	(void)state;
	assert_int_equal(bench_parse_hostport("127.0.0.1:2525", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2525);
	assert_int_equal(bench_parse_hostport("[::1]:25", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(bench_parse_hostport("127.0.0.1", &ss, &len), -1);
	assert_int_equal(bench_parse_hostport("127.0.0.1:", &ss, &len), -1);
	assert_int_equal(bench_parse_hostport("127.0.0.1:70000", &ss, &len), -1);
	assert_int_equal(bench_parse_hostport("localhost:25", &ss, &len), -1);
	assert_int_equal(bench_parse_hostport("[::1:25", &ss, &len), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_then_verify),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_no_leading_dot),
		cmocka_unit_test(test_messages_differ),
		cmocka_unit_test(test_verify_relayed_copy),
		cmocka_unit_test(test_verify_damage),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_seen),
		cmocka_unit_test(test_seen_threads),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_u64_and_run),
		cmocka_unit_test(test_parse_hostport),
	};

	return cmocka_run_group_tests(tests, pool_setup, pool_teardown);
}
