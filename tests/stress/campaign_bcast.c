/* SPDX-License-Identifier: MIT */
/*
 * Crash campaign, broadcast: one writer and three readers (copying and lapping to the
 * oldest record; copying and lapping to the newest; zero-copy peek/release mixed with
 * read_latest), any of them killed at any instant.
 *
 * The writer puts each record's number (shmring_bcast_published() before it writes)
 * into the record with its checksum. Checks, in the readers: a record returned has a
 * good checksum and carries the number the library reports for it (a torn or half
 * written record is never returned, whoever died writing it); numbers strictly increase
 * (nothing twice), also across a writer's death and replacement (bcast.h: a
 * replacement resumes after the last complete record); rec.missed accounts for every
 * number skipped; a zero-copy peek that release() accepts was intact. At the end a
 * replacement writer can always attach (its resume check accepts what the dead left).
 */
#include "campaign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmring/bcast.h"

#define SLOTS 16u
#define SLOTSZ 2048u

struct bcast_ledger {
	_Atomic uint64_t published, aborted, read[3], missed[3], torn, kills[2];
};

static const char *role(int slot)
{
	return slot == 0 ? "writer" : "reader";
}

static int create(struct camp *c)
{
	struct shmring_bcast_opts o = { .slots = SLOTS, .slot_size = SLOTSZ };
	struct shmring_bcast *w;
	int rc = shmring_bcast_create(c->name, &o, SHMRING_ROLE_PRODUCER, &w);
	if (rc)
		return camp_error(c, "bcast create: %s", shmring_strerror(rc));
	shmring_bcast_close(w); /* the writer worker reopens it */
	return 0;
}

/* Pacing only: a writer that never waits would leave 2 cores no time for the readers
 * (nothing waits for this pause). */
static void pause_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

static void __attribute__((noreturn)) writer(struct camp *c, int slot, uint32_t inst)
{
	struct bcast_ledger *K = c->K;
	struct shmring_bcast *w;
	int rc = shmring_bcast_open(c->name, SHMRING_ROLE_PRODUCER, 0, &w);
	if (rc)
		camp_fail(c, "bcast writer open: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	atomic_store(&c->L->w[slot].started, 1);
	static uint8_t buf[SLOTSZ];
	uint64_t rng = inst * 2654435761u;
	for (uint64_t i = 0;; i++) {
		camp_lcg(&rng);
		size_t len = CAMP_MSG_HDR + (size_t)((rng >> 33) % (SLOTSZ - CAMP_MSG_HDR + 1));
		uint64_t n = shmring_bcast_published(w); /* the number of the record we write */
		if ((rng >> 12) & 1) {
			camp_msg_make(buf, len, inst, n);
			rc = shmring_bcast_publish(w, buf, len);
		} else { /* in place: readers must never see it half written */
			void *p;
			rc = shmring_bcast_reserve(w, len, &p);
			if (rc == 0) {
				camp_msg_make(buf, len, inst, n);
				memcpy(p, buf, len);
				if (((rng >> 20) & 31) == 0) {
					shmring_bcast_abort(w);
					atomic_fetch_add(&K->aborted, 1);
					continue;
				}
				rc = shmring_bcast_commit(w);
			}
		}
		if (rc)
			camp_fail(c, "bcast publish: %s", shmring_strerror(rc));
		atomic_fetch_add(&K->published, 1);
		atomic_fetch_add(&c->L->w[slot].ops, 1);
		if ((i & 7) == 7)
			pause_us(20); /* let the readers keep up now and then */
	}
}

struct rstate {
	int have;
	uint64_t last;
};

/* A record came back: check it. latest: read_latest may return the last one again. */
static void accept(struct camp *c, int r, struct rstate *st, const void *data, size_t len,
		   const struct shmring_bcast_rec *rec, int latest)
{
	struct bcast_ledger *K = c->K;
	uint32_t inst;
	uint64_t seq;
	if (camp_msg_check(data, len, &inst, &seq) != 0)
		camp_fail(c, "record %llu (%zu bytes) with a bad checksum accepted", (unsigned long long)rec->seq,
			  len);
	if (seq != rec->seq)
		camp_fail(c, "record %llu holds the writer's record %llu", (unsigned long long)rec->seq,
			  (unsigned long long)seq);
	if (st->have) {
		if (latest && rec->seq == st->last)
			return; /* the same newest record again */
		if (rec->seq <= st->last)
			camp_fail(c, "record %llu after %llu: twice or backwards", (unsigned long long)rec->seq,
				  (unsigned long long)st->last);
		if (rec->missed != rec->seq - st->last - 1)
			camp_fail(c, "record %llu after %llu says it missed %llu", (unsigned long long)rec->seq,
				  (unsigned long long)st->last, (unsigned long long)rec->missed);
		atomic_fetch_add(&K->missed[r], rec->missed);
	}
	st->have = 1;
	st->last = rec->seq;
	atomic_fetch_add(&K->read[r], 1);
	atomic_fetch_add(&c->L->progress, 1);
}

static void __attribute__((noreturn)) reader(struct camp *c, int slot, uint32_t inst)
{
	struct bcast_ledger *K = c->K;
	int r = slot - 1;
	unsigned flags = r == 1 ? SHMRING_BCAST_LAP_NEWEST : 0;
	struct shmring_bcast *b;
	int rc = shmring_bcast_open(c->name, SHMRING_ROLE_READER, flags, &b);
	if (rc)
		camp_fail(c, "bcast reader open: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	atomic_store(&c->L->w[slot].started, 1);
	static uint8_t buf[SLOTSZ];
	struct rstate st = { 0, 0 };
	uint64_t rng = inst * 40503u;
	for (;;) {
		struct shmring_bcast_rec rec;
		memset(&rec, 0, sizeof(rec));
		camp_lcg(&rng);
		int mode = r == 2 ? (int)((rng >> 33) % 3) : 0;
		if (mode == 1) { /* zero-copy */
			camp_call_begin(c, slot);
			rc = shmring_bcast_peek_wait(b, &rec, CAMP_CALL_MS);
			camp_call_end(c, slot);
			if (rc == 0) {
				uint32_t pi;
				uint64_t ps;
				int ok = rec.len <= SLOTSZ && camp_msg_check(rec.data, rec.len, &pi, &ps) == 0;
				/* copy what was checked: accept() checks it again */
				memcpy(buf, rec.data, rec.len <= SLOTSZ ? rec.len : SLOTSZ);
				struct shmring_bcast_rec kept = rec;
				int rel = shmring_bcast_release(b);
				if (rel == 0) {
					if (!ok)
						camp_fail(c, "peeked record %llu was torn, yet release() said intact",
							  (unsigned long long)kept.seq);
					accept(c, r, &st, buf, kept.len, &kept, 0);
				} else if (rel == -ESTALE) {
					atomic_fetch_add(&K->torn, 1);
				} else {
					camp_fail(c, "bcast release: %s", shmring_strerror(rel));
				}
				continue;
			}
		} else if (mode == 2) {
			rc = shmring_bcast_read_latest(b, buf, sizeof(buf), &rec);
			if (rc >= 0) {
				accept(c, r, &st, buf, (size_t)rc, &rec, 1);
				continue;
			}
			if (rc == -EAGAIN) {
				camp_backoff();
				continue;
			}
		} else {
			camp_call_begin(c, slot);
			rc = shmring_bcast_read_wait(b, buf, sizeof(buf), &rec, CAMP_CALL_MS);
			camp_call_end(c, slot);
			if (rc >= 0) {
				accept(c, r, &st, buf, (size_t)rc, &rec, 0);
				continue;
			}
		}
		if (rc == -EAGAIN || camp_again(rc)) /* -EPIPE: the writer is dead, all is read */
			continue;
		camp_fail(c, "bcast read: %s", shmring_strerror(rc));
	}
}

static void __attribute__((noreturn)) worker(struct camp *c, int slot, uint32_t inst)
{
	if (slot == 0)
		writer(c, slot, inst);
	reader(c, slot, inst);
}

static int after_kill(struct camp *c, int slot, uint32_t inst)
{
	struct bcast_ledger *K = c->K;
	(void)inst;
	atomic_fetch_add(&K->kills[slot != 0], 1);
	return 0;
}

static int settle(struct camp *c, int slot, uint32_t inst)
{
	(void)c;
	(void)slot;
	(void)inst;
	return 0;
}

/* Everyone is dead: a reader reads what is there up to EOF, and a replacement writer can
 * attach over whatever the dead writer left. */
static void final_check(struct camp *c)
{
	struct shmring_bcast *b, *w;
	int rc = shmring_bcast_open(c->name, SHMRING_ROLE_READER, SHMRING_BCAST_START_OLDEST, &b);
	if (rc)
		camp_fail(c, "final reader open: %s", shmring_strerror(rc));
	static uint8_t buf[SLOTSZ];
	struct rstate st = { 0, 0 };
	for (;;) {
		struct shmring_bcast_rec rec;
		rc = shmring_bcast_read_wait(b, buf, sizeof(buf), &rec, CAMP_CALL_MS);
		if (rc == -EPIPE)
			break;
		if (rc < 0)
			camp_fail(c, "final read: %s (the writer is dead: expected EOF)",
				  shmring_strerror(rc));
		accept(c, 0, &st, buf, (size_t)rc, &rec, 0);
	}
	shmring_bcast_close(b);
	rc = shmring_bcast_open(c->name, SHMRING_ROLE_PRODUCER, 0, &w);
	if (rc)
		camp_fail(c, "a replacement writer cannot attach: %s (%s)", shmring_strerror(rc),
			  shmring_last_error_detail());
	shmring_bcast_close(w);
}

static int finish(struct camp *c)
{
	return camp_final_child(c, "final check", final_check);
}

static void totals(struct camp *c, char *buf, size_t len)
{
	struct bcast_ledger *K = c->K;
	snprintf(buf, len,
		 "%llu records published (%llu aborted), read: %llu/%llu/%llu by the three readers "
		 "(missed by lapping or skipping: %llu/%llu/%llu), torn peeks discarded %llu; writer "
		 "kills %llu, reader kills %llu; torn or duplicate records returned 0",
		 (unsigned long long)atomic_load(&K->published), (unsigned long long)atomic_load(&K->aborted),
		 (unsigned long long)atomic_load(&K->read[0]), (unsigned long long)atomic_load(&K->read[1]),
		 (unsigned long long)atomic_load(&K->read[2]), (unsigned long long)atomic_load(&K->missed[0]),
		 (unsigned long long)atomic_load(&K->missed[1]), (unsigned long long)atomic_load(&K->missed[2]),
		 (unsigned long long)atomic_load(&K->torn), (unsigned long long)atomic_load(&K->kills[0]),
		 (unsigned long long)atomic_load(&K->kills[1]));
}

CAMP_KIND(bcast, 4, struct bcast_ledger);
