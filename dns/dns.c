/*
 * dns: the resolver.  A lookup is one caller's question (the mail routing
 * of a domain, or the address of a host); it is answered by queries, one
 * per (name, type), each served from the cache or sent with c-ares.
 *
 *	dns_resolve_mx(d)  -> MX d -> A (and AAAA) of each exchange, in parallel
 *	                            -> no MX: A (and AAAA) of d (RFC 5321 5.1)
 *	dns_resolve_host(h) -> A (and AAAA) of h
 *
 * Re-entrancy: c-ares callbacks only park the raw answer on r->answered;
 * answers are read, cached and acted on (new queries) in settle(), outside
 * c-ares, and finished lookups wait on r->done until settle() runs their
 * callbacks, with no list iterator held across a callback.  So a callback
 * may start lookups, and a lookup that finishes inside an API call (cache
 * hit) has its callback run before that call returns.
 *
 * A CNAME without its target's records (and no SOA saying the target has
 * none: unbound answers its local-data CNAMEs so, and so may an
 * authoritative server whose target lies in another zone) restarts the query
 * at the target (RFC 1034 3.6.2, 5.3.3), at most DNS_CNAME_MAX links in all;
 * the result is cached under both names.
 *
 * Tries are ours, not c-ares's: c-ares doubles its timeout on each round of
 * tries, but cfg->timeout_ms is per try, so c-ares gets one try per server
 * and a timed-out query is sent again up to cfg->tries times.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dns/dns_pvt.h"

#define DEF_TIMEOUT_MS 5000
#define DEF_TRIES 2
#define DEF_CACHE_MAX 100000
#define DEF_NEG_TTL_MAX 3600
#define DEF_TTL_MAX 86400
#define EDNS_UDP_SIZE 1232 /* DNS flag day 2020: no IP fragmentation */
#define WHY_LEN 320

/* Per host: what each address family's query found. */
struct host_work {
	enum dns_status st4, st6; /* DNS_OK, DNS_NOT_FOUND or DNS_TEMPFAIL; st6 OK when unused */
	bool nx4;		  /* the A query said NXDOMAIN */
	unsigned n6;		  /* entries in v6[] */
	struct dns_addr v6[DNS_MAX_ADDRS];
};

/* One caller's question, alive from dns_resolve_*() until its callback returns. */
struct dns_lookup {
	struct dns_resolver *r;
	dns_cb *cb;
	void *arg;
	bool is_mx;		/* dns_resolve_mx (else dns_resolve_host) */
	bool implicit;		/* no MX: the domain's own addresses */
	bool decided;		/* status is final before any host query (MX step) */
	enum dns_status status; /* the result */
	unsigned pending;	/* queries not yet acted on, plus holds while starting them */
	char domain[256];	/* canonical */
	char why[WHY_LEN];
	char tmp_why[WHY_LEN]; /* the first host query's temporary failure */
	unsigned nhosts;
	struct dns_host hosts[DNS_MAX_HOSTS];
	struct host_work work[DNS_MAX_HOSTS];
	struct dns_lookup *next_done; /* on r->done */
};

/* One (name, type) sent to a server. */
struct dns_query {
	struct dns_lookup *l;
	int host;	     /* -1: the MX query of l; else l->hosts[host] */
	uint16_t type;	     /* DNS_T_MX, DNS_T_A, DNS_T_AAAA */
	unsigned tries_left; /* sends still allowed after a timeout */
	int status;	     /* ARES_* from the callback */
	unsigned char *abuf; /* copy of the raw answer, or NULL */
	size_t alen;
	struct dns_query *next; /* on r->answered */
	unsigned ncname;	/* CNAME links followed by restarts (see query_restart) */
	uint32_t cname_ttl;	/* their minimum TTL (UINT32_MAX when none) */
	char name[256];		/* asked now: orig, or the target of its CNAME chain */
	char orig[256];		/* asked by the lookup; the cache key of the result */
};

struct dns_resolver {
	ares_channel ch;
	int epfd; /* holds c-ares's sockets; dns_resolver_fd() */
	struct dns_cache *cache;
	struct dns_cfg cfg; /* defaults filled in; servers not kept */
	struct dns_stats stats;
	unsigned inflight; /* queries handed to c-ares, not yet called back */
	unsigned nlookups; /* live lookups */
	struct dns_query *answered, **answered_tail; /* called back, not yet acted on */
	struct dns_lookup *done, **done_tail;	     /* finished, callback not yet run */
	bool settling;				     /* inside settle() */
	bool shutting_down;			     /* inside dns_resolver_free() */
	uint64_t rng;				     /* xorshift64 state for shuffles */
};

static void query_start(struct dns_lookup *l, int host, uint16_t type, const char *name);
static void query_send(struct dns_resolver *r, struct dns_query *q);
static void answer_use(struct dns_lookup *l, int host, uint16_t type, enum dns_status st,
		       enum dns_rr_kind kind, const void *items, unsigned n, const char *why);
static void mx_use(struct dns_lookup *l, enum dns_status st, enum dns_rr_kind kind,
		   const struct dns_mx *mx, unsigned n, const char *why);
static void hosts_start(struct dns_lookup *l);
static void lookup_release(struct dns_lookup *l);
static void lookup_finish(struct dns_lookup *l);
static void settle(struct dns_resolver *r);

const char *dns_status_str(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_NULL_MX:
		return "null-mx";
	case DNS_NOT_FOUND:
		return "not-found";
	case DNS_TEMPFAIL:
		return "tempfail";
	}
	return "?";
}

static const char *type_str(uint16_t type)
{
	return type == DNS_T_MX ? "MX" : type == DNS_T_AAAA ? "AAAA" : "A";
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_next(struct dns_resolver *r)
{
	uint64_t x = r->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->rng = x;
	return x;
}

/* ------------------------------------------------------------ c-ares glue */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_lib_init(void)
{
	ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* c-ares opens, closes or changes interest in a socket: mirror it in epfd. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct epoll_event ev = {0};

	if (!readable && !writable) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	ev.events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
	ev.data.fd = fd;
	if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
		epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* c-ares is done with a query: park it; settle() acts on it outside c-ares. */
static void on_ares(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	struct dns_resolver *r = q->l->r;

	(void)timeouts;
	r->inflight--;
	q->status = status;
	if (status == ARES_SUCCESS && abuf && alen > 0) {
		q->abuf = malloc((size_t)alen);
		if (q->abuf) {
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = (size_t)alen;
		} else {
			q->status = ARES_ENOMEM;
		}
	}
	q->next = NULL;
	*r->answered_tail = q;
	r->answered_tail = &q->next;
}

static const char *ares_why(int status)
{
	switch (status) {
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ECONNREFUSED:
		/* XXX: c-ares 1.18 ends a query with this both when a server is
		 * unreachable and when every server answered SERVFAIL, NOTIMP or
		 * REFUSED (it tries the next server on those, so it keeps them from
		 * us unless ARES_FLAG_NOCHECKRESP, which would lose that failover). */
		return "SERVFAIL, REFUSED or no server reachable";
	case ARES_EDESTRUCTION:
	case ARES_ECANCELLED:
		return "resolver shut down";
	default:
		return ares_strerror(status);
	}
}

static void query_send(struct dns_resolver *r, struct dns_query *q)
{
	unsigned char *buf;
	int len;

	if (ares_create_query(q->name, DNS_C_IN, q->type, 0, 1, &buf, &len, EDNS_UDP_SIZE) !=
	    ARES_SUCCESS) {
		r->inflight++; /* on_ares takes it back */
		on_ares(q, ARES_ENOMEM, 0, NULL, 0);
		return;
	}
	r->stats.queries++;
	r->inflight++;
	ares_send(r->ch, buf, len, on_ares, q);
	ares_free_string(buf);
}

/*
 * a stops at a CNAME whose target's data it does not carry: ask for the
 * target instead.  Returns true when q was sent again, false when the chain
 * is too long (why says so).
 */
static bool query_restart(struct dns_resolver *r, struct dns_query *q, const struct dns_answer *a,
			  char *why, size_t whylen)
{
	if (q->ncname + a->ncname > DNS_CNAME_MAX) {
		snprintf(why, whylen, "CNAME chain too long looking up %s of %s", type_str(q->type),
			 q->orig);
		return false;
	}
	char target[256];
	if (dns_name_canon(a->target, target) < 0) { /* no query can name it */
		snprintf(why, whylen, "bad CNAME target looking up %s of %s", type_str(q->type),
			 q->orig);
		return false;
	}
	q->ncname += a->ncname;
	if (a->cname_ttl < q->cname_ttl)
		q->cname_ttl = a->cname_ttl;
	memcpy(q->name, target, sizeof(q->name));
	q->tries_left = r->cfg.tries - 1;
	free(q->abuf);
	q->abuf = NULL;
	q->alen = 0;
	query_send(r, q);
	return true;
}

/* Read one parked answer: cache it, and hand it to its lookup. */
static void query_answered(struct dns_resolver *r, struct dns_query *q)
{
	struct dns_lookup *l = q->l;
	struct dns_answer *a = NULL;
	char why[WHY_LEN];
	int rc;

	if (q->status == ARES_ETIMEOUT && q->tries_left > 0 && !r->shutting_down) {
		q->tries_left--;
		query_send(r, q);
		return;
	}
	if (q->status != ARES_SUCCESS) {
		snprintf(why, sizeof(why), "%s looking up %s of %s", ares_why(q->status),
			 type_str(q->type), q->orig);
		goto tempfail;
	}
	a = malloc(sizeof(*a));
	if (!a) {
		snprintf(why, sizeof(why), "out of memory looking up %s of %s", type_str(q->type),
			 q->name);
		goto tempfail;
	}
	rc = dns_parse_answer(q->abuf, q->alen, q->type, a);
	if (rc == 0 && strcmp(a->qname, q->name) != 0)
		rc = -EBADMSG;
	if (rc < 0) {
		snprintf(why, sizeof(why), "%s answer looking up %s of %s",
			 rc == -EMSGSIZE ? "truncated" : "malformed", type_str(q->type), q->name);
		goto tempfail;
	}
	if (a->rcode != DNS_RCODE_NOERROR && a->rcode != DNS_RCODE_NXDOMAIN) {
		snprintf(why, sizeof(why), "%s looking up %s of %s",
			 a->rcode == DNS_RCODE_SERVFAIL	 ? "SERVFAIL"
			 : a->rcode == DNS_RCODE_REFUSED ? "REFUSED"
							 : "error RCODE",
			 type_str(q->type), q->name);
		goto tempfail;
	}

	if (a->rcode == DNS_RCODE_NOERROR && a->kind == DNS_RR_NODATA && a->ncname > 0 &&
	    !a->has_soa && !r->shutting_down) {
		if (query_restart(r, q, a, why, sizeof(why))) {
			free(a);
			return; /* q is in flight again; l still waits for it */
		}
		goto tempfail;
	}

	const void *items = q->type == DNS_T_MX ? (const void *)a->mx : (const void *)a->addrs;
	unsigned n = q->type == DNS_T_MX ? a->nmx : a->naddrs;
	uint32_t ttl;
	if (a->kind == DNS_RR_DATA)
		ttl = a->ttl < r->cfg.ttl_max ? a->ttl : r->cfg.ttl_max;
	else if (a->has_soa) /* RFC 2308 5; without an SOA, not cached (RFC 2308 5) */
		ttl = a->neg_ttl < r->cfg.neg_ttl_max ? a->neg_ttl : r->cfg.neg_ttl_max;
	else
		ttl = 0;
	uint64_t now = now_ms();
	dns_cache_put(r->cache, q->name, q->type, a->kind, items, n, ttl, now);
	if (strcmp(q->name, q->orig) !=
	    0) /* restarted: the alias holds no longer than its CNAMEs */
		dns_cache_put(r->cache, q->orig, q->type, a->kind, items, n,
			      ttl < q->cname_ttl ? ttl : q->cname_ttl, now);
	answer_use(l, q->host, q->type, DNS_OK, a->kind, items, n, NULL);
	goto out;

tempfail:
	answer_use(l, q->host, q->type, DNS_TEMPFAIL, DNS_RR_NODATA, NULL, 0, why);
out:
	free(a);
	free(q->abuf);
	free(q);
	lookup_release(l);
}

/* ---------------------------------------------------------------- lookups */

/* Ask (name, type) for l: from the cache now, or from a server later. */
static void query_start(struct dns_lookup *l, int host, uint16_t type, const char *name)
{
	struct dns_resolver *r = l->r;
	const struct dns_cache_entry *e;
	struct dns_query *q;
	char why[WHY_LEN];

	if (r->shutting_down) {
		answer_use(l, host, type, DNS_TEMPFAIL, DNS_RR_NODATA, NULL, 0,
			   "resolver shut down");
		return;
	}
	e = dns_cache_get(r->cache, name, type, now_ms());
	if (e) {
		r->stats.cache_hits++;
		if (e->kind != DNS_RR_DATA)
			r->stats.negative_hits++;
		/* answer_use may start queries that evict e: copy it first. */
		union {
			struct dns_mx mx[DNS_PARSE_MAX_MX];
			struct dns_addr addrs[DNS_PARSE_MAX_ADDRS];
		} items;
		enum dns_rr_kind kind = e->kind;
		unsigned n = e->n;
		if (type == DNS_T_MX)
			memcpy(items.mx, e->mx, n * sizeof(*e->mx));
		else
			memcpy(items.addrs, e->addrs, n * sizeof(*e->addrs));
		answer_use(l, host, type, DNS_OK, kind, &items, n, NULL);
		return;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(why, sizeof(why), "out of memory looking up %s of %s", type_str(type),
			 name);
		answer_use(l, host, type, DNS_TEMPFAIL, DNS_RR_NODATA, NULL, 0, why);
		return;
	}
	q->l = l;
	q->host = host;
	q->type = type;
	q->tries_left = r->cfg.tries - 1;
	snprintf(q->name, sizeof(q->name), "%s", name);
	snprintf(q->orig, sizeof(q->orig), "%s", name);
	q->cname_ttl = UINT32_MAX;
	l->pending++;
	query_send(r, q);
}

/* One query's outcome (st DNS_OK: kind and items say what it found). */
static void answer_use(struct dns_lookup *l, int host, uint16_t type, enum dns_status st,
		       enum dns_rr_kind kind, const void *items, unsigned n, const char *why)
{
	if (host < 0) {
		mx_use(l, st, kind, items, n, why);
		return;
	}
	struct dns_host *h = &l->hosts[host];
	struct host_work *w = &l->work[host];
	enum dns_status fam = st;
	if (st == DNS_OK && (kind != DNS_RR_DATA || n == 0))
		fam = DNS_NOT_FOUND;
	if (st == DNS_TEMPFAIL && !l->tmp_why[0])
		snprintf(l->tmp_why, sizeof(l->tmp_why), "%s", why);
	const struct dns_addr *addrs = items;
	if (type == DNS_T_A) {
		w->st4 = fam;
		w->nx4 = st == DNS_OK && kind == DNS_RR_NXDOMAIN;
		for (unsigned i = 0; fam == DNS_OK && i < n && h->naddrs < DNS_MAX_ADDRS; i++)
			h->addrs[h->naddrs++] = addrs[i];
	} else {
		w->st6 = fam;
		for (unsigned i = 0; fam == DNS_OK && i < n && w->n6 < DNS_MAX_ADDRS; i++)
			w->v6[w->n6++] = addrs[i];
	}
}

static int mx_pref_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return (int)x->pref - (int)y->pref;
}

/* The MX query's outcome: decide, or name the hosts to look up. */
static void mx_use(struct dns_lookup *l, enum dns_status st, enum dns_rr_kind kind,
		   const struct dns_mx *mx, unsigned n, const char *why)
{
	struct dns_mx sorted[DNS_PARSE_MAX_MX];
	unsigned ns = 0, nnull = 0;

	if (st == DNS_TEMPFAIL) {
		l->decided = true;
		l->status = DNS_TEMPFAIL;
		snprintf(l->why, sizeof(l->why), "%s", why);
		return;
	}
	if (kind == DNS_RR_NXDOMAIN) {
		l->decided = true;
		l->status = DNS_NOT_FOUND;
		snprintf(l->why, sizeof(l->why), "NXDOMAIN for %s", l->domain);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (mx[i].host[0] == '\0')
			nnull++; /* RFC 7505 3: ignored when mixed with real MX records */
		else
			sorted[ns++] = mx[i];
	}
	if (ns == 0 && nnull > 0) {
		l->decided = true;
		l->status = DNS_NULL_MX;
		snprintf(l->why, sizeof(l->why), "null MX (RFC 7505)");
		return;
	}
	if (ns == 0) { /* NODATA: RFC 5321 5.1 implicit MX */
		l->implicit = true;
		l->nhosts = 1;
		snprintf(l->hosts[0].name, sizeof(l->hosts[0].name), "%s", l->domain);
		hosts_start(l);
		return;
	}
	/* Shuffle, then a stable sort: random among equal preferences, also for
	 * which ones are kept when there are more than DNS_MAX_HOSTS. */
	for (unsigned i = ns - 1; i > 0; i--) {
		unsigned j = (unsigned)(rng_next(l->r) % (i + 1));
		struct dns_mx t = sorted[i];
		sorted[i] = sorted[j];
		sorted[j] = t;
	}
	for (unsigned i = 1; i < ns; i++) /* insertion sort: stable */
		for (unsigned j = i; j > 0 && mx_pref_cmp(&sorted[j - 1], &sorted[j]) > 0; j--) {
			struct dns_mx t = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	for (unsigned i = 0; i < ns && l->nhosts < DNS_MAX_HOSTS; i++) {
		bool dup = false;
		for (unsigned k = 0; k < l->nhosts && !dup; k++)
			dup = strcmp(l->hosts[k].name, sorted[i].host) == 0;
		if (dup)
			continue;
		struct dns_host *h = &l->hosts[l->nhosts++];
		snprintf(h->name, sizeof(h->name), "%s", sorted[i].host);
		h->pref = sorted[i].pref;
	}
	hosts_start(l);
}

/* A (and AAAA) of every host, in parallel. */
static void hosts_start(struct dns_lookup *l)
{
	l->pending++; /* hold: cache hits must not finish l halfway through */
	for (unsigned i = 0; i < l->nhosts; i++) {
		struct dns_host *h = &l->hosts[i];
		struct host_work *w = &l->work[i];
		char canon[256];

		w->st4 = w->st6 = DNS_OK;
		if (dns_name_canon(h->name, canon) < 0) { /* an exchange no query can name */
			w->st4 = DNS_NOT_FOUND;
			continue;
		}
		query_start(l, (int)i, DNS_T_A, canon);
		if (l->r->cfg.ipv6)
			query_start(l, (int)i, DNS_T_AAAA, canon);
	}
	lookup_release(l);
}

static void lookup_release(struct dns_lookup *l)
{
	if (--l->pending == 0)
		lookup_finish(l);
}

/* Random order among hosts of equal preference (RFC 5321 5.1), on every result. */
static void hosts_shuffle(struct dns_lookup *l)
{
	for (unsigned lo = 0, hi; lo < l->nhosts; lo = hi) {
		for (hi = lo + 1; hi < l->nhosts && l->hosts[hi].pref == l->hosts[lo].pref; hi++)
			;
		for (unsigned i = hi - 1; i > lo; i--) {
			unsigned j = lo + (unsigned)(rng_next(l->r) % (i - lo + 1));
			struct dns_host t = l->hosts[i];
			l->hosts[i] = l->hosts[j];
			l->hosts[j] = t;
		}
	}
}

/* All queries are in: the result, then onto r->done for its callback. */
static void lookup_finish(struct dns_lookup *l)
{
	struct dns_resolver *r = l->r;
	bool any_ok = false, any_tmp = false;

	if (l->decided) {
		l->nhosts = 0;
		goto done;
	}
	for (unsigned i = 0; i < l->nhosts; i++) {
		struct dns_host *h = &l->hosts[i];
		struct host_work *w = &l->work[i];
		for (unsigned k = 0; k < w->n6 && h->naddrs < DNS_MAX_ADDRS; k++)
			h->addrs[h->naddrs++] = w->v6[k];
		if (h->naddrs > 0)
			h->status = DNS_OK;
		else if (w->st4 == DNS_TEMPFAIL || w->st6 == DNS_TEMPFAIL)
			h->status = DNS_TEMPFAIL;
		else
			h->status = DNS_NOT_FOUND;
		any_ok |= h->status == DNS_OK;
		any_tmp |= h->status == DNS_TEMPFAIL;
	}
	if (any_ok) {
		l->status = DNS_OK;
		if (!l->is_mx)
			snprintf(l->why, sizeof(l->why), "address of %s", l->domain);
		else if (l->implicit)
			snprintf(l->why, sizeof(l->why), "implicit MX (address of %s)", l->domain);
		else
			snprintf(l->why, sizeof(l->why), "MX of %s", l->domain);
	} else if (any_tmp) {
		l->status = DNS_TEMPFAIL;
		snprintf(l->why, sizeof(l->why), "%s", l->tmp_why);
	} else {
		l->status = DNS_NOT_FOUND;
		if (l->implicit)
			snprintf(l->why, sizeof(l->why), "no MX and no address for %s", l->domain);
		else if (l->is_mx)
			snprintf(l->why, sizeof(l->why), "no address for any MX host of %s",
				 l->domain);
		else if (l->work[0].nx4)
			snprintf(l->why, sizeof(l->why), "NXDOMAIN for %s", l->domain);
		else
			snprintf(l->why, sizeof(l->why), "no address for %s", l->domain);
	}
	hosts_shuffle(l);
done:
	if (l->status == DNS_TEMPFAIL)
		r->stats.tempfails++;
	l->next_done = NULL;
	*r->done_tail = l;
	r->done_tail = &l->next_done;
}

/* Act on parked answers and run finished callbacks until nothing is left. */
static void settle(struct dns_resolver *r)
{
	if (r->settling)
		return; /* the outer settle() picks up whatever this call queued */
	r->settling = true;
	for (;;) {
		if (r->answered) {
			struct dns_query *q = r->answered;
			r->answered = q->next;
			if (!r->answered)
				r->answered_tail = &r->answered;
			query_answered(r, q);
		} else if (r->done) {
			struct dns_lookup *l = r->done;
			r->done = l->next_done;
			if (!r->done)
				r->done_tail = &r->done;
			struct dns_result res = {
			    .status = l->status,
			    .implicit_mx = l->implicit,
			    .why = l->why,
			    .nhosts = l->nhosts,
			    .hosts = l->hosts,
			};
			l->cb(l->arg, &res);
			r->nlookups--;
			free(l);
		} else {
			break;
		}
	}
	r->settling = false;
}

static struct dns_lookup *lookup_new(struct dns_resolver *r, const char *name, dns_cb *cb,
				     void *arg, bool is_mx)
{
	struct dns_lookup *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->r = r;
	l->cb = cb;
	l->arg = arg;
	l->is_mx = is_mx;
	snprintf(l->domain, sizeof(l->domain), "%s", name);
	r->nlookups++;
	return l;
}

int dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_cb *cb, void *arg)
{
	char canon[256];
	struct dns_lookup *l;

	if (!domain || !cb || dns_name_canon(domain, canon) < 0)
		return -EINVAL;
	if (r->shutting_down)
		return -ESHUTDOWN;
	l = lookup_new(r, canon, cb, arg, true);
	if (!l)
		return -ENOMEM;
	l->pending = 1;
	query_start(l, -1, DNS_T_MX, canon);
	lookup_release(l);
	settle(r);
	return 0;
}

int dns_resolve_host(struct dns_resolver *r, const char *name, dns_cb *cb, void *arg)
{
	struct dns_addr a = {0};
	char canon[256];
	struct dns_lookup *l;

	if (!name || !cb)
		return -EINVAL;
	if (inet_pton(AF_INET, name, &a.u.v4) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, name, &a.u.v6) == 1)
		a.family = AF_INET6;
	else if (dns_name_canon(name, canon) < 0)
		return -EINVAL;
	if (r->shutting_down)
		return -ESHUTDOWN;
	l = lookup_new(r, a.family ? name : canon, cb, arg, false);
	if (!l)
		return -ENOMEM;
	l->nhosts = 1;
	snprintf(l->hosts[0].name, sizeof(l->hosts[0].name), "%s", l->domain);
	l->pending = 1;
	if (a.family) { /* an address literal is its own answer */
		l->hosts[0].naddrs = 1;
		l->hosts[0].addrs[0] = a;
		l->work[0].st4 = l->work[0].st6 = DNS_OK;
	} else {
		hosts_start(l);
	}
	lookup_release(l);
	settle(r);
	return 0;
}

/* --------------------------------------------------------------- resolver */

struct dns_resolver *dns_resolver_new(const struct dns_cfg *cfg, char *err, size_t errlen)
{
	struct dns_resolver *r = calloc(1, sizeof(*r));
	struct ares_options o = {0};
	int rc;

	if (!r) {
		snprintf(err, errlen, "dns: out of memory");
		return NULL;
	}
	r->epfd = -1;
	r->cfg = *cfg;
	r->cfg.servers = NULL;
	r->cfg.timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEF_TIMEOUT_MS;
	r->cfg.tries = cfg->tries ? cfg->tries : DEF_TRIES;
	r->cfg.cache_max = cfg->cache_max ? cfg->cache_max : DEF_CACHE_MAX;
	r->cfg.neg_ttl_max = cfg->neg_ttl_max ? cfg->neg_ttl_max : DEF_NEG_TTL_MAX;
	r->cfg.ttl_max = cfg->ttl_max ? cfg->ttl_max : DEF_TTL_MAX;
	r->answered_tail = &r->answered;
	r->done_tail = &r->done;
	if (getrandom(&r->rng, sizeof(r->rng), GRND_NONBLOCK) != sizeof(r->rng))
		r->rng = now_ms() ^ (uint64_t)(uintptr_t)r;
	r->rng |= 1; /* xorshift must not start at 0 */

	pthread_once(&ares_once, ares_lib_init);
	if (ares_init_rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: c-ares init: %s", ares_strerror(ares_init_rc));
		goto fail;
	}
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->cache = dns_cache_new(r->cfg.cache_max);
	if (r->epfd < 0 || !r->cache) {
		snprintf(err, errlen, "dns: %s", strerror(r->epfd < 0 ? errno : ENOMEM));
		goto fail;
	}
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	o.timeout = (int)r->cfg.timeout_ms;
	o.tries = 1; /* see the top of the file */
	o.ednspsz = EDNS_UDP_SIZE;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = r;
	rc = ares_init_options(&r->ch, &o,
			       ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
				   ARES_OPT_EDNSPSZ | ARES_OPT_SOCK_STATE_CB);
	if (rc != ARES_SUCCESS) {
		r->ch = NULL;
		snprintf(err, errlen, "dns: c-ares init: %s", ares_strerror(rc));
		goto fail;
	}
	if (cfg->servers && cfg->servers[0]) {
		rc = ares_set_servers_ports_csv(r->ch, cfg->servers);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "dns: bad server list '%s': %s", cfg->servers,
				 ares_strerror(rc));
			goto fail;
		}
	}
	return r;
fail:
	if (r->ch)
		ares_destroy(r->ch);
	dns_cache_free(r->cache);
	if (r->epfd >= 0)
		close(r->epfd);
	free(r);
	return NULL;
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (!r)
		return;
	r->shutting_down = true;
	/* Every outstanding query is called back with ARES_EDESTRUCTION. */
	ares_destroy(r->ch);
	r->ch = NULL;
	settle(r);
	dns_cache_free(r->cache);
	close(r->epfd);
	free(r);
}

int dns_resolver_fd(const struct dns_resolver *r)
{
	return r->epfd;
}

int dns_resolver_timeout_ms(const struct dns_resolver *r)
{
	struct timeval tv, *tvp;

	if (r->answered || r->done)
		return 0;
	if (r->inflight == 0)
		return -1;
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (!tvp)
		return -1;
	return (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
}

void dns_resolver_process(struct dns_resolver *r)
{
	struct epoll_event ev[16];
	int n = epoll_wait(r->epfd, ev, 16, 0);

	for (int i = 0; i < n; i++) {
		ares_socket_t fd = ev[i].data.fd;
		bool rd = ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP);
		bool wr = ev[i].events & EPOLLOUT;
		ares_process_fd(r->ch, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
	}
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
	settle(r);
}

void dns_resolver_get_stats(const struct dns_resolver *r, struct dns_stats *out)
{
	*out = r->stats;
}
