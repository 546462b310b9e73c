/* SPDX-License-Identifier: MIT */
#include "segview.h"
#include "toolutil.h"

#include "shmring/bcast.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *seg_state_name(enum seg_state s)
{
	switch (s) {
	case SEG_OK: return "ok";
	case SEG_STALE: return "stale";
	default: return "corrupt";
	}
}

/* 1 if some open file description holds a lock on byte off of the file, 0 if none
 * does, -1 if the test failed. Asking for a write lock conflicts with any lock, read or
 * write; ours (this descriptor) holds none. */
static int byte_locked(int fd, off_t off)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = 1,
	};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

/* Liveness without the library's handle (a segment it refuses to open): the same OFD
 * lock test, on the byte layout.h assigns to the slot. */
static int raw_alive(int fd, uint32_t slot)
{
	return byte_locked(fd, SHMRING_PARTS_OFF + (off_t)SHMRING_PART_SIZE * slot);
}

/* More reader handles than this in the reader page's count is damage, not a count. */
#define READERS_PLAUSIBLE (UINT64_C(1) << 20)

static uint64_t kv_of(const struct shmring_dump_info *i, const char *key, int *found)
{
	for (uint32_t k = 0; k < i->nkv && k < SHMRING_DUMP_KV_MAX; k++) {
		if (strcmp(i->kv[k].key, key) == 0) {
			*found = 1;
			return i->kv[k].val;
		}
	}
	*found = 0;
	return 0;
}

/* Broadcast readers: the reader lock (bcast.h) says whether any is live; the reader
 * page's count, how many there may be. */
static void reader_liveness(struct seg_view *v)
{
	const struct shmring_dump_info *i = &v->info;
	int found = 0;

	v->readers_locked = -1;
	v->readers_open = 0;
	v->readers_at_least = 0;
	v->cons_exact = 1;
	if (i->kind != SHMRING_KIND_BCAST || v->len < SHMRING_HDR_SIZE || v->fd < 0)
		return;
	v->readers_locked = byte_locked(v->fd, SHMRING_BCAST_READER_LOCK);
	uint64_t n = kv_of(i, "readers_open", &found);
	int plausible = found && n <= READERS_PLAUSIBLE;
	v->readers_open = found ? n : 0;
	v->cons_exact = v->readers_locked == 0 && found && n == 0;
	if (v->readers_locked > 0) {
		unsigned live = plausible && n >= 1 ? (unsigned)n : 1;
		v->readers_at_least = !(plausible && n >= 1);
		v->cons_live += live;
		v->live += live;
	} else if (v->readers_locked == 0 && plausible) {
		/* nobody holds the lock: every handle the page still counts died open */
		v->cons_dead += (unsigned)n;
		v->dead += (unsigned)n;
	}
}

static void liveness(struct seg_view *v)
{
	struct shmring_dump_info *i = &v->info;

	v->prod_live = v->prod_dead = v->cons_live = v->cons_dead = v->live = v->dead = 0;
	if (!v->seg && v->decode_rc == 0 && i->nproblems == 0 && v->len) {
		/* the library's own view, when it accepts the segment */
		if (shmring_seg_open_path(v->path, 0, SHMRING_O_RDONLY | SHMRING_O_NOREGISTRY,
					  &v->seg) != 0)
			v->seg = NULL;
	}
	for (uint32_t k = 0; k < i->nparts; k++) {
		struct shmring_dump_part *p = &i->parts[k];
		int a = -1;
		if (v->seg && p->slot < v->seg->max_parts)
			a = shmring_part_alive(v->seg, p->slot);
		if (a < 0 && v->len >= SHMRING_HDR_SIZE)
			a = raw_alive(v->fd, p->slot);
		p->alive = a < 0 ? -1 : a;
		if (p->state != SHMRING_PART_ACTIVE || p->alive < 0)
			continue;
		int prod = p->role == SHMRING_ROLE_PRODUCER;
		int cons = p->role == SHMRING_ROLE_CONSUMER || p->role == SHMRING_ROLE_SUBSCRIBER ||
			   p->role == SHMRING_ROLE_READER;
		if (p->alive) {
			v->live++;
			v->prod_live += prod;
			v->cons_live += cons;
		} else {
			v->dead++;
			v->prod_dead += prod;
			v->cons_dead += cons;
		}
	}
	reader_liveness(v);
	/* held open with no live participant (a creator that forks its workers, one
	 * between its create and its join): in use, not stale */
	v->held_open = v->len >= SHMRING_HDR_SIZE ? byte_locked(v->fd, SHMRING_HOLDER_LOCK) : -1;
	if (v->decode_rc != 0 || i->nproblems != 0)
		v->state = SEG_CORRUPT;
	else
		v->state = v->live || v->held_open > 0 ? SEG_OK : SEG_STALE;
}

void seg_view_refresh(struct seg_view *v)
{
	v->decode_rc = shmring_dump_decode_buf(v->map, v->len, &v->info);
	liveness(v);
}

static int open_file(struct seg_view *v, char *why, size_t wl)
{
	struct stat st;
	tool_printable(v->name, v->label, sizeof(v->label));
	tool_printable(v->path, v->label_path, sizeof(v->label_path));
	v->fd = open(v->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (v->fd < 0) {
		int err = errno;
		snprintf(why, wl, "%s", err == ENOENT ? "no such segment or file" : strerror(err));
		return -err;
	}
	if (fstat(v->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, wl, "not a regular file, so not a segment");
		close(v->fd);
		v->fd = -1;
		return -EPROTO;
	}
	v->len = (size_t)st.st_size;
	if (v->len) {
		void *m = mmap(NULL, v->len, PROT_READ, MAP_SHARED, v->fd, 0);
		if (m == MAP_FAILED) {
			int err = errno;
			snprintf(why, wl, "cannot map it: %s", strerror(err));
			close(v->fd);
			v->fd = -1;
			return -err;
		}
		v->map = m;
	}
	seg_view_refresh(v);
	return 0;
}

int seg_view_open_devshm(struct seg_view *v, const char *name, char *why, size_t wl)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	snprintf(v->name, sizeof(v->name), "%s", name);
	if (!*name || strchr(name, '/') ||
	    snprintf(v->path, sizeof(v->path), "/dev/shm/%s", name) >= (int)sizeof(v->path)) {
		snprintf(why, wl, "not a valid segment name");
		return -EINVAL;
	}
	v->in_devshm = 1;
	return open_file(v, why, wl);
}

int seg_view_open(struct seg_view *v, const char *arg, char *why, size_t wl)
{
	char p[PATH_MAX];
	struct stat st;

	if (!arg || !*arg) {
		snprintf(why, wl, "empty segment name");
		return -EINVAL;
	}
	/* a plain name is a segment in /dev/shm, unless only a file of that name exists */
	/* the path made here, not by shmring_seg_path(): an inspector must reach names the
	 * library would not create (control bytes, more than SHMRING_NAME_MAX bytes) that
	 * list shows, whoever planted them */
	if (!strchr(arg, '/') && strlen(arg) <= NAME_MAX &&
	    snprintf(p, sizeof(p), "/dev/shm/%s", arg) < (int)sizeof(p) &&
	    (stat(p, &st) == 0 || stat(arg, &st) != 0))
		return seg_view_open_devshm(v, arg, why, wl);
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	snprintf(v->name, sizeof(v->name), "%s", arg);
	if (snprintf(v->path, sizeof(v->path), "%s", arg) >= (int)sizeof(v->path)) {
		snprintf(why, wl, "path too long");
		return -ENAMETOOLONG;
	}
	return open_file(v, why, wl);
}

void seg_view_close(struct seg_view *v)
{
	if (v->seg)
		shmring_seg_close(v->seg);
	if (v->map)
		munmap((void *)v->map, v->len);
	if (v->fd >= 0)
		close(v->fd);
	v->seg = NULL;
	v->map = NULL;
	v->fd = -1;
}

int seg_open_error_skips(int err)
{
	switch (err < 0 ? -err : err) {
	case ENOENT: /* removed since the directory was read */
	case EACCES: /* not ours to read (another user's file) */
	case EPERM:
	case ENXIO:  /* a socket, or a device with nothing behind it */
	case ENODEV:
	case ELOOP:  /* a symbolic link that leads nowhere a file can be opened */
	case EPROTO: /* seg_view_open*(): not a regular file (replaced since it was read) */
		return 1;
	default:
		return 0;
	}
}

int seg_file_is_ours(int dirfd, const char *name)
{
	uint64_t magic = 0;
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return seg_open_error_skips(errno) ? 0 : -errno;
	int ours;
	if (fstat(fd, &st) != 0) {
		ours = -errno;
	} else if (!S_ISREG(st.st_mode)) {
		ours = 0;
	} else {
		ssize_t n = pread(fd, &magic, sizeof(magic), 0);
		if (n < 0)
			ours = -errno;
		else
			ours = n == (ssize_t)sizeof(magic) && magic == SHMRING_MAGIC;
	}
	close(fd);
	return ours;
}
