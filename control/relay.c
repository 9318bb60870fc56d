/* relay: the remote delivery agent's thread, destinations and loop (relay.h). */
#include "control/relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "control/relay_pvt.h"

/* CPU priority of the relay thread relative to the workers (nice). */
#define RELAY_NICE 10
/* Events handled per epoll_wait. */
#define RELAY_EVENTS 256
/* Recipients per submission we accept (the engine's max_recipients is far
 * below; this only bounds one allocation). */
#define RELAY_MAX_RCPTS 100000

static void *relay_main(void *arg);

int64_t relay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: jitter only, no secrecy needed. */
uint32_t relay_random(struct relay *r)
{
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return (uint32_t)((r->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

void relay_count(atomic_uint_fast64_t *c, int64_t n)
{
	atomic_fetch_add_explicit(c, (uint_fast64_t)n, memory_order_relaxed);
}

void relay_result_set(struct relay_result *res, uint16_t code, const char *enh,
		      const char *text)
{
	free(res->text);
	res->code = code;
	snprintf(res->enh, sizeof(res->enh), "%s", enh ? enh : "");
	res->text = text ? strdup(text) : NULL;
	res->local = false;
}

void relay_result_clear(struct relay_result *res)
{
	free(res->text);
	memset(res, 0, sizeof(*res));
}

/* ---- set-up ---- */

/* EHLO, Received: and Reporting-MTA need a plain host name. */
static bool relay_hostname_ok(const char *s)
{
	if (!s || !s[0] || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '-'))
			return false;
	return true;
}

struct relay *relay_new(struct spool *sp, relay_notice_fn *notice, void *notice_arg,
			const struct relay_cfg *cfg, char *err, size_t errlen)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->sp = sp;
	r->notice = notice;
	r->notice_arg = notice_arg;
	r->cfg = *cfg;
	r->hostname = strdup(relay_hostname_ok(cfg->hostname) ? cfg->hostname : "localhost");
	r->cfg.hostname = r->hostname;
	r->cfg.dns_servers = NULL; /* not kept: copied by the resolver */
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->dests_cap = 1024;
	r->dests = calloc(r->dests_cap, sizeof(*r->dests));
	struct dns_cfg dcfg = {
	    .servers = cfg->dns_servers,
	    .timeout_ms = cfg->dns_timeout_ms,
	    .ipv6 = cfg->ipv6,
	};
	if (r->hostname && r->efd >= 0 && r->epfd >= 0 && r->dests)
		r->dns = dns_resolver_new(&dcfg, err, errlen);
	else
		snprintf(err, errlen, "out of memory or file descriptors");
	if (!r->dns) {
		if (r->efd >= 0)
			close(r->efd);
		if (r->epfd >= 0)
			close(r->epfd);
		free(r->dests);
		free(r->hostname);
		free(r);
		return NULL;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() ^ 1;
	__cds_wfcq_init(&r->inq_head, &r->inq_tail);
	atomic_init(&r->stop, false);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->efd, &ev) != 0)
		log_err("relay: epoll_ctl eventfd: %s", strerror(errno));
	ev.data.ptr = r; /* marks the DNS fd */
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, dns_resolver_fd(r->dns), &ev) != 0)
		log_err("relay: epoll_ctl dns: %s", strerror(errno));
	return r;
}

static void relay_wake(void *arg)
{
	struct relay *r = arg;
	uint64_t one = 1;
	if (write(r->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("relay: eventfd write: %s", strerror(errno));
}

int relay_start(struct relay *r)
{
	if (r->started)
		return -EALREADY;
	/* Worker number past any dataplane worker's: only used in logs. */
	r->w = spool_writer_new(r->sp, 9999, relay_wake, r);
	if (!r->w)
		return -ENOMEM;
	spool_writer_allow_over_max_size(r->w);
	int rc = pthread_create(&r->thread, NULL, relay_main, r);
	if (rc != 0) {
		log_err("relay: cannot start thread: %s", strerror(rc));
		return -rc;
	}
	r->started = true;
	return 0;
}

int relay_submit(struct relay *r, const struct relay_submission *s)
{
	if (s->nrcpts == 0 || s->nrcpts > RELAY_MAX_RCPTS)
		return -EINVAL;
	bool local = s->kind == RELAY_KIND_FAIL || s->kind == RELAY_KIND_DELIVERED;
	size_t nlen = local || !s->name ? 0 : strlen(s->name);
	struct relay_input *in = malloc(sizeof(*in) + nlen + 1);
	struct relay_job *job = malloc(sizeof(*job) + s->nrcpts * sizeof(job->rcpts[0]));
	if (!in || !job) {
		free(in);
		free(job);
		return -ENOMEM;
	}
	memset(job, 0, sizeof(*job));
	job->ref = s->ref;
	job->arrival = s->arrival;
	job->nrcpts = s->nrcpts;
	for (uint32_t i = 0; i < s->nrcpts; i++)
		job->rcpts[i] = s->rcpts[i] | (s->noticed && s->noticed[i] ? RELAY_RCPT_NOTICED : 0);
	if (local) {
		const char *st = s->fail_status ? s->fail_status : "5.0.0";
		const char *tx = s->fail_text ? s->fail_text : "delivery failed";
		size_t a = strlen(st) + 1, b = strlen(tx) + 1;
		job->fail = malloc(a + b);
		if (!job->fail) {
			free(in);
			free(job);
			return -ENOMEM;
		}
		memcpy(job->fail, st, a);
		memcpy(job->fail + a, tx, b);
	}
	in->job = job;
	in->kind = s->kind;
	in->port = s->port;
	for (size_t i = 0; i < nlen; i++) {
		char ch = s->name[i];
		in->name[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
	}
	in->name[nlen] = '\0';
	cds_wfcq_node_init(&in->node);
	cds_wfcq_enqueue(&r->inq_head, &r->inq_tail, &in->node);
	relay_wake(r);
	return 0;
}

void relay_get_stats(struct relay *r, struct relay_stats *out)
{
	out->delivered = atomic_load(&r->st_delivered);
	out->deferred = atomic_load(&r->st_deferred);
	out->failed = atomic_load(&r->st_failed);
	out->notices = atomic_load(&r->st_notices);
	out->connections = atomic_load(&r->st_conns);
	out->reused = atomic_load(&r->st_reused);
	out->queued = atomic_load(&r->st_queued);
	out->queued_rcpts = atomic_load(&r->st_queued_rcpts);
}

/* ---- destinations ---- */

static uint64_t relay_dest_hash(const char *name, enum relay_kind kind, uint16_t port)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ ((uint64_t)kind << 16 | port);
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	return h;
}

static int relay_dests_grow(struct relay *r)
{
	size_t cap = r->dests_cap * 2;
	struct relay_dest **v = calloc(cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < r->dests_cap; i++) {
		struct relay_dest *d = r->dests[i], *n;
		for (; d; d = n) {
			n = d->hnext;
			size_t b = relay_dest_hash(d->name, d->kind, d->port) & (cap - 1);
			d->hnext = v[b];
			v[b] = d;
		}
	}
	free(r->dests);
	r->dests = v;
	r->dests_cap = cap;
	return 0;
}

static struct relay_dest *relay_dest_get(struct relay *r, const char *name,
					 enum relay_kind kind, uint16_t port)
{
	if (kind == RELAY_KIND_MX)
		port = r->cfg.mx_port;
	size_t b = relay_dest_hash(name, kind, port) & (r->dests_cap - 1);
	for (struct relay_dest *d = r->dests[b]; d; d = d->hnext)
		if (d->kind == kind && d->port == port && strcmp(d->name, name) == 0)
			return d;
	if (r->ndests >= r->dests_cap && relay_dests_grow(r) == 0)
		b = relay_dest_hash(name, kind, port) & (r->dests_cap - 1);
	struct relay_dest *d = calloc(1, sizeof(*d));
	if (!d || !(d->name = strdup(name))) {
		free(d);
		return NULL;
	}
	d->kind = kind;
	d->port = port;
	d->hnext = r->dests[b];
	r->dests[b] = d;
	r->ndests++;
	return d;
}

static void relay_dest_push(struct relay_dest *d, struct relay_job *job)
{
	job->next = NULL;
	job->dest = d;
	if (d->ready_tail)
		d->ready_tail->next = job;
	else
		d->ready_head = job;
	d->ready_tail = job;
	d->nready++;
}

struct relay_job *relay_dest_pop(struct relay_dest *d)
{
	struct relay_job *job = d->ready_head;
	if (!job)
		return NULL;
	d->ready_head = job->next;
	if (!d->ready_head)
		d->ready_tail = NULL;
	d->nready--;
	job->next = NULL;
	return job;
}

/*
 * Give d's ready jobs connections: idle ones first, then new ones while
 * the limits allow and fewer are opening than jobs wait.
 */
void relay_dest_pump(struct relay *r, struct relay_dest *d)
{
	while (d->ready_head) {
		if (relay_conn_idle_take(d))
			continue;
		if (d->nopening >= d->nready || d->nconns >= r->cfg.dest_conns)
			return;
		if (r->nconns >= r->cfg.max_conns) {
			if (!d->wanting) {
				d->wanting = true;
				d->want_next = r->want;
				r->want = d;
			}
			return;
		}
		if (relay_conn_open(r, d) < 0)
			return;
	}
}

/* Pump d soon: from the loop, not from inside a connection's handler
 * (which could then be re-entered). */
void relay_dest_kick(struct relay *r, struct relay_dest *d)
{
	if (d->kicked)
		return;
	d->kicked = true;
	d->kick_next = r->kick;
	r->kick = d;
}

static void relay_take_kicked(struct relay *r)
{
	while (r->kick) {
		struct relay_dest *d = r->kick;
		r->kick = d->kick_next;
		d->kicked = false;
		relay_dest_pump(r, d);
	}
}

/* A global slot may have come free: destinations that waited go first. */
static void relay_want_pump(struct relay *r)
{
	while (r->want && r->nconns < r->cfg.max_conns) {
		struct relay_dest *d = r->want;
		r->want = d->want_next;
		d->wanting = false;
		relay_dest_pump(r, d);
	}
}

/* ---- the loop ---- */

/* Jobs handed over by other threads go to their destinations. */
static void relay_take_input(struct relay *r)
{
	struct cds_wfcq_node *node;
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	__cds_wfcq_init(&head, &tail);
	__cds_wfcq_splice_blocking(&head, &tail, &r->inq_head, &r->inq_tail);
	while ((node = __cds_wfcq_dequeue_blocking(&head, &tail)) != NULL) {
		struct relay_input *in = caa_container_of(node, struct relay_input, node);
		struct relay_job *job = in->job;
		relay_count(&r->st_queued, 1);
		relay_count(&r->st_queued_rcpts, job->nrcpts);
		if (in->kind == RELAY_KIND_FAIL || in->kind == RELAY_KIND_DELIVERED) {
			struct relay_result all = {.local = true};
			snprintf(all.enh, sizeof(all.enh), "%s", job->fail);
			all.text = job->fail + strlen(job->fail) + 1;
			all.code = all.enh[0] == '2' ? 250 : all.enh[0] == '4' ? 450 : 550;
			if (in->kind == RELAY_KIND_DELIVERED)
				job->flags = RELAY_JOB_SAY_DELIVERED | RELAY_JOB_JOURNALLED;
			relay_job_finish(r, job, NULL, &all, NULL, NULL, 0, NULL);
			free(in);
			continue;
		}
		struct relay_dest *d = relay_dest_get(r, in->name, in->kind, in->port);
		if (!d) {
			char qid[SPOOL_QID_LEN + 1];
			spool_qid_format(&job->ref, qid);
			log_err("%s relay: out of memory, stays queued until restart", qid);
			relay_job_free(r, job);
		} else {
			relay_dest_push(d, job);
			relay_dest_pump(r, d);
		}
		free(in);
	}
}

/* Deferred jobs whose time has come go back to their destinations. */
static void relay_take_due(struct relay *r, int64_t now)
{
	while (r->nheap && r->heap[0]->retry_at <= now) {
		struct relay_job *job = relay_heap_pop(r);
		relay_dest_push(job->dest, job);
		relay_dest_kick(r, job->dest);
	}
}

/* Connect the connections whose DNS lookup completed. */
static void relay_take_resolved(struct relay *r)
{
	while (r->resolved) {
		struct relay_conn *c = r->resolved;
		r->resolved = c->resolved_next;
		c->resolved_next = NULL;
		relay_conn_resolved(c);
	}
}

/* The earliest connection deadline, as a wait from now (-1: none); fires
 * those that passed. */
static int64_t relay_timeouts(struct relay *r, int64_t now)
{
	int64_t wait = -1;
	struct relay_conn *c = r->conns, *n;
	for (; c; c = n) {
		n = c->next;
		if (c->deadline && c->deadline <= now) {
			relay_conn_check_timeout(c, now);
			continue; /* c may be gone */
		}
		if (c->deadline && (wait < 0 || c->deadline - now < wait))
			wait = c->deadline - now;
	}
	return wait;
}

static int relay_min_wait(int64_t a, int64_t b)
{
	int64_t w = a < 0 ? b : b < 0 ? a : a < b ? a : b;
	if (w < 0 || w > 60000)
		w = 60000;
	return (int)w;
}

static void relay_loop_once(struct relay *r, int timeout)
{
	struct epoll_event evs[RELAY_EVENTS];
	int n = epoll_wait(r->epfd, evs, RELAY_EVENTS, timeout);
	if (n < 0 && errno != EINTR)
		log_err("relay: epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;
		if (p == NULL) {
			uint64_t v;
			if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_err("relay: eventfd read: %s", strerror(errno));
		} else if (p == r) {
			if (r->dns)
				dns_resolver_process(r->dns);
		} else {
			relay_conn_event(p, evs[i].events);
		}
	}
	if (r->dns && (n == 0 || dns_resolver_timeout_ms(r->dns) == 0))
		dns_resolver_process(r->dns);
}

/* Every RELAY_STATS_MS, if anything moved: one line for operators (and
 * for bench/backlog, which reads the queue size from it). */
#define RELAY_STATS_MS 10000

static void relay_log_stats(struct relay *r, int64_t now, int64_t *next, uint64_t *last_sum)
{
	if (now < *next)
		return;
	*next = now + RELAY_STATS_MS;
	struct relay_stats st;
	relay_get_stats(r, &st);
	uint64_t sum = st.delivered + st.deferred + st.failed + st.notices + st.queued_rcpts;
	if (sum == *last_sum)
		return;
	*last_sum = sum;
	log_info("relay: stats queued_jobs=%llu queued_rcpts=%llu delivered=%llu deferred=%llu "
		 "failed=%llu notices=%llu connections=%llu reused=%llu destinations=%zu",
		 (unsigned long long)st.queued, (unsigned long long)st.queued_rcpts,
		 (unsigned long long)st.delivered, (unsigned long long)st.deferred,
		 (unsigned long long)st.failed, (unsigned long long)st.notices,
		 (unsigned long long)st.connections, (unsigned long long)st.reused, r->ndests);
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	pthread_setname_np(pthread_self(), "sluice-relay");
	/* Receiving first, as for local delivery (delivery.c): under load a
	 * burst goes into the durable queue at full speed, and retries of a
	 * large backlog take what the workers leave. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), RELAY_NICE) != 0)
		log_warn("relay: setpriority: %s", strerror(errno));
	int timeout = 0;
	int64_t next_stats = relay_now_ms() + RELAY_STATS_MS;
	uint64_t last_sum = 0;
	while (!atomic_load(&r->stop)) {
		relay_loop_once(r, timeout);
		relay_take_input(r);
		int64_t now = relay_now_ms();
		relay_take_due(r, now);
		relay_take_resolved(r);
		int64_t tmo = relay_timeouts(r, relay_now_ms());
		relay_log_stats(r, now, &next_stats, &last_sum);
		relay_take_resolved(r);
		relay_notice_poll(r);
		relay_journal_sync(r);
		relay_take_kicked(r);
		relay_want_pump(r);
		relay_take_resolved(r);
		int64_t dns = dns_resolver_timeout_ms(r->dns);
		/* After everything above: a job deferred just now counts. */
		int64_t due = r->nheap ? r->heap[0]->retry_at - relay_now_ms() : -1;
		if (due < 0 && r->nheap)
			due = 0;
		timeout = relay_min_wait(relay_min_wait(due, tmo), dns);
		if (r->kick || r->resolved)
			timeout = 0;
		if (r->journal_dirty && timeout > 1000)
			timeout = 1000; /* a journal sync failed: retry */
		if (r->nw_head && timeout > 100)
			timeout = 100; /* notices wait for the committer's wake-up */
		if (timeout > RELAY_STATS_MS)
			timeout = RELAY_STATS_MS;
	}
	/* Lookups still pending call back now, while their connections
	 * exist; then the connections go. */
	dns_resolver_free(r->dns);
	r->dns = NULL;
	r->resolved = NULL;
	relay_conn_close_all(r);
	/* Notices queued last wait for their sync (the committer still runs),
	 * so a clean stop leaves none to be sent twice; bounded. */
	int64_t give_up = relay_now_ms() + 5000;
	relay_notice_poll(r);
	while (r->nw_head && relay_now_ms() < give_up) {
		relay_loop_once(r, 100);
		relay_notice_poll(r);
	}
	relay_journal_sync(r);
	return NULL;
}

void relay_stop(struct relay *r)
{
	if (!r)
		return;
	if (r->started && !atomic_load(&r->stop)) {
		atomic_store(&r->stop, true);
		relay_wake(r);
		int rc = pthread_join(r->thread, NULL);
		if (rc != 0)
			log_err("relay: join: %s", strerror(rc));
	}
	if (r->w)
		spool_writer_close(r->w);
	r->w = NULL;
	r->started = false;
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	relay_stop(r);
	dns_resolver_free(r->dns);
	/* Whatever is left stays pending in the spool for the next start. */
	size_t left = r->nheap;
	for (size_t i = 0; i < r->nheap; i++)
		relay_job_free(r, r->heap[i]);
	free(r->heap);
	for (size_t b = 0; b < r->dests_cap; b++) {
		struct relay_dest *d = r->dests[b], *n;
		for (; d; d = n) {
			n = d->hnext;
			struct relay_job *job;
			while ((job = relay_dest_pop(d)) != NULL) {
				relay_job_free(r, job);
				left++;
			}
			free(d->name);
			free(d);
		}
	}
	free(r->dests);
	struct cds_wfcq_node *node;
	while ((node = __cds_wfcq_dequeue_blocking(&r->inq_head, &r->inq_tail)) != NULL) {
		struct relay_input *in = caa_container_of(node, struct relay_input, node);
		relay_job_free(r, in->job);
		free(in);
		left++;
	}
	while (r->nw_head) {
		struct relay_notice_wait *w = r->nw_head;
		r->nw_head = w->next;
		free(w);
	}
	if (left)
		log_info("relay: stopped, jobs_left=%zu stay queued for the next start", left);
	close(r->efd);
	close(r->epfd);
	free(r->hostname);
	free(r);
}
