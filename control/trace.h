/*
 * trace: the Received: header (RFC 5321 4.4) that every copy we deliver or
 * pass on carries, with the queue id.
 *
 * Owns: its format.  "from" is the client's EHLO name with its address as
 * an address literal in TCP-info, "by" our host name, "with" the protocol
 * (RFC 3848), "id" the queue id, "for" the recipient when there is one.
 * Every field of the envelope is CR/LF free (envelope.h), so the header is
 * one header however it is folded.
 *
 * Thread context: any; pure.
 */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/envelope.h"

/*
 * Build the header into a malloc'd string (*out, length returned), lines
 * ending in CRLF when crlf, else LF (Maildir).  for_addr may be NULL (a
 * copy for several recipients says none, RFC 5321 4.4).  Returns the length
 * or -ENOMEM.
 */
int trace_received(char **out, const struct envelope *env, const char *qid, const char *by_host,
		   const char *for_addr, bool crlf);

/* Format an RFC 5322 date-time (UTC, no locale) of Unix time t. */
void trace_format_date(long long t, char *out, size_t outlen);

#endif
