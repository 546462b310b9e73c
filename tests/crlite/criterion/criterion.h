/* SPDX-License-Identifier: MIT */
/*
 * crlite: a Criterion-compatible subset for the thread tests, which run under
 * ThreadSanitizer, where Criterion itself cannot start (its boxfort arena clashes with
 * TSan's memory layout: Criterion issue #274). Same test sources, this header first on
 * the include path, tests/crlite/crlite_main.c as the runner. Tests run in one process,
 * one after another; a failed assertion ends the program.
 */
#ifndef CRLITE_CRITERION_H
#define CRLITE_CRITERION_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void crlite_register(const char *suite, const char *name, void (*fn)(void));
void crlite_fail(const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));
void crlite_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define CRLITE_CAT_(a, b) a##b
#define CRLITE_CAT(a, b) CRLITE_CAT_(a, b)
#define Test(suite, name, ...)                                                        \
	static void suite##_##name##_impl(void);                                      \
	__attribute__((constructor)) static void suite##_##name##_reg(void)          \
	{                                                                             \
		crlite_register(#suite, #name, suite##_##name##_impl);               \
	}                                                                             \
	static void suite##_##name##_impl(void)

#define cr_assert(cond, ...)                                                          \
	do {                                                                          \
		if (!(cond))                                                          \
			crlite_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);      \
	} while (0)
#define cr_expect cr_assert
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) cr_assert(memcmp((a), (b), (n)) == 0, __VA_ARGS__)
#define cr_expect_eq cr_assert_eq
#define cr_expect_neq cr_assert_neq
#define cr_expect_geq cr_assert_geq
#define cr_expect_leq cr_assert_leq
#define cr_fail(...) crlite_fail(__FILE__, __LINE__, "cr_fail", "" __VA_ARGS__)
#define cr_assert_fail(...) cr_fail(__VA_ARGS__)
#define cr_skip_test(...) crlite_skip("" __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn cr_log_info
#define cr_log_error cr_log_info

#endif
