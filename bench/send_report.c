/* send_report: the progress line and the final report of `sluice-bench send`. */
#include "bench/bench.h"
#include "bench/send_pvt.h"

#include <stdio.h>
#include <string.h>

static const char *const send_err_names[SEND_ERRS] = {"connect", "timeout", "closed", "protocol"};

/* ---- report ------------------------------------------------------------- */

void send_progress(struct send_run *run, uint64_t now, uint64_t *last_accepted)
{
	uint64_t accepted = 0, refused = 0, failed = 0, open = 0, attempted = 0;

	for (unsigned i = 0; i < run->nworkers; i++) {
		struct send_stats *st = &run->workers[i].st;

		attempted += send_stat_get(&st->attempted);
		accepted += send_stat_get(&st->accepted);
		refused += send_stat_get(&st->refused);
		failed += send_stat_get(&st->failed);
		open += send_stat_get(&st->open);
	}
	fprintf(stderr,
		"send: %5.1f s  attempted %llu  accepted %llu  %llu msg/s  refused %llu  failed "
		"%llu  open %llu\n",
		(double)(now - run->start_ns) / NS_PER_S, (unsigned long long)attempted,
		(unsigned long long)accepted, (unsigned long long)(accepted - *last_accepted),
		(unsigned long long)refused, (unsigned long long)failed, (unsigned long long)open);
	*last_accepted = accepted;
}

void send_totals_sum(struct send_run *run, struct send_totals *t)
{
	uint64_t end = run->start_ns;

	memset(t, 0, sizeof(*t));
	histogram_init(&t->latency);
	for (unsigned i = 0; i < run->nworkers; i++) {
		struct send_worker *w = &run->workers[i];

		t->attempted += send_stat_get(&w->st.attempted);
		t->accepted += send_stat_get(&w->st.accepted);
		t->refused += send_stat_get(&w->st.refused);
		t->failed += send_stat_get(&w->st.failed);
		t->rcpts_accepted += send_stat_get(&w->st.rcpts_accepted);
		t->bytes_accepted += send_stat_get(&w->st.bytes_accepted);
		t->connections += send_stat_get(&w->st.connections);
		for (unsigned e = 0; e < SEND_ERRS; e++)
			t->errors[e] += w->st.errors[e];
		for (unsigned r = 0; r < SEND_CODE_MAX; r++)
			t->replies[r] += w->st.replies[r];
		histogram_merge(&t->latency, &w->latency);
		if (w->end_ns > end)
			end = w->end_ns;
	}
	t->elapsed_s = (double)(end - run->start_ns) / NS_PER_S;
}

static double send_per_s(uint64_t n, double elapsed_s)
{
	return elapsed_s > 0 ? (double)n / elapsed_s : 0;
}

static double send_ms(uint64_t ns)
{
	return (double)ns / NS_PER_MS;
}

static const double send_pcts[] = {50, 90, 99, 99.9};
static const char *const send_pct_names[] = {"p50", "p90", "p99", "p99.9"};

void send_report_table(const struct send_run *run, const struct send_totals *t)
{
	const struct send_opts *o = run->opt;

	printf("sluice-bench send: run %08x to %s\n", o->run_id, o->server);
	if (o->messages)
		printf("  settings     %llu messages, ", (unsigned long long)o->messages);
	else
		printf("  settings     messages for %g s, ", o->duration_s);
	printf("%u connections, %u threads, ", o->connections, o->threads);
	if (o->per_connection)
		printf("%u per connection, ", o->per_connection);
	else
		printf("persistent, ");
	printf("pipelining %s, %u rcpt, size %s, %s, ", o->pipelining ? "on" : "off", o->rcpts,
	       o->size_spec, o->bdat ? "BDAT" : "DATA");
	if (o->rate > 0)
		printf("rate %g/s\n", o->rate);
	else
		printf("open loop\n");
	printf("  elapsed      %.3f s\n", t->elapsed_s);
	printf("  messages     attempted %llu  accepted %llu  refused %llu  failed %llu\n",
	       (unsigned long long)t->attempted, (unsigned long long)t->accepted,
	       (unsigned long long)t->refused, (unsigned long long)t->failed);
	printf("  rates        %.1f msg/s  %.1f rcpt/s  %.1f MB/s  %.1f conn/s\n",
	       send_per_s(t->accepted, t->elapsed_s), send_per_s(t->rcpts_accepted, t->elapsed_s),
	       send_per_s(t->bytes_accepted, t->elapsed_s) / 1e6,
	       send_per_s(t->connections, t->elapsed_s));
	printf("  latency ms  ");
	for (unsigned i = 0; i < 4; i++)
		printf(" %s %.3f", send_pct_names[i],
		       send_ms(histogram_percentile(&t->latency, send_pcts[i])));
	printf("  max %.3f  (%llu samples)\n", send_ms(t->latency.max),
	       (unsigned long long)t->latency.count);
	printf("  replies     ");
	for (unsigned r = 0; r < SEND_CODE_MAX; r++)
		if (t->replies[r])
			printf(" %u:%llu", r, (unsigned long long)t->replies[r]);
	printf("\n  errors      ");
	for (unsigned e = 0; e < SEND_ERRS; e++)
		printf(" %s %llu", send_err_names[e], (unsigned long long)t->errors[e]);
	printf("\n");
}

/* A JSON string: the server and size spec come from the command line. */
static void send_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

void send_report_json(const struct send_run *run, const struct send_totals *t)
{
	const struct send_opts *o = run->opt;
	const char *sep = "";

	printf("{\"run\": \"%08x\", \"server\": ", o->run_id);
	send_json_str(o->server);
	printf(",\n \"settings\": {\"messages\": %llu, \"connections\": %u, \"threads\": %u, "
	       "\"per_connection\": %u, \"pipelining\": %s, \"rcpts\": %u, \"size\": ",
	       (unsigned long long)o->messages, o->connections, o->threads, o->per_connection,
	       o->pipelining ? "true" : "false", o->rcpts);
	send_json_str(o->size_spec);
	printf(", \"bdat\": %s, \"rate\": %g},\n", o->bdat ? "true" : "false", o->rate);
	printf(" \"elapsed_s\": %.3f,\n", t->elapsed_s);
	printf(" \"messages\": {\"attempted\": %llu, \"accepted\": %llu, \"refused\": %llu, "
	       "\"failed\": %llu},\n",
	       (unsigned long long)t->attempted, (unsigned long long)t->accepted,
	       (unsigned long long)t->refused, (unsigned long long)t->failed);
	printf(" \"recipients_accepted\": %llu, \"bytes_accepted\": %llu, \"connections\": %llu,\n",
	       (unsigned long long)t->rcpts_accepted, (unsigned long long)t->bytes_accepted,
	       (unsigned long long)t->connections);
	printf(" \"rates\": {\"messages_per_s\": %.1f, \"recipients_per_s\": %.1f, "
	       "\"mb_per_s\": %.1f, \"connections_per_s\": %.1f},\n",
	       send_per_s(t->accepted, t->elapsed_s), send_per_s(t->rcpts_accepted, t->elapsed_s),
	       send_per_s(t->bytes_accepted, t->elapsed_s) / 1e6,
	       send_per_s(t->connections, t->elapsed_s));
	printf(" \"latency_ms\": {");
	for (unsigned i = 0; i < 4; i++)
		printf("\"%s\": %.3f, ", send_pct_names[i],
		       send_ms(histogram_percentile(&t->latency, send_pcts[i])));
	printf("\"max\": %.3f, \"samples\": %llu},\n", send_ms(t->latency.max),
	       (unsigned long long)t->latency.count);
	printf(" \"replies\": {");
	for (unsigned r = 0; r < SEND_CODE_MAX; r++) {
		if (!t->replies[r])
			continue;
		printf("%s\"%u\": %llu", sep, r, (unsigned long long)t->replies[r]);
		sep = ", ";
	}
	printf("},\n \"errors\": {");
	for (unsigned e = 0; e < SEND_ERRS; e++)
		printf("%s\"%s\": %llu", e ? ", " : "", send_err_names[e],
		       (unsigned long long)t->errors[e]);
	printf("}}\n");
}
