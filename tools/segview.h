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
	/* name and path for text output: control bytes and malformed UTF-8 as '?' (a file
	 * name in /dev/shm is whatever bytes its maker chose) */
	char label[NAME_MAX + 1];
	char label_path[PATH_MAX];
	int in_devshm;           /* found in /dev/shm: clean may unlink it by name */
	int fd;
	struct shmring_seg *seg; /* the library's read-only handle, for liveness */
	const uint8_t *map;      /* read-only mapping of the whole file (NULL if empty) */
	size_t len;
	int decode_rc;           /* shmring_dump_decode_buf(): 0 or -EPROTO */
	struct shmring_dump_info info;
	/* participants in the ACTIVE state, by liveness; broadcast readers (not in the
	 * participant table) are counted as consumers, see below */
	unsigned prod_live, prod_dead, cons_live, cons_dead, live, dead;
	/* broadcast only: 1 some reader holds the reader lock (bcast.h), 0 none does, -1 not
	 * a broadcast segment or not known. readers_open is the reader page's count of open
	 * reader handles (crashed readers stay counted). With the lock held the live
	 * readers are readers_open, or at least 1 when that count is implausible
	 * (readers_at_least); with it free every counted reader is dead. */
	int readers_locked;
	uint64_t readers_open;
	int readers_at_least;
	int cons_exact;          /* 0: the consumer counts include broadcast readers, which
				  * come from the reader page's count (see above) */
	int held_open;           /* 1 some process holds the holder lock (layout.h: has the
				  * segment open through the library), 0 none, -1 unknown */
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
/* The first bytes of a file say whether it is ours: 1 yes, 0 no (not a regular file,
 * another program's file, or one seg_open_error_skips() says to pass over: gone
 * meanwhile, not ours to read...), or -errno when the look itself failed (out of
 * descriptors or memory, an I/O error): the caller's failure, to be reported, not a
 * verdict on the file. */
int seg_file_is_ours(int dirfd, const char *name);
/* 1 if opening a /dev/shm entry failed with errno err (positive or negative) because
 * of the entry (gone since the directory was read, not ours to read, not a file that
 * opens as one), so list and clean pass over it; 0 if the failure is ours (EMFILE,
 * ENFILE, ENOMEM, EIO...) and must be reported. */
int seg_open_error_skips(int err);

#endif
