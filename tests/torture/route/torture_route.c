/*
 * Route RCU torture: one reader per core (qsbr, quiescent state once per
 * loop turn) looks up a fixed set of domains while the updater publishes
 * a new table thousands of times.  Every entry of generation g carries g
 * (maildir_root "/gen/<g>", relay_port g, src_line g).  A reader checks
 * that within one read section all lookups see one generation, whole,
 * that the generation never goes backwards, and (under ASan) that it never
 * touches a freed table.  Then it measures lookups/s per reader on a
 * stable table.  Bounded by count (PUBLISHES) and a time cap.
 *
 * Usage: torture_route [publishes]
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "config/route.h"

#define PUBLISHES 5000
#define TIME_CAP_S 60
#define BENCH_LOOKUPS 2000000UL

/* The domains every reader looks up, and what must match. */
static const struct probe {
	const char *domain;
	const char *pattern;
} probes[] = {
    {"local.example", "local.example"}, {"LOCAL.Example.", "local.example"},
    {"a.sub.example", ".sub.example"},	{"b.a.sub.example", ".sub.example"},
    {"via.example", "via.example"},	{"x.deep.via.example", ".via.example"},
    {"users.example", "users.example"}, {"z.other.example", ".example"},
};
#define NPROBES (sizeof(probes) / sizeof(probes[0]))

static atomic_bool stop;
static atomic_uint failures;

struct reader {
	pthread_t th;
	unsigned id;
	unsigned long sections, lookups, empty;
	double bench_rate;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (atomic_fetch_add(&failures, 1) > 20)
		atomic_store(&stop, true);
}

/* The generation an entry carries; every field must agree. */
static long gen_of(const struct route *r)
{
	long g = r->src_line;
	if (r->action == ROUTE_LOCAL) {
		unsigned long m;
		if (!r->maildir_root || sscanf(r->maildir_root, "/gen/%lu", &m) != 1 ||
		    (long)m != g)
			return -1;
	} else if (r->action == ROUTE_RELAY_VIA) {
		if (r->relay_port != (uint16_t)(g % 65535 + 1))
			return -1;
	}
	return g;
}

static struct route_table *build(unsigned g)
{
	char md[32], err[256];
	snprintf(md, sizeof(md), "/gen/%u", g);
	static const char *const users[] = {"alice", "bob"};
	struct route_spec local = {.action = ROUTE_LOCAL, .maildir_root = md, .src_line = (int)g};
	struct route_spec ulocal = local;
	ulocal.users = users;
	ulocal.nusers = 2;
	struct route_spec relay = {.action = ROUTE_RELAY, .src_line = (int)g};
	struct route_spec via = {.action = ROUTE_RELAY_VIA,
				 .relay_host = "smart.example",
				 .relay_port = (uint16_t)(g % 65535 + 1),
				 .src_line = (int)g};
	struct route_table *t = route_table_new();
	if (!t)
		return NULL;
	struct {
		const char *d;
		const struct route_spec *s;
	} add[] = {
	    {"local.example", &local}, {".sub.example", &relay},   {"via.example", &via},
	    {".via.example", &via},    {"users.example", &ulocal}, {".example", &local},
	};
	for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++) {
		if (route_table_add(t, add[i].d, add[i].s, err, sizeof(err)) != 0) {
			fprintf(stderr, "build %u: %s: %s\n", g, add[i].d, err);
			route_table_free(t);
			return NULL;
		}
	}
	/* some padding so tables are not all tiny (and rehash once) */
	for (unsigned i = 0; i < 80; i++) {
		char d[32];
		snprintf(d, sizeof(d), "pad%u.example", i);
		route_table_add(t, d, &relay, err, sizeof(err));
	}
	return t;
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	long last = 0;
	rcu_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		const struct route_table *t = route_current();
		if (!t) {
			rd->empty++;
			rcu_quiescent_state();
			continue;
		}
		long g0 = -2;
		for (size_t i = 0; i < NPROBES; i++) {
			const struct route *r = route_lookup(t, probes[i].domain);
			rd->lookups++;
			if (!r || strcmp(r->pattern, probes[i].pattern) != 0) {
				fail("reader %u: lookup %s: got %s, want %s\n", rd->id,
				     probes[i].domain, r ? r->pattern : "NULL", probes[i].pattern);
				continue;
			}
			long g = gen_of(r);
			if (g < 0)
				fail("reader %u: %s: torn entry\n", rd->id, probes[i].domain);
			if (g0 == -2)
				g0 = g;
			else if (g != g0)
				fail("reader %u: one section saw generations %ld and %ld\n", rd->id,
				     g0, g);
			if (r->action == ROUTE_LOCAL && !r->catch_all &&
			    (!route_local_user_exists(r, "Alice") ||
			     route_local_user_exists(r, "carol")))
				fail("reader %u: users wrong in generation %ld\n", rd->id, g);
		}
		if (g0 < last)
			fail("reader %u: generation went back from %ld to %ld\n", rd->id, last, g0);
		last = g0;
		rd->sections++;
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

/* Lookups/s on a stable table, one reader per core at once. */
static void *bench_main(void *arg)
{
	struct reader *rd = arg;
	rcu_register_thread();
	const struct route_table *t = route_current();
	unsigned long found = 0;
	double a = now_s();
	for (unsigned long i = 0; i < BENCH_LOOKUPS; i++) {
		found += route_lookup(t, probes[i % NPROBES].domain) != NULL;
		if ((i & 1023) == 0)
			rcu_quiescent_state();
	}
	double b = now_s();
	if (found != BENCH_LOOKUPS)
		fail("bench %u: found %lu of %lu\n", rd->id, found, BENCH_LOOKUPS);
	rd->bench_rate = (double)BENCH_LOOKUPS / (b - a);
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned publishes = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : PUBLISHES;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nreaders = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
	struct reader *rd = calloc(nreaders, sizeof(*rd));
	if (!rd)
		return 1;

	route_publish(build(0));
	for (unsigned i = 0; i < nreaders; i++) {
		rd[i].id = i;
		if (pthread_create(&rd[i].th, NULL, reader_main, &rd[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	double start = now_s();
	unsigned done = 0;
	for (unsigned g = 1; g <= publishes && !atomic_load(&stop); g++) {
		struct route_table *t = build(g);
		if (!t) {
			fail("build %u failed\n", g);
			break;
		}
		route_publish(t);
		done = g;
		if (now_s() - start > TIME_CAP_S) {
			printf("# time cap reached after %u publishes\n", g);
			break;
		}
	}
	double took = now_s() - start;
	atomic_store(&stop, true);
	unsigned long sections = 0, lookups = 0;
	for (unsigned i = 0; i < nreaders; i++) {
		pthread_join(rd[i].th, NULL);
		sections += rd[i].sections;
		lookups += rd[i].lookups;
	}
	printf("# %u publishes in %.2f s (%.0f/s), %u readers, %lu read sections, %lu lookups\n",
	       done, took, done / took, nreaders, sections, lookups);
	if (done < publishes && atomic_load(&failures) == 0 && took <= TIME_CAP_S)
		fail("only %u of %u publishes\n", done, publishes);
	for (unsigned i = 0; i < nreaders; i++)
		if (rd[i].sections == 0)
			fail("reader %u never ran a section\n", i);

	/* lookups/s per reader, all readers at once, table stable */
	if (atomic_load(&failures) == 0) {
		for (unsigned i = 0; i < nreaders; i++)
			pthread_create(&rd[i].th, NULL, bench_main, &rd[i]);
		for (unsigned i = 0; i < nreaders; i++) {
			pthread_join(rd[i].th, NULL);
			printf("# reader %u: %.1f M lookups/s (stable table, %zu-probe mix)\n", i,
			       rd[i].bench_rate / 1e6, NPROBES);
		}
	}
	route_publish(NULL);
	free(rd);
	unsigned f = atomic_load(&failures);
	printf("%s\n", f ? "FAIL" : "ok");
	return f ? 1 : 0;
}
