/*
 * dsn_sample: compose one delivery status notification about a fixed sample
 * original and write it to stdout, for tests/integration/dsn_format.py.
 *
 *   dsn_sample [--kind failed|delayed|delivered|relayed] [--ret full|hdrs|unset]
 *              [--envid X] [--orcpt] [--utf8] [--8bit] [--rcpts N]
 *              [--max-return N] [--long-diag] [--diag TEXT] [--remote-mta TEXT]
 *              [--append TEXT] [--pad N] [--original]
 *
 * --diag and --remote-mta replace recipient 0's diagnostic and remote host
 * (as remote servers send them: CR, LF and all); --append adds TEXT to the
 * original's body and --pad at least N octets of 78-octet lines, for a
 * big original.  --original writes that original instead of a notice, so a
 * test can compare what comes back.
 *
 * Output: the notice envelope as one JSON line (sender, recipients with
 * notify bits, body, smtputf8), then the message exactly as composed.
 * Exit 0, or 2 on a usage error, 1 when dsn_compose() fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/dsn.h"

#define SAMPLE_NOW 1700000000
#define SAMPLE_MAX_RCPTS 50

struct sample_opts {
	enum dsn_action kind;
	uint8_t ret;
	const char *envid;
	bool orcpt;
	bool utf8;
	bool eight;
	bool long_diag;
	bool original;		/* print the original, compose nothing */
	unsigned nrcpts;
	size_t max_return;
	const char *diag;	/* recipient 0's diagnostic, or NULL */
	const char *remote_mta; /* recipient 0's remote MTA, or NULL */
	const char *append;	/* added to the original's body, or NULL */
	size_t pad;		/* octets of filler lines added to the body */
};

static int usage(void)
{
	fprintf(stderr, "usage: dsn_sample [--kind failed|delayed|delivered|relayed] "
			"[--ret full|hdrs|unset] [--envid X] [--orcpt] [--utf8] [--8bit] "
			"[--rcpts N] [--max-return N] [--long-diag] [--diag TEXT] "
			"[--remote-mta TEXT] [--append TEXT] [--pad N] [--original]\n");
	return 2;
}

static int parse_kind(const char *s, enum dsn_action *out)
{
	static const char *const names[] = {"failed", "delayed", "delivered", "relayed"};
	for (unsigned i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum dsn_action)i;
			return 0;
		}
	return -EINVAL;
}

static int parse_ret(const char *s, uint8_t *out)
{
	if (strcmp(s, "full") == 0)
		*out = ENVELOPE_RET_FULL;
	else if (strcmp(s, "hdrs") == 0)
		*out = ENVELOPE_RET_HDRS;
	else if (strcmp(s, "unset") == 0)
		*out = ENVELOPE_RET_UNSET;
	else
		return -EINVAL;
	return 0;
}

static int parse_opts(int argc, char **argv, struct sample_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (strcmp(a, "--orcpt") == 0) {
			o->orcpt = true;
		} else if (strcmp(a, "--utf8") == 0) {
			o->utf8 = true;
		} else if (strcmp(a, "--8bit") == 0) {
			o->eight = true;
		} else if (strcmp(a, "--long-diag") == 0) {
			o->long_diag = true;
		} else if (strcmp(a, "--original") == 0) {
			o->original = true;
		} else if (!v) {
			return -EINVAL;
		} else if (strcmp(a, "--kind") == 0) {
			if (parse_kind(v, &o->kind) < 0)
				return -EINVAL;
			i++;
		} else if (strcmp(a, "--ret") == 0) {
			if (parse_ret(v, &o->ret) < 0)
				return -EINVAL;
			i++;
		} else if (strcmp(a, "--envid") == 0) {
			o->envid = v;
			i++;
		} else if (strcmp(a, "--rcpts") == 0) {
			unsigned long n = strtoul(v, &end, 10);
			if (*end || n < 1 || n > SAMPLE_MAX_RCPTS)
				return -EINVAL;
			o->nrcpts = (unsigned)n;
			i++;
		} else if (strcmp(a, "--max-return") == 0 || strcmp(a, "--pad") == 0) {
			unsigned long long n = strtoull(v, &end, 10);
			if (*end || !*v || n > 64ull * 1024 * 1024)
				return -EINVAL;
			if (a[2] == 'm')
				o->max_return = (size_t)n;
			else
				o->pad = (size_t)n;
			i++;
		} else if (strcmp(a, "--diag") == 0) {
			o->diag = v;
			i++;
		} else if (strcmp(a, "--remote-mta") == 0) {
			o->remote_mta = v;
			i++;
		} else if (strcmp(a, "--append") == 0) {
			o->append = v;
			i++;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* The sample original: CRLF lines, 8-bit text in the body with --8bit. */
static char *sample_message(const struct sample_opts *o)
{
	char *m = NULL;
	int n = asprintf(&m,
			 "From: %s\r\n"
			 "To: Bob <bob0@example.net>\r\n"
			 "Subject: Quarterly report\r\n"
			 "Date: Tue, 14 Nov 2023 21:13:20 +0000\r\n"
			 "Message-ID: <sample.1@example.org>\r\n"
			 "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=%s\r\n"
			 "Content-Transfer-Encoding: %s\r\n"
			 "\r\n"
			 "Hello Bob,\r\n"
			 "\r\n"
			 "%s"
			 "the figures are below.\r\n"
			 "-- \r\n"
			 "Alice\r\n",
			 o->utf8 ? "J\xc3\xb6s\xc3\xa9 <j\xc3\xb6s\xc3\xa9@example.org>"
				 : "Alice Sender <alice@example.org>",
			 o->eight || o->utf8 ? "utf-8" : "us-ascii",
			 o->eight || o->utf8 ? "8bit" : "7bit",
			 o->eight ? "Gr\xc3\xbc\xc3\x9f"
				    "e aus K\xc3\xb6ln,\r\n"
				  : "");
	if (n < 0)
		return NULL;
	size_t len = (size_t)n, extra = o->append ? strlen(o->append) : 0;
	/* Filler lines of 76 octets plus CRLF: a big but legal original. */
	size_t lines = (o->pad + 77) / 78;
	char *big = realloc(m, len + extra + lines * 78 + 1);
	if (!big) {
		free(m);
		return NULL;
	}
	m = big;
	if (extra)
		memcpy(m + len, o->append, extra);
	len += extra;
	for (size_t i = 0; i < lines; i++) {
		snprintf(m + len, 10, "%08zu ", i % 100000000);
		memset(m + len + 9, 'x', 67);
		memcpy(m + len + 76, "\r\n", 2);
		len += 78;
	}
	m[len] = '\0';
	return m;
}

static void json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void print_envelope_json(const struct envelope *n)
{
	static const char *const bodies[] = {"", "7BIT", "8BITMIME"};

	printf("{\"sender\": ");
	json_string(n->sender);
	printf(", \"recipients\": [");
	for (uint32_t i = 0; i < n->nrcpts; i++) {
		printf("%s{\"addr\": ", i ? ", " : "");
		json_string(n->rcpts[i].addr);
		printf(", \"orcpt\": ");
		if (n->rcpts[i].orcpt)
			json_string(n->rcpts[i].orcpt);
		else
			printf("null");
		printf(", \"notify\": %u}", n->rcpts[i].notify);
	}
	printf("], \"body\": \"%s\", \"smtputf8\": %s, \"protocol\": ", bodies[n->body % 3],
	       n->smtputf8 ? "true" : "false");
	json_string(n->protocol ? n->protocol : "");
	printf(", \"envid\": ");
	if (n->envid)
		json_string(n->envid);
	else
		printf("null");
	printf("}\n");
}

static const char *sample_status(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "5.1.1";
	case DSN_ACTION_DELAYED:
		return "4.4.1";
	default:
		return "2.0.0";
	}
}

static char *sample_diagnostic(const struct sample_opts *o, unsigned i)
{
	char *d = NULL;
	int n;

	if (o->long_diag && i == 0) {
		/* Longer than any header line may be: must be folded. */
		size_t len = 0, cap = 4096;
		d = malloc(cap);
		if (!d)
			return NULL;
		len = (size_t)snprintf(d, cap, "smtp; 550 5.1.1 <bob0@example.net>:");
		while (len < 1500)
			len += (size_t)snprintf(d + len, cap - len, " word%zu", len);
		return d;
	}
	switch (o->kind) {
	case DSN_ACTION_FAILED:
		n = asprintf(&d, "smtp; 550 5.1.1 <bob%u@example.net>: Recipient address rejected: "
				 "User unknown",
			     i);
		break;
	case DSN_ACTION_DELAYED:
		n = asprintf(&d, "X-Sluice; connect to mx1.example.net[192.0.2.1]:25: "
				 "Connection timed out");
		break;
	default:
		n = asprintf(&d, "smtp; 250 2.0.0 Ok: queued as ABC%u", i);
		break;
	}
	return n < 0 ? NULL : d;
}

static int build_envelope(const struct sample_opts *o, struct envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->sender = strdup(o->utf8 ? "j\xc3\xb6s\xc3\xa9@example.org" : "alice@example.org");
	env->envid = o->envid ? strdup(o->envid) : NULL;
	env->ret = o->ret;
	env->body = o->eight ? ENVELOPE_BODY_8BITMIME : ENVELOPE_BODY_UNSET;
	env->smtputf8 = o->utf8;
	env->protocol = "ESMTP";
	env->arrival = SAMPLE_NOW - 3600;
	if (!env->sender || (o->envid && !env->envid))
		return -ENOMEM;
	for (unsigned i = 0; i < o->nrcpts; i++) {
		char addr[64], orcpt[96];
		uint8_t notify = o->kind == DSN_ACTION_DELIVERED || o->kind == DSN_ACTION_RELAYED
					 ? ENVELOPE_NOTIFY_SUCCESS | ENVELOPE_NOTIFY_FAILURE
					 : 0;
		/* Recipient 0 is UTF-8 with --utf8; the others stay ASCII. */
		snprintf(addr, sizeof(addr), "%s%u@example.net", o->utf8 && i == 0 ? "b\xc3\xb8" "b" : "bob",
			 i);
		/* xtext (RFC 3461 section 4): "+2B" is a '+'. */
		snprintf(orcpt, sizeof(orcpt), "rfc822;bob%u+2Balias@example.net", i);
		int rc = envelope_add_rcpt(env, addr, o->orcpt ? orcpt : NULL, notify);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sample_opts o = {.kind = DSN_ACTION_FAILED, .nrcpts = 1};
	struct dsn_rcpt rcpts[SAMPLE_MAX_RCPTS];
	char *diags[SAMPLE_MAX_RCPTS] = {0};
	struct envelope env, notice;
	uint8_t *msg = NULL;
	size_t msg_len = 0;
	int rc, status = 1;

	if (parse_opts(argc, argv, &o) < 0)
		return usage();
	char *orig = sample_message(&o);
	if (!orig || build_envelope(&o, &env) < 0) {
		fprintf(stderr, "dsn_sample: out of memory\n");
		free(orig);
		envelope_free(&env);
		return 1;
	}
	if (o.original) {
		size_t len = strlen(orig);
		status = fwrite(orig, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
		free(orig);
		envelope_free(&env);
		return status;
	}
	for (unsigned i = 0; i < o.nrcpts; i++) {
		diags[i] = sample_diagnostic(&o, i);
		rcpts[i] = (struct dsn_rcpt){
		    .rcpt = i,
		    .action = o.kind,
		    .status = sample_status(o.kind),
		    .diagnostic = i == 0 && o.diag ? o.diag : diags[i],
		    .remote_mta = i == 0 && o.remote_mta ? o.remote_mta : "mx1.example.net",
		    .last_attempt = SAMPLE_NOW - 60,
		    .will_retry_until = o.kind == DSN_ACTION_DELAYED ? SAMPLE_NOW + 5 * 86400 : 0,
		};
	}
	struct dsn_report rep = {
	    .reporting_mta = "relay.example.com",
	    .qid = "0123456789ABCDEF",
	    .env = &env,
	    .body = (const uint8_t *)orig,
	    .body_len = strlen(orig),
	    .rcpts = rcpts,
	    .nrcpts = o.nrcpts,
	    .now = SAMPLE_NOW,
	    .unique = 42,
	    .max_return = o.max_return,
	};
	rc = dsn_compose(&rep, &notice, &msg, &msg_len);
	if (rc < 0) {
		fprintf(stderr, "dsn_sample: dsn_compose: %s\n", strerror(-rc));
	} else {
		print_envelope_json(&notice);
		if (fwrite(msg, 1, msg_len, stdout) == msg_len && fflush(stdout) == 0)
			status = 0;
		free(msg);
		envelope_free(&notice);
	}
	for (unsigned i = 0; i < o.nrcpts; i++)
		free(diags[i]);
	envelope_free(&env);
	free(orig);
	return status;
}
