/* SPDX-License-Identifier: MIT */
/*
 * shmring/registry.h: the segments this process has open.
 *
 * Every segment opened in this process is entered in one registry: opening the same
 * segment twice (same file, same access mode) shares one mapping, counted by handle. The
 * registry is an RCU list (liburcu, bulletproof flavour: no thread registration needed),
 * so any thread may walk it without a lock while others open and close; a mapping is
 * unmapped only after a grace period, when no walker can still see it.
 *
 * Synchronisation table:
 *   shmring_registry_foreach  || foreach, seg_open, seg_close: yes (lock-free walk)
 *   seg_open / seg_close      || each other: yes (serialised by a mutex)
 *   seg_close inside a foreach callback: NO (it would wait for its own grace period)
 */
#ifndef SHMRING_REGISTRY_H
#define SHMRING_REGISTRY_H

#include "segment.h"

struct shmring_registry_info {
	const char *name;   /* "" for anonymous segments */
	uint64_t size;
	uint32_t kind;      /* as read from the header (statistics, not validated again) */
	unsigned refs;      /* handles sharing the mapping */
	int writable;
	uint64_t msgs, bytes;
};

/* Call cb for every open mapping of this process; stops early if cb returns non-zero
 * and returns that value. Never blocks. Returns 0 when every entry was visited.
 * A thread's first walk registers it with liburcu-bp, which allocates its reader
 * record then and aborts the process if it cannot (liburcu's behaviour, not an error
 * it returns): under a tight RLIMIT_AS, walk once early in each thread that will. */
SHMRING_API int shmring_registry_foreach(int (*cb)(const struct shmring_registry_info *info,
						   void *arg),
					 void *arg);
/* Number of distinct mappings open in this process (a counter: no walk). */
SHMRING_API unsigned shmring_registry_count(void);

#endif
