/* SPDX-License-Identifier: MIT */
/*
 * shmring/layout.h: the on-memory format of a segment. This is the real ABI: any
 * process, any version of the library and any tool that reads /dev/shm decodes these
 * bytes. Fixed-width types, no pointers, every offset pinned by a static assert.
 * docs/FORMAT.md describes the same layout in prose.
 *
 *   0      header page (4096 B)
 *          [0,256)     immutable: magic, version, kind, geometry, checksum
 *          [256,384)   statistics written by producers on the fast path
 *          [384,512)   statistics written on slow paths (wakes, sleeps, drops...)
 *          [1024,4096) participant table: SHMRING_MAX_PARTS slots of 64 B
 *   ctrl_off  control region (indices, wait queues), page aligned, kind-defined
 *   data_off  data region, page aligned, kind-defined
 *
 * The layout version changes whenever these bytes change meaning; it is independent
 * of the library version. Attach refuses a layout version it does not know.
 */
#ifndef SHMRING_LAYOUT_H
#define SHMRING_LAYOUT_H

#include "common.h"

#define SHMRING_MAGIC UINT64_C(0x31474e52484d4853) /* the bytes "SHMHRNG1" (little endian) */
#define SHMRING_LAYOUT_VERSION 1u
#define SHMRING_HDR_SIZE 4096u
#define SHMRING_GEO_WORDS 8u
#define SHMRING_NAME_MAX 63u
#define SHMRING_PARTS_OFF 1024u
#define SHMRING_PART_SIZE 64u
#define SHMRING_MAX_PARTS 48u /* (4096 - 1024) / 64 */
#define SHMRING_CHECKSUM_OFF 248u /* XXH64 (seed 0) of bytes [0, 248) */
/* The holder lock: every process that has the segment open through the library's
 * registry holds an OFD read lock on this byte, from before the magic is written at
 * creation until its last handle closes. An inspector that finds it held knows the
 * segment is in use, participants or not (never written; see docs/FORMAT.md). */
#define SHMRING_HOLDER_LOCK 520u

/* Channel kinds (shmring_hdr.kind). */
enum shmring_kind {
	SHMRING_KIND_SPSC = 1,  /* variable-size records, one producer, one consumer */
	SHMRING_KIND_MPMC = 2,  /* fixed-size slots, many producers and consumers */
	SHMRING_KIND_POOL = 3,  /* frame pool with several subscribers */
	SHMRING_KIND_BCAST = 4, /* seqlock broadcast / latest value */
};

/* Segment flags (shmring_hdr.flags); kinds may use bits 16-31 for their own. */
#define SHMRING_SEG_F_MEMFD (1u << 0)   /* created with memfd_create (anonymous) */
#define SHMRING_SEG_F_SEMWAIT (1u << 1) /* wait queues use POSIX semaphores, not futex */
#define SHMRING_SEG_F_KNOWN (SHMRING_SEG_F_MEMFD | SHMRING_SEG_F_SEMWAIT | 0xffff0000u)

/* Participant roles. */
enum shmring_role {
	SHMRING_ROLE_NONE = 0,
	SHMRING_ROLE_PRODUCER = 1,
	SHMRING_ROLE_CONSUMER = 2,
	SHMRING_ROLE_SUBSCRIBER = 3,
	SHMRING_ROLE_READER = 4,
	SHMRING_ROLE_OBSERVER = 5,
};

/* Participant slot states. A slot is *owned* by whoever holds the OFD write lock on
 * its first byte in the segment file (offset SHMRING_PARTS_OFF + 64 * slot). The kernel
 * drops that lock when the owner dies, however it dies: state ACTIVE with no lock
 * held means the participant is dead. */
enum shmring_part_state {
	SHMRING_PART_FREE = 0,
	SHMRING_PART_ACTIVE = 1,
	SHMRING_PART_LEFT = 2,
};

struct shmring_part {
	_Atomic uint32_t state;      /* enum shmring_part_state */
	_Atomic uint32_t role;       /* enum shmring_role */
	_Atomic int32_t pid;
	_Atomic uint32_t gen;        /* bumped on every join of this slot */
	_Atomic uint64_t start_time; /* /proc/PID/stat field 22: defeats pid reuse */
	_Atomic uint64_t joined_ns;  /* CLOCK_REALTIME */
	_Atomic uint64_t kind_data[4]; /* owned by the channel kind */
};

/* Statistics. Fast-path counters are written by producers only (single writer for
 * SPSC, so plain relaxed stores); slow-path counters use relaxed fetch_add. Readers
 * (shmdump) read them relaxed: they are statistics, not synchronisation. */
struct shmring_stats {
	/* line written on the fast path */
	_Atomic uint64_t msgs;  /* records / messages / frames published */
	_Atomic uint64_t bytes; /* payload bytes published */
	_Atomic uint64_t fast_spare[14];
	/* line written on slow paths */
	_Atomic uint64_t wake_syscalls; /* FUTEX_WAKE / sem_post calls made */
	_Atomic uint64_t sleeps;        /* times a caller went to sleep */
	_Atomic uint64_t drops;         /* messages dropped by policy (pool drop-oldest) */
	_Atomic uint64_t laps;          /* spare: bcast counts laps on its reader page */
	_Atomic uint64_t abandoned;     /* in-flight messages lost with a dead participant */
	_Atomic uint64_t peer_deaths;   /* dead participants detected */
	_Atomic uint64_t timeouts;      /* blocking calls that returned -ETIMEDOUT */
	_Atomic uint64_t slow_spare[9];
};

struct shmring_hdr {
	/* ---- immutable after creation, covered by the checksum ---- */
	_Atomic uint64_t magic;   /* written last at creation, with a release store */
	uint32_t layout_version;
	uint32_t kind;            /* enum shmring_kind */
	uint32_t flags;           /* SHMRING_SEG_F_* */
	uint32_t hdr_size;        /* SHMRING_HDR_SIZE */
	uint64_t total_size;      /* bytes; equals the file size */
	uint64_t created_ns;      /* CLOCK_REALTIME */
	int32_t creator_pid;
	uint32_t max_parts;       /* <= SHMRING_MAX_PARTS */
	uint64_t parts_off;       /* SHMRING_PARTS_OFF */
	uint64_t ctrl_off;
	uint64_t ctrl_size;
	uint64_t data_off;
	uint64_t data_size;
	uint64_t geo[SHMRING_GEO_WORDS]; /* kind-specific geometry, see the kind's header */
	char name[SHMRING_NAME_MAX + 1];  /* informational, NUL terminated */
	uint64_t reserved[4];
	uint64_t checksum;        /* XXH64(seed 0) of bytes [0, SHMRING_CHECKSUM_OFF) */
	/* ---- mutable ---- */
	struct shmring_stats stats;
	uint8_t pad[SHMRING_PARTS_OFF - 256 - sizeof(struct shmring_stats)];
	struct shmring_part parts[SHMRING_MAX_PARTS];
};

_Static_assert(sizeof(struct shmring_part) == SHMRING_PART_SIZE, "participant slot size");
_Static_assert(sizeof(struct shmring_stats) == 256, "stats size");
_Static_assert(offsetof(struct shmring_stats, wake_syscalls) == 128, "slow stats on own line");
_Static_assert(offsetof(struct shmring_hdr, layout_version) == 8, "layout");
_Static_assert(offsetof(struct shmring_hdr, kind) == 12, "layout");
_Static_assert(offsetof(struct shmring_hdr, flags) == 16, "layout");
_Static_assert(offsetof(struct shmring_hdr, hdr_size) == 20, "layout");
_Static_assert(offsetof(struct shmring_hdr, total_size) == 24, "layout");
_Static_assert(offsetof(struct shmring_hdr, created_ns) == 32, "layout");
_Static_assert(offsetof(struct shmring_hdr, creator_pid) == 40, "layout");
_Static_assert(offsetof(struct shmring_hdr, max_parts) == 44, "layout");
_Static_assert(offsetof(struct shmring_hdr, parts_off) == 48, "layout");
_Static_assert(offsetof(struct shmring_hdr, ctrl_off) == 56, "layout");
_Static_assert(offsetof(struct shmring_hdr, ctrl_size) == 64, "layout");
_Static_assert(offsetof(struct shmring_hdr, data_off) == 72, "layout");
_Static_assert(offsetof(struct shmring_hdr, data_size) == 80, "layout");
_Static_assert(offsetof(struct shmring_hdr, geo) == 88, "layout");
_Static_assert(offsetof(struct shmring_hdr, name) == 152, "layout");
_Static_assert(offsetof(struct shmring_hdr, reserved) == 216, "layout");
_Static_assert(offsetof(struct shmring_hdr, checksum) == SHMRING_CHECKSUM_OFF, "layout");
_Static_assert(offsetof(struct shmring_hdr, stats) == 256, "layout");
_Static_assert(offsetof(struct shmring_hdr, parts) == SHMRING_PARTS_OFF, "layout");
_Static_assert(sizeof(struct shmring_hdr) == SHMRING_HDR_SIZE, "header is one page");

/*
 * A wait queue: one futex word and one count of announced sleepers, on a line of
 * their own, plus two process-shared sem_t and their counts (semaphore backend). The layout is
 * the same for both backends; the header flag SHMRING_SEG_F_SEMWAIT says which one the
 * segment was created for, and attach refuses a mismatch.
 */
struct shmring_waitq {
	_Atomic uint32_t seq;     /* futex word: bit 0 a sleeper is pending, above it the
	                           * wake generation (see wait.h for the protocol) */
	_Atomic uint32_t waiters; /* sleepers announced (see wait.h for the protocol) */
	/* semaphore backend: announcements not yet posted, and the semaphores posted, by
	 * parity of the wake generation a sleeper announced in (see wait.h) */
	_Atomic uint32_t sem_pending[2];
	uint8_t pad0[48];
	union {
		uint8_t sem_bytes[2][32]; /* sem_t (32 B on glibc) for the semaphore backend */
		uint64_t sem_align;
	};
};
_Static_assert(sizeof(struct shmring_waitq) == SHMRING_LINE, "wait queue is one line");
_Static_assert(offsetof(struct shmring_waitq, sem_bytes) == 64, "layout");

#endif /* SHMRING_LAYOUT_H */
