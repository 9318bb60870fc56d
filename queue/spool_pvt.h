/*
 * spool_pvt: the spool's internals, shared by queue/spool*.c and by the
 * spool's own tests and fuzz harness.  Never included from another module.
 *
 * Record layout (all little-endian), SPOOL_REC_FIXED bytes then strings:
 *	 0 u32 magic "SLR1"
 *	 4 u32 total length (header + fields + body)
 *	 8 u32 CRC32C of bytes [12, total)
 *	12 u8  version (SPOOL_REC_VERSION)
 *	13 u8  ret (enum envelope_ret)
 *	14 u8  body (enum envelope_body)
 *	15 u8  flags (SPOOL_REC_F_*)
 *	16 u8  protocol (envelope_protocol_id)
 *	17 u8  reserved[3], zero
 *	20 u64 size_hint
 *	28 i64 arrival
 *	36 u32 nrcpts (>= 1)
 *	40 u32 header length = offset of the body
 *	44 str sender, str envid, str helo, str client_addr
 *	   nrcpts x { u8 notify, str addr, str orcpt }
 *	   body (the rest)
 * str = u16 length (SPOOL_STR_NULL for NULL) then the bytes, no NUL, no
 * terminator.  The parser is strict: any field that would not re-serialise
 * to the same bytes is refused, so parse(build(x)) == x and
 * build(parse(bytes)) == bytes.
 *
 * Journal entry (SPOOL_JNL_ENTRY bytes, little-endian):
 *	u32 record offset | u32 rcpt index | u8 state | u8 zero[3] | u32 CRC32C
 *	of the first 12 bytes
 */
#ifndef SLUICE_SPOOL_PVT_H
#define SLUICE_SPOOL_PVT_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/envelope.h"
#include "queue/spool.h"

#define SPOOL_MAGIC 0x31524C53u /* "SLR1" read as a little-endian u32 */
#define SPOOL_REC_VERSION 1
#define SPOOL_REC_FIXED 44		   /* bytes before the first string */
#define SPOOL_REC_F_SMTPUTF8 0x01	   /* envelope.smtputf8 */
#define SPOOL_STR_NULL 0xFFFFu		   /* str length meaning NULL */
#define SPOOL_STR_MAX 0xFFFEu		   /* longest string a record holds */
#define SPOOL_JNL_ENTRY 16		   /* journal entry size */
#define SPOOL_HDR_STACK 2048		   /* header buffer on the stack up to this */
#define SPOOL_IDS_FILE "next-id"	   /* segment id high-water mark (decimal) */
#define SPOOL_IDS_RESERVE 4096		   /* ids reserved per write of SPOOL_IDS_FILE */
#define SPOOL_SPACE_CHECK_NS 1000000000ull /* statvfs about once a second */

/* Little-endian helpers (the record format is fixed little-endian). */
static inline void spool_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void spool_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void spool_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t spool_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t spool_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t spool_get64(const uint8_t *p)
{
	return (uint64_t)spool_get32(p) | (uint64_t)spool_get32(p + 4) << 32;
}

/*
 * One segment file pair.  Lives in sp->segs (sorted by id, guarded by
 * sp->seg_lock) from creation or recovery until reclaimed.  Only
 * journal code, reclamation and the owning writer touch it; the committer
 * never does (it works on fds and ids only), so reclaiming a segment that a
 * retired fd still names is safe.
 */
struct spool_seg {
	uint32_t id;
	_Atomic int64_t live;  /* recipients not yet durably final */
	_Atomic uint64_t bytes; /* segment file size, for the spool's max_size */
	_Atomic bool sealed;   /* no writer appends any more: reclaimable at live 0 */
	pthread_mutex_t jlock; /* guards the j* fields */
	int jfd;	       /* journal fd (O_APPEND), -1 until the first entry */
	uint64_t jsize;	       /* journal bytes written (to undo a short write) */
	uint32_t jcount;       /* entries written since the last journal sync */
	uint32_t jfinal;       /* of those, final ones (DELIVERED, FAILED) */
	bool jcreated;	       /* journal file created since the last dir fsync */
};

/* A segment fd the writer has moved past (roll or close): the committer
 * syncs it once more, then closes it. */
struct spool_retired {
	int fd;
	uint32_t seg;	   /* segment id, for the sticky-failure check */
	uint64_t end_lsn;  /* writer LSN when retired: its bytes all end before */
	bool need_dirsync; /* its directory entry was never fsynced */
};

struct spool_writer {
	struct spool *sp;
	unsigned worker;
	spool_wake_fn *wake;
	void *arg;
	struct spool_writer *next; /* sp->writers, never unlinked before spool_close */

	/* Worker-owned; seg/fd/cur_need_dirsync/retired change under lock. */
	struct spool_seg *seg; /* current segment, NULL before the first append */
	int fd;		       /* its fd, -1 if none */
	uint64_t off;	       /* its size = next record offset */
	bool broken;	       /* a write failed on it: roll before the next append */
	bool closed;	       /* spool_writer_close() done */
	bool over_max_size;    /* may pass cfg.max_size (notices: they drain the spool) */
	bool cur_need_dirsync; /* current segment's directory entry not yet fsynced */
	uint64_t cur_start;    /* writer LSN where the current segment's records begin */
	pthread_mutex_t lock;  /* seg, fd, cur_need_dirsync, retired vs the committer */
	struct spool_retired *retired;
	size_t nretired, retired_cap;

	/* Published positions. */
	_Atomic uint64_t appended;    /* LSN past the last appended record (worker) */
	_Atomic uint64_t durable;     /* LSN known durable (committer) */
	_Atomic uint64_t failed;      /* highest LSN lost to a sync error (committer) */
	_Atomic uint64_t fail_floor;  /* durable when the unseen failure happened */
	_Atomic uint64_t failed_seen; /* failed value the worker has acted on (worker) */
	_Atomic bool need_roll;	      /* sync failed: next append opens a new segment */

	/* Committer-owned. */
	uint64_t synced;  /* LSN covered by the last batch (durable or failed) */
	uint32_t bad_seg; /* segment whose sync failed: every later batch on it fails */
	bool has_bad_seg;
	/* This batch's snapshot (committer-owned, taken under lock). */
	uint64_t c_snap;
	uint64_t c_cur_start;
	int c_fd;
	uint32_t c_seg;
	bool c_need_dirsync, c_dir_needed;
	struct spool_retired *c_retired; /* committer's copy of retired */
	size_t c_nretired, c_retired_cap;
};

struct spool {
	struct spool_cfg cfg; /* dir copied */
	char *dir;
	int dirfd; /* O_DIRECTORY, flock()ed: one process per spool */

	_Atomic uint32_t next_id;  /* next segment id */
	_Atomic uint32_t id_limit; /* ids below this are covered by SPOOL_IDS_FILE */
	pthread_mutex_t ids_lock;  /* writes of SPOOL_IDS_FILE */
	_Atomic bool space_ok;

	pthread_rwlock_t seg_lock; /* segs: read for lookups, write to add/remove */
	struct spool_seg **segs;   /* sorted by id */
	size_t nsegs, segs_cap;

	pthread_mutex_t jsync_lock; /* one spool_journal_sync at a time */

	pthread_mutex_t lock; /* writers list, committer wait */
	pthread_cond_t cond;
	struct spool_writer *writers;
	_Atomic unsigned pending; /* appends (and closes) since the committer's last batch */
	bool started, stop;
	pthread_t committer;
	uint64_t next_space_check; /* monotonic ns; committer only */

	_Atomic uint64_t st_appended, st_syncs, st_segments, st_reclaimed;
	_Atomic uint64_t bytes; /* sum of the segments' bytes (max_size) */
};

/* spool_record.c */

/* Header (magic..strings) length for env into *len.  Returns 0, -EINVAL
 * (no recipients, NULL address) or -E2BIG (a string over SPOOL_STR_MAX). */
int spool_record_hdr_len(const struct envelope *env, size_t *len);

/* Write the header for env and body into hdr (hdr_len bytes, from
 * spool_record_hdr_len), with the total length and the CRC over the fields
 * and the body.  Caller checked hdr_len + body_len <= UINT32_MAX. */
void spool_record_build(const struct envelope *env, const void *body, size_t body_len, uint8_t *hdr,
			size_t hdr_len);

/*
 * Parse a whole record of len bytes: magic, total length == len, CRC,
 * fields.  Fills env (caller envelope_free()s it, also on error: it is left
 * zeroed then) and points *body into rec.  Never reads outside
 * [rec, rec + len).  Returns 0, -EBADMSG or -ENOMEM.
 */
int spool_record_parse(const uint8_t *rec, size_t len, struct envelope *env, const uint8_t **body,
		       size_t *body_len);

/* Parse a queue id (exactly SPOOL_QID_LEN upper-case hex digits) into
 * ref->seg/offset (len is left alone).  Returns 0 or -EINVAL. */
int spool_qid_parse(const char *qid, struct spool_ref *ref);

/* Build a journal entry. */
void spool_jnl_entry_build(uint8_t e[SPOOL_JNL_ENTRY], uint32_t offset, uint32_t rcpt,
			   uint8_t state);
/* Check a journal entry; 0 and the fields, or -EBADMSG. */
int spool_jnl_entry_parse(const uint8_t e[SPOOL_JNL_ENTRY], uint32_t *offset, uint32_t *rcpt,
			  uint8_t *state);

/* spool.c */
/* Parse "seg-<16 hex>.dat|jnl": 0, -EINVAL (not ours), -ERANGE (id > 32 bit). */
int spool_name_parse(const char *name, uint32_t *id, bool *is_jnl);
/* Make ids below from + SPOOL_IDS_RESERVE durable in SPOOL_IDS_FILE. */
int spool_ids_reserve(struct spool *sp, uint32_t from);
void spool_seg_name(char *buf, size_t len, uint32_t id, const char *ext);
int spool_dir_sync(struct spool *sp);
/* Open the spool directory for readdir (closedir when done); NULL with
 * *err = -errno on failure. */
DIR *spool_dir_open(struct spool *sp, int *err);
struct spool_seg *spool_seg_new(uint32_t id, int64_t live, bool sealed);
int spool_seg_insert(struct spool *sp, struct spool_seg *seg);
struct spool_seg *spool_seg_find_locked(struct spool *sp, uint32_t id);
void spool_seg_free(struct spool_seg *seg);
uint64_t spool_now_ns(void);

/* spool_commit.c */
int spool_commit_start(struct spool *sp);
void spool_commit_stop(struct spool *sp);
/* One group commit over every writer (committer thread, or spool_close). */
void spool_commit_batch(struct spool *sp);
/* statvfs against min_free; sets sp->space_ok. */
void spool_space_check(struct spool *sp);
/* A worker appended (or retired an fd): tell the committer. */
void spool_commit_kick(struct spool *sp);

/* spool_journal.c */
/* Unlink sealed segments with live 0 (caller holds jsync_lock). */
int spool_reclaim_locked(struct spool *sp);

#endif
