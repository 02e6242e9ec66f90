/* Patching FOPEN_PARALLEL_DIRECT_WRITES into OPEN/CREATE replies (see
 * devio.h). */
#define _GNU_SOURCE
#include "devio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fuse.h>

/* The only file-scope state: per worker thread, "the next reply I send
 * is an OPEN/CREATE reply to flag". */
static __thread bool mark_open_reply;

void devio_mark_open_reply(void)
{
	mark_open_reply = true;
}

static void patch_open_reply(struct iovec *iov, int count)
{
	const struct fuse_out_header *out;
	struct fuse_open_out *open_out;
	struct iovec *arg;

	if (count != 2 || iov[0].iov_len != sizeof(*out))
		return;
	out = iov[0].iov_base;
	if (out->error != 0)
		return;
	arg = &iov[1];
	if (arg->iov_len == sizeof(struct fuse_open_out))	/* OPEN */
		open_out = arg->iov_base;
	else if (arg->iov_len == sizeof(struct fuse_entry_out) +
				 sizeof(struct fuse_open_out))	/* CREATE */
		open_out = (struct fuse_open_out *)
			((char *)arg->iov_base + sizeof(struct fuse_entry_out));
	else
		return;
	open_out->open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
}

static ssize_t devio_writev(int fd, struct iovec *iov, int count,
			    void *userdata)
{
	(void)userdata;
	if (mark_open_reply) {
		mark_open_reply = false;
		patch_open_reply(iov, count);
	}
	return writev(fd, iov, count);
}

static ssize_t devio_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

int devio_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.writev = devio_writev,
		.read = devio_read,
	};
	int ret = fuse_session_custom_io(se, &io, fuse_session_fd(se));

	if (ret < 0)
		fprintf(stderr, "passthrough: --parallel-direct-writes: cannot hook the FUSE device: %s\n",
			strerror(-ret));
	return ret;
}
