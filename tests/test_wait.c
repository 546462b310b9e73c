/* SPDX-License-Identifier: MIT */
/*
 * The wait queue's own accounting (wait.h), seen from one queue in a segment: what the
 * semaphore backend posts, and what a sleeper leaves behind. The cross-process
 * wake-ups are tested through every kind's blocking calls.
 */
#include <criterion/criterion.h>
#include <shmring/shmring.h>

#include "shmring_config.h"

#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "testutil.h"

struct queue {
	char name[64];
	struct shmring_seg *seg;
	struct shmring_waitq *q;
};

static void queue_make(struct queue *t)
{
	struct shmring_seg_params p = { .kind = SHMRING_KIND_SPSC, .ctrl_size = 4096,
					.data_size = 4096 };
	p.geo[0] = 4096;
	cr_assert_eq(shmring_seg_create(tu_name(t->name, sizeof(t->name), "wait"), &p, &t->seg), 0);
	t->q = shmring_seg_ctrl(t->seg);
	cr_assert_eq(shmring_waitq_init(t->seg, t->q), 0);
}

static void queue_drop(struct queue *t)
{
	shmring_seg_close(t->seg);
	shmring_seg_unlink(t->name);
}

static uint64_t wakes(const struct queue *t)
{
	return atomic_load(&shmring_seg_hdr(t->seg)->stats.wake_syscalls);
}

static int never(void *arg)
{
	(void)arg;
	return 0;
}

/* Either backend: a sleeper that times out leaves nothing owed and its flag says a
 * sleeper may be asleep, so the next wake is one call, and the one after none. */
Test(wait, a_timed_out_sleeper_costs_the_next_wake_one_call)
{
	struct queue t;
	queue_make(&t);
	struct shmring_wait_ctx c = { .seg = t.seg, .q = t.q, .poll = never, .spin = 0 };
	cr_assert_eq(shmring_wait_for(&c, 5), -ETIMEDOUT);
	cr_assert_eq(atomic_load(&t.q->sem_pending[0]), 0);
	cr_assert_eq(atomic_load(&t.q->sem_pending[1]), 0);
	uint64_t w0 = wakes(&t);
	shmring_wake(t.seg, t.q);
	shmring_wake(t.seg, t.q);
	cr_assert_leq(wakes(&t) - w0, 1);
	queue_drop(&t);
}

/* The rest is the semaphore backend's accounting. */
#if SHMRING_WAIT_SEM
static sem_t *sem_of(const struct queue *t, uint32_t gen)
{
	return (sem_t *)(void *)t->q->sem_bytes[gen & 1];
}

static int sem_value(const struct queue *t, uint32_t gen)
{
	int v = -1;
	cr_assert_eq(sem_getvalue(sem_of(t, gen), &v), 0);
	return v;
}

/* The queue as `sleepers` sleepers of generation 0 leave it after S1 and S2 (not yet
 * asleep), their count of posts owed set to `owed`; then one wake. Returns the posts
 * it made, all of them on generation 0's semaphore. */
static uint64_t wake_generation_0(struct queue *t, uint32_t sleepers, uint32_t owed)
{
	atomic_fetch_add(&t->q->waiters, sleepers);
	atomic_fetch_or(&t->q->seq, SHMRING_WAIT_PENDING);
	atomic_store(&t->q->sem_pending[0], owed);
	uint64_t w0 = wakes(t);
	shmring_wake(t->seg, t->q);
	uint64_t posts = wakes(t) - w0;
	cr_assert_eq(sem_value(t, 0), (int)posts, "posts made and posts in the semaphore");
	return posts;
}

/* Broadcast readers are not bounded in number: a wake posts once for every sleeper
 * announced (it posted 64 at most and dropped the rest, who slept out their slice). */
Test(wait, a_wake_posts_for_every_announced_sleeper_beyond_64)
{
	struct queue t;
	queue_make(&t);
	cr_assert_eq(wake_generation_0(&t, 100, 100), 100);
	cr_assert_eq(atomic_load(&t.q->sem_pending[0]), 0);
	queue_drop(&t);
}

/* A count no sleepers account for (corrupt, or written by a hostile peer) costs a wake
 * at most 64 posts more than the sleepers announced: 65,536 posts kept two idle
 * sleepers handing them on at full CPU for half a minute. */
Test(wait, a_corrupt_count_costs_a_wake_at_most_64_posts_more_than_the_sleepers)
{
	struct queue t;
	queue_make(&t);
	cr_assert_eq(wake_generation_0(&t, 2, 0xffffffffu), 66);
	queue_drop(&t);
}

/* Posts nobody is owed (their sleepers died, or found their condition after the post
 * was made) are gone once a sleeper has met them: they used to come back after every
 * sleep (the sleeper took one as its own and announced again), so every later sleep
 * of the queue cost one spurious wakeup and one more post each. */
Test(wait, posts_nobody_is_owed_do_not_outlive_a_sleep)
{
	struct queue t;
	queue_make(&t);
	for (int i = 0; i < 3; i++)
		sem_post(sem_of(&t, 0));
	struct shmring_wait_ctx c = { .seg = t.seg, .q = t.q, .poll = never, .spin = 0 };
	cr_assert_eq(shmring_wait_for(&c, 30), -ETIMEDOUT);
	cr_assert_eq(sem_value(&t, 0), 0, "posts left in the semaphore");
	cr_assert_eq(atomic_load(&t.q->sem_pending[0]), 0, "posts owed to nobody");
	/* and the next wake posts for nobody (no sleeper is announced) */
	uint64_t w0 = wakes(&t);
	shmring_wake(t.seg, t.q);
	cr_assert_eq(wakes(&t) - w0, 0);
	queue_drop(&t);
}

/* A sleeper that died asleep (counted in waiters), `posts` posts nobody is owed, and a
 * live sleeper that waits 50 ms: returns its sleeps. */
static uint64_t sleeps_among_posts_nobody_is_owed(struct queue *t, int posts)
{
	atomic_fetch_add(&t->q->waiters, 1); /* a sleeper that died asleep */
	for (int i = 0; i < posts; i++)
		sem_post(sem_of(t, 0));
	struct shmring_wait_ctx c = { .seg = t->seg, .q = t->q, .poll = never, .spin = 0 };
	uint64_t s0 = atomic_load(&shmring_seg_hdr(t->seg)->stats.sleeps);
	cr_assert_eq(shmring_wait_for(&c, 50), -ETIMEDOUT);
	return atomic_load(&shmring_seg_hdr(t->seg)->stats.sleeps) - s0;
}

/* A sleeper that died asleep stays counted in waiters (nothing takes it out), so a
 * live sleeper that meets a post nobody is owed thinks another sleeper may want it.
 * It hands it on, and when nobody takes it, it is gone: a first version took it back
 * and handed it on again and again, spinning at full speed for as long as it waited. */
Test(wait, a_post_nobody_is_owed_is_handed_on_then_dropped_not_forever)
{
	struct queue t;
	queue_make(&t);
	uint64_t sleeps = sleeps_among_posts_nobody_is_owed(&t, 1);
	/* the post (handed on, left 1 ms, dropped), then slices of 20 ms up to 50 ms */
	cr_assert_leq(sleeps, 8, "%llu sleeps in one 50 ms wait", (unsigned long long)sleeps);
	cr_assert_eq(sem_value(&t, 0), 0);
	queue_drop(&t);
}

/* Posts beyond the sleepers announced cannot all be owed (a buggy or hostile peer
 * posted them): a sleeper that meets one drops those beyond at once. Handed on one by
 * one (up to 1 ms each), 65,536 of them kept two idle sleepers at full CPU for half a
 * minute. */
Test(wait, posts_beyond_the_sleepers_announced_go_at_once)
{
	struct queue t;
	queue_make(&t);
	uint64_t sleeps = sleeps_among_posts_nobody_is_owed(&t, 10000);
	cr_assert_leq(sleeps, 8, "%llu sleeps in one 50 ms wait", (unsigned long long)sleeps);
	cr_assert_eq(sem_value(&t, 0), 0, "posts left");
	queue_drop(&t);
}

static int drained(void *arg)
{
	return sem_value(arg, 0) == 0;
}

/* ...and with `waiters` written by a peer too (so no post looks beyond the sleepers),
 * a sleeper hands on one post a wait and drops the rest: it handed each on for up to
 * 1 ms, a second of CPU for every thousand. */
Test(wait, with_waiters_corrupt_too_a_sleeper_hands_on_one_post_a_wait, .timeout = 60)
{
	struct queue t;
	queue_make(&t);
	atomic_store(&t.q->waiters, 0x7fffffffu);
	for (int i = 0; i < 20000; i++)
		sem_post(sem_of(&t, 0));
	uint64_t w0 = wakes(&t);
	struct shmring_wait_ctx c = { .seg = t.seg, .q = t.q, .poll = drained, .arg = &t, .spin = 0 };
	cr_assert_eq(shmring_wait_for(&c, 10000), 1, "the posts are still there");
	cr_assert_leq(wakes(&t) - w0, 1, "posts handed on: %llu",
		      (unsigned long long)(wakes(&t) - w0));
	queue_drop(&t);
}

/* Posts are made on the semaphore of the generation woken. A sleeper of the next
 * generation sleeps on the other one, so it cannot take a post made for a sleeper of
 * the last generation that has not reached its semaphore yet (on one semaphore it did,
 * and the owner slept out its slice: wakeups up to 20 ms late with many sleepers). */
Test(wait, a_sleeper_of_the_next_generation_leaves_the_last_ones_post)
{
	struct queue t;
	queue_make(&t);
	/* a sleeper of generation 0 after S1 and S2, not yet asleep (it is slow), woken */
	cr_assert_eq(wake_generation_0(&t, 1, 1), 1);
	struct shmring_wait_ctx c = { .seg = t.seg, .q = t.q, .poll = never, .spin = 0 };
	cr_assert_eq(shmring_wait_for(&c, 30), -ETIMEDOUT); /* a sleeper of generation 1 */
	cr_assert_eq(sem_value(&t, 0), 1, "the slow sleeper's post was taken");
	cr_assert_eq(sem_trywait(sem_of(&t, 0)), 0); /* and it takes it */
	queue_drop(&t);
}

/* A waker that clears the flag between a sleeper's S1 and S2, and counts its posts (none)
 * before S2: emulated from inside the sleeper's S4 poll by clearing the flag alone; the
 * sleeper's count stays. Then the condition. */
struct missed {
	struct shmring_waitq *q;
	int polls;
};

static int woken_before_counted(void *arg)
{
	struct missed *m = arg;
	if (m->polls++ == 1) { /* S4 of the first announcement (poll 0: the first look) */
		atomic_fetch_add(&m->q->seq, 1);
		return 0;
	}
	return m->polls > 2;
}

/* ...does not sleep: nobody will post for it (its count came after the waker's). It
 * takes its count back (no post owed to nobody is left) and goes round, and finds the
 * condition, without a sleep slice. */
Test(wait, a_sleeper_woken_before_it_counted_itself_does_not_sleep)
{
	struct queue t;
	queue_make(&t);
	struct missed m = { .q = t.q };
	struct shmring_wait_ctx c = { .seg = t.seg, .q = t.q, .poll = woken_before_counted,
				      .arg = &m, .spin = 0 };
	uint64_t s0 = atomic_load(&shmring_seg_hdr(t.seg)->stats.sleeps);
	cr_assert_eq(shmring_wait_for(&c, SHMRING_FOREVER), 1);
	cr_assert_eq(atomic_load(&shmring_seg_hdr(t.seg)->stats.sleeps) - s0, 0, "it slept");
	cr_assert_eq(atomic_load(&t.q->sem_pending[0]) + atomic_load(&t.q->sem_pending[1]), 0);
	cr_assert_eq(sem_value(&t, 0) + sem_value(&t, 1), 0);
	queue_drop(&t);
}
#else
Test(wait, the_semaphore_accounting)
{
	cr_skip_test("the futex backend has no posts: one FUTEX_WAKE wakes every sleeper");
}
#endif
