/* io_kernel: the kernel socket backend (epoll loop lives in worker.c). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/dataplane_pvt.h"

static int io_kernel_listen(const struct sockaddr *sa, socklen_t salen, int backlog)
{
	int fd, one = 1, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* An IPv6 listener takes IPv6 only; IPv4 has its own listener, so the
	 * client address is never a mapped one. */
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, sa, salen) < 0 || listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static int io_kernel_accept(int lfd, struct sockaddr *sa, socklen_t *salen)
{
	int fd, one = 1;

	fd = accept4(lfd, sa, salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* Replies go out whole, one send per batch: do not let Nagle hold the
	 * next one back while the previous is unacknowledged (pipelining). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static ssize_t io_kernel_recv(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t io_kernel_send(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static void io_kernel_close(int fd, bool graceful)
{
	/* FIN first so the peer reads our last reply before the close. */
	if (graceful)
		(void)shutdown(fd, SHUT_WR);
	/* close(2) on a socket releases it even when it reports an error. */
	(void)close(fd);
}

const struct dp_io_ops dp_io_kernel = {
    .name = "kernel",
    .listen = io_kernel_listen,
    .accept = io_kernel_accept,
    .recv = io_kernel_recv,
    .send = io_kernel_send,
    .close = io_kernel_close,
};
