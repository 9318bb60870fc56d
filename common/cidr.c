/* cidr: see cidr.h. */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static void clear_host_bits(uint8_t *addr, unsigned bytes, unsigned prefixlen)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned bit = i * 8;
		if (bit >= prefixlen)
			addr[i] = 0;
		else if (prefixlen - bit < 8)
			addr[i] &= (uint8_t)(0xff << (8 - (prefixlen - bit)));
	}
}

int cidr_parse(const char *text, struct cidr *out)
{
	char buf[64];
	size_t len = strlen(text);
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len + 1);
	char *slash = strchr(buf, '/');
	long plen = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		plen = strtol(slash + 1, &end, 10);
		if (*end)
			return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		if (plen < 0)
			plen = 32;
		if (plen > 32)
			return -EINVAL;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		if (plen < 0)
			plen = 128;
		if (plen > 128)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	out->prefixlen = (uint8_t)plen;
	clear_host_bits(out->addr, 16, out->prefixlen);
	return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *net, unsigned prefixlen)
{
	unsigned full = prefixlen / 8, rest = prefixlen % 8;
	if (memcmp(a, net, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == net[full];
}

bool cidr_match(const struct cidr *net, const struct sockaddr *sa)
{
	const uint8_t *a;
	int family = sa->sa_family;
	if (family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, mapped, 12) == 0) {
			a += 12;
			family = AF_INET;
		}
	} else {
		return false;
	}
	return family == net->family && prefix_equal(a, net->addr, net->prefixlen);
}

bool cidr_match_any(const struct cidr *nets, unsigned n, const struct sockaddr *sa)
{
	for (unsigned i = 0; i < n; i++)
		if (cidr_match(&nets[i], sa))
			return true;
	return false;
}
