/* SPDX-License-Identifier: MIT */
#include "jsonw.h"
#include "toolutil.h"

#include <math.h>

void jw_init(struct jw *w, FILE *f)
{
	w->f = f;
	w->depth = 0;
	w->count[0] = 0;
}

static void put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				fprintf(f, "\\u%04x", *p);
			} else if (*p < 0x80) {
				fputc(*p, f);
			} else {
				/* a name is bytes: well-formed UTF-8 goes out as it is (a reader
				 * gets the same name back); any other byte, as a corrupt segment may
				 * hold, is U+FFFD, so the output stays valid UTF-8 */
				int n = tool_utf8_len(p);
				if (n) {
					fwrite(p, 1, (size_t)n, f);
					p += n - 1;
				} else {
					fputs("\\ufffd", f);
				}
			}
		}
	}
	fputc('"', f);
}

static void member(struct jw *w, const char *key)
{
	if (w->depth > 0) {
		if (w->count[w->depth]++)
			fputc(',', w->f);
		fputc('\n', w->f);
		for (int i = 0; i < w->depth; i++)
			fputs("  ", w->f);
	}
	if (key) {
		put_string(w->f, key);
		fputs(": ", w->f);
	}
}

static void open_(struct jw *w, const char *key, char c)
{
	member(w, key);
	fputc(c, w->f);
	if (w->depth < JW_DEPTH - 1)
		w->depth++;
	w->count[w->depth] = 0;
}

static void close_(struct jw *w, char c)
{
	int had = w->count[w->depth];
	if (w->depth > 0)
		w->depth--;
	if (had) {
		fputc('\n', w->f);
		for (int i = 0; i < w->depth; i++)
			fputs("  ", w->f);
	}
	fputc(c, w->f);
}

void jw_obj(struct jw *w, const char *key) { open_(w, key, '{'); }
void jw_obj_end(struct jw *w) { close_(w, '}'); }
void jw_arr(struct jw *w, const char *key) { open_(w, key, '['); }
void jw_arr_end(struct jw *w) { close_(w, ']'); }

void jw_str(struct jw *w, const char *key, const char *val)
{
	member(w, key);
	put_string(w->f, val ? val : "");
}

void jw_u64(struct jw *w, const char *key, uint64_t val)
{
	member(w, key);
	fprintf(w->f, "%llu", (unsigned long long)val);
}

void jw_i64(struct jw *w, const char *key, int64_t val)
{
	member(w, key);
	fprintf(w->f, "%lld", (long long)val);
}

void jw_dbl(struct jw *w, const char *key, double val)
{
	member(w, key);
	if (isfinite(val))
		fprintf(w->f, "%.3f", val);
	else
		fputs("null", w->f);
}

void jw_bool(struct jw *w, const char *key, int val)
{
	member(w, key);
	fputs(val ? "true" : "false", w->f);
}

void jw_null(struct jw *w, const char *key)
{
	member(w, key);
	fputs("null", w->f);
}

void jw_hex(struct jw *w, const char *key, uint64_t val)
{
	char b[24];
	snprintf(b, sizeof(b), "0x%016llx", (unsigned long long)val);
	jw_str(w, key, b);
}

void jw_end(struct jw *w)
{
	fputc('\n', w->f);
}
