/*
 * cidr: IPv4/IPv6 networks ("192.0.2.0/24", "2001:db8::/32", "127.0.0.1")
 * for relay_networks and connection limits.
 *
 * Thread context: any; a parsed struct cidr is plain data.
 */
#ifndef SLUICE_CIDR_H
#define SLUICE_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
	int family;	   /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network address, host bits cleared; IPv4 in the first 4 bytes */
	uint8_t prefixlen; /* 0..32 or 0..128 */
};

/* Parse "addr" or "addr/len".  Returns 0 or -EINVAL. */
int cidr_parse(const char *text, struct cidr *out);

/* True when the address (AF_INET or AF_INET6; an IPv4-mapped IPv6 address
 * counts as IPv4) is inside the network. */
bool cidr_match(const struct cidr *net, const struct sockaddr *sa);

/* True when sa matches any of the n networks. */
bool cidr_match_any(const struct cidr *nets, unsigned n, const struct sockaddr *sa);

#endif
