/*
 * Unit tests for dns_cache: (name, type) -> answer with an expiry, bounded.
 * Time is the explicit now_ms of every call, so expiry is tested without
 * sleeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/dns_pvt.h"

static struct dns_addr addr4(const char *text)
{
	struct dns_addr a = {.family = AF_INET};

	assert_int_equal(inet_pton(AF_INET, text, &a.u.v4), 1);
	return a;
}

static struct dns_mx mx(uint16_t pref, const char *host)
{
	struct dns_mx m = {.pref = pref};

	snprintf(m.host, sizeof(m.host), "%s", host);
	return m;
}

/* Put an A entry with one address; the test fails unless it is kept. */
static void put_a(struct dns_cache *c, const char *name, uint32_t ttl_s, uint64_t now_ms)
{
	struct dns_addr a = addr4("127.0.0.1");
	int rc = dns_cache_put(c, name, DNS_T_A, DNS_RR_DATA, &a, 1, ttl_s, now_ms);

	if (rc != 0)
		fail_msg("put %s ttl %u at %llu: got %d, want 0", name, ttl_s,
			 (unsigned long long)now_ms, rc);
}

static bool has_a(struct dns_cache *c, const char *name, uint64_t now_ms)
{
	return dns_cache_get(c, name, DNS_T_A, now_ms) != NULL;
}

/* An entry lives for exactly ttl seconds from its put: now < expiry. */
static void test_ttl_expiry(void **state)
{
	static const struct {
		uint32_t ttl_s;
		uint64_t put_at, get_at;
		bool want;
	} cases[] = {
	    {10, 1000, 1000, true},	{10, 1000, 10999, true},     {10, 1000, 11000, false},
	    {10, 1000, 50000, false},	{1, 0, 999, true},	     {1, 0, 1000, false},
	    {86400, 5, 86400004, true}, {86400, 5, 86400005, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dns_cache *c = dns_cache_new(16);
		assert_non_null(c);
		put_a(c, "host.test", cases[i].ttl_s, cases[i].put_at);
		bool got = has_a(c, "host.test", cases[i].get_at);
		if (got != cases[i].want)
			fail_msg("case %zu: ttl %u put at %llu, get at %llu: got %s, want %s", i,
				 cases[i].ttl_s, (unsigned long long)cases[i].put_at,
				 (unsigned long long)cases[i].get_at, got ? "hit" : "miss",
				 cases[i].want ? "hit" : "miss");
		/* An expired entry is dropped by the get that finds it. */
		assert_int_equal(dns_cache_count(c), cases[i].want ? 1 : 0);
		dns_cache_free(c);
	}
}

/* What comes out is what went in, copied; the key is (name, type). */
static void test_contents_and_keys(void **state)
{
	struct dns_cache *c = dns_cache_new(16);
	struct dns_mx mxs[3] = {mx(10, "mx1.test"), mx(20, "mx2.test"), mx(10, "mx3.test")};
	struct dns_addr addrs[2] = {addr4("127.0.0.21"), addr4("127.0.0.22")};
	const struct dns_cache_entry *e;

	(void)state;
	assert_non_null(c);
	assert_int_equal(dns_cache_put(c, "d.test", DNS_T_MX, DNS_RR_DATA, mxs, 3, 60, 0), 0);
	assert_int_equal(dns_cache_put(c, "d.test", DNS_T_A, DNS_RR_DATA, addrs, 2, 60, 0), 0);
	/* The caller's arrays may change or go away after the put. */
	memset(mxs, 0, sizeof(mxs));
	memset(addrs, 0, sizeof(addrs));
	assert_int_equal(dns_cache_count(c), 2);

	e = dns_cache_get(c, "d.test", DNS_T_MX, 1);
	assert_non_null(e);
	assert_int_equal(e->type, DNS_T_MX);
	assert_int_equal(e->kind, DNS_RR_DATA);
	assert_int_equal(e->n, 3);
	assert_int_equal(e->mx[0].pref, 10);
	assert_string_equal(e->mx[0].host, "mx1.test");
	assert_int_equal(e->mx[1].pref, 20);
	assert_string_equal(e->mx[1].host, "mx2.test");
	assert_string_equal(e->mx[2].host, "mx3.test");
	assert_string_equal(e->name, "d.test");

	e = dns_cache_get(c, "d.test", DNS_T_A, 1);
	assert_non_null(e);
	assert_int_equal(e->n, 2);
	assert_int_equal(e->addrs[0].family, AF_INET);
	assert_int_equal(e->addrs[0].u.v4.s_addr, addr4("127.0.0.21").u.v4.s_addr);
	assert_int_equal(e->addrs[1].u.v4.s_addr, addr4("127.0.0.22").u.v4.s_addr);

	/* Other types and names miss; names are compared exactly (callers
	 * canonicalise). */
	assert_null(dns_cache_get(c, "d.test", DNS_T_AAAA, 1));
	assert_null(dns_cache_get(c, "D.test", DNS_T_A, 1));
	assert_null(dns_cache_get(c, "d.test.", DNS_T_A, 1));
	assert_null(dns_cache_get(c, "e.test", DNS_T_A, 1));

	/* A put for a held key replaces it: new contents and a new expiry. */
	struct dns_addr one = addr4("127.0.0.99");
	assert_int_equal(dns_cache_put(c, "d.test", DNS_T_A, DNS_RR_DATA, &one, 1, 5, 1000), 0);
	assert_int_equal(dns_cache_count(c), 2);
	e = dns_cache_get(c, "d.test", DNS_T_A, 5999);
	assert_non_null(e);
	assert_int_equal(e->n, 1);
	assert_int_equal(e->addrs[0].u.v4.s_addr, one.u.v4.s_addr);
	assert_null(dns_cache_get(c, "d.test", DNS_T_A, 6000));
	/* The MX entry keeps its own expiry (60 s from 0). */
	assert_non_null(dns_cache_get(c, "d.test", DNS_T_MX, 59999));
	assert_null(dns_cache_get(c, "d.test", DNS_T_MX, 60000));
	dns_cache_free(c);
}

/* NXDOMAIN and NODATA are kept like answers, with no items, and expire. */
static void test_negative(void **state)
{
	static const struct {
		const char *name;
		uint16_t type;
		enum dns_rr_kind kind;
		uint32_t ttl_s;
	} cases[] = {
	    {"nosuch.test", DNS_T_MX, DNS_RR_NXDOMAIN, 300},
	    {"nosuch.test", DNS_T_A, DNS_RR_NXDOMAIN, 60},
	    {"nomx.test", DNS_T_MX, DNS_RR_NODATA, 120},
	    {"v4only.test", DNS_T_AAAA, DNS_RR_NODATA, 3600},
	};
	struct dns_cache *c = dns_cache_new(16);

	(void)state;
	assert_non_null(c);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(dns_cache_put(c, cases[i].name, cases[i].type, cases[i].kind, NULL,
					       0, cases[i].ttl_s, 10000),
				 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t end = 10000 + (uint64_t)cases[i].ttl_s * 1000;
		const struct dns_cache_entry *e =
		    dns_cache_get(c, cases[i].name, cases[i].type, end - 1);
		if (!e)
			fail_msg("case %zu: %s type %u: got miss at %llu, want hit", i,
				 cases[i].name, cases[i].type, (unsigned long long)(end - 1));
		if (e->kind != cases[i].kind || e->n != 0)
			fail_msg("case %zu: got kind %d n %u, want kind %d n 0", i, e->kind, e->n,
				 cases[i].kind);
		if (dns_cache_get(c, cases[i].name, cases[i].type, end))
			fail_msg("case %zu: %s type %u: got hit at expiry %llu, want miss", i,
				 cases[i].name, cases[i].type, (unsigned long long)end);
	}
	assert_int_equal(dns_cache_count(c), 0);

	/* A positive answer replaces a negative one for the same key. */
	assert_int_equal(dns_cache_put(c, "late.test", DNS_T_A, DNS_RR_NXDOMAIN, NULL, 0, 60, 0),
			 0);
	put_a(c, "late.test", 60, 1000);
	const struct dns_cache_entry *e = dns_cache_get(c, "late.test", DNS_T_A, 1000);
	assert_non_null(e);
	assert_int_equal(e->kind, DNS_RR_DATA);
	assert_int_equal(e->n, 1);
	assert_int_equal(dns_cache_count(c), 1);
	dns_cache_free(c);
}

/* Full: the oldest insertion goes (a replaced key counts as new). */
static void test_capacity_eviction(void **state)
{
	struct dns_cache *c = dns_cache_new(3);

	(void)state;
	assert_non_null(c);
	put_a(c, "a.test", 100, 0);
	put_a(c, "b.test", 100, 1);
	put_a(c, "c.test", 100, 2);
	assert_int_equal(dns_cache_count(c), 3);
	put_a(c, "d.test", 100, 3);
	assert_int_equal(dns_cache_count(c), 3);
	assert_false(has_a(c, "a.test", 4));
	assert_true(has_a(c, "b.test", 4));
	assert_true(has_a(c, "c.test", 4));
	assert_true(has_a(c, "d.test", 4));

	put_a(c, "b.test", 100, 5); /* b is now the newest */
	put_a(c, "e.test", 100, 6); /* so c goes */
	assert_int_equal(dns_cache_count(c), 3);
	assert_false(has_a(c, "c.test", 7));
	assert_true(has_a(c, "b.test", 7));
	assert_true(has_a(c, "d.test", 7));
	assert_true(has_a(c, "e.test", 7));

	/* A get does not refresh: insertion order, not use order. */
	assert_true(has_a(c, "d.test", 8));
	put_a(c, "f.test", 100, 9);
	assert_false(has_a(c, "d.test", 10));
	dns_cache_free(c);
}

/*
 * Full: expired entries go before the oldest live one, but the sweep runs at
 * most once a second, so between sweeps the oldest live entry may go while
 * an expired one stays (until a get drops it or the next sweep).
 */
static void test_sweep_before_evict(void **state)
{
	struct dns_cache *c = dns_cache_new(3);

	(void)state;
	assert_non_null(c);
	put_a(c, "a.test", 100, 0); /* live throughout */
	put_a(c, "x.test", 2, 0);   /* expires at 2000 */
	put_a(c, "y.test", 1, 0);   /* expires at 1000 */

	put_a(c, "b.test", 100, 1500); /* full: the sweep takes y, a stays */
	assert_int_equal(dns_cache_count(c), 3);
	assert_true(has_a(c, "a.test", 1500));
	assert_true(has_a(c, "x.test", 1500));
	assert_true(has_a(c, "b.test", 1500));

	put_a(c, "c.test", 100, 2100); /* x expired, but no sweep before 2500: a goes */
	assert_int_equal(dns_cache_count(c), 3);
	assert_false(has_a(c, "a.test", 2100));
	assert_true(has_a(c, "b.test", 2100));
	assert_true(has_a(c, "c.test", 2100));
	assert_int_equal(dns_cache_count(c), 3); /* x still held */
	assert_false(has_a(c, "x.test", 2100));	 /* and dropped by this get */
	assert_int_equal(dns_cache_count(c), 2);

	/* After the interval, the sweep takes every expired entry at once. */
	put_a(c, "d.test", 1, 2200);   /* expires at 3200 */
	put_a(c, "e.test", 100, 3300); /* full (b c d): the sweep takes d */
	assert_int_equal(dns_cache_count(c), 3);
	assert_true(has_a(c, "b.test", 3300));
	assert_true(has_a(c, "c.test", 3300));
	assert_true(has_a(c, "e.test", 3300));
	dns_cache_free(c);
}

/* Bounds: names, item counts, TTL 0 and huge TTLs, a cache of max 0. */
static void test_caps(void **state)
{
	struct dns_cache *c = dns_cache_new(4);
	struct dns_addr many[DNS_PARSE_MAX_MX + DNS_PARSE_MAX_ADDRS + 1] = {0};
	char name[300];

	(void)state;
	assert_non_null(c);
	/* A 255-character key fits; 256 does not. */
	memset(name, 'a', 256);
	name[255] = '\0';
	assert_int_equal(dns_cache_put(c, name, DNS_T_A, DNS_RR_NODATA, NULL, 0, 10, 0), 0);
	assert_non_null(dns_cache_get(c, name, DNS_T_A, 0));
	name[255] = 'a';
	name[256] = '\0';
	assert_int_equal(dns_cache_put(c, name, DNS_T_A, DNS_RR_NODATA, NULL, 0, 10, 0), -EINVAL);

	/* Items: at most what one answer can hold; n > 0 needs items. */
	assert_int_equal(dns_cache_put(c, "many.test", DNS_T_A, DNS_RR_DATA, many,
				       DNS_PARSE_MAX_MX + DNS_PARSE_MAX_ADDRS + 1, 10, 0),
			 -EINVAL);
	assert_int_equal(dns_cache_put(c, "many.test", DNS_T_A, DNS_RR_DATA, many,
				       DNS_PARSE_MAX_MX + DNS_PARSE_MAX_ADDRS, 10, 0),
			 0);
	assert_int_equal(dns_cache_put(c, "null.test", DNS_T_A, DNS_RR_DATA, NULL, 1, 10, 0),
			 -EINVAL);
	assert_int_equal(dns_cache_count(c), 2);

	/* TTL 0: not kept (RFC 1035 3.2.1: use only for the transaction at hand). */
	assert_int_equal(dns_cache_put(c, "zero.test", DNS_T_A, DNS_RR_DATA, many, 1, 0, 0), 1);
	assert_null(dns_cache_get(c, "zero.test", DNS_T_A, 0));
	assert_int_equal(dns_cache_count(c), 2);

	/* The largest TTL does not overflow the expiry (the resolver caps TTLs,
	 * the cache must not wrap them into the past). */
	uint64_t t0 = UINT64_C(1) << 40;
	put_a(c, "forever.test", UINT32_MAX, t0);
	assert_true(has_a(c, "forever.test", t0 + (uint64_t)UINT32_MAX * 1000 - 1));
	assert_false(has_a(c, "forever.test", t0 + (uint64_t)UINT32_MAX * 1000));
	dns_cache_free(c);

	/* max 0 is taken as 1. */
	c = dns_cache_new(0);
	assert_non_null(c);
	put_a(c, "one.test", 10, 0);
	put_a(c, "two.test", 10, 0);
	assert_int_equal(dns_cache_count(c), 1);
	assert_false(has_a(c, "one.test", 0));
	assert_true(has_a(c, "two.test", 0));
	dns_cache_free(c);
	dns_cache_free(NULL);
}

/* Many keys through a bounded cache: exactly the newest max remain. */
static void test_many(void **state)
{
	enum { MAX = 1000, N = 5000 };
	struct dns_cache *c = dns_cache_new(MAX);
	char name[64];

	(void)state;
	assert_non_null(c);
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "h%u.test", i);
		put_a(c, name, 3600, i);
		if (dns_cache_count(c) > MAX)
			fail_msg("after %u puts: got count %u, want <= %u", i + 1,
				 dns_cache_count(c), MAX);
	}
	assert_int_equal(dns_cache_count(c), MAX);
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "h%u.test", i);
		bool want = i >= N - MAX;
		if (has_a(c, name, N) != want)
			fail_msg("%s: got %s, want %s", name, want ? "miss" : "hit",
				 want ? "hit" : "miss");
		/* The same name as MX was never put. */
		assert_null(dns_cache_get(c, name, DNS_T_MX, N));
	}
	dns_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ttl_expiry),
	    cmocka_unit_test(test_contents_and_keys),
	    cmocka_unit_test(test_negative),
	    cmocka_unit_test(test_capacity_eviction),
	    cmocka_unit_test(test_sweep_before_evict),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
