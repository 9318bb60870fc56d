/* dataplane: start (bind everything, then start workers), stop, stats. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "dataplane/dataplane_pvt.h"
#include "queue/spool.h"

#define DP_BACKLOG 4096
/* Lock stripes of the per-address table: enough that workers rarely meet. */
#define DP_CONNLIMIT_STRIPES_LOG2 6

static void dp_free(struct dataplane *dp);

/* Runs on the committer thread: only a wake-up. */
static void dp_worker_wake(void *arg)
{
	struct dp_worker *w = arg;
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
	if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("worker=%u: wake eventfd: %s", w->id, strerror(errno));
}

static void dp_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void dp_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* "127.0.0.1:25" or "[::1]:25" for messages. */
static void dp_listener_name(const struct config_listener *l, char *buf, size_t len)
{
	if (strchr(l->address, ':'))
		snprintf(buf, len, "[%s]:%u", l->address, l->port);
	else
		snprintf(buf, len, "%s:%u", l->address, l->port);
}

static int dp_sockaddr(const struct config_listener *l, uint16_t port, struct sockaddr_storage *ss,
		       socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, l->address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, l->address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/*
 * Every worker's socket for listener li.  Port 0 means "any free port": the
 * first worker's socket gets the kernel's choice and the other workers bind
 * that same port (SO_REUSEPORT), so all of them share one port
 * (dataplane_listen_port() tells which).
 */
static int dp_bind_listener(struct dataplane *dp, unsigned li, char *err, size_t errlen)
{
	const struct config_listener *l = &dp->cfg->listeners[li];
	char name[80];

	dp_listener_name(l, name, sizeof(name));
	dp->ports[li] = l->port;
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];
		struct sockaddr_storage ss;
		socklen_t sl;
		struct epoll_event ev;
		int fd;

		if (dp_sockaddr(l, dp->ports[li], &ss, &sl) < 0) {
			dp_errf(err, errlen, "%s: not a numeric IPv4 or IPv6 address", name);
			return -EINVAL;
		}
		fd = dp->io->listen((struct sockaddr *)&ss, sl, DP_BACKLOG);
		if (fd < 0) {
			dp_errf(err, errlen, "%s: %s", name, strerror(-fd));
			return fd;
		}
		w->ls[li].kind = DP_SRC_LISTENER;
		w->ls[li].idx = li;
		w->ls[li].fd = fd;
		if (dp->ports[li] == 0) {
			sl = sizeof(ss);
			if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
				dp_errf(err, errlen, "%s: getsockname: %s", name, strerror(errno));
				return -errno;
			}
			dp->ports[li] =
			    ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port);
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &w->ls[li];
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			dp_errf(err, errlen, "%s: epoll_ctl: %s", name, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int dp_eventfd_add(struct dp_worker *w, int *fd, struct dp_src *src, uint8_t kind)
{
	struct epoll_event ev;

	*fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	src->kind = kind;
	ev.events = EPOLLIN;
	ev.data.ptr = src;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, *fd, &ev) < 0)
		return -errno;
	return 0;
}

/* The i-th cpu this process may run on, wrapping around; -1 if unknown. */
static int dp_pick_cpu(const cpu_set_t *allowed, unsigned i)
{
	int n = CPU_COUNT(allowed), k;

	if (n <= 0)
		return -1;
	k = (int)(i % (unsigned)n);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, allowed) && k-- == 0)
			return cpu;
	return -1;
}

static struct dp_worker *dp_worker_new(struct dataplane *dp, unsigned id, const cpu_set_t *cpus,
				       char *err, size_t errlen)
{
	const struct config *cfg = dp->cfg;
	struct dp_worker *w;
	int r;

	/* Own cache lines: workers share nothing, not even by accident. */
	w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
	if (!w)
		goto nomem;
	memset(w, 0, sizeof(*w));
	w->dp = dp;
	w->id = id;
	w->cpu = cpus ? dp_pick_cpu(cpus, id) : -1;
	w->epfd = w->wake_fd = w->stop_fd = -1;
	dp_list_init(&w->conns);
	dp_list_init(&w->ready);
	dp_list_init(&w->memwait);
	dp_list_init(&w->graveyard);
	dp_timer_list_init(&w->timers[DP_T_COMMAND], (uint64_t)cfg->timeout_command * 1000);
	dp_timer_list_init(&w->timers[DP_T_DATA], (uint64_t)cfg->timeout_data_block * 1000);
	dp_timer_list_init(&w->timers[DP_T_LINGER], DP_LINGER_MS);
	w->ls = calloc(cfg->nlisteners, sizeof(*w->ls));
	w->rbuf = malloc(DP_RBUF_SIZE);
	if (!w->ls || !w->rbuf) {
		dp->workers[id] = w; /* so dp_free releases it */
		goto nomem;
	}
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		w->ls[i].fd = -1;
	dp->workers[id] = w;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		dp_errf(err, errlen, "worker %u: epoll_create1: %s", id, strerror(errno));
		return NULL;
	}
	r = dp_eventfd_add(w, &w->wake_fd, &w->wake_src, DP_SRC_WAKE);
	if (r == 0)
		r = dp_eventfd_add(w, &w->stop_fd, &w->stop_src, DP_SRC_STOP);
	if (r < 0) {
		dp_errf(err, errlen, "worker %u: eventfd: %s", id, strerror(-r));
		return NULL;
	}
	return w;
nomem:
	dp_errf(err, errlen, "worker %u: out of memory", id);
	return NULL;
}

struct dataplane *dataplane_start(const struct dataplane_params *p, char *err, size_t errlen)
{
	const struct config *cfg = p->cfg;
	struct dataplane *dp;
	cpu_set_t cpus;
	bool have_cpus;
	int r;

	if (!cfg || !p->spool || !p->submit || cfg->workers == 0 || cfg->nlisteners == 0) {
		dp_errf(err, errlen,
			"dataplane: need a config with workers and listeners, a spool "
			"and a submit function");
		return NULL;
	}
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		goto nomem;
	dp->cfg = cfg;
	dp->spool = p->spool;
	dp->submit = p->submit;
	dp->submit_arg = p->submit_arg;
	dp->io = &dp_io_kernel;
	dp->mem_budget = cfg->max_body_memory;
	dp->ecfg = calloc(cfg->nlisteners, sizeof(*dp->ecfg));
	dp->ports = calloc(cfg->nlisteners, sizeof(*dp->ports));
	dp->workers = calloc(cfg->workers, sizeof(*dp->workers));
	dp->cl = connlimit_new(DP_CONNLIMIT_STRIPES_LOG2);
	if (!dp->ecfg || !dp->ports || !dp->workers || !dp->cl)
		goto nomem;
	/* One engine configuration per listener, shared read-only by all of
	 * its sessions. */
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		struct smtp_engine_cfg *e = &dp->ecfg[i];

		e->hostname = cfg->hostname;
		e->max_message_size = cfg->max_message_size;
		e->max_recipients = cfg->max_recipients;
		e->max_errors = cfg->max_errors;
		e->lenient_bare_lf = cfg->lenient_bare_lf;
		e->submission = cfg->listeners[i].submission;
	}

	have_cpus = sched_getaffinity(0, sizeof(cpus), &cpus) == 0;
	for (unsigned i = 0; i < cfg->workers; i++) {
		dp->nworkers = i + 1;
		if (!dp_worker_new(dp, i, have_cpus ? &cpus : NULL, err, errlen))
			goto fail;
	}
	/* Bind synchronously: a bad address or a busy port is reported here,
	 * before any thread runs. */
	for (unsigned li = 0; li < cfg->nlisteners; li++)
		if (dp_bind_listener(dp, li, err, errlen) < 0)
			goto fail;
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];

		w->writer = spool_writer_new(dp->spool, i, dp_worker_wake, w);
		if (!w->writer) {
			dp_errf(err, errlen, "worker %u: cannot open a spool writer (see log)", i);
			goto fail;
		}
	}
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];

		r = pthread_create(&w->thread, NULL, dp_worker_main, w);
		if (r) {
			dp_errf(err, errlen, "worker %u: pthread_create: %s", i, strerror(r));
			goto fail;
		}
		w->started = true;
	}
	for (unsigned li = 0; li < cfg->nlisteners; li++)
		log_info("listening addr=%s port=%u role=%s workers=%u backend=%s",
			 cfg->listeners[li].address, dp->ports[li],
			 cfg->listeners[li].submission ? "submission" : "mta", dp->nworkers,
			 dp->io->name);
	return dp;
nomem:
	dp_errf(err, errlen, "dataplane: out of memory");
fail:
	dp_free(dp); /* stops the workers already started */
	return NULL;
}

static void dp_free(struct dataplane *dp)
{
	if (!dp)
		return;
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];
		uint64_t one = 1;

		if (!w || !w->started)
			continue;
		if (write(w->stop_fd, &one, sizeof(one)) < 0)
			log_err("worker=%u: stop eventfd: %s", i, strerror(errno));
	}
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];

		if (!w)
			continue;
		if (w->started) {
			int r = pthread_join(w->thread, NULL);

			SLUICE_ASSERT(r == 0);
		}
		/* A worker that never ran still owns its writer and sockets. */
		if (w->writer)
			spool_writer_close(w->writer);
		for (unsigned li = 0; w->ls && li < dp->cfg->nlisteners; li++)
			if (w->ls[li].fd >= 0)
				dp->io->close(w->ls[li].fd, false);
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		if (w->stop_fd >= 0)
			close(w->stop_fd);
		free(w->acks.v);
		free(w->ls);
		free(w->rbuf);
		free(w);
	}
	free(dp->workers);
	connlimit_free(dp->cl);
	free(dp->ports);
	free(dp->ecfg);
	free(dp);
}

void dataplane_stop(struct dataplane *dp)
{
	if (!dp)
		return;
	log_info("dataplane stopping workers=%u", dp->nworkers);
	dp_free(dp);
}

void dataplane_get_stats(struct dataplane *dp, struct dataplane_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = dp->workers[i];

		out->connections += atomic_load_explicit(&w->st_connections, memory_order_relaxed);
		out->refused += atomic_load_explicit(&w->st_refused, memory_order_relaxed);
		out->messages += atomic_load_explicit(&w->st_messages, memory_order_relaxed);
		out->open += atomic_load_explicit(&w->st_open, memory_order_relaxed);
	}
}

uint16_t dataplane_listen_port(const struct dataplane *dp, unsigned listener)
{
	if (listener >= dp->cfg->nlisteners)
		return 0;
	return dp->ports[listener];
}
