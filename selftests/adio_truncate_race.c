// SPDX-License-Identifier: GPL-2.0
/*
 * adio_truncate_race: the truncate-back of a failed extending direct write
 * must not cut off a concurrent extending AIO write that completed
 * successfully meanwhile.
 *
 *  - failed_write_keeps_completed_aio_extension: a normal file (no
 *    FOPEN_DIRECT_IO) of 1 MiB, opened O_DIRECT.  W1, a libaio write of
 *    1 MiB at 1 MiB (extending), is held by the server (its WRITEs are not
 *    answered).  While W1 is in flight, another thread does W2, a sync
 *    pwrite() of 1 MiB at 3 MiB, which the server fails with EIO, so W2
 *    truncates the file back.  After ~500 ms the server answers W1.
 *    Expected: W1's event reports 1 MiB, W2 returns -1/EIO, and the file
 *    ends at 2 MiB with W1's data in [1M, 2M), in the kernel (st_size, an
 *    O_DIRECT read back) and at the server; no SETATTR(size) to 1 MiB.
 *
 *    Why: the stock module makes W1 blocking and holds the inode lock
 *    during it, so W2 starts after W1 raised i_size to 2 MiB and truncates
 *    to 2 MiB.  If W1 completes asynchronously, W2 runs while W1 is in
 *    flight; a truncate-back that picks its target size (1 MiB) before it
 *    waits for W1 and then sends SETATTR(1 MiB) after W1 raised i_size
 *    destroys the 1 MiB that W1 reported written.
 *
 * Everything that may block is done in helper threads and every wait is
 * bounded: W1's io_submit() (blocking on stock), W2's pwrite().
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

#define MIB	(1 << 20)
#define OLD	MIB		/* initial size */
#define W1_OFF	MIB		/* [1M, 2M): held, then answered */
#define W2_OFF	(3 * MIB)	/* [3M, 4M): fails with EIO */
#define WLEN	MIB
#define W1_REQS	(WLEN / FDIO_CHUNK)

/*
 * Policy hook (server process): never answer WRITEs in W1's range (until
 * fts_release_stalled()), fail those in W2's range with EIO.
 */
static void race_hook(void *arg, const struct fts_io *io,
		      struct fts_action *action)
{
	if (io->opcode != FUSE_WRITE)
		return;
	if (io->offset >= W1_OFF && io->offset < W1_OFF + WLEN) {
		action->act = FTS_ACT_NO_REPLY;
	} else if (io->offset >= W2_OFF) {
		action->act = FTS_ACT_FAIL;
		action->err = EIO;
	}
}

FIXTURE(race) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *w1, *w2, *old, *got;
	struct iocb cb;
	struct fdio_call c1, c2;
};

FDIO_TRANSPORT_VARIANTS(race);

FIXTURE_SETUP(race)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	/* W1 and W2 (8 requests each) in flight at once, no slot waits */
	self->cfg.max_background = 32;
	self->cfg.congestion_threshold = 24;
	self->cfg.policy.hook = race_hook;
	ASSERT_EQ(0, posix_memalign(&self->w1, 4096, WLEN));
	ASSERT_EQ(0, posix_memalign(&self->w2, 4096, WLEN));
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, 4 * MIB));
	self->old = malloc(OLD);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, OLD, 0, 71);
	fts_fill_pattern(self->w1, WLEN, W1_OFF, 72);
	fts_fill_pattern(self->w2, WLEN, W2_OFF, 73);
	ASSERT_EQ(0, io_setup(4, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, OLD));
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
	ASSERT_EQ(OLD, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(race)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	/* let anything still held go, so that the helpers can return */
	if (self->srv)
		fts_release_stalled(self->srv, 0);
	fdio_call_join(&self->c1, 5000);
	fdio_call_join(&self->c2, 5000);
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->w1);
	free(self->w2);
	free(self->old);
	free(self->got);
}

/* W1: io_submit() of the extending write (blocks until done on stock). */
static long submit_w1(void *arg)
{
	FIXTURE_DATA(race) *self = arg;
	struct iocb *p = &self->cb;

	io_prep_pwrite(p, self->fd, self->w1, WLEN, W1_OFF);
	return io_submit(self->ctx, 1, &p);
}

/* W2: sync O_DIRECT pwrite() that the server fails. */
static long write_w2(void *arg)
{
	FIXTURE_DATA(race) *self = arg;

	return pwrite(self->fd, self->w2, WLEN, W2_OFF);
}

TEST_F_TIMEOUT(race, failed_write_keeps_completed_aio_extension, 90)
{
	struct timespec ts = { 10, 0 };
	struct io_event ev;
	struct fts_stats st;
	long long size, d;
	bool w2_early;
	ssize_t n;
	int r;

	ASSERT_EQ(0, fdio_call_start(&self->c1, submit_w1, self));
	/* the server has all of W1's WRITEs (and holds them) */
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_WRITE, W1_REQS, 10000));

	ASSERT_EQ(0, fdio_call_start(&self->c2, write_w2, self));
	/*
	 * If W2 is not serialised behind W1 its WRITEs arrive (and fail)
	 * now; on stock they cannot before W1 is answered, so this wait ends
	 * by its timeout there.  Then give W2 time to get to its truncate.
	 */
	w2_early = !fts_wait_ops(self->srv, FUSE_WRITE, 2 * W1_REQS, 2000);
	fdio_sleep_ms(500);
	fts_get_stats(self->srv, &st);
	TH_LOG("before W1 is answered: W2's WRITEs %s, W2 %s, %u SETATTR(size)",
	       w2_early ? "sent" : "not sent",
	       fdio_call_done(&self->c2) ? "returned" : "in progress",
	       st.setattr_sizes);
	EXPECT_EQ(W1_REQS, (int)st.stalled);

	fts_release_stalled(self->srv, 0);

	/* W1 */
	ASSERT_TRUE(fdio_call_join(&self->c1, 10000))
		TH_LOG("io_submit of W1 did not return");
	ASSERT_EQ(1, self->c1.ret) TH_LOG("io_submit: %s",
					  strerror(-self->c1.ret));
	r = io_getevents(self->ctx, 1, 1, &ev, &ts);
	ASSERT_EQ(1, r) TH_LOG("W1's event did not come: %d", r);
	EXPECT_EQ(WLEN, (long)ev.res);

	/* W2 */
	ASSERT_TRUE(fdio_call_join(&self->c2, 10000))
		TH_LOG("pwrite of W2 did not return");
	EXPECT_EQ(-1, self->c2.ret);
	EXPECT_EQ(EIO, self->c2.err);

	fts_get_stats(self->srv, &st);
	size = adio_size(fts_file(self->srv));
	TH_LOG("W1 %ld, W2 %ld (%s); %u SETATTR(size), last %llu; st_size %lld, server data %zu",
	       (long)ev.res, self->c2.ret, strerror(self->c2.err),
	       st.setattr_sizes, (unsigned long long)st.last_setattr_size,
	       size, fts_data_len(self->srv));
	if (st.setattr_sizes) {
		EXPECT_NE((uint64_t)OLD, st.last_setattr_size)
			TH_LOG("W2's truncate-back cut off W1, which had completed");
	}
	EXPECT_EQ(W1_OFF + WLEN, size);

	/* the server's data: old data, then W1's */
	ASSERT_EQ((size_t)(W1_OFF + WLEN), fts_data_len(self->srv));
	ASSERT_EQ((size_t)(W1_OFF + WLEN),
		  fts_get_data(self->srv, self->got, 4 * MIB));
	d = fts_first_diff(self->got, self->old, OLD);
	EXPECT_EQ(-1, d) TH_LOG("server: old data differs at %lld", d);
	d = fts_first_diff((char *)self->got + W1_OFF, self->w1, WLEN);
	EXPECT_EQ(-1, d) TH_LOG("server: W1's data differs at %lld",
				W1_OFF + d);

	/* and what the kernel reads back */
	memset(self->got, 0, WLEN);
	n = pread(self->fd, self->got, WLEN, W1_OFF);
	EXPECT_EQ(WLEN, n) TH_LOG("read back [1M, 2M): %zd (%s)", n,
				  n < 0 ? strerror(errno) : "short");
	if (n == WLEN) {
		d = fts_first_diff(self->got, self->w1, WLEN);
		EXPECT_EQ(-1, d) TH_LOG("read back: W1's data differs at %lld",
					W1_OFF + d);
	}
}

TEST_HARNESS_MAIN
