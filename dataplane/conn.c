/* conn: one client connection: socket I/O, back-pressure, engine events. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "common/cidr.h"
#include "common/log.h"
#include "config/config.h"
#include "config/route.h"
#include "dataplane/dataplane_pvt.h"
#include "queue/spool.h"

static void conn_close(struct dp_worker *w, struct dp_conn *c, bool graceful);
static int conn_flush(struct dp_worker *w, struct dp_conn *c, bool *progress);
static size_t conn_feed(struct dp_worker *w, struct dp_conn *c, const uint8_t *buf, size_t len);
static void conn_event(struct dp_worker *w, struct dp_conn *c);
static enum smtp_rc conn_rcpt(struct dp_worker *w, struct dp_conn *c, const struct smtp_event *ev);
static void conn_message(struct dp_worker *w, struct dp_conn *c, const struct smtp_event *ev);
static void conn_timer_update(struct dp_worker *w, struct dp_conn *c, bool progress);
static void conn_refuse(struct dp_worker *w, struct dp_listener_src *l, int fd,
			const struct sockaddr *sa, const char *why);
static int ackq_reserve(struct dp_ackq *q);

const char *dp_conn_addr(const struct dp_conn *c, char *buf, size_t len)
{
	const void *a = c->peer.sa.sa_family == AF_INET6 ? (const void *)&c->peer.in6.sin6_addr
							 : (const void *)&c->peer.in4.sin_addr;

	if (!inet_ntop(c->peer.sa.sa_family, a, buf, (socklen_t)len))
		snprintf(buf, len, "unknown");
	return buf;
}

/* ---- accept ------------------------------------------------------------ */

/* Stop accepting for a second when out of descriptors or memory: the
 * listener is level-triggered and would wake us in a loop. */
static void conn_accept_pause(struct dp_worker *w, int err)
{
	log_warn("accept worker=%u: %s (pausing accept for 1 s; raise LimitNOFILE or "
		 "lower max_connections)",
		 w->id, strerror(-err));
	w->accept_resume = w->now + 1000;
	for (unsigned i = 0; i < w->dp->cfg->nlisteners; i++) {
		struct epoll_event ev = {.events = 0, .data.ptr = &w->ls[i]};

		if (w->ls[i].fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->ls[i].fd, &ev) < 0)
			log_err("epoll_ctl worker=%u: %s", w->id, strerror(errno));
	}
}

void dp_conn_accept(struct dp_worker *w, struct dp_listener_src *l)
{
	struct dataplane *dp = w->dp;
	const struct config *cfg = dp->cfg;

	for (int i = 0; i < DP_ACCEPT_BURST; i++) {
		struct dp_conn tmp = {0}, *c;
		struct epoll_event ev;
		socklen_t salen = sizeof(tmp.peer);
		char addr[INET6_ADDRSTRLEN];
		unsigned prev;
		int fd, r;

		fd = dp->io->accept(l->fd, &tmp.peer.sa, &salen);
		if (fd == -EAGAIN)
			return;
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
			conn_accept_pause(w, fd);
			return;
		}
		if (fd < 0)
			continue; /* ECONNABORTED and friends: that client is gone */
		atomic_fetch_add_explicit(&w->st_connections, 1, memory_order_relaxed);

		prev = atomic_fetch_add(&dp->total, 1);
		if (cfg->max_connections && prev >= cfg->max_connections) {
			atomic_fetch_sub(&dp->total, 1);
			conn_refuse(w, l, fd, &tmp.peer.sa, "max_connections");
			continue;
		}
		if (cfg->max_connections_per_ip) {
			r = connlimit_acquire(dp->cl, &tmp.peer.sa, cfg->max_connections_per_ip);
			if (r < 0) {
				atomic_fetch_sub(&dp->total, 1);
				conn_refuse(w, l, fd, &tmp.peer.sa,
					    r == -EUSERS ? "max_connections_per_ip" : strerror(-r));
				continue;
			}
			tmp.flags |= DP_CONN_F_LIMITED;
		}

		c = malloc(sizeof(*c));
		if (c) {
			*c = tmp;
			c->eng =
			    smtp_engine_new(&dp->ecfg[l->idx], dp_conn_addr(c, addr, sizeof(addr)));
		}
		if (!c || !c->eng) {
			log_err("accept worker=%u: out of memory", w->id);
			if (tmp.flags & DP_CONN_F_LIMITED)
				connlimit_release(dp->cl, &tmp.peer.sa);
			atomic_fetch_sub(&dp->total, 1);
			dp->io->close(fd, false);
			free(c);
			continue;
		}
		c->kind = DP_SRC_CONN;
		/* The idle size: what the budget counts is growth beyond it. */
		c->mem_base = (uint32_t)smtp_engine_memory(c->eng);
		c->fd = fd;
		c->listener = l->idx;
		c->tkind = DP_T_NONE;
		/* Edge-triggered: we track readiness in flags and never need
		 * EPOLL_CTL_MOD to pause reading (back-pressure is ours). */
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		ev.data.ptr = c;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_err("epoll_ctl worker=%u: %s", w->id, strerror(errno));
			if (c->flags & DP_CONN_F_LIMITED)
				connlimit_release(dp->cl, &c->peer.sa);
			atomic_fetch_sub(&dp->total, 1);
			dp->io->close(fd, false);
			smtp_engine_free(c->eng);
			free(c);
			continue;
		}
		dp_list_add_tail(&w->conns, &c->link);
		atomic_fetch_add_explicit(&w->st_open, 1, memory_order_relaxed);
		log_info("connect client=%s worker=%u", addr, w->id);
		/* A new socket has room to send: greet at once. */
		c->flags |= DP_CONN_F_WRITABLE;
		smtp_engine_start(c->eng);
		dp_conn_run(w, c);
	}
}

/* Answer 421 and close without a session: one send on a fresh socket (the
 * reply is far smaller than any send buffer). */
static void conn_refuse(struct dp_worker *w, struct dp_listener_src *l, int fd,
			const struct sockaddr *sa, const char *why)
{
	struct dataplane *dp = w->dp;
	struct dp_conn tmp = {0};
	char addr[INET6_ADDRSTRLEN];
	struct smtp_engine *e;

	memcpy(&tmp.peer, sa,
	       sa->sa_family == AF_INET6 ? sizeof(tmp.peer.in6) : sizeof(tmp.peer.in4));
	dp_conn_addr(&tmp, addr, sizeof(addr));
	atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
	log_info("refused client=%s worker=%u reason=%s", addr, w->id, why);
	e = smtp_engine_new(&dp->ecfg[l->idx], addr);
	if (e) {
		const uint8_t *out;
		size_t len;

		smtp_engine_refuse(e, 421, "4.7.0 Too many connections");
		out = smtp_engine_output(e, &len);
		if (len)
			(void)dp->io->send(fd, out, len);
		smtp_engine_free(e);
	}
	dp->io->close(fd, true);
}

/* ---- the connection state machine --------------------------------------- */

void dp_conn_event(struct dp_worker *w, struct dp_conn *c, uint32_t events)
{
	if (c->fd < 0)
		return; /* closed earlier in this batch */
	if (events & (EPOLLERR | EPOLLHUP)) {
		/* Reset or both directions shut: nobody reads what we send. */
		conn_close(w, c, false);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP))
		c->flags |= DP_CONN_F_READABLE;
	if (events & EPOLLRDHUP)
		c->flags |= DP_CONN_F_RDHUP;
	if (events & EPOLLOUT)
		c->flags |= DP_CONN_F_WRITABLE;
	dp_conn_run(w, c);
}

/*
 * Move the connection as far as it can go: send replies, feed buffered
 * input, read more.  Reading waits while the session is paused on a commit,
 * while replies are unsent (the client must read them first), while input
 * is still buffered and while it is parked on the body memory budget.
 */
void dp_conn_run(struct dp_worker *w, struct dp_conn *c)
{
	struct dataplane *dp = w->dp;
	bool progress = false;
	int budget = DP_READ_BUDGET;

	if (c->fd < 0)
		return;
	if ((c->flags & (DP_CONN_F_CLOSING | DP_CONN_F_MEMWAIT)) ==
	    (DP_CONN_F_CLOSING | DP_CONN_F_MEMWAIT)) {
		/* Timed out or stopped while parked: it feeds nothing more. */
		dp_list_del(&c->ready);
		c->flags &= ~DP_CONN_F_MEMWAIT;
	}
	for (;;) {
		int r = conn_flush(w, c, &progress);
		ssize_t n;

		if (r < 0 && r != -EAGAIN) {
			conn_close(w, c, false);
			return;
		}
		if (c->flags & DP_CONN_F_CLOSING) {
			if (r == 0) {
				conn_close(w, c, true);
				return;
			}
			break; /* linger until sent or DP_LINGER_MS */
		}
		if ((c->flags & (DP_CONN_F_COMMIT | DP_CONN_F_MEMWAIT)) || r == -EAGAIN)
			break;
		if (w->stopping) {
			/* Not waiting for a commit (any more): 421 4.3.2, even
			 * with pipelined input still buffered. */
			smtp_engine_shutdown(c->eng);
			c->flags |= DP_CONN_F_CLOSING;
			continue;
		}
		if (c->in) {
			size_t k = conn_feed(w, c, c->in + c->in_off, c->in_len - c->in_off);

			c->in_off += (uint32_t)k;
			if (c->in_off == c->in_len || (c->flags & DP_CONN_F_CLOSING)) {
				free(c->in);
				c->in = NULL;
				c->in_len = c->in_off = 0;
			}
			progress = true;
			continue;
		}
		if (c->flags & DP_CONN_F_EOF) {
			/* Everything the client sent is answered and sent. */
			conn_close(w, c, true);
			return;
		}
		if (!(c->flags & DP_CONN_F_READABLE))
			break;
		if (budget-- == 0) {
			/* Fairness: the others get a turn; we come back from the
			 * ready list without waiting for an edge. */
			if (!dp_list_linked(&c->ready))
				dp_list_add_tail(&w->ready, &c->ready);
			break;
		}
		n = dp->io->recv(c->fd, w->rbuf, DP_RBUF_SIZE);
		if (n == -EAGAIN) {
			c->flags &= ~DP_CONN_F_READABLE;
			break;
		}
		if (n < 0) {
			conn_close(w, c, false);
			return;
		}
		if (n == 0) {
			c->flags = (uint16_t)((c->flags & ~DP_CONN_F_READABLE) | DP_CONN_F_EOF);
			continue;
		}
		progress = true;
		/* A short read emptied the socket: data arriving later raises a
		 * new edge, so the recv that would only say EAGAIN is saved (one
		 * syscall per round trip).  Not after a FIN: its edge may have
		 * come already, and only recv tells the end of stream. */
		if ((size_t)n < DP_RBUF_SIZE && !(c->flags & DP_CONN_F_RDHUP))
			c->flags &= ~DP_CONN_F_READABLE;
		size_t k = conn_feed(w, c, w->rbuf, (size_t)n);

		if (k < (size_t)n && !(c->flags & DP_CONN_F_CLOSING)) {
			/* Paused with input left: keep it (allocated on demand,
			 * freed when drained). */
			c->in = malloc((size_t)n - k);
			if (!c->in) {
				log_err("client buffer worker=%u: out of memory", w->id);
				conn_close(w, c, false);
				return;
			}
			memcpy(c->in, w->rbuf + k, (size_t)n - k);
			c->in_len = (uint32_t)((size_t)n - k);
			c->in_off = 0;
		}
	}
	/* Replies sent free the output buffer. */
	dp_mem_sync(w, c);
	conn_timer_update(w, c, progress);
}

/* Send pending replies.  0 when none are left, -EAGAIN when the socket is
 * full (EPOLLOUT will call us again), other -errno when the peer is gone. */
static int conn_flush(struct dp_worker *w, struct dp_conn *c, bool *progress)
{
	for (;;) {
		size_t len;
		const uint8_t *out = smtp_engine_output(c->eng, &len);
		ssize_t n;

		if (!len)
			return 0;
		if (!(c->flags & DP_CONN_F_WRITABLE))
			return -EAGAIN;
		n = w->dp->io->send(c->fd, out, len);
		if (n == -EAGAIN) {
			c->flags &= ~DP_CONN_F_WRITABLE;
			return -EAGAIN;
		}
		if (n < 0)
			return (int)n;
		smtp_engine_output_consumed(c->eng, (size_t)n);
		*progress = true;
	}
}

/*
 * Feed input to the engine and handle its events.  Returns how many bytes
 * were consumed: all of them, unless the session paused on a commit, is
 * closing, was parked on the body memory budget, or its replies piled up
 * and the socket is full.
 */
static size_t conn_feed(struct dp_worker *w, struct dp_conn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len && !(c->flags & (DP_CONN_F_CLOSING | DP_CONN_F_COMMIT))) {
		size_t slice = len - off < DP_FEED_SLICE ? len - off : DP_FEED_SLICE;
		enum smtp_rc rc;
		size_t n, olen;
		bool progress;
		int r;

		if (!dp_mem_admit(w, c, slice)) {
			dp_mem_park(w, c);
			break;
		}
		n = smtp_engine_feed(c->eng, buf + off, slice, &rc);
		dp_mem_sync(w, c);
		off += n;
		if (rc == SMTP_RC_CLOSE) {
			c->flags |= DP_CONN_F_CLOSING;
			break;
		}
		if (rc == SMTP_RC_EVENT) {
			conn_event(w, c);
			dp_mem_sync(w, c);
			continue;
		}
		/* SMTP_RC_OK consumes everything (engine contract). */
		SLUICE_ASSERT(n == slice);
		/* A pipelining client can make replies outgrow its input;
		 * do not queue without bound: send, and stop if it cannot
		 * take them. */
		smtp_engine_output(c->eng, &olen);
		if (olen > DP_OUT_HIGH) {
			r = conn_flush(w, c, &progress);
			if (r < 0)
				break; /* -EAGAIN: wait; error: conn_run sees it */
		}
	}
	return off;
}

/* The engine paused on an event: decide now (MAIL, RCPT) or append the
 * message and wait for the commit (MESSAGE). */
static void conn_event(struct dp_worker *w, struct dp_conn *c)
{
	const struct smtp_event *ev = smtp_engine_event(c->eng);
	enum smtp_rc rc;

	SLUICE_ASSERT(ev != NULL);
	switch (ev->type) {
	case SMTP_EV_MAIL:
		if (spool_space_ok(w->dp->spool))
			rc = smtp_engine_resume(c->eng, 250, "2.1.0 Ok", false);
		else
			rc = smtp_engine_resume(c->eng, 452, "4.3.1 Insufficient system storage",
						false);
		break;
	case SMTP_EV_RCPT:
		rc = conn_rcpt(w, c, ev);
		break;
	case SMTP_EV_MESSAGE:
		conn_message(w, c, ev);
		return;
	default:
		SLUICE_ASSERT(!"unknown smtp event");
		return;
	}
	if (rc == SMTP_RC_CLOSE)
		c->flags |= DP_CONN_F_CLOSING;
}

/* RCPT policy (see dataplane.h).  Runs online as an RCU reader: the table
 * and entry stay valid until this worker's next quiescent state. */
static enum smtp_rc conn_rcpt(struct dp_worker *w, struct dp_conn *c, const struct smtp_event *ev)
{
	const struct config *cfg = w->dp->cfg;
	const struct route_table *t = route_current();
	/* "<postmaster>" alone (RFC 5321 4.5.1) is the postmaster of our own
	 * name: route it as if written postmaster@hostname. */
	const char *domain = ev->domain[0] || !cfg->hostname ? ev->domain : cfg->hostname;
	const struct route *r = t ? route_lookup(t, domain) : NULL;
	char text[SMTP_LINE_MAX + 96];
	bool relay_ok;

	if (r && r->action != ROUTE_NONE) {
		switch (r->action) {
		case ROUTE_LOCAL: {
			char local[SMTP_LINE_MAX];
			size_t alen = strlen(ev->addr), dlen = strlen(ev->domain);
			size_t llen = dlen && alen > dlen ? alen - dlen - 1 : alen;

			if (llen >= sizeof(local))
				llen = sizeof(local) - 1;
			memcpy(local, ev->addr, llen);
			local[llen] = '\0';
			if (r->catch_all || route_local_user_exists(r, local))
				return smtp_engine_resume(c->eng, 250, "2.1.5 Ok", false);
			snprintf(text, sizeof(text),
				 "5.1.1 <%s>: Recipient address rejected: User unknown", ev->addr);
			return smtp_engine_resume(c->eng, 550, text, true);
		}
		case ROUTE_RELAY:
		case ROUTE_RELAY_VIA:
			return smtp_engine_resume(c->eng, 250, "2.1.5 Ok", false);
		case ROUTE_REJECT:
		default:
			snprintf(text, sizeof(text),
				 "5.7.1 <%s>: Recipient address rejected: Access denied", ev->addr);
			return smtp_engine_resume(c->eng, 550, text, true);
		}
	}
	/* Not a domain we accept: only clients in relay_networks may relay.
	 * With no table published yet, the config's list answers. */
	if (t)
		relay_ok = route_relay_allowed(t, &c->peer.sa);
	else
		relay_ok = cidr_match_any(cfg->relay_networks, cfg->nrelay_networks, &c->peer.sa);
	if (relay_ok)
		return smtp_engine_resume(c->eng, 250, "2.1.5 Ok", false);
	snprintf(text, sizeof(text), "5.7.1 <%s>: Relay access denied", ev->addr);
	return smtp_engine_resume(c->eng, 554, text, true);
}

/* End of data: append to this worker's segment; the 250 waits for the
 * commit (dp_conn_acks_release), and the session is not read meanwhile. */
static void conn_message(struct dp_worker *w, struct dp_conn *c, const struct smtp_event *ev)
{
	struct dp_ackq *q = &w->acks;
	struct envelope env = *ev->env; /* shallow: only arrival differs */
	struct dp_ack *a;
	char addr[INET6_ADDRSTRLEN];
	enum smtp_rc rc;
	int r;

	env.arrival = (int64_t)time(NULL);
	/* Room in the FIFO first: once appended the record will be durable and
	 * delivered, so it must not get a 451. */
	r = ackq_reserve(q);
	if (r == 0) {
		a = &q->v[(q->head + q->count) & (q->cap - 1)];
		r = spool_append(w->writer, &env, ev->body, ev->body_len, &a->ref, a->qid, &a->lsn);
	}
	if (r == 0) {
		a->conn = c;
		a->nrcpts = ev->env->nrcpts;
		q->count++;
		c->flags |= DP_CONN_F_COMMIT;
		return;
	}
	if (r == -ENOSPC) {
		rc = smtp_engine_resume(c->eng, 452, "4.3.1 Insufficient system storage", false);
	} else {
		log_err("spool append worker=%u client=%s: %s", w->id,
			dp_conn_addr(c, addr, sizeof(addr)), strerror(-r));
		rc = smtp_engine_resume(c->eng, 451, "4.3.0 Error: queue file write error", false);
	}
	if (rc == SMTP_RC_CLOSE)
		c->flags |= DP_CONN_F_CLOSING;
}

static int ackq_reserve(struct dp_ackq *q)
{
	struct dp_ack *v;
	uint32_t cap;

	if (q->count < q->cap)
		return 0;
	cap = q->cap ? q->cap * 2 : 16;
	v = malloc(cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	/* Unwrap the ring into the new array. */
	for (uint32_t i = 0; i < q->count; i++)
		v[i] = q->v[(q->head + i) & (q->cap - 1)];
	free(q->v);
	q->v = v;
	q->cap = cap;
	q->head = 0;
	return 0;
}

/*
 * The committer moved this writer's durable (or failed) position: release
 * the replies of every message it covers, in order, and let those sessions
 * go on with the input they had buffered.
 */
void dp_conn_acks_release(struct dp_worker *w)
{
	struct dataplane *dp = w->dp;
	struct dp_ackq *q = &w->acks;
	uint64_t durable, failed;

	while (q->count) {
		struct dp_ack a = q->v[q->head];
		struct dp_conn *c = a.conn;
		char text[64], addr[INET6_ADDRSTRLEN];
		enum smtp_rc rc;

		/* Read again each time: a session resumed below may have
		 * appended again, and the positions may have moved meanwhile. */
		durable = spool_writer_durable(w->writer);
		failed = spool_writer_failed(w->writer);
		if (a.lsn > durable && a.lsn > failed)
			break;
		q->head = (q->head + 1) & (q->cap - 1);
		q->count--;
		c->flags &= ~DP_CONN_F_COMMIT;
		if (a.lsn <= durable) {
			const struct smtp_event *ev = smtp_engine_event(c->eng);

			SLUICE_ASSERT(ev && ev->type == SMTP_EV_MESSAGE);
			log_info("%s accepted from=<%s> size=%zu nrcpt=%u client=%s%s", a.qid,
				 ev->env->sender, ev->body_len, a.nrcpts,
				 dp_conn_addr(c, addr, sizeof(addr)),
				 (c->flags & DP_CONN_F_DEAD) ? " reply=lost" : "");
			snprintf(text, sizeof(text), "2.0.0 Ok: queued as %s", a.qid);
			rc = smtp_engine_resume(c->eng, 250, text, false);
			c->msgs++;
			atomic_fetch_add_explicit(&w->st_messages, 1, memory_order_relaxed);
			/* Durable: delivery owns it now, even if the client left
			 * before reading the 250 (it may send it again: a
			 * duplicate, never a loss). */
			dp->submit(dp->submit_arg, &a.ref, a.nrcpts);
		} else {
			log_err("%s spool sync failed client=%s: replying 451", a.qid,
				dp_conn_addr(c, addr, sizeof(addr)));
			rc = smtp_engine_resume(c->eng, 451, "4.3.0 Error: queue file write error",
						false);
		}
		/* The body is freed and the transaction over: count it and
		 * give the pass back before pipelined input starts another. */
		dp_mem_sync(w, c);
		if (c->flags & DP_CONN_F_DEAD) {
			dp_list_add_tail(&w->graveyard, &c->link);
			continue;
		}
		if (rc == SMTP_RC_CLOSE)
			c->flags |= DP_CONN_F_CLOSING;
		dp_conn_run(w, c);
	}
}

/* ---- timers, stop, close ------------------------------------------------- */

static void conn_timer_update(struct dp_worker *w, struct dp_conn *c, bool progress)
{
	enum dp_tkind k;

	if (c->fd < 0)
		return;
	if (c->flags & DP_CONN_F_CLOSING) {
		k = DP_T_LINGER;
	} else if (c->flags & DP_CONN_F_COMMIT) {
		k = DP_T_NONE;
	} else {
		switch (smtp_engine_timeout_kind(c->eng)) {
		case SMTP_TIMEOUT_COMMAND:
			k = DP_T_COMMAND;
			break;
		case SMTP_TIMEOUT_DATA_BLOCK:
			k = DP_T_DATA;
			break;
		default:
			k = DP_T_NONE;
			break;
		}
	}
	if (k == DP_T_NONE)
		dp_timer_disarm(&c->timer);
	/* The linger deadline is fixed when closing starts: a trickle of
	 * acknowledgements must not keep a closing session alive. */
	else if (k != c->tkind || (progress && k != DP_T_LINGER))
		dp_timer_arm(&w->timers[k], &c->timer, w->now);
	c->tkind = (uint8_t)k;
}

void dp_conn_timeout(struct dp_worker *w, struct dp_conn *c)
{
	char addr[INET6_ADDRSTRLEN];

	if (c->tkind == DP_T_LINGER) {
		conn_close(w, c, false);
		return;
	}
	log_info("timeout client=%s worker=%u", dp_conn_addr(c, addr, sizeof(addr)), w->id);
	c->tkind = DP_T_NONE;
	smtp_engine_timeout(c->eng); /* 421 4.4.2, always CLOSE */
	c->flags |= DP_CONN_F_CLOSING;
	dp_conn_run(w, c);
}

void dp_conn_stop(struct dp_worker *w, struct dp_conn *c)
{
	/* Waiting for a commit: gets its reply first (dp_conn_run then says
	 * 421).  Closing already: lingers. */
	if (c->flags & (DP_CONN_F_COMMIT | DP_CONN_F_CLOSING))
		return;
	smtp_engine_shutdown(c->eng);
	c->flags |= DP_CONN_F_CLOSING;
	dp_conn_run(w, c);
}

/* Close the socket and give back the limits now; the struct goes to the
 * graveyard (freed at the end of the loop turn), or stays with its FIFO
 * entry while waiting for a commit. */
static void conn_close(struct dp_worker *w, struct dp_conn *c, bool graceful)
{
	struct dataplane *dp = w->dp;
	char addr[INET6_ADDRSTRLEN];

	if (c->fd < 0)
		return;
	log_info("disconnect client=%s msgs=%u", dp_conn_addr(c, addr, sizeof(addr)), c->msgs);
	dp_timer_disarm(&c->timer);
	c->tkind = DP_T_NONE;
	if (dp_list_linked(&c->ready))
		dp_list_del(&c->ready); /* ready or memwait */
	c->flags &= ~DP_CONN_F_MEMWAIT;
	dp_mem_close(w, c);
	dp_list_del(&c->link);
	/* Give the slots back before the peer can see the close, so a client
	 * that reconnects at once is counted without this connection. */
	if (c->flags & DP_CONN_F_LIMITED) {
		connlimit_release(dp->cl, &c->peer.sa);
		c->flags &= ~DP_CONN_F_LIMITED;
	}
	atomic_fetch_sub(&dp->total, 1);
	atomic_fetch_sub_explicit(&w->st_open, 1, memory_order_relaxed);
	dp->io->close(c->fd, graceful);
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_off = 0;
	if (c->flags & DP_CONN_F_COMMIT) {
		c->flags |= DP_CONN_F_DEAD;
		return;
	}
	dp_list_add_tail(&w->graveyard, &c->link);
}

/* Close without a reply (end of a bounded stop). */
void dp_conn_abort(struct dp_worker *w, struct dp_conn *c)
{
	conn_close(w, c, false);
}

void dp_conn_destroy(struct dp_worker *w, struct dp_conn *c)
{
	dp_mem_release(w, c);
	smtp_engine_free(c->eng);
	free(c->in);
	free(c);
}
