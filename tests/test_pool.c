/* SPDX-License-Identifier: MIT */
/*
 * Frame pool tests. Cross-process behaviour runs in real processes: children open the
 * pool again after fork() and report through exit codes and pipes; the parent asserts.
 * Nothing sleeps to let another process catch up: processes synchronise on pipes, on
 * waitpid() and on the pool itself.
 */
#include <criterion/criterion.h>

#include "shmring/dump.h"
#include "shmring/pool.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define W1080 1920u
#define H1080 1080u
#define FRAME_1080P (W1080 * H1080 * 3u / 2u) /* NV12: 3,110,400 bytes */
#define FRAME_4K (3840u * 2160u * 3u / 2u)    /* NV12: 12,441,600 bytes */
#define FOURCC_NV12 0x3231564eu
#define WAIT_MS 20000 /* generous: a stuck test fails instead of hanging */

/* ---- helpers ---- */

/* First call of every child: die with the test process, whatever happens to it (a
 * failed assertion must not leave children running). */
static void child_init(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

struct named_pool {
	char name[96];
};

/* Names this process created, unlinked when it exits however the test ended (a failed
 * assertion skips the test's own unlink). Children leave with _exit() and skip this. */
static char created[64][96];
static unsigned ncreated;
static pid_t creator;

__attribute__((destructor)) static void unlink_created(void)
{
	if (creator != getpid())
		return;
	for (unsigned i = 0; i < ncreated; i++)
		shmring_seg_unlink(created[i]);
}

static void pool_name(struct named_pool *n, const char *tag)
{
	tu_name(n->name, sizeof(n->name), tag);
	if (creator != getpid()) {
		creator = getpid();
		ncreated = 0;
	}
	if (ncreated < 64)
		snprintf(created[ncreated++], sizeof(created[0]), "%s", n->name);
}

/* A one-shot signal from a child: the parent closes its write end after fork, so a
 * child that dies before signalling gives EOF instead of a hang. */
struct sig {
	int fd[2];
};

static void sig_init(struct sig *s)
{
	cr_assert_eq(pipe(s->fd), 0);
}

static void sig_parent_side(struct sig *s)
{
	close(s->fd[1]);
	s->fd[1] = -1;
}

static void sig_send(struct sig *s)
{
	char c = 1;
	if (write(s->fd[1], &c, 1) != 1)
		_exit(99);
}

/* 1 if the child signalled, 0 if it died first. */
static int sig_wait(struct sig *s)
{
	char c;
	ssize_t n;
	while ((n = read(s->fd[0], &c, 1)) < 0 && errno == EINTR)
		;
	return n == 1;
}

static void sig_close(struct sig *s)
{
	for (int i = 0; i < 2; i++)
		if (s->fd[i] >= 0)
			close(s->fd[i]);
}

/* The sampled regions a frame's content is checked on: its first 256 bytes and 4 KiB
 * at a place that moves with the sequence number. The checksum covers the rest. */
static size_t region_len(size_t len)
{
	return len >= 8192 ? 4096 : len / 4;
}

static size_t region_off(uint64_t seq, size_t len)
{
	size_t span = len - 256 - region_len(len);
	return 256 + ((size_t)((seq * UINT64_C(40961) * 64u) % span) & ~(size_t)63);
}

static void fill_frame(struct shmring_pool_frame *f, uint64_t n, size_t len)
{
	uint8_t *d = f->data;
	tu_fill(d, 256, n);
	tu_fill(d + region_off(n, len), region_len(len), n ^ 0x5bd1e995u);
	f->len = len;
	f->width = W1080;
	f->height = H1080;
	f->format = FOURCC_NV12;
	f->stride = W1080;
	f->user = n * 7;
}

static int check_frame(const struct shmring_pool_frame *f, size_t len)
{
	const uint8_t *d = f->data;
	return f->len == len && f->width == W1080 && f->height == H1080 &&
	       f->format == FOURCC_NV12 && f->stride == W1080 && f->user == f->seq * 7 &&
	       tu_check(d, 256, f->seq) &&
	       tu_check(d + region_off(f->seq, len), region_len(len), f->seq ^ 0x5bd1e995u);
}

/* Every named pool a test makes goes through here, so that pool_name() records it for
 * unlink_created(). */
static struct shmring_pool *make_pool(struct named_pool *n, const char *tag, uint64_t buf,
				      uint32_t nbufs, uint32_t subs, uint32_t held, uint32_t flags)
{
	struct shmring_pool_opts o = {
		.buf_size = buf, .nbufs = nbufs, .max_subs = subs, .max_held = held, .flags = flags,
	};
	struct shmring_pool *p = NULL;
	pool_name(n, tag);
	int rc = shmring_pool_create(n->name, &o, NULL, &p);
	cr_assert_eq(rc, 0, "create: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	return p;
}

static struct shmring_pool *sub_open(const char *name, uint32_t policy)
{
	struct shmring_pool_sub_opts so = { .policy = policy };
	struct shmring_pool *s = NULL;
	int rc = shmring_pool_subscribe(name, &so, &s);
	cr_assert_eq(rc, 0, "subscribe: %s", shmring_strerror(rc));
	return s;
}

/* A producer opened after the others closed or died: what it finds is what they left. */
static struct shmring_pool *reopen_producer(const char *name)
{
	struct shmring_pool *p = NULL;
	int rc = shmring_pool_open_producer(name, &p);
	cr_assert_eq(rc, 0, "open_producer: %s", shmring_strerror(rc));
	return p;
}

/* Close the handles in the order given, then unlink the name. A macro so that a test
 * lists its handles in place: close_and_unlink(name, s, p). */
#define close_and_unlink(name, ...) \
	close_handles_and_unlink((name), (struct shmring_pool *[]){ __VA_ARGS__, NULL })

static void close_handles_and_unlink(const char *name, struct shmring_pool **h)
{
	for (; *h; h++)
		shmring_pool_close(*h);
	shmring_seg_unlink(name);
}

static struct shmring_pool_stats pool_stats(const struct shmring_pool *p)
{
	struct shmring_pool_stats ps;
	cr_assert_eq(shmring_pool_stats(p, &ps), 0);
	return ps;
}

static struct shmring_pool_sub_stats sub_stats(const struct shmring_pool *s)
{
	struct shmring_pool_sub_stats st;
	cr_assert_eq(shmring_pool_sub_stats(s, &st), 0);
	return st;
}

/* The counters in the segment header, which outlive every handle. */
static struct shmring_stats *hdr_stats(const struct shmring_pool *p)
{
	return &shmring_seg_hdr(shmring_pool_seg(p))->stats;
}

static struct shmring_pool_geo pool_geo(const struct shmring_seg *seg)
{
	struct shmring_pool_geo g;
	cr_assert_eq(shmring_pool_geo_check(seg->geo, seg->max_parts, seg->ctrl_size, seg->data_size,
					    &g, NULL, 0), 0);
	return g;
}

/* shmring_pool_geo_check() on seg's geometry with one word replaced. */
static int geo_check_with(const struct shmring_seg *seg, unsigned word, uint64_t value, char *why,
			  size_t why_len)
{
	uint64_t bad[SHMRING_GEO_WORDS];
	struct shmring_pool_geo g;
	memcpy(bad, seg->geo, sizeof(bad));
	bad[word] = value;
	return shmring_pool_geo_check(bad, seg->max_parts, seg->ctrl_size, seg->data_size, &g, why,
				      why_len);
}

static int publish_one(struct shmring_pool *p, uint64_t n, size_t len)
{
	struct shmring_pool_frame f;
	int rc = shmring_pool_loan_wait(p, &f, WAIT_MS);
	if (rc)
		return rc;
	fill_frame(&f, n, len);
	return shmring_pool_publish(p, &f);
}

/* Frames 0 to count-1, each delivered to `subs` subscribers. */
static void publish_n(struct shmring_pool *p, uint64_t count, size_t len, int subs)
{
	for (uint64_t i = 0; i < count; i++) {
		int rc = publish_one(p, i, len);
		cr_assert_eq(rc, subs, "frame %llu: %s", (unsigned long long)i,
			     shmring_strerror(rc));
	}
}

/* Frame n without waiting: a buffer must be free and no block subscriber in the way. */
static void publish_now(struct shmring_pool *p, uint64_t n, size_t len, int subs)
{
	struct shmring_pool_frame f;
	cr_assert_eq(shmring_pool_loan(p, &f), 0, "frame %llu", (unsigned long long)n);
	fill_frame(&f, n, len);
	cr_assert_eq(shmring_pool_publish(p, &f), subs);
}

/* Take the next frame (wait_ms 0: only if one is queued), expect sequence number seq and,
 * where len is not 0, that frame's content; give it back. */
static void take_expect(struct shmring_pool *s, int wait_ms, uint64_t seq, size_t len)
{
	struct shmring_pool_frame g;
	int rc = wait_ms ? shmring_pool_take_wait(s, &g, wait_ms) : shmring_pool_take(s, &g);
	cr_assert_eq(rc, 0, "frame %llu: %s", (unsigned long long)seq, shmring_strerror(rc));
	cr_assert_eq(g.seq, seq);
	if (len)
		cr_assert(check_frame(&g, len));
	cr_assert_eq(shmring_pool_release(s, &g), 0);
}

/* Fork fn(arg), which reports through the one-shot signals a and b (either may be NULL):
 * the parent keeps only their read ends, so a child that dies reads as EOF. */
static pid_t fork_signalling(int (*fn)(void *), void *arg, struct sig *a, struct sig *b)
{
	struct sig *s[2] = { a, b };
	for (int i = 0; i < 2; i++)
		if (s[i])
			sig_init(s[i]);
	pid_t pid = tu_fork(fn, arg);
	cr_assert_gt(pid, 0);
	for (int i = 0; i < 2; i++)
		if (s[i])
			sig_parent_side(s[i]);
	return pid;
}

/* A child's subscription; NULL if it failed. */
static struct shmring_pool *child_subscribe(const char *name, uint32_t policy)
{
	struct shmring_pool_sub_opts so = { .policy = policy };
	struct shmring_pool *p;
	return shmring_pool_subscribe(name, &so, &p) == 0 ? p : NULL;
}

/* ---- single process: API and policies ---- */

Test(pool, geometry_and_frame_sizes)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-geo", FRAME_4K, 3, 2, 1, 0);
	const struct shmring_seg *seg = shmring_pool_seg(p);
	cr_assert_eq(seg->kind, SHMRING_KIND_POOL);
	cr_assert_eq(seg->geo[SHMRING_POOL_GEO_NBUFS], 3);
	cr_assert_eq(seg->geo[SHMRING_POOL_GEO_BUF_SIZE], FRAME_4K);
	cr_assert_eq(seg->geo[SHMRING_POOL_GEO_BUF_STRIDE] % SHMRING_PAGE, 0);
	cr_assert_eq(seg->geo[SHMRING_POOL_GEO_LOG_CAP], 4);
	cr_assert_eq(seg->geo[SHMRING_POOL_GEO_LIMITS], 1 | (UINT64_C(1) << 32)); /* held 1, depth 1 */
	cr_assert_eq(pool_geo(seg).meta_off, sizeof(struct shmring_pool_ctrl));
	/* every buffer is page aligned and holds a 4K NV12 frame */
	for (int i = 0; i < 3; i++) {
		struct shmring_pool_frame f;
		cr_assert_eq(shmring_pool_loan(p, &f), 0);
		cr_assert_eq((uintptr_t)f.data % SHMRING_PAGE, 0);
		cr_assert_eq(f.capacity, FRAME_4K);
		memset(f.data, 0xa5, FRAME_4K);
		f.len = FRAME_4K;
		cr_assert_eq(shmring_pool_publish(p, &f), 0); /* nobody subscribed: free again */
	}
	cr_assert_eq(shmring_pool_free_count(p), 3);
	/* tampered geometry is refused */
	char why[200];
	cr_assert_eq(geo_check_with(seg, SHMRING_POOL_GEO_LOG_CAP, 2, why, sizeof(why)), -EPROTO);
	cr_assert(strstr(why, "log_cap") != NULL, "%s", why);
	/* breaks the guarantee */
	cr_assert_eq(geo_check_with(seg, SHMRING_POOL_GEO_LIMITS, 1 | (UINT64_C(3) << 32), NULL, 0),
		     -EPROTO);
	cr_assert_eq(geo_check_with(seg, SHMRING_POOL_GEO_NBUFS, 1000, NULL, 0), -EPROTO);
	close_and_unlink(n.name, p);

	/* 1080p with the defaults: 8 buffers, 4 subscribers, depth 4 */
	pool_name(&n, "pool-geo");
	struct shmring_pool_opts o = { .buf_size = FRAME_1080P };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), 0);
	cr_assert_eq(shmring_pool_seg(p)->geo[SHMRING_POOL_GEO_LIMITS], 1 | (UINT64_C(4) << 32));
	close_and_unlink(n.name, p);
}

Test(pool, invalid_options)
{
	struct named_pool n;
	pool_name(&n, "pool-inval");
	struct shmring_pool *p;
	struct shmring_pool_opts o = { .buf_size = 0 };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), -EINVAL);
	o = (struct shmring_pool_opts){ .buf_size = 4096, .nbufs = 4, .max_subs = 4 };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), -EINVAL); /* no queue left */
	o = (struct shmring_pool_opts){ .buf_size = 4096, .nbufs = 8, .max_subs = 2, .queue_depth = 7 };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), -EINVAL);
	cr_assert(strstr(shmring_last_error_detail(), "queue_depth") != NULL);
	o = (struct shmring_pool_opts){ .buf_size = 4096, .flags = 1u << 30 };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), -EINVAL);
	o = (struct shmring_pool_opts){ .buf_size = 4096, .nbufs = SHMRING_POOL_MAX_BUFS + 1 };
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), -EINVAL);
	o = (struct shmring_pool_opts){ .buf_size = 4096 };
	struct shmring_pool_sub_opts so = { .policy = 9 };
	cr_assert_eq(shmring_pool_create(n.name, &o, &so, &p), -EINVAL);
	cr_assert_eq(shmring_pool_subscribe(n.name, NULL, &p), -ENOENT);
}

Test(pool, roundtrip_metadata_and_checksum)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-rt", FRAME_1080P, 4, 2, 1,
					   SHMRING_POOL_F_CHECKSUM | SHMRING_POOL_F_STAMP);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame f, g;
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	cr_assert_eq(shmring_pool_take(p, &g), -EBADF);
	cr_assert_eq(shmring_pool_loan(s, &f), -EBADF);
	uint64_t before = shmring_now_ns();
	for (uint64_t i = 0; i < 10; i++) {
		cr_assert_eq(shmring_pool_loan(p, &f), 0);
		struct shmring_pool_frame f2;
		cr_assert_eq(shmring_pool_loan(p, &f2), -EBUSY);
		fill_frame(&f, i, FRAME_1080P);
		cr_assert_eq(shmring_pool_publish(p, &f), 1);
		cr_assert_eq(f.seq, i);
		cr_assert_eq(shmring_pool_take(s, &g), 0);
		cr_assert_eq(g.seq, i);
		cr_assert(check_frame(&g, FRAME_1080P));
		cr_assert(g.ts_ns >= before && g.ts_ns <= shmring_now_ns());
		cr_assert_eq(g.flags, SHMRING_POOL_FRAME_F_CHECKSUM);
		cr_assert_eq(g.checksum, shmring_pool_checksum(g.data, g.len));
		cr_assert_eq(shmring_pool_frame_verify(s, &g), 0);
		cr_assert_eq(g.data != f.data, 1, "subscribers read through their own mapping");
		cr_assert_eq(memcmp(g.data, f.data, FRAME_1080P), 0);
		cr_assert_eq(shmring_pool_release(s, &g), 0);
		cr_assert_eq(shmring_pool_free_count(p), 4);
	}
	/* a producer-given timestamp is kept */
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	fill_frame(&f, 10, 100000);
	f.ts_ns = 12345;
	cr_assert_eq(shmring_pool_publish(p, &f), 1);
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.ts_ns, 12345);
	cr_assert_eq(g.len, 100000);
	/* a frame changed after publication fails its checksum */
	((uint8_t *)f.data)[500] ^= 1;
	cr_assert_eq(shmring_pool_frame_verify(s, &g), -EBADMSG);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	/* cancel gives the loan back */
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	cr_assert_eq(shmring_pool_free_count(p), 3);
	cr_assert_eq(shmring_pool_cancel(p, &f), 0);
	cr_assert_eq(shmring_pool_free_count(p), 4);
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	/* len beyond the buffer is refused */
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	f.len = FRAME_1080P + 1;
	cr_assert_eq(shmring_pool_publish(p, &f), -EINVAL);
	cr_assert_eq(shmring_pool_cancel(p, &f), 0);
	cr_assert_eq(atomic_load(&hdr_stats(p)->msgs), 11);
	close_and_unlink(n.name, s, p);
}

Test(pool, no_checksum_and_no_stamp_by_default)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-nock", 8192, 4, 2, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame f, g;
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	f.len = 8192;
	cr_assert_eq(shmring_pool_publish(p, &f), 1);
	cr_assert_eq(f.checksum, 0);
	cr_assert_eq(f.ts_ns, 0, "no SHMRING_POOL_F_STAMP: publish leaves ts_ns alone");
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.flags, 0);
	cr_assert_eq(g.checksum, 0);
	cr_assert_eq(g.ts_ns, 0, "the subscriber sees the producer's 0: no timestamp");
	cr_assert_eq(shmring_pool_frame_verify(s, &g), -ENODATA);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	/* the producer's own timestamp goes through unchanged */
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	f.len = 1;
	f.ts_ns = 777;
	cr_assert_eq(shmring_pool_publish(p, &f), 1);
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.ts_ns, 777);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	close_and_unlink(n.name, s, p);
}

/* Exit 42 on a write to a read-only page (SEGV_ACCERR), 43 on any other fault. A
 * handler of our own also works under AddressSanitizer, which would abort instead. */
static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	_exit(si->si_code == SEGV_ACCERR ? 42 : 43);
}

static int write_to_frame(void *arg)
{
	child_init();
	struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO };
	sigaction(SIGSEGV, &sa, NULL);
	(void)arg;
	struct shmring_pool *p, *s;
	struct shmring_pool_opts o = { .buf_size = 4096, .nbufs = 4, .max_subs = 1 };
	if (shmring_pool_create(NULL, &o, NULL, &p) != 0)
		return 1;
	struct shmring_pool_sub_opts so = { .policy = SHMRING_POOL_BLOCK };
	if (shmring_pool_subscribe_fd(shmring_pool_fd(p), &so, &s) != 0)
		return 2;
	struct shmring_pool_frame f, g;
	if (shmring_pool_loan(p, &f) != 0)
		return 3;
	f.len = 16;
	if (shmring_pool_publish(p, &f) != 1 || shmring_pool_take(s, &g) != 0)
		return 4;
	((volatile uint8_t *)g.data)[0] = 1; /* must fault: subscribers map buffers read-only */
	return 5;
}

Test(pool, subscribers_map_buffers_read_only)
{
	pid_t pid = tu_fork(write_to_frame, NULL);
	cr_assert_eq(tu_wait(pid), 42, "the write must fault on a read-only page");
}

Test(pool, max_held_and_bad_release)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-held", 4096, 8, 2, 2, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	publish_n(p, 3, 4096, 1);
	struct shmring_pool_frame a, b, c;
	cr_assert_eq(shmring_pool_take(s, &a), 0);
	cr_assert_eq(shmring_pool_take(s, &b), 0);
	cr_assert_eq(shmring_pool_take(s, &c), -ENOBUFS);
	/* out of order release is fine */
	cr_assert_eq(shmring_pool_release(s, &b), 0);
	cr_assert_eq(shmring_pool_release(s, &b), -EINVAL); /* twice */
	c = a;
	c.index = 7; /* never taken */
	cr_assert_eq(shmring_pool_release(s, &c), -EINVAL);
	cr_assert_eq(shmring_pool_release(p, &a), -EINVAL); /* not a subscriber */
	cr_assert_eq(shmring_pool_take(s, &c), 0);
	cr_assert_eq(c.seq, 2);
	cr_assert_eq(shmring_pool_release(s, &a), 0);
	cr_assert_eq(shmring_pool_release(s, &c), 0);
	cr_assert_eq(shmring_pool_free_count(p), 8);
	close_and_unlink(n.name, s, p);
}

Test(pool, block_subscriber_backpressure)
{
	struct named_pool n;
	/* 8 buffers, 2 subscribers holding 1: queue_depth 6 */
	struct shmring_pool *p = make_pool(&n, "pool-block", 4096, 8, 2, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame f, g;
	publish_n(p, 6, 4096, 1);
	cr_assert_eq(shmring_pool_free_count(p), 2, "free buffers remain, yet...");
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN, "...the block subscriber is 6 behind");
	cr_assert_eq(shmring_pool_loan_wait(p, &f, 5), -ETIMEDOUT);
	struct shmring_pool_sub_stats st = sub_stats(s);
	cr_assert_eq(st.stalls, 2, "each loan that waited counts once");
	cr_assert_eq(st.queued, 6);
	struct shmring_pool_stats ps = pool_stats(p);
	cr_assert_eq(ps.block_stalls, 2);
	cr_assert_eq(ps.nobuf_stalls, 0);
	cr_assert_eq(ps.published, 6);
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.seq, 0);
	cr_assert_eq(shmring_pool_loan(p, &f), 0, "one frame taken: room again");
	cr_assert_eq(shmring_pool_cancel(p, &f), 0);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	cr_assert_eq(shmring_pool_sub_stats(p, &st), -EBADF);
	shmring_pool_close(s);
	/* the subscriber left: its queued frames went back */
	cr_assert_eq(shmring_pool_free_count(p), 8);
	close_and_unlink(n.name, p);
}

/* CREDIT in pool.h: the producer learns a block subscriber's progress from the buffers
 * it gave back (frames published before it joined, or queued, or taken and still held,
 * teach nothing): the queue depth holds whatever was learned. */
Test(pool, queue_depth_holds_when_the_producer_learns_from_buffers)
{
	struct named_pool n;
	struct shmring_pool_opts o = {
		.buf_size = 4096, .nbufs = 8, .max_subs = 1, .max_held = 1, .queue_depth = 2,
	};
	struct shmring_pool *p = NULL, *s;
	struct shmring_pool_frame f, g;
	pool_name(&n, "pool-credit");
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), 0);
	publish_n(p, 7, 4096, 0); /* buffers 0-6 now hold frames nobody was sent */
	s = sub_open(n.name, SHMRING_POOL_BLOCK);
	publish_now(p, 7, 4096, 1); /* admits s */
	publish_now(p, 8, 4096, 1);
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN, "queue_depth 2 reached");
	take_expect(s, 0, 7, 4096);
	publish_now(p, 9, 4096, 1);
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN);
	/* a steady hand-over, where the producer learns from the buffers s gives back */
	take_expect(s, 0, 8, 4096);
	take_expect(s, 0, 9, 4096);
	for (uint64_t i = 10; i < 60; i++) {
		publish_now(p, i, 4096, 1);
		take_expect(s, 0, i, 4096);
	}
	/* s stops taking: exactly queue_depth more frames, whatever was learned */
	publish_now(p, 60, 4096, 1);
	publish_now(p, 61, 4096, 1);
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN, "s is 2 behind");
	/* a frame taken and held keeps its buffer's bit: room for one, not more */
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.seq, 60);
	publish_now(p, 62, 4096, 1);
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN, "s is 2 behind again");
	cr_assert_eq(sub_stats(s).queued, 2);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	take_expect(s, 0, 61, 4096);
	take_expect(s, 0, 62, 4096);
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	close_and_unlink(n.name, s, p);
}

Test(pool, drop_oldest_never_blocks_producer)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-drop", 4096, 4, 1, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	struct shmring_pool_frame g;
	/* the subscriber holds one frame and reads nothing else */
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	for (uint64_t i = 1; i < 100; i++)
		publish_now(p, i, 4096, 1);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	/* what is left is the newest frames, in order */
	uint64_t last = 0, taken = 1;
	while (shmring_pool_take(s, &g) == 0) {
		cr_assert_gt(g.seq, last);
		cr_assert(check_frame(&g, 4096));
		last = g.seq;
		taken++;
		cr_assert_eq(shmring_pool_release(s, &g), 0);
	}
	cr_assert_eq(last, 99);
	struct shmring_pool_sub_stats st = sub_stats(s);
	cr_assert_eq(st.frames, taken);
	cr_assert_eq(st.drops + taken, 100);
	cr_assert_eq(st.drops, 96, "1 frame held, 3 queued: the other 96 dropped");
	cr_assert_eq(st.stalls, 0);
	cr_assert_eq(atomic_load(&hdr_stats(p)->drops), st.drops);
	struct shmring_pool_stats ps = pool_stats(p);
	cr_assert_eq(ps.nobuf_stalls, 0);
	cr_assert_eq(ps.free_bufs, 4);
	close_and_unlink(n.name, s, p);
}

Test(pool, slow_drop_subscriber_does_not_stall_block_one)
{
	struct named_pool n;
	/* 8 buffers, 3 subscribers holding up to 1: queue_depth 5 */
	struct shmring_pool *p = make_pool(&n, "pool-mix", 4096, 8, 3, 1, 0);
	struct shmring_pool *blk = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool *slow = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	struct shmring_pool_frame g, held;
	cr_assert_eq(publish_one(p, 0, 4096), 2);
	cr_assert_eq(shmring_pool_take(slow, &held), 0); /* and keeps it */
	cr_assert_eq(shmring_pool_take(blk, &g), 0);
	cr_assert_eq(shmring_pool_release(blk, &g), 0);
	for (uint64_t i = 1; i < 500; i++) {
		/* the block subscriber lags by up to 4 frames */
		publish_now(p, i, 4096, 2);
		if (i % 4 == 0) {
			while (shmring_pool_take(blk, &g) == 0)
				cr_assert_eq(shmring_pool_release(blk, &g), 0);
		}
	}
	struct shmring_pool_sub_stats st = sub_stats(slow);
	cr_assert_eq(st.stalls, 0);
	cr_assert_gt(st.drops, 400);
	struct shmring_pool_stats ps = pool_stats(p);
	cr_assert_eq(ps.nobuf_stalls, 0);
	cr_assert_eq(ps.block_stalls, 0);
	cr_assert_eq(shmring_pool_release(slow, &held), 0);
	shmring_pool_close(slow);
	shmring_pool_close(blk);
	cr_assert_eq(shmring_pool_free_count(p), 8);
	close_and_unlink(n.name, p);
}

Test(pool, join_late_gets_frames_from_next_publish)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-late", 4096, 8, 2, 1, 0);
	publish_n(p, 5, 4096, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame g;
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	cr_assert_eq(publish_one(p, 5, 4096), 1);
	take_expect(s, 0, 5, 4096);
	close_and_unlink(n.name, s, p);
}

/* MEMBERSHIP (pool.h): the producer remembers which records it admitted and their
 * policies while ctrl->joins stays put. A record that changes hands between two
 * publishes, with a new policy, must be admitted and gated (or not) as the new occupant
 * asks. */
Test(pool, a_record_that_changes_hands_between_publishes_is_read_again)
{
	struct named_pool n;
	/* 8 buffers, 2 records holding 1: queue_depth 6 */
	struct shmring_pool *p = make_pool(&n, "pool-rejoin", 4096, 8, 2, 1, 0);
	_Atomic uint64_t *joins =
		&((struct shmring_pool_ctrl *)shmring_seg_ctrl(shmring_pool_seg(p)))->joins;
	cr_assert_eq(atomic_load(joins), 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	cr_assert_eq(sub_stats(s).index, 0);
	cr_assert_eq(atomic_load(joins), 1);
	publish_n(p, 3, 4096, 1);
	for (uint64_t i = 0; i < 3; i++)
		take_expect(s, 0, i, 4096);

	/* drop-oldest -> block, no publish in between */
	shmring_pool_close(s);
	struct shmring_pool *b = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(sub_stats(b).index, 0, "the same record, a new occupant");
	cr_assert_eq(atomic_load(joins), 2);
	for (uint64_t i = 3; i < 9; i++)
		publish_now(p, i, 4096, 1); /* admitted at once: every frame reaches it */
	struct shmring_pool_frame f;
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN, "gated: the new occupant is 6 behind");
	cr_assert_eq(pool_stats(p).block_stalls, 1);
	cr_assert_eq(sub_stats(b).stalls, 1);
	take_expect(b, 0, 3, 4096);
	cr_assert_eq(shmring_pool_loan(p, &f), 0, "one frame taken: room again");
	cr_assert_eq(shmring_pool_cancel(p, &f), 0);

	/* block -> drop-oldest: the producer must not wait for the new occupant */
	shmring_pool_close(b);
	cr_assert_eq(shmring_pool_free_count(p), 8, "the block subscriber's queue went back");
	struct shmring_pool *d = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	cr_assert_eq(sub_stats(d).index, 0);
	for (uint64_t i = 9; i < 40; i++)
		publish_now(p, i, 4096, 1); /* never -EAGAIN: its oldest frames are dropped */
	cr_assert_eq(pool_stats(p).block_stalls, 1, "no new stall");
	cr_assert_eq(sub_stats(d).drops, 31 - 8, "the newest 8 frames stay queued");
	take_expect(d, 0, 32, 4096);

	/* a second record joining and leaving does not disturb the first */
	struct shmring_pool *e = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(sub_stats(e).index, 1);
	publish_now(p, 40, 4096, 2);
	shmring_pool_close(e);
	publish_now(p, 41, 4096, 1);
	cr_assert_eq(atomic_load(joins), 4);
	close_and_unlink(n.name, d, p);
}

/* A pool made by a library before SHMRING_POOL_F_JOINS (the flag cleared, the header
 * checksum redone): joiners do not count, and the producer reads every record on every
 * publish, as it did then; a record changing hands is still admitted. */
Test(pool, pool_without_join_counting_is_read_every_time)
{
	struct named_pool n;
	pool_name(&n, "pool-nojoins");
	struct shmring_pool_opts o = { .buf_size = 4096, .nbufs = 8, .max_subs = 2 };
	struct shmring_pool_sub_opts so = { .policy = SHMRING_POOL_DROP_OLDEST };
	struct shmring_pool *s = NULL, *p = NULL;
	cr_assert_eq(shmring_pool_create(n.name, &o, &so, &s), 0);
	struct shmring_hdr *h = shmring_seg_hdr(shmring_pool_seg(s));
	cr_assert(h->flags & SHMRING_POOL_F_JOINS, "set on every pool created");
	h->flags &= ~SHMRING_POOL_F_JOINS;
	h->checksum = shmring_hdr_checksum(h);
	cr_assert_eq(shmring_pool_open_producer(n.name, &p), 0);
	_Atomic uint64_t *joins =
		&((struct shmring_pool_ctrl *)shmring_seg_ctrl(shmring_pool_seg(p)))->joins;
	uint64_t j0 = atomic_load(joins);
	publish_n(p, 2, 4096, 1);
	shmring_pool_close(s);
	struct shmring_pool *b = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(atomic_load(joins), j0, "not counted in a pool without the flag");
	for (uint64_t i = 2; i < 8; i++)
		publish_now(p, i, 4096, 1);
	struct shmring_pool_frame f;
	cr_assert_eq(shmring_pool_loan(p, &f), -EAGAIN);
	take_expect(b, 0, 2, 4096);
	close_and_unlink(n.name, b, p);
}

/* A subscriber learns a frame's descriptor from the log entry it polls, not from the
 * buffer's metadata line (one cache-line trip fewer per frame): what the producer set
 * arrives even when the metadata copy is scribbled over after publication, and that copy
 * is still written for inspectors. */
Test(pool, descriptor_travels_in_the_log_entry)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-desc", 8192, 4, 2, 1, SHMRING_POOL_F_CHECKSUM);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame f, g;
	cr_assert(shmring_seg_hdr(shmring_pool_seg(p))->flags & SHMRING_POOL_F_DESC,
		  "set on every pool created");
	cr_assert_eq(shmring_pool_loan(p, &f), 0);
	fill_frame(&f, 7, 5000);
	f.ts_ns = 111;
	f.user = 222;
	f.width = 1920;
	f.height = 1080;
	f.format = 0x3231564e; /* 'NV12' */
	f.stride = 2048;
	cr_assert_eq(shmring_pool_publish(p, &f), 1);
	struct shmring_pool_meta *m = &p->meta[f.index];
	cr_assert_eq(atomic_load(&m->len), 5000, "the inspectors' copy");
	cr_assert_eq(atomic_load(&m->user), 222);
	cr_assert_eq(atomic_load(&m->seq), f.seq);
	atomic_store(&m->len, 1);
	atomic_store(&m->seq, 99);
	atomic_store(&m->user, 0);
	atomic_store(&m->width, 0);
	atomic_store(&m->checksum, 0);
	cr_assert_eq(shmring_pool_take(s, &g), 0);
	cr_assert_eq(g.len, 5000);
	cr_assert_eq(g.seq, f.seq);
	cr_assert_eq(g.ts_ns, 111);
	cr_assert_eq(g.user, 222);
	cr_assert_eq(g.width, 1920);
	cr_assert_eq(g.height, 1080);
	cr_assert_eq(g.format, 0x3231564e);
	cr_assert_eq(g.stride, 2048);
	cr_assert_eq(g.flags, SHMRING_POOL_FRAME_F_CHECKSUM);
	cr_assert_eq(g.checksum, f.checksum);
	cr_assert_eq(shmring_pool_frame_verify(s, &g), 0);
	cr_assert_eq(memcmp(g.data, f.data, 5000), 0);
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	close_and_unlink(n.name, s, p);
}

/* Publish admits a subscriber and stores the entry's recipients before its position
 * word, so a subscriber polling the entry of frame 0 may see its bit there while the
 * position word still holds what creation left. Creation leaves every entry naming the
 * position a lap before its first frame's (nothing yet). A zeroed entry (a pool made
 * before that) would name frame 0 in buffer 0: take must wait for the tail, and then
 * take the real frame 0 in buffer 0, whose entry reads 0 too. */
Test(pool, frame_0_is_not_taken_before_its_entry_is_out)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-pos0", 4096, 4, 1, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	for (uint32_t i = 0; i <= p->log_mask; i++) {
		uint64_t lap_back = ((uint64_t)i - p->log_mask - 1u) & SHMRING_POOL_POS_MASK;
		cr_assert_eq(atomic_load(&p->log[i].pos_buf), lap_back << 16, "entry %u", i);
	}
	struct shmring_pool_entry *e = &p->log[0];
	_Atomic uint64_t *cursor = &s->subs[s->sub].cursor;
	struct shmring_pool_frame g;
	/* the publish, stopped where it has admitted us and named us in a zeroed entry */
	atomic_store(&e->pos_buf, 0);
	atomic_store(cursor, 0);
	atomic_store(&e->to, s->bit);
	int rc = shmring_pool_take(s, &g);
	cr_assert_eq(rc, -EAGAIN, "not out before its position word or the tail: %s",
		     shmring_strerror(rc));
	/* undone, and published for real: buffer 0 (the first loan's), position 0 */
	atomic_store(&e->to, 0);
	atomic_store(cursor, SHMRING_POOL_CURSOR_NONE);
	publish_now(p, 0, 4096, 1);
	cr_assert_eq(atomic_load(&e->pos_buf), 0, "frame 0 in buffer 0");
	take_expect(s, 0, 0, 4096);
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	close_and_unlink(n.name, s, p);
}

static void older_problem(void *arg, const struct shmring_dump_problem *pr)
{
	if (strcmp(pr->field, "flags") == 0 && strstr(pr->msg, "older library"))
		++*(int *)arg;
}

/* A pool made by a library before SHMRING_POOL_F_DESC has 16-byte log entries this
 * library cannot read: every attach is refused with -EPROTO, and shmdump says why. */
Test(pool, pool_of_an_older_library_is_refused)
{
	struct named_pool n;
	pool_name(&n, "pool-nodesc");
	struct shmring_pool_opts o = { .buf_size = 4096, .nbufs = 8, .max_subs = 2 };
	struct shmring_pool *p = NULL, *q = NULL;
	cr_assert_eq(shmring_pool_create(n.name, &o, NULL, &p), 0);
	struct shmring_hdr *h = shmring_seg_hdr(shmring_pool_seg(p));
	h->flags &= ~SHMRING_POOL_F_DESC;
	h->checksum = shmring_hdr_checksum(h);
	cr_assert_eq(shmring_pool_subscribe(n.name, NULL, &q), -EPROTO);
	cr_assert(strstr(shmring_last_error_detail(), "older library"), "%s",
		  shmring_last_error_detail());
	struct stat sb;
	cr_assert_eq(fstat(shmring_pool_fd(p), &sb), 0);
	int said = 0;
	cr_assert_geq(shmring_dump_check_buf(h, (size_t)sb.st_size, older_problem, &said), 1);
	cr_assert_eq(said, 1, "shmdump names the older library");
	h->flags |= SHMRING_POOL_F_DESC;
	h->checksum = shmring_hdr_checksum(h);
	cr_assert_eq(shmring_pool_subscribe(n.name, NULL, &q), 0);
	close_and_unlink(n.name, q, p);
}

/* Subscribers leave (finalizing their records) while the producer publishes without
 * pause, in both epoch modes (EPOCH in pool.h): the producer's plain odd store with the
 * leavers' membarrier(), where the kernel has it, and locked increments when
 * SHMRING_POOL_NO_MEMBARRIER is set. Nothing may be addressed to a record after it is
 * freed: at the end every buffer is free and no record is left LEAVING. */
static void leave_while_publishing(int membarrier_off)
{
	struct named_pool n;
	if (membarrier_off)
		setenv("SHMRING_POOL_NO_MEMBARRIER", "1", 1);
	else
		unsetenv("SHMRING_POOL_NO_MEMBARRIER");
	struct shmring_pool *p = make_pool(&n, "pool-fence", 4096, 8, 3, 1, 0);
	unsetenv("SHMRING_POOL_NO_MEMBARRIER");
	long q = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	uint64_t want = !membarrier_off && q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
			(q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(shmring_pool_seg(p));
	cr_assert_eq(atomic_load(&c->fence), want, "fence mode %llu, expected %llu",
		     (unsigned long long)atomic_load(&c->fence), (unsigned long long)want);
	cr_assert_eq(p->fence, (int)want);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		cr_assert_geq(kids[k], 0);
		if (kids[k] == 0) {
			/* each joins, takes a frame and leaves, 200 times; its drop-oldest policy
			 * never holds the producer up */
			int bad = 0;
			for (int i = 0; i < 200 && !bad; i++) {
				struct shmring_pool_sub_opts so = {.policy = SHMRING_POOL_DROP_OLDEST};
				struct shmring_pool *s = NULL;
				struct shmring_pool_frame g;
				if (shmring_pool_subscribe(n.name, &so, &s) != 0)
					bad = 1;
				else if (shmring_pool_take_wait(s, &g, WAIT_MS) != 0 ||
					 shmring_pool_release(s, &g) != 0)
					bad = 2;
				if (s && shmring_pool_close(s) != 0)
					bad = 3;
			}
			_exit(bad);
		}
	}
	close(fds[1]);
	/* publish until both leavers are done (their exit closes the pipe's write end) */
	struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
	uint64_t i = 0;
	while (poll(&pfd, 1, 0) == 0) {
		int rc = publish_one(p, i++, 4096);
		cr_assert_geq(rc, 0, "publish: %s", shmring_strerror(rc));
	}
	close(fds[0]);
	for (int k = 0; k < 2; k++) {
		int st;
		cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "leaver %d: status 0x%x", k, st);
	}
	cr_log_info("fence mode %llu: %llu frames published while 400 subscribers came and went",
		    (unsigned long long)want, (unsigned long long)i);
	cr_assert_eq(pool_stats(p).subscribers, 0, "no record left LEAVING");
	cr_assert_eq(atomic_load(&c->active), 0);
	cr_assert_eq(shmring_pool_free_count(p), 8, "nothing addressed to a freed record");
	close_and_unlink(n.name, p);
}

Test(pool, leaving_while_publishing_with_membarrier)
{
	leave_while_publishing(0);
}

Test(pool, leaving_while_publishing_with_locked_epochs)
{
	leave_while_publishing(1);
}

/* Make membarrier() fail with EPERM in this process, as a seccomp sandbox may. */
static int deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* A subscriber that cannot call membarrier() (a sandbox) while the producer relies on it
 * cannot finish leaving on its own: its close gives up as if the producer had stayed in
 * an epoch, leaving the record LEAVING with its references still counted, and the
 * producer's sweep (here shmring_pool_reclaim, every 100 ms on its own) finishes it. */
Test(pool, leaver_without_membarrier_is_finished_by_the_producer)
{
	struct named_pool n;
	unsetenv("SHMRING_POOL_NO_MEMBARRIER");
	struct shmring_pool *p = make_pool(&n, "pool-nomb", 4096, 8, 2, 1, 0);
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(shmring_pool_seg(p));
	if (atomic_load(&c->fence) == 0)
		cr_skip_test("this kernel has no membarrier(GLOBAL_EXPEDITED): nothing to fall back from");
	int up[2], go[2];
	cr_assert_eq(pipe(up), 0);
	cr_assert_eq(pipe(go), 0);
	pid_t kid = fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		char ch = 0;
		if (deny_membarrier() != 0)
			_exit(10);
		struct shmring_pool *s = NULL;
		struct shmring_pool_frame g;
		if (shmring_pool_subscribe(n.name, NULL, &s) != 0)
			_exit(11);
		if (write(up[1], &ch, 1) != 1 || read(go[0], &ch, 1) != 1)
			_exit(12);
		/* one frame taken and released, one left queued for close to drop */
		if (shmring_pool_take(s, &g) != 0 || shmring_pool_release(s, &g) != 0)
			_exit(13);
		_exit(shmring_pool_close(s) == 0 ? 0 : 14);
	}
	char ch;
	cr_assert_eq(read(up[0], &ch, 1), 1);
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	cr_assert_eq(publish_one(p, 1, 4096), 1);
	cr_assert_eq(write(go[1], &ch, 1), 1);
	int st;
	cr_assert_eq(waitpid(kid, &st, 0), kid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "leaver: status 0x%x", st);
	cr_assert_eq(pool_stats(p).subscribers, 1, "left LEAVING");
	cr_assert_eq(shmring_pool_free_count(p), 7, "its queued frame still pinned");
	cr_assert_eq(shmring_pool_reclaim(p), 1);
	cr_assert_eq(pool_stats(p).subscribers, 0);
	cr_assert_eq(shmring_pool_free_count(p), 8, "every buffer back");
	cr_assert_eq(atomic_load(&c->active), 0);
	cr_assert_eq(atomic_load(&hdr_stats(p)->abandoned), 0, "a clean leaver, not a dead one");
	close_and_unlink(n.name, p);
}

/* take_wait on an empty pool whose producer is alive (this process) is neither EOF nor a
 * hang: -ETIMEDOUT after the timeout, counted; the subscriber is intact afterwards. */
Test(pool, take_wait_times_out_on_an_empty_pool)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-tmo", 4096, 8, 2, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame g;
	uint64_t timeouts = atomic_load(&hdr_stats(p)->timeouts);
	uint64_t t0 = shmring_now_ns();
	cr_assert_eq(shmring_pool_take_wait(s, &g, 20), -ETIMEDOUT);
	uint64_t waited = shmring_now_ns() - t0;
	cr_log_info("pool take_wait(20 ms) on an empty pool: -ETIMEDOUT after %.1f ms",
		    (double)waited / 1e6);
	cr_assert_geq(waited, UINT64_C(20000000), "waited the timeout (%.1f ms)", (double)waited / 1e6);
	cr_assert_lt(waited, UINT64_C(1020000000), "and returned soon after (%.1f ms)",
		     (double)waited / 1e6);
	cr_assert_eq(atomic_load(&hdr_stats(p)->timeouts), timeouts + 1);
	cr_assert_eq(sub_stats(s).frames, 0);
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	take_expect(s, WAIT_MS, 0, 4096);
	close_and_unlink(n.name, s, p);
}

Test(pool, producer_close_is_end_of_stream)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-eof", 4096, 8, 2, 1, 0);
	struct shmring_pool *p2;
	cr_assert_eq(shmring_pool_open_producer(n.name, &p2), -EBUSY);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	publish_n(p, 3, 4096, 1);
	struct shmring_pool_frame f, g;
	cr_assert_eq(shmring_pool_loan(p, &f), 0); /* close gives it back */
	cr_assert_eq(shmring_pool_producer_alive(s), 1);
	cr_assert_eq(shmring_pool_producer_closed(s), 0);
	shmring_pool_close(p);
	cr_assert_eq(shmring_pool_producer_alive(s), 0);
	cr_assert_eq(shmring_pool_producer_closed(s), 1, "a close is a close");
	for (uint64_t i = 0; i < 3; i++)
		take_expect(s, WAIT_MS, i, 0);
	cr_assert_eq(shmring_pool_take(s, &g), -EPIPE);
	cr_assert_eq(shmring_pool_take_wait(s, &g, WAIT_MS), -EPIPE);
	/* a new producer continues the stream */
	p2 = reopen_producer(n.name);
	cr_assert_eq(shmring_pool_free_count(p2), 8);
	cr_assert_eq(publish_one(p2, 3, 4096), 1);
	take_expect(s, 0, 3, 0);
	close_and_unlink(n.name, s, p2);
}

/* A subscriber looping on timeouts shorter than SHMRING_PEER_CHECK_MS never ends a
 * sleep slice before its deadline: the check of the producer must also run at the
 * deadline once the handle's last check is that old. Every call lasts at least its
 * timeout, so 20 ms / 5 ms + 1 calls are enough; 20 are allowed. (Before: one check
 * per 1,024 empty polls, a few hundred calls.) */
static int publish_one_and_die(void *a)
{
	const char *name = a;
	struct shmring_pool *p;
	if (shmring_pool_open_producer(name, &p) != 0)
		return 10;
	if (publish_one(p, 0, 4096) != 1)
		return 11;
	raise(SIGKILL);
	return 12;
}

Test(pool, short_timeouts_still_see_the_producer_die, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-short", 4096, 8, 2, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	shmring_pool_close(p); /* the child is the producer */
	cr_assert_eq(tu_wait(tu_fork(publish_one_and_die, n.name)), -SIGKILL);
	shmring_pool_set_spin(s, 0);
	struct shmring_pool_frame g;
	int rc = -ETIMEDOUT, calls = 0;
	for (; rc == -ETIMEDOUT && calls < 20; calls++)
		rc = shmring_pool_take_wait(s, &g, 5);
	cr_assert_eq(rc, 0, "what it published comes first (%s)", shmring_strerror(rc));
	cr_assert_eq(shmring_pool_release(s, &g), 0);
	rc = -ETIMEDOUT;
	for (calls = 0; rc == -ETIMEDOUT && calls < 20; calls++)
		rc = shmring_pool_take_wait(s, &g, 5);
	cr_assert_eq(rc, -EPIPE, "after %d calls: %s", calls, shmring_strerror(rc));
	close_and_unlink(n.name, s);
}

Test(pool, subscriber_limit)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-limit", 4096, 8, 2, 1, 0);
	struct shmring_pool *a = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool *b = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	struct shmring_pool *c;
	cr_assert_eq(shmring_pool_subscribe(n.name, NULL, &c), -EUSERS);
	shmring_pool_close(a);
	c = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(pool_stats(p).subscribers, 2);
	shmring_pool_close(b);
	shmring_pool_close(c);
	cr_assert_eq(pool_stats(p).subscribers, 0);
	close_and_unlink(n.name, p);
}

Test(pool, corrupt_control_region_is_eproto)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-corrupt", 4096, 8, 2, 1, 0);
	struct shmring_seg *keep; /* keeps the mapping after the pool handles close */
	cr_assert_eq(shmring_seg_open(n.name, SHMRING_KIND_POOL, 0, &keep), 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_frame f, g;
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(keep);
	struct shmring_pool_geo geo = pool_geo(shmring_pool_seg(p));
	struct shmring_pool_entry *log = (void *)((uint8_t *)c + geo.log_off);
	/* a log entry naming a buffer that does not exist */
	uint64_t saved = atomic_load(&log[0].pos_buf);
	atomic_store(&log[0].pos_buf, (UINT64_C(0) << 16) | 900);
	cr_assert_eq(shmring_pool_take(s, &g), -EPROTO);
	cr_assert_eq(shmring_pool_take(s, &g), -EPROTO, "sticky");
	atomic_store(&log[0].pos_buf, saved);
	shmring_pool_close(s);
	/* a descriptor longer than the buffer */
	s = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(publish_one(p, 1, 4096), 1);
	atomic_store(&log[1].len, 4097);
	cr_assert_eq(shmring_pool_take(s, &g), -EPROTO);
	shmring_pool_close(s);
	/* a cursor far beyond the tail */
	s = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(publish_one(p, 2, 4096), 1);
	struct shmring_pool_sub *subs = (void *)((uint8_t *)c + geo.subs_off);
	atomic_store(&subs[sub_stats(s).index].cursor, UINT64_C(5000) << 16);
	cr_assert_eq(shmring_pool_take(s, &g), -EPROTO);
	/* the producer checks cursors too, when it reads them: for a block subscriber it
	 * admitted, once its bound on the cursor says the queue (depth 6) may be full */
	int rc;
	unsigned loans = 0;
	while ((rc = shmring_pool_loan(p, &f)) == 0 && loans < 8) {
		fill_frame(&f, 3 + loans, 4096);
		cr_assert_eq(shmring_pool_publish(p, &f), 1);
		loans++;
	}
	cr_assert_eq(rc, -EPROTO, "loan after %u frames: %s", loans, shmring_strerror(rc));
	cr_assert_leq(loans, 6);
	shmring_pool_close(s);
	shmring_pool_close(p);
	/* an impossible owner word */
	atomic_store(&c->owner, UINT64_C(77));
	struct shmring_pool *p2;
	cr_assert_eq(shmring_pool_open_producer(n.name, &p2), -EPROTO);
	shmring_seg_close(keep);
	shmring_seg_unlink(n.name);
}

/* A log entry (forged) naming a buffer the subscriber holds already: a second copy of
 * it would count twice in held, and the second release fails, so one of its max_held
 * places would be gone for good. */
Test(pool, a_log_entry_naming_a_buffer_we_hold_is_eproto)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-dupbuf", 4096, 8, 1, 2, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(shmring_pool_seg(p));
	struct shmring_pool_geo geo = pool_geo(shmring_pool_seg(p));
	struct shmring_pool_entry *log = (void *)((uint8_t *)c + geo.log_off);
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	cr_assert_eq(publish_one(p, 1, 4096), 1);
	struct shmring_pool_frame g0, g1;
	cr_assert_eq(shmring_pool_take(s, &g0), 0);
	uint64_t b0 = atomic_load(&log[0].pos_buf) & 0xffffu;
	atomic_store(&log[1].pos_buf, (UINT64_C(1) << 16) | b0);
	cr_assert_eq(shmring_pool_take(s, &g1), -EPROTO);
	close_and_unlink(n.name, s, p);
}

/* ---- across processes ---- */

struct sub_result {
	uint64_t frames, drops, stalls, first_seq, last_seq;
	uint64_t bad_order, bad_data, bad_csum;
	int64_t end_rc;
};

struct sub_args {
	const char *name;
	uint32_t policy;
	int slow;
	size_t len;
	struct sig ready;
	int out_fd;
};

static int sub_main(void *a)
{
	child_init();
	struct sub_args *sa = a;
	struct shmring_pool *p = child_subscribe(sa->name, sa->policy);
	if (!p)
		return 10;
	sig_send(&sa->ready);
	struct sub_result r = { .first_seq = UINT64_MAX };
	for (;;) {
		struct shmring_pool_frame f;
		int rc = shmring_pool_take_wait(p, &f, WAIT_MS);
		if (rc) {
			r.end_rc = rc;
			break;
		}
		if (r.first_seq == UINT64_MAX)
			r.first_seq = f.seq;
		else if (f.seq <= r.last_seq || (sa->policy == SHMRING_POOL_BLOCK && f.seq != r.last_seq + 1))
			r.bad_order++;
		r.last_seq = f.seq;
		/* the whole frame's checksum on every 8th frame (it costs 0.3 ms at 1080p),
		 * the sampled regions on every frame */
		if (f.seq % 8 == 0 && shmring_pool_frame_verify(p, &f) != 0)
			r.bad_csum++;
		if (!check_frame(&f, sa->len))
			r.bad_data++;
		/* the slow reader is slow by work, not by sleeping: it checks every frame's
		 * checksum, 4 times over */
		for (int k = 0; sa->slow && k < 4; k++)
			r.bad_csum += shmring_pool_frame_verify(p, &f) != 0;
		if (shmring_pool_release(p, &f) != 0)
			r.bad_data++;
		r.frames++;
	}
	struct shmring_pool_sub_stats st;
	shmring_pool_sub_stats(p, &st);
	r.drops = st.drops;
	r.stalls = st.stalls;
	if (write(sa->out_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		return 11;
	shmring_pool_close(p);
	return 0;
}

Test(pool, one_producer_three_subscribers_1080p, .timeout = 240)
{
	struct named_pool n;
	const uint64_t frames = tu_scaled(10000, 300);
	/* 8 buffers, up to 4 subscribers holding 1 each: block queue depth 4 */
	struct shmring_pool *p = make_pool(&n, "pool-3sub", FRAME_1080P, 8, 4, 1,
					   SHMRING_POOL_F_CHECKSUM);
	const uint32_t pol[3] = { SHMRING_POOL_BLOCK, SHMRING_POOL_BLOCK, SHMRING_POOL_DROP_OLDEST };
	struct sub_args args[3];
	int out[3][2];
	pid_t pid[3];
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(pipe(out[i]), 0);
		args[i] = (struct sub_args){ .name = n.name, .policy = pol[i], .slow = i == 2,
					     .len = FRAME_1080P, .out_fd = out[i][1] };
		pid[i] = fork_signalling(sub_main, &args[i], &args[i].ready, NULL);
		close(out[i][1]);
		cr_assert(sig_wait(&args[i].ready), "subscriber %d did not attach", i);
	}
	publish_n(p, frames, FRAME_1080P, 3);
	struct shmring_pool_stats ps = pool_stats(p);
	cr_assert_eq(ps.published, frames);
	cr_assert_eq(ps.nobuf_stalls, 0, "the producer never waited for a buffer");
	shmring_pool_close(p); /* end of stream */

	struct sub_result r[3];
	for (int i = 0; i < 3; i++) {
		ssize_t got = read(out[i][0], &r[i], sizeof(r[i]));
		close(out[i][0]);
		int st = tu_wait(pid[i]);
		cr_assert_eq(st, 0, "subscriber %d exited with %d", i, st);
		cr_assert_eq(got, (ssize_t)sizeof(r[i]), "sub %d: read %zd (%s)", i, got, strerror(errno));
		sig_close(&args[i].ready);
		cr_assert_eq(r[i].end_rc, -EPIPE, "sub %d ended with %s", i, shmring_strerror((int)r[i].end_rc));
		cr_assert_eq(r[i].bad_order, 0, "sub %d", i);
		cr_assert_eq(r[i].bad_data, 0, "sub %d", i);
		cr_assert_eq(r[i].bad_csum, 0, "sub %d", i);
		cr_assert_eq(r[i].frames + r[i].drops, frames, "sub %d: every frame taken or dropped", i);
	}
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(r[i].frames, frames, "block subscriber %d saw every frame", i);
		cr_assert_eq(r[i].first_seq, 0);
		cr_assert_eq(r[i].last_seq, frames - 1);
		cr_assert_eq(r[i].drops, 0);
	}
	cr_assert_gt(r[2].drops, 0, "the slow subscriber lost frames (it hashes each 4 times)");
	/* Why these counters are the whole story: a loan waits (returns -EAGAIN inside
	 * loan_wait) in exactly two cases (loan_in_epoch in src/pool.c). (1) A block
	 * subscriber has queue_depth frames queued: counted in that subscriber's stalls and
	 * in block_stalls; the slow one is drop-oldest, so never this cause. (2) No buffer is
	 * free and none can be freed by dropping drop-oldest queues: counted in nobuf_stalls
	 * (asserted 0 above) and in the stalls of every subscriber holding a taken frame at
	 * that moment. Frames queued for the slow subscriber are droppable, so the only way
	 * it could hold up a loan is by the frames it has taken, which is (2): both
	 * nobuf_stalls == 0 and its stalls == 0 exclude it. (It does compete for the CPU;
	 * that slows the producer on a loaded machine but is not a wait on the subscriber.) */
	cr_assert_eq(r[2].stalls, 0, "the producer never waited for the slow subscriber");
	struct shmring_pool *p2 = reopen_producer(n.name);
	cr_assert_eq(atomic_load(&hdr_stats(p2)->drops), r[2].drops);
	cr_assert_eq(shmring_pool_free_count(p2), 8);
	close_and_unlink(n.name, p2);
}

/* A subscriber that takes `take` frames, signals, and waits to be killed. */
struct holder_args {
	const char *name;
	uint32_t policy;
	int take;
	struct sig attached, holding;
};

static int holder_main(void *a)
{
	child_init();
	struct holder_args *ha = a;
	struct shmring_pool *p = child_subscribe(ha->name, ha->policy);
	if (!p)
		return 10;
	sig_send(&ha->attached);
	for (int i = 0; i < ha->take; i++) {
		struct shmring_pool_frame f;
		if (shmring_pool_take_wait(p, &f, WAIT_MS) != 0)
			return 11;
	}
	sig_send(&ha->holding);
	for (;;)
		pause(); /* until SIGKILL */
}

/* A producer that publishes `publish` frames, loans one more, signals, waits. */
struct loaner_args {
	const char *name;
	int publish;
	struct sig holding;
};

static int loaner_main(void *a)
{
	child_init();
	struct loaner_args *la = a;
	struct shmring_pool *p;
	if (shmring_pool_open_producer(la->name, &p) != 0)
		return 10;
	for (int i = 0; i < la->publish; i++)
		if (publish_one(p, (uint64_t)i, 4096) < 0)
			return 11;
	struct shmring_pool_frame f;
	if (shmring_pool_loan(p, &f) != 0)
		return 12;
	sig_send(&la->holding);
	for (;;)
		pause(); /* until SIGKILL */
}

static pid_t start_holder(struct holder_args *ha)
{
	pid_t pid = fork_signalling(holder_main, ha, &ha->attached, &ha->holding);
	cr_assert(sig_wait(&ha->attached));
	return pid;
}

static pid_t start_loaner(struct loaner_args *la)
{
	return fork_signalling(loaner_main, la, &la->holding, NULL);
}

static void kill_and_reap(pid_t pid)
{
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(tu_wait(pid), -SIGKILL);
}

Test(pool, sigkill_subscriber_and_producer_holding_buffers, .timeout = 60)
{
	struct named_pool n;
	pool_name(&n, "pool-kill");
	/* 12 buffers, 4 subscribers holding up to 2: queue depth 4 */
	struct shmring_pool_opts o = { .buf_size = 4096, .nbufs = 12, .max_subs = 4, .max_held = 2 };
	struct shmring_pool_sub_opts so = { .policy = SHMRING_POOL_DROP_OLDEST };
	struct shmring_pool *p;
	/* created by a subscriber that leaves: no producer yet (not end of stream) */
	cr_assert_eq(shmring_pool_create(n.name, &o, &so, &p), 0);
	shmring_pool_close(p);
	struct holder_args ha = { .name = n.name, .policy = SHMRING_POOL_BLOCK, .take = 2 };
	pid_t sub = start_holder(&ha);
	struct loaner_args la = { .name = n.name, .publish = 3 };
	pid_t prod = start_loaner(&la);
	cr_assert(sig_wait(&ha.holding), "subscriber took its frames");
	cr_assert(sig_wait(&la.holding), "producer holds its loan");

	struct shmring_pool *obs = sub_open(n.name, SHMRING_POOL_DROP_OLDEST); /* to count */
	cr_assert_eq(shmring_pool_free_count(obs), 12 - 4, "2 taken + 1 queued + 1 loaned");
	kill_and_reap(sub);
	kill_and_reap(prod);
	shmring_pool_close(obs);

	/* a replacement producer reclaims both */
	struct shmring_pool *p2 = reopen_producer(n.name);
	cr_assert_eq(shmring_pool_free_count(p2), 12);
	struct shmring_pool_stats ps = pool_stats(p2);
	cr_assert_eq(ps.subscribers, 0);
	cr_assert_eq(ps.loaned_bufs, 0);
	cr_assert_eq(atomic_load(&hdr_stats(p2)->abandoned), 4, "3 references and the loan");
	unsigned live, dead;
	shmring_part_count(shmring_pool_seg(p2), 0, &live, &dead);
	cr_assert_eq(dead, 0, "the dead participants' slots were cleaned");
	cr_assert_eq(live, 1);
	/* and the pool works */
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	cr_assert_eq(publish_one(p2, 100, 4096), 1);
	take_expect(s, 0, 3, 0);
	close_and_unlink(n.name, s, p2);
}

/* A pool of 8 buffers of 4 KiB, 2 subscribers holding up to `held`, with a block
 * subscriber (returned) and a producer that published frames 0 to publish - 1, loaned
 * one more and was SIGKILLed holding it. */
static struct shmring_pool *dead_loaner_pool(struct named_pool *n, const char *tag,
					     uint32_t held, int publish)
{
	shmring_pool_close(make_pool(n, tag, 4096, 8, 2, held, 0));
	struct shmring_pool *s = sub_open(n->name, SHMRING_POOL_BLOCK);
	struct loaner_args la = { .name = n->name, .publish = publish };
	pid_t prod = start_loaner(&la);
	cr_assert(sig_wait(&la.holding));
	kill_and_reap(prod);
	return s;
}

Test(pool, subscriber_reclaims_dead_producers_loan, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *s = dead_loaner_pool(&n, "pool-deadprod", 1, 3);
	/* the frames it published are delivered, then end of stream */
	for (uint64_t i = 0; i < 3; i++)
		take_expect(s, WAIT_MS, i, 0);
	struct shmring_pool_frame g;
	cr_assert_eq(shmring_pool_take_wait(s, &g, WAIT_MS), -EPIPE);
	cr_assert_eq(shmring_pool_free_count(s), 8, "the subscriber returned the dead producer's loan");
	cr_assert_eq(shmring_pool_producer_closed(s), 0, "a death is not a close");
	/* the subscription outlives its producer: a replacement's frames follow */
	struct shmring_pool *p2 = reopen_producer(n.name);
	cr_assert_eq(shmring_pool_producer_closed(s), 0);
	cr_assert_eq(publish_one(p2, 3, 4096), 1);
	take_expect(s, 0, 3, 0);
	close_and_unlink(n.name, s, p2);
}

/* Take reads the entry at its cursor first, so a subscriber can take frame t while the
 * producer is between that entry's store and its tail store (preempted there, say).
 * Its next take finds an entry that settles nothing (zeroed here, as in a pool made
 * before entries started a lap back) and asks the tail, which is one behind its cursor:
 * nothing yet, not corruption. The window is held open by hand: publish, then put the
 * tail back. */
Test(pool, a_cursor_one_ahead_of_the_tail_is_nothing_yet)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-ahead", 4096, 8, 1, 1, 0);
	struct shmring_pool *s = sub_open(n.name, SHMRING_POOL_BLOCK);
	/* frame 1 (buffer 1): frame 0 in buffer 0 always waits for the tail (see
	 * frame_0_is_not_taken_before_its_entry_is_out) */
	publish_now(p, 0, 4096, 1);
	take_expect(s, 0, 0, 4096);
	publish_now(p, 1, 4096, 1);
	atomic_store(&p->ctrl->tail, 1); /* the tail store still to come */
	atomic_store(&p->log[2].pos_buf, 0);
	take_expect(s, 0, 1, 4096);
	struct shmring_pool_frame g;
	int rc = shmring_pool_take(s, &g);
	cr_assert_eq(rc, -EAGAIN, "%s", shmring_strerror(rc));
	struct shmring_pool_sub_stats st;
	cr_assert_eq(shmring_pool_sub_stats(s, &st), 0);
	cr_assert_eq(st.queued, 0);
	atomic_store(&p->ctrl->tail, 2); /* and there it is */
	cr_assert_eq(shmring_pool_take(s, &g), -EAGAIN);
	publish_now(p, 2, 4096, 1);
	take_expect(s, 0, 2, 4096);
	close_and_unlink(n.name, s, p);
}

/* A producer killed between its log entry and its tail store: take reads the entry
 * first, so a subscriber may hold that frame before anyone sees the producer dead. The
 * recovery must finish that publish (move the tail, drop the loan's bit), not free the
 * buffer under the holder. The child is killed while it holds a loan; the test then
 * writes what publish stores before the tail, in publish's order. */
Test(pool, recovery_finishes_a_publish_whose_entry_is_out, .timeout = 60)
{
	struct named_pool n;
	/* held 2: the subscriber holds the half-published frame while it sees the death */
	struct shmring_pool *s = dead_loaner_pool(&n, "pool-halfpub", 2, 3);
	uint64_t l = atomic_load(&s->ctrl->loan), lp = l >> 16;
	uint32_t b = (uint32_t)(l & 0xffffu) - 1u;
	cr_assert_eq(lp, 3, "the loan is for position 3");
	cr_assert_lt(b, 8);
	cr_assert_eq(atomic_load(&s->ctrl->tail), 3);
	struct shmring_pool_meta *m = &s->meta[b];
	struct shmring_pool_entry *e = &s->log[lp & s->log_mask];
	atomic_store(&m->seq, lp);
	atomic_store(&m->len, 4096);
	atomic_store(&m->state, SHMRING_POOL_LOANED | s->bit);
	atomic_store(&e->to, s->bit);
	atomic_store(&e->len, 4096);
	atomic_store(&e->pos_buf, (lp << 16) | b);

	for (uint64_t i = 0; i < 3; i++)
		take_expect(s, WAIT_MS, i, 0);
	struct shmring_pool_frame g, h;
	cr_assert_eq(shmring_pool_take(s, &g), 0, "the frame is seen through its entry");
	cr_assert_eq(g.seq, 3);
	cr_assert_eq(g.index, b);
	/* nothing more: the subscriber finds the producer dead and recovers */
	int rc = shmring_pool_take_wait(s, &h, WAIT_MS);
	cr_assert_eq(rc, -EPIPE, "%s: %s", shmring_strerror(rc), shmring_last_error_detail());
	cr_assert_eq(atomic_load(&s->ctrl->tail), 4, "the recovery moved the tail past it");
	cr_assert_eq(atomic_load(&m->state), s->bit, "the holder's reference alone");
	cr_assert_eq(shmring_pool_release(s, &g), 0, "the holder still had its reference");
	cr_assert_eq(shmring_pool_free_count(s), 8);
	cr_assert_eq(atomic_load(&hdr_stats(s)->abandoned), 0, "nothing was abandoned");
	close_and_unlink(n.name, s);
}

/* A producer killed in its first publish, after it admitted the subscriber and stored
 * the buffer's references, before the log entry: frame 0 in buffer 0 is not out, so
 * the recovery frees the buffer and moves nothing. Were the entry zeroed (as pools
 * were made before entries started a lap back), it would read as that very frame. */
Test(pool, recovery_returns_a_first_loan_whose_entry_is_not_out, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *s = dead_loaner_pool(&n, "pool-firstloan", 1, 0);
	uint64_t l = atomic_load(&s->ctrl->loan);
	cr_assert_eq(l, 1, "the loan is buffer 0 at position 0");
	struct shmring_pool_meta *m = &s->meta[0];
	atomic_store(&s->subs[s->sub].cursor, 0); /* admitted at position 0 */
	atomic_store(&m->state, SHMRING_POOL_LOANED | s->bit);
	struct shmring_pool_frame g;
	int rc = shmring_pool_take_wait(s, &g, WAIT_MS);
	cr_assert_eq(rc, -EPIPE, "%s: %s", shmring_strerror(rc), shmring_last_error_detail());
	cr_assert_eq(atomic_load(&s->ctrl->tail), 0, "nothing was published");
	cr_assert_eq(atomic_load(&m->state), 0, "the buffer is free again");
	cr_assert_eq(shmring_pool_free_count(s), 8);
	cr_assert_eq(atomic_load(&hdr_stats(s)->abandoned), 1, "the loan was abandoned");
	close_and_unlink(n.name, s);
}

/* A producer killed inside cancel (or close with a loan out), between its two stores:
 * cancel drops the buffer's LOANED bit first and clears the loan word second, so what
 * it leaves is a loan word naming a buffer it no longer holds, which recovery leaves
 * alone. (The other order would leave a LOANED buffer that no loan word names, out of
 * the pool for good.) The state is made by hand: a producer killed holding a loan,
 * then the first of cancel's stores. */
Test(pool, producer_killed_inside_cancel_leaks_no_buffer, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *s = dead_loaner_pool(&n, "pool-cancelkill", 1, 3);
	uint64_t l = atomic_load(&s->ctrl->loan);
	cr_assert_neq(l, 0, "it died holding a loan");
	uint32_t b = (uint32_t)(l & 0xffffu) - 1u;
	cr_assert_lt(b, 8);
	atomic_fetch_and(&s->meta[b].state, ~SHMRING_POOL_LOANED);
	for (uint64_t i = 0; i < 3; i++)
		take_expect(s, WAIT_MS, i, 0);
	struct shmring_pool_frame g;
	cr_assert_eq(shmring_pool_take_wait(s, &g, WAIT_MS), -EPIPE);
	cr_assert_eq(atomic_load(&s->ctrl->loan), 0, "recovery cleared the loan word");
	cr_assert_eq(shmring_pool_free_count(s), 8, "every buffer is free");
	cr_assert_eq(atomic_load(&hdr_stats(s)->abandoned), 0, "it had given the loan back");
	close_and_unlink(n.name, s);
}

/* max_subs 47 (allowed) with 47 live subscribers and a dead producer: all 48 participant
 * slots are taken, one of them by the dead. A replacement producer frees that slot and
 * joins (it got -EUSERS). */
Test(pool, dead_producer_replaced_while_every_subscriber_slot_is_taken, .timeout = 60)
{
	struct named_pool n;
	shmring_pool_close(make_pool(&n, "pool-full", 4096, 64, 47, 1, 0));
	struct loaner_args la = { .name = n.name, .publish = 0 };
	pid_t prod = start_loaner(&la);
	cr_assert(sig_wait(&la.holding));
	struct shmring_pool *subs[47];
	for (int i = 0; i < 47; i++)
		subs[i] = sub_open(n.name, SHMRING_POOL_DROP_OLDEST);
	kill_and_reap(prod);
	struct shmring_pool *p = reopen_producer(n.name);
	cr_assert_eq(shmring_pool_free_count(p), 64, "its loan came back too");
	cr_assert_eq(publish_one(p, 0, 4096), 47);
	for (int i = 0; i < 47; i++)
		shmring_pool_close(subs[i]);
	close_and_unlink(n.name, p);
}

Test(pool, running_producer_reclaims_dead_subscribers, .timeout = 60)
{
	struct named_pool n;
	/* 8 buffers, 2 subscribers holding 1: queue depth 6 */
	struct shmring_pool *p = make_pool(&n, "pool-deadsub", 4096, 8, 2, 1, 0);
	struct holder_args hb = { .name = n.name, .policy = SHMRING_POOL_BLOCK, .take = 1 };
	pid_t blk = start_holder(&hb);
	struct holder_args hd = { .name = n.name, .policy = SHMRING_POOL_DROP_OLDEST, .take = 1 };
	pid_t drp = start_holder(&hd);
	cr_assert_eq(publish_one(p, 0, 4096), 2);
	cr_assert(sig_wait(&hb.holding));
	cr_assert(sig_wait(&hd.holding));
	struct shmring_pool_frame f;
	int published = 1;
	while (shmring_pool_loan(p, &f) == 0) {
		fill_frame(&f, (uint64_t)published++, 4096);
		cr_assert_eq(shmring_pool_publish(p, &f), 2);
	}
	cr_assert_eq(published, 7, "the block subscriber's queue (6) is full");
	kill_and_reap(blk);
	/* the producer notices the dead block subscriber while it waits, and goes on */
	cr_assert_eq(shmring_pool_loan_wait(p, &f, WAIT_MS), 0);
	cr_assert_eq(shmring_pool_cancel(p, &f), 0);
	/* the drop-oldest one never blocked anything; reclaim it explicitly */
	kill_and_reap(drp);
	cr_assert_eq(shmring_pool_reclaim(p), 1);
	cr_assert_eq(shmring_pool_free_count(p), 8);
	cr_assert_eq(pool_stats(p).subscribers, 0);
	close_and_unlink(n.name, p);
}

/* A subscriber that forked a child (which never touches the pool) and died is reclaimed
 * while the child lives: the child inherits the subscriber's read-only mapping of the
 * buffers, which must not hold the description its participant lock is on. */
struct forking_sub_args {
	const char *name;
	int hold[2];
	struct sig attached;
	_Atomic int *grandchild; /* shared memory: the child tells the test its child's pid */
};

static int forking_sub_main(void *a)
{
	child_init();
	struct forking_sub_args *fa = a;
	struct shmring_pool *p = child_subscribe(fa->name, SHMRING_POOL_DROP_OLDEST);
	if (!p)
		return 10;
	pid_t g = tu_fork_idle_child(fa->hold);
	if (g < 0)
		return 11;
	*fa->grandchild = g;
	sig_send(&fa->attached);
	for (;;)
		pause(); /* until SIGKILL */
}

Test(pool, a_dead_subscribers_forked_child_does_not_keep_it_alive, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-forksub", 4096, 8, 2, 1, 0);
	_Atomic int *grandchild = mmap(NULL, sizeof(*grandchild), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(grandchild, MAP_FAILED);
	struct forking_sub_args fa = { .name = n.name, .grandchild = grandchild };
	cr_assert_eq(pipe(fa.hold), 0);
	pid_t pid = fork_signalling(forking_sub_main, &fa, &fa.attached, NULL);
	cr_assert(sig_wait(&fa.attached));
	kill_and_reap(pid);
	cr_assert_eq(kill(*grandchild, 0), 0, "the grandchild is still running");
	cr_assert_eq(shmring_pool_reclaim(p), 1, "the dead subscriber is reclaimed");
	close(fa.hold[1]);
	close(fa.hold[0]);
	munmap(grandchild, sizeof(*grandchild));
	close_and_unlink(n.name, p);
}

/* A finalizer gives up on a dead subscriber's record while the producer stays inside an
 * epoch (here: the epoch word held odd by the test while the producer is alive). The
 * record is left LEAVING_DEAD, so the finalizer that finishes later still counts what
 * the dead one held as abandoned (a plain LEAVING record would count nothing). */
Test(pool, dead_subscriber_counted_after_a_finalizer_gives_up, .timeout = 60)
{
	struct named_pool n;
	struct shmring_pool *p = make_pool(&n, "pool-giveup", 4096, 8, 2, 1, 0);
	struct holder_args hb = { .name = n.name, .policy = SHMRING_POOL_BLOCK, .take = 1 };
	pid_t blk = start_holder(&hb);
	cr_assert_eq(publish_one(p, 0, 4096), 1);
	cr_assert(sig_wait(&hb.holding), "subscriber took its frame");
	cr_assert_eq(publish_one(p, 1, 4096), 1, "one more queued for it");
	kill_and_reap(blk);
	struct shmring_pool_ctrl *c = shmring_seg_ctrl(shmring_pool_seg(p));
	struct shmring_pool_geo geo = pool_geo(shmring_pool_seg(p));
	struct shmring_pool_sub *subs = (void *)((uint8_t *)c + geo.subs_off);
	uint64_t e = atomic_load(&c->epoch);
	cr_assert_eq(e & 1, 0);
	atomic_store(&c->epoch, e + 1); /* "inside an epoch", and it never moves */
	cr_assert_eq(shmring_pool_reclaim(p), 0, "gave up after the handshake timeout");
	uint32_t rec = 2;
	for (uint32_t i = 0; i < 2; i++)
		if (SHMRING_POOL_ID_KIND(atomic_load(&subs[i].state)) != SHMRING_POOL_SUB_FREE)
			rec = i;
	cr_assert_lt(rec, 2);
	cr_assert_eq(atomic_load(&subs[rec].state), SHMRING_POOL_LEAVING_DEAD);
	cr_assert_eq(atomic_load(&hdr_stats(p)->abandoned), 0, "nothing dropped yet");
	atomic_store(&c->epoch, e + 2);
	cr_assert_eq(shmring_pool_reclaim(p), 1);
	cr_assert_eq(atomic_load(&subs[rec].state), SHMRING_POOL_ID(SHMRING_POOL_SUB_FREE, 0, 0));
	cr_assert_eq(atomic_load(&hdr_stats(p)->abandoned), 2, "the frame taken and the one queued");
	cr_assert_eq(shmring_pool_free_count(p), 8);
	close_and_unlink(n.name, p);
}

struct fd_args {
	int fd;
	struct sig ready;
};

static int fd_sub_main(void *a)
{
	child_init();
	struct fd_args *fa = a;
	struct shmring_pool *p;
	if (shmring_pool_subscribe_fd(fa->fd, NULL, &p) != 0)
		return 10;
	sig_send(&fa->ready);
	for (uint64_t i = 0;; i++) {
		struct shmring_pool_frame f;
		int rc = shmring_pool_take_wait(p, &f, WAIT_MS);
		if (rc == -EPIPE)
			return i == 5 ? 0 : 11;
		if (rc || f.seq != i || !check_frame(&f, 8192) || shmring_pool_release(p, &f))
			return 12;
	}
}

Test(pool, anonymous_pool_shared_by_descriptor, .timeout = 60)
{
	struct shmring_pool_opts o = { .buf_size = 8192, .nbufs = 4, .max_subs = 2 };
	struct shmring_pool *p;
	cr_assert_eq(shmring_pool_create(NULL, &o, NULL, &p), 0);
	/* our own descriptor for the child: the library closes its own in children */
	struct fd_args fa = { .fd = dup(shmring_pool_fd(p)) };
	cr_assert_geq(fa.fd, 0);
	pid_t pid = fork_signalling(fd_sub_main, &fa, &fa.ready, NULL);
	cr_assert(sig_wait(&fa.ready));
	publish_n(p, 5, 8192, 1);
	shmring_pool_close(p);
	cr_assert_eq(tu_wait(pid), 0);
	close(fa.fd);
	sig_close(&fa.ready);
}

/* ---- joining and leaving at any time ---- */

struct churn_args {
	const char *name;
	uint64_t seed;
	int rounds;
};

static int churn_main(void *a)
{
	child_init();
	struct churn_args *ca = a;
	uint64_t rng = ca->seed;
	for (int round = 0; round < ca->rounds; round++) {
		struct shmring_pool *p;
		struct shmring_pool_sub_opts so = {
			.policy = (tu_rand(&rng) & 1) ? SHMRING_POOL_BLOCK : SHMRING_POOL_DROP_OLDEST,
		};
		int rc = shmring_pool_subscribe(ca->name, &so, &p);
		if (rc == -EUSERS)
			continue; /* the others hold every record: try again */
		if (rc)
			return 10;
		int want = 1 + (int)(tu_rand(&rng) % 20), eof = 0;
		uint64_t last = UINT64_MAX;
		for (int i = 0; i < want; i++) {
			struct shmring_pool_frame f;
			rc = shmring_pool_take_wait(p, &f, WAIT_MS);
			if (rc == -EPIPE) {
				eof = 1;
				break;
			}
			if (rc)
				return 11;
			if (last != UINT64_MAX && f.seq <= last)
				return 12;
			if (so.policy == SHMRING_POOL_BLOCK && last != UINT64_MAX && f.seq != last + 1)
				return 13;
			if (!check_frame(&f, 4096))
				return 14;
			last = f.seq;
			if ((tu_rand(&rng) & 7) != 0) {
				if (shmring_pool_release(p, &f) != 0)
					return 15;
				continue;
			}
			/* sometimes leave while holding a frame: close releases it */
			struct shmring_pool_frame g;
			if (shmring_pool_take(p, &g) != -ENOBUFS)
				return 16; /* max_held is 1 */
			break;
		}
		shmring_pool_close(p);
		if (eof)
			break;
	}
	return 0;
}

Test(pool, subscribers_join_and_leave_at_any_time, .timeout = 120)
{
	struct named_pool n;
	/* 3 records for 4 churning processes: -EUSERS happens too */
	struct shmring_pool *p = make_pool(&n, "pool-churn", 4096, 8, 3, 1, 0);
	const uint64_t frames = tu_scaled(20000, 2000);
	struct churn_args ca[4];
	pid_t pid[4];
	for (int i = 0; i < 4; i++) {
		ca[i] = (struct churn_args){ .name = n.name, .seed = 1000 + (uint64_t)i, .rounds = 1 << 30 };
		pid[i] = tu_fork(churn_main, &ca[i]);
		cr_assert_gt(pid[i], 0);
	}
	uint64_t delivered = 0;
	for (uint64_t i = 0; i < frames; i++) {
		int rc = publish_one(p, i, 4096);
		cr_assert_geq(rc, 0, "frame %llu: %s", (unsigned long long)i, shmring_strerror(rc));
		delivered += (uint64_t)rc;
	}
	shmring_pool_close(p);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(tu_wait(pid[i]), 0, "churner %d", i);
	struct shmring_pool *p2 = reopen_producer(n.name);
	cr_assert_eq(shmring_pool_free_count(p2), 8, "every reference came back");
	cr_assert_eq(pool_stats(p2).subscribers, 0);
	cr_assert_gt(delivered, 0);
	close_and_unlink(n.name, p2);
}

/* ---- SIGKILL at arbitrary points ---- */

struct runner_args {
	const char *name;
	int role; /* 0 producer, 1 block reader, 2 slow drop-oldest reader, 3 churner */
	struct sig progress;
};

static int runner_main(void *a)
{
	child_init();
	struct runner_args *ra = a;
	struct shmring_pool *p;
	uint64_t rng = (uint64_t)getpid();
	if (ra->role == 0) {
		if (shmring_pool_open_producer(ra->name, &p) != 0)
			return 10;
		uint64_t seq = shmring_load_relaxed(&((struct shmring_pool_ctrl *)
						      shmring_seg_ctrl(shmring_pool_seg(p)))->tail);
		for (uint64_t i = 0;; i++) {
			struct shmring_pool_frame f;
			int rc = shmring_pool_loan_wait(p, &f, WAIT_MS);
			if (rc)
				return 11;
			fill_frame(&f, seq + i, 4096);
			if (shmring_pool_publish(p, &f) < 0)
				return 12;
			if (i == 20)
				sig_send(&ra->progress);
		}
	}
	for (uint64_t i = 0;; i++) {
		struct shmring_pool_sub_opts so = {
			.policy = ra->role == 1 ? SHMRING_POOL_BLOCK : SHMRING_POOL_DROP_OLDEST,
		};
		int rc = shmring_pool_subscribe(ra->name, &so, &p);
		if (rc)
			return 13;
		int n = ra->role == 3 ? (int)(tu_rand(&rng) % 8) : 1 << 30;
		for (int k = 0; k < n; k++) {
			struct shmring_pool_frame f;
			rc = shmring_pool_take_wait(p, &f, WAIT_MS);
			if (rc == -EPIPE) {
				k--; /* the producer was killed first: we are next */
				continue;
			}
			if (rc == -EPROTO)
				fprintf(stderr, "runner %d: %s\n", ra->role, shmring_last_error_detail());
			if (rc)
				return 100 + (-rc & 127);
			if (!check_frame(&f, 4096))
				return 15;
			for (int w = 0; ra->role == 2 && w < 200; w++)
				rng += shmring_pool_checksum(f.data, 4096);
			shmring_pool_release(p, &f);
			if (i == 0 && k == 20)
				sig_send(&ra->progress);
		}
		shmring_pool_close(p);
		if (i == 0)
			sig_send(&ra->progress);
	}
}

Test(pool, sigkill_at_arbitrary_points_leaks_nothing, .timeout = 180)
{
	struct named_pool n;
	/* 16 buffers, 4 subscribers holding 1: queue depth 12 */
	shmring_pool_close(make_pool(&n, "pool-chaos", 4096, 16, 4, 1, 0));
	const int rounds = (int)tu_scaled(30, 5);
	uint64_t rng = 42;
	for (int round = 0; round < rounds; round++) {
		struct runner_args ra[4];
		pid_t pid[4];
		/* the producer first: a subscriber that finds the stream closed gets -EPIPE;
		 * then wait until everybody is under way, and kill them in a random order */
		for (int i = 0; i < 4; i++) {
			ra[i] = (struct runner_args){ .name = n.name, .role = i };
			pid[i] = fork_signalling(runner_main, &ra[i], &ra[i].progress, NULL);
			if (i == 0 && !sig_wait(&ra[i].progress))
				cr_assert_fail("round %d producer stopped with status %d", round, tu_wait(pid[i]));
		}
		for (int i = 1; i < 4; i++) {
			if (sig_wait(&ra[i].progress))
				continue;
			int st = tu_wait(pid[i]);
			cr_assert_fail("round %d runner %d stopped with status %d", round, i, st);
		}
		int first = (int)(tu_rand(&rng) % 4);
		for (int k = 0; k < 4; k++)
			kill(pid[(first + k) % 4], SIGKILL);
		for (int i = 0; i < 4; i++) {
			int st = tu_wait(pid[i]);
			cr_assert_eq(st, -SIGKILL, "round %d runner %d exited with %d", round, i, st);
			sig_close(&ra[i].progress);
		}
		struct shmring_pool *p2;
		int rc = shmring_pool_open_producer(n.name, &p2);
		cr_assert_eq(rc, 0, "round %d: %s", round, shmring_strerror(rc));
		cr_assert_eq(shmring_pool_free_count(p2), 16, "round %d", round);
		struct shmring_pool_stats ps = pool_stats(p2);
		cr_assert_eq(ps.subscribers, 0, "round %d", round);
		cr_assert_eq(ps.loaned_bufs, 0, "round %d", round);
		/* the next round's producer starts from a clean close */
		shmring_pool_close(p2);
	}
	shmring_seg_unlink(n.name);
}

/* ---- threads in one process (also run under ThreadSanitizer, suite `threads`) ---- */

struct thr_sub {
	const char *name;
	uint32_t policy;
	int churn;              /* join and leave over and over */
	uint64_t frames, drops, stalls, errors, last;
	pthread_barrier_t *ready;
};

static void *thr_sub_main(void *a)
{
	struct thr_sub *ts = a;
	struct shmring_pool_sub_opts so = { .policy = ts->policy };
	struct shmring_pool *p;
	if (shmring_pool_subscribe(ts->name, &so, &p) != 0) {
		ts->errors++;
		pthread_barrier_wait(ts->ready);
		return NULL;
	}
	pthread_barrier_wait(ts->ready);
	uint64_t last = UINT64_MAX, rng = ts->policy;
	for (;;) {
		struct shmring_pool_frame f;
		int rc = shmring_pool_take_wait(p, &f, WAIT_MS);
		if (rc == -EPIPE)
			break;
		if (rc) {
			ts->errors++;
			break;
		}
		if (last != UINT64_MAX && (f.seq <= last ||
					   (ts->policy == SHMRING_POOL_BLOCK && !ts->churn && f.seq != last + 1)))
			ts->errors++;
		if (!check_frame(&f, 65536) || shmring_pool_frame_verify(p, &f) != 0)
			ts->errors++;
		for (int k = 0; ts->policy == SHMRING_POOL_DROP_OLDEST && k < 4; k++)
			ts->errors += shmring_pool_frame_verify(p, &f) != 0;
		last = f.seq;
		ts->last = f.seq;
		ts->frames++;
		if (shmring_pool_release(p, &f) != 0)
			ts->errors++;
		if (ts->churn && (tu_rand(&rng) & 15) == 0) {
			shmring_pool_close(p);
			if (shmring_pool_subscribe(ts->name, &so, &p) != 0) {
				ts->errors++;
				return NULL;
			}
			last = UINT64_MAX;
		}
	}
	struct shmring_pool_sub_stats st;
	shmring_pool_sub_stats(p, &st);
	ts->drops = st.drops;
	ts->stalls = st.stalls;
	shmring_pool_close(p);
	return NULL;
}

Test(pool, threads_producer_and_subscribers, .timeout = 300)
{
	struct named_pool n;
	/* 16 buffers, 4 subscribers holding 1: block queue depth 12 */
	struct shmring_pool *p = make_pool(&n, "pool-thr", 65536, 16, 4, 1,
					   SHMRING_POOL_F_CHECKSUM);
	const uint64_t frames = tu_scaled(20000, 500);
	pthread_barrier_t ready;
	pthread_barrier_init(&ready, NULL, 4);
	struct thr_sub ts[3] = {
		{ .name = n.name, .policy = SHMRING_POOL_BLOCK, .ready = &ready },
		{ .name = n.name, .policy = SHMRING_POOL_DROP_OLDEST, .ready = &ready },
		{ .name = n.name, .policy = SHMRING_POOL_BLOCK, .churn = 1, .ready = &ready },
	};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, thr_sub_main, &ts[i]), 0);
	pthread_barrier_wait(&ready);
	for (uint64_t i = 0; i < frames; i++) {
		int rc = publish_one(p, i, 65536);
		cr_assert_geq(rc, 2, "frame %llu: %s (%s)", (unsigned long long)i, shmring_strerror(rc),
			      shmring_last_error_detail());
	}
	cr_assert_eq(pool_stats(p).nobuf_stalls, 0);
	struct shmring_pool *keep = sub_open(n.name, SHMRING_POOL_DROP_OLDEST); /* to count after */
	shmring_pool_close(p);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(pthread_join(th[i], NULL), 0);
		cr_assert_eq(ts[i].errors, 0, "subscriber thread %d", i);
	}
	pthread_barrier_destroy(&ready);
	cr_assert_eq(ts[0].frames, frames, "the block subscriber saw every frame");
	cr_assert_eq(ts[1].frames + ts[1].drops, frames);
	cr_assert_eq(ts[1].stalls, 0, "the producer never waited for the drop-oldest one");
	cr_assert_gt(ts[2].frames, 0);
	cr_assert_eq(shmring_pool_free_count(keep), 16);
	close_and_unlink(n.name, keep);
}
