/* SPDX-License-Identifier: MIT */
/*
 * The classic mechanisms, as a user gets them with default settings: pipe, FIFO, Unix
 * stream and datagram sockets, TCP over 127.0.0.1 (TCP_NODELAY), POSIX and SysV
 * message queues. Each direction of a round trip has its own channel where the
 * mechanism is one-way. Messages larger than what the mechanism carries at once are
 * sent in chunks: datagrams of 64 KiB, message queues at the system's maximum message
 * size (/proc/sys/fs/mqueue/msgsize_max, /proc/sys/kernel/msgmax), as an application
 * would have to.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum ckind { K_PIPE, K_FIFO, K_USTREAM, K_UDGRAM, K_TCP, K_PMQ, K_SYSV };

struct classic {
	enum ckind kind;
	size_t chunk;          /* largest piece one call carries */
	int p_ab[2], p_ba[2];  /* pipes: a->b and b->a */
	int sv[2];             /* socketpair */
	int lfd;               /* TCP listener */
	struct sockaddr_in addr;
	char path_ab[96], path_ba[96]; /* FIFO paths, message queue names */
	int q_ab, q_ba;        /* SysV queues */
	/* this side, after attach */
	int tx, rx;
	mqd_t mtx, mrx;
	uint8_t *mbuf;         /* posix-mq: receive bounce for a short last chunk */
};

static unsigned g_counter;

static long read_proc_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "r");
	long v = dflt;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

static struct classic *cl(struct bench_ctx *c)
{
	return c->priv;
}

static int cl_setup(struct bench_ctx *c, enum ckind kind)
{
	struct classic *k = calloc(1, sizeof *k);
	if (!k)
		return bench_fail(c, -ENOMEM, "no memory");
	c->priv = k;
	k->kind = kind;
	k->p_ab[0] = k->p_ab[1] = k->p_ba[0] = k->p_ba[1] = -1;
	k->sv[0] = k->sv[1] = k->lfd = k->tx = k->rx = -1;
	k->q_ab = k->q_ba = -1;
	k->mtx = k->mrx = (mqd_t)-1;
	k->chunk = c->spec->size;
	unsigned n = ++g_counter;
	switch (kind) {
	case K_PIPE:
		if (pipe2(k->p_ab, O_CLOEXEC) || pipe2(k->p_ba, O_CLOEXEC))
			return bench_fail(c, -errno, "pipe: %s", strerror(errno));
		break;
	case K_FIFO:
		snprintf(k->path_ab, sizeof k->path_ab, "/tmp/shmring-bench-%d-%u.ab", getpid(), n);
		snprintf(k->path_ba, sizeof k->path_ba, "/tmp/shmring-bench-%d-%u.ba", getpid(), n);
		if (mkfifo(k->path_ab, 0600) || mkfifo(k->path_ba, 0600))
			return bench_fail(c, -errno, "mkfifo: %s", strerror(errno));
		break;
	case K_USTREAM:
	case K_UDGRAM:
		if (socketpair(AF_UNIX, (kind == K_USTREAM ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC,
			       0, k->sv))
			return bench_fail(c, -errno, "socketpair: %s", strerror(errno));
		if (kind == K_UDGRAM && k->chunk > 65536)
			k->chunk = 65536;
		break;
	case K_TCP: {
		k->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (k->lfd < 0)
			return bench_fail(c, -errno, "socket: %s", strerror(errno));
		k->addr.sin_family = AF_INET;
		k->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t al = sizeof k->addr;
		if (bind(k->lfd, (struct sockaddr *)&k->addr, sizeof k->addr) || listen(k->lfd, 1) ||
		    getsockname(k->lfd, (struct sockaddr *)&k->addr, &al))
			return bench_fail(c, -errno, "tcp listen: %s", strerror(errno));
		break;
	}
	case K_PMQ: {
		long maxsz = read_proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
		long maxmsg = read_proc_long("/proc/sys/fs/mqueue/msg_max", 10);
		if (k->chunk > (size_t)maxsz)
			k->chunk = (size_t)maxsz;
		snprintf(k->path_ab, sizeof k->path_ab, "/shmring-bench-%d-%u-ab", getpid(), n);
		snprintf(k->path_ba, sizeof k->path_ba, "/shmring-bench-%d-%u-ba", getpid(), n);
		struct mq_attr at = {.mq_maxmsg = maxmsg, .mq_msgsize = (long)k->chunk};
		mqd_t a = mq_open(k->path_ab, O_CREAT | O_EXCL | O_RDWR, 0600, &at);
		if (a == (mqd_t)-1)
			return bench_fail(c, -errno, "mq_open: %s", strerror(errno));
		mq_close(a);
		a = mq_open(k->path_ba, O_CREAT | O_EXCL | O_RDWR, 0600, &at);
		if (a == (mqd_t)-1)
			return bench_fail(c, -errno, "mq_open: %s", strerror(errno));
		mq_close(a);
		break;
	}
	case K_SYSV: {
		long maxsz = read_proc_long("/proc/sys/kernel/msgmax", 8192);
		if (k->chunk > (size_t)maxsz)
			k->chunk = (size_t)maxsz;
		k->q_ab = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		k->q_ba = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		if (k->q_ab < 0 || k->q_ba < 0)
			return bench_fail(c, -errno, "msgget: %s", strerror(errno));
		break;
	}
	}
	return 0;
}

static int cl_attach(struct bench_ctx *c)
{
	struct classic *k = cl(c);
	int a = c->side == 0;
	switch (k->kind) {
	case K_PIPE:
		k->tx = a ? k->p_ab[1] : k->p_ba[1];
		k->rx = a ? k->p_ba[0] : k->p_ab[0];
		close(a ? k->p_ab[0] : k->p_ba[0]);
		close(a ? k->p_ba[1] : k->p_ab[1]);
		break;
	case K_FIFO:
		/* a opens ab for writing first, b opens ab for reading first: no deadlock */
		if (a) {
			k->tx = open(k->path_ab, O_WRONLY | O_CLOEXEC);
			k->rx = k->tx < 0 ? -1 : open(k->path_ba, O_RDONLY | O_CLOEXEC);
		} else {
			k->rx = open(k->path_ab, O_RDONLY | O_CLOEXEC);
			k->tx = k->rx < 0 ? -1 : open(k->path_ba, O_WRONLY | O_CLOEXEC);
		}
		if (k->tx < 0 || k->rx < 0)
			return bench_fail(c, -errno, "fifo open: %s", strerror(errno));
		break;
	case K_USTREAM:
	case K_UDGRAM:
		k->tx = k->rx = k->sv[a ? 0 : 1];
		close(k->sv[a ? 1 : 0]);
		break;
	case K_TCP: {
		int fd;
		if (a) {
			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd < 0 || connect(fd, (struct sockaddr *)&k->addr, sizeof k->addr))
				return bench_fail(c, -errno, "tcp connect: %s", strerror(errno));
		} else {
			fd = accept4(k->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				return bench_fail(c, -errno, "tcp accept: %s", strerror(errno));
		}
		close(k->lfd);
		k->lfd = -1;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		k->tx = k->rx = fd;
		break;
	}
	case K_PMQ:
		k->mtx = mq_open(a ? k->path_ab : k->path_ba, O_WRONLY | O_CLOEXEC);
		k->mrx = mq_open(a ? k->path_ba : k->path_ab, O_RDONLY | O_CLOEXEC);
		if (k->mtx == (mqd_t)-1 || k->mrx == (mqd_t)-1)
			return bench_fail(c, -errno, "mq_open: %s", strerror(errno));
		k->mbuf = malloc(k->chunk);
		if (!k->mbuf)
			return bench_fail(c, -ENOMEM, "no memory");
		break;
	case K_SYSV:
		k->tx = a ? k->q_ab : k->q_ba;
		k->rx = a ? k->q_ba : k->q_ab;
		break;
	}
	return 0;
}

static int again(void)
{
	return errno == EINTR && !bench_abort;
}

/* Send len bytes of p as one message. */
static int cl_send(struct bench_ctx *c, struct classic *k, uint8_t *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		size_t n = len - off;
		ssize_t w;
		switch (k->kind) {
		case K_PIPE:
		case K_FIFO:
			w = write(k->tx, p + off, n);
			break;
		case K_USTREAM:
		case K_TCP:
			w = send(k->tx, p + off, n, MSG_NOSIGNAL);
			break;
		case K_UDGRAM:
			n = n > k->chunk ? k->chunk : n;
			w = send(k->tx, p + off, n, MSG_NOSIGNAL);
			break;
		case K_PMQ:
			n = n > k->chunk ? k->chunk : n;
			w = mq_send(k->mtx, (const char *)p + off, n, 0) ? -1 : (ssize_t)n;
			break;
		case K_SYSV: {
			/* the type word goes in the 8 bytes before the chunk (headroom or the
			 * previous chunk, already sent), saved and restored around the call */
			n = n > k->chunk ? k->chunk : n;
			uint8_t *m = p + off - sizeof(long), save[sizeof(long)];
			long type = 1;
			memcpy(save, m, sizeof save);
			memcpy(m, &type, sizeof type);
			w = msgsnd(k->tx, m, n, 0) ? -1 : (ssize_t)n;
			int e = errno;
			memcpy(m, save, sizeof save);
			errno = e;
			break;
		}
		default:
			w = -1;
			errno = EINVAL;
		}
		if (w < 0) {
			if (again())
				continue;
			return bench_fail(c, -errno, "send: %s", strerror(errno));
		}
		off += (size_t)w;
	}
	return 0;
}

/* Receive one message of len bytes into p. */
static int cl_recv(struct bench_ctx *c, struct classic *k, uint8_t *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		size_t n = len - off;
		ssize_t r;
		switch (k->kind) {
		case K_PIPE:
		case K_FIFO:
			r = read(k->rx, p + off, n);
			break;
		case K_USTREAM:
		case K_TCP:
		case K_UDGRAM:
			r = recv(k->rx, p + off, n, 0);
			break;
		case K_PMQ:
			if (n >= k->chunk) {
				r = mq_receive(k->mrx, (char *)p + off, k->chunk, NULL);
			} else {
				r = mq_receive(k->mrx, (char *)k->mbuf, k->chunk, NULL);
				if (r > 0)
					memcpy(p + off, k->mbuf, (size_t)r > n ? n : (size_t)r);
			}
			break;
		case K_SYSV: {
			uint8_t *m = p + off - sizeof(long), save[sizeof(long)];
			memcpy(save, m, sizeof save);
			r = msgrcv(k->rx, m, n > k->chunk ? k->chunk : n, 0, 0);
			int e = errno;
			memcpy(m, save, sizeof save);
			errno = e;
			break;
		}
		default:
			r = -1;
			errno = EINVAL;
		}
		if (r < 0) {
			if (again())
				continue;
			return bench_fail(c, -errno, "recv: %s", strerror(errno));
		}
		if (r == 0)
			return bench_fail(c, -EPIPE, "recv: peer closed");
		off += (size_t)r;
	}
	if (off != len)
		return bench_fail(c, -EPROTO, "recv: %zu bytes, want %zu", off, len);
	return 0;
}

static int cl_rtt(struct bench_ctx *c)
{
	struct classic *k = cl(c);
	size_t size = c->spec->size;
	int rc;
	if (c->side == 1) {
		for (;;) {
			if ((rc = cl_recv(c, k, c->rbuf, size)) < 0)
				return rc;
			if (bench_unstamp(c->rbuf, size) == BENCH_STOP)
				return 0;
			if ((rc = cl_send(c, k, c->rbuf, size)) < 0) /* echo */
				return rc;
		}
	}
	struct bench_loop L;
	bench_rtt_begin(c, &L);
	for (;;) {
		bench_stamp(c->buf, size, L.seq);
		if ((rc = cl_send(c, k, c->buf, size)) < 0 || (rc = cl_recv(c, k, c->rbuf, size)) < 0)
			return rc;
		uint64_t got = bench_unstamp(c->rbuf, size);
		if (got != L.seq)
			return bench_fail(c, -EPROTO, "reply %llu, want %llu", (unsigned long long)got,
					  (unsigned long long)L.seq);
		if (bench_rtt_next(c, &L))
			break;
	}
	bench_stamp(c->buf, size, BENCH_STOP);
	return cl_send(c, k, c->buf, size);
}

static int cl_stream(struct bench_ctx *c)
{
	struct classic *k = cl(c);
	size_t size = c->spec->size;
	int rc;
	if (c->side == 1) {
		struct bench_rx rx = {0};
		for (;;) {
			if ((rc = cl_recv(c, k, c->rbuf, size)) < 0)
				return rc;
			if (bench_rx(c, &rx, bench_unstamp(c->rbuf, size)))
				return 0;
		}
	}
	struct bench_loop L;
	bench_stream_begin(c, &L);
	do {
		bench_stamp(c->buf, size, L.seq);
		if ((rc = cl_send(c, k, c->buf, size)) < 0)
			return rc;
	} while (!bench_stream_sent(c, &L, 1));
	bench_stream_end(c, &L);
	bench_stamp(c->buf, size, BENCH_STOP);
	return cl_send(c, k, c->buf, size);
}

static void cl_detach(struct bench_ctx *c)
{
	struct classic *k = cl(c);
	switch (k->kind) {
	case K_PIPE:
	case K_FIFO:
		close(k->tx);
		close(k->rx);
		break;
	case K_USTREAM:
	case K_UDGRAM:
	case K_TCP:
		close(k->tx);
		break;
	case K_PMQ:
		mq_close(k->mtx);
		mq_close(k->mrx);
		free(k->mbuf);
		break;
	case K_SYSV:
		break;
	}
}

static void cl_teardown(struct bench_ctx *c)
{
	struct classic *k = cl(c);
	if (!k)
		return;
	switch (k->kind) {
	case K_FIFO:
		if (k->path_ab[0])
			unlink(k->path_ab);
		if (k->path_ba[0])
			unlink(k->path_ba);
		break;
	case K_PMQ:
		if (k->path_ab[0])
			mq_unlink(k->path_ab);
		if (k->path_ba[0])
			mq_unlink(k->path_ba);
		break;
	case K_SYSV:
		if (k->q_ab >= 0)
			msgctl(k->q_ab, IPC_RMID, NULL);
		if (k->q_ba >= 0)
			msgctl(k->q_ba, IPC_RMID, NULL);
		break;
	case K_TCP:
		if (k->lfd >= 0) /* attach failed before closing it */
			close(k->lfd);
		break;
	default:
		break;
	}
	free(k);
	c->priv = NULL;
}

#define CLASSIC(sym, nm, kind, extra)                                                     \
	static int setup_##sym(struct bench_ctx *c) { return cl_setup(c, kind); }          \
	const struct bench_transport bench_tr_##sym = {                                    \
		.name = nm,                                                                \
		.caps = BENCH_CAP_RTT | BENCH_CAP_STREAM | BENCH_CAP_COPY | BENCH_CAP_SIZES | \
			BENCH_CAP_CLASSIC | (extra),                                       \
		.setup = setup_##sym,                                                      \
		.attach = cl_attach,                                                       \
		.rtt = cl_rtt,                                                             \
		.stream = cl_stream,                                                       \
		.detach = cl_detach,                                                       \
		.teardown = cl_teardown,                                                   \
	};

CLASSIC(pipe, "pipe", K_PIPE, BENCH_CAP_SAME)
CLASSIC(fifo, "fifo", K_FIFO, 0)
CLASSIC(uds_stream, "uds-stream", K_USTREAM, BENCH_CAP_SAME)
CLASSIC(uds_dgram, "uds-dgram", K_UDGRAM, 0)
CLASSIC(tcp, "tcp", K_TCP, BENCH_CAP_SAME)
CLASSIC(posix_mq, "posix-mq", K_PMQ, 0)
CLASSIC(sysv_mq, "sysv-mq", K_SYSV, 0)
