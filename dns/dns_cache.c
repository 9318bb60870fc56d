/*
 * dns_cache: (name, type) -> answer until its expiry, at most max entries.
 *
 * A chained hash table for lookups and one list in insertion order for
 * eviction.  When full, expired entries are swept first (at most once per
 * second of now_ms, so a full cache of live entries does not cost a sweep
 * per insert), then the oldest entry goes.  Time is the caller's now_ms
 * (CLOCK_MONOTONIC in the resolver), so tests expire entries without
 * sleeping.  Thread context: the owning resolver's thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_pvt.h"

#define SWEEP_INTERVAL_MS 1000

struct dns_cache {
	struct dns_cache_entry **buckets; /* nbuckets chains */
	size_t nbuckets;		  /* a power of two */
	unsigned count, max;		  /* entries held, and the bound */
	struct dns_cache_entry *oldest;	  /* head of the insertion list */
	struct dns_cache_entry *newest;	  /* its tail */
	uint64_t last_sweep_ms;		  /* when expired entries were last swept */
	bool swept;			  /* last_sweep_ms is meaningful */
};

/* FNV-1a over the name, then the type. */
static size_t key_hash(const char *name, uint16_t type)
{
	uint64_t h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	h = (h ^ (type & 0xff)) * 1099511628211ull;
	h = (h ^ (type >> 8)) * 1099511628211ull;
	return (size_t)h;
}

struct dns_cache *dns_cache_new(unsigned max)
{
	struct dns_cache *c = calloc(1, sizeof(*c));
	size_t n = 16;

	if (!c)
		return NULL;
	if (max == 0)
		max = 1;
	while (n < max && n < (1u << 22))
		n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->nbuckets = n;
	c->max = max;
	return c;
}

static void entry_unlink(struct dns_cache *c, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &c->buckets[key_hash(e->name, e->type) & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	c->count--;
	free(e);
}

void dns_cache_free(struct dns_cache *c)
{
	if (!c)
		return;
	while (c->oldest)
		entry_unlink(c, c->oldest);
	free(c->buckets);
	free(c);
}

static struct dns_cache_entry *entry_find(struct dns_cache *c, const char *name, uint16_t type)
{
	struct dns_cache_entry *e = c->buckets[key_hash(name, type) & (c->nbuckets - 1)];

	for (; e; e = e->hnext)
		if (e->type == type && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

const struct dns_cache_entry *dns_cache_get(struct dns_cache *c, const char *name, uint16_t type,
					    uint64_t now_ms)
{
	struct dns_cache_entry *e = entry_find(c, name, type);

	if (e && now_ms >= e->expires_ms) {
		entry_unlink(c, e);
		return NULL;
	}
	return e;
}

static void expired_sweep(struct dns_cache *c, uint64_t now_ms)
{
	struct dns_cache_entry *e = c->oldest, *next;

	if (c->swept && now_ms < c->last_sweep_ms + SWEEP_INTERVAL_MS)
		return;
	c->swept = true;
	c->last_sweep_ms = now_ms;
	for (; e; e = next) {
		next = e->newer;
		if (now_ms >= e->expires_ms)
			entry_unlink(c, e);
	}
}

int dns_cache_put(struct dns_cache *c, const char *name, uint16_t type, enum dns_rr_kind kind,
		  const void *items, unsigned n, uint32_t ttl_s, uint64_t now_ms)
{
	size_t item_size = type == DNS_T_MX ? sizeof(struct dns_mx) : sizeof(struct dns_addr);
	struct dns_cache_entry *e, *old;

	if (strlen(name) > 255 || (n > 0 && !items) || n > DNS_PARSE_MAX_MX + DNS_PARSE_MAX_ADDRS)
		return -EINVAL;
	if (ttl_s == 0)
		return 1;
	old = entry_find(c, name, type);
	if (old)
		entry_unlink(c, old);
	if (c->count >= c->max)
		expired_sweep(c, now_ms);
	while (c->count >= c->max)
		entry_unlink(c, c->oldest);

	e = calloc(1, sizeof(*e) + item_size * n);
	if (!e)
		return -ENOMEM;
	strcpy(e->name, name);
	e->type = type;
	e->kind = kind;
	e->n = n;
	e->expires_ms = now_ms + (uint64_t)ttl_s * 1000;
	if (n > 0)
		memcpy(e + 1, items, item_size * n);
	if (type == DNS_T_MX)
		e->mx = (const struct dns_mx *)(void *)(e + 1);
	else
		e->addrs = (const struct dns_addr *)(void *)(e + 1);

	size_t b = key_hash(name, type) & (c->nbuckets - 1);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->count++;
	return 0;
}

unsigned dns_cache_count(const struct dns_cache *c)
{
	return c->count;
}
