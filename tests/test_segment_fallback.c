/* SPDX-License-Identifier: MIT */
/* Segment creation on the paths this machine never takes by itself: /dev/shm refusing
 * O_TMPFILE (the name is made first), no /proc/thread-self (before Linux 3.17: linked
 * through /proc/self), no /proc at all (AT_EMPTY_PATH), and /proc/self naming another
 * thread's file; and a segment larger than memory. The program is linked against the static library with the linker's
 * --wrap, so the library's open64, linkat, access and posix_fallocate64 come here
 * first, and each test switches on only the refusal it is about. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmring/shmring.h"
#include "testutil.h"

int __real_open64(const char *path, int flags, ...);
int __real_linkat(int olddir, const char *oldpath, int newdir, const char *newpath, int flags);
int __real_access(const char *path, int mode);
int __real_posix_fallocate64(int fd, off_t off, off_t len);
int __real_fcntl64(int fd, int cmd, ...);

static struct {
	int no_tmpfile;      /* open(O_TMPFILE) fails with EOPNOTSUPP */
	int no_thread_self;  /* /proc/thread-self is missing */
	int no_proc;         /* /proc is missing altogether */
	int self_fd;         /* >= 0: /proc/self/fd/N names this descriptor instead */
	int fallocate_err;   /* posix_fallocate fails with this */
	int fallocate_eintr; /* posix_fallocate is interrupted this many times first */
	int fail_reopen_at;  /* > 0: the Nth open of a /proc/.../fd/ link fails (EMFILE) */
	int reopens;
	void (*after_link)(void); /* called once, right after a link(2) gave a name */
	int file_first;      /* a file is made under the name just before the link */
	/* called once, just before an F_OFD_SETLK on byte lock_byte or beyond (0: off) */
	void (*before_lock)(void);
	off_t lock_byte;
	int tmpfile_opens, self_links, empty_path_links, fallocates;
} fake = { .self_fd = -1 };

static void fake_reset(void)
{
	memset(&fake, 0, sizeof(fake));
	fake.self_fd = -1;
}

int __wrap_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (fake.fail_reopen_at > 0 && strncmp(path, "/proc/", 6) == 0 && strstr(path, "/fd/") &&
	    ++fake.reopens == fake.fail_reopen_at) {
		errno = EMFILE;
		return -1;
	}
	if ((flags & O_TMPFILE) == O_TMPFILE) {
		if (fake.no_tmpfile) {
			errno = EOPNOTSUPP;
			return -1;
		}
		fake.tmpfile_opens++;
	}
	return __real_open64(path, flags, mode);
}

static int under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

static int proc_missing(const char *path)
{
	return (fake.no_proc && under(path, "/proc")) ||
	       (fake.no_thread_self && under(path, "/proc/thread-self"));
}

int __wrap_linkat(int olddir, const char *oldpath, int newdir, const char *newpath, int flags);
int __wrap_linkat(int olddir, const char *oldpath, int newdir, const char *newpath, int flags)
{
	char other[64];
	if (proc_missing(oldpath)) {
		errno = ENOENT;
		return -1;
	}
	if (under(oldpath, "/proc/self")) {
		fake.self_links++;
		if (fake.self_fd >= 0) {
			snprintf(other, sizeof(other), "/proc/self/fd/%d", fake.self_fd);
			oldpath = other;
		}
	}
	if (flags & AT_EMPTY_PATH)
		fake.empty_path_links++;
	if (fake.file_first) {
		fake.file_first = 0;
		int fd = __real_open64(newpath, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	int rc = __real_linkat(olddir, oldpath, newdir, newpath, flags);
	void (*after)(void) = fake.after_link;
	fake.after_link = NULL;
	if (rc == 0 && after)
		after();
	return rc;
}

int __wrap_access(const char *path, int mode);
int __wrap_access(const char *path, int mode)
{
	if (proc_missing(path)) {
		errno = ENOENT;
		return -1;
	}
	return __real_access(path, mode);
}

int __wrap_fcntl64(int fd, int cmd, ...);
int __wrap_fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *); /* as glibc's own fcntl reads it, whatever cmd */
	va_end(ap);
	if (cmd == F_OFD_SETLK && fake.before_lock && ((struct flock *)arg)->l_start >= fake.lock_byte) {
		void (*hook)(void) = fake.before_lock;
		fake.before_lock = NULL;
		hook();
	}
	return __real_fcntl64(fd, cmd, arg);
}

int __wrap_posix_fallocate64(int fd, off_t off, off_t len);
int __wrap_posix_fallocate64(int fd, off_t off, off_t len)
{
	fake.fallocates++;
	/* never really allocate a size no test needs: should the library's bound fail,
	 * the test fails instead of filling the machine's memory */
	if (len > (off_t)1 << 30)
		return ENOSPC;
	if (fake.fallocate_err)
		return fake.fallocate_err;
	if (fake.fallocate_eintr > 0) { /* as older kernels' tmpfs at a pending signal,
					   * which undo what the call allocated */
		fake.fallocate_eintr--;
		return EINTR;
	}
	return __real_posix_fallocate64(fd, off, len);
}

static struct shmring_seg_params params(uint64_t data)
{
	struct shmring_seg_params p = { .kind = SHMRING_KIND_SPSC, .ctrl_size = 4096, .data_size = data };
	p.geo[0] = data;
	return p;
}

static int exists(const char *name)
{
	char path[128];
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	return __real_access(path, F_OK) == 0;
}

/* A complete segment under name: another handle opens it and sees what was made. */
static void assert_complete(const char *name, uint64_t data)
{
	struct shmring_seg *o;
	cr_assert_eq(shmring_seg_open(name, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), 0);
	cr_assert_eq(o->data_size, data);
	cr_assert_eq(o->creator_pid, getpid());
	cr_assert_str_eq(o->name, name);
	shmring_seg_close(o);
}

/* assert_complete(), then s closed and the name removed. */
static void complete_then_remove(struct shmring_seg *s, const char *name, uint64_t data)
{
	assert_complete(name, data);
	shmring_seg_close(s);
	cr_assert_eq(shmring_seg_unlink(name), 0);
}

/* While the control region is being initialised, the name either does not exist yet
 * (O_TMPFILE) or names a segment that openers are told to wait for (the fallback). */
struct midway { const char *name; int open_rc; int existed; };

static int look_midway(struct shmring_seg *s, void *arg)
{
	(void)s;
	struct midway *m = arg;
	struct shmring_seg *o = NULL;
	m->existed = exists(m->name);
	m->open_rc = shmring_seg_open(m->name, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o);
	if (m->open_rc == 0)
		shmring_seg_close(o);
	return 0;
}

static int fail_init(struct shmring_seg *s, void *arg)
{
	(void)s;
	(void)arg;
	return -EIO;
}

Test(fallback, the_usual_path_makes_an_unnamed_file_and_links_it_through_thread_self)
{
	char name[64];
	fake_reset();
	struct midway m = { .name = tu_name(name, sizeof(name), "fb-usual") };
	struct shmring_seg_params p = params(8192);
	p.init = look_midway;
	p.init_arg = &m;
	struct shmring_seg *s;
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0);
	cr_assert_eq(fake.tmpfile_opens, 1, "the wrapper sees the library's O_TMPFILE open");
	cr_assert_eq(fake.self_links + fake.empty_path_links, 0);
	cr_assert_not(m.existed, "no name while being made");
	cr_assert_eq(m.open_rc, -ENOENT);
	complete_then_remove(s, name, 8192);
}

Test(fallback, without_o_tmpfile_the_name_comes_first_and_openers_are_told_to_wait)
{
	char name[64];
	fake_reset();
	fake.no_tmpfile = 1;
	struct midway m = { .name = tu_name(name, sizeof(name), "fb-notmp") };
	struct shmring_seg_params p = params(8192);
	p.init = look_midway;
	p.init_arg = &m;
	struct shmring_seg *s, *s2;
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0);
	cr_assert_eq(fake.tmpfile_opens, 0);
	cr_assert(m.existed, "the name exists while the segment is being made");
	cr_assert_eq(m.open_rc, -EAGAIN, "an opener is told to come back: %d", m.open_rc);
	assert_complete(name, 8192);
	p.init = NULL;
	cr_assert_eq(shmring_seg_create(name, &p, &s2), -EEXIST);
	shmring_seg_close(s);
	cr_assert_eq(shmring_seg_unlink(name), 0);
}

Test(fallback, without_o_tmpfile_a_failed_create_removes_the_name)
{
	char name[64];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(8192);
	fake_reset();
	fake.no_tmpfile = 1;
	fake.fallocate_err = ENOSPC;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "fb-nospc"), &p, &s), -ENOSPC);
	cr_assert_eq(fake.fallocates, 1);
	cr_assert_not(exists(name), "no name left by a create that found no space");

	fake.fallocate_err = 0;
	p.init = fail_init;
	cr_assert_eq(shmring_seg_create(name, &p, &s), -EIO, "the init callback's error");
	cr_assert_not(exists(name), "no name left by a create whose init failed");

	p.init = NULL;
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0, "the name can be made afterwards");
	complete_then_remove(s, name, 8192);
}

Test(fallback, without_thread_self_the_file_is_linked_through_proc_self)
{
	char name[64];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(8192);
	fake_reset();
	fake.no_thread_self = 1;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "fb-self"), &p, &s), 0);
	cr_assert_eq(fake.self_links, 1);
	cr_assert_eq(fake.empty_path_links, 0);
	complete_then_remove(s, name, 8192);
}

/* /proc/self is the thread group leader's descriptor table: a thread that unshared its
 * own (CLONE_FILES) would link the leader's file of the same number. The library checks
 * that the name it made is its file, and takes it back if not. */
Test(fallback, proc_self_naming_another_file_is_caught_and_undone)
{
	char name[64], decoy_name[64], decoy_path[128];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(8192);
	snprintf(decoy_path, sizeof(decoy_path), "/dev/shm/%s",
		 tu_name(decoy_name, sizeof(decoy_name), "fb-decoy"));
	int decoy = __real_open64(decoy_path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_geq(decoy, 0);
	cr_assert_eq(write(decoy, "decoy", 5), 5);
	fake_reset();
	fake.no_thread_self = 1;
	fake.self_fd = decoy;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "fb-other"), &p, &s), -ESTALE);
	cr_assert_eq(fake.self_links, 1);
	cr_assert_not(exists(name), "the link to the other file is taken back");
	struct stat st;
	cr_assert_eq(fstat(decoy, &st), 0);
	cr_assert_eq(st.st_nlink, 1, "the other file keeps only its own name");
	cr_assert_eq(st.st_size, 5, "and its contents");

	fake.self_fd = -1;
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0, "the name can be made afterwards");
	shmring_seg_close(s);
	cr_assert_eq(shmring_seg_unlink(name), 0);
	close(decoy);
	unlink(decoy_path);
}

/* Without /proc, linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH: the create succeeds
 * exactly when that link would, and otherwise fails with the link's error, leaving
 * nothing behind. */
Test(fallback, without_proc_the_descriptor_itself_is_linked)
{
	char name[64], probe_path[128], probe_name[64];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(8192);
	snprintf(probe_path, sizeof(probe_path), "/dev/shm/%s",
		 tu_name(probe_name, sizeof(probe_name), "fb-probe"));
	int t = __real_open64("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_geq(t, 0);
	int may = __real_linkat(t, "", AT_FDCWD, probe_path, AT_EMPTY_PATH);
	int may_err = errno;
	close(t);
	if (may == 0)
		unlink(probe_path);

	fake_reset();
	fake.no_proc = 1;
	int rc = shmring_seg_create(tu_name(name, sizeof(name), "fb-noproc"), &p, &s);
	cr_assert_eq(fake.empty_path_links, 1);
	if (may == 0) {
		cr_assert_eq(rc, 0);
		complete_then_remove(s, name, 8192);
	} else {
		cr_assert_eq(rc, -may_err, "the link's own error: %d, %d", rc, -may_err);
		cr_assert_not(exists(name));
	}
}

/* A memfd's file system has no size limit, so nothing but the library's bound on
 * memory (available memory and free swap, within the cgroup's limit) stands between a
 * segment larger than memory and the OOM killer, which may kill any process on the
 * machine. It is refused before a page is allocated. */
Test(fallback, an_anonymous_segment_larger_than_memory_is_enospc_before_any_allocation)
{
	struct shmring_seg *s;
	struct shmring_seg_params p = params(UINT64_C(1) << 45); /* 32 TiB */
	fake_reset();
	cr_assert_eq(shmring_seg_create(NULL, &p, &s), -ENOSPC);
	cr_assert_eq(fake.fallocates, 0, "refused before posix_fallocate");
	cr_assert(strstr(shmring_last_error_detail(), "memory has room for"), "%s",
		  shmring_last_error_detail());
}

/* Older kernels stop a tmpfs fallocate at any pending signal (EINTR), even one whose
 * handler asked for restarts, and undo it: the create tries the part again rather than
 * failing with -EINTR, and allocates in parts, so that a periodic signal cannot keep a
 * large segment from ever being allocated; a part interrupted 100 times in a row is
 * -EINTR, not a loop for ever. */
Test(fallback, an_interrupted_allocation_goes_on)
{
	char name[64];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(1 << 20);
	fake_reset();
	fake.fallocate_eintr = 2;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "fb-eintr"), &p, &s), 0);
	cr_assert_eq(fake.fallocates, 3);
	complete_then_remove(s, name, 1 << 20);
	fake.fallocate_eintr = 1;
	cr_assert_eq(shmring_seg_create(NULL, &p, &s), 0, "anonymous alike");
	shmring_seg_close(s);

	struct shmring_seg_params big = params(64 << 20);
	fake_reset();
	cr_assert_eq(shmring_seg_create(NULL, &big, &s), 0);
	cr_assert_geq(fake.fallocates, 32, "in parts: %d calls for 64 MiB", fake.fallocates);
	shmring_seg_close(s);

	fake_reset();
	fake.fallocate_eintr = 1 << 30;
	cr_assert_eq(shmring_seg_create(name, &p, &s), -EINTR);
	cr_assert_eq(fake.fallocates, 100, "a bounded number of tries");
	cr_assert_not(exists(name), "nothing left behind");
}

/* A named create that fails after its segment was made removes the name again, and
 * reports why it failed: the removal used to clear the thread's error detail. Here a
 * broadcast channel created by a reader runs out of descriptors for its reader lock
 * (the second reopen of the file: the first is the registry's). */
Test(fallback, a_named_create_that_fails_late_keeps_its_detail)
{
	char name[64];
	struct shmring_bcast_opts o = { .slots = 4, .slot_size = 64 };
	struct shmring_bcast *r;
	fake_reset();
	fake.fail_reopen_at = 2;
	cr_assert_eq(shmring_bcast_create(tu_name(name, sizeof(name), "fb-late"), &o,
					  SHMRING_ROLE_READER, &r), -EMFILE);
	cr_assert_eq(fake.reopens, 2);
	cr_assert(strstr(shmring_last_error_detail(), "reader lock"), "detail: \"%s\"",
		  shmring_last_error_detail());
	cr_assert_not(exists(name), "the name is removed");
}

/* A channel's name appears only once its creator holds its role: a process that opens
 * it by name the moment it appears, as the same role, finds the role taken. It used to
 * get the role (the name came before the creator's join), and the creator then failed
 * with -EBUSY and removed the name from under it. Played here by opening from inside
 * link(2)'s wrapper, the instant the name exists. */
static char race_name[64];
static int race_rc, race_cons_rc, race_alive;

static void open_the_moment_it_is_named(void)
{
	struct shmring_spsc *s, *c;
	race_rc = shmring_spsc_open(race_name, SHMRING_ROLE_PRODUCER, &s);
	if (race_rc == 0)
		shmring_spsc_close(s);
	race_cons_rc = shmring_spsc_open(race_name, SHMRING_ROLE_CONSUMER, &c);
	if (race_cons_rc == 0) {
		race_alive = shmring_spsc_peer_alive(c);
		shmring_spsc_close(c);
	}
}

Test(fallback, a_channel_is_named_only_once_its_creator_holds_its_role)
{
	struct shmring_spsc_opts o = { .capacity = 4096 };
	struct shmring_spsc *p;
	fake_reset();
	fake.after_link = open_the_moment_it_is_named;
	int rc = shmring_spsc_create(tu_name(race_name, sizeof(race_name), "fb-race"), &o,
				     SHMRING_ROLE_PRODUCER, &p);
	cr_assert_eq(rc, 0, "the creator keeps its role: %d", rc);
	cr_assert_eq(race_rc, -EBUSY, "the producer role was the creator's when the name came: %d",
		     race_rc);
	cr_assert_eq(race_cons_rc, 0, "a consumer attaches at once");
	cr_assert_eq(race_alive, 1, "and finds the producer there");
	cr_assert(exists(race_name), "the name stays");
	shmring_spsc_close(p);
	cr_assert_eq(shmring_seg_unlink(race_name), 0);
}

/* A channel that loses its name to a file made meanwhile is given up whole: the creator
 * gets -EEXIST and no handle, nothing of it stays mapped, and the file under the name
 * is left alone. */
Test(fallback, a_channel_that_loses_its_name_is_given_up_whole)
{
	char name[64], path[128];
	struct shmring_mpmc_opts o = { .capacity = 8, .slot_size = 64 };
	struct shmring_mpmc *m = (void *)1;
	unsigned maps = shmring_registry_count();
	fake_reset();
	fake.file_first = 1;
	cr_assert_eq(shmring_mpmc_create(tu_name(name, sizeof(name), "fb-lost"), &o,
					 SHMRING_ROLE_PRODUCER, &m), -EEXIST);
	cr_assert_null(m, "no handle");
	cr_assert_eq(shmring_registry_count(), maps, "nothing left mapped");
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 0, "the other file, untouched");
	unlink(path);
}

/* Where the name comes first (no O_TMPFILE), the magic goes in only once the creator
 * holds its role, so that an opener that comes while the creator joins is told to come
 * back (-EAGAIN: a zero magic, see open_empty_file_is_not_ready_yet in test_segment.c).
 * It used to find the magic, take the producer role, and the creator then failed with
 * -EBUSY and removed the name from under it. The file is read directly at the moment
 * of the join: the library is not called from inside itself (its registry mutex is
 * held there). */
static int magic_at_join = -1;

static void look_at_the_magic(void)
{
	char path[128];
	uint64_t magic = 0;
	snprintf(path, sizeof(path), "/dev/shm/%s", race_name);
	int fd = __real_open64(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd >= 0) {
		magic_at_join = pread(fd, &magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
				magic == SHMRING_MAGIC;
		close(fd);
	}
}

Test(fallback, without_o_tmpfile_an_opener_cannot_take_the_creators_role)
{
	struct shmring_spsc_opts o = { .capacity = 4096 };
	struct shmring_spsc *p;
	fake_reset();
	fake.no_tmpfile = 1;
	fake.before_lock = look_at_the_magic;
	fake.lock_byte = SHMRING_PARTS_OFF; /* the creator's participant slot */
	cr_assert_eq(shmring_spsc_create(tu_name(race_name, sizeof(race_name), "fb-early"), &o,
					 SHMRING_ROLE_PRODUCER, &p), 0);
	cr_assert_eq(magic_at_join, 0, "no magic while the creator joins (%d)", magic_at_join);
	struct shmring_spsc *q;
	cr_assert_eq(shmring_spsc_open(race_name, SHMRING_ROLE_PRODUCER, &q), -EBUSY,
		     "afterwards, the role is the creator's");
	cr_assert(exists(race_name));
	shmring_spsc_close(p);
	cr_assert_eq(shmring_seg_unlink(race_name), 0);
}

/* A name removed between an opener's shm_open and its holder lock (shmdump clean of a
 * stale segment, which saw no holder) is not a successful open of a segment nobody can
 * find any more: the opener looks at the name again once it holds the lock. */
static void remove_the_name(void)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm/%s", race_name);
	unlink(path); /* not through the library: its registry mutex is held here */
}

Test(fallback, an_open_whose_name_was_removed_meanwhile_is_enoent)
{
	struct shmring_seg *s;
	struct shmring_seg_params p = params(8192);
	cr_assert_eq(shmring_seg_create(tu_name(race_name, sizeof(race_name), "fb-gone"), &p, &s), 0);
	shmring_seg_close(s); /* stale: nobody holds it */
	fake_reset();
	fake.before_lock = remove_the_name;
	fake.lock_byte = SHMRING_HOLDER_LOCK;
	int rc = shmring_seg_open(race_name, SHMRING_KIND_SPSC, 0, &s);
	cr_assert_eq(rc, -ENOENT, "%d", rc);
	cr_assert(strstr(shmring_last_error_detail(), "removed while it was being opened") ||
		  strstr(shmring_last_error_detail(), "No such file"), "%s",
		  shmring_last_error_detail());
	cr_assert_not(exists(race_name));
}
