/* SPDX-License-Identifier: MIT */
/*
 * Frame pool operation sequences against a model of buffers, log and cursors. A
 * producer and up to four subscribers (block and drop-oldest) in this process drive
 * loan / publish / cancel / take / release / verify, with the statistics, reclaiming,
 * and closing either side. Single-threaded, the rules of pool.h are deterministic, so
 * until the first "scribble" op the model predicts every return value, which buffer
 * each loan gets, which frame each take returns (position, buffer, length, bytes), which
 * frame a drop-oldest subscriber loses, and every counter; and at the end, with
 * everything released and closed, every buffer must be free. After a scribble (a
 * hostile peer) only safety is checked: documented errors only, frames inside the data
 * region, no crash, no hang.
 */
#include <errno.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "shmring/pool.h"

#define NS 4
#define MAXB 16u
#define LOGN 4096u

struct mframe {
	uint32_t b;
	uint64_t len, seed;
};

struct msub {
	int on;
	uint32_t idx;      /* record index: bit idx in the buffer states */
	int drop;          /* drop-oldest */
	int admitted;
	uint64_t cursor;   /* oldest position queued for it */
	uint64_t held_pos[8];
	uint32_t held_b[8];
	unsigned nheld;
	uint64_t frames, drops;
};

struct model {
	uint32_t nbufs, max_held, queue_depth;
	uint64_t buf_size;
	int checksum;
	uint64_t state[MAXB];
	uint32_t hint;
	int loaned;        /* buffer + 1 */
	uint64_t tail;
	struct mframe log[LOGN];
	struct msub s[NS];
	int closed;
	uint64_t drops, nseed;
	int hostile;
};
static struct model M;

struct ctx {
	struct shmring_pool *prod, *sub[NS];
	struct shmring_seg *keep;
	struct shmring_pool_frame loan;
	struct shmring_pool_frame held[NS][8];
	int dirty;
	unsigned reopens;
};

static void hostile_rc(int rc, const char *what)
{
	FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -ENOBUFS ||
			 rc == -EINVAL || rc == -EBUSY || rc == -EBADMSG || rc == -ENODATA,
		 "%s %d", what, rc);
}

static int block_full(void)
{
	for (int i = 0; i < NS; i++)
		if (M.s[i].on && !M.s[i].drop && M.s[i].admitted &&
		    M.tail - M.s[i].cursor >= M.queue_depth)
			return 1;
	return 0;
}

static int m_grab(void)
{
	for (uint32_t k = 0; k < M.nbufs; k++) {
		uint32_t b = (M.hint + k) % M.nbufs;
		if (M.state[b] == 0) {
			M.state[b] = SHMRING_POOL_LOANED;
			M.hint = (b + 1) % M.nbufs;
			M.loaned = (int)b + 1;
			return (int)b;
		}
	}
	return -1;
}

/* The loan of pool.h on the model: the buffer, or -EAGAIN. */
static int m_loan(void)
{
	if (block_full())
		return -EAGAIN;
	for (;;) {
		int b = m_grab();
		if (b >= 0)
			return b;
		int best = -1;
		uint64_t bestq = 0;
		for (int i = 0; i < NS; i++) {
			struct msub *s = &M.s[i];
			if (!s->on || !s->drop || !s->admitted)
				continue;
			uint64_t q = M.tail - s->cursor;
			if (q > bestq) {
				bestq = q;
				best = i;
			}
		}
		if (best < 0)
			return -EAGAIN;
		struct msub *s = &M.s[best];
		M.state[M.log[s->cursor % LOGN].b] &= ~(UINT64_C(1) << s->idx);
		s->cursor++;
		s->drops++;
		M.drops++;
	}
}

static void op_loan(struct ctx *c)
{
	struct shmring_pool_frame f;
	memset(&f, 0, sizeof(f));
	int rc = shmring_pool_loan(c->prod, &f);
	if (M.hostile) {
		hostile_rc(rc, "loan");
		if (rc == 0) {
			FZ_CHECK(f.index < c->prod->nbufs && fz_inside(f.data, f.capacity, c->prod->data,
								       c->prod->data_size),
				 "loan outside");
			c->loan = f;
		}
		return;
	}
	if (M.loaned) {
		FZ_CHECK(rc == -EBUSY, "second loan = %d", rc);
		return;
	}
	int b = m_loan();
	if (b < 0) {
		FZ_CHECK(rc == -EAGAIN, "loan = %d, model -EAGAIN", rc);
		return;
	}
	FZ_CHECK(rc == 0 && f.index == (uint32_t)b, "loan = %d buffer %u, model %d", rc, f.index, b);
	FZ_CHECK(f.data == c->prod->data + (uint64_t)b * c->prod->stride && f.capacity == M.buf_size,
		 "loaned buffer at the wrong place");
	c->loan = f;
}

static void op_publish(struct ctx *c, uint64_t len)
{
	struct shmring_pool_frame *f = &c->loan;
	uint64_t seed = M.nseed + 1;
	if (!M.hostile && M.loaned && len <= M.buf_size)
		tu_fill(f->data, len, seed);
	f->len = len;
	int rc = shmring_pool_publish(c->prod, f);
	if (M.hostile) {
		hostile_rc(rc, "publish");
		return;
	}
	if (!M.loaned || len > M.buf_size) {
		FZ_CHECK(rc == -EINVAL, "publish without a loan or too long = %d", rc);
		return;
	}
	uint32_t b = (uint32_t)M.loaned - 1;
	uint64_t to = 0;
	int n = 0;
	for (int i = 0; i < NS; i++) {
		struct msub *s = &M.s[i];
		if (!s->on)
			continue;
		if (!s->admitted) {
			s->admitted = 1;
			s->cursor = M.tail;
		}
		to |= UINT64_C(1) << s->idx;
		n++;
	}
	FZ_CHECK(rc == n && f->seq == M.tail, "publish = %d seq %llu, model %d %llu", rc,
		 (unsigned long long)f->seq, n, (unsigned long long)M.tail);
	M.state[b] = to;
	M.log[M.tail % LOGN] = (struct mframe){ b, len, seed };
	M.tail++;
	M.nseed++;
	M.loaned = 0;
}

static void op_cancel(struct ctx *c)
{
	int rc = shmring_pool_cancel(c->prod, &c->loan);
	if (M.hostile) {
		hostile_rc(rc, "cancel");
		return;
	}
	if (!M.loaned || c->loan.index + 1u != (uint32_t)M.loaned) {
		FZ_CHECK(rc == -EINVAL, "cancel without a loan = %d", rc);
		return;
	}
	FZ_CHECK(rc == 0, "cancel = %d", rc);
	M.state[M.loaned - 1] = 0;
	M.loaned = 0;
}

static void op_take(struct ctx *c, int i)
{
	struct shmring_pool_frame f;
	memset(&f, 0, sizeof(f));
	struct shmring_pool *p = c->sub[i];
	struct msub *s = &M.s[i];
	int rc = shmring_pool_take(p, &f);
	if (M.hostile) {
		hostile_rc(rc, "take");
		if (rc == 0) {
			FZ_CHECK(f.index < p->nbufs && f.len <= f.capacity, "frame %u len %llu", f.index,
				 (unsigned long long)f.len);
			FZ_CHECK(fz_inside(f.data, f.len, p->rodata, p->data_size), "frame outside");
			fz_touch(f.data, f.len);
			if (s->nheld < 8)
				c->held[i][s->nheld++] = f;
			else
				shmring_pool_release(p, &f);
		}
		return;
	}
	if (s->nheld >= M.max_held) {
		FZ_CHECK(rc == -ENOBUFS, "take holding %u = %d", s->nheld, rc);
		return;
	}
	if (!s->admitted || s->cursor == M.tail) {
		int want = M.closed ? -EPIPE : -EAGAIN;
		FZ_CHECK(rc == want, "take on empty = %d, model %d", rc, want);
		return;
	}
	struct mframe *m = &M.log[s->cursor % LOGN];
	FZ_CHECK(rc == 0, "take = %d", rc);
	FZ_CHECK(f.seq == s->cursor && f.index == m->b && f.len == m->len,
		 "took %llu buffer %u len %llu, model %llu %u %llu", (unsigned long long)f.seq, f.index,
		 (unsigned long long)f.len, (unsigned long long)s->cursor, m->b,
		 (unsigned long long)m->len);
	FZ_CHECK(f.data == p->rodata + (uint64_t)m->b * p->stride, "frame at the wrong place");
	FZ_CHECK(tu_check(f.data, f.len, m->seed), "frame bytes differ");
	rc = shmring_pool_frame_verify(p, &f);
	FZ_CHECK(rc == (M.checksum ? 0 : -ENODATA), "verify = %d", rc);
	s->held_pos[s->nheld] = s->cursor;
	s->held_b[s->nheld] = m->b;
	c->held[i][s->nheld] = f;
	s->nheld++;
	s->cursor++;
	s->frames++;
}

static void op_release(struct ctx *c, int i, unsigned which)
{
	struct msub *s = &M.s[i];
	struct shmring_pool *p = c->sub[i];
	if (s->nheld == 0) {
		struct shmring_pool_frame f;
		memset(&f, 0, sizeof(f));
		f.index = which % (M.nbufs + 1);
		int rc = shmring_pool_release(p, &f);
		FZ_CHECK(rc == -EINVAL || M.hostile, "release of a frame not held = %d", rc);
		return;
	}
	unsigned k = which % s->nheld;
	int rc = shmring_pool_release(p, &c->held[i][k]);
	if (M.hostile) {
		hostile_rc(rc, "release");
	} else {
		FZ_CHECK(rc == 0, "release = %d", rc);
		M.state[s->held_b[k]] &= ~(UINT64_C(1) << s->idx);
		s->held_pos[k] = s->held_pos[s->nheld - 1];
		s->held_b[k] = s->held_b[s->nheld - 1];
	}
	c->held[i][k] = c->held[i][s->nheld - 1];
	s->nheld--;
}

static void op_stats(struct ctx *c, int i)
{
	struct shmring_pool_stats st;
	struct shmring_pool *any = c->prod ? c->prod : c->sub[i];
	if (!any)
		return;
	int rc = shmring_pool_stats(any, &st);
	FZ_CHECK(rc == 0, "stats = %d", rc);
	int fc = shmring_pool_free_count(any);
	if (M.hostile)
		return;
	uint32_t nfree = 0, nloan = 0;
	for (uint32_t b = 0; b < M.nbufs; b++) {
		nfree += M.state[b] == 0;
		nloan += !!(M.state[b] & SHMRING_POOL_LOANED);
	}
	FZ_CHECK(st.published == M.tail && st.drops == M.drops && st.free_bufs == nfree &&
			 st.loaned_bufs == nloan && fc == (int)nfree,
		 "stats published %llu drops %llu free %u loaned %u, model %llu %llu %u %u",
		 (unsigned long long)st.published, (unsigned long long)st.drops, st.free_bufs,
		 st.loaned_bufs, (unsigned long long)M.tail, (unsigned long long)M.drops, nfree, nloan);
	if (c->sub[i]) {
		struct shmring_pool_sub_stats ss;
		rc = shmring_pool_sub_stats(c->sub[i], &ss);
		struct msub *s = &M.s[i];
		FZ_CHECK(rc == 0 && ss.index == s->idx && ss.frames == s->frames && ss.drops == s->drops &&
				 ss.queued == (s->admitted ? M.tail - s->cursor : 0),
			 "sub stats frames %llu drops %llu queued %llu, model %llu %llu",
			 (unsigned long long)ss.frames, (unsigned long long)ss.drops,
			 (unsigned long long)ss.queued, (unsigned long long)s->frames,
			 (unsigned long long)s->drops);
	}
}

static void op_close(struct ctx *c, int who)
{
	if (c->reopens++ >= 2)
		return;
	c->dirty = 1;
	if (who == NS) {
		if (c->prod) {
			shmring_pool_close(c->prod);
			c->prod = NULL;
			M.closed = 1;
			if (M.loaned)
				M.state[M.loaned - 1] &= ~SHMRING_POOL_LOANED;
			M.loaned = 0;
		} else {
			int rc = shmring_pool_open_producer_fd(c->keep->fd, &c->prod);
			if (M.hostile) {
				FZ_CHECK(rc == 0 || fz_attach_err_ok(rc), "producer open %d", rc);
				if (rc)
					c->prod = NULL;
				return;
			}
			FZ_CHECK(rc == 0, "producer reopen = %d", rc);
			M.closed = 0;
			M.hint = 0; /* a new handle looks from buffer 0 */
		}
		return;
	}
	if (!c->sub[who])
		return;
	shmring_pool_close(c->sub[who]);
	c->sub[who] = NULL;
	struct msub *s = &M.s[who];
	for (uint32_t b = 0; b < M.nbufs; b++)
		M.state[b] &= ~(UINT64_C(1) << s->idx);
	s->on = 0;
}

/* One pool per shape, built once and restored from a snapshot before each input. */
struct shape {
	struct fz_shape s;
	struct ctx c;
	int nsubs;
};
static struct shape shapes[64];

static void teardown(struct shape *sh)
{
	for (int i = 0; i < NS; i++)
		if (sh->c.sub[i])
			shmring_pool_close(sh->c.sub[i]);
	if (sh->c.prod)
		shmring_pool_close(sh->c.prod);
	fz_shape_drop(&sh->s, sh->c.keep);
	memset(sh, 0, sizeof(*sh));
}

static int drop_policy(unsigned k, int i)
{
	return ((i + (int)(k >> 5)) & 1) != 0;
}

static void setup(struct shape *sh, unsigned k)
{
	uint32_t ms = 1 + (k & 3), mh = 1 + ((k >> 2) & 1), qd = 1 + ((k >> 3) & 1);
	uint32_t extra = (k & 16) ? 2 : 0;
	struct shmring_pool_opts o = {
		.buf_size = (k & 32) ? 5000 : 64,
		.nbufs = qd + ms * mh + extra,
		.max_subs = ms,
		.max_held = mh,
		.queue_depth = qd,
		.flags = (k & 32) ? SHMRING_POOL_F_CHECKSUM : 0,
	};
	int rc = shmring_pool_create(NULL, &o, NULL, &sh->c.prod);
	FZ_CHECK(rc == 0, "create: %d (%s)", rc, shmring_last_error_detail());
	rc = shmring_seg_open_fd(shmring_pool_fd(sh->c.prod), SHMRING_KIND_POOL, 0, &sh->c.keep);
	FZ_CHECK(rc == 0, "keeper open %d", rc);
	sh->nsubs = (int)ms;
	for (int i = 0; i < sh->nsubs; i++) {
		struct shmring_pool_sub_opts so = {
			.policy = drop_policy(k, i) ? SHMRING_POOL_DROP_OLDEST : SHMRING_POOL_BLOCK,
		};
		rc = shmring_pool_subscribe_fd(sh->c.keep->fd, &so, &sh->c.sub[i]);
		FZ_CHECK(rc == 0, "subscribe %d: %d", i, rc);
	}
	/* no guard (s.guard stays NULL): the pool's layout is its own business */
	fz_shape_ready(&sh->s, sh->c.keep);
	fz_snap_add(&sh->s.snap, sh->c.prod, sizeof(*sh->c.prod));
	for (int i = 0; i < sh->nsubs; i++)
		fz_snap_add(&sh->s.snap, sh->c.sub[i], sizeof(*sh->c.sub[i]));
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
	const struct shmring_pool *p0 = c->prod;
	M.nbufs = p0->nbufs;
	M.max_held = p0->max_held;
	M.queue_depth = p0->queue_depth;
	M.buf_size = p0->buf_size;
	M.checksum = p0->checksum;
	for (int i = 0; i < sh->nsubs; i++) {
		struct shmring_pool_sub_stats ss;
		FZ_CHECK(shmring_pool_sub_stats(c->sub[i], &ss) == 0, "sub stats");
		M.s[i].on = 1;
		M.s[i].idx = ss.index;
		M.s[i].drop = drop_policy(k, i);
	}

	unsigned ops = 0;
	int trace = fz_trace();
	while (f.n && ops++ < 2000) {
		uint8_t op = fz_u8(&f);
		int si = (op >> 4) & 3;
		if (trace)
			fprintf(stderr, "op %u si %d: tail %llu loaned %d hint %u states %llx %llx %llx %llx\n",
				op % 16, si, (unsigned long long)M.tail, M.loaned, M.hint,
				(unsigned long long)M.state[0], (unsigned long long)M.state[1],
				(unsigned long long)M.state[2], (unsigned long long)M.state[3]);
		switch (op % 16) {
		case 0:
		case 1:
		case 2:
			if (c->prod)
				op_loan(c);
			break;
		case 3:
		case 4: {
			uint64_t len = (op & 0x80) ? fz_u16(&f) % (M.buf_size + 2) : fz_u8(&f);
			if (c->prod)
				op_publish(c, len);
			break;
		}
		case 5:
			if (c->prod)
				op_cancel(c);
			break;
		case 6:
		case 7:
		case 8:
			if (c->sub[si])
				op_take(c, si);
			break;
		case 9:
		case 10:
			if (c->sub[si])
				op_release(c, si, fz_u8(&f));
			break;
		case 11:
			op_stats(c, si);
			break;
		case 12: {
			struct shmring_pool *h = (op & 0x40) && c->sub[si] ? c->sub[si] : c->prod;
			if (!h)
				break;
			int rc = shmring_pool_reclaim(h);
			if (M.hostile)
				hostile_rc(rc, "reclaim");
			else
				FZ_CHECK(rc == 0, "reclaim = %d with everyone alive", rc);
			break;
		}
		case 13:
			if ((op & 0xc0) == 0xc0)
				op_close(c, (op & 0x20) ? NS : si);
			break;
		default:
			if (op & 0x40) {
				fz_scribble(&f, c->keep->base, c->keep->size, c->keep);
				M.hostile = 1;
				/* An odd epoch with the producer alive (it is: this process) makes
				 * every finalizer wait its full second (HANDSHAKE_NS) before giving
				 * up: bounded, but it would cut the fuzzing rate a hundredfold. The
				 * hostile-peer stress test covers that wait; here the epoch stays
				 * even. */
				struct shmring_pool_ctrl *pc = shmring_seg_ctrl(c->keep);
				uint64_t e = shmring_load_relaxed(&pc->epoch);
				if (e & 1)
					shmring_store_relaxed(&pc->epoch, e + 1);
			}
			break;
		}
	}
	/* every buffer comes back: release what is held, cancel the loan, drain */
	if (!M.hostile) {
		for (int i = 0; i < NS; i++) {
			while (c->sub[i] && M.s[i].nheld)
				op_release(c, i, 0);
			while (c->sub[i] && M.s[i].admitted && M.s[i].cursor != M.tail) {
				op_take(c, i);
				op_release(c, i, 0);
			}
		}
		if (c->prod && M.loaned)
			op_cancel(c);
		struct shmring_pool *any = c->prod ? c->prod : NULL;
		for (int i = 0; !any && i < NS; i++)
			any = c->sub[i];
		if (any)
			FZ_CHECK(shmring_pool_free_count(any) == (int)M.nbufs, "%d of %u buffers came back",
				 shmring_pool_free_count(any), M.nbufs);
	}
	if (c->dirty)
		teardown(sh);
	return 0;
}
