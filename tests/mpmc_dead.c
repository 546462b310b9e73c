/* SPDX-License-Identifier: MIT */
/*
 * MPMC: participants killed while holding cells. Included from test_mpmc.c.
 * Each test kills a real process at a chosen point (raise(SIGKILL) right after the
 * library call, or in the middle of a claim rebuilt from the header's own primitives)
 * and checks that survivors carry on, and what was lost and counted.
 */

/* Dies holding a claimed, unpublished cell, after publishing `before` messages. */
struct die_args {
	const struct ring *g;
	uint32_t before;
	uint32_t role;
	int gated;    /* die in the middle of a gated claim of 2 cells */
	int gap;      /* consumer: a gap between the gate and the second cell */
};

static int die_holding_child(void *a)
{
	const struct die_args *d = a;
	struct shmring_mpmc *r;
	if (shmring_mpmc_open(d->g->name, d->role, &r))
		return 10;
	if (d->role == SHMRING_ROLE_PRODUCER) {
		for (uint32_t i = 0; i < d->before; i++)
			if (send_u32(r, 100 + i, 1000))
				return 11;
		if (d->gated) {
			/* the first steps of shmring__mpmc_prod_claim(n = 2): gate, one more */
			uint64_t t = atomic_load(&r->ctrl->tail);
			uint64_t e = shmring__mpmc_word(t, SHMRING__MPMC_FREE, 0);
			if (!shmring__mpmc_cas(&shmring__mpmc_cell(r, t)->word, &e,
					       shmring__mpmc_word(t, SHMRING__MPMC_WRITING,
								  r->tag | SHMRING__MPMC_GATE)))
				return 12;
			e = shmring__mpmc_word(t + 1, SHMRING__MPMC_FREE, 0);
			if (!shmring__mpmc_cas(&shmring__mpmc_cell(r, t + 1)->word, &e,
					       shmring__mpmc_word(t + 1, SHMRING__MPMC_WRITING, r->tag)))
				return 13;
		} else {
			void *b;
			if (shmring_mpmc_enqueue_start(r, 1, 1, &b, 1000) != 1)
				return 12;
			memset(b, 0xee, 2); /* half written */
		}
	} else {
		if (d->gated) {
			/* the first steps of shmring__mpmc_cons_claim(n = 2) */
			uint64_t h = atomic_load(&r->ctrl->head);
			uint64_t e = shmring__mpmc_word(h, SHMRING__MPMC_FULL, 0);
			if (!shmring__mpmc_cas(&shmring__mpmc_cell(r, h)->word, &e,
					       shmring__mpmc_word(h, SHMRING__MPMC_READING,
								  r->tag | SHMRING__MPMC_GATE)))
				return 12;
			uint64_t s = h + 1 + (uint64_t)d->gap; /* stepping over the gap */
			e = shmring__mpmc_word(s, SHMRING__MPMC_FULL, 0);
			if (!shmring__mpmc_cas(&shmring__mpmc_cell(r, s)->word, &e,
					       shmring__mpmc_word(s, SHMRING__MPMC_READING, r->tag)))
				return 13;
		} else {
			struct shmring_mpmc_msg m;
			if (shmring_mpmc_dequeue_start(r, 1, 1, &m, 1000) != 1)
				return 12;
		}
	}
	raise(SIGKILL);
	return 14;
}

static void run_and_kill_gap(const struct ring *g, uint32_t role, uint32_t before, int gated,
			     int gap)
{
	struct die_args d = { .g = g, .before = before, .role = role, .gated = gated, .gap = gap };
	cr_assert_eq(tu_wait(tu_fork(die_holding_child, &d)), -SIGKILL);
}

static void run_and_kill(const struct ring *g, uint32_t role, uint32_t before, int gated)
{
	struct die_args d = { .g = g, .before = before, .role = role, .gated = gated };
	cr_assert_eq(tu_wait(tu_fork(die_holding_child, &d)), -SIGKILL);
}

Test(mpmc, dead_producer_mid_write_is_skipped_and_counted, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	run_and_kill(&g, SHMRING_ROLE_PRODUCER, 1, 0);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	cr_assert_eq(send_u32(p, 7, 0), 0, "producers are not held up by the dead one");
	uint32_t v;
	cr_assert_eq(recv_u32(g.r, &v, 10000), 0);
	cr_assert_eq(v, 100);
	/* the head now sits on the dead producer's cell: the consumer must get past it */
	cr_assert_eq(recv_u32(g.r, &v, 10000), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1, "the message being written");
	cr_assert_eq(recv_u32(g.r, &v, 0), -EAGAIN, "and nothing else");
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

Test(mpmc, non_blocking_callers_also_recover, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	run_and_kill(&g, SHMRING_ROLE_PRODUCER, 0, 0);
	cr_assert_eq(send_u32(p, 9, 0), 0);
	uint32_t v;
	int rc;
	while ((rc = recv_u32(g.r, &v, 0)) == -EAGAIN)
		; /* recovery runs inside the failing calls, rate-limited by the clock */
	cr_assert_eq(rc, 0);
	cr_assert_eq(v, 9);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.peer_deaths), 1);
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

Test(mpmc, dead_consumer_holding_a_message_is_reclaimed, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 4, 8, SHMRING_ROLE_PRODUCER);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(send_u32(g.r, i, 0), 0);
	run_and_kill(&g, SHMRING_ROLE_CONSUMER, 0, 0); /* takes 0 and dies */
	/* full: the cell of message 0 is held by the dead consumer */
	cr_assert_eq(send_u32(g.r, 4, 10000), 0, "the producer got the cell back");
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	for (uint32_t i = 1; i <= 4; i++) {
		cr_assert_eq(recv_u32(c, &v, 0), 0);
		cr_assert_eq(v, i, "message 0 is lost, never delivered twice");
	}
	cr_assert_eq(recv_u32(c, &v, 0), -EAGAIN);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, dead_producer_in_a_gated_claim_loses_nothing, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_PRODUCER);
	run_and_kill(&g, SHMRING_ROLE_PRODUCER, 1, 1);
	struct shmring_mpmc_ctrl *ctl = shmring_seg_ctrl(shmring_mpmc_seg(g.r));
	/* the gate blocks other producers until recovery gives the run back */
	cr_assert_eq(send_u32(g.r, 5, 10000), 0);
	cr_assert_eq(send_u32(g.r, 6, 0), 0);
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 100);
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 5, "no gap: the reverted cells were reused in place");
	cr_assert_eq(recv_u32(c, &v, 0), 0);
	cr_assert_eq(v, 6);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 0, "nothing had been handed out");
	cr_assert_eq(atomic_load(&ctl->reverted), 2);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.peer_deaths), 1);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

Test(mpmc, dead_consumer_in_a_gated_claim_loses_nothing, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(send_u32(p, i, 0), 0);
	run_and_kill(&g, SHMRING_ROLE_CONSUMER, 0, 1); /* gates 0, takes 1, dies */
	uint32_t v;
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(recv_u32(g.r, &v, 10000), 0);
		cr_assert_eq(v, i, "given back, delivered once, in order");
	}
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 0);
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

Test(mpmc, dead_consumer_in_a_gated_claim_over_a_gap_loses_nothing, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	void *b[2];
	uint32_t len = 4, v0 = 0, v2 = 2;
	cr_assert_eq(shmring_mpmc_enqueue_start(p, 2, 2, b, 0), 2);
	memcpy(b[0], &v0, 4);
	cr_assert_eq(shmring_mpmc_enqueue_finish(p, 1, &len), 1); /* position 1 is a gap */
	cr_assert_eq(send_u32(p, v2, 0), 0);
	run_and_kill_gap(&g, SHMRING_ROLE_CONSUMER, 0, 1, 1); /* gates 0, takes 2, dies */
	uint32_t v;
	cr_assert_eq(recv_u32(g.r, &v, 10000), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(recv_u32(g.r, &v, 0), 0);
	cr_assert_eq(v, 2, "given back across the gap");
	cr_assert_eq(recv_u32(g.r, &v, 0), -EAGAIN);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 0);
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

static int die_after_claim_child(void *a)
{
	const struct ring *g = a;
	struct shmring_mpmc *r;
	void *b;
	if (shmring_mpmc_open(g->name, SHMRING_ROLE_PRODUCER, &r))
		return 10;
	if (shmring_mpmc_enqueue_start(r, 1, 1, &b, 0) != 1)
		return 11;
	raise(SIGKILL);
	return 12;
}

/* More deaths than table slots: each newcomer reaps the dead before joining. */
Test(mpmc, dead_participants_never_fill_the_table, .timeout = 60)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_NONE);
	const int n = SHMRING_MAX_PARTS + 12;
	for (int i = 0; i < n; i++)
		cr_assert_eq(tu_wait(tu_fork(die_after_claim_child, &g)), -SIGKILL, "child %d", i);
	cr_assert_eq(shmring_mpmc_recover(g.r), 1, "the last one");
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), (uint64_t)n);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.peer_deaths), (uint64_t)n);
	unsigned live, dead;
	shmring_part_count(shmring_mpmc_seg(g.r), 0, &live, &dead);
	cr_assert_eq(live + dead, 0, "table clean");
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	int rc = recv_u32(c, &v, 0);
	cr_assert_eq(rc, -EAGAIN, "only gaps in the ring (got %d)", rc);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

struct orphan_args {
	const struct ring *g;
	struct tu_gate ready, done;
};

static int live_producer_child(void *a)
{
	struct orphan_args *o = a;
	struct shmring_mpmc *p;
	if (shmring_mpmc_open(o->g->name, SHMRING_ROLE_PRODUCER, &p))
		return 10;
	if (send_u32(p, 7, 0))
		return 11;
	tu_gate_open(&o->ready);
	tu_gate_wait(&o->done);
	shmring_mpmc_close(p);
	return 0;
}

/* A busy cell whose owner's table slot was freed without reclaiming it, then reused by a
 * live process (another generation): whoever is stuck on the cell reclaims it. */
Test(mpmc, orphaned_cell_of_a_reused_slot_is_reclaimed, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_NONE);
	cr_assert_eq(tu_wait(tu_fork(die_after_claim_child, &g)), -SIGKILL);
	struct shmring_seg *seg = shmring_mpmc_seg(g.r);
	struct shmring_mpmc_cell_info ci;
	cr_assert_eq(shmring_mpmc_cell_get(g.r, 0, &ci), 0);
	cr_assert_eq(ci.phase, SHMRING__MPMC_WRITING);
	/* free the dead slot behind the ring's back */
	cr_assert_eq(shmring_part_take(seg, ci.owner), 0);
	shmring_part_leave(seg, ci.owner);
	struct orphan_args o = { .g = &g };
	tu_gate_init(&o.ready);
	tu_gate_init(&o.done);
	pid_t pid = tu_fork(live_producer_child, &o);
	tu_gate_wait(&o.ready);
	struct shmring_part_info info;
	cr_assert_eq(shmring_part_get(seg, ci.owner, &info), 0);
	cr_assert_eq(info.state, SHMRING_PART_ACTIVE, "the slot was reused");
	cr_assert_eq(info.alive, 1);
	cr_assert_neq(info.gen & 0xff, ci.gen, "by another generation");
	struct shmring_mpmc *c = ring_open(&g, SHMRING_ROLE_CONSUMER);
	uint32_t v;
	cr_assert_eq(recv_u32(c, &v, 10000), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1);
	tu_gate_open(&o.done);
	cr_assert_eq(tu_wait(pid), 0);
	tu_gate_close(&o.ready);
	tu_gate_close(&o.done);
	shmring_mpmc_close(c);
	ring_destroy(&g);
}

/* ---- the documented recovery bound ---- */

/* A participant that takes one cell (a producer: WRITING at the tail; a consumer:
 * READING at the head), says so, and waits to be killed. */
struct hold_args {
	const struct ring *g;
	uint32_t role;
	struct tu_gate holding;
};

static int hold_one_cell_child(void *a)
{
	struct hold_args *h = a;
	struct shmring_mpmc *r;
	if (shmring_mpmc_open(h->g->name, h->role, &r))
		return 10;
	if (h->role == SHMRING_ROLE_PRODUCER) {
		void *b;
		if (shmring_mpmc_enqueue_start(r, 1, 1, &b, 0) != 1)
			return 11;
	} else {
		struct shmring_mpmc_msg m;
		if (shmring_mpmc_dequeue_start(r, 1, 1, &m, 0) != 1)
			return 11;
	}
	tu_gate_open(&h->holding);
	for (;;)
		pause(); /* until SIGKILL */
}

/* A survivor that blocks on the held cell: one send or receive with a long timeout;
 * it stores when the call returned (CLOCK_MONOTONIC, in shared memory). */
struct blocked_args {
	const struct ring *g;
	uint32_t role;
	_Atomic uint64_t *returned_ns;
};

static int blocked_survivor_child(void *a)
{
	struct blocked_args *b = a;
	struct shmring_mpmc *r;
	if (shmring_mpmc_open(b->g->name, b->role, &r))
		return 10;
	uint32_t v = 0;
	int rc = b->role == SHMRING_ROLE_PRODUCER ? send_u32(r, 77, 10000) : recv_u32(r, &v, 10000);
	atomic_store(b->returned_ns, shmring_now_ns());
	if (rc)
		return 20 + (rc == -ETIMEDOUT);
	if (b->role == SHMRING_ROLE_CONSUMER && v != 7)
		return 30;
	shmring_mpmc_close(r);
	return 0;
}

/*
 * mpmc.h: "a dead participant's cells are released within SHMRING_PEER_CHECK_MS (20 ms)
 * plus one scan ... of the first survivor that waits on them". A survivor asleep on a
 * cell held by a live participant; the holder is SIGKILLed; from the moment waitpid
 * confirms the death to the survivor's return must take at most that bound, plus 1 s of
 * slack for a loaded machine (a scan is microseconds; the slack is scheduling).
 */
static void recovery_bound(uint32_t victim_role)
{
	struct ring g;
	uint32_t survivor_role = victim_role == SHMRING_ROLE_PRODUCER ? SHMRING_ROLE_CONSUMER
								      : SHMRING_ROLE_PRODUCER;
	/* the creator keeps a live handle of the victim's role, so that the survivor
	 * sees no EOF once the victim is gone */
	ring_create(&g, 2, 8, victim_role);
	if (victim_role == SHMRING_ROLE_CONSUMER) {
		/* full: the victim will hold message 0; the survivor producer needs its cell */
		struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
		cr_assert_eq(send_u32(p, 0, 0), 0);
		cr_assert_eq(send_u32(p, 1, 0), 0);
		shmring_mpmc_close(p);
	}
	struct hold_args h = { .g = &g, .role = victim_role };
	tu_gate_init(&h.holding);
	pid_t victim = tu_fork(hold_one_cell_child, &h);
	tu_gate_wait(&h.holding);
	if (victim_role == SHMRING_ROLE_PRODUCER)
		cr_assert_eq(send_u32(g.r, 7, 0), 0, "behind the held cell: what the survivor will get");
	_Atomic uint64_t *returned = shared_alloc(sizeof(*returned));
	struct blocked_args b = { .g = &g, .role = survivor_role, .returned_ns = returned };
	pid_t survivor = tu_fork(blocked_survivor_child, &b);
	/* the survivor sleeps on the held cell (it counts the sleep just before it) */
	while (stat_of(&ring_hdr(&g)->stats.sleeps) == 0)
		sched_yield();
	uint64_t t_kill = shmring_now_ns();
	cr_assert_eq(kill(victim, SIGKILL), 0);
	cr_assert_eq(tu_wait(victim), -SIGKILL);
	uint64_t t_dead = shmring_now_ns();
	cr_assert_eq(tu_wait(survivor), 0, "the survivor's call succeeded once the cell came back");
	uint64_t t_ret = atomic_load(returned);
	uint64_t from_dead = t_ret > t_dead ? t_ret - t_dead : 0;
	const uint64_t bound_ms = SHMRING_PEER_CHECK_MS + 1000;
	cr_log_info("mpmc recovery bound, dead %s: the blocked %s returned %.1f ms after waitpid "
		    "confirmed the death (%.1f ms after the kill); documented %d ms + one scan",
		    victim_role == SHMRING_ROLE_PRODUCER ? "producer" : "consumer",
		    survivor_role == SHMRING_ROLE_PRODUCER ? "producer" : "consumer",
		    (double)from_dead / 1e6, (double)(t_ret - t_kill) / 1e6, SHMRING_PEER_CHECK_MS);
	cr_assert_lt(from_dead, bound_ms * 1000000, "recovered in %.1f ms, bound %llu ms",
		     (double)from_dead / 1e6, (unsigned long long)bound_ms);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1, "the held message");
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.peer_deaths), 1);
	tu_gate_close(&h.holding);
	munmap((void *)returned, sizeof(*returned));
	ring_destroy(&g);
}

Test(mpmc, dead_producer_is_recovered_within_the_documented_bound, .timeout = 30)
{
	recovery_bound(SHMRING_ROLE_PRODUCER);
}

Test(mpmc, dead_consumer_is_recovered_within_the_documented_bound, .timeout = 30)
{
	recovery_bound(SHMRING_ROLE_CONSUMER);
}

/* A caller looping on timeouts shorter than SHMRING_PEER_CHECK_MS never ends a sleep
 * slice before its deadline: recovery (and the EOF check) must also run at the deadline
 * once the handle's last scan is that old. Every call lasts at least its timeout, so
 * 20 ms / 5 ms + 1 calls are enough; 20 are allowed. (Before: never.) */
static int recv_short(struct shmring_mpmc *r, uint32_t *v, int *calls)
{
	int rc = -ETIMEDOUT;
	for (*calls = 0; rc == -ETIMEDOUT && *calls < 20; ++*calls)
		rc = recv_u32(r, v, 5);
	return rc;
}

Test(mpmc, short_timeouts_still_recover_a_dead_producers_cell, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	struct shmring_mpmc *p = ring_open(&g, SHMRING_ROLE_PRODUCER);
	run_and_kill(&g, SHMRING_ROLE_PRODUCER, 0, 0); /* dies holding the head's cell */
	cr_assert_eq(send_u32(p, 9, 0), 0, "behind the dead producer's cell");
	uint32_t v = 0;
	int calls;
	int rc = recv_short(g.r, &v, &calls);
	cr_assert_eq(rc, 0, "after %d calls: %s", calls, shmring_strerror(rc));
	cr_assert_eq(v, 9);
	cr_assert_eq(stat_of(&ring_hdr(&g)->stats.abandoned), 1);
	shmring_mpmc_close(p);
	ring_destroy(&g);
}

static int send_one_and_die(void *a)
{
	const struct ring *g = a;
	struct shmring_mpmc *r;
	if (shmring_mpmc_open(g->name, SHMRING_ROLE_PRODUCER, &r))
		return 10;
	if (send_u32(r, 5, 1000))
		return 11;
	raise(SIGKILL);
	return 12;
}

Test(mpmc, short_timeouts_still_see_eof_when_the_last_producer_dies, .timeout = 30)
{
	struct ring g;
	ring_create(&g, 8, 8, SHMRING_ROLE_CONSUMER);
	cr_assert_eq(tu_wait(tu_fork(send_one_and_die, &g)), -SIGKILL);
	uint32_t v = 0;
	int calls;
	cr_assert_eq(recv_short(g.r, &v, &calls), 0);
	cr_assert_eq(v, 5, "what it sent comes first");
	int rc = recv_short(g.r, &v, &calls);
	cr_assert_eq(rc, -EPIPE, "after %d calls: %s", calls, shmring_strerror(rc));
	ring_destroy(&g);
}
