/* SPDX-License-Identifier: MIT */
/*
 * shmring-bench: shmring against the cache-line floor and the classic IPC mechanisms,
 * cross-process, pinned, in one run. See bench/RESULTS.md for how to read it.
 */
#include "bench.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const size_t rtt_sizes[] = {64, 4096, 65536, 3110400, 12441600};
static const size_t stream_sizes[] = {8, 64, 4096, 65536, 3110400, 12441600};
static const size_t memcpy_sizes[] = {65536, 3110400, 12441600};

static const struct bench_transport *const classic[] = {
	&bench_tr_pipe, &bench_tr_fifo, &bench_tr_uds_stream, &bench_tr_uds_dgram,
	&bench_tr_tcp, &bench_tr_posix_mq, &bench_tr_sysv_mq, NULL,
};

struct plan {
	struct bench_spec *v;
	size_t n, cap;
	char **filters;
	size_t nfilters;
	char **owned; /* the strings the filters point into */
	size_t nowned;
};

static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->nowned; i++)
		free(p->owned[i]);
	free(p->owned);
	free(p->filters);
	free(p->v);
}

static int wanted(const struct plan *p, const char *id)
{
	if (p->nfilters == 0)
		return 1;
	for (size_t i = 0; i < p->nfilters; i++) {
		const char *f = p->filters[i];
		if (strpbrk(f, "*?[") ? fnmatch(f, id, 0) == 0 : strstr(id, f) != NULL)
			return 1;
	}
	return 0;
}

static void add_np(struct plan *p, enum bench_test t, const struct bench_transport *tr,
		   size_t size, enum bench_mode mode, int same, unsigned batch, unsigned np)
{
	struct bench_spec s = {.test = t, .tr = tr, .size = size, .mode = mode,
			       .same_cpu = same, .batch = batch ? batch : 1,
			       .nprod = np ? np : 1, .ncons = np ? np : 1};
	int k = snprintf(s.id, sizeof s.id, "%s/%s/%zu/%s/%s", bench_test_name(t), tr->name, size,
			 bench_mode_name(mode), bench_place_name(&s));
	if (s.batch > 1)
		k += snprintf(s.id + k, sizeof s.id - (size_t)k, "/b%u", s.batch);
	if (s.nprod > 1)
		snprintf(s.id + k, sizeof s.id - (size_t)k, "/p%uc%u", s.nprod, s.ncons);
	if (!wanted(p, s.id))
		return;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		p->v = realloc(p->v, p->cap * sizeof *p->v);
		if (!p->v) {
			perror("realloc");
			exit(2);
		}
	}
	p->v[p->n++] = s;
}

static void add(struct plan *p, enum bench_test t, const struct bench_transport *tr, size_t size,
		enum bench_mode mode, int same, unsigned batch)
{
	add_np(p, t, tr, size, mode, same, batch, 1);
}

static int fits(const struct bench_transport *tr, size_t size)
{
	return tr->max_size == 0 || size <= tr->max_size;
}

static void add_modes(struct plan *p, enum bench_test t, const struct bench_transport *tr,
		      size_t size, int same, unsigned batch)
{
	if (!fits(tr, size) || (!(tr->caps & BENCH_CAP_SIZES) && size != tr->own_size))
		return;
	if (tr->caps & BENCH_CAP_ZC)
		add(p, t, tr, size, BENCH_ZC, same, batch);
	if (tr->caps & BENCH_CAP_COPY)
		add(p, t, tr, size, BENCH_COPY, same, batch);
}

static void make_plan(struct plan *p, unsigned batch, const struct bench_cfg *cfg)
{
	const struct bench_transport *const *sh = bench_shmring_transports;
	/* round trips */
	add(p, BENCH_RTT, &bench_tr_floor, bench_tr_floor.own_size, BENCH_ZC, 0, 1);
	add(p, BENCH_RTT, &bench_tr_futex, bench_tr_futex.own_size, BENCH_ZC, 0, 1);
	for (size_t i = 0; i < sizeof rtt_sizes / sizeof rtt_sizes[0]; i++) {
		for (size_t k = 0; classic[k]; k++)
			add(p, BENCH_RTT, classic[k], rtt_sizes[i], BENCH_COPY, 0, 1);
		for (size_t k = 0; sh[k]; k++)
			if (sh[k]->caps & BENCH_CAP_RTT)
				add_modes(p, BENCH_RTT, sh[k], rtt_sizes[i], 0, 1);
	}
	/* same CPU: what the wakeup costs without crossing CPUs */
	add(p, BENCH_RTT, &bench_tr_futex, bench_tr_futex.own_size, BENCH_ZC, 1, 1);
	for (size_t k = 0; classic[k]; k++)
		if (classic[k]->caps & BENCH_CAP_SAME)
			add(p, BENCH_RTT, classic[k], 64, BENCH_COPY, 1, 1);
	for (size_t k = 0; sh[k]; k++)
		if ((sh[k]->caps & BENCH_CAP_SAME) && (sh[k]->caps & BENCH_CAP_RTT))
			add_modes(p, BENCH_RTT, sh[k], 64, 1, 1);
	/* streaming */
	for (size_t i = 0; i < sizeof stream_sizes / sizeof stream_sizes[0]; i++) {
		size_t s = stream_sizes[i];
		if (s == bench_tr_floor.own_size)
			add(p, BENCH_STREAM, &bench_tr_floor, s, BENCH_ZC, 0, 1);
		for (size_t k = 0; classic[k]; k++)
			add(p, BENCH_STREAM, classic[k], s, BENCH_COPY, 0, 1);
		for (size_t k = 0; sh[k]; k++) {
			if (!(sh[k]->caps & BENCH_CAP_STREAM))
				continue;
			add_modes(p, BENCH_STREAM, sh[k], s, 0, 1);
			/* the batch asked for, and a large one: a batch amortises the
			 * publication and the line of the first header, and how far that goes
			 * is part of what a user wants to know */
			if ((sh[k]->caps & BENCH_CAP_BATCH) && s <= 64 && batch > 1 &&
			    (!sh[k]->max_batch || batch <= sh[k]->max_batch)) {
				/* (a batch beyond what the transport takes would run smaller
				 * than its name says) */
				add_modes(p, BENCH_STREAM, sh[k], s, 0, batch);
				if (!sh[k]->max_batch || 8 * batch <= sh[k]->max_batch)
					add_modes(p, BENCH_STREAM, sh[k], s, 0, 8 * batch);
			}
		}
	}
	/* several producers and consumers (work distribution) */
	for (size_t k = 0; sh[k]; k++) {
		if (!(sh[k]->caps & BENCH_CAP_MULTI))
			continue;
		for (unsigned i = 0; i < cfg->nprocs; i++) {
			unsigned np = cfg->procs[i];
			if (np > 1 || !(sh[k]->caps & BENCH_CAP_STREAM)) {
				add_np(p, BENCH_STREAM, sh[k], 64, BENCH_ZC, 0, 1, np);
				add_np(p, BENCH_STREAM, sh[k], 64, BENCH_COPY, 0, 1, np);
			}
		}
	}
	for (size_t i = 0; i < sizeof memcpy_sizes / sizeof memcpy_sizes[0]; i++)
		add(p, BENCH_MEMCPY, &bench_tr_memcpy, memcpy_sizes[i], BENCH_COPY, 0, 1);
}

/* A number option: the whole argument a number in [lo, hi] (whole: an integer), else
 * one line and -1. */
static int num_opt(const char *opt, const char *arg, double lo, double hi, int whole,
		   double *out)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v >= lo && v <= hi) || (whole && v != (double)(uint64_t)v)) {
		fprintf(stderr, "shmring-bench: --%s %s: want %s from %g to %g\n", opt, arg,
			whole ? "a whole number" : "a number", lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_procs(struct bench_cfg *cfg, const char *list)
{
	long v[BENCH_MAX_PROCS];
	int n = bench_parse_list(list, 1, BENCH_MAX_PROCS, 0, v, BENCH_MAX_PROCS);
	if (n < 1)
		return -1;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (v[j] == v[i])
				return -1; /* each count once: a test planned twice is run twice */
	for (int i = 0; i < n; i++)
		cfg->procs[i] = (unsigned)v[i];
	cfg->nprocs = (unsigned)n;
	return 0;
}

/* "0 and 1", or the list and how it is split. */
static const char *cpus_text(const struct bench_cfg *cfg, char *buf, size_t len)
{
	if (cfg->ncpus == 2) {
		snprintf(buf, len, "%d and %d", cfg->cpus[0], cfg->cpus[1]);
		return buf;
	}
	size_t k = 0;
	for (unsigned i = 0; i < cfg->ncpus && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%d", i ? "," : "", cfg->cpus[i]);
	if (k < len)
		snprintf(buf + k, len - k, " (producers on the first %u, consumers on the rest)",
			 cfg->ncpus / 2);
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmring-bench [options]\n"
		"  --quick           the whole suite in well under a minute (short runs)\n"
		"  --json            one JSON object per line instead of the table\n"
		"  --csv             CSV instead of the table\n"
		"  --cdf FILE        also write latency CDF points (for bench/plot.py)\n"
		"  --save PREFIX     also write PREFIX.txt, .json, .csv and .cdf.csv\n"
		"  --repeat N        run the whole plan N times and report each test's median run\n"
		"  --filter LIST     comma-separated; run tests whose id contains an entry, or\n"
		"                    matches it as a glob (ids: rtt/spsc/64/zero-copy/cross)\n"
		"  --list            print the test ids and exit\n"
		"  --cpus LIST       the CPUs (default 0,1): a test's producers / client take the\n"
		"                    first half in turn, its consumers / server the second half\n"
		"                    (0-15: round trips between 0 and 8, p8c8 on all 16)\n"
		"  --procs LIST      producer and consumer processes of the work-distribution\n"
		"                    tests, each 1..8 (default 1,2,4)\n"
		"  --time SECONDS    timed part of each test (default 1, --quick 0.05)\n"
		"  --spin-us US      bounded spin of spinning transports before blocking (default 50)\n"
		"  --batch N         streaming batch for 8 B / 64 B messages (default 32; each such\n"
		"                    test also runs with 8 N)\n"
		"  --capacity BYTES  spsc ring size where the records fit (default: 1 MiB, or\n"
		"                    4 records when they are larger)\n"
		"  --demote          spsc, mpmc and bcast producers demote what they publish\n"
		"                    (set_demote: shorter round trips across cores, slower streams);\n"
		"                    pool producers demote the stamp lines read first (shmring_demote)\n"
		"  --retries N       run a test again when the CPUs moved during it (probes\n"
		"                    before and after differ by > 30%%, or a round trip beat\n"
		"                    0.75x the floor; default 2, --quick 0)\n"
		"  --watchdog SECS   end a test that runs this long (a hang), killing its\n"
		"                    processes (default 30 s + 20x the test's time)\n"
		"  -q, --quiet       no progress on stderr\n");
}

/* Flush stdout and say whether what was printed to it (fd 1, which --save points at a
 * file for a while) was lost: one line naming where. The error is cleared, so the
 * next destination starts clean. */
static int out_failed(const char *where)
{
	int bad = fflush(stdout) != 0 || ferror(stdout);
	if (bad) {
		fprintf(stderr, "shmring-bench: writing the results to %s: %s\n", where,
			strerror(errno ? errno : EIO));
		clearerr(stdout);
	}
	return bad;
}

int main(int argc, char **argv)
{
	struct bench_cfg cfg = {
		.budget_s = 1.0, .warm_s = 0.2, .min_iters = 20, .max_iters = 4000000,
		.probe_s = 0.04, .spin_us = 50, .cpus = {0, 1}, .ncpus = 2,
		.procs = {1, 2, 4}, .nprocs = 3,
		.memcpy_region = 64u << 20,
	};
	enum bench_fmt fmt = BENCH_FMT_TABLE;
	const char *cdf = NULL, *save = NULL;
	int list = 0, quiet = 0;
	double time_s = -1, v = 0;
	int retries = -1, repeat = 1;
	unsigned batch = 32;
	struct plan plan = {0};
	static const struct option opts[] = {
		{"quick", no_argument, NULL, 'Q'},  {"json", no_argument, NULL, 'j'},
		{"csv", no_argument, NULL, 'c'},    {"cdf", required_argument, NULL, 'C'},
		{"filter", required_argument, NULL, 'f'}, {"list", no_argument, NULL, 'l'},
		{"cpus", required_argument, NULL, 'p'}, {"time", required_argument, NULL, 't'},
		{"spin-us", required_argument, NULL, 's'}, {"batch", required_argument, NULL, 'b'},
		{"quiet", no_argument, NULL, 'q'},  {"help", no_argument, NULL, 'h'},
		{"retries", required_argument, NULL, 'r'}, {"save", required_argument, NULL, 'S'},
		{"capacity", required_argument, NULL, 'k'}, {"repeat", required_argument, NULL, 'R'},
		{"demote", no_argument, NULL, 'D'}, {"procs", required_argument, NULL, 'P'},
		{"watchdog", required_argument, NULL, 'W'},
		{NULL, 0, NULL, 0},
	};
	int o;
	opterr = 0; /* our own one-line message below */
	while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (o) {
		case 'Q':
			cfg.quick = 1;
			break;
		case 'j':
			fmt = BENCH_FMT_JSON;
			break;
		case 'c':
			fmt = BENCH_FMT_CSV;
			break;
		case 'C':
			cdf = optarg;
			break;
		case 'f': {
			char *s = strdup(optarg), *save = NULL;
			plan.owned = realloc(plan.owned, (plan.nowned + 1) * sizeof(char *));
			plan.owned[plan.nowned++] = s;
			size_t before = plan.nfilters;
			for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				plan.filters = realloc(plan.filters, (plan.nfilters + 1) * sizeof(char *));
				plan.filters[plan.nfilters++] = t;
			}
			if (plan.nfilters == before) { /* it would select everything */
				fprintf(stderr, "shmring-bench: --filter '%s': no test id prefix in it\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'l':
			list = 1;
			break;
		case 'p':
			if (bench_parse_cpus(&cfg, optarg) != 0) {
				fprintf(stderr, "shmring-bench: --cpus %s: want at least 2 and at most %u "
					"distinct CPUs this process may use, as 0,1 or 0-15\n", optarg,
					BENCH_MAX_CPUS);
				return 2;
			}
			break;
		case 'P':
			if (parse_procs(&cfg, optarg) != 0) {
				fprintf(stderr, "shmring-bench: --procs %s: want a list of distinct counts "
					"from 1 to %u, as 1,2,4,8\n", optarg, BENCH_MAX_PROCS);
				return 2;
			}
			break;
		case 't':
			if (num_opt("time", optarg, 0.001, 3600, 0, &time_s))
				return 2;
			break;
		case 's':
			if (num_opt("spin-us", optarg, 0, 1e6, 0, &cfg.spin_us))
				return 2;
			break;
		case 'b':
			if (num_opt("batch", optarg, 1, 4096, 1, &v))
				return 2;
			batch = (unsigned)v;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'r':
			if (num_opt("retries", optarg, 0, 100, 1, &v))
				return 2;
			retries = (int)v;
			break;
		case 'S':
			save = optarg;
			break;
		case 'k':
			if (num_opt("capacity", optarg, 4096, 1099511627776.0, 1, &v))
				return 2;
			cfg.capacity = (uint64_t)v;
			break;
		case 'D':
			cfg.demote = 1;
			break;
		case 'W':
			if (num_opt("watchdog", optarg, 1, 86400, 1, &v))
				return 2;
			cfg.watchdog_s = (unsigned)v;
			break;
		case 'R':
			if (num_opt("repeat", optarg, 1, 64, 1, &v))
				return 2;
			repeat = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "shmring-bench: unknown option or missing value '%s' "
				"(try --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shmring-bench: unexpected argument '%s' (tests are chosen with "
			"--filter)\n", argv[optind]);
		return 2;
	}
	if (cfg.quick) {
		cfg.budget_s = 0.05;
		cfg.warm_s = 0.015;
		cfg.min_iters = 3;
		cfg.max_iters = 400000;
		cfg.probe_s = 0.004;
	}
	if (retries < 0)
		retries = cfg.quick ? 0 : 2;
	if (time_s > 0) {
		cfg.budget_s = time_s;
		cfg.warm_s = time_s / 4;
	}
	make_plan(&plan, batch, &cfg);
	if (plan.n == 0) {
		fprintf(stderr, "shmring-bench: no test matches the filter\n");
		plan_free(&plan);
		return 2;
	}
	if (list) {
		for (size_t i = 0; i < plan.n; i++)
			printf("%s\n", plan.v[i].id);
		plan_free(&plan);
		return out_failed("standard output") ? 1 : 0;
	}
	bench_clock_init(cfg.quick);
	struct bench_result *rs = calloc(plan.n, sizeof *rs);
	struct bench_result *all = calloc(plan.n * (size_t)repeat, sizeof *all);
	if (!rs || !all) {
		perror("calloc");
		return 2;
	}
	uint64_t t0 = bench_clock_ns();
	double load0 = bench_loadavg();
	int failed = 0;
	/* --repeat: the whole plan again, so the repetitions of a test are spread over time */
	for (int rep = 0; rep < repeat; rep++) {
		for (size_t i = 0; i < plan.n; i++) {
			struct bench_result *r = &all[(size_t)rep * plan.n + i];
			uint64_t ts = bench_clock_ns();
			/* the vCPUs moved between the probes: the figure mixes placements, again */
			for (int a = 0;; a++) {
				bench_run(&plan.v[i], &cfg, r);
				r->attempts = a + 1;
				if (!r->ok || !bench_moved(r) || a >= retries)
					break;
			}
			r->wall_s = (double)(bench_clock_ns() - ts) / 1e9;
			if (quiet)
				continue;
			char tag[32] = "";
			if (repeat > 1)
				snprintf(tag, sizeof tag, " #%d", rep + 1);
			if (r->ok && r->spec.test == BENCH_STREAM)
				fprintf(stderr, "[%3zu/%zu%s] %-44s %10.4g msgs/s %10.4g B/s  probe %.0f/%.0f ns %.2fs%s\n",
					i + 1, plan.n, tag, r->spec.id, r->msgs_per_s, r->bytes_per_s,
					r->probe_ns, r->probe_after_ns, r->wall_s, r->attempts > 1 ? " (again)" : "");
			else if (r->ok)
				fprintf(stderr, "[%3zu/%zu%s] %-44s p50 %9.0f ns  p99 %9.0f ns  probe %.0f/%.0f ns %.2fs%s\n",
					i + 1, plan.n, tag, r->spec.id, r->p50, r->p99, r->probe_ns,
					r->probe_after_ns, r->wall_s, r->attempts > 1 ? " (again)" : "");
			else
				fprintf(stderr, "[%3zu/%zu%s] %-44s FAILED: %s\n", i + 1, plan.n, tag,
					r->spec.id, r->err);
		}
	}
	/* each test's median repetition (by RTT p50 / streaming rate), whole: its probes,
	 * percentiles and CDF stay together */
	for (size_t i = 0; i < plan.n; i++) {
		const struct bench_result *pick[64];
		int k = 0;
		for (int rep = 0; rep < repeat && k < 64; rep++)
			if (all[(size_t)rep * plan.n + i].ok)
				pick[k++] = &all[(size_t)rep * plan.n + i];
		if (k == 0) {
			rs[i] = all[(size_t)(repeat - 1) * plan.n + i];
			failed++;
			continue;
		}
		for (int x = 1; x < k; x++) /* insertion sort: k is small */
			for (int y = x; y > 0; y--) {
				const struct bench_result *p = pick[y - 1], *q = pick[y];
				double vp = p->spec.test == BENCH_STREAM ? -p->msgs_per_s : p->p50;
				double vq = q->spec.test == BENCH_STREAM ? -q->msgs_per_s : q->p50;
				if (vp <= vq)
					break;
				pick[y - 1] = q;
				pick[y] = p;
			}
		rs[i] = *pick[(k - 1) / 2];
		rs[i].runs = k;
		failed += k < repeat;
	}
	free(all);
	double secs = (double)(bench_clock_ns() - t0) / 1e9;
	char cpus[BENCH_MAX_CPUS * 5 + 64];
	cpus_text(&cfg, cpus, sizeof cpus);
	if (fmt == BENCH_FMT_TABLE) {
		bench_print_machine();
		printf("# %zu tests x %d in %.1f s, CPUs %s, %s, timed %.2f s per test, spin %.0f us%s\n",
		       plan.n, repeat, secs, cpus, cfg.quick ? "quick" : "full",
		       cfg.budget_s, cfg.spin_us, cfg.demote ? ", producers demoting" : "");
		if (repeat > 1)
			printf("# each figure: the median of %d runs (by RTT p50 or streaming rate), "
			       "with that run's probes\n", repeat);
		printf("# load average (1 min) %.2f at the start, %.2f at the end: other work shares "
		       "these CPUs\n", load0, bench_loadavg());
		printf("# probe = floor RTT p50 (ns) measured just before/after the test: where the two "
		       "vCPUs sat;\n#   * = they moved during the test (the probes differ by > 30%%, or a "
		       "round trip beat 0.75x the floor). x floor = p50 / mean of "
		       "the two probes.\n");
	}
	bench_print(fmt, rs, plan.n, &cfg);
	/* results that could not be written are a failed run, not exit 0 */
	int lost = out_failed("standard output");
	if (cdf && bench_write_cdf(cdf, rs, plan.n) != 0) {
		perror(cdf);
		lost = 1;
	}
	if (save) {
		/* the same run in every format, for RESULTS.md and bench/plot.py */
		static const struct { const char *ext; enum bench_fmt f; } outs[] = {
			{".txt", BENCH_FMT_TABLE}, {".json", BENCH_FMT_JSON}, {".csv", BENCH_FMT_CSV}};
		char path[4096];
		for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
			snprintf(path, sizeof path, "%s%s", save, outs[k].ext);
			fflush(stdout);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			int keep = dup(1);
			if (fd < 0 || keep < 0 || dup2(fd, 1) < 0) {
				perror(path);
				lost = 1;
			} else {
				if (outs[k].f == BENCH_FMT_TABLE) {
					bench_print_machine();
					printf("# %zu tests x %d in %.1f s, CPUs %s, %s, timed %.2f s "
					       "per test, spin %.0f us%s, load average %.2f -> %.2f\n",
					       plan.n, repeat, secs, cpus,
					       cfg.quick ? "quick" : "full", cfg.budget_s, cfg.spin_us,
					       cfg.demote ? ", producers demoting" : "", load0, bench_loadavg());
					if (repeat > 1)
						printf("# each figure: the median of %d runs (by RTT p50 or "
						       "streaming rate), with that run's probes\n", repeat);
				}
				bench_print(outs[k].f, rs, plan.n, &cfg);
				lost |= out_failed(path);
				dup2(keep, 1);
			}
			if (fd >= 0)
				close(fd);
			if (keep >= 0)
				close(keep);
		}
		snprintf(path, sizeof path, "%s.cdf.csv", save);
		if (bench_write_cdf(path, rs, plan.n) != 0) {
			perror(path);
			lost = 1;
		}
	}
	if (!quiet)
		fprintf(stderr, "shmring-bench: %zu tests x %d, %d failed, %.1f s\n", plan.n, repeat,
			failed, secs);
	free(rs);
	plan_free(&plan);
	return failed || lost ? 1 : 0;
}
