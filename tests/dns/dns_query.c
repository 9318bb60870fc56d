/*
 * dns_query: resolve names with the real dns resolver and a poll() event
 * loop, printing one JSON line per lookup, for the integration tests.
 *
 *	dns_query [--servers CSV] [--timeout-ms N] [--tries N] [--ipv6]
 *	          [--repeat N] mx DOMAIN [DOMAIN...]
 *	dns_query [...] host NAME [NAME...]
 *
 * Each line: {"domain":..., "status":"ok", "implicit_mx":false, "why":...,
 * "hosts":[{"name":..., "pref":10, "status":..., "addrs":["127.0.0.2"]}],
 * "elapsed_ms":N}; lookups run one after another, the whole list --repeat
 * times; the last line is {"stats":{...}}.  Exit 0, or 2 on a usage or
 * resolver error.
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
	bool done;
};

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
	printf("],\"elapsed_ms\":%ld}\n", elapsed_ms(&j->start));
	fflush(stdout);
	j->done = true;
}

static int usage(void)
{
	fprintf(stderr, "usage: dns_query [--servers CSV] [--timeout-ms N] [--tries N] [--ipv6] "
			"[--repeat N] mx|host NAME...\n");
	return 2;
}

/* Run the event loop until j's callback has run. */
static void wait_for(struct dns_resolver *r, const struct job *j)
{
	while (!j->done) {
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
	int i = 1;
	char err[256];

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *opt = argv[i];
		if (strcmp(opt, "--ipv6") == 0) {
			cfg.ipv6 = true;
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
	for (unsigned n = 0; n < repeat; n++) {
		for (int k = i; k < argc; k++) {
			struct job j = {.name = argv[k]};
			clock_gettime(CLOCK_MONOTONIC, &j.start);
			int rc = mx ? dns_resolve_mx(r, j.name, on_result, &j)
				    : dns_resolve_host(r, j.name, on_result, &j);
			if (rc < 0) {
				printf("{\"domain\":");
				json_str(j.name);
				printf(",\"error\":\"%s\"}\n", strerror(-rc));
				continue;
			}
			wait_for(r, &j);
		}
	}
	struct dns_stats st;
	dns_resolver_get_stats(r, &st);
	printf("{\"stats\":{\"queries\":%llu,\"cache_hits\":%llu,\"negative_hits\":%llu,"
	       "\"tempfails\":%llu}}\n",
	       (unsigned long long)st.queries, (unsigned long long)st.cache_hits,
	       (unsigned long long)st.negative_hits, (unsigned long long)st.tempfails);
	dns_resolver_free(r);
	return 0;
}
