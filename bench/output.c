/* SPDX-License-Identifier: MIT */
/*
 * Output: the readable table (with each shmring figure as a ratio to the floor and to
 * the best classic mechanism of the same run, and the targets checked against
 * this run), JSON lines, CSV, and the CDF points for the plots.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

const char *bench_test_name(enum bench_test t)
{
	return t == BENCH_RTT ? "rtt" : t == BENCH_STREAM ? "stream" : "memcpy";
}

const char *bench_mode_name(enum bench_mode m)
{
	return m == BENCH_ZC ? "zero-copy" : "copy";
}

/* the memcpy reference runs in one process: it has no placement of two */
const char *bench_place_name(const struct bench_spec *s)
{
	return s->test == BENCH_MEMCPY ? "single" : s->same_cpu ? "same" : "cross";
}


static int is(const struct bench_result *r, unsigned cap)
{
	return (r->spec.tr->caps & cap) != 0;
}

/* ---- lookups over one run ---- */

static const struct bench_result *find(const struct bench_result *rs, size_t n, enum bench_test t,
				       const char *tr, size_t size, int mode, int same, unsigned batch)
{
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		if (r->ok && r->spec.test == t && !strcmp(r->spec.tr->name, tr) &&
		    (size == 0 || r->spec.size == size) && (mode < 0 || (int)r->spec.mode == mode) &&
		    r->spec.same_cpu == same && (batch == 0 || r->spec.batch == batch))
			return r;
	}
	return NULL;
}

/* The classic mechanism with the lowest RTT p50 / highest stream rate at this size. */
static const struct bench_result *best_classic(const struct bench_result *rs, size_t n,
					       const struct bench_result *like)
{
	const struct bench_result *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		if (!r->ok || !is(r, BENCH_CAP_CLASSIC) || r->spec.test != like->spec.test ||
		    r->spec.size != like->spec.size || r->spec.same_cpu != like->spec.same_cpu)
			continue;
		if (!best || (r->spec.test == BENCH_RTT ? r->p50 < best->p50
							 : r->msgs_per_s > best->msgs_per_s))
			best = r;
	}
	return best;
}

static const struct bench_result *floor_of(const struct bench_result *rs, size_t n)
{
	return find(rs, n, BENCH_RTT, "floor", 0, -1, 0, 0);
}

/* ---- formatting ---- */

static const char *fmt_ns(char *b, size_t len, double ns)
{
	if (ns < 0)
		snprintf(b, len, "-");
	else if (ns < 10000)
		snprintf(b, len, "%.0f", ns);
	else if (ns < 10e6)
		snprintf(b, len, "%.1fu", ns / 1e3);
	else
		snprintf(b, len, "%.1fm", ns / 1e6);
	return b;
}

static const char *fmt_rate(char *b, size_t len, double v)
{
	if (v < 0)
		snprintf(b, len, "-");
	else if (v >= 1e9)
		snprintf(b, len, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(b, len, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(b, len, "%.1fk", v / 1e3);
	else
		snprintf(b, len, "%.0f", v);
	return b;
}

static const char *fmt_size(char *b, size_t len, size_t s)
{
	if (s == 3110400)
		snprintf(b, len, "3110400 B (1080p NV12)");
	else if (s == 12441600)
		snprintf(b, len, "12441600 B (4K NV12)");
	else if (s >= 1024 && s % 1024 == 0)
		snprintf(b, len, "%zu KiB", s / 1024);
	else
		snprintf(b, len, "%zu B", s);
	return b;
}

static const char *label(char *b, size_t len, const struct bench_result *r)
{
	int k = snprintf(b, len, "%s", r->spec.tr->name);
	if (r->spec.batch > 1)
		k += snprintf(b + k, len - (size_t)k, " batch=%u", r->spec.batch);
	if (r->spec.nprod > 1 || r->spec.ncons > 1)
		snprintf(b + k, len - (size_t)k, " p%uc%u", r->spec.nprod, r->spec.ncons); /* as in ids */
	return b;
}

static void ratio(char *b, size_t len, double x)
{
	if (x > 0 && isfinite(x))
		snprintf(b, len, x >= 100 ? "%.0fx" : x >= 0.01 ? "%.3gx" : "%.1ex", x);
	else
		snprintf(b, len, "-");
}

/* "before/after", starred when the CPUs moved during the test */
static const char *fmt_probe(char *b, size_t len, const struct bench_result *r)
{
	snprintf(b, len, "%.0f/%.0f%s", r->probe_ns, r->probe_after_ns, bench_moved(r) ? "*" : "");
	return b;
}

static void table_rtt_row(const struct bench_result *rs, size_t n, const struct bench_result *r)
{
	char l[64], a[16], b[16], c[16], d[16], e[16], f[32], g[16], h[16];
	label(l, sizeof l, r);
	if (!r->ok) {
		printf("  %-22s %-9s %-5s FAILED: %s\n", l, bench_mode_name(r->spec.mode), bench_place_name(&r->spec),
		       r->err);
		return;
	}
	snprintf(g, sizeof g, "-");
	snprintf(h, sizeof h, "-");
	ratio(g, sizeof g, r->p50 / bench_floor_p50(r));
	if (is(r, BENCH_CAP_SHMRING)) {
		const struct bench_result *bc = best_classic(rs, n, r);
		if (bc)
			ratio(h, sizeof h, r->p50 / bc->p50);
	}
	printf("  %-22s %-9s %-5s %8s %8s %8s %8s %9s %9s %8s %9s\n", l,
	       bench_mode_name(r->spec.mode), bench_place_name(&r->spec), fmt_ns(a, sizeof a, r->p50),
	       fmt_ns(b, sizeof b, r->p99), fmt_ns(c, sizeof c, r->p999), fmt_ns(d, sizeof d, r->max),
	       fmt_rate(e, sizeof e, r->msgs_per_s), fmt_probe(f, sizeof f, r), g, h);
}

static void table_stream_row(const struct bench_result *rs, size_t n, const struct bench_result *r)
{
	char l[64], a[16], b[16], c[32], e[16], f[16], g[16], h[16];
	label(l, sizeof l, r);
	if (!r->ok) {
		printf("  %-22s %-9s %-5s FAILED: %s\n", l, bench_mode_name(r->spec.mode), bench_place_name(&r->spec),
		       r->err);
		return;
	}
	snprintf(e, sizeof e, "-");
	snprintf(f, sizeof f, "-");
	snprintf(g, sizeof g, "-");
	snprintf(h, sizeof h, "-");
	if (r->wake_per_msg >= 0)
		snprintf(e, sizeof e, "%.4f", r->wake_per_msg);
	if (is(r, BENCH_CAP_SHMRING)) {
		/* the streaming floor moves one 64-byte line per message. Up to that size a
		 * message is a line, and a zero-copy message of any size is a hand-over of a
		 * few lines (its payload is not moved): messages compare. A copied message
		 * beyond it moves its bytes: bytes compare */
		const struct bench_result *fs =
			find(rs, n, BENCH_STREAM, "floor", 64, -1, r->spec.same_cpu, 0);
		int by_msgs = r->spec.size <= 64 || r->spec.mode == BENCH_ZC;
		if (fs)
			ratio(h, sizeof h, by_msgs ? r->msgs_per_s / fs->msgs_per_s
						   : r->bytes_per_s / fs->bytes_per_s);
		const struct bench_result *bc = best_classic(rs, n, r);
		const struct bench_result *mc =
			find(rs, n, BENCH_MEMCPY, "memcpy", r->spec.size, -1, 0, 0);
		if (bc)
			ratio(f, sizeof f, r->msgs_per_s / bc->msgs_per_s);
		if (mc && r->spec.mode == BENCH_COPY)
			ratio(g, sizeof g, r->bytes_per_s / mc->bytes_per_s);
	}
	char lo[16] = "-";
	if (r->lost_frac >= 0)
		snprintf(lo, sizeof lo, "%.1f%%", 100 * r->lost_frac);
	printf("  %-22s %-9s %-5s %10s %10s %10s %6s %9s %8s %9s %8s\n", l,
	       bench_mode_name(r->spec.mode), bench_place_name(&r->spec), fmt_rate(a, sizeof a, r->msgs_per_s),
	       fmt_rate(b, sizeof b, r->bytes_per_s), e, lo, fmt_probe(c, sizeof c, r), h, f, g);
}

static void table_memcpy_row(const struct bench_result *r)
{
	char s[32], a[16], b[16], c[16], d[32];
	fmt_size(s, sizeof s, r->spec.size);
	if (!r->ok) {
		printf("  %-22s FAILED: %s\n", s, r->err);
		return;
	}
	printf("  %-22s %8s %8s %10s %10s\n", s, fmt_ns(a, sizeof a, r->p50),
	       fmt_ns(b, sizeof b, r->p99), fmt_rate(c, sizeof c, r->bytes_per_s),
	       fmt_probe(d, sizeof d, r));
}

/* The targets, checked against this run. placed: the figure depends on where
 * the CPUs sat, so a result that moved during its test (bench_moved), or two results
 * taken at different placements, are not judged. */
static void verdict_p(const char *what, double got, double limit, int le,
		      const struct bench_result *a, const struct bench_result *b, int placed)
{
	if (got < 0 || !isfinite(got)) {
		printf("  %-62s  not measured\n", what);
		return;
	}
	int ok = le ? got <= limit : got >= limit;
	/* a ratio of figures taken with the CPUs placed differently measures the placement */
	int apart = placed && a && (b ? !bench_same_place(a, b) : bench_moved(a));
	printf("  %-62s  %10.3g %s %-8.3g %s", what, got, le ? "<=" : ">=", limit,
	       apart ? "(placements differ)" : ok ? "PASS" : "MISS");
	/* where the CPUs sat for each figure compared */
	char pa[32], pb[32];
	if (a && b)
		printf("  (probes %s, %s)", fmt_probe(pa, sizeof pa, a), fmt_probe(pb, sizeof pb, b));
	else if (a)
		printf("  (probes %s)", fmt_probe(pa, sizeof pa, a));
	printf("\n");
}

static void verdict(const char *what, double got, double limit, int le)
{
	verdict_p(what, got, limit, le, NULL, NULL, 0);
}

static void targets(const struct bench_result *rs, size_t n)
{
	printf("\n== targets (ratios from this run) ==\n");
	const struct bench_result *fl = floor_of(rs, n);
	const struct bench_result *s64 = find(rs, n, BENCH_RTT, "spsc", 64, BENCH_ZC, 0, 0);
	/* against the floor probed around the spsc test itself (same placement), and
	 * against the floor test of this run */
	verdict_p("spsc 64 B RTT p50 / floor p50 (probes around it)",
		  s64 ? s64->p50 / bench_floor_p50(s64) : -1, 1.5, 1, s64, NULL, 1);
	verdict_p("spsc 64 B RTT p99 / floor p99 (probes around it)",
		  s64 ? s64->p99 / bench_floor_p99(s64) : -1, 2.0, 1, s64, NULL, 1);
	verdict_p("spsc 64 B RTT p50 / floor test p50", s64 && fl ? s64->p50 / fl->p50 : -1, 1.5,
		  1, s64, fl, 1);
	verdict_p("spsc 64 B RTT p99 / floor test p99", s64 && fl ? s64->p99 / fl->p99 : -1, 2.0,
		  1, s64, fl, 1);
	const size_t frames[] = {3110400, 12441600};
	for (int i = 0; i < 2; i++) {
		const struct bench_result *p = find(rs, n, BENCH_RTT, "pool", frames[i], BENCH_ZC, 0, 0);
		char w[96];
		snprintf(w, sizeof w, "pool %s RTT p50 / spsc 64 B RTT p50",
			 i == 0 ? "1080p" : "4K");
		verdict_p(w, p && s64 ? p->p50 / s64->p50 : -1, 1.2, 1, p, s64, 1);
		snprintf(w, sizeof w, "  the same, each over the floor probed around it");
		verdict_p(w, p && s64 ? (p->p50 / bench_floor_p50(p)) /
					       (s64->p50 / bench_floor_p50(s64)) : -1,
			  1.2, 1, p, NULL, 1);
	}
	const struct bench_result *fx = find(rs, n, BENCH_RTT, "futex", 0, -1, 0, 0);
	const struct bench_result *sb = find(rs, n, BENCH_RTT, "spsc-blocking", 64, BENCH_ZC, 0, 0);
	/* blocking round trips cost wakeups (tens of us here), not cache-line transfers:
	 * the placement of the CPUs hardly matters, so it is not checked */
	verdict_p("spsc-blocking 64 B RTT p50 / futex RTT p50 (cross)",
		  fx && sb ? sb->p50 / fx->p50 : -1, 1.15, 1, sb, NULL, 0);
	fx = find(rs, n, BENCH_RTT, "futex", 0, -1, 1, 0);
	sb = find(rs, n, BENCH_RTT, "spsc-blocking", 64, BENCH_ZC, 1, 0);
	verdict_p("spsc-blocking 64 B RTT p50 / futex RTT p50 (same CPU)",
		  fx && sb ? sb->p50 / fx->p50 : -1, 1.15, 1, sb, NULL, 0);
	const struct bench_result *best64 = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		if (r->ok && r->spec.test == BENCH_STREAM && !strcmp(r->spec.tr->name, "spsc") &&
		    r->spec.size == 64 && (!best64 || r->msgs_per_s > best64->msgs_per_s))
			best64 = r;
	}
	verdict_p("spsc streaming 64 B, best batch, msgs/s", best64 ? best64->msgs_per_s : -1,
		  100e6, 0, best64, NULL, 1);
	/* what the cache-line traffic between the two CPUs allows at all */
	const struct bench_result *fs = find(rs, n, BENCH_STREAM, "floor", 64, -1, 0, 0);
	verdict_p("  the same / streaming floor (64 B lines, same run)",
		  best64 && fs ? best64->msgs_per_s / fs->msgs_per_s : -1, 1.0, 0, best64, fs, 1);
	double worst = -1;
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		if (!r->ok || r->spec.test != BENCH_STREAM || strcmp(r->spec.tr->name, "spsc") ||
		    r->spec.mode != BENCH_COPY || r->spec.size < 65536)
			continue;
		const struct bench_result *mc =
			find(rs, n, BENCH_MEMCPY, "memcpy", r->spec.size, -1, 0, 0);
		if (!mc)
			continue;
		double x = r->bytes_per_s / mc->bytes_per_s;
		char w[96];
		snprintf(w, sizeof w, "spsc copy stream %zu B / cold memcpy", r->spec.size);
		verdict_p(w, x, 0.8, 0, r, NULL, 0); /* one process: placement does not apply */
		worst = 1;
	}
	if (worst < 0)
		verdict("spsc copy stream >= 64 KiB / cold memcpy", -1, 0.8, 0);
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		if (!r->ok || r->spec.test != BENCH_STREAM || !is(r, BENCH_CAP_SHMRING) ||
		    r->wake_per_msg < 0 || strcmp(r->spec.tr->name, "spsc"))
			continue;
		char w[96], l[48];
		snprintf(w, sizeof w, "wake syscalls/msg, %s %zu B %s", label(l, sizeof l, r),
			 r->spec.size, bench_mode_name(r->spec.mode));
		verdict_p(w, r->wake_per_msg, 0.001, 1, r, NULL, 0);
	}
}

/* The distinct sizes test t ran at, in first-seen order (at most max). */
static size_t sizes_of(const struct bench_result *rs, size_t n, enum bench_test t, size_t *sizes,
		       size_t max)
{
	size_t ns = 0;
	for (size_t i = 0; i < n; i++) {
		if (rs[i].spec.test != t)
			continue;
		size_t s = rs[i].spec.size, k;
		for (k = 0; k < ns && sizes[k] != s; k++)
			;
		if (k == ns && ns < max)
			sizes[ns++] = s;
	}
	return ns;
}

static void print_table(const struct bench_result *rs, size_t n)
{
	/* grouped by size in the order the run made them */
	size_t sizes[32];
	size_t ns = sizes_of(rs, n, BENCH_RTT, sizes, 32);
	for (size_t k = 0; k < ns; k++) {
		char sz[32];
		printf("\n== rtt %s: round trip (ns; u = us, m = ms), echo of the same size ==\n",
		       fmt_size(sz, sizeof sz, sizes[k]));
		printf("  %-22s %-9s %-5s %8s %8s %8s %8s %9s %9s %8s %9s\n", "transport", "mode",
		       "place", "p50", "p99", "p99.9", "max", "rtt/s", "probe", "x floor",
		       "x classic");
		for (size_t i = 0; i < n; i++)
			if (rs[i].spec.test == BENCH_RTT && rs[i].spec.size == sizes[k])
				table_rtt_row(rs, n, &rs[i]);
	}
	ns = sizes_of(rs, n, BENCH_STREAM, sizes, 32);
	for (size_t k = 0; k < ns; k++) {
		char sz[32];
		printf("\n== stream %s: one-way throughput ==\n", fmt_size(sz, sizeof sz, sizes[k]));
		if (k == 0)
			printf("  (x floor: msgs/s over the streaming floor's, one 64-byte line per "
			       "message, for zero-copy and\n   up to 64 B; bytes/s over its bytes/s "
			       "for copies beyond)\n");
		printf("  %-22s %-9s %-5s %10s %10s %10s %6s %9s %8s %9s %8s\n", "transport", "mode",
		       "place", "msgs/s", "bytes/s", "wakes/msg", "lost", "probe", "x floor",
		       "x classic", "x memcpy");
		for (size_t i = 0; i < n; i++)
			if (rs[i].spec.test == BENCH_STREAM && rs[i].spec.size == sizes[k])
				table_stream_row(rs, n, &rs[i]);
	}
	int any = 0;
	for (size_t i = 0; i < n; i++) {
		if (rs[i].spec.test != BENCH_MEMCPY)
			continue;
		if (!any++) {
			printf("\n== memcpy: single process, cold (buffers >> last-level cache) ==\n");
			printf("  %-22s %8s %8s %10s %10s\n", "size", "p50", "p99", "bytes/s", "probe");
		}
		table_memcpy_row(&rs[i]);
	}
	targets(rs, n);
}

static void json_num(const char *key, double v, int last)
{
	if (v < 0 || !isfinite(v))
		printf("\"%s\":null%s", key, last ? "" : ",");
	else
		printf("\"%s\":%.6g%s", key, v, last ? "" : ",");
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_json(const struct bench_result *rs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		printf("{\"test\":\"%s\",\"transport\":\"%s\",\"size\":%zu,\"mode\":\"%s\","
		       "\"placement\":\"%s\",\"batch\":%u,\"producers\":%u,\"consumers\":%u,",
		       bench_test_name(r->spec.test), r->spec.tr->name, r->spec.size,
		       bench_mode_name(r->spec.mode), bench_place_name(&r->spec), r->spec.batch,
		       r->spec.nprod, r->spec.ncons);
		json_num("p50_ns", r->p50, 0);
		json_num("p99_ns", r->p99, 0);
		json_num("p999_ns", r->p999, 0);
		json_num("max_ns", r->max, 0);
		json_num("mean_ns", r->mean, 0);
		json_num("msgs_per_s", r->msgs_per_s, 0);
		json_num("bytes_per_s", r->bytes_per_s, 0);
		json_num("probe_ns", r->probe_ns, 0);
		json_num("probe_after_ns", r->probe_after_ns, 0);
		json_num("probe_p99_ns", r->probe_p99, 0);
		json_num("wake_syscalls_per_msg", r->wake_per_msg, 0);
		json_num("sleeps_per_msg", r->sleeps_per_msg, 0);
		json_num("lost_per_msg", r->lost_frac, 0);
		printf("\"samples\":%llu,\"attempts\":%d,\"runs\":%d,\"ok\":%s",
		       (unsigned long long)r->samples, r->attempts, r->runs,
		       r->ok ? "true" : "false");
		if (!r->ok) {
			printf(",\"error\":");
			json_str(r->err);
		}
		printf("}\n");
	}
}

static void csv_num(double v)
{
	if (v >= 0 && isfinite(v))
		printf(",%.6g", v);
	else
		printf(",");
}

static void print_csv(const struct bench_result *rs, size_t n)
{
	printf("test,transport,size,mode,placement,batch,producers,consumers,p50_ns,p99_ns,p999_ns,max_ns,mean_ns,"
	       "msgs_per_s,bytes_per_s,probe_ns,probe_after_ns,probe_p99_ns,wake_syscalls_per_msg,sleeps_per_msg,lost_per_msg,samples,ok,"
	       "error\n");
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		printf("%s,%s,%zu,%s,%s,%u,%u,%u", bench_test_name(r->spec.test), r->spec.tr->name,
		       r->spec.size, bench_mode_name(r->spec.mode), bench_place_name(&r->spec), r->spec.batch,
		       r->spec.nprod, r->spec.ncons);
		csv_num(r->p50);
		csv_num(r->p99);
		csv_num(r->p999);
		csv_num(r->max);
		csv_num(r->mean);
		csv_num(r->msgs_per_s);
		csv_num(r->bytes_per_s);
		csv_num(r->probe_ns);
		csv_num(r->probe_after_ns);
		csv_num(r->probe_p99);
		csv_num(r->wake_per_msg);
		csv_num(r->sleeps_per_msg);
		csv_num(r->lost_frac);
		printf(",%llu,%d,", (unsigned long long)r->samples, r->ok);
		for (const char *s = r->ok ? "" : r->err; *s; s++)
			putchar(*s == ',' || *s == '\n' ? ';' : *s);
		putchar('\n');
	}
}

void bench_print(enum bench_fmt f, const struct bench_result *rs, size_t n,
		 const struct bench_cfg *cfg)
{
	(void)cfg;
	if (f == BENCH_FMT_JSON)
		print_json(rs, n);
	else if (f == BENCH_FMT_CSV)
		print_csv(rs, n);
	else
		print_table(rs, n);
	fflush(stdout);
}

int bench_write_cdf(const char *path, const struct bench_result *rs, size_t n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "test,transport,size,mode,placement,batch,producers,consumers,q,ns\n");
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &rs[i];
		for (unsigned k = 0; r->ok && k < r->ncdf; k++)
			fprintf(f, "%s,%s,%zu,%s,%s,%u,%u,%u,%.6g,%.6g\n",
				bench_test_name(r->spec.test), r->spec.tr->name, r->spec.size,
				bench_mode_name(r->spec.mode), bench_place_name(&r->spec), r->spec.batch,
				r->spec.nprod, r->spec.ncons, r->cdf_q[k], r->cdf_ns[k]);
	}
	return fclose(f);
}

void bench_print_machine(void)
{
	struct utsname u;
	char model[128] = "?";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f)) {
			if (!strncmp(line, "model name", 10)) {
				char *p = strchr(line, ':');
				if (p) {
					snprintf(model, sizeof model, "%s", p + 2);
					model[strcspn(model, "\n")] = '\0';
				}
				break;
			}
		}
		fclose(f);
	}
	uname(&u);
	printf("# shmring-bench on %s, %ld CPUs online, %s %s %s\n", model,
	       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine);
}

/* The 1-minute load average: how busy the machine was while the figures were taken. */
double bench_loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}
