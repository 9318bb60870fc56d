/* smtp_reply: reply lines and EHLO keywords (see smtp_reply.h). */
#include "common/smtp_reply.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	p->code = 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int smtp_reply_parse_line(struct smtp_reply_parser *p, const char *line, size_t len,
			  struct smtp_reply_line *out)
{
	char sep;
	uint16_t code;

	/* "NNN" CRLF at the least.  RFC 5321 4.2: the first digit says
	 * success or failure (2..5); any digits after it are taken, since a
	 * client acts on the first digit (4.2.1). */
	if (len < 5 || line[len - 2] != '\r' || line[len - 1] != '\n' || line[0] < '2' ||
	    line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
		goto bad;
	code = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
	sep = line[3];
	if (sep != ' ' && sep != '-' && !(sep == '\r' && len == 5))
		goto bad;
	if (p->code && code != p->code)
		goto bad; /* 4.2.1: every line of a reply has the same code */
	if (len > 5 && memchr(line + 4, '\r', len - 6))
		goto bad; /* a CR inside the text: CRLF only ends a line */
	out->code = code;
	out->first = p->code == 0;
	out->last = sep != '-';
	out->text = sep == '\r' ? line + 3 : line + 4;
	out->text_len = sep == '\r' ? 0 : len - 6;
	p->code = out->last ? 0 : code;
	return out->last ? 1 : 0;
bad:
	p->code = 0;
	return -EBADMSG;
}

/* text starts with the keyword word, followed by its end or a parameter. */
static bool keyword_is(const char *text, size_t len, const char *word, size_t wlen)
{
	return len >= wlen && strncasecmp(text, word, wlen) == 0 &&
	       (len == wlen || text[wlen] == ' ');
}

/* SIZE's parameter: decimal octets; anything else means no fixed limit. */
static uint64_t size_value(const char *p, size_t len)
{
	uint64_t v = 0;

	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(p[i]) || v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	return v;
}

void smtp_ehlo_ext_line(struct smtp_ehlo_exts *e, const char *text, size_t len)
{
	static const struct {
		const char *word;
		size_t len;
		unsigned flag;
	} keywords[] = {
#define KW(w, f) {w, sizeof(w) - 1, f}
	    KW("PIPELINING", SMTP_EXT_PIPELINING),
	    KW("CHUNKING", SMTP_EXT_CHUNKING),
	    KW("SIZE", SMTP_EXT_SIZE),
	    KW("8BITMIME", SMTP_EXT_8BITMIME),
	    KW("SMTPUTF8", SMTP_EXT_SMTPUTF8),
	    KW("DSN", SMTP_EXT_DSN),
	    KW("STARTTLS", SMTP_EXT_STARTTLS),
	    KW("ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES),
#undef KW
	};

	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
		if (!keyword_is(text, len, keywords[i].word, keywords[i].len))
			continue;
		e->flags |= keywords[i].flag;
		if (keywords[i].flag == SMTP_EXT_SIZE && len > keywords[i].len)
			e->size_max =
			    size_value(text + keywords[i].len + 1, len - keywords[i].len - 1);
		return;
	}
}
