/* spool_record: the record and journal entry formats (see spool_pvt.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "queue/spool_pvt.h"

static size_t str_size(const char *s)
{
	return 2 + (s ? strlen(s) : 0);
}

static bool str_ok(const char *s)
{
	return !s || strlen(s) <= SPOOL_STR_MAX;
}

int spool_record_hdr_len(const struct envelope *env, size_t *len)
{
	if (!env || env->nrcpts == 0 || !env->rcpts)
		return -EINVAL;
	if (!str_ok(env->sender) || !str_ok(env->envid) || !str_ok(env->helo) ||
	    !str_ok(env->client_addr))
		return -E2BIG;
	size_t n = SPOOL_REC_FIXED + str_size(env->sender) + str_size(env->envid) +
		   str_size(env->helo) + str_size(env->client_addr);
	for (uint32_t i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];
		if (!r->addr)
			return -EINVAL;
		if (!str_ok(r->addr) || !str_ok(r->orcpt))
			return -E2BIG;
		n += 1 + str_size(r->addr) + str_size(r->orcpt);
	}
	if (n > UINT32_MAX)
		return -E2BIG;
	*len = n;
	return 0;
}

static uint8_t *str_put(uint8_t *p, const char *s)
{
	if (!s) {
		spool_put16(p, SPOOL_STR_NULL);
		return p + 2;
	}
	size_t n = strlen(s);
	spool_put16(p, (uint16_t)n);
	memcpy(p + 2, s, n);
	return p + 2 + n;
}

void spool_record_build(const struct envelope *env, const void *body, size_t body_len, uint8_t *hdr,
			size_t hdr_len)
{
	uint8_t *p = hdr;

	spool_put32(p, SPOOL_MAGIC);
	spool_put32(p + 4, (uint32_t)(hdr_len + body_len));
	p[12] = SPOOL_REC_VERSION;
	p[13] = env->ret;
	p[14] = env->body;
	p[15] = env->smtputf8 ? SPOOL_REC_F_SMTPUTF8 : 0;
	p[16] = (uint8_t)envelope_protocol_id(env->protocol);
	p[17] = p[18] = p[19] = 0;
	spool_put64(p + 20, env->size_hint);
	spool_put64(p + 28, (uint64_t)env->arrival);
	spool_put32(p + 36, env->nrcpts);
	spool_put32(p + 40, (uint32_t)hdr_len);
	p += SPOOL_REC_FIXED;
	/* The null sender is "": a NULL sender is stored the same way. */
	p = str_put(p, env->sender ? env->sender : "");
	p = str_put(p, env->envid);
	p = str_put(p, env->helo);
	p = str_put(p, env->client_addr);
	for (uint32_t i = 0; i < env->nrcpts; i++) {
		*p++ = env->rcpts[i].notify;
		p = str_put(p, env->rcpts[i].addr);
		p = str_put(p, env->rcpts[i].orcpt);
	}
	SLUICE_ASSERT((size_t)(p - hdr) == hdr_len);
	uint32_t crc = crc32c(0, hdr + 12, hdr_len - 12);
	if (body_len)
		crc = crc32c(crc, body, body_len);
	spool_put32(hdr + 8, crc);
}

/* A bounded cursor over the record: every read checks the bounds first. */
struct cur {
	const uint8_t *p, *end;
};

/* Read a str; *out is NULL for the NULL marker.  Refuses embedded NULs
 * (they would not survive as a C string, so not round trip). */
static int cur_str(struct cur *c, char **out, bool nullable)
{
	*out = NULL;
	if (c->end - c->p < 2)
		return -EBADMSG;
	uint16_t n = spool_get16(c->p);
	c->p += 2;
	if (n == SPOOL_STR_NULL)
		return nullable ? 0 : -EBADMSG;
	if (c->end - c->p < n || memchr(c->p, 0, n))
		return -EBADMSG;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, c->p, n);
	s[n] = 0;
	c->p += n;
	*out = s;
	return 0;
}

int spool_record_parse(const uint8_t *rec, size_t len, struct envelope *env, const uint8_t **body,
		       size_t *body_len)
{
	int rc;

	memset(env, 0, sizeof(*env));
	if (len < SPOOL_REC_FIXED + 8 || spool_get32(rec) != SPOOL_MAGIC ||
	    spool_get32(rec + 4) != len)
		return -EBADMSG;
	if (crc32c(0, rec + 12, len - 12) != spool_get32(rec + 8))
		return -EBADMSG;
	if (rec[12] != SPOOL_REC_VERSION || rec[13] > ENVELOPE_RET_HDRS ||
	    rec[14] > ENVELOPE_BODY_8BITMIME || (rec[15] & ~SPOOL_REC_F_SMTPUTF8) || rec[17] ||
	    rec[18] || rec[19])
		return -EBADMSG;
	/* Unknown protocol numbers would come back as 0: refuse them. */
	const char *proto = envelope_protocol_name(rec[16]);
	if (envelope_protocol_id(proto) != rec[16])
		return -EBADMSG;
	uint32_t nrcpts = spool_get32(rec + 36);
	uint32_t hdr_len = spool_get32(rec + 40);
	if (nrcpts == 0 || hdr_len > len || hdr_len < SPOOL_REC_FIXED + 8)
		return -EBADMSG;
	/* Each recipient takes at least 5 bytes: bound the allocation by the
	 * record size before trusting nrcpts. */
	if ((uint64_t)nrcpts * 5 > hdr_len - SPOOL_REC_FIXED - 8)
		return -EBADMSG;

	env->ret = rec[13];
	env->body = rec[14];
	env->smtputf8 = rec[15] & SPOOL_REC_F_SMTPUTF8;
	env->protocol = proto;
	env->size_hint = spool_get64(rec + 20);
	env->arrival = (int64_t)spool_get64(rec + 28);

	struct cur c = {rec + SPOOL_REC_FIXED, rec + hdr_len};
	if ((rc = cur_str(&c, &env->sender, false)) < 0 ||
	    (rc = cur_str(&c, &env->envid, true)) < 0 || (rc = cur_str(&c, &env->helo, true)) < 0 ||
	    (rc = cur_str(&c, &env->client_addr, true)) < 0)
		goto fail;
	env->rcpts = calloc(nrcpts, sizeof(*env->rcpts));
	if (!env->rcpts) {
		rc = -ENOMEM;
		goto fail;
	}
	env->rcpts_cap = nrcpts;
	for (uint32_t i = 0; i < nrcpts; i++) {
		struct envelope_rcpt *r = &env->rcpts[i];
		rc = -EBADMSG;
		if (c.p == c.end)
			goto fail;
		r->notify = *c.p++;
		/* nrcpts counts filled entries, so envelope_free() frees
		 * exactly what was allocated. */
		env->nrcpts = i + 1;
		if ((rc = cur_str(&c, &r->addr, false)) < 0 ||
		    (rc = cur_str(&c, &r->orcpt, true)) < 0)
			goto fail;
	}
	if (c.p != c.end) {
		rc = -EBADMSG;
		goto fail;
	}
	*body = rec + hdr_len;
	*body_len = len - hdr_len;
	return 0;
fail:
	envelope_free(env);
	return rc;
}

void spool_qid_format(const struct spool_ref *ref, char *qid)
{
	static const char hex[] = "0123456789ABCDEF";
	for (int i = 0; i < 8; i++) {
		qid[i] = hex[(ref->seg >> (28 - 4 * i)) & 0xf];
		qid[8 + i] = hex[(ref->offset >> (28 - 4 * i)) & 0xf];
	}
	qid[SPOOL_QID_LEN] = 0;
}

int spool_qid_parse(const char *qid, struct spool_ref *ref)
{
	uint64_t v = 0;
	for (int i = 0; i < SPOOL_QID_LEN; i++) {
		char ch = qid[i];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	if (qid[SPOOL_QID_LEN] != 0)
		return -EINVAL;
	ref->seg = (uint32_t)(v >> 32);
	ref->offset = (uint32_t)v;
	return 0;
}

void spool_jnl_entry_build(uint8_t e[SPOOL_JNL_ENTRY], uint32_t offset, uint32_t rcpt,
			   uint8_t state)
{
	spool_put32(e, offset);
	spool_put32(e + 4, rcpt);
	e[8] = state;
	e[9] = e[10] = e[11] = 0;
	spool_put32(e + 12, crc32c(0, e, 12));
}

int spool_jnl_entry_parse(const uint8_t e[SPOOL_JNL_ENTRY], uint32_t *offset, uint32_t *rcpt,
			  uint8_t *state)
{
	if (crc32c(0, e, 12) != spool_get32(e + 12) || e[9] || e[10] || e[11] ||
	    (e[8] != SPOOL_RCPT_DELIVERED && e[8] != SPOOL_RCPT_FAILED &&
	     e[8] != SPOOL_RCPT_DELAY_NOTICED))
		return -EBADMSG;
	*offset = spool_get32(e);
	*rcpt = spool_get32(e + 4);
	*state = e[8];
	return 0;
}
