/* send_opts: the command line of `sluice-bench send` (bench/README.md). */
#include "bench/bench.h"
#include "bench/send_pvt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static int send_sizes_parse(struct send_opts *o, const char *spec);
static int send_source_parse(struct send_opts *o, const char *spec);

static const char send_usage[] =
    "usage: sluice-bench send [options]\n"
    "  --server HOST:PORT     where to send (127.0.0.1:2525)\n"
    "  --messages N           messages in all; 0 = until --duration (10000)\n"
    "  --duration S           stop after S seconds (60)\n"
    "  --connections C        concurrent SMTP sessions (100)\n"
    "  --threads T            event-loop threads, one pinned per core (cores)\n"
    "  --per-connection M     messages per connection; 0 = persistent (1)\n"
    "  --pipelining on|off    group commands when the server offers PIPELINING (on)\n"
    "  --rcpts N              recipients per message (1)\n"
    "  --size SPEC            1024, 10k, 1m, mix, or 70%2k-8k,25%8k-100k,5%100k-10m (1k)\n"
    "  --bdat                 send with BDAT (CHUNKING) instead of DATA\n"
    "  --rate R               start R messages per second in all (open loop)\n"
    "  --from ADDR            envelope sender (bench@sluice-bench.test)\n"
    "  --domain D             recipient domain (example.test)\n"
    "  --ehlo NAME            EHLO name (sluice-bench.test)\n"
    "  --run ID               run id, 8 hex digits (random)\n"
    "  --timeout S            per reply (30)\n"
    "  --source A[-B]         bind local IPv4 addresses from this range, round robin\n"
    "  --json                 JSON report on stdout instead of a table\n"
    "  --quiet                no progress line on stderr\n";

/* ---- options ------------------------------------------------------------ */

/* Parse a positive, finite number of seconds (or messages per second). */
static int send_parse_positive(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v) || v <= 0)
		return -1;
	*out = v;
	return 0;
}

/* A name or address we put on a command line: no space, no control
 * characters, no angle brackets (they would break the command). */
static bool send_word_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SEND_ADDR_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>' || *s == 0x7f)
			return false;
	return true;
}

static int send_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("sluice-bench send: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (--help for the options)\n", stderr);
	return 2;
}

enum {
	OPT_SERVER = 256,
	OPT_MESSAGES,
	OPT_DURATION,
	OPT_CONNECTIONS,
	OPT_THREADS,
	OPT_PER_CONNECTION,
	OPT_PIPELINING,
	OPT_RCPTS,
	OPT_SIZE,
	OPT_BDAT,
	OPT_RATE,
	OPT_FROM,
	OPT_DOMAIN,
	OPT_EHLO,
	OPT_RUN,
	OPT_TIMEOUT,
	OPT_SOURCE,
	OPT_JSON,
	OPT_QUIET,
	OPT_HELP,
};

static const struct option send_longopts[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"messages", required_argument, NULL, OPT_MESSAGES},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"per-connection", required_argument, NULL, OPT_PER_CONNECTION},
    {"pipelining", required_argument, NULL, OPT_PIPELINING},
    {"rcpts", required_argument, NULL, OPT_RCPTS},
    {"size", required_argument, NULL, OPT_SIZE},
    {"bdat", no_argument, NULL, OPT_BDAT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"from", required_argument, NULL, OPT_FROM},
    {"domain", required_argument, NULL, OPT_DOMAIN},
    {"ehlo", required_argument, NULL, OPT_EHLO},
    {"run", required_argument, NULL, OPT_RUN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void send_opts_default(struct send_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->server = "127.0.0.1:2525";
	o->messages = 10000;
	o->duration_s = 60;
	o->connections = 100;
	o->threads = bench_cores();
	o->per_connection = 1;
	o->pipelining = true;
	o->rcpts = 1;
	o->from = "bench@sluice-bench.test";
	o->domain = "example.test";
	o->ehlo = "sluice-bench.test";
	o->timeout_s = 30;
}

/* One option; returns 0, or 2 for a usage error. */
static int send_opt_set(struct send_opts *o, int opt, const char *arg, bool *run_given)
{
	uint64_t v;

	switch (opt) {
	case OPT_SERVER:
		o->server = arg;
		return 0;
	case OPT_MESSAGES:
		if (bench_parse_u64(arg, 0, UINT64_MAX / 2, &o->messages) < 0)
			return send_usage_error("--messages: '%s' is not a count", arg);
		return 0;
	case OPT_DURATION:
		if (send_parse_positive(arg, &o->duration_s) < 0)
			return send_usage_error("--duration: '%s' is not a positive number", arg);
		return 0;
	case OPT_CONNECTIONS:
		if (bench_parse_u64(arg, 1, SEND_CONNECTIONS_MAX, &v) < 0)
			return send_usage_error("--connections: '%s' is not in 1..%u", arg,
						SEND_CONNECTIONS_MAX);
		o->connections = (unsigned)v;
		return 0;
	case OPT_THREADS:
		if (bench_parse_u64(arg, 1, SEND_THREADS_MAX, &v) < 0)
			return send_usage_error("--threads: '%s' is not in 1..%u", arg,
						SEND_THREADS_MAX);
		o->threads = (unsigned)v;
		return 0;
	case OPT_PER_CONNECTION:
		if (bench_parse_u64(arg, 0, UINT32_MAX, &v) < 0)
			return send_usage_error("--per-connection: '%s' is not a count", arg);
		o->per_connection = (unsigned)v;
		return 0;
	case OPT_PIPELINING:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			return send_usage_error("--pipelining: '%s' is not on or off", arg);
		o->pipelining = strcmp(arg, "on") == 0;
		return 0;
	case OPT_RCPTS:
		if (bench_parse_u64(arg, 1, SEND_RCPTS_MAX, &v) < 0)
			return send_usage_error("--rcpts: '%s' is not in 1..%u", arg,
						SEND_RCPTS_MAX);
		o->rcpts = (unsigned)v;
		return 0;
	case OPT_SIZE:
		return send_sizes_parse(o, arg);
	case OPT_BDAT:
		o->bdat = true;
		return 0;
	case OPT_RATE:
		if (send_parse_positive(arg, &o->rate) < 0)
			return send_usage_error("--rate: '%s' is not a positive number", arg);
		return 0;
	case OPT_FROM:
		o->from = arg;
		return 0;
	case OPT_DOMAIN:
		o->domain = arg;
		return 0;
	case OPT_EHLO:
		o->ehlo = arg;
		return 0;
	case OPT_RUN:
		if (bench_parse_run(arg, &o->run_id) < 0)
			return send_usage_error("--run: '%s' is not 8 hex digits", arg);
		*run_given = true;
		return 0;
	case OPT_TIMEOUT:
		if (send_parse_positive(arg, &o->timeout_s) < 0)
			return send_usage_error("--timeout: '%s' is not a positive number", arg);
		return 0;
	case OPT_SOURCE:
		return send_source_parse(o, arg);
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_QUIET:
		o->quiet = true;
		return 0;
	default:
		return 2; /* getopt said why */
	}
}

/* Checks across options, after all are read; 0 or 2. */
static int send_opts_check(struct send_opts *o)
{
	if (bench_parse_hostport(o->server, &o->addr, &o->addr_len) < 0)
		return send_usage_error("--server: '%s' is not HOST:PORT or [V6]:PORT (numeric)",
					o->server);
	if (o->source && o->addr.ss_family != AF_INET)
		return send_usage_error("--source needs an IPv4 --server");
	if (!send_word_ok(o->from) || !strchr(o->from, '@'))
		return send_usage_error("--from: '%s' is not an address", o->from);
	if (!send_word_ok(o->domain) || strchr(o->domain, '@'))
		return send_usage_error("--domain: '%s' is not a domain", o->domain);
	if (!send_word_ok(o->ehlo))
		return send_usage_error("--ehlo: '%s' is not a name", o->ehlo);
	/* Every thread needs a connection, or it would have nothing to do. */
	if (o->threads > o->connections)
		o->threads = o->connections;
	return 0;
}

/* Returns 0 to run, 1 after --help, 2 for a usage error. */
int send_opts_parse(struct send_opts *o, int argc, char **argv)
{
	bool run_given = false;
	int opt, r;

	send_opts_default(o);
	send_sizes_parse(o, "1k");
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", send_longopts, NULL)) != -1) {
		if (opt == OPT_HELP) {
			fputs(send_usage, stdout);
			return 1;
		}
		r = send_opt_set(o, opt, optarg, &run_given);
		if (r)
			return r;
	}
	if (optind < argc)
		return send_usage_error("unexpected argument '%s'", argv[optind]);
	if (!run_given && getrandom(&o->run_id, sizeof(o->run_id), 0) != sizeof(o->run_id))
		o->run_id = (uint32_t)(bench_now_ns() ^ (uint64_t)getpid() << 16);
	return send_opts_check(o);
}

/* One size or LO-HI range into a class; 0 or -1. */
static int send_size_range(const char *item, size_t len, struct send_size_class *cls)
{
	char buf[64];
	char *dash;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, item, len);
	buf[len] = '\0';
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (bench_parse_size(buf, &cls->lo) < 0)
		return -1;
	cls->hi = cls->lo;
	if (dash && bench_parse_size(dash + 1, &cls->hi) < 0)
		return -1;
	return cls->lo <= cls->hi && cls->hi <= BENCHMSG_BODY_MAX ? 0 : -1;
}

/* --size: SIZE, LO-HI, mix, or a list P%LO-HI,... whose P add up to 100. */
static int send_sizes_parse(struct send_opts *o, const char *spec)
{
	const char *p = strcmp(spec, "mix") == 0 ? "70%2k-8k,25%8k-100k,5%100k-10m" : spec;
	unsigned cum = 0;

	o->size_spec = spec;
	o->nsizes = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		struct send_size_class *cls = &o->sizes[o->nsizes];
		const char *pct = memchr(p, '%', len);
		unsigned long share = 100;

		if (o->nsizes == SEND_SIZE_CLASSES_MAX)
			return send_usage_error("--size: more than %d classes",
						SEND_SIZE_CLASSES_MAX);
		if (pct) {
			char *end;

			share = strtoul(p, &end, 10);
			if (end != pct || p == pct || share == 0 || share > 100)
				return send_usage_error("--size: bad share in '%s'", spec);
			len -= (size_t)(pct + 1 - p);
			p = pct + 1;
		}
		if (send_size_range(p, len, cls) < 0)
			return send_usage_error("--size: '%s' is not SIZE, LO-HI or a list of "
						"P%%LO-HI (sizes up to 12m)",
						spec);
		cum += (unsigned)share;
		cls->cum_pct = cum;
		o->nsizes++;
		p += len;
		if (*p == ',')
			p++;
	}
	if (o->nsizes == 0 || cum != 100)
		return send_usage_error("--size: the shares in '%s' add up to %u, not 100", spec,
					cum);
	return 0;
}

/* --source A[-B]: IPv4 addresses, B >= A. */
static int send_source_parse(struct send_opts *o, const char *spec)
{
	char buf[64];
	const char *dash = strchr(spec, '-');
	struct in_addr lo, hi;
	size_t len = dash ? (size_t)(dash - spec) : strlen(spec);

	if (len >= sizeof(buf))
		return send_usage_error("--source: '%s' is not A or A-B (IPv4)", spec);
	memcpy(buf, spec, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &lo) != 1 ||
	    inet_pton(AF_INET, dash ? dash + 1 : buf, &hi) != 1)
		return send_usage_error("--source: '%s' is not A or A-B (IPv4)", spec);
	o->source = true;
	o->source_lo = ntohl(lo.s_addr);
	o->source_hi = ntohl(hi.s_addr);
	if (o->source_hi < o->source_lo)
		return send_usage_error("--source: '%s' ends before it starts", spec);
	return 0;
}
