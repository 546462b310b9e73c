/* SPDX-License-Identifier: MIT */
/* Segments: create and open errors, permissions, validation of corrupt headers,
 * participants and liveness across processes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring/shmring.h"
#include "testutil.h"

static struct shmring_seg_params params(uint64_t data)
{
	struct shmring_seg_params p = { .kind = SHMRING_KIND_SPSC, .ctrl_size = 4096, .data_size = data };
	p.geo[0] = data;
	return p;
}

Test(segment, create_open_close_named)
{
	char name[64], path[128];
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(65536);
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "seg"), &p, &s), 0);
	cr_assert_eq(shmring_seg_path(name, path, sizeof(path)), 0);
	cr_assert_eq(access(path, F_OK), 0, "appears in /dev/shm");
	cr_assert_eq(shmring_seg_open(name, SHMRING_KIND_SPSC, 0, &o), 0);
	cr_assert_eq(o->data_size, 65536);
	cr_assert_eq(o->geo[0], 65536);
	cr_assert_eq(o->kind, SHMRING_KIND_SPSC);
	cr_assert_eq(o->creator_pid, getpid());
	cr_assert_str_eq(o->name, name);
	cr_assert_eq(shmring_seg_open(name, SHMRING_KIND_MPMC, 0, &o), -EPROTO, "wrong kind");
	shmring_seg_close(o);
	shmring_seg_close(s);
	cr_assert_eq(shmring_seg_unlink(name), 0);
	cr_assert_eq(access(path, F_OK), -1);
}

Test(segment, create_errors)
{
	char name[64];
	struct shmring_seg *s, *t;
	struct shmring_seg_params p = params(4096);
	tu_name(name, sizeof(name), "exist");
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0);
	cr_assert_eq(shmring_seg_create(name, &p, &t), -EEXIST);
	shmring_seg_close(s);
	shmring_seg_unlink(name);
	cr_assert_eq(shmring_seg_open(name, 0, 0, &t), -ENOENT);
	cr_assert_eq(shmring_seg_create("a/b", &p, &t), -EINVAL);
	cr_assert_eq(shmring_seg_create("/", &p, &t), -EINVAL);
	/* control bytes: a name shows in listings and logs; other bytes (UTF-8) are fine */
	cr_assert_eq(shmring_seg_create("a\nb", &p, &t), -EINVAL);
	cr_assert_eq(shmring_seg_create("a\x1b[31m", &p, &t), -EINVAL);
	cr_assert_eq(shmring_seg_create("a\x7f", &p, &t), -EINVAL);
	char utf8[96];
	snprintf(utf8, sizeof(utf8), "%s-caf\xc3\xa9 au lait", name);
	cr_assert_eq(shmring_seg_create(utf8, &p, &t), 0);
	struct shmring_dump_info *di = calloc(1, sizeof(*di));
	cr_assert_eq(shmring_dump_decode_buf(t->base, (size_t)t->size, di), 0);
	for (uint32_t k = 0; k < di->nproblems && k < SHMRING_DUMP_PROBLEMS_MAX; k++)
		cr_assert_str_neq(di->problems[k].field, "name", "the dump calls such a name bad");
	free(di);
	shmring_seg_close(t);
	shmring_seg_unlink(utf8);
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_assert_eq(shmring_seg_create(longname, &p, &t), -ENAMETOOLONG);
	struct shmring_seg_params bad = p;
	bad.kind = 99;
	cr_assert_eq(shmring_seg_create(name, &bad, &t), -EINVAL);
}

Test(segment, enospc_when_larger_than_dev_shm_free_space)
{
	char name[64], path[128];
	struct statvfs sv;
	cr_assert_eq(statvfs("/dev/shm", &sv), 0);
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	struct shmring_seg_params p = params((avail + (UINT64_C(1) << 20)) & ~UINT64_C(4095));
	struct shmring_seg *s;
	tu_name(name, sizeof(name), "nospc");
	cr_assert_eq(shmring_seg_create(name, &p, &s), -ENOSPC);
	/* the size needed, in bytes: header page, control region (a page here), data */
	char want[64];
	snprintf(want, sizeof(want), "needs %llu bytes",
		 (unsigned long long)(SHMRING_HDR_SIZE + 4096 + p.data_size));
	cr_assert(strstr(shmring_last_error_detail(), want), "detail \"%s\" does not say \"%s\"",
		  shmring_last_error_detail(), want);
	shmring_seg_path(name, path, sizeof(path));
	cr_assert_eq(access(path, F_OK), -1, "nothing left behind");
}

/* A segment larger than the file size limit (ulimit -f) is -EFBIG: ftruncate would
 * raise SIGXFSZ, which kills the process by default (it did, with exit 153). */
static int create_over_fsize(void *arg)
{
	(void)arg;
	struct rlimit rl = { .rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY };
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
		return 10;
	char name[64], path[128];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4 << 20);
	if (shmring_seg_create(tu_name(name, sizeof(name), "fsize"), &p, &s) != -EFBIG)
		return 11;
	if (!strstr(shmring_last_error_detail(), "RLIMIT_FSIZE"))
		return 12;
	shmring_seg_path(name, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return 13;
	if (shmring_seg_create(NULL, &p, &s) != -EFBIG)
		return 14;
	p = params(512 << 10); /* within the limit */
	if (shmring_seg_create(NULL, &p, &s) != 0)
		return 15;
	shmring_seg_close(s);
	return 0;
}

Test(segment, a_segment_over_the_file_size_limit_is_efbig_not_sigxfsz)
{
	cr_assert_eq(tu_wait(tu_fork(create_over_fsize, NULL)), 0);
}

Test(segment, mode_0600_by_default_and_caller_mode_kept)
{
	char name[64], path[128];
	struct shmring_seg *s;
	struct stat st;
	struct shmring_seg_params p = params(4096);
	mode_t old = umask(0);
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "mode"), &p, &s), 0);
	umask(old);
	cr_assert_eq(fstat(s->fd, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	shmring_seg_close(s);
	shmring_seg_unlink(name);
	p.mode = 0640;
	old = umask(077); /* the umask does not narrow an explicit mode */
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "mode"), &p, &s), 0);
	umask(old);
	shmring_seg_path(name, path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	shmring_seg_close(s);
	shmring_seg_unlink(name);
}

Test(segment, memfd_is_sealed_and_opens_by_fd)
{
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(8192);
	cr_assert_eq(shmring_seg_create(NULL, &p, &s), 0);
	cr_assert(s->flags & SHMRING_SEG_F_MEMFD);
	int seals = fcntl(s->fd, F_GET_SEALS);
	cr_assert(seals & F_SEAL_SHRINK);
	cr_assert_neq(ftruncate(s->fd, 4096), 0, "cannot shrink a sealed memfd");
	cr_assert_eq(shmring_seg_open_fd(s->fd, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), 0);
	cr_assert_neq(o->base, s->base);
	cr_assert_eq(o->data_size, 8192);
	shmring_seg_close(o);
	shmring_seg_close(s);
}

/* A memfd (a file without a name) reaches us only by descriptor, often from a peer we
 * may not trust: one that is not sealed against shrinking could be truncated under our
 * mapping (SIGBUS on the next access), so it is refused. Ours are sealed. */
Test(segment, unsealed_memfd_is_refused)
{
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(8192);
	cr_assert_eq(shmring_seg_create(NULL, &p, &s), 0);
	int fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)s->size), 0);
	cr_assert_eq(pwrite(fd, s->base, (size_t)s->size, 0), (ssize_t)s->size, "a byte copy");
	cr_assert_eq(shmring_seg_open_fd(fd, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), -EPROTO);
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0);
	cr_assert_eq(shmring_seg_open_fd(fd, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), -EPROTO,
		     "sealed, but not against shrinking");
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	cr_assert_eq(shmring_seg_open_fd(fd, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), 0);
	shmring_seg_close(o);
	close(fd);
	shmring_seg_close(s);
}

/* The holder lock (layout.h) is held from before the magic goes in: an inspector that
 * looks at a segment being created (no participant yet) sees it in use. The init
 * callback runs before the magic, before the segment has its name, and looks through a
 * description of its own (the descriptor's /proc link). */
struct holder_probe {
	int seen;     /* the holder lock was held */
	int unnamed;  /* the name did not exist yet */
};

static int holder_seen(struct shmring_seg *s, void *arg)
{
	char path[128];
	struct holder_probe *hp = arg;
	snprintf(path, sizeof(path), "/dev/shm/%s", s->name);
	hp->unnamed = access(path, F_OK) != 0 && errno == ENOENT;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = SHMRING_HOLDER_LOCK, .l_len = 1 };
	hp->seen = fd >= 0 && fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	if (fd >= 0)
		close(fd);
	return 0;
}

static int holder_locked(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = SHMRING_HOLDER_LOCK, .l_len = 1 };
	cr_assert_eq(fcntl(fd, F_OFD_GETLK, &fl), 0);
	close(fd);
	return fl.l_type != F_UNLCK;
}

Test(segment, the_holder_lock_is_held_from_before_the_magic_until_the_last_close)
{
	char name[64];
	struct holder_probe hp = { 0, 0 };
	struct shmring_seg *s, *o, *q;
	struct shmring_seg_params p = params(4096);
	p.init = holder_seen;
	p.init_arg = &hp;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "holder"), &p, &s), 0);
	cr_assert(hp.seen, "not held while the segment was being created");
	cr_assert(hp.unnamed, "the name existed before the segment was complete");
	cr_assert_eq(shmring_seg_open(name, 0, 0, &o), 0);
	cr_assert_eq(shmring_seg_open(name, 0, SHMRING_O_NOREGISTRY | SHMRING_O_RDONLY, &q), 0);
	shmring_seg_close(s);
	cr_assert(holder_locked(name), "held while a handle is open");
	shmring_seg_close(o);
	cr_assert_not(holder_locked(name), "an inspector's handle (no registry) holds nothing");
	shmring_seg_close(q);
	shmring_seg_unlink(name);
}

/* A creator stopped inside its init callback: it says so on a pipe, then waits for
 * the other pipe (or for its SIGKILL). */
struct stalled_creator {
	int said[2], go[2];
	const char *name;
};

static int stall_in_init(struct shmring_seg *s, void *arg)
{
	(void)s;
	struct stalled_creator *c = arg;
	char b = 1;
	if (write(c->said[1], &b, 1) != 1 || read(c->go[0], &b, 1) != 1)
		return -EIO;
	return 0;
}

static pid_t start_stalled_creator(struct stalled_creator *c)
{
	cr_assert_eq(pipe(c->said), 0);
	cr_assert_eq(pipe(c->go), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* a test that fails before it lets us go must not leave us waiting */
		close(c->go[1]);
		close(c->said[0]);
		struct shmring_seg *s;
		struct shmring_seg_params p = params(1 << 20);
		p.init = stall_in_init;
		p.init_arg = c;
		int rc = shmring_seg_create(c->name, &p, &s);
		_exit(rc == 0 ? 0 : rc == -EEXIST ? 17 : 1);
	}
	char b;
	cr_assert_eq(read(c->said[0], &b, 1), 1, "the creator reached its init");
	return pid;
}

/* A creator killed halfway (here inside init, after the file was sized) leaves no name
 * behind: the name would be a file that is no segment, invisible to shmdump, refusing
 * the next create with -EEXIST. */
Test(segment, a_creator_killed_while_creating_leaves_no_name, .timeout = 30)
{
	char name[64], path[128];
	struct stalled_creator c = { .name = tu_name(name, sizeof(name), "killedcreate") };
	pid_t pid = start_stalled_creator(&c);
	shmring_seg_path(name, path, sizeof(path));
	cr_assert_eq(access(path, F_OK), -1, "no name while the segment is being made");
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st));
	cr_assert_eq(access(path, F_OK), -1, "nothing left behind");
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0, "the name can be made again");
	shmring_seg_close(s);
	shmring_seg_unlink(name);
}

/* shmring_seg_turn_take() holds a name's creators' turn: a create of it fails with
 * -EEXIST at once, in any process, until the turn is given back; a second taker is
 * refused too. */
static int create_named(void *arg)
{
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	int rc = shmring_seg_create(arg, &p, &s);
	if (rc == 0)
		shmring_seg_close(s);
	return rc == 0 ? 0 : rc == -EEXIST ? 1 : 2;
}

/* With no descriptor to spare, the turn is an error (-EMFILE), not "no turns here" */
static int turn_without_descriptors(void *arg)
{
	if (tu_spare_fds(0, NULL) != 0)
		return 12;
	struct shmring_seg_turn *t = (void *)1;
	int rc = shmring_seg_turn_take(arg, &t);
	return rc == -EMFILE && t == NULL ? 0 : 13;
}

Test(segment, a_turn_taken_by_a_tool_keeps_creators_out_until_given_back, .timeout = 30)
{
	char name[64], path[128];
	struct shmring_seg_turn *t, *t2;
	cr_assert_eq(shmring_seg_turn_take(tu_name(name, sizeof(name), "turn"), &t), 0);
	cr_assert_not_null(t);
	cr_assert_eq(tu_wait(tu_fork(create_named, name)), 1, "another process: -EEXIST");
	cr_assert_eq(create_named(name), 1, "this process too");
	cr_assert_eq(shmring_seg_turn_take(name, &t2), -EEXIST, "one turn at a time");
	shmring_seg_path(name, path, sizeof(path));
	cr_assert_neq(access(path, F_OK), 0, "nothing was made");
	shmring_seg_turn_give(t);
	cr_assert_eq(tu_wait(tu_fork(create_named, name)), 0, "given back: the create goes through");
	shmring_seg_unlink(name);
	shmring_seg_turn_give(NULL);
	cr_assert_eq(tu_wait(tu_fork(turn_without_descriptors, name)), 0);
}

/* Creators of one name take turns: one that comes while another is creating gets
 * -EEXIST at once (it used to, when the name was made first), rather than allocating a
 * second copy where /dev/shm may hold only one (then both failed with -ENOSPC). */
Test(segment, a_second_creator_of_a_name_being_created_gets_eexist_at_once, .timeout = 30)
{
	char name[64];
	struct stalled_creator c = { .name = tu_name(name, sizeof(name), "turns") };
	pid_t pid = start_stalled_creator(&c);
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(name, &p, &s), -EEXIST);
	cr_assert(strstr(shmring_last_error_detail(), "being created"), "detail: %s",
		  shmring_last_error_detail());
	char b = 1;
	cr_assert_eq(write(c.go[1], &b, 1), 1);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the first creator got the name (status %d)", st);
	cr_assert_eq(shmring_seg_open(name, SHMRING_KIND_SPSC, 0, &o), 0);
	cr_assert_eq(o->creator_pid, pid);
	shmring_seg_close(o);
	shmring_seg_unlink(name);
	cr_assert_eq(shmring_seg_create(name, &p, &s), 0, "its turn ended with it");
	shmring_seg_close(s);
	shmring_seg_unlink(name);
}

/* A child forked while its parent creates does not hold the parent's turn: once the
 * parent is done, the name can be created again while the child lives. (The child
 * holds a copy of the descriptor from fork() until its fork handler closes it: the
 * test waits for the child to run.) */
struct fork_in_init {
	int hold[2], ran[2];
	pid_t child;
};

static int fork_during_init(struct shmring_seg *s, void *arg)
{
	(void)s;
	struct fork_in_init *f = arg;
	f->child = fork();
	if (f->child == 0) {
		char b = 1;
		close(f->hold[1]);
		if (write(f->ran[1], &b, 1) != 1)
			_exit(1);
		_exit(read(f->hold[0], &b, 1) < 0);
	}
	return f->child > 0 ? 0 : -errno;
}

Test(segment, a_child_forked_during_a_create_does_not_hold_the_turn, .timeout = 30)
{
	char name[64];
	struct fork_in_init f;
	cr_assert_eq(pipe(f.hold), 0);
	cr_assert_eq(pipe(f.ran), 0);
	struct shmring_seg *s, *t;
	struct shmring_seg_params p = params(4096);
	p.init = fork_during_init;
	p.init_arg = &f;
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "forkturn"), &p, &s), 0);
	close(f.hold[0]);
	char b;
	cr_assert_eq(read(f.ran[0], &b, 1), 1, "the child ran");
	shmring_seg_close(s);
	shmring_seg_unlink(name);
	struct shmring_seg_params q = params(4096);
	cr_assert_eq(shmring_seg_create(name, &q, &t), 0, "%s", shmring_last_error_detail());
	shmring_seg_close(t);
	shmring_seg_unlink(name);
	close(f.hold[1]); /* the child ends */
	int st;
	cr_assert_eq(waitpid(f.child, &st, 0), f.child);
}

/* The name is decided by link(2): a file put under the name meanwhile by other means
 * (no turn taken) wins, the creator gets -EEXIST at its end and leaves that file as
 * it was. */
Test(segment, a_file_made_under_the_name_meanwhile_wins_over_the_creator, .timeout = 30)
{
	char name[64], path[128];
	struct stalled_creator c = { .name = tu_name(name, sizeof(name), "linkrace") };
	pid_t pid = start_stalled_creator(&c);
	shmring_seg_path(name, path, sizeof(path));
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "other", 5), 5);
	close(fd);
	char b = 1;
	cr_assert_eq(write(c.go[1], &b, 1), 1);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 17, "the creator got -EEXIST (status %d)", st);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_size, 5, "the other file is as it was");
	unlink(path);
}

/* A named segment whose name went (its users unlink it once everyone is in) is still the
 * segment a caller reached by name or path, unsealed as named segments are; handed over
 * as a bare descriptor it is as anonymous as a memfd, and refused unsealed. The path
 * here is the descriptor's /proc link: the same file, reached through a path. */
Test(segment, an_unlinked_named_segment_opens_by_path_not_by_bare_descriptor)
{
	char name[64], path[96], link[64];
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "gone"), &p, &s), 0);
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(shmring_seg_unlink(name), 0);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	int rc = shmring_seg_open_path(link, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o);
	cr_assert_eq(rc, 0, "by path: %s (%s)", shmring_strerror(rc), shmring_last_error_detail());
	shmring_seg_close(o);
	cr_assert_eq(shmring_seg_open_fd(fd, SHMRING_KIND_SPSC, SHMRING_O_NOREGISTRY, &o), -EPROTO,
		     "a bare descriptor of an unsealed file without a name");
	close(fd);
	shmring_seg_close(s);
}

/* Anyone who may write to /dev/shm can put a FIFO where a segment's name is expected; a
 * read-only open (a broadcast reader, an inspector) must refuse it, not block forever
 * waiting for a writer. The same through open_path and open_fd. */
Test(segment, fifo_in_place_of_a_segment_is_refused_without_blocking, .timeout = 30)
{
	char name[64], path[96];
	tu_name(name, sizeof(name), "fifo");
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	cr_assert_eq(mkfifo(path, 0600), 0);
	struct shmring_seg *o;
	for (int ro = 0; ro < 2; ro++) {
		unsigned fl = SHMRING_O_NOREGISTRY | (ro ? SHMRING_O_RDONLY : 0);
		cr_assert_eq(shmring_seg_open(name, 0, fl, &o), -EPROTO, "by name, ro %d", ro);
		cr_assert_eq(shmring_seg_open_path(path, 0, fl, &o), -EPROTO, "by path, ro %d", ro);
	}
	/* a descriptor of the FIFO (both ends, so that this open does not block either) */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	for (int ro = 0; ro < 2; ro++)
		cr_assert_eq(shmring_seg_open_fd(fd, 0, SHMRING_O_NOREGISTRY | (ro ? SHMRING_O_RDONLY : 0),
						 &o), -EPROTO, "by fd, ro %d", ro);
	close(fd);
	unlink(path);
}

/* Write bytes at off into the segment file, then try to open it. */
static int open_corrupted(size_t off, const void *bytes, size_t n, int fix_checksum)
{
	char name[64];
	struct shmring_seg *s, *o;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "corrupt"), &p, &s), 0);
	cr_assert_eq(pwrite(s->fd, bytes, n, (off_t)off), (ssize_t)n);
	if (fix_checksum) {
		uint8_t h[256];
		cr_assert_eq(pread(s->fd, h, sizeof(h), 0), 256);
		uint64_t sum = shmring_hdr_checksum(h);
		cr_assert_eq(pwrite(s->fd, &sum, 8, SHMRING_CHECKSUM_OFF), 8);
	}
	int rc = shmring_seg_open(name, 0, SHMRING_O_NOREGISTRY, &o);
	if (rc == 0)
		shmring_seg_close(o);
	shmring_seg_close(s);
	shmring_seg_unlink(name);
	return rc;
}

/* Between the creator's shm_open(O_CREAT) and its sizing the file, the name exists with
 * nothing in it: an opener is told "not yet" (as for a zero magic), not "corrupt". A
 * short file with bytes in it is corrupt. */
/* A directory, a socket or a symbolic link under a segment's name is not a segment:
 * -EPROTO, as for a FIFO (shm_open's own errors for them were EINVAL, ENXIO and ELOOP,
 * and a read-only open of a directory gave -EPROTO: the answer depended on the mode). */
Test(segment, a_directory_socket_or_symlink_in_place_of_a_segment_is_eproto)
{
	char name[64], path[96], target[128], tname[64];
	struct shmring_seg *o, *s;
	for (int what = 0; what < 3; what++) {
		tu_name(name, sizeof(name), "notreg");
		snprintf(path, sizeof(path), "/dev/shm/%s", name);
		int sock = -1;
		if (what == 0) {
			cr_assert_eq(mkdir(path, 0700), 0);
		} else if (what == 1) {
			sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			struct sockaddr_un a = { .sun_family = AF_UNIX };
			snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
			cr_assert_eq(bind(sock, (struct sockaddr *)&a, sizeof(a)), 0);
		} else { /* a link to a real segment: shm_open does not follow it */
			struct shmring_seg_params p = params(4096);
			cr_assert_eq(shmring_seg_create(tu_name(tname, sizeof(tname), "target"), &p, &s), 0);
			snprintf(target, sizeof(target), "/dev/shm/%s", tname);
			cr_assert_eq(symlink(target, path), 0);
		}
		for (int ro = 0; ro < 2; ro++) {
			unsigned fl = SHMRING_O_NOREGISTRY | (ro ? SHMRING_O_RDONLY : 0);
			int rc = shmring_seg_open(name, 0, fl, &o);
			cr_assert_eq(rc, -EPROTO, "kind %d, ro %d: %d", what, ro, rc);
			cr_assert(strstr(shmring_last_error_detail(), "not a regular file"), "%s",
				  shmring_last_error_detail());
		}
		if (what == 0) {
			rmdir(path);
		} else {
			unlink(path);
			if (what == 1)
				close(sock);
			else {
				shmring_seg_close(s);
				shmring_seg_unlink(tname);
			}
		}
	}
}

Test(segment, open_empty_file_is_not_ready_yet)
{
	char name[64];
	tu_name(name, sizeof(name), "empty");
	char path[96];
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	struct shmring_seg *o;
	cr_assert_eq(shmring_seg_open(name, 0, SHMRING_O_NOREGISTRY, &o), -EAGAIN);
	cr_assert_eq(write(fd, "x", 1), 1);
	cr_assert_eq(shmring_seg_open(name, 0, SHMRING_O_NOREGISTRY, &o), -EPROTO, "1 byte");
	close(fd);
	shmring_seg_unlink(name);
}

Test(segment, open_rejects_corrupt_headers)
{
	uint64_t v64 = 0x1234;
	uint32_t v32 = 2;
	cr_assert_eq(open_corrupted(0, &v64, 8, 0), -EPROTO, "bad magic");
	v64 = 0;
	cr_assert_eq(open_corrupted(0, &v64, 8, 0), -EAGAIN, "magic not yet written");
	cr_assert_eq(open_corrupted(8, &v32, 4, 1), -EPROTO, "unknown layout version");
	v32 = 0x40;
	cr_assert_eq(open_corrupted(16, &v32, 4, 0), -EBADMSG, "checksum");
	v64 = UINT64_C(1) << 40;
	cr_assert_eq(open_corrupted(24, &v64, 8, 1), -EPROTO, "total_size larger than the file");
	v64 = UINT64_C(1) << 30;
	cr_assert_eq(open_corrupted(80, &v64, 8, 1), -EPROTO, "data region past the end");
	v64 = 100;
	cr_assert_eq(open_corrupted(56, &v64, 8, 1), -EPROTO, "ctrl region misaligned");
	v32 = 1000;
	cr_assert_eq(open_corrupted(44, &v32, 4, 1), -EPROTO, "max_parts");
	v32 = 9;
	cr_assert_eq(open_corrupted(12, &v32, 4, 1), -EPROTO, "unknown kind");
}

Test(segment, validate_never_crashes_on_garbage)
{
	uint8_t buf[256];
	uint64_t rng = 7;
	for (int i = 0; i < 100000; i++) {
		tu_fill(buf, sizeof(buf), tu_rand(&rng));
		if (i & 1) { /* half with a valid magic, checksum fixed: reach the geometry checks */
			uint64_t m = SHMRING_MAGIC;
			uint32_t v = SHMRING_LAYOUT_VERSION;
			memcpy(buf, &m, 8);
			memcpy(buf + 8, &v, 4);
			uint64_t sum = shmring_hdr_checksum(buf);
			memcpy(buf + SHMRING_CHECKSUM_OFF, &sum, 8);
		}
		struct shmring_seg out;
		char why[200];
		int rc = shmring_hdr_validate(buf, sizeof(buf), tu_rand(&rng) >> (tu_rand(&rng) % 64), &out,
					      why, sizeof(why));
		cr_assert(rc == 0 || rc == -EPROTO || rc == -EBADMSG || rc == -EAGAIN);
		if (rc)
			cr_assert_neq(why[0], 0, "a reason is given");
	}
	cr_assert_eq(shmring_hdr_validate(buf, 10, 4096, NULL, NULL, 0), -EPROTO);
}

/* ---- participants ---- */

struct part_cfg {
	char name[64];
	struct tu_gate joined, done;
	int slot;
};

static int joiner(void *a)
{
	struct part_cfg *c = a;
	struct shmring_seg *s;
	uint32_t slot;
	if (shmring_seg_open(c->name, 0, 0, &s))
		return 10;
	if (shmring_part_join(s, SHMRING_ROLE_CONSUMER, c->slot, &slot) < 0)
		return 11;
	tu_gate_open(&c->joined);
	tu_gate_wait(&c->done);
	return 0; /* exits while still joined: the lock goes with the process */
}

/* A participant that forked a child (which never touches the handle: it execs later,
 * or does other work) and then died is dead at once: the child inherited the mapping,
 * and an OFD lock taken through the description that mapping holds would live as long
 * as the child does. The child here waits on a pipe the test holds. */
struct forker_cfg {
	char name[64];
	struct tu_gate joined;
	int hold[2]; /* the grandchild blocks reading hold[0] until the test closes hold[1] */
	_Atomic int grandchild;
};

/* Join slot 3 of s, fork the idle grandchild, say so, wait to be killed. */
static int join_fork_and_wait(struct forker_cfg *c, struct shmring_seg *s)
{
	uint32_t slot;
	if (shmring_part_join(s, SHMRING_ROLE_CONSUMER, 3, &slot) < 0)
		return 11;
	pid_t g = tu_fork_idle_child(c->hold);
	if (g < 0)
		return 12;
	c->grandchild = g;
	tu_gate_open(&c->joined);
	for (;;)
		pause(); /* killed by the test */
}

static int forking_joiner(void *a)
{
	struct forker_cfg *c = a;
	struct shmring_seg *s;
	if (shmring_seg_open(c->name, 0, 0, &s))
		return 10;
	return join_fork_and_wait(c, s);
}

/* Kill the joiner pid (slot 3 of s, seen alive first): dead at once, though its child
 * lives on. Then let the grandchild go and clean up. */
static void kill_joiner_and_check(struct forker_cfg *c, pid_t pid, struct shmring_seg *s)
{
	cr_assert_eq(shmring_part_alive(s, 3), 1);
	kill(pid, SIGKILL);
	cr_assert_eq(tu_wait(pid), -SIGKILL);
	cr_assert_eq(kill(c->grandchild, 0), 0, "the grandchild is still running");
	cr_assert_eq(shmring_part_alive(s, 3), 0, "dead, though its child lives on");
	close(c->hold[1]);
	close(c->hold[0]);
	tu_gate_close(&c->joined);
	shmring_seg_close(s);
	shmring_seg_unlink(c->name);
	munmap(c, sizeof(*c));
}

Test(segment, a_forked_child_does_not_keep_a_dead_participant_alive, .timeout = 60)
{
	struct forker_cfg *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c, MAP_FAILED);
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(tu_name(c->name, sizeof(c->name), "forkpart"), &p, &s), 0);
	tu_gate_init(&c->joined);
	cr_assert_eq(pipe(c->hold), 0);
	pid_t pid = tu_fork(forking_joiner, c);
	tu_gate_wait(&c->joined);
	kill_joiner_and_check(c, pid, s);
}

/* The same with a creator whose segment's mode denies its owner write (0400: others
 * read, nobody attaches after it): the library's second description for the locks must
 * still be its own, not the mapped one. Root ignores modes, so the creator runs as
 * nobody when the test runs as root. */
static int forking_creator(void *a)
{
	struct forker_cfg *c = a;
	struct shmring_seg *s;
	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 9;
	struct shmring_seg_params p = params(4096);
	p.mode = 0400;
	if (shmring_seg_create(c->name, &p, &s))
		return 10;
	return join_fork_and_wait(c, s);
}

Test(segment, a_forked_child_does_not_keep_a_dead_creator_of_mode_0400_alive, .timeout = 60)
{
	struct forker_cfg *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c, MAP_FAILED);
	tu_name(c->name, sizeof(c->name), "forkmode");
	tu_gate_init(&c->joined);
	cr_assert_eq(pipe(c->hold), 0);
	pid_t pid = tu_fork(forking_creator, c);
	tu_gate_wait(&c->joined);
	struct shmring_seg *s;
	cr_assert_eq(shmring_seg_open(c->name, 0, SHMRING_O_RDONLY | SHMRING_O_NOREGISTRY, &s), 0);
	struct stat st;
	cr_assert_eq(fstat(s->fd, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0400, "the mode asked for");
	kill_joiner_and_check(c, pid, s);
}

/* A thread with a descriptor table of its own (unshare(CLONE_FILES)) creates a ring
 * while the main thread has another file open under the same descriptor number. The
 * library reopens the segment's descriptor for its participant locks; through
 * /proc/self/fd (the main thread's table) it opened the other file and locked that,
 * so the live producer looked dead. The main thread opens its file between the
 * thread's unshare and its create; both tables give out the same lowest number. */
struct unshare_cfg {
	char name[64];
	pthread_barrier_t unshared, opened, created, checked;
	int rc;
};

static void *unsharing_creator(void *a)
{
	struct unshare_cfg *c = a;
	struct shmring_spsc *p = NULL;
	c->rc = unshare(CLONE_FILES) == 0 ? 0 : -errno;
	pthread_barrier_wait(&c->unshared);
	pthread_barrier_wait(&c->opened);
	if (c->rc == 0) {
		struct shmring_spsc_opts o = { .capacity = 4096 };
		c->rc = shmring_spsc_create(c->name, &o, SHMRING_ROLE_PRODUCER, &p);
	}
	pthread_barrier_wait(&c->created);
	pthread_barrier_wait(&c->checked);
	if (p)
		shmring_spsc_close(p);
	return NULL;
}

Test(segment, participant_lock_of_a_thread_with_its_own_descriptor_table, .timeout = 60)
{
	struct unshare_cfg c;
	tu_name(c.name, sizeof(c.name), "unshare");
	pthread_barrier_init(&c.unshared, NULL, 2);
	pthread_barrier_init(&c.opened, NULL, 2);
	pthread_barrier_init(&c.created, NULL, 2);
	pthread_barrier_init(&c.checked, NULL, 2);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, unsharing_creator, &c), 0);
	pthread_barrier_wait(&c.unshared);
	int decoy = open("/dev/null", O_RDONLY | O_CLOEXEC); /* this table's lowest number */
	cr_assert_geq(decoy, 0);
	pthread_barrier_wait(&c.opened);
	pthread_barrier_wait(&c.created);
	cr_assert_eq(c.rc, 0, "unshare or create: %s", strerror(-c.rc));
	struct shmring_seg *seg;
	cr_assert_eq(shmring_seg_open(c.name, 0, SHMRING_O_RDONLY | SHMRING_O_NOREGISTRY, &seg), 0);
	int alive = shmring_part_alive(seg, SHMRING_SPSC_SLOT_PRODUCER);
	shmring_seg_close(seg);
	pthread_barrier_wait(&c.checked);
	pthread_join(t, NULL);
	close(decoy);
	shmring_seg_unlink(c.name);
	cr_assert_eq(alive, 1, "the live producer's lock is on its segment");
}

Test(segment, participant_liveness_across_processes)
{
	struct part_cfg c = { .slot = 3 };
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	tu_gate_init(&c.joined);
	tu_gate_init(&c.done);
	cr_assert_eq(shmring_seg_create(tu_name(c.name, sizeof(c.name), "part"), &p, &s), 0);
	uint32_t mine;
	cr_assert_eq(shmring_part_join(s, SHMRING_ROLE_PRODUCER, 0, &mine), 0);
	cr_assert_eq(shmring_part_alive(s, 0), 1, "our own slot");
	pid_t pid = tu_fork(joiner, &c);
	tu_gate_wait(&c.joined);
	struct shmring_part_info info;
	cr_assert_eq(shmring_part_get(s, 3, &info), 0);
	cr_assert_eq(info.state, SHMRING_PART_ACTIVE);
	cr_assert_eq(info.pid, pid);
	cr_assert_eq(info.role, SHMRING_ROLE_CONSUMER);
	cr_assert_neq(info.start_time, 0);
	cr_assert_eq(info.alive, 1);
	cr_assert_eq(shmring_part_join(s, SHMRING_ROLE_CONSUMER, 3, &mine), -EBUSY);
	cr_assert_eq(shmring_part_take(s, 3), -EBUSY);
	unsigned live, dead;
	shmring_part_count(s, 0, &live, &dead);
	cr_assert_eq(live, 2);
	cr_assert_eq(dead, 0);
	kill(pid, SIGKILL);
	cr_assert_eq(tu_wait(pid), -SIGKILL);
	cr_assert_eq(shmring_part_alive(s, 3), 0, "dead: its lock went with it");
	shmring_part_count(s, SHMRING_ROLE_CONSUMER, &live, &dead);
	cr_assert_eq(live, 0);
	cr_assert_eq(dead, 1);
	/* any-slot joins skip the dead slot (its kind reclaims it first) */
	uint32_t any;
	cr_assert_eq(shmring_part_join(s, SHMRING_ROLE_OBSERVER, -1, &any), 0);
	cr_assert_neq(any, 3);
	cr_assert_eq(shmring_part_take(s, 3), 0, "a survivor takes the dead slot");
	shmring_part_leave(s, 3);
	cr_assert_eq(shmring_part_join(s, SHMRING_ROLE_CONSUMER, 3, &mine), 0, "left slots are free");
	shmring_seg_close(s);
	shmring_seg_unlink(c.name);
}

/* Threads of one process share one open file description per segment, whose OFD locks
 * never conflict with each other: only the registry's held_slots keeps two threads from
 * taking one participant slot. A race there (check, then lock, then set the bit) once
 * let two subscribers of one pool share a slot, and the second join's generation made
 * the first look dead, so its record was reclaimed under it. */
#define JR_THREADS 8
struct join_racer {
	struct shmring_seg *s;
	pthread_barrier_t *joined, *checked;
	uint64_t rounds;
	uint32_t slot;
	int errors;
};

static void *join_racer_main(void *a)
{
	struct join_racer *j = a;
	for (uint64_t r = 0; r < j->rounds; r++) {
		/* joins race with each other and with the previous round's leaves */
		if (shmring_part_join(j->s, SHMRING_ROLE_OBSERVER, -1, &j->slot) != 0) {
			j->errors++;
			j->slot = UINT32_MAX;
		}
		pthread_barrier_wait(j->joined);
		pthread_barrier_wait(j->checked);
		if (j->slot != UINT32_MAX)
			shmring_part_leave(j->s, j->slot);
	}
	return NULL;
}

Test(segment, threads_joining_at_once_get_distinct_slots, .timeout = 120)
{
	char name[64];
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "jrace"), &p, &s), 0);
	pthread_barrier_t joined, checked;
	pthread_barrier_init(&joined, NULL, JR_THREADS + 1);
	pthread_barrier_init(&checked, NULL, JR_THREADS + 1);
	const uint64_t rounds = tu_scaled(2000, 50);
	struct join_racer j[JR_THREADS];
	pthread_t th[JR_THREADS];
	for (int i = 0; i < JR_THREADS; i++) {
		j[i] = (struct join_racer){ .s = s, .joined = &joined, .checked = &checked,
					    .rounds = rounds };
		cr_assert_eq(pthread_create(&th[i], NULL, join_racer_main, &j[i]), 0);
	}
	uint64_t shared = 0;
	for (uint64_t r = 0; r < rounds; r++) {
		pthread_barrier_wait(&joined);
		uint64_t seen = 0;
		for (int i = 0; i < JR_THREADS; i++) {
			if (j[i].slot >= 64)
				continue;
			uint64_t bit = UINT64_C(1) << j[i].slot;
			shared += (seen & bit) != 0;
			seen |= bit;
			struct shmring_part_info info;
			shmring_part_get(s, j[i].slot, &info);
			shared += !(info.state == SHMRING_PART_ACTIVE && info.alive && info.mine);
		}
		pthread_barrier_wait(&checked);
	}
	for (int i = 0; i < JR_THREADS; i++) {
		cr_assert_eq(pthread_join(th[i], NULL), 0);
		cr_assert_eq(j[i].errors, 0, "thread %d: a join failed", i);
	}
	cr_assert_eq(shared, 0, "slots taken twice or not held, over %llu rounds",
		     (unsigned long long)rounds);
	pthread_barrier_destroy(&joined);
	pthread_barrier_destroy(&checked);
	shmring_seg_close(s);
	shmring_seg_unlink(name);
}

Test(segment, replacing_a_dead_participant_is_reported)
{
	struct part_cfg c = { .slot = 1 };
	struct shmring_seg *s;
	struct shmring_seg_params p = params(4096);
	tu_gate_init(&c.joined);
	tu_gate_init(&c.done);
	cr_assert_eq(shmring_seg_create(tu_name(c.name, sizeof(c.name), "repl"), &p, &s), 0);
	pid_t pid = tu_fork(joiner, &c);
	tu_gate_wait(&c.joined);
	kill(pid, SIGKILL);
	tu_wait(pid);
	uint32_t slot;
	cr_assert_eq(shmring_part_join(s, SHMRING_ROLE_CONSUMER, 1, &slot), 1);
	cr_assert_eq(shmring_load_relaxed(&shmring_seg_hdr(s)->stats.peer_deaths), 1);
	shmring_seg_close(s);
	shmring_seg_unlink(c.name);
}

Test(segment, read_only_inspector_sees_liveness)
{
	struct part_cfg c = { .slot = 2 };
	struct shmring_seg *s, *ro;
	struct shmring_seg_params p = params(4096);
	tu_gate_init(&c.joined);
	tu_gate_init(&c.done);
	cr_assert_eq(shmring_seg_create(tu_name(c.name, sizeof(c.name), "ro"), &p, &s), 0);
	pid_t pid = tu_fork(joiner, &c);
	tu_gate_wait(&c.joined);
	cr_assert_eq(shmring_seg_open(c.name, 0, SHMRING_O_RDONLY, &ro), 0);
	cr_assert_eq(shmring_part_alive(ro, 2), 1);
	tu_gate_open(&c.done);
	cr_assert_eq(tu_wait(pid), 0);
	cr_assert_eq(shmring_part_alive(ro, 2), 0);
	shmring_seg_close(ro);
	shmring_seg_close(s);
	shmring_seg_unlink(c.name);
}

Test(segment, strerror_explains_every_code)
{
	int codes[] = { 0, -EAGAIN, -EPIPE, -ETIMEDOUT, -EPROTO, -EBADMSG, -EMSGSIZE, -ENOSPC,
			-EEXIST, -ENOENT, -EACCES, -EINVAL, -EBUSY, -EUSERS, -EBADF, -ENOMEM, -EIO,
			-EOVERFLOW, -EFBIG };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *m = shmring_strerror(codes[i]);
		cr_assert(m && *m);
	}
	cr_assert_str_neq(shmring_strerror(-EPROTO), shmring_strerror(-EBADMSG));
	cr_assert(strstr(shmring_strerror(-EFBIG), "RLIMIT_FSIZE"), "its own sentence");
}

/* shmring_demote is a hint: it changes no byte, whatever the range (unaligned, one byte,
 * empty, across lines, in a read-only mapping), and the data it covers stays readable
 * and writable as before. */
Test(segment, demote_changes_nothing)
{
	size_t len = 3 * 4096;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + 1);
	shmring_demote(p, len);
	shmring_demote(p + 63, 2);     /* across a line boundary */
	shmring_demote(p + 4095, 1);   /* the last byte of a page */
	shmring_demote(p + 100, 0);    /* nothing */
	cr_assert_eq(mprotect(p, len, PROT_READ), 0);
	shmring_demote(p + 5, len - 5); /* read-only: a hint needs no write access */
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(p[i], (uint8_t)(i * 7 + 1), "byte %zu changed", i);
	cr_assert_eq(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
	p[64] = 0;
	shmring_demote(p + 64, 1);
	cr_assert_eq(p[64], 0);
	munmap(p, len);
}
