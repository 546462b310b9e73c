/* SPDX-License-Identifier: MIT */
/*
 * The crash campaign: worker processes of one channel kind run against one named
 * segment; the harness SIGKILLs one of them at a random instant, checks, starts a
 * replacement, again and again (campaign.c). Each kind (campaign_<kind>.c) supplies the
 * workers and the checks that only it can make.
 *
 * Every message carries the instance id of the producer process that wrote it, its
 * sequence number within that instance and an XXH3 of both and of the payload
 * (struct camp_msg). Workers report to the harness through a ledger: a MAP_SHARED
 * anonymous region created before the first fork, which survives any worker's death.
 * A worker that sees a broken promise writes why into the ledger and exits with
 * CAMP_EXIT_FAIL; the harness turns that into a failed run.
 *
 * Killing at an instant while the others run, then looking: the harness SIGSTOPs every
 * survivor, SIGKILLs the victim, reaps it, lets the kind inspect the segment (nothing
 * moves), runs `shmdump check` on it, then SIGCONTs the survivors and starts the
 * replacement. Kinds whose recovery is done by survivors (MPMC cells, pool references)
 * then wait until it is complete before the next kill, so that every kill's in-flight
 * count is known exactly.
 */
#ifndef SHMRING_CAMPAIGN_H
#define SHMRING_CAMPAIGN_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CAMP_MAX_WORKERS 8
#define CAMP_MAX_INST 65536u   /* worker processes per campaign */
#define CAMP_EXIT_FAIL 3
#define CAMP_EXIT_RETIRE 4      /* a worker closed cleanly and left (bounded ledgers) */
#define CAMP_CALL_MS 300       /* timeout of every blocking call a worker makes */
#define CAMP_HANG_SLACK_MS 3000 /* a call still running this long past its timeout hangs */

/* A message: 24 bytes of header, then len bytes of payload derived from (inst, seq). */
struct camp_msg {
	uint64_t sum;  /* XXH3-64 of everything after this field */
	uint32_t inst; /* the producer process (instance) */
	uint32_t len;  /* payload bytes after the header */
	uint64_t seq;  /* 0, 1, 2... within the instance */
};
#define CAMP_MSG_HDR ((uint32_t)sizeof(struct camp_msg))

/* Write a message of total size `size` (>= CAMP_MSG_HDR) into p. */
void camp_msg_make(void *p, size_t size, uint32_t inst, uint64_t seq);
/* 0: a whole, intact message of exactly `size` bytes, with *inst and *seq set;
 * -1: bad checksum or impossible length. */
int camp_msg_check(const void *p, size_t size, uint32_t *inst, uint64_t *seq);

struct camp_worker {
	_Atomic int32_t pid;
	_Atomic uint32_t inst;
	_Atomic uint64_t call_ns;  /* CLOCK_MONOTONIC start of the blocking call in progress */
	_Atomic uint64_t ops;      /* successful operations (progress) */
	_Atomic uint32_t started;  /* the worker has opened the segment */
};

struct camp_ledger {
	_Atomic int failed;
	char fail_msg[512];
	_Atomic uint64_t progress; /* messages or frames accepted by all consumers */
	struct camp_worker w[CAMP_MAX_WORKERS];
	/* kind-specific area follows, 64-byte aligned */
};

struct camp;

struct camp_kind {
	const char *name;
	int nworkers;
	size_t ledger_size;                  /* bytes of the kind's ledger area */
	const char *(*role)(int slot);       /* "producer", "consumer", ... */
	int (*create)(struct camp *c);       /* 0, or a failure (message in c) */
	void (*worker)(struct camp *c, int slot, uint32_t inst) __attribute__((noreturn));
	/* The victim is dead and reaped, the survivors are stopped: look. 0 or -1. */
	int (*after_kill)(struct camp *c, int slot, uint32_t inst);
	/* The survivors run again and the replacement is started: wait for whatever
	 * recovery the kind promises, up to a deadline. 0 or -1. */
	int (*settle)(struct camp *c, int slot, uint32_t inst);
	/* Every worker is dead: drain, final checks, close every handle. 0 or -1. */
	int (*finish)(struct camp *c);
	/* One line of totals for the report. */
	void (*totals)(struct camp *c, char *buf, size_t len);
};

struct camp {
	const struct camp_kind *kind;
	char name[64];              /* segment name */
	struct camp_ledger *L;
	void *K;                    /* the kind's ledger area (shared) */
	void *state;                /* the kind's harness-only state */
	uint64_t rng;
	uint64_t kills;
	uint64_t retired;
	int verbose;
	char msg[512];              /* harness-side failure message */
};

/* ---- for workers (child processes) ---- */

/* Record a broken promise and exit(CAMP_EXIT_FAIL). */
void camp_fail(struct camp *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
void camp_call_begin(struct camp *c, int slot);
void camp_call_end(struct camp *c, int slot);
/* Wait a little before retrying a peer that is gone (the harness replaces it soon). */
void camp_backoff(void);
/* A blocking call returned rc: 1 if the worker should simply call again, because it
 * timed out, or because its peer is dead (-EPIPE: pause, the harness replaces it). */
int camp_again(int rc);
/* Step a worker's LCG; its high bits are the ones to use. */
static inline uint64_t camp_lcg(uint64_t *rng)
{
	return *rng = *rng * 6364136223846793005u + 1442695040888963407u;
}

/* ---- for the harness side of kinds ---- */

int camp_error(struct camp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t camp_now_ns(void);
uint64_t camp_rand(struct camp *c);
/* Sleep ms milliseconds (the harness's own pacing, never synchronisation). */
void camp_sleep_ms(unsigned ms);
/* A worker slot's process is alive in the harness's table. */
int camp_worker_alive(struct camp *c, int slot);
/* Run check(c) in a child: only a worker process may exit through camp_fail(), and
 * the final checks after every death need the same verdict path. 0, or -1 with
 * "what: why" in c. */
int camp_final_child(struct camp *c, const char *what, void (*check)(struct camp *c));

/* A kind's table; every campaign_<kind>.c names its hooks the same way. */
#define CAMP_KIND(id, workers, ledger_type)                                            \
	const struct camp_kind camp_##id = {                                           \
		.name = #id,                                                           \
		.nworkers = (workers),                                                 \
		.ledger_size = sizeof(ledger_type),                                    \
		.role = role,                                                          \
		.create = create,                                                      \
		.worker = worker,                                                      \
		.after_kill = after_kill,                                              \
		.settle = settle,                                                      \
		.finish = finish,                                                      \
		.totals = totals,                                                      \
	}

extern const struct camp_kind camp_spsc, camp_mpmc, camp_pool, camp_bcast;

#endif
