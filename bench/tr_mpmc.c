/* SPDX-License-Identifier: MIT */
/*
 * shmring MPMC ring (fixed-size slots, work distribution): `mpmc`. A round trip uses two
 * rings with one producer and one consumer each; streaming runs 1, 2 or 4 producer
 * processes (--procs) and as many consumer processes, producers on the first half of
 * --cpus and consumers on the second (with two CPUs, one each). Waiting is a
 * bounded spin (--spin-us) on the non-blocking calls, then the library's blocking call.
 *
 * zero-copy: enqueue_start / stamps in place / enqueue_finish, dequeue_start / stamps /
 * dequeue_finish. copy: shmring_mpmc_enqueue() / shmring_mpmc_dequeue(); with batching,
 * the zero-copy calls with a memcpy of each message.
 *
 * Stamps carry the producer's index in their top byte; consumers check that each
 * producer's messages arrive in order (per-producer FIFO, mpmc.h). After the timed
 * part the parent (producer 0) waits for the other producers, then sends STOPs until
 * every consumer has seen one.
 */
#include "bench_shm.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCH 64u
#define PROD_SHIFT 56

static uint32_t cells_for(const struct bench_spec *s)
{
	if (s->test == BENCH_RTT)
		return 64;
	return s->size > 4096 ? 256 : 1024;
}

static int create(struct bench_ctx *c, int back, void **h)
{
	struct shmring_mpmc_opts o = {.capacity = cells_for(c->spec),
				      .slot_size = (uint32_t)c->spec->size};
	struct shmring_mpmc *r = NULL;
	int rc = shmring_mpmc_create(NULL, &o, back ? SHMRING_ROLE_CONSUMER : SHMRING_ROLE_PRODUCER,
				     &r);
	*h = r;
	return rc;
}

static int open_fd(int fd, int producer, void **h)
{
	struct shmring_mpmc *r = NULL;
	uint32_t role = producer ? SHMRING_ROLE_PRODUCER : SHMRING_ROLE_CONSUMER;
	int rc = shmring_mpmc_open_fd(fd, role, &r);
	*h = r;
	return rc;
}

BENCH_SHM_HANDLE_FNS(mpmc)
BENCH_SHM_DEMOTE_FN(mpmc)

static const struct bench_shm_kind kind = {
	.create_what = "mpmc_create",
	.open_what = "mpmc_open_fd",
	.create = create,
	.open = open_fd,
	BENCH_SHM_HANDLE_OPS(mpmc),
	BENCH_SHM_DEMOTE_OP(mpmc),
};

/* Send n messages stamped first, first + 1, ... (n <= MAX_BATCH); returns how many
 * went (>= 1) or an error. */
static inline int put_msgs(struct bench_ctx *c, const uint8_t *src, uint64_t first, unsigned n)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && n == 1) {
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_mpmc_enqueue(s->tx, src, size, 0),
				     shmring_mpmc_enqueue(s->tx, src, size, BENCH_WAIT_MS));
		return rc < 0 ? rc : 1;
	}
	void *bufs[MAX_BATCH];
	BENCH_SPIN_THEN_WAIT(c, rc, shmring_mpmc_enqueue_start(s->tx, n, 1, bufs, 0),
			     shmring_mpmc_enqueue_start(s->tx, n, 1, bufs, BENCH_WAIT_MS));
	if (rc < 0)
		return rc;
	unsigned k = (unsigned)rc;
	for (unsigned i = 0; i < k; i++) {
		if (c->spec->mode == BENCH_COPY) {
			bench_stamp(c->buf, size, first + i);
			bench_copy(bufs[i], c->buf, size);
		} else {
			bench_stamp_shared(bufs[i], size, first + i);
		}
	}
	rc = shmring_mpmc_enqueue_finish(s->tx, k, NULL);
	return rc < 0 ? rc : (int)k;
}

/* Receive up to n messages; their stamps in seq[]. Returns how many (>= 1) or an error. */
static inline int take_msgs(struct bench_ctx *c, uint64_t *seq, unsigned n)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && n == 1) {
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_mpmc_dequeue(s->rx, c->rbuf, size, 0),
				     shmring_mpmc_dequeue(s->rx, c->rbuf, size, BENCH_WAIT_MS));
		if (rc < 0)
			return rc;
		if ((size_t)rc != size)
			return -EPROTO;
		seq[0] = bench_unstamp(c->rbuf, size);
		return 1;
	}
	struct shmring_mpmc_msg msgs[MAX_BATCH];
	BENCH_SPIN_THEN_WAIT(c, rc, shmring_mpmc_dequeue_start(s->rx, n, 1, msgs, 0),
			     shmring_mpmc_dequeue_start(s->rx, n, 1, msgs, BENCH_WAIT_MS));
	if (rc < 0)
		return rc;
	unsigned k = (unsigned)rc;
	for (unsigned i = 0; i < k; i++) {
		if (msgs[i].len != size) {
			shmring_mpmc_dequeue_finish(s->rx);
			return -EPROTO;
		}
		if (c->spec->mode == BENCH_COPY) {
			bench_copy(c->rbuf, msgs[i].data, size);
			seq[i] = bench_unstamp(c->rbuf, size);
		} else {
			seq[i] = bench_unstamp_shared(msgs[i].data, size);
		}
	}
	rc = shmring_mpmc_dequeue_finish(s->rx);
	return rc < 0 ? rc : (int)k;
}

static int put1(struct bench_ctx *c, const uint8_t *src, uint64_t seq)
{
	return put_msgs(c, src, seq, 1);
}

static int take1(struct bench_ctx *c, uint64_t *seq)
{
	return take_msgs(c, seq, 1);
}

static int mpmc_setup(struct bench_ctx *c)
{
	return bench_shm_setup(c, &kind);
}

static int mpmc_rtt(struct bench_ctx *c)
{
	return bench_shm_rtt(c, put1, take1);
}

/* Producer 0, after the timed part: once every producer is done, STOPs until each
 * consumer has had one (a consumer that takes a batch may swallow two). */
static int send_stops(struct bench_ctx *c)
{
	struct bench_shm *s = bench_shm_st(c);
	unsigned np = c->spec->nprod, nc = c->spec->ncons;
	while (atomic_load(&c->sh->p_done) < np) {
		if (bench_abort)
			return bench_fail(c, -ETIMEDOUT, "producers did not finish");
		sched_yield();
	}
	unsigned sent = 0;
	for (;;) {
		unsigned stopped = atomic_load(&c->sh->c_stopped);
		if (stopped >= nc)
			return 0;
		if (bench_abort)
			return bench_fail(c, -ETIMEDOUT, "consumers did not stop");
		/* every STOP sent so far was taken, and someone is still running */
		if (sent < nc || shmring_mpmc_count(s->tx) == 0) {
			bench_stamp(c->buf, c->spec->size, BENCH_STOP);
			int rc = put_msgs(c, c->buf, BENCH_STOP, 1);
			if (rc < 0)
				return bench_fail(c, rc, "send STOP: %s", shmring_strerror(rc));
			sent++;
		} else {
			sched_yield();
		}
	}
}

/* Stamps carry the producer's index in their top byte. */
static int send_batch(struct bench_ctx *c, uint64_t seq)
{
	unsigned batch = c->spec->batch > MAX_BATCH ? MAX_BATCH : c->spec->batch;
	uint64_t tag = (uint64_t)c->index << PROD_SHIFT;
	if (c->spec->mode == BENCH_COPY && batch == 1)
		bench_stamp(c->buf, c->spec->size, tag | seq);
	int rc = put_msgs(c, c->buf, tag | seq, batch);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : rc;
}

static int mpmc_produce(struct bench_ctx *c)
{
	int rc = bench_shm_produce(c, send_batch, NULL);
	return rc < 0 || c->index != 0 ? rc : send_stops(c);
}

/* Each producer's messages in order; the gaps are other consumers' share. */
static int mpmc_consume(struct bench_ctx *c)
{
	unsigned batch = c->spec->batch > MAX_BATCH ? MAX_BATCH : c->spec->batch;
	uint64_t next[BENCH_MAX_PROCS] = {0};
	uint64_t seq[MAX_BATCH];
	struct bench_rx rx = {0};
	for (;;) {
		int rc = take_msgs(c, seq, batch);
		if (rc < 0)
			return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
		for (int i = 0; i < rc; i++) {
			if (seq[i] == BENCH_STOP)
				return bench_rx_stop(c, &rx) > 0 ? 0 : -EIO;
			unsigned p = (unsigned)(seq[i] >> PROD_SHIFT);
			uint64_t n = seq[i] & ((UINT64_C(1) << PROD_SHIFT) - 1);
			if (p >= BENCH_MAX_PROCS || n < next[p]) {
				rx.bad++;
			} else {
				rx.lost += n - next[p];
				next[p] = n + 1;
			}
			rx.count++;
		}
	}
}

static int mpmc_stream(struct bench_ctx *c)
{
	return c->side == 0 ? mpmc_produce(c) : mpmc_consume(c);
}

/* Messages sent by every producer, each one's timed part. */
static void mpmc_finish(struct bench_ctx *c)
{
	uint64_t n = c->spec->test == BENCH_RTT ? c->nsamples : 0;
	if (c->spec->test == BENCH_STREAM)
		for (unsigned i = 0; i < c->spec->nprod; i++)
			n += atomic_load(&c->sh->p_msgs[i]);
	bench_shm_finish_n(c, n);
}

const struct bench_transport bench_tr_mpmc = {
	.name = "mpmc",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY | BENCH_CAP_BATCH |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING | BENCH_CAP_MULTI,
	.max_size = 65536,
	.max_batch = MAX_BATCH,
	.setup = mpmc_setup,
	.attach = bench_shm_attach,
	.rtt = mpmc_rtt,
	.stream = mpmc_stream,
	.detach = bench_shm_detach,
	.finish = mpmc_finish,
	.teardown = bench_shm_teardown,
};
