/*
 * dns: mail routing by DNS for the delivery side.  An asynchronous resolver
 * of MX, A and AAAA on c-ares, with its own reading of the answers and a TTL
 * cache (positive and negative).
 *
 * Owns: what a domain's mail routing is (RFC 5321 5.1: MX sorted by
 * preference with random order among equal preferences, else the implicit
 * MX of the domain's own A/AAAA; RFC 7505 null MX), the mapping of answers
 * to permanent and temporary failures, and how long answers are kept
 * (RFC 1035 TTLs capped, RFC 2308 negative caching, RFC 2181 8 TTLs).
 * c-ares only sends queries and receives the raw answers; dns_parse.c reads
 * them (RFC 1035 4.1, compression 4.1.4), so TTLs are known.
 *
 * Thread context: one resolver per thread, no locking.  Everything happens
 * inside dns_resolve_*() and dns_resolver_process(); callbacks run there,
 * never from another thread, and may start new lookups.
 *
 * Security: answers are the network's.  Malformed or truncated packets are
 * a temporary failure, never a crash (the parser is fuzzed); names are
 * lowercased and bounded (255 octets, labels 63); a CNAME chain is followed
 * at most DNS_CNAME_MAX links.
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_status {
	DNS_OK = 0,    /* hosts[] in the order to try */
	DNS_NULL_MX,   /* RFC 7505 null MX: the domain accepts no mail (556 5.1.10) */
	DNS_NOT_FOUND, /* NXDOMAIN, or no MX and no A/AAAA, or no MX host has an address:
			  permanent (5.1.2 / 5.4.4) */
	DNS_TEMPFAIL,  /* SERVFAIL, timeout, REFUSED, network error, shutdown: try again
			  later (4.4.3) */
};

/* "ok", "null-mx", "not-found", "tempfail" (for logs). */
const char *dns_status_str(enum dns_status s);

/* One address of a host. */
struct dns_addr {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
};

#define DNS_MAX_HOSTS 10 /* MX hosts kept per domain, lowest preference first */
#define DNS_MAX_ADDRS 8	 /* addresses kept per host */

/* One host to try. */
struct dns_host {
	char name[256];	 /* MX exchange (or the domain itself when implicit), lowercase, no
			    trailing dot */
	uint16_t pref;	 /* MX preference; 0 when implicit */
	unsigned naddrs; /* entries used in addrs[] */
	struct dns_addr addrs[DNS_MAX_ADDRS]; /* IPv4 first, then IPv6 */
	enum dns_status status;		      /* this host's own lookup: DNS_OK if naddrs > 0 */
};

/* What a lookup found. */
struct dns_result {
	enum dns_status status;
	bool implicit_mx;	      /* no MX records: the domain's own A/AAAA (RFC 5321 5.1) */
	const char *why;	      /* short human text for logs and notices, e.g. "NXDOMAIN for
					 nosuch.test"; valid only during the callback */
	unsigned nhosts;	      /* entries in hosts[] */
	const struct dns_host *hosts; /* valid only during the callback */
};

/* Called once per lookup with its result; the result is the callee's to read only. */
typedef void dns_cb(void *arg, const struct dns_result *r);

/* Resolver settings; 0 / NULL means the default named on each field. */
struct dns_cfg {
	const char *servers;  /* "127.0.0.1:5353,[::1]:53" (c-ares csv); NULL or "" =
				 /etc/resolv.conf */
	unsigned timeout_ms;  /* per try and server (default 5000 when 0) */
	unsigned tries;	      /* default 2 when 0 */
	unsigned cache_max;   /* entries (default 100000 when 0) */
	unsigned neg_ttl_max; /* cap on negative caching, seconds (default 3600 when 0; RFC
				 2308) */
	unsigned ttl_max;     /* cap on positive TTLs, seconds (default 86400 when 0) */
	bool ipv6;	      /* also look up AAAA (default false: IPv4 only) */
};

struct dns_resolver;

/*
 * Make a resolver.  Returns it, or NULL with a message in err (bad server
 * list, c-ares or memory failure).  The cfg strings are copied.
 */
struct dns_resolver *dns_resolver_new(const struct dns_cfg *cfg, char *err, size_t errlen);

/*
 * Free r.  Pending lookups get their callback with DNS_TEMPFAIL ("resolver
 * shut down") before this returns; lookups started from those callbacks
 * fail with -ESHUTDOWN.  NULL is a no-op.
 */
void dns_resolver_free(struct dns_resolver *r);

/*
 * Mail routing for a domain: MX (sorted by preference, random order among
 * equal preferences, shuffled afresh on every result including cache hits),
 * each host's A (and AAAA with cfg->ipv6); no MX -> implicit A/AAAA of the
 * domain; null MX -> DNS_NULL_MX.  A trailing dot is accepted.  cb may run
 * before this returns (cache hit).  Returns 0 (cb will be called exactly
 * once), -EINVAL for a bad domain name, -ENOMEM, -ESHUTDOWN while the
 * resolver is being freed; on any error cb is NOT called.
 */
int dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_cb *cb, void *arg);

/*
 * A/AAAA of one host name (a smart host): one dns_host with pref 0.  An
 * IPv4 or IPv6 address literal is returned as is.  Same callback and
 * return rules as dns_resolve_mx().
 */
int dns_resolve_host(struct dns_resolver *r, const char *name, dns_cb *cb, void *arg);

/*
 * One pollable fd (an internal epoll fd holding c-ares's sockets): readable
 * when dns_resolver_process() has I/O to do.  Stable for the resolver's
 * life; the resolver owns it (do not close).
 */
int dns_resolver_fd(const struct dns_resolver *r);

/* Milliseconds until dns_resolver_process() must run for timeouts, -1 if nothing pending. */
int dns_resolver_timeout_ms(const struct dns_resolver *r);

/* Do I/O and timeouts; run completed callbacks.  Never blocks. */
void dns_resolver_process(struct dns_resolver *r);

/* Counters since dns_resolver_new(). */
struct dns_stats {
	uint64_t queries;	/* queries sent to a server (each try counts once) */
	uint64_t cache_hits;	/* (name, type) answers served from the cache */
	uint64_t negative_hits; /* of those, cached NXDOMAIN / NODATA */
	uint64_t tempfails;	/* lookups whose result was DNS_TEMPFAIL */
};
void dns_resolver_get_stats(const struct dns_resolver *r, struct dns_stats *out);

#endif
