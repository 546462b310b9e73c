/* SPDX-License-Identifier: MIT */
#include "fuzz_common.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmring/bcast.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/spsc.h"

uint64_t fz_touch(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = len;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * UINT64_C(0x100000001b3);
	/* an empty asm with h as input keeps the loop */
	__asm__ __volatile__("" : : "r"(h) : "memory");
	return h;
}

/* ---- segment images ---- */

#define TEMPLATES 8
static struct {
	uint8_t *buf;
	size_t len;
	int tried;
} tmpl[TEMPLATES];

/* Copy a freshly created anonymous segment's bytes. */
static void grab(int t, struct shmring_seg *seg)
{
	size_t len = seg->size;
	uint8_t *b = malloc(len);
	if (!b)
		return;
	memcpy(b, seg->base, len);
	tmpl[t].buf = b;
	tmpl[t].len = len;
}

/* Template t: a segment of kind t / 2 + 1 made by the library, in one of two shapes. */
static void make_template(int t)
{
	int v = t & 1;
	tmpl[t].tried = 1;
	switch (t / 2 + 1) {
	case SHMRING_KIND_SPSC: {
		struct shmring_spsc_opts o = { .capacity = 4096, .align = v ? 64 : 8 };
		struct shmring_spsc *r;
		if (shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &r) == 0) {
			void *buf;
			for (int i = 0; i < 3 + v; i++)
				if (shmring_spsc_reserve(r, 40u + 100u * (unsigned)i, &buf) == 0)
					tu_fill(buf, 40u + 100u * (unsigned)i, (uint64_t)i);
			shmring_spsc_commit(r);
			grab(t, shmring_spsc_seg(r));
			shmring_spsc_detach(r);
		}
		break;
	}
	case SHMRING_KIND_MPMC: {
		struct shmring_mpmc_opts o = { .capacity = v ? 16 : 4, .slot_size = v ? 100 : 24,
					       .align = v ? 64 : 16, .max_parts = 8 };
		struct shmring_mpmc *r;
		if (shmring_mpmc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &r) == 0) {
			uint8_t m[24];
			for (int i = 0; i < 3; i++) {
				tu_fill(m, sizeof(m), (uint64_t)i);
				shmring_mpmc_enqueue(r, m, sizeof(m) - (size_t)i, 0);
			}
			grab(t, shmring_mpmc_seg(r));
			shmring_mpmc_close(r);
		}
		break;
	}
	case SHMRING_KIND_POOL: {
		struct shmring_pool_opts o = { .buf_size = v ? 5000 : 100, .nbufs = v ? 4 : 3,
					       .max_subs = 2, .flags = v ? SHMRING_POOL_F_CHECKSUM : 0 };
		struct shmring_pool *p;
		if (shmring_pool_create(NULL, &o, NULL, &p) == 0) {
			struct shmring_pool_frame fr;
			if (shmring_pool_loan(p, &fr) == 0) {
				fr.len = 50;
				tu_fill(fr.data, fr.len, 7);
				shmring_pool_publish(p, &fr);
			}
			grab(t, shmring_pool_seg(p));
			shmring_pool_close(p);
		}
		break;
	}
	case SHMRING_KIND_BCAST: {
		struct shmring_bcast_opts o = { .slots = v ? 8 : 2, .slot_size = v ? 200 : 16 };
		struct shmring_bcast *w;
		if (shmring_bcast_create(NULL, &o, SHMRING_ROLE_PRODUCER, &w) == 0) {
			uint8_t m[16];
			for (int i = 0; i < 3; i++) {
				tu_fill(m, sizeof(m), (uint64_t)i);
				shmring_bcast_publish(w, m, sizeof(m) - (size_t)i);
			}
			grab(t, shmring_bcast_seg(w));
			shmring_bcast_close(w);
		}
		break;
	}
	}
}

static void patch(struct fz *f, uint8_t *b, size_t len)
{
	uint16_t off = fz_u16(f);
	uint8_t n = fz_u8(f) % 17;
	uint8_t tmp[16];
	fz_bytes(f, tmp, n);
	if (off < len) {
		size_t k = len - off < n ? len - off : n;
		memcpy(b + off, tmp, k);
	}
}

uint8_t *fz_image(struct fz *f, size_t *lenp)
{
	uint8_t flags = fz_u8(f);
	uint8_t pages = fz_u8(f);
	uint8_t hdr[256];
	fz_bytes(f, hdr, sizeof(hdr));
	size_t len;
	uint8_t *b;
	if (flags & 2) {
		int t = pages % TEMPLATES;
		if (!tmpl[t].tried)
			make_template(t);
		if (!tmpl[t].buf)
			return NULL;
		len = tmpl[t].len;
		b = malloc(len);
		if (!b)
			return NULL;
		memcpy(b, tmpl[t].buf, len);
	} else {
		len = (size_t)(1 + pages % 16) * SHMRING_PAGE;
		b = malloc(len);
		if (!b)
			return NULL;
		memset(b, (flags & 16) ? 0xff : 0, len);
		memcpy(b, hdr, sizeof(hdr));
	}
	if (flags & 1) {
		struct shmring_hdr *h = (void *)b;
		uint64_t m = SHMRING_MAGIC;
		memcpy(b, &m, sizeof(m));
		h->layout_version = SHMRING_LAYOUT_VERSION;
	}
	/* patches before the checksum: they stay "valid" as far as the checksum goes */
	unsigned npre = fz_u8(f) % 8;
	for (unsigned i = 0; i < npre; i++)
		patch(f, b, len);
	if (flags & 4) {
		uint64_t c = shmring_hdr_checksum(b);
		memcpy(b + SHMRING_CHECKSUM_OFF, &c, sizeof(c));
	}
	if (flags & 8) {
		size_t cut = 1 + fz_u16(f) % SHMRING_PAGE;
		len = len > cut ? len - cut : 0;
	}
	while (f->n)
		patch(f, b, len);
	*lenp = len;
	return b;
}

int fz_memfd(const void *buf, size_t len)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	const uint8_t *p = buf;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n <= 0) {
			int e = n < 0 ? -errno : -EIO;
			close(fd);
			return e;
		}
		done += (size_t)n;
	}
	return fd;
}

/* ---- hostile writes ---- */

void fz_scribble(struct fz *f, uint8_t *base, uint64_t size, const struct shmring_seg *g)
{
	uint8_t sel = fz_u8(f);
	uint64_t lo = 0, rlen = size;
	switch (sel % 7) {
	case 0: lo = 0; rlen = 256; break;
	case 1: lo = 256; rlen = 256; break;
	case 2: lo = SHMRING_PARTS_OFF; rlen = SHMRING_HDR_SIZE - SHMRING_PARTS_OFF; break;
	case 3: lo = g->ctrl_off; rlen = g->ctrl_size; break;
	case 4: lo = g->data_off; rlen = g->data_size; break;
	case 5: lo = g->data_off; rlen = g->data_size; break;
	default: break;
	}
	if (lo >= size || rlen == 0)
		return;
	if (rlen > size - lo)
		rlen = size - lo;
	uint64_t off = (sel & 0x80) ? fz_u32(f) % rlen : fz_u16(f) % rlen;
	if ((sel % 7) == 5) /* near the end of the data region: the wrap, the last cells */
		off = rlen - 1 - off % (rlen < 512 ? rlen : 512);
	off += lo; /* from here on, an offset in the segment */
	uint8_t mode = fz_u8(f);
	uint8_t buf[16];
	size_t n;
	uint64_t v;
	switch (mode % 8) {
	case 0:
		n = 1 + fz_u8(f) % 16;
		fz_bytes(f, buf, n);
		break;
	case 1:
		n = 8;
		memset(buf, 0, n);
		break;
	case 2:
		n = 8;
		memset(buf, 0xff, n);
		break;
	case 3: {
		static const uint64_t nasty[] = {
			UINT64_C(1) << 31, UINT64_C(1) << 32, UINT64_C(1) << 48, UINT64_C(1) << 62,
			UINT64_C(1) << 63, 4096, 4088, 8, 0x7fffffff, 0xffffffff,
			UINT64_C(0x0001000000000000) | 4080, UINT64_C(0x0003000000000000) | 4088,
			UINT64_C(0x0001000000000000) | 0xfffffff8, UINT64_C(0x0002000000000000),
			UINT64_C(0x0001000000000000), UINT64_C(0x0003000000000000) | 8,
		};
		off &= ~(uint64_t)7;
		v = nasty[fz_u8(f) % (sizeof(nasty) / sizeof(nasty[0]))];
		n = 8;
		memcpy(buf, &v, 8);
		break;
	}
	case 4:
	case 5: { /* near the value already there: indices that are almost right */
		off &= ~(uint64_t)7;
		if (off + 8 > size)
			return;
		memcpy(&v, base + off, 8);
		int8_t d = (int8_t)fz_u8(f);
		v += (uint64_t)(int64_t)d * ((mode & 1) ? 8 : 1);
		n = 8;
		memcpy(buf, &v, 8);
		break;
	}
	case 6: { /* flip one bit */
		uint8_t bit = fz_u8(f);
		if (off + 1 > size)
			return;
		buf[0] = base[off] ^ (uint8_t)(1u << (bit & 7));
		n = 1;
		break;
	}
	default: { /* a 32-bit value (lengths, states) */
		uint32_t x = fz_u32(f);
		off &= ~(uint64_t)3;
		n = 4;
		memcpy(buf, &x, 4);
		break;
	}
	}
	if (off >= size)
		return;
	if (n > size - off)
		n = (size_t)(size - off);
	memcpy(base + off, buf, n);
}

void *fz_guard_prepare(uint64_t size)
{
	/* a hole of `size` bytes right below a PROT_NONE page: the next mmap of that size
	 * usually lands in the highest hole that fits, which is this one */
	uint64_t len = size + SHMRING_PAGE;
	uint8_t *r = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return NULL;
	munmap(r, size);
	return r + size;
}

int fz_guard_check(void *guard, const void *base, uint64_t size)
{
	if (!guard)
		return 0;
	if ((const uint8_t *)base + size == guard)
		return 1;
	munmap(guard, SHMRING_PAGE);
	return 0;
}

void fz_unguard(void *g)
{
	if (g)
		munmap(g, SHMRING_PAGE);
}

/* ---- snapshots ---- */

void fz_snap_init(struct fz_snap *s, void *seg_base, size_t seg_len)
{
	memset(s, 0, sizeof(*s));
	s->base = seg_base;
	s->len = seg_len;
	s->copy = malloc(seg_len);
	if (s->copy)
		memcpy(s->copy, seg_base, seg_len);
}

void fz_snap_add(struct fz_snap *s, void *obj, size_t len)
{
	if (s->nobj >= FZ_SNAP_OBJS)
		abort();
	s->obj[s->nobj].p = obj;
	s->obj[s->nobj].len = len;
	s->obj[s->nobj].copy = malloc(len);
	if (!s->obj[s->nobj].copy)
		abort();
	memcpy(s->obj[s->nobj].copy, obj, len);
	s->nobj++;
}

void fz_snap_restore(const struct fz_snap *s)
{
	memcpy(s->base, s->copy, s->len);
	for (int i = 0; i < s->nobj; i++)
		memcpy(s->obj[i].p, s->obj[i].copy, s->obj[i].len);
}

void fz_snap_free(struct fz_snap *s)
{
	free(s->copy);
	for (int i = 0; i < s->nobj; i++)
		free(s->obj[i].copy);
	memset(s, 0, sizeof(*s));
}

/* ---- shapes ---- */

int fz_shape_restore(struct fz_shape *sh)
{
	if (!sh->ready)
		return 0;
	fz_snap_restore(&sh->snap);
	return 1;
}

void fz_shape_ready(struct fz_shape *sh, struct shmring_seg *keep)
{
	if (!fz_guard_check(sh->guard, keep->base, keep->size))
		sh->guard = NULL;
	fz_snap_init(&sh->snap, keep->base, keep->size);
	sh->ready = 1;
}

void fz_shape_drop(struct fz_shape *sh, struct shmring_seg *keep)
{
	fz_unguard(sh->guard);
	shmring_seg_close(keep);
	fz_snap_free(&sh->snap);
	memset(sh, 0, sizeof(*sh));
}

int fz_trace(void)
{
	static int trace = -1;
	if (trace < 0)
		trace = getenv("FZ_TRACE") != NULL;
	return trace;
}
