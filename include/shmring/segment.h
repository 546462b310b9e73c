/* SPDX-License-Identifier: MIT */
/*
 * shmring/segment.h: shared-memory segments, the container every channel kind lives in.
 *
 * A segment is named (shm_open, visible as /dev/shm/NAME) or anonymous (memfd_create,
 * shared by passing its fd). Creation writes the header last and its magic last of all,
 * so a half-created segment is never taken for a valid one. Attach validates the header
 * once (magic, layout version, checksum, geometry against the file size), copies the
 * geometry into the process-local struct shmring_seg and never reads it from shared
 * memory again.
 *
 * Within one process, opening the same segment twice shares one mapping (refcounted,
 * see registry.h). A handle does not survive fork(): the child must open the segment
 * again (its inherited descriptors are closed in the child so that it cannot keep the
 * parent's participant locks alive). The one call a child may make on an inherited
 * handle is its kind's close, which frees the child's copy and changes nothing in the
 * segment: the parent's stream goes on.
 *
 * Errors (all functions): -EINVAL bad argument or name; -ENAMETOOLONG a name longer
 * than SHMRING_NAME_MAX bytes; -ENOENT no such segment;
 * -EEXIST create found one; -EACCES permission; -ENOSPC /dev/shm too small, or the
 * segment larger than memory can hold (available memory and free swap, within the
 * process's cgroup memory limit), refused before a page is allocated, so that a
 * segment too large never wakes the OOM killer (see shmring_last_error_detail() for
 * the size needed and the room there was); -EFBIG the segment is larger than the
 * process's file size limit (RLIMIT_FSIZE, `ulimit -f`), refused rather than let
 * SIGXFSZ kill the process; -EPROTO not a shmring segment, an
 * unknown layout version, a wrong kind or impossible geometry; -EBADMSG checksum
 * mismatch; -EAGAIN the segment is still being created (file still empty, or magic
 * not yet written: a file made by a creator that names it first, see create);
 * -ENOMEM; -EUSERS participant table full; -EBUSY slot held by a live participant;
 * other negative errnos from the system calls, unchanged.
 */
#ifndef SHMRING_SEGMENT_H
#define SHMRING_SEGMENT_H

#include "layout.h"

/* Process-local view of a segment: geometry copied and validated at attach. */
struct shmring_seg {
	uint8_t *base;       /* start of the mapping (the header) */
	uint64_t size;       /* mapped bytes (== total_size) */
	uint32_t kind;
	uint32_t flags;
	uint32_t max_parts;
	int writable;        /* mapped PROT_WRITE */
	uint64_t ctrl_off, ctrl_size;
	uint64_t data_off, data_size;
	uint64_t geo[SHMRING_GEO_WORDS];
	uint64_t created_ns;
	int32_t creator_pid;
	int fd;              /* shared by every handle on this segment in this process */
	char name[SHMRING_NAME_MAX + 1]; /* "" for anonymous segments */
	struct shmring__reg_entry *reg; /* private: the shared mapping's registry entry */
};

struct shmring_seg_params {
	uint32_t kind;        /* enum shmring_kind */
	uint32_t flags;       /* kind flags (bits 16-31); the library adds its own */
	uint32_t max_parts;   /* 0: SHMRING_MAX_PARTS */
	uint32_t mode;        /* permission bits for named segments (at most 0777,
			       * else -EINVAL), as given: no umask; 0: 0600 */
	uint64_t ctrl_size;   /* rounded up to a page */
	uint64_t data_size;   /* rounded up to a page */
	uint64_t geo[SHMRING_GEO_WORDS];
	/* Called on the new mapping before the magic is written (so before anyone can
	 * attach): initialise the control region. Returns 0 or a negative errno. */
	int (*init)(struct shmring_seg *seg, void *arg);
	void *init_arg;
};

/* Open flags. */
#define SHMRING_O_RDONLY (1u << 0)   /* map read-only (readers, inspectors) */
#define SHMRING_O_NOREGISTRY (1u << 1) /* private mapping, not shared in-process */

/* Create a segment. name: "NAME" or "/NAME" for a named segment (one path component,
 * no control byte, else -EINVAL; at most SHMRING_NAME_MAX bytes, else -ENAMETOOLONG),
 * NULL or "" for an anonymous memfd segment (sealed against shrinking and growing).
 * A named segment gets its name only once complete (made as an O_TMPFILE in /dev/shm,
 * then linked): nobody can open it half-made, and a creator killed halfway leaves
 * nothing behind. A name that exists already fails at once with -EEXIST, and so does
 * a name another process is creating (after up to 10 ms: a process forked meanwhile
 * holds a copy of the creator's turn for a moment): creators of one name take turns
 * (each holds an abstract Unix socket address made from the name while it creates,
 * gone with the process), so two do not each allocate a copy where /dev/shm holds one. link(2)
 * decides what taking turns cannot (a file put under the name by other means meanwhile,
 * creators in other network namespaces): the later one gets -EEXIST at its end. Where
 * /dev/shm refuses O_TMPFILE, the name is made first (shm_open O_EXCL) and openers see
 * -EAGAIN until the segment is complete. The channel kinds' create calls (spsc, mpmc,
 * pool, bcast) give the name only once the creator has attached with its role, so
 * that an opener of the same role the moment the name appears finds it taken (-EBUSY)
 * rather than taking it from the creator. */
SHMRING_API int shmring_seg_create(const char *name, const struct shmring_seg_params *p,
				   struct shmring_seg **out);
/* Open a named segment. kind 0 accepts any kind. */
SHMRING_API int shmring_seg_open(const char *name, uint32_t kind, unsigned flags,
				 struct shmring_seg **out);
/* Open by descriptor (a memfd received from another process, or any fd). The fd is
 * not consumed: the library reopens it through /proc/self/fd so that this process
 * gets an open file description (and participant locks) of its own. */
SHMRING_API int shmring_seg_open_fd(int fd, uint32_t kind, unsigned flags,
				    struct shmring_seg **out);
/* Open any file that holds a segment (a copy kept for a post-mortem). */
SHMRING_API int shmring_seg_open_path(const char *path, uint32_t kind, unsigned flags,
				      struct shmring_seg **out);
/* Drop this handle; the mapping goes when the last handle in the process does. */
SHMRING_API void shmring_seg_close(struct shmring_seg *seg);
/* Remove a named segment from /dev/shm (existing mappings stay valid). */
SHMRING_API int shmring_seg_unlink(const char *name);
/* Take the turn that creators of name take while they create (see create): while it
 * is held, a create of that name in any process fails with -EEXIST at once, so that a
 * tool can look at what is under the name and remove it without a new segment taking
 * the name in between (shmdump clean). Returns 0 and *turn (NULL where the system
 * has no abstract Unix sockets: creators do not take turns there either), -EEXIST if
 * a creator holds the turn now (after up to 10 ms), or another negative errno. Give it
 * back with shmring_seg_turn_give() (NULL: nothing). Not inherited across fork(). */
struct shmring_seg_turn;
SHMRING_API int shmring_seg_turn_take(const char *name, struct shmring_seg_turn **turn);
SHMRING_API void shmring_seg_turn_give(struct shmring_seg_turn *turn);

static inline struct shmring_hdr *shmring_seg_hdr(const struct shmring_seg *s)
{
	return (struct shmring_hdr *)(void *)s->base;
}
static inline void *shmring_seg_ctrl(const struct shmring_seg *s)
{
	return s->base + s->ctrl_off;
}
static inline void *shmring_seg_data(const struct shmring_seg *s)
{
	return s->base + s->data_off;
}

/*
 * Header validation, as a pure function over bytes (used by attach, shmdump and the
 * fuzzers). hdr: a private copy of at least the first 256 bytes of the file;
 * file_size: the file's size. On success fills *out's geometry fields (base, fd, reg
 * untouched) and returns 0; else a negative errno, with a sentence naming the field and
 * value in why (if non-NULL).
 */
SHMRING_API int shmring_hdr_validate(const void *hdr, size_t hdr_len, uint64_t file_size,
				     struct shmring_seg *out, char *why, size_t why_len);
/* XXH64 of the immutable header part, as stored in the checksum field. */
SHMRING_API uint64_t shmring_hdr_checksum(const void *hdr);

/* Name helpers: the /dev/shm path of a segment name. */
SHMRING_API int shmring_seg_path(const char *name, char *buf, size_t len);

/* ---- participants ---- */

struct shmring_part_info {
	uint32_t state;      /* enum shmring_part_state as read */
	uint32_t role;
	int32_t pid;
	uint32_t gen;
	uint64_t start_time;
	uint64_t joined_ns;
	uint64_t kind_data[4];
	int alive;           /* 1: lock held (or held by this process), 0: not */
	int mine;            /* held by this process */
};

/* Join as a participant. slot >= 0: take that slot (-EBUSY if a live participant holds
 * it); slot < 0: the first FREE or LEFT slot whose lock is free (-EUSERS if none).
 * Returns 0, or 1 when the slot was ACTIVE with a dead owner (the caller replaces a dead
 * participant and should reclaim what it left), or a negative errno. */
SHMRING_API int shmring_part_join(struct shmring_seg *seg, uint32_t role, int slot,
				  uint32_t *slot_out);
/* Leave: state LEFT, lock released. */
SHMRING_API void shmring_part_leave(struct shmring_seg *seg, uint32_t slot);
/* 1 if the slot's owner is alive (lock held, or held by this process), 0 if not;
 * -EINVAL for a bad slot. One fcntl(F_OFD_GETLK): a slow-path call. */
SHMRING_API int shmring_part_alive(const struct shmring_seg *seg, uint32_t slot);
/* Take the lock of a slot whose owner is dead, to reclaim what it left. 0: taken (the
 * caller now owns the slot and must shmring_part_leave() it when done), -EBUSY: alive
 * or someone else is reclaiming. */
SHMRING_API int shmring_part_take(struct shmring_seg *seg, uint32_t slot);
/* Snapshot one slot (each field read once). */
SHMRING_API int shmring_part_get(const struct shmring_seg *seg, uint32_t slot,
				 struct shmring_part_info *info);
/* The segment's participant-table summary: live and dead counts for a role (0: all). */
SHMRING_API int shmring_part_count(const struct shmring_seg *seg, uint32_t role,
				   unsigned *live, unsigned *dead);

#endif /* SHMRING_SEGMENT_H */
