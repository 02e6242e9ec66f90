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

#define SZ	(64 << 10)

FIXTURE(coh) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int bfd, dfd;
	void *old, *new, *got;
};

FIXTURE_SETUP(coh)
{
	self->bfd = self->dfd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
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

TEST_HARNESS_MAIN
