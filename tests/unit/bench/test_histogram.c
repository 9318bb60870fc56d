/* Unit tests for histogram: exact small values, the relative error bound,
 * percentiles of known distributions, merging, the empty case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#include "bench/histogram.h"

static struct histogram *new_histogram(void)
{
	struct histogram *h = malloc(sizeof(*h));

	assert_non_null(h);
	histogram_init(h);
	return h;
}

/* Values below 2^(SUB_BITS+1) have a bucket each: percentiles are exact. */
static void test_small_values_exact(void **state)
{
	struct histogram *h = new_histogram();

	(void)state;
	for (uint64_t v = 1; v <= 200; v++)
		histogram_record(h, v);
	assert_int_equal(h->count, 200);
	assert_int_equal(h->max, 200);
	assert_int_equal(histogram_percentile(h, 50), 100);
	assert_int_equal(histogram_percentile(h, 90), 180);
	assert_int_equal(histogram_percentile(h, 99), 198);
	assert_int_equal(histogram_percentile(h, 100), 200);
	free(h);
}

/* A large value is reported at most 1/128 above itself, never below, and
 * never above the exact maximum. */
static void test_relative_error(void **state)
{
	static const uint64_t values[] = {
	    257, 1000, 4097, 123456789, 1u << 30, 999999999999ull, UINT64_MAX / 3};

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct histogram *h = new_histogram();
		uint64_t got;

		histogram_record(h, values[i]);
		histogram_record(h, UINT64_MAX); /* keeps the max clamp out of the way */
		got = histogram_percentile(h, 50);
		if (got < values[i] || (double)(got - values[i]) > (double)values[i] / 128.0)
			fail_msg("value %llu: got %llu, want within +1/128",
				 (unsigned long long)values[i], (unsigned long long)got);
		free(h);
	}
}

/* 1 ms..1000 ms, one sample each: p50 near 500 ms, p99.9 near 999 ms, max exact. */
static void test_percentiles_of_a_spread(void **state)
{
	struct histogram *h = new_histogram();
	const uint64_t ms = 1000000;
	static const struct {
		double pct;
		uint64_t want;
	} cases[] = {{50, 500}, {90, 900}, {99, 990}, {99.9, 999}, {100, 1000}};

	(void)state;
	for (uint64_t k = 1; k <= 1000; k++)
		histogram_record(h, k * ms);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = histogram_percentile(h, cases[i].pct), want = cases[i].want * ms;

		if (got < want || (double)(got - want) > (double)want / 128.0)
			fail_msg("p%g: got %llu ns, want %llu ns (+1/128)", cases[i].pct,
				 (unsigned long long)got, (unsigned long long)want);
	}
	assert_int_equal(h->max, 1000 * ms);
	free(h);
}

/* Merging two halves gives the histogram of the whole. */
static void test_merge(void **state)
{
	struct histogram *a = new_histogram(), *b = new_histogram(), *all = new_histogram();

	(void)state;
	for (uint64_t v = 1; v <= 5000; v++) {
		histogram_record(v % 2 ? a : b, v * 37);
		histogram_record(all, v * 37);
	}
	histogram_merge(a, b);
	assert_int_equal(a->count, all->count);
	assert_int_equal(a->max, all->max);
	for (double p = 1; p <= 100; p += 7.5)
		assert_int_equal(histogram_percentile(a, p), histogram_percentile(all, p));
	free(a);
	free(b);
	free(all);
}

static void test_empty_and_zero(void **state)
{
	struct histogram *h = new_histogram();

	(void)state;
	assert_int_equal(histogram_percentile(h, 99), 0);
	histogram_record(h, 0);
	assert_int_equal(histogram_percentile(h, 50), 0);
	assert_int_equal(h->count, 1);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_values_exact),	    cmocka_unit_test(test_relative_error),
	    cmocka_unit_test(test_percentiles_of_a_spread), cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_empty_and_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
