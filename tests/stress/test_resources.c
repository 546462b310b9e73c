/* SPDX-License-Identifier: MIT */
/*
 * Resources and permissions.
 *  - A segment larger than /dev/shm fails at creation with -ENOSPC (the size needed in
 *    shmring_last_error_detail()), leaves nothing behind, and is never a SIGBUS later.
 *  - The same on a 1 MiB tmpfs mounted over /dev/shm in a private mount namespace
 *    (root only; skipped when the kernel or the container does not allow it): larger than
 *    the filesystem, larger than what is free, and a segment that fits can be written
 *    to its last byte.
 *  - Named segments are created 0600 whatever the umask, so another user cannot open
 *    them; a mode the caller chooses is exactly what the file gets, and another user
 *    can then open them as that mode allows (as uid/gid 65534, root only).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "shmring/bcast.h"
#include "shmring/pool.h"
#include "shmring/spsc.h"
#include "testutil.h"

#define NOBODY 65534

static int exists(const char *name)
{
	char p[128];
	if (shmring_seg_path(name, p, sizeof(p)) != 0)
		return 0;
	return access(p, F_OK) == 0;
}

static uint64_t pow2_above(uint64_t x)
{
	uint64_t p = 4096;
	while (p <= x)
		p <<= 1;
	return p;
}

/* ---- /dev/shm too small ---- */

Test(resources, enospc_larger_than_devshm)
{
	struct statvfs sv;
	cr_assert_eq(statvfs("/dev/shm", &sv), 0);
	uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize;
	if (total == 0 || total > (UINT64_C(1) << 39))
		cr_skip_test("/dev/shm has no usable size limit (%llu bytes)", (unsigned long long)total);
	char name[96];
	tu_name(name, sizeof(name), "enospc");
	struct shmring_spsc_opts o = { .capacity = pow2_above(total) };
	struct shmring_spsc *r;
	int rc = shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &r);
	cr_assert_eq(rc, -ENOSPC, "a %llu-byte ring on a %llu-byte /dev/shm: %d (%s)",
		     (unsigned long long)o.capacity, (unsigned long long)total, rc, shmring_strerror(rc));
	cr_expect(strstr(shmring_last_error_detail(), "bytes") != NULL, "detail: \"%s\"",
		  shmring_last_error_detail());
	cr_expect(!exists(name), "a failed creation left %s behind", name);
	/* a frame pool goes through the same path */
	struct shmring_pool_opts po = { .buf_size = UINT64_C(1) << 30,
					.nbufs = (uint32_t)(total >> 30) + 2, .max_subs = 1 };
	struct shmring_pool *p;
	tu_name(name, sizeof(name), "enospc-pool");
	rc = shmring_pool_create(name, &po, NULL, &p);
	cr_expect_eq(rc, -ENOSPC, "pool larger than /dev/shm: %d (%s)", rc, shmring_last_error_detail());
	cr_expect(!exists(name));
}

/* Runs in a child with a 1 MiB tmpfs on /dev/shm of its own. 0, 77 (cannot mount) or a
 * code saying which step failed. */
static int small_tmpfs(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWNS) != 0)
		return 77;
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return 77;
	if (mount("shmring-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777") != 0)
		return 77;
	char a[96], b[96], c[96];
	tu_name(a, sizeof(a), "tmpfs-a");
	tu_name(b, sizeof(b), "tmpfs-b");
	tu_name(c, sizeof(c), "tmpfs-c");
	struct shmring_spsc *r1, *r2, *r3;
	/* larger than the whole filesystem */
	struct shmring_spsc_opts big = { .capacity = 2u << 20 };
	if (shmring_spsc_create(a, &big, SHMRING_ROLE_PRODUCER, &r1) != -ENOSPC)
		return 10;
	if (exists(a))
		return 11;
	/* two that fit: 264 KiB and 520 KiB of the 1024 */
	struct shmring_spsc_opts o1 = { .capacity = 256u << 10 }, o2 = { .capacity = 512u << 10 };
	if (shmring_spsc_create(a, &o1, SHMRING_ROLE_PRODUCER, &r1) != 0)
		return 12;
	if (shmring_spsc_create(b, &o2, SHMRING_ROLE_PRODUCER, &r2) != 0)
		return 13;
	struct statvfs before, after;
	if (statvfs("/dev/shm", &before) != 0)
		return 14;
	/* smaller than the filesystem, larger than what is left: posix_fallocate gets part
	 * of the way, then -ENOSPC; the partial file must go, and its blocks with it */
	if (shmring_spsc_create(c, &o1, SHMRING_ROLE_PRODUCER, &r3) != -ENOSPC)
		return 15;
	if (exists(c))
		return 16;
	if (statvfs("/dev/shm", &after) != 0 || after.f_bfree != before.f_bfree)
		return 17;
	/* the ones created were allocated up front: filling them to the last byte is no
	 * SIGBUS (this child would die of it) */
	static uint8_t rec[8192];
	memset(rec, 0x5a, sizeof(rec));
	unsigned sent = 0;
	while (shmring_spsc_send(r2, rec, sizeof(rec), 0) == 0)
		sent++;
	if (sent < (512u << 10) / sizeof(rec) - 2)
		return 18;
	shmring_spsc_close(r1);
	shmring_spsc_close(r2);
	shmring_seg_unlink(a);
	shmring_seg_unlink(b);
	return 0;
}

Test(resources, enospc_small_tmpfs, .timeout = 60)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a tmpfs in a private namespace");
	int st = tu_wait(tu_fork(small_tmpfs, NULL));
	if (st == 77)
		cr_skip_test("mounting a tmpfs in a private mount namespace is not permitted here");
	cr_assert_eq(st, 0, "small tmpfs: step %d failed (see small_tmpfs()); negative: signal", st);
}

/* ---- permissions ---- */

struct as_nobody {
	const char *name;
	int (*fn)(const char *name);
};

static int drop_and_run(void *a)
{
	struct as_nobody *n = a;
	if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
		return 99;
	if (geteuid() != NOBODY)
		return 98;
	return n->fn(n->name);
}

/* Run fn(name) in a child as uid/gid 65534; its result. */
static int as_nobody(const char *name, int (*fn)(const char *name))
{
	struct as_nobody n = { name, fn };
	return tu_wait(tu_fork(drop_and_run, &n));
}

static int mode_of(const char *name)
{
	char p[128];
	struct stat st;
	if (shmring_seg_path(name, p, sizeof(p)) != 0 || stat(p, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static int nobody_cannot_open(const char *name)
{
	struct shmring_spsc *r;
	struct shmring_seg *s;
	if (shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &r) != -EACCES)
		return 1;
	if (shmring_seg_open(name, 0, SHMRING_O_RDONLY, &s) != -EACCES)
		return 2;
	return 0;
}

Test(resources, default_mode_is_0600)
{
	char name[96];
	tu_name(name, sizeof(name), "mode0600");
	mode_t old = umask(0); /* the mode must not depend on the umask */
	struct shmring_spsc *w;
	int rc = shmring_spsc_create(name, NULL, SHMRING_ROLE_PRODUCER, &w);
	umask(old);
	cr_assert_eq(rc, 0);
	cr_expect_eq(mode_of(name), 0600, "mode %o", mode_of(name));
	if (geteuid() == 0) {
		int st = as_nobody(name, nobody_cannot_open);
		cr_expect_eq(st, 0, "another user opened a 0600 segment (step %d)", st);
	}
	shmring_spsc_close(w);
	shmring_seg_unlink(name);
	if (geteuid() != 0)
		cr_skip_test("mode checked; the other-user part needs root");
}

static int nobody_reads_only(const char *name)
{
	struct shmring_spsc *r;
	struct shmring_seg *s;
	/* a consumer needs write access (it moves the head): refused */
	if (shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &r) != -EACCES)
		return 1;
	/* an inspector maps it read-only: allowed by 0644 */
	if (shmring_seg_open(name, SHMRING_KIND_SPSC, SHMRING_O_RDONLY, &s) != 0)
		return 2;
	shmring_seg_close(s);
	return 0;
}

static int nobody_consumes(const char *name)
{
	struct shmring_spsc *r;
	if (shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &r) != 0)
		return 1;
	char buf[16];
	int n = shmring_spsc_recv(r, buf, sizeof(buf), 2000);
	shmring_spsc_close(r);
	return n == 5 && memcmp(buf, "hello", 5) == 0 ? 0 : 2;
}

static int nobody_bcast_reader(const char *name)
{
	/* a broadcast reader maps read-only: 0644 lets another user read the records */
	struct shmring_bcast *b;
	if (shmring_bcast_open(name, SHMRING_ROLE_READER, SHMRING_BCAST_START_OLDEST, &b) != 0)
		return 1;
	char buf[16];
	struct shmring_bcast_rec rec;
	int n = shmring_bcast_read(b, buf, sizeof(buf), &rec);
	shmring_bcast_close(b);
	return n == 5 && memcmp(buf, "frame", 5) == 0 ? 0 : 2;
}

Test(resources, caller_chosen_mode, .timeout = 30)
{
	char n1[96], n2[96], n3[96];
	tu_name(n1, sizeof(n1), "mode0644");
	tu_name(n2, sizeof(n2), "mode0666");
	tu_name(n3, sizeof(n3), "mode0644b");
	mode_t old = umask(077); /* would strip group and other bits from a plain open */
	struct shmring_spsc_opts o1 = { .mode = 0644 }, o2 = { .mode = 0666 };
	struct shmring_spsc *w1, *w2;
	int rc1 = shmring_spsc_create(n1, &o1, SHMRING_ROLE_PRODUCER, &w1);
	int rc2 = shmring_spsc_create(n2, &o2, SHMRING_ROLE_PRODUCER, &w2);
	struct shmring_bcast_opts bo = { .slots = 4, .slot_size = 64, .mode = 0644 };
	struct shmring_bcast *bw;
	int rc3 = shmring_bcast_create(n3, &bo, SHMRING_ROLE_PRODUCER, &bw);
	umask(old);
	cr_assert(rc1 == 0 && rc2 == 0 && rc3 == 0, "create: %d %d %d", rc1, rc2, rc3);
	cr_expect_eq(mode_of(n1), 0644, "mode %o", mode_of(n1));
	cr_expect_eq(mode_of(n2), 0666, "mode %o", mode_of(n2));
	cr_expect_eq(mode_of(n3), 0644, "mode %o", mode_of(n3));
	/* a mode with bits beyond the permission bits is refused */
	struct shmring_spsc_opts bad = { .mode = 010000 };
	struct shmring_spsc *x;
	char n4[96];
	tu_name(n4, sizeof(n4), "modebad");
	cr_expect_eq(shmring_spsc_create(n4, &bad, SHMRING_ROLE_PRODUCER, &x), -EINVAL);
	cr_expect(!exists(n4));
	if (geteuid() == 0) {
		cr_expect_eq(shmring_spsc_send(w2, "hello", 5, 0), 0);
		cr_expect_eq(shmring_bcast_publish(bw, "frame", 5), 0);
		int st = as_nobody(n1, nobody_reads_only);
		cr_expect_eq(st, 0, "0644 as another user: step %d", st);
		st = as_nobody(n2, nobody_consumes);
		cr_expect_eq(st, 0, "0666 as another user: step %d", st);
		st = as_nobody(n3, nobody_bcast_reader);
		cr_expect_eq(st, 0, "0644 broadcast reader as another user: step %d", st);
	}
	shmring_spsc_close(w1);
	shmring_spsc_close(w2);
	shmring_bcast_close(bw);
	shmring_seg_unlink(n1);
	shmring_seg_unlink(n2);
	shmring_seg_unlink(n3);
	if (geteuid() != 0)
		cr_skip_test("modes checked; the other-user part needs root");
}
