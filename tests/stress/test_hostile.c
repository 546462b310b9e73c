/* SPDX-License-Identifier: MIT */
/*
 * Hostile peers. For each channel kind: a legitimate writer process keeps producing, a
 * hostile process with write access scribbles random values over the header, the
 * indices, the record headers and the payloads of the live segment, and a reader
 * process keeps reading. The reader must never crash, never touch memory outside the
 * region a record belongs to (every pointer it is handed is checked; run this suite in
 * an ASan build too), never block past its timeout, and only ever see documented
 * errors: -EPROTO (then it reopens), or a record whose checksum it finds bad (the
 * pool's own checksum says so too). The legitimate writer must survive as well, and
 * shmdump show/check on the segment meanwhile must exit 0 or 1, never crash.
 *
 * Also: a peer truncating a segment under a reader. memfd segments are sealed against
 * it; for named segments the library cannot prevent it and the reader gets SIGBUS at
 * its next access past the new end: the test pins that down, and that a new attacher
 * and shmdump see the truncated file as not a (valid) segment instead of crashing.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "shmring/bcast.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/spsc.h"
#include "testutil.h"

extern char **environ;

#define CALL_MS 50
#define CALL_SLACK_MS 1000  /* a data-path call this far past its timeout hangs */
#define ATTACH_SLACK_MS 3000 /* open/close may wait for a peer (pool: 1-2 s handshakes) */

/* ---- messages: u64 xxh3 of the rest, u32 length, u32 0, payload ---- */

static void msg_make(uint8_t *p, size_t len, uint64_t seed)
{
	uint32_t l = (uint32_t)len, z = 0;
	memcpy(p + 8, &l, 4);
	memcpy(p + 12, &z, 4);
	tu_fill(p + 16, len - 16, seed);
	uint64_t h = XXH3_64bits(p + 8, len - 8);
	memcpy(p, &h, 8);
}

static int msg_ok(const uint8_t *p, size_t len)
{
	uint64_t h;
	uint32_t l;
	if (len < 16)
		return 0;
	memcpy(&h, p, 8);
	memcpy(&l, p + 8, 4);
	return l == len && XXH3_64bits(p + 8, len - 8) == h;
}

/* ---- what the reader saw (shared with the parent) ---- */

struct seen {
	_Atomic uint64_t good, bad, eproto, reopen_failed, calls, max_ms;
	_Atomic int broken;       /* a broken promise: what, below */
	char what[256];
};

static struct seen *seen_new(void)
{
	struct seen *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(s, MAP_FAILED);
	memset(s, 0, sizeof(*s));
	return s;
}

static void broken(struct seen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void broken(struct seen *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->what, sizeof(s->what), fmt, ap);
	va_end(ap);
	atomic_store(&s->broken, 1);
	_exit(1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The run's shared ledger, inherited by the forked writer, reader and scribbler. */
static struct seen *g_seen;

/* The processes of a run go on until `until`, and then, while the reader has reported
 * no corruption yet, up to EXTEND_MS more: on two busy CPUs the reader may not have run
 * enough to meet a scribble in the planned time. */
#define EXTEND_MS 8000
static int running(uint64_t until)
{
	uint64_t now = now_ms();
	if (now < until)
		return 1;
	const struct seen *s = g_seen;
	return s && now < until + EXTEND_MS &&
	       atomic_load(&s->eproto) + atomic_load(&s->bad) + atomic_load(&s->reopen_failed) == 0;
}

/* Milliseconds this thread has spent runnable but waiting for a CPU (schedstat's second
 * field), 0 where the kernel does not say. Five processes share two CPUs here: a reader
 * was seen waiting 250-680 ms for one inside a single call. */
static uint64_t runq_wait_ms(void)
{
	FILE *f = fopen("/proc/self/schedstat", "r");
	unsigned long long run = 0, wait = 0;
	if (f) {
		if (fscanf(f, "%llu %llu", &run, &wait) != 2)
			wait = 0;
		fclose(f);
	}
	return wait / 1000000u;
}

/* Time a call, less the time it waited for a CPU; a call past its limit is a hang. */
#define TIMED(s, limit_ms, expr)                                                          \
	({                                                                                \
		uint64_t t0_ = now_ms(), q0_ = runq_wait_ms();                            \
		int rc_ = (expr);                                                         \
		uint64_t q_ = runq_wait_ms() - q0_, w_ = now_ms() - t0_;                  \
		uint64_t d_ = w_ > q_ ? w_ - q_ : 0;                                      \
		atomic_fetch_add(&(s)->calls, 1);                                         \
		if (d_ > atomic_load(&(s)->max_ms))                                       \
			atomic_store(&(s)->max_ms, d_);                                   \
		if (d_ > (uint64_t)(limit_ms))                                            \
			broken(s, "%s took %llu ms (limit %d)", #expr, (unsigned long long)d_, \
			       (int)(limit_ms));                                          \
		rc_;                                                                      \
	})

static int inside(const void *p, uint64_t len, const void *base, uint64_t size)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
	return a >= b && a - b <= size && len <= size - (a - b);
}

/* ---- the hostile peer ---- */

static const uint64_t nasty[] = {
	0, ~UINT64_C(0), UINT64_C(1) << 31, UINT64_C(1) << 32, UINT64_C(1) << 48, UINT64_C(1) << 62,
	UINT64_C(1) << 63, 4096, 4088, 8, 0x7fffffff, 0xffffffff,
	UINT64_C(0x0001000000000000) | 4080, UINT64_C(0x0003000000000000) | 4088,
	UINT64_C(0x0001000000000000) | 0xfffffff8,
};

/*
 * Bursts of 1-8 writes, then a pause, so that the writer and the reader run between
 * them: mostly the control and data regions (indices, record headers, payloads), the
 * statistics and the participant table; now and then the immutable header, which is
 * put back a few bursts later (or nobody could ever attach again and the reader would
 * only test its open).
 */
static int scribbler(const char *name, uint64_t until_ms, uint64_t seed)
{
	struct shmring_seg *seg;
	int rc = shmring_seg_open(name, 0, SHMRING_O_NOREGISTRY, &seg);
	if (rc)
		return 2;
	uint8_t *b = seg->base;
	uint64_t orig[32];
	memcpy(orig, b, sizeof(orig));
	int restore_in = 0;
	uint64_t rng = seed;
	while (running(until_ms)) {
		unsigned n = 1 + (unsigned)(tu_rand(&rng) % 8);
		for (unsigned k = 0; k < n; k++) {
			uint64_t x = tu_rand(&rng);
			uint64_t lo = 0, len = seg->size;
			switch (x % 20) {
			case 0: lo = 0; len = 256; restore_in = 3; break;          /* immutable header */
			case 1: case 2: lo = 256; len = 768; break;               /* statistics */
			case 3: lo = SHMRING_PARTS_OFF; len = SHMRING_HDR_SIZE - SHMRING_PARTS_OFF; break;
			case 4: case 5: case 6: case 7: case 8: case 9:
				lo = seg->ctrl_off; len = seg->ctrl_size; break;
			default: lo = seg->data_off; len = seg->data_size; break;  /* headers, payloads */
			}
			uint64_t off = (lo + (x >> 8) % len) & ~(uint64_t)7;
			if (off + 8 > seg->size)
				continue;
			_Atomic uint64_t *w = (_Atomic uint64_t *)(void *)(b + off);
			uint64_t y = tu_rand(&rng), v;
			switch (y % 4) {
			case 0: v = nasty[(y >> 8) % (sizeof(nasty) / sizeof(nasty[0]))]; break;
			case 1: v = atomic_load_explicit(w, memory_order_relaxed) + (y >> 60) - 8; break;
			case 2: v = atomic_load_explicit(w, memory_order_relaxed) ^ (UINT64_C(1) << (y >> 58)); break;
			default: v = y; break;
			}
			atomic_store_explicit(w, v, memory_order_relaxed);
		}
		if (restore_in && --restore_in == 0)
			for (int i = 0; i < 32; i++)
				atomic_store_explicit((_Atomic uint64_t *)(void *)(b + 8 * i), orig[i],
						      memory_order_relaxed);
		/* the scribbler's cadence (random gaps, so the reader meets damage at varied
		 * points of its work), not a wait for anyone */
		struct timespec ts = { 0, 100000 + (long)(tu_rand(&rng) % 400000) };
		nanosleep(&ts, NULL);
	}
	shmring_seg_close(seg);
	return 0;
}

/* ---- per kind: creation, a legitimate writer, a reader under test ---- */

struct kind {
	const char *name;
	int (*create)(const char *name);
	void (*writer)(const char *name, uint64_t until_ms);
	void (*reader)(const char *name, uint64_t until_ms, struct seen *s);
};

/* Pacing only: the legitimate writer leaves the reader CPU time on 2 cores; nothing
 * waits for it. */
static void writer_pause(uint64_t i)
{
	if ((i & 15) == 15) {
		struct timespec ts = { 0, 50000 };
		nanosleep(&ts, NULL);
	}
}

/* SPSC */
static int spsc_create(const char *name)
{
	struct shmring_spsc_opts o = { .capacity = 1 << 14 };
	struct shmring_spsc *r;
	int rc = shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &r);
	if (rc == 0)
		shmring_spsc_detach(r);
	return rc;
}

static void spsc_writer(const char *name, uint64_t until)
{
	struct shmring_spsc *r = NULL;
	uint8_t buf[2048];
	uint64_t rng = 1;
	for (uint64_t i = 0; running(until); i++) {
		if (!r && shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &r) != 0) {
			r = NULL;
			continue;
		}
		size_t len = 16 + tu_rand(&rng) % 1000;
		msg_make(buf, len, i);
		int rc = shmring_spsc_send(r, buf, len, CALL_MS);
		if (rc == -EPROTO || rc == -EBADF) {
			shmring_spsc_detach(r);
			r = NULL;
		}
		writer_pause(i);
	}
	_exit(0);
}

static void spsc_reader(const char *name, uint64_t until, struct seen *s)
{
	struct shmring_spsc *r = NULL;
	while (running(until)) {
		if (!r) {
			int rc = TIMED(s, ATTACH_SLACK_MS, shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &r));
			if (rc) {
				r = NULL;
				atomic_fetch_add(&s->reopen_failed, 1);
				continue;
			}
		}
		struct shmring_seg *seg = shmring_spsc_seg(r);
		struct shmring_rec rec = { 0 };
		int rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_spsc_peek_wait(r, &rec, CALL_MS));
		if (rc == 0) {
			if (!inside(rec.data, rec.len, shmring_seg_data(seg), seg->data_size))
				broken(s, "spsc record [%p, +%u) outside the ring", rec.data, rec.len);
			if (msg_ok(rec.data, rec.len))
				atomic_fetch_add(&s->good, 1);
			else
				atomic_fetch_add(&s->bad, 1);
			shmring_spsc_release(r);
		} else if (rc == -EPROTO) {
			atomic_fetch_add(&s->eproto, 1);
			TIMED(s, ATTACH_SLACK_MS, (shmring_spsc_detach(r), 0));
			r = NULL;
		} else if (rc != -ETIMEDOUT && rc != -EPIPE && rc != -EAGAIN) {
			broken(s, "spsc peek_wait: undocumented %d", rc);
		}
	}
	_exit(0);
}

/* MPMC */
static int mpmc_create(const char *name)
{
	struct shmring_mpmc_opts o = { .capacity = 64, .slot_size = 512, .max_parts = 16 };
	struct shmring_mpmc *r;
	int rc = shmring_mpmc_create(name, &o, SHMRING_ROLE_NONE, &r);
	if (rc == 0)
		shmring_mpmc_close(r);
	return rc;
}

static void mpmc_writer(const char *name, uint64_t until)
{
	struct shmring_mpmc *r = NULL;
	uint8_t buf[512];
	uint64_t rng = 2;
	for (uint64_t i = 0; running(until); i++) {
		if (!r && shmring_mpmc_open(name, SHMRING_ROLE_PRODUCER, &r) != 0) {
			r = NULL;
			continue;
		}
		size_t len = 16 + tu_rand(&rng) % 496;
		msg_make(buf, len, i);
		int rc = shmring_mpmc_enqueue(r, buf, len, CALL_MS);
		if (rc == -EPROTO) {
			shmring_mpmc_close(r);
			r = NULL;
		}
		writer_pause(i);
	}
	_exit(0);
}

static void mpmc_reader(const char *name, uint64_t until, struct seen *s)
{
	struct shmring_mpmc *r = NULL;
	static uint8_t buf[512];
	for (uint64_t i = 0; running(until); i++) {
		if (!r) {
			int rc = TIMED(s, ATTACH_SLACK_MS, shmring_mpmc_open(name, SHMRING_ROLE_CONSUMER, &r));
			if (rc) {
				r = NULL;
				atomic_fetch_add(&s->reopen_failed, 1);
				continue;
			}
		}
		struct shmring_seg *seg = shmring_mpmc_seg(r);
		int rc;
		if (i & 1) {
			struct shmring_mpmc_msg m[4];
			rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_mpmc_dequeue_start(r, 4, 1, m, CALL_MS));
			for (int k = 0; k < rc; k++) {
				if (m[k].len > shmring_mpmc_slot_size(r) ||
				    !inside(m[k].data, m[k].len, shmring_seg_data(seg), seg->data_size))
					broken(s, "mpmc message [%p, +%u) outside its slot", m[k].data, m[k].len);
				atomic_fetch_add(msg_ok(m[k].data, m[k].len) ? &s->good : &s->bad, 1);
			}
			if (rc > 0) {
				shmring_mpmc_dequeue_finish(r);
				rc = 0;
			}
		} else {
			rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_mpmc_dequeue(r, buf, sizeof(buf), CALL_MS));
			if (rc >= 0) {
				if ((size_t)rc > sizeof(buf))
					broken(s, "mpmc dequeue copied %d bytes into %zu", rc, sizeof(buf));
				atomic_fetch_add(msg_ok(buf, (size_t)rc) ? &s->good : &s->bad, 1);
				rc = 0;
			}
		}
		if (rc == -EPROTO) {
			atomic_fetch_add(&s->eproto, 1);
			TIMED(s, ATTACH_SLACK_MS, (shmring_mpmc_close(r), 0));
			r = NULL;
		} else if (rc && rc != -ETIMEDOUT && rc != -EPIPE && rc != -EAGAIN && rc != -EMSGSIZE) {
			broken(s, "mpmc dequeue: undocumented %d", rc);
		}
	}
	_exit(0);
}

/* Pool */
static int pool_create(const char *name)
{
	struct shmring_pool_opts o = { .buf_size = 4096, .nbufs = 8, .max_subs = 4,
				       .flags = SHMRING_POOL_F_CHECKSUM };
	struct shmring_pool *p;
	int rc = shmring_pool_create(name, &o, NULL, &p);
	if (rc == 0)
		shmring_pool_close(p);
	return rc;
}

static void pool_writer(const char *name, uint64_t until)
{
	struct shmring_pool *p = NULL;
	uint64_t rng = 3;
	for (uint64_t i = 0; running(until); i++) {
		if (!p && shmring_pool_open_producer(name, &p) != 0) {
			p = NULL;
			continue;
		}
		struct shmring_pool_frame f;
		int rc = shmring_pool_loan_wait(p, &f, CALL_MS);
		if (rc == 0) {
			f.len = 16 + tu_rand(&rng) % 4000;
			msg_make(f.data, f.len, i);
			rc = shmring_pool_publish(p, &f);
		}
		if (rc == -EPROTO) {
			shmring_pool_close(p);
			p = NULL;
		}
		writer_pause(i);
	}
	_exit(0);
}

static void pool_reader(const char *name, uint64_t until, struct seen *s)
{
	struct shmring_pool *p = NULL;
	struct shmring_pool_sub_opts so = { .policy = SHMRING_POOL_DROP_OLDEST };
	while (running(until)) {
		if (!p) {
			int rc = TIMED(s, ATTACH_SLACK_MS, shmring_pool_subscribe(name, &so, &p));
			if (rc) {
				p = NULL;
				atomic_fetch_add(&s->reopen_failed, 1);
				continue;
			}
		}
		struct shmring_pool_frame f;
		int rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_pool_take_wait(p, &f, CALL_MS));
		if (rc == 0) {
			if (f.index >= p->nbufs || f.len > f.capacity ||
			    !inside(f.data, f.len, p->rodata, p->data_size))
				broken(s, "pool frame %u [%p, +%llu) outside the buffers", f.index, f.data,
				       (unsigned long long)f.len);
			/* -ENODATA: the frame's "has a checksum" flag is in shared memory, so a
			 * hostile peer can clear it (see README: hardening suggestion) */
			int v = shmring_pool_frame_verify(p, &f);
			if (v != 0 && v != -EBADMSG && v != -ENODATA)
				broken(s, "pool frame_verify: undocumented %d", v);
			if (msg_ok(f.data, (size_t)f.len) && v == 0)
				atomic_fetch_add(&s->good, 1);
			else
				atomic_fetch_add(&s->bad, 1);
			rc = shmring_pool_release(p, &f);
		}
		if (rc == -EPROTO) {
			atomic_fetch_add(&s->eproto, 1);
			TIMED(s, ATTACH_SLACK_MS, shmring_pool_close(p));
			p = NULL;
		} else if (rc && rc != -ETIMEDOUT && rc != -EPIPE && rc != -EAGAIN && rc != -ENOBUFS) {
			broken(s, "pool take: undocumented %d", rc);
		}
	}
	_exit(0);
}

/* Broadcast */
static int bcast_create(const char *name)
{
	struct shmring_bcast_opts o = { .slots = 16, .slot_size = 2048 };
	struct shmring_bcast *w;
	int rc = shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &w);
	if (rc == 0)
		shmring_bcast_close(w);
	return rc;
}

static void bcast_writer(const char *name, uint64_t until)
{
	struct shmring_bcast *w = NULL;
	uint8_t buf[2048];
	uint64_t rng = 4;
	for (uint64_t i = 0; running(until); i++) {
		if (!w && shmring_bcast_open(name, SHMRING_ROLE_PRODUCER, 0, &w) != 0) {
			w = NULL;
			continue;
		}
		size_t len = 16 + tu_rand(&rng) % 2000;
		msg_make(buf, len, i);
		if (shmring_bcast_publish(w, buf, len) == -EPROTO) {
			shmring_bcast_close(w);
			w = NULL;
		}
		writer_pause(i);
	}
	_exit(0);
}

static void bcast_reader(const char *name, uint64_t until, struct seen *s)
{
	struct shmring_bcast *b = NULL;
	static uint8_t buf[2048];
	for (uint64_t i = 0; running(until); i++) {
		if (!b) {
			int rc = TIMED(s, ATTACH_SLACK_MS, shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &b));
			if (rc) {
				b = NULL;
				atomic_fetch_add(&s->reopen_failed, 1);
				continue;
			}
		}
		struct shmring_seg *seg = shmring_bcast_seg(b);
		struct shmring_bcast_rec rec;
		memset(&rec, 0, sizeof(rec));
		int rc;
		if (i & 1) {
			rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_bcast_peek_wait(b, &rec, CALL_MS));
			if (rc == 0) {
				if (!inside(rec.data, rec.len, shmring_seg_data(seg), seg->data_size))
					broken(s, "bcast peek [%p, +%zu) outside the slots", rec.data, rec.len);
				int ok = msg_ok(rec.data, rec.len);
				rc = shmring_bcast_release(b);
				if (rc == 0)
					atomic_fetch_add(ok ? &s->good : &s->bad, 1);
				else if (rc == -ESTALE)
					rc = 0;
			}
		} else {
			rc = TIMED(s, CALL_MS + CALL_SLACK_MS, shmring_bcast_read_wait(b, buf, sizeof(buf), &rec, CALL_MS));
			if (rc >= 0) {
				atomic_fetch_add(msg_ok(buf, (size_t)rc) ? &s->good : &s->bad, 1);
				rc = 0;
			}
		}
		if (rc == -EPROTO) {
			atomic_fetch_add(&s->eproto, 1);
			TIMED(s, ATTACH_SLACK_MS, shmring_bcast_close(b));
			b = NULL;
		} else if (rc && rc != -ETIMEDOUT && rc != -EPIPE && rc != -EAGAIN && rc != -EMSGSIZE) {
			broken(s, "bcast read: undocumented %d", rc);
		}
	}
	_exit(0);
}

/* ---- the driver ---- */

struct wargs {
	const struct kind *k;
	const char *name;
	uint64_t until;
	struct seen *s;
	uint64_t seed;
};

static int run_writer(void *a)
{
	struct wargs *w = a;
	w->k->writer(w->name, w->until);
	return 0;
}

static int run_reader(void *a)
{
	struct wargs *w = a;
	w->k->reader(w->name, w->until, w->s);
	return 0;
}

static int run_scribbler(void *a)
{
	struct wargs *w = a;
	return scribbler(w->name, w->until, w->seed);
}

/* shmdump show/check on the scribbled segment: exits 0 or 1, never crashes. */
static void shmdump_once(const char *name, const char *cmd, int *runs)
{
	const char *dump = getenv("SHMRING_SHMDUMP");
	if (!dump || access(dump, X_OK) != 0)
		return;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	char *argv[] = { (char *)dump, (char *)cmd, (char *)name, NULL };
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, dump, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) <= 1, "shmdump %s on a scribbled segment: status 0x%x",
		  cmd, st);
	(*runs)++;
}

static void hostile_run(const struct kind *k)
{
	char name[96];
	tu_name(name, sizeof(name), k->name);
	cr_assert_eq(k->create(name), 0, "create %s", k->name);
	struct seen *s = seen_new();
	g_seen = s;
	/* long enough for the scribbler to hit what each reader must notice, even in the
	 * scaled-down sanitizer runs */
	uint64_t dur = tu_scaled(1500, 1000);
	struct wargs wa = { k, name, now_ms() + dur + 200, s, 0 };
	struct wargs ra = wa, sa = wa;
	ra.until = now_ms() + dur;
	sa.until = now_ms() + dur;
	sa.seed = (uint64_t)getpid() * 7919u;
	pid_t w = tu_fork(run_writer, &wa);
	pid_t r = tu_fork(run_reader, &ra);
	pid_t x = tu_fork(run_scribbler, &sa);
	int dumps = 0;
	const char *dump = getenv("SHMRING_SHMDUMP");
	while (dump && running(sa.until)) {
		shmdump_once(name, "show", &dumps);
		shmdump_once(name, "check", &dumps);
	}
	int rs = tu_wait(r);
	int xs = tu_wait(x);
	int ws = tu_wait(w);
	shmring_seg_unlink(name);
	cr_assert(!atomic_load(&s->broken), "%s reader: %s", k->name, s->what);
	cr_assert_eq(rs, 0, "%s reader ended with %d (negative: killed by that signal)", k->name, rs);
	cr_assert_eq(xs, 0, "scribbler ended with %d", xs);
	cr_assert_eq(ws, 0, "%s legitimate writer ended with %d (negative: signal)", k->name, ws);
	cr_log_info("%s: %llu good records, %llu bad, %llu -EPROTO, %llu failed reopens, %llu calls "
		    "(longest %llu ms), %d shmdump runs",
		    k->name, (unsigned long long)s->good, (unsigned long long)s->bad,
		    (unsigned long long)s->eproto, (unsigned long long)s->reopen_failed,
		    (unsigned long long)s->calls, (unsigned long long)s->max_ms, dumps);
	/* the scribbles were seen: corruption reported, not silently absorbed */
	cr_expect(s->eproto + s->bad + s->reopen_failed > 0, "%s: no corruption was ever reported",
		  k->name);
	g_seen = NULL;
	munmap(s, sizeof(*s));
}

static const struct kind kinds[] = {
	{ "spsc", spsc_create, spsc_writer, spsc_reader },
	{ "mpmc", mpmc_create, mpmc_writer, mpmc_reader },
	{ "pool", pool_create, pool_writer, pool_reader },
	{ "bcast", bcast_create, bcast_writer, bcast_reader },
};

Test(hostile, spsc_reader, .timeout = 60)
{
	hostile_run(&kinds[0]);
}

Test(hostile, mpmc_reader, .timeout = 60)
{
	hostile_run(&kinds[1]);
}

Test(hostile, pool_reader, .timeout = 60)
{
	hostile_run(&kinds[2]);
}

Test(hostile, bcast_reader, .timeout = 60)
{
	hostile_run(&kinds[3]);
}

/* ---- truncation ---- */

/* memfd segments are sealed: a peer holding the descriptor can neither shrink nor grow
 * the file, nor remove the seals. */
Test(truncate, memfd_is_sealed)
{
	struct shmring_spsc_opts o = { .capacity = 1 << 14 };
	struct shmring_spsc *r;
	cr_assert_eq(shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &r), 0);
	int fd = shmring_spsc_fd(r);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	int seals = fcntl(fd, F_GET_SEALS);
	cr_assert(seals >= 0 && (seals & F_SEAL_SHRINK) && (seals & F_SEAL_GROW) && (seals & F_SEAL_SEAL),
		  "seals 0x%x", seals);
	/* through a descriptor of its own, as a peer that received it would have */
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	int pfd = open(p, O_RDWR);
	cr_assert_geq(pfd, 0);
	cr_expect_eq(ftruncate(pfd, 4096), -1, "shrinking a sealed memfd succeeded");
	cr_expect_eq(errno, EPERM);
	cr_expect_eq(ftruncate(pfd, st.st_size * 2), -1, "growing a sealed memfd succeeded");
	cr_expect_eq(fcntl(pfd, F_ADD_SEALS, F_SEAL_WRITE), -1, "seals could be changed");
	struct stat st2;
	cr_assert_eq(fstat(pfd, &st2), 0);
	cr_expect_eq(st2.st_size, st.st_size);
	/* and the ring still works */
	cr_expect_eq(shmring_spsc_send(r, "x", 1, 0), 0);
	close(pfd);
	shmring_spsc_close(r);
}

struct trunc_args {
	const char *name;
	struct tu_gate ready, go;
};

static int trunc_reader(void *a)
{
	struct trunc_args *t = a;
	struct shmring_spsc *r;
	if (shmring_spsc_open(t->name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 10;
	tu_gate_open(&t->ready);
	tu_gate_wait(&t->go);
	/* the default action, whatever a sanitizer runtime installed */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &sa, NULL);
	uint8_t buf[64];
	/* the file shrank under us: touching the ring is past its end */
	int rc = shmring_spsc_recv(r, buf, sizeof(buf), 100);
	return rc == 5 ? 0 : 11;
}

/*
 * Named segments cannot be sealed (shm_open files take no seals), so a peer with write
 * access can ftruncate one under a reader; the reader's next access past the new end is
 * SIGBUS, and no library call can turn that into an error without a signal handler,
 * which a library must not install. What the library does: attach checks total_size
 * against the file's size, so a *new* attacher gets -EPROTO; shmdump maps the file,
 * catches SIGBUS itself and reports the shrink. Trust model (DESIGN.md): named segments
 * trust the same user; untrusted peers get memfd segments, which are sealed.
 */
Test(truncate, named_shrink_is_sigbus_for_mapped_readers, .timeout = 30)
{
	char name[96];
	tu_name(name, sizeof(name), "trunc");
	struct shmring_spsc_opts o = { .capacity = 1 << 14 };
	struct shmring_spsc *w;
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &w), 0);
	cr_assert_eq(shmring_spsc_send(w, "hello", 5, 0), 0);
	struct trunc_args t;
	memset(&t, 0, sizeof(t));
	t.name = name;
	tu_gate_init(&t.ready);
	tu_gate_init(&t.go);
	pid_t pid = tu_fork(trunc_reader, &t);
	tu_gate_wait(&t.ready);
	char path[128];
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4096), 0, "a named segment can be shrunk by its owner");
	tu_gate_open(&t.go);
	int st = tu_wait(pid);
	cr_expect_eq(st, -SIGBUS, "reader after the shrink: status %d (SIGBUS expected and documented)", st);
	/* a new attacher sees a file too small for its header's geometry */
	struct shmring_spsc *r2;
	int rc = shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &r2);
	cr_expect_eq(rc, -EPROTO, "attach to a shrunk segment: %d", rc);
	if (rc == 0)
		shmring_spsc_close(r2);
	/* shmdump: a problem report, not a crash */
	int dumps = 0;
	shmdump_once(name, "check", &dumps);
	shmdump_once(name, "show", &dumps);
	close(fd);
	shmring_spsc_detach(w);
	shmring_seg_unlink(name);
	tu_gate_close(&t.ready);
	tu_gate_close(&t.go);
}
