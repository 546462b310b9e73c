/* SPDX-License-Identifier: MIT */
/*
 * demo_frames: a capture process streams synthetic 1080p NV12 frames through a shmring
 * SPSC ring to an encoder-like consumer process, zero-copy: the producer draws each
 * frame directly in the ring, the consumer verifies it in place. Prints frames/s,
 * bandwidth and the commit-to-peek latency.
 *
 *   demo_frames [--frames N] [--fps F] [--width W --height H] [--ring MiB]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "shmring/shmring.h"

struct frame_meta {
	uint64_t seq;
	uint64_t t_commit_ns; /* CLOCK_MONOTONIC, just before commit */
	uint64_t xxh3;        /* of the pixels */
	uint32_t width, height;
};

static void draw(uint8_t *px, size_t n, uint32_t w, uint64_t seq)
{
	/* a moving gradient: cheap, and different in every frame */
	uint8_t base = (uint8_t)(seq * 3);
	for (size_t i = 0; i < n; i += w) {
		size_t len = n - i < w ? n - i : w;
		memset(px + i, (uint8_t)(base + (i / w)), len);
	}
	memcpy(px, &seq, sizeof(seq)); /* the first bytes name the frame too */
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int producer(const char *name, uint64_t frames, double fps, uint32_t w, uint32_t h)
{
	struct shmring_spsc *r;
	int rc = shmring_spsc_open(name, SHMRING_ROLE_PRODUCER, &r);
	if (rc) {
		fprintf(stderr, "producer: open: %s\n", shmring_strerror(rc));
		return 1;
	}
	size_t npx = (size_t)w * h * 3 / 2;
	uint64_t period = fps > 0 ? (uint64_t)(1e9 / fps) : 0;
	uint64_t next = shmring_now_ns();
	for (uint64_t i = 0; i < frames; i++) {
		void *buf;
		rc = shmring_spsc_reserve_wait(r, sizeof(struct frame_meta) + npx, &buf, 5000);
		if (rc) {
			fprintf(stderr, "producer: reserve: %s\n", shmring_strerror(rc));
			return 1;
		}
		struct frame_meta *m = buf;
		uint8_t *px = (uint8_t *)(m + 1);
		draw(px, npx, w, i);
		m->seq = i;
		m->width = w;
		m->height = h;
		m->xxh3 = XXH3_64bits(px, npx);
		m->t_commit_ns = shmring_now_ns();
		shmring_spsc_commit(r);
		if (period) {
			next += period;
			uint64_t now = shmring_now_ns();
			if (next > now) {
				struct timespec ts = { (time_t)((next - now) / 1000000000u),
						       (long)((next - now) % 1000000000u) };
				nanosleep(&ts, NULL); /* pacing a camera, not synchronisation */
			}
		}
	}
	shmring_spsc_close(r);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t frames = 600;
	double fps = 0;
	uint32_t w = 1920, h = 1080;
	uint64_t ring_mib = 32;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--frames") && i + 1 < argc)
			frames = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--fps") && i + 1 < argc)
			fps = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--width") && i + 1 < argc)
			w = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--height") && i + 1 < argc)
			h = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ring") && i + 1 < argc)
			ring_mib = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--frames N] [--fps F] [--width W --height H] [--ring MiB]\n",
				argv[0]);
			return 2;
		}
	}
	if (!frames || !w || !h || w % 2 || h % 2 || !ring_mib) {
		fprintf(stderr, "demo_frames: frames, width, height and ring must be positive (even sizes)\n");
		return 2;
	}
	size_t npx = (size_t)w * h * 3 / 2;
	char name[64];
	snprintf(name, sizeof(name), "shmring-demo-%d", (int)getpid());
	struct shmring_spsc_opts o = { .capacity = ring_mib << 20 };
	struct shmring_spsc *r;
	int rc = shmring_spsc_create(name, &o, SHMRING_ROLE_CONSUMER, &r);
	if (rc) {
		fprintf(stderr, "demo_frames: create: %s (%s)\n", shmring_strerror(rc), shmring_last_error_detail());
		return 1;
	}
	if (npx + sizeof(struct frame_meta) > r->max_record) {
		fprintf(stderr, "demo_frames: a %ux%u frame needs a larger --ring\n", w, h);
		shmring_spsc_close(r);
		shmring_seg_unlink(name);
		return 2;
	}
	printf("shmring demo: %llu frames of %ux%u NV12 (%zu bytes) through a %llu MiB SPSC ring\n",
	       (unsigned long long)frames, w, h, npx, (unsigned long long)ring_mib);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		pin(0);
		_exit(producer(name, frames, fps, w, h));
	}
	pin(1);
	uint64_t *lat = calloc(frames, sizeof(uint64_t));
	uint64_t got = 0, bad = 0, t0 = 0, t1 = 0;
	for (;;) {
		struct shmring_rec rec;
		rc = shmring_spsc_peek_wait(r, &rec, 10000);
		if (rc == -EPIPE)
			break;
		if (rc) {
			fprintf(stderr, "demo_frames: consumer: %s\n", shmring_strerror(rc));
			bad++;
			break;
		}
		uint64_t now = shmring_now_ns();
		const struct frame_meta *m = rec.data;
		const uint8_t *px = (const uint8_t *)(m + 1);
		if (rec.len != sizeof(*m) + npx || m->seq != got || XXH3_64bits(px, npx) != m->xxh3)
			bad++;
		else if (got < frames)
			lat[got] = now - m->t_commit_ns;
		if (got == 0)
			t0 = now;
		t1 = now;
		got++;
		shmring_spsc_release(r);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	shmring_spsc_close(r);
	shmring_seg_unlink(name);
	uint64_t n = got < frames ? got : frames;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	double secs = (t1 - t0) / 1e9;
	double fpsr = got > 1 && secs > 0 ? (got - 1) / secs : 0;
	printf("frames: %llu received, %llu verified, %llu bad\n", (unsigned long long)got,
	       (unsigned long long)(got - bad), (unsigned long long)bad);
	printf("rate: %.0f frames/s, %.2f GB/s\n", fpsr, fpsr * npx / 1e9);
	if (n)
		printf("latency commit->peek: p50 %.1f us, p99 %.1f us, max %.1f us\n", lat[n / 2] / 1e3,
		       lat[n * 99 / 100] / 1e3, lat[n - 1] / 1e3);
	free(lat);
	if (bad || got != frames || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "demo_frames: FAILED\n");
		return 1;
	}
	return 0;
}
