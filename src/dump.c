/* SPDX-License-Identifier: MIT */
/*
 * Decoding and checking a segment from its bytes (see shmring/dump.h).
 *
 * The one rule of this file: the buffer may be anything, and may change while we read
 * it (a live read-only mapping). So the header page is copied once into a local
 * struct and every decision is made on the copy; a kind's control words are copied
 * too, and a live ring whose positions move during a walk is walked again (a few
 * times) before anything is reported about it. Every offset taken from the bytes is
 * compared with the buffer's length before it is used.
 */
#include "shmring/dump.h"
#include "shmring/segment.h"
#include "shmring/spsc.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/bcast.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PID_LIMIT 4194304 /* PID_MAX_LIMIT on 64-bit Linux */
/* created_ns must fall in [2020-01-01, 2200-01-01): anything else is not a clock */
#define CREATED_MIN UINT64_C(1577836800000000000)
#define CREATED_MAX UINT64_C(7258118400000000000)
#define LIVE_TRIES 8 /* walks of a moving ring before giving up on a stable view */
#define SCAN_MAX (UINT64_C(1) << 20) /* cells / slots checked one by one, at most */

struct ctx {
	const uint8_t *buf;
	uint64_t len;
	struct shmring_hdr h; /* the header page, copied once (zeros past len) */
	void (*problem)(void *arg, const struct shmring_dump_problem *p);
	void *arg;
	struct shmring_dump_info *info; /* NULL for a bare check */
	int nproblems;
	int ctrl_ok;  /* ctrl region within the buffer and not empty */
	int data_ok;  /* data region within the buffer, after ctrl */
	int geo_ok;   /* the kind's geometry checked out */
	int hdr_bad;  /* problems found in the immutable header */
};

static void prob(struct ctx *c, const char *field, uint64_t value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void prob(struct ctx *c, const char *field, uint64_t value, const char *fmt, ...)
{
	struct shmring_dump_problem p;
	va_list ap;

	memset(&p, 0, sizeof(p));
	snprintf(p.field, sizeof(p.field), "%s", field);
	p.value = value;
	va_start(ap, fmt);
	vsnprintf(p.msg, sizeof(p.msg), fmt, ap);
	va_end(ap);
	c->nproblems++;
	if (c->problem)
		c->problem(c->arg, &p);
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Read a 64-bit word of the buffer once. Aligned words are read atomically, so that a
 * live writer cannot tear them; relaxed, because dump only reports what it saw and
 * orders nothing after it. */
static uint64_t rd64(const struct ctx *c, uint64_t off)
{
	const uint8_t *p = c->buf + off;
	if (((uintptr_t)p & 7) == 0)
		return __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED);
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* A record header of a live ring: acquire, pairing with the producer's release store
 * in shmring_spsc_commit(), so that the payload shown after it is the one committed. */
static uint64_t rd64_acquire(const struct ctx *c, uint64_t off)
{
	const uint8_t *p = c->buf + off;
	if (((uintptr_t)p & 7) == 0)
		return __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_ACQUIRE);
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void kv(struct ctx *c, const char *key, uint64_t val)
{
	struct shmring_dump_info *i = c->info;
	if (!i || i->nkv >= SHMRING_DUMP_KV_MAX)
		return;
	snprintf(i->kv[i->nkv].key, sizeof(i->kv[0].key), "%s", key);
	i->kv[i->nkv].val = val;
	i->nkv++;
}

const char *shmring_dump_kind_name(uint32_t kind)
{
	switch (kind) {
	case SHMRING_KIND_SPSC: return "spsc";
	case SHMRING_KIND_MPMC: return "mpmc";
	case SHMRING_KIND_POOL: return "pool";
	case SHMRING_KIND_BCAST: return "bcast";
	default: return "unknown";
	}
}

const char *shmring_dump_role_name(uint32_t role)
{
	switch (role) {
	case SHMRING_ROLE_NONE: return "none";
	case SHMRING_ROLE_PRODUCER: return "producer";
	case SHMRING_ROLE_CONSUMER: return "consumer";
	case SHMRING_ROLE_SUBSCRIBER: return "subscriber";
	case SHMRING_ROLE_READER: return "reader";
	case SHMRING_ROLE_OBSERVER: return "observer";
	default: return "unknown";
	}
}

const char *shmring_dump_state_name(uint32_t state)
{
	switch (state) {
	case SHMRING_PART_FREE: return "free";
	case SHMRING_PART_ACTIVE: return "active";
	case SHMRING_PART_LEFT: return "left";
	default: return "unknown";
	}
}

/* ------------------------------------------------------------------------------------
 * SPSC: records chained from the consumer's position (ctrl->head) to the first zero
 * header. ctrl->tail (the producer's last committed position) is informational and may
 * lag the records by one batch (it is stored after the publishing header), so the walk
 * goes on past it while headers are committed.
 */

struct spsc_view {
	uint64_t cap, mask, max_record, align;
	uint64_t head, tail, end;   /* end: after the last committed record */
	uint64_t records, bytes;    /* pending, padding excluded */
	uint32_t prod_closed, cons_closed;
	uint32_t dq_waiters, dq_seq, sq_waiters, sq_seq;
	int tail_seen;              /* the walk met ctrl->tail on a record boundary */
	/* the first bad record met by the walk */
	int bad;
	uint64_t bad_pos, bad_hdr;
	char bad_why[96];
};

static uint64_t spsc_total(const struct spsc_view *v, uint64_t len)
{
	return (SHMRING_SPSC_HDR + len + v->align - 1) & ~(v->align - 1);
}

/* Walk the committed records from head; report the first max of them through rec().
 * Works on a snapshot of the control words taken by the caller. */
static void spsc_walk(const struct ctx *c, struct spsc_view *v, unsigned max,
		      void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg)
{
	uint64_t pos = v->head;
	unsigned seen = 0;
	int padded = 0;

	v->records = v->bytes = 0;
	v->bad = 0;
	v->tail_seen = (pos == v->tail);
	v->end = pos;
	if (pos & 7)
		return; /* an unaligned position is reported by the caller; nothing to walk */
	/* at most cap bytes can be pending: a longer chain is a loop of stale headers */
	while (pos - v->head < v->cap) {
		uint64_t idx = pos & v->mask;
		uint64_t h = rd64_acquire(c, c->h.data_off + idx);
		if (h == 0)
			break;
		uint64_t len = h & 0xffffffffu;
		uint64_t fl = h & SHMRING_SPSC_F_MASK;
		if (!(fl & SHMRING_SPSC_F_COMMIT) ||
		    (fl & ~(SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD))) {
			snprintf(v->bad_why, sizeof(v->bad_why), "unknown flags 0x%llx",
				 (unsigned long long)(fl >> 48));
			goto bad;
		}
		if (fl & SHMRING_SPSC_F_PAD) {
			if (idx == 0 || padded || len + SHMRING_SPSC_HDR != v->cap - idx) {
				snprintf(v->bad_why, sizeof(v->bad_why),
					 "padding of %llu bytes does not end the ring",
					 (unsigned long long)len);
				goto bad;
			}
			padded = 1;
			pos += v->cap - idx;
		} else {
			uint64_t total = spsc_total(v, len);
			if (len > v->max_record || total > v->cap - idx) {
				snprintf(v->bad_why, sizeof(v->bad_why),
					 "length %llu exceeds max_record or the ring",
					 (unsigned long long)len);
				goto bad;
			}
			if (rec && seen < max) {
				struct shmring_dump_record r = {
					.index = v->records,
					.offset = c->h.data_off + idx + SHMRING_SPSC_HDR,
					.len = len,
					.payload = c->buf + c->h.data_off + idx + SHMRING_SPSC_HDR,
					.flags = (uint32_t)(h >> 32),
					.checksum_ok = -1,
				};
				rec(arg, &r);
				seen++;
			}
			v->records++;
			v->bytes += len;
			padded = 0;
			pos += total;
		}
		if (pos == v->tail)
			v->tail_seen = 1;
		continue;
bad:
		v->bad = 1;
		v->bad_pos = pos;
		v->bad_hdr = h;
		break;
	}
	v->end = pos;
}

static void spsc_snapshot(const struct ctx *c, struct spsc_view *v)
{
	struct shmring_spsc_ctrl k;
	memcpy(&k, c->buf + c->h.ctrl_off, sizeof(k)); /* bounds checked by the caller */
	v->tail = shmring_load_relaxed(&k.tail);
	v->head = shmring_load_relaxed(&k.head);
	v->prod_closed = shmring_load_relaxed(&k.prod_closed);
	v->cons_closed = shmring_load_relaxed(&k.cons_closed);
	v->dq_waiters = shmring_load_relaxed(&k.data_q.waiters);
	v->dq_seq = shmring_load_relaxed(&k.data_q.seq);
	v->sq_waiters = shmring_load_relaxed(&k.space_q.waiters);
	v->sq_seq = shmring_load_relaxed(&k.space_q.seq);
}

/* Take a snapshot and walk it until the positions stayed put during the walk (a static
 * copy: the first time). Then, if asked, walk once more to report records. Returns 1
 * if the view is stable. */
static int spsc_stable(const struct ctx *c, struct spsc_view *v, unsigned max,
		       void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg)
{
	int stable = 0;
	for (int t = 0; t < LIVE_TRIES && !stable; t++) {
		spsc_snapshot(c, v);
		spsc_walk(c, v, 0, NULL, NULL);
		uint64_t head2 = rd64(c, c->h.ctrl_off + offsetof(struct shmring_spsc_ctrl, head));
		uint64_t tail2 = rd64(c, c->h.ctrl_off + offsetof(struct shmring_spsc_ctrl, tail));
		stable = head2 == v->head && tail2 == v->tail;
	}
	if (rec && max)
		spsc_walk(c, v, max, rec, arg);
	return stable;
}

static void spsc_geometry(struct ctx *c, struct spsc_view *v)
{
	const struct shmring_hdr *h = &c->h;
	int ok = 1;

	v->cap = h->geo[SHMRING_SPSC_GEO_CAPACITY];
	v->max_record = h->geo[SHMRING_SPSC_GEO_MAX_RECORD];
	v->align = h->geo[SHMRING_SPSC_GEO_ALIGN];
	if (!is_pow2(v->cap) || v->cap < SHMRING_PAGE) {
		prob(c, "geo[0]", v->cap,
		     "spsc capacity must be a power of two >= 4096 equal to data_size (%llu)",
		     (unsigned long long)h->data_size);
		ok = 0;
	} else if (v->cap != h->data_size) {
		/* One of the two is wrong. The data region was made to end the file: if the
		 * capacity is what lies between data_off and total_size, data_size is the
		 * damaged word (and a data region already reported out of bounds is not
		 * reported twice). */
		if (h->data_off <= h->total_size && v->cap == h->total_size - h->data_off) {
			if (c->data_ok)
				prob(c, "data_size", h->data_size,
				     "spsc data region must be the ring's capacity (geo[0] = %llu, "
				     "which fills the file from data_off)", (unsigned long long)v->cap);
		} else {
			prob(c, "geo[0]", v->cap, "spsc capacity must equal data_size (%llu)",
			     (unsigned long long)h->data_size);
		}
		ok = 0;
	}
	if (h->max_parts != 2 && h->max_parts != 0 && h->max_parts <= SHMRING_MAX_PARTS)
		prob(c, "max_parts", h->max_parts, "spsc uses exactly two participant slots "
		     "(0 the producer, 1 the consumer)");
	if (h->flags & 0xffff0000u)
		prob(c, "flags", h->flags, "spsc has no kind flags (bits 16-31)");
	if (!is_pow2(v->align) || v->align < 8 || v->align > SHMRING_PAGE) {
		prob(c, "geo[2]", v->align, "spsc record alignment must be a power of two in [8, 4096]");
		ok = 0;
	}
	/* the largest record plus padding and the zero header after it must fit */
	if (v->max_record == 0 || v->max_record > UINT32_MAX ||
	    (ok && 2 * spsc_total(v, v->max_record) + SHMRING_SPSC_HDR > v->cap)) {
		prob(c, "geo[1]", v->max_record,
		     "spsc max_record must be > 0 and leave room for a record at any offset");
		ok = 0;
	}
	for (unsigned i = 3; i < SHMRING_GEO_WORDS; i++) {
		if (h->geo[i] != 0) {
			char f[16];
			snprintf(f, sizeof(f), "geo[%u]", i);
			prob(c, f, h->geo[i], "unused spsc geometry word is not zero");
		}
	}
	if (h->ctrl_size < sizeof(struct shmring_spsc_ctrl)) {
		prob(c, "ctrl_size", h->ctrl_size, "spsc control region needs %zu bytes",
		     sizeof(struct shmring_spsc_ctrl));
		ok = 0;
	}
	/* the walk reads data_off + [0, cap): both regions must be inside the buffer */
	c->geo_ok = ok && c->ctrl_ok && c->data_ok;
	if (c->geo_ok) {
		v->mask = v->cap - 1;
		if (c->info) {
			c->info->unit = "bytes";
			c->info->capacity = v->cap;
		}
	}
}

static void spsc_check(struct ctx *c)
{
	struct spsc_view v;
	memset(&v, 0, sizeof(v));
	spsc_geometry(c, &v);
	if (!c->geo_ok)
		return;
	int stable = spsc_stable(c, &v, 0, NULL, NULL);

	if (v.prod_closed > 1)
		prob(c, "spsc.prod_closed", v.prod_closed, "closed flag must be 0 or 1");
	if (v.cons_closed > 1)
		prob(c, "spsc.cons_closed", v.cons_closed, "closed flag must be 0 or 1");
	if (v.head & (v.align - 1))
		prob(c, "spsc.head", v.head, "consumer position is not a multiple of the alignment %llu",
		     (unsigned long long)v.align);
	if (v.tail & (v.align - 1))
		prob(c, "spsc.tail", v.tail, "producer position is not a multiple of the alignment %llu",
		     (unsigned long long)v.align);
	/* tail may lag the published records (it is stored after them) but never lead */
	if (v.tail - v.head > v.cap && v.head - v.tail > v.cap)
		prob(c, "spsc.tail", v.tail, "producer position is more than the capacity away "
		     "from the consumer position %llu", (unsigned long long)v.head);
	else if (stable && v.bad)
		prob(c, "spsc.record", v.bad_hdr, "record header at position %llu (offset %llu): %s",
		     (unsigned long long)v.bad_pos,
		     (unsigned long long)(c->h.data_off + (v.bad_pos & v.mask)), v.bad_why);
	else if (stable && !v.tail_seen && v.tail - v.head <= v.cap)
		prob(c, "spsc.tail", v.tail, "producer position is not on a record boundary "
		     "(committed records from %llu end at %llu)", (unsigned long long)v.head,
		     (unsigned long long)v.end);

	if (!c->info)
		return;
	c->info->fill = v.end - v.head;
	kv(c, "capacity", v.cap);
	kv(c, "max_record", v.max_record);
	kv(c, "align", v.align);
	kv(c, "head", v.head);
	kv(c, "tail", v.tail);
	kv(c, "committed_end", v.end);
	kv(c, "pending_records", v.records);
	kv(c, "pending_bytes", v.bytes);
	kv(c, "prod_closed", v.prod_closed);
	kv(c, "cons_closed", v.cons_closed);
	kv(c, "data_q.waiters", v.dq_waiters);
	kv(c, "data_q.seq", v.dq_seq);
	kv(c, "space_q.waiters", v.sq_waiters);
	kv(c, "space_q.seq", v.sq_seq);
	kv(c, "stable_snapshot", (uint64_t)stable);
}

static int spsc_records(struct ctx *c, unsigned max,
			void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg,
			unsigned *count)
{
	struct spsc_view v;
	memset(&v, 0, sizeof(v));
	spsc_geometry(c, &v);
	if (!c->geo_ok)
		return -EPROTO;
	spsc_stable(c, &v, max, rec, arg);
	*count = v.records < max ? (unsigned)v.records : max;
	return 0;
}

/* ------------------------------------------------------------------------------------
 * Shared by the slot-based kinds.
 */

static uint32_t rd32(const struct ctx *c, uint64_t off)
{
	const uint8_t *p = c->buf + off;
	if (((uintptr_t)p & 3) == 0)
		return __atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_RELAXED);
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void geo_zero_from(struct ctx *c, unsigned first, const char *kind)
{
	for (unsigned i = first; i < SHMRING_GEO_WORDS; i++) {
		if (c->h.geo[i] != 0) {
			char f[16];
			snprintf(f, sizeof(f), "geo[%u]", i);
			prob(c, f, c->h.geo[i], "unused %s geometry word is not zero", kind);
		}
	}
}

/* The control region must hold need bytes; the data region must hold need bytes. */
static int regions_hold(struct ctx *c, uint64_t ctrl_need, uint64_t data_need, const char *kind)
{
	int ok = 1;
	if (c->h.ctrl_size < ctrl_need) {
		prob(c, "ctrl_size", c->h.ctrl_size, "%s control region needs %llu bytes", kind,
		     (unsigned long long)ctrl_need);
		ok = 0;
	}
	if (c->h.data_size < data_need) {
		prob(c, "data_size", c->h.data_size, "%s data region needs %llu bytes", kind,
		     (unsigned long long)data_need);
		ok = 0;
	}
	return ok && c->ctrl_ok && c->data_ok;
}

/* ------------------------------------------------------------------------------------
 * MPMC: fixed cells, each with a state word (position, phase, owner). Every check here
 * is on one word at a time, an invariant that holds at every instant, so a live ring
 * never trips it.
 */

struct mpmc_view {
	uint64_t cap, mask, slot, stride, align;
	uint64_t tail, head;
	uint64_t n_phase[4];
	uint64_t scanned;
};

static int mpmc_geometry(struct ctx *c, struct mpmc_view *v)
{
	const uint64_t *g = c->h.geo;
	int ok = 1;
	v->cap = g[SHMRING_MPMC_GEO_CAPACITY];
	v->slot = g[SHMRING_MPMC_GEO_SLOT_SIZE];
	v->stride = g[SHMRING_MPMC_GEO_STRIDE];
	v->align = g[SHMRING_MPMC_GEO_ALIGN];
	if (!is_pow2(v->cap) || v->cap < 2 || v->cap > SHMRING_MPMC_MAX_CAPACITY) {
		prob(c, "geo[0]", v->cap, "mpmc capacity must be a power of two in [2, 2^30]");
		ok = 0;
	}
	if (v->slot == 0 || v->slot > SHMRING_MPMC_MAX_SLOT) {
		prob(c, "geo[1]", v->slot, "mpmc slot size must be in [1, 2^30]");
		ok = 0;
	}
	if (!is_pow2(v->align) || v->align < 16 || v->align > SHMRING_PAGE) {
		prob(c, "geo[3]", v->align, "mpmc cell alignment must be a power of two in [16, 4096]");
		ok = 0;
	} else if (ok && v->stride != ((SHMRING_MPMC_CELL_HDR + v->slot + v->align - 1) & ~(v->align - 1))) {
		prob(c, "geo[2]", v->stride, "mpmc stride does not match the slot size and alignment");
		ok = 0;
	}
	if (g[SHMRING_MPMC_GEO_FORMAT] != SHMRING_MPMC_FORMAT) {
		prob(c, "geo[4]", g[SHMRING_MPMC_GEO_FORMAT], "unknown mpmc state-word format");
		ok = 0;
	}
	geo_zero_from(c, 5, "mpmc");
	/* cap <= 2^30 and stride <= 2^31: no overflow */
	ok = ok && regions_hold(c, sizeof(struct shmring_mpmc_ctrl), v->cap * v->stride, "mpmc");
	c->geo_ok = ok;
	if (ok) {
		v->mask = v->cap - 1;
		if (c->info) {
			c->info->unit = "slots";
			c->info->capacity = v->cap;
		}
	}
	return ok;
}

static uint64_t mpmc_cell_off(const struct ctx *c, const struct mpmc_view *v, uint64_t i)
{
	return c->h.data_off + i * v->stride;
}

static void mpmc_check(struct ctx *c)
{
	struct mpmc_view v;
	struct shmring_mpmc_ctrl k;
	char f[SHMRING_DUMP_FIELD_MAX];
	memset(&v, 0, sizeof(v));
	if (c->h.flags & 0xffff0000u)
		prob(c, "flags", c->h.flags, "unknown mpmc flags");
	if (!mpmc_geometry(c, &v))
		return;
	memcpy(&k, c->buf + c->h.ctrl_off, sizeof(k));
	v.tail = shmring_load_relaxed(&k.tail);
	v.head = shmring_load_relaxed(&k.head);
	uint64_t n = v.cap < SCAN_MAX ? v.cap : SCAN_MAX;
	int reported = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = mpmc_cell_off(c, &v, i);
		uint64_t w = rd64(c, off);
		uint64_t pos = w >> 18, tag = w & SHMRING__MPMC_TAG_MASK;
		unsigned phase = (unsigned)((w >> 16) & 3);
		const char *why = NULL;
		v.n_phase[phase]++;
		if ((pos & v.mask) != i)
			why = "holds a position of another cell";
		else if (tag & SHMRING__MPMC_TAG_RSVD)
			why = "reserved bit 7 is set";
		else if ((phase == SHMRING__MPMC_FREE || phase == SHMRING__MPMC_FULL) && tag)
			why = "a free or full cell has an owner";
		else if ((phase == SHMRING__MPMC_WRITING || phase == SHMRING__MPMC_READING) &&
			 (tag & SHMRING__MPMC_OWNER_MASK) >= c->h.max_parts)
			why = "owner slot beyond the participant table";
		else if (phase == SHMRING__MPMC_FULL) {
			uint32_t len = rd32(c, off + 8);
			/* the length counts only if the word did not move meanwhile */
			if (len > v.slot && rd64(c, off) == w)
				why = "message length exceeds the slot size";
		}
		if (why && reported++ < 8) {
			snprintf(f, sizeof(f), "mpmc.cell[%llu]", (unsigned long long)i);
			prob(c, f, w, "state word 0x%016llx: %s", (unsigned long long)w, why);
		}
	}
	v.scanned = n;
	/* The tail may run any distance ahead of the head (whole laps of gaps or given-back
	 * positions that no consumer stepped over), so only the other direction is bounded:
	 * the head hint never passes positions producers have not claimed by more than what
	 * in-flight batches claim before they move the tail hint, less than one lap. */
	uint64_t t2 = rd64(c, c->h.ctrl_off + offsetof(struct shmring_mpmc_ctrl, tail));
	uint64_t h2 = rd64(c, c->h.ctrl_off + offsetof(struct shmring_mpmc_ctrl, head));
	if (t2 == v.tail && h2 == v.head && (int64_t)(v.head - v.tail) > (int64_t)v.cap)
		prob(c, "mpmc.head", v.head, "consumer position is more than a lap ahead of the "
		     "producer position %llu", (unsigned long long)v.tail);
	if (!c->info)
		return;
	c->info->fill = v.scanned - v.n_phase[SHMRING__MPMC_FREE];
	kv(c, "capacity", v.cap);
	kv(c, "slot_size", v.slot);
	kv(c, "stride", v.stride);
	kv(c, "align", v.align);
	kv(c, "tail", v.tail);
	kv(c, "head", v.head);
	kv(c, "cells_free", v.n_phase[SHMRING__MPMC_FREE]);
	kv(c, "cells_writing", v.n_phase[SHMRING__MPMC_WRITING]);
	kv(c, "cells_full", v.n_phase[SHMRING__MPMC_FULL]);
	kv(c, "cells_reading", v.n_phase[SHMRING__MPMC_READING]);
	kv(c, "cells_scanned", v.scanned);
	kv(c, "prod_joins", shmring_load_relaxed(&k.prod_joins));
	kv(c, "cons_joins", shmring_load_relaxed(&k.cons_joins));
	kv(c, "leaves", shmring_load_relaxed(&k.leaves));
	kv(c, "reverted", shmring_load_relaxed(&k.reverted));
	kv(c, "not_empty.waiters", shmring_load_relaxed(&k.not_empty.waiters));
	kv(c, "not_full.waiters", shmring_load_relaxed(&k.not_full.waiters));
}

static int mpmc_records(struct ctx *c, unsigned max,
			void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg,
			unsigned *count)
{
	struct mpmc_view v;
	memset(&v, 0, sizeof(v));
	if (!mpmc_geometry(c, &v))
		return -EPROTO;
	uint64_t head = rd64(c, c->h.ctrl_off + offsetof(struct shmring_mpmc_ctrl, head));
	unsigned n = 0;
	/* positions from the consumers' hint on, while the cells are at those positions */
	for (uint64_t k = 0; k < v.cap && n < max; k++) {
		uint64_t p = head + k, i = p & v.mask, off = mpmc_cell_off(c, &v, i);
		uint64_t w = rd64(c, off);
		unsigned phase = (unsigned)((w >> 16) & 3);
		if ((w >> 18) != (p & ((UINT64_C(1) << 46) - 1)) || phase == SHMRING__MPMC_FREE)
			break;
		if (phase != SHMRING__MPMC_FULL)
			continue;
		uint32_t len = rd32(c, off + 8);
		struct shmring_dump_record r = {
			.index = p,
			.offset = off + SHMRING_MPMC_CELL_HDR,
			.len = len <= v.slot ? len : v.slot,
			.payload = c->buf + off + SHMRING_MPMC_CELL_HDR,
			.flags = (uint32_t)(w & 0xffff),
			.checksum_ok = -1,
		};
		rec(arg, &r);
		n++;
	}
	*count = n;
	return 0;
}

/* ------------------------------------------------------------------------------------
 * Frame pool: buffers with a holder-bit state word, subscriber records, a frame log.
 * The pool's own geometry check (shmring_pool_geo_check) decides the layout; the
 * checks here are again one word at a time.
 */

struct pool_view {
	struct shmring_pool_geo g;
	uint64_t ctrl, meta, subs; /* offsets in the buffer */
};

static int pool_geometry(struct ctx *c, struct pool_view *v)
{
	char why[160] = "";
	int rc = shmring_pool_geo_check(c->h.geo, c->h.max_parts, c->h.ctrl_size, c->h.data_size,
					&v->g, why, sizeof(why));
	if (rc) {
		/* the pool's sentence names the word ("pool geo[3] max_subs ..."): use it */
		char f[SHMRING_DUMP_FIELD_MAX] = "geo";
		uint64_t val = 0;
		const char *g = strstr(why, "geo[");
		if (g && g[4] >= '0' && g[4] <= '7' && g[5] == ']') {
			snprintf(f, sizeof(f), "geo[%c]", g[4]);
			val = c->h.geo[g[4] - '0'];
		} else if (strstr(why, "ctrl")) {
			snprintf(f, sizeof(f), "ctrl_size");
			val = c->h.ctrl_size;
		} else if (strstr(why, "data")) {
			snprintf(f, sizeof(f), "data_size");
			val = c->h.data_size;
		}
		prob(c, f, val, "%s", why[0] ? why : "pool geometry rejected");
		c->geo_ok = 0;
		return 0;
	}
	c->geo_ok = c->ctrl_ok && c->data_ok;
	if (!c->geo_ok)
		return 0;
	v->ctrl = c->h.ctrl_off;
	v->meta = c->h.ctrl_off + v->g.meta_off;
	v->subs = c->h.ctrl_off + v->g.subs_off;
	if (c->info) {
		c->info->unit = "frames";
		c->info->capacity = v->g.nbufs;
	}
	return 1;
}

static uint64_t pool_meta_off(const struct pool_view *v, uint32_t i, size_t field)
{
	return v->meta + (uint64_t)i * sizeof(struct shmring_pool_meta) + field;
}

/* A published frame that someone holds (queued or taken) and that carries a checksum:
 * the payload must hash to it. Its fields and payload do not change while the holder
 * bits are set and the buffer is not loaned, so on a live pool the verdict only counts
 * if state, seq, len and checksum read again are what they were (the buffer was not
 * freed and reused during the hash). */
static void pool_check_sum(struct ctx *c, const struct pool_view *v, uint32_t i, uint64_t st,
			   uint64_t len, uint32_t *bad)
{
	uint64_t seq = rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, seq)));
	uint64_t sum = rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, checksum)));
	/* pool_geometry checked that the data region holds nbufs * stride bytes */
	uint64_t calc = shmring_pool_checksum(c->buf + c->h.data_off + (uint64_t)i * v->g.stride,
					      (size_t)len);
	if (calc == sum)
		return;
	if (rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, state))) != st ||
	    rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, seq))) != seq ||
	    rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, len))) != len ||
	    rd64(c, pool_meta_off(v, i, offsetof(struct shmring_pool_meta, checksum))) != sum)
		return; /* reused meanwhile: no verdict */
	if ((*bad)++ < 8) {
		char f[SHMRING_DUMP_FIELD_MAX];
		snprintf(f, sizeof(f), "pool.meta[%u].checksum", i);
		prob(c, f, sum, "frame %llu (%llu bytes in buffer %u) hashes to 0x%016llx, not to "
		     "its checksum", (unsigned long long)seq, (unsigned long long)len, i,
		     (unsigned long long)calc);
	}
}

static void pool_check(struct ctx *c)
{
	struct pool_view v;
	struct shmring_pool_ctrl k;
	char f[SHMRING_DUMP_FIELD_MAX];
	if (c->h.flags & 0xffff0000u & ~SHMRING_POOL_F_ALL)
		prob(c, "flags", c->h.flags, "unknown pool flags");
	else if (!(c->h.flags & SHMRING_POOL_F_DESC))
		prob(c, "flags", c->h.flags, "a pool of an older library (16-byte log entries "
		     "without frame descriptors): this version does not attach to it");
	if (c->h.max_parts != SHMRING_MAX_PARTS && c->h.max_parts != 0 &&
	    c->h.max_parts < SHMRING_MAX_PARTS)
		prob(c, "max_parts", c->h.max_parts, "a pool's participant table has %u slots",
		     SHMRING_MAX_PARTS);
	if (!pool_geometry(c, &v))
		return;
	memcpy(&k, c->buf + v.ctrl, sizeof(k));
	uint64_t owner = shmring_load_relaxed(&k.owner);
	uint64_t active = shmring_load_relaxed(&k.active);
	uint64_t loan = shmring_load_relaxed(&k.loan);
	uint64_t subs_mask = v.g.max_subs >= 64 ? UINT64_MAX : (UINT64_C(1) << v.g.max_subs) - 1;
	uint32_t okind = SHMRING_POOL_ID_KIND(owner);
	if (okind > SHMRING_POOL_OWNER_CLOSED ||
	    ((okind == SHMRING_POOL_OWNER_PRODUCER || okind == SHMRING_POOL_OWNER_RECLAIMER) &&
	     SHMRING_POOL_ID_SLOT(owner) >= c->h.max_parts))
		prob(c, "pool.owner", owner, "unknown owner kind or slot beyond the participant table");
	if (active & ~subs_mask)
		prob(c, "pool.active", active, "subscriber bits beyond max_subs (%u)", v.g.max_subs);
	if (loan && (loan & 0xffff) > v.g.nbufs)
		prob(c, "pool.loan", loan, "loaned buffer beyond nbufs (%u)", v.g.nbufs);

	uint32_t free_b = 0, loaned = 0, held = 0, bad = 0;
	for (uint32_t i = 0; i < v.g.nbufs; i++) {
		uint64_t st = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, state)));
		uint64_t len = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, len)));
		uint32_t fl = rd32(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, flags)));
		if (st == 0)
			free_b++;
		if (st & SHMRING_POOL_LOANED)
			loaned++;
		if (st & subs_mask)
			held++;
		if ((st & ~(subs_mask | SHMRING_POOL_LOANED)) && bad++ < 8) {
			snprintf(f, sizeof(f), "pool.meta[%u].state", i);
			prob(c, f, st, "holder bits beyond max_subs (%u)", v.g.max_subs);
		}
		if (len > v.g.buf_size && bad++ < 8) {
			snprintf(f, sizeof(f), "pool.meta[%u].len", i);
			prob(c, f, len, "frame longer than the buffer (%llu)",
			     (unsigned long long)v.g.buf_size);
		}
		if ((fl & ~SHMRING_POOL_FRAME_F_CHECKSUM) && bad++ < 8) {
			snprintf(f, sizeof(f), "pool.meta[%u].flags", i);
			prob(c, f, fl, "unknown frame flags");
		}
		if ((st & subs_mask) && !(st & SHMRING_POOL_LOANED) &&
		    (fl & SHMRING_POOL_FRAME_F_CHECKSUM) && len <= v.g.buf_size)
			pool_check_sum(c, &v, i, st, len, &bad);
	}
	uint32_t nsubs = 0;
	for (uint32_t i = 0; i < v.g.max_subs; i++) {
		uint64_t base = v.subs + (uint64_t)i * sizeof(struct shmring_pool_sub);
		uint64_t st = rd64(c, base + offsetof(struct shmring_pool_sub, state));
		uint32_t pol = rd32(c, base + offsetof(struct shmring_pool_sub, policy));
		uint32_t sk = SHMRING_POOL_ID_KIND(st);
		if (sk == SHMRING_POOL_SUB_FREE)
			continue;
		nsubs++;
		if ((sk > SHMRING_POOL_SUB_FINAL || SHMRING_POOL_ID_SLOT(st) >= c->h.max_parts) &&
		    bad++ < 8) {
			snprintf(f, sizeof(f), "pool.subs[%u].state", i);
			prob(c, f, st, "unknown subscriber state or slot beyond the participant table");
		}
		if (sk == SHMRING_POOL_SUB_ACTIVE && pol != SHMRING_POOL_BLOCK &&
		    pol != SHMRING_POOL_DROP_OLDEST && bad++ < 8) {
			snprintf(f, sizeof(f), "pool.subs[%u].policy", i);
			prob(c, f, pol, "unknown subscriber policy");
		}
	}
	if (!c->info)
		return;
	c->info->fill = v.g.nbufs - free_b;
	kv(c, "nbufs", v.g.nbufs);
	kv(c, "buf_size", v.g.buf_size);
	kv(c, "max_subs", v.g.max_subs);
	kv(c, "max_held", v.g.max_held);
	kv(c, "queue_depth", v.g.queue_depth);
	kv(c, "log_cap", v.g.log_cap);
	kv(c, "checksums", !!(c->h.flags & SHMRING_POOL_F_CHECKSUM));
	kv(c, "stamps", !!(c->h.flags & SHMRING_POOL_F_STAMP));
	kv(c, "joins", shmring_load_relaxed(&k.joins));
	kv(c, "fence", shmring_load_relaxed(&k.fence));
	kv(c, "published", shmring_load_relaxed(&k.tail));
	kv(c, "epoch", shmring_load_relaxed(&k.epoch));
	kv(c, "owner_kind", okind);
	kv(c, "owner_slot", SHMRING_POOL_ID_SLOT(owner));
	kv(c, "active_mask", active);
	kv(c, "loan", loan);
	kv(c, "bufs_free", free_b);
	kv(c, "bufs_loaned", loaned);
	kv(c, "bufs_held", held);
	kv(c, "subscribers", nsubs);
	kv(c, "nobuf_stalls", shmring_load_relaxed(&k.nobuf_stalls));
	kv(c, "block_stalls", shmring_load_relaxed(&k.block_stalls));
	kv(c, "room_q.waiters", shmring_load_relaxed(&k.room_q.waiters));
	kv(c, "frame_q.waiters", shmring_load_relaxed(&k.frame_q.waiters));
}

struct pool_pick {
	uint64_t seq;
	uint32_t idx;
};

static int pool_records(struct ctx *c, unsigned max,
			void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg,
			unsigned *count)
{
	struct pool_view v;
	static _Thread_local struct pool_pick pick[SHMRING_POOL_MAX_BUFS];
	uint32_t n = 0;
	if (!pool_geometry(c, &v))
		return -EPROTO;
	uint64_t subs_mask = v.g.max_subs >= 64 ? UINT64_MAX : (UINT64_C(1) << v.g.max_subs) - 1;
	/* published frames someone still holds, oldest first */
	for (uint32_t i = 0; i < v.g.nbufs; i++) {
		uint64_t st = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, state)));
		if (!(st & subs_mask))
			continue;
		pick[n].seq = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, seq)));
		pick[n].idx = i;
		n++;
	}
	for (uint32_t a = 1; a < n; a++) { /* insertion sort: n <= 1024 */
		struct pool_pick t = pick[a];
		uint32_t b = a;
		for (; b > 0 && pick[b - 1].seq > t.seq; b--)
			pick[b] = pick[b - 1];
		pick[b] = t;
	}
	unsigned shown = 0;
	for (uint32_t a = 0; a < n && shown < max; a++) {
		uint32_t i = pick[a].idx;
		uint64_t len = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, len)));
		uint32_t fl = rd32(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, flags)));
		uint64_t sum = rd64(c, pool_meta_off(&v, i, offsetof(struct shmring_pool_meta, checksum)));
		uint64_t off = c->h.data_off + (uint64_t)i * v.g.stride;
		if (len > v.g.buf_size)
			len = v.g.buf_size;
		struct shmring_dump_record r = {
			.index = pick[a].seq,
			.offset = off,
			.len = len,
			.payload = c->buf + off,
			.flags = i, /* the buffer index */
			.checksum_ok = (fl & SHMRING_POOL_FRAME_F_CHECKSUM)
					       ? shmring_pool_checksum(c->buf + off, (size_t)len) == sum
					       : -1,
		};
		rec(arg, &r);
		shown++;
	}
	*count = shown;
	return 0;
}

/* ------------------------------------------------------------------------------------
 * Broadcast: slots framed by seqlock words. A slot's word names the record it holds
 * (2n+1 being written, 2n+2 complete), which must map to that slot.
 */

struct bcast_view {
	uint64_t slots, mask, slot_size, stride;
	uint64_t pub;
};

static int bcast_geometry(struct ctx *c, struct bcast_view *v)
{
	const uint64_t *g = c->h.geo;
	int ok = 1;
	v->slots = g[SHMRING_BCAST_GEO_SLOTS];
	v->slot_size = g[SHMRING_BCAST_GEO_SLOT_SIZE];
	v->stride = g[SHMRING_BCAST_GEO_STRIDE];
	if (!is_pow2(v->slots) || v->slots < 2 || v->slots > SHMRING_BCAST_MAX_SLOTS) {
		prob(c, "geo[0]", v->slots, "bcast slots must be a power of two in [2, 2^20]");
		ok = 0;
	}
	if (v->slot_size == 0 || v->slot_size > SHMRING_BCAST_MAX_SLOT_SIZE) {
		prob(c, "geo[1]", v->slot_size, "bcast slot size must be in [1, 2^30]");
		ok = 0;
	} else if (v->stride != shmring_bcast_stride(v->slot_size)) {
		prob(c, "geo[2]", v->stride, "bcast stride does not match the slot size");
		ok = 0;
	}
	if (g[SHMRING_BCAST_GEO_RPAGE] != SHMRING_BCAST_RPAGE_OFF) {
		prob(c, "geo[3]", g[SHMRING_BCAST_GEO_RPAGE], "bcast reader page must be at %u",
		     SHMRING_BCAST_RPAGE_OFF);
		ok = 0;
	}
	if (g[SHMRING_BCAST_GEO_PAYLOAD] != SHMRING_BCAST_PAYLOAD_OFF) {
		prob(c, "geo[4]", g[SHMRING_BCAST_GEO_PAYLOAD], "bcast payload must be at %u",
		     SHMRING_BCAST_PAYLOAD_OFF);
		ok = 0;
	}
	geo_zero_from(c, 5, "bcast");
	if (c->h.flags & 0xffff0000u)
		prob(c, "flags", c->h.flags, "unknown bcast flags");
	/* slots <= 2^20, stride < 2^31: no overflow */
	ok = ok && regions_hold(c, SHMRING_BCAST_CTRL_SIZE, v->slots * v->stride, "bcast");
	c->geo_ok = ok;
	if (ok) {
		v->mask = v->slots - 1;
		if (c->info) {
			c->info->unit = "slots";
			c->info->capacity = v->slots;
		}
	}
	return ok;
}

static uint64_t bcast_slot_off(const struct ctx *c, const struct bcast_view *v, uint64_t i)
{
	return c->h.data_off + i * v->stride;
}

static void bcast_check(struct ctx *c)
{
	struct bcast_view v;
	struct shmring_bcast_wline w;
	char f[SHMRING_DUMP_FIELD_MAX];
	memset(&v, 0, sizeof(v));
	if (!bcast_geometry(c, &v))
		return;
	memcpy(&w, c->buf + c->h.ctrl_off, sizeof(w));
	const uint8_t *rp = c->buf + c->h.ctrl_off + SHMRING_BCAST_RPAGE_OFF;
	struct shmring_bcast_rpage r;
	memcpy(&r, rp, 512); /* the counters; the rest of the page is padding */
	v.pub = shmring_load_relaxed(&w.pub);
	uint32_t state = shmring_load_relaxed(&w.state);
	if (v.pub >= SHMRING_BCAST_SEQ_MAX)
		prob(c, "bcast.pub", v.pub, "published count of 2^62 or more");
	if (state > SHMRING_BCAST_CLOSED)
		prob(c, "bcast.state", state, "unknown channel state");
	uint64_t n = v.slots < SCAN_MAX ? v.slots : SCAN_MAX, written = 0;
	uint64_t ahead = 0; /* the newest record a slot names, in slot ahead_slot */
	uint32_t ahead_slot = 0;
	int reported = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = bcast_slot_off(c, &v, i);
		/* acquire: pairs with the writer's release stores of the word (reserve's odd,
		 * commit's even), each made after pub reached the record it names */
		uint64_t s = rd64_acquire(c, off);
		const char *why = NULL;
		if (s == 0)
			continue;
		written++;
		uint64_t rec = (s - 1) / 2;
		if ((rec & v.mask) != i)
			why = "names a record of another slot";
		else if (rec >= SHMRING_BCAST_SEQ_MAX)
			why = "names a record at or beyond 2^62";
		else if (!(s & 1)) {
			uint64_t len = rd64(c, off + 8);
			/* the length counts only if the record stayed in place meanwhile */
			if (len > v.slot_size && rd64(c, off) == s)
				why = "complete record longer than the slot size";
		}
		if (why && reported++ < 8) {
			snprintf(f, sizeof(f), "bcast.slot[%llu].seq", (unsigned long long)i);
			prob(c, f, s, "sequence word %llu %s", (unsigned long long)s, why);
		}
		if (!why && rec >= ahead) {
			ahead = rec;
			ahead_slot = (uint32_t)i; /* i < SCAN_MAX */
		}
	}
	/* pub read again after the words: a record a slot names is <= pub (the record being
	 * written is number pub), live channel or not. Further ahead, no writer wrote it, and
	 * readers (and a replacement writer) refuse it. */
	uint64_t pub2 = rd64_acquire(c, c->h.ctrl_off + offsetof(struct shmring_bcast_wline, pub));
	if (written && ahead > pub2 && pub2 < SHMRING_BCAST_SEQ_MAX) {
		snprintf(f, sizeof(f), "bcast.slot[%u].seq", ahead_slot);
		prob(c, f, 2 * ahead + 1, "names record %llu, beyond the %llu published",
		     (unsigned long long)ahead, (unsigned long long)pub2);
	}
	if (!c->info)
		return;
	/* Readers count on the reader page (they cannot write the header): their laps,
	 * sleeps and timeouts (and any other slow-path counter there) are added to the
	 * header's, so that the statistics are the channel's. Each read once, from r. */
	struct shmring_dump_stats *st = &c->info->stats;
	st->wake_syscalls += shmring_load_relaxed(&r.stats.wake_syscalls);
	st->sleeps += shmring_load_relaxed(&r.stats.sleeps);
	st->drops += shmring_load_relaxed(&r.stats.drops);
	st->laps += shmring_load_relaxed(&r.stats.laps);
	st->abandoned += shmring_load_relaxed(&r.stats.abandoned);
	st->peer_deaths += shmring_load_relaxed(&r.stats.peer_deaths);
	st->timeouts += shmring_load_relaxed(&r.stats.timeouts);
	c->info->fill = v.pub < v.slots ? v.pub : v.slots;
	kv(c, "slots", v.slots);
	kv(c, "slot_size", v.slot_size);
	kv(c, "stride", v.stride);
	kv(c, "published", v.pub);
	kv(c, "closed", state);
	kv(c, "writers", shmring_load_relaxed(&w.writers));
	kv(c, "slots_written", written);
	kv(c, "readers_open", shmring_load_relaxed(&r.readers));
	kv(c, "reader_opens", shmring_load_relaxed(&r.reader_opens));
	kv(c, "reader_lap_events", shmring_load_relaxed(&r.lap_events));
	kv(c, "reader_laps", shmring_load_relaxed(&r.stats.laps));
	kv(c, "reader_torn", shmring_load_relaxed(&r.torn));
	kv(c, "reader_sleeps", shmring_load_relaxed(&r.stats.sleeps));
	kv(c, "reader_timeouts", shmring_load_relaxed(&r.stats.timeouts));
	kv(c, "readers_q.waiters", shmring_load_relaxed(&r.q.waiters));
}

static int bcast_records(struct ctx *c, unsigned max,
			 void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg,
			 unsigned *count)
{
	struct bcast_view v;
	memset(&v, 0, sizeof(v));
	if (!bcast_geometry(c, &v))
		return -EPROTO;
	uint64_t pub = rd64(c, c->h.ctrl_off + offsetof(struct shmring_bcast_wline, pub));
	if (pub > SHMRING_BCAST_SEQ_MAX)
		return -EPROTO;
	/* the records still in place, oldest first: those the next one will not overwrite */
	uint64_t first = pub + 1 > v.slots ? pub + 1 - v.slots : 0;
	unsigned shown = 0;
	for (uint64_t nrec = first; nrec < pub && shown < max; nrec++) {
		uint64_t off = bcast_slot_off(c, &v, nrec & v.mask);
		if (rd64(c, off) != 2 * nrec + 2)
			continue; /* being rewritten */
		uint64_t len = rd64(c, off + 8);
		struct shmring_dump_record r = {
			.index = nrec,
			.offset = off + SHMRING_BCAST_PAYLOAD_OFF,
			.len = len <= v.slot_size ? len : v.slot_size,
			.payload = c->buf + off + SHMRING_BCAST_PAYLOAD_OFF,
			.flags = 0,
			.checksum_ok = -1,
		};
		rec(arg, &r);
		shown++;
	}
	*count = shown;
	return 0;
}

/* ------------------------------------------------------------------------------------
 * The kinds this file can decode. A kind that is not here is still checked at the
 * header level; its control region is shown as not decoded.
 */
struct kind_ops {
	uint32_t kind;
	void (*check)(struct ctx *c);
	int (*records)(struct ctx *c, unsigned max,
		       void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg,
		       unsigned *count);
};

static const struct kind_ops kinds[] = {
	{ SHMRING_KIND_SPSC, spsc_check, spsc_records },
	{ SHMRING_KIND_MPMC, mpmc_check, mpmc_records },
	{ SHMRING_KIND_POOL, pool_check, pool_records },
	{ SHMRING_KIND_BCAST, bcast_check, bcast_records },
};

static const struct kind_ops *find_kind(uint32_t kind)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kinds[i].kind == kind)
			return &kinds[i];
	return NULL;
}

/* ------------------------------------------------------------------------------------
 * The header page.
 */

/* Checks that need only the magic and version: without them nothing else means
 * anything. Returns 0 if the rest can be decoded. */
static int check_identity(struct ctx *c)
{
	if (c->len < 256) {
		prob(c, "file", c->len, "truncated: %llu bytes, a segment header needs %u",
		     (unsigned long long)c->len, SHMRING_HDR_SIZE);
		return -1;
	}
	uint64_t magic = shmring_load_relaxed(&c->h.magic);
	if (magic != SHMRING_MAGIC) {
		prob(c, "magic", magic, "not a shmring segment (magic 0x%016llx, expected 0x%016llx)",
		     (unsigned long long)magic, (unsigned long long)SHMRING_MAGIC);
		return -1;
	}
	if (c->h.layout_version != SHMRING_LAYOUT_VERSION) {
		prob(c, "layout_version", c->h.layout_version,
		     "unknown layout version %u (this library reads version %u)",
		     c->h.layout_version, SHMRING_LAYOUT_VERSION);
		return -1;
	}
	if (c->len < SHMRING_HDR_SIZE) {
		prob(c, "file", c->len, "truncated: %llu bytes, a segment header needs %u",
		     (unsigned long long)c->len, SHMRING_HDR_SIZE);
		return -1;
	}
	return 0;
}

static int region_ok(struct ctx *c, const char *off_name, uint64_t off, const char *size_name,
		     uint64_t size, uint64_t min_off)
{
	uint64_t total = c->h.total_size;
	if (off % SHMRING_PAGE || off < min_off || off > total) {
		prob(c, off_name, off, "must be page aligned, at least %llu and within the %llu-byte segment",
		     (unsigned long long)min_off, (unsigned long long)total);
		return 0;
	}
	if (size > total - off) {
		prob(c, size_name, size, "runs past the end of the segment (offset %llu, total %llu)",
		     (unsigned long long)off, (unsigned long long)total);
		return 0;
	}
	return 1;
}

static void check_header(struct ctx *c)
{
	const struct shmring_hdr *h = &c->h;
	int before = c->nproblems;

	if (h->kind < SHMRING_KIND_SPSC || h->kind > SHMRING_KIND_BCAST)
		prob(c, "kind", h->kind, "unknown channel kind");
	if (h->flags & ~SHMRING_SEG_F_KNOWN)
		prob(c, "flags", h->flags, "unknown segment flags 0x%x", h->flags & ~SHMRING_SEG_F_KNOWN);
	if (h->hdr_size != SHMRING_HDR_SIZE)
		prob(c, "hdr_size", h->hdr_size, "header size must be %u", SHMRING_HDR_SIZE);
	int total_ok = 1;
	if (h->total_size != c->len) {
		prob(c, "total_size", h->total_size, "the file holds %llu bytes",
		     (unsigned long long)c->len);
		total_ok = 0;
	}
	if (h->created_ns < CREATED_MIN || h->created_ns >= CREATED_MAX)
		prob(c, "created_ns", h->created_ns, "creation time is not a plausible date");
	if (h->creator_pid <= 0 || h->creator_pid > PID_LIMIT)
		prob(c, "creator_pid", (uint64_t)(int64_t)h->creator_pid, "not a valid process id");
	if (h->max_parts == 0 || h->max_parts > SHMRING_MAX_PARTS)
		prob(c, "max_parts", h->max_parts, "participant table holds 1 to %u slots",
		     SHMRING_MAX_PARTS);
	if (h->parts_off != SHMRING_PARTS_OFF)
		prob(c, "parts_off", h->parts_off, "participant table must be at %u", SHMRING_PARTS_OFF);
	if (total_ok) {
		c->ctrl_ok = region_ok(c, "ctrl_off", h->ctrl_off, "ctrl_size", h->ctrl_size,
				       SHMRING_HDR_SIZE);
		if (c->ctrl_ok && h->ctrl_size == 0) {
			prob(c, "ctrl_size", 0, "control region is empty");
			c->ctrl_ok = 0;
		}
		if (c->ctrl_ok)
			c->data_ok = region_ok(c, "data_off", h->data_off, "data_size", h->data_size,
					       h->ctrl_off + h->ctrl_size);
	}
	size_t nl = strnlen(h->name, sizeof(h->name));
	if (nl == sizeof(h->name)) {
		prob(c, "name", (uint64_t)(uint8_t)h->name[0], "name is not NUL terminated");
	} else {
		for (size_t i = 0; i < nl; i++) {
			unsigned char ch = (unsigned char)h->name[i];
			if (ch < 0x20 || ch == 0x7f || ch == '/') { /* as create allows */
				prob(c, "name", ch, "name has a bad character at byte %zu", i);
				break;
			}
		}
	}
	for (unsigned i = 0; i < 4; i++) {
		if (h->reserved[i] != 0) {
			char f[16];
			snprintf(f, sizeof(f), "reserved[%u]", i);
			prob(c, f, h->reserved[i], "reserved word is not zero");
		}
	}
	uint64_t sum = shmring_hdr_checksum(h);
	if (c->info)
		c->info->checksum_calc = sum;
	if (sum != h->checksum)
		prob(c, "checksum", h->checksum, "header checksum mismatch (computed 0x%016llx)",
		     (unsigned long long)sum);
	c->hdr_bad = c->nproblems != before;

	/* The library's own verdict: whatever it refuses, the check must not pass. */
	if (!c->hdr_bad) {
		struct shmring_seg s;
		char why[128] = "";
		memset(&s, 0, sizeof(s));
		int rc = shmring_hdr_validate(h, sizeof(*h), c->len, &s, why, sizeof(why));
		if (rc < 0 && rc != -ENOTSUP) { /* -ENOTSUP: the other wait backend, not damage */
			prob(c, "header", (uint64_t)-rc, "%s", why[0] ? why : shmring_strerror(rc));
			c->hdr_bad = 1;
		}
	}
}

/* start_time is in clock ticks since boot (USER_HZ, 100 on Linux): 2^42 ticks is over a
 * century even at 1000 Hz. */
#define START_TIME_MAX (UINT64_C(1) << 42)

static uint32_t rd32_acquire(const struct ctx *c, uint64_t off)
{
	const uint8_t *p = c->buf + off;
	if (((uintptr_t)p & 3) == 0)
		return __atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_ACQUIRE);
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void part_prob(struct ctx *c, uint32_t i, const char *field, uint64_t value,
		      const char *msg)
{
	char f[SHMRING_DUMP_FIELD_MAX];
	snprintf(f, sizeof(f), "parts[%u].%s", i, field);
	prob(c, f, value, "%s", msg);
}

/* Each slot is read from the buffer, state first with acquire (pairs with the release
 * store of state in participant.c's fill_slot()), so that a slot seen in use shows the
 * fields its owner wrote before it: a live first join never looks half done. */
static void check_parts(struct ctx *c)
{
	uint32_t maxp = c->h.max_parts <= SHMRING_MAX_PARTS ? c->h.max_parts : SHMRING_MAX_PARTS;
	char f[SHMRING_DUMP_FIELD_MAX];

	for (uint32_t i = 0; i < SHMRING_MAX_PARTS; i++) {
		uint64_t base = SHMRING_PARTS_OFF + (uint64_t)i * SHMRING_PART_SIZE;
		uint32_t state = rd32_acquire(c, base + offsetof(struct shmring_part, state));
		if (i >= maxp) {
			if (state != SHMRING_PART_FREE)
				part_prob(c, i, "state", state, "slot beyond max_parts is in use");
			continue;
		}
		if (state > SHMRING_PART_LEFT) {
			part_prob(c, i, "state", state, "unknown participant state");
			continue;
		}
		if (state == SHMRING_PART_FREE)
			continue;
		uint32_t role = rd32(c, base + offsetof(struct shmring_part, role));
		int32_t pid = (int32_t)rd32(c, base + offsetof(struct shmring_part, pid));
		uint32_t gen = rd32(c, base + offsetof(struct shmring_part, gen));
		uint64_t start = rd64(c, base + offsetof(struct shmring_part, start_time));
		uint64_t joined = rd64(c, base + offsetof(struct shmring_part, joined_ns));
		if (role == SHMRING_ROLE_NONE || role > SHMRING_ROLE_OBSERVER)
			part_prob(c, i, "role", role, "unknown participant role");
		if (pid <= 0 || pid > PID_LIMIT)
			part_prob(c, i, "pid", (uint64_t)(int64_t)pid, "not a valid process id");
		/* every join bumps gen before the slot goes active (it wraps to 0 only after
		 * 2^32 joins of one slot) */
		if (gen == 0)
			part_prob(c, i, "gen", gen, "a slot in use has been joined at least once");
		/* 0 is allowed: the joiner could not read /proc/PID/stat */
		if (start >= START_TIME_MAX)
			part_prob(c, i, "start_time", start,
				  "not a process start time (clock ticks since boot)");
		if (joined < CREATED_MIN || joined >= CREATED_MAX)
			part_prob(c, i, "joined_ns", joined, "join time is not a plausible date");
		/* SPSC pins its two roles to slots 0 and 1 */
		if (c->h.kind == SHMRING_KIND_SPSC && i <= SHMRING_SPSC_SLOT_CONSUMER &&
		    role != (i == SHMRING_SPSC_SLOT_PRODUCER ? SHMRING_ROLE_PRODUCER
							      : SHMRING_ROLE_CONSUMER) &&
		    role != SHMRING_ROLE_NONE && role <= SHMRING_ROLE_OBSERVER) {
			snprintf(f, sizeof(f), "parts[%u].role", i);
			prob(c, f, role, "spsc slot %u must hold the %s", i,
			     i == 0 ? "producer" : "consumer");
		}
	}
}

/* Words nobody writes: the statistics lines' spare words and the reserved area
 * [512, 1024) of the header page are zero (FORMAT.md). Checked on the copy. */
static void check_spare(struct ctx *c)
{
	const struct shmring_stats *s = &c->h.stats;
	char f[SHMRING_DUMP_FIELD_MAX];
	for (unsigned k = 0; k < sizeof(s->fast_spare) / sizeof(s->fast_spare[0]); k++) {
		uint64_t v = shmring_load_relaxed(&s->fast_spare[k]);
		if (v) {
			snprintf(f, sizeof(f), "stats.fast_spare[%u]", k);
			prob(c, f, v, "spare statistics word (offset %zu) is not zero",
			     offsetof(struct shmring_hdr, stats.fast_spare) + 8 * k);
		}
	}
	for (unsigned k = 0; k < sizeof(s->slow_spare) / sizeof(s->slow_spare[0]); k++) {
		uint64_t v = shmring_load_relaxed(&s->slow_spare[k]);
		if (v) {
			snprintf(f, sizeof(f), "stats.slow_spare[%u]", k);
			prob(c, f, v, "spare statistics word (offset %zu) is not zero",
			     offsetof(struct shmring_hdr, stats.slow_spare) + 8 * k);
		}
	}
	unsigned first = 0, n = 0;
	for (unsigned k = 0; k < sizeof(c->h.pad); k++) {
		if (c->h.pad[k] && n++ == 0)
			first = k;
	}
	if (n) {
		snprintf(f, sizeof(f), "pad[%u]", first);
		prob(c, f, c->h.pad[first], "reserved header byte at offset %zu is not zero "
		     "(%u non-zero bytes in [512, 1024))", offsetof(struct shmring_hdr, pad) + first, n);
	}
}

static void fill_info(struct ctx *c)
{
	struct shmring_dump_info *i = c->info;
	const struct shmring_hdr *h = &c->h;

	i->magic = shmring_load_relaxed(&h->magic);
	i->layout_version = h->layout_version;
	i->kind = h->kind;
	i->kind_name = shmring_dump_kind_name(h->kind);
	i->unit = "";
	i->flags = h->flags;
	i->hdr_size = h->hdr_size;
	i->total_size = h->total_size;
	i->created_ns = h->created_ns;
	i->creator_pid = h->creator_pid;
	i->max_parts = h->max_parts;
	i->parts_off = h->parts_off;
	i->ctrl_off = h->ctrl_off;
	i->ctrl_size = h->ctrl_size;
	i->data_off = h->data_off;
	i->data_size = h->data_size;
	memcpy(i->geo, h->geo, sizeof(i->geo));
	for (size_t k = 0; k < SHMRING_NAME_MAX && h->name[k]; k++) {
		unsigned char ch = (unsigned char)h->name[k];
		/* control bytes out; the rest as written (UTF-8 names are the creator's
		 * right; a tool that shows it makes it safe for its medium) */
		i->name[k] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	memcpy(i->reserved, h->reserved, sizeof(i->reserved));
	i->checksum = h->checksum;

	const struct shmring_stats *s = &h->stats;
	i->stats.msgs = shmring_load_relaxed(&s->msgs);
	i->stats.bytes = shmring_load_relaxed(&s->bytes);
	i->stats.wake_syscalls = shmring_load_relaxed(&s->wake_syscalls);
	i->stats.sleeps = shmring_load_relaxed(&s->sleeps);
	i->stats.drops = shmring_load_relaxed(&s->drops);
	i->stats.laps = shmring_load_relaxed(&s->laps);
	i->stats.abandoned = shmring_load_relaxed(&s->abandoned);
	i->stats.peer_deaths = shmring_load_relaxed(&s->peer_deaths);
	i->stats.timeouts = shmring_load_relaxed(&s->timeouts);

	for (uint32_t k = 0; k < SHMRING_MAX_PARTS; k++) {
		const struct shmring_part *p = &h->parts[k];
		uint32_t state = shmring_load_relaxed(&p->state);
		if (state == SHMRING_PART_FREE)
			continue;
		struct shmring_dump_part *d = &i->parts[i->nparts++];
		d->slot = k;
		d->state = state;
		d->role = shmring_load_relaxed(&p->role);
		d->pid = shmring_load_relaxed(&p->pid);
		d->gen = shmring_load_relaxed(&p->gen);
		d->start_time = shmring_load_relaxed(&p->start_time);
		d->joined_ns = shmring_load_relaxed(&p->joined_ns);
		for (int j = 0; j < 4; j++)
			d->kind_data[j] = shmring_load_relaxed(&p->kind_data[j]);
		d->alive = -1;
	}
}

/* Decode what can be decoded and run every check. Returns 0 if the bytes hold a
 * segment (consistent or not), -EPROTO if they do not. */
static int run(struct ctx *c)
{
	memset(&c->h, 0, sizeof(c->h));
	if (c->len)
		memcpy(&c->h, c->buf, c->len < sizeof(c->h) ? c->len : sizeof(c->h));
	if (c->info)
		c->info->file_size = c->len;
	if (check_identity(c) < 0) {
		if (c->info && c->len >= 8)
			c->info->magic = shmring_load_relaxed(&c->h.magic);
		return -EPROTO;
	}
	if (c->info) {
		c->info->is_segment = 1;
		fill_info(c);
	}
	check_header(c);
	check_spare(c);
	check_parts(c);
	const struct kind_ops *k = find_kind(c->h.kind);
	if (k && c->h.total_size == c->len) {
		if (c->info)
			c->info->kind_decoded = 1;
		k->check(c);
	}
	return 0;
}

int shmring_dump_check_buf(const void *buf, size_t len,
			   void (*problem)(void *arg, const struct shmring_dump_problem *p),
			   void *arg)
{
	struct ctx c;
	if (!buf && len)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.buf = buf;
	c.len = len;
	c.problem = problem;
	c.arg = arg;
	run(&c);
	return c.nproblems;
}

static void keep_problem(void *arg, const struct shmring_dump_problem *p)
{
	struct shmring_dump_info *i = arg;
	if (i->nproblems < SHMRING_DUMP_PROBLEMS_MAX)
		i->problems[i->nproblems] = *p;
	i->nproblems++;
}

int shmring_dump_decode_buf(const void *buf, size_t len, struct shmring_dump_info *info)
{
	struct ctx c;
	if ((!buf && len) || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->kind_name = "unknown";
	info->unit = "";
	memset(&c, 0, sizeof(c));
	c.buf = buf;
	c.len = len;
	c.problem = keep_problem;
	c.arg = info;
	c.info = info;
	return run(&c);
}

int shmring_dump_records_buf(const void *buf, size_t len, unsigned max,
			     void (*rec)(void *arg, const struct shmring_dump_record *r), void *arg)
{
	struct ctx c;
	if ((!buf && len) || !rec)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.buf = buf;
	c.len = len;
	if (run(&c) < 0 || c.hdr_bad)
		return -EPROTO;
	const struct kind_ops *k = find_kind(c.h.kind);
	if (!k)
		return -ENOTSUP;
	unsigned n = 0;
	int rc = k->records(&c, max, rec, arg, &n);
	if (rc < 0)
		return rc;
	return (int)n;
}
