/* delivery: the local delivery agent thread (see delivery.h). */
#include "control/delivery.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <urcu-qsbr.h>
#include <urcu/wfcqueue.h>

#include "common/log.h"
#include "config/route.h"
#include "control/maildir.h"
#include "control/relay.h"
#include "control/trace.h"

/* Messages handled per batch: one syncfs and one journal sync each. */
#define DELIVERY_BATCH 256
/* First retry after a temporary Maildir failure, in seconds; doubles per
 * try.  XXX: the queue scheduler (later issue) replaces this list. */
#define DELIVERY_RETRY_FIRST_S 5
/* Longest wait between two tries of a deferred message, in seconds. */
#define DELIVERY_RETRY_MAX_S 300

/* One message handed to the delivery thread.  Ownership moves with it:
 * the submitter allocates, the delivery thread frees. */
struct delivery_msg {
	struct cds_wfcq_node node; /* in the input queue or the todo list */
	struct spool_ref ref;	   /* where the record lives */
	uint32_t nrcpts;	   /* recipients in the record */
	bool *pending;		   /* nrcpts flags of recipients to try; NULL = all */
	bool *noticed;		   /* recovered: delay notice already sent; NULL = none */
	unsigned tries;		   /* attempts that ended in a temporary error */
	int64_t retry_at;	   /* deferred: CLOCK_MONOTONIC ms of the next try */
};

struct delivery {
	struct spool *sp;
	char *hostname; /* "by HOSTNAME" in Received:, host part of file names */
	delivery_remote_fn *remote; /* remote agent, or NULL */
	void *remote_arg;

	/* Input: any thread enqueues; only the delivery thread splices. */
	struct __cds_wfcq_head inq_head;
	struct cds_wfcq_tail inq_tail;
	int efd;	      /* eventfd: wakes the thread while it sleeps */
	atomic_bool sleeping; /* thread is (about to be) blocked in poll() */
	atomic_bool stop;     /* delivery_stop() asked: drain, then exit */
	bool started;	      /* main thread: the thread was created */
	pthread_t thread;

	atomic_uint_fast64_t delivered;
	atomic_uint_fast64_t failed;
	atomic_uint_fast64_t held;

	/* Delivery thread only from here on. */
	struct __cds_wfcq_head todo_head; /* messages ready to try, FIFO */
	struct cds_wfcq_tail todo_tail;
	struct delivery_msg **deferred; /* min-heap on retry_at */
	size_t ndeferred;
	size_t deferred_cap;
	bool journal_dirty; /* final states written since the last good sync */
};

/* One message of a batch while it is being delivered. */
struct delivery_ctx {
	struct delivery_msg *msg;
	struct envelope env;
	uint8_t *body;
	size_t body_len;
	char *lf_body; /* body with CRLF turned into LF */
	size_t lf_len;
	uint64_t body_hash; /* FNV-1a of lf_body, part of each copy's tag */
	char qid[SPOOL_QID_LEN + 1];
	bool *defer; /* nrcpts flags: retry these later */
	unsigned ndefer;
	struct delivery_remote *remote; /* nrcpts: where each remote recipient goes */
	bool read_ok;	/* record read; env/body valid */
	bool defer_all; /* temporary failure before any recipient */
};

/* Where one recipient goes when it is not a Maildir copy (kind FAIL: the
 * remote agent fails it with a notice).  Strings are borrowed from the
 * route table or the envelope: used while the thread is online. */
struct delivery_remote {
	bool set;
	enum relay_kind kind;
	const char *name;
	uint16_t port;
	const char *status, *text;
};

/* One Maildir copy to write in a batch. */
struct delivery_copy {
	struct delivery_ctx *ctx;
	uint32_t rcpt;
	char *root;	     /* copied: the route table may be swapped meanwhile */
	char *addr;	     /* copy of the address, split at the last '@' */
	const char *user;    /* into addr */
	const char *domain;  /* into addr */
	char *hdr;	     /* Received: header */
	struct iovec iov[2]; /* header, LF body */
	char tag[80];	     /* <arrival>.<qid>.<body hash>R<rcpt> (maildir.h) */
};

static void *delivery_main(void *arg);

/* CPU priority of the delivery thread relative to the workers (nice). */
#define DELIVERY_NICE 10

static int64_t delivery_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void delivery_msg_free(struct delivery_msg *m)
{
	if (m == NULL)
		return;
	free(m->pending);
	free(m->noticed);
	free(m);
}

struct delivery *delivery_new(struct spool *sp, const char *hostname)
{
	struct delivery *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->sp = sp;
	d->hostname = strdup(hostname != NULL && hostname[0] != '\0' ? hostname : "localhost");
	d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->hostname == NULL || d->efd < 0) {
		if (d->efd < 0 && errno != ENOMEM)
			log_err("delivery: eventfd: %s", strerror(errno));
		if (d->efd >= 0)
			(void)close(d->efd);
		free(d->hostname);
		free(d);
		errno = ENOMEM;
		return NULL;
	}
	__cds_wfcq_init(&d->inq_head, &d->inq_tail);
	__cds_wfcq_init(&d->todo_head, &d->todo_tail);
	atomic_init(&d->sleeping, false);
	atomic_init(&d->stop, false);
	atomic_init(&d->delivered, 0);
	atomic_init(&d->failed, 0);
	atomic_init(&d->held, 0);
	return d;
}

void delivery_set_remote(struct delivery *d, delivery_remote_fn *fn, void *arg)
{
	d->remote = fn;
	d->remote_arg = arg;
}

int delivery_start(struct delivery *d)
{
	if (d->started)
		return -EALREADY;
	int rc = pthread_create(&d->thread, NULL, delivery_main, d);
	if (rc != 0) {
		log_err("delivery: cannot start thread: %s", strerror(rc));
		return -rc;
	}
	d->started = true;
	return 0;
}

/* Wake the thread if it sleeps.  The fence pairs with the one in
 * delivery_wait(): either we see sleeping, or it sees our node. */
static void delivery_wake(struct delivery *d)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&d->sleeping, memory_order_relaxed))
		return;
	if (!atomic_exchange(&d->sleeping, false))
		return;
	uint64_t one = 1;
	/* EAGAIN means the counter is saturated: it is awake anyway. */
	if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("delivery: eventfd write: %s", strerror(errno));
}

static void delivery_enqueue(struct delivery *d, struct delivery_msg *m)
{
	cds_wfcq_node_init(&m->node);
	cds_wfcq_enqueue(&d->inq_head, &d->inq_tail, &m->node);
	delivery_wake(d);
}

void delivery_submit(void *arg, const struct spool_ref *ref, uint32_t nrcpts)
{
	struct delivery *d = arg;
	struct delivery_msg *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		/* The record is durable and pending: the next start's
		 * recovery finds it.  Nothing better to do on a worker. */
		char qid[SPOOL_QID_LEN + 1];
		spool_qid_format(ref, qid);
		log_err("%s delivery: out of memory, stays queued until restart", qid);
		return;
	}
	m->ref = *ref;
	m->nrcpts = nrcpts;
	delivery_enqueue(d, m);
}

int delivery_submit_recovered(struct delivery *d, const struct spool_ref *ref, const bool *pending,
			      const bool *noticed, uint32_t nrcpts)
{
	struct delivery_msg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->ref = *ref;
	m->nrcpts = nrcpts;
	if (pending != NULL && nrcpts > 0) {
		m->pending = malloc(nrcpts * sizeof(*m->pending));
		if (m->pending == NULL) {
			free(m);
			return -ENOMEM;
		}
		memcpy(m->pending, pending, nrcpts * sizeof(*m->pending));
	}
	bool any_noticed = false;
	for (uint32_t i = 0; noticed && i < nrcpts; i++)
		any_noticed = any_noticed || noticed[i];
	if (any_noticed) {
		m->noticed = malloc(nrcpts * sizeof(*m->noticed));
		if (m->noticed == NULL) {
			delivery_msg_free(m);
			return -ENOMEM;
		}
		memcpy(m->noticed, noticed, nrcpts * sizeof(*m->noticed));
	}
	delivery_enqueue(d, m);
	return 0;
}

void delivery_get_stats(struct delivery *d, struct delivery_stats *out)
{
	out->delivered = atomic_load_explicit(&d->delivered, memory_order_relaxed);
	out->failed = atomic_load_explicit(&d->failed, memory_order_relaxed);
	out->held = atomic_load_explicit(&d->held, memory_order_relaxed);
}

/* ---- deferred messages: a binary min-heap on retry_at ---- */

static void delivery_heap_swap(struct delivery_msg **h, size_t a, size_t b)
{
	struct delivery_msg *t = h[a];
	h[a] = h[b];
	h[b] = t;
}

static int delivery_defer_push(struct delivery *d, struct delivery_msg *m)
{
	if (d->ndeferred == d->deferred_cap) {
		size_t cap = d->deferred_cap ? d->deferred_cap * 2 : 64;
		struct delivery_msg **h = realloc(d->deferred, cap * sizeof(*h));
		if (h == NULL)
			return -ENOMEM;
		d->deferred = h;
		d->deferred_cap = cap;
	}
	struct delivery_msg **h = d->deferred;
	size_t i = d->ndeferred++;
	h[i] = m;
	while (i > 0 && h[(i - 1) / 2]->retry_at > h[i]->retry_at) {
		delivery_heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static struct delivery_msg *delivery_defer_pop(struct delivery *d)
{
	struct delivery_msg **h = d->deferred;
	struct delivery_msg *top = h[0];
	h[0] = h[--d->ndeferred];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < d->ndeferred && h[l]->retry_at < h[m]->retry_at)
			m = l;
		if (r < d->ndeferred && h[r]->retry_at < h[m]->retry_at)
			m = r;
		if (m == i)
			break;
		delivery_heap_swap(h, i, m);
		i = m;
	}
	return top;
}

/* Schedule m again after a temporary failure. */
static void delivery_defer(struct delivery *d, struct delivery_msg *m, const char *qid)
{
	m->tries++;
	int64_t delay = DELIVERY_RETRY_MAX_S;
	if (m->tries <= 8) {
		delay = (int64_t)DELIVERY_RETRY_FIRST_S << (m->tries - 1);
		if (delay > DELIVERY_RETRY_MAX_S)
			delay = DELIVERY_RETRY_MAX_S;
	}
	m->retry_at = delivery_now_ms() + delay * 1000;
	if (delivery_defer_push(d, m) < 0) {
		log_err("%s delivery: out of memory for the retry list, stays queued until "
			"restart",
			qid);
		delivery_msg_free(m);
		return;
	}
	log_info("%s deferred retry_in=%llds tries=%u", qid, (long long)delay, m->tries);
}

/* ---- building one batch ---- */

/* Maildir stores Unix line ends.  The engine refuses bare CR and LF (and
 * lenient mode turned them into CRLF), so dropping the CR of each CRLF is
 * an exact conversion. */
static char *delivery_crlf_to_lf(const uint8_t *in, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		out[o++] = (char)in[i];
	}
	*outlen = o;
	return out;
}

static void delivery_count(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Journal a final state and remember that the journal needs a sync. */
static int delivery_journal(struct delivery *d, struct delivery_ctx *c, uint32_t rcpt,
			    enum spool_rcpt_state state)
{
	int rc = spool_journal_final(d->sp, &c->msg->ref, rcpt, state);
	if (rc < 0) {
		/* The copy exists (or the failure stands) but the journal
		 * did not take it: after a restart it is tried again. */
		log_err("%s journal rcpt=%u state=%d: %s", c->qid, rcpt, (int)state, strerror(-rc));
		return rc;
	}
	d->journal_dirty = true;
	return 0;
}

static void delivery_fail_rcpt(struct delivery *d, struct delivery_ctx *c, uint32_t i,
			       const char *reason)
{
	log_info("%s failed to=%s reason=%s", c->qid, c->env.rcpts[i].addr, reason);
	delivery_journal(d, c, i, SPOOL_RCPT_FAILED);
	delivery_count(&d->failed);
}

/* Recipient i goes to the remote agent (kind FAIL: to be failed there,
 * with a notice).  Without an agent a failure is journalled here and a
 * remote recipient stays pending. */
static void delivery_route_remote(struct delivery *d, struct delivery_ctx *c, uint32_t i,
				  enum relay_kind kind, const char *name, uint16_t port,
				  const char *status, const char *text)
{
	if (d->remote == NULL) {
		if (kind == RELAY_KIND_DELIVERED)
			return; /* no agent, no success notice */
		if (kind == RELAY_KIND_FAIL) {
			delivery_fail_rcpt(d, c, i, text);
			return;
		}
		log_info("%s held to=%s status=\"held: no remote delivery agent\"", c->qid,
			 c->env.rcpts[i].addr);
		delivery_count(&d->held);
		return;
	}
	struct delivery_remote *x = &c->remote[i];
	x->set = true;
	x->kind = kind;
	x->name = name;
	x->port = port;
	x->status = status;
	x->text = text;
}

static bool delivery_remote_same(const struct delivery_remote *a, const struct delivery_remote *b)
{
	if (!b->set || a->kind != b->kind || a->port != b->port)
		return false;
	if (a->kind == RELAY_KIND_FAIL || a->kind == RELAY_KIND_DELIVERED)
		return strcmp(a->status, b->status) == 0 && strcmp(a->text, b->text) == 0;
	return strcasecmp(a->name, b->name) == 0;
}

/* Hand c's remote recipients over, one submission per destination. */
static void delivery_remote_submit(struct delivery *d, struct delivery_ctx *c)
{
	uint32_t n = c->msg->nrcpts;
	uint32_t *idx = malloc((n ? n : 1) * sizeof(*idx));
	bool *noticed = malloc((n ? n : 1) * sizeof(*noticed));
	for (uint32_t i = 0; i < n; i++) {
		struct delivery_remote *x = &c->remote[i];
		if (!x->set)
			continue;
		struct relay_submission sub = {
		    .ref = c->msg->ref,
		    .arrival = c->env.arrival,
		    .kind = x->kind,
		    .name = x->name,
		    .port = x->port,
		    .rcpts = idx,
		    .noticed = noticed,
		    .fail_status = x->status,
		    .fail_text = x->text,
		};
		uint32_t k = 0;
		for (uint32_t j = i; idx && noticed && j < n; j++) {
			if (j != i && !delivery_remote_same(x, &c->remote[j]))
				continue;
			idx[k] = j;
			noticed[k] = c->msg->noticed != NULL && c->msg->noticed[j];
			k++;
			if (j != i)
				c->remote[j].set = false;
		}
		sub.nrcpts = k;
		int rc = k ? d->remote(d->remote_arg, &sub) : -ENOMEM;
		if (rc < 0)
			log_err("%s delivery: remote agent refused %u rcpts: %s; they stay queued "
				"until restart",
				c->qid, k ? k : 1, strerror(-rc));
		else if (x->kind != RELAY_KIND_FAIL && x->kind != RELAY_KIND_DELIVERED)
			for (uint32_t j = 0; j < k; j++) {
				log_info("%s queued to=%s relay=%s%s%s", c->qid,
					 c->env.rcpts[idx[j]].addr,
					 x->kind == RELAY_KIND_LMTP ? "lmtp:" : "", x->name,
					 x->kind == RELAY_KIND_MX ? " (mx)" : "");
				delivery_count(&d->held);
			}
		x->set = false;
	}
	free(idx);
	free(noticed);
}

/* Read the record of c->msg.  Returns 0, or <0 when the message is done
 * with (dropped) or deferred as a whole (c->defer_all). */
static int delivery_ctx_load(struct delivery *d, struct delivery_ctx *c)
{
	struct delivery_msg *m = c->msg;
	spool_qid_format(&m->ref, c->qid);
	size_t body_len = 0;
	int rc = spool_read(d->sp, &m->ref, &c->env, &c->body, &body_len);
	if (rc == -ENOENT) {
		log_warn("%s delivery: record is gone (segment reclaimed?), skipped", c->qid);
		return rc;
	}
	if (rc == -EBADMSG) {
		/* The bytes are lost; retrying cannot bring them back.  Fail
		 * the recipients so the segment can be reclaimed. */
		log_err("%s delivery: record corrupt (CRC mismatch)", c->qid);
		for (uint32_t i = 0; i < m->nrcpts; i++)
			if (m->pending == NULL || m->pending[i]) {
				log_info("%s failed rcpt=%u reason=corrupt-record", c->qid, i);
				delivery_journal(d, c, i, SPOOL_RCPT_FAILED);
				delivery_count(&d->failed);
			}
		return rc;
	}
	if (rc < 0) {
		log_warn("%s delivery: spool read: %s", c->qid, strerror(-rc));
		c->defer_all = true;
		return rc;
	}
	c->read_ok = true;
	if (c->env.nrcpts != m->nrcpts)
		log_warn("%s delivery: record has %u recipients, submitted with %u", c->qid,
			 c->env.nrcpts, m->nrcpts);
	c->body_len = body_len;
	c->defer = calloc(m->nrcpts ? m->nrcpts : 1, sizeof(*c->defer));
	c->remote = calloc(m->nrcpts ? m->nrcpts : 1, sizeof(*c->remote));
	if (c->defer == NULL || c->remote == NULL) {
		log_err("%s delivery: out of memory", c->qid);
		c->defer_all = true;
		return -ENOMEM;
	}
	return 0;
}

/* The LF body and its hash, made for the first Maildir copy only: mail
 * that leaves for the relay never needs them. */
static int delivery_ctx_lf(struct delivery_ctx *c)
{
	if (c->lf_body != NULL)
		return 0;
	c->lf_body = delivery_crlf_to_lf(c->body, c->body_len, &c->lf_len);
	if (c->lf_body == NULL)
		return -ENOMEM;
	c->body_hash = 0xcbf29ce484222325ULL;
	for (size_t k = 0; k < c->lf_len; k++)
		c->body_hash = (c->body_hash ^ (unsigned char)c->lf_body[k]) * 0x100000001b3ULL;
	return 0;
}

/* Build the Maildir copy for recipient i of c (route r is ROUTE_LOCAL). */
static int delivery_copy_init(struct delivery *d, struct delivery_ctx *c, uint32_t i,
			      const struct route *r, struct delivery_copy *cp)
{
	const char *addr = c->env.rcpts[i].addr;
	memset(cp, 0, sizeof(*cp));
	if (delivery_ctx_lf(c) < 0)
		return -ENOMEM;
	cp->ctx = c;
	cp->rcpt = i;
	cp->root = strdup(r->maildir_root);
	cp->addr = strdup(addr);
	if (cp->root == NULL || cp->addr == NULL)
		return -ENOMEM;
	char *at = strrchr(cp->addr, '@');
	*at = '\0';
	cp->user = cp->addr;
	cp->domain = at + 1;
	int n = trace_received(&cp->hdr, &c->env, c->qid, d->hostname, addr, false);
	if (n < 0)
		return -ENOMEM;
	cp->iov[0].iov_base = cp->hdr;
	cp->iov[0].iov_len = (size_t)n;
	cp->iov[1].iov_base = c->lf_body;
	cp->iov[1].iov_len = c->lf_len;
	/* A queue id is unique only while its record lives: arrival and the
	 * body's hash make a clash with an old left-over link (same qid, same
	 * second) mean an identical copy, not a lost one. */
	snprintf(cp->tag, sizeof(cp->tag), "%lld.%s.%016llxR%u", (long long)c->env.arrival, c->qid,
		 (unsigned long long)c->body_hash, i);
	return 0;
}

static void delivery_copy_free(struct delivery_copy *cp)
{
	free(cp->root);
	free(cp->addr);
	free(cp->hdr);
}

static void delivery_defer_rcpt(struct delivery_ctx *c, uint32_t i)
{
	if (!c->defer[i]) {
		c->defer[i] = true;
		c->ndefer++;
	}
}

/*
 * Route every pending recipient of c: local copies go to *copies, the
 * rest is failed or held right away.  Needs the RCU read side (online).
 */
static int delivery_ctx_route(struct delivery *d, struct delivery_ctx *c,
			      struct delivery_copy **copies, size_t *ncopies, size_t *cap)
{
	struct delivery_msg *m = c->msg;
	const struct route_table *t = route_current();
	uint32_t n = c->env.nrcpts < m->nrcpts ? c->env.nrcpts : m->nrcpts;
	for (uint32_t i = 0; i < n; i++) {
		if (m->pending != NULL && !m->pending[i])
			continue;
		const char *addr = c->env.rcpts[i].addr;
		const char *at = strrchr(addr, '@');
		const struct route *r = NULL;
		if (t != NULL && at != NULL)
			r = route_lookup(t, at + 1);
		enum route_action act = r ? r->action : ROUTE_NONE;
		if (act == ROUTE_REJECT) {
			delivery_route_remote(d, c, i, RELAY_KIND_FAIL, NULL, 0, "5.7.1",
					      "rejected-by-route");
			continue;
		}
		if (act == ROUTE_LOCAL && r->lmtp) {
			delivery_route_remote(d, c, i, RELAY_KIND_LMTP, r->relay_host,
					      r->relay_port, NULL, NULL);
			continue;
		}
		if (act == ROUTE_LOCAL) {
			char user[512];
			size_t ul = (size_t)(at - addr);
			if (ul == 0 || ul >= sizeof(user)) {
				delivery_route_remote(d, c, i, RELAY_KIND_FAIL, NULL, 0, "5.1.3",
						      "bad-local-part");
				continue;
			}
			memcpy(user, addr, ul);
			user[ul] = '\0';
			if (r->maildir_root == NULL || r->maildir_root[0] == '\0') {
				/* route.c refuses this; never write under "/". */
				log_err("%s delivery: local route %s has no maildir_root", c->qid,
					r->pattern);
				delivery_defer_rcpt(c, i);
				continue;
			}
			if (!route_local_user_exists(r, user)) {
				delivery_route_remote(d, c, i, RELAY_KIND_FAIL, NULL, 0, "5.1.1",
						      "unknown-user");
				continue;
			}
			if (*ncopies == *cap) {
				size_t ncap = *cap ? *cap * 2 : 64;
				struct delivery_copy *p = realloc(*copies, ncap * sizeof(*p));
				if (p == NULL) {
					delivery_defer_rcpt(c, i);
					continue;
				}
				*copies = p;
				*cap = ncap;
			}
			struct delivery_copy *cp = &(*copies)[*ncopies];
			if (delivery_copy_init(d, c, i, r, cp) < 0) {
				log_err("%s delivery: out of memory to=%s", c->qid, addr);
				delivery_copy_free(cp);
				delivery_defer_rcpt(c, i);
				continue;
			}
			(*ncopies)++;
			continue;
		}
		/* RELAY_VIA: the smart host; RELAY, or no route (a relay
		 * client's mail): the domain's MX. */
		if (act == ROUTE_RELAY_VIA)
			delivery_route_remote(d, c, i, RELAY_KIND_HOST, r->relay_host,
					      r->relay_port, NULL, NULL);
		else if (at != NULL)
			delivery_route_remote(d, c, i, RELAY_KIND_MX, at + 1, 0, NULL, NULL);
		else
			delivery_route_remote(d, c, i, RELAY_KIND_FAIL, NULL, 0, "5.1.3",
					      "no-domain");
	}
	delivery_remote_submit(d, c);
	return 0;
}

/*
 * Write the copies and journal the results.  Returns the jobs (the caller
 * releases their tmp/ links once the journal is synced, then frees them),
 * or NULL when there was nothing to write or no memory.
 */
static struct maildir_job *delivery_copies_write(struct delivery *d, struct delivery_copy *copies,
						 size_t n)
{
	if (n == 0)
		return NULL;
	struct maildir_job *jobs = calloc(n, sizeof(*jobs));
	if (jobs == NULL) {
		for (size_t k = 0; k < n; k++)
			delivery_defer_rcpt(copies[k].ctx, copies[k].rcpt);
		log_err("delivery: out of memory for %zu Maildir jobs", n);
		return NULL;
	}
	for (size_t k = 0; k < n; k++) {
		jobs[k].root = copies[k].root;
		jobs[k].domain = copies[k].domain;
		jobs[k].user = copies[k].user;
		jobs[k].iov = copies[k].iov;
		jobs[k].iovcnt = 2;
		jobs[k].tag = copies[k].tag;
	}
	maildir_deliver_batch(jobs, n, d->hostname);
	for (size_t k = 0; k < n; k++) {
		struct delivery_copy *cp = &copies[k];
		struct delivery_ctx *c = cp->ctx;
		const char *addr = c->env.rcpts[cp->rcpt].addr;
		int rc = jobs[k].result;
		if (rc == 0) {
			char dom[256], user[256];
			if (maildir_safe_name(cp->domain, dom, sizeof(dom)) < 0)
				strcpy(dom, "?");
			if (maildir_safe_name(cp->user, user, sizeof(user)) < 0)
				strcpy(user, "?");
			log_info("%s delivered to=%s mailbox=%s/%s/%s size=%zu%s", c->qid, addr,
				 cp->root, dom, user, cp->iov[0].iov_len + cp->iov[1].iov_len,
				 jobs[k].found ? " note=copy-of-earlier-attempt" : "");
			/* Not journalled: keep the tmp/ link, so a retry after
			 * a restart finds the copy instead of writing two. */
			if (delivery_journal(d, c, cp->rcpt, SPOOL_RCPT_DELIVERED) < 0)
				jobs[k].tag = NULL;
			delivery_count(&d->delivered);
			/* NOTIFY=SUCCESS: the relay composes the "delivered"
			 * notice (RFC 3461 4.1) like any other. */
			if (c->env.rcpts[cp->rcpt].notify & ENVELOPE_NOTIFY_SUCCESS &&
			    c->env.sender[0] != '\0') {
				delivery_route_remote(d, c, cp->rcpt, RELAY_KIND_DELIVERED, NULL, 0,
						      "2.0.0", "delivered to the mailbox");
				delivery_remote_submit(d, c);
			}
		} else if (rc == -EINVAL || rc == -ENAMETOOLONG) {
			/* No mailbox can ever be made for this name. */
			delivery_route_remote(d, c, cp->rcpt, RELAY_KIND_FAIL, NULL, 0, "5.1.3",
					      "bad-mailbox-name");
			delivery_remote_submit(d, c);
		} else {
			/* Disk full, permissions, I/O: the operator can fix it. */
			log_warn("%s deferred to=%s reason=\"%s\"", c->qid, addr, strerror(-rc));
			delivery_defer_rcpt(c, cp->rcpt);
		}
	}
	return jobs;
}

/* Make the journal entries written so far durable (once per batch). */
static void delivery_journal_sync(struct delivery *d)
{
	if (!d->journal_dirty)
		return;
	int rc = spool_journal_sync(d->sp);
	if (rc < 0) {
		log_err("delivery: journal sync: %s (will retry)", strerror(-rc));
		return;
	}
	d->journal_dirty = false;
}

/* Deliver up to DELIVERY_BATCH messages.  Called online; returns online. */
static void delivery_batch(struct delivery *d, struct delivery_msg **msgs, size_t n)
{
	struct delivery_ctx *ctx = calloc(n, sizeof(*ctx));
	struct delivery_copy *copies = NULL;
	size_t ncopies = 0, cap = 0;
	if (ctx == NULL) {
		log_err("delivery: out of memory for a batch of %zu", n);
		for (size_t i = 0; i < n; i++) {
			char qid[SPOOL_QID_LEN + 1];
			spool_qid_format(&msgs[i]->ref, qid);
			delivery_defer(d, msgs[i], qid);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct delivery_ctx *c = &ctx[i];
		c->msg = msgs[i];
		if (delivery_ctx_load(d, c) == 0)
			delivery_ctx_route(d, c, &copies, &ncopies, &cap);
	}

	/* Everything the route table lent us was copied: let an updater's
	 * grace period end while we wait on the disk. */
	rcu_thread_offline();
	struct maildir_job *jobs = delivery_copies_write(d, copies, ncopies);
	delivery_journal_sync(d);
	/*
	 * Exactly once: each copy's tmp/ link goes only after its DELIVERED
	 * is durable.  A crash before that leaves the link, and the retry
	 * after recovery finds the copy (maildir.h).  XXX: when the sync
	 * failed the links stay until a Maildir reader cleans tmp/.
	 */
	if (jobs != NULL && !d->journal_dirty)
		maildir_release_batch(jobs, ncopies, d->hostname);
	free(jobs);
	rcu_thread_online();

	for (size_t k = 0; k < ncopies; k++)
		delivery_copy_free(&copies[k]);
	free(copies);
	for (size_t i = 0; i < n; i++) {
		struct delivery_ctx *c = &ctx[i];
		struct delivery_msg *m = c->msg;
		if (c->defer_all) {
			delivery_defer(d, m, c->qid);
		} else if (c->ndefer > 0) {
			free(m->pending);
			m->pending = c->defer;
			c->defer = NULL;
			delivery_defer(d, m, c->qid);
		} else {
			delivery_msg_free(m);
		}
		free(c->defer);
		free(c->remote);
		free(c->lf_body);
		free(c->body);
		if (c->read_ok)
			envelope_free(&c->env);
	}
	free(ctx);
}

/* ---- the thread ---- */

/* Move new submissions and due retries to the todo list.  Returns the ms
 * until the next retry, or -1 if none waits. */
static int delivery_collect(struct delivery *d)
{
	__cds_wfcq_splice_blocking(&d->todo_head, &d->todo_tail, &d->inq_head, &d->inq_tail);
	int64_t now = delivery_now_ms();
	while (d->ndeferred > 0 && d->deferred[0]->retry_at <= now) {
		struct delivery_msg *m = delivery_defer_pop(d);
		cds_wfcq_node_init(&m->node);
		cds_wfcq_enqueue(&d->todo_head, &d->todo_tail, &m->node);
	}
	if (d->ndeferred == 0)
		return -1;
	int64_t wait = d->deferred[0]->retry_at - now;
	return wait > 3600 * 1000 ? 3600 * 1000 : (int)wait;
}

/* Sleep until a submission, a stop request or timeout_ms (-1: none). */
static void delivery_wait(struct delivery *d, int timeout_ms)
{
	atomic_store(&d->sleeping, true);
	/* Pairs with delivery_wake(): a node enqueued before the fence is
	 * seen below; one enqueued after sees sleeping and writes efd. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!cds_wfcq_empty(&d->inq_head, &d->inq_tail) || atomic_load(&d->stop)) {
		atomic_store(&d->sleeping, false);
		return;
	}
	rcu_thread_offline();
	struct pollfd pfd = {.fd = d->efd, .events = POLLIN};
	if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
		log_err("delivery: poll: %s", strerror(errno));
	rcu_thread_online();
	atomic_store(&d->sleeping, false);
	uint64_t v;
	if (read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_err("delivery: eventfd read: %s", strerror(errno));
}

static void *delivery_main(void *arg)
{
	struct delivery *d = arg;
	struct delivery_msg *batch[DELIVERY_BATCH];
	pthread_setname_np(pthread_self(), "sluice-deliver");
	/* Receiving comes first when cores are short: a burst goes into the
	 * durable queue at full speed and is delivered as cores free up.
	 * Nice 10 is a weight (about a tenth of a worker's share under
	 * contention), not starvation: delivery still progresses under
	 * sustained load. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), DELIVERY_NICE) != 0)
		log_warn("delivery: setpriority: %s", strerror(errno));
	rcu_register_thread();
	for (;;) {
		/* Read stop before collecting: what was queued before the
		 * stop request is then delivered before we exit. */
		bool stopping = atomic_load(&d->stop);
		int timeout = delivery_collect(d);
		size_t n = 0;
		struct cds_wfcq_node *node;
		while (n < DELIVERY_BATCH &&
		       (node = __cds_wfcq_dequeue_blocking(&d->todo_head, &d->todo_tail)) != NULL)
			batch[n++] = caa_container_of(node, struct delivery_msg, node);
		if (n > 0) {
			delivery_batch(d, batch, n);
			rcu_quiescent_state();
			continue;
		}
		if (stopping)
			break;
		if (d->journal_dirty) {
			/* A journal sync failed: retry about once a second. */
			rcu_thread_offline();
			delivery_journal_sync(d);
			rcu_thread_online();
			if (d->journal_dirty && (timeout < 0 || timeout > 1000))
				timeout = 1000;
		}
		delivery_wait(d, timeout);
	}
	delivery_journal_sync(d);
	rcu_unregister_thread();
	return NULL;
}

void delivery_stop(struct delivery *d)
{
	if (d == NULL)
		return;
	if (d->started) {
		atomic_store(&d->stop, true);
		atomic_store(&d->sleeping, false);
		uint64_t one = 1;
		if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_err("delivery: eventfd write: %s", strerror(errno));
		int rc = pthread_join(d->thread, NULL);
		if (rc != 0)
			log_err("delivery: join: %s", strerror(rc));
	}
	/* Whatever is left (never started, or deferred) stays pending in the
	 * spool; recovery at the next start submits it again. */
	size_t left = d->ndeferred;
	for (size_t i = 0; i < d->ndeferred; i++)
		delivery_msg_free(d->deferred[i]);
	free(d->deferred);
	struct cds_wfcq_node *node;
	__cds_wfcq_splice_blocking(&d->todo_head, &d->todo_tail, &d->inq_head, &d->inq_tail);
	while ((node = __cds_wfcq_dequeue_blocking(&d->todo_head, &d->todo_tail)) != NULL) {
		delivery_msg_free(caa_container_of(node, struct delivery_msg, node));
		left++;
	}
	if (left > 0)
		log_info("delivery: stopped, messages_left=%zu stay queued for the next start",
			 left);
	if (close(d->efd) < 0)
		log_err("delivery: close eventfd: %s", strerror(errno));
	free(d->hostname);
	free(d);
}
