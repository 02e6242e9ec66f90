/* Patching FOPEN_PARALLEL_DIRECT_WRITES into OPEN/CREATE replies and
 * FUSE_ASYNC_DIO_ALL / FUSE_OVER_IO_URING into the INIT reply, and handing
 * replies to ring requests to the io_uring transport (see devio.h). */
#define _GNU_SOURCE
#include "devio.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "server.h"
#include "transport_uring.h"

/* Per thread: "the next reply I send is an OPEN/CREATE reply to flag".
 * The rest of the state is struct devio in the server. */
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

/* The ring's payload buffer size, as the kernel computes it from INIT. */
static size_t ring_payload_size(const struct fuse_init_out *init_out)
{
	size_t max_pages = (init_out->flags & FUSE_MAX_PAGES) ?
			   init_out->max_pages : 32;
	size_t sz = 8192;	/* FUSE_MIN_READ_BUFFER */

	if (init_out->max_write > sz)
		sz = init_out->max_write;
	if (max_pages * 4096 > sz)
		sz = max_pages * 4096;
	return sz;
}

/* The first reply of a session answers INIT.  Returns the INIT reply's
 * fuse_init_out, or NULL if this is not a successful INIT reply. */
static struct fuse_init_out *patch_init_reply(struct devio *d,
					       struct iovec *iov, int count)
{
	struct fuse_out_header *out;
	struct fuse_init_out *init_out;

	if (count != 2 || iov[0].iov_len != sizeof(*out) ||
	    iov[1].iov_len != sizeof(*init_out))
		return NULL;
	out = iov[0].iov_base;
	if (out->error != 0)
		return NULL;
	init_out = iov[1].iov_base;
	if (d->want_async_dio_all && (init_out->flags & FUSE_ASYNC_DIO) &&
	    (init_out->flags & FUSE_INIT_EXT))
		init_out->flags2 |= (uint32_t)(FUSE_ASYNC_DIO_ALL >> 32);
	if (d->uring) {
		if (!uring_init_offered(d->uring, d->kernel_flags) ||
		    !(init_out->flags & FUSE_INIT_EXT)) {
			/* refuse the mount: every request fails at once */
			out->error = -EPROTONOSUPPORT;
			d->failed = true;
			return NULL;
		}
		init_out->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
	}
	return init_out;
}

static ssize_t devio_writev(int fd, struct iovec *iov, int count,
			    void *userdata)
{
	struct devio *d = &((struct server *)userdata)->devio;
	struct fuse_init_out *init_out = NULL;
	ssize_t res;

	if (!d->init_seen) {
		d->init_seen = true;
		init_out = patch_init_reply(d, iov, count);
		if (d->failed) {
			res = writev(fd, iov, 1);	/* the error alone */
			fuse_session_exit(((struct server *)userdata)->se);
			kill(getpid(), SIGTERM);
			return res;
		}
	}
	if (mark_open_reply) {
		mark_open_reply = false;
		patch_open_reply(iov, count);
	}
	if (!init_out && uring_reply(d->uring, iov, count, &res))
		return res;
	res = writev(fd, iov, count);
	if (init_out && d->uring && res >= 0)
		uring_init_done(d->uring, ring_payload_size(init_out));
	return res;
}

/* Notes the flags the kernel offers in its INIT request (the first one). */
static ssize_t devio_read(int fd, void *buf, size_t len, void *userdata)
{
	struct devio *d = &((struct server *)userdata)->devio;
	ssize_t res = read(fd, buf, len);
	const struct fuse_in_header *ih = buf;
	const struct fuse_init_in *init_in = (const void *)(ih + 1);

	/* only ever once, before any other request: no lock needed */
	if (res >= (ssize_t)(sizeof(*ih) + sizeof(*init_in)) &&
	    ih->opcode == FUSE_INIT) {
		d->kernel_flags = init_in->flags;
		if (init_in->flags & FUSE_INIT_EXT)
			d->kernel_flags |= (uint64_t)init_in->flags2 << 32;
	}
	return res;
}

int devio_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.writev = devio_writev,
		.read = devio_read,
	};
	int ret;

	ret = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (ret < 0)
		fprintf(stderr, "passthrough: cannot hook the FUSE device (for FOPEN_PARALLEL_DIRECT_WRITES and FUSE_ASYNC_DIO_ALL): %s\n",
			strerror(-ret));
	return ret;
}
