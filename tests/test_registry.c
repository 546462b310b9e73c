/* SPDX-License-Identifier: MIT */
/* The process registry: shared mappings, lock-free walks under concurrent open/close. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmring/shmring.h"
#include "testutil.h"

static struct shmring_seg_params params(void)
{
	struct shmring_seg_params p = { .kind = SHMRING_KIND_SPSC, .ctrl_size = 4096, .data_size = 4096 };
	return p;
}

Test(registry, same_segment_twice_shares_one_mapping)
{
	char name[64];
	struct shmring_seg *a, *b, *c;
	struct shmring_seg_params p = params();
	unsigned before = shmring_registry_count();
	cr_assert_eq(shmring_seg_create(tu_name(name, sizeof(name), "reg"), &p, &a), 0);
	cr_assert_eq(shmring_seg_open(name, 0, 0, &b), 0);
	cr_assert_eq(a->base, b->base, "one mapping");
	cr_assert_eq(shmring_registry_count(), before + 1);
	cr_assert_eq(shmring_seg_open(name, 0, SHMRING_O_RDONLY, &c), 0);
	cr_assert_neq(c->base, a->base, "a read-only open maps separately");
	shmring_seg_close(c);
	shmring_seg_close(a);
	cr_assert_eq(shmring_registry_count(), before + 1, "still referenced");
	shmring_seg_close(b);
	cr_assert_eq(shmring_registry_count(), before);
	shmring_seg_unlink(name);
}

#define NSEG 4
static char names[NSEG][64];
static atomic_int stop;
static atomic_ulong walks;

static int visit(const struct shmring_registry_info *info, void *arg)
{
	(void)arg;
	/* touch the mapping the way a stats reader would: it must still be mapped */
	cr_assert(info->size >= 4096);
	cr_assert(info->kind == SHMRING_KIND_SPSC);
	return 0;
}

static void *walker(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		shmring_registry_foreach(visit, NULL);
		atomic_fetch_add(&walks, 1);
	}
	return NULL;
}

static void *opener(void *arg)
{
	uint64_t rng = (uintptr_t)arg;
	int n = (int)tu_scaled(2000, 100);
	for (int i = 0; i < n; i++) {
		struct shmring_seg *s[3];
		int k = 0;
		for (; k < 3; k++)
			cr_assert_eq(shmring_seg_open(names[tu_rand(&rng) % NSEG], 0, 0, &s[k]), 0);
		while (k--)
			shmring_seg_close(s[k]);
	}
	return NULL;
}

Test(registry, threads_concurrent_open_close_and_walk, .timeout = 300)
{
	struct shmring_seg *keep[NSEG];
	struct shmring_seg_params p = params();
	for (int i = 0; i < NSEG; i++)
		cr_assert_eq(shmring_seg_create(tu_name(names[i], sizeof(names[i]), "regmt"), &p, &keep[i]), 0);
	/* drop our own references so the openers' closes really unmap */
	for (int i = 0; i < NSEG; i++)
		shmring_seg_close(keep[i]);
	unsigned base = shmring_registry_count();
	pthread_t w[2], o[3];
	for (int i = 0; i < 2; i++)
		pthread_create(&w[i], NULL, walker, NULL);
	for (int i = 0; i < 3; i++)
		pthread_create(&o[i], NULL, opener, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < 3; i++)
		pthread_join(o[i], NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	cr_assert_gt(atomic_load(&walks), 0);
	cr_assert_eq(shmring_registry_count(), base, "every mapping was released");
	for (int i = 0; i < NSEG; i++)
		shmring_seg_unlink(names[i]);
}

/* A fork() while another thread closes the last handle of a segment: the entry leaves
 * the list under the registry's mutex (which fork takes first), and its lock descriptor
 * must go with it, or a child forked just after keeps it, and the holder lock on it,
 * for as long as it lives (a segment nobody uses would look held open). Each child
 * looks through its own descriptors for a lock on the holder byte. */
static char fr_name[64];
static atomic_int fr_stop;

static void *fr_opener(void *a)
{
	(void)a;
	while (!atomic_load(&fr_stop)) {
		struct shmring_seg *s;
		if (shmring_seg_open(fr_name, 0, SHMRING_O_RDONLY, &s) != 0)
			break;
		/* the pages in: the munmap after the unlisting then takes a while */
		const volatile uint8_t *d = (const uint8_t *)s->base;
		for (uint64_t o = 0; o < s->size; o += 4096)
			(void)d[o];
		shmring_seg_close(s);
	}
	return NULL;
}

static int child_has_holder_lock(void)
{
	char want[32], p[300], line[256];
	snprintf(want, sizeof(want), " %u %u", SHMRING_HOLDER_LOCK, SHMRING_HOLDER_LOCK);
	DIR *d = opendir("/proc/self/fdinfo");
	struct dirent *e;
	int found = 0;
	while (d && (e = readdir(d)) != NULL && !found) {
		snprintf(p, sizeof(p), "/proc/self/fdinfo/%s", e->d_name);
		FILE *f = fopen(p, "r");
		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "OFDLCK") && strstr(line, want))
				found = 1;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

Test(registry, a_fork_during_the_last_close_leaves_the_child_no_holder_lock, .timeout = 120)
{
	struct shmring_seg_params p = { .kind = SHMRING_KIND_SPSC, .ctrl_size = 4096,
					.data_size = 16u << 20 };
	p.geo[0] = p.data_size;
	struct shmring_seg *s;
	cr_assert_eq(shmring_seg_create(tu_name(fr_name, sizeof(fr_name), "forkclose"), &p, &s), 0);
	shmring_seg_close(s); /* nobody holds it now */
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fr_opener, NULL), 0);
	int held = 0;
	for (int i = 0; i < (int)tu_scaled(300, 50) && !held; i++) {
		pid_t c = fork();
		cr_assert_geq(c, 0);
		if (c == 0)
			_exit(child_has_holder_lock());
		held = tu_wait(c) != 0;
	}
	atomic_store(&fr_stop, 1);
	pthread_join(t, NULL);
	shmring_seg_unlink(fr_name);
	cr_assert_not(held, "a child kept the holder lock of a handle its parent was closing");
}
