/* SPDX-License-Identifier: MIT */
/*
 * Broadcast operation sequences against a model of the slots. One writer and three
 * readers (one lapping to the oldest valid record, one to the newest, one on the
 * writer's read-write mapping) in this process drive publish / reserve+commit / abort,
 * read / peek+validate+release / read_latest / seek, and closing and replacing the
 * writer. Single-threaded, the seqlock protocol of bcast.h is deterministic, so until
 * the first "scribble" op the model predicts every return value, record number, length,
 * byte, missed count and reader position (lapping included). After a scribble (a hostile
 * writer) only safety is checked: documented errors only, every pointer and length
 * inside the slot array, no crash, no hang.
 */
#include <errno.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "shmring/bcast.h"

#define NR 3
#define MAXS 64u

struct mreader {
	uint64_t pos, missed, records;
	int peeking;
	uint64_t peek_seq, peek_len;
	int newest; /* SHMRING_BCAST_LAP_NEWEST */
};

struct model {
	uint64_t slots, mask, size;
	uint64_t seq[MAXS], len[MAXS], seed[MAXS];
	uint64_t wpos, pub;
	int reserved, closed;
	uint64_t nseed;
	struct mreader r[NR];
	int hostile;
};
static struct model M;

struct ctx {
	struct shmring_bcast *w, *r[NR];
	struct shmring_seg *keep;
	int dirty;
	unsigned reopens;
};

static uint8_t *payload_of(struct shmring_bcast *b, uint64_t n)
{
	struct shmring_seg *s = shmring_bcast_seg(b);
	return (uint8_t *)shmring_seg_data(s) + (n & M.mask) * s->geo[SHMRING_BCAST_GEO_STRIDE] +
	       SHMRING_BCAST_PAYLOAD_OFF;
}

static void hostile_rc(int rc, const char *what)
{
	FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE ||
			 rc == -ESTALE || rc == -EINVAL,
		 "%s %d", what, rc);
}

/* ---- writer ---- */

static void m_reserve(uint64_t len, uint64_t seed)
{
	uint64_t s = M.wpos & M.mask;
	if (!M.reserved)
		M.seq[s] = 2 * M.wpos + 1;
	M.reserved = 1;
	M.len[s] = len;
	M.seed[s] = seed;
}

static void m_commit(void)
{
	M.seq[M.wpos & M.mask] = 2 * M.wpos + 2;
	M.wpos++;
	M.pub = M.wpos;
	M.reserved = 0;
}

static void op_publish(struct ctx *c, uint64_t len)
{
	static uint8_t buf[8192];
	uint64_t seed = M.nseed + 1;
	tu_fill(buf, len, seed);
	int rc = shmring_bcast_publish(c->w, buf, len);
	if (M.hostile) {
		hostile_rc(rc, "publish");
		return;
	}
	if (len > M.size) {
		FZ_CHECK(rc == -EMSGSIZE, "publish(%llu) = %d", (unsigned long long)len, rc);
		return;
	}
	FZ_CHECK(rc == 0, "publish = %d", rc);
	M.nseed++;
	m_reserve(len, seed);
	m_commit();
}

static void op_reserve(struct ctx *c, uint64_t len)
{
	void *buf = NULL;
	int rc = shmring_bcast_reserve(c->w, len, &buf);
	if (M.hostile) {
		hostile_rc(rc, "reserve");
		if (rc == 0) {
			struct shmring_seg *s = shmring_bcast_seg(c->w);
			FZ_CHECK(fz_inside(buf, len, shmring_seg_data(s), s->data_size), "slot outside");
			memset(buf, 0x21, len);
		}
		return;
	}
	if (len > M.size) {
		FZ_CHECK(rc == -EMSGSIZE, "reserve(%llu) = %d", (unsigned long long)len, rc);
		return;
	}
	FZ_CHECK(rc == 0, "reserve = %d", rc);
	FZ_CHECK((uint8_t *)buf == payload_of(c->w, M.wpos), "reservation at the wrong place");
	tu_fill(buf, len, ++M.nseed);
	m_reserve(len, M.nseed);
}

static void op_commit(struct ctx *c)
{
	int rc = shmring_bcast_commit(c->w);
	if (M.hostile) {
		hostile_rc(rc, "commit");
		return;
	}
	if (!M.reserved) {
		FZ_CHECK(rc == -EINVAL, "commit of nothing = %d", rc);
		return;
	}
	FZ_CHECK(rc == 0, "commit = %d", rc);
	m_commit();
}

/* ---- readers ---- */

static int m_empty(struct mreader *r)
{
	if (M.closed)
		return M.pub <= r->pos ? -EPIPE : -EAGAIN;
	return -EAGAIN;
}

static void m_lapped(struct mreader *r, uint64_t n, uint64_t seen)
{
	uint64_t m = (seen - 1) >> 1;
	uint64_t h = M.pub < m ? m : M.pub;
	uint64_t np = r->newest ? h - 1 : h + 1 - M.slots;
	r->missed += np - n;
	r->pos = np;
}

/* read/peek on the model: 0 and *n set, or an error; the lap moves happen here */
static int m_next(struct mreader *r, uint64_t *n)
{
	for (int tries = 0; tries < SHMRING__BCAST_TRIES; tries++) {
		uint64_t p = r->pos, w = M.seq[p & M.mask];
		if (w == 2 * p + 2) {
			*n = p;
			return 0;
		}
		if (w > 2 * p + 2) {
			m_lapped(r, p, w);
			continue;
		}
		return m_empty(r);
	}
	return -EAGAIN;
}

static void m_done(struct mreader *r, uint64_t n)
{
	r->missed = 0;
	r->pos = n + 1;
	r->records++;
}

static void check_bytes(const void *p, uint64_t n, uint64_t len)
{
	uint64_t s = n & M.mask;
	FZ_CHECK(len == M.len[s], "record %llu: %llu bytes, model %llu", (unsigned long long)n,
		 (unsigned long long)len, (unsigned long long)M.len[s]);
	FZ_CHECK(tu_check(p, len, M.seed[s]), "record %llu: bytes differ", (unsigned long long)n);
}

static void op_read(struct ctx *c, int ri, size_t cap)
{
	static uint8_t buf[8192];
	struct shmring_bcast_rec rec;
	memset(&rec, 0, sizeof(rec));
	int rc = shmring_bcast_read(c->r[ri], buf, cap, &rec);
	struct mreader *r = &M.r[ri];
	r->peeking = 0;
	if (M.hostile) {
		hostile_rc(rc, "read");
		FZ_CHECK(rc < 0 || (size_t)rc <= cap, "read %d bytes into %zu", rc, cap);
		return;
	}
	uint64_t n;
	int want = m_next(r, &n);
	if (want) {
		FZ_CHECK(rc == want, "read = %d, model %d", rc, want);
		return;
	}
	uint64_t len = M.len[n & M.mask];
	if (len > cap) {
		FZ_CHECK(rc == -EMSGSIZE && rec.len == len, "read of %llu into %zu = %d",
			 (unsigned long long)len, cap, rc);
		return;
	}
	FZ_CHECK(rc == (int)len, "read = %d, model %llu", rc, (unsigned long long)len);
	FZ_CHECK(rec.seq == n && rec.missed == r->missed && rec.len == len && rec.data == buf,
		 "record %llu missed %llu, model %llu missed %llu", (unsigned long long)rec.seq,
		 (unsigned long long)rec.missed, (unsigned long long)n, (unsigned long long)r->missed);
	check_bytes(buf, n, len);
	m_done(r, n);
}

static void op_peek(struct ctx *c, int ri)
{
	struct shmring_bcast_rec rec;
	memset(&rec, 0, sizeof(rec));
	int rc = shmring_bcast_peek(c->r[ri], &rec);
	struct mreader *r = &M.r[ri];
	r->peeking = 0;
	if (M.hostile) {
		hostile_rc(rc, "peek");
		if (rc == 0) {
			struct shmring_seg *s = shmring_bcast_seg(c->r[ri]);
			FZ_CHECK(fz_inside(rec.data, rec.len, shmring_seg_data(s), s->data_size),
				 "peeked record outside");
			fz_touch(rec.data, rec.len);
		}
		return;
	}
	uint64_t n;
	int want = m_next(r, &n);
	if (want) {
		FZ_CHECK(rc == want, "peek = %d, model %d", rc, want);
		return;
	}
	FZ_CHECK(rc == 0, "peek = %d", rc);
	FZ_CHECK(rec.seq == n && rec.missed == r->missed, "peeked %llu, model %llu",
		 (unsigned long long)rec.seq, (unsigned long long)n);
	FZ_CHECK((const uint8_t *)rec.data == payload_of(c->r[ri], n), "peeked at the wrong place");
	check_bytes(rec.data, n, rec.len);
	r->peeking = 1;
	r->peek_seq = M.seq[n & M.mask];
	r->peek_len = rec.len;
}

static void op_release(struct ctx *c, int ri, int validate_only)
{
	struct mreader *r = &M.r[ri];
	int rc = validate_only ? shmring_bcast_validate(c->r[ri]) : shmring_bcast_release(c->r[ri]);
	if (M.hostile) {
		hostile_rc(rc, "release");
		return;
	}
	if (!r->peeking) {
		FZ_CHECK(rc == -EINVAL, "release without a peek = %d", rc);
		return;
	}
	uint64_t s2 = M.seq[r->pos & M.mask];
	int want = s2 == r->peek_seq ? 0 : -ESTALE;
	FZ_CHECK(rc == want, "release = %d, model %d", rc, want);
	if (validate_only)
		return;
	r->peeking = 0;
	if (want == 0)
		m_done(r, r->pos);
	else
		m_lapped(r, r->pos, s2);
}

static void op_latest(struct ctx *c, int ri, size_t cap)
{
	static uint8_t buf[8192];
	struct shmring_bcast_rec rec;
	memset(&rec, 0, sizeof(rec));
	int rc = shmring_bcast_read_latest(c->r[ri], buf, cap, &rec);
	struct mreader *r = &M.r[ri];
	r->peeking = 0;
	if (M.hostile) {
		hostile_rc(rc, "read_latest");
		FZ_CHECK(rc < 0 || (size_t)rc <= cap, "read_latest %d bytes into %zu", rc, cap);
		return;
	}
	if (M.pub == 0) {
		FZ_CHECK(rc == m_empty(r), "read_latest with nothing published = %d", rc);
		return;
	}
	uint64_t n = M.pub - 1, len = M.len[n & M.mask];
	if (len > cap) {
		FZ_CHECK(rc == -EMSGSIZE && rec.len == len, "read_latest of %llu into %zu = %d",
			 (unsigned long long)len, cap, rc);
		return;
	}
	FZ_CHECK(rc == (int)len && rec.seq == n, "read_latest = %d seq %llu, model %llu", rc,
		 (unsigned long long)rec.seq, (unsigned long long)n);
	check_bytes(buf, n, len);
	if (n >= r->pos) {
		r->missed += n - r->pos;
		FZ_CHECK(rec.missed == r->missed, "read_latest missed %llu, model %llu",
			 (unsigned long long)rec.missed, (unsigned long long)r->missed);
		m_done(r, n);
	} else {
		FZ_CHECK(rec.missed == 0, "the same record again, missed %llu", (unsigned long long)rec.missed);
	}
}

static void op_seek(struct ctx *c, int ri, int whence)
{
	int rc = shmring_bcast_seek(c->r[ri], whence);
	struct mreader *r = &M.r[ri];
	if (M.hostile) {
		hostile_rc(rc, "seek");
		return;
	}
	if (whence < 0 || whence > 2) {
		FZ_CHECK(rc == -EINVAL, "seek(%d) = %d", whence, rc);
		return;
	}
	FZ_CHECK(rc == 0, "seek = %d", rc);
	r->peeking = 0;
	uint64_t np = whence == SHMRING_BCAST_SEEK_OLDEST   ? (M.pub + 1 > M.slots ? M.pub + 1 - M.slots : 0)
		      : whence == SHMRING_BCAST_SEEK_NEWEST ? (M.pub ? M.pub - 1 : 0)
							    : M.pub;
	if (np >= r->pos)
		r->missed += np - r->pos;
	else
		r->missed = 0;
	r->pos = np;
}

static void op_stats(struct ctx *c, int ri)
{
	struct shmring_bcast_stats st;
	int rc = shmring_bcast_stats(c->r[ri], &st);
	FZ_CHECK(rc == 0, "stats = %d", rc);
	if (M.hostile)
		return;
	FZ_CHECK(st.published == M.pub && st.records == M.r[ri].records,
		 "stats published %llu records %llu, model %llu %llu", (unsigned long long)st.published,
		 (unsigned long long)st.records, (unsigned long long)M.pub,
		 (unsigned long long)M.r[ri].records);
}

static void op_writer(struct ctx *c)
{
	if (c->reopens++ >= 2)
		return;
	c->dirty = 1;
	if (c->w) {
		shmring_bcast_close(c->w);
		c->w = NULL;
		M.closed = 1;
		M.reserved = 0;
		return;
	}
	int rc = shmring_bcast_open_fd(c->keep->fd, SHMRING_ROLE_PRODUCER, 0, &c->w);
	if (M.hostile) {
		FZ_CHECK(rc == 0 || fz_attach_err_ok(rc), "writer open %d", rc);
		if (rc)
			c->w = NULL;
		return;
	}
	FZ_CHECK(rc == 0, "writer reopen = %d", rc);
	M.closed = 0;
	M.wpos = M.pub;
}

/* One channel per shape, built once and restored from a snapshot before each input. */
struct shape {
	struct fz_shape s;
	struct ctx c;
};
static struct shape shapes[32];
static const uint32_t slots_choice[4] = { 2, 4, 8, 64 };
static const uint64_t size_choice[4] = { 8, 20, 200, 4000 };

static void teardown(struct shape *sh)
{
	for (int i = 0; i < NR; i++)
		if (sh->c.r[i])
			shmring_bcast_close(sh->c.r[i]);
	if (sh->c.w)
		shmring_bcast_close(sh->c.w);
	fz_shape_drop(&sh->s, sh->c.keep);
	memset(sh, 0, sizeof(*sh));
}

static void setup(struct shape *sh, unsigned k)
{
	struct shmring_bcast_opts o = {
		.slots = slots_choice[k & 3],
		.slot_size = size_choice[(k >> 2) & 3],
	};
	uint64_t data = o.slots * shmring_bcast_stride(o.slot_size);
	data = (data + SHMRING_PAGE - 1) & ~(uint64_t)(SHMRING_PAGE - 1);
	sh->s.guard = fz_guard_prepare(SHMRING_PAGE + SHMRING_BCAST_CTRL_SIZE + data);
	int rc = shmring_bcast_create(NULL, &o, SHMRING_ROLE_PRODUCER, &sh->c.w);
	FZ_CHECK(rc == 0, "create: %d (descriptor leak?)", rc);
	rc = shmring_seg_open_fd(shmring_bcast_fd(sh->c.w), SHMRING_KIND_BCAST, 0, &sh->c.keep);
	FZ_CHECK(rc == 0, "keeper open %d", rc);
	static const unsigned rflags[NR] = { 0, SHMRING_BCAST_LAP_NEWEST, SHMRING_BCAST_RW_MAPPING };
	for (int i = 0; i < NR; i++) {
		unsigned fl = rflags[i] | ((i == 2 && (k & 16)) ? SHMRING_BCAST_LAP_NEWEST : 0);
		rc = shmring_bcast_open_fd(sh->c.keep->fd, SHMRING_ROLE_READER, fl, &sh->c.r[i]);
		FZ_CHECK(rc == 0, "reader open %d", rc);
	}
	fz_shape_ready(&sh->s, sh->c.keep);
	fz_snap_add(&sh->s.snap, sh->c.w, sizeof(*sh->c.w));
	for (int i = 0; i < NR; i++)
		fz_snap_add(&sh->s.snap, sh->c.r[i], sizeof(*sh->c.r[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	unsigned k = fz_u8(&f) & 31;
	struct shape *sh = &shapes[k];
	if (!fz_shape_restore(&sh->s))
		setup(sh, k);
	struct ctx *c = &sh->c;
	c->reopens = 0;
	memset(&M, 0, sizeof(M));
	M.slots = c->keep->geo[SHMRING_BCAST_GEO_SLOTS];
	M.mask = M.slots - 1;
	M.size = c->keep->geo[SHMRING_BCAST_GEO_SLOT_SIZE];
	M.r[1].newest = 1;
	M.r[2].newest = !!(k & 16);

	unsigned ops = 0;
	int trace = fz_trace();
	while (f.n && ops++ < 2000) {
		uint8_t op = fz_u8(&f);
		int ri = (op >> 4) % NR;
		if (trace)
			fprintf(stderr, "op %u ri %d: pub %llu wpos %llu res %d | r0 pos %llu pk %d | r1 %llu %d | r2 %llu %d\n",
				op % 16, ri, (unsigned long long)M.pub, (unsigned long long)M.wpos, M.reserved,
				(unsigned long long)M.r[0].pos, M.r[0].peeking, (unsigned long long)M.r[1].pos,
				M.r[1].peeking, (unsigned long long)M.r[2].pos, M.r[2].peeking);
		switch (op % 16) {
		case 0:
		case 1:
		case 2: {
			uint64_t len = (op & 0x80) ? fz_u16(&f) % (M.size + 9) : fz_u8(&f) % (M.size + 1);
			if (c->w)
				op_publish(c, len);
			break;
		}
		case 3:
			if (c->w)
				op_reserve(c, fz_u16(&f) % (M.size + 9));
			break;
		case 4:
			/* demoting is a hint: it must change nothing the model predicts */
			if (c->w && (op & 0x80))
				FZ_CHECK(shmring_bcast_set_demote(c->w, op & 0x40) == 0,
					 "set_demote refused the writer");
			if (c->w)
				op_commit(c);
			break;
		case 5:
			if (c->w) {
				shmring_bcast_abort(c->w);
				M.reserved = 0;
			}
			break;
		case 6:
		case 7:
			op_read(c, ri, (op & 0x80) ? fz_u16(&f) % 8192 : 8192);
			break;
		case 8:
			op_peek(c, ri);
			break;
		case 9:
			op_release(c, ri, 0);
			break;
		case 10:
			op_release(c, ri, 1);
			break;
		case 11:
			op_latest(c, ri, (op & 0x80) ? fz_u16(&f) % 8192 : 8192);
			break;
		case 12:
			op_seek(c, ri, (int)(fz_u8(&f) % 4));
			break;
		case 13:
			if (op & 0x80)
				op_writer(c);
			else
				op_stats(c, ri);
			break;
		default:
			if (op & 0x40) {
				fz_scribble(&f, c->keep->base, c->keep->size, c->keep);
				M.hostile = 1;
			}
			break;
		}
	}
	if (c->dirty)
		teardown(sh);
	return 0;
}
