/*
 * NAME
 *	sink: sluice-bench sink, a fast verifying SMTP server with fault
 *	injection that stands in for a remote MX (see bench/README.md).
 *
 * DESCRIPTION
 *	Owns the sink's threads, sockets, connections, fault choices and
 *	counters.  The SMTP dialogue is sluice's own engine (smtp_engine.h):
 *	one engine per connection, its events answered on the spot.  Every
 *	message accepted is verified (benchmsg_verify) and each of its
 *	(run, seq, recipient) copies recorded in a shared seen-set.
 *
 *	Threads: T workers, each pinned, each with its own SO_REUSEPORT
 *	listener and epoll loop; connections never move between workers.
 *	Nothing is shared on the hot path but the seen-set (sharded locks).
 *	Counters are per worker, written by their worker alone with relaxed
 *	atomic stores and summed by the main thread, which also waits for
 *	SIGINT/SIGTERM (sigtimedwait), the --duration and the 0.2 s stats tick.
 *
 *	Holds: a connection's replies may be held (greeting delay, latency)
 *	and its input left unread (latency, tarpit) until a deadline; each
 *	worker keeps those deadlines in a binary min-heap and sleeps in
 *	epoll_wait until the earliest.
 *
 *	Faults are drawn from a per-worker PRNG seeded by --seed and the
 *	worker index, so each worker's sequence of choices is reproducible
 *	(which connection lands on which worker is the kernel's choice).
 *
 * DIAGNOSTICS
 *	Usage errors: a message on stderr, exit 2.  Start-up failures (bind,
 *	memory): a message on stderr, exit 1.  Runtime environment trouble
 *	(accept out of descriptors) is reported once per worker and retried.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/benchmsg.h"
#include "dataplane/smtp_engine.h"

/* ------------------------------------------------------------ limits */

/* Listen backlog per worker: a burst of one-message connections must not
 * overflow it while the worker is busy. */
#define SINK_BACKLOG 4096
/* Per-worker receive buffer; one recv() fills at most this much. */
#define SINK_RBUF_SIZE (64u << 10)
/* Reads per connection per turn before the others get theirs. */
#define SINK_READ_BUDGET 16
/* Connections accepted per listener wake-up before serving the others. */
#define SINK_ACCEPT_BURST 64
/* epoll events per wait. */
#define SINK_EVENTS 256
/* Pending replies beyond which input is left unfed until they are sent. */
#define SINK_OUT_HIGH (64u << 10)
/* Input fed to the engine at once, at most: the replies to 16 KiB of
 * commands (25 octets of reply per octet of "EHLO a" at worst) stay far
 * below the engine's 1 MiB output limit. */
#define SINK_FEED_SLICE (16u << 10)
/* After the last reply, how long a connection drains the client's input
 * before it is closed anyway. */
#define SINK_LINGER_NS (2000u * 1000 * 1000)
/* Accepting pauses this long when the process is out of descriptors. */
#define SINK_ACCEPT_PAUSE_NS (100u * 1000 * 1000)
/* Stats file period. */
#define SINK_STATS_PERIOD_NS (200u * 1000 * 1000)
/* --fail rules at most. */
#define SINK_FAULTS_MAX 32
/* Bounds of the delay options (ms) and --threads. */
#define SINK_DELAY_MAX_MS 3600000u
#define SINK_THREADS_MAX 1024u
/* The engine settings the contract fixes. */
#define SINK_MAX_RECIPIENTS 1000
#define SINK_MAX_ERRORS 20

#define SINK_NO_TIMER UINT32_MAX
#define NS_PER_MS 1000000u

/* ------------------------------------------------------------ types */

/* Where a fault strikes (--fail STAGE, --drop). */
enum sink_stage {
	SINK_STAGE_CONNECT = 0, /* the greeting */
	SINK_STAGE_MAIL,	/* the reply to MAIL FROM */
	SINK_STAGE_RCPT,	/* the reply to RCPT TO */
	SINK_STAGE_DATA,	/* the reply at the end of data */
	SINK_STAGE_COUNT,	/* also: no stage (no drop planned) */
};

/* The counters of the stats, in the order of the JSON. */
enum sink_counter {
	SINK_C_CONNECTIONS = 0, /* connections accepted */
	SINK_C_TRANSACTIONS,	/* MAIL FROM answered 250 */
	SINK_C_MESSAGES,	/* messages answered 250 at the end of data */
	SINK_C_RECIPIENTS,	/* their recipients */
	SINK_C_UNIQUE,		/* (run, seq, rcpt) copies seen for the first time */
	SINK_C_DUPLICATES,	/* copies seen before */
	SINK_C_CORRUPT,		/* accepted messages failing verification */
	SINK_C_FOREIGN,		/* accepted messages not ours (no header, recipient not r<K>) */
	SINK_C_OTHER_RUNS,	/* intact copies of another run than --run */
	SINK_C_BYTES,		/* octets of accepted messages (headers and body) */
	SINK_C_FAULT,		/* + enum sink_stage: --fail replies given at that stage */
	SINK_C_DROP = SINK_C_FAULT + SINK_STAGE_COUNT, /* connections cut by --drop */
	SINK_C_COUNT,
};

/* One --fail rule. */
struct sink_fault {
	enum sink_stage stage;
	int code;      /* 400..599 */
	double share;  /* fraction of the stage's decisions that get it */
	char text[64]; /* reply text, with the enhanced code of the class */
};

/* The command line; read-only once the workers run. */
struct sink_opts {
	struct sockaddr_storage listen_addr;
	socklen_t listen_len;
	const char *listen_text;
	unsigned threads;
	const char *stats_path;
	bool json;
	double duration_s; /* 0: until a signal */
	uint64_t max_size;
	struct sink_fault faults[SINK_FAULTS_MAX];
	unsigned nfaults;
	bool stage_faulty[SINK_STAGE_COUNT]; /* some rule names this stage */
	double drop;
	uint64_t greeting_delay_ns;
	uint64_t latency_ns;
	uint64_t tarpit_ns;
	uint64_t seed;
	bool run_set; /* --run given: only that run's copies count */
	uint32_t run; /* its id */
	const char *hostname;
	struct smtp_engine_cfg engine_cfg;
};

/* Intrusive doubly linked list; a node not in a list has next == NULL. */
struct sink_link {
	struct sink_link *prev, *next;
};

/* Connection flags. */
#define SINK_CONN_F_READABLE 0x01  /* input may be waiting (edge seen, no EAGAIN since) */
#define SINK_CONN_F_WRITABLE 0x02  /* the socket took our last write whole */
#define SINK_CONN_F_RDHUP 0x04	   /* the peer shut its side: read until recv says 0 */
#define SINK_CONN_F_EOF 0x08	   /* recv said 0: answer what was read, then close */
#define SINK_CONN_F_CLOSING 0x10   /* the engine said close: send the replies, then close */
#define SINK_CONN_F_DROP 0x20	   /* --drop struck: close now, no reply */
#define SINK_CONN_F_OUT_ARMED 0x40 /* EPOLLOUT is in the epoll interest set */
#define SINK_CONN_F_LINGER 0x80	   /* replies sent, write side shut: drain input, then close */

/*
 * One client connection, owned by one worker.  Invariants: read_at >=
 * write_at (input waits while replies are held); in != NULL only with
 * in_off < in_len; the engine is never left paused on an event outside
 * conn_feed(), except under SINK_CONN_F_DROP.
 */
struct sink_conn {
	struct sink_link link;	 /* in the worker's conns */
	struct sink_link ready;	 /* in the worker's ready list: a turn owed */
	struct smtp_engine *eng; /* the session */
	uint8_t *in;		 /* input read but not fed yet, or NULL */
	uint32_t in_len;	 /* octets in in */
	uint32_t in_off;	 /* octets of in already fed */
	uint64_t write_at;	 /* replies held until then (ns) */
	uint64_t read_at;	 /* input left alone until then (ns) */
	uint64_t deadline;	 /* the timer's deadline while armed (ns) */
	uint64_t linger_at;	 /* SINK_CONN_F_LINGER: close by then (ns) */
	uint32_t heap_idx;	 /* index in the worker's heap, SINK_NO_TIMER when unarmed */
	int fd;
	uint8_t flags;	    /* SINK_CONN_F_* */
	uint8_t drop_stage; /* enum sink_stage where --drop cuts it, or SINK_STAGE_COUNT */
};

/* One worker thread and everything it owns. */
struct sink_worker {
	/* Written by the worker only, read by the main thread (relaxed). */
	uint64_t counters[SINK_C_COUNT];
	unsigned id;
	int listen_fd;
	int epfd;
	int stop_fd; /* shared eventfd, never read: readable means stop */
	const struct sink_opts *opts;
	struct benchmsg_seen *seen;
	uint64_t rng;		   /* PRNG state of the fault choices */
	uint64_t now;		   /* clock at the last wake-up (ns) */
	uint64_t accept_resume_at; /* accepting paused until then, 0 when not */
	bool stopping;
	bool warned_accept;
	struct sink_link conns;	 /* every connection */
	struct sink_link ready;	 /* connections owed a turn */
	struct sink_conn **heap; /* timer min-heap by deadline */
	uint32_t heap_len;
	uint32_t heap_cap;
	uint8_t *rbuf; /* SINK_RBUF_SIZE */
	pthread_t thread;
	bool started;
} __attribute__((aligned(64)));

/* ------------------------------------------------------------ contents */

static const char *sink_stage_str(enum sink_stage s);
static int sink_opts_parse(struct sink_opts *o, int argc, char **argv);
static int sink_run(const struct sink_opts *o);

static void link_init(struct sink_link *head);
static void link_add_tail(struct sink_link *head, struct sink_link *n);
static void link_del(struct sink_link *n);

static void sink_timer_set(struct sink_worker *w, struct sink_conn *c, uint64_t deadline);
static void sink_timer_cancel(struct sink_worker *w, struct sink_conn *c);
static uint64_t sink_timer_next(const struct sink_worker *w);

static uint64_t sink_rand(struct sink_worker *w);
static double sink_rand_unit(struct sink_worker *w);
static const struct sink_fault *sink_fault_pick(struct sink_worker *w, enum sink_stage stage);
static void sink_count(struct sink_worker *w, enum sink_counter k, uint64_t n);

static void sink_accept_burst(struct sink_worker *w);
static void sink_conn_open(struct sink_worker *w, int fd, const struct sockaddr_storage *ss);
static void sink_conn_greet(struct sink_worker *w, struct sink_conn *c);
static void conn_run(struct sink_worker *w, struct sink_conn *c);
static bool conn_step(struct sink_worker *w, struct sink_conn *c, int *budget);
static int conn_flush(struct sink_worker *w, struct sink_conn *c);
static int conn_read(struct sink_worker *w, struct sink_conn *c);
static bool conn_linger(struct sink_worker *w, struct sink_conn *c, int *budget);
static size_t conn_feed(struct sink_worker *w, struct sink_conn *c, const uint8_t *buf, size_t len);
static enum smtp_rc conn_answer(struct sink_worker *w, struct sink_conn *c);
static void sink_message_record(struct sink_worker *w, const struct smtp_event *ev);
static void conn_close(struct sink_worker *w, struct sink_conn *c);

static void sink_stats_sum(struct sink_worker *workers, unsigned n, uint64_t *sum);
static int sink_stats_json(const uint64_t *sum, char *buf, size_t cap);

/* ------------------------------------------------------------ names */

static const char *const sink_stage_names[SINK_STAGE_COUNT] = {
    [SINK_STAGE_CONNECT] = "connect",
    [SINK_STAGE_MAIL] = "mail",
    [SINK_STAGE_RCPT] = "rcpt",
    [SINK_STAGE_DATA] = "data",
};

static const char *sink_stage_str(enum sink_stage s)
{
	return (unsigned)s < SINK_STAGE_COUNT ? sink_stage_names[s] : "none";
}

static const char sink_usage[] =
    "usage: sluice-bench sink [options]\n"
    "  --listen ADDR:PORT          where to listen (127.0.0.1:2526)\n"
    "  --threads T                 event-loop threads, SO_REUSEPORT each (cores)\n"
    "  --stats FILE                write JSON stats to FILE every 0.2 s and at exit\n"
    "  --json                      final stats as JSON on stdout\n"
    "  --duration S                exit after S seconds (else at SIGTERM/SIGINT)\n"
    "  --max-size N                SIZE offered and enforced (64m)\n"
    "  --fail STAGE:CODE:FRACTION  answer CODE (4xx/5xx) to FRACTION at STAGE\n"
    "                              (connect, mail, rcpt, data); repeatable\n"
    "  --drop FRACTION             close FRACTION of connections without a reply,\n"
    "                              at a random stage\n"
    "  --greeting-delay MS         wait before the greeting\n"
    "  --latency MS                hold every batch of replies MS\n"
    "  --tarpit MS                 replies after the greeting one at a time, MS apart\n"
    "  --seed N                    seed of the fault choices (1)\n"
    "  --run ID                    count only run ID's copies (others: other_runs)\n"
    "  --hostname NAME             name in the greeting (sink.sluice-bench.test)\n";

static const char sink_usage_hint[] = "usage: sluice-bench sink [options]   (--help lists them)\n";

/* ------------------------------------------------------------ options */

static int sink_usage_error(const char *fmt, const char *arg)
{
	fputs("sluice-bench sink: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\n", stderr);
	fputs(sink_usage_hint, stderr);
	return 2;
}

/* A fraction in [0, 1]: "0.05". */
static bool parse_fraction(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !isfinite(v) || v < 0 || v > 1)
		return false;
	*out = v;
	return true;
}

static bool parse_ms(const char *s, uint64_t *ns)
{
	uint64_t ms;

	if (bench_parse_u64(s, 0, SINK_DELAY_MAX_MS, &ms) < 0)
		return false;
	*ns = ms * NS_PER_MS;
	return true;
}

static bool parse_stage(const char *s, size_t n, enum sink_stage *out)
{
	for (unsigned i = 0; i < SINK_STAGE_COUNT; i++) {
		const char *name = sink_stage_str((enum sink_stage)i);

		if (strlen(name) == n && strncmp(s, name, n) == 0) {
			*out = (enum sink_stage)i;
			return true;
		}
	}
	return false;
}

/* --fail STAGE:CODE:FRACTION.  The text carries the enhanced status code
 * class of CODE (RFC 3463: 4.x.x with 4yz, 5.x.x with 5yz). */
static bool parse_fail(const char *s, struct sink_opts *o)
{
	const char *c1 = strchr(s, ':'), *c2;
	char code_text[8];
	uint64_t code;
	struct sink_fault *f;

	if (!c1 || o->nfaults == SINK_FAULTS_MAX)
		return false;
	c2 = strchr(c1 + 1, ':');
	if (!c2 || (size_t)(c2 - c1 - 1) >= sizeof(code_text))
		return false;
	f = &o->faults[o->nfaults];
	memcpy(code_text, c1 + 1, (size_t)(c2 - c1 - 1));
	code_text[c2 - c1 - 1] = '\0';
	if (!parse_stage(s, (size_t)(c1 - s), &f->stage) ||
	    bench_parse_u64(code_text, 0, 599, &code) < 0 || code < 400 ||
	    !parse_fraction(c2 + 1, &f->share))
		return false;
	f->code = (int)code;
	snprintf(f->text, sizeof(f->text), "%d.3.0 sink: injected fault", f->code / 100);
	o->stage_faulty[f->stage] = true;
	o->nfaults++;
	return true;
}

/* The greeting name must not break the reply line. */
static bool hostname_valid(const char *s)
{
	if (*s == '\0' || strlen(s) > 255)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static void sink_opts_defaults(struct sink_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->listen_text = "127.0.0.1:2526";
	o->threads = bench_cores();
	o->max_size = 64u << 20;
	o->seed = 1;
	o->hostname = "sink.sluice-bench.test";
}

/* One option; returns -1 when it was fine, else the exit status. */
static int sink_opt_apply(struct sink_opts *o, int opt, const char *arg)
{
	uint64_t v;
	char *end;

	switch (opt) {
	case 'l':
		o->listen_text = arg;
		return -1;
	case 't':
		if (bench_parse_u64(arg, 0, SINK_THREADS_MAX, &v) < 0 || v == 0)
			return sink_usage_error("--threads wants 1..1024, not '%s'", arg);
		o->threads = (unsigned)v;
		return -1;
	case 's':
		o->stats_path = arg;
		return -1;
	case 'j':
		o->json = true;
		return -1;
	case 'd':
		o->duration_s = strtod(arg, &end);
		if (end == arg || *end != '\0' || !isfinite(o->duration_s) || o->duration_s <= 0 ||
		    o->duration_s > 1e7)
			return sink_usage_error("--duration wants seconds, not '%s'", arg);
		return -1;
	case 'm':
		if (bench_parse_size(arg, &o->max_size) < 0)
			return sink_usage_error("--max-size wants a size like 64m, not '%s'", arg);
		return -1;
	case 'f':
		if (!parse_fail(arg, o))
			return sink_usage_error(
			    "--fail wants STAGE:CODE:FRACTION (connect|mail|rcpt|data, "
			    "400-599, 0..1; at most 32), not '%s'",
			    arg);
		return -1;
	case 'D':
		if (!parse_fraction(arg, &o->drop))
			return sink_usage_error("--drop wants a fraction 0..1, not '%s'", arg);
		return -1;
	case 'g':
		if (!parse_ms(arg, &o->greeting_delay_ns))
			return sink_usage_error("--greeting-delay wants milliseconds, not '%s'",
						arg);
		return -1;
	case 'L':
		if (!parse_ms(arg, &o->latency_ns))
			return sink_usage_error("--latency wants milliseconds, not '%s'", arg);
		return -1;
	case 'T':
		if (!parse_ms(arg, &o->tarpit_ns))
			return sink_usage_error("--tarpit wants milliseconds, not '%s'", arg);
		return -1;
	case 'S':
		if (bench_parse_u64(arg, 0, UINT64_MAX, &o->seed) < 0)
			return sink_usage_error("--seed wants a number, not '%s'", arg);
		return -1;
	case 'R':
		if (bench_parse_run(arg, &o->run) < 0)
			return sink_usage_error("--run wants 8 hex digits, not '%s'", arg);
		o->run_set = true;
		return -1;
	case 'H':
		if (!hostname_valid(arg))
			return sink_usage_error("--hostname wants a name without spaces, not '%s'",
						arg);
		o->hostname = arg;
		return -1;
	case 'h':
		fputs(sink_usage, stdout);
		return 0;
	default:
		fputs(sink_usage_hint, stderr);
		return 2;
	}
}

/* Parse the command line into o.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 for a usage error). */
static int sink_opts_parse(struct sink_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"threads", required_argument, NULL, 't'},
	    {"stats", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"duration", required_argument, NULL, 'd'},
	    {"max-size", required_argument, NULL, 'm'},
	    {"fail", required_argument, NULL, 'f'},
	    {"drop", required_argument, NULL, 'D'},
	    {"greeting-delay", required_argument, NULL, 'g'},
	    {"latency", required_argument, NULL, 'L'},
	    {"tarpit", required_argument, NULL, 'T'},
	    {"seed", required_argument, NULL, 'S'},
	    {"run", required_argument, NULL, 'R'},
	    {"hostname", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt, r;

	sink_opts_defaults(o);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		r = sink_opt_apply(o, opt, optarg);
		if (r >= 0)
			return r;
	}
	if (optind != argc)
		return sink_usage_error("unexpected argument '%s'", argv[optind]);
	if (bench_parse_hostport(o->listen_text, &o->listen_addr, &o->listen_len) < 0)
		return sink_usage_error("--listen wants ADDR:PORT or [V6]:PORT, not '%s'",
					o->listen_text);
	o->engine_cfg = (struct smtp_engine_cfg){
	    .hostname = o->hostname,
	    .max_message_size = o->max_size,
	    .max_recipients = SINK_MAX_RECIPIENTS,
	    .max_errors = SINK_MAX_ERRORS,
	    .lenient_bare_lf = false,
	};
	return -1;
}

/* ------------------------------------------------------------ lists */

static void link_init(struct sink_link *head)
{
	head->prev = head->next = head;
}

static void link_add_tail(struct sink_link *head, struct sink_link *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static void link_del(struct sink_link *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

#define sink_conn_of(p, member)                                                                    \
	((struct sink_conn *)(void *)((char *)(p)-offsetof(struct sink_conn, member)))

/* ------------------------------------------------------------ timers */

static void heap_place(struct sink_worker *w, uint32_t i, struct sink_conn *c)
{
	w->heap[i] = c;
	c->heap_idx = i;
}

static void heap_up(struct sink_worker *w, uint32_t i)
{
	struct sink_conn *c = w->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (w->heap[parent]->deadline <= c->deadline)
			break;
		heap_place(w, i, w->heap[parent]);
		i = parent;
	}
	heap_place(w, i, c);
}

static void heap_down(struct sink_worker *w, uint32_t i)
{
	struct sink_conn *c = w->heap[i];

	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= w->heap_len)
			break;
		if (child + 1 < w->heap_len &&
		    w->heap[child + 1]->deadline < w->heap[child]->deadline)
			child++;
		if (c->deadline <= w->heap[child]->deadline)
			break;
		heap_place(w, i, w->heap[child]);
		i = child;
	}
	heap_place(w, i, c);
}

static bool heap_grow(struct sink_worker *w)
{
	uint32_t cap = w->heap_cap ? w->heap_cap * 2 : 1024;
	struct sink_conn **h = realloc(w->heap, (size_t)cap * sizeof(*h));

	if (!h)
		return false;
	w->heap = h;
	w->heap_cap = cap;
	return true;
}

/* Arm (or move) c's timer.  Out of memory for the heap, the hold is cut
 * short instead: the connection is served in the next round. */
static void sink_timer_set(struct sink_worker *w, struct sink_conn *c, uint64_t deadline)
{
	if (c->heap_idx == SINK_NO_TIMER) {
		if (w->heap_len == w->heap_cap && !heap_grow(w)) {
			c->write_at = c->read_at = 0;
			if (!c->ready.next)
				link_add_tail(&w->ready, &c->ready);
			return;
		}
		c->deadline = deadline;
		heap_place(w, w->heap_len++, c);
		heap_up(w, c->heap_idx);
		return;
	}
	c->deadline = deadline;
	heap_up(w, c->heap_idx);
	heap_down(w, c->heap_idx);
}

static void sink_timer_cancel(struct sink_worker *w, struct sink_conn *c)
{
	uint32_t i = c->heap_idx;
	struct sink_conn *last;

	if (i == SINK_NO_TIMER)
		return;
	c->heap_idx = SINK_NO_TIMER;
	last = w->heap[--w->heap_len];
	if (last == c)
		return;
	heap_place(w, i, last);
	heap_up(w, i);
	heap_down(w, last->heap_idx);
}

static uint64_t sink_timer_next(const struct sink_worker *w)
{
	return w->heap_len ? w->heap[0]->deadline : UINT64_MAX;
}

/* Arm the timer for the next hold that ends, or disarm it. */
static void conn_timer_update(struct sink_worker *w, struct sink_conn *c)
{
	if (c->flags & SINK_CONN_F_LINGER)
		sink_timer_set(w, c, c->linger_at);
	else if (c->write_at > w->now)
		sink_timer_set(w, c, c->write_at);
	else if (c->read_at > w->now)
		sink_timer_set(w, c, c->read_at);
	else
		sink_timer_cancel(w, c);
}

/* Serve every connection whose hold has ended. */
static void sink_timers_run(struct sink_worker *w)
{
	while (w->heap_len && w->heap[0]->deadline <= w->now) {
		struct sink_conn *c = w->heap[0];

		sink_timer_cancel(w, c);
		conn_run(w, c);
	}
}

/* ------------------------------------------------------------ faults, counters */

/* splitmix64: any seed, including 0, gives a good sequence. */
static uint64_t sink_rand(struct sink_worker *w)
{
	uint64_t z = (w->rng += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double sink_rand_unit(struct sink_worker *w)
{
	return (double)(sink_rand(w) >> 11) * 0x1.0p-53;
}

/* The --fail rule that strikes this decision at stage, or NULL.  One draw
 * per decision; a stage's rules share [0, 1) in command-line order, so
 * their fractions add up. */
static const struct sink_fault *sink_fault_pick(struct sink_worker *w, enum sink_stage stage)
{
	const struct sink_opts *o = w->opts;
	double u, acc = 0;

	if (!o->stage_faulty[stage])
		return NULL;
	u = sink_rand_unit(w);
	for (unsigned i = 0; i < o->nfaults; i++) {
		if (o->faults[i].stage != stage)
			continue;
		acc += o->faults[i].share;
		if (u < acc)
			return &o->faults[i];
	}
	return NULL;
}

/* Only the worker writes its counters: a relaxed load and store (no
 * locked instruction) is enough for the main thread to read whole values. */
static void sink_count(struct sink_worker *w, enum sink_counter k, uint64_t n)
{
	uint64_t *p = &w->counters[k];

	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ accepting */

static void sink_accept_pause(struct sink_worker *w, int err)
{
	struct epoll_event ev = {.events = 0, .data.ptr = &w->listen_fd};

	if (!w->warned_accept) {
		fprintf(stderr,
			"sluice-bench sink: worker=%u accept: %s; pausing 100 ms (raise "
			"ulimit -n)\n",
			w->id, strerror(err));
		w->warned_accept = true;
	}
	(void)epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->listen_fd, &ev);
	w->accept_resume_at = w->now + SINK_ACCEPT_PAUSE_NS;
}

static void sink_accept_resume(struct sink_worker *w)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->listen_fd};

	if (!w->accept_resume_at || w->now < w->accept_resume_at)
		return;
	w->accept_resume_at = 0;
	(void)epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->listen_fd, &ev);
}

/* Accept what the listener holds, up to a burst (it is level-triggered:
 * the rest raises the next wake-up). */
static void sink_accept_burst(struct sink_worker *w)
{
	for (int i = 0; i < SINK_ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(w->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			sink_conn_open(w, fd, &ss);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			sink_accept_pause(w, errno);
			return;
		}
		/* ECONNABORTED, EINTR, EPROTO, ...: that one is gone, go on. */
	}
}

static void sink_addr_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const void *a = ss->ss_family == AF_INET6
			    ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
			    : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (!inet_ntop(ss->ss_family, a, buf, (socklen_t)cap))
		snprintf(buf, cap, "unknown");
}

/* A new connection: plan its --drop, register it and greet it (or not). */
static void sink_conn_open(struct sink_worker *w, int fd, const struct sockaddr_storage *ss)
{
	const struct sink_opts *o = w->opts;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET};
	char addr[INET6_ADDRSTRLEN];
	struct sink_conn *c;

	sink_count(w, SINK_C_CONNECTIONS, 1);
	c = calloc(1, sizeof(*c));
	sink_addr_text(ss, addr, sizeof(addr));
	if (c)
		c->eng = smtp_engine_new(&o->engine_cfg, addr);
	if (!c || !c->eng) {
		free(c);
		close(fd); /* out of memory: the client retries */
		return;
	}
	c->fd = fd;
	c->heap_idx = SINK_NO_TIMER;
	c->flags = SINK_CONN_F_WRITABLE; /* a new socket takes a greeting */
	c->drop_stage = SINK_STAGE_COUNT;
	if (o->drop > 0 && sink_rand_unit(w) < o->drop)
		c->drop_stage = (uint8_t)((sink_rand(w) >> 32) % SINK_STAGE_COUNT);
	link_add_tail(&w->conns, &c->link);
	ev.data.ptr = c;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		conn_close(w, c);
		return;
	}
	sink_conn_greet(w, c);
}

/* Queue the greeting or its fault and hold it for --greeting-delay and
 * --latency (a distant receiver's greeting is late too). */
static void sink_conn_greet(struct sink_worker *w, struct sink_conn *c)
{
	const struct sink_opts *o = w->opts;
	const struct sink_fault *f;
	char text[300];

	if (c->drop_stage == SINK_STAGE_CONNECT) {
		sink_count(w, SINK_C_DROP, 1);
		conn_close(w, c);
		return;
	}
	f = sink_fault_pick(w, SINK_STAGE_CONNECT);
	if (f) {
		sink_count(w, SINK_C_FAULT + SINK_STAGE_CONNECT, 1);
		snprintf(text, sizeof(text), "%s sink: injected fault", o->hostname);
		smtp_engine_refuse(c->eng, f->code, text);
		c->flags |= SINK_CONN_F_CLOSING;
	} else {
		smtp_engine_start(c->eng);
	}
	c->write_at = c->read_at = w->now + o->greeting_delay_ns + o->latency_ns;
	conn_run(w, c);
}

/* ------------------------------------------------------------ connections */

static void conn_on_events(struct sink_worker *w, struct sink_conn *c, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= SINK_CONN_F_READABLE;
	if (events & (EPOLLRDHUP | EPOLLHUP))
		c->flags |= SINK_CONN_F_RDHUP;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->flags |= SINK_CONN_F_WRITABLE;
	conn_run(w, c);
}

/* Serve c as far as it can go now, then arm its timer. */
static void conn_run(struct sink_worker *w, struct sink_conn *c)
{
	int budget = SINK_READ_BUDGET;

	if (!conn_step(w, c, &budget))
		return; /* closed */
	conn_timer_update(w, c);
}

/*
 * Send replies, feed buffered input, read more, until something has to
 * wait: a hold, the socket (EAGAIN either way), or the read budget (then
 * c goes on the ready list).  Returns false when c was closed and freed.
 */
static bool conn_step(struct sink_worker *w, struct sink_conn *c, int *budget)
{
	for (;;) {
		int r;

		if (c->flags & SINK_CONN_F_DROP)
			break;
		if (c->flags & SINK_CONN_F_LINGER)
			return conn_linger(w, c, budget);
		if (w->now < c->write_at)
			return true;
		r = conn_flush(w, c);
		if (r < 0 && r != -EAGAIN)
			break;
		if (c->flags & SINK_CONN_F_CLOSING) {
			if (r != 0)
				return true; /* EPOLLOUT brings us back */
			if (c->flags & SINK_CONN_F_EOF)
				break; /* all input read: a plain close */
			/* Input may still come (a 421 cut a pipelined group
			 * short): closing with it unread would answer with a
			 * reset and destroy the replies in flight. */
			if (shutdown(c->fd, SHUT_WR) < 0)
				break;
			c->flags |= SINK_CONN_F_LINGER;
			c->linger_at = w->now + SINK_LINGER_NS;
			continue;
		}
		/* The client reads its replies before we read more of its input. */
		if (r == -EAGAIN || w->now < c->read_at)
			return true;
		if (c->in) {
			size_t k = conn_feed(w, c, c->in + c->in_off, c->in_len - c->in_off);

			c->in_off += (uint32_t)k;
			if (c->in_off == c->in_len) {
				free(c->in);
				c->in = NULL;
				c->in_len = c->in_off = 0;
			}
			continue;
		}
		if (c->flags & SINK_CONN_F_EOF)
			break; /* everything it sent is answered */
		if (!(c->flags & SINK_CONN_F_READABLE))
			return true;
		if ((*budget)-- == 0) {
			if (!c->ready.next)
				link_add_tail(&w->ready, &c->ready);
			return true;
		}
		if (conn_read(w, c) < 0)
			break;
	}
	conn_close(w, c);
	return false;
}

/* Read and drop input until the client closes, the linger ends, or the
 * read budget is spent (then c goes on the ready list).  Returns false
 * when c was closed and freed. */
static bool conn_linger(struct sink_worker *w, struct sink_conn *c, int *budget)
{
	while (w->now < c->linger_at) {
		ssize_t n;

		if ((*budget)-- == 0) {
			if (!c->ready.next)
				link_add_tail(&w->ready, &c->ready);
			return true;
		}
		n = recv(c->fd, w->rbuf, SINK_RBUF_SIZE, 0);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true; /* the next edge or the linger timer */
		break;		     /* the client closed, or the connection failed */
	}
	conn_close(w, c);
	return false;
}

/* Ask for EPOLLOUT only once a write fell short: most connections never
 * need it, and registering it up front costs a wake-up per connection. */
static int conn_want_write(struct sink_worker *w, struct sink_conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = c};

	c->flags &= (uint8_t)~SINK_CONN_F_WRITABLE;
	if (c->flags & SINK_CONN_F_OUT_ARMED)
		return -EAGAIN;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -errno;
	c->flags |= SINK_CONN_F_OUT_ARMED;
	return -EAGAIN;
}

/* Send pending replies.  0 when none are left, -EAGAIN when the socket is
 * full, another -errno when the peer is gone. */
static int conn_flush(struct sink_worker *w, struct sink_conn *c)
{
	for (;;) {
		size_t len;
		const uint8_t *out = smtp_engine_output(c->eng, &len);
		ssize_t n;

		if (!len)
			return 0;
		if (!(c->flags & SINK_CONN_F_WRITABLE))
			return -EAGAIN;
		n = send(c->fd, out, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return conn_want_write(w, c);
			if (errno == EINTR)
				continue;
			return -errno;
		}
		smtp_engine_output_consumed(c->eng, (size_t)n);
	}
}

/* Read once and feed it; what the engine does not take now is kept.
 * Returns 0, or -errno when the connection is to be closed. */
static int conn_read(struct sink_worker *w, struct sink_conn *c)
{
	ssize_t n = recv(c->fd, w->rbuf, SINK_RBUF_SIZE, 0);
	size_t k;

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->flags &= (uint8_t)~SINK_CONN_F_READABLE;
			return 0;
		}
		return errno == EINTR ? 0 : -errno;
	}
	if (n == 0) {
		c->flags = (uint8_t)((c->flags & ~SINK_CONN_F_READABLE) | SINK_CONN_F_EOF);
		return 0;
	}
	/* A short read emptied the socket; later data raises a new edge, so
	 * the recv that would only say EAGAIN is saved.  Not after a FIN: only
	 * recv tells the end of the stream. */
	if ((size_t)n < SINK_RBUF_SIZE && !(c->flags & SINK_CONN_F_RDHUP))
		c->flags &= (uint8_t)~SINK_CONN_F_READABLE;
	k = conn_feed(w, c, w->rbuf, (size_t)n);
	if (k == (size_t)n || (c->flags & (SINK_CONN_F_CLOSING | SINK_CONN_F_DROP)))
		return 0;
	c->in = malloc((size_t)n - k);
	if (!c->in)
		return -ENOMEM;
	memcpy(c->in, w->rbuf + k, (size_t)n - k);
	c->in_len = (uint32_t)((size_t)n - k);
	c->in_off = 0;
	return 0;
}

/* Input goes to the engine at most SINK_FEED_SLICE at a time, so that
 * SINK_OUT_HIGH is checked between slices; with --tarpit one line at a
 * time, so that each reply can be caught as it is made. */
static size_t conn_slice(const struct sink_opts *o, const uint8_t *p, size_t n)
{
	const uint8_t *lf;

	if (!o->tarpit_ns)
		return n < SINK_FEED_SLICE ? n : SINK_FEED_SLICE;
	lf = memchr(p, '\n', n);
	return lf ? (size_t)(lf - p) + 1 : n;
}

/* Replies were made: hold them for --latency, and the input after them
 * for --tarpit as well. */
static void conn_hold(struct sink_worker *w, struct sink_conn *c)
{
	const struct sink_opts *o = w->opts;
	uint64_t in_hold = o->tarpit_ns > o->latency_ns ? o->tarpit_ns : o->latency_ns;

	c->write_at = w->now + o->latency_ns;
	c->read_at = w->now + in_hold;
}

/*
 * Feed input to the engine and answer its events.  Returns how many octets
 * were consumed: all, unless the session is closing or dropped, the tarpit
 * caught a reply, or the replies piled up past SINK_OUT_HIGH.
 */
static size_t conn_feed(struct sink_worker *w, struct sink_conn *c, const uint8_t *buf, size_t len)
{
	const struct sink_opts *o = w->opts;
	size_t off = 0, before, now_len;
	uint8_t stop = SINK_CONN_F_CLOSING | SINK_CONN_F_DROP;

	smtp_engine_output(c->eng, &before);
	while (off < len && !(c->flags & stop)) {
		enum smtp_rc rc;
		size_t n =
		    smtp_engine_feed(c->eng, buf + off, conn_slice(o, buf + off, len - off), &rc);

		off += n;
		if (rc == SMTP_RC_EVENT)
			rc = conn_answer(w, c);
		if (rc == SMTP_RC_CLOSE)
			c->flags |= SINK_CONN_F_CLOSING;
		smtp_engine_output(c->eng, &now_len);
		if (o->tarpit_ns && now_len > before)
			break;
		if (now_len > SINK_OUT_HIGH)
			break;
	}
	smtp_engine_output(c->eng, &now_len);
	if (now_len > before && (o->latency_ns || o->tarpit_ns))
		conn_hold(w, c);
	return off;
}

static enum sink_stage sink_stage_of(enum smtp_event_type t)
{
	switch (t) {
	case SMTP_EV_MAIL:
		return SINK_STAGE_MAIL;
	case SMTP_EV_RCPT:
		return SINK_STAGE_RCPT;
	case SMTP_EV_MESSAGE:
		return SINK_STAGE_DATA;
	default:
		return SINK_STAGE_COUNT;
	}
}

/* Answer the paused engine: the planned drop, an injected fault, or 250.
 * Faults are ours, not the client's: they do not count toward max_errors. */
static enum smtp_rc conn_answer(struct sink_worker *w, struct sink_conn *c)
{
	const struct smtp_event *ev = smtp_engine_event(c->eng);
	enum sink_stage stage = sink_stage_of(ev->type);
	const struct sink_fault *f;

	if (stage == SINK_STAGE_COUNT)
		return smtp_engine_resume(c->eng, 451, "4.3.0 sink: unexpected event", false);
	if (c->drop_stage == stage) {
		sink_count(w, SINK_C_DROP, 1);
		c->flags |= SINK_CONN_F_DROP;
		return SMTP_RC_OK;
	}
	f = sink_fault_pick(w, stage);
	if (f) {
		sink_count(w, SINK_C_FAULT + stage, 1);
		return smtp_engine_resume(c->eng, f->code, f->text, false);
	}
	switch (ev->type) {
	case SMTP_EV_MAIL:
		sink_count(w, SINK_C_TRANSACTIONS, 1);
		return smtp_engine_resume(c->eng, 250, "2.1.0 Ok", false);
	case SMTP_EV_RCPT:
		return smtp_engine_resume(c->eng, 250, "2.1.5 Ok", false);
	default:
		sink_message_record(w, ev);
		return smtp_engine_resume(c->eng, 250, "2.0.0 Ok: queued", false);
	}
}

/*
 * Count an accepted message and its copies.  Corrupt messages are still
 * answered 250: a retry would hide the damage behind a clean copy.
 * corrupt and foreign count messages; unique and duplicates count copies.
 */
static void sink_message_record(struct sink_worker *w, const struct smtp_event *ev)
{
	const struct envelope *env = ev->env;
	struct benchmsg_info info;
	enum benchmsg_verdict v = benchmsg_verify(ev->body, ev->body_len, &info);
	bool foreign_rcpt = false;

	sink_count(w, SINK_C_MESSAGES, 1);
	sink_count(w, SINK_C_RECIPIENTS, env->nrcpts);
	sink_count(w, SINK_C_BYTES, ev->body_len);
	if (v == BENCHMSG_FOREIGN) {
		sink_count(w, SINK_C_FOREIGN, 1);
		return;
	}
	if (v != BENCHMSG_OK) {
		sink_count(w, SINK_C_CORRUPT, 1);
		return;
	}
	for (uint32_t i = 0; i < env->nrcpts; i++) {
		long k = benchmsg_rcpt_index(env->rcpts[i].addr);

		if (k < 0) {
			foreign_rcpt = true;
			continue;
		}
		if (w->opts->run_set && info.run != w->opts->run)
			sink_count(w, SINK_C_OTHER_RUNS, 1);
		else if (benchmsg_seen_add(w->seen, info.run, info.seq, (unsigned)k))
			sink_count(w, SINK_C_UNIQUE, 1);
		else
			sink_count(w, SINK_C_DUPLICATES, 1);
	}
	if (foreign_rcpt)
		sink_count(w, SINK_C_FOREIGN, 1);
}

/* Close and free c; closing the descriptor also leaves the epoll set. */
static void conn_close(struct sink_worker *w, struct sink_conn *c)
{
	sink_timer_cancel(w, c);
	link_del(&c->ready);
	link_del(&c->link);
	smtp_engine_free(c->eng);
	free(c->in);
	close(c->fd);
	free(c);
}

/* Shutting down: what is answered goes out (holds or not), then 421. */
static void conn_shutdown(struct sink_worker *w, struct sink_conn *c)
{
	if (!(c->flags & (SINK_CONN_F_DROP | SINK_CONN_F_LINGER))) {
		smtp_engine_shutdown(c->eng);
		c->flags |= SINK_CONN_F_WRITABLE;
		(void)conn_flush(w, c);
		(void)shutdown(c->fd, SHUT_WR);
	}
	/* Input left unread would turn the close into a reset that can
	 * destroy the 421 in flight: take what has arrived (bounded: the
	 * process is exiting). */
	for (int i = 0; i < SINK_READ_BUDGET; i++)
		if (recv(c->fd, w->rbuf, SINK_RBUF_SIZE, MSG_DONTWAIT) <= 0)
			break;
	conn_close(w, c);
}

/* ------------------------------------------------------------ worker */

/* Serve the connections owed a turn; those that spend their budget again
 * go on a fresh list for the next round. */
static void sink_ready_run(struct sink_worker *w)
{
	struct sink_link batch;

	if (w->ready.next == &w->ready)
		return;
	batch = w->ready;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	link_init(&w->ready);
	while (batch.next != &batch) {
		struct sink_conn *c = sink_conn_of(batch.next, ready);

		link_del(&c->ready);
		conn_run(w, c);
	}
}

/* epoll_wait's timeout: until the next deadline, 0 with turns owed. */
static int sink_worker_timeout(const struct sink_worker *w)
{
	uint64_t next = sink_timer_next(w), now = bench_now_ns();

	if (w->ready.next != &w->ready)
		return 0;
	if (w->accept_resume_at && w->accept_resume_at < next)
		next = w->accept_resume_at;
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	/* Round up: waking early only loops once more. */
	return (int)((next - now + NS_PER_MS - 1) / NS_PER_MS);
}

static void sink_worker_dispatch(struct sink_worker *w, const struct epoll_event *ev)
{
	if (ev->data.ptr == &w->listen_fd)
		sink_accept_burst(w);
	else if (ev->data.ptr == &w->stop_fd)
		w->stopping = true;
	else
		conn_on_events(w, ev->data.ptr, ev->events);
}

/* A worker: accept, serve, and at stop close every connection. */
static void *sink_worker_main(void *arg)
{
	struct sink_worker *w = arg;
	struct epoll_event evs[SINK_EVENTS];

	bench_pin(w->id);
	while (!w->stopping) {
		int n = epoll_wait(w->epfd, evs, SINK_EVENTS, sink_worker_timeout(w));

		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "sluice-bench sink: worker=%u epoll_wait: %s\n", w->id,
				strerror(errno));
			break;
		}
		w->now = bench_now_ns();
		for (int i = 0; i < n; i++)
			sink_worker_dispatch(w, &evs[i]);
		sink_ready_run(w);
		sink_timers_run(w);
		sink_accept_resume(w);
	}
	/* Stop accepting first, so no connection arrives after the 421s. */
	close(w->listen_fd);
	w->listen_fd = -1;
	while (w->conns.next != &w->conns)
		conn_shutdown(w, sink_conn_of(w->conns.next, link));
	return NULL;
}

static int sink_listen_socket(const struct sink_opts *o)
{
	int one = 1;
	int fd = socket(o->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* TCP_NODELAY on the listener is inherited by accepted sockets (Linux):
	 * no per-connection setsockopt; tarpit and latency replies are small
	 * writes Nagle would otherwise hold for the client's delayed ACK. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&o->listen_addr, o->listen_len) < 0 ||
	    listen(fd, SINK_BACKLOG) < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

/* Set up worker i (listener, epoll, buffers).  0 or -errno. */
static int sink_worker_init(struct sink_worker *w, unsigned i, const struct sink_opts *o,
			    struct benchmsg_seen *seen, int stop_fd)
{
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &w->listen_fd};
	struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &w->stop_fd};
	int fd;

	w->id = i;
	w->opts = o;
	w->seen = seen;
	w->stop_fd = stop_fd;
	w->listen_fd = -1;
	w->rng = o->seed ^ ((uint64_t)(i + 1) * 0xD1B54A32D192ED03ULL);
	link_init(&w->conns);
	link_init(&w->ready);
	w->rbuf = malloc(SINK_RBUF_SIZE);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!w->rbuf || w->epfd < 0)
		return -ENOMEM;
	fd = sink_listen_socket(o);
	if (fd < 0)
		return fd;
	w->listen_fd = fd;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &lev) < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, stop_fd, &sev) < 0)
		return -errno;
	return 0;
}

static void sink_worker_fini(struct sink_worker *w)
{
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	if (w->epfd >= 0)
		close(w->epfd);
	free(w->rbuf);
	free(w->heap);
}

/* ------------------------------------------------------------ stats */

static const char *const sink_counter_names[SINK_C_COUNT] = {
    [SINK_C_CONNECTIONS] = "connections",
    [SINK_C_TRANSACTIONS] = "transactions",
    [SINK_C_MESSAGES] = "messages",
    [SINK_C_RECIPIENTS] = "recipients",
    [SINK_C_UNIQUE] = "unique",
    [SINK_C_DUPLICATES] = "duplicates",
    [SINK_C_CORRUPT] = "corrupt",
    [SINK_C_FOREIGN] = "foreign",
    [SINK_C_OTHER_RUNS] = "other_runs",
    [SINK_C_BYTES] = "bytes",
    [SINK_C_FAULT + SINK_STAGE_CONNECT] = "connect",
    [SINK_C_FAULT + SINK_STAGE_MAIL] = "mail",
    [SINK_C_FAULT + SINK_STAGE_RCPT] = "rcpt",
    [SINK_C_FAULT + SINK_STAGE_DATA] = "data",
    [SINK_C_DROP] = "drop",
};

static void sink_stats_sum(struct sink_worker *workers, unsigned n, uint64_t *sum)
{
	memset(sum, 0, SINK_C_COUNT * sizeof(*sum));
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < SINK_C_COUNT; k++)
			sum[k] += __atomic_load_n(&workers[i].counters[k], __ATOMIC_RELAXED);
}

/* The stats as one line of JSON (bench/README.md).  Returns its length. */
static int sink_stats_json(const uint64_t *sum, char *buf, size_t cap)
{
	size_t len = 0;

	for (unsigned k = 0; k < SINK_C_COUNT && len < cap; k++) {
		const char *pre = k == 0 ? "{" : k == SINK_C_FAULT ? ", \"faults\": {" : ", ";

		len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\": %" PRIu64, pre,
					sink_counter_names[k], sum[k]);
	}
	if (len < cap)
		len += (size_t)snprintf(buf + len, cap - len, "}}\n");
	return len < cap ? (int)len : -1;
}

/* Write the stats to path.tmp and rename it over path.  0 or -1. */
static int sink_stats_write_file(const char *path, const uint64_t *sum)
{
	char json[1024], tmp[4096];
	int len = sink_stats_json(sum, json, sizeof(json));
	FILE *f;
	bool ok;

	if (len < 0 || snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	ok = fwrite(json, 1, (size_t)len, f) == (size_t)len;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void sink_stats_print(const uint64_t *sum, bool json)
{
	char buf[1024];

	if (json && sink_stats_json(sum, buf, sizeof(buf)) > 0) {
		fputs(buf, stdout);
		return;
	}
	for (unsigned k = 0; k < SINK_C_FAULT; k++)
		printf("%-13s %" PRIu64 "\n", sink_counter_names[k], sum[k]);
	printf("%-13s", "faults");
	for (unsigned k = SINK_C_FAULT; k < SINK_C_COUNT; k++)
		printf(" %s=%" PRIu64, sink_counter_names[k], sum[k]);
	printf("\n");
}

/* ------------------------------------------------------------ main thread */

/* Wait for SIGINT/SIGTERM or the --duration, writing the stats file every
 * SINK_STATS_PERIOD_NS meanwhile. */
static void sink_wait(const struct sink_opts *o, struct sink_worker *workers, const sigset_t *sigs)
{
	uint64_t end =
	    o->duration_s > 0 ? bench_now_ns() + (uint64_t)(o->duration_s * 1e9) : UINT64_MAX;
	uint64_t sum[SINK_C_COUNT];
	bool warned = false;

	for (;;) {
		uint64_t now = bench_now_ns(), wait = SINK_STATS_PERIOD_NS;
		struct timespec ts;

		if (now >= end)
			return;
		if (end - now < wait)
			wait = end - now;
		ts.tv_sec = (time_t)(wait / 1000000000u);
		ts.tv_nsec = (long)(wait % 1000000000u);
		if (sigtimedwait(sigs, NULL, &ts) > 0)
			return;
		if (!o->stats_path)
			continue;
		sink_stats_sum(workers, o->threads, sum);
		if (sink_stats_write_file(o->stats_path, sum) < 0 && !warned) {
			fprintf(stderr, "sluice-bench sink: cannot write %s: %s\n", o->stats_path,
				strerror(errno));
			warned = true;
		}
	}
}

/* The per-process descriptor limit bounds the connections: take the hard
 * limit. */
static void sink_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int sink_start_workers(const struct sink_opts *o, struct sink_worker *workers,
			      struct benchmsg_seen *seen, int stop_fd)
{
	for (unsigned i = 0; i < o->threads; i++) {
		int r = sink_worker_init(&workers[i], i, o, seen, stop_fd);

		if (r < 0) {
			fprintf(stderr, "sluice-bench sink: listen %s (worker %u): %s\n",
				o->listen_text, i, strerror(-r));
			return -1;
		}
	}
	for (unsigned i = 0; i < o->threads; i++) {
		if (pthread_create(&workers[i].thread, NULL, sink_worker_main, &workers[i]) != 0) {
			fprintf(stderr, "sluice-bench sink: cannot start worker %u\n", i);
			return -1;
		}
		workers[i].started = true;
	}
	return 0;
}

/* Tell every worker to stop (they all watch stop_fd) and wait for them. */
static void sink_stop_workers(const struct sink_opts *o, struct sink_worker *workers, int stop_fd)
{
	uint64_t one = 1;

	if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "sluice-bench sink: stop: %s\n", strerror(errno));
	for (unsigned i = 0; i < o->threads; i++)
		if (workers[i].started)
			pthread_join(workers[i].thread, NULL);
}

/* Run until stopped; returns the exit status. */
static int sink_run(const struct sink_opts *o)
{
	size_t wsize = (sizeof(struct sink_worker) * o->threads + 63) & ~(size_t)63;
	struct sink_worker *workers = aligned_alloc(64, wsize);
	struct benchmsg_seen *seen = benchmsg_seen_new();
	int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t sum[SINK_C_COUNT];
	sigset_t sigs;
	int status = 1;

	/* Workers inherit the mask: only sigtimedwait here takes the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sink_raise_nofile();
	if (!workers || !seen || stop_fd < 0) {
		fputs("sluice-bench sink: out of memory or descriptors\n", stderr);
		goto out;
	}
	memset(workers, 0, wsize);
	for (unsigned i = 0; i < o->threads; i++)
		workers[i].listen_fd = workers[i].epfd = -1;
	if (sink_start_workers(o, workers, seen, stop_fd) < 0)
		goto stop;
	if (o->stats_path) {
		/* At once, so that a harness can wait for the file. */
		sink_stats_sum(workers, o->threads, sum);
		if (sink_stats_write_file(o->stats_path, sum) < 0)
			fprintf(stderr, "sluice-bench sink: cannot write %s: %s\n", o->stats_path,
				strerror(errno));
	}
	sink_wait(o, workers, &sigs);
	status = 0;
stop:
	sink_stop_workers(o, workers, stop_fd);
	sink_stats_sum(workers, o->threads, sum);
	if (status == 0 && o->stats_path && sink_stats_write_file(o->stats_path, sum) < 0) {
		fprintf(stderr, "sluice-bench sink: cannot write %s: %s\n", o->stats_path,
			strerror(errno));
		status = 1;
	}
	if (status == 0)
		sink_stats_print(sum, o->json);
	for (unsigned i = 0; i < o->threads; i++)
		sink_worker_fini(&workers[i]);
out:
	if (stop_fd >= 0)
		close(stop_fd);
	benchmsg_seen_free(seen);
	free(workers);
	return status;
}

int bench_sink_main(int argc, char **argv)
{
	struct sink_opts o;
	int r = sink_opts_parse(&o, argc, argv);

	if (r >= 0)
		return r;
	return sink_run(&o);
}
