/* SPDX-License-Identifier: MIT */
/*
 * Writes the hand-made seed inputs of every fuzz target into DIR/<target>/seed-*:
 *   ninja -C build-rel fuzz/fuzz_mkseeds && build-rel/fuzz/fuzz_mkseeds fuzz/corpus
 * Seeds are small: segment images are described compactly (fuzz_common.h), and real
 * segment files are included only for the smallest shapes. Inputs found by fuzzing are
 * kept beside them under other names (crash-*, cov-*), which this never touches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "shmring/spsc.h"

struct buf {
	uint8_t b[1 << 16];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->b))
		n = sizeof(b->b) - b->n;
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void u8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void u16(struct buf *b, uint16_t v)
{
	put(b, &v, 2);
}

static void zeros(struct buf *b, size_t n)
{
	static const uint8_t z[4096];
	while (n) {
		size_t k = n < sizeof(z) ? n : sizeof(z);
		put(b, z, k);
		n -= k;
	}
}

static const char *outdir;

static void save(const char *target, const char *name, const struct buf *b)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/seed-%s", outdir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(b->b, 1, b->n, f) != b->n) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* An image description: template t of the library's own segments, checksum fixed,
 * then patches (offset, bytes). */
static void image(struct buf *b, int t, int npatch, const uint16_t *off, const uint64_t *val)
{
	u8(b, 1 | 2 | 4);
	u8(b, (uint8_t)t);
	zeros(b, 256);
	u8(b, 0); /* no checksummed patches */
	for (int i = 0; i < npatch; i++) {
		u16(b, off[i]);
		u8(b, 8);
		put(b, &val[i], 8);
	}
}

/* An image whose checksummed header bytes are patched (geometry the checksum covers). */
static void image_geo(struct buf *b, int t, uint16_t off, uint64_t val)
{
	u8(b, 1 | 2 | 4);
	u8(b, (uint8_t)t);
	zeros(b, 256);
	u8(b, 1);
	u16(b, off);
	u8(b, 8);
	put(b, &val, 8);
}

static void seeds_images(void)
{
	static const char *kinds[] = { "spsc", "mpmc", "pool", "bcast" };
	char name[64];
	for (int t = 0; t < 8; t++) {
		struct buf b = { .n = 0 };
		/* hdr: image form */
		u8(&b, 1);
		image(&b, t, 0, NULL, NULL);
		snprintf(name, sizeof(name), "%s-%d", kinds[t / 2], t & 1);
		save("hdr", name, &b);
		/* dump: image form, all records */
		b.n = 0;
		u8(&b, 1);
		u8(&b, 255);
		image(&b, t, 0, NULL, NULL);
		save("dump", name, &b);
		/* attach: 32 bytes of op choices, then the image */
		b.n = 0;
		for (int i = 0; i < 32; i++)
			u8(&b, (uint8_t)(i * 37 + t));
		image(&b, t, 0, NULL, NULL);
		save("attach", name, &b);
		/* geometry the checksum still covers: total_size, ctrl, data, geo[0], geo[1] */
		static const uint16_t geo_off[] = { 24, 64, 80, 88, 96 };
		for (int g = 0; g < 5; g++) {
			b.n = 0;
			u8(&b, 1);
			image_geo(&b, t, geo_off[g], (uint64_t)1 << (12 + g));
			snprintf(name, sizeof(name), "%s-%d-geo%d", kinds[t / 2], t & 1, g);
			save("hdr", name, &b);
			b.n = 0;
			u8(&b, 1);
			u8(&b, 16);
			image_geo(&b, t, geo_off[g], (uint64_t)1 << (12 + g));
			save("dump", name, &b);
		}
		/* the control region and first data bytes rewritten */
		static const uint16_t c_off[] = { 4096, 4096 + 128, 8192, 8192 + 8, 8192 + 64 };
		static const uint64_t c_val[] = { 4000, 4096 * 3, UINT64_C(0x0001000000000fff),
						  UINT64_C(0xffffffffffffffff), 3 };
		b.n = 0;
		for (int i = 0; i < 32; i++)
			u8(&b, (uint8_t)(255 - i * 7 - t));
		image(&b, t, 5, c_off, c_val);
		snprintf(name, sizeof(name), "%s-%d-ctrl", kinds[t / 2], t & 1);
		save("attach", name, &b);
		b.n = 0;
		u8(&b, 1);
		u8(&b, 8);
		image(&b, t, 5, c_off, c_val);
		save("dump", name, &b);
	}
	/* raw: a real small SPSC segment file as it is in /dev/shm */
	struct shmring_spsc_opts o = { .capacity = 4096 };
	struct shmring_spsc *r;
	if (shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &r) == 0) {
		void *p;
		for (int i = 0; i < 5; i++)
			if (shmring_spsc_reserve(r, 10u + 90u * (unsigned)i, &p) == 0)
				tu_fill(p, 10u + 90u * (unsigned)i, (uint64_t)i);
		shmring_spsc_commit(r);
		struct shmring_seg *s = shmring_spsc_seg(r);
		struct buf b = { .n = 0 };
		u8(&b, 0);
		put(&b, s->base, s->size);
		save("hdr", "raw-spsc", &b);
		b.n = 0;
		u8(&b, 0);
		u8(&b, 16);
		put(&b, s->base, s->size);
		save("dump", "raw-spsc", &b);
		shmring_spsc_detach(r);
	}
	struct buf b = { .n = 0 };
	u8(&b, 0);
	zeros(&b, 300);
	save("hdr", "raw-zero", &b);
	save("dump", "raw-zero", &b);
}

/* ---- operation sequences ---- */

static void seeds_spsc(void)
{
	struct buf b = { .n = 0 };
	/* fill, drain, wrap: capacity 4096, align 8 */
	u8(&b, 0);
	for (int round = 0; round < 6; round++) {
		for (int i = 0; i < 12; i++) {
			u8(&b, 0); /* reserve, small */
			u16(&b, (uint16_t)(50 + 20 * i));
			if (i % 3 == 2)
				u8(&b, 3); /* commit */
		}
		u8(&b, 3);
		for (int i = 0; i < 12; i++) {
			u8(&b, 6); /* peek */
			if (i % 4 == 3)
				u8(&b, 8); /* release */
		}
		u8(&b, 8);
	}
	save("spsc", "wrap", &b);

	/* big records near max_record, recv into small buffers, send */
	b.n = 0;
	u8(&b, 1 | 2); /* capacity 8192, align 16 */
	for (int i = 0; i < 10; i++) {
		u8(&b, 0x80); /* reserve, large */
		u16(&b, (uint16_t)(1000 + 300 * i));
		u8(&b, 3);
		u8(&b, 9 | 0x80); /* recv with a cap */
		u16(&b, (uint16_t)(500 * i));
		u8(&b, 9);
		u8(&b, 10); /* send */
		u8(&b, (uint8_t)(i * 25));
	}
	save("spsc", "big", &b);

	/* abort, reopen both sides, close and reopen */
	b.n = 0;
	u8(&b, 4 | 0x20); /* align 32, max_record from the input */
	u16(&b, 200);
	for (int i = 0; i < 8; i++) {
		u8(&b, 0);
		u16(&b, (uint16_t)(i * 31));
		u8(&b, 0);
		u16(&b, 7);
		if (i & 1)
			u8(&b, 5); /* abort */
		else
			u8(&b, 3);
		u8(&b, 6);
		if (i % 3 == 0)
			u8(&b, 12 | 0x30); /* reopen consumer: the peeked record comes again */
		u8(&b, 6);
		u8(&b, 8);
		if (i % 4 == 1)
			u8(&b, 11 | 0x30); /* reopen producer */
		if (i == 5)
			u8(&b, 13 | 0x70); /* close producer */
		if (i == 6)
			u8(&b, 13 | 0x70); /* and open it again */
	}
	save("spsc", "reopen", &b);

	/* hostile: records, then scribbles over indices and record headers */
	b.n = 0;
	u8(&b, 0);
	for (int i = 0; i < 6; i++) {
		u8(&b, 0);
		u16(&b, (uint16_t)(40 * i));
	}
	u8(&b, 3);
	static const uint8_t sel[] = { 3, 4, 5, 3, 4, 0, 2 };
	for (int i = 0; i < 7; i++) {
		u8(&b, 14 | 0x40);
		u8(&b, sel[i]);
		u16(&b, (uint16_t)(i * 136));
		u8(&b, 3); /* a nasty value */
		u8(&b, (uint8_t)i);
		u8(&b, 6);
		u8(&b, 8);
		u8(&b, 0);
		u16(&b, 100);
		u8(&b, 0);
		u16(&b, 60);
		u8(&b, 5); /* abort after a scribble */
	}
	save("spsc", "hostile", &b);
}

static void seeds_mpmc(void)
{
	struct buf b = { .n = 0 };
	/* copies through a ring of 8 cells of 24 bytes: fill, drain, wrap, inspect */
	u8(&b, 2 | (1 << 3));
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 10; i++) {
			u8(&b, (uint8_t)(0 | ((i & 1) << 4)));
			u8(&b, (uint8_t)(3 + i * 2));
		}
		for (int i = 0; i < 10; i++)
			u8(&b, (uint8_t)(5 | ((i & 1) << 5)));
		u8(&b, 11);
		u8(&b, (uint8_t)round);
	}
	save("mpmc", "copy", &b);

	/* zero-copy batches: start (bulk, burst), finish with gaps, consumer batches */
	b.n = 0;
	u8(&b, 3 | (2 << 3) | 32);
	for (int i = 0; i < 8; i++) {
		u8(&b, 2);
		u8(&b, (uint8_t)(1 + i % 5));
		u8(&b, (uint8_t)(i % 3));
		u8(&b, 3);
		u8(&b, (uint8_t)(i % 4)); /* publish fewer than held: gaps */
		u8(&b, (uint8_t)(i & 1));
		for (int j = 0; j < 4; j++)
			u8(&b, (uint8_t)(10 * j + i));
		u8(&b, 2 | 0x10); /* the other producer */
		u8(&b, 3);
		u8(&b, 1);
		u8(&b, 3 | 0x10);
		u8(&b, 2);
		u8(&b, 1);
		u8(&b, 7);
		u8(&b, 3);
		u8(&b, 1);
		u8(&b, 8);
		u8(&b, 10 | 0x40 | 0x80);
		u8(&b, 4);
		u8(&b, 60);
		u8(&b, 11);
		u8(&b, (uint8_t)i);
	}
	save("mpmc", "batch", &b);

	/* bulk and burst copies, a held batch during a close, recovery */
	b.n = 0;
	u8(&b, 1);
	for (int i = 0; i < 6; i++) {
		u8(&b, 4 | 0x40);
		u8(&b, (uint8_t)(2 + i));
		u8(&b, 20);
		u8(&b, 4);
		u8(&b, 70);
		u8(&b, 8);
		u8(&b, 10);
		u8(&b, 3);
		u8(&b, 13);
	}
	u8(&b, 2 | 0x10);
	u8(&b, 2);
	u8(&b, 1);
	u8(&b, 12 | 0xc0 | 0x10); /* close producer 1 while it holds a batch */
	u8(&b, 5);
	u8(&b, 5);
	save("mpmc", "bulk", &b);

	/* hostile: messages, then scribbles over tail, head, state words and lengths */
	b.n = 0;
	u8(&b, 3 | (1 << 3));
	for (int i = 0; i < 12; i++) {
		u8(&b, 0);
		u8(&b, (uint8_t)(i + 1));
	}
	static const uint8_t sel[] = { 3, 4, 5, 4, 3, 2 };
	for (int i = 0; i < 6; i++) {
		u8(&b, 14 | 0x40);
		u8(&b, sel[i]);
		u16(&b, (uint16_t)(i * 64 + (i & 1) * 8));
		u8(&b, (uint8_t)(3 + (i % 4)));
		u8(&b, (uint8_t)(i * 3));
		u8(&b, 5);
		u8(&b, 7);
		u8(&b, 2);
		u8(&b, 1);
		u8(&b, 8);
		u8(&b, 0);
		u8(&b, 9);
		u8(&b, 13);
	}
	save("mpmc", "hostile", &b);
}

static void seeds_bcast(void)
{
	struct buf b = { .n = 0 };
	/* 4 slots of 20 bytes: publish past the readers so that they are lapped */
	u8(&b, 1 | (1 << 2));
	for (int i = 0; i < 12; i++) {
		u8(&b, 0);
		u8(&b, (uint8_t)(i * 3));
		if (i % 3 == 2)
			for (int r = 0; r < 3; r++)
				u8(&b, (uint8_t)(6 | (r << 4)));
	}
	for (int r = 0; r < 3; r++) {
		u8(&b, (uint8_t)(6 | (r << 4)));
		u8(&b, (uint8_t)(13 | (r << 4))); /* stats */
	}
	save("bcast", "lap", &b);

	/* zero-copy both ways: reserve, commit, abort, peek, validate, release, latest, seek */
	b.n = 0;
	u8(&b, 2 | (2 << 2));
	for (int i = 0; i < 10; i++) {
		u8(&b, 3);
		u16(&b, (uint16_t)(10 + i * 17));
		u8(&b, (uint8_t)((i % 4) == 3 ? 5 : 4)); /* commit, or abort */
		u8(&b, (uint8_t)(8 | ((i % 3) << 4)));
		u8(&b, (uint8_t)(10 | ((i % 3) << 4)));
		u8(&b, 0);
		u8(&b, 30);
		u8(&b, (uint8_t)(9 | ((i % 3) << 4)));
		u8(&b, (uint8_t)(11 | 0x80 | ((i % 3) << 4)));
		u16(&b, (uint16_t)(i * 20));
		u8(&b, (uint8_t)(12 | ((i % 3) << 4)));
		u8(&b, (uint8_t)(i % 4));
	}
	save("bcast", "zerocopy", &b);

	/* the writer closes (readers drain to EOF) and a replacement resumes */
	b.n = 0;
	u8(&b, 0);
	for (int i = 0; i < 3; i++) {
		u8(&b, 0);
		u8(&b, 5);
	}
	u8(&b, 3);
	u16(&b, 4);
	u8(&b, 13 | 0x80); /* close with a reservation outstanding */
	for (int i = 0; i < 5; i++)
		u8(&b, 6);
	u8(&b, 13 | 0x80); /* reopen */
	u8(&b, 0);
	u8(&b, 7);
	u8(&b, 6);
	u8(&b, 6);
	save("bcast", "writer", &b);

	/* hostile: scribbles over pub, sequence words and lengths while reading */
	b.n = 0;
	u8(&b, 1 | (1 << 2));
	for (int i = 0; i < 6; i++) {
		u8(&b, 0);
		u8(&b, 9);
	}
	static const uint8_t sel[] = { 3, 4, 5, 4, 3, 1 };
	for (int i = 0; i < 6; i++) {
		u8(&b, 14 | 0x40);
		u8(&b, sel[i]);
		u16(&b, (uint16_t)(i * 128 + (i & 1) * 8));
		u8(&b, (uint8_t)(3 + (i % 4)));
		u8(&b, (uint8_t)(i * 5));
		for (int r = 0; r < 3; r++) {
			u8(&b, (uint8_t)(6 | (r << 4)));
			u8(&b, (uint8_t)(8 | (r << 4)));
			u8(&b, (uint8_t)(9 | (r << 4)));
			u8(&b, (uint8_t)(11 | (r << 4)));
		}
		u8(&b, 0);
		u8(&b, 3);
	}
	save("bcast", "hostile", &b);
}

static void seeds_pool(void)
{
	struct buf b = { .n = 0 };
	/* two subscribers (block, drop-oldest), frames loaned, published, taken, released */
	u8(&b, 1 | 16);
	for (int i = 0; i < 16; i++) {
		u8(&b, 0);
		u8(&b, 3);
		u8(&b, (uint8_t)(10 + i));
		u8(&b, 6); /* sub 0 */
		u8(&b, 9);
		u8(&b, 0);
		if (i % 3 == 0) {
			u8(&b, 6 | 0x10); /* sub 1, now and then */
			u8(&b, 9 | 0x10);
			u8(&b, 0);
		}
		u8(&b, (uint8_t)(11 | ((i & 1) << 4)));
	}
	save("pool", "flow", &b);

	/* a slow drop-oldest subscriber and a block subscriber that stalls the producer */
	b.n = 0;
	u8(&b, 2 | 4);
	for (int i = 0; i < 20; i++) {
		u8(&b, 1);
		u8(&b, 4);
		u8(&b, (uint8_t)(i * 3));
		if (i % 4 == 0) {
			u8(&b, 7);
			u8(&b, 10);
			u8(&b, 1);
		}
		u8(&b, 11 | 0x10);
	}
	u8(&b, 5);
	u8(&b, 12);
	save("pool", "stall", &b);

	/* checksummed frames, cancel, close a subscriber and the producer */
	b.n = 0;
	u8(&b, 3 | 32);
	for (int i = 0; i < 6; i++) {
		u8(&b, 2);
		u8(&b, 3 | 0x80);
		u16(&b, (uint16_t)(i * 900));
		u8(&b, 8);
		u8(&b, 8 | 0x10);
		u8(&b, 10);
		u8(&b, 0);
		u8(&b, 10 | 0x10);
		u8(&b, 0);
		u8(&b, 0);
		u8(&b, 5);
	}
	u8(&b, 13 | 0xc0 | 0x10); /* close subscriber 1 */
	u8(&b, 0);
	u8(&b, 3);
	u8(&b, 20);
	u8(&b, 13 | 0xc0 | 0x20); /* close the producer: the others drain to EOF */
	u8(&b, 6);
	u8(&b, 6);
	u8(&b, 11);
	save("pool", "close", &b);

	/* hostile: scribbles over cursors, buffer states, the log and the owner word */
	b.n = 0;
	u8(&b, 1);
	for (int i = 0; i < 4; i++) {
		u8(&b, 0);
		u8(&b, 3);
		u8(&b, 30);
	}
	for (int i = 0; i < 8; i++) {
		u8(&b, 14 | 0x40);
		u8(&b, 3);
		u16(&b, (uint16_t)(i * 136));
		u8(&b, (uint8_t)(3 + (i % 5)));
		u8(&b, (uint8_t)(i * 7));
		u8(&b, 6);
		u8(&b, 9);
		u8(&b, 0);
		u8(&b, 0);
		u8(&b, 3);
		u8(&b, 40);
		u8(&b, 12 | 0x40);
	}
	save("pool", "hostile", &b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	seeds_images();
	seeds_spsc();
	seeds_mpmc();
	seeds_bcast();
	seeds_pool();
	return 0;
}
