/* Unit tests for the route table: matching, validation, users, relay
 * networks, the routes-file parser and a 100k-line load. */
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
#include <time.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "config/route.h"

static const struct route_spec spec_relay = {.action = ROUTE_RELAY, .src_line = 1};
static const struct route_spec spec_reject = {.action = ROUTE_REJECT, .src_line = 2};
static const struct route_spec spec_local = {
    .action = ROUTE_LOCAL, .maildir_root = "/var/mail", .src_line = 3};

static void must_add(struct route_table *t, const char *d, const struct route_spec *s)
{
	char err[256] = "";
	int r = route_table_add(t, d, s, err, sizeof(err));
	if (r != 0)
		fail_msg("add %s: got %d (%s), want 0", d, r, err);
}

/* ---- matching ---- */

static struct route_table *match_table(void)
{
	struct route_table *t = route_table_new();
	assert_non_null(t);
	static const char *const users[] = {"Alice", "bob"};
	struct route_spec u = spec_local;
	u.users = users;
	u.nusers = 2;
	struct route_spec via = {
	    .action = ROUTE_RELAY_VIA, .relay_host = "192.0.2.1", .relay_port = 2525};
	must_add(t, "example.com", &spec_local);
	must_add(t, ".example.com", &spec_relay);
	must_add(t, ".sub.example.com", &spec_reject);
	must_add(t, "EXAMPLE.net.", &u);
	must_add(t, ".net", &via);
	return t;
}

static void test_match(void **state)
{
	(void)state;
	struct route_table *t = match_table();
	static const struct {
		const char *domain;
		const char *want; /* pattern, or NULL for no match */
	} cases[] = {
	    {"example.com", "example.com"},
	    {"EXAMPLE.COM", "example.com"},
	    {"Example.Com.", "example.com"},
	    {"a.example.com", ".example.com"},
	    {"b.a.example.com", ".example.com"},
	    {"A.B.EXAMPLE.COM.", ".example.com"},
	    {"sub.example.com", ".example.com"},
	    {"x.sub.example.com", ".sub.example.com"},
	    {"y.x.sub.example.com", ".sub.example.com"},
	    {"example.org", NULL},
	    {"com", NULL},
	    {"example.net", "example.net"},
	    {"foo.example.net", ".net"},
	    {"net", NULL},
	    {"other.net", ".net"},
	    {"", NULL},
	    {".", NULL},
	    {"..", NULL},
	    {".example.com", NULL},
	    {"a..example.com", NULL},
	    {"example.com..", NULL},
	    {"xexample.com", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct route *r = route_lookup(t, cases[i].domain);
		const char *got = r ? r->pattern : NULL;
		if ((got == NULL) != (cases[i].want == NULL) ||
		    (got && strcmp(got, cases[i].want) != 0))
			fail_msg("lookup \"%s\": got %s, want %s", cases[i].domain,
				 got ? got : "NULL", cases[i].want ? cases[i].want : "NULL");
	}
	const struct route *r = route_lookup(t, "foo.example.net");
	assert_non_null(r);
	assert_int_equal(r->action, ROUTE_RELAY_VIA);
	assert_string_equal(r->relay_host, "192.0.2.1");
	assert_int_equal(r->relay_port, 2525);
	r = route_lookup(t, "example.com");
	assert_int_equal(r->action, ROUTE_LOCAL);
	assert_true(r->catch_all);
	assert_string_equal(r->maildir_root, "/var/mail");
	assert_int_equal(r->src_line, 3);
	assert_int_equal(route_table_size(t), 5);
	assert_null(route_lookup(NULL, "example.com"));
	assert_null(route_lookup(t, NULL));
	route_table_free(t);
}

static void test_long_names(void **state)
{
	(void)state;
	struct route_table *t = route_table_new();
	char name[400];
	/* 4 labels of 63 + dots = 255 octets: the longest a lookup takes */
	memset(name, 'a', sizeof(name));
	for (int i = 63; i < 255; i += 64)
		name[i] = '.';
	name[255] = '\0';
	must_add(t, ".aaa", &spec_relay); /* does not match */
	must_add(t, strchr(name, '.'), &spec_relay);
	const struct route *r = route_lookup(t, name);
	assert_non_null(r);
	assert_string_equal(r->pattern, strchr(name, '.'));
	name[255] = '.';
	name[256] = '\0';
	assert_non_null(route_lookup(t, name)); /* trailing dot does not count */
	name[256] = 'a';
	name[257] = '\0';
	assert_null(route_lookup(t, name));
	memset(name, 'b', 399);
	name[399] = '\0';
	assert_null(route_lookup(t, name));
	route_table_free(t);
}

static void test_bad_domains(void **state)
{
	(void)state;
	char label64[80], long254[300];
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".com");
	memset(long254, 'a', 254);
	for (int i = 50; i < 254; i += 51)
		long254[i] = '.';
	long254[254] = '\0';
	static const struct {
		const char *domain;
		const char *want; /* substring of the message */
	} cases[] = {
	    {"", "empty"},
	    {".", "empty"},
	    {"..", "empty"},
	    {"a..b", "empty label"},
	    {"..example.com", "empty label"},
	    {"-a.com", "starts with '-'"},
	    {"a-.com", "ends with '-'"},
	    {"a.com-", "ends with '-'"},
	    {"*.example.com", "no wildcards"},
	    {"exa mple.com", "' ' not allowed"},
	    {"ex@mple.com", "'@' not allowed"},
	    {"\xc3\xa9.com", "byte 0xc3"},
	    {"[192.0.2.1]", "'[' not allowed"},
	};
	struct route_table *t = route_table_new();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		int r = route_table_add(t, cases[i].domain, &spec_relay, err, sizeof(err));
		if (r != -EINVAL || !strstr(err, cases[i].want))
			fail_msg("add \"%s\": got %d \"%s\", want -EINVAL \"...%s...\"",
				 cases[i].domain, r, err, cases[i].want);
	}
	char err[256];
	assert_int_equal(route_table_add(t, label64, &spec_relay, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than 63"));
	assert_int_equal(route_table_add(t, long254, &spec_relay, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than 253"));
	long254[253] = '\0'; /* 253 is fine */
	must_add(t, long254, &spec_relay);
	assert_int_equal(route_table_size(t), 1);
	route_table_free(t);
}

static void test_duplicates(void **state)
{
	(void)state;
	struct route_table *t = route_table_new();
	char err[256];
	must_add(t, "example.com", &spec_relay);
	must_add(t, ".example.com", &spec_relay); /* parent is a different key */
	assert_int_equal(route_table_add(t, "Example.COM.", &spec_reject, err, sizeof(err)),
			 -EEXIST);
	assert_string_equal(err, "duplicate domain \"example.com\" (first at line 1)");
	assert_int_equal(route_table_add(t, ".EXAMPLE.com", &spec_reject, err, sizeof(err)),
			 -EEXIST);
	assert_int_equal(route_table_size(t), 2);
	/* the first entry is kept */
	assert_int_equal(route_lookup(t, "example.com")->action, ROUTE_RELAY);
	route_table_free(t);
}

static void test_bad_specs(void **state)
{
	(void)state;
	static const char *const users[] = {"a"};
	static const char *const dupusers[] = {"Bob", "bob"};
	static const char *const emptyuser[] = {""};
	static const struct {
		struct route_spec spec;
		const char *want;
	} cases[] = {
	    {{.action = ROUTE_NONE}, "bad action"},
	    {{.action = (enum route_action)42}, "bad action"},
	    {{.action = ROUTE_LOCAL}, "needs a maildir"},
	    {{.action = ROUTE_LOCAL, .maildir_root = ""}, "needs a maildir"},
	    {{.action = ROUTE_RELAY_VIA}, "needs a host"},
	    {{.action = ROUTE_RELAY_VIA, .relay_host = "bad host"}, "bad relay host"},
	    {{.action = ROUTE_RELAY, .users = users, .nusers = 1}, "users given"},
	    {{.action = ROUTE_REJECT, .maildir_root = "/m"}, "maildir given"},
	    {{.action = ROUTE_RELAY, .relay_host = "h"}, "relay host given"},
	    {{.action = ROUTE_LOCAL, .maildir_root = "/m", .users = dupusers, .nusers = 2},
	     "duplicate user \"bob\""},
	    {{.action = ROUTE_LOCAL, .maildir_root = "/m", .users = emptyuser, .nusers = 1},
	     "bad user"},
	};
	struct route_table *t = route_table_new();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		int r = route_table_add(t, "example.com", &cases[i].spec, err, sizeof(err));
		if (r != -EINVAL || !strstr(err, cases[i].want))
			fail_msg("case %zu: got %d \"%s\", want -EINVAL \"...%s...\"", i, r, err,
				 cases[i].want);
	}
	assert_int_equal(route_table_size(t), 0);
	route_table_free(t);
}

static void test_users(void **state)
{
	(void)state;
	struct route_table *t = match_table();
	const struct route *r = route_lookup(t, "example.net");
	assert_non_null(r);
	assert_false(r->catch_all);
	static const struct {
		const char *lp;
		bool want;
	} cases[] = {
	    {"alice", true},  {"ALICE", true}, {"Alice", true}, {"bob", true},	   {"bOb", true},
	    {"carol", false}, {"", false},     {"alic", false}, {"alicee", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (route_local_user_exists(r, cases[i].lp) != cases[i].want)
			fail_msg("user \"%s\": got %d, want %d", cases[i].lp, !cases[i].want,
				 cases[i].want);
	char big[100];
	memset(big, 'a', 99);
	big[99] = '\0';
	assert_false(route_local_user_exists(r, big));
	const struct route *ca = route_lookup(t, "example.com");
	assert_true(route_local_user_exists(ca, "anyone"));
	assert_false(route_local_user_exists(ca, ""));
	assert_false(route_local_user_exists(route_lookup(t, "a.example.com"), "x"));
	assert_false(route_local_user_exists(NULL, "x"));
	route_table_free(t);
}

/* ---- relay networks ---- */

static void sa_from(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
	in6->sin6_family = AF_INET6;
}

static void test_relay_networks(void **state)
{
	(void)state;
	struct route_table *t = route_table_new();
	struct sockaddr_storage ss;
	sa_from("10.1.2.3", &ss);
	assert_false(route_relay_allowed(t, (struct sockaddr *)&ss)); /* empty: nobody */
	struct cidr nets[3];
	assert_int_equal(cidr_parse("10.0.0.0/8", &nets[0]), 0);
	assert_int_equal(cidr_parse("2001:db8::/32", &nets[1]), 0);
	assert_int_equal(cidr_parse("192.0.2.7", &nets[2]), 0);
	assert_int_equal(route_table_set_relay_networks(t, nets, 3), 0);
	memset(nets, 0xff, sizeof(nets)); /* the table holds a copy */
	static const struct {
		const char *addr;
		bool want;
	} cases[] = {
	    {"10.1.2.3", true},	    {"10.255.255.255", true},	{"11.0.0.1", false},
	    {"192.0.2.7", true},    {"192.0.2.8", false},	{"2001:db8::1", true},
	    {"2001:db9::1", false}, {"::ffff:10.9.9.9", true},	{"::ffff:11.9.9.9", false},
	    {"::1", false},	    {"::ffff:192.0.2.7", true}, {"127.0.0.1", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sa_from(cases[i].addr, &ss);
		if (route_relay_allowed(t, (struct sockaddr *)&ss) != cases[i].want)
			fail_msg("relay from %s: got %d, want %d", cases[i].addr, !cases[i].want,
				 cases[i].want);
	}
	assert_false(route_relay_allowed(NULL, (struct sockaddr *)&ss));
	assert_int_equal(route_table_set_relay_networks(t, NULL, 0), 0);
	sa_from("10.1.2.3", &ss);
	assert_false(route_relay_allowed(t, (struct sockaddr *)&ss));
	route_table_free(t);
}

/* ---- routes file ---- */

static void test_file_good(void **state)
{
	(void)state;
	static const char text[] = "# routes\n"
				   "\n"
				   "example.com   local /var/mail   alice,Bob\n"
				   "\t.example.com relay   # subdomains go out\n"
				   "Relay.Example. relay-via [192.0.2.1]:2525\r\n"
				   "v6.example relay-via [IPv6:2001:db8::1]\n"
				   "smart.example relay-via mx.provider.example\n"
				   "spam.example reject\n"
				   "   # indented comment\n"
				   "catch.example local ./m\n"
				   "store.example local lmtp:[127.0.0.1] carol\n"
				   "store2.example local lmtp:lmtp.store.example:2424";
	struct route_table *t = route_table_new();
	char err[256] = "";
	int r = route_table_load_buffer(t, "r.txt", text, sizeof(text) - 1, err, sizeof(err));
	if (r != 0)
		fail_msg("load: got %d \"%s\", want 0", r, err);
	assert_int_equal(route_table_size(t), 9);
	const struct route *e = route_lookup(t, "example.com");
	assert_false(e->lmtp);
	assert_int_equal(e->action, ROUTE_LOCAL);
	assert_string_equal(e->maildir_root, "/var/mail");
	assert_int_equal(e->src_line, 3);
	assert_true(route_local_user_exists(e, "bob"));
	assert_false(route_local_user_exists(e, "carol"));
	e = route_lookup(t, "x.example.com");
	assert_int_equal(e->action, ROUTE_RELAY);
	assert_int_equal(e->src_line, 4);
	e = route_lookup(t, "relay.example");
	assert_int_equal(e->action, ROUTE_RELAY_VIA);
	assert_string_equal(e->relay_host, "192.0.2.1");
	assert_int_equal(e->relay_port, 2525);
	e = route_lookup(t, "v6.example");
	assert_string_equal(e->relay_host, "2001:db8::1");
	assert_int_equal(e->relay_port, 25);
	e = route_lookup(t, "smart.example");
	assert_string_equal(e->relay_host, "mx.provider.example");
	assert_int_equal(e->relay_port, 25);
	assert_int_equal(route_lookup(t, "spam.example")->action, ROUTE_REJECT);
	e = route_lookup(t, "catch.example");
	assert_true(e->catch_all);
	assert_int_equal(e->src_line, 10);
	assert_string_equal(route_table_entry(t, 0)->pattern, "example.com");
	assert_string_equal(route_table_entry(t, 6)->pattern, "catch.example");
	e = route_lookup(t, "store.example");
	assert_int_equal(e->action, ROUTE_LOCAL);
	assert_true(e->lmtp);
	assert_null(e->maildir_root);
	assert_string_equal(e->relay_host, "127.0.0.1");
	assert_int_equal(e->relay_port, 24);
	assert_true(route_local_user_exists(e, "Carol"));
	assert_false(route_local_user_exists(e, "dave"));
	e = route_lookup(t, "store2.example");
	assert_true(e->lmtp && e->catch_all);
	assert_string_equal(e->relay_host, "lmtp.store.example");
	assert_int_equal(e->relay_port, 2424);
	assert_null(route_table_entry(t, 9));
	route_table_free(t);
}

static void test_file_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"example.com\n", "f:1: missing action after \"example.com\" (local, relay, "
			      "relay-via, reject)"},
	    {"# c\nexample.com deliver\n",
	     "f:2: unknown action \"deliver\" (want local, relay, relay-via or reject)"},
	    {"example.com local\n", "f:1: local: missing maildir root or lmtp:HOST[:PORT]"},
	    {"example.com relay-via\n", "f:1: relay-via: missing HOST[:PORT]"},
	    {"example.com relay mx.example\n", "f:1: relay: unexpected \"mx.example\""},
	    {"example.com local /m a,b extra\n", "f:1: local: unexpected \"extra\""},
	    {"example.com reject x # c\n", "f:1: reject: unexpected \"x\""},
	    {"a.example relay\n\na.example. reject\n",
	     "f:3: duplicate domain \"a.example\" (first at f:1)"},
	    {"bad..example relay\n", "f:1: bad domain \"bad..example\": empty label"},
	    {"*.example.net relay\n", "f:1: bad domain \"*.example.net\": no wildcards; "
				      "write \".example.net\" for every subdomain of "
				      "example.net"},
	    {"* relay\n", "f:1: bad domain \"*\": no wildcards"},
	    {"x.example relay-via [192.0.2.1\n", "f:1: relay-via: \"[192.0.2.1\": missing ']'"},
	    {"x.example relay-via [192.0.2.300]:25\n",
	     "f:1: relay-via: \"[192.0.2.300]:25\": \"192.0.2.300\" is not an IPv4 or IPv6 "
	     "address"},
	    {"x.example relay-via 2001:db8::1\n",
	     "f:1: relay-via: \"2001:db8::1\": write an IPv6 address in brackets: "
	     "[2001:db8::1]:25"},
	    {"x.example relay-via host:0\n", "f:1: relay-via: \"host:0\": bad port \"0\""},
	    {"x.example relay-via host:65536\n",
	     "f:1: relay-via: \"host:65536\": bad port \"65536\""},
	    {"x.example relay-via host:\n", "f:1: relay-via: \"host:\": bad port \"\""},
	    {"x.example relay-via [::1]x\n", "f:1: relay-via: \"[::1]x\": junk after ']'"},
	    {"x.example relay-via bad_host!:25\n",
	     "f:1: relay-via: \"bad_host!:25\": \"bad_host!\" is not a valid host name"},
	    {"x.example local /m alice,,bob\n", "f:1: bad user \"\": empty"},
	    {"x.example local /m alice,ALICE\n", "f:1: duplicate user \"alice\""},
	    {"x.example local /m a@b\n", "f:1: bad user \"a@b\": byte 0x40 not allowed"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct route_table *t = route_table_new();
		char err[256] = "";
		int r = route_table_load_buffer(t, "f", cases[i].text, strlen(cases[i].text), err,
						sizeof(err));
		if (r >= 0 || strcmp(err, cases[i].want) != 0)
			fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, r, err, cases[i].want);
		route_table_free(t);
	}
	/* NUL byte and over-long line */
	struct route_table *t = route_table_new();
	char err[256];
	assert_int_equal(
	    route_table_load_buffer(t, "f", "a relay\n\0b relay\n", 17, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "f:2: NUL byte");
	char *big = malloc(10000);
	memset(big, 'a', 9999);
	big[9999] = '\n';
	assert_int_equal(route_table_load_buffer(t, "f", big, 10000, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "f:1: line longer than 8192 octets");
	free(big);
	route_table_free(t);
}

static void test_file_missing(void **state)
{
	(void)state;
	struct route_table *t = route_table_new();
	char err[256];
	assert_int_equal(route_table_load_file(t, "/nonexistent/routes", err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/routes: No such file or directory");
	assert_int_equal(route_table_load_file(t, "/", err, sizeof(err)), -EINVAL);
	route_table_free(t);
}

/* 100,000 domains from a file; the time goes to stdout for the report. */
static void test_file_100k(void **state)
{
	(void)state;
	enum { N = 100000 };
	char path[] = "/tmp/sluice-routes-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	for (int i = 0; i < N; i++) {
		switch (i % 4) {
		case 0:
			fprintf(f, "d%d.example local /var/mail\n", i);
			break;
		case 1:
			fprintf(f, ".d%d.example relay\n", i);
			break;
		case 2:
			fprintf(f, "d%d.example relay-via [192.0.2.%d]:2525\n", i, i % 250);
			break;
		default:
			fprintf(f, "D%d.Example. reject # blocked\n", i);
			break;
		}
	}
	assert_int_equal(fclose(f), 0);

	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	struct route_table *t = route_table_new();
	char err[256] = "";
	int r = route_table_load_file(t, path, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &b);
	unlink(path);
	if (r != 0)
		fail_msg("load: %d %s", r, err);
	assert_int_equal(route_table_size(t), N);
	double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	printf("# route 100k load: %.1f ms\n", ms);

	char name[64];
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), i % 4 == 1 ? "x.d%d.example" : "d%d.example", i);
		const struct route *e = route_lookup(t, name);
		if (!e || e->src_line != i + 1)
			fail_msg("lookup %s: got line %d, want %d", name, e ? e->src_line : -1,
				 i + 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	printf("# route 100k lookups (one thread, private table): %.1f ms\n", ms);
	assert_null(route_lookup(t, "d1.example")); /* only ".d1.example" */
	route_table_free(t);
}

/* ---- publish ---- */

static void test_publish(void **state)
{
	(void)state;
	rcu_register_thread();
	assert_null(route_current());
	struct route_table *a = route_table_new(), *b = route_table_new();
	must_add(a, "a.example", &spec_relay);
	must_add(b, "b.example", &spec_reject);
	route_publish(a);
	assert_ptr_equal(route_current(), a);
	assert_non_null(route_lookup(route_current(), "a.example"));
	route_publish(a); /* same table again: a no-op, not a free */
	assert_ptr_equal(route_current(), a);
	rcu_quiescent_state();
	route_publish(b); /* frees a after a grace period (ASan checks) */
	assert_ptr_equal(route_current(), b);
	assert_null(route_lookup(route_current(), "a.example"));
	assert_non_null(route_lookup(route_current(), "b.example"));
	route_publish(NULL);
	assert_null(route_current());
	rcu_unregister_thread();
}

static void test_action_str(void **state)
{
	(void)state;
	assert_string_equal(route_action_str(ROUTE_NONE), "none");
	assert_string_equal(route_action_str(ROUTE_LOCAL), "local");
	assert_string_equal(route_action_str(ROUTE_RELAY), "relay");
	assert_string_equal(route_action_str(ROUTE_RELAY_VIA), "relay-via");
	assert_string_equal(route_action_str(ROUTE_REJECT), "reject");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match),	   cmocka_unit_test(test_long_names),
	    cmocka_unit_test(test_bad_domains),	   cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_bad_specs),	   cmocka_unit_test(test_users),
	    cmocka_unit_test(test_relay_networks), cmocka_unit_test(test_file_good),
	    cmocka_unit_test(test_file_errors),	   cmocka_unit_test(test_file_missing),
	    cmocka_unit_test(test_file_100k),	   cmocka_unit_test(test_publish),
	    cmocka_unit_test(test_action_str),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
