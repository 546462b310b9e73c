/* SPDX-License-Identifier: MIT */
/*
 * shmring/dump.h: decode and check a segment from its bytes alone (used by shmdump,
 * the tests and the fuzzers).
 *
 * Everything here is a pure function over a byte buffer: the whole segment file, a
 * copy of it, or a read-only mapping of a live segment. Nothing is trusted: the buffer
 * may be truncated, random, or rewritten by another process while it is read. Each
 * shared value is read once into a local, every offset and length is bounded against
 * the buffer before use, and a live ring whose indices move while they are read is
 * re-read a few times before an inconsistency is reported. No function here writes to
 * the buffer, makes a system call, allocates, or keeps state between calls, so any of
 * them can be fed arbitrary bytes (fuzz/) and called from any thread.
 *
 * Problems are named after the fields of layout.h and of the kind's control region
 * ("checksum", "ctrl_off", "parts[3].state", "spsc.head", ...), with the offending
 * value, so that an operator can find the byte that is wrong.
 *
 * Liveness of participants is not in the bytes (it is an OFD lock on the file): the
 * decoded participant table carries alive = -1 ("unknown") and the caller fills it in
 * with shmring_part_alive() when it has the segment open. Broadcast readers are not in
 * the table at all: whether any is live is the reader lock (bcast.h,
 * SHMRING_BCAST_READER_LOCK), tested by the caller likewise.
 */
#ifndef SHMRING_DUMP_H
#define SHMRING_DUMP_H

#include "layout.h"

#define SHMRING_DUMP_FIELD_MAX 32u   /* field names: "parts[47].state", "geo[3]" */
#define SHMRING_DUMP_MSG_MAX 160u
#define SHMRING_DUMP_PROBLEMS_MAX 64u /* kept in shmring_dump_info; more are counted */
#define SHMRING_DUMP_KV_MAX 24u

/* One problem found by the check. */
struct shmring_dump_problem {
	char field[SHMRING_DUMP_FIELD_MAX]; /* the field that is wrong */
	uint64_t value;                     /* the value found there */
	char msg[SHMRING_DUMP_MSG_MAX];     /* one sentence: what is wrong with it */
};

/* A decoded, kind-specific control word ("head", "tail", "closed"...). */
struct shmring_dump_kv {
	char key[SHMRING_DUMP_FIELD_MAX];
	uint64_t val;
};

/* One slot of the participant table as read (each field read once). */
struct shmring_dump_part {
	uint32_t slot;
	uint32_t state; /* enum shmring_part_state */
	uint32_t role;  /* enum shmring_role */
	int32_t pid;
	uint32_t gen;
	uint64_t start_time;
	uint64_t joined_ns;
	uint64_t kind_data[4];
	int alive;      /* 1 live, 0 dead, -1 unknown: filled in by the caller */
};

struct shmring_dump_stats {
	uint64_t msgs, bytes, wake_syscalls, sleeps, drops, laps, abandoned, peer_deaths,
		timeouts;
};

/* Everything shmdump shows, decoded from one snapshot of the bytes. */
struct shmring_dump_info {
	uint64_t file_size;     /* the buffer's length */
	int is_segment;         /* magic and layout version recognised */
	/* the header as read */
	uint64_t magic;
	uint32_t layout_version, kind, flags, hdr_size;
	uint64_t total_size, created_ns;
	int32_t creator_pid;
	uint32_t max_parts;
	uint64_t parts_off, ctrl_off, ctrl_size, data_off, data_size;
	uint64_t geo[SHMRING_GEO_WORDS];
	char name[SHMRING_NAME_MAX + 1]; /* NUL terminated, control bytes as '?'; other
					  * bytes as written (UTF-8, or not: any bytes) */
	uint64_t reserved[4];   /* the header's reserved words (must be 0) */
	uint64_t checksum;      /* as stored */
	uint64_t checksum_calc; /* as computed over the bytes */
	struct shmring_dump_stats stats; /* the header's; for a broadcast segment plus the
					  * reader page's slow-path counters (readers count
					  * their laps, sleeps and timeouts there) */
	/* participant slots that are not FREE (slot order) */
	uint32_t nparts;
	struct shmring_dump_part parts[SHMRING_MAX_PARTS];
	/* the kind's view: capacity and fill in its unit, and its control words */
	const char *kind_name;  /* "spsc", "mpmc", "pool", "bcast" or "unknown" */
	const char *unit;       /* "bytes", "slots", "frames" or "" when not decoded */
	uint64_t capacity;
	uint64_t fill;
	int kind_decoded;       /* 1 if this library knows the kind's control region */
	uint32_t nkv;
	struct shmring_dump_kv kv[SHMRING_DUMP_KV_MAX];
	/* the check's verdict */
	uint32_t nproblems;     /* all problems found (may exceed the ones kept) */
	struct shmring_dump_problem problems[SHMRING_DUMP_PROBLEMS_MAX];
};

/* One pending record (SPSC), slot (MPMC), frame (pool) or slot (bcast). */
struct shmring_dump_record {
	uint64_t index;         /* spsc: n-th pending record; mpmc: position; pool: frame
				 * sequence; bcast: record number */
	uint64_t offset;        /* byte offset of the payload in the buffer */
	uint64_t len;           /* payload length as stored, bounded by the buffer */
	const uint8_t *payload; /* into the buffer; len bytes are within it */
	uint32_t flags;         /* kind-specific tag: spsc header bits 32-63 (user type in
				 * the low 16), mpmc state-word owner tag, pool buffer
				 * index, bcast 0 */
	int checksum_ok;        /* 1 verifies, 0 does not, -1 the kind has no checksum */
};

/*
 * Check a segment held in buf[0, len) (len is the file size). Calls problem() once for
 * each problem found, in layout order, and never for a consistent segment.
 * Concurrency: pure; any thread, any bytes. buf may be a live read-only mapping.
 * Returns the number of problems (0: consistent), or -EINVAL if buf is NULL and len
 * is not 0.
 */
SHMRING_API int shmring_dump_check_buf(const void *buf, size_t len,
				       void (*problem)(void *arg,
						       const struct shmring_dump_problem *p),
				       void *arg);

/*
 * Decode and check: fills *info with everything that could be read (what could not is
 * left zero) and the problems found. Participants' alive fields are set to -1.
 * Concurrency: pure, as above.
 * Returns 0 if the buffer holds a segment (info->nproblems says whether it is
 * consistent); -EPROTO if it is not one at all (too short, wrong magic or unknown
 * layout version: info->problems says which); -EINVAL for NULL arguments.
 */
SHMRING_API int shmring_dump_decode_buf(const void *buf, size_t len,
					struct shmring_dump_info *info);

/*
 * Walk the first max pending records of the segment in buf, oldest first, calling
 * rec() for each. Stops at the first record that would be out of bounds.
 * Concurrency: pure, as above.
 * Returns the number of records reported; -EPROTO if the header or the kind's control
 * region does not check out (records are not walked in a corrupt segment); -ENOTSUP
 * for a kind this library cannot walk; -EINVAL for NULL arguments.
 */
SHMRING_API int shmring_dump_records_buf(const void *buf, size_t len, unsigned max,
					 void (*rec)(void *arg,
						     const struct shmring_dump_record *r),
					 void *arg);

/* "spsc", "mpmc", "pool", "bcast", or "unknown". */
SHMRING_API const char *shmring_dump_kind_name(uint32_t kind);
/* "none", "producer", "consumer", "subscriber", "reader", "observer", or "unknown". */
SHMRING_API const char *shmring_dump_role_name(uint32_t role);
/* "free", "active", "left", or "unknown". */
SHMRING_API const char *shmring_dump_state_name(uint32_t state);

#endif /* SHMRING_DUMP_H */
