/* SPDX-License-Identifier: MIT */
/* The life cycle every shmring transport shares (bench_shm.h). */
#include "bench_shm.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *bench_shm_alloc(struct bench_ctx *c, const struct bench_shm_kind *k, size_t size)
{
	struct bench_shm *s = calloc(1, size);
	if (!s)
		return NULL;
	c->priv = s;
	s->kind = k;
	s->fd_ab = s->fd_ba = -1;
	return s;
}

int bench_shm_create(struct bench_ctx *c, struct bench_shm *s)
{
	const struct bench_shm_kind *k = s->kind;
	int rc = k->create(c, 0, &s->tx);
	if (rc < 0)
		goto fail;
	s->fd_ab = dup(k->fd(s->tx));
	if (c->spec->test == BENCH_RTT) {
		if ((rc = k->create(c, 1, &s->rx)) < 0)
			goto fail;
		s->fd_ba = dup(k->fd(s->rx));
	}
	return 0;
fail:
	return bench_fail(c, rc, "%s: %s (%s)", k->create_what, shmring_strerror(rc),
			  shmring_last_error_detail());
}

int bench_shm_setup(struct bench_ctx *c, const struct bench_shm_kind *k)
{
	struct bench_shm *s = bench_shm_alloc(c, k, sizeof *s);
	if (!s)
		return bench_fail(c, -ENOMEM, "no memory");
	return bench_shm_create(c, s);
}

static void close_fds(struct bench_shm *s)
{
	if (s->fd_ab >= 0)
		close(s->fd_ab);
	if (s->fd_ba >= 0)
		close(s->fd_ba);
	s->fd_ab = s->fd_ba = -1;
}

static void prefault(const struct bench_shm_kind *k, void *h, int producer)
{
	if (k->prefault)
		k->prefault(h, producer);
	else
		bench_prefault(k->seg(h), 1);
}

int bench_shm_attach(struct bench_ctx *c)
{
	struct bench_shm *s = bench_shm_st(c);
	const struct bench_shm_kind *k = s->kind;
	/* only the parent's side-0 process may use the handles it inherited */
	if (c->side == 1 || c->index != 0) {
		int rc;
		s->tx = s->rx = NULL;
		if (c->side == 0) {
			rc = k->open(s->fd_ab, 1, &s->tx);
		} else {
			rc = k->open(s->fd_ab, 0, &s->rx);
			if (rc == 0 && s->fd_ba >= 0)
				rc = k->open(s->fd_ba, 1, &s->tx);
		}
		if (rc < 0)
			return bench_fail(c, rc, "%s: %s (%s)", k->open_what, shmring_strerror(rc),
					  shmring_last_error_detail());
	}
	close_fds(s);
	if (s->tx && c->cfg->demote && k->set_demote) {
		int rc = k->set_demote(s->tx, 1);
		if (rc < 0)
			return bench_fail(c, rc, "set_demote: %s", shmring_strerror(rc));
	}
	if (s->tx)
		prefault(k, s->tx, 1);
	if (s->rx)
		prefault(k, s->rx, 0);
	return 0;
}

static void close_handles(struct bench_shm *s)
{
	if (s->tx)
		s->kind->close(s->tx);
	if (s->rx)
		s->kind->close(s->rx);
	s->tx = s->rx = NULL;
}

void bench_shm_detach(struct bench_ctx *c)
{
	if (c->side == 0 && c->index == 0)
		return; /* the parent keeps them for finish() */
	close_handles(bench_shm_st(c));
}

static void snap(const struct bench_shm *s, struct bench_wstats *w)
{
	const struct bench_shm_kind *k = s->kind;
	void *const h[2] = {s->tx, s->rx};
	memset(w, 0, sizeof *w);
	for (int i = 0; i < 2; i++) {
		if (!h[i])
			continue;
		bench_wstats_add(w, k->seg(h[i]));
		if (k->stats)
			k->stats(w, h[i]);
	}
}

void bench_shm_timed(struct bench_ctx *c)
{
	struct bench_shm *s = bench_shm_st(c);
	snap(s, &s->w0);
	s->have_w0 = 1;
}

void bench_shm_finish_n(struct bench_ctx *c, uint64_t n)
{
	struct bench_shm *s = bench_shm_st(c);
	if (!s->have_w0 || n == 0)
		return;
	struct bench_wstats w1;
	snap(s, &w1);
	c->wake_per_msg = (double)(w1.wakes - s->w0.wakes) / (double)n;
	c->sleeps_per_msg = (double)(w1.sleeps - s->w0.sleeps) / (double)n;
}

void bench_shm_finish(struct bench_ctx *c)
{
	bench_shm_finish_n(c, c->spec->test == BENCH_RTT ? c->nsamples : c->msgs);
}

void bench_shm_teardown(struct bench_ctx *c)
{
	struct bench_shm *s = bench_shm_st(c);
	if (!s)
		return;
	close_fds(s);
	close_handles(s);
	free(s);
	c->priv = NULL;
}
