/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fts_transport.h - private to fuse_test_server: the state of a server and
 * the interface between its core (fuse_test_server.c: configuration, shared
 * memory, policy, request handlers, counters, log, the public fts_* API)
 * and its transports, the ways requests reach the server and answers the
 * kernel:
 *
 *   fts_transport_dev.c	read(2) and writev(2) on /dev/fuse
 *   fts_transport_uring.c	FUSE-over-io_uring (fs/fuse/dev_uring.c)
 *
 * A transport receives requests in threads of its own and hands each one,
 * in one piece as read(2) on /dev/fuse returns it, to fts_handle() with a
 * struct fts_src that tells the core where the answer goes.  The core
 * answers some requests at once (in the calling thread) and others later
 * from its "deferred" thread (held, delayed, stalled READ/WRITE), so a
 * transport's reply() must be safe to call from any thread.
 */
#ifndef FTS_TRANSPORT_H
#define FTS_TRANSPORT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "fuse_test_server.h"

struct fts_shm;
struct fts_pend;

/*
 * Where a request came from, and so where its answer must go: ent is the
 * transport's handle for it (an io_uring ring entry), NULL for a request
 * read from /dev/fuse, which the core answers with fts_dev_reply(); qid is
 * the io_uring queue, -1 for /dev/fuse.
 */
struct fts_src {
	void *ent;
	int qid;
};

struct fts_transport_ops {
	const char *name;
	/*
	 * INIT flags the transport needs: asked for in the INIT reply on top
	 * of cfg.init_flags; if the kernel does not offer them all, INIT is
	 * answered without them and fts_start() fails with -EOPNOTSUPP.
	 */
	uint64_t init_flags;
	/*
	 * Test process, fts_start(), /dev/fuse open (the module is loaded)
	 * and not yet mounted: can this kernel serve this way?  0, or -errno
	 * (-EOPNOTSUPP: it can not) with the reason in why.  May change
	 * global settings for the mount to come (enable_uring); unprobe()
	 * (fts_stop(), may be NULL) undoes that.  s is NULL when called by
	 * fts_transport_check(): then only look, change nothing.  NULL:
	 * nothing to check.
	 */
	int (*probe)(struct fts *s, char *why, size_t whylen);
	void (*unprobe)(struct fts *s);
	/*
	 * Server process: start the threads that receive requests, INIT
	 * first.  0 or -errno; the server process exits if it fails.
	 */
	int (*start)(struct fts *s);
	/*
	 * Server process, in the thread that answered INIT, right after the
	 * answer was written (may be NULL): set up what needs the negotiated
	 * parameters (s->init_flags).  fts_start() fails with its error.
	 */
	int (*init_done)(struct fts *s);
	/*
	 * Answer the request that came through src (src.ent != NULL): iov[0]
	 * is its struct fuse_out_header, the rest its out args (none if
	 * error is set).  Any thread.  Bytes sent or -errno.
	 */
	ssize_t (*reply)(struct fts *s, struct fts_src src,
			 const struct iovec *iov, int iovcnt);
	/*
	 * Server process: wait for the threads of start() and init_done()
	 * to end (they do when the stop eventfd becomes readable or the
	 * connection is gone).
	 */
	void (*join)(struct fts *s);
	/*
	 * Server process, after join() and after the core's deferred thread
	 * ended too (it may answer until then): release what is left (may
	 * be NULL).
	 */
	void (*release)(struct fts *s);
};

extern const struct fts_transport_ops fts_transport_dev;
extern const struct fts_transport_ops fts_transport_uring;

struct fts {
	struct fts_config cfg;
	const struct fts_transport_ops *ops;
	struct fts_shm *shm;
	unsigned char *data;	/* shared, cfg.max_data bytes */
	char mnt[PATH_MAX];
	char file[PATH_MAX + sizeof("/" FTS_FILE_NAME)];
	int fd;			/* /dev/fuse, the server process only */
	int stop_efd;		/* eventfd, readable: the server must stop */
	pid_t owner;		/* test process that called fts_start() */
	pid_t pid;		/* server process */
	bool private_ns, mounted, fusectl_mounted, have_dir, have_conn_id;
	unsigned int conn_id;	/* name of the fusectl directory */
	size_t bufsize;		/* per /dev/fuse reader buffer */
	struct timespec t0;	/* file times */
	int probe_undo;		/* test process: for the transport's
				 * unprobe(), -1: nothing to undo */

	/* server process only */
	uint64_t init_flags;	/* negotiated at INIT */
	unsigned int ring_queues; /* set by init_done(), for fts_stats */
	pthread_t deferred;
	struct fts_pend *pend;	/* arrival order, under shm->lock */
	pthread_t *readers;	/* /dev/fuse readers (fts_transport_dev.c) */
	unsigned int nreaders;
	void *tp;		/* the transport's private state */
};

/* "# fts: ..." on stderr */
void fts_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Handle one request of len bytes at req (header and args, as read(2) on
 * /dev/fuse returns it; req may be changed); it is answered through src. */
void fts_handle(struct fts *s, struct fts_src src, unsigned char *req,
		size_t len);

/* fts_transport_dev.c, for the other transports too: n threads reading
 * /dev/fuse (they end on the stop eventfd or when the connection is gone),
 * and the answer to a request read there. */
int fts_dev_readers_start(struct fts *s, unsigned int n);
void fts_dev_readers_join(struct fts *s);
ssize_t fts_dev_reply(struct fts *s, const struct iovec *iov, int iovcnt);

#endif /* FTS_TRANSPORT_H */
