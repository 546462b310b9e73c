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

struct bcast_state {
	int fd_ab, fd_ba;
	struct shmring_bcast *tx, *rx;  /* writer of one channel, reader of the other */
	struct bench_wstats w0;
	int have_w0;
};

static struct bcast_state *st(struct bench_ctx *c)
{
	return c->priv;
}

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

static int bcast_setup(struct bench_ctx *c)
{
	struct bcast_state *s = calloc(1, sizeof *s);
	if (!s)
		return bench_fail(c, -ENOMEM, "no memory");
	c->priv = s;
	s->fd_ab = s->fd_ba = -1;
	struct shmring_bcast_opts o = {.slots = slots_for(c->spec), .slot_size = c->spec->size};
	int rc = shmring_bcast_create(NULL, &o, SHMRING_ROLE_PRODUCER, &s->tx);
	if (rc < 0)
		return bench_fail(c, rc, "bcast_create: %s (%s)", shmring_strerror(rc),
				  shmring_last_error_detail());
	s->fd_ab = dup(shmring_bcast_fd(s->tx));
	if (c->spec->test == BENCH_RTT) {
		rc = shmring_bcast_create(NULL, &o, SHMRING_ROLE_READER, &s->rx);
		if (rc < 0)
			return bench_fail(c, rc, "bcast_create: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
		s->fd_ba = dup(shmring_bcast_fd(s->rx));
	}
	return 0;
}

static int bcast_attach(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	int rc = 0;
	if (c->side == 1) {
		s->tx = s->rx = NULL; /* the inherited handles are the parent's */
		rc = shmring_bcast_open_fd(s->fd_ab, SHMRING_ROLE_READER, 0, &s->rx);
		if (rc == 0 && s->fd_ba >= 0)
			rc = shmring_bcast_open_fd(s->fd_ba, SHMRING_ROLE_PRODUCER, 0, &s->tx);
		if (rc < 0)
			return bench_fail(c, rc, "bcast_open_fd: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
	}
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	s->fd_ab = s->fd_ba = -1;
	if (s->tx)
		bench_prefault(shmring_bcast_seg(s->tx), 1);
	if (s->rx)
		bench_prefault(shmring_bcast_seg(s->rx), s->rx->seg->writable);
	return 0;
}

/* Wake syscalls are counted by the writer in the header; readers count their sleeps
 * on the reader page (layout.h / bcast.h: same struct shmring_stats offset). */
static void add_stats(struct bench_wstats *w, struct shmring_bcast *b)
{
	struct shmring_seg *seg = shmring_bcast_seg(b);
	bench_wstats_add(w, seg);
	const struct shmring_bcast_rpage *rp = (const struct shmring_bcast_rpage *)(const void *)(
		(const uint8_t *)shmring_seg_ctrl(seg) + SHMRING_BCAST_RPAGE_OFF);
	w->sleeps += atomic_load_explicit(&rp->stats.sleeps, memory_order_relaxed);
}

static void snap(struct bcast_state *s, struct bench_wstats *w)
{
	memset(w, 0, sizeof *w);
	if (s->tx)
		add_stats(w, s->tx);
	if (s->rx)
		add_stats(w, s->rx);
}

static inline int put_rec(struct bench_ctx *c, struct bcast_state *s, const uint8_t *src,
			  uint64_t seq)
{
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
static inline int get_rec(struct bench_ctx *c, struct bcast_state *s, uint64_t *seq)
{
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

static int bcast_rtt(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 1) {
		for (;;) {
			if ((rc = get_rec(c, s, &seq)) < 0)
				return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
			if (seq == BENCH_STOP)
				return 0;
			if ((rc = put_rec(c, s, c->rbuf, seq)) < 0)
				return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	for (;;) {
		if (c->spec->mode == BENCH_COPY)
			bench_stamp(c->buf, size, L.seq);
		if ((rc = put_rec(c, s, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		if ((rc = get_rec(c, s, &seq)) < 0)
			return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
		if (seq != L.seq)
			return bench_fail(c, -EPROTO, "reply %llu, want %llu", (unsigned long long)seq,
					  (unsigned long long)L.seq);
		int was_timed = L.timed;
		if (bench_rtt_next(c, &L))
			break;
		if (!was_timed && L.timed)
			snap(s, &s->w0), s->have_w0 = 1;
	}
	bench_stamp(c->buf, size, BENCH_STOP);
	rc = put_rec(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

static int bcast_stream(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 1) {
		struct bench_rx rx = {0};
		for (;;) {
			if ((rc = get_rec(c, s, &seq)) < 0)
				return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
			if (bench_rx(c, &rx, seq))
				return 0;
		}
	}
	struct bench_loop L;
	bench_stream_begin(c, &L);
	for (;;) {
		if (c->spec->mode == BENCH_COPY)
			bench_stamp(c->buf, size, L.seq);
		if ((rc = put_rec(c, s, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		int was_timed = L.timed;
		if (bench_stream_sent(c, &L, 1))
			break;
		if (!was_timed && L.timed)
			snap(s, &s->w0), s->have_w0 = 1;
	}
	bench_stream_end(c, &L);
	bench_stamp(c->buf, size, BENCH_STOP);
	rc = put_rec(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

static void bcast_detach(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	if (c->side == 0)
		return; /* the parent keeps them for finish() */
	if (s->tx)
		shmring_bcast_close(s->tx);
	if (s->rx)
		shmring_bcast_close(s->rx);
	s->tx = s->rx = NULL;
}

static void bcast_finish(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	uint64_t n = c->spec->test == BENCH_RTT ? c->nsamples : c->msgs;
	if (!s->have_w0 || n == 0)
		return;
	struct bench_wstats w1;
	snap(s, &w1);
	c->wake_per_msg = (double)(w1.wakes - s->w0.wakes) / (double)n;
	c->sleeps_per_msg = (double)(w1.sleeps - s->w0.sleeps) / (double)n;
}

static void bcast_teardown(struct bench_ctx *c)
{
	struct bcast_state *s = st(c);
	if (!s)
		return;
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	if (s->tx)
		shmring_bcast_close(s->tx);
	if (s->rx)
		shmring_bcast_close(s->rx);
	free(s);
	c->priv = NULL;
}

const struct bench_transport bench_tr_bcast = {
	.name = "bcast",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING | BENCH_CAP_LOSSY,
	.setup = bcast_setup,
	.attach = bcast_attach,
	.rtt = bcast_rtt,
	.stream = bcast_stream,
	.detach = bcast_detach,
	.finish = bcast_finish,
	.teardown = bcast_teardown,
};
