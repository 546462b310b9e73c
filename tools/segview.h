/* SPDX-License-Identifier: MIT */
/*
 * A segment as shmdump sees it: the file mapped read-only, decoded and checked by the
 * library (shmring/dump.h), with the participants' liveness filled in.
 */
#ifndef SHMDUMP_SEGVIEW_H
#define SHMDUMP_SEGVIEW_H

#include "shmring/dump.h"
#include "shmring/segment.h"

#include <limits.h>
#include <stddef.h>

enum seg_state { SEG_OK, SEG_STALE, SEG_CORRUPT };

struct seg_view {
	char name[NAME_MAX + 1]; /* segment name (/dev/shm entry) or the path given */
	char path[PATH_MAX];
	int in_devshm;           /* found in /dev/shm: clean may unlink it by name */
	int fd;
	struct shmring_seg *seg; /* the library's read-only handle, for liveness */
	const uint8_t *map;      /* read-only mapping of the whole file (NULL if empty) */
	size_t len;
	int decode_rc;           /* shmring_dump_decode_buf(): 0 or -EPROTO */
	struct shmring_dump_info info;
	/* participants in the ACTIVE state, by liveness */
	unsigned prod_live, prod_dead, cons_live, cons_dead, live, dead;
	enum seg_state state;
};

/* Resolve arg (a name in /dev/shm, or a path: anything with a '/', or an existing file
 * when there is no such name), open, map and decode it. Returns 0, or -errno with a
 * message in why (the file could not be opened or mapped). A file that is not a
 * segment is opened fine: its decode_rc says so. */
int seg_view_open(struct seg_view *v, const char *arg, char *why, size_t why_len);
/* Open a /dev/shm entry by name. -ENOENT etc. as above. */
int seg_view_open_devshm(struct seg_view *v, const char *name, char *why, size_t why_len);
/* Decode again from the mapping (watch), keeping the file open. */
void seg_view_refresh(struct seg_view *v);
void seg_view_close(struct seg_view *v);

const char *seg_state_name(enum seg_state s);
/* The first bytes of a file say whether it is ours: 1 yes, 0 no (or unreadable). */
int seg_file_is_ours(int dirfd, const char *name);

#endif
