/*
 * smtp_engine_pvt: the session struct and the helpers shared by the
 * smtp_engine_*.c files.  Never included from outside dataplane/.
 *
 *	smtp_engine.c       lifecycle, feed loop, line and body parsers, output
 *	smtp_engine_cmd.c   the commands[] table: check and proceed per verb
 *	smtp_engine_addr.c  RFC 5321 path/mailbox syntax, ESMTP params, xtext
 */
#ifndef SLUICE_SMTP_ENGINE_PVT_H
#define SLUICE_SMTP_ENGINE_PVT_H

#include <stdarg.h>

#include "dataplane/smtp_engine.h"

/* Session states (OpenSMTPD-style: one enum, one *_str()). */
enum smtp_state {
	SMTP_STATE_INIT = 0, /* created, greeting not queued yet */
	SMTP_STATE_HELO,     /* greeted, waiting for HELO/EHLO */
	SMTP_STATE_READY,    /* HELO/EHLO done, no transaction */
	SMTP_STATE_RCPT,     /* MAIL accepted: RCPT, DATA or BDAT next */
	SMTP_STATE_DATA,     /* reading a DATA body up to CRLF.CRLF */
	SMTP_STATE_BDAT,     /* between the BDAT chunks of a transaction */
	SMTP_STATE_CHUNK,    /* reading the octets of one BDAT chunk */
	SMTP_STATE_MESSAGE,  /* message complete, paused on SMTP_EV_MESSAGE */
	SMTP_STATE_CLOSED,   /* QUIT, 421 or refused: consumes nothing more */
};

/* Byte-level sub-states (nginx sw_*); only meaningful in the states named. */
enum smtp_sw {
	SW_LINE = 0,	/* command line: collecting octets */
	SW_LINE_CR,	/* command line: saw CR, LF ends the line */
	SW_DATA_BOL,	/* DATA: at the beginning of a line */
	SW_DATA_TEXT,	/* DATA: inside a line */
	SW_DATA_CR,	/* DATA: saw CR inside a line */
	SW_DATA_DOT,	/* DATA: saw "." at the beginning of a line */
	SW_DATA_DOT_CR, /* DATA: saw ".CR" at the beginning of a line */
};

/* Per-line flags, reset at each line end. */
#define SMTP_LF_TOOLONG 0x01 /* more than SMTP_LINE_MAX - 2 octets: rest discarded */
#define SMTP_LF_BARE_LF 0x02 /* the line was ended by a bare LF */
#define SMTP_LF_BARE_CR 0x04 /* a CR not followed by LF inside the line */
#define SMTP_LF_NUL 0x08     /* a NUL octet inside the line */

/* Session flags. */
#define SMTP_SF_EHLO 0x01 /* the client said EHLO (extensions on) */
#define SMTP_SF_HELO 0x02 /* the client said HELO or EHLO */

/* Transaction flags, reset with the transaction. */
#define SMTP_TX_BDAT 0x01   /* BDAT chunks were taken: DATA is out of sequence */
#define SMTP_TX_BARE 0x02   /* bare CR or LF in the body (strict: refuse at the end) */
#define SMTP_TX_BIG 0x04    /* body over max_message_size: refuse at the end */
#define SMTP_TX_NOMEM 0x08  /* body buffer allocation failed: 451 at the end */
#define SMTP_TX_RAW_CR 0x10 /* BDAT: the last octet taken was a CR, LF decides */
#define SMTP_TX_LAST 0x20   /* the current chunk is BDAT ... LAST */
#define SMTP_TX_SKIP 0x40   /* the current chunk is refused (503): discard it */

/* Largest reply line we format, CRLF included. */
#define SMTP_REPLY_MAX 600

/*
 * One SMTP session.  Invariants: ev.type != SMTP_EV_NONE exactly while
 * paused; ev.addr/orcpt and pend_envid point into line[] and stay valid
 * until resume because nothing is parsed while paused; env.helo and
 * env.client_addr are borrowed from helo/client_addr during
 * SMTP_EV_MESSAGE only (never freed through env).
 */
struct smtp_engine {
	const struct smtp_engine_cfg *cfg; /* shared, read-only */
	uint8_t state;			   /* enum smtp_state */
	uint8_t sw;			   /* enum smtp_sw */
	uint8_t line_flags;		   /* SMTP_LF_* for the line being read */
	uint8_t sess_flags;		   /* SMTP_SF_* */
	uint8_t tx_flags;		   /* SMTP_TX_* */
	uint8_t chunk_ret;		   /* state after a refused chunk is discarded */
	uint16_t line_len;		   /* octets in line[], <= SMTP_LINE_MAX - 2 */
	uint32_t errors;		   /* client errors so far */
	uint64_t chunk_left;		   /* BDAT: octets of the chunk still to read */
	uint64_t chunk_size;		   /* BDAT: the announced size, for the reply */
	char *client_addr;		   /* peer address text, owned */
	char *helo;			   /* HELO/EHLO argument, owned, or NULL */
	uint8_t *out;			   /* pending replies (heap, freed when drained) */
	uint32_t out_len;		   /* bytes in out */
	uint32_t out_off;		   /* bytes of out already sent */
	uint32_t out_cap;		   /* allocated size of out */
	uint8_t *body;			   /* message body (heap, only during DATA/BDAT) */
	size_t body_len;		   /* bytes in body */
	size_t body_cap;		   /* allocated size of body */
	struct envelope env;		   /* the transaction's envelope */
	struct smtp_event ev;		   /* the pending event */
	uint64_t pend_size;		   /* MAIL paused: SIZE= */
	const char *pend_envid;		   /* MAIL paused: ENVID= (in line[]) or NULL */
	uint8_t pend_ret;		   /* MAIL paused: enum envelope_ret */
	uint8_t pend_body;		   /* MAIL paused: enum envelope_body */
	bool pend_utf8;			   /* MAIL paused: SMTPUTF8 */
	char line[SMTP_LINE_MAX];	   /* the command line, NUL-terminated */
};

const char *smtp_state_str(enum smtp_state s);

/* Output (smtp_engine.c). */
const char *smtp_engine_hostname(const struct smtp_engine *e);
void smtp_engine_reply(struct smtp_engine *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtp_engine_reply_raw(struct smtp_engine *e, const char *s, size_t n);
void smtp_engine_reply_error(struct smtp_engine *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtp_engine_error_count(struct smtp_engine *e);
void smtp_engine_close(struct smtp_engine *e);

/* Transaction (smtp_engine.c). */
void smtp_engine_tx_reset(struct smtp_engine *e);
void smtp_engine_data_begin(struct smtp_engine *e);
void smtp_engine_chunk_begin(struct smtp_engine *e, uint64_t size, bool last, bool skip);
void smtp_engine_message_done(struct smtp_engine *e);

/* Commands (smtp_engine_cmd.c): the line is complete and valid. */
void smtp_engine_cmd_dispatch(struct smtp_engine *e);

/* Syntax (smtp_engine_addr.c). */
#define SMTP_PATH_NULL_OK 0x01	  /* "<>" is accepted (reverse-path) */
#define SMTP_PATH_POSTMASTER 0x02 /* "<postmaster>" is accepted (forward-path) */
#define SMTP_PATH_UTF8 0x04	  /* SMTPUTF8: UTF-8 in local part and domain */

int smtp_engine_path_split(char *s, char **inner, char **rest);
int smtp_engine_path_check(char *inner, unsigned flags, char **mailbox, char **domain);
bool smtp_engine_xtext_valid(const char *s);
bool smtp_engine_param_value_valid(const char *s);
bool smtp_engine_keyword_valid(const char *s, size_t n);
int smtp_engine_parse_u64(const char *s, uint64_t *v);
char *smtp_engine_next_param(char **cursor);

#endif
