/*
 * dns_parse: the reading of one DNS answer (RFC 1035 4.1) for the resolver.
 *
 * The whole packet is validated before anything is used: header, the one
 * question, every RR of every section (bounds, and the rdata of the types
 * we read), and the counts must account for every octet.  Names are read
 * with bounded compression pointers (RFC 1035 4.1.4), so a pointer loop or
 * a pointer past the end is an error, not a hang or an over-read.  Then the
 * CNAME chain is followed from the qname in the answer section and the
 * records of the queried type owned by the chain's end are taken.
 *
 * No allocation; the input is never read past len.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/dns_pvt.h"

#define HDR_LEN 12
#define FLAG_QR 0x8000
#define FLAG_TC 0x0200

/* One RR's place in the packet. */
struct rr_ref {
	size_t owner;  /* offset of the owner name */
	uint16_t type; /* DNS_T_* */
	uint16_t cls;  /* class (OPT: UDP size) */
	uint32_t ttl;  /* RFC 2181 8: a TTL with the top bit set is 0 */
	size_t rdata;  /* offset of the rdata */
	uint16_t rdlen;
};

/* The packet being read. */
struct pkt {
	const uint8_t *p;
	size_t len;
};

static int name_read(const struct pkt *k, size_t off, size_t *next, char out[256]);
static int rr_read(const struct pkt *k, size_t *pos, struct rr_ref *rr);
static int rdata_check(const struct pkt *k, const struct rr_ref *rr);
static int soa_neg_ttl(const struct pkt *k, const struct rr_ref *rr, uint32_t *ttl);
static int chain_follow(const struct pkt *k, const struct rr_ref *an, unsigned nan,
			struct dns_answer *out);
static void records_take(const struct pkt *k, const struct rr_ref *an, unsigned nan,
			 struct dns_answer *out);

static uint16_t get16(const struct pkt *k, size_t off)
{
	return (uint16_t)((k->p[off] << 8) | k->p[off + 1]);
}

static uint32_t get32(const struct pkt *k, size_t off)
{
	return ((uint32_t)k->p[off] << 24) | ((uint32_t)k->p[off + 1] << 16) |
	       ((uint32_t)k->p[off + 2] << 8) | k->p[off + 3];
}

/* RFC 2181 8: values with the most significant bit set are taken as zero. */
static uint32_t ttl_sane(uint32_t ttl)
{
	return (ttl & 0x80000000u) ? 0 : ttl;
}

/* A label octet in text: lowercase; anything that could not be in a host
 * name and would make the text ambiguous or unsafe to log becomes '?'. */
static char label_char(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return (char)(c - 'A' + 'a');
	if (c <= 0x20 || c >= 0x7f || c == '.' || c == '"' || c == '\\')
		return '?';
	return (char)c;
}

/*
 * Read the name at off into out (text, lowercase, no trailing dot, "" for
 * the root).  *next is where the name ends in place (after its first
 * pointer, if any).  The wire length is bounded by DNS_NAME_MAX, so the
 * text is at most 253 characters.
 */
static int name_read(const struct pkt *k, size_t off, size_t *next, char out[256])
{
	size_t pos = off, o = 0, wire = 0;
	unsigned hops = 0;
	bool jumped = false;

	for (;;) {
		if (pos >= k->len)
			return -EBADMSG;
		uint8_t c = k->p[pos];
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= k->len || ++hops > DNS_PTR_HOPS_MAX)
				return -EBADMSG;
			size_t to = ((size_t)(c & 0x3f) << 8) | k->p[pos + 1];
			if (!jumped)
				*next = pos + 2;
			jumped = true;
			if (to >= k->len)
				return -EBADMSG;
			pos = to;
			continue;
		}
		if (c & 0xc0) /* 01 and 10: extended and reserved label types */
			return -EBADMSG;
		wire += 1u + c;
		if (wire > DNS_NAME_MAX)
			return -EBADMSG;
		if (c == 0) {
			if (!jumped)
				*next = pos + 1;
			out[o] = '\0';
			return 0;
		}
		if (c > k->len - pos - 1)
			return -EBADMSG;
		if (o > 0)
			out[o++] = '.';
		for (size_t i = 0; i < c; i++)
			out[o++] = label_char(k->p[pos + 1 + i]);
		pos += 1u + c;
	}
}

/* Read the RR at *pos (bounds only) and move *pos past it. */
static int rr_read(const struct pkt *k, size_t *pos, struct rr_ref *rr)
{
	char name[256];
	size_t p;

	rr->owner = *pos;
	if (name_read(k, *pos, &p, name) < 0)
		return -EBADMSG;
	if (k->len - p < 10)
		return -EBADMSG;
	rr->type = get16(k, p);
	rr->cls = get16(k, p + 2);
	rr->ttl = ttl_sane(get32(k, p + 4));
	rr->rdlen = get16(k, p + 8);
	rr->rdata = p + 10;
	if (rr->rdlen > k->len - rr->rdata)
		return -EBADMSG;
	*pos = rr->rdata + rr->rdlen;
	return 0;
}

/* The rdata of a type we read must be exactly its shape. */
static int rdata_check(const struct pkt *k, const struct rr_ref *rr)
{
	size_t end = rr->rdata + rr->rdlen, next;
	char name[256];
	uint32_t ttl;

	if (rr->cls != DNS_C_IN)
		return 0;
	switch (rr->type) {
	case DNS_T_A:
		return rr->rdlen == 4 ? 0 : -EBADMSG;
	case DNS_T_AAAA:
		return rr->rdlen == 16 ? 0 : -EBADMSG;
	case DNS_T_CNAME:
	case DNS_T_NS:
		if (name_read(k, rr->rdata, &next, name) < 0 || next != end)
			return -EBADMSG;
		return 0;
	case DNS_T_MX:
		if (rr->rdlen < 3 || name_read(k, rr->rdata + 2, &next, name) < 0 || next != end)
			return -EBADMSG;
		return 0;
	case DNS_T_SOA:
		return soa_neg_ttl(k, rr, &ttl);
	default:
		return 0;
	}
}

/* RFC 2308 5: the negative TTL is the lesser of the SOA's TTL and MINIMUM. */
static int soa_neg_ttl(const struct pkt *k, const struct rr_ref *rr, uint32_t *ttl)
{
	size_t end = rr->rdata + rr->rdlen, p;
	char name[256];

	if (name_read(k, rr->rdata, &p, name) < 0 || p > end)
		return -EBADMSG;
	if (name_read(k, p, &p, name) < 0 || p > end)
		return -EBADMSG;
	if (end - p != 20)
		return -EBADMSG;
	uint32_t minimum = ttl_sane(get32(k, p + 16));
	*ttl = rr->ttl < minimum ? rr->ttl : minimum;
	return 0;
}

static bool owner_is(const struct pkt *k, const struct rr_ref *rr, const char *name)
{
	char owner[256];
	size_t next;

	return name_read(k, rr->owner, &next, owner) == 0 && strcmp(owner, name) == 0;
}

/* Follow CNAMEs from the qname (RFC 1034 3.6.2); out->target is the end. */
static int chain_follow(const struct pkt *k, const struct rr_ref *an, unsigned nan,
			struct dns_answer *out)
{
	memcpy(out->target, out->qname, sizeof(out->target));
	out->cname_ttl = UINT32_MAX;
	if (out->qtype == DNS_T_CNAME)
		return 0;
	for (;;) {
		const struct rr_ref *link = NULL;
		for (unsigned i = 0; i < nan && !link; i++)
			if (an[i].type == DNS_T_CNAME && an[i].cls == DNS_C_IN &&
			    owner_is(k, &an[i], out->target))
				link = &an[i];
		if (!link)
			return 0;
		if (out->ncname == DNS_CNAME_MAX) /* too long, or a loop */
			return -EBADMSG;
		size_t next;
		if (name_read(k, link->rdata, &next, out->target) < 0)
			return -EBADMSG;
		out->ncname++;
		if (link->ttl < out->ttl)
			out->ttl = link->ttl;
		if (link->ttl < out->cname_ttl)
			out->cname_ttl = link->ttl;
	}
}

static void record_take(const struct pkt *k, const struct rr_ref *rr, struct dns_answer *out)
{
	size_t next;

	switch (rr->type) {
	case DNS_T_MX:
		if (out->nmx == DNS_PARSE_MAX_MX)
			return;
		out->mx[out->nmx].pref = get16(k, rr->rdata);
		if (name_read(k, rr->rdata + 2, &next, out->mx[out->nmx].host) < 0)
			return; /* cannot happen: checked by rdata_check */
		out->nmx++;
		break;
	case DNS_T_A:
		if (out->naddrs == DNS_PARSE_MAX_ADDRS)
			return;
		out->addrs[out->naddrs].family = AF_INET;
		memcpy(&out->addrs[out->naddrs].u.v4, k->p + rr->rdata, 4);
		out->naddrs++;
		break;
	case DNS_T_AAAA:
		if (out->naddrs == DNS_PARSE_MAX_ADDRS)
			return;
		out->addrs[out->naddrs].family = AF_INET6;
		memcpy(&out->addrs[out->naddrs].u.v6, k->p + rr->rdata, 16);
		out->naddrs++;
		break;
	default:
		return;
	}
	if (rr->ttl < out->ttl)
		out->ttl = rr->ttl;
}

/* The records of the queried type owned by the chain's end. */
static void records_take(const struct pkt *k, const struct rr_ref *an, unsigned nan,
			 struct dns_answer *out)
{
	unsigned taken = 0;

	for (unsigned i = 0; i < nan; i++) {
		if (an[i].type != out->qtype || an[i].cls != DNS_C_IN ||
		    !owner_is(k, &an[i], out->target))
			continue;
		record_take(k, &an[i], out);
		taken++;
	}
	out->kind = taken ? DNS_RR_DATA : DNS_RR_NODATA;
	if (!taken)
		out->ttl = 0;
}

int dns_parse_answer(const uint8_t *pkt, size_t len, uint16_t qtype, struct dns_answer *out)
{
	struct pkt k = {pkt, len};
	struct rr_ref an[DNS_PARSE_MAX_RRS];
	unsigned nan = 0;
	size_t pos;

	memset(out, 0, offsetof(struct dns_answer, mx));
	out->nmx = 0;
	out->naddrs = 0;
	if (len < HDR_LEN)
		return -EBADMSG;
	uint16_t flags = get16(&k, 2);
	unsigned counts[3] = {get16(&k, 6), get16(&k, 8), get16(&k, 10)};
	if (!(flags & FLAG_QR) || ((flags >> 11) & 0xf) != 0 || get16(&k, 4) != 1)
		return -EBADMSG;
	if (flags & FLAG_TC)
		return -EMSGSIZE;
	out->rcode = flags & 0xf;

	if (name_read(&k, HDR_LEN, &pos, out->qname) < 0 || len - pos < 4)
		return -EBADMSG;
	out->qtype = get16(&k, pos);
	if (out->qtype != qtype || get16(&k, pos + 2) != DNS_C_IN)
		return -EBADMSG;
	pos += 4;

	for (unsigned sec = 0; sec < 3; sec++) {
		for (unsigned i = 0; i < counts[sec]; i++) {
			struct rr_ref rr;
			if (rr_read(&k, &pos, &rr) < 0)
				return -EBADMSG;
			if (sec < 2 && rdata_check(&k, &rr) < 0)
				return -EBADMSG;
			if (sec == 0 && nan < DNS_PARSE_MAX_RRS)
				an[nan++] = rr;
			if (sec == 1 && rr.type == DNS_T_SOA && rr.cls == DNS_C_IN &&
			    !out->has_soa) {
				soa_neg_ttl(&k, &rr, &out->neg_ttl);
				out->has_soa = true;
			}
		}
	}
	if (pos != len) /* the counts must account for every octet */
		return -EBADMSG;
	if (out->rcode != DNS_RCODE_NOERROR && out->rcode != DNS_RCODE_NXDOMAIN)
		return 0;

	out->ttl = UINT32_MAX;
	if (chain_follow(&k, an, nan, out) < 0)
		return -EBADMSG;
	if (out->rcode == DNS_RCODE_NXDOMAIN) {
		out->kind = DNS_RR_NXDOMAIN;
		out->ttl = 0;
		return 0;
	}
	records_take(&k, an, nan, out);
	return 0;
}

int dns_name_canon(const char *in, char out[256])
{
	size_t len = strlen(in), label = 0;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
			out[i] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_'))
			return -EINVAL;
		if (++label > DNS_LABEL_MAX)
			return -EINVAL;
		out[i] = c;
	}
	if (label == 0)
		return -EINVAL;
	out[len] = '\0';
	return 0;
}
