/* Unit tests for dns_parse: hand-built answers, good and malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dns/dns_pvt.h"

/* ------------------------------------------------------ a packet builder */

struct pb {
	uint8_t b[4096];
	size_t n;
	size_t rdlen_at; /* where the open RR's rdlength goes */
};

static void pb_u8(struct pb *p, unsigned v)
{
	p->b[p->n++] = (uint8_t)v;
}

static void pb_u16(struct pb *p, unsigned v)
{
	pb_u8(p, v >> 8);
	pb_u8(p, v & 0xff);
}

static void pb_u32(struct pb *p, uint32_t v)
{
	pb_u16(p, v >> 16);
	pb_u16(p, v & 0xffff);
}

/* A dotted name in labels; "" is the root.  With ptr != 0 the name ends in a
 * compression pointer to ptr instead of the root label. */
static void pb_name_ptr(struct pb *p, const char *dotted, unsigned ptr)
{
	const char *s = dotted;

	while (*s) {
		size_t l = strcspn(s, ".");
		pb_u8(p, (unsigned)l);
		memcpy(p->b + p->n, s, l);
		p->n += l;
		s += l;
		if (*s == '.')
			s++;
	}
	if (ptr)
		pb_u16(p, 0xc000 | ptr);
	else
		pb_u8(p, 0);
}

static void pb_name(struct pb *p, const char *dotted)
{
	pb_name_ptr(p, dotted, 0);
}

/* Header (flags: QR set, RD+RA, with rcode) and the question at offset 12. */
static void pb_start(struct pb *p, unsigned rcode, unsigned an, unsigned ns, unsigned ar,
		     const char *qname, unsigned qtype)
{
	memset(p, 0, sizeof(*p));
	pb_u16(p, 0x1234);
	pb_u16(p, 0x8180 | rcode);
	pb_u16(p, 1);
	pb_u16(p, an);
	pb_u16(p, ns);
	pb_u16(p, ar);
	pb_name(p, qname);
	pb_u16(p, qtype);
	pb_u16(p, DNS_C_IN);
}

/* The RR header after its owner name; close it with pb_rr_end(). */
static void pb_rr(struct pb *p, unsigned type, uint32_t ttl)
{
	pb_u16(p, type);
	pb_u16(p, DNS_C_IN);
	pb_u32(p, ttl);
	p->rdlen_at = p->n;
	pb_u16(p, 0);
}

static void pb_rr_end(struct pb *p)
{
	size_t len = p->n - p->rdlen_at - 2;

	p->b[p->rdlen_at] = (uint8_t)(len >> 8);
	p->b[p->rdlen_at + 1] = (uint8_t)len;
}

static void pb_mx(struct pb *p, unsigned owner_ptr, uint32_t ttl, unsigned pref, const char *host,
		  unsigned host_ptr)
{
	pb_u16(p, 0xc000 | owner_ptr);
	pb_rr(p, DNS_T_MX, ttl);
	pb_u16(p, pref);
	pb_name_ptr(p, host, host_ptr);
	pb_rr_end(p);
}

static void pb_soa(struct pb *p, const char *owner, uint32_t ttl, uint32_t minimum)
{
	pb_name(p, owner);
	pb_rr(p, DNS_T_SOA, ttl);
	pb_name(p, "ns.test");
	pb_name(p, "hostmaster.test");
	pb_u32(p, 1);
	pb_u32(p, 3600);
	pb_u32(p, 600);
	pb_u32(p, 86400);
	pb_u32(p, minimum);
	pb_rr_end(p);
}

static struct dns_answer ans; /* large: not on the stack */

/* ------------------------------------------------------------- good ones */

/* MX answer; owners and exchanges compressed against the question. */
static void test_mx_compressed(void **state)
{
	struct pb p;

	(void)state;
	pb_start(&p, 0, 2, 0, 0, "Two-MX.test", DNS_T_MX);
	pb_mx(&p, 12, 300, 10, "MX1", 12);
	pb_mx(&p, 12, 200, 20, "mx2", 12);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_int_equal(ans.rcode, DNS_RCODE_NOERROR);
	assert_string_equal(ans.qname, "two-mx.test");
	assert_string_equal(ans.target, "two-mx.test");
	assert_int_equal(ans.kind, DNS_RR_DATA);
	assert_int_equal(ans.nmx, 2);
	assert_int_equal(ans.mx[0].pref, 10);
	assert_string_equal(ans.mx[0].host, "mx1.two-mx.test");
	assert_int_equal(ans.mx[1].pref, 20);
	assert_string_equal(ans.mx[1].host, "mx2.two-mx.test");
	assert_int_equal(ans.ttl, 200); /* the minimum */
}

/* CNAME chain from the qname to the MX owner; the CNAME's TTL counts. */
static void test_cname_chain_to_mx(void **state)
{
	struct pb p;
	size_t target_at;

	(void)state;
	pb_start(&p, 0, 3, 0, 0, "cname.test", DNS_T_MX);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_CNAME, 100);
	target_at = p.n;
	pb_name(&p, "target.cname-target.test");
	pb_rr_end(&p);
	/* An MX of an unrelated owner is not taken. */
	pb_name(&p, "other.test");
	pb_rr(&p, DNS_T_MX, 50);
	pb_u16(&p, 5);
	pb_name(&p, "wrong.test");
	pb_rr_end(&p);
	pb_mx(&p, (unsigned)target_at, 300, 10, "mx", (unsigned)target_at + 7);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_string_equal(ans.target, "target.cname-target.test");
	assert_int_equal(ans.ncname, 1);
	assert_int_equal(ans.nmx, 1);
	assert_string_equal(ans.mx[0].host, "mx.cname-target.test");
	assert_int_equal(ans.ttl, 100);
	assert_int_equal(ans.cname_ttl, 100);
}

/*
 * A CNAME and nothing of its target, no SOA (unbound's answer for a
 * local-data CNAME): NODATA at the target, with the chain's TTL, so the
 * resolver can ask the target itself.  With an SOA it is a real NODATA.
 */
static void test_cname_only(void **state)
{
	struct pb p;

	(void)state;
	pb_start(&p, 0, 1, 0, 0, "alias.test", DNS_T_A);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_CNAME, 90);
	pb_name(&p, "Real.Test");
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);
	assert_int_equal(ans.kind, DNS_RR_NODATA);
	assert_int_equal(ans.ncname, 1);
	assert_string_equal(ans.target, "real.test");
	assert_int_equal(ans.cname_ttl, 90);
	assert_false(ans.has_soa);
	assert_int_equal(ans.naddrs, 0);

	pb_start(&p, 0, 1, 1, 0, "alias.test", DNS_T_A);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_CNAME, 90);
	pb_name(&p, "real.test");
	pb_rr_end(&p);
	pb_soa(&p, "test", 30, 30);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);
	assert_int_equal(ans.kind, DNS_RR_NODATA);
	assert_true(ans.has_soa);
	assert_int_equal(ans.neg_ttl, 30);

	/* No CNAME at all: the chain is empty. */
	pb_start(&p, 0, 0, 0, 0, "plain.test", DNS_T_A);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);
	assert_int_equal(ans.ncname, 0);
	assert_int_equal(ans.cname_ttl, UINT32_MAX);
}

/* A CNAME loop, and a chain longer than DNS_CNAME_MAX, are errors. */
static void test_cname_loop(void **state)
{
	struct pb p;
	char a[32], b[32];

	(void)state;
	pb_start(&p, 0, 2, 0, 0, "a.test", DNS_T_A);
	pb_name(&p, "a.test");
	pb_rr(&p, DNS_T_CNAME, 60);
	pb_name(&p, "b.test");
	pb_rr_end(&p);
	pb_name(&p, "b.test");
	pb_rr(&p, DNS_T_CNAME, 60);
	pb_name(&p, "a.test");
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	pb_start(&p, 0, DNS_CNAME_MAX + 1, 0, 0, "c0.test", DNS_T_A);
	for (int i = 0; i <= DNS_CNAME_MAX; i++) {
		snprintf(a, sizeof(a), "c%d.test", i);
		snprintf(b, sizeof(b), "c%d.test", i + 1);
		pb_name(&p, a);
		pb_rr(&p, DNS_T_CNAME, 60);
		pb_name(&p, b);
		pb_rr_end(&p);
	}
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);
}

/* NXDOMAIN: negative TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308 5). */
static void test_nxdomain_soa(void **state)
{
	static const struct {
		uint32_t ttl, minimum, want;
	} cases[] = {{900, 300, 300}, {120, 300, 120}, {0x80000000u, 300, 0}, {60, 60, 60}};
	struct pb p;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pb_start(&p, DNS_RCODE_NXDOMAIN, 0, 1, 0, "nosuch.test", DNS_T_MX);
		pb_soa(&p, "test", cases[i].ttl, cases[i].minimum);
		assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
		assert_int_equal(ans.rcode, DNS_RCODE_NXDOMAIN);
		assert_int_equal(ans.kind, DNS_RR_NXDOMAIN);
		assert_true(ans.has_soa);
		if (ans.neg_ttl != cases[i].want)
			fail_msg("case %zu: got neg_ttl %u, want %u", i, ans.neg_ttl,
				 cases[i].want);
	}
	/* Without an SOA there is no negative TTL. */
	pb_start(&p, DNS_RCODE_NXDOMAIN, 0, 0, 0, "nosuch.test", DNS_T_MX);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_false(ans.has_soa);
}

/* NODATA: NOERROR, no record of the type, SOA in the authority section. */
static void test_nodata(void **state)
{
	struct pb p;

	(void)state;
	pb_start(&p, 0, 0, 1, 0, "amx.test", DNS_T_MX);
	pb_soa(&p, "amx.test", 3600, 600);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_int_equal(ans.kind, DNS_RR_NODATA);
	assert_int_equal(ans.nmx, 0);
	assert_int_equal(ans.neg_ttl, 600);

	/* An A record in the answer of an MX query is not MX data. */
	pb_start(&p, 0, 1, 0, 0, "amx.test", DNS_T_MX);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_A, 60);
	pb_u32(&p, 0x7f000006);
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_int_equal(ans.kind, DNS_RR_NODATA);
}

/* Null MX (RFC 7505): one MX, preference 0, exchange the root. */
static void test_null_mx(void **state)
{
	struct pb p;

	(void)state;
	pb_start(&p, 0, 1, 0, 0, "nullmx.test", DNS_T_MX);
	pb_mx(&p, 12, 3600, 0, "", 0);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_int_equal(ans.nmx, 1);
	assert_int_equal(ans.mx[0].pref, 0);
	assert_string_equal(ans.mx[0].host, "");
}

/* A and AAAA records; the other family, other owners and EDNS OPT ignored. */
static void test_a_aaaa(void **state)
{
	struct pb p;
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr v6;

	(void)state;
	pb_start(&p, 0, 3, 0, 1, "mx1.two-mx.test", DNS_T_A);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_A, 30);
	pb_u32(&p, 0x7f000002);
	pb_rr_end(&p);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_A, 40);
	pb_u32(&p, 0x7f000003);
	pb_rr_end(&p);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_AAAA, 5);
	for (int i = 0; i < 4; i++)
		pb_u32(&p, 1);
	pb_rr_end(&p);
	pb_u8(&p, 0); /* OPT: root owner, class = UDP size */
	pb_u16(&p, DNS_T_OPT);
	pb_u16(&p, 1232);
	pb_u32(&p, 0);
	pb_u16(&p, 0);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);
	assert_int_equal(ans.naddrs, 2);
	assert_int_equal(ans.addrs[0].family, AF_INET);
	inet_ntop(AF_INET, &ans.addrs[0].u.v4, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.2");
	inet_ntop(AF_INET, &ans.addrs[1].u.v4, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.3");
	assert_int_equal(ans.ttl, 30);

	pb_start(&p, 0, 1, 0, 0, "v6.test", DNS_T_AAAA);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_AAAA, 77);
	inet_pton(AF_INET6, "2001:db8::25", &v6);
	memcpy(p.b + p.n, &v6, 16);
	p.n += 16;
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_AAAA, &ans), 0);
	assert_int_equal(ans.naddrs, 1);
	assert_int_equal(ans.addrs[0].family, AF_INET6);
	inet_ntop(AF_INET6, &ans.addrs[0].u.v6, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::25");
	assert_int_equal(ans.ttl, 77);
}

/* SERVFAIL and REFUSED parse, with their rcode. */
static void test_error_rcodes(void **state)
{
	struct pb p;

	(void)state;
	pb_start(&p, DNS_RCODE_SERVFAIL, 0, 0, 0, "servfail.test", DNS_T_MX);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	assert_int_equal(ans.rcode, DNS_RCODE_SERVFAIL);
	pb_start(&p, DNS_RCODE_REFUSED, 0, 0, 0, "x.test", DNS_T_A);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);
	assert_int_equal(ans.rcode, DNS_RCODE_REFUSED);
}

/* ------------------------------------------------------------- bad ones */

/* A valid MX answer, for the malformations below to start from. */
static void good_mx(struct pb *p)
{
	pb_start(p, 0, 1, 0, 0, "two-mx.test", DNS_T_MX);
	pb_mx(p, 12, 300, 10, "mx1", 12);
}

static void test_malformed(void **state)
{
	struct pb p;
	char label[70];

	(void)state;
	/* Pointer loop: the answer owner points at itself. */
	pb_start(&p, 0, 1, 0, 0, "x.test", DNS_T_A);
	size_t at = p.n;
	pb_u16(&p, 0xc000 | (unsigned)at);
	pb_rr(&p, DNS_T_A, 1);
	pb_u32(&p, 1);
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	/* Two pointers pointing at each other. */
	pb_start(&p, 0, 1, 0, 0, "x.test", DNS_T_A);
	at = p.n;
	pb_u16(&p, 0xc000 | (unsigned)(at + 2));
	pb_u16(&p, 0xc000 | (unsigned)at);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	/* Pointer past the end. */
	good_mx(&p);
	p.b[p.n - 2] = 0xc0 | 0x0f; /* the exchange's pointer */
	p.b[p.n - 1] = 0xff;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);

	/* Label of 64 octets (length byte 0x40: the reserved 01 label type). */
	memset(label, 'a', 64);
	label[64] = '\0';
	pb_start(&p, 0, 0, 0, 0, label, DNS_T_A);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);
	/* 63 is fine. */
	label[63] = '\0';
	pb_start(&p, 0, 0, 0, 0, label, DNS_T_A);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), 0);

	/* Name over 255 octets: 4 labels of 63 + ".test" = 259 on the wire. */
	char longname[300];
	snprintf(longname, sizeof(longname), "%s.%s.%s.%s.test", label, label, label, label);
	pb_start(&p, 0, 0, 0, 0, longname, DNS_T_A);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);
	/* Also when the length builds up through a pointer. */
	pb_start(&p, 0, 1, 0, 0, longname + 64, DNS_T_A); /* 195 octets */
	pb_name_ptr(&p, label, 12);			  /* 64 + 195 */
	pb_rr(&p, DNS_T_A, 1);
	pb_u32(&p, 1);
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	/* Truncated RR: every cut of a valid packet is rejected. */
	good_mx(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), 0);
	for (size_t cut = 0; cut < p.n; cut++)
		if (dns_parse_answer(p.b, cut, DNS_T_MX, &ans) != -EBADMSG)
			fail_msg("cut at %zu of %zu parsed", cut, p.n);

	/* Count mismatch: more records claimed than present, and fewer. */
	good_mx(&p);
	p.b[7] = 2;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	p.b[7] = 0;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	p.b[11] = 1; /* an additional record that is not there */
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);

	/* rdlength past the end, and MX rdata whose name overruns it. */
	good_mx(&p);
	p.b[p.rdlen_at + 1] += 1;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	p.b[p.rdlen_at + 1] -= 1;
	p.n -= 1;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);

	/* A with 5 octets. */
	pb_start(&p, 0, 1, 0, 0, "x.test", DNS_T_A);
	pb_u16(&p, 0xc00c);
	pb_rr(&p, DNS_T_A, 1);
	pb_u32(&p, 1);
	pb_u8(&p, 1);
	pb_rr_end(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	/* SOA with a short fixed part. */
	pb_start(&p, DNS_RCODE_NXDOMAIN, 0, 1, 0, "x.test", DNS_T_A);
	pb_soa(&p, "test", 60, 60);
	p.b[p.rdlen_at + 1] -= 4;
	p.n -= 4;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);

	/* Not a response; opcode not QUERY; two questions; wrong qtype; TC. */
	good_mx(&p);
	p.b[2] &= 0x7f;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	p.b[2] |= 0x10;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	p.b[5] = 2;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EBADMSG);
	good_mx(&p);
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_A, &ans), -EBADMSG);
	good_mx(&p);
	p.b[2] |= 0x02;
	assert_int_equal(dns_parse_answer(p.b, p.n, DNS_T_MX, &ans), -EMSGSIZE);
}

/* Caller-given names: canonical form or -EINVAL. */
static void test_name_canon(void **state)
{
	static const struct {
		const char *in, *want; /* want NULL: -EINVAL */
	} cases[] = {
	    {"Example.TEST", "example.test"},
	    {"example.test.", "example.test"},
	    {"a-b_c.test", "a-b_c.test"},
	    {"localhost", "localhost"},
	    {"", NULL},
	    {".", NULL},
	    {"a..test", NULL},
	    {".a.test", NULL},
	    {"a.test..", NULL},
	    {"a b.test", NULL},
	    {"[127.0.0.1]", NULL},
	    {"a\"b.test", NULL},
	};
	char out[256], big[300];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dns_name_canon(cases[i].in, out);
		if (!cases[i].want) {
			if (rc != -EINVAL)
				fail_msg("'%s': got %d, want -EINVAL", cases[i].in, rc);
			continue;
		}
		if (rc != 0 || strcmp(out, cases[i].want) != 0)
			fail_msg("'%s': got %d '%s', want '%s'", cases[i].in, rc, out,
				 cases[i].want);
	}
	memset(big, 'a', 64);
	strcpy(big + 64, ".test");
	assert_int_equal(dns_name_canon(big, out), -EINVAL); /* label 64 */
	for (int i = 0; i < 254; i++)
		big[i] = i % 2 ? '.' : 'a';
	big[253] = 'a';
	big[254] = '\0';
	assert_int_equal(dns_name_canon(big, out), -EINVAL); /* 254 characters */
	big[253] = '\0';
	assert_int_equal(dns_name_canon(big, out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mx_compressed), cmocka_unit_test(test_cname_chain_to_mx),
	    cmocka_unit_test(test_cname_loop),	  cmocka_unit_test(test_nxdomain_soa),
	    cmocka_unit_test(test_nodata),	  cmocka_unit_test(test_null_mx),
	    cmocka_unit_test(test_a_aaaa),	  cmocka_unit_test(test_error_rcodes),
	    cmocka_unit_test(test_malformed),	  cmocka_unit_test(test_name_canon),
	    cmocka_unit_test(test_cname_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
