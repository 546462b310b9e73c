/* SPDX-License-Identifier: MIT */
/*
 * How much memory a new segment may take. A segment's pages are allocated at creation
 * (posix_fallocate, so that a full /dev/shm is -ENOSPC rather than SIGBUS at first
 * touch), and shared memory pages can only be swapped, never dropped: a segment larger
 * than what is available would fill memory page by page and wake the OOM killer, which
 * may kill any process on the machine, not just ours. A memfd's file system has no size
 * limit, and /dev/shm's is often larger than memory, so the file system alone does not
 * bound it. Everything here is read on the slow path of creation, and a value that
 * cannot be read bounds nothing.
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A number from a one-line file; "max" (cgroup v2's no limit) is UINT64_MAX. */
static int read_number(const char *path, uint64_t *v)
{
	char buf[64];
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char *line = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!line)
		return -1;
	if (strncmp(buf, "max", 3) == 0) {
		*v = UINT64_MAX;
		return 0;
	}
	char *end;
	unsigned long long n = strtoull(buf, &end, 10);
	if (end == buf)
		return -1;
	*v = n;
	return 0;
}

/* MemAvailable + SwapFree from /proc/meminfo, in bytes; UINT64_MAX if unknown. */
static uint64_t system_room(uint64_t *swap_free)
{
	char line[128];
	unsigned long long avail = 0, swap = 0;
	int have = 0;
	*swap_free = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemAvailable: %llu kB", &avail) == 1)
			have |= 1;
		else if (sscanf(line, "SwapFree: %llu kB", &swap) == 1)
			have |= 2;
	}
	fclose(f);
	if (!(have & 1) || avail > UINT64_MAX / 2048 || swap > UINT64_MAX / 2048)
		return UINT64_MAX;
	*swap_free = (uint64_t)swap * 1024;
	return (uint64_t)avail * 1024 + *swap_free;
}

static int read_in(const char *dir, const char *file, uint64_t *v)
{
	char path[PATH_MAX + 64];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, file);
	return n < 0 || (size_t)n >= sizeof(path) ? -1 : read_number(path, v);
}

/* Page cache the kernel may reclaim in the cgroup at dir (and below it): the file LRU
 * lists of memory.stat (v2: active_file, inactive_file; v1: their total_ forms, which
 * count the children as usage does). Shared memory is on the anonymous lists, so none
 * of a segment is in it. 0 if unknown. */
static uint64_t reclaimable(const char *dir, int v2)
{
	char path[PATH_MAX + 64], line[128];
	int n = snprintf(path, sizeof(path), "%s/memory.stat", dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	const char *active = v2 ? "active_file " : "total_active_file ";
	const char *inactive = v2 ? "inactive_file " : "total_inactive_file ";
	uint64_t sum = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *v = NULL;
		if (strncmp(line, active, strlen(active)) == 0)
			v = line + strlen(active);
		else if (strncmp(line, inactive, strlen(inactive)) == 0)
			v = line + strlen(inactive);
		if (v) {
			unsigned long long x = strtoull(v, NULL, 10);
			sum = x > UINT64_MAX - sum ? UINT64_MAX : sum + x;
		}
	}
	fclose(f);
	return sum;
}

/* The least room under a memory limit of the cgroup at dir and of each one above it up
 * to root (limits nest: a parent's counts its children's pages). v2: memory.max and
 * memory.current; v1: memory.limit_in_bytes and memory.usage_in_bytes (no limit reads
 * as a number near 2^63). Usage counts page cache, which the kernel reclaims before it
 * fails an allocation: a service that has read files sits near its limit with room to
 * spare, so that cache counts as room. */
static uint64_t cgroup_room_at(char *dir, size_t root_len, int v2)
{
	uint64_t room = UINT64_MAX;
	for (;;) {
		uint64_t max, cur;
		if (read_in(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &max) == 0 &&
		    max < (UINT64_C(1) << 62) &&
		    read_in(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &cur) == 0) {
			uint64_t cache = reclaimable(dir, v2);
			uint64_t used = cur > cache ? cur - cache : 0;
			uint64_t r = used < max ? max - used : 0;
			if (r < room)
				room = r;
		}
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < root_len)
			break;
		*slash = 0;
	}
	return room;
}

/* The room left under this process's cgroup memory limits (v2, else v1), in bytes;
 * UINT64_MAX if there is no limit or it cannot be read. */
static uint64_t cgroup_room(void)
{
	char line[PATH_MAX + 64], dir[PATH_MAX + 32];
	uint64_t room = UINT64_MAX;
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		/* "ID:CONTROLLERS:PATH": v2 is "0::PATH", v1 memory lists "memory" */
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2 || c2[1] != '/')
			continue;
		*c2 = 0;
		const char *ctl = c1 + 1, *cg = c2 + 1;
		int v2 = *ctl == 0;
		int v1 = 0;
		for (const char *p = ctl; *p && !v2;) {
			size_t n = strcspn(p, ",");
			v1 |= n == 6 && strncmp(p, "memory", 6) == 0;
			p += n + (p[n] == ',');
		}
		if (!v1 && !v2)
			continue;
		const char *mount = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
		size_t root_len = strlen(mount);
		/* a cgroup namespace shows paths from its own root, which is the mount's */
		int n = snprintf(dir, sizeof(dir), "%s%s", mount, strcmp(cg, "/") ? cg : "");
		if (n < 0 || (size_t)n >= sizeof(dir))
			continue;
		uint64_t r = cgroup_room_at(dir, root_len, v2);
		if (r < room)
			room = r;
	}
	fclose(f);
	return room;
}

uint64_t shmring__mem_room(void)
{
	uint64_t swap_free;
	uint64_t sys = system_room(&swap_free);
	uint64_t cg = cgroup_room();
	/* a cgroup's pages may go to swap too (its own swap limit is not read here) */
	if (cg != UINT64_MAX)
		cg = cg > UINT64_MAX - swap_free ? UINT64_MAX : cg + swap_free;
	return cg < sys ? cg : sys;
}
