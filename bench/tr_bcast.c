/* SPDX-License-Identifier: MIT */
/*
 * shmring broadcast (seqlock framing): `bcast`. One writer, readers that never write
 * the data. A round trip uses two channels (a->b, b->a). The writer never waits;
 * readers poll with a bounded spin (--spin-us), then the library's blocking call.
 *
 * zero-copy: reserve + stamps in place + commit; peek + stamps + release (validate).
 * copy: publish() and read(), which copy with relaxed 8-byte atomics (seqlock rules).
 *
 * Streaming is lossy by design: a reader that falls a ring behind is lapped. The
 * figure is what reached the reader; lost_per_msg says what did not.
 */
#include "bench_shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Round trips need two slots; streaming gets a deep ring (up to 64 MiB) so that a
 * reader that keeps up on average is not lapped by a burst. */
static uint32_t slots_for(const struct bench_spec *s)
{
	if (s->test == BENCH_RTT)
		return 4;
	uint64_t stride = shmring_bcast_stride(s->size);
	uint64_t n = (UINT64_C(64) << 20) / (stride ? stride : 1);
	uint32_t slots = 4;
	while (slots < 1024 && 2 * (uint64_t)slots <= n)
		slots *= 2;
	return slots;
}

static int create(struct bench_ctx *c, int back, void **h)
{
	struct shmring_bcast_opts o = {.slots = slots_for(c->spec), .slot_size = c->spec->size};
	struct shmring_bcast *b = NULL;
	int rc = shmring_bcast_create(NULL, &o, back ? SHMRING_ROLE_READER : SHMRING_ROLE_PRODUCER,
				      &b);
	*h = b;
	return rc;
}

static int open_fd(int fd, int producer, void **h)
{
	struct shmring_bcast *b = NULL;
	uint32_t role = producer ? SHMRING_ROLE_PRODUCER : SHMRING_ROLE_READER;
	int rc = shmring_bcast_open_fd(fd, role, 0, &b);
	*h = b;
	return rc;
}

static void prefault(void *h, int producer)
{
	struct shmring_bcast *b = h;
	bench_prefault(shmring_bcast_seg(b), producer || b->seg->writable);
}

/* Wake syscalls are counted by the writer in the header; readers count their sleeps
 * on the reader page (layout.h / bcast.h: same struct shmring_stats offset). */
static void reader_stats(struct bench_wstats *w, const void *h)
{
	struct shmring_seg *seg = shmring_bcast_seg(h);
	const struct shmring_bcast_rpage *rp = (const struct shmring_bcast_rpage *)(const void *)(
		(const uint8_t *)shmring_seg_ctrl(seg) + SHMRING_BCAST_RPAGE_OFF);
	w->sleeps += atomic_load_explicit(&rp->stats.sleeps, memory_order_relaxed);
}

BENCH_SHM_HANDLE_FNS(bcast)
BENCH_SHM_DEMOTE_FN(bcast)

static const struct bench_shm_kind kind = {
	.create_what = "bcast_create",
	.open_what = "bcast_open_fd",
	.create = create,
	.open = open_fd,
	BENCH_SHM_HANDLE_OPS(bcast),
	BENCH_SHM_DEMOTE_OP(bcast),
	.prefault = prefault,
	.stats = reader_stats,
};

static inline int put_rec(struct bench_ctx *c, const uint8_t *src, uint64_t seq)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	if (c->spec->mode == BENCH_COPY)
		return shmring_bcast_publish(s->tx, src, size);
	void *p = NULL;
	int rc = shmring_bcast_reserve(s->tx, size, &p);
	if (rc < 0)
		return rc;
	bench_stamp_shared(p, size, seq);
	return shmring_bcast_commit(s->tx);
}

/* The next record's stamp; a zero-copy record overwritten while we read it is lost,
 * like one we were lapped past, and we go on with the next. */
static inline int get_rec(struct bench_ctx *c, uint64_t *seq)
{
	struct bench_shm *s = bench_shm_st(c);
	size_t size = c->spec->size;
	int rc;
	for (;;) {
		if (c->spec->mode == BENCH_COPY) {
			struct shmring_bcast_rec rec = {0};
			BENCH_SPIN_THEN_WAIT(c, rc, shmring_bcast_read(s->rx, c->rbuf, size, &rec),
					     shmring_bcast_read_wait(s->rx, c->rbuf, size, &rec,
								     BENCH_WAIT_MS));
			if (rc < 0)
				return rc;
			if ((size_t)rc != size)
				return -EPROTO;
			*seq = bench_unstamp(c->rbuf, size);
			return 0;
		}
		struct shmring_bcast_rec rec = {0};
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_bcast_peek(s->rx, &rec),
				     shmring_bcast_peek_wait(s->rx, &rec, BENCH_WAIT_MS));
		if (rc < 0)
			return rc;
		if (rec.len != size)
			return -EPROTO;
		uint64_t v = bench_unstamp_shared(rec.data, size);
		rc = shmring_bcast_release(s->rx);
		if (rc == -ESTALE)
			continue;
		if (rc < 0)
			return rc;
		*seq = v;
		return 0;
	}
}

static int bcast_setup(struct bench_ctx *c)
{
	return bench_shm_setup(c, &kind);
}

static int bcast_rtt(struct bench_ctx *c)
{
	return bench_shm_rtt(c, put_rec, get_rec);
}

static int bcast_stream(struct bench_ctx *c)
{
	return c->side == 1 ? bench_shm_consume(c, get_rec) : bench_shm_produce(c, NULL, put_rec);
}

const struct bench_transport bench_tr_bcast = {
	.name = "bcast",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING | BENCH_CAP_LOSSY,
	.setup = bcast_setup,
	.attach = bench_shm_attach,
	.rtt = bcast_rtt,
	.stream = bcast_stream,
	.detach = bench_shm_detach,
	.finish = bench_shm_finish,
	.teardown = bench_shm_teardown,
};
