/* log: see log.h. */
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level_max = LOG_LEVEL_INFO;

static const char *const level_names[] = {"err", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	log_level_max = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_level_max)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* truncated: keep the newline */
	line[len++] = '\n';
	/* One write per line; a short write to stderr is not worth retrying. */
	(void)!write(STDERR_FILENO, line, len);
}

void log_assert_failed(const char *file, int line, const char *cond)
{
	log_msg(LOG_LEVEL_ERR, "assertion failed at %s:%d: %s", file, line, cond);
	abort();
}
