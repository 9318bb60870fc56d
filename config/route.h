/*
 * route: the routing table, domain -> action, read lock-free by every
 * worker at RCPT time and by delivery, replaced whole at runtime (SIGHUP).
 *
 * Owns: route tables (an rculfhash per table, qsbr flavour) and the one
 * published "current" table pointer.  A table is immutable once published;
 * a reload builds a new table and route_publish() swaps the pointer, then
 * frees the old one after a grace period.  Readers never block and see
 * either the old or the new table whole.
 *
 * The table also carries relay_networks (CIDR list of clients allowed to
 * relay to domains the table does not accept), so one snapshot answers the
 * whole RCPT policy question.
 *
 * Matching: exact domain first, then parent entries written with a leading
 * dot (".example.net" matches "a.example.net" and "b.a.example.net", not
 * "example.net"), nearest parent first.  Domains compare case-insensitively
 * (ASCII); a trailing dot is ignored.
 *
 * Thread context: route_current()/route_lookup() and the struct route they
 * return need the caller to be a registered urcu-qsbr reader thread that is
 * online; the pointers stay valid until the caller's next quiescent state.
 * route_publish() is called by one updater thread at a time (never by a
 * registered reader that is online: it waits for a grace period).
 */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cidr.h"

enum route_action {
	ROUTE_NONE = 0,	 /* no entry matches: not a domain we accept */
	ROUTE_LOCAL,	 /* deliver to Maildir under maildir_root/<domain>/<user>/,
			  * or (lmtp) over LMTP to relay_host:relay_port */
	ROUTE_RELAY,	 /* remote: MX lookup, then SMTP */
	ROUTE_RELAY_VIA, /* remote through a smart host relay_host:relay_port */
	ROUTE_REJECT,	 /* refuse recipients in this domain (550 5.7.1) */
};

/* Returns "none", "local", "relay", "relay-via", "reject". */
const char *route_action_str(enum route_action a);

/* One entry; immutable while published. */
struct route {
	enum route_action action;
	const char *pattern;	 /* as configured, lowercased: "example.com" or ".example.net" */
	const char *maildir_root;/* ROUTE_LOCAL: root directory */
	bool catch_all;		 /* ROUTE_LOCAL: every local part is a mailbox */
	const char *relay_host;	 /* ROUTE_RELAY_VIA, or LOCAL with lmtp: host name or
				  * address literal without [] */
	uint16_t relay_port;	 /* ROUTE_RELAY_VIA: port (default 25); lmtp: (24) */
	bool lmtp;		 /* ROUTE_LOCAL: into a mail store over LMTP (RFC 2033),
				  * maildir_root is NULL */
	int src_line;		 /* config or routes-file line it came from, for messages */
};

/* What the builder takes for one entry (strings are copied). */
struct route_spec {
	enum route_action action;
	const char *maildir_root;  /* ROUTE_LOCAL */
	const char *const *users;  /* ROUTE_LOCAL: known local parts; NULL/0 = catch-all */
	unsigned nusers;
	const char *relay_host;	   /* ROUTE_RELAY_VIA, or ROUTE_LOCAL with lmtp */
	uint16_t relay_port;
	bool lmtp;		   /* ROUTE_LOCAL: LMTP to relay_host instead of Maildir */
	int src_line;
};

struct route_table;

/* An empty table.  Returns NULL on out of memory.  Any thread. */
struct route_table *route_table_new(void);

/*
 * Add an entry for domain (exact, or ".parent").  Returns 0, or -EINVAL for a
 * bad domain or spec, -EEXIST for a duplicate; then err says what is wrong
 * (without file:line, the caller adds it).  Only before publishing.
 */
int route_table_add(struct route_table *t, const char *domain, const struct route_spec *spec,
		    char *err, size_t errlen);

/*
 * Load a routes file: one entry per line, '#' comments, blank lines ignored:
 *	domain local MAILDIR_ROOT [user,user,...]
 *	domain local lmtp:HOST[:PORT] [user,user,...]   (LMTP, port 24 by default)
 *	domain relay
 *	domain relay-via HOST[:PORT]   (HOST may be [address-literal])
 *	domain reject
 * Returns 0, or -errno / -EINVAL with err set to "path:line: message".
 */
int route_table_load_file(struct route_table *t, const char *path, char *err, size_t errlen);

/*
 * Like route_table_load_file(), on len bytes of routes-file text in memory
 * (need not be NUL-terminated; a NUL byte is an error).  name is used in
 * messages ("name:line: message").  On error the entries from the lines
 * before the bad one stay in t: discard t.  Returns 0 or -EINVAL.
 * (Added for the fuzzer and for tests; any thread, t not published.)
 */
int route_table_load_buffer(struct route_table *t, const char *name, const char *buf, size_t len,
			    char *err, size_t errlen);

/* Replace the relay networks (copied).  Returns 0 or -ENOMEM. */
int route_table_set_relay_networks(struct route_table *t, const struct cidr *nets, unsigned n);

/* Number of entries. */
size_t route_table_size(const struct route_table *t);

/* The i-th entry in insertion order (i < route_table_size(t)), or NULL.
 * Same thread context as route_lookup(). (Added: dumps, tests, fuzzer.) */
const struct route *route_table_entry(const struct route_table *t, size_t i);

/* Free a table that is not published (or no longer: route_publish does it). */
void route_table_free(struct route_table *t);

/*
 * Publish t as the current table (t may be NULL to clear), wait for a grace
 * period and free the previous one.  Updater thread only (see above).
 */
void route_publish(struct route_table *t);

/* The current table, or NULL.  Reader side (see above). */
const struct route_table *route_current(void);

/* The entry for domain (exact, then nearest ".parent"), or NULL.  Reader
 * side when t is published; any thread for a private table. */
const struct route *route_lookup(const struct route_table *t, const char *domain);

/* For ROUTE_LOCAL: true when local_part is a mailbox (catch-all, or listed;
 * compared case-insensitively). */
bool route_local_user_exists(const struct route *r, const char *local_part);

/* True when the client at sa may relay to any domain. */
bool route_relay_allowed(const struct route_table *t, const struct sockaddr *sa);

#endif
