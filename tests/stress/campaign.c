/* SPDX-License-Identifier: MIT */
/*
 * Crash campaign harness (see campaign.h). Usage:
 *   stress_crash [--kind spsc|mpmc|pool|bcast|all] [--kills N] [--long SECONDS]
 *                [--seed N] [--verbose]
 * Without --kills, each kind gets its CI share of kills (spsc 600, mpmc 600, pool 500,
 * bcast 400: 2,100 in all) times SHMRING_TEST_SCALE (at least 10 each). --long SECONDS runs the kinds in
 * turn, a minute each, without a kill limit, until SECONDS have passed.
 * Exit 0 when every check held, 1 on a failure (what and where on stderr).
 * SHMRING_SHMDUMP names the shmdump binary for the consistency and clean checks; without
 * it those checks are skipped, and the run says so.
 */
#include "campaign.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "shmring/segment.h"

/* ---- messages ---- */

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

void camp_msg_make(void *p, size_t size, uint32_t inst, uint64_t seq)
{
	struct camp_msg h = { 0, inst, (uint32_t)(size - CAMP_MSG_HDR), seq };
	uint8_t *b = p;
	uint64_t s = ((uint64_t)inst << 40) ^ seq;
	for (size_t i = CAMP_MSG_HDR; i < size; i += 8) {
		uint64_t v = mix(&s);
		memcpy(b + i, &v, size - i < 8 ? size - i : 8);
	}
	memcpy(b, &h, sizeof(h));
	h.sum = XXH3_64bits(b + 8, size - 8);
	memcpy(b, &h.sum, 8);
}

int camp_msg_check(const void *p, size_t size, uint32_t *inst, uint64_t *seq)
{
	struct camp_msg h;
	if (size < CAMP_MSG_HDR)
		return -1;
	memcpy(&h, p, sizeof(h));
	if (h.len != size - CAMP_MSG_HDR)
		return -1;
	if (XXH3_64bits((const uint8_t *)p + 8, size - 8) != h.sum)
		return -1;
	*inst = h.inst;
	*seq = h.seq;
	return 0;
}

/* ---- shared helpers ---- */

uint64_t camp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t camp_rand(struct camp *c)
{
	return mix(&c->rng);
}

/* The pause of a loop that polls a condition against a deadline (survivors finishing a
 * recovery: nothing in the library signals it); never a wait standing for an event. */
void camp_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Pauses between polls (camp_backoff, progress_since) and the random delay that picks
 * a kill instant: pacing, not synchronisation. */
static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Callers poll a condition (a counter in the ledger, a ring that was empty) against a
 * deadline; the pause between polls only keeps a 2-core machine free for the workers
 * they wait on. Nothing relies on its length. */
void camp_backoff(void)
{
	sleep_us(200);
}

int camp_again(int rc)
{
	if (rc == -EPIPE) {
		camp_backoff();
		return 1;
	}
	return rc == -ETIMEDOUT;
}

void camp_fail(struct camp *c, const char *fmt, ...)
{
	int zero = 0;
	if (atomic_compare_exchange_strong(&c->L->failed, &zero, 1)) {
		char m[sizeof(c->L->fail_msg)];
		va_list ap;
		va_start(ap, fmt);
		int n = snprintf(m, sizeof(m), "[pid %d] ", (int)getpid());
		vsnprintf(m + n, sizeof(m) - (size_t)n, fmt, ap);
		va_end(ap);
		memcpy(c->L->fail_msg, m, sizeof(m));
	}
	_exit(CAMP_EXIT_FAIL);
}

int camp_error(struct camp *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void camp_call_begin(struct camp *c, int slot)
{
	atomic_store_explicit(&c->L->w[slot].call_ns, camp_now_ns(), memory_order_relaxed);
}

void camp_call_end(struct camp *c, int slot)
{
	atomic_store_explicit(&c->L->w[slot].call_ns, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->L->w[slot].ops, 1, memory_order_relaxed);
}

/* ---- processes ---- */

static pid_t pids[CAMP_MAX_WORKERS];
static uint32_t next_inst;

int camp_worker_alive(struct camp *c, int slot)
{
	(void)c;
	return pids[slot] > 0;
}

int camp_final_child(struct camp *c, const char *what, void (*check)(struct camp *c))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return camp_error(c, "%s: fork: %s", what, strerror(errno));
	if (pid == 0) {
		check(c);
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return camp_error(c, "%s: waitpid: %s", what, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return camp_error(c, "%s: %s", what, c->L->fail_msg[0] ? c->L->fail_msg : "died");
	return 0;
}

static void spawn(struct camp *c, int slot)
{
	uint32_t inst = ++next_inst;
	struct camp_worker *w = &c->L->w[slot];
	atomic_store(&w->inst, inst);
	atomic_store(&w->started, 0);
	atomic_store(&w->call_ns, 0);
	atomic_store(&w->ops, 0);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_IGN);
		atomic_store(&w->pid, (int32_t)getpid());
		c->kind->worker(c, slot, inst);
	}
	pids[slot] = pid;
	atomic_store(&w->pid, (int32_t)pid);
}

static const char *describe(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "status 0x%x", st);
	return buf;
}

/* A worker ended on its own: a failure, unless it retired (closed cleanly on purpose:
 * then it is replaced like a killed one). */
static int worker_died(struct camp *c, int slot, int st)
{
	char d[96];
	pids[slot] = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == CAMP_EXIT_RETIRE) {
		c->retired++;
		spawn(c, slot);
		return 0;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == CAMP_EXIT_FAIL)
		return camp_error(c, "%s worker (slot %d): %s", c->kind->role(slot), slot, c->L->fail_msg);
	return camp_error(c, "%s worker (slot %d, instance %u) died on its own: %s", c->kind->role(slot),
			  slot, atomic_load(&c->L->w[slot].inst), describe(st, d, sizeof(d)));
}

/* Any worker gone, hung or failed? 0 or -1. */
static int watchdog(struct camp *c)
{
	for (int s = 0; s < c->kind->nworkers; s++) {
		if (pids[s] <= 0)
			continue;
		int st;
		pid_t r = waitpid(pids[s], &st, WNOHANG);
		if (r == pids[s] && worker_died(c, s, st))
			return -1;
		uint64_t t = atomic_load_explicit(&c->L->w[s].call_ns, memory_order_relaxed);
		uint64_t now = camp_now_ns();
		if (t && now > t && now - t > (uint64_t)(CAMP_CALL_MS + CAMP_HANG_SLACK_MS) * 1000000u)
			return camp_error(c, "%s worker (slot %d) has been in a %d ms call for %llu ms: hang",
					  c->kind->role(s), s, CAMP_CALL_MS,
					  (unsigned long long)((now - t) / 1000000u));
	}
	if (atomic_load(&c->L->failed))
		return camp_error(c, "%s", c->L->fail_msg);
	return 0;
}

static void signal_others(struct camp *c, int except, int sig)
{
	for (int s = 0; s < c->kind->nworkers; s++)
		if (s != except && pids[s] > 0)
			kill(pids[s], sig);
}

/* Stop a worker and wait until it is stopped (so that nothing moves while we look). */
static void stop_all(struct camp *c, int except)
{
	signal_others(c, except, SIGSTOP);
	for (int s = 0; s < c->kind->nworkers; s++) {
		if (s == except || pids[s] <= 0)
			continue;
		int st;
		pid_t r = waitpid(pids[s], &st, WUNTRACED);
		if (r == pids[s] && !WIFSTOPPED(st) && worker_died(c, s, st) == 0) {
			/* it retired and was replaced: stop the replacement too */
			kill(pids[s], SIGSTOP);
			waitpid(pids[s], &st, WUNTRACED);
		}
	}
}

/* ---- shmdump ---- */

static const char *shmdump_path(void)
{
	const char *p = getenv("SHMRING_SHMDUMP");
	return p && *p && access(p, X_OK) == 0 ? p : NULL;
}

/* Run shmdump with args; its exit status (0-255), or -1. Output kept in out. */
static int shmdump(const char *const *args, char *out, size_t outlen)
{
	const char *path = shmdump_path();
	int fd[2];
	if (!path || pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		char *argv[8];
		int n = 0;
		argv[n++] = (char *)path;
		for (int i = 0; args[i] && n < 7; i++)
			argv[n++] = (char *)args[i];
		argv[n] = NULL;
		execv(path, argv);
		_exit(127);
	}
	close(fd[1]);
	size_t got = 0;
	uint64_t deadline = camp_now_ns() + UINT64_C(10000000000);
	for (;;) {
		struct pollfd p = { fd[0], POLLIN, 0 };
		int r = poll(&p, 1, 100);
		if (r > 0) {
			char tmp[512];
			ssize_t n = read(fd[0], tmp, sizeof(tmp));
			if (n <= 0)
				break;
			size_t k = (size_t)n < outlen - 1 - got ? (size_t)n : outlen - 1 - got;
			memcpy(out + got, tmp, k);
			got += k;
		}
		if (camp_now_ns() > deadline) {
			kill(pid, SIGKILL);
			break;
		}
	}
	out[got] = '\0';
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int dump_check(struct camp *c, const char *when)
{
	char out[4096];
	const char *args[] = { "check", c->name, NULL };
	int rc = shmdump(args, out, sizeof(out));
	if (rc == 0)
		return 0;
	return camp_error(c, "shmdump check %s %s: exit %d\n%s", c->name, when, rc, out);
}

/* ---- the campaign ---- */

struct totals {
	uint64_t kills, seconds_x1000;
	char line[512];
};

static int progress_since(struct camp *c, uint64_t before, uint64_t deadline)
{
	while (atomic_load(&c->L->progress) == before) {
		if (watchdog(c))
			return -1;
		if (camp_now_ns() > deadline)
			return camp_error(c, "no progress for 10 s after kill %llu (every worker alive)",
					  (unsigned long long)c->kills);
		sleep_us(200);
	}
	return 0;
}

static int kill_one(struct camp *c)
{
	int n = c->kind->nworkers;
	int v = (int)(camp_rand(c) % (uint64_t)n);
	uint32_t inst = atomic_load(&c->L->w[v].inst);
	stop_all(c, v);
	if (c->msg[0])
		return -1;
	kill(pids[v], SIGKILL);
	int st;
	pid_t r;
	while ((r = waitpid(pids[v], &st, 0)) < 0 && errno == EINTR)
		;
	if (r != pids[v] || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		signal_others(c, v, SIGCONT);
		return worker_died(c, v, st);
	}
	pids[v] = 0;
	c->kills++;
	int rc = c->kind->after_kill(c, v, inst);
	if (rc == 0 && shmdump_path()) {
		char when[64];
		snprintf(when, sizeof(when), "after kill %llu (%s)", (unsigned long long)c->kills,
			 c->kind->role(v));
		rc = dump_check(c, when);
	}
	signal_others(c, v, SIGCONT);
	if (rc)
		return rc;
	spawn(c, v);
	return c->kind->settle(c, v, inst);
}

/* Stop every worker before any dies: killed one by one, the later ones could reap the
 * earlier ones' cells before the final inspection sees them in flight. */
static void kill_all(struct camp *c)
{
	int st;
	for (int s = 0; s < c->kind->nworkers; s++)
		if (pids[s] > 0 && kill(pids[s], SIGSTOP) == 0)
			waitpid(pids[s], &st, WUNTRACED);
	for (int s = 0; s < c->kind->nworkers; s++) {
		if (pids[s] <= 0)
			continue;
		kill(pids[s], SIGKILL);
		waitpid(pids[s], &st, 0);
		pids[s] = 0;
	}
}

static int run(const struct camp_kind *k, uint64_t kills, uint64_t max_ms, uint64_t seed, int verbose,
	       struct totals *tot)
{
	struct camp c;
	static unsigned counter;
	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.verbose = verbose;
	c.rng = seed;
	snprintf(c.name, sizeof(c.name), "shmring-stress-%s-%d-%u", k->name, (int)getpid(), counter++);
	size_t lsize = (sizeof(struct camp_ledger) + 63) & ~(size_t)63;
	/* large kind ledgers (bitmaps) are sparse: pages appear as they are touched */
	void *m = mmap(NULL, lsize + k->ledger_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return -1;
	}
	c.L = m;
	c.K = (uint8_t *)m + lsize;
	memset(pids, 0, sizeof(pids));
	next_inst = 0;
	uint64_t t0 = camp_now_ns();

	int rc = k->create(&c);
	for (int s = 0; rc == 0 && s < k->nworkers; s++)
		spawn(&c, s);
	uint64_t end = max_ms ? t0 + max_ms * 1000000u : UINT64_MAX;
	while (rc == 0 && c.kills < kills && camp_now_ns() < end &&
	       next_inst + 2u * (unsigned)k->nworkers < CAMP_MAX_INST) {
		/* a random instant: sometimes right away (during attach, recovery...), sometimes
		 * after the workers made progress, then up to 4 ms more */
		uint64_t x = camp_rand(&c);
		if (x & 1)
			rc = progress_since(&c, atomic_load(&c.L->progress), camp_now_ns() + UINT64_C(10000000000));
		if (rc)
			break;
		sleep_us((unsigned)((x >> 8) % 4000));
		if ((rc = watchdog(&c)) != 0)
			break;
		rc = kill_one(&c);
	}
	if (rc == 0)
		rc = watchdog(&c);
	kill_all(&c);
	if (rc == 0 && shmdump_path())
		rc = dump_check(&c, "with every worker dead");
	if (rc == 0)
		rc = k->finish(&c);
	if (rc == 0 && shmdump_path()) {
		char out[4096];
		char pat[80];
		snprintf(pat, sizeof(pat), "%s", c.name);
		const char *args[] = { "clean", pat, NULL };
		int d = shmdump(args, out, sizeof(out));
		char path[128];
		snprintf(path, sizeof(path), "/dev/shm/%s", c.name);
		if (d != 0)
			rc = camp_error(&c, "shmdump clean %s: exit %d\n%s", c.name, d, out);
		else if (access(path, F_OK) == 0)
			rc = camp_error(&c, "shmdump clean left %s in place (every participant is dead)\n%s",
					c.name, out);
	}
	shmring_seg_unlink(c.name); /* whatever happened */
	tot->kills += c.kills;
	tot->seconds_x1000 += (camp_now_ns() - t0) / 1000000u;
	if (rc == 0) {
		k->totals(&c, tot->line, sizeof(tot->line));
	}
	else
		fprintf(stderr, "FAIL %s campaign, after %llu kills (seed %llu): %s\n", k->name,
			(unsigned long long)c.kills, (unsigned long long)seed, c.msg);
	munmap(m, lsize + k->ledger_size);
	return rc;
}

static double scale(void)
{
	const char *s = getenv("SHMRING_TEST_SCALE");
	double v = s ? strtod(s, NULL) : 1.0;
	return v > 0 ? v : 1.0;
}

int main(int argc, char **argv)
{
	/* the kinds built in, each with its share of the CI run's kills */
	const struct camp_kind *kinds[4];
	uint64_t share[4];
	size_t nk = 0;
#ifdef CAMP_HAVE_SPSC
	kinds[nk] = &camp_spsc, share[nk++] = 600;
#endif
#ifdef CAMP_HAVE_MPMC
	kinds[nk] = &camp_mpmc, share[nk++] = 600;
#endif
#ifdef CAMP_HAVE_POOL
	kinds[nk] = &camp_pool, share[nk++] = 500;
#endif
#ifdef CAMP_HAVE_BCAST
	kinds[nk] = &camp_bcast, share[nk++] = 400;
#endif
	const char *which = "all";
	uint64_t kills = 0, long_s = 0, seed = 0;
	int verbose = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--kind") && i + 1 < argc)
			which = argv[++i];
		else if (!strcmp(argv[i], "--kills") && i + 1 < argc)
			kills = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--long") && i + 1 < argc)
			long_s = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--verbose"))
			verbose = 1;
		else {
			fprintf(stderr, "usage: %s [--kind spsc|mpmc|pool|bcast|all] [--kills N] "
					"[--long SECONDS] [--seed N] [--verbose]\n", argv[0]);
			return 2;
		}
	}
	if (!seed)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	if (!shmdump_path())
		printf("shmdump not built (SHMRING_SHMDUMP unset): skipping the shmdump check and clean steps\n");
	int failed = 0;
	uint64_t all_kills = 0, t0 = camp_now_ns();
	do {
		for (size_t i = 0; i < nk; i++) {
			if (strcmp(which, "all") && strcmp(which, kinds[i]->name))
				continue;
			struct totals tot;
			memset(&tot, 0, sizeof(tot));
			uint64_t n = kills;
			uint64_t max_ms = 0;
			if (long_s) {
				uint64_t spent = (camp_now_ns() - t0) / 1000000000u;
				if (spent >= long_s)
					break;
				n = UINT64_MAX;
				max_ms = 1000 * (long_s - spent < 60 ? long_s - spent : 60);
			} else if (!n) {
				n = (uint64_t)((double)share[i] * scale());
				if (n < 10)
					n = 10;
			}
			uint64_t s = seed + i + all_kills;
			if (run(kinds[i], n, max_ms, s, verbose, &tot) != 0)
				failed = 1;
			else
				printf("%-5s %llu kills in %.1f s (seed %llu): %s\n", kinds[i]->name,
				       (unsigned long long)tot.kills, (double)tot.seconds_x1000 / 1000.0,
				       (unsigned long long)s, tot.line);
			all_kills += tot.kills;
			fflush(stdout);
			if (failed)
				break;
		}
	} while (!failed && long_s && (camp_now_ns() - t0) / 1000000000u < long_s);
	printf("total: %llu kills in %.1f s%s\n", (unsigned long long)all_kills,
	       (double)(camp_now_ns() - t0) / 1e9, failed ? " (FAILED)" : "");
	return failed;
}
