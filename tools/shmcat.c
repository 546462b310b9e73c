/* SPDX-License-Identifier: MIT */
/*
 * shmcat: a shmring SPSC ring where a pipe stood.
 *
 *   shmcat -w NAME [--create] [--size BYTES] [--record-size BYTES] [--unlink]
 *       stdin -> records (one read(2) of at most --record-size bytes each); at EOF the
 *       ring is closed, which the reader sees as end of stream.
 *   shmcat -r NAME [--wait SECONDS] [--unlink]
 *       records -> stdout until the writer closes (exit 0). If the writer dies without
 *       closing, everything it committed is written out, then exit 3.
 *
 * Bytes are copied, never interpreted: a round trip is exact whatever the input.
 */
#include "shmring/dump.h"
#include "shmring/spsc.h"
#include "toolutil.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_PEER_DIED 3
#define DEFAULT_SIZE (UINT64_C(16) << 20)
#define DEFAULT_RECORD (UINT64_C(64) << 10)
#define POLL_NS 10000000L /* waiting for a segment or a reader: 10 ms between looks */
#define READ_BATCH 64     /* records written to stdout with one writev */

struct opts {
	int writer, reader, create, unlink, record_size_given;
	uint64_t size, record_size;
	double wait_s;
	const char *name;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmcat -w NAME [--create] [--size BYTES] [--record-size BYTES] [--unlink]\n"
		"       shmcat -r NAME [--wait SECONDS] [--unlink]\n"
		"-w copies stdin into the SPSC ring NAME and closes it at EOF; -r copies the\n"
		"ring to stdout until the writer closes it. Sizes take K, M, G suffixes.\n"
		"Exit: 0 ok, 1 error, 2 usage, 3 the peer died. See shmcat(1).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	char m[256];
	snprintf(m, sizeof(m), fmt, arg);
	tool_msg("%s (try 'shmcat --help')", m);
	return EXIT_USAGE;
}

static void nap(void)
{
	struct timespec ts = { 0, POLL_NS };
	nanosleep(&ts, NULL);
}

/* One line for a library error, with the library's detail d when it has one. */
static int fail_with(const char *name, const char *what, int err, const char *d)
{
	if (err == -EPROTO || err == -EBADMSG)
		tool_msg("%s: corrupt segment: %s", name, *d ? d : shmring_strerror(err));
	else if (*d)
		tool_msg("%s: %s: %s (%s)", name, what, shmring_strerror(err), d);
	else
		tool_msg("%s: %s: %s", name, what, shmring_strerror(err));
	return EXIT_FAIL;
}

/* As fail_with(), with this thread's last detail from the library. */
static int fail(const char *name, const char *what, int err)
{
	return fail_with(name, what, err, shmring_last_error_detail());
}

/* As fail(), for an open: a valid segment of another kind is not "corrupt". The look at
 * the kind is a second call into the library, which clears the detail of the failure
 * being reported: that is kept first. */
static int fail_open(const char *name, const char *what, int err)
{
	char d[256];
	struct shmring_seg *s;
	snprintf(d, sizeof(d), "%s", shmring_last_error_detail());
	if (err == -EPROTO &&
	    shmring_seg_open(name, 0, SHMRING_O_RDONLY | SHMRING_O_NOREGISTRY, &s) == 0) {
		uint32_t k = s->kind;
		shmring_seg_close(s);
		if (k != SHMRING_KIND_SPSC) {
			tool_msg("%s: a %s segment, not an spsc ring", name, shmring_dump_kind_name(k));
			return EXIT_FAIL;
		}
	}
	return fail_with(name, what, err, d);
}

static const struct shmring_spsc_ctrl *ctrl_of(const struct shmring_spsc *r)
{
	return shmring_seg_ctrl(shmring_spsc_seg(r));
}

/* The consumer slot's generation: every attach to the slot moves it on. */
static uint32_t consumer_gen(const struct shmring_seg *seg)
{
	/* a hint for unlinking, not synchronisation: relaxed */
	return shmring_load_relaxed(&shmring_seg_hdr(seg)->parts[SHMRING_SPSC_SLOT_CONSUMER].gen);
}

/* Is a reader attached and alive now, or has one attached since the slot showed
 * generation gen0? (A reader of an earlier stream, which left or died, does not count.) */
static int consumer_seen(const struct shmring_seg *seg, uint32_t gen0)
{
	struct shmring_part_info info;
	if (shmring_part_get(seg, SHMRING_SPSC_SLOT_CONSUMER, &info) != 0)
		return 0;
	return (info.state == SHMRING_PART_ACTIVE && info.alive) || info.gen != gen0;
}

/* ---- writer ---- */

/* Remove the ring's name if it still leads to the ring seg maps: once our reader has
 * removed it, another pipeline may have made a new ring under it. (A new ring made
 * between the look and the unlink, microseconds, is not caught.) */
static int name_is_ours(const char *name, const struct shmring_seg *seg)
{
	struct stat mine, now;
	char path[PATH_MAX];
	return seg->fd >= 0 && fstat(seg->fd, &mine) == 0 &&
	       shmring_seg_path(name, path, sizeof(path)) == 0 && stat(path, &now) == 0 &&
	       now.st_dev == mine.st_dev && now.st_ino == mine.st_ino;
}

static void unlink_if_ours(const char *name, const struct shmring_seg *seg)
{
	if (name_is_ours(name, seg))
		shmring_seg_unlink(name);
}

/* --unlink: a writer interrupted (SIGINT, SIGTERM, SIGHUP) before its reader came
 * removes the name on its way out, if it still leads to its ring; then it dies of the
 * signal as it would have. */
static char g_ring_path[PATH_MAX];
static struct stat g_ring_st;
static volatile sig_atomic_t g_ring_armed;

static void on_interrupt(int sig)
{
	struct stat now; /* stat, unlink, signal, raise: async-signal-safe */
	if (g_ring_armed && stat(g_ring_path, &now) == 0 && now.st_dev == g_ring_st.st_dev &&
	    now.st_ino == g_ring_st.st_ino)
		unlink(g_ring_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void unlink_on_interrupt(const char *name, const struct shmring_seg *seg)
{
	if (seg->fd < 0 || fstat(seg->fd, &g_ring_st) != 0 ||
	    shmring_seg_path(name, g_ring_path, sizeof(g_ring_path)) != 0)
		return;
	g_ring_armed = 1;
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa, old;
		/* one ignored when we started (a background job's SIGINT) stays ignored */
		if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_interrupt;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
}

static int run_writer(const struct opts *o)
{
	struct shmring_spsc *r;
	int rc;
	/* --unlink: an interruption while the ring is being made (a large one takes a
	 * while) waits until the handler that removes it is in place */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	if (o->unlink)
		sigprocmask(SIG_BLOCK, &block, &old);

	if (o->create) {
		/* without --record-size, a small ring takes the largest records it can */
		struct shmring_spsc_opts so = {
			.capacity = o->size,
			.max_record = o->record_size_given ? (uint32_t)o->record_size : 0,
		};
		rc = shmring_spsc_create(o->name, &so, SHMRING_ROLE_PRODUCER, &r);
	} else {
		rc = shmring_spsc_open(o->name, SHMRING_ROLE_PRODUCER, &r);
	}
	if (rc) {
		if (o->unlink)
			sigprocmask(SIG_SETMASK, &old, NULL);
		if (o->create && rc == -EINVAL)
			return fail(o->name, "cannot create the ring with that --size and --record-size", rc);
		return fail_open(o->name, o->create ? "cannot create the ring" : "cannot open the ring", rc);
	}

	struct shmring_seg *seg = shmring_spsc_seg(r);
	/* kept past close(): the name is removed once a reader has attached. Through the
	 * registry, so that it holds the ring open (the holder lock) while the writer waits
	 * for its reader with its producer handle closed: shmdump clean keeps it */
	struct shmring_seg *watch = NULL;
	if (o->unlink) {
		/* our own file by its /proc link (a path: a name removed meanwhile is no
		 * reason to refuse it), or by its descriptor where there is no /proc */
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", shmring_spsc_fd(r));
		rc = shmring_seg_open_path(self, SHMRING_KIND_SPSC, SHMRING_O_RDONLY, &watch);
		if (rc == -ENOENT)
			rc = shmring_seg_open_fd(shmring_spsc_fd(r), SHMRING_KIND_SPSC,
						 SHMRING_O_RDONLY, &watch);
		if (rc) {
			/* nothing written yet: give up cleanly rather than without --unlink */
			unlink_if_ours(o->name, seg);
			shmring_spsc_detach(r);
			sigprocmask(SIG_SETMASK, &old, NULL);
			return fail(o->name, "cannot keep the ring open for --unlink", rc);
		}
	}
	/* the reader of this stream is one that attaches from here on, or, for a ring we
	 * made, from its creation on: a fast reader may have attached, read our end of
	 * stream and left before this look, and a later look would never see it. (A
	 * ring's consumer slot starts at generation 0.) */
	uint32_t gen0 = watch && !o->create ? consumer_gen(watch) : 0;
	int unlinked = 0;
	if (watch)
		unlink_on_interrupt(o->name, watch);
	if (o->unlink)
		sigprocmask(SIG_SETMASK, &old, NULL);

	uint64_t rs = o->record_size;
	uint64_t ring_max = seg->geo[SHMRING_SPSC_GEO_MAX_RECORD];
	if (rs > ring_max)
		rs = ring_max; /* an existing ring may take smaller records than asked */
	char *buf = malloc(rs ? rs : 1);
	if (!buf) {
		shmring_spsc_detach(r);
		tool_msg("out of memory");
		return EXIT_FAIL;
	}

	int status = 0;
	for (;;) {
		ssize_t n = tool_read_some(STDIN_FILENO, buf, rs);
		if (n < 0) {
			tool_msg("%s: reading stdin: %s", o->name, strerror((int)-n));
			status = EXIT_FAIL;
			break;
		}
		if (n == 0)
			break;
		rc = shmring_spsc_send(r, buf, (size_t)n, SHMRING_FOREVER);
		if (rc == -EPIPE) {
			/* pairs with the consumer's release store in shmring_spsc_close() */
			int closed = shmring_load_acquire(&ctrl_of(r)->cons_closed) != 0;
			tool_msg("%s: the reader %s", o->name,
				 closed ? "closed the ring" : "died without closing the ring");
			status = closed ? EXIT_FAIL : EXIT_PEER_DIED;
			break;
		}
		if (rc) {
			status = fail(o->name, "writing to the ring", rc);
			break;
		}
		if (watch && !unlinked && consumer_seen(watch, gen0)) {
			unlink_if_ours(o->name, watch);
			unlinked = 1;
		}
	}
	free(buf);
	if (status == 0)
		shmring_spsc_close(r); /* end of stream for the reader */
	else
		shmring_spsc_detach(r);
	if (watch) {
		/* like a FIFO's writer, wait for the reader to come before the name goes */
		while (status == 0 && !unlinked && !consumer_seen(watch, gen0)) {
			/* the name gone (or another ring's) before a reader came: none will */
			if (!name_is_ours(o->name, watch) && !consumer_seen(watch, gen0)) {
				tool_msg("%s: the ring's name was removed before a reader came: what "
					 "was written is lost", o->name);
				status = EXIT_FAIL;
				break;
			}
			nap();
		}
		if (!unlinked)
			unlink_if_ours(o->name, watch);
		shmring_seg_close(watch);
	}
	return status;
}

/* ---- reader ---- */

/* A ring that exists but is still being created (the library names a ring only once it
 * is complete, except where /dev/shm refuses O_TMPFILE; other creators may name it
 * first) is waited for, --wait or not, this long at least. */
#define CREATING_GRACE_S 5.0

static int open_reader(const struct opts *o, struct shmring_spsc **r)
{
	double t0 = tool_now();
	double deadline = t0 + o->wait_s;
	double creating = t0 + (o->wait_s > CREATING_GRACE_S ? o->wait_s : CREATING_GRACE_S);
	for (;;) {
		int rc = shmring_spsc_open(o->name, SHMRING_ROLE_CONSUMER, r);
		/* -ENOENT: not there yet; -EAGAIN: being created right now */
		if (rc == 0 || (rc != -ENOENT && rc != -EAGAIN))
			return rc;
		if (tool_now() >= (rc == -EAGAIN ? creating : deadline))
			return rc;
		nap();
	}
}

/* Write the records peeked so far; 0, or a negative errno from write(2). */
static int flush_out(struct iovec *iov, int n)
{
	int i = 0;
	while (i < n) {
		ssize_t w = writev(STDOUT_FILENO, iov + i, n - i);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* a short write: skip what went out and go on with the rest */
		while (i < n && (size_t)w >= iov[i].iov_len) {
			w -= (ssize_t)iov[i].iov_len;
			i++;
		}
		if (i < n) {
			iov[i].iov_base = (char *)iov[i].iov_base + w;
			iov[i].iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int run_reader(const struct opts *o)
{
	struct shmring_spsc *r;
	int rc = open_reader(o, &r);
	if (rc == -ENOENT)
		return fail(o->name, o->wait_s > 0 ? "no such ring (waited for it)" : "no such ring", rc);
	if (rc == -EAGAIN) {
		tool_msg("%s: the ring is still being created after %.0f s (or its creator died "
			 "creating it: see 'shmdump check %s')",
			 o->name, o->wait_s > CREATING_GRACE_S ? o->wait_s : CREATING_GRACE_S, o->name);
		return EXIT_FAIL;
	}
	if (rc)
		return fail_open(o->name, "cannot open the ring", rc);
	if (o->unlink)
		unlink_if_ours(o->name, shmring_spsc_seg(r));

	struct iovec iov[READ_BATCH];
	uint64_t total = 0;
	int status = 0;
	for (;;) {
		struct shmring_rec rec;
		int n = 0;
		rc = shmring_spsc_peek_wait(r, &rec, SHMRING_FOREVER);
		/* take what else is already there without waiting: one writev for all */
		while (rc == 0) {
			iov[n].iov_base = (void *)rec.data;
			iov[n].iov_len = rec.len;
			total += rec.len;
			if (++n == READ_BATCH)
				break;
			rc = shmring_spsc_peek(r, &rec);
		}
		if (n) {
			int w = flush_out(iov, n);
			if (w == -EPIPE) {
				/* like cat: close our end (the writer gets -EPIPE), then die of SIGPIPE */
				shmring_spsc_close(r);
				signal(SIGPIPE, SIG_DFL);
				raise(SIGPIPE);
				return EXIT_FAIL;
			}
			if (w < 0) {
				tool_msg("%s: writing stdout: %s", o->name, strerror(-w));
				shmring_spsc_close(r);
				return EXIT_FAIL;
			}
			shmring_spsc_release(r);
		}
		if (rc == 0 || rc == -EAGAIN)
			continue;
		if (rc == -EPIPE) {
			/* pairs with the producer's release store in shmring_spsc_close() */
			if (!shmring_load_acquire(&ctrl_of(r)->prod_closed)) {
				tool_msg("%s: the producer died without closing the stream "
					 "(%llu bytes received, all it committed)",
					 o->name, (unsigned long long)total);
				status = EXIT_PEER_DIED;
			}
			break;
		}
		shmring_spsc_detach(r);
		return fail(o->name, "reading the ring", rc);
	}
	shmring_spsc_close(r);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "write", required_argument, NULL, 'w' },
		{ "read", required_argument, NULL, 'r' },
		{ "create", no_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "record-size", required_argument, NULL, 'R' },
		{ "unlink", no_argument, NULL, 'u' },
		{ "wait", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .size = DEFAULT_SIZE, .record_size = DEFAULT_RECORD };
	int c, have_size = 0, have_rs = 0, have_wait = 0;

	tool_name = "shmcat";
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":w:r:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'w': o.writer = 1; o.name = optarg; break;
		case 'r': o.reader = 1; o.name = optarg; break;
		case 'c': o.create = 1; break;
		case 'u': o.unlink = 1; break;
		case 's':
			if (tool_parse_size(optarg, &o.size) || o.size == 0)
				return usage_error("--size needs a byte count (e.g. 16M), not '%s'", optarg);
			have_size = 1;
			break;
		case 'R':
			if (tool_parse_size(optarg, &o.record_size) || o.record_size == 0 ||
			    o.record_size > UINT32_MAX - 4096)
				return usage_error("--record-size needs a byte count (e.g. 64K), not '%s'", optarg);
			have_rs = o.record_size_given = 1;
			break;
		case 'W':
			if (tool_parse_seconds(optarg, &o.wait_s))
				return usage_error("--wait needs a number of seconds, not '%s'", optarg);
			have_wait = 1;
			break;
		case 'h': usage(stdout); return 0;
		case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o.writer == o.reader)
		return usage_error("%s", "give exactly one of -w NAME and -r NAME");
	if (!o.name[0])
		return usage_error("%s", "empty ring name");
	char path[PATH_MAX];
	int nrc = shmring_seg_path(o.name, path, sizeof(path));
	if (nrc == -ENAMETOOLONG) {
		char m[64];
		snprintf(m, sizeof(m), "ring name longer than %u bytes", SHMRING_NAME_MAX);
		return usage_error("%s", m);
	}
	if (nrc < 0) /* a '/' inside, a control byte */
		return usage_error("%s", "not a valid ring name (one path component, no control bytes)");
	if (o.reader && (o.create || have_size || have_rs))
		return usage_error("%s", "--create, --size and --record-size are for -w");
	if (o.writer && have_wait)
		return usage_error("%s", "--wait is for -r");
	if (have_size && !o.create)
		return usage_error("%s", "--size needs --create");

	/* a reader whose stdout goes away handles EPIPE itself (see run_reader) */
	signal(SIGPIPE, SIG_IGN);
	return o.writer ? run_writer(&o) : run_reader(&o);
}
