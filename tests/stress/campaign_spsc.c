/* SPDX-License-Identifier: MIT */
/*
 * Crash campaign, SPSC: one producer and one consumer, either killed at any instant.
 *
 * Checks, per record, in the consumer: the checksum holds; records of one producer
 * instance arrive in sequence with no gap; a record already received comes again only
 * if it belonged to the batch a killed consumer had peeked but not released (spsc.h:
 * "records peeked but not released by a dead consumer are delivered again"), and then
 * in order; the first record of a new producer instance arrives only after every record
 * its dead predecessor committed ("every record committed before the producer died
 * reaches the consumer").
 *
 * The consumer writes the batch it is about to release into the ledger *before* it
 * counts it as received, so a replacement can tell a legitimate redelivery from a
 * duplicate whatever instant the kill hit.
 */
#include "campaign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmring/spsc.h"

#define CAP (UINT64_C(1) << 16)
#define MAXMSG 1500u
#define BATCH 4

struct pend {
	_Atomic uint32_t valid;
	_Atomic uint32_t n;
	_Atomic uint32_t inst[BATCH];
	_Atomic uint64_t seq[BATCH];
};

struct spsc_ledger {
	_Atomic uint64_t committed[CAMP_MAX_INST]; /* by the producer, after commit returned */
	_Atomic uint64_t received[CAMP_MAX_INST];  /* next sequence expected */
	_Atomic uint32_t dead[CAMP_MAX_INST];      /* set by the harness */
	_Atomic uint32_t last_inst;                /* producer of the last new record */
	struct pend pending;                       /* the batch being released */
	_Atomic uint64_t records, bytes, redelivered;
	_Atomic uint64_t kills[2];
};

static const char *role(int slot)
{
	return slot == 0 ? "producer" : "consumer";
}

static int create(struct camp *c)
{
	struct shmring_spsc_opts o = { .capacity = CAP };
	struct shmring_spsc *r;
	int rc = shmring_spsc_create(c->name, &o, SHMRING_ROLE_PRODUCER, &r);
	if (rc)
		return camp_error(c, "spsc create: %s", shmring_strerror(rc));
	shmring_spsc_detach(r); /* the workers attach on their own */
	return 0;
}

static int open_retry(struct camp *c, uint32_t role_, struct shmring_spsc **r)
{
	int rc = shmring_spsc_open(c->name, role_, r);
	if (rc)
		camp_fail(c, "spsc open as %s: %s (%s)", role_ == SHMRING_ROLE_PRODUCER ? "producer" : "consumer",
			  shmring_strerror(rc), shmring_last_error_detail());
	return 0;
}

static void __attribute__((noreturn)) producer(struct camp *c, int slot, uint32_t inst)
{
	struct spsc_ledger *K = c->K;
	struct shmring_spsc *r;
	open_retry(c, SHMRING_ROLE_PRODUCER, &r);
	atomic_store(&c->L->w[slot].started, 1);
	uint64_t seq = 0, rng = inst;
	for (;;) {
		camp_lcg(&rng);
		unsigned nb = 1 + (unsigned)((rng >> 33) % BATCH), got = 0;
		for (unsigned i = 0; i < nb; i++) {
			camp_lcg(&rng);
			size_t len = CAMP_MSG_HDR + (size_t)((rng >> 33) % (MAXMSG - CAMP_MSG_HDR));
			void *buf;
			int rc;
			if (i == 0) { /* nothing pending: the wait commits nothing behind our back */
				camp_call_begin(c, slot);
				rc = shmring_spsc_reserve_wait(r, len, &buf, CAMP_CALL_MS);
				camp_call_end(c, slot);
			} else {
				rc = shmring_spsc_reserve(r, len, &buf);
			}
			/* -EPIPE: the consumer is dead; the harness brings another */
			if (rc == -EAGAIN || camp_again(rc))
				break;
			if (rc)
				camp_fail(c, "spsc reserve: %s", shmring_strerror(rc));
			camp_msg_make(buf, len, inst, seq + got);
			got++;
		}
		if (got && ((rng >> 20) & 15) == 0) {
			shmring_spsc_abort(r); /* their numbers are used again */
			continue;
		}
		int n = shmring_spsc_commit(r);
		if (n < 0)
			camp_fail(c, "spsc commit: %s", shmring_strerror(n));
		if ((unsigned)n != got)
			camp_fail(c, "spsc commit published %d records, %u were reserved", n, got);
		seq += got;
		atomic_store(&K->committed[inst], seq);
	}
}

/* Redeliveries a replacement consumer may see: the dead consumer's unreleased batch. */
struct allowed {
	uint32_t n, next;
	uint32_t inst[BATCH];
	uint64_t seq[BATCH];
};

/* Classify one record. Returns 1 new, 0 a legitimate redelivery; fails otherwise. */
static int classify(struct camp *c, struct allowed *al, uint32_t inst, uint64_t seq,
		    uint64_t *expect_local)
{
	if (inst == 0 || inst >= CAMP_MAX_INST)
		camp_fail(c, "record from impossible producer instance %u", inst);
	uint64_t want = *expect_local;
	if (seq < want) {
		if (al->next < al->n && al->inst[al->next] == inst && al->seq[al->next] == seq) {
			al->next++;
			return 0;
		}
		camp_fail(c, "record %u/%llu delivered twice (expected %llu)", inst, (unsigned long long)seq,
			  (unsigned long long)want);
	}
	if (seq > want)
		camp_fail(c, "records %u/%llu..%llu lost: got %llu", inst, (unsigned long long)want,
			  (unsigned long long)seq - 1, (unsigned long long)seq);
	al->next = al->n; /* a new record: the old batch was released after all */
	return 1;
}

/* The consumer's loop body: peek a batch, check, record, release. Also used by the
 * harness to drain at the end (slot < 0). Returns the records handled, or a negative
 * errno from peek (-ETIMEDOUT, -EPIPE, -EAGAIN). */
static int consume_batch(struct camp *c, int slot, struct shmring_spsc *r, struct allowed *al,
			 uint64_t *rng, int timeout)
{
	struct spsc_ledger *K = c->K;
	struct shmring_rec rec[BATCH];
	memset(rec, 0, sizeof(rec));
	if (slot >= 0)
		camp_call_begin(c, slot);
	int rc = timeout ? shmring_spsc_peek_wait(r, &rec[0], timeout) : shmring_spsc_peek(r, &rec[0]);
	if (slot >= 0)
		camp_call_end(c, slot);
	if (rc == -EPROTO)
		camp_fail(c, "spsc peek: corrupt ring (%s)", shmring_last_error_detail());
	if (rc)
		return rc;
	camp_lcg(rng);
	unsigned want = 1 + (unsigned)((*rng >> 33) % BATCH), n = 1;
	while (n < want && shmring_spsc_peek(r, &rec[n]) == 0)
		n++;
	uint32_t inst[BATCH];
	uint64_t seq[BATCH];
	int isnew[BATCH];
	uint64_t expect[BATCH];
	for (unsigned i = 0; i < n; i++) {
		if (camp_msg_check(rec[i].data, rec[i].len, &inst[i], &seq[i]) != 0)
			camp_fail(c, "record of %u bytes with a bad checksum accepted", rec[i].len);
		/* what we expect from inst: what the ledger says, plus this batch's new ones */
		uint64_t e = atomic_load(&K->received[inst[i] % CAMP_MAX_INST]);
		for (unsigned j = 0; j < i; j++)
			if (inst[j] == inst[i] && isnew[j])
				e = seq[j] + 1;
		expect[i] = e;
		isnew[i] = classify(c, al, inst[i], seq[i], &expect[i]);
	}
	/* 1: the batch goes into the ledger before anything is counted */
	struct pend *p = &K->pending;
	atomic_store(&p->valid, 0);
	for (unsigned i = 0; i < n; i++) {
		atomic_store(&p->inst[i], inst[i]);
		atomic_store(&p->seq[i], seq[i]);
	}
	atomic_store(&p->n, n);
	atomic_store(&p->valid, 1);
	/* 2: count the new ones; a new producer's first record comes after its predecessor's */
	for (unsigned i = 0; i < n; i++) {
		if (!isnew[i]) {
			atomic_fetch_add(&K->redelivered, 1);
			continue;
		}
		uint32_t last = atomic_load(&K->last_inst);
		if (inst[i] != last) {
			if (last && (inst[i] < last || !atomic_load(&K->dead[last])))
				camp_fail(c, "records of producer %u after those of %u, which is %s", inst[i],
					  last, inst[i] < last ? "newer" : "alive");
			if (last && atomic_load(&K->received[last]) < atomic_load(&K->committed[last]))
				camp_fail(c, "producer %u died having committed %llu records; %llu arrived",
					  last, (unsigned long long)atomic_load(&K->committed[last]),
					  (unsigned long long)atomic_load(&K->received[last]));
			atomic_store(&K->last_inst, inst[i]);
		}
		atomic_store(&K->received[inst[i]], seq[i] + 1);
		atomic_fetch_add(&K->records, 1);
		atomic_fetch_add(&K->bytes, rec[i].len);
		atomic_fetch_add(&c->L->progress, 1);
	}
	/* work on the records in place before giving them back (and widen the window in
	 * which a kill makes them come again) */
	for (unsigned i = 0; i < n; i++)
		if (camp_msg_check(rec[i].data, rec[i].len, &inst[i], &seq[i]) != 0)
			camp_fail(c, "record changed between peek and release");
	/* 3: release, then forget the batch */
	int rel = shmring_spsc_release(r);
	if (rel != (int)n)
		camp_fail(c, "spsc release returned %d for %u records", rel, n);
	atomic_store(&p->valid, 0);
	return (int)n;
}

static void load_allowed(struct camp *c, struct allowed *al)
{
	struct spsc_ledger *K = c->K;
	memset(al, 0, sizeof(*al));
	if (!atomic_load(&K->pending.valid))
		return;
	al->n = atomic_load(&K->pending.n);
	if (al->n > BATCH)
		al->n = BATCH;
	for (uint32_t i = 0; i < al->n; i++) {
		al->inst[i] = atomic_load(&K->pending.inst[i]);
		al->seq[i] = atomic_load(&K->pending.seq[i]);
	}
}

static void __attribute__((noreturn)) consumer(struct camp *c, int slot, uint32_t inst)
{
	struct shmring_spsc *r;
	struct allowed al;
	open_retry(c, SHMRING_ROLE_CONSUMER, &r);
	atomic_store(&c->L->w[slot].started, 1);
	load_allowed(c, &al);
	uint64_t rng = inst;
	for (;;) {
		int rc = consume_batch(c, slot, r, &al, &rng, CAMP_CALL_MS);
		if (camp_again(rc)) /* -EPIPE: the producer is dead and everything was read */
			continue;
		if (rc < 0)
			camp_fail(c, "spsc peek_wait: %s", shmring_strerror(rc));
	}
}

static void __attribute__((noreturn)) worker(struct camp *c, int slot, uint32_t inst)
{
	if (slot == 0)
		producer(c, slot, inst);
	consumer(c, slot, inst);
}

static int after_kill(struct camp *c, int slot, uint32_t inst)
{
	struct spsc_ledger *K = c->K;
	atomic_fetch_add(&K->kills[slot], 1);
	if (slot == 0)
		atomic_store(&K->dead[inst], 1);
	return 0;
}

static int settle(struct camp *c, int slot, uint32_t inst)
{
	(void)c;
	(void)slot;
	(void)inst;
	return 0;
}

/* Everyone is dead: drain as the consumer; what the last producer committed must all be
 * there, and nothing else. */
static void final_drain(struct camp *c)
{
	struct spsc_ledger *K = c->K;
	struct allowed al;
	load_allowed(c, &al);
	uint64_t rng = 1;
	struct shmring_spsc *rc2;
	int rc = shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &rc2);
	if (rc)
		camp_fail(c, "final consumer open: %s (%s)", shmring_strerror(rc),
			  shmring_last_error_detail());
	for (;;) {
		/* blocking, so that the dead producer is noticed: -EPIPE */
		int n = consume_batch(c, -1, rc2, &al, &rng, CAMP_CALL_MS);
		if (n == -EPIPE)
			break;
		if (n < 0)
			camp_fail(c, "final drain: %s", shmring_strerror(n));
	}
	uint32_t last = atomic_load(&K->last_inst);
	if (last && atomic_load(&K->received[last]) < atomic_load(&K->committed[last]))
		camp_fail(c, "the last producer (%u) committed %llu records; %llu arrived", last,
			  (unsigned long long)atomic_load(&K->committed[last]),
			  (unsigned long long)atomic_load(&K->received[last]));
	shmring_spsc_close(rc2);
}

static int finish(struct camp *c)
{
	return camp_final_child(c, "final drain", final_drain);
}

static void totals(struct camp *c, char *buf, size_t len)
{
	struct spsc_ledger *K = c->K;
	snprintf(buf, len,
		 "%llu records (%llu bytes) checked, producer kills %llu, consumer kills %llu, "
		 "redelivered after a consumer kill %llu, lost 0, duplicates 0",
		 (unsigned long long)atomic_load(&K->records), (unsigned long long)atomic_load(&K->bytes),
		 (unsigned long long)atomic_load(&K->kills[0]), (unsigned long long)atomic_load(&K->kills[1]),
		 (unsigned long long)atomic_load(&K->redelivered));
}

CAMP_KIND(spsc, 2, struct spsc_ledger);
