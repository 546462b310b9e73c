/* SPDX-License-Identifier: MIT */
/* Pinning a process to a CPU (the benchmark and bench/pair), and which CPU each
 * process of a test gets. */
#include "bench.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

int bench_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set) ? -errno : 0;
}

int bench_cpu_of(const struct bench_cfg *cfg, int side, unsigned index, int same_cpu)
{
	unsigned h = cfg->ncpus / 2;
	if (same_cpu)
		return cfg->cpus[0];
	return side == 0 ? cfg->cpus[index % h] : cfg->cpus[h + index % (cfg->ncpus - h)];
}

int bench_parse_list(const char *list, long lo, long hi, int ranges, long *out, unsigned max)
{
	unsigned n = 0;
	const char *p = list;
	for (;;) {
		char *end;
		long a = strtol(p, &end, 10), b = a;
		if (end == p || a < lo || a > hi)
			return -1;
		if (ranges && *end == '-') {
			p = end + 1;
			b = strtol(p, &end, 10);
			if (end == p || b < a || b > hi)
				return -1;
		}
		for (long v = a; v <= b; v++) {
			if (n == max)
				return -1;
			out[n++] = v;
		}
		if (*end == '\0')
			return (int)n;
		if (*end != ',')
			return -1;
		p = end + 1;
	}
}

int bench_parse_cpus(struct bench_cfg *cfg, const char *list)
{
	long v[BENCH_MAX_CPUS];
	int n = bench_parse_list(list, 0, CPU_SETSIZE - 1, 1, v, BENCH_MAX_CPUS);
	cpu_set_t mine;
	if (n < 2 || sched_getaffinity(0, sizeof mine, &mine) != 0)
		return -1;
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < i; j++)
			if (v[j] == v[i])
				return -1; /* twice: two processes would spin on one CPU */
		if (!CPU_ISSET(v[i], &mine))
			return -1; /* offline, or not ours to use */
		cfg->cpus[i] = (int)v[i];
	}
	cfg->ncpus = (unsigned)n;
	return 0;
}
