/* relay_pvt: the relay agent's internals, shared by relay*.c only. */
#ifndef SLUICE_RELAY_PVT_H
#define SLUICE_RELAY_PVT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <urcu/wfcqueue.h>

#include "common/envelope.h"
#include "control/relay.h"
#include "control/smtp_client.h"
#include "dns/dns.h"

/* Addresses one connection tries before it gives up (Postfix tries 5). */
#define RELAY_MAX_TARGETS 10
/* Bit in relay_job.rcpts[]: this recipient's delay notice went out. */
#define RELAY_RCPT_NOTICED 0x80000000u
#define RELAY_RCPT_INDEX(v) ((v) & ~RELAY_RCPT_NOTICED)
/* relay_job.flags: what a 2xx means for NOTIFY=SUCCESS (RFC 3461 4.1). */
#define RELAY_JOB_SAY_RELAYED 0x01   /* server without DSN: a "relayed" notice */
#define RELAY_JOB_SAY_DELIVERED 0x02 /* final delivery (LMTP, Maildir): "delivered" */
#define RELAY_JOB_JOURNALLED 0x04    /* outcome journalled already: notices only */

/*
 * One stored message and its recipients for one destination: the queue
 * index entry.  Kept small (a million deferred recipients must fit in
 * 200 MB): the envelope and body stay in the spool until it is tried.
 */
struct relay_job {
	struct relay_job *next;	 /* dest->ready FIFO */
	struct relay_dest *dest;
	char *fail;		 /* RELAY_KIND_FAIL only: "status\0text" */
	int64_t arrival;	 /* Unix seconds */
	int64_t retry_at;	 /* CLOCK_MONOTONIC ms of the next try (deferred) */
	struct spool_ref ref;
	uint16_t tries;		 /* attempts that ended deferred */
	uint8_t flags;		 /* RELAY_JOB_*, for the attempt being finished */
	uint32_t nrcpts;
	uint32_t rcpts[];	 /* index in the record | RELAY_RCPT_NOTICED */
};

/* A submission on its way to the relay thread. */
struct relay_input {
	struct cds_wfcq_node node;
	struct relay_job *job;
	enum relay_kind kind;
	uint16_t port;
	char name[]; /* destination name, lowercased */
};

/* A destination: where a group of recipients goes, with its limits. */
struct relay_dest {
	struct relay_dest *hnext; /* hash chain */
	struct relay_dest *want_next; /* r->want: waits for a global connection slot */
	char *name;
	uint16_t port;
	enum relay_kind kind;
	bool wanting;		  /* on r->want */
	bool kicked;		  /* on r->kick */
	struct relay_dest *kick_next; /* r->kick: pump it at the next loop turn */
	struct relay_job *ready_head, *ready_tail;
	unsigned nready;
	unsigned nconns;	  /* connections open or being opened */
	unsigned nopening;	  /* of those, not yet READY for a first message */
	struct relay_conn *idle;  /* idle connections (cache), LIFO */
};

enum relay_phase {
	RELAY_PHASE_RESOLVE, /* waiting for DNS */
	RELAY_PHASE_CONNECT, /* TCP connect in progress */
	RELAY_PHASE_SESSION, /* the SMTP/LMTP engine runs */
	RELAY_PHASE_IDLE,    /* READY, in dest->idle, waiting for a message */
};

struct relay_target {
	struct dns_addr addr;
	char host[256]; /* the host name, for logs and Remote-MTA */
};

/* The outcome of one recipient in one attempt. */
struct relay_result {
	uint16_t code; /* 0 = none yet */
	char enh[16];
	char *text;    /* malloc'd, or NULL */
	bool local;    /* decided by us (DNS, connection, timeout), not said by a server */
};

struct relay_conn {
	struct relay_conn *next, *prev; /* r->conns */
	struct relay_conn *idle_next;	/* dest->idle */
	struct relay_conn *resolved_next; /* r->resolved */
	struct relay *r;
	struct relay_dest *dest;
	enum relay_phase phase;
	int fd;
	bool out_armed;	  /* EPOLLOUT registered */
	bool was_ready;	  /* reached READY at least once on this address */
	bool msg_done;	  /* the engine said msg_done; finish after the call */
	bool all_5xx;	  /* every target so far refused with a 5xx */
	int64_t deadline; /* CLOCK_MONOTONIC ms; 0 = none */
	unsigned msgs;	  /* messages started on this connection */
	struct smtp_client *cli;
	struct relay_target targets[RELAY_MAX_TARGETS];
	unsigned ntargets, cur;
	/* Why the last target failed (or DNS did), for the deferral. */
	struct relay_result why;
	/* The message in flight. */
	struct relay_job *job;
	struct envelope env;
	bool env_ok;
	uint8_t *body;
	size_t body_len;
	uint32_t *idx;		   /* engine's recipient list */
	struct relay_result *res;  /* per job recipient */
	uint32_t nres;		   /* entries in res (the job may shrink meanwhile) */
	char qid[SPOOL_QID_LEN + 1];
};

/* A notice appended to the spool, waiting to become durable; then its
 * recipients' journal entries are written and it goes to delivery. */
struct relay_notice_wait {
	struct relay_notice_wait *next;
	uint64_t lsn;
	struct spool_ref notice;   /* the notice's record */
	struct spool_ref orig;	   /* the message it is about */
	enum spool_rcpt_state state; /* FAILED or DELAY_NOTICED */
	uint32_t n;
	uint32_t rcpts[];
};

struct relay {
	struct spool *sp;
	relay_notice_fn *notice;
	void *notice_arg;
	struct relay_cfg cfg;
	char *hostname;
	struct spool_writer *w; /* notices */

	/* Input from other threads. */
	struct __cds_wfcq_head inq_head;
	struct cds_wfcq_tail inq_tail;
	int efd;
	atomic_bool stop;
	bool started;
	pthread_t thread;

	/* Relay thread only from here on. */
	int epfd;
	struct dns_resolver *dns;
	struct relay_dest **dests;
	size_t ndests, dests_cap; /* dests_cap: power of two buckets */
	struct relay_dest *want;  /* destinations waiting for a global slot */
	struct relay_dest *kick;  /* destinations to pump outside any callback */
	struct relay_conn *conns;
	unsigned nconns;
	struct relay_conn *resolved; /* DNS answered: connect them */
	struct relay_job **heap;     /* deferred jobs, min-heap on retry_at */
	size_t nheap, heap_cap;
	struct relay_notice_wait *nw_head, *nw_tail;
	bool journal_dirty;
	uint64_t notice_seq;
	uint64_t rng;

	atomic_uint_fast64_t st_delivered, st_deferred, st_failed, st_notices, st_conns,
	    st_reused, st_queued, st_queued_rcpts;
};

/* relay.c */
int64_t relay_now_ms(void);
uint32_t relay_random(struct relay *r);
void relay_count(atomic_uint_fast64_t *c, int64_t n);
void relay_dest_pump(struct relay *r, struct relay_dest *d);
void relay_dest_kick(struct relay *r, struct relay_dest *d);
struct relay_job *relay_dest_pop(struct relay_dest *d);
void relay_result_set(struct relay_result *res, uint16_t code, const char *enh,
		      const char *text);
void relay_result_clear(struct relay_result *res);

/* relay_conn.c */
int relay_conn_open(struct relay *r, struct relay_dest *d);
void relay_conn_event(struct relay_conn *c, uint32_t events);
void relay_conn_resolved(struct relay_conn *c);
void relay_conn_check_timeout(struct relay_conn *c, int64_t now);
bool relay_conn_idle_take(struct relay_dest *d);
void relay_conn_close_all(struct relay *r);

/* relay_job.c */
void relay_job_finish(struct relay *r, struct relay_job *job, const struct relay_result *res,
		      const struct relay_result *all, struct envelope *env, const uint8_t *body,
		      size_t body_len, const char *remote);
void relay_job_free(struct relay *r, struct relay_job *job);
void relay_notice_poll(struct relay *r);
void relay_journal_sync(struct relay *r);
void relay_heap_push(struct relay *r, struct relay_job *job);
struct relay_job *relay_heap_pop(struct relay *r);

#endif
