/* SPDX-License-Identifier: MIT */
/*
 * shmring_hdr_validate over arbitrary bytes. The first input byte picks the form: raw
 * bytes (the first 256 are the header, the file size comes from the input or is the
 * input's length) or a segment image (fuzz_common.h), which reaches the geometry checks
 * behind the checksum. Checks: only the documented errors; on success every region the
 * geometry names lies inside total_size, total_size inside the file; the validator reads
 * only the 256 bytes it is given (the copy is exactly that long, for ASan); a sentence
 * in why on failure; the same answer twice.
 */
#include <errno.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	uint8_t m = fz_u8(&f);
	uint8_t *img = NULL;
	size_t len;
	uint64_t file_size;
	if (m & 1) {
		img = fz_image(&f, &len);
		if (!img)
			return 0;
		file_size = len;
	} else {
		len = f.n;
		img = malloc(len ? len : 1);
		if (!img)
			return 0;
		memcpy(img, f.p, len);
		file_size = len;
		if (m & 2 && len >= 264) /* a file size that disagrees with the bytes */
			memcpy(&file_size, img + 256, 8);
	}
	uint8_t *hdr = malloc(256);
	if (!hdr) {
		free(img);
		return 0;
	}
	size_t hl = len < 256 ? len : 256;
	memcpy(hdr, img, hl);

	struct shmring_seg s, s2;
	char why[200], why2[200];
	memset(&s, 0x5a, sizeof(s));
	why[0] = '\0';
	int rc = shmring_hdr_validate(hdr, hl, file_size, &s, why, sizeof(why));
	FZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EBADMSG || rc == -EAGAIN, "rc %d", rc);
	if (hl < 256)
		FZ_CHECK(rc == -EPROTO, "short header accepted: %d", rc);
	if (rc == 0) {
		FZ_CHECK(s.size <= file_size && s.size >= SHMRING_HDR_SIZE && s.size % SHMRING_PAGE == 0,
			 "size %llu file %llu", (unsigned long long)s.size, (unsigned long long)file_size);
		FZ_CHECK(s.kind >= SHMRING_KIND_SPSC && s.kind <= SHMRING_KIND_BCAST, "kind %u", s.kind);
		FZ_CHECK(s.max_parts >= 1 && s.max_parts <= SHMRING_MAX_PARTS, "max_parts %u", s.max_parts);
		FZ_CHECK(s.ctrl_off >= SHMRING_HDR_SIZE && s.ctrl_off <= s.size &&
				 s.ctrl_size <= s.size - s.ctrl_off,
			 "ctrl %llu+%llu", (unsigned long long)s.ctrl_off, (unsigned long long)s.ctrl_size);
		FZ_CHECK(s.data_off >= s.ctrl_off + s.ctrl_size && s.data_off <= s.size &&
				 s.data_size <= s.size - s.data_off,
			 "data %llu+%llu", (unsigned long long)s.data_off, (unsigned long long)s.data_size);
		FZ_CHECK(s.ctrl_off % SHMRING_PAGE == 0 && s.data_off % SHMRING_PAGE == 0, "alignment");
		FZ_CHECK(memchr(s.name, '\0', sizeof(s.name)) != NULL, "name not terminated");
		FZ_CHECK(shmring_hdr_checksum(hdr) == *(uint64_t *)(void *)(hdr + SHMRING_CHECKSUM_OFF),
			 "accepted with a wrong checksum");
	} else {
		FZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL && why[0] != '\0', "no reason given");
	}
	int rc2 = shmring_hdr_validate(hdr, hl, file_size, &s2, why2, sizeof(why2));
	FZ_CHECK(rc2 == rc, "not deterministic: %d then %d", rc, rc2);
	/* NULL out and why are allowed */
	FZ_CHECK(shmring_hdr_validate(hdr, hl, file_size, NULL, NULL, 0) == rc, "NULL out changes rc");
	free(hdr);
	free(img);
	return 0;
}
