/* SPDX-License-Identifier: MIT */
/*
 * The process harness: fork the pair, pin both, attach, barrier, run, collect. A
 * watchdog (SIGALRM, no SA_RESTART) ends any test that hangs: it kills the child and
 * sets bench_abort, which every loop checks and which makes blocked calls return EINTR.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

volatile sig_atomic_t bench_abort;
/* the children of the test running, for the watchdog: all of them, since the parent
 * may be waiting for any one (written before the alarm is set, cleared after) */
static pid_t g_kids[2 * BENCH_MAX_PROCS];
static volatile sig_atomic_t g_nkids;
static uint64_t *g_samples;
static uint64_t g_samples_cap;

static void on_alarm(int sig)
{
	(void)sig;
	bench_abort = 1;
	for (int k = 0; k < g_nkids; k++)
		kill(g_kids[k], SIGKILL);
}

int bench_fail(struct bench_ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return rc < 0 ? rc : -EIO;
}

static int read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t k = read(fd, b, n);
		if (k < 0 && errno == EINTR && !bench_abort)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Payload buffers are page aligned with a page of headroom before them (SysV message
 * queues put their type word there, so they need no staging copy). */
#define HEADROOM 4096u

static uint8_t *alloc_buf(size_t n, int fill)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, HEADROOM + n))
		return NULL;
	memset(p, fill, HEADROOM + n); /* fault every page in now, not in the timed part */
	return (uint8_t *)p + HEADROOM;
}

static void free_buf(uint8_t *b)
{
	if (b)
		free(b - HEADROOM);
}

int bench_stream_check(struct bench_ctx *c, struct bench_loop *L)
{
	L->left = L->every;
	if (bench_abort)
		return 1;
	uint64_t t = bench_ticks();
	if (!L->timed) {
		if (t >= L->warm_end) {
			L->timed = 1;
			L->first = L->seq;
			c->t0_ns = bench_clock_ns();
			L->deadline = t + c->budget_ticks;
		}
		return 0;
	}
	return t >= L->deadline && L->seq - L->first >= c->cfg->min_iters;
}

int bench_rx_stop(struct bench_ctx *c, struct bench_rx *rx)
{
	uint64_t now = bench_clock_ns(), e = atomic_load(&c->sh->c_end_ns);
	while (e < now && !atomic_compare_exchange_weak(&c->sh->c_end_ns, &e, now))
		;
	atomic_fetch_add(&c->sh->c_msgs, rx->count);
	atomic_fetch_add(&c->sh->c_bad, rx->bad);
	atomic_fetch_add(&c->sh->c_lost, rx->lost);
	atomic_fetch_add(&c->sh->c_stopped, 1);
	return 1;
}

static void install_watchdog(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: blocked calls return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void init_ctx(struct bench_ctx *c, const struct bench_spec *s, const struct bench_cfg *cfg,
		     struct bench_shared *sh)
{
	memset(c, 0, sizeof *c);
	c->spec = s;
	c->cfg = cfg;
	c->sh = sh;
	c->spin_ticks = bench_ns_ticks(cfg->spin_us * 1000.0);
	c->warm_ticks = bench_ns_ticks(cfg->warm_s * 1e9);
	c->budget_ticks = bench_ns_ticks(cfg->budget_s * 1e9);
	c->wake_per_msg = c->sleeps_per_msg = -1;
}

static int run_loop(struct bench_ctx *c)
{
	const struct bench_transport *t = c->spec->tr;
	int (*fn)(struct bench_ctx *) = c->spec->test == BENCH_RTT ? t->rtt : t->stream;
	if (!fn)
		return bench_fail(c, -ENOTSUP, "%s: no %s loop", t->name,
				  bench_test_name(c->spec->test));
	return fn(c);
}

/* The watchdog's test (bench/meson.build, bench-watchdog-*): SHMRING_BENCH_TEST_HANG=p1
 * (producer 1) or c0 (consumer 0) makes that child hang as a bug would, before its
 * loop, or after it with the suffix /after (the parent, its own part done, is then
 * waiting for that child). */
static int hangs_on_purpose(const struct bench_ctx *c, int after)
{
	const char *h = getenv("SHMRING_BENCH_TEST_HANG");
	char side, when[8] = "";
	unsigned idx;
	if (!h || sscanf(h, "%c%u/%7s", &side, &idx, when) < 2 || idx != c->index ||
	    side != (c->side ? 'c' : 'p') || after != (strcmp(when, "after") == 0))
		return 0;
	for (;;)
		pause(); /* until the watchdog's SIGKILL */
}

static void child_main(struct bench_ctx *c, int ready_fd, int go_fd)
{
	const struct bench_transport *t = c->spec->tr;
	struct bench_shared *sh = c->sh;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGALRM, SIG_DFL);
	int cpu = bench_cpu_of(c->cfg, c->side, c->index, c->spec->same_cpu);
	int rc = bench_pin(cpu);
	if (rc < 0)
		rc = bench_fail(c, rc, "pin child: %s", strerror(-rc));
	if (rc == 0) {
		c->buf = alloc_buf(c->spec->size, 0x5a);
		c->rbuf = alloc_buf(c->spec->size, 0);
		if (!c->buf || !c->rbuf)
			rc = bench_fail(c, -ENOMEM, "child buffers");
	}
	if (rc == 0 && t->attach)
		rc = t->attach(c);
	char st = rc == 0 ? 'R' : 'E';
	if (write(ready_fd, &st, 1) != 1)
		_exit(3);
	if (rc == 0) {
		char g;
		if (read_full(go_fd, &g, 1) < 0 || g != 'G')
			_exit(4);
		hangs_on_purpose(c, 0);
		rc = run_loop(c);
		hangs_on_purpose(c, 1);
	}
	if (rc == 0 && bench_abort)
		rc = bench_fail(c, -ETIMEDOUT, "watchdog");
	if (t->detach)
		t->detach(c);
	if (rc < 0) {
		int zero = 0;
		if (atomic_compare_exchange_strong(&sh->c_rc, &zero, rc))
			snprintf(sh->c_err, sizeof sh->c_err, "child %s %u: %.150s",
				 c->side ? "consumer" : "producer", c->index,
				 c->err[0] ? c->err : strerror(-rc));
	}
	_exit(rc < 0 ? 1 : 0);
}

void bench_stream_end(struct bench_ctx *c, struct bench_loop *L)
{
	c->nsamples = L->seq;
	c->msgs = L->timed ? L->seq - L->first : 0;
	atomic_store(&c->sh->p_sent[c->index], c->nsamples);
	atomic_store(&c->sh->p_msgs[c->index], c->msgs);
	atomic_store(&c->sh->p_t0[c->index], c->t0_ns);
	atomic_fetch_add(&c->sh->p_done, 1);
}

/* The figures of a finished streaming run, from what every process left in sh. */
static int stream_figures(const struct bench_spec *s, struct bench_shared *sh,
			  struct bench_result *r)
{
	unsigned np = s->nprod ? s->nprod : 1;
	uint64_t sent = 0, msgs = 0, t0 = UINT64_MAX;
	for (unsigned i = 0; i < np; i++) {
		sent += atomic_load(&sh->p_sent[i]);
		msgs += atomic_load(&sh->p_msgs[i]);
		uint64_t t = atomic_load(&sh->p_t0[i]);
		if (t && t < t0)
			t0 = t;
	}
	uint64_t end = atomic_load(&sh->c_end_ns);
	uint64_t got = atomic_load(&sh->c_msgs), bad = atomic_load(&sh->c_bad);
	uint64_t lost = atomic_load(&sh->c_lost);
	int lossy = (s->tr->caps & BENCH_CAP_LOSSY) != 0;
	/* several consumers each see gaps (the others' share); what counts is the sum */
	if (s->ncons > 1)
		lost = 0;
	/* lossy: gaps just before STOP are not seen as gaps, so count by difference */
	if (lossy ? got > sent || bad : got + lost != sent || bad || lost) {
		snprintf(r->err, sizeof r->err,
			 "consumers saw %llu messages (%llu missing, %llu out of order), "
			 "producers sent %llu",
			 (unsigned long long)got, (unsigned long long)lost, (unsigned long long)bad,
			 (unsigned long long)sent);
		return -1;
	}
	if (t0 == UINT64_MAX || end <= t0 || msgs == 0) {
		snprintf(r->err, sizeof r->err, "no timed messages");
		return -1;
	}
	double secs = (double)(end - t0) / 1e9;
	/* lossy: what arrived, pro rata of the timed part */
	double delivered = lossy && sent ? (double)msgs * (double)got / (double)sent : (double)msgs;
	r->msgs_per_s = delivered / secs;
	r->bytes_per_s = r->msgs_per_s * (double)s->size;
	r->samples = msgs;
	if (lossy)
		r->lost_frac = sent ? (double)(sent - got) / (double)sent : 0;
	return 0;
}

/*
 * Run one spec in its processes: the parent is producer / client 0; children are the
 * other producers and the consumers / server, pinned by bench_cpu_of() (with two CPUs:
 * producers on the first CPU, consumers on the second; all on the first for the same-CPU
 * placement).
 * Fills r's figures (not the probes).
 */
static int run_pair(const struct bench_spec *s, const struct bench_cfg *cfg,
		    struct bench_result *r)
{
	const struct bench_transport *t = s->tr;
	unsigned np = s->nprod ? s->nprod : 1, nc = s->ncons ? s->ncons : 1;
	unsigned nkids = np - 1 + nc;
	pid_t pids[2 * BENCH_MAX_PROCS];
	struct bench_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(r->err, sizeof r->err, "mmap shared: %s", strerror(errno));
		return -1;
	}
	struct bench_ctx c;
	init_ctx(&c, s, cfg, sh);
	uint64_t cap = cfg->max_iters ? cfg->max_iters : 1;
	if (g_samples_cap < cap) {
		free(g_samples);
		g_samples = malloc(cap * sizeof *g_samples);
		g_samples_cap = g_samples ? cap : 0;
		if (!g_samples) {
			snprintf(r->err, sizeof r->err, "no memory for samples");
			munmap(sh, sizeof *sh);
			return -1;
		}
	}
	c.samples = g_samples;
	c.cap = cap;
	int rc = t->setup ? t->setup(&c) : 0;
	if (rc < 0) {
		snprintf(r->err, sizeof r->err, "setup: %.150s", c.err[0] ? c.err : strerror(-rc));
		if (t->teardown)
			t->teardown(&c);
		munmap(sh, sizeof *sh);
		return -1;
	}
	int ready[2], go[2];
	if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) {
		snprintf(r->err, sizeof r->err, "pipe: %s", strerror(errno));
		if (t->teardown)
			t->teardown(&c);
		munmap(sh, sizeof *sh);
		return -1;
	}
	fflush(NULL);
	bench_abort = 0;
	unsigned nforked = 0;
	for (unsigned k = 0; k < nkids; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			close(ready[0]);
			close(go[1]);
			c.side = k < np - 1 ? 0 : 1;
			c.index = k < np - 1 ? k + 1 : k - (np - 1);
			c.samples = NULL;
			c.cap = 0;
			child_main(&c, ready[1], go[0]);
		}
		if (pid < 0) {
			snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
			rc = -1;
			break;
		}
		pids[nforked++] = pid;
	}
	close(ready[1]);
	close(go[0]);
	for (unsigned k = 0; k < nforked; k++)
		g_kids[k] = pids[k];
	g_nkids = (sig_atomic_t)nforked;
	/* generous: a hang is a bug to report, not a figure */
	alarm(cfg->watchdog_s ? cfg->watchdog_s : (unsigned)(30 + 20 * (cfg->budget_s + cfg->warm_s)));
	c.side = 0;
	c.index = 0;
	if (rc == 0) {
		rc = bench_pin(bench_cpu_of(cfg, 0, 0, s->same_cpu));
		if (rc < 0)
			rc = bench_fail(&c, rc, "pin: %s", strerror(-rc));
	}
	if (rc == 0) {
		c.buf = alloc_buf(s->size, 0x5a);
		c.rbuf = alloc_buf(s->size, 0);
		if (!c.buf || !c.rbuf)
			rc = bench_fail(&c, -ENOMEM, "buffers");
	}
	if (rc == 0 && t->attach)
		rc = t->attach(&c);
	for (unsigned k = 0; k < nforked; k++) {
		char st = 0;
		if ((read_full(ready[0], &st, 1) < 0 || st != 'R') && rc == 0)
			rc = bench_fail(&c, -EIO, "a child did not attach");
	}
	if (rc == 0) {
		for (unsigned k = 0; k < nforked; k++) {
			char g = 'G';
			if (write(go[1], &g, 1) != 1)
				rc = bench_fail(&c, -EIO, "go");
		}
	}
	if (rc == 0)
		rc = run_loop(&c);
	if (rc == 0 && bench_abort)
		rc = bench_fail(&c, -ETIMEDOUT, "watchdog");
	if (t->detach)
		t->detach(&c);
	if (rc < 0)
		for (unsigned k = 0; k < nforked; k++)
			kill(pids[k], SIGKILL);
	int bad_exit = 0, sig = 0;
	for (unsigned k = 0; k < nforked; k++) {
		int status = 0;
		while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			bad_exit = 1;
			if (WIFSIGNALED(status))
				sig = WTERMSIG(status);
		}
	}
	alarm(0);
	g_nkids = 0;
	close(ready[0]);
	close(go[1]);
	if (rc == 0 && t->finish)
		t->finish(&c);
	if (t->teardown)
		t->teardown(&c);

	if (rc == 0 && (atomic_load(&sh->c_rc) < 0 || bad_exit)) {
		if (sh->c_err[0])
			snprintf(r->err, sizeof r->err, "%s", sh->c_err);
		else if (sig)
			snprintf(r->err, sizeof r->err, "child killed by signal %d%s", sig,
				 bench_abort ? " (watchdog)" : "");
		else
			snprintf(r->err, sizeof r->err, "a child failed");
		rc = -1;
	} else if (rc < 0 && !r->err[0]) {
		if (sh->c_err[0] && !c.err[0])
			snprintf(r->err, sizeof r->err, "%s", sh->c_err);
		else if (sh->c_err[0]) /* both failed: the child's error is often the cause */
			snprintf(r->err, sizeof r->err, "%.120s; child: %.120s", c.err, sh->c_err);
		else
			snprintf(r->err, sizeof r->err, "%.150s%s", c.err[0] ? c.err : strerror(-rc),
				 bench_abort ? " (watchdog)" : "");
	}
	if (rc == 0 && s->test == BENCH_STREAM) {
		rc = stream_figures(s, sh, r);
	} else if (rc == 0 && s->test == BENCH_RTT) {
		double total = 0;
		for (uint64_t i = 0; i < c.nsamples; i++)
			total += (double)c.samples[i];
		bench_stats(r, c.samples, c.nsamples);
		if (c.nsamples == 0) {
			snprintf(r->err, sizeof r->err, "no samples");
			rc = -1;
		} else {
			r->msgs_per_s = (double)c.nsamples / (bench_ticks_ns((uint64_t)total) / 1e9);
			r->bytes_per_s = r->msgs_per_s * (double)s->size;
		}
	}
	r->wake_per_msg = c.wake_per_msg;
	r->sleeps_per_msg = c.sleeps_per_msg;
	free_buf(c.buf);
	free_buf(c.rbuf);
	munmap(sh, sizeof *sh);
	r->ok = rc == 0;
	return rc == 0 ? 0 : -1;
}

double bench_probe(const struct bench_cfg *cfg, double *p99)
{
	struct bench_cfg pc = *cfg;
	pc.budget_s = cfg->probe_s;
	pc.warm_s = cfg->probe_s / 4;
	pc.min_iters = 100;
	if (pc.max_iters > 200000)
		pc.max_iters = 200000;
	struct bench_spec ps = {.test = BENCH_RTT, .tr = &bench_tr_floor, .size = 64,
				.mode = BENCH_ZC, .batch = 1};
	struct bench_result *pr = calloc(1, sizeof *pr);
	double v = -1;
	*p99 = -1;
	if (pr && run_pair(&ps, &pc, pr) == 0) {
		v = pr->p50;
		*p99 = pr->p99;
	}
	free(pr);
	return v;
}

double bench_floor_p50(const struct bench_result *r)
{
	if (r->probe_ns > 0 && r->probe_after_ns > 0)
		return (r->probe_ns + r->probe_after_ns) / 2;
	return r->probe_ns > 0 ? r->probe_ns : r->probe_after_ns;
}

double bench_floor_p99(const struct bench_result *r)
{
	return r->probe_p99;
}

int bench_moved(const struct bench_result *r)
{
	double a = r->probe_ns, b = r->probe_after_ns;
	if (a > 0 && b > 0 && (a > b ? a / b : b / a) > 1.3)
		return 1;
	/* A cross-CPU round trip under the floor of its placement is no transport's doing
	 * (the floor is the least one can cost): the vCPUs sat nearer for a while during
	 * the test, between probes that agree. The floor's own test comes out at 0.85-1.0x
	 * its probes; a near placement at 0.2-0.4x. */
	double f = bench_floor_p50(r);
	return r->spec.test == BENCH_RTT && !r->spec.same_cpu && r->p50 > 0 && f > 0 &&
	       r->p50 < 0.75 * f;
}

int bench_same_place(const struct bench_result *a, const struct bench_result *b)
{
	if (bench_moved(a) || bench_moved(b))
		return 0;
	double x = bench_floor_p50(a), y = bench_floor_p50(b);
	if (x <= 0 || y <= 0)
		return 0;
	return (x > y ? x / y : y / x) <= 1.3;
}

int bench_run(const struct bench_spec *s, const struct bench_cfg *cfg, struct bench_result *r)
{
	static int installed;
	if (!installed) {
		install_watchdog();
		installed = 1;
	}
	memset(r, 0, sizeof *r);
	r->spec = *s;
	r->p50 = r->p99 = r->p999 = r->max = r->mean = -1;
	r->msgs_per_s = r->bytes_per_s = -1;
	r->wake_per_msg = r->sleeps_per_msg = r->lost_frac = -1;
	double q0, q1;
	r->probe_ns = bench_probe(cfg, &q0);
	int rc = s->test == BENCH_MEMCPY ? bench_memcpy(s, cfg, r) : run_pair(s, cfg, r);
	r->probe_after_ns = bench_probe(cfg, &q1);
	/* a probe that was descheduled has an inflated tail, never a deflated one */
	r->probe_p99 = q0 > 0 && q1 > 0 ? (q0 < q1 ? q0 : q1) : q0 > 0 ? q0 : q1;
	return rc;
}
