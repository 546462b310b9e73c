/* SPDX-License-Identifier: MIT */
/* The benchmark clock: the TSC, calibrated once against CLOCK_MONOTONIC. The TSC is
 * read once per sample (consecutive differences), because on this kind of machine a
 * clock_gettime() costs a fair part of the floor we want to measure. */
#include "bench.h"

#include <time.h>

double bench_ns_per_tick = 1.0;

uint64_t bench_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_clock_init(int quick)
{
#if defined(__x86_64__) || defined(__i386__)
	/* Busy-wait rather than sleep, so the TSC and the clock are read back to back. */
	uint64_t span = quick ? 20000000u : 100000000u;
	uint64_t n0 = bench_clock_ns(), t0 = bench_ticks();
	uint64_t n1, t1;
	do {
		n1 = bench_clock_ns();
		t1 = bench_ticks();
	} while (n1 - n0 < span);
	bench_ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
#else
	(void)quick;
	bench_ns_per_tick = 1.0;
#endif
}

double bench_ticks_per_ns(void)
{
	return 1.0 / bench_ns_per_tick;
}

uint64_t bench_ns_ticks(double ns)
{
	return (uint64_t)(ns / bench_ns_per_tick);
}
