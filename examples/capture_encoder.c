/* SPDX-License-Identifier: MIT */
/*
 * capture_encoder: capture -> encoder through a shmring frame pool, with the library
 * API directly (no shmcat, no copies).
 *
 * The capture process (the parent) creates a pool of page-aligned 1080p NV12 buffers,
 * loans a free buffer, draws a synthetic frame straight into it and publishes it. Two
 * processes subscribe:
 *   - the encoder, policy BLOCK: it must see every frame, so capture waits for it when
 *     it falls queue_depth frames behind;
 *   - the preview, policy DROP_OLDEST: it is slow (it "displays" at most 15 frames/s)
 *     and loses its oldest queued frames instead of ever slowing capture down.
 * Each subscriber reads the frame in place, through a read-only mapping, and releases
 * it; the buffer goes back to the pool when both have. The encoder checks every frame
 * (its checksum and its sequence number) and reports frames/s, bandwidth and the
 * publish-to-take latency; the preview reports how many frames it dropped.
 *
 *   capture_encoder [--frames N] [--fps F] [--4k] [--no-preview]
 *
 * Build: part of `meson compile` (examples/); or by hand:
 *   cc -std=c11 -O2 capture_encoder.c $(pkg-config --cflags --libs shmring)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring/pool.h"

#define FOURCC_NV12 0x3231564eu /* 'N' 'V' '1' '2' */

struct config {
	char name[64];
	unsigned frames;
	unsigned fps;     /* 0: as fast as the encoder goes */
	uint32_t width, height;
	int preview;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* A moving test pattern: luma bars that shift each frame, flat chroma. The first
 * bytes name the frame, so the encoder can check it got the right one. */
static void draw_nv12(uint8_t *px, uint32_t w, uint32_t h, uint64_t seq)
{
	for (uint32_t y = 0; y < h; y++) {
		uint8_t *row = px + (size_t)y * w;
		for (uint32_t x = 0; x < w; x += 64) {
			uint32_t n = w - x < 64 ? w - x : 64;
			memset(row + x, (int)(((x / 64) * 16 + seq * 4 + y / 8) & 0xff), n);
		}
	}
	memset(px + (size_t)w * h, 128, (size_t)w * h / 2);
	memcpy(px, &seq, sizeof(seq));
}

/* ---- subscribers (child processes: each opens the pool itself after fork) ---- */

static int subscriber(const struct config *cfg, int preview, int ready_fd)
{
	struct shmring_pool *s;
	struct shmring_pool_sub_opts so = {
		.policy = preview ? SHMRING_POOL_DROP_OLDEST : SHMRING_POOL_BLOCK,
	};
	int rc = shmring_pool_subscribe(cfg->name, &so, &s);
	char one = rc == 0;
	if (write(ready_fd, &one, 1) != 1 || rc) {
		fprintf(stderr, "%s: subscribe: %s\n", preview ? "preview" : "encoder",
			shmring_strerror(rc));
		return 1;
	}
	close(ready_fd);

	uint64_t frames = 0, bytes = 0, lat_sum = 0, lat_max = 0, expect = 0, bad = 0;
	uint64_t t0 = 0;
	for (;;) {
		struct shmring_pool_frame f;
		rc = shmring_pool_take_wait(s, &f, SHMRING_FOREVER);
		if (rc == -EPIPE)
			break; /* capture closed the pool and we have seen everything */
		if (rc) {
			fprintf(stderr, "take: %s\n", shmring_strerror(rc));
			return 1;
		}
		uint64_t lat = now_ns() - f.ts_ns;
		if (!t0)
			t0 = now_ns();
		uint64_t seq;
		memcpy(&seq, f.data, sizeof(seq));
		if (!preview) {
			/* the encoder must get every frame, in order, intact */
			if (seq != expect || seq != f.seq || shmring_pool_frame_verify(s, &f) != 0)
				bad++;
			expect = seq + 1;
		} else {
			/* a slow display: at most 15 frames/s, the pool drops what it misses */
			struct timespec ts = { 0, 1000000000L / 15 };
			nanosleep(&ts, NULL);
		}
		frames++;
		bytes += f.len;
		lat_sum += lat;
		if (lat > lat_max)
			lat_max = lat;
		shmring_pool_release(s, &f);
	}
	double secs = t0 ? (double)(now_ns() - t0) / 1e9 : 0;
	struct shmring_pool_sub_stats st;
	shmring_pool_sub_stats(s, &st);
	if (preview)
		printf("preview: %llu frames shown, %llu dropped for it (drop-oldest)\n",
		       (unsigned long long)frames, (unsigned long long)st.drops);
	else
		printf("encoder: %llu frames, %.1f frames/s, %.0f MB/s, %llu bad; publish->take "
		       "latency mean %.1f us, max %.1f us\n",
		       (unsigned long long)frames, secs > 0 ? (double)frames / secs : 0,
		       secs > 0 ? (double)bytes / secs / 1e6 : 0, (unsigned long long)bad,
		       frames ? (double)lat_sum / (double)frames / 1e3 : 0, (double)lat_max / 1e3);
	shmring_pool_close(s);
	return bad ? 2 : 0;
}

static pid_t spawn(const struct config *cfg, int preview)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		int rc = subscriber(cfg, preview, p[1]);
		fflush(NULL); /* _exit() does not flush stdio */
		_exit(rc);
	}
	close(p[1]);
	/* wait until it has subscribed: frames published before that are not for it */
	char ok = 0;
	if (pid < 0 || read(p[0], &ok, 1) != 1 || !ok) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return pid;
}

/* ---- capture (the parent) ---- */

static int usage(void)
{
	fprintf(stderr, "usage: capture_encoder [--frames N] [--fps F] [--4k] [--no-preview]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct config cfg = { .frames = 300, .fps = 0, .width = 1920, .height = 1080, .preview = 1 };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--frames") == 0 && i + 1 < argc)
			cfg.frames = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--fps") == 0 && i + 1 < argc)
			cfg.fps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--4k") == 0)
			cfg.width = 3840, cfg.height = 2160;
		else if (strcmp(argv[i], "--no-preview") == 0)
			cfg.preview = 0;
		else
			return usage();
	}
	snprintf(cfg.name, sizeof(cfg.name), "shmring-capture-encoder-%d", (int)getpid());
	size_t frame_bytes = (size_t)cfg.width * cfg.height * 3 / 2; /* NV12 */

	/* 8 buffers: queue_depth 6 for the encoder plus one held by each subscriber */
	struct shmring_pool_opts o = {
		.buf_size = frame_bytes,
		.nbufs = 8,
		.max_subs = 2,
		.max_held = 1,
		.flags = SHMRING_POOL_F_CHECKSUM,
	};
	struct shmring_pool *cap;
	int rc = shmring_pool_create(cfg.name, &o, NULL, &cap);
	if (rc) {
		fprintf(stderr, "create %s: %s (%s)\n", cfg.name, shmring_strerror(rc),
			shmring_last_error_detail());
		return 1;
	}
	printf("capture: pool %s, 8 buffers of %zu bytes (%ux%u NV12), %u frames%s\n", cfg.name,
	       frame_bytes, cfg.width, cfg.height, cfg.frames, cfg.preview ? ", with preview" : "");
	fflush(stdout);
	pid_t enc = spawn(&cfg, 0);
	pid_t pre = cfg.preview ? spawn(&cfg, 1) : 0;
	/* named only so the children can find it; nothing is left behind if we crash now */
	shmring_seg_unlink(cfg.name);
	if (enc < 0 || pre < 0) {
		fprintf(stderr, "could not start the subscribers\n");
		shmring_pool_close(cap);
		return 1;
	}

	uint64_t start = now_ns();
	for (unsigned n = 0; n < cfg.frames; n++) {
		struct shmring_pool_frame f;
		if (cfg.fps)
			sleep_until(start + (uint64_t)n * 1000000000u / cfg.fps);
		/* waits only if the encoder is queue_depth frames behind: never for the preview */
		rc = shmring_pool_loan_wait(cap, &f, SHMRING_FOREVER);
		if (rc) {
			fprintf(stderr, "loan: %s\n", shmring_strerror(rc));
			break;
		}
		draw_nv12(f.data, cfg.width, cfg.height, n); /* straight into shared memory */
		f.len = frame_bytes;
		f.width = cfg.width;
		f.height = cfg.height;
		f.stride = cfg.width;
		f.format = FOURCC_NV12;
		f.ts_ns = now_ns();
		rc = shmring_pool_publish(cap, &f);
		if (rc < 0) {
			fprintf(stderr, "publish: %s\n", shmring_strerror(rc));
			break;
		}
	}
	double secs = (double)(now_ns() - start) / 1e9;
	printf("capture: %u frames in %.2f s (%.1f frames/s)\n", cfg.frames, secs,
	       (double)cfg.frames / secs);
	fflush(stdout);
	shmring_pool_close(cap); /* end of stream: subscribers drain, then see -EPIPE */

	int status = rc < 0 ? 1 : 0, st;
	if (waitpid(enc, &st, 0) == enc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		status = 1;
	if (pre > 0 && waitpid(pre, &st, 0) == pre && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		status = 1;
	return status;
}
