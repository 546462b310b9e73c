/* SPDX-License-Identifier: MIT */
/* Helpers shared by the test programs: unique names, scaling, payload patterns, forks. */
#ifndef SHMRING_TESTUTIL_H
#define SHMRING_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* A segment name unique to this process and call: "shmring-test-TAG-PID-N". */
const char *tu_name(char *buf, size_t len, const char *tag);

/* SHMRING_TEST_SCALE (float, default 1.0): CI lowers it for sanitizer builds. */
double tu_scale(void);
/* n scaled, at least min. */
uint64_t tu_scaled(uint64_t n, uint64_t min);

/* Small fast PRNG (splitmix64). */
uint64_t tu_rand(uint64_t *state);

/* Deterministic payload from a seed; tu_check returns 1 if p holds that pattern. */
void tu_fill(void *p, size_t len, uint64_t seed);
int tu_check(const void *p, size_t len, uint64_t seed);

/* Run fn(arg) in a child process; the child exits with fn's return value. */
pid_t tu_fork(int (*fn)(void *arg), void *arg);
/* Fork a child that does nothing until the write end hold[1] is closed everywhere (it
 * closes its own copy), then exits: a process that outlives its parent, holding what
 * fork gave it. Returns once the child runs (its atfork handlers are done): its pid,
 * or -1. */
pid_t tu_fork_idle_child(const int hold[2]);
/* Wait for pid: its exit status (0-255), or -SIGNAL if it was killed by a signal. */
int tu_wait(pid_t pid);

/* Allow this process `spare` new descriptors (RLIMIT_NOFILE at the lowest free
 * descriptor + spare: every one below it is in use); old, if not NULL, gets the limit
 * before. 0 or -1. For a child that runs out of descriptors on purpose. */
int tu_spare_fds(int spare, struct rlimit *old);

/* A pipe used as a one-shot barrier between processes (no sleeps). */
struct tu_gate { int fd[2]; };
void tu_gate_init(struct tu_gate *g);
void tu_gate_open(struct tu_gate *g);  /* writer side: release the waiter */
void tu_gate_wait(struct tu_gate *g);  /* blocks until opened (or the opener died) */
void tu_gate_close(struct tu_gate *g);

#endif
