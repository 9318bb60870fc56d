/*
 * conn_floor: the kernel's ceiling for one-message-per-connection SMTP load
 * on this machine.  A client and a server, each one pinned epoll thread on
 * its own core, run the smallest SMTP-shaped session there is over
 * loopback TCP: connect, "220" greeting, "QUIT", "221", close (the server
 * closes first, as an SMTP server does after 221).  No EHLO, no message,
 * no parsing: what it reaches is what the kernel allows for the TCP
 * handshake, four small segments and the teardown, with nothing else
 * running.  A real generator and a real server can only be slower, so this
 * bounds what `sluice-bench send --per-connection 1` can ever show here.
 *
 *	build/bench/conn_floor [CONNECTIONS [CONCURRENCY [PORT]]]
 *	(defaults 50000, 100, 2599; loopback only; ends by itself)
 *
 * Prints connections/s and the CPU seconds per 1,000 connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_EVENTS 256

static const char greeting[] = "220 floor\r\n";
static const char quit[] = "QUIT\r\n";
static const char bye[] = "221 bye\r\n";

static struct sockaddr_in floor_addr;
static atomic_bool floor_done;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(unsigned core)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(core % (unsigned)(n > 0 ? n : 1), &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void add_fd(int ep, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
}

/* The server: accept and greet; on QUIT say 221 and close. */
static void *floor_server(void *arg)
{
	int lfd = *(int *)arg, ep = epoll_create1(0), one = 1;
	struct epoll_event evs[FLOOR_EVENTS];
	char buf[256];

	pin(1);
	if (ep < 0)
		die("epoll_create1");
	add_fd(ep, lfd, EPOLLIN);
	while (!atomic_load(&floor_done)) {
		int n = epoll_wait(ep, evs, FLOOR_EVENTS, 100);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					send(c, greeting, sizeof(greeting) - 1, MSG_NOSIGNAL);
					add_fd(ep, c, EPOLLIN | EPOLLRDHUP | EPOLLET);
				}
				continue;
			}
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			if (r < 0 && errno == EAGAIN)
				continue;
			/* The client's one command is QUIT (or it went away). */
			if (r > 0)
				send(fd, bye, sizeof(bye) - 1, MSG_NOSIGNAL);
			close(fd);
		}
	}
	close(ep);
	return NULL;
}

static int floor_connect(int ep)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&floor_addr, sizeof(floor_addr)) < 0 &&
	    errno != EINPROGRESS)
		die("connect");
	add_fd(ep, fd, EPOLLIN | EPOLLRDHUP | EPOLLET);
	return fd;
}

/* The client: keep concurrency sessions going until total have ended. */
static void floor_client(long total, int concurrency)
{
	int ep = epoll_create1(0);
	struct epoll_event evs[FLOOR_EVENTS];
	unsigned char *greeted = calloc(1 << 20, 1); /* by descriptor */
	long started = 0, done = 0;
	char buf[256];

	pin(0);
	if (ep < 0 || !greeted)
		die("client set-up");
	for (; started < concurrency && started < total; started++)
		greeted[floor_connect(ep)] = 0;
	while (done < total) {
		int n = epoll_wait(ep, evs, FLOOR_EVENTS, 1000);

		if (n == 0) {
			fprintf(stderr, "conn_floor: no progress for 1 s\n");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			if (r < 0 && errno == EAGAIN)
				continue;
			if (r > 0 && !greeted[fd]) {
				greeted[fd] = 1;
				send(fd, quit, sizeof(quit) - 1, MSG_NOSIGNAL);
				continue;
			}
			close(fd);
			done++;
			if (started < total) {
				greeted[floor_connect(ep)] = 0;
				started++;
			}
		}
	}
	free(greeted);
	close(ep);
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	long total = argc > 1 ? atol(argv[1]) : 50000;
	int concurrency = argc > 2 ? atoi(argv[2]) : 100;
	int port = argc > 3 ? atoi(argv[3]) : 2599;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	pthread_t server;
	double t0, c0, elapsed, cpu;

	if (total <= 0 || concurrency <= 0 || concurrency > 60000 || port <= 0 || port > 65535) {
		fputs("usage: conn_floor [CONNECTIONS [CONCURRENCY [PORT]]]\n", stderr);
		return 2;
	}
	floor_addr.sin_family = AF_INET;
	floor_addr.sin_port = htons((uint16_t)port);
	floor_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&floor_addr, sizeof(floor_addr)) < 0 ||
	    listen(lfd, 4096) < 0)
		die("bind/listen 127.0.0.1");
	if (pthread_create(&server, NULL, floor_server, &lfd) != 0)
		die("pthread_create");
	t0 = now_s();
	c0 = cpu_s();
	floor_client(total, concurrency);
	elapsed = now_s() - t0;
	cpu = cpu_s() - c0;
	atomic_store(&floor_done, true);
	pthread_join(server, NULL);
	close(lfd);
	printf("conn_floor: %ld connections (connect, 220, QUIT, 221, close), %d at a time: "
	       "%.0f conn/s, %.3f CPU s per 1000 (client and server)\n",
	       total, concurrency, (double)total / elapsed, cpu / ((double)total / 1000));
	return 0;
}
