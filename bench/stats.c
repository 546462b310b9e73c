/* SPDX-License-Identifier: MIT */
/* Percentiles and the CDF points kept for the plots. */
#include "bench.h"

#include <stdlib.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted ticks, in ns. */
static double pct(const uint64_t *s, uint64_t n, double q)
{
	uint64_t k = (uint64_t)(q * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return bench_ticks_ns(s[k - 1]);
}

void bench_stats(struct bench_result *r, uint64_t *ticks, uint64_t n)
{
	r->samples = n;
	if (n == 0)
		return;
	qsort(ticks, n, sizeof *ticks, cmp_u64);
	double sum = 0;
	for (uint64_t i = 0; i < n; i++)
		sum += (double)ticks[i];
	r->mean = bench_ticks_ns((uint64_t)(sum / (double)n));
	r->p50 = pct(ticks, n, 0.50);
	r->p99 = pct(ticks, n, 0.99);
	r->p999 = pct(ticks, n, 0.999);
	r->max = bench_ticks_ns(ticks[n - 1]);
	/* CDF: every percent, then the tail */
	static const double tail[] = {0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0};
	unsigned k = 0;
	for (unsigned i = 0; i < 100; i++, k++) {
		r->cdf_q[k] = i / 100.0;
		r->cdf_ns[k] = pct(ticks, n, i / 100.0);
	}
	for (unsigned i = 0; i < sizeof tail / sizeof tail[0]; i++, k++) {
		r->cdf_q[k] = tail[i];
		r->cdf_ns[k] = pct(ticks, n, tail[i]);
	}
	r->ncdf = k;
}
