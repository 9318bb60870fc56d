/*
 * retry: when a deferred recipient is tried again, when its sender hears
 * that it is delayed, and when it is given up.
 *
 * Owns: the schedule.  Exponential backoff from min_s doubling per try up
 * to max_s, each wait spread by up to +-25% jitter, so a burst deferred
 * together (a destination down for a minute) does not come back as one
 * burst.  A wait never runs past the moment a delay notice or the end of
 * the lifetime is due, so those go out on time and not up to max_s late.
 *
 * Pure functions of their arguments (the caller passes the time and the
 * random number), so tests need no clock.  Thread context: any.
 */
#ifndef SLUICE_RETRY_H
#define SLUICE_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
	unsigned min_s;		  /* wait before the first retry */
	unsigned max_s;		  /* longest wait between tries */
	unsigned delay_warning_s; /* after arrival: the delay notice (0 = never) */
	unsigned max_lifetime_s;  /* after arrival: give up */
};

/*
 * Milliseconds to wait after the tries-th failed attempt (tries >= 1) of a
 * message that arrived at arrival (Unix seconds), at now (Unix seconds);
 * rnd is any 32-bit random number (the jitter).  noticed: the delay notice
 * went out already (no need to wake up for it).  Never less than 1000.
 */
int64_t retry_delay_ms(const struct retry_policy *p, unsigned tries, int64_t arrival,
		       int64_t now, bool noticed, uint32_t rnd);

/* True when a recipient that arrived at arrival is past its lifetime. */
bool retry_expired(const struct retry_policy *p, int64_t arrival, int64_t now);

/* True when its delay notice is due now (delay_warning set and passed). */
bool retry_delay_notice_due(const struct retry_policy *p, int64_t arrival, int64_t now);

#endif
