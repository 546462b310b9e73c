/* SPDX-License-Identifier: MIT */
/*
 * shmring/pool.h: a zero-copy frame pool with several subscribers.
 *
 * A pool segment holds N page-aligned buffers of one fixed size (a raw video frame:
 * 1080p NV12 is 3,110,400 bytes, 4K NV12 12,441,600) and per-buffer metadata. One
 * producer loans a free buffer, fills it in place and publishes it; every subscriber
 * attached at that moment gets a reference, uses the frame in place and releases it.
 * A buffer returns to the pool when its last reference goes.
 *
 * BUFFER STATE. Each buffer has one 64-bit state word: bit i (i < max_subs) is set
 * while subscriber i holds a reference (queued for it, or taken and not released), and
 * bit 63 (SHMRING_POOL_LOANED) while the producer holds it. 0 means free. Every
 * transition is one atomic operation on that word: a loan is CAS 0 -> LOANED (only the
 * producer allocates), publish stores LOANED | recipients (a loaned word is the
 * producer's alone, see publish) and then drops LOANED with fetch_and, a release is
 * fetch_and(~bit), and the release that leaves 0 has freed the buffer. So no process
 * can die "between" a release and a free-list push, and the holder set is exact:
 * reclaiming a dead subscriber is clearing its bit in every word.
 *
 * FRAME LOG. Publication appends one entry {position, buffer, recipients, descriptor}
 * to a log of log_cap one-line entries (the smallest power of two >= N), storing the
 * entry's position word last with release, then the log tail with release. Each
 * subscriber has its own cursor into the log (the oldest frame queued for it) and polls
 * the entry there: an entry naming the cursor's position is a published frame, one
 * naming the position a lap earlier is "nothing yet", so in the steady state a
 * subscriber reads no line the producer writes but that entry and the frame itself (the
 * tail line stays the producer's): the descriptor (length, user fields, checksum) rides
 * in the entry because a second line whose address depends on the entry's buffer index
 * is a second cache-line trip on every hand-over. Entries start out naming the position
 * a lap before their first frame's (nothing yet). Only what the entry does not settle (a
 * stale cursor; position 0 in buffer 0, which a zeroed entry of an older pool would also
 * name) consults the tail. Every entry between a subscriber's cursor and the tail is
 * addressed to it and its buffer keeps that subscriber's bit, so those buffers are
 * distinct and busy: a queue never exceeds N entries and the log never overwrites an
 * entry someone still has to read. A frame's sequence number is its log position (48
 * bits, wrapping).
 *
 * POLICIES. A `block` subscriber (a recorder) never loses a frame: the producer waits
 * while that subscriber has queue_depth frames queued. A `drop-oldest` subscriber (a
 * preview) never slows the producer: when no buffer is free, the producer takes the
 * oldest frame queued for a drop-oldest subscriber (CAS on that subscriber's cursor,
 * which the subscriber also CASes to take; exactly one wins) and drops that reference,
 * counting it in the subscriber's drops and in the segment's stats.drops. Frames a
 * subscriber has taken are never dropped; a subscriber holds at most max_held at once.
 *
 * THE GUARANTEE. Creation requires nbufs >= queue_depth + max_subs * max_held. When
 * the producer asks for a buffer, each block subscriber has at most queue_depth - 1
 * frames queued, and those queues are suffixes of one log, so together they pin at
 * most queue_depth - 1 buffers; taken frames pin at most max_subs * max_held more. At
 * least one buffer is therefore free or held only by drop-oldest queues, which the
 * producer can drop (or held by leaving subscribers, whose references it may drop).
 * Hence the producer waits only for a block subscriber that has fallen queue_depth
 * frames behind (counted in that subscriber's stalls) and never for a drop-oldest
 * subscriber, however slow, nor for buffers: ctrl->nobuf_stalls stays 0 unless a
 * participant dies holding frames (until it is reclaimed) or misbehaves.
 *
 * JOINING AND LEAVING. A subscriber claims a record (CAS FREE -> JOINING), sets its
 * cursor to NONE and its policy, then sets its bit in ctrl->active. The producer sends
 * each frame to the subscribers in ctrl->active and admits a newcomer (cursor NONE ->
 * the position of the frame being published) in the same step, so a subscriber's first
 * frame is the first one published after it joined. A subscriber leaves (or a survivor
 * finalizes a dead one) in steps: set its bit in ctrl->leaving (from then on it reads
 * nothing, so the producer may clear its bit in any buffer when it needs one, whatever
 * its policy) and clear its bit in ctrl->active; wait out the EPOCH below (after that
 * no frame is addressed to it); clear its bit in every buffer; clear its leaving bit and
 * wait out the epoch again; free the record. A leaver that stops half-way, or dies,
 * pins no buffer the producer needs.
 *
 * EPOCH. Everything the producer does to subscriber records and to buffers on their
 * behalf (admission, addressing, dropping, counting stalls) happens between two
 * increments of ctrl->epoch (odd inside). A finalizer clears a mask bit (seq_cst) and
 * then reads the epoch (seq_cst): if it is even, any later epoch loads the mask after
 * the clear; if it is odd, it waits for the value to move on (or for the producer to be
 * dead). After both waits nobody but the finalizer touches the record. The producer
 * never sleeps inside an epoch. That needs a store-load fence between the producer's
 * odd store and its mask loads, and the producer enters an epoch on every publish,
 * where a locked instruction would wait for the frame's stores. So the fence is
 * asymmetric where the kernel offers it: a producer that registered for
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) sets ctrl->fence at attach (seq_cst,
 * before its first epoch) and enters epochs with a plain store; a finalizer that reads
 * ctrl->fence set (seq_cst, after its clear) calls membarrier between its clear and its
 * epoch load, which puts a full barrier into the producer wherever it runs: either the
 * producer's mask load follows that barrier and sees the clear, or its odd store
 * preceded it and the finalizer sees an odd epoch. A finalizer whose membarrier fails
 * gives up as below (the producer's own sweep finishes the record: in the producer's
 * thread no fence is needed). Without membarrier (or with SHMRING_POOL_NO_MEMBARRIER set
 * in the producer's environment) the producer increments with seq_cst RMWs.
 *
 * MEMBERSHIP. A subscriber's record line is written by its take, so every producer
 * read of it (is the record admitted? which policy? how long is its queue?) fetches
 * the line from the subscriber's CPU: one cache-line trip per frame on the hand-over's
 * path (13% of a round trip here). A joiner therefore adds one to ctrl->joins (seq_cst)
 * after initialising its record and before setting its active bit. Publish loads
 * ctrl->joins after ctrl->active: if it reads the value of the last check, no record
 * has a new occupant since (a newcomer's active bit, once seen, makes its increment
 * visible), and the records admitted then (`known`) are admitted still, with the
 * policies read then; else it forgets them and reads every record again. A record
 * that changed hands has cursor NONE until the next publish admits it, so a loan
 * between the two can trust its old knowledge as well: a record that is not admitted
 * has no queue to gate on. For a known block record the producer keeps a position no
 * later than its cursor (a cursor only moves forward, and a new occupant starts later)
 * and reads the cursor only when that bound says the queue may be full and the buffer
 * of the frame that would make room does not show it taken (CREDIT, at
 * shmring__pool_credit()).
 *
 * DEAD PEERS. Identities are (participant slot, generation) and liveness is the
 * participant's OFD lock. A dead subscriber's record is claimed by any survivor (CAS
 * to FINAL) and finalized as above; its references are counted in stats.abandoned as
 * they are dropped. A finalizer that gives up (the producer stayed inside an epoch)
 * leaves the record LEAVING, as SHMRING_POOL_LEAVING_DEAD if its holder died, so that
 * whoever finishes the job still counts what the dead held.
 * The producer sweeps for dead subscribers after each sleep slice while it waits, and
 * while it runs at most every 100 ms (every 64th loan looks at the clock); a joiner
 * that finds every record taken sweeps too. The producer's identity is in ctrl->owner; a replacement
 * producer, or a subscriber that sees the producer dead, takes ctrl->owner over by
 * CAS and recovers: closes an epoch left odd, returns the loan (ctrl->loan records it
 * before the buffer is taken: published -> drop the producer's bit, where "published"
 * includes a publish that died after its log entry, before its tail store, which the
 * recovery finishes by moving the tail, since a subscriber may already hold that
 * frame; not published -> the buffer is free again), and settles a drop left half-done
 * (the cursor word carries the buffer being dropped until its reference is gone). Subscribers see a
 * dead producer within SHMRING_PEER_CHECK_MS in blocking calls (every 1024 empty polls
 * in non-blocking ones): they drain what was published, then get -EPIPE, as after a
 * close (shmring_pool_producer_closed() tells the two apart). A subscription outlives
 * its producer: once a replacement attaches, its frames follow the old ones, so a
 * subscriber that wants them waits on after -EPIPE (take_wait again, or poll
 * shmring_pool_producer_alive()).
 *
 * MAPPING. Subscribers read frames through a second, PROT_READ mapping of the data
 * region, so a stray write through a frame pointer faults in the subscriber instead of
 * corrupting what the others see. The control region (cursors, buffer states) stays
 * writable: subscribers must write their cursor and drop their references. The
 * segment's own mapping of the data region remains writable in the process, so this is
 * protection against mistakes, not against a hostile subscriber (a hostile process
 * with write access can corrupt any shared memory; see "never trust" below).
 *
 * NEVER TRUST SHARED MEMORY. Each shared word is read once into a local; positions are
 * bounded by log_cap, buffer indices by N, lengths by the buffer size, entries are
 * checked against the position they were read for. An impossible value returns -EPROTO
 * and the handle stays broken.
 *
 * CHECKSUMS. With SHMRING_POOL_F_CHECKSUM at creation, publish stores XXH3-64 of the
 * frame's bytes in its metadata; shmring_pool_frame_verify() (and shmdump) check it.
 *
 * TIMESTAMPS. A frame's ts_ns is what the producer put there (a capture time, which
 * only the producer knows; 0: none). With SHMRING_POOL_F_STAMP at creation, publish
 * stamps CLOCK_MONOTONIC into frames left at 0. Not by default: the clock read costs
 * about as much as the rest of publish (~30 ns here, 14% of a hand-over round trip).
 *
 * DEMOTING. The pool has no set_demote of its own (spsc.h, mpmc.h and bcast.h have
 * one): demoting its own lines (log entry, metadata) after publish shortened a round
 * trip by 1-3% here, too little. A frame's lines are the application's, and only it
 * knows which ones a subscriber reads first: when producer and subscribers run on
 * different physical cores, shmring_demote() on those lines (a header, say) before or
 * after publish made a 1080p round trip that stamps two lines 3-10% shorter
 * (bench/RESULTS.md). Not the whole frame: demoting a 1080p frame just written cost
 * 0.7 ms here, where the subscriber's sequential reads are prefetched anyway.
 *
 * CONCURRENCY. One producer handle per pool (-EBUSY for a second live one) and any
 * number of subscriber handles (up to max_subs), each handle used by one thread at a
 * time; several handles may live in one process. Handles do not survive fork().
 *
 *   call                      | who            | may run concurrently with
 *   loan, publish, cancel     | producer       | everything subscribers do
 *   take, release, verify     | its subscriber | everything, other subscribers
 *   subscribe, close, reclaim | anyone         | everything
 */
#ifndef SHMRING_POOL_H
#define SHMRING_POOL_H

#include "wait.h"

#include <errno.h>

#define SHMRING_POOL_MAX_BUFS 1024u
#define SHMRING_POOL_MAX_SUBS (SHMRING_MAX_PARTS - 1u) /* 47: one slot is the producer's */
#define SHMRING_POOL_LOANED (UINT64_C(1) << 63)
#define SHMRING_POOL_POS_BITS 48
#define SHMRING_POOL_POS_MASK ((UINT64_C(1) << SHMRING_POOL_POS_BITS) - 1)
#define SHMRING_POOL_CURSOR_NONE UINT64_MAX /* subscriber not admitted yet */
#define SHMRING_POOL_DEFAULT_BUFS 8u
#define SHMRING_POOL_DEFAULT_SUBS 4u

/* Segment flags (shmring_hdr.flags, kind bits). */
#define SHMRING_POOL_F_CHECKSUM (1u << 16) /* publish stores XXH3-64 of each frame */
#define SHMRING_POOL_F_STAMP (1u << 17)    /* publish stamps ts_ns of frames left at 0 */
/* Set by the library on every pool it creates (callers need not pass it): joiners count
 * themselves in ctrl->joins. A library that does not know it refuses the pool, so no
 * joiner can skip the count the producer relies on (MEMBERSHIP below). */
#define SHMRING_POOL_F_JOINS (1u << 18)
/* Set by the library on every pool it creates: each log entry is a line (128 bytes)
 * carrying the frame's descriptor (struct shmring_pool_entry). Pools without it (16-byte
 * entries, made by an older library) are refused with -EPROTO, and older libraries
 * refuse these as they refuse any flag they do not know. */
#define SHMRING_POOL_F_DESC (1u << 19)
#define SHMRING_POOL_F_ALL \
	(SHMRING_POOL_F_CHECKSUM | SHMRING_POOL_F_STAMP | SHMRING_POOL_F_JOINS | SHMRING_POOL_F_DESC)

/* Geometry words in the segment header (hdr.geo[]). */
#define SHMRING_POOL_GEO_NBUFS 0      /* buffers, 2..SHMRING_POOL_MAX_BUFS (see THE
				       * GUARANTEE: >= queue_depth + max_subs * max_held) */
#define SHMRING_POOL_GEO_BUF_SIZE 1   /* largest frame, bytes */
#define SHMRING_POOL_GEO_BUF_STRIDE 2 /* buffer spacing in the data region: buf_size
				       * rounded up to a page; data_size = nbufs * stride */
#define SHMRING_POOL_GEO_MAX_SUBS 3   /* subscriber records, 1..SHMRING_POOL_MAX_SUBS */
#define SHMRING_POOL_GEO_LOG_CAP 4    /* log entries: the smallest power of two >= nbufs */
#define SHMRING_POOL_GEO_LIMITS 5     /* max_held (bits 0-31) | queue_depth (bits 32-63) */
#define SHMRING_POOL_GEO_OFFS 6       /* meta_off (bits 0-31) | subs_off (bits 32-63),
				       * offsets in the control region */
#define SHMRING_POOL_GEO_LOG_OFF 7    /* log_off, offset in the control region */

/* Subscriber policies. */
enum shmring_pool_policy {
	SHMRING_POOL_BLOCK = 1,       /* the producer waits rather than drop a frame */
	SHMRING_POOL_DROP_OLDEST = 2, /* the subscriber loses its oldest queued frames */
};

/* Identity words (ctrl->owner, shmring_pool_sub.state): bits 0-7 a state or role,
 * bits 8-15 the participant slot, bits 32-63 that slot's generation. */
#define SHMRING_POOL_ID(kind, slot, gen) \
	((uint64_t)(kind) | ((uint64_t)(slot) << 8) | ((uint64_t)(gen) << 32))
#define SHMRING_POOL_ID_KIND(w) ((uint32_t)((w) & 0xffu))
#define SHMRING_POOL_ID_SLOT(w) ((uint32_t)(((w) >> 8) & 0xffu))
#define SHMRING_POOL_ID_GEN(w) ((uint32_t)((w) >> 32))

/* ctrl->owner kinds. */
enum shmring_pool_owner {
	SHMRING_POOL_OWNER_NONE = 0,      /* no producer has attached yet */
	SHMRING_POOL_OWNER_PRODUCER = 1,  /* the producer (alive if its slot is) */
	SHMRING_POOL_OWNER_RECLAIMER = 2, /* a survivor recovering after a dead producer */
	SHMRING_POOL_OWNER_CLOSED = 3,    /* end of stream: the producer closed it (identity 0)
					   * or a reclaimer did after its death (the dead one's) */
};

/* Subscriber record states (shmring_pool_sub.state kind). */
enum shmring_pool_sub_state {
	SHMRING_POOL_SUB_FREE = 0,
	SHMRING_POOL_SUB_JOINING = 1, /* claimed by the subscriber in the identity */
	SHMRING_POOL_SUB_ACTIVE = 2,
	SHMRING_POOL_SUB_LEAVING = 3, /* left; anyone may finalize it */
	SHMRING_POOL_SUB_FINAL = 4,   /* being finalized by the identity */
};
/* A LEAVING record whose holder died (generation field 1): finalizing it counts the
 * references it drops in stats.abandoned. A clean leaver's LEAVING word is all zero
 * but the kind. */
#define SHMRING_POOL_LEAVING_DEAD SHMRING_POOL_ID(SHMRING_POOL_SUB_LEAVING, 0, 1)

/* Frame metadata flags. */
#define SHMRING_POOL_FRAME_F_CHECKSUM 1u /* checksum holds XXH3-64 of the frame */

/* The control region (at ctrl_off). */
struct shmring_pool_ctrl {
	/* line 0: written by the owner (producer) */
	_Atomic uint64_t tail;         /* next frame position; release-stored by publish */
	_Atomic uint64_t epoch;        /* odd while the owner works on subscriber records */
	_Atomic uint64_t loan;         /* (position << 16) | (buffer + 1) of the loan; 0 none */
	_Atomic uint64_t nobuf_stalls; /* loans that found no free or droppable buffer */
	_Atomic uint64_t block_stalls; /* loans that waited for a block subscriber */
	uint8_t pad0[SHMRING_LINE - 40];
	/* line 1: rarely written */
	_Atomic uint64_t owner;        /* identity word, kind enum shmring_pool_owner */
	_Atomic uint64_t active;       /* subscribers that new frames go to (bit per record) */
	_Atomic uint64_t leaving;      /* subscribers whose queued frames the producer may drop
				        * whatever their policy (they are leaving) */
	_Atomic uint64_t joins;        /* subscriber joins so far (SHMRING_POOL_F_JOINS) */
	_Atomic uint64_t fence;        /* 1: the owner enters epochs with a plain store, and
				        * finalizers fence for it (EPOCH); 0: locked increments */
	uint8_t pad1[SHMRING_LINE - 40];
	struct shmring_waitq room_q;   /* the producer sleeps here: buffer or queue room */
	struct shmring_waitq frame_q;  /* subscribers sleep here: a new frame */
};
_Static_assert(offsetof(struct shmring_pool_ctrl, owner) == 128, "layout");
_Static_assert(offsetof(struct shmring_pool_ctrl, joins) == 152, "layout");
_Static_assert(offsetof(struct shmring_pool_ctrl, fence) == 160, "layout");
_Static_assert(offsetof(struct shmring_pool_ctrl, room_q) == 256, "layout");
_Static_assert(offsetof(struct shmring_pool_ctrl, frame_q) == 384, "layout");
_Static_assert(sizeof(struct shmring_pool_ctrl) == 512, "layout");

/* Per-buffer metadata: one line per buffer (at meta_off + 128 * index). The frame
 * fields are written by the producer while it holds the loan and published by the
 * release store of ctrl->tail; they are the inspectors' copy (shmdump: what each buffer
 * holds, however old its log entry). Subscribers read the log entry's descriptor and
 * only release references here. */
struct shmring_pool_meta {
	_Atomic uint64_t state;    /* holder bits | SHMRING_POOL_LOANED; 0: free */
	_Atomic uint64_t seq;      /* log position of the frame */
	_Atomic uint64_t len;      /* bytes, <= buf_size */
	_Atomic uint64_t ts_ns;    /* CLOCK_MONOTONIC, or 0 */
	_Atomic uint64_t user;     /* free for the application */
	_Atomic uint64_t checksum; /* XXH3-64 of [0, len) when flags say so */
	_Atomic uint32_t width, height, format, stride;
	_Atomic uint32_t flags;    /* SHMRING_POOL_FRAME_F_* */
	uint32_t pad32;
	uint8_t pad[SHMRING_LINE - 72];
};
_Static_assert(offsetof(struct shmring_pool_meta, width) == 48, "layout");
_Static_assert(offsetof(struct shmring_pool_meta, flags) == 64, "layout");
_Static_assert(sizeof(struct shmring_pool_meta) == SHMRING_LINE, "layout");

/* A subscriber record (at subs_off + 256 * index). */
struct shmring_pool_sub {
	/* line 0: the subscriber's (the producer CASes cursor when it drops a frame) */
	_Atomic uint64_t state;     /* identity word, kind enum shmring_pool_sub_state */
	_Atomic uint64_t cursor;    /* (position << 16) | (buffer being dropped + 1), or NONE */
	_Atomic uint64_t frames;    /* frames taken */
	_Atomic uint32_t policy;    /* enum shmring_pool_policy */
	_Atomic uint32_t pad32;
	_Atomic uint64_t joined_ns; /* CLOCK_MONOTONIC */
	uint8_t pad0[SHMRING_LINE - 40];
	/* line 1: written by the producer */
	_Atomic uint64_t drops;     /* frames dropped for this subscriber */
	_Atomic uint64_t stalls;    /* loans that waited for this subscriber */
	uint8_t pad1[SHMRING_LINE - 16];
};
_Static_assert(offsetof(struct shmring_pool_sub, joined_ns) == 32, "layout");
_Static_assert(offsetof(struct shmring_pool_sub, drops) == 128, "layout");
_Static_assert(sizeof(struct shmring_pool_sub) == 2 * SHMRING_LINE, "layout");

/* A log entry: one line (at log_off + 128 * (position % log_cap)) holding the frame's
 * descriptor, so that a subscriber learns everything about a frame from the line it
 * polls (SHMRING_POOL_F_DESC). Written by publish, pos_buf last. */
struct shmring_pool_entry {
	_Atomic uint64_t pos_buf;  /* (position << 16) | buffer */
	_Atomic uint64_t to;       /* recipients: subscriber bits */
	_Atomic uint64_t len;      /* bytes, <= buf_size */
	_Atomic uint64_t ts_ns;    /* as in the metadata */
	_Atomic uint64_t user;
	_Atomic uint64_t checksum; /* XXH3-64 of [0, len) in a pool with checksums */
	_Atomic uint32_t width, height, format, stride;
	uint8_t pad[SHMRING_LINE - 64];
};
_Static_assert(offsetof(struct shmring_pool_entry, len) == 16, "layout");
_Static_assert(offsetof(struct shmring_pool_entry, width) == 48, "layout");
_Static_assert(sizeof(struct shmring_pool_entry) == SHMRING_LINE, "layout");

/* Geometry as decoded and checked (shmring_pool_geo_check). */
struct shmring_pool_geo {
	uint32_t nbufs, max_subs, log_cap, max_held, queue_depth;
	uint64_t buf_size, stride;
	uint64_t meta_off, subs_off, log_off, ctrl_need; /* in the control region */
};

struct shmring_pool_opts {
	uint64_t buf_size;    /* largest frame in bytes (required) */
	uint32_t nbufs;       /* buffers, up to SHMRING_POOL_MAX_BUFS, and at least
			       * queue_depth + max_subs * max_held (so 5 with the other
			       * defaults); 0: SHMRING_POOL_DEFAULT_BUFS */
	uint32_t max_subs;    /* subscribers at once; 0: SHMRING_POOL_DEFAULT_SUBS */
	uint32_t max_held;    /* frames a subscriber may hold taken at once; 0: 1 */
	uint32_t queue_depth; /* frames a block subscriber may fall behind before the producer
			       * waits; 0: nbufs - max_subs * max_held */
	uint32_t flags;       /* SHMRING_POOL_F_CHECKSUM, SHMRING_POOL_F_STAMP */
	uint32_t mode;        /* named pools: permission bits (at most 0777, else
			       * -EINVAL), as given: no umask; 0: 0600 */
};

struct shmring_pool_sub_opts {
	uint32_t policy; /* enum shmring_pool_policy; 0: SHMRING_POOL_BLOCK */
	uint32_t flags;  /* reserved, 0 */
};

/* A frame as the caller sees it (process-local: a copy of the metadata). The producer
 * fills len and the user fields before publish; a subscriber reads them after take. */
struct shmring_pool_frame {
	void *data;        /* the buffer; read-only mapping for subscribers */
	uint64_t capacity; /* buffer size (buf_size) */
	uint64_t len;      /* bytes of frame in data */
	uint64_t seq;      /* set by publish: the frame's position */
	uint64_t ts_ns;    /* CLOCK_MONOTONIC or 0, as the producer set it; publish stamps
			    * it if left 0 in a pool with SHMRING_POOL_F_STAMP */
	uint64_t user;     /* free for the application (a presentation timestamp...) */
	uint64_t checksum; /* set by publish when the pool has SHMRING_POOL_F_CHECKSUM */
	uint32_t width, height, format, stride;
	uint32_t flags;    /* SHMRING_POOL_FRAME_F_* */
	uint32_t index;    /* buffer index: private, do not change */
};

/* Process-local handle. Fields are private; they are here for the inline fast path. */
struct shmring_pool {
	struct shmring_seg *seg;
	struct shmring_pool_ctrl *ctrl;
	struct shmring_pool_meta *meta;
	struct shmring_pool_sub *subs;
	struct shmring_pool_entry *log;
	uint8_t *data;          /* the writable data region (producer) */
	uint8_t *rodata;        /* subscriber: PROT_READ mapping of the data region */
	uint64_t buf_size, stride, data_size;
	uint32_t nbufs, max_subs, log_mask, max_held, queue_depth;
	uint32_t role;          /* SHMRING_ROLE_PRODUCER or SHMRING_ROLE_SUBSCRIBER */
	uint32_t pslot, pgen;   /* our participant slot and its generation */
	int broken;             /* sticky negative errno once corruption was seen */
	int spin;
	int checksum;           /* the pool checksums frames */
	int stamp;              /* the pool stamps frames the producer left at ts_ns 0 */
	int fence;              /* producer: finalizers fence for our epochs (ctrl->fence) */
	/* producer */
	uint64_t tail;          /* our copy of ctrl->tail (we are its only writer) */
	uint64_t msgs, bytes;
	uint64_t stalled;       /* subscribers already counted as stalling this loan */
	uint64_t last_sweep_ns;  /* producer: last sweep of the subscribers; subscriber: last
				  * check of the producer (CLOCK_MONOTONIC ns) */
	uint32_t loaned;        /* buffer + 1 of our loan, 0 none */
	int joins_ok;           /* the pool counts joins (SHMRING_POOL_F_JOINS) */
	uint64_t joins_seen;    /* ctrl->joins when `known` was last checked */
	uint64_t known;         /* records admitted, whose occupant cannot have changed
				 * while ctrl->joins reads joins_seen (MEMBERSHIP) */
	uint64_t known_block;   /* those of them with the block policy */
	uint64_t low[SHMRING_POOL_MAX_SUBS]; /* per known_block record: a position no later
				 * than its cursor (cursors only move forward) */
	uint32_t hint;          /* where to look for a free buffer next */
	uint32_t tick;
	int nobuf_counted, block_counted;
	/* subscriber */
	uint32_t sub;           /* our record */
	uint32_t policy;
	uint64_t bit;           /* 1 << sub */
	uint64_t sub_id;        /* our record's state word while ACTIVE */
	uint32_t held;          /* frames taken and not released */
	uint32_t empty_polls;
	uint64_t frames;
	uint64_t held_map[SHMRING_POOL_MAX_BUFS / 64];
	/* producer (CREDIT): position + 1 of the last frame published in each buffer (0:
	 * none), and the buffer of each of the last MAX_BUFS positions */
	uint64_t buf_pos[SHMRING_POOL_MAX_BUFS];
	uint16_t pos_buf[SHMRING_POOL_MAX_BUFS];
};

/* Per-subscriber counters (shmring_pool_sub_stats). */
struct shmring_pool_sub_stats {
	uint64_t frames; /* frames taken */
	uint64_t drops;  /* frames dropped for it (drop-oldest) */
	uint64_t stalls; /* producer loans that waited for it */
	uint64_t queued; /* frames queued now */
	uint32_t policy;
	uint32_t index;  /* record index */
};

/* Pool-wide counters (shmring_pool_stats). */
struct shmring_pool_stats {
	uint64_t published;    /* frames published (the log tail) */
	uint64_t drops;        /* hdr stats.drops */
	uint64_t nobuf_stalls; /* loans that found no free or droppable buffer */
	uint64_t block_stalls; /* loans that waited for a block subscriber */
	uint32_t free_bufs;    /* buffers free now */
	uint32_t loaned_bufs;  /* buffers loaned now */
	uint32_t subscribers;  /* records not FREE */
	uint32_t owner;        /* enum shmring_pool_owner */
};

/* ---- creation and attach (src/pool.c) ---- */

/*
 * Create a pool. name: NULL for an anonymous memfd pool (share shmring_pool_fd()).
 * sub NULL: the caller becomes the producer; else a subscriber with those options (the
 * producer attaches later with shmring_pool_open_producer()).
 * Concurrency: any. Returns 0 or: -EINVAL (opts: buf_size 0 or > 1 GiB, counts out of
 * range, nbufs < queue_depth + max_subs * max_held; shmring_last_error_detail() says
 * which), -EEXIST, -ENOSPC, -EACCES, -ENOMEM, other segment errors (segment.h).
 */
SHMRING_API int shmring_pool_create(const char *name, const struct shmring_pool_opts *o,
				    const struct shmring_pool_sub_opts *sub,
				    struct shmring_pool **out);
/*
 * Attach as the producer. A dead producer is replaced (its loan and any half-done drop
 * are recovered) and dead subscribers are reclaimed. Frames continue from the last
 * published position. Returns 0; -EBUSY a live producer is attached; -EPROTO not a
 * valid pool (or corrupt control region); -EUSERS participant table full; segment
 * errors.
 */
SHMRING_API int shmring_pool_open_producer(const char *name, struct shmring_pool **out);
SHMRING_API int shmring_pool_open_producer_fd(int fd, struct shmring_pool **out);
/*
 * Attach as a subscriber (NULL opts: block). Frames published from now on are queued
 * for it. Returns 0; -EUSERS max_subs subscribers are attached (dead ones are reclaimed
 * first) or the participant table is full; -EINVAL bad opts; -EPROTO not a valid pool;
 * segment errors.
 */
SHMRING_API int shmring_pool_subscribe(const char *name, const struct shmring_pool_sub_opts *o,
				       struct shmring_pool **out);
SHMRING_API int shmring_pool_subscribe_fd(int fd, const struct shmring_pool_sub_opts *o,
					  struct shmring_pool **out);
/*
 * Producer: cancel the loan, mark end of stream (subscribers drain, then -EPIPE), wake
 * subscribers. Subscriber: release every frame it holds or has queued and free its
 * record. Then detach and free the handle. Returns 0, or -EINVAL for NULL.
 */
SHMRING_API int shmring_pool_close(struct shmring_pool *p);
/* The segment's descriptor (to pass an anonymous pool to another process). */
SHMRING_API int shmring_pool_fd(const struct shmring_pool *p);
SHMRING_API struct shmring_seg *shmring_pool_seg(const struct shmring_pool *p);
/* Polls before sleeping in blocking calls (default, and for a negative spin:
 * SHMRING_SPIN_DEFAULT; 0: no spinning). */
SHMRING_API void shmring_pool_set_spin(struct shmring_pool *p, int spin);

/* ---- recovery and inspection (src/pool.c) ---- */

/*
 * Reclaim dead participants now: subscribers whose process died (their references go
 * back, counted in stats.abandoned) and, if the producer is dead, its loan and any
 * half-done drop. Any handle may call it; producers and blocking calls also do it on
 * their own. Returns the number of participants reclaimed, or -EPROTO.
 */
SHMRING_API int shmring_pool_reclaim(struct shmring_pool *p);
/* Buffers free now (a snapshot). */
SHMRING_API int shmring_pool_free_count(const struct shmring_pool *p);
SHMRING_API int shmring_pool_stats(const struct shmring_pool *p, struct shmring_pool_stats *st);
/* Counters of this subscriber handle's record. -EBADF for a producer handle. */
SHMRING_API int shmring_pool_sub_stats(const struct shmring_pool *p,
				       struct shmring_pool_sub_stats *st);
/* 1 if a live producer is attached, 0 if not (slow: one fcntl). */
SHMRING_API int shmring_pool_producer_alive(const struct shmring_pool *p);
/* After -EPIPE: 1 if the producer ended the stream with shmring_pool_close(), 0 if it
 * died (or no producer ever attached, or one is attached now). Either way the handle
 * stays subscribed: frames of a producer that attaches later (open_producer) follow. */
SHMRING_API int shmring_pool_producer_closed(const struct shmring_pool *p);
/*
 * Check a frame's checksum. Concurrency: the holder of the frame. Returns 0 it matches,
 * -EBADMSG it does not, -ENODATA the frame carries no checksum, -EINVAL bad frame.
 */
SHMRING_API int shmring_pool_frame_verify(const struct shmring_pool *p,
					  const struct shmring_pool_frame *f);
/* XXH3-64 as the pool uses it (for tools that check frames themselves). */
SHMRING_API uint64_t shmring_pool_checksum(const void *data, size_t len);
/*
 * Decode and check a pool's geometry words (a pure function over values, for attach,
 * shmdump and the fuzzers). Returns 0 and fills *g, or -EPROTO with a sentence in why.
 */
SHMRING_API int shmring_pool_geo_check(const uint64_t geo[SHMRING_GEO_WORDS], uint32_t max_parts,
				       uint64_t ctrl_size, uint64_t data_size,
				       struct shmring_pool_geo *g, char *why, size_t why_len);

/* ---- blocking variants (src/pool.c) ---- */

/* As shmring_pool_loan, waiting up to timeout_ms (0: no wait; SHMRING_FOREVER: no
 * limit). Returns 0 or the errors of loan, -ETIMEDOUT. */
SHMRING_API int shmring_pool_loan_wait(struct shmring_pool *p, struct shmring_pool_frame *f,
				       int timeout_ms);
/* As shmring_pool_take, waiting up to timeout_ms. Returns 0 or the errors of take,
 * -ETIMEDOUT. */
SHMRING_API int shmring_pool_take_wait(struct shmring_pool *p, struct shmring_pool_frame *f,
				       int timeout_ms);

/* ---- slow paths of the inline calls (src/pool.c) ---- */
SHMRING_API int shmring__pool_loan_slow(struct shmring_pool *p, struct shmring_pool_frame *f);
SHMRING_API int shmring__pool_take_empty(struct shmring_pool *p);
SHMRING_API int shmring__pool_broken(struct shmring_pool *p, int err, const char *what);
SHMRING_API void shmring__pool_housekeep(struct shmring_pool *p);
SHMRING_API uint64_t shmring__pool_stamp(struct shmring_pool *p, struct shmring_pool_frame *f);

/* ---- inline fast paths ---- */

SHMRING_INLINE uint64_t shmring__pool_pos_diff(uint64_t a, uint64_t b)
{
	return (a - b) & SHMRING_POOL_POS_MASK;
}

/* Frames queued from cursor position c up to tail t. Publish stores a frame's log entry
 * before the tail and take reads the entry first, so a subscriber may take frame t while
 * the tail still reads t (the producer between the two stores, or dead there, which its
 * recovery finishes): a cursor one ahead of the tail has nothing queued. */
SHMRING_INLINE uint64_t shmring__pool_queued(uint64_t t, uint64_t c)
{
	uint64_t d = shmring__pool_pos_diff(t, c);
	return d == SHMRING_POOL_POS_MASK ? 0 : d;
}

SHMRING_INLINE uint64_t shmring__pool_cursor_pos(uint64_t w)
{
	return w >> 16;
}

/* Open the owner's epoch (odd). The mask loads that follow must not be performed
 * before the odd value is visible to a finalizer (a store-load order, see EPOCH). With
 * ctrl->fence set, the finalizer supplies the fence (membarrier: a barrier in every
 * running thread of this process, between its mask clear and its epoch load) and this
 * is a plain store behind a compiler barrier: a locked increment on every publish waits
 * for the frame's stores to drain, ~10% of a hand-over round trip. Without it, a
 * seq_cst increment, paired with the finalizer's seq_cst fetch_and of ctrl->active and
 * seq_cst load of ctrl->epoch. */
SHMRING_INLINE void shmring__pool_epoch_enter(struct shmring_pool *p)
{
	if (shmring_likely(p->fence)) {
		uint64_t v = shmring_load_relaxed(&p->ctrl->epoch); /* our own last store */
		/* ordered before our mask loads for finalizers by their membarrier(), which
		 * pairs with this (epoch_handshake() in src/pool.c); the compiler barrier keeps
		 * the store in program order before those loads */
		shmring_store_relaxed(&p->ctrl->epoch, v + 1);
		atomic_signal_fence(memory_order_seq_cst);
		return;
	}
	/* pairs with epoch_handshake()'s seq_cst loads (src/pool.c) */
	atomic_fetch_add_explicit(&p->ctrl->epoch, 1, memory_order_seq_cst);
}

/* Close the epoch (even). A store, not an RMW: the owner is the only writer of the
 * epoch, and a locked operation here would wait for the hand-over's stores to drain for
 * nothing. Release is all a finalizer needs: its seq_cst load that reads this value
 * sees everything the epoch did to subscriber records, and it read a value older than
 * the next entry's seq_cst increment, so that epoch's mask loads follow its clear. */
SHMRING_INLINE void shmring__pool_epoch_exit(struct shmring_pool *p)
{
	uint64_t v = shmring_load_relaxed(&p->ctrl->epoch); /* our own last store */
	/* release: pairs with epoch_handshake()'s seq_cst loads (src/pool.c) */
	shmring_store_release(&p->ctrl->epoch, v + 1);
}

/* Store frame f's descriptor into dst (a struct shmring_pool_meta or a log entry, which
 * name the fields alike), relaxed: the caller's release store publishes them. */
#define SHMRING__POOL_STORE_DESC(dst, f, csum)                          \
	do {                                                           \
		shmring_store_relaxed(&(dst)->len, (f)->len);          \
		shmring_store_relaxed(&(dst)->ts_ns, (f)->ts_ns);      \
		shmring_store_relaxed(&(dst)->user, (f)->user);        \
		shmring_store_relaxed(&(dst)->checksum, (csum));       \
		shmring_store_relaxed(&(dst)->width, (f)->width);      \
		shmring_store_relaxed(&(dst)->height, (f)->height);    \
		shmring_store_relaxed(&(dst)->format, (f)->format);    \
		shmring_store_relaxed(&(dst)->stride, (f)->stride);    \
	} while (0)

/* Copy the descriptor of log entry e (frame at position pos in buffer b) into f.
 * Relaxed loads: the acquire load of the entry's position word (or of ctrl->tail) that
 * showed the frame ordered publish's stores before them. The caller reads it while its
 * cursor still names pos (the entry cannot be reused before the cursor moves on) and
 * checks len and b before it trusts f. */
SHMRING_INLINE void shmring__pool_read_entry(const struct shmring_pool *p,
					     struct shmring_pool_entry *e, uint32_t b,
					     uint64_t pos, struct shmring_pool_frame *f)
{
	f->data = (p->rodata ? p->rodata : p->data) + (uint64_t)b * p->stride;
	f->capacity = p->buf_size;
	f->len = shmring_load_relaxed(&e->len);
	f->seq = pos;
	f->ts_ns = shmring_load_relaxed(&e->ts_ns);
	f->user = shmring_load_relaxed(&e->user);
	f->checksum = shmring_load_relaxed(&e->checksum);
	f->width = shmring_load_relaxed(&e->width);
	f->height = shmring_load_relaxed(&e->height);
	f->format = shmring_load_relaxed(&e->format);
	f->stride = shmring_load_relaxed(&e->stride);
	f->flags = p->checksum ? SHMRING_POOL_FRAME_F_CHECKSUM : 0u; /* the pool's, not shared */
	f->index = b;
}

/* CREDIT: room in a known block record's queue without its line. Loan may go ahead
 * once s took frame q = tail - queue_depth. If q is still in the buffer we put it in (a
 * local record), and that buffer's state word lacks s's bit, s took q: q is not older
 * than low[s] (we are here because tail - low[s] >= queue_depth), so q was addressed to
 * s (admitted by then, same occupant), and only taking it (and releasing it), or being
 * dropped as a leaver, removes the bit. A bit cleared for a subscriber finalized
 * meanwhile only spares us waiting for one that gets no more frames. The state line was
 * fetched at the end of publish (a steady hand-over leaves it alone since). 1 if there is
 * room by that bound. Producer only. */
SHMRING_INLINE int shmring__pool_credit(struct shmring_pool *p, uint32_t s, uint64_t bit)
{
	uint64_t q = (p->tail - p->queue_depth) & SHMRING_POOL_POS_MASK;
	uint32_t b = p->pos_buf[q % SHMRING_POOL_MAX_BUFS];
	if (b >= p->nbufs || p->buf_pos[b] != q + 1u)
		return 0; /* not published by this handle, or the buffer holds a newer frame */
	/* relaxed: a fact about s's progress, not a hand-over of data */
	if (shmring_load_relaxed(&p->meta[b].state) & bit)
		return 0;
	p->low[s] = (q + 1u) & SHMRING_POOL_POS_MASK;
	return 1;
}

/* Take a free buffer if there is one: 1 and f filled, else 0. Producer only. */
SHMRING_INLINE int shmring__pool_grab(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	for (uint32_t k = 0; k < p->nbufs; k++) {
		uint32_t b = p->hint + k < p->nbufs ? p->hint + k : p->hint + k - p->nbufs;
		struct shmring_pool_meta *m = &p->meta[b];
		/* a hint; the CAS decides. Not at the hint itself, the buffer after our last
		 * loan, which is usually free: its line is in the last releaser's cache, and
		 * a load before the CAS would fetch it twice (shared, then owned) */
		if (k != 0 && shmring_load_relaxed(&m->state) != 0)
			continue;
		/* recorded before the buffer is taken, so a replacement can return it; read
		 * by a replacement only after our death, which it learns through the kernel */
		shmring_store_relaxed(&p->ctrl->loan, (p->tail << 16) | (b + 1u));
		uint64_t zero = 0;
		/* acquire: pairs with the release RMW that freed the buffer (the last
		 * holder's fetch_and in shmring_pool_release(), a drop or a reclaim) */
		if (!atomic_compare_exchange_strong_explicit(&m->state, &zero, SHMRING_POOL_LOANED,
							     memory_order_acquire, memory_order_relaxed))
			continue;
		p->loaned = b + 1u;
		p->hint = b + 1u < p->nbufs ? b + 1u : 0;
		f->data = p->data + (uint64_t)b * p->stride;
		f->capacity = p->buf_size;
		f->len = 0;
		f->seq = 0;
		f->ts_ns = 0;
		f->user = 0;
		f->checksum = 0;
		f->width = f->height = f->format = f->stride = 0;
		f->flags = 0;
		f->index = b;
		return 1;
	}
	return 0;
}

/*
 * Loan a free buffer to fill in place. f->data points to capacity writable bytes; set
 * f->len (and width, height, format, stride, ts_ns, user as wanted) before publish.
 * One loan at a time.
 * Concurrency: producer only. Ordering: the CAS that takes the buffer is acquire and
 * pairs with the release of its last reference (release, drop, reclaim), so every
 * subscriber's reads of the old frame happen before we overwrite it.
 * Returns 0; -EAGAIN a block subscriber has queue_depth frames queued, or no buffer is
 * free or droppable; -EBUSY a loan is already outstanding; -EBADF not the producer;
 * -EPROTO corrupt control region (sticky).
 */
SHMRING_INLINE int shmring_pool_loan(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (shmring_unlikely(p->broken))
		return p->broken;
	if (shmring_unlikely(p->role != SHMRING_ROLE_PRODUCER))
		return -EBADF;
	if (shmring_unlikely(p->loaned))
		return -EBUSY;
	p->stalled = 0;
	p->nobuf_counted = p->block_counted = 0;
	if (shmring_unlikely((++p->tick & 63u) == 0))
		shmring__pool_housekeep(p);
	/* block subscribers first: their queue depth gates us even when buffers are free.
	 * Reads only, as hints; the slow path redoes this inside an epoch. */
	uint64_t act = shmring_load_relaxed(&p->ctrl->active);
	while (act) {
		uint32_t s = (uint32_t)__builtin_ctzll(act);
		uint64_t bit = act & -act;
		act &= act - 1;
		if (shmring_unlikely(s >= p->max_subs))
			return shmring__pool_loan_slow(p, f); /* it reports the corruption */
		struct shmring_pool_sub *r = &p->subs[s];
		if (p->known & bit) {
			/* MEMBERSHIP: its policy as read when admitted, and a bound on its cursor
			 * that spares us the subscriber's line while the queue has room */
			if (!(p->known_block & bit) ||
			    shmring__pool_pos_diff(p->tail, p->low[s]) < p->queue_depth ||
			    shmring__pool_credit(p, s, bit))
				continue;
		} else if (shmring_load_relaxed(&r->policy) != SHMRING_POOL_BLOCK) {
			continue;
		}
		uint64_t w = shmring_load_relaxed(&r->cursor);
		if (w == SHMRING_POOL_CURSOR_NONE)
			continue; /* not admitted yet: no queue */
		uint64_t c = shmring__pool_cursor_pos(w);
		if (p->known_block & bit)
			p->low[s] = c;
		if (shmring__pool_pos_diff(p->tail, c) >= p->queue_depth)
			return shmring__pool_loan_slow(p, f);
	}
	if (shmring__pool_grab(p, f))
		return 0;
	return shmring__pool_loan_slow(p, f); /* drop for drop-oldest subscribers, or wait */
}

/*
 * Publish the loaned frame to every subscriber attached now (newcomers are admitted
 * here) and wake sleeping subscribers. f->len must be <= capacity.
 * Concurrency: producer only. Ordering: the release stores of the log entry's position
 * word and of ctrl->tail pair with the acquire loads in shmring_pool_take(): the frame's
 * bytes and descriptor are visible to whoever sees either. The active mask is loaded seq_cst inside the epoch (see
 * EPOCH above).
 * Returns the number of subscribers the frame went to (0: the buffer is free again at
 * once); -EINVAL not our loan, or len > capacity; -EBADF not the producer; -EPROTO.
 */
SHMRING_INLINE int shmring_pool_publish(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (shmring_unlikely(p->broken))
		return p->broken;
	if (shmring_unlikely(p->role != SHMRING_ROLE_PRODUCER))
		return -EBADF;
	uint32_t b = f->index;
	if (shmring_unlikely(p->loaned == 0 || b + 1u != p->loaned || f->len > p->buf_size))
		return -EINVAL;
	/* timestamp and checksum, where the pool has them (out of line: a clock read, a hash) */
	uint64_t csum = (p->stamp | p->checksum) ? shmring__pool_stamp(p, f) : 0;
	struct shmring_pool_meta *m = &p->meta[b];
	uint64_t t = p->tail;
	/* relaxed, all of them: published by the release store of ctrl->tail below */
	shmring_store_relaxed(&m->seq, t);
	SHMRING__POOL_STORE_DESC(m, f, csum);
	shmring_store_relaxed(&m->flags, p->checksum ? SHMRING_POOL_FRAME_F_CHECKSUM : 0u);

	shmring__pool_epoch_enter(p);
	/* seq_cst: after the epoch increment; pairs with the joiner's seq_cst fetch_or (its
	 * record is initialised before) and the finalizer's seq_cst fetch_and */
	uint64_t act = atomic_load_explicit(&p->ctrl->active, memory_order_seq_cst);
	/* MEMBERSHIP. seq_cst, after the active mask: a joiner's increment comes before its
	 * fetch_or, so an active bit we saw set by a newcomer brings its increment along */
	uint64_t joins = atomic_load_explicit(&p->ctrl->joins, memory_order_seq_cst);
	if (!p->joins_ok || joins != p->joins_seen) {
		p->known = p->known_block = 0; /* someone joined: read every record again */
		p->joins_seen = joins;
	}
	uint64_t to = 0;
	int nto = 0; /* recipients, counted here: a popcount is a library call on plain x86-64 */
	while (act) {
		uint32_t s = (uint32_t)__builtin_ctzll(act);
		uint64_t bit = act & -act;
		act &= act - 1;
		nto++;
		if (p->known & bit) { /* admitted, same occupant: its line stays where it is */
			to |= bit;
			continue;
		}
		struct shmring_pool_sub *r = &p->subs[s < p->max_subs ? s : 0];
		uint64_t w = shmring_load_relaxed(&r->cursor); /* the CAS below decides */
		/* admit a newcomer: its first frame is this one. Only we move a cursor away
		 * from NONE, so the CAS fails only on corruption. */
		if (shmring_unlikely(s >= p->max_subs) ||
		    (w == SHMRING_POOL_CURSOR_NONE &&
		     /* release: pairs with the subscriber's acquire load of its cursor in take */
		     !atomic_compare_exchange_strong_explicit(&r->cursor, &w, t << 16,
							      memory_order_release,
							      memory_order_relaxed))) {
			shmring__pool_epoch_exit(p);
			return shmring__pool_broken(p, -EPROTO,
					"publish: active bit beyond max_subs or cursor not NONE");
		}
		if (p->joins_ok) {
			p->known |= bit;
			/* set before the active bit we saw, and fixed for this occupant */
			if (shmring_load_relaxed(&r->policy) == SHMRING_POOL_BLOCK) {
				p->known_block |= bit;
				p->low[s] = w == SHMRING_POOL_CURSOR_NONE ? t
									: shmring__pool_cursor_pos(w);
			}
		}
		to |= bit;
	}
	/* references before the entry: a subscriber may release as soon as it sees the
	 * frame. A store, not an RMW: the word holds LOANED alone since our CAS. Nobody
	 * releases into a buffer they never got; the only other writer is a finalizer
	 * clearing a departed subscriber's bit, after the epoch in which its active bit was
	 * cleared, so that bit is in neither the old word nor `to`, and its fetch_and leaves
	 * our value whichever comes first. A locked RMW here would also make the entry's
	 * stores wait until the frame's have drained. Relaxed: published by the release
	 * store of the entry below. */
	shmring_store_relaxed(&m->state, SHMRING_POOL_LOANED | to);
	struct shmring_pool_entry *e = &p->log[t & p->log_mask];
	/* relaxed, all of them: published by the pos_buf store below */
	shmring_store_relaxed(&e->to, to);
	SHMRING__POOL_STORE_DESC(e, f, csum);
	/* the entry names its position last. Release: pairs with the acquire load of the
	 * entry in shmring_pool_take(), which may see the frame before the tail moves */
	shmring_store_release(&e->pos_buf, (t << 16) | b);
	uint64_t nt = (t + 1) & SHMRING_POOL_POS_MASK;
	p->tail = nt;
	p->buf_pos[b] = t + 1u; /* CREDIT */
	p->pos_buf[t % SHMRING_POOL_MAX_BUFS] = (uint16_t)b;
	/* publish: pairs with the acquire load of ctrl->tail in shmring_pool_take() */
	shmring_store_release(&p->ctrl->tail, nt);
	/* drop the loan's reference; the last one frees the buffer (nobody subscribed, or
	 * all released already). The releasers' reads come before our next write: */
	/* acq_rel, pairs with the release fetch_and in shmring_pool_release() */
	atomic_fetch_and_explicit(&m->state, ~SHMRING_POOL_LOANED, memory_order_acq_rel);
	shmring_store_relaxed(&p->ctrl->loan, 0); /* for a replacement: nothing loaned */
	shmring__pool_epoch_exit(p);
	p->loaned = 0;
	p->msgs++;
	p->bytes += f->len;
	struct shmring_hdr *h = shmring_seg_hdr(p->seg);
	shmring_store_relaxed(&h->stats.msgs, p->msgs); /* single writer: statistics */
	shmring_store_relaxed(&h->stats.bytes, p->bytes);
	f->seq = t;
	f->checksum = csum;
	if (to)
		shmring_wake(p->seg, &p->ctrl->frame_q);
	/* The next loan CASes the state word of buffer `hint` first, a line its last releaser
	 * took away: fetch it now, while the subscribers work, instead of on the next
	 * hand-over's path (-10% on a round trip here). GCC emits this as a read prefetch
	 * (PREFETCHT0) unless PREFETCHW is enabled (-mprfchw, -march=broadwell and later);
	 * PREFETCHW itself measured the same here (paired, 1.000), as it did in take for the
	 * release's line. A hint: nothing is read or written. */
	__builtin_prefetch(&p->meta[p->hint].state, 1, 3);
	/* and, to read only, the state line the next loan looks at for CREDIT before it would
	 * fetch a block subscriber's record line: frame nt - queue_depth's buffer. Only for
	 * block subscribers: others would find the line shared when they release. */
	if (p->known_block) {
		uint32_t cb = p->pos_buf[((nt - p->queue_depth) & SHMRING_POOL_POS_MASK) %
					 SHMRING_POOL_MAX_BUFS];
		__builtin_prefetch(&p->meta[cb < p->nbufs ? cb : 0].state, 0, 3);
	}
	return nto;
}

/*
 * Give the loan back unpublished. Concurrency: producer only. Ordering: release; pairs
 * with the acquire CAS of the next loan. Returns 0; -EINVAL not our loan.
 */
SHMRING_INLINE int shmring_pool_cancel(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (p->role != SHMRING_ROLE_PRODUCER || p->loaned == 0 || f->index + 1u != p->loaned)
		return -EINVAL;
	/* release: pairs with the acquire CAS in shmring__pool_grab() */
	atomic_fetch_and_explicit(&p->meta[f->index].state, ~SHMRING_POOL_LOANED,
				  memory_order_release);
	/* after the bit, as in publish: dead between the two, we leave a loan word naming a
	 * buffer without LOANED, which recovery leaves alone; the other way round, a
	 * LOANED buffer that no loan word names, which nobody would ever free */
	shmring_store_relaxed(&p->ctrl->loan, 0);
	p->loaned = 0;
	return 0;
}

/*
 * Take the oldest frame queued for this subscriber; f->data is readable until release.
 * f is filled when take returns 0 (on an error its contents mean nothing).
 * Concurrency: this subscriber only. Ordering: the acquire load of the log entry (or
 * of ctrl->tail) pairs with publish's release stores (frame and descriptor visible); a
 * drop-oldest subscriber's cursor CAS is acq_rel and races with the producer's drop of
 * the same frame (exactly one of them wins); a block subscriber, whose cursor only it
 * moves, stores it with release.
 * Returns 0; -EAGAIN nothing queued; -EPIPE nothing queued and the producer closed or
 * is dead; -ENOBUFS this subscriber already holds max_held frames; -EBADF not a
 * subscriber; -EPROTO corrupt control region (sticky).
 */
SHMRING_INLINE int shmring_pool_take(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (shmring_unlikely(p->broken))
		return p->broken;
	if (shmring_unlikely(p->role != SHMRING_ROLE_SUBSCRIBER))
		return -EBADF;
	if (shmring_unlikely(p->held >= p->max_held))
		return -ENOBUFS;
	struct shmring_pool_sub *r = &p->subs[p->sub];
	/* bounded: each pass loses a race to the producer (a drop) or sees a new frame,
	 * and a process that rewrites our words at will must not keep us here */
	for (uint32_t pass = 0; pass < 2 * p->log_mask + 8; pass++) {
		/* acquire: pairs with publish's admission CAS and the producer's drop CAS */
		uint64_t w = shmring_load_acquire(&r->cursor);
		if (shmring_unlikely(shmring_load_relaxed(&r->state) != p->sub_id))
			return shmring__pool_broken(p, -EPROTO,
					"take: our record changed hands"); /* nobody else may change it */
		uint64_t c = shmring__pool_cursor_pos(w);
		struct shmring_pool_entry *e = &p->log[c & p->log_mask];
		/* the entry at our cursor first: a frame, or the previous lap's entry (nothing
		 * yet), is then seen without the producer's tail line. Acquire: pairs with
		 * publish's release store of pos_buf (recipients, metadata and frame before) */
		uint64_t pb = shmring_load_acquire(&e->pos_buf);
		uint64_t to = shmring_load_relaxed(&e->to); /* ordered by that acquire */
		/* pb 0 is frame 0 in buffer 0, or a zeroed entry (a pool made before entries
		 * were initialised, pool_init() in src/pool.c) that publish is filling: our bit
		 * in `to`, stored before pos_buf, does not tell them apart. The tail does. */
		if (shmring_unlikely(w == SHMRING_POOL_CURSOR_NONE) || (pb >> 16) != c ||
		    !(to & p->bit) || shmring_unlikely(pb == 0)) {
			uint64_t d = 0;
			if (w != SHMRING_POOL_CURSOR_NONE &&
			    (pb >> 16) != ((c - p->log_mask - 1u) & SHMRING_POOL_POS_MASK)) {
				/* position 0 in buffer 0, a stale cursor or corruption: the
				 * tail decides. Acquire: pairs with publish's release store */
				uint64_t t = shmring_load_acquire(&p->ctrl->tail);
				d = shmring__pool_queued(t, c);
				if (shmring_unlikely(d > (uint64_t)p->log_mask + 1u ||
						     t > SHMRING_POOL_POS_MASK)) {
					/* a stale cursor: the producer may have dropped frames for
					 * us after we loaded it and published more since */
					if (shmring_load_relaxed(&r->cursor) != w)
						continue;
					return shmring__pool_broken(p, -EPROTO,
							"take: cursor more than log_cap behind the tail");
				}
			}
			if (d == 0) {
				/* nothing published at our cursor (yet) */
				int rc = shmring__pool_take_empty(p);
				if (rc != 0)
					return rc;
				continue; /* the producer went, but left frames: take them */
			}
			/* published, the tail says: the entry as ordered by the tail's acquire */
			pb = shmring_load_relaxed(&e->pos_buf);
			to = shmring_load_relaxed(&e->to);
		}
		/* the descriptor now, while our cursor keeps the entry from being reused,
		 * straight into f (meaningful only once we return 0); it is checked below,
		 * once the cursor says the frame is ours */
		uint32_t b = (uint32_t)(pb & 0xffffu);
		shmring__pool_read_entry(p, e, b < p->nbufs ? b : 0, c, f);
		uint64_t nw = (((c + 1) & SHMRING_POOL_POS_MASK) << 16) | (w & 0xffffu);
		if (p->policy == SHMRING_POOL_BLOCK) {
			/* nobody else moves an admitted block subscriber's cursor (the producer
			 * drops frames of drop-oldest and leaving subscribers only), so a plain
			 * store will do. Release: pairs with the producer's acquire load of the
			 * cursor (queue room) in loan_in_epoch() */
			shmring_store_release(&r->cursor, nw);
			/* the producer may wait for this room */
			shmring_wake(p->seg, &p->ctrl->room_q);
		} else if (!atomic_compare_exchange_strong_explicit(&r->cursor, &w, nw,
								    memory_order_acq_rel,
								    memory_order_relaxed)) {
			/* acq_rel: pairs with the producer's drop CAS on this cursor */
			continue; /* the producer dropped that frame; look again */
		}
		if (shmring_unlikely((pb >> 16) != c || b >= p->nbufs))
			return shmring__pool_broken(p, -EPROTO,
					"take: log entry names another position or no buffer");
		if (shmring_unlikely(!(to & p->bit)))
			continue; /* not addressed to us (cannot happen while we are admitted) */
		if (shmring_unlikely(f->len > p->buf_size))
			return shmring__pool_broken(p, -EPROTO, "take: frame longer than its buffer");
		/* a buffer holds one frame at a time: one we hold already cannot come again
		 * (else our count of held frames would leak a place for good) */
		if (shmring_unlikely(p->held_map[b >> 6] & (UINT64_C(1) << (b & 63u))))
			return shmring__pool_broken(p, -EPROTO, "take: log entry names a buffer we hold");
		/* our reference in the buffer's state word is not looked at here: that line is
		 * one more trip per frame, and release finds a missing reference (-EPROTO) */
		p->held++;
		p->held_map[b >> 6] |= UINT64_C(1) << (b & 63u);
		p->frames++;
		shmring_store_relaxed(&r->frames, p->frames); /* statistics */
		return 0;
	}
	return -EAGAIN;
}

/*
 * Release a taken frame; the buffer returns to the pool when its last holder releases.
 * Concurrency: this subscriber only. Ordering: release; pairs with the producer's
 * acquire CAS in shmring__pool_grab(), so our reads of the frame are done before it is
 * overwritten. Returns 0; -EINVAL the frame is not held by this handle; -EPROTO our
 * reference was gone (corrupt).
 */
SHMRING_INLINE int shmring_pool_release(struct shmring_pool *p, const struct shmring_pool_frame *f)
{
	uint32_t b = f->index;
	if (shmring_unlikely(p->role != SHMRING_ROLE_SUBSCRIBER || b >= p->nbufs ||
			     !(p->held_map[b >> 6] & (UINT64_C(1) << (b & 63u)))))
		return -EINVAL;
	p->held_map[b >> 6] &= ~(UINT64_C(1) << (b & 63u));
	p->held--;
	/* release: pairs with the acquire CAS in shmring__pool_grab() */
	uint64_t old = atomic_fetch_and_explicit(&p->meta[b].state, ~p->bit, memory_order_release);
	if (shmring_unlikely(!(old & p->bit)))
		return shmring__pool_broken(p, -EPROTO, "release: our reference was already gone");
	if (old == p->bit) /* we freed it: the producer may be waiting for a buffer */
		shmring_wake(p->seg, &p->ctrl->room_q);
	return 0;
}

#endif /* SHMRING_POOL_H */
