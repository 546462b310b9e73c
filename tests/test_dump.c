/* SPDX-License-Identifier: MIT */
/* shmring/dump.h: decoding and checking a segment from its bytes, including bytes that
 * are truncated, damaged, random, or changing under the reader. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring/dump.h"
#include "shmring/spsc.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/bcast.h"
#include "testutil.h"

/* ---- helpers ---- */

/* The whole segment file, in an exact-size heap buffer (so that ASan sees any read
 * past its end). */
static uint8_t *slurp(const char *name, size_t *len)
{
	char path[128];
	struct stat st;
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0, "open %s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	cr_assert(b);
	cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static uint8_t *dup_exact(const uint8_t *b, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);
	cr_assert(d);
	memcpy(d, b, len);
	return d;
}

/* A ring left behind by a process: n records of len bytes, the first `consumed`
 * released, everyone detached. Returns the file's bytes. */
static uint8_t *make_ring(uint64_t cap, unsigned n, size_t len, unsigned consumed, size_t *flen)
{
	char name[96];
	struct shmring_spsc *p, *c;
	struct shmring_spsc_opts o = { .capacity = cap };
	tu_name(name, sizeof(name), "dump");
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &c), 0);
	for (unsigned k = 0; k < n; k++) {
		void *buf = NULL;
		cr_assert_eq(shmring_spsc_reserve(p, len, &buf), 0, "record %u", k);
		tu_fill(buf, len, k);
		cr_assert_eq(shmring_spsc_commit(p), 1);
		if (k < consumed) {
			struct shmring_rec rec;
			cr_assert_eq(shmring_spsc_peek(c, &rec), 0);
			shmring_spsc_release(c);
		}
	}
	uint8_t *b = slurp(name, flen);
	shmring_spsc_detach(c);
	shmring_spsc_detach(p);
	shmring_seg_unlink(name);
	return b;
}

struct found {
	unsigned n;
	char fields[64][SHMRING_DUMP_FIELD_MAX];
};

static void collect(void *arg, const struct shmring_dump_problem *p)
{
	struct found *f = arg;
	cr_assert(memchr(p->field, 0, sizeof(p->field)), "field NUL terminated");
	cr_assert(memchr(p->msg, 0, sizeof(p->msg)), "message NUL terminated");
	cr_assert(p->msg[0], "every problem says what is wrong");
	if (f->n < 64)
		memcpy(f->fields[f->n], p->field, SHMRING_DUMP_FIELD_MAX);
	f->n++;
}

static int has_field(const struct found *f, const char *field)
{
	for (unsigned i = 0; i < f->n && i < 64; i++)
		if (strcmp(f->fields[i], field) == 0)
			return 1;
	return 0;
}

struct walk {
	const uint8_t *buf;
	size_t len;
	unsigned n;
	uint64_t seeds[64];
	int all_match;
};

static void on_rec(void *arg, const struct shmring_dump_record *r)
{
	struct walk *w = arg;
	/* the record must lie within the buffer, wherever the bytes say it is */
	cr_assert(r->payload >= w->buf && r->len <= w->len &&
		  (size_t)(r->payload - w->buf) <= w->len - r->len, "record out of bounds");
	cr_assert_eq((size_t)(r->payload - w->buf), r->offset);
	if (w->n < 64 && !tu_check(r->payload, r->len, w->seeds[w->n]))
		w->all_match = 0;
	w->n++;
}

/* Walk b expecting exactly `count` records, filled from seeds first, first + 1, ...
 * Returns the walk for tests that look further. */
static struct walk expect_records(const uint8_t *b, size_t len, uint64_t first, unsigned count,
				  const char *what)
{
	struct walk w = { .buf = b, .len = len, .all_match = 1 };
	for (unsigned k = 0; k < count; k++)
		w.seeds[k] = first + k;
	cr_assert_eq(shmring_dump_records_buf(b, len, 100, on_rec, &w), (int)count);
	cr_assert(w.all_match, "%s", what);
	return w;
}

/* On the heap (about 18 KiB); a failed allocation fails the test where it happened. */
static struct shmring_dump_info *new_info(void)
{
	struct shmring_dump_info *i = malloc(sizeof(*i));
	cr_assert(i);
	return i;
}

/* A copy of the header: the buffer need not be aligned for it. */
static struct shmring_hdr hdr_of(const uint8_t *b)
{
	struct shmring_hdr h;
	memcpy(&h, b, sizeof(h));
	return h;
}

/* A copy of b with `width` bytes of val (little endian) at off, checked: the problems
 * reported must include `field`. The caller frees the copy. */
static uint8_t *damaged_copy(const uint8_t *b, size_t len, size_t off, uint64_t val,
			     unsigned width, const char *field, struct found *f, int *n)
{
	uint8_t *d = dup_exact(b, len);
	memcpy(d + off, &val, width);
	*n = shmring_dump_check_buf(d, len, collect, f);
	cr_expect(*n > 0 && has_field(f, field), "%s: %d problems, first %s", field, *n,
		  f->n ? f->fields[0] : "-");
	return d;
}

/* Overwrite `flips` random bytes of d: odd draws land in the first `hot` bytes, where
 * the header and control pages put the meaning, even ones anywhere. */
static void flip_bytes(uint8_t *d, size_t len, unsigned flips, size_t hot, uint64_t *rng)
{
	for (unsigned k = 0; k < flips; k++) {
		uint64_t y = tu_rand(rng);
		size_t off = (y & 1) ? (size_t)((y >> 1) % hot) : (size_t)((y >> 1) % len);
		d[off] = (uint8_t)(y >> 40);
	}
}

/* Check, decode and walk bytes that may be anything: none may fail outright or read out
 * of bounds (on_rec), and decode must find what check counted. Returns decode's result;
 * where asked, *walked is the walk's and *calls how often it called back. */
static int check_decode_walk(const uint8_t *d, size_t len, struct shmring_dump_info *i,
			     int *walked, unsigned *calls)
{
	int n = shmring_dump_check_buf(d, len, NULL, NULL);
	cr_assert(n >= 0);
	int rc = shmring_dump_decode_buf(d, len, i);
	cr_assert_eq(i->nproblems, (unsigned)n, "decode and check agree");
	struct walk w = { .buf = d, .len = len };
	int m = shmring_dump_records_buf(d, len, 1000, on_rec, &w);
	if (walked)
		*walked = m;
	if (calls)
		*calls = w.n;
	return rc;
}

/* ---- a healthy segment ---- */

Test(dump, decode_fresh_spsc)
{
	size_t len;
	uint8_t *b = make_ring(8192, 5, 100, 2, &len);
	struct shmring_dump_info *i = new_info();

	cr_assert_eq(shmring_dump_decode_buf(b, len, i), 0);
	cr_assert_eq(i->nproblems, 0, "first problem: %s: %s", i->problems[0].field,
		     i->problems[0].msg);
	cr_assert(i->is_segment);
	cr_assert_eq(i->kind, SHMRING_KIND_SPSC);
	cr_assert_str_eq(i->kind_name, "spsc");
	cr_assert_eq(i->layout_version, SHMRING_LAYOUT_VERSION);
	cr_assert_eq(i->total_size, len);
	cr_assert_eq(i->checksum, i->checksum_calc);
	cr_assert(i->kind_decoded);
	cr_assert_str_eq(i->unit, "bytes");
	cr_assert_eq(i->capacity, 8192);
	cr_assert_eq(i->fill, 3 * 112, "3 pending records of 8 + 100 bytes, aligned to 8");
	cr_assert_eq(i->stats.msgs, 5);
	cr_assert_eq(i->stats.bytes, 500);
	cr_assert_eq(i->nparts, 2);
	cr_assert_eq(i->parts[0].role, SHMRING_ROLE_PRODUCER);
	cr_assert_eq(i->parts[1].role, SHMRING_ROLE_CONSUMER);
	cr_assert_eq(i->parts[0].pid, getpid());
	cr_assert_eq(i->parts[0].alive, -1, "liveness is not in the bytes");
	int seen_head = 0;
	for (uint32_t k = 0; k < i->nkv; k++) {
		if (strcmp(i->kv[k].key, "head") == 0) {
			cr_assert_eq(i->kv[k].val, 2 * 112);
			seen_head = 1;
		}
		if (strcmp(i->kv[k].key, "pending_records") == 0)
			cr_assert_eq(i->kv[k].val, 3);
	}
	cr_assert(seen_head);
	cr_assert_eq(shmring_dump_check_buf(b, len, NULL, NULL), 0);
	free(i);
	free(b);
}

Test(dump, records_walk_returns_pending_payloads_across_the_wrap)
{
	/* 4 KiB ring, 700-byte records: the ring wraps (with padding) several times */
	size_t len;
	uint8_t *b = make_ring(4096, 40, 700, 36, &len);
	cr_assert_eq(shmring_dump_check_buf(b, len, NULL, NULL), 0);
	struct walk w = expect_records(b, len, 36, 4, "payloads are the records sent, in order");
	cr_assert_eq(w.n, 4);
	w.n = 0;
	cr_assert_eq(shmring_dump_records_buf(b, len, 2, on_rec, &w), 2, "at most max");
	free(b);
}

Test(dump, producer_dead_before_tail_store_is_consistent)
{
	/* the producer publishes a record's header, then stores ctrl->tail; if it dies in
	 * between, tail lags the records by one batch, which is not damage */
	size_t len;
	uint8_t *b = make_ring(8192, 4, 100, 1, &len);
	struct shmring_hdr h = hdr_of(b);
	uint64_t *tail = (uint64_t *)(void *)(b + h.ctrl_off + offsetof(struct shmring_spsc_ctrl, tail));
	cr_assert_eq(*tail, 4 * 112);
	*tail = 3 * 112;
	struct found f = { 0 };
	cr_assert_eq(shmring_dump_check_buf(b, len, collect, &f), 0, "first: %s", f.fields[0]);
	/* ...and even behind the consumer, which may have read the record already */
	uint64_t *head = (uint64_t *)(void *)(b + h.ctrl_off + offsetof(struct shmring_spsc_ctrl, head));
	*head = 4 * 112;
	cr_assert_eq(shmring_dump_check_buf(b, len, collect, &f), 0, "first: %s", f.fields[0]);
	/* but a tail beyond the records is wrong */
	*head = 112;
	*tail = 6 * 112;
	cr_assert_eq(shmring_dump_check_buf(b, len, collect, &f), 1);
	cr_assert_str_eq(f.fields[0], "spsc.tail");
	free(b);
}

/* ---- damage ---- */

struct corruption {
	const char *field;
	size_t off;
	unsigned width; /* bytes written */
	uint64_t value;
};

Test(dump, each_field_corrupted_is_named)
{
	size_t len;
	uint8_t *b = make_ring(8192, 5, 100, 2, &len);
	const struct corruption c[] = {
		{ "magic", 0, 8, 1 },
		{ "layout_version", 8, 4, 2 },
		{ "kind", 12, 4, 9 },
		{ "flags", 16, 4, 0x100 },
		{ "hdr_size", 20, 4, 512 },
		{ "total_size", 24, 8, 1 },
		{ "created_ns", 32, 8, 1 },
		{ "creator_pid", 40, 4, 0 },
		{ "max_parts", 44, 4, 0 },
		{ "parts_off", 48, 8, 0 },
		{ "ctrl_off", 56, 8, 100 },
		{ "ctrl_size", 64, 8, UINT64_MAX },
		{ "data_off", 72, 8, 4096 },
		{ "data_size", 80, 8, UINT64_MAX - 4095 },
		{ "geo[0]", 88, 8, 12288 },
		{ "geo[1]", 96, 8, 8192 },
		{ "geo[2]", 104, 8, 24 },
		{ "geo[3]", 112, 8, 1 },
		{ "geo[7]", 144, 8, 1 },
		{ "name", 152, 1, '/' },
		{ "reserved[0]", 216, 8, 1 },
		{ "reserved[3]", 240, 8, 1 },
		{ "checksum", 248, 8, 0 },
		{ "parts[0].state", 1024, 4, 3 },
		{ "parts[0].role", 1028, 4, 6 },
		{ "parts[1].pid", 1024 + 64 + 8, 4, 0 },
		{ "parts[5].state", 1024 + 5 * 64, 4, 1 }, /* beyond max_parts (2) */
		{ "parts[0].gen", 1024 + 12, 4, 0 },
		{ "parts[1].start_time", 1024 + 64 + 16, 8, UINT64_MAX },
		{ "parts[1].joined_ns", 1024 + 64 + 24, 8, 5 },
		{ "stats.fast_spare[13]", 256 + 16 + 13 * 8, 8, 1 },
		{ "stats.slow_spare[0]", 440, 8, UINT64_C(1) << 63 },
		{ "pad[100]", 612, 1, 0x20 },
		{ "max_parts", 44, 4, 3 },              /* spsc has two slots */
		{ "data_size", 80, 8, 4096 },           /* geo[0] (8192) fills the file */
		{ "spsc.tail", 4096, 8, 1 << 20 },
		{ "spsc.head", 4096 + 128, 8, 4 },
		{ "spsc.prod_closed", 4096 + 256, 4, 2 },
		{ "spsc.cons_closed", 4096 + 260, 4, 0xffffffff },
		{ "spsc.record", 8192 + 224, 8, UINT64_C(0xffff) << 48 },
	};
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct found f = { 0 };
		int n;
		uint8_t *d = damaged_copy(b, len, c[k].off, c[k].value, c[k].width, c[k].field, &f, &n);
		cr_expect_eq((unsigned)n, f.n, "the count is the number of callbacks");
		/* decode agrees, and never walks records of a damaged header */
		struct shmring_dump_info *i = new_info();
		shmring_dump_decode_buf(d, len, i);
		cr_expect_eq(i->nproblems, (unsigned)n);
		free(i);
		free(d);
	}
	free(b);
}

Test(dump, not_a_segment)
{
	static const uint8_t zeros[8192];
	struct shmring_dump_info *i = new_info();
	struct found f = { 0 };
	cr_assert_eq(shmring_dump_decode_buf(zeros, sizeof(zeros), i), -EPROTO);
	cr_assert_str_eq(i->problems[0].field, "magic");
	cr_assert_eq(shmring_dump_decode_buf(NULL, 0, i), -EPROTO);
	cr_assert_str_eq(i->problems[0].field, "file");
	cr_assert_eq(shmring_dump_check_buf(NULL, 0, collect, &f), 1);
	cr_assert_eq(shmring_dump_check_buf(NULL, 5, NULL, NULL), -EINVAL);
	cr_assert_eq(shmring_dump_decode_buf(zeros, 10, NULL), -EINVAL);
	cr_assert_eq(shmring_dump_records_buf(zeros, sizeof(zeros), 5, NULL, NULL), -EINVAL);
	struct walk w = { .buf = zeros, .len = sizeof(zeros) };
	cr_assert_eq(shmring_dump_records_buf(zeros, sizeof(zeros), 5, on_rec, &w), -EPROTO);
	cr_assert_str_eq(shmring_dump_kind_name(99), "unknown");
	cr_assert_str_eq(shmring_dump_role_name(SHMRING_ROLE_PRODUCER), "producer");
	cr_assert_str_eq(shmring_dump_state_name(SHMRING_PART_LEFT), "left");
	free(i);
}

Test(dump, every_truncation_is_a_problem_never_a_crash)
{
	size_t len;
	uint8_t *b = make_ring(4096, 10, 200, 3, &len);
	for (size_t l = 0; l < len; l += (l < 4200 ? 1 : 61)) {
		uint8_t *d = dup_exact(b, l);
		int n = shmring_dump_check_buf(d, l, NULL, NULL);
		cr_assert(n > 0, "a %zu-byte prefix of a %zu-byte segment passed", l, len);
		struct walk w = { .buf = d, .len = l };
		cr_assert(shmring_dump_records_buf(d, l, 100, on_rec, &w) < 0);
		free(d);
	}
	free(b);
}

Test(dump, random_bytes_and_random_damage, .timeout = 120)
{
	size_t len;
	uint8_t *b = make_ring(4096, 30, 150, 20, &len);
	uint64_t rng = 42;
	unsigned rounds = (unsigned)tu_scaled(20000, 500);
	struct shmring_dump_info *i = new_info();
	for (unsigned r = 0; r < rounds; r++) {
		size_t l = len;
		uint8_t *d;
		uint64_t x = tu_rand(&rng);
		if (x % 8 == 0) {
			/* random bytes behind a valid magic and version: past the first gate */
			l = (size_t)(tu_rand(&rng) % (2 * len));
			d = malloc(l ? l : 1);
			tu_fill(d, l, x);
			if (l >= 12)
				memcpy(d, b, 12);
		} else {
			d = dup_exact(b, len);
			/* 5120: the header and the control page */
			flip_bytes(d, len, 1 + (unsigned)(x >> 8) % 8, 5120, &rng);
		}
		int m;
		unsigned calls;
		int rc = check_decode_walk(d, l, i, &m, &calls);
		cr_assert_eq(rc < 0 ? 1 : 0, i->is_segment ? 0 : 1);
		if (m >= 0)
			cr_assert_eq((unsigned)m, calls);
		free(d);
	}
	free(i);
	free(b);
}

/* ---- a live ring, read while two other processes use it ---- */

struct live_arg {
	const char *name;
	unsigned n;
	struct tu_gate attached; /* the producer holds its role: a consumer may start */
};

static int live_producer(void *a)
{
	struct live_arg *la = a;
	struct shmring_spsc *p;
	uint64_t rng = 7;
	if (shmring_spsc_open(la->name, SHMRING_ROLE_PRODUCER, &p))
		return 10;
	/* before this the ring's producer is the creator, detached: a consumer started
	 * then would rightly see end of stream */
	tu_gate_open(&la->attached);
	for (unsigned k = 0; k < la->n; k++) {
		uint8_t buf[600];
		size_t l = 1 + (size_t)(tu_rand(&rng) % sizeof(buf));
		tu_fill(buf, l, k);
		int rc = shmring_spsc_send(p, buf, l, 10000);
		if (rc) {
			fprintf(stderr, "live producer: send %u: %s\n", k, shmring_strerror(rc));
			return 11;
		}
	}
	shmring_spsc_close(p);
	return 0;
}

static int live_consumer(void *a)
{
	struct live_arg *la = a;
	struct shmring_spsc *c;
	uint8_t buf[600];
	if (shmring_spsc_open(la->name, SHMRING_ROLE_CONSUMER, &c))
		return 20;
	for (;;) {
		int n = shmring_spsc_recv(c, buf, sizeof(buf), 10000);
		if (n == -EPIPE)
			break;
		if (n < 0) {
			fprintf(stderr, "live consumer: recv: %s\n", shmring_strerror(n));
			return 21;
		}
	}
	shmring_spsc_close(c);
	return 0;
}

Test(dump, live_ring_checks_consistent_while_in_use, .timeout = 120)
{
	char name[96], path[128];
	struct shmring_spsc *r;
	struct shmring_spsc_opts o = { .capacity = 8192 };
	tu_name(name, sizeof(name), "dumplive");
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &r), 0);
	shmring_spsc_detach(r); /* the child producer takes over */
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDONLY);
	struct stat st;
	cr_assert(fd >= 0 && fstat(fd, &st) == 0);
	const uint8_t *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	cr_assert(m != MAP_FAILED);

	struct live_arg la = { name, (unsigned)tu_scaled(200000, 5000), { { -1, -1 } } };
	tu_gate_init(&la.attached);
	pid_t pp = tu_fork(live_producer, &la);
	tu_gate_wait(&la.attached);
	pid_t pc = tu_fork(live_consumer, &la);
	struct shmring_dump_info *i = new_info();
	unsigned checks = 0, bad = 0;
	/* read it, over and over, until both children have exited */
	int sp = -1, sc = -1, live = 2;
	while (live) {
		int rc = shmring_dump_decode_buf(m, (size_t)st.st_size, i);
		cr_assert_eq(rc, 0);
		if (i->nproblems && bad++ == 0)
			cr_log_error("live check: %s = %llu: %s", i->problems[0].field,
				     (unsigned long long)i->problems[0].value, i->problems[0].msg);
		checks++;
		int status;
		if (sp < 0 && waitpid(pp, &status, WNOHANG) == pp) {
			sp = WIFEXITED(status) ? WEXITSTATUS(status) : 100;
			live--;
		}
		if (sc < 0 && waitpid(pc, &status, WNOHANG) == pc) {
			sc = WIFEXITED(status) ? WEXITSTATUS(status) : 100;
			live--;
		}
	}
	cr_assert_eq(sp, 0, "producer exit %d", sp);
	cr_assert_eq(sc, 0, "consumer exit %d", sc);
	cr_assert_eq(bad, 0, "%u of %u checks of a live ring reported damage", bad, checks);
	free(i);
	munmap((void *)m, (size_t)st.st_size);
	close(fd);
	tu_gate_close(&la.attached);
	shmring_seg_unlink(name);
}

/* ---- the other kinds ---- */

static int has_kv(const struct shmring_dump_info *i, const char *key, uint64_t val)
{
	for (uint32_t k = 0; k < i->nkv; k++)
		if (strcmp(i->kv[k].key, key) == 0)
			return i->kv[k].val == val;
	return 0;
}

/* Decodes without a problem as that kind, counting in `unit`, `capacity` of them. The
 * caller frees the info. */
static struct shmring_dump_info *expect_consistent(const uint8_t *b, size_t len, uint32_t kind,
						   const char *unit, uint64_t capacity)
{
	struct shmring_dump_info *i = new_info();
	cr_assert_eq(shmring_dump_decode_buf(b, len, i), 0);
	cr_assert_eq(i->nproblems, 0, "first problem: %s = %llu: %s", i->problems[0].field,
		     (unsigned long long)i->problems[0].value, i->problems[0].msg);
	cr_assert_eq(i->kind, kind);
	cr_assert(i->kind_decoded);
	cr_assert_str_eq(i->unit, unit);
	cr_assert_eq(i->capacity, capacity);
	return i;
}

static void expect_named(const uint8_t *b, size_t len, size_t off, uint64_t val, unsigned width,
			 const char *field)
{
	struct found f = { 0 };
	int n;
	uint8_t *d = damaged_copy(b, len, off, val, width, field, &f, &n);
	struct walk w = { .buf = d, .len = len };
	shmring_dump_records_buf(d, len, 1000, on_rec, &w); /* bounded whatever it says */
	free(d);
}

/* Random damage to a segment of any kind: the check and the walk stay in bounds. */
static void damage_rounds(const uint8_t *b, size_t len, uint64_t seed)
{
	const unsigned rounds = (unsigned)tu_scaled(3000, 200);
	uint64_t rng = seed;
	struct shmring_dump_info *i = new_info();
	for (unsigned r = 0; r < rounds; r++) {
		uint8_t *d = dup_exact(b, len);
		unsigned flips = 1 + (unsigned)(tu_rand(&rng) % 6);
		flip_bytes(d, len, flips, len < 16384 ? len : 16384, &rng);
		check_decode_walk(d, len, i, NULL, NULL);
		free(d);
	}
	free(i);
}

Test(dump, mpmc_decoded_checked_and_walked, .timeout = 120)
{
	char name[96];
	struct shmring_mpmc *p;
	struct shmring_mpmc_opts o = { .capacity = 16, .slot_size = 100 };
	tu_name(name, sizeof(name), "dumpmpmc");
	cr_assert_eq(shmring_mpmc_create(name, &o, SHMRING_ROLE_PRODUCER, &p), 0);
	for (unsigned k = 0; k < 6; k++) {
		uint8_t buf[100];
		tu_fill(buf, sizeof(buf), k);
		cr_assert_eq(shmring_mpmc_enqueue(p, buf, sizeof(buf), 0), 0);
	}
	size_t len;
	uint8_t *b = slurp(name, &len);
	shmring_mpmc_close(p);
	shmring_seg_unlink(name);

	struct shmring_dump_info *i = expect_consistent(b, len, SHMRING_KIND_MPMC, "slots", 16);
	cr_assert_eq(i->fill, 6);
	cr_assert(has_kv(i, "cells_full", 6));
	free(i);
	expect_records(b, len, 0, 6, "the messages enqueued, in order");

	struct shmring_hdr h = hdr_of(b);
	uint64_t stride = h.geo[SHMRING_MPMC_GEO_STRIDE];
	/* cell 3 claiming to be at position 5; cell 1 with an owner while FULL */
	expect_named(b, len, h.data_off + 3 * stride, UINT64_C(5) << 18, 8, "mpmc.cell[3]");
	expect_named(b, len, h.data_off + 1 * stride, (UINT64_C(1) << 18) | (2u << 16) | 7, 8,
		     "mpmc.cell[1]");
	expect_named(b, len, h.data_off + 2 * stride + 8, 5000, 4, "mpmc.cell[2]");
	expect_named(b, len, 88 + 8 * SHMRING_MPMC_GEO_FORMAT, 9, 8, "geo[4]");
	damage_rounds(b, len, 11);
	free(b);
}

struct first_rec {
	uint64_t offset;
	uint32_t flags;
};

static void keep_first(void *arg, const struct shmring_dump_record *r)
{
	struct first_rec *f = arg;
	f->offset = r->offset;
	f->flags = r->flags;
}

Test(dump, pool_decoded_checked_and_walked, .timeout = 120)
{
	char name[96];
	struct shmring_pool *p, *s;
	struct shmring_pool_opts o = { .buf_size = 5000, .nbufs = 4, .max_subs = 1,
				       .flags = SHMRING_POOL_F_CHECKSUM };
	tu_name(name, sizeof(name), "dumppool");
	cr_assert_eq(shmring_pool_create(name, &o, NULL, &p), 0);
	cr_assert_eq(shmring_pool_subscribe(name, NULL, &s), 0);
	for (unsigned k = 0; k < 3; k++) {
		struct shmring_pool_frame f;
		cr_assert_eq(shmring_pool_loan(p, &f), 0);
		f.len = 4000;
		tu_fill(f.data, f.len, k);
		cr_assert_eq(shmring_pool_publish(p, &f), 1);
	}
	size_t len;
	uint8_t *b = slurp(name, &len);
	shmring_pool_close(s);
	shmring_pool_close(p);
	shmring_seg_unlink(name);

	struct shmring_dump_info *i = expect_consistent(b, len, SHMRING_KIND_POOL, "frames", 4);
	cr_assert_eq(i->fill, 3, "three frames queued for the subscriber");
	cr_assert(has_kv(i, "published", 3));
	cr_assert(has_kv(i, "checksums", 1));
	cr_assert(has_kv(i, "stamps", 0));
	free(i);
	expect_records(b, len, 0, 3, "the frames published, oldest first");

	struct shmring_hdr h = hdr_of(b);
	uint64_t meta = h.ctrl_off + (h.geo[SHMRING_POOL_GEO_OFFS] & 0xffffffffu);
	expect_named(b, len, meta + 128 + offsetof(struct shmring_pool_meta, len), 1 << 20, 8,
		     "pool.meta[1].len");
	expect_named(b, len, meta + offsetof(struct shmring_pool_meta, state), 1u << 5, 8,
		     "pool.meta[0].state");
	expect_named(b, len, h.ctrl_off + offsetof(struct shmring_pool_ctrl, active), 6, 8,
		     "pool.active");
	expect_named(b, len, 88 + 8 * SHMRING_POOL_GEO_NBUFS, 5000, 8, "geo[0]");
	/* a payload byte of a queued frame published with a checksum */
	struct first_rec fr = { 0 };
	cr_assert_eq(shmring_dump_records_buf(b, len, 1, keep_first, &fr), 1);
	char field[SHMRING_DUMP_FIELD_MAX];
	snprintf(field, sizeof(field), "pool.meta[%u].checksum", fr.flags); /* flags: buffer */
	expect_named(b, len, fr.offset + 99, (uint8_t)~b[fr.offset + 99], 1, field);
	damage_rounds(b, len, 12);
	free(b);
}

Test(dump, bcast_decoded_checked_and_walked, .timeout = 120)
{
	char name[96];
	struct shmring_bcast *wr;
	struct shmring_bcast_opts o = { .slots = 4, .slot_size = 200 };
	tu_name(name, sizeof(name), "dumpbcast");
	cr_assert_eq(shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &wr), 0);
	for (unsigned k = 0; k < 6; k++) {
		uint8_t buf[150];
		tu_fill(buf, sizeof(buf), k);
		cr_assert_eq(shmring_bcast_publish(wr, buf, sizeof(buf)), 0);
	}
	size_t len;
	uint8_t *b = slurp(name, &len);
	shmring_bcast_close(wr);
	shmring_seg_unlink(name);

	struct shmring_dump_info *i = expect_consistent(b, len, SHMRING_KIND_BCAST, "slots", 4);
	cr_assert(has_kv(i, "published", 6));
	free(i);
	/* 6 published in 4 slots: records 3, 4, 5 are the ones the next will not overwrite */
	expect_records(b, len, 3, 3, "the newest records, oldest first");

	struct shmring_hdr h = hdr_of(b);
	uint64_t stride = h.geo[SHMRING_BCAST_GEO_STRIDE];
	expect_named(b, len, h.data_off + 1 * stride, 2 * 6 + 2, 8, "bcast.slot[1].seq");
	expect_named(b, len, h.data_off + 2 * stride + 8, 201, 8, "bcast.slot[2].seq");
	/* a record of the right slot, far beyond the 6 published: no writer wrote it */
	expect_named(b, len, h.data_off + 1 * stride, 2 * (1 + 4 * 1000) + 2, 8,
		     "bcast.slot[1].seq");
	expect_named(b, len, h.ctrl_off + offsetof(struct shmring_bcast_wline, state), 5, 4,
		     "bcast.state");
	expect_named(b, len, 88 + 8 * SHMRING_BCAST_GEO_STRIDE, 64, 8, "geo[2]");
	damage_rounds(b, len, 13);
	free(b);
}

/* Readers count laps, sleeps and timeouts on the reader page (they cannot write the
 * header): the decoded statistics add them to the header's. */
Test(dump, bcast_reader_page_statistics_are_added)
{
	char name[96];
	struct shmring_bcast *wr, *rd;
	struct shmring_bcast_opts o = { .slots = 4, .slot_size = 200 };
	uint8_t buf[200];
	tu_name(name, sizeof(name), "dumpblap");
	cr_assert_eq(shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &wr), 0);
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, SHMRING_BCAST_START_OLDEST, &rd), 0);
	cr_assert_not_null(rd->rpage, "the reader page is writable for the reader");
	for (unsigned k = 0; k < 9; k++) {
		tu_fill(buf, 150, k);
		cr_assert_eq(shmring_bcast_publish(wr, buf, 150), 0);
	}
	struct shmring_bcast_rec rec = { 0 };
	cr_assert_eq(shmring_bcast_read(rd, buf, sizeof(buf), &rec), 150);
	cr_assert_eq(rec.missed, 6, "9 published in 4 slots: the reader at 0 resumes at 6");
	/* a timed-out wait counts a timeout on the reader page */
	cr_assert_eq(shmring_bcast_seek(rd, SHMRING_BCAST_SEEK_NEXT), 0);
	cr_assert_eq(shmring_bcast_wait(rd, 1), -ETIMEDOUT);
	size_t len;
	uint8_t *b = slurp(name, &len);
	shmring_bcast_close(rd);
	shmring_bcast_close(wr);
	shmring_seg_unlink(name);

	struct shmring_dump_info *i = expect_consistent(b, len, SHMRING_KIND_BCAST, "slots", 4);
	cr_expect(has_kv(i, "reader_laps", 6));
	cr_expect(has_kv(i, "reader_timeouts", 1));
	cr_expect_eq(i->stats.laps, 6, "header laps (0) + reader page laps (6)");
	cr_expect_eq(i->stats.timeouts, 1);
	cr_expect_eq(i->stats.msgs, 9);
	free(i);
	free(b);
}

/* The reader lock shmdump tells live readers by (bcast.h, READERS' LIVENESS). OFD locks
 * of different open file descriptions conflict even within one process, so a fresh
 * descriptor here sees the readers' locks as shmdump would. */
static int reader_lock_held(const char *name)
{
	char path[128];
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = SHMRING_BCAST_READER_LOCK, .l_len = 1 };
	cr_assert_eq(fcntl(fd, F_OFD_GETLK, &fl), 0);
	close(fd);
	return fl.l_type != F_UNLCK;
}

static struct tu_gate child_up, child_gate;

static int hold_inherited(void *arg)
{
	(void)arg;
	tu_gate_open(&child_up);   /* fork()'s child handlers have run */
	tu_gate_wait(&child_gate); /* alive, with the parent's handles inherited */
	return 0;
}

Test(dump, bcast_reader_lock_follows_each_reader, .timeout = 60)
{
	char name[96];
	struct shmring_bcast *wr, *r1, *r2, *r3, *rw;
	struct shmring_bcast_opts o = { .slots = 4, .slot_size = 64 };
	tu_name(name, sizeof(name), "dumpblock");
	cr_assert_eq(shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &wr), 0);
	cr_assert_not(reader_lock_held(name), "the writer takes no reader lock");
	/* two readers of one process share the segment's mapping and descriptor; each has
	 * its lock on a description of its own, so closing one keeps the other's */
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &r1), 0);
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &r2), 0);
	cr_assert(reader_lock_held(name));
	shmring_bcast_close(r1);
	cr_assert(reader_lock_held(name), "the second reader is still open");
	shmring_bcast_close(r2);
	cr_assert_not(reader_lock_held(name), "no reader open");
	/* a child made by fork() does not keep its parent's reader alive */
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &r3), 0);
	tu_gate_init(&child_up);
	tu_gate_init(&child_gate);
	pid_t pid = tu_fork(hold_inherited, NULL);
	tu_gate_wait(&child_up);
	shmring_bcast_close(r3);
	cr_expect(!reader_lock_held(name), "the child closed its copy of the reader lock");
	tu_gate_open(&child_gate);
	cr_assert_eq(tu_wait(pid), 0);
	tu_gate_close(&child_up);
	tu_gate_close(&child_gate);
	/* a reader on the writer's mapping (RW_MAPPING) holds one too */
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, SHMRING_BCAST_RW_MAPPING, &rw), 0);
	cr_assert(reader_lock_held(name));
	shmring_bcast_close(rw);
	cr_assert_not(reader_lock_held(name));
	shmring_bcast_close(wr);
	shmring_seg_unlink(name);
}
