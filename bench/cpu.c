/* SPDX-License-Identifier: MIT */
/* Pinning a process to a CPU (the benchmark and bench/pair). */
#include "bench.h"

#include <errno.h>
#include <sched.h>

int bench_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set) ? -errno : 0;
}
