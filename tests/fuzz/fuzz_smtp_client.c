/*
 * libFuzzer harness for smtp_client, the SMTP/LMTP client engine that
 * delivery drives against servers we do not control.  Four feature octets
 * choose the session and the message; the rest is the server, in one of
 * two modes:
 *
 *  - transcript (f2 bit7 clear): the server's octets as they are, fed one
 *    line at a time (optionally cut inside lines), with our output written
 *    (optionally in short writes) and messages sent whenever the engine is
 *    READY.  A line that starts with 0x01 is a timeout, 0x02 an EOF, 0x03
 *    smtp_client_quit (the rest of it is fed);
 *  - honest server (f2 bit7 set): the harness plays a server that reads
 *    our commands, checks them, and answers each with a code the next
 *    input octet picks (see struct srv), so it knows which reply was about
 *    which recipient.
 *
 *   f0  bit0 LMTP, bit1 no_pipelining, bit2 SMTPUTF8 envelope, bit3 a UTF-8
 *       recipient, bit4 DSN parameters, bit5 null sender, bit6 send the next
 *       message from msg_done, bit7 end with a timeout instead of EOF
 *   f1  bits0-2 body variant, bits3-5 recipients - 1
 *   f2  bits0-1 messages - 1, bits2-6 write size (0: whole writes), bit7 mode
 *   f3  0: each piece in one feed; 0xff: one octet per feed; else each
 *       piece cut at f3 % (len + 1)
 *
 * Invariants, not only "no crash":
 *  - every recipient gets exactly one result per message, and msg_done
 *    runs exactly once per accepted send, after all of them;
 *  - a 2xx result is only an end-of-data reply, and only after the server
 *    was sent exactly the dot-stuffed body and its final dot after DATA;
 *  - local results are 421 for the connection or RSET, or the documented
 *    552 5.3.4 / 553 5.6.7 / 554 5.6.3, and those only when the server's
 *    extensions rule the message out;
 *  - result texts are printable ASCII within SMTP_CLIENT_TEXT_MAX;
 *  - feed returns 0 or -EPROTO, and -EPROTO leaves the session CLOSED;
 *  - no output and no wait once CLOSED; the session ends CLOSED with no
 *    message open after the final EOF; a session that never got READY
 *    has a session error (unless we closed it);
 *  - with the honest server also: commands in order, pipelined only when
 *    offered and allowed, parameters only for offered extensions, nothing
 *    over SIZE or 8-bit/UTF-8 without the extension, no protocol error,
 *    and each result is the very code the server gave that recipient.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/envelope.h"
#include "control/smtp_client.h"

#define MAX_RCPTS 8
#define BIG_LEN (2 * SMTP_CLIENT_SLICE + 777)

struct fz {
	struct smtp_client *c;
	struct envelope env;
	uint32_t idx[MAX_RCPTS];
	struct smtp_client_msg msg;
	unsigned nmsgs, sent, done;
	bool in_msg, in_send, chain, ever_ready, we_quit;
	bool honest; /* f2 bit7: the harness plays the server (struct srv) */
	struct srv *srv;
	unsigned nres[MAX_RCPTS];
	size_t write_size;
	uint8_t *wire; /* written since the current send */
	size_t wire_len, wire_cap;
	bool body_checked; /* the wire was checked against the body */
};

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "invariant failed: %s\n", what);
		abort();
	}
}

static uint8_t big_body[BIG_LEN];

static const char *const small_bodies[] = {
    "Subject: t\r\n\r\nhello\r\n",
    "",
    ".leading\r\n.\r\n..\r\nno final CRLF",
    "Subject: caf\xc3\xa9\r\n\r\nx\r\n",
    "Subject: t\r\n\r\nbody \xff 8-bit\r\n.\r\n",
    "\r\n.\r\n\r\n.",
    ".",
};

static void big_body_init(void)
{
	/* Dot lines around every slice boundary, and a bare dot line. */
	for (size_t i = 0; i < BIG_LEN; i++)
		big_body[i] = (uint8_t)('a' + i % 26);
	for (size_t at = 1000; at + 8 < BIG_LEN; at += 997) {
		memcpy(big_body + at, "\r\n.\r\n.", 6);
	}
	for (size_t s = SMTP_CLIENT_SLICE - 4; s + 8 < BIG_LEN; s += SMTP_CLIENT_SLICE)
		memcpy(big_body + s, "\r\n..\r\n", 6);
	memcpy(big_body + BIG_LEN - 2, "\r\n", 2);
}

/* The wire after the DATA line must be the body, dot-stuffed, then the
 * final dot (RFC 5321 4.5.2). */
static void check_body_on_wire(struct fz *z)
{
	const uint8_t *w = z->wire, *b = z->msg.body;
	size_t wl = z->wire_len, bl = z->msg.body_len, i = 0, j;

	/* Skip command lines up to and including "DATA\r\n". */
	for (;;) {
		const uint8_t *nl = memchr(w + i, '\n', wl - i);

		check(nl != NULL, "DATA on the wire before a 2xx");
		j = (size_t)(nl - w) + 1;
		if (j - i == 6 && memcmp(w + i, "DATA\r\n", 6) == 0) {
			i = j;
			break;
		}
		i = j;
	}
	for (j = 0; j < bl; j++) {
		if (b[j] == '.' && (j == 0 || b[j - 1] == '\n')) {
			check(i < wl && w[i] == '.', "dot-stuffed");
			i++;
		}
		check(i < wl && w[i] == b[j], "body octets on the wire");
		i++;
	}
	if (bl && !(bl >= 2 && b[bl - 2] == '\r' && b[bl - 1] == '\n')) {
		check(i + 2 <= wl && memcmp(w + i, "\r\n", 2) == 0, "last line ended");
		i += 2;
	}
	check(wl - i == 3 && memcmp(w + i, ".\r\n", 3) == 0, "final dot, then nothing");
	z->body_checked = true;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* ---- the honest server ----------------------------------------------
 *
 * With f2 bit7 the input is not a transcript but the choices of a server
 * the harness plays: it reads what the engine wrote, checks each command
 * against RFC 5321/2920/2033 and what it offered, and answers every one
 * with a code the next input octet picks (0..4 success, 5..6 4xx, 7 5xx;
 * 0xff drops the connection, 0xfe stops answering: a timeout).  Because
 * it knows which recipient each reply was about, every result must then
 * carry exactly the code the server gave for that recipient.
 */
#define SRV_LINE 1024

struct srv {
	const uint8_t *p, *end; /* choice octets */
	bool lmtp, no_pipelining;
	bool greeted;	   /* greeting fed */
	bool hello_done;   /* EHLO/HELO/LHLO got 250 */
	bool ehlo_refused; /* EHLO got 5xx: HELO may follow */
	unsigned exts;	   /* SMTP_EXT_* offered */
	uint64_t size_max; /* SIZE value offered, 0: none */
	bool data_mode;	   /* between 354 and the final dot */
	char line[SRV_LINE];
	size_t line_len;
	bool line_long; /* the line overflowed line[] */
	bool in_tx, mail_ok;
	uint32_t rcpt_next; /* next recipient (k) a RCPT must name */
	uint32_t acc[MAX_RCPTS];
	uint32_t nacc;
	char last_cmd[8]; /* verb of the last command answered */
	char *reply;	  /* replies not yet fed to the engine */
	size_t reply_len, reply_cap;
	bool drop, stall, quit_seen;
	/* What the server said, per recipient and per stage. */
	int rcpt_code[MAX_RCPTS], lmtp_code[MAX_RCPTS];
	int mail_code, data_code, eod_code;
	int session_code; /* a refused greeting or hello */
};

static int srv_byte(struct srv *s)
{
	return s->p < s->end ? *s->p++ : -1;
}

/* The next code: ok, tmp or perm, or 0 when the server drops or stalls. */
static int srv_pick(struct srv *s, int ok, int tmp, int perm)
{
	int b = srv_byte(s);

	if (b < 0 || b == 0xff) {
		s->drop = true;
		return 0;
	}
	if (b == 0xfe) {
		s->stall = true;
		return 0;
	}
	b %= 8;
	return b <= 4 ? ok : b <= 6 ? tmp : perm;
}

static void srv_say(struct srv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void srv_say(struct srv *s, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	check(n > 0 && (size_t)n < sizeof(buf), "server reply fits");
	if (s->reply_len + (size_t)n > s->reply_cap) {
		s->reply_cap = (s->reply_len + (size_t)n) * 2;
		s->reply = realloc(s->reply, s->reply_cap);
		check(s->reply != NULL, "memory");
	}
	memcpy(s->reply + s->reply_len, buf, (size_t)n);
	s->reply_len += (size_t)n;
}

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

static bool is_verb(const char *line, const char *verb)
{
	size_t n = strlen(verb);

	return strncmp(line, verb, n) == 0;
}

/* The parameters after "<path>" of MAIL or RCPT: each one needs its
 * extension offered (RFC 1870, 6152, 6531, 3461). */
static void srv_check_params(struct fz *z, const char *p, bool mail)
{
	struct srv *s = z->srv;

	while (*p == ' ') {
		const char *w = ++p;
		size_t n = strcspn(w, " ");

		p += n;
		if (mail && n > 5 && strncmp(w, "SIZE=", 5) == 0) {
			check(s->exts & SMTP_EXT_SIZE, "SIZE= only when offered");
			check(strtoull(w + 5, NULL, 10) == z->msg.body_len, "SIZE= is the size");
		} else if (mail && n == 13 && strncmp(w, "BODY=8BITMIME", 13) == 0) {
			check(s->exts & SMTP_EXT_8BITMIME, "BODY=8BITMIME only when offered");
		} else if (mail && n == 8 && strncmp(w, "SMTPUTF8", 8) == 0) {
			check(s->exts & SMTP_EXT_SMTPUTF8, "SMTPUTF8 only when offered");
		} else if (mail && (strncmp(w, "RET=", 4) == 0 || strncmp(w, "ENVID=", 6) == 0)) {
			check(s->exts & SMTP_EXT_DSN, "RET=/ENVID= only with DSN");
		} else if (!mail &&
			   (strncmp(w, "NOTIFY=", 7) == 0 || strncmp(w, "ORCPT=", 6) == 0)) {
			check(s->exts & SMTP_EXT_DSN, "NOTIFY=/ORCPT= only with DSN");
		} else {
			check(0, "a parameter we know");
		}
	}
	check(*p == '\0', "parameters end the line");
}

static void srv_reply_ehlo(struct srv *s, bool lhlo)
{
	int code = srv_pick(s, 250, 421, 502);
	int b;

	if (!code)
		return;
	if (code != 250) {
		if (code == 502 && !lhlo)
			s->ehlo_refused = true;
		else
			s->session_code = code;
		srv_say(s, "%d 5.5.2 no\r\n", code);
		return;
	}
	b = srv_byte(s);
	b = b < 0 ? 0 : b;
	s->exts = 0;
	srv_say(s, "250-mx.test\r\n");
	if (b & 1) {
		s->exts |= SMTP_EXT_PIPELINING;
		srv_say(s, "250-PIPELINING\r\n");
	}
	if (b & 2) {
		s->exts |= SMTP_EXT_SIZE;
		s->size_max = (b & 4) ? 100 : 0;
		srv_say(s, (b & 4) ? "250-SIZE 100\r\n" : "250-SIZE\r\n");
	}
	if (b & 8) {
		s->exts |= SMTP_EXT_8BITMIME;
		srv_say(s, "250-8BITMIME\r\n");
	}
	if (b & 16) {
		s->exts |= SMTP_EXT_SMTPUTF8;
		srv_say(s, "250-SMTPUTF8\r\n");
	}
	if (b & 32) {
		s->exts |= SMTP_EXT_DSN;
		srv_say(s, "250-DSN\r\n");
	}
	srv_say(s, "250 ENHANCEDSTATUSCODES\r\n");
	s->hello_done = true;
}

static void srv_end_of_data(struct fz *z)
{
	struct srv *s = z->srv;

	s->data_mode = false;
	s->in_tx = false;
	check_body_on_wire(z);
	if (!s->lmtp) {
		int code = srv_pick(s, 250, 452, 554);

		if (code) {
			s->eod_code = code;
			srv_say(s, "%d %d.0.0 end of data\r\n", code, code / 100);
		}
		return;
	}
	/* RFC 2033 4.2: one reply per accepted recipient, in RCPT order. */
	for (uint32_t i = 0; i < s->nacc; i++) {
		uint32_t k = s->acc[i];
		int code = srv_pick(s, 250, 452, 550);

		if (!code)
			return;
		s->lmtp_code[k] = code;
		srv_say(s, "%d %d.1.5 <%s> delivery\r\n", code, code / 100,
			z->env.rcpts[z->idx[k]].addr);
	}
}

static void srv_command(struct fz *z, const char *line)
{
	struct srv *s = z->srv;
	const struct envelope *env = &z->env;
	bool pipelined = s->reply_len > 0; /* replies the engine has not seen */
	int code;

	check(s->greeted, "nothing before the greeting");
	if (pipelined)
		check((s->exts & SMTP_EXT_PIPELINING) && !s->no_pipelining &&
			  (strcmp(s->last_cmd, "RSET") == 0 || strcmp(s->last_cmd, "MAIL") == 0 ||
			   strcmp(s->last_cmd, "RCPT") == 0),
		      "pipelining only when offered and allowed (RFC 2920 3.1)");
	snprintf(s->last_cmd, sizeof(s->last_cmd), "%.4s", line);
	if (is_verb(line, "EHLO ") || is_verb(line, "LHLO ")) {
		check(!s->hello_done && !s->ehlo_refused, "one hello");
		check(is_verb(line, s->lmtp ? "LHLO " : "EHLO "), "LHLO for LMTP, EHLO for SMTP");
		check(strcmp(line + 5, "client.test") == 0, "our name");
		srv_reply_ehlo(s, s->lmtp);
	} else if (is_verb(line, "HELO ")) {
		check(s->ehlo_refused && !s->hello_done, "HELO only after EHLO was refused");
		s->ehlo_refused = false;
		code = srv_pick(s, 250, 421, 550);
		if (code == 250)
			s->hello_done = true;
		else if (code)
			s->session_code = code;
		if (code)
			srv_say(s, "%d mx.test\r\n", code);
	} else if (is_verb(line, "MAIL FROM:<")) {
		size_t sl = strlen(env->sender);
		const char *q = line + 11;

		/* A refused MAIL opened no transaction (RFC 5321 4.1.1.2). */
		check(s->hello_done && (!s->in_tx || !s->mail_ok),
		      "MAIL after hello, outside a transaction");
		check(strncmp(q, env->sender, sl) == 0 && q[sl] == '>', "our sender");
		srv_check_params(z, q + sl + 1, true);
		/* What the engine must have decided locally instead. */
		check(!(s->size_max && z->msg.body_len > s->size_max), "never over SIZE");
		check((s->exts & SMTP_EXT_8BITMIME) ||
			  !has_8bit((const char *)z->msg.body, z->msg.body_len),
		      "8-bit only with 8BITMIME");
		check(s->exts & SMTP_EXT_SMTPUTF8 || !has_8bit(line, strlen(line)),
		      "UTF-8 only with SMTPUTF8");
		s->in_tx = true;
		s->rcpt_next = 0;
		s->nacc = 0;
		memset(s->rcpt_code, 0, sizeof(s->rcpt_code));
		memset(s->lmtp_code, 0, sizeof(s->lmtp_code));
		s->data_code = s->eod_code = 0;
		code = srv_pick(s, 250, 451, 553);
		s->mail_ok = code == 250;
		s->mail_code = code;
		if (code)
			srv_say(s, "%d %d.1.0 sender\r\n", code, code / 100);
	} else if (is_verb(line, "RCPT TO:<")) {
		const char *addr, *q = line + 9;
		uint32_t k = s->rcpt_next;
		size_t al;

		check(s->in_tx && k < z->msg.nrcpts,
		      "RCPT inside a transaction, one per recipient");
		addr = env->rcpts[z->idx[k]].addr;
		al = strlen(addr);
		check(strncmp(q, addr, al) == 0 && q[al] == '>', "recipients in order");
		check(s->exts & SMTP_EXT_SMTPUTF8 || !has_8bit(addr, al),
		      "UTF-8 only with SMTPUTF8");
		srv_check_params(z, q + al + 1, false);
		s->rcpt_next++;
		if (!s->mail_ok) {
			s->rcpt_code[k] = 503;
			srv_say(s, "503 5.5.1 need MAIL <%s>\r\n", addr);
			return;
		}
		code = srv_pick(s, 250, 450, 550);
		if (!code)
			return;
		s->rcpt_code[k] = code;
		if (code == 250)
			s->acc[s->nacc++] = k;
		srv_say(s, "%d %d.1.5 <%s> recipient\r\n", code, code / 100, addr);
	} else if (strcmp(line, "DATA") == 0) {
		check(s->in_tx && s->rcpt_next == z->msg.nrcpts, "DATA after every RCPT");
		if (!s->mail_ok || s->nacc == 0) {
			s->data_code = 554;
			s->in_tx = false;
			srv_say(s, "554 5.5.1 no valid recipients\r\n");
			return;
		}
		code = srv_pick(s, 354, 451, 554);
		if (!code)
			return;
		s->data_code = code;
		if (code == 354)
			s->data_mode = true;
		else
			s->in_tx = false;
		srv_say(s, "%d go on\r\n", code);
	} else if (strcmp(line, "RSET") == 0) {
		check(s->hello_done, "RSET after hello");
		s->in_tx = false;
		srv_say(s, "250 2.0.0 reset\r\n");
	} else if (strcmp(line, "QUIT") == 0) {
		s->quit_seen = true;
		srv_say(s, "221 2.0.0 bye\r\n");
		s->drop = true;
	} else {
		check(0, "a command the server knows");
	}
}

/* Octets the engine wrote, as the server reads them. */
static void srv_input(struct fz *z, const uint8_t *p, size_t n)
{
	struct srv *s = z->srv;

	for (size_t i = 0; i < n && !s->drop && !s->stall; i++) {
		if (s->line_len < SRV_LINE - 1)
			s->line[s->line_len++] = (char)p[i];
		else
			s->line_long = true;
		if (p[i] != '\n')
			continue;
		check(s->line_len >= 2 && s->line[s->line_len - 2] == '\r', "CRLF only");
		s->line[s->line_len - 2] = '\0';
		if (s->data_mode) {
			if (!s->line_long && strcmp(s->line, ".") == 0)
				srv_end_of_data(z);
		} else {
			check(!s->line_long && s->line_len <= 512, "command line within 512");
			srv_command(z, s->line);
		}
		s->line_len = 0;
		s->line_long = false;
	}
}

/* Every result must be what the server said about that recipient. */
static void honest_check_result(struct fz *z, uint32_t k, const struct smtp_client_result *r)
{
	struct srv *s = z->srv;
	const char *addr = z->env.rcpts[z->idx[k]].addr;
	char want[64];

	snprintf(want, sizeof(want), "<%s>", addr);
	if (r->local) {
		/* No protocol error from an honest server, no RSET refused. */
		check(r->code != 421 ||
			  (strcmp(r->enh, "4.4.2") == 0 && strcmp(r->stage, "connection") == 0 &&
			   (s->drop || s->stall)),
		      "421 only when the server went away");
		return;
	}
	if (strcmp(r->stage, "RCPT") == 0) {
		check(r->code == s->rcpt_code[k], "RCPT result is that RCPT's reply");
		check(has_8bit(addr, strlen(addr)) || strstr(r->text, want), "RCPT reply text");
	} else if (strcmp(r->stage, "MAIL") == 0) {
		check(r->code == s->mail_code, "MAIL result is MAIL's reply");
	} else if (strcmp(r->stage, "DATA") == 0) {
		check(r->code == s->data_code, "DATA result is DATA's reply");
	} else if (strcmp(r->stage, "end of data") == 0) {
		check(s->rcpt_code[k] == 250, "end-of-data results only for accepted");
		if (s->lmtp) {
			check(r->code == s->lmtp_code[k], "LMTP reply for that recipient");
			check(has_8bit(addr, strlen(addr)) || strstr(r->text, want),
			      "LMTP reply text");
		} else {
			check(r->code == s->eod_code, "end-of-data reply");
		}
	} else {
		check(0, "a known stage");
	}
}

static void feed_split(struct fz *z, const uint8_t *q, size_t n, uint8_t f3);
static void after_step(struct fz *z);

static void honest_run(struct fz *z, const uint8_t *p, const uint8_t *end, uint8_t f3)
{
	struct srv *s = z->srv;
	int code;

	s->p = p;
	s->end = end;
	code = srv_pick(s, 220, 421, 554);
	if (code) {
		if (code != 220)
			s->session_code = code;
		srv_say(s, "%d mx.test ESMTP\r\n", code);
	}
	for (unsigned turns = 0; turns < 100000; turns++) {
		if (s->reply_len) {
			/* Feed a copy: the server may answer while we feed. */
			size_t n = s->reply_len;
			uint8_t *r = malloc(n);

			check(r != NULL, "memory");
			memcpy(r, s->reply, n);
			s->reply_len = 0;
			s->greeted = true;
			feed_split(z, r, n, f3);
			free(r);
			after_step(z);
			continue;
		}
		if (s->drop)
			smtp_client_eof(z->c, "server closed");
		else if (s->stall)
			smtp_client_timeout(z->c);
		after_step(z);
		break;
	}
	if (!z->ever_ready && s->session_code && !s->drop && !s->stall) {
		const struct smtp_client_result *se = smtp_client_session_error(z->c);

		check(se && se->code == s->session_code, "the session error is the server's");
	}
}

static void send_next(struct fz *z);

static void cb_rcpt(void *arg, uint32_t k, const struct smtp_client_result *r)
{
	struct fz *z = arg;
	const struct smtp_ehlo_exts *e = smtp_client_exts(z->c);

	check(z->in_msg, "result inside a message");
	check(k < z->msg.nrcpts, "k in range");
	check(z->nres[k]++ == 0, "one result per recipient");
	check(r->code >= 200 && r->code <= 599, "code");
	check(r->enh[0] == '0' + r->code / 100, "enhanced code class");
	check(r->text && strlen(r->text) <= SMTP_CLIENT_TEXT_MAX && printable(r->text), "text");
	check(r->stage != NULL, "stage");
	check(r->code / 100 != 3, "no 3xx result");
	if (z->honest)
		honest_check_result(z, k, r);
	if (r->code / 100 == 2) {
		check(!r->local && strcmp(r->stage, "end of data") == 0, "2xx only after the dot");
		if (!z->body_checked)
			check_body_on_wire(z);
	}
	if (!r->local)
		return;
	switch (r->code) {
	case 421:
		check(strcmp(r->stage, "connection") == 0 || strcmp(r->stage, "RSET") == 0,
		      "421 stage");
		break;
	case 552:
		check(z->in_send && strcmp(r->enh, "5.3.4") == 0, "552 5.3.4 at send");
		check((e->flags & SMTP_EXT_SIZE) && e->size_max && z->msg.body_len > e->size_max,
		      "552 only over SIZE");
		break;
	case 553:
		check(z->in_send && strcmp(r->enh, "5.6.7") == 0, "553 5.6.7 at send");
		check(!(e->flags & SMTP_EXT_SMTPUTF8), "553 only without SMTPUTF8");
		break;
	case 554:
		check(z->in_send && strcmp(r->enh, "5.6.3") == 0, "554 5.6.3 at send");
		check(!(e->flags & SMTP_EXT_8BITMIME), "554 only without 8BITMIME");
		break;
	default:
		check(0, "unexpected local code");
	}
}

static void cb_done(void *arg)
{
	struct fz *z = arg;

	check(z->in_msg, "msg_done inside a message");
	for (uint32_t k = 0; k < z->msg.nrcpts; k++)
		check(z->nres[k] == 1, "msg_done after every result");
	check(smtp_client_state(z->c) != SMTP_CLIENT_BUSY, "not BUSY at msg_done");
	z->in_msg = false;
	z->done++;
	if (z->chain)
		send_next(z);
}

static const struct smtp_client_ops fz_ops = {.rcpt_result = cb_rcpt, .msg_done = cb_done};

static void send_next(struct fz *z)
{
	int rc;

	if (smtp_client_state(z->c) != SMTP_CLIENT_READY || z->sent >= z->nmsgs)
		return;
	z->in_msg = true;
	z->in_send = true;
	memset(z->nres, 0, sizeof(z->nres));
	z->wire_len = 0;
	z->body_checked = false;
	z->sent++;
	rc = smtp_client_send(z->c, &z->msg);
	z->in_send = false;
	check(rc == 0, "send from READY succeeds");
}

static void drain(struct fz *z)
{
	const void *p;
	size_t n;

	while ((n = smtp_client_output(z->c, &p)) > 0) {
		size_t w = z->write_size && z->write_size < n ? z->write_size : n;

		check(smtp_client_state(z->c) != SMTP_CLIENT_CLOSED, "no output once CLOSED");
		/* Our commands are short: anything long is a body slice. */
		check(n <= SMTP_CLIENT_SLICE + 5, "body in slices");
		if (z->in_msg) {
			if (z->wire_len + w > z->wire_cap) {
				z->wire_cap = (z->wire_len + w) * 2;
				z->wire = realloc(z->wire, z->wire_cap);
				check(z->wire != NULL, "memory");
			}
			memcpy(z->wire + z->wire_len, p, w);
			z->wire_len += w;
		}
		if (z->honest)
			srv_input(z, p, w);
		smtp_client_output_done(z->c, w);
	}
}

static void after_step(struct fz *z)
{
	enum smtp_client_state s;

	drain(z);
	s = smtp_client_state(z->c);
	if (s == SMTP_CLIENT_READY) {
		z->ever_ready = true;
		/* A send decided locally leaves us READY: send the next. */
		while (s == SMTP_CLIENT_READY && z->sent < z->nmsgs) {
			send_next(z);
			drain(z);
			s = smtp_client_state(z->c);
		}
		if (s == SMTP_CLIENT_READY) {
			z->we_quit = true;
			smtp_client_quit(z->c);
			drain(z);
			s = smtp_client_state(z->c);
		}
	}
	if (s == SMTP_CLIENT_CLOSED) {
		const void *p;

		check(smtp_client_output(z->c, &p) == 0, "no output once CLOSED");
		check(smtp_client_wait_seconds(z->c) == 0, "no wait once CLOSED");
		check(!z->in_msg, "no message open once CLOSED");
		check(z->ever_ready || z->we_quit || smtp_client_session_error(z->c),
		      "a session error when it never got READY");
	} else if (s != SMTP_CLIENT_READY) {
		check(smtp_client_wait_seconds(z->c) > 0, "a wait while waiting");
	}
}

static void do_feed(struct fz *z, const uint8_t *p, size_t n)
{
	int rc = smtp_client_feed(z->c, p, n);

	check(rc == 0 || rc == -EPROTO, "feed returns 0 or -EPROTO");
	check(rc == 0 || !z->honest, "no protocol error from an honest server");
	if (rc < 0)
		check(smtp_client_state(z->c) == SMTP_CLIENT_CLOSED, "-EPROTO closes");
}

/* One piece of server bytes, cut as f3 says. */
static void feed_split(struct fz *z, const uint8_t *q, size_t n, uint8_t f3)
{
	if (f3 == 0xff) {
		for (size_t i = 0; i < n; i++)
			do_feed(z, q + i, 1);
	} else if (f3) {
		size_t cut = f3 % (n + 1);

		do_feed(z, q, cut);
		do_feed(z, q + cut, n - cut);
	} else {
		do_feed(z, q, n);
	}
}

static int build_env(struct fz *z, uint8_t f0, uint8_t f1)
{
	unsigned nr = ((f1 >> 3) & 7) + 1, body = f1 & 7;
	char addr[32];

	memset(&z->env, 0, sizeof(z->env));
	z->env.sender = strdup((f0 & 0x20) ? "" : "sender@y.test");
	if (!z->env.sender)
		return -1;
	z->env.smtputf8 = f0 & 0x04;
	if (f0 & 0x10) {
		z->env.envid = strdup("ENV+2Bid");
		z->env.ret = (f1 & 1) ? ENVELOPE_RET_FULL : ENVELOPE_RET_HDRS;
		z->env.body = ENVELOPE_BODY_8BITMIME;
		if (!z->env.envid)
			return -1;
	}
	for (unsigned k = 0; k < nr; k++) {
		if (k == 0 && (f0 & 0x08))
			snprintf(addr, sizeof(addr), "j\xc3\xb6rg@x.test");
		else
			snprintf(addr, sizeof(addr), "r%u@x.test", k);
		if (envelope_add_rcpt(&z->env, addr, (f0 & 0x10) ? "rfc822;r@x.test" : NULL,
				      (f0 & 0x10) ? (uint8_t)(1u << (k % 4)) : 0) < 0)
			return -1;
		z->idx[k] = k;
	}
	z->msg.env = &z->env;
	z->msg.rcpts = z->idx;
	z->msg.nrcpts = nr;
	if (body == 7) {
		z->msg.body = big_body;
		z->msg.body_len = BIG_LEN;
	} else {
		z->msg.body = (const uint8_t *)small_bodies[body];
		z->msg.body_len = strlen(small_bodies[body]);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_cfg cfg = {.helo_name = "client.test"};
	struct fz z;
	struct srv srv;
	const uint8_t *p, *end = data + size;
	uint8_t f0, f1, f2, f3;
	unsigned wsz;

	if (size < 4)
		return 0;
	if (!big_body[0])
		big_body_init();
	f0 = data[0], f1 = data[1], f2 = data[2], f3 = data[3];
	memset(&z, 0, sizeof(z));
	memset(&srv, 0, sizeof(srv));
	z.honest = f2 & 0x80;
	cfg.proto = (f0 & 1) ? SMTP_CLIENT_LMTP : SMTP_CLIENT_SMTP;
	cfg.no_pipelining = f0 & 2;
	z.chain = f0 & 0x40;
	z.nmsgs = (f2 & 3) + 1;
	wsz = (f2 >> 2) & 31;
	z.write_size = wsz ? (size_t)wsz * wsz * 67 : 0;
	if (build_env(&z, f0, f1) < 0)
		goto out;
	z.c = smtp_client_new(&cfg, &fz_ops, &z);
	if (!z.c)
		goto out;
	if (z.honest) {
		z.srv = &srv;
		srv.lmtp = cfg.proto == SMTP_CLIENT_LMTP;
		srv.no_pipelining = cfg.no_pipelining;
		honest_run(&z, data + 4, end, f3);
		goto end_session;
	}
	after_step(&z);
	for (p = data + 4; p < end;) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
		const uint8_t *q = p;
		size_t n = len;

		p += len;
		if (n && *q >= 1 && *q <= 3) {
			if (*q == 1)
				smtp_client_timeout(z.c);
			else if (*q == 2)
				smtp_client_eof(z.c, "fuzz");
			else {
				z.we_quit = true;
				smtp_client_quit(z.c);
			}
			q++, n--;
			after_step(&z);
		}
		feed_split(&z, q, n, f3);
		after_step(&z);
	}
	if (f0 & 0x80)
		smtp_client_timeout(z.c);
end_session:
	smtp_client_eof(z.c, NULL);
	after_step(&z);
	check(smtp_client_state(z.c) == SMTP_CLIENT_CLOSED, "CLOSED at the end");
	check(!z.in_msg, "every message done at the end");
	check(z.done == z.sent, "msg_done once per send");
out:
	smtp_client_free(z.c);
	envelope_free(&z.env);
	free(z.wire);
	free(srv.reply);
	return 0;
}
