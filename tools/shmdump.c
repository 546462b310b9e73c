/* SPDX-License-Identifier: MIT */
/*
 * shmdump: inspect shmring segments. Maps them read-only and never writes, except
 * `clean`, which unlinks stale segments. The decoding and checking is the library's
 * (shmring/dump.h); this file only finds segments, adds liveness and prints.
 */
#include "dumpfmt.h"
#include "segview.h"
#include "toolutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_PROBLEM 1
#define EXIT_USAGE 2
#define SHM_DIR "/dev/shm"

static volatile sig_atomic_t interrupted;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmdump [--json]                   (as list)\n"
		"       shmdump list [PATTERN...] [--json]\n"
		"       shmdump show NAME|PATH [--records N] [--json]\n"
		"       shmdump watch NAME|PATH [--interval SECONDS] [--count N]\n"
		"       shmdump check NAME|PATH [--json]\n"
		"       shmdump clean [PATTERN...] [--dry-run]\n"
		"NAME is a segment in " SHM_DIR "; PATH (anything with a '/') is any file that\n"
		"holds a segment. PATTERNs (shell globs) limit list and clean to matching names.\n"
		"Exit: 0 ok, 1 a problem was found, 2 usage error.\n"
		"See shmdump(1).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	char m[256];
	snprintf(m, sizeof(m), fmt, arg);
	tool_msg("%s (try 'shmdump --help')", m);
	return EXIT_USAGE;
}

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* A mapped file shrunk under us: the one thing a read-only mapping cannot bound. */
static void on_sigbus(int sig)
{
	static const char m[] = "shmdump: the segment file shrank while it was being read\n";
	(void)sig;
	ssize_t n = write(STDERR_FILENO, m, sizeof(m) - 1);
	(void)n;
	_exit(EXIT_PROBLEM);
}

static int open_or_say(struct seg_view *v, const char *arg)
{
	char why[256];
	int rc = seg_view_open(v, arg, why, sizeof(why));
	if (rc < 0)
		tool_msg("%s: %s", arg, why);
	return rc;
}

/* The one line that says why a file is not a segment or not a consistent one. */
static void say_problem(const struct seg_view *v)
{
	const struct shmring_dump_info *i = &v->info;
	const struct shmring_dump_problem *p = &i->problems[0];
	if (v->decode_rc != 0)
		tool_msg("%s: not a shmring segment: %s: %s", v->label, p->field, p->msg);
	else
		tool_msg("%s: corrupt segment: %u problem%s (first: %s: %s)", v->label, i->nproblems,
			 i->nproblems == 1 ? "" : "s", p->field, p->msg);
}

/* ---- list and clean: the segments in /dev/shm that are ours ---- */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int wanted(const char *name, char **pat, int npat)
{
	if (npat == 0)
		return 1;
	for (int i = 0; i < npat; i++)
		if (fnmatch(pat[i], name, FNM_PERIOD) == 0)
			return 1;
	return 0;
}

static void free_names(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

/* Names of our segments in /dev/shm that match one of the patterns (all if none),
 * sorted: *out is a NULL-terminated array (NULL when there are none) and *count its
 * length. Returns 0, or -1 after one line on stderr: /dev/shm could not be read, or a
 * file in it could not be looked at for a reason of ours (out of descriptors or memory,
 * an I/O error), which must not pass for "no segments". */
static int our_segments(char **pat, int npat, char ***out, size_t *count)
{
	DIR *d = opendir(SHM_DIR);
	char **names = NULL;
	size_t n = 0, cap = 0;
	char nb[NAME_MAX + 1];

	*out = NULL;
	*count = 0;
	if (!d) {
		tool_msg("%s: %s", SHM_DIR, strerror(errno));
		return -1;
	}
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno == 0)
				break;
			tool_msg("%s: %s", SHM_DIR, strerror(errno));
			goto fail;
		}
		if (e->d_name[0] == '.' || !wanted(e->d_name, pat, npat))
			continue;
		int ours = seg_file_is_ours(dirfd(d), e->d_name);
		if (ours < 0) {
			tool_msg("%s: %s", tool_printable(e->d_name, nb, sizeof(nb)), strerror(-ours));
			goto fail;
		}
		if (!ours)
			continue;
		if (n + 1 >= cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nn = realloc(names, nc * sizeof(*nn));
			if (!nn)
				goto oom;
			names = nn;
			cap = nc;
		}
		names[n] = strdup(e->d_name);
		if (!names[n])
			goto oom;
		n++;
		names[n] = NULL;
	}
	closedir(d);
	if (names)
		qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*count = n;
	return 0;
oom:
	tool_msg("out of memory");
fail:
	closedir(d);
	if (names)
		names[n] = NULL;
	free_names(names);
	return -1;
}

/* clean moves a name aside to /dev/shm/.shmdump-clean-PID-NAME while it compares the
 * file with the one it looked at and checks its liveness again (see unlink_same_file()),
 * holding flock(LOCK_EX) on the file from before the move until it is done (the library
 * never uses flock). A clean killed inside that window leaves the file there, unlocked:
 * the next clean puts it back (it may be someone's live segment). The lock, not the
 * pid, says whether a clean is still at it (pids are reused, and a clean in another pid
 * namespace shares /dev/shm). */
#define ASIDE_PREFIX ".shmdump-clean-"

static int aside_path(char *buf, size_t len, pid_t pid, const char *name)
{
	int n = snprintf(buf, len, SHM_DIR "/" ASIDE_PREFIX "%ld-%s", (long)pid, name);
	if (n < 0 || (size_t)n >= len || (size_t)n - strlen(SHM_DIR "/") > NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* If ent is a name clean moved aside: the name it had; else NULL. */
static const char *aside_name(const char *ent)
{
	if (strncmp(ent, ASIDE_PREFIX, strlen(ASIDE_PREFIX)) != 0)
		return NULL;
	const char *p = ent + strlen(ASIDE_PREFIX);
	size_t digits = strspn(p, "0123456789");
	if (digits == 0 || p[digits] != '-' || p[digits + 1] == '\0')
		return NULL;
	return p + digits + 1;
}

/* The dry run's word on a segment it would put back: what the real run does next.
 * Returns 0, or -1 after one line on stderr when the look failed for a reason of ours. */
static int dry_assess(const char *ent, const char *shown)
{
	char path[PATH_MAX], why[256];
	struct seg_view *v = malloc(sizeof(*v));
	int rc;
	snprintf(path, sizeof(path), SHM_DIR "/%s", ent);
	if (!v) {
		tool_msg("out of memory");
		return -1;
	}
	rc = seg_view_open(v, path, why, sizeof(why));
	if (rc == 0) {
		if (v->state == SEG_STALE)
			printf("would remove %s (stale: %u dead participant%s)\n", shown, v->dead,
			       v->dead == 1 ? "" : "s");
		else if (v->state == SEG_CORRUPT)
			printf("would keep %s: corrupt, not removed\n", shown);
		seg_view_close(v);
	} else if (!seg_open_error_skips(rc)) {
		tool_msg("%s: %s", shown, why);
		free(v);
		return -1;
	}
	free(v);
	return 0;
}

/* Put back the names a clean that did not finish moved aside (those matching the
 * patterns): regular files at an aside name that no clean holds locked (the file clean
 * moves may be anything that took the name; the put-back never replaces a file). With
 * dry_run, say what would be done; list only tells (put_back < 0). Returns 0,
 * EXIT_PROBLEM if a name could not go back (or, dry_run, would not), or -1 after one
 * line on stderr when a file could not be looked at for a reason of ours (out of
 * descriptors or memory...): the caller stops there. */
static int leftovers(char **pat, int npat, int put_back, int dry_run)
{
	DIR *d = opendir(SHM_DIR);
	int rc = 0;
	if (!d)
		return 0; /* our_segments() says why */
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *name = aside_name(e->d_name);
		if (!name || !wanted(name, pat, npat))
			continue;
		int fd = openat(dirfd(d), e->d_name,
				O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			/* put back meanwhile, not ours to read, or not a file (a link) */
			if (seg_open_error_skips(errno))
				continue;
			char eb[NAME_MAX + 1];
			tool_msg("%s/%s: %s", SHM_DIR, tool_printable(e->d_name, eb, sizeof(eb)),
				 strerror(errno));
			closedir(d);
			return -1;
		}
		struct stat fst;
		if (fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode) || flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd); /* not a file clean moves, or a clean is at it now */
			continue;
		}
		char nb[NAME_MAX + 1], eb[NAME_MAX + 1];
		const char *shown = tool_printable(name, nb, sizeof(nb));
		const char *ent = tool_printable(e->d_name, eb, sizeof(eb));
		struct stat st;
		int taken = fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (put_back < 0) {
			tool_msg("%s/%s: moved aside by a 'shmdump clean' that did not finish; %s",
				 SHM_DIR, ent, taken ? "its name is taken now: move it back by hand"
						     : "'shmdump clean' puts it back");
		} else if (dry_run && taken) {
			tool_msg("%s/%s: would not put it back: the name is taken", SHM_DIR, ent);
			rc = EXIT_PROBLEM;
		} else if (dry_run) {
			printf("would put back %s (moved aside by a clean that did not finish)\n", shown);
			int ours = seg_file_is_ours(dirfd(d), e->d_name);
			if (ours < 0) {
				tool_msg("%s/%s: %s", SHM_DIR, ent, strerror(-ours));
				rc = -1;
			} else if (ours && dry_assess(e->d_name, shown) != 0) {
				rc = -1;
			}
			if (rc < 0) {
				close(fd);
				closedir(d);
				return -1;
			}
		} else if (renameat2(dirfd(d), e->d_name, dirfd(d), name, RENAME_NOREPLACE) == 0) {
			printf("put back %s (moved aside by a clean that did not finish)\n", shown);
		} else if (errno != ENOENT) { /* ENOENT: another clean put it back first */
			tool_msg("%s/%s: cannot put it back: %s", SHM_DIR, ent,
				 errno == EEXIST ? "the name is taken" : strerror(errno));
			rc = EXIT_PROBLEM;
		}
		close(fd);
	}
	closedir(d);
	return rc;
}

/* A listed name that seg_view_open_devshm() could not open (error err, why): 1 pass
 * over it (gone since the directory was read, or no longer a file we may read), 0 after
 * one line on stderr (a failure of ours, such as running out of descriptors: the
 * command stops, exit 1, rather than leave the segment out as if it were not there). */
static int skip_or_say(const char *name, int err, const char *why)
{
	char nb[NAME_MAX + 1];
	if (seg_open_error_skips(err))
		return 1;
	tool_msg("%s: %s", tool_printable(name, nb, sizeof(nb)), why);
	return 0;
}

static int cmd_list(char **pat, int npat, int json)
{
	size_t n;
	char **names;
	int rc = 0;
	if (leftovers(pat, npat, -1, 0) < 0 || our_segments(pat, npat, &names, &n) != 0)
		return EXIT_PROBLEM;
	struct seg_view *v = malloc(sizeof(*v));
	struct jw w;
	char why[256];

	if (!v) {
		free_names(names);
		tool_msg("out of memory");
		return EXIT_PROBLEM;
	}
	if (json) {
		jw_init(&w, stdout);
		jw_arr(&w, NULL);
	} else {
		fmt_list_head(stdout);
	}
	for (size_t k = 0; k < n; k++) {
		int e = seg_view_open_devshm(v, names[k], why, sizeof(why));
		if (e != 0) {
			if (skip_or_say(names[k], e, why))
				continue;
			rc = EXIT_PROBLEM; /* the listing so far stays well-formed */
			break;
		}
		if (json)
			fmt_list_json(&w, v);
		else
			fmt_list_row(stdout, v);
		seg_view_close(v);
	}
	if (json) {
		jw_arr_end(&w);
		jw_end(&w);
	}
	free(v);
	free_names(names);
	return rc;
}

/* Remove v's file, the stale segment clean looked at, by its /dev/shm name, holding the
 * turn of the name's creators (see cmd_clean()): no library creator can put a new
 * segment under the name meanwhile. The name is moved aside first, and only then is the
 * file compared with the one looked at and its liveness checked again: a process that
 * opened the segment before the move and attached meanwhile is seen (and the name put
 * back, where no creator can have taken it), and one that opens it after the move finds
 * no name. Returns 0 removed (or already gone), 1 the name leads to another file now
 * (one put there by other means than the library, left where it was), 2 the file is
 * left at moved (the name was taken by other means than the library before it could go
 * back), 3 another clean is removing it, 4 a process attached meanwhile (put back), or
 * -errno. */
static int unlink_same_file(struct seg_view *v, const char *name, char *moved, size_t ml)
{
	struct stat mine, now;
	char tmp[PATH_MAX];
	if (fstat(v->fd, &mine) != 0)
		return -errno;
	/* ours until we close v (see ASIDE_PREFIX) */
	if (flock(v->fd, LOCK_EX | LOCK_NB) != 0)
		return errno == EWOULDBLOCK ? 3 : -errno;
	if (aside_path(tmp, sizeof(tmp), getpid(), name) != 0) {
		/* a name too long to move aside (the library makes none, and takes no turn
		 * for it): look again, then unlink */
		seg_view_refresh(v);
		if (v->state != SEG_STALE)
			return 4;
		if (stat(v->path, &now) != 0)
			return errno == ENOENT ? 0 : -errno;
		if (now.st_dev != mine.st_dev || now.st_ino != mine.st_ino)
			return 1;
		return unlink(v->path) == 0 || errno == ENOENT ? 0 : -errno;
	}
	/* never over a file that has the temporary name already (anyone may make one) */
	if (renameat2(AT_FDCWD, v->path, AT_FDCWD, tmp, RENAME_NOREPLACE) != 0)
		return errno == ENOENT ? 0 : -errno;
	int back; /* why it goes back: 1 another file, 4 attached meanwhile */
	if (stat(tmp, &now) != 0) {
		if (errno != ENOENT)
			return -errno;
		return 1; /* taken from there: another clean put it back (not ours any more) */
	}
	if (now.st_dev != mine.st_dev || now.st_ino != mine.st_ino) {
		back = 1;
	} else {
		/* the very file looked at, and no name leads to it now: anyone attached is
		 * attached already */
		seg_view_refresh(v);
		if (v->state == SEG_STALE)
			return unlink(tmp) == 0 || errno == ENOENT ? 0 : -errno;
		back = 4;
	}
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, v->path, RENAME_NOREPLACE) != 0) {
		if (errno == ENOENT)
			return back; /* another clean put it back */
		if (errno != EEXIST)
			return -errno;
		snprintf(moved, ml, "%s", tmp);
		return 2;
	}
	return back;
}

/* A process is creating the name (or another clean holds its creators' turn): 1, after
 * saying so; 0 with *turn held (NULL: no turns on this system, or a name the library
 * cannot create, so that no library creator can take it either); -1 after one line on
 * stderr. */
static int take_turn(const char *name, struct shmring_seg_turn **turn)
{
	char nb[NAME_MAX + 1];
	int e = shmring_seg_turn_take(name, turn);
	if (e == -EINVAL || e == -ENAMETOOLONG) {
		/* control bytes or too long: a name no library create makes */
		*turn = NULL;
		return 0;
	}
	if (e == -EEXIST) {
		printf("kept %s: a process is creating a segment under that name, or another "
		       "clean is at it\n", tool_printable(name, nb, sizeof(nb)));
		return 1;
	}
	if (e != 0) {
		tool_msg("%s: cannot take the turn of its creators: %s",
			 tool_printable(name, nb, sizeof(nb)), shmring_strerror(e));
		return -1;
	}
	return 0;
}

/* Each name is looked at, judged and removed with the turn of its creators held
 * (shmring_seg_turn_take()): no library create of that name runs meanwhile, so the file
 * under the name is the one looked at (or one put there by other means, seen by the
 * comparison in unlink_same_file()). The dry run changes nothing and takes no turns. */
static int cmd_clean(char **pat, int npat, int dry_run)
{
	size_t n;
	char **names;
	int rc = leftovers(pat, npat, 1, dry_run);
	if (rc < 0 || our_segments(pat, npat, &names, &n) != 0)
		return EXIT_PROBLEM;
	struct seg_view *v = malloc(sizeof(*v));
	char why[256];

	if (!v) {
		free_names(names);
		tool_msg("out of memory");
		return EXIT_PROBLEM;
	}
	for (size_t k = 0; k < n; k++) {
		struct shmring_seg_turn *turn = NULL;
		if (!dry_run) {
			int t = take_turn(names[k], &turn);
			if (t > 0)
				continue;
			if (t < 0) {
				rc = EXIT_PROBLEM;
				break;
			}
		}
		/* what is under the name now, with no creator at work on it */
		int e = seg_view_open_devshm(v, names[k], why, sizeof(why));
		if (e != 0) {
			shmring_seg_turn_give(turn);
			if (skip_or_say(names[k], e, why))
				continue;
			rc = EXIT_PROBLEM;
			break;
		}
		if (v->state == SEG_CORRUPT) {
			printf("kept %s: corrupt, not removed (see 'shmdump check %s')\n", v->label,
			       v->label);
		} else if (v->state == SEG_STALE && dry_run) {
			/* look again, as the real run does before it removes */
			seg_view_refresh(v);
			if (v->state != SEG_STALE)
				printf("kept %s: a participant attached meanwhile\n", v->label);
			else
				printf("would remove %s (stale: %u dead participant%s)\n", v->label,
				       v->dead, v->dead == 1 ? "" : "s");
		} else if (v->state == SEG_STALE) {
			char moved[PATH_MAX], mb[PATH_MAX];
			e = unlink_same_file(v, names[k], moved, sizeof(moved));
			if (e == 0) {
				printf("removed %s (stale: %u dead participant%s)\n", v->label,
				       v->dead, v->dead == 1 ? "" : "s");
			} else if (e == 1) {
				printf("kept %s: a new segment took the name meanwhile\n", v->label);
			} else if (e == 4) {
				printf("kept %s: a participant attached meanwhile\n", v->label);
			} else if (e == 3) {
				printf("kept %s: another shmdump clean is removing it\n", v->label);
			} else if (e == 2) {
				tool_msg("%s: another file took the name while it was moved aside; "
					 "the file moved aside is now %s", v->label,
					 tool_printable(moved, mb, sizeof(mb)));
				rc = EXIT_PROBLEM;
			} else {
				tool_msg("%s: cannot remove: %s", v->label, shmring_strerror(e));
				rc = EXIT_PROBLEM;
			}
		}
		seg_view_close(v);
		shmring_seg_turn_give(turn);
	}
	free(v);
	free_names(names);
	return rc;
}

/* ---- show, check, watch: one segment ---- */

static int cmd_show(const char *arg, int json, unsigned records)
{
	struct seg_view *v = malloc(sizeof(*v));
	if (!v) {
		tool_msg("out of memory");
		return EXIT_PROBLEM;
	}
	int rc = open_or_say(v, arg) < 0 ? EXIT_PROBLEM : 0;
	if (rc == 0) {
		if (v->decode_rc != 0) {
			say_problem(v);
			rc = EXIT_PROBLEM;
		} else {
			if (json)
				fmt_show_json(stdout, v, records);
			else
				fmt_show_text(stdout, v, records);
			if (v->info.nproblems) {
				fflush(stdout);
				say_problem(v);
				rc = EXIT_PROBLEM;
			}
		}
		seg_view_close(v);
	}
	free(v);
	return rc;
}

static int cmd_check(const char *arg, int json)
{
	struct seg_view *v = malloc(sizeof(*v));
	if (!v) {
		tool_msg("out of memory");
		return EXIT_PROBLEM;
	}
	int rc = open_or_say(v, arg) < 0 ? EXIT_PROBLEM : 0;
	if (rc == 0) {
		if (json)
			fmt_check_json(stdout, v);
		else
			fmt_check_text(stdout, v);
		rc = (v->decode_rc == 0 && v->info.nproblems == 0) ? 0 : EXIT_PROBLEM;
		if (v->decode_rc != 0) {
			/* not a segment at all: bad input, which also gets its one line on
			 * stderr (the problem lines on stdout stay, for scripts) */
			fflush(stdout);
			say_problem(v);
		}
		seg_view_close(v);
	}
	free(v);
	return rc;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	/* EINTR (SIGINT) ends the sleep early, which is what watch wants */
	nanosleep(&ts, NULL);
}

static int cmd_watch(const char *arg, double interval, long count)
{
	struct seg_view *v = malloc(sizeof(*v));
	char t[32], b[32];
	if (!v) {
		tool_msg("out of memory");
		return EXIT_PROBLEM;
	}
	if (open_or_say(v, arg) < 0) {
		free(v);
		return EXIT_PROBLEM;
	}
	if (v->decode_rc != 0 || v->info.nproblems) {
		say_problem(v); /* rates from a corrupt segment would mean nothing */
		seg_view_close(v);
		free(v);
		return EXIT_PROBLEM;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%-8s %12s %12s %7s %10s %10s %-9s %-9s %s\n", "TIME", "MSGS/S", "BYTES/S", "FILL",
	       "WAKES/S", "SLEEPS/S", "PRODUCERS", "CONSUMERS", "STATE");
	struct shmring_dump_stats prev = v->info.stats;
	double tprev = tool_now();
	for (long k = 0; !interrupted && (count <= 0 || k < count); k++) {
		if (k > 0) {
			sleep_s(interval);
			if (interrupted)
				break;
			seg_view_refresh(v);
		}
		double now = tool_now(), dt = now - tprev;
		const struct shmring_dump_stats *s = &v->info.stats;
		time_t wall = time(NULL);
		struct tm tm;
		localtime_r(&wall, &tm);
		strftime(t, sizeof(t), "%H:%M:%S", &tm);
		struct fmt_cells c;
		fmt_cells(v, &c);
		if (k == 0 || dt <= 0) {
			printf("%-8s %12s %12s %7s %10s %10s %-9s %-9s %s\n", t, "-", "-", c.fill,
			       "-", "-", c.prod, c.cons, seg_state_name(v->state));
		} else {
			/* counters are reset if the segment is replaced: no negative rates */
			double msgs = s->msgs >= prev.msgs ? (double)(s->msgs - prev.msgs) / dt : 0;
			double bytes = s->bytes >= prev.bytes ? (double)(s->bytes - prev.bytes) / dt : 0;
			double wakes = s->wake_syscalls >= prev.wake_syscalls
					       ? (double)(s->wake_syscalls - prev.wake_syscalls) / dt : 0;
			double sleeps = s->sleeps >= prev.sleeps ? (double)(s->sleeps - prev.sleeps) / dt : 0;
			char hb[24];
			snprintf(b, sizeof(b), "%s/s", tool_human((uint64_t)bytes, hb, sizeof(hb)));
			printf("%-8s %12.0f %12s %7s %10.0f %10.0f %-9s %-9s %s\n", t, msgs, b,
			       c.fill, wakes, sleeps, c.prod, c.cons, seg_state_name(v->state));
		}
		prev = *s;
		tprev = now;
		if (ferror(stdout))
			break; /* nobody reads it: main() says so */
	}
	seg_view_close(v);
	free(v);
	return 0;
}

static int run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "records", required_argument, NULL, 'r' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int json = 0, dry_run = 0, c;
	int records_given = 0, watch_given = 0; /* given, whatever the value (the default too) */
	unsigned records = 0;
	double interval = 1.0;
	long count = 0;
	char *end;

	tool_name = "shmdump";
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'n': dry_run = 1; break;
		case 'r': {
			errno = 0;
			unsigned long n = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || optarg[0] == '-' || n > 100000)
				return usage_error("--records needs a count from 0 to 100000, not '%s'", optarg);
			records = (unsigned)n;
			records_given = 1;
			break;
		}
		case 'i':
			if (tool_parse_seconds(optarg, &interval) || interval < 0.01)
				return usage_error("--interval needs seconds >= 0.01, not '%s'", optarg);
			watch_given = 1;
			break;
		case 'c':
			errno = 0;
			count = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || count < 1)
				return usage_error("--count needs a positive number, not '%s'", optarg);
			watch_given = 1;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("shmdump (shmring) layout version %u\n", SHMRING_LAYOUT_VERSION); return 0;
		case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}

	const char *cmd = optind < argc ? argv[optind++] : "list";
	int many = strcmp(cmd, "list") == 0 || strcmp(cmd, "clean") == 0;
	const char *target = optind < argc ? argv[optind] : NULL;
	if (!many && target)
		optind++;
	if (!many && optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);

	int one = strcmp(cmd, "show") == 0 || strcmp(cmd, "check") == 0 || strcmp(cmd, "watch") == 0;
	if (one && !target)
		return usage_error("'%s' needs a segment name or path", cmd);
	if (!one && !many)
		return usage_error("unknown command '%s'", cmd);
	if (records_given && strcmp(cmd, "show") != 0)
		return usage_error("--records is for show, not %s", cmd);
	if (dry_run && strcmp(cmd, "clean") != 0)
		return usage_error("--dry-run is for clean, not %s", cmd);
	if (json && (strcmp(cmd, "watch") == 0 || strcmp(cmd, "clean") == 0))
		return usage_error("--json is for list, show and check, not %s", cmd);
	if (watch_given && strcmp(cmd, "watch") != 0)
		return usage_error("--interval and --count are for watch, not %s", cmd);

	if (strcmp(cmd, "list") == 0)
		return cmd_list(argv + optind, argc - optind, json);
	if (strcmp(cmd, "show") == 0)
		return cmd_show(target, json, records);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(target, json);
	if (strcmp(cmd, "clean") == 0)
		return cmd_clean(argv + optind, argc - optind, dry_run);
	if (strcmp(cmd, "watch") == 0) {
		sa.sa_handler = on_sigint;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		return cmd_watch(target, interval, count);
	}
	return usage_error("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	/* a listing that did not reach its reader (a full disk, a closed pipe) is a failure;
	 * the errno of the write that failed is gone by now, unless this flush is it */
	errno = 0;
	int flushed = fflush(stdout) == 0;
	if (!flushed || ferror(stdout)) {
		if (!flushed && errno)
			tool_msg("writing standard output: %s", strerror(errno));
		else
			tool_msg("writing standard output failed");
		return rc ? rc : EXIT_PROBLEM;
	}
	return rc;
}
