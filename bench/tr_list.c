/* SPDX-License-Identifier: MIT */
/* The shmring channel kinds this build benchmarks (meson defines BENCH_HAVE_<KIND> for
 * each kind whose header and source exist). */
#include "bench.h"

extern const struct bench_transport bench_tr_spsc, bench_tr_spsc_blocking;
#ifdef BENCH_HAVE_MPMC
extern const struct bench_transport bench_tr_mpmc;
#endif
#ifdef BENCH_HAVE_POOL
extern const struct bench_transport bench_tr_pool;
#endif
#ifdef BENCH_HAVE_BCAST
extern const struct bench_transport bench_tr_bcast;
#endif

const struct bench_transport *const bench_shmring_transports[] = {
	&bench_tr_spsc,
	&bench_tr_spsc_blocking,
#ifdef BENCH_HAVE_MPMC
	&bench_tr_mpmc,
#endif
#ifdef BENCH_HAVE_POOL
	&bench_tr_pool,
#endif
#ifdef BENCH_HAVE_BCAST
	&bench_tr_bcast,
#endif
	NULL,
};
