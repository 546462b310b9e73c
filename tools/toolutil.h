/* SPDX-License-Identifier: MIT */
/* Helpers shared by shmdump and shmcat: whole reads and writes, sizes, messages. */
#ifndef SHMRING_TOOLUTIL_H
#define SHMRING_TOOLUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The program name used in messages ("shmdump", "shmcat"). */
extern const char *tool_name;

/* One line on stderr: "NAME: message". */
void tool_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write all of buf, retrying on EINTR and short writes. 0 or a negative errno. */
int tool_write_all(int fd, const void *buf, size_t len);
/* Read up to len bytes, retrying on EINTR; returns the count (0 at EOF) or -errno. */
ssize_t tool_read_some(int fd, void *buf, size_t len);

/* "4096", "64K", "16M", "1G" (powers of 1024). 0 on success, -EINVAL if malformed. */
int tool_parse_size(const char *s, uint64_t *out);
/* A non-negative number of seconds ("2", "0.5"). */
int tool_parse_seconds(const char *s, double *out);

/* Human size: "16.0 MiB", "512 B". */
const char *tool_human(uint64_t bytes, char *buf, size_t len);

/* Length of the well-formed UTF-8 sequence at p (2 to 4 bytes, RFC 3629: no overlong
 * form, no surrogate, nothing above U+10FFFF), or 0 (ASCII included). */
int tool_utf8_len(const unsigned char *p);
/* 0 for a well-formed multi-byte sequence a terminal would act on (C1 controls, line
 * and paragraph separators, bidirectional controls), else 1. */
int tool_utf8_shows(const unsigned char *p);
/* s for a terminal: control bytes (C0 and C1), bidirectional and separator controls
 * (one '?' each), and bytes that are not well-formed UTF-8 (one '?' a byte) become '?' (a name in /dev/shm is any bytes,
 * chosen by whoever made the file). */
const char *tool_printable(const char *s, char *buf, size_t len);

/* Monotonic clock in seconds. */
double tool_now(void);

#endif
