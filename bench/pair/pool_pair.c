/* SPDX-License-Identifier: MIT */
/*
 * pool for the paired harness (pair.h): the benchmark's round trip over two pools of
 * 1080p buffers (by default), one block subscriber each: loan, stamp the first and last
 * 8 bytes in place, publish; take, read the stamps, release.
 */
#include "pair.h"

#include "shmring/pool.h"

#include <errno.h>
#include <unistd.h>

#define PAIR_CAT2(a, b) a##b
#define PAIR_CAT(a, b) PAIR_CAT2(a, b)

#if !defined(PAIR_PART_MAIN)

static int send(void *tx, uint64_t seq, size_t size)
{
	struct shmring_pool_frame f;
	uint64_t n = 0;
	int rc;
	while ((rc = shmring_pool_loan(tx, &f)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc)
		return rc;
	pair_stamp(f.data, size, seq);
	f.len = size;
	rc = shmring_pool_publish(tx, &f);
	return rc == 1 ? 0 : rc < 0 ? rc : -ENOTCONN;
}

static int recv(void *rx, uint64_t *seq, size_t size, struct pair_tok *t)
{
	_Static_assert(sizeof(struct shmring_pool_frame) <= sizeof(t->b), "token");
	struct shmring_pool_frame *f = (void *)t->b;
	uint64_t n = 0;
	int rc;
	while ((rc = shmring_pool_take(rx, f)) == -EAGAIN)
		if ((rc = pair_spin(&n)) != 0)
			return rc;
	if (rc)
		return rc;
	*seq = f->len == size ? pair_unstamp(f->data, size) : UINT64_MAX;
	return 0;
}

static int done(void *rx, struct pair_tok *t)
{
	return shmring_pool_release(rx, (void *)t->b);
}

const struct pair_ops PAIR_CAT(pair_ops_, PAIR_PART) = {send, recv, done};

#else /* setup, compiled once */

const char *pair_kind = "pool";
const size_t pair_default_size = 3110400;

int pair_create(size_t size, void **tx, void **rx, int fds[2])
{
	struct shmring_pool_opts o = {.buf_size = size, .nbufs = 4, .max_subs = 1, .max_held = 1};
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *a = NULL, *b = NULL;
	int rc = shmring_pool_create(NULL, &o, NULL, &a);
	if (rc == 0)
		rc = shmring_pool_create(NULL, &o, &so, &b);
	if (rc)
		return rc;
	*tx = a;
	*rx = b;
	/* the server opens the pools again through duplicates: handles do not survive fork() */
	fds[0] = dup(shmring_pool_fd(a));
	fds[1] = dup(shmring_pool_fd(b));
	return fds[0] < 0 || fds[1] < 0 ? -errno : 0;
}

int pair_attach(const int fds[2], void **rx, void **tx)
{
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *r = NULL, *t = NULL;
	int rc = shmring_pool_subscribe_fd(fds[0], &so, &r);
	if (rc == 0)
		rc = shmring_pool_open_producer_fd(fds[1], &t);
	*rx = r;
	*tx = t;
	return rc;
}
#endif
