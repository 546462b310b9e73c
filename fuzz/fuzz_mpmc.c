/* SPDX-License-Identifier: MIT */
/*
 * MPMC operation sequences against a model of the cells. Two producer and two consumer
 * handles in this process drive enqueue / enqueue_start+finish (bulk, burst, gaps) /
 * dequeue / dequeue_start+finish / bulk and burst copies, with closing, recovery and
 * cell inspection. Single-threaded, the algorithm in mpmc.h is deterministic, so until
 * the first "scribble" op the model predicts every return value, every slot address,
 * every message (order, length, bytes) and every cell's phase. After a scribble (a
 * hostile peer writing into the live segment) only safety is checked: documented errors,
 * pointers and lengths inside the cell array, no crash, no hang.
 */
#include <errno.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "shmring/mpmc.h"

#define NP 2
#define NC 2
#define MAXCAP 64u

enum { FREE_ = 0, WRITING_ = 1, FULL_ = 2, READING_ = 3 };

struct mcell {
	uint64_t pos;
	int phase;
	int gate;
	uint32_t len;
	uint64_t seed;
};

struct model {
	uint32_t cap, slot;
	uint64_t mask;
	struct mcell cell[MAXCAP];
	uint64_t tail, head;
	uint64_t held_pos[NP + NC];
	unsigned held_n[NP + NC];
	unsigned held_span[NP + NC];
	uint64_t held_gaps[NP + NC];
	int closed[NP + NC];
	uint64_t seed;
	int hostile;
};
static struct model M;

struct ctx {
	struct shmring_mpmc *h[NP + NC]; /* producers 0..NP-1, consumers NP.. */
	struct shmring_seg *keep;
	int dirty;
	unsigned reopens;
};

static struct mcell *mc(uint64_t pos)
{
	return &M.cell[pos & M.mask];
}

static int is(uint64_t pos, int phase)
{
	struct mcell *c = mc(pos);
	return c->pos == pos && c->phase == phase;
}

static uint8_t *payload(struct ctx *c, uint64_t pos)
{
	const struct shmring_seg *s = c->keep;
	return (uint8_t *)shmring_seg_data(s) + (pos & M.mask) * s->geo[SHMRING_MPMC_GEO_STRIDE] +
	       SHMRING_MPMC_CELL_HDR;
}

static int live(int from, int to)
{
	for (int i = from; i < to; i++)
		if (!M.closed[i])
			return 1;
	return 0;
}

/* The producer claim of mpmc.h, on the model: k cells claimed, 0 none. */
static unsigned m_prod_claim(unsigned n, unsigned min)
{
	uint64_t t = M.tail;
	if (!is(t, FREE_))
		return 0; /* the previous lap is still there: full */
	if (n > 1 && min > 1 && !is(t + min - 1, FREE_))
		return 0;
	unsigned k = 1;
	while (k < n && is(t + k, FREE_))
		k++;
	return k >= min ? k : 0;
}

/* Consumer claim as mpmc.h does it: k messages, 0 none, -EMSGSIZE; a batch steps over
 * gaps among its messages (not trailing ones): cl_span positions from M.head, the gaps
 * in cl_gaps. Helps the head over taken cells and gaps, as consumers do. */
static unsigned cl_span;
static uint64_t cl_gaps;

static int gap_at(uint64_t p)
{
	return is(p + M.cap, FREE_);
}

static int m_cons_claim(unsigned n, unsigned min, uint32_t maxlen)
{
	for (;;) {
		uint64_t h = M.head;
		struct mcell *c = mc(h);
		if (c->pos > h && c->phase != READING_) { /* moved on by whole laps: help */
			M.head++;
			continue;
		}
		if (!is(h, FULL_))
			return 0;
		if (c->len > maxlen)
			return -EMSGSIZE;
		if (n > 1 && min > 1 && !is(h + min - 1, FULL_) && !gap_at(h + min - 1))
			return 0;
		unsigned k = 1, span = 1;
		uint64_t gaps = 0;
		int toolong = 0;
		if (n > 1) {
			while (k < n && span < SHMRING_MPMC_BATCH_MAX && span < M.cap) {
				if (gap_at(h + span)) {
					gaps |= UINT64_C(1) << span++;
					continue;
				}
				if (!is(h + span, FULL_))
					break;
				if (mc(h + span)->len > maxlen) {
					toolong = 1;
					break;
				}
				k++;
				span++;
			}
			while (span > 1 && ((gaps >> (span - 1)) & 1))
				span--;
			gaps &= span >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << span) - 1;
			if (k < min)
				return toolong ? -EMSGSIZE : 0;
		}
		cl_span = span;
		cl_gaps = gaps;
		return (int)k;
	}
}

/* The position of the i-th message of a claim of cl_span from h. */
static uint64_t cl_msg(uint64_t h, unsigned i)
{
	for (unsigned j = 0;; j++)
		if (!((cl_gaps >> j) & 1) && i-- == 0)
			return h + j;
}

static int empty_ok(int rc, int prod)
{
	/* with every handle of the other side closed, EOF may be reported */
	int other_gone = prod ? !live(NP, NP + NC) : !live(0, NP);
	return rc == -EAGAIN || (other_gone && rc == -EPIPE);
}

static void hostile_rc(int rc, const char *what)
{
	FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE ||
			 rc == -EBUSY || rc == -EINVAL,
		 "%s %d", what, rc);
}

static void m_publish(int hi, unsigned n, const uint32_t *lens, const uint64_t *seeds)
{
	for (unsigned i = 0; i < M.held_n[hi]; i++) {
		struct mcell *c = mc(M.held_pos[hi] + i);
		if (i < n) {
			c->phase = FULL_;
			c->len = lens[i];
			c->seed = seeds[i];
		} else {
			c->pos += M.cap;
			c->phase = FREE_;
		}
		c->gate = 0;
	}
	M.held_n[hi] = 0;
}

static void m_take(int hi, uint64_t h, unsigned k)
{
	for (unsigned j = 0; j < cl_span; j++)
		if (!((cl_gaps >> j) & 1))
			mc(h + j)->phase = READING_;
	M.head = h + cl_span;
	M.held_pos[hi] = h;
	M.held_n[hi] = k;
	M.held_span[hi] = cl_span;
	M.held_gaps[hi] = cl_gaps;
}

static void m_finish_cons(int hi)
{
	for (unsigned j = 0; j < M.held_span[hi]; j++) {
		if ((M.held_gaps[hi] >> j) & 1)
			continue;
		struct mcell *c = mc(M.held_pos[hi] + j);
		c->pos += M.cap;
		c->phase = FREE_;
	}
	M.held_n[hi] = 0;
}

static void op_enqueue(struct ctx *c, int pi, uint32_t len)
{
	static uint8_t buf[4096];
	uint64_t seed = M.seed + 1;
	tu_fill(buf, len, seed);
	int rc = shmring_mpmc_enqueue(c->h[pi], buf, len, 0);
	if (M.hostile) {
		hostile_rc(rc, "enqueue");
		return;
	}
	if (M.held_n[pi]) {
		FZ_CHECK(rc == -EBUSY || (len > M.slot && rc == -EMSGSIZE), "enqueue while holding = %d", rc);
		return;
	}
	if (len > M.slot) {
		FZ_CHECK(rc == -EMSGSIZE, "enqueue(%u) = %d", len, rc);
		return;
	}
	unsigned k = m_prod_claim(1, 1);
	if (!k) {
		FZ_CHECK(empty_ok(rc, 1), "enqueue on full = %d", rc);
		return;
	}
	FZ_CHECK(rc == 0, "enqueue = %d", rc);
	M.seed++;
	M.held_pos[pi] = M.tail;
	M.held_n[pi] = 1;
	mc(M.tail)->phase = WRITING_;
	M.tail++;
	m_publish(pi, 1, &len, &seed);
}

static void op_enqueue_start(struct ctx *c, int pi, unsigned n, unsigned min)
{
	void *bufs[MAXCAP];
	int rc = shmring_mpmc_enqueue_start(c->h[pi], n, min, bufs, 0);
	if (M.hostile) {
		hostile_rc(rc, "enqueue_start");
		for (int i = 0; i < rc; i++) {
			FZ_CHECK(fz_inside(bufs[i], M.slot, shmring_seg_data(c->keep), c->keep->data_size),
				 "slot outside");
			memset(bufs[i], 0x42, M.slot);
		}
		return;
	}
	if (n == 0 || min == 0 || min > n || n > M.cap) {
		FZ_CHECK(rc == -EINVAL, "enqueue_start(%u, %u) = %d", n, min, rc);
		return;
	}
	if (M.held_n[pi]) {
		FZ_CHECK(rc == -EBUSY, "enqueue_start while holding = %d", rc);
		return;
	}
	unsigned k = m_prod_claim(n, min);
	if (!k) {
		FZ_CHECK(empty_ok(rc, 1), "enqueue_start on full = %d", rc);
		return;
	}
	FZ_CHECK(rc == (int)k, "enqueue_start(%u, %u) = %d, model %u", n, min, rc, k);
	for (unsigned i = 0; i < k; i++) {
		FZ_CHECK(bufs[i] == payload(c, M.tail + i), "slot %u at the wrong place", i);
		mc(M.tail + i)->phase = WRITING_;
	}
	M.held_pos[pi] = M.tail;
	M.held_n[pi] = k;
	M.tail += k;
}

static void op_enqueue_finish(struct ctx *c, int pi, struct fz *f)
{
	unsigned n = fz_u8(f) % (MAXCAP + 1);
	uint32_t lens[MAXCAP];
	uint64_t seeds[MAXCAP];
	int nolens = fz_u8(f) & 1;
	for (unsigned i = 0; i < n; i++) {
		lens[i] = nolens ? M.slot : fz_u8(f) % (M.slot + 2);
		seeds[i] = M.seed + 1 + i;
	}
	/* fill what we hold (the model knows where it is) */
	if (!M.hostile && M.held_n[pi] && n <= M.held_n[pi]) {
		for (unsigned i = 0; i < n; i++)
			if (lens[i] <= M.slot)
				tu_fill(payload(c, M.held_pos[pi] + i), lens[i], seeds[i]);
	}
	int rc = shmring_mpmc_enqueue_finish(c->h[pi], n, nolens ? NULL : lens);
	if (M.hostile) {
		hostile_rc(rc, "enqueue_finish");
		return;
	}
	if (M.held_n[pi] == 0 || n > M.held_n[pi]) {
		FZ_CHECK(rc == -EINVAL, "enqueue_finish(%u) holding %u = %d", n, M.held_n[pi], rc);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		if (lens[i] > M.slot) {
			FZ_CHECK(rc == -EMSGSIZE, "enqueue_finish with a long message = %d", rc);
			return;
		}
	FZ_CHECK(rc == (int)n, "enqueue_finish(%u) = %d", n, rc);
	M.seed += n;
	m_publish(pi, n, lens, seeds);
}

static void op_enqueue_n(struct ctx *c, int pi, unsigned n, uint32_t size, int bulk)
{
	static uint8_t buf[64 * 256];
	uint64_t seed = M.seed + 1;
	for (unsigned i = 0; i < (n < 64 ? n : 64); i++)
		tu_fill(buf + (size_t)i * size, size, seed + i);
	int rc = bulk ? shmring_mpmc_enqueue_bulk(c->h[pi], buf, size, n, 0)
		      : shmring_mpmc_enqueue_burst(c->h[pi], buf, size, n, 0);
	if (M.hostile) {
		hostile_rc(rc, "enqueue_n");
		return;
	}
	if (size > M.slot) {
		FZ_CHECK(rc == -EMSGSIZE, "enqueue_n size %u = %d", size, rc);
		return;
	}
	if (bulk && n > 64) {
		FZ_CHECK(rc == -EINVAL, "bulk of %u = %d", n, rc);
		return;
	}
	unsigned nn = n > 64 ? 64 : n, min = bulk ? nn : (nn ? 1 : 0);
	if (!bulk && nn > M.cap)
		nn = M.cap; /* a burst: as many as there is room for */
	if (nn == 0 || nn > M.cap) {
		FZ_CHECK(rc == -EINVAL, "enqueue_n(%u) = %d", n, rc);
		return;
	}
	if (M.held_n[pi]) {
		FZ_CHECK(rc == -EBUSY, "enqueue_n while holding = %d", rc);
		return;
	}
	unsigned k = m_prod_claim(nn, min);
	if (!k) {
		FZ_CHECK(empty_ok(rc, 1), "enqueue_n on full = %d", rc);
		return;
	}
	FZ_CHECK(rc == (int)k, "enqueue_n(%u) = %d, model %u", n, rc, k);
	uint32_t lens[64];
	uint64_t seeds[64];
	for (unsigned i = 0; i < k; i++) {
		lens[i] = size;
		seeds[i] = seed + i;
		mc(M.tail + i)->phase = WRITING_;
	}
	M.held_pos[pi] = M.tail;
	M.held_n[pi] = k;
	M.tail += k;
	M.seed += k;
	m_publish(pi, k, lens, seeds);
}

static void check_msg(struct ctx *c, const void *data, uint32_t len, uint64_t pos)
{
	struct mcell *m = mc(pos);
	FZ_CHECK(len == m->len, "message of %u bytes, model %u", len, m->len);
	if (data)
		FZ_CHECK(data == payload(c, pos), "message at the wrong place");
	FZ_CHECK(tu_check(data ? data : payload(c, pos), len, m->seed), "message bytes differ");
}

static void op_dequeue(struct ctx *c, int ci, uint32_t cap)
{
	static uint8_t buf[4096];
	int hi = NP + ci;
	int rc = shmring_mpmc_dequeue(c->h[hi], buf, cap, 0);
	if (M.hostile) {
		hostile_rc(rc, "dequeue");
		FZ_CHECK(rc < 0 || (uint32_t)rc <= cap, "dequeue returned %d bytes into %u", rc, cap);
		return;
	}
	if (M.held_n[hi]) {
		FZ_CHECK(rc == -EBUSY, "dequeue while holding = %d", rc);
		return;
	}
	int k = m_cons_claim(1, 1, cap);
	if (k == -EMSGSIZE) {
		FZ_CHECK(rc == -EMSGSIZE, "dequeue into %u = %d", cap, rc);
		return;
	}
	if (k == 0) {
		FZ_CHECK(empty_ok(rc, 0), "dequeue on empty = %d", rc);
		return;
	}
	uint64_t h = M.head;
	FZ_CHECK(rc == (int)mc(h)->len, "dequeue = %d, model %u", rc, mc(h)->len);
	FZ_CHECK(tu_check(buf, (size_t)rc, mc(h)->seed), "dequeued bytes differ");
	m_take(hi, h, 1);
	m_finish_cons(hi);
}

static void op_dequeue_start(struct ctx *c, int ci, unsigned n, unsigned min)
{
	struct shmring_mpmc_msg msgs[MAXCAP];
	int hi = NP + ci;
	int rc = shmring_mpmc_dequeue_start(c->h[hi], n, min, msgs, 0);
	if (M.hostile) {
		hostile_rc(rc, "dequeue_start");
		for (int i = 0; i < rc; i++) {
			FZ_CHECK(msgs[i].len <= M.slot, "len %u", msgs[i].len);
			FZ_CHECK(fz_inside(msgs[i].data, msgs[i].len, shmring_seg_data(c->keep),
					   c->keep->data_size),
				 "message outside");
			fz_touch(msgs[i].data, msgs[i].len);
		}
		return;
	}
	if (n == 0 || min == 0 || min > n || n > M.cap) {
		FZ_CHECK(rc == -EINVAL, "dequeue_start(%u, %u) = %d", n, min, rc);
		return;
	}
	if (M.held_n[hi]) {
		FZ_CHECK(rc == -EBUSY, "dequeue_start while holding = %d", rc);
		return;
	}
	int k = m_cons_claim(n, min, UINT32_MAX);
	if (k == 0) {
		FZ_CHECK(empty_ok(rc, 0), "dequeue_start on empty = %d", rc);
		return;
	}
	FZ_CHECK(rc == k, "dequeue_start(%u, %u) = %d, model %d", n, min, rc, k);
	uint64_t h = M.head;
	for (int i = 0; i < k; i++)
		check_msg(c, msgs[i].data, msgs[i].len, cl_msg(h, (unsigned)i));
	m_take(hi, h, (unsigned)k);
}

static void op_dequeue_finish(struct ctx *c, int ci)
{
	int hi = NP + ci;
	int rc = shmring_mpmc_dequeue_finish(c->h[hi]);
	if (M.hostile) {
		hostile_rc(rc, "dequeue_finish");
		return;
	}
	if (!M.held_n[hi]) {
		FZ_CHECK(rc == -EINVAL, "dequeue_finish holding nothing = %d", rc);
		return;
	}
	FZ_CHECK(rc == (int)M.held_n[hi], "dequeue_finish = %d, model %u", rc, M.held_n[hi]);
	m_finish_cons(hi);
}

static void op_dequeue_n(struct ctx *c, int ci, unsigned n, uint32_t size, int bulk)
{
	static uint8_t buf[MAXCAP * 256];
	uint32_t lens[MAXCAP];
	int hi = NP + ci;
	int rc = bulk ? shmring_mpmc_dequeue_bulk(c->h[hi], buf, size, n, lens, 0)
		      : shmring_mpmc_dequeue_burst(c->h[hi], buf, size, n, lens, 0);
	if (M.hostile) {
		hostile_rc(rc, "dequeue_n");
		for (int i = 0; i < rc; i++)
			FZ_CHECK(lens[i] <= size, "copied %u into %u", lens[i], size);
		return;
	}
	unsigned min = bulk ? n : (n ? 1 : 0);
	if (!bulk) { /* a burst: as many as there are, up to a batch */
		n = n > 64 ? 64 : n;
		n = n > M.cap ? M.cap : n;
	}
	if (n == 0 || min == 0 || min > n || n > M.cap) {
		FZ_CHECK(rc == -EINVAL, "dequeue_n(%u) = %d", n, rc);
		return;
	}
	if (M.held_n[hi]) {
		FZ_CHECK(rc == -EBUSY, "dequeue_n while holding = %d", rc);
		return;
	}
	int k = m_cons_claim(n, min, size);
	if (k == -EMSGSIZE) {
		FZ_CHECK(rc == -EMSGSIZE, "dequeue_n into %u = %d", size, rc);
		return;
	}
	if (k == 0) {
		FZ_CHECK(empty_ok(rc, 0), "dequeue_n on empty = %d", rc);
		return;
	}
	FZ_CHECK(rc == k, "dequeue_n(%u) = %d, model %d", n, rc, k);
	uint64_t h = M.head;
	for (int i = 0; i < k; i++) {
		struct mcell *m = mc(cl_msg(h, (unsigned)i));
		FZ_CHECK(lens[i] == m->len, "length %u, model %u", lens[i], m->len);
		FZ_CHECK(tu_check(buf + (size_t)i * size, lens[i], m->seed), "bytes differ");
	}
	m_take(hi, h, (unsigned)k);
	m_finish_cons(hi);
}

static void op_inspect(struct ctx *c, uint32_t idx)
{
	struct shmring_mpmc_cell_info info;
	int rc = shmring_mpmc_cell_get(c->h[NP], idx, &info);
	if (idx >= M.cap) {
		FZ_CHECK(rc == -EINVAL, "cell_get(%u) = %d", idx, rc);
		return;
	}
	FZ_CHECK(rc == 0, "cell_get = %d", rc);
	FZ_CHECK(fz_inside(info.data, M.slot, shmring_seg_data(c->keep), c->keep->data_size),
		 "cell payload outside");
	if (M.hostile)
		return;
	struct mcell *m = &M.cell[idx];
	FZ_CHECK(info.phase == (uint32_t)m->phase && info.pos == (m->pos & ((UINT64_C(1) << 46) - 1)),
		 "cell %u: phase %u pos %llu, model %d %llu", idx, info.phase,
		 (unsigned long long)info.pos, m->phase, (unsigned long long)m->pos);
	uint32_t cnt = shmring_mpmc_count(c->h[NP]);
	uint64_t d = M.tail - M.head;
	FZ_CHECK(cnt == (d > M.cap ? M.cap : d), "count %u, model %llu", cnt, (unsigned long long)d);
}

static void op_close(struct ctx *c, int hi)
{
	if (c->reopens++ >= 2 || !c->h[hi])
		return;
	c->dirty = 1;
	shmring_mpmc_close(c->h[hi]);
	c->h[hi] = NULL;
	M.closed[hi] = 1;
	if (M.hostile)
		return;
	if (M.held_n[hi]) {
		if (hi < NP)
			m_publish(hi, 0, NULL, NULL); /* unpublished: gaps */
		else
			m_finish_cons(hi);
	}
}

/* One ring per shape, built once and restored from a snapshot before each input. */
struct shape {
	struct fz_shape s;
	struct ctx c;
};
static struct shape shapes[64];
static const uint32_t cap_choice[8] = { 2, 4, 8, 16, 32, 64, 4, 8 };
static const uint32_t slot_choice[4] = { 1, 24, 100, 256 };

static void teardown(struct shape *sh)
{
	for (int i = 0; i < NP + NC; i++)
		if (sh->c.h[i])
			shmring_mpmc_close(sh->c.h[i]);
	fz_shape_drop(&sh->s, sh->c.keep);
	memset(sh, 0, sizeof(*sh));
}

static void setup(struct shape *sh, unsigned k)
{
	struct shmring_mpmc_opts o = {
		.capacity = cap_choice[k & 7],
		.slot_size = slot_choice[(k >> 3) & 3],
		.align = (k & 32) ? 64 : 16,
		.max_parts = 8,
	};
	uint64_t stride = (SHMRING_MPMC_CELL_HDR + o.slot_size + o.align - 1) & ~(uint64_t)(o.align - 1);
	uint64_t data = (o.capacity * stride + SHMRING_PAGE - 1) & ~(uint64_t)(SHMRING_PAGE - 1);
	sh->s.guard = fz_guard_prepare(2 * SHMRING_PAGE + data);
	int rc = shmring_mpmc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &sh->c.h[0]);
	FZ_CHECK(rc == 0, "create: %d (descriptor leak?)", rc);
	int fd = shmring_mpmc_fd(sh->c.h[0]);
	rc = shmring_seg_open_fd(fd, SHMRING_KIND_MPMC, 0, &sh->c.keep);
	FZ_CHECK(rc == 0, "keeper open %d", rc);
	for (int i = 1; i < NP + NC; i++) {
		rc = shmring_mpmc_open_fd(sh->c.keep->fd, i < NP ? SHMRING_ROLE_PRODUCER : SHMRING_ROLE_CONSUMER,
					  &sh->c.h[i]);
		FZ_CHECK(rc == 0, "open %d: %d", i, rc);
	}
	fz_shape_ready(&sh->s, sh->c.keep);
	for (int i = 0; i < NP + NC; i++)
		fz_snap_add(&sh->s.snap, sh->c.h[i], sizeof(*sh->c.h[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	unsigned k = fz_u8(&f) & 63;
	struct shape *sh = &shapes[k];
	if (!fz_shape_restore(&sh->s))
		setup(sh, k);
	struct ctx *c = &sh->c;
	c->reopens = 0;
	memset(&M, 0, sizeof(M));
	M.cap = (uint32_t)c->keep->geo[SHMRING_MPMC_GEO_CAPACITY];
	M.slot = (uint32_t)c->keep->geo[SHMRING_MPMC_GEO_SLOT_SIZE];
	M.mask = M.cap - 1;
	for (uint32_t i = 0; i < M.cap; i++)
		M.cell[i].pos = i;

	unsigned ops = 0;
	int trace = fz_trace();
	while (f.n && ops++ < 2000) {
		uint8_t op = fz_u8(&f);
		int pi = (op >> 4) & 1, ci = (op >> 5) & 1;
		if (trace) {
			fprintf(stderr, "op %u (%u) tail %llu head %llu held %u %u %u %u\n", op % 16, op,
				(unsigned long long)M.tail, (unsigned long long)M.head, M.held_n[0],
				M.held_n[1], M.held_n[2], M.held_n[3]);
			for (uint32_t i = 0; i < M.cap && c->h[NP]; i++) {
				struct shmring_mpmc_cell_info in;
				shmring_mpmc_cell_get(c->h[NP], i, &in);
				fprintf(stderr, "   cell %u: lib pos %llu ph %u len %u | model pos %llu ph %d len %u\n",
					i, (unsigned long long)in.pos, in.phase, in.len,
					(unsigned long long)M.cell[i].pos, M.cell[i].phase, M.cell[i].len);
			}
		}
		switch (op % 16) {
		case 0:
		case 1:
			if (c->h[pi])
				op_enqueue(c, pi, fz_u8(&f) % (M.slot + 2));
			break;
		case 2: {
			unsigned n = fz_u8(&f) % (M.cap + 2), min = fz_u8(&f) % (n + 2);
			if (c->h[pi])
				op_enqueue_start(c, pi, n, min);
			break;
		}
		case 3:
			/* demoting is a hint: it must change nothing the model predicts */
			if (c->h[pi] && (op & 0x80))
				FZ_CHECK(shmring_mpmc_set_demote(c->h[pi], op & 0x40) == 0,
					 "set_demote refused a producer");
			if (c->h[pi])
				op_enqueue_finish(c, pi, &f);
			break;
		case 4: {
			unsigned n = fz_u8(&f) % 80;
			uint32_t sz = fz_u8(&f) % (M.slot + 2);
			if (c->h[pi])
				op_enqueue_n(c, pi, n, sz, op & 0x40);
			break;
		}
		case 5:
		case 6:
			if (c->h[NP + ci])
				op_dequeue(c, ci, (op & 0x80) ? fz_u8(&f) : 4096);
			break;
		case 7: {
			unsigned n = fz_u8(&f) % (M.cap + 2), min = fz_u8(&f) % (n + 2);
			if (c->h[NP + ci])
				op_dequeue_start(c, ci, n, min);
			break;
		}
		case 8:
		case 9:
			if (c->h[NP + ci])
				op_dequeue_finish(c, ci);
			break;
		case 10: {
			unsigned n = fz_u8(&f) % (M.cap + 2);
			uint32_t sz = (op & 0x80) ? fz_u8(&f) % (M.slot + 2) : 256;
			if (c->h[NP + ci])
				op_dequeue_n(c, ci, n, sz, op & 0x40);
			break;
		}
		case 11:
			if (c->h[NP])
				op_inspect(c, fz_u8(&f) % (M.cap + 1));
			break;
		case 12:
			if ((op & 0xc0) == 0xc0)
				op_close(c, (op >> 4) & 3);
			break;
		case 13: {
			int rc = shmring_mpmc_recover(c->h[0] ? c->h[0] : c->h[NP]);
			if (M.hostile)
				FZ_CHECK(rc >= 0 || rc == -EPROTO || rc == -EINVAL, "recover %d", rc);
			else if (c->h[0] || c->h[NP])
				FZ_CHECK(rc == 0, "recover = %d with everyone alive", rc);
			break;
		}
		default:
			if (op & 0x40) {
				fz_scribble(&f, c->keep->base, c->keep->size, c->keep);
				M.hostile = 1;
			}
			break;
		}
	}
	/* everything published must still come out, in order */
	if (!M.hostile && c->h[NP] && !M.held_n[NP]) {
		for (int hi = 0; hi < NP; hi++)
			if (c->h[hi] && M.held_n[hi]) {
				int rc = shmring_mpmc_enqueue_finish(c->h[hi], 0, NULL);
				FZ_CHECK(rc == 0, "giving back = %d", rc);
				m_publish(hi, 0, NULL, NULL);
			}
		for (unsigned i = 0; i <= 2 * M.cap; i++)
			op_dequeue(c, 0, 4096);
		FZ_CHECK(m_cons_claim(1, 1, UINT32_MAX) == 0 || M.held_n[NP + 1],
			 "messages left after draining");
	}
	if (c->dirty)
		teardown(sh);
	return 0;
}
