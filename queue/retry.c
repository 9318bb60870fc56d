/* retry: the deferral schedule (see retry.h). */
#include "queue/retry.h"

/* Jitter: the wait is scaled by 0.75 .. 1.25. */
#define RETRY_JITTER_PERMILLE 250

int64_t retry_delay_ms(const struct retry_policy *p, unsigned tries, int64_t arrival,
		       int64_t now, bool noticed, uint32_t rnd)
{
	int64_t base = p->min_s ? p->min_s : 1;
	int64_t max = p->max_s > base ? p->max_s : base;
	for (unsigned i = 1; i < tries && base < max; i++)
		base *= 2;
	if (base > max)
		base = max;
	int64_t ms = base * 1000;
	int64_t spread = ms * RETRY_JITTER_PERMILLE / 1000;
	ms += (int64_t)(rnd % (uint32_t)(2 * spread + 1)) - spread;

	/* Wake up for the delay notice and for the end of the lifetime. */
	int64_t until = ms;
	if (!noticed && p->delay_warning_s) {
		int64_t due = (arrival + p->delay_warning_s - now) * 1000;
		if (due > 0 && due < until)
			until = due;
	}
	int64_t end = (arrival + p->max_lifetime_s - now) * 1000;
	if (end < until)
		until = end; /* past it already: at once (the caller gives up) */
	return until < 1000 ? 1000 : until;
}

bool retry_expired(const struct retry_policy *p, int64_t arrival, int64_t now)
{
	return now - arrival >= (int64_t)p->max_lifetime_s;
}

bool retry_delay_notice_due(const struct retry_policy *p, int64_t arrival, int64_t now)
{
	return p->delay_warning_s && now - arrival >= (int64_t)p->delay_warning_s;
}
