/* SPDX-License-Identifier: MIT */
/*
 * The process-wide registry of mappings: an RCU list written under a mutex and walked
 * without one. liburcu-bp provides the read-side critical sections and the grace
 * period: unmapping waits for it, so a walker never touches a mapping after munmap.
 * The list links are C11 atomics (release to publish, acquire to follow) rather than
 * liburcu's list macros, so that ThreadSanitizer understands the publication too.
 */
#include "internal.h"
#include "shmring/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/urcu-bp.h>

#ifdef SHMRING_TSAN
/* TSan cannot see liburcu's grace period: tell it that every read-side section
 * happens before the end of the next synchronize. */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char grace_token;
#define GRACE_READER_DONE() __tsan_release(&grace_token)
#define GRACE_WRITER_DONE() __tsan_acquire(&grace_token)
#else
#define GRACE_READER_DONE() ((void)0)
#define GRACE_WRITER_DONE() ((void)0)
#endif

static pthread_mutex_t reg_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct shmring__reg_entry *_Atomic reg_head;
/* entries on the list: what shmring_registry_count() reads without a walk (a walk's
 * read-side section registers the thread with liburcu-bp, which aborts if it cannot
 * allocate) */
static _Atomic unsigned reg_count;
static struct shmring__lock_fd *lock_fds; /* guarded by reg_mutex */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&reg_mutex);
	urcu_bp_before_fork();
}

static void atfork_parent(void)
{
	urcu_bp_after_fork_parent();
	pthread_mutex_unlock(&reg_mutex);
}

/* A child must not keep the parent's participant locks alive through inherited open
 * file descriptions: close them (the locks are on descriptions no mapping holds, see
 * shmring__reg_acquire()). Mappings stay (inherited handles keep pointing at them) but
 * no entry is shared with handles the child opens itself. */
static void atfork_child(void)
{
	urcu_bp_after_fork_child();
	for (struct shmring__reg_entry *e = shmring_load_relaxed(&reg_head); e;
	     e = shmring_load_relaxed(&e->next)) { /* one thread left: no ordering needed */
		if (e->fd >= 0)
			close(e->fd);
		e->fd = -1;
		e->owner = -1;
		e->held_slots = 0;
		e->inherited = 1;
	}
	for (struct shmring__lock_fd *l = lock_fds; l; l = l->next) {
		close(l->fd);
		l->fd = -1; /* its handle, copied by fork, still points at it */
	}
	lock_fds = NULL;
	pthread_mutex_init(&reg_mutex, NULL);
}

static void reg_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int shmring__reopen_fd(int fd, int oflags)
{
	struct stat a, b;
	char p[64];
	if (fstat(fd, &a) != 0)
		return -errno;
	/* this thread's descriptor table: /proc/self is the thread-group leader's, which
	 * differs in a thread that unshared its table, and is gone once the leader exited
	 * (thread-self: Linux 3.17; before it, self) */
	snprintf(p, sizeof(p), "/proc/thread-self/fd/%d", fd);
	int nfd = open(p, oflags | O_CLOEXEC);
	if (nfd < 0 && errno == ENOENT) {
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		nfd = open(p, oflags | O_CLOEXEC);
	}
	if (nfd < 0)
		return -errno;
	/* the same file, or nothing: a lock or a mapping on another file would be wrong */
	if (fstat(nfd, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(nfd);
		return -ESTALE;
	}
	return nfd;
}

/* Open a descriptor with opener() and list it, under the mutex that fork() takes
 * first: a child cannot get a copy of the descriptor that its handler does not know
 * of (atfork_child closes the listed ones). */
static int listed_open(int (*opener)(const void *arg), const void *arg,
		       struct shmring__lock_fd **out)
{
	struct shmring__lock_fd *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_mutex);
	int nfd = opener(arg);
	if (nfd >= 0) {
		l->fd = nfd;
		l->next = lock_fds;
		if (lock_fds)
			lock_fds->prev = l;
		lock_fds = l;
	}
	pthread_mutex_unlock(&reg_mutex);
	if (nfd < 0) {
		free(l);
		return nfd;
	}
	*out = l;
	return 0;
}

static int reopen_rdonly(const void *fd)
{
	return shmring__reopen_fd(*(const int *)fd, O_RDONLY);
}

int shmring__lock_fd_open(int fd, struct shmring__lock_fd **out)
{
	return listed_open(reopen_rdonly, &fd, out);
}

/* a socket bound to the abstract address "\0" key */
static int bind_abstract(const void *key)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(key);
	if (len + 1 > sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path + 1, key, len);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int shmring__guard_open(const char *key, struct shmring__lock_fd **out)
{
	return listed_open(bind_abstract, key, out);
}

void shmring__lock_fd_close(struct shmring__lock_fd *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&reg_mutex);
	if (l->fd >= 0) { /* still listed (a forked child's copies are not) */
		if (l->prev)
			l->prev->next = l->next;
		else
			lock_fds = l->next;
		if (l->next)
			l->next->prev = l->prev;
		close(l->fd);
	}
	pthread_mutex_unlock(&reg_mutex);
	free(l);
}

void shmring__reg_lock(void)
{
	pthread_mutex_lock(&reg_mutex);
}

void shmring__reg_unlock(void)
{
	pthread_mutex_unlock(&reg_mutex);
}

int shmring__reg_acquire(int fd, int writable, uint64_t size, const char *name, int private_map,
			 struct shmring__reg_entry **out)
{
	pthread_once(&reg_once, reg_init);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	pid_t me = getpid();
	pthread_mutex_lock(&reg_mutex);
	if (!private_map) {
		/* writers hold the mutex: relaxed loads see every link */
		for (struct shmring__reg_entry *e = shmring_load_relaxed(&reg_head); e;
		     e = shmring_load_relaxed(&e->next)) {
			if (e->dev == st.st_dev && e->ino == st.st_ino && e->writable == writable &&
			    e->owner == me && e->size == size) {
				__atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED); /* walkers read it */
				pthread_mutex_unlock(&reg_mutex);
				close(fd);
				*out = e;
				return 0;
			}
		}
	}
	struct shmring__reg_entry *e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&reg_mutex);
		close(fd);
		return -ENOMEM;
	}
	void *base = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		int err = -errno;
		pthread_mutex_unlock(&reg_mutex);
		free(e);
		close(fd);
		return shmring__fail(err, "mmap of %llu bytes failed", (unsigned long long)size);
	}
	/* Participant locks go on an open file description of their own, never mapped: a
	 * mapping holds a reference to the description it was made through, a forked child
	 * inherits the mapping, and an OFD lock lives as long as its description does. So
	 * the child would keep our locks (our death unseen) however many descriptors its
	 * atfork handler closes. Opened here, under the mutex that fork() takes first, so
	 * a child has either none of it or the listed copy, which it closes. */
	int lfd = shmring__reopen_fd(fd, writable ? O_RDWR : O_RDONLY);
	if (shmring__reopen_refused(lfd)) {
		/* a file whose mode denies us a second open (changed since our first; a
		 * creator's own mode is set after this), or no /proc: lock through the mapped
		 * description, as a last resort (a forked child then keeps our locks) */
		lfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (lfd < 0)
			lfd = -errno;
	}
	if (lfd < 0) {
		int err = lfd;
		pthread_mutex_unlock(&reg_mutex);
		munmap(base, size);
		free(e);
		close(fd);
		return shmring__fail(err, "descriptor for participant locks: %s", strerror(-err));
	}
	close(fd); /* the mapping keeps what it needs */
	if (!private_map) {
		/* the holder lock (layout.h): read-shared, held as long as the entry is. Only
		 * a write lock someone else holds there refuses it: a hint for inspectors is
		 * not worth failing the open for, so then we go without */
		struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
				    .l_start = SHMRING_HOLDER_LOCK, .l_len = 1 };
		(void)fcntl(lfd, F_OFD_SETLK, &fl);
	}
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->writable = writable;
	e->owner = private_map ? -1 : me;
	e->fd = lfd;
	e->base = base;
	e->size = size;
	e->refs = 1;
	snprintf(e->name, sizeof(e->name), "%s", name ? name : "");
	shmring_store_relaxed(&e->next, shmring_load_relaxed(&reg_head));
	/* publish the initialised entry: pairs with the walkers' acquire loads */
	shmring_store_release(&reg_head, e);
	atomic_fetch_add_explicit(&reg_count, 1, memory_order_relaxed); /* a statistic */
	pthread_mutex_unlock(&reg_mutex);
	*out = e;
	return 0;
}

void shmring__reg_release(struct shmring__reg_entry *e)
{
	pthread_mutex_lock(&reg_mutex);
	if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_RELAXED) > 0) {
		pthread_mutex_unlock(&reg_mutex);
		return;
	}
	/* the lock descriptor goes now, under the mutex fork() takes first: once the
	 * entry is off the list, a child forked before its close would keep it, and the
	 * holder lock on it (walkers never use it; no handle is left) */
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
	struct shmring__reg_entry *_Atomic *link = &reg_head;
	while (shmring_load_relaxed(link) != e)
		link = &shmring_load_relaxed(link)->next;
	/* unlink; e->next stays valid for walkers standing on e until the grace period.
	 * Release pairs with the walkers' acquire loads of the link. */
	shmring_store_release(link, shmring_load_relaxed(&e->next));
	atomic_fetch_sub_explicit(&reg_count, 1, memory_order_relaxed); /* a statistic */
	pthread_mutex_unlock(&reg_mutex);
	/* walkers that may still see e finish before the mapping goes */
	urcu_bp_synchronize_rcu();
	GRACE_WRITER_DONE();
	munmap(e->base, e->size);
	free(e);
}

int shmring_registry_foreach(int (*cb)(const struct shmring_registry_info *, void *), void *arg)
{
	int rc = 0;
	urcu_bp_read_lock();
	/* acquire loads pair with the release stores that link and unlink entries */
	for (struct shmring__reg_entry *e = shmring_load_acquire(&reg_head); e;
	     e = shmring_load_acquire(&e->next)) {
		const struct shmring_hdr *h = (const void *)e->base;
		struct shmring_registry_info info = {
			.name = e->name,
			.size = e->size,
			/* statistics only: relaxed, like every reader of the counters */
			.kind = __atomic_load_n(&h->kind, __ATOMIC_RELAXED),
			.refs = __atomic_load_n(&e->refs, __ATOMIC_RELAXED),
			.writable = e->writable,
			.msgs = shmring_load_relaxed(&h->stats.msgs),
			.bytes = shmring_load_relaxed(&h->stats.bytes),
		};
		rc = cb(&info, arg);
		if (rc)
			break;
	}
	GRACE_READER_DONE();
	urcu_bp_read_unlock();
	return rc;
}

unsigned shmring_registry_count(void)
{
	return atomic_load_explicit(&reg_count, memory_order_relaxed); /* a statistic */
}
