/* SPDX-License-Identifier: MIT */
/*
 * spsc for the paired harness (pair.h): the benchmark's zero-copy round trip over two
 * 1 MiB rings: reserve, stamp the first and last 8 bytes in place, commit; peek, read
 * the stamps, release. 64-byte records by default.
 */
#include "pair.h"

#include "shmring/spsc.h"

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
	while ((rc = shmring_spsc_reserve(tx, size, &buf)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc)
		return rc;
	pair_stamp(buf, size, seq);
	rc = shmring_spsc_commit(tx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

static int recv(void *rx, uint64_t *seq, size_t size, struct pair_tok *t)
{
	struct shmring_rec r = {0};
	uint64_t n = 0;
	int rc;
	(void)t; /* release gives back every peeked record */
	while ((rc = shmring_spsc_peek(rx, &r)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc)
		return rc;
	*seq = r.len == size ? pair_unstamp(r.data, size) : UINT64_MAX;
	return 0;
}

static int done(void *rx, struct pair_tok *t)
{
	(void)t;
	int rc = shmring_spsc_release(rx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

const struct pair_ops PAIR_CAT(pair_ops_, PAIR_PART) = {send, recv, done};

#else /* setup, compiled once */

const char *pair_kind = "spsc";
const size_t pair_default_size = 64;

int pair_create(size_t size, void **tx, void **rx, int fds[2])
{
	struct shmring_spsc_opts o = {0};
	struct shmring_spsc *a = NULL, *b = NULL;
	(void)size;
	int rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &a);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_CONSUMER, &b);
	if (rc)
		return rc;
	*tx = a;
	*rx = b;
	fds[0] = dup(shmring_spsc_seg(a)->fd); /* handles do not survive fork() */
	fds[1] = dup(shmring_spsc_seg(b)->fd);
	return fds[0] < 0 || fds[1] < 0 ? -errno : 0;
}

int pair_attach(const int fds[2], void **rx, void **tx)
{
	struct shmring_spsc *r = NULL, *t = NULL;
	int rc = shmring_spsc_open_fd(fds[0], SHMRING_ROLE_CONSUMER, &r);
	if (rc == 0)
		rc = shmring_spsc_open_fd(fds[1], SHMRING_ROLE_PRODUCER, &t);
	*rx = r;
	*tx = t;
	return rc;
}
#endif
