/*
 * fuzz_engine: the SMTP engine on arbitrary client input.
 *
 * Input layout: byte 0 config flags, byte 1 decision seed, bytes 2..5
 * piece lengths for the split run, the rest is what the client sends.
 * The same input and decisions are run whole, split into pieces and (when
 * short) one byte at a time; all runs must give the same log.  Invariants:
 * the output is a sequence of complete CRLF lines "DDD " or "DDD-"; nothing
 * is consumed after CLOSE or while paused; OK means all consumed; bodies
 * hold no bare CR or LF and respect the size limit; no leak (ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/smtp_engine.h"

#define HDR 6

struct fz_log {
	uint8_t *p;
	size_t len, cap;
};

static void fz_put(struct fz_log *l, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (l->len + n > l->cap) {
		size_t cap = l->cap ? l->cap : 4096;
		while (cap < l->len + n)
			cap *= 2;
		l->p = realloc(l->p, cap);
		if (!l->p)
			abort();
		l->cap = cap;
	}
	memcpy(l->p + l->len, p, n);
	l->len += n;
}

static void fz_str(struct fz_log *l, const char *s)
{
	fz_put(l, s ? s : "(null)", s ? strlen(s) + 1 : 7);
}

static uint32_t fz_rand(uint32_t *s)
{
	uint32_t x = *s ? *s : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

static void fz_check_output(const uint8_t *o, size_t n)
{
	size_t i = 0;
	while (i < n) {
		const uint8_t *crlf = memmem(o + i, n - i, "\r\n", 2);
		if (!crlf)
			abort(); /* a partial reply line */
		size_t l = (size_t)(crlf - (o + i));
		if (l < 4 || o[i] < '2' || o[i] > '5' || o[i + 1] < '0' || o[i + 1] > '9' ||
		    o[i + 2] < '0' || o[i + 2] > '9' || (o[i + 3] != ' ' && o[i + 3] != '-'))
			abort();
		for (size_t k = i; k < i + l; k++)
			if (o[k] == '\r' || o[k] == '\n')
				abort();
		i += l + 2;
	}
}

static void fz_check_body(const struct smtp_event *ev, const struct smtp_engine_cfg *cfg)
{
	const uint8_t *b = ev->body;
	if (cfg->max_message_size && ev->body_len > cfg->max_message_size)
		abort();
	for (size_t i = 0; i < ev->body_len; i++) {
		if (b[i] == '\r' && (i + 1 == ev->body_len || b[i + 1] != '\n'))
			abort();
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			abort();
	}
}

static bool fz_event(struct smtp_engine *e, struct fz_log *log, uint32_t *seed,
		     const struct smtp_engine_cfg *cfg)
{
	const struct smtp_event *ev = smtp_engine_event(e);
	uint32_t r = fz_rand(seed);
	int code;
	const char *text;
	bool count = false;
	if (!ev || smtp_engine_timeout_kind(e) != SMTP_TIMEOUT_NONE)
		abort();
	fz_put(log, "E", 1);
	fz_put(log, &ev->type, sizeof(ev->type));
	switch (ev->type) {
	case SMTP_EV_MAIL:
	case SMTP_EV_RCPT:
		fz_str(log, ev->addr);
		fz_str(log, ev->domain);
		fz_str(log, ev->orcpt ? ev->orcpt : "-");
		fz_put(log, &ev->notify, 1);
		break;
	case SMTP_EV_MESSAGE: {
		const struct envelope *env = ev->env;
		fz_check_body(ev, cfg);
		fz_str(log, env->sender);
		fz_str(log, env->protocol);
		fz_str(log, env->helo);
		fz_str(log, env->envid ? env->envid : "-");
		fz_put(log, &env->nrcpts, sizeof(env->nrcpts));
		for (uint32_t i = 0; i < env->nrcpts; i++) {
			fz_str(log, env->rcpts[i].addr);
			fz_put(log, &env->rcpts[i].notify, 1);
		}
		fz_put(log, &ev->body_len, sizeof(ev->body_len));
		fz_put(log, ev->body, ev->body_len);
		break;
	}
	default:
		abort();
	}
	switch (r % 8) {
	case 0:
		code = 550, text = "5.7.1 Refused", count = true;
		break;
	case 1:
		code = 451, text = "4.3.0 Try later";
		break;
	case 2:
		code = (r >> 8) % 16 == 0 ? 421 : 250, text = "4.3.2 Bye or ok";
		break;
	default:
		code = 250, text = "2.0.0 Ok";
	}
	if (smtp_engine_resume(e, code, text, count) == SMTP_RC_CLOSE) {
		fz_put(log, "C", 1);
		return true;
	}
	return false;
}

/* One run; pieces[] cycled as piece lengths (0 = all at once). */
static void fz_run(const struct smtp_engine_cfg *cfg, uint8_t seed0, const uint8_t *in, size_t len,
		   const uint8_t *pieces, size_t npieces, struct fz_log *log)
{
	struct smtp_engine *e = smtp_engine_new(cfg, "203.0.113.5");
	struct fz_log out = {0}, all = {0};
	uint32_t seed = seed0 * 2654435761u + 1;
	size_t off = 0, k = 0;
	bool closed = false;
	if (!e)
		abort();
	smtp_engine_start(e);
	while (off < len && !closed) {
		size_t plen = npieces ? (size_t)(pieces[k++ % npieces] % 64) + 1 : len;
		size_t end = off + plen < len ? off + plen : len;
		while (off < end) {
			enum smtp_rc rc;
			size_t n = smtp_engine_feed(e, in + off, end - off, &rc), o;
			const uint8_t *ob;
			if (n > end - off)
				abort();
			off += n;
			ob = smtp_engine_output(e, &o);
			fz_put(&out, ob, o);
			fz_put(&all, ob, o);
			smtp_engine_output_consumed(e, o);
			if (rc == SMTP_RC_EVENT) {
				/* Paused: nothing more is consumed until resume. */
				if (off < len && smtp_engine_feed(e, in + off, len - off, &rc) != 0)
					abort();
				fz_put(log, out.p, out.len);
				out.len = 0;
				closed = fz_event(e, log, &seed, cfg);
				if (smtp_engine_event(e))
					abort();
			} else if (rc == SMTP_RC_CLOSE) {
				closed = true;
			} else if (off != end) {
				abort();
			}
			if (closed) {
				/* After CLOSE nothing more is consumed. */
				if (smtp_engine_feed(e, in + off, len - off, &rc) != 0 ||
				    rc != SMTP_RC_CLOSE)
					abort();
				break;
			}
		}
	}
	if (!closed) {
		/* Idle between commands: no body, no output buffer held. */
		if (!smtp_engine_in_transaction(e) && smtp_engine_memory(e) > 8192)
			abort();
		smtp_engine_timeout(e);
	}
	size_t o;
	const uint8_t *ob = smtp_engine_output(e, &o);
	fz_put(&out, ob, o);
	fz_put(&all, ob, o);
	smtp_engine_output_consumed(e, o);
	fz_put(log, out.p, out.len);
	fz_put(log, &off, sizeof(off));
	fz_check_output(all.p, all.len);
	free(out.p);
	free(all.p);
	smtp_engine_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_engine_cfg cfg = {.hostname = "fuzz.test"};
	struct fz_log a = {0}, b = {0}, c = {0};
	const uint8_t *in;
	size_t len;

	if (size < HDR)
		return 0;
	cfg.lenient_bare_lf = data[0] & 1;
	if (data[0] & 2) {
		cfg.max_message_size = 64;
		cfg.max_recipients = 2;
		cfg.max_errors = 5;
	} else {
		cfg.max_message_size = 4096;
		cfg.max_recipients = 20;
		cfg.max_errors = (data[0] & 4) ? 0 : 50;
	}
	in = data + HDR;
	len = size - HDR;

	fz_run(&cfg, data[1], in, len, NULL, 0, &a);
	fz_run(&cfg, data[1], in, len, data + 2, 4, &b);
	if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
		abort(); /* the split changed the dialogue */
	if (len <= 2048) {
		static const uint8_t one = 0; /* pieces of 1 octet */
		fz_run(&cfg, data[1], in, len, &one, 1, &c);
		if (a.len != c.len || memcmp(a.p, c.p, a.len) != 0)
			abort();
	}
	free(a.p);
	free(b.p);
	free(c.p);
	return 0;
}
