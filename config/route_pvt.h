/*
 * route_pvt.h: helpers shared by route.c and config.c inside config/ only.
 * Never include from outside this folder.
 */
#ifndef SLUICE_ROUTE_PVT_H
#define SLUICE_ROUTE_PVT_H

#include <stddef.h>
#include <stdint.h>

#include "config/route.h"

/* Longest domain name a lookup accepts (RFC 1035 limit is 253 without the
 * trailing dot; 255 leaves room for the dot and sloppy callers). */
#define ROUTE_NAME_MAX 255
/* Longest local part listed in a users list (RFC 5321 4.5.3.1.1). */
#define ROUTE_USER_MAX 64
/* Longest relay host text we keep. */
#define ROUTE_HOST_MAX 256

/*
 * Parse a smart-host "HOST[:PORT]" or "[ADDRESS][:PORT]" ("[IPv6:addr]" too).
 * host gets the name or the address without brackets; port defaults to 25.
 * Returns 0, or -EINVAL with err set (no file:line).
 */
int route_via_parse(const char *text, char *host, size_t hostlen, uint16_t *port, char *err,
		    size_t errlen);

/* Parse an action name ("local", "relay", "relay-via", "reject").
 * Returns the action or ROUTE_NONE when unknown. */
enum route_action route_action_parse(const char *name);

/*
 * Name the source of the entries added from now on (a file path, copied),
 * so a duplicate is reported as "first at FILE:LINE".  NULL: lines only.
 * Returns 0 or -ENOMEM.
 */
int route_table_set_source(struct route_table *t, const char *name);

#endif
