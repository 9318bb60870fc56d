/*
 * libFuzzer harness for the routes-file parser (route_table_load_buffer).
 * Invariants, not only "no crash":
 *  - success: the table holds exactly one entry per line that has a field
 *    (counted here independently); failure: err is "f:N: ..." with N a line
 *    of the input, and the table holds the entry lines before N;
 *  - every entry is found by a lookup of its own pattern (exact), of its
 *    pattern upper-cased with a trailing dot, and a parent entry ".p" by a
 *    lookup of "zq9.p" (or that name's own exact entry wins);
 *  - entries are well-formed for their action.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/route.h"

static void check(int cond, const char *what, const char *detail)
{
	if (!cond) {
		fprintf(stderr, "invariant failed: %s (%s)\n", what, detail ? detail : "");
		abort();
	}
}

/* Lines with at least one field, among the first `upto` lines (0 = all). */
static size_t count_entry_lines(const uint8_t *d, size_t n, unsigned long upto)
{
	size_t count = 0;
	unsigned long line = 1;
	bool start = true, entry = false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || d[i] == '\n') {
			if (upto && line >= upto)
				break;
			count += entry;
			line++;
			start = true;
			entry = false;
			continue;
		}
		if (start && d[i] != ' ' && d[i] != '\t' && d[i] != '\r') {
			entry = d[i] != '#';
			start = false;
		}
	}
	return count;
}

static unsigned long count_lines(const uint8_t *d, size_t n)
{
	unsigned long l = 1;
	for (size_t i = 0; i < n; i++)
		l += d[i] == '\n';
	return l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	struct route_table *t = route_table_new();
	check(t != NULL, "route_table_new", NULL);
	int r = route_table_load_buffer(t, "f", (const char *)data, size, err, sizeof(err));
	size_t n = route_table_size(t);
	if (r == 0) {
		check(n == count_entry_lines(data, size, 0), "size == entry lines", err);
	} else {
		char *end;
		check(strncmp(err, "f:", 2) == 0, "error names the file", err);
		unsigned long line = strtoul(err + 2, &end, 10);
		check(end != err + 2 && end[0] == ':' && end[1] == ' ', "error has a line", err);
		check(line >= 1 && line <= count_lines(data, size), "line in range", err);
		check(n == count_entry_lines(data, size, line), "size == entry lines before", err);
	}

	char name[600];
	for (size_t i = 0; i < n; i++) {
		const struct route *e = route_table_entry(t, i);
		check(e != NULL && e->pattern && e->pattern[0], "entry", NULL);
		const char *p = e->pattern;
		size_t pl = strlen(p);
		for (size_t j = 0; j < pl; j++)
			check(!isupper((unsigned char)p[j]), "pattern lowercased", p);
		switch (e->action) {
		case ROUTE_LOCAL:
			if (e->lmtp)
				check(!e->maildir_root && e->relay_host && e->relay_host[0] &&
					      e->relay_port,
				      "lmtp local has host and port, no maildir", p);
			else
				check(e->maildir_root && e->maildir_root[0], "local has maildir", p);
			check(!route_local_user_exists(e, ""), "empty user never exists", p);
			break;
		case ROUTE_RELAY_VIA:
			check(e->relay_host && e->relay_host[0] && e->relay_port, "via host", p);
			break;
		case ROUTE_RELAY:
		case ROUTE_REJECT:
			check(!e->relay_host && !e->maildir_root, "no extras", p);
			break;
		default:
			check(0, "action", p);
		}
		if (p[0] != '.') {
			check(route_lookup(t, p) == e, "exact lookup finds itself", p);
			for (size_t j = 0; j < pl; j++)
				name[j] = (char)toupper((unsigned char)p[j]);
			name[pl] = '.';
			name[pl + 1] = '\0';
			check(route_lookup(t, name) == e, "upper-case + dot finds itself", p);
		} else {
			check(route_lookup(t, p) == NULL, "a lookup never takes a leading dot", p);
			snprintf(name, sizeof(name), "zq9%s", p);
			const struct route *got = route_lookup(t, name);
			if (strlen(name) <= 255)
				check(got == e || (got && strcmp(got->pattern, name) == 0),
				      "child finds the parent (or its own exact entry)", p);
		}
	}
	route_table_free(t);
	return 0;
}
