/* smtp_engine: session lifecycle, the feed loop, command line and body parsers, output. */
#include "dataplane/smtp_engine_pvt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* First allocation of the output buffer; it doubles as needed. */
#define SMTP_OUT_INIT 512
/* Largest output we hold: beyond it the client is not reading its replies
 * (pipelining abuse) and the session is closed. */
#define SMTP_OUT_MAX (1u << 20)
/* First allocation of the body buffer; it doubles up to the size limit. */
#define SMTP_BODY_INIT 4096

static const char *const smtp_state_names[] = {
    [SMTP_STATE_INIT] = "init",	  [SMTP_STATE_HELO] = "helo",	    [SMTP_STATE_READY] = "ready",
    [SMTP_STATE_RCPT] = "rcpt",	  [SMTP_STATE_DATA] = "data",	    [SMTP_STATE_BDAT] = "bdat",
    [SMTP_STATE_CHUNK] = "chunk", [SMTP_STATE_MESSAGE] = "message", [SMTP_STATE_CLOSED] = "closed",
};

static size_t smtp_line_feed(struct smtp_engine *e, const uint8_t *p, size_t n);
static void smtp_line_done(struct smtp_engine *e);
static size_t smtp_data_feed(struct smtp_engine *e, const uint8_t *p, size_t n);
static size_t smtp_chunk_feed(struct smtp_engine *e, const uint8_t *p, size_t n);
static void smtp_chunk_done(struct smtp_engine *e);
static void smtp_body_append(struct smtp_engine *e, const uint8_t *p, size_t n);
static void smtp_body_bare(struct smtp_engine *e);
static void smtp_body_raw(struct smtp_engine *e, const uint8_t *p, size_t n);
static void smtp_body_free(struct smtp_engine *e);
static int smtp_out_reserve(struct smtp_engine *e, size_t n);

const char *smtp_state_str(enum smtp_state s)
{
	if ((unsigned)s >= sizeof(smtp_state_names) / sizeof(smtp_state_names[0]))
		return "?";
	return smtp_state_names[s];
}

const char *smtp_engine_hostname(const struct smtp_engine *e)
{
	return e->cfg->hostname ? e->cfg->hostname : "localhost";
}

struct smtp_engine *smtp_engine_new(const struct smtp_engine_cfg *cfg, const char *client_addr)
{
	struct smtp_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->cfg = cfg;
	e->client_addr = strdup(client_addr ? client_addr : "");
	if (!e->client_addr) {
		free(e);
		return NULL;
	}
	return e;
}

void smtp_engine_free(struct smtp_engine *e)
{
	if (!e)
		return;
	smtp_engine_tx_reset(e);
	free(e->out);
	free(e->helo);
	free(e->client_addr);
	free(e);
}

void smtp_engine_start(struct smtp_engine *e)
{
	if (e->state != SMTP_STATE_INIT)
		return;
	smtp_engine_reply(e, 220, "%s ESMTP sluice", smtp_engine_hostname(e));
	e->state = SMTP_STATE_HELO;
}

enum smtp_rc smtp_engine_refuse(struct smtp_engine *e, int code, const char *text)
{
	smtp_engine_reply(e, code, "%s", text ? text : "");
	smtp_engine_close(e);
	return SMTP_RC_CLOSE;
}

void smtp_engine_close(struct smtp_engine *e)
{
	memset(&e->ev, 0, sizeof(e->ev));
	e->state = SMTP_STATE_CLOSED;
}

/* ---- output ---- */

static int smtp_out_reserve(struct smtp_engine *e, size_t n)
{
	size_t need = (size_t)e->out_len + n, cap;
	uint8_t *p;
	if (need <= e->out_cap)
		return 0;
	if (need > SMTP_OUT_MAX)
		return -ENOBUFS;
	cap = e->out_cap ? e->out_cap : SMTP_OUT_INIT;
	while (cap < need)
		cap *= 2;
	p = realloc(e->out, cap);
	if (!p)
		return -ENOMEM;
	e->out = p;
	e->out_cap = (uint32_t)cap;
	return 0;
}

/* Append whole reply lines; if they cannot be held, the session closes (a
 * client that never reads, or no memory): replies are never cut. */
void smtp_engine_reply_raw(struct smtp_engine *e, const char *s, size_t n)
{
	if (smtp_out_reserve(e, n) < 0) {
		log_warn("smtp client=%s output buffer full or no memory, closing", e->client_addr);
		smtp_engine_close(e);
		return;
	}
	memcpy(e->out + e->out_len, s, n);
	e->out_len += (uint32_t)n;
}

static void smtp_vreply(struct smtp_engine *e, int code, const char *fmt, va_list ap)
{
	char buf[SMTP_REPLY_MAX];
	int n = snprintf(buf, sizeof(buf), "%03d ", code);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(buf) - 3)
		len = sizeof(buf) - 3;
	/* Text from the caller or the client must never break the framing. */
	for (size_t i = 4; i < len; i++)
		if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\0')
			buf[i] = ' ';
	buf[len++] = '\r';
	buf[len++] = '\n';
	smtp_engine_reply_raw(e, buf, len);
}

void smtp_engine_reply(struct smtp_engine *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smtp_vreply(e, code, fmt, ap);
	va_end(ap);
}

/* A reply the client caused (4xx/5xx): counted, 421 past the limit. */
void smtp_engine_reply_error(struct smtp_engine *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smtp_vreply(e, code, fmt, ap);
	va_end(ap);
	smtp_engine_error_count(e);
}

void smtp_engine_error_count(struct smtp_engine *e)
{
	e->errors++;
	if (e->cfg->max_errors && e->errors >= e->cfg->max_errors &&
	    e->state != SMTP_STATE_CLOSED) {
		smtp_engine_reply(e, 421, "4.7.0 %s Too many errors", smtp_engine_hostname(e));
		smtp_engine_close(e);
	}
}

const uint8_t *smtp_engine_output(const struct smtp_engine *e, size_t *len)
{
	*len = e->out_len - e->out_off;
	return *len ? e->out + e->out_off : NULL;
}

void smtp_engine_output_consumed(struct smtp_engine *e, size_t n)
{
	size_t left = e->out_len - e->out_off;
	if (n > left)
		n = left;
	e->out_off += (uint32_t)n;
	if (e->out_off == e->out_len) {
		/* Drained: an idle session holds no output buffer. */
		free(e->out);
		e->out = NULL;
		e->out_len = e->out_off = e->out_cap = 0;
	}
}

/* ---- transaction ---- */

static void smtp_body_free(struct smtp_engine *e)
{
	free(e->body);
	e->body = NULL;
	e->body_len = e->body_cap = 0;
}

void smtp_engine_tx_reset(struct smtp_engine *e)
{
	/* helo and client_addr are only borrowed by the envelope. */
	e->env.helo = NULL;
	e->env.client_addr = NULL;
	envelope_free(&e->env);
	smtp_body_free(e);
	e->tx_flags = 0;
	e->chunk_left = 0;
	if (e->state != SMTP_STATE_CLOSED && e->state != SMTP_STATE_INIT)
		e->state = (e->sess_flags & SMTP_SF_HELO) ? SMTP_STATE_READY : SMTP_STATE_HELO;
}

void smtp_engine_data_begin(struct smtp_engine *e)
{
	smtp_engine_reply(e, 354, "End data with <CR><LF>.<CR><LF>");
	e->state = SMTP_STATE_DATA;
	e->sw = SW_DATA_BOL;
}

/*
 * Start reading a BDAT chunk of size octets.  skip: the command was
 * refused, the octets are read and dropped (RFC 3030 keeps the stream in
 * sync that way) and 503 follows.
 */
void smtp_engine_chunk_begin(struct smtp_engine *e, uint64_t size, bool last, bool skip)
{
	e->chunk_size = size;
	e->chunk_left = size;
	e->chunk_ret = e->state;
	e->tx_flags &= (uint8_t) ~(SMTP_TX_LAST | SMTP_TX_SKIP);
	if (last)
		e->tx_flags |= SMTP_TX_LAST;
	if (skip) {
		e->tx_flags |= SMTP_TX_SKIP;
	} else {
		e->tx_flags |= SMTP_TX_BDAT;
		/* A chunk that cannot fit: do not even start buffering it. */
		if (e->cfg->max_message_size && size > e->cfg->max_message_size - e->body_len) {
			e->tx_flags |= SMTP_TX_BIG;
			smtp_body_free(e);
		}
	}
	if (size == 0) {
		smtp_chunk_done(e);
		return;
	}
	e->state = SMTP_STATE_CHUNK;
}

/*
 * The body is complete (final dot or BDAT LAST): refuse it, or pause with
 * SMTP_EV_MESSAGE.  Either way the transaction ends here or at resume.
 */
void smtp_engine_message_done(struct smtp_engine *e)
{
	uint8_t f = e->tx_flags;
	if (f & SMTP_TX_BARE) {
		smtp_engine_tx_reset(e);
		smtp_engine_reply_error(e, 550,
					"5.6.0 Message refused: bare CR or LF in data "
					"(see RFC 5321 2.3.8)");
		return;
	}
	if (f & SMTP_TX_BIG) {
		smtp_engine_tx_reset(e);
		smtp_engine_reply_error(e, 552, "5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (f & SMTP_TX_NOMEM) {
		smtp_engine_tx_reset(e);
		smtp_engine_reply(e, 451, "4.3.0 Error: out of memory, try again later");
		return;
	}
	e->env.helo = e->helo;
	e->env.client_addr = e->client_addr;
	if (e->sess_flags & SMTP_SF_EHLO)
		e->env.protocol = e->env.smtputf8 ? "UTF8SMTP" : "ESMTP";
	else
		e->env.protocol = "SMTP";
	e->state = SMTP_STATE_MESSAGE;
	memset(&e->ev, 0, sizeof(e->ev));
	e->ev.type = SMTP_EV_MESSAGE;
	e->ev.env = &e->env;
	e->ev.body = e->body ? e->body : (const uint8_t *)"";
	e->ev.body_len = e->body_len;
}

/* ---- body ---- */

static void smtp_body_append(struct smtp_engine *e, const uint8_t *p, size_t n)
{
	uint64_t max = e->cfg->max_message_size;
	if (e->tx_flags & (SMTP_TX_BIG | SMTP_TX_NOMEM) ||
	    (e->tx_flags & SMTP_TX_BARE && !e->cfg->lenient_bare_lf) || n == 0)
		return;
	if (max && n > max - e->body_len) {
		/* Stop buffering; keep parsing to the real end of data. */
		e->tx_flags |= SMTP_TX_BIG;
		smtp_body_free(e);
		return;
	}
	if (n > e->body_cap - e->body_len) {
		size_t cap = e->body_cap ? e->body_cap : SMTP_BODY_INIT;
		uint8_t *b;
		while (cap - e->body_len < n) {
			if (cap > SIZE_MAX / 2) {
				cap = SIZE_MAX;
				break;
			}
			cap *= 2;
		}
		if (max && cap > max)
			cap = (size_t)max; /* body_len + n <= max holds here */
		b = realloc(e->body, cap);
		if (!b) {
			e->tx_flags |= SMTP_TX_NOMEM;
			smtp_body_free(e);
			return;
		}
		e->body = b;
		e->body_cap = cap;
	}
	memcpy(e->body + e->body_len, p, n);
	e->body_len += n;
}

/* A bare CR or LF in the body: refused at the end, or one CRLF (lenient). */
static void smtp_body_bare(struct smtp_engine *e)
{
	if (e->cfg->lenient_bare_lf) {
		smtp_body_append(e, (const uint8_t *)"\r\n", 2);
		return;
	}
	e->tx_flags |= SMTP_TX_BARE;
	smtp_body_free(e);
}

/*
 * BDAT octets, raw: no dot-unstuffing, but the bare CR/LF rule holds.  A CR
 * at the end of a piece waits for the next octet (SMTP_TX_RAW_CR), possibly
 * in the next chunk.  Chunk accounting is done by the caller on raw octets.
 */
static void smtp_body_raw(struct smtp_engine *e, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;
	while (p < end) {
		const uint8_t *lf, *cr, *seg;
		if (e->tx_flags & SMTP_TX_RAW_CR) {
			e->tx_flags &= (uint8_t)~SMTP_TX_RAW_CR;
			if (*p == '\n') {
				smtp_body_append(e, (const uint8_t *)"\r\n", 2);
				p++;
			} else {
				smtp_body_bare(e);
			}
			continue;
		}
		lf = memchr(p, '\n', (size_t)(end - p));
		seg = lf ? lf : end;
		cr = memchr(p, '\r', (size_t)(seg - p));
		if (lf && cr == lf - 1) {
			smtp_body_append(e, p, (size_t)(lf + 1 - p));
			p = lf + 1;
		} else if (cr) {
			smtp_body_append(e, p, (size_t)(cr - p));
			e->tx_flags |= SMTP_TX_RAW_CR;
			p = cr + 1;
		} else if (lf) {
			smtp_body_append(e, p, (size_t)(lf - p));
			smtp_body_bare(e);
			p = lf + 1;
		} else {
			smtp_body_append(e, p, (size_t)(end - p));
			p = end;
		}
	}
}

/*
 * DATA body: dot-unstuffing and the end at CRLF.CRLF only.  After a bare
 * CR or LF (normalised or not) the parser is never at the beginning of a
 * line: "\n.\r\n" must not end the data (SMTP smuggling), so it stays text.
 */
static size_t smtp_data_feed(struct smtp_engine *e, const uint8_t *p0, size_t n)
{
	const uint8_t *p = p0, *end = p0 + n;
	while (p < end) {
		switch (e->sw) {
		case SW_DATA_BOL:
			if (*p == '.') {
				e->sw = SW_DATA_DOT;
				p++;
				break;
			}
			e->sw = SW_DATA_TEXT;
			/* fall through */
		case SW_DATA_TEXT: {
			const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
			const uint8_t *seg = lf ? lf : end;
			const uint8_t *cr = memchr(p, '\r', (size_t)(seg - p));
			if (lf && cr == lf - 1) {
				/* The common case: a whole CRLF line in one copy. */
				smtp_body_append(e, p, (size_t)(lf + 1 - p));
				p = lf + 1;
				e->sw = SW_DATA_BOL;
			} else if (cr) {
				smtp_body_append(e, p, (size_t)(cr - p));
				p = cr + 1;
				e->sw = SW_DATA_CR;
			} else if (lf) {
				smtp_body_append(e, p, (size_t)(lf - p));
				smtp_body_bare(e);
				p = lf + 1;
			} else {
				smtp_body_append(e, p, (size_t)(end - p));
				p = end;
			}
			break;
		}
		case SW_DATA_CR:
			if (*p == '\n') {
				smtp_body_append(e, (const uint8_t *)"\r\n", 2);
				p++;
				e->sw = SW_DATA_BOL;
			} else {
				smtp_body_bare(e); /* this octet is read again as text */
				e->sw = SW_DATA_TEXT;
			}
			break;
		case SW_DATA_DOT:
			if (*p == '\r') {
				p++;
				e->sw = SW_DATA_DOT_CR;
			} else {
				/* Dot-unstuffing drops the dot when more text follows;
				 * a lone "." ended by a bare LF keeps it. */
				if (*p == '\n')
					smtp_body_append(e, (const uint8_t *)".", 1);
				e->sw = SW_DATA_TEXT;
			}
			break;
		case SW_DATA_DOT_CR:
			if (*p == '\n') {
				p++;
				e->sw = SW_LINE;
				smtp_engine_message_done(e);
				return (size_t)(p - p0);
			}
			/* "." then a bare CR: not the end; keep the dot. */
			smtp_body_append(e, (const uint8_t *)".", 1);
			smtp_body_bare(e);
			e->sw = SW_DATA_TEXT;
			break;
		default:
			SLUICE_ASSERT(0);
		}
	}
	return n;
}

static size_t smtp_chunk_feed(struct smtp_engine *e, const uint8_t *p, size_t n)
{
	size_t k = n < e->chunk_left ? n : (size_t)e->chunk_left;
	if (!(e->tx_flags & SMTP_TX_SKIP))
		smtp_body_raw(e, p, k);
	e->chunk_left -= k;
	if (e->chunk_left == 0)
		smtp_chunk_done(e);
	return k;
}

/* The last octet of a chunk was read (or the chunk was empty). */
static void smtp_chunk_done(struct smtp_engine *e)
{
	if (e->tx_flags & SMTP_TX_SKIP) {
		e->tx_flags &= (uint8_t) ~(SMTP_TX_SKIP | SMTP_TX_LAST);
		e->state = e->chunk_ret;
		smtp_engine_reply_error(e, 503,
					"5.5.1 Error: BDAT out of sequence or no valid recipients");
		return;
	}
	if (e->tx_flags & SMTP_TX_LAST) {
		if (e->tx_flags & SMTP_TX_RAW_CR) {
			e->tx_flags &= (uint8_t)~SMTP_TX_RAW_CR;
			smtp_body_bare(e); /* the message ends in a bare CR */
		}
		smtp_engine_message_done(e);
		return;
	}
	e->state = SMTP_STATE_BDAT;
	smtp_engine_reply(e, 250, "2.0.0 %llu octets received", (unsigned long long)e->chunk_size);
}

/* ---- command lines ---- */

/*
 * Collect one command line.  Only CRLF ends a line; a bare LF ends it as
 * an invalid line (500 5.5.2, so a smuggled "\n" never splits a command);
 * a bare CR or a NUL inside makes it invalid; past SMTP_LINE_MAX octets
 * the rest is discarded and the line gets 500 5.5.2 at its CRLF.
 */
static size_t smtp_line_feed(struct smtp_engine *e, const uint8_t *p, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (e->sw == SW_LINE_CR) {
			if (c == '\n') {
				smtp_line_done(e);
				return i + 1;
			}
			/* Bare CR: keep going with this octet as a normal one. */
			e->line_flags |= SMTP_LF_BARE_CR;
			e->sw = SW_LINE;
		}
		if (c == '\r') {
			e->sw = SW_LINE_CR;
			continue;
		}
		if (c == '\n') {
			e->line_flags |= SMTP_LF_BARE_LF;
			smtp_line_done(e);
			return i + 1;
		}
		if (c == '\0')
			e->line_flags |= SMTP_LF_NUL;
		if (e->line_len < SMTP_LINE_MAX - 2)
			e->line[e->line_len++] = (char)c;
		else
			e->line_flags |= SMTP_LF_TOOLONG;
	}
	return n;
}

static void smtp_line_done(struct smtp_engine *e)
{
	uint8_t f = e->line_flags;
	e->line[e->line_len] = '\0';
	e->line_len = 0;
	e->line_flags = 0;
	e->sw = SW_LINE;
	if (f & SMTP_LF_TOOLONG)
		smtp_engine_reply_error(e, 500, "5.5.2 Line too long");
	else if (f & SMTP_LF_BARE_LF)
		smtp_engine_reply_error(e, 500, "5.5.2 Bare <LF> not allowed");
	else if (f & SMTP_LF_BARE_CR)
		smtp_engine_reply_error(e, 500, "5.5.2 Bare <CR> not allowed");
	else if (f & SMTP_LF_NUL)
		smtp_engine_reply_error(e, 500, "5.5.2 NUL not allowed in a command");
	else
		smtp_engine_cmd_dispatch(e);
}

/* ---- public ---- */

size_t smtp_engine_feed(struct smtp_engine *e, const uint8_t *buf, size_t len, enum smtp_rc *rc)
{
	size_t i = 0;
	while (i < len && e->ev.type == SMTP_EV_NONE && e->state != SMTP_STATE_CLOSED) {
		switch (e->state) {
		case SMTP_STATE_DATA:
			i += smtp_data_feed(e, buf + i, len - i);
			break;
		case SMTP_STATE_CHUNK:
			i += smtp_chunk_feed(e, buf + i, len - i);
			break;
		default:
			i += smtp_line_feed(e, buf + i, len - i);
			break;
		}
	}
	if (e->state == SMTP_STATE_CLOSED)
		*rc = SMTP_RC_CLOSE;
	else if (e->ev.type != SMTP_EV_NONE)
		*rc = SMTP_RC_EVENT;
	else
		*rc = SMTP_RC_OK;
	return i;
}

const struct smtp_event *smtp_engine_event(const struct smtp_engine *e)
{
	return e->ev.type == SMTP_EV_NONE ? NULL : &e->ev;
}

static void smtp_resume_mail(struct smtp_engine *e, int code, const char *text)
{
	e->env.sender = strdup(e->ev.addr);
	e->env.envid = e->pend_envid ? strdup(e->pend_envid) : NULL;
	if (!e->env.sender || (e->pend_envid && !e->env.envid)) {
		smtp_engine_tx_reset(e);
		smtp_engine_reply(e, 451, "4.3.0 Error: out of memory, try again later");
		return;
	}
	e->env.size_hint = e->pend_size;
	e->env.ret = e->pend_ret;
	e->env.body = e->pend_body;
	e->env.smtputf8 = e->pend_utf8;
	e->state = SMTP_STATE_RCPT;
	smtp_engine_reply(e, code, "%s", text);
}

static void smtp_resume_rcpt(struct smtp_engine *e, int code, const char *text)
{
	if (envelope_add_rcpt(&e->env, e->ev.addr, e->ev.orcpt, e->ev.notify) < 0) {
		smtp_engine_reply(e, 451, "4.3.0 Error: out of memory, try again later");
		return;
	}
	smtp_engine_reply(e, code, "%s", text);
}

enum smtp_rc smtp_engine_resume(struct smtp_engine *e, int code, const char *text, bool count_error)
{
	enum smtp_event_type type = e->ev.type;
	SLUICE_ASSERT(code >= 200 && code <= 599);
	if (!text)
		text = "";
	if (e->state == SMTP_STATE_CLOSED)
		return SMTP_RC_CLOSE;
	if (type == SMTP_EV_NONE)
		return SMTP_RC_OK;
	if (type == SMTP_EV_MAIL && code < 300) {
		smtp_resume_mail(e, code, text);
	} else if (type == SMTP_EV_RCPT && code < 300) {
		smtp_resume_rcpt(e, code, text);
	} else {
		if (type == SMTP_EV_MESSAGE)
			smtp_engine_tx_reset(e);
		smtp_engine_reply(e, code, "%s", text);
	}
	memset(&e->ev, 0, sizeof(e->ev));
	e->pend_envid = NULL;
	if (code == 421)
		smtp_engine_close(e);
	else if (code >= 400 && count_error)
		smtp_engine_error_count(e);
	return e->state == SMTP_STATE_CLOSED ? SMTP_RC_CLOSE : SMTP_RC_OK;
}

enum smtp_timeout smtp_engine_timeout_kind(const struct smtp_engine *e)
{
	if (e->ev.type != SMTP_EV_NONE || e->state == SMTP_STATE_CLOSED)
		return SMTP_TIMEOUT_NONE;
	if (e->state == SMTP_STATE_DATA || e->state == SMTP_STATE_CHUNK)
		return SMTP_TIMEOUT_DATA_BLOCK;
	return SMTP_TIMEOUT_COMMAND;
}

enum smtp_rc smtp_engine_timeout(struct smtp_engine *e)
{
	if (e->state != SMTP_STATE_CLOSED) {
		smtp_engine_reply(e, 421, "4.4.2 %s Error: timeout exceeded",
				  smtp_engine_hostname(e));
		smtp_engine_close(e);
	}
	return SMTP_RC_CLOSE;
}

enum smtp_rc smtp_engine_shutdown(struct smtp_engine *e)
{
	if (e->state != SMTP_STATE_CLOSED) {
		smtp_engine_reply(e, 421, "4.3.2 %s Service shutting down",
				  smtp_engine_hostname(e));
		smtp_engine_close(e);
	}
	return SMTP_RC_CLOSE;
}

bool smtp_engine_in_transaction(const struct smtp_engine *e)
{
	switch (e->state) {
	case SMTP_STATE_RCPT:
	case SMTP_STATE_DATA:
	case SMTP_STATE_BDAT:
	case SMTP_STATE_MESSAGE:
		return true;
	case SMTP_STATE_CHUNK:
		return !(e->tx_flags & SMTP_TX_SKIP) || e->chunk_ret == SMTP_STATE_RCPT ||
		       e->chunk_ret == SMTP_STATE_BDAT;
	default:
		return false;
	}
}

static size_t smtp_str_mem(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

size_t smtp_engine_memory(const struct smtp_engine *e)
{
	size_t n = sizeof(*e) + e->out_cap + e->body_cap;
	n += smtp_str_mem(e->client_addr) + smtp_str_mem(e->helo);
	n += smtp_str_mem(e->env.sender) + smtp_str_mem(e->env.envid);
	n += (size_t)e->env.rcpts_cap * sizeof(struct envelope_rcpt);
	for (uint32_t i = 0; i < e->env.nrcpts; i++)
		n += smtp_str_mem(e->env.rcpts[i].addr) + smtp_str_mem(e->env.rcpts[i].orcpt);
	return n;
}
