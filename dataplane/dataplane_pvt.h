/*
 * dataplane_pvt: the dataplane's internal types, shared by its .c files and
 * its unit tests only (never included from outside dataplane/ and
 * tests/unit/dataplane/).
 *
 * Pieces:
 *	dp_list		intrusive doubly linked list
 *	dp_timer	per-worker timer lists: one list per timeout kind; every
 *			kind has a constant timeout, so appending at the tail keeps
 *			each list ordered by deadline and every operation is O(1)
 *	connlimit	exact per-client-address connection counts, a hash
 *			striped over many locks, shared by all workers
 *	dp_io_ops	the I/O backend (kernel sockets now, DPDK later)
 *	dp_worker	one thread: epoll loop, listeners, connections, writer
 *	dp_conn		one client connection (transport + its SMTP session)
 *	dp_mem		the global budget for bodies buffered in memory
 */
#ifndef SLUICE_DATAPLANE_PVT_H
#define SLUICE_DATAPLANE_PVT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "dataplane/dataplane.h"
#include "dataplane/smtp_engine.h"

/* ---- intrusive list ---------------------------------------------------- */

struct dp_list {
	struct dp_list *prev, *next;
};

static inline void dp_list_init(struct dp_list *h)
{
	h->prev = h->next = h;
}

/* A node that is on no list has NULL links (so "is it linked?" is cheap). */
static inline bool dp_list_linked(const struct dp_list *n)
{
	return n->next != NULL;
}

static inline bool dp_list_empty(const struct dp_list *h)
{
	return h->next == h;
}

static inline void dp_list_add_tail(struct dp_list *h, struct dp_list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void dp_list_del(struct dp_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

#define dp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- timers ------------------------------------------------------------ */

/* One armed deadline, embedded in its owner. */
struct dp_timer {
	struct dp_list link; /* on its dp_timer_list, or unlinked */
	uint64_t deadline;   /* milliseconds, CLOCK_MONOTONIC */
};

/* Timers that all use the same timeout: ordered by deadline by construction. */
struct dp_timer_list {
	struct dp_list head;
	uint64_t timeout_ms;
};

void dp_timer_list_init(struct dp_timer_list *l, uint64_t timeout_ms);

/* (Re)arm t to fire timeout_ms after now, moving it to l's tail.  now must
 * not go backwards between calls on the same list (monotonic clock). */
void dp_timer_arm(struct dp_timer_list *l, struct dp_timer *t, uint64_t now);

/* Disarm t; fine when not armed. */
void dp_timer_disarm(struct dp_timer *t);

static inline bool dp_timer_armed(const struct dp_timer *t)
{
	return dp_list_linked(&t->link);
}

/* Earliest deadline on l, or UINT64_MAX when l is empty. */
uint64_t dp_timer_list_next(const struct dp_timer_list *l);

/* Unlink and return the earliest timer whose deadline is <= now, or NULL. */
struct dp_timer *dp_timer_list_expire(struct dp_timer_list *l, uint64_t now);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t dp_now_ms(void);

/* ---- per-address connection limits ------------------------------------- */

struct connlimit;

/* A table with 2^stripes_log2 lock stripes.  NULL on out of memory. */
struct connlimit *connlimit_new(unsigned stripes_log2);
void connlimit_free(struct connlimit *cl);

/*
 * Count one more connection from sa's address (the port is ignored; an
 * IPv4-mapped IPv6 address counts as its IPv4 address) unless that would
 * exceed limit (0 = no limit).  Returns 0 when counted, -EUSERS when at the
 * limit, -ENOMEM, or -EAFNOSUPPORT.  Any thread.
 */
int connlimit_acquire(struct connlimit *cl, const struct sockaddr *sa, unsigned limit);

/* Undo one successful connlimit_acquire() for sa.  Any thread. */
void connlimit_release(struct connlimit *cl, const struct sockaddr *sa);

/* Current count for sa's address (for tests and stats).  Any thread. */
unsigned connlimit_count(struct connlimit *cl, const struct sockaddr *sa);

/* Number of distinct addresses counted now.  Any thread (locks every stripe). */
size_t connlimit_size(struct connlimit *cl);

/* ---- I/O backend ------------------------------------------------------- */

/* Kept minimal: the loop itself is backend specific (epoll vs poll mode);
 * these are the calls connection code makes. */
struct dp_io_ops {
	const char *name;
	/* A bound, listening, non-blocking socket (SO_REUSEPORT).  fd or -errno. */
	int (*listen)(const struct sockaddr *sa, socklen_t salen, int backlog);
	/* A non-blocking accepted socket, or -errno (-EAGAIN: none waiting). */
	int (*accept)(int lfd, struct sockaddr *sa, socklen_t *salen);
	/* >0 bytes, 0 at end of stream, or -errno (-EAGAIN: nothing now). */
	ssize_t (*recv)(int fd, void *buf, size_t len);
	/* >0 bytes sent, or -errno (-EAGAIN: buffer full); never SIGPIPE. */
	ssize_t (*send)(int fd, const void *buf, size_t len);
	/* Release the socket; write side shut first when graceful. */
	void (*close)(int fd, bool graceful);
};

extern const struct dp_io_ops dp_io_kernel;

/* ---- workers and connections ------------------------------------------- */

/* What an epoll event's data.ptr points at: the first byte says which. */
enum dp_src_kind {
	DP_SRC_CONN = 1,
	DP_SRC_LISTENER,
	DP_SRC_WAKE, /* the committer's eventfd */
	DP_SRC_STOP, /* dataplane_stop()'s eventfd */
};

/* Which timer list a connection is on. */
enum dp_tkind {
	DP_T_COMMAND = 0, /* waiting for a command: cfg->timeout_command */
	DP_T_DATA,	  /* inside DATA/BDAT: cfg->timeout_data_block */
	DP_T_LINGER,	  /* closing, output still unsent: DP_LINGER_MS */
	DP_T_COUNT,
	DP_T_NONE = DP_T_COUNT, /* no timer (paused waiting for a commit) */
};

/* Longest we keep trying to send the last replies of a closing session. */
#define DP_LINGER_MS 10000
/* Longest dataplane_stop() waits for sessions waiting for a commit. */
#define DP_STOP_DRAIN_MS 5000
/* Per-worker read buffer. */
#define DP_RBUF_SIZE (64 * 1024)
/* Reads per connection per loop turn before others get their turn. */
#define DP_READ_BUDGET 16
/* Feed the engine at most this much between two flushes of its output. */
#define DP_FEED_SLICE (16 * 1024)
/* Engine output above which we flush before feeding more. */
#define DP_OUT_HIGH (32 * 1024)
/* accept() calls per listener per loop turn. */
#define DP_ACCEPT_BURST 64

/* dp_conn.flags */
#define DP_CONN_F_READABLE 0x01 /* edge seen, recv has not said EAGAIN or read short */
#define DP_CONN_F_WRITABLE 0x02 /* send has not said EAGAIN since last EPOLLOUT */
#define DP_CONN_F_EOF 0x04	/* client half-closed: no more input */
#define DP_CONN_F_CLOSING 0x08	/* engine said CLOSE: flush, then close */
#define DP_CONN_F_COMMIT 0x10	/* paused on SMTP_EV_MESSAGE, entry in the ack FIFO */
#define DP_CONN_F_DEAD 0x20	/* socket gone while in the FIFO: free on pop */
#define DP_CONN_F_LIMITED 0x40	/* holds a connlimit count for its address */
#define DP_CONN_F_RDHUP 0x80	/* epoll saw the peer's FIN: read on to end of stream */
#define DP_CONN_F_MEMWAIT 0x100 /* parked on the worker's memwait list: body budget spent */

/* One client connection.  Memory per idle connection: this struct plus
 * smtp_engine_memory(); the input buffer exists only while the session is
 * paused with unconsumed input. */
struct dp_conn {
	uint8_t kind;	   /* DP_SRC_CONN (epoll tag) */
	uint8_t tkind;	   /* enum dp_tkind the timer is on */
	uint16_t flags;	   /* DP_CONN_F_* */
	int fd;		   /* socket, -1 once closed */
	uint32_t msgs;	   /* messages acknowledged with 250 */
	uint32_t listener; /* index in cfg->listeners */
	struct smtp_engine *eng;
	uint8_t *in;	      /* unconsumed input (malloc'd), or NULL */
	uint32_t in_len;      /* bytes in in */
	uint32_t in_off;      /* bytes of in already fed */
	struct dp_list link;  /* worker's connections, then its graveyard once closed */
	struct dp_list ready; /* worker's ready list (read budget used up), or its memwait
			       * list (DP_CONN_F_MEMWAIT): never both */
	struct dp_timer timer;
	uint32_t mem_base; /* smtp_engine_memory() when new: the idle size */
	size_t mem_share;  /* engine bytes beyond mem_base, counted in dp->mem_used */
	size_t mem_resv;   /* reserved in dp->mem_used for the feed under way, or 0 */
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} peer; /* client address */
};

/* A message appended to the spool, waiting for its record to be durable. */
struct dp_ack {
	struct dp_conn *conn;
	uint64_t lsn;
	struct spool_ref ref;
	uint32_t nrcpts;
	char qid[SPOOL_QID_LEN + 1];
};

/* FIFO of dp_ack in LSN order (appends are in LSN order on one writer). */
struct dp_ackq {
	struct dp_ack *v;
	uint32_t cap; /* power of two, or 0 */
	uint32_t head;
	uint32_t count;
};

struct dp_listener_src {
	uint8_t kind; /* DP_SRC_LISTENER */
	unsigned idx; /* index in cfg->listeners */
	int fd;
};

struct dp_src {
	uint8_t kind;
};

struct dataplane;

/* One worker thread; everything here is touched by that thread only, except
 * the stats (atomics read by dataplane_get_stats) and the eventfds. */
struct dp_worker {
	struct dataplane *dp;
	unsigned id;
	int cpu; /* pinned to this cpu, or -1 */
	pthread_t thread;
	bool started;
	int epfd;
	int wake_fd; /* eventfd: the committer moved durable/failed */
	int stop_fd; /* eventfd: dataplane_stop() */
	struct dp_src wake_src, stop_src;
	struct dp_listener_src *ls; /* one per listener */
	struct spool_writer *writer;
	uint8_t *rbuf; /* DP_RBUF_SIZE */
	struct dp_list conns;
	struct dp_list ready;
	struct dp_list memwait; /* parked until the body budget has room (DP_CONN_F_MEMWAIT) */
	struct dp_list
	    graveyard; /* closed this turn, freed at its end (events may still name them) */
	struct dp_timer_list timers[DP_T_COUNT];
	struct dp_ackq acks;
	bool stopping;
	uint64_t stop_deadline;
	uint64_t accept_resume; /* accept paused (EMFILE) until then; 0 = not */
	uint64_t now;		/* cached monotonic ms of this loop turn */
	_Atomic uint64_t st_connections, st_refused, st_messages, st_open;
};

struct dataplane {
	const struct config *cfg;
	struct spool *spool;
	dataplane_submit_fn *submit;
	void *submit_arg;
	const struct dp_io_ops *io;
	struct smtp_engine_cfg *ecfg; /* one per listener */
	uint16_t *ports;	      /* bound port per listener */
	struct connlimit *cl;
	_Atomic unsigned total; /* open connections, all workers */
	/* Body memory budget (dp_mem): see conn_mem.c. */
	uint64_t mem_budget;		    /* cfg->max_body_memory; 0 = no limit */
	_Atomic uint64_t mem_used;	    /* sum of dp_conn.mem_share + mem_resv */
	_Atomic uint64_t mem_peak;	    /* high-water mark of mem_used */
	_Atomic uint64_t mem_parks;	    /* times a session was parked */
	_Atomic(struct dp_conn *) mem_pass; /* the one session allowed past the budget */
	_Atomic bool mem_over;	     /* parked since mem_used last fell below the resume mark */
	_Atomic bool mem_logged;     /* "reached" was logged: log "cleared" too */
	_Atomic uint64_t mem_log_ms; /* when "reached" was last logged (rate limit) */
	unsigned nworkers;
	struct dp_worker **workers;
};

/* ---- body memory budget (conn_mem.c) ----------------------------------- */

/* Parked sessions retry when mem_used falls below this share of the budget
 * (or when the pass is free). */
#define DP_MEM_RESUME_PCT 90
/* Longest epoll_wait while sessions are parked: other workers free memory,
 * and nothing wakes us when they do. */
#define DP_MEM_POLL_MS 10
/* At most one "budget reached" line per this many milliseconds. */
#define DP_MEM_LOG_MS 10000

/* May c feed n more bytes to its engine now?  Outside a transaction always;
 * inside one only if the budget has room for the worst growth of this feed
 * (reserved in mem_used until dp_mem_sync), or c holds, or just took, the
 * pass.  false: park c (dp_mem_park) and feed nothing. */
bool dp_mem_admit(struct dp_worker *w, struct dp_conn *c, size_t n);
/* Account c's engine memory now (after a feed, resume or flush): settles
 * the reservation, gives the pass back once c's transaction is over. */
void dp_mem_sync(struct dp_worker *w, struct dp_conn *c);
/* c is closing: give the pass back (its share stays counted until freed). */
void dp_mem_close(struct dp_worker *w, struct dp_conn *c);
/* c's engine is freed: take its share out of mem_used. */
void dp_mem_release(struct dp_worker *w, struct dp_conn *c);
/* Put c on w's memwait list (it is not read until dp_mem_run_parked). */
void dp_mem_park(struct dp_worker *w, struct dp_conn *c);
/* Each loop turn: retry parked sessions if memory was freed. */
void dp_mem_run_parked(struct dp_worker *w);

/* worker.c */
void *dp_worker_main(void *arg);

/* conn.c */
void dp_conn_accept(struct dp_worker *w, struct dp_listener_src *l);
void dp_conn_event(struct dp_worker *w, struct dp_conn *c, uint32_t events);
void dp_conn_run(struct dp_worker *w, struct dp_conn *c);
void dp_conn_timeout(struct dp_worker *w, struct dp_conn *c);
void dp_conn_acks_release(struct dp_worker *w);
void dp_conn_stop(struct dp_worker *w, struct dp_conn *c);
void dp_conn_abort(struct dp_worker *w, struct dp_conn *c);
void dp_conn_destroy(struct dp_worker *w, struct dp_conn *c);
const char *dp_conn_addr(const struct dp_conn *c, char *buf, size_t len);

#endif
