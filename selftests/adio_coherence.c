// SPDX-License-Identifier: GPL-2.0
/*
 * adio_coherence: buffered reads around a libaio O_DIRECT write to a normal
 * file (the xfstests generic/451 pattern).
 *
 *  - read_before_aio_write: fill the page cache with a buffered read, then
 *    write new data with libaio O_DIRECT on another fd and wait for it: a
 *    buffered read returns the new data.  (The submission drops the cached
 *    pages before it sends the WRITEs: passes on every module.)
 *  - gap612_read_during_aio_write: the same, but the server holds the WRITE
 *    for 300 ms and a buffered read while it is held caches the old data
 *    again; once the write's event arrived a buffered read must return the
 *    new data.  6.12's stock module invalidates only at submission, so the
 *    pages read in between stay and the read returns stale data; 7.3's
 *    invalidates again at completion (gap612_).
 *  - gap_read_during_failed_sync_write: a sync O_DIRECT write of 256 KiB
 *    (two WRITEs of 128 KiB), the server holds both; a buffered read of
 *    the second half while they are held caches the old data; then the
 *    first WRITE fails with EIO and the second succeeds.  The write
 *    returns -EIO (nothing of it contiguous from its start), but the
 *    server has the new second half, and a buffered read of it must
 *    return that, not the pages cached during the write: what was sent
 *    past the failure is invalidated too (generic_file_direct_write()
 *    drops only the bytes the write returns).  Stock keeps them.
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring, SKIP on kernels without it), where every READ/WRITE must
 * have come over a ring queue (checked at teardown); the uring variant
 * keeps the test on one CPU, so that the requests reach the server in the
 * order they were sent, on one ring queue.
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
#include "adio_common.h"

#define FSZ	(256 << 10)	/* gap_read_during_failed_sync_write */
#define HALF	(FSZ / 2)

#define SZ	(64 << 10)

FIXTURE(coh) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int bfd, dfd;
	void *old, *new, *got;
};

FDIO_TRANSPORT_VARIANTS(coh);

FIXTURE_SETUP(coh)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->bfd = self->dfd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	/* requests in the order sent: the cases pick the nth one */
	if (variant->transport == FTS_TRANSPORT_URING)
		ASSERT_LE(0, fdio_one_queue());
	ASSERT_EQ(0, posix_memalign(&self->new, 4096, SZ));
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, SZ));
	self->old = malloc(SZ);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, SZ, 0, 81);
	fts_fill_pattern(self->new, SZ, 0, 82);
	ASSERT_EQ(0, io_setup(4, &self->ctx));
}

FIXTURE_TEARDOWN(coh)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->bfd >= 0)
		close(self->bfd);
	if (self->dfd >= 0)
		close(self->dfd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->old);
	free(self->new);
	free(self->got);
}

static void run(struct __test_metadata *_metadata, FIXTURE_DATA(coh) *self,
		bool read_during)
{
	struct iocb cb, *cbp = &cb;
	struct io_event ev;
	struct timespec ts = { 10, 0 };
	long long d;

	if (read_during)
		adio_hold(&self->cfg.policy, FUSE_WRITE, 300);
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, SZ));
	self->bfd = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, self->bfd);
	self->dfd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->dfd);

	ASSERT_EQ(SZ, pread(self->bfd, self->got, SZ, 0));
	ASSERT_EQ(-1, fts_first_diff(self->got, self->old, SZ));

	io_prep_pwrite(&cb, self->dfd, self->new, SZ, 0);
	ASSERT_EQ(1, io_submit(self->ctx, 1, &cbp));
	if (read_during) {
		ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 2000));
		ASSERT_EQ(SZ, pread(self->bfd, self->got, SZ, 0));
		TH_LOG("buffered read during the write: %s data",
		       fts_first_diff(self->got, self->old, SZ) == -1 ?
		       "old" : "other");
	}
	ASSERT_EQ(1, io_getevents(self->ctx, 1, 1, &ev, &ts));
	ASSERT_EQ(SZ, (long)ev.res);

	ASSERT_EQ(SZ, pread(self->bfd, self->got, SZ, 0));
	d = fts_first_diff(self->got, self->new, SZ);
	EXPECT_EQ(-1, d) TH_LOG("buffered read after the write: stale at byte %lld (%s)",
				d, fts_first_diff(self->got, self->old, SZ) == -1 ?
				"all old data" : "mixed");
	fts_get_data(self->srv, self->got, SZ);
	EXPECT_EQ(-1, fts_first_diff(self->got, self->new, SZ));
}

TEST_F_TIMEOUT(coh, read_before_aio_write, 30)
{
	run(_metadata, self, false);
}

TEST_F_TIMEOUT(coh, gap612_read_during_aio_write, 30)
{
	run(_metadata, self, true);
}

struct sync_write {
	int fd;
	void *buf;
};

static uint64_t fail_off;	/* 0: the first half; copied into the server at fork */

static long do_sync_write(void *arg)
{
	struct sync_write *w = arg;

	return pwrite(w->fd, w->buf, FSZ, 0);
}

TEST_F_TIMEOUT(coh, gap_read_during_failed_sync_write, 30)
{
	/* static: a thread left blocked by a failed ASSERT writes to it */
	static struct sync_write w;
	static struct fdio_call call;
	unsigned char *old, *new, *got;
	long long d;

	old = malloc(FSZ);
	got = malloc(FSZ);
	ASSERT_EQ(0, posix_memalign((void **)&new, 4096, FSZ));
	ASSERT_NE(NULL, old);
	ASSERT_NE(NULL, got);
	fts_fill_pattern(old, FSZ, 0, 91);
	fts_fill_pattern(new, FSZ, 0, 92);
	adio_hold(&self->cfg.policy, FUSE_WRITE, 0);
	/*
	 * Fail the WRITE at offset 0, not the first WRITE to arrive: the two
	 * requests of the write are sent together and two server threads may
	 * log them in either order.  Failing the second half instead makes
	 * the write short, and generic_file_direct_write()'s buffered
	 * fallback then writes the rest: 1 run in 15 returned the whole 256
	 * KiB with an nth rule.
	 */
	self->cfg.policy.hook = adio_fail_write_at;
	self->cfg.policy.hook_arg = &fail_off;
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, old, FSZ));
	self->bfd = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, self->bfd);
	self->dfd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->dfd);

	w.fd = self->dfd;
	w.buf = new;
	ASSERT_EQ(0, fdio_call_start(&call, do_sync_write, &w));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 2, 3000));
	ASSERT_EQ(HALF, pread(self->bfd, got, HALF, HALF));
	EXPECT_EQ(-1, fts_first_diff(got, old + HALF, HALF));
	fts_release_held(self->srv);
	fdio_answer_all(self->srv);
	ASSERT_TRUE(fdio_call_join(&call, 10000));
	EXPECT_EQ(-1, call.ret);
	EXPECT_EQ(EIO, call.err);

	fts_get_data(self->srv, got, FSZ);
	ASSERT_EQ(-1, fts_first_diff(got + HALF, new + HALF, HALF)) {
		TH_LOG("the server does not have the second half written");
	}
	ASSERT_EQ(HALF, pread(self->bfd, got, HALF, HALF));
	d = fts_first_diff(got, new + HALF, HALF);
	EXPECT_EQ(-1, d) TH_LOG("buffered read after the failed write: stale at byte %lld (%s)",
				d, fts_first_diff(got, old + HALF, HALF) == -1 ?
				"the old data cached during the write" : "mixed");
	free(old);
	free(new);
	free(got);
}

TEST_HARNESS_MAIN
