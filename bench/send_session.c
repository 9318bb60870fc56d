/* send_session: the client side of the SMTP dialogue (see send_pvt.h). */
#include "bench/bench.h"
#include "bench/send_pvt.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const char send_cmd_data[] = "DATA\r\n";
static const char send_cmd_dot[] = ".\r\n";
static const char send_cmd_rset[] = "RSET\r\n";
static const char send_cmd_quit[] = "QUIT\r\n";

/* The reply handlers, by what the head of the wait queue expects. */
static send_reply_fn send_on_greeting, send_on_ehlo, send_on_mail, send_on_rcpt, send_on_data,
    send_on_dot, send_on_bdat, send_on_rset, send_on_quit;
static int send_reply(struct send_worker *w, struct send_conn *c, unsigned code);
static void send_sess_quit(struct send_worker *w, struct send_conn *c);
static void send_tx_start(struct send_worker *w, struct send_conn *c, uint64_t seq);

static send_reply_fn *const send_on_reply[SEND_WAIT_KINDS] = {
    [SEND_WAIT_GREETING] = send_on_greeting, [SEND_WAIT_EHLO] = send_on_ehlo,
    [SEND_WAIT_MAIL] = send_on_mail,	     [SEND_WAIT_RCPT] = send_on_rcpt,
    [SEND_WAIT_DATA] = send_on_data,	     [SEND_WAIT_DOT] = send_on_dot,
    [SEND_WAIT_BDAT] = send_on_bdat,	     [SEND_WAIT_RSET] = send_on_rset,
    [SEND_WAIT_QUIT] = send_on_quit,
};

/* ---- small helpers ------------------------------------------------------ */

/* xorshift64*: per worker, for sizes only. */
static uint64_t send_rand(struct send_worker *w)
{
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Write v in decimal at p; returns the end. */
static char *send_put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* ---- replies ------------------------------------------------------------ */

/* One reply line, CRLF included; 0, or -1 when the connection closed.
 * Strict (smtp_reply.h): CRLF only, three digits 2xx..5xx, one code per
 * reply.  Only 421 may come unasked (RFC 5321 3.8: the server shuts down). */
static int send_reply_line(struct send_worker *w, struct send_conn *c, const char *line, size_t len)
{
	struct smtp_reply_line rl;
	int last = smtp_reply_parse_line(&c->reply, line, len, &rl);

	if (last < 0 || (c->wait_len == 0 && rl.code != 421))
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL);
	if (c->wait_len && c->wait[c->wait_head].kind == SEND_WAIT_EHLO && rl.code == 250 &&
	    !rl.first)
		smtp_ehlo_ext_line(&c->exts, rl.text, rl.text_len);
	return last ? send_reply(w, c, rl.code) : 0;
}

/* Every complete line in the input buffer; keeps a partial one. */
int send_reply_parse(struct send_worker *w, struct send_conn *c)
{
	char *p = c->in, *end = c->in + c->in_len, *nl;

	while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
		size_t len = (size_t)(nl + 1 - p);

		if (send_reply_line(w, c, p, len) < 0)
			return -1;
		p = nl + 1;
	}
	c->in_len = (size_t)(end - p);
	if (c->in_len == sizeof(c->in))
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL); /* a line too long */
	if (c->in_len && p != c->in)
		memmove(c->in, p, c->in_len);
	return 0;
}

static void send_tx_refuse(struct send_worker *w, struct send_tx *tx)
{
	if (tx->final)
		return;
	tx->final = true;
	send_stat_add(&w->st.refused, 1);
}

static void send_tx_accept(struct send_worker *w, struct send_tx *tx)
{
	tx->final = true;
	send_stat_add(&w->st.accepted, 1);
	send_stat_add(&w->st.rcpts_accepted, tx->rcpt_ok);
	send_stat_add(&w->st.bytes_accepted, tx->msg.hdr_len + tx->msg.body_len);
	if (tx->eod_ns)
		histogram_record(&w->latency, bench_now_ns() - tx->eod_ns);
}

/* A complete reply: hand it to the head of the wait queue. */
static int send_reply(struct send_worker *w, struct send_conn *c, unsigned code)
{
	struct send_wait *head = &c->wait[c->wait_head];
	enum send_wait_kind kind = (enum send_wait_kind)head->kind;
	struct send_tx *tx = head->tx == SEND_NO_TX ? NULL : &c->tx[head->tx];

	w->st.replies[code]++;
	if (c->wait_len == 0) /* an unasked 421 */
		return send_conn_close(w, c, SEND_CLOSE_SERVER);
	if (--head->count == 0) {
		c->wait_head = (uint8_t)((c->wait_head + 1) % SEND_WAIT_MAX);
		c->wait_len--;
	}
	if (tx)
		tx->pending--;
	if (send_on_reply[kind](w, c, tx, code) < 0)
		return -1;
	if (tx && tx->active && tx->pending == 0) {
		/* Its last reply is in; one that was not decided was refused. */
		send_tx_refuse(w, tx);
		tx->active = false;
	}
	if (code == 421) /* RFC 5321 3.8: the server is closing the channel */
		return send_conn_close(w, c, SEND_CLOSE_SERVER);
	if (c->wait_len == 0)
		send_sess_next(w, c);
	return 0;
}

static int send_on_greeting(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			    unsigned code)
{
	(void)tx;
	if (code != 220) {
		send_sess_quit(w, c); /* RFC 5321 3.1: a 554 greeting still takes QUIT */
		return 0;
	}
	send_out_add(c, w->run->ehlo, w->run->ehlo_len);
	send_wait_push(c, SEND_WAIT_EHLO, SEND_NO_TX, 1);
	return 0;
}

static int send_on_ehlo(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)tx;
	if (code / 100 != 2) /* no HELO fallback: we need the extensions */
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL);
	if (w->run->opt->bdat && !(c->exts.flags & SMTP_EXT_CHUNKING)) {
		send_run_fatal(w->run, "--bdat: %s does not offer CHUNKING", w->run->opt->server);
		return send_conn_close(w, c, SEND_CLOSE_ABANDON);
	}
	c->pipelining = w->run->opt->pipelining && (c->exts.flags & SMTP_EXT_PIPELINING);
	return 0;
}

/* Lockstep: send recipient tx->rcpt_sent. */
static void send_tx_rcpt(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	const struct send_run *run = w->run;
	unsigned k = tx->rcpt_sent++;

	send_out_add(c, run->rcpt_block + run->rcpt_off[k],
		     run->rcpt_off[k + 1] - run->rcpt_off[k]);
	send_wait_push(c, SEND_WAIT_RCPT, (unsigned)(tx - c->tx), 1);
}

/* BDAT n LAST and the whole message as its one chunk (RFC 3030 2). */
static void send_tx_bdat(struct send_conn *c, struct send_tx *tx)
{
	unsigned t = (unsigned)(tx - c->tx);

	send_out_add(c, tx->verb, tx->verb_len);
	send_out_add(c, tx->msg.hdr, tx->msg.hdr_len);
	send_out_add(c, tx->msg.body, tx->msg.body_len);
	send_wait_push(c, SEND_WAIT_BDAT, t, 1);
	tx->body = true;
	assert(!c->eod_pending);
	c->eod_pending = true;
	c->eod_tx = (uint8_t)t;
}

/* After the recipients, DATA or BDAT. */
static void send_tx_verb(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	if (w->run->opt->bdat) {
		send_tx_bdat(c, tx);
		return;
	}
	send_out_add(c, send_cmd_data, sizeof(send_cmd_data) - 1);
	send_wait_push(c, SEND_WAIT_DATA, (unsigned)(tx - c->tx), 1);
}

static int send_on_mail(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	if (code / 100 != 2) {
		send_tx_refuse(w, tx); /* pipelined: its RCPTs and DATA get 503 */
		return 0;
	}
	tx->mail_ok = true;
	if (!c->pipelining)
		send_tx_rcpt(w, c, tx);
	return 0;
}

static int send_on_rcpt(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	unsigned rcpts = w->run->opt->rcpts;

	tx->rcpt_done++;
	if (code / 100 == 2)
		tx->rcpt_ok++;
	if (tx->rcpt_done < rcpts) {
		if (!c->pipelining)
			send_tx_rcpt(w, c, tx);
		return 0;
	}
	if (tx->rcpt_ok == 0) {
		/* Nobody to deliver to: pipelined, DATA gets 503 or 554 (RFC
		 * 2920 3.1); lockstep, we do not send it. */
		send_tx_refuse(w, tx);
		if (!c->pipelining)
			c->need_rset = true;
		return 0;
	}
	if (!c->pipelining)
		send_tx_verb(w, c, tx);
	return 0;
}

static int send_on_data(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	unsigned t = (unsigned)(tx - c->tx);

	if (code != 354) {
		send_tx_refuse(w, tx);
		c->need_rset = tx->mail_ok;
		return 0;
	}
	if (tx->final) {
		/* 354 although the transaction failed: end it empty (RFC 2920 3.1). */
		send_out_add(c, send_cmd_dot, sizeof(send_cmd_dot) - 1);
	} else {
		send_out_add(c, tx->msg.hdr, tx->msg.hdr_len);
		send_out_add(c, tx->msg.body, tx->msg.body_len);
		send_out_add(c, send_cmd_dot, sizeof(send_cmd_dot) - 1);
		tx->body = true;
		assert(!c->eod_pending);
		c->eod_pending = true;
		c->eod_tx = (uint8_t)t;
	}
	send_wait_push(c, SEND_WAIT_DOT, t, 1);
	/* The next group (or QUIT) rides behind the end of data. */
	if (c->pipelining)
		send_sess_next(w, c);
	return 0;
}

/* The final reply to a message, after "." or BDAT LAST. */
static void send_tx_end(struct send_worker *w, struct send_tx *tx, unsigned code)
{
	if (!tx->body || tx->final)
		return; /* an empty "." or a BDAT after a refusal */
	if (code / 100 == 2)
		send_tx_accept(w, tx);
	else
		send_tx_refuse(w, tx);
}

static int send_on_dot(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
		       unsigned code)
{
	(void)c;
	send_tx_end(w, tx, code);
	return 0;
}

static int send_on_bdat(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	send_tx_end(w, tx, code);
	/* A refused BDAT LAST may leave the transaction open (RFC 3030 2). */
	if (code / 100 != 2)
		c->need_rset = tx->mail_ok;
	return 0;
}

static int send_on_rset(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)w;
	(void)c;
	(void)tx;
	(void)code;
	return 0;
}

static int send_on_quit(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)tx;
	(void)code;
	return send_conn_close(w, c, SEND_CLOSE_DONE);
}

/* ---- session ------------------------------------------------------------ */

static void send_sess_quit(struct send_worker *w, struct send_conn *c)
{
	send_conn_release(w, c);
	send_out_add(c, send_cmd_quit, sizeof(send_cmd_quit) - 1);
	send_wait_push(c, SEND_WAIT_QUIT, SEND_NO_TX, 1);
	c->quitting = true;
}

static bool send_sess_may_start(struct send_worker *w, const struct send_conn *c)
{
	unsigned limit = w->run->opt->per_connection;

	if (atomic_load_explicit(&w->run->stop, memory_order_relaxed))
		return false;
	return c->reserved || ((limit == 0 || c->msgs < limit) && send_run_has_work(w->run));
}

/* The session is between transactions, or will be once the server has
 * read what is queued: start the next message, park for a token, or QUIT. */
void send_sess_next(struct send_worker *w, struct send_conn *c)
{
	struct send_run *run = w->run;
	uint64_t seq;

	if (c->quitting || c->parked || c->state != SEND_CONN_OPEN)
		return;
	if (!send_sess_may_start(w, c)) {
		send_sess_quit(w, c);
		return;
	}
	if (c->need_rset && !c->pipelining) {
		send_out_add(c, send_cmd_rset, sizeof(send_cmd_rset) - 1);
		send_wait_push(c, SEND_WAIT_RSET, SEND_NO_TX, 1);
		c->need_rset = false;
		return; /* its reply brings us back here */
	}
	if (!c->token && !send_rate_take(w)) {
		send_rate_park(w, c);
		return;
	}
	c->token = false;
	if (!c->reserved && !send_run_reserve(run)) {
		send_sess_quit(w, c); /* another session took the last one */
		return;
	}
	c->reserved = false; /* spent on this message */
	seq = atomic_fetch_add_explicit(&run->next_seq, 1, memory_order_relaxed);
	assert(run->opt->messages == 0 || seq < run->opt->messages);
	send_tx_start(w, c, seq);
}

static size_t send_size_pick(struct send_worker *w)
{
	const struct send_opts *o = w->run->opt;
	const struct send_size_class *cls = &o->sizes[0];

	if (o->nsizes > 1) {
		unsigned pct = (unsigned)(send_rand(w) % 100);

		while (pct >= cls->cum_pct)
			cls++;
	}
	if (cls->lo == cls->hi)
		return cls->lo;
	return cls->lo + send_rand(w) % (cls->hi - cls->lo + 1);
}

/* Fill in the commands of tx for its message. */
static void send_tx_commands(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	const struct send_run *run = w->run;
	size_t size = tx->msg.hdr_len + tx->msg.body_len;
	char *p = tx->mail;

	memcpy(p, run->mail_prefix, run->mail_prefix_len);
	p += run->mail_prefix_len;
	if ((c->exts.flags & SMTP_EXT_SIZE)) { /* RFC 1870: lets the server refuse early */
		memcpy(p, " SIZE=", 6);
		p = send_put_u64(p + 6, size);
	}
	memcpy(p, "\r\n", 2);
	tx->mail_len = (size_t)(p + 2 - tx->mail);
	if (run->opt->bdat) {
		p = tx->verb;
		memcpy(p, "BDAT ", 5);
		p = send_put_u64(p + 5, size);
		memcpy(p, " LAST\r\n", 7);
		tx->verb_len = (size_t)(p + 7 - tx->verb);
	}
}

/* Start message seq on c: MAIL, and when pipelining the rest of the group. */
static void send_tx_start(struct send_worker *w, struct send_conn *c, uint64_t seq)
{
	struct send_run *run = w->run;
	const struct send_opts *o = run->opt;
	unsigned t = c->next_tx;
	struct send_tx *tx = &c->tx[t];
	int built;

	/* Alternate slots: the one before may still be queued for writing. */
	assert(!tx->active);
	c->next_tx ^= 1;
	tx->active = true;
	tx->final = tx->mail_ok = tx->body = false;
	tx->rcpt_sent = tx->rcpt_done = tx->rcpt_ok = 0;
	tx->eod_ns = 0;
	built = benchmsg_build(run->pool, o->run_id, seq, o->rcpts, send_size_pick(w), o->from,
			       o->domain, &tx->msg);
	assert(built == 0); /* send_run_init() tried the longest header */
	(void)built;
	send_tx_commands(w, c, tx);
	c->msgs++;
	send_stat_add(&w->st.attempted, 1);
	if (c->need_rset) {
		send_out_add(c, send_cmd_rset, sizeof(send_cmd_rset) - 1);
		send_wait_push(c, SEND_WAIT_RSET, SEND_NO_TX, 1);
		c->need_rset = false;
	}
	send_out_add(c, tx->mail, tx->mail_len);
	send_wait_push(c, SEND_WAIT_MAIL, t, 1);
	if (!c->pipelining)
		return;
	send_out_add(c, run->rcpt_block, run->rcpt_off[o->rcpts]);
	send_wait_push(c, SEND_WAIT_RCPT, t, o->rcpts);
	tx->rcpt_sent = o->rcpts;
	send_tx_verb(w, c, tx);
	/* BDAT has no 354 to wait for: the connection's last message takes
	 * QUIT in the same write (RFC 2920 3.1: QUIT may end a group). */
	if (o->bdat && o->per_connection && c->msgs >= o->per_connection)
		send_sess_quit(w, c);
}
