/* SPDX-License-Identifier: MIT */
/*
 * bench/bench.h: what the parts of shmring-bench share: the clock, the description of
 * one test, the per-process context a transport runs in, and the transport table.
 *
 * A test runs in two processes made by fork(): side 0 (the parent: RTT client or
 * streaming producer) pinned to the first CPU of --cpus, side 1 (the child: RTT server or
 * streaming consumer) to the first of its second half (bench_cpu_of(); with two CPUs, the
 * second; for the same-CPU placement, the first). Every message carries a sequence stamp in its first 8 bytes (and its last 8 bytes when it is longer
 * than 8), which the receiver checks; the stamp BENCH_STOP ends the run.
 *
 * Modes. copy: the sender copies the payload from a private buffer into the transport
 * and the receiver copies it out into a private buffer (the classic mechanisms always
 * work this way, through the kernel). zero-copy: the payload is produced in place in
 * the shared buffer; the benchmark writes only the stamps there, so what is measured
 * is the hand-over, which is what zero-copy promises to make independent of size.
 */
#ifndef SHMRING_BENCH_H
#define SHMRING_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#define BENCH_STOP UINT64_C(0xffffffffffffffff)
#define BENCH_LINE 128u
#define BENCH_CDF_POINTS 106u
#define BENCH_MAX_PROCS 8u
#define BENCH_MAX_CPUS 64u
#define shmring_bench_unlikely(x) __builtin_expect(!!(x), 0)

/* ---- clock (clock.c) ---- */

/* Ticks of the fastest monotonic counter (TSC where it is usable). */
static inline uint64_t bench_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned aux;
	return __rdtscp(&aux); /* waits for earlier instructions: ends a timed section */
#else
	extern uint64_t bench_clock_ns(void);
	return bench_clock_ns();
#endif
}

static inline void bench_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	_mm_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

void bench_clock_init(int quick);
uint64_t bench_clock_ns(void);           /* CLOCK_MONOTONIC in ns */
double bench_ticks_per_ns(void);
static inline double bench_ticks_ns(uint64_t t)
{
	extern double bench_ns_per_tick;
	return (double)t * bench_ns_per_tick;
}
uint64_t bench_ns_ticks(double ns);

/* ---- what to run ---- */

enum bench_test { BENCH_RTT = 0, BENCH_STREAM = 1, BENCH_MEMCPY = 2 };
enum bench_mode { BENCH_COPY = 0, BENCH_ZC = 1 };

struct bench_cfg {
	int quick;
	double budget_s;      /* timed part of one test */
	double warm_s;        /* warm-up before it */
	uint64_t min_iters;   /* at least this many samples, whatever the budget */
	uint64_t max_iters;   /* at most this many */
	double probe_s;       /* floor probe before each test */
	double spin_us;       /* bounded spin of the spinning transports, then block */
	int cpus[BENCH_MAX_CPUS]; /* --cpus: producers take the first half in turn, consumers
				   * the second half (2 CPUs: all producers on one) */
	unsigned ncpus;
	unsigned procs[BENCH_MAX_PROCS]; /* --procs: producer (and consumer) processes of the
					  * work-distribution tests */
	unsigned nprocs;
	int verbose;
	uint64_t memcpy_region; /* bytes of each buffer of the cold-memcpy reference */
	uint64_t capacity;    /* spsc ring bytes when it holds the records; 0: automatic */
	int demote;           /* spsc, mpmc, bcast producers demote what they publish */
	unsigned watchdog_s;  /* --watchdog: a test still running after this is killed;
			       * 0: 30 s + 20x its warm-up and timed part */
};

struct bench_transport;

struct bench_spec {
	enum bench_test test;
	const struct bench_transport *tr;
	size_t size;
	enum bench_mode mode;
	int same_cpu;
	unsigned batch;       /* streaming: messages per publication (shmring), else 1 */
	unsigned nprod, ncons; /* streaming: producer and consumer processes (mpmc), 1, 1 */
	char id[112];         /* "rtt/spsc/64/zero-copy/cross" etc., what --filter matches */
};

/* The outcome of one test; negative values mean "not measured". */
struct bench_result {
	struct bench_spec spec;
	int ok;
	int attempts;           /* runs it took (placement moved during earlier ones) */
	double wall_s;          /* wall time of all of them, probes included */
	int runs;               /* --repeat: successful runs this figure is the median of */
	char err[256];
	uint64_t samples;
	double p50, p99, p999, max, mean;  /* ns */
	double msgs_per_s, bytes_per_s;
	double probe_ns;        /* floor RTT p50 just before the test */
	double probe_after_ns;  /* ... and just after it */
	double probe_p99;       /* floor RTT p99, the lower of the two probes */
	double wake_per_msg, sleeps_per_msg;
	double lost_frac;       /* lossy streaming: messages sent but never received */
	double cdf_q[BENCH_CDF_POINTS], cdf_ns[BENCH_CDF_POINTS];
	unsigned ncdf;
};

/* The floor's round trips take the next of BENCH_FLOOR_LINES lines in turn, line k at
 * offset 64 k of page k % BENCH_FLOOR_PAGES: what one line costs depends on its address
 * (the L3 slice it belongs to: 180 to 450 ns here for lines of one placement, the same
 * line alike from one run to the next), and a ring's messages use many lines. */
#define BENCH_FLOOR_LINES 64u
#define BENCH_FLOOR_PAGES 16u
struct bench_floor_line {
	_Alignas(64) _Atomic uint64_t w;
};

/* Shared between the two processes of a test (MAP_SHARED, made before fork). */
struct bench_shared {
	_Alignas(4096) struct bench_floor_line floor[BENCH_FLOOR_PAGES][BENCH_FLOOR_LINES];
	_Alignas(BENCH_LINE) _Atomic uint32_t fx_a;   /* futex: client -> server */
	_Alignas(BENCH_LINE) _Atomic uint32_t fx_b;   /* futex: server -> client */
	_Alignas(BENCH_LINE) _Atomic uint64_t c_end_ns;  /* consumers: last STOP arrived */
	_Atomic uint64_t c_msgs;      /* consumers: messages received (STOP excluded) */
	_Atomic uint64_t c_bad;       /* consumer: stamps out of sequence (going back) */
	_Atomic uint64_t c_lost;      /* consumer: stamps skipped (gaps) */
	_Atomic int c_rc;             /* a child's error, if any */
	char c_err[256];
	/* streaming producers, by index: messages sent in all, timed ones, timed start */
	_Atomic uint64_t p_sent[BENCH_MAX_PROCS], p_msgs[BENCH_MAX_PROCS], p_t0[BENCH_MAX_PROCS];
	_Atomic uint32_t p_done;      /* producers that finished (mpmc: then the STOPs) */
	_Atomic uint32_t c_stopped;   /* consumers that saw their STOP */
};

/* One side of a running test. */
struct bench_ctx {
	const struct bench_spec *spec;
	const struct bench_cfg *cfg;
	struct bench_shared *sh;
	int side;                /* 0: client / producer, 1: server / consumer */
	unsigned index;          /* among the processes of this side (0: the parent) */
	void *priv;              /* transport state, made by setup() before fork */
	uint8_t *buf;            /* private payload buffer, spec->size bytes (prefaulted) */
	uint8_t *rbuf;           /* private receive buffer, spec->size bytes */
	/* filled by the side-0 loop */
	uint64_t *samples;       /* RTT samples in ticks */
	uint64_t nsamples, cap;
	uint64_t t0_ns, msgs;    /* streaming: start of the timed part, messages sent */
	uint64_t spin_ticks;     /* cfg->spin_us in ticks */
	uint64_t warm_ticks, budget_ticks;
	double wake_per_msg, sleeps_per_msg;
	char err[160];
};

/* caps */
#define BENCH_CAP_RTT (1u << 0)
#define BENCH_CAP_STREAM (1u << 1)
#define BENCH_CAP_ZC (1u << 2)       /* has a zero-copy mode */
#define BENCH_CAP_COPY (1u << 3)     /* has a copy mode */
#define BENCH_CAP_SAME (1u << 4)     /* a same-CPU run teaches something */
#define BENCH_CAP_BATCH (1u << 5)    /* streaming with batches */
#define BENCH_CAP_SIZES (1u << 6)    /* runs at every size (else only its own) */
#define BENCH_CAP_SHMRING (1u << 7)  /* a shmring kind (gets ratios) */
#define BENCH_CAP_CLASSIC (1u << 8)  /* a classic mechanism (the "best classic") */
#define BENCH_CAP_MULTI (1u << 10)   /* streaming with 2 and 4 producers / consumers */
#define BENCH_CAP_LOSSY (1u << 9)    /* may drop messages by design (bcast: readers
				      * are lapped); streaming counts what arrived */

struct bench_transport {
	const char *name;
	unsigned caps;
	size_t own_size;         /* size reported when !BENCH_CAP_SIZES */
	size_t max_size;         /* largest message it runs at; 0: any */
	unsigned max_batch;      /* BENCH_CAP_BATCH: largest batch it takes; 0: any */
	/* parent, before fork: make what both sides need (state in c->priv / c->sh) */
	int (*setup)(struct bench_ctx *c);
	/* each side, after fork */
	int (*attach)(struct bench_ctx *c);
	int (*rtt)(struct bench_ctx *c);
	int (*stream)(struct bench_ctx *c);
	void (*detach)(struct bench_ctx *c);
	/* parent, after the child exited: stats, then remove what setup made */
	void (*finish)(struct bench_ctx *c);
	void (*teardown)(struct bench_ctx *c);
};

/* ---- transports ---- */
extern const struct bench_transport bench_tr_floor, bench_tr_futex, bench_tr_memcpy;
extern const struct bench_transport bench_tr_pipe, bench_tr_fifo, bench_tr_uds_stream,
	bench_tr_uds_dgram, bench_tr_tcp, bench_tr_posix_mq, bench_tr_sysv_mq;
extern const struct bench_transport *const bench_shmring_transports[];

/* ---- process harness (proc.c) ---- */

extern volatile sig_atomic_t bench_abort; /* set by the watchdog: every loop gives up */

int bench_pin(int cpu);
/* The CPU of producer / client `index` (side 0) or consumer / server `index` (side 1). */
int bench_cpu_of(const struct bench_cfg *cfg, int side, unsigned index, int same_cpu);
/* Parse a comma-separated list of numbers in [lo, hi] (with ranges: also "A-B") into
 * out: how many (at most max), or -1. */
int bench_parse_list(const char *list, long lo, long hi, int ranges, long *out, unsigned max);
/* Parse a CPU list ("0,1", "0-15", "0-3,8-11") into cfg->cpus: 0, or -1 if it is not
 * a list of at least 2 and at most BENCH_MAX_CPUS distinct CPUs that this process may
 * run on. */
int bench_parse_cpus(struct bench_cfg *cfg, const char *list);
/* Run one test (both processes) and fill r. Returns 0 if it ran. */
int bench_run(const struct bench_spec *s, const struct bench_cfg *cfg, struct bench_result *r);
/* The floor's RTT p50 in ns, measured now with a short ping-pong (its p99 in *p99). */
double bench_probe(const struct bench_cfg *cfg, double *p99);
/* The floor reference for r: mean of the probes before and after it. */
double bench_floor_p50(const struct bench_result *r);
double bench_floor_p99(const struct bench_result *r);
/* 1 if the CPUs moved during the test: the two probes around r disagree, or a cross-CPU
 * round trip came out under 0.75x the floor probed around it. */
int bench_moved(const struct bench_result *r);
/* 1 if a and b ran with the CPUs in the same placement (floor probes within 30%). */
int bench_same_place(const struct bench_result *a, const struct bench_result *b);
/* Single-process cold memcpy bandwidth at s->size. */
int bench_memcpy(const struct bench_spec *s, const struct bench_cfg *cfg,
		 struct bench_result *r);
int bench_fail(struct bench_ctx *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Iteration control shared by every transport's loops.
 *
 * RTT, side 0: bench_rtt_begin(), then after each completed round trip
 * bench_rtt_next(), which returns 1 when the run is over (then send BENCH_STOP). The
 * first round trips until warm_s are warm-up; each later one is a sample (consecutive
 * TSC differences, so one TSC read per sample).
 *
 * Streaming, side 0: bench_stream_begin(), bench_stream_sent(n) after each n messages
 * (1 when the run is over), bench_stream_end() after sending BENCH_STOP. The clock is
 * read only every few messages, so it does not slow small messages down.
 *
 * Side 1 (both tests): bench_rx() for every stamp received; 1 on BENCH_STOP.
 */
struct bench_loop {
	uint64_t seq;        /* next sequence number to send */
	uint64_t first;      /* streaming: first timed message */
	uint64_t warm_end, deadline, t_prev;
	int64_t left;
	unsigned every;
	int timed;
};

static inline void bench_rtt_begin(struct bench_ctx *c, struct bench_loop *L)
{
	__builtin_memset(L, 0, sizeof *L);
	L->warm_end = bench_ticks() + c->warm_ticks;
}

static inline int bench_rtt_next(struct bench_ctx *c, struct bench_loop *L)
{
	uint64_t t = bench_ticks();
	L->seq++;
	if (shmring_bench_unlikely(!L->timed)) {
		if (t >= L->warm_end) {
			L->timed = 1;
			L->t_prev = t;
			L->deadline = t + c->budget_ticks;
		}
		return bench_abort != 0;
	}
	c->samples[c->nsamples++] = t - L->t_prev;
	L->t_prev = t;
	return c->nsamples >= c->cap || (c->nsamples >= c->cfg->min_iters && t >= L->deadline) ||
	       bench_abort;
}

int bench_stream_check(struct bench_ctx *c, struct bench_loop *L);

static inline void bench_stream_begin(struct bench_ctx *c, struct bench_loop *L)
{
	__builtin_memset(L, 0, sizeof *L);
	L->every = c->spec->size <= 256 ? 256 : c->spec->size <= 65536 ? 16 : 1;
	L->left = L->every;
	L->warm_end = bench_ticks() + c->warm_ticks;
}

static inline int bench_stream_sent(struct bench_ctx *c, struct bench_loop *L, unsigned n)
{
	L->seq += n;
	if ((L->left -= n) > 0)
		return 0;
	return bench_stream_check(c, L);
}

void bench_stream_end(struct bench_ctx *c, struct bench_loop *L);

struct bench_rx {
	uint64_t expect, count, bad, lost;
};

int bench_rx_stop(struct bench_ctx *c, struct bench_rx *rx);

static inline int bench_rx(struct bench_ctx *c, struct bench_rx *rx, uint64_t stamp)
{
	if (shmring_bench_unlikely(stamp == BENCH_STOP))
		return bench_rx_stop(c, rx);
	if (shmring_bench_unlikely(stamp != rx->expect)) {
		if (stamp > rx->expect && stamp < BENCH_STOP - 1)
			rx->lost += stamp - rx->expect; /* a gap: lost, if the transport may */
		else
			rx->bad++;
	}
	rx->expect = stamp + 1;
	rx->count++;
	return 0;
}

/* Stamps. */
static inline void bench_stamp(uint8_t *p, size_t len, uint64_t seq)
{
	__builtin_memcpy(p, &seq, 8);
	if (len >= 16)
		__builtin_memcpy(p + len - 8, &seq, 8);
}
/* Returns the stamp, or BENCH_STOP - 1 when the two copies disagree (torn). */
static inline uint64_t bench_unstamp(const uint8_t *p, size_t len)
{
	uint64_t a, b;
	__builtin_memcpy(&a, p, 8);
	if (len < 16)
		return a;
	__builtin_memcpy(&b, p + len - 8, 8);
	return a == b ? a : BENCH_STOP - 1;
}
/* Stamps in shared memory read with relaxed atomics: the ordering comes from the
 * transport's acquire, and the peer may be writing the next lap (never torn by design,
 * but the compiler must not assume it). */
static inline void bench_stamp_shared(uint8_t *p, size_t len, uint64_t seq)
{
	atomic_store_explicit((_Atomic uint64_t *)(void *)p, seq, memory_order_relaxed);
	if (len >= 16)
		atomic_store_explicit((_Atomic uint64_t *)(void *)(p + ((len - 8) & ~(size_t)7)),
				      seq, memory_order_relaxed);
}
static inline uint64_t bench_unstamp_shared(const uint8_t *p, size_t len)
{
	uint64_t a = atomic_load_explicit((_Atomic uint64_t *)(void *)p, memory_order_relaxed);
	if (len < 16)
		return a;
	uint64_t b = atomic_load_explicit(
		(_Atomic uint64_t *)(void *)(p + ((len - 8) & ~(size_t)7)), memory_order_relaxed);
	return a == b ? a : BENCH_STOP - 1;
}

/* ---- stats (stats.c) ---- */
void bench_stats(struct bench_result *r, uint64_t *ticks, uint64_t n);

/* ---- output (output.c) ---- */
enum bench_fmt { BENCH_FMT_TABLE, BENCH_FMT_JSON, BENCH_FMT_CSV };
void bench_print(enum bench_fmt f, const struct bench_result *rs, size_t n,
		 const struct bench_cfg *cfg);
int bench_write_cdf(const char *path, const struct bench_result *rs, size_t n);
const char *bench_test_name(enum bench_test t);
const char *bench_mode_name(enum bench_mode m);
const char *bench_place_name(const struct bench_spec *s); /* cross, same or single */
void bench_print_machine(void);
double bench_loadavg(void);

#endif /* SHMRING_BENCH_H */
