/* SPDX-License-Identifier: MIT */
/* Private helpers shared by the files in src/. */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include "shmring/segment.h"
#include "shmring_config.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/types.h>

#define SHMRING_HIDDEN __attribute__((visibility("hidden")))

/* Record a detail for shmring_last_error_detail() and return err unchanged. */
SHMRING_HIDDEN int shmring__fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The same, and the sentence into why (why_len bytes; none if NULL): for the checks
 * that tools and fuzzers call as pure functions and that report in words. */
SHMRING_HIDDEN int shmring__fail_why(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
SHMRING_HIDDEN void shmring__clear_detail(void);

/* Registry of this process's mappings (src/registry.c). */
struct shmring__reg_entry {
	dev_t dev;
	ino_t ino;
	int writable;
	pid_t owner;          /* process that opened it: entries do not survive fork */
	int fd;
	uint8_t *base;
	uint64_t size;
	unsigned refs;        /* handles sharing this mapping; guarded by the registry lock */
	uint64_t held_slots;  /* participant slots this process holds (bit per slot) */
	int inherited;        /* a forked child's copy: its handles are the parent's */
	char name[SHMRING_NAME_MAX + 1];
	struct shmring__reg_entry *_Atomic next; /* RCU list of this process's mappings */
};

/* Find or create the mapping of the file open on fd (fd is consumed: kept by the entry
 * or closed). Returns 0 and the entry, or a negative errno. */
SHMRING_HIDDEN int shmring__reg_acquire(int fd, int writable, uint64_t size, const char *name,
					 int private_map, struct shmring__reg_entry **out);
SHMRING_HIDDEN void shmring__reg_release(struct shmring__reg_entry *e);
/* 1 if s is a handle this process got through fork(): it is the parent's, and closing
 * it in the child must not change the segment (no end of stream, no leave). */
SHMRING_HIDDEN int shmring__seg_inherited(const struct shmring_seg *s);
/* Guards held_slots updates of entries. */
SHMRING_HIDDEN void shmring__reg_lock(void);
SHMRING_HIDDEN void shmring__reg_unlock(void);

/* A new open file description of the file open on fd (through /proc/thread-self/fd, so
 * no name lookup), opened with oflags | O_CLOEXEC: locks of its own. Returns it, -ESTALE
 * if what opened is not that file, or -errno. */
SHMRING_HIDDEN int shmring__reopen_fd(int fd, int oflags);
/* Creating a channel in two steps, so that its name appears only once the creator has
 * attached with its role (a process that opens it by name at once finds the role taken,
 * rather than taking it from the creator, which then failed and removed the name from
 * under it): shmring__seg_make() is shmring_seg_create() without the naming; then
 * shmring__seg_name() gives the name (-EEXIST if a file took it meanwhile: the caller
 * closes what it made), or, after a failure, shmring__seg_unmake() takes back what
 * make did (the name, where /dev/shm refuses O_TMPFILE and it was made first). Either
 * ends the creator's turn (take_turn() in src/segment.c). */
struct shmring__naming {
	char n[SHMRING_NAME_MAX + 2];                         /* "/NAME"; "": anonymous */
	char path[sizeof("/dev/shm") + SHMRING_NAME_MAX + 1]; /* its /dev/shm path */
	struct shmring__lock_fd *guard;                       /* the creator's turn */
	int early_name;                                       /* the name was made first */
};
SHMRING_HIDDEN int shmring__seg_make(const char *name, const struct shmring_seg_params *p,
				     struct shmring_seg **out, struct shmring__naming *nm);
SHMRING_HIDDEN int shmring__seg_name(struct shmring_seg *s, struct shmring__naming *nm);
SHMRING_HIDDEN void shmring__seg_unmake(struct shmring__naming *nm);
/* A reopen's error that its callers' fallbacks are for: the file's mode denies the
 * second open, or there is no /proc. Anything else (EMFILE, ENFILE, ENOMEM...) is a
 * failure of the moment, returned, not worked around for the handle's whole life. */
static inline int shmring__reopen_refused(int err)
{
	return err == -EACCES || err == -EPERM || err == -EROFS || err == -ENOENT;
}

/* A descriptor through which one handle holds an OFD lock (a broadcast reader's). The
 * registry lists it and closes it in a forked child, as it does its own descriptors, so
 * that a child never keeps its parent's locks alive. */
struct shmring__lock_fd {
	int fd; /* -1 in a child after fork() */
	struct shmring__lock_fd *prev, *next;
};
/* Reopen fd read-only (shmring__reopen_fd) and list the result. Returns 0, -ENOMEM, or
 * the reopen's -errno (no /proc). */
SHMRING_HIDDEN int shmring__lock_fd_open(int fd, struct shmring__lock_fd **out);
/* Unlist, close (dropping its locks) and free. NULL is a no-op. */
SHMRING_HIDDEN void shmring__lock_fd_close(struct shmring__lock_fd *l);
/* A socket bound to the abstract address "\0" key, listed like a lock descriptor (a
 * forked child keeps no copy); closed with shmring__lock_fd_close(). -EADDRINUSE: the
 * address is held (by another process, most likely). */
SHMRING_HIDDEN int shmring__guard_open(const char *key, struct shmring__lock_fd **out);

/* Process start time (clock ticks after boot), 0 if unknown. */
SHMRING_HIDDEN uint64_t shmring__proc_start_time(pid_t pid);
SHMRING_HIDDEN uint64_t shmring__realtime_ns(void);
/* Bytes of memory a new segment may take: MemAvailable + SwapFree, and no more than the
 * room under this process's cgroup memory limits (src/memroom.c). UINT64_MAX: unknown. */
SHMRING_HIDDEN uint64_t shmring__mem_room(void);

#endif
