/* SPDX-License-Identifier: MIT */
/*
 * shmring/wait.h: sleeping and waking across processes without a syscall on the fast
 * path.
 *
 * THE PROTOCOL
 * A wait queue (struct shmring_waitq, one cache line in the segment) holds a futex
 * word `seq` and a count `waiters` of announced sleepers. A condition ("the ring has a
 * record", "the ring has room") is published by a *waker* and awaited by a *sleeper*.
 *
 *   sleeper                                   waker
 *   S1 waiters += 1          (seq_cst RMW)    W1 publish the condition (release store)
 *   S2 v = seq               (acquire)        W2 fence(seq_cst)
 *   S3 fence(seq_cst)                         W3 if (waiters != 0) {        (relaxed)
 *   S4 if (condition) { waiters -= 1; done }  W4     seq += 1               (release)
 *   S5 futex_wait(&seq, v, deadline)          W5     futex_wake(&seq, all) }
 *   S6 waiters -= 1; go to the top
 *
 * Why no wakeup is lost: the two seq_cst fences S3 and W2 are totally ordered.
 *  - If W2 comes first, W1 happens before S4's read, so the sleeper sees the condition
 *    and does not sleep.
 *  - If S3 comes first, S1 precedes W3 in that order, so the waker sees waiters != 0
 *    and bumps seq (W4). Either the sleeper read v before the bump, and FUTEX_WAIT
 *    (which compares seq with v atomically with going to sleep) returns at once or is
 *    woken by W5; or it read the bumped value at S2 (acquire pairs with W4's release),
 *    which makes W1 visible, so S4 sees the condition.
 * A sleeper that wakes for any reason (spurious wakeup, EINTR, EAGAIN, timeout slice)
 * re-checks the condition, so extra wakes are harmless.
 *
 * Cost: the waker pays one fence and one load of a line that only sleepers write (it
 * stays shared in the waker's cache) while nobody sleeps: no syscall, no shared write.
 * A sleeper that dies while announced leaves `waiters` high, which costs later wakers a
 * needless FUTEX_WAKE each but never a lost wakeup; kinds reset it when they replace a
 * dead participant.
 *
 * Spin, then sleep: a waiter first polls its condition for a short, bounded spin
 * (SHMRING_SPIN_DEFAULT polls with a pause between), because a wakeup across CPUs costs
 * tens of microseconds. On a machine with fewer CPUs than runnable processes a longer
 * spin only steals the peer's time slice, so the spin is short.
 *
 * Dead peers: a sleeper never sleeps longer than SHMRING_PEER_CHECK_MS at once; after
 * each slice it calls the kind's peer check (one fcntl(F_OFD_GETLK) per peer), so a
 * SIGKILLed peer is noticed within SHMRING_PEER_CHECK_MS plus one spin.
 *
 * Semaphore backend (meson -Dwait_backend=sem): S5 becomes sem_clockwait() on the
 * process-shared semaphore in the queue, and W4-W5 become sem_post() until the
 * semaphore's value reaches the number of announced sleepers. Posts are counted, so
 * the argument above holds unchanged; a surplus post only causes a spurious wakeup.
 */
#ifndef SHMRING_WAIT_H
#define SHMRING_WAIT_H

#include "segment.h"

#define SHMRING_SPIN_DEFAULT 256
#define SHMRING_PEER_CHECK_MS 20

/* poll: >0 ready (returned as is), 0 not yet, <0 error (returned as is).
 * peer_check: called after each sleep slice; <0 aborts the wait with that value. */
struct shmring_wait_ctx {
	struct shmring_seg *seg;
	struct shmring_waitq *q;
	int (*poll)(void *arg);
	int (*peer_check)(void *arg); /* may be NULL */
	void *arg;
	int spin;                     /* polls before sleeping; <0: SHMRING_SPIN_DEFAULT */
};

/* Wait until poll() returns non-zero, timeout_ms elapses (-ETIMEDOUT; 0 = poll once
 * and return -EAGAIN if not ready; SHMRING_FOREVER = no limit) or peer_check() fails. Returns poll()'s value, or a
 * negative errno. Counts sleeps and timeouts in the segment's statistics. */
SHMRING_API int shmring_wait_for(const struct shmring_wait_ctx *c, int timeout_ms);

/* Slow half of shmring_wake(): bump, FUTEX_WAKE (or sem_post), count the syscall. */
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
	/* W3: relaxed is enough after the fence; pairs with S1's seq_cst increment */
	if (shmring_unlikely(shmring_load_relaxed(&q->waiters) != 0))
		shmring__wake_slow(seg, q);
}

/* Absolute CLOCK_MONOTONIC deadline helpers (ns). */
SHMRING_API uint64_t shmring_now_ns(void);

#endif /* SHMRING_WAIT_H */
