/* worker: one dataplane thread: pinned, epoll loop, timers, stop drain. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "common/log.h"
#include "dataplane/dataplane_pvt.h"

#define WORKER_MAX_EVENTS 128
/* Longest epoll_wait, so a quiet worker still reports quiescent states and
 * notices the clock. */
#define WORKER_MAX_WAIT_MS 1000

static void worker_setup_thread(struct dp_worker *w)
{
	char name[16];
	int r;

	snprintf(name, sizeof(name), "sluice-w%u", w->id);
	r = pthread_setname_np(pthread_self(), name);
	if (r)
		log_warn("worker=%u: pthread_setname_np: %s", w->id, strerror(r));
	if (w->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (r)
			log_warn("worker=%u: pin to cpu %d: %s", w->id, w->cpu, strerror(r));
	}
}

/* Read an eventfd to re-arm it (level-triggered in epoll). */
static void worker_drain_eventfd(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR)
		log_err("eventfd read: %s", strerror(errno));
}

static void worker_begin_stop(struct dp_worker *w)
{
	struct dp_list *n, *next;

	if (w->stopping)
		return;
	w->stopping = true;
	w->stop_deadline = w->now + DP_STOP_DRAIN_MS;
	/* No new clients here; the kernel resets what waits in this backlog
	 * (other workers' listeners are closing too). */
	for (unsigned i = 0; i < w->dp->cfg->nlisteners; i++) {
		if (w->ls[i].fd >= 0) {
			w->dp->io->close(w->ls[i].fd, false);
			w->ls[i].fd = -1;
		}
	}
	for (n = w->conns.next; n != &w->conns; n = next) {
		next = n->next;
		dp_conn_stop(w, dp_container_of(n, struct dp_conn, link));
	}
}

static int worker_timeout(struct dp_worker *w)
{
	uint64_t next = UINT64_MAX;

	if (!dp_list_empty(&w->ready))
		return 0;
	for (int k = 0; k < DP_T_COUNT; k++) {
		uint64_t t = dp_timer_list_next(&w->timers[k]);

		if (t < next)
			next = t;
	}
	if (w->accept_resume && w->accept_resume < next)
		next = w->accept_resume;
	if (w->stopping && w->stop_deadline < next)
		next = w->stop_deadline;
	if (next <= w->now)
		return 0;
	/* Parked sessions: poll the budget (other workers free memory and
	 * do not wake us). */
	if (!dp_list_empty(&w->memwait) && next - w->now > DP_MEM_POLL_MS)
		return DP_MEM_POLL_MS;
	if (next - w->now > WORKER_MAX_WAIT_MS)
		return WORKER_MAX_WAIT_MS;
	return (int)(next - w->now);
}

static void worker_run_ready(struct dp_worker *w)
{
	struct dp_list batch;

	if (dp_list_empty(&w->ready))
		return;
	/* Take the list: a connection that uses up its budget again goes
	 * back on w->ready for the next turn, not this one. */
	batch = w->ready;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	dp_list_init(&w->ready);
	while (!dp_list_empty(&batch)) {
		struct dp_conn *c = dp_container_of(batch.next, struct dp_conn, ready);

		dp_list_del(&c->ready);
		dp_conn_run(w, c);
	}
}

static void worker_run_timers(struct dp_worker *w)
{
	for (int k = 0; k < DP_T_COUNT; k++) {
		struct dp_timer *t;

		while ((t = dp_timer_list_expire(&w->timers[k], w->now)))
			dp_conn_timeout(w, dp_container_of(t, struct dp_conn, timer));
	}
	if (w->accept_resume && w->accept_resume <= w->now) {
		w->accept_resume = 0;
		for (unsigned i = 0; i < w->dp->cfg->nlisteners; i++) {
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->ls[i]};

			if (w->ls[i].fd >= 0 &&
			    epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->ls[i].fd, &ev) < 0)
				log_err("epoll_ctl worker=%u: %s", w->id, strerror(errno));
		}
	}
}

static void worker_bury(struct dp_worker *w)
{
	while (!dp_list_empty(&w->graveyard)) {
		struct dp_conn *c = dp_container_of(w->graveyard.next, struct dp_conn, link);

		dp_list_del(&c->link);
		dp_conn_destroy(w, c);
	}
}

/* The stop drain ran out of time: close what is left without a reply.
 * Messages still waiting for their commit stay in the spool and are
 * delivered after the next start's recovery. */
static void worker_abort_all(struct dp_worker *w)
{
	while (!dp_list_empty(&w->conns))
		dp_conn_abort(w, dp_container_of(w->conns.next, struct dp_conn, link));
	if (w->acks.count)
		log_warn("worker=%u: stopping with %u message(s) not yet durable: no reply sent, "
			 "recovered at next start",
			 w->id, w->acks.count);
	while (w->acks.count) {
		struct dp_conn *c = w->acks.v[w->acks.head].conn;

		w->acks.head = (w->acks.head + 1) & (w->acks.cap - 1);
		w->acks.count--;
		dp_list_add_tail(&w->graveyard, &c->link);
	}
	worker_bury(w);
}

void *dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;
	struct epoll_event evs[WORKER_MAX_EVENTS];

	worker_setup_thread(w);
	rcu_register_thread();
	w->now = dp_now_ms();
	for (;;) {
		int n, timeout = worker_timeout(w);

		/* Blocking: do not hold back grace periods meanwhile. */
		rcu_thread_offline();
		n = epoll_wait(w->epfd, evs, WORKER_MAX_EVENTS, timeout);
		rcu_thread_online();
		w->now = dp_now_ms();
		if (n < 0) {
			/* Only EINTR is possible with our arguments. */
			SLUICE_ASSERT(errno == EINTR);
			n = 0;
		}
		for (int i = 0; i < n; i++) {
			uint8_t kind = *(const uint8_t *)evs[i].data.ptr;

			switch (kind) {
			case DP_SRC_CONN:
				dp_conn_event(w, evs[i].data.ptr, evs[i].events);
				break;
			case DP_SRC_LISTENER: {
				struct dp_listener_src *l = evs[i].data.ptr;

				if (l->fd >= 0)
					dp_conn_accept(w, l);
				break;
			}
			case DP_SRC_WAKE:
				/* acks are released below, every turn */
				worker_drain_eventfd(w->wake_fd);
				break;
			case DP_SRC_STOP:
				worker_drain_eventfd(w->stop_fd);
				worker_begin_stop(w);
				break;
			default:
				SLUICE_ASSERT(!"unknown epoll source");
			}
		}
		/* Cheap when nothing waits (one load); also covers a wake that
		 * raced with an append. */
		dp_conn_acks_release(w);
		worker_run_ready(w);
		dp_mem_run_parked(w);
		worker_run_timers(w);
		worker_bury(w);
		rcu_quiescent_state();
		if (w->stopping) {
			if (dp_list_empty(&w->conns) && w->acks.count == 0)
				break;
			if (w->now >= w->stop_deadline) {
				worker_abort_all(w);
				break;
			}
		}
	}
	spool_writer_close(w->writer);
	w->writer = NULL;
	rcu_unregister_thread();
	return NULL;
}
