/* Unit tests for the per-worker timer lists (dataplane/timer.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dataplane/dataplane_pvt.h"

#define NT 6

/* A script over timers 0..NT-1 on one list with timeout 100 ms:
 *	'a' arm timer at now	'd' disarm timer
 *	'x' expire at now: want exactly the timers listed in want (in order)
 * After each step next() must equal want_next. */
struct op {
	char op;
	int timer;
	uint64_t now;
	const char *want; /* 'x': expired timers in order, as digits */
	uint64_t want_next;
};

#define NONE UINT64_MAX

/* clang-format off */
static const struct op script[] = {
	{'x', 0, 0, "", NONE},		/* empty list: nothing, next = none */
	{'a', 0, 10, NULL, 110},
	{'a', 1, 20, NULL, 110},
	{'a', 2, 20, NULL, 110},	/* same deadline: FIFO among equals */
	{'x', 0, 109, "", 110},		/* one ms early: nothing */
	{'x', 0, 110, "0", 120},	/* deadline == now expires */
	{'a', 1, 50, NULL, 120},	/* re-arm moves 1 behind 2 */
	{'x', 0, 149, "2", 150},
	{'a', 3, 60, NULL, 150},
	{'d', 1, 0, NULL, 160},		/* disarm the head */
	{'d', 1, 0, NULL, 160},		/* disarm twice: no-op */
	{'a', 4, 70, NULL, 160},
	{'a', 5, 70, NULL, 160},
	{'d', 4, 0, NULL, 160},		/* disarm from the middle */
	{'x', 0, 1000, "35", NONE},	/* a late turn expires all, in order */
	{'a', 0, 1000, NULL, 1100},
	{'x', 0, 1100, "0", NONE},
};
/* clang-format on */

static void test_script(void **state)
{
	struct dp_timer_list l;
	struct dp_timer t[NT];

	(void)state;
	memset(t, 0, sizeof(t));
	dp_timer_list_init(&l, 100);
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		const struct op *o = &script[i];
		char got[NT + 1] = "";
		uint64_t next;

		switch (o->op) {
		case 'a':
			dp_timer_arm(&l, &t[o->timer], o->now);
			assert_true(dp_timer_armed(&t[o->timer]));
			break;
		case 'd':
			dp_timer_disarm(&t[o->timer]);
			assert_false(dp_timer_armed(&t[o->timer]));
			break;
		case 'x': {
			struct dp_timer *e;
			size_t n = 0;

			while ((e = dp_timer_list_expire(&l, o->now))) {
				assert_true(n < NT);
				assert_false(dp_timer_armed(e));
				got[n++] = (char)('0' + (e - t));
			}
			got[n] = '\0';
			if (strcmp(got, o->want) != 0)
				fail_msg("step %zu: expired at %llu: got \"%s\" want \"%s\"", i,
					 (unsigned long long)o->now, got, o->want);
			break;
		}
		}
		next = dp_timer_list_next(&l);
		if (next != o->want_next)
			fail_msg("step %zu (%c): next got %llu want %llu", i, o->op,
				 (unsigned long long)next, (unsigned long long)o->want_next);
	}
}

/* Two lists with different timeouts are independent. */
static void test_two_lists(void **state)
{
	struct dp_timer_list cmd, data;
	struct dp_timer a = {0}, b = {0};

	(void)state;
	dp_timer_list_init(&cmd, 300000);
	dp_timer_list_init(&data, 180000);
	dp_timer_arm(&cmd, &a, 1000);
	dp_timer_arm(&data, &b, 1000);
	assert_int_equal(dp_timer_list_next(&cmd), 301000);
	assert_int_equal(dp_timer_list_next(&data), 181000);
	/* moving a timer to the other list takes it off the first */
	dp_timer_arm(&data, &a, 2000);
	assert_int_equal(dp_timer_list_next(&cmd), UINT64_MAX);
	assert_ptr_equal(dp_timer_list_expire(&data, 182000), &b);
	assert_ptr_equal(dp_timer_list_expire(&data, 182000), &a);
	assert_null(dp_timer_list_expire(&data, 182000));
}

static void test_now_monotonic(void **state)
{
	uint64_t a = dp_now_ms(), b = dp_now_ms();

	(void)state;
	assert_true(a > 0);
	assert_true(b >= a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_script),
	    cmocka_unit_test(test_two_lists),
	    cmocka_unit_test(test_now_monotonic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
