/* SPDX-License-Identifier: MIT */
/* SPSC ring: records in and out, wrap-around, limits, blocking, closing, dead peers,
 * across real processes. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "shmring/shmring.h"
#include "testutil.h"

/* A record carries: u64 sequence, u64 xxh3 of the rest, then filler. */
#define META 16u

static size_t pick_size(uint64_t *rng, size_t minsz, size_t maxsz)
{
	uint64_t x = tu_rand(rng);
	size_t sz;
	/* mostly small, a tenth spread log-uniformly up to the maximum */
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

static void make_rec(uint8_t *p, size_t len, uint64_t seq)
{
	memcpy(p, &seq, 8);
	/* cheap filler that differs per record */
	uint64_t pat = seq * UINT64_C(0x9e3779b97f4a7c15) + 1;
	for (size_t i = META; i < len; i += 8)
		memcpy(p + i, &pat, len - i < 8 ? len - i : 8);
	uint64_t h = XXH3_64bits(p + META, len - META);
	memcpy(p + 8, &h, 8);
}

/* 0 ok; else what is wrong */
static int check_rec(const uint8_t *p, size_t len, uint64_t want_seq)
{
	uint64_t seq, h;
	if (len < META)
		return 1;
	memcpy(&seq, p, 8);
	memcpy(&h, p + 8, 8);
	if (seq != want_seq)
		return 2;
	if (XXH3_64bits(p + META, len - META) != h)
		return 3;
	return 0;
}

struct stream_cfg {
	char name[64];
	uint64_t n;
	int block;        /* use the blocking calls */
	int batch;        /* records per commit / release */
	unsigned slow_consumer, slow_producer; /* extra work per record */
	uint64_t seed;
};

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
	uint64_t rng = c->seed;
	for (uint64_t i = 0; i < c->n;) {
		int k;
		for (k = 0; k < c->batch && i < c->n; k++, i++) {
			size_t len = pick_size(&rng, META, 65536);
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
	for (;;) {
		struct shmring_rec rec = { 0 };
		int k = 0, rc = 0;
		for (; k < c->batch; k++) {
			rc = c->block ? shmring_spsc_peek_wait(r, &rec, k ? 0 : SHMRING_FOREVER)
				      : shmring_spsc_peek(r, &rec);
			if (rc)
				break;
			size_t want = pick_size(&rng, META, 65536);
			cr_assert_eq(rec.len, want, "record %llu has length %u, expected %zu",
				     (unsigned long long)got, rec.len, want);
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

/* ---- in one process: geometry, limits, wrap-around ---- */

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

Test(spsc, zero_length_records_and_memfd)
{
	struct shmring_spsc *p, *c;
	cr_assert_eq(shmring_spsc_create(NULL, NULL, SHMRING_ROLE_PRODUCER, &p), 0);
	cr_assert_eq(shmring_spsc_open_fd(shmring_spsc_fd(p), SHMRING_ROLE_CONSUMER, &c), 0);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(shmring_spsc_send(p, NULL, 0, 0), 0);
	char b[1];
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(shmring_spsc_recv(c, b, 0, 0), 0);
	cr_assert_eq(shmring_spsc_recv(c, b, 1, 0), -EAGAIN);
	shmring_spsc_close(p);
	cr_assert_eq(shmring_spsc_recv(c, b, 1, 0), -EPIPE);
	shmring_spsc_close(c);
}

Test(spsc, second_producer_is_busy)
{
	char name[64];
	struct shmring_spsc *p, *c, *p2;
	pair("busy", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &p2), -EBUSY);
	unpair(p, c, name);
}

/* ---- wakeups ---- */

struct pp_cfg {
	char ping[64], pong[64];
	uint64_t n;
};

static int ponger(void *a)
{
	struct pp_cfg *c = a;
	struct shmring_spsc *in, *out;
	if (shmring_spsc_open(c->ping, SHMRING_ROLE_CONSUMER, &in) ||
	    shmring_spsc_open(c->pong, SHMRING_ROLE_PRODUCER, &out))
		return 10;
	shmring_spsc_set_spin(in, 0);
	shmring_spsc_set_spin(out, 0);
	uint64_t v;
	for (uint64_t i = 0; i < c->n; i++) {
		if (shmring_spsc_recv(in, &v, sizeof(v), SHMRING_FOREVER) != 8 || v != i)
			return 11;
		if (shmring_spsc_send(out, &v, sizeof(v), SHMRING_FOREVER))
			return 12;
	}
	shmring_spsc_close(out);
	shmring_spsc_close(in);
	return 0;
}

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
	pid_t pid = tu_fork(ponger, &c);
	uint64_t v;
	for (uint64_t i = 0; i < c.n; i++) {
		cr_assert_eq(shmring_spsc_send(out, &i, sizeof(i), SHMRING_FOREVER), 0);
		cr_assert_eq(shmring_spsc_recv(in, &v, sizeof(v), SHMRING_FOREVER), 8);
		cr_assert_eq(v, i);
	}
	cr_assert_eq(tu_wait(pid), 0);
	struct shmring_hdr *h = shmring_seg_hdr(shmring_spsc_seg(in));
	/* both sides really slept: the pong ring's consumer (us) slept on most trips */
	cr_assert_gt(shmring_load_relaxed(&h->stats.sleeps), c.n / 2,
		     "only %llu sleeps in %llu trips",
		     (unsigned long long)shmring_load_relaxed(&h->stats.sleeps), (unsigned long long)c.n);
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
Test(spsc, one_wake_syscall_per_sleep_however_many_commits, .timeout = 60)
{
	struct storm_cfg c = { .n = 1000 };
	struct shmring_spsc *p;
	struct shmring_spsc_opts o = { .capacity = 1 << 16 };
	tu_name(c.name, sizeof(c.name), "storm");
	cr_assert_eq(shmring_spsc_create(c.name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	struct shmring_hdr *h = shmring_seg_hdr(shmring_spsc_seg(p));
	pid_t pid = tu_fork(storm_consumer, &c);
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

Test(spsc, timeouts_return_on_time)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("timeout", 4096, 8, &p, &c, name, sizeof(name));
	struct shmring_rec rec = { 0 };
	uint64_t t0 = shmring_now_ns();
	cr_assert_eq(shmring_spsc_peek_wait(c, &rec, 50), -ETIMEDOUT);
	uint64_t el = shmring_now_ns() - t0;
	cr_assert_geq(el, 50000000u, "returned after %llu ns, before its deadline", (unsigned long long)el);
	void *buf = NULL;
	while (shmring_spsc_reserve(p, 64, &buf) == 0)
		;
	t0 = shmring_now_ns();
	cr_assert_eq(shmring_spsc_reserve_wait(p, 64, &buf, 30), -ETIMEDOUT);
	el = shmring_now_ns() - t0;
	cr_assert_geq(el, 30000000u);
	struct shmring_hdr *h = shmring_seg_hdr(shmring_spsc_seg(p));
	cr_assert_geq(shmring_load_relaxed(&h->stats.timeouts), 2);
	unpair(p, c, name);
}

/* ---- closing and dead peers ---- */

Test(spsc, epipe_after_close_delivers_everything)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("close", 65536, 8, &p, &c, name, sizeof(name));
	for (uint64_t i = 0; i < 100; i++) {
		uint8_t b[64];
		make_rec(b, sizeof(b), i);
		cr_assert_eq(shmring_spsc_send(p, b, sizeof(b), 0), 0);
	}
	shmring_spsc_close(p);
	uint8_t b[64];
	for (uint64_t i = 0; i < 100; i++) {
		cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 1000), 64);
		cr_assert_eq(check_rec(b, 64, i), 0);
	}
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), SHMRING_FOREVER), -EPIPE);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}

Test(spsc, consumer_closed_gives_producer_epipe)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("cclose", 4096, 8, &p, &c, name, sizeof(name));
	shmring_spsc_close(c);
	void *buf = NULL;
	int rc;
	while ((rc = shmring_spsc_reserve(p, 64, &buf)) == 0)
		shmring_spsc_commit(p);
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(shmring_spsc_reserve_wait(p, 64, &buf, SHMRING_FOREVER), -EPIPE);
	shmring_spsc_close(p);
	shmring_seg_unlink(name);
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

Test(spsc, producer_detached_without_close_is_eof_after_the_last_record)
{
	char name[64];
	struct shmring_spsc *p, *c;
	pair("detach", 8192, 8, &p, &c, name, sizeof(name));
	cr_assert_eq(shmring_spsc_send(p, "x", 1, 0), 0);
	shmring_spsc_detach(p);
	char b[4];
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), 1000), 1);
	cr_assert_eq(shmring_spsc_recv(c, b, sizeof(b), SHMRING_FOREVER), -EPIPE);
	shmring_spsc_close(c);
	shmring_seg_unlink(name);
}

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
