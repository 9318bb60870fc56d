/*
 * send: `sluice-bench send`, the SMTP load generator.  bench/README.md is
 * the contract: options, exit status, JSON report.
 *
 * Owns: option parsing, the worker threads and their connection slots, the
 * client side of the SMTP dialogue, the rate limiter, per-thread counters
 * and latency histograms, the progress line and the final report.
 * benchmsg builds the messages (unique run/seq, body CRC); histogram does
 * the percentiles.
 *
 * Threads: the main thread parses, starts T workers, then only watches the
 * clock and signals, prints progress and raises the stop flag.  Each worker
 * is pinned to a core and owns C/T connection slots and one edge-triggered
 * epoll loop over them.  Workers share only read-only settings, the stop
 * flag and the message counter: an atomic, so seq numbers are 0..N-1 and
 * unique across the run.  Counters the progress line reads are relaxed
 * atomics written by their own worker only.
 *
 * A slot is IDLE (no socket), CONNECTING or OPEN.  An open session is
 * driven by the queue of replies it waits for (greeting, EHLO, MAIL,
 * RCPT x n, DATA, end of data, BDAT, RSET, QUIT): replies come in order
 * (RFC 2920), each one is matched to the head of the queue and its handler
 * decides what to send next.  Per message:
 *
 *	pipelined DATA:	MAIL RCPT.. DATA  ->  250 250.. 354
 *			body "." [next MAIL RCPT.. DATA | QUIT]  ->  250 ...
 *	pipelined BDAT:	MAIL RCPT.. "BDAT n LAST" message  ->  250 250.. 250
 *	lockstep:	one command per round trip, the body after 354
 *
 * so a pipelined session costs one round trip per message: the next group
 * rides behind the end of data (RFC 2920 3.1: message content may start a
 * group) instead of waiting for its reply.  A transaction refused before
 * its end gets RSET in front of the next MAIL.  Whenever the queue runs
 * empty the session starts the next message, waits for a rate token
 * (parked), or says QUIT; a slot whose connection ends opens a new one
 * while the run has messages left.
 */
#include "bench/bench.h"
#include "bench/benchmsg.h"
#include "bench/histogram.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* Replies a session waits for at once, at most: end of data, RSET, MAIL,
 * RCPT (one entry for all), DATA or BDAT, QUIT. */
#define SEND_WAIT_MAX 8
/* Buffers one write gathers, at most: header, body, ".", RSET, MAIL,
 * RCPTs, DATA or BDAT, QUIT. */
#define SEND_IOV_MAX 12
/* Reply bytes buffered per connection: lines are parsed as they complete,
 * so this bounds one line (RFC 5321 4.5.3.1.5 allows 512 octets). */
#define SEND_IN_MAX 2048
/* Longest --from, --domain and --ehlo (RFC 5321 4.5.3.1: 256-octet paths). */
#define SEND_ADDR_MAX 254
/* MAIL FROM:<sender> SIZE=n CRLF */
#define SEND_MAIL_MAX (SEND_ADDR_MAX + 48)
/* epoll events taken per wait. */
#define SEND_EVENTS 256
/* How often a worker checks timeouts, retries and the stop flag. */
#define SEND_SWEEP_NS (100 * NS_PER_MS)
/* Pause before a slot whose connect failed tries again. */
#define SEND_RETRY_NS (100 * NS_PER_MS)
/* After a stop, how long in-flight messages may finish (or --timeout). */
#define SEND_GRACE_NS (5 * NS_PER_S)
/* Token bucket depth in seconds of rate: smooths epoll's 1 ms wake-ups. */
#define SEND_BURST_S 0.01
#define SEND_RCPTS_MAX 100000u
#define SEND_CONNECTIONS_MAX 1000000u
#define SEND_THREADS_MAX 1024u
#define SEND_SIZE_CLASSES_MAX 16
/* Reply codes are counted by value: 200..599 (RFC 5321 4.2.1). */
#define SEND_CODE_MAX 600
/* Descriptors kept for stdio, epoll and the rest beyond the sessions. */
#define SEND_FD_SPARE 64

/* One class of message sizes: pct percent of messages, lo..hi octets. */
struct send_size_class {
	unsigned cum_pct; /* cumulative percentage up to this class */
	uint64_t lo, hi;
};

/* Settings, fixed after parsing. */
struct send_opts {
	const char *server; /* as given, for the report */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint64_t messages;	 /* 0 = until --duration */
	double duration_s;	 /* > 0 */
	unsigned connections;	 /* slots in all */
	unsigned threads;	 /* workers, <= connections */
	unsigned per_connection; /* 0 = persistent */
	unsigned rcpts;
	bool pipelining; /* use it when the server offers it */
	bool bdat;
	bool json, quiet;
	const char *size_spec;
	struct send_size_class sizes[SEND_SIZE_CLASSES_MAX];
	unsigned nsizes;
	double rate; /* messages/s in all; 0 = open loop */
	const char *from, *domain, *ehlo;
	uint32_t run_id;
	double timeout_s;
	bool source;		       /* bind to --source addresses */
	uint32_t source_lo, source_hi; /* host byte order, inclusive */
};

/* What a session waits for; the head of its queue takes the next reply. */
enum send_wait_kind {
	SEND_WAIT_GREETING,
	SEND_WAIT_EHLO,
	SEND_WAIT_MAIL,
	SEND_WAIT_RCPT,
	SEND_WAIT_DATA,
	SEND_WAIT_DOT, /* end of data ("." CRLF) */
	SEND_WAIT_BDAT,
	SEND_WAIT_RSET,
	SEND_WAIT_QUIT,
	SEND_WAIT_KINDS
};

#define SEND_NO_TX 0xff

struct send_wait {
	uint8_t kind;	/* enum send_wait_kind */
	uint8_t tx;	/* index into send_conn.tx, or SEND_NO_TX */
	uint32_t count; /* replies left for this entry (RCPT: one per recipient) */
};

/* One MAIL transaction: a message from MAIL to its final reply. */
struct send_tx {
	bool active;	    /* waiting for replies of this transaction */
	bool final;	    /* counted as accepted, refused or failed */
	bool mail_ok;	    /* MAIL got 2xx: the server holds a transaction */
	bool body;	    /* the message itself was sent (not an empty "." ) */
	unsigned pending;   /* replies still due for this transaction */
	unsigned rcpt_sent; /* lockstep: recipients sent so far */
	unsigned rcpt_done; /* RCPT replies seen */
	unsigned rcpt_ok;   /* RCPT replies that were 2xx */
	uint64_t eod_ns;    /* when the last byte of data was written; 0 = not yet */
	size_t mail_len, verb_len;
	char mail[SEND_MAIL_MAX]; /* MAIL FROM:<...> [SIZE=n] CRLF */
	char verb[40];		  /* BDAT n LAST CRLF */
	struct benchmsg msg;
};

enum send_conn_state {
	SEND_CONN_IDLE,	      /* no socket; opens again at retry_ns if there is work */
	SEND_CONN_CONNECTING, /* non-blocking connect() in progress */
	SEND_CONN_OPEN,	      /* connected: the wait queue drives it */
};

/* One connection slot of a worker. */
struct send_conn {
	int fd;
	uint32_t gen; /* bumped per socket: tells stale epoll events and parkings apart */
	enum send_conn_state state;
	bool offers_pipelining, offers_chunking, offers_size; /* from EHLO */
	bool pipelining;				      /* this session pipelines */
	bool parked;	  /* waiting in the worker's queue for a rate token */
	bool token;	  /* released from that queue with a token in hand */
	bool need_rset;	  /* the server may still hold a refused transaction */
	bool quitting;	  /* QUIT sent: nothing more to start */
	bool opening;	  /* counted in run->opening: no message started yet */
	bool eod_pending; /* the queued output ends a message: stamp eod_ns when written */
	uint8_t eod_tx;	  /* which transaction that is */
	uint8_t next_tx;  /* transaction slot the next message uses (they alternate) */
	uint8_t wait_head, wait_len;
	uint8_t out_idx, out_len; /* out[out_idx..out_len) is still to write */
	unsigned msgs;		  /* messages started on this connection */
	unsigned reply_code;	  /* code of a multi-line reply in progress, else 0 */
	size_t in_len;
	uint64_t deadline_ns;			 /* the pending reply or write is late after this */
	uint64_t retry_ns;			 /* IDLE: not before this */
	struct send_conn *park_prev, *park_next; /* parked: the worker's queue */
	struct send_wait wait[SEND_WAIT_MAX];
	struct iovec out[SEND_IOV_MAX];
	struct send_tx tx[2]; /* the end of one message and the start of the next */
	char in[SEND_IN_MAX];
};

enum send_err { SEND_ERR_CONNECT, SEND_ERR_TIMEOUT, SEND_ERR_CLOSED, SEND_ERR_PROTOCOL, SEND_ERRS };

/* Why a connection ends; the first SEND_ERRS values are the errors. */
enum send_close {
	SEND_CLOSE_CONNECT = SEND_ERR_CONNECT,
	SEND_CLOSE_TIMEOUT = SEND_ERR_TIMEOUT,
	SEND_CLOSE_CLOSED = SEND_ERR_CLOSED,
	SEND_CLOSE_PROTOCOL = SEND_ERR_PROTOCOL,
	SEND_CLOSE_DONE = SEND_ERRS, /* after QUIT */
	SEND_CLOSE_SERVER,	     /* the server said 421 */
	SEND_CLOSE_ABANDON,	     /* the run stopped */
};

/* Counters of one worker.  The atomics are read by the progress line
 * while the worker runs; the rest only after it ends. */
struct send_stats {
	_Atomic uint64_t attempted, accepted, refused, failed;
	_Atomic uint64_t rcpts_accepted, bytes_accepted, connections;
	_Atomic uint64_t open; /* connections open now */
	uint64_t errors[SEND_ERRS];
	uint64_t replies[SEND_CODE_MAX];
};

struct send_run;

struct send_worker {
	unsigned id;
	pthread_t thread;
	struct send_run *run;
	int epfd;
	struct send_conn *conns;
	unsigned nconns;
	unsigned open;	     /* slots not IDLE */
	uint64_t now;	     /* loop clock, read once per epoll_wait */
	uint64_t next_sweep; /* next timeout/retry/stop check */
	bool winding_down;   /* no more messages to start: parked sessions quit */
	bool stopping;	     /* the stop flag was seen */
	uint64_t abandon_ns; /* stopping: in-flight work is cut off after this */
	/* Token bucket (rate_per_ns == 0: open loop). */
	double rate_per_ns, tokens, burst;
	uint64_t refill_ns;
	/* Sessions waiting for a token, oldest first; a session that ends
	 * while parked leaves the list at once. */
	struct send_conn *park_head, *park_tail;
	uint64_t rng;
	uint64_t source_next; /* next --source address: offset from source_lo */
	uint64_t end_ns;
	struct send_stats st;
	struct histogram latency; /* end of data to 2xx, ns */
};

/* What the workers share. */
struct send_run {
	const struct send_opts *opt;
	struct benchmsg_pool *pool;
	char ehlo[SEND_ADDR_MAX + 8]; /* EHLO name CRLF */
	size_t ehlo_len;
	char mail_prefix[SEND_ADDR_MAX + 16]; /* MAIL FROM:<sender> */
	size_t mail_prefix_len;
	char *rcpt_block; /* every RCPT TO:<rK@domain> CRLF, K = 0..n-1 */
	size_t *rcpt_off; /* recipient K is rcpt_block[rcpt_off[K] .. rcpt_off[K+1]) */
	uint64_t timeout_ns;
	uint64_t start_ns;
	struct send_worker *workers;
	unsigned nworkers;
	_Atomic uint64_t next_seq;
	_Atomic uint64_t opening; /* sessions open that have not started a message */
	_Atomic bool stop;
	_Atomic bool ever_connected; /* a connect failing before this is fatal */
	_Atomic unsigned done;	     /* workers finished */
	atomic_flag fatal_set;
	char fatal[256]; /* why the run could not go on; read after join */
};

/* Sums over the workers, for the report. */
struct send_totals {
	uint64_t attempted, accepted, refused, failed;
	uint64_t rcpts_accepted, bytes_accepted, connections;
	uint64_t errors[SEND_ERRS];
	uint64_t replies[SEND_CODE_MAX];
	double elapsed_s;
	struct histogram latency;
};

typedef int send_reply_fn(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			  unsigned code);

/* Options */
static int send_opts_parse(struct send_opts *o, int argc, char **argv);
static int send_sizes_parse(struct send_opts *o, const char *spec);
static int send_source_parse(struct send_opts *o, const char *spec);
/* Run and workers */
static int send_run_init(struct send_run *run, const struct send_opts *o);
static void send_run_fini(struct send_run *run);
static void send_run_fatal(struct send_run *run, const char *fmt, ...);
static bool send_run_has_work(struct send_run *run);
static int send_worker_init(struct send_worker *w, struct send_run *run, unsigned id);
static void *send_worker_main(void *arg);
static void send_worker_sweep(struct send_worker *w);
static void send_worker_wind_down(struct send_worker *w);
static int send_worker_timeout_ms(const struct send_worker *w);
/* Rate */
static bool send_rate_take(struct send_worker *w);
static void send_rate_park(struct send_worker *w, struct send_conn *c);
static void send_rate_unpark(struct send_worker *w, struct send_conn *c);
static void send_rate_release(struct send_worker *w);
/* Connections */
static void send_conn_open(struct send_worker *w, struct send_conn *c);
static int send_conn_connected(struct send_worker *w, struct send_conn *c, uint32_t events);
static void send_conn_event(struct send_worker *w, struct send_conn *c, uint32_t events);
static int send_conn_read(struct send_worker *w, struct send_conn *c, uint32_t events);
static int send_conn_flush(struct send_worker *w, struct send_conn *c);
static void send_conn_kick(struct send_worker *w, struct send_conn *c);
static int send_conn_close(struct send_worker *w, struct send_conn *c, enum send_close why);
/* Session */
static int send_reply_parse(struct send_worker *w, struct send_conn *c);
static int send_reply(struct send_worker *w, struct send_conn *c, unsigned code);
static void send_sess_next(struct send_worker *w, struct send_conn *c);
static void send_sess_quit(struct send_worker *w, struct send_conn *c);
static void send_tx_start(struct send_worker *w, struct send_conn *c, uint64_t seq);
static send_reply_fn send_on_greeting, send_on_ehlo, send_on_mail, send_on_rcpt, send_on_data,
    send_on_dot, send_on_bdat, send_on_rset, send_on_quit;
/* Report */
static void send_progress(struct send_run *run, uint64_t now, uint64_t *last_accepted);
static void send_totals_sum(struct send_run *run, struct send_totals *t);
static void send_report_table(const struct send_run *run, const struct send_totals *t);
static void send_report_json(const struct send_run *run, const struct send_totals *t);

static send_reply_fn *const send_on_reply[SEND_WAIT_KINDS] = {
    [SEND_WAIT_GREETING] = send_on_greeting, [SEND_WAIT_EHLO] = send_on_ehlo,
    [SEND_WAIT_MAIL] = send_on_mail,	     [SEND_WAIT_RCPT] = send_on_rcpt,
    [SEND_WAIT_DATA] = send_on_data,	     [SEND_WAIT_DOT] = send_on_dot,
    [SEND_WAIT_BDAT] = send_on_bdat,	     [SEND_WAIT_RSET] = send_on_rset,
    [SEND_WAIT_QUIT] = send_on_quit,
};

static const char send_cmd_data[] = "DATA\r\n";
static const char send_cmd_dot[] = ".\r\n";
static const char send_cmd_rset[] = "RSET\r\n";
static const char send_cmd_quit[] = "QUIT\r\n";

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

static const char *const send_err_names[SEND_ERRS] = {"connect", "timeout", "closed", "protocol"};

/* ---- small helpers ------------------------------------------------------ */

/* Add n to a counter only its worker writes: a plain load and store, no
 * locked instruction, yet a clean read for the progress line. */
static inline void send_stat_add(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t send_stat_get(_Atomic uint64_t *counter)
{
	return atomic_load_explicit(counter, memory_order_relaxed);
}

/* xorshift64*: per worker, for sizes only. */
static uint64_t send_rand(struct send_worker *w)
{
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Write v in decimal at p; returns the end. */
static char *send_put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static uint64_t send_ns_from_s(double s)
{
	return (uint64_t)(s * (double)NS_PER_S);
}

/* ---- options ------------------------------------------------------------ */

/* Parse a decimal integer in [min, max]; -1 when malformed or out of range. */
static int send_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

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
		if (send_parse_uint(arg, 0, UINT64_MAX / 2, &o->messages) < 0)
			return send_usage_error("--messages: '%s' is not a count", arg);
		return 0;
	case OPT_DURATION:
		if (send_parse_positive(arg, &o->duration_s) < 0)
			return send_usage_error("--duration: '%s' is not a positive number", arg);
		return 0;
	case OPT_CONNECTIONS:
		if (send_parse_uint(arg, 1, SEND_CONNECTIONS_MAX, &v) < 0)
			return send_usage_error("--connections: '%s' is not in 1..%u", arg,
						SEND_CONNECTIONS_MAX);
		o->connections = (unsigned)v;
		return 0;
	case OPT_THREADS:
		if (send_parse_uint(arg, 1, SEND_THREADS_MAX, &v) < 0)
			return send_usage_error("--threads: '%s' is not in 1..%u", arg,
						SEND_THREADS_MAX);
		o->threads = (unsigned)v;
		return 0;
	case OPT_PER_CONNECTION:
		if (send_parse_uint(arg, 0, UINT32_MAX, &v) < 0)
			return send_usage_error("--per-connection: '%s' is not a count", arg);
		o->per_connection = (unsigned)v;
		return 0;
	case OPT_PIPELINING:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			return send_usage_error("--pipelining: '%s' is not on or off", arg);
		o->pipelining = strcmp(arg, "on") == 0;
		return 0;
	case OPT_RCPTS:
		if (send_parse_uint(arg, 1, SEND_RCPTS_MAX, &v) < 0)
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
	case OPT_RUN: {
		char *end;

		o->run_id = (uint32_t)strtoul(arg, &end, 16);
		if (strlen(arg) != 8 || *end != '\0' || arg[0] == '-' || arg[0] == '+')
			return send_usage_error("--run: '%s' is not 8 hex digits", arg);
		*run_given = true;
		return 0;
	}
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
static int send_opts_parse(struct send_opts *o, int argc, char **argv)
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

/* ---- run ---------------------------------------------------------------- */

static void send_run_fatal(struct send_run *run, const char *fmt, ...)
{
	va_list ap;

	if (atomic_flag_test_and_set(&run->fatal_set))
		return;
	va_start(ap, fmt);
	vsnprintf(run->fatal, sizeof(run->fatal), fmt, ap);
	va_end(ap);
	atomic_store(&run->stop, true);
}

/* Messages left to start (a peek: the claim is the fetch-add). */
static bool send_run_has_work(struct send_run *run)
{
	const struct send_opts *o = run->opt;

	if (atomic_load_explicit(&run->stop, memory_order_relaxed))
		return false;
	return o->messages == 0 ||
	       atomic_load_explicit(&run->next_seq, memory_order_relaxed) < o->messages;
}

/* A message left for one more connection: those already opening will
 * take theirs first, so that the end of a run opens no idle sessions. */
static bool send_run_has_work_for_new(struct send_run *run)
{
	const struct send_opts *o = run->opt;

	if (atomic_load_explicit(&run->stop, memory_order_relaxed))
		return false;
	return o->messages == 0 ||
	       atomic_load_explicit(&run->next_seq, memory_order_relaxed) +
		       atomic_load_explicit(&run->opening, memory_order_relaxed) <
		   o->messages;
}

/* The session has started its first message or will never start one. */
static void send_conn_opened(struct send_worker *w, struct send_conn *c)
{
	if (!c->opening)
		return;
	c->opening = false;
	atomic_fetch_sub_explicit(&w->run->opening, 1, memory_order_relaxed);
}

/* The RCPT commands, built once: every message has the same recipients. */
static int send_run_rcpts(struct send_run *run)
{
	const struct send_opts *o = run->opt;
	size_t cap = (size_t)o->rcpts * (SEND_ADDR_MAX + 32), len = 0;

	run->rcpt_block = malloc(cap);
	run->rcpt_off = malloc(((size_t)o->rcpts + 1) * sizeof(*run->rcpt_off));
	if (!run->rcpt_block || !run->rcpt_off)
		return -1;
	for (unsigned k = 0; k < o->rcpts; k++) {
		int n;

		run->rcpt_off[k] = len;
		memcpy(run->rcpt_block + len, "RCPT TO:<", 9);
		len += 9;
		n = benchmsg_rcpt(run->rcpt_block + len, SEND_ADDR_MAX + 16, k, o->domain);
		if (n < 0)
			return -1;
		len += (size_t)n;
		memcpy(run->rcpt_block + len, ">\r\n", 3);
		len += 3;
	}
	run->rcpt_off[o->rcpts] = len;
	return 0;
}

/* Returns 0, 1 when out of memory, 2 when --from/--domain do not fit. */
static int send_run_init(struct send_run *run, const struct send_opts *o)
{
	struct benchmsg probe;

	memset(run, 0, sizeof(*run));
	run->opt = o;
	atomic_flag_clear(&run->fatal_set);
	run->timeout_ns = send_ns_from_s(o->timeout_s);
	run->ehlo_len = (size_t)snprintf(run->ehlo, sizeof(run->ehlo), "EHLO %s\r\n", o->ehlo);
	run->mail_prefix_len =
	    (size_t)snprintf(run->mail_prefix, sizeof(run->mail_prefix), "MAIL FROM:<%s>", o->from);
	run->pool = benchmsg_pool_new();
	if (!run->pool || send_run_rcpts(run) < 0) {
		fprintf(stderr, "sluice-bench send: out of memory\n");
		return 1;
	}
	/* The longest header: largest seq, recipient count and body. */
	if (benchmsg_build(run->pool, o->run_id, UINT64_MAX / 2, o->rcpts, BENCHMSG_BODY_MAX,
			   o->from, o->domain, &probe) < 0)
		return send_usage_error("--from and --domain do not fit the message header");
	run->workers = calloc(o->threads, sizeof(*run->workers));
	if (!run->workers) {
		fprintf(stderr, "sluice-bench send: out of memory\n");
		return 1;
	}
	return 0;
}

static void send_run_fini(struct send_run *run)
{
	for (unsigned i = 0; i < run->nworkers; i++) {
		struct send_worker *w = &run->workers[i];

		if (w->epfd >= 0)
			close(w->epfd);
		free(w->conns);
	}
	free(run->workers);
	free(run->rcpt_block);
	free(run->rcpt_off);
	benchmsg_pool_free(run->pool);
}

/* Enough descriptors for every session; 0 or -1 (with a message). */
static int send_nofile_raise(const struct send_opts *o)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)o->connections + o->threads + SEND_FD_SPARE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur >= need)
		return 0;
	fprintf(stderr,
		"sluice-bench send: --connections %u needs %llu descriptors, the hard limit is "
		"%llu (raise ulimit -n)\n",
		o->connections, (unsigned long long)need, (unsigned long long)rl.rlim_max);
	return -1;
}

/* ---- rate --------------------------------------------------------------- */

static void send_rate_refill(struct send_worker *w)
{
	w->tokens += (double)(w->now - w->refill_ns) * w->rate_per_ns;
	if (w->tokens > w->burst)
		w->tokens = w->burst;
	w->refill_ns = w->now;
}

/* Take a token to start a message; false when the session must park.
 * Parked sessions go first, in order. */
static bool send_rate_take(struct send_worker *w)
{
	if (w->rate_per_ns == 0)
		return true;
	if (w->park_head)
		return false;
	send_rate_refill(w);
	if (w->tokens < 1)
		return false;
	w->tokens -= 1;
	return true;
}

static void send_rate_park(struct send_worker *w, struct send_conn *c)
{
	c->park_prev = w->park_tail;
	c->park_next = NULL;
	if (w->park_tail)
		w->park_tail->park_next = c;
	else
		w->park_head = c;
	w->park_tail = c;
	c->parked = true;
}

static void send_rate_unpark(struct send_worker *w, struct send_conn *c)
{
	if (c->park_prev)
		c->park_prev->park_next = c->park_next;
	else
		w->park_head = c->park_next;
	if (c->park_next)
		c->park_next->park_prev = c->park_prev;
	else
		w->park_tail = c->park_prev;
	c->park_prev = c->park_next = NULL;
	c->parked = false;
}

/* Hand out the tokens that have accrued to parked sessions, oldest first. */
static void send_rate_release(struct send_worker *w)
{
	send_rate_refill(w);
	while (w->park_head && w->tokens >= 1) {
		struct send_conn *c = w->park_head;

		send_rate_unpark(w, c);
		w->tokens -= 1;
		c->token = true;
		send_sess_next(w, c);
		send_conn_kick(w, c);
	}
}

/* ---- connections -------------------------------------------------------- */

static void send_out_add(struct send_conn *c, const void *base, size_t len)
{
	if (c->out_len == SEND_IOV_MAX && c->out_idx > 0) {
		memmove(c->out, c->out + c->out_idx, (c->out_len - c->out_idx) * sizeof(c->out[0]));
		c->out_len -= c->out_idx;
		c->out_idx = 0;
	}
	assert(c->out_len < SEND_IOV_MAX);
	c->out[c->out_len++] = (struct iovec){.iov_base = (void *)base, .iov_len = len};
}

static void send_wait_push(struct send_conn *c, enum send_wait_kind kind, unsigned tx,
			   uint32_t count)
{
	assert(c->wait_len < SEND_WAIT_MAX);
	c->wait[(c->wait_head + c->wait_len) % SEND_WAIT_MAX] =
	    (struct send_wait){.kind = (uint8_t)kind, .tx = (uint8_t)tx, .count = count};
	c->wait_len++;
	if (tx != SEND_NO_TX)
		c->tx[tx].pending += count;
}

/* Bind to the next --source address; the kernel picks the port at
 * connect() time (IP_BIND_ADDRESS_NO_PORT), so each source address has
 * a whole ephemeral port range towards the server. */
static int send_conn_bind(struct send_worker *w, int fd)
{
	const struct send_opts *o = w->run->opt;
	uint64_t count = (uint64_t)o->source_hi - o->source_lo + 1;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int one = 1, err;

	sin.sin_addr.s_addr = htonl(o->source_lo + (uint32_t)w->source_next);
	w->source_next = (w->source_next + o->threads) % count;
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) == 0 &&
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
		return 0;
	err = errno;
	/* Not a local address: every connection would fail the same way. */
	if (!atomic_load_explicit(&w->run->ever_connected, memory_order_relaxed)) {
		char addr[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &sin.sin_addr, addr, sizeof(addr));
		send_run_fatal(w->run, "--source: cannot bind to %s: %s", addr, strerror(err));
	}
	return -err;
}

/* A connect that fails before any connection of the run has worked means
 * a wrong address or no server: give up rather than retry for --duration.
 * Running out of ports or descriptors is load, not a wrong address. */
static void send_conn_check_fatal(struct send_worker *w, int err)
{
	if (!atomic_load_explicit(&w->run->ever_connected, memory_order_relaxed) &&
	    err != EADDRNOTAVAIL && err != EMFILE && err != ENFILE)
		send_run_fatal(w->run, "cannot connect to %s: %s", w->run->opt->server,
			       strerror(err));
}

/* A connect that failed before the slot had a socket registered. */
static void send_conn_connect_failed(struct send_worker *w, struct send_conn *c, int err)
{
	send_conn_check_fatal(w, err);
	w->st.errors[SEND_ERR_CONNECT]++;
	c->retry_ns = w->now + SEND_RETRY_NS;
}

static void send_conn_reset(struct send_conn *c)
{
	c->offers_pipelining = c->offers_chunking = c->offers_size = false;
	c->pipelining = c->parked = c->token = c->need_rset = false;
	c->quitting = c->eod_pending = c->opening = false;
	c->wait_head = c->wait_len = 0;
	c->out_idx = c->out_len = 0;
	c->msgs = 0;
	c->reply_code = 0;
	c->in_len = 0;
	c->tx[0].active = c->tx[1].active = false;
	c->tx[0].pending = c->tx[1].pending = 0;
}

/* Open a socket for an IDLE slot and start connecting. */
static void send_conn_open(struct send_worker *w, struct send_conn *c)
{
	const struct send_opts *o = w->run->opt;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
	int one = 1, fd, err;

	fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		send_conn_connect_failed(w, c, errno);
		return;
	}
	/* Each write is a whole group: Nagle would only hold back the tail
	 * of a large message behind its unacknowledged start. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	err = o->source ? send_conn_bind(w, fd) : 0;
	if (err == 0 && connect(fd, (const struct sockaddr *)&o->addr, o->addr_len) < 0 &&
	    errno != EINPROGRESS)
		err = -errno;
	c->gen++;
	ev.data.u64 = (uint64_t)c->gen << 32 | (uint32_t)(c - w->conns);
	if (err == 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		err = -errno;
	if (err < 0) {
		close(fd);
		send_conn_connect_failed(w, c, -err);
		return;
	}
	send_conn_reset(c);
	c->fd = fd;
	c->state = SEND_CONN_CONNECTING;
	c->deadline_ns = w->now + w->run->timeout_ns;
	send_wait_push(c, SEND_WAIT_GREETING, SEND_NO_TX, 1);
	c->opening = true;
	atomic_fetch_add_explicit(&w->run->opening, 1, memory_order_relaxed);
	w->open++;
	atomic_store_explicit(&w->st.open, w->open, memory_order_relaxed);
}

/* Open the slot again if the run has messages left and its pause is over. */
static void send_conn_reopen(struct send_worker *w, struct send_conn *c)
{
	if (c->state == SEND_CONN_IDLE && w->now >= c->retry_ns &&
	    send_run_has_work_for_new(w->run))
		send_conn_open(w, c);
}

/* Count what a closing connection cuts short; always returns -1 so that
 * callers can `return send_conn_close(...)`. */
static int send_conn_close(struct send_worker *w, struct send_conn *c, enum send_close why)
{
	bool cut = false;

	for (unsigned i = 0; i < 2; i++) {
		struct send_tx *tx = &c->tx[i];

		if (tx->active && !tx->final) {
			send_stat_add(&w->st.failed, 1);
			cut = true;
		}
		tx->active = false;
	}
	/* A 421 is announced, but what it cuts short (the group pipelined
	 * behind the refused command) failed like on any other close. */
	if (why == SEND_CLOSE_SERVER && cut)
		why = SEND_CLOSE_CLOSED;
	if (why < SEND_CLOSE_DONE)
		w->st.errors[why]++;
	if (c->parked)
		send_rate_unpark(w, c);
	send_conn_opened(w, c);
	close(c->fd);
	c->fd = -1;
	c->state = SEND_CONN_IDLE;
	c->gen++;
	c->retry_ns = why == SEND_CLOSE_CONNECT ? w->now + SEND_RETRY_NS : w->now;
	w->open--;
	atomic_store_explicit(&w->st.open, w->open, memory_order_relaxed);
	return -1;
}

/* The non-blocking connect has finished one way or the other. */
static int send_conn_connected(struct send_worker *w, struct send_conn *c, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP)) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			send_conn_check_fatal(w, err);
			return send_conn_close(w, c, SEND_CLOSE_CONNECT);
		}
	}
	c->state = SEND_CONN_OPEN;
	send_stat_add(&w->st.connections, 1);
	if (!atomic_load_explicit(&w->run->ever_connected, memory_order_relaxed))
		atomic_store(&w->run->ever_connected, true);
	return 0;
}

/* Write what is queued; 0 (done, or the rest waits for EPOLLOUT) or -1
 * when the connection closed. */
static int send_conn_flush(struct send_worker *w, struct send_conn *c)
{
	while (c->out_idx < c->out_len) {
		struct msghdr mh = {.msg_iov = c->out + c->out_idx,
				    .msg_iovlen = (size_t)(c->out_len - c->out_idx)};
		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return send_conn_close(w, c, SEND_CLOSE_CLOSED);
		}
		c->deadline_ns = w->now + w->run->timeout_ns;
		while (n > 0) {
			struct iovec *iov = &c->out[c->out_idx];

			if ((size_t)n < iov->iov_len) {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				break;
			}
			n -= (ssize_t)iov->iov_len;
			c->out_idx++;
		}
	}
	c->out_idx = c->out_len = 0;
	if (c->eod_pending) {
		/* The latency clock starts when the last byte of data is out. */
		c->tx[c->eod_tx].eod_ns = bench_now_ns();
		c->eod_pending = false;
	}
	return 0;
}

/* Write what a call outside an event queued; reopen the slot if that
 * ended the connection. */
static void send_conn_kick(struct send_worker *w, struct send_conn *c)
{
	if (c->state != SEND_CONN_IDLE && c->out_len)
		send_conn_flush(w, c);
	send_conn_reopen(w, c);
}

/* Read and act on replies; 0, or -1 when the connection closed.  A short
 * read means the socket is drained: edge-triggered epoll reports the next
 * arrival, so there is no need to read until EAGAIN - unless the peer
 * has closed, when the EOF itself must be read. */
static int send_conn_read(struct send_worker *w, struct send_conn *c, uint32_t events)
{
	bool drain = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);

	for (;;) {
		size_t room = sizeof(c->in) - c->in_len;
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return send_conn_close(w, c, SEND_CLOSE_CLOSED);
		}
		if (n == 0) /* after QUIT, a close that cuts nothing short is fine */
			return send_conn_close(w, c,
					       c->quitting && !c->tx[0].active && !c->tx[1].active
						   ? SEND_CLOSE_DONE
						   : SEND_CLOSE_CLOSED);
		c->in_len += (size_t)n;
		c->deadline_ns = w->now + w->run->timeout_ns;
		if (send_reply_parse(w, c) < 0)
			return -1;
		if ((size_t)n < room && !drain)
			return 0;
	}
}

static void send_conn_event(struct send_worker *w, struct send_conn *c, uint32_t events)
{
	if (c->state == SEND_CONN_CONNECTING && send_conn_connected(w, c, events) < 0)
		return;
	if ((events & EPOLLOUT) && c->out_len && send_conn_flush(w, c) < 0)
		return;
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
	    send_conn_read(w, c, events) < 0)
		return;
	/* Replies handled above queue their answers; one write sends them all. */
	if (c->out_len)
		send_conn_flush(w, c);
}

/* ---- replies ------------------------------------------------------------ */

static bool send_keyword_is(const char *p, size_t len, const char *word)
{
	size_t n = strlen(word);

	return len >= n && strncasecmp(p, word, n) == 0 && (len == n || p[n] == ' ');
}

/* An EHLO reply line's keyword (RFC 5321 4.1.1.1). */
static void send_ehlo_keyword(struct send_conn *c, const char *p, size_t len)
{
	if (send_keyword_is(p, len, "PIPELINING"))
		c->offers_pipelining = true;
	else if (send_keyword_is(p, len, "CHUNKING"))
		c->offers_chunking = true;
	else if (send_keyword_is(p, len, "SIZE"))
		c->offers_size = true;
}

/* One reply line, CRLF included; 0, or -1 when the connection closed.
 * Strict: CRLF only, three digits 2xx..5xx, one code per reply. */
static int send_reply_line(struct send_worker *w, struct send_conn *c, const char *line, size_t len)
{
	unsigned code;
	char sep;

	if (len < 5 || line[len - 2] != '\r' || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9')
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL);
	code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
	       (unsigned)(line[2] - '0');
	sep = line[3];
	/* Only 421 may come unasked (RFC 5321 3.8: the server shuts down). */
	if ((sep != '-' && sep != ' ' && sep != '\r') || (c->wait_len == 0 && code != 421) ||
	    (c->reply_code && code != c->reply_code))
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL);
	if (c->wait_len && c->wait[c->wait_head].kind == SEND_WAIT_EHLO && code == 250 && len > 6)
		send_ehlo_keyword(c, line + 4, len - 6);
	if (sep == '-') {
		c->reply_code = code;
		return 0;
	}
	c->reply_code = 0;
	return send_reply(w, c, code);
}

/* Every complete line in the input buffer; keeps a partial one. */
static int send_reply_parse(struct send_worker *w, struct send_conn *c)
{
	char *p = c->in, *end = c->in + c->in_len, *nl;

	while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
		size_t len = (size_t)(nl + 1 - p);

		if (send_reply_line(w, c, p, len) < 0)
			return -1;
		p = nl + 1;
	}
	c->in_len = (size_t)(end - p);
	if (c->in_len == sizeof(c->in))
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL); /* a line too long */
	if (c->in_len && p != c->in)
		memmove(c->in, p, c->in_len);
	return 0;
}

static void send_tx_refuse(struct send_worker *w, struct send_tx *tx)
{
	if (tx->final)
		return;
	tx->final = true;
	send_stat_add(&w->st.refused, 1);
}

static void send_tx_accept(struct send_worker *w, struct send_tx *tx)
{
	tx->final = true;
	send_stat_add(&w->st.accepted, 1);
	send_stat_add(&w->st.rcpts_accepted, tx->rcpt_ok);
	send_stat_add(&w->st.bytes_accepted, tx->msg.hdr_len + tx->msg.body_len);
	if (tx->eod_ns)
		histogram_record(&w->latency, bench_now_ns() - tx->eod_ns);
}

/* A complete reply: hand it to the head of the wait queue. */
static int send_reply(struct send_worker *w, struct send_conn *c, unsigned code)
{
	struct send_wait *head = &c->wait[c->wait_head];
	enum send_wait_kind kind = (enum send_wait_kind)head->kind;
	struct send_tx *tx = head->tx == SEND_NO_TX ? NULL : &c->tx[head->tx];

	w->st.replies[code]++;
	if (c->wait_len == 0) /* an unasked 421 */
		return send_conn_close(w, c, SEND_CLOSE_SERVER);
	if (--head->count == 0) {
		c->wait_head = (uint8_t)((c->wait_head + 1) % SEND_WAIT_MAX);
		c->wait_len--;
	}
	if (tx)
		tx->pending--;
	if (send_on_reply[kind](w, c, tx, code) < 0)
		return -1;
	if (tx && tx->active && tx->pending == 0) {
		/* Its last reply is in; one that was not decided was refused. */
		send_tx_refuse(w, tx);
		tx->active = false;
	}
	if (code == 421) /* RFC 5321 3.8: the server is closing the channel */
		return send_conn_close(w, c, SEND_CLOSE_SERVER);
	if (c->wait_len == 0)
		send_sess_next(w, c);
	return 0;
}

static int send_on_greeting(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			    unsigned code)
{
	(void)tx;
	if (code != 220) {
		send_sess_quit(w, c); /* RFC 5321 3.1: a 554 greeting still takes QUIT */
		return 0;
	}
	send_out_add(c, w->run->ehlo, w->run->ehlo_len);
	send_wait_push(c, SEND_WAIT_EHLO, SEND_NO_TX, 1);
	return 0;
}

static int send_on_ehlo(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)tx;
	if (code / 100 != 2) /* no HELO fallback: we need the extensions */
		return send_conn_close(w, c, SEND_CLOSE_PROTOCOL);
	if (w->run->opt->bdat && !c->offers_chunking) {
		send_run_fatal(w->run, "--bdat: %s does not offer CHUNKING", w->run->opt->server);
		return send_conn_close(w, c, SEND_CLOSE_ABANDON);
	}
	c->pipelining = w->run->opt->pipelining && c->offers_pipelining;
	return 0;
}

/* Lockstep: send recipient tx->rcpt_sent. */
static void send_tx_rcpt(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	const struct send_run *run = w->run;
	unsigned k = tx->rcpt_sent++;

	send_out_add(c, run->rcpt_block + run->rcpt_off[k],
		     run->rcpt_off[k + 1] - run->rcpt_off[k]);
	send_wait_push(c, SEND_WAIT_RCPT, (unsigned)(tx - c->tx), 1);
}

/* BDAT n LAST and the whole message as its one chunk (RFC 3030 2). */
static void send_tx_bdat(struct send_conn *c, struct send_tx *tx)
{
	unsigned t = (unsigned)(tx - c->tx);

	send_out_add(c, tx->verb, tx->verb_len);
	send_out_add(c, tx->msg.hdr, tx->msg.hdr_len);
	send_out_add(c, tx->msg.body, tx->msg.body_len);
	send_wait_push(c, SEND_WAIT_BDAT, t, 1);
	tx->body = true;
	assert(!c->eod_pending);
	c->eod_pending = true;
	c->eod_tx = (uint8_t)t;
}

/* After the recipients, DATA or BDAT. */
static void send_tx_verb(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	if (w->run->opt->bdat) {
		send_tx_bdat(c, tx);
		return;
	}
	send_out_add(c, send_cmd_data, sizeof(send_cmd_data) - 1);
	send_wait_push(c, SEND_WAIT_DATA, (unsigned)(tx - c->tx), 1);
}

static int send_on_mail(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	if (code / 100 != 2) {
		send_tx_refuse(w, tx); /* pipelined: its RCPTs and DATA get 503 */
		return 0;
	}
	tx->mail_ok = true;
	if (!c->pipelining)
		send_tx_rcpt(w, c, tx);
	return 0;
}

static int send_on_rcpt(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	unsigned rcpts = w->run->opt->rcpts;

	tx->rcpt_done++;
	if (code / 100 == 2)
		tx->rcpt_ok++;
	if (tx->rcpt_done < rcpts) {
		if (!c->pipelining)
			send_tx_rcpt(w, c, tx);
		return 0;
	}
	if (tx->rcpt_ok == 0) {
		/* Nobody to deliver to: pipelined, DATA gets 503 or 554 (RFC
		 * 2920 3.1); lockstep, we do not send it. */
		send_tx_refuse(w, tx);
		if (!c->pipelining)
			c->need_rset = true;
		return 0;
	}
	if (!c->pipelining)
		send_tx_verb(w, c, tx);
	return 0;
}

static int send_on_data(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	unsigned t = (unsigned)(tx - c->tx);

	if (code != 354) {
		send_tx_refuse(w, tx);
		c->need_rset = tx->mail_ok;
		return 0;
	}
	if (tx->final) {
		/* 354 although the transaction failed: end it empty (RFC 2920 3.1). */
		send_out_add(c, send_cmd_dot, sizeof(send_cmd_dot) - 1);
	} else {
		send_out_add(c, tx->msg.hdr, tx->msg.hdr_len);
		send_out_add(c, tx->msg.body, tx->msg.body_len);
		send_out_add(c, send_cmd_dot, sizeof(send_cmd_dot) - 1);
		tx->body = true;
		assert(!c->eod_pending);
		c->eod_pending = true;
		c->eod_tx = (uint8_t)t;
	}
	send_wait_push(c, SEND_WAIT_DOT, t, 1);
	/* The next group (or QUIT) rides behind the end of data. */
	if (c->pipelining)
		send_sess_next(w, c);
	return 0;
}

/* The final reply to a message, after "." or BDAT LAST. */
static void send_tx_end(struct send_worker *w, struct send_tx *tx, unsigned code)
{
	if (!tx->body || tx->final)
		return; /* an empty "." or a BDAT after a refusal */
	if (code / 100 == 2)
		send_tx_accept(w, tx);
	else
		send_tx_refuse(w, tx);
}

static int send_on_dot(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
		       unsigned code)
{
	(void)c;
	send_tx_end(w, tx, code);
	return 0;
}

static int send_on_bdat(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	send_tx_end(w, tx, code);
	/* A refused BDAT LAST may leave the transaction open (RFC 3030 2). */
	if (code / 100 != 2)
		c->need_rset = tx->mail_ok;
	return 0;
}

static int send_on_rset(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)w;
	(void)c;
	(void)tx;
	(void)code;
	return 0;
}

static int send_on_quit(struct send_worker *w, struct send_conn *c, struct send_tx *tx,
			unsigned code)
{
	(void)tx;
	(void)code;
	return send_conn_close(w, c, SEND_CLOSE_DONE);
}

/* ---- session ------------------------------------------------------------ */

static void send_sess_quit(struct send_worker *w, struct send_conn *c)
{
	send_conn_opened(w, c);
	send_out_add(c, send_cmd_quit, sizeof(send_cmd_quit) - 1);
	send_wait_push(c, SEND_WAIT_QUIT, SEND_NO_TX, 1);
	c->quitting = true;
}

static bool send_sess_may_start(struct send_worker *w, const struct send_conn *c)
{
	unsigned limit = w->run->opt->per_connection;

	return (limit == 0 || c->msgs < limit) && send_run_has_work(w->run);
}

/* The session is between transactions, or will be once the server has
 * read what is queued: start the next message, park for a token, or QUIT. */
static void send_sess_next(struct send_worker *w, struct send_conn *c)
{
	struct send_run *run = w->run;
	uint64_t seq;

	if (c->quitting || c->parked || c->state != SEND_CONN_OPEN)
		return;
	if (!send_sess_may_start(w, c)) {
		send_sess_quit(w, c);
		return;
	}
	if (c->need_rset && !c->pipelining) {
		send_out_add(c, send_cmd_rset, sizeof(send_cmd_rset) - 1);
		send_wait_push(c, SEND_WAIT_RSET, SEND_NO_TX, 1);
		c->need_rset = false;
		return; /* its reply brings us back here */
	}
	if (!c->token && !send_rate_take(w)) {
		send_rate_park(w, c);
		return;
	}
	c->token = false;
	seq = atomic_fetch_add_explicit(&run->next_seq, 1, memory_order_relaxed);
	if (run->opt->messages && seq >= run->opt->messages) {
		send_sess_quit(w, c); /* another session took the last one */
		return;
	}
	send_tx_start(w, c, seq);
}

static size_t send_size_pick(struct send_worker *w)
{
	const struct send_opts *o = w->run->opt;
	const struct send_size_class *cls = &o->sizes[0];

	if (o->nsizes > 1) {
		unsigned pct = (unsigned)(send_rand(w) % 100);

		while (pct >= cls->cum_pct)
			cls++;
	}
	if (cls->lo == cls->hi)
		return cls->lo;
	return cls->lo + send_rand(w) % (cls->hi - cls->lo + 1);
}

/* Fill in the commands of tx for its message. */
static void send_tx_commands(struct send_worker *w, struct send_conn *c, struct send_tx *tx)
{
	const struct send_run *run = w->run;
	size_t size = tx->msg.hdr_len + tx->msg.body_len;
	char *p = tx->mail;

	memcpy(p, run->mail_prefix, run->mail_prefix_len);
	p += run->mail_prefix_len;
	if (c->offers_size) { /* RFC 1870: lets the server refuse early */
		memcpy(p, " SIZE=", 6);
		p = send_put_u64(p + 6, size);
	}
	memcpy(p, "\r\n", 2);
	tx->mail_len = (size_t)(p + 2 - tx->mail);
	if (run->opt->bdat) {
		p = tx->verb;
		memcpy(p, "BDAT ", 5);
		p = send_put_u64(p + 5, size);
		memcpy(p, " LAST\r\n", 7);
		tx->verb_len = (size_t)(p + 7 - tx->verb);
	}
}

/* Start message seq on c: MAIL, and when pipelining the rest of the group. */
static void send_tx_start(struct send_worker *w, struct send_conn *c, uint64_t seq)
{
	struct send_run *run = w->run;
	const struct send_opts *o = run->opt;
	unsigned t = c->next_tx;
	struct send_tx *tx = &c->tx[t];
	int built;

	/* Alternate slots: the one before may still be queued for writing. */
	assert(!tx->active);
	c->next_tx ^= 1;
	tx->active = true;
	tx->final = tx->mail_ok = tx->body = false;
	tx->rcpt_sent = tx->rcpt_done = tx->rcpt_ok = 0;
	tx->eod_ns = 0;
	built = benchmsg_build(run->pool, o->run_id, seq, o->rcpts, send_size_pick(w), o->from,
			       o->domain, &tx->msg);
	assert(built == 0); /* send_run_init() tried the longest header */
	(void)built;
	send_tx_commands(w, c, tx);
	send_conn_opened(w, c);
	c->msgs++;
	send_stat_add(&w->st.attempted, 1);
	if (c->need_rset) {
		send_out_add(c, send_cmd_rset, sizeof(send_cmd_rset) - 1);
		send_wait_push(c, SEND_WAIT_RSET, SEND_NO_TX, 1);
		c->need_rset = false;
	}
	send_out_add(c, tx->mail, tx->mail_len);
	send_wait_push(c, SEND_WAIT_MAIL, t, 1);
	if (!c->pipelining)
		return;
	send_out_add(c, run->rcpt_block, run->rcpt_off[o->rcpts]);
	send_wait_push(c, SEND_WAIT_RCPT, t, o->rcpts);
	tx->rcpt_sent = o->rcpts;
	send_tx_verb(w, c, tx);
	/* BDAT has no 354 to wait for: the connection's last message takes
	 * QUIT in the same write (RFC 2920 3.1: QUIT may end a group). */
	if (o->bdat && o->per_connection && c->msgs >= o->per_connection)
		send_sess_quit(w, c);
}

/* ---- workers ------------------------------------------------------------ */

/* Workers split the connections, the rate and the source addresses. */
static int send_worker_init(struct send_worker *w, struct send_run *run, unsigned id)
{
	const struct send_opts *o = run->opt;
	double share;

	w->id = id;
	w->run = run;
	w->nconns = o->connections / o->threads + (id < o->connections % o->threads);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	w->conns = calloc(w->nconns, sizeof(*w->conns));
	if (!w->conns)
		return -ENOMEM;
	for (unsigned i = 0; i < w->nconns; i++)
		w->conns[i].fd = -1;
	share = (double)w->nconns / o->connections;
	if (o->rate > 0) {
		w->rate_per_ns = o->rate * share / (double)NS_PER_S;
		w->burst = fmax(1, o->rate * share * SEND_BURST_S);
		w->tokens = 1;
	}
	w->rng = ((uint64_t)o->run_id << 32 | id) * 0x9E3779B97F4A7C15ull | 1;
	if (o->source)
		w->source_next = id % ((uint64_t)o->source_hi - o->source_lo + 1);
	histogram_init(&w->latency);
	return 0;
}

static int send_worker_timeout_ms(const struct send_worker *w)
{
	uint64_t wait = w->next_sweep > w->now ? w->next_sweep - w->now : 0;

	if (w->park_head) {
		double need = w->tokens >= 1 ? 0 : (1 - w->tokens) / w->rate_per_ns;

		if ((uint64_t)need < wait)
			wait = (uint64_t)need;
	}
	return (int)((wait + NS_PER_MS - 1) / NS_PER_MS);
}

/* No more messages will start: parked sessions quit now rather than at
 * their next token.  After a stop, sessions that have no message under
 * way close now and the others get a grace period. */
static void send_worker_wind_down(struct send_worker *w)
{
	bool stop = atomic_load(&w->run->stop);

	while (w->park_head) {
		struct send_conn *c = w->park_head;

		send_rate_unpark(w, c);
		send_sess_next(w, c);
		send_conn_kick(w, c);
	}
	w->winding_down = true;
	if (!stop)
		return;
	for (unsigned i = 0; i < w->nconns; i++) {
		struct send_conn *c = &w->conns[i];

		if (c->state != SEND_CONN_IDLE && !c->tx[0].active && !c->tx[1].active &&
		    !c->quitting)
			send_conn_close(w, c, SEND_CLOSE_ABANDON);
	}
	w->stopping = true;
	w->abandon_ns =
	    w->now + (w->run->timeout_ns < SEND_GRACE_NS ? w->run->timeout_ns : SEND_GRACE_NS);
}

/* Timeouts, retries, the stop flag: a walk over the slots every
 * SEND_SWEEP_NS (cheap next to the I/O even with many thousands). */
static void send_worker_sweep(struct send_worker *w)
{
	if ((!w->winding_down && !send_run_has_work(w->run)) ||
	    (!w->stopping && atomic_load(&w->run->stop)))
		send_worker_wind_down(w);
	for (unsigned i = 0; i < w->nconns; i++) {
		struct send_conn *c = &w->conns[i];
		bool waiting = c->state == SEND_CONN_CONNECTING || c->wait_len || c->out_len;

		if (c->state == SEND_CONN_IDLE)
			send_conn_reopen(w, c);
		else if (w->stopping && w->now >= w->abandon_ns)
			send_conn_close(w, c, SEND_CLOSE_ABANDON);
		else if (waiting && w->now >= c->deadline_ns)
			send_conn_close(w, c,
					c->state == SEND_CONN_CONNECTING ? SEND_CLOSE_CONNECT
									 : SEND_CLOSE_TIMEOUT);
	}
	w->next_sweep = w->now + SEND_SWEEP_NS;
}

static void *send_worker_main(void *arg)
{
	struct send_worker *w = arg;
	struct epoll_event events[SEND_EVENTS];

	bench_pin(w->id);
	w->now = w->refill_ns = bench_now_ns();
	w->next_sweep = w->now + SEND_SWEEP_NS;
	for (unsigned i = 0; i < w->nconns; i++)
		send_conn_reopen(w, &w->conns[i]);
	while (w->open > 0 || send_run_has_work(w->run)) {
		int n = epoll_wait(w->epfd, events, SEND_EVENTS, send_worker_timeout_ms(w));

		w->now = bench_now_ns();
		for (int i = 0; i < n; i++) {
			uint32_t idx = (uint32_t)events[i].data.u64;
			struct send_conn *c = &w->conns[idx];

			if (c->gen != (uint32_t)(events[i].data.u64 >> 32) ||
			    c->state == SEND_CONN_IDLE)
				continue; /* closed earlier in this batch */
			send_conn_event(w, c, events[i].events);
			send_conn_reopen(w, c);
		}
		if (w->park_head)
			send_rate_release(w);
		if (w->now >= w->next_sweep)
			send_worker_sweep(w);
	}
	w->end_ns = bench_now_ns();
	atomic_fetch_add(&w->run->done, 1);
	return NULL;
}

/* ---- report ------------------------------------------------------------- */

static void send_progress(struct send_run *run, uint64_t now, uint64_t *last_accepted)
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

static void send_totals_sum(struct send_run *run, struct send_totals *t)
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

static void send_report_table(const struct send_run *run, const struct send_totals *t)
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

static void send_report_json(const struct send_run *run, const struct send_totals *t)
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

/* ---- main --------------------------------------------------------------- */

/* Watch the workers: progress once a second, the stop flag at --duration
 * or on SIGINT/SIGTERM (blocked in every thread, taken here). */
static void send_watch(struct send_run *run, const sigset_t *signals)
{
	const struct send_opts *o = run->opt;
	uint64_t deadline = run->start_ns + send_ns_from_s(o->duration_s);
	uint64_t next_progress = run->start_ns + NS_PER_S, last_accepted = 0;

	while (atomic_load(&run->done) < run->nworkers) {
		struct timespec ts = {.tv_nsec = (long)(100 * NS_PER_MS)};
		uint64_t now;

		if (sigtimedwait(signals, NULL, &ts) > 0)
			atomic_store(&run->stop, true);
		now = bench_now_ns();
		if (now >= deadline)
			atomic_store(&run->stop, true);
		if (!o->quiet && now >= next_progress) {
			send_progress(run, now, &last_accepted);
			next_progress += NS_PER_S;
		}
	}
}

/* Start the workers; 0, or 1 when the run cannot start. */
static int send_workers_start(struct send_run *run)
{
	const struct send_opts *o = run->opt;

	for (unsigned i = 0; i < o->threads; i++) {
		int err = send_worker_init(&run->workers[i], run, i);

		run->nworkers = i + 1;
		if (err < 0) {
			fprintf(stderr, "sluice-bench send: worker %u: %s\n", i, strerror(-err));
			return 1;
		}
	}
	run->start_ns = bench_now_ns();
	for (unsigned i = 0; i < run->nworkers; i++) {
		int err = pthread_create(&run->workers[i].thread, NULL, send_worker_main,
					 &run->workers[i]);

		if (err) {
			fprintf(stderr, "sluice-bench send: thread %u: %s\n", i, strerror(err));
			send_run_fatal(run, "could not start thread %u", i);
			for (unsigned j = 0; j < i; j++)
				pthread_join(run->workers[j].thread, NULL);
			run->nworkers = 0; /* joined */
			return 1;
		}
	}
	return 0;
}

int bench_send_main(int argc, char **argv)
{
	static struct send_opts opt; /* static: the workers point at it */
	struct send_run run;
	struct send_totals *totals;
	sigset_t signals;
	int rc;

	rc = send_opts_parse(&opt, argc, argv);
	if (rc)
		return rc == 1 ? 0 : rc;
	if (send_nofile_raise(&opt) < 0)
		return 1;
	rc = send_run_init(&run, &opt);
	if (rc) {
		send_run_fini(&run);
		return rc;
	}
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (send_workers_start(&run)) {
		send_run_fini(&run);
		return 1;
	}
	send_watch(&run, &signals);
	for (unsigned i = 0; i < run.nworkers; i++)
		pthread_join(run.workers[i].thread, NULL);
	if (run.fatal[0]) {
		fprintf(stderr, "sluice-bench send: %s\n", run.fatal);
		send_run_fini(&run);
		return 1;
	}
	totals = malloc(sizeof(*totals));
	if (!totals) {
		send_run_fini(&run);
		return 1;
	}
	send_totals_sum(&run, totals);
	if (opt.json)
		send_report_json(&run, totals);
	else
		send_report_table(&run, totals);
	fflush(stdout);
	rc = totals->refused || totals->failed ? 3 : 0;
	for (unsigned e = 0; e < SEND_ERRS; e++)
		if (totals->errors[e])
			rc = 3; /* a session that failed before its first message */
	free(totals);
	send_run_fini(&run);
	return rc;
}
