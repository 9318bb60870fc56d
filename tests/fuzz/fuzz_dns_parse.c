/*
 * libFuzzer harness for dns_parse, the reading of DNS answers that come off
 * the network (dns_parse_answer) and of names callers give (dns_name_canon).
 * The input is one answer packet, read as the answer to an MX, an A and an
 * AAAA query in turn (the types the resolver asks); at most one of the three
 * can match the packet's question.  Invariants, not only "no crash":
 *  - the result is 0, -EBADMSG or -EMSGSIZE, and -EMSGSIZE only with TC;
 *  - a parse that succeeds has the asked qtype, and every name it returns
 *    (qname, target, MX exchanges) is NUL-terminated text of at most 253
 *    characters, lowercase, without empty labels or a trailing dot, and
 *    already canonical for dns_name_canon() when that accepts it;
 *  - counts are within their arrays; A answers carry only AF_INET addresses,
 *    AAAA only AF_INET6, and only MX answers carry MX records;
 *  - NXDOMAIN and NODATA carry no records and TTL 0, DATA carries records;
 *    TTLs follow RFC 2181 8 (never above 2^31 - 1) and the DATA TTL is no
 *    more than the CNAME chain's;
 *  - parsing is a pure function: the same input gives the same answer.
 * The input is also fed to dns_name_canon() as a C string: accepted names
 * are canonical and a fixed point.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/dns_pvt.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "invariant failed: %s\n", what);
		abort();
	}
}

/* Text as dns_parse writes names: bounded, lowercase, clean labels. */
static void check_name(const char *name, bool may_be_root)
{
	size_t len = strnlen(name, 256);
	char canon[256];

	check(len < 256, "name NUL-terminated in its array");
	check(len <= 253, "name at most 253 characters");
	check(may_be_root || len > 0, "name not empty");
	for (size_t i = 0; i < len; i++) {
		check(!(name[i] >= 'A' && name[i] <= 'Z'), "name lowercase");
		check((unsigned char)name[i] > 0x20 && (unsigned char)name[i] < 0x7f,
		      "name printable");
		if (name[i] == '.')
			check(i > 0 && i + 1 < len && name[i + 1] != '.', "no empty label");
	}
	if (len > 0 && dns_name_canon(name, canon) == 0)
		check(strcmp(canon, name) == 0, "parsed name already canonical");
}

static void check_answer(const struct dns_answer *a, uint16_t qtype)
{
	check(a->qtype == qtype, "qtype is the one asked");
	check_name(a->qname, true);
	if (a->rcode != DNS_RCODE_NOERROR && a->rcode != DNS_RCODE_NXDOMAIN) {
		check(a->nmx == 0 && a->naddrs == 0, "error rcode carries no records");
		return;
	}
	check_name(a->target, true);
	check(a->ncname <= DNS_CNAME_MAX, "CNAME chain bounded");
	check(a->ncname > 0 || strcmp(a->target, a->qname) == 0, "no chain: target is qname");
	check(a->ncname > 0 || a->cname_ttl == UINT32_MAX, "no chain: no chain TTL");
	check(a->ncname == 0 || a->cname_ttl <= 0x7fffffffu, "chain TTL per RFC 2181 8");
	check(a->nmx <= DNS_PARSE_MAX_MX, "nmx bounded");
	check(a->naddrs <= DNS_PARSE_MAX_ADDRS, "naddrs bounded");
	check(qtype == DNS_T_MX || a->nmx == 0, "MX records only for MX");
	check(qtype != DNS_T_MX || a->naddrs == 0, "no addresses for MX");
	for (unsigned i = 0; i < a->naddrs; i++)
		check(a->addrs[i].family == (qtype == DNS_T_A ? AF_INET : AF_INET6),
		      "address family of the type");
	for (unsigned i = 0; i < a->nmx; i++)
		check_name(a->mx[i].host, true); /* "" is the null MX */
	if (a->has_soa)
		check(a->neg_ttl <= 0x7fffffffu, "negative TTL per RFC 2181 8");
	switch (a->kind) {
	case DNS_RR_DATA:
		check(a->rcode == DNS_RCODE_NOERROR, "DATA only with NOERROR");
		check(a->nmx + a->naddrs > 0, "DATA carries records");
		check(a->ttl <= 0x7fffffffu, "TTL per RFC 2181 8");
		check(a->ttl <= a->cname_ttl, "TTL no more than the chain's");
		break;
	case DNS_RR_NXDOMAIN:
		check(a->rcode == DNS_RCODE_NXDOMAIN, "NXDOMAIN only with RCODE 3");
		check(a->nmx + a->naddrs == 0 && a->ttl == 0, "NXDOMAIN carries nothing");
		break;
	case DNS_RR_NODATA:
		check(a->rcode == DNS_RCODE_NOERROR, "NODATA only with NOERROR");
		check(a->nmx + a->naddrs == 0 && a->ttl == 0, "NODATA carries nothing");
		break;
	default:
		check(0, "kind is one of DNS_RR_*");
	}
}

/* The meaningful part of an answer, for comparing two parses. */
static bool same_answer(const struct dns_answer *x, const struct dns_answer *y)
{
	if (x->rcode != y->rcode || x->qtype != y->qtype || strcmp(x->qname, y->qname) != 0)
		return false;
	if (x->rcode != DNS_RCODE_NOERROR && x->rcode != DNS_RCODE_NXDOMAIN)
		return true;
	if (strcmp(x->target, y->target) != 0 || x->ncname != y->ncname || x->kind != y->kind ||
	    x->ttl != y->ttl || x->has_soa != y->has_soa || x->nmx != y->nmx ||
	    x->naddrs != y->naddrs || x->cname_ttl != y->cname_ttl)
		return false;
	if (x->has_soa && x->neg_ttl != y->neg_ttl)
		return false;
	for (unsigned i = 0; i < x->nmx; i++)
		if (x->mx[i].pref != y->mx[i].pref || strcmp(x->mx[i].host, y->mx[i].host) != 0)
			return false;
	for (unsigned i = 0; i < x->naddrs; i++)
		if (x->addrs[i].family != y->addrs[i].family ||
		    memcmp(&x->addrs[i].u, &y->addrs[i].u,
			   x->addrs[i].family == AF_INET ? 4 : 16) != 0)
			return false;
	return true;
}

static void fuzz_canon(const uint8_t *data, size_t size)
{
	char in[300], out[256], again[256];
	size_t n = size < sizeof(in) - 1 ? size : sizeof(in) - 1;

	memcpy(in, data, n);
	in[n] = '\0';
	if (dns_name_canon(in, out) != 0)
		return;
	check_name(out, false);
	check(dns_name_canon(out, again) == 0 && strcmp(out, again) == 0, "canon is a fixed point");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t qtypes[] = {DNS_T_MX, DNS_T_A, DNS_T_AAAA};
	static struct dns_answer a, b; /* large: not on the stack */
	unsigned parsed = 0;

	for (size_t i = 0; i < sizeof(qtypes) / sizeof(qtypes[0]); i++) {
		int rc = dns_parse_answer(data, size, qtypes[i], &a);
		check(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE, "rc is 0, -EBADMSG, -EMSGSIZE");
		if (rc == -EMSGSIZE)
			check(size >= 12 && (data[2] & 0x02), "-EMSGSIZE only with TC");
		if (rc != 0)
			continue;
		parsed++;
		check_answer(&a, qtypes[i]);
		check(dns_parse_answer(data, size, qtypes[i], &b) == 0 && same_answer(&a, &b),
		      "same input, same answer");
	}
	check(parsed <= 1, "one question matches at most one qtype");
	fuzz_canon(data, size);
	return 0;
}
