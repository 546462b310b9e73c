/* SPDX-License-Identifier: MIT */
/*
 * shmring/spsc.h: single-producer single-consumer ring of variable-size records.
 *
 * RECORDS. A record is an 8-byte header followed by its payload, padded so that the
 * next record starts on the ring's alignment (8 by default, any power of two up to a
 * page). The header word is
 *     bits  0-31  payload length
 *     bits 32-47  user type
 *     bits 48-63  flags: SHMRING_SPSC_F_COMMIT (always set), SHMRING_SPSC_F_PAD
 * A header of 0 means "nothing here yet".
 *
 * WRAP-AROUND by padding: a record never wraps. When it does not fit before the end of
 * the data region, the producer writes a padding record to the end and puts the record
 * at offset 0, so every payload is contiguous. The maximum record size is therefore
 * at most (capacity - 8) / 2 minus its header (checked at creation).
 *
 * PUBLICATION is the record header itself (as in Agrona): commit writes 0 to the header
 * slot that follows the last pending record, then stores the first pending record's
 * header with release. The consumer polls the header at its position with acquire, so
 * a small message crosses between CPUs in the one cache line that holds both header and
 * payload. Because the header after every commit is zeroed before the commit is
 * published, the consumer can never mistake stale bytes of an earlier lap for a record.
 * The producer's committed position (ctrl->tail) is stored after each commit for
 * inspectors and for a replacement producer, which rescans from there.
 *
 * FLOW CONTROL: the consumer publishes its position (ctrl->head) with release on
 * release(); the producer reads it with acquire only when its cached copy says the ring
 * is full. The producer needs room for its record plus the 8-byte zero header after it.
 *
 * BATCHES: reserve may be called several times before one commit (one publication for
 * all); peek may be called several times before one release (one index store for all).
 *
 * CLOSING AND DEAD PEERS: shmring_spsc_close() by the producer is EOF: the consumer gets
 * every committed record, then -EPIPE. A closed consumer makes the producer's reserve
 * return -EPIPE once it needs room. A peer that died (its participant lock is gone) or detached is
 * treated as closed: blocking calls notice within SHMRING_PEER_CHECK_MS; non-blocking
 * calls that keep finding the ring empty (consumer) or full (producer) read the clock
 * on every 256th such call and check the peer at most once per SHMRING_PEER_CHECK_MS.
 * A replacement producer may attach (it resumes after the last committed
 * record, so a dead producer's uncommitted reservation is lost, never half-read); a
 * replacement consumer resumes at the last released position (records peeked but not
 * released by a dead consumer are delivered again).
 *
 * CONCURRENCY: one producer handle and one consumer handle, each used by one thread at
 * a time; any number of processes may inspect. Handles do not survive fork().
 */
#ifndef SHMRING_SPSC_H
#define SHMRING_SPSC_H

#include "wait.h"

#define SHMRING_SPSC_F_COMMIT (UINT64_C(1) << 48)
#define SHMRING_SPSC_F_PAD (UINT64_C(1) << 49)
#define SHMRING_SPSC_F_MASK (UINT64_C(0xffff) << 48)
#define SHMRING_SPSC_HDR 8u
#define SHMRING_SPSC_SLOT_PRODUCER 0u
#define SHMRING_SPSC_SLOT_CONSUMER 1u
#define SHMRING_SPSC_DEFAULT_CAPACITY (UINT64_C(1) << 20)

/* Geometry words in the segment header. */
#define SHMRING_SPSC_GEO_CAPACITY 0 /* data bytes, power of two, == data_size */
#define SHMRING_SPSC_GEO_MAX_RECORD 1 /* largest payload */
#define SHMRING_SPSC_GEO_ALIGN 2    /* record alignment, power of two, 8..4096 */

/* The control region (at ctrl_off). Each line is written by one side only. */
struct shmring_spsc_ctrl {
	/* written by the producer after each commit; read by inspectors and by a
	 * replacement producer */
	_Atomic uint64_t tail;
	uint8_t pad0[SHMRING_LINE - 8];
	/* written by the consumer on release; read by the producer when it looks full */
	_Atomic uint64_t head;
	uint8_t pad1[SHMRING_LINE - 8];
	/* rarely written */
	_Atomic uint32_t prod_closed;
	_Atomic uint32_t cons_closed;
	uint8_t pad2[SHMRING_LINE - 8];
	struct shmring_waitq data_q;  /* the consumer sleeps here, waiting for records */
	struct shmring_waitq space_q; /* the producer sleeps here, waiting for room */
};
_Static_assert(offsetof(struct shmring_spsc_ctrl, head) == 128, "layout");
_Static_assert(offsetof(struct shmring_spsc_ctrl, prod_closed) == 256, "layout");
_Static_assert(offsetof(struct shmring_spsc_ctrl, data_q) == 384, "layout");
_Static_assert(offsetof(struct shmring_spsc_ctrl, space_q) == 512, "layout");
_Static_assert(sizeof(struct shmring_spsc_ctrl) == 640, "layout");

struct shmring_spsc_opts {
	uint64_t capacity;   /* data bytes; rounded up to a power of two >= 4096; 0: 1 MiB */
	uint32_t max_record; /* largest payload; 0: the most the capacity allows */
	uint32_t align;      /* record alignment, a power of two 8..4096; 0: 8. The
			      * capacity must be at least 4 x align (else -EINVAL) */
	uint32_t mode;       /* named segments: permission bits (at most 0777,
			      * else -EINVAL), as given: no umask; 0: 0600 */
};

/* Process-local handle. Fields are private; they are here for the inline fast path. */
struct shmring_spsc {
	struct shmring_seg *seg;
	struct shmring_spsc_ctrl *ctrl;
	uint8_t *data;
	uint64_t cap, mask;
	uint32_t max_record, align;
	uint32_t role, slot;
	int broken;              /* sticky negative errno once corruption was seen */
	int spin;                /* polls before sleeping */
	int demote;              /* producer: commit demotes the batch's head (set_demote) */
	/* producer */
	uint64_t p_commit;       /* position of the first pending record */
	uint64_t p_pend;         /* position after the last pending record */
	uint64_t p_first;        /* header value of the first pending record */
	uint64_t p_head;         /* cached consumer position */
	uint64_t p_msgs, p_bytes; /* committed totals */
	uint64_t p_last_h;       /* header value of the last pending record, which starts
				  * at p_pend minus its total size */
	uint64_t p_pbytes;       /* payload bytes pending (never re-read from the ring) */
	uint32_t p_nrec;         /* pending records (nothing pending: p_pend == p_commit) */
	uint32_t p_full_polls;
	uint64_t p_last_check;   /* CLOCK_MONOTONIC ns: last consumer liveness check */
	/* consumer */
	uint64_t c_head;         /* released position */
	uint64_t c_peek;         /* position after the last peeked record */
	uint32_t c_npeek;
	uint32_t c_empty_polls;
	uint64_t c_last_check;   /* CLOCK_MONOTONIC ns: last producer liveness check */
};

/* A record seen by the consumer; data points into the ring until release. */
struct shmring_rec {
	const void *data;
	uint32_t len;
	uint16_t type;
};

/*
 * Create a ring and attach to it with role SHMRING_ROLE_PRODUCER or
 * SHMRING_ROLE_CONSUMER. name: NULL for an anonymous memfd ring (share
 * shmring_spsc_fd()). Returns 0 or: -EINVAL (opts or role), -EEXIST, -ENOSPC, -EACCES,
 * -ENOMEM, other segment errors (segment.h).
 */
SHMRING_API int shmring_spsc_create(const char *name, const struct shmring_spsc_opts *o,
				    uint32_t role, struct shmring_spsc **out);
/* Attach to an existing ring. -EBUSY if a live process already has that role; -EPROTO
 * if the segment is not a valid SPSC ring; other segment errors. */
SHMRING_API int shmring_spsc_open(const char *name, uint32_t role, struct shmring_spsc **out);
SHMRING_API int shmring_spsc_open_fd(int fd, uint32_t role, struct shmring_spsc **out);
/* Producer: discard uncommitted reservations, mark end of stream, wake the consumer.
 * Consumer: mark closed (the producer gets -EPIPE). Then detach and free the handle. */
SHMRING_API int shmring_spsc_close(struct shmring_spsc *r);
/* Detach without closing (the peer sees this process as gone, as if it died). */
SHMRING_API void shmring_spsc_detach(struct shmring_spsc *r);
SHMRING_API int shmring_spsc_fd(const struct shmring_spsc *r);
SHMRING_API struct shmring_seg *shmring_spsc_seg(const struct shmring_spsc *r);
/* Polls before sleeping in blocking calls (default, and for a negative spin:
 * SHMRING_SPIN_DEFAULT; 0: no spinning). */
SHMRING_API void shmring_spsc_set_spin(struct shmring_spsc *r, int spin);
/*
 * Producer: after each commit, push the lines the consumer reads first out of this CPU's
 * private caches into the shared last-level cache (x86 CLDEMOTE; a NOP where the CPU
 * lacks it), so the consumer's misses are served there instead of by a snoop into the
 * producer's core: the lines holding the batch's first 128 bytes and the zero header
 * after it (where the consumer polls next), at most four instructions per commit. Off by
 * default. It is a trade, measured in bench/RESULTS.md:
 *   - helps a request/response channel whose two processes run on different physical
 *     cores: a round trip is 9-14% shorter, at 64 bytes (the consumer polls the header's
 *     line, then misses on the payload's second line; that miss is shortened) as at
 *     4 KiB or 64 KiB;
 *   - hurts streaming (records committed faster than they are read): 64-byte records
 *     0.3-0.5x as fast here unbatched, 0.4-0.8x in batches of 32, 0.7-1.0x in batches
 *     of 256 (the producer writes its next record into the line it has just given away);
 *   - hurts badly when both processes share a core (SMT siblings, one CPU, a VM whose
 *     vCPUs land on one host core): the lines leave the cache both sides read from
 *     (a 64-byte round trip 5x slower, seen once here).
 * Per handle: a replacement producer starts with it off. Returns 0; -EBADF if r is not
 * the producer.
 */
SHMRING_API int shmring_spsc_set_demote(struct shmring_spsc *r, int on);
/* 1 if the peer role is attached and alive, 0 if not (slow: one fcntl). */
SHMRING_API int shmring_spsc_peer_alive(const struct shmring_spsc *r);
/* After -EPIPE: 1 if the peer closed the channel with shmring_spsc_close(), 0 if it
 * died or detached without closing. */
SHMRING_API int shmring_spsc_peer_closed(const struct shmring_spsc *r);

/* Slow paths of the inline calls below (src/spsc.c). */
SHMRING_API int shmring__spsc_refresh_head(struct shmring_spsc *r, uint64_t need_end);
SHMRING_API int shmring__spsc_empty(struct shmring_spsc *r, uint64_t idx);
SHMRING_API int shmring__spsc_broken(struct shmring_spsc *r, int err);

SHMRING_INLINE uint64_t *shmring__spsc_hdr_ptr(const struct shmring_spsc *r, uint64_t idx)
{
	return (uint64_t *)(void *)(r->data + idx);
}

SHMRING_INLINE _Atomic uint64_t *shmring__spsc_hdr(const struct shmring_spsc *r, uint64_t idx)
{
	return (_Atomic uint64_t *)(void *)(r->data + idx);
}

/* The lines a consumer touches first in the batch commit is publishing: all of them with
 * the zero header after it (where the consumer polls next) when they are few; else the
 * batch's first SHMRING__DEMOTE_HEAD bytes and the zero header's line, each line once. */
SHMRING_INLINE void shmring__spsc_demote(const struct shmring_spsc *r)
{
	uint64_t end = r->p_pend + SHMRING_SPSC_HDR;
	if (end - r->p_commit > SHMRING__DEMOTE_HEAD + 64) {
		end = r->p_commit + SHMRING__DEMOTE_HEAD;
		shmring__demote(r->data + (r->p_pend & r->mask));
	}
	for (uint64_t q = r->p_commit & ~(uint64_t)63; q < end; q += 64)
		shmring__demote(r->data + (q & r->mask));
}

SHMRING_INLINE uint64_t shmring__spsc_total(const struct shmring_spsc *r, uint64_t len)
{
	return (SHMRING_SPSC_HDR + len + r->align - 1) & ~(uint64_t)(r->align - 1);
}

/*
 * Reserve room for a record of len bytes and return its payload in *buf (len bytes,
 * writable until commit or abort). Several reservations may be made before one commit.
 * Concurrency: producer only. Ordering: none (nothing is visible before commit).
 * Returns 0; -EAGAIN ring full; -EMSGSIZE len > max_record; -EPIPE consumer closed or
 * dead; -EPROTO corrupt indices (sticky); -EBADF not the producer.
 */
SHMRING_INLINE int shmring_spsc_reserve_typed(struct shmring_spsc *r, size_t len,
					      uint16_t type, void **buf)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != SHMRING_ROLE_PRODUCER))
		return -EBADF;
	if (shmring_unlikely(len > r->max_record))
		return -EMSGSIZE;
	uint64_t total = shmring__spsc_total(r, len);
	uint64_t pos = r->p_pend;
	int first = pos == r->p_commit;
	uint64_t idx = pos & r->mask;
	uint64_t contig = r->cap - idx;
	uint64_t pad = total > contig ? contig : 0;
	/* room for padding, the record and the zero header that follows it */
	uint64_t end = pos + pad + total + SHMRING_SPSC_HDR;
	if (shmring_unlikely(end - r->p_head > r->cap)) {
		int rc = shmring__spsc_refresh_head(r, end);
		if (rc < 0)
			return rc;
	}
	uint64_t h = SHMRING_SPSC_F_COMMIT | ((uint64_t)type << 32) | (uint64_t)len;
	if (pad) {
		uint64_t ph = SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD | (pad - SHMRING_SPSC_HDR);
		if (first)
			r->p_first = ph; /* published by commit's release store */
		else /* invisible until commit's release store publishes the batch */
			shmring_store_relaxed(shmring__spsc_hdr(r, idx), ph);
		first = 0;
		pos += pad;
		idx = 0;
	}
	if (first)
		r->p_first = h;
	else /* invisible until commit's release store publishes the batch */
		shmring_store_relaxed(shmring__spsc_hdr(r, idx), h);
	/* as few stores to the handle as will do: in a batch each one takes a store-buffer
	 * entry behind the ring stores that wait for their lines, and fewer entries per
	 * record let more ring lines be fetched at once (2 cores: 64 B streaming
	 * throughput) */
	r->p_nrec++;
	r->p_last_h = h;
	r->p_pend = pos + total;
	r->p_pbytes += len;
	*buf = r->data + idx + SHMRING_SPSC_HDR;
	return 0;
}

SHMRING_INLINE int shmring_spsc_reserve(struct shmring_spsc *r, size_t len, void **buf)
{
	return shmring_spsc_reserve_typed(r, len, 0, buf);
}

/*
 * Publish every pending reservation at once and wake the consumer if it sleeps.
 * Concurrency: producer only. Ordering: release; pairs with the consumer's acquire load
 * of the header in shmring_spsc_peek(). Returns the number of records published (0 if
 * none were pending), or the sticky error.
 */
SHMRING_INLINE int shmring_spsc_commit(struct shmring_spsc *r)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	uint32_t n = r->p_nrec;
	if (r->p_pend == r->p_commit)
		return 0;
	/* the header after the batch must read "empty" before the batch is visible; the
	 * release store below orders it (the consumer's acquire of the first header) */
	shmring_store_relaxed(shmring__spsc_hdr(r, r->p_pend & r->mask), 0);
	/* publish: pairs with the acquire load in shmring_spsc_peek() */
	shmring_store_release(shmring__spsc_hdr(r, r->p_commit & r->mask), r->p_first);
	if (shmring_unlikely(r->demote))
		shmring__spsc_demote(r);
	r->p_commit = r->p_pend;
	r->p_msgs += n;
	r->p_bytes += r->p_pbytes;
	r->p_nrec = 0;
	r->p_pbytes = 0;
	/* informational for inspectors and replacements; no acquire pairs with it on the
	 * data path (a replacement producer rescans the headers after it) */
	shmring_store_relaxed(&r->ctrl->tail, r->p_commit);
	struct shmring_hdr *sh = shmring_seg_hdr(r->seg);
	shmring_store_relaxed(&sh->stats.msgs, r->p_msgs);
	shmring_store_relaxed(&sh->stats.bytes, r->p_bytes);
	shmring_wake(r->seg, &r->ctrl->data_q);
	return (int)n;
}

/*
 * Shrink the most recent pending reservation to len bytes (len <= its reserved length),
 * e.g. after read() filled less than was reserved. The space given back is reused by
 * the next reservation. Concurrency: producer only.
 * Returns 0; -EINVAL if nothing is pending or len is larger than reserved.
 */
SHMRING_INLINE int shmring_spsc_shrink(struct shmring_spsc *r, size_t len)
{
	if (r->p_nrec == 0)
		return -EINVAL;
	/* the header comes from the handle, not the ring: a hostile peer may have
	 * rewritten the pending copy, and a length taken from there could move p_pend */
	uint64_t h = r->p_last_h;
	uint64_t old = h & 0xffffffffu;
	if (len > old)
		return -EINVAL;
	uint64_t last = r->p_pend - shmring__spsc_total(r, old);
	h = (h & ~(uint64_t)0xffffffffu) | (uint64_t)len;
	if (last == r->p_commit)
		r->p_first = h;
	else /* invisible until commit's release store publishes the batch */
		shmring_store_relaxed(shmring__spsc_hdr(r, last & r->mask), h);
	r->p_last_h = h;
	r->p_pbytes -= old - len;
	r->p_pend = last + shmring__spsc_total(r, len);
	return 0;
}

/* Drop every pending reservation. Concurrency: producer only. */
SHMRING_INLINE void shmring_spsc_abort(struct shmring_spsc *r)
{
	/* the totals count committed records only: nothing to undo, and nothing re-read
	 * from the pending headers, which a hostile peer may have rewritten */
	r->p_pbytes = 0;
	r->p_nrec = 0;
	r->p_pend = r->p_commit;
}

/*
 * Look at the next record without consuming it. Several peeks may precede one release;
 * each returns the record after the previous one.
 * Concurrency: consumer only. Ordering: acquire; pairs with the release store in
 * shmring_spsc_commit(), so the payload is visible.
 * Returns 0 and fills *rec; -EAGAIN empty; -EPIPE empty and the producer closed or died;
 * -EPROTO impossible header (sticky); -EBADF not the consumer.
 */
SHMRING_INLINE int shmring_spsc_peek(struct shmring_spsc *r, struct shmring_rec *rec)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	if (shmring_unlikely(r->role != SHMRING_ROLE_CONSUMER))
		return -EBADF;
	uint64_t pos = r->c_peek;
	int padded = 0, rechecked = 0;
	for (;;) {
		uint64_t idx = pos & r->mask;
		/* pairs with the release store in shmring_spsc_commit() */
		uint64_t h = shmring_load_acquire(shmring__spsc_hdr(r, idx));
		if (h == 0) {
			int rc = rechecked ? -EAGAIN : shmring__spsc_empty(r, idx);
			if (rc != 0)
				return rc;
			rechecked = 1; /* the slow path saw a record arrive: read it again */
			continue;
		}
		uint64_t len = h & 0xffffffffu;
		uint64_t fl = h & SHMRING_SPSC_F_MASK;
		if (shmring_unlikely(!(fl & SHMRING_SPSC_F_COMMIT) ||
				     (fl & ~(SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD))))
			return shmring__spsc_broken(r, -EPROTO);
		if (fl & SHMRING_SPSC_F_PAD) {
			/* padding must run exactly to the end of the ring, and only once */
			if (shmring_unlikely(padded || idx == 0 ||
					     len + SHMRING_SPSC_HDR != r->cap - idx))
				return shmring__spsc_broken(r, -EPROTO);
			padded = 1;
			pos += r->cap - idx;
			r->c_peek = pos;
			continue;
		}
		uint64_t total = shmring__spsc_total(r, len);
		if (shmring_unlikely(len > r->max_record || total > r->cap - idx))
			return shmring__spsc_broken(r, -EPROTO);
		rec->data = r->data + idx + SHMRING_SPSC_HDR;
		rec->len = (uint32_t)len;
		rec->type = (uint16_t)(h >> 32);
		r->c_peek = pos + total;
		r->c_npeek++;
		return 0;
	}
}

/*
 * Give back every peeked record (their memory goes back to the producer) and wake the
 * producer if it sleeps for room. Concurrency: consumer only. Ordering: release; pairs
 * with the producer's acquire load of ctrl->head in shmring__spsc_refresh_head().
 * Returns the number of records released, or the sticky error of a broken handle
 * (-EPROTO: nothing moves once corruption was seen).
 */
SHMRING_INLINE int shmring_spsc_release(struct shmring_spsc *r)
{
	if (shmring_unlikely(r->broken))
		return r->broken;
	uint32_t n = r->c_npeek;
	if (n == 0) {
		/* a skipped padding record still moves the position */
		if (r->c_peek == r->c_head)
			return 0;
	}
	r->c_head = r->c_peek;
	r->c_npeek = 0;
	/* pairs with the acquire load in shmring__spsc_refresh_head() */
	shmring_store_release(&r->ctrl->head, r->c_head);
	shmring_wake(r->seg, &r->ctrl->space_q);
	return (int)n;
}

/* ---- blocking and copying helpers (src/spsc.c) ---- */

/* As reserve, waiting up to timeout_ms for room (0: no wait, -EAGAIN if full;
 * SHMRING_FOREVER: no limit). Pending
 * reservations are committed before sleeping, so the consumer can make room.
 * Returns 0 or the errors of reserve, -ETIMEDOUT. */
SHMRING_API int shmring_spsc_reserve_wait(struct shmring_spsc *r, size_t len, void **buf,
					  int timeout_ms);
/* As peek, waiting up to timeout_ms for a record (0: no wait, -EAGAIN if empty).
 * Returns 0, -ETIMEDOUT, -EPIPE
 * (producer closed or died and everything committed was read), -EPROTO. */
SHMRING_API int shmring_spsc_peek_wait(struct shmring_spsc *r, struct shmring_rec *rec,
				       int timeout_ms);
/* Copy len bytes in as one record and commit. Returns 0 or the reserve_wait errors. */
SHMRING_API int shmring_spsc_send(struct shmring_spsc *r, const void *p, size_t len,
				  int timeout_ms);
/* Copy the next record out and release it. Returns its length; -EMSGSIZE if it is
 * larger than cap, -EOVERFLOW if it is longer than INT32_MAX (possible in rings of
 * 8 GiB or more): the record stays, peek it; else the peek_wait errors. */
SHMRING_API int shmring_spsc_recv(struct shmring_spsc *r, void *buf, size_t cap,
				  int timeout_ms);

#endif /* SHMRING_SPSC_H */
