/* SPDX-License-Identifier: MIT */
/*
 * Handles inherited through fork() are the parent's: a child that closes them (in
 * shared clean-up code, say) frees its copies and changes nothing in the segment. Each
 * test opens both ends in the parent, lets a child close its copies and exit, then
 * checks that the parent's channel goes on: no end of stream, no second producer.
 */
#include <criterion/criterion.h>
#include <shmring/shmring.h>

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* Run close_copies(a, b) in a child and wait for it: the child exits 0 if every close
 * returned 0. */
static void child_closes(int (*close_copies)(void *a, void *b), void *a, void *b)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(close_copies(a, b) == 0 ? 0 : 1);
	cr_assert_eq(tu_wait(pid), 0, "the child's close failed");
}

static int close_spsc(void *a, void *b)
{
	return shmring_spsc_close(a) | shmring_spsc_close(b);
}

Test(fork, an_inherited_spsc_handle_closed_in_the_child_leaves_the_stream_open)
{
	char name[64];
	struct shmring_spsc *tx, *rx;
	struct shmring_spsc_opts o = {.capacity = 4096};
	cr_assert_eq(shmring_spsc_create(tu_name(name, sizeof(name), "forkspsc"), &o,
					 SHMRING_ROLE_PRODUCER, &tx), 0);
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &rx), 0);
	child_closes(close_spsc, tx, rx);
	cr_assert_eq(shmring_spsc_peer_closed(rx), 0, "the child's close ended the stream");
	cr_assert_eq(shmring_spsc_peer_closed(tx), 0, "the child's close closed the consumer");
	cr_assert_eq(shmring_spsc_send(tx, "after", 5, 0), 0);
	char buf[16];
	cr_assert_eq(shmring_spsc_recv(rx, buf, sizeof(buf), 0), 5);
	cr_assert_eq(memcmp(buf, "after", 5), 0);
	cr_assert_eq(shmring_spsc_close(tx), 0);
	cr_assert_eq(shmring_spsc_recv(rx, buf, sizeof(buf), 0), -EPIPE, "the parent's close");
	shmring_spsc_close(rx);
	shmring_seg_unlink(name);
}

static int close_pool(void *a, void *b)
{
	return shmring_pool_close(a) | shmring_pool_close(b);
}

Test(fork, an_inherited_pool_producer_closed_in_the_child_is_still_the_producer)
{
	char name[64];
	struct shmring_pool *prod, *sub, *other = NULL;
	struct shmring_pool_opts o = {.buf_size = 4096, .nbufs = 4, .max_subs = 2};
	cr_assert_eq(shmring_pool_create(tu_name(name, sizeof(name), "forkpool"), &o, NULL, &prod),
		     0);
	cr_assert_eq(shmring_pool_subscribe(name, NULL, &sub), 0);
	child_closes(close_pool, prod, sub);
	cr_assert_eq(shmring_pool_producer_alive(sub), 1);
	cr_assert_eq(shmring_pool_open_producer(name, &other), -EBUSY,
		     "a second producer could attach");
	struct shmring_pool_frame f;
	cr_assert_eq(shmring_pool_loan(prod, &f), 0);
	memcpy(f.data, "frame", 5);
	f.len = 5;
	cr_assert_geq(shmring_pool_publish(prod, &f), 0);
	struct shmring_pool_frame g;
	cr_assert_eq(shmring_pool_take_wait(sub, &g, 0), 0, "the subscription was ended");
	cr_assert_eq(g.len, 5);
	cr_assert_eq(memcmp(g.data, "frame", 5), 0);
	cr_assert_eq(shmring_pool_release(sub, &g), 0);
	shmring_pool_close(prod);
	shmring_pool_close(sub);
	shmring_seg_unlink(name);
}

static int close_bcast(void *a, void *b)
{
	return shmring_bcast_close(a) | shmring_bcast_close(b);
}

Test(fork, an_inherited_bcast_writer_closed_in_the_child_goes_on_writing)
{
	char name[64];
	struct shmring_bcast *w, *r;
	struct shmring_bcast_opts o = {.slots = 4, .slot_size = 64};
	cr_assert_eq(shmring_bcast_create(tu_name(name, sizeof(name), "forkbcast"), &o,
					  SHMRING_ROLE_PRODUCER, &w), 0);
	cr_assert_eq(shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &r), 0);
	struct shmring_bcast_stats before, after;
	cr_assert_eq(shmring_bcast_stats(r, &before), 0);
	child_closes(close_bcast, w, r);
	cr_assert_eq(shmring_bcast_writer_alive(r), 1);
	cr_assert_eq(shmring_bcast_stats(r, &after), 0);
	cr_assert_eq(after.readers, before.readers, "the child's close counted a reader out");
	cr_assert_eq(shmring_bcast_publish(w, "tick", 4), 0);
	char buf[64];
	struct shmring_bcast_rec rec;
	cr_assert_eq(shmring_bcast_read_wait(r, buf, sizeof(buf), &rec, 0), 4,
		     "the child's close ended the stream");
	cr_assert_eq(memcmp(buf, "tick", 4), 0);
	shmring_bcast_close(w);
	shmring_bcast_close(r);
	shmring_seg_unlink(name);
}

static int close_mpmc(void *a, void *b)
{
	return shmring_mpmc_close(a) | shmring_mpmc_close(b);
}

Test(fork, an_inherited_mpmc_handle_closed_in_the_child_leaves_batch_and_counts_alone)
{
	char name[64];
	struct shmring_mpmc *tx, *rx;
	struct shmring_mpmc_opts o = {.capacity = 8, .slot_size = 64};
	cr_assert_eq(shmring_mpmc_create(tu_name(name, sizeof(name), "forkmpmc"), &o,
					 SHMRING_ROLE_PRODUCER, &tx), 0);
	cr_assert_eq(shmring_mpmc_open(name, SHMRING_ROLE_CONSUMER, &rx), 0);
	/* one message whose count the parent has not flushed to the segment yet */
	cr_assert_eq(shmring_mpmc_enqueue(tx, "sent", 4, 0), 0);
	const struct shmring_hdr *h = (const void *)shmring_mpmc_seg(tx)->base;
	uint64_t counted = atomic_load(&h->stats.msgs);
	void *bufs[1];
	cr_assert_eq(shmring_mpmc_enqueue_start(tx, 1, 1, bufs, 0), 1);
	memcpy(bufs[0], "held", 4);
	/* the child's close must not give the parent's held cell back as a gap */
	child_closes(close_mpmc, tx, rx);
	cr_assert_eq(atomic_load(&h->stats.msgs), counted, "the child flushed the parent's count");
	uint32_t len = 4;
	cr_assert_eq(shmring_mpmc_enqueue_finish(tx, 1, &len), 1);
	char buf[64];
	cr_assert_eq(shmring_mpmc_dequeue(rx, buf, sizeof(buf), 0), 4);
	cr_assert_eq(shmring_mpmc_dequeue(rx, buf, sizeof(buf), 0), 4, "the message was lost");
	cr_assert_eq(memcmp(buf, "held", 4), 0);
	cr_assert_eq(shmring_mpmc_dequeue(rx, buf, sizeof(buf), 0), -EAGAIN,
		     "the producer looked closed");
	shmring_mpmc_close(tx);
	shmring_mpmc_close(rx);
	shmring_seg_unlink(name);
}
