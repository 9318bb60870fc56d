/*
 * smtp_client: the sans-I/O SMTP/LMTP client engine (see smtp_client.h).
 *
 * A session is GREETING -> HELLO -> READY <-> BUSY -> QUITTING -> CLOSED.
 * A transaction is a fixed list of steps, [RSET] MAIL RCPT... DATA, then
 * the body and the reply (LMTP: replies) to its final dot.  With
 * PIPELINING every step is queued at once (RFC 2920 3.1: DATA last);
 * without it the next step is queued when the previous one's reply came.
 * Either way replies are matched to steps in order, so one counter each
 * (queued, replied) is the whole matching state.
 */
#include "control/smtp_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest EHLO name we accept (RFC 1035 domain, or an address literal). */
#define HELO_NAME_MAX 255
/* Room for one short command (EHLO/HELO/LHLO/RSET/QUIT). */
#define SHORT_CMD_MAX (HELO_NAME_MAX + 16)
/* Output buffer floor: one body slice plus the final CRLF.CRLF. */
#define OUT_MIN (SMTP_CLIENT_SLICE + 16)

enum hello_cmd { HELLO_EHLO, HELLO_HELO, HELLO_LHLO };

/* Where a transaction is. */
enum tx_phase {
	TX_CMDS, /* steps queued and answered in order */
	TX_BODY, /* 354 came: the body is being written */
	TX_DOT,	 /* the final dot is written: waiting for its reply(ies) */
};

enum tx_step { STEP_RSET, STEP_MAIL, STEP_RCPT, STEP_DATA };

/* Per-recipient progress in the current transaction. */
enum rcpt_state {
	RCPT_PENDING = 0, /* no result yet, RCPT not accepted (yet) */
	RCPT_ACCEPTED,	  /* RCPT got 2xx: the result comes after data */
	RCPT_DONE,	  /* rcpt_result has run */
};

/* The reply being read. */
struct client_reply {
	uint16_t code;			      /* its code (all lines share it) */
	unsigned nlines;		      /* lines so far */
	char enh[16];			      /* enhanced code of the first line, or "" */
	char text[SMTP_CLIENT_TEXT_MAX + 1]; /* cleaned, joined text */
	size_t text_len;		      /* octets in text, NUL excluded */
};

struct smtp_client {
	struct smtp_client_cfg cfg;	  /* timeouts resolved, helo_name our copy */
	const struct smtp_client_ops *ops; /* callbacks */
	void *arg;			  /* their argument */
	enum smtp_client_state state;	  /* the session */
	enum hello_cmd hello;		  /* which hello is outstanding (HELLO) */
	struct smtp_ehlo_exts exts;	  /* what EHLO/LHLO offered */
	bool pipelining;		  /* offered and allowed */
	bool need_rset;			  /* the last transaction may have left state */
	bool proto_error;		  /* sticky: feed keeps returning -EPROTO */

	struct smtp_reply_parser parser;  /* between replies, or inside one */
	char line[SMTP_CLIENT_LINE_MAX];  /* the line being read, CRLF included */
	size_t line_len;		  /* octets in line */
	struct client_reply rp;		  /* the reply being read */

	uint8_t *out;	/* pending output: commands, or one body slice */
	size_t out_len; /* octets in out */
	size_t out_off; /* octets of out already written */
	size_t out_cap; /* allocated octets, at least OUT_MIN */

	bool tx_active;		  /* a message was started and msg_done has not run */
	struct smtp_client_msg msg; /* the caller's message (pointers stay theirs) */
	uint8_t *rstate;	  /* enum rcpt_state per msg.rcpts entry */
	uint32_t rstate_cap;	  /* allocated entries in rstate */
	uint32_t naccepted;	  /* RCPTs that got 2xx */
	uint32_t lmtp_next;	  /* LMTP: first recipient that may await a data reply */
	bool has_rset;		  /* step 0 is RSET */
	bool mail_failed;	  /* MAIL refused: later replies are only consumed */
	bool discard;		  /* 354 with nobody accepted: send a lone dot */
	bool body8;		  /* the body has octets >= 0x80 */
	bool utf8;		  /* the message needs SMTPUTF8 (msg_needs_utf8) */
	unsigned nsteps;	  /* [RSET] MAIL RCPT*n DATA */
	unsigned queued;	  /* steps put in out */
	unsigned replied;	  /* steps answered */
	enum tx_phase phase;	  /* see enum tx_phase */
	size_t body_pos;	  /* body octets dot-stuffed so far */
	bool bol;		  /* body_pos is at the start of a line */
	bool trailer_queued;	  /* the final (CRLF).CRLF is in out */

	bool has_serr;				/* session_error is set */
	struct smtp_client_result serr;		/* why the session ended before READY */
	char serr_text[SMTP_CLIENT_TEXT_MAX + 1]; /* its text */
	char ltext[SMTP_CLIENT_TEXT_MAX + 1];	/* text of a local result */
};

static const char *const state_names[] = {
    [SMTP_CLIENT_GREETING] = "greeting", [SMTP_CLIENT_HELLO] = "hello",
    [SMTP_CLIENT_READY] = "ready",	 [SMTP_CLIENT_BUSY] = "busy",
    [SMTP_CLIENT_QUITTING] = "quitting", [SMTP_CLIENT_CLOSED] = "closed",
};

static const char *const hello_names[] = {"EHLO", "HELO", "LHLO"};

const char *smtp_client_state_str(enum smtp_client_state s)
{
	if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[s];
}

/* ---- output ---------------------------------------------------------- */

/* Make room for n more octets.  0 or -ENOMEM. */
static int out_reserve(struct smtp_client *c, size_t n)
{
	size_t cap = c->out_cap;
	uint8_t *p;

	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n <= cap)
		return 0;
	while (cap < c->out_len + n)
		cap *= 2;
	p = realloc(c->out, cap);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Append; the caller reserved the room. */
static void out_put(struct smtp_client *c, const char *s, size_t n)
{
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

static void out_puts(struct smtp_client *c, const char *s)
{
	out_put(c, s, strlen(s));
}

static void out_putu(struct smtp_client *c, uint64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);

	out_put(c, b, (size_t)n);
}

/* ---- results ---------------------------------------------------------- */

/* RFC 3463 "class.subject.detail" at the start of text, class matching the
 * reply's first digit, followed by SP or the end.  Returns its length (0
 * if none) and copies it to enh. */
static size_t enh_parse(const char *t, size_t len, uint16_t code, char enh[16])
{
	size_t i = 0;

	if (len < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;

		while (i < len && i - start < 3 && t[i] >= '0' && t[i] <= '9')
			i++;
		if (i == start || (i < len && t[i] >= '0' && t[i] <= '9'))
			return 0;
		if (part == 0 && (i >= len || t[i++] != '.'))
			return 0;
	}
	if (i < len && t[i] != ' ')
		return 0;
	memcpy(enh, t, i);
	enh[i] = '\0';
	return i;
}

static void reply_begin(struct smtp_client *c, uint16_t code)
{
	c->rp.code = code;
	c->rp.nlines = 0;
	c->rp.enh[0] = '\0';
	c->rp.text_len = 0;
	c->rp.text[0] = '\0';
}

/* Clean one line's text into the joined text: controls go (log and DSN
 * safety), non-ASCII becomes '?', the cap is hard. */
static void reply_add_text(struct smtp_client *c, const char *t, size_t len, bool first)
{
	struct client_reply *rp = &c->rp;
	char enh[16];
	size_t skip = enh_parse(t, len, rp->code, enh);

	if (first && skip)
		memcpy(rp->enh, enh, sizeof(enh));
	/* Servers repeat the code on every line; it is in enh once. */
	if (skip) {
		t += skip;
		len -= skip;
		while (len && *t == ' ')
			t++, len--;
	}
	if (!first && len && rp->text_len && rp->text_len + 2 <= SMTP_CLIENT_TEXT_MAX) {
		rp->text[rp->text_len++] = ';';
		rp->text[rp->text_len++] = ' ';
	}
	for (size_t i = 0; i < len && rp->text_len < SMTP_CLIENT_TEXT_MAX; i++) {
		unsigned char ch = (unsigned char)t[i];

		if (ch < 0x20 || ch == 0x7f)
			continue;
		rp->text[rp->text_len++] = ch >= 0x80 ? '?' : (char)ch;
	}
	rp->text[rp->text_len] = '\0';
}

/* The reply just read, as a result. */
static struct smtp_client_result reply_result(const struct smtp_client *c, const char *stage)
{
	struct smtp_client_result r = {
	    .code = c->rp.code,
	    .text = c->rp.text,
	    .local = false,
	    .stage_state = c->state,
	    .stage = stage,
	};

	if (c->rp.enh[0])
		memcpy(r.enh, c->rp.enh, sizeof(r.enh));
	else
		snprintf(r.enh, sizeof(r.enh), "%u.0.0", (unsigned)(c->rp.code / 100));
	return r;
}

/* A decision of ours; the text lives in c->ltext until the next one. */
static struct smtp_client_result local_result(struct smtp_client *c, uint16_t code,
					      const char *enh, const char *stage, const char *fmt,
					      ...) __attribute__((format(printf, 5, 6)));
static struct smtp_client_result local_result(struct smtp_client *c, uint16_t code,
					      const char *enh, const char *stage, const char *fmt,
					      ...)
{
	struct smtp_client_result r = {
	    .code = code, .text = c->ltext, .local = true, .stage_state = c->state, .stage = stage};
	va_list ap;

	snprintf(r.enh, sizeof(r.enh), "%s", enh);
	va_start(ap, fmt);
	vsnprintf(c->ltext, sizeof(c->ltext), fmt, ap);
	va_end(ap);
	return r;
}

static void set_session_error(struct smtp_client *c, const struct smtp_client_result *r)
{
	if (c->has_serr)
		return;
	c->serr = *r;
	snprintf(c->serr_text, sizeof(c->serr_text), "%s", r->text);
	c->serr.text = c->serr_text;
	c->has_serr = true;
}

static void rcpt_deliver(struct smtp_client *c, uint32_t k, const struct smtp_client_result *r)
{
	if (c->rstate[k] == RCPT_DONE)
		return;
	c->rstate[k] = RCPT_DONE;
	c->ops->rcpt_result(c->arg, k, r);
}

/* Every recipient still in state from (PENDING and ACCEPTED: any). */
static void rcpt_deliver_open(struct smtp_client *c, const struct smtp_client_result *r)
{
	for (uint32_t k = 0; k < c->msg.nrcpts; k++)
		rcpt_deliver(c, k, r);
}

static void rcpt_deliver_accepted(struct smtp_client *c, const struct smtp_client_result *r)
{
	for (uint32_t k = 0; k < c->msg.nrcpts; k++)
		if (c->rstate[k] == RCPT_ACCEPTED)
			rcpt_deliver(c, k, r);
}

/* The transaction is over: READY (unless the session ended) and msg_done,
 * last, because msg_done may start the next message. */
static void tx_finish(struct smtp_client *c)
{
	c->tx_active = false;
	if (c->state == SMTP_CLIENT_BUSY)
		c->state = SMTP_CLIENT_READY;
	c->ops->msg_done(c->arg);
}

/* CLOSED, and whatever was not written yet is dropped: nothing may go
 * out after the session ended (an unwritten QUIT included). */
static void session_close(struct smtp_client *c)
{
	c->state = SMTP_CLIENT_CLOSED;
	c->out_len = c->out_off = 0;
}

/* The session ends now: output dropped, CLOSED, open recipients get r,
 * and before READY r becomes the session error. */
static void session_fail(struct smtp_client *c, const struct smtp_client_result *r)
{
	enum smtp_client_state was = c->state;

	session_close(c);
	if (was == SMTP_CLIENT_GREETING || was == SMTP_CLIENT_HELLO)
		set_session_error(c, r);
	if (c->tx_active) {
		rcpt_deliver_open(c, r);
		tx_finish(c);
	}
}

/* ---- transaction steps --------------------------------------------- */

static enum tx_step tx_step_at(const struct smtp_client *c, unsigned i, uint32_t *k)
{
	unsigned base = c->has_rset ? 1 : 0;

	if (i < base)
		return STEP_RSET;
	if (i == base)
		return STEP_MAIL;
	if (i <= base + c->msg.nrcpts) {
		*k = i - base - 1;
		return STEP_RCPT;
	}
	return STEP_DATA;
}

static const char *step_name(enum tx_step s)
{
	static const char *const names[] = {"RSET", "MAIL", "RCPT", "DATA"};

	return names[s];
}

/* What the engine waits for now, for texts and timeouts. */
static const char *waiting_for(const struct smtp_client *c)
{
	uint32_t k;

	switch (c->state) {
	case SMTP_CLIENT_GREETING:
		return "greeting";
	case SMTP_CLIENT_HELLO:
		return hello_names[c->hello];
	case SMTP_CLIENT_BUSY:
		if (c->phase == TX_BODY)
			return "DATA";
		if (c->phase == TX_DOT)
			return "end of data";
		return step_name(tx_step_at(c, c->replied, &k));
	case SMTP_CLIENT_QUITTING:
		return "QUIT";
	default:
		return "nothing";
	}
}

static const char *const notify_words[] = {"SUCCESS", "FAILURE", "DELAY"};
static const uint8_t notify_bits[] = {ENVELOPE_NOTIFY_SUCCESS, ENVELOPE_NOTIFY_FAILURE,
				      ENVELOPE_NOTIFY_DELAY};

/* Octets the commands of step s need at most. */
static size_t step_size(const struct smtp_client *c, enum tx_step s, uint32_t k)
{
	const struct envelope *env = c->msg.env;
	const struct envelope_rcpt *r;

	switch (s) {
	case STEP_MAIL:
		return 128 + strlen(env->sender) + (env->envid ? strlen(env->envid) : 0);
	case STEP_RCPT:
		r = &env->rcpts[c->msg.rcpts[k]];
		return 96 + strlen(r->addr) + (r->orcpt ? strlen(r->orcpt) : 0);
	default:
		return 8;
	}
}

static void put_mail(struct smtp_client *c)
{
	const struct envelope *env = c->msg.env;
	unsigned f = c->exts.flags;

	out_puts(c, "MAIL FROM:<");
	out_puts(c, env->sender);
	out_puts(c, ">");
	if (f & SMTP_EXT_SIZE) { /* RFC 1870 */
		out_puts(c, " SIZE=");
		out_putu(c, c->msg.body_len);
	}
	if ((f & SMTP_EXT_8BITMIME) && (env->body == ENVELOPE_BODY_8BITMIME || c->body8))
		out_puts(c, " BODY=8BITMIME"); /* RFC 6152 */
	if ((f & SMTP_EXT_SMTPUTF8) && (env->smtputf8 || c->utf8))
		out_puts(c, " SMTPUTF8"); /* RFC 6531 3.4 */
	if (f & SMTP_EXT_DSN) {		  /* RFC 3461 4.3, 4.4 */
		if (env->ret == ENVELOPE_RET_FULL)
			out_puts(c, " RET=FULL");
		else if (env->ret == ENVELOPE_RET_HDRS)
			out_puts(c, " RET=HDRS");
		if (env->envid) {
			out_puts(c, " ENVID=");
			out_puts(c, env->envid);
		}
	}
	out_puts(c, "\r\n");
}

static void put_rcpt(struct smtp_client *c, uint32_t k)
{
	const struct envelope_rcpt *r = &c->msg.env->rcpts[c->msg.rcpts[k]];

	out_puts(c, "RCPT TO:<");
	out_puts(c, r->addr);
	out_puts(c, ">");
	if (c->exts.flags & SMTP_EXT_DSN) { /* RFC 3461 4.1, 4.2 */
		if (r->notify & ENVELOPE_NOTIFY_NEVER) {
			out_puts(c, " NOTIFY=NEVER");
		} else if (r->notify) {
			const char *sep = " NOTIFY=";

			for (size_t i = 0; i < 3; i++) {
				if (!(r->notify & notify_bits[i]))
					continue;
				out_puts(c, sep);
				out_puts(c, notify_words[i]);
				sep = ",";
			}
		}
		if (r->orcpt) {
			out_puts(c, " ORCPT=");
			out_puts(c, r->orcpt);
		}
	}
	out_puts(c, "\r\n");
}

/* Queue step i; the room was reserved by smtp_client_send. */
static void tx_queue_step(struct smtp_client *c, unsigned i)
{
	uint32_t k = 0;

	switch (tx_step_at(c, i, &k)) {
	case STEP_RSET:
		out_puts(c, "RSET\r\n");
		break;
	case STEP_MAIL:
		put_mail(c);
		break;
	case STEP_RCPT:
		put_rcpt(c, k);
		break;
	case STEP_DATA:
		out_puts(c, "DATA\r\n");
		break;
	}
	c->queued = i + 1;
}

/* ---- the body ------------------------------------------------------ */

/* Dot-stuff the next slice of the body into the (empty) output; the final
 * (CRLF).CRLF when the body is all out.  RFC 5321 4.5.2. */
static void body_fill(struct smtp_client *c)
{
	const uint8_t *b = c->msg.body;
	size_t blen = c->discard ? 0 : c->msg.body_len;
	size_t room = SMTP_CLIENT_SLICE;

	c->out_off = c->out_len = 0;
	while (c->body_pos < blen && room >= 2) {
		size_t n = blen - c->body_pos;
		const uint8_t *nl;

		if (c->bol && b[c->body_pos] == '.') {
			c->out[c->out_len++] = '.';
			room--; /* room >= 1 still: the dot's own octet goes next */
		}
		if (n > room)
			n = room;
		/* XXX: a bare LF also counts as a line end here: the body never
		 * has one (the engine refuses them), and if it did, a server
		 * that ends lines on LF must not see a lone dot line. */
		nl = memchr(b + c->body_pos, '\n', n);
		if (nl)
			n = (size_t)(nl - (b + c->body_pos)) + 1;
		memcpy(c->out + c->out_len, b + c->body_pos, n);
		c->out_len += n;
		room -= n;
		c->body_pos += n;
		c->bol = nl != NULL;
	}
	if (c->body_pos < blen)
		return;
	/* Empty body: a lone ".\r\n" (an empty message).  Otherwise end the
	 * last line first when it lacks its CRLF. */
	if (blen && !(blen >= 2 && b[blen - 2] == '\r' && b[blen - 1] == '\n')) {
		memcpy(c->out + c->out_len, "\r\n", 2);
		c->out_len += 2;
	}
	memcpy(c->out + c->out_len, ".\r\n", 3);
	c->out_len += 3;
	c->trailer_queued = true;
}

/* ---- replies ------------------------------------------------------- */

static int protocol_error(struct smtp_client *c, const char *what)
{
	struct smtp_client_result r = local_result(
	    c, 421, "4.5.0", "connection", "protocol error: %s (waiting for reply to %s)", what,
	    waiting_for(c));

	c->proto_error = true;
	session_fail(c, &r);
	return -EPROTO;
}

/* Queue a short command (EHLO, HELO, LHLO, QUIT) with an argument. */
static int queue_short(struct smtp_client *c, const char *verb, const char *arg)
{
	if (out_reserve(c, SHORT_CMD_MAX) < 0)
		return -ENOMEM;
	out_puts(c, verb);
	if (arg) {
		out_puts(c, " ");
		out_puts(c, arg);
	}
	out_puts(c, "\r\n");
	return 0;
}

static void fail_nomem(struct smtp_client *c)
{
	struct smtp_client_result r =
	    local_result(c, 421, "4.3.0", "connection", "out of memory for the output buffer");

	session_fail(c, &r);
}

/* Politely end a session that cannot go on: QUIT, then wait for 221/EOF. */
static void session_quit(struct smtp_client *c)
{
	if (queue_short(c, "QUIT", NULL) < 0) {
		fail_nomem(c);
		return;
	}
	c->state = SMTP_CLIENT_QUITTING;
}

static void send_hello(struct smtp_client *c, enum hello_cmd h)
{
	c->hello = h;
	c->state = SMTP_CLIENT_HELLO;
	memset(&c->exts, 0, sizeof(c->exts));
	if (queue_short(c, hello_names[h], c->cfg.helo_name) < 0)
		fail_nomem(c);
}

static int on_greeting(struct smtp_client *c)
{
	struct smtp_client_result r;

	if (c->rp.code == 220) {
		send_hello(c, c->cfg.proto == SMTP_CLIENT_LMTP ? HELLO_LHLO : HELLO_EHLO);
		return 0;
	}
	if (c->rp.code < 400)
		return protocol_error(c, "greeting neither 220 nor 4xx/5xx");
	/* RFC 5321 3.1: the client should QUIT after a 554 greeting; the
	 * caller decides what a 5xx greeting means for the message. */
	r = reply_result(c, "greeting");
	set_session_error(c, &r);
	session_quit(c);
	return 0;
}

static int on_hello(struct smtp_client *c)
{
	unsigned cls = c->rp.code / 100;
	struct smtp_client_result r;

	if (cls == 3)
		return protocol_error(c, "3xx reply to hello");
	if (cls == 2) {
		if (c->hello == HELLO_HELO)
			memset(&c->exts, 0, sizeof(c->exts));
		c->pipelining = (c->exts.flags & SMTP_EXT_PIPELINING) && !c->cfg.no_pipelining;
		c->state = SMTP_CLIENT_READY;
		return 0;
	}
	/* RFC 5321 4.1.4: a server that does not know EHLO gets HELO. */
	if (c->hello == HELLO_EHLO && cls == 5) {
		send_hello(c, HELLO_HELO);
		return 0;
	}
	r = reply_result(c, hello_names[c->hello]);
	set_session_error(c, &r);
	session_quit(c);
	return 0;
}

/* No RCPT got through: nothing to send; the server still holds the
 * transaction that MAIL opened, so the next one starts with RSET. */
static void tx_done_nobody(struct smtp_client *c)
{
	c->need_rset = true;
	tx_finish(c);
}

/* Lockstep: after a reply, queue the next step or end. */
static void tx_lockstep_next(struct smtp_client *c)
{
	uint32_t k;

	if (c->pipelining || c->queued != c->replied || c->replied >= c->nsteps)
		return;
	if (tx_step_at(c, c->replied, &k) == STEP_DATA && c->naccepted == 0) {
		tx_done_nobody(c);
		return;
	}
	tx_queue_step(c, c->replied);
}

static int on_data_reply(struct smtp_client *c)
{
	struct smtp_client_result r;
	bool nobody = c->mail_failed || c->naccepted == 0;

	if (c->rp.code == 354) {
		if (nobody && c->cfg.proto == SMTP_CLIENT_LMTP)
			/* RFC 2033 4.2: no reply would follow the dot. */
			return protocol_error(c, "354 to DATA with no recipient accepted");
		/* RFC 2920 3.1: a 354 although every RCPT failed still needs
		 * the dot; its reply is then ignored. */
		c->discard = nobody;
		c->phase = TX_BODY;
		c->body_pos = 0;
		c->bol = true;
		c->trailer_queued = false;
		return 0;
	}
	if (c->rp.code / 100 < 4)
		return protocol_error(c, "DATA reply neither 354 nor 4xx/5xx");
	if (!nobody) {
		r = reply_result(c, "DATA");
		rcpt_deliver_accepted(c, &r);
	}
	/* With pipelining and nobody accepted this is the expected 503/554
	 * (RFC 2920 3.1): ignored. */
	tx_done_nobody(c);
	return 0;
}

static int on_dot_reply(struct smtp_client *c)
{
	struct smtp_client_result r;
	bool ok = c->rp.code / 100 == 2;

	if (c->rp.code / 100 == 3)
		return protocol_error(c, "3xx reply to end of data");
	if (c->discard) {
		tx_done_nobody(c);
		return 0;
	}
	r = reply_result(c, "end of data");
	if (c->cfg.proto == SMTP_CLIENT_SMTP) {
		rcpt_deliver_accepted(c, &r);
		c->need_rset = !ok;
		tx_finish(c);
		return 0;
	}
	/* RFC 2033 4.2: one reply per accepted recipient, in RCPT order. */
	while (c->lmtp_next < c->msg.nrcpts && c->rstate[c->lmtp_next] != RCPT_ACCEPTED)
		c->lmtp_next++;
	if (c->lmtp_next == c->msg.nrcpts)
		return protocol_error(c, "more end-of-data replies than recipients");
	if (ok)
		c->need_rset = false;
	rcpt_deliver(c, c->lmtp_next, &r);
	while (c->lmtp_next < c->msg.nrcpts && c->rstate[c->lmtp_next] != RCPT_ACCEPTED)
		c->lmtp_next++;
	if (c->lmtp_next == c->msg.nrcpts)
		tx_finish(c);
	return 0;
}

static int on_tx_reply(struct smtp_client *c)
{
	unsigned cls = c->rp.code / 100;
	struct smtp_client_result r;
	uint32_t k = 0;
	enum tx_step s;

	if (c->phase == TX_DOT)
		return on_dot_reply(c);
	s = tx_step_at(c, c->replied, &k);
	if (s == STEP_DATA) {
		c->replied++;
		return on_data_reply(c);
	}
	if (cls == 3)
		return protocol_error(c, "3xx reply");
	c->replied++;
	switch (s) {
	case STEP_RSET:
		if (cls != 2) {
			r = local_result(c, 421, "4.4.2", "RSET", "RSET refused: %u %s",
					 c->rp.code, c->rp.text);
			session_fail(c, &r);
			return 0;
		}
		break;
	case STEP_MAIL:
		if (cls != 2) {
			r = reply_result(c, "MAIL");
			rcpt_deliver_open(c, &r);
			c->mail_failed = true;
			if (!c->pipelining) {
				/* RFC 5321 4.1.1.2: a refused MAIL opened no
				 * transaction, so the next needs no RSET.  (Pipelined,
				 * the RCPTs already sent keep the RSET: a server may
				 * have taken them anyway.) */
				c->need_rset = false;
				tx_finish(c);
				return 0;
			}
		}
		break;
	case STEP_RCPT:
		if (c->mail_failed)
			break; /* pipelined after a failed MAIL: 503, already decided */
		if (cls == 2) {
			c->rstate[k] = RCPT_ACCEPTED;
			c->naccepted++;
		} else {
			r = reply_result(c, "RCPT");
			rcpt_deliver(c, k, &r);
		}
		break;
	case STEP_DATA:
		break;
	}
	tx_lockstep_next(c);
	return 0;
}

/* Does the engine wait for a reply now? */
static bool awaiting_reply(const struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_CLIENT_GREETING:
	case SMTP_CLIENT_HELLO:
	case SMTP_CLIENT_QUITTING:
		return true;
	case SMTP_CLIENT_BUSY:
		if (c->phase == TX_CMDS)
			return c->replied < c->queued;
		return c->phase == TX_DOT;
	default:
		return false;
	}
}

static int on_reply(struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_CLIENT_GREETING:
		return on_greeting(c);
	case SMTP_CLIENT_HELLO:
		return on_hello(c);
	case SMTP_CLIENT_BUSY:
		return on_tx_reply(c);
	case SMTP_CLIENT_QUITTING:
		session_close(c); /* 221, or anything: we are done */
		return 0;
	default:
		return protocol_error(c, "reply nobody asked for");
	}
}

/* One whole line (CRLF included, or not: then it is malformed). */
static int on_line(struct smtp_client *c, const char *line, size_t len)
{
	struct smtp_reply_line rl;
	int rc;

	if (c->parser.code == 0 && !awaiting_reply(c))
		return protocol_error(c, "reply nobody asked for");
	rc = smtp_reply_parse_line(&c->parser, line, len, &rl);
	if (rc < 0 && c->state == SMTP_CLIENT_QUITTING) {
		session_close(c); /* after QUIT nothing matters */
		return 0;
	}
	if (rc < 0)
		return protocol_error(c, "malformed reply line");
	if (rl.first)
		reply_begin(c, rl.code);
	if (++c->rp.nlines > SMTP_CLIENT_REPLY_LINES)
		return protocol_error(c, "too many lines in one reply");
	/* The EHLO/LHLO keywords, from a 2xx reply only (RFC 5321 4.1.1.1). */
	if (c->state == SMTP_CLIENT_HELLO && c->hello != HELLO_HELO && rl.code / 100 == 2 &&
	    !rl.first)
		smtp_ehlo_ext_line(&c->exts, rl.text, rl.text_len);
	reply_add_text(c, rl.text, rl.text_len, rl.first);
	return rc == 1 ? on_reply(c) : 0;
}

/* ---- public API ------------------------------------------------------ */

static unsigned or_default(unsigned v, unsigned def)
{
	return v ? v : def;
}

static bool text_ok(const char *s, bool allow_space)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch == 0x7f || (!allow_space && ch == ' '))
			return false;
	}
	return true;
}

struct smtp_client *smtp_client_new(const struct smtp_client_cfg *cfg,
				    const struct smtp_client_ops *ops, void *arg)
{
	struct smtp_client *c;
	struct smtp_client_timeouts *t;

	if (!cfg || !ops || !ops->rcpt_result || !ops->msg_done || !cfg->helo_name ||
	    !cfg->helo_name[0] || strlen(cfg->helo_name) > HELO_NAME_MAX ||
	    !text_ok(cfg->helo_name, false)) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cfg = *cfg;
	c->cfg.helo_name = strdup(cfg->helo_name);
	c->out_cap = OUT_MIN;
	c->out = malloc(c->out_cap);
	if (!c->cfg.helo_name || !c->out) {
		smtp_client_free(c);
		errno = ENOMEM;
		return NULL;
	}
	t = &c->cfg.timeouts;
	t->greeting = or_default(t->greeting, 300);
	t->hello = or_default(t->hello, 300);
	t->mail = or_default(t->mail, 300);
	t->rcpt = or_default(t->rcpt, 300);
	t->data_init = or_default(t->data_init, 120);
	t->data_block = or_default(t->data_block, 180);
	t->data_term = or_default(t->data_term, 600);
	t->rset_quit = or_default(t->rset_quit, 120);
	c->ops = ops;
	c->arg = arg;
	c->state = SMTP_CLIENT_GREETING;
	smtp_reply_parser_init(&c->parser);
	return c;
}

void smtp_client_free(struct smtp_client *c)
{
	if (!c)
		return;
	free((char *)c->cfg.helo_name);
	free(c->out);
	free(c->rstate);
	free(c);
}

int smtp_client_feed(struct smtp_client *c, const void *data, size_t len)
{
	const char *p = data, *end = p + len;

	while (p < end && c->state != SMTP_CLIENT_CLOSED) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
		int rc;

		if (c->line_len + take > sizeof(c->line)) {
			c->line_len = 0;
			if (c->state == SMTP_CLIENT_QUITTING) {
				session_close(c);
				break;
			}
			return protocol_error(c, "reply line too long");
		}
		memcpy(c->line + c->line_len, p, take);
		c->line_len += take;
		p += take;
		if (!nl)
			break;
		rc = on_line(c, c->line, c->line_len);
		c->line_len = 0;
		if (rc < 0)
			return rc;
	}
	return c->proto_error ? -EPROTO : 0;
}

void smtp_client_eof(struct smtp_client *c, const char *why)
{
	struct smtp_client_result r;

	if (c->state == SMTP_CLIENT_CLOSED)
		return;
	if (c->state == SMTP_CLIENT_QUITTING || c->state == SMTP_CLIENT_READY) {
		session_close(c);
		return;
	}
	r = local_result(c, 421, "4.4.2", "connection", "connection lost (%s) waiting for %s",
			 why ? why : "EOF", waiting_for(c));
	session_fail(c, &r);
}

void smtp_client_timeout(struct smtp_client *c)
{
	struct smtp_client_result r;

	if (c->state == SMTP_CLIENT_CLOSED)
		return;
	if (c->state == SMTP_CLIENT_QUITTING || c->state == SMTP_CLIENT_READY) {
		session_close(c);
		return;
	}
	if (c->state == SMTP_CLIENT_BUSY && c->phase == TX_BODY)
		r = local_result(c, 421, "4.4.2", "connection",
				 "timeout writing the message body");
	else
		r = local_result(c, 421, "4.4.2", "connection", "timeout waiting for reply to %s",
				 waiting_for(c));
	session_fail(c, &r);
}

size_t smtp_client_output(struct smtp_client *c, const void **data)
{
	if (c->out_off == c->out_len && c->state == SMTP_CLIENT_BUSY && c->phase == TX_BODY &&
	    !c->trailer_queued)
		body_fill(c);
	*data = c->out + c->out_off;
	return c->out_len - c->out_off;
}

void smtp_client_output_done(struct smtp_client *c, size_t n)
{
	if (n > c->out_len - c->out_off)
		n = c->out_len - c->out_off;
	c->out_off += n;
	if (c->out_off < c->out_len)
		return;
	c->out_off = c->out_len = 0;
	if (c->state == SMTP_CLIENT_BUSY && c->phase == TX_BODY && c->trailer_queued)
		c->phase = TX_DOT; /* 4.5.3.2.6: now the long wait */
}

/* Eight octets at a time: every body is scanned once per send. */
static bool has_8bit(const uint8_t *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w & 0x8080808080808080ULL)
			return true;
	}
	for (; i < len; i++)
		if (p[i] & 0x80)
			return true;
	return false;
}

static bool str_8bit(const char *s)
{
	return has_8bit((const uint8_t *)s, strlen(s));
}

/*
 * RFC 6531 3.2: does the message need SMTPUTF8?  A non-ASCII address
 * always does, whatever the envelope says (sending one without the
 * parameter would break RFC 5321).  Non-ASCII in the header section does
 * when the message came with SMTPUTF8; without it, that is a legacy raw
 * 8-bit header, which 8BITMIME carries as it always has.  An SMTPUTF8
 * message that needs none of it is downgraded (6531 3.4: SHOULD NOT ask).
 */
static bool msg_needs_utf8(const struct smtp_client_msg *m)
{
	const struct envelope *env = m->env;
	const uint8_t *hdr_end;
	size_t hlen = m->body_len;

	if (str_8bit(env->sender))
		return true;
	for (uint32_t k = 0; k < m->nrcpts; k++)
		if (str_8bit(env->rcpts[m->rcpts[k]].addr))
			return true;
	if (!env->smtputf8)
		return false;
	/* The header section ends at the first empty line; a body that
	 * starts with one has an empty header section. */
	if (m->body_len >= 2 && m->body[0] == '\r' && m->body[1] == '\n')
		return false;
	hdr_end = m->body_len >= 4 ? memmem(m->body, m->body_len, "\r\n\r\n", 4) : NULL;
	if (hdr_end)
		hlen = (size_t)(hdr_end - m->body);
	return has_8bit(m->body, hlen);
}

/* Decisions made before anything is sent; 1 when one was made. */
static int send_local_decision(struct smtp_client *c)
{
	const struct smtp_client_msg *m = &c->msg;
	unsigned f = c->exts.flags;
	struct smtp_client_result r;

	if ((f & SMTP_EXT_SIZE) && c->exts.size_max && m->body_len > c->exts.size_max)
		r = local_result(c, 552, "5.3.4", "MAIL",
				 "message size %zu exceeds the server's limit %llu", m->body_len,
				 (unsigned long long)c->exts.size_max);
	else if (c->utf8 && !(f & SMTP_EXT_SMTPUTF8))
		r = local_result(c, 553, "5.6.7", "MAIL", "SMTPUTF8 required but not offered");
	else if (c->body8 && !(f & SMTP_EXT_8BITMIME))
		r = local_result(c, 554, "5.6.3",
				 "MAIL", "8-bit message and the server does not offer 8BITMIME");
	else
		return 0;
	rcpt_deliver_open(c, &r);
	return 1;
}

static int msg_check(const struct smtp_client_msg *m)
{
	const struct envelope *env = m ? m->env : NULL;

	if (!env || !m->rcpts || m->nrcpts == 0 || (m->body_len && !m->body) || !env->sender ||
	    !text_ok(env->sender, false) || (env->envid && !text_ok(env->envid, false)))
		return -EINVAL;
	for (uint32_t k = 0; k < m->nrcpts; k++) {
		const struct envelope_rcpt *r;

		if (m->rcpts[k] >= env->nrcpts)
			return -EINVAL;
		r = &env->rcpts[m->rcpts[k]];
		if (!r->addr || !text_ok(r->addr, false) || (r->orcpt && !text_ok(r->orcpt, false)))
			return -EINVAL;
	}
	return 0;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m)
{
	size_t need = 0;
	int rc;

	if (c->state != SMTP_CLIENT_READY || c->tx_active)
		return -EBUSY;
	rc = msg_check(m);
	if (rc < 0)
		return rc;
	if (m->nrcpts > c->rstate_cap) {
		uint8_t *p = realloc(c->rstate, m->nrcpts);

		if (!p)
			return -ENOMEM;
		c->rstate = p;
		c->rstate_cap = m->nrcpts;
	}
	memset(c->rstate, RCPT_PENDING, m->nrcpts);
	c->msg = *m;
	c->body8 = has_8bit(m->body, m->body_len);
	c->utf8 = msg_needs_utf8(m);
	c->has_rset = c->need_rset;
	c->nsteps = (c->has_rset ? 1 : 0) + 1 + m->nrcpts + 1;
	for (unsigned i = 0; i < c->nsteps; i++) {
		uint32_t k = 0;
		enum tx_step s = tx_step_at(c, i, &k);

		need += step_size(c, s, k);
	}
	if (out_reserve(c, need) < 0)
		return -ENOMEM;
	c->tx_active = true;
	if (send_local_decision(c)) {
		tx_finish(c); /* state stays READY, nothing was sent */
		return 0;
	}
	c->state = SMTP_CLIENT_BUSY;
	c->phase = TX_CMDS;
	c->queued = c->replied = 0;
	c->naccepted = 0;
	c->lmtp_next = 0;
	c->mail_failed = c->discard = c->trailer_queued = false;
	c->need_rset = true; /* until a 2xx after data says otherwise */
	if (c->pipelining) {
		for (unsigned i = 0; i < c->nsteps; i++)
			tx_queue_step(c, i);
	} else {
		tx_queue_step(c, 0);
	}
	return 0;
}

void smtp_client_quit(struct smtp_client *c)
{
	struct smtp_client_result r;

	switch (c->state) {
	case SMTP_CLIENT_READY:
		session_quit(c);
		return;
	case SMTP_CLIENT_CLOSED:
		return;
	case SMTP_CLIENT_BUSY:
		r = local_result(c, 421, "4.4.2", "connection",
				 "connection closed by us waiting for %s", waiting_for(c));
		session_fail(c, &r);
		return;
	default:
		session_close(c);
		return;
	}
}

enum smtp_client_state smtp_client_state(const struct smtp_client *c)
{
	return c->state;
}

unsigned smtp_client_wait_seconds(const struct smtp_client *c)
{
	const struct smtp_client_timeouts *t = &c->cfg.timeouts;
	uint32_t k;

	switch (c->state) {
	case SMTP_CLIENT_GREETING:
		return t->greeting;
	case SMTP_CLIENT_HELLO:
		return t->hello;
	case SMTP_CLIENT_QUITTING:
		return t->rset_quit;
	case SMTP_CLIENT_BUSY:
		break;
	default:
		return 0;
	}
	if (c->phase == TX_BODY)
		return t->data_block;
	if (c->phase == TX_DOT)
		return t->data_term;
	switch (tx_step_at(c, c->replied, &k)) {
	case STEP_RSET:
		return t->rset_quit;
	case STEP_MAIL:
		return t->mail;
	case STEP_RCPT:
		return t->rcpt;
	default:
		return t->data_init;
	}
}

const struct smtp_ehlo_exts *smtp_client_exts(const struct smtp_client *c)
{
	return &c->exts;
}

const struct smtp_client_result *smtp_client_session_error(const struct smtp_client *c)
{
	return c->has_serr ? &c->serr : NULL;
}
