/* config_schema: the one schema table (key, type, default, bounds, doc). */
#include "config/config_pvt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(struct config, f)
#define KiB 1024LL
#define MiB (1024LL * KiB)
#define GiB (1024LL * MiB)
#define TiB (1024LL * GiB)

static const char *const bare_lf_names[] = {"refuse", "normalize", NULL};
static const char *const log_level_names[] = {"err", "warn", "info", "debug", NULL};
static const char *const role_names[] = {"mta", "submission", NULL};
static const char *const yes_no_names[] = {"no", "yes", NULL};
static const char *const action_names[] = {"local", "relay", "relay-via", "reject", NULL};

/* clang-format off */
const struct schema_row config_rows[] = {
	{{"hostname", "string", "(gethostname())",
	  "name in the greeting, EHLO reply and Received: header"},
	 CK_HOSTNAME, 0, 0, OFF(hostname), NULL},
	{{"workers", "int", "0",
	  "dataplane worker threads, one pinned per core; 0 = one per online CPU"},
	 CK_UINT, 0, 1024, OFF(workers), NULL},
	{{"listen", "list", "( { address = \"127.0.0.1\"; port = 2525; role = \"mta\"; } )",
	  "SMTP listeners: a list of groups with address, port and role"},
	 CK_LISTEN, 0, 0, 0, NULL},
	{{"listen.address", "string", "(required)",
	  "numeric IPv4 or IPv6 address to bind (\"0.0.0.0\", \"::\" for all)"},
	 CK_STRING, 0, 0, 0, NULL},
	{{"listen.port", "int", "(required)", "TCP port, 1..65535"},
	 CK_UINT, 1, 65535, 0, NULL},
	{{"listen.role", "enum", "\"mta\"",
	  "\"mta\" (port 25 traffic) or \"submission\" (authenticated clients)"},
	 CK_ENUM_STR, 0, 0, 0, role_names},
	{{"spool_dir", "string", "\"./var/spool\"",
	  "directory for spool segments and journals (relative to the working directory)"},
	 CK_STRING, 0, 0, OFF(spool_dir), NULL},
	{{"max_message_size", "size", "\"35M\"",
	  "largest message accepted (SIZE, RFC 1870); bigger gets 552 5.3.4"},
	 CK_SIZE, 1 * KiB, 2 * GiB, OFF(max_message_size), NULL},
	{{"max_body_memory", "size", "\"1G\"",
	  "memory for message bodies buffered by all sessions together; past it reads pause (back-pressure)"},
	 CK_SIZE, 1 * MiB, 1024 * GiB, OFF(max_body_memory), NULL},
	{{"max_recipients", "int", "1000",
	  "recipients per message; more get 452 4.5.3 (RFC 5321 4.5.3.1.8 asks for at least 100)"},
	 CK_UINT, 1, 100000, OFF(max_recipients), NULL},
	{{"max_errors", "int", "20",
	  "protocol errors per session before 421 and close"},
	 CK_UINT, 1, 1000, OFF(max_errors), NULL},
	{{"bare_lf", "enum", "\"refuse\"",
	  "bare LF in DATA: \"refuse\" (strict, stops SMTP smuggling) or \"normalize\" to CRLF (risky)"},
	 CK_ENUM_BOOL, 0, 0, OFF(lenient_bare_lf), bare_lf_names},
	{{"timeout_command", "int", "300",
	  "seconds to wait for the next command (RFC 5321 4.5.3.2: at least 300)"},
	 CK_UINT, 1, 86400, OFF(timeout_command), NULL},
	{{"timeout_data_block", "int", "180",
	  "seconds to wait for the next block of DATA/BDAT (RFC 5321 4.5.3.2: 180)"},
	 CK_UINT, 1, 86400, OFF(timeout_data_block), NULL},
	{{"max_connections", "int", "10000",
	  "SMTP connections in total, all workers; more get 421"},
	 CK_UINT, 1, 10000000, OFF(max_connections), NULL},
	{{"max_connections_per_ip", "int", "100",
	  "SMTP connections from one client address; more get 421"},
	 CK_UINT, 1, 10000000, OFF(max_connections_per_ip), NULL},
	{{"relay_networks", "list", "[ ]",
	  "client networks (CIDR strings) allowed to relay to any domain; empty = nobody"},
	 CK_CIDRS, 0, 0, 0, NULL},
	{{"commit_interval_us", "int", "1000",
	  "group commit: longest a message waits (microseconds) to share an fdatasync"},
	 CK_UINT, 0, 1000000, OFF(commit_interval_us), NULL},
	{{"commit_batch", "int", "256",
	  "group commit: sync at once when this many messages are waiting"},
	 CK_UINT, 1, 65536, OFF(commit_batch), NULL},
	{{"segment_size", "size", "\"64M\"",
	  "spool segment size; a worker starts a new segment after this many bytes"},
	 CK_SIZE, 1 * MiB, 2 * GiB, OFF(segment_size), NULL},
	{{"spool_min_free", "size", "\"100M\"",
	  "free space floor on the spool file system; below it MAIL gets 452 4.3.1"},
	 CK_SIZE, 0, 1024 * TiB, OFF(spool_min_free), NULL},
	{{"spool_max_size", "size", "0",
	  "bytes the spool may hold (segments); past it new mail gets 452 4.3.1; 0 = no limit besides spool_min_free"},
	 CK_SIZE, 0, 1024 * TiB, OFF(spool_max_size), NULL},
	{{"dns_servers", "string", "(system resolver)",
	  "DNS servers for MX lookups, \"127.0.0.1:53,[::1]:53\"; absent = /etc/resolv.conf"},
	 CK_STRING, 0, 0, OFF(dns_servers), NULL},
	{{"dns_timeout_ms", "int", "5000",
	  "milliseconds per DNS try (two tries per server)"},
	 CK_UINT, 10, 60000, OFF(dns_timeout_ms), NULL},
	{{"dns_ipv6", "enum", "\"no\"",
	  "\"yes\": also look up AAAA and deliver over IPv6"},
	 CK_ENUM_BOOL, 0, 0, OFF(dns_ipv6), yes_no_names},
	{{"relay_port", "int", "25",
	  "TCP port of the MX hosts found in DNS (tests use another)"},
	 CK_UINT, 1, 65535, OFF(relay_port), NULL},
	{{"relay_max_connections", "int", "500",
	  "outbound SMTP/LMTP connections in total"},
	 CK_UINT, 1, 100000, OFF(relay_max_connections), NULL},
	{{"relay_dest_connections", "int", "20",
	  "outbound connections to one destination (a domain's MX hosts, a smart host, an LMTP server)"},
	 CK_UINT, 1, 10000, OFF(relay_dest_connections), NULL},
	{{"relay_msgs_per_connection", "int", "100",
	  "messages sent over one connection before it is closed and a new one opened"},
	 CK_UINT, 1, 1000000, OFF(relay_msgs_per_connection), NULL},
	{{"relay_idle_timeout", "int", "5",
	  "seconds an idle outbound connection is kept for the next message to the same destination"},
	 CK_UINT, 0, 3600, OFF(relay_idle_timeout), NULL},
	{{"relay_connect_timeout", "int", "30",
	  "seconds to wait for an outbound TCP connection; then the next MX address"},
	 CK_UINT, 1, 3600, OFF(relay_connect_timeout), NULL},
	{{"relay_timeout_command", "int", "300",
	  "seconds to wait for the greeting and the replies to EHLO, MAIL, RCPT, RSET (RFC 5321 4.5.3.2)"},
	 CK_UINT, 1, 86400, OFF(relay_timeout_command), NULL},
	{{"relay_timeout_data_init", "int", "120",
	  "seconds to wait for the 354 reply to DATA (RFC 5321 4.5.3.2)"},
	 CK_UINT, 1, 86400, OFF(relay_timeout_data_init), NULL},
	{{"relay_timeout_data_block", "int", "180",
	  "seconds a block of the message may take to be written (RFC 5321 4.5.3.2)"},
	 CK_UINT, 1, 86400, OFF(relay_timeout_data_block), NULL},
	{{"relay_timeout_data_end", "int", "600",
	  "seconds to wait for the reply after the final dot (RFC 5321 4.5.3.2)"},
	 CK_UINT, 1, 86400, OFF(relay_timeout_data_end), NULL},
	{{"queue_retry_min", "int", "60",
	  "seconds before the first retry of a deferred recipient; doubles per try, with jitter"},
	 CK_UINT, 1, 86400, OFF(queue_retry_min), NULL},
	{{"queue_retry_max", "int", "3600",
	  "longest wait between two tries of a deferred recipient"},
	 CK_UINT, 1, 604800, OFF(queue_retry_max), NULL},
	{{"delay_warning", "int", "14400",
	  "seconds after arrival when the sender gets one delay notice; 0 = never"},
	 CK_UINT, 0, 31536000, OFF(delay_warning), NULL},
	{{"max_lifetime", "int", "432000",
	  "seconds after arrival when a deferred recipient is given up and the sender gets a failure notice"},
	 CK_UINT, 1, 31536000, OFF(max_lifetime), NULL},
	{{"routes_file", "string", "(none)",
	  "routes file loaded into the same table as routes (relative to the config file)"},
	 CK_PATH, 0, 0, OFF(routes_file), NULL},
	{{"log_level", "enum", "\"info\"",
	  "\"err\", \"warn\", \"info\" or \"debug\""},
	 CK_ENUM_STR, 0, 0, OFF(log_level), log_level_names},
	{{"routes", "list", "( )",
	  "routing table: a list of groups with domain, action and its options"},
	 CK_ROUTES, 0, 0, 0, NULL},
	{{"routes.domain", "string", "(required)",
	  "\"example.com\" exact, or \".example.com\" for every subdomain (not the domain itself)"},
	 CK_STRING, 0, 0, 0, NULL},
	{{"routes.action", "enum", "(required)",
	  "\"local\" (Maildir), \"relay\" (MX), \"relay-via\" (smart host) or \"reject\""},
	 CK_ENUM_STR, 0, 0, 0, action_names},
	{{"routes.maildir", "string", "(required for local)",
	  "local: Maildir root; mail goes to <maildir>/<domain>/<user>/"},
	 CK_STRING, 0, 0, 0, NULL},
	{{"routes.users", "list", "(catch-all)",
	  "local: the known local parts [ \"alice\", ... ]; absent = every local part exists"},
	 CK_STRLIST, 0, 0, 0, NULL},
	{{"routes.via", "string", "(required for relay-via)",
	  "relay-via: smart host \"host[:port]\" or \"[192.0.2.1]:25\" / \"[IPv6:2001:db8::1]\"; port 25 by default"},
	 CK_STRING, 0, 0, 0, NULL},
	{{"routes.lmtp", "string", "(none)",
	  "local: deliver over LMTP (RFC 2033) to \"host[:port]\" or \"[192.0.2.1]:24\" instead of Maildir; port 24 by default"},
	 CK_STRING, 0, 0, 0, NULL},
	{{NULL, NULL, NULL, NULL}, CK_UINT, 0, 0, 0, NULL},
};
/* clang-format on */

const struct schema_row *config_row_find(const char *key)
{
	for (const struct schema_row *r = config_rows; r->k.key; r++)
		if (strcmp(r->k.key, key) == 0)
			return r;
	return NULL;
}

static struct config_key *public_rows;
static pthread_once_t public_once = PTHREAD_ONCE_INIT;

static void public_rows_init(void)
{
	size_t n = 0;
	while (config_rows[n].k.key)
		n++;
	public_rows = calloc(n + 1, sizeof(*public_rows));
	if (!public_rows)
		return;
	for (size_t i = 0; i < n; i++)
		public_rows[i] = config_rows[i].k;
}

const struct config_key *config_schema(void)
{
	/* The public view is a plain array of struct config_key; built once
	 * from config_rows so there is still only one table to edit. */
	pthread_once(&public_once, public_rows_init);
	return public_rows;
}
