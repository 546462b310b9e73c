/* SPDX-License-Identifier: MIT */
/*
 * SPSC ring: the slow paths (create, attach, recovery, blocking, closing). The fast
 * paths are inline in shmring/spsc.h.
 */
#include "internal.h"
#include "shmring/spsc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A non-blocking caller that keeps finding the ring empty (or full) asks whether the
 * peer is alive, but not on every poll: a liveness check is an fcntl, and a spinning
 * consumer would pay it on its latency path. Every POLLS_PER_CLOCK polls it reads the
 * clock (vDSO, no syscall), and it checks the peer at most once per
 * SHMRING_PEER_CHECK_MS, so a death is still seen within that bound. */
#define POLLS_PER_CLOCK 256u

static int liveness_due(uint32_t *polls, uint64_t *last_ns)
{
	if (++*polls % POLLS_PER_CLOCK != 0)
		return 0;
	uint64_t now = shmring_now_ns();
	if (now - *last_ns < (uint64_t)SHMRING_PEER_CHECK_MS * 1000000u)
		return 0;
	*last_ns = now;
	return 1;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t max_record_for(uint64_t cap, uint32_t align)
{
	/* worst case a record needs padding before it plus the zero header after it:
	 * 2 * total + 8 <= cap */
	uint64_t total = ((cap - SHMRING_SPSC_HDR) / 2) & ~(uint64_t)(align - 1);
	if (total <= SHMRING_SPSC_HDR)
		return 0; /* no record fits: align above (cap - 8) / 2 */
	uint64_t m = total - SHMRING_SPSC_HDR;
	return m > UINT32_MAX - 4096 ? UINT32_MAX - 4096 : m;
}

static int spsc_init(struct shmring_seg *seg, void *arg)
{
	(void)arg;
	struct shmring_spsc_ctrl *c = shmring_seg_ctrl(seg);
	int rc = shmring_waitq_init(seg, &c->data_q);
	if (rc == 0)
		rc = shmring_waitq_init(seg, &c->space_q);
	return rc;
}

/* Geometry from the validated local copy; never re-read from shared memory. */
static int geometry(struct shmring_spsc *r, const struct shmring_seg *seg)
{
	uint64_t cap = seg->geo[SHMRING_SPSC_GEO_CAPACITY];
	uint64_t maxr = seg->geo[SHMRING_SPSC_GEO_MAX_RECORD];
	uint64_t align = seg->geo[SHMRING_SPSC_GEO_ALIGN];
	if (!is_pow2(cap) || cap < SHMRING_PAGE || cap != seg->data_size)
		return shmring__fail(-EPROTO, "spsc capacity %llu invalid", (unsigned long long)cap);
	if (!is_pow2(align) || align < 8 || align > SHMRING_PAGE)
		return shmring__fail(-EPROTO, "spsc align %llu invalid", (unsigned long long)align);
	if (maxr == 0 || maxr > max_record_for(cap, (uint32_t)align))
		return shmring__fail(-EPROTO, "spsc max_record %llu invalid for capacity %llu",
				     (unsigned long long)maxr, (unsigned long long)cap);
	if (seg->ctrl_size < sizeof(struct shmring_spsc_ctrl))
		return shmring__fail(-EPROTO, "spsc ctrl region too small");
	if (seg->flags & 0xffff0000u) /* kind flags: none defined for this format */
		return shmring__fail(-EPROTO, "spsc: unknown kind flags 0x%x", seg->flags);
	/* the producer's slot and the consumer's: liveness checks look at both */
	if (seg->max_parts != 2)
		return shmring__fail(-EPROTO, "spsc max_parts %u, expected 2", seg->max_parts);
	r->cap = cap;
	r->mask = cap - 1;
	r->max_record = (uint32_t)maxr;
	r->align = (uint32_t)align;
	r->ctrl = shmring_seg_ctrl(seg);
	r->data = shmring_seg_data(seg);
	return 0;
}

/* Read a position from shared memory and bound it. */
static int valid_pos(const struct shmring_spsc *r, uint64_t pos)
{
	return (pos & (r->align - 1)) == 0;
}

/* A replacement producer resumes after the last committed record: ctrl->tail may lag
 * the headers by one batch if the previous producer died between the two stores. */
static int producer_resume(struct shmring_spsc *r)
{
	/* pairs with the consumer's release store in shmring_spsc_release() */
	uint64_t head = shmring_load_acquire(&r->ctrl->head);
	uint64_t tail = shmring_load_relaxed(&r->ctrl->tail); /* informational, rescanned */
	/* tail lags the headers if the last producer died between publishing and storing
	 * it, so the consumer may already be past it: then the scan starts at head */
	if (tail - head > r->cap && head - tail <= r->cap)
		tail = head;
	if (!valid_pos(r, head) || !valid_pos(r, tail) || tail - head > r->cap)
		return shmring__fail(-EPROTO, "spsc head %llu / tail %llu impossible",
				     (unsigned long long)head, (unsigned long long)tail);
	uint64_t pos = tail;
	while (pos - head < r->cap) {
		uint64_t idx = pos & r->mask;
		/* pairs with the release store of a previous producer's commit */
		uint64_t h = shmring_load_acquire(shmring__spsc_hdr(r, idx));
		if (h == 0)
			break;
		uint64_t len = h & 0xffffffffu, fl = h & SHMRING_SPSC_F_MASK;
		if (!(fl & SHMRING_SPSC_F_COMMIT) || (fl & ~(SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD)))
			return shmring__fail(-EPROTO, "spsc record header 0x%llx invalid", (unsigned long long)h);
		uint64_t step = (fl & SHMRING_SPSC_F_PAD) ? len + SHMRING_SPSC_HDR : shmring__spsc_total(r, len);
		if (step > r->cap - idx || len > r->cap)
			return shmring__fail(-EPROTO, "spsc record length %llu invalid", (unsigned long long)len);
		pos += step;
	}
	if (pos - head > r->cap)
		return shmring__fail(-EPROTO, "spsc records run past the consumer");
	r->p_commit = r->p_pend = pos;
	r->p_head = head;
	shmring_store_relaxed(&r->ctrl->tail, pos); /* informational, as in commit */
	return 0;
}

static int attach_role(struct shmring_spsc *r, struct shmring_seg *seg, uint32_t role)
{
	int rc = geometry(r, seg);
	if (rc)
		return rc;
	if (role != SHMRING_ROLE_PRODUCER && role != SHMRING_ROLE_CONSUMER)
		return -EINVAL;
	uint32_t want = role == SHMRING_ROLE_PRODUCER ? SHMRING_SPSC_SLOT_PRODUCER : SHMRING_SPSC_SLOT_CONSUMER;
	rc = shmring_part_join(seg, role, (int)want, &r->slot);
	if (rc < 0)
		return rc == -EBUSY ? shmring__fail(-EBUSY, "the %s of this ring is alive",
						    role == SHMRING_ROLE_PRODUCER ? "producer" : "consumer")
				    : rc;
	int replaced = rc == 1;
	r->seg = seg;
	r->role = role;
	r->spin = -1;
	struct shmring_hdr *h = shmring_seg_hdr(seg);
	if (role == SHMRING_ROLE_PRODUCER) {
		rc = producer_resume(r);
		if (rc) {
			shmring_part_leave(seg, r->slot);
			return rc;
		}
		r->p_msgs = shmring_load_relaxed(&h->stats.msgs);
		r->p_bytes = shmring_load_relaxed(&h->stats.bytes);
		if (replaced) /* the dead producer may have left its sleep announced */
			shmring_store_relaxed(&r->ctrl->space_q.waiters, 0);
		/* a new producer reopens the stream; pairs with the consumer's acquire load */
		shmring_store_release(&r->ctrl->prod_closed, 0);
	} else {
		/* pairs with the release store in shmring_spsc_release() (a previous consumer) */
		uint64_t head = shmring_load_acquire(&r->ctrl->head);
		uint64_t tail = shmring_load_relaxed(&r->ctrl->tail); /* bound only */
		/* tail may lag the consumer by one batch (see producer_resume) */
		if (!valid_pos(r, head) || (tail - head > r->cap && head - tail > r->cap)) {
			shmring_part_leave(seg, r->slot);
			return shmring__fail(-EPROTO, "spsc head %llu / tail %llu impossible",
					     (unsigned long long)head, (unsigned long long)tail);
		}
		r->c_head = r->c_peek = head;
		if (replaced)
			shmring_store_relaxed(&r->ctrl->data_q.waiters, 0);
		/* pairs with the producer's acquire load in refresh_head */
		shmring_store_release(&r->ctrl->cons_closed, 0);
	}
	return 0;
}

static int finish_open(struct shmring_seg *seg, uint32_t role, struct shmring_spsc **out)
{
	struct shmring_spsc *r = calloc(1, sizeof(*r));
	if (!r) {
		shmring_seg_close(seg);
		return -ENOMEM;
	}
	int rc = attach_role(r, seg, role);
	if (rc) {
		free(r);
		shmring_seg_close(seg);
		return rc;
	}
	*out = r;
	return 0;
}

int shmring_spsc_create(const char *name, const struct shmring_spsc_opts *o, uint32_t role,
			struct shmring_spsc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_spsc_opts d = { 0 };
	if (!o)
		o = &d;
	if (!out || (role != SHMRING_ROLE_PRODUCER && role != SHMRING_ROLE_CONSUMER))
		return -EINVAL;
	uint64_t cap = o->capacity ? o->capacity : SHMRING_SPSC_DEFAULT_CAPACITY;
	if (cap < SHMRING_PAGE)
		cap = SHMRING_PAGE;
	if (cap > (UINT64_C(1) << 40))
		return shmring__fail(-EINVAL, "capacity too large");
	while (!is_pow2(cap))
		cap += cap & -cap;
	uint32_t align = o->align ? o->align : 8;
	if (!is_pow2(align) || align < 8 || align > SHMRING_PAGE)
		return shmring__fail(-EINVAL, "align must be a power of two in 8..4096");
	uint64_t lim = max_record_for(cap, align);
	if (lim == 0)
		return shmring__fail(-EINVAL, "capacity %llu too small for align %u: it must be at "
				     "least 4 x align", (unsigned long long)cap, align);
	uint64_t maxr = o->max_record ? o->max_record : lim;
	if (maxr > lim)
		return shmring__fail(-EINVAL, "max_record %llu exceeds %llu for capacity %llu",
				     (unsigned long long)maxr, (unsigned long long)lim, (unsigned long long)cap);
	struct shmring_seg_params p = {
		.kind = SHMRING_KIND_SPSC,
		.max_parts = 2,
		.mode = o->mode,
		.ctrl_size = sizeof(struct shmring_spsc_ctrl),
		.data_size = cap,
		.init = spsc_init,
	};
	p.geo[SHMRING_SPSC_GEO_CAPACITY] = cap;
	p.geo[SHMRING_SPSC_GEO_MAX_RECORD] = maxr;
	p.geo[SHMRING_SPSC_GEO_ALIGN] = align;
	struct shmring_seg *seg;
	struct shmring__naming nm;
	int rc = shmring__seg_make(name, &p, &seg, &nm);
	if (rc)
		return rc;
	if ((rc = finish_open(seg, role, out)) != 0) {
		shmring__seg_unmake(&nm);
		return rc;
	}
	/* named only now that the creator holds its role (internal.h) */
	if ((rc = shmring__seg_name(seg, &nm)) != 0) {
		shmring_spsc_close(*out);
		*out = NULL;
	}
	return rc;
}

int shmring_spsc_open(const char *name, uint32_t role, struct shmring_spsc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open(name, SHMRING_KIND_SPSC, 0, &seg);
	return rc ? rc : finish_open(seg, role, out);
}

int shmring_spsc_open_fd(int fd, uint32_t role, struct shmring_spsc **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring_seg *seg;
	if (!out)
		return -EINVAL;
	int rc = shmring_seg_open_fd(fd, SHMRING_KIND_SPSC, 0, &seg);
	return rc ? rc : finish_open(seg, role, out);
}

void shmring_spsc_detach(struct shmring_spsc *r)
{
	if (!r)
		return;
	shmring_part_leave(r->seg, r->slot);
	shmring_seg_close(r->seg);
	free(r);
}

int shmring_spsc_close(struct shmring_spsc *r)
{
	if (!r)
		return -EINVAL;
	if (shmring__seg_inherited(r->seg)) {
		/* the parent's handle, copied by fork(): its stream goes on */
	} else if (r->role == SHMRING_ROLE_PRODUCER) {
		shmring_spsc_abort(r);
		/* pairs with the consumer's acquire load in shmring__spsc_empty() */
		shmring_store_release(&r->ctrl->prod_closed, 1);
		shmring_wake(r->seg, &r->ctrl->data_q);
	} else {
		/* pairs with the producer's acquire load in shmring__spsc_refresh_head() */
		shmring_store_release(&r->ctrl->cons_closed, 1);
		shmring_wake(r->seg, &r->ctrl->space_q);
	}
	shmring_spsc_detach(r);
	return 0;
}

int shmring_spsc_fd(const struct shmring_spsc *r)
{
	return r ? r->seg->fd : -EINVAL;
}

struct shmring_seg *shmring_spsc_seg(const struct shmring_spsc *r)
{
	return r ? r->seg : NULL;
}

void shmring_spsc_set_spin(struct shmring_spsc *r, int spin)
{
	if (r)
		r->spin = spin;
}

int shmring_spsc_set_demote(struct shmring_spsc *r, int on)
{
	if (!r)
		return -EINVAL;
	if (r->role != SHMRING_ROLE_PRODUCER)
		return -EBADF;
	r->demote = on != 0;
	return 0;
}

int shmring_spsc_peer_closed(const struct shmring_spsc *r)
{
	if (!r)
		return -EINVAL;
	/* pairs with the release stores in shmring_spsc_close() */
	if (r->role == SHMRING_ROLE_PRODUCER)
		return shmring_load_acquire(&r->ctrl->cons_closed) != 0;
	return shmring_load_acquire(&r->ctrl->prod_closed) != 0;
}

int shmring_spsc_peer_alive(const struct shmring_spsc *r)
{
	if (!r)
		return -EINVAL;
	uint32_t peer = r->role == SHMRING_ROLE_PRODUCER ? SHMRING_SPSC_SLOT_CONSUMER
							 : SHMRING_SPSC_SLOT_PRODUCER;
	struct shmring_part_info info;
	int rc = shmring_part_get(r->seg, peer, &info);
	if (rc)
		return rc;
	return info.state == SHMRING_PART_ACTIVE && info.alive;
}

int shmring__spsc_broken(struct shmring_spsc *r, int err)
{
	r->broken = err;
	return shmring__fail(err, "spsc ring corrupt: impossible record header or index");
}

/* A peer slot that was attached and is not any more: it left (detach without close)
 * or died (active, but its lock is gone). A slot never joined is not gone: the peer
 * has not arrived yet. */
static int slot_gone(struct shmring_spsc *r, uint32_t slot)
{
	struct shmring_part_info info;
	if (shmring_part_get(r->seg, slot, &info) != 0)
		return 0; /* no such slot (geometry() requires both): nobody to miss */
	return info.state == SHMRING_PART_LEFT || (info.state == SHMRING_PART_ACTIVE && !info.alive);
}

static int consumer_gone(struct shmring_spsc *r)
{
	/* pairs with the release store in shmring_spsc_close() (consumer side) */
	if (shmring_load_acquire(&r->ctrl->cons_closed))
		return 1;
	return slot_gone(r, SHMRING_SPSC_SLOT_CONSUMER);
}

static int producer_gone(struct shmring_spsc *r)
{
	/* pairs with the release store in shmring_spsc_close() (producer side) */
	if (shmring_load_acquire(&r->ctrl->prod_closed))
		return 1;
	return slot_gone(r, SHMRING_SPSC_SLOT_PRODUCER);
}

int shmring__spsc_refresh_head(struct shmring_spsc *r, uint64_t need_end)
{
	/* pairs with the release store in shmring_spsc_release() */
	uint64_t head = shmring_load_acquire(&r->ctrl->head);
	/* the consumer can be neither behind our last view nor past what we committed */
	if (shmring_unlikely(head - r->p_head > r->p_commit - r->p_head || !valid_pos(r, head)))
		return shmring__spsc_broken(r, -EPROTO);
	r->p_head = head;
	if (need_end - head <= r->cap)
		return 0;
	/* full: is anyone still there to make room? cons_closed is cheap, liveness a syscall */
	if (shmring_load_acquire(&r->ctrl->cons_closed)) /* pairs with close()'s release */
		return -EPIPE;
	if (liveness_due(&r->p_full_polls, &r->p_last_check) && consumer_gone(r))
		return -EPIPE;
	return -EAGAIN;
}

int shmring__spsc_empty(struct shmring_spsc *r, uint64_t idx)
{
	int gone = 0;
	/* pairs with the release store in shmring_spsc_close() (producer side) */
	if (shmring_load_acquire(&r->ctrl->prod_closed))
		gone = 1;
	else if (liveness_due(&r->c_empty_polls, &r->c_last_check))
		gone = producer_gone(r);
	if (!gone)
		return -EAGAIN;
	/* closed or dead: anything committed before that is still delivered. Pairs with the
	 * release store in commit, ordered before the close by program order. */
	if (shmring_load_acquire(shmring__spsc_hdr(r, idx)) != 0)
		return 0;
	return -EPIPE;
}

/* ---- blocking ---- */

struct reserve_arg {
	struct shmring_spsc *r;
	size_t len;
	void **buf;
};

static int reserve_poll(void *a)
{
	struct reserve_arg *ra = a;
	int rc = shmring_spsc_reserve(ra->r, ra->len, ra->buf);
	return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
}

static int reserve_peer(void *a)
{
	struct reserve_arg *ra = a;
	return consumer_gone(ra->r) ? -EPIPE : 0;
}

int shmring_spsc_reserve_wait(struct shmring_spsc *r, size_t len, void **buf, int timeout_ms)
{
	if (!r || !buf || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	int rc = shmring_spsc_reserve(r, len, buf);
	if (rc != -EAGAIN || timeout_ms == 0)
		return rc;
	/* what we reserved but did not publish may be what the consumer needs to see
	 * before it can make room */
	shmring_spsc_commit(r);
	struct reserve_arg ra = { r, len, buf };
	struct shmring_wait_ctx c = {
		.seg = r->seg, .q = &r->ctrl->space_q, .poll = reserve_poll,
		.peer_check = reserve_peer, .arg = &ra, .spin = r->spin,
		.last_check = &r->p_last_check,
	};
	rc = shmring_wait_for(&c, timeout_ms);
	return rc > 0 ? 0 : rc;
}

struct peek_arg {
	struct shmring_spsc *r;
	struct shmring_rec *rec;
};

static int peek_poll(void *a)
{
	struct peek_arg *pa = a;
	int rc = shmring_spsc_peek(pa->r, pa->rec);
	return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
}

static int peek_peer(void *a)
{
	struct peek_arg *pa = a;
	struct shmring_spsc *r = pa->r;
	if (!producer_gone(r))
		return 0;
	/* one last look, without taking anything (the wait's next poll delivers what is
	 * there; a peek here would move past a record nobody returns): a record
	 * committed before the producer went keeps us waiting for it. Pairs with the
	 * release store in commit, which precedes the close or death. */
	if (!r->broken && shmring_load_acquire(shmring__spsc_hdr(r, r->c_peek & r->mask)) != 0)
		return 0;
	return -EPIPE;
}

int shmring_spsc_peek_wait(struct shmring_spsc *r, struct shmring_rec *rec, int timeout_ms)
{
	if (!r || !rec || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	int rc = shmring_spsc_peek(r, rec);
	if (rc != -EAGAIN || timeout_ms == 0)
		return rc;
	struct peek_arg pa = { r, rec };
	struct shmring_wait_ctx c = {
		.seg = r->seg, .q = &r->ctrl->data_q, .poll = peek_poll,
		.peer_check = peek_peer, .arg = &pa, .spin = r->spin,
		.last_check = &r->c_last_check,
	};
	rc = shmring_wait_for(&c, timeout_ms);
	return rc > 0 ? 0 : rc;
}

int shmring_spsc_send(struct shmring_spsc *r, const void *p, size_t len, int timeout_ms)
{
	void *buf;
	if (!p && len)
		return -EINVAL;
	int rc = shmring_spsc_reserve_wait(r, len, &buf, timeout_ms);
	if (rc)
		return rc;
	if (len)
		memcpy(buf, p, len);
	rc = shmring_spsc_commit(r);
	return rc < 0 ? rc : 0;
}

int shmring_spsc_recv(struct shmring_spsc *r, void *buf, size_t cap, int timeout_ms)
{
	struct shmring_rec rec;
	if (!buf && cap)
		return -EINVAL;
	int rc = shmring_spsc_peek_wait(r, &rec, timeout_ms);
	if (rc)
		return rc;
	if (rec.len > cap || rec.len > INT32_MAX) {
		/* leave it for a later peek: undo this peek. A length over INT32_MAX is legal
		 * (max_record may exceed it in rings of 8 GiB or more), but the int result
		 * cannot carry it */
		r->c_peek -= shmring__spsc_total(r, rec.len);
		r->c_npeek--;
		return rec.len > cap ? -EMSGSIZE : -EOVERFLOW;
	}
	if (rec.len) /* buf may be NULL for an empty record (cap 0) */
		memcpy(buf, rec.data, rec.len);
	shmring_spsc_release(r);
	return (int)rec.len;
}
