/*
 * sluice-bench verify: count the Maildir copies of a benchmark run.
 *
 * Every file under a new/ or cur/ directory is a copy; the mailbox
 * directory above it (r<K>) gives the recipient index.  Each copy is
 * verified (benchmsg_verify) and its (run, seq, K) key counted once, so
 * lost, duplicated and damaged copies all show in the totals.  With --run
 * only that run's copies count; intact copies of other runs are reported
 * apart (a leftover of an earlier run must not stand in for a lost one).  Delivery is
 * asynchronous, so --wait rescans until the expected count is there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/benchmsg.h"

struct verify_counts {
	uint64_t files, unique, duplicates, corrupt, foreign, unreadable;
	uint64_t other_runs; /* intact copies of another run than --run */
};

/* --run: count only this run's copies (others go to other_runs). */
struct verify_filter {
	bool set;
	uint32_t run;
};

static const char verify_usage[] =
    "usage: sluice-bench verify --maildir DIR [--run ID] [--expect N] [--wait S] [--json]\n";

/* Verify one copy of the mailbox whose directory is named box. */
static void verify_file(int dirfd, const char *name, const char *box, struct benchmsg_seen *seen,
			const struct verify_filter *filter, struct verify_counts *c)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	struct benchmsg_info info;
	enum benchmsg_verdict v = BENCHMSG_FOREIGN;
	long rcpt = benchmsg_rcpt_index(box);

	c->files++;
	if (fd < 0 || fstat(fd, &st) < 0) {
		c->unreadable++;
		if (fd >= 0)
			close(fd);
		return;
	}
	if (st.st_size > 0) {
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (map == MAP_FAILED) {
			c->unreadable++;
			close(fd);
			return;
		}
		v = benchmsg_verify(map, (size_t)st.st_size, &info);
		munmap(map, (size_t)st.st_size);
	}
	close(fd);
	if (v == BENCHMSG_FOREIGN || rcpt < 0)
		c->foreign++;
	else if (v != BENCHMSG_OK)
		c->corrupt++;
	else if (filter->set && info.run != filter->run)
		c->other_runs++;
	else if (benchmsg_seen_add(seen, info.run, info.seq, (unsigned)rcpt))
		c->unique++;
	else
		c->duplicates++;
}

static void scan_dir(const char *path, const char *name, const char *parent, int depth,
		     struct benchmsg_seen *seen, const struct verify_filter *filter,
		     struct verify_counts *c);

/* Walk path (named name, inside a directory named parent). */
static void scan_entries(DIR *d, const char *path, const char *name, const char *parent, int depth,
			 struct benchmsg_seen *seen, const struct verify_filter *filter,
			 struct verify_counts *c)
{
	bool is_copies = strcmp(name, "new") == 0 || strcmp(name, "cur") == 0;
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		char sub[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		if (de->d_type == DT_REG && is_copies) {
			verify_file(dirfd(d), de->d_name, parent, seen, filter, c);
			continue;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
			continue;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;

			if (stat(sub, &st) < 0)
				continue;
			if (S_ISREG(st.st_mode) && is_copies) {
				verify_file(dirfd(d), de->d_name, parent, seen, filter, c);
				continue;
			}
			if (!S_ISDIR(st.st_mode))
				continue;
		}
		scan_dir(sub, de->d_name, name, depth + 1, seen, filter, c);
	}
}

static void scan_dir(const char *path, const char *name, const char *parent, int depth,
		     struct benchmsg_seen *seen, const struct verify_filter *filter,
		     struct verify_counts *c)
{
	DIR *d;

	if (depth > 16)
		return; /* a Maildir tree is shallow; do not follow loops */
	d = opendir(path);
	if (!d)
		return;
	scan_entries(d, path, name, parent, depth, seen, filter, c);
	closedir(d);
}

/* Scan the whole tree afresh. */
static int scan(const char *root, const struct verify_filter *filter, struct verify_counts *c)
{
	struct benchmsg_seen *seen = benchmsg_seen_new();

	if (!seen)
		return -1;
	memset(c, 0, sizeof(*c));
	scan_dir(root, "", "", 0, seen, filter, c);
	benchmsg_seen_free(seen);
	return 0;
}

static bool verified(const struct verify_counts *c, long long expect)
{
	bool clean = c->duplicates == 0 && c->corrupt == 0 && c->foreign == 0 && c->unreadable == 0;

	return clean && (expect < 0 || c->unique == (uint64_t)expect);
}

static void print_counts(const struct verify_counts *c, long long expect, bool ok, bool json)
{
	if (json) {
		printf("{\"files\": %" PRIu64 ", \"unique\": %" PRIu64 ", \"duplicates\": %" PRIu64
		       ", \"corrupt\": %" PRIu64 ", \"foreign\": %" PRIu64
		       ", \"unreadable\": %" PRIu64 ", \"other_runs\": %" PRIu64
		       ", \"expect\": %lld, \"ok\": %s}\n",
		       c->files, c->unique, c->duplicates, c->corrupt, c->foreign, c->unreadable,
		       c->other_runs, expect, ok ? "true" : "false");
		return;
	}
	printf("files       %" PRIu64 "\n"
	       "unique      %" PRIu64 "\n"
	       "duplicates  %" PRIu64 "\n"
	       "corrupt     %" PRIu64 "\n"
	       "foreign     %" PRIu64 "\n"
	       "unreadable  %" PRIu64 "\n"
	       "other runs  %" PRIu64 "\n",
	       c->files, c->unique, c->duplicates, c->corrupt, c->foreign, c->unreadable,
	       c->other_runs);
	if (expect >= 0)
		printf("expected    %lld\n", expect);
	printf("%s\n", ok ? "verified" : "NOT VERIFIED");
}

int bench_verify_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"maildir", required_argument, NULL, 'm'},
	    {"expect", required_argument, NULL, 'e'},
	    {"wait", required_argument, NULL, 'w'},
	    {"json", no_argument, NULL, 'j'},
	    {"run", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *root = NULL;
	struct verify_filter filter = {0};
	long long expect = -1;
	double wait_s = 0;
	bool json = false;
	int opt;
	char *end;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			root = optarg;
			break;
		case 'e':
			expect = strtoll(optarg, &end, 10);
			if (*end != '\0' || expect < 0) {
				fprintf(stderr,
					"sluice-bench verify: --expect wants a count, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'w':
			wait_s = strtod(optarg, &end);
			if (*end != '\0' || wait_s < 0 || wait_s > 86400) {
				fprintf(stderr,
					"sluice-bench verify: --wait wants seconds, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'r':
			if (bench_parse_run(optarg, &filter.run) < 0) {
				fprintf(stderr,
					"sluice-bench verify: --run wants 8 hex digits, not '%s'\n",
					optarg);
				return 2;
			}
			filter.set = true;
			break;
		case 'h':
			fputs(verify_usage, stdout);
			return 0;
		default:
			fputs(verify_usage, stderr);
			return 2;
		}
	}
	if (!root || optind != argc) {
		fputs(verify_usage, stderr);
		return 2;
	}
	struct stat st;

	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "sluice-bench verify: %s: not a directory\n", root);
		return 1;
	}

	struct verify_counts c;
	uint64_t deadline = bench_now_ns() + (uint64_t)(wait_s * 1e9);

	for (;;) {
		if (scan(root, &filter, &c) < 0) {
			fputs("sluice-bench verify: out of memory\n", stderr);
			return 1;
		}
		/* Only a short count is worth waiting for: more copies never heal. */
		if (expect < 0 || c.unique + c.duplicates >= (uint64_t)expect ||
		    bench_now_ns() >= deadline)
			break;
		struct timespec pause = {0, 100 * 1000 * 1000};

		nanosleep(&pause, NULL);
	}
	bool ok = verified(&c, expect);

	print_counts(&c, expect, ok, json);
	return ok ? 0 : 1;
}
