/* SPDX-License-Identifier: MIT */
/*
 * Attach to an arbitrary file, then read it as its kind: the file is a segment image
 * (fuzz_common.h) in a memfd, opened through shmring_seg_open_path() and, for each
 * kind, through the kind's own open as a reader and as a writer, which then run a few
 * non-blocking operations. This is record decoding from arbitrary bytes for every kind:
 * SPSC record headers, MPMC state words and lengths, the pool's log, cursors and
 * buffer states, broadcast sequence words. Checks: only documented errors; every
 * pointer handed out lies in the region it belongs to, with its length (and is
 * touched, so a bad one faults); attach maps only what the file holds.
 */
#include <errno.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "shmring/bcast.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/spsc.h"

#define attach_err_ok fz_attach_err_ok

static void check_seg(const struct shmring_seg *s, size_t len)
{
	FZ_CHECK(s->size <= len, "mapped %llu of a %zu-byte file", (unsigned long long)s->size, len);
	FZ_CHECK(s->ctrl_off <= s->size && s->ctrl_size <= s->size - s->ctrl_off, "ctrl region");
	FZ_CHECK(s->data_off <= s->size && s->data_size <= s->size - s->data_off, "data region");
	fz_touch(s->base, s->size);
}

static void spsc_ops(struct fz *f, int fd)
{
	struct shmring_spsc *r;
	int rc = shmring_spsc_open_fd(fd, SHMRING_ROLE_CONSUMER, &r);
	if (rc == 0) {
		struct shmring_seg *s = shmring_spsc_seg(r);
		uint8_t *d = shmring_seg_data(s);
		check_seg(s, (size_t)s->size);
		for (int i = 0; i < 64; i++) {
			struct shmring_rec rec = { 0 };
			rc = shmring_spsc_peek(r, &rec);
			FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO, "peek %d", rc);
			if (rc)
				break;
			FZ_CHECK(fz_inside(rec.data, rec.len, d, s->data_size), "record outside the ring");
			fz_touch(rec.data, rec.len);
			if (fz_u8(f) & 1)
				shmring_spsc_release(r);
		}
		shmring_spsc_release(r);
		uint8_t buf[512];
		rc = shmring_spsc_recv(r, buf, fz_u16(f) % sizeof(buf), 0);
		FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE,
			 "recv %d", rc);
		shmring_spsc_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "spsc consumer open %d", rc);
	}
	rc = shmring_spsc_open_fd(fd, SHMRING_ROLE_PRODUCER, &r);
	if (rc == 0) {
		struct shmring_seg *s = shmring_spsc_seg(r);
		uint8_t *d = shmring_seg_data(s);
		for (int i = 0; i < 4; i++) {
			void *buf;
			size_t len = fz_u16(f) % 5000;
			rc = shmring_spsc_reserve(r, len, &buf);
			FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE,
				 "reserve %d", rc);
			if (rc == 0) {
				FZ_CHECK(fz_inside(buf, len, d, s->data_size), "reservation outside the ring");
				memset(buf, 0xa5, len);
			}
		}
		if (fz_u8(f) & 1)
			shmring_spsc_abort(r);
		rc = shmring_spsc_commit(r);
		FZ_CHECK(rc >= 0 || rc == -EPROTO, "commit %d", rc);
		shmring_spsc_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "spsc producer open %d", rc);
	}
}

static void mpmc_ops(struct fz *f, int fd)
{
	struct shmring_mpmc *r;
	int rc = shmring_mpmc_open_fd(fd, SHMRING_ROLE_CONSUMER, &r);
	if (rc == 0) {
		struct shmring_seg *s = shmring_mpmc_seg(r);
		uint8_t *d = shmring_seg_data(s);
		for (int i = 0; i < 16; i++) {
			struct shmring_mpmc_msg m[4];
			unsigned n = 1 + fz_u8(f) % 4;
			rc = shmring_mpmc_dequeue_start(r, n, 1, m, 0);
			FZ_CHECK(rc > 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EINVAL,
				 "dequeue_start %d", rc);
			if (rc <= 0)
				break;
			FZ_CHECK((unsigned)rc <= n, "took %d of %u", rc, n);
			for (int k = 0; k < rc; k++) {
				FZ_CHECK(m[k].len <= shmring_mpmc_slot_size(r), "len %u", m[k].len);
				FZ_CHECK(fz_inside(m[k].data, m[k].len, d, s->data_size), "message outside");
				fz_touch(m[k].data, m[k].len);
			}
			shmring_mpmc_dequeue_finish(r);
		}
		uint8_t buf[256];
		rc = shmring_mpmc_dequeue(r, buf, fz_u8(f), 0);
		FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE,
			 "dequeue %d", rc);
		shmring_mpmc_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "mpmc consumer open %d", rc);
	}
	rc = shmring_mpmc_open_fd(fd, SHMRING_ROLE_PRODUCER, &r);
	if (rc == 0) {
		struct shmring_seg *s = shmring_mpmc_seg(r);
		uint8_t *d = shmring_seg_data(s);
		void *bufs[4];
		unsigned n = 1 + fz_u8(f) % 4;
		rc = shmring_mpmc_enqueue_start(r, n, 1, bufs, 0);
		FZ_CHECK(rc > 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EINVAL,
			 "enqueue_start %d", rc);
		if (rc > 0) {
			for (int k = 0; k < rc; k++) {
				FZ_CHECK(fz_inside(bufs[k], shmring_mpmc_slot_size(r), d, s->data_size),
					 "slot outside");
				memset(bufs[k], 0x5a, shmring_mpmc_slot_size(r));
			}
			shmring_mpmc_enqueue_finish(r, (unsigned)rc, NULL);
		}
		uint8_t m[8] = { 0 };
		rc = shmring_mpmc_enqueue(r, m, sizeof(m), 0);
		FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -EMSGSIZE,
			 "enqueue %d", rc);
		shmring_mpmc_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "mpmc producer open %d", rc);
	}
}

static void pool_ops(struct fz *f, int fd)
{
	struct shmring_pool *p;
	struct shmring_pool_sub_opts so = { .policy = 1 + fz_u8(f) % 2 };
	int rc = shmring_pool_subscribe_fd(fd, &so, &p);
	if (rc == 0) {
		for (int i = 0; i < 16; i++) {
			struct shmring_pool_frame fr;
			rc = shmring_pool_take(p, &fr);
			FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO || rc == -ENOBUFS,
				 "take %d", rc);
			if (rc)
				break;
			FZ_CHECK(fr.index < p->nbufs && fr.len <= fr.capacity && fr.capacity == p->buf_size,
				 "frame index %u len %llu", fr.index, (unsigned long long)fr.len);
			FZ_CHECK(fz_inside(fr.data, fr.len, p->rodata ? p->rodata : p->data, p->data_size),
				 "frame outside the data region");
			fz_touch(fr.data, fr.len);
			rc = shmring_pool_frame_verify(p, &fr);
			FZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENODATA, "verify %d", rc);
			rc = shmring_pool_release(p, &fr);
			FZ_CHECK(rc == 0 || rc == -EPROTO, "release %d", rc);
		}
		struct shmring_pool_stats st;
		shmring_pool_stats(p, &st);
		shmring_pool_close(p);
	} else {
		FZ_CHECK(attach_err_ok(rc), "pool subscribe %d", rc);
	}
	rc = shmring_pool_open_producer_fd(fd, &p);
	if (rc == 0) {
		for (int i = 0; i < 4; i++) {
			struct shmring_pool_frame fr;
			rc = shmring_pool_loan(p, &fr);
			FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPROTO, "loan %d", rc);
			if (rc)
				break;
			FZ_CHECK(fz_inside(fr.data, fr.capacity, p->data, p->data_size), "loan outside");
			fr.len = fz_u16(f) % (fr.capacity + 1);
			memset(fr.data, 0x3c, fr.len);
			if (fz_u8(f) & 1) {
				rc = shmring_pool_cancel(p, &fr);
				FZ_CHECK(rc == 0, "cancel %d", rc);
			} else {
				rc = shmring_pool_publish(p, &fr);
				FZ_CHECK(rc >= 0 || rc == -EPROTO, "publish %d", rc);
			}
		}
		shmring_pool_reclaim(p);
		shmring_pool_close(p);
	} else {
		FZ_CHECK(attach_err_ok(rc), "pool producer open %d", rc);
	}
}

static void bcast_ops(struct fz *f, int fd)
{
	struct shmring_bcast *r;
	unsigned flags = fz_u8(f) & 7;
	int rc = shmring_bcast_open_fd(fd, SHMRING_ROLE_READER, flags, &r);
	if (rc == 0) {
		struct shmring_seg *s = shmring_bcast_seg(r);
		uint8_t *d = shmring_seg_data(s);
		uint8_t buf[512];
		for (int i = 0; i < 32; i++) {
			struct shmring_bcast_rec rec;
			uint8_t op = fz_u8(f);
			if (op & 1) {
				rc = shmring_bcast_peek(r, &rec);
				FZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO, "peek %d", rc);
				if (rc)
					break;
				FZ_CHECK(fz_inside(rec.data, rec.len, d, s->data_size), "peeked record outside");
				fz_touch(rec.data, rec.len);
				rc = shmring_bcast_release(r);
				FZ_CHECK(rc == 0 || rc == -ESTALE || rc == -EPROTO, "release %d", rc);
			} else {
				rc = (op & 2) ? shmring_bcast_read_latest(r, buf, op % sizeof(buf), &rec)
					      : shmring_bcast_read(r, buf, op % sizeof(buf), &rec);
				FZ_CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO ||
						 rc == -EMSGSIZE,
					 "read %d", rc);
				if (rc < 0 && rc != -EMSGSIZE)
					break;
			}
		}
		rc = shmring_bcast_seek(r, fz_u8(f) % 3);
		FZ_CHECK(rc == 0 || rc == -EPROTO, "seek %d", rc);
		shmring_bcast_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "bcast reader open %d", rc);
	}
	rc = shmring_bcast_open_fd(fd, SHMRING_ROLE_PRODUCER, 0, &r);
	if (rc == 0) {
		uint8_t m[64];
		memset(m, 0x11, sizeof(m));
		for (int i = 0; i < 3; i++) {
			rc = shmring_bcast_publish(r, m, fz_u8(f) % sizeof(m));
			FZ_CHECK(rc == 0 || rc == -EMSGSIZE || rc == -EPROTO, "publish %d", rc);
		}
		shmring_bcast_close(r);
	} else {
		FZ_CHECK(attach_err_ok(rc), "bcast writer open %d", rc);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the ops read their choices from the first bytes, the image takes the rest */
	struct fz ops = { data, size < 32 ? size : 32 };
	struct fz f = { data + ops.n, size - ops.n };
	size_t len;
	uint8_t *img = fz_image(&f, &len);
	if (!img)
		return 0;
	int fd = fz_memfd(img, len);
	FZ_CHECK(fd >= 0, "memfd: %d (descriptor leak?)", fd);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	struct shmring_seg *seg;
	int rc = shmring_seg_open_path(path, 0, SHMRING_O_RDONLY, &seg);
	if (rc == 0) {
		check_seg(seg, len);
		shmring_seg_close(seg);
	} else {
		FZ_CHECK(attach_err_ok(rc), "open_path %d", rc);
	}
	uint32_t kind = len >= 16 ? img[12] : 0;
	switch (kind) {
	case SHMRING_KIND_SPSC: spsc_ops(&ops, fd); break;
	case SHMRING_KIND_MPMC: mpmc_ops(&ops, fd); break;
	case SHMRING_KIND_POOL: pool_ops(&ops, fd); break;
	case SHMRING_KIND_BCAST: bcast_ops(&ops, fd); break;
	default: break;
	}
	close(fd);
	free(img);
	return 0;
}
