/* SPDX-License-Identifier: MIT */
/*
 * bcast for the paired harness (pair.h): a zero-copy round trip over two channels of 64
 * slots, one writer and one reader on each: reserve, stamp the first and last 8 bytes in
 * place, commit; peek, read the stamps, release (which validates). 64-byte records by
 * default. Stamps are written and read with relaxed atomics, as the seqlock asks.
 */
#include "pair.h"

#include "shmring/bcast.h"

#include <errno.h>
#include <unistd.h>

#define PAIR_CAT2(a, b) a##b
#define PAIR_CAT(a, b) PAIR_CAT2(a, b)

#if !defined(PAIR_PART_MAIN)

static int send(void *tx, uint64_t seq, size_t size)
{
	void *buf;
	int rc = shmring_bcast_reserve(tx, size, &buf);
	if (rc)
		return rc;
	_Atomic uint64_t *w = buf;
	atomic_store_explicit(&w[0], seq, memory_order_relaxed);
	atomic_store_explicit(&w[((size - 8) & ~(size_t)7) / 8], seq, memory_order_relaxed);
	return shmring_bcast_commit(tx);
}

static int recv(void *rx, uint64_t *seq, size_t size, struct pair_tok *t)
{
	struct shmring_bcast_rec r = {0};
	uint64_t n = 0;
	int rc;
	(void)t; /* release finishes the peeked record */
	while ((rc = shmring_bcast_peek(rx, &r)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc)
		return rc;
	const _Atomic uint64_t *w = r.data;
	uint64_t a = atomic_load_explicit(&w[0], memory_order_relaxed);
	uint64_t b = atomic_load_explicit(&w[((size - 8) & ~(size_t)7) / 8], memory_order_relaxed);
	*seq = r.len == size && a == b ? a : UINT64_MAX;
	return 0;
}

static int done(void *rx, struct pair_tok *t)
{
	(void)t;
	return shmring_bcast_release(rx); /* -ESTALE: lapped, which a round trip never is */
}

const struct pair_ops PAIR_CAT(pair_ops_, PAIR_PART) = {send, recv, done};

#else /* setup, compiled once */

const char *pair_kind = "bcast";
const size_t pair_default_size = 64;

int pair_create(size_t size, void **tx, void **rx, int fds[2])
{
	struct shmring_bcast_opts o = {.slots = 64, .slot_size = size};
	struct shmring_bcast *a = NULL, *b = NULL;
	int rc = shmring_bcast_create(NULL, &o, SHMRING_ROLE_PRODUCER, &a);
	if (rc == 0)
		rc = shmring_bcast_create(NULL, &o, SHMRING_ROLE_READER, &b);
	if (rc)
		return rc;
	*tx = a;
	*rx = b;
	fds[0] = dup(shmring_bcast_fd(a)); /* handles do not survive fork() */
	fds[1] = dup(shmring_bcast_fd(b));
	return fds[0] < 0 || fds[1] < 0 ? -errno : 0;
}

int pair_attach(const int fds[2], void **rx, void **tx)
{
	struct shmring_bcast *r = NULL, *t = NULL;
	int rc = shmring_bcast_open_fd(fds[0], SHMRING_ROLE_READER, 0, &r);
	if (rc == 0)
		rc = shmring_bcast_open_fd(fds[1], SHMRING_ROLE_PRODUCER, 0, &t);
	*rx = r;
	*tx = t;
	return rc;
}
#endif
