/* benchmsg: message format, body pool, verification and the seen-set. */
#include "bench/benchmsg.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/crc32c.h"

/* Pool lines: 76 printable characters and CRLF, like a wrapped text body. */
#define LINE_TEXT 76
#define LINE_LEN (LINE_TEXT + 2)
#define POOL_BYTES (BENCHMSG_BODY_MAX + (1u << 20))
#define POOL_LINES (POOL_BYTES / LINE_LEN)
#define BODY_MAX_LINES (BENCHMSG_BODY_MAX / LINE_LEN)

static const char header_name[] = "X-Sluice-Bench:";

struct benchmsg_pool {
	uint8_t *text; /* POOL_LINES lines of LINE_LEN octets */
};

/* xorshift64*: a fixed, fast sequence so every run sends the same bytes. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_line(uint8_t *line, uint64_t *state)
{
	/* 64 characters: six bits of a random number pick one, so one
	 * number fills ten octets (the pool is 13 MiB, made at every start). */
	static const char alphabet[64] = "abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -";
	uint64_t r = 0;

	for (size_t i = 0; i < LINE_TEXT; i++) {
		if (i % 10 == 0)
			r = next_random(state);
		line[i] = (uint8_t)alphabet[r & 63];
		r >>= 6;
	}
	/* Never a leading '.', and no trailing space a relay might strip. */
	if (line[0] == ' ')
		line[0] = 'x';
	if (line[LINE_TEXT - 1] == ' ')
		line[LINE_TEXT - 1] = 'y';
	line[LINE_TEXT] = '\r';
	line[LINE_TEXT + 1] = '\n';
}

struct benchmsg_pool *benchmsg_pool_new(void)
{
	struct benchmsg_pool *pool = calloc(1, sizeof(*pool));
	uint64_t state = 0x5EED5EED5EED5EEDULL;

	if (!pool)
		return NULL;
	pool->text = malloc((size_t)POOL_LINES * LINE_LEN);
	if (!pool->text) {
		free(pool);
		return NULL;
	}
	for (size_t i = 0; i < POOL_LINES; i++)
		fill_line(pool->text + i * LINE_LEN, &state);
	return pool;
}

void benchmsg_pool_free(struct benchmsg_pool *pool)
{
	if (!pool)
		return;
	free(pool->text);
	free(pool);
}

int benchmsg_rcpt(char *buf, size_t cap, unsigned k, const char *domain)
{
	int n = snprintf(buf, cap, "r%u@%s", k, domain);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

long benchmsg_rcpt_index(const char *addr)
{
	long k = 0;
	const char *p = addr + 1;

	if (addr[0] != 'r' || !isdigit((unsigned char)*p))
		return -1;
	if (*p == '0' && isdigit((unsigned char)p[1]))
		return -1; /* "r01" would alias "r1" */
	for (; isdigit((unsigned char)*p); p++) {
		if (k > 100000000)
			return -1;
		k = k * 10 + (*p - '0');
	}
	return *p == '\0' || *p == '@' ? k : -1;
}

/* How many pool lines make a body of about want octets (at least one). */
static size_t body_lines_for(size_t want)
{
	size_t lines = (want + LINE_LEN / 2) / LINE_LEN;

	if (lines == 0)
		lines = 1;
	return lines > BODY_MAX_LINES ? BODY_MAX_LINES : lines;
}

static int format_header(struct benchmsg *m, uint32_t run, uint64_t seq, unsigned rcpts,
			 const char *sender, const char *domain)
{
	int n = snprintf(m->hdr, sizeof(m->hdr),
			 "From: <%s>\r\n"
			 "To: <r0@%s>\r\n"
			 "Subject: sluice-bench %08x/%llu\r\n"
			 "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
			 "Message-ID: <%08x.%llu@sluice-bench.test>\r\n"
			 "%s run=%08x seq=%llu rcpts=%u body=%zu crc=%08x\r\n"
			 "\r\n",
			 sender, domain, run, (unsigned long long)seq, run, (unsigned long long)seq,
			 header_name, run, (unsigned long long)seq, rcpts, m->body_len, m->crc);

	if (n < 0 || (size_t)n >= sizeof(m->hdr))
		return -1;
	m->hdr_len = (size_t)n;
	return 0;
}

int benchmsg_build(const struct benchmsg_pool *pool, uint32_t run, uint64_t seq, unsigned rcpts,
		   size_t size, const char *sender, const char *domain, struct benchmsg *m)
{
	size_t lines, start;

	/* Measure the header with a body of about the right length first. */
	m->body_len = size;
	m->crc = 0;
	if (format_header(m, run, seq, rcpts, sender, domain) < 0)
		return -1;
	lines = body_lines_for(size > m->hdr_len ? size - m->hdr_len : 0);
	/* Spread the bodies over the pool so that messages differ. */
	start = (size_t)((seq * 2654435761u) % (POOL_LINES - lines + 1));
	m->body = pool->text + start * LINE_LEN;
	m->body_len = lines * LINE_LEN;
	m->crc = crc32c(0, m->body, m->body_len);
	return format_header(m, run, seq, rcpts, sender, domain);
}

/* ------------------------------------------------------------ verification */

/* The end of the line starting at p (the '\n'), or NULL. */
static const uint8_t *line_end(const uint8_t *p, const uint8_t *end)
{
	return memchr(p, '\n', (size_t)(end - p));
}

static bool parse_hex32(const char **p, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(*p, &end, 16);

	if (end - *p != 8)
		return false;
	*out = (uint32_t)v;
	*p = end;
	return true;
}

static bool parse_dec(const char **p, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)**p))
		return false;
	*out = strtoull(*p, &end, 10);
	*p = end;
	return true;
}

static bool expect_word(const char **p, const char *word)
{
	size_t n = strlen(word);

	while (**p == ' ' || **p == '\t')
		(*p)++;
	if (strncmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

/* Parse the value of our header (NUL-terminated copy). */
static bool parse_header_value(const char *v, struct benchmsg_info *info)
{
	uint64_t rcpts;

	if (!expect_word(&v, "run=") || !parse_hex32(&v, &info->run))
		return false;
	if (!expect_word(&v, "seq=") || !parse_dec(&v, &info->seq))
		return false;
	if (!expect_word(&v, "rcpts=") || !parse_dec(&v, &rcpts) || rcpts > 1000000)
		return false;
	info->rcpts = (unsigned)rcpts;
	if (!expect_word(&v, "body=") || !parse_dec(&v, &info->body_len))
		return false;
	if (!expect_word(&v, "crc=") || !parse_hex32(&v, &info->crc))
		return false;
	while (*v == ' ' || *v == '\t' || *v == '\r')
		v++;
	return *v == '\0';
}

/* CRC-32C and length of an LF-only body as if each LF were CRLF. */
static void crc_as_crlf(const uint8_t *p, const uint8_t *end, uint32_t *crc, uint64_t *len)
{
	static const uint8_t crlf[2] = {'\r', '\n'};

	*crc = 0;
	*len = 0;
	while (p < end) {
		const uint8_t *nl = line_end(p, end);
		size_t n = (size_t)((nl ? nl : end) - p);

		*crc = crc32c(*crc, p, n);
		*len += n;
		if (!nl)
			break;
		*crc = crc32c(*crc, crlf, 2);
		*len += 2;
		p = nl + 1;
	}
}

enum benchmsg_verdict benchmsg_verify(const uint8_t *msg, size_t len, struct benchmsg_info *info)
{
	const uint8_t *p = msg, *end = msg + len, *body = NULL;
	bool found = false, parsed = false, lf_only = false;

	memset(info, 0, sizeof(*info));
	while (p < end) {
		const uint8_t *nl = line_end(p, end);
		size_t n;

		if (!nl)
			break; /* headers without an end: no body */
		n = (size_t)(nl - p);
		if (p == msg)
			lf_only = n == 0 || p[n - 1] != '\r';
		if (n == 0 || (n == 1 && p[0] == '\r')) {
			body = nl + 1;
			break;
		}
		if (!found && n < 200 && n > sizeof(header_name) - 1 &&
		    strncasecmp((const char *)p, header_name, sizeof(header_name) - 1) == 0) {
			char value[200];
			size_t vn = n - (sizeof(header_name) - 1);

			memcpy(value, p + sizeof(header_name) - 1, vn);
			value[vn] = '\0';
			found = true;
			parsed = parse_header_value(value, info);
		}
		p = nl + 1;
	}
	if (!found)
		return BENCHMSG_FOREIGN;
	if (!parsed || !body)
		return BENCHMSG_BAD_HDR;

	uint32_t crc;
	uint64_t body_len;

	if (lf_only) {
		crc_as_crlf(body, end, &crc, &body_len);
	} else {
		body_len = (uint64_t)(end - body);
		crc = crc32c(0, body, (size_t)body_len);
	}
	if (body_len != info->body_len)
		return BENCHMSG_BAD_LEN;
	return crc == info->crc ? BENCHMSG_OK : BENCHMSG_BAD_CRC;
}

const char *benchmsg_verdict_name(enum benchmsg_verdict v)
{
	switch (v) {
	case BENCHMSG_OK:
		return "ok";
	case BENCHMSG_FOREIGN:
		return "foreign";
	case BENCHMSG_BAD_HDR:
		return "bad-header";
	case BENCHMSG_BAD_LEN:
		return "bad-length";
	case BENCHMSG_BAD_CRC:
		return "bad-crc";
	}
	return "?";
}

/* ------------------------------------------------------------ seen-set */

/*
 * Open addressing over 16-octet keys, split into shards with a lock each so
 * that sink threads rarely meet.  hi = run << 32 | (rcpt + 1) is never 0,
 * which marks a free slot.
 */
#define SEEN_SHARDS 64

struct seen_key {
	uint64_t hi, lo;
};

struct seen_shard {
	pthread_mutex_t lock;
	struct seen_key *slots;
	size_t cap; /* power of two */
	size_t used;
} __attribute__((aligned(64)));

struct benchmsg_seen {
	struct seen_shard shard[SEEN_SHARDS];
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

struct benchmsg_seen *benchmsg_seen_new(void)
{
	struct benchmsg_seen *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	for (size_t i = 0; i < SEEN_SHARDS; i++)
		pthread_mutex_init(&s->shard[i].lock, NULL);
	return s;
}

void benchmsg_seen_free(struct benchmsg_seen *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < SEEN_SHARDS; i++) {
		pthread_mutex_destroy(&s->shard[i].lock);
		free(s->shard[i].slots);
	}
	free(s);
}

/* The slot holding key, or the free slot where it belongs. */
static struct seen_key *shard_find(struct seen_key *slots, size_t cap, struct seen_key key,
				   uint64_t hash)
{
	size_t i = (size_t)hash & (cap - 1);

	while (slots[i].hi != 0 && (slots[i].hi != key.hi || slots[i].lo != key.lo))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static uint64_t key_hash(struct seen_key key)
{
	/* The shard index uses the low bits; slots use the high ones. */
	return mix64(key.hi * 0x9E3779B97F4A7C15ULL ^ key.lo);
}

static void shard_grow(struct seen_shard *sh)
{
	size_t cap = sh->cap ? sh->cap * 2 : 1024;
	struct seen_key *slots = calloc(cap, sizeof(*slots));

	if (!slots) {
		fputs("sluice-bench: out of memory for the seen-set\n", stderr);
		abort();
	}
	for (size_t i = 0; i < sh->cap; i++) {
		if (sh->slots[i].hi == 0)
			continue;
		*shard_find(slots, cap, sh->slots[i], key_hash(sh->slots[i]) >> 6) = sh->slots[i];
	}
	free(sh->slots);
	sh->slots = slots;
	sh->cap = cap;
}

bool benchmsg_seen_add(struct benchmsg_seen *s, uint32_t run, uint64_t seq, unsigned rcpt)
{
	struct seen_key key = {.hi = (uint64_t)run << 32 | ((uint64_t)rcpt + 1), .lo = seq};
	uint64_t hash = key_hash(key);
	struct seen_shard *sh = &s->shard[hash % SEEN_SHARDS];
	struct seen_key *slot;
	bool fresh = false;

	pthread_mutex_lock(&sh->lock);
	if ((sh->used + 1) * 2 > sh->cap)
		shard_grow(sh);
	slot = shard_find(sh->slots, sh->cap, key, hash >> 6);
	if (slot->hi == 0) {
		*slot = key;
		sh->used++;
		fresh = true;
	}
	pthread_mutex_unlock(&sh->lock);
	return fresh;
}

uint64_t benchmsg_seen_count(const struct benchmsg_seen *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i < SEEN_SHARDS; i++) {
		struct seen_shard *sh = (struct seen_shard *)&s->shard[i];

		pthread_mutex_lock(&sh->lock);
		n += sh->used;
		pthread_mutex_unlock(&sh->lock);
	}
	return n;
}
