/* READ/WRITE path: an io_req carries one request from its handler through
 * the backend and the optional delay queue to its reply.
 *
 *   handler (worker) --submit--> backend --io_complete()--> reply now
 *                                                      \--> delay queue
 *                                                            --> reply
 */
#ifndef PT_IO_H
#define PT_IO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "handles.h"
#include "pt_fuse.h"
#include "stats.h"

struct server;

/* An open backing file, shared by the requests in flight on it, so that
 * RELEASE cannot close the fd under an IO the backend still runs. */
struct pt_file {
	struct handle link;		/* on server.files */
	struct handle_list *list;
	int fd;
	atomic_int refs;
};

struct pt_file *file_new(struct handle_list *list, int fd);
struct pt_file *file_get(struct pt_file *f);
void file_put(struct pt_file *f);
/* At exit: closes the files the kernel never released. */
void file_close_all(struct handle_list *list);

static inline struct pt_file *fi_file(const struct fuse_file_info *fi)
{
	return (struct pt_file *)(uintptr_t)fi->fh;
}

struct io_req {
	struct server *srv;
	fuse_req_t req;
	enum io_kind kind;
	struct pt_file *file;
	char *buf;
	bool own_buf;		/* free(buf) when done */
	size_t size;		/* bytes asked for */
	off_t off;
	size_t done;		/* bytes transferred so far */
	int err;		/* positive errno, 0 for success */
	uint64_t due_ns;	/* delay queue: CLOCK_MONOTONIC reply time */
};

void io_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi);
void io_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	      off_t off, struct fuse_file_info *fi);

/* Backends call this once op->done/op->err are final (any thread). */
void io_complete(struct io_req *op);
/* Keeps freed READ buffers in the heap; 0, or -1 if glibc refused. */
int io_buffers_keep(void);
/* Sends the reply, accounts it and frees op (any thread). */
void io_reply(struct io_req *op);

#endif
