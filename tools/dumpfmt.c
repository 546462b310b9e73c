/* SPDX-License-Identifier: MIT */
#include "dumpfmt.h"
#include "toolutil.h"

#include <string.h>
#include <time.h>

double fmt_fill_pct(const struct shmring_dump_info *i)
{
	if (!i->capacity)
		return -1;
	return (double)i->fill * 100.0 / (double)i->capacity;
}

const char *fmt_time(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	char d[32];
	if (!gmtime_r(&s, &tm) || !strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(buf, len, "?");
		return buf;
	}
	snprintf(buf, len, "%s.%09lluZ", d, (unsigned long long)(ns % 1000000000u));
	return buf;
}

static const char *alive_name(int a)
{
	return a > 0 ? "live" : a == 0 ? "dead" : "unknown";
}

/* ---- records ---- */

struct rec_out {
	FILE *f;
	struct jw *w; /* JSON when set */
};

static void rec_text(void *arg, const struct shmring_dump_record *r)
{
	struct rec_out *o = arg;
	uint64_t n = r->len < FMT_RECORD_BYTES ? r->len : FMT_RECORD_BYTES;
	fprintf(o->f, "  #%-4llu offset %llu  len %llu  tag %u  checksum %s\n",
		(unsigned long long)r->index, (unsigned long long)r->offset,
		(unsigned long long)r->len, r->flags & 0xffffu,
		r->checksum_ok < 0 ? "none" : r->checksum_ok ? "ok" : "BAD");
	for (uint64_t off = 0; off < n; off += 16) {
		char hex[16 * 3 + 1], asc[17];
		size_t h = 0;
		unsigned k;
		for (k = 0; k < 16 && off + k < n; k++) {
			uint8_t b = r->payload[off + k];
			h += (size_t)snprintf(hex + h, sizeof(hex) - h, "%02x ", b);
			asc[k] = (b >= 0x20 && b < 0x7f) ? (char)b : '.';
		}
		asc[k] = '\0';
		fprintf(o->f, "      %08llx  %-48s |%s|\n", (unsigned long long)off, hex, asc);
	}
}

static void rec_json(void *arg, const struct shmring_dump_record *r)
{
	struct rec_out *o = arg;
	uint64_t n = r->len < FMT_RECORD_BYTES ? r->len : FMT_RECORD_BYTES;
	char hex[FMT_RECORD_BYTES * 2 + 1];
	for (uint64_t k = 0; k < n; k++)
		snprintf(hex + 2 * k, 3, "%02x", r->payload[k]);
	hex[2 * n] = '\0';
	jw_obj(o->w, NULL);
	jw_u64(o->w, "index", r->index);
	jw_u64(o->w, "offset", r->offset);
	jw_u64(o->w, "len", r->len);
	jw_u64(o->w, "tag", r->flags & 0xffffu);
	if (r->checksum_ok < 0)
		jw_null(o->w, "checksum_ok");
	else
		jw_bool(o->w, "checksum_ok", r->checksum_ok);
	jw_str(o->w, "head_hex", hex);
	jw_obj_end(o->w);
}

/* Whether a process has the segment open (the holder lock, layout.h). */
static void held_json(struct jw *w, const struct seg_view *v)
{
	if (v->held_open < 0)
		jw_null(w, "held_open");
	else
		jw_bool(w, "held_open", v->held_open);
}

/* ---- broadcast readers (not in the participant table; see segview.h) ---- */

static void readers_json(struct jw *w, const struct seg_view *v)
{
	if (v->info.kind != SHMRING_KIND_BCAST)
		return;
	jw_obj(w, "readers");
	if (v->readers_locked < 0)
		jw_null(w, "lock_held");
	else
		jw_bool(w, "lock_held", v->readers_locked);
	jw_u64(w, "open_count", v->readers_open);
	jw_bool(w, "at_least", v->readers_at_least);
	jw_obj_end(w);
}

static void readers_text(FILE *f, const struct seg_view *v)
{
	if (v->info.kind != SHMRING_KIND_BCAST)
		return;
	if (v->readers_locked > 0)
		fprintf(f, "readers          live: the reader lock is held; %s%llu open by the reader "
			"page's count\n", v->readers_at_least ? "at least 1, " : "",
			(unsigned long long)v->readers_open);
	else if (v->readers_locked == 0)
		fprintf(f, "readers          none live: the reader lock is free; %llu open by the "
			"reader page's count\n", (unsigned long long)v->readers_open);
	else
		fprintf(f, "readers          unknown: the reader lock could not be tested\n");
}

/* ---- show ---- */

static void problem_line(FILE *f, const char *indent, const struct shmring_dump_problem *p)
{
	fprintf(f, "%s%s = %llu (0x%llx): %s\n", indent, p->field, (unsigned long long)p->value,
		(unsigned long long)p->value, p->msg);
}

static void show_problems_text(FILE *f, const struct shmring_dump_info *i)
{
	if (i->nproblems == 0) {
		fprintf(f, "problems         none\n");
		return;
	}
	fprintf(f, "problems         %u\n", i->nproblems);
	for (uint32_t k = 0; k < i->nproblems && k < SHMRING_DUMP_PROBLEMS_MAX; k++)
		problem_line(f, "  ", &i->problems[k]);
}

void fmt_show_text(FILE *f, const struct seg_view *v, unsigned records)
{
	const struct shmring_dump_info *i = &v->info;
	char t[64], hb[32];

	fprintf(f, "segment          %s\n", v->label);
	fprintf(f, "path             %s\n", v->label_path);
	fprintf(f, "state            %s (%u live, %u dead participants%s)\n",
		seg_state_name(v->state), v->live, v->dead,
		v->held_open > 0 && !v->live ? "; held open by a process" : "");
	/* the magic's label is its 8 bytes as stored (little endian, no NUL): "SHMHRNG1" */
	char mb[9] = "";
	if (i->magic == SHMRING_MAGIC) {
		for (int k = 0; k < 8; k++)
			mb[k] = (char)((i->magic >> (8 * k)) & 0xff);
	}
	fprintf(f, "magic            0x%016llx%s%s%s\n", (unsigned long long)i->magic,
		*mb ? " (" : "", mb, *mb ? ")" : "");
	fprintf(f, "kind             %s (%u)\n", i->kind_name, i->kind);
	fprintf(f, "layout_version   %u\n", i->layout_version);
	fprintf(f, "flags            0x%08x%s%s\n", i->flags,
		(i->flags & SHMRING_SEG_F_MEMFD) ? " memfd" : "",
		(i->flags & SHMRING_SEG_F_SEMWAIT) ? " semwait" : "");
	fprintf(f, "total_size       %llu (%s)\n", (unsigned long long)i->total_size,
		tool_human(i->total_size, hb, sizeof(hb)));
	fprintf(f, "hdr_size         %u\n", i->hdr_size);
	fprintf(f, "parts_off        %llu\n", (unsigned long long)i->parts_off);
	fprintf(f, "max_parts        %u\n", i->max_parts);
	fprintf(f, "ctrl             offset %llu, size %llu\n", (unsigned long long)i->ctrl_off,
		(unsigned long long)i->ctrl_size);
	fprintf(f, "data             offset %llu, size %llu\n", (unsigned long long)i->data_off,
		(unsigned long long)i->data_size);
	fprintf(f, "created          %s (created_ns %llu)\n", fmt_time(i->created_ns, t, sizeof(t)),
		(unsigned long long)i->created_ns);
	fprintf(f, "creator_pid      %d\n", i->creator_pid);
	char nb[sizeof(i->name)];
	fprintf(f, "name             %s\n", tool_printable(i->name, nb, sizeof(nb)));
	fprintf(f, "reserved         %llu %llu %llu %llu\n", (unsigned long long)i->reserved[0],
		(unsigned long long)i->reserved[1], (unsigned long long)i->reserved[2],
		(unsigned long long)i->reserved[3]);
	fprintf(f, "checksum         0x%016llx (%s)\n", (unsigned long long)i->checksum,
		i->checksum == i->checksum_calc ? "verified"
						: "MISMATCH");
	fprintf(f, "geo              ");
	for (unsigned k = 0; k < SHMRING_GEO_WORDS; k++)
		fprintf(f, "%s%llu", k ? " " : "", (unsigned long long)i->geo[k]);
	fprintf(f, "\n");

	if (i->kind_decoded) {
		double pct = fmt_fill_pct(i);
		fprintf(f, "%-16s capacity %llu %s, fill %llu %s (%.1f%%)\n", i->kind_name,
			(unsigned long long)i->capacity, i->unit, (unsigned long long)i->fill,
			i->unit, pct < 0 ? 0.0 : pct);
		for (uint32_t k = 0; k < i->nkv; k++)
			fprintf(f, "  %-20s %llu\n", i->kv[k].key, (unsigned long long)i->kv[k].val);
	} else {
		fprintf(f, "%-16s control region not decoded by this version\n", i->kind_name);
	}

	fprintf(f, "participants     %u in use of %u slots\n", i->nparts, i->max_parts);
	if (i->nparts) {
		fprintf(f, "  %-4s %-10s %-7s %-8s %-7s %-5s %s\n", "slot", "role", "state", "pid",
			"alive", "gen", "joined");
		for (uint32_t k = 0; k < i->nparts; k++) {
			const struct shmring_dump_part *p = &i->parts[k];
			fprintf(f, "  %-4u %-10s %-7s %-8d %-7s %-5u %s\n", p->slot,
				shmring_dump_role_name(p->role), shmring_dump_state_name(p->state),
				p->pid, alive_name(p->alive), p->gen,
				fmt_time(p->joined_ns, t, sizeof(t)));
		}
	}

	readers_text(f, v);

	const struct shmring_dump_stats *s = &i->stats;
	fprintf(f, "statistics\n");
	fprintf(f, "  %-20s %llu\n", "msgs", (unsigned long long)s->msgs);
	fprintf(f, "  %-20s %llu\n", "bytes", (unsigned long long)s->bytes);
	fprintf(f, "  %-20s %llu\n", "wake_syscalls", (unsigned long long)s->wake_syscalls);
	fprintf(f, "  %-20s %llu\n", "sleeps", (unsigned long long)s->sleeps);
	fprintf(f, "  %-20s %llu\n", "drops", (unsigned long long)s->drops);
	fprintf(f, "  %-20s %llu\n", "laps", (unsigned long long)s->laps);
	fprintf(f, "  %-20s %llu\n", "abandoned", (unsigned long long)s->abandoned);
	fprintf(f, "  %-20s %llu\n", "peer_deaths", (unsigned long long)s->peer_deaths);
	fprintf(f, "  %-20s %llu\n", "timeouts", (unsigned long long)s->timeouts);
	show_problems_text(f, i);

	if (records) {
		struct rec_out o = { f, NULL };
		fprintf(f, "records          first %u pending\n", records);
		int n = shmring_dump_records_buf(v->map, v->len, records, rec_text, &o);
		if (n == 0)
			fprintf(f, "  (none)\n");
		else if (n < 0)
			fprintf(f, "  (not walked: %s)\n",
				n == -ENOTSUP ? "this kind has no record decoder yet"
					      : "the segment is not consistent");
	}
}

static void header_json(struct jw *w, const struct shmring_dump_info *i)
{
	jw_obj(w, "header");
	jw_hex(w, "magic", i->magic);
	jw_u64(w, "layout_version", i->layout_version);
	jw_str(w, "kind", i->kind_name);
	jw_u64(w, "kind_id", i->kind);
	jw_u64(w, "flags", i->flags);
	jw_u64(w, "hdr_size", i->hdr_size);
	jw_u64(w, "total_size", i->total_size);
	jw_u64(w, "created_ns", i->created_ns);
	jw_i64(w, "creator_pid", i->creator_pid);
	jw_u64(w, "max_parts", i->max_parts);
	jw_u64(w, "parts_off", i->parts_off);
	jw_u64(w, "ctrl_off", i->ctrl_off);
	jw_u64(w, "ctrl_size", i->ctrl_size);
	jw_u64(w, "data_off", i->data_off);
	jw_u64(w, "data_size", i->data_size);
	jw_arr(w, "geo");
	for (unsigned k = 0; k < SHMRING_GEO_WORDS; k++)
		jw_u64(w, NULL, i->geo[k]);
	jw_arr_end(w);
	jw_str(w, "name", i->name);
	jw_arr(w, "reserved");
	for (unsigned k = 0; k < 4; k++)
		jw_u64(w, NULL, i->reserved[k]);
	jw_arr_end(w);
	jw_hex(w, "checksum", i->checksum);
	jw_hex(w, "checksum_computed", i->checksum_calc);
	jw_bool(w, "checksum_ok", i->checksum == i->checksum_calc);
	jw_obj_end(w);
}

static void problems_json(struct jw *w, const struct shmring_dump_info *i)
{
	jw_arr(w, "problems");
	for (uint32_t k = 0; k < i->nproblems && k < SHMRING_DUMP_PROBLEMS_MAX; k++) {
		const struct shmring_dump_problem *p = &i->problems[k];
		jw_obj(w, NULL);
		jw_str(w, "field", p->field);
		jw_u64(w, "value", p->value);
		jw_str(w, "message", p->msg);
		jw_obj_end(w);
	}
	jw_arr_end(w);
}

static void ident_json(struct jw *w, const struct seg_view *v)
{
	jw_str(w, "segment", v->name);
	jw_str(w, "path", v->path);
	jw_str(w, "state", seg_state_name(v->state));
	held_json(w, v);
	jw_bool(w, "consistent", v->decode_rc == 0 && v->info.nproblems == 0);
	jw_u64(w, "problem_count", v->info.nproblems);
}

void fmt_show_json(FILE *f, const struct seg_view *v, unsigned records)
{
	const struct shmring_dump_info *i = &v->info;
	struct jw w;

	jw_init(&w, f);
	jw_obj(&w, NULL);
	ident_json(&w, v);
	header_json(&w, i);

	jw_obj(&w, "ring");
	jw_bool(&w, "decoded", i->kind_decoded);
	jw_str(&w, "unit", i->unit);
	jw_u64(&w, "capacity", i->capacity);
	jw_u64(&w, "fill", i->fill);
	double pct = fmt_fill_pct(i);
	if (pct < 0)
		jw_null(&w, "fill_pct");
	else
		jw_dbl(&w, "fill_pct", pct);
	jw_obj(&w, "fields");
	for (uint32_t k = 0; k < i->nkv; k++)
		jw_u64(&w, i->kv[k].key, i->kv[k].val);
	jw_obj_end(&w);
	jw_obj_end(&w);

	jw_obj(&w, "participants");
	jw_u64(&w, "live", v->live);
	jw_u64(&w, "dead", v->dead);
	jw_arr(&w, "slots");
	for (uint32_t k = 0; k < i->nparts; k++) {
		const struct shmring_dump_part *p = &i->parts[k];
		jw_obj(&w, NULL);
		jw_u64(&w, "slot", p->slot);
		jw_str(&w, "role", shmring_dump_role_name(p->role));
		jw_u64(&w, "role_id", p->role);
		jw_str(&w, "state", shmring_dump_state_name(p->state));
		jw_i64(&w, "pid", p->pid);
		if (p->alive < 0)
			jw_null(&w, "alive");
		else
			jw_bool(&w, "alive", p->alive);
		jw_u64(&w, "gen", p->gen);
		jw_u64(&w, "start_time", p->start_time);
		jw_u64(&w, "joined_ns", p->joined_ns);
		jw_arr(&w, "kind_data");
		for (int j = 0; j < 4; j++)
			jw_u64(&w, NULL, p->kind_data[j]);
		jw_arr_end(&w);
		jw_obj_end(&w);
	}
	jw_arr_end(&w);
	readers_json(&w, v);
	jw_obj_end(&w);

	const struct shmring_dump_stats *s = &i->stats;
	jw_obj(&w, "stats");
	jw_u64(&w, "msgs", s->msgs);
	jw_u64(&w, "bytes", s->bytes);
	jw_u64(&w, "wake_syscalls", s->wake_syscalls);
	jw_u64(&w, "sleeps", s->sleeps);
	jw_u64(&w, "drops", s->drops);
	jw_u64(&w, "laps", s->laps);
	jw_u64(&w, "abandoned", s->abandoned);
	jw_u64(&w, "peer_deaths", s->peer_deaths);
	jw_u64(&w, "timeouts", s->timeouts);
	jw_obj_end(&w);

	problems_json(&w, i);
	if (records) {
		struct rec_out o = { f, &w };
		jw_arr(&w, "records");
		shmring_dump_records_buf(v->map, v->len, records, rec_json, &o);
		jw_arr_end(&w);
	}
	jw_obj_end(&w);
	jw_end(&w);
}

/* ---- check ---- */

void fmt_check_text(FILE *f, const struct seg_view *v)
{
	const struct shmring_dump_info *i = &v->info;
	if (i->nproblems == 0) {
		fprintf(f, "%s: consistent (%s, %u live, %u dead participants)\n", v->label,
			i->kind_name, v->live, v->dead);
		return;
	}
	for (uint32_t k = 0; k < i->nproblems && k < SHMRING_DUMP_PROBLEMS_MAX; k++)
		problem_line(f, "", &i->problems[k]);
	if (i->nproblems > SHMRING_DUMP_PROBLEMS_MAX)
		fprintf(f, "(%u more problems not shown)\n", i->nproblems - SHMRING_DUMP_PROBLEMS_MAX);
}

void fmt_check_json(FILE *f, const struct seg_view *v)
{
	struct jw w;
	jw_init(&w, f);
	jw_obj(&w, NULL);
	ident_json(&w, v);
	jw_str(&w, "kind", v->info.kind_name);
	problems_json(&w, &v->info);
	jw_obj_end(&w);
	jw_end(&w);
}

/* ---- list ---- */

void fmt_list_head(FILE *f)
{
	fprintf(f, "%-32s %-6s %10s %10s %7s %-9s %-9s %s\n", "NAME", "KIND", "SIZE", "CAPACITY",
		"FILL", "PRODUCERS", "CONSUMERS", "STATE");
}

void fmt_list_row(FILE *f, const struct seg_view *v)
{
	const struct shmring_dump_info *i = &v->info;
	char sz[32], cap[32];
	struct fmt_cells c;

	tool_human(v->len, sz, sizeof(sz));
	if (!i->capacity)
		snprintf(cap, sizeof(cap), "-");
	else if (strcmp(i->unit, "bytes") == 0)
		tool_human(i->capacity, cap, sizeof(cap));
	else
		snprintf(cap, sizeof(cap), "%llu %s", (unsigned long long)i->capacity, i->unit);
	fmt_cells(v, &c);
	fprintf(f, "%-32s %-6s %10s %10s %7s %-9s %-9s %s\n", v->label, i->kind_name, sz, cap,
		c.fill, c.prod, c.cons, seg_state_name(v->state));
}

void fmt_cells(const struct seg_view *v, struct fmt_cells *c)
{
	double pct = fmt_fill_pct(&v->info);
	if (pct < 0)
		snprintf(c->fill, sizeof(c->fill), "-");
	else
		snprintf(c->fill, sizeof(c->fill), "%.1f%%", pct);
	snprintf(c->prod, sizeof(c->prod), "%u/%u", v->prod_live, v->prod_dead);
	snprintf(c->cons, sizeof(c->cons), "%s%u/%u", v->readers_at_least ? ">=" : "",
		 v->cons_live, v->cons_dead);
}

void fmt_list_json(struct jw *w, const struct seg_view *v)
{
	const struct shmring_dump_info *i = &v->info;
	double pct = fmt_fill_pct(i);
	jw_obj(w, NULL);
	jw_str(w, "segment", v->name);
	jw_str(w, "path", v->path);
	jw_str(w, "kind", i->kind_name);
	jw_u64(w, "size", v->len);
	jw_str(w, "unit", i->unit);
	jw_u64(w, "capacity", i->capacity);
	jw_u64(w, "fill", i->fill);
	if (pct < 0)
		jw_null(w, "fill_pct");
	else
		jw_dbl(w, "fill_pct", pct);
	jw_obj(w, "producers");
	jw_u64(w, "live", v->prod_live);
	jw_u64(w, "dead", v->prod_dead);
	jw_obj_end(w);
	jw_obj(w, "consumers");
	jw_u64(w, "live", v->cons_live);
	jw_u64(w, "dead", v->cons_dead);
	jw_bool(w, "exact", v->cons_exact);
	jw_obj_end(w);
	readers_json(w, v);
	jw_str(w, "state", seg_state_name(v->state));
	held_json(w, v);
	jw_u64(w, "problem_count", i->nproblems);
	jw_obj_end(w);
}
