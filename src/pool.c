/* SPDX-License-Identifier: MIT */
/*
 * Frame pool: the slow paths (create, attach, waiting, dropping for drop-oldest
 * subscribers, leaving, reclaiming dead participants). The protocol is described at the
 * top of shmring/pool.h; the fast paths are inline there.
 */
#include "internal.h"
#include "shmring/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE_UP(x) (((x) + SHMRING_PAGE - 1) & ~(uint64_t)(SHMRING_PAGE - 1))
#define MAX_BUF_SIZE (UINT64_C(1) << 30)
#define META_OFF ((uint64_t)sizeof(struct shmring_pool_ctrl))
#define SWEEP_EVERY_NS (UINT64_C(100) * 1000000u)
#ifndef SHMRING_FUZZING
#define HANDSHAKE_NS (UINT64_C(1000) * 1000000u) /* a finalizer waits this long at most */
#define OWNER_WAIT_NS (UINT64_C(2000) * 1000000u) /* for a reclaimer to finish */
#else
/* libFuzzer build: a scribbled owner word naming a live reclaimer would cost every
 * input the full bound; that the wait is bounded is what matters, not its length */
#define HANDSHAKE_NS 0
#define OWNER_WAIT_NS 0
#endif
#define EMPTY_CHECK_EVERY 1024u
#define MARK_MASK UINT64_C(0xffff)

/* ---- geometry ---- */

static uint32_t next_pow2(uint32_t x)
{
	uint32_t v = 1;
	while (v < x)
		v <<= 1;
	return v;
}

/* The control region's layout follows from the counts alone; the offsets are also
 * stored in geo[] for tools, and must agree. */
static void layout(uint32_t nbufs, uint32_t max_subs, uint32_t log_cap, struct shmring_pool_geo *g)
{
	g->meta_off = META_OFF;
	g->subs_off = g->meta_off + (uint64_t)nbufs * sizeof(struct shmring_pool_meta);
	g->log_off = g->subs_off + (uint64_t)max_subs * sizeof(struct shmring_pool_sub);
	g->ctrl_need = g->log_off + (uint64_t)log_cap * sizeof(struct shmring_pool_entry);
}

int shmring_pool_geo_check(const uint64_t geo[SHMRING_GEO_WORDS], uint32_t max_parts,
			   uint64_t ctrl_size, uint64_t data_size, struct shmring_pool_geo *out,
			   char *why, size_t wl)
{
	struct shmring_pool_geo g;
	if (!geo)
		return -EINVAL;
	uint64_t n = geo[SHMRING_POOL_GEO_NBUFS], bs = geo[SHMRING_POOL_GEO_BUF_SIZE];
	uint64_t st = geo[SHMRING_POOL_GEO_BUF_STRIDE], ms = geo[SHMRING_POOL_GEO_MAX_SUBS];
	uint64_t lc = geo[SHMRING_POOL_GEO_LOG_CAP], lim = geo[SHMRING_POOL_GEO_LIMITS];
	uint64_t offs = geo[SHMRING_POOL_GEO_OFFS], lo = geo[SHMRING_POOL_GEO_LOG_OFF];
	if (n == 0 || n > SHMRING_POOL_MAX_BUFS)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[0] nbufs %llu out of range 1..%u",
					 (unsigned long long)n, SHMRING_POOL_MAX_BUFS);
	if (bs == 0 || bs > MAX_BUF_SIZE)
		return shmring__fail_why(why, wl, -EPROTO, "pool geo[1] buf_size %llu out of range",
					 (unsigned long long)bs);
	if (st != PAGE_UP(bs))
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[2] stride %llu is not buf_size rounded to a page",
					 (unsigned long long)st);
	if (ms == 0 || ms > SHMRING_POOL_MAX_SUBS || ms >= max_parts)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[3] max_subs %llu out of range 1..%u",
					 (unsigned long long)ms,
					 max_parts - 1 < SHMRING_POOL_MAX_SUBS ? max_parts - 1
									       : SHMRING_POOL_MAX_SUBS);
	if (lc != next_pow2((uint32_t)n))
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[4] log_cap %llu is not the smallest power of two >= nbufs",
					 (unsigned long long)lc);
	uint64_t held = lim & 0xffffffffu, qd = lim >> 32;
	if (held == 0 || qd == 0 || qd + ms * held > n)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[5] max_held %llu / queue_depth %llu break "
					 "nbufs >= queue_depth + max_subs * max_held",
					 (unsigned long long)held, (unsigned long long)qd);
	g.nbufs = (uint32_t)n;
	g.buf_size = bs;
	g.stride = st;
	g.max_subs = (uint32_t)ms;
	g.log_cap = (uint32_t)lc;
	g.max_held = (uint32_t)held;
	g.queue_depth = (uint32_t)qd;
	layout(g.nbufs, g.max_subs, g.log_cap, &g);
	if ((offs & 0xffffffffu) != g.meta_off || (offs >> 32) != g.subs_off || lo != g.log_off)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool geo[6..7] offsets 0x%llx / %llu disagree with the counts",
					 (unsigned long long)offs, (unsigned long long)lo);
	if (g.ctrl_need > ctrl_size)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool ctrl region %llu bytes, needs %llu",
					 (unsigned long long)ctrl_size,
					 (unsigned long long)g.ctrl_need);
	if (data_size < n * st)
		return shmring__fail_why(why, wl, -EPROTO,
					 "pool data region %llu bytes, needs %llu",
					 (unsigned long long)data_size,
					 (unsigned long long)(n * st));
	if (out)
		*out = g;
	return 0;
}

/* ---- identities and liveness ---- */

static uint64_t my_id(const struct shmring_pool *p, uint32_t kind)
{
	return SHMRING_POOL_ID(kind, p->pslot, p->pgen);
}

/* 1 if the participant named by an identity word is alive (one fcntl). A slot reused
 * by someone else (another generation) means the named participant is gone. */
static int ident_alive(const struct shmring_pool *p, uint64_t id)
{
	struct shmring_part_info info;
	uint32_t slot = SHMRING_POOL_ID_SLOT(id);
	if (slot >= p->seg->max_parts || shmring_part_get(p->seg, slot, &info) != 0)
		return 0;
	return info.state == SHMRING_PART_ACTIVE && info.gen == SHMRING_POOL_ID_GEN(id) && info.alive;
}

/* After claiming what a dead participant left, mark its table slot LEFT so that
 * inspectors stop reporting it (only if it is still that participant's). */
static void bury(struct shmring_pool *p, uint64_t id)
{
	uint32_t slot = SHMRING_POOL_ID_SLOT(id);
	struct shmring_part_info info;
	if (slot >= p->seg->max_parts || shmring_part_take(p->seg, slot) != 0)
		return;
	if (shmring_part_get(p->seg, slot, &info) == 0 && info.gen == SHMRING_POOL_ID_GEN(id))
		atomic_fetch_add_explicit(&shmring_seg_hdr(p->seg)->stats.peer_deaths, 1,
					  memory_order_relaxed);
	shmring_part_leave(p->seg, slot);
}

/* The owner (producer or reclaimer) is alive and may be inside an epoch. */
static int owner_active(const struct shmring_pool *p)
{
	/* pairs with the release/acq_rel updates of ctrl->owner (attach, close, recovery) */
	uint64_t o = shmring_load_acquire(&p->ctrl->owner);
	uint32_t k = SHMRING_POOL_ID_KIND(o);
	if (k != SHMRING_POOL_OWNER_PRODUCER && k != SHMRING_POOL_OWNER_RECLAIMER)
		return 0;
	return ident_alive(p, o);
}

int shmring__pool_broken(struct shmring_pool *p, int err, const char *what)
{
	p->broken = err;
	return shmring__fail(err, "pool control region corrupt (%s)", what);
}

/* ---- the asymmetric epoch fence (EPOCH in pool.h) ---- */

static long sys_membarrier(int cmd)
{
#ifdef __NR_membarrier
	return syscall(__NR_membarrier, cmd, 0, 0);
#else
	(void)cmd;
	errno = ENOSYS;
	return -1;
#endif
}

/* For a producer at attach: 1 if finalizers can fence for this process (registered for
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED, which is idempotent, so every attach asks again: a
 * forked child need not inherit the registration), 0 if epochs must use locked RMWs. */
static int fence_for_producer(void)
{
	const char *off = getenv("SHMRING_POOL_NO_MEMBARRIER");
	if (off && *off && strcmp(off, "0") != 0)
		return 0;
	long q = sys_membarrier(MEMBARRIER_CMD_QUERY);
	if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
	    !(q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
		return 0;
	return sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}

/* For a finalizer, after its mask clear and before its epoch load: supply the producer's
 * half of the store-load fence if the producer left it to us. 0, or -ETIMEDOUT if we
 * cannot (the caller gives up as if the producer had stayed inside an epoch). */
static int fence_for_finalizer(struct shmring_pool *p)
{
	if (p->role == SHMRING_ROLE_PRODUCER)
		return 0; /* our own epochs: program order */
	/* seq_cst: after the caller's seq_cst clear. A producer stores 1 (seq_cst) before
	 * its first epoch, so reading 0 means its mask loads come after our clear */
	if (atomic_load_explicit(&p->ctrl->fence, memory_order_seq_cst) == 0)
		return 0;
	/* pairs with the plain odd store in shmring__pool_epoch_enter() */
	if (sys_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
		return shmring__fail(-ETIMEDOUT, "pool: membarrier() failed (%s): the producer "
				     "will finish this subscriber's record", strerror(errno));
	return 0;
}

/* ---- finalizing a subscriber record ---- */

/* After clearing a bit of ctrl->active or ctrl->leaving (seq_cst), wait until no epoch
 * that may have loaded the mask before the clear is running. 0, or -ETIMEDOUT if a live
 * producer stayed inside one epoch for HANDSHAKE_NS. */
static int epoch_handshake(struct shmring_pool *p)
{
	struct shmring_pool_ctrl *c = p->ctrl;
	if (fence_for_finalizer(p) != 0)
		return -ETIMEDOUT;
	/* seq_cst: pairs with the producer's seq_cst epoch increments, or its odd store and
	 * our membarrier (see EPOCH) */
	uint64_t v = atomic_load_explicit(&c->epoch, memory_order_seq_cst);
	if (!(v & 1))
		return 0;
	uint64_t deadline = shmring_now_ns() + HANDSHAKE_NS;
	for (uint32_t i = 1;; i++) {
		if (atomic_load_explicit(&c->epoch, memory_order_seq_cst) != v) /* as above */
			return 0;
		if (i % 64 == 0) {
			if (!owner_active(p))
				return 0; /* the producer died inside: it will do nothing more */
			if (shmring_now_ns() > deadline)
				return -ETIMEDOUT;
		}
		sched_yield();
	}
}

/*
 * Release everything subscriber s holds or has queued and free its record (the steps
 * under JOINING AND LEAVING in pool.h). The caller has claimed the record (state FINAL
 * with the caller's identity). Returns the number of references dropped, or -ETIMEDOUT
 * if a live producer stayed inside one epoch for HANDSHAKE_NS (the caller then leaves
 * the record LEAVING; whoever finalizes it later starts again from the top: every step
 * can be redone).
 */
static int finalize(struct shmring_pool *p, uint32_t s, int dead)
{
	struct shmring_pool_ctrl *c = p->ctrl;
	struct shmring_pool_sub *r = &p->subs[s];
	uint64_t bit = UINT64_C(1) << s;
	int dropped = 0;
	/* seq_cst, both: the producer loads these masks seq_cst inside its epochs. From
	 * here on the producer may clear s's references itself (s reads no more) */
	atomic_fetch_or_explicit(&c->leaving, bit, memory_order_seq_cst);
	atomic_fetch_and_explicit(&c->active, ~bit, memory_order_seq_cst);
	if (epoch_handshake(p) != 0) /* no frame is addressed to s after this */
		return -ETIMEDOUT;
	for (uint32_t b = 0; b < p->nbufs; b++) {
		/* acq_rel: release a live leaver's reads to the next loan; acquire the other
		 * holders' releases if this frees the buffer */
		uint64_t old = atomic_fetch_and_explicit(&p->meta[b].state, ~bit, memory_order_acq_rel);
		dropped += !!(old & bit);
	}
	/* counted here, not after the next wait: a finalizer that gives up below has
	 * cleared these bits, and nobody would find them to count again */
	struct shmring_hdr *h = shmring_seg_hdr(p->seg);
	if (dead)
		atomic_fetch_add_explicit(&h->stats.abandoned, (uint64_t)dropped, memory_order_relaxed);
	atomic_fetch_and_explicit(&c->leaving, ~bit, memory_order_seq_cst); /* as above */
	if (epoch_handshake(p) != 0) /* the producer is done with s's record */
		return -ETIMEDOUT;
	/* a drop mark left by a dead producer goes too: its reference was cleared above */
	shmring_store_relaxed(&r->cursor, SHMRING_POOL_CURSOR_NONE); /* published by the state store */
	/* release: pairs with the acquire CAS of the next joiner in claim_record() */
	shmring_store_release(&r->state, SHMRING_POOL_ID(SHMRING_POOL_SUB_FREE, 0, 0));
	/* the producer may be waiting for this subscriber's queue or for buffers */
	shmring_wake(p->seg, &c->room_q);
	return dropped;
}

/* Claim a record whose holder is dead (or that was left LEAVING) and finalize it.
 * Returns 1 if reclaimed, 0 if not ours to take, or a negative errno. */
static int reclaim_record(struct shmring_pool *p, uint32_t s)
{
	struct shmring_pool_sub *r = &p->subs[s];
	/* acquire: pairs with the release stores of the record's state (join, leave) */
	uint64_t st = shmring_load_acquire(&r->state);
	uint32_t k = SHMRING_POOL_ID_KIND(st);
	if (k == SHMRING_POOL_SUB_FREE)
		return 0;
	int dead = k != SHMRING_POOL_SUB_LEAVING || st == SHMRING_POOL_LEAVING_DEAD;
	if (k != SHMRING_POOL_SUB_LEAVING && k <= SHMRING_POOL_SUB_FINAL && ident_alive(p, st))
		return 0;
	uint64_t me = my_id(p, SHMRING_POOL_SUB_FINAL);
	/* acq_rel: one claimant wins; acquire what the dead holder wrote before */
	if (!atomic_compare_exchange_strong_explicit(&r->state, &st, me, memory_order_acq_rel,
						     memory_order_relaxed))
		return 0;
	int rc = finalize(p, s, dead);
	if (rc == -ETIMEDOUT) {
		/* release: pairs with the acquire load above in a later reclaimer */
		shmring_store_release(&r->state, dead ? SHMRING_POOL_LEAVING_DEAD
						     : SHMRING_POOL_ID(SHMRING_POOL_SUB_LEAVING, 0, 0));
		return 0;
	}
	if (k != SHMRING_POOL_SUB_LEAVING)
		bury(p, st);
	return 1;
}

/* Reclaim every dead or left subscriber record, then mark LEFT the participant slots of
 * pool participants that died before they owned anything (between joining the table
 * and claiming a record or the owner word). Burying a dead slot changes no verdict:
 * dead stays dead (LEFT, or another generation), so it is safe at any time.
 * Never call inside our own epoch. */
/* Free the participant slots of dead producers and subscribers. Their pool state goes
 * by identities (slot and generation) that a freed or reused slot no longer matches, so
 * recovery and reclaim still find them dead afterwards. */
static void bury_dead(struct shmring_pool *p)
{
	for (uint32_t i = 0; i < p->seg->max_parts; i++) {
		struct shmring_part_info info;
		if (shmring_part_get(p->seg, i, &info) != 0 || info.state != SHMRING_PART_ACTIVE ||
		    info.alive || (info.role != SHMRING_ROLE_PRODUCER && info.role != SHMRING_ROLE_SUBSCRIBER))
			continue;
		bury(p, SHMRING_POOL_ID(0, i, info.gen));
	}
}

static int sweep(struct shmring_pool *p)
{
	int n = 0;
	for (uint32_t s = 0; s < p->max_subs; s++) {
		if (p->role == SHMRING_ROLE_SUBSCRIBER && s == p->sub)
			continue;
		int rc = reclaim_record(p, s);
		if (rc < 0)
			return rc;
		n += rc;
	}
	bury_dead(p);
	return n;
}

void shmring__pool_housekeep(struct shmring_pool *p)
{
	uint64_t now = shmring_now_ns();
	if (now - p->last_sweep_ns < SWEEP_EVERY_NS)
		return;
	p->last_sweep_ns = now;
	sweep(p);
}

/* ---- producer recovery ---- */

/*
 * Undo what a dead owner may have left half-done. The caller holds ctrl->owner. The
 * dead owner's plain stores are visible to us: we learned of its death through the
 * kernel (its OFD lock), after it made them.
 */
static int recover(struct shmring_pool *p)
{
	struct shmring_pool_ctrl *c = p->ctrl;
	struct shmring_hdr *h = shmring_seg_hdr(p->seg);
	/* close an epoch it left open; seq_cst: pairs with finalizers' epoch loads */
	if (atomic_load_explicit(&c->epoch, memory_order_seq_cst) & 1)
		atomic_fetch_add_explicit(&c->epoch, 1, memory_order_seq_cst);
	uint64_t t = shmring_load_relaxed(&c->tail);
	if (t > SHMRING_POOL_POS_MASK)
		return shmring__fail(-EPROTO, "pool tail %llu impossible", (unsigned long long)t);
	uint64_t l = shmring_load_relaxed(&c->loan);
	if (l) {
		uint64_t b = (l & MARK_MASK) - 1, lp = l >> 16;
		if ((l & MARK_MASK) == 0 || b >= p->nbufs)
			return shmring__fail(-EPROTO, "pool loan word 0x%llx impossible", (unsigned long long)l);
		struct shmring_pool_meta *m = &p->meta[b];
		/* a publish stores the entry, then the tail: an entry naming (lp, b) is out,
		 * and a subscriber may have taken the frame through it (take reads the entry
		 * first), so a publish that got that far is finished, never undone */
		uint64_t pb = shmring_load_relaxed(&p->log[lp & p->log_mask].pos_buf);
		if (shmring__pool_pos_diff(t, lp) == 0 && pb == ((lp << 16) | b)) {
			t = (lp + 1) & SHMRING_POOL_POS_MASK;
			/* release: pairs with the acquire loads of the tail in take */
			shmring_store_release(&c->tail, t);
		}
		if (shmring__pool_pos_diff(t, lp) != 0) {
			/* published: the subscribers' references are real; drop the loan's.
			 * acq_rel: as in publish */
			atomic_fetch_and_explicit(&m->state, ~SHMRING_POOL_LOANED, memory_order_acq_rel);
		} else {
			/* not published: no subscriber can hold it, whatever bits were set */
			uint64_t old = shmring_load_relaxed(&m->state);
			/* release: pairs with the acquire CAS of the next loan */
			while ((old & SHMRING_POOL_LOANED) &&
			       !atomic_compare_exchange_weak_explicit(&m->state, &old, 0,
								      memory_order_release,
								      memory_order_relaxed))
				;
			if (old & SHMRING_POOL_LOANED)
				atomic_fetch_add_explicit(&h->stats.abandoned, 1, memory_order_relaxed);
		}
		shmring_store_relaxed(&c->loan, 0);
	}
	/* a drop left half-done: the cursor carries the buffer whose reference is ours */
	for (uint32_t s = 0; s < p->max_subs; s++) {
		struct shmring_pool_sub *r = &p->subs[s];
		/* acquire: pairs with the subscriber's acq_rel cursor CAS */
		uint64_t w = shmring_load_acquire(&r->cursor);
		while (w != SHMRING_POOL_CURSOR_NONE && (w & MARK_MASK)) {
			uint64_t b = (w & MARK_MASK) - 1;
			if (b >= p->nbufs)
				return shmring__fail(-EPROTO, "pool cursor 0x%llx impossible",
						     (unsigned long long)w);
			/* acq_rel: pairs with the subscriber's cursor CAS; it keeps the mark */
			if (atomic_compare_exchange_weak_explicit(&r->cursor, &w, w & ~MARK_MASK,
								  memory_order_acq_rel,
								  memory_order_acquire)) {
				/* acq_rel: as a release in shmring_pool_release() */
				atomic_fetch_and_explicit(&p->meta[b].state, ~(UINT64_C(1) << s),
							  memory_order_acq_rel);
				break;
			}
		}
	}
	/* only producers sleep on room_q; a dead one may have left its sleep announced */
	shmring_store_relaxed(&c->room_q.waiters, 0);
	return 0;
}

/*
 * Become the owner of the pool as kind (PRODUCER or RECLAIMER), replacing a dead one.
 * Returns 1 if a dead owner was replaced (the caller recovers; *was is its identity), 0 if
 * the pool had no live owner, -EBUSY if a live one holds it, -EPROTO on a corrupt owner
 * word.
 */
static int acquire_owner(struct shmring_pool *p, uint32_t kind, uint64_t *was)
{
	struct shmring_pool_ctrl *c = p->ctrl;
	uint64_t me = my_id(p, kind);
	uint64_t deadline = shmring_now_ns() + OWNER_WAIT_NS;
	for (;;) {
		/* acquire: pairs with the release/acq_rel updates of ctrl->owner */
		uint64_t o = shmring_load_acquire(&c->owner);
		uint32_t k = SHMRING_POOL_ID_KIND(o);
		int replaced = 0;
		if (k == SHMRING_POOL_OWNER_PRODUCER || k == SHMRING_POOL_OWNER_RECLAIMER) {
			if (ident_alive(p, o)) {
				if (k == SHMRING_POOL_OWNER_PRODUCER || kind == SHMRING_POOL_OWNER_RECLAIMER)
					return -EBUSY;
				/* a survivor is recovering after a dead producer: microseconds */
				if (shmring_now_ns() > deadline)
					return -EBUSY;
				sched_yield();
				continue;
			}
			replaced = 1;
		} else if (k == SHMRING_POOL_OWNER_NONE || k == SHMRING_POOL_OWNER_CLOSED) {
			if (kind == SHMRING_POOL_OWNER_RECLAIMER)
				return -EBUSY; /* nothing to recover */
		} else {
			return shmring__fail(-EPROTO, "pool owner word 0x%llx impossible",
					     (unsigned long long)o);
		}
		/* acq_rel: acquire what the previous owner did; release nothing yet */
		if (atomic_compare_exchange_strong_explicit(&c->owner, &o, me, memory_order_acq_rel,
							    memory_order_relaxed)) {
			if (replaced)
				bury(p, o);
			*was = o;
			return replaced;
		}
	}
}

/* The owner word of an end of stream after the death of owner o: closed, naming it (a
 * close by the producer names nobody: see shmring_pool_producer_closed()). */
static uint64_t dead_closed(uint64_t o)
{
	uint32_t gen = SHMRING_POOL_ID_GEN(o);
	return SHMRING_POOL_ID(SHMRING_POOL_OWNER_CLOSED, SHMRING_POOL_ID_SLOT(o), gen ? gen : 1);
}

/* A subscriber (or any handle) found the producer dead: take over, recover, close. */
static int recover_dead_producer(struct shmring_pool *p)
{
	uint64_t dead;
	int rc = acquire_owner(p, SHMRING_POOL_OWNER_RECLAIMER, &dead);
	if (rc <= 0)
		return rc == -EBUSY ? 0 : rc;
	rc = recover(p);
	/* release: pairs with the acquire load in shmring__pool_take_empty() */
	shmring_store_release(&p->ctrl->owner, dead_closed(dead));
	shmring_wake(p->seg, &p->ctrl->frame_q);
	shmring_wake(p->seg, &p->ctrl->room_q);
	return rc < 0 ? rc : 1;
}

/* ---- producer slow paths ---- */

uint64_t shmring__pool_stamp(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (p->stamp && f->ts_ns == 0)
		f->ts_ns = shmring_now_ns();
	if (!p->checksum)
		return 0;
	/* the loaned buffer, not f->data: the caller may have moved that pointer */
	return XXH3_64bits(p->data + (uint64_t)f->index * p->stride, (size_t)f->len);
}

uint64_t shmring_pool_checksum(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

/* Count a loan that must wait, once per loan call and cause. */
static void count_stall(struct shmring_pool *p, uint32_t s)
{
	uint64_t bit = UINT64_C(1) << s;
	if (p->stalled & bit)
		return;
	p->stalled |= bit;
	struct shmring_pool_sub *r = &p->subs[s];
	/* only the producer writes stalls, inside an epoch */
	shmring_store_relaxed(&r->stalls, shmring_load_relaxed(&r->stalls) + 1);
}

/*
 * Drop the oldest frame queued for drop-oldest subscriber s. Returns 1 if a reference
 * was dropped, 0 if the subscriber took the frame first (or had none), -EPROTO.
 */
static int drop_oldest(struct shmring_pool *p, uint32_t s)
{
	struct shmring_pool_sub *r = &p->subs[s];
	uint64_t bit = UINT64_C(1) << s;
	/* acquire: pairs with the subscriber's acq_rel cursor CAS in take */
	uint64_t w = shmring_load_acquire(&r->cursor);
	if (w == SHMRING_POOL_CURSOR_NONE)
		return 0;
	if (w & MARK_MASK) /* our own marks are gone before we return */
		return shmring__pool_broken(p, -EPROTO, "drop: a cursor still carries a drop mark");
	uint64_t c = shmring__pool_cursor_pos(w);
	uint64_t d = shmring__pool_pos_diff(p->tail, c);
	if (d == 0)
		return 0;
	if (d > (uint64_t)p->log_mask + 1u)
		return shmring__pool_broken(p, -EPROTO,
				"drop: cursor more than log_cap behind the tail");
	struct shmring_pool_entry *e = &p->log[c & p->log_mask];
	uint64_t pb = shmring_load_relaxed(&e->pos_buf); /* our own store */
	uint64_t to = shmring_load_relaxed(&e->to);
	uint64_t b = pb & MARK_MASK;
	if ((pb >> 16) != c || b >= p->nbufs)
		return shmring__pool_broken(p, -EPROTO,
				"drop: log entry names another position or no buffer");
	int ours = !!(to & bit);
	/* the cursor carries b + 1 until the reference is gone, for a replacement */
	uint64_t nw = (((c + 1) & SHMRING_POOL_POS_MASK) << 16) | (ours ? b + 1 : 0);
	/* acq_rel: pairs with the subscriber's cursor CAS; one of us gets frame c */
	if (!atomic_compare_exchange_strong_explicit(&r->cursor, &w, nw, memory_order_acq_rel,
						     memory_order_relaxed))
		return 0;
	if (!ours)
		return 0;
	/* acq_rel: as a release in shmring_pool_release(); acquire if it frees b */
	uint64_t old = atomic_fetch_and_explicit(&p->meta[b].state, ~bit, memory_order_acq_rel);
	/* the subscriber keeps the mark bits when it moves its cursor */
	uint64_t cw = shmring_load_relaxed(&r->cursor);
	while (!atomic_compare_exchange_weak_explicit(&r->cursor, &cw, cw & ~MARK_MASK,
						      memory_order_relaxed, memory_order_relaxed))
		;
	if (!(old & bit))
		return shmring__pool_broken(p, -EPROTO, "drop: the reference to drop was gone");
	shmring_store_relaxed(&r->drops, shmring_load_relaxed(&r->drops) + 1); /* producer only */
	atomic_fetch_add_explicit(&shmring_seg_hdr(p->seg)->stats.drops, 1, memory_order_relaxed);
	return 1;
}

/* The loan attempt proper, inside an epoch: 0 and f filled, -EAGAIN, or -EPROTO. */
static int loan_in_epoch(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	struct shmring_pool_ctrl *c = p->ctrl;
	/* seq_cst, both, as in publish (see EPOCH in pool.h) */
	uint64_t act = atomic_load_explicit(&c->active, memory_order_seq_cst);
	uint64_t lv = atomic_load_explicit(&c->leaving, memory_order_seq_cst) & ~act;
	if ((lv | act) >> p->max_subs)
		return shmring__pool_broken(p, -EPROTO, "loan: subscriber bit beyond max_subs");
	uint64_t drop_subs = 0;
	for (uint64_t a = act; a; a &= a - 1) {
		uint32_t s = (uint32_t)__builtin_ctzll(a);
		if (s >= p->max_subs)
			return shmring__pool_broken(p, -EPROTO, "loan: active bit beyond max_subs");
		struct shmring_pool_sub *r = &p->subs[s];
		uint32_t pol = shmring_load_relaxed(&r->policy); /* set before the active bit */
		/* acquire: pairs with the block subscriber's release store of its cursor in take
		 * (it freed queue room) */
		uint64_t w = shmring_load_acquire(&r->cursor);
		if (pol != SHMRING_POOL_BLOCK) {
			drop_subs |= UINT64_C(1) << s;
			continue;
		}
		if (w == SHMRING_POOL_CURSOR_NONE)
			continue;
		uint64_t q = shmring__pool_pos_diff(p->tail, shmring__pool_cursor_pos(w));
		if (q > (uint64_t)p->log_mask + 1u)
			return shmring__pool_broken(p, -EPROTO,
					"loan: block cursor more than log_cap behind the tail");
		if (q >= p->queue_depth) {
			count_stall(p, s);
			if (!p->block_counted) {
				p->block_counted = 1;
				atomic_fetch_add_explicit(&c->block_stalls, 1, memory_order_relaxed);
			}
			return -EAGAIN;
		}
	}
	if (shmring__pool_grab(p, f))
		return 0;
	if (lv) {
		/* subscribers on their way out read nothing more: their references go now,
		 * whatever their policy (their finalizer clears the same bits; no frame is
		 * addressed to them any more, so nothing sets them again) */
		for (uint32_t b = 0; b < p->nbufs; b++)
			/* acq_rel: acquire the other holders' releases if this frees b */
			atomic_fetch_and_explicit(&p->meta[b].state, ~lv, memory_order_acq_rel);
	}
	for (;;) {
		/* the oldest queued frame of all drop-oldest subscribers: the longest queue,
		 * since every queue ends at the tail */
		uint32_t best = UINT32_MAX;
		uint64_t bestq = 0;
		for (uint64_t a = drop_subs; a; a &= a - 1) {
			uint32_t s = (uint32_t)__builtin_ctzll(a);
			uint64_t w = shmring_load_acquire(&p->subs[s].cursor); /* as above */
			if (w == SHMRING_POOL_CURSOR_NONE)
				continue;
			uint64_t q = shmring__pool_pos_diff(p->tail, shmring__pool_cursor_pos(w));
			if (q > (uint64_t)p->log_mask + 1u)
				return shmring__pool_broken(p, -EPROTO,
						"loan: drop cursor more than log_cap behind the tail");
			if (q > bestq) {
				bestq = q;
				best = s;
			}
		}
		/* the grab comes after the look at the queues: once none holds a frame,
		 * THE GUARANTEE leaves a buffer free, and only we take buffers. (Grabbing
		 * first, a queue that its subscriber emptied while we were preempted
		 * counted a stall with every buffer free: ~1 thread-test run in 400.) */
		if (shmring__pool_grab(p, f))
			return 0;
		if (best == UINT32_MAX)
			break;
		int rc = drop_oldest(p, best);
		if (rc < 0)
			return rc;
	}
	/* nothing free, nothing droppable: blame the holders of taken frames */
	shmring_store_relaxed(&c->loan, 0);
	if (!p->nobuf_counted) {
		p->nobuf_counted = 1;
		atomic_fetch_add_explicit(&c->nobuf_stalls, 1, memory_order_relaxed);
	}
	uint64_t holders = 0;
	for (uint32_t b = 0; b < p->nbufs; b++)
		holders |= shmring_load_relaxed(&p->meta[b].state); /* a snapshot, for counting */
	holders &= act;
	for (uint64_t a = holders; a; a &= a - 1)
		count_stall(p, (uint32_t)__builtin_ctzll(a));
	return -EAGAIN;
}

int shmring__pool_loan_slow(struct shmring_pool *p, struct shmring_pool_frame *f)
{
	if (p->broken)
		return p->broken;
	if (p->role != SHMRING_ROLE_PRODUCER)
		return -EBADF;
	if (p->loaned)
		return -EBUSY;
	shmring__pool_epoch_enter(p);
	int rc = loan_in_epoch(p, f);
	shmring__pool_epoch_exit(p);
	return rc;
}

static int loan_poll(void *a)
{
	void **args = a;
	int rc = shmring__pool_loan_slow(args[0], args[1]);
	return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
}

static int loan_peer(void *a)
{
	void **args = a;
	struct shmring_pool *p = args[0];
	p->last_sweep_ns = shmring_now_ns();
	int rc = sweep(p); /* a dead subscriber may be what we wait for */
	return rc < 0 ? rc : 0;
}

int shmring_pool_loan_wait(struct shmring_pool *p, struct shmring_pool_frame *f, int timeout_ms)
{
	if (!p || !f || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	int rc = shmring_pool_loan(p, f);
	if (rc != -EAGAIN || timeout_ms == 0)
		return rc;
	void *args[2] = { p, f };
	struct shmring_wait_ctx c = {
		.seg = p->seg, .q = &p->ctrl->room_q, .poll = loan_poll,
		.peer_check = loan_peer, .arg = args, .spin = p->spin,
		.last_check = &p->last_sweep_ns, /* loan_peer() sets it too */
	};
	rc = shmring_wait_for(&c, timeout_ms);
	return rc > 0 ? 0 : rc;
}

/* ---- subscriber slow paths ---- */

int shmring__pool_take_empty(struct shmring_pool *p)
{
	/* acquire: pairs with the release store of CLOSED in close or recovery, which the
	 * producer made after its last publish */
	uint64_t o = shmring_load_acquire(&p->ctrl->owner);
	uint32_t k = SHMRING_POOL_ID_KIND(o);
	if (k != SHMRING_POOL_OWNER_CLOSED) {
		if (++p->empty_polls % EMPTY_CHECK_EVERY != 0)
			return -EAGAIN;
		if (!(k == SHMRING_POOL_OWNER_PRODUCER || k == SHMRING_POOL_OWNER_RECLAIMER) ||
		    ident_alive(p, o))
			return -EAGAIN;
		int rc = recover_dead_producer(p);
		if (rc < 0)
			return shmring__pool_broken(p, rc, "recovering after a dead producer");
		/* someone else may be recovering, or a new producer took over: look again */
		o = shmring_load_acquire(&p->ctrl->owner); /* as above */
		if (SHMRING_POOL_ID_KIND(o) != SHMRING_POOL_OWNER_CLOSED)
			return -EAGAIN;
	}
	/* gone: what was published before is still delivered */
	struct shmring_pool_sub *r = &p->subs[p->sub];
	uint64_t w = shmring_load_acquire(&r->cursor); /* pairs with publish's admission CAS */
	uint64_t t = shmring_load_acquire(&p->ctrl->tail); /* pairs with publish's release */
	uint64_t d = shmring__pool_queued(t, shmring__pool_cursor_pos(w));
	if (w != SHMRING_POOL_CURSOR_NONE && d != 0 && d <= (uint64_t)p->log_mask + 1u)
		return 0;
	/* a new producer may attach later; until then this is the end of the stream */
	return -EPIPE;
}

static int take_poll(void *a)
{
	void **args = a;
	int rc = shmring_pool_take(args[0], args[1]);
	return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
}

static int take_peer(void *a)
{
	void **args = a;
	struct shmring_pool *p = args[0];
	/* acquire: pairs with the updates of ctrl->owner */
	uint64_t o = shmring_load_acquire(&p->ctrl->owner);
	uint32_t k = SHMRING_POOL_ID_KIND(o);
	if ((k == SHMRING_POOL_OWNER_PRODUCER || k == SHMRING_POOL_OWNER_RECLAIMER) &&
	    !ident_alive(p, o)) {
		int rc = recover_dead_producer(p);
		if (rc < 0)
			return shmring__pool_broken(p, rc, "recovering after a dead producer");
	}
	return 0;
}

int shmring_pool_take_wait(struct shmring_pool *p, struct shmring_pool_frame *f, int timeout_ms)
{
	if (!p || !f || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	int rc = shmring_pool_take(p, f);
	if (rc != -EAGAIN || timeout_ms == 0)
		return rc;
	void *args[2] = { p, f };
	struct shmring_wait_ctx c = {
		.seg = p->seg, .q = &p->ctrl->frame_q, .poll = take_poll,
		.peer_check = take_peer, .arg = args, .spin = p->spin,
		.last_check = &p->last_sweep_ns, /* a subscriber's: its producer checks */
	};
	rc = shmring_wait_for(&c, timeout_ms);
	return rc > 0 ? 0 : rc;
}

int shmring_pool_frame_verify(const struct shmring_pool *p, const struct shmring_pool_frame *f)
{
	if (!p || !f || f->index >= p->nbufs || f->len > p->buf_size)
		return -EINVAL;
	if (!(f->flags & SHMRING_POOL_FRAME_F_CHECKSUM))
		return -ENODATA;
	const uint8_t *base = p->rodata ? p->rodata : p->data;
	uint64_t sum = XXH3_64bits(base + (uint64_t)f->index * p->stride, (size_t)f->len);
	return sum == f->checksum ? 0 : -EBADMSG;
}

/* ---- create and attach ---- */

static int pool_init(struct shmring_seg *seg, void *arg)
{
	const struct shmring_pool_geo *g = arg;
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(seg);
	int rc = shmring_waitq_init(seg, &c->room_q);
	if (rc == 0)
		rc = shmring_waitq_init(seg, &c->frame_q);
	struct shmring_pool_sub *subs = (void *)((uint8_t *)c + g->subs_off);
	for (uint32_t s = 0; s < g->max_subs; s++) /* published by the magic's release store */
		shmring_store_relaxed(&subs[s].cursor, SHMRING_POOL_CURSOR_NONE);
	/* Each entry names the position a lap before its first frame's, which take reads as
	 * "nothing yet". A zeroed entry would name position 0 in buffer 0: frame 0 itself to a
	 * subscriber that polls while the producer is publishing it (publish stores the
	 * recipients before the position word), and to a recovery that finishes a loan of
	 * buffer 0 at position 0. Published by the magic's release store. */
	struct shmring_pool_entry *log = (void *)((uint8_t *)c + g->log_off);
	for (uint32_t i = 0; i < g->log_cap; i++)
		shmring_store_relaxed(&log[i].pos_buf,
				      (((uint64_t)i - g->log_cap) & SHMRING_POOL_POS_MASK) << 16);
	return rc;
}

static int geometry(struct shmring_pool *p, struct shmring_seg *seg)
{
	/* the flags first: they say how to read the geometry. A flag this library does not
	 * know changes the format in a way it cannot follow */
	if (seg->flags & 0xffff0000u & ~SHMRING_POOL_F_ALL)
		return shmring__fail(-EPROTO, "pool: unknown kind flags 0x%x", seg->flags);
	if (!(seg->flags & SHMRING_POOL_F_DESC))
		return shmring__fail(-EPROTO, "pool: made by an older library (16-byte log "
				     "entries without frame descriptors)");
	struct shmring_pool_geo g;
	int rc = shmring_pool_geo_check(seg->geo, seg->max_parts, seg->ctrl_size, seg->data_size,
					&g, NULL, 0);
	if (rc)
		return rc;
	uint8_t *ctrl = shmring_seg_ctrl(seg);
	p->seg = seg;
	p->ctrl = (struct shmring_pool_ctrl *)(void *)ctrl;
	p->meta = (struct shmring_pool_meta *)(void *)(ctrl + g.meta_off);
	p->subs = (struct shmring_pool_sub *)(void *)(ctrl + g.subs_off);
	p->log = (struct shmring_pool_entry *)(void *)(ctrl + g.log_off);
	p->data = shmring_seg_data(seg);
	p->buf_size = g.buf_size;
	p->stride = g.stride;
	p->data_size = (uint64_t)g.nbufs * g.stride;
	p->nbufs = g.nbufs;
	p->max_subs = g.max_subs;
	p->log_mask = g.log_cap - 1;
	p->max_held = g.max_held;
	p->queue_depth = g.queue_depth;
	p->checksum = !!(seg->flags & SHMRING_POOL_F_CHECKSUM);
	p->stamp = !!(seg->flags & SHMRING_POOL_F_STAMP);
	p->joins_ok = !!(seg->flags & SHMRING_POOL_F_JOINS); /* pools of older libraries: no */
	p->spin = -1;
	return 0;
}

static int join(struct shmring_pool *p, uint32_t role)
{
	int rc = shmring_part_join(p->seg, role, -1, &p->pslot);
	if (rc == -EUSERS) {
		/* full, perhaps of the dead (a dead producer among max_subs live subscribers
		 * fills all 48): free theirs, then try once more */
		bury_dead(p);
		rc = shmring_part_join(p->seg, role, -1, &p->pslot);
	}
	if (rc < 0)
		return rc;
	struct shmring_part_info info;
	rc = shmring_part_get(p->seg, p->pslot, &info);
	if (rc) {
		shmring_part_leave(p->seg, p->pslot);
		return rc;
	}
	p->pgen = info.gen;
	p->role = role;
	return 0;
}

static int attach_producer(struct shmring_pool *p)
{
	int rc = join(p, SHMRING_ROLE_PRODUCER);
	if (rc)
		return rc;
	uint64_t was = 0;
	rc = acquire_owner(p, SHMRING_POOL_OWNER_PRODUCER, &was);
	int replaced = rc == 1;
	if (rc == -EBUSY)
		rc = shmring__fail(-EBUSY, "the pool's producer is alive");
	if (rc >= 0)
		rc = recover(p); /* also checks tail and loan of a clean predecessor */
	if (rc >= 0) {
		/* before our first epoch (EPOCH in pool.h). seq_cst: a finalizer that reads
		 * the old value after its clear is ordered before our mask loads */
		p->fence = fence_for_producer();
		atomic_store_explicit(&p->ctrl->fence, (uint64_t)p->fence, memory_order_seq_cst);
	}
	if (rc < 0) {
		uint64_t me = my_id(p, SHMRING_POOL_OWNER_PRODUCER);
		/* as it was (none yet, or closed), or ended after the dead owner we replaced */
		uint64_t back = replaced ? dead_closed(was) : was;
		/* release: pairs with acquire loads of ctrl->owner */
		atomic_compare_exchange_strong_explicit(&p->ctrl->owner, &me, back,
							memory_order_release, memory_order_relaxed);
		shmring_part_leave(p->seg, p->pslot);
		return rc;
	}
	p->tail = shmring_load_relaxed(&p->ctrl->tail); /* checked by recover(); we write it */
	struct shmring_hdr *h = shmring_seg_hdr(p->seg);
	p->msgs = shmring_load_relaxed(&h->stats.msgs);
	p->bytes = shmring_load_relaxed(&h->stats.bytes);
	p->last_sweep_ns = shmring_now_ns();
	sweep(p);
	return 0;
}

/* Claim a FREE record: its index, or -EUSERS. */
static int claim_record(struct shmring_pool *p)
{
	uint64_t me = my_id(p, SHMRING_POOL_SUB_JOINING);
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t s = 0; s < p->max_subs; s++) {
			uint64_t free_word = SHMRING_POOL_ID(SHMRING_POOL_SUB_FREE, 0, 0);
			/* acquire: pairs with finalize's release store of FREE */
			if (atomic_compare_exchange_strong_explicit(&p->subs[s].state, &free_word, me,
								    memory_order_acquire,
								    memory_order_relaxed))
				return (int)s;
		}
		if (pass == 0 && sweep(p) <= 0)
			break; /* nothing was dead: really full */
	}
	return shmring__fail(-EUSERS, "all %u subscriber records of the pool are in use", p->max_subs);
}

static int attach_subscriber(struct shmring_pool *p, const struct shmring_pool_sub_opts *o)
{
	uint32_t pol = o && o->policy ? o->policy : SHMRING_POOL_BLOCK;
	if ((pol != SHMRING_POOL_BLOCK && pol != SHMRING_POOL_DROP_OLDEST) || (o && o->flags))
		return shmring__fail(-EINVAL, "invalid subscriber options");
	int rc = join(p, SHMRING_ROLE_SUBSCRIBER);
	if (rc)
		return rc;
	p->sub = UINT32_MAX; /* not ours yet: sweep must not skip any record */
	rc = claim_record(p);
	if (rc < 0) {
		shmring_part_leave(p->seg, p->pslot);
		return rc;
	}
	uint32_t s = (uint32_t)rc;
	/* through a description of its own, not seg->fd's, which carries our participant
	 * lock: a forked child inherits the mapping, and with it would keep the lock alive.
	 * Without /proc, through seg->fd after all (as the registry does) */
	int rfd = shmring__reopen_fd(p->seg->fd, O_RDONLY);
	void *ro = mmap(NULL, p->data_size, PROT_READ, MAP_SHARED, rfd >= 0 ? rfd : p->seg->fd,
			(off_t)p->seg->data_off);
	int map_err = errno;
	if (rfd >= 0)
		close(rfd);
	if (ro == MAP_FAILED) {
		rc = shmring__fail(-map_err, "read-only mapping of the pool's buffers: %s",
				   strerror(map_err));
		/* release: pairs with the acquire CAS in claim_record() */
		shmring_store_release(&p->subs[s].state, SHMRING_POOL_ID(SHMRING_POOL_SUB_FREE, 0, 0));
		shmring_part_leave(p->seg, p->pslot);
		return rc;
	}
	p->rodata = ro;
	p->sub = s;
	p->bit = UINT64_C(1) << s;
	p->policy = pol;
	struct shmring_pool_sub *r = &p->subs[s];
	/* relaxed: published by the seq_cst fetch_or of ctrl->active below */
	shmring_store_relaxed(&r->cursor, SHMRING_POOL_CURSOR_NONE);
	shmring_store_relaxed(&r->policy, pol);
	shmring_store_relaxed(&r->frames, 0);
	shmring_store_relaxed(&r->drops, 0);
	shmring_store_relaxed(&r->stalls, 0);
	shmring_store_relaxed(&r->joined_ns, shmring_now_ns());
	p->sub_id = my_id(p, SHMRING_POOL_SUB_ACTIVE);
	shmring_store_relaxed(&r->state, p->sub_id); /* published by the fetch_or below */
	struct shmring_part *pt = &shmring_seg_hdr(p->seg)->parts[p->pslot];
	shmring_store_relaxed(&pt->kind_data[0], s); /* informational, for inspectors */
	shmring_store_relaxed(&pt->kind_data[1], pol);
	/* MEMBERSHIP in pool.h: counted before the active bit is set. seq_cst: pairs with
	 * the producer's seq_cst loads of ctrl->active then ctrl->joins in publish */
	if (p->joins_ok)
		atomic_fetch_add_explicit(&p->ctrl->joins, 1, memory_order_seq_cst);
	/* seq_cst: pairs with the seq_cst loads of ctrl->active in publish and loan */
	atomic_fetch_or_explicit(&p->ctrl->active, p->bit, memory_order_seq_cst);
	return 0;
}

static int finish_open(struct shmring_seg *seg, const struct shmring_pool_sub_opts *sub,
		       int as_sub, struct shmring_pool **out)
{
	struct shmring_pool *p = calloc(1, sizeof(*p));
	if (!p) {
		shmring_seg_close(seg);
		return -ENOMEM;
	}
	int rc = geometry(p, seg);
	if (rc == 0)
		rc = as_sub ? attach_subscriber(p, sub) : attach_producer(p);
	if (rc) {
		free(p);
		shmring_seg_close(seg);
		return rc;
	}
	*out = p;
	return 0;
}

int shmring_pool_create(const char *name, const struct shmring_pool_opts *o,
			const struct shmring_pool_sub_opts *sub, struct shmring_pool **out)
{
	shmring__clear_detail();
	if (!o || !out)
		return -EINVAL;
	uint32_t n = o->nbufs ? o->nbufs : SHMRING_POOL_DEFAULT_BUFS;
	uint32_t ms = o->max_subs ? o->max_subs : SHMRING_POOL_DEFAULT_SUBS;
	uint32_t held = o->max_held ? o->max_held : 1;
	if (o->buf_size == 0 || o->buf_size > MAX_BUF_SIZE)
		return shmring__fail(-EINVAL, "buf_size must be 1..%llu", (unsigned long long)MAX_BUF_SIZE);
	if (n > SHMRING_POOL_MAX_BUFS || ms > SHMRING_POOL_MAX_SUBS || held > SHMRING_POOL_MAX_BUFS)
		return shmring__fail(-EINVAL, "nbufs <= %u, max_subs <= %u, max_held <= nbufs",
				     SHMRING_POOL_MAX_BUFS, SHMRING_POOL_MAX_SUBS);
	if ((uint64_t)ms * held >= n)
		return shmring__fail(-EINVAL, "nbufs %u leaves no queue: max_subs %u * max_held %u >= nbufs",
				     n, ms, held);
	uint32_t qd = o->queue_depth ? o->queue_depth : n - ms * held;
	if ((uint64_t)qd + (uint64_t)ms * held > n)
		return shmring__fail(-EINVAL, "nbufs %u < queue_depth %u + max_subs %u * max_held %u",
				     n, qd, ms, held);
	if (o->flags & ~SHMRING_POOL_F_ALL)
		return shmring__fail(-EINVAL, "unknown pool flags 0x%x", o->flags);
	struct shmring_pool_geo g = {
		.nbufs = n, .max_subs = ms, .log_cap = next_pow2(n), .max_held = held,
		.queue_depth = qd, .buf_size = o->buf_size, .stride = PAGE_UP(o->buf_size),
	};
	layout(n, ms, g.log_cap, &g);
	struct shmring_seg_params sp = {
		.kind = SHMRING_KIND_POOL,
		.flags = (o->flags & SHMRING_POOL_F_ALL) | SHMRING_POOL_F_JOINS | SHMRING_POOL_F_DESC,
		.max_parts = SHMRING_MAX_PARTS,
		.mode = o->mode,
		.ctrl_size = g.ctrl_need,
		.data_size = (uint64_t)n * g.stride,
		.init = pool_init,
		.init_arg = &g,
	};
	sp.geo[SHMRING_POOL_GEO_NBUFS] = n;
	sp.geo[SHMRING_POOL_GEO_BUF_SIZE] = g.buf_size;
	sp.geo[SHMRING_POOL_GEO_BUF_STRIDE] = g.stride;
	sp.geo[SHMRING_POOL_GEO_MAX_SUBS] = ms;
	sp.geo[SHMRING_POOL_GEO_LOG_CAP] = g.log_cap;
	sp.geo[SHMRING_POOL_GEO_LIMITS] = (uint64_t)held | ((uint64_t)qd << 32);
	sp.geo[SHMRING_POOL_GEO_OFFS] = g.meta_off | (g.subs_off << 32);
	sp.geo[SHMRING_POOL_GEO_LOG_OFF] = g.log_off;
	struct shmring_seg *seg;
	struct shmring__naming nm;
	int rc = shmring__seg_make(name, &sp, &seg, &nm);
	if (rc)
		return rc;
	if ((rc = finish_open(seg, sub, sub != NULL, out)) != 0) {
		shmring__seg_unmake(&nm);
		return rc;
	}
	/* named only now that the creator holds its role (internal.h) */
	if ((rc = shmring__seg_name(seg, &nm)) != 0) {
		shmring_pool_close(*out);
		*out = NULL;
	}
	return rc;
}

int shmring_pool_open_producer(const char *name, struct shmring_pool **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open(name, SHMRING_KIND_POOL, 0, &seg);
	return rc ? rc : finish_open(seg, NULL, 0, out);
}

int shmring_pool_open_producer_fd(int fd, struct shmring_pool **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open_fd(fd, SHMRING_KIND_POOL, 0, &seg);
	return rc ? rc : finish_open(seg, NULL, 0, out);
}

int shmring_pool_subscribe(const char *name, const struct shmring_pool_sub_opts *o,
			   struct shmring_pool **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open(name, SHMRING_KIND_POOL, 0, &seg);
	return rc ? rc : finish_open(seg, o, 1, out);
}

int shmring_pool_subscribe_fd(int fd, const struct shmring_pool_sub_opts *o,
			      struct shmring_pool **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open_fd(fd, SHMRING_KIND_POOL, 0, &seg);
	return rc ? rc : finish_open(seg, o, 1, out);
}

int shmring_pool_close(struct shmring_pool *p)
{
	if (!p)
		return -EINVAL;
	struct shmring_pool_ctrl *c = p->ctrl;
	if (shmring__seg_inherited(p->seg)) {
		/* the parent's handle, copied by fork(): its producer or subscription goes on */
	} else if (p->role == SHMRING_ROLE_PRODUCER) {
		if (p->loaned) {
			/* as shmring_pool_cancel(): the bit first, then the loan word */
			struct shmring_pool_frame f = { .index = p->loaned - 1u };
			shmring_pool_cancel(p, &f);
		}
		uint64_t me = my_id(p, SHMRING_POOL_OWNER_PRODUCER);
		/* end of stream. release: pairs with the acquire load of ctrl->owner in
		 * shmring__pool_take_empty(), ordered after our last publish */
		atomic_compare_exchange_strong_explicit(&c->owner, &me,
							SHMRING_POOL_ID(SHMRING_POOL_OWNER_CLOSED, 0, 0),
							memory_order_release, memory_order_relaxed);
		shmring_wake(p->seg, &c->frame_q);
	} else {
		uint64_t id = p->sub_id;
		struct shmring_pool_sub *r = &p->subs[p->sub];
		/* acq_rel: pairs with the acquire loads of the record's state by reclaimers */
		if (atomic_compare_exchange_strong_explicit(&r->state, &id,
							    my_id(p, SHMRING_POOL_SUB_FINAL),
							    memory_order_acq_rel, memory_order_relaxed) &&
		    finalize(p, p->sub, 0) == -ETIMEDOUT)
			/* release: pairs with the acquire load in reclaim_record() */
			shmring_store_release(&r->state,
					      SHMRING_POOL_ID(SHMRING_POOL_SUB_LEAVING, 0, 0));
	}
	if (p->role != SHMRING_ROLE_PRODUCER)
		munmap(p->rodata, p->data_size); /* the subscriber's read-only view */
	shmring_part_leave(p->seg, p->pslot);
	shmring_seg_close(p->seg);
	free(p);
	return 0;
}

int shmring_pool_fd(const struct shmring_pool *p)
{
	return p ? p->seg->fd : -EINVAL;
}

struct shmring_seg *shmring_pool_seg(const struct shmring_pool *p)
{
	return p ? p->seg : NULL;
}

void shmring_pool_set_spin(struct shmring_pool *p, int spin)
{
	if (p)
		p->spin = spin;
}

/* ---- recovery and inspection ---- */

int shmring_pool_reclaim(struct shmring_pool *p)
{
	if (!p)
		return -EINVAL;
	if (p->broken)
		return p->broken;
	int n = 0;
	if (p->role != SHMRING_ROLE_PRODUCER) {
		int rc = recover_dead_producer(p);
		if (rc < 0)
			return shmring__pool_broken(p, rc, "recovering after a dead producer");
		n += rc;
	} else {
		p->last_sweep_ns = shmring_now_ns();
	}
	int rc = sweep(p);
	if (rc < 0)
		return rc;
	return n + rc;
}

int shmring_pool_free_count(const struct shmring_pool *p)
{
	if (!p)
		return -EINVAL;
	int n = 0;
	for (uint32_t b = 0; b < p->nbufs; b++)
		n += shmring_load_relaxed(&p->meta[b].state) == 0; /* a snapshot */
	return n;
}

int shmring_pool_stats(const struct shmring_pool *p, struct shmring_pool_stats *st)
{
	if (!p || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	const struct shmring_pool_ctrl *c = p->ctrl;
	/* relaxed, all: statistics */
	st->published = shmring_load_relaxed(&c->tail);
	st->drops = shmring_load_relaxed(&shmring_seg_hdr(p->seg)->stats.drops);
	st->nobuf_stalls = shmring_load_relaxed(&c->nobuf_stalls);
	st->block_stalls = shmring_load_relaxed(&c->block_stalls);
	for (uint32_t b = 0; b < p->nbufs; b++) {
		uint64_t s = shmring_load_relaxed(&p->meta[b].state);
		st->free_bufs += s == 0;
		st->loaned_bufs += !!(s & SHMRING_POOL_LOANED);
	}
	for (uint32_t s = 0; s < p->max_subs; s++)
		st->subscribers += SHMRING_POOL_ID_KIND(shmring_load_relaxed(&p->subs[s].state)) !=
				   SHMRING_POOL_SUB_FREE;
	st->owner = SHMRING_POOL_ID_KIND(shmring_load_relaxed(&c->owner));
	return 0;
}

int shmring_pool_sub_stats(const struct shmring_pool *p, struct shmring_pool_sub_stats *st)
{
	if (!p || !st)
		return -EINVAL;
	if (p->role != SHMRING_ROLE_SUBSCRIBER)
		return -EBADF;
	const struct shmring_pool_sub *r = &p->subs[p->sub];
	memset(st, 0, sizeof(*st));
	/* relaxed, all: statistics */
	st->frames = shmring_load_relaxed(&r->frames);
	st->drops = shmring_load_relaxed(&r->drops);
	st->stalls = shmring_load_relaxed(&r->stalls);
	uint64_t w = shmring_load_relaxed(&r->cursor);
	if (w != SHMRING_POOL_CURSOR_NONE) {
		uint64_t q = shmring__pool_queued(shmring_load_relaxed(&p->ctrl->tail),
						  shmring__pool_cursor_pos(w));
		st->queued = q <= (uint64_t)p->log_mask + 1u ? q : 0; /* more: corrupt */
	}
	st->policy = p->policy;
	st->index = p->sub;
	return 0;
}

int shmring_pool_producer_closed(const struct shmring_pool *p)
{
	if (!p)
		return -EINVAL;
	/* acquire: pairs with the release stores of CLOSED in close and recovery */
	uint64_t o = shmring_load_acquire(&p->ctrl->owner);
	return SHMRING_POOL_ID_KIND(o) == SHMRING_POOL_OWNER_CLOSED && SHMRING_POOL_ID_GEN(o) == 0;
}

int shmring_pool_producer_alive(const struct shmring_pool *p)
{
	if (!p)
		return -EINVAL;
	/* acquire: pairs with the updates of ctrl->owner */
	uint64_t o = shmring_load_acquire(&p->ctrl->owner);
	return SHMRING_POOL_ID_KIND(o) == SHMRING_POOL_OWNER_PRODUCER && ident_alive(p, o);
}
