/* SPDX-License-Identifier: MIT */
/*
 * shmring-targets: the round-trip targets judged in one process pair, at one placement.
 *
 * The two vCPUs here move between placements every second or so, and the floor's round
 * trip moves with them several-fold (60, 120, 250-400 ns). shmring-bench runs its tests
 * one after the other, so a ratio of two of its tests may compare two placements. Here
 * every variant runs in blocks of round trips, the variants taking turns, and a ratio is
 * taken between the blocks of one turn (a cycle), which see the same placement; the
 * median over the cycles is the figure.
 *
 * The floor bounces one line in turn out of 64 (floor-64 in ideal.c): what one line
 * costs depends on where its address maps, and a ring's messages use many lines.
 * Besides the floor and the library's channels, "ideal" variants measure what a ring of
 * that shape costs with nothing but its stores and loads (no validation, no wake check,
 * no statistics): the part of a gap that belongs to the shape rather than to shmring.
 */
#ifndef SHMRING_TARGETS_H
#define SHMRING_TARGETS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmring/common.h"

#include <stdatomic.h>

struct tg_ideal;   /* ideal.c */
struct tg_lib;     /* lib.c */

/* One side's view: side 0 is the client (CPU A), 1 the server (CPU B). */
struct tg_ctx {
	int side;
	int one_cpu;             /* both sides on one CPU: a spinning wait sleeps each poll */
	pid_t peer;              /* the client watches the server, the server its parent */
	struct tg_ideal *ideal;
	struct tg_lib *lib;
};

/* A variant: trip() makes one round trip with stamp seq on the client's side (server 0)
 * or answers the one with stamp seq (server 1), passing the variant's arg along (which
 * channel; TG_DEMOTE: the sender demotes what it wrote). 0 or a negative errno
 * (-EPROTO: wrong or torn stamp). */
#define TG_DEMOTE 1
struct tg_variant {
	const char *name;
	const char *what;
	int (*trip)(struct tg_ctx *c, uint64_t seq, int server, int arg);
	int arg;
	int blocking; /* sleeps at every wait: shorter blocks; the only kind run on one CPU */
};

/* Bounded spin for every spinning wait of the tool: a pause per poll; every 4096 polls a
 * check that the peer lives (-ESRCH if not); after about a million, a yield per check (the
 * peer is pinned to the other CPU, so yielding matters only to other processes). With
 * both sides on one CPU (one_cpu), every poll checks and sleeps: the peer needs the CPU. */
int tg_spin_slow(const struct tg_ctx *c, unsigned n);

static inline int tg_spin(const struct tg_ctx *c, unsigned *n)
{
	shmring_cpu_relax();
	if (__builtin_expect(++*n % 4096 == 0 || c->one_cpu, 0))
		return tg_spin_slow(c, *n);
	return 0;
}

/* Spin (bounded, tg_spin) until *w reads want. Acquire: each caller names the release
 * store it pairs with. */
static inline int tg_wait_eq(const struct tg_ctx *c, _Atomic uint64_t *w, uint64_t want)
{
	unsigned n = 0;
	int rc;
	while (atomic_load_explicit(w, memory_order_acquire) != want)
		if ((rc = tg_spin(c, &n)) != 0)
			return rc;
	return 0;
}

/* Ideal shapes (ideal.c), over one MAP_SHARED mapping made before fork. */
int tg_ideal_setup(struct tg_ctx *c);
extern const struct tg_variant tg_floor, tg_floor64, tg_ring1, tg_ring2, tg_ring2d, tg_handoff,
	tg_handoffd, tg_handoff4k, tg_futex;

/* The library's channels (lib.c): made before fork, attached again by the server. */
int tg_lib_setup(struct tg_ctx *c);
int tg_lib_attach(struct tg_ctx *c);
extern const struct tg_variant tg_spsc64, tg_spsc64d, tg_pool1080, tg_pool1080d, tg_pool4k,
	tg_spsc_blocking;

#endif
