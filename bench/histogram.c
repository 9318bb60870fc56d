/*
 * histogram: log-linear buckets (see histogram.h).
 *
 * Index of a value v with m = floor(log2 v) and S = HISTOGRAM_SUB_BITS:
 *	v < 2^(S+1):	v itself (exact)
 *	otherwise:	(m - S + 1) * 2^S + the S bits below v's leading bit
 * which is contiguous: the first bucket of each power of two follows the
 * last of the one before.
 */
#include "bench/histogram.h"

#include <math.h>
#include <string.h>

#define SUB_MASK (HISTOGRAM_SUB_COUNT - 1u)

static unsigned histogram_index(uint64_t v)
{
	unsigned m, shift;

	if (v < (2u << HISTOGRAM_SUB_BITS))
		return (unsigned)v;
	m = 63u - (unsigned)__builtin_clzll(v);
	shift = m - HISTOGRAM_SUB_BITS;
	return ((shift + 1u) << HISTOGRAM_SUB_BITS) + (unsigned)((v >> shift) & SUB_MASK);
}

/* The highest value that lands in bucket idx. */
static uint64_t histogram_bucket_top(unsigned idx)
{
	unsigned shift;
	uint64_t low;

	if (idx < (2u << HISTOGRAM_SUB_BITS))
		return idx;
	shift = (idx >> HISTOGRAM_SUB_BITS) - 1u;
	low = (uint64_t)((idx & SUB_MASK) | HISTOGRAM_SUB_COUNT) << shift;
	return low + ((UINT64_C(1) << shift) - 1u);
}

void histogram_init(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
}

void histogram_record(struct histogram *h, uint64_t value)
{
	h->buckets[histogram_index(value)]++;
	h->count++;
	if (value > h->max)
		h->max = value;
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t histogram_percentile(const struct histogram *h, double pct)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
	if (rank == 0)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t top = histogram_bucket_top(i);

			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}
