/* timer: per-worker deadline lists, one per constant timeout (O(1) each). */
#include <stdint.h>
#include <time.h>

#include "common/log.h"
#include "dataplane/dataplane_pvt.h"

void dp_timer_list_init(struct dp_timer_list *l, uint64_t timeout_ms)
{
	dp_list_init(&l->head);
	l->timeout_ms = timeout_ms;
}

void dp_timer_arm(struct dp_timer_list *l, struct dp_timer *t, uint64_t now)
{
	if (dp_timer_armed(t))
		dp_list_del(&t->link);
	t->deadline = now + l->timeout_ms;
	/* Same timeout for every entry and a monotonic now: the tail always
	 * holds the latest deadline, so the list stays sorted. */
	SLUICE_ASSERT(dp_list_empty(&l->head) ||
		      dp_container_of(l->head.prev, struct dp_timer, link)->deadline <=
			  t->deadline);
	dp_list_add_tail(&l->head, &t->link);
}

void dp_timer_disarm(struct dp_timer *t)
{
	if (dp_timer_armed(t))
		dp_list_del(&t->link);
}

uint64_t dp_timer_list_next(const struct dp_timer_list *l)
{
	if (dp_list_empty(&l->head))
		return UINT64_MAX;
	return dp_container_of(l->head.next, struct dp_timer, link)->deadline;
}

struct dp_timer *dp_timer_list_expire(struct dp_timer_list *l, uint64_t now)
{
	struct dp_timer *t;

	if (dp_list_empty(&l->head))
		return NULL;
	t = dp_container_of(l->head.next, struct dp_timer, link);
	if (t->deadline > now)
		return NULL;
	dp_list_del(&t->link);
	return t;
}

uint64_t dp_now_ms(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail with a valid pointer. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
