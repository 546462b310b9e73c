/* SPDX-License-Identifier: MIT */
/*
 * shmring/wait.h: sleeping and waking across processes without a syscall on the fast
 * path.
 *
 * THE PROTOCOL
 * A wait queue (struct shmring_waitq, one cache line in the segment) holds a futex
 * word `seq` and a count `waiters` of announced sleepers. A condition ("the ring has a
 * record", "the ring has room") is published by a *waker* and awaited by a *sleeper*.
 * Bit 0 of seq is the "sleeper pending" flag; the bits above count wake generations.
 *
 *   sleeper                                   waker
 *      waiters += 1          (relaxed)        W1 publish the condition (release store)
 *   S1 v = (seq |= 1)        (seq_cst RMW)    W2 fence(seq_cst)
 *                                             W3 s = seq                   (relaxed)
 *   S3 fence(seq_cst)                         W4 if (s & 1) and CAS(seq, s, s + 1)
 *   S4 if (condition) { waiters -= 1; done }        (acquire; clears the flag)
 *   S5 futex_wait(&seq, v, deadline)          W5     futex_wake(&seq, all)
 *   S6 waiters -= 1; go to the top
 *
 * Why no wakeup is lost: the two seq_cst fences S3 and W2 are totally ordered.
 *  - If W2 comes first, W1 happens before S4's read, so the sleeper sees the condition
 *    and does not sleep.
 *  - If S3 comes first, W3 reads S1's value or a later one (S1 is sequenced before S3,
 *    W3 after W2). If it reads the flag set, this waker clears it (W4) and wakes (W5),
 *    or its CAS fails because another waker cleared it first and wakes after. If it
 *    reads the flag clear, a waker already cleared S1's flag after S1, and that waker
 *    wakes after its CAS. In every case seq moved past v after S1, so FUTEX_WAIT
 *    (which compares seq with v atomically with going to sleep) either returns at once
 *    or sleeps until that FUTEX_WAKE.
 * A sleeper that wakes for any reason (spurious wakeup, EINTR, EAGAIN, timeout slice)
 * re-checks the condition, so extra wakes are harmless.
 *
 * Cost: while nobody sleeps the waker pays one fence and one load of a line that only
 * sleepers write: no syscall, no shared write. One sleep costs at most one FUTEX_WAKE
 * however many messages follow before the sleeper runs again: the first waker clears
 * the flag, the rest see it clear (the earlier protocol, a count tested by every
 * waker, made one syscall per message until the sleeper had run). A sleeper that finds
 * its condition at S4 leaves the flag set (clearing it without a wake could strand
 * another sleeper of the same generation): the next waker makes one needless wake. A
 * sleeper that dies leaves the flag set too: one needless wake, then it is clear.
 * `waiters` is only informative on this backend (shmdump shows it); the semaphore
 * backend reads it (below).
 *
 * Spin, then sleep: a waiter first polls its condition for a short, bounded spin
 * (SHMRING_SPIN_DEFAULT polls with a pause between), because a wakeup across CPUs costs
 * tens of microseconds. On a machine with fewer CPUs than runnable processes a longer
 * spin only steals the peer's time slice, so the spin is short. A kind may then poll a
 * few times after sched_yield() (ctx.yields) before it sleeps: where the peer is
 * runnable on this CPU that hands it the CPU at once, and the condition is often met
 * without a sleep, so without a wake syscall the peer would pay; where nobody else is
 * runnable a yield returns at once and costs a short syscall. Broadcast readers do
 * (bcast.h, WAITING).
 *
 * Dead peers: a sleeper never sleeps longer than SHMRING_PEER_CHECK_MS at once; after
 * each slice it calls the kind's peer check (one fcntl(F_OFD_GETLK) per peer), so a
 * SIGKILLed peer is noticed within SHMRING_PEER_CHECK_MS plus one spin.
 *
 * Semaphore backend (meson -Dwait_backend=sem): the flag works the same way (the
 * inline waker above is backend-blind, so code built against these headers works with
 * either library). The queue holds two process-shared semaphores and two counts of
 * posts owed, one of each per parity of the wake generation (seq >> 1). After S1 the
 * sleeper adds one to the count of its generation's parity, `sem_pending[g & 1]` (S2,
 * seq_cst). S5 is sem_clockwait() on that generation's semaphore. W4's CAS is
 * seq_cst; W5 takes the count of the generation whose flag it cleared to 0 (exchange)
 * and posts that many times on its semaphore (at most 64 more than `waiters`, and at
 * most SHMRING__SEM_POSTS_MAX: bounds on the work whatever shared memory says). Posts
 * are counted, so one made before the sleeper reaches sem_clockwait is not lost.
 *  - S3': after S4 the sleeper reads seq again (seq_cst). If it still holds v, no
 *    waker has cleared the flag yet, and the one that will (its CAS comes after that
 *    read in the order of all seq_cst operations, its exchange after its CAS) sees
 *    the count. If seq moved, a waker cleared the flag, perhaps counting its posts
 *    before S2: the sleeper does not sleep; it withdraws its count and goes round
 *    (the fence of the next turn makes that waker's condition visible to its S4).
 *  - Withdraw (the condition found at S4, a timeout or interruption, or S3'): take the
 *    count back if still pending; if a waker took it, absorb the post it made
 *    (sem_trywait).
 *  - The next waker of the same parity is two generations on: a sleeper woken by a
 *    post cannot have taken it from a sleeper of the generation just before its own
 *    (one semaphore for all, it could, and that sleeper slept out its 20 ms slice:
 *    with 16 sleepers on two busy CPUs, most wakeups came that late). What is left:
 *    a post met by a sleeper whose flag no waker cleared (seq still v, its count
 *    still pending) is not its own. It was made for a sleeper two generations back
 *    that has not reached the semaphore yet, which it hands the post on to when other
 *    sleepers are about (sem_post, then it yields, not waiting on the semaphore, until
 *    some post is taken or SHMRING__SEM_HANDON_NS passed; once per wait call, so that
 *    a `waiters` a peer wrote cannot make it hand on post after post), or it is a post
 *    nobody is owed (its sleeper died, or a withdrawal's sem_trywait came before the
 *    post), which is then gone: dropped at once when no other sleeper is about or it
 *    already handed one on, and after that time when nobody took it (`waiters` still
 *    counts sleepers that died). A sleeper takes itself out of `waiters` only after
 *    its withdrawal. So posts left
 *    over do not build up or go round; and posts beyond the sleepers announced
 *    (`waiters`), which cannot all be owed, go at once. The price of that bound: an
 *    owner still alive but kept off its CPU for longer loses its post. So a sleeper
 *    sleeps its slice in parts of SHMRING__SEM_PART_MS, and looks at seq before each:
 *    woken without a post, it stops sleeping (withdraws, as after a timeout). A lost
 *    post costs at most one part, at the price of a wakeup per part of an idle
 *    sleeper (its CPU: about 0.4% here, against 0.2% with whole slices).
 * What this backend still costs: a wake is one sem_post per sleeper, where the futex
 * wakes all with one call, so under CPU contention the last sleepers of a wake run
 * later, and a lost post costs a part. With 16 sleepers woken every millisecond for
 * 3 s on a 2-CPU machine beside three CPU hogs: 0.3-0.6% of wakeups came over 5 ms
 * late, the worst 8.6-11.8 ms; the futex backend in the same conditions 0.4%, the
 * worst 8.6 ms (that much is the hogs); one semaphore for all generations, as before,
 * 67%, the worst 27 ms. With 2 to 8 sleepers, or on idle CPUs, few. A wake still
 * costs a syscall per sleeper where the futex makes one, and an idle sleeper wakes
 * every part.
 * The futex backend is the one to use with many sleepers on one queue.
 * Trust: glibc aborts the process when the futex inside a sem_t it waits on was
 * corrupted, so a hostile peer can bring down a sleeper of this backend (and once, in
 * tests/stress/test_hostile.c run beside other tests, a reader blocked inside glibc
 * past its timeout); the futex backend (default) has no such state and is the one to
 * use with untrusted peers.
 */
#ifndef SHMRING_WAIT_H
#define SHMRING_WAIT_H

#include "segment.h"

#define SHMRING_SPIN_DEFAULT 256
#define SHMRING_WAIT_PENDING 1u /* bit 0 of waitq.seq: a sleeper may be asleep */
#define SHMRING_PEER_CHECK_MS 20
#define SHMRING__SEM_POSTS_MAX 65536u /* semaphore backend: posts one wake makes at most */
#define SHMRING__SEM_HANDON_NS 1000000u /* semaphore backend: a post handed on is left for
					  * its owner this long (see wait.h) */
#define SHMRING__SEM_PART_MS 5 /* semaphore backend: a sleep slice is slept in parts this
				* long, seq looked at before each (see wait.h) */

/* poll: >0 ready (returned as is), 0 not yet, <0 error (returned as is).
 * peer_check: called after each sleep slice; <0 aborts the wait with that value. */
struct shmring_wait_ctx {
	struct shmring_seg *seg;
	struct shmring_waitq *q;
	int (*poll)(void *arg);
	int (*peer_check)(void *arg); /* may be NULL */
	void *arg;
	int spin;                     /* polls before sleeping; <0: SHMRING_SPIN_DEFAULT */
	int yields;                   /* then polls after a sched_yield() each, before
	                               * sleeping (0: none; see "Spin, then sleep") */
	struct shmring_stats *stats;  /* sleeps/timeouts go here; NULL: the header's (a
	                               * read-only reader points this at a writable page) */
	uint64_t *last_check;         /* the handle's last peer check (CLOCK_MONOTONIC ns),
	                               * kept across calls: a call that times out runs the
	                               * check if it is SHMRING_PEER_CHECK_MS old, so a loop of
	                               * short timeouts still notices a dead peer. NULL: the
	                               * check runs after each sleep slice only */
};

/* Wait until poll() returns non-zero, timeout_ms elapses (-ETIMEDOUT; 0 = poll once
 * and return -EAGAIN if not ready; SHMRING_FOREVER = no limit) or peer_check() fails.
 * peer_check() runs after every sleep slice (SHMRING_PEER_CHECK_MS) that ends before
 * the deadline, and at the deadline when *last_check is that old. Returns poll()'s
 * value, or a negative errno. Counts sleeps and timeouts in the segment's statistics. */
SHMRING_API int shmring_wait_for(const struct shmring_wait_ctx *c, int timeout_ms);

/* Slow half of shmring_wake(): clear the flag, FUTEX_WAKE (or sem_post), count it. */
SHMRING_API void shmring__wake_slow(struct shmring_seg *seg, struct shmring_waitq *q);

/* Initialise a wait queue in a segment being created (the semaphore for that backend). */
SHMRING_API int shmring_waitq_init(struct shmring_seg *seg, struct shmring_waitq *q);

/* Which backend this library was built with: SHMRING_SEG_F_SEMWAIT or 0. */
SHMRING_API uint32_t shmring_wait_backend_flag(void);

/*
 * Wake the sleepers of q, if any, after the caller published its condition with a
 * release store (step W1). Concurrency: any thread of any process. Ordering: the fence
 * is W2 and pairs with the sleeper's S3. Returns nothing; never blocks.
 */
static inline void shmring_wake(struct shmring_seg *seg, struct shmring_waitq *q)
{
	shmring_fence_seq_cst(); /* W2: pairs with S3 in shmring_wait_for() */
	/* W3: relaxed is enough after the fence; reads S1's RMW or a later value */
	if (shmring_unlikely(shmring_load_relaxed(&q->seq) & SHMRING_WAIT_PENDING))
		shmring__wake_slow(seg, q);
}

/* Absolute CLOCK_MONOTONIC deadline helpers (ns). */
SHMRING_API uint64_t shmring_now_ns(void);

#endif /* SHMRING_WAIT_H */
