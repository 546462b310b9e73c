/* SPDX-License-Identifier: MIT */
/*
 * The participant table. A slot is owned by whoever holds the OFD write lock on its
 * first byte in the segment file; the kernel releases the lock when the owner's last
 * descriptor for that open file description goes, which includes death by any signal.
 * The slot's fields (pid, start time, role) are informational: liveness is the lock.
 *
 * OFD locks belong to the open file description, so two handles of one process share
 * them (fcntl(F_OFD_GETLK) reports no conflict against our own locks): the registry
 * entry remembers which slots this process holds.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static off_t slot_byte(uint32_t slot)
{
	return (off_t)(SHMRING_PARTS_OFF + (uint64_t)slot * SHMRING_PART_SIZE);
}

static struct shmring_part *slot_ptr(const struct shmring_seg *s, uint32_t slot)
{
	return &shmring_seg_hdr(s)->parts[slot];
}

static int lock_slot(int fd, uint32_t slot, short type, int cmd)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = slot_byte(slot),
		.l_len = 1,
		.l_pid = 0,
	};
	if (fcntl(fd, cmd, &fl) != 0)
		return -errno;
	return 0;
}

static int held_here(const struct shmring_seg *s, uint32_t slot)
{
	shmring__reg_lock();
	int r = !!(s->reg->held_slots & (UINT64_C(1) << slot));
	shmring__reg_unlock();
	return r;
}

/* 1: someone else holds the lock; 0: nobody; <0 error. */
static int locked_elsewhere(int fd, uint32_t slot)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = slot_byte(slot),
		.l_len = 1,
	};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

uint64_t shmring__proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces and parentheses: count fields after the last
	 * ')'; the space after it starts field 3, so field 22 follows the 20th space */
	char *q = strrchr(buf, ')');
	for (int i = 0; i < 20 && q; i++)
		q = strchr(q + 1, ' ');
	unsigned long long v;
	if (q && sscanf(q + 1, "%llu", &v) == 1)
		return v;
	return 0;
}

static void fill_slot(struct shmring_seg *s, uint32_t slot, uint32_t role)
{
	struct shmring_part *pt = slot_ptr(s, slot);
	pid_t me = getpid();
	/* Informational fields first, state last with release: a reader that sees ACTIVE
	 * (acquire in shmring_part_get) sees the pid of this owner. */
	shmring_store_relaxed(&pt->pid, (int32_t)me);
	shmring_store_relaxed(&pt->role, role);
	shmring_store_relaxed(&pt->start_time, shmring__proc_start_time(me));
	shmring_store_relaxed(&pt->joined_ns, shmring__realtime_ns());
	for (int i = 0; i < 4; i++) /* a reused slot must not show the last owner's data */
		shmring_store_relaxed(&pt->kind_data[i], 0);
	atomic_fetch_add_explicit(&pt->gen, 1, memory_order_relaxed);
	shmring_store_release(&pt->state, SHMRING_PART_ACTIVE); /* pairs with acquire in shmring_part_get() */
}

/* The handles of one process share one open file description per segment, and an OFD
 * lock never conflicts with its own description: between threads of this process only
 * held_slots excludes. So the check, the lock and the bit move together under the
 * registry lock; otherwise two threads joining at once could both "take" one slot (and
 * the second fill_slot would make the first look dead to everyone), or a drop's unlock
 * could remove the lock a concurrent take had just set. */
static int take_lock(struct shmring_seg *s, uint32_t slot)
{
	if (!s->writable || s->fd < 0)
		return -EBADF;
	uint64_t bit = UINT64_C(1) << slot;
	shmring__reg_lock();
	int rc = (s->reg->held_slots & bit) ? -EBUSY : lock_slot(s->fd, slot, F_WRLCK, F_OFD_SETLK);
	if (rc == 0)
		s->reg->held_slots |= bit;
	shmring__reg_unlock();
	return rc == -EAGAIN || rc == -EACCES ? -EBUSY : rc;
}

static void drop_lock(struct shmring_seg *s, uint32_t slot)
{
	shmring__reg_lock();
	if (s->fd >= 0)
		lock_slot(s->fd, slot, F_UNLCK, F_OFD_SETLK);
	s->reg->held_slots &= ~(UINT64_C(1) << slot);
	shmring__reg_unlock();
}

int shmring_part_join(struct shmring_seg *s, uint32_t role, int slot, uint32_t *slot_out)
{
	if (!s || !slot_out)
		return -EINVAL;
	if (slot >= 0) {
		if ((uint32_t)slot >= s->max_parts)
			return -EINVAL;
		int rc = take_lock(s, (uint32_t)slot);
		if (rc)
			return rc;
		uint32_t st = shmring_load_acquire(&slot_ptr(s, (uint32_t)slot)->state); /* pairs with fill_slot's release */
		fill_slot(s, (uint32_t)slot, role);
		*slot_out = (uint32_t)slot;
		if (st == SHMRING_PART_ACTIVE) {
			atomic_fetch_add_explicit(&shmring_seg_hdr(s)->stats.peer_deaths, 1, memory_order_relaxed);
			return 1;
		}
		return 0;
	}
	for (uint32_t i = 0; i < s->max_parts; i++) {
		/* pairs with fill_slot's release store */
		uint32_t st = shmring_load_acquire(&slot_ptr(s, i)->state);
		if (st == SHMRING_PART_ACTIVE)
			continue; /* live, or dead and waiting for its kind to reclaim it */
		if (take_lock(s, i) != 0)
			continue;
		/* reread under the lock: a dead owner may have gone ACTIVE after our look */
		st = shmring_load_acquire(&slot_ptr(s, i)->state); /* pairs with fill_slot's release */
		if (st == SHMRING_PART_ACTIVE) {
			drop_lock(s, i);
			continue;
		}
		fill_slot(s, i, role);
		*slot_out = i;
		return 0;
	}
	return shmring__fail(-EUSERS, "all %u participant slots are in use", s->max_parts);
}

void shmring_part_leave(struct shmring_seg *s, uint32_t slot)
{
	if (!s || slot >= s->max_parts || !held_here(s, slot))
		return;
	/* pairs with the acquire loads of state in shmring_part_get() and join */
	shmring_store_release(&slot_ptr(s, slot)->state, SHMRING_PART_LEFT);
	drop_lock(s, slot);
}

int shmring_part_alive(const struct shmring_seg *s, uint32_t slot)
{
	if (!s || slot >= s->max_parts)
		return -EINVAL;
	if (held_here(s, slot))
		return 1;
	if (s->fd < 0)
		return -EBADF;
	return locked_elsewhere(s->fd, slot);
}

int shmring_part_take(struct shmring_seg *s, uint32_t slot)
{
	if (!s || slot >= s->max_parts)
		return -EINVAL;
	return take_lock(s, slot);
}

int shmring_part_get(const struct shmring_seg *s, uint32_t slot, struct shmring_part_info *info)
{
	if (!s || !info || slot >= s->max_parts)
		return -EINVAL;
	const struct shmring_part *pt = slot_ptr(s, slot);
	memset(info, 0, sizeof(*info));
	info->state = shmring_load_acquire(&pt->state); /* pairs with fill_slot's release */
	info->role = shmring_load_relaxed(&pt->role);
	info->pid = shmring_load_relaxed(&pt->pid);
	info->gen = shmring_load_relaxed(&pt->gen);
	info->start_time = shmring_load_relaxed(&pt->start_time);
	info->joined_ns = shmring_load_relaxed(&pt->joined_ns);
	for (int i = 0; i < 4; i++)
		info->kind_data[i] = shmring_load_relaxed(&pt->kind_data[i]);
	info->mine = held_here(s, slot);
	if (info->state == SHMRING_PART_ACTIVE) {
		int a = shmring_part_alive(s, slot);
		info->alive = a > 0;
	}
	return 0;
}

int shmring_part_count(const struct shmring_seg *s, uint32_t role, unsigned *live, unsigned *dead)
{
	unsigned l = 0, d = 0;
	if (!s)
		return -EINVAL;
	for (uint32_t i = 0; i < s->max_parts; i++) {
		struct shmring_part_info info;
		shmring_part_get(s, i, &info);
		if (info.state != SHMRING_PART_ACTIVE || (role && info.role != role))
			continue;
		if (info.alive)
			l++;
		else
			d++;
	}
	if (live)
		*live = l;
	if (dead)
		*dead = d;
	return 0;
}
