/*
 * send: `sluice-bench send`, the SMTP load generator.  bench/README.md is
 * the contract: options, exit status, JSON report.  This header holds the
 * types the send_*.c files share; nothing outside bench/ includes it.
 *
 *	send.c          the run, the workers, connections, rate, main
 *	send_opts.c     the command line
 *	send_session.c  the client side of the SMTP dialogue
 *	send_report.c   progress line, totals, table and JSON
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
#ifndef SLUICE_SEND_PVT_H
#define SLUICE_SEND_PVT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "bench/benchmsg.h"
#include "bench/histogram.h"
#include "common/smtp_reply.h"

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
	struct smtp_ehlo_exts exts; /* what the EHLO reply offered */
	bool pipelining;	    /* this session pipelines */
	bool parked;		    /* waiting in the worker's queue for a rate token */
	bool token;		    /* released from that queue with a token in hand */
	bool need_rset;		    /* the server may still hold a refused transaction */
	bool quitting;		    /* QUIT sent: nothing more to start */
	bool reserved;		    /* holds a reservation (run->reserved) for its next message */
	bool eod_pending; /* the queued output ends a message: stamp eod_ns when written */
	uint8_t eod_tx;	  /* which transaction that is */
	uint8_t next_tx;  /* transaction slot the next message uses (they alternate) */
	uint8_t wait_head, wait_len;
	uint8_t out_idx, out_len;	/* out[out_idx..out_len) is still to write */
	unsigned msgs;			/* messages started on this connection */
	struct smtp_reply_parser reply; /* the reply being read */
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
	_Atomic uint64_t reserved; /* messages started or held by a session; <= messages */
	_Atomic bool stop;
	_Atomic bool ever_connected; /* a connect failing before this is fatal */
	_Atomic unsigned done;	     /* workers finished */
	pthread_t watcher;	     /* the main thread: SIGUSR1 when the last worker is done */
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

/* ---- send_opts.c */

/* Parse the command line into *o.  Returns 0 to run, 1 after --help, 2 for
 * a usage error (the message is on stderr). */
int send_opts_parse(struct send_opts *o, int argc, char **argv);

/* ---- send.c: what the session needs of the run and the connection */

/* Stop the run for a reason that every session would hit too. */
void send_run_fatal(struct send_run *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Messages left to reserve (a peek). */
bool send_run_has_work(struct send_run *run);
/* Reserve one message; false when none is left or the run stopped. */
bool send_run_reserve(struct send_run *run);
/* Give c's reservation back, if it holds one (it ends before using it). */
void send_conn_release(struct send_worker *w, struct send_conn *c);
/* Queue len octets at base for writing (they must live until written). */
void send_out_add(struct send_conn *c, const void *base, size_t len);
/* Expect count replies of kind for transaction tx (or SEND_NO_TX). */
void send_wait_push(struct send_conn *c, enum send_wait_kind kind, unsigned tx, uint32_t count);
/* Close c, counting what it cuts short; always returns -1. */
int send_conn_close(struct send_worker *w, struct send_conn *c, enum send_close why);
/* Take a rate token (true), or false when the session must park. */
bool send_rate_take(struct send_worker *w);
void send_rate_park(struct send_worker *w, struct send_conn *c);

/* ---- send_session.c */

/* Act on every complete reply line in c's input; 0, or -1 when the
 * connection was closed. */
int send_reply_parse(struct send_worker *w, struct send_conn *c);
/* Between transactions: start the next message, park, or QUIT. */
void send_sess_next(struct send_worker *w, struct send_conn *c);

/* ---- send_report.c */

void send_progress(struct send_run *run, uint64_t now, uint64_t *last_accepted);
void send_totals_sum(struct send_run *run, struct send_totals *t);
void send_report_table(const struct send_run *run, const struct send_totals *t);
void send_report_json(const struct send_run *run, const struct send_totals *t);

/* ---- counters */

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

static inline uint64_t send_ns_from_s(double s)
{
	return (uint64_t)(s * (double)NS_PER_S);
}

#endif
