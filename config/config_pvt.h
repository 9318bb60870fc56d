/*
 * config_pvt.h: the schema row layout shared by config.c and
 * config_schema.c.  Never include from outside config/.
 */
#ifndef SLUICE_CONFIG_PVT_H
#define SLUICE_CONFIG_PVT_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* How a schema row's value is read and stored. */
enum config_kind {
	CK_UINT,      /* integer -> unsigned at off, min..max */
	CK_SIZE,      /* integer or "64M" string -> uint64_t at off, min..max */
	CK_STRING,    /* non-empty string -> char * at off */
	CK_HOSTNAME,  /* like CK_STRING, must be a host name */
	CK_PATH,      /* optional file path -> char * at off */
	CK_ENUM_STR,  /* one of enums -> char * at off */
	CK_ENUM_BOOL, /* one of enums -> bool at off (true unless enums[0]) */
	CK_CIDRS,     /* list of CIDR strings -> relay_networks */
	CK_LISTEN,    /* list of listener groups -> listeners */
	CK_ROUTES,    /* list of route groups -> routes table */
	CK_STRLIST,   /* (group member) list of strings */
};

/*
 * One row of the schema: the public part (key, type, default, doc) and how
 * the loader reads it.  Keys with a '.' are members of the groups in a
 * list ("listen.port"); they are checked by that list's handler.
 * default_text is libconfig syntax, parsed by the same handler as the file
 * ("key = <default_text>;"), unless it is a word in parentheses (computed
 * or absent: "(gethostname())", "(none)", "(required)"); a libconfig list
 * default is written with a space after '(' ("( )").
 */
struct schema_row {
	struct config_key k;
	enum config_kind kind;
	int64_t min, max;	  /* CK_UINT, CK_SIZE */
	size_t off;		  /* offset in struct config (top-level rows) */
	const char *const *enums; /* CK_ENUM_*: NULL-terminated names */
};

/* The rows, terminated by a row with k.key == NULL. */
extern const struct schema_row config_rows[];

/* The row for key ("spool_dir", "listen.port"), or NULL. */
const struct schema_row *config_row_find(const char *key);

/* Parse "123", "64K", "64M", "1G", "2T" (binary).  0, -EINVAL or -ERANGE. */
int config_parse_size(const char *s, uint64_t *out);

#endif
