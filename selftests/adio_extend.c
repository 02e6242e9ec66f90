// SPDX-License-Identifier: GPL-2.0
/*
 * adio_extend: libaio O_DIRECT writes past EOF of a normal file (the server
 * opens it without FOPEN_DIRECT_IO).
 *
 *  - gap_extending_writes_do_not_wait: 8 writes of 128 KiB at increasing
 *    offsets past EOF in one io_submit(), the server holds the WRITEs
 *    until all 8 are there (or 3 s passed).  io_submit() must return
 *    before the server answers anything,
 *    the server must have all 8 at once, and once they completed the file
 *    ends at the furthest end with the data in place.  The stock module
 *    makes each extending write blocking: io_submit() returns after 8 x
 *    3 s and the server sees one WRITE at a time.
 *  - failed_last_extending_write_truncated: the same 8 writes, the server
 *    fails the last one (highest offset) with EIO and answers the held
 *    batch in reverse order.  Its event is -EIO, the others succeed, a
 *    SETATTR(size) to the end of the 7th write reaches the server and the
 *    file ends there.  (Same outcome on stock, where the writes go one at a
 *    time: a plain case.)
 *  - failed_first_extending_write_keeps_later: 20 rounds of the 8 writes,
 *    the server fails the first (lowest offset) one and answers all 8 at once in arrival order.  The failed
 *    write's truncate must wait for the 7 others and so keep the file at
 *    the furthest end they wrote, in the kernel and at the server.  Stresses the window between the end of the
 *    in-flight count and the i_size update of the last write.
 *  - failed_extending_write_prefix_truncated: one 512 KiB extending write
 *    (4 WRITEs), the server fails the 2nd.  The WRITEs after it store data
 *    past the failure; the event reports the written prefix (or -EIO), and
 *    the file is cut back to the old size plus what was reported: SETATTR
 *    with that size, no data beyond it at the server.
 *  - failed_extending_write_old_size: the same, the server fails the 1st
 *    WRITE: -EIO and the file is back at its old size.
 *  - append_writes: 6 O_APPEND writes of 64 KiB, one io_submit() each: the
 *    file is the old data followed by the 6 buffers in order.
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring: SKIP on kernels without it), where every WRITE must have
 * come over a ring queue.
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
#define OLD	(2 * CH)	/* initial file size */
#define NW	8
#define BIG	(4 * CH)

FIXTURE(ext) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;	/* NW * CH (or BIG) bytes to write */
	void *old;	/* OLD bytes of initial data */
	void *got;
};

FDIO_TRANSPORT_VARIANTS(ext);

FIXTURE_SETUP(ext)
{
	self->fd = -1;
	self->ctx = 0;
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	self->cfg.max_background = 32;
	self->cfg.congestion_threshold = 24;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, NW * CH));
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, OLD + NW * CH));
	self->old = malloc(OLD);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, OLD, 0, 41);
	fts_fill_pattern(self->buf, NW * CH, OLD, 42);
	ASSERT_EQ(0, io_setup(64, &self->ctx));
}

FIXTURE_TEARDOWN(ext)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
	free(self->old);
	free(self->got);
}

static void start(struct __test_metadata *_metadata, FIXTURE_DATA(ext) *self,
		  int oflags)
{
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, OLD));
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT | oflags);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
	/* the kernel learns the size; then count only what follows */
	ASSERT_EQ(OLD, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

/* Server data [0, len) is old data then buf[0, len - OLD), which came
 * through the transport of the variant. */
static void check_data(struct __test_metadata *_metadata,
		       FIXTURE_DATA(ext) *self, size_t len)
{
	long long d;

	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
	ASSERT_EQ(len, fts_data_len(self->srv));
	ASSERT_EQ(len, fts_get_data(self->srv, self->got, len));
	d = fts_first_diff(self->got, self->old, OLD);
	EXPECT_EQ(-1, d) TH_LOG("old data differs at %lld", d);
	if (len > OLD) {
		d = fts_first_diff((char *)self->got + OLD, self->buf,
				   len - OLD);
		EXPECT_EQ(-1, d) TH_LOG("new data differs at %lld", OLD + d);
	}
}

static uint64_t fail_off;	/* copied into the server at fork */

/* NW writes of CH at OLD + i * CH, one io_submit(). */
static long submit_nw(FIXTURE_DATA(ext) *self, uint64_t *ms)
{
	struct iocb cbs[NW];
	void *bufs[NW];
	off_t off[NW];
	int i;

	for (i = 0; i < NW; i++) {
		bufs[i] = (char *)self->buf + i * CH;
		off[i] = OLD + (off_t)i * CH;
	}
	return adio_submit(self->ctx, cbs, NW, self->fd, bufs, CH, off, true,
			   ms);
}

TEST_F_TIMEOUT(ext, gap_extending_writes_do_not_wait, 60)
{
	long res[NW];
	struct fts_stats st;
	uint64_t ms;
	long ret;
	int bad;

	/* the hold ends once all 8 are held; 3 s keeps a loaded host safe */
	adio_hold(&self->cfg.policy, FUSE_WRITE, 3000);
	start(_metadata, self, 0);

	ret = submit_nw(self, &ms);
	fts_get_stats(self->srv, &st);
	TH_LOG("io_submit of %d extending writes: %ld in %llu ms, %u WRITEs answered by then",
	       NW, ret, (unsigned long long)ms, st.writes - st.outstanding);
	ASSERT_EQ(NW, ret);
	EXPECT_EQ(st.writes, st.outstanding)
		TH_LOG("io_submit waited for the server's answers");
	EXPECT_EQ(0, fts_wait_outstanding(self->srv, NW, 2000));

	ASSERT_EQ(NW, adio_reap(self->ctx, NW, res, 10000));
	bad = adio_first_not(res, NW, CH);
	EXPECT_EQ(-1, bad) TH_LOG("write %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	fts_get_stats(self->srv, &st);
	TH_LOG("server: %u WRITEs, max outstanding %u", st.writes,
	       st.max_outstanding);
	EXPECT_EQ(NW, (int)st.writes);
	EXPECT_EQ(NW, (int)st.max_outstanding);
	EXPECT_EQ(OLD + NW * CH, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, OLD + NW * CH);
}

TEST_F_TIMEOUT(ext, failed_last_extending_write_truncated, 60)
{
	long res[NW];
	struct fts_stats st;
	uint64_t ms;
	int bad;

	adio_hold(&self->cfg.policy, FUSE_WRITE, 150);
	self->cfg.policy.order = FTS_ORDER_REVERSE;
	fail_off = OLD + (NW - 1) * CH;
	self->cfg.policy.hook = adio_fail_write_at;
	self->cfg.policy.hook_arg = &fail_off;
	start(_metadata, self, 0);

	ASSERT_EQ(NW, submit_nw(self, &ms));
	ASSERT_EQ(NW, adio_reap(self->ctx, NW, res, 10000));
	bad = adio_first_not(res, NW - 1, CH);
	EXPECT_EQ(-1, bad) TH_LOG("write %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	EXPECT_EQ(-EIO, res[NW - 1]);
	fts_get_stats(self->srv, &st);
	TH_LOG("io_submit %llu ms; max outstanding %u; %u SETATTR(size), last %llu",
	       (unsigned long long)ms, st.max_outstanding, st.setattr_sizes,
	       (unsigned long long)st.last_setattr_size);
	EXPECT_LE(1, (int)st.setattr_sizes);
	EXPECT_EQ((uint64_t)OLD + (NW - 1) * CH, st.last_setattr_size);
	EXPECT_EQ(OLD + (NW - 1) * CH, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, OLD + (NW - 1) * CH);
}

#define ROUNDS	20

TEST_F_TIMEOUT(ext, failed_first_extending_write_keeps_later, 120)
{
	struct fts_stats st;
	long res[NW];
	uint64_t ms;
	long long size, want;
	int r, i, nfail, lost = 0;

	self->cfg.policy.hold_count = NW;
	self->cfg.policy.hold_timeout_ms = 50;
	self->cfg.policy.hold_opcode = FUSE_WRITE;
	fail_off = OLD;
	self->cfg.policy.hook = adio_fail_write_at;
	self->cfg.policy.hook_arg = &fail_off;
	start(_metadata, self, 0);

	for (r = 0; r < ROUNDS; r++) {
		ASSERT_EQ(NW, submit_nw(self, &ms));
		ASSERT_EQ(NW, adio_reap(self->ctx, NW, res, 10000));
		for (i = 0, nfail = 0, want = OLD; i < NW; i++) {
			if (res[i] == -EIO)
				nfail++;
			else if (res[i] == CH)
				want = OLD + (long long)(i + 1) * CH;
		}
		EXPECT_EQ(1, nfail) TH_LOG("round %d: %ld %ld %ld %ld %ld %ld %ld %ld",
					   r, res[0], res[1], res[2], res[3],
					   res[4], res[5], res[6], res[7]);
		fts_get_stats(self->srv, &st);
		size = adio_size(fts_file(self->srv));
		if (size != want || (long long)fts_data_len(self->srv) != want) {
			TH_LOG("round %d: %u SETATTR(size), last %llu; size %lld, server data %zu; want %lld",
			       r, st.setattr_sizes,
			       (unsigned long long)st.last_setattr_size, size,
			       fts_data_len(self->srv), want);
			lost++;
		}
		if (!r)
			FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
		/* back to the old size for the next round */
		ASSERT_EQ(0, ftruncate(self->fd, OLD));
		ASSERT_EQ((size_t)OLD, fts_data_len(self->srv));
		fts_reset(self->srv);
	}
	EXPECT_EQ(0, lost) TH_LOG("%d of %d rounds cut a completed write off",
				  lost, ROUNDS);
}

/* One BIG extending write at OLD; the server fails its nth WRITE (by
 * offset: the WRITEs may arrive in any order). */
static void big_fail(struct __test_metadata *_metadata,
		     FIXTURE_DATA(ext) *self, unsigned int nth)
{
	struct fts_stats st;
	struct iocb cb;
	void *bufs[1] = { self->buf };
	off_t off[1] = { OLD };
	uint64_t ms;
	long res[1], want;

	fail_off = OLD + (uint64_t)(nth - 1) * CH;
	self->cfg.policy.hook = adio_fail_write_at;
	self->cfg.policy.hook_arg = &fail_off;
	start(_metadata, self, 0);

	ASSERT_EQ(1, adio_submit(self->ctx, &cb, 1, self->fd, bufs, BIG, off,
				 true, &ms));
	ASSERT_EQ(1, adio_reap(self->ctx, 1, res, 10000));
	fts_get_stats(self->srv, &st);
	TH_LOG("event %ld; server: %u WRITEs, %llu bytes stored, %u SETATTR(size), last %llu",
	       res[0], st.writes, (unsigned long long)st.bytes_written,
	       st.setattr_sizes, (unsigned long long)st.last_setattr_size);
	/* up to the failed one at least; sending may stop once it failed */
	EXPECT_LE((int)nth, (int)st.writes);
	EXPECT_GE(BIG / CH, (int)st.writes);
	/* the error, or the prefix before the failed WRITE */
	if (res[0] < 0) {
		EXPECT_EQ(-EIO, res[0]);
	} else {
		EXPECT_EQ((long)(nth - 1) * CH, res[0]);
	}
	want = OLD + (res[0] > 0 ? res[0] : 0);
	EXPECT_LE(1, (int)st.setattr_sizes);
	EXPECT_EQ((uint64_t)want, st.last_setattr_size);
	EXPECT_EQ(want, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, want);
}

TEST_F_TIMEOUT(ext, failed_extending_write_prefix_truncated, 30)
{
	big_fail(_metadata, self, 2);
}

TEST_F_TIMEOUT(ext, failed_extending_write_old_size, 30)
{
	big_fail(_metadata, self, 1);
}

#define NA	6
#define ALEN	(64 << 10)

TEST_F_TIMEOUT(ext, append_writes, 30)
{
	struct iocb cbs[NA];
	struct fts_stats st;
	long res[NA];
	uint64_t ms, total = 0;
	int i, bad;

	start(_metadata, self, O_APPEND);
	for (i = 0; i < NA; i++) {
		struct iocb *p = &cbs[i];
		uint64_t t0 = fdio_now_ns();

		/* the offset is ignored: O_APPEND */
		io_prep_pwrite(p, self->fd, (char *)self->buf + i * ALEN,
			       ALEN, 0);
		p->data = (void *)(uintptr_t)i;
		ASSERT_EQ(1, io_submit(self->ctx, 1, &p));
		ms = (fdio_now_ns() - t0) / 1000000;
		total += ms;
	}
	ASSERT_EQ(NA, adio_reap(self->ctx, NA, res, 10000));
	bad = adio_first_not(res, NA, ALEN);
	EXPECT_EQ(-1, bad) TH_LOG("append %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	fts_get_stats(self->srv, &st);
	TH_LOG("%d appends, io_submit %llu ms in all, max outstanding %u",
	       NA, (unsigned long long)total, st.max_outstanding);
	EXPECT_EQ(OLD + NA * ALEN, adio_size(fts_file(self->srv)));
	check_data(_metadata, self, OLD + NA * ALEN);
}

TEST_HARNESS_MAIN
