/* SPDX-License-Identifier: MIT */
/*
 * Crash campaign, MPMC: two producers and two consumers, any of them killed at any
 * instant.
 *
 * Checks: every message a consumer takes has a good checksum; no message is taken
 * twice (a shared bitmap, one bit per producer instance and sequence); each consumer
 * sees each producer's messages in order (mpmc.h: per-producer FIFO). Losses are
 * exactly the counted in-flight messages: right after each kill, with every survivor
 * stopped, the harness finds the busy cells of the dead participant and classifies them
 * as mpmc.h says recovery will (a gated claim that had not returned is given back, every
 * other busy cell is abandoned); once the survivors have recovered, hdr stats.abandoned
 * must equal the running count exactly, and the messages in the abandoned READING cells
 * are the only ones allowed to be missing at the end (every message a producer finished
 * must otherwise have been taken).
 */
#include "campaign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmring/mpmc.h"

#define CAP 64u
#define SLOT 512u
#define NPROD 2
#define MAXSEQ (1u << 15) /* a producer retires (closes cleanly) after this many */
#define BATCH 4u
#define MAXLOST 65536u

struct mpmc_ledger {
	_Atomic uint64_t committed[CAMP_MAX_INST];
	_Atomic uint64_t delivered, bytes, gaps, expect_abandoned, abandoned_reading,
		abandoned_writing, kills[2];
	_Atomic uint32_t nlost;
	_Atomic uint64_t lost_untaken; /* abandoned READING messages no consumer had checked */
	struct {
		uint32_t inst;
		uint64_t seq;
	} lost[MAXLOST];
	/* one bit per (instance, sequence): taken by some consumer */
	_Atomic uint64_t taken[(size_t)CAMP_MAX_INST * (MAXSEQ / 64)];
};

struct mpmc_state {
	struct shmring_mpmc *insp; /* not a participant: inspection only */
	uint32_t dead_owner;
	uint32_t dead_gen;
};

static struct mpmc_state S;

static const char *role(int slot)
{
	return slot < NPROD ? "producer" : "consumer";
}

static int create(struct camp *c)
{
	struct shmring_mpmc_opts o = { .capacity = CAP, .slot_size = SLOT, .max_parts = 16 };
	int rc = shmring_mpmc_create(c->name, &o, SHMRING_ROLE_NONE, &S.insp);
	if (rc)
		return camp_error(c, "mpmc create: %s", shmring_strerror(rc));
	c->state = &S;
	return 0;
}

static void __attribute__((noreturn)) producer(struct camp *c, int slot, uint32_t inst)
{
	struct mpmc_ledger *K = c->K;
	struct shmring_mpmc *r;
	int rc = shmring_mpmc_open(c->name, SHMRING_ROLE_PRODUCER, &r);
	if (rc)
		camp_fail(c, "mpmc producer open: %s", shmring_strerror(rc));
	atomic_store(&c->L->w[slot].started, 1);
	uint64_t seq = 0, rng = inst * 7919u;
	for (;;) {
		camp_lcg(&rng);
		unsigned n = 1 + (unsigned)((rng >> 33) % BATCH);
		void *bufs[BATCH];
		camp_call_begin(c, slot);
		int k = shmring_mpmc_enqueue_start(r, n, 1, bufs, CAMP_CALL_MS);
		camp_call_end(c, slot);
		if (camp_again(k))
			continue;
		if (k < 0)
			camp_fail(c, "mpmc enqueue_start: %s", shmring_strerror(k));
		uint32_t lens[BATCH];
		for (int i = 0; i < k; i++) {
			camp_lcg(&rng);
			lens[i] = CAMP_MSG_HDR + (uint32_t)((rng >> 33) % (SLOT - CAMP_MSG_HDR + 1));
			camp_msg_make(bufs[i], lens[i], inst, seq + (uint64_t)i);
		}
		/* now and then publish fewer than claimed: the rest become gaps */
		unsigned m = (unsigned)k;
		if (((rng >> 12) & 7) == 0)
			m = (unsigned)((rng >> 16) % (uint64_t)k);
		rc = shmring_mpmc_enqueue_finish(r, m, lens);
		if (rc != (int)m)
			camp_fail(c, "mpmc enqueue_finish(%u) = %d", m, rc);
		if (m < (unsigned)k)
			atomic_fetch_add(&K->gaps, (unsigned)k - m);
		seq += m;
		atomic_store(&K->committed[inst], seq);
		if (seq + BATCH >= MAXSEQ) {
			shmring_mpmc_close(r);
			_exit(CAMP_EXIT_RETIRE);
		}
	}
}

static void take(struct camp *c, const void *data, uint32_t len, uint64_t *last)
{
	struct mpmc_ledger *K = c->K;
	uint32_t inst;
	uint64_t seq;
	if (camp_msg_check(data, len, &inst, &seq) != 0)
		camp_fail(c, "message of %u bytes with a bad checksum accepted", len);
	if (inst == 0 || inst >= CAMP_MAX_INST || seq >= MAXSEQ)
		camp_fail(c, "message %u/%llu from nowhere", inst, (unsigned long long)seq);
	if (last[inst] && seq + 1 <= last[inst])
		camp_fail(c, "producer %u: message %llu after %llu (per-producer order)", inst,
			  (unsigned long long)seq, (unsigned long long)last[inst] - 1);
	last[inst] = seq + 1;
	uint64_t bit = UINT64_C(1) << (seq & 63);
	uint64_t old = atomic_fetch_or(&K->taken[(size_t)inst * (MAXSEQ / 64) + seq / 64], bit);
	if (old & bit)
		camp_fail(c, "message %u/%llu taken twice", inst, (unsigned long long)seq);
	atomic_fetch_add(&K->delivered, 1);
	atomic_fetch_add(&K->bytes, len);
	atomic_fetch_add(&c->L->progress, 1);
}

static void __attribute__((noreturn)) consumer(struct camp *c, int slot, uint32_t inst)
{
	struct shmring_mpmc *r;
	int rc = shmring_mpmc_open(c->name, SHMRING_ROLE_CONSUMER, &r);
	if (rc)
		camp_fail(c, "mpmc consumer open: %s", shmring_strerror(rc));
	atomic_store(&c->L->w[slot].started, 1);
	uint64_t *last = calloc(CAMP_MAX_INST, sizeof(*last));
	if (!last)
		camp_fail(c, "out of memory");
	uint64_t rng = inst * 104729u;
	for (;;) {
		camp_lcg(&rng);
		unsigned n = 1 + (unsigned)((rng >> 33) % BATCH);
		struct shmring_mpmc_msg msgs[BATCH];
		camp_call_begin(c, slot);
		int k = shmring_mpmc_dequeue_start(r, n, 1, msgs, CAMP_CALL_MS);
		camp_call_end(c, slot);
		if (camp_again(k))
			continue;
		if (k < 0)
			camp_fail(c, "mpmc dequeue_start: %s", shmring_strerror(k));
		for (int i = 0; i < k; i++)
			take(c, msgs[i].data, msgs[i].len, last);
		rc = shmring_mpmc_dequeue_finish(r);
		if (rc != k)
			camp_fail(c, "mpmc dequeue_finish = %d for %d", rc, k);
	}
}

static void __attribute__((noreturn)) worker(struct camp *c, int slot, uint32_t inst)
{
	if (slot < NPROD)
		producer(c, slot, inst);
	consumer(c, slot, inst);
}

/*
 * Everything the dead (participants whose lock is gone) hold, classified as mpmc.h's
 * recovery will: a gated run (a claim that had not returned) is given back; every other
 * busy cell of a dead owner is abandoned, and if it is READING its message is lost.
 * Returns the number of cells that will be abandoned, or -1.
 */
static long inspect_dead(struct camp *c)
{
	struct mpmc_ledger *K = c->K;
	struct shmring_seg *seg = shmring_mpmc_seg(S.insp);
	uint32_t cap = shmring_mpmc_capacity(S.insp);
	struct shmring_mpmc_cell_info ci[CAP];
	int dead[SHMRING_MAX_PARTS];
	uint8_t inrun[CAP];
	memset(inrun, 0, sizeof(inrun));
	for (uint32_t s = 0; s < SHMRING_MAX_PARTS; s++)
		dead[s] = s < seg->max_parts ? shmring_part_alive(seg, s) == 0 : 0;
	for (uint32_t i = 0; i < cap; i++)
		shmring_mpmc_cell_get(S.insp, i, &ci[i]);
	/* gated runs first, walked as revert_run() walks them */
	for (uint32_t i = 0; i < cap; i++) {
		uint32_t ph = ci[i].phase;
		if ((ph != SHMRING__MPMC_WRITING && ph != SHMRING__MPMC_READING) || !ci[i].gate ||
		    ci[i].owner >= SHMRING_MAX_PARTS || !dead[ci[i].owner])
			continue;
		inrun[i] = 1;
		uint64_t tag = ci[i].word & SHMRING__MPMC_TAG_MASK & ~SHMRING__MPMC_GATE;
		uint32_t limit = cap < SHMRING_MPMC_BATCH_MAX ? cap : SHMRING_MPMC_BATCH_MAX;
		for (uint32_t j = 1; j < limit; j++) {
			uint32_t x = (i + j) % cap;
			uint64_t p = ci[i].pos + j;
			if (ci[x].word == shmring__mpmc_word(p, ph, tag))
				inrun[x] = 1;
			else if (ph != SHMRING__MPMC_READING ||
				 ci[x].word != shmring__mpmc_word(p + cap, SHMRING__MPMC_FREE, 0))
				break;
		}
	}
	long n = 0;
	for (uint32_t i = 0; i < cap; i++) {
		uint32_t ph = ci[i].phase;
		if ((ph != SHMRING__MPMC_WRITING && ph != SHMRING__MPMC_READING) || inrun[i])
			continue;
		if (ci[i].owner >= SHMRING_MAX_PARTS || !dead[ci[i].owner])
			continue;
		n++;
		if (ph == SHMRING__MPMC_WRITING) {
			atomic_fetch_add(&K->abandoned_writing, 1);
			continue;
		}
		uint32_t inst;
		uint64_t seq;
		if (ci[i].len > SLOT || camp_msg_check(ci[i].data, ci[i].len, &inst, &seq) != 0)
			return camp_error(c, "cell %u: a taken message (READING) is not intact", i);
		uint32_t k = atomic_load(&K->nlost);
		if (k >= MAXLOST)
			return camp_error(c, "too many lost messages to track");
		K->lost[k].inst = inst;
		K->lost[k].seq = seq;
		atomic_store(&K->nlost, k + 1);
		atomic_fetch_add(&K->abandoned_reading, 1);
	}
	return n;
}

static int after_kill(struct camp *c, int slot, uint32_t inst)
{
	struct mpmc_ledger *K = c->K;
	(void)inst;
	atomic_fetch_add(&K->kills[slot < NPROD ? 0 : 1], 1);
	long n = inspect_dead(c);
	if (n < 0)
		return -1;
	atomic_fetch_add(&K->expect_abandoned, (uint64_t)n);
	return 0;
}

static uint64_t abandoned(void)
{
	struct shmring_hdr *h = shmring_seg_hdr(shmring_mpmc_seg(S.insp));
	return atomic_load_explicit(&h->stats.abandoned, memory_order_relaxed);
}

/* Wait until the survivors have reclaimed everything the dead held, and counted it. */
static int settle(struct camp *c, int slot, uint32_t inst)
{
	struct mpmc_ledger *K = c->K;
	(void)slot;
	(void)inst;
	uint64_t deadline = camp_now_ns() + UINT64_C(10000000000);
	struct shmring_seg *seg = shmring_mpmc_seg(S.insp);
	for (;;) {
		int busy_dead = 0;
		uint32_t cap = shmring_mpmc_capacity(S.insp);
		for (uint32_t i = 0; i < cap && !busy_dead; i++) {
			struct shmring_mpmc_cell_info ci;
			shmring_mpmc_cell_get(S.insp, i, &ci);
			if ((ci.phase == SHMRING__MPMC_WRITING || ci.phase == SHMRING__MPMC_READING) &&
			    shmring_part_alive(seg, ci.owner) == 0)
				busy_dead = 1;
		}
		uint64_t a = abandoned(), e = atomic_load(&K->expect_abandoned);
		if (!busy_dead && a == e)
			return 0;
		if (a > e)
			return camp_error(c, "stats.abandoned is %llu, but only %llu cells were in flight",
					  (unsigned long long)a, (unsigned long long)e);
		if (camp_now_ns() > deadline)
			return camp_error(c, "10 s after kill %llu: %s (abandoned %llu of %llu expected)",
					  (unsigned long long)c->kills,
					  busy_dead ? "a dead participant still holds cells" : "count short",
					  (unsigned long long)a, (unsigned long long)e);
		camp_sleep_ms(1);
	}
}

static int is_lost(struct mpmc_ledger *K, uint32_t inst, uint64_t seq)
{
	uint32_t n = atomic_load(&K->nlost);
	for (uint32_t i = 0; i < n; i++)
		if (K->lost[i].inst == inst && K->lost[i].seq == seq)
			return 1;
	return 0;
}

static void final_drain(struct camp *c)
{
	struct shmring_mpmc *r;
	/* attaching reaps every dead participant */
	int rc = shmring_mpmc_open(c->name, SHMRING_ROLE_CONSUMER, &r);
	if (rc)
		camp_fail(c, "final consumer open: %s", shmring_strerror(rc));
	shmring_mpmc_recover(r);
	uint64_t *last = calloc(CAMP_MAX_INST, sizeof(*last));
	static uint8_t buf[SLOT];
	for (;;) {
		rc = shmring_mpmc_dequeue(r, buf, sizeof(buf), CAMP_CALL_MS);
		if (rc == -EPIPE)
			break;
		if (rc == -ETIMEDOUT)
			camp_fail(c, "final drain: not told of EOF with every producer dead");
		if (rc < 0)
			camp_fail(c, "final drain: %s", shmring_strerror(rc));
		take(c, buf, (uint32_t)rc, last);
	}
	shmring_mpmc_close(r);
}

static int finish(struct camp *c)
{
	struct mpmc_ledger *K = c->K;
	/* the last deaths (every worker at once): inspect before anyone recovers */
	long n = inspect_dead(c);
	if (n < 0)
		return -1;
	atomic_fetch_add(&K->expect_abandoned, (uint64_t)n);
	if (camp_final_child(c, "final drain", final_drain) != 0)
		return -1;
	uint64_t a = abandoned(), e = atomic_load(&K->expect_abandoned);
	if (a != e)
		return camp_error(c, "stats.abandoned is %llu; %llu cells were in flight at the kills",
				  (unsigned long long)a, (unsigned long long)e);
	/* every finished message was taken, or was in a dead consumer's hands */
	for (uint32_t inst = 1; inst < CAMP_MAX_INST; inst++) {
		uint64_t cm = atomic_load(&K->committed[inst]);
		for (uint64_t s = 0; s < cm; s++) {
			uint64_t w = atomic_load(&K->taken[(size_t)inst * (MAXSEQ / 64) + s / 64]);
			if (w >> (s & 63) & 1)
				continue;
			if (!is_lost(K, inst, s))
				return camp_error(c, "message %u/%llu was finished but never taken, and no "
						  "dead consumer held it", inst, (unsigned long long)s);
		}
	}
	uint32_t nl = atomic_load(&K->nlost);
	for (uint32_t i = 0; i < nl; i++) {
		uint64_t s = K->lost[i].seq;
		uint64_t w = atomic_load(&K->taken[(size_t)K->lost[i].inst * (MAXSEQ / 64) + s / 64]);
		if (!(w >> (s & 63) & 1))
			atomic_fetch_add(&K->lost_untaken, 1);
	}
	shmring_mpmc_close(S.insp);
	S.insp = NULL;
	return 0;
}

static void totals(struct camp *c, char *buf, size_t len)
{
	struct mpmc_ledger *K = c->K;
	snprintf(buf, len,
		 "%llu messages (%llu bytes) taken, producer kills %llu, consumer kills %llu, "
		 "retired %llu; abandoned %llu = %llu being read (messages lost: %llu, %llu of them "
		 "already checked by the consumer that died) + %llu being written; gaps %llu; "
		 "duplicates 0",
		 (unsigned long long)atomic_load(&K->delivered), (unsigned long long)atomic_load(&K->bytes),
		 (unsigned long long)atomic_load(&K->kills[0]), (unsigned long long)atomic_load(&K->kills[1]),
		 (unsigned long long)c->retired, (unsigned long long)atomic_load(&K->expect_abandoned),
		 (unsigned long long)atomic_load(&K->abandoned_reading),
		 (unsigned long long)atomic_load(&K->lost_untaken),
		 (unsigned long long)(atomic_load(&K->abandoned_reading) - atomic_load(&K->lost_untaken)),
		 (unsigned long long)atomic_load(&K->abandoned_writing),
		 (unsigned long long)atomic_load(&K->gaps));
}

CAMP_KIND(mpmc, 4, struct mpmc_ledger);
