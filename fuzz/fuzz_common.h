/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the fuzz targets: a byte-stream reader over the input, a check
 * that aborts (so libFuzzer and the replay driver both report it as a crash), segment
 * images built from a compact description, and "scribbles" that play a hostile peer
 * writing into a live segment.
 *
 * Everything a target learns from shared memory is untrusted: FZ_CHECK() is for the
 * library's promises (a pointer it returns lies inside the region it belongs to, a
 * length is within the geometry, an error is one the header documents), never for
 * what the bytes hold.
 */
#ifndef SHMRING_FUZZ_COMMON_H
#define SHMRING_FUZZ_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmring/segment.h"
/* tu_fill()/tu_check(): one payload pattern for unit tests and fuzzers alike;
 * tests/testutil.c needs only libc, not Criterion */
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the library: print where and abort (a crash for the fuzzer). */
#define FZ_CHECK(cond, ...)                                                            \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
				#cond);                                                \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* The input as a stream; reads past the end yield zeros. */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t v = fz_u8(f);
	return (uint16_t)(v | (uint16_t)fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t v = fz_u16(f);
	return v | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t v = fz_u32(f);
	return v | (uint64_t)fz_u32(f) << 32;
}

static inline void fz_bytes(struct fz *f, void *dst, size_t len)
{
	size_t k = len < f->n ? len : f->n;
	memcpy(dst, f->p, k);
	memset((uint8_t *)dst + k, 0, len - k);
	f->p += k;
	f->n -= k;
}

/* Errors segment.h documents for attaching to a segment that is not (or no longer) a
 * good one, plus the kinds' own -EBUSY / -EUSERS for a taken role. */
static inline int fz_attach_err_ok(int rc)
{
	return rc == -EPROTO || rc == -EBADMSG || rc == -EAGAIN || rc == -EBUSY || rc == -EUSERS ||
	       rc == -ENOTSUP || rc == -EACCES || rc == -EINVAL;
}

/* Does [p, p + len) lie inside [base, base + size)? */
static inline int fz_inside(const void *p, uint64_t len, const void *base, uint64_t size)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
	return a >= b && a - b <= size && len <= size - (a - b);
}

/* Touch every byte of a region the library handed out (so a bad pointer faults here,
 * under ASan or not) and fold it into a value the optimiser must keep. */
uint64_t fz_touch(const void *p, size_t len);


/*
 * A segment image from a compact description (so small inputs reach deep code):
 *   u8 flags, u8 pages, 256 header bytes, then patches {u16 offset, u8 len, bytes}.
 * flags: 1 set magic and layout version, 2 make the geometry plausible for a kind,
 * 4 recompute the checksum (after 1 and 2), 8 truncate the file to a non-page size,
 * 16 fill the body with 0xff instead of 0. The patches apply after the checksum, so
 * they may touch anything, checksummed bytes included. Returns a malloc'd buffer of
 * *len bytes (exactly, so ASan sees any overrun), or NULL.
 */
uint8_t *fz_image(struct fz *f, size_t *len);

/* Write buf into a new memfd (not sealed, so a target can keep writing); -errno. */
int fz_memfd(const void *buf, size_t len);

/*
 * Scribble on a live segment as a hostile peer would: the input picks a region (the
 * header's immutable part, its statistics, the participant table, the control region,
 * the data region, or an offset relative to the region's end) and writes 1..16 bytes,
 * sometimes one of a few nasty values (0, ~0, 2^31, a large power of two, a value
 * near the current one). base/size: the writable mapping of the whole segment.
 */
void fz_scribble(struct fz *f, uint8_t *base, uint64_t size, const struct shmring_seg *geo);

/* A PROT_NONE page right after a segment mapping, so that a read just past the
 * segment faults instead of landing in a neighbouring mapping. fz_guard_prepare(size)
 * before creating a segment of that size leaves a hole below a guard page, where the
 * kernel usually puts the next mapping of that size; fz_guard_check() keeps the guard
 * if the mapping landed there (1) or removes it (0). */
void *fz_guard_prepare(uint64_t size);
int fz_guard_check(void *guard, const void *base, uint64_t size);
void fz_unguard(void *guard);

/*
 * Snapshots, for speed: a target creates its segment and handles once per shape,
 * snapshots the segment's bytes and the handle structs, and restores them before each
 * input, instead of paying a dozen system calls per input. The handles keep their
 * participant locks and mapping, so the restored state is exactly the one after
 * creation. An input that closes or reopens a handle changes locks and mappings: the
 * target then throws the shape's state away and builds it again next time.
 */
#define FZ_SNAP_OBJS 8
struct fz_snap {
	void *base, *copy;
	size_t len;
	int nobj;
	struct {
		void *p, *copy;
		size_t len;
	} obj[FZ_SNAP_OBJS];
};
void fz_snap_init(struct fz_snap *s, void *seg_base, size_t seg_len);
void fz_snap_add(struct fz_snap *s, void *obj, size_t len);
void fz_snap_restore(const struct fz_snap *s);
void fz_snap_free(struct fz_snap *s);

/*
 * A channel target's per-shape state, apart from its handles: the first input byte
 * picks a shape, built on first use (and after an input closed or reopened a handle)
 * and restored from its snapshot otherwise.
 */
struct fz_shape {
	int ready;
	void *guard; /* from fz_guard_prepare(), or NULL */
	struct fz_snap snap;
};
/* Restore a built shape's snapshot and return 1; 0 if the target must build it. */
int fz_shape_restore(struct fz_shape *sh);
/* The shape's segment (held open by keep) and handles exist: settle the guard page and
 * snapshot the segment. The target then fz_snap_add()s its handle structs. */
void fz_shape_ready(struct fz_shape *sh, struct shmring_seg *keep);
/* After the target closed its handles: drop the guard, keep and the snapshot. */
void fz_shape_drop(struct fz_shape *sh, struct shmring_seg *keep);

/* FZ_TRACE is set in the environment (read once: targets ask on every input). */
int fz_trace(void);

#endif
