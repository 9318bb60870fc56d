/* smtp_client_tutil: the scripted server side of the tests (see smtp_client_tutil.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_tutil.h"

/* What the split runner is doing, for failure messages. */
char g_ctx[64];

static void esc(const char *s, size_t n, char *buf, size_t cap)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 8 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\r')
			j += (size_t)snprintf(buf + j, cap - j, "\\r");
		else if (ch == '\n')
			j += (size_t)snprintf(buf + j, cap - j, "\\n");
		else if (ch < 0x20 || ch >= 0x7f)
			j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", ch);
		else
			buf[j++] = (char)ch;
	}
	if (j + 8 >= cap && n)
		j += (size_t)snprintf(buf + j, cap - j, "...");
	buf[j] = '\0';
}

static void logf_(struct tc *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct tc *t, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(line));
	assert_true(t->log_len + (size_t)n < LOG_MAX && t->full_len + (size_t)n < LOG_MAX);
	memcpy(t->log + t->log_len, line, (size_t)n + 1);
	t->log_len += (size_t)n;
	memcpy(t->full + t->full_len, line, (size_t)n + 1);
	t->full_len += (size_t)n;
}

static void cb_rcpt(void *arg, uint32_t k, const struct smtp_client_result *r)
{
	struct tc *t = arg;
	size_t tl;

	if (!t->in_msg)
		fail_msg("%s rcpt_result(%u) outside a message", g_ctx, k);
	if (k >= t->nrcpts || k >= MAXR)
		fail_msg("%s rcpt_result k=%u of %u", g_ctx, k, t->nrcpts);
	if (t->nres[k]++)
		fail_msg("%s rcpt_result twice for k=%u", g_ctx, k);
	/* The header's promises about every result. */
	assert_non_null(r->text);
	assert_non_null(r->stage);
	tl = strlen(r->text);
	assert_true(tl <= SMTP_CLIENT_TEXT_MAX);
	for (size_t i = 0; i < tl; i++)
		assert_true((unsigned char)r->text[i] >= 0x20 && (unsigned char)r->text[i] < 0x7f);
	assert_true(r->code >= 200 && r->code <= 599);
	assert_int_equal(r->enh[0], '0' + r->code / 100);
	t->res[k] = *r;
	memcpy(t->texts[k], r->text, tl + 1);
	t->res[k].text = t->texts[k];
	logf_(t, "R%u %u %s %s%s\n", k, r->code, r->enh, r->stage, r->local ? " L" : "");
}

static void cb_done(void *arg)
{
	struct tc *t = arg;

	if (!t->in_msg)
		fail_msg("%s msg_done without a message", g_ctx);
	for (uint32_t k = 0; k < t->nrcpts; k++)
		if (t->nres[k] != 1)
			fail_msg("%s msg_done: k=%u has %u results", g_ctx, k, t->nres[k]);
	t->in_msg = false;
	t->ndone++;
	logf_(t, "D\n");
	if (t->on_done)
		t->on_done(t);
}

const struct smtp_client_ops tc_ops = {.rcpt_result = cb_rcpt, .msg_done = cb_done};

struct tc *t_new_mode(enum smtp_client_proto proto, bool no_pipe,
		      const struct smtp_client_timeouts *to, enum feed_mode mode, size_t split)
{
	struct tc *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->cfg.helo_name = HELO;
	t->cfg.proto = proto;
	t->cfg.no_pipelining = no_pipe;
	if (to)
		t->cfg.timeouts = *to;
	t->mode = mode;
	t->split = split;
	t->c = smtp_client_new(&t->cfg, &tc_ops, t);
	assert_non_null(t->c);
	return t;
}

struct tc *t_new(enum smtp_client_proto proto)
{
	return t_new_mode(proto, false, NULL, FEED_WHOLE, 0);
}

void t_free(struct tc *t)
{
	smtp_client_free(t->c);
	free(t->out);
	free(t->wire);
	free(t);
}

/* Feed s as the mode says; the first error, or 0. */
int t_feedn(struct tc *t, const char *s, size_t n)
{
	int rc = 0, r;

	switch (t->mode) {
	case FEED_WHOLE:
		return smtp_client_feed(t->c, s, n);
	case FEED_BYTES:
		for (size_t i = 0; i < n; i++) {
			r = smtp_client_feed(t->c, s + i, 1);
			if (r < 0 && rc == 0)
				rc = r;
			if (rc < 0)
				assert_int_equal(r, rc); /* sticky */
		}
		return rc;
	case FEED_SPLIT: {
		size_t a = t->split < n ? t->split : n;

		rc = smtp_client_feed(t->c, s, a);
		r = smtp_client_feed(t->c, s + a, n - a);
		if (rc < 0)
			assert_int_equal(r, rc); /* sticky */
		return rc < 0 ? rc : r;
	}
	}
	return -1;
}

int t_feed(struct tc *t, const char *s)
{
	return t_feedn(t, s, strlen(s));
}

void feed_ok(struct tc *t, const char *s)
{
	int rc = t_feed(t, s);

	if (rc != 0) {
		char e[256];

		esc(s, strlen(s), e, sizeof(e));
		fail_msg("%s feed \"%s\": got %d want 0", g_ctx, e, rc);
	}
}

/* Write everything the engine offers (in write_chunk pieces) into t->out. */
void t_out(struct tc *t)
{
	const void *p;
	size_t n;

	t->out_len = 0;
	while ((n = smtp_client_output(t->c, &p)) > 0) {
		size_t w = t->write_chunk && t->write_chunk < n ? t->write_chunk : n;

		if (n > t->max_slice)
			t->max_slice = n;
		t->nslices++;
		t->out = realloc(t->out, t->out_len + w + 1);
		assert_non_null(t->out);
		memcpy(t->out + t->out_len, p, w);
		t->out_len += w;
		if (t->wire_len + w > t->wire_cap) {
			t->wire_cap = (t->wire_len + w) * 2;
			t->wire = realloc(t->wire, t->wire_cap);
			assert_non_null(t->wire);
		}
		memcpy(t->wire + t->wire_len, p, w);
		t->wire_len += w;
		smtp_client_output_done(t->c, w);
	}
	if (!t->out)
		t->out = malloc(1);
	assert_non_null(t->out);
	t->out[t->out_len] = '\0';
}

void expect_bytes(const char *what, const char *got, size_t glen, const char *want, size_t wlen)
{
	char g[1024], w[1024];
	size_t i = 0;

	if (glen == wlen && memcmp(got, want, glen) == 0)
		return;
	while (i < glen && i < wlen && got[i] == want[i])
		i++;
	/* Show from a little before the first difference. */
	i = i > 40 ? i - 40 : 0;
	esc(got + i, glen - i, g, sizeof(g));
	esc(want + i, wlen - i, w, sizeof(w));
	fail_msg("%s %s (lengths %zu/%zu, from offset %zu)\n got:  \"%s\"\n want: \"%s\"", g_ctx,
		 what, glen, wlen, i, g, w);
}

void expect_out(struct tc *t, const char *want)
{
	t_out(t);
	expect_bytes("output", t->out, t->out_len, want, strlen(want));
}

void expect_log(struct tc *t, const char *want)
{
	expect_bytes("results", t->log, t->log_len, want, strlen(want));
	t->log_len = 0;
	t->log[0] = '\0';
}

void expect_state(struct tc *t, enum smtp_client_state want)
{
	enum smtp_client_state got = smtp_client_state(t->c);

	if (got != want)
		fail_msg("%s state got %s want %s", g_ctx, smtp_client_state_str(got),
			 smtp_client_state_str(want));
}

void expect_wait(struct tc *t, unsigned want)
{
	unsigned got = smtp_client_wait_seconds(t->c);

	if (got != want)
		fail_msg("%s wait_seconds in %s got %u want %u", g_ctx,
			 smtp_client_state_str(smtp_client_state(t->c)), got, want);
}

void expect_text(struct tc *t, uint32_t k, const char *want)
{
	if (strcmp(t->texts[k], want) != 0)
		fail_msg("%s text of k=%u got \"%s\" want \"%s\"", g_ctx, k, t->texts[k], want);
}

/* Greeting, hello, READY; nothing left to write. */
void t_hello(struct tc *t, const char *hello_reply)
{
	feed_ok(t, "220 mx.test ESMTP\r\n");
	expect_out(t, t->cfg.proto == SMTP_CLIENT_LMTP ? "LHLO " HELO "\r\n" : "EHLO " HELO "\r\n");
	expect_state(t, SMTP_CLIENT_HELLO);
	feed_ok(t, hello_reply);
	expect_state(t, SMTP_CLIENT_READY);
	expect_out(t, "");
}

struct tc *t_open(enum smtp_client_proto proto, const char *hello_reply)
{
	struct tc *t = t_new(proto);

	t_hello(t, hello_reply);
	return t;
}

/* ---- messages ------------------------------------------------------- */

/* rcpts: a NULL-terminated list of addresses. */
void mf_init(struct mf *f, const char *sender, const char *const *rcpts, const char *body)
{
	uint32_t n = 0;

	memset(f, 0, sizeof(*f));
	f->env.sender = strdup(sender);
	assert_non_null(f->env.sender);
	for (; rcpts[n]; n++) {
		assert_int_equal(envelope_add_rcpt(&f->env, rcpts[n], NULL, 0), 0);
		f->idx[n] = n;
	}
	f->m.env = &f->env;
	f->m.rcpts = f->idx;
	f->m.nrcpts = n;
	f->m.body = (const uint8_t *)body;
	f->m.body_len = body ? strlen(body) : 0;
}

void mf_free(struct mf *f)
{
	envelope_free(&f->env);
}

int t_send_rc(struct tc *t, const struct smtp_client_msg *m)
{
	bool was = t->in_msg;
	int rc;

	if (!was && m) {
		t->in_msg = true;
		t->nrcpts = m->nrcpts;
		memset(t->nres, 0, sizeof(t->nres));
	}
	rc = smtp_client_send(t->c, m);
	if (rc < 0 && !was)
		t->in_msg = false;
	return rc;
}

void t_send(struct tc *t, const struct smtp_client_msg *m)
{
	int rc = t_send_rc(t, m);

	if (rc != 0)
		fail_msg("%s smtp_client_send got %d want 0", g_ctx, rc);
}

const char *const R1[] = {"a@x.test", NULL};
const char *const R2[] = {"a@x.test", "b@x.test", NULL};
const char *const R3[] = {"a@x.test", "b@x.test", "c@x.test", NULL};
const char *const R4[] = {"a@x.test", "b@x.test", "c@x.test", "d@x.test", NULL};
