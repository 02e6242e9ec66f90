/* READ/WRITE handlers and the reply path shared by all backends. */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "delay.h"
#include "server.h"

/*
 * A READ's buffer is malloc()ed by its handler and freed by the thread that
 * replies.  With glibc's dynamic thresholds, once a batch of concurrent
 * READs (16 x 128 KiB for a 2 MiB direct read) was freed the heap top went
 * back to the kernel, and the next batch faulted every page in again:
 * 10,000-12,000 minor faults a 64 MiB dd read at 10 ms latency, a fifth of
 * its time, on the 7.3 test guest.  The stock module's serial requests
 * reuse one buffer and never paid it, so it skewed stock/patched results.
 * Fixed thresholds above the largest request (1 MiB) keep the buffers in
 * the heap; what a run retains is at most its peak of buffers in flight.
 */
#define IO_MMAP_THRESHOLD	(4 << 20)
#define IO_TRIM_THRESHOLD	(256 << 20)

int io_buffers_keep(void)
{
	/* mallopt() returns 1 on success */
	if (mallopt(M_MMAP_THRESHOLD, IO_MMAP_THRESHOLD) != 1 ||
	    mallopt(M_TRIM_THRESHOLD, IO_TRIM_THRESHOLD) != 1)
		return -1;
	return 0;
}

struct pt_file *file_new(struct handle_list *list, int fd)
{
	struct pt_file *f = malloc(sizeof(*f));

	if (f == NULL)
		return NULL;
	f->list = list;
	f->fd = fd;
	atomic_init(&f->refs, 1);
	handle_add(list, &f->link);
	return f;
}

struct pt_file *file_get(struct pt_file *f)
{
	atomic_fetch_add(&f->refs, 1);
	return f;
}

void file_put(struct pt_file *f)
{
	if (atomic_fetch_sub(&f->refs, 1) == 1) {
		handle_del(f->list, &f->link);
		close(f->fd);
		free(f);
	}
}

void file_close_all(struct handle_list *list)
{
	struct handle *h;

	while ((h = handle_pop(list)) != NULL) {
		struct pt_file *f = container_of(h, struct pt_file, link);

		close(f->fd);
		free(f);
	}
}

static struct io_req *io_req_new(fuse_req_t req, enum io_kind kind,
				 size_t size, off_t off,
				 struct fuse_file_info *fi)
{
	struct server *srv = req_server(req);
	struct io_req *op;

	stats_begin(&srv->stats, kind);
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		fuse_reply_err(req, ENOMEM);
		stats_end(&srv->stats, kind, 0);
		return NULL;
	}
	op->srv = srv;
	op->req = req;
	op->kind = kind;
	op->file = file_get(fi_file(fi));
	op->size = size;
	op->off = off;
	return op;
}

void io_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct io_req *op = io_req_new(req, IO_READ, size, off, fi);
	struct server *srv;

	(void)ino;
	if (op == NULL)
		return;
	srv = op->srv;
	if (size > 0) {
		op->buf = malloc(size);
		if (op->buf == NULL) {
			op->err = ENOMEM;
			io_complete(op);
			return;
		}
		op->own_buf = true;
	}
	srv->backend->submit(srv->backend_state, op);
}

void io_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	      off_t off, struct fuse_file_info *fi)
{
	struct io_req *op = io_req_new(req, IO_WRITE, size, off, fi);
	struct server *srv;

	(void)ino;
	if (op == NULL)
		return;
	srv = op->srv;
	if (srv->backend->async && size > 0) {
		/* buf lives in libfuse's receive buffer, which the worker
		 * reuses as soon as we return. */
		op->buf = malloc(size);
		if (op->buf == NULL) {
			op->err = ENOMEM;
			io_complete(op);
			return;
		}
		memcpy(op->buf, buf, size);
		op->own_buf = true;
	} else {
		op->buf = (char *)buf;
	}
	srv->backend->submit(srv->backend_state, op);
}

void io_complete(struct io_req *op)
{
	if (!op->own_buf)
		op->buf = NULL;	/* borrowed WRITE data: gone after return */
	if (op->err && op->done > 0)
		op->err = 0;	/* short transfer: report what was done */
	if (op->srv->delay)
		delay_push(op->srv->delay, op);
	else
		io_reply(op);
}

void io_reply(struct io_req *op)
{
	struct server *srv = op->srv;

	/* Account first: once the reply is written the kernel may send the
	 * next request of a serial stream, which must not overlap this one
	 * in the statistics. */
	stats_end(&srv->stats, op->kind, op->err ? 0 : op->done);
	if (op->err)
		fuse_reply_err(op->req, op->err);
	else if (op->kind == IO_READ)
		fuse_reply_buf(op->req, op->buf, op->done);
	else
		fuse_reply_write(op->req, op->done);
	file_put(op->file);
	if (op->own_buf)
		free(op->buf);
	free(op);
}
