/* SPDX-License-Identifier: MIT */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char detail[256];

int shmring__fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return err;
}

int shmring__fail_why(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (why && why_len)
		snprintf(why, why_len, "%s", detail);
	return err;
}

void shmring__clear_detail(void)
{
	detail[0] = '\0';
}

const char *shmring_last_error_detail(void)
{
	return detail;
}

const char *shmring_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -EAGAIN: return "would block: the ring is empty or full (or the segment is still being created)";
	case -EPIPE: return "the peer closed the channel or died";
	case -ETIMEDOUT: return "timed out";
	case -EPROTO: return "not a valid shmring segment: bad magic, unknown layout version, wrong kind or impossible geometry or index (corrupt shared memory)";
	case -EBADMSG: return "checksum mismatch: a corrupt segment header, or a frame whose checksum does not verify";
	case -EMSGSIZE: return "record larger than the channel allows (or than the buffer given)";
	case -EOVERFLOW: return "a number too large: a record longer than the int result of a copying call can report (peek it), or a broadcast channel that has used up its record numbers";
	case -ENOSPC: return "not enough space for the segment in /dev/shm (or the filesystem), or in memory";
	case -EFBIG: return "the segment is larger than this process's file size limit (RLIMIT_FSIZE)";
	case -EEXIST: return "a segment of that name already exists";
	case -ENOENT: return "no such segment";
	case -EACCES: return "permission denied";
	case -EINVAL: return "invalid argument";
	case -EBUSY: return "that role is already held by a live process";
	case -EUSERS: return "the segment's participant table is full";
	case -EBADF: return "this handle's role does not allow that call";
	case -ENOMEM: return "out of memory";
	case -ENOTSUP: return "not supported by this build (e.g. the segment uses the other wait backend)";
	case -ENAMETOOLONG: return "segment name too long";
	case -EOWNERDEAD: return "the holder died; its resources were reclaimed";
	case -ENOBUFS: return "this subscriber already holds as many frames as the pool allows (release one first)";
	case -ENODATA: return "the frame carries no checksum to verify";
	case -ESTALE: return "the record was overwritten while it was read: discard what was read";
	default:
		if (err < 0)
			return strerror(-err);
		return "not an error code";
	}
}
