/*
 * sluiced: the sluice daemon.  One process: dataplane workers, the spool
 * committer, delivery, all threads (see DESIGN.md "Why one process").
 *
 *	sluiced [-c FILE]		run in the foreground (no FILE: the
 *					embedded default, see config.h)
 *	sluiced --check-config FILE	validate FILE, print "ok" or
 *					"file:line: message", exit 0 or 1
 *
 * Signals: SIGTERM/SIGINT stop gracefully (stop accepting, finish or 421
 * open sessions, flush the spool, exit 0); SIGHUP reloads the route table
 * and relay_networks from the config file (other settings need a restart).
 * Start-up order matters for durability: recovery runs before any worker
 * accepts, so recovered and new messages never share a segment.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "config/route.h"
#include "control/delivery.h"
#include "control/relay.h"
#include "dataplane/dataplane.h"
#include "queue/spool.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: sluiced [-c FILE]\n"
		   "       sluiced --check-config FILE\n"
		   "       sluiced --version\n");
}

static int check_config(const char *path)
{
	char err[512];
	struct config *cfg = config_load_file(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	config_free(cfg);
	printf("ok\n");
	return 0;
}

static enum log_level parse_log_level(const char *name)
{
	static const char *const names[] = {"err", "warn", "info", "debug"};
	for (unsigned i = 0; i < 4; i++)
		if (name && strcmp(name, names[i]) == 0)
			return (enum log_level)i;
	return LOG_LEVEL_INFO;
}

static struct config *load_config(const char *path)
{
	char err[512];
	struct config *cfg =
		path ? config_load_file(path, err, sizeof(err)) : config_load_default(err, sizeof(err));
	if (!cfg)
		fprintf(stderr, "sluiced: %s\n", err);
	return cfg;
}

struct recover_ctx {
	struct delivery *delivery;
	uint64_t messages;
};

static int recover_one(void *arg, const struct spool_ref *ref, const char *qid,
		       const struct envelope *env, const bool *pending, const bool *noticed)
{
	struct recover_ctx *rc = arg;
	(void)qid;
	rc->messages++;
	return delivery_submit_recovered(rc->delivery, ref, pending, noticed, env->nrcpts);
}

static int submit_remote(void *arg, const struct relay_submission *s)
{
	return relay_submit(arg, s);
}

static void relay_cfg_from(const struct config *cfg, struct relay_cfg *out)
{
	*out = (struct relay_cfg){
		.hostname = cfg->hostname,
		.dns_servers = cfg->dns_servers,
		.dns_timeout_ms = cfg->dns_timeout_ms,
		.ipv6 = cfg->dns_ipv6,
		.mx_port = (uint16_t)cfg->relay_port,
		.max_conns = cfg->relay_max_connections,
		.dest_conns = cfg->relay_dest_connections,
		.msgs_per_conn = cfg->relay_msgs_per_connection,
		.idle_timeout_s = cfg->relay_idle_timeout,
		.connect_timeout_s = cfg->relay_connect_timeout,
		.timeout_command_s = cfg->relay_timeout_command,
		.timeout_data_init_s = cfg->relay_timeout_data_init,
		.timeout_data_block_s = cfg->relay_timeout_data_block,
		.timeout_data_end_s = cfg->relay_timeout_data_end,
		.retry = {
			.min_s = cfg->queue_retry_min,
			.max_s = cfg->queue_retry_max,
			.delay_warning_s = cfg->delay_warning,
			.max_lifetime_s = cfg->max_lifetime,
		},
	};
}

/* SIGHUP: a new route table from the same file; the rest needs a restart. */
static void reload_routes(const char *path)
{
	if (!path) {
		log_info("reload: no config file (embedded default), nothing to reload");
		return;
	}
	struct config *fresh = load_config(path);
	if (!fresh) {
		log_err("reload: config has errors, keeping the current routes");
		return;
	}
	struct route_table *t = config_take_routes(fresh);
	size_t n = route_table_size(t);
	route_publish(t);
	config_free(fresh);
	log_info("reload: routes=%zu published", n);
}

/* Block the signals we handle, so every thread inherits the mask and only
 * the main thread takes them, with sigwait. */
static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Each connection is a descriptor: raise the soft limit to the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("setrlimit NOFILE: %s", strerror(errno));
	}
}

static int run(const char *path)
{
	sigset_t set;
	block_signals(&set);

	struct config *cfg = load_config(path);
	if (!cfg)
		return 1;
	log_set_level(parse_log_level(cfg->log_level));
	raise_fd_limit();

	int rc = 1;
	char err[512];
	struct spool_cfg scfg = {
		.dir = cfg->spool_dir,
		.segment_size = cfg->segment_size,
		.min_free = cfg->spool_min_free,
		.max_size = cfg->spool_max_size,
		.commit_interval_us = cfg->commit_interval_us,
		.commit_batch = cfg->commit_batch,
	};
	struct spool *sp = spool_open(&scfg, err, sizeof(err));
	if (!sp) {
		log_err("spool: %s", err);
		goto out_config;
	}
	struct relay *rl = NULL;
	struct delivery *dl = delivery_new(sp, cfg->hostname);
	if (!dl) {
		log_err("delivery: cannot set up (out of memory or file descriptors)");
		goto out_spool;
	}
	struct relay_cfg rcfg;
	relay_cfg_from(cfg, &rcfg);
	rl = relay_new(sp, delivery_submit, dl, &rcfg, err, sizeof(err));
	if (!rl) {
		log_err("relay: cannot set up: %s", err);
		goto out_delivery;
	}
	delivery_set_remote(dl, submit_remote, rl);
	struct recover_ctx rctx = {.delivery = dl};
	int e = spool_recover(sp, recover_one, &rctx);
	if (e < 0) {
		log_err("spool: recovery failed dir=%s: %s", cfg->spool_dir, strerror(-e));
		goto out_delivery;
	}
	log_info("spool: recovered messages=%llu dir=%s", (unsigned long long)rctx.messages,
		 cfg->spool_dir);
	route_publish(config_take_routes(cfg));
	if ((e = spool_start(sp)) < 0 || (e = relay_start(rl)) < 0 ||
	    (e = delivery_start(dl)) < 0) {
		log_err("start: %s", strerror(-e));
		goto out_delivery;
	}
	struct dataplane_params dp_params = {
		.cfg = cfg,
		.spool = sp,
		.submit = delivery_submit,
		.submit_arg = dl,
	};
	struct dataplane *dp = dataplane_start(&dp_params, err, sizeof(err));
	if (!dp) {
		log_err("listen: %s", err);
		goto out_delivery;
	}
	log_info("sluiced %s started config=%s workers=%u listeners=%u", SLUICE_VERSION,
		 cfg->source, cfg->workers, cfg->nlisteners);

	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload_routes(path);
			continue;
		}
		log_info("signal=%s stopping", sig == SIGTERM ? "TERM" : "INT");
		break;
	}
	dataplane_stop(dp);
	rc = 0;
out_delivery:
	/* The relay stops first (its last notices go to delivery), delivery
	 * drains (it may still queue for the relay), then the relay goes. */
	relay_stop(rl);
	delivery_stop(dl);
	relay_free(rl);
out_spool:
	spool_close(sp);
	route_publish(NULL);
out_config:
	config_free(cfg);
	if (rc == 0)
		log_info("sluiced stopped");
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check-config") == 0 && i + 1 < argc)
			return check_config(argv[i + 1]);
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(argv[i], "--version") == 0) {
			/* features: what this build delivers; bench/compare reads it
			 * ("relay" appears once remote delivery exists). */
			printf("sluiced %s\nfeatures: smtp spool maildir relay lmtp dsn\n", SLUICE_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	return run(path);
}
