/* SPDX-License-Identifier: MIT */
/*
 * End of stream in a blocking read, at the one instant that used to lose a record: the
 * producer commits and then closes (or goes away) after the reader's last poll of a
 * sleep slice and before its peer check. The peer check then took the record itself
 * and nobody returned it (recv gave -EPIPE, or the next record).
 *
 * That instant cannot be reached by racing two processes (it is a few instructions
 * wide), so the producer runs from inside the reader: this program replaces
 * clock_gettime(), and the first clock read after the reader's first sleep (the read
 * that follows the post-sleep poll in shmring_wait_for()) runs the producer's part.
 * Every test asserts that the hook ran, so a change in where the clock is read cannot
 * make it pass without testing anything.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmring/shmring.h"
#include "testutil.h"

enum producer_part { CLOSE_AFTER_ONE, CLOSE_AFTER_TWO, DETACH_AFTER_ONE };

static struct shmring_spsc *g_prod;
static struct shmring_hdr *g_hdr; /* the reader's segment: its sleep count arms the hook */
static int g_armed, g_fired;
static enum producer_part g_part;

/* default visibility: the project builds with -fvisibility=hidden, and a hidden
 * definition would not interpose for the shared library */
__attribute__((visibility("default"))) int clock_gettime(clockid_t id, struct timespec *ts)
{
	int rc = (int)syscall(SYS_clock_gettime, id, ts);
	/* relaxed: the reader's own counter, read by the reader's thread */
	if (g_armed && id == CLOCK_MONOTONIC && shmring_load_relaxed(&g_hdr->stats.sleeps) > 0) {
		g_armed = 0;
		g_fired = 1;
		cr_assert_eq(shmring_spsc_send(g_prod, "hello", 5, 0), 0);
		if (g_part == CLOSE_AFTER_TWO)
			cr_assert_eq(shmring_spsc_send(g_prod, "world!", 6, 0), 0);
		if (g_part == DETACH_AFTER_ONE)
			shmring_spsc_detach(g_prod); /* gone without a close, as if it died */
		else
			cr_assert_eq(shmring_spsc_close(g_prod), 0);
	}
	return rc;
}

static void run(enum producer_part part)
{
	struct shmring_spsc *c;
	cr_assert_eq(shmring_spsc_create(NULL, NULL, SHMRING_ROLE_CONSUMER, &c), 0);
	cr_assert_eq(shmring_spsc_open_fd(shmring_spsc_fd(c), SHMRING_ROLE_PRODUCER, &g_prod), 0);
	shmring_spsc_set_spin(c, 0); /* straight to sleep: the hook needs one sleep */
	g_hdr = shmring_seg_hdr(shmring_spsc_seg(c));
	g_part = part;
	g_fired = 0;
	g_armed = 1;
	char buf[16];
	int n = shmring_spsc_recv(c, buf, sizeof(buf), 10000);
	g_armed = 0;
	cr_assert(g_fired, "the producer's part did not run inside the wait");
	cr_assert_eq(n, 5, "recv: %d (%s)", n, shmring_strerror(n));
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	if (part == CLOSE_AFTER_TWO) {
		n = shmring_spsc_recv(c, buf, sizeof(buf), 10000);
		cr_assert_eq(n, 6, "recv: %d (%s)", n, shmring_strerror(n));
		cr_assert_eq(memcmp(buf, "world!", 6), 0);
	}
	cr_assert_eq(shmring_spsc_recv(c, buf, sizeof(buf), 10000), -EPIPE);
	cr_assert_eq(shmring_spsc_peer_closed(c), part != DETACH_AFTER_ONE);
	shmring_spsc_close(c);
}

Test(eof, spsc_record_committed_just_before_close_is_delivered, .timeout = 60)
{
	run(CLOSE_AFTER_ONE);
}

Test(eof, spsc_records_committed_just_before_close_come_in_order, .timeout = 60)
{
	run(CLOSE_AFTER_TWO);
}

Test(eof, spsc_record_committed_just_before_the_producer_went_is_delivered, .timeout = 60)
{
	run(DETACH_AFTER_ONE);
}
