// SPDX-License-Identifier: GPL-2.0
/*
 * adio_bgqueue: AIO submission at max_background.
 *
 *  - gap_submit_past_max_background: max_background 4 at INIT; 64 libaio
 *    O_DIRECT reads of 4 KiB in one io_submit(), the server answers each
 *    READ 100 ms after it arrived (16 rounds of 4: 1.6 s).  io_submit()
 *    must return within 800 ms, the server must never see more than 4
 *    READs at once, and all 64 reads must return the right data.  The
 *    stock module sleeps in io_submit() whenever 4 requests are in flight,
 *    so it returns only when the last round was sent (>= 1.5 s).
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

#define NR	64
#define BS	4096
#define SZ	(NR * BS)
#define DELAY	100

FIXTURE(bgq) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;
	void *ref;
};

FIXTURE_SETUP(bgq)
{
	self->fd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
	self->cfg.max_background = 4;
	self->cfg.congestion_threshold = 3;
	self->cfg.policy.rules[0] = (struct fts_rule){
		FUSE_READ, 0, { FTS_ACT_DELAY, 0, 0, DELAY } };
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 71);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(0, io_setup(NR, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	self->fd = open(fts_file(self->srv), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(bgq)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

TEST_F_TIMEOUT(bgq, gap_submit_past_max_background, 60)
{
	struct iocb cbs[NR];
	void *bufs[NR];
	off_t off[NR];
	long res[NR];
	struct fts_stats st;
	uint64_t ms, t0, all;
	long long d;
	int i, bad;

	for (i = 0; i < NR; i++) {
		off[i] = (off_t)i * BS;
		bufs[i] = (char *)self->buf + off[i];
	}
	t0 = fdio_now_ms();
	ASSERT_EQ(NR, adio_submit(self->ctx, cbs, NR, self->fd, bufs, BS, off,
				  false, &ms));
	fts_get_stats(self->srv, &st);
	TH_LOG("io_submit of %d reads: %llu ms (server: %u READs received by then)",
	       NR, (unsigned long long)ms, st.reads);
	ASSERT_EQ(NR, adio_reap(self->ctx, NR, res, 20000));
	all = fdio_now_ms() - t0;
	bad = adio_first_not(res, NR, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	fts_get_stats(self->srv, &st);
	TH_LOG("all done in %llu ms; server: %u READs, max outstanding %u",
	       (unsigned long long)all, st.reads, st.max_outstanding);
	EXPECT_EQ(NR, (int)st.reads);
	EXPECT_LE(st.max_outstanding, 4U);
	EXPECT_LT(ms, (uint64_t)NR / 4 * DELAY / 2)
		TH_LOG("io_submit slept while max_background were in flight");
	d = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, d) TH_LOG("data differs at %lld", d);
}

TEST_HARNESS_MAIN
