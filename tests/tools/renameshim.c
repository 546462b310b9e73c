/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim for the `shmdump clean` race tests, two ways to put another process's
 * step into the window between clean's look at a stale segment and its removal:
 *
 * SHIM_REPLACE=PATH: when shmdump removes (or moves aside) PATH, another application
 * re-creates its segment under that name an instant before (here: a copy of the file
 * under a new inode takes the name), once.
 *
 * SHIM_PAUSE_NAME=NAME, SHIM_PAUSE_W=FD, SHIM_PAUSE_R=FD: before each rename or unlink
 * of /dev/shm/NAME, or of a temporary name clean gives it (.shmdump-clean-PID-NAME),
 * shmdump writes "CALL PATH\n" to descriptor W and waits for a line (or EOF) on
 * descriptor R: the test does what it wants to race with that step meanwhile.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* If path is the victim: a copy of it under a new inode takes the name, once. */
static void replace_once(const char *path)
{
	const char *victim = getenv("SHIM_REPLACE");
	if (!victim || strcmp(path, victim) != 0)
		return;
	unsetenv("SHIM_REPLACE");
	int (*real)(const char *, const char *) =
		(int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.new", victim);
	int in = open(victim, O_RDONLY | O_CLOEXEC);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	char buf[65536];
	ssize_t n;
	while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			break;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	real(tmp, victim); /* the new file takes the name */
}

/* The test's turn, if path is NAME or one of clean's temporary names for it. */
static void pause_at(const char *call, const char *path)
{
	const char *nm = getenv("SHIM_PAUSE_NAME"), *w = getenv("SHIM_PAUSE_W"),
		   *r = getenv("SHIM_PAUSE_R");
	static const char aside[] = ".shmdump-clean-";
	if (!nm || !w || !r)
		return;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t bl = strlen(base), nl = strlen(nm);
	int match = strcmp(base, nm) == 0 ||
		    (strncmp(base, aside, sizeof(aside) - 1) == 0 && bl > nl + sizeof(aside) &&
		     base[bl - nl - 1] == '-' && strcmp(base + bl - nl, nm) == 0);
	if (!match)
		return;
	char line[4300], c;
	int n = snprintf(line, sizeof(line), "%s %s\n", call, path);
	if (n > 0 && (size_t)n < sizeof(line) && write(atoi(w), line, (size_t)n) != n)
		return;
	while (read(atoi(r), &c, 1) == 1 && c != '\n')
		;
}

/* Whichever way shmdump removes the name, the new segment comes just before. */
__attribute__((visibility("default"))) int rename(const char *from, const char *to)
{
	replace_once(from);
	pause_at("rename", from);
	int (*real)(const char *, const char *) =
		(int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	return real(from, to);
}

__attribute__((visibility("default"))) int renameat2(int fromdir, const char *from, int todir,
						     const char *to, unsigned flags)
{
	if (from[0] == '/') /* shmdump names absolute paths */
		replace_once(from);
	pause_at("rename", from);
	int (*real)(int, const char *, int, const char *, unsigned) =
		(int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT, "renameat2");
	return real(fromdir, from, todir, to, flags);
}

__attribute__((visibility("default"))) int unlink(const char *path)
{
	replace_once(path);
	pause_at("unlink", path);
	int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
	return real(path);
}

__attribute__((visibility("default"))) int shm_unlink(const char *name)
{
	char p[4200];
	snprintf(p, sizeof(p), "/dev/shm/%s", name[0] == '/' ? name + 1 : name);
	replace_once(p);
	int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "shm_unlink");
	return real(name);
}
