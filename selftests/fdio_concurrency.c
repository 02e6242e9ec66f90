// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_concurrency: how many READ/WRITE requests a direct IO on a
 * FOPEN_DIRECT_IO file (opened without O_DIRECT) has with the server at
 * once, seen from the server.
 *
 * A 2 MiB IO is 16 requests of 128 KiB.  The server holds requests until
 * several are outstanding (or a short timeout passed), so that requests the
 * kernel sends together are seen together:
 *
 *  - gap_*, gap612_*: with FUSE_ASYNC_DIO, read()/write(), io_submit() and io_uring
 *    send the sub-requests together (up to max_background outstanding: 12
 *    by default; the libaio/io_uring cases raise it to 32, so that all 16
 *    are sent before the submission returns); the stock module sends one,
 *    waits for its answer, sends the next, and io_submit() and
 *    io_uring_submit() do not return before the whole IO is done.  Answers
 *    given in reverse order must still give the right data.
 *    read()/write() only so when the server also asked for
 *    FUSE_ASYNC_DIO_ALL (the test server does by default).  7.3's stock
 *    module sends AIO and io_uring on these files together too (since
 *    cc23d537e561): gap612_* for those.
 *  - the rest: without FUSE_ASYNC_DIO, on FOPEN_STREAM and
 *    FOPEN_NONSEEKABLE files, and for read() without FUSE_ASYNC_DIO_ALL
 *    (what a server that did not opt in sees), requests stay one at a
 *    time, on every module but 7.3's stock one, which sends AIO on stream
 *    and non-seekable files concurrently too (gap73_*).
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring, SKIP on kernels without it), where every READ/WRITE must
 * have come over a ring queue: what the kernel sends together does not
 * depend on the transport.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	FDIO_SZ
#define CHUNK	FDIO_CHUNK

FIXTURE(fdio) {
	struct fts *srv;
	struct fts_config cfg;
	int fd;
	void *buf;
	void *ref;
};

FDIO_TRANSPORT_VARIANTS(fdio);

FIXTURE_SETUP(fdio)
{
	self->fd = -1;
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	fdio_config(&self->cfg, FOPEN_DIRECT_IO);
	self->cfg.transport = variant->transport;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
}

FIXTURE_TEARDOWN(fdio)
{
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

/* Start the server with self->cfg and len bytes of pattern seed 1, open
 * "file" read-write with extra open(2) flags oflags. */
static void start(struct __test_metadata *_metadata,
		  FIXTURE_DATA(fdio) *self, size_t len, int oflags)
{
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	fts_fill_pattern(self->ref, SZ, 0, 1);
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, len));
	self->fd = open(fts_file(self->srv), O_RDWR | oflags);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

/* Hold READs/WRITEs until n are held or the oldest waited ms. */
static void hold(FIXTURE_DATA(fdio) *self, unsigned int n, unsigned int ms,
		 enum fts_order order)
{
	self->cfg.policy.hold_count = n;
	self->cfg.policy.hold_timeout_ms = ms;
	self->cfg.policy.order = order;
}

/* The requests of opcode tile [0, len), are at most CHUNK each, were all
 * answered in full and came through the transport of the variant; returns
 * the stats. */
static struct fts_stats check_log(struct __test_metadata *_metadata,
				  FIXTURE_DATA(fdio) *self, uint32_t opcode,
				  size_t len, const char *what)
{
	struct fts *srv = self->srv;
	struct fts_io *ios;
	size_t i, n = fts_get_ios(srv, &ios);
	char why[200] = "";
	struct fts_stats st;

	fts_get_stats(srv, &st);
	for (i = 0; i < n; i++) {
		EXPECT_EQ(opcode, ios[i].opcode);
		EXPECT_GE((uint32_t)CHUNK, ios[i].size);
		EXPECT_TRUE(ios[i].answered);
		EXPECT_EQ((int)ios[i].size, ios[i].result);
	}
	EXPECT_EQ(0, fts_check_coverage(ios, n, opcode, 0, len, why,
					sizeof(why))) {
		TH_LOG("%s", why);
	}
	TH_LOG("%s: %zu %s requests, max %u outstanding at once, %u answer pairs out of file order",
	       what, n, opcode == FUSE_READ ? "READ" : "WRITE",
	       st.max_outstanding, fdio_out_of_order(ios, n, opcode));
	free(ios);
	FDIO_EXPECT_TRANSPORT(srv, self->cfg.transport);
	return st;
}

/* The server's data is self->ref over [0, len). */
static void check_server_data(struct __test_metadata *_metadata,
			      FIXTURE_DATA(fdio) *self, size_t len)
{
	long long diff;

	ASSERT_EQ(len, fts_data_len(self->srv));
	memset(self->buf, 0, len);
	fts_get_data(self->srv, self->buf, len);
	diff = fts_first_diff(self->buf, self->ref, len);
	EXPECT_EQ(-1, diff) {
		TH_LOG("server data differs at byte %lld", diff);
	}
}

static void check_read_data(struct __test_metadata *_metadata,
			    FIXTURE_DATA(fdio) *self, size_t len)
{
	long long diff = fts_first_diff(self->buf, self->ref, len);

	EXPECT_EQ(-1, diff) {
		TH_LOG("data read differs at byte %lld", diff);
	}
}

/* ---- read() / write() ---------------------------------------------------- */

TEST_F(fdio, gap_sync_read_concurrent)
{
	struct fts_stats st;

	hold(self, 8, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(SZ, pread(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pread: %s", strerror(errno));
	}
	check_read_data(_metadata, self, SZ);
	st = check_log(_metadata, self, FUSE_READ, SZ, "pread 2 MiB");
	EXPECT_LT(1U, st.max_outstanding) {
		TH_LOG("the sub-requests of read() were sent one at a time");
	}
}

TEST_F(fdio, gap_sync_write_concurrent)
{
	struct fts_stats st;

	hold(self, 8, 100, FTS_ORDER_FIFO);
	start(_metadata, self, 0, 0);
	fts_fill_pattern(self->ref, SZ, 0, 2);
	memcpy(self->buf, self->ref, SZ);
	ASSERT_EQ(SZ, pwrite(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pwrite: %s", strerror(errno));
	}
	check_server_data(_metadata, self, SZ);
	st = check_log(_metadata, self, FUSE_WRITE, SZ, "pwrite 2 MiB");
	EXPECT_LT(1U, st.max_outstanding) {
		TH_LOG("the sub-requests of write() were sent one at a time");
	}
}

/* Batches of 8 answered last first: the data must land in place. */
TEST_F(fdio, gap_sync_read_reverse)
{
	struct fts_io *ios;
	unsigned int ooo;
	size_t n;

	hold(self, 8, 100, FTS_ORDER_REVERSE);
	start(_metadata, self, SZ, 0);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(SZ, pread(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pread: %s", strerror(errno));
	}
	check_read_data(_metadata, self, SZ);
	check_log(_metadata, self, FUSE_READ, SZ, "pread, reverse answers");
	n = fts_get_ios(self->srv, &ios);
	ooo = fdio_out_of_order(ios, n, FUSE_READ);
	free(ios);
	EXPECT_LT(0U, ooo) {
		TH_LOG("no READ was answered before one at a lower offset");
	}
}

TEST_F(fdio, gap_sync_write_reverse)
{
	struct fts_io *ios;
	unsigned int ooo;
	size_t n;

	hold(self, 8, 100, FTS_ORDER_REVERSE);
	start(_metadata, self, 0, 0);
	fts_fill_pattern(self->ref, SZ, 0, 3);
	memcpy(self->buf, self->ref, SZ);
	ASSERT_EQ(SZ, pwrite(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pwrite: %s", strerror(errno));
	}
	check_server_data(_metadata, self, SZ);
	check_log(_metadata, self, FUSE_WRITE, SZ,
		  "pwrite, reverse answers");
	n = fts_get_ios(self->srv, &ios);
	ooo = fdio_out_of_order(ios, n, FUSE_WRITE);
	free(ios);
	EXPECT_LT(0U, ooo) {
		TH_LOG("no WRITE was answered before one at a lower offset");
	}
	/* the size the kernel knows is the written one */
	{
		struct stat sb;

		ASSERT_EQ(0, fstat(self->fd, &sb));
		EXPECT_EQ(SZ, sb.st_size);
	}
}

/* ---- libaio and io_uring ------------------------------------------------- */

/* One async 2 MiB read or write, through libaio or io_uring. */
struct async_io {
	bool uring;
	io_context_t ctx;
	struct iocb cb;
	struct io_uring ring;
	bool have_ring;
};

/* io_submit() or io_uring_submit(): 1, or -1 with errno. */
static long do_submit(void *arg)
{
	struct async_io *a = arg;
	struct iocb *cbs[1] = { &a->cb };
	int ret;

	ret = a->uring ? io_uring_submit(&a->ring) : io_submit(a->ctx, 1, cbs);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}

/* Its completion (10 s at most): the result, or -errno. */
static long async_io_wait(struct async_io *a)
{
	long res;

	if (a->uring) {
		struct __kernel_timespec ts = { .tv_sec = 10 };
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_timeout(&a->ring, &cqe, &ts);

		if (ret)
			return ret;
		res = cqe->res;
		io_uring_cqe_seen(&a->ring, cqe);
	} else {
		struct timespec ts = { 10, 0 };
		struct io_event ev;
		int ret = io_getevents(a->ctx, 1, 1, &ev, &ts);

		if (ret != 1)
			return ret < 0 ? ret : -ETIMEDOUT;
		res = (long)ev.res;
	}
	return res;
}

static void async_io_free(struct async_io *a)
{
	if (a->have_ring)
		io_uring_queue_exit(&a->ring);
	else if (a->ctx)
		io_destroy(a->ctx);
}

/*
 * One 2 MiB io_submit() or io_uring_submit(); the server holds every
 * request until the test lets go.  The test lets go once the submission
 * returned, or after 2 s if it does not (the stock module sends the next
 * request only when the held one is answered: io_submit() runs the whole
 * IO, and so does io_uring_submit() for a read, which it issues inline as
 * fuse files poll readable; it hands a write to an io-wq worker).  The
 * submission must have
 * returned while requests were held, before any answer, and more than one
 * request must have been out at once.
 */
static void async_concurrent(struct __test_metadata *_metadata,
			     FIXTURE_DATA(fdio) *self, bool uring, bool write)
{
	uint32_t op = write ? FUSE_WRITE : FUSE_READ;
	const char *api = uring ? "io_uring_submit" : "io_submit";
	struct async_io a = { .uring = uring };
	uint64_t first, last;
	struct fts_stats at, st;
	struct fdio_call c;
	struct fts_io *ios;
	char what[64];
	bool returned;
	long res;
	size_t n;
	int ret;

	hold(self, 1000, 0, FTS_ORDER_FIFO);	/* until released */
	/*
	 * Room for all 16 requests: the kernel stops allocating background
	 * requests at max_background (fc->blocked), so with the default 12
	 * the submission waits for answers to send the last 4, on any module.
	 */
	self->cfg.max_background = 32;
	self->cfg.congestion_threshold = 24;
	/* writes within the file: an extending one would block anyway */
	start(_metadata, self, SZ, 0);
	if (write) {
		fts_fill_pattern(self->ref, SZ, 0, 4);
		memcpy(self->buf, self->ref, SZ);
	} else {
		memset(self->buf, 0, SZ);
	}
	if (uring) {
		struct io_uring_sqe *sqe;

		ret = io_uring_queue_init(4, &a.ring, 0);
		if (ret == -ENOSYS || ret == -EPERM)
			SKIP(return, "io_uring not available");
		ASSERT_EQ(0, ret);
		a.have_ring = true;
		sqe = io_uring_get_sqe(&a.ring);
		if (write)
			io_uring_prep_write(sqe, self->fd, self->buf, SZ, 0);
		else
			io_uring_prep_read(sqe, self->fd, self->buf, SZ, 0);
	} else {
		ASSERT_EQ(0, io_setup(4, &a.ctx));
		if (write)
			io_prep_pwrite(&a.cb, self->fd, self->buf, SZ, 0);
		else
			io_prep_pread(&a.cb, self->fd, self->buf, SZ, 0);
	}

	ASSERT_EQ(0, fdio_call_start(&c, do_submit, &a));
	ASSERT_EQ(0, fts_wait_ops(self->srv, op, 1, 5000)) {
		fdio_answer_all(self->srv);
	}
	returned = fdio_call_wait(&c, 2000);
	fts_get_stats(self->srv, &at);
	if (returned)	/* let the rest arrive, for the figure below */
		fts_wait_outstanding(self->srv, SZ / CHUNK, 300);
	fdio_answer_all(self->srv);
	ASSERT_TRUE(fdio_call_join(&c, 10000));
	ASSERT_EQ(1, c.ret) {
		TH_LOG("%s: %s", api, strerror(c.err));
	}
	res = async_io_wait(&a);
	async_io_free(&a);
	ASSERT_EQ(SZ, res) {
		TH_LOG("%s %s: %ld", api, write ? "write" : "read", res);
	}
	if (write)
		check_server_data(_metadata, self, SZ);
	else
		check_read_data(_metadata, self, SZ);
	snprintf(what, sizeof(what), "%s 2 MiB %s", api,
		 write ? "write" : "read");
	st = check_log(_metadata, self, op, SZ, what);

	n = fts_get_ios(self->srv, &ios);
	fdio_reply_span(ios, n, op, &first, &last);
	free(ios);
	TH_LOG("%s %s while %u requests were held", api,
	       returned ? "returned" : "had not returned after 2 s",
	       at.held);
	EXPECT_TRUE(returned && at.held > 0) {
		TH_LOG("%s() waited for the server", api);
	}
	EXPECT_LT(c.done_ns, first) {
		TH_LOG("%s() returned %.1f ms after the first answer", api,
		       ((double)c.done_ns - first) / 1e6);
	}
	EXPECT_LT(1U, st.max_outstanding);
}

TEST_F(fdio, gap612_aio_read_concurrent)
{
	async_concurrent(_metadata, self, false, false);
}

TEST_F(fdio, gap612_aio_write_concurrent)
{
	async_concurrent(_metadata, self, false, true);
}

TEST_F(fdio, gap612_uring_read_concurrent)
{
	async_concurrent(_metadata, self, true, false);
}

TEST_F(fdio, gap612_uring_write_concurrent)
{
	async_concurrent(_metadata, self, true, true);
}

/* ---- one at a time, on every module -------------------------------------- */

/* A 1 MiB read(), or one io_submit() read, on the opened file: every request
 * was alone with the server, though it would have held several together. */
static void serial_read(struct __test_metadata *_metadata,
			FIXTURE_DATA(fdio) *self, bool aio, const char *what)
{
	const size_t len = 1 << 20;
	struct fts_stats st;
	ssize_t ret;

	if (aio) {
		ret = fdio_aio_rw(self->fd, self->buf, len, 0, false);
	} else {
		/* read(), not pread(): FOPEN_STREAM files are not seekable */
		ret = read(self->fd, self->buf, len);
	}
	ASSERT_EQ((ssize_t)len, ret) {
		TH_LOG("%s: %zd (%s)", what, ret,
		       ret < 0 ? strerror(aio ? -ret : errno) : "short");
	}
	check_read_data(_metadata, self, len);
	st = check_log(_metadata, self, FUSE_READ, len, what);
	EXPECT_EQ(1U, st.max_outstanding);
	EXPECT_EQ(8U, st.reads);
}

TEST_F(fdio, no_async_dio_sync_read_serial)
{
	self->cfg.init_flags &= ~FUSE_ASYNC_DIO;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, false, "read 1 MiB, no FUSE_ASYNC_DIO");
}

TEST_F(fdio, no_async_dio_aio_read_serial)
{
	self->cfg.init_flags &= ~FUSE_ASYNC_DIO;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, true,
		    "io_submit read 1 MiB, no FUSE_ASYNC_DIO");
}

/* A server that did not ask for FUSE_ASYNC_DIO_ALL sees what it always saw */
TEST_F(fdio, no_async_dio_all_sync_read_serial)
{
	self->cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, false,
		    "read 1 MiB, no FUSE_ASYNC_DIO_ALL");
}

TEST_F(fdio, stream_sync_read_serial)
{
	self->cfg.open_flags |= FOPEN_STREAM;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, false, "read 1 MiB, FOPEN_STREAM");
}

TEST_F(fdio, gap73_stream_aio_read_serial)
{
	self->cfg.open_flags |= FOPEN_STREAM;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, true,
		    "io_submit read 1 MiB, FOPEN_STREAM");
}

/* FOPEN_NONSEEKABLE without FOPEN_STREAM: offsets mean nothing either */
TEST_F(fdio, nonseekable_sync_read_serial)
{
	self->cfg.open_flags |= FOPEN_NONSEEKABLE;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, false, "read 1 MiB, FOPEN_NONSEEKABLE");
}

TEST_F(fdio, gap73_nonseekable_aio_read_serial)
{
	self->cfg.open_flags |= FOPEN_NONSEEKABLE;
	hold(self, 4, 100, FTS_ORDER_FIFO);
	start(_metadata, self, SZ, 0);
	serial_read(_metadata, self, true,
		    "io_submit read 1 MiB, FOPEN_NONSEEKABLE");
}

TEST_HARNESS_MAIN
