/* Unit tests for the per-address connection counter (dataplane/connlimit.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dataplane/dataplane_pvt.h"

union addr {
	struct sockaddr sa;
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
};

static union addr mk(const char *text, uint16_t port)
{
	union addr a;

	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, text, &a.in4.sin_addr) == 1) {
		a.in4.sin_family = AF_INET;
		a.in4.sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &a.in6.sin6_addr), 1);
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
	}
	return a;
}

/* One step: acquire (limit) or release an address; then the want values. */
struct step {
	char op; /* 'a' acquire, 'r' release */
	const char *addr;
	uint16_t port;
	unsigned limit;
	int want_rc;	     /* acquire only */
	unsigned want_count; /* count for addr after the step */
	size_t want_size;    /* distinct addresses after the step */
};

static const struct step steps[] = {
    {'a', "192.0.2.1", 1000, 2, 0, 1, 1},
    {'a', "192.0.2.1", 1001, 2, 0, 2, 1}, /* other port, same client */
    {'a', "192.0.2.1", 1002, 2, -EUSERS, 2, 1},
    {'a', "::ffff:192.0.2.1", 1, 2, -EUSERS, 2, 1}, /* mapped = same IPv4 client */
    {'a', "192.0.2.2", 1000, 2, 0, 1, 2},
    {'a', "2001:db8::1", 25, 1, 0, 1, 3},
    {'a', "2001:db8::1", 26, 1, -EUSERS, 1, 3},
    {'a', "2001:db8::2", 25, 1, 0, 1, 4},
    {'a', "2001:db8::1", 27, 0, 0, 2, 4}, /* limit 0: count without limit */
    {'r', "192.0.2.1", 0, 0, 0, 1, 4},
    {'a', "::ffff:192.0.2.1", 9, 2, 0, 2, 4},
    {'r', "::ffff:192.0.2.1", 0, 0, 0, 1, 4},
    {'r', "192.0.2.1", 0, 0, 0, 0, 3}, /* last one: entry freed */
    {'r', "192.0.2.2", 0, 0, 0, 0, 2},
    {'r', "2001:db8::1", 0, 0, 0, 1, 2},
    {'r', "2001:db8::1", 0, 0, 0, 0, 1},
    {'r', "2001:db8::2", 0, 0, 0, 0, 0},
    {'a', "0.0.0.0", 0, 1, 0, 1, 1}, /* the zero address is an address too */
    {'a', "::", 0, 1, 0, 1, 2},	     /* and not the same as 0.0.0.0 */
    {'r', "0.0.0.0", 0, 0, 0, 0, 1},
    {'r', "::", 0, 0, 0, 0, 0},
};

static void test_steps(void **state)
{
	struct connlimit *cl;

	(void)state;
	for (unsigned log2 = 0; log2 <= 6; log2 += 3) {
		cl = connlimit_new(log2);
		assert_non_null(cl);
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
			const struct step *s = &steps[i];
			union addr a = mk(s->addr, s->port);
			unsigned got_count;
			size_t got_size;

			if (s->op == 'a') {
				int rc = connlimit_acquire(cl, &a.sa, s->limit);

				if (rc != s->want_rc)
					fail_msg(
					    "stripes=2^%u step %zu acquire %s limit %u: got rc %d "
					    "want %d",
					    log2, i, s->addr, s->limit, rc, s->want_rc);
			} else {
				connlimit_release(cl, &a.sa);
			}
			got_count = connlimit_count(cl, &a.sa);
			got_size = connlimit_size(cl);
			if (got_count != s->want_count || got_size != s->want_size)
				fail_msg("stripes=2^%u step %zu %c %s: got count %u size %zu, want "
					 "count %u size %zu",
					 log2, i, s->op, s->addr, got_count, got_size,
					 s->want_count, s->want_size);
		}
		connlimit_free(cl);
	}
}

static void test_unsupported_family(void **state)
{
	struct connlimit *cl = connlimit_new(2);
	struct sockaddr sa = {.sa_family = AF_UNIX};

	(void)state;
	assert_non_null(cl);
	assert_int_equal(connlimit_acquire(cl, &sa, 5), -EAFNOSUPPORT);
	assert_int_equal(connlimit_count(cl, &sa), 0);
	connlimit_free(cl);
}

/* Many distinct addresses: the stripes' tables grow and stay exact. */
static void test_many_addresses(void **state)
{
	struct connlimit *cl = connlimit_new(2);
	const unsigned n = 20000;

	(void)state;
	assert_non_null(cl);
	for (unsigned i = 0; i < n; i++) {
		union addr a = mk("10.0.0.0", 0);

		a.in4.sin_addr.s_addr = htonl(0x0a000000u + i);
		assert_int_equal(connlimit_acquire(cl, &a.sa, 1), 0);
	}
	for (unsigned i = 0; i < n; i += 2) {
		union addr a = mk("10.0.0.0", 0);

		a.in4.sin_addr.s_addr = htonl(0x0a000000u + i);
		if (connlimit_acquire(cl, &a.sa, 1) != -EUSERS)
			fail_msg("address %u: second acquire with limit 1 was allowed", i);
	}
	if (connlimit_size(cl) != n)
		fail_msg("size: got %zu want %u", connlimit_size(cl), n);
	for (unsigned i = 0; i < n; i++) {
		union addr a = mk("10.0.0.0", 0);

		a.in4.sin_addr.s_addr = htonl(0x0a000000u + i);
		connlimit_release(cl, &a.sa);
	}
	if (connlimit_size(cl) != 0)
		fail_msg("size after releasing all: got %zu want 0", connlimit_size(cl));
	connlimit_free(cl);
}

/* ---- concurrency ---- */

#define NTHREADS 8
#define ROUNDS 20000

struct thr {
	struct connlimit *cl;
	pthread_barrier_t *go;
	unsigned limit;
	unsigned ok; /* successful acquires kept */
	int mode;    /* 0: acquire/release pairs, 1: acquire only */
	unsigned id;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	union addr shared = mk("198.51.100.7", 0);
	union addr six = mk("2001:db8::7", 0);

	pthread_barrier_wait(t->go);
	for (unsigned i = 0; i < ROUNDS; i++) {
		union addr *a = (i + t->id) & 1 ? &shared : &six;

		if (t->mode == 0) {
			if (connlimit_acquire(t->cl, &a->sa, 0) != 0)
				return (void *)1;
			connlimit_release(t->cl, &a->sa);
		} else if (connlimit_acquire(t->cl, &shared.sa, t->limit) == 0) {
			t->ok++;
		}
	}
	return NULL;
}

static void run_threads(struct connlimit *cl, int mode, unsigned limit, unsigned *total_ok)
{
	pthread_t th[NTHREADS];
	struct thr t[NTHREADS];
	pthread_barrier_t go;

	pthread_barrier_init(&go, NULL, NTHREADS);
	*total_ok = 0;
	for (unsigned i = 0; i < NTHREADS; i++) {
		t[i] = (struct thr){.cl = cl, .go = &go, .limit = limit, .mode = mode, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		void *ret;

		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
		*total_ok += t[i].ok;
	}
	pthread_barrier_destroy(&go);
}

static void test_concurrent_pairs(void **state)
{
	struct connlimit *cl = connlimit_new(4);
	union addr shared = mk("198.51.100.7", 0), six = mk("2001:db8::7", 0);
	unsigned ok;

	(void)state;
	assert_non_null(cl);
	/* One connection held throughout, so the entry is never freed and the
	 * final count must be exactly 1. */
	assert_int_equal(connlimit_acquire(cl, &shared.sa, 0), 0);
	run_threads(cl, 0, 0, &ok);
	if (connlimit_count(cl, &shared.sa) != 1 || connlimit_count(cl, &six.sa) != 0)
		fail_msg("after concurrent pairs: got counts %u/%u want 1/0",
			 connlimit_count(cl, &shared.sa), connlimit_count(cl, &six.sa));
	connlimit_release(cl, &shared.sa);
	assert_int_equal(connlimit_size(cl), 0);
	connlimit_free(cl);
}

static void test_concurrent_limit_exact(void **state)
{
	struct connlimit *cl = connlimit_new(4);
	union addr shared = mk("198.51.100.7", 0);
	const unsigned limit = 1234;
	unsigned ok;

	(void)state;
	assert_non_null(cl);
	run_threads(cl, 1, limit, &ok);
	if (ok != limit || connlimit_count(cl, &shared.sa) != limit)
		fail_msg("racing acquires with limit %u: got %u granted, count %u", limit, ok,
			 connlimit_count(cl, &shared.sa));
	connlimit_free(cl); /* frees the remaining entry */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_steps),
	    cmocka_unit_test(test_unsupported_family),
	    cmocka_unit_test(test_many_addresses),
	    cmocka_unit_test(test_concurrent_pairs),
	    cmocka_unit_test(test_concurrent_limit_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
