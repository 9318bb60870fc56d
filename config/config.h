/*
 * config: sluiced's configuration, from a libconfig file or the embedded
 * default, validated against one schema (key, type, default, bounds, doc).
 *
 * Owns: struct config (immutable once loaded) and the schema.  Every error
 * names file:line and what is wrong ("sluice.conf:12: max_recipients: 0 is
 * below the minimum 1").  `sluiced --check-config FILE` calls
 * config_load_file() and prints the error or "ok".
 *
 * Thread context: loading runs on the main thread (start-up, SIGHUP); a
 * loaded struct config is read-only and may be read by any thread.
 *
 * The embedded default (no config file): listen 127.0.0.1:2525 (mta), spool
 * ./var/spool, local domains localhost and example.test delivered catch-all
 * to ./var/mail/<domain>/<user>/, relay_networks empty (relays for nobody).
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cidr.h"
#include "config/route.h"

struct config_listener {
	char *address;	 /* numeric IPv4 or IPv6 address */
	uint16_t port;
	bool submission; /* role = "submission" (else "mta") */
};

struct config {
	char *source;		       /* file path, or "(embedded default)" */
	char *hostname;		       /* greeting/Received name; default: gethostname() */
	unsigned workers;	       /* dataplane threads; 0 in the file = number of cores (resolved here) */
	struct config_listener *listeners;
	unsigned nlisteners;
	char *spool_dir;	       /* spool segments and journals */
	uint64_t max_message_size;     /* octets (SIZE) */
	unsigned max_recipients;       /* per message */
	unsigned max_errors;	       /* per session before 421 */
	bool lenient_bare_lf;	       /* bare_lf = "normalize" (default "refuse") */
	unsigned timeout_command;      /* seconds, RFC 5321 4.5.3.2 (300) */
	unsigned timeout_data_block;   /* seconds (180) */
	unsigned max_connections;      /* total, all workers */
	unsigned max_connections_per_ip;
	struct cidr *relay_networks;
	unsigned nrelay_networks;
	unsigned commit_interval_us;   /* group commit: longest wait to gather a batch */
	unsigned commit_batch;	       /* group commit: sync at once when this many are waiting */
	uint64_t segment_size;	       /* roll the spool segment at this size */
	uint64_t spool_min_free;       /* free bytes floor: 452 4.3.1 below it */
	char *routes_file;	       /* optional; NULL if none */
	char *log_level;	       /* "err", "warn", "info", "debug" */
	struct route_table *routes;    /* built from routes + routes_file; owned until taken */
	uint64_t max_body_memory;      /* bytes all sessions may buffer for bodies; past it
				        * sessions in a transaction pause (0 = no limit) */
	uint64_t spool_max_size;       /* bytes the spool may hold; past it 452 4.3.1 (0 = none) */

	/* Remote delivery (relay) and the queue's schedule. */
	char *dns_servers;	       /* "127.0.0.1:5353,..."; NULL = /etc/resolv.conf */
	unsigned dns_timeout_ms;       /* per DNS try */
	bool dns_ipv6;		       /* also AAAA, connect over IPv6 */
	unsigned relay_port;	       /* TCP port of MX hosts (25) */
	unsigned relay_max_connections;	 /* outbound SMTP/LMTP connections in total */
	unsigned relay_dest_connections; /* per destination (domain or smart host) */
	unsigned relay_msgs_per_connection; /* then a new connection */
	unsigned relay_idle_timeout;   /* seconds a connection waits for more mail (cache) */
	unsigned relay_connect_timeout; /* seconds for TCP connect */
	unsigned relay_timeout_command; /* seconds: greeting, EHLO, MAIL, RCPT, RSET (300) */
	unsigned relay_timeout_data_init; /* seconds: reply to DATA (120) */
	unsigned relay_timeout_data_block; /* seconds: each block of the body written (180) */
	unsigned relay_timeout_data_end; /* seconds: reply after the final dot (600) */
	unsigned queue_retry_min;      /* seconds before the first retry */
	unsigned queue_retry_max;      /* longest wait between tries */
	unsigned delay_warning;	       /* seconds after arrival: one delay notice (0 = none) */
	unsigned max_lifetime;	       /* seconds after arrival: give up, failure notice */
};

/* One row of the schema, for documentation and its test. */
struct config_key {
	const char *key;
	const char *type;	  /* "int", "size", "bool", "string", "list", "enum" */
	const char *default_text; /* as written in the docs */
	const char *doc;	  /* one line */
};

/* The schema rows, terminated by a row with key == NULL. */
const struct config_key *config_schema(void);

/*
 * Load and validate path.  Returns the config, or NULL with err set to
 * "path:line: message" (or "path: message" without a line).
 */
struct config *config_load_file(const char *path, char *err, size_t errlen);

/* Load the embedded default.  Returns NULL only on out of memory. */
struct config *config_load_default(char *err, size_t errlen);

/* The embedded default's text (libconfig syntax), for docs and tests. */
const char *config_default_text(void);

/* Take the route table out of cfg (cfg->routes becomes NULL). */
struct route_table *config_take_routes(struct config *cfg);

void config_free(struct config *cfg);

#endif
