/* trace: the Received: header (see trace.h). */
#include "control/trace.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void trace_format_date(long long t, char *out, size_t outlen)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	snprintf(out, outlen, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int trace_received(char **out, const struct envelope *env, const char *qid, const char *by_host,
		   const char *for_addr, bool crlf)
{
	char date[64], forpart[600] = "";
	const char *nl = crlf ? "\r\n" : "\n";
	trace_format_date(env->arrival, date, sizeof(date));
	const char *client = env->client_addr ? env->client_addr : "";
	bool ipv6 = strchr(client, ':') != NULL;
	if (for_addr)
		snprintf(forpart, sizeof(forpart), "%s\tfor <%s>", nl, for_addr);
	int n;
	if (!env->client_addr) /* made here (a notice): no FROM clause, RFC 5321 4.4 */
		n = asprintf(out, "Received: by %s (sluice) id %s%s; %s%s", by_host, qid, forpart,
			     date, nl);
	else
		n = asprintf(out, "Received: from %s ([%s%s])%s\tby %s (sluice) with %s id %s%s; %s%s",
			 env->helo ? env->helo : "unknown", ipv6 ? "IPv6:" : "", client, nl,
			 by_host, env->protocol && env->protocol[0] ? env->protocol : "SMTP", qid,
			 forpart, date, nl);
	if (n < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return n;
}
