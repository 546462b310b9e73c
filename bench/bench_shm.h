/* SPDX-License-Identifier: MIT */
/* Helpers shared by the shmring transports: segment statistics, prefaulting, the
 * bounded spin that ends in the library's blocking call, and the life cycle and loops
 * that every kind runs alike (shm_common.c), so a transport file holds only how its
 * kind creates, opens, sends and receives. */
#ifndef SHMRING_BENCH_SHM_H
#define SHMRING_BENCH_SHM_H

#include "bench.h"

#include <shmring/shmring.h>

#include <errno.h>

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

/* ---- the life cycle every kind shares (shm_common.c) ---- */

/*
 * A kind's handles behind void pointers. Every channel is anonymous (memfd): the parent
 * creates it and every other process opens its own handle from a duplicate of the
 * descriptor (handles do not survive fork), so nothing is left in /dev/shm if the
 * benchmark is killed.
 */
struct bench_shm_kind {
	const char *create_what, *open_what; /* what a failure is reported as */
	/* parent: the a->b channel it produces on (back 0), or b->a it consumes (back 1) */
	int (*create)(struct bench_ctx *c, int back, void **h);
	int (*open)(int fd, int producer, void **h);
	int (*fd)(const void *h);
	struct shmring_seg *(*seg)(const void *h);
	void (*close)(void *h);
	/* optional: NULL prefaults the segment's data writable */
	void (*prefault)(void *h, int producer);
	/* optional: statistics kept beyond the segment header */
	void (*stats)(struct bench_wstats *w, const void *h);
	/* optional: the kind's set_demote, applied to the producer handles under --demote */
	int (*set_demote)(void *h, int on);
};

/* fd, seg and close are spelt alike in every kind. */
#define BENCH_SHM_HANDLE_FNS(k)                                                           \
	static int k##_h_fd(const void *h) { return shmring_##k##_fd(h); }               \
	static struct shmring_seg *k##_h_seg(const void *h) { return shmring_##k##_seg(h); } \
	static void k##_h_close(void *h) { (void)shmring_##k##_close(h); }
#define BENCH_SHM_HANDLE_OPS(k) .fd = k##_h_fd, .seg = k##_h_seg, .close = k##_h_close
/* For the kinds with a set_demote: the .set_demote member. */
#define BENCH_SHM_DEMOTE_FN(k) \
	static int k##_h_demote(void *h, int on) { return shmring_##k##_set_demote(h, on); }
#define BENCH_SHM_DEMOTE_OP(k) .set_demote = k##_h_demote

/* A transport's state (c->priv); a kind needing more embeds it as its first member. */
struct bench_shm {
	const struct bench_shm_kind *kind;
	int fd_ab, fd_ba;         /* duplicates for the child; -1 when absent */
	void *tx, *rx;            /* this process's handles, NULL when absent */
	struct bench_wstats w0;   /* at the start of the timed part */
	int have_w0;
};

static inline struct bench_shm *bench_shm_st(struct bench_ctx *c)
{
	return c->priv;
}

/* setup: bench_shm_setup() allocates and creates in one go; a kind with a larger state
 * allocates it with bench_shm_alloc(), fills its part, then bench_shm_create(). */
void *bench_shm_alloc(struct bench_ctx *c, const struct bench_shm_kind *k, size_t size);
int bench_shm_create(struct bench_ctx *c, struct bench_shm *s);
int bench_shm_setup(struct bench_ctx *c, const struct bench_shm_kind *k);
int bench_shm_attach(struct bench_ctx *c);
void bench_shm_detach(struct bench_ctx *c);
/* per-message wake and sleep figures over n messages, from the w0 snapshot on */
void bench_shm_finish_n(struct bench_ctx *c, uint64_t n);
void bench_shm_finish(struct bench_ctx *c);
void bench_shm_teardown(struct bench_ctx *c);
/* the timed part starts now: snapshot the statistics */
void bench_shm_timed(struct bench_ctx *c);

/* ---- the loops every kind shares ---- */

/* One message stamped seq, the payload from src in copy mode; < 0 on error. */
typedef int bench_shm_put_fn(struct bench_ctx *c, const uint8_t *src, uint64_t seq);
/* One message; its stamp in *seq (the payload in c->rbuf in copy mode); < 0 on error. */
typedef int bench_shm_take_fn(struct bench_ctx *c, uint64_t *seq);
/* Messages stamped seq, seq + 1, ...: how many went (>= 1), or bench_fail()'s code. */
typedef int bench_shm_send_fn(struct bench_ctx *c, uint64_t seq);

/* Forced inline so that the kind's put / take become direct calls again and the timed
 * loops cost what a hand-written loop costs. */
#define BENCH_SHM_INLINE static inline __attribute__((always_inline))

BENCH_SHM_INLINE int bench_shm_send1(struct bench_ctx *c, bench_shm_put_fn *put, uint64_t seq)
{
	if (c->spec->mode == BENCH_COPY)
		bench_stamp(c->buf, c->spec->size, seq);
	int rc = put(c, c->buf, seq);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 1;
}

BENCH_SHM_INLINE int bench_shm_stop(struct bench_ctx *c, bench_shm_put_fn *put)
{
	bench_stamp(c->buf, c->spec->size, BENCH_STOP);
	int rc = put(c, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

BENCH_SHM_INLINE int bench_shm_rtt_client(struct bench_ctx *c, bench_shm_put_fn *put,
					  bench_shm_take_fn *take)
{
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	for (;;) {
		if (c->spec->mode == BENCH_COPY)
			bench_stamp(c->buf, size, L.seq);
		if ((rc = put(c, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		if ((rc = take(c, &seq)) < 0)
			return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
		if (seq != L.seq)
			return bench_fail(c, -EPROTO, "reply %llu, want %llu", (unsigned long long)seq,
					  (unsigned long long)L.seq);
		int was_timed = L.timed;
		if (bench_rtt_next(c, &L))
			break;
		if (!was_timed && L.timed)
			bench_shm_timed(c);
	}
	return bench_shm_stop(c, put);
}

/* Side 1 echoes each message (from c->rbuf) until BENCH_STOP. */
BENCH_SHM_INLINE int bench_shm_rtt(struct bench_ctx *c, bench_shm_put_fn *put,
				   bench_shm_take_fn *take)
{
	if (c->side == 0)
		return bench_shm_rtt_client(c, put, take);
	uint64_t seq;
	int rc;
	for (;;) {
		if ((rc = take(c, &seq)) < 0)
			return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
		if (seq == BENCH_STOP)
			return 0;
		if ((rc = put(c, c->rbuf, seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
	}
}

/* Streaming producer: send NULL sends one message at a time through put; put NULL
 * leaves the STOP to the caller. */
BENCH_SHM_INLINE int bench_shm_produce(struct bench_ctx *c, bench_shm_send_fn *send,
				       bench_shm_put_fn *put)
{
	struct bench_loop L;
	bench_stream_begin(c, &L);
	for (;;) {
		int rc = send ? send(c, L.seq) : bench_shm_send1(c, put, L.seq);
		if (rc < 0)
			return rc;
		int was_timed = L.timed;
		if (bench_stream_sent(c, &L, (unsigned)rc))
			break;
		if (!was_timed && L.timed && c->index == 0)
			bench_shm_timed(c);
	}
	bench_stream_end(c, &L);
	return put ? bench_shm_stop(c, put) : 0;
}

BENCH_SHM_INLINE int bench_shm_consume(struct bench_ctx *c, bench_shm_take_fn *take)
{
	struct bench_rx rx = {0};
	uint64_t seq;
	for (;;) {
		int rc = take(c, &seq);
		if (rc < 0)
			return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
		if (bench_rx(c, &rx, seq))
			return 0;
	}
}

#endif /* SHMRING_BENCH_SHM_H */
