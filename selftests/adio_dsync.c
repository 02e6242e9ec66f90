// SPDX-License-Identifier: GPL-2.0
/*
 * adio_dsync: libaio O_DIRECT | O_DSYNC writes to a normal file (the server
 * opens it without FOPEN_DIRECT_IO) must reach stable storage before their
 * completion is reported: the kernel sends FUSE_FSYNC for them.
 *
 *  - extending_dsync_writes_fsync: 4 writes of 128 KiB past EOF in one
 *    io_submit() on an fd opened O_DIRECT | O_DSYNC.  The stock module
 *    makes extending AIO writes blocking and calls generic_write_sync()
 *    after each, which sends FUSE_FSYNC (datasync) to the server.  Once
 *    io_getevents() has returned the 4 events, the server must have seen
 *    at least one FSYNC per write, all writes must report 128 KiB and the
 *    data must be in place.  A series that completes such writes
 *    asynchronously without syncing them loses O_DSYNC: no FSYNC at all.
 *  - gap_inside_dsync_writes_fsync: the same 4 writes inside the file (no
 *    extension).  The stock module completes them asynchronously and never
 *    syncs them (generic_write_sync() does nothing with -EIOCBQUEUED): a
 *    gap of its own, which the series closes by syncing every O_DSYNC
 *    async write from its completion work.  Asserted: one FSYNC per write
 *    before the events are reaped, the 4 events report 128 KiB, the data.
 *
 * The test server answers FSYNC with success (an ENOSYS answer would make
 * the kernel set no_fsync and send no more FSYNC).
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
#include "adio_common.h"

#define CH	FDIO_CHUNK
#define NW	4
#define OLD	(8 * CH)	/* initial file size: 1 MiB */

FIXTURE(dsync) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;	/* NW * CH bytes to write */
	void *old;	/* OLD bytes of initial data */
	void *got;
};

FDIO_TRANSPORT_VARIANTS(dsync);

FIXTURE_SETUP(dsync)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	self->cfg.max_background = 32;
	self->cfg.congestion_threshold = 24;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, NW * CH));
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, OLD + NW * CH));
	self->old = malloc(OLD);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, OLD, 0, 61);
	ASSERT_EQ(0, io_setup(16, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, OLD));
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT | O_DSYNC);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
	ASSERT_EQ(OLD, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(dsync)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
	free(self->old);
	free(self->got);
}

/*
 * NW writes of CH at start + i * CH in one io_submit(), reaped within 10 s;
 * returns the FSYNC count the server had when io_getevents() returned.
 */
static unsigned int write_nw(struct __test_metadata *_metadata,
			     FIXTURE_DATA(dsync) *self, off_t start)
{
	struct iocb cbs[NW];
	struct fts_stats st;
	void *bufs[NW];
	off_t off[NW];
	long res[NW];
	uint64_t ms;
	int i, bad;

	fts_fill_pattern(self->buf, NW * CH, start, 62);
	for (i = 0; i < NW; i++) {
		bufs[i] = (char *)self->buf + i * CH;
		off[i] = start + (off_t)i * CH;
		res[i] = -1000;
	}
	EXPECT_EQ(NW, adio_submit(self->ctx, cbs, NW, self->fd, bufs, CH, off,
				  true, &ms));
	EXPECT_EQ(NW, adio_reap(self->ctx, NW, res, 10000));
	fts_get_stats(self->srv, &st);
	TH_LOG("io_submit %llu ms; server: %u WRITEs, %u FSYNC when the events were reaped",
	       (unsigned long long)ms, st.writes, st.ops[FUSE_FSYNC]);
	bad = adio_first_not(res, NW, CH);
	EXPECT_EQ(-1, bad) TH_LOG("write %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	return st.ops[FUSE_FSYNC];
}

/* Server data is old data with buf written at start. */
static void check_data(struct __test_metadata *_metadata,
		       FIXTURE_DATA(dsync) *self, off_t start)
{
	size_t len = start + NW * CH > OLD ? start + NW * CH : OLD;
	long long d;

	ASSERT_EQ(len, fts_data_len(self->srv));
	ASSERT_EQ(len, fts_get_data(self->srv, self->got, len));
	d = fts_first_diff(self->got, self->old, start < OLD ? start : OLD);
	EXPECT_EQ(-1, d) TH_LOG("old data differs at %lld", d);
	d = fts_first_diff((char *)self->got + start, self->buf, NW * CH);
	EXPECT_EQ(-1, d) TH_LOG("new data differs at %lld", start + d);
	if (start + NW * CH < OLD) {
		size_t end = start + NW * CH;

		d = fts_first_diff((char *)self->got + end,
				   (char *)self->old + end, OLD - end);
		EXPECT_EQ(-1, d) TH_LOG("old data differs at %lld", end + d);
	}
}

TEST_F_TIMEOUT(dsync, extending_dsync_writes_fsync, 60)
{
	unsigned int fsyncs = write_nw(_metadata, self, OLD);

	EXPECT_LE(NW, (int)fsyncs)
		TH_LOG("O_DSYNC lost: %u FSYNC for %d extending O_DSYNC writes",
		       fsyncs, NW);
	EXPECT_EQ(OLD + NW * CH, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, OLD);
}

/* A gap of the stock module: it never syncs non-extending async writes */
TEST_F_TIMEOUT(dsync, gap_inside_dsync_writes_fsync, 60)
{
	unsigned int fsyncs = write_nw(_metadata, self, 2 * CH);

	EXPECT_LE(NW, (int)fsyncs)
		TH_LOG("O_DSYNC lost: %u FSYNC for %d non-extending O_DSYNC writes",
		       fsyncs, NW);
	EXPECT_EQ(OLD, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, 2 * CH);
}

TEST_HARNESS_MAIN
