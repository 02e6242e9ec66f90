/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fdio_common.h - helpers shared by the fdio_* selftests (direct IO on files
 * the server opened with FOPEN_DIRECT_IO, read and written without O_DIRECT).
 *
 * Conventions of the fdio_* tests:
 *  - 128 KiB requests: mount option max_read, INIT max_write and max_pages;
 *    a 2 MiB IO is 16 READ or WRITE requests;
 *  - a test case named gap_* shows a behaviour that the patch series
 *    changes: it fails on the stock fuse.ko and passes on the patched one.
 *    gap612_*: the same on 6.12, but 7.3's stock module passes it (7.3
 *    closed that gap itself); gap73_*: fails on 7.3's stock module only
 *    (a gap 7.3 opened, e.g. with cc23d537e561).  Every other case must
 *    pass on both.  make check-stock holds each base to this.
 *
 * Everything here is static inline: each test binary uses a subset.
 */
#ifndef FDIO_COMMON_H
#define FDIO_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "fuse_test_server.h"

#define FDIO_CHUNK	(128 << 10)	/* bytes per READ/WRITE request */
#define FDIO_SZ		(2 << 20)	/* a "big" IO: 16 requests */

static inline uint64_t fdio_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static inline uint64_t fdio_now_ms(void)
{
	return fdio_now_ns() / 1000000;
}

static inline void fdio_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Defaults of the fdio tests: 128 KiB requests, 4 server threads. */
static inline void fdio_config(struct fts_config *cfg, uint32_t open_flags)
{
	fts_config_init(cfg);
	cfg->max_read = FDIO_CHUNK;
	cfg->max_write = FDIO_CHUNK;
	cfg->max_pages = FDIO_CHUNK / 4096;
	cfg->nthreads = 4;
	cfg->open_flags = open_flags;
}

/*
 * The two transport variants of fixture fix: its variant struct has one
 * member, transport; dev serves over /dev/fuse, uring over io_uring.
 */
#define FDIO_TRANSPORT_VARIANTS(fix)					\
	FIXTURE_VARIANT(fix) {						\
		enum fts_transport transport;				\
	};								\
	FIXTURE_VARIANT_ADD(fix, dev) {					\
		.transport = FTS_TRANSPORT_DEV,				\
	};								\
	FIXTURE_VARIANT_ADD(fix, uring) {				\
		.transport = FTS_TRANSPORT_URING,			\
	}

/*
 * In a FIXTURE_SETUP of a fixture with a transport variant: SKIP the case
 * when this kernel can not serve over transport t (FUSE-over-io_uring on
 * 6.12, or without CONFIG_FUSE_IO_URING), with the reason.
 */
#define FDIO_SKIP_WITHOUT_TRANSPORT(t) do {				\
	char __why[256];						\
									\
	if (fts_transport_check((t), __why, sizeof(__why)))		\
		SKIP(return, "%s transport: %s",			\
		     fts_transport_name(t), __why);			\
} while (0)

/*
 * How many of the READ/WRITE requests in the server's log did not come
 * through transport t (a ring queue for FTS_TRANSPORT_URING, /dev/fuse
 * otherwise); the first such one in *first if it is not NULL.
 */
static inline unsigned int fdio_wrong_transport(struct fts *srv,
						enum fts_transport t,
						struct fts_io *first)
{
	bool ring = t == FTS_TRANSPORT_URING;
	unsigned int wrong = 0;
	struct fts_io *ios;
	size_t i, n = fts_get_ios(srv, &ios);

	for (i = 0; i < n; i++) {
		if ((ios[i].qid >= 0) == ring)
			continue;
		if (!wrong++ && first)
			*first = ios[i];
	}
	free(ios);
	return wrong;
}

/*
 * Keep the calling thread, and the threads and processes it creates from
 * now on, on the CPU it runs on: FUSE-over-io_uring sends a request on the
 * ring queue of its task's CPU, and each queue has a server thread of its
 * own, so requests of a task that moves between CPUs can reach the server
 * out of the order they were sent in.  On one queue they arrive in order,
 * as with one thread reading /dev/fuse (cfg.nthreads = 1), which the cases
 * that pick "the nth request" need.  The CPU, or -errno.
 */
static inline int fdio_one_queue(void)
{
	int cpu = sched_getcpu();
	cpu_set_t one;

	if (cpu < 0)
		return -errno;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		return -errno;
	return cpu;
}

/* In a harness test: every READ/WRITE in srv's log came through transport
 * t, see fdio_wrong_transport(). */
#define FDIO_EXPECT_TRANSPORT(srv, t) do {				\
	struct fts_io __io = { .qid = -1 };				\
	unsigned int __n = fdio_wrong_transport((srv), (t), &__io);	\
									\
	EXPECT_EQ(0U, __n)						\
		TH_LOG("%u READ/WRITE did not come through the %s transport, the first at %llu (queue %d)", \
		       __n, fts_transport_name(t),			\
		       (unsigned long long)__io.offset, __io.qid);	\
} while (0)

/* Wait up to ms for child pid: its wait status, or -1 if still running. */
static inline int fdio_wait_child(pid_t pid, int ms)
{
	uint64_t end = fdio_now_ms() + ms;
	int status;

	do {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		fdio_sleep_ms(5);
	} while (fdio_now_ms() < end);
	return -1;
}

/*
 * A call made in a helper thread, so that the test can watch the server
 * while the call blocks (or find that it does not).
 */
struct fdio_call {
	pthread_t thread;
	long (*fn)(void *arg);
	void *arg;
	long ret;
	int err;		/* errno after fn, if ret < 0 */
	uint64_t done_ns;	/* CLOCK_MONOTONIC when fn returned */
	int done;		/* atomic */
	bool started;
};

static inline void *fdio_call_main(void *p)
{
	struct fdio_call *c = p;

	c->ret = c->fn(c->arg);
	c->err = c->ret < 0 ? errno : 0;
	c->done_ns = fdio_now_ns();
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static inline int fdio_call_start(struct fdio_call *c, long (*fn)(void *),
				  void *arg)
{
	memset(c, 0, sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	if (pthread_create(&c->thread, NULL, fdio_call_main, c))
		return -1;
	c->started = true;
	return 0;
}

static inline bool fdio_call_done(struct fdio_call *c)
{
	return __atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
}

/* Wait up to ms for the call to return; whether it did. */
static inline bool fdio_call_wait(struct fdio_call *c, int ms)
{
	uint64_t end = fdio_now_ms() + ms;

	while (!fdio_call_done(c)) {
		if (fdio_now_ms() >= end)
			return false;
		fdio_sleep_ms(2);
	}
	return true;
}

/* Join the thread if it returned within ms; whether it did (a thread that
 * stays blocked is left alone, the test process' exit ends it). */
static inline bool fdio_call_join(struct fdio_call *c, int ms)
{
	if (!c->started)
		return true;
	if (!fdio_call_wait(c, ms))
		return false;
	pthread_join(c->thread, NULL);
	c->started = false;
	return true;
}

/* A policy that answers everything at once; setting it releases what the
 * previous policy held. */
static inline void fdio_answer_all(struct fts *srv)
{
	struct fts_policy pol;

	memset(&pol, 0, sizeof(pol));
	fts_set_policy(srv, &pol);
}

/* Latest answer time among the logged requests of opcode (0: all), and the
 * earliest; 0 if none was answered. */
static inline void fdio_reply_span(const struct fts_io *ios, size_t n,
				   uint32_t opcode, uint64_t *first,
				   uint64_t *last)
{
	size_t i;

	*first = *last = 0;
	for (i = 0; i < n; i++) {
		if (opcode && ios[i].opcode != opcode)
			continue;
		if (!ios[i].answered)
			continue;
		if (!*first || ios[i].reply_ns < *first)
			*first = ios[i].reply_ns;
		if (ios[i].reply_ns > *last)
			*last = ios[i].reply_ns;
	}
}

/* Pairs (a, b) of requests of opcode where a has the lower offset but was
 * answered after b: > 0 if the server's answers reached the kernel out of
 * file order. */
static inline unsigned int fdio_out_of_order(const struct fts_io *ios,
					     size_t n, uint32_t opcode)
{
	unsigned int cnt = 0;
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			if (ios[i].opcode == opcode &&
			    ios[j].opcode == opcode &&
			    ios[i].answered && ios[j].answered &&
			    ios[i].offset < ios[j].offset &&
			    ios[i].reply_ns > ios[j].reply_ns)
				cnt++;
	return cnt;
}

/* Number of distinct pids among the logged requests. */
static inline unsigned int fdio_pids(const struct fts_io *ios, size_t n)
{
	unsigned int cnt = 0;
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++)
			if (ios[j].pid == ios[i].pid)
				break;
		if (j == i)
			cnt++;
	}
	return cnt;
}

#ifdef __LIBAIO_H
/* One io_submit() of a read or write and its completion (up to 10 s):
 * the event's res, or -errno of io_setup/io_submit/io_getevents. */
static inline long fdio_aio_rw(int fd, void *buf, size_t len, off_t off,
			       bool write)
{
	struct timespec ts = { 10, 0 };
	struct iocb cb, *cbs[1] = { &cb };
	io_context_t ctx = 0;
	struct io_event ev;
	long ret;

	ret = io_setup(4, &ctx);
	if (ret < 0)
		return ret;
	if (write)
		io_prep_pwrite(&cb, fd, buf, len, off);
	else
		io_prep_pread(&cb, fd, buf, len, off);
	ret = io_submit(ctx, 1, cbs);
	if (ret == 1) {
		ret = io_getevents(ctx, 1, 1, &ev, &ts);
		if (ret == 1)
			ret = (long)ev.res;
		else if (ret == 0)
			ret = -ETIMEDOUT;
	} else if (ret >= 0) {
		ret = -EIO;
	}
	io_destroy(ctx);
	return ret;
}
#endif

#ifdef LIB_URING_H
#include <limits.h>
#define FDIO_NO_URING	INT_MIN		/* io_uring not usable here */
#define FDIO_URING_ERR	(INT_MIN + 1)	/* setup failed: see stderr */

/* One io_uring read or write SQE and its CQE (up to 10 s): the CQE's res,
 * FDIO_NO_URING if io_uring is not available, FDIO_URING_ERR. */
static inline int fdio_uring_rw(int fd, void *buf, size_t len, off_t off,
				bool write)
{
	struct __kernel_timespec ts = { .tv_sec = 10 };
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int ret, res = FDIO_URING_ERR;

	ret = io_uring_queue_init(4, &ring, 0);
	if (ret == -ENOSYS || ret == -EPERM)
		return FDIO_NO_URING;
	if (ret) {
		fprintf(stderr, "# io_uring_queue_init: %s\n", strerror(-ret));
		return FDIO_URING_ERR;
	}
	sqe = io_uring_get_sqe(&ring);
	if (write)
		io_uring_prep_write(sqe, fd, buf, len, off);
	else
		io_uring_prep_read(sqe, fd, buf, len, off);
	ret = io_uring_submit(&ring);
	if (ret != 1) {
		fprintf(stderr, "# io_uring_submit: %d\n", ret);
	} else {
		ret = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
		if (ret) {
			fprintf(stderr, "# io_uring_wait_cqe_timeout: %s\n",
				strerror(-ret));
		} else {
			res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	io_uring_queue_exit(&ring);
	return res;
}
#endif

/* Process state letter from /proc/pid/stat ('R', 'S', 'D', 'Z', ...), or
 * '?' if it can not be read. */
static inline char fdio_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] ? p[2] : '?';
}

#endif /* FDIO_COMMON_H */
