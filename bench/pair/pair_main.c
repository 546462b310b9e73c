/* SPDX-License-Identifier: MIT */
/*
 * The paired A/B harness. The vCPUs of a VM move between placements every second or so,
 * and a change of 5-15% drowns in that when two benchmark binaries run one after the
 * other. Here both builds of a kind's fast path are linked into one binary (pair.h), and
 * the client alternates between them every block of round trips; the server answers with
 * the build the message's stamp names. Adjacent blocks see the same placement, so the
 * ratio of their p50s is the effect. An A/A run gives 1.000. run.sh builds and runs it.
 */
#include "pair.h"

#include "bench.h"
#include "shmring/common.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VBIT (UINT64_C(1) << 40) /* in the stamp: build B */
#define STOP (UINT64_C(1) << 41)

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int server(const int fds[2], int ready, size_t size)
{
	void *rx = NULL, *tx = NULL;
	int rc = pair_attach(fds, &rx, &tx);
	if (rc) {
		fprintf(stderr, "server: attach: %s\n", shmring_strerror(rc));
		return 2;
	}
	char c = 1;
	if (write(ready, &c, 1) != 1)
		return 3;
	for (;;) {
		struct pair_tok t;
		uint64_t seq;
		/* build A's recv for every message: a change to recv is measured on the
		 * client's side only */
		if ((rc = pair_ops_a.recv(rx, &seq, size, &t)) != 0)
			break;
		if (seq & STOP)
			return pair_ops_a.done(rx, &t) == 0 ? 0 : 4;
		const struct pair_ops *o = (seq & VBIT) ? &pair_ops_b : &pair_ops_a;
		/* answer first, then give the message back: the reply is on the critical path */
		if ((rc = o->send(tx, seq, size)) != 0 || (rc = o->done(rx, &t)) != 0)
			break;
	}
	fprintf(stderr, "server: %s\n", shmring_strerror(rc));
	return 4;
}

int main(int argc, char **argv)
{
	int blocks = argc > 1 ? atoi(argv[1]) : 400, per = argc > 2 ? atoi(argv[2]) : 2000;
	size_t size = argc > 3 ? strtoull(argv[3], NULL, 0) : pair_default_size;
	if (blocks < 4 || per < 10 || size < 16) {
		fprintf(stderr, "usage: %s [blocks >= 4] [round trips per block >= 10] [bytes >= 16]\n",
			argv[0]);
		return 2;
	}
	void *tx = NULL, *rx = NULL;
	int fds[2], sync[2];
	int rc = pair_create(size, &tx, &rx, fds);
	if (rc) {
		fprintf(stderr, "%s: create: %s\n", pair_kind, shmring_strerror(rc));
		return 1;
	}
	if (pipe(sync) != 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		bench_pin(1);
		close(sync[0]);
		_exit(server(fds, sync[1], size));
	}
	bench_pin(0);
	bench_clock_init(0);
	close(sync[1]);
	char c;
	if (read(sync[0], &c, 1) != 1) {
		fprintf(stderr, "the server did not attach\n");
		return 1;
	}
	uint64_t *t = malloc(sizeof(*t) * (size_t)per);
	double *med = malloc(sizeof(*med) * (size_t)blocks);
	if (!t || !med)
		return 1;
	uint64_t seq = 0, got;
	struct pair_tok tok;
	for (int i = 0; i < 20000; i++, seq++) /* warm-up */
		if (pair_ops_a.send(tx, seq, size) || pair_ops_a.recv(rx, &got, size, &tok) ||
		    pair_ops_a.done(rx, &tok)) {
			fprintf(stderr, "warm-up failed\n");
			kill(pid, SIGKILL);
			return 1;
		}
	struct bench_result r;
	for (int k = 0; k < blocks; k++) {
		const struct pair_ops *o = (k & 1) ? &pair_ops_b : &pair_ops_a;
		uint64_t t0 = bench_ticks();
		for (int i = 0; i < per; i++) {
			uint64_t sq = seq++ | ((k & 1) ? VBIT : 0);
			rc = o->send(tx, sq, size);
			if (rc == 0)
				rc = o->recv(rx, &got, size, &tok);
			if (rc == 0)
				rc = o->done(rx, &tok);
			if (rc || got != sq) {
				fprintf(stderr, "round trip %llu: %s\n", (unsigned long long)sq,
					rc ? shmring_strerror(rc) : "wrong stamp");
				kill(pid, SIGKILL);
				return 1;
			}
			uint64_t t1 = bench_ticks();
			t[i] = t1 - t0;
			t0 = t1;
		}
		memset(&r, 0, sizeof(r));
		bench_stats(&r, t, (uint64_t)per);
		med[k] = r.p50;
	}
	if (pair_ops_a.send(tx, STOP, size) != 0)
		return 1;
	int st;
	waitpid(pid, &st, 0);
	int np = blocks / 2;
	double *ratio = malloc(sizeof(*ratio) * (size_t)np), *ma = malloc(sizeof(*ma) * (size_t)np),
	       *mb = malloc(sizeof(*mb) * (size_t)np);
	if (!ratio || !ma || !mb)
		return 1;
	for (int j = 0; j < np; j++) {
		ma[j] = med[2 * j];
		mb[j] = med[2 * j + 1];
		ratio[j] = mb[j] / ma[j];
	}
	qsort(ratio, (size_t)np, sizeof(*ratio), cmp_dbl);
	qsort(ma, (size_t)np, sizeof(*ma), cmp_dbl);
	qsort(mb, (size_t)np, sizeof(*mb), cmp_dbl);
	printf("%s %zu B, %d pairs of %d round trips: B/A p50 ratio median %.3f (quartiles %.3f "
	       "%.3f); p50 median A %.0f ns, B %.0f ns\n",
	       pair_kind, size, np, per, ratio[np / 2], ratio[np / 4], ratio[3 * np / 4], ma[np / 2],
	       mb[np / 2]);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
