/* SPDX-License-Identifier: MIT */
/*
 * shmdump's parsing (shmring/dump.h) over arbitrary bytes: decode, check and the
 * record walk. The first byte picks raw bytes or a segment image (fuzz_common.h); the
 * buffer is an exact-size heap copy, so ASan reports any read past it. Checks: only the
 * documented return values; check_buf agrees with decode_buf; every string is
 * terminated inside its array; every record's payload lies inside the buffer; counts
 * stay within their arrays; the same answer twice.
 */
#include <errno.h>

#include "fuzz_common.h"
#include "shmring/dump.h"

struct walk {
	const uint8_t *buf;
	size_t len;
	unsigned n;
	uint64_t sum;
};

static void on_problem(void *arg, const struct shmring_dump_problem *p)
{
	unsigned *n = arg;
	FZ_CHECK(memchr(p->field, '\0', sizeof(p->field)) != NULL, "field not terminated");
	FZ_CHECK(memchr(p->msg, '\0', sizeof(p->msg)) != NULL, "msg not terminated");
	(*n)++;
}

static void on_record(void *arg, const struct shmring_dump_record *r)
{
	struct walk *w = arg;
	FZ_CHECK(r->payload == w->buf + r->offset, "payload %p is not buf + %llu", (void *)r->payload,
		 (unsigned long long)r->offset);
	FZ_CHECK(fz_inside(r->payload, r->len, w->buf, w->len), "record payload [%llu, +%llu) outside %zu",
		 (unsigned long long)r->offset, (unsigned long long)r->len, w->len);
	FZ_CHECK(r->checksum_ok >= -1 && r->checksum_ok <= 1, "checksum_ok %d", r->checksum_ok);
	w->sum += fz_touch(r->payload, r->len);
	w->n++;
}

static void check_info(const struct shmring_dump_info *i, size_t len)
{
	FZ_CHECK(i->file_size == len, "file_size %llu", (unsigned long long)i->file_size);
	FZ_CHECK(memchr(i->name, '\0', sizeof(i->name)) != NULL, "name not terminated");
	for (size_t k = 0; i->name[k]; k++) { /* no control byte; others as written */
		unsigned char ch = (unsigned char)i->name[k];
		FZ_CHECK(ch >= 0x20 && ch != 0x7f, "control byte in the name at %zu", k);
	}
	FZ_CHECK(i->nparts <= SHMRING_MAX_PARTS, "nparts %u", i->nparts);
	FZ_CHECK(i->nkv <= SHMRING_DUMP_KV_MAX, "nkv %u", i->nkv);
	FZ_CHECK(i->kind_name != NULL && i->unit != NULL, "NULL names");
	for (uint32_t k = 0; k < i->nkv; k++)
		FZ_CHECK(memchr(i->kv[k].key, '\0', sizeof(i->kv[k].key)) != NULL, "kv key");
	uint32_t kept = i->nproblems < SHMRING_DUMP_PROBLEMS_MAX ? i->nproblems : SHMRING_DUMP_PROBLEMS_MAX;
	for (uint32_t k = 0; k < kept; k++) {
		FZ_CHECK(memchr(i->problems[k].field, '\0', SHMRING_DUMP_FIELD_MAX) != NULL, "field");
		FZ_CHECK(memchr(i->problems[k].msg, '\0', SHMRING_DUMP_MSG_MAX) != NULL, "msg");
	}
	for (uint32_t k = 0; k < i->nparts; k++) {
		FZ_CHECK(i->parts[k].slot < SHMRING_MAX_PARTS, "slot %u", i->parts[k].slot);
		FZ_CHECK(i->parts[k].alive == -1, "alive %d", i->parts[k].alive);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	uint8_t m = fz_u8(&f);
	unsigned max = fz_u8(&f);
	uint8_t *buf;
	size_t len;
	if (m & 1) {
		buf = fz_image(&f, &len);
		if (!buf)
			return 0;
	} else {
		len = f.n;
		buf = malloc(len ? len : 1);
		if (!buf)
			return 0;
		memcpy(buf, f.p, len);
	}
	static struct shmring_dump_info info, info2; /* large: keep them off the stack */
	memset(&info, 0x5a, sizeof(info));
	int rc = shmring_dump_decode_buf(buf, len, &info);
	FZ_CHECK(rc == 0 || rc == -EPROTO, "decode rc %d", rc);
	check_info(&info, len);
	if (rc == -EPROTO)
		FZ_CHECK(info.nproblems >= 1, "not a segment, yet no problem named");

	unsigned np = 0;
	int crc = shmring_dump_check_buf(buf, len, on_problem, &np);
	FZ_CHECK(crc >= 0, "check rc %d", crc);
	FZ_CHECK((unsigned)crc == np, "check returned %d but reported %u problems", crc, np);
	if (rc == 0)
		FZ_CHECK((uint32_t)crc == info.nproblems, "check says %d problems, decode %u", crc,
			 info.nproblems);
	else
		FZ_CHECK(crc >= 1, "not a segment, yet check found nothing");
	FZ_CHECK(shmring_dump_check_buf(buf, len, NULL, NULL) == crc, "NULL callback changes rc");

	struct walk w = { buf, len, 0, 0 };
	int rrc = shmring_dump_records_buf(buf, len, max, on_record, &w);
	FZ_CHECK(rrc >= 0 || rrc == -EPROTO || rrc == -ENOTSUP, "records rc %d", rrc);
	if (rrc >= 0)
		FZ_CHECK((unsigned)rrc == w.n && w.n <= max, "records rc %d, reported %u, max %u", rrc, w.n,
			 max);
	if (rc != 0)
		FZ_CHECK(rrc < 0, "records walked in something that is not a segment");

	memset(&info2, 0, sizeof(info2));
	int rc2 = shmring_dump_decode_buf(buf, len, &info2);
	FZ_CHECK(rc2 == rc && info2.nproblems == info.nproblems, "not deterministic");

	FZ_CHECK(shmring_dump_kind_name(fz_u32(&f)) != NULL, "kind name");
	FZ_CHECK(shmring_dump_role_name(fz_u32(&f)) != NULL, "role name");
	FZ_CHECK(shmring_dump_state_name(fz_u32(&f)) != NULL, "state name");
	free(buf);
	return 0;
}
