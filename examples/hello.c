/* SPDX-License-Identifier: MIT */
/* The README's example: a producer process writes records in place, a consumer process
 * reads them in place, over an anonymous (memfd) ring shared through fork. */
#include <shmring/shmring.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	struct shmring_spsc_opts o = { .capacity = 1 << 20 };
	struct shmring_spsc *tx, *rx;
	int rc = shmring_spsc_create(NULL, &o, SHMRING_ROLE_PRODUCER, &tx); /* NULL: memfd */
	if (rc) {
		fprintf(stderr, "create: %s\n", shmring_strerror(rc));
		return 1;
	}
	/* handles do not survive fork() (the child closes their descriptors, so that it never
	 * keeps the parent's liveness lock alive): hand the child a duplicate to open */
	int fd = dup(shmring_spsc_fd(tx));
	if (fork() == 0) { /* consumer process */
		rc = shmring_spsc_open_fd(fd, SHMRING_ROLE_CONSUMER, &rx);
		close(fd); /* the parent's open file description: do not hold it */
		if (rc) {
			fprintf(stderr, "open: %s\n", shmring_strerror(rc));
			_exit(1);
		}
		struct shmring_rec rec;
		while ((rc = shmring_spsc_peek_wait(rx, &rec, SHMRING_FOREVER)) == 0) {
			printf("%.*s\n", (int)rec.len, (const char *)rec.data); /* read in place */
			shmring_spsc_release(rx);
		}
		shmring_spsc_close(rx); /* -EPIPE: the producer closed, everything was read */
		/* _exit, not return: tx is the parent's handle, copied by fork; closing it here
		 * would end the parent's stream, and the process's end frees it */
		fflush(stdout);
		_exit(rc == -EPIPE ? 0 : 1);
	}
	close(fd);
	for (int i = 0; i < 3; i++) { /* producer: write in place, then publish */
		void *buf;
		if (shmring_spsc_reserve_wait(tx, 64, &buf, 1000) != 0)
			break;
		shmring_spsc_shrink(tx, (size_t)snprintf(buf, 64, "frame %d", i));
		shmring_spsc_commit(tx); /* wakes the consumer only if it sleeps */
	}
	shmring_spsc_close(tx); /* the consumer sees end of stream after the last record */
	int st;
	wait(&st);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
