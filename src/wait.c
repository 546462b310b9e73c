/* SPDX-License-Identifier: MIT */
/*
 * The sleeping half of the wait protocol described at the top of shmring/wait.h:
 * bounded spin, announce, re-check, sleep in slices, check peers between slices.
 */
#include "internal.h"
#include "shmring/wait.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t shmring_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t shmring_wait_backend_flag(void)
{
	return SHMRING_WAIT_SEM ? SHMRING_SEG_F_SEMWAIT : 0;
}

static struct timespec abs_ts(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
	return ts;
}

#if SHMRING_WAIT_SEM
/* the semaphore and the count of posts owed for sleepers of wake generation gen's parity */
static sem_t *q_sem(struct shmring_waitq *q, uint32_t gen)
{
	return (sem_t *)(void *)q->sem_bytes[gen & 1];
}
_Static_assert(sizeof(sem_t) <= sizeof(((struct shmring_waitq *)0)->sem_bytes[0]),
	       "two sem_t fit the wait queue");
#endif

int shmring_waitq_init(struct shmring_seg *seg, struct shmring_waitq *q)
{
	(void)seg;
	shmring_store_relaxed(&q->seq, 0);
	shmring_store_relaxed(&q->waiters, 0);
	shmring_store_relaxed(&q->sem_pending[0], 0);
	shmring_store_relaxed(&q->sem_pending[1], 0);
#if SHMRING_WAIT_SEM
	if (sem_init(q_sem(q, 0), 1, 0) != 0 || sem_init(q_sem(q, 1), 1, 0) != 0)
		return -errno;
#endif
	return 0;
}

#if SHMRING_WAIT_SEM
/* Take back a post owed to a sleeper of gen's parity (S2) if no waker took it yet: 1
 * if one was. Any sleeper's of the same generation will do: the counts are
 * interchangeable. */
static int take_back(struct shmring_waitq *q, uint32_t gen)
{
	_Atomic uint32_t *pending = &q->sem_pending[gen & 1];
	uint32_t p = shmring_load_relaxed(pending);
	while (p && !atomic_compare_exchange_weak_explicit(pending, &p, p - 1,
							   memory_order_relaxed, memory_order_relaxed))
		;
	return p != 0;
}

/* Our count is gone to a waker, so a post is ours on gen's semaphore (made, or about
 * to be): absorb it, or the next sleep of gen's parity would end at once. */
static void absorb(struct shmring_waitq *q, uint32_t gen)
{
	while (sem_trywait(q_sem(q, gen)) != 0 && errno == EINTR)
		;
}

/* Withdraw the count a sleeper of gen announced at S2 (it will not sleep on it). */
static void withdraw(struct shmring_waitq *q, uint32_t gen)
{
	if (!take_back(q, gen))
		absorb(q, gen);
}
#endif

#if SHMRING_WAIT_SEM
/* Hand a post that was not ours on to its owner, which the post wakes, and give it
 * SHMRING__SEM_HANDON_NS to take it; not waiting on the semaphore meanwhile, so that
 * we cannot take it back ourselves. Nobody took it: it was owed to nobody (a sleeper
 * that died, whom waiters still counts): it goes. */
static void hand_on(struct shmring_waitq *q, uint32_t gen, struct shmring_stats *st)
{
	sem_t *sem = q_sem(q, gen);
	int before = 0, now = 0;
	/* the value before our post: the owner, woken by it, may take it at once */
	if (sem_getvalue(sem, &before) != 0)
		before = 0;
	sem_post(sem);
	atomic_fetch_add_explicit(&st->wake_syscalls, 1, memory_order_relaxed);
	uint64_t until = shmring_now_ns() + SHMRING__SEM_HANDON_NS;
	for (;;) {
		if (sem_getvalue(sem, &now) != 0 || now <= before)
			return; /* taken (some post was) */
		if (shmring_now_ns() >= until)
			break;
		sched_yield();
	}
	absorb(q, gen);
}
#endif

#if SHMRING_WAIT_SEM
/* A post we took that was not made for us (wait.h). More posts waiting than sleepers
 * announced cannot all be owed (posted by a hostile or buggy peer): those beyond go at
 * once, within a bound, rather than be handed on one by one for minutes. Else it is a
 * sleeper's of two generations back, most likely, which it is handed on to when other
 * sleepers are about, once per wait (*handed): a `waiters` a peer wrote does not make
 * us hand on post after post; one nobody is owed, or a second one, is gone. */
static void not_ours(struct shmring_waitq *q, uint32_t gen, struct shmring_stats *st,
		     int *handed)
{
	uint32_t w = shmring_load_relaxed(&q->waiters);
	int val = 0;
	if (sem_getvalue(q_sem(q, gen), &val) == 0 && val > 0 && (uint32_t)val > w) {
		uint32_t extra = (uint32_t)val - w;
		for (uint32_t i = 0; i < extra && i < SHMRING__SEM_POSTS_MAX; i++)
			if (sem_trywait(q_sem(q, gen)) != 0 && errno != EINTR)
				break;
		return;
	}
	if (w > 1 && !*handed) {
		*handed = 1;
		hand_on(q, gen, st);
	} /* else the post we took is gone */
}
#endif

/* Sleep until woken, the value of seq changes, or the absolute deadline passes. Counts
 * the sleep where one starts. */
static void sleep_on(struct shmring_waitq *q, uint32_t v, uint64_t deadline_ns,
		     struct shmring_stats *st, int *handed)
{
#if SHMRING_WAIT_SEM
	uint32_t gen = v >> 1;
	for (int part_no = 0;; part_no++) {
		/* seq moved on: our generation was woken. The first look is S3' (seq_cst,
		 * wait.h): the waker may have counted its posts before our S2, and nobody
		 * posts for us. A later one finds a post taken and dropped by hand_on()
		 * while we were off the CPU: looked at before each part of the sleep, such
		 * a loss costs a part, not the slice. Either way we do not sleep on: we go
		 * round as after a wakeup (the fence of the next turn makes that waker's
		 * condition visible to its S4) */
		if (atomic_load_explicit(&q->seq, memory_order_seq_cst) != v)
			break;
		if (part_no == 0)
			atomic_fetch_add_explicit(&st->sleeps, 1, memory_order_relaxed);
		uint64_t part = shmring_now_ns() + (uint64_t)SHMRING__SEM_PART_MS * 1000000u;
		struct timespec ts = abs_ts(part < deadline_ns ? part : deadline_ns);
		if (sem_clockwait(q_sem(q, gen), CLOCK_MONOTONIC, &ts) == 0) {
			/* a post: not ours if no waker cleared our flag (seq is still v;
			 * acquire: what the poster did before its post is visible, W4
			 * included) and our count is still pending (wait.h) */
			if (shmring_load_acquire(&q->seq) == v && take_back(q, gen))
				not_ours(q, gen, st, handed);
			/* else ours */
			return;
		}
		if (errno != ETIMEDOUT || part >= deadline_ns)
			break;
	}
	/* timed out, interrupted or woken without a post: if a waker took our count, its
	 * post is ours. Absorbed, or each slice would leave one more behind */
	withdraw(q, gen);
#else
	(void)handed;
	atomic_fetch_add_explicit(&st->sleeps, 1, memory_order_relaxed);
	struct timespec ts = abs_ts(deadline_ns);
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; shared (not
	 * _PRIVATE) because the word is in memory mapped by several processes. EINTR,
	 * EAGAIN (value changed) and ETIMEDOUT all send the caller back to its re-check. */
	syscall(SYS_futex, &q->seq, FUTEX_WAIT_BITSET, v, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
#endif
}

static struct shmring_stats *stats_of(const struct shmring_wait_ctx *c)
{
	return c->stats ? c->stats : &shmring_seg_hdr(c->seg)->stats;
}

void shmring__wake_slow(struct shmring_seg *seg, struct shmring_waitq *q)
{
	struct shmring_hdr *h = shmring_seg_hdr(seg);
	uint32_t s = shmring_load_relaxed(&q->seq);
	/* W4: one waker per sleep generation clears the flag and wakes; a failed CAS
	 * means another waker cleared it and wakes. seq_cst (acquire would do for the
	 * futex): the semaphore branch below must see the `sem_pending` count of every
	 * sleeper whose S3' read seq before this CAS (wait.h). */
	for (;;) {
		if (!(s & SHMRING_WAIT_PENDING))
			return;
		if (atomic_compare_exchange_weak_explicit(&q->seq, &s, s + 1, memory_order_seq_cst,
							  memory_order_relaxed))
			break;
	}
#if SHMRING_WAIT_SEM
	/* one post per announcement of the generation whose flag we cleared, on that
	 * generation's semaphore; each count taken by exactly one waker (the next waker of
	 * this parity is two generations on). seq_cst: the sleepers' S2 and S3' are, and
	 * a sleeper whose S3' read seq before our CAS has its count seen here (wait.h). A
	 * surplus post (its sleeper found the condition, timed out or died) is dropped by
	 * the next sleeper that gets it (see sleep_on()) */
	uint32_t gen = s >> 1;
	uint32_t n = atomic_exchange_explicit(&q->sem_pending[gen & 1], 0, memory_order_seq_cst);
	/* bound the work: a count is never above the sleepers announced (each adds to
	 * `waiters` first, and takes itself out last); a corrupt count made 65,536 posts,
	 * which sleepers handed on for half a minute. A corrupt `waiters` too leaves the
	 * SHMRING__SEM_POSTS_MAX bound, and sleepers drop what they cannot hand on */
	uint32_t w = shmring_load_relaxed(&q->waiters);
	uint32_t cap = w < SHMRING__SEM_POSTS_MAX - 64 ? w + 64 : SHMRING__SEM_POSTS_MAX;
	if (n > cap)
		n = cap;
	for (uint32_t i = 0; i < n; i++) {
		sem_post(q_sem(q, gen));
		atomic_fetch_add_explicit(&h->stats.wake_syscalls, 1, memory_order_relaxed);
	}
#else
	syscall(SYS_futex, &q->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	atomic_fetch_add_explicit(&h->stats.wake_syscalls, 1, memory_order_relaxed);
#endif
}

int shmring_wait_for(const struct shmring_wait_ctx *c, int timeout_ms)
{
	if (timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	int r = c->poll(c->arg);
	if (r != 0 || timeout_ms == 0)
		return r != 0 ? r : -EAGAIN;
	/* the deadline counts from the call, spinning and yielding included: a yield may
	 * give the CPU away for a scheduler tick or more */
	uint64_t now = shmring_now_ns();
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms * 1000000u;
	int spin = c->spin < 0 ? SHMRING_SPIN_DEFAULT : c->spin;
	for (int i = 0; i < spin; i++) {
		shmring_cpu_relax();
		if ((r = c->poll(c->arg)) != 0)
			return r;
	}
	for (int i = 0; i < c->yields && shmring_now_ns() < deadline; i++) {
		sched_yield(); /* the peer may be waiting for this CPU (wait.h) */
		if ((r = c->poll(c->arg)) != 0)
			return r;
	}
	struct shmring_stats *st = stats_of(c);
	struct shmring_waitq *q = c->q;
	now = shmring_now_ns();
	int handed = 0; /* semaphore backend: a post not ours handed on in this wait */
	for (;;) {
		atomic_fetch_add_explicit(&q->waiters, 1, memory_order_relaxed); /* for inspectors */
		/* S1: raise the flag; seq_cst so that W3 after a later W2 sees it (or a waker
		 * that cleared it after us). The value we sleep on includes the flag. */
		uint32_t v = atomic_fetch_or_explicit(&q->seq, SHMRING_WAIT_PENDING, memory_order_seq_cst) |
			     SHMRING_WAIT_PENDING;
#if SHMRING_WAIT_SEM
		/* S2: a post owed to us, counted for our generation (v >> 1) */
		atomic_fetch_add_explicit(&q->sem_pending[(v >> 1) & 1], 1, memory_order_seq_cst);
#endif
		shmring_fence_seq_cst(); /* S3: pairs with W2 in shmring_wake() */
		r = c->poll(c->arg);     /* S4 */
		if (r != 0) {
#if SHMRING_WAIT_SEM
			/* our post, if no waker took it yet: no surplus. Before we stop counting
			 * in `waiters`, so that posts beyond it are never owed (not_ours()) */
			withdraw(q, v >> 1);
#endif
			atomic_fetch_sub_explicit(&q->waiters, 1, memory_order_relaxed);
			return r;
		}
		/* S5 (the semaphore backend's S3' first; the deadline and peer checks
		 * below bound the loop when it does not sleep) */
		uint64_t slice = now + (uint64_t)SHMRING_PEER_CHECK_MS * 1000000u;
		sleep_on(q, v, slice < deadline ? slice : deadline, st, &handed);
		atomic_fetch_sub_explicit(&q->waiters, 1, memory_order_relaxed); /* S6 */
		if ((r = c->poll(c->arg)) != 0)
			return r;
		now = shmring_now_ns();
		uint64_t check_ns = (uint64_t)SHMRING_PEER_CHECK_MS * 1000000u;
		if (c->peer_check &&
		    (now < deadline || (c->last_check && now - *c->last_check >= check_ns))) {
			if (c->last_check)
				*c->last_check = now;
			if ((r = c->peer_check(c->arg)) < 0)
				return r;
			/* the check may have made progress possible (a dead peer's cells
			 * reclaimed): one more look before giving up */
			if (now >= deadline && (r = c->poll(c->arg)) != 0)
				return r;
		}
		if (now >= deadline) {
			atomic_fetch_add_explicit(&st->timeouts, 1, memory_order_relaxed);
			return -ETIMEDOUT;
		}
	}
}
