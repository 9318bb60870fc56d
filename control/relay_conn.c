/*
 * relay_conn: one outbound connection of the relay agent (relay.h): DNS,
 * the non-blocking connect with fall-over from address to address, the
 * SMTP/LMTP engine (smtp_client.h) on the socket, and the connection
 * cache.  Every function runs on the relay thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "control/relay_pvt.h"
#include "control/trace.h"

/* Bytes read from a server per read() call. */
#define RELAY_READ_CHUNK 16384
/* Engine steps per event before we suspect a loop (never seen; a guard). */
#define RELAY_STEP_GUARD 10000

static void relay_conn_try(struct relay_conn *c);
static void relay_conn_step(struct relay_conn *c);

/* ---- bookkeeping ---- */

static const char *relay_conn_host(const struct relay_conn *c)
{
	return c->cur < c->ntargets ? c->targets[c->cur].host : c->dest->name;
}

static void relay_conn_addr_str(const struct relay_conn *c, char *out, size_t outlen)
{
	const struct dns_addr *a = &c->targets[c->cur].addr;
	if (!inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->u.v4 : &a->u.v6, out,
		       (socklen_t)outlen))
		snprintf(out, outlen, "?");
}

/* Remember why the current address failed; a 4xx outranks a 5xx, since a
 * destination is refused for good only when every address refused it. */
static void relay_conn_note_failure(struct relay_conn *c, const struct smtp_client_result *x,
				    uint16_t code, const char *enh, const char *text)
{
	if (x) {
		code = x->code;
		enh = x->enh;
		text = x->text;
	}
	if (code / 100 != 5)
		c->all_5xx = false;
	if (code / 100 == 5 && c->why.code && c->why.code / 100 != 5)
		return;
	char buf[SMTP_CLIENT_TEXT_MAX + 320];
	char addr[INET6_ADDRSTRLEN];
	relay_conn_addr_str(c, addr, sizeof(addr));
	snprintf(buf, sizeof(buf), "%s[%s]: %s", relay_conn_host(c), addr, text ? text : "");
	relay_result_set(&c->why, code, enh, buf);
	c->why.local = !x || x->local;
}

static void relay_conn_arm(struct relay_conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(c->r->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		log_err("relay: epoll_ctl mod: %s", strerror(errno));
}

static void relay_conn_close_fd(struct relay_conn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->out_armed = false;
	smtp_client_free(c->cli);
	c->cli = NULL;
}

static void relay_conn_idle_unlink(struct relay_conn *c)
{
	struct relay_conn **pp = &c->dest->idle;
	for (; *pp; pp = &(*pp)->idle_next)
		if (*pp == c) {
			*pp = c->idle_next;
			break;
		}
	c->idle_next = NULL;
}

/* The message in flight is over (its job finished or handed back). */
static void relay_conn_msg_clear(struct relay_conn *c)
{
	if (c->env_ok)
		envelope_free(&c->env);
	c->env_ok = false;
	free(c->body);
	c->body = NULL;
	c->body_len = 0;
	free(c->idx);
	c->idx = NULL;
	for (uint32_t i = 0; c->res && i < c->nres; i++)
		relay_result_clear(&c->res[i]);
	free(c->res);
	c->res = NULL;
	c->job = NULL;
}

static void relay_conn_free(struct relay_conn *c)
{
	struct relay *r = c->r;
	struct relay_dest *d = c->dest;
	if (c->job) {
		/* Stopping with a message in flight: it stays pending in
		 * the spool and is tried again at the next start. */
		struct relay_job *job = c->job;
		relay_conn_msg_clear(c);
		relay_job_free(r, job);
	}
	if (c->phase == RELAY_PHASE_IDLE)
		relay_conn_idle_unlink(c);
	relay_conn_close_fd(c);
	relay_result_clear(&c->why);
	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->nconns--;
	d->nconns--;
	if (!c->was_ready)
		d->nopening--;
	free(c);
	if (d->ready_head)
		relay_dest_kick(r, d);
}

/* ---- DNS ---- */

static void relay_conn_dns_cb(void *arg, const struct dns_result *res)
{
	struct relay_conn *c = arg;
	bool mx = c->dest->kind == RELAY_KIND_MX;
	c->ntargets = 0;
	for (unsigned h = 0; h < res->nhosts; h++)
		for (unsigned a = 0; a < res->hosts[h].naddrs && c->ntargets < RELAY_MAX_TARGETS;
		     a++) {
			struct relay_target *t = &c->targets[c->ntargets++];
			t->addr = res->hosts[h].addrs[a];
			snprintf(t->host, sizeof(t->host), "%s", res->hosts[h].name);
		}
	const char *why = res->why ? res->why : dns_status_str(res->status);
	switch (res->status) {
	case DNS_OK:
		break;
	case DNS_NULL_MX:
		relay_result_set(&c->why, 556, "5.1.10", why);
		break;
	case DNS_NOT_FOUND:
		/* A smart host or mail store that does not resolve is the
		 * operator's to fix: wait for it rather than bounce. */
		if (mx)
			relay_result_set(&c->why, 550, "5.1.2", why);
		else
			relay_result_set(&c->why, 451, "4.4.3", why);
		break;
	case DNS_TEMPFAIL:
	default:
		relay_result_set(&c->why, 451, "4.4.3", why);
		break;
	}
	c->why.local = true;
	if (res->status != DNS_OK)
		c->ntargets = 0;
	c->resolved_next = c->r->resolved;
	c->r->resolved = c;
}

int relay_conn_open(struct relay *r, struct relay_dest *d)
{
	struct relay_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->dest = d;
	c->fd = -1;
	c->phase = RELAY_PHASE_RESOLVE;
	c->all_5xx = true;
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->nconns++;
	d->nconns++;
	d->nopening++;
	int rc = d->kind == RELAY_KIND_MX ? dns_resolve_mx(r->dns, d->name, relay_conn_dns_cb, c)
					  : dns_resolve_host(r->dns, d->name, relay_conn_dns_cb, c);
	if (rc < 0) {
		/* Not a name DNS can look up: the route or the address is
		 * wrong, which the next try will not change. */
		if (d->kind == RELAY_KIND_MX)
			relay_result_set(&c->why, 550, "5.1.2", "bad destination domain name");
		else
			relay_result_set(&c->why, 451, "4.4.3", "bad relay host name");
		c->why.local = true;
		c->resolved_next = r->resolved;
		r->resolved = c;
	}
	return 0;
}

/* ---- connecting ---- */

/* Every address failed (or DNS did): if no other connection of the
 * destination is left to carry its jobs, they all get this outcome. */
static void relay_conn_give_up(struct relay_conn *c)
{
	struct relay *r = c->r;
	struct relay_dest *d = c->dest;
	if (c->why.code == 0) {
		relay_result_set(&c->why, 451, "4.4.1", "no address to connect to");
		c->why.local = true;
	}
	log_info("relay: %s unreachable now: %u %s %s", d->name, c->why.code, c->why.enh,
		 c->why.text ? c->why.text : "");
	if (d->nconns == 1) {
		struct relay_job *job;
		while ((job = relay_dest_pop(d)) != NULL)
			relay_job_finish(r, job, NULL, &c->why, NULL, NULL, 0, NULL);
	}
	relay_conn_free(c);
}

static int relay_conn_sockaddr(const struct relay_conn *c, struct sockaddr_storage *ss,
			       socklen_t *len)
{
	const struct dns_addr *a = &c->targets[c->cur].addr;
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(c->dest->port);
		sin->sin_addr = a->u.v4;
		*len = sizeof(*sin);
		return 0;
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(c->dest->port);
		sin6->sin6_addr = a->u.v6;
		*len = sizeof(*sin6);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* Start a non-blocking connect to the current address.  Returns 0 when
 * it is under way, or -errno. */
static int relay_conn_connect(struct relay_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = relay_conn_sockaddr(c, &ss, &len);
	if (rc < 0)
		return rc;
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
		rc = -errno;
		relay_conn_close_fd(c);
		return rc;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(c->r->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		rc = -errno;
		relay_conn_close_fd(c);
		return rc;
	}
	c->phase = RELAY_PHASE_CONNECT;
	c->deadline = relay_now_ms() + (int64_t)c->r->cfg.connect_timeout_s * 1000;
	return 0;
}

/* Connect to the current address or, failing that, the next ones. */
static void relay_conn_try(struct relay_conn *c)
{
	for (; c->cur < c->ntargets; c->cur++) {
		int rc = relay_conn_connect(c);
		if (rc == 0)
			return;
		char text[128];
		snprintf(text, sizeof(text), "connect: %s", strerror(-rc));
		relay_conn_note_failure(c, NULL, 451, "4.4.1", text);
	}
	relay_conn_give_up(c);
}

void relay_conn_resolved(struct relay_conn *c)
{
	c->cur = 0;
	relay_conn_try(c);
}

/* The current address failed before the session was READY: the next. */
static void relay_conn_next_target(struct relay_conn *c)
{
	relay_conn_close_fd(c);
	c->deadline = 0;
	c->cur++;
	relay_conn_try(c);
}

/* ---- the session ---- */

static void relay_conn_rcpt_result(void *arg, uint32_t k, const struct smtp_client_result *x)
{
	struct relay_conn *c = arg;
	if (!c->job || k >= c->job->nrcpts)
		return;
	relay_result_set(&c->res[k], x->code, x->enh, x->text);
	c->res[k].local = x->local;
}

static void relay_conn_msg_done(void *arg)
{
	struct relay_conn *c = arg;
	c->msg_done = true;
}

static const struct smtp_client_ops relay_conn_ops = {
    .rcpt_result = relay_conn_rcpt_result,
    .msg_done = relay_conn_msg_done,
};

static int relay_conn_session_start(struct relay_conn *c)
{
	const struct relay_cfg *rc = &c->r->cfg;
	struct smtp_client_cfg cfg = {
	    .helo_name = c->r->hostname,
	    .proto = c->dest->kind == RELAY_KIND_LMTP ? SMTP_CLIENT_LMTP : SMTP_CLIENT_SMTP,
	    .timeouts =
		{
		    .greeting = rc->timeout_command_s,
		    .hello = rc->timeout_command_s,
		    .mail = rc->timeout_command_s,
		    .rcpt = rc->timeout_command_s,
		    .data_init = rc->timeout_data_init_s,
		    .data_block = rc->timeout_data_block_s,
		    .data_term = rc->timeout_data_end_s,
		    .rset_quit = rc->timeout_command_s,
		},
	};
	c->cli = smtp_client_new(&cfg, &relay_conn_ops, c);
	if (!c->cli)
		return -ENOMEM;
	c->phase = RELAY_PHASE_SESSION;
	relay_count(&c->r->st_conns, 1);
	relay_conn_arm(c, EPOLLIN);
	return 0;
}

/* Load job's message and hand it to the engine.  The outcome may come at
 * once (a SIZE limit, a read error): msg_done is then set. */
static void relay_conn_msg_start(struct relay_conn *c, struct relay_job *job)
{
	struct relay *r = c->r;
	c->job = job;
	spool_qid_format(&job->ref, c->qid);
	c->res = calloc(job->nrcpts, sizeof(*c->res));
	c->nres = c->res ? job->nrcpts : 0;
	c->idx = malloc(job->nrcpts * sizeof(*c->idx));
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	int rc = c->res && c->idx ? 0 : -ENOMEM;
	if (rc == 0)
		rc = spool_read(r->sp, &job->ref, &c->env, &raw, &raw_len);
	c->env_ok = rc == 0;
	struct relay_result fail = {.code = 451, .enh = "4.3.0", .local = true};
	if (rc == -EBADMSG || rc == -ENOENT)
		fail = (struct relay_result){.code = 554, .enh = "5.3.0", .local = true};
	for (uint32_t k = 0; rc == 0 && k < job->nrcpts; k++) {
		c->idx[k] = RELAY_RCPT_INDEX(job->rcpts[k]);
		if (c->idx[k] >= c->env.nrcpts)
			rc = -EINVAL;
	}
	char *hdr = NULL;
	int hlen = 0;
	if (rc == 0) {
		const char *for_addr = job->nrcpts == 1 ? c->env.rcpts[c->idx[0]].addr : NULL;
		hlen = trace_received(&hdr, &c->env, c->qid, r->hostname, for_addr, true);
		c->body = hlen < 0 ? NULL : malloc((size_t)hlen + raw_len);
		if (!c->body)
			rc = -ENOMEM;
	}
	if (rc == 0) {
		memcpy(c->body, hdr, (size_t)hlen);
		memcpy(c->body + hlen, raw, raw_len);
		c->body_len = (size_t)hlen + raw_len;
		struct smtp_client_msg m = {
		    .env = &c->env,
		    .rcpts = c->idx,
		    .nrcpts = job->nrcpts,
		    .body = c->body,
		    .body_len = c->body_len,
		};
		c->msgs++;
		if (c->msgs > 1)
			relay_count(&r->st_reused, 1);
		rc = smtp_client_send(c->cli, &m);
		if (rc == -EINVAL)
			fail = (struct relay_result){.code = 553, .enh = "5.1.3", .local = true};
	}
	free(hdr);
	free(raw);
	if (rc < 0) {
		log_warn("%s relay: cannot send: %s", c->qid, strerror(-rc));
		fail.text = (char *)"the message could not be read or sent";
		relay_job_finish(r, job, NULL, &fail, c->env_ok ? &c->env : NULL, NULL, 0, NULL);
		c->job = NULL;
		relay_conn_msg_clear(c);
	}
}

/* The engine said msg_done: every recipient of the job has its result. */
static void relay_conn_msg_finish(struct relay_conn *c)
{
	c->msg_done = false;
	struct relay_job *job = c->job;
	if (!job)
		return;
	struct relay_result lost = {.code = 421, .enh = "4.4.2", .local = true};
	lost.text = (char *)"no reply for this recipient";
	/* A server with DSN takes NOTIFY=SUCCESS over (the engine passes it
	 * on); otherwise it is ours to say (RFC 3461 4.1). */
	const struct smtp_ehlo_exts *x = smtp_client_exts(c->cli);
	job->flags = 0;
	if (!x || !(x->flags & SMTP_EXT_DSN))
		job->flags = c->dest->kind == RELAY_KIND_LMTP ? RELAY_JOB_SAY_DELIVERED
							      : RELAY_JOB_SAY_RELAYED;
	relay_job_finish(c->r, job, c->res, &lost, &c->env, c->body, c->body_len,
			 relay_conn_host(c));
	/* The job belongs to the heap now, or is gone. */
	c->job = NULL;
	relay_conn_msg_clear(c);
}

/* READY with nothing in flight: the next job, the cache, or QUIT.
 * Returns true when the engine has something new to do. */
static bool relay_conn_next_msg(struct relay_conn *c)
{
	struct relay *r = c->r;
	struct relay_dest *d = c->dest;
	if (c->msgs >= r->cfg.msgs_per_conn || atomic_load(&r->stop)) {
		smtp_client_quit(c->cli);
		return true;
	}
	struct relay_job *job = relay_dest_pop(d);
	if (job) {
		relay_conn_msg_start(c, job);
		return true;
	}
	c->phase = RELAY_PHASE_IDLE;
	c->idle_next = d->idle;
	d->idle = c;
	c->deadline = relay_now_ms() + (int64_t)r->cfg.idle_timeout_s * 1000;
	return false;
}

bool relay_conn_idle_take(struct relay_dest *d)
{
	struct relay_conn *c = d->idle;
	if (!c)
		return false;
	d->idle = c->idle_next;
	c->idle_next = NULL;
	c->phase = RELAY_PHASE_SESSION;
	relay_conn_msg_start(c, relay_dest_pop(d));
	relay_conn_step(c);
	return true;
}

/* Write what the engine has.  Returns 0, or -1 when the socket failed
 * (the engine was told: its state changed). */
static int relay_conn_flush(struct relay_conn *c)
{
	const void *data;
	size_t n;
	while ((n = smtp_client_output(c->cli, &data)) > 0) {
		ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
		if (w > 0) {
			smtp_client_output_done(c->cli, (size_t)w);
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!c->out_armed) {
				c->out_armed = true;
				relay_conn_arm(c, EPOLLIN | EPOLLOUT);
			}
			return 0;
		}
		smtp_client_eof(c->cli, strerror(errno));
		return -1;
	}
	if (c->out_armed) {
		c->out_armed = false;
		relay_conn_arm(c, EPOLLIN);
	}
	return 0;
}

/* The engine is CLOSED.  Before READY: fall over to the next address;
 * after: the connection is done. */
static void relay_conn_closed(struct relay_conn *c)
{
	if (c->was_ready) {
		relay_conn_free(c);
		return;
	}
	const struct smtp_client_result *x = smtp_client_session_error(c->cli);
	if (x)
		relay_conn_note_failure(c, x, 0, NULL, NULL);
	else
		relay_conn_note_failure(c, NULL, 451, "4.4.2", "session ended");
	log_info("relay: %s: %u %s %s, trying the next address", c->dest->name, c->why.code,
		 c->why.enh, c->why.text ? c->why.text : "");
	relay_conn_next_target(c);
}

/* Run the consequences of whatever the engine just did: results, the
 * next message, output, the deadline.  May free c. */
static void relay_conn_step(struct relay_conn *c)
{
	for (int guard = 0; guard < RELAY_STEP_GUARD; guard++) {
		if (c->msg_done) {
			relay_conn_msg_finish(c);
			continue;
		}
		enum smtp_client_state st = smtp_client_state(c->cli);
		if (st == SMTP_CLIENT_CLOSED) {
			relay_conn_closed(c);
			return;
		}
		if (st == SMTP_CLIENT_READY && !c->job && c->phase != RELAY_PHASE_IDLE) {
			if (!c->was_ready) {
				c->was_ready = true;
				c->dest->nopening--;
			}
			if (relay_conn_next_msg(c))
				continue;
		}
		if (relay_conn_flush(c) < 0)
			continue;
		break;
	}
	if (c->phase != RELAY_PHASE_IDLE) {
		unsigned wait = smtp_client_wait_seconds(c->cli);
		c->deadline = wait ? relay_now_ms() + (int64_t)wait * 1000 : 0;
	}
}

static void relay_conn_read(struct relay_conn *c)
{
	char buf[RELAY_READ_CHUNK];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n > 0) {
			smtp_client_feed(c->cli, buf, (size_t)n);
			if (smtp_client_state(c->cli) == SMTP_CLIENT_CLOSED || c->msg_done)
				return;
			continue;
		}
		if (n == 0) {
			smtp_client_eof(c->cli, "connection closed by the server");
			return;
		}
		if (errno == EAGAIN || errno == EINTR)
			return;
		smtp_client_eof(c->cli, strerror(errno));
		return;
	}
}

/* The connect finished.  Returns true when the session started; false
 * when it fell over to the next address (c may be gone). */
static bool relay_conn_connected(struct relay_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0 && relay_conn_session_start(c) == 0)
		return true;
	char text[128];
	snprintf(text, sizeof(text), "connect: %s", strerror(err ? err : ENOMEM));
	relay_conn_note_failure(c, NULL, 451, "4.4.1", text);
	relay_conn_next_target(c);
	return false;
}

void relay_conn_event(struct relay_conn *c, uint32_t events)
{
	if (c->phase == RELAY_PHASE_CONNECT) {
		if (relay_conn_connected(c))
			relay_conn_step(c); /* the greeting's deadline */
		return;
	}
	if (c->phase == RELAY_PHASE_RESOLVE || !c->cli)
		return;
	if (c->phase == RELAY_PHASE_IDLE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		/* A cached connection heard from the server: a 421 or EOF
		 * (the engine takes it), or rubbish (a protocol error). */
		relay_conn_idle_unlink(c);
		c->phase = RELAY_PHASE_SESSION;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		relay_conn_read(c);
	relay_conn_step(c);
}

void relay_conn_check_timeout(struct relay_conn *c, int64_t now)
{
	(void)now;
	c->deadline = 0;
	switch (c->phase) {
	case RELAY_PHASE_CONNECT:
		relay_conn_note_failure(c, NULL, 451, "4.4.1", "connect: timed out");
		relay_conn_next_target(c);
		return;
	case RELAY_PHASE_IDLE:
		relay_conn_idle_unlink(c);
		c->phase = RELAY_PHASE_SESSION;
		smtp_client_quit(c->cli);
		relay_conn_step(c);
		return;
	case RELAY_PHASE_SESSION:
		smtp_client_timeout(c->cli);
		relay_conn_step(c);
		return;
	case RELAY_PHASE_RESOLVE:
		return;
	}
}

void relay_conn_close_all(struct relay *r)
{
	while (r->conns)
		relay_conn_free(r->conns);
}
