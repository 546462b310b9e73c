/* SPDX-License-Identifier: MIT */
/*
 * Crash campaign, frame pool: one producer, two block subscribers and one drop-oldest
 * subscriber, any of them killed at any instant.
 *
 * Checks, per frame, in the subscribers: the frame's own checksum and the pool's
 * (SHMRING_POOL_F_CHECKSUM) both hold; positions strictly increase (nothing twice); a
 * block subscriber sees every position after its first, across producer deaths and
 * replacements (pool.h: a block subscriber never loses a frame); a drop-oldest
 * subscriber's missing positions are frames dropped for it (its drops counter).
 * After each kill, with the survivors stopped, the harness counts the references the
 * victim held (a subscriber's bit in the buffer states, a producer's unpublished loan);
 * once recovered they must be gone and stats.abandoned must have grown accordingly:
 * exactly by a producer's unpublished loan; for a subscriber by at least what a block
 * subscriber held (the producer goes on addressing frames to a dead subscriber until it
 * sweeps it, so there may be more) and at most every buffer.
 * No buffer may stay held by a record that is free. At the end, with every worker dead
 * and the dead reclaimed, every buffer must be free again: every buffer comes back.
 */
#include "campaign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmring/pool.h"

#define NBUFS 8u
#define BUFSZ 4096u
#define MAXSUBS 4u

struct pool_ledger {
	_Atomic uint64_t published, cancelled, taken[2], gaps_drop, kills[2];
	_Atomic uint64_t expect_min, expect_max; /* stats.abandoned bounds */
	_Atomic uint64_t sub_rec[CAMP_MAX_WORKERS]; /* record index + 1 of each subscriber */
};

struct pool_state {
	struct shmring_seg *seg; /* read-only view for inspection */
	struct shmring_pool_geo g;
	struct shmring_pool_ctrl *ctrl;
	struct shmring_pool_meta *meta;
	struct shmring_pool_sub *subs;
	struct shmring_pool_entry *log;
	/* what the last victim left, for settle() */
	int victim_sub;        /* record index, or -1 for the producer */
	uint64_t victim_id;    /* its identity word (record state or ctrl->owner) */
	int exact;
};
static struct pool_state S;

static const char *role(int slot)
{
	return slot == 0 ? "producer" : slot == 3 ? "drop-oldest subscriber" : "block subscriber";
}

static int create(struct camp *c)
{
	struct shmring_pool_opts o = { .buf_size = BUFSZ, .nbufs = NBUFS, .max_subs = MAXSUBS,
				       .max_held = 1, .flags = SHMRING_POOL_F_CHECKSUM };
	struct shmring_pool *p;
	int rc = shmring_pool_create(c->name, &o, NULL, &p);
	if (rc)
		return camp_error(c, "pool create: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	shmring_pool_close(p); /* the producer worker reopens it */
	rc = shmring_seg_open(c->name, SHMRING_KIND_POOL, SHMRING_O_RDONLY, &S.seg);
	if (rc)
		return camp_error(c, "pool inspection open: %s", shmring_strerror(rc));
	char why[160];
	rc = shmring_pool_geo_check(S.seg->geo, S.seg->max_parts, S.seg->ctrl_size, S.seg->data_size,
				    &S.g, why, sizeof(why));
	if (rc)
		return camp_error(c, "pool geometry: %s", why);
	uint8_t *ctrl = shmring_seg_ctrl(S.seg);
	S.ctrl = (struct shmring_pool_ctrl *)(void *)ctrl;
	S.meta = (struct shmring_pool_meta *)(void *)(ctrl + S.g.meta_off);
	S.subs = (struct shmring_pool_sub *)(void *)(ctrl + S.g.subs_off);
	S.log = (struct shmring_pool_entry *)(void *)(ctrl + S.g.log_off);
	c->state = &S;
	return 0;
}

static void __attribute__((noreturn)) producer(struct camp *c, int slot, uint32_t inst)
{
	struct pool_ledger *K = c->K;
	struct shmring_pool *p;
	int rc = shmring_pool_open_producer(c->name, &p);
	if (rc)
		camp_fail(c, "pool producer open: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	atomic_store(&c->L->w[slot].started, 1);
	uint64_t seq = 0, rng = inst * 31337u;
	for (;;) {
		struct shmring_pool_frame f;
		camp_call_begin(c, slot);
		rc = shmring_pool_loan_wait(p, &f, CAMP_CALL_MS);
		camp_call_end(c, slot);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc)
			camp_fail(c, "pool loan_wait: %s", shmring_strerror(rc));
		camp_lcg(&rng);
		f.len = CAMP_MSG_HDR + (rng >> 33) % (BUFSZ - CAMP_MSG_HDR + 1);
		camp_msg_make(f.data, f.len, inst, seq);
		if (((rng >> 8) & 15) == 0) {
			if ((rc = shmring_pool_cancel(p, &f)) != 0)
				camp_fail(c, "pool cancel: %s", shmring_strerror(rc));
			atomic_fetch_add(&K->cancelled, 1);
			continue;
		}
		rc = shmring_pool_publish(p, &f);
		if (rc < 0)
			camp_fail(c, "pool publish: %s", shmring_strerror(rc));
		seq++;
		atomic_fetch_add(&K->published, 1);
	}
}

static void __attribute__((noreturn)) subscriber(struct camp *c, int slot, uint32_t inst)
{
	struct pool_ledger *K = c->K;
	int drop = slot == 3;
	struct shmring_pool_sub_opts so = { .policy = drop ? SHMRING_POOL_DROP_OLDEST : SHMRING_POOL_BLOCK };
	struct shmring_pool *p;
	(void)inst;
	int rc = shmring_pool_subscribe(c->name, &so, &p);
	if (rc)
		camp_fail(c, "pool subscribe: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	struct shmring_pool_sub_stats ss;
	if (shmring_pool_sub_stats(p, &ss) != 0)
		camp_fail(c, "pool sub_stats failed");
	atomic_store(&K->sub_rec[slot], ss.index + 1u);
	atomic_store(&c->L->w[slot].started, 1);
	int have_last = 0;
	uint64_t last = 0, gaps = 0;
	for (;;) {
		struct shmring_pool_frame f;
		camp_call_begin(c, slot);
		rc = shmring_pool_take_wait(p, &f, CAMP_CALL_MS);
		camp_call_end(c, slot);
		if (camp_again(rc)) /* -EPIPE: the producer died; a replacement comes */
			continue;
		if (rc)
			camp_fail(c, "pool take_wait: %s", shmring_strerror(rc));
		uint32_t pi;
		uint64_t ps;
		if (camp_msg_check(f.data, f.len, &pi, &ps) != 0)
			camp_fail(c, "frame %llu (%llu bytes) with a bad checksum accepted",
				  (unsigned long long)f.seq, (unsigned long long)f.len);
		rc = shmring_pool_frame_verify(p, &f);
		if (rc != 0)
			camp_fail(c, "frame %llu: pool checksum says %s", (unsigned long long)f.seq,
				  shmring_strerror(rc));
		if (have_last) {
			uint64_t d = (f.seq - last) & SHMRING_POOL_POS_MASK;
			if (d == 0 || d > (UINT64_C(1) << 40))
				camp_fail(c, "frame %llu after %llu: delivered twice or backwards",
					  (unsigned long long)f.seq, (unsigned long long)last);
			if (d > 1) {
				if (!drop)
					camp_fail(c, "block subscriber lost frames %llu..%llu",
						  (unsigned long long)last + 1, (unsigned long long)f.seq - 1);
				gaps += d - 1;
				atomic_fetch_add(&K->gaps_drop, d - 1);
				/* a drop is counted just after the producer wins the cursor */
				if (shmring_pool_sub_stats(p, &ss) == 0 && gaps > ss.drops + 1)
					camp_fail(c, "%llu frames missing, %llu dropped", (unsigned long long)gaps,
						  (unsigned long long)ss.drops);
			}
		}
		have_last = 1;
		last = f.seq;
		atomic_fetch_add(&K->taken[drop], 1);
		atomic_fetch_add(&c->L->progress, 1);
		rc = shmring_pool_release(p, &f);
		if (rc)
			camp_fail(c, "pool release: %s", shmring_strerror(rc));
	}
}

static void __attribute__((noreturn)) worker(struct camp *c, int slot, uint32_t inst)
{
	if (slot == 0)
		producer(c, slot, inst);
	subscriber(c, slot, inst);
}

static uint64_t abandoned(void)
{
	return atomic_load_explicit(&shmring_seg_hdr(S.seg)->stats.abandoned, memory_order_relaxed);
}

/* References held by record s (its bit in the buffer states). */
static unsigned refs_of(uint32_t s)
{
	unsigned n = 0;
	for (uint32_t b = 0; b < S.g.nbufs; b++)
		n += !!(atomic_load(&S.meta[b].state) & (UINT64_C(1) << s));
	return n;
}

/* An unpublished loan of a dead producer: 1 if recovery will count it abandoned. A
 * producer killed between its log entry and its tail store has published (a subscriber
 * may hold the frame already): recovery finishes that publish and abandons nothing. */
static unsigned dead_loan(void)
{
	uint64_t l = atomic_load(&S.ctrl->loan);
	if (!l)
		return 0;
	uint64_t b = (l & 0xffff) - 1, pos = l >> 16;
	if (b >= S.g.nbufs)
		return 0;
	uint64_t t = atomic_load(&S.ctrl->tail);
	uint64_t pb = atomic_load(&S.log[pos & (S.g.log_cap - 1u)].pos_buf);
	return ((t - pos) & SHMRING_POOL_POS_MASK) == 0 && pb != ((pos << 16) | b) &&
	       (atomic_load(&S.meta[b].state) & SHMRING_POOL_LOANED);
}

/* Subscriber records held by a dead participant (claimed, joining or active): a mask. */
static uint64_t dead_records(void)
{
	uint64_t m = 0;
	for (uint32_t s = 0; s < S.g.max_subs; s++) {
		uint64_t id = atomic_load(&S.subs[s].state);
		uint32_t k = SHMRING_POOL_ID_KIND(id);
		if (k != SHMRING_POOL_SUB_JOINING && k != SHMRING_POOL_SUB_ACTIVE)
			continue;
		struct shmring_part_info info;
		if (shmring_part_get(S.seg, SHMRING_POOL_ID_SLOT(id), &info) != 0 ||
		    info.state != SHMRING_PART_ACTIVE || info.gen != SHMRING_POOL_ID_GEN(id) || !info.alive)
			m |= UINT64_C(1) << s;
	}
	return m;
}

static int after_kill(struct camp *c, int slot, uint32_t inst)
{
	struct pool_ledger *K = c->K;
	(void)inst;
	atomic_fetch_add(&K->kills[slot != 0], 1);
	S.exact = 1;
	if (slot == 0) {
		S.victim_sub = -1;
		S.victim_id = atomic_load(&S.ctrl->owner);
		unsigned n = dead_loan();
		atomic_fetch_add(&K->expect_min, n);
		atomic_fetch_add(&K->expect_max, n);
		return 0;
	}
	/* the victim's record, found by its dead identity (it may have died before it could
	 * tell the ledger which record it got) */
	atomic_store(&K->sub_rec[slot], 0);
	uint64_t m = dead_records();
	if (!m) { /* killed before it claimed a record: nothing to reclaim from it */
		S.victim_sub = -2;
		return 0;
	}
	if (m & (m - 1))
		return camp_error(c, "records 0x%llx all held by the dead after one kill",
				  (unsigned long long)m);
	S.victim_sub = __builtin_ctzll(m);
	S.victim_id = atomic_load(&S.subs[S.victim_sub].state);
	unsigned n = refs_of((uint32_t)S.victim_sub);
	S.exact = slot != 3;
	if (c->verbose)
		fprintf(stderr, "kill %llu: %s, record %d, %u references\n", (unsigned long long)c->kills,
			role(slot), S.victim_sub, n);
	/* Until the producer sweeps the dead record away, it keeps addressing frames to it
	 * (a block subscriber until its queue is full, then the producer waits and sweeps;
	 * a drop-oldest one until dropped). So the reclaim abandons at least what a block
	 * victim held now, and never more than every buffer. */
	atomic_fetch_add(&K->expect_min, S.exact ? n : 0);
	atomic_fetch_add(&K->expect_max, S.g.nbufs);
	return 0;
}

/* No buffer is held by a free subscriber record. 0 or -1. */
static int no_leaks(struct camp *c)
{
	for (uint32_t b = 0; b < S.g.nbufs; b++) {
		uint64_t st = atomic_load(&S.meta[b].state) & ~SHMRING_POOL_LOANED;
		for (uint32_t s = 0; s < S.g.max_subs; s++) {
			if (!(st & (UINT64_C(1) << s)))
				continue;
			uint64_t id = atomic_load(&S.subs[s].state);
			if (SHMRING_POOL_ID_KIND(id) == SHMRING_POOL_SUB_FREE &&
			    (atomic_load(&S.meta[b].state) & (UINT64_C(1) << s)))
				return camp_error(c, "buffer %u still held by free record %u after recovery", b, s);
		}
	}
	return 0;
}

static int settle(struct camp *c, int slot, uint32_t inst)
{
	struct pool_ledger *K = c->K;
	(void)slot;
	(void)inst;
	uint64_t deadline = camp_now_ns() + UINT64_C(10000000000);
	for (;;) {
		int done;
		if (S.victim_sub == -1) /* a replacement or a survivor took the owner word over */
			done = atomic_load(&S.ctrl->owner) != S.victim_id;
		else if (S.victim_sub >= 0) {
			/* claimed (FINAL) or given up (LEAVING) is not done: the finalizer
			 * counts what it drops before it frees the record */
			uint64_t st = atomic_load(&S.subs[S.victim_sub].state);
			uint32_t k = SHMRING_POOL_ID_KIND(st);
			done = st != S.victim_id && k != SHMRING_POOL_SUB_FINAL &&
			       k != SHMRING_POOL_SUB_LEAVING;
		}
		else
			done = 1;
		uint64_t a = abandoned();
		uint64_t lo = atomic_load(&K->expect_min), hi = atomic_load(&K->expect_max);
		if (a > hi)
			return camp_error(c, "stats.abandoned is %llu, above the %llu references the dead held",
					  (unsigned long long)a, (unsigned long long)hi);
		if (done && a >= lo) {
			/* the inexact case (a drop-oldest victim) settles the bounds on what was */
			atomic_store(&K->expect_min, a);
			atomic_store(&K->expect_max, a);
			return no_leaks(c);
		}
		if (camp_now_ns() > deadline)
			return camp_error(c, "10 s after kill %llu (%s): %s (abandoned %llu, expected %llu..%llu)",
					  (unsigned long long)c->kills, role(slot),
					  done ? "count short" : "not reclaimed", (unsigned long long)a,
					  (unsigned long long)lo, (unsigned long long)hi);
		camp_sleep_ms(1);
	}
}

static void final_check(struct camp *c)
{
	struct shmring_pool *p;
	int rc = shmring_pool_open_producer(c->name, &p); /* recovers the dead producer */
	if (rc)
		camp_fail(c, "final producer open: %s (%s)", shmring_strerror(rc),
			  shmring_last_error_detail());
	rc = shmring_pool_reclaim(p); /* and the dead subscribers */
	if (rc < 0)
		camp_fail(c, "final reclaim: %s", shmring_strerror(rc));
	int fr = shmring_pool_free_count(p);
	if (fr != (int)NBUFS)
		camp_fail(c, "only %d of %u buffers came back", fr, NBUFS);
	shmring_pool_close(p);
}

static int finish(struct camp *c)
{
	struct pool_ledger *K = c->K;
	/* everyone died at once: count what each held before anyone recovers */
	unsigned n = dead_loan(), lo = n, hi = n;
	for (uint64_t m = dead_records(); m; m &= m - 1) {
		unsigned r = refs_of((uint32_t)__builtin_ctzll(m));
		hi += r;
		lo += r; /* nobody is left to drop anything: exact */
	}
	atomic_fetch_add(&K->expect_min, lo);
	atomic_fetch_add(&K->expect_max, hi);
	if (camp_final_child(c, "final check", final_check) != 0)
		return -1;
	uint64_t a = abandoned();
	if (a < atomic_load(&K->expect_min) || a > atomic_load(&K->expect_max))
		return camp_error(c, "stats.abandoned is %llu, expected %llu..%llu", (unsigned long long)a,
				  (unsigned long long)atomic_load(&K->expect_min),
				  (unsigned long long)atomic_load(&K->expect_max));
	shmring_seg_close(S.seg);
	S.seg = NULL;
	return 0;
}

static void totals(struct camp *c, char *buf, size_t len)
{
	struct pool_ledger *K = c->K;
	snprintf(buf, len,
		 "%llu frames published (%llu loans cancelled), taken: %llu by block subscribers, %llu "
		 "by the drop-oldest one (%llu dropped for it); producer kills %llu, subscriber kills "
		 "%llu; references abandoned with the dead %llu; block losses 0; every buffer came back",
		 (unsigned long long)atomic_load(&K->published), (unsigned long long)atomic_load(&K->cancelled),
		 (unsigned long long)atomic_load(&K->taken[0]), (unsigned long long)atomic_load(&K->taken[1]),
		 (unsigned long long)atomic_load(&K->gaps_drop), (unsigned long long)atomic_load(&K->kills[0]),
		 (unsigned long long)atomic_load(&K->kills[1]), (unsigned long long)atomic_load(&K->expect_max));
}

CAMP_KIND(pool, 4, struct pool_ledger);
