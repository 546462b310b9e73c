/* SPDX-License-Identifier: MIT */
/*
 * The process-wide registry of mappings: an RCU list (liburcu-bp) written under a
 * mutex and walked without one. Unmapping waits for a grace period, so a walker never
 * touches a mapping after munmap.
 */
#include "internal.h"
#include "shmring/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/urcu-bp.h>
#include <urcu/rculist.h>

static pthread_mutex_t reg_mutex = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(reg_list);
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
 * file descriptions: close them. Mappings stay (inherited handles keep pointing at
 * them) but no entry is shared with handles the child opens itself. */
static void atfork_child(void)
{
	urcu_bp_after_fork_child();
	struct shmring__reg_entry *e;
	cds_list_for_each_entry(e, &reg_list, node) {
		if (e->fd >= 0)
			close(e->fd);
		e->fd = -1;
		e->owner = -1;
		e->held_slots = 0;
	}
	pthread_mutex_init(&reg_mutex, NULL);
}

static void reg_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
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
		struct shmring__reg_entry *e;
		cds_list_for_each_entry(e, &reg_list, node) {
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
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->writable = writable;
	e->owner = private_map ? -1 : me;
	e->fd = fd;
	e->base = base;
	e->size = size;
	e->refs = 1;
	snprintf(e->name, sizeof(e->name), "%s", name ? name : "");
	cds_list_add_tail_rcu(&e->node, &reg_list);
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
	cds_list_del_rcu(&e->node);
	pthread_mutex_unlock(&reg_mutex);
	/* walkers that may still see e finish before the mapping goes */
	urcu_bp_synchronize_rcu();
	munmap(e->base, e->size);
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}

int shmring_registry_foreach(int (*cb)(const struct shmring_registry_info *, void *), void *arg)
{
	int rc = 0;
	struct shmring__reg_entry *e;
	urcu_bp_read_lock();
	cds_list_for_each_entry_rcu(e, &reg_list, node) {
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
	urcu_bp_read_unlock();
	return rc;
}

unsigned shmring_registry_count(void)
{
	unsigned n = 0;
	struct shmring__reg_entry *e;
	urcu_bp_read_lock();
	cds_list_for_each_entry_rcu(e, &reg_list, node)
		n++;
	urcu_bp_read_unlock();
	return n;
}
