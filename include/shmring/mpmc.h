/* SPDX-License-Identifier: MIT */
/*
 * shmring/mpmc.h: multi-producer multi-consumer ring of fixed-size slots, for work
 * distribution: any number of producer and consumer processes, each message delivered
 * to exactly one consumer, and a participant killed at any instruction cannot wedge it.
 *
 * CELLS. The data region is an array of `capacity` cells (a power of two), each
 *     [0,8)   state word (below)
 *     [8,12)  payload length of the message it holds
 *     [12,16) reserved, 0
 *     [16, 16 + slot_size) payload, 16-byte aligned
 * padded to `stride` bytes (the cell alignment, 64 by default, so that neighbouring
 * cells claimed by different producers do not share a line).
 *
 * STATE WORD. Message positions p = 0, 1, 2... map to cell p & (capacity - 1); the word
 * of a cell says which position the cell is at, in which phase, and who holds it:
 *     bits 18-63  position p, modulo 2^46
 *     bits 16-17  phase: 0 FREE, 1 WRITING, 2 FULL, 3 READING
 *     bits  8-15  owner's participant generation, modulo 256   (busy phases only)
 *     bit   7     0
 *     bit   6     GATE: first cell of a batch being claimed     (busy phases only)
 *     bits  0-5   owner's participant slot                      (busy phases only)
 * A cell cycles FREE(p) -> WRITING(p, o) -> FULL(p) -> READING(p, o) -> FREE(p + cap),
 * so "code" = 4p + phase only ever grows; it is compared by signed difference modulo
 * 2^48. Initially cell i is FREE(i) and tail = head = 0. FREE and FULL words have a zero
 * owner field.
 *
 * CLAIMING (the reason for this design). A producer reads the tail hint t and claims
 * position t by one CAS on the cell itself, FREE(t) -> WRITING(t, me); then it moves
 * the tail t -> t+1 by CAS (if that fails someone helped). Anyone who reads tail t and
 * finds cell t already past FREE(t) helps the tail on the same way. Because a producer
 * only ever tries the position equal to the tail it just read, positions are claimed
 * in order, everything below the tail is claimed, and the tail lags the last claim by
 * at most one. Consumers do the same with FULL(h) -> READING(h, me) and the head. (The
 * head can fall further behind over gaps, positions given back or abandoned, when no
 * consumer was there to step over them; the next consumers step over them, one CAS
 * each.)
 * There is no instant at which a position is taken but its taker unrecorded: the one
 * CAS that takes it writes the owner into it. (Plain Vyukov claims by CAS on the tail
 * and publishes the cell later; a producer killed in between leaves a position nobody
 * will ever fill and nobody can attribute.)
 *
 * BATCHES (n <= SHMRING_MPMC_BATCH_MAX). To claim n > 1 cells the caller claims the cell
 * at the index with GATE set. Nobody helps an index past a gated cell, so the cells
 * after it can only be claimed by the gate holder, which takes FREE(t+i) (resp.
 * FULL(h+i)) cells one by one up to n. If it got fewer than the caller's minimum (bulk:
 * n) it gives them back, last first and the gate cell last, and nothing happened;
 * otherwise it clears the gate and moves the index past them. So a batch is consecutive
 * positions and bulk calls are all-or-nothing. A consumer's batch steps over gaps among
 * them (below): while it holds the gate at h, producers cannot claim beyond h + cap, so
 * a gap cell stays FREE(p + cap), untouched, until the batch is done. A gate is held for
 * at most 64 CAS instructions; others who meet it spin or sleep briefly.
 *
 * PUBLISHING. enqueue_finish stores the length, then FULL(p) with release; dequeue_finish
 * stores FREE(p + cap) with release. A producer that returns a claimed cell unused
 * (finish with fewer messages than it claimed) stores FREE(p + cap): position p becomes
 * a gap that consumers step over like a consumed message.
 *
 * CRASH TOLERANCE. A participant can die:
 *  - holding nothing: nothing to do (a tail or head it did not move is moved by helpers);
 *  - holding WRITING(p, o): the message it was writing is lost;
 *  - holding READING(p, o): the message it had taken is lost;
 *  - in a gated claim it had not yet returned to its caller: nothing is lost.
 * Survivors detect the dead: a participant that cannot make progress (ring full, ring
 * empty with a busy cell at the head, a gate in the way) runs the recovery scan, at most
 * once per SHMRING_PEER_CHECK_MS while it keeps failing (blocking calls: after each
 * sleep slice; non-blocking calls: every 64th consecutive failure, rate-limited by the
 * clock) and at once when another participant left (ctrl->leaves changed). Recovery:
 * for every ACTIVE producer or consumer slot of the participant table whose OFD lock is
 * gone, shmring_part_take() it (exactly one survivor wins), then scan the cells: gated
 * runs of that owner are given back (FREE or FULL again, last first, gate last), other
 * busy cells of that owner become FREE(p + cap) by CAS, and each successful CAS adds 1
 * to hdr->stats.abandoned; then stats.peer_deaths += 1 and shmring_part_leave() frees
 * the table slot for a replacement. A busy cell whose owner slot is no longer ACTIVE, or
 * is ACTIVE with another generation (the slot was reused), is orphaned and reclaimed the
 * same way by whoever is stuck on it. Every step is a CAS from the dead owner's own
 * word, so concurrent or repeated recovery (a reaper killed half-way: its lock goes too
 * and the next survivor takes over) changes each cell once and counts it once; the one
 * imprecision is a reaper killed between its CAS and its counter increment, which
 * undercounts by one.
 * Bound: a dead participant's cells are released within SHMRING_PEER_CHECK_MS (20 ms)
 * plus one scan (max_parts fcntl calls + capacity loads) of the first survivor that
 * waits on them, or of any non-blocking caller failing repeatedly for that long. Only
 * cells of dead participants are touched; a live but descheduled holder is waited for.
 *
 * ORDERING PROMISED. Producers claim positions in increasing order and consumers take
 * positions in increasing order. Hence:
 *  - each message goes to at most one consumer; to exactly one unless it was abandoned
 *    with a dead participant (counted) or never dequeued;
 *  - per-producer FIFO as seen by each consumer: the messages of one producer handle
 *    that one consumer handle receives arrive in the order they were enqueued;
 *  - if an enqueue returns before another starts (happens-before), it has the lower
 *    position, and no consumer dequeues the later one before the earlier one is taken
 *    (taken, not necessarily processed: consumers run in parallel);
 *  - a batch is consecutive positions, delivered in order to one or several consumers.
 * A producer descheduled between start and finish holds up consumers at its position
 * (as in Vyukov's queue): they spin briefly, then sleep until it publishes.
 *
 * ABA. Positions are kept modulo 2^46 in the word. A CAS expecting an old word succeeds
 * only if the cell is in exactly that state, which is then the current state, so a
 * stale claimer is harmless unless the ring advanced by a multiple of 2^46 positions
 * (about 8 days at 10^8 messages/s) while it was stopped between its load and its CAS;
 * then per-producer order could break for that one message. Generations are compared
 * modulo 256: an orphaned cell is misjudged live only if its owner's table slot was
 * reused 256 times while the cell stayed busy, and is then reclaimed when that slot's
 * current owner dies or leaves.
 *
 * NEVER TRUSTING SHARED MEMORY. Geometry is validated at attach and kept locally; cell
 * indices are masked; a length is checked against slot_size before use; owner fields
 * are checked against max_parts. With the hint t just read, the only states the cell at
 * t can legitimately be in are WRITING(t-cap)..FREE(t+cap) (producers), and for the
 * head h READING(h-cap)..READING(h), or a later lap in any phase but READING
 * (consumers); anything else is re-checked once the index itself is re-read unchanged,
 * then -EPROTO (sticky). Every loop is bounded (SHMRING__MPMC_TRIES), so hostile writes
 * give -EPROTO, -EAGAIN or -ETIMEDOUT, never a hang past the caller's timeout.
 *
 * WAKEUPS follow wait.h: consumers sleep on ctrl->not_empty, producers on ctrl->not_full;
 * finish calls shmring_wake() (a fence and a load; no syscall when nobody sleeps). A
 * participant killed while asleep leaves its queue's pending flag set (see wait.h):
 * the next waker makes one needless wake, then the flag is clear.
 *
 * EOF. shmring_mpmc_dequeue*() returns -EPIPE once the ring is empty, producers have
 * attached at least once and none is alive; enqueue returns -EPIPE once the ring is
 * full, consumers have attached at least once and none is alive. The ring cannot know
 * how many producers are still to come: when they start one after another (a producer
 * that closes before the next attaches ends the stream for the consumers, and the late
 * one's messages wait unread), hold the stream open: the coordinating process attaches
 * as a producer itself and closes only once every producer has attached. The same goes
 * for consumers and the producers' -EPIPE.
 *
 * CONCURRENCY. Any number of producer and consumer handles in any processes; each handle
 * used by one thread at a time (threads of one process may each open a handle). Handles
 * do not survive fork(). Consumers map the ring read-write (they write state words).
 */
#ifndef SHMRING_MPMC_H
#define SHMRING_MPMC_H

#include <errno.h>
#include <string.h>

#include "wait.h"

/* Geometry words in the segment header (hdr.geo[]). */
#define SHMRING_MPMC_GEO_CAPACITY 0  /* cells, power of two, 2..2^30 */
#define SHMRING_MPMC_GEO_SLOT_SIZE 1 /* largest payload, 1..2^30 */
#define SHMRING_MPMC_GEO_STRIDE 2    /* bytes per cell: align_up(16 + slot_size, align) */
#define SHMRING_MPMC_GEO_ALIGN 3     /* cell alignment, power of two, 16..4096 */
#define SHMRING_MPMC_GEO_FORMAT 4    /* state-word format, SHMRING_MPMC_FORMAT */
#define SHMRING_MPMC_FORMAT 1u

#define SHMRING_MPMC_CELL_HDR 16u
#define SHMRING_MPMC_MAX_CAPACITY (UINT32_C(1) << 30)
#define SHMRING_MPMC_MAX_SLOT (UINT32_C(1) << 30)
#define SHMRING_MPMC_DEFAULT_CAPACITY 1024u
#define SHMRING_MPMC_DEFAULT_ALIGN 64u
#define SHMRING_MPMC_BATCH_MAX 64u /* most slots one start call can take (n) */

/* State word (see above). Internal but installed: shmdump and tests decode it. */
#define SHMRING__MPMC_FREE 0u
#define SHMRING__MPMC_WRITING 1u
#define SHMRING__MPMC_FULL 2u
#define SHMRING__MPMC_READING 3u
#define SHMRING__MPMC_OWNER_MASK UINT64_C(0x3f)
#define SHMRING__MPMC_GATE UINT64_C(0x40)
#define SHMRING__MPMC_TAG_RSVD UINT64_C(0x80)
#define SHMRING__MPMC_TAG_MASK UINT64_C(0xffff)
#define SHMRING__MPMC_TRIES 1024
/* Gaps (positions given back or abandoned) a consumer's claim may step over in one call
 * besides its SHMRING__MPMC_TRIES, so that a message behind them is not reported as
 * "nothing ready" (-EAGAIN). Producers may lap given-back cells, so the gaps before the
 * next message are not bounded by the capacity; this bound is, because the cells are
 * shared memory: a hostile writer could make every one of them look a gap. */
#define SHMRING__MPMC_GAP_STEPS 65536

/* The control region (at ctrl_off). */
struct shmring_mpmc_ctrl {
	/* producers' hint: every position below it is claimed (CAS by claimers/helpers) */
	_Atomic uint64_t tail;
	uint8_t pad0[SHMRING_LINE - 8];
	/* consumers' hint: every position below it is taken */
	_Atomic uint64_t head;
	uint8_t pad1[SHMRING_LINE - 8];
	struct shmring_waitq not_empty; /* consumers sleep here */
	struct shmring_waitq not_full;  /* producers sleep here */
	/* slow path only */
	_Atomic uint64_t prod_joins; /* producer attaches ever (EOF needs "had producers") */
	_Atomic uint64_t cons_joins;
	_Atomic uint64_t leaves;     /* bumped on every close or reaped participant */
	_Atomic uint64_t reverted;   /* cells of unfinished gated claims given back */
	uint8_t pad4[SHMRING_LINE - 32];
};
_Static_assert(offsetof(struct shmring_mpmc_ctrl, head) == 128, "layout");
_Static_assert(offsetof(struct shmring_mpmc_ctrl, not_empty) == 256, "layout");
_Static_assert(offsetof(struct shmring_mpmc_ctrl, not_full) == 384, "layout");
_Static_assert(offsetof(struct shmring_mpmc_ctrl, prod_joins) == 512, "layout");
_Static_assert(offsetof(struct shmring_mpmc_ctrl, leaves) == 528, "layout");
_Static_assert(sizeof(struct shmring_mpmc_ctrl) == 640, "layout");

struct shmring_mpmc_cell {
	_Atomic uint64_t word;
	_Atomic uint32_t len;
	uint32_t reserved;
	/* payload follows */
};
_Static_assert(sizeof(struct shmring_mpmc_cell) == SHMRING_MPMC_CELL_HDR, "cell header");

struct shmring_mpmc_opts {
	uint32_t capacity;  /* cells, rounded up to a power of two >= 2; 0: 1024 */
	uint32_t slot_size; /* largest message in bytes (required, 1..2^30) */
	uint32_t align;     /* cell alignment, power of two 16..4096; 0: 64 */
	uint32_t mode;      /* named segments: permission bits (at most 0777,
			      * else -EINVAL), as given: no umask; 0: 0600 */
	uint32_t max_parts; /* participant table size, 1..48; 0: 48 */
};

/* A message seen by a consumer; data points into the ring until dequeue_finish. */
struct shmring_mpmc_msg {
	const void *data;
	uint32_t len;
};

/* Process-local handle. Fields are private; they are here for the inline fast path. */
struct shmring_mpmc {
	struct shmring_seg *seg;
	struct shmring_mpmc_ctrl *ctrl;
	uint8_t *cells;
	uint64_t mask;
	uint32_t cap, slot_size, stride, max_parts;
	uint32_t role, slot;     /* participant slot when joined */
	uint64_t tag;            /* owner field of our busy words: slot | gen << 8 */
	int joined;
	int broken;              /* sticky negative errno once corruption was seen */
	int spin;                /* polls before sleeping */
	int demote;              /* producer: enqueue_finish demotes cell heads (set_demote) */
	/* the batch this handle holds between start and finish: held_span cells from
	 * held_pos, held_n of them messages, the others gaps (bits of held_gaps) that a
	 * consumer's batch stepped over */
	uint64_t held_pos;
	uint64_t held_gaps;
	uint32_t held_span;
	uint32_t held_n;
	/* slow-path state */
	uint32_t fails;          /* consecutive non-blocking failures */
	uint64_t stuck;          /* busy word we last waited on (0: none) */
	uint64_t seen_leaves;
	uint64_t last_scan_ns;
	/* statistics not yet added to the header */
	uint64_t st_msgs, st_bytes;
	uint32_t st_ops;
};

/*
 * Create a ring and attach to it. role: SHMRING_ROLE_PRODUCER, SHMRING_ROLE_CONSUMER,
 * SHMRING_ROLE_OBSERVER (joins the table, may only inspect) or SHMRING_ROLE_NONE (does
 * not join: inspection and recovery only). name: NULL for an anonymous memfd ring (share
 * shmring_mpmc_fd()). Returns 0 or: -EINVAL (opts or role), -EEXIST, -ENOSPC, -EACCES,
 * -ENOMEM, -EUSERS, other segment errors (segment.h).
 */
SHMRING_API int shmring_mpmc_create(const char *name, const struct shmring_mpmc_opts *o,
				    uint32_t role, struct shmring_mpmc **out);
/* Attach to an existing ring. -EPROTO if the segment is not a valid MPMC ring;
 * -EUSERS if the participant table is full of live participants; segment errors. */
SHMRING_API int shmring_mpmc_open(const char *name, uint32_t role, struct shmring_mpmc **out);
SHMRING_API int shmring_mpmc_open_fd(int fd, uint32_t role, struct shmring_mpmc **out);
/* Give back any held batch (producer: as gaps; consumer: as consumed), leave the table,
 * wake sleepers (consumers see EOF when the last producer leaves), free the handle.
 * Returns 0, or -EINVAL for NULL. */
SHMRING_API int shmring_mpmc_close(struct shmring_mpmc *r);
SHMRING_API int shmring_mpmc_fd(const struct shmring_mpmc *r);
SHMRING_API struct shmring_seg *shmring_mpmc_seg(const struct shmring_mpmc *r);
/* The ring's geometry (0 for NULL). */
SHMRING_API uint32_t shmring_mpmc_capacity(const struct shmring_mpmc *r);
SHMRING_API uint32_t shmring_mpmc_slot_size(const struct shmring_mpmc *r);
/* The participant slot this handle joined, or -1 (-EINVAL for NULL). */
SHMRING_API int shmring_mpmc_part(const struct shmring_mpmc *r);
/* Polls before sleeping in blocking calls (default, and for a negative spin:
 * SHMRING_SPIN_DEFAULT; 0: no spinning). */
SHMRING_API void shmring_mpmc_set_spin(struct shmring_mpmc *r, int spin);
/*
 * Producer: after each enqueue_finish, push each published cell's first two lines (its
 * header and the start of the payload, what a consumer reads first) out of this CPU's
 * private caches into the shared last-level cache (x86 CLDEMOTE; a NOP where the CPU
 * lacks it), so the consumer that claims a message is served there instead of by a snoop
 * into the producer's core. Off by default. The same trade as shmring_spsc_set_demote()
 * (spsc.h), measured in bench/RESULTS.md: a 64-byte message's round trip across physical
 * cores is 9-17% shorter (its cell spans two lines: the consumer claims the word's line,
 * then misses on the payload's second line); streams are 1.2-4x slower; with both
 * processes on one core (SMT siblings, one CPU) a round trip took 2.6x as long. At most
 * three instructions per message. Per handle. Returns 0; -EBADF if r is not a producer
 * handle.
 */
SHMRING_API int shmring_mpmc_set_demote(struct shmring_mpmc *r, int on);
/* Cells between head and tail right now: messages, and the gaps a producer gave back
 * (enqueue_finish with fewer than it held) that consumers have not passed yet; an
 * estimate under concurrency, 0..cap. */
SHMRING_API uint32_t shmring_mpmc_count(const struct shmring_mpmc *r);

/*
 * Run dead-participant recovery now (see CRASH TOLERANCE): reap every dead producer or
 * consumer of this ring. Any role. Concurrency: any handle, any time. Returns the number
 * of participants reaped (>= 0); -EINVAL r is NULL. (A busy cell with an impossible
 * owner is found by the dequeue or enqueue that meets it: -EPROTO there.)
 */
SHMRING_API int shmring_mpmc_recover(struct shmring_mpmc *r);

/* One cell decoded, for inspectors and tests. */
struct shmring_mpmc_cell_info {
	uint64_t word;    /* raw state word */
	uint64_t pos;     /* position modulo 2^46 */
	uint32_t phase;   /* SHMRING__MPMC_FREE..READING */
	uint32_t owner;   /* participant slot (busy phases) */
	uint32_t gen;     /* owner generation modulo 256 (busy phases) */
	uint32_t gate;    /* 1 on the first cell of a batch being claimed */
	uint32_t len;     /* length field as read (not validated) */
	const void *data; /* payload (slot_size bytes) */
};
/* Decode cell idx (0..capacity-1), each field read once. -EINVAL bad index. */
SHMRING_API int shmring_mpmc_cell_get(const struct shmring_mpmc *r, uint32_t idx,
				      struct shmring_mpmc_cell_info *info);

/* Slow paths of the inline calls below (src/mpmc.c). */
SHMRING_API int shmring__mpmc_wait(struct shmring_mpmc *r, int prod, unsigned n, unsigned min,
				   uint32_t maxlen, int timeout_ms);
SHMRING_API int shmring__mpmc_idle(struct shmring_mpmc *r, int prod);
SHMRING_API int shmring__mpmc_broken(struct shmring_mpmc *r, int err);
SHMRING_API void shmring__mpmc_flush_stats(struct shmring_mpmc *r);

/* ---- state words ---- */

SHMRING_INLINE uint64_t shmring__mpmc_word(uint64_t pos, unsigned phase, uint64_t tag)
{
	return (((pos << 2) | phase) << 16) | tag;
}

/* code(w) - 4 * pos, as a signed difference modulo 2^48 */
SHMRING_INLINE int64_t shmring__mpmc_rel(uint64_t w, uint64_t pos)
{
	return (int64_t)((w & ~SHMRING__MPMC_TAG_MASK) - (pos << 18)) >> 16;
}

SHMRING_INLINE struct shmring_mpmc_cell *shmring__mpmc_cell(const struct shmring_mpmc *r,
							    uint64_t pos)
{
	return (struct shmring_mpmc_cell *)(void *)(r->cells + (pos & r->mask) * r->stride);
}

SHMRING_INLINE uint8_t *shmring__mpmc_payload(const struct shmring_mpmc *r, uint64_t pos)
{
	return r->cells + (pos & r->mask) * r->stride + SHMRING_MPMC_CELL_HDR;
}

/* Every state-word CAS (claims, recovery, give-backs). The acquire half pairs with the
 * release that published the word we expect (FREE by dequeue_finish or recovery, FULL by
 * enqueue_finish or a consumer give-back), so the cell's previous user is done with it
 * and a claimed message's payload is visible; the release half pairs with the acquire
 * load of whoever reads our word next (helpers moving an index, recovery scans). */
SHMRING_INLINE int shmring__mpmc_cas(_Atomic uint64_t *p, uint64_t *expect, uint64_t want)
{
	/* acq_rel / acquire: pairings in the comment above */
	return atomic_compare_exchange_strong_explicit(p, expect, want, memory_order_acq_rel,
						       memory_order_acquire);
}

/* Move an index hint from pos to pos + k if nobody did. acq_rel: the acquire half pairs
 * with the release half of earlier moves, so that whoever reads the index with acquire
 * sees every cell claim below it (the classification in the claim loops relies on it). */
SHMRING_INLINE void shmring__mpmc_advance(_Atomic uint64_t *idx, uint64_t pos, uint64_t k)
{
	/* pairs with earlier moves and with acquire readers of the index (see above) */
	atomic_compare_exchange_strong_explicit(idx, &pos, pos + k, memory_order_acq_rel,
						memory_order_relaxed);
}

/* ---- producer claim ---- */

/* Give back cells t+1..t+k-1 and then the gate at t, all ours (FREE again). */
SHMRING_INLINE void shmring__mpmc_prod_revert(struct shmring_mpmc *r, uint64_t t, unsigned k)
{
	for (unsigned j = k; j-- > 1;)
		/* release: pairs with the acquire claim CAS of the next producer */
		shmring_store_release(&shmring__mpmc_cell(r, t + j)->word,
				      shmring__mpmc_word(t + j, SHMRING__MPMC_FREE, 0));
	/* release: as above; gate last, so nobody passes it before the run is back */
	shmring_store_release(&shmring__mpmc_cell(r, t)->word,
			      shmring__mpmc_word(t, SHMRING__MPMC_FREE, 0));
	shmring_wake(r->seg, &r->ctrl->not_full); /* producers that met the gate */
}

/*
 * Claim between min and n consecutive cells. Returns k > 0 (held_pos/held_n set), 0 if
 * not now (full, gated, contended; r->stuck set when a busy cell is in the way), or a
 * negative errno.
 */
SHMRING_INLINE int shmring__mpmc_prod_claim(struct shmring_mpmc *r, unsigned n, unsigned min)
{
	struct shmring_mpmc_ctrl *c = r->ctrl;
	const int64_t lap = 4 * (int64_t)r->cap;
	r->stuck = 0;
	for (int it = 0; it < SHMRING__MPMC_TRIES; it++) {
		/* acquire: pairs with the acq_rel index moves (shmring__mpmc_advance) */
		uint64_t t = shmring_load_acquire(&c->tail);
		struct shmring_mpmc_cell *cell = shmring__mpmc_cell(r, t);
		/* acquire: pairs with the release of FREE(t) by dequeue_finish or recovery,
		 * so the last reader of this cell is done before we write it */
		uint64_t w = shmring_load_acquire(&cell->word);
		int64_t d = shmring__mpmc_rel(w, t);
		uint64_t tg = w & SHMRING__MPMC_TAG_MASK;
		if (d == 0 && tg == 0) {
			if (n > 1 && min > 1) {
				/* bulk: the last cell we need must be free already, or do not
				 * bother gating (others would wait on the gate for nothing) */
				uint64_t wl = shmring_load_acquire( /* pairs as above */
					&shmring__mpmc_cell(r, t + min - 1)->word);
				if (wl != shmring__mpmc_word(t + min - 1, SHMRING__MPMC_FREE, 0))
					return 0;
			}
			uint64_t gate = n > 1 ? SHMRING__MPMC_GATE : 0;
			if (!shmring__mpmc_cas(&cell->word, &w,
					       shmring__mpmc_word(t, SHMRING__MPMC_WRITING, r->tag | gate)))
				continue;
			unsigned k = 1;
			if (n > 1) {
				while (k < n) {
					_Atomic uint64_t *p = &shmring__mpmc_cell(r, t + k)->word;
					uint64_t e = shmring__mpmc_word(t + k, SHMRING__MPMC_FREE, 0);
					if (!shmring__mpmc_cas(p, &e, shmring__mpmc_word(t + k,
							SHMRING__MPMC_WRITING, r->tag)))
						break;
					k++;
				}
				if (k < min) {
					shmring__mpmc_prod_revert(r, t, k);
					return 0;
				}
				/* open the gate; release: pairs with the acquire load of helpers */
				shmring_store_release(&cell->word,
						      shmring__mpmc_word(t, SHMRING__MPMC_WRITING, r->tag));
			}
			shmring__mpmc_advance(&c->tail, t, k);
			if (n > 1)
				shmring_wake(r->seg, &r->ctrl->not_full); /* producers that met the gate */
			r->held_pos = t;
			r->held_gaps = 0;
			r->held_span = k;
			r->held_n = k;
			return (int)k;
		}
		if ((d >= 1 && d <= 3) || d == lap) {
			if (d == 1 && (tg & SHMRING__MPMC_GATE)) {
				r->stuck = w;
				return 0; /* a batch is being claimed here */
			}
			shmring__mpmc_advance(&c->tail, t, 1); /* t is taken: help */
			continue;
		}
		if (d >= -lap + 1 && d <= -lap + 3) {
			/* the previous lap is still in this cell: full */
			r->stuck = (d == -lap + 2) ? 0 : w;
			return 0;
		}
		/* a stale tail, or corruption if the tail has not moved */
		if (shmring_load_acquire(&c->tail) == t) /* pairs as the first load */
			return shmring__mpmc_broken(r, -EPROTO);
	}
	return 0;
}

/* ---- consumer claim ---- */

/* Give back cells h+1..h+span-1 but the gaps, then the gate at h (FULL again). */
SHMRING_INLINE void shmring__mpmc_cons_revert(struct shmring_mpmc *r, uint64_t h, unsigned span,
					      uint64_t gaps)
{
	for (unsigned j = span; j-- > 1;)
		if (!((gaps >> j) & 1))
			/* release: pairs with the acquire claim of the next consumer (the
			 * payload we acquired from the producer stays visible through us) */
			shmring_store_release(&shmring__mpmc_cell(r, h + j)->word,
					      shmring__mpmc_word(h + j, SHMRING__MPMC_FULL, 0));
	/* release: as above; gate last */
	shmring_store_release(&shmring__mpmc_cell(r, h)->word,
			      shmring__mpmc_word(h, SHMRING__MPMC_FULL, 0));
	shmring_wake(r->seg, &r->ctrl->not_empty); /* consumers that met the gate */
}

/*
 * Take between min and n messages from consecutive positions, each of at most maxlen
 * bytes. A batch steps over gaps (positions given back or abandoned): while we hold the
 * gate at h no producer can claim past h + cap, so a gap cell after it stays FREE(p + cap)
 * and is neither ours nor anyone's until we are done; finish leaves it alone. Returns
 * k > 0 (held_*), 0 if not now, -EMSGSIZE if the next message is longer than maxlen
 * (nothing taken), or a negative errno.
 */
SHMRING_INLINE int shmring__mpmc_cons_claim(struct shmring_mpmc *r, unsigned n, unsigned min,
					    uint32_t maxlen)
{
	struct shmring_mpmc_ctrl *c = r->ctrl;
	const int64_t lap = 4 * (int64_t)r->cap;
	r->stuck = 0;
	uint32_t gap_steps = SHMRING__MPMC_GAP_STEPS;
	for (int it = 0; it < SHMRING__MPMC_TRIES; it++) {
		/* acquire: pairs with the acq_rel index moves (shmring__mpmc_advance) */
		uint64_t h = shmring_load_acquire(&c->head);
		struct shmring_mpmc_cell *cell = shmring__mpmc_cell(r, h);
		/* acquire: pairs with the release store of FULL(h) in enqueue_finish, so the
		 * length and payload are visible */
		uint64_t w = shmring_load_acquire(&cell->word);
		int64_t d = shmring__mpmc_rel(w, h);
		uint64_t tg = w & SHMRING__MPMC_TAG_MASK;
		if (d == 2 && tg == 0) {
			uint32_t len = shmring_load_relaxed(&cell->len); /* ordered by the acquire above */
			if (shmring_unlikely(len > r->slot_size))
				return shmring__mpmc_broken(r, -EPROTO);
			if (len > maxlen)
				return -EMSGSIZE;
			if (n > 1 && min > 1) {
				uint64_t wl = shmring_load_acquire( /* pairs as above */
					&shmring__mpmc_cell(r, h + min - 1)->word);
				if (wl != shmring__mpmc_word(h + min - 1, SHMRING__MPMC_FULL, 0) &&
				    wl != shmring__mpmc_word(h + min - 1 + r->cap, SHMRING__MPMC_FREE, 0))
					return 0;
			}
			uint64_t gate = n > 1 ? SHMRING__MPMC_GATE : 0;
			if (!shmring__mpmc_cas(&cell->word, &w,
					       shmring__mpmc_word(h, SHMRING__MPMC_READING, r->tag | gate)))
				continue;
			unsigned k = 1, span = 1;
			uint64_t gaps = 0;
			int toolong = 0;
			if (n > 1) {
				while (k < n && span < SHMRING_MPMC_BATCH_MAX && span < r->cap) {
					struct shmring_mpmc_cell *ck = shmring__mpmc_cell(r, h + span);
					uint64_t e = shmring__mpmc_word(h + span, SHMRING__MPMC_FULL, 0);
					/* acquire: pairs with the producer's release of FULL */
					uint64_t wk = shmring_load_acquire(&ck->word);
					if (wk == shmring__mpmc_word(h + span + r->cap, SHMRING__MPMC_FREE, 0)) {
						gaps |= UINT64_C(1) << span++;
						continue;
					}
					if (wk != e)
						break;
					uint32_t lk = shmring_load_relaxed(&ck->len); /* ordered by it */
					if (lk > maxlen || lk > r->slot_size) {
						toolong = 1;
						break;
					}
					if (!shmring__mpmc_cas(&ck->word, &e, shmring__mpmc_word(h + span,
							SHMRING__MPMC_READING, r->tag)))
						break;
					k++;
					span++;
				}
				while (span > 1 && ((gaps >> (span - 1)) & 1))
					span--; /* trailing gaps are not ours to step over */
				gaps &= span >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << span) - 1;
				if (k < min) {
					shmring__mpmc_cons_revert(r, h, span, gaps);
					return toolong ? -EMSGSIZE : 0;
				}
				/* open the gate; release: pairs with the acquire load of helpers */
				shmring_store_release(&cell->word,
						      shmring__mpmc_word(h, SHMRING__MPMC_READING, r->tag));
			}
			shmring__mpmc_advance(&c->head, h, span);
			if (n > 1)
				shmring_wake(r->seg, &r->ctrl->not_empty); /* consumers that met the gate */
			r->held_pos = h;
			r->held_gaps = gaps;
			r->held_span = span;
			r->held_n = k;
			return (int)k;
		}
		/* h is taken, or the cell has moved on by whole laps of gaps (positions given
		 * back or abandoned that no consumer has stepped over yet): help */
		if ((d == 3 && !(tg & SHMRING__MPMC_GATE)) ||
		    (d >= lap && (d & 3) != SHMRING__MPMC_READING)) {
			shmring__mpmc_advance(&c->head, h, 1);
			if (d >= lap && gap_steps) {
				gap_steps--;
				it--; /* a gap stepped over: progress, not a retry */
			}
			continue;
		}
		if (d == 3 || d == 1) {
			r->stuck = w; /* gated batch, or a producer still writing */
			return 0;
		}
		if (d == 0 || d == -lap + 3)
			return 0; /* empty */
		/* a stale head, or corruption if the head has not moved */
		if (shmring_load_acquire(&c->head) == h) /* pairs as the first load */
			return shmring__mpmc_broken(r, -EPROTO);
	}
	return 0;
}

/* Shared tail of every non-blocking failure: count it; now and then run recovery and
 * the EOF check (slow path). Returns -EAGAIN, -EPIPE or another negative errno. */
SHMRING_INLINE int shmring__mpmc_fail(struct shmring_mpmc *r, int prod)
{
	/* relaxed: a hint that someone left; the scan it triggers does the real checks */
	if (shmring_unlikely((++r->fails & 63) == 0) ||
	    shmring_load_relaxed(&r->ctrl->leaves) != r->seen_leaves)
		return shmring__mpmc_idle(r, prod);
	return -EAGAIN;
}

/* The entry of every enqueue and dequeue: the handle and argument checks, the claim,
 * and the wait when there was nothing to claim. prod is a constant at every call, so
 * the inlined code keeps one branch. Returns the count claimed or a negative errno. */
/* The sticky error, or -EBADF for a handle without the role (prod: producer), or 0. */
SHMRING_INLINE int shmring__mpmc_usable(const struct shmring_mpmc *r, int prod)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != (prod ? SHMRING_ROLE_PRODUCER : SHMRING_ROLE_CONSUMER)))
		return -EBADF;
	return 0;
}

SHMRING_INLINE int shmring__mpmc_start(struct shmring_mpmc *r, int prod, unsigned n, unsigned min,
				       uint32_t maxlen, int timeout_ms)
{
	int rc = shmring__mpmc_usable(r, prod);
	if (shmring_unlikely(rc))
		return rc;
	if (shmring_unlikely(timeout_ms < SHMRING_FOREVER))
		return -EINVAL;
	if (shmring_unlikely(n == 0 || min == 0 || min > n || n > r->cap ||
			     n > SHMRING_MPMC_BATCH_MAX))
		return -EINVAL;
	if (shmring_unlikely(r->held_n))
		return -EBUSY;
	int k = prod ? shmring__mpmc_prod_claim(r, n, min) : shmring__mpmc_cons_claim(r, n, min, maxlen);
	if (shmring_unlikely(k <= 0)) {
		if (k < 0)
			return k;
		if (timeout_ms == 0)
			return shmring__mpmc_fail(r, prod);
		k = shmring__mpmc_wait(r, prod, n, min, maxlen, timeout_ms);
		if (k <= 0)
			return k;
	}
	r->fails = 0;
	return k;
}

/* ---- producer API ---- */

/* The lines a consumer touches first in each cell enqueue_finish published: its header
 * and payload, up to SHMRING__DEMOTE_HEAD bytes. */
SHMRING_INLINE void shmring__mpmc_demote(const struct shmring_mpmc *r, uint64_t pos, unsigned n,
					 const uint32_t *lens)
{
	for (unsigned i = 0; i < n; i++) { /* a cell need not start a line (align < 64) */
		uint64_t len = SHMRING_MPMC_CELL_HDR + (uint64_t)(lens ? lens[i] : r->slot_size);
		shmring_demote(shmring__mpmc_cell(r, pos + i),
			       len < SHMRING__DEMOTE_HEAD ? len : SHMRING__DEMOTE_HEAD);
	}
}

/*
 * Zero-copy enqueue: claim between min and n consecutive slots (min == n: bulk, all or
 * nothing; min == 1: burst) and store their payload addresses (slot_size writable bytes
 * each, 16-byte aligned) in bufs[0..k-1]. Fill them, then call enqueue_finish.
 * timeout_ms: 0 do not wait, >0 wait up to that long, SHMRING_FOREVER no limit.
 * Concurrency: producer handles, any number at once. Ordering: none yet (the messages
 * become visible at finish).
 * Returns k (min..n); -EAGAIN fewer than min free and timeout_ms == 0; -ETIMEDOUT;
 * -EINVAL n == 0, min == 0, min > n, n > capacity or n > SHMRING_MPMC_BATCH_MAX; -EBUSY
 * this handle already holds a batch; -EBADF not a producer handle; -EPIPE full and every consumer gone (see EOF);
 * -EPROTO corrupt ring (sticky).
 */
SHMRING_INLINE int shmring_mpmc_enqueue_start(struct shmring_mpmc *r, unsigned n, unsigned min,
					      void **bufs, int timeout_ms)
{
	int k = shmring__mpmc_start(r, 1, n, min, 0, timeout_ms);
	if (k <= 0)
		return k;
	for (int i = 0; i < k; i++)
		bufs[i] = shmring__mpmc_payload(r, r->held_pos + (uint64_t)i);
	return k;
}

/*
 * Publish the first n held slots with lengths lens[0..n-1] (NULL: each slot_size), in
 * position order; held slots beyond n are given back as gaps (consumers skip them; 0
 * gives back the whole batch). Concurrency: the handle that called enqueue_start.
 * Ordering: each FULL store is a release that pairs with the consumer's acquire, so the
 * payload written before finish is what the consumer reads; then wakes consumers (and
 * producers waiting for room, when cells were given back).
 * Returns n; -EINVAL nothing held or n > held; -EMSGSIZE a length > slot_size (nothing
 * published, the batch is still held); -EBADF not a producer.
 */
SHMRING_INLINE int shmring_mpmc_enqueue_finish(struct shmring_mpmc *r, unsigned n,
					       const uint32_t *lens)
{
	if (shmring_unlikely(r->role != SHMRING_ROLE_PRODUCER))
		return -EBADF;
	if (shmring_unlikely(r->held_n == 0 || n > r->held_n))
		return -EINVAL;
	if (lens)
		for (unsigned i = 0; i < n; i++)
			if (shmring_unlikely(lens[i] > r->slot_size))
				return -EMSGSIZE;
	uint64_t pos = r->held_pos, bytes = 0;
	unsigned held = r->held_n;
	for (unsigned i = 0; i < held; i++) {
		struct shmring_mpmc_cell *cell = shmring__mpmc_cell(r, pos + i);
		if (i < n) {
			uint32_t len = lens ? lens[i] : r->slot_size;
			shmring_store_relaxed(&cell->len, len); /* published by the release below */
			bytes += len;
			/* release: pairs with the consumer's acquire load of FULL(p) */
			shmring_store_release(&cell->word,
					      shmring__mpmc_word(pos + i, SHMRING__MPMC_FULL, 0));
		} else {
			/* a gap; release: pairs with the next claimer's acquire */
			shmring_store_release(&cell->word, shmring__mpmc_word(pos + i + r->cap,
									 SHMRING__MPMC_FREE, 0));
		}
	}
	if (shmring_unlikely(r->demote))
		shmring__mpmc_demote(r, pos, n, lens);
	r->held_n = 0;
	r->st_msgs += n;
	r->st_bytes += bytes;
	if (shmring_unlikely(++r->st_ops >= 64))
		shmring__mpmc_flush_stats(r);
	shmring_wake(r->seg, &r->ctrl->not_empty); /* W1 was the FULL stores above */
	if (shmring_unlikely(n < held)) /* a gap is room for the producer a lap on */
		shmring_wake(r->seg, &r->ctrl->not_full); /* W1 was the FREE stores above */
	return (int)n;
}

/*
 * Copy one message in. Returns 0; -EMSGSIZE len > slot_size; otherwise as
 * enqueue_start. Concurrency and ordering: as enqueue_start + enqueue_finish.
 */
SHMRING_INLINE int shmring_mpmc_enqueue(struct shmring_mpmc *r, const void *p, size_t len,
					int timeout_ms)
{
	void *buf;
	if (shmring_unlikely(len > r->slot_size)) { /* a consumer is -EBADF all the same */
		int e = shmring__mpmc_usable(r, 1);
		return e ? e : -EMSGSIZE;
	}
	int rc = shmring_mpmc_enqueue_start(r, 1, 1, &buf, timeout_ms);
	if (rc < 0)
		return rc;
	memcpy(buf, p, len);
	uint32_t l = (uint32_t)len;
	rc = shmring_mpmc_enqueue_finish(r, 1, &l);
	return rc < 0 ? rc : 0;
}

/* Copy-in helper of enqueue_bulk/burst: between min and n messages. */
SHMRING_INLINE int shmring__mpmc_enqueue_n(struct shmring_mpmc *r, const void *src, size_t size,
					   unsigned n, unsigned min, int timeout_ms)
{
	void *bufs[64];
	if (shmring_unlikely(size > r->slot_size)) { /* a consumer is -EBADF all the same */
		int e = shmring__mpmc_usable(r, 1);
		return e ? e : -EMSGSIZE;
	}
	if (shmring_unlikely(n > 64)) {
		if (min == n)
			return -EINVAL; /* bulk copies are limited to 64 messages */
		n = 64;
	}
	if (shmring_unlikely(min < n && n > r->cap))
		n = (unsigned)r->cap; /* a burst: as many as there is room for */
	int k = shmring_mpmc_enqueue_start(r, n, min, bufs, timeout_ms);
	if (k <= 0)
		return k;
	uint32_t lens[64];
	for (int i = 0; i < k; i++) {
		memcpy(bufs[i], (const uint8_t *)src + (size_t)i * size, size);
		lens[i] = (uint32_t)size;
	}
	return shmring_mpmc_enqueue_finish(r, (unsigned)k, lens);
}

/* Copy n messages of size bytes each, back to back at src: all n or nothing. n <= 64
 * (-EINVAL otherwise). Returns n; -EMSGSIZE size > slot_size; otherwise as
 * enqueue_start. */
SHMRING_INLINE int shmring_mpmc_enqueue_bulk(struct shmring_mpmc *r, const void *src,
					     size_t size, unsigned n, int timeout_ms)
{
	return shmring__mpmc_enqueue_n(r, src, size, n, n, timeout_ms);
}

/* As enqueue_bulk, but as many as there is room for, at least one and at most
 * min(n, 64, capacity). Returns 1..n. */
SHMRING_INLINE int shmring_mpmc_enqueue_burst(struct shmring_mpmc *r, const void *src,
					      size_t size, unsigned n, int timeout_ms)
{
	return shmring__mpmc_enqueue_n(r, src, size, n, n ? 1 : 0, timeout_ms);
}

/* ---- consumer API ---- */

/*
 * Zero-copy dequeue: take between min and n messages of consecutive positions (gaps
 * stepped over; min == n: bulk; min == 1: burst) and describe them in msgs[0..k-1], in
 * position order; they stay valid until dequeue_finish. timeout_ms as enqueue_start. Concurrency: consumer handles, any number
 * at once. Ordering: the claim is an acquire that pairs with the producer's release of
 * FULL, so the payloads are complete.
 * Returns k (min..n); -EAGAIN fewer than min ready and timeout_ms == 0 (or more than
 * 65,536 gaps in a row before the next message: bounded work per call, the next call
 * goes on); -ETIMEDOUT;
 * -EPIPE empty and every producer gone (EOF); -EINVAL bad n/min (as enqueue_start);
 * -EBUSY already holding;
 * -EBADF not a consumer; -EPROTO corrupt ring (sticky).
 */
SHMRING_INLINE int shmring_mpmc_dequeue_start(struct shmring_mpmc *r, unsigned n, unsigned min,
					      struct shmring_mpmc_msg *msgs, int timeout_ms)
{
	int k = shmring__mpmc_start(r, 0, n, min, UINT32_MAX, timeout_ms);
	if (k <= 0)
		return k;
	for (unsigned j = 0, i = 0; j < r->held_span; j++) {
		if ((r->held_gaps >> j) & 1)
			continue;
		uint64_t pos = r->held_pos + j;
		msgs[i].data = shmring__mpmc_payload(r, pos);
		/* checked against slot_size by the claim; ordered by its acquire */
		msgs[i].len = shmring_load_relaxed(&shmring__mpmc_cell(r, pos)->len);
		if (msgs[i].len > r->slot_size)
			msgs[i].len = r->slot_size; /* changed under us: keep it in bounds */
		i++;
	}
	return k;
}

/*
 * Release every held message back to the producers (the payload must not be used after).
 * Concurrency: the handle that called dequeue_start. Ordering: each FREE store is a
 * release that pairs with the next producer's acquire claim, so our reads are done
 * before it writes; then wakes producers. Returns the number released; -EINVAL nothing
 * held; -EBADF not a consumer.
 */
SHMRING_INLINE int shmring_mpmc_dequeue_finish(struct shmring_mpmc *r)
{
	if (shmring_unlikely(r->role != SHMRING_ROLE_CONSUMER))
		return -EBADF;
	unsigned k = r->held_n;
	if (shmring_unlikely(k == 0))
		return -EINVAL;
	for (unsigned i = 0; i < r->held_span; i++) {
		if ((r->held_gaps >> i) & 1)
			continue; /* a gap we stepped over: not ours, already FREE */
		uint64_t pos = r->held_pos + i;
		/* release: pairs with the acquire claim CAS of the producer a lap later */
		shmring_store_release(&shmring__mpmc_cell(r, pos)->word,
				      shmring__mpmc_word(pos + r->cap, SHMRING__MPMC_FREE, 0));
	}
	r->held_n = 0;
	shmring_wake(r->seg, &r->ctrl->not_full); /* W1 was the FREE stores above */
	return (int)k;
}

/*
 * Copy one message out into buf (cap bytes). Returns its length (>= 0); -EMSGSIZE the
 * next message is longer than cap (it stays in the ring); otherwise as dequeue_start.
 */
SHMRING_INLINE int shmring_mpmc_dequeue(struct shmring_mpmc *r, void *buf, size_t cap,
					int timeout_ms)
{
	uint32_t maxlen = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
	int k = shmring__mpmc_start(r, 0, 1, 1, maxlen, timeout_ms);
	if (k <= 0)
		return k;
	uint32_t len = shmring_load_relaxed(&shmring__mpmc_cell(r, r->held_pos)->len); /* checked by the claim */
	if (len > maxlen || len > r->slot_size)
		len = 0; /* changed under us since the claim checked it: stay in bounds */
	memcpy(buf, shmring__mpmc_payload(r, r->held_pos), len);
	shmring_mpmc_dequeue_finish(r);
	return (int)len;
}

SHMRING_INLINE int shmring__mpmc_dequeue_n(struct shmring_mpmc *r, void *dst, size_t size,
					   unsigned n, unsigned min, uint32_t *lens, int timeout_ms)
{
	uint32_t maxlen = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
	if (shmring_unlikely(min < n)) { /* a burst: as many as there are, up to a batch */
		n = n > SHMRING_MPMC_BATCH_MAX ? SHMRING_MPMC_BATCH_MAX : n;
		n = n > r->cap ? (unsigned)r->cap : n;
	}
	int k = shmring__mpmc_start(r, 0, n, min, maxlen, timeout_ms);
	if (k <= 0)
		return k;
	for (unsigned j = 0, i = 0; j < r->held_span; j++) {
		if ((r->held_gaps >> j) & 1)
			continue;
		uint64_t pos = r->held_pos + j;
		uint32_t len = shmring_load_relaxed(&shmring__mpmc_cell(r, pos)->len); /* checked by the claim */
		if (len > maxlen || len > r->slot_size)
			len = 0; /* changed under us since the claim checked it: stay in bounds */
		memcpy((uint8_t *)dst + (size_t)i * size, shmring__mpmc_payload(r, pos), len);
		if (lens)
			lens[i] = len;
		i++;
	}
	shmring_mpmc_dequeue_finish(r);
	return k;
}

/*
 * Copy n messages out (n <= SHMRING_MPMC_BATCH_MAX), message i at dst + i * size, its
 * length in lens[i] (lens may be NULL). bulk: all n or none (returns n); burst: 1 to
 * min(n, SHMRING_MPMC_BATCH_MAX, capacity).
 * Returns as dequeue_start; -EMSGSIZE a message needed is longer than size (nothing
 * taken).
 */
SHMRING_INLINE int shmring_mpmc_dequeue_bulk(struct shmring_mpmc *r, void *dst, size_t size,
					     unsigned n, uint32_t *lens, int timeout_ms)
{
	return shmring__mpmc_dequeue_n(r, dst, size, n, n, lens, timeout_ms);
}

SHMRING_INLINE int shmring_mpmc_dequeue_burst(struct shmring_mpmc *r, void *dst, size_t size,
					      unsigned n, uint32_t *lens, int timeout_ms)
{
	return shmring__mpmc_dequeue_n(r, dst, size, n, n ? 1 : 0, lens, timeout_ms);
}

#endif /* SHMRING_MPMC_H */
