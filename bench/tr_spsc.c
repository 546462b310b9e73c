/* SPDX-License-Identifier: MIT */
/*
 * shmring SPSC rings: `spsc` polls (bounded spin of --spin-us, then the library's
 * blocking call), `spsc-blocking` uses the blocking calls with a spin of 0, so it
 * sleeps every time it has to wait.
 *
 * A round trip uses two rings (a->b, b->a); streaming uses one. The rings are
 * anonymous (memfd): the parent creates them, and the child opens them again from a
 * duplicate of the descriptor (handles do not survive fork), so nothing is left in
 * /dev/shm if the benchmark is killed.
 *
 * zero-copy: reserve, write the stamps in place, commit; peek, read the stamps in
 * place, release. copy: the same with a memcpy of the whole payload from / to a
 * private buffer (spsc), or the library's shmring_spsc_send() / shmring_spsc_recv()
 * (spsc-blocking).
 */
#include "bench_shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct spsc_state {
	int blocking;
	int fd_ab, fd_ba;              /* duplicates for the child; -1 when absent */
	struct shmring_spsc *tx, *rx;  /* this side's handles */
	struct bench_wstats w0;        /* at the start of the timed part */
	int have_w0;
};

static uint64_t pow2_at_least(uint64_t x)
{
	uint64_t p = 4096;
	while (p < x)
		p <<= 1;
	return p;
}

/* Enough for one record in flight (round trip) or several (streaming); the default
 * 1 MiB where that is enough, as a user would have it. */
static uint64_t capacity_for(const struct bench_spec *s, const struct bench_cfg *cfg)
{
	uint64_t rec = (s->size + 2 * SHMRING_SPSC_HDR + 7) & ~(uint64_t)7;
	uint64_t need = s->test == BENCH_STREAM ? 4 * rec : 2 * rec + 64;
	uint64_t cap = pow2_at_least(need);
	if (cfg->capacity >= 2 * rec + 64) /* --capacity, where the records fit */
		return pow2_at_least(cfg->capacity);
	return cap < SHMRING_SPSC_DEFAULT_CAPACITY ? SHMRING_SPSC_DEFAULT_CAPACITY : cap;
}

static struct spsc_state *st(struct bench_ctx *c)
{
	return c->priv;
}

static int spsc_setup_common(struct bench_ctx *c, int blocking)
{
	struct spsc_state *s = calloc(1, sizeof *s);
	if (!s)
		return bench_fail(c, -ENOMEM, "no memory");
	c->priv = s;
	s->blocking = blocking;
	s->fd_ab = s->fd_ba = -1;
	struct shmring_spsc_opts o = {.capacity = capacity_for(c->spec, c->cfg)};
	int rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &s->tx);
	if (rc < 0)
		return bench_fail(c, rc, "spsc_create: %s (%s)", shmring_strerror(rc),
				  shmring_last_error_detail());
	s->fd_ab = dup(shmring_spsc_fd(s->tx));
	if (c->spec->test == BENCH_RTT) {
		rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_CONSUMER, &s->rx);
		if (rc < 0)
			return bench_fail(c, rc, "spsc_create: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
		s->fd_ba = dup(shmring_spsc_fd(s->rx));
	}
	return 0;
}

static int spsc_setup(struct bench_ctx *c)
{
	return spsc_setup_common(c, 0);
}

static int spsc_blocking_setup(struct bench_ctx *c)
{
	return spsc_setup_common(c, 1);
}

static int spsc_attach(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	int rc = 0;
	if (c->side == 1) {
		/* the inherited handles belong to the parent: open our own */
		s->tx = s->rx = NULL;
		rc = shmring_spsc_open_fd(s->fd_ab, SHMRING_ROLE_CONSUMER, &s->rx);
		if (rc == 0 && s->fd_ba >= 0)
			rc = shmring_spsc_open_fd(s->fd_ba, SHMRING_ROLE_PRODUCER, &s->tx);
		if (rc < 0)
			return bench_fail(c, rc, "spsc_open_fd: %s (%s)", shmring_strerror(rc),
					  shmring_last_error_detail());
	}
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	s->fd_ab = s->fd_ba = -1;
	if (s->tx) {
		bench_prefault(shmring_spsc_seg(s->tx), 1);
		if (s->blocking)
			shmring_spsc_set_spin(s->tx, 0);
	}
	if (s->rx) {
		bench_prefault(shmring_spsc_seg(s->rx), 1);
		if (s->blocking)
			shmring_spsc_set_spin(s->rx, 0);
	}
	return 0;
}

static void snap(struct spsc_state *s, struct bench_wstats *w)
{
	memset(w, 0, sizeof *w);
	if (s->tx)
		bench_wstats_add(w, shmring_spsc_seg(s->tx));
	if (s->rx)
		bench_wstats_add(w, shmring_spsc_seg(s->rx));
}

/* ---- one message each way ---- */

static inline int get_room(struct bench_ctx *c, struct spsc_state *s, size_t len, void **p)
{
	int rc;
	if (s->blocking)
		BENCH_WAIT(rc, shmring_spsc_reserve_wait(s->tx, len, p, BENCH_WAIT_MS));
	else
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_spsc_reserve(s->tx, len, p),
				     shmring_spsc_reserve_wait(s->tx, len, p, BENCH_WAIT_MS));
	return rc;
}

static inline int get_rec(struct bench_ctx *c, struct spsc_state *s, struct shmring_rec *rec)
{
	int rc;
	if (s->blocking)
		BENCH_WAIT(rc, shmring_spsc_peek_wait(s->rx, rec, BENCH_WAIT_MS));
	else
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_spsc_peek(s->rx, rec),
				     shmring_spsc_peek_wait(s->rx, rec, BENCH_WAIT_MS));
	return rc;
}

/* Send one message stamped seq (from c->buf in copy mode). */
static inline int put_msg(struct bench_ctx *c, struct spsc_state *s, const uint8_t *src,
			  uint64_t seq)
{
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && s->blocking) {
		BENCH_WAIT(rc, shmring_spsc_send(s->tx, src, size, BENCH_WAIT_MS));
		return rc;
	}
	void *p = NULL;
	if ((rc = get_room(c, s, size, &p)) < 0)
		return rc;
	if (c->spec->mode == BENCH_COPY)
		bench_copy(p, src, size);
	else
		bench_stamp_shared(p, size, seq);
	rc = shmring_spsc_commit(s->tx);
	return rc < 0 ? rc : 0;
}

/* Receive one message; its stamp in *seq (payload in c->rbuf in copy mode). */
static inline int take_msg(struct bench_ctx *c, struct spsc_state *s, uint64_t *seq)
{
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && s->blocking) {
		BENCH_WAIT(rc, shmring_spsc_recv(s->rx, c->rbuf, size, BENCH_WAIT_MS));
		if (rc < 0)
			return rc;
		if ((size_t)rc != size)
			return -EPROTO;
		*seq = bench_unstamp(c->rbuf, size);
		return 0;
	}
	struct shmring_rec rec = {0};
	if ((rc = get_rec(c, s, &rec)) < 0)
		return rc;
	if (rec.len != size)
		return -EPROTO;
	if (c->spec->mode == BENCH_COPY) {
		bench_copy(c->rbuf, rec.data, size);
		*seq = bench_unstamp(c->rbuf, size);
	} else {
		*seq = bench_unstamp_shared(rec.data, size);
	}
	shmring_spsc_release(s->rx);
	return 0;
}

static int spsc_rtt(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	size_t size = c->spec->size;
	uint64_t seq;
	int rc;
	if (c->side == 1) {
		for (;;) {
			if ((rc = take_msg(c, s, &seq)) < 0)
				return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
			if (seq == BENCH_STOP)
				return 0;
			if ((rc = put_msg(c, s, c->rbuf, seq)) < 0) /* echo */
				return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	for (;;) {
		if (c->spec->mode == BENCH_COPY)
			bench_stamp(c->buf, size, L.seq);
		if ((rc = put_msg(c, s, c->buf, L.seq)) < 0)
			return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
		if ((rc = take_msg(c, s, &seq)) < 0)
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
	rc = put_msg(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

/* Streaming producer: batches of up to spec->batch reservations, one commit each. */
static int spsc_produce(struct bench_ctx *c, struct spsc_state *s)
{
	size_t size = c->spec->size;
	unsigned batch = c->spec->batch;
	int copy = c->spec->mode == BENCH_COPY;
	struct bench_loop L;
	int rc;
	bench_stream_begin(c, &L);
	for (;;) {
		unsigned k = 0;
		if (batch == 1 || (copy && s->blocking)) {
			if (copy)
				bench_stamp(c->buf, size, L.seq);
			if ((rc = put_msg(c, s, c->buf, L.seq)) < 0)
				return bench_fail(c, rc, "send: %s", shmring_strerror(rc));
			k = 1;
		} else {
			for (; k < batch; k++) {
				void *p = NULL;
				rc = shmring_spsc_reserve(s->tx, size, &p);
				if (rc == -EAGAIN && k > 0)
					break; /* full: publish what we have */
				if (rc == -EAGAIN)
					rc = get_room(c, s, size, &p);
				if (rc < 0)
					return bench_fail(c, rc, "reserve: %s", shmring_strerror(rc));
				if (copy) {
					bench_stamp(c->buf, size, L.seq + k);
					bench_copy(p, c->buf, size);
				} else {
					bench_stamp_shared(p, size, L.seq + k);
				}
			}
			if ((rc = shmring_spsc_commit(s->tx)) < 0)
				return bench_fail(c, rc, "commit: %s", shmring_strerror(rc));
		}
		int was_timed = L.timed;
		if (bench_stream_sent(c, &L, k))
			break;
		if (!was_timed && L.timed)
			snap(s, &s->w0), s->have_w0 = 1;
	}
	bench_stream_end(c, &L);
	bench_stamp(c->buf, size, BENCH_STOP);
	rc = put_msg(c, s, c->buf, BENCH_STOP);
	return rc < 0 ? bench_fail(c, rc, "send: %s", shmring_strerror(rc)) : 0;
}

/* Streaming consumer: up to spec->batch peeks, one release. */
static int spsc_consume(struct bench_ctx *c, struct spsc_state *s)
{
	size_t size = c->spec->size;
	unsigned batch = c->spec->batch;
	int copy = c->spec->mode == BENCH_COPY;
	struct bench_rx rx = {0};
	uint64_t seq;
	int rc;
	if (batch == 1 || (copy && s->blocking)) {
		for (;;) {
			if ((rc = take_msg(c, s, &seq)) < 0)
				return bench_fail(c, rc, "receive: %s", shmring_strerror(rc));
			if (bench_rx(c, &rx, seq))
				return 0;
		}
	}
	for (;;) {
		struct shmring_rec rec = {0};
		if ((rc = get_rec(c, s, &rec)) < 0)
			return bench_fail(c, rc, "peek: %s", shmring_strerror(rc));
		for (unsigned k = 0;;) {
			if (rec.len != size)
				return bench_fail(c, -EPROTO, "record of %u bytes, want %zu", rec.len, size);
			if (copy) {
				bench_copy(c->rbuf, rec.data, size);
				seq = bench_unstamp(c->rbuf, size);
			} else {
				seq = bench_unstamp_shared(rec.data, size);
			}
			if (bench_rx(c, &rx, seq)) {
				shmring_spsc_release(s->rx);
				return 0;
			}
			if (++k == batch)
				break;
			rc = shmring_spsc_peek(s->rx, &rec);
			if (rc == -EAGAIN)
				break;
			if (rc < 0)
				return bench_fail(c, rc, "peek: %s", shmring_strerror(rc));
		}
		shmring_spsc_release(s->rx);
	}
}

static int spsc_stream(struct bench_ctx *c)
{
	return c->side == 0 ? spsc_produce(c, st(c)) : spsc_consume(c, st(c));
}

/* The parent keeps its handles until finish() has read the statistics. */
static void spsc_detach(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	if (c->side == 0)
		return;
	if (s->tx)
		shmring_spsc_close(s->tx);
	if (s->rx)
		shmring_spsc_close(s->rx);
	s->tx = s->rx = NULL;
}

static void spsc_finish(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	if (!s->have_w0)
		return;
	struct bench_wstats w1;
	snap(s, &w1);
	uint64_t n = c->spec->test == BENCH_RTT ? c->nsamples : c->msgs;
	if (n == 0)
		return;
	c->wake_per_msg = (double)(w1.wakes - s->w0.wakes) / (double)n;
	c->sleeps_per_msg = (double)(w1.sleeps - s->w0.sleeps) / (double)n;
}

static void spsc_teardown(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	if (!s)
		return;
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	if (s->tx)
		shmring_spsc_close(s->tx);
	if (s->rx)
		shmring_spsc_close(s->rx);
	free(s);
	c->priv = NULL;
}

const struct bench_transport bench_tr_spsc = {
	.name = "spsc",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY | BENCH_CAP_SAME |
		BENCH_CAP_BATCH | BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = spsc_setup,
	.attach = spsc_attach,
	.rtt = spsc_rtt,
	.stream = spsc_stream,
	.detach = spsc_detach,
	.finish = spsc_finish,
	.teardown = spsc_teardown,
};

const struct bench_transport bench_tr_spsc_blocking = {
	.name = "spsc-blocking",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY | BENCH_CAP_SAME |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = spsc_blocking_setup,
	.attach = spsc_attach,
	.rtt = spsc_rtt,
	.stream = spsc_stream,
	.detach = spsc_detach,
	.finish = spsc_finish,
	.teardown = spsc_teardown,
};
