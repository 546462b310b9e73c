/* SPDX-License-Identifier: MIT */
/*
 * spsc streaming for the paired harness (pair.h): the producer streams 64-byte records
 * in place (reserve, stamp the first and last 8 bytes, commit every `batch`), the
 * consumer peeks up to `batch`, checks the stamps, releases once; as shmring-bench's
 * `stream/spsc/64/zero-copy/cross/bN`, over one default (1 MiB) ring. Blocks of records
 * alternate between build A and build B on both sides (the block is the record's number
 * divided by the block length), the consumer timing each block; adjacent blocks see the
 * same placement, so the ratio of their rates is the effect.
 *
 * A stream is not a round trip, so this kind has its own driver (PAIR_PART_MAIN) instead
 * of pair_main.c; run.sh links it that way.
 */
#include "pair.h"

#include "shmring/spsc.h"

#include <errno.h>
#include <string.h>

#define PAIR_CAT2(a, b) a##b
#define PAIR_CAT(a, b) PAIR_CAT2(a, b)

#if !defined(PAIR_PART_MAIN)

/* Reserve, stamp and commit k records numbered from seq. */
int PAIR_CAT(pair_sendn_, PAIR_PART)(void *tx, uint64_t seq, int k, size_t size)
{
	for (int j = 0; j < k; j++) {
		void *buf;
		uint64_t n = 0;
		int rc;
		while ((rc = shmring_spsc_reserve(tx, size, &buf)) == -EAGAIN) {
			shmring_spsc_commit(tx); /* the consumer needs what is pending to make room */
			if ((rc = pair_spin(&n)) != 0)
				return rc;
		}
		if (rc)
			return rc;
		pair_stamp(buf, size, seq + (uint64_t)j);
	}
	int rc = shmring_spsc_commit(tx);
	return rc < 0 ? rc : 0;
}

/* Peek up to k records (at least one), expecting stamps *seq onwards; release them.
 * Returns how many, or a negative errno (-EPROTO: a wrong or torn stamp). */
int PAIR_CAT(pair_recvn_, PAIR_PART)(void *rx, uint64_t *seq, int k, size_t size)
{
	struct shmring_rec r = {0};
	uint64_t n = 0;
	int got = 0;
	while (got < k) {
		int rc = shmring_spsc_peek(rx, &r);
		if (rc == -EAGAIN) {
			if (got)
				break;
			if ((rc = pair_spin(&n)) != 0)
				return rc;
			continue;
		}
		if (rc)
			return rc;
		if (r.len != size || pair_unstamp(r.data, size) != *seq)
			return -EPROTO;
		++*seq;
		got++;
	}
	int rc = shmring_spsc_release(rx);
	return rc < 0 ? rc : got;
}

#else /* the driver, compiled once */

#include "bench.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int pair_sendn_a(void *tx, uint64_t seq, int k, size_t size);
int pair_sendn_b(void *tx, uint64_t seq, int k, size_t size);
int pair_recvn_a(void *rx, uint64_t *seq, int k, size_t size);
int pair_recvn_b(void *rx, uint64_t *seq, int k, size_t size);

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int min_int(uint64_t a, int b)
{
	return a < (uint64_t)b ? (int)a : b;
}

/* The consumer: t[b] is when block b's first record was due, t[blocks] the end. */
static int consumer(int fd, int blocks, int batch, uint64_t per, size_t size, uint64_t *t)
{
	struct shmring_spsc *rx;
	int rc = shmring_spsc_open_fd(fd, SHMRING_ROLE_CONSUMER, &rx);
	if (rc) {
		fprintf(stderr, "consumer: open: %s\n", shmring_strerror(rc));
		return 2;
	}
	uint64_t seq = 0, end = per * (uint64_t)blocks;
	while (seq < end) {
		uint64_t b = seq / per;
		if (seq % per == 0)
			t[b] = bench_ticks();
		int k = min_int((b + 1) * per - seq, batch);
		rc = (b & 1) ? pair_recvn_b(rx, &seq, k, size) : pair_recvn_a(rx, &seq, k, size);
		if (rc < 0) {
			fprintf(stderr, "consumer: record %llu: %s\n", (unsigned long long)seq,
				shmring_strerror(rc));
			return 3;
		}
	}
	t[blocks] = bench_ticks();
	return 0;
}

int main(int argc, char **argv)
{
	int blocks = argc > 1 ? atoi(argv[1]) : 100, batch = argc > 2 ? atoi(argv[2]) : 256;
	uint64_t per = argc > 3 ? strtoull(argv[3], NULL, 0) : 262144;
	size_t size = argc > 4 ? strtoull(argv[4], NULL, 0) : 64;
	if (blocks < 6 || batch < 1 || batch > 4096 || per < (uint64_t)batch || size < 16 ||
	    size > 4096) {
		fprintf(stderr, "usage: %s [blocks >= 6] [batch 1..4096] [records per block >= batch] "
				"[bytes 16..4096]\n", argv[0]);
		return 2;
	}
	struct shmring_spsc *tx;
	int rc = shmring_spsc_create(NULL, NULL, SHMRING_ROLE_PRODUCER, &tx);
	if (rc) {
		fprintf(stderr, "create: %s\n", shmring_strerror(rc));
		return 1;
	}
	int fd = dup(shmring_spsc_fd(tx)); /* handles do not survive fork() */
	uint64_t *t = mmap(NULL, sizeof(*t) * (size_t)(blocks + 1), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || t == MAP_FAILED)
		return 1;
	bench_clock_init(0);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		bench_pin(1);
		_exit(consumer(fd, blocks, batch, per, size, t));
	}
	bench_pin(0);
	uint64_t seq = 0;
	for (int b = 0; b < blocks; b++)
		for (uint64_t i = 0; i < per;) {
			int k = min_int(per - i, batch);
			rc = (b & 1) ? pair_sendn_b(tx, seq, k, size) : pair_sendn_a(tx, seq, k, size);
			if (rc) {
				fprintf(stderr, "producer: record %llu: %s\n", (unsigned long long)seq,
					shmring_strerror(rc));
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				return 1;
			}
			seq += (uint64_t)k;
			i += (uint64_t)k;
		}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 1;
	/* pairs (2j, 2j+1), the first pair left out as warm-up */
	int np = blocks / 2 - 1;
	double *ratio = malloc(sizeof(double) * (size_t)np), *ra = malloc(sizeof(double) * (size_t)np),
	       *rb = malloc(sizeof(double) * (size_t)np);
	if (!ratio || !ra || !rb)
		return 1;
	for (int j = 0; j < np; j++) {
		int b = 2 + 2 * j;
		ra[j] = (double)per / bench_ticks_ns(t[b + 1] - t[b]) * 1e3; /* M records/s */
		rb[j] = (double)per / bench_ticks_ns(t[b + 2] - t[b + 1]) * 1e3;
		ratio[j] = rb[j] / ra[j];
	}
	qsort(ratio, (size_t)np, sizeof(double), cmp_dbl);
	qsort(ra, (size_t)np, sizeof(double), cmp_dbl);
	qsort(rb, (size_t)np, sizeof(double), cmp_dbl);
	printf("spsc stream %zu B, batch %d, %d pairs of %llu records: B/A rate ratio median %.3f "
	       "(quartiles %.3f %.3f); rate median A %.1f M/s, B %.1f M/s\n",
	       size, batch, np, (unsigned long long)per, ratio[np / 2], ratio[np / 4],
	       ratio[3 * np / 4], ra[np / 2], rb[np / 2]);
	return 0;
}
#endif
