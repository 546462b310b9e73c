/* SPDX-License-Identifier: MIT */
/* Helpers shared by the shmring transports: segment statistics, prefaulting, the
 * bounded spin that ends in the library's blocking call. */
#ifndef SHMRING_BENCH_SHM_H
#define SHMRING_BENCH_SHM_H

#include "bench.h"

#include <shmring/shmring.h>

#include <sys/mman.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Statistics snapshot of one segment (wake syscalls and sleeps, both sides). */
struct bench_wstats {
	uint64_t wakes, sleeps;
};

static inline void bench_wstats_add(struct bench_wstats *w, const struct shmring_seg *seg)
{
	const struct shmring_hdr *h = shmring_seg_hdr(seg);
	/* statistics, not synchronisation: relaxed */
	w->wakes += atomic_load_explicit(&h->stats.wake_syscalls, memory_order_relaxed);
	w->sleeps += atomic_load_explicit(&h->stats.sleeps, memory_order_relaxed);
}

/* Map every page of the data region now, so page faults stay out of the timed part
 * (an application's ring is warm after its first lap; ours would need many laps). */
static inline void bench_prefault_range(void *p, size_t n, int writable)
{
	uint8_t *d = p;
	if (madvise(d, n, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
		return;
	for (size_t off = 0; off < n; off += 4096)
		(void)atomic_load_explicit((_Atomic uint8_t *)(d + off), memory_order_relaxed);
}

static inline void bench_prefault(const struct shmring_seg *seg, int writable)
{
	bench_prefault_range(shmring_seg_data(seg), (size_t)seg->data_size, writable);
}

/* Copy a payload in or out of shared memory where the benchmark copies. */
static inline void bench_copy(void *dst, const void *src, size_t n)
{
	__builtin_memcpy(dst, src, n);
}

/*
 * The spinning transports: poll the non-blocking call while the spin budget lasts
 * (checking the clock every 64 polls), then fall back on the library's blocking call
 * with a timeout, repeated until the watchdog fires. `call` is an expression giving 0,
 * -EAGAIN or an error; `wait_call` is its blocking twin taking a timeout in ms.
 */
#define BENCH_SPIN_THEN_WAIT(c, rc, call, wait_call)                                      \
	do {                                                                              \
		(rc) = (call);                                                            \
		if ((rc) != -EAGAIN)                                                      \
			break;                                                            \
		uint64_t t0_ = bench_ticks();                                             \
		for (unsigned n_ = 1;; n_++) {                                            \
			bench_pause();                                                    \
			if (((rc) = (call)) != -EAGAIN)                                   \
				break;                                                    \
			if (n_ % 64 == 0 && bench_ticks() - t0_ > (c)->spin_ticks)        \
				break;                                                    \
		}                                                                         \
		while ((rc) == -EAGAIN || ((rc) == -ETIMEDOUT && !bench_abort))           \
			(rc) = (wait_call);                                               \
	} while (0)

/* The blocking transports: the library's blocking call, repeated on timeout. */
#define BENCH_WAIT(rc, wait_call)                                                         \
	do {                                                                              \
		(rc) = (wait_call);                                                       \
		while ((rc) == -ETIMEDOUT && !bench_abort)                                \
			(rc) = (wait_call);                                               \
	} while (0)

#define BENCH_WAIT_MS 100

#endif /* SHMRING_BENCH_SHM_H */
