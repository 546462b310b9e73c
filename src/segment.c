/* SPDX-License-Identifier: MIT */
/*
 * Segments: creation, validation and attach. Everything here is a slow path.
 */
#include "internal.h"
#include "shmring/wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE_UP(x) (((x) + SHMRING_PAGE - 1) & ~(uint64_t)(SHMRING_PAGE - 1))

uint64_t shmring__realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "NAME" or "/NAME" -> "/NAME"; a name is one path component. */
static int norm_name(const char *name, char *out, size_t len)
{
	if (!name)
		return -EINVAL;
	if (name[0] == '/')
		name++;
	size_t n = strlen(name);
	if (n == 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return shmring__fail(-EINVAL, "invalid segment name \"%s\"", name);
	/* no control bytes: a name shows up in listings and logs (any other byte, UTF-8 or
	 * not, is the file system's business) */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return shmring__fail(-EINVAL, "segment name has a control byte at byte %zu", i);
	if (n > SHMRING_NAME_MAX || n + 2 > len)
		return shmring__fail(-ENAMETOOLONG, "segment name longer than %u bytes", SHMRING_NAME_MAX);
	out[0] = '/';
	memcpy(out + 1, name, n + 1);
	return 0;
}

int shmring_seg_path(const char *name, char *buf, size_t len)
{
	char n[SHMRING_NAME_MAX + 2];
	if (!buf || !len)
		return -EINVAL;
	int rc = norm_name(name, n, sizeof(n));
	if (rc)
		return rc;
	if ((size_t)snprintf(buf, len, "/dev/shm%s", n) >= len)
		return -ENAMETOOLONG;
	return 0;
}

uint64_t shmring_hdr_checksum(const void *hdr)
{
	return XXH64(hdr, SHMRING_CHECKSUM_OFF, 0);
}

/* a + b <= limit without overflow */
static int fits(uint64_t a, uint64_t b, uint64_t limit)
{
	return a <= limit && b <= limit - a;
}

int shmring_hdr_validate(const void *buf, size_t len, uint64_t file_size, struct shmring_seg *out,
			 char *why, size_t wl)
{
	struct shmring_hdr h;
	if (!buf || len < 256)
		return shmring__fail_why(why, wl, -EPROTO,
					 "file too small for a header (%zu bytes)", len);
	memcpy(&h, buf, 256); /* validate a private copy: the segment may change under us */
	uint64_t magic;
	memcpy(&magic, buf, sizeof(magic));
	if (magic == 0)
		return shmring__fail_why(why, wl, -EAGAIN,
					 "magic is 0: the segment is still being created (or was zeroed)");
	if (magic != SHMRING_MAGIC)
		return shmring__fail_why(why, wl, -EPROTO,
					 "magic 0x%016llx is not a shmring segment's",
					 (unsigned long long)magic);
	if (h.layout_version != SHMRING_LAYOUT_VERSION)
		return shmring__fail_why(why, wl, -EPROTO,
					 "layout_version %u unknown (this library reads %u)",
					 h.layout_version, SHMRING_LAYOUT_VERSION);
	uint64_t sum = shmring_hdr_checksum(&h);
	if (sum != h.checksum)
		return shmring__fail_why(why, wl, -EBADMSG,
					 "checksum 0x%016llx does not match the header (0x%016llx)",
					 (unsigned long long)h.checksum, (unsigned long long)sum);
	if (h.kind < SHMRING_KIND_SPSC || h.kind > SHMRING_KIND_BCAST)
		return shmring__fail_why(why, wl, -EPROTO, "kind %u unknown", h.kind);
	if (h.flags & ~SHMRING_SEG_F_KNOWN)
		return shmring__fail_why(why, wl, -EPROTO, "flags 0x%x has unknown bits", h.flags);
	if (h.hdr_size != SHMRING_HDR_SIZE)
		return shmring__fail_why(why, wl, -EPROTO, "hdr_size %u is not %u", h.hdr_size,
					 SHMRING_HDR_SIZE);
	if (h.total_size > file_size)
		return shmring__fail_why(why, wl, -EPROTO,
					 "total_size %llu is larger than the file (%llu bytes)",
					 (unsigned long long)h.total_size,
					 (unsigned long long)file_size);
	if (h.total_size < SHMRING_HDR_SIZE || h.total_size % SHMRING_PAGE)
		return shmring__fail_why(why, wl, -EPROTO,
					 "total_size %llu is not a whole number of pages",
					 (unsigned long long)h.total_size);
	if (h.max_parts == 0 || h.max_parts > SHMRING_MAX_PARTS)
		return shmring__fail_why(why, wl, -EPROTO, "max_parts %u out of range 1..%u",
					 h.max_parts, SHMRING_MAX_PARTS);
	if (h.parts_off != SHMRING_PARTS_OFF)
		return shmring__fail_why(why, wl, -EPROTO, "parts_off %llu is not %u",
					 (unsigned long long)h.parts_off, SHMRING_PARTS_OFF);
	if (h.ctrl_off < SHMRING_HDR_SIZE || h.ctrl_off % SHMRING_PAGE ||
	    !fits(h.ctrl_off, h.ctrl_size, h.total_size))
		return shmring__fail_why(why, wl, -EPROTO,
					 "ctrl region [%llu, +%llu) outside the segment",
					 (unsigned long long)h.ctrl_off,
					 (unsigned long long)h.ctrl_size);
	if (h.data_off % SHMRING_PAGE || h.data_off < h.ctrl_off + h.ctrl_size ||
	    !fits(h.data_off, h.data_size, h.total_size))
		return shmring__fail_why(why, wl, -EPROTO,
					 "data region [%llu, +%llu) outside the segment or overlapping ctrl",
					 (unsigned long long)h.data_off,
					 (unsigned long long)h.data_size);
	if (h.name[SHMRING_NAME_MAX] != '\0')
		return shmring__fail_why(why, wl, -EPROTO, "name is not NUL terminated");
	if (out) {
		out->size = h.total_size;
		out->kind = h.kind;
		out->flags = h.flags;
		out->max_parts = h.max_parts;
		out->ctrl_off = h.ctrl_off;
		out->ctrl_size = h.ctrl_size;
		out->data_off = h.data_off;
		out->data_size = h.data_size;
		memcpy(out->geo, h.geo, sizeof(out->geo));
		out->created_ns = h.created_ns;
		out->creator_pid = h.creator_pid;
		memcpy(out->name, h.name, sizeof(out->name));
	}
	return 0;
}

/* Map fd, validate, fill a new handle. fd is consumed; by_fd: it came from the caller's
 * descriptor, not from a name or path the caller gave. */
static int attach(int fd, uint32_t kind, unsigned flags, const char *name, int by_fd,
		  struct shmring_seg **out)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return shmring__fail(-EPROTO, "not a regular file");
	}
	uint64_t fsize = (uint64_t)st.st_size;
	if (fsize == 0) {
		/* shm_open(O_CREAT) made the name before the creator sized the file: like a
		 * zero magic, "not ready yet", so that a reader that waits for the name keeps
		 * waiting instead of calling it corrupt */
		close(fd);
		return shmring__fail(-EAGAIN, "empty file: the segment is still being created");
	}
	uint8_t raw[256];
	ssize_t n = pread(fd, raw, sizeof(raw), 0);
	if (n < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	struct shmring_seg *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	int rc = shmring_hdr_validate(raw, (size_t)n, fsize, s, NULL, 0);
	/* A file without a name (a memfd, or a segment unlinked since) is reached only
	 * through descriptors, often from a peer we may not trust: whoever holds one could
	 * shrink it under our mapping (SIGBUS) unless it is sealed. Ours are. A named
	 * segment opened by its name may lose the name meanwhile (its users unlink it once
	 * everyone is in): that is still the segment the caller named. */
	if (rc == 0 && ((s->flags & SHMRING_SEG_F_MEMFD) || (by_fd && st.st_nlink == 0))) {
		int seals = fcntl(fd, F_GET_SEALS);
		if (seals < 0 || !(seals & F_SEAL_SHRINK))
			rc = shmring__fail(-EPROTO, "anonymous segment not sealed against shrinking");
	}
	if (rc == 0 && kind && s->kind != kind)
		rc = shmring__fail(-EPROTO, "segment kind is %u, expected %u", s->kind, kind);
	if (rc == 0 && (s->flags & SHMRING_SEG_F_SEMWAIT) != shmring_wait_backend_flag())
		rc = shmring__fail(-ENOTSUP, "segment uses the %s wait backend; this library was built for %s",
				   (s->flags & SHMRING_SEG_F_SEMWAIT) ? "semaphore" : "futex",
				   shmring_wait_backend_flag() ? "semaphore" : "futex");
	if (rc) {
		free(s);
		close(fd);
		return rc;
	}
	int writable = !(flags & SHMRING_O_RDONLY);
	struct shmring__reg_entry *e;
	rc = shmring__reg_acquire(fd, writable, s->size, name, !!(flags & SHMRING_O_NOREGISTRY), &e);
	if (rc) {
		free(s);
		return rc;
	}
	/* The header we validated was read before the mapping: check the mapping still
	 * holds the same immutable bytes, so geometry and mapping agree. The magic first,
	 * with acquire: pairs with the creator's release store of it, so the control
	 * region it initialised before is what we see (pread's copy orders nothing). */
	if (shmring_load_acquire(&((struct shmring_hdr *)(void *)e->base)->magic) != SHMRING_MAGIC ||
	    memcmp(e->base, raw, 256) != 0) {
		shmring__reg_release(e);
		free(s);
		return shmring__fail(-EPROTO, "header changed during attach");
	}
	s->base = e->base;
	s->fd = e->fd;
	s->writable = writable;
	s->reg = e;
	*out = s;
	return 0;
}

/* O_NONBLOCK: a FIFO planted under a segment's name must not hang a read-only open
 * (attach() then refuses anything but a regular file, where the flag changes nothing) */
static int open_flags(unsigned flags)
{
	return ((flags & SHMRING_O_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
	       O_NOCTTY;
}

/* shm_open the name and attach: shmring_seg_open() less the check of the name after */
static int open_named(const char *n, uint32_t kind, unsigned flags, struct shmring_seg **out)
{
	int fd = shm_open(n, open_flags(flags), 0);
	if (fd < 0) {
		int err = errno;
		/* a directory (EISDIR, which glibc reports as EINVAL), a socket (ENXIO) or a
		 * symbolic link (ELOOP: shm_open does not follow them) under the name: not a
		 * segment, as attach() says of a FIFO */
		char path[SHMRING_NAME_MAX + 16];
		struct stat st;
		if ((err == EINVAL || err == EISDIR || err == ENXIO || err == ELOOP) &&
		    shmring_seg_path(n, path, sizeof(path)) == 0 && lstat(path, &st) == 0 &&
		    !S_ISREG(st.st_mode))
			return shmring__fail(-EPROTO, "%s is not a regular file", path);
		return shmring__fail(-err, "shm_open(%s): %s", n, strerror(err));
	}
	return attach(fd, kind, flags, n + 1, 0, out);
}

int shmring_seg_open(const char *name, uint32_t kind, unsigned flags, struct shmring_seg **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	char n[SHMRING_NAME_MAX + 2];
	if (!out)
		return -EINVAL;
	int rc = norm_name(name, n, sizeof(n));
	if (rc)
		return rc;
	char path[SHMRING_NAME_MAX + 16];
	for (int tries = 0;; tries++) {
		rc = open_named(n, kind, flags, out);
		if (rc)
			return rc;
		/* shmdump clean may have removed the name of a stale segment between our
		 * shm_open and our holder lock (taken in attach), which it had not seen: we
		 * would hold a segment nobody can find. The lock is ours now, so a name that
		 * still leads to our file stays (clean sees the lock); otherwise start over */
		struct stat a, b;
		if (shmring_seg_path(n, path, sizeof(path)) == 0 && stat(path, &b) == 0 && fstat((*out)->fd, &a) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return 0;
		shmring_seg_close(*out);
		*out = NULL;
		if (tries == 2)
			return shmring__fail(-ENOENT, "%s was removed while it was being opened", path);
	}
}

int shmring_seg_open_path(const char *path, uint32_t kind, unsigned flags, struct shmring_seg **out)
{
	shmring__clear_detail();
	if (!path || !out)
		return -EINVAL;
	int fd = open(path, open_flags(flags));
	if (fd < 0)
		return shmring__fail(-errno, "open(%s): %s", path, strerror(errno));
	const char *base = strrchr(path, '/');
	return attach(fd, kind, flags, base ? base + 1 : path, 0, out);
}

int shmring_seg_open_fd(int fd, uint32_t kind, unsigned flags, struct shmring_seg **out)
{
	shmring__clear_detail();
	if (fd < 0 || !out)
		return -EINVAL;
	/* a fresh open file description: participant locks of our own */
	int nfd = shmring__reopen_fd(fd, open_flags(flags));
	if (nfd < 0)
		return shmring__fail(nfd, "reopen of fd %d: %s", fd, strerror(-nfd));
	return attach(nfd, kind, flags, "", 1, out);
}

int shmring__seg_inherited(const struct shmring_seg *s)
{
	return s && s->reg && s->reg->inherited;
}

void shmring_seg_close(struct shmring_seg *s)
{
	if (!s)
		return;
	shmring__reg_release(s->reg);
	free(s);
}

int shmring_seg_unlink(const char *name)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	char n[SHMRING_NAME_MAX + 2];
	int rc = norm_name(name, n, sizeof(n));
	if (rc)
		return rc;
	if (shm_unlink(n) != 0)
		return -errno;
	return 0;
}

/* Allocation is made in parts: kernels before 6.x stop a tmpfs fallocate at any pending
 * signal (EINTR, even for a handler that asked for restarts) and undo what that call had
 * allocated, so a whole large segment retried at once might never finish under a
 * periodic signal (a profiler's timer, a runtime's preemption). A part takes a
 * millisecond or so; one interrupted ALLOC_EINTR_MAX times in a row gives up. */
#define ALLOC_PART (UINT64_C(2) << 20)
#define ALLOC_EINTR_MAX 100

static int allocate(int fd, uint64_t total)
{
	for (uint64_t off = 0; off < total;) {
		uint64_t len = total - off < ALLOC_PART ? total - off : ALLOC_PART;
		int e, tries = 0;
		do
			e = posix_fallocate(fd, (off_t)off, (off_t)len);
		while (e == EINTR && ++tries < ALLOC_EINTR_MAX);
		if (e)
			return e;
		off += len;
	}
	return 0;
}

static int reserve_space(int fd, uint64_t total, const char *what)
{
	/* Refuse up front what cannot fit: posix_fallocate on a tmpfs the size of RAM would
	 * otherwise fill memory page by page before it fails, pushing the whole machine
	 * towards the OOM killer. f_blocks == 0 means no limit (the memfd mount). The
	 * fallocate below still catches a race with another process filling the fs; a race
	 * for memory is the kernel's to settle. */
	struct statvfs sv;
	if (fstatvfs(fd, &sv) == 0 && sv.f_blocks != 0) {
		unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
		if (total > avail)
			return shmring__fail(-ENOSPC, "%s needs %llu bytes; the filesystem has %llu free",
					     what, (unsigned long long)total, avail);
	}
	/* nor what memory cannot hold, whatever the file system allows (a memfd's has no
	 * limit, and /dev/shm's may exceed memory): src/memroom.c */
	uint64_t room = shmring__mem_room();
	if (total > room)
		return shmring__fail(-ENOSPC, "%s needs %llu bytes; memory has room for %llu "
				     "(available memory and free swap, within the cgroup's limit)",
				     what, (unsigned long long)total, (unsigned long long)room);
	/* a file larger than RLIMIT_FSIZE: ftruncate would raise SIGXFSZ, whose default
	 * action kills the process before it can return EFBIG */
	struct rlimit fl;
	if (getrlimit(RLIMIT_FSIZE, &fl) == 0 && fl.rlim_cur != RLIM_INFINITY &&
	    total > (uint64_t)fl.rlim_cur)
		return shmring__fail(-EFBIG, "%s needs %llu bytes; the file size limit "
				     "(RLIMIT_FSIZE, ulimit -f) is %llu", what,
				     (unsigned long long)total, (unsigned long long)fl.rlim_cur);
	if (ftruncate(fd, (off_t)total) != 0)
		return shmring__fail(-errno, "ftruncate to %llu bytes: %s", (unsigned long long)total,
				     strerror(errno));
	/* Allocate every page now: a full /dev/shm fails here with ENOSPC instead of
	 * killing a process with SIGBUS at first touch. */
	int e = allocate(fd, total);
	if (e == ENOSPC || e == EFBIG) {
		unsigned long long avail = 0;
		if (fstatvfs(fd, &sv) == 0)
			avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
		return shmring__fail(-ENOSPC, "%s needs %llu bytes; the filesystem has %llu free",
				     what, (unsigned long long)total, avail);
	}
	if (e != 0 && e != EOPNOTSUPP)
		return shmring__fail(-e, "posix_fallocate: %s", strerror(e));
	return 0;
}

/* A named segment is made without a name (O_TMPFILE in /dev/shm) and linked under its
 * name only once complete (publish()): a creator killed halfway leaves nothing, where a
 * name made first would be left on a file that is no segment, refusing the next create
 * with -EEXIST and invisible to shmdump. Where O_TMPFILE is refused (a file system or
 * kernel without it), the name is made first with shm_open(O_EXCL); *early_name says so. */
static int create_file(const char *n, const char *path, mode_t mode, int *early_name)
{
	struct stat st;
	/* the common refusal, before the allocation; creators of one name take turns
	 * (take_turn()), so that two do not both allocate where only one fits (-ENOSPC
	 * for both); publish() decides a race all the same */
	if (lstat(path, &st) == 0)
		return shmring__fail(-EEXIST, "%s exists", path);
	int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
	*early_name = fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL);
	if (*early_name)
		fd = shm_open(n, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
	if (fd < 0)
		return shmring__fail(-errno, "creating %s: %s", path, strerror(errno));
	if (fchmod(fd, mode) != 0) { /* whatever the umask */
		int err = -errno;
		if (*early_name)
			shm_unlink(n);
		close(fd);
		return err;
	}
	return fd;
}

/* Give the complete segment on fd its name: link(2) makes it atomically, or fails with
 * EEXIST if another creator got there first. Through the descriptor's /proc link (no
 * privilege needed), else AT_EMPTY_PATH (CAP_DAC_READ_SEARCH) where /proc is missing. */
static int publish(int fd, const char *path)
{
	char from[64];
	snprintf(from, sizeof(from), "/proc/thread-self/fd/%d", fd);
	int rc = linkat(AT_FDCWD, from, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
	int via_self = 0;
	/* before Linux 3.17 (no thread-self): self is the leader's table, which is ours
	 * unless this thread unshared its own: checked below */
	if (rc != 0 && errno == ENOENT && access("/proc/thread-self", F_OK) != 0) {
		snprintf(from, sizeof(from), "/proc/self/fd/%d", fd);
		rc = linkat(AT_FDCWD, from, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
		via_self = 1;
	}
	if (rc != 0 && errno == ENOENT && access("/proc/self", F_OK) != 0) {
		rc = linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH);
		via_self = 0;
	}
	if (rc != 0)
		return shmring__fail(-errno, "naming %s: %s", path, strerror(errno));
	struct stat a, b;
	if (via_self && fstat(fd, &a) == 0 && lstat(path, &b) == 0 &&
	    (a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
		unlink(path); /* the link we just made, to the file another thread's fd N is */
		return shmring__fail(-ESTALE, "naming %s: /proc/self gave another file", path);
	}
	return 0;
}

/* n: "/NAME" and path its /dev/shm path, or both "" for an anonymous segment. The
 * segment is complete but not named yet (shmring__seg_name() names it), unless
 * *early_name says the name was made first. */
static int create(const char *n, const char *path, const struct shmring_seg_params *p,
		  struct shmring_seg **out, int *early)
{
	int anon = !*n;
	uint64_t ctrl_size = PAGE_UP(p->ctrl_size ? p->ctrl_size : SHMRING_PAGE);
	uint64_t data_size = PAGE_UP(p->data_size);
	if (ctrl_size < p->ctrl_size || data_size < p->data_size ||
	    data_size > (UINT64_C(1) << 46) || ctrl_size > (UINT64_C(1) << 40))
		return shmring__fail(-EINVAL, "segment too large");
	uint64_t ctrl_off = SHMRING_HDR_SIZE;
	uint64_t data_off = ctrl_off + ctrl_size;
	uint64_t total = data_off + data_size;

	int fd;
	mode_t mode = p->mode ? p->mode : 0600;
	/* early_name: the name exists from the start (the fallback), so every failure
	 * below must remove it */
	int early_name = 0;
	if (anon) {
		fd = memfd_create("shmring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0)
			return shmring__fail(-errno, "memfd_create: %s", strerror(errno));
	} else {
		/* owner read-write until the registry has opened its second description for
		 * the participant locks (it reopens the file, which a mode without owner write
		 * would refuse); the mode asked for is set below */
		fd = create_file(n, path, mode | 0600, &early_name);
		if (fd < 0)
			return fd;
	}
	int rc = reserve_space(fd, total, anon ? "anonymous segment" : n);
	if (rc == 0 && anon &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
		rc = shmring__fail(-errno, "sealing the memfd: %s", strerror(errno));
	if (rc) {
		if (early_name)
			shm_unlink(n);
		close(fd);
		return rc;
	}
	struct shmring__reg_entry *e;
	rc = shmring__reg_acquire(fd, 1, total, anon ? "" : n + 1, 0, &e);
	if (rc) {
		if (early_name)
			shm_unlink(n);
		return rc;
	}
	if (!anon && (mode & 0600) != 0600 && fchmod(e->fd, mode) != 0) {
		rc = shmring__fail(-errno, "fchmod(%s, 0%o): %s", n, (unsigned)mode, strerror(errno));
		shmring__reg_release(e);
		if (early_name)
			shm_unlink(n);
		return rc;
	}
	struct shmring_seg *s = calloc(1, sizeof(*s));
	if (!s) {
		shmring__reg_release(e);
		if (early_name)
			shm_unlink(n);
		return -ENOMEM;
	}
	struct shmring_hdr *h = (struct shmring_hdr *)(void *)e->base;
	h->layout_version = SHMRING_LAYOUT_VERSION;
	h->kind = p->kind;
	h->flags = p->flags | (anon ? SHMRING_SEG_F_MEMFD : 0) | shmring_wait_backend_flag();
	h->hdr_size = SHMRING_HDR_SIZE;
	h->total_size = total;
	h->created_ns = shmring__realtime_ns();
	h->creator_pid = (int32_t)getpid();
	h->max_parts = p->max_parts ? p->max_parts : SHMRING_MAX_PARTS;
	h->parts_off = SHMRING_PARTS_OFF;
	h->ctrl_off = ctrl_off;
	h->ctrl_size = ctrl_size;
	h->data_off = data_off;
	h->data_size = data_size;
	memcpy(h->geo, p->geo, sizeof(h->geo));
	snprintf(h->name, sizeof(h->name), "%s", anon ? "" : n + 1);

	s->base = e->base;
	s->size = total;
	s->kind = h->kind;
	s->flags = h->flags;
	s->max_parts = h->max_parts;
	s->writable = 1;
	s->ctrl_off = ctrl_off;
	s->ctrl_size = ctrl_size;
	s->data_off = data_off;
	s->data_size = data_size;
	memcpy(s->geo, p->geo, sizeof(s->geo));
	s->created_ns = h->created_ns;
	s->creator_pid = h->creator_pid;
	s->fd = e->fd;
	s->reg = e;
	memcpy(s->name, h->name, sizeof(s->name));

	if (p->init && (rc = p->init(s, p->init_arg)) != 0) {
		shmring_seg_close(s);
		if (early_name)
			shm_unlink(n);
		return rc;
	}
	/* the magic goes in when the segment is named (shmring__seg_name()) */
	*early = early_name;
	*out = s;
	return 0;
}

/* Creators of one name take turns (see create_file()): each holds an abstract socket
 * address made from /dev/shm's identity and the name while it creates. The address
 * goes with the last descriptor, so a creator that dies leaves nothing behind, and
 * the registry lists the descriptor so that a fork()ed child keeps no copy. Without
 * AF_UNIX (a sandbox), creators do not take turns: link(2) still decides. */
#define TURN_WAIT_MS 10

static int take_turn(const char *path, struct shmring__lock_fd **guard)
{
	struct stat st;
	*guard = NULL;
	if (stat("/dev/shm", &st) != 0)
		return 0;
	uint64_t id[2] = { (uint64_t)st.st_dev, (uint64_t)st.st_ino };
	char key[64];
	snprintf(key, sizeof(key), "shmring-create-%016llx",
		 (unsigned long long)XXH64(path, strlen(path), XXH64(id, sizeof(id), 0)));
	/* a process forked while another thread of ours held a turn holds a copy of it
	 * until its atfork handler closes it, a moment later: the turn is tried for up to
	 * TURN_WAIT_MS before the name counts as being created elsewhere */
	int rc;
	for (int tries = 0; (rc = shmring__guard_open(key, guard)) == -EADDRINUSE &&
			    tries < TURN_WAIT_MS * 10; tries++) {
		struct timespec nap = { 0, 100000 };
		nanosleep(&nap, NULL);
	}
	if (rc == -EADDRINUSE)
		return shmring__fail(-EEXIST, "%s is being created by another process "
				     "(it holds the abstract socket @%s)", path, key);
	/* no AF_UNIX here (a sandbox): nobody takes turns. Out of descriptors or memory is
	 * an error of the moment, not a reason to go without */
	if (rc && rc != -EAFNOSUPPORT && rc != -EPERM && rc != -EACCES)
		return shmring__fail(rc, "the turn to create %s: %s", path, strerror(-rc));
	return 0;
}

/* nm for a named segment: its normalised name and path, and the creators' turn */
static int begin_naming(const char *name, struct shmring__naming *nm)
{
	int rc = norm_name(name, nm->n, sizeof(nm->n));
	if (rc)
		return rc;
	snprintf(nm->path, sizeof(nm->path), "/dev/shm%s", nm->n);
	return take_turn(nm->path, &nm->guard);
}

int shmring_seg_turn_take(const char *name, struct shmring_seg_turn **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring__naming nm = { .guard = NULL };
	if (!out)
		return -EINVAL;
	*out = NULL;
	int rc = begin_naming(name, &nm);
	if (rc)
		return rc;
	*out = (struct shmring_seg_turn *)(void *)nm.guard; /* NULL: no turns here (no AF_UNIX) */
	return 0;
}

void shmring_seg_turn_give(struct shmring_seg_turn *t)
{
	shmring__lock_fd_close((struct shmring__lock_fd *)(void *)t);
}

int shmring__seg_make(const char *name, const struct shmring_seg_params *p,
		      struct shmring_seg **out, struct shmring__naming *nm)
{
	nm->n[0] = nm->path[0] = 0;
	nm->guard = NULL;
	nm->early_name = 0;
	if (!p || !out || p->kind < SHMRING_KIND_SPSC || p->kind > SHMRING_KIND_BCAST ||
	    p->max_parts > SHMRING_MAX_PARTS || (p->flags & 0xffffu) || (p->mode & ~0777u))
		return shmring__fail(-EINVAL, "invalid segment parameters");
	if (!name || !*name)
		return create("", "", p, out, &nm->early_name);
	int rc = begin_naming(name, nm);
	if (rc)
		return rc;
	if ((rc = create(nm->n, nm->path, p, out, &nm->early_name)) != 0) {
		shmring__lock_fd_close(nm->guard);
		nm->guard = NULL;
	}
	return rc;
}

/* The checksum covers the final magic; the magic goes in last, with release, so an
 * attacher that sees it sees the whole header, the initialised control region and the
 * creator's role taken. Until then an opener of a name made first (no O_TMPFILE) is
 * told the segment is still being created. */
static void seal(struct shmring_seg *s)
{
	struct shmring_hdr *h = (struct shmring_hdr *)(void *)s->base;
	uint8_t tmp[SHMRING_CHECKSUM_OFF];
	memcpy(tmp, h, sizeof(tmp));
	uint64_t magic = SHMRING_MAGIC;
	memcpy(tmp, &magic, sizeof(magic));
	h->checksum = shmring_hdr_checksum(tmp);
	/* pairs with the acquire load of the magic through the mapping in attach() */
	shmring_store_release(&h->magic, SHMRING_MAGIC);
}

int shmring__seg_name(struct shmring_seg *s, struct shmring__naming *nm)
{
	int rc = 0;
	seal(s);
	if (nm->n[0] && !nm->early_name)
		rc = publish(s->fd, nm->path);
	shmring__lock_fd_close(nm->guard);
	nm->guard = NULL;
	return rc;
}

void shmring__seg_unmake(struct shmring__naming *nm)
{
	if (nm->n[0] && nm->early_name)
		shm_unlink(nm->n);
	shmring__lock_fd_close(nm->guard);
	nm->guard = NULL;
}

int shmring_seg_create(const char *name, const struct shmring_seg_params *p, struct shmring_seg **out)
{
	shmring__clear_detail(); /* a failure below without a detail leaves none */
	struct shmring__naming nm;
	int rc = shmring__seg_make(name, p, out, &nm);
	if (rc)
		return rc;
	if ((rc = shmring__seg_name(*out, &nm)) != 0) {
		shmring_seg_close(*out);
		*out = NULL;
	}
	return rc;
}
