/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tu_name(char *buf, size_t len, const char *tag)
{
	static unsigned counter;
	snprintf(buf, len, "shmring-test-%s-%d-%u", tag, (int)getpid(), counter++);
	return buf;
}

double tu_scale(void)
{
	const char *s = getenv("SHMRING_TEST_SCALE");
	double v = s ? strtod(s, NULL) : 1.0;
	return v > 0 ? v : 1.0;
}

uint64_t tu_scaled(uint64_t n, uint64_t min)
{
	uint64_t v = (uint64_t)((double)n * tu_scale());
	return v < min ? min : v;
}

uint64_t tu_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

void tu_fill(void *p, size_t len, uint64_t seed)
{
	uint8_t *b = p;
	uint64_t s = seed;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = tu_rand(&s);
		memcpy(b + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = tu_rand(&s);
		memcpy(b + i, &v, len - i);
	}
}

int tu_check(const void *p, size_t len, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t s = seed;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = tu_rand(&s);
		if (memcmp(b + i, &v, 8) != 0)
			return 0;
	}
	if (i < len) {
		uint64_t v = tu_rand(&s);
		if (memcmp(b + i, &v, len - i) != 0)
			return 0;
	}
	return 1;
}

pid_t tu_fork(int (*fn)(void *arg), void *arg)
{
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* a test that fails or times out must not leave children running (they would
		 * hold the runner's output pipe open and spin for ever): die with the parent */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		_exit(fn(arg) & 0xff);
	}
	return pid;
}

int tu_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1000;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return -WTERMSIG(st);
	return -1000;
}

void tu_gate_init(struct tu_gate *g)
{
	if (pipe(g->fd) != 0)
		abort();
}

void tu_gate_open(struct tu_gate *g)
{
	char c = 1;
	if (write(g->fd[1], &c, 1) != 1)
		abort();
}

void tu_gate_wait(struct tu_gate *g)
{
	char c;
	while (read(g->fd[0], &c, 1) < 0 && errno == EINTR)
		;
}

void tu_gate_close(struct tu_gate *g)
{
	close(g->fd[0]);
	close(g->fd[1]);
}

pid_t tu_fork_idle_child(const int hold[2])
{
	int ready[2];
	if (pipe(ready) != 0)
		return -1;
	pid_t g = fork();
	if (g == 0) {
		/* fork() returned here after the atfork handlers ran (the library's closes
		 * what the child must not keep): say so, then idle */
		char b = 1;
		close(ready[0]);
		if (write(ready[1], &b, 1) != 1)
			_exit(1);
		close(ready[1]);
		close(hold[1]);
		while (read(hold[0], &b, 1) < 0) /* EOF once every other copy is closed */
			;
		_exit(0);
	}
	close(ready[1]);
	char b;
	ssize_t n;
	while (g > 0 && (n = read(ready[0], &b, 1)) < 0 && errno == EINTR)
		;
	close(ready[0]);
	return g;
}

int tu_spare_fds(int spare, struct rlimit *old)
{
	struct rlimit rl;
	int lowest = dup(0); /* every descriptor below this one is in use */
	if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	close(lowest);
	if (old)
		*old = rl;
	rl.rlim_cur = (rlim_t)(lowest + spare);
	return setrlimit(RLIMIT_NOFILE, &rl);
}
