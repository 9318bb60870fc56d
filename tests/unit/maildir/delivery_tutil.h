/* Helpers shared by the delivery tests (temp dirs, Maildir listing, waits). */
#ifndef SLUICE_DELIVERY_TUTIL_H
#define SLUICE_DELIVERY_TUTIL_H

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/route.h"
#include "control/delivery.h"

static int tu_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void tu_rm_rf(const char *path)
{
	nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *tu_mkdtemp(const char *tag)
{
	char *t = malloc(128);
	snprintf(t, 128, "/tmp/sluice-%s-XXXXXX", tag);
	if (mkdtemp(t) == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

/* Entries of dir/sub; names[0..max) filled; returns the count or -errno. */
static inline int tu_list(const char *dir, const char *sub, char names[][256], int max)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	if (d == NULL)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* The whole file at dir/sub/name, NUL-terminated (caller frees), or NULL. */
static inline char *tu_read(const char *dir, const char *sub, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (n + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Wait (bounded, 20 s) until the stats reach at least want.  Returns true
 * when they did; got holds the last reading. */
static inline bool tu_wait_stats(struct delivery *d, const struct delivery_stats *want,
				 struct delivery_stats *got)
{
	struct timespec t0, now, nap = {0, 1000000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		delivery_get_stats(d, got);
		if (got->delivered >= want->delivered && got->failed >= want->failed &&
		    got->held >= want->held)
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 20)
			return false;
		nanosleep(&nap, NULL); /* poll interval, not a timing assumption */
	}
}

/* Build and publish a table with the routes the delivery tests use:
 *	example.com	local ROOT alice,bob
 *	relay.example	relay
 *	via.example	relay-via smarthost.test:2525
 *	reject.example	reject
 *	catchall.test	local ROOT (catch-all)
 *	broken.test	local BROKENROOT alice
 */
static inline void tu_publish_routes(const char *root, const char *broken_root)
{
	struct route_table *t = route_table_new();
	char err[256];
	static const char *const users[] = {"alice", "bob"};
	struct route_spec local = {
	    .action = ROUTE_LOCAL, .maildir_root = root, .users = users, .nusers = 2};
	struct route_spec relay = {.action = ROUTE_RELAY};
	struct route_spec via = {
	    .action = ROUTE_RELAY_VIA, .relay_host = "smarthost.test", .relay_port = 2525};
	struct route_spec reject = {.action = ROUTE_REJECT};
	struct route_spec all = {.action = ROUTE_LOCAL, .maildir_root = root};
	struct route_spec broken = {
	    .action = ROUTE_LOCAL, .maildir_root = broken_root, .users = users, .nusers = 1};
	if (t == NULL || route_table_add(t, "example.com", &local, err, sizeof(err)) < 0 ||
	    route_table_add(t, "relay.example", &relay, err, sizeof(err)) < 0 ||
	    route_table_add(t, "via.example", &via, err, sizeof(err)) < 0 ||
	    route_table_add(t, "reject.example", &reject, err, sizeof(err)) < 0 ||
	    route_table_add(t, "catchall.test", &all, err, sizeof(err)) < 0 ||
	    route_table_add(t, "broken.test", &broken, err, sizeof(err)) < 0) {
		fprintf(stderr, "route table: %s\n", err);
		abort();
	}
	route_publish(t);
}

#endif
