/* SPDX-License-Identifier: MIT */
#include "toolutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *tool_name = "shmring";

void tool_msg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* one write, so that the line is not interleaved with other processes' output */
	char out[1100];
	int n = snprintf(out, sizeof(out), "%s: %s\n", tool_name, line);
	if (n > (int)sizeof(out) - 1)
		n = (int)sizeof(out) - 1;
	(void)tool_write_all(STDERR_FILENO, out, (size_t)n);
}

int tool_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t tool_read_some(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

int tool_parse_size(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -EINVAL;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int tool_parse_seconds(const char *s, double *out)
{
	char *end;
	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= 0) || !isfinite(v) || v > 1e9)
		return -EINVAL;
	*out = v;
	return 0;
}

const char *tool_human(uint64_t b, char *buf, size_t len)
{
	static const char *unit[] = { "KiB", "MiB", "GiB", "TiB" };
	if (b < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)b);
		return buf;
	}
	double v = (double)b / 1024;
	unsigned u = 0;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

double tool_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tool_utf8_len(const unsigned char *p)
{
	unsigned c = p[0], n, min;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000;
	else
		return 0;
	unsigned cp = c & (0x7fu >> n);
	for (unsigned i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return (int)n;
}

/* Not a control in disguise: C1 controls (U+0080-U+009F, CSI among them), the line and
 * paragraph separators and the bidirectional controls (Bidi_Control: ALM, LRM, RLM, the
 * embeddings, overrides and isolates), which a terminal or a viewer acts on. p is a
 * well-formed sequence of 2 or 3 bytes or more. */
int tool_utf8_shows(const unsigned char *p)
{
	if (p[0] == 0xc2 && p[1] <= 0x9f)
		return 0; /* U+0080-U+009F */
	if (p[0] == 0xd8 && p[1] == 0x9c)
		return 0; /* U+061C ARABIC LETTER MARK */
	if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0x8e || p[2] == 0x8f || /* LRM, RLM */
					     (p[2] >= 0xa8 && p[2] <= 0xae))) /* 2028-202E */
		return 0;
	if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9) /* 2066-2069 */
		return 0;
	return 1;
}

const char *tool_printable(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	if (len == 0)
		return "";
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < len; p++) {
		int n = *p < 0x80 ? (*p >= 0x20 && *p != 0x7f) : tool_utf8_len(p);
		if (n > 1 && !tool_utf8_shows(p)) {
			buf[o++] = '?'; /* one character hidden: one '?' */
			p += n - 1;
			continue;
		}
		if (n == 0 || o + (size_t)n >= len) {
			buf[o++] = '?';
			continue;
		}
		memcpy(buf + o, p, (size_t)n);
		o += (size_t)n;
		p += n - 1;
	}
	buf[o] = '\0';
	return buf;
}
