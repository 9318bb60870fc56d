/* route: the RCU routing table (rculfhash, qsbr flavour) and the routes-file loader. */
#include "config/route.h"
#include "config/route_pvt.h"

#include "common/log.h"

#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Why no CDS_LFHT_AUTO_RESIZE: auto-resize runs in liburcu's worker thread
 * and a shrink waits for a grace period and frees bucket memory, which would
 * make the (unregistered) config thread that builds a table a hazard.  A
 * table is built privately and never changes once published, so the
 * builder sizes the hash itself: when it gets full it moves every node into
 * a fresh, bigger cds_lfht (rehash).  No reader can see a table being
 * built, so the builder needs no grace periods and the lfht calls that want
 * "rcu_read_lock held" are trivially safe (qsbr's read lock is empty).
 */
#define ROUTE_BUCKETS_MIN 64UL

/* One entry; immutable once the table is published. */
struct route_node {
	struct cds_lfht_node lf; /* linkage in route_table.ht */
	uint64_t hash;		 /* route_hash(key) */
	struct route r;		 /* the public part (r.pattern == key) */
	char **users;		 /* ROUTE_LOCAL: sorted, lowercased local parts */
	unsigned nusers;
	const char *src_name; /* file the entry came from (table-owned), or NULL */
	size_t keylen;
	char key[]; /* lowercased pattern, then maildir_root, then relay_host */
};

struct route_table {
	struct cds_lfht *ht;	   /* pattern -> route_node */
	unsigned long nbuckets;	   /* ht's fixed bucket count (power of two) */
	struct route_node **nodes; /* insertion order; owns the nodes */
	size_t n, cap;
	struct cidr *nets; /* relay_networks */
	unsigned nnets;
	char **sources; /* source names referenced by nodes */
	unsigned nsources;
	const char *cur_source; /* sources[nsources - 1] or NULL */
};

/* The lookup key handed to the match function. */
struct route_key {
	const char *s;
	size_t len;
};

static struct route_table *route_cur; /* the published table (RCU) */

static void err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_set(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static inline char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/*
 * 64-bit string hash: 8 bytes per multiply, then a final avalanche.  Keys
 * come from the operator's config; network input only chooses which chain
 * to walk, it cannot lengthen one, so no keyed hash is needed.
 */
static uint64_t route_hash(const char *s, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)len * 0xff51afd7ed558ccdULL);
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, s, 8);
		h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
		s += 8;
		len -= 8;
	}
	uint64_t v = 0;
	memcpy(&v, s, len);
	h = (h ^ v) * 0x94d049bb133111ebULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

static int route_match(struct cds_lfht_node *lf, const void *key)
{
	const struct route_node *n = caa_container_of(lf, struct route_node, lf);
	const struct route_key *k = key;
	return n->keylen == k->len && memcmp(n->key, k->s, k->len) == 0;
}

static const struct route_node *route_find(const struct route_table *t, const char *s, size_t len)
{
	struct route_key k = {s, len};
	struct cds_lfht_iter it;
	cds_lfht_lookup(t->ht, route_hash(s, len), route_match, &k, &it);
	struct cds_lfht_node *lf = cds_lfht_iter_get_node(&it);
	return lf ? caa_container_of(lf, struct route_node, lf) : NULL;
}

const char *route_action_str(enum route_action a)
{
	switch (a) {
	case ROUTE_NONE:
		return "none";
	case ROUTE_LOCAL:
		return "local";
	case ROUTE_RELAY:
		return "relay";
	case ROUTE_RELAY_VIA:
		return "relay-via";
	case ROUTE_REJECT:
		return "reject";
	}
	return "unknown";
}

enum route_action route_action_parse(const char *name)
{
	static const enum route_action all[] = {ROUTE_LOCAL, ROUTE_RELAY, ROUTE_RELAY_VIA,
						ROUTE_REJECT};
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(name, route_action_str(all[i])) == 0)
			return all[i];
	return ROUTE_NONE;
}

struct route_table *route_table_new(void)
{
	struct route_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->nbuckets = ROUTE_BUCKETS_MIN;
	t->ht = cds_lfht_new(t->nbuckets, t->nbuckets, t->nbuckets, 0, NULL);
	if (!t->ht) {
		free(t);
		return NULL;
	}
	return t;
}

/* Unlink every node from ht (cds_lfht_destroy refuses a non-empty table). */
static void route_ht_empty(struct route_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		int r = cds_lfht_del(t->ht, &t->nodes[i]->lf);
		SLUICE_ASSERT(r == 0);
	}
}

static void route_node_free(struct route_node *n)
{
	if (!n)
		return;
	for (unsigned i = 0; i < n->nusers; i++)
		free(n->users[i]);
	free(n->users);
	free(n);
}

void route_table_free(struct route_table *t)
{
	if (!t)
		return;
	route_ht_empty(t);
	int r = cds_lfht_destroy(t->ht, NULL);
	SLUICE_ASSERT(r == 0);
	for (size_t i = 0; i < t->n; i++)
		route_node_free(t->nodes[i]);
	free(t->nodes);
	free(t->nets);
	for (unsigned i = 0; i < t->nsources; i++)
		free(t->sources[i]);
	free(t->sources);
	free(t);
}

size_t route_table_size(const struct route_table *t)
{
	return t ? t->n : 0;
}

const struct route *route_table_entry(const struct route_table *t, size_t i)
{
	return t && i < t->n ? &t->nodes[i]->r : NULL;
}

int route_table_set_source(struct route_table *t, const char *name)
{
	if (!name) {
		t->cur_source = NULL;
		return 0;
	}
	char **v = realloc(t->sources, (t->nsources + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->sources = v;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	t->sources[t->nsources++] = copy;
	t->cur_source = copy;
	return 0;
}

int route_table_set_relay_networks(struct route_table *t, const struct cidr *nets, unsigned n)
{
	struct cidr *copy = NULL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, nets, n * sizeof(*copy));
	}
	free(t->nets);
	t->nets = copy;
	t->nnets = n;
	return 0;
}

bool route_relay_allowed(const struct route_table *t, const struct sockaddr *sa)
{
	return t && sa && cidr_match_any(t->nets, t->nnets, sa);
}

/*
 * Move every node into a cds_lfht with 4x the buckets.  Only while the
 * table is private (see the comment at the top).  The load factor stays
 * between 1/4 and 1, so chains are short and lookups touch one or two
 * nodes.  Returns 0 or -ENOMEM (then the old hash is still intact).
 */
static int route_ht_grow(struct route_table *t)
{
	unsigned long nb = t->nbuckets * 4;
	struct cds_lfht *ht = cds_lfht_new(nb, nb, nb, 0, NULL);
	if (!ht)
		return -ENOMEM;
	route_ht_empty(t);
	int r = cds_lfht_destroy(t->ht, NULL);
	SLUICE_ASSERT(r == 0);
	t->ht = ht;
	t->nbuckets = nb;
	for (size_t i = 0; i < t->n; i++) {
		struct route_node *n = t->nodes[i];
		cds_lfht_node_init(&n->lf);
		cds_lfht_add(ht, n->hash, &n->lf);
	}
	return 0;
}

/*
 * Validate and normalise a route pattern into out (lowercased, one trailing
 * dot removed, leading dot kept for a parent pattern).  Labels: letters,
 * digits, '-' and '_', 1..63 octets, no '-' at either end; the name without
 * the leading dot is at most 253 octets.  Returns the length or -EINVAL.
 */
static int route_pattern_norm(const char *domain, char *out, char *err, size_t errlen)
{
	size_t len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0) {
		err_set(err, errlen, "bad domain \"%s\": empty", domain);
		return -EINVAL;
	}
	if (domain[0] == '*') {
		if (domain[1] == '.' && domain[2])
			err_set(err, errlen,
				"bad domain \"%s\": no wildcards; write \"%s\" for every "
				"subdomain of %s",
				domain, domain + 1, domain + 2);
		else
			err_set(err, errlen, "bad domain \"%s\": no wildcards", domain);
		return -EINVAL;
	}
	size_t start = domain[0] == '.' ? 1 : 0;
	if (len - start == 0) {
		err_set(err, errlen, "bad domain \"%s\": empty", domain);
		return -EINVAL;
	}
	if (len - start > 253) {
		err_set(err, errlen, "bad domain \"%.64s...\": longer than 253 octets", domain);
		return -EINVAL;
	}
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = ascii_lower(domain[i]);
		out[i] = c;
		if (i < start)
			continue;
		if (c == '.') {
			if (label == 0) {
				err_set(err, errlen, "bad domain \"%s\": empty label", domain);
				return -EINVAL;
			}
			if (out[i - 1] == '-') {
				err_set(err, errlen, "bad domain \"%s\": label ends with '-'",
					domain);
				return -EINVAL;
			}
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
		if (!ok) {
			unsigned char uc = (unsigned char)c;
			if (uc < 0x20 || uc >= 0x7f)
				err_set(err, errlen,
					"bad domain \"%s\": byte 0x%02x not allowed (use A-labels, "
					"xn--, for IDNs)",
					domain, uc);
			else
				err_set(err, errlen,
					"bad domain \"%s\": character '%c' not allowed", domain, c);
			return -EINVAL;
		}
		if (c == '-' && label == 0) {
			err_set(err, errlen, "bad domain \"%s\": label starts with '-'", domain);
			return -EINVAL;
		}
		if (++label > 63) {
			err_set(err, errlen, "bad domain \"%.64s...\": label longer than 63 octets",
				domain);
			return -EINVAL;
		}
	}
	if (label == 0) { /* "a.b.." : only one trailing dot is dropped */
		err_set(err, errlen, "bad domain \"%s\": empty label", domain);
		return -EINVAL;
	}
	if (out[len - 1] == '-') {
		err_set(err, errlen, "bad domain \"%s\": label ends with '-'", domain);
		return -EINVAL;
	}
	out[len] = '\0';
	return (int)len;
}

static bool route_host_name_ok(const char *h)
{
	char tmp[ROUTE_NAME_MAX + 2];
	return h[0] != '.' && strlen(h) <= 253 && route_pattern_norm(h, tmp, NULL, 0) > 0;
}

int route_via_parse(const char *text, char *host, size_t hostlen, uint16_t *port, char *err,
		    size_t errlen)
{
	char buf[ROUTE_HOST_MAX + 16];
	const char *portp = NULL;
	size_t len = strlen(text);
	if (len == 0 || len >= sizeof(buf)) {
		err_set(err, errlen, "\"%.64s\" is not HOST[:PORT] or [ADDRESS][:PORT]", text);
		return -EINVAL;
	}
	memcpy(buf, text, len + 1);
	char *h = buf;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close) {
			err_set(err, errlen, "\"%s\": missing ']'", text);
			return -EINVAL;
		}
		*close = '\0';
		h = buf + 1;
		if (strncasecmp(h, "IPv6:", 5) == 0)
			h += 5;
		unsigned char a[16];
		if (inet_pton(AF_INET, h, a) != 1 && inet_pton(AF_INET6, h, a) != 1) {
			err_set(err, errlen, "\"%s\": \"%s\" is not an IPv4 or IPv6 address", text,
				h);
			return -EINVAL;
		}
		if (close[1] == ':')
			portp = close + 2;
		else if (close[1] != '\0') {
			err_set(err, errlen, "\"%s\": junk after ']'", text);
			return -EINVAL;
		}
	} else {
		char *colon = strchr(buf, ':');
		if (colon && strchr(colon + 1, ':')) {
			err_set(err, errlen, "\"%s\": write an IPv6 address in brackets: [%s]:25",
				text, text);
			return -EINVAL;
		}
		if (colon) {
			*colon = '\0';
			portp = colon + 1;
		}
		if (!route_host_name_ok(h)) {
			err_set(err, errlen, "\"%s\": \"%s\" is not a valid host name", text, h);
			return -EINVAL;
		}
	}
	unsigned long p = 0; /* none given: route_table_add picks 25, or 24 for LMTP */
	if (portp) {
		char *end;
		if (*portp < '0' || *portp > '9' || strlen(portp) > 5) {
			err_set(err, errlen, "\"%s\": bad port \"%s\"", text, portp);
			return -EINVAL;
		}
		p = strtoul(portp, &end, 10);
		if (*end || p == 0 || p > 65535) {
			err_set(err, errlen, "\"%s\": bad port \"%s\"", text, portp);
			return -EINVAL;
		}
	}
	if (strlen(h) >= hostlen) {
		err_set(err, errlen, "\"%.64s\": host too long", text);
		return -EINVAL;
	}
	strcpy(host, h);
	*port = (uint16_t)p;
	return 0;
}

static int route_user_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy, lowercase, validate and sort the users list into n. */
static int route_node_set_users(struct route_node *n, const struct route_spec *spec, char *err,
				size_t errlen)
{
	n->users = calloc(spec->nusers, sizeof(*n->users));
	if (!n->users)
		return -ENOMEM;
	for (unsigned i = 0; i < spec->nusers; i++) {
		const char *u = spec->users[i];
		size_t len = u ? strlen(u) : 0;
		if (len == 0 || len > ROUTE_USER_MAX) {
			err_set(err, errlen, "bad user \"%.80s\": %s", u ? u : "",
				len ? "longer than 64 octets" : "empty");
			return -EINVAL;
		}
		char *c = malloc(len + 1);
		if (!c)
			return -ENOMEM;
		n->users[n->nusers++] = c;
		for (size_t j = 0; j <= len; j++) {
			unsigned char ch = (unsigned char)u[j];
			if (j < len && (ch <= 0x20 || ch >= 0x7f || ch == '@' || ch == ',')) {
				err_set(err, errlen, "bad user \"%s\": byte 0x%02x not allowed", u,
					ch);
				return -EINVAL;
			}
			c[j] = ascii_lower((char)ch);
		}
	}
	qsort(n->users, n->nusers, sizeof(*n->users), route_user_cmp);
	for (unsigned i = 1; i < n->nusers; i++) {
		if (strcmp(n->users[i - 1], n->users[i]) == 0) {
			err_set(err, errlen, "duplicate user \"%s\"", n->users[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static int route_spec_check(const struct route_spec *spec, char *err, size_t errlen)
{
	switch (spec->action) {
	case ROUTE_LOCAL:
		if (spec->lmtp) {
			if (!spec->relay_host || !spec->relay_host[0] || spec->maildir_root) {
				err_set(err, errlen,
					"an LMTP local route needs a host and no maildir root");
				return -EINVAL;
			}
			if (strlen(spec->relay_host) >= ROUTE_HOST_MAX) {
				err_set(err, errlen, "LMTP host longer than %d octets",
					ROUTE_HOST_MAX - 1);
				return -EINVAL;
			}
			break;
		}
		if (!spec->maildir_root || !spec->maildir_root[0]) {
			err_set(err, errlen, "a local route needs a maildir root");
			return -EINVAL;
		}
		break;
	case ROUTE_RELAY_VIA:
		if (!spec->relay_host || !spec->relay_host[0]) {
			err_set(err, errlen, "a relay-via route needs a host");
			return -EINVAL;
		}
		if (strlen(spec->relay_host) >= ROUTE_HOST_MAX) {
			err_set(err, errlen, "relay host longer than %d octets",
				ROUTE_HOST_MAX - 1);
			return -EINVAL;
		}
		break;
	case ROUTE_RELAY:
	case ROUTE_REJECT:
		break;
	default:
		err_set(err, errlen, "bad action %d", (int)spec->action);
		return -EINVAL;
	}
	if (spec->action != ROUTE_LOCAL && (spec->nusers || spec->maildir_root)) {
		err_set(err, errlen, "%s given for a %s route", spec->nusers ? "users" : "maildir",
			route_action_str(spec->action));
		return -EINVAL;
	}
	if (spec->action != ROUTE_LOCAL && spec->lmtp) {
		err_set(err, errlen, "lmtp given for a %s route", route_action_str(spec->action));
		return -EINVAL;
	}
	if (spec->action != ROUTE_RELAY_VIA && !spec->lmtp && spec->relay_host) {
		err_set(err, errlen, "relay host given for a %s route",
			route_action_str(spec->action));
		return -EINVAL;
	}
	return 0;
}

int route_table_add(struct route_table *t, const char *domain, const struct route_spec *spec,
		    char *err, size_t errlen)
{
	char key[ROUTE_NAME_MAX + 2];
	if (!t || !domain || !spec) {
		err_set(err, errlen, "bad arguments");
		return -EINVAL;
	}
	if (strlen(domain) > ROUTE_NAME_MAX) {
		err_set(err, errlen, "bad domain \"%.64s...\": longer than 253 octets", domain);
		return -EINVAL;
	}
	int klen = route_pattern_norm(domain, key, err, errlen);
	if (klen < 0)
		return klen;
	int e = route_spec_check(spec, err, errlen);
	if (e)
		return e;

	size_t mlen =
	    spec->action == ROUTE_LOCAL && !spec->lmtp ? strlen(spec->maildir_root) + 1 : 0;
	size_t hlen = spec->relay_host ? strlen(spec->relay_host) + 1 : 0;
	struct route_node *n = calloc(1, sizeof(*n) + (size_t)klen + 1 + mlen + hlen);
	if (!n) {
		err_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n->keylen = (size_t)klen;
	memcpy(n->key, key, (size_t)klen + 1);
	n->hash = route_hash(n->key, n->keylen);
	char *p = n->key + klen + 1;
	n->r.action = spec->action;
	n->r.pattern = n->key;
	n->r.src_line = spec->src_line;
	n->src_name = t->cur_source;
	if (spec->action == ROUTE_LOCAL) {
		if (mlen) {
			memcpy(p, spec->maildir_root, mlen);
			n->r.maildir_root = p;
			p += mlen;
		}
		n->r.lmtp = spec->lmtp;
		n->r.catch_all = spec->nusers == 0;
		if (spec->nusers) {
			e = route_node_set_users(n, spec, err, errlen);
			if (e) {
				if (e == -ENOMEM)
					err_set(err, errlen, "out of memory");
				route_node_free(n);
				return e;
			}
		}
	}
	if (hlen) {
		const char *h = spec->relay_host;
		if (!route_host_name_ok(h)) {
			unsigned char a[16];
			if (inet_pton(AF_INET, h, a) != 1 && inet_pton(AF_INET6, h, a) != 1) {
				err_set(err, errlen, "bad relay host \"%s\"", h);
				route_node_free(n);
				return -EINVAL;
			}
		}
		memcpy(p, h, hlen);
		n->r.relay_host = p;
		n->r.relay_port = spec->relay_port ? spec->relay_port : spec->lmtp ? 24 : 25;
	}

	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct route_node **v = realloc(t->nodes, cap * sizeof(*v));
		if (!v) {
			route_node_free(n);
			err_set(err, errlen, "out of memory");
			return -ENOMEM;
		}
		t->nodes = v;
		t->cap = cap;
	}
	struct route_key k = {n->key, n->keylen};
	cds_lfht_node_init(&n->lf);
	struct cds_lfht_node *got = cds_lfht_add_unique(t->ht, n->hash, route_match, &k, &n->lf);
	if (got != &n->lf) {
		const struct route_node *o = caa_container_of(got, struct route_node, lf);
		if (o->src_name)
			err_set(err, errlen, "duplicate domain \"%s\" (first at %s:%d)", n->key,
				o->src_name, o->r.src_line);
		else
			err_set(err, errlen, "duplicate domain \"%s\" (first at line %d)", n->key,
				o->r.src_line);
		route_node_free(n);
		return -EEXIST;
	}
	t->nodes[t->n++] = n;
	/* XXX: if the rehash fails for lack of memory the table still works,
	 * with longer chains, and the next add tries again. */
	if (t->n >= t->nbuckets)
		(void)route_ht_grow(t);
	return 0;
}

const struct route *route_lookup(const struct route_table *t, const char *domain)
{
	/* buf[0] is a '.', so every parent key ".b.c" is a suffix of buf. */
	char buf[ROUTE_NAME_MAX + 2];
	if (!t || !domain)
		return NULL;
	size_t len = 0;
	char prev = '.'; /* rejects a leading dot */
	for (; domain[len]; len++) {
		if (len >= ROUTE_NAME_MAX + 1)
			return NULL;
		char c = ascii_lower(domain[len]);
		if (c == '.' && prev == '.')
			return NULL; /* empty label */
		buf[len + 1] = c;
		prev = c;
	}
	if (len > 0 && prev == '.')
		len--; /* one trailing dot */
	if (len == 0 || len > ROUTE_NAME_MAX)
		return NULL;
	buf[0] = '.';
	const char *name = buf + 1;
	const struct route_node *n = route_find(t, name, len);
	if (n)
		return &n->r;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.')
			continue;
		n = route_find(t, name + i, len - i);
		if (n)
			return &n->r;
	}
	return NULL;
}

bool route_local_user_exists(const struct route *r, const char *local_part)
{
	char buf[ROUTE_USER_MAX + 1];
	/* An empty local part is never a mailbox, not even for a catch-all. */
	if (!r || r->action != ROUTE_LOCAL || !local_part || !local_part[0])
		return false;
	if (r->catch_all)
		return true;
	size_t len = strlen(local_part);
	if (len > ROUTE_USER_MAX)
		return false;
	for (size_t i = 0; i <= len; i++)
		buf[i] = ascii_lower(local_part[i]);
	const struct route_node *n = caa_container_of(r, struct route_node, r);
	const char *key = buf;
	return bsearch(&key, n->users, n->nusers, sizeof(*n->users), route_user_cmp) != NULL;
}

void route_publish(struct route_table *t)
{
	struct route_table *old = rcu_xchg_pointer(&route_cur, t);
	if (!old || old == t)
		return;
	/* qsbr: if the caller is a registered online reader, synchronize_rcu
	 * takes it offline for the wait; it must hold no route pointers. */
	synchronize_rcu();
	route_table_free(old);
}

const struct route_table *route_current(void)
{
	return rcu_dereference(route_cur);
}

/* ---- routes file ---- */

#define ROUTE_LINE_MAX 8192

/* Split the next whitespace-separated token off *p (bounded by end). */
/*
 * Split line (NUL-terminated, modified in place) into at most max
 * whitespace-separated fields; a field starting with '#' starts a comment.
 * Returns the number of fields, or max + 1 when there are more.
 */
static unsigned route_fields(char *line, char **f, unsigned max)
{
	unsigned n = 0;
	char *p = line;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (*p == '\0' || *p == '#')
			return n;
		if (n == max)
			return max + 1;
		f[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

/* Parse and add one routes-file line.  Returns 0, 1 for a blank or comment
 * line, or -errno with msg set. */
static int route_line_add(struct route_table *t, const char *line, size_t linelen, int lineno,
			  char *msg, size_t msglen)
{
	char copy[ROUTE_LINE_MAX + 1];
	/* a users list has at most one name per two octets */
	const char *users[ROUTE_LINE_MAX / 2 + 1];
	char host[ROUTE_HOST_MAX];
	char *f[4];

	memcpy(copy, line, linelen);
	copy[linelen] = '\0';
	unsigned n = route_fields(copy, f, 4);
	if (n == 0)
		return 1;
	if (n < 2) {
		err_set(msg, msglen,
			"missing action after \"%s\" (local, relay, relay-via, reject)", f[0]);
		return -EINVAL;
	}
	struct route_spec spec = {.src_line = lineno};
	spec.action = route_action_parse(f[1]);
	unsigned want_min = 2, want_max = 2;
	switch (spec.action) {
	case ROUTE_LOCAL:
		want_min = 3;
		want_max = 4;
		break;
	case ROUTE_RELAY_VIA:
		want_min = want_max = 3;
		break;
	case ROUTE_RELAY:
	case ROUTE_REJECT:
		break;
	default:
		err_set(msg, msglen,
			"unknown action \"%s\" (want local, relay, relay-via or reject)", f[1]);
		return -EINVAL;
	}
	if (n < want_min) {
		err_set(msg, msglen, "%s: missing %s", f[1],
			spec.action == ROUTE_LOCAL ? "maildir root or lmtp:HOST[:PORT]"
						   : "HOST[:PORT]");
		return -EINVAL;
	}
	if (n > want_max) {
		/* find the first field past want_max again, in the original text */
		memcpy(copy, line, linelen);
		copy[linelen] = '\0';
		char *g[5];
		route_fields(copy, g, 5);
		err_set(msg, msglen, "%s: unexpected \"%.64s\"", f[1], g[want_max]);
		return -EINVAL;
	}
	if (spec.action == ROUTE_LOCAL) {
		if (strncmp(f[2], "lmtp:", 5) == 0) {
			char e[256];
			if (route_via_parse(f[2] + 5, host, sizeof(host), &spec.relay_port, e,
					    sizeof(e))) {
				err_set(msg, msglen, "local lmtp: %s", e);
				return -EINVAL;
			}
			spec.lmtp = true;
			spec.relay_host = host;
		} else {
			spec.maildir_root = f[2];
		}
		if (n == 4) {
			/* "alice,bob": split in place; an empty name is an error later */
			char *u = f[3];
			for (;;) {
				users[spec.nusers++] = u;
				char *comma = strchr(u, ',');
				if (!comma)
					break;
				*comma = '\0';
				u = comma + 1;
			}
			spec.users = users;
		}
	} else if (spec.action == ROUTE_RELAY_VIA) {
		char e[256];
		if (route_via_parse(f[2], host, sizeof(host), &spec.relay_port, e, sizeof(e))) {
			err_set(msg, msglen, "relay-via: %s", e);
			return -EINVAL;
		}
		spec.relay_host = host;
	}
	return route_table_add(t, f[0], &spec, msg, msglen);
}

int route_table_load_buffer(struct route_table *t, const char *name, const char *buf, size_t len,
			    char *err, size_t errlen)
{
	char msg[512];
	int lineno = 0;
	const char *p = buf, *end = buf + len;
	if (!t || (!buf && len)) {
		err_set(err, errlen, "%s: bad arguments", name);
		return -EINVAL;
	}
	if (route_table_set_source(t, name)) {
		err_set(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	while (p < end) {
		lineno++;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		size_t ll = (size_t)(le - p);
		if (ll > ROUTE_LINE_MAX) {
			err_set(err, errlen, "%s:%d: line longer than %d octets", name, lineno,
				ROUTE_LINE_MAX);
			return -EINVAL;
		}
		if (memchr(p, '\0', ll)) {
			err_set(err, errlen, "%s:%d: NUL byte", name, lineno);
			return -EINVAL;
		}
		int r = route_line_add(t, p, ll, lineno, msg, sizeof(msg));
		if (r < 0) {
			err_set(err, errlen, "%s:%d: %s", name, lineno, msg);
			return r == -EEXIST || r == -ENOMEM ? r : -EINVAL;
		}
		p = nl ? nl + 1 : end;
	}
	route_table_set_source(t, NULL);
	return 0;
}

int route_table_load_file(struct route_table *t, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		err_set(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		err_set(err, errlen, "%s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		err_set(err, errlen, "%s: out of memory", path);
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				close(fd);
				err_set(err, errlen, "%s: out of memory", path);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			err_set(err, errlen, "%s: read: %s", path, strerror(e));
			free(buf);
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (close(fd) != 0) {
		int e = errno;
		err_set(err, errlen, "%s: close: %s", path, strerror(e));
		free(buf);
		return -e;
	}
	int r = route_table_load_buffer(t, path, buf, len, err, errlen);
	free(buf);
	return r;
}
