/* SPDX-License-Identifier: MIT */
/*
 * market_feed: one feed process fans ticks out to several strategy processes through a
 * broadcast channel (bcast.h), with the library API directly.
 *
 * The feed (the parent) publishes ticks at --rate ticks/s (default 500,000; 0: as fast
 * as it can, which on a 2-CPU machine laps most readers most of the time). It
 * never waits for a reader: a strategy that falls a whole ring behind is lapped, and
 * the library tells it how many ticks it lost, so it can resynchronise (a market-data
 * consumer would ask for a snapshot) instead of trading on a silent gap.
 *   - strategies 1..K (readers, default K = 2) want every tick: they copy each one out
 *     (read_wait), keep a per-symbol mid price, and check that each tick is intact
 *     and follows the previous one by exactly 1 + the number reported missed;
 *   - the monitor wants only the newest tick (a display refreshing at 50 Hz): it waits
 *     for something new, takes the latest (read_latest), and counts what it skipped.
 * When the feed closes the channel, every reader gets -EPIPE after the last tick, and
 * prints what it saw. The program exits 0 only if every reader accounted for every
 * tick: received + missed (or skipped) == published, in order, none torn.
 *
 *   market_feed [--ticks N] [--rate TICKS_PER_S] [--strategies K] [--slots S]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmring/shmring.h>

#define SYMBOLS 16

struct tick {
	uint64_t seq;     /* tick number, from 0 */
	uint32_t symbol;  /* 0..SYMBOLS-1 */
	uint32_t size;
	int64_t bid, ask; /* price in 1e-4 units */
	uint64_t ts_ns;   /* CLOCK_MONOTONIC at publish */
	uint64_t check;   /* seq ^ symbol ^ bid ^ ask: a reader's proof the tick is whole */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void make_tick(struct tick *t, uint64_t seq)
{
	t->seq = seq;
	t->symbol = (uint32_t)(seq * 7 % SYMBOLS);
	t->size = (uint32_t)(100 + seq % 900);
	t->bid = 1000000 + (int64_t)(seq % 5000) - 2500 + 1000 * t->symbol;
	t->ask = t->bid + 1 + (int64_t)(seq % 3);
	t->ts_ns = now_ns();
	t->check = t->seq ^ t->symbol ^ (uint64_t)t->bid ^ (uint64_t)t->ask;
}

static int intact(const struct tick *t)
{
	return t->check == (t->seq ^ t->symbol ^ (uint64_t)t->bid ^ (uint64_t)t->ask);
}

/* Why a reader ended, as its exit status */
enum { OK = 0, BAD_OPEN = 1, BAD_TICK = 2, BAD_COUNT = 3, BAD_ERROR = 4 };

/* A strategy: every tick, copied out; gaps only where the library reports them. */
static int strategy(int fd, int id, int ready)
{
	struct shmring_bcast *r;
	int rc = shmring_bcast_open_fd(fd, SHMRING_ROLE_READER, 0, &r);
	close(fd);
	if (rc) {
		fprintf(stderr, "strategy %d: open: %s\n", id, shmring_strerror(rc));
		return BAD_OPEN;
	}
	(void)!write(ready, "r", 1); /* attached: the feed may start */
	close(ready);
	int64_t mid_sum[SYMBOLS] = { 0 };
	uint64_t mid_n[SYMBOLS] = { 0 };
	uint64_t got = 0, missed = 0, next = 0, lat_sum = 0;
	struct tick t;
	struct shmring_bcast_rec rec = { 0 };
	while ((rc = shmring_bcast_read_wait(r, &t, sizeof(t), &rec, SHMRING_FOREVER)) >= 0) {
		uint64_t now = now_ns();
		if (rc != (int)sizeof(t) || !intact(&t) || t.seq != rec.seq || t.symbol >= SYMBOLS ||
		    rec.seq != next + rec.missed) {
			fprintf(stderr, "strategy %d: tick %" PRIu64 " bad (expected %" PRIu64
				" + %" PRIu64 " missed)\n", id, rec.seq, next, rec.missed);
			return BAD_TICK;
		}
		got++;
		missed += rec.missed;
		next = rec.seq + 1;
		mid_sum[t.symbol] += (t.bid + t.ask) / 2; /* symbol < SYMBOLS: checked above */
		mid_n[t.symbol]++;
		lat_sum += now > t.ts_ns ? now - t.ts_ns : 0;
	}
	struct shmring_bcast_stats st;
	shmring_bcast_stats(r, &st);
	int closed = rc == -EPIPE && shmring_bcast_writer_closed(r);
	shmring_bcast_close(r);
	if (!closed) {
		fprintf(stderr, "strategy %d: %s\n", id, shmring_strerror(rc));
		return BAD_ERROR;
	}
	printf("strategy %d: %" PRIu64 " ticks, %" PRIu64 " lost to laps, mean latency %.0f ns, "
	       "symbol 0 mean mid %.4f\n", id, got, missed, got ? (double)lat_sum / (double)got : 0.0,
	       mid_n[0] ? (double)mid_sum[0] / 1e4 / (double)mid_n[0] : 0.0);
	return got + missed == st.published ? OK : BAD_COUNT;
}

/* The monitor: only the newest tick, at most 50 times a second. */
static int monitor(int fd, int ready)
{
	struct shmring_bcast *r;
	int rc = shmring_bcast_open_fd(fd, SHMRING_ROLE_READER, 0, &r);
	close(fd);
	if (rc) {
		fprintf(stderr, "monitor: open: %s\n", shmring_strerror(rc));
		return BAD_OPEN;
	}
	(void)!write(ready, "r", 1);
	close(ready);
	uint64_t shown = 0, skipped = 0, last = 0;
	struct tick t;
	struct shmring_bcast_rec rec = { 0 };
	/* wait() says something new is there (-EPIPE once the feed closed and every tick
	 * was seen or passed over); read_latest() then takes the newest */
	while ((rc = shmring_bcast_wait(r, SHMRING_FOREVER)) == 1) {
		rc = shmring_bcast_read_latest(r, &t, sizeof(t), &rec);
		if (rc == -EAGAIN)
			continue; /* the writer rewrote the newest slot 64 times during our copies */
		if (rc != (int)sizeof(t) || !intact(&t) || t.seq != rec.seq) {
			fprintf(stderr, "monitor: bad tick (%d)\n", rc);
			return BAD_TICK;
		}
		shown++;
		skipped += rec.missed;
		last = rec.seq + 1;
		struct timespec frame = { 0, 20 * 1000 * 1000 }; /* the display's refresh */
		nanosleep(&frame, NULL);
	}
	struct shmring_bcast_stats st;
	shmring_bcast_stats(r, &st);
	shmring_bcast_close(r);
	if (rc != -EPIPE) {
		fprintf(stderr, "monitor: %s\n", shmring_strerror(rc));
		return BAD_ERROR;
	}
	printf("monitor: showed %" PRIu64 " ticks, skipped %" PRIu64 "\n", shown, skipped);
	return last == st.published && shown + skipped == st.published ? OK : BAD_COUNT;
}

static uint64_t arg_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "market_feed: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	uint64_t ticks = 1000000, rate = 500000, nstrat = 2, slots = 4096;
	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--ticks"))
			ticks = arg_u64(argv[++i], "--ticks");
		else if (i + 1 < argc && !strcmp(argv[i], "--rate"))
			rate = arg_u64(argv[++i], "--rate");
		else if (i + 1 < argc && !strcmp(argv[i], "--strategies"))
			nstrat = arg_u64(argv[++i], "--strategies");
		else if (i + 1 < argc && !strcmp(argv[i], "--slots"))
			slots = arg_u64(argv[++i], "--slots");
		else {
			fprintf(stderr, "usage: market_feed [--ticks N] [--rate TICKS_PER_S] "
					"[--strategies K] [--slots S]\n");
			return 2;
		}
	}
	if (nstrat < 1 || nstrat > 64) {
		fprintf(stderr, "market_feed: --strategies must be 1..64\n");
		return 2;
	}
	struct shmring_bcast_opts o = { .slots = (uint32_t)slots, .slot_size = sizeof(struct tick) };
	struct shmring_bcast *w;
	int rc = slots > SHMRING_BCAST_MAX_SLOTS ? -EINVAL
						 : shmring_bcast_create(NULL, &o, SHMRING_ROLE_PRODUCER, &w);
	if (rc) {
		fprintf(stderr, "market_feed: create (%" PRIu64 " slots): %s\n", slots,
			shmring_strerror(rc));
		return 1;
	}
	int ready[2];
	if (pipe(ready) != 0) {
		perror("pipe");
		return 1;
	}
	pid_t pids[65];
	int nproc = (int)nstrat + 1;
	for (int k = 0; k < nproc; k++) {
		/* handles do not survive fork(): each reader opens its own from a duplicate */
		int fd = dup(shmring_bcast_fd(w));
		pids[k] = fork();
		if (pids[k] == 0) {
			close(ready[0]);
			/* _exit: w is the parent's handle; the process's end frees our copy */
			int st = k < (int)nstrat ? strategy(fd, k + 1, ready[1]) : monitor(fd, ready[1]);
			fflush(stdout);
			_exit(st);
		}
		close(fd);
	}
	close(ready[1]);
	char c;
	for (int k = 0; k < nproc; k++) /* every reader attached before the first tick */
		if (read(ready[0], &c, 1) != 1)
			break;
	close(ready[0]);

	fflush(stdout); /* nothing of ours for the children to print again */
	uint64_t t0 = now_ns();
	for (uint64_t n = 0; n < ticks; n++) {
		struct tick t;
		if (rate) { /* pace: tick n goes out at t0 + n / rate, sleeping, not spinning */
			uint64_t due = t0 + n * 1000000000u / rate;
			if (now_ns() < due) {
				struct timespec ts = { (time_t)(due / 1000000000u),
						       (long)(due % 1000000000u) };
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			}
		}
		make_tick(&t, n);
		if ((rc = shmring_bcast_publish(w, &t, sizeof(t))) != 0) {
			fprintf(stderr, "market_feed: publish: %s\n", shmring_strerror(rc));
			break;
		}
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	shmring_bcast_close(w); /* end of stream: readers get -EPIPE after the last tick */
	printf("feed: %" PRIu64 " ticks in %.3f s (%.2f M ticks/s)\n", ticks, secs,
	       (double)ticks / secs / 1e6);
	int bad = rc != 0;
	for (int k = 0; k < nproc; k++) {
		int st;
		if (waitpid(pids[k], &st, 0) != pids[k] || !WIFEXITED(st) || WEXITSTATUS(st) != OK)
			bad = 1;
	}
	printf("%s\n", bad ? "FAILED" : "every reader accounted for every tick");
	return bad;
}
