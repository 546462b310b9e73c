/* SPDX-License-Identifier: MIT */
/*
 * MPMC ring: semantics (bulk/burst, zero-copy, sizes, timeouts, EOF, hostile values) and,
 * in the included files, dead participants (mpmc_dead.c) and multi-process stress
 * (mpmc_stress.c). Every cross-process test forks real processes that open the segment
 * again.
 */
#include <criterion/criterion.h>

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring/mpmc.h"
#include "testutil.h"

/* ---- helpers shared by the included files ---- */

struct ring {
	char name[96];
	struct shmring_mpmc *r; /* the creator's handle */
};

static void ring_create(struct ring *g, uint32_t cap, uint32_t slot, uint32_t role)
{
	tu_name(g->name, sizeof(g->name), "mpmc");
	struct shmring_mpmc_opts o = { .capacity = cap, .slot_size = slot };
	int rc = shmring_mpmc_create(g->name, &o, role, &g->r);
	cr_assert_eq(rc, 0, "create: %s", shmring_strerror(rc));
}

static void ring_destroy(struct ring *g)
{
	shmring_mpmc_close(g->r);
	shmring_seg_unlink(g->name);
}

static struct shmring_mpmc *ring_open(const struct ring *g, uint32_t role)
{
	struct shmring_mpmc *r = NULL;
	int rc = shmring_mpmc_open(g->name, role, &r);
	cr_assert_eq(rc, 0, "open: %s", shmring_strerror(rc));
	return r;
}

static struct shmring_hdr *ring_hdr(const struct ring *g)
{
	return shmring_seg_hdr(shmring_mpmc_seg(g->r));
}

static uint64_t stat_of(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* Shared memory for children's reports (not a shmring segment: plain MAP_SHARED). */
static void *shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

static int send_u32(struct shmring_mpmc *r, uint32_t v, int timeout_ms)
{
	return shmring_mpmc_enqueue(r, &v, sizeof(v), timeout_ms);
}

static int recv_u32(struct shmring_mpmc *r, uint32_t *v, int timeout_ms)
{
	int n = shmring_mpmc_dequeue(r, v, sizeof(*v), timeout_ms);
	return n < 0 ? n : (n == (int)sizeof(*v) ? 0 : -EBADMSG);
}

/* ---- creation and geometry ---- */

Test(mpmc, create_rounds_capacity_and_publishes_geometry)
{
	struct ring g;
	ring_create(&g, 1000, 40, SHMRING_ROLE_NONE);
	cr_assert_eq(shmring_mpmc_capacity(g.r), 1024);
	cr_assert_eq(shmring_mpmc_slot_size(g.r), 40);
	struct shmring_hdr *h = ring_hdr(&g);
	cr_assert_eq(h->kind, SHMRING_KIND_MPMC);
	cr_assert_eq(h->geo[SHMRING_MPMC_GEO_CAPACITY], 1024);
	cr_assert_eq(h->geo[SHMRING_MPMC_GEO_SLOT_SIZE], 40);
	cr_assert_eq(h->geo[SHMRING_MPMC_GEO_ALIGN], 64);
	cr_assert_eq(h->geo[SHMRING_MPMC_GEO_STRIDE], 64); /* 16 + 40 rounded to 64 */
	cr_assert_eq(h->geo[SHMRING_MPMC_GEO_FORMAT], SHMRING_MPMC_FORMAT);
	cr_assert_eq(shmring_mpmc_part(g.r), -1, "role NONE does not join");
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	cr_assert_geq(shmring_mpmc_part(p), 0);
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

Test(mpmc, create_rejects_bad_options)
{
	struct shmring_mpmc *r;
	char name[96];
	tu_name(name, sizeof(name), "mpmc");
	struct shmring_mpmc_opts o = { .capacity = 8, .slot_size = 0 };
	cr_assert_eq(shmring_mpmc_create(name, &o, SHMRING_ROLE_NONE, &r), -EINVAL, "slot 0");
	o.slot_size = 8;
	o.align = 24;
	cr_assert_eq(shmring_mpmc_create(name, &o, SHMRING_ROLE_NONE, &r), -EINVAL, "align 24");
	o.align = 0;
	o.capacity = SHMRING_MPMC_MAX_CAPACITY + 1;
	cr_assert_eq(shmring_mpmc_create(name, &o, SHMRING_ROLE_NONE, &r), -EINVAL, "capacity");
	o.capacity = 8;
	cr_assert_eq(shmring_mpmc_create(name, &o, 77, &r), -EINVAL, "role");
	cr_assert_eq(shmring_mpmc_open(name, SHMRING_ROLE_CONSUMER, &r), -ENOENT,
		     "nothing was created");
}

Test(mpmc, wrong_role_is_ebadf)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	char b[8];
	cr_assert_eq(shmring_mpmc_dequeue(g.r, b, sizeof(b), 0), -EBADF);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	cr_assert_eq(shmring_mpmc_enqueue(c, b, 1, 0), -EBADF);
	/* the role before the size: a message too long for a slot is still not a
	 * consumer's to send (this was -EMSGSIZE) */
	char big[64 * 16] = { 0 };
	cr_assert_eq(shmring_mpmc_enqueue(c, big, sizeof(big), 0), -EBADF);
	cr_assert_eq(shmring_mpmc_enqueue_bulk(c, big, 16, 2, 0), -EBADF);
	cr_assert_eq(shmring_mpmc_enqueue_burst(c, big, 16, 2, 0), -EBADF);
	cr_assert_eq(shmring_mpmc_enqueue(g.r, big, 16, 0), -EMSGSIZE, "the producer's answer");
	cr_assert_eq(shmring_mpmc_set_demote(c, 1), -EBADF, "demoting is for producers");
	cr_assert_eq(shmring_mpmc_set_demote(g.r, 1), 0);
	cr_assert_eq(shmring_mpmc_enqueue(g.r, b, 1, 0), 0);
	cr_assert_eq(shmring_mpmc_dequeue(c, b, sizeof(b), 0), 1);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

/* ---- single process semantics ---- */

Test(mpmc, fifo_full_and_empty)
{
	struct ring g;
	ring_create(&g, 8, 16, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	cr_assert_eq(recv_u32(c, &v, 0), -EAGAIN, "empty");
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_eq(send_u32(g.r, i, 0), 0);
	cr_assert_eq(send_u32(g.r, 99, 0), -EAGAIN, "full at capacity");
	cr_assert_eq(shmring_mpmc_count(g.r), 8);
	for (uint32_t i = 0; i < 8; i++) {
		cr_assert_eq(recv_u32(c, &v, 0), 0);
		cr_assert_eq(v, i, "FIFO");
	}
	cr_assert_eq(recv_u32(c, &v, 0), -EAGAIN);
	/* several laps */
	for (uint32_t i = 0; i < 100; i++) {
		cr_assert_eq(send_u32(g.r, i, 0), 0);
		cr_assert_eq(recv_u32(c, &v, 0), 0);
		cr_assert_eq(v, i);
	}
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, stats_count_messages_and_bytes)
{
	struct ring g;
	ring_create(&g, 8, 16, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	uint32_t v;
	for (uint32_t i = 0; i < 5; i++) {
		cr_assert_eq(send_u32(p, i, 0), 0);
		cr_assert_eq(recv_u32(c, &v, 0), 0);
	}
	shmring_mpmc_close(p); /* flushes */
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.msgs), 5);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.bytes), 20);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, variable_lengths_and_oversize)
{
	struct ring g;
	ring_create(&g, 8, 32, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint8_t buf[64], out[64];
	tu_fill(buf, sizeof(buf), 7);
	cr_assert_eq(shmring_mpmc_enqueue(g.r, buf, 33, 0), -EMSGSIZE, "longer than a slot");
	cr_assert_eq(shmring_mpmc_enqueue(g.r, buf, 0, 0), 0, "empty message");
	cr_assert_eq(shmring_mpmc_enqueue(g.r, buf, 32, 0), 0);
	cr_assert_eq(shmring_mpmc_dequeue(c, out, sizeof(out), 0), 0);
	cr_assert_eq(shmring_mpmc_dequeue(c, out, 31, 0), -EMSGSIZE, "buffer too small");
	cr_assert_eq(shmring_mpmc_count(c), 1, "the message stayed");
	cr_assert_eq(shmring_mpmc_dequeue(c, out, 32, 0), 32);
	cr_assert(memcmp(out, buf, 32) == 0);
	/* zero-copy finish with a length beyond the slot: refused, batch still held */
	void *b;
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, &b, 0), 1);
	uint32_t bad = 33, good = 5;
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, &bad), -EMSGSIZE);
	memcpy(b, "hello", 5);
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, &good), 1);
	struct shmring_mpmc_msg m;
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 1, 1, &m, 0), 1);
	cr_assert_eq(m.len, 5);
	cr_assert(memcmp(m.data, "hello", 5) == 0);
	cr_assert_eq(shmring_mpmc_dequeue_finish(c), 1);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, zero_copy_pairs_and_misuse)
{
	struct ring g;
	ring_create(&g, 8, 16, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[8];
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, NULL), -EINVAL, "nothing held");
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 0, 0, b, 0), -EINVAL);
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 2, 3, b, 0), -EINVAL, "min > n");
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 9, 1, b, 0), -EINVAL, "n > capacity");
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 3, 3, b, 0), 3);
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, b, 0), -EBUSY, "already holding");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq((uintptr_t)b[i] % 16, 0, "payload 16-byte aligned");
		memset(b[i], 'a' + i, 16);
	}
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 3, NULL), 3);
	struct shmring_mpmc_msg m[8];
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 8, 1, m, 0), 3, "burst takes what is there");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(m[i].len, 16, "NULL lens: whole slots");
		cr_assert_eq(((const char *)m[i].data)[0], 'a' + i);
	}
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 1, 1, m, 0), -EBUSY);
	cr_assert_eq(shmring_mpmc_dequeue_finish(c), 3);
	cr_assert_eq(shmring_mpmc_dequeue_finish(c), -EINVAL);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, bulk_is_all_or_nothing_burst_is_up_to_n)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint64_t src[8] = { 0, 1, 2, 3, 4, 5, 6, 7 }, dst[8];
	uint32_t lens[8];
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 5, 0), 5);
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 4, 0), -EAGAIN, "3 free < 4");
	cr_assert_eq(shmring_mpmc_count(g.r), 5, "nothing enqueued by the failed bulk");
	cr_assert_eq(shmring_mpmc_enqueue_burst(g.r, src + 5, 8, 4, 0), 3, "burst fills up");
	cr_assert_eq(shmring_mpmc_enqueue_burst(g.r, src, 8, 4, 0), -EAGAIN, "full");
	cr_assert_eq(shmring_mpmc_dequeue_bulk(c, dst, 8, 3, lens, 0), 3);
	cr_assert_eq(dst[0], 0);
	cr_assert_eq(dst[2], 2);
	cr_assert_eq(lens[1], 8);
	cr_assert_eq(shmring_mpmc_dequeue_bulk(c, dst, 8, 6, lens, 0), -EAGAIN, "5 < 6");
	cr_assert_eq(shmring_mpmc_count(c), 5, "nothing taken by the failed bulk");
	cr_assert_eq(shmring_mpmc_dequeue_burst(c, dst, 8, 8, lens, 0), 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(dst[i], (uint64_t)(3 + i), "order across a burst");
	cr_assert_eq(shmring_mpmc_dequeue_burst(c, dst, 8, 8, lens, 0), -EAGAIN);
	/* a bulk copy-out that needs a message longer than the buffer takes nothing */
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 2, 0), 2);
	cr_assert_eq(shmring_mpmc_dequeue_bulk(c, dst, 4, 2, lens, 0), -EMSGSIZE);
	cr_assert_eq(shmring_mpmc_count(c), 2);
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 65, 0), -EINVAL, "copy bulk <= 64");
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 9, 0), -EINVAL, "bulk > capacity");
	cr_assert_eq(shmring_mpmc_dequeue_bulk(c, dst, 8, 9, lens, 0), -EINVAL, "bulk > capacity");
	/* a burst asks for up to n: more than the ring holds is as many as there are */
	cr_assert_eq(shmring_mpmc_dequeue_burst(c, dst, 8, 2, lens, 0), 2);
	uint64_t many[100] = { 0 }, out[100];
	uint32_t lens100[100];
	cr_assert_eq(shmring_mpmc_enqueue_burst(g.r, many, 8, 100, 0), 8, "burst of 100 into 8");
	cr_assert_eq(shmring_mpmc_dequeue_burst(c, out, 8, 100, lens100, 0), 8, "burst of 100 out");
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, unfinished_claims_become_gaps)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[4];
	uint32_t lens[4] = { 1, 1, 1, 1 };
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 4, 4, b, 0), 4);
	memcpy(b[0], "x", 1);
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, lens), 1, "publish 1, give back 3");
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, b, 0), 1);
	memcpy(b[0], "y", 1);
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, lens), 1);
	char out[8];
	cr_assert_eq(shmring_mpmc_dequeue(c, out, sizeof(out), 0), 1);
	cr_assert_eq(out[0], 'x');
	cr_assert_eq(shmring_mpmc_dequeue(c, out, sizeof(out), 0), 1, "gaps stepped over");
	cr_assert_eq(out[0], 'y');
	cr_assert_eq(shmring_mpmc_dequeue(c, out, sizeof(out), 0), -EAGAIN);
	/* the gaps are free again: the whole ring is usable */
	uint64_t src[8] = { 0 };
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 8, 0), 8);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 0, "given back is not abandoned");
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

/* A producer asleep on a full ring, waiting for room a lap on from a cell another
 * producer holds: when that one gives the cell back (finish with fewer than it holds),
 * the room is there, and the sleeper is woken for it, not left to its sleep slice
 * (with no consumer about, nothing else would wake it). */
static int enqueue_blocking_child(void *a)
{
	const struct ring *g = a;
	struct shmring_mpmc *p;
	if (shmring_mpmc_open(g->name, SHMRING_ROLE_PRODUCER, &p))
		return 10;
	int rc = send_u32(p, 7, 30000);
	shmring_mpmc_close(p);
	return rc == 0 ? 0 : 11;
}

Test(mpmc, a_cell_given_back_wakes_a_producer_waiting_for_room, .timeout = 60)
{
	struct ring g;
	ring_create(&g, 2, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[1];
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, b, 0), 1); /* position 0 */
	cr_assert_eq(send_u32(g.r, 1, 0), -EBUSY, "one batch at a time per handle");
	struct shmring_mpmc *p2 = ring_open(&g, SHMRING_ROLE_PRODUCER);
	cr_assert_eq(send_u32(p2, 1, 0), 0); /* position 1: the ring is full */
	struct shmring_hdr *h = ring_hdr(&g);
	struct shmring_mpmc_ctrl *ctl = shmring_seg_ctrl(shmring_mpmc_seg(g.r));
	uint64_t wakes = stat_of(&h->stats.wake_syscalls);
	pid_t kid = tu_fork(enqueue_blocking_child, &g);
	while (!(atomic_load(&ctl->not_full.seq) & SHMRING_WAIT_PENDING))
		sched_yield(); /* it announced its sleep */
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 0, NULL), 0, "give position 0 back");
	cr_assert_gt(stat_of(&h->stats.wake_syscalls), wakes, "the sleeping producer was woken");
	cr_assert_eq(tu_wait(kid), 0);
	uint32_t v;
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 7, "the woken producer's message, in the cell given back");
	shmring_mpmc_close(p2);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

/* More gaps in a row than a claim's retry budget (SHMRING__MPMC_TRIES): a message behind
 * them is still found by one non-blocking call, not reported as "nothing ready". */
Test(mpmc, a_message_behind_a_ring_of_gaps_is_found_at_once)
{
	struct ring g;
	ring_create(&g, 4096, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[1];
	for (int i = 0; i < 3 * 4096; i++) { /* three laps of claims given back */
		cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, b, 0), 1);
		cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 0, NULL), 0);
	}
	cr_assert_eq(send_u32(g.r, 42, 0), 0);
	uint32_t v = 0;
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(recv_u32(c, &v, 0), -EAGAIN);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, batches_step_over_gaps)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[4];
	uint32_t one = 4;
	/* positions: 0 message, 1-2 gaps, 3 message */
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 3, 3, b, 0), 3);
	memcpy(b[0], "m0..", 4);
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, &one), 1);
	cr_assert_eq(shmring_mpmc_enqueue(g.r, "m3..", 4, 0), 0);
	struct shmring_mpmc_msg m[4];
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 3, 3, m, 0), -EAGAIN, "2 messages < 3");
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 2, 2, m, 0), 2, "bulk across the gaps");
	cr_assert(memcmp(m[0].data, "m0", 2) == 0);
	cr_assert(memcmp(m[1].data, "m3", 2) == 0);
	cr_assert_eq(shmring_mpmc_dequeue_finish(c), 2);
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 1, 1, m, 0), -EAGAIN);
	/* every cell, gaps included, is free again */
	uint64_t src[8] = { 0 };
	cr_assert_eq(shmring_mpmc_enqueue_bulk(g.r, src, 8, 8, 0), 8);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, close_gives_back_held_batches)
{
	struct ring g;
	ring_create(&g, 4, 8, SHMRING_ROLE_NONE);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *p2 = ring_open(&g, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	void *b[4];
	cr_assert_eq(shmring_mpmc_enqueue_start(p, 2, 2, b, 0), 2);
	shmring_mpmc_close(p); /* held, unpublished: become gaps */
	cr_assert_eq(send_u32(p2, 5, 0), 0);
	struct shmring_mpmc_msg m;
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 1, 1, &m, 0), 1);
	cr_assert_eq(*(const uint32_t *)m.data, 5);
	shmring_mpmc_close(c); /* held: released as consumed */
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(send_u32(p2, i, 0), 0, "all 4 cells free again");
	shmring_mpmc_close(p2);
	ring_destroy(&g);
}

/* ---- blocking ---- */

Test(mpmc, blocking_calls_time_out)
{
	struct ring g;
	ring_create(&g, 2, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	uint64_t t0 = shmring_now_ns();
	cr_assert_eq(recv_u32(c, &v, 30), -ETIMEDOUT);
	cr_assert_geq(shmring_now_ns() - t0, UINT64_C(30000000), "waited the timeout");
	cr_assert_eq(send_u32(g.r, 1, 0), 0);
	cr_assert_eq(send_u32(g.r, 2, 0), 0);
	cr_assert_eq(send_u32(g.r, 3, 30), -ETIMEDOUT, "full");
	void *b[2];
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, b, 30), -ETIMEDOUT);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.timeouts), 3);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

struct pingpong {
	const char *name;
	int n;
};

static int pong_child(void *a)
{
	const struct pingpong *pp = a;
	struct shmring_mpmc *in, *out;
	char req[100], rsp[100];
	snprintf(req, sizeof(req), "%s-req", pp->name);
	snprintf(rsp, sizeof(rsp), "%s-rsp", pp->name);
	if (shmring_mpmc_open(req, SHMRING_ROLE_CONSUMER, &in) || shmring_mpmc_open(rsp, SHMRING_ROLE_PRODUCER, &out))
		return 10;
	for (int i = 0; i < pp->n; i++) {
		uint32_t v;
		if (recv_u32(in, &v, 10000) != 0)
			return 11;
		if (send_u32(out, v + 1, 10000) != 0)
			return 12;
	}
	shmring_mpmc_close(in);
	shmring_mpmc_close(out);
	return 0;
}

/* Both sides block (spin then sleep) and wake each other across processes. */
Test(mpmc, blocking_ping_pong_across_processes, .timeout = 60)
{
	struct ring base;
	tu_name(base.name, sizeof(base.name), "mpmc");
	char req[100], rsp[100];
	snprintf(req, sizeof(req), "%s-req", base.name);
	snprintf(rsp, sizeof(rsp), "%s-rsp", base.name);
	struct shmring_mpmc_opts o = { .capacity = 4, .slot_size = 8 };
	struct shmring_mpmc *out, *in;
	cr_assert_eq(shmring_mpmc_create(req, &o, SHMRING_ROLE_PRODUCER, &out), 0);
	cr_assert_eq(shmring_mpmc_create(rsp, &o, SHMRING_ROLE_CONSUMER, &in), 0);
	struct pingpong pp = { .name = base.name, .n = (int)tu_scaled(2000, 100) };
	pid_t pid = tu_fork(pong_child, &pp);
	for (int i = 0; i < pp.n; i++) {
		uint32_t v;
		cr_assert_eq(send_u32(out, (uint32_t)i, 10000), 0);
		cr_assert_eq(recv_u32(in, &v, 10000), 0);
		cr_assert_eq(v, (uint32_t)i + 1);
	}
	cr_assert_eq(tu_wait(pid), 0);
	shmring_mpmc_close(out);
	shmring_mpmc_close(in);
	shmring_seg_unlink(req);
	shmring_seg_unlink(rsp);
}

/* ---- wakes cost nothing while nobody sleeps ---- */

/* -EAGAIN from a non-blocking call: poll a little, then give the CPU away (the peer may
 * share it), and go on. Non-blocking calls never sleep, so never raise a waitq's
 * "sleeper pending" flag. */
static void backoff(unsigned *fails)
{
	if (++*fails % 64 == 0)
		sched_yield();
	else
		shmring_cpu_relax();
}

struct stream_args {
	const struct ring *g;
	uint32_t n;
};

/* Receives one message (0) with a blocking call. */
static int consume_one_blocking_child(void *a)
{
	const struct stream_args *s = a;
	struct shmring_mpmc *c;
	uint32_t v;
	if (shmring_mpmc_open(s->g->name, SHMRING_ROLE_CONSUMER, &c))
		return 10;
	if (recv_u32(c, &v, 10000) || v != 0)
		return 11;
	shmring_mpmc_close(c);
	return 0;
}

/* Sends 0..n-1, as single copies and zero-copy bursts of up to 8, never waiting. */
static int nowait_producer_child(void *a)
{
	const struct stream_args *s = a;
	struct shmring_mpmc *p;
	if (shmring_mpmc_open(s->g->name, SHMRING_ROLE_PRODUCER, &p))
		return 10;
	unsigned fails = 0;
	for (uint32_t i = 0; i < s->n;) {
		int rc;
		if (i % 3 == 0) {
			rc = send_u32(p, i, 0);
			rc = rc == 0 ? 1 : rc;
		} else {
			void *b[8];
			unsigned want = s->n - i < 8 ? s->n - i : 8;
			rc = shmring_mpmc_enqueue_start(p, want, 1, b, 0);
			for (int k = 0; k < rc; k++) {
				uint32_t v = i + (uint32_t)k;
				memcpy(b[k], &v, sizeof(v));
			}
			if (rc > 0) {
				uint32_t lens[8] = { 4, 4, 4, 4, 4, 4, 4, 4 };
				rc = shmring_mpmc_enqueue_finish(p, (unsigned)rc, lens);
			}
		}
		if (rc == -EAGAIN) {
			backoff(&fails);
			continue;
		}
		if (rc <= 0)
			return 11;
		i += (uint32_t)rc;
	}
	shmring_mpmc_close(p);
	return 0;
}

/* Receives n messages, in order, as single copies and bursts of up to 8, never waiting. */
static int nowait_consumer_child(void *a)
{
	const struct stream_args *s = a;
	struct shmring_mpmc *c;
	if (shmring_mpmc_open(s->g->name, SHMRING_ROLE_CONSUMER, &c))
		return 10;
	unsigned fails = 0;
	for (uint32_t i = 0; i < s->n;) {
		uint32_t v[8], lens[8];
		int rc;
		if (i % 2 == 0) {
			rc = recv_u32(c, &v[0], 0);
			rc = rc == 0 ? 1 : rc;
		} else {
			rc = shmring_mpmc_dequeue_burst(c, v, sizeof(v[0]), 8, lens, 0);
		}
		if (rc == -EAGAIN) {
			backoff(&fails);
			continue;
		}
		if (rc <= 0)
			return 11;
		for (int k = 0; k < rc; k++)
			if (v[k] != i + (uint32_t)k)
				return 12; /* one producer, one consumer: FIFO */
		i += (uint32_t)rc;
	}
	shmring_mpmc_close(c);
	return 0;
}

/*
 * mpmc.h WAKEUPS: "finish calls shmring_wake() (a fence and a load; no syscall when
 * nobody sleeps)". A producer and a consumer process stream messages with non-blocking
 * calls only, so neither ever sleeps (a blocking call may legitimately sleep, or raise
 * the pending flag and find its condition, on a busy machine): every finish's wake must
 * have been free. Then a control: once a consumer does sleep, the next finish makes a
 * wake syscall, so the counter read as 0 above is live.
 */
Test(mpmc, wakes_make_no_syscall_while_nobody_sleeps, .timeout = 120)
{
	struct ring g;
	ring_create(&g, 64, 8, SHMRING_ROLE_NONE);
	struct stream_args s = { .g = &g, .n = (uint32_t)tu_scaled(100000, 10000) };
	uint64_t t0 = shmring_now_ns();
	pid_t c = tu_fork(nowait_consumer_child, &s);
	pid_t p = tu_fork(nowait_producer_child, &s);
	cr_assert_eq(tu_wait(p), 0, "producer");
	cr_assert_eq(tu_wait(c), 0, "consumer: every message, in order");
	double secs = (double)(shmring_now_ns() - t0) / 1e9;
	struct shmring_hdr *h = ring_hdr(&g);
	struct shmring_mpmc_ctrl *ctl = shmring_seg_ctrl(shmring_mpmc_seg(g.r));
	cr_assert_eq(stat_of(&h->stats.msgs), s.n);
	cr_assert_eq(stat_of(&h->stats.sleeps), 0, "non-blocking calls never sleep");
	cr_assert_eq(stat_of(&h->stats.wake_syscalls), 0, "no wake syscall while nobody sleeps");
	cr_assert_eq(atomic_load(&ctl->not_empty.seq) & SHMRING_WAIT_PENDING, 0);
	cr_assert_eq(atomic_load(&ctl->not_full.seq) & SHMRING_WAIT_PENDING, 0);
	cr_log_info("mpmc non-blocking stream: %u messages in %.2f s, 0 sleeps, 0 wake syscalls",
		    s.n, secs);

	/* control: a consumer asleep on the empty ring; one message wakes it by syscall */
	struct shmring_mpmc *prod = ring_open(&g, SHMRING_ROLE_PRODUCER);
	struct stream_args one = { .g = &g, .n = 1 };
	c = tu_fork(consume_one_blocking_child, &one);
	while (stat_of(&h->stats.sleeps) == 0)
		sched_yield(); /* it counts the sleep just before it */
	cr_assert_eq(send_u32(prod, 0, 0), 0);
	cr_assert_geq(stat_of(&h->stats.wake_syscalls), 1, "a sleeper is woken by a syscall");
	cr_assert_eq(tu_wait(c), 0);
	shmring_mpmc_close(prod);
	ring_destroy(&g);
}

/* ---- EOF ---- */

static int produce3_child(void *a)
{
	const struct ring *g = a;
	struct shmring_mpmc *p;
	if (shmring_mpmc_open(g->name, SHMRING_ROLE_PRODUCER, &p))
		return 10;
	for (uint32_t i = 0; i < 3; i++)
		if (send_u32(p, i, 1000))
			return 11;
	shmring_mpmc_close(p);
	return 0;
}

Test(mpmc, consumer_drains_then_sees_eof, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	cr_assert_eq(recv_u32(g.r, &v, 0), -EAGAIN, "no producer yet: empty, not EOF");
	pid_t pid = tu_fork(produce3_child, &g);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(recv_u32(g.r, &v, 10000), 0);
		cr_assert_eq(v, i);
	}
	cr_assert_eq(recv_u32(g.r, &v, 10000), -EPIPE, "every producer gone, ring drained");
	cr_assert_eq(tu_wait(pid), 0);
	ring_destroy(&g);
}

static int consume_then_die_child(void *a)
{
	const struct ring *g = a;
	struct shmring_mpmc *c;
	if (shmring_mpmc_open(g->name, SHMRING_ROLE_CONSUMER, &c))
		return 10;
	uint32_t v;
	if (recv_u32(c, &v, 10000))
		return 11;
	raise(SIGKILL);
	return 12;
}

Test(mpmc, producer_sees_epipe_when_consumers_are_gone, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 2, 8, SHMRING_ROLE_PRODUCER);
	pid_t pid = tu_fork(consume_then_die_child, &g);
	cr_assert_eq(send_u32(g.r, 0, 10000), 0);
	cr_assert_eq(tu_wait(pid), -SIGKILL);
	cr_assert_eq(send_u32(g.r, 1, 0), 0);
	cr_assert_eq(send_u32(g.r, 2, 0), 0);
	cr_assert_eq(send_u32(g.r, 3, 10000), -EPIPE, "full and the only consumer is dead");
	ring_destroy(&g);
}

/* ---- memfd ---- */

static int memfd_child(void *a)
{
	int fd = *(int *)a;
	struct shmring_mpmc *c;
	if (shmring_mpmc_open_fd(fd, SHMRING_ROLE_CONSUMER, &c))
		return 10;
	uint32_t v;
	if (recv_u32(c, &v, 10000) || v != 42)
		return 11;
	shmring_mpmc_close(c);
	return 0;
}

Test(mpmc, anonymous_ring_shared_by_fd, .timeout = 30)
{
	struct shmring_mpmc_opts o = { .capacity = 4, .slot_size = 8 };
	struct shmring_mpmc *p;
	cr_assert_eq(shmring_mpmc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	int fd = dup(shmring_mpmc_fd(p));
	cr_assert_geq(fd, 0);
	pid_t pid = tu_fork(memfd_child, &fd);
	cr_assert_eq(send_u32(p, 42, 1000), 0);
	cr_assert_eq(tu_wait(pid), 0);
	close(fd);
	shmring_mpmc_close(p);
}

/* ---- hostile shared memory ---- */

static _Atomic uint64_t *cell_word(struct shmring_mpmc *r, uint32_t idx)
{
	return &shmring__mpmc_cell(r, idx)->word;
}

Test(mpmc, impossible_cell_state_is_eproto_not_a_hang, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	/* the cell at the tail and head claims to be read by a consumer 2^40 positions on */
	atomic_store(cell_word(g.r, 0), shmring__mpmc_word(UINT64_C(1) << 40, SHMRING__MPMC_READING, 1));
	cr_assert_eq(send_u32(g.r, 1, 100), -EPROTO);
	cr_assert_eq(send_u32(g.r, 1, 0), -EPROTO, "sticky");
	uint32_t v;
	cr_assert_eq(recv_u32(c, &v, 100), -EPROTO, "consumer too");
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, impossible_length_is_eproto)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	cr_assert_eq(send_u32(g.r, 1, 0), 0);
	atomic_store(&shmring__mpmc_cell(g.r, 0)->len, 1u << 31);
	struct shmring_mpmc_msg m;
	cr_assert_eq(shmring_mpmc_dequeue_start(c, 1, 1, &m, 0), -EPROTO);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, wild_indices_and_owners_never_hang_past_the_timeout, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc_ctrl *ctl = shmring_seg_ctrl(shmring_mpmc_seg(g.r));
	/* a tail far ahead of every cell */
	atomic_store(&ctl->tail, UINT64_C(0x123456789));
	cr_assert_eq(send_u32(g.r, 1, 100), -EPROTO);
	/* a head whose cell is busy with an owner that cannot exist */
	atomic_store(cell_word(c, 0), shmring__mpmc_word(0, SHMRING__MPMC_WRITING, 63));
	uint32_t v;
	uint64_t t0 = shmring_now_ns();
	int rc = recv_u32(c, &v, 200);
	cr_assert(rc == -EPROTO || rc == -ETIMEDOUT, "got %d", rc);
	cr_assert_lt(shmring_now_ns() - t0, UINT64_C(5000000000), "bounded by the timeout");
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, cell_get_decodes_states)
{
	struct ring g;
	ring_create(&g, 4, 8, SHMRING_ROLE_PRODUCER);
	void *b;
	cr_assert_eq(shmring_mpmc_enqueue_start(g.r, 1, 1, &b, 0), 1);
	struct shmring_mpmc_cell_info ci;
	cr_assert_eq(shmring_mpmc_cell_get(g.r, 0, &ci), 0);
	cr_assert_eq(ci.phase, SHMRING__MPMC_WRITING);
	cr_assert_eq(ci.owner, (uint32_t)shmring_mpmc_part(g.r));
	cr_assert_eq(ci.pos, 0);
	cr_assert_eq(shmring_mpmc_cell_get(g.r, 1, &ci), 0);
	cr_assert_eq(ci.phase, SHMRING__MPMC_FREE);
	cr_assert_eq(ci.pos, 1);
	cr_assert_eq(shmring_mpmc_cell_get(g.r, 4, &ci), -EINVAL);
	cr_assert_eq(shmring_mpmc_enqueue_finish(g.r, 1, NULL), 1);
	cr_assert_eq(shmring_mpmc_cell_get(g.r, 0, &ci), 0);
	cr_assert_eq(ci.phase, SHMRING__MPMC_FULL);
	cr_assert_eq(ci.len, 8);
	ring_destroy(&g);
}

#include "mpmc_dead.c"
#include "mpmc_stress.c"
