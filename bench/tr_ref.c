/* SPDX-License-Identifier: MIT */
/*
 * The references every other figure is read against:
 *  - floor: one cache line bounced between the two processes by spinning (two
 *    cache-line transfers per round trip: what the hardware allows), each round trip
 *    on the next of 64 lines (BENCH_FLOOR_LINES);
 *  - futex: a raw FUTEX_WAIT / FUTEX_WAKE round trip on shared (not private) futex
 *    words, sleeping every time and waking every time (what a blocking channel costs
 *    at least);
 *  - memcpy: single-process copy bandwidth with both buffers far larger than the last
 *    level cache (what a copying channel can at best reach).
 */
#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- floor ---- */

/* Spin until *l differs from old; bounded: every 4096 polls look at the watchdog, and
 * after about a million yield the CPU (the peer is pinned elsewhere, so yielding only
 * matters to other processes). */
static inline int spin_change(_Atomic uint64_t *l, uint64_t old, uint64_t *out)
{
	uint64_t v;
	unsigned n = 0;
	/* pairs with the peer's release store of the line */
	while ((v = atomic_load_explicit(l, memory_order_acquire)) == old) {
		bench_pause();
		if (shmring_bench_unlikely(++n % 4096 == 0)) {
			if (bench_abort)
				return -EINTR;
			if (n >= (1u << 20))
				sched_yield();
		}
	}
	*out = v;
	return 0;
}

/* Round trip i's line (see BENCH_FLOOR_LINES). */
static _Atomic uint64_t *floor_line(struct bench_ctx *c, uint64_t i)
{
	unsigned k = (unsigned)(i % BENCH_FLOOR_LINES);
	return &c->sh->floor[k % BENCH_FLOOR_PAGES][k].w;
}

/* Round trip i: the client writes the ping 2i + 1 on its line, the server answers on
 * the same line with 2i + 2. */
static int floor_rtt(struct bench_ctx *c)
{
	if (c->side == 1) {
		for (uint64_t i = 0;; i++) {
			/* the line holds our answer of BENCH_FLOOR_LINES round trips ago, or 0 */
			uint64_t last = i >= BENCH_FLOOR_LINES ? 2 * (i - BENCH_FLOOR_LINES) + 2 : 0, v;
			_Atomic uint64_t *l = floor_line(c, i);
			if (spin_change(l, last, &v) < 0)
				return bench_fail(c, -EINTR, "floor: aborted");
			if (v == BENCH_STOP)
				return 0;
			if (v != 2 * i + 1)
				return bench_fail(c, -EPROTO, "floor: server got %llu, want %llu",
						  (unsigned long long)v, (unsigned long long)(2 * i + 1));
			/* pairs with the client's acquire in spin_change() */
			atomic_store_explicit(l, v + 1, memory_order_release);
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	uint64_t v = 0;
	for (;;) {
		uint64_t ping = 2 * L.seq + 1;
		_Atomic uint64_t *l = floor_line(c, L.seq);
		/* pairs with the server's acquire in spin_change() */
		atomic_store_explicit(l, ping, memory_order_release);
		if (spin_change(l, ping, &v) < 0)
			return bench_fail(c, -EINTR, "floor: aborted");
		if (v != ping + 1)
			return bench_fail(c, -EPROTO, "floor: got %llu, want %llu",
					  (unsigned long long)v, (unsigned long long)ping + 1);
		if (bench_rtt_next(c, &L))
			break;
	}
	/* on the line the server polls next (L.seq counts the round trips done); pairs with
	 * its acquire in spin_change() */
	atomic_store_explicit(floor_line(c, L.seq), BENCH_STOP, memory_order_release);
	return 0;
}

/*
 * The streaming floor: one message per 64-byte line of a 1 MiB ring, published 64 lines
 * at a time by a release store of the producer's count (its own line), consumed the
 * same way (the consumer's count on its own line, for flow control). Each data line
 * crosses from one core's cache to the other's once per lap and nothing else is on the
 * data path: the most any ring can stream here.
 */
#define FLOOR_LINES 16384u
#define FLOOR_BATCH 64u

struct floor_line {
	_Atomic uint64_t stamp; /* the benchmark's stamp */
	uint64_t pad[7];
};

struct floor_ring {
	_Alignas(BENCH_LINE) _Atomic uint64_t head; /* consumer: lines consumed */
	_Alignas(BENCH_LINE) _Atomic uint64_t tail; /* producer: lines published */
	_Alignas(BENCH_LINE) struct floor_line line[FLOOR_LINES];
};

static int floor_setup(struct bench_ctx *c)
{
	if (c->spec->test != BENCH_STREAM)
		return 0;
	void *m = mmap(NULL, sizeof(struct floor_ring), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (m == MAP_FAILED)
		return bench_fail(c, -errno, "mmap: %s", strerror(errno));
	c->priv = m;
	return 0;
}

static void floor_teardown(struct bench_ctx *c)
{
	if (c->priv)
		munmap(c->priv, sizeof(struct floor_ring));
	c->priv = NULL;
}

static inline int floor_wait(int *n)
{
	bench_pause();
	if (shmring_bench_unlikely(++*n % 4096 == 0)) {
		if (bench_abort)
			return -EINTR;
		if (*n >= (1 << 20))
			sched_yield();
	}
	return 0;
}

static int floor_stream(struct bench_ctx *c)
{
	struct floor_ring *r = c->priv;
	if (c->side == 1) {
		struct bench_rx rx = {0};
		uint64_t i = 0, tail = 0;
		for (;;) {
			int n = 0;
			/* pairs with the producer's release store of tail */
			while ((tail = atomic_load_explicit(&r->tail, memory_order_acquire)) == i)
				if (floor_wait(&n) < 0)
					return bench_fail(c, -EINTR, "floor: aborted");
			for (; i < tail; i++) {
				uint64_t stamp = atomic_load_explicit(&r->line[i % FLOOR_LINES].stamp,
								      memory_order_relaxed);
				if (bench_rx(c, &rx, stamp))
					return 0;
			}
			/* pairs with the producer's acquire load of head */
			atomic_store_explicit(&r->head, i, memory_order_release);
		}
	}
	struct bench_loop L;
	uint64_t head = 0;
	bench_stream_begin(c, &L);
	for (int stop = 0;;) {
		uint64_t i = L.seq;
		if (i + FLOOR_BATCH - head > FLOOR_LINES) {
			int n = 0;
			/* pairs with the consumer's release store of head */
			while (i + FLOOR_BATCH -
				       (head = atomic_load_explicit(&r->head, memory_order_acquire)) >
			       FLOOR_LINES)
				if (floor_wait(&n) < 0)
					return bench_fail(c, -EINTR, "floor: aborted");
		}
		unsigned k = stop ? 1 : FLOOR_BATCH;
		for (unsigned j = 0; j < k; j++)
			atomic_store_explicit(&r->line[(i + j) % FLOOR_LINES].stamp,
					      stop ? BENCH_STOP : i + j, memory_order_relaxed);
		/* pairs with the consumer's acquire load of tail */
		atomic_store_explicit(&r->tail, i + k, memory_order_release);
		if (stop)
			return 0;
		if (bench_stream_sent(c, &L, k)) {
			bench_stream_end(c, &L);
			stop = 1;
		}
	}
}

const struct bench_transport bench_tr_floor = {
	.name = "floor",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC,
	.own_size = 64,
	.setup = floor_setup,
	.rtt = floor_rtt,
	.stream = floor_stream,
	.teardown = floor_teardown,
};

/* ---- futex ---- */

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)(void *)w, op, val, NULL, NULL, 0);
}

/* Sleep until *w differs from old. FUTEX_WAIT compares and sleeps atomically, so a
 * store + wake between the load and the syscall is never lost. */
static inline int futex_until_change(_Atomic uint32_t *w, uint32_t old, uint32_t *out)
{
	uint32_t v;
	/* pairs with the peer's release store before its FUTEX_WAKE */
	while ((v = atomic_load_explicit(w, memory_order_acquire)) == old) {
		if (futex(w, FUTEX_WAIT, old) < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (bench_abort)
			return -EINTR;
	}
	*out = v;
	return 0;
}

static int futex_rtt(struct bench_ctx *c)
{
	_Atomic uint32_t *a = &c->sh->fx_a, *b = &c->sh->fx_b;
	if (c->side == 1) {
		uint32_t last = 0, v = 0;
		for (;;) {
			int rc = futex_until_change(a, last, &v);
			if (rc < 0)
				return bench_fail(c, rc, "futex: wait: %s", strerror(-rc));
			if (v == UINT32_MAX)
				return 0;
			/* pairs with the client's acquire in futex_until_change() */
			atomic_store_explicit(b, v, memory_order_release);
			futex(b, FUTEX_WAKE, 1);
			last = v;
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	uint32_t v = 0, prev = 0;
	for (;;) {
		uint32_t ping = (uint32_t)(L.seq + 1);
		if (ping == UINT32_MAX)
			return bench_fail(c, -EOVERFLOW, "futex: too many iterations");
		/* pairs with the server's acquire in futex_until_change() */
		atomic_store_explicit(a, ping, memory_order_release);
		futex(a, FUTEX_WAKE, 1);
		int rc = futex_until_change(b, prev, &v);
		if (rc < 0)
			return bench_fail(c, rc, "futex: wait: %s", strerror(-rc));
		if (v != ping)
			return bench_fail(c, -EPROTO, "futex: got %u, want %u", v, ping);
		prev = v;
		if (bench_rtt_next(c, &L))
			break;
	}
	atomic_store_explicit(a, UINT32_MAX, memory_order_release);
	futex(a, FUTEX_WAKE, 1);
	return 0;
}

const struct bench_transport bench_tr_futex = {
	.name = "futex",
	.caps = BENCH_CAP_RTT | BENCH_CAP_SAME | BENCH_CAP_ZC,
	.own_size = 4,
	.rtt = futex_rtt,
};

/* ---- cold memcpy ---- */

/* Runs in one process (bench_run() calls bench_memcpy() for it); the entry only names it. */
const struct bench_transport bench_tr_memcpy = {
	.name = "memcpy",
	.caps = BENCH_CAP_COPY | BENCH_CAP_SIZES,
};

int bench_memcpy(const struct bench_spec *s, const struct bench_cfg *cfg, struct bench_result *r)
{
	size_t region = cfg->memcpy_region, size = s->size;
	size_t step = (size + 4095) & ~(size_t)4095;
	if (size == 0 || step > region) {
		snprintf(r->err, sizeof r->err, "memcpy: size %zu > region %zu", size, region);
		return -1;
	}
	uint8_t *src = NULL, *dst = NULL;
	if (posix_memalign((void **)&src, 4096, region) || posix_memalign((void **)&dst, 4096, region)) {
		free(src);
		snprintf(r->err, sizeof r->err, "memcpy: no memory");
		return -1;
	}
	memset(src, 0x5a, region);
	memset(dst, 0, region);
	bench_pin(bench_cpu_of(cfg, 0, 0, 0));
	uint64_t cap = cfg->max_iters, n = 0;
	uint64_t *samples = malloc(cap * sizeof *samples);
	if (!samples) {
		free(src);
		free(dst);
		snprintf(r->err, sizeof r->err, "memcpy: no memory");
		return -1;
	}
	/* Walk both buffers in order, so every chunk was evicted since its last copy:
	 * the region is several times the last-level cache. The first pass is warm-up
	 * (it also takes the page faults). */
	size_t off = 0;
	for (off = 0; off + size <= region; off += step)
		memcpy(dst + off, src + off, size);
	off = 0;
	uint64_t budget = bench_ns_ticks(cfg->budget_s * 1e9);
	uint64_t t0 = bench_ticks(), t = t0, end = t0 + budget;
	while (n < cap && (t < end || n < cfg->min_iters)) {
		if (off + size > region)
			off = 0;
		memcpy(dst + off, src + off, size);
		off += step;
		uint64_t t1 = bench_ticks();
		samples[n++] = t1 - t;
		t = t1;
	}
	double secs = bench_ticks_ns(t - t0) / 1e9;
	/* keep the copies observable */
	volatile uint8_t sink = dst[size - 1];
	(void)sink;
	bench_stats(r, samples, n);
	r->msgs_per_s = (double)n / secs;
	r->bytes_per_s = r->msgs_per_s * (double)size;
	r->ok = 1;
	free(samples);
	free(src);
	free(dst);
	return 0;
}
