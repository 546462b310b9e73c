/* SPDX-License-Identifier: MIT */
/*
 * The ideal shapes: what a round trip of that shape costs with nothing but its stores
 * and loads. Messages are numbered by their stamp (the round trip's seq, which grows by
 * one per round trip of the variant on both sides), so a slot is seq modulo the ring
 * and a stale slot never reads as the awaited one.
 *  - floor: one line, written by each side in turn (the client 2 seq + 1, the server
 *    the next number). The writer already holds the line it just read.
 *  - floor-64: the floor, each round trip on the next of 64 lines spread over 16 pages.
 *    A line's round trip depends on its address (the L3 slice that is its home: 180 to
 *    450 ns here for lines at one placement, and a line alike from one run to the next),
 *    so the one line of `floor` is a draw (floor-64 / floor: 0.78-1.69 between runs),
 *    while a ring's messages use many lines. The targets are judged against floor-64.
 *  - ring1: one line per message, a ring per direction (1 MiB each): the smallest
 *    message any pair of one-way rings can carry.
 *  - ring2: two lines per message (a flag line and the line after it, which carries the
 *    last stamp): a 64-byte payload with any header needs two.
 *  - ring2-dem: ring2 whose sender then pushes both lines to the shared cache (CLDEMOTE,
 *    common.h): the shape of spsc with shmring_spsc_set_demote().
 *  - handoff: a buffer handed over by index: the sender takes a buffer (4 of 1080p
 *    size) once the receiver gave it back (a state line per buffer), stamps its first
 *    and last bytes, and writes the index into an entry line; the receiver reads the
 *    entry, then the buffer's two lines, then gives the buffer back.
 *  - handoff-4k: handoff with 4K frames (the pool-4k target's shape).
 *  - handoff-dem: handoff whose sender pushes the two stamp lines (the frame's, not
 *    the entry) to the shared cache before it writes the entry: the shape of the pool
 *    with an application that calls shmring_demote() on the lines it wrote.
 *  - futex: the blocking floor: a futex word per direction, each side sleeping in
 *    FUTEX_WAIT at every wait and the sender always calling FUTEX_WAKE (shmring-bench's
 *    futex round trip), for the spsc-blocking target.
 */
#include "targets.h"

#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINES 16384u  /* ring1: 1 MiB per direction */
#define ENTRIES 64u
#define NBUF 4u
#define FRAME 3110400u    /* 1080p NV12 */
#define FRAME_4K 12441600u /* 4K NV12 */
#define HANDOFF_4K 2       /* handoff_trip()'s arg: 4K frames (else 1080p) */

struct line {
	_Atomic uint64_t w[8];
};

struct dir {
	struct line ring1[LINES];
	struct line ring2[2 * LINES];
	struct line ring2d[2 * LINES]; /* ring2-dem's */
	struct hand {
		struct line entry[ENTRIES];
		struct line state[NBUF];
	} hand[3]; /* ideal-handoff, -dem, -4k */
};

#define FLOOR_LINES 2 /* floor_trip()'s arg: shmring-bench's floor lines in turn (else one) */

struct tg_ideal {
	_Alignas(64) _Atomic uint64_t floor;
	/* floor-64's lines, laid out as shmring-bench's (bench.h) */
	_Alignas(4096) struct line fl[BENCH_FLOOR_PAGES][BENCH_FLOOR_LINES];
	_Alignas(64) _Atomic uint32_t fx[2]; /* futex words: [0] client -> server, [1] back */
	_Alignas(64) struct dir d[2]; /* [0] client -> server, [1] back */
};

/* The frames of each direction: mapped before fork, at the same address in both. */
static unsigned char *frames[2], *frames4k[2];

int tg_ideal_setup(struct tg_ctx *c)
{
	void *m = mmap(NULL, sizeof(struct tg_ideal), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	c->ideal = m;
	for (int i = 0; i < 2; i++) {
		/* only the stamps' pages are touched: no MAP_POPULATE for 12 MB */
		void *f = mmap(NULL, (size_t)FRAME * NBUF, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		void *g = mmap(NULL, (size_t)FRAME_4K * NBUF, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (f == MAP_FAILED || g == MAP_FAILED)
			return -errno;
		frames[i] = f;
		frames4k[i] = g;
	}
	return 0;
}

/* ---- floor ---- */

static int floor_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	unsigned k = (unsigned)(seq % BENCH_FLOOR_LINES);
	_Atomic uint64_t *l = arg & FLOOR_LINES ? &c->ideal->fl[k % BENCH_FLOOR_PAGES][k].w[0]
						: &c->ideal->floor;
	if (!server) {
		/* pairs with the server's acquire in tg_wait_eq() */
		atomic_store_explicit(l, 2 * seq + 1, memory_order_release);
		return tg_wait_eq(c, l, 2 * seq + 2);
	}
	int rc = tg_wait_eq(c, l, 2 * seq + 1);
	if (rc == 0) /* pairs with the client's acquire in tg_wait_eq() */
		atomic_store_explicit(l, 2 * seq + 2, memory_order_release);
	return rc;
}

const struct tg_variant tg_floor = {
	"floor", "one line written by each side in turn", floor_trip, 0, 0,
};

const struct tg_variant tg_floor64 = {
	"floor-64", "floor, each round trip on the next of 64 lines in 16 pages", floor_trip,
	FLOOR_LINES, 0,
};

/* ---- ring1 ---- */

static void ring1_send(struct tg_ctx *c, int d, uint64_t seq)
{
	/* pairs with the receiver's acquire in ring1_recv() */
	atomic_store_explicit(&c->ideal->d[d].ring1[seq % LINES].w[0], seq, memory_order_release);
}

static int ring1_recv(struct tg_ctx *c, int d, uint64_t seq)
{
	return tg_wait_eq(c, &c->ideal->d[d].ring1[seq % LINES].w[0], seq);
}

static int ring1_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	(void)arg;
	if (!server) {
		ring1_send(c, 0, seq);
		return ring1_recv(c, 1, seq);
	}
	int rc = ring1_recv(c, 0, seq);
	if (rc == 0)
		ring1_send(c, 1, seq);
	return rc;
}

const struct tg_variant tg_ring1 = {
	"ideal-ring1", "one-way rings, one line per message", ring1_trip, 0, 0,
};

/* ---- ring2 (dem: the sender then demotes both lines) ---- */

static struct line *ring2_at(struct tg_ctx *c, int d, uint64_t seq, int dem)
{
	struct dir *r = &c->ideal->d[d];
	/* each variant its own ring: their stamps count on their own */
	return &(dem ? r->ring2d : r->ring2)[2 * (seq % LINES)];
}

static void ring2_send(struct tg_ctx *c, int d, uint64_t seq, int dem)
{
	struct line *l = ring2_at(c, d, seq, dem);
	atomic_store_explicit(&l[1].w[7], seq, memory_order_relaxed);
	/* pairs with the receiver's acquire in ring2_recv(); publishes l[1] too */
	atomic_store_explicit(&l[0].w[0], seq, memory_order_release);
	if (dem) {
		shmring__demote(&l[0]);
		shmring__demote(&l[1]);
	}
}

static int ring2_recv(struct tg_ctx *c, int d, uint64_t seq, int dem)
{
	struct line *l = ring2_at(c, d, seq, dem);
	int rc = tg_wait_eq(c, &l[0].w[0], seq);
	if (rc == 0 && atomic_load_explicit(&l[1].w[7], memory_order_relaxed) != seq)
		rc = -EPROTO;
	return rc;
}

static int ring2_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	int dem = arg & TG_DEMOTE;
	if (!server) {
		ring2_send(c, 0, seq, dem);
		return ring2_recv(c, 1, seq, dem);
	}
	int rc = ring2_recv(c, 0, seq, dem);
	if (rc == 0)
		ring2_send(c, 1, seq, dem);
	return rc;
}

const struct tg_variant tg_ring2 = {
	"ideal-ring2", "one-way rings, two lines per message", ring2_trip, 0, 0,
};

const struct tg_variant tg_ring2d = {
	"ideal-ring2-dem", "ideal-ring2, the sender demoting both lines", ring2_trip, TG_DEMOTE, 0,
};

/* ---- handoff ---- */

/* One variant's lines in one direction: each handoff variant has its own, as each ring2
 * variant its own ring (their stamps count on their own), and its own frames. */
static struct hand *hand_of(struct tg_ctx *c, int d, int arg)
{
	return &c->ideal->d[d].hand[arg & HANDOFF_4K ? 2 : arg & TG_DEMOTE ? 1 : 0];
}

static unsigned char *frame_of(int d, int arg, uint64_t b)
{
	return arg & HANDOFF_4K ? frames4k[d] + b * FRAME_4K : frames[d] + b * FRAME;
}

static int handoff_send(struct tg_ctx *c, int d, uint64_t seq, int arg)
{
	struct hand *h = hand_of(c, d, arg);
	uint64_t b = seq % NBUF, len = arg & HANDOFF_4K ? FRAME_4K : FRAME;
	/* the buffer's last holder gave it back: pairs with the release in handoff_done() */
	int rc = tg_wait_eq(c, &h->state[b].w[0], 0);
	if (rc)
		return rc;
	atomic_store_explicit(&h->state[b].w[0], 1, memory_order_relaxed);
	unsigned char *f = frame_of(d, arg, b);
	memcpy(f, &seq, 8);
	memcpy(f + len - 8, &seq, 8);
	if (arg & TG_DEMOTE) {
		shmring_demote(f, 8);
		shmring_demote(f + len - 8, 8);
	}
	struct line *e = &h->entry[seq % ENTRIES];
	atomic_store_explicit(&e->w[1], b, memory_order_relaxed);
	/* pairs with the receiver's acquire in handoff_recv(); publishes the frame */
	atomic_store_explicit(&e->w[0], seq, memory_order_release);
	return 0;
}

static int handoff_recv(struct tg_ctx *c, int d, uint64_t seq, uint64_t *b, int arg)
{
	struct line *e = &hand_of(c, d, arg)->entry[seq % ENTRIES];
	int rc = tg_wait_eq(c, &e->w[0], seq);
	if (rc)
		return rc;
	*b = atomic_load_explicit(&e->w[1], memory_order_relaxed);
	if (*b >= NBUF)
		return -EPROTO;
	uint64_t len = arg & HANDOFF_4K ? FRAME_4K : FRAME, x, y;
	const unsigned char *f = frame_of(d, arg, *b);
	memcpy(&x, f, 8);
	memcpy(&y, f + len - 8, 8);
	return x == seq && y == seq ? 0 : -EPROTO;
}

static void handoff_done(struct tg_ctx *c, int d, uint64_t b, int arg)
{
	/* pairs with the acquire in handoff_send()'s tg_wait_eq() */
	atomic_store_explicit(&hand_of(c, d, arg)->state[b].w[0], 0, memory_order_release);
}

static int handoff_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	uint64_t b;
	int in = server ? 0 : 1; /* the direction this side receives on */
	int rc = server ? handoff_recv(c, 0, seq, &b, arg) : handoff_send(c, 0, seq, arg);
	if (rc == 0) /* the server answers first, then gives the buffer back, as the library's */
		rc = server ? handoff_send(c, 1, seq, arg) : handoff_recv(c, 1, seq, &b, arg);
	if (rc == 0)
		handoff_done(c, in, b, arg);
	return rc;
}

const struct tg_variant tg_handoff = {
	"ideal-handoff", "1080p buffers handed over by index and given back", handoff_trip, 0, 0,
};

const struct tg_variant tg_handoff4k = {
	"ideal-handoff-4k", "ideal-handoff with 4K frames", handoff_trip, HANDOFF_4K, 0,
};

const struct tg_variant tg_handoffd = {
	"ideal-handoff-dem", "ideal-handoff, the sender demoting its two frame lines",
	handoff_trip, TG_DEMOTE, 0,
};

/* ---- futex ---- */

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)(void *)w, op, val, ts, NULL, 0);
}

/* Sleep until *w reads want. FUTEX_WAIT compares and sleeps atomically, so a store and
 * wake between the load and the call is never lost; a wait times out every 100 ms to
 * see that the peer lives. */
static int fx_wait_eq(struct tg_ctx *c, _Atomic uint32_t *w, uint32_t want)
{
	static const struct timespec tick = {0, 100000000};
	uint32_t v;
	/* pairs with the peer's release store in fx_send() */
	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if (futex(w, FUTEX_WAIT, v, &tick) == 0)
			continue;
		if (errno == ETIMEDOUT) {
			int rc = tg_spin_slow(c, 0); /* 0: the liveness check alone */
			if (rc)
				return rc;
		} else if (errno != EAGAIN && errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

static void fx_send(struct tg_ctx *c, int d, uint64_t seq)
{
	/* pairs with the receiver's acquire in fx_wait_eq() */
	atomic_store_explicit(&c->ideal->fx[d], (uint32_t)seq, memory_order_release);
	futex(&c->ideal->fx[d], FUTEX_WAKE, 1, NULL);
}

static int futex_trip(struct tg_ctx *c, uint64_t seq, int server, int arg)
{
	(void)arg;
	if (!server) {
		fx_send(c, 0, seq);
		return fx_wait_eq(c, &c->ideal->fx[1], (uint32_t)seq);
	}
	int rc = fx_wait_eq(c, &c->ideal->fx[0], (uint32_t)seq);
	if (rc == 0)
		fx_send(c, 1, seq);
	return rc;
}

const struct tg_variant tg_futex = {
	"futex", "raw FUTEX_WAIT/FUTEX_WAKE, sleeping at every wait", futex_trip, 0, 1,
};
