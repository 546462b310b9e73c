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
 * The producer leaves the frame's ts_ns at 0, as most users will, so publish stamps it
 * (one clock read): that cost is part of the figure.
 */
#include "bench_shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pool_state {
	int fd_ab, fd_ba;               /* duplicates for the child; -1 when absent */
	struct shmring_pool *tx, *rx;   /* producer of one pool, subscriber of the other */
	struct bench_wstats w0;
	int have_w0;
};

static struct pool_state *st(struct bench_ctx *c)
{
	return c->priv;
}

static int pool_setup(struct bench_ctx *c)
{
	struct pool_state *s = calloc(1, sizeof *s);
	if (!s)
		return bench_fail(c, -ENOMEM, "no memory");
	c->priv = s;
	s->fd_ab = s->fd_ba = -1;
	struct shmring_pool_opts o = {
		.buf_size = c->spec->size, .nbufs = c->spec->test == BENCH_STREAM ? 8 : 4,
		.max_subs = 1, .max_held = 1,
	};
	struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
	int rc = shmring_pool_create(NULL, &o, NULL, &s->tx);
	if (rc < 0)
		return bench_fail(c, rc, "pool_create: %s (%s)", shmring_strerror(rc),
				  shmring_last_error_detail());
	s->fd_ab = dup(shmring_pool_fd(s->tx));
	if (c->spec->test == BENCH_RTT) {
		rc = shmring_pool_create(NULL, &o, &so, &s->rx);
		if (rc < 0)
			return bench_fail(c, rc, "pool_create: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
		s->fd_ba = dup(shmring_pool_fd(s->rx));
	}
	return 0;
}

static void prefault_sub(struct shmring_pool *p)
{
	bench_prefault(shmring_pool_seg(p), 1);
	/* the read-only view subscribers read frames through (a private field, used only
	 * to take its page faults before the timed part) */
	if (p->rodata)
		bench_prefault_range(p->rodata, p->data_size, 0);
}

static int pool_attach(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	int rc = 0;
	if (c->side == 1) {
		struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_BLOCK};
		s->tx = s->rx = NULL; /* the inherited handles are the parent's */
		rc = shmring_pool_subscribe_fd(s->fd_ab, &so, &s->rx);
		if (rc == 0 && s->fd_ba >= 0)
			rc = shmring_pool_open_producer_fd(s->fd_ba, &s->tx);
		if (rc < 0)
			return bench_fail(c, rc, "pool attach: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
	}
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	s->fd_ab = s->fd_ba = -1;
	if (s->tx)
		bench_prefault(shmring_pool_seg(s->tx), 1);
	if (s->rx)
		prefault_sub(s->rx);
	return 0;
}

static void snap(struct pool_state *s, struct bench_wstats *w)
{
	memset(w, 0, sizeof *w);
	if (s->tx)
		bench_wstats_add(w, shmring_pool_seg(s->tx));
	if (s->rx)
		bench_wstats_add(w, shmring_pool_seg(s->rx));
}

static inline int put_frame(struct bench_ctx *c, struct pool_state *s, const uint8_t *src,
			    uint64_t seq)
{
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
	f.len = size;
	rc = shmring_pool_publish(s->tx, &f);
	if (rc == 0)
		return -ENOTCONN; /* no subscriber got it */
	return rc < 0 ? rc : 0;
}

static inline int take_frame(struct bench_ctx *c, struct pool_state *s, uint64_t *seq)
{
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

static int pool_rtt(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 1) {
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
			if (seq != BENCH_STOP && (rc = put_frame(c, s, c->rbuf, seq)) < 0)
				return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
			if ((rc = shmring_pool_release(s->rx, &f)) < 0)
				return bench_fail(c, rc, "release: %s", shmring_strerror(rc));
			if (seq == BENCH_STOP)
				return 0;
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	for (;;) {
		if (c->spec->mode == BENCH_COPY)
			bench_stamp(c->buf, size, L.seq);
		if ((rc = put_frame(c, s, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		if ((rc = take_frame(c, s, &seq)) < 0)
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
	rc = put_frame(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

static int pool_stream(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 1) {
		struct bench_rx rx = {0};
		for (;;) {
			if ((rc = take_frame(c, s, &seq)) < 0)
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
		if ((rc = put_frame(c, s, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		int was_timed = L.timed;
		if (bench_stream_sent(c, &L, 1))
			break;
		if (!was_timed && L.timed)
			snap(s, &s->w0), s->have_w0 = 1;
	}
	bench_stream_end(c, &L);
	bench_stamp(c->buf, size, BENCH_STOP);
	rc = put_frame(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

static void pool_detach(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	if (c->side == 0)
		return; /* the parent keeps them for finish() */
	if (s->tx)
		shmring_pool_close(s->tx);
	if (s->rx)
		shmring_pool_close(s->rx);
	s->tx = s->rx = NULL;
}

static void pool_finish(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	uint64_t n = c->spec->test == BENCH_RTT ? c->nsamples : c->msgs;
	if (!s->have_w0 || n == 0)
		return;
	struct bench_wstats w1;
	snap(s, &w1);
	c->wake_per_msg = (double)(w1.wakes - s->w0.wakes) / (double)n;
	c->sleeps_per_msg = (double)(w1.sleeps - s->w0.sleeps) / (double)n;
}

static void pool_teardown(struct bench_ctx *c)
{
	struct pool_state *s = st(c);
	if (!s)
		return;
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	if (s->tx)
		shmring_pool_close(s->tx);
	if (s->rx)
		shmring_pool_close(s->rx);
	free(s);
	c->priv = NULL;
}

const struct bench_transport bench_tr_pool = {
	.name = "pool",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = pool_setup,
	.attach = pool_attach,
	.rtt = pool_rtt,
	.stream = pool_stream,
	.detach = pool_detach,
	.finish = pool_finish,
	.teardown = pool_teardown,
};
