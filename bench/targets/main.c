/* SPDX-License-Identifier: MIT */
/*
 * shmring-targets: see targets.h. The client (CPU A) tells the server (CPU B) which
 * variant the next block uses through a command line of its own, waits for the
 * server's acknowledgement, then times each round trip of the block (one TSC read per
 * round trip, as shmring-bench). Per block it keeps p50 and p99; per cycle (one block of
 * every variant) the ratios; the figures are medians over the cycles.
 */
#include "targets.h"

#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARM_CYCLES 3
#define STOP_CMD 0xffu

static const struct tg_variant *const variants[] = {
	&tg_floor,    &tg_floor64,     &tg_ring1,    &tg_ring2,   &tg_ring2d,
	&tg_handoff,  &tg_handoffd,    &tg_handoff4k, &tg_spsc64, &tg_spsc64d,
	&tg_pool1080, &tg_pool1080d,   &tg_pool4k,   &tg_futex,   &tg_spsc_blocking,
};
#define NV (sizeof variants / sizeof variants[0])
enum {
	V_FLOOR, V_FLOOR64, V_RING1, V_RING2, V_RING2D, V_HANDOFF, V_HANDOFFD, V_HANDOFF4K,
	V_SPSC, V_SPSCD, V_POOL1080, V_POOL1080D, V_POOL4K, V_FUTEX, V_SPSCB
};

/* A variant runs in this process pair if it can: on one CPU only the blocking ones
 * (a spinning wait there costs a scheduler tick). */
static int active(unsigned v, int one_cpu)
{
	return !one_cpu || variants[v]->blocking;
}

/* Round trips per block: a blocking one costs 10-100x a spinning one, so its blocks
 * are a tenth as long (at least 20 round trips). */
static int block_len(unsigned v, int per)
{
	return !variants[v]->blocking ? per : per / 10 > 20 ? per / 10 : 20;
}

/* The command line: the client writes (block << 8 | variant), the server acknowledges
 * the block on its own line. */
struct cmd {
	_Alignas(64) _Atomic uint64_t cmd;
	_Alignas(64) _Atomic uint64_t ack;
};

int tg_spin_slow(const struct tg_ctx *c, unsigned n)
{
	if (c->side == 0) {
		int st;
		if (waitpid(c->peer, &st, WNOHANG) == c->peer)
			return -ESRCH;
	} else if (getppid() != c->peer) {
		return -ESRCH;
	}
	if (c->one_cpu && n > 0) {
		/* the peer needs this CPU, and sched_yield() may give it back to us at once:
		 * a short sleep lets the peer run (only the command handshake gets here) */
		struct timespec ts = {0, 1000};
		nanosleep(&ts, NULL);
	} else if (n >= (1u << 20)) {
		sched_yield();
	}
	return 0;
}

static int server(struct tg_ctx *c, struct cmd *k, int per, int ready)
{
	int rc = tg_lib_attach(c);
	if (rc) {
		fprintf(stderr, "shmring-targets: server: attach: %s\n", shmring_strerror(rc));
		return 1;
	}
	char ch = 1;
	if (write(ready, &ch, 1) != 1)
		return 1;
	uint64_t seq[NV] = {0};
	for (uint64_t b = 1;; b++) {
		unsigned n = 0;
		uint64_t v;
		/* pairs with the client's release store of the command */
		while (((v = atomic_load_explicit(&k->cmd, memory_order_acquire)) >> 8) != b)
			if ((rc = tg_spin(c, &n)) != 0)
				return 1;
		v &= 0xff;
		if (v == STOP_CMD)
			return 0;
		if (v >= NV)
			return 1;
		/* pairs with the client's acquire in tg_wait_eq() */
		atomic_store_explicit(&k->ack, b, memory_order_release);
		for (int i = 0, len = block_len((unsigned)v, per); i < len; i++)
			if ((rc = variants[v]->trip(c, ++seq[v], 1, variants[v]->arg)) != 0) {
				fprintf(stderr, "shmring-targets: server: %s: %s\n", variants[v]->name,
					shmring_strerror(rc));
				return 1;
			}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static double pct_u64(const uint64_t *s, int n, double q)
{
	int k = (int)(q * n + 0.999999);
	return (double)s[k < 1 ? 0 : k > n ? n - 1 : k - 1];
}

struct quart {
	double med, q1, q3;
};

static struct quart quartiles(double *x, int n)
{
	qsort(x, (size_t)n, sizeof *x, cmp_dbl);
	return (struct quart){x[n / 2], x[n / 4], x[(3 * n) / 4]};
}

struct figures {
	int cycles;
	double (*p50)[NV], (*p99)[NV]; /* ns, per cycle */
	double *tmp;
};

/* Median over the cycles of a[v] (b < 0) or of the paired ratio a[v] / a[b]. */
static struct quart over_cycles(const struct figures *f, double (*a)[NV], int v, int b)
{
	for (int i = 0; i < f->cycles; i++)
		f->tmp[i] = b < 0 ? a[i][v] : a[i][v] / a[i][b];
	return quartiles(f->tmp, f->cycles);
}

struct target {
	const char *what;
	int v, b, p99;
	double limit;
	const char *shape; /* what the ideal shape of the same kind gives (NULL: b is one) */
	int sv, sb;
};

static const struct target targets[] = {
	{"spsc 64 B RTT p50 / floor-64 p50", V_SPSC, V_FLOOR64, 0, 1.5, "ideal-ring2 / floor-64", V_RING2, V_FLOOR64},
	{"spsc 64 B RTT p99 / floor-64 p99", V_SPSC, V_FLOOR64, 1, 2.0, "ideal-ring2 / floor-64", V_RING2, V_FLOOR64},
	{"  the same, set_demote: p50", V_SPSCD, V_FLOOR64, 0, 1.5, "ideal-ring2-dem / floor-64", V_RING2D, V_FLOOR64},
	{"  the same, set_demote: p99", V_SPSCD, V_FLOOR64, 1, 2.0, "ideal-ring2-dem / floor-64", V_RING2D, V_FLOOR64},
	{"pool 1080p RTT p50 / spsc 64 B p50", V_POOL1080, V_SPSC, 0, 1.2, "ideal-handoff / ideal-ring2", V_HANDOFF, V_RING2},
	{"pool 4K RTT p50 / spsc 64 B p50", V_POOL4K, V_SPSC, 0, 1.2, "ideal-handoff-4k / ideal-ring2", V_HANDOFF4K, V_RING2},
	{"  both demoting: 1080p-dem / spsc-64-dem", V_POOL1080D, V_SPSCD, 0, 1.2, "ideal-handoff-dem / ideal-ring2-dem", V_HANDOFFD, V_RING2D},
	{"spsc-blocking RTT p50 / futex p50", V_SPSCB, V_FUTEX, 0, 1.15, NULL, 0, 0},
};

/* What separates the library from the shape it has. */
static const int overheads[][2] = {
	{V_FLOOR64, V_FLOOR},    {V_RING1, V_FLOOR64},     {V_RING2, V_RING1},
	{V_RING2D, V_RING2},     {V_SPSC, V_RING2},        {V_SPSCD, V_RING2D},
	{V_SPSCD, V_SPSC},       {V_POOL1080, V_HANDOFF},  {V_POOL4K, V_HANDOFF4K},
	{V_HANDOFF4K, V_HANDOFF}, {V_POOL4K, V_POOL1080},  {V_HANDOFFD, V_HANDOFF},
	{V_POOL1080D, V_HANDOFFD}, {V_POOL1080D, V_POOL1080},
};

static void report(const struct figures *f, int per, const int cpus[2], int one_cpu, int json)
{
	int nact = 0;
	for (unsigned v = 0; v < NV; v++)
		nact += active(v, one_cpu);
	if (!json) {
		printf("shmring-targets: %d cycles of %d variants x %d round trips (blocking: %d), "
		       "CPUs %d,%d; medians over the cycles, ratios paired within a cycle\n\n",
		       f->cycles, nact, per, block_len(V_FUTEX, per), cpus[0], cpus[one_cpu ? 0 : 1]);
		printf("%-15s %-54s %7s %7s%s\n", "variant", "what", "p50 ns", "p99 ns",
		       one_cpu ? "" : "  p50 x floor-64 (quartiles)");
	}
	for (unsigned v = 0; v < NV; v++) {
		if (!active(v, one_cpu))
			continue;
		struct quart p50 = over_cycles(f, f->p50, (int)v, -1);
		struct quart p99 = over_cycles(f, f->p99, (int)v, -1);
		struct quart xf = {0}, xf99 = {0};
		if (!one_cpu) {
			xf = over_cycles(f, f->p50, (int)v, V_FLOOR64);
			xf99 = over_cycles(f, f->p99, (int)v, V_FLOOR64);
		}
		if (json && one_cpu) /* no floor on one CPU: the ratios were not measured */
			printf("{\"test\":\"paired-rtt\",\"variant\":\"%s\",\"same_cpu\":true,"
			       "\"p50_ns\":%.0f,\"p99_ns\":%.0f,"
			       "\"x_floor\":null,\"x_floor_q1\":null,\"x_floor_q3\":null,"
			       "\"x_floor_p99\":null,\"cycles\":%d,\"per_block\":%d}\n",
			       variants[v]->name, p50.med, p99.med, f->cycles, block_len(v, per));
		else if (json)
			printf("{\"test\":\"paired-rtt\",\"variant\":\"%s\",\"same_cpu\":false,"
			       "\"p50_ns\":%.0f,\"p99_ns\":%.0f,"
			       "\"x_floor\":%.3f,\"x_floor_q1\":%.3f,\"x_floor_q3\":%.3f,"
			       "\"x_floor_p99\":%.3f,\"cycles\":%d,\"per_block\":%d}\n",
			       variants[v]->name, p50.med, p99.med, xf.med,
			       xf.q1, xf.q3, xf99.med, f->cycles, block_len(v, per));
		else if (one_cpu)
			printf("%-15s %-54s %7.0f %7.0f\n", variants[v]->name, variants[v]->what,
			       p50.med, p99.med);
		else
			printf("%-15s %-54s %7.0f %7.0f  %.2f (%.2f-%.2f)\n", variants[v]->name,
			       variants[v]->what, p50.med, p99.med, xf.med, xf.q1, xf.q3);
	}
	if (!json && !one_cpu)
		printf("\n%-40s %s\n", "what the shape costs, what shmring adds", "paired p50 ratio");
	for (unsigned i = 0; i < sizeof overheads / sizeof overheads[0] && !one_cpu; i++) {
		int v = overheads[i][0], b = overheads[i][1];
		struct quart r = over_cycles(f, f->p50, v, b);
		char what[80];
		snprintf(what, sizeof what, "%s / %s", variants[v]->name, variants[b]->name);
		if (json)
			printf("{\"test\":\"paired-ratio\",\"what\":\"%s\",\"ratio\":%.3f,\"q1\":%.3f,"
			       "\"q3\":%.3f}\n", what, r.med, r.q1, r.q3);
		else
			printf("%-40s %.2f (%.2f-%.2f)\n", what, r.med, r.q1, r.q3);
	}
	if (!json)
		printf("\n%-36s %6s %6s %-5s %s\n", "target", "ratio", "limit", "", "its ideal shape");
	for (unsigned i = 0; i < sizeof targets / sizeof targets[0]; i++) {
		const struct target *t = &targets[i];
		if (!active((unsigned)t->v, one_cpu) || !active((unsigned)t->b, one_cpu))
			continue;
		double (*a)[NV] = t->p99 ? f->p99 : f->p50;
		struct quart r = over_cycles(f, a, t->v, t->b);
		struct quart s = {0};
		if (t->shape)
			s = over_cycles(f, a, t->sv, t->sb);
		const char *verdict = r.med <= t->limit ? "PASS" : "MISS";
		if (json) {
			printf("{\"test\":\"paired-target\",\"target\":\"%s\",\"same_cpu\":%s,"
			       "\"ratio\":%.3f,\"q1\":%.3f,\"q3\":%.3f,\"limit\":%.2f,\"pass\":%s,",
			       t->what, one_cpu ? "true" : "false", r.med, r.q1, r.q3, t->limit,
			       r.med <= t->limit ? "true" : "false");
			if (t->shape) /* a target without an ideal shape measured none: null */
				printf("\"shape\":\"%s\",\"shape_ratio\":%.3f}\n", t->shape, s.med);
			else
				printf("\"shape\":null,\"shape_ratio\":null}\n");
		}
		else if (t->shape)
			printf("%-36s %6.2f %6.2f %-5s %s: %.2f\n", t->what, r.med, t->limit, verdict,
			       t->shape, s.med);
		else
			printf("%-36s %6.2f %6.2f %-5s (quartiles %.2f-%.2f)\n", t->what, r.med,
			       t->limit, verdict, r.q1, r.q3);
	}
}

static void usage(FILE *o)
{
	fprintf(o, "usage: shmring-targets [--cycles N] [--per N] [--cpus A,B] [--same-cpu] [--json]\n"
		   "  --cycles N  turns of every variant (default 200; 3 more warm up)\n"
		   "  --per N     round trips per block (default 2000; blocking variants a tenth)\n"
		   "  --cpus A,B  the client's and the server's CPU (default 0,1)\n"
		   "  --same-cpu  both on CPU A, the blocking variants only\n"
		   "  --json      one JSON object per line\n");
}

int main(int argc, char **argv)
{
	int cycles = 200, per = 2000, json = 0, one_cpu = 0, cpus[2] = {0, 1};
	static const struct option opts[] = {
		{"cycles", required_argument, NULL, 'c'}, {"per", required_argument, NULL, 'p'},
		{"cpus", required_argument, NULL, 'C'},   {"json", no_argument, NULL, 'j'},
		{"same-cpu", no_argument, NULL, 's'},     {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end = NULL;
		switch (o) {
		case 'c':
			cycles = (int)strtol(optarg, &end, 10);
			break;
		case 'p':
			per = (int)strtol(optarg, &end, 10);
			break;
		case 'C':
			if (sscanf(optarg, "%d,%d", &cpus[0], &cpus[1]) != 2 || cpus[0] == cpus[1]) {
				fprintf(stderr, "shmring-targets: --cpus wants two different CPUs, A,B\n");
				return 2;
			}
			break;
		case 'j':
			json = 1;
			break;
		case 's':
			one_cpu = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (end && (*end || end == optarg)) {
			fprintf(stderr, "shmring-targets: not a number: %s\n", optarg);
			return 2;
		}
	}
	if (optind < argc || cycles < 4 || cycles > 100000 || per < 100 || per > 10000000) {
		fprintf(stderr, "shmring-targets: --cycles wants 4 or more, --per 100 or more\n");
		return 2;
	}
	struct tg_ctx c = {.one_cpu = one_cpu};
	struct cmd *k = mmap(NULL, sizeof *k, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			     -1, 0);
	int rc = k == MAP_FAILED ? -errno : tg_ideal_setup(&c);
	if (rc == 0)
		rc = tg_lib_setup(&c);
	if (rc) {
		fprintf(stderr, "shmring-targets: setup: %s\n", shmring_strerror(rc));
		return 1;
	}
	uint64_t *t = malloc(sizeof *t * (size_t)per);
	struct figures f = {
		.cycles = cycles, .p50 = calloc((size_t)cycles, sizeof *f.p50),
		.p99 = calloc((size_t)cycles, sizeof *f.p99), .tmp = calloc((size_t)cycles, sizeof(double)),
	};
	int ready[2];
	if (!t || !f.p50 || !f.p99 || !f.tmp || pipe(ready) != 0) {
		fprintf(stderr, "shmring-targets: out of memory\n");
		return 1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		perror("shmring-targets: fork");
		return 1;
	}
	if (pid == 0) {
		close(ready[0]);
		int cpu = cpus[one_cpu ? 0 : 1];
		if ((rc = bench_pin(cpu)) != 0) {
			fprintf(stderr, "shmring-targets: CPU %d: %s\n", cpu, strerror(-rc));
			_exit(1);
		}
		c.side = 1;
		c.peer = parent;
		_exit(server(&c, k, per, ready[1]));
	}
	c.peer = pid;
	close(ready[1]);
	char ch;
	if ((rc = bench_pin(cpus[0])) != 0 || read(ready[0], &ch, 1) != 1) {
		fprintf(stderr, "shmring-targets: %s\n",
			rc ? strerror(-rc) : "the server did not start");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return 1;
	}
	bench_clock_init(0);
	uint64_t seq[NV] = {0}, b = 0;
	for (int cy = -WARM_CYCLES; cy < cycles && rc == 0; cy++)
		for (unsigned v = 0; v < NV && rc == 0; v++) {
			if (!active(v, one_cpu))
				continue;
			b++;
			/* pairs with the server's acquire load of the command */
			atomic_store_explicit(&k->cmd, b << 8 | v, memory_order_release);
			/* pairs with the server's release store of the acknowledgement */
			if ((rc = tg_wait_eq(&c, &k->ack, b)) != 0) {
				fprintf(stderr, "shmring-targets: the server did not take block %llu: %s\n",
					(unsigned long long)b, shmring_strerror(rc));
				break;
			}
			int len = block_len(v, per);
			uint64_t t0 = bench_ticks();
			for (int i = 0; i < len && rc == 0; i++) {
				rc = variants[v]->trip(&c, ++seq[v], 0, variants[v]->arg);
				uint64_t t1 = bench_ticks();
				t[i] = t1 - t0;
				t0 = t1;
			}
			if (rc) {
				fprintf(stderr, "shmring-targets: %s: %s\n", variants[v]->name,
					shmring_strerror(rc));
				break;
			}
			if (cy < 0)
				continue;
			qsort(t, (size_t)len, sizeof *t, cmp_u64);
			f.p50[cy][v] = bench_ticks_ns((uint64_t)pct_u64(t, len, 0.50));
			f.p99[cy][v] = bench_ticks_ns((uint64_t)pct_u64(t, len, 0.99));
		}
	if (rc == 0)
		atomic_store_explicit(&k->cmd, (b + 1) << 8 | STOP_CMD, memory_order_release);
	else
		kill(pid, SIGKILL);
	int st = 0;
	waitpid(pid, &st, 0);
	if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		fprintf(stderr, "shmring-targets: the server failed\n");
		rc = -EIO;
	}
	if (rc)
		return 1;
	report(&f, per, cpus, one_cpu, json);
	return 0;
}
