/* SPDX-License-Identifier: MIT */
/*
 * Broadcast test helpers, #included by test_bcast.c (not built on its own):
 * self-checking records and the in-process (threads) version of the stress test, which
 * the `threads` suite runs under TSan.
 *
 * Records: [u64 record number][u64 xxh3(payload)][payload from a random pool], so a
 * reader that accepted a torn or misplaced record is caught.
 */
#include "shmring/bcast.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define REC_HDR 16u
#define POOL_SIZE (1u << 20)
#define NREADERS 4
#define LONG_MS 30000 /* "forever" for a test: a hang fails instead of blocking CI */

static uint8_t pool[POOL_SIZE + 64];

static void pool_init(void)
{
	static int done;
	if (!done) {
		tu_fill(pool, sizeof(pool), 0x5eed);
		done = 1;
	}
}

/* Build record seq of len bytes (len >= REC_HDR) at dst from the random pool. */
static void rec_make(void *dst, uint64_t seq, size_t len, uint64_t *rng)
{
	size_t plen = len - REC_HDR;
	size_t off = (size_t)(tu_rand(rng) % (POOL_SIZE - plen + 1));
	uint64_t sum = XXH3_64bits(pool + off, plen);
	memcpy(dst, &seq, 8);
	memcpy((uint8_t *)dst + 8, &sum, 8);
	memcpy((uint8_t *)dst + REC_HDR, pool + off, plen);
}

static int rec_ok(const void *p, size_t len, uint64_t seq)
{
	uint64_t s, sum;
	if (len < REC_HDR)
		return 0;
	memcpy(&s, p, 8);
	memcpy(&sum, (const uint8_t *)p + 8, 8);
	return s == seq && XXH3_64bits((const uint8_t *)p + REC_HDR, len - REC_HDR) == sum;
}

static size_t rand_len(uint64_t *rng, size_t max)
{
	uint64_t r = tu_rand(rng);
	if ((r & 63) == 0)
		return max; /* exactly a full slot now and then */
	return REC_HDR + (size_t)((r >> 8) % (max - REC_HDR + 1));
}

/* ---- threaded stress: one writer (the caller), three readers reading every record
 * they can, one reading only the latest ---- */

#define BT_SLOT 512u
#define BT_LATEST 3 /* the reader thread that uses read_latest */

static _Atomic int bt_ready;

struct bt_reader {
	const char *name;
	uint64_t n;
	int id;
	int fail; /* bits: 1 open or error, 2 bad record, 4 order or gap mismatch,
		   * 8 accounting */
	int err;
	uint64_t count, missed, laps;
};

static void *bt_reader_main(void *arg)
{
	struct bt_reader *t = arg;
	struct shmring_bcast *r;
	/* the writer's mapping: TSan relates accesses by address, so readers on a mapping
	 * of their own would hide every race from it */
	if ((t->err = shmring_bcast_open(t->name, SHMRING_ROLE_READER, SHMRING_BCAST_RW_MAPPING,
					 &r)) != 0) {
		t->fail = 1;
		atomic_fetch_add_explicit(&bt_ready, 1, memory_order_release);
		return NULL;
	}
	/* positioned at 0: pairs with the writer's acquire load before it publishes */
	atomic_fetch_add_explicit(&bt_ready, 1, memory_order_release);
	uint8_t *buf = malloc(BT_SLOT);
	uint64_t next = 0;
	for (;;) {
		struct shmring_bcast_rec rec = { 0 };
		int len = t->id == BT_LATEST ? shmring_bcast_read_latest(r, buf, BT_SLOT, &rec)
					     : shmring_bcast_read_wait(r, buf, BT_SLOT, &rec, LONG_MS);
		if (len == -EAGAIN && t->id == BT_LATEST) {
			if (shmring_bcast_wait(r, LONG_MS) == -EPIPE)
				break;
			continue;
		}
		if (len < 0) {
			if (len != -EPIPE) {
				t->fail |= 1;
				t->err = len;
			}
			break;
		}
		if (!rec_ok(buf, (size_t)len, rec.seq))
			t->fail |= 2;
		if (t->id != BT_LATEST) {
			if (rec.seq < next || rec.seq - next != rec.missed)
				t->fail |= 4;
			t->missed += rec.missed;
			t->count++;
		} else {
			if (rec.seq + 1 == t->n)
				break; /* the latest reader saw the last record */
			/* sleep until something newer than what it has is published */
			int rc = shmring_bcast_wait(r, LONG_MS);
			if (rc < 0) {
				if (rc != -EPIPE) {
					t->fail |= 1;
					t->err = rc;
				}
				break;
			}
		}
		next = rec.seq + 1;
	}
	struct shmring_bcast_stats st;
	shmring_bcast_stats(r, &st);
	t->laps = st.laps;
	free(buf);
	shmring_bcast_close(r);
	return NULL;
}

/* Run the threaded stress with n records. Returns 0, or -1 with a reason in err. */
static int bcast_threads_run(uint64_t n, char *err, size_t errlen)
{
	char name[96];
	pool_init();
	atomic_store(&bt_ready, 0);
	tu_name(name, sizeof(name), "bc-thr");
	struct shmring_bcast_opts o = { .slots = 64, .slot_size = BT_SLOT };
	struct shmring_bcast *w;
	int rc = shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &w);
	if (rc) {
		snprintf(err, errlen, "create: %s", shmring_strerror(rc));
		return -1;
	}
	struct bt_reader t[NREADERS];
	pthread_t th[NREADERS];
	for (int i = 0; i < NREADERS; i++)
		t[i] = (struct bt_reader){ .name = name, .n = n, .id = i };
	for (int i = 0; i < NREADERS; i++)
		pthread_create(&th[i], NULL, bt_reader_main, &t[i]);
	/* readers must be at record 0 before the first one: pairs with their release */
	while (atomic_load_explicit(&bt_ready, memory_order_acquire) != NREADERS)
		sched_yield();
	uint64_t rng = 4321;
	uint8_t buf[BT_SLOT];
	int res = 0;
	for (uint64_t i = 0; i < n && res == 0; i++) {
		size_t len = rand_len(&rng, sizeof(buf));
		rec_make(buf, i, len, &rng);
		if ((rc = shmring_bcast_publish(w, buf, len)) != 0) {
			snprintf(err, errlen, "publish %llu: %s", (unsigned long long)i, shmring_strerror(rc));
			res = -1;
		}
	}
	shmring_bcast_close(w);
	for (int i = 0; i < NREADERS; i++) {
		pthread_join(th[i], NULL);
		if (res)
			continue;
		if (t[i].id != BT_LATEST && t[i].count + t[i].missed != n)
			t[i].fail |= 8;
		if (t[i].id != BT_LATEST && t[i].laps != t[i].missed)
			t[i].fail |= 8;
		if (t[i].fail) {
			snprintf(err, errlen, "reader thread %d failed: bits 0x%x, %s (%llu read, %llu missed)",
				 i, t[i].fail, shmring_strerror(t[i].err), (unsigned long long)t[i].count,
				 (unsigned long long)t[i].missed);
			res = -1;
		}
	}
	shmring_seg_unlink(name);
	return res;
}
