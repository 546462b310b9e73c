/* SPDX-License-Identifier: MIT */
/* A tiny streaming JSON writer: pretty printed, strings escaped, nothing allocated. */
#ifndef SHMDUMP_JSONW_H
#define SHMDUMP_JSONW_H

#include <stdint.h>
#include <stdio.h>

#define JW_DEPTH 16

struct jw {
	FILE *f;
	int depth;
	int count[JW_DEPTH]; /* members written at each level */
};

void jw_init(struct jw *w, FILE *f);
/* key is NULL inside arrays (and for the top-level value). */
void jw_obj(struct jw *w, const char *key);
void jw_obj_end(struct jw *w);
void jw_arr(struct jw *w, const char *key);
void jw_arr_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val);
void jw_u64(struct jw *w, const char *key, uint64_t val);
void jw_i64(struct jw *w, const char *key, int64_t val);
void jw_dbl(struct jw *w, const char *key, double val);
void jw_bool(struct jw *w, const char *key, int val);
void jw_null(struct jw *w, const char *key);
/* "0x%016llx" as a string: 64-bit patterns that JSON numbers cannot carry exactly */
void jw_hex(struct jw *w, const char *key, uint64_t val);
/* Finish the document with a newline. */
void jw_end(struct jw *w);

#endif
