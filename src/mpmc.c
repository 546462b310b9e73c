/* SPDX-License-Identifier: MIT */
/*
 * MPMC ring slow paths: create/attach/close, sleeping, and dead-participant recovery.
 * The design and its crash-tolerance argument are at the top of shmring/mpmc.h.
 */
#include "internal.h"
#include "shmring/mpmc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MS_NS UINT64_C(1000000)

static uint32_t phase_of(uint64_t w)
{
	return (uint32_t)(w >> 16) & 3u;
}

static int busy(uint64_t w)
{
	uint32_t ph = phase_of(w);
	return ph == SHMRING__MPMC_WRITING || ph == SHMRING__MPMC_READING;
}

static uint32_t owner_of(uint64_t w)
{
	return (uint32_t)(w & SHMRING__MPMC_OWNER_MASK);
}

static uint32_t gen_of(uint64_t w)
{
	return (uint32_t)(w >> 8) & 0xffu;
}

static uint64_t pos_of(uint64_t w)
{
	return w >> 18;
}

static struct shmring_hdr *hdr(const struct shmring_mpmc *r)
{
	return shmring_seg_hdr(r->seg);
}

int shmring__mpmc_broken(struct shmring_mpmc *r, int err)
{
	if (!r->broken)
		r->broken = err;
	return err;
}

void shmring__mpmc_flush_stats(struct shmring_mpmc *r)
{
	/* statistics, not synchronisation: relaxed */
	if (r->st_msgs)
		atomic_fetch_add_explicit(&hdr(r)->stats.msgs, r->st_msgs, memory_order_relaxed);
	if (r->st_bytes)
		atomic_fetch_add_explicit(&hdr(r)->stats.bytes, r->st_bytes, memory_order_relaxed);
	r->st_msgs = r->st_bytes = 0;
	r->st_ops = 0;
}

static void wake_all(struct shmring_mpmc *r)
{
	shmring_wake(r->seg, &r->ctrl->not_empty);
	shmring_wake(r->seg, &r->ctrl->not_full);
}

/* ---- recovery ---- */

/*
 * Give back the unfinished gated claim whose gate word is g: the cells after it with
 * the same owner word (a consumer's run may have gaps in it, left FREE(p + cap) and not
 * ours), last first, then the gate. Every step is a CAS from the owner's word, so a
 * concurrent or repeated revert changes each cell once. The run is found walking
 * forward; a partial earlier revert went last-first, so what is left of it is a prefix
 * (gaps aside). A batch spans at most SHMRING_MPMC_BATCH_MAX cells.
 */
static void revert_run(struct shmring_mpmc *r, uint64_t g)
{
	uint64_t p = pos_of(g);
	uint32_t ph = phase_of(g);
	uint64_t tag = g & SHMRING__MPMC_TAG_MASK & ~SHMRING__MPMC_GATE;
	uint32_t back = ph == SHMRING__MPMC_WRITING ? SHMRING__MPMC_FREE : SHMRING__MPMC_FULL;
	uint32_t limit = r->cap < SHMRING_MPMC_BATCH_MAX ? r->cap : SHMRING_MPMC_BATCH_MAX;
	uint32_t k = 1;
	for (uint32_t j = 1; j < limit; j++) {
		/* acquire: pairs with the owner's claim CAS (release half) */
		uint64_t w = shmring_load_acquire(&shmring__mpmc_cell(r, p + j)->word);
		if (w == shmring__mpmc_word(p + j, ph, tag))
			k = j + 1;
		else if (ph != SHMRING__MPMC_READING ||
			 w != shmring__mpmc_word(p + j + r->cap, SHMRING__MPMC_FREE, 0))
			break;
	}
	for (uint32_t j = k; j-- > 1;) {
		uint64_t e = shmring__mpmc_word(p + j, ph, tag);
		if (shmring__mpmc_cas(&shmring__mpmc_cell(r, p + j)->word, &e,
				      shmring__mpmc_word(p + j, back, 0)))
			atomic_fetch_add_explicit(&r->ctrl->reverted, 1, memory_order_relaxed);
	}
	uint64_t e = g;
	if (shmring__mpmc_cas(&shmring__mpmc_cell(r, p)->word, &e, shmring__mpmc_word(p, back, 0)))
		atomic_fetch_add_explicit(&r->ctrl->reverted, 1, memory_order_relaxed);
}

/* Release one busy cell of a dead owner: a gate gives its run back, anything else becomes
 * FREE(p + cap) and counts one abandoned message if our CAS is the one that did it. */
static void reclaim_word(struct shmring_mpmc *r, uint64_t w)
{
	if (w & SHMRING__MPMC_GATE) {
		revert_run(r, w);
		return;
	}
	uint64_t p = pos_of(w);
	uint64_t e = w;
	/* acq_rel CAS: the release half pairs with the next producer's acquire claim */
	if (shmring__mpmc_cas(&shmring__mpmc_cell(r, p)->word, &e,
			      shmring__mpmc_word(p + r->cap, SHMRING__MPMC_FREE, 0)))
		atomic_fetch_add_explicit(&hdr(r)->stats.abandoned, 1, memory_order_relaxed);
}

/* Release every busy cell of participant slot `owner`: gates (and their runs) first, so
 * that the second pass never mistakes a run cell for a finished claim. */
static void reap_cells(struct shmring_mpmc *r, uint32_t owner)
{
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < r->cap; i++) {
			/* acquire: pairs with the owner's claim CAS */
			uint64_t w = shmring_load_acquire(&shmring__mpmc_cell(r, i)->word);
			if (!busy(w) || owner_of(w) != owner)
				continue;
			if (!!(w & SHMRING__MPMC_GATE) == (pass == 0))
				reclaim_word(r, w);
		}
	}
}

/* A word that holds us up: if its owner is gone for good (slot no longer ACTIVE, or
 * ACTIVE with another generation), reclaim it here. A dead owner whose slot is still
 * ACTIVE is left to the table scan, which takes the slot first. */
static int check_stuck(struct shmring_mpmc *r)
{
	uint64_t w = r->stuck;
	r->stuck = 0;
	if (!w || !busy(w))
		return 0;
	if ((w & SHMRING__MPMC_TAG_RSVD) || owner_of(w) >= r->max_parts)
		return shmring__mpmc_broken(r, -EPROTO);
	if (r->joined && (w & SHMRING__MPMC_TAG_MASK & ~SHMRING__MPMC_GATE) == r->tag)
		return 0; /* ours: cannot be, we hold nothing while waiting */
	struct shmring_part_info info;
	shmring_part_get(r->seg, owner_of(w), &info);
	if (info.state != SHMRING_PART_ACTIVE || (info.gen & 0xffu) != gen_of(w)) {
		reclaim_word(r, w);
		wake_all(r);
	}
	return 0;
}

/*
 * Reap every dead participant of the table: take its slot (one survivor wins), release
 * its cells, count it, free the slot. Counts live producers and consumers (this handle
 * included). Returns the number reaped.
 */
static int recover_scan(struct shmring_mpmc *r, unsigned *live_p, unsigned *live_c)
{
	unsigned lp = 0, lc = 0;
	int reaped = 0;
	for (uint32_t d = 0; d < r->max_parts; d++) {
		struct shmring_part_info info;
		if (shmring_part_get(r->seg, d, &info) != 0 || info.state != SHMRING_PART_ACTIVE)
			continue;
		if (info.alive || (r->joined && d == r->slot)) {
			lp += info.role == SHMRING_ROLE_PRODUCER;
			lc += info.role == SHMRING_ROLE_CONSUMER;
			continue;
		}
		if (!r->seg->writable || shmring_part_take(r->seg, d) != 0)
			continue; /* came alive, or another survivor is reaping it */
		/* under its lock now: another reaper may have finished before we took it;
		 * acquire pairs with the release store of state in part_leave/join */
		if (shmring_load_acquire(&hdr(r)->parts[d].state) == SHMRING_PART_ACTIVE) {
			reap_cells(r, d);
			atomic_fetch_add_explicit(&hdr(r)->stats.peer_deaths, 1, memory_order_relaxed);
			reaped++;
		}
		shmring_part_leave(r->seg, d);
	}
	if (reaped) {
		/* relaxed: a hint for others to rescan; the scan itself reads the table */
		atomic_fetch_add_explicit(&r->ctrl->leaves, 1, memory_order_relaxed);
		wake_all(r);
	}
	if (live_p)
		*live_p = lp;
	if (live_c)
		*live_c = lc;
	return reaped;
}

int shmring_mpmc_recover(struct shmring_mpmc *r)
{
	if (!r)
		return -EINVAL;
	return recover_scan(r, NULL, NULL);
}

/* Producer: the cell at the tail still holds the previous lap. */
static int looks_full(struct shmring_mpmc *r)
{
	const int64_t lap = 4 * (int64_t)r->cap;
	uint64_t t = shmring_load_acquire(&r->ctrl->tail); /* pairs with the index moves */
	uint64_t w = shmring_load_acquire(&shmring__mpmc_cell(r, t)->word); /* pairs with FREE stores */
	int64_t d = shmring__mpmc_rel(w, t);
	return d >= -lap + 1 && d <= -lap + 3;
}

/* Consumer: nothing has been published at the head. */
static int looks_empty(struct shmring_mpmc *r)
{
	const int64_t lap = 4 * (int64_t)r->cap;
	uint64_t h = shmring_load_acquire(&r->ctrl->head); /* pairs with the index moves */
	uint64_t w = shmring_load_acquire(&shmring__mpmc_cell(r, h)->word); /* pairs with FULL stores */
	int64_t d = shmring__mpmc_rel(w, h);
	return d == 0 || d == 1 || d == -lap + 3;
}

/* Recovery, then EOF: -EPIPE when the other side had participants and none is alive,
 * and the ring is still full (producer) or empty (consumer) after that check. */
static int peer_check(struct shmring_mpmc *r, int prod)
{
	/* relaxed: a hint, see recover_scan */
	r->seen_leaves = shmring_load_relaxed(&r->ctrl->leaves);
	r->last_scan_ns = shmring_now_ns();
	int rc = check_stuck(r);
	if (rc < 0)
		return rc;
	unsigned lp, lc;
	recover_scan(r, &lp, &lc);
	if (prod) {
		if (lc == 0 && shmring_load_relaxed(&r->ctrl->cons_joins) && looks_full(r))
			return -EPIPE;
	} else {
		if (lp == 0 && shmring_load_relaxed(&r->ctrl->prod_joins) && looks_empty(r))
			return -EPIPE;
	}
	return 0;
}

int shmring__mpmc_idle(struct shmring_mpmc *r, int prod)
{
	/* relaxed: a hint that someone left */
	uint64_t lv = shmring_load_relaxed(&r->ctrl->leaves);
	if (lv == r->seen_leaves &&
	    shmring_now_ns() - r->last_scan_ns < (uint64_t)SHMRING_PEER_CHECK_MS * MS_NS)
		return -EAGAIN;
	int rc = peer_check(r, prod);
	return rc < 0 ? rc : -EAGAIN;
}

/* ---- blocking ---- */

struct wait_arg {
	struct shmring_mpmc *r;
	int prod;
	unsigned n, min;
	uint32_t maxlen;
};

static int claim(struct wait_arg *a)
{
	if (a->prod)
		return shmring__mpmc_prod_claim(a->r, a->n, a->min);
	return shmring__mpmc_cons_claim(a->r, a->n, a->min, a->maxlen);
}

static int wait_poll(void *p)
{
	struct wait_arg *a = p;
	int k = claim(a);
	/* relaxed: a hint that someone left (a closing producer wakes us for EOF) */
	if (k == 0 && shmring_load_relaxed(&a->r->ctrl->leaves) != a->r->seen_leaves) {
		int rc = peer_check(a->r, a->prod);
		if (rc < 0)
			return rc;
		k = claim(a);
	}
	return k;
}

static int wait_peer(void *p)
{
	struct wait_arg *a = p;
	int rc = peer_check(a->r, a->prod);
	return rc < 0 ? rc : 0;
}

int shmring__mpmc_wait(struct shmring_mpmc *r, int prod, unsigned n, unsigned min,
		       uint32_t maxlen, int timeout_ms)
{
	struct wait_arg a = { .r = r, .prod = prod, .n = n, .min = min, .maxlen = maxlen };
	struct shmring_wait_ctx ctx = {
		.seg = r->seg,
		.q = prod ? &r->ctrl->not_full : &r->ctrl->not_empty,
		.poll = wait_poll,
		.peer_check = wait_peer,
		.arg = &a,
		.spin = r->spin,
		.last_check = &r->last_scan_ns, /* peer_check() sets it too */
	};
	return shmring_wait_for(&ctx, timeout_ms);
}

/* ---- create, attach, close ---- */

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static int mpmc_init(struct shmring_seg *seg, void *arg)
{
	(void)arg;
	struct shmring_mpmc_ctrl *c = shmring_seg_ctrl(seg);
	memset(c, 0, sizeof(*c));
	int rc = shmring_waitq_init(seg, &c->not_empty);
	if (rc == 0)
		rc = shmring_waitq_init(seg, &c->not_full);
	if (rc)
		return rc;
	uint64_t cap = seg->geo[SHMRING_MPMC_GEO_CAPACITY];
	uint64_t stride = seg->geo[SHMRING_MPMC_GEO_STRIDE];
	uint8_t *cells = shmring_seg_data(seg);
	for (uint64_t i = 0; i < cap; i++) {
		struct shmring_mpmc_cell *cell = (void *)(cells + i * stride);
		/* nobody can attach before the magic's release store publishes all of this */
		shmring_store_relaxed(&cell->word, shmring__mpmc_word(i, SHMRING__MPMC_FREE, 0));
		shmring_store_relaxed(&cell->len, 0);
	}
	return 0;
}

/* Check the geometry copied at attach; every later index derives from it. */
static int check_geo(const struct shmring_seg *s)
{
	const uint64_t *g = s->geo;
	uint64_t cap = g[SHMRING_MPMC_GEO_CAPACITY], slot = g[SHMRING_MPMC_GEO_SLOT_SIZE];
	uint64_t stride = g[SHMRING_MPMC_GEO_STRIDE], align = g[SHMRING_MPMC_GEO_ALIGN];
	if (s->flags & 0xffff0000u) /* kind flags: none defined for this format */
		return shmring__fail(-EPROTO, "mpmc: unknown kind flags 0x%x", s->flags);
	if (g[SHMRING_MPMC_GEO_FORMAT] != SHMRING_MPMC_FORMAT)
		return shmring__fail(-EPROTO, "mpmc state-word format %llu unknown",
				     (unsigned long long)g[SHMRING_MPMC_GEO_FORMAT]);
	if (!is_pow2(cap) || cap < 2 || cap > SHMRING_MPMC_MAX_CAPACITY)
		return shmring__fail(-EPROTO, "mpmc capacity %llu is not a power of two in 2..2^30",
				     (unsigned long long)cap);
	if (slot == 0 || slot > SHMRING_MPMC_MAX_SLOT)
		return shmring__fail(-EPROTO, "mpmc slot size %llu out of range",
				     (unsigned long long)slot);
	if (!is_pow2(align) || align < 16 || align > SHMRING_PAGE)
		return shmring__fail(-EPROTO, "mpmc alignment %llu invalid", (unsigned long long)align);
	if (stride != align_up(SHMRING_MPMC_CELL_HDR + slot, align))
		return shmring__fail(-EPROTO, "mpmc stride %llu does not match slot size %llu",
				     (unsigned long long)stride, (unsigned long long)slot);
	if (s->data_size / stride < cap)
		return shmring__fail(-EPROTO, "mpmc data region (%llu bytes) too small for %llu cells",
				     (unsigned long long)s->data_size, (unsigned long long)cap);
	if (s->ctrl_size < sizeof(struct shmring_mpmc_ctrl))
		return shmring__fail(-EPROTO, "mpmc control region too small");
	for (unsigned i = 5; i < SHMRING_GEO_WORDS; i++)
		if (g[i])
			return shmring__fail(-EPROTO, "mpmc geometry word %u is not 0", i);
	return 0;
}

static int valid_role(uint32_t role)
{
	return role == SHMRING_ROLE_PRODUCER || role == SHMRING_ROLE_CONSUMER ||
	       role == SHMRING_ROLE_OBSERVER || role == SHMRING_ROLE_NONE;
}

/* Wrap seg (consumed on failure) in a handle and join with role. */
static int attach(struct shmring_seg *seg, uint32_t role, struct shmring_mpmc **out)
{
	int rc = check_geo(seg);
	if (rc) {
		shmring_seg_close(seg);
		return rc;
	}
	if (role != SHMRING_ROLE_NONE && !seg->writable) {
		shmring_seg_close(seg);
		return -EACCES;
	}
	struct shmring_mpmc *r = calloc(1, sizeof(*r));
	if (!r) {
		shmring_seg_close(seg);
		return -ENOMEM;
	}
	r->seg = seg;
	r->ctrl = shmring_seg_ctrl(seg);
	r->cells = shmring_seg_data(seg);
	r->cap = (uint32_t)seg->geo[SHMRING_MPMC_GEO_CAPACITY];
	r->mask = r->cap - 1;
	r->slot_size = (uint32_t)seg->geo[SHMRING_MPMC_GEO_SLOT_SIZE];
	r->stride = (uint32_t)seg->geo[SHMRING_MPMC_GEO_STRIDE];
	r->max_parts = seg->max_parts;
	r->role = role;
	r->spin = -1;
	r->last_scan_ns = shmring_now_ns();
	if (role != SHMRING_ROLE_NONE) {
		rc = shmring_part_join(seg, role, -1, &r->slot);
		if (rc == -EUSERS) {
			recover_scan(r, NULL, NULL); /* dead participants hold the table */
			rc = shmring_part_join(seg, role, -1, &r->slot);
		}
		if (rc < 0) {
			shmring_seg_close(seg);
			free(r);
			return rc;
		}
		struct shmring_part_info info;
		shmring_part_get(seg, r->slot, &info);
		r->tag = r->slot | (uint64_t)(info.gen & 0xffu) << 8;
		r->joined = 1;
		/* relaxed: counters read only by the EOF check, after a table scan */
		if (role == SHMRING_ROLE_PRODUCER)
			atomic_fetch_add_explicit(&r->ctrl->prod_joins, 1, memory_order_relaxed);
		else if (role == SHMRING_ROLE_CONSUMER)
			atomic_fetch_add_explicit(&r->ctrl->cons_joins, 1, memory_order_relaxed);
	}
	/* reap whoever died since the last look, so the table never fills with the dead */
	if (seg->writable)
		recover_scan(r, NULL, NULL);
	r->seen_leaves = shmring_load_relaxed(&r->ctrl->leaves); /* a hint */
	*out = r;
	return 0;
}

int shmring_mpmc_create(const char *name, const struct shmring_mpmc_opts *o, uint32_t role,
			struct shmring_mpmc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	if (!o || !out || !valid_role(role))
		return -EINVAL;
	uint64_t cap = o->capacity ? o->capacity : SHMRING_MPMC_DEFAULT_CAPACITY;
	uint64_t align = o->align ? o->align : SHMRING_MPMC_DEFAULT_ALIGN;
	if (cap > SHMRING_MPMC_MAX_CAPACITY || o->slot_size == 0 ||
	    o->slot_size > SHMRING_MPMC_MAX_SLOT || !is_pow2(align) || align < 16 ||
	    align > SHMRING_PAGE || o->max_parts > SHMRING_MAX_PARTS)
		return shmring__fail(-EINVAL, "invalid mpmc options");
	uint64_t c2 = 2;
	while (c2 < cap)
		c2 <<= 1;
	uint64_t stride = align_up(SHMRING_MPMC_CELL_HDR + (uint64_t)o->slot_size, align);
	if (stride > (UINT64_C(1) << 46) / c2)
		return shmring__fail(-EINVAL, "mpmc ring of %llu cells of %llu bytes is too large",
				     (unsigned long long)c2, (unsigned long long)stride);
	struct shmring_seg_params p = {
		.kind = SHMRING_KIND_MPMC,
		.max_parts = o->max_parts,
		.mode = o->mode,
		.ctrl_size = sizeof(struct shmring_mpmc_ctrl),
		.data_size = c2 * stride,
		.init = mpmc_init,
	};
	p.geo[SHMRING_MPMC_GEO_CAPACITY] = c2;
	p.geo[SHMRING_MPMC_GEO_SLOT_SIZE] = o->slot_size;
	p.geo[SHMRING_MPMC_GEO_STRIDE] = stride;
	p.geo[SHMRING_MPMC_GEO_ALIGN] = align;
	p.geo[SHMRING_MPMC_GEO_FORMAT] = SHMRING_MPMC_FORMAT;
	struct shmring_seg *seg;
	struct shmring__naming nm;
	int rc = shmring__seg_make(name, &p, &seg, &nm);
	if (rc)
		return rc;
	if ((rc = attach(seg, role, out)) != 0) {
		shmring__seg_unmake(&nm);
		return rc;
	}
	/* named only now that the creator holds its role (internal.h) */
	if ((rc = shmring__seg_name(seg, &nm)) != 0) {
		shmring_mpmc_close(*out);
		*out = NULL;
	}
	return rc;
}

int shmring_mpmc_open(const char *name, uint32_t role, struct shmring_mpmc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	if (!out || !valid_role(role))
		return -EINVAL;
	struct shmring_seg *seg;
	int rc = shmring_seg_open(name, SHMRING_KIND_MPMC, 0, &seg);
	if (rc)
		return rc;
	return attach(seg, role, out);
}

int shmring_mpmc_open_fd(int fd, uint32_t role, struct shmring_mpmc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	if (!out || !valid_role(role))
		return -EINVAL;
	struct shmring_seg *seg;
	int rc = shmring_seg_open_fd(fd, SHMRING_KIND_MPMC, 0, &seg);
	if (rc)
		return rc;
	return attach(seg, role, out);
}

int shmring_mpmc_close(struct shmring_mpmc *r)
{
	if (!r)
		return -EINVAL;
	/* a handle copied by fork() is the parent's: what it holds and counts is the
	 * parent's to finish and flush */
	if (!shmring__seg_inherited(r->seg)) {
		if (r->held_n) {
			if (r->role == SHMRING_ROLE_PRODUCER)
				shmring_mpmc_enqueue_finish(r, 0, NULL); /* unpublished: gaps */
			else
				shmring_mpmc_dequeue_finish(r);
		}
		shmring__mpmc_flush_stats(r);
		if (r->joined) {
			shmring_part_leave(r->seg, r->slot);
			/* relaxed: a hint; the woken re-scan the table, which is the truth */
			atomic_fetch_add_explicit(&r->ctrl->leaves, 1, memory_order_relaxed);
			wake_all(r);
		}
	}
	shmring_seg_close(r->seg);
	free(r);
	return 0;
}

int shmring_mpmc_fd(const struct shmring_mpmc *r)
{
	return r ? r->seg->fd : -EINVAL;
}

struct shmring_seg *shmring_mpmc_seg(const struct shmring_mpmc *r)
{
	return r ? r->seg : NULL;
}

uint32_t shmring_mpmc_capacity(const struct shmring_mpmc *r)
{
	return r ? r->cap : 0;
}

uint32_t shmring_mpmc_slot_size(const struct shmring_mpmc *r)
{
	return r ? r->slot_size : 0;
}

int shmring_mpmc_part(const struct shmring_mpmc *r)
{
	if (!r)
		return -EINVAL;
	return r->joined ? (int)r->slot : -1;
}

void shmring_mpmc_set_spin(struct shmring_mpmc *r, int spin)
{
	if (r)
		r->spin = spin;
}

int shmring_mpmc_set_demote(struct shmring_mpmc *r, int on)
{
	if (!r)
		return -EINVAL;
	if (r->role != SHMRING_ROLE_PRODUCER)
		return -EBADF;
	r->demote = on != 0;
	return 0;
}

uint32_t shmring_mpmc_count(const struct shmring_mpmc *r)
{
	if (!r)
		return 0;
	/* relaxed: an estimate for inspectors, no data is read through it */
	uint64_t t = shmring_load_relaxed(&r->ctrl->tail);
	uint64_t h = shmring_load_relaxed(&r->ctrl->head);
	int64_t d = (int64_t)(t - h);
	if (d < 0)
		return 0;
	return d > (int64_t)r->cap ? r->cap : (uint32_t)d;
}

int shmring_mpmc_cell_get(const struct shmring_mpmc *r, uint32_t idx,
			  struct shmring_mpmc_cell_info *info)
{
	if (!r || !info || idx >= r->cap)
		return -EINVAL;
	struct shmring_mpmc_cell *cell = shmring__mpmc_cell(r, idx);
	/* acquire: pairs with the release stores of the word, so len/data match it */
	uint64_t w = shmring_load_acquire(&cell->word);
	memset(info, 0, sizeof(*info));
	info->word = w;
	info->pos = pos_of(w);
	info->phase = phase_of(w);
	if (busy(w)) {
		info->owner = owner_of(w);
		info->gen = gen_of(w);
		info->gate = !!(w & SHMRING__MPMC_GATE);
	}
	info->len = shmring_load_relaxed(&cell->len); /* ordered by the acquire above */
	info->data = shmring__mpmc_payload(r, idx);
	return 0;
}
