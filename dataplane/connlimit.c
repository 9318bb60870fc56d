/* connlimit: exact connection counts per client address, lock-striped hash. */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/log.h"
#include "dataplane/dataplane_pvt.h"

/* One address being counted; freed when its count drops to zero. */
struct cl_entry {
	struct cl_entry *next; /* bucket chain */
	uint64_t hash;
	uint32_t count;
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

/* One lock and its own small chained hash table.  Aligned so two stripes
 * never share a cache line. */
struct cl_stripe {
	alignas(64) pthread_mutex_t lock;
	struct cl_entry **buckets; /* nbuckets, power of two, or NULL */
	uint32_t nbuckets;
	uint32_t nentries;
};

struct connlimit {
	uint64_t seed; /* random: client addresses must not choose our chains */
	unsigned stripes_log2;
	struct cl_stripe *stripes;
};

struct cl_key {
	uint8_t family;
	uint8_t addr[16];
};

static int cl_key_from(const struct sockaddr *sa, struct cl_key *k)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(k, 0, sizeof(*k));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		k->family = AF_INET;
		memcpy(k->addr, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		/* The same host over a dual-stack socket is the same client. */
		if (memcmp(in6->sin6_addr.s6_addr, v4mapped, 12) == 0) {
			k->family = AF_INET;
			memcpy(k->addr, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			k->family = AF_INET6;
			memcpy(k->addr, in6->sin6_addr.s6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

static uint64_t cl_mix(uint64_t x)
{
	/* splitmix64 finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t cl_hash(const struct connlimit *cl, const struct cl_key *k)
{
	uint64_t a, b;

	memcpy(&a, k->addr, 8);
	memcpy(&b, k->addr + 8, 8);
	return cl_mix(cl_mix(cl->seed ^ a ^ ((uint64_t)k->family << 56)) ^ b);
}

struct connlimit *connlimit_new(unsigned stripes_log2)
{
	struct connlimit *cl;
	size_t n = (size_t)1 << stripes_log2;

	if (stripes_log2 > 16)
		return NULL;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->stripes = aligned_alloc(alignof(struct cl_stripe), n * sizeof(struct cl_stripe));
	if (!cl->stripes) {
		free(cl);
		return NULL;
	}
	memset(cl->stripes, 0, n * sizeof(struct cl_stripe));
	for (size_t i = 0; i < n; i++)
		pthread_mutex_init(&cl->stripes[i].lock, NULL);
	cl->stripes_log2 = stripes_log2;
	if (getrandom(&cl->seed, sizeof(cl->seed), GRND_NONBLOCK) != sizeof(cl->seed))
		cl->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)cl; /* XXX: weak, rare */
	return cl;
}

void connlimit_free(struct connlimit *cl)
{
	if (!cl)
		return;
	for (size_t i = 0; i < ((size_t)1 << cl->stripes_log2); i++) {
		struct cl_stripe *s = &cl->stripes[i];

		for (uint32_t b = 0; b < s->nbuckets; b++) {
			struct cl_entry *e = s->buckets[b], *next;

			for (; e; e = next) {
				next = e->next;
				free(e);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(cl->stripes);
	free(cl);
}

static struct cl_stripe *cl_stripe_of(struct connlimit *cl, uint64_t h)
{
	return &cl->stripes[h & (((uint64_t)1 << cl->stripes_log2) - 1)];
}

static uint32_t cl_bucket(const struct connlimit *cl, const struct cl_stripe *s, uint64_t h)
{
	return (uint32_t)(h >> cl->stripes_log2) & (s->nbuckets - 1);
}

/* Find the entry and the link pointing at it.  Stripe locked. */
static struct cl_entry **cl_find_locked(struct connlimit *cl, struct cl_stripe *s, uint64_t h,
					const struct cl_key *k)
{
	struct cl_entry **pp;

	if (!s->nbuckets)
		return NULL;
	for (pp = &s->buckets[cl_bucket(cl, s, h)]; *pp; pp = &(*pp)->next) {
		struct cl_entry *e = *pp;

		if (e->hash == h && e->family == k->family && memcmp(e->addr, k->addr, 16) == 0)
			return pp;
	}
	return NULL;
}

/* Double the bucket array when the chains get long.  Stripe locked.  A
 * failed grow is harmless (longer chains). */
static void cl_grow_locked(struct connlimit *cl, struct cl_stripe *s)
{
	uint32_t n = s->nbuckets ? s->nbuckets * 2 : 8;
	struct cl_entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	for (uint32_t b = 0; b < s->nbuckets; b++) {
		struct cl_entry *e = s->buckets[b], *next;

		for (; e; e = next) {
			uint32_t i = (uint32_t)(e->hash >> cl->stripes_log2) & (n - 1);

			next = e->next;
			e->next = nb[i];
			nb[i] = e;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->nbuckets = n;
}

int connlimit_acquire(struct connlimit *cl, const struct sockaddr *sa, unsigned limit)
{
	struct cl_key k;
	struct cl_stripe *s;
	struct cl_entry **pp, *e;
	uint64_t h;
	int rc = 0;

	if (cl_key_from(sa, &k) < 0)
		return -EAFNOSUPPORT;
	h = cl_hash(cl, &k);
	s = cl_stripe_of(cl, h);
	pthread_mutex_lock(&s->lock);
	pp = cl_find_locked(cl, s, h, &k);
	if (pp) {
		e = *pp;
		if (limit && e->count >= limit)
			rc = -EUSERS;
		else
			e->count++;
		goto out;
	}
	if (s->nentries >= s->nbuckets * 2u)
		cl_grow_locked(cl, s);
	if (!s->nbuckets) {
		rc = -ENOMEM;
		goto out;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	e->hash = h;
	e->count = 1;
	e->family = k.family;
	memcpy(e->addr, k.addr, 16);
	pp = &s->buckets[cl_bucket(cl, s, h)];
	e->next = *pp;
	*pp = e;
	s->nentries++;
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void connlimit_release(struct connlimit *cl, const struct sockaddr *sa)
{
	struct cl_key k;
	struct cl_stripe *s;
	struct cl_entry **pp;
	uint64_t h;

	if (cl_key_from(sa, &k) < 0)
		return;
	h = cl_hash(cl, &k);
	s = cl_stripe_of(cl, h);
	pthread_mutex_lock(&s->lock);
	pp = cl_find_locked(cl, s, h, &k);
	/* Releasing what was never acquired is our bug. */
	SLUICE_ASSERT(pp != NULL);
	if (--(*pp)->count == 0) {
		struct cl_entry *e = *pp;

		*pp = e->next;
		free(e);
		s->nentries--;
	}
	pthread_mutex_unlock(&s->lock);
}

unsigned connlimit_count(struct connlimit *cl, const struct sockaddr *sa)
{
	struct cl_key k;
	struct cl_stripe *s;
	struct cl_entry **pp;
	unsigned n = 0;
	uint64_t h;

	if (cl_key_from(sa, &k) < 0)
		return 0;
	h = cl_hash(cl, &k);
	s = cl_stripe_of(cl, h);
	pthread_mutex_lock(&s->lock);
	pp = cl_find_locked(cl, s, h, &k);
	if (pp)
		n = (*pp)->count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t connlimit_size(struct connlimit *cl)
{
	size_t n = 0;

	for (size_t i = 0; i < ((size_t)1 << cl->stripes_log2); i++) {
		pthread_mutex_lock(&cl->stripes[i].lock);
		n += cl->stripes[i].nentries;
		pthread_mutex_unlock(&cl->stripes[i].lock);
	}
	return n;
}
