/*
 * smtp_client_tutil: the scripted server side of the smtp_client unit
 * tests.  A struct tc holds one engine and logs its results one line
 * each, "R<k> <code> <enh> <stage>[ L]" for rcpt_result (L: local) and
 * "D" for msg_done; expect_* compare what it wrote and logged with what a
 * test wants and print both when they differ.
 */
#ifndef SLUICE_TEST_SMTP_CLIENT_TUTIL_H
#define SLUICE_TEST_SMTP_CLIENT_TUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"
#include "control/smtp_client.h"

#define HELO "client.test"
#define MAXR 16
#define LOG_MAX 16384

/* EHLO replies. */
#define EHLO_ALL                                                                                   \
	"250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"                \
	"250-SMTPUTF8\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_PIPE "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define EHLO_LOCK "250-mx.test\r\n250 8BITMIME\r\n"

enum feed_mode {
	FEED_WHOLE, /* each scripted reply in one feed */
	FEED_BYTES, /* one octet per feed */
	FEED_SPLIT, /* two feeds, cut at t->split */
};

/* One engine plus everything it told us. */
struct tc {
	struct smtp_client_cfg cfg;
	struct smtp_client *c;
	enum feed_mode mode;
	size_t split;	    /* FEED_SPLIT: octets in the first feed */
	size_t write_chunk; /* octets reported written per output_done (0: all) */
	char log[LOG_MAX];  /* results since the last expect_log */
	size_t log_len;
	char full[LOG_MAX]; /* every result of the session */
	size_t full_len;
	struct smtp_client_result res[MAXR]; /* last result per k (text: texts[k]) */
	char texts[MAXR][SMTP_CLIENT_TEXT_MAX + 1];
	unsigned nres[MAXR];	       /* results per k in the current message */
	uint32_t nrcpts;	       /* recipients of the current message */
	bool in_msg;		       /* a send was accepted and msg_done has not run */
	unsigned ndone;		       /* msg_done calls */
	void (*on_done)(struct tc *t); /* run from msg_done */
	void *user;		       /* for on_done */
	char *out;		       /* the last t_out() */
	size_t out_len;
	char *wire; /* every octet written this session */
	size_t wire_len, wire_cap;
	size_t max_slice; /* largest single smtp_client_output() */
	unsigned nslices; /* smtp_client_output() calls that returned octets */
};

/* What the split runner is doing, for failure messages. */
extern char g_ctx[64];
/* The callbacks every struct tc engine gets (arg: the struct tc). */
extern const struct smtp_client_ops tc_ops;

struct mf {
	struct envelope env;
	uint32_t idx[MAXR];
	struct smtp_client_msg m;
};

/* Recipient lists, NULL-terminated. */
extern const char *const R1[];
extern const char *const R2[];
extern const char *const R3[];
extern const char *const R4[];

#define BODY "Subject: t\r\n\r\nhello\r\n"
#define MAIL_S "MAIL FROM:<s@y.test>\r\n"
#define RCPT_A "RCPT TO:<a@x.test>\r\n"
#define RCPT_B "RCPT TO:<b@x.test>\r\n"
#define RCPT_C "RCPT TO:<c@x.test>\r\n"
#define RCPT_D "RCPT TO:<d@x.test>\r\n"

/* A new engine (helo "client.test") with the given setup; fails the test
 * on error.  t_new: SMTP, pipelining allowed, RFC timeouts, whole feeds. */
struct tc *t_new_mode(enum smtp_client_proto proto, bool no_pipe,
		      const struct smtp_client_timeouts *to, enum feed_mode mode, size_t split);
struct tc *t_new(enum smtp_client_proto proto);
void t_free(struct tc *t);

/* Feed server octets as t->mode cuts them; the first error, or 0.
 * feed_ok fails the test unless it was 0. */
int t_feedn(struct tc *t, const char *s, size_t n);
int t_feed(struct tc *t, const char *s);
void feed_ok(struct tc *t, const char *s);

/* Write all the engine offers (t->write_chunk at a time) into t->out. */
void t_out(struct tc *t);

/* Fail, printing got and want from near the first difference. */
void expect_bytes(const char *what, const char *got, size_t glen, const char *want, size_t wlen);
/* t_out(), then compare. */
void expect_out(struct tc *t, const char *want);
/* Compare the results logged since the last call, and forget them. */
void expect_log(struct tc *t, const char *want);
void expect_state(struct tc *t, enum smtp_client_state want);
void expect_wait(struct tc *t, unsigned want);
/* The text of the last result for recipient k. */
void expect_text(struct tc *t, uint32_t k, const char *want);

/* 220, EHLO (LHLO), hello_reply: READY with nothing left to write. */
void t_hello(struct tc *t, const char *hello_reply);
struct tc *t_open(enum smtp_client_proto proto, const char *hello_reply);

/* A message from sender to rcpts (msg index k = env index k). */
void mf_init(struct mf *f, const char *sender, const char *const *rcpts, const char *body);
void mf_free(struct mf *f);

/* smtp_client_send with the bookkeeping the callbacks check; t_send fails
 * the test unless it returned 0. */
int t_send_rc(struct tc *t, const struct smtp_client_msg *m);
void t_send(struct tc *t, const struct smtp_client_msg *m);

/* The tests in test_smtp_client_msg.c, as one cmocka group. */
int test_smtp_client_msg_run(void);

#endif
