/*
 * dns_query: resolve names with the real dns resolver and a poll() event
 * loop, printing one JSON line per lookup, for the integration tests.
 *
 *	dns_query [--servers CSV] [--timeout-ms N] [--tries N] [--ipv6]
 *	          [--repeat N] [--parallel | --from-callback | --shutdown]
 *	          mx DOMAIN [DOMAIN...]
 *	dns_query [...] host NAME [NAME...]
 *
 * Each line: {"domain":..., "status":"ok", "implicit_mx":false, "why":...,
 * "hosts":[{"name":..., "pref":10, "status":..., "addrs":["127.0.0.2"]}],
 * "elapsed_ms":N, "job":K}; the jobs are the list of names --repeat times,
 * numbered from 0.  By default they run one after another; --parallel
 * starts them all, then runs the loop until every one is done;
 * --from-callback starts each from the callback of the one before (the
 * re-entrant path: a cache hit finishes inside that call); --shutdown
 * starts them all and frees the resolver at once, so each callback runs
 * from dns_resolver_free(), and tries one more lookup there (its return
 * is the line's "restart" field).  {"stats":{...}} follows the lookups
 * (with --shutdown, it comes before the lines the free produces).  Exit
 * 0, 2 on a usage or resolver error, 3 when a callback ran twice or never.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns/dns.h"

/* One lookup in flight. */
struct job {
	const char *name;
	struct timespec start;
	unsigned calls; /* callbacks run: must end at exactly 1 */
	bool started;	/* its dns_resolve_*() returned 0 */
};

enum mode { MODE_SEQ, MODE_PARALLEL, MODE_FROM_CALLBACK, MODE_SHUTDOWN };

/* What the callbacks need to start the next job. */
static struct {
	struct dns_resolver *r;
	bool mx;
	enum mode mode;
	struct job *jobs;
	unsigned njobs, next; /* next: the job MODE_FROM_CALLBACK starts next */
	bool freeing;	      /* inside dns_resolver_free() */
} run;

static void job_start(struct job *j);

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void on_result(void *arg, const struct dns_result *r)
{
	struct job *j = arg;
	char buf[INET6_ADDRSTRLEN];
	int restart = 1;

	if (run.freeing) /* must be refused: the resolver is going */
		restart = run.mx ? dns_resolve_mx(run.r, "restart.test", on_result, j)
				 : dns_resolve_host(run.r, "restart.test", on_result, j);

	printf("{\"domain\":");
	json_str(j->name);
	printf(",\"status\":\"%s\",\"implicit_mx\":%s,\"why\":", dns_status_str(r->status),
	       r->implicit_mx ? "true" : "false");
	json_str(r->why ? r->why : "");
	printf(",\"hosts\":[");
	for (unsigned i = 0; i < r->nhosts; i++) {
		const struct dns_host *h = &r->hosts[i];
		printf("%s{\"name\":", i ? "," : "");
		json_str(h->name);
		printf(",\"pref\":%u,\"status\":\"%s\",\"addrs\":[", h->pref,
		       dns_status_str(h->status));
		for (unsigned k = 0; k < h->naddrs; k++) {
			inet_ntop(h->addrs[k].family, &h->addrs[k].u, buf, sizeof(buf));
			printf("%s\"%s\"", k ? "," : "", buf);
		}
		printf("]}");
	}
	printf("],\"elapsed_ms\":%ld,\"job\":%ld", elapsed_ms(&j->start), (long)(j - run.jobs));
	if (restart != 1)
		printf(",\"restart\":\"%s\"", restart == 0 ? "started" : strerror(-restart));
	printf("}\n");
	fflush(stdout);
	j->calls++;
	if (run.mode == MODE_FROM_CALLBACK && run.next < run.njobs)
		job_start(&run.jobs[run.next++]);
}

/* Start j; a refused start prints its error line at once. */
static void job_start(struct job *j)
{
	clock_gettime(CLOCK_MONOTONIC, &j->start);
	int rc = run.mx ? dns_resolve_mx(run.r, j->name, on_result, j)
			: dns_resolve_host(run.r, j->name, on_result, j);
	if (rc == 0) {
		j->started = true;
		return;
	}
	printf("{\"domain\":");
	json_str(j->name);
	printf(",\"error\":\"%s\",\"job\":%ld}\n", strerror(-rc), (long)(j - run.jobs));
	fflush(stdout);
	if (run.mode == MODE_FROM_CALLBACK && run.next < run.njobs)
		job_start(&run.jobs[run.next++]);
}

static int usage(void)
{
	fprintf(stderr, "usage: dns_query [--servers CSV] [--timeout-ms N] [--tries N] [--ipv6] "
			"[--repeat N] [--parallel|--from-callback|--shutdown] mx|host NAME...\n");
	return 2;
}

/* Run the event loop until the callbacks of jobs [from, to) have run. */
static bool all_done(unsigned from, unsigned to)
{
	for (unsigned k = from; k < to; k++)
		if (run.jobs[k].started && run.jobs[k].calls == 0)
			return false;
	return true;
}

static void wait_for(struct dns_resolver *r, unsigned from, unsigned to)
{
	while (!all_done(from, to) || (run.mode == MODE_FROM_CALLBACK && run.next < run.njobs)) {
		struct pollfd p = {.fd = dns_resolver_fd(r), .events = POLLIN};
		int t = dns_resolver_timeout_ms(r);
		if (poll(&p, 1, t < 0 ? 1000 : t) < 0 && errno != EINTR)
			return;
		dns_resolver_process(r);
	}
}

int main(int argc, char **argv)
{
	struct dns_cfg cfg = {0};
	unsigned repeat = 1;
	int i = 1, status = 0;
	char err[256];

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *opt = argv[i];
		if (strcmp(opt, "--ipv6") == 0) {
			cfg.ipv6 = true;
			continue;
		}
		if (strcmp(opt, "--parallel") == 0 || strcmp(opt, "--from-callback") == 0 ||
		    strcmp(opt, "--shutdown") == 0) {
			run.mode = opt[2] == 'p'   ? MODE_PARALLEL
				   : opt[2] == 'f' ? MODE_FROM_CALLBACK
						   : MODE_SHUTDOWN;
			continue;
		}
		if (i + 1 >= argc)
			return usage();
		const char *val = argv[++i];
		if (strcmp(opt, "--servers") == 0)
			cfg.servers = val;
		else if (strcmp(opt, "--timeout-ms") == 0)
			cfg.timeout_ms = (unsigned)strtoul(val, NULL, 10);
		else if (strcmp(opt, "--tries") == 0)
			cfg.tries = (unsigned)strtoul(val, NULL, 10);
		else if (strcmp(opt, "--repeat") == 0)
			repeat = (unsigned)strtoul(val, NULL, 10);
		else
			return usage();
	}
	if (i + 2 > argc)
		return usage();
	bool mx = strcmp(argv[i], "mx") == 0;
	if (!mx && strcmp(argv[i], "host") != 0)
		return usage();
	i++;

	struct dns_resolver *r = dns_resolver_new(&cfg, err, sizeof(err));
	if (!r) {
		fprintf(stderr, "dns_query: %s\n", err);
		return 2;
	}
	unsigned nnames = (unsigned)(argc - i);
	run.r = r;
	run.mx = mx;
	run.njobs = nnames * repeat;
	run.jobs = calloc(run.njobs ? run.njobs : 1, sizeof(*run.jobs));
	if (!run.jobs) {
		fprintf(stderr, "dns_query: out of memory\n");
		return 2;
	}
	for (unsigned k = 0; k < run.njobs; k++)
		run.jobs[k].name = argv[i + (int)(k % nnames)];

	switch (run.mode) {
	case MODE_SEQ:
		for (unsigned k = 0; k < run.njobs; k++) {
			job_start(&run.jobs[k]);
			wait_for(r, k, k + 1);
		}
		break;
	case MODE_PARALLEL:
	case MODE_SHUTDOWN:
		for (unsigned k = 0; k < run.njobs; k++)
			job_start(&run.jobs[k]);
		if (run.mode == MODE_PARALLEL)
			wait_for(r, 0, run.njobs);
		break;
	case MODE_FROM_CALLBACK:
		run.next = 1;
		job_start(&run.jobs[0]);
		wait_for(r, 0, run.njobs);
		break;
	}
	struct dns_stats st;
	dns_resolver_get_stats(r, &st);
	printf("{\"stats\":{\"queries\":%llu,\"cache_hits\":%llu,\"negative_hits\":%llu,"
	       "\"tempfails\":%llu}}\n",
	       (unsigned long long)st.queries, (unsigned long long)st.cache_hits,
	       (unsigned long long)st.negative_hits, (unsigned long long)st.tempfails);
	run.freeing = true;
	dns_resolver_free(r);
	/* Every started lookup got exactly one callback, at the latest from the free. */
	for (unsigned k = 0; k < run.njobs; k++) {
		if (run.jobs[k].started && run.jobs[k].calls != 1) {
			fprintf(stderr, "dns_query: job %u (%s): %u callbacks, want 1\n", k,
				run.jobs[k].name, run.jobs[k].calls);
			status = 3;
		}
	}
	free(run.jobs);
	return status;
}
