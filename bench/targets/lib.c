/* SPDX-License-Identifier: MIT */
/*
 * The library's channels, as shmring-bench's zero-copy round trips use them: spsc with
 * 64-byte records over two default (1 MiB) rings; pool with 1080p and 4K NV12 frames
 * over two pools each (4 buffers, one block subscriber). Only the stamps (first and
 * last 8 bytes) are written into and read from a message in place. The server answers
 * before it gives the request back: the reply is on the round trip's path, the release
 * is not. spsc-blocking: two more spsc rings whose handles never spin (spin 0), so each
 * side sleeps at every wait, as shmring-bench's spsc-blocking. spsc-64-dem: two more
 * whose producers demote what they commit (shmring_spsc_set_demote). pool-1080p-dem:
 * the 1080p pools, the sender calling shmring_demote() on its two stamp lines before it
 * publishes.
 */
#include "targets.h"

#include "shmring/pool.h"
#include "shmring/spsc.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define SPSC_SIZE 64u
static const uint64_t frame_size[2] = {3110400u, 12441600u};
#define POOL_4K 2 /* pool_trip()'s arg: the 4K pool, frame_size[1] (else 1080p) */

struct tg_lib {
	struct shmring_spsc *stx, *srx, *btx, *brx, *dtx, *drx;
	struct shmring_pool *ptx[2], *prx[2];
	/* the server's ends: spsc a, b; pool 1080p a, b; 4K a, b; blocking a, b; demoting
	 * a, b */
	int fd[10];
};

static struct tg_lib lib;

int tg_lib_setup(struct tg_ctx *c)
{
	struct shmring_spsc_opts so = {0};
	struct shmring_pool_sub_opts sub = {.policy = SHMRING_POOL_BLOCK};
	int rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &lib.stx);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_CONSUMER, &lib.srx);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &lib.btx);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_CONSUMER, &lib.brx);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &lib.dtx);
	if (rc == 0)
		rc = shmring_spsc_create(NULL, &so, SHMRING_ROLE_CONSUMER, &lib.drx);
	if (rc == 0)
		rc = shmring_spsc_set_demote(lib.dtx, 1);
	for (int k = 0; k < 2 && rc == 0; k++) {
		struct shmring_pool_opts po = {
			.buf_size = frame_size[k], .nbufs = 4, .max_subs = 1, .max_held = 1,
		};
		rc = shmring_pool_create(NULL, &po, NULL, &lib.ptx[k]);
		if (rc == 0)
			rc = shmring_pool_create(NULL, &po, &sub, &lib.prx[k]);
	}
	if (rc)
		return rc;
	/* handles do not survive fork(): the server opens the channels again */
	lib.fd[0] = dup(shmring_spsc_fd(lib.stx));
	lib.fd[1] = dup(shmring_spsc_fd(lib.srx));
	for (int k = 0; k < 2; k++) {
		lib.fd[2 + 2 * k] = dup(shmring_pool_fd(lib.ptx[k]));
		lib.fd[3 + 2 * k] = dup(shmring_pool_fd(lib.prx[k]));
	}
	lib.fd[6] = dup(shmring_spsc_fd(lib.btx));
	lib.fd[7] = dup(shmring_spsc_fd(lib.brx));
	lib.fd[8] = dup(shmring_spsc_fd(lib.dtx));
	lib.fd[9] = dup(shmring_spsc_fd(lib.drx));
	for (int i = 0; i < 10; i++)
		if (lib.fd[i] < 0)
			return -errno;
	shmring_spsc_set_spin(lib.btx, 0);
	shmring_spsc_set_spin(lib.brx, 0);
	c->lib = &lib;
	return 0;
}

int tg_lib_attach(struct tg_ctx *c)
{
	struct tg_lib *l = &lib;
	struct shmring_pool_sub_opts sub = {.policy = SHMRING_POOL_BLOCK};
	/* the parent's handles stay behind, unused: the server acts only through its own */
	int rc = shmring_spsc_open_fd(l->fd[0], SHMRING_ROLE_CONSUMER, &l->srx);
	if (rc == 0)
		rc = shmring_spsc_open_fd(l->fd[1], SHMRING_ROLE_PRODUCER, &l->stx);
	for (int k = 0; k < 2 && rc == 0; k++) {
		rc = shmring_pool_subscribe_fd(l->fd[2 + 2 * k], &sub, &l->prx[k]);
		if (rc == 0)
			rc = shmring_pool_open_producer_fd(l->fd[3 + 2 * k], &l->ptx[k]);
	}
	if (rc == 0)
		rc = shmring_spsc_open_fd(l->fd[6], SHMRING_ROLE_CONSUMER, &l->brx);
	if (rc == 0)
		rc = shmring_spsc_open_fd(l->fd[7], SHMRING_ROLE_PRODUCER, &l->btx);
	if (rc == 0)
		rc = shmring_spsc_open_fd(l->fd[8], SHMRING_ROLE_CONSUMER, &l->drx);
	if (rc == 0)
		rc = shmring_spsc_open_fd(l->fd[9], SHMRING_ROLE_PRODUCER, &l->dtx);
	if (rc == 0)
		rc = shmring_spsc_set_demote(l->dtx, 1);
	if (rc == 0) {
		shmring_spsc_set_spin(l->btx, 0);
		shmring_spsc_set_spin(l->brx, 0);
	}
	c->lib = l;
	return rc;
}

static void stamp(void *p, size_t len, uint64_t seq)
{
	memcpy(p, &seq, 8);
	memcpy((unsigned char *)p + len - 8, &seq, 8);
}

static int unstamp(const void *p, size_t len, uint64_t seq)
{
	uint64_t x, y;
	memcpy(&x, p, 8);
	memcpy(&y, (const unsigned char *)p + len - 8, 8);
	return x == seq && y == seq ? 0 : -EPROTO;
}

/* ---- spsc ---- */

static int spsc_send(struct tg_ctx *c, struct shmring_spsc *tx, uint64_t seq)
{
	void *buf;
	unsigned n = 0;
	int rc;
	while ((rc = shmring_spsc_reserve(tx, SPSC_SIZE, &buf)) == -EAGAIN)
		if ((rc = tg_spin(c, &n)) != 0)
			return rc;
	if (rc)
		return rc;
	stamp(buf, SPSC_SIZE, seq);
	rc = shmring_spsc_commit(tx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

static int spsc_recv(struct tg_ctx *c, struct shmring_spsc *rx, uint64_t seq)
{
	struct shmring_rec r = {0};
	unsigned n = 0;
	int rc;
	while ((rc = shmring_spsc_peek(rx, &r)) == -EAGAIN)
		if ((rc = tg_spin(c, &n)) != 0)
			return rc;
	if (rc)
		return rc;
	return r.len == SPSC_SIZE ? unstamp(r.data, SPSC_SIZE, seq) : -EPROTO;
}

static int spsc_done(struct shmring_spsc *rx)
{
	int rc = shmring_spsc_release(rx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

/* One round trip: the client sends and reads the echo; the server reads the request,
 * answers, and only then gives the request back. arg TG_DEMOTE: the pair of rings whose
 * producers demote. */
static int spsc_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	struct shmring_spsc *tx = arg & TG_DEMOTE ? c->lib->dtx : c->lib->stx;
	struct shmring_spsc *rx = arg & TG_DEMOTE ? c->lib->drx : c->lib->srx;
	int rc = server ? spsc_recv(c, rx, seq) : spsc_send(c, tx, seq);
	if (rc == 0)
		rc = server ? spsc_send(c, tx, seq) : spsc_recv(c, rx, seq);
	return rc ? rc : spsc_done(rx);
}

const struct tg_variant tg_spsc64 = {
	"spsc-64", "shmring spsc, 64-byte records", spsc_trip, 0, 0,
};

const struct tg_variant tg_spsc64d = {
	"spsc-64-dem", "spsc-64, the producers demoting (set_demote)", spsc_trip, TG_DEMOTE, 0,
};

/* ---- spsc-blocking ---- */

/* The blocking calls wait 100 ms at a time; the peer's death ends them with -EPIPE,
 * and a timeout checks that the peer lives anyway (a peer stuck elsewhere). */
#define BLOCK_MS 100

static int spsc_b_send(struct tg_ctx *c, uint64_t seq)
{
	void *buf;
	int rc;
	while ((rc = shmring_spsc_reserve_wait(c->lib->btx, SPSC_SIZE, &buf, BLOCK_MS)) ==
	       -ETIMEDOUT)
		if ((rc = tg_spin_slow(c, 0)) != 0) /* 0: the liveness check alone */
			return rc;
	if (rc)
		return rc;
	stamp(buf, SPSC_SIZE, seq);
	rc = shmring_spsc_commit(c->lib->btx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

static int spsc_b_recv(struct tg_ctx *c, uint64_t seq)
{
	struct shmring_rec r = {0};
	int rc;
	while ((rc = shmring_spsc_peek_wait(c->lib->brx, &r, BLOCK_MS)) == -ETIMEDOUT)
		if ((rc = tg_spin_slow(c, 0)) != 0)
			return rc;
	if (rc)
		return rc;
	if (r.len != SPSC_SIZE || (rc = unstamp(r.data, SPSC_SIZE, seq)) != 0)
		return rc ? rc : -EPROTO;
	rc = shmring_spsc_release(c->lib->brx);
	return rc == 1 ? 0 : rc < 0 ? rc : -EIO;
}

static int spsc_b_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	(void)arg;
	int rc = server ? spsc_b_recv(c, seq) : spsc_b_send(c, seq);
	if (rc == 0)
		rc = server ? spsc_b_send(c, seq) : spsc_b_recv(c, seq);
	return rc;
}

const struct tg_variant tg_spsc_blocking = {
	"spsc-blocking", "shmring spsc, 64-byte records, sleeping at every wait", spsc_b_trip, 0,
	1,
};

/* ---- pool ---- */

static int pool_send(struct tg_ctx *c, int k, uint64_t seq, int dem)
{
	struct shmring_pool_frame f;
	unsigned n = 0;
	int rc;
	while ((rc = shmring_pool_loan(c->lib->ptx[k], &f)) == -EAGAIN)
		if ((rc = tg_spin(c, &n)) != 0)
			return rc;
	if (rc)
		return rc;
	stamp(f.data, frame_size[k], seq);
	if (dem) {
		shmring_demote(f.data, 8);
		shmring_demote((unsigned char *)f.data + frame_size[k] - 8, 8);
	}
	f.len = frame_size[k];
	rc = shmring_pool_publish(c->lib->ptx[k], &f);
	return rc == 1 ? 0 : rc < 0 ? rc : -ENOTCONN;
}

static int pool_recv(struct tg_ctx *c, int k, uint64_t seq, struct shmring_pool_frame *f)
{
	unsigned n = 0;
	int rc;
	while ((rc = shmring_pool_take(c->lib->prx[k], f)) == -EAGAIN)
		if ((rc = tg_spin(c, &n)) != 0)
			return rc;
	if (rc)
		return rc;
	return f->len == frame_size[k] ? unstamp(f->data, frame_size[k], seq) : -EPROTO;
}

/* One round trip on pool arg & POOL_4K; the server answers before it gives the request
 * back. */
static int pool_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	int k = arg & POOL_4K ? 1 : 0, dem = arg & TG_DEMOTE;
	struct shmring_pool_frame f;
	int rc = server ? pool_recv(c, k, seq, &f) : pool_send(c, k, seq, dem);
	if (rc == 0)
		rc = server ? pool_send(c, k, seq, dem) : pool_recv(c, k, seq, &f);
	return rc ? rc : shmring_pool_release(c->lib->prx[k], &f);
}

const struct tg_variant tg_pool1080 = {
	"pool-1080p", "shmring pool, 1080p NV12 frames", pool_trip, 0, 0,
};
const struct tg_variant tg_pool1080d = {
	"pool-1080p-dem", "pool-1080p, the sender demoting its two stamp lines", pool_trip,
	TG_DEMOTE, 0,
};
const struct tg_variant tg_pool4k = {
	"pool-4k", "shmring pool, 4K NV12 frames", pool_trip, POOL_4K, 0,
};
