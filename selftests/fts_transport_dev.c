// SPDX-License-Identifier: GPL-2.0
/*
 * fts_transport_dev - fuse_test_server's /dev/fuse transport: cfg.nthreads
 * worker threads poll /dev/fuse (opened O_NONBLOCK) together with the stop
 * eventfd, read one request each and hand it to fts_handle(); answers are
 * written with writev(2), from whichever thread answers.  The io_uring
 * transport keeps one such reader for what never goes over the ring (INIT,
 * FORGET, INTERRUPT).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "fts_transport.h"

static void *reader_main(void *arg)
{
	struct fts *s = arg;
	struct fts_src src = { .ent = NULL, .qid = -1 };
	unsigned char *buf = malloc(s->bufsize);

	if (!buf) {
		fts_log("/dev/fuse reader buffer (%zu bytes): %s", s->bufsize,
			strerror(errno));
		return NULL;
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = s->fd, .events = POLLIN },
			{ .fd = s->stop_efd, .events = POLLIN },
		};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fts_log("poll /dev/fuse: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(s->fd, buf, s->bufsize);
		if (n < 0) {
			/* EAGAIN: another worker took it; ENOENT: interrupted */
			if (errno == EAGAIN || errno == EINTR || errno == ENOENT)
				continue;
			if (errno != ENODEV)	/* ENODEV: unmounted/aborted */
				fts_log("read /dev/fuse: %s", strerror(errno));
			break;
		}
		fts_handle(s, src, buf, n);
	}
	free(buf);
	return NULL;
}

int fts_dev_readers_start(struct fts *s, unsigned int n)
{
	int ret;

	s->readers = calloc(n, sizeof(*s->readers));
	if (!s->readers) {
		fts_log("server: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (s->nreaders = 0; s->nreaders < n; s->nreaders++) {
		ret = pthread_create(&s->readers[s->nreaders], NULL,
				     reader_main, s);
		if (ret) {
			fts_log("server: /dev/fuse reader thread %u: %s",
				s->nreaders, strerror(ret));
			return -ret;
		}
	}
	return 0;
}

void fts_dev_readers_join(struct fts *s)
{
	unsigned int i;

	for (i = 0; i < s->nreaders; i++)
		pthread_join(s->readers[i], NULL);
	s->nreaders = 0;
	free(s->readers);
	s->readers = NULL;
}

ssize_t fts_dev_reply(struct fts *s, const struct iovec *iov, int iovcnt)
{
	ssize_t ret = writev(s->fd, iov, iovcnt);

	return ret < 0 ? -errno : ret;
}

static int dev_start(struct fts *s)
{
	return fts_dev_readers_start(s, s->cfg.nthreads);
}

const struct fts_transport_ops fts_transport_dev = {
	.name = "dev",
	.start = dev_start,
	.join = fts_dev_readers_join,
};
