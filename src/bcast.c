/* SPDX-License-Identifier: MIT */
/*
 * Broadcast channel, slow paths: create/attach/close, the reader page, writer
 * replacement, lap handling, end of stream and waiting. The protocol is described at
 * the top of shmring/bcast.h.
 */
#include "internal.h"
#include "shmring/bcast.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BCAST_DEFAULT_SLOTS 8u
#define BCAST_DEFAULT_SPIN 64
/* Polls after a sched_yield() each, after the spin and before sleeping (wait.h). Readers
 * that catch up with the writer otherwise sleep, and every sleep costs the writer a
 * FUTEX_WAKE: on 2 CPUs with 4 reading readers, 40-63 k wakes per 2 M records and a
 * writer 3-5x slower than alone; with 8 yields, 14-61 wakes and 2x. */
#define BCAST_WAIT_YIELDS 8
#define BCAST_EMPTY_CHECK 1024u /* non-blocking empty polls between writer checks */

uint64_t shmring_bcast_stride(uint64_t slot_size)
{
	uint64_t payload = (slot_size + 7) & ~UINT64_C(7);
	return (SHMRING_BCAST_PAYLOAD_OFF + payload + SHMRING_LINE - 1) & ~(uint64_t)(SHMRING_LINE - 1);
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Geometry of a segment someone else created: every word bounded (the header checksum
 * only proves the header is what its creator wrote, not that the creator was sane). */
static int check_geo(const struct shmring_seg *seg)
{
	const uint64_t *g = seg->geo;
	uint64_t slots = g[SHMRING_BCAST_GEO_SLOTS], size = g[SHMRING_BCAST_GEO_SLOT_SIZE];
	if (!is_pow2(slots) || slots < 2 || slots > SHMRING_BCAST_MAX_SLOTS)
		return shmring__fail(-EPROTO, "bcast: slots %llu is not a power of two in 2..%u",
				     (unsigned long long)slots, SHMRING_BCAST_MAX_SLOTS);
	if (size == 0 || size > SHMRING_BCAST_MAX_SLOT_SIZE)
		return shmring__fail(-EPROTO, "bcast: slot_size %llu out of range",
				     (unsigned long long)size);
	uint64_t stride = shmring_bcast_stride(size);
	if (g[SHMRING_BCAST_GEO_STRIDE] != stride)
		return shmring__fail(-EPROTO, "bcast: stride %llu is not %llu",
				     (unsigned long long)g[SHMRING_BCAST_GEO_STRIDE],
				     (unsigned long long)stride);
	if (g[SHMRING_BCAST_GEO_RPAGE] != SHMRING_BCAST_RPAGE_OFF ||
	    g[SHMRING_BCAST_GEO_PAYLOAD] != SHMRING_BCAST_PAYLOAD_OFF)
		return shmring__fail(-EPROTO, "bcast: reader page or payload offset unknown");
	for (int i = 5; i < (int)SHMRING_GEO_WORDS; i++)
		if (g[i] != 0)
			return shmring__fail(-EPROTO, "bcast: reserved geo[%d] is not 0", i);
	if (seg->ctrl_size < SHMRING_BCAST_CTRL_SIZE)
		return shmring__fail(-EPROTO, "bcast: ctrl region of %llu bytes is too small",
				     (unsigned long long)seg->ctrl_size);
	/* slots <= 2^20 and stride < 2^31: no overflow */
	if (seg->data_size < slots * stride)
		return shmring__fail(-EPROTO, "bcast: data region of %llu bytes < %llu slots of %llu",
				     (unsigned long long)seg->data_size, (unsigned long long)slots,
				     (unsigned long long)stride);
	if (seg->flags & 0xffff0000u)
		return shmring__fail(-EPROTO, "bcast: unknown kind flags 0x%x", seg->flags);
	return 0;
}

static int init_ctrl(struct shmring_seg *seg, void *arg)
{
	(void)arg;
	struct shmring_bcast_ctrl *c = shmring_seg_ctrl(seg);
	/* nobody can see the segment yet: the magic, stored with release after this,
	 * publishes these stores */
	shmring_store_relaxed(&c->w.pub, 0);
	shmring_store_relaxed(&c->w.state, SHMRING_BCAST_OPEN);
	shmring_store_relaxed(&c->w.writers, 0);
	return shmring_waitq_init(seg, &c->r.q);
}

int shmring__bcast_broken(struct shmring_bcast *b, int err)
{
	if (!b->broken)
		b->broken = err;
	shmring__fail(err, "bcast: impossible value in shared memory; handle is broken");
	return b->broken;
}

/* Map the reader page writable for a reader whose segment mapping is read-only. The
 * segment's descriptor is O_RDONLY then; reopening it through /proc/self/fd gives a
 * read-write descriptor for the same file (no name lookup, so no race with an unlink
 * and re-create), subject to the file's permissions. The descriptor is closed at once:
 * the mapping keeps the file, and no lock is taken through it (the reader lock has a
 * descriptor of its own, reader_lock()). */
static int map_rpage(struct shmring_bcast *b)
{
	struct shmring_seg *seg = b->seg;
	if (seg->writable) {
		b->rpage = &((struct shmring_bcast_ctrl *)shmring_seg_ctrl(seg))->r;
		return 0;
	}
	b->rpage = NULL;
	if (seg->fd < 0)
		return 0;
	int fd = shmring__reopen_fd(seg->fd, O_RDWR);
	if (fd < 0 && shmring__reopen_refused(fd))
		return 0; /* readable only: waits fall back to polling */
	if (fd < 0) /* out of descriptors or memory for now: not a reader to degrade for good */
		return shmring__fail(fd, "bcast: reopening for the reader page: %s", strerror(-fd));
	void *m = mmap(NULL, SHMRING_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       (off_t)(seg->ctrl_off + SHMRING_BCAST_RPAGE_OFF));
	int err = m == MAP_FAILED ? errno : 0;
	close(fd);
	if (err == EACCES || err == EPERM)
		return 0;
	if (err)
		return shmring__fail(-err, "bcast: mapping the reader page: %s", strerror(err));
	b->rpage_map = m;
	b->rpage = m;
	return 0;
}

/* ---- the reader lock (bcast.h, READERS' LIVENESS) ---- */

static int reader_lock_on(int fd)
{
	struct flock fl = {
		.l_type = F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = SHMRING_BCAST_READER_LOCK,
		.l_len = 1,
	};
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	int err = errno;
	return shmring__fail(err == EAGAIN || err == EACCES ? -EBUSY : -err,
			     "bcast: reader lock on byte %u: %s", SHMRING_BCAST_READER_LOCK,
			     strerror(err));
}

/* Take this reader's lock through an open file description of its own, so that closing
 * the handle drops exactly its lock, whatever other handles this process has open on
 * the segment (they share the registry's descriptor); the registry closes it in a
 * forked child. */
static int reader_lock(struct shmring_bcast *b)
{
	int segfd = b->seg->fd;
	if (segfd < 0)
		return shmring__fail(-EBADF, "bcast: no descriptor to take the reader lock on");
	struct shmring__lock_fd *l;
	int rc = shmring__lock_fd_open(segfd, &l);
	if (rc && !shmring__reopen_refused(rc))
		return shmring__fail(rc, "bcast: descriptor for the reader lock: %s", strerror(-rc));
	if (rc)
		/* no /proc: lock through the shared descriptor; the lock then lasts until this
		 * process's last handle of the segment closes (documented in bcast.h) */
		return reader_lock_on(segfd);
	if ((rc = reader_lock_on(l->fd)) != 0) {
		shmring__lock_fd_close(l);
		return rc;
	}
	b->lock = l;
	return 0;
}

static void reader_unlock(struct shmring_bcast *b)
{
	shmring__lock_fd_close(b->lock);
	b->lock = NULL;
}

/* A writer replacing another (dead, or closed) resumes after the last complete record.
 * The previous writer may have died between its slot's even store and the store of pub:
 * then that record is complete and pub is advanced over it; if it died with the slot
 * odd (or had aborted), the record is rewritten under the same number. Records are
 * written in order, one at a time, so every slot must hold exactly the last record
 * below pub that maps to it (or nothing), except the slot of record pub itself, which
 * may also hold record pub, odd or even. Anything else is corruption. */
static int writer_resume(struct shmring_bcast *w)
{
	/* pairs with the previous writer's release store of pub in shmring_bcast_commit() */
	uint64_t pub = shmring_load_acquire(&w->ctrl->pub);
	if (pub >= SHMRING_BCAST_SEQ_MAX)
		return shmring__fail(-EPROTO, "bcast: published count %llu impossible",
				     (unsigned long long)pub);
	uint64_t cur = pub & w->mask;
	for (uint64_t i = 0; i < w->nslots; i++) {
		/* pairs with the previous writer's release stores of seq */
		uint64_t s = shmring_load_acquire(&shmring__bcast_slot(w, i)->seq);
		uint64_t want = 0;
		if (pub > i) {
			uint64_t m = pub - 1 - ((pub - 1 - i) & w->mask); /* last m < pub, m = i mod slots */
			want = 2 * m + 2;
		}
		if (s == want || (i == cur && (s == 2 * pub + 1 || s == 2 * pub + 2)))
			continue;
		return shmring__fail(-EPROTO, "bcast: slot %llu holds sequence %llu with %llu published",
				     (unsigned long long)i, (unsigned long long)s,
				     (unsigned long long)pub);
	}
	if (shmring_load_relaxed(&shmring__bcast_slot(w, pub)->seq) == 2 * pub + 2) {
		pub++;
		/* pairs with readers' acquire loads of pub */
		shmring_store_release(&w->ctrl->pub, pub);
	}
	w->pos = pub;
	return 0;
}

static uint64_t start_pos(const struct shmring_bcast *r, uint64_t h, int whence)
{
	switch (whence) {
	case SHMRING_BCAST_SEEK_OLDEST:
		return h + 1 > r->nslots ? h + 1 - r->nslots : 0;
	case SHMRING_BCAST_SEEK_NEWEST:
		return h ? h - 1 : 0;
	default:
		return h;
	}
}

static int attach(struct shmring_seg *seg, uint32_t role, unsigned flags, int created,
		  struct shmring_bcast **out)
{
	int rc = check_geo(seg);
	if (rc) {
		shmring_seg_close(seg);
		return rc;
	}
	struct shmring_bcast *b = calloc(1, sizeof(*b));
	if (!b) {
		shmring_seg_close(seg);
		return -ENOMEM;
	}
	b->seg = seg;
	b->ctrl = &((struct shmring_bcast_ctrl *)shmring_seg_ctrl(seg))->w;
	b->slots = shmring_seg_data(seg);
	b->nslots = seg->geo[SHMRING_BCAST_GEO_SLOTS];
	b->mask = b->nslots - 1;
	b->stride = seg->geo[SHMRING_BCAST_GEO_STRIDE];
	b->slot_size = seg->geo[SHMRING_BCAST_GEO_SLOT_SIZE];
	b->role = role;
	b->flags = flags;
	b->spin = BCAST_DEFAULT_SPIN;

	if (role == SHMRING_ROLE_PRODUCER) {
		b->rpage = &((struct shmring_bcast_ctrl *)shmring_seg_ctrl(seg))->r;
		uint32_t slot;
		rc = shmring_part_join(seg, SHMRING_ROLE_PRODUCER, (int)SHMRING_BCAST_SLOT_WRITER, &slot);
		if (rc < 0) {
			if (rc == -EBUSY)
				shmring__fail(rc, "bcast: a live writer is attached");
			goto fail;
		}
		if (!created && (rc = writer_resume(b)) != 0) {
			shmring_part_leave(seg, SHMRING_BCAST_SLOT_WRITER);
			goto fail;
		}
		struct shmring_hdr *h = shmring_seg_hdr(seg);
		b->w_msgs = shmring_load_relaxed(&h->stats.msgs); /* statistics: carry on counting */
		b->w_bytes = shmring_load_relaxed(&h->stats.bytes);
		atomic_fetch_add_explicit(&b->ctrl->writers, 1, memory_order_relaxed);
		/* reopen after a close: pairs with the acquire loads of state by readers */
		shmring_store_release(&b->ctrl->state, SHMRING_BCAST_OPEN);
	} else {
		/* visible as a live reader (to shmdump, and so to clean) from here on */
		if ((rc = reader_lock(b)) != 0 || (rc = map_rpage(b)) != 0)
			goto fail;
		if (b->rpage) {
			atomic_fetch_add_explicit(&b->rpage->readers, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&b->rpage->reader_opens, 1, memory_order_relaxed);
		}
		/* pairs with the release store of pub in shmring_bcast_commit() */
		uint64_t h = shmring_load_acquire(&b->ctrl->pub);
		if (h >= SHMRING_BCAST_SEQ_MAX) {
			rc = shmring__fail(-EPROTO, "bcast: published count %llu impossible",
					   (unsigned long long)h);
			goto fail;
		}
		int whence = (flags & SHMRING_BCAST_START_OLDEST)   ? SHMRING_BCAST_SEEK_OLDEST
			     : (flags & SHMRING_BCAST_START_NEWEST) ? SHMRING_BCAST_SEEK_NEWEST
								    : SHMRING_BCAST_SEEK_NEXT;
		b->pos = start_pos(b, h, whence);
	}
	*out = b;
	return 0;
fail:
	if (b->rpage && role != SHMRING_ROLE_PRODUCER)
		atomic_fetch_sub_explicit(&b->rpage->readers, 1, memory_order_relaxed);
	reader_unlock(b);
	if (b->rpage_map)
		munmap(b->rpage_map, SHMRING_PAGE);
	shmring_seg_close(seg);
	free(b);
	return rc;
}

static int check_role(uint32_t role, unsigned flags)
{
	if (role != SHMRING_ROLE_PRODUCER && role != SHMRING_ROLE_READER)
		return -EINVAL;
	if (flags & ~SHMRING_BCAST_F_KNOWN)
		return -EINVAL;
	if ((flags & SHMRING_BCAST_START_OLDEST) && (flags & SHMRING_BCAST_START_NEWEST))
		return -EINVAL;
	if (role == SHMRING_ROLE_PRODUCER && flags)
		return -EINVAL;
	return 0;
}

static unsigned seg_flags(uint32_t role, unsigned flags)
{
	if (role == SHMRING_ROLE_READER && !(flags & SHMRING_BCAST_RW_MAPPING))
		return SHMRING_O_RDONLY;
	return 0;
}

int shmring_bcast_create(const char *name, const struct shmring_bcast_opts *o, uint32_t role,
			 struct shmring_bcast **out)
{
	shmring__clear_detail();
	if (!o || !out)
		return -EINVAL;
	unsigned flags = role == SHMRING_ROLE_READER ? o->reader_flags : 0;
	int rc = check_role(role, flags);
	if (rc)
		return shmring__fail(rc, "bcast: bad role or reader flags");
	uint64_t slots = o->slots ? o->slots : BCAST_DEFAULT_SLOTS;
	if (!is_pow2(slots) || slots < 2 || slots > SHMRING_BCAST_MAX_SLOTS)
		return shmring__fail(-EINVAL, "bcast: slots must be a power of two in 2..%u",
				     SHMRING_BCAST_MAX_SLOTS);
	if (o->slot_size == 0 || o->slot_size > SHMRING_BCAST_MAX_SLOT_SIZE || o->spare)
		return shmring__fail(-EINVAL, "bcast: slot_size must be in 1..%llu",
				     (unsigned long long)SHMRING_BCAST_MAX_SLOT_SIZE);
	uint64_t stride = shmring_bcast_stride(o->slot_size);
	struct shmring_seg_params p = {
		.kind = SHMRING_KIND_BCAST,
		.mode = o->mode,
		.ctrl_size = SHMRING_BCAST_CTRL_SIZE,
		.data_size = slots * stride,
		.init = init_ctrl,
	};
	p.geo[SHMRING_BCAST_GEO_SLOTS] = slots;
	p.geo[SHMRING_BCAST_GEO_SLOT_SIZE] = o->slot_size;
	p.geo[SHMRING_BCAST_GEO_STRIDE] = stride;
	p.geo[SHMRING_BCAST_GEO_RPAGE] = SHMRING_BCAST_RPAGE_OFF;
	p.geo[SHMRING_BCAST_GEO_PAYLOAD] = SHMRING_BCAST_PAYLOAD_OFF;
	struct shmring_seg *seg;
	struct shmring__naming nm;
	rc = shmring__seg_make(name, &p, &seg, &nm);
	if (rc)
		return rc;
	if ((rc = attach(seg, role, flags, 1, out)) != 0) {
		shmring__seg_unmake(&nm);
		return rc;
	}
	/* named only now that the creator holds its role (internal.h) */
	if ((rc = shmring__seg_name(seg, &nm)) != 0) {
		shmring_bcast_close(*out);
		*out = NULL;
	}
	return rc;
}

/* name, or fd when name is NULL: the checks and the attach are the same */
static int open_either(const char *name, int fd, uint32_t role, unsigned flags,
		       struct shmring_bcast **out)
{
	if (!out)
		return -EINVAL;
	int rc = check_role(role, flags);
	if (rc)
		return shmring__fail(rc, "bcast: bad role or reader flags");
	struct shmring_seg *seg;
	unsigned sf = seg_flags(role, flags);
	rc = name ? shmring_seg_open(name, SHMRING_KIND_BCAST, sf, &seg)
		  : shmring_seg_open_fd(fd, SHMRING_KIND_BCAST, sf, &seg);
	if (rc)
		return rc;
	return attach(seg, role, flags, 0, out);
}

int shmring_bcast_open(const char *name, uint32_t role, unsigned flags, struct shmring_bcast **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	if (!name)
		return -EINVAL;
	return open_either(name, -1, role, flags, out);
}

int shmring_bcast_open_fd(int fd, uint32_t role, unsigned flags, struct shmring_bcast **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	return open_either(NULL, fd, role, flags, out);
}

/* Torn copies are counted on the handle by the inline code; the shared count catches up
 * on the slow paths. */
static void flush_torn(struct shmring_bcast *r)
{
	if (r->rpage && r->torn != r->torn_flushed) {
		atomic_fetch_add_explicit(&r->rpage->torn, r->torn - r->torn_flushed,
					  memory_order_relaxed); /* statistics */
		r->torn_flushed = r->torn;
	}
}

int shmring_bcast_close(struct shmring_bcast *b)
{
	if (!b)
		return -EINVAL;
	if (shmring__seg_inherited(b->seg)) {
		/* the parent's handle, copied by fork(): its stream and its reader count go on */
	} else if (b->role == SHMRING_ROLE_PRODUCER) {
		b->reserved = 0; /* an abandoned reservation stays odd: never read */
		if (!b->broken) {
			/* end of stream; pairs with the acquire loads of state in
			 * shmring__bcast_empty() and the wait poll, after which pub is final */
			shmring_store_release(&b->ctrl->state, SHMRING_BCAST_CLOSED);
			shmring_wake(b->seg, &b->rpage->q); /* W1 was the store above */
		}
		shmring_part_leave(b->seg, SHMRING_BCAST_SLOT_WRITER);
	} else if (b->rpage) {
		flush_torn(b);
		atomic_fetch_sub_explicit(&b->rpage->readers, 1, memory_order_relaxed);
	}
	reader_unlock(b); /* no-op for the writer */
	if (b->rpage_map)
		munmap(b->rpage_map, SHMRING_PAGE);
	shmring_seg_close(b->seg);
	free(b);
	return 0;
}

int shmring_bcast_fd(const struct shmring_bcast *b)
{
	return b ? b->seg->fd : -EINVAL;
}

struct shmring_seg *shmring_bcast_seg(const struct shmring_bcast *b)
{
	return b ? b->seg : NULL;
}

void shmring_bcast_set_spin(struct shmring_bcast *b, int spin)
{
	if (b)
		b->spin = spin < 0 ? BCAST_DEFAULT_SPIN : spin;
}

int shmring_bcast_set_demote(struct shmring_bcast *b, int on)
{
	if (!b)
		return -EINVAL;
	if (b->role != SHMRING_ROLE_PRODUCER)
		return -EBADF;
	b->demote = on != 0;
	return 0;
}

/* 1 alive, 0 no writer has ever attached (or it left cleanly), -1 dead. */
static int writer_state(const struct shmring_bcast *b)
{
	struct shmring_part_info info;
	if (shmring_part_get(b->seg, SHMRING_BCAST_SLOT_WRITER, &info) != 0)
		return 0;
	if (info.state != SHMRING_PART_ACTIVE)
		return 0;
	return info.alive ? 1 : -1;
}

int shmring_bcast_writer_alive(const struct shmring_bcast *b)
{
	if (!b)
		return -EINVAL;
	return writer_state(b) > 0;
}

int shmring_bcast_writer_closed(const struct shmring_bcast *b)
{
	if (!b)
		return -EINVAL;
	/* pairs with the release store of CLOSED in shmring_bcast_close() */
	return shmring_load_acquire(&b->ctrl->state) == SHMRING_BCAST_CLOSED;
}

/* The reader has everything the writer published (pub <= pos). */
static int caught_up(const struct shmring_bcast *r)
{
	/* pairs with the release store of pub in shmring_bcast_commit() */
	return shmring_load_acquire(&r->ctrl->pub) <= r->pos;
}

static int writer_closed(const struct shmring_bcast *r)
{
	/* pairs with the release store of CLOSED in shmring_bcast_close(): pub is final */
	return shmring_load_acquire(&r->ctrl->state) == SHMRING_BCAST_CLOSED;
}

int shmring__bcast_empty(struct shmring_bcast *r)
{
	uint64_t n = r->pos;
	/* pub past us (a load of the line writer_closed() reads anyway): the writer stored
	 * record n's even word before pub, so the slot must show it now, or a later lap.
	 * Anything older is corrupt, and the wait, which goes by pub, would spin on it.
	 * Acquire: pairs with the release store of pub in shmring_bcast_commit() */
	if (shmring_unlikely(shmring_load_acquire(&r->ctrl->pub) > n)) {
		/* acquire: pairs with commit's release store of the even word */
		uint64_t s = shmring_load_acquire(&shmring__bcast_slot(r, n)->seq);
		if (s < 2 * n + 2)
			return shmring__bcast_broken(r, -EPROTO);
		return -EAGAIN; /* it came meanwhile: the next read takes it */
	}
	if (writer_closed(r))
		return caught_up(r) ? -EPIPE : -EAGAIN;
	if (++r->empty_polls % BCAST_EMPTY_CHECK == 0 && writer_state(r) < 0 && caught_up(r))
		return -EPIPE;
	return -EAGAIN;
}

int shmring__bcast_lapped(struct shmring_bcast *r, uint64_t n, uint64_t seen)
{
	/* seen is a sequence word of record n's slot, newer than record n */
	uint64_t m = (seen - 1) >> 1;
	if (seen <= 2 * n + 2 || m >= SHMRING_BCAST_SEQ_MAX || (m & r->mask) != (n & r->mask))
		return shmring__bcast_broken(r, -EPROTO);
	/* seen was read from a release store (reserve's odd word, commit's even word), each
	 * made after pub reached m: this fence pairs with them, so pub >= m below. A word
	 * further ahead is no record the writer made, and a lap to it would leave us past
	 * everything it will write */
	shmring_fence_acquire();
	/* pairs with the release store of pub in shmring_bcast_commit() */
	uint64_t h = shmring_load_acquire(&r->ctrl->pub);
	if (h >= SHMRING_BCAST_SEQ_MAX || m > h)
		return shmring__bcast_broken(r, -EPROTO);
	/* h >= m >= n + slots >= n + 2, so both choices move forward */
	uint64_t np = (r->flags & SHMRING_BCAST_LAP_NEWEST) ? h - 1 : h + 1 - r->nslots;
	uint64_t lost = np - n;
	r->missed += lost;
	r->laps += lost;
	r->lap_events++;
	r->pos = np;
	if (r->rpage) { /* statistics, relaxed */
		atomic_fetch_add_explicit(&r->rpage->stats.laps, lost, memory_order_relaxed);
		atomic_fetch_add_explicit(&r->rpage->lap_events, 1, memory_order_relaxed);
		flush_torn(r);
	}
	return 0;
}

int shmring_bcast_seek(struct shmring_bcast *r, int whence)
{
	if (!r)
		return -EINVAL;
	if (r->broken)
		return r->broken;
	if (r->role != SHMRING_ROLE_READER)
		return -EBADF;
	if (whence < SHMRING_BCAST_SEEK_NEXT || whence > SHMRING_BCAST_SEEK_NEWEST)
		return -EINVAL;
	/* pairs with the release store of pub in shmring_bcast_commit() */
	uint64_t h = shmring_load_acquire(&r->ctrl->pub);
	if (h >= SHMRING_BCAST_SEQ_MAX)
		return shmring__bcast_broken(r, -EPROTO);
	uint64_t np = start_pos(r, h, whence);
	if (np >= r->pos) {
		r->skipped += np - r->pos;
		r->missed += np - r->pos;
	} else {
		r->missed = 0; /* going back: the next record is not after the last one */
	}
	r->pos = np;
	r->peeking = 0;
	return 0;
}

int shmring_bcast_stats(const struct shmring_bcast *b, struct shmring_bcast_stats *st)
{
	if (!b || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->published = shmring_load_relaxed(&b->ctrl->pub); /* statistics */
	if (b->role == SHMRING_ROLE_PRODUCER) {
		st->records = b->w_msgs;
		st->bytes = b->w_bytes;
	} else {
		st->records = b->records;
		st->bytes = b->bytes;
		st->laps = b->laps;
		st->lap_events = b->lap_events;
		st->torn = b->torn;
		st->skipped = b->skipped;
	}
	if (b->rpage) {
		st->all_readers_laps = shmring_load_relaxed(&b->rpage->stats.laps);
		st->readers = shmring_load_relaxed(&b->rpage->readers);
	}
	return 0;
}

/* ---- waiting ---- */

/* The wait condition: the record at the reader's position is published. */
static int wait_poll(void *arg)
{
	struct shmring_bcast *r = arg;
	if (!caught_up(r)) /* S4 / the acquire pairs with commit's W1 */
		return 1;
	if (writer_closed(r))
		return caught_up(r) ? -EPIPE : 1;
	return 0;
}

static int wait_peer(void *arg)
{
	struct shmring_bcast *r = arg;
	if (writer_state(r) < 0 && caught_up(r))
		return -EPIPE;
	return 0;
}

/* Readers without a writable reader page: poll with short sleeps. */
static int wait_polling(struct shmring_bcast *r, int timeout_ms)
{
	uint64_t now = shmring_now_ns();
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms * 1000000u;
	uint64_t check_ns = (uint64_t)SHMRING_PEER_CHECK_MS * 1000000u;
	long nap = 50000;
	for (;;) {
		int rc = wait_poll(r);
		if (rc)
			return rc;
		if (timeout_ms == 0)
			return -EAGAIN; /* as shmring_wait_for(): one look */
		now = shmring_now_ns();
		/* as shmring_wait_for(): at the deadline too, when the last check is old,
		 * so that a loop of short timeouts still sees the writer go */
		if (now - r->last_check >= check_ns) {
			r->last_check = now;
			if ((rc = wait_peer(r)) < 0)
				return rc;
		}
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = deadline - now;
		struct timespec ts = { 0, (long)((uint64_t)nap < left ? (uint64_t)nap : left) };
		nanosleep(&ts, NULL);
		if (nap < 2000000)
			nap *= 2;
	}
}

int shmring_bcast_wait(struct shmring_bcast *r, int timeout_ms)
{
	if (!r || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	if (r->broken)
		return r->broken;
	if (r->role != SHMRING_ROLE_READER)
		return -EBADF;
	if (!r->rpage)
		return wait_polling(r, timeout_ms);
	struct shmring_wait_ctx c = {
		.seg = r->seg,
		.stats = &r->rpage->stats, /* readers cannot write the header */
		.q = &r->rpage->q,
		.poll = wait_poll,
		.peer_check = wait_peer,
		.arg = r,
		.spin = r->spin,
		.yields = r->spin > 0 ? BCAST_WAIT_YIELDS : 0, /* spin 0: sleep at once */
		.last_check = &r->last_check,
	};
	return shmring_wait_for(&c, timeout_ms);
}

static uint64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : shmring_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* Milliseconds left before deadline, rounded up; 0 when it has passed. */
static int left_ms(uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return SHMRING_FOREVER;
	uint64_t now = shmring_now_ns();
	if (now >= deadline)
		return 0;
	uint64_t ms = (deadline - now + 999999u) / 1000000u;
	return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

int shmring_bcast_read_wait(struct shmring_bcast *r, void *buf, size_t cap,
			    struct shmring_bcast_rec *rec, int timeout_ms)
{
	if (!r || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	uint64_t deadline = deadline_of(timeout_ms);
	for (;;) {
		int rc = shmring_bcast_read(r, buf, cap, rec);
		if (rc != -EAGAIN || timeout_ms == 0)
			return rc;
		int left = left_ms(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		if ((rc = shmring_bcast_wait(r, left)) < 0)
			return rc;
	}
}

int shmring_bcast_peek_wait(struct shmring_bcast *r, struct shmring_bcast_rec *rec, int timeout_ms)
{
	if (!r || !rec || timeout_ms < SHMRING_FOREVER)
		return -EINVAL;
	uint64_t deadline = deadline_of(timeout_ms);
	for (;;) {
		int rc = shmring_bcast_peek(r, rec);
		if (rc != -EAGAIN || timeout_ms == 0)
			return rc;
		int left = left_ms(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		if ((rc = shmring_bcast_wait(r, left)) < 0)
			return rc;
	}
}
