/*
 * relay_job: what happens to a job's recipients after an attempt: the
 * journal, the retry heap, and delay and failure notices (relay.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "control/relay_pvt.h"
#include "queue/dsn.h"

/* ---- deferred jobs: a binary min-heap on retry_at ---- */

static void relay_heap_swap(struct relay_job **h, size_t a, size_t b)
{
	struct relay_job *t = h[a];
	h[a] = h[b];
	h[b] = t;
}

void relay_heap_push(struct relay *r, struct relay_job *job)
{
	if (r->nheap == r->heap_cap) {
		size_t cap = r->heap_cap ? r->heap_cap * 2 : 1024;
		struct relay_job **h = realloc(r->heap, cap * sizeof(*h));
		if (!h) {
			char qid[SPOOL_QID_LEN + 1];
			spool_qid_format(&job->ref, qid);
			log_err("%s relay: out of memory for the retry heap, stays queued until "
				"restart",
				qid);
			relay_job_free(r, job);
			return;
		}
		r->heap = h;
		r->heap_cap = cap;
	}
	struct relay_job **h = r->heap;
	size_t i = r->nheap++;
	h[i] = job;
	while (i > 0 && h[(i - 1) / 2]->retry_at > h[i]->retry_at) {
		relay_heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

struct relay_job *relay_heap_pop(struct relay *r)
{
	struct relay_job **h = r->heap;
	struct relay_job *top = h[0];
	h[0] = h[--r->nheap];
	size_t i = 0;
	for (;;) {
		size_t a = 2 * i + 1, b = a + 1, m = i;
		if (a < r->nheap && h[a]->retry_at < h[m]->retry_at)
			m = a;
		if (b < r->nheap && h[b]->retry_at < h[m]->retry_at)
			m = b;
		if (m == i)
			break;
		relay_heap_swap(h, i, m);
		i = m;
	}
	return top;
}

void relay_job_free(struct relay *r, struct relay_job *job)
{
	relay_count(&r->st_queued, -1);
	relay_count(&r->st_queued_rcpts, -(int64_t)job->nrcpts);
	free(job->fail);
	free(job);
}

/* ---- the journal ---- */

static void relay_journal(struct relay *r, const struct spool_ref *ref, uint32_t rcpt,
			  enum spool_rcpt_state state, const char *qid)
{
	int rc = state == SPOOL_RCPT_DELAY_NOTICED
			 ? spool_journal_delay_noticed(r->sp, ref, rcpt)
			 : spool_journal_final(r->sp, ref, rcpt, state);
	if (rc < 0) {
		/* Not journalled: after a restart it is tried (or noticed)
		 * again; the price of a broken journal is a duplicate. */
		log_err("%s journal rcpt=%u state=%d: %s", qid, rcpt, (int)state, strerror(-rc));
		return;
	}
	r->journal_dirty = true;
}

void relay_journal_sync(struct relay *r)
{
	if (!r->journal_dirty)
		return;
	int rc = spool_journal_sync(r->sp);
	if (rc < 0) {
		log_err("relay: journal sync: %s (will retry)", strerror(-rc));
		return;
	}
	r->journal_dirty = false;
}

/* ---- notices ---- */

/* The outcome of one recipient of a finished attempt. */
struct relay_outcome {
	const struct relay_result *res;
	uint32_t rcpt; /* index in the record */
	char diag[SMTP_CLIENT_TEXT_MAX + 64];
};

static void relay_diagnostic(const struct relay_result *res, char *out, size_t outlen)
{
	const char *text = res->text ? res->text : "";
	if (res->local)
		snprintf(out, outlen, "X-Sluice; %s", text);
	else
		snprintf(out, outlen, "smtp; %u %s %s", res->code, res->enh, text);
}

/* A notice went into the spool: once it is durable its recipients'
 * journal entries follow and it goes to delivery. */
static int relay_notice_wait_add(struct relay *r, uint64_t lsn, const struct spool_ref *notice,
				 const struct spool_ref *orig, enum spool_rcpt_state state,
				 const struct relay_outcome *o, uint32_t n)
{
	struct relay_notice_wait *w = malloc(sizeof(*w) + n * sizeof(w->rcpts[0]));
	if (!w)
		return -ENOMEM;
	w->next = NULL;
	w->lsn = lsn;
	w->notice = *notice;
	w->orig = *orig;
	w->state = state;
	w->n = n;
	for (uint32_t i = 0; i < n; i++)
		w->rcpts[i] = o[i].rcpt;
	if (r->nw_tail)
		r->nw_tail->next = w;
	else
		r->nw_head = w;
	r->nw_tail = w;
	return 0;
}

/*
 * Compose one notice of kind for the outcomes o[0..n) of the message
 * (env, body) and append it to the spool.  Returns 0 (the journal entries
 * follow once it is durable) or -errno (nothing queued).
 */
static int relay_notice(struct relay *r, struct relay_job *job, enum dsn_action kind,
			const struct relay_outcome *o, uint32_t n, const struct envelope *env,
			const uint8_t *body, size_t body_len, const char *remote, const char *qid)
{
	struct dsn_rcpt *dr = calloc(n, sizeof(*dr));
	if (!dr)
		return -ENOMEM;
	int64_t now = time(NULL);
	char status[n][16];
	for (uint32_t i = 0; i < n; i++) {
		dr[i].rcpt = o[i].rcpt;
		dr[i].action = kind;
		/* A failure reports a permanent class; an expired 4xx keeps
		 * its detail under 5.4.7 (delivery time expired). */
		const char *enh = o[i].res->enh;
		if (kind == DSN_ACTION_FAILED && enh[0] != '5')
			enh = "5.4.7";
		else if (kind == DSN_ACTION_DELAYED && enh[0] != '4')
			enh = "4.0.0";
		else if ((kind == DSN_ACTION_DELIVERED || kind == DSN_ACTION_RELAYED) &&
			 enh[0] != '2')
			enh = "2.0.0";
		snprintf(status[i], sizeof(status[i]), "%s", enh);
		dr[i].status = status[i];
		dr[i].diagnostic = o[i].diag;
		dr[i].remote_mta = o[i].res->local ? NULL : remote;
		dr[i].last_attempt = now;
		if (kind == DSN_ACTION_DELAYED)
			dr[i].will_retry_until = job->arrival + r->cfg.retry.max_lifetime_s;
	}
	struct dsn_report rep = {
	    .reporting_mta = r->hostname,
	    .qid = qid,
	    .env = env,
	    .body = body,
	    .body_len = body_len,
	    .rcpts = dr,
	    .nrcpts = n,
	    .now = now,
	    .unique = ++r->notice_seq ^ ((uint64_t)relay_random(r) << 32),
	};
	struct envelope notice = {0};
	uint8_t *msg = NULL;
	size_t msg_len = 0;
	int rc = dsn_compose(&rep, &notice, &msg, &msg_len);
	free(dr);
	if (rc < 0) {
		log_err("%s notice: cannot compose: %s", qid, strerror(-rc));
		return rc;
	}
	struct spool_ref nref;
	char nqid[SPOOL_QID_LEN + 1];
	uint64_t lsn;
	rc = spool_append(r->w, &notice, msg, msg_len, &nref, nqid, &lsn);
	envelope_free(&notice);
	free(msg);
	if (rc < 0) {
		log_warn("%s notice: cannot queue: %s (tried again later)", qid, strerror(-rc));
		return rc;
	}
	/* PENDING: nothing to journal once it is durable (success). */
	enum spool_rcpt_state then = kind == DSN_ACTION_FAILED	  ? SPOOL_RCPT_FAILED
				     : kind == DSN_ACTION_DELAYED ? SPOOL_RCPT_DELAY_NOTICED
								  : SPOOL_RCPT_PENDING;
	rc = relay_notice_wait_add(r, lsn, &nref, &job->ref, then, o, n);
	if (rc < 0) {
		/* Queued but we cannot follow it: delivered after a restart,
		 * and the recipients noticed again then. */
		log_err("%s notice %s: out of memory", qid, nqid);
		return 0;
	}
	log_info("%s notice=%s kind=%s rcpts=%u to=<%s>", qid, nqid, dsn_action_str(kind), n,
		 env->sender);
	relay_count(&r->st_notices, 1);
	return 0;
}

void relay_notice_poll(struct relay *r)
{
	if (!r->nw_head || !r->w)
		return;
	uint64_t durable = spool_writer_durable(r->w);
	uint64_t failed = spool_writer_failed(r->w);
	struct relay_notice_wait *done = NULL, **tail = &done;
	while (r->nw_head && (r->nw_head->lsn <= durable || r->nw_head->lsn <= failed)) {
		struct relay_notice_wait *w = r->nw_head;
		r->nw_head = w->next;
		if (!r->nw_head)
			r->nw_tail = NULL;
		char qid[SPOOL_QID_LEN + 1];
		spool_qid_format(&w->orig, qid);
		if (w->lsn > durable) {
			/* The notice was lost to a sync error: its recipients
			 * stay pending and are noticed after a restart. */
			log_err("%s notice lost to a spool sync error; rcpts stay queued", qid);
			free(w);
			continue;
		}
		for (uint32_t i = 0; i < w->n && w->state != SPOOL_RCPT_PENDING; i++)
			relay_journal(r, &w->orig, w->rcpts[i], w->state, qid);
		w->next = NULL;
		*tail = w;
		tail = &w->next;
	}
	/* The journal first: once a notice can reach the sender, a crash
	 * must not make us send it again. */
	relay_journal_sync(r);
	while (done) {
		struct relay_notice_wait *w = done;
		done = w->next;
		if (r->notice)
			r->notice(r->notice_arg, &w->notice, 1);
		free(w);
	}
}

/* ---- finishing an attempt ---- */

struct relay_sorted {
	struct relay_outcome *failed, *delayed, *success;
	uint32_t nfailed, ndelayed, nsuccess;
	enum dsn_action say; /* DELIVERED or RELAYED, for success */
	uint32_t *keep; /* job->rcpts entries still deferred */
	uint32_t nkeep;
	uint32_t ndelivered;
	bool logged_job; /* the one deferral line of a job without its record */
};

/* Put each recipient in its pile: delivered (journalled now), failed,
 * deferred (and due a delay notice). */
static void relay_sort(struct relay *r, struct relay_job *job, const struct relay_result *res,
		       const struct relay_result *all, const struct envelope *env,
		       struct relay_sorted *s, const char *qid, const char *remote)
{
	int64_t now = time(NULL);
	bool expired = retry_expired(&r->cfg.retry, job->arrival, now);
	bool delay_due = retry_delay_notice_due(&r->cfg.retry, job->arrival, now);
	for (uint32_t i = 0; i < job->nrcpts; i++) {
		uint32_t v = job->rcpts[i], idx = RELAY_RCPT_INDEX(v);
		const struct relay_result *x = res && res[i].code ? &res[i] : all;
		const char *addr = env && idx < env->nrcpts ? env->rcpts[idx].addr : NULL;
		unsigned cls = x->code / 100;
		if (cls == 2) {
			if (!(job->flags & RELAY_JOB_JOURNALLED)) {
				log_info("%s delivered to=<%s> relay=%s status=\"%u %s %s\"", qid,
					 addr ? addr : "?", remote ? remote : "-", x->code, x->enh,
					 x->text ? x->text : "");
				relay_journal(r, &job->ref, idx, SPOOL_RCPT_DELIVERED, qid);
				s->ndelivered++;
			}
			enum dsn_action say = job->flags & RELAY_JOB_SAY_DELIVERED
						  ? DSN_ACTION_DELIVERED
						  : DSN_ACTION_RELAYED;
			if ((job->flags & (RELAY_JOB_SAY_DELIVERED | RELAY_JOB_SAY_RELAYED)) && env &&
			    dsn_wanted(env, idx, say)) {
				struct relay_outcome *o = &s->success[s->nsuccess++];
				o->res = x;
				o->rcpt = idx;
				relay_diagnostic(x, o->diag, sizeof(o->diag));
				s->say = say;
			}
			continue;
		}
		if (cls == 5 || expired) {
			log_info("%s failed to=<%s> relay=%s status=\"%u %s %s\"%s", qid,
				 addr ? addr : "?",
				 remote ? remote : "-", x->code, x->enh, x->text ? x->text : "",
				 cls == 5 ? "" : " reason=lifetime-expired");
			struct relay_outcome *o = &s->failed[s->nfailed++];
			o->res = x;
			o->rcpt = idx;
			relay_diagnostic(x, o->diag, sizeof(o->diag));
			continue;
		}
		/* Without the record (a deferral that sends nothing, such as a
		 * destination down) one line per job says it: the addresses
		 * were logged with the queue id when they were queued. */
		if (addr)
			log_info("%s deferred to=<%s> relay=%s tries=%u status=\"%u %s %s\"", qid,
				 addr, remote ? remote : "-", job->tries + 1, x->code, x->enh,
				 x->text ? x->text : "");
		else if (!s->logged_job) {
			s->logged_job = true;
			log_info("%s deferred rcpts=%u relay=%s tries=%u status=\"%u %s %s\"", qid,
				 job->nrcpts, remote ? remote : "-", job->tries + 1, x->code, x->enh,
				 x->text ? x->text : "");
		}
		if (delay_due && !(v & RELAY_RCPT_NOTICED)) {
			struct relay_outcome *o = &s->delayed[s->ndelayed++];
			o->res = x;
			o->rcpt = idx;
			relay_diagnostic(x, o->diag, sizeof(o->diag));
			job->rcpts[i] |= RELAY_RCPT_NOTICED;
		}
		s->keep[s->nkeep++] = job->rcpts[i];
	}
}

/* Recipients that want no notice are journalled at once; the rest stay in
 * o[0..*n) (compacted). */
static void relay_drop_unwanted(struct relay *r, struct relay_job *job, const struct envelope *env,
				enum dsn_action kind, struct relay_outcome *o, uint32_t *n,
				const char *qid)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < *n; i++) {
		if (dsn_wanted(env, o[i].rcpt, kind)) {
			o[k++] = o[i];
			continue;
		}
		if (kind == DSN_ACTION_FAILED)
			relay_journal(r, &job->ref, o[i].rcpt, SPOOL_RCPT_FAILED, qid);
		else
			relay_journal(r, &job->ref, o[i].rcpt, SPOOL_RCPT_DELAY_NOTICED, qid);
	}
	*n = k;
}

/* The failed recipients whose notice could not be queued stay deferred:
 * the next attempt decides again. */
static void relay_keep_failed(struct relay_sorted *s, const struct relay_outcome *o, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		s->keep[s->nkeep++] = o[i].rcpt;
}

/* Will this attempt send a notice (so the original must be read)? */
static bool relay_needs_record(struct relay *r, const struct relay_job *job,
			       const struct relay_result *res, const struct relay_result *all)
{
	int64_t now = time(NULL);
	if (retry_expired(&r->cfg.retry, job->arrival, now) || (job->flags & RELAY_JOB_JOURNALLED))
		return true;
	bool delay_due = retry_delay_notice_due(&r->cfg.retry, job->arrival, now);
	for (uint32_t i = 0; i < job->nrcpts; i++) {
		const struct relay_result *x = res && res[i].code ? &res[i] : all;
		if (x->code / 100 == 5)
			return true;
		if (x->code / 100 == 4 && delay_due && !(job->rcpts[i] & RELAY_RCPT_NOTICED))
			return true;
	}
	return false;
}

static void relay_send_notices(struct relay *r, struct relay_job *job, struct relay_sorted *s,
			       const struct envelope *env, const uint8_t *body, size_t body_len,
			       const char *remote, const char *qid)
{
	relay_drop_unwanted(r, job, env, DSN_ACTION_FAILED, s->failed, &s->nfailed, qid);
	relay_drop_unwanted(r, job, env, DSN_ACTION_DELAYED, s->delayed, &s->ndelayed, qid);
	if (s->nfailed && relay_notice(r, job, DSN_ACTION_FAILED, s->failed, s->nfailed, env,
				       body, body_len, remote, qid) < 0)
		relay_keep_failed(s, s->failed, s->nfailed);
	if (s->ndelayed)
		relay_notice(r, job, DSN_ACTION_DELAYED, s->delayed, s->ndelayed, env, body,
			     body_len, remote, qid);
	/* Best effort: the 2xx is journalled already, and a lost success
	 * notice beats a message delivered twice. */
	if (s->nsuccess)
		relay_notice(r, job, s->say, s->success, s->nsuccess, env, body, body_len, remote,
			     qid);
}

void relay_job_finish(struct relay *r, struct relay_job *job, const struct relay_result *res,
		      const struct relay_result *all, struct envelope *env, const uint8_t *body,
		      size_t body_len, const char *remote)
{
	char qid[SPOOL_QID_LEN + 1];
	spool_qid_format(&job->ref, qid);
	uint32_t n = job->nrcpts;
	struct relay_outcome *o = malloc(3 * n * sizeof(*o));
	uint32_t *keep = malloc(n * sizeof(*keep));
	if (!o || !keep) {
		free(o);
		free(keep);
		log_err("%s relay: out of memory, stays queued until restart", qid);
		relay_job_free(r, job);
		return;
	}
	struct envelope loaded = {0};
	uint8_t *lbody = NULL;
	if (!env && relay_needs_record(r, job, res, all)) {
		int rc = spool_read(r->sp, &job->ref, &loaded, &lbody, &body_len);
		if (rc == -EBADMSG || rc == -ENOENT) {
			/* The bytes are lost: no retry or notice can bring
			 * them back.  Fail them so the segment is reclaimed. */
			log_err("%s relay: record unreadable (%s), recipients failed without "
				"notice",
				qid, strerror(-rc));
			for (uint32_t i = 0; i < job->nrcpts; i++)
				relay_journal(r, &job->ref, RELAY_RCPT_INDEX(job->rcpts[i]),
					      SPOOL_RCPT_FAILED, qid);
			relay_count(&r->st_failed, job->nrcpts);
			free(o);
			free(keep);
			relay_job_free(r, job);
			return;
		}
		if (rc < 0) {
			/* Without the original there is no notice: try again
			 * later rather than fail silently. */
			log_err("%s relay: cannot read the record: %s", qid, strerror(-rc));
			all = &(struct relay_result){.code = 451, .enh = "4.3.0", .local = true};
			res = NULL;
		} else {
			env = &loaded;
			body = lbody;
		}
	}
	struct relay_sorted s = {.failed = o, .delayed = o + n, .success = o + 2 * n, .keep = keep};
	relay_sort(r, job, res, all, env, &s, qid, remote);
	relay_count(&r->st_delivered, s.ndelivered);
	relay_count(&r->st_failed, s.nfailed);
	if (env)
		relay_send_notices(r, job, &s, env, body, body_len, remote, qid);
	else
		relay_keep_failed(&s, s.failed, s.nfailed);
	free(o);
	if (env == &loaded)
		envelope_free(&loaded);
	free(lbody);

	relay_count(&r->st_queued_rcpts, (int64_t)s.nkeep - (int64_t)job->nrcpts);
	if (s.nkeep == 0) {
		job->nrcpts = 0;
		free(keep);
		relay_job_free(r, job);
		return;
	}
	relay_count(&r->st_deferred, s.nkeep);
	memcpy(job->rcpts, keep, s.nkeep * sizeof(keep[0]));
	job->nrcpts = s.nkeep;
	free(keep);
	job->tries++;
	job->flags = 0;
	bool noticed = true;
	for (uint32_t i = 0; i < job->nrcpts; i++)
		noticed = noticed && (job->rcpts[i] & RELAY_RCPT_NOTICED);
	int64_t wait = retry_delay_ms(&r->cfg.retry, job->tries, job->arrival, time(NULL),
				      noticed, relay_random(r));
	job->retry_at = relay_now_ms() + wait;
	relay_heap_push(r, job);
}
