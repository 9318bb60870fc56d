/*
 * send: `sluice-bench send`, the run, its workers and their connections
 * (the design is in send_pvt.h).
 */
#include "bench/bench.h"
#include "bench/send_pvt.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Run */
static int send_run_init(struct send_run *run, const struct send_opts *o);
static void send_run_fini(struct send_run *run);
/* Rate */
static void send_rate_unpark(struct send_worker *w, struct send_conn *c);
static void send_rate_release(struct send_worker *w);
/* Connections */
static void send_conn_open(struct send_worker *w, struct send_conn *c);
static int send_conn_connected(struct send_worker *w, struct send_conn *c, uint32_t events);
static void send_conn_event(struct send_worker *w, struct send_conn *c, uint32_t events);
static int send_conn_read(struct send_worker *w, struct send_conn *c, uint32_t events);
static int send_conn_flush(struct send_worker *w, struct send_conn *c);
static void send_conn_kick(struct send_worker *w, struct send_conn *c);
/* Workers */
static int send_worker_init(struct send_worker *w, struct send_run *run, unsigned id);
static void *send_worker_main(void *arg);
static void send_worker_sweep(struct send_worker *w);
static void send_worker_wind_down(struct send_worker *w);
static int send_worker_timeout_ms(const struct send_worker *w);

/* ---- run ---------------------------------------------------------------- */

void send_run_fatal(struct send_run *run, const char *fmt, ...)
{
	va_list ap;

	if (atomic_flag_test_and_set(&run->fatal_set))
		return;
	va_start(ap, fmt);
	vsnprintf(run->fatal, sizeof(run->fatal), fmt, ap);
	va_end(ap);
	atomic_store(&run->stop, true);
}

/*
 * Messages are reserved before they start: a slot opens a connection only
 * with a reservation in hand (its first message), and a session takes one
 * for every further message.  Reservations never exceed --messages, so no
 * session opens that will have nothing to send, and a session that ends
 * before its first message gives its reservation back for another slot.
 * --messages 0 (until --duration) reserves without a bound.
 */

/* Messages left to reserve (a peek: send_run_reserve is the claim). */
bool send_run_has_work(struct send_run *run)
{
	const struct send_opts *o = run->opt;

	if (atomic_load_explicit(&run->stop, memory_order_relaxed))
		return false;
	return o->messages == 0 ||
	       atomic_load_explicit(&run->reserved, memory_order_relaxed) < o->messages;
}

bool send_run_reserve(struct send_run *run)
{
	const struct send_opts *o = run->opt;
	uint64_t r;

	if (atomic_load_explicit(&run->stop, memory_order_relaxed))
		return false;
	if (o->messages == 0)
		return true;
	r = atomic_load_explicit(&run->reserved, memory_order_relaxed);
	while (r < o->messages)
		if (atomic_compare_exchange_weak_explicit(
			&run->reserved, &r, r + 1, memory_order_relaxed, memory_order_relaxed))
			return true;
	return false;
}

void send_conn_release(struct send_worker *w, struct send_conn *c)
{
	if (!c->reserved)
		return;
	c->reserved = false;
	if (w->run->opt->messages)
		atomic_fetch_sub_explicit(&w->run->reserved, 1, memory_order_relaxed);
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
			   o->from, o->domain, &probe) < 0) {
		fputs("sluice-bench send: --from and --domain do not fit the message header\n",
		      stderr);
		return 2;
	}
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
bool send_rate_take(struct send_worker *w)
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

void send_rate_park(struct send_worker *w, struct send_conn *c)
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

void send_out_add(struct send_conn *c, const void *base, size_t len)
{
	if (c->out_len == SEND_IOV_MAX && c->out_idx > 0) {
		memmove(c->out, c->out + c->out_idx, (c->out_len - c->out_idx) * sizeof(c->out[0]));
		c->out_len -= c->out_idx;
		c->out_idx = 0;
	}
	assert(c->out_len < SEND_IOV_MAX);
	c->out[c->out_len++] = (struct iovec){.iov_base = (void *)base, .iov_len = len};
}

void send_wait_push(struct send_conn *c, enum send_wait_kind kind, unsigned tx, uint32_t count)
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
	c->exts = (struct smtp_ehlo_exts){0};
	smtp_reply_parser_init(&c->reply);
	c->pipelining = c->parked = c->token = c->need_rset = false;
	c->quitting = c->eod_pending = false;
	c->wait_head = c->wait_len = 0;
	c->out_idx = c->out_len = 0;
	c->msgs = 0;
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
	c->reserved = true;
	w->open++;
	atomic_store_explicit(&w->st.open, w->open, memory_order_relaxed);
}

/* Open the slot again if its pause is over and a message can be
 * reserved for it; a failed open gives the reservation back. */
static void send_conn_reopen(struct send_worker *w, struct send_conn *c)
{
	if (c->state != SEND_CONN_IDLE || w->now < c->retry_ns || !send_run_reserve(w->run))
		return;
	send_conn_open(w, c);
	if (c->state == SEND_CONN_IDLE && w->run->opt->messages)
		atomic_fetch_sub_explicit(&w->run->reserved, 1, memory_order_relaxed);
}

/* Count what a closing connection cuts short; always returns -1 so that
 * callers can `return send_conn_close(...)`. */
int send_conn_close(struct send_worker *w, struct send_conn *c, enum send_close why)
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
	send_conn_release(w, c);
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

/* No more messages can be reserved: parked sessions without a
 * reservation quit now rather than at their next token (those holding
 * one still send it).  After a stop, sessions that have no message under
 * way close now and the others get a grace period. */
static void send_worker_wind_down(struct send_worker *w)
{
	bool stop = atomic_load(&w->run->stop);
	struct send_conn *c = w->park_head;

	while (c) {
		struct send_conn *next = c->park_next;

		if (stop || !c->reserved) {
			send_rate_unpark(w, c);
			send_sess_next(w, c);
			send_conn_kick(w, c);
		}
		c = next;
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
	/* The last one out wakes the watcher rather than leave it to its tick. */
	if (atomic_fetch_add(&w->run->done, 1) + 1 == w->run->nworkers)
		pthread_kill(w->run->watcher, SIGUSR1);
	return NULL;
}

/* ---- main --------------------------------------------------------------- */

/* Watch the workers: progress once a second, the stop flag at --duration
 * or on SIGINT/SIGTERM (blocked in every thread, taken here); SIGUSR1
 * says the last worker is done. */
static void send_watch(struct send_run *run, const sigset_t *signals)
{
	const struct send_opts *o = run->opt;
	uint64_t deadline = run->start_ns + send_ns_from_s(o->duration_s);
	uint64_t next_progress = run->start_ns + NS_PER_S, last_accepted = 0;

	while (atomic_load(&run->done) < run->nworkers) {
		struct timespec ts = {.tv_nsec = (long)(100 * NS_PER_MS)};
		uint64_t now;

		int sig = sigtimedwait(signals, NULL, &ts);

		if (sig == SIGINT || sig == SIGTERM)
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
	sigaddset(&signals, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	run.watcher = pthread_self();
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
