/* SPDX-License-Identifier: MIT */
/*
 * shmring/bcast.h: broadcast / latest-value channel framed by per-slot seqlocks.
 *
 * One writer, any number of readers. The writer never blocks and never waits for a
 * reader; readers never write the data (they map the segment read-only) and each
 * keeps its own position. A reader that falls more than a ring behind is *lapped*: it
 * learns how many records it missed and continues from the oldest record still valid
 * or jumps to the newest, as it asked at open. read_latest() returns the newest
 * complete record ("show the latest frame").
 *
 * RECORDS AND SLOTS. Records are numbered n = 0, 1, 2, ... Record n lives in slot
 * n % slots (slots is a power of two >= 2). Each slot starts with a 64-byte header
 * holding its sequence word and the record length; the payload (up to slot_size
 * bytes) follows at offset 64, and slots are a multiple of 128 bytes apart so that no
 * two sequence words share a prefetched line pair. The sequence word is
 *     0        never written
 *     2n + 1   record n is being written (odd: do not trust the slot)
 *     2n + 2   record n is complete
 * ctrl->pub, the writer's published count, is n + 1 once record n is complete: record
 * pub - 1 is the newest complete record.
 *
 * THE SEQLOCK (Boehm, "Can seqlocks get along with programming language memory
 * models?", MSPC 2012):
 *     writer, record n                          reader, expecting record n
 *     seq = 2n+1            (relaxed)            s1 = seq              (acquire)
 *     fence(release)                             if s1 != 2n+2: not there / lapped
 *     len, payload          (relaxed stores)     len, payload          (relaxed loads)
 *     seq = 2n+2            (release)            fence(acquire)
 *     pub = n+1             (release)            s2 = seq              (relaxed)
 *                                                accept iff s2 == s1
 * If any payload load read a value stored after the writer's release fence (that is,
 * by a later record in this slot), the fence pair orders the odd store before the
 * reader's s2 load, so s2 != s1 and the copy is thrown away. If s2 == s1, every load
 * read record n. The slot is only ever rewritten for record n + k*slots, so a changed
 * sequence word always means the reader was lapped.
 *
 * WHY RELAXED ATOMICS FOR THE PAYLOAD. Under C11 a plain read that races with a write
 * is a data race, i.e. undefined behaviour, even if the value is later discarded; the
 * compiler may assume no race (re-read, tear, or invent loads). So the copy-out path
 * (shmring_bcast_read, shmring_bcast_read_latest) loads the payload as 8-byte relaxed
 * atomic words and the copy-in path (shmring_bcast_publish) stores it the same way:
 * every concurrent access is atomic, the program is data-race-free, and TSan stays
 * quiet. On x86-64 and AArch64 a relaxed 8-byte load or store is a plain mov/ldr/str;
 * the cost is that the compiler may not vectorise or merge them. Copying four words
 * per step, the copy ran at about 20 GB/s against memcpy's 33-44 GB/s on cached data
 * (development host, AMD EPYC): a 1080p NV12 frame (3,110,400 B) in about 0.15 ms.
 * Slot payloads are padded to 8 bytes, so the last partial word is loaded and stored
 * whole, never past the slot.
 *
 * THREADSANITIZER does not model stand-alone fences (common.h turns them into seq_cst
 * read-modify-writes under SHMRING_TSAN, which TSan does not relate to the payload
 * either). So in TSan builds the payload words carry the ordering themselves: stores
 * are release and loads acquire, which orders the odd sequence store before every
 * payload store and every payload load before the re-check (the length word, also
 * read inside the seqlock, likewise): the edges the fences give, in a form TSan
 * checks. On x86-64 those loads and stores are the same instructions as relaxed ones.
 *
 * ZERO-COPY, AND ITS CONTRACT. shmring_bcast_reserve()/commit() let the writer fill a
 * slot in place, and shmring_bcast_peek()/validate()/release() let a reader use a slot
 * in place. Whatever such code reads is *speculative* until validate() or release()
 * returns 0: it may be a mix of two records, and the reader MUST discard it (and
 * anything computed from it) on -ESTALE. Accesses made with ordinary loads and stores
 * there are formally racy under C11 (the seqlock validation is what makes the result
 * usable, as in the Linux kernel's seqcount users); across processes this is outside
 * C11's model anyway, but in one process under TSan use the copying calls.
 * Never follow a pointer or index found in a peeked payload before validating it.
 *
 * WAITING. Readers may wait for the next record (shmring_bcast_wait and the *_wait
 * calls) with the protocol of wait.h: the condition is "ctrl->pub > my position", the
 * wait queue is in the *reader page*, a page of the control region that readers map
 * writable on their own (a second mmap of that one page through a read-write
 * descriptor reopened from /proc/self/fd), while everything else stays read-only. A
 * sleeper raises the queue's pending flag; the writer, after publishing, pays one
 * fence and one load of the flag and makes a FUTEX_WAKE only when it is set, once per
 * sleep (the first wake clears it). Before it sleeps, a waiting reader polls a few
 * times after sched_yield() (wait.h, "Spin, then sleep"): a reader that caught up with
 * a writer sharing its CPU then finds the next record without sleeping, and the writer
 * pays no wake. A reader that may not open the file for writing (its mode, or no
 * /proc) still reads; its waits poll with short sleeps (50 us growing to 2 ms) instead
 * of sleeping on the queue. (Running out of descriptors or memory while opening is the
 * open's error, -EMFILE, -ENFILE or -ENOMEM, never a reader that polls for good.) A
 * reader killed while asleep leaves the flag set: the writer makes one needless wake,
 * then the flag is clear.
 * The futex word is the queue's, not ctrl->pub itself: pub is 64 bits and a futex word
 * 32; a sleeper must raise the pending flag with an atomic read-modify-write, which it
 * cannot do in page 0 through its read-only mapping; and one wait.h protocol then
 * serves every ring kind and both backends (the semaphore backend has no futex word).
 * The queue word moves to the next wake generation once per sleep (the first publish
 * that finds the flag raised), so a sleeper that read pub before the publish cannot
 * miss it: wait.h gives the proof.
 *
 * THE WRITER is participant slot 0 (role SHMRING_ROLE_PRODUCER), so at most one live
 * writer exists: a second gets -EBUSY. shmring_bcast_close() by the writer is end of
 * stream: a reader that has everything gets -EPIPE. A writer that died (its lock is
 * gone) is noticed by waiting readers within SHMRING_PEER_CHECK_MS, and by
 * non-blocking reads once per 1024 empty polls; they too get -EPIPE once caught up. A
 * replacement writer resumes after the last complete record (a record that was being
 * written when the writer died is rewritten, never half-read). Readers are not in the
 * participant table: they are invisible to the writer by design (it never waits for
 * them), and they could not write the table through their read-only mapping.
 *
 * READERS' LIVENESS. So that tools can tell a channel still in use from a stale one,
 * every reader handle holds an OFD read lock (F_OFD_SETLK, F_RDLCK) on byte
 * SHMRING_BCAST_READER_LOCK of the segment file, through an open file description of
 * its own (a descriptor reopened read-only from /proc/self/fd, close-on-exec, closed
 * in a child after fork()). Read locks are shared, so any number of readers hold it at
 * once; closing the handle releases that handle's lock only, and the kernel drops it
 * when the process dies, however it dies. F_OFD_GETLK asking for F_WRLCK on that byte
 * says whether at least one live reader exists (shmdump does this). If the descriptor
 * cannot be reopened (no /proc), the lock is taken through the segment's own
 * descriptor, which the process's handles of that segment share: it then lasts until
 * the last of them closes. The writer takes no reader lock.
 *
 * NEVER TRUST SHARED MEMORY. Geometry is copied at attach and never re-read. Every
 * value a reader takes from the segment is read once and bounded: a length above the
 * slot size, a sequence word that names a record of another slot, or a count past
 * 2^62 give -EPROTO and a broken handle (sticky); never an access outside the slot.
 *
 * CONCURRENCY. One writer handle; each reader handle used by one thread at a time
 * (any number of reader handles, in any processes). Handles do not survive fork().
 *
 *   call                         || writer calls   || other readers   || same handle
 *   reserve/commit/abort/publish     (one writer)      yes                 no
 *   read/peek/release/read_latest    yes               yes                 no
 *   stats                            yes               yes                 no
 */
#ifndef SHMRING_BCAST_H
#define SHMRING_BCAST_H

#include "wait.h"

#include <errno.h>
#include <string.h>

/* Geometry words in the segment header (hdr.geo). */
#define SHMRING_BCAST_GEO_SLOTS 0       /* number of slots, power of two, 2..2^20 */
#define SHMRING_BCAST_GEO_SLOT_SIZE 1   /* largest payload, 1..SHMRING_BCAST_MAX_SLOT_SIZE */
#define SHMRING_BCAST_GEO_STRIDE 2      /* bytes from one slot to the next */
#define SHMRING_BCAST_GEO_RPAGE 3       /* offset of the reader page in ctrl (4096) */
#define SHMRING_BCAST_GEO_PAYLOAD 4     /* offset of the payload in a slot (64) */
/* geo[5..7] are reserved and must be 0 */

#define SHMRING_BCAST_SLOT_WRITER 0u    /* participant slot of the writer */
#define SHMRING_BCAST_MAX_SLOTS (1u << 20)
#define SHMRING_BCAST_MAX_SLOT_SIZE (UINT64_C(1) << 30)
#define SHMRING_BCAST_PAYLOAD_OFF 64u
#define SHMRING_BCAST_RPAGE_OFF 4096u
#define SHMRING_BCAST_CTRL_SIZE 8192u
#define SHMRING_BCAST_SEQ_MAX (UINT64_C(1) << 62) /* record counts beyond: -EPROTO */
/* The byte of the segment file every open reader holds an OFD read lock on (see
 * READERS' LIVENESS above): in the reserved area [512, 1024) of the header page, apart
 * from the participant-slot lock bytes (1024 + 64 * slot). A lock only: nothing is
 * written there. */
#define SHMRING_BCAST_READER_LOCK 512u

/* ctrl->state */
#define SHMRING_BCAST_OPEN 0u
#define SHMRING_BCAST_CLOSED 1u

/* Reader flags (shmring_bcast_open, shmring_bcast_opts.reader_flags). */
#define SHMRING_BCAST_LAP_NEWEST (1u << 0)   /* lapped: jump to the newest record
					      * (default: the oldest still valid) */
#define SHMRING_BCAST_START_OLDEST (1u << 1) /* start at the oldest record still valid */
#define SHMRING_BCAST_START_NEWEST (1u << 2) /* start at the newest complete record */
/* default start: the next record the writer publishes */
#define SHMRING_BCAST_RW_MAPPING (1u << 3)   /* map the segment read-write, which in the
					      * writer's process shares its mapping: no
					      * read-only protection. For readers living
					      * with the writer, and for TSan, which tracks
					      * memory by address and so cannot relate
					      * accesses made through two mappings */
#define SHMRING_BCAST_F_KNOWN (SHMRING_BCAST_LAP_NEWEST | SHMRING_BCAST_START_OLDEST | \
			       SHMRING_BCAST_START_NEWEST | SHMRING_BCAST_RW_MAPPING)

/* Where shmring_bcast_seek() puts a reader. */
enum shmring_bcast_whence {
	SHMRING_BCAST_SEEK_NEXT = 0,   /* the next record published (skip all present) */
	SHMRING_BCAST_SEEK_OLDEST = 1, /* pub + 1 - slots: the oldest record that the
					* writer's next record will not overwrite */
	SHMRING_BCAST_SEEK_NEWEST = 2, /* pub - 1: the newest complete record */
};

/* Slot header, at the start of every slot in the data region. */
struct shmring_bcast_slot {
	_Atomic uint64_t seq; /* 0, 2n+1 (writing record n) or 2n+2 (record n complete) */
	_Atomic uint64_t len; /* payload bytes of the record; written inside the seqlock */
	uint64_t reserved[6];
	/* payload at SHMRING_BCAST_PAYLOAD_OFF, as 8-byte words */
};
_Static_assert(sizeof(struct shmring_bcast_slot) == SHMRING_BCAST_PAYLOAD_OFF, "slot header");

/* Control region, page 0: written by the writer only. */
struct shmring_bcast_wline {
	_Atomic uint64_t pub;     /* records complete; record pub-1 is the newest */
	_Atomic uint32_t state;   /* SHMRING_BCAST_OPEN / SHMRING_BCAST_CLOSED */
	_Atomic uint32_t writers; /* writer attaches so far (1: only the creator) */
	uint8_t pad[SHMRING_LINE - 16];
};
_Static_assert(sizeof(struct shmring_bcast_wline) == SHMRING_LINE, "writer line");

/* Control region, page 1 (the reader page): the only memory readers write. */
struct shmring_bcast_rpage {
	struct shmring_waitq q;        /* [0,128) readers sleep here; the writer wakes */
	_Atomic uint64_t lap_events;   /* times a reader found itself lapped */
	_Atomic uint64_t torn;         /* copies thrown away: the slot changed under them */
	_Atomic uint64_t readers;      /* reader handles open now (a crashed one stays) */
	_Atomic uint64_t reader_opens; /* reader handles ever opened */
	uint8_t pad0[SHMRING_LINE - 32];
	/* [256,512): the readers' statistics (wait.h's sleep and timeout counts of
	 * readers land here: they cannot write the header). laps: records missed by
	 * lapped readers, all together. */
	struct shmring_stats stats;
	uint8_t pad1[SHMRING_PAGE - 512];
};
_Static_assert(offsetof(struct shmring_bcast_rpage, lap_events) == 128, "layout");
_Static_assert(offsetof(struct shmring_bcast_rpage, stats) == 256, "layout");
_Static_assert(sizeof(struct shmring_bcast_rpage) == SHMRING_PAGE, "reader page");

struct shmring_bcast_ctrl {
	struct shmring_bcast_wline w;
	uint8_t pad[SHMRING_BCAST_RPAGE_OFF - SHMRING_LINE];
	struct shmring_bcast_rpage r;
};
_Static_assert(offsetof(struct shmring_bcast_ctrl, r) == SHMRING_BCAST_RPAGE_OFF, "layout");
_Static_assert(sizeof(struct shmring_bcast_ctrl) == SHMRING_BCAST_CTRL_SIZE, "layout");

struct shmring_bcast_opts {
	uint32_t slots;        /* power of two, 2..2^20; 0: 8 */
	uint32_t mode;         /* named segments: permission bits (at most 0777,
			      * else -EINVAL), as given: no umask; 0: 0600 */
	uint64_t slot_size;    /* largest payload, 1..2^30 bytes */
	uint32_t reader_flags; /* SHMRING_BCAST_* reader flags when created as a reader */
	uint32_t spare;        /* 0 */
};

/* A record: data points into the slot (peek) or into the caller's buffer (read). */
struct shmring_bcast_rec {
	const void *data;
	size_t len;
	uint64_t seq;    /* record number: 0 is the first record ever published */
	uint64_t missed; /* records between the previous record this handle returned and
			  * this one that it never returned (lapped or skipped) */
};

/* Per-handle statistics (shmring_bcast_stats). */
struct shmring_bcast_stats {
	uint64_t published;   /* records the writer has completed (ctrl->pub) */
	uint64_t records;     /* records this handle published (writer) or returned (reader) */
	uint64_t bytes;       /* their payload bytes */
	uint64_t laps;        /* reader: records missed because it was lapped */
	uint64_t lap_events;  /* reader: times it found itself lapped */
	uint64_t torn;        /* reader: copies or peeks invalidated by the writer */
	uint64_t skipped;     /* reader: records passed over by read_latest and seek */
	uint64_t all_readers_laps; /* from the reader page: all readers together */
	uint64_t readers;     /* from the reader page: reader handles open */
};

/* Process-local handle. Fields are private; they are here for the inline fast path. */
struct shmring_bcast {
	struct shmring_seg *seg;
	struct shmring_bcast_wline *ctrl;  /* read-only for readers */
	struct shmring_bcast_rpage *rpage; /* writable; NULL if a reader could not map it */
	uint8_t *slots;
	uint64_t nslots, mask, stride, slot_size;
	uint32_t role, flags;
	int broken;             /* sticky negative errno once corruption was seen */
	int spin;               /* polls before sleeping */
	uint64_t pos;           /* writer: record being / to be written; reader: next to read */
	/* writer */
	int reserved;
	int demote;             /* commit demotes the record's head (set_demote) */
	uint64_t res_len;
	uint64_t w_msgs, w_bytes;
	/* reader */
	int peeking;
	uint32_t empty_polls;
	uint64_t peek_seq;      /* sequence word seen by peek */
	uint64_t peek_len;      /* length seen by peek (bounded) */
	uint64_t missed;        /* records lost since the last record returned */
	uint64_t records, bytes, laps, lap_events, torn, skipped;
	uint64_t torn_flushed;  /* part of torn already added to the reader page */
	uint64_t last_check;    /* last check of the writer in a wait (CLOCK_MONOTONIC ns) */
	/* slow path */
	void *rpage_map;        /* a reader's own writable mapping of the reader page */
	/* reader: the descriptor holding its reader lock, listed by the registry (apart
	 * from the handle, so that the list never lives in handle memory); NULL if none */
	struct shmring__lock_fd *lock;
};

/*
 * Create a channel of opts->slots slots of opts->slot_size bytes and attach with role
 * SHMRING_ROLE_PRODUCER (the writer) or SHMRING_ROLE_READER (a reader created first; on
 * the creator's read-write mapping). name: NULL for an anonymous memfd channel (share
 * shmring_bcast_fd()). Concurrency: any thread. Returns 0 or: -EINVAL (opts, role),
 * -EEXIST, -ENOSPC, -EACCES, -ENOMEM, other segment errors (segment.h).
 */
SHMRING_API int shmring_bcast_create(const char *name, const struct shmring_bcast_opts *o,
				     uint32_t role, struct shmring_bcast **out);
/*
 * Attach to an existing channel. role SHMRING_ROLE_PRODUCER: the writer, -EBUSY if a
 * live one exists; a replacement for a dead writer resumes after the last complete
 * record. role SHMRING_ROLE_READER: the segment is mapped read-only (unless
 * SHMRING_BCAST_RW_MAPPING) and the reader page read-write; flags are the
 * SHMRING_BCAST_* reader flags (0 for the writer).
 * Returns 0 or: -EINVAL, -EBUSY, -EPROTO (not a valid broadcast segment, or corrupt
 * control words), other segment errors (segment.h).
 */
SHMRING_API int shmring_bcast_open(const char *name, uint32_t role, unsigned flags,
				   struct shmring_bcast **out);
/* As shmring_bcast_open, for a descriptor (a memfd received from another process). */
SHMRING_API int shmring_bcast_open_fd(int fd, uint32_t role, unsigned flags,
				      struct shmring_bcast **out);
/* Writer: abandon a reservation, mark end of stream, wake readers, leave slot 0.
 * Reader: detach. Then free the handle. Returns 0, or -EINVAL for NULL. */
SHMRING_API int shmring_bcast_close(struct shmring_bcast *b);
SHMRING_API int shmring_bcast_fd(const struct shmring_bcast *b);
SHMRING_API struct shmring_seg *shmring_bcast_seg(const struct shmring_bcast *b);
/* Polls before sleeping in blocking calls (default, and for a negative spin:
 * SHMRING_SPIN_DEFAULT / 4; 0: no spinning). */
SHMRING_API void shmring_bcast_set_spin(struct shmring_bcast *b, int spin);
/*
 * Writer: after each commit, push the slot's header line and the payload's first line
 * (what a reader reads first) out of this CPU's private caches into the shared
 * last-level cache (x86 CLDEMOTE; a NOP where the CPU lacks it), so readers on other
 * cores are served there instead of by snoops into the writer's core: two instructions
 * per record. Off by default. The trade of shmring_spsc_set_demote() (spsc.h), measured
 * in bench/RESULTS.md: a 64-byte record's round trip across physical cores is 21-26%
 * shorter (a reader polls the header's line, then misses on the payload's line); a
 * streaming writer is up to 4x slower; readers sharing the writer's core lose. Per
 * handle. Returns 0; -EBADF if b is not the writer.
 */
SHMRING_API int shmring_bcast_set_demote(struct shmring_bcast *b, int on);
/* 1 if a live writer is attached, 0 if not (slow: one fcntl). */
SHMRING_API int shmring_bcast_writer_alive(const struct shmring_bcast *b);
/* After -EPIPE: 1 if the writer ended the stream with shmring_bcast_close(), 0 if it
 * died (or is attached). A reader outlives its writer: a replacement's records follow. */
SHMRING_API int shmring_bcast_writer_closed(const struct shmring_bcast *b);
/* Reposition a reader (see enum shmring_bcast_whence). Records passed over count as
 * skipped. Concurrency: this reader only. Returns 0, -EBADF (not a reader), -EPROTO. */
SHMRING_API int shmring_bcast_seek(struct shmring_bcast *r, int whence);
/* Snapshot of the handle's counters and the shared ones. Returns 0 or -EINVAL. */
SHMRING_API int shmring_bcast_stats(const struct shmring_bcast *b, struct shmring_bcast_stats *st);
/* Stride of a slot of slot_size bytes (what geo[2] must hold). */
SHMRING_API uint64_t shmring_bcast_stride(uint64_t slot_size);

/* Slow paths of the inline calls below (src/bcast.c). */
SHMRING_API int shmring__bcast_broken(struct shmring_bcast *b, int err);
SHMRING_API int shmring__bcast_lapped(struct shmring_bcast *r, uint64_t n, uint64_t seen);
SHMRING_API int shmring__bcast_empty(struct shmring_bcast *r);

/* ---- inline helpers ---- */

/* Payload word ordering: relaxed, or (TSan builds) release/acquire so that TSan sees
 * the edges that the seqlock fences give; see the header comment. */
#ifdef SHMRING_TSAN
#define SHMRING__BCAST_STORE_ORDER memory_order_release
#define SHMRING__BCAST_LOAD_ORDER memory_order_acquire
#else
#define SHMRING__BCAST_STORE_ORDER memory_order_relaxed
#define SHMRING__BCAST_LOAD_ORDER memory_order_relaxed
#endif

SHMRING_INLINE struct shmring_bcast_slot *shmring__bcast_slot(const struct shmring_bcast *b,
							     uint64_t n)
{
	return (struct shmring_bcast_slot *)(void *)(b->slots + (n & b->mask) * b->stride);
}

SHMRING_INLINE _Atomic uint64_t *shmring__bcast_payload(const struct shmring_bcast *b,
							 uint64_t n)
{
	return (_Atomic uint64_t *)(void *)((uint8_t *)shmring__bcast_slot(b, n) +
					     SHMRING_BCAST_PAYLOAD_OFF);
}

/* Copy in as relaxed 8-byte stores (see the header comment: data-race-free). Four words
 * per step: loading the source in 32-byte blocks lets the compiler use wide loads and
 * keeps loads and stores from alternating (measured: about twice the per-word loop). */
SHMRING_INLINE void shmring__bcast_copy_in(_Atomic uint64_t *dst, const void *src, size_t len)
{
	const uint8_t *p = (const uint8_t *)src;
	size_t words = len / 8, blocks = words / 4, i;
	for (size_t b = 0; b < blocks; b++) {
		uint64_t v[4];
		i = 4 * b;
		memcpy(v, p + 8 * i, 32);
		/* ordered after the odd seq by reserve's release fence, before the even seq
		 * by commit's release store */
		atomic_store_explicit(&dst[i], v[0], SHMRING__BCAST_STORE_ORDER);     /* as above */
		atomic_store_explicit(&dst[i + 1], v[1], SHMRING__BCAST_STORE_ORDER); /* as above */
		atomic_store_explicit(&dst[i + 2], v[2], SHMRING__BCAST_STORE_ORDER); /* as above */
		atomic_store_explicit(&dst[i + 3], v[3], SHMRING__BCAST_STORE_ORDER);
	}
	i = 4 * blocks;
	for (size_t k = 0; k < (words & 3); k++, i++) { /* at most 3: a visible bound */
		uint64_t v;
		memcpy(&v, p + 8 * i, 8);
		/* as the block stores: after reserve's fence, before commit's release */
		atomic_store_explicit(&dst[i], v, SHMRING__BCAST_STORE_ORDER);
	}
	if (len & 7) {
		uint64_t v = 0;
		memcpy(&v, p + 8 * i, len & 7);
		/* as the block stores: after reserve's fence, before commit's release */
		atomic_store_explicit(&dst[i], v, SHMRING__BCAST_STORE_ORDER);
	}
}

/* Copy out as relaxed 8-byte loads, four per step (as copy_in); the caller validates
 * the sequence word after. */
SHMRING_INLINE void shmring__bcast_copy_out(void *dst, _Atomic uint64_t *src, size_t len)
{
	uint8_t *p = (uint8_t *)dst;
	size_t words = len / 8, blocks = words / 4, i;
	for (size_t b = 0; b < blocks; b++) {
		i = 4 * b;
		/* after the acquire load of seq; before the caller's acquire fence and
		 * re-check, which validate what was read */
		uint64_t v[4] = {
			atomic_load_explicit(&src[i], SHMRING__BCAST_LOAD_ORDER),     /* as above */
			atomic_load_explicit(&src[i + 1], SHMRING__BCAST_LOAD_ORDER), /* as above */
			atomic_load_explicit(&src[i + 2], SHMRING__BCAST_LOAD_ORDER), /* as above */
			atomic_load_explicit(&src[i + 3], SHMRING__BCAST_LOAD_ORDER), /* as above */
		};
		memcpy(p + 8 * i, v, 32);
	}
	i = 4 * blocks;
	for (size_t k = 0; k < (words & 3); k++, i++) { /* at most 3 */
		uint64_t v = atomic_load_explicit(&src[i], SHMRING__BCAST_LOAD_ORDER);
		memcpy(p + 8 * i, &v, 8);
	}
	if (len & 7) {
		/* as above: the last partial word, validated by the caller's re-check */
		uint64_t v = atomic_load_explicit(&src[i], SHMRING__BCAST_LOAD_ORDER);
		memcpy(p + 8 * i, &v, len & 7);
	}
}

#define SHMRING__BCAST_LAPPED 1

/*
 * Look at the slot of record n: 0 (record n is complete: *seq and *len are set),
 * -EAGAIN (not written yet, or being written), SHMRING__BCAST_LAPPED (the slot holds
 * a later record; *seq says which), -EPROTO.
 */
SHMRING_INLINE int shmring__bcast_look(const struct shmring_bcast *r, uint64_t n,
				       uint64_t *seq, uint64_t *len)
{
	struct shmring_bcast_slot *s = shmring__bcast_slot(r, n);
	uint64_t want = 2 * n + 2;
	/* pairs with the writer's release store of 2n+2 in shmring_bcast_commit(): a
	 * reader that sees it sees record n's length and payload */
	uint64_t s1 = shmring_load_acquire(&s->seq);
	*seq = s1;
	if (shmring_likely(s1 == want)) {
		/* inside the seqlock: the caller's re-check of seq validates it; but every
		 * length a correct writer stores is <= slot_size, so a larger one is corrupt */
		uint64_t l = atomic_load_explicit(&s->len, SHMRING__BCAST_LOAD_ORDER);
		if (shmring_unlikely(l > r->slot_size))
			return -EPROTO;
		*len = l;
		return 0;
	}
	if (s1 > want)
		return SHMRING__BCAST_LAPPED;
	/* 0 = never written; otherwise it must name a record of this slot */
	if (shmring_unlikely(s1 != 0 && (((s1 - 1) >> 1) & r->mask) != (n & r->mask)))
		return -EPROTO;
	return -EAGAIN;
}

/* ---- writer ---- */

/*
 * Start the next record (number shmring_bcast_published() of this writer): return its
 * payload area (len bytes, 8-byte aligned) in *buf, writable until commit or abort. The
 * slot's previous record is invalidated now (its sequence word goes odd), so readers
 * never see it half overwritten. Calling reserve again before commit re-sizes the same
 * record. Writes through *buf are racy under C11 (see ZERO-COPY above); publish() is
 * the data-race-free way.
 * Concurrency: the writer only. Ordering: the odd store is followed by a release fence
 * that pairs with the acquire fence of readers' re-check (read, validate).
 * Returns 0; -EMSGSIZE len > slot_size; -EBADF not the writer; -EOVERFLOW the channel
 * has carried SHMRING_BCAST_SEQ_MAX - 1 records, all it can number (readers would
 * take a count beyond for corruption); the sticky error.
 */
SHMRING_INLINE int shmring_bcast_reserve(struct shmring_bcast *w, size_t len, void **buf)
{
	if (shmring_unlikely(w->broken))
		return w->broken;
	if (shmring_unlikely(w->role != SHMRING_ROLE_PRODUCER))
		return -EBADF;
	if (shmring_unlikely(len > w->slot_size))
		return -EMSGSIZE;
	if (shmring_unlikely(w->pos >= SHMRING_BCAST_SEQ_MAX - 1))
		return -EOVERFLOW; /* commit would make pub SHMRING_BCAST_SEQ_MAX */
	uint64_t n = w->pos;
	struct shmring_bcast_slot *s = shmring__bcast_slot(w, n);
	if (!w->reserved) {
		/* release (a plain store on x86): pairs with the acquire fence in
		 * shmring__bcast_lapped(), so a reader that sees this odd word sees pub == n,
		 * stored by the previous commit, and can tell a hostile word far ahead */
		shmring_store_release(&s->seq, 2 * n + 1);
		/* pairs with the acquire fence before readers re-read seq (shmring_bcast_read,
		 * shmring_bcast_validate): a reader that loaded anything stored below sees
		 * this odd value, or later, when it re-reads seq */
		shmring_fence_release();
		w->reserved = 1;
	}
	/* inside the seqlock, like the payload: after the fence, before commit's release */
	atomic_store_explicit(&s->len, (uint64_t)len, SHMRING__BCAST_STORE_ORDER);
	w->res_len = len;
	*buf = (void *)shmring__bcast_payload(w, n);
	return 0;
}

/*
 * Complete the reserved record, publish it and wake sleeping readers (no syscall when
 * none sleeps). Never blocks.
 * Concurrency: the writer only. Ordering: release store of the slot's even sequence
 * word (pairs with the acquire load in shmring__bcast_look()), then release store of
 * ctrl->pub (pairs with the acquire loads in the wait poll, read_latest, seek and lap
 * handling), then the wake's seq_cst fence (W2 of wait.h).
 * Returns 0; -EINVAL nothing reserved; -EBADF not the writer; the sticky error.
 */
SHMRING_INLINE int shmring_bcast_commit(struct shmring_bcast *w)
{
	if (shmring_unlikely(w->broken))
		return w->broken;
	if (shmring_unlikely(!w->reserved))
		return w->role == SHMRING_ROLE_PRODUCER ? -EINVAL : -EBADF;
	uint64_t n = w->pos;
	struct shmring_bcast_slot *s = shmring__bcast_slot(w, n);
	/* pairs with the acquire load of seq in shmring__bcast_look() */
	shmring_store_release(&s->seq, 2 * n + 2);
	if (shmring_unlikely(w->demote)) /* the header line and the payload's first */
		shmring_demote(s, w->res_len ? SHMRING__DEMOTE_HEAD : SHMRING_BCAST_PAYLOAD_OFF);
	w->pos = n + 1;
	w->reserved = 0;
	w->w_msgs++;
	w->w_bytes += w->res_len;
	/* W1 of wait.h; pairs with the acquire loads of pub by readers (poll, read_latest,
	 * seek, lap handling) */
	shmring_store_release(&w->ctrl->pub, n + 1);
	struct shmring_hdr *h = shmring_seg_hdr(w->seg);
	shmring_store_relaxed(&h->stats.msgs, w->w_msgs); /* statistics: one writer */
	shmring_store_relaxed(&h->stats.bytes, w->w_bytes);
	shmring_wake(w->seg, &w->rpage->q);
	return 0;
}

/*
 * Drop the reservation. The slot stays marked "being written" (odd) until the next
 * record, which reuses the same record number; its previous record is lost.
 * Concurrency: the writer only. Returns nothing.
 */
SHMRING_INLINE void shmring_bcast_abort(struct shmring_bcast *w)
{
	w->reserved = 0;
}

/*
 * Copy len bytes in as the next record and publish it: reserve + relaxed atomic copy +
 * commit. Never blocks. Concurrency, Ordering: as reserve and commit.
 * Returns 0; -EMSGSIZE; -EBADF; -EOVERFLOW; the sticky error.
 */
SHMRING_INLINE int shmring_bcast_publish(struct shmring_bcast *w, const void *p, size_t len)
{
	void *buf;
	int rc = shmring_bcast_reserve(w, len, &buf);
	if (shmring_unlikely(rc != 0))
		return rc;
	shmring__bcast_copy_in((_Atomic uint64_t *)buf, p, len);
	return shmring_bcast_commit(w);
}

/* Records completed so far (ctrl->pub); any handle. Ordering: acquire, pairs with the
 * release store in shmring_bcast_commit(). */
SHMRING_INLINE uint64_t shmring_bcast_published(const struct shmring_bcast *b)
{
	return shmring_load_acquire(&b->ctrl->pub); /* pairs with commit's release store */
}

/* ---- reader ---- */

SHMRING_INLINE void shmring__bcast_done(struct shmring_bcast *r, uint64_t n, size_t len,
					const void *data, struct shmring_bcast_rec *rec)
{
	if (rec) {
		rec->data = data;
		rec->len = len;
		rec->seq = n;
		rec->missed = r->missed;
	}
	r->missed = 0;
	r->pos = n + 1;
	r->records++;
	r->bytes += len;
}

/* Lap retries before a read gives up with -EAGAIN (a writer faster than the copy). */
#define SHMRING__BCAST_TRIES 64

/*
 * Copy the next record into buf and move past it. If the reader was lapped it first
 * moves to the oldest record still valid (or the newest, SHMRING_BCAST_LAP_NEWEST) and
 * rec->missed says how many records it lost. A copy the writer overwrote midway is
 * never returned: the reader counts it as lapped and goes on.
 * Concurrency: this reader only; any writer. Ordering: acquire load of the slot's
 * sequence word (pairs with commit's release store), relaxed payload loads, acquire
 * fence (pairs with reserve's release fence), re-check.
 * Returns the record's length (rec, if non-NULL, describes it; rec->data = buf);
 * -EAGAIN nothing new (or a writer so fast that the copy lost 64 times in a row);
 * -EMSGSIZE the record is larger than cap (rec->len says how large; it stays next);
 * -EPIPE nothing new and the writer closed or died; -EPROTO corrupt (sticky);
 * -EBADF not a reader.
 */
SHMRING_INLINE int shmring_bcast_read(struct shmring_bcast *r, void *buf, size_t cap,
				      struct shmring_bcast_rec *rec)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != SHMRING_ROLE_READER))
		return -EBADF;
	r->peeking = 0;
	for (int tries = 0; tries < SHMRING__BCAST_TRIES; tries++) {
		uint64_t n = r->pos, s1, len = 0;
		int rc = shmring__bcast_look(r, n, &s1, &len);
		if (shmring_likely(rc == 0)) {
			struct shmring_bcast_slot *s = shmring__bcast_slot(r, n);
			if (shmring_likely(len <= cap))
				shmring__bcast_copy_out(buf, shmring__bcast_payload(r, n), len);
			/* pairs with the release fence in shmring_bcast_reserve(): if a load
			 * above read a later record's store, the load below sees its odd seq */
			shmring_fence_acquire();
			uint64_t s2 = shmring_load_relaxed(&s->seq);
			if (shmring_likely(s2 == s1)) {
				if (shmring_unlikely(len > cap)) {
					if (rec)
						rec->len = len;
					return -EMSGSIZE;
				}
				shmring__bcast_done(r, n, len, buf, rec);
				return (int)len;
			}
			r->torn++;
			s1 = s2;
			rc = SHMRING__BCAST_LAPPED;
		}
		if (rc == -EAGAIN)
			return shmring__bcast_empty(r);
		if (rc != SHMRING__BCAST_LAPPED)
			return shmring__bcast_broken(r, rc);
		if ((rc = shmring__bcast_lapped(r, n, s1)) < 0)
			return rc;
	}
	return -EAGAIN;
}

/*
 * Zero-copy: describe the next record in place (rec->data points into the slot,
 * read-only). The record is speculative: use it, then call shmring_bcast_release()
 * (or shmring_bcast_validate() first) and discard everything derived from it unless
 * that returns 0. Lapping is handled as in read.
 * Concurrency: this reader only. Ordering: acquire load of the sequence word (pairs
 * with commit's release store); validate() supplies the closing acquire fence.
 * Returns 0; -EAGAIN; -EPIPE; -EPROTO (sticky); -EBADF, as read.
 */
SHMRING_INLINE int shmring_bcast_peek(struct shmring_bcast *r, struct shmring_bcast_rec *rec)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != SHMRING_ROLE_READER))
		return -EBADF;
	r->peeking = 0;
	for (int tries = 0; tries < SHMRING__BCAST_TRIES; tries++) {
		uint64_t n = r->pos, s1, len = 0;
		int rc = shmring__bcast_look(r, n, &s1, &len);
		if (shmring_likely(rc == 0)) {
			rec->data = (const void *)shmring__bcast_payload(r, n);
			rec->len = len;
			rec->seq = n;
			rec->missed = r->missed;
			r->peek_seq = s1;
			r->peek_len = len;
			r->peeking = 1;
			return 0;
		}
		if (rc == -EAGAIN)
			return shmring__bcast_empty(r);
		if (rc != SHMRING__BCAST_LAPPED)
			return shmring__bcast_broken(r, rc);
		if ((rc = shmring__bcast_lapped(r, n, s1)) < 0)
			return rc;
	}
	return -EAGAIN;
}

/*
 * Is the peeked record still intact? May be called any number of times between peek
 * and release (for example before acting on a parsed header).
 * Concurrency: this reader only. Ordering: acquire fence (pairs with the release fence
 * in shmring_bcast_reserve()) before the relaxed re-load of the sequence word, so the
 * caller's reads of the slot are ordered before the check.
 * Returns 0 intact; -ESTALE overwritten (discard what was read); -EINVAL no peek.
 */
SHMRING_INLINE int shmring_bcast_validate(const struct shmring_bcast *r)
{
	if (shmring_unlikely(!r->peeking))
		return -EINVAL;
	/* pairs with the release fence in shmring_bcast_reserve() */
	shmring_fence_acquire();
	uint64_t s2 = shmring_load_relaxed(&shmring__bcast_slot(r, r->pos)->seq);
	return s2 == r->peek_seq ? 0 : -ESTALE;
}

/*
 * Finish with the peeked record: validate it and move past it. On -ESTALE the record
 * counts as missed (it is reported in the next record's rec->missed) and the reader
 * has been repositioned as if lapped.
 * Concurrency, Ordering: as validate.
 * Returns 0 intact; -ESTALE discard it; -EINVAL no peek; -EPROTO (sticky).
 */
SHMRING_INLINE int shmring_bcast_release(struct shmring_bcast *r)
{
	if (shmring_unlikely(!r->peeking))
		return r->broken ? r->broken : -EINVAL;
	r->peeking = 0;
	uint64_t n = r->pos;
	struct shmring_bcast_slot *s = shmring__bcast_slot(r, n);
	/* pairs with the release fence in shmring_bcast_reserve() */
	shmring_fence_acquire();
	uint64_t s2 = shmring_load_relaxed(&s->seq);
	if (shmring_likely(s2 == r->peek_seq)) {
		shmring__bcast_done(r, n, r->peek_len, NULL, NULL);
		return 0;
	}
	r->torn++;
	int rc = shmring__bcast_lapped(r, n, s2);
	return rc < 0 ? rc : -ESTALE;
}

/*
 * Copy the newest complete record into buf: "show the latest frame". Returns the same
 * record again if nothing newer was published; afterwards read() continues after it.
 * Never a record older than the last one this reader was given.
 * Records passed over count as skipped, not lapped (rec->missed counts them).
 * Concurrency: this reader only. Ordering: acquire load of ctrl->pub (pairs with
 * commit's release store), then as read.
 * Returns the length; -EAGAIN nothing published yet (or 64 copies in a row lost to a
 * writer faster than the copy); -EMSGSIZE (rec->len says how large); -EPIPE nothing
 * ever published and the writer closed; -EPROTO (sticky); -EBADF.
 */
SHMRING_INLINE int shmring_bcast_read_latest(struct shmring_bcast *r, void *buf, size_t cap,
					     struct shmring_bcast_rec *rec)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != SHMRING_ROLE_READER))
		return -EBADF;
	r->peeking = 0;
	for (int tries = 0; tries < SHMRING__BCAST_TRIES; tries++) {
		/* pairs with the release store of pub in shmring_bcast_commit() */
		uint64_t h = shmring_load_acquire(&r->ctrl->pub);
		if (shmring_unlikely(h >= SHMRING_BCAST_SEQ_MAX))
			return shmring__bcast_broken(r, -EPROTO);
		/* pub lags the slots by one record between commit's two stores (for good, if
		 * the writer dies there): a reader may already have read record pub, and
		 * the newest record for it is never older than the last one it read */
		if (h < r->pos)
			h = r->pos;
		if (h == 0)
			return shmring__bcast_empty(r);
		uint64_t n = h - 1, s1, len = 0;
		int rc = shmring__bcast_look(r, n, &s1, &len);
		if (rc == SHMRING__BCAST_LAPPED) {
			r->torn++; /* overwritten since we read pub: look again */
			continue;
		}
		/* pub says record n is complete and pub is stored after its seq: a slot
		 * still short of it is corrupt */
		if (shmring_unlikely(rc != 0))
			return shmring__bcast_broken(r, -EPROTO);
		struct shmring_bcast_slot *s = shmring__bcast_slot(r, n);
		if (shmring_likely(len <= cap))
			shmring__bcast_copy_out(buf, shmring__bcast_payload(r, n), len);
		/* pairs with the release fence in shmring_bcast_reserve() */
		shmring_fence_acquire();
		uint64_t s2 = shmring_load_relaxed(&s->seq);
		if (s2 != s1) {
			r->torn++;
			continue;
		}
		if (shmring_unlikely(len > cap)) {
			if (rec)
				rec->len = len;
			return -EMSGSIZE;
		}
		if (n >= r->pos) {
			r->skipped += n - r->pos;
			r->missed += n - r->pos;
			shmring__bcast_done(r, n, len, buf, rec);
		} else if (rec) { /* the same record again: position unchanged */
			rec->data = buf;
			rec->len = len;
			rec->seq = n;
			rec->missed = 0;
		}
		return (int)len;
	}
	return -EAGAIN;
}

/* ---- blocking helpers (src/bcast.c) ---- */

/* Wait until the record at the reader's position is published, up to timeout_ms (0: no
 * wait, SHMRING_FOREVER). Concurrency: this reader only. Ordering: the wait.h protocol;
 * the poll's acquire load of pub pairs with commit's release store.
 * Returns 1 ready; -EAGAIN not ready and timeout_ms == 0; -ETIMEDOUT; -EPIPE the writer
 * closed or died and the reader has everything; -EBADF; -EPROTO. */
SHMRING_API int shmring_bcast_wait(struct shmring_bcast *r, int timeout_ms);
/* read, waiting up to timeout_ms for a record. Returns the length or the errors of read
 * and wait (-ETIMEDOUT instead of -EAGAIN when timeout_ms != 0). */
SHMRING_API int shmring_bcast_read_wait(struct shmring_bcast *r, void *buf, size_t cap,
					struct shmring_bcast_rec *rec, int timeout_ms);
/* peek, waiting up to timeout_ms for a record. Returns 0 or the errors of peek and wait. */
SHMRING_API int shmring_bcast_peek_wait(struct shmring_bcast *r, struct shmring_bcast_rec *rec,
					int timeout_ms);

#endif /* SHMRING_BCAST_H */
