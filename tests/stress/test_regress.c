/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for library bugs found by the reliability work (fuzzing, the crash
 * campaign). Each is a minimal reproducer that failed before its fix.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmring/dump.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"
#include "testutil.h"

/* A PROT_NONE page right after the next mapping of `size` bytes (see fuzz_common.c). */
static void *guard_prepare(uint64_t size)
{
	uint8_t *r = mmap(NULL, size + 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return NULL;
	munmap(r, size);
	return r + size;
}

/*
 * shmring_spsc_abort() walks the pending batch again by re-reading record headers it
 * stored in shared memory (spsc.h, "recount what was counted at reserve time"). A peer
 * that rewrites one of them (here the second pending header becomes a padding record of
 * 4076 bytes) sends the walk to offset cap - 4, where an 8-byte load crosses the end of
 * the data region, which is the end of the mapping: SIGSEGV (or a read of whatever is
 * mapped next). The recount is also wrong (stats.msgs/bytes). Found by fuzz_spsc.
 * Fix: keep the reservations' totals in the handle (p_msgs/p_bytes as of the last
 * commit, or the pending count and bytes) and restore them in abort, instead of
 * re-reading shared memory.
 */
static int abort_child(void *arg)
{
	(void)arg;
	struct shmring_spsc_opts o = { .capacity = 4096 };
	void *guard = guard_prepare(3 * 4096); /* header, control page, 4 KiB of ring */
	struct shmring_spsc *r;
	if (shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	struct shmring_seg *s = shmring_spsc_seg(r);
	if (!guard || s->base + s->size != (uint8_t *)guard)
		return 77; /* the guard did not land after the ring: cannot show the fault */
	void *b1, *b2, *b3;
	if (shmring_spsc_reserve(r, 0, &b1) || shmring_spsc_reserve(r, 0, &b2) ||
	    shmring_spsc_reserve(r, 0, &b3))
		return 11;
	/* the hostile write: the second pending record header, at ring offset 8 */
	uint64_t pad = SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD | 4076u;
	memcpy((uint8_t *)shmring_seg_data(s) + 8, &pad, 8);
	shmring_spsc_abort(r); /* must not read outside the ring */
	void *b;
	if (shmring_spsc_reserve(r, 10, &b) != 0 || shmring_spsc_commit(r) != 1)
		return 12;
	struct shmring_hdr *h = shmring_seg_hdr(s);
	if (atomic_load(&h->stats.msgs) != 1 || atomic_load(&h->stats.bytes) != 10)
		return 13; /* the abort's recount went wrong */
	shmring_spsc_close(r);
	return 0;
}

Test(regress, spsc_abort_rereads_hostile_header)
{
	int st = tu_wait(tu_fork(abort_child, NULL));
	if (st == 77)
		cr_skip_test("could not place a guard page after the ring");
	cr_assert(st != -SIGSEGV && st != -SIGBUS, "abort() read outside the ring (signal %d)", -st);
	cr_assert_eq(st, 0, "abort() after a hostile header write: child status %d", st);
}

static void count_problem(void *arg, const struct shmring_dump_problem *p)
{
	(void)p;
	++*(int *)arg;
}

/*
 * mpmc.h: "The head can fall further behind over gaps, positions given back or
 * abandoned, when no consumer was there to step over them". A producer that claims
 * and gives back whole batches without any consumer moves the tail laps ahead of the
 * head. src/dump.c's MPMC check (mpmc_check: "hints may lag the claims by one") reports
 * tail - head > capacity + 1 as damage, so `shmdump check` calls a healthy ring
 * corrupt (and `shmdump clean` would keep it). Found by the crash campaign.
 * Fix: bound tail - head only when the cells between them are not all gaps, or check
 * each cell's position against the hints instead of the hints against each other.
 */
Test(regress, dump_mpmc_gaps_are_consistent)
{
	struct shmring_mpmc_opts o = { .capacity = 4, .slot_size = 16 };
	struct shmring_mpmc *p;
	cr_assert_eq(shmring_mpmc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	void *bufs[4];
	for (int lap = 0; lap < 3; lap++) {
		cr_assert_eq(shmring_mpmc_enqueue_start(p, 4, 4, bufs, 0), 4);
		cr_assert_eq(shmring_mpmc_enqueue_finish(p, 0, NULL), 0); /* nothing sent: gaps */
	}
	struct shmring_seg *s = shmring_mpmc_seg(p);
	int n = 0;
	int rc = shmring_dump_check_buf(s->base, s->size, count_problem, &n);
	cr_expect_eq(rc, 0, "a ring of gaps only is reported with %d problem(s)", rc);
	shmring_mpmc_close(p);
}
