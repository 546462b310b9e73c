/* SPDX-License-Identifier: MIT */
/*
 * shmring SPSC rings: `spsc` polls (bounded spin of --spin-us, then the library's
 * blocking call), `spsc-blocking` uses the blocking calls with a spin of 0, so it
 * sleeps every time it has to wait.
 *
 * A round trip uses two rings (a->b, b->a); streaming uses one.
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
	struct bench_shm b;  /* first: the shared life cycle sees only this */
	int blocking;
};

static uint64_t pow2_at_least(uint64_t x)
{
	uint64_t p = 4096;
	while (p < x)
		p <<= 1;
	return p;
}

/* Enough for one record in flight (round trip) or two batches (streaming: a batch the
 * ring cannot hold would run smaller than the test's name says); the default 1 MiB
 * where that is enough, as a user would have it. */
static uint64_t capacity_for(const struct bench_spec *s, const struct bench_cfg *cfg)
{
	uint64_t rec = (s->size + 2 * SHMRING_SPSC_HDR + 7) & ~(uint64_t)7;
	uint64_t n = s->batch > 2 ? s->batch : 2;
	uint64_t need = s->test == BENCH_STREAM ? 2 * n * rec : 2 * rec + 64;
	uint64_t cap = pow2_at_least(need);
	if (cfg->capacity >= need) /* --capacity, where the records fit */
		return pow2_at_least(cfg->capacity);
	return cap < SHMRING_SPSC_DEFAULT_CAPACITY ? SHMRING_SPSC_DEFAULT_CAPACITY : cap;
}

static struct spsc_state *st(struct bench_ctx *c)
{
	return c->priv;
}

static int create(struct bench_ctx *c, int back, void **h)
{
	struct shmring_spsc_opts o = {.capacity = capacity_for(c->spec, c->cfg)};
	struct shmring_spsc *r = NULL;
	int rc = shmring_spsc_create(NULL, &o, back ? SHMRING_ROLE_CONSUMER : SHMRING_ROLE_PRODUCER,
				     &r);
	*h = r;
	return rc;
}

static int open_fd(int fd, int producer, void **h)
{
	struct shmring_spsc *r = NULL;
	uint32_t role = producer ? SHMRING_ROLE_PRODUCER : SHMRING_ROLE_CONSUMER;
	int rc = shmring_spsc_open_fd(fd, role, &r);
	*h = r;
	return rc;
}

BENCH_SHM_HANDLE_FNS(spsc)
BENCH_SHM_DEMOTE_FN(spsc)

static const struct bench_shm_kind kind = {
	.create_what = "spsc_create",
	.open_what = "spsc_open_fd",
	.create = create,
	.open = open_fd,
	BENCH_SHM_HANDLE_OPS(spsc),
	BENCH_SHM_DEMOTE_OP(spsc),
};

static int spsc_setup_common(struct bench_ctx *c, int blocking)
{
	struct spsc_state *s = bench_shm_alloc(c, &kind, sizeof *s);
	if (!s)
		return bench_fail(c, -ENOMEM, "no memory");
	s->blocking = blocking;
	return bench_shm_create(c, &s->b);
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
	int rc = bench_shm_attach(c);
	if (rc < 0 || !s->blocking)
		return rc;
	if (s->b.tx)
		shmring_spsc_set_spin(s->b.tx, 0);
	if (s->b.rx)
		shmring_spsc_set_spin(s->b.rx, 0);
	return 0;
}

/* ---- one message each way ---- */

static inline int get_room(struct bench_ctx *c, struct spsc_state *s, size_t len, void **p)
{
	int rc;
	if (s->blocking)
		BENCH_WAIT(rc, shmring_spsc_reserve_wait(s->b.tx, len, p, BENCH_WAIT_MS));
	else
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_spsc_reserve(s->b.tx, len, p),
				     shmring_spsc_reserve_wait(s->b.tx, len, p, BENCH_WAIT_MS));
	return rc;
}

static inline int get_rec(struct bench_ctx *c, struct spsc_state *s, struct shmring_rec *rec)
{
	int rc;
	if (s->blocking)
		BENCH_WAIT(rc, shmring_spsc_peek_wait(s->b.rx, rec, BENCH_WAIT_MS));
	else
		BENCH_SPIN_THEN_WAIT(c, rc, shmring_spsc_peek(s->b.rx, rec),
				     shmring_spsc_peek_wait(s->b.rx, rec, BENCH_WAIT_MS));
	return rc;
}

/* Send one message stamped seq (from c->buf in copy mode). */
static inline int put_msg(struct bench_ctx *c, const uint8_t *src, uint64_t seq)
{
	struct spsc_state *s = st(c);
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && s->blocking) {
		BENCH_WAIT(rc, shmring_spsc_send(s->b.tx, src, size, BENCH_WAIT_MS));
		return rc;
	}
	void *p = NULL;
	if ((rc = get_room(c, s, size, &p)) < 0)
		return rc;
	if (c->spec->mode == BENCH_COPY)
		bench_copy(p, src, size);
	else
		bench_stamp_shared(p, size, seq);
	rc = shmring_spsc_commit(s->b.tx);
	return rc < 0 ? rc : 0;
}

/* Receive one message; its stamp in *seq (payload in c->rbuf in copy mode). */
static inline int take_msg(struct bench_ctx *c, uint64_t *seq)
{
	struct spsc_state *s = st(c);
	size_t size = c->spec->size;
	int rc;
	if (c->spec->mode == BENCH_COPY && s->blocking) {
		BENCH_WAIT(rc, shmring_spsc_recv(s->b.rx, c->rbuf, size, BENCH_WAIT_MS));
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
	shmring_spsc_release(s->b.rx);
	return 0;
}

static int spsc_rtt(struct bench_ctx *c)
{
	return bench_shm_rtt(c, put_msg, take_msg);
}

/* Streaming producer: batches of up to spec->batch reservations, one commit each. */
static int send_batch(struct bench_ctx *c, uint64_t seq)
{
	struct spsc_state *s = st(c);
	size_t size = c->spec->size;
	unsigned batch = c->spec->batch;
	int copy = c->spec->mode == BENCH_COPY;
	unsigned k = 0;
	int rc;
	if (batch == 1 || (copy && s->blocking))
		return bench_shm_send1(c, put_msg, seq);
	for (; k < batch; k++) {
		void *p = NULL;
		rc = shmring_spsc_reserve(s->b.tx, size, &p);
		if (rc == -EAGAIN && k > 0)
			break; /* full: publish what we have */
		if (rc == -EAGAIN)
			rc = get_room(c, s, size, &p);
		if (rc < 0)
			return bench_fail(c, rc, "reserve: %s", shmring_strerror(rc));
		if (copy) {
			bench_stamp(c->buf, size, seq + k);
			bench_copy(p, c->buf, size);
		} else {
			bench_stamp_shared(p, size, seq + k);
		}
	}
	if ((rc = shmring_spsc_commit(s->b.tx)) < 0)
		return bench_fail(c, rc, "commit: %s", shmring_strerror(rc));
	return (int)k;
}

/* Streaming consumer: up to spec->batch peeks, one release. */
static int spsc_consume(struct bench_ctx *c)
{
	struct spsc_state *s = st(c);
	size_t size = c->spec->size;
	unsigned batch = c->spec->batch;
	int copy = c->spec->mode == BENCH_COPY;
	struct bench_rx rx = {0};
	uint64_t seq;
	int rc;
	if (batch == 1 || (copy && s->blocking))
		return bench_shm_consume(c, take_msg);
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
				shmring_spsc_release(s->b.rx);
				return 0;
			}
			if (++k == batch)
				break;
			rc = shmring_spsc_peek(s->b.rx, &rec);
			if (rc == -EAGAIN)
				break;
			if (rc < 0)
				return bench_fail(c, rc, "peek: %s", shmring_strerror(rc));
		}
		shmring_spsc_release(s->b.rx);
	}
}

static int spsc_stream(struct bench_ctx *c)
{
	return c->side == 0 ? bench_shm_produce(c, send_batch, put_msg) : spsc_consume(c);
}

const struct bench_transport bench_tr_spsc = {
	.name = "spsc",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY | BENCH_CAP_SAME |
		BENCH_CAP_BATCH | BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = spsc_setup,
	.attach = spsc_attach,
	.rtt = spsc_rtt,
	.stream = spsc_stream,
	.detach = bench_shm_detach,
	.finish = bench_shm_finish,
	.teardown = bench_shm_teardown,
};

const struct bench_transport bench_tr_spsc_blocking = {
	.name = "spsc-blocking",
	.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_ZC | BENCH_CAP_COPY | BENCH_CAP_SAME |
		BENCH_CAP_SIZES | BENCH_CAP_SHMRING,
	.setup = spsc_blocking_setup,
	.attach = spsc_attach,
	.rtt = spsc_rtt,
	.stream = spsc_stream,
	.detach = bench_shm_detach,
	.finish = bench_shm_finish,
	.teardown = bench_shm_teardown,
};
