/* io_uring backend: workers queue the backend IO on one shared ring and
 * return at once; a completion thread reaps CQEs and completes the FUSE
 * request (reply, or hand-off to the delay queue).  One ring keeps as many
 * backend IOs in flight as the kernel sends us.
 *
 * The completion thread sleeps in read() on an eventfd registered with
 * the ring, not in io_uring_enter(GETEVENTS): valgrind does not treat the
 * latter as a blocking call and would stall every other thread meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* An op passes from submitter to reaper through the kernel, which
 * ThreadSanitizer cannot see: tell it about that hand-off. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

#include "backend.h"
#include "io.h"

#define RING_ENTRIES 256

struct uring_state {
	struct io_uring ring;
	pthread_mutex_t sq_lock;	/* submitters: workers + reaper */
	pthread_t reaper;
	int efd;			/* eventfd: a CQE was posted */
	atomic_long inflight;		/* ops submitted, not yet completed */
	bool stopping;			/* reaper only */
};

/* Queues the remaining part of op; returns 0 or a negative errno. */
static int queue_op(struct uring_state *u, struct io_req *op)
{
	struct io_uring_sqe *sqe;
	char *p = op->buf + op->done;
	unsigned int len = (unsigned int)(op->size - op->done);
	__u64 off = (__u64)op->off + op->done;
	int ret;

	pthread_mutex_lock(&u->sq_lock);
	sqe = io_uring_get_sqe(&u->ring);
	if (sqe == NULL) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe == NULL) {
		pthread_mutex_unlock(&u->sq_lock);
		return -EBUSY;
	}
	if (op->kind == IO_READ)
		io_uring_prep_read(sqe, op->file->fd, p, len, off);
	else
		io_uring_prep_write(sqe, op->file->fd, p, len, off);
	io_uring_sqe_set_data(sqe, op);
	HANDOFF_RELEASE(op);
	/* Once queued the SQE belongs to the ring: on a transient error
	 * keep entering until the kernel has taken it. */
	while ((ret = io_uring_submit(&u->ring)) < 0 &&
	       (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY))
		sched_yield();
	pthread_mutex_unlock(&u->sq_lock);
	if (ret < 0) {
		fprintf(stderr, "passthrough: io_uring_submit: %s\n",
			strerror(-ret));
		return ret;
	}
	return 0;
}

static void finish(struct uring_state *u, struct io_req *op)
{
	atomic_fetch_sub(&u->inflight, 1);
	io_complete(op);
}

static void uring_submit(void *state, struct io_req *op)
{
	struct uring_state *u = state;
	int ret;

	if (op->size == 0) {
		io_complete(op);
		return;
	}
	atomic_fetch_add(&u->inflight, 1);
	ret = queue_op(u, op);
	if (ret < 0) {
		op->err = -ret;
		finish(u, op);
	}
}

static void handle_cqe(struct uring_state *u, struct io_req *op, int res)
{
	if (res == -EAGAIN || res == -EINTR)
		goto again;
	if (res < 0) {
		op->err = -res;
		finish(u, op);
		return;
	}
	if (res == 0) {
		if (op->kind == IO_WRITE)
			op->err = EIO;
		finish(u, op);	/* READ: end of file */
		return;
	}
	if (op->kind == IO_READ)	/* the kernel wrote it, not us */
		VALGRIND_MAKE_MEM_DEFINED(op->buf + op->done, res);
	op->done += (size_t)res;
	if (op->done >= op->size) {
		finish(u, op);
		return;
	}
again:
	res = queue_op(u, op);
	if (res < 0) {
		op->err = -res;
		finish(u, op);
	}
}

static void *reaper(void *arg)
{
	struct uring_state *u = arg;

	for (;;) {
		struct io_uring_cqe *cqe;
		uint64_t n;

		while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
			struct io_req *op = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			if (op != NULL)
				HANDOFF_ACQUIRE(op);
			io_uring_cqe_seen(&u->ring, cqe);
			if (op == NULL)
				u->stopping = true;	/* NOP of uring_stop() */
			else
				handle_cqe(u, op, res);
		}
		if (u->stopping && atomic_load(&u->inflight) == 0)
			break;
		if (read(u->efd, &n, sizeof(n)) < 0 && errno != EINTR &&
		    errno != EAGAIN) {
			fprintf(stderr, "passthrough: io_uring completion thread: read eventfd: %s\n",
				strerror(errno));
			break;
		}
	}
	return NULL;
}

static int uring_start(struct server *srv, void **state)
{
	struct uring_state *u;
	int ret;

	(void)srv;
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		fprintf(stderr, "passthrough: out of memory for io_uring backend\n");
		return -ENOMEM;
	}
	ret = io_uring_queue_init(RING_ENTRIES, &u->ring, 0);
	if (ret < 0) {
		fprintf(stderr, "passthrough: --backend uring: io_uring unavailable: %s\n",
			strerror(-ret));
		free(u);
		return ret;
	}
	u->efd = eventfd(0, EFD_CLOEXEC);
	if (u->efd < 0) {
		ret = -errno;
		fprintf(stderr, "passthrough: --backend uring: eventfd: %s\n",
			strerror(-ret));
		goto fail_ring;
	}
	ret = io_uring_register_eventfd(&u->ring, u->efd);
	if (ret < 0) {
		fprintf(stderr, "passthrough: --backend uring: cannot register eventfd: %s\n",
			strerror(-ret));
		goto fail_efd;
	}
	pthread_mutex_init(&u->sq_lock, NULL);
	atomic_init(&u->inflight, 0);
	ret = pthread_create(&u->reaper, NULL, reaper, u);
	if (ret) {
		fprintf(stderr, "passthrough: cannot start io_uring completion thread: %s\n",
			strerror(ret));
		pthread_mutex_destroy(&u->sq_lock);
		ret = -ret;
		goto fail_efd;
	}
	*state = u;
	return 0;
fail_efd:
	close(u->efd);
fail_ring:
	io_uring_queue_exit(&u->ring);
	free(u);
	return ret;
}

static void uring_stop(void *state)
{
	struct uring_state *u = state;
	struct io_uring_sqe *sqe;
	int ret;

	pthread_mutex_lock(&u->sq_lock);
	sqe = io_uring_get_sqe(&u->ring);
	if (sqe == NULL) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe != NULL) {
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		while ((ret = io_uring_submit(&u->ring)) < 0 &&
		       (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY))
			sched_yield();
	} else {
		ret = -EBUSY;
	}
	pthread_mutex_unlock(&u->sq_lock);
	if (ret < 0) {
		fprintf(stderr, "passthrough: cannot stop io_uring completion thread: %s\n",
			strerror(-ret));
		pthread_cancel(u->reaper);
	}
	pthread_join(u->reaper, NULL);
	pthread_mutex_destroy(&u->sq_lock);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	free(u);
}

const struct io_backend io_backend_uring = {
	.name = "uring",
	.async = true,
	.start = uring_start,
	.submit = uring_submit,
	.stop = uring_stop,
};
