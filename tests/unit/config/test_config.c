/* Unit tests for config: defaults, every key, sizes, errors, the embedded
 * default, and that config/README.md documents every schema key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static const char *readme_path;
static char tmpdir[] = "/tmp/sluice-config-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static struct config *load_text(const char *text)
{
	char err[512] = "";
	const char *path = write_file("t.conf", text);
	struct config *cfg = config_load_file(path, err, sizeof(err));
	if (!cfg)
		fail_msg("load: got error \"%s\", want ok", err);
	return cfg;
}

/* The error for text, with the temp dir prefix removed ("t.conf:3: ..."). */
static const char *load_err(const char *text)
{
	static char err[512];
	const char *path = write_file("t.conf", text);
	err[0] = '\0';
	struct config *cfg = config_load_file(path, err, sizeof(err));
	if (cfg) {
		config_free(cfg);
		fail_msg("load \"%s\": got ok, want an error", text);
	}
	/* "TMPDIR/t.conf:1: ... TMPDIR/x" -> "t.conf:1: ... TMP/x" */
	static char out[512];
	size_t dl = strlen(tmpdir), o = 0;
	const char *p = err;
	if (strncmp(p, tmpdir, dl) == 0 && p[dl] == '/')
		p += dl + 1;
	while (*p && o < sizeof(out) - 4) {
		if (strncmp(p, tmpdir, dl) == 0) {
			memcpy(out + o, "TMP", 3);
			o += 3;
			p += dl;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return out;
}

static void check_defaults(const struct config *cfg)
{
	char host[256] = "";
	gethostname(host, sizeof(host));
	assert_string_equal(cfg->hostname, host);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	assert_int_equal(cfg->workers, (unsigned)ncpu);
	assert_string_equal(cfg->spool_dir, "./var/spool");
	assert_int_equal(cfg->max_message_size, 36700160);
	assert_int_equal(cfg->max_recipients, 1000);
	assert_int_equal(cfg->max_errors, 20);
	assert_false(cfg->lenient_bare_lf);
	assert_int_equal(cfg->timeout_command, 300);
	assert_int_equal(cfg->timeout_data_block, 180);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->max_connections_per_ip, 100);
	assert_int_equal(cfg->nrelay_networks, 0);
	assert_int_equal(cfg->commit_interval_us, 1000);
	assert_int_equal(cfg->commit_batch, 256);
	assert_int_equal(cfg->segment_size, 67108864);
	assert_int_equal(cfg->spool_min_free, 104857600);
	assert_null(cfg->routes_file);
	assert_string_equal(cfg->log_level, "info");
	assert_int_equal(cfg->nlisteners, 1);
	assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
	assert_int_equal(cfg->listeners[0].port, 2525);
	assert_false(cfg->listeners[0].submission);
	assert_non_null(cfg->routes);
}

static void test_embedded_default(void **state)
{
	(void)state;
	char err[256] = "";
	struct config *cfg = config_load_default(err, sizeof(err));
	if (!cfg)
		fail_msg("default: %s", err);
	check_defaults(cfg);
	assert_string_equal(cfg->source, "(embedded default)");
	assert_int_equal(route_table_size(cfg->routes), 2);
	static const char *const local[] = {"localhost", "example.test", "LOCALHOST."};
	for (unsigned i = 0; i < 3; i++) {
		const struct route *r = route_lookup(cfg->routes, local[i]);
		if (!r)
			fail_msg("default route %s: got none, want local", local[i]);
		assert_int_equal(r->action, ROUTE_LOCAL);
		assert_true(r->catch_all);
		assert_string_equal(r->maildir_root, "./var/mail");
	}
	assert_null(route_lookup(cfg->routes, "example.com"));
	assert_null(route_lookup(cfg->routes, "a.example.test"));
	/* the text is what was parsed */
	const char *text = config_default_text();
	assert_non_null(strstr(text, "127.0.0.1"));
	assert_non_null(strstr(text, "example.test"));
	struct config *again = load_text(text);
	assert_int_equal(route_table_size(again->routes), 2);
	config_free(again);

	struct route_table *t = config_take_routes(cfg);
	assert_non_null(t);
	assert_null(cfg->routes);
	assert_null(config_take_routes(cfg));
	config_free(cfg);
	route_table_free(t);
}

static void test_empty_file(void **state)
{
	(void)state;
	struct config *cfg = load_text("# nothing set\n");
	check_defaults(cfg);
	assert_int_equal(route_table_size(cfg->routes), 0);
	config_free(cfg);
}

static void test_every_key(void **state)
{
	(void)state;
	write_file("extra.routes", "# more\n.sub.example.org relay\nspam.example reject\n");
	struct config *cfg =
	    load_text("hostname = \"mx1.isp.example\";\n"
		      "workers = 3;\n"
		      "listen = ( { address = \"127.0.0.1\"; port = 25; },\n"
		      "           { address = \"::1\"; port = 587; role = \"submission\"; } );\n"
		      "spool_dir = \"/srv/spool\";\n"
		      "max_message_size = \"50M\";\n"
		      "max_recipients = 200;\n"
		      "max_errors = 5;\n"
		      "bare_lf = \"normalize\";\n"
		      "timeout_command = 600;\n"
		      "timeout_data_block = 90;\n"
		      "max_connections = 50000;\n"
		      "max_connections_per_ip = 20;\n"
		      "relay_networks = [ \"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.1\" ];\n"
		      "commit_interval_us = 0;\n"
		      "commit_batch = 64;\n"
		      "segment_size = 134217728;\n"
		      "spool_min_free = 1073741824L;\n"
		      "routes_file = \"extra.routes\";\n"
		      "log_level = \"debug\";\n"
		      "routes = (\n"
		      "  { domain = \"isp.example\"; action = \"local\"; maildir = \"/srv/mail\";\n"
		      "    users = [ \"alice\", \"Bob\" ]; },\n"
		      "  { domain = \".isp.example\"; action = \"relay\"; },\n"
		      "  { domain = \"partner.example\"; action = \"relay-via\"; via = "
		      "\"[192.0.2.9]:2526\"; },\n"
		      "  { domain = \"old.example\"; action = \"reject\"; }\n"
		      ");\n");
	assert_string_equal(cfg->hostname, "mx1.isp.example");
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->nlisteners, 2);
	assert_string_equal(cfg->listeners[1].address, "::1");
	assert_int_equal(cfg->listeners[1].port, 587);
	assert_true(cfg->listeners[1].submission);
	assert_false(cfg->listeners[0].submission);
	assert_string_equal(cfg->spool_dir, "/srv/spool");
	assert_int_equal(cfg->max_message_size, 50 * 1048576);
	assert_int_equal(cfg->max_recipients, 200);
	assert_int_equal(cfg->max_errors, 5);
	assert_true(cfg->lenient_bare_lf);
	assert_int_equal(cfg->timeout_command, 600);
	assert_int_equal(cfg->timeout_data_block, 90);
	assert_int_equal(cfg->max_connections, 50000);
	assert_int_equal(cfg->max_connections_per_ip, 20);
	assert_int_equal(cfg->nrelay_networks, 3);
	assert_int_equal(cfg->commit_interval_us, 0);
	assert_int_equal(cfg->commit_batch, 64);
	assert_int_equal(cfg->segment_size, 134217728);
	assert_int_equal(cfg->spool_min_free, 1073741824);
	assert_string_equal(cfg->routes_file, "extra.routes");
	assert_string_equal(cfg->log_level, "debug");

	struct route_table *t = cfg->routes;
	assert_int_equal(route_table_size(t), 6);
	const struct route *r = route_lookup(t, "isp.example");
	assert_int_equal(r->action, ROUTE_LOCAL);
	assert_int_equal(r->src_line, 22);
	assert_true(route_local_user_exists(r, "BOB"));
	assert_false(route_local_user_exists(r, "carol"));
	assert_int_equal(route_lookup(t, "pop.isp.example")->action, ROUTE_RELAY);
	r = route_lookup(t, "partner.example");
	assert_string_equal(r->relay_host, "192.0.2.9");
	assert_int_equal(r->relay_port, 2526);
	assert_int_equal(route_lookup(t, "old.example")->action, ROUTE_REJECT);
	assert_int_equal(route_lookup(t, "a.sub.example.org")->action, ROUTE_RELAY);
	assert_int_equal(route_lookup(t, "spam.example")->src_line, 3);
	/* relay networks are on the table too */
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a010203)};
	assert_true(route_relay_allowed(t, (struct sockaddr *)&sin));
	sin.sin_addr.s_addr = htonl(0x0b010203);
	assert_false(route_relay_allowed(t, (struct sockaddr *)&sin));
	config_free(cfg);
}

static void test_sizes(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		uint64_t want;
	} cases[] = {
	    {"1048576", 1048576},	    {"\"1M\"", 1048576},    {"\"1m\"", 1048576},
	    {"\"2048K\"", 2097152},	    {"\"1G\"", 1073741824}, {"\"2G\"", 2147483648ULL},
	    {"2147483648L", 2147483648ULL}, {"0x100000", 1048576},
	};
	char text[128];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "segment_size = %s;\n", cases[i].value);
		struct config *cfg = load_text(text);
		if (cfg->segment_size != cases[i].want)
			fail_msg("segment_size = %s: got %llu, want %llu", cases[i].value,
				 (unsigned long long)cfg->segment_size,
				 (unsigned long long)cases[i].want);
		config_free(cfg);
	}
}

static void test_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"\n\nsegment_size = 4294967296;\n",
	     "t.conf:3: integer 4294967296 does not fit in 32 bits: write 4294967296L, or a "
	     "size string like \"64M\""},
	    {"# x = 99999999999\ns = \"99999999999\";\n", "t.conf:2: unknown setting 's'"},
	    {"segment_size = \"3T\";\n", "t.conf:1: segment_size: 3T is above the maximum 2G"},
	    {"segment_size = \"64Q\";\n",
	     "t.conf:1: segment_size: \"64Q\" is not a size (an integer, or a string like "
	     "\"64M\"; suffixes K, M, G, T)"},
	    {"segment_size = -1;\n", "t.conf:1: segment_size: -1 is below the minimum 1048576"},
	    {"spool_min_free = \"99999999999999999999\";\n",
	     "t.conf:1: spool_min_free: \"99999999999999999999\" is too big"},
	    {"workers = 1.5;\n", "t.conf:1: workers: expected an integer, got a float"},
	    {"workers = true;\n", "t.conf:1: workers: expected an integer, got a boolean"},
	    {"hostname = \"bad host\";\n",
	     "t.conf:1: hostname: \"bad host\" is not a valid host name"},
	    {"spool_dir = \"\";\n", "t.conf:1: spool_dir: must not be empty"},
	    {"log_level = \"loud\";\n",
	     "t.conf:1: log_level: \"loud\" is not one of err, warn, info, debug"},
	    {"listen = 25;\n", "t.conf:1: listen: expected a list of groups ( { address = "
			       "\"127.0.0.1\"; port = 25; }, ... ), got an integer"},
	    {"listen = ( { address = \"127.0.0.1\"; } );\n",
	     "t.conf:1: listen.port: required setting is missing"},
	    {"listen = ( { port = 25; address = \"::1\"; proto = \"tcp\"; } );\n",
	     "t.conf:1: unknown setting 'listen.proto'"},
	    {"listen = ( { address = \"::1\"; port = 25; },\n { address = \"::1\"; port = 25; } "
	     ");\n",
	     "t.conf:2: listen: ::1 port 25 is listed twice (first at line 1)"},
	    {"routes = ( { domain = \"a.example\"; action = \"relay\"; maildir = \"/m\"; } );\n",
	     "t.conf:1: routes.maildir: only for action \"local\", not \"relay\""},
	    {"routes = ( { domain = \"a.example\"; action = \"relay-via\"; } );\n",
	     "t.conf:1: routes.via: required when action is \"relay-via\""},
	    {"routes = ( { domain = \"a.example\"; action = \"local\"; maildir = \"/m\";\n"
	     "  users = [ \"a\", \"A\" ]; } );\n",
	     "t.conf:2: routes.users: duplicate user \"a\""},
	    {"routes = ( { domain = \"a.example\"; action = \"relay\"; users = [ \"a\" ]; } );\n",
	     "t.conf:1: routes.users: only for action \"local\", not \"relay\""},
	    {"relay_networks = \"10.0.0.0/8\";\n",
	     "t.conf:1: relay_networks: expected a list of strings [ \"192.0.2.0/24\", ... ], "
	     "got a string"},
	    {"relay_networks = [ 10 ];\n", "t.conf:1: relay_networks: expected a string, got "
					   "an integer"},
	    {"routes_file = \"nope.routes\";\n",
		 "t.conf:1: routes_file: TMP/nope.routes: No such file or directory"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = load_err(cases[i].text);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu:\n got  \"%s\"\n want \"%s\"", i, got, cases[i].want);
	}
	char err[256];
	assert_null(config_load_file("/nonexistent/sluice.conf", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/sluice.conf: No such file or directory");
}

static void test_schema_rows(void **state)
{
	(void)state;
	const struct config_key *k = config_schema();
	assert_non_null(k);
	size_t n = 0;
	for (; k[n].key; n++) {
		if (!k[n].type || !k[n].default_text || !k[n].doc || !k[n].doc[0])
			fail_msg("schema row %s: missing type, default or doc", k[n].key);
		for (size_t j = 0; j < n; j++)
			if (strcmp(k[j].key, k[n].key) == 0)
				fail_msg("schema key %s twice", k[n].key);
	}
	assert_true(n >= 20);
	/* the keys the header promises */
	static const char *const want[] = {
	    "hostname",		"workers",
	    "listen",		"spool_dir",
	    "max_message_size", "max_recipients",
	    "max_errors",	"bare_lf",
	    "timeout_command",	"timeout_data_block",
	    "max_connections",	"max_connections_per_ip",
	    "relay_networks",	"commit_interval_us",
	    "commit_batch",	"segment_size",
	    "spool_min_free",	"routes_file",
	    "log_level",	"routes",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;
		for (size_t j = 0; j < n; j++)
			found |= strcmp(k[j].key, want[i]) == 0;
		if (!found)
			fail_msg("schema: got no row for %s, want one", want[i]);
	}
}

/* Every schema key must have a row "| `key` |" in the reference. */
static void test_docs_cover_schema(void **state)
{
	(void)state;
	if (!readme_path)
		fail_msg("usage: test_config path/to/config/README.md");
	FILE *f = fopen(readme_path, "r");
	if (!f)
		fail_msg("open %s: %s", readme_path, strerror(errno));
	static char doc[1 << 20];
	size_t len = fread(doc, 1, sizeof(doc) - 1, f);
	fclose(f);
	doc[len] = '\0';
	unsigned missing = 0;
	for (const struct config_key *k = config_schema(); k->key; k++) {
		char want[128];
		snprintf(want, sizeof(want), "| `%s` |", k->key);
		if (!strstr(doc, want)) {
			print_error("%s: got no entry for %s, want one\n", readme_path, want);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	readme_path = argc > 1 ? argv[1] : NULL;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_embedded_default),
	    cmocka_unit_test(test_empty_file),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_schema_rows),
	    cmocka_unit_test(test_docs_cover_schema),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
