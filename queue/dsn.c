/*
 * NAME
 *	dsn - compose RFC 3464 delivery status notifications
 *
 * DESCRIPTION
 *	dsn_compose() builds the three parts of a multipart/report (the human
 *	note, the delivery-status fields, the returned content) into separate
 *	buffers first, so the boundary can be checked against all of them
 *	before the message is assembled.  Text from remote servers passes
 *	through dsn_clean() before it is written anywhere.
 *
 * DIAGNOSTICS
 *	0, -EINVAL (bad report), -ENOMEM.  See dsn.h.
 */
#include "queue/dsn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 5322 section 2.1.1: 998 octets a line at most, 78 preferred. */
#define DSN_LINE_MAX 998
#define DSN_LINE_SOFT 78
/* Longest reporting MTA name (RFC 1035 domain) and queue id we accept. */
#define DSN_HOST_MAX 255
#define DSN_QID_MAX 64
/* Part of the queue id that goes into the boundary (RFC 2046: 70 max). */
#define DSN_BOUNDARY_QID 20

/* A growing output buffer; the first allocation failure sticks. */
struct dsn_buf {
	uint8_t *p;  /* contents, not NUL-terminated */
	size_t len;  /* octets used */
	size_t cap;  /* octets allocated */
	bool failed; /* an allocation failed: contents are incomplete */
};

/* One notice being composed. */
struct dsn_ctx {
	const struct dsn_report *rep;
	enum dsn_action kind;	   /* FAILED, DELAYED or DELIVERED (for both successes) */
	bool utf8;		   /* global types, UTF-8 allowed in parts 1 and 2 */
	bool ret_full;		   /* part 3 is the whole original, else its headers */
	bool ret_capped;	   /* whole original wanted but over max_return */
	bool hdrs_cut;		   /* the header section itself was over max_return */
	size_t max_return;	   /* effective cap */
	struct dsn_buf human;	   /* part 1 body */
	struct dsn_buf status;	   /* part 2 body */
	struct dsn_buf returned;   /* part 3 body */
	struct dsn_buf tmp;	   /* scratch for cleaned strings */
	char boundary[80];	   /* chosen MIME boundary */
};

static const char *const action_names[] = {
    [DSN_ACTION_FAILED] = "failed",
    [DSN_ACTION_DELAYED] = "delayed",
    [DSN_ACTION_DELIVERED] = "delivered",
    [DSN_ACTION_RELAYED] = "relayed",
};

const char *dsn_action_str(enum dsn_action a)
{
	if ((unsigned)a >= sizeof(action_names) / sizeof(action_names[0]))
		return "unknown";
	return action_names[a];
}

bool dsn_wanted(const struct envelope *env, uint32_t r, enum dsn_action action)
{
	if (!env || !env->sender || env->sender[0] == '\0' || r >= env->nrcpts)
		return false;
	uint8_t notify = env->rcpts[r].notify;
	if (notify & ENVELOPE_NOTIFY_NEVER)
		return false;
	switch (action) {
	case DSN_ACTION_FAILED:
		return notify == 0 || (notify & ENVELOPE_NOTIFY_FAILURE);
	case DSN_ACTION_DELAYED:
		return notify == 0 || (notify & ENVELOPE_NOTIFY_DELAY);
	case DSN_ACTION_DELIVERED:
	case DSN_ACTION_RELAYED:
		return (notify & ENVELOPE_NOTIFY_SUCCESS) != 0;
	}
	return false;
}

/* ------------------------------------------------------------ buffers */

static void buf_put(struct dsn_buf *b, const void *data, size_t n)
{
	if (b->failed || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void buf_puts(struct dsn_buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_printf(struct dsn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct dsn_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		buf_put(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_put(b, big, (size_t)n);
	free(big);
}

static void buf_release(struct dsn_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static bool has_8bit(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

static bool str_is_ascii(const char *s)
{
	return s && !has_8bit((const uint8_t *)s, strlen(s));
}

/* ------------------------------------------------------------ text */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), 0 if none. */
static size_t utf8_seq_len(const uint8_t *p, size_t n)
{
	size_t len;
	uint32_t min;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	uint32_t cp = p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Copy s into ctx->tmp fit for a header field or the human part: control
 * octets (CR and LF above all, so remote text cannot start a field or a
 * part) become spaces, runs of spaces collapse to one, ends are trimmed,
 * and 8-bit octets stay only as well-formed UTF-8 in a UTF-8 notice; other
 * ones become '?'.  At most max octets are kept.
 */
static void dsn_clean(struct dsn_ctx *ctx, const char *s, size_t max)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s);
	struct dsn_buf *t = &ctx->tmp;
	bool space = true; /* drops leading spaces */

	t->len = 0;
	for (size_t i = 0; i < n && t->len < max;) {
		if (p[i] < 0x20 || p[i] == 0x7f || p[i] == ' ') {
			if (!space)
				buf_put(t, " ", 1);
			space = true;
			i++;
			continue;
		}
		space = false;
		size_t seq = utf8_seq_len(p + i, n - i);
		if (p[i] >= 0x80 && (!ctx->utf8 || seq == 0)) {
			buf_put(t, "?", 1);
			i++;
			continue;
		}
		if (t->len + seq > max)
			break;
		buf_put(t, p + i, seq);
		i += seq;
	}
	while (t->len > 0 && t->p[t->len - 1] == ' ')
		t->len--;
}

/*
 * Octets of v[0..n) that fit in room without splitting a UTF-8 sequence;
 * 0 when not even the first sequence fits (the caller folds first: half a
 * sequence on each side of a fold would be malformed UTF-8).
 */
static size_t fit_utf8(const uint8_t *v, size_t n, size_t room)
{
	if (n <= room)
		return n;
	size_t k = room;
	while (k > 0 && (v[k] & 0xc0) == 0x80)
		k--;
	return k;
}

/*
 * Write v (no CR, LF or runs of spaces: cleaned) after col octets already
 * on the line, folding at spaces before DSN_LINE_SOFT where possible and
 * always before DSN_LINE_MAX; ends with CRLF.  indent NULL folds a header
 * field (RFC 5322 section 2.2.3: CRLF goes before the space, which stays);
 * otherwise text is wrapped and continuation lines start with indent.
 */
static void put_folded(struct dsn_buf *b, size_t col, const uint8_t *v, size_t n,
		       const char *indent)
{
	size_t ilen = indent ? strlen(indent) : 0;
	size_t line_start_col = col;
	size_t i = 0;

	while (i < n) {
		size_t ws = i;
		while (ws < n && v[ws] == ' ')
			ws++;
		size_t we = ws;
		while (we < n && v[we] != ' ')
			we++;
		bool has_ws = ws > i;
		if (has_ws && col > line_start_col && col + (we - i) > DSN_LINE_SOFT) {
			buf_put(b, "\r\n", 2);
			if (indent) {
				buf_put(b, indent, ilen);
				col = ilen;
				i = ws; /* the indent replaces the space */
			} else {
				col = 0;
			}
			line_start_col = col + (indent ? 0 : 1);
		}
		buf_put(b, v + i, ws - i);
		col += ws - i;
		/*
		 * XXX: a word longer than a line has no place to fold; it is cut
		 * with CRLF SP, which adds a space to the value.  Only remote
		 * text this long gets here, and a legal line matters more.
		 */
		while (col + (we - ws) > DSN_LINE_MAX) {
			size_t room = col < DSN_LINE_MAX ? DSN_LINE_MAX - col : 0;
			size_t k = fit_utf8(v + ws, we - ws, room);
			buf_put(b, v + ws, k);
			ws += k;
			buf_put(b, "\r\n ", 3);
			col = 1;
		}
		buf_put(b, v + ws, we - ws);
		col += we - ws;
		i = we;
	}
	buf_put(b, "\r\n", 2);
}

/* A header field "Name: value" with value cleaned and folded. */
static void put_field(struct dsn_ctx *ctx, struct dsn_buf *b, const char *name, const char *value)
{
	dsn_clean(ctx, value, SIZE_MAX);
	buf_puts(b, name);
	buf_puts(b, ": ");
	put_folded(b, strlen(name) + 2, ctx->tmp.p, ctx->tmp.len, NULL);
}

/* Like put_field() with the value made by printf. */
static void put_fieldf(struct dsn_ctx *ctx, struct dsn_buf *b, const char *name, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));

static void put_fieldf(struct dsn_ctx *ctx, struct dsn_buf *b, const char *name, const char *fmt,
		       ...)
{
	char *value;
	va_list ap;

	va_start(ap, fmt);
	int n = vasprintf(&value, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	put_field(ctx, b, name, value);
	free(value);
}

/* A paragraph of the human part: prefix then text, wrapped. */
static void put_text(struct dsn_ctx *ctx, const char *prefix, const char *text,
		     const char *indent)
{
	dsn_clean(ctx, text, DSN_DIAGNOSTIC_MAX);
	buf_puts(&ctx->human, prefix);
	put_folded(&ctx->human, strlen(prefix), ctx->tmp.p, ctx->tmp.len, indent);
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The envelope keeps ENVID and ORCPT as the client sent them, in xtext
 * (RFC 3461 section 4: "+" and two upper-case hex digits stand for one
 * octet); the notice carries the decoded text (RFC 3461 section 6.3, RFC
 * 3464 sections 2.2.1 and 2.3.1).  Returns a malloc'd copy of s with its
 * xtext decoded, or NULL when s is not valid xtext or decodes to anything
 * but printable US-ASCII: the encoded form is then written as it is, which
 * still names the same value and cannot smuggle a control octet in.
 * An allocation failure also returns NULL and marks b failed.
 */
static char *xtext_decode(const char *s, struct dsn_buf *b)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1);
	size_t k = 0;

	if (!out) {
		b->failed = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			/* s is NUL-terminated: a short "+X" stops at the NUL. */
			int hi = hex_val(s[i + 1]);
			int lo = hi >= 0 ? hex_val(s[i + 2]) : -1;
			if (lo < 0)
				goto bad;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c < 0x20 || c > 0x7e)
			goto bad;
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* RFC 5322 section 3.3 date-time in UTC, independent of the locale. */
static void format_date(int64_t t, char out[64])
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm)) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}

/* ------------------------------------------------------------ checks */

static bool host_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > DSN_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

/* Queue ids go into the Message-ID and the boundary: keep them plain. */
static bool qid_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > DSN_QID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

/* RFC 3463 section 2: class "." subject "." detail, 1-3 digits each. */
static bool status_ok(const char *s)
{
	if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		int digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			s++;
			digits++;
		}
		if (digits < 1 || digits > 3)
			return false;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* Both successes go into one notice: they share a kind. */
static enum dsn_action kind_of(enum dsn_action a)
{
	return a == DSN_ACTION_RELAYED ? DSN_ACTION_DELIVERED : a;
}

static int dsn_check(const struct dsn_report *rep)
{
	const struct envelope *env = rep->env;

	if (!env || !env->sender || env->sender[0] == '\0' || !rep->rcpts || rep->nrcpts == 0)
		return -EINVAL;
	if (!host_ok(rep->reporting_mta) || (rep->qid && !qid_ok(rep->qid)))
		return -EINVAL;
	if (!rep->body && rep->body_len > 0)
		return -EINVAL;
	for (unsigned i = 0; i < rep->nrcpts; i++) {
		const struct dsn_rcpt *r = &rep->rcpts[i];
		if ((unsigned)r->action > DSN_ACTION_RELAYED || r->rcpt >= env->nrcpts ||
		    !status_ok(r->status) ||
		    kind_of(r->action) != kind_of(rep->rcpts[0].action))
			return -EINVAL;
	}
	return 0;
}

/* RFC 6533: an address outside ASCII, or an SMTPUTF8 original. */
static bool dsn_needs_utf8(const struct dsn_report *rep)
{
	const struct envelope *env = rep->env;

	if (env->smtputf8 || !str_is_ascii(env->sender))
		return true;
	for (unsigned i = 0; i < rep->nrcpts; i++) {
		const struct envelope_rcpt *er = &env->rcpts[rep->rcpts[i].rcpt];
		if (!str_is_ascii(er->addr) ||
		    (er->orcpt && (!str_is_ascii(er->orcpt) || strncasecmp(er->orcpt, "utf-8;", 6) == 0)))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------ part 3 */

/* Length of the line at p, without its end; *eol gets the end's length. */
static size_t line_len(const uint8_t *p, size_t n, size_t *eol)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			*eol = 1;
			return i;
		}
		if (p[i] == '\r') {
			*eol = (i + 1 < n && p[i + 1] == '\n') ? 2 : 1;
			return i;
		}
	}
	*eol = 0;
	return n;
}

/* Octets of the header section (through the CRLF of the last field). */
static size_t header_section_len(const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off < n) {
		size_t eol;
		size_t len = line_len(p + off, n - off, &eol);
		if (len == 0)
			return off;
		off += len + eol;
	}
	return n;
}

/*
 * Copy the content to return, line by line with CRLF ends: the spool holds
 * CRLF already, but a stray bare CR or LF must not end up in the notice
 * (the dialogue that carries it forbids them).  Header-only copies stop at
 * a line boundary within the cap.
 */
static void copy_returned(struct dsn_ctx *ctx, const uint8_t *p, size_t n, bool capped)
{
	size_t off = 0;

	while (off < n) {
		size_t eol;
		size_t len = line_len(p + off, n - off, &eol);
		if (capped && ctx->returned.len + len + 2 > ctx->max_return) {
			ctx->hdrs_cut = true;
			break;
		}
		buf_put(&ctx->returned, p + off, len);
		buf_put(&ctx->returned, "\r\n", 2);
		off += len + eol;
	}
}

/* RFC 3461 section 4.3 and the spec's defaults: what part 3 holds. */
static void build_returned(struct dsn_ctx *ctx)
{
	const struct dsn_report *rep = ctx->rep;
	uint8_t ret = rep->env->ret;

	/* RFC 3461 4.3: a notice that reports no failure SHOULD return only
	 * the headers, whatever RET says. */
	ctx->ret_full = ctx->kind == DSN_ACTION_FAILED && ret != ENVELOPE_RET_HDRS;
	if (ctx->ret_full && rep->body_len > ctx->max_return) {
		ctx->ret_full = false;
		ctx->ret_capped = true;
	}
	if (ctx->ret_full)
		copy_returned(ctx, rep->body, rep->body_len, false);
	else
		copy_returned(ctx, rep->body, header_section_len(rep->body, rep->body_len), true);
}

/* ------------------------------------------------------------ part 2 */

static void build_status_rcpt(struct dsn_ctx *ctx, const struct dsn_rcpt *r)
{
	const struct envelope_rcpt *er = &ctx->rep->env->rcpts[r->rcpt];
	struct dsn_buf *b = &ctx->status;
	char date[64];

	buf_puts(b, "\r\n");
	/*
	 * RFC 3461 section 6.3: only when ORCPT was given: its addr-type as
	 * given, the address decoded from xtext.  A utf-8 address keeps its
	 * utf-8-addr-xtext form, valid in both report types (RFC 6533 3).
	 */
	if (er->orcpt && er->orcpt[0]) {
		const char *semi = strchr(er->orcpt, ';');
		char *addr = NULL;
		if (semi && strncasecmp(er->orcpt, "utf-8;", 6) != 0)
			addr = xtext_decode(semi + 1, b);
		if (addr)
			put_fieldf(ctx, b, "Original-Recipient", "%.*s;%s",
				   (int)(semi - er->orcpt), er->orcpt, addr);
		else
			put_field(ctx, b, "Original-Recipient", er->orcpt);
		free(addr);
	}
	put_fieldf(ctx, b, "Final-Recipient", "%s; %s", str_is_ascii(er->addr) ? "rfc822" : "utf-8",
		   er->addr);
	put_field(ctx, b, "Action", dsn_action_str(r->action));
	put_field(ctx, b, "Status", r->status);
	if (r->remote_mta && r->remote_mta[0])
		put_fieldf(ctx, b, "Remote-MTA", "dns; %.*s", DSN_HOST_MAX, r->remote_mta);
	if (r->diagnostic && r->diagnostic[0]) {
		/* RFC 3464 2.3.6: diagnostic-type ";" text; ours have no type. */
		size_t t = strspn(r->diagnostic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
						 "0123456789-");
		bool typed = t > 0 && r->diagnostic[t + strspn(r->diagnostic + t, " ")] == ';';
		dsn_clean(ctx, r->diagnostic, DSN_DIAGNOSTIC_MAX);
		buf_puts(b, "Diagnostic-Code: ");
		if (!typed)
			buf_puts(b, "X-Sluice; ");
		put_folded(b, typed ? 17 : 27, ctx->tmp.p, ctx->tmp.len, NULL);
	}
	if (r->last_attempt) {
		format_date(r->last_attempt, date);
		put_field(ctx, b, "Last-Attempt-Date", date);
	}
	if (r->action == DSN_ACTION_DELAYED && r->will_retry_until) {
		format_date(r->will_retry_until, date);
		put_field(ctx, b, "Will-Retry-Until", date);
	}
}

static void build_status(struct dsn_ctx *ctx)
{
	const struct dsn_report *rep = ctx->rep;
	char date[64];

	/* RFC 3464 section 2.2: in this order, extension fields last. */
	if (rep->env->envid && rep->env->envid[0]) {
		char *envid = xtext_decode(rep->env->envid, &ctx->status);
		put_field(ctx, &ctx->status, "Original-Envelope-Id",
			  envid ? envid : rep->env->envid);
		free(envid);
	}
	put_fieldf(ctx, &ctx->status, "Reporting-MTA", "dns; %s", rep->reporting_mta);
	if (rep->env->arrival > 0) {
		format_date(rep->env->arrival, date);
		put_field(ctx, &ctx->status, "Arrival-Date", date);
	}
	if (rep->qid)
		put_field(ctx, &ctx->status, "X-Sluice-Queue-ID", rep->qid);
	for (unsigned i = 0; i < rep->nrcpts; i++)
		build_status_rcpt(ctx, &rep->rcpts[i]);
}

/* ------------------------------------------------------------ part 1 */

static const char *human_intro(enum dsn_action kind)
{
	switch (kind) {
	case DSN_ACTION_FAILED:
		return "Your message could not be delivered to the recipients below. The mail "
		       "system has given up on them; the reasons follow.";
	case DSN_ACTION_DELAYED:
		return "Your message has not been delivered yet to the recipients below. The mail "
		       "system keeps trying. This is a warning only: you do not need to send "
		       "the message again.";
	default:
		return "Your message was delivered to the recipients below, as you asked to be "
		       "told.";
	}
}

static const char *human_outcome(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "delivery failed";
	case DSN_ACTION_DELAYED:
		return "delivery delayed, still trying";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	case DSN_ACTION_RELAYED:
		return "relayed to a system that does not send delivery notices; no further "
		       "notice will come";
	}
	return "unknown";
}

static void build_human_rcpt(struct dsn_ctx *ctx, const struct dsn_rcpt *r)
{
	const struct envelope_rcpt *er = &ctx->rep->env->rcpts[r->rcpt];
	char line[DSN_LINE_MAX], date[64];

	buf_puts(&ctx->human, "\r\n");
	snprintf(line, sizeof(line), "<%.*s>: %s (status %.16s)", 800, er->addr,
		 human_outcome(r->action), r->status);
	put_text(ctx, "", line, "    ");
	if (r->remote_mta && r->remote_mta[0])
		put_text(ctx, "    Remote server: ", r->remote_mta, "    ");
	if (r->diagnostic && r->diagnostic[0])
		put_text(ctx, "    It said: ", r->diagnostic, "        ");
	if (r->action == DSN_ACTION_DELAYED && r->will_retry_until) {
		format_date(r->will_retry_until, date);
		put_text(ctx, "    Will keep trying until: ", date, "    ");
	}
}

static void build_human(struct dsn_ctx *ctx)
{
	const struct dsn_report *rep = ctx->rep;
	char line[DSN_LINE_MAX], date[64];

	snprintf(line, sizeof(line), "This is the mail system at %s.", rep->reporting_mta);
	put_text(ctx, "", line, "");
	buf_puts(&ctx->human, "\r\n");
	put_text(ctx, "", human_intro(ctx->kind), "");
	if (rep->qid || rep->env->arrival > 0) {
		format_date(rep->env->arrival, date);
		snprintf(line, sizeof(line), "Queue id %s%s%s.", rep->qid ? rep->qid : "-",
			 rep->env->arrival > 0 ? ", received " : "",
			 rep->env->arrival > 0 ? date : "");
		buf_puts(&ctx->human, "\r\n");
		put_text(ctx, "", line, "");
	}
	for (unsigned i = 0; i < rep->nrcpts; i++)
		build_human_rcpt(ctx, &rep->rcpts[i]);

	buf_puts(&ctx->human, "\r\n");
	if (ctx->ret_full) {
		put_text(ctx, "", "The original message is attached.", "");
	} else if (ctx->ret_capped) {
		snprintf(line, sizeof(line),
			 "The original message was %zu octets, more than the %zu returned in full, "
			 "so only its headers are attached.",
			 rep->body_len, ctx->max_return);
		put_text(ctx, "", line, "");
	} else {
		put_text(ctx, "", "The headers of the original message are attached.", "");
	}
	if (ctx->hdrs_cut) {
		snprintf(line, sizeof(line), "They are cut short at %zu octets.", ctx->max_return);
		put_text(ctx, "", line, "");
	}
}

/* ------------------------------------------------------------ assembly */

static bool buf_contains(const struct dsn_buf *b, const char *s)
{
	return b->len && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

/*
 * RFC 2046 section 5.1.1: the boundary must not occur in what it encloses.
 * "=_" cannot appear in quoted-printable or base64, the time, unique number
 * and queue id make it unlikely anywhere; a counter settles the rest.
 */
static void choose_boundary(struct dsn_ctx *ctx)
{
	const struct dsn_report *rep = ctx->rep;

	for (uint32_t try = 0;; try++) {
		snprintf(ctx->boundary, sizeof(ctx->boundary), "=_s%" PRIx64 ".%" PRIx64 ".%.*s.%" PRIx32 "=",
			 (uint64_t)rep->now, rep->unique, DSN_BOUNDARY_QID,
			 rep->qid ? rep->qid : "dsn", try);
		if (!buf_contains(&ctx->human, ctx->boundary) &&
		    !buf_contains(&ctx->status, ctx->boundary) &&
		    !buf_contains(&ctx->returned, ctx->boundary))
			return;
	}
}

static const char *subject_of(enum dsn_action kind)
{
	switch (kind) {
	case DSN_ACTION_FAILED:
		return "Undelivered Mail Returned to Sender";
	case DSN_ACTION_DELAYED:
		return "Delayed Mail (still being retried)";
	default:
		return "Successful Mail Delivery Report";
	}
}

static const char *cte_of(const struct dsn_buf *b)
{
	return has_8bit(b->p, b->len) ? "8bit" : "7bit";
}

/* One body part: its header fields, a blank line, the content, the next delimiter. */
static void put_part(struct dsn_ctx *ctx, struct dsn_buf *out, const char *desc, const char *type,
		     const struct dsn_buf *content)
{
	buf_printf(out, "\r\n--%s\r\n", ctx->boundary);
	buf_printf(out, "Content-Description: %s\r\n", desc);
	buf_printf(out, "Content-Type: %s\r\n", type);
	buf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n", cte_of(content));
	/* Every content ends in CRLF (or is empty): the delimiter's CRLF is extra. */
	buf_put(out, content->p, content->len);
}

static void assemble(struct dsn_ctx *ctx, struct dsn_buf *out, bool eight)
{
	const struct dsn_report *rep = ctx->rep;
	char date[64];

	format_date(rep->now, date);
	put_fieldf(ctx, out, "From", "Mail Delivery System <MAILER-DAEMON@%s>", rep->reporting_mta);
	put_fieldf(ctx, out, "To", "<%s>", rep->env->sender);
	put_field(ctx, out, "Subject", subject_of(ctx->kind));
	put_field(ctx, out, "Date", date);
	put_fieldf(ctx, out, "Message-ID", "<%" PRId64 ".%" PRIx64 ".%s@%s>", rep->now, rep->unique,
		   rep->qid ? rep->qid : "dsn", rep->reporting_mta);
	/* RFC 3834 section 5: never answered by autoresponders. */
	put_field(ctx, out, "Auto-Submitted", "auto-replied");
	put_field(ctx, out, "MIME-Version", "1.0");
	put_fieldf(ctx, out, "Content-Type", "multipart/report; report-type=%s; boundary=\"%s\"",
		   ctx->utf8 ? "global-delivery-status" : "delivery-status", ctx->boundary);
	put_field(ctx, out, "Content-Transfer-Encoding", eight ? "8bit" : "7bit");
	buf_puts(out, "\r\nThis is a MIME-encapsulated message (RFC 3464 delivery status "
		      "notification).\r\n");

	put_part(ctx, out, "Notification",
		 ctx->utf8 ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii",
		 &ctx->human);
	put_part(ctx, out, "Delivery report",
		 ctx->utf8 ? "message/global-delivery-status" : "message/delivery-status",
		 &ctx->status);
	const char *type;
	if (ctx->ret_full)
		type = ctx->utf8 ? "message/global" : "message/rfc822";
	else
		type = ctx->utf8 ? "message/global-headers" : "text/rfc822-headers";
	put_part(ctx, out, ctx->ret_full ? "Original message" : "Original message headers", type,
		 &ctx->returned);
	buf_printf(out, "\r\n--%s--\r\n", ctx->boundary);
}

static int fill_notice(const struct dsn_ctx *ctx, struct envelope *notice, bool eight)
{
	const struct dsn_report *rep = ctx->rep;

	memset(notice, 0, sizeof(*notice));
	notice->sender = strdup("");
	if (!notice->sender)
		return -ENOMEM;
	/* RFC 3461 section 6.2: no notice about a notice. */
	if (envelope_add_rcpt(notice, rep->env->sender, NULL, ENVELOPE_NOTIFY_NEVER) < 0) {
		envelope_free(notice);
		return -ENOMEM;
	}
	notice->ret = ENVELOPE_RET_UNSET;
	notice->body = eight ? ENVELOPE_BODY_8BITMIME : ENVELOPE_BODY_7BIT;
	notice->smtputf8 = ctx->utf8;
	notice->protocol = "ESMTP";
	notice->arrival = rep->now;
	return 0;
}

int dsn_compose(const struct dsn_report *rep, struct envelope *notice, uint8_t **msg,
		size_t *msg_len)
{
	struct dsn_ctx ctx = {.rep = rep};
	struct dsn_buf out = {0};
	int rc;

	memset(notice, 0, sizeof(*notice));
	*msg = NULL;
	*msg_len = 0;
	rc = dsn_check(rep);
	if (rc < 0)
		return rc;
	ctx.kind = kind_of(rep->rcpts[0].action);
	ctx.utf8 = dsn_needs_utf8(rep);
	ctx.max_return = rep->max_return ? rep->max_return : DSN_MAX_RETURN_DEFAULT;

	build_returned(&ctx);
	build_status(&ctx);
	build_human(&ctx);
	rc = -ENOMEM;
	if (ctx.returned.failed || ctx.status.failed || ctx.human.failed || ctx.tmp.failed)
		goto out;
	choose_boundary(&ctx);
	bool eight = has_8bit(ctx.human.p, ctx.human.len) ||
		     has_8bit(ctx.status.p, ctx.status.len) ||
		     has_8bit(ctx.returned.p, ctx.returned.len);
	assemble(&ctx, &out, eight);
	if (out.failed || ctx.tmp.failed)
		goto out;
	rc = fill_notice(&ctx, notice, eight);
	if (rc < 0)
		goto out;
	*msg = out.p;
	*msg_len = out.len;
	out.p = NULL;
out:
	buf_release(&out);
	buf_release(&ctx.tmp);
	buf_release(&ctx.returned);
	buf_release(&ctx.status);
	buf_release(&ctx.human);
	return rc;
}
