/*
 * engine_transcript: runs SMTP transcripts against the engine, each one fed
 * whole, one byte at a time, and split in two at every offset; every run
 * must give the expected log (replies and events) byte for byte.
 *
 *	engine_transcript [-p] FILE|DIR...  (-p: print the log of the whole run;
 *	                                     a DIR runs its *.txt files in name order)
 *
 * Transcript format, one directive per line ('#' starts a comment):
 *	@cfg key=value ...   hostname, max_message_size, max_recipients,
 *	                     max_errors, lenient_bare_lf (defaults below)
 *	@refuse CODE TEXT    call smtp_engine_refuse() instead of start
 *	C: text              client input: text + CRLF
 *	C| text              client input, raw: escapes \r \n \t \0 \\ \xHH, no CRLF
 *	R: N text            client input, raw (escapes) repeated N times
 *	S: text              expected reply line (without CRLF)
 *	E: text              expected event line (format: see log_event())
 *	D: CODE TEXT         decision for the next event: smtp_engine_resume(code, text, false)
 *	D! CODE TEXT         the same, counted as a client error
 *	A: timeout|shutdown  action once all input is fed (then its replies follow)
 * C/R lines make one input stream; S/E lines one expected log; their
 * relative order in the file is free (write them as a dialogue).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/smtp_engine.h"

struct buf {
	char *p;
	size_t len, cap;
};

struct decision {
	int code;
	bool count;
	char text[256];
};

struct transcript {
	const char *path;
	struct smtp_engine_cfg cfg;
	char hostname[128];
	int refuse_code;
	char refuse_text[256];
	struct buf input;
	struct buf expect;
	struct decision dec[256];
	unsigned ndec;
	char actions[8][16];
	unsigned nact;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	buf_put(b, tmp, n < (int)sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void unescape(struct buf *b, const char *s)
{
	while (*s) {
		char c = *s++;
		if (c != '\\') {
			buf_put(b, &c, 1);
			continue;
		}
		c = *s++;
		switch (c) {
		case 'r': c = '\r'; break;
		case 'n': c = '\n'; break;
		case 't': c = '\t'; break;
		case '0': c = '\0'; break;
		case '\\': c = '\\'; break;
		case 'x': {
			int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
			if (lo < 0) {
				fprintf(stderr, "bad \\x escape\n");
				exit(2);
			}
			c = (char)(hi * 16 + lo);
			s += 2;
			break;
		}
		default:
			fprintf(stderr, "bad escape \\%c\n", c);
			exit(2);
		}
		buf_put(b, &c, 1);
	}
}

/* Printable form of bytes for the log: \r \n \xHH, the rest as is. */
static void escape(struct buf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			buf_put(b, "\\r", 2);
		else if (p[i] == '\n')
			buf_put(b, "\\n", 2);
		else if (p[i] == '\\')
			buf_put(b, "\\\\", 2);
		else if (p[i] < 32 || p[i] >= 127)
			buf_printf(b, "\\x%02X", p[i]);
		else
			buf_put(b, &p[i], 1);
	}
}

static void escape_str(struct buf *b, const char *s)
{
	escape(b, (const uint8_t *)s, strlen(s));
}

static int cfg_set(struct transcript *t, char *kv)
{
	char *eq = strchr(kv, '=');
	if (!eq)
		return -1;
	*eq++ = '\0';
	if (strcmp(kv, "hostname") == 0)
		snprintf(t->hostname, sizeof(t->hostname), "%s", eq);
	else if (strcmp(kv, "max_message_size") == 0)
		t->cfg.max_message_size = strtoull(eq, NULL, 10);
	else if (strcmp(kv, "max_recipients") == 0)
		t->cfg.max_recipients = (unsigned)strtoul(eq, NULL, 10);
	else if (strcmp(kv, "max_errors") == 0)
		t->cfg.max_errors = (unsigned)strtoul(eq, NULL, 10);
	else if (strcmp(kv, "lenient_bare_lf") == 0)
		t->cfg.lenient_bare_lf = atoi(eq) != 0;
	else
		return -1;
	return 0;
}

static int transcript_load(struct transcript *t, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	unsigned lineno = 0;
	if (!f) {
		perror(path);
		return -1;
	}
	memset(t, 0, sizeof(*t));
	t->path = path;
	snprintf(t->hostname, sizeof(t->hostname), "mx.test");
	t->cfg.max_message_size = 10000;
	t->cfg.max_recipients = 100;
	t->cfg.max_errors = 20;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		lineno++;
		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		char *arg = line + 3;
		if (strncmp(line, "@cfg ", 5) == 0) {
			char *save, *tok;
			for (tok = strtok_r(line + 5, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
				if (cfg_set(t, tok) < 0)
					goto bad;
		} else if (strncmp(line, "@refuse ", 8) == 0) {
			t->refuse_code = atoi(line + 8);
			snprintf(t->refuse_text, sizeof(t->refuse_text), "%.200s", line + 12);
		} else if (strncmp(line, "C: ", 3) == 0) {
			buf_put(&t->input, arg, strlen(arg));
			buf_put(&t->input, "\r\n", 2);
		} else if (strncmp(line, "C| ", 3) == 0) {
			unescape(&t->input, arg);
		} else if (strncmp(line, "R: ", 3) == 0) {
			char *sp;
			unsigned long cnt = strtoul(arg, &sp, 10);
			if (*sp != ' ')
				goto bad;
			for (unsigned long i = 0; i < cnt; i++)
				unescape(&t->input, sp + 1);
		} else if (strncmp(line, "S: ", 3) == 0 || strncmp(line, "E: ", 3) == 0) {
			buf_put(&t->expect, line, n);
			buf_put(&t->expect, "\n", 1);
		} else if (strncmp(line, "D: ", 3) == 0 || strncmp(line, "D! ", 3) == 0) {
			struct decision *d;
			if (t->ndec == sizeof(t->dec) / sizeof(t->dec[0]) || n < 7)
				goto bad;
			d = &t->dec[t->ndec++];
			d->code = atoi(arg);
			d->count = line[1] == '!';
			snprintf(d->text, sizeof(d->text), "%.200s", n > 7 ? line + 7 : "");
		} else if (strncmp(line, "A: ", 3) == 0) {
			if (t->nact == 8)
				goto bad;
			snprintf(t->actions[t->nact++], sizeof(t->actions[0]), "%.15s", arg);
		} else {
			goto bad;
		}
	}
	fclose(f);
	if (!t->input.p)
		buf_put(&t->input, "", 0);
	t->cfg.hostname = t->hostname;
	return 0;
bad:
	fprintf(stderr, "%s:%u: bad line: %s\n", path, lineno, line);
	fclose(f);
	return -1;
}

static void drain(struct smtp_engine *e, struct buf *log, struct buf *pending)
{
	size_t n;
	const uint8_t *o = smtp_engine_output(e, &n);
	if (n)
		buf_put(pending, o, n);
	smtp_engine_output_consumed(e, n);
	/* Whole lines go to the log; a partial line would be an engine bug. */
	for (;;) {
		char *crlf = pending->len ? memmem(pending->p, pending->len, "\r\n", 2) : NULL;
		if (!crlf)
			break;
		size_t l = (size_t)(crlf - pending->p);
		buf_put(log, "S: ", 3);
		escape(log, (const uint8_t *)pending->p, l);
		buf_put(log, "\n", 1);
		memmove(pending->p, crlf + 2, pending->len - l - 2);
		pending->len -= l + 2;
	}
}

static void log_event(struct buf *log, const struct smtp_event *ev)
{
	switch (ev->type) {
	case SMTP_EV_MAIL:
		buf_put(log, "E: MAIL <", 9);
		escape_str(log, ev->addr);
		buf_put(log, "> domain=", 9);
		escape_str(log, ev->domain);
		buf_put(log, "\n", 1);
		break;
	case SMTP_EV_RCPT:
		buf_put(log, "E: RCPT <", 9);
		escape_str(log, ev->addr);
		buf_put(log, "> domain=", 9);
		escape_str(log, ev->domain);
		buf_printf(log, " notify=%u orcpt=%s\n", ev->notify, ev->orcpt ? ev->orcpt : "-");
		break;
	case SMTP_EV_MESSAGE: {
		const struct envelope *env = ev->env;
		buf_put(log, "E: MESSAGE from=<", 17);
		escape_str(log, env->sender);
		buf_printf(log,
			   "> proto=%s helo=%s client=%s size=%llu body=%u "
			   "ret=%u envid=%s utf8=%d\n",
			   env->protocol, env->helo ? env->helo : "-",
			   env->client_addr ? env->client_addr : "-",
			   (unsigned long long)env->size_hint, env->body, env->ret,
			   env->envid ? env->envid : "-", env->smtputf8);
		for (uint32_t i = 0; i < env->nrcpts; i++) {
			buf_put(log, "E:  to=<", 8);
			escape_str(log, env->rcpts[i].addr);
			buf_printf(log, "> notify=%u orcpt=%s\n", env->rcpts[i].notify,
				   env->rcpts[i].orcpt ? env->rcpts[i].orcpt : "-");
		}
		if (ev->body_len <= 300) {
			buf_put(log, "E:  body=", 9);
			escape(log, ev->body, ev->body_len);
			buf_put(log, "\n", 1);
		} else {
			uint32_t h = 2166136261u;
			for (size_t i = 0; i < ev->body_len; i++)
				h = (h ^ ev->body[i]) * 16777619u;
			buf_printf(log, "E:  body_len=%zu fnv=%08x\n", ev->body_len, h);
		}
		break;
	}
	default:
		buf_printf(log, "E: ??? %d\n", ev->type);
	}
}

/*
 * One run: cuts[] are the piece boundaries (ascending, last == input
 * length).  Returns the log in *log.
 */
static int transcript_run(const struct transcript *t, const size_t *cuts, size_t ncuts,
			  struct buf *log)
{
	struct smtp_engine *e = smtp_engine_new(&t->cfg, "192.0.2.1");
	struct buf pending = {0};
	const uint8_t *in = (const uint8_t *)t->input.p;
	size_t off = 0, total = t->input.len;
	unsigned dec = 0;
	bool closed = false;
	enum smtp_rc rc;
	int ret = 0;

	if (!e)
		return -1;
	if (t->refuse_code) {
		if (smtp_engine_refuse(e, t->refuse_code, t->refuse_text) != SMTP_RC_CLOSE)
			ret = -1;
		closed = true;
		drain(e, log, &pending);
		buf_put(log, "E: CLOSE\n", 9);
	} else {
		smtp_engine_start(e);
	}
	for (size_t c = 0; c < ncuts && !closed; c++) {
		size_t end = cuts[c];
		while (off < end) {
			size_t n = smtp_engine_feed(e, in + off, end - off, &rc);
			off += n;
			if (rc == SMTP_RC_EVENT) {
				const struct smtp_event *ev = smtp_engine_event(e);
				drain(e, log, &pending);
				if (!ev) {
					buf_put(log, "E: EVENT without event\n", 23);
					ret = -1;
					goto out;
				}
				log_event(log, ev);
				if (smtp_engine_timeout_kind(e) != SMTP_TIMEOUT_NONE) {
					buf_put(log, "E: paused but timeout kind is not NONE\n", 39);
					ret = -1;
				}
				if (dec == t->ndec) {
					buf_put(log, "E: no decision left\n", 20);
					ret = -1;
					goto out;
				}
				rc = smtp_engine_resume(e, t->dec[dec].code, t->dec[dec].text,
							t->dec[dec].count);
				dec++;
			} else if (rc == SMTP_RC_OK && off != end) {
				buf_put(log, "E: OK but not all consumed\n", 27);
				ret = -1;
				goto out;
			}
			if (rc == SMTP_RC_CLOSE) {
				drain(e, log, &pending);
				buf_printf(log, "E: CLOSE unconsumed=%zu\n", total - off);
				closed = true;
				/* After CLOSE nothing more is consumed. */
				if (off < total && smtp_engine_feed(e, in + off, total - off, &rc) != 0) {
					buf_put(log, "E: consumed after CLOSE\n", 24);
					ret = -1;
				}
				break;
			}
		}
	}
	for (unsigned a = 0; a < t->nact && !closed; a++) {
		drain(e, log, &pending);
		if (strcmp(t->actions[a], "timeout") == 0)
			rc = smtp_engine_timeout(e);
		else if (strcmp(t->actions[a], "shutdown") == 0)
			rc = smtp_engine_shutdown(e);
		else
			rc = SMTP_RC_OK;
		if (rc == SMTP_RC_CLOSE) {
			drain(e, log, &pending);
			buf_put(log, "E: CLOSE\n", 9);
			closed = true;
		}
	}
	drain(e, log, &pending);
	if (pending.len) {
		buf_put(log, "E: partial output line: ", 24);
		escape(log, (const uint8_t *)pending.p, pending.len);
		buf_put(log, "\n", 1);
	}
	if (dec != t->ndec)
		buf_printf(log, "E: decisions unused=%u\n", t->ndec - dec);
out:
	free(pending.p);
	smtp_engine_free(e);
	return ret;
}

static void show_diff(const char *what, const char *got, const char *want)
{
	size_t i = 0;
	while (got[i] && got[i] == want[i])
		i++;
	size_t ls = i;
	while (ls > 0 && got[ls - 1] != '\n')
		ls--;
	fprintf(stderr, "  %s: first difference at byte %zu\n  got:  %.300s\n  want: %.300s\n", what,
		i, got + ls, want + ls);
}

static int transcript_check(const char *path, bool print)
{
	struct transcript *t = malloc(sizeof(*t));
	struct buf whole = {0};
	size_t cut1[1];
	int fails = 0;

	if (!t || transcript_load(t, path) < 0) {
		free(t);
		return 1;
	}
	size_t len = t->input.len;
	cut1[0] = len;
	transcript_run(t, cut1, 1, &whole);
	buf_put(&whole, "", 0);
	buf_put(&t->expect, "", 0);
	if (print)
		fputs(whole.p, stdout);
	if (strcmp(whole.p, t->expect.p) != 0) {
		fprintf(stderr, "FAIL %s: whole run differs from the transcript\n", path);
		show_diff("whole", whole.p, t->expect.p);
		fails++;
	}
	/* One byte at a time. */
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	struct buf log = {0};
	transcript_run(t, cuts, len, &log);
	buf_put(&log, "", 0);
	if (strcmp(log.p, whole.p) != 0) {
		fprintf(stderr, "FAIL %s: byte-by-byte run differs\n", path);
		show_diff("bytewise", log.p, whole.p);
		fails++;
	}
	/* Two pieces, split at every offset. */
	for (size_t k = 0; k <= len; k++) {
		size_t c2[2] = {k, len};
		log.len = 0;
		transcript_run(t, c2, 2, &log);
		buf_put(&log, "", 0);
		if (strcmp(log.p, whole.p) != 0) {
			fprintf(stderr, "FAIL %s: split at %zu differs\n", path, k);
			show_diff("split", log.p, whole.p);
			fails++;
			break;
		}
	}
	if (!fails)
		printf("ok %s (%zu input bytes, %zu runs)\n", path, len, len + 3);
	free(cuts);
	free(log.p);
	free(whole.p);
	free(t->input.p);
	free(t->expect.p);
	free(t);
	return fails ? 1 : 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every *.txt in dir, sorted; returns the number of failures. */
static int transcript_dir(const char *dir, bool print, int *files)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *names[1024];
	size_t n = 0;
	int fails = 0;
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL && n < 1024) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".txt") == 0) {
			names[n] = malloc(strlen(dir) + l + 2);
			sprintf(names[n], "%s/%s", dir, de->d_name);
			n++;
		}
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);
	for (size_t i = 0; i < n; i++) {
		fails += transcript_check(names[i], print);
		(*files)++;
		free(names[i]);
	}
	return fails;
}

int main(int argc, char **argv)
{
	bool print = false;
	int fails = 0, files = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-p") == 0) {
			print = true;
			continue;
		}
		int r = transcript_dir(argv[i], print, &files);
		if (r >= 0) {
			fails += r;
			continue;
		}
		files++;
		fails += transcript_check(argv[i], print);
	}
	if (files == 0) {
		fprintf(stderr, "usage: engine_transcript [-p] FILE...\n");
		return 2;
	}
	printf("%d transcripts, %d failed\n", files, fails);
	return fails ? 1 : 0;
}
