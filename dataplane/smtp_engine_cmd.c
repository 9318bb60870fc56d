/* smtp_engine_cmd: the commands[] table, one check and one proceed function per verb. */
#include "dataplane/smtp_engine_pvt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 3461 4.4 and 4.2: the longest ENVID and ORCPT values. */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500

/*
 * check: the command is allowed in this state with these arguments; it
 * queues the refusal and returns -1 otherwise.  proceed: do it (reply,
 * pause with an event, or switch to DATA/BDAT reading).
 */
struct smtp_cmd {
	const char *verb;
	size_t len;
	int (*check)(struct smtp_engine *e, char *args);
	void (*proceed)(struct smtp_engine *e, char *args);
};

static int smtp_check_any(struct smtp_engine *e, char *args);
static int smtp_check_noarg(struct smtp_engine *e, char *args);
static int smtp_check_helo(struct smtp_engine *e, char *args);
static int smtp_check_mail(struct smtp_engine *e, char *args);
static int smtp_check_rcpt(struct smtp_engine *e, char *args);
static int smtp_check_data(struct smtp_engine *e, char *args);
static int smtp_check_bdat(struct smtp_engine *e, char *args);
static int smtp_check_vrfy(struct smtp_engine *e, char *args);
static void smtp_proceed_helo(struct smtp_engine *e, char *args);
static void smtp_proceed_ehlo(struct smtp_engine *e, char *args);
static void smtp_proceed_mail(struct smtp_engine *e, char *args);
static void smtp_proceed_rcpt(struct smtp_engine *e, char *args);
static void smtp_proceed_data(struct smtp_engine *e, char *args);
static void smtp_proceed_bdat(struct smtp_engine *e, char *args);
static void smtp_proceed_rset(struct smtp_engine *e, char *args);
static void smtp_proceed_noop(struct smtp_engine *e, char *args);
static void smtp_proceed_quit(struct smtp_engine *e, char *args);
static void smtp_proceed_help(struct smtp_engine *e, char *args);
static void smtp_proceed_vrfy(struct smtp_engine *e, char *args);
static void smtp_proceed_expn(struct smtp_engine *e, char *args);

/* clang-format off */
#define SMTP_CMD(v, c, p) {v, sizeof(v) - 1, c, p}

static const struct smtp_cmd commands[] = {
	SMTP_CMD("EHLO", smtp_check_helo, smtp_proceed_ehlo),
	SMTP_CMD("HELO", smtp_check_helo, smtp_proceed_helo),
	SMTP_CMD("MAIL", smtp_check_mail, smtp_proceed_mail),
	SMTP_CMD("RCPT", smtp_check_rcpt, smtp_proceed_rcpt),
	SMTP_CMD("DATA", smtp_check_data, smtp_proceed_data),
	SMTP_CMD("BDAT", smtp_check_bdat, smtp_proceed_bdat),
	SMTP_CMD("RSET", smtp_check_noarg, smtp_proceed_rset),
	SMTP_CMD("NOOP", smtp_check_any, smtp_proceed_noop),
	SMTP_CMD("QUIT", smtp_check_any, smtp_proceed_quit),
	SMTP_CMD("HELP", smtp_check_any, smtp_proceed_help),
	SMTP_CMD("VRFY", smtp_check_vrfy, smtp_proceed_vrfy),
	SMTP_CMD("EXPN", smtp_check_any, smtp_proceed_expn),
};
/* clang-format on */

/*
 * Verbs of SMTP and its extensions that we know but do not offer: RFC 5321
 * 4.2.4 wants 502 for them and 500 only for verbs not recognised at all.
 * (STARTTLS and AUTH arrive with TLS.)
 */
static bool smtp_verb_known(const char *verb, size_t vlen)
{
	static const char *const known[] = {"STARTTLS", "AUTH", "ETRN", "ATRN", "TURN",
					    "SEND", "SOML", "SAML", "BURL"};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strlen(known[i]) == vlen && strncasecmp(verb, known[i], vlen) == 0)
			return true;
	return false;
}

void smtp_engine_cmd_dispatch(struct smtp_engine *e)
{
	char *line = e->line;
	char *sp = strchr(line, ' ');
	size_t vlen = sp ? (size_t)(sp - line) : strlen(line);
	char *args = sp ? sp + 1 : line + vlen;

	if (vlen == 0) {
		smtp_engine_reply_error(e, 500, "5.5.2 Error: bad syntax");
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct smtp_cmd *c = &commands[i];
		if (c->len == vlen && strncasecmp(line, c->verb, vlen) == 0) {
			if (c->check(e, args) == 0)
				c->proceed(e, args);
			return;
		}
	}
	if (smtp_verb_known(line, vlen))
		smtp_engine_reply_error(e, 502, "5.5.1 Error: command not implemented");
	else
		smtp_engine_reply_error(e, 500, "5.5.1 Error: command not recognized");
}

static bool smtp_has_helo(const struct smtp_engine *e)
{
	return e->sess_flags & SMTP_SF_HELO;
}

static bool smtp_in_tx(const struct smtp_engine *e)
{
	return e->state == SMTP_STATE_RCPT || e->state == SMTP_STATE_BDAT;
}

/* ---- checks ---- */

static int smtp_check_any(struct smtp_engine *e, char *args)
{
	(void)e;
	(void)args;
	return 0;
}

static int smtp_check_noarg(struct smtp_engine *e, char *args)
{
	if (*args) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax error: no parameters allowed");
		return -1;
	}
	return 0;
}

static int smtp_check_helo(struct smtp_engine *e, char *args)
{
	while (*args == ' ')
		args++;
	if (!*args) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: EHLO hostname");
		return -1;
	}
	return 0;
}

static int smtp_check_mail(struct smtp_engine *e, char *args)
{
	(void)args;
	if (!smtp_has_helo(e)) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: send HELO/EHLO first");
		return -1;
	}
	if (smtp_in_tx(e)) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: nested MAIL command");
		return -1;
	}
	return 0;
}

static int smtp_check_rcpt(struct smtp_engine *e, char *args)
{
	(void)args;
	if (e->state == SMTP_STATE_BDAT) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: RCPT after BDAT");
		return -1;
	}
	if (!smtp_in_tx(e)) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: need MAIL command");
		return -1;
	}
	return 0;
}

static int smtp_check_data(struct smtp_engine *e, char *args)
{
	if (e->state == SMTP_STATE_BDAT) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: DATA after BDAT");
		return -1;
	}
	if (!smtp_in_tx(e)) {
		smtp_engine_reply_error(e, 503, "5.5.1 Error: need MAIL command");
		return -1;
	}
	if (*args) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: DATA");
		return -1;
	}
	if (e->env.nrcpts == 0) {
		/* RFC 2920 3.1: how a pipelining client learns all RCPTs failed. */
		smtp_engine_reply_error(e, 554, "5.5.1 Error: no valid recipients");
		return -1;
	}
	return 0;
}

/* "BDAT" SP chunk-size [ SP "LAST" ] (RFC 3030 3). */
static int smtp_bdat_parse(char *args, uint64_t *size, bool *last)
{
	char *cur = args, *tok, *extra;
	if (*args == ' ')
		return -1;
	tok = smtp_engine_next_param(&cur);
	if (!tok || smtp_engine_parse_u64(tok, size) < 0)
		return -1;
	*last = false;
	if ((tok = smtp_engine_next_param(&cur)) != NULL) {
		if (strcasecmp(tok, "LAST") != 0)
			return -1;
		*last = true;
	}
	extra = smtp_engine_next_param(&cur);
	return extra ? -1 : 0;
}

static int smtp_check_bdat(struct smtp_engine *e, char *args)
{
	char tmp[SMTP_LINE_MAX];
	uint64_t size;
	bool last;
	/* Parse a copy: proceed parses again from the untouched line. */
	snprintf(tmp, sizeof(tmp), "%s", args);
	if (smtp_bdat_parse(tmp, &size, &last) < 0) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: BDAT size [LAST]");
		return -1;
	}
	return 0;
}

static int smtp_check_vrfy(struct smtp_engine *e, char *args)
{
	if (!*args) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: VRFY address");
		return -1;
	}
	return 0;
}

/* ---- HELO / EHLO ---- */

static int smtp_helo_set(struct smtp_engine *e, char *args, uint8_t flags)
{
	char *name, *end;
	while (*args == ' ')
		args++;
	end = args + strlen(args);
	while (end > args && end[-1] == ' ')
		end--;
	*end = '\0';
	name = strdup(args);
	if (!name) {
		smtp_engine_reply(e, 451, "4.3.0 Error: out of memory, try again later");
		return -1;
	}
	/* RFC 5321 4.1.4: HELO/EHLO again resets the transaction. */
	smtp_engine_tx_reset(e);
	free(e->helo);
	e->helo = name;
	e->sess_flags = flags;
	e->state = SMTP_STATE_READY;
	return 0;
}

static void smtp_proceed_helo(struct smtp_engine *e, char *args)
{
	if (smtp_helo_set(e, args, SMTP_SF_HELO) == 0)
		smtp_engine_reply(e, 250, "%s", smtp_engine_hostname(e));
}

static void smtp_proceed_ehlo(struct smtp_engine *e, char *args)
{
	char buf[SMTP_REPLY_MAX];
	int n;
	if (smtp_helo_set(e, args, SMTP_SF_HELO | SMTP_SF_EHLO) < 0)
		return;
	/* RFC 2034: no enhanced status codes in the EHLO reply. */
	n = snprintf(buf, sizeof(buf),
		     "250-%.255s\r\n"
		     "250-PIPELINING\r\n"
		     "250-SIZE %llu\r\n"
		     "250-8BITMIME\r\n"
		     "250-SMTPUTF8\r\n"
		     "250-ENHANCEDSTATUSCODES\r\n"
		     "250-DSN\r\n"
		     "250-CHUNKING\r\n"
		     "250 HELP\r\n",
		     smtp_engine_hostname(e), (unsigned long long)e->cfg->max_message_size);
	smtp_engine_reply_raw(e, buf, (size_t)n);
}

/* ---- MAIL ---- */

/* "FROM:" or "TO:" then the path (a space after the colon is tolerated:
 * common in the field and harmless). */
static char *smtp_path_start(char *args, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncasecmp(args, prefix, n) != 0)
		return NULL;
	args += n;
	while (*args == ' ')
		args++;
	return args;
}

/* Split "KEY=value" in place; *val is NULL when there is no "=". */
static int smtp_param_split(char *tok, char **val)
{
	char *eq = strchr(tok, '=');
	size_t klen = eq ? (size_t)(eq - tok) : strlen(tok);
	if (!smtp_engine_keyword_valid(tok, klen))
		return -1;
	*val = NULL;
	if (eq) {
		*eq = '\0';
		if (!smtp_engine_param_value_valid(eq + 1))
			return -1;
		*val = eq + 1;
	}
	return 0;
}

/* Parse MAIL parameters into the pend_* fields; queues the error reply. */
static int smtp_mail_params(struct smtp_engine *e, char *cur)
{
	char *tok, *val;
	bool seen_size = false;
	while ((tok = smtp_engine_next_param(&cur)) != NULL) {
		if (smtp_param_split(tok, &val) < 0) {
			smtp_engine_reply_error(e, 501, "5.5.4 Bad parameter syntax");
			return -1;
		}
		if (!(e->sess_flags & SMTP_SF_EHLO)) {
			smtp_engine_reply_error(e, 555, "5.5.4 Parameters need EHLO");
			return -1;
		}
		if (strcasecmp(tok, "SIZE") == 0) {
			if (seen_size || !val || smtp_engine_parse_u64(val, &e->pend_size) < 0)
				goto bad_value;
			seen_size = true;
		} else if (strcasecmp(tok, "BODY") == 0) {
			if (e->pend_body || !val)
				goto bad_value;
			if (strcasecmp(val, "7BIT") == 0)
				e->pend_body = ENVELOPE_BODY_7BIT;
			else if (strcasecmp(val, "8BITMIME") == 0)
				e->pend_body = ENVELOPE_BODY_8BITMIME;
			else
				goto bad_value;
		} else if (strcasecmp(tok, "SMTPUTF8") == 0) {
			if (e->pend_utf8 || val)
				goto bad_value;
			e->pend_utf8 = true;
		} else if (strcasecmp(tok, "RET") == 0) {
			if (e->pend_ret || !val)
				goto bad_value;
			if (strcasecmp(val, "FULL") == 0)
				e->pend_ret = ENVELOPE_RET_FULL;
			else if (strcasecmp(val, "HDRS") == 0)
				e->pend_ret = ENVELOPE_RET_HDRS;
			else
				goto bad_value;
		} else if (strcasecmp(tok, "ENVID") == 0) {
			if (e->pend_envid || !val || strlen(val) > SMTP_ENVID_MAX ||
			    !smtp_engine_xtext_valid(val))
				goto bad_value;
			e->pend_envid = val;
		} else {
			smtp_engine_reply_error(e, 555, "5.5.4 Unsupported parameter %.64s", tok);
			return -1;
		}
	}
	return 0;
bad_value:
	smtp_engine_reply_error(e, 501, "5.5.4 Bad %.16s parameter", tok);
	return -1;
}

static void smtp_proceed_mail(struct smtp_engine *e, char *args)
{
	char *path = smtp_path_start(args, "FROM:"), *inner, *rest, *mailbox, *domain;
	int rc;
	unsigned flags = SMTP_PATH_NULL_OK;

	e->pend_size = 0;
	e->pend_envid = NULL;
	e->pend_ret = ENVELOPE_RET_UNSET;
	e->pend_body = ENVELOPE_BODY_UNSET;
	e->pend_utf8 = false;
	if (!path || (rc = smtp_engine_path_split(path, &inner, &rest)) == -1) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (rc < 0) {
		smtp_engine_reply_error(e, 501, "5.1.7 Bad sender address syntax");
		return;
	}
	if (smtp_mail_params(e, rest) < 0)
		return;
	if (e->pend_utf8)
		flags |= SMTP_PATH_UTF8;
	if (smtp_engine_path_check(inner, flags, &mailbox, &domain) < 0) {
		smtp_engine_reply_error(e, 501, "5.1.7 Bad sender address syntax");
		return;
	}
	if (e->cfg->max_message_size && e->pend_size > e->cfg->max_message_size) {
		smtp_engine_reply_error(e, 552, "5.3.4 Message size exceeds fixed limit");
		return;
	}
	memset(&e->ev, 0, sizeof(e->ev));
	e->ev.type = SMTP_EV_MAIL;
	e->ev.addr = mailbox;
	e->ev.domain = domain;
}

/* ---- RCPT ---- */

/* NOTIFY=NEVER / 1#(SUCCESS / FAILURE / DELAY) (RFC 3461 4.1). */
static int smtp_notify_parse(char *val, uint8_t *bits)
{
	uint8_t b = 0;
	for (;;) {
		char *comma = strchr(val, ',');
		if (comma)
			*comma = '\0';
		if (strcasecmp(val, "NEVER") == 0)
			b |= ENVELOPE_NOTIFY_NEVER;
		else if (strcasecmp(val, "SUCCESS") == 0)
			b |= ENVELOPE_NOTIFY_SUCCESS;
		else if (strcasecmp(val, "FAILURE") == 0)
			b |= ENVELOPE_NOTIFY_FAILURE;
		else if (strcasecmp(val, "DELAY") == 0)
			b |= ENVELOPE_NOTIFY_DELAY;
		else
			return -1; /* unknown or empty item */
		if (!comma)
			break;
		val = comma + 1;
	}
	if ((b & ENVELOPE_NOTIFY_NEVER) && b != ENVELOPE_NOTIFY_NEVER)
		return -1;
	*bits = b;
	return 0;
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2); addr-type is an atom. */
static bool smtp_orcpt_valid(const char *val)
{
	const char *semi = strchr(val, ';');
	if (!semi || semi == val || strlen(val) > SMTP_ORCPT_MAX)
		return false;
	for (const char *p = val; p < semi; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "!#$%&'*+-/=?^_`{|}~",
			    *p))
			return false;
	return smtp_engine_xtext_valid(semi + 1);
}

static int smtp_rcpt_params(struct smtp_engine *e, char *cur)
{
	char *tok, *val;
	while ((tok = smtp_engine_next_param(&cur)) != NULL) {
		if (smtp_param_split(tok, &val) < 0) {
			smtp_engine_reply_error(e, 501, "5.5.4 Bad parameter syntax");
			return -1;
		}
		if (!(e->sess_flags & SMTP_SF_EHLO)) {
			smtp_engine_reply_error(e, 555, "5.5.4 Parameters need EHLO");
			return -1;
		}
		if (strcasecmp(tok, "NOTIFY") == 0) {
			if (e->ev.notify || !val || smtp_notify_parse(val, &e->ev.notify) < 0)
				goto bad_value;
		} else if (strcasecmp(tok, "ORCPT") == 0) {
			if (e->ev.orcpt || !val || !smtp_orcpt_valid(val))
				goto bad_value;
			e->ev.orcpt = val;
		} else {
			smtp_engine_reply_error(e, 555, "5.5.4 Unsupported parameter %.64s", tok);
			return -1;
		}
	}
	return 0;
bad_value:
	smtp_engine_reply_error(e, 501, "5.5.4 Bad %.16s parameter", tok);
	return -1;
}

static void smtp_proceed_rcpt(struct smtp_engine *e, char *args)
{
	char *path = smtp_path_start(args, "TO:"), *inner, *rest, *mailbox, *domain;
	unsigned flags = SMTP_PATH_POSTMASTER;
	int rc;

	memset(&e->ev, 0, sizeof(e->ev));
	if (!path || (rc = smtp_engine_path_split(path, &inner, &rest)) == -1) {
		smtp_engine_reply_error(e, 501, "5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (rc < 0) {
		smtp_engine_reply_error(e, 501, "5.1.3 Bad recipient address syntax");
		return;
	}
	if (smtp_rcpt_params(e, rest) < 0)
		goto fail;
	if (e->env.smtputf8)
		flags |= SMTP_PATH_UTF8;
	if (smtp_engine_path_check(inner, flags, &mailbox, &domain) < 0) {
		smtp_engine_reply_error(e, 501, "5.1.3 Bad recipient address syntax");
		goto fail;
	}
	if (e->cfg->max_recipients && e->env.nrcpts >= e->cfg->max_recipients) {
		/* RFC 5321 4.5.3.1.10: a limit of ours, not a client error. */
		smtp_engine_reply(e, 452, "4.5.3 Error: too many recipients");
		goto fail;
	}
	e->ev.type = SMTP_EV_RCPT;
	e->ev.addr = mailbox;
	e->ev.domain = domain;
	return;
fail:
	memset(&e->ev, 0, sizeof(e->ev));
}

/* ---- DATA, BDAT ---- */

static void smtp_proceed_data(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_data_begin(e);
}

static void smtp_proceed_bdat(struct smtp_engine *e, char *args)
{
	uint64_t size = 0;
	bool last = false, ok;
	(void)smtp_bdat_parse(args, &size, &last); /* checked already */
	ok = smtp_in_tx(e) && e->env.nrcpts > 0;
	smtp_engine_chunk_begin(e, size, last, !ok);
}

/* ---- the rest ---- */

static void smtp_proceed_rset(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_tx_reset(e);
	smtp_engine_reply(e, 250, "2.0.0 Ok");
}

static void smtp_proceed_noop(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_reply(e, 250, "2.0.0 Ok");
}

static void smtp_proceed_quit(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_reply(e, 221, "2.0.0 Bye");
	smtp_engine_close(e);
}

static void smtp_proceed_help(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_reply(e, 214,
			  "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
}

/* VRFY: never confirm or deny a mailbox (address harvesting); RFC 5321
 * 3.5.3 allows 252. */
static void smtp_proceed_vrfy(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_reply(e, 252,
			  "2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

/* EXPN: lists are never expanded for strangers (RFC 5321 7.3). */
static void smtp_proceed_expn(struct smtp_engine *e, char *args)
{
	(void)args;
	smtp_engine_reply_error(e, 502, "5.5.1 EXPN not supported");
}
