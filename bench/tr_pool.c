/* SPDX-License-Identifier: MIT */
/*
 * shmring frame pool: `pool` hands frames over by reference. A round trip uses two
 * pools (a->b, b->a), each with one block subscriber: the client loans a buffer,
 * writes it, publishes; the server takes it, loans a buffer of the other pool, writes
 * it, publishes, releases the first; the client takes and releases. Streaming uses one
 * pool. Waiting is a bounded spin (--spin-us) on the non-blocking calls, then the
 * library's blocking call, as for `spsc`.
 *
 * zero-copy: only the stamps are written into / read from the frame in place (the frame
 * is produced in place). copy: the whole frame is copied in from / out to a private
 * buffer.
 *
 * The pools are made as a user gets them by default: no checksums (a hash of the whole
 * frame) and no timestamps (SHMRING_POOL_F_STAMP: one clock read per publish, ~14% of
 * a round trip here).
 */
#include "bench_shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int create(struct bench_ctx *c, int back, void **h)
{
	struct shmring_pool_opts o = {
		.buf_size = c->spec->size, .nbufs = c->spec->test == BENCH_STREAM ? 8 : 4,
		.max_subs = 1, .max_held = 1,
	};
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *p = NULL;
	int rc = shmring_pool_create(NULL, &o, back ? &so : NULL, &p);
	*h = p;
	return rc;
}

static int open_fd(int fd, int producer, void **h)
{
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	struct shmring_pool *p = NULL;
	int rc = producer ? shmring_pool_open_producer_fd(fd, &p)
			  : shmring_pool_subscribe_fd(fd, &so, &p);
	*h = p;
	return rc;
}

static void prefault(void *h, int producer)
{
	struct shmring_pool *p = h;
	bench_prefault(shmring_pool_seg(p), 1);
	/* the read-only view subscribers read frames through (a private field, used only
	 * to take its page faults before the timed part) */
	if (!producer && p->rodata)
		bench_prefault_range(p->rodata, p->data_size, 0);
}

BENCH_SHM_HANDLE_FNS(pool)

static const struct bench_shm_kind kind = {
	.create_what = "pool_create",
	.open_what = "pool attach",
	.create = create,
	.open = open_fd,
	BENCH_SHM_HANDLE_OPS(pool),
	.prefault = prefault,
};

static inline int put_frame(struct bench_ctx *c, const uint8_t *src, uint64_t seq)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	struct shmring_pool_frame f = {0};
	int rc;
	BENCH_SPIN_THEN_WAIT(c, rc, shmring_pool_loan(s->tx, &f),
			     shmring_pool_loan_wait(s->tx, &f, BENCH_WAIT_MS));
	if (rc < 0)
		return rc;
	if (c->spec->mode == BENCH_COPY)
		bench_copy(f.data, src, size);
	else
		bench_stamp_shared(f.data, size, seq);
	if (c->cfg->demote) { /* the lines the subscriber reads: the two stamps (pool.h) */
		shmring_demote(f.data, 8);
		shmring_demote((uint8_t *)f.data + ((size - 8) & ~(size_t)7), 8);
	}
	f.len = size;
	rc = shmring_pool_publish(s->tx, &f);
	if (rc == 0)
		return -ENOTCONN; /* no subscriber got it */
	return rc < 0 ? rc : 0;
}

static inline int take_frame(struct bench_ctx *c, uint64_t *seq)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	struct shmring_pool_frame f = {0};
	int rc;
	BENCH_SPIN_THEN_WAIT(c, rc, shmring_pool_take(s->rx, &f),
			     shmring_pool_take_wait(s->rx, &f, BENCH_WAIT_MS));
	if (rc < 0)
		return rc;
	if (f.len != size) {
		shmring_pool_release(s->rx, &f);
		return -EPROTO;
	}
	if (c->spec->mode == BENCH_COPY) {
		bench_copy(c->rbuf, f.data, size);
		*seq = bench_unstamp(c->rbuf, size);
	} else {
		*seq = bench_unstamp_shared(f.data, size);
	}
	return shmring_pool_release(s->rx, &f);
}

static int pool_setup(struct bench_ctx *c)
{
	return bench_shm_setup(c, &kind);
}

static int pool_rtt(struct bench_ctx *c)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 0)
		return bench_shm_rtt_client(c, put_frame, take_frame);
	for (;;) {
		/* take, answer, then release: the reply is on the critical path */
		struct shmring_pool_frame f = {0};
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_pool_take(s->rx, &f),
				     shmring_pool_take_wait(s->rx, &f, BENCH_WAIT_MS));
		if (rc < 0)
			return bench_fail(c, rc, "take: %s", shmring_strerror(rc));
		if (f.len != size)
			return bench_fail(c, -EPROTO, "frame of %llu bytes",
					  (unsigned long long)f.len);
		if (c->spec->mode == BENCH_COPY) {
			bench_copy(c->rbuf, f.data, size);
			seq = bench_unstamp(c->rbuf, size);
		} else {
			seq = bench_unstamp_shared(f.data, size);
		}
		if (seq != BENCH_STOP && (rc = put_frame(c, c->rbuf, seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		if ((rc = shmring_pool_release(s->rx, &f)) < 0)
			return bench_fail(c, rc, "release: %s", shmring_strerror(rc));
		if (seq == BENCH_STOP)
			return 0;
	}
}

static int pool_stream(struct bench_ctx *c)
{
	return c->side == 1 ? bench_shm_consume(c, take_frame)
			    : bench_shm_produce(c, NULL, put_frame);
}

const struct bench_transport bench_tr_pool = {
	.name = "pool",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = pool_setup,
	.attach = bench_shm_attach,
	.rtt = pool_rtt,
	.stream = pool_stream,
	.detach = bench_shm_detach,
	.finish = bench_shm_finish,
	.teardown = bench_shm_teardown,
};
