/* SPDX-License-Identifier: MIT */
/* The API's conventions across the channel kinds (README, "Error convention"): every
 * out-of-line call refuses a NULL handle with -EINVAL (setters do nothing, getters of a
 * pointer or a size give NULL or 0) instead of crashing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "shmring/shmring.h"
#include "testutil.h"

Test(api, a_null_spsc_handle_is_refused)
{
	char buf[16];
	void *p;
	struct shmring_rec rec;
	cr_assert_eq(shmring_spsc_close(NULL), -EINVAL);
	shmring_spsc_detach(NULL);
	shmring_spsc_set_spin(NULL, 1);
	cr_assert_eq(shmring_spsc_fd(NULL), -EINVAL);
	cr_assert_null(shmring_spsc_seg(NULL));
	cr_assert_eq(shmring_spsc_set_demote(NULL, 1), -EINVAL);
	cr_assert_eq(shmring_spsc_peer_alive(NULL), -EINVAL);
	cr_assert_eq(shmring_spsc_peer_closed(NULL), -EINVAL);
	cr_assert_eq(shmring_spsc_reserve_wait(NULL, 8, &p, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_reserve_wait(NULL, 8, &p, SHMRING_FOREVER), -EINVAL);
	cr_assert_eq(shmring_spsc_peek_wait(NULL, &rec, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_send(NULL, buf, 8, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_recv(NULL, buf, sizeof(buf), 0), -EINVAL);
}

Test(api, a_null_mpmc_handle_is_refused)
{
	cr_assert_eq(shmring_mpmc_close(NULL), -EINVAL);
	cr_assert_eq(shmring_mpmc_fd(NULL), -EINVAL);
	cr_assert_null(shmring_mpmc_seg(NULL));
	cr_assert_eq(shmring_mpmc_capacity(NULL), 0);
	cr_assert_eq(shmring_mpmc_slot_size(NULL), 0);
	cr_assert_eq(shmring_mpmc_part(NULL), -EINVAL);
	shmring_mpmc_set_spin(NULL, 1);
	cr_assert_eq(shmring_mpmc_set_demote(NULL, 1), -EINVAL);
	cr_assert_eq(shmring_mpmc_count(NULL), 0);
	cr_assert_eq(shmring_mpmc_recover(NULL), -EINVAL);
}

Test(api, a_null_pool_handle_is_refused)
{
	struct shmring_pool_frame f = { 0 };
	struct shmring_pool_stats st;
	struct shmring_pool_sub_stats sst;
	cr_assert_eq(shmring_pool_close(NULL), -EINVAL);
	cr_assert_eq(shmring_pool_fd(NULL), -EINVAL);
	cr_assert_null(shmring_pool_seg(NULL));
	shmring_pool_set_spin(NULL, 1);
	cr_assert_eq(shmring_pool_reclaim(NULL), -EINVAL);
	cr_assert_eq(shmring_pool_free_count(NULL), -EINVAL);
	cr_assert_eq(shmring_pool_stats(NULL, &st), -EINVAL);
	cr_assert_eq(shmring_pool_sub_stats(NULL, &sst), -EINVAL);
	cr_assert_eq(shmring_pool_producer_alive(NULL), -EINVAL);
	cr_assert_eq(shmring_pool_frame_verify(NULL, &f), -EINVAL);
	cr_assert_eq(shmring_pool_loan_wait(NULL, &f, 0), -EINVAL);
	cr_assert_eq(shmring_pool_take_wait(NULL, &f, SHMRING_FOREVER), -EINVAL);
}

Test(api, a_null_bcast_handle_is_refused)
{
	char buf[16];
	struct shmring_bcast_rec rec;
	struct shmring_bcast_stats st;
	cr_assert_eq(shmring_bcast_close(NULL), -EINVAL);
	cr_assert_eq(shmring_bcast_fd(NULL), -EINVAL);
	cr_assert_null(shmring_bcast_seg(NULL));
	shmring_bcast_set_spin(NULL, 1);
	cr_assert_eq(shmring_bcast_set_demote(NULL, 1), -EINVAL);
	cr_assert_eq(shmring_bcast_writer_alive(NULL), -EINVAL);
	cr_assert_eq(shmring_bcast_seek(NULL, SHMRING_BCAST_SEEK_NEWEST), -EINVAL);
	cr_assert_eq(shmring_bcast_stats(NULL, &st), -EINVAL);
	cr_assert_eq(shmring_bcast_wait(NULL, 0), -EINVAL);
	cr_assert_eq(shmring_bcast_read_wait(NULL, buf, sizeof(buf), &rec, SHMRING_FOREVER),
		     -EINVAL);
	cr_assert_eq(shmring_bcast_peek_wait(NULL, &rec, 0), -EINVAL);
}

Test(api, a_null_segment_is_refused)
{
	struct shmring_part_info info;
	unsigned live, dead;
	shmring_seg_close(NULL);
	shmring_part_leave(NULL, 0);
	cr_assert_eq(shmring_part_alive(NULL, 0), -EINVAL);
	cr_assert_eq(shmring_part_get(NULL, 0, &info), -EINVAL);
	cr_assert_eq(shmring_part_count(NULL, 0, &live, &dead), -EINVAL);
}

/* The NULL checks sit in front of the same calls' normal work: a live handle still
 * gets it (a spot check per kind, on what changed). */
Test(api, a_live_handle_still_works_through_the_checked_calls)
{
	struct shmring_spsc_opts so = { .capacity = 4096 };
	struct shmring_spsc *prod, *cons;
	cr_assert_eq(shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &prod), 0);
	cr_assert_eq(shmring_spsc_open_fd(shmring_spsc_fd(prod), SHMRING_ROLE_CONSUMER, &cons), 0);
	cr_assert_eq(shmring_spsc_peer_alive(prod), 1);
	cr_assert_eq(shmring_spsc_peer_closed(prod), 0);
	cr_assert_eq(shmring_spsc_set_demote(cons, 1), -EBADF);
	cr_assert_eq(shmring_spsc_send(prod, "hello", 5, 0), 0);
	char buf[16];
	cr_assert_eq(shmring_spsc_recv(cons, buf, sizeof(buf), 0), 5);
	cr_assert_eq(shmring_spsc_close(cons), 0);
	cr_assert_eq(shmring_spsc_peer_closed(prod), 1);
	cr_assert_eq(shmring_spsc_close(prod), 0);

	struct shmring_mpmc_opts mo = { .capacity = 8, .slot_size = 64 };
	struct shmring_mpmc *m;
	cr_assert_eq(shmring_mpmc_create(NULL, &mo, SHMRING_ROLE_PRODUCER, &m), 0);
	cr_assert_eq(shmring_mpmc_capacity(m), 8);
	cr_assert_eq(shmring_mpmc_slot_size(m), 64);
	cr_assert_geq(shmring_mpmc_part(m), 0);
	cr_assert_eq(shmring_mpmc_count(m), 0);
	cr_assert_eq(shmring_mpmc_set_demote(m, 1), 0);
	cr_assert_eq(shmring_mpmc_close(m), 0);

	struct shmring_bcast_opts bo = { .slots = 4, .slot_size = 64 };
	struct shmring_bcast *w;
	cr_assert_eq(shmring_bcast_create(NULL, &bo, SHMRING_ROLE_PRODUCER, &w), 0);
	cr_assert_eq(shmring_bcast_set_demote(w, 1), 0);
	struct shmring_bcast_rec rec;
	cr_assert_eq(shmring_bcast_peek_wait(w, &rec, 0), -EBADF);
	cr_assert_eq(shmring_bcast_close(w), 0);
}

/* The same for a NULL pointer where a call has to write (or read) something. */
Test(api, a_null_pointer_for_a_result_is_refused)
{
	struct shmring_spsc_opts so = { .capacity = 4096 };
	struct shmring_spsc *prod, *cons;
	cr_assert_eq(shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &prod), 0);
	cr_assert_eq(shmring_spsc_open_fd(shmring_spsc_fd(prod), SHMRING_ROLE_CONSUMER, &cons), 0);
	cr_assert_eq(shmring_spsc_reserve_wait(prod, 8, NULL, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_send(prod, NULL, 8, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_send(prod, NULL, 0, 0), 0, "an empty record needs no bytes");
	cr_assert_eq(shmring_spsc_peek_wait(cons, NULL, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_recv(cons, NULL, 8, 0), -EINVAL);
	cr_assert_eq(shmring_spsc_recv(cons, NULL, 0, 0), 0, "the empty record fits in nothing");
	cr_assert_eq(shmring_part_get(shmring_spsc_seg(prod), 0, NULL), -EINVAL);
	cr_assert_eq(shmring_spsc_close(cons), 0);
	cr_assert_eq(shmring_spsc_close(prod), 0);

	struct shmring_bcast_opts bo = { .slots = 4, .slot_size = 64 };
	struct shmring_bcast *w, *r;
	cr_assert_eq(shmring_bcast_create(NULL, &bo, SHMRING_ROLE_PRODUCER, &w), 0);
	cr_assert_eq(shmring_bcast_open_fd(shmring_bcast_fd(w), SHMRING_ROLE_READER, 0, &r), 0);
	cr_assert_eq(shmring_bcast_peek_wait(r, NULL, 0), -EINVAL);
	cr_assert_eq(shmring_bcast_stats(r, NULL), -EINVAL);
	cr_assert_eq(shmring_bcast_close(r), 0);
	cr_assert_eq(shmring_bcast_close(w), 0);

	struct shmring_pool_opts po = { .buf_size = 4096 };
	struct shmring_pool *prd, *sub;
	cr_assert_eq(shmring_pool_create(NULL, &po, NULL, &prd), 0);
	cr_assert_eq(shmring_pool_subscribe_fd(shmring_pool_fd(prd), NULL, &sub), 0);
	cr_assert_eq(shmring_pool_loan_wait(prd, NULL, 0), -EINVAL);
	cr_assert_eq(shmring_pool_take_wait(sub, NULL, 0), -EINVAL);
	cr_assert_eq(shmring_pool_stats(prd, NULL), -EINVAL);
	cr_assert_eq(shmring_pool_sub_stats(sub, NULL), -EINVAL);
	cr_assert_eq(shmring_pool_close(sub), 0);
	cr_assert_eq(shmring_pool_close(prd), 0);

	struct shmring_mpmc_opts mo = { .capacity = 8, .slot_size = 64 };
	struct shmring_mpmc *m;
	cr_assert_eq(shmring_mpmc_create(NULL, &mo, SHMRING_ROLE_PRODUCER, &m), 0);
	cr_assert_eq(shmring_mpmc_cell_get(m, 0, NULL), -EINVAL);
	cr_assert_eq(shmring_mpmc_close(m), 0);

	char path[64];
	cr_assert_eq(shmring_seg_path("cam0", NULL, 64), -EINVAL);
	cr_assert_eq(shmring_seg_path("cam0", path, 0), -EINVAL);
	cr_assert_eq(shmring_seg_path("cam0", path, sizeof(path)), 0);
	cr_assert_str_eq(path, "/dev/shm/cam0");
}

/* A timeout below SHMRING_FOREVER is -EINVAL in every blocking call, whether or not
 * the call would have had to wait: a "time left" computed past its deadline used to
 * wait for ever. */
Test(api, a_timeout_below_forever_is_einval_in_every_blocking_call)
{
	char buf[64];
	void *p;
	struct shmring_rec rec;
	struct shmring_spsc_opts so = { .capacity = 4096 };
	struct shmring_spsc *prod, *cons;
	cr_assert_eq(shmring_spsc_create(NULL, &so, SHMRING_ROLE_PRODUCER, &prod), 0);
	cr_assert_eq(shmring_spsc_open_fd(shmring_spsc_fd(prod), SHMRING_ROLE_CONSUMER, &cons), 0);
	for (int t = -2; t >= -3; t--) {
		cr_assert_eq(shmring_spsc_reserve_wait(prod, 8, &p, t), -EINVAL, "room, %d", t);
		cr_assert_eq(shmring_spsc_send(prod, "x", 1, t), -EINVAL);
		cr_assert_eq(shmring_spsc_peek_wait(cons, &rec, t), -EINVAL, "empty, %d", t);
		cr_assert_eq(shmring_spsc_recv(cons, buf, sizeof(buf), t), -EINVAL);
	}
	cr_assert_eq(shmring_spsc_send(prod, "x", 1, 0), 0);
	cr_assert_eq(shmring_spsc_recv(cons, buf, sizeof(buf), -2), -EINVAL, "a record waiting");
	cr_assert_eq(shmring_spsc_recv(cons, buf, sizeof(buf), SHMRING_FOREVER), 1);
	shmring_spsc_close(cons);
	shmring_spsc_close(prod);

	struct shmring_mpmc_opts mo = { .capacity = 8, .slot_size = 64 };
	struct shmring_mpmc *mp, *mc;
	cr_assert_eq(shmring_mpmc_create(NULL, &mo, SHMRING_ROLE_PRODUCER, &mp), 0);
	cr_assert_eq(shmring_mpmc_open_fd(shmring_mpmc_fd(mp), SHMRING_ROLE_CONSUMER, &mc), 0);
	cr_assert_eq(shmring_mpmc_enqueue(mp, "x", 1, -2), -EINVAL);
	cr_assert_eq(shmring_mpmc_enqueue_bulk(mp, buf, 8, 2, INT_MIN), -EINVAL);
	cr_assert_eq(shmring_mpmc_dequeue(mc, buf, sizeof(buf), -2), -EINVAL);
	cr_assert_eq(shmring_mpmc_enqueue(mp, "x", 1, 0), 0);
	cr_assert_eq(shmring_mpmc_dequeue(mc, buf, sizeof(buf), -2), -EINVAL, "a message waiting");
	cr_assert_eq(shmring_mpmc_dequeue(mc, buf, sizeof(buf), SHMRING_FOREVER), 1);
	shmring_mpmc_close(mc);
	shmring_mpmc_close(mp);

	struct shmring_pool_opts po = { .buf_size = 4096 };
	struct shmring_pool *pp, *ps;
	struct shmring_pool_frame f;
	cr_assert_eq(shmring_pool_create(NULL, &po, NULL, &pp), 0);
	cr_assert_eq(shmring_pool_subscribe_fd(shmring_pool_fd(pp), NULL, &ps), 0);
	cr_assert_eq(shmring_pool_loan_wait(pp, &f, -2), -EINVAL, "a buffer free");
	cr_assert_eq(shmring_pool_take_wait(ps, &f, -2), -EINVAL);
	shmring_pool_close(ps);
	shmring_pool_close(pp);

	struct shmring_bcast_opts bo = { .slots = 4, .slot_size = 64 };
	struct shmring_bcast *w, *r;
	struct shmring_bcast_rec brec;
	cr_assert_eq(shmring_bcast_create(NULL, &bo, SHMRING_ROLE_PRODUCER, &w), 0);
	cr_assert_eq(shmring_bcast_open_fd(shmring_bcast_fd(w), SHMRING_ROLE_READER, 0, &r), 0);
	cr_assert_eq(shmring_bcast_wait(r, -2), -EINVAL);
	cr_assert_eq(shmring_bcast_read_wait(r, buf, sizeof(buf), &brec, -2), -EINVAL);
	cr_assert_eq(shmring_bcast_peek_wait(r, &brec, -2), -EINVAL);
	cr_assert_eq(shmring_bcast_publish(w, "x", 1), 0);
	cr_assert_eq(shmring_bcast_read_wait(r, buf, sizeof(buf), &brec, -2), -EINVAL,
		     "a record waiting");
	cr_assert_eq(shmring_bcast_read_wait(r, buf, sizeof(buf), &brec, SHMRING_FOREVER), 1);
	shmring_bcast_close(r);
	shmring_bcast_close(w);
}

/* shmring_last_error_detail() describes the last failure of this thread, or nothing:
 * a failure that has no detail of its own does not leave an older one in place (a
 * missing ring's shm_open error stayed, and shmcat would print it for the next). */
Test(api, a_failure_without_a_detail_leaves_none_behind)
{
	char name[64];
	struct shmring_spsc *s;
	struct shmring_mpmc *m;
	cr_assert_eq(shmring_spsc_open(tu_name(name, sizeof(name), "nosuch"), SHMRING_ROLE_CONSUMER,
				       &s), -ENOENT);
	cr_assert_neq(shmring_last_error_detail()[0], 0, "a missing ring has a detail");
	cr_assert_eq(shmring_mpmc_create(NULL, NULL, SHMRING_ROLE_PRODUCER, &m), -EINVAL);
	cr_assert_null(strstr(shmring_last_error_detail(), name), "%s", shmring_last_error_detail());
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &s), -ENOENT);
	cr_assert_eq(shmring_spsc_create(NULL, NULL, 99, &s), -EINVAL);
	cr_assert_null(strstr(shmring_last_error_detail(), name), "%s", shmring_last_error_detail());
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &s), -ENOENT);
	cr_assert_eq(shmring_seg_unlink(name), -ENOENT);
	cr_assert_null(strstr(shmring_last_error_detail(), "shm_open"), "%s",
		       shmring_last_error_detail());
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &s), -ENOENT);
	cr_assert_eq(shmring_bcast_open_fd(-1, SHMRING_ROLE_READER, 0, NULL), -EINVAL);
	cr_assert_null(strstr(shmring_last_error_detail(), name), "%s", shmring_last_error_detail());
	cr_assert_eq(shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &s), -ENOENT);
	cr_assert_eq(shmring_pool_subscribe(name, NULL, NULL), -EINVAL);
	cr_assert_null(strstr(shmring_last_error_detail(), name), "%s", shmring_last_error_detail());
}

/* mode takes permission bits only: set-user-ID, set-group-ID and sticky bits mean
 * nothing on a segment and were applied as given. */
Test(api, a_mode_beyond_permission_bits_is_einval)
{
	char name[64];
	struct shmring_spsc_opts o = { .capacity = 4096, .mode = 01777 };
	struct shmring_spsc *s;
	cr_assert_eq(shmring_spsc_create(tu_name(name, sizeof(name), "mode"), &o,
					 SHMRING_ROLE_PRODUCER, &s), -EINVAL);
	o.mode = 04600;
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &s), -EINVAL);
	o.mode = 0640;
	cr_assert_eq(shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &s), 0);
	shmring_spsc_close(s);
	shmring_seg_unlink(name);
}
