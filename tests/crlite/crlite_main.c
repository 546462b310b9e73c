/* SPDX-License-Identifier: MIT */
/* The crlite runner: --filter PATTERN (fnmatch on "suite/name"), other flags ignored. */
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criterion/criterion.h"

struct crlite_test {
	const char *suite, *name;
	void (*fn)(void);
};
static struct crlite_test tests[512];
static int ntests;
static jmp_buf skip_jmp;
static const char *current;

void crlite_register(const char *suite, const char *name, void (*fn)(void))
{
	if (ntests < (int)(sizeof(tests) / sizeof(tests[0])))
		tests[ntests++] = (struct crlite_test){ suite, name, fn };
}

void crlite_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[FAIL] %s: %s:%d: %s", current ? current : "?", file, line, expr);
	if (fmt && *fmt) {
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fprintf(stderr, "0 passed, 1 failed\n");
	exit(1);
}

void crlite_skip(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[SKIP] %s: ", current ? current : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	longjmp(skip_jmp, 1);
}

/* 1 passed, 0 skipped */
static int run_one(int i)
{
	if (setjmp(skip_jmp) != 0)
		return 0;
	tests[i].fn();
	fprintf(stderr, "[PASS] %s\n", current);
	return 1;
}

int main(int argc, char **argv)
{
	const char *filter = "*";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strncmp(argv[i], "--filter=", 9))
			filter = argv[i] + 9;
	}
	int passed = 0, skipped = 0;
	for (int i = 0; i < ntests; i++) {
		static char full[256];
		snprintf(full, sizeof(full), "%s/%s", tests[i].suite, tests[i].name);
		if (fnmatch(filter, full, 0) != 0)
			continue;
		current = full;
		fprintf(stderr, "[RUN ] %s\n", full);
		if (run_one(i))
			passed++;
		else
			skipped++;
	}
	printf("%d passed, 0 failed, %d skipped\n", passed, skipped);
	return 0;
}
