/* SPDX-License-Identifier: MIT */
/*
 * segtool: makes segments with known contents for the shmdump and shmcat tests.
 *
 *   segtool KIND NAME CAPACITY RECORDS LEN CONSUME MODE
 *
 * Creates the SPSC ring NAME (CAPACITY bytes) as its producer, commits RECORDS records
 * of LEN bytes (byte i of record k is (k * 31 + i) & 0xff), attaches as the consumer in
 * the same process and releases the first CONSUME records. Then, by MODE:
 *   hold     print "ready", wait for EOF on stdin, close both ends, exit 0
 *   detach   leave the segment behind with nobody attached (stale), exit 0
 *   producer as hold, but the consumer detaches first (only the producer is live)
 * KIND spsc does all of the above. mpmc (CAPACITY cells of LEN bytes), pool (CAPACITY
 * buffers of LEN bytes, one subscriber, checksums on) and bcast (CAPACITY slots of LEN
 * bytes) publish RECORDS messages, consume CONSUME of them (not bcast), and then hold
 * or detach. bcast has two more modes:
 *   reader   attach to the existing channel NAME as a reader (nothing else), print
 *            "ready", wait for EOF on stdin, close, exit 0 (the other arguments unused)
 *   lapped   open a reader at the oldest record before publishing, publish RECORDS
 *            (more than CAPACITY: the reader is lapped), let the reader read one
 *            record, then detach everyone
 *
 *   segtool rehash PATH
 * recomputes the header checksum of the segment file PATH in place (for tests that
 * damage one header field and want only that field to be wrong).
 *
 *   segtool turn NAME
 * takes the turn of NAME's creators (shmring_seg_turn_take(), as a creator does while
 * it creates), prints "ready", waits for EOF on stdin and gives it back.
 *
 *   segtool churn NAME MILLISECONDS
 * is an application that restarts over and over (for `shmdump clean` racing with
 * creators): for MILLISECONDS, it removes the name, creates the SPSC ring NAME as its
 * producer (again at once on -EEXIST), holds it open for a random 0-400 us while it
 * checks, over and over, that the name still leads to its ring, then closes it (a
 * stale segment stays under the name) and lets it lie there for a random 0-400 us.
 * It is the only process that creates or removes NAME, apart from clean. Prints
 * "creates N eexist N checks N violations N"; each violation (the name gone or
 * leading to another file while the ring was held) is said on stderr (the first 5).
 */
#include "shmring/bcast.h"
#include "shmring/mpmc.h"
#include "shmring/pool.h"
#include "shmring/spsc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what, int rc)
{
	fprintf(stderr, "segtool: %s: %s (%s)\n", what, shmring_strerror(rc),
		shmring_last_error_detail());
	return 1;
}

static void pattern(void *buf, size_t len, unsigned k)
{
	for (size_t i = 0; i < len; i++)
		((unsigned char *)buf)[i] = (unsigned char)((k * 31 + i) & 0xff);
}

static void hold(void)
{
	char b[64];
	printf("ready\n");
	fflush(stdout);
	while (read(STDIN_FILENO, b, sizeof(b)) > 0)
		;
}

static int other_kind(const char *kind, const char *name, uint64_t cap, unsigned nrec,
		      size_t len, unsigned consume, const char *mode)
{
	unsigned char *buf = calloc(1, len ? len : 1);
	int rc, det = strcmp(mode, "detach") == 0;
	if (strcmp(kind, "mpmc") == 0) {
		struct shmring_mpmc *p, *c;
		struct shmring_mpmc_opts o = { .capacity = (uint32_t)cap, .slot_size = (uint32_t)len };
		if ((rc = shmring_mpmc_create(name, &o, SHMRING_ROLE_PRODUCER, &p)))
			return die("mpmc create", rc);
		if ((rc = shmring_mpmc_open(name, SHMRING_ROLE_CONSUMER, &c)))
			return die("mpmc open", rc);
		for (unsigned k = 0; k < nrec; k++) {
			pattern(buf, len, k);
			if ((rc = shmring_mpmc_enqueue(p, buf, len, 0)))
				return die("mpmc enqueue", rc);
		}
		for (unsigned k = 0; k < consume; k++)
			if ((rc = shmring_mpmc_dequeue(c, buf, len, 0)) < 0)
				return die("mpmc dequeue", rc);
		if (!det)
			hold();
		shmring_mpmc_close(c);
		shmring_mpmc_close(p);
	} else if (strcmp(kind, "pool") == 0) {
		struct shmring_pool *p, *s;
		struct shmring_pool_opts o = { .buf_size = len, .nbufs = (uint32_t)cap, .max_subs = 1,
					       .flags = SHMRING_POOL_F_CHECKSUM };
		if ((rc = shmring_pool_create(name, &o, NULL, &p)))
			return die("pool create", rc);
		if ((rc = shmring_pool_subscribe(name, NULL, &s)))
			return die("pool subscribe", rc);
		for (unsigned k = 0; k < nrec; k++) {
			struct shmring_pool_frame f = { 0 };
			if ((rc = shmring_pool_loan(p, &f)))
				return die("pool loan", rc);
			f.len = len;
			pattern(f.data, len, k);
			if ((rc = shmring_pool_publish(p, &f)) < 0)
				return die("pool publish", rc);
		}
		for (unsigned k = 0; k < consume; k++) {
			struct shmring_pool_frame f = { 0 };
			if ((rc = shmring_pool_take(s, &f)))
				return die("pool take", rc);
			shmring_pool_release(s, &f);
		}
		if (!det)
			hold();
		shmring_pool_close(s);
		shmring_pool_close(p);
	} else if (strcmp(kind, "bcast") == 0 && strcmp(mode, "reader") == 0) {
		struct shmring_bcast *r;
		if ((rc = shmring_bcast_open(name, SHMRING_ROLE_READER, 0, &r)))
			return die("bcast open reader", rc);
		hold();
		shmring_bcast_close(r);
	} else if (strcmp(kind, "bcast") == 0) {
		struct shmring_bcast *w, *r = NULL;
		struct shmring_bcast_opts o = { .slots = (uint32_t)cap, .slot_size = len };
		int lapped = strcmp(mode, "lapped") == 0;
		if ((rc = shmring_bcast_create(name, &o, SHMRING_ROLE_PRODUCER, &w)))
			return die("bcast create", rc);
		if (lapped && (rc = shmring_bcast_open(name, SHMRING_ROLE_READER,
						       SHMRING_BCAST_START_OLDEST, &r)))
			return die("bcast open reader", rc);
		for (unsigned k = 0; k < nrec; k++) {
			pattern(buf, len, k);
			if ((rc = shmring_bcast_publish(w, buf, len)))
				return die("bcast publish", rc);
		}
		if (lapped) {
			struct shmring_bcast_rec rec = { 0 };
			if ((rc = shmring_bcast_read(r, buf, len, &rec)) < 0)
				return die("bcast read", rc);
			if (rec.missed == 0) {
				fprintf(stderr, "segtool: the reader was not lapped\n");
				return 1;
			}
			shmring_bcast_close(r);
		} else if (!det) {
			hold();
		}
		shmring_bcast_close(w);
	} else {
		return 2;
	}
	free(buf);
	return 0;
}

static int rehash(const char *path)
{
	uint8_t hdr[SHMRING_CHECKSUM_OFF + 8];
	FILE *f = fopen(path, "r+b");
	if (!f || fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr)) {
		fprintf(stderr, "segtool: cannot read the header of %s\n", path);
		return 1;
	}
	uint64_t sum = shmring_hdr_checksum(hdr);
	if (fseek(f, SHMRING_CHECKSUM_OFF, SEEK_SET) != 0 || fwrite(&sum, 8, 1, f) != 1 ||
	    fclose(f) != 0) {
		fprintf(stderr, "segtool: cannot write the checksum of %s\n", path);
		return 1;
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 16);
}

static int churn(const char *name, unsigned long ms)
{
	char path[256];
	int rc = shmring_seg_path(name, path, sizeof(path));
	if (rc)
		return die("path", rc);
	uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15u | 1, end = now_ns() + ms * 1000000u;
	unsigned long creates = 0, eexist = 0, checks = 0, violations = 0;
	while (now_ns() < end) {
		shmring_seg_unlink(name); /* the restart: the stale ring it left goes */
		struct shmring_spsc_opts o = { .capacity = 4096 };
		struct shmring_spsc *p;
		rc = shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p);
		if (rc == -EEXIST) {
			eexist++;
			continue;
		}
		if (rc)
			return die("create", rc);
		creates++;
		struct stat mine, st;
		if (fstat(shmring_spsc_fd(p), &mine) != 0)
			return die("fstat", -errno);
		uint64_t t0 = now_ns(), until = t0 + rnd(&seed) % 400000u;
		do {
			checks++;
			int gone = stat(path, &st) != 0;
			if (gone || st.st_ino != mine.st_ino || st.st_dev != mine.st_dev) {
				if (violations++ < 5)
					fprintf(stderr, "segtool: churn: %.3f ms after its create, the live "
						"ring (inode %lu) %s\n", (double)(now_ns() - t0) / 1e6,
						(unsigned long)mine.st_ino,
						gone ? "has no name" : "is not what the name leads to");
				break;
			}
		} while (now_ns() < until);
		shmring_spsc_close(p); /* stale now */
		until = now_ns() + rnd(&seed) % 400000u;
		while (now_ns() < until)
			;
	}
	shmring_seg_unlink(name);
	printf("creates %lu eexist %lu checks %lu violations %lu\n", creates, eexist, checks,
	       violations);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "rehash") == 0)
		return rehash(argv[2]);
	if (argc == 3 && strcmp(argv[1], "turn") == 0) {
		struct shmring_seg_turn *t;
		int rc = shmring_seg_turn_take(argv[2], &t);
		if (rc)
			return die("turn", rc);
		if (!t) {
			fprintf(stderr, "segtool: turn: creators take no turns on this system\n");
			return 77;
		}
		hold();
		shmring_seg_turn_give(t);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "churn") == 0)
		return churn(argv[2], strtoul(argv[3], NULL, 0));
	if (argc != 8) {
		fprintf(stderr, "usage: segtool spsc|mpmc|pool|bcast NAME CAPACITY RECORDS LEN CONSUME "
			"hold|detach|producer|reader|lapped|open\n"
			"       segtool rehash PATH\n"
			"       segtool turn NAME\n"
			"       segtool churn NAME MILLISECONDS\n");
		return 2;
	}
	if (strcmp(argv[1], "spsc") != 0)
		return other_kind(argv[1], argv[2], strtoull(argv[3], NULL, 0),
				  (unsigned)strtoul(argv[4], NULL, 0), strtoul(argv[5], NULL, 0),
				  (unsigned)strtoul(argv[6], NULL, 0), argv[7]);
	const char *name = argv[2];
	uint64_t cap = strtoull(argv[3], NULL, 0);
	unsigned nrec = (unsigned)strtoul(argv[4], NULL, 0);
	size_t len = strtoul(argv[5], NULL, 0);
	unsigned consume = (unsigned)strtoul(argv[6], NULL, 0);
	const char *mode = argv[7];

	struct shmring_spsc_opts o = { .capacity = cap };
	struct shmring_spsc *p, *c;
	int rc = shmring_spsc_create(name, &o, SHMRING_ROLE_PRODUCER, &p);
	if (rc)
		return die("create", rc);
	for (unsigned k = 0; k < nrec; k++) {
		void *buf;
		rc = shmring_spsc_reserve(p, len, &buf);
		if (rc)
			return die("reserve", rc);
		pattern(buf, len, k);
		rc = shmring_spsc_commit(p);
		if (rc < 0)
			return die("commit", rc);
	}
	rc = shmring_spsc_open(name, SHMRING_ROLE_CONSUMER, &c);
	if (rc)
		return die("open consumer", rc);
	for (unsigned k = 0; k < consume; k++) {
		struct shmring_rec rec;
		rc = shmring_spsc_peek(c, &rec);
		if (rc)
			return die("peek", rc);
		shmring_spsc_release(c);
	}
	if (strcmp(mode, "detach") == 0) {
		shmring_spsc_detach(c);
		shmring_spsc_detach(p);
		return 0;
	}
	if (strcmp(mode, "open") == 0) {
		/* both ends leave; this process keeps the segment open, as a creator that
		 * forks its workers does */
		struct shmring_seg *s;
		rc = shmring_seg_open(name, SHMRING_KIND_SPSC, 0, &s);
		if (rc)
			return die("open segment", rc);
		shmring_spsc_detach(c);
		shmring_spsc_detach(p);
		hold();
		shmring_seg_close(s);
		return 0;
	}
	if (strcmp(mode, "producer") == 0)
		shmring_spsc_detach(c);
	hold();
	if (strcmp(mode, "producer") != 0)
		shmring_spsc_close(c);
	shmring_spsc_close(p);
	return 0;
}
