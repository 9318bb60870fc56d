/* smtp_engine_addr: RFC 5321 4.1.2 path syntax, ESMTP parameters, RFC 3461 xtext. */
#include "dataplane/smtp_engine_pvt.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* RFC 5321 4.5.3.1: the limits on the parts of a path. */
#define SMTP_LOCAL_MAX 64   /* local part, octets */
#define SMTP_DOMAIN_MAX 255 /* domain, octets */
#define SMTP_PATH_MAX 256   /* path, with "<" and ">" */
#define SMTP_LABEL_MAX 63   /* one DNS label (RFC 1035 2.3.4) */

static bool smtp_is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool smtp_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 atext. */
static bool smtp_is_atext(uint8_t c)
{
	return smtp_is_alpha(c) || smtp_is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/*
 * Length of the valid UTF-8 sequence of 2..4 octets at p (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0.
 */
static size_t smtp_utf8_len(const uint8_t *p)
{
	uint8_t c = p[0];
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/*
 * One octet (or UTF-8 sequence) of an atom at p; returns its length or 0.
 * The string is NUL-terminated, so the continuation checks in
 * smtp_utf8_len() stop at the NUL without reading past it.
 */
static size_t smtp_atext_len(const uint8_t *p, bool utf8)
{
	if (*p < 0x80)
		return smtp_is_atext(*p) ? 1 : 0;
	return utf8 ? smtp_utf8_len(p) : 0;
}

/* Dot-string: Atom *("." Atom).  Returns octets taken, 0 if none valid. */
static size_t smtp_dot_string(const uint8_t *s, bool utf8)
{
	size_t i = 0, n;
	for (;;) {
		size_t start = i;
		while ((n = smtp_atext_len(s + i, utf8)) > 0)
			i += n;
		if (i == start)
			return 0; /* empty atom: leading, trailing or double dot */
		if (s[i] != '.')
			return i;
		i++;
	}
}

/* Quoted-string (RFC 5321 4.1.2 QcontentSMTP).  Returns octets taken or 0. */
static size_t smtp_quoted_string(const uint8_t *s, bool utf8)
{
	size_t i = 1, n;
	if (s[0] != '"')
		return 0;
	for (;;) {
		uint8_t c = s[i];
		if (c == '"')
			return i + 1;
		if (c == '\\') {
			if (s[i + 1] < 32 || s[i + 1] > 126)
				return 0;
			i += 2;
		} else if (c >= 32 && c <= 126) {
			i++;
		} else if (c >= 0x80 && utf8 && (n = smtp_utf8_len(s + i)) > 0) {
			i += n;
		} else {
			return 0; /* control, NUL (end) or bad UTF-8 */
		}
	}
}

/* A domain letter or digit (UTF-8 U-label octets too with SMTPUTF8). */
static size_t smtp_letdig_len(const uint8_t *p, bool utf8)
{
	if (smtp_is_alpha(*p) || smtp_is_digit(*p))
		return 1;
	if (*p >= 0x80 && utf8)
		return smtp_utf8_len(p);
	return 0;
}

/* Domain = sub-domain *("." sub-domain).  Returns octets taken or 0. */
static size_t smtp_domain(const uint8_t *s, bool utf8)
{
	size_t i = 0, n;
	for (;;) {
		size_t start = i;
		bool last_hyphen = false;
		if ((n = smtp_letdig_len(s + i, utf8)) == 0)
			return 0;
		i += n;
		for (;;) {
			if (s[i] == '-') {
				i++;
				last_hyphen = true;
			} else if ((n = smtp_letdig_len(s + i, utf8)) > 0) {
				i += n;
				last_hyphen = false;
			} else {
				break;
			}
		}
		if (last_hyphen || i - start > SMTP_LABEL_MAX)
			return 0;
		if (s[i] != '.')
			break;
		i++;
	}
	return i > SMTP_DOMAIN_MAX ? 0 : i;
}

/* address-literal: "[" IPv4 / "IPv6:" IPv6 "]".  Returns octets taken or 0.
 * General-address-literal tags are refused: none is standardised. */
static size_t smtp_addr_literal(const uint8_t *s)
{
	char tmp[64];
	const uint8_t *close;
	size_t n;
	if (s[0] != '[')
		return 0;
	close = (const uint8_t *)strchr((const char *)s, ']');
	if (!close)
		return 0;
	n = (size_t)(close - s - 1);
	if (n == 0 || n >= sizeof(tmp))
		return 0;
	memcpy(tmp, s + 1, n);
	tmp[n] = '\0';
	if (n > 5 && strncasecmp(tmp, "IPv6:", 5) == 0) {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, tmp + 5, &a6) != 1)
			return 0;
	} else {
		struct in_addr a4;
		if (inet_pton(AF_INET, tmp, &a4) != 1)
			return 0;
	}
	return n + 2;
}

/*
 * Find the path "<...>" at the start of s (quotes respected).  On success
 * the ">" is replaced by NUL, *inner is the text between the brackets and
 * *rest what follows (empty or starting with SP).  Returns 0, -1 for a
 * syntax error (no brackets: 501 5.5.4) or -2 for a path over 256 octets.
 */
int smtp_engine_path_split(char *s, char **inner, char **rest)
{
	size_t i;
	bool quoted = false;
	if (s[0] != '<')
		return -1;
	for (i = 1; s[i]; i++) {
		if (quoted && s[i] == '\\' && s[i + 1]) {
			i++;
		} else if (s[i] == '"') {
			quoted = !quoted;
		} else if (!quoted && s[i] == '>') {
			break;
		}
	}
	if (s[i] != '>')
		return -1;
	if (s[i + 1] != '\0' && s[i + 1] != ' ')
		return -1;
	if (i + 1 > SMTP_PATH_MAX)
		return -2;
	s[i] = '\0';
	*inner = s + 1;
	*rest = s + i + 1;
	return 0;
}

/*
 * Check the inside of a path: [A-d-l ":"] Mailbox, "" (null path) or
 * "postmaster" as flags allow.  The source route is dropped (RFC 5321
 * 4.1.1.3 says to ignore it).  *mailbox and *domain point into inner.
 * Returns 0 or -1.
 */
int smtp_engine_path_check(char *inner, unsigned flags, char **mailbox, char **domain)
{
	const uint8_t *s = (const uint8_t *)inner;
	bool utf8 = flags & SMTP_PATH_UTF8;
	size_t i = 0, n, local;

	if (s[0] == '\0') {
		*mailbox = inner;
		*domain = inner;
		return (flags & SMTP_PATH_NULL_OK) ? 0 : -1;
	}
	if (s[0] == '@') {
		/* A-d-l = At-domain *( "," At-domain ) ":" */
		for (;;) {
			if (s[i] != '@')
				return -1;
			i++;
			if ((n = smtp_domain(s + i, utf8)) == 0)
				return -1;
			i += n;
			if (s[i] == ':')
				break;
			if (s[i] != ',')
				return -1;
			i++;
		}
		i++;
		s += i;
		inner += i;
	}
	if (s[0] == '"')
		local = smtp_quoted_string(s, utf8);
	else
		local = smtp_dot_string(s, utf8);
	if (local == 0 || local > SMTP_LOCAL_MAX)
		return -1;
	*mailbox = inner;
	if (s[local] == '\0') {
		/* RFC 5321 4.5.1: "<postmaster>" without a domain. */
		if (!(flags & SMTP_PATH_POSTMASTER) || i != 0 || local != 10 ||
		    strncasecmp(inner, "postmaster", 10) != 0)
			return -1;
		*domain = inner + local;
		return 0;
	}
	if (s[local] != '@')
		return -1;
	if (s[local + 1] == '[')
		n = smtp_addr_literal(s + local + 1);
	else
		n = smtp_domain(s + local + 1, utf8);
	if (n == 0 || s[local + 1 + n] != '\0')
		return -1;
	*domain = inner + local + 1;
	return 0;
}

/* RFC 3461 4: xtext = *( xchar / "+" 2HEXDIG-uppercase ); at least one. */
bool smtp_engine_xtext_valid(const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	if (!*p)
		return false;
	for (; *p; p++) {
		if (*p == '+') {
			for (int k = 1; k <= 2; k++)
				if (!smtp_is_digit(p[k]) && !(p[k] >= 'A' && p[k] <= 'F'))
					return false;
			p += 2;
		} else if (*p < 33 || *p > 126 || *p == '=') {
			return false;
		}
	}
	return true;
}

/* RFC 5321 esmtp-value = 1*(%d33-60 / %d62-126). */
bool smtp_engine_param_value_valid(const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	if (!*p)
		return false;
	for (; *p; p++)
		if (*p < 33 || *p > 126 || *p == '=')
			return false;
	return true;
}

/* RFC 5321 esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). */
bool smtp_engine_keyword_valid(const char *s, size_t n)
{
	if (n == 0 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!smtp_is_alpha((uint8_t)s[i]) && !smtp_is_digit((uint8_t)s[i]) && s[i] != '-')
			return false;
	return true;
}

/* 1*20DIGIT into a uint64_t; -1 on anything else or overflow. */
int smtp_engine_parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;
	for (i = 0; s[i]; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (d > 9 || i >= 20)
			return -1;
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (i == 0)
		return -1;
	*v = x;
	return 0;
}

/*
 * Next SP-separated token from *cursor, NUL-terminated in place, or NULL at
 * the end.  Runs of spaces are skipped (harmless leniency: some clients
 * send a trailing space).
 */
char *smtp_engine_next_param(char **cursor)
{
	char *p = *cursor, *tok;
	while (*p == ' ')
		p++;
	if (*p == '\0') {
		*cursor = p;
		return NULL;
	}
	tok = p;
	while (*p && *p != ' ')
		p++;
	if (*p)
		*p++ = '\0';
	*cursor = p;
	return tok;
}
