/* config: load and validate sluiced's libconfig file against the one schema. */
#include "config/config.h"
#include "config/config_pvt.h"
#include "config/route_pvt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_EMBEDDED_NAME "(embedded default)"

static const char config_default[] =
    "# sluiced embedded default: used when no config file is given.\n"
    "listen = ( { address = \"127.0.0.1\"; port = 2525; role = \"mta\"; } );\n"
    "spool_dir = \"./var/spool\";\n"
    "relay_networks = [ ];\n"
    "routes = (\n"
    "  { domain = \"localhost\"; action = \"local\"; maildir = \"./var/mail\"; },\n"
    "  { domain = \"example.test\"; action = \"local\"; maildir = \"./var/mail\"; }\n"
    ");\n";

/* Loader state for one load: where errors go and what is being built. */
struct config_ctx {
	const char *name; /* file name for messages */
	const char *dir;  /* directory of the file, for relative routes_file; NULL = cwd */
	char *err;
	size_t errlen;
	struct config *cfg;
	unsigned routes_file_line; /* where routes_file is set, 0 if not */
};

static void ctx_err(struct config_ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "name:line: message"; the line is the setting's, when there is one. */
static void ctx_err(struct config_ctx *c, const config_setting_t *s, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unsigned line = s ? config_setting_source_line(s) : 0;
	if (!c->err || c->errlen == 0)
		return;
	if (line)
		snprintf(c->err, c->errlen, "%s:%u: %s", c->name, line, msg);
	else
		snprintf(c->err, c->errlen, "%s: %s", c->name, msg);
}

static const char *config_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

/* ---- value parsers shared by settings and schema defaults ---- */

/*
 * A size: a plain integer, or a string of digits with an optional binary
 * suffix K, M, G or T (case-insensitive; "64M" = 67108864).
 * Returns 0 or -EINVAL / -ERANGE.
 */
int config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	unsigned shift = 0;
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift && p[1] != '\0')
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

/* "67108864" or, when it divides evenly, "64M" (for messages). */
static void size_text(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (v && v % 1024 == 0 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
}

static bool config_hostname_ok(const char *h)
{
	size_t len = strlen(h), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = h[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

static char *xstrdup(struct config_ctx *c, const char *s)
{
	char *d = strdup(s);
	if (!d)
		ctx_err(c, NULL, "out of memory");
	return d;
}

/* ---- setting handlers, one per schema kind ---- */

/* Read an integer setting into *v, or say what is wrong. */
static int get_int(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s,
		   int64_t *v)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		ctx_err(c, s, "%s: expected an integer, got %s", row->k.key, config_type_name(t));
		return -EINVAL;
	}
	*v = config_setting_get_int64(s);
	return 0;
}

static int check_range(struct config_ctx *c, const struct schema_row *row,
		       const config_setting_t *s, int64_t v)
{
	if (v < row->min) {
		ctx_err(c, s, "%s: %lld is below the minimum %lld", row->k.key, (long long)v,
			(long long)row->min);
		return -EINVAL;
	}
	if (v > row->max) {
		ctx_err(c, s, "%s: %lld is above the maximum %lld", row->k.key, (long long)v,
			(long long)row->max);
		return -EINVAL;
	}
	return 0;
}

static int set_uint(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	int64_t v;
	if (get_int(c, row, s, &v) || check_range(c, row, s, v))
		return -EINVAL;
	*(unsigned *)((char *)c->cfg + row->off) = (unsigned)v;
	return 0;
}

static int set_size(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	uint64_t v;
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_STRING) {
		const char *text = config_setting_get_string(s);
		int e = config_parse_size(text, &v);
		if (e == -ERANGE) {
			ctx_err(c, s, "%s: \"%s\" is too big", row->k.key, text);
			return -EINVAL;
		}
		if (e) {
			ctx_err(c, s,
				"%s: \"%s\" is not a size (an integer, or a string like \"64M\"; "
				"suffixes K, M, G, T)",
				row->k.key, text);
			return -EINVAL;
		}
	} else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		long long i = config_setting_get_int64(s);
		if (i < 0) {
			ctx_err(c, s, "%s: %lld is below the minimum %lld", row->k.key, i,
				(long long)row->min);
			return -EINVAL;
		}
		v = (uint64_t)i;
	} else {
		ctx_err(c, s, "%s: expected a size (integer or string like \"64M\"), got %s",
			row->k.key, config_type_name(t));
		return -EINVAL;
	}
	if (v < (uint64_t)row->min || v > (uint64_t)row->max) {
		char got[32], lim[32];
		bool low = v < (uint64_t)row->min;
		size_text(v, got, sizeof(got));
		size_text((uint64_t)(low ? row->min : row->max), lim, sizeof(lim));
		ctx_err(c, s, "%s: %s is %s the %s %s", row->k.key, got, low ? "below" : "above",
			low ? "minimum" : "maximum", lim);
		return -EINVAL;
	}
	*(uint64_t *)((char *)c->cfg + row->off) = v;
	return 0;
}

static const char *get_string(struct config_ctx *c, const struct schema_row *row,
			      const config_setting_t *s)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_STRING) {
		ctx_err(c, s, "%s: expected a string, got %s", row->k.key, config_type_name(t));
		return NULL;
	}
	const char *v = config_setting_get_string(s);
	if (!v[0]) {
		ctx_err(c, s, "%s: must not be empty", row->k.key);
		return NULL;
	}
	return v;
}

static int store_string(struct config_ctx *c, const struct schema_row *row, const char *v)
{
	char **dst = (char **)((char *)c->cfg + row->off);
	char *d = xstrdup(c, v);
	if (!d)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

static int set_string(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	const char *v = get_string(c, row, s);
	if (!v)
		return -EINVAL;
	if (row->kind == CK_HOSTNAME && !config_hostname_ok(v)) {
		ctx_err(c, s, "%s: \"%s\" is not a valid host name", row->k.key, v);
		return -EINVAL;
	}
	return store_string(c, row, v);
}

/* Index of v in row->enums, or -1 with the error set. */
static int enum_index(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s,
		      const char *v)
{
	char list[256] = "";
	for (int i = 0; row->enums[i]; i++) {
		if (strcmp(v, row->enums[i]) == 0)
			return i;
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", row->enums[i]);
	}
	ctx_err(c, s, "%s: \"%s\" is not one of %s", row->k.key, v, list);
	return -1;
}

static int set_enum(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_STRING) {
		ctx_err(c, s, "%s: expected a string, got %s", row->k.key, config_type_name(t));
		return -EINVAL;
	}
	const char *v = config_setting_get_string(s);
	int i = enum_index(c, row, s, v);
	if (i < 0)
		return -EINVAL;
	if (row->kind == CK_ENUM_BOOL) {
		*(bool *)((char *)c->cfg + row->off) = i != 0;
		return 0;
	}
	return store_string(c, row, v);
}

static bool is_list_like(const config_setting_t *s)
{
	int t = config_setting_type(s);
	return t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST;
}

static int set_cidrs(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	struct config *cfg = c->cfg;
	if (!is_list_like(s)) {
		ctx_err(c, s, "%s: expected a list of strings [ \"192.0.2.0/24\", ... ], got %s",
			row->k.key, config_type_name(config_setting_type(s)));
		return -EINVAL;
	}
	unsigned n = (unsigned)config_setting_length(s);
	free(cfg->relay_networks);
	cfg->relay_networks = NULL;
	cfg->nrelay_networks = 0;
	if (n == 0)
		return 0;
	cfg->relay_networks = calloc(n, sizeof(*cfg->relay_networks));
	if (!cfg->relay_networks) {
		ctx_err(c, s, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			ctx_err(c, e, "%s: expected a string, got %s", row->k.key,
				config_type_name(config_setting_type(e)));
			return -EINVAL;
		}
		const char *v = config_setting_get_string(e);
		if (cidr_parse(v, &cfg->relay_networks[i]) != 0) {
			ctx_err(c, e,
				"%s: \"%s\" is not a CIDR network (like \"192.0.2.0/24\" or "
				"\"2001:db8::/32\")",
				row->k.key, v);
			return -EINVAL;
		}
		cfg->nrelay_networks++;
	}
	return 0;
}

/* ---- members of the groups in listen and routes ---- */

/* Check that every member of group g is a known "<parent>.<name>" row. */
static int group_check_members(struct config_ctx *c, const char *parent, const config_setting_t *g)
{
	char key[128];
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		snprintf(key, sizeof(key), "%s.%s", parent, config_setting_name(m));
		if (!config_row_find(key)) {
			ctx_err(c, m, "unknown setting '%s'", key);
			return -EINVAL;
		}
	}
	return 0;
}

/* The member named by key's suffix, or NULL; *row gets key's row. */
static const config_setting_t *group_get_member(const config_setting_t *g, const char *key,
						const struct schema_row **row)
{
	*row = config_row_find(key);
	return config_setting_get_member(g, strchr(key, '.') + 1);
}

static int group_need(struct config_ctx *c, const config_setting_t *g, const char *key,
		      const config_setting_t *m)
{
	if (m)
		return 0;
	ctx_err(c, g, "%s: required setting is missing", key);
	return -EINVAL;
}

/* A string member (NULL when absent); borrowed from libconfig. */
static int group_string(struct config_ctx *c, const config_setting_t *g, const char *key,
			bool required, const char **out, const config_setting_t **where)
{
	const struct schema_row *row;
	const config_setting_t *m = group_get_member(g, key, &row);
	*out = NULL;
	*where = m ? m : g;
	if (!m)
		return required ? group_need(c, g, key, m) : 0;
	*out = get_string(c, row, m);
	return *out ? 0 : -EINVAL;
}

/* An enum member; absent gives the row's default. */
static int group_enum(struct config_ctx *c, const config_setting_t *g, const char *key,
		      bool required, int *out, const config_setting_t **where)
{
	const struct schema_row *row;
	const config_setting_t *m = group_get_member(g, key, &row);
	*where = m ? m : g;
	if (!m) {
		if (required)
			return group_need(c, g, key, m);
		/* default_text is a quoted name: "\"mta\"" */
		for (int i = 0; row->enums[i]; i++) {
			size_t l = strlen(row->enums[i]);
			if (strncmp(row->k.default_text + 1, row->enums[i], l) == 0 &&
			    row->k.default_text[l + 1] == '"')
				*out = i;
		}
		return 0;
	}
	int t = config_setting_type(m);
	if (t != CONFIG_TYPE_STRING) {
		ctx_err(c, m, "%s: expected a string, got %s", key, config_type_name(t));
		return -EINVAL;
	}
	*out = enum_index(c, row, m, config_setting_get_string(m));
	return *out < 0 ? -EINVAL : 0;
}

/* Accept "( {..}, {..} )" and, for one entry, a bare "{ .. }". */
static int group_list_check(struct config_ctx *c, const struct schema_row *row,
			    const config_setting_t *s, const char *example)
{
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_GROUP)
		return 0;
	if (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0)
		return 0; /* "[ ]": libconfig's empty array */
	ctx_err(c, s, "%s: expected a list of groups %s, got %s", row->k.key, example,
		config_type_name(t));
	return -EINVAL;
}

static int group_list_len(const config_setting_t *s)
{
	return config_setting_type(s) == CONFIG_TYPE_GROUP ? 1 : config_setting_length(s);
}

static const config_setting_t *group_list_elem(const config_setting_t *s, int i)
{
	return config_setting_type(s) == CONFIG_TYPE_GROUP
		   ? s
		   : config_setting_get_elem(s, (unsigned)i);
}

static int set_listen(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	struct config *cfg = c->cfg;
	if (group_list_check(c, row, s, "( { address = \"127.0.0.1\"; port = 25; }, ... )"))
		return -EINVAL;
	int n = group_list_len(s);
	if (n == 0) {
		ctx_err(c, s, "listen: at least one listener is needed");
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		free(cfg->listeners[i].address);
	free(cfg->listeners);
	cfg->nlisteners = 0;
	cfg->listeners = calloc((size_t)n + 1, sizeof(*cfg->listeners));
	if (!cfg->listeners) {
		ctx_err(c, s, "out of memory");
		return -ENOMEM;
	}
	unsigned *lines = calloc((size_t)n + 1, sizeof(*lines));
	if (!lines) {
		ctx_err(c, s, "out of memory");
		return -ENOMEM;
	}
	int rc = -EINVAL;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = group_list_elem(s, i), *where;
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			ctx_err(c, g,
				"listen: expected a group { address = ...; port = ...; }, got %s",
				config_type_name(config_setting_type(g)));
			goto out;
		}
		if (group_check_members(c, "listen", g))
			goto out;
		const char *addr;
		if (group_string(c, g, "listen.address", true, &addr, &where))
			goto out;
		unsigned char a[16];
		if (inet_pton(AF_INET, addr, a) != 1 && inet_pton(AF_INET6, addr, a) != 1) {
			ctx_err(c, where,
				"listen.address: \"%s\" is not a numeric IPv4 or IPv6 address",
				addr);
			goto out;
		}
		const struct schema_row *prow;
		const config_setting_t *pm = group_get_member(g, "listen.port", &prow);
		int64_t port;
		if (group_need(c, g, "listen.port", pm) || get_int(c, prow, pm, &port) ||
		    check_range(c, prow, pm, port))
			goto out;
		int role;
		if (group_enum(c, g, "listen.role", false, &role, &where))
			goto out;
		for (unsigned j = 0; j < cfg->nlisteners; j++) {
			const struct config_listener *o = &cfg->listeners[j];
			if (o->port == port && strcmp(o->address, addr) == 0) {
				ctx_err(c, g,
					"listen: %s port %lld is listed twice (first at line %u)",
					addr, (long long)port, lines[j]);
				goto out;
			}
		}
		struct config_listener *l = &cfg->listeners[cfg->nlisteners];
		l->address = xstrdup(c, addr);
		if (!l->address) {
			rc = -ENOMEM;
			goto out;
		}
		l->port = (uint16_t)port;
		l->submission = role == 1;
		lines[cfg->nlisteners++] = config_setting_source_line(g);
	}
	rc = 0;
out:
	free(lines);
	return rc;
}

/* route_table_add's message names what is wrong; pick the key it is about. */
static const char *route_err_key(const char *msg)
{
	if (strncmp(msg, "bad user", 8) == 0 || strncmp(msg, "duplicate user", 14) == 0)
		return "routes.users";
	if (strncmp(msg, "bad relay host", 14) == 0)
		return "routes.via";
	if (strncmp(msg, "bad domain", 10) == 0 || strncmp(msg, "duplicate domain", 16) == 0)
		return "routes.domain";
	return "routes";
}

static int route_group_add(struct config_ctx *c, const config_setting_t *g)
{
	const config_setting_t *dom_s, *act_s, *md_s, *via_s, *users_s, *lmtp_s;
	const char *domain, *maildir, *via, *lmtp;
	int action;
	const struct schema_row *urow;

	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		ctx_err(c, g, "routes: expected a group { domain = ...; action = ...; }, got %s",
			config_type_name(config_setting_type(g)));
		return -EINVAL;
	}
	if (group_check_members(c, "routes", g) ||
	    group_string(c, g, "routes.domain", true, &domain, &dom_s) ||
	    group_enum(c, g, "routes.action", true, &action, &act_s) ||
	    group_string(c, g, "routes.maildir", false, &maildir, &md_s) ||
	    group_string(c, g, "routes.via", false, &via, &via_s) ||
	    group_string(c, g, "routes.lmtp", false, &lmtp, &lmtp_s))
		return -EINVAL;
	users_s = group_get_member(g, "routes.users", &urow);

	struct route_spec spec = {.src_line = (int)config_setting_source_line(dom_s)};
	spec.action = route_action_parse(config_setting_get_string(act_s));
	bool local = spec.action == ROUTE_LOCAL, via_action = spec.action == ROUTE_RELAY_VIA;
	if (local && !maildir && !lmtp) {
		ctx_err(c, g, "routes.maildir: required when action is \"local\" (or routes.lmtp)");
		return -EINVAL;
	}
	if (maildir && lmtp) {
		ctx_err(c, lmtp_s, "routes.lmtp: give routes.maildir or routes.lmtp, not both");
		return -EINVAL;
	}
	if (!local && lmtp) {
		ctx_err(c, lmtp_s, "routes.lmtp: only for action \"local\", not \"%s\"",
			route_action_str(spec.action));
		return -EINVAL;
	}
	if (!local && maildir) {
		ctx_err(c, md_s, "routes.maildir: only for action \"local\", not \"%s\"",
			route_action_str(spec.action));
		return -EINVAL;
	}
	if (!local && users_s) {
		ctx_err(c, users_s, "routes.users: only for action \"local\", not \"%s\"",
			route_action_str(spec.action));
		return -EINVAL;
	}
	if (via_action && !via) {
		ctx_err(c, g, "routes.via: required when action is \"relay-via\"");
		return -EINVAL;
	}
	if (!via_action && via) {
		ctx_err(c, via_s, "routes.via: only for action \"relay-via\", not \"%s\"",
			route_action_str(spec.action));
		return -EINVAL;
	}
	spec.maildir_root = maildir;

	char host[ROUTE_HOST_MAX], msg[512];
	if (via) {
		if (route_via_parse(via, host, sizeof(host), &spec.relay_port, msg, sizeof(msg))) {
			ctx_err(c, via_s, "routes.via: %s", msg);
			return -EINVAL;
		}
		spec.relay_host = host;
	}
	if (lmtp) {
		if (route_via_parse(lmtp, host, sizeof(host), &spec.relay_port, msg, sizeof(msg))) {
			ctx_err(c, lmtp_s, "routes.lmtp: %s", msg);
			return -EINVAL;
		}
		spec.relay_host = host;
		spec.lmtp = true;
	}

	const char **users = NULL;
	if (users_s) {
		if (!is_list_like(users_s)) {
			ctx_err(c, users_s, "routes.users: expected a list of strings, got %s",
				config_type_name(config_setting_type(users_s)));
			return -EINVAL;
		}
		unsigned n = (unsigned)config_setting_length(users_s);
		users = calloc(n + 1, sizeof(*users));
		if (!users) {
			ctx_err(c, users_s, "out of memory");
			return -ENOMEM;
		}
		for (unsigned i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(users_s, i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING) {
				ctx_err(c, e, "routes.users: expected a string, got %s",
					config_type_name(config_setting_type(e)));
				free(users);
				return -EINVAL;
			}
			users[i] = config_setting_get_string(e);
		}
		spec.users = users;
		spec.nusers = n;
	}
	int e = route_table_add(c->cfg->routes, domain, &spec, msg, sizeof(msg));
	free(users);
	if (e) {
		const char *key = route_err_key(msg);
		ctx_err(c, strcmp(key, "routes.users") == 0 ? users_s : dom_s, "%s: %s", key, msg);
		return e;
	}
	return 0;
}

static int set_routes(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	if (group_list_check(c, row, s,
			     "( { domain = \"example.com\"; action = \"relay\"; }, ... )"))
		return -EINVAL;
	if (route_table_set_source(c->cfg->routes, c->name)) {
		ctx_err(c, s, "out of memory");
		return -ENOMEM;
	}
	int n = group_list_len(s);
	for (int i = 0; i < n; i++) {
		int e = route_group_add(c, group_list_elem(s, i));
		if (e)
			return e;
	}
	return 0;
}

static int set_path(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	const char *v = get_string(c, row, s);
	if (!v)
		return -EINVAL;
	c->routes_file_line = config_setting_source_line(s);
	return store_string(c, row, v);
}

static int set_value(struct config_ctx *c, const struct schema_row *row, const config_setting_t *s)
{
	switch (row->kind) {
	case CK_UINT:
		return set_uint(c, row, s);
	case CK_SIZE:
		return set_size(c, row, s);
	case CK_STRING:
	case CK_HOSTNAME:
		return set_string(c, row, s);
	case CK_PATH:
		return set_path(c, row, s);
	case CK_ENUM_STR:
	case CK_ENUM_BOOL:
		return set_enum(c, row, s);
	case CK_CIDRS:
		return set_cidrs(c, row, s);
	case CK_LISTEN:
		return set_listen(c, row, s);
	case CK_ROUTES:
		return set_routes(c, row, s);
	case CK_STRLIST:
		break;
	}
	ctx_err(c, s, "%s: not a top-level setting", row->k.key);
	return -EINVAL;
}

/* ---- defaults ---- */

static int set_hostname_default(struct config_ctx *c)
{
	char h[256];
	if (gethostname(h, sizeof(h)) != 0 || !h[0]) {
		snprintf(h, sizeof(h), "localhost");
	}
	h[sizeof(h) - 1] = '\0';
	c->cfg->hostname = xstrdup(c, h);
	return c->cfg->hostname ? 0 : -ENOMEM;
}

/*
 * Apply row's default by running "key = <default_text>;" through libconfig
 * and the same handler as the file, so the documented default is the one
 * that is used (and is validated).
 */
static int set_default(struct config_ctx *c, const struct schema_row *row)
{
	if (row->k.default_text[0] == '(' && row->k.default_text[1] != ' ') {
		if (row->kind == CK_HOSTNAME)
			return set_hostname_default(c);
		return 0; /* (none), (required), ... */
	}
	char text[512];
	snprintf(text, sizeof(text), "%s = %s;\n", row->k.key, row->k.default_text);
	config_t lc;
	config_init(&lc);
	int rc;
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		ctx_err(c, NULL, "%s: bad schema default %s", row->k.key, row->k.default_text);
		rc = -EINVAL;
	} else {
		struct config_ctx dc = *c;
		dc.name = "(schema default)";
		rc = set_value(&dc, row, config_lookup(&lc, row->k.key));
	}
	config_destroy(&lc);
	return rc;
}

/* ---- integer literal check ---- */

/*
 * libconfig 1.5 silently wraps a plain integer literal that does not fit in
 * 32 bits ("segment_size = 4294967296;" reads as 0).  Refuse such literals
 * before parsing: they need the L suffix, or a size string such as "4G".
 * Skips strings and comments (#, //, C style).
 */
static int config_check_int_literals(struct config_ctx *c, const char *text)
{
	unsigned line = 1;
	const char *p = text;
	while (*p) {
		char ch = *p;
		if (ch == '\n') {
			line++;
			p++;
		} else if (ch == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '\n')
					line++;
			}
			if (*p)
				p++;
		} else if (ch == '#' || (ch == '/' && p[1] == '/')) {
			while (*p && *p != '\n')
				p++;
		} else if (ch == '/' && p[1] == '*') {
			for (p += 2; *p && !(*p == '*' && p[1] == '/'); p++)
				if (*p == '\n')
					line++;
			if (*p)
				p += 2;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
			   ch == '@') {
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			       (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '*' ||
			       *p == '@')
				p++;
		} else if (ch >= '0' && ch <= '9') {
			const char *s = p;
			bool hex = ch == '0' && (p[1] == 'x' || p[1] == 'X');
			if (hex)
				p += 2;
			while ((*p >= '0' && *p <= '9') ||
			       (hex && ((*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))))
				p++;
			if (!hex && (*p == '.' || *p == 'e' || *p == 'E'))
				continue; /* a float; the rest is skipped as digits/names */
			if (*p == 'L' || *p == 'l')
				continue;
			errno = 0;
			unsigned long long v = strtoull(s, NULL, hex ? 16 : 10);
			if (errno == ERANGE || v > INT32_MAX) {
				char buf[256];
				int len = (int)(p - s);
				snprintf(
				    buf, sizeof(buf),
				    "integer %.*s does not fit in 32 bits: write %.*sL, or a size "
				    "string like \"64M\"",
				    len > 40 ? 40 : len, s, len > 40 ? 40 : len, s);
				if (c->err && c->errlen)
					snprintf(c->err, c->errlen, "%s:%u: %s", c->name, line,
						 buf);
				return -EINVAL;
			}
		} else {
			p++;
		}
	}
	return 0;
}

/* ---- loading ---- */

static const struct schema_row *top_row_find(const char *name)
{
	const struct schema_row *r = config_row_find(name);
	return r && !strchr(r->k.key, '.') ? r : NULL;
}

static int config_resolve(struct config_ctx *c)
{
	struct config *cfg = c->cfg;
	if (cfg->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = n > 0 ? (unsigned)(n > 1024 ? 1024 : n) : 1;
	}
	if (cfg->routes_file) {
		char path[PATH_MAX];
		const char *rf = cfg->routes_file;
		if (rf[0] != '/' && c->dir) {
			int n = snprintf(path, sizeof(path), "%s/%s", c->dir, rf);
			if (n < 0 || (size_t)n >= sizeof(path)) {
				ctx_err(c, NULL, "routes_file: path too long");
				return -EINVAL;
			}
			rf = path;
		}
		int e = route_table_load_file(cfg->routes, rf, c->err, c->errlen);
		size_t rl = strlen(rf);
		if (e && c->err && strncmp(c->err, rf, rl) == 0 && c->err[rl] == ':' &&
		    c->err[rl + 1] == ' ') {
			/* no line in the routes file: point at the routes_file setting */
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", c->err);
			if (c->routes_file_line)
				snprintf(c->err, c->errlen, "%s:%u: routes_file: %s", c->name,
					 c->routes_file_line, msg);
			else
				snprintf(c->err, c->errlen, "%s: routes_file: %s", c->name, msg);
		}
		if (e)
			return e;
	}
	if (route_table_set_relay_networks(cfg->routes, cfg->relay_networks,
					   cfg->nrelay_networks)) {
		ctx_err(c, NULL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Parse text (named name in messages) and build the config from it. */
static struct config *config_load_text(const char *name, const char *dir, const char *text,
				       char *err, size_t errlen)
{
	struct config_ctx c = {.name = name, .dir = dir, .err = err, .errlen = errlen};
	bool *seen = NULL;
	config_t lc;
	config_init(&lc);
	if (err && errlen)
		err[0] = '\0';

	c.cfg = calloc(1, sizeof(*c.cfg));
	if (!c.cfg) {
		ctx_err(&c, NULL, "out of memory");
		goto fail;
	}
	c.cfg->source = xstrdup(&c, name);
	c.cfg->routes = route_table_new();
	size_t nrows = 0;
	while (config_rows[nrows].k.key)
		nrows++;
	seen = calloc(nrows, sizeof(*seen));
	if (!c.cfg->source || !c.cfg->routes || !seen) {
		ctx_err(&c, NULL, "out of memory");
		goto fail;
	}
	if (config_check_int_literals(&c, text))
		goto fail;
	if (dir)
		config_set_include_dir(&lc, dir);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		const char *f = config_error_file(&lc);
		const char *t = config_error_text(&lc);
		if (err && errlen)
			snprintf(err, errlen, "%s:%d: %s", f ? f : name, config_error_line(&lc),
				 t ? t : "syntax error");
		goto fail;
	}

	/* Settings in file order, so the first error reported is the first
	 * in the file; then defaults for what the file does not set. */
	const config_setting_t *root = config_root_setting(&lc);
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const struct schema_row *row = top_row_find(config_setting_name(s));
		if (!row) {
			ctx_err(&c, s, "unknown setting '%s'", config_setting_name(s));
			goto fail;
		}
		if (set_value(&c, row, s))
			goto fail;
		seen[row - config_rows] = true;
	}
	for (size_t i = 0; i < nrows; i++) {
		if (seen[i] || strchr(config_rows[i].k.key, '.'))
			continue;
		if (set_default(&c, &config_rows[i]))
			goto fail;
	}
	if (config_resolve(&c))
		goto fail;
	config_destroy(&lc);
	free(seen);
	return c.cfg;
fail:
	config_destroy(&lc);
	free(seen);
	config_free(c.cfg);
	return NULL;
}

static char *read_all(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, errlen, "%s: NUL byte in the file", path);
		free(buf);
		return NULL;
	}
	return buf;
}

struct config *config_load_file(const char *path, char *err, size_t errlen)
{
	char dummy[1];
	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	char *text = read_all(path, err, errlen);
	if (!text)
		return NULL;
	char *dir = NULL;
	const char *slash = strrchr(path, '/');
	if (slash) {
		dir = strndup(path, (size_t)(slash - path) + (slash == path));
		if (!dir) {
			snprintf(err, errlen, "%s: out of memory", path);
			free(text);
			return NULL;
		}
	}
	struct config *cfg = config_load_text(path, dir, text, err, errlen);
	free(dir);
	free(text);
	return cfg;
}

struct config *config_load_default(char *err, size_t errlen)
{
	return config_load_text(CONFIG_EMBEDDED_NAME, NULL, config_default, err, errlen);
}

const char *config_default_text(void)
{
	return config_default;
}

struct route_table *config_take_routes(struct config *cfg)
{
	if (!cfg)
		return NULL;
	struct route_table *t = cfg->routes;
	cfg->routes = NULL;
	return t;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->source);
	free(cfg->hostname);
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		free(cfg->listeners[i].address);
	free(cfg->listeners);
	free(cfg->spool_dir);
	free(cfg->dns_servers);
	free(cfg->relay_networks);
	free(cfg->routes_file);
	free(cfg->log_level);
	route_table_free(cfg->routes);
	free(cfg);
}
