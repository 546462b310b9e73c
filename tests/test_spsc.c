/* SPDX-License-Identifier: MIT */
/* SPSC ring: records in and out, wrap-around, limits, blocking, closing, dead peers,
 * across real processes. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "shmring/shmring.h"
#include "testutil.h"

/* A record of META bytes or more carries: u64 sequence, u64 xxh3 of the rest, then
 * filler. A shorter record holds the first len bytes of its "short image": the sequence
 * (little-endian, so even a 1-byte record holds its low byte and tells apart the 255
 * records around it), then the xxh3 of the sequence. The consumer, which tracks the
 * sequence it expects, rebuilds the image and compares every byte: a lost, duplicated
 * or reordered short record is caught by its own bytes, and if not (a neighbour 256
 * records away with the same low byte) by the next record of 2 bytes or more and by the
 * lengths, which the consumer draws from the producer's generator. */
#define META 16u

static size_t pick_size(uint64_t *rng, size_t minsz, size_t maxsz)
{
	uint64_t x = tu_rand(rng);
	size_t sz;
	/* mostly small (1-256 B), a tenth spread log-uniformly up to 128 KiB */
	if (x % 10)
		sz = 1 + (size_t)((x >> 8) % 256);
	else {
		unsigned e = (unsigned)((x >> 8) % 17);
		size_t hi = (size_t)1 << e;
		sz = hi + (size_t)((x >> 16) % hi);
	}
	if (sz < minsz)
		sz = minsz;
	if (sz > maxsz)
		sz = maxsz;
	return sz;
}

static void short_image(uint8_t img[META], uint64_t seq)
{
	memcpy(img, &seq, 8);
	uint64_t h = XXH3_64bits(&seq, 8);
	memcpy(img + 8, &h, 8);
}

static void make_rec(uint8_t *p, size_t len, uint64_t seq)
{
	if (len < META) {
		uint8_t img[META];
		short_image(img, seq);
		memcpy(p, img, len);
		return;
	}
	memcpy(p, &seq, 8);
	/* cheap filler that differs per record */
	uint64_t pat = seq * UINT64_C(0x9e3779b97f4a7c15) + 1;
	for (size_t i = META; i < len; i += 8)
		memcpy(p + i, &pat, len - i < 8 ? len - i : 8);
	uint64_t h = XXH3_64bits(p + META, len - META);
	memcpy(p + 8, &h, 8);
}

/* 0 ok; 2 wrong sequence (lost, duplicated or reordered); 3 corrupt payload */
static int check_rec(const uint8_t *p, size_t len, uint64_t want_seq)
{
	uint64_t seq, h;
	if (len < META) {
		uint8_t img[META];
		short_image(img, want_seq);
		size_t sl = len < 8 ? len : 8;
		if (memcmp(p, img, sl) != 0)
			return 2;
		return memcmp(p + sl, img + sl, len - sl) ? 3 : 0;
	}
	memcpy(&seq, p, 8);
	memcpy(&h, p + 8, 8);
	if (seq != want_seq)
		return 2;
	if (XXH3_64bits(p + META, len - META) != h)
		return 3;
	return 0;
}

/* The checker itself: a record of any length 1..64 is told apart from its neighbours
 * (lost, duplicated, swapped), and a flipped bit anywhere in it is seen. */
Test(spsc, record_check_catches_loss_dup_reorder_and_corruption_at_every_length)
{
	uint8_t b[64];
	for (size_t len = 1; len <= sizeof(b); len++) {
		for (uint64_t seq = 0; seq < 1000; seq += 7) {
			make_rec(b, len, seq);
			cr_assert_eq(check_rec(b, len, seq), 0, "len %zu seq %llu", len, (unsigned long long)seq);
			/* read where seq+1 (seq lost), seq-1 (duplicate) or seq+2 (reorder) was due */
			for (int64_t d = -2; d <= 255 - 2; d++)
				if (d != 0 && (int64_t)seq + d >= 0)
					cr_assert_eq(check_rec(b, len, seq + (uint64_t)d), 2,
						     "len %zu: record %llu accepted as %lld", len,
						     (unsigned long long)seq, (long long)(seq + (uint64_t)d));
			for (size_t i = 0; i < len; i++)
				for (int bit = 0; bit < 8; bit++) {
					b[i] ^= (uint8_t)(1u << bit);
					cr_assert_neq(check_rec(b, len, seq), 0, "len %zu: flip of byte %zu bit %d not seen",
						      len, i, bit);
					b[i] ^= (uint8_t)(1u << bit);
				}
		}
	}
}

struct stream_cfg {
	char name[64];
	uint64_t n;
	int block;        /* use the blocking calls */
	int batch;        /* records per commit / release */
	int demote;       /* the producer demotes what it commits (set_demote) */
	unsigned slow_consumer, slow_producer; /* extra work per record */
	uint64_t seed;
	/* seen by the consumer */
	uint64_t shorts;          /* records shorter than META */
	size_t min_len, max_len;
};

/* record sizes of the streams: 1 B to 64 KiB */
#define STREAM_MIN 1
#define STREAM_MAX 65536

static void busy(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++) /* test-only delay loop, not synchronisation */
		;
}

static int producer_main(void *a)
{
	struct stream_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	if (shmring_spsc_set_demote(r, c->demote) != 0)
		return 13;
	uint64_t rng = c->seed;
	for (uint64_t i = 0; i < c->n;) {
		int k;
		for (k = 0; k < c->batch && i < c->n; k++, i++) {
			size_t len = pick_size(&rng, STREAM_MIN, STREAM_MAX);
			void *buf = NULL;
			int rc;
			if (c->block)
				rc = shmring_spsc_reserve_wait(r, len, &buf, SHMRING_FOREVER);
			else
				while ((rc = shmring_spsc_reserve(r, len, &buf)) == -EAGAIN) {
					shmring_spsc_commit(r);
					shmring_cpu_relax();
				}
			if (rc)
				return 11;
			make_rec(buf, len, i);
			busy(c->slow_producer);
		}
		if (shmring_spsc_commit(r) < 0)
			return 12;
	}
	shmring_spsc_close(r);
	return 0;
}

/* Consume everything in the parent; returns records seen. */
static uint64_t consume(struct shmring_spsc *r, struct stream_cfg *c)
{
	uint64_t rng = c->seed, got = 0;
	c->min_len = SIZE_MAX;
	for (;;) {
		struct shmring_rec rec = { 0 };
		int k = 0, rc = 0;
		for (; k < c->batch; k++) {
			rc = c->block ? shmring_spsc_peek_wait(r, &rec, k ? 0 : SHMRING_FOREVER)
				      : shmring_spsc_peek(r, &rec);
			if (rc)
				break;
			size_t want = pick_size(&rng, STREAM_MIN, STREAM_MAX);
			cr_assert_eq(rec.len, want, "record %llu has length %u, expected %zu",
				     (unsigned long long)got, rec.len, want);
			c->shorts += rec.len < META;
			if (rec.len < c->min_len)
				c->min_len = rec.len;
			if (rec.len > c->max_len)
				c->max_len = rec.len;
			int bad = check_rec(rec.data, rec.len, got);
			cr_assert_eq(bad, 0, "record %llu: %s", (unsigned long long)got,
				     bad == 2 ? "out of order, lost or duplicated" : "corrupt payload");
			got++;
			busy(c->slow_consumer);
		}
		if (k)
			shmring_spsc_release(r);
		if (rc == -EPIPE)
			break;
		cr_assert(rc == 0 || rc == -EAGAIN || rc == -ETIMEDOUT, "peek: %s", shmring_strerror(rc));
	}
	return got;
}

static void run_stream(struct stream_cfg *c, uint64_t capacity)
{
	struct shmring_spsc *r;
	tu_name(c->name, sizeof(c->name), "stream");
	struct shmring_spsc_opts o = { .capacity = capacity };
	cr_assert_eq(shmring_spsc_create(c->name, &o, SHMRING_ROLE_CONSUMER, &r), 0);
	pid_t pid = tu_fork(producer_main, c);
	uint64_t got = consume(r, c);
	cr_assert_eq(tu_wait(pid), 0, "producer failed");
	cr_assert_eq(got, c->n, "got %llu of %llu records", (unsigned long long)got,
		     (unsigned long long)c->n);
	/* the sizes spanned 1 B - 64 KiB, short records included (the seeds are fixed) */
	cr_assert_eq(c->min_len, STREAM_MIN);
	cr_assert_eq(c->max_len, STREAM_MAX);
	cr_assert_gt(c->shorts, 0);
	shmring_spsc_close(r);
	shmring_seg_unlink(c->name);
}

Test(spsc, stream_10M_random_sizes_spinning, .timeout = 600)
{
	struct stream_cfg c = { .n = tu_scaled(10000000, 10000), .batch = 1, .seed = 1 };
	run_stream(&c, 1u << 22);
}

Test(spsc, stream_blocking_consumer_slower, .timeout = 600)
{
	struct stream_cfg c = { .n = tu_scaled(300000, 5000), .block = 1, .batch = 1,
				.slow_consumer = 2000, .seed = 2 };
	run_stream(&c, 1u << 18);
}

Test(spsc, stream_blocking_producer_slower, .timeout = 600)
{
	struct stream_cfg c = { .n = tu_scaled(300000, 5000), .block = 1, .batch = 1,
				.slow_producer = 2000, .seed = 3 };
	run_stream(&c, 1u << 18);
}

Test(spsc, stream_batched, .timeout = 600)
{
	struct stream_cfg c = { .n = tu_scaled(2000000, 10000), .block = 1, .batch = 16, .seed = 4 };
	run_stream(&c, 1u << 20);
}

/* A demoting producer (its commits walk the batch's lines, across the wrap too) still
 * delivers every record intact, in order, batched and one at a time. */
Test(spsc, stream_demoting_producer, .timeout = 600)
{
	struct stream_cfg c = { .n = tu_scaled(1000000, 10000), .batch = 16, .demote = 1,
				.seed = 5 };
	run_stream(&c, 1u << 18);
	struct stream_cfg one = { .n = tu_scaled(1000000, 10000), .batch = 1, .demote = 1,
				  .seed = 6 };
	run_stream(&one, 1u << 18);
}

/* ---- geometry, limits, wrap-around ---- */

static void pair(const char *tag, uint64_t cap, uint32_t align, struct shmring_spsc **p,
		 struct shmring_spsc **c, char *name, size_t nl)
{
	tu_name(name, nl, tag);
	struct shmring_spsc_opts o = { .capacity = cap, .align = align };
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, p), 0);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, c), 0);
}

static void unpair(struct shmring_spsc *p, struct shmring_spsc *c, const char *name)
{
	shmring_spsc_close(p);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}

Test(spsc, set_demote_is_the_producers)
{
	struct shmring_spsc *p, *c;
	char name[64];
	pair("demote", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(shmring_spsc_set_demote(c, 1), -EBADF);
	cr_assert_eq(shmring_spsc_set_demote(p, 1), 0);
	cr_assert_eq(shmring_spsc_set_demote(p, 0), 0);
	unpair(p, c, name);
}

/*
 * Wrap-around, deterministically: for each alignment and each end-of-ring remainder of
 * 1..8 alignment units, the writer is brought to that offset (by records that exactly
 * fill the gap), then reserves a record one byte too large for the remainder (it must
 * land at the start of the data area behind a pad record running to the end), and on
 * the next lap a record that exactly fills the remainder (it lands there, and the one
 * after it at offset 0 with no pad). The consumer is a forked process following the same
 * plan: every offset, length, pad header and payload byte is checked on both sides.
 */
struct wrap_rec {
	uint32_t len;
	uint32_t off;    /* expected data offset of the record's header */
	int64_t pad_at;  /* a pad record expected at this offset before it; -1 none */
};

struct wrap_cfg {
	char name[64];
	uint64_t cap;
	uint32_t align;
	size_t n;
	struct wrap_rec *plan;
};

static uint64_t wrap_total(uint32_t align, uint64_t len)
{
	return (SHMRING_SPSC_HDR + len + align - 1) & ~(uint64_t)(align - 1);
}

/* Records that move the writer from *pos to data offset target, each fitting exactly. */
static void wrap_advance(struct wrap_cfg *c, uint64_t maxt, uint64_t *pos, uint64_t target)
{
	for (int leg = 0; leg < 2; leg++) {
		uint64_t idx = *pos & (c->cap - 1);
		uint64_t to = idx > target ? c->cap : target; /* past it: first to the end */
		while (idx < to) {
			uint64_t t = to - idx < maxt ? to - idx : maxt;
			c->plan[c->n++] = (struct wrap_rec){ (uint32_t)(t - SHMRING_SPSC_HDR), (uint32_t)idx, -1 };
			*pos += t;
			idx += t;
		}
		if ((*pos & (c->cap - 1)) == target)
			return;
	}
}

static void wrap_make_plan(struct wrap_cfg *c, uint32_t max_record)
{
	uint64_t maxt = (max_record + SHMRING_SPSC_HDR) & ~(uint64_t)(c->align - 1);
	uint64_t pos = 0;
	c->n = 0;
	c->plan = calloc(4096, sizeof(*c->plan));
	cr_assert_not_null(c->plan);
	for (uint64_t k = 1; k <= 8; k++) {
		uint64_t rem = k * c->align, at = c->cap - rem;
		cr_assert_leq(rem + c->align, maxt, "plan needs a larger ring");
		/* one byte more than the remainder holds: padding, then offset 0 */
		wrap_advance(c, maxt, &pos, at);
		uint64_t len = rem - SHMRING_SPSC_HDR + 1;
		c->plan[c->n++] = (struct wrap_rec){ (uint32_t)len, 0, (int64_t)at };
		pos += rem + wrap_total(c->align, len);
		/* exactly the remainder: ends at the end of the ring; the next starts at 0 */
		wrap_advance(c, maxt, &pos, at);
		len = rem - SHMRING_SPSC_HDR;
		c->plan[c->n++] = (struct wrap_rec){ (uint32_t)len, (uint32_t)at, -1 };
		pos += rem;
		c->plan[c->n++] = (struct wrap_rec){ 5, 0, -1 };
		pos += wrap_total(c->align, 5);
		cr_assert_lt(c->n, 4000);
	}
}

static uint64_t wrap_seed(const struct wrap_cfg *c, size_t i)
{
	return ((uint64_t)c->align << 32) + i;
}

/* Exit codes name what the consumer found wrong (and stderr says where). */
static int wrap_consumer(void *a)
{
	struct wrap_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	const uint8_t *data = shmring_seg_data(shmring_spsc_seg(r));
	for (size_t i = 0; i < c->n; i++) {
		const struct wrap_rec *w = &c->plan[i];
		struct shmring_rec rec = { 0 };
		int rc = shmring_spsc_peek_wait(r, &rec, 10000);
		if (rc != 0) {
			fprintf(stderr, "align %u record %zu: peek %s\n", c->align, i, shmring_strerror(rc));
			return 11;
		}
		uint64_t off = (uint64_t)((const uint8_t *)rec.data - data) - SHMRING_SPSC_HDR;
		if (off != w->off || rec.len != w->len) {
			fprintf(stderr, "align %u record %zu: %u bytes at offset %llu, expected %u at %u\n",
				c->align, i, rec.len, (unsigned long long)off, w->len, w->off);
			return 12;
		}
		if (!tu_check(rec.data, rec.len, wrap_seed(c, i))) {
			fprintf(stderr, "align %u record %zu: payload differs\n", c->align, i);
			return 13;
		}
		if (w->pad_at >= 0) { /* not released yet, so not reused yet */
			uint64_t ph = shmring_load_acquire((_Atomic uint64_t *)(void *)(data + w->pad_at));
			uint64_t want = SHMRING_SPSC_F_COMMIT | SHMRING_SPSC_F_PAD |
					(c->cap - (uint64_t)w->pad_at - SHMRING_SPSC_HDR);
			if (ph != want) {
				fprintf(stderr, "align %u record %zu: pad header 0x%llx at %lld, expected 0x%llx\n",
					c->align, i, (unsigned long long)ph, (long long)w->pad_at,
					(unsigned long long)want);
				return 14;
			}
		}
		shmring_spsc_release(r);
	}
	struct shmring_rec rec = { 0 };
	if (shmring_spsc_peek_wait(r, &rec, 10000) != -EPIPE)
		return 15;
	shmring_spsc_close(r);
	return 0;
}

Test(spsc, wrap_sweep_every_alignment_and_end_offset, .timeout = 120)
{
	for (uint32_t align = 8; align <= 4096; align *= 2) {
		struct wrap_cfg c = { .align = align, .cap = align * 32 < 16384 ? 16384 : align * 32 };
		struct shmring_spsc *p;
		tu_name(c.name, sizeof(c.name), "wsweep");
		struct shmring_spsc_opts o = { .capacity = c.cap, .align = align };
		cr_assert_eq(shmring_spsc_create(c.name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
		wrap_make_plan(&c, p->max_record);
		uint8_t *data = shmring_seg_data(shmring_spsc_seg(p));
		pid_t pid = tu_fork(wrap_consumer, &c);
		for (size_t i = 0; i < c.n; i++) {
			const struct wrap_rec *w = &c.plan[i];
			void *buf = NULL;
			int rc = shmring_spsc_reserve_wait(p, w->len, &buf, 10000);
			cr_assert_eq(rc, 0, "align %u record %zu: %s", align, i, shmring_strerror(rc));
			cr_assert_eq((uint8_t *)buf - data, (ptrdiff_t)w->off + SHMRING_SPSC_HDR,
				     "align %u record %zu (%u bytes) reserved at offset %td, expected %u",
				     align, i, w->len, (uint8_t *)buf - data - SHMRING_SPSC_HDR, w->off);
			tu_fill(buf, w->len, wrap_seed(&c, i));
			cr_assert_eq(shmring_spsc_commit(p), 1, "the pad is not a record");
		}
		shmring_spsc_close(p);
		int st = tu_wait(pid);
		cr_assert_eq(st, 0, "align %u: consumer exited %d (see stderr)", align, st);
		shmring_seg_unlink(c.name);
		free(c.plan);
	}
}

/* Random sizes: the write position visits many offsets. In one process so that each
 * full ring is drained at an exact point (the sweep above runs across processes). */
Test(spsc, wrap_around_at_every_alignment)
{
	for (uint32_t align = 8; align <= 4096; align *= 2) {
		char name[64];
		struct shmring_spsc *p, *c;
		pair("wrap", 16384, align, &p, &c, name, sizeof(name));
		uint64_t seq = 0, rseq = 0, rng = align;
		/* sizes chosen so that the write position visits many offsets and pads */
		for (int round = 0; round < 4000; round++) {
			size_t len = META + (size_t)(tu_rand(&rng) % 3000);
			void *buf = NULL;
			int rc = shmring_spsc_reserve(p, len, &buf);
			if (rc == -EAGAIN) {
				struct shmring_rec rec = { 0 };
				while (shmring_spsc_peek(c, &rec) == 0) {
					cr_assert_eq(check_rec(rec.data, rec.len, rseq), 0,
						     "align %u record %llu", align, (unsigned long long)rseq);
					cr_assert_eq((uintptr_t)((const uint8_t *)rec.data - 8) % align, 0);
					rseq++;
				}
				shmring_spsc_release(c);
				rc = shmring_spsc_reserve(p, len, &buf);
			}
			cr_assert_eq(rc, 0, "reserve: %s", shmring_strerror(rc));
			make_rec(buf, len, seq++);
			cr_assert_eq(shmring_spsc_commit(p), 1);
		}
		struct shmring_rec rec = { 0 };
		while (shmring_spsc_peek(c, &rec) == 0) {
			cr_assert_eq(check_rec(rec.data, rec.len, rseq), 0);
			rseq++;
		}
		shmring_spsc_release(c);
		cr_assert_eq(rseq, seq);
		unpair(p, c, name);
	}
}

/* One process: exact return codes at the exact moments the ring is empty or full. */
Test(spsc, full_empty_max_and_oversize)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("limits", 4096, 8, &p, &c, name, sizeof(name));
	struct shmring_rec rec = { 0 };
	void *buf = NULL;
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EAGAIN, "empty ring");
	uint32_t maxr = p->max_record;
	cr_assert_eq(shmring_spsc_reserve(p, maxr + 1, &buf), -EMSGSIZE);
	cr_assert_eq(shmring_spsc_reserve(p, maxr, &buf), 0, "maximum record fits");
	memset(buf, 0xab, maxr);
	shmring_spsc_commit(p);
	cr_assert_eq(shmring_spsc_peek(c, &rec), 0);
	cr_assert_eq(rec.len, maxr);
	shmring_spsc_release(c);
	/* fill with 64-byte records until full */
	int n = 0;
	while (shmring_spsc_reserve(p, 56, &buf) == 0)
		n++;
	cr_assert_eq(shmring_spsc_reserve(p, 56, &buf), -EAGAIN, "full ring");
	shmring_spsc_commit(p);
	cr_assert_geq(n, 4096 / 64 - 2);
	int m = 0;
	while (shmring_spsc_peek(c, &rec) == 0)
		m++;
	cr_assert_eq(m, n);
	cr_assert_eq(shmring_spsc_release(c), n);
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EAGAIN);
	/* the producer's role cannot consume and vice versa */
	cr_assert_eq(shmring_spsc_peek(p, &rec), -EBADF);
	cr_assert_eq(shmring_spsc_reserve(c, 8, &buf), -EBADF);
	unpair(p, c, name);
}

/* An alignment that leaves no room for a record in the capacity is refused at creation:
 * max_record used to wrap to ~4 GiB, and a record that could never fit waited for room
 * (-EAGAIN, or for ever) instead of -EMSGSIZE. Every align the rest allow gets a
 * max_record that fits and a record of that size goes through an empty ring. */
Test(spsc, an_align_too_large_for_the_capacity_is_einval_and_max_record_always_fits)
{
	for (uint64_t cap = 4096; cap <= 16384; cap *= 2) {
		for (uint32_t align = 8; align <= 4096; align *= 2) {
			struct shmring_spsc_opts o = { .capacity = cap, .align = align };
			struct shmring_spsc *p;
			int rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &p);
			if (cap < 4 * (uint64_t)align) {
				cr_assert_eq(rc, -EINVAL, "cap %llu align %u: %d",
					     (unsigned long long)cap, align, rc);
				continue;
			}
			cr_assert_eq(rc, 0, "cap %llu align %u", (unsigned long long)cap, align);
			uint32_t maxr = p->max_record;
			cr_assert(maxr > 0 && maxr < cap / 2, "cap %llu align %u: max_record %u",
				  (unsigned long long)cap, align, maxr);
			void *buf;
			cr_assert_eq(shmring_spsc_reserve(p, maxr + 1, &buf), -EMSGSIZE);
			cr_assert_eq(shmring_spsc_reserve(p, maxr, &buf), 0,
				     "cap %llu align %u: max_record %u fits an empty ring",
				     (unsigned long long)cap, align, maxr);
			shmring_spsc_commit(p);
			shmring_spsc_close(p);
		}
	}
}

/* One process: what the consumer sees right after an abort, with nothing in between. */
Test(spsc, abort_discards_and_types_travel)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("abort", 8192, 8, &p, &c, name, sizeof(name));
	void *buf = NULL;
	struct shmring_rec rec = { 0 };
	char big3k[3000] = { 0 };
	for (int i = 0; i < 2; i++) { /* move the position near the end */
		cr_assert_eq(shmring_spsc_send(p, big3k, sizeof(big3k), 0), 0);
		cr_assert_eq(shmring_spsc_recv(c, big3k, sizeof(big3k), 0), 3000);
	}
	cr_assert_eq(shmring_spsc_reserve(p, 100, &buf), 0);
	cr_assert_eq(shmring_spsc_reserve(p, 3000, &buf), 0); /* forces padding */
	shmring_spsc_abort(p);
	cr_assert_eq(shmring_spsc_commit(p), 0);
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EAGAIN);
	cr_assert_eq(shmring_spsc_reserve_typed(p, 3, 77, &buf), 0);
	memcpy(buf, "abc", 3);
	cr_assert_eq(shmring_spsc_commit(p), 1);
	cr_assert_eq(shmring_spsc_peek(c, &rec), 0);
	cr_assert_eq(rec.type, 77);
	cr_assert_eq(rec.len, 3);
	cr_assert_eq(memcmp(rec.data, "abc", 3), 0);
	shmring_spsc_release(c);
	char small[2];
	cr_assert_eq(shmring_spsc_send(p, "hello", 5, 0), 0);
	cr_assert_eq(shmring_spsc_recv(c, small, sizeof(small), 0), -EMSGSIZE);
	char big[16];
	cr_assert_eq(shmring_spsc_recv(c, big, sizeof(big), 0), 5, "record stays after -EMSGSIZE");
	cr_assert_eq(memcmp(big, "hello", 5), 0);
	unpair(p, c, name);
}

/* A peer in a forked child: a named ring (name) or a memfd (fd, duplicated before the
 * fork), and two gates to step through a scenario. */
struct peer_cfg {
	char name[64];
	int fd;
	struct tu_gate g1, g2;
};

static void peer_cfg_init(struct peer_cfg *c, const char *tag)
{
	tu_name(c->name, sizeof(c->name), tag);
	c->fd = -1;
	tu_gate_init(&c->g1);
	tu_gate_init(&c->g2);
}

static void peer_cfg_fini(struct peer_cfg *c)
{
	shmring_seg_unlink(c->name);
	tu_gate_close(&c->g1);
	tu_gate_close(&c->g2);
	if (c->fd >= 0)
		close(c->fd);
}

static int zero_len_consumer(void *a)
{
	struct peer_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open_fd(c->fd, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	char b[1];
	for (int i = 0; i < 1000; i++)
		if (shmring_spsc_recv(r, b, 0, 10000) != 0)
			return 11;
	if (shmring_spsc_recv(r, b, 1, 0) != -EAGAIN) /* drained, producer alive */
		return 12;
	tu_gate_open(&c->g1);
	if (shmring_spsc_recv(r, b, 1, SHMRING_FOREVER) != -EPIPE)
		return 13;
	if (shmring_spsc_peer_closed(r) != 1)
		return 14;
	shmring_spsc_close(r);
	return 0;
}

Test(spsc, zero_length_records_and_memfd)
{
	struct peer_cfg c;
	struct shmring_spsc *p;
	peer_cfg_init(&c, "unused");
	cr_assert_eq(shmring_spsc_create(NULL, NULL, SHMRING_ROLE_PRODUCER, &p), 0);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(shmring_spsc_send(p, NULL, 0, 0), 0);
	/* the child opens the memfd through a duplicate (handles do not survive fork) */
	c.fd = dup(shmring_spsc_fd(p));
	cr_assert_geq(c.fd, 0);
	pid_t pid = tu_fork(zero_len_consumer, &c);
	tu_gate_wait(&c.g1);
	shmring_spsc_close(p);
	int st = tu_wait(pid);
	cr_assert_eq(st, 0, "consumer exited %d", st);
	peer_cfg_fini(&c);
}

static int second_opener(void *a)
{
	struct peer_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != -EBUSY)
		return 10;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != -EBUSY)
		return 11;
	return 0;
}

Test(spsc, second_producer_is_busy)
{
	char name[64];
	struct shmring_spsc *p, *c, *p2;
	pair("busy", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p2), -EBUSY);
	/* and from another process */
	struct peer_cfg pc;
	peer_cfg_init(&pc, "unused");
	snprintf(pc.name, sizeof(pc.name), "%s", name);
	cr_assert_eq(tu_wait(tu_fork(second_opener, &pc)), 0);
	unpair(p, c, name);
	peer_cfg_fini(&pc);
}

/* ---- wakeups ---- */

struct pp_cfg {
	char ping[64], pong[64];
	uint64_t n;
};

/* A round-trip message: the sequence number, and how many sleeps the sender's own ring
 * (the one it consumes) had counted when it sent this: all of them the sender's, made
 * in its earlier waits, so the receiver knows which count means "asleep again". */
struct pp_msg {
	uint64_t seq;
	uint64_t sleeps;
};

/*
 * Wait until the peer is asleep on the ring whose statistics are h: its sleep count
 * passes `before`. A sleeper counts its sleep after its last look at the ring (S4 in
 * wait.h) and just before FUTEX_WAIT, so a record sent after this point reaches it only
 * by a wake. (The pending flag alone would not do: it is raised before that last look,
 * so a record sent on seeing it may be found without sleeping.) This waits on the
 * peer's own state, not for time to pass.
 */
static int await_peer_asleep(struct shmring_hdr *h, uint64_t before, pid_t peer)
{
	while (shmring_load_relaxed(&h->stats.sleeps) <= before) {
		if (peer > 0 && waitpid(peer, NULL, WNOHANG) == peer)
			return -1; /* it exited (failed) instead */
		sched_yield();
	}
	return 0;
}

static int ponger(void *a)
{
	struct pp_cfg *c = a;
	struct shmring_spsc *in, *out;
	if (shmring_spsc_open(c->ping, SHMRING_ROLE_CONSUMER, &in) ||
	    shmring_spsc_open(c->pong, SHMRING_ROLE_PRODUCER, &out))
		return 10;
	shmring_spsc_set_spin(in, 0);
	shmring_spsc_set_spin(out, 0);
	struct shmring_hdr *ping_h = shmring_seg_hdr(shmring_spsc_seg(in));
	struct shmring_hdr *pong_h = shmring_seg_hdr(shmring_spsc_seg(out));
	struct pp_msg m;
	for (uint64_t i = 0; i < c->n; i++) {
		if (shmring_spsc_recv(in, &m, sizeof(m), SHMRING_FOREVER) != sizeof(m) || m.seq != i)
			return 11;
		await_peer_asleep(pong_h, m.sleeps, 0); /* the parent: PDEATHSIG if it goes */
		m.sleeps = shmring_load_relaxed(&ping_h->stats.sleeps);
		if (shmring_spsc_send(out, &m, sizeof(m), SHMRING_FOREVER))
			return 12;
	}
	shmring_spsc_close(out);
	shmring_spsc_close(in);
	return 0;
}

/*
 * Both sides sleep on every trip: each sends only once the other is asleep waiting for
 * it. No wakeup may be lost: the test finishes, and every sleep was ended by a wake
 * syscall (a lost one would leave its sleeper to its 20 ms peer-check slice, and a
 * million of those would not finish in the time allowed).
 */
Test(spsc, ping_pong_1M_sleeping_every_time, .timeout = 900)
{
	struct pp_cfg c = { .n = tu_scaled(1000000, 2000) };
	struct shmring_spsc *out, *in;
	tu_name(c.ping, sizeof(c.ping), "ping");
	tu_name(c.pong, sizeof(c.pong), "pong");
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(c.ping, &o, SHMRING_ROLE_PRODUCER, &out), 0);
	cr_assert_eq(shmring_spsc_create(c.pong, &o, SHMRING_ROLE_CONSUMER, &in), 0);
	shmring_spsc_set_spin(in, 0);
	shmring_spsc_set_spin(out, 0);
	struct shmring_hdr *ping_h = shmring_seg_hdr(shmring_spsc_seg(out));
	struct shmring_hdr *pong_h = shmring_seg_hdr(shmring_spsc_seg(in));
	uint64_t t0 = shmring_now_ns();
	pid_t pid = tu_fork(ponger, &c);
	uint64_t peer_before = 0; /* the ponger has not slept on the ping ring yet */
	struct pp_msg m;
	for (uint64_t i = 0; i < c.n; i++) {
		cr_assert_eq(await_peer_asleep(ping_h, peer_before, pid), 0, "the ponger exited at trip %llu",
			     (unsigned long long)i);
		m = (struct pp_msg){ i, shmring_load_relaxed(&pong_h->stats.sleeps) };
		cr_assert_eq(shmring_spsc_send(out, &m, sizeof(m), SHMRING_FOREVER), 0);
		cr_assert_eq(shmring_spsc_recv(in, &m, sizeof(m), SHMRING_FOREVER), (int)sizeof(m));
		cr_assert_eq(m.seq, i);
		peer_before = m.sleeps;
	}
	cr_assert_eq(tu_wait(pid), 0);
	double secs = (double)(shmring_now_ns() - t0) / 1e9;
	uint64_t ps = shmring_load_relaxed(&ping_h->stats.sleeps);
	uint64_t qs = shmring_load_relaxed(&pong_h->stats.sleeps);
	uint64_t pw = shmring_load_relaxed(&ping_h->stats.wake_syscalls);
	uint64_t qw = shmring_load_relaxed(&pong_h->stats.wake_syscalls);
	cr_log_info("ping_pong: %llu trips in %.1f s; sleeps ping %llu pong %llu (beyond one per trip: "
	       "peer-check slices or spurious wakeups); wake syscalls ping %llu pong %llu",
	       (unsigned long long)c.n, secs, (unsigned long long)ps, (unsigned long long)qs,
	       (unsigned long long)pw, (unsigned long long)qw);
	cr_assert_geq(ps, c.n, "the ponger slept %llu times in %llu trips", (unsigned long long)ps,
		      (unsigned long long)c.n);
	cr_assert_geq(qs, c.n, "the pinger slept %llu times in %llu trips", (unsigned long long)qs,
		      (unsigned long long)c.n);
	cr_assert_geq(pw, c.n, "%llu wake syscalls for %llu sleeps on the ping ring",
		      (unsigned long long)pw, (unsigned long long)c.n);
	cr_assert_geq(qw, c.n, "%llu wake syscalls for %llu sleeps on the pong ring",
		      (unsigned long long)qw, (unsigned long long)c.n);
	shmring_spsc_close(out);
	shmring_spsc_close(in);
	shmring_seg_unlink(c.ping);
	shmring_seg_unlink(c.pong);
}

struct storm_cfg {
	char name[64];
	uint64_t n;
};

static int storm_consumer(void *arg)
{
	struct storm_cfg *c = arg;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	shmring_spsc_set_spin(r, 0);
	uint64_t v;
	for (uint64_t i = 0; i < c->n; i++)
		if (shmring_spsc_recv(r, &v, sizeof(v), SHMRING_FOREVER) != 8 || v != i)
			return 11;
	shmring_spsc_close(r);
	return 0;
}

/*
 * One sleep costs one wake syscall, however many records follow before the sleeper
 * runs again. The consumer goes to sleep, is stopped (SIGSTOP) so it cannot run, and
 * the producer commits n records one by one: the first commit clears the sleeper's
 * flag and wakes, the others find the flag clear.
 */
/* Create c's ring as its producer (*p, its header *h) and fork storm_consumer on it. */
static pid_t storm_start(struct storm_cfg *c, const char *tag, struct shmring_spsc **p,
			 struct shmring_hdr **h)
{
	struct shmring_spsc_opts o = { .capacity = 1 << 16 };
	tu_name(c->name, sizeof(c->name), tag);
	cr_assert_eq(shmring_spsc_create(c->name, &o, SHMRING_ROLE_PRODUCER, p), 0);
	*h = shmring_seg_hdr(shmring_spsc_seg(*p));
	return tu_fork(storm_consumer, c);
}

Test(spsc, one_wake_syscall_per_sleep_however_many_commits, .timeout = 60)
{
	struct storm_cfg c = { .n = 1000 };
	struct shmring_spsc *p;
	struct shmring_hdr *h;
	pid_t pid = storm_start(&c, "storm", &p, &h);
	/* synchronise on the consumer's sleep itself: its counter in the segment */
	while (shmring_load_relaxed(&h->stats.sleeps) == 0)
		sched_yield();
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	uint64_t w0 = shmring_load_relaxed(&h->stats.wake_syscalls);
	for (uint64_t i = 0; i < c.n; i++)
		cr_assert_eq(shmring_spsc_send(p, &i, sizeof(i), 0), 0);
	uint64_t w1 = shmring_load_relaxed(&h->stats.wake_syscalls);
	cr_assert_eq(kill(pid, SIGCONT), 0);
	cr_assert_eq(tu_wait(pid), 0);
	cr_expect_eq(w1 - w0, 1, "%llu wake syscalls for %llu commits to one sleeper",
		     (unsigned long long)(w1 - w0), (unsigned long long)c.n);
	shmring_spsc_close(p);
	shmring_seg_unlink(c.name);
}

/* A long idle wait is many sleep slices (SHMRING_PEER_CHECK_MS each); the record that
 * ends it still costs one wake syscall, and the waits after it sleep as they should.
 * (The semaphore backend owed a post per slice and posted them all: 10 posts for one
 * record, and the surplus woke later sleeps at once.) The consumer receives one record
 * after >= 10 slices of sleep, then a second one the same way. */
Test(spsc, one_wake_syscall_after_a_long_idle_wait, .timeout = 60)
{
	struct storm_cfg c = { .n = 2 };
	struct shmring_spsc *p;
	struct shmring_hdr *h;
	pid_t pid = storm_start(&c, "idle", &p, &h);
	for (uint64_t i = 0; i < c.n; i++) {
		uint64_t s0 = shmring_load_relaxed(&h->stats.sleeps);
		/* synchronise on the consumer's slices themselves: its counter in the segment */
		while (shmring_load_relaxed(&h->stats.sleeps) < s0 + 10) {
			cr_assert_neq(waitpid(pid, NULL, WNOHANG), pid, "the consumer exited early");
			sched_yield();
		}
		uint64_t w0 = shmring_load_relaxed(&h->stats.wake_syscalls);
		cr_assert_eq(shmring_spsc_send(p, &i, sizeof(i), 0), 0);
		uint64_t w1 = shmring_load_relaxed(&h->stats.wake_syscalls);
		cr_assert_eq(w1 - w0, 1, "record %llu: %llu wake syscalls after %llu slices",
			     (unsigned long long)i, (unsigned long long)(w1 - w0),
			     (unsigned long long)(shmring_load_relaxed(&h->stats.sleeps) - s0));
	}
	cr_assert_eq(tu_wait(pid), 0);
	shmring_spsc_close(p);
	shmring_seg_unlink(c.name);
}

/* The peer of each blocked call is alive in another process (else the call would
 * return -EPIPE): ring A's producer and ring B's consumer, until the gate opens. */
struct tmo_cfg {
	char a[64], b[64];
	struct tu_gate ready, done;
};

static int tmo_peer(void *arg)
{
	struct tmo_cfg *c = arg;
	struct shmring_spsc *ap, *bc;
	if (shmring_spsc_open(c->a, SHMRING_ROLE_PRODUCER, &ap) ||
	    shmring_spsc_open(c->b, SHMRING_ROLE_CONSUMER, &bc))
		return 10;
	tu_gate_open(&c->ready);
	tu_gate_wait(&c->done);
	shmring_spsc_close(ap);
	shmring_spsc_close(bc);
	return 0;
}

/* A blocking call with a timeout returns -ETIMEDOUT no earlier than its deadline and
 * not long after it (bound: the timeout + 1 s, for a loaded machine). */
static void check_timeout(const char *what, uint64_t t0, int timeout_ms)
{
	uint64_t el = shmring_now_ns() - t0;
	uint64_t want = (uint64_t)timeout_ms * 1000000u;
	cr_log_info("%s: timeout %d ms returned after %.3f ms (%+.3f ms)", what, timeout_ms,
		    (double)el / 1e6, ((double)el - (double)want) / 1e6);
	cr_assert_geq(el, want, "%s returned after %llu ns, before its deadline", what,
		      (unsigned long long)el);
	cr_assert_leq(el, want + 1000000000u, "%s returned %.3f ms after its deadline", what,
		      (double)(el - want) / 1e6);
}

Test(spsc, timeouts_return_on_time)
{
	struct tmo_cfg c;
	struct shmring_spsc *ac, *bp;
	struct shmring_spsc_opts o = { .capacity = 4096 };
	tu_name(c.a, sizeof(c.a), "tmo-a");
	tu_name(c.b, sizeof(c.b), "tmo-b");
	tu_gate_init(&c.ready);
	tu_gate_init(&c.done);
	cr_assert_eq(shmring_spsc_create(c.a, &o, SHMRING_ROLE_CONSUMER, &ac), 0);
	cr_assert_eq(shmring_spsc_create(c.b, &o, SHMRING_ROLE_PRODUCER, &bp), 0);
	pid_t pid = tu_fork(tmo_peer, &c);
	tu_gate_wait(&c.ready);
	struct shmring_rec rec = { 0 };
	uint64_t t0 = shmring_now_ns();
	cr_assert_eq(shmring_spsc_peek_wait(ac, &rec, 50), -ETIMEDOUT);
	check_timeout("peek_wait on an empty ring", t0, 50);
	void *buf = NULL;
	while (shmring_spsc_reserve(bp, 64, &buf) == 0)
		;
	t0 = shmring_now_ns();
	cr_assert_eq(shmring_spsc_reserve_wait(bp, 64, &buf, 30), -ETIMEDOUT);
	check_timeout("reserve_wait on a full ring", t0, 30);
	cr_assert_geq(shmring_load_relaxed(&shmring_seg_hdr(shmring_spsc_seg(ac))->stats.timeouts), 1);
	cr_assert_geq(shmring_load_relaxed(&shmring_seg_hdr(shmring_spsc_seg(bp))->stats.timeouts), 1);
	tu_gate_open(&c.done);
	cr_assert_eq(tu_wait(pid), 0);
	shmring_spsc_close(ac);
	shmring_spsc_close(bp);
	shmring_seg_unlink(c.a);
	shmring_seg_unlink(c.b);
	tu_gate_close(&c.ready);
	tu_gate_close(&c.done);
}

/* ---- closing and dead peers ---- */

static int closing_producer(void *a)
{
	struct peer_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	for (uint64_t i = 0; i < 100; i++) {
		uint8_t b[64];
		make_rec(b, sizeof(b), i);
		if (shmring_spsc_send(r, b, sizeof(b), 0) != 0)
			return 11;
	}
	shmring_spsc_close(r);
	return 0;
}

Test(spsc, epipe_after_close_delivers_everything)
{
	struct peer_cfg pc;
	struct shmring_spsc *c;
	peer_cfg_init(&pc, "close");
	struct shmring_spsc_opts o = { .capacity = 65536 };
	cr_assert_eq(shmring_spsc_create(pc.name, &o, SHMRING_ROLE_CONSUMER, &c), 0);
	pid_t pid = tu_fork(closing_producer, &pc);
	/* the producer has committed everything and closed before we read any */
	cr_assert_eq(tu_wait(pid), 0);
	uint8_t b[64];
	for (uint64_t i = 0; i < 100; i++) {
		cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 1000), 64);
		cr_assert_eq(check_rec(b, 64, i), 0);
	}
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), SHMRING_FOREVER), -EPIPE);
	cr_assert_eq(shmring_spsc_peer_closed(c), 1, "closed, not died");
	shmring_spsc_close(c);
	peer_cfg_fini(&pc);
}

static int closing_consumer(void *a)
{
	struct peer_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	shmring_spsc_close(r);
	return 0;
}

Test(spsc, consumer_closed_gives_producer_epipe)
{
	struct peer_cfg pc;
	struct shmring_spsc *p;
	peer_cfg_init(&pc, "cclose");
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(pc.name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	cr_assert_eq(tu_wait(tu_fork(closing_consumer, &pc)), 0);
	void *buf = NULL;
	int rc;
	while ((rc = shmring_spsc_reserve(p, 64, &buf)) == 0)
		shmring_spsc_commit(p);
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(shmring_spsc_reserve_wait(p, 64, &buf, SHMRING_FOREVER), -EPIPE);
	cr_assert_eq(shmring_spsc_peer_closed(p), 1, "closed, not died");
	shmring_spsc_close(p);
	peer_cfg_fini(&pc);
}

struct kill_cfg {
	char name[64];
	struct tu_gate started;
};

static int endless_producer(void *a)
{
	struct kill_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	uint64_t rng = 99;
	tu_gate_open(&c->started);
	for (uint64_t i = 0;; i++) {
		size_t len = pick_size(&rng, META, 4096);
		void *buf = NULL;
		if (shmring_spsc_reserve_wait(r, len, &buf, SHMRING_FOREVER))
			return 11;
		make_rec(buf, len, i);
		shmring_spsc_commit(r);
	}
}

Test(spsc, producer_sigkilled_midstream_consumer_gets_every_commit_then_epipe, .timeout = 120)
{
	for (int round = 0; round < 20; round++) {
		struct kill_cfg c;
		struct shmring_spsc *r;
		tu_name(c.name, sizeof(c.name), "kill");
		tu_gate_init(&c.started);
		struct shmring_spsc_opts o = { .capacity = 1u << 16 };
		cr_assert_eq(shmring_spsc_create(c.name, &o, SHMRING_ROLE_CONSUMER, &r), 0);
		pid_t pid = tu_fork(endless_producer, &c);
		tu_gate_wait(&c.started);
		uint64_t got = 0, rng = 99;
		struct shmring_rec rec = { 0 };
		int rc;
		/* read some while it runs, kill it at a different point each round */
		for (int i = 0; i < 500 * round; i++) {
			cr_assert_eq(shmring_spsc_peek_wait(r, &rec, 10000), 0);
			cr_assert_eq(rec.len, pick_size(&rng, META, 4096));
			cr_assert_eq(check_rec(rec.data, rec.len, got), 0);
			got++;
			shmring_spsc_release(r);
		}
		kill(pid, SIGKILL);
		cr_assert_eq(tu_wait(pid), -SIGKILL);
		while ((rc = shmring_spsc_peek_wait(r, &rec, SHMRING_FOREVER)) == 0) {
			cr_assert_eq(rec.len, pick_size(&rng, META, 4096));
			cr_assert_eq(check_rec(rec.data, rec.len, got), 0, "record %llu", (unsigned long long)got);
			got++;
			shmring_spsc_release(r);
		}
		cr_assert_eq(rc, -EPIPE, "after the producer died: %s", shmring_strerror(rc));
		struct shmring_hdr *h = shmring_seg_hdr(shmring_spsc_seg(r));
		/* stats.msgs is stored after each commit is published: every record it counts
		 * (and possibly one batch more) was delivered */
		cr_assert_geq(got, shmring_load_relaxed(&h->stats.msgs) - 0);
		/* a replacement producer resumes after the last committed record */
		struct shmring_spsc *p2;
		cr_assert_eq(shmring_spsc_open(c.name, SHMRING_ROLE_PRODUCER, &p2), 0);
		uint8_t b[64];
		make_rec(b, sizeof(b), got);
		cr_assert_eq(shmring_spsc_send(p2, b, sizeof(b), 1000), 0);
		cr_assert_eq(shmring_spsc_peek_wait(r, &rec, 1000), 0);
		cr_assert_eq(check_rec(rec.data, rec.len, got), 0);
		shmring_spsc_release(r);
		shmring_spsc_close(p2);
		shmring_spsc_close(r);
		shmring_seg_unlink(c.name);
		tu_gate_close(&c.started);
	}
}

static int doomed_consumer(void *a)
{
	struct kill_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	tu_gate_open(&c->started);
	for (;;)
		pause();
}

Test(spsc, consumer_sigkilled_gives_blocked_producer_epipe, .timeout = 60)
{
	struct kill_cfg c;
	struct shmring_spsc *p;
	tu_name(c.name, sizeof(c.name), "ckill");
	tu_gate_init(&c.started);
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(c.name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	pid_t pid = tu_fork(doomed_consumer, &c);
	tu_gate_wait(&c.started);
	cr_assert_eq(shmring_spsc_peer_alive(p), 1);
	kill(pid, SIGKILL);
	cr_assert_eq(tu_wait(pid), -SIGKILL);
	cr_assert_eq(shmring_spsc_peer_alive(p), 0);
	void *buf = NULL;
	int rc;
	while ((rc = shmring_spsc_reserve_wait(p, 64, &buf, SHMRING_FOREVER)) == 0)
		;
	cr_assert_eq(rc, -EPIPE);
	shmring_spsc_close(p);
	shmring_seg_unlink(c.name);
	tu_gate_close(&c.started);
}

/*
 * The bound on noticing a dead peer: a call blocked for room (or for a record) returns
 * -EPIPE within SHMRING_PEER_CHECK_MS of its peer's SIGKILL (asserted with 1 s to spare
 * for a loaded machine; the measured delay is printed). Three processes: the blocked
 * side (which created the ring), the doomed peer, and the test, which kills the peer
 * once the blocked side is asleep in its wait (its sleep counted in the segment) and
 * reads back when the call returned, on the same monotonic clock.
 */
struct dead_cfg {
	char name[64];
	struct tu_gate created, attached;
	uint64_t nrec;     /* records the producer commits before it is killed */
	/* written by the blocked side */
	int rc, peer_closed;
	uint64_t got, t_ret;
};

static struct dead_cfg *dead_cfg_new(const char *tag)
{
	struct dead_cfg *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c, MAP_FAILED);
	memset(c, 0, sizeof(*c));
	tu_name(c->name, sizeof(c->name), tag);
	tu_gate_init(&c->created);
	tu_gate_init(&c->attached);
	return c;
}

static void dead_cfg_free(struct dead_cfg *c)
{
	shmring_seg_unlink(c->name);
	tu_gate_close(&c->created);
	tu_gate_close(&c->attached);
	munmap(c, sizeof(*c));
}

/* Fill the ring without sleeping, then block for room until the consumer is gone. */
static int full_ring_producer(void *a)
{
	struct dead_cfg *c = a;
	struct shmring_spsc *r;
	struct shmring_spsc_opts o = { .capacity = 4096 };
	if (shmring_spsc_create(c->name, &o, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	tu_gate_open(&c->created);
	void *buf = NULL;
	int rc;
	while ((rc = shmring_spsc_reserve(r, 64, &buf)) == 0)
		shmring_spsc_commit(r);
	if (rc != -EAGAIN)
		return 11;
	c->rc = shmring_spsc_reserve_wait(r, 64, &buf, SHMRING_FOREVER);
	c->t_ret = shmring_now_ns();
	c->peer_closed = shmring_spsc_peer_closed(r);
	shmring_spsc_close(r);
	return 0;
}

static int attached_consumer(void *a)
{
	struct dead_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	tu_gate_open(&c->attached);
	for (;;)
		pause();
}

/* Drain the producer's records without sleeping, then block for more until it is gone. */
static int empty_ring_consumer(void *a)
{
	struct dead_cfg *c = a;
	struct shmring_spsc *r;
	struct shmring_spsc_opts o = { .capacity = 1u << 16 };
	if (shmring_spsc_create(c->name, &o, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	tu_gate_open(&c->created);
	struct shmring_rec rec = { 0 };
	while (c->got < c->nrec) {
		int rc = shmring_spsc_peek(r, &rec);
		if (rc == -EAGAIN) {
			sched_yield();
			continue;
		}
		if (rc != 0 || check_rec(rec.data, rec.len, c->got) != 0)
			return 11;
		c->got++;
		shmring_spsc_release(r);
	}
	c->rc = shmring_spsc_peek_wait(r, &rec, SHMRING_FOREVER);
	c->t_ret = shmring_now_ns();
	c->peer_closed = shmring_spsc_peer_closed(r);
	shmring_spsc_close(r);
	return 0;
}

static int committing_producer(void *a)
{
	struct dead_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	for (uint64_t i = 0; i < c->nrec; i++) {
		uint8_t b[40];
		make_rec(b, sizeof(b), i);
		if (shmring_spsc_send(r, b, sizeof(b), 0) != 0)
			return 11;
	}
	tu_gate_open(&c->attached);
	for (;;)
		pause();
}

static void kill_peer_of_blocked(struct dead_cfg *c, int (*blocked)(void *), int (*doomed)(void *))
{
	pid_t bpid = tu_fork(blocked, c);
	tu_gate_wait(&c->created);
	pid_t dpid = tu_fork(doomed, c);
	tu_gate_wait(&c->attached);
	struct shmring_seg *seg;
	cr_assert_eq(shmring_seg_open(c->name, SHMRING_KIND_SPSC, SHMRING_O_RDONLY, &seg), 0);
	/* the blocked side sleeps only in its final blocking call */
	while (shmring_load_relaxed(&shmring_seg_hdr(seg)->stats.sleeps) == 0) {
		cr_assert_neq(waitpid(bpid, NULL, WNOHANG), bpid, "the blocked side exited early");
		sched_yield();
	}
	uint64_t t_kill = shmring_now_ns();
	cr_assert_eq(kill(dpid, SIGKILL), 0);
	cr_assert_eq(tu_wait(dpid), -SIGKILL);
	cr_assert_eq(tu_wait(bpid), 0, "the blocked side failed");
	cr_assert_eq(c->rc, -EPIPE, "blocked call returned %s", shmring_strerror(c->rc));
	cr_assert_eq(c->peer_closed, 0, "the peer died, it did not close");
	cr_assert_geq(c->t_ret, t_kill, "-EPIPE before the peer was killed");
	uint64_t el = c->t_ret - t_kill;
	uint64_t bound = (uint64_t)(SHMRING_PEER_CHECK_MS + 1000) * 1000000u;
	cr_log_info("dead peer noticed %.3f ms after SIGKILL (SHMRING_PEER_CHECK_MS %d)",
		    (double)el / 1e6, SHMRING_PEER_CHECK_MS);
	cr_assert_leq(el, bound, "dead peer noticed after %.3f ms", (double)el / 1e6);
	shmring_seg_close(seg);
}

Test(spsc, blocked_producer_sees_consumer_sigkill_within_peer_check_bound, .timeout = 60)
{
	struct dead_cfg *c = dead_cfg_new("dpc");
	kill_peer_of_blocked(c, full_ring_producer, attached_consumer);
	dead_cfg_free(c);
}

Test(spsc, blocked_consumer_drains_then_sees_producer_sigkill_within_peer_check_bound, .timeout = 60)
{
	struct dead_cfg *c = dead_cfg_new("dcp");
	c->nrec = 100;
	kill_peer_of_blocked(c, empty_ring_consumer, committing_producer);
	cr_assert_eq(c->got, c->nrec, "drained %llu of %llu records", (unsigned long long)c->got,
		     (unsigned long long)c->nrec);
	dead_cfg_free(c);
}

/* A caller that waits in short slices of its own (a timeout shorter than
 * SHMRING_PEER_CHECK_MS, in a loop) never reaches the end of a sleep slice: the check
 * of the peer comes at its deadline instead, once the handle's last check is that old.
 * Every call lasts at least its timeout, so 20 ms / 5 ms + 1 calls are enough; 20 are
 * allowed. (Before: every 256th call, about 1.3 s.) */
struct short_cfg {
	char name[64];
};

static int sending_then_dying(void *a)
{
	struct short_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	if (shmring_spsc_send(r, "last", 4, 0) != 0)
		return 11;
	raise(SIGKILL);
	return 12;
}

Test(spsc, a_loop_of_short_timeouts_sees_a_dead_producer, .timeout = 60)
{
	struct short_cfg c;
	struct shmring_spsc *r;
	tu_name(c.name, sizeof(c.name), "short");
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(c.name, &o, SHMRING_ROLE_CONSUMER, &r), 0);
	cr_assert_eq(tu_wait(tu_fork(sending_then_dying, &c)), -SIGKILL);
	/* no spinning: a spin's polls would count towards the non-blocking check */
	shmring_spsc_set_spin(r, 0);
	char buf[16];
	cr_assert_eq(shmring_spsc_recv(r, buf, sizeof(buf), 5), 4, "what it sent comes first");
	int rc = -ETIMEDOUT, calls = 0;
	while (rc == -ETIMEDOUT && calls < 20) {
		rc = shmring_spsc_recv(r, buf, sizeof(buf), 5);
		calls++;
	}
	cr_assert_eq(rc, -EPIPE, "after %d calls: %s", calls, shmring_strerror(rc));
	cr_assert_eq(shmring_spsc_peer_closed(r), 0);
	shmring_spsc_close(r);
	shmring_seg_unlink(c.name);
}

/* ---- impossible values in shared memory: -EPROTO, and the handle stays broken ---- */

/* A hostile peer: another process maps the segment and stores val at byte off of its
 * data region (ctrl: of its control region). */
struct scribble_cfg {
	char name[64];
	int ctrl;
	uint64_t off, val;
};

static int scribbler(void *a)
{
	struct scribble_cfg *s = a;
	struct shmring_seg *seg;
	if (shmring_seg_open(s->name, SHMRING_KIND_SPSC, 0, &seg) != 0)
		return 10;
	uint8_t *base = s->ctrl ? shmring_seg_ctrl(seg) : shmring_seg_data(seg);
	shmring_store_release((_Atomic uint64_t *)(void *)(base + s->off), s->val);
	shmring_seg_close(seg);
	return 0;
}

static void scribble(const char *name, int ctrl, uint64_t off, uint64_t val)
{
	struct scribble_cfg s = { .ctrl = ctrl, .off = off, .val = val };
	snprintf(s.name, sizeof(s.name), "%s", name);
	cr_assert_eq(tu_wait(tu_fork(scribbler, &s)), 0);
}

#define HEAD_OFF offsetof(struct shmring_spsc_ctrl, head)

/* Records through the ring until both sides are at data offset target (a fresh ring). */
static void move_to(struct shmring_spsc *p, struct shmring_spsc *c, uint64_t target)
{
	static uint8_t b[2048];
	for (uint64_t pos = 0; pos < target;) {
		uint64_t t = target - pos < 2048 ? target - pos : 2048;
		cr_assert_eq(shmring_spsc_send(p, b, t - SHMRING_SPSC_HDR, 0), 0);
		cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 0), (int)(t - SHMRING_SPSC_HDR));
		pos += t;
	}
}

/*
 * The consumer meets an impossible header at its position (written there by another
 * process): every call that reads the ring returns -EPROTO, release moves nothing, and
 * it stays so after a valid header is put back (sticky). In one process with the
 * producer: the point is the exact return codes of each call.
 */
static void consumer_sees(const char *what, uint64_t at, uint64_t hdr)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("eproto", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(c->max_record, 4080, "the cases below assume it");
	move_to(p, c, at);
	uint64_t head = shmring_load_acquire(&c->ctrl->head);
	scribble(name, 0, at, hdr);
	struct shmring_rec rec = { 0 };
	char b[64];
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EPROTO, "%s: peek", what);
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EPROTO, "%s: peek again", what);
	cr_assert_eq(shmring_spsc_release(c), -EPROTO, "%s: release", what);
	cr_assert_eq(shmring_spsc_peek_wait(c, &rec, 100), -EPROTO, "%s: peek_wait", what);
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 100), -EPROTO, "%s: recv", what);
	/* sticky: a valid record in its place changes nothing */
	scribble(name, 0, at + 16, 0);
	scribble(name, 0, at, SHMRING_SPSC_F_COMMIT | 8);
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EPROTO, "%s: not sticky", what);
	cr_assert_eq(shmring_spsc_release(c), -EPROTO, "%s: release", what);
	cr_assert_eq(shmring_load_acquire(&c->ctrl->head), head, "%s: the position moved", what);
	unpair(p, c, name);
}

Test(spsc, impossible_record_header_is_eproto_and_sticky)
{
	const uint64_t cap = 8192, maxr = 4080; /* ((cap - 8) / 2 rounded down to 8) - 8 */
	const uint64_t C = SHMRING_SPSC_F_COMMIT, P = SHMRING_SPSC_F_PAD;
	consumer_sees("length > max_record", 0, C | (maxr + 1));
	consumer_sees("length 4 GiB - 1", 0, C | 0xffffffffu);
	consumer_sees("record running past the end", cap - 64, C | 100);
	consumer_sees("pad short of the end", 64, C | P | (cap - 64 - 8 - 8));
	consumer_sees("pad past the end", 64, C | P | (cap - 64));
	consumer_sees("pad at offset 0", 0, C | P | (cap - 8));
	consumer_sees("pad of 4 GiB - 1", 64, C | P | 0xffffffffu);
	consumer_sees("unknown flag", 0, C | (UINT64_C(1) << 50) | 8);
	consumer_sees("no commit flag", 0, 8);
}

/* The producer reads one index from shared memory, the consumer's position (when the
 * ring looks full): one out of range makes it -EPROTO for good. */
static void producer_sees(const char *what, uint64_t head)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("eproto-p", 4096, 8, &p, &c, name, sizeof(name));
	void *buf = NULL;
	while (shmring_spsc_reserve(p, 56, &buf) == 0)
		cr_assert_eq(shmring_spsc_commit(p), 1);
	scribble(name, 1, HEAD_OFF, head);
	cr_assert_eq(shmring_spsc_reserve(p, 56, &buf), -EPROTO, "%s: reserve", what);
	cr_assert_eq(shmring_spsc_reserve(p, 56, &buf), -EPROTO, "%s: reserve again", what);
	cr_assert_eq(shmring_spsc_commit(p), -EPROTO, "%s: commit", what);
	cr_assert_eq(shmring_spsc_reserve_wait(p, 56, &buf, 100), -EPROTO, "%s: reserve_wait", what);
	cr_assert_eq(shmring_spsc_send(p, "x", 1, 100), -EPROTO, "%s: send", what);
	/* sticky: the consumer really making room changes nothing */
	scribble(name, 1, HEAD_OFF, 0);
	struct shmring_rec rec = { 0 };
	while (shmring_spsc_peek(c, &rec) == 0)
		;
	shmring_spsc_release(c);
	cr_assert_eq(shmring_spsc_reserve(p, 8, &buf), -EPROTO, "%s: not sticky", what);
	unpair(p, c, name);
}

Test(spsc, impossible_consumer_position_is_eproto_and_sticky)
{
	producer_sees("position past the last commit", 4096);
	producer_sees("position not aligned", 4);
	producer_sees("position behind the one seen", (uint64_t)0 - 8);
}

/* Attaching validates the positions too: a new consumer or a replacement producer. */
Test(spsc, impossible_position_refuses_attach)
{
	char name[64];
	struct shmring_spsc *p, *c;
	tu_name(name, sizeof(name), "eproto-a");
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	scribble(name, 1, HEAD_OFF, 4);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &c), -EPROTO);
	shmring_spsc_detach(p);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p), -EPROTO);
	scribble(name, 1, HEAD_OFF, 0);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p), 0, "valid again");
	shmring_spsc_close(p);
	shmring_seg_unlink(name);
}

/* Rewrite the header of a named ring's file (checksum recomputed: the header is
 * consistent, only its content is unusable or unusual). */
static void rewrite_header(const char *name, void (*edit)(struct shmring_hdr *, void *), void *arg)
{
	char path[128];
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	static struct shmring_hdr h;
	cr_assert_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	edit(&h, arg);
	h.checksum = shmring_hdr_checksum(&h);
	cr_assert_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
}

/* A 4 KiB ring under a new name, its producer gone (detached): one to rewrite. */
static void make_left_ring(char *name, size_t len, const char *tag)
{
	struct shmring_spsc *p;
	struct shmring_spsc_opts o = { .capacity = 4096 };
	tu_name(name, len, tag);
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	shmring_spsc_detach(p);
}

static void set_max_parts(struct shmring_hdr *h, void *arg)
{
	h->max_parts = *(uint32_t *)arg;
}

/* Liveness checks look at the producer's slot and the consumer's: a ring whose header
 * gives it fewer (or more) than two is not one this library made. */
Test(spsc, header_without_two_participant_slots_is_refused)
{
	char name[64];
	struct shmring_spsc *p;
	make_left_ring(name, sizeof(name), "parts");
	uint32_t bad[] = { 1, 3 };
	for (int i = 0; i < 2; i++) {
		rewrite_header(name, set_max_parts, &bad[i]);
		cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p), -EPROTO, "%u", bad[i]);
		cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &p), -EPROTO, "%u", bad[i]);
	}
	uint32_t two = 2;
	rewrite_header(name, set_max_parts, &two);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &p), 0, "valid again");
	shmring_spsc_close(p);
	shmring_seg_unlink(name);
}

static void set_kind_flag(struct shmring_hdr *h, void *arg)
{
	h->flags |= *(uint32_t *)arg;
}

/* spsc defines no kind flags (bits 16-31): a ring with one was made by a library that
 * gave it a meaning this one does not know, so it is refused, and the dump says why. */
Test(spsc, unknown_kind_flags_are_refused)
{
	char name[64];
	struct shmring_spsc *p;
	make_left_ring(name, sizeof(name), "kflags");
	uint32_t bit = UINT32_C(1) << 20;
	rewrite_header(name, set_kind_flag, &bit);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p), -EPROTO);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &p), -EPROTO);
	struct shmring_seg *seg;
	cr_assert_eq(shmring_seg_open(name, 0, SHMRING_O_RDONLY | SHMRING_O_NOREGISTRY, &seg), 0);
	struct shmring_dump_info *di = calloc(1, sizeof(*di));
	cr_assert_eq(shmring_dump_decode_buf(seg->base, (size_t)seg->size, di), 0);
	int named = 0;
	for (uint32_t k = 0; k < di->nproblems && k < SHMRING_DUMP_PROBLEMS_MAX; k++)
		named |= strcmp(di->problems[k].field, "flags") == 0;
	cr_assert(named, "the dump names the flags");
	free(di);
	shmring_seg_close(seg);
	shmring_seg_unlink(name);
}

static void make_8gib(struct shmring_hdr *h, void *arg)
{
	uint64_t cap = UINT64_C(1) << 33;
	h->data_size = cap;
	h->total_size = h->data_off + cap;
	h->geo[SHMRING_SPSC_GEO_CAPACITY] = cap;
	h->geo[SHMRING_SPSC_GEO_MAX_RECORD] = UINT32_MAX - 4096; /* what create allows there */
	*(uint64_t *)arg = h->total_size;
}

/* In a ring of 8 GiB or more a record may be longer than INT32_MAX, more than recv's int
 * result can report: recv says -EOVERFLOW and leaves it (peek takes it), and the handle
 * goes on with the next record. The ring is a sparse file (create would allocate 8 GiB)
 * with the header create writes for that capacity; only a few pages are touched. */
Test(spsc, record_longer_than_int32_max_is_eoverflow_for_recv_and_stays)
{
	char name[64], path[128];
	struct shmring_spsc *p, *c;
	tu_name(name, sizeof(name), "big");
	struct shmring_spsc_opts o = { .capacity = 4096 };
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	shmring_spsc_detach(p);
	uint64_t total;
	rewrite_header(name, make_8gib, &total);
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)total), 0);
	close(fd);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p), 0);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &c), 0);
	size_t big = (size_t)INT32_MAX + 100;
	void *b;
	cr_assert_eq(shmring_spsc_reserve(p, big, &b), 0); /* its payload is never touched */
	cr_assert_eq(shmring_spsc_commit(p), 1);
	cr_assert_eq(shmring_spsc_send(p, "after", 5, 0), 0);
	char small[16];
	/* the length check comes before any copy: the buffer is never written */
	cr_assert_eq(shmring_spsc_recv(c, small, SIZE_MAX, 0), -EOVERFLOW);
	cr_assert_eq(shmring_spsc_recv(c, small, SIZE_MAX, 0), -EOVERFLOW, "it stays");
	cr_assert_eq(shmring_spsc_recv(c, small, sizeof(small), 0), -EMSGSIZE);
	struct shmring_rec r = { 0 };
	cr_assert_eq(shmring_spsc_peek(c, &r), 0);
	cr_assert_eq(r.len, big);
	cr_assert_eq(shmring_spsc_release(c), 1);
	cr_assert_eq(shmring_spsc_recv(c, small, sizeof(small), 0), 5);
	cr_assert_eq(memcmp(small, "after", 5), 0);
	shmring_spsc_close(p);
	cr_assert_eq(shmring_spsc_recv(c, small, sizeof(small), 0), -EPIPE);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}

/* ---- the same stream between two threads, so TSan sees both sides' accesses ---- */

struct thr_cfg {
	struct shmring_spsc *p;
	uint64_t n;
	int batch;
};

static void *thr_producer(void *a)
{
	struct thr_cfg *c = a;
	uint64_t rng = 5;
	for (uint64_t i = 0; i < c->n;) {
		for (int k = 0; k < c->batch && i < c->n; k++, i++) {
			size_t len = pick_size(&rng, META, 8192);
			void *buf = NULL;
			if (shmring_spsc_reserve_wait(c->p, len, &buf, SHMRING_FOREVER))
				return (void *)1;
			make_rec(buf, len, i);
		}
		shmring_spsc_commit(c->p);
	}
	shmring_spsc_close(c->p);
	return NULL;
}

Test(spsc, threads_stream_blocking_and_batched, .timeout = 600)
{
	for (int batch = 1; batch <= 8; batch *= 8) {
		char name[64];
		struct shmring_spsc *p, *c;
		pair("thr", 1u << 16, 8, &p, &c, name, sizeof(name));
		shmring_spsc_set_spin(c, batch == 1 ? 0 : 64);
		/* the batched stream demotes, so that TSan sees that path as well */
		cr_assert_eq(shmring_spsc_set_demote(p, batch > 1), 0);
		struct thr_cfg cfg = { .p = p, .n = tu_scaled(200000, 2000), .batch = batch };
		pthread_t t;
		pthread_create(&t, NULL, thr_producer, &cfg);
		uint64_t rng = 5, got = 0;
		struct shmring_rec rec = { 0 };
		int rc;
		while ((rc = shmring_spsc_peek_wait(c, &rec, SHMRING_FOREVER)) == 0) {
			cr_assert_eq(rec.len, pick_size(&rng, META, 8192));
			cr_assert_eq(check_rec(rec.data, rec.len, got), 0);
			got++;
			shmring_spsc_release(c);
		}
		void *res;
		pthread_join(t, &res);
		cr_assert_null(res);
		cr_assert_eq(rc, -EPIPE);
		cr_assert_eq(got, cfg.n);
		shmring_spsc_close(c);
		shmring_seg_unlink(name);
	}
}

/* Detaches and stays alive: EOF must come from the detach, not from a death. */
static int detaching_producer(void *a)
{
	struct peer_cfg *c = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(c->name, SHMRING_ROLE_PRODUCER, &r) != 0)
		return 10;
	if (shmring_spsc_send(r, "x", 1, 0) != 0)
		return 11;
	shmring_spsc_detach(r);
	tu_gate_open(&c->g1);
	tu_gate_wait(&c->g2);
	return 0;
}

Test(spsc, producer_detached_without_close_is_eof_after_the_last_record)
{
	struct peer_cfg pc;
	struct shmring_spsc *c;
	peer_cfg_init(&pc, "detach");
	struct shmring_spsc_opts o = { .capacity = 8192 };
	cr_assert_eq(shmring_spsc_create(pc.name, &o, SHMRING_ROLE_CONSUMER, &c), 0);
	pid_t pid = tu_fork(detaching_producer, &pc);
	tu_gate_wait(&pc.g1);
	char b[4];
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 1000), 1);
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), SHMRING_FOREVER), -EPIPE);
	cr_assert_eq(shmring_spsc_peer_closed(c), 0, "detached, not closed");
	tu_gate_open(&pc.g2);
	cr_assert_eq(tu_wait(pid), 0);
	shmring_spsc_close(c);
	peer_cfg_fini(&pc);
}

/* One process: the test is about exact offsets within one producer's batch. */
Test(spsc, shrink_the_last_reservation)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("shrink", 8192, 8, &p, &c, name, sizeof(name));
	void *a = NULL, *b = NULL;
	struct shmring_rec rec = { 0 };
	cr_assert_eq(shmring_spsc_shrink(p, 0), -EINVAL, "nothing pending");
	cr_assert_eq(shmring_spsc_reserve(p, 1000, &a), 0);
	cr_assert_eq(shmring_spsc_shrink(p, 1001), -EINVAL);
	cr_assert_eq(shmring_spsc_shrink(p, 3), 0);
	memcpy(a, "one", 3);
	cr_assert_eq(shmring_spsc_reserve(p, 2000, &b), 0);
	cr_assert_eq((uint8_t *)b - (uint8_t *)a, 16, "the next record follows the shrunk one");
	cr_assert_eq(shmring_spsc_shrink(p, 5), 0);
	memcpy(b, "three", 5);
	cr_assert_eq(shmring_spsc_commit(p), 2);
	cr_assert_eq(shmring_spsc_peek(c, &rec), 0);
	cr_assert_eq(rec.len, 3);
	cr_assert_eq(memcmp(rec.data, "one", 3), 0);
	cr_assert_eq(shmring_spsc_peek(c, &rec), 0);
	cr_assert_eq(rec.len, 5);
	cr_assert_eq(memcmp(rec.data, "three", 5), 0);
	cr_assert_eq(shmring_spsc_peek(c, &rec), -EAGAIN);
	cr_assert_eq(shmring_load_relaxed(&shmring_seg_hdr(shmring_spsc_seg(p))->stats.bytes), 8);
	shmring_spsc_release(c);
	shmring_spsc_close(p);
	cr_assert_eq(shmring_spsc_peer_closed(c), 1);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}

/* One process: it stages a crash at one exact point by rewriting ctrl->tail. */
Test(spsc, replacement_producer_accepts_a_consumer_past_the_stale_tail)
{
	char name[64];
	struct shmring_spsc *p, *c, *p2;
	pair("stale", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(shmring_spsc_send(p, "abcd", 4, 0), 0);
	char b[8];
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 0), 4);
	/* as if the producer died between publishing the record and storing tail */
	struct shmring_spsc_ctrl *ctrl = shmring_seg_ctrl(shmring_spsc_seg(p));
	shmring_store_relaxed(&ctrl->tail, 0);
	shmring_spsc_detach(p);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p2), 0);
	cr_assert_eq(shmring_spsc_send(p2, "efgh", 4, 0), 0);
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 0), 4);
	cr_assert_eq(memcmp(b, "efgh", 4), 0);
	shmring_spsc_close(p2);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}
