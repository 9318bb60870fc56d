/* Unit tests: queue/retry (backoff, jitter bounds, notice and lifetime wake-ups). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/retry.h"

static const struct retry_policy hourly = {
    .min_s = 60, .max_s = 3600, .delay_warning_s = 4 * 3600, .max_lifetime_s = 5 * 86400};

/* Without jitter (rnd picks the middle) the waits double from min to max. */
static void test_backoff_doubles_to_max(void **state)
{
	(void)state;
	const int64_t arrival = 1000000, now = arrival + 10;
	/* rnd % (2*spread+1) == spread means no jitter. */
	int64_t want[] = {60, 120, 240, 480, 960, 1920, 3600, 3600, 3600};
	for (unsigned t = 1; t <= 9; t++) {
		int64_t base = want[t - 1] * 1000, spread = base / 4;
		int64_t got = retry_delay_ms(&hourly, t, arrival, now, true, (uint32_t)spread);
		assert_int_equal(got, base);
	}
}

/* Jitter stays within +-25% and is not a constant. */
static void test_jitter_bounds(void **state)
{
	(void)state;
	int64_t lo = INT64_MAX, hi = 0;
	for (uint32_t r = 0; r < 5000; r++) {
		int64_t got = retry_delay_ms(&hourly, 1, 0, 10, true, r * 2654435761u);
		assert_true(got >= 45000 && got <= 75000);
		lo = got < lo ? got : lo;
		hi = got > hi ? got : hi;
	}
	assert_true(lo < 50000 && hi > 70000);
}

/* The wait ends when the delay notice is due, unless it was sent. */
static void test_wakes_for_delay_notice(void **state)
{
	(void)state;
	const int64_t arrival = 0, now = 4 * 3600 - 100; /* notice due in 100 s */
	int64_t got = retry_delay_ms(&hourly, 9, arrival, now, false, 0);
	assert_int_equal(got, 100 * 1000);
	got = retry_delay_ms(&hourly, 9, arrival, now, true, 900000); /* 3600 s +- 900 */
	assert_true(got >= 2700 * 1000 && got <= 4500 * 1000);
}

/* ... and when the lifetime ends; never below one second. */
static void test_wakes_for_lifetime(void **state)
{
	(void)state;
	const int64_t arrival = 0, now = 5 * 86400 - 30;
	assert_int_equal(retry_delay_ms(&hourly, 9, arrival, now, true, 0), 30 * 1000);
	assert_int_equal(retry_delay_ms(&hourly, 9, arrival, 5 * 86400 + 5, true, 0), 1000);
	assert_false(retry_expired(&hourly, arrival, now));
	assert_true(retry_expired(&hourly, arrival, 5 * 86400));
}

static void test_notice_due(void **state)
{
	(void)state;
	assert_false(retry_delay_notice_due(&hourly, 0, 4 * 3600 - 1));
	assert_true(retry_delay_notice_due(&hourly, 0, 4 * 3600));
	struct retry_policy never = hourly;
	never.delay_warning_s = 0;
	assert_false(retry_delay_notice_due(&never, 0, 86400 * 4));
}

/* Scaled-down schedules as the integration tests use them (seconds). */
static void test_small_schedule(void **state)
{
	(void)state;
	const struct retry_policy fast = {
	    .min_s = 1, .max_s = 2, .delay_warning_s = 3, .max_lifetime_s = 8};
	assert_int_equal(retry_delay_ms(&fast, 1, 100, 100, true, 250), 1000);
	assert_int_equal(retry_delay_ms(&fast, 5, 100, 100, true, 500), 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff_doubles_to_max), cmocka_unit_test(test_jitter_bounds),
	    cmocka_unit_test(test_wakes_for_delay_notice), cmocka_unit_test(test_wakes_for_lifetime),
	    cmocka_unit_test(test_notice_due),		   cmocka_unit_test(test_small_schedule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
