/* Unit tests for control/maildir.c: safe names, batch delivery, failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/maildir.h"

#define HOST "mx.test"

/* ---- helpers ---- */

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_root(void)
{
	char *t = strdup("/tmp/sluice-maildir-XXXXXX");
	assert_non_null(t);
	assert_non_null(mkdtemp(t));
	return t;
}

/* Names of the entries in dir (not . and ..); returns how many (max 64). */
static int list_dir(const char *dir, char names[][256], int max)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = malloc(1 << 20);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void check_file(const char *dir, const char *name, const char *want)
{
	char path[4096];
	size_t len = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	char *got = read_file(path, &len);
	if (got == NULL)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	if (len != strlen(want) || memcmp(got, want, len) != 0)
		fail_msg("%s:\n got: [%s]\nwant: [%s]", path, got, want);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if ((st.st_mode & 0777) != 0600)
		fail_msg("%s: mode got %o want 600", path, st.st_mode & 0777);
	free(got);
}

static int count_dir(const char *fmt, const char *root, const char *sub)
{
	char path[4096];
	char names[64][256];
	snprintf(path, sizeof(path), fmt, root, sub);
	return list_dir(path, names, 64);
}

/* ---- maildir_safe_name ---- */

struct safe_case {
	const char *in;
	size_t outlen;
	int rc;
	const char *want;
};

static void test_safe_name(void **state)
{
	(void)state;
	static const struct safe_case cases[] = {
	    {"Example.COM", 64, 0, "example.com"},
	    {"../etc", 64, 0, "%2E.%2Fetc"},
	    {"..", 64, 0, "%2E."},
	    {".", 64, 0, "%2E"},
	    {".hidden", 64, 0, "%2Ehidden"},
	    {"a/b", 64, 0, "a%2Fb"},
	    {"a b", 64, 0, "a%20b"},
	    {"\xc3\xa9t\xc3\xa9", 64, 0, "%C3%A9t%C3%A9"},
	    {"%2e", 64, 0, "%2e"}, /* literal stays lower case: no clash with %2E */
	    {"user+Tag", 64, 0, "user+tag"},
	    {"!#$%&'*+-=?^_`{|}~.", 64, 0, "!#$%&'*+-=?^_`{|}~."},
	    {"a\\b\"c", 64, 0, "a%5Cb%22c"},
	    {"x\x01\x7f\xff", 64, 0, "x%01%7F%FF"},
	    {"", 64, 0, ""},
	    {"abc", 4, 0, "abc"},
	    {"abc", 3, -ENAMETOOLONG, ""},
	    {"/", 4, 0, "%2F"},
	    {"/", 3, -ENAMETOOLONG, ""},
	    {"a", 0, -ENAMETOOLONG, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct safe_case *c = &cases[i];
		char out[64] = "unchanged";
		int rc = maildir_safe_name(c->in, out, c->outlen);
		if (rc != c->rc)
			fail_msg("case %zu [%s] outlen %zu: rc got %d want %d", i, c->in, c->outlen,
				 rc, c->rc);
		if (c->want != NULL && strcmp(out, c->want) != 0)
			fail_msg("case %zu [%s]: got [%s] want [%s]", i, c->in, out, c->want);
		if (rc == 0 && (strchr(out, '/') != NULL || out[0] == '.'))
			fail_msg("case %zu [%s]: unsafe result [%s]", i, c->in, out);
	}
}

/* ---- batch delivery ---- */

static void test_batch_delivers(void **state)
{
	(void)state;
	char *root = make_root();
	struct iovec a[] = {{"Received: x\n", 12}, {"Subject: a\n\nbody a\n", 19}};
	struct iovec b[] = {{"Subject: b\n\nbody b\n", 19}};
	struct iovec c[] = {{"", 0}, {"c", 1}, {"", 0}};
	struct maildir_job jobs[] = {
	    {.root = root, .domain = "Example.com", .user = "Alice", .iov = a, .iovcnt = 2},
	    {.root = root, .domain = "example.com", .user = "alice", .iov = b, .iovcnt = 1},
	    {.root = root, .domain = "other.test", .user = "bob", .iov = c, .iovcnt = 3},
	};
	size_t n = maildir_deliver_batch(jobs, 3, HOST);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++)
		if (jobs[i].result != 0)
			fail_msg("job %d: result got %d want 0", i, jobs[i].result);

	char dir[1024], names[64][256];
	snprintf(dir, sizeof(dir), "%s/example.com/alice/new", root);
	int cnt = list_dir(dir, names, 64);
	assert_int_equal(cnt, 2);
	if (strcmp(names[0], names[1]) == 0)
		fail_msg("unique names equal: %s", names[0]);

	/* <secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size> */
	regex_t re;
	assert_int_equal(
	    regcomp(&re, "^[0-9]+\\.M[0-9]+P[0-9]+Q[0-9]+\\.mx\\.test,S=([0-9]+)$", REG_EXTENDED),
	    0);
	for (int i = 0; i < 2; i++) {
		regmatch_t m[2];
		if (regexec(&re, names[i], 2, m, 0) != 0)
			fail_msg("name [%s] does not match the Maildir pattern", names[i]);
		long size = strtol(names[i] + m[1].rm_so, NULL, 10);
		if (size == 31)
			check_file(dir, names[i], "Received: x\nSubject: a\n\nbody a\n");
		else if (size == 19)
			check_file(dir, names[i], "Subject: b\n\nbody b\n");
		else
			fail_msg("name [%s]: S= got %ld want 31 or 19", names[i], size);
	}
	regfree(&re);

	snprintf(dir, sizeof(dir), "%s/other.test/bob/new", root);
	assert_int_equal(list_dir(dir, names, 64), 1);
	check_file(dir, names[0], "c");

	/* tmp/ is empty, cur/ exists, modes are private. */
	assert_int_equal(count_dir("%s/example.com/alice/%s", root, "tmp"), 0);
	assert_int_equal(count_dir("%s/other.test/bob/%s", root, "tmp"), 0);
	assert_int_equal(count_dir("%s/example.com/alice/%s", root, "cur"), 0);
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/example.com/alice/new", root);
	assert_int_equal(stat(dir, &st), 0);
	if ((st.st_mode & 0777) != 0700)
		fail_msg("new/ mode got %o want 700", st.st_mode & 0777);
	rm_rf(root);
	free(root);
}

/* Hostile names stay inside the root. */
static void test_batch_cannot_escape(void **state)
{
	(void)state;
	char *root = make_root();
	char sub[1024];
	snprintf(sub, sizeof(sub), "%s/inner", root);
	assert_int_equal(mkdir(sub, 0700), 0);
	struct iovec v[] = {{"x\n", 2}};
	struct maildir_job jobs[] = {
	    {.root = sub, .domain = "..", .user = "../../etc", .iov = v, .iovcnt = 1},
	    {.root = sub, .domain = "a/../..", .user = ".", .iov = v, .iovcnt = 1},
	};
	assert_int_equal(maildir_deliver_batch(jobs, 2, HOST), 2);
	char names[64][256];
	/* Only "inner" exists at the top; everything went below it. */
	assert_int_equal(list_dir(root, names, 64), 1);
	assert_string_equal(names[0], "inner");
	assert_int_equal(count_dir("%s/%s", sub, "%2E./%2E.%2F..%2Fetc/new"), 1);
	assert_int_equal(count_dir("%s/%s", sub, "a%2F..%2F../%2E/new"), 1);
	rm_rf(root);
	free(root);
}

/* Empty names would turn ROOT/DOMAIN into a mailbox: refused. */
static void test_batch_empty_name(void **state)
{
	(void)state;
	char *root = make_root();
	struct iovec v[] = {{"x\n", 2}};
	struct maildir_job jobs[] = {
	    {.root = root, .domain = "example.com", .user = "", .iov = v, .iovcnt = 1},
	    {.root = root, .domain = "", .user = "bob", .iov = v, .iovcnt = 1},
	};
	assert_int_equal(maildir_deliver_batch(jobs, 2, HOST), 0);
	assert_int_equal(jobs[0].result, -EINVAL);
	assert_int_equal(jobs[1].result, -EINVAL);
	char names[64][256];
	assert_int_equal(list_dir(root, names, 64), 0);
	rm_rf(root);
	free(root);
}

/*
 * Failing jobs get -errno and leave nothing in new/ (nor tmp/), while the
 * other jobs of the same batch still deliver.
 */
static void test_batch_failures(void **state)
{
	(void)state;
	char *root = make_root();
	char path[1024];
	/* A regular file where a root directory should be. */
	snprintf(path, sizeof(path), "%s/notadir", root);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* A mailbox whose new/ is a file. */
	snprintf(path, sizeof(path), "%s/good/example.com/broken", root);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "mkdir -p %s/tmp %s/cur && touch %s/new", path, path, path);
	assert_int_equal(system(tmp), 0);
	/* A copy that cannot be read (PROT_NONE page): writev fails with
	 * EFAULT after the tmp file exists, which must then be removed. */
	long pg = sysconf(_SC_PAGESIZE);
	void *bad = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(bad != MAP_FAILED);

	char fileroot[1024], goodroot[1024];
	snprintf(fileroot, sizeof(fileroot), "%s/notadir", root);
	snprintf(goodroot, sizeof(goodroot), "%s/good", root);
	struct iovec ok[] = {{"ok\n", 3}};
	struct iovec badv[] = {{"head\n", 5}, {bad, 100}};
	struct maildir_job jobs[] = {
	    {.root = fileroot, .domain = "example.com", .user = "a", .iov = ok, .iovcnt = 1},
	    {.root = goodroot, .domain = "example.com", .user = "good1", .iov = ok, .iovcnt = 1},
	    {.root = goodroot, .domain = "example.com", .user = "broken", .iov = ok, .iovcnt = 1},
	    {.root = goodroot, .domain = "example.com", .user = "efault", .iov = badv, .iovcnt = 2},
	    {.root = goodroot, .domain = "example.com", .user = "good2", .iov = ok, .iovcnt = 1},
	};
	static const int want[] = {-ENOTDIR, 0, -ENOTDIR, -EFAULT, 0};
	size_t n = maildir_deliver_batch(jobs, 5, HOST);
	for (int i = 0; i < 5; i++)
		if (jobs[i].result != want[i])
			fail_msg("job %d: result got %d (%s) want %d (%s)", i, jobs[i].result,
				 strerror(-jobs[i].result), want[i], strerror(-want[i]));
	assert_int_equal(n, 2);
	char gdir[2048];
	snprintf(gdir, sizeof(gdir), "%s/example.com", goodroot);
	assert_int_equal(count_dir("%s/%s", gdir, "good1/new"), 1);
	assert_int_equal(count_dir("%s/%s", gdir, "good2/new"), 1);
	assert_int_equal(count_dir("%s/%s", gdir, "efault/new"), 0);
	assert_int_equal(count_dir("%s/%s", gdir, "efault/tmp"), 0);
	assert_int_equal(count_dir("%s/%s", gdir, "broken/tmp"), 0);
	munmap(bad, (size_t)pg);
	rm_rf(root);
	free(root);
}

/* The per-thread cache says the mailbox exists; it was removed meanwhile:
 * the next delivery recreates it. */
static void test_batch_recreates_removed(void **state)
{
	(void)state;
	char *root = make_root();
	struct iovec v[] = {{"x\n", 2}};
	struct maildir_job job = {
	    .root = root, .domain = "example.com", .user = "gone", .iov = v, .iovcnt = 1};
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	char box[1024];
	snprintf(box, sizeof(box), "%s/example.com", root);
	rm_rf(box);
	job.result = 12345;
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	assert_int_equal(job.result, 0);
	assert_int_equal(count_dir("%s/%s", root, "example.com/gone/new"), 1);
	assert_int_equal(count_dir("%s/%s", root, "example.com/gone/cur"), 0);
	/* Only tmp/ removed this time. */
	snprintf(box, sizeof(box), "%s/example.com/gone/tmp", root);
	rm_rf(box);
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	assert_int_equal(count_dir("%s/%s", root, "example.com/gone/new"), 2);
	rm_rf(root);
	free(root);
}

/* Many small iovecs (more than one writev chunk, with empty ones). */
static void test_batch_many_iovecs(void **state)
{
	(void)state;
	char *root = make_root();
	enum { N = 300 };
	static struct iovec v[N];
	static char want[N * 3 + 1];
	static const char *const parts[] = {"ab", "", "c", "def"};
	size_t w = 0;
	for (int i = 0; i < N; i++) {
		const char *p = parts[i % 4];
		v[i].iov_base = (void *)p;
		v[i].iov_len = strlen(p);
		memcpy(want + w, p, strlen(p));
		w += strlen(p);
	}
	want[w] = '\0';
	struct maildir_job job = {
	    .root = root, .domain = "example.com", .user = "iov", .iov = v, .iovcnt = N};
	assert_int_equal(maildir_deliver_batch(&job, 1, "host/with:odd"), 1);
	char dir[1024], names[64][256];
	snprintf(dir, sizeof(dir), "%s/example.com/iov/new", root);
	assert_int_equal(list_dir(dir, names, 64), 1);
	check_file(dir, names[0], want);
	/* '/' and ':' in the host name are escaped per the Maildir convention. */
	if (strstr(names[0], ".host\\057with\\072odd,S=") == NULL)
		fail_msg("name [%s]: host part not escaped", names[0]);
	rm_rf(root);
	free(root);
}

/* A very long host name is cut so every unique name fits NAME_MAX. */
static void test_batch_long_hostname(void **state)
{
	(void)state;
	char *root = make_root();
	char host[400];
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	host[100] = ':';
	struct iovec v[] = {{"x\n", 2}};
	struct maildir_job job = {
	    .root = root, .domain = "example.com", .user = "long", .iov = v, .iovcnt = 1};
	assert_int_equal(maildir_deliver_batch(&job, 1, host), 1);
	assert_int_equal(job.result, 0);
	assert_int_equal(count_dir("%s/%s", root, "example.com/long/new"), 1);
	rm_rf(root);
	free(root);
}

/* Tagged jobs: the copy is linked, not renamed, and its tmp/ link stays
 * until released; a retry before the release finds it and writes no second
 * copy, also after a reader moved it to cur/. */
static void test_batch_tag_exactly_once(void **state)
{
	(void)state;
	char *root = make_root();
	char box[1024], tmpdir[1100], names[64][256], path[1400];
	snprintf(box, sizeof(box), "%s/example.com/tag", root);
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", box);
	struct iovec v[] = {{"tagged\n", 7}};
	struct maildir_job job = {.root = root,
				  .domain = "example.com",
				  .user = "tag",
				  .iov = v,
				  .iovcnt = 1,
				  .tag = "1795381200.0000000100000000R0"};
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	assert_int_equal(job.result, 0);
	assert_false(job.found);
	assert_int_equal(list_dir(tmpdir, names, 64), 1);
	assert_string_equal(names[0], "1795381200.0000000100000000R0.mx.test");
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, names[0]);
	assert_int_equal(stat(path, &st), 0);
	if (st.st_nlink != 2)
		fail_msg("tmp link count got %lu want 2", (unsigned long)st.st_nlink);

	/* A reader moves the copy to cur/ with flags; then the "crashed"
	 * delivery is retried. */
	char newdir[1100];
	snprintf(newdir, sizeof(newdir), "%s/new", box);
	assert_int_equal(list_dir(newdir, names, 64), 1);
	char from[1400], to[1400];
	snprintf(from, sizeof(from), "%s/%s", newdir, names[0]);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", box, names[0]);
	assert_int_equal(rename(from, to), 0);
	job.result = 99;
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	assert_int_equal(job.result, 0);
	assert_true(job.found);
	assert_int_equal(list_dir(newdir, names, 64), 0);

	/* Released: tmp/ is empty, the copy in cur/ stays. */
	maildir_release_batch(&job, 1, HOST);
	assert_int_equal(list_dir(tmpdir, names, 64), 0);
	assert_int_equal(count_dir("%s/%s", box, "cur"), 1);

	/* A stale half (link count 1, the attempt died before linking) is
	 * replaced and delivered. */
	job.tag = "1795381200.0000000100000000R1";
	snprintf(path, sizeof(path), "%s/1795381200.0000000100000000R1.mx.test", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("partial", f);
	fclose(f);
	job.found = false;
	assert_int_equal(maildir_deliver_batch(&job, 1, HOST), 1);
	assert_int_equal(job.result, 0);
	assert_false(job.found);
	assert_int_equal(list_dir(newdir, names, 64), 1);
	check_file(newdir, names[0], "tagged\n");
	maildir_release_batch(&job, 1, HOST);
	assert_int_equal(list_dir(tmpdir, names, 64), 0);

	/* Bad tags and a tag twice in one batch. */
	struct maildir_job bad[] = {
	    {.root = root,
	     .domain = "example.com",
	     .user = "tag",
	     .iov = v,
	     .iovcnt = 1,
	     .tag = "../x"},
	    {.root = root,
	     .domain = "example.com",
	     .user = "tag",
	     .iov = v,
	     .iovcnt = 1,
	     .tag = ".hidden"},
	    {.root = root,
	     .domain = "example.com",
	     .user = "tag",
	     .iov = v,
	     .iovcnt = 1,
	     .tag = "same"},
	    {.root = root,
	     .domain = "example.com",
	     .user = "tag",
	     .iov = v,
	     .iovcnt = 1,
	     .tag = "same"},
	};
	static const int want[] = {-EINVAL, -EINVAL, 0, -EEXIST};
	assert_int_equal(maildir_deliver_batch(bad, 4, HOST), 1);
	for (int i = 0; i < 4; i++)
		if (bad[i].result != want[i])
			fail_msg("bad[%d]: result got %d want %d", i, bad[i].result, want[i]);
	assert_int_equal(list_dir(newdir, names, 64), 2);
	maildir_release_batch(bad, 4, HOST);
	assert_int_equal(list_dir(tmpdir, names, 64), 0);
	rm_rf(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_safe_name),
	    cmocka_unit_test(test_batch_delivers),
	    cmocka_unit_test(test_batch_cannot_escape),
	    cmocka_unit_test(test_batch_empty_name),
	    cmocka_unit_test(test_batch_failures),
	    cmocka_unit_test(test_batch_recreates_removed),
	    cmocka_unit_test(test_batch_many_iovecs),
	    cmocka_unit_test(test_batch_long_hostname),
	    cmocka_unit_test(test_batch_tag_exactly_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
