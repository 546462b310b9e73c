/* SPDX-License-Identifier: MIT */
/* shmdump's output: text for people, JSON for programs (the same content). */
#ifndef SHMDUMP_DUMPFMT_H
#define SHMDUMP_DUMPFMT_H

#include "jsonw.h"
#include "segview.h"

#include <stdio.h>

/* Bytes of each record shown by show --records. */
#define FMT_RECORD_BYTES 64u

void fmt_show_text(FILE *f, const struct seg_view *v, unsigned records);
void fmt_show_json(FILE *f, const struct seg_view *v, unsigned records);
/* One line per problem ("FIELD = VALUE (0xHEX): message"). */
void fmt_check_text(FILE *f, const struct seg_view *v);
void fmt_check_json(FILE *f, const struct seg_view *v);
void fmt_list_head(FILE *f);
void fmt_list_row(FILE *f, const struct seg_view *v);
/* One element of the list array. */
void fmt_list_json(struct jw *w, const struct seg_view *v);

/* The FILL, PRODUCERS and CONSUMERS cells that list and watch rows share. */
struct fmt_cells {
	char fill[16], prod[24], cons[24];
};
void fmt_cells(const struct seg_view *v, struct fmt_cells *c);
/* 0..100, or -1 when the capacity is unknown. */
double fmt_fill_pct(const struct shmring_dump_info *i);
/* "2024-05-01T12:00:00.123456789Z" */
const char *fmt_time(uint64_t ns, char *buf, size_t len);

#endif
