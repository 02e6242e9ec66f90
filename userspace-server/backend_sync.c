/* Synchronous backend: pread/pwrite on the worker thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "backend.h"
#include "io.h"

static int sync_start(struct server *srv, void **state)
{
	(void)srv;
	*state = NULL;
	return 0;
}

static void sync_submit(void *state, struct io_req *op)
{
	(void)state;
	while (op->done < op->size) {
		char *p = op->buf + op->done;
		size_t len = op->size - op->done;
		off_t off = op->off + (off_t)op->done;
		ssize_t n = op->kind == IO_READ ? pread(op->file->fd, p, len, off)
						: pwrite(op->file->fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			op->err = errno;
			break;
		}
		if (n == 0) {
			if (op->kind == IO_WRITE)
				op->err = EIO;
			break;	/* READ: end of file */
		}
		op->done += (size_t)n;
	}
	io_complete(op);
}

static void sync_stop(void *state)
{
	(void)state;
}

const struct io_backend io_backend_sync = {
	.name = "sync",
	.async = false,
	.start = sync_start,
	.submit = sync_submit,
	.stop = sync_stop,
};
