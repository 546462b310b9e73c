/* SPDX-License-Identifier: MIT */
/*
 * mpmc for the paired harness (pair.h): the benchmark's zero-copy round trip over two
 * rings of 1,024 cells, one producer and one consumer on each: enqueue_start, stamp the
 * first and last 8 bytes in place, enqueue_finish; dequeue_start, read the stamps,
 * dequeue_finish. 64-byte slots by default.
 */
#include "pair.h"

#include "shmring/mpmc.h"

#include <errno.h>
#include <unistd.h>

#define PAIR_CAT2(a, b) a##b
#define PAIR_CAT(a, b) PAIR_CAT2(a, b)

#if !defined(PAIR_PART_MAIN)

static int send(void *tx, uint64_t seq, size_t size)
{
	void *buf;
	uint64_t n = 0;
	int rc;
	while ((rc = shmring_mpmc_enqueue_start(tx, 1, 1, &buf, 0)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc < 0)
		return rc;
	pair_stamp(buf, size, seq);
	rc = shmring_mpmc_enqueue_finish(tx, 1, NULL);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

static int recv(void *rx, uint64_t *seq, size_t size, struct pair_tok *t)
{
	struct shmring_mpmc_msg m;
	uint64_t n = 0;
	int rc;
	(void)t; /* dequeue_finish gives back every held message */
	while ((rc = shmring_mpmc_dequeue_start(rx, 1, 1, &m, 0)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc < 0)
		return rc;
	*seq = m.len == size ? pair_unstamp(m.data, size) : UINT64_MAX;
	return 0;
}

static int done(void *rx, struct pair_tok *t)
{
	(void)t;
	int rc = shmring_mpmc_dequeue_finish(rx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

const struct pair_ops PAIR_CAT(pair_ops_, PAIR_PART) = {send, recv, done};

#else /* setup, compiled once */

const char *pair_kind = "mpmc";
const size_t pair_default_size = 64;

int pair_create(size_t size, void **tx, void **rx, int fds[2])
{
	struct shmring_mpmc_opts o = {.capacity = 1024, .slot_size = (uint32_t)size};
	struct shmring_mpmc *a = NULL, *b = NULL;
	int rc = shmring_mpmc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &a);
	if (rc == 0)
		rc = shmring_mpmc_create(NULL, &o, SHMRING_ROLE_CONSUMER, &b);
	if (rc)
		return rc;
	*tx = a;
	*rx = b;
	fds[0] = dup(shmring_mpmc_fd(a)); /* handles do not survive fork() */
	fds[1] = dup(shmring_mpmc_fd(b));
	return fds[0] < 0 || fds[1] < 0 ? -errno : 0;
}

int pair_attach(const int fds[2], void **rx, void **tx)
{
	struct shmring_mpmc *r = NULL, *t = NULL;
	int rc = shmring_mpmc_open_fd(fds[0], SHMRING_ROLE_CONSUMER, &r);
	if (rc == 0)
		rc = shmring_mpmc_open_fd(fds[1], SHMRING_ROLE_PRODUCER, &t);
	*rx = r;
	*tx = t;
	return rc;
}
#endif
