/* Golden config errors: every DIR/NAME.conf must fail to load with exactly
 * the message in DIR/NAME.err (one line, "NAME.conf:LINE: message").
 * Usage: golden_runner DIR.  The runner chdirs into DIR, so messages carry
 * the bare file name; `sluiced --check-config NAME.conf` run in DIR prints
 * the same line. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first line of path, without its newline; NULL when unreadable. */
static char *read_line(const char *path)
{
	static char buf[1024];
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *got = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!got)
		return NULL;
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: golden_runner DIR\n");
		return 2;
	}
	if (chdir(argv[1]) != 0) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	DIR *d = opendir(".");
	if (!d) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	char *names[512];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < sizeof(names) / sizeof(names[0])) {
		size_t l = strlen(e->d_name);
		if (l > 5 && strcmp(e->d_name + l - 5, ".conf") == 0)
			names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);

	unsigned failed = 0;
	for (size_t i = 0; i < n; i++) {
		char errpath[512], got[1024] = "";
		snprintf(errpath, sizeof(errpath), "%.*s.err", (int)(strlen(names[i]) - 5),
			 names[i]);
		struct config *cfg = config_load_file(names[i], got, sizeof(got));
		const char *want = read_line(errpath);
		if (cfg) {
			config_free(cfg);
			snprintf(got, sizeof(got), "(loaded ok)");
		}
		if (!want || strcmp(got, want) != 0) {
			printf("not ok %zu - %s\n#   got:  %s\n#   want: %s\n", i + 1, names[i],
			       got, want ? want : "(no .err file)");
			failed++;
		} else {
			printf("ok %zu - %s\n", i + 1, names[i]);
		}
		free(names[i]);
	}
	printf("1..%zu\n", n);
	if (n < 15) {
		printf("# only %zu cases, want at least 15\n", n);
		return 1;
	}
	return failed ? 1 : 0;
}
