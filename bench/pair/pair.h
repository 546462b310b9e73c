/* SPDX-License-Identifier: MIT */
/*
 * Paired A/B of two builds of a channel kind's inline fast path, in one process pair
 * (see pair_main.c). A kind file (pool_pair.c, spsc_pair.c, ...) is compiled three times:
 * with -DPAIR_PART=a and the include directory of build A, with -DPAIR_PART=b and that
 * of build B (the round-trip pieces), and with -DPAIR_PART=main (its setup, which uses
 * the library linked in: both builds must share the on-memory format, the layout of
 * the handle structs and src/).
 */
#ifndef SHMRING_PAIR_H
#define SHMRING_PAIR_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "shmring/common.h"

/* What a received message leaves to finish (a frame to release, a record to give back). */
struct pair_tok {
	_Alignas(16) unsigned char b[128];
};

/* The round-trip pieces of one build. send: one message stamped seq, waiting (spinning)
 * for room. recv: the next message's stamp in *seq (UINT64_MAX if torn), waiting
 * (spinning) for it; done: give it back. 0 or a negative errno. */
struct pair_ops {
	int (*send)(void *tx, uint64_t seq, size_t size);
	int (*recv)(void *rx, uint64_t *seq, size_t size, struct pair_tok *t);
	int (*done)(void *rx, struct pair_tok *t);
};
extern const struct pair_ops pair_ops_a, pair_ops_b;

/* The kind's setup (PAIR_PART=main). Before fork: make channel ab (client -> server) and
 * ba, the client's ends in *tx / *rx, descriptors for the server in fds[0..1]. In the
 * server: attach its ends. 0 or a negative errno. */
int pair_create(size_t size, void **tx, void **rx, int fds[2]);
int pair_attach(const int fds[2], void **rx, void **tx);
extern const char *pair_kind;
extern const size_t pair_default_size;

/* A spin for every wait of the harness, bounded: after 2^26 polls (a second or more) the
 * peer is taken for stuck or dead, -ETIMEDOUT (a broken build B must not hang the run). */
static inline int pair_spin(uint64_t *n)
{
	shmring_cpu_relax();
	return ++*n < (UINT64_C(1) << 26) ? 0 : -ETIMEDOUT;
}

/* The stamp in the first and last 8 bytes of a message, as the benchmark does. */
static inline void pair_stamp(unsigned char *p, size_t len, uint64_t seq)
{
	__builtin_memcpy(p, &seq, 8);
	__builtin_memcpy(p + ((len - 8) & ~(size_t)7), &seq, 8);
}

static inline uint64_t pair_unstamp(const unsigned char *p, size_t len)
{
	uint64_t a, b;
	__builtin_memcpy(&a, p, 8);
	__builtin_memcpy(&b, p + ((len - 8) & ~(size_t)7), 8);
	return a == b ? a : UINT64_MAX;
}

#endif
