/* SPDX-License-Identifier: MIT */
/*
 * Paired A/B of two builds of the pool's inline fast path (include/shmring/pool.h), in
 * one process pair. The vCPUs of a VM move between placements every second or so, and a
 * change of 5-15% drowns in that when two benchmark binaries run one after the other.
 * Here both builds are linked into one binary (this file compiled twice, with
 * -DPAIR_PART=a and -I<include dir A>, then -DPAIR_PART=b and -I<include dir B>, and once
 * more with -DPAIR_PART=main), and the client alternates between them every block of
 * round trips: adjacent blocks see the same placement, and the ratio of their p50s is the
 * effect. Both builds must share the on-memory format and the slow paths (src/), which
 * come from the one library linked in. run.sh builds and runs it.
 *
 * The round trip is the benchmark's: the client loans a 1080p buffer of pool A, stamps
 * its first and last 8 bytes, publishes; the server takes it, answers through pool B the
 * same way, then releases; the client takes the answer and releases it. The server uses
 * the build the frame's stamp names.
 */
#include "shmring/pool.h"

#include <errno.h>
#include <x86intrin.h>

#define PAIR_CAT2(a, b) a##b
#define PAIR_CAT(a, b) PAIR_CAT2(a, b)

#ifndef PAIR_PART
#error "compile with -DPAIR_PART=a, b or main"
#endif
#define PART_a 1
#define PART_b 2
#define PART_main 3
#define PART_ID PAIR_CAT(PART_, PAIR_PART)

int pair_put_a(struct shmring_pool *tx, uint64_t seq, size_t size);
int pair_take_a(struct shmring_pool *rx, uint64_t *seq, size_t size, struct shmring_pool_frame *f);
int pair_release_a(struct shmring_pool *rx, struct shmring_pool_frame *f);
int pair_put_b(struct shmring_pool *tx, uint64_t seq, size_t size);
int pair_take_b(struct shmring_pool *rx, uint64_t *seq, size_t size, struct shmring_pool_frame *f);
int pair_release_b(struct shmring_pool *rx, struct shmring_pool_frame *f);

#if PART_ID != PART_main
static inline void stamp(uint8_t *p, size_t len, uint64_t seq)
{
	atomic_store_explicit((_Atomic uint64_t *)(void *)p, seq, memory_order_relaxed);
	atomic_store_explicit((_Atomic uint64_t *)(void *)(p + ((len - 8) & ~(size_t)7)), seq,
			      memory_order_relaxed);
}

static inline uint64_t unstamp(const uint8_t *p, size_t len)
{
	uint64_t a = atomic_load_explicit((_Atomic uint64_t *)(void *)p, memory_order_relaxed);
	uint64_t b = atomic_load_explicit((_Atomic uint64_t *)(void *)(p + ((len - 8) & ~(size_t)7)),
					  memory_order_relaxed);
	return a == b ? a : UINT64_MAX;
}

/* spinning, as the benchmark's spsc and pool transports do while the peer keeps up; the
 * harness pins the two processes to two CPUs */
int PAIR_CAT(pair_put_, PAIR_PART)(struct shmring_pool *tx, uint64_t seq, size_t size)
{
	struct shmring_pool_frame f;
	int rc;
	while ((rc = shmring_pool_loan(tx, &f)) == -EAGAIN)
		_mm_pause();
	if (rc)
		return rc;
	stamp(f.data, size, seq);
	f.len = size;
	rc = shmring_pool_publish(tx, &f);
	return rc == 1 ? 0 : rc < 0 ? rc : -ENOTCONN;
}

int PAIR_CAT(pair_take_, PAIR_PART)(struct shmring_pool *rx, uint64_t *seq, size_t size,
				    struct shmring_pool_frame *f)
{
	int rc;
	while ((rc = shmring_pool_take(rx, f)) == -EAGAIN)
		_mm_pause();
	if (rc)
		return rc;
	*seq = unstamp(f->data, size);
	return 0;
}

int PAIR_CAT(pair_release_, PAIR_PART)(struct shmring_pool *rx, struct shmring_pool_frame *f)
{
	return shmring_pool_release(rx, f);
}

#else /* the harness */

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VBIT (UINT64_C(1) << 40) /* in the stamp: build B */
#define STOP (UINT64_C(1) << 41)

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int server(int fa, int fb, int ready, size_t size)
{
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *ra = NULL, *tb = NULL;
	int rc = shmring_pool_subscribe_fd(fa, &so, &ra);
	if (rc == 0)
		rc = shmring_pool_open_producer_fd(fb, &tb);
	if (rc) {
		fprintf(stderr, "server: attach: %s\n", shmring_strerror(rc));
		return 2;
	}
	char c = 1;
	if (write(ready, &c, 1) != 1)
		return 3;
	for (;;) {
		struct shmring_pool_frame f;
		uint64_t seq;
		if ((rc = pair_take_a(ra, &seq, size, &f)) != 0)
			break;
		if (seq & STOP) {
			pair_release_a(ra, &f);
			return 0;
		}
		rc = (seq & VBIT) ? pair_put_b(tb, seq, size) : pair_put_a(tb, seq, size);
		if (rc == 0)
			rc = (seq & VBIT) ? pair_release_b(ra, &f) : pair_release_a(ra, &f);
		if (rc)
			break;
	}
	fprintf(stderr, "server: %s\n", shmring_strerror(rc));
	return 4;
}

int main(int argc, char **argv)
{
	size_t size = argc > 1 ? strtoull(argv[1], NULL, 0) : 3110400;
	int blocks = argc > 2 ? atoi(argv[2]) : 400, per = argc > 3 ? atoi(argv[3]) : 2000;
	if (size < 16 || blocks < 4 || per < 10) {
		fprintf(stderr, "usage: %s [frame bytes >= 16] [blocks >= 4] [round trips per block >= 10]\n",
			argv[0]);
		return 2;
	}
	struct shmring_pool_opts o = {.buf_size = size, .nbufs = 4, .max_subs = 1, .max_held = 1};
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *a = NULL, *b = NULL;
	int rc = shmring_pool_create(NULL, &o, NULL, &a);
	if (rc == 0)
		rc = shmring_pool_create(NULL, &o, &so, &b);
	if (rc) {
		fprintf(stderr, "pool_create: %s\n", shmring_strerror(rc));
		return 1;
	}
	/* the child opens the pools again through duplicates: handles do not survive fork() */
	int fa = dup(shmring_pool_fd(a)), fb = dup(shmring_pool_fd(b)), sync[2];
	if (fa < 0 || fb < 0 || pipe(sync) != 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		bench_pin(1);
		close(sync[0]);
		_exit(server(fa, fb, sync[1], size));
	}
	bench_pin(0);
	bench_clock_init(0);
	close(sync[1]);
	char c;
	if (read(sync[0], &c, 1) != 1) {
		fprintf(stderr, "the server did not attach\n");
		return 1;
	}
	uint64_t *t = malloc(sizeof(*t) * (size_t)per);
	double *med = malloc(sizeof(*med) * (size_t)blocks);
	if (!t || !med)
		return 1;
	uint64_t seq = 0;
	struct shmring_pool_frame f;
	uint64_t got;
	for (int i = 0; i < 20000; i++, seq++) /* warm-up */
		if (pair_put_a(a, seq, size) || pair_take_a(b, &got, size, &f) || pair_release_a(b, &f))
			return 1;
	struct bench_result r;
	for (int k = 0; k < blocks; k++) {
		int use_b = k & 1;
		uint64_t t0 = bench_ticks();
		for (int i = 0; i < per; i++) {
			uint64_t sq = seq++ | (use_b ? VBIT : 0);
			rc = use_b ? pair_put_b(a, sq, size) : pair_put_a(a, sq, size);
			if (rc == 0)
				rc = use_b ? pair_take_b(b, &got, size, &f) : pair_take_a(b, &got, size, &f);
			if (rc == 0)
				rc = use_b ? pair_release_b(b, &f) : pair_release_a(b, &f);
			if (rc || got != sq) {
				fprintf(stderr, "round trip %llu: %s\n", (unsigned long long)sq,
					rc ? shmring_strerror(rc) : "wrong stamp");
				return 1;
			}
			uint64_t t1 = bench_ticks();
			t[i] = t1 - t0;
			t0 = t1;
		}
		memset(&r, 0, sizeof(r));
		bench_stats(&r, t, (uint64_t)per);
		med[k] = r.p50;
	}
	if (pair_put_a(a, STOP, size) != 0)
		return 1;
	int st;
	waitpid(pid, &st, 0);
	int np = blocks / 2;
	double *ratio = malloc(sizeof(*ratio) * (size_t)np), *ma = malloc(sizeof(*ma) * (size_t)np),
	       *mb = malloc(sizeof(*mb) * (size_t)np);
	if (!ratio || !ma || !mb)
		return 1;
	for (int j = 0; j < np; j++) {
		ma[j] = med[2 * j];
		mb[j] = med[2 * j + 1];
		ratio[j] = mb[j] / ma[j];
	}
	qsort(ratio, (size_t)np, sizeof(*ratio), cmp_dbl);
	qsort(ma, (size_t)np, sizeof(*ma), cmp_dbl);
	qsort(mb, (size_t)np, sizeof(*mb), cmp_dbl);
	printf("%zu B, %d pairs of %d round trips: B/A p50 ratio median %.3f (quartiles %.3f %.3f); "
	       "p50 median A %.0f ns, B %.0f ns\n",
	       size, np, per, ratio[np / 2], ratio[np / 4], ratio[3 * np / 4], ma[np / 2], mb[np / 2]);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
#endif
