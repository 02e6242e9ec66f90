// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_parallel_write: direct writes on a FOPEN_DIRECT_IO |
 * FOPEN_PARALLEL_DIRECT_WRITES file.
 *
 *  - parallel_writers: two threads write different ranges within the file
 *    at once; the server holds the WRITEs until it has some of both (the
 *    shared inode lock lets them in together), then the data must be right.
 *    Passes on every module.
 *  - gap_aio_write_blocks_cached_open[_odirect]: an io_submit() write
 *    within the file, held by the server.  While it is held, an open of the
 *    same file that the server answers without FOPEN_DIRECT_IO (a caching
 *    open) must wait until the write is answered: page cache IO must not
 *    start while parallel direct writes are in flight.  The stock module
 *    ends the write's uncached io mode when io_submit() returns (O_DIRECT),
 *    so the open goes through at once; without O_DIRECT its io_submit()
 *    does not return while the write is held.
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring, SKIP on kernels without it), where every READ/WRITE must
 * have come over a ring queue (checked at teardown).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	FDIO_SZ
#define CHUNK	FDIO_CHUNK
#define HALF	(SZ / 2)

FIXTURE(pdw) {
	struct fts *srv;
	struct fts_config cfg;
	int fd;
	void *buf;
	void *old;	/* file data before */
	void *ref;	/* what is written */
};

FDIO_TRANSPORT_VARIANTS(pdw);

FIXTURE_SETUP(pdw)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd = -1;
	fdio_config(&self->cfg,
		    FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES);
	self->cfg.transport = variant->transport;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	ASSERT_EQ(0, posix_memalign(&self->ref, 4096, SZ));
	self->old = malloc(SZ);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, SZ, 0, 31);
	fts_fill_pattern(self->ref, SZ, 0, 32);
}

FIXTURE_TEARDOWN(pdw)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->old);
	free(self->ref);
}

/* Hold every WRITE until released; the file has SZ bytes (writes within
 * it take the shared lock); open it. */
static void start(struct __test_metadata *_metadata,
		  FIXTURE_DATA(pdw) *self, int oflags)
{
	self->cfg.policy.hold_count = 100000;
	self->cfg.policy.hold_opcode = FUSE_WRITE;
	/* room for all 16 WRITEs of one io_submit(): at max_background the
	 * kernel waits for answers before it sends more */
	self->cfg.max_background = 32;
	self->cfg.congestion_threshold = 24;
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, SZ));
	self->fd = open(fts_file(self->srv), O_RDWR | oflags);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

static void check_server_data(struct __test_metadata *_metadata,
			      FIXTURE_DATA(pdw) *self)
{
	long long diff;

	ASSERT_EQ((size_t)SZ, fts_data_len(self->srv));
	fts_get_data(self->srv, self->buf, SZ);
	diff = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, diff) {
		TH_LOG("server data differs at byte %lld", diff);
	}
}

/* ---- two writers --------------------------------------------------------- */

struct writer {
	int fd;
	const char *buf;
	off_t off;
};

static long do_pwrite(void *arg)
{
	struct writer *w = arg;

	return pwrite(w->fd, w->buf + w->off, HALF, w->off);
}

/* Received WRITEs come from two pids and some of each were with the server
 * at the same time (received before the other's answer). */
static bool both_in_flight(const struct fts_io *ios, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			if (ios[i].pid != ios[j].pid &&
			    ios[i].recv_ns < ios[j].recv_ns &&
			    (!ios[i].answered ||
			     ios[j].recv_ns < ios[i].reply_ns))
				return true;
	return false;
}

TEST_F(pdw, parallel_writers)
{
	struct writer w[2];
	struct fdio_call c[2];
	struct fts_stats st;
	struct fts_io *ios;
	uint64_t end;
	bool both = false;
	char why[200] = "";
	size_t n;
	int i;

	start(_metadata, self, 0);
	for (i = 0; i < 2; i++) {
		w[i] = (struct writer){ self->fd, self->ref, i * HALF };
		ASSERT_EQ(0, fdio_call_start(&c[i], do_pwrite, &w[i]));
	}
	/* hold until both writers have WRITEs with the server (2 s at most) */
	end = fdio_now_ms() + 2000;
	while (!both && fdio_now_ms() < end) {
		n = fts_get_ios(self->srv, &ios);
		both = fdio_pids(ios, n) >= 2;
		free(ios);
		if (!both)
			fdio_sleep_ms(5);
	}
	fdio_answer_all(self->srv);
	for (i = 0; i < 2; i++) {
		ASSERT_TRUE(fdio_call_join(&c[i], 10000));
		EXPECT_EQ(HALF, c[i].ret) {
			TH_LOG("writer %d: %ld (%s)", i, c[i].ret,
			       strerror(c[i].err));
		}
	}
	check_server_data(_metadata, self);

	fts_get_stats(self->srv, &st);
	n = fts_get_ios(self->srv, &ios);
	EXPECT_EQ(0, fts_check_coverage(ios, n, FUSE_WRITE, 0, SZ, why,
					sizeof(why))) {
		TH_LOG("%s", why);
	}
	TH_LOG("%zu WRITEs from %u threads, max %u outstanding", n,
	       fdio_pids(ios, n), st.max_outstanding);
	EXPECT_TRUE(both && both_in_flight(ios, n)) {
		TH_LOG("the two writers' WRITEs were never with the server together");
	}
	EXPECT_LE(2U, st.max_outstanding);
	free(ios);
}

/* ---- an async write and a caching open ----------------------------------- */

struct aio_submit {
	io_context_t ctx;
	struct iocb cb;
};

static long do_io_submit(void *arg)
{
	struct aio_submit *a = arg;
	struct iocb *cbs[1] = { &a->cb };
	int ret = io_submit(a->ctx, 1, cbs);

	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}

static long do_open(void *arg)
{
	struct fts *srv = arg;

	return open(fts_file(srv), O_RDONLY);
}

static void write_vs_cached_open(struct __test_metadata *_metadata,
				 FIXTURE_DATA(pdw) *self, int oflags)
{
	struct timespec ts = { 10, 0 };
	struct aio_submit a = { 0 };
	struct fdio_call sub, op;
	struct fts_stats st;
	struct io_event ev;
	struct fts_io *ios;
	uint64_t first, last;
	unsigned int opens;
	bool submitted, opened;
	size_t n;
	int ret;

	start(_metadata, self, oflags);
	ASSERT_EQ(0, io_setup(4, &a.ctx));
	io_prep_pwrite(&a.cb, self->fd, self->ref, SZ, 0);
	ASSERT_EQ(0, fdio_call_start(&sub, do_io_submit, &a));
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_WRITE, 1, 5000));
	submitted = fdio_call_wait(&sub, 2000);
	TH_LOG("io_submit %s", submitted ? "returned while the WRITEs were held"
					 : "had not returned after 2 s");

	/* the next open is a caching one */
	fts_set_open_flags(self->srv, 0);
	fts_get_stats(self->srv, &st);
	opens = st.ops[FUSE_OPEN];
	ASSERT_EQ(0, fdio_call_start(&op, do_open, self->srv));
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_OPEN, opens + 1, 5000)) {
		fdio_answer_all(self->srv);
	}
	opened = fdio_call_wait(&op, 300);
	fts_get_stats(self->srv, &st);
	TH_LOG("caching open %s with %u WRITEs held (OPEN answered with flags %#x)",
	       opened ? "returned" : "waited 300 ms", st.held,
	       st.last_open_flags);

	fdio_answer_all(self->srv);
	ASSERT_TRUE(fdio_call_join(&sub, 10000));
	ASSERT_EQ(1, sub.ret) {
		TH_LOG("io_submit: %s", strerror(sub.err));
	}
	ret = io_getevents(a.ctx, 1, 1, &ev, &ts);
	ASSERT_EQ(1, ret);
	io_destroy(a.ctx);
	EXPECT_EQ(SZ, (long)ev.res);
	ASSERT_TRUE(fdio_call_join(&op, 10000)) {
		TH_LOG("the caching open still waits after the write completed");
	}
	ASSERT_LE(0, op.ret) {
		TH_LOG("caching open: %s", strerror(op.err));
	}
	close(op.ret);
	check_server_data(_metadata, self);

	n = fts_get_ios(self->srv, &ios);
	fdio_reply_span(ios, n, FUSE_WRITE, &first, &last);
	free(ios);
	EXPECT_TRUE(submitted) {
		TH_LOG("io_submit() waited for the held WRITEs");
	}
	EXPECT_FALSE(opened) {
		TH_LOG("a caching open went through while WRITEs were held");
	}
	EXPECT_LT(last, op.done_ns) {
		TH_LOG("the caching open returned %.1f ms before the last WRITE answer",
		       ((double)last - op.done_ns) / 1e6);
	}
}

TEST_F(pdw, gap_aio_write_blocks_cached_open)
{
	write_vs_cached_open(_metadata, self, 0);
}

TEST_F(pdw, gap_aio_write_blocks_cached_open_odirect)
{
	write_vs_cached_open(_metadata, self, O_DIRECT);
}

TEST_HARNESS_MAIN
