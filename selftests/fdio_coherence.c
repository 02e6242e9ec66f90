// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_coherence: a write on a file the server opened with FOPEN_DIRECT_IO
 * must drop the page cache over the written range when it completes, not
 * only when it is submitted (Linux commit b359af8275a9, "fuse: Invalidate
 * the page cache after FOPEN_DIRECT_IO write"; xfstests generic/209).
 *
 * The file is opened twice: fd1 with FOPEN_DIRECT_IO (direct IO without
 * O_DIRECT) and fd2 as a normal, cached file.  The server never answers
 * the WRITEs of fd1 until released; while they are held, a buffered read
 * through fd2 fills the page cache from the old data.  Once the write
 * returned (or its AIO event arrived) a buffered read through fd2 must see
 * the new data: the write's completion has to throw away what was cached
 * while it was in flight.  A write that invalidates at submission only
 * leaves the old data cached.
 *
 *  - write_read_during: write() of 256 KiB over old data.
 *  - append_read_during: write() of 256 KiB on an O_APPEND fd1 to a file
 *    whose old size ends inside a page; the read during the write caches
 *    that page with zeroes past the old end of file.
 *  - aio_write_read_during: as write_read_during, with libaio io_submit().
 *  - aio_append_read_during: as append_read_during, with libaio.
 *
 * Stock runs all of them serially (AIO without O_DIRECT on these files too,
 * inside io_submit()) and invalidates at the end: all pass.
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

#define SZ	(256 << 10)		/* the write: 2 WRITE requests */
#define OLD_APPEND	((64 << 10) + 512)	/* old size for the appends */

FIXTURE(coh) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd1, fd2;
	void *old, *new, *want, *got;
	struct fdio_call call;
};

FDIO_TRANSPORT_VARIANTS(coh);

FIXTURE_SETUP(coh)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd1 = self->fd2 = -1;
	self->ctx = 0;
	self->srv = NULL;
	memset(&self->call, 0, sizeof(self->call));
	fdio_config(&self->cfg, FOPEN_DIRECT_IO);
	self->cfg.transport = variant->transport;
	self->old = malloc(SZ);
	self->new = malloc(SZ);
	self->want = malloc(2 * SZ);
	self->got = malloc(2 * SZ);
	ASSERT_NE(NULL, self->old);
	ASSERT_NE(NULL, self->new);
	ASSERT_NE(NULL, self->want);
	ASSERT_NE(NULL, self->got);
	fts_fill_pattern(self->old, SZ, 0, 101);
	fts_fill_pattern(self->new, SZ, 0, 102);
}

FIXTURE_TEARDOWN(coh)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->srv) {
		/* let a blocked write go before anything is freed */
		fdio_answer_all(self->srv);
		fts_release_stalled(self->srv, EIO);
		if (!fdio_call_join(&self->call, 10000))
			TH_LOG("the write did not return");
	}
	if (self->fd1 >= 0)
		close(self->fd1);
	if (self->fd2 >= 0)
		close(self->fd2);
	if (self->ctx)
		io_destroy(self->ctx);
	if (self->srv)
		fts_stop(self->srv);
	free(self->old);
	free(self->new);
	free(self->want);
	free(self->got);
}

struct wr {
	FIXTURE_DATA(coh) *self;
	bool aio;
	off_t off;
	struct iocb cb;
};

/* In a helper thread: the write() itself, or io_submit() (which may also
 * block until the WRITEs are answered, on the stock module). */
static long do_write(void *arg)
{
	struct wr *w = arg;
	struct iocb *cbp = &w->cb;
	long ret;

	if (!w->aio)
		return pwrite(w->self->fd1, w->self->new, SZ, w->off);
	io_prep_pwrite(&w->cb, w->self->fd1, w->self->new, SZ, w->off);
	ret = io_submit(w->self->ctx, 1, &cbp);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}

static void run(struct __test_metadata *_metadata, FIXTURE_DATA(coh) *self,
		bool append, bool aio)
{
	size_t oldlen = append ? OLD_APPEND : SZ;
	size_t total = append ? OLD_APPEND + SZ : SZ;
	off_t woff = append ? OLD_APPEND : 0;
	/* what the read during the write caches: the written range, or for
	 * an append the page holding the old end of file */
	off_t roff = append ? (OLD_APPEND & ~4095L) : 0;
	size_t rlen = append ? 4096 : SZ;
	struct timespec ts = { 20, 0 };
	struct io_event ev;
	/* static: the helper thread may outlive a failed run() */
	static struct wr w;
	ssize_t r;
	long res;
	long long d;

	/* WRITEs are never answered, until released */
	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_WRITE,
		.action = { .act = FTS_ACT_NO_REPLY },
	};
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, oldlen));
	memcpy(self->want, self->old, oldlen);
	memcpy((char *)self->want + woff, self->new, SZ);

	fts_set_open_flags(self->srv, FOPEN_DIRECT_IO);
	self->fd1 = open(fts_file(self->srv),
			 O_WRONLY | (append ? O_APPEND : 0));
	ASSERT_LE(0, self->fd1);
	fts_set_open_flags(self->srv, 0);
	self->fd2 = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, self->fd2);
	if (aio)
		ASSERT_EQ(0, io_setup(4, &self->ctx));

	w = (struct wr){ .self = self, .aio = aio, .off = woff };
	ASSERT_EQ(0, fdio_call_start(&self->call, do_write, &w));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 10000));
	/*
	 * Read once the write is fully submitted: where all WRITEs go out at
	 * once, wait for the second (the serial stock path sends one at a
	 * time, and this times out), then a little more for the submission
	 * to return, so that an invalidation done at submission is over.
	 */
	fts_wait_outstanding(self->srv, 2, 1000);
	fdio_sleep_ms(100);

	/* the server has (part of) the write: cache the old data */
	r = pread(self->fd2, self->got, rlen, roff);
	ASSERT_LT(0, r);
	d = fts_first_diff(self->got, (char *)self->old + roff,
			   append ? oldlen - roff : rlen);
	TH_LOG("buffered read during the write: %zd bytes, %s", r,
	       d == -1 ? "old data" : "not the old data");

	/* answer the write */
	fdio_answer_all(self->srv);
	fts_release_stalled(self->srv, 0);
	ASSERT_TRUE(fdio_call_join(&self->call, 20000)) {
		TH_LOG("the write did not return after its WRITEs were answered");
	}
	if (aio) {
		ASSERT_EQ(1, self->call.ret) {
			TH_LOG("io_submit: %s", strerror(self->call.err));
		}
		ASSERT_EQ(1, io_getevents(self->ctx, 1, 1, &ev, &ts));
		res = (long)ev.res;
	} else {
		res = self->call.ret;
		if (res < 0)
			TH_LOG("write: %s", strerror(self->call.err));
	}
	ASSERT_EQ(SZ, res);

	/* the server has the new data ... */
	ASSERT_EQ(total, fts_get_data(self->srv, self->got, 2 * SZ));
	ASSERT_EQ(-1, fts_first_diff(self->got, self->want, total));
	/* ... and so must a buffered read */
	memset(self->got, 0, 2 * SZ);
	r = pread(self->fd2, self->got, total, 0);
	EXPECT_EQ((ssize_t)total, r);
	d = fts_first_diff(self->got, self->want, total);
	EXPECT_EQ(-1, d) {
		TH_LOG("buffered read after the write: stale from byte %lld (page %lld)",
		       d, d / 4096);
	}
}

TEST_F_TIMEOUT(coh, write_read_during, 60)
{
	run(_metadata, self, false, false);
}

TEST_F_TIMEOUT(coh, append_read_during, 60)
{
	run(_metadata, self, true, false);
}

TEST_F_TIMEOUT(coh, aio_write_read_during, 60)
{
	run(_metadata, self, false, true);
}

TEST_F_TIMEOUT(coh, aio_append_read_during, 60)
{
	run(_metadata, self, true, true);
}

TEST_HARNESS_MAIN
