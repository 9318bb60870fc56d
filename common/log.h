/*
 * log: one line per event, key=value, to stderr (the service manager's
 * journal catches it).  Session or queue id first, never a secret.
 *
 * Thread context: any thread; each line is written with one write(2) so
 * lines from different threads never interleave.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Lines above this level are dropped; default LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);

/* Write "<time> <level> <formatted text>\n". */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Our own bug: log file:line and the failed condition, then abort.  Never
 * use on input from the network or a file. */
#define SLUICE_ASSERT(cond)                                                                        \
	do {                                                                                       \
		if (__builtin_expect(!(cond), 0))                                                  \
			log_assert_failed(__FILE__, __LINE__, #cond);                              \
	} while (0)

void log_assert_failed(const char *file, int line, const char *cond) __attribute__((noreturn));

#endif
