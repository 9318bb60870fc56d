/*
 * histogram: a log-linear latency histogram (HDR style) for sluice-bench.
 *
 * Owns: bucketing of unsigned 64-bit values (nanoseconds in practice),
 * merging, and percentiles.  Values below 2^(HISTOGRAM_SUB_BITS + 1) get
 * a bucket each; above that every power-of-two range [2^m, 2^(m+1)) is cut
 * into 2^HISTOGRAM_SUB_BITS equal buckets, so a reported value is never
 * more than 1/128 (0.8%) above the true one.  The whole 64-bit range fits
 * in a fixed array: recording never allocates and never saturates.
 *
 * Thread context: none of its own.  The intended use is one histogram per
 * thread, recorded without locks, merged by one thread once the recording
 * threads are done.
 */
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include <stdint.h>

/* Mantissa bits kept per power of two: the relative precision. */
#define HISTOGRAM_SUB_BITS 7
#define HISTOGRAM_SUB_COUNT (1u << HISTOGRAM_SUB_BITS)
/* Buckets covering 0 .. UINT64_MAX at that precision (58 KiB of counts). */
#define HISTOGRAM_BUCKETS ((64u - HISTOGRAM_SUB_BITS + 1u) * HISTOGRAM_SUB_COUNT)

struct histogram {
	uint64_t count;			     /* values recorded */
	uint64_t max;			     /* exact largest value recorded */
	uint64_t buckets[HISTOGRAM_BUCKETS]; /* counts per bucket, see histogram.c */
};

/* Empty h. */
void histogram_init(struct histogram *h);

/* Count one value. */
void histogram_record(struct histogram *h, uint64_t value);

/* Add every count of src to dst; src is unchanged. */
void histogram_merge(struct histogram *dst, const struct histogram *src);

/*
 * The value at percentile pct (0 < pct <= 100): the highest value of the
 * bucket holding that rank, never above the exact maximum.  Returns 0 for
 * an empty histogram.
 */
uint64_t histogram_percentile(const struct histogram *h, double pct);

#endif
