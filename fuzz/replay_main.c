/* SPDX-License-Identifier: MIT */
/*
 * Replay driver: without libFuzzer (gcc, CI), each target is linked with this main(),
 * which feeds it every file named on the command line and every file in every
 * directory named there, in name order. A broken promise aborts, so a crash found by
 * fuzzing and kept in the corpus fails the `fuzz-replay` suite. Exit 0 when every
 * input ran, 1 if an input could not be read, 77 (skip) when no input was found.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			size_t nc = cap ? cap * 2 : 4096;
			uint8_t *nb = realloc(buf, nc);
			if (!nb) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
			cap = nc;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(buf);
		fprintf(stderr, "replay: %s: read error\n", path);
		return -1;
	}
	/* an exact-size copy, so ASan sees a read one byte past the input */
	uint8_t *in = malloc(len ? len : 1);
	if (!in) {
		free(buf);
		return -1;
	}
	memcpy(in, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(in, len);
	free(in);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of dir, sorted. Returns files run, or -1. */
static int run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn)
				break;
			names = nn;
		}
		names[n] = strdup(e->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp);
	int ran = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) == 0)
				ran++;
			else
				bad = 1;
		}
		free(names[i]);
	}
	free(names);
	return bad ? -1 : ran;
}

int main(int argc, char **argv)
{
	int total = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			bad = 1;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int r = run_dir(argv[i]);
			if (r < 0)
				bad = 1;
			else
				total += r;
		} else if (run_file(argv[i]) == 0) {
			total++;
		} else {
			bad = 1;
		}
	}
	printf("replayed %d input%s\n", total, total == 1 ? "" : "s");
	if (bad)
		return 1;
	return total ? 0 : 77;
}
