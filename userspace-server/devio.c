/* Patching FOPEN_PARALLEL_DIRECT_WRITES into OPEN/CREATE replies and
 * FUSE_ASYNC_DIO_ALL into the INIT reply (see devio.h). */
#define _GNU_SOURCE
#include "devio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fuse.h>

/* File-scope state: per worker thread, "the next reply I send is an
 * OPEN/CREATE reply to flag"; per process, what to do with the INIT reply
 * (set once before the session loop starts, so no lock is needed). */
static __thread bool mark_open_reply;
static struct {
	bool want_async_dio_all;
	bool init_seen;
} init_patch;

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

/* The first reply of a session answers INIT. */
static void patch_init_reply(struct iovec *iov, int count)
{
	const struct fuse_out_header *out;
	struct fuse_init_out *init_out;

	if (count != 2 || iov[0].iov_len != sizeof(*out) ||
	    iov[1].iov_len != sizeof(*init_out))
		return;
	out = iov[0].iov_base;
	if (out->error != 0)
		return;
	init_out = iov[1].iov_base;
	if ((init_out->flags & FUSE_ASYNC_DIO) &&
	    (init_out->flags & FUSE_INIT_EXT))
		init_out->flags2 |= (uint32_t)(FUSE_ASYNC_DIO_ALL >> 32);
}

static ssize_t devio_writev(int fd, struct iovec *iov, int count,
			    void *userdata)
{
	(void)userdata;
	if (!init_patch.init_seen) {
		init_patch.init_seen = true;
		if (init_patch.want_async_dio_all)
			patch_init_reply(iov, count);
	}
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

int devio_install(struct fuse_session *se, bool async_dio_all)
{
	static const struct fuse_custom_io io = {
		.writev = devio_writev,
		.read = devio_read,
	};
	int ret;

	init_patch.want_async_dio_all = async_dio_all;
	ret = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (ret < 0)
		fprintf(stderr, "passthrough: cannot hook the FUSE device (for FOPEN_PARALLEL_DIRECT_WRITES and FUSE_ASYNC_DIO_ALL): %s\n",
			strerror(-ret));
	return ret;
}
