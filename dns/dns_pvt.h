/*
 * dns_pvt: the dns module's insides, shared by dns.c, its unit tests and
 * the fuzzer.  Never included from outside dns/ and tests/.
 *
 *  - dns_parse.c: the wire reading of one answer (RFC 1035 4.1), sans-I/O,
 *    no allocation, never reads past len.
 *  - dns_cache.c: (name, type) -> answer with an expiry, bounded.
 */
#ifndef SLUICE_DNS_PVT_H
#define SLUICE_DNS_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

/* RR types and classes we read (RFC 1035 3.2.2, RFC 3596). */
#define DNS_T_A 1
#define DNS_T_NS 2
#define DNS_T_CNAME 5
#define DNS_T_SOA 6
#define DNS_T_MX 15
#define DNS_T_AAAA 28
#define DNS_T_OPT 41
#define DNS_C_IN 1

/* RCODEs (RFC 1035 4.1.1). */
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_REFUSED 5

#define DNS_NAME_MAX 255       /* octets on the wire, RFC 1035 2.3.4 */
#define DNS_LABEL_MAX 63       /* RFC 1035 2.3.4 */
#define DNS_CNAME_MAX 8	       /* CNAME links followed from the qname */
#define DNS_PTR_HOPS_MAX 32    /* compression pointers followed in one name */
#define DNS_PARSE_MAX_MX 32    /* MX records kept from one answer */
#define DNS_PARSE_MAX_ADDRS 16 /* A / AAAA records kept from one answer */
#define DNS_PARSE_MAX_RRS 64   /* answer-section records considered for the chain */

/* What an NOERROR / NXDOMAIN answer says about (name, type). */
enum dns_rr_kind {
	DNS_RR_DATA,	 /* records of the type (after CNAMEs) */
	DNS_RR_NXDOMAIN, /* the name does not exist (RCODE 3) */
	DNS_RR_NODATA,	 /* the name exists, no records of the type (RFC 2308 2.2) */
};

/* One MX record. */
struct dns_mx {
	uint16_t pref;
	char host[256]; /* exchange, lowercase, no trailing dot; "" = root (null MX) */
};

/* One parsed answer. */
struct dns_answer {
	uint8_t rcode;	       /* DNS_RCODE_* */
	uint16_t qtype;	       /* the question's type */
	char qname[256];       /* the question's name, lowercase, no trailing dot */
	char target[256];      /* where the CNAME chain from qname ended (== qname if none) */
	unsigned ncname;       /* CNAME links followed */
	uint32_t cname_ttl;    /* minimum TTL of those links (UINT32_MAX when none), for
				  an answer that stops at a CNAME (see dns.c) */
	enum dns_rr_kind kind; /* for rcode NOERROR / NXDOMAIN */
	uint32_t ttl;	       /* DNS_RR_DATA: minimum TTL of the records used, CNAMEs too */
	bool has_soa;	       /* an SOA in the authority section */
	uint32_t neg_ttl;      /* with has_soa: min(SOA TTL, SOA MINIMUM), RFC 2308 5 */
	unsigned nmx;	       /* entries in mx[] (qtype MX) */
	struct dns_mx mx[DNS_PARSE_MAX_MX];
	unsigned naddrs; /* entries in addrs[] (qtype A / AAAA) */
	struct dns_addr addrs[DNS_PARSE_MAX_ADDRS];
};

/*
 * Read the answer pkt[0..len) to a query of type qtype.  Returns 0 with
 * *out filled, -EBADMSG when the packet is malformed (header, question,
 * names, compression, RR bounds, counts, rdata of A/AAAA/MX/CNAME/SOA),
 * is not a response, or its question is not one of qtype in class IN;
 * -EMSGSIZE when it is truncated (TC).  RCODEs other than NOERROR and
 * NXDOMAIN parse (0) with only rcode, qtype and qname meaningful.
 */
int dns_parse_answer(const uint8_t *pkt, size_t len, uint16_t qtype, struct dns_answer *out);

/*
 * Check a host or domain name given by a caller and write its canonical
 * form (lowercase, no trailing dot) to out (256 octets).  Letters, digits,
 * '-' and '_' only; labels 1..63; at most 253 characters.  0 or -EINVAL.
 */
int dns_name_canon(const char *in, char out[256]);

/* A cached answer for (name, type); valid until the next dns_cache_put(). */
struct dns_cache_entry {
	struct dns_cache_entry *hnext;	       /* hash chain */
	struct dns_cache_entry *older, *newer; /* insertion order, for eviction */
	uint64_t expires_ms;		       /* now_ms >= this: gone */
	uint16_t type;			       /* DNS_T_* */
	enum dns_rr_kind kind;		       /* DNS_RR_* */
	unsigned n;			       /* entries in mx[] or addrs[] (by type) */
	const struct dns_mx *mx;	       /* type MX */
	const struct dns_addr *addrs;	       /* type A / AAAA */
	char name[256];			       /* key, canonical */
};

struct dns_cache;

/* A cache of at most max entries (at least 1).  NULL on ENOMEM. */
struct dns_cache *dns_cache_new(unsigned max);
void dns_cache_free(struct dns_cache *c);

/* The live entry for (name, type) at now_ms, or NULL (an expired one is dropped). */
const struct dns_cache_entry *dns_cache_get(struct dns_cache *c, const char *name, uint16_t type,
					    uint64_t now_ms);

/*
 * Keep (name, type) -> kind with n items (struct dns_mx for MX, struct
 * dns_addr for A/AAAA) for ttl_s seconds from now_ms, replacing an older
 * entry.  When full: drop expired entries first, then the oldest.  Returns
 * 0, 1 when not kept (ttl_s 0), -EINVAL, -ENOMEM.
 */
int dns_cache_put(struct dns_cache *c, const char *name, uint16_t type, enum dns_rr_kind kind,
		  const void *items, unsigned n, uint32_t ttl_s, uint64_t now_ms);

/* Entries held (live or not yet swept). */
unsigned dns_cache_count(const struct dns_cache *c);

#endif
