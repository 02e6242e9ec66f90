// SPDX-License-Identifier: GPL-2.0
/*
 * adio_timeout: AIO queued past max_background on a connection with a
 * request timeout (FUSE_REQUEST_TIMEOUT at INIT, Linux 6.14+; SKIP on
 * kernels without it).  The kernel aborts such a connection when the
 * oldest request on a queue is older than the timeout; it checks every
 * 15 s and the shortest timeout is 15 s.
 *
 * Every case: max_background 1 at INIT, request timeout 15 s, "file" of
 * NR * 4 KiB opened with O_DIRECT, NR libaio reads of 4 KiB in one
 * io_submit().  With the series (server opted in to FUSE_ASYNC_DIO_ALL)
 * one READ is at the server and the rest wait in the kernel's queue past
 * max_background from the start; the stock module sleeps in io_submit()
 * and allocates each request when a slot is free.
 *
 *  - queued_reads_not_timed_out: the server answers each READ 1.6 s after
 *    it arrived, one at a time: NR = 24 take 38 s, so the kernel's check
 *    runs at least once while requests submitted 30 s earlier are still
 *    queued.  No request waits at the server longer than 1.6 s, so the
 *    connection must stay up: every read returns its 4 KiB with the right
 *    data, and the file can be stat()ed afterwards.  Fails if the time a
 *    request waited in the queue past max_background counts against its
 *    timeout.
 *  - hung_server_aborts: the server never answers a READ.  The timeout
 *    must abort the connection within 15 + 15 s (we wait 60 s): every read
 *    that io_submit() accepted completes with an error, none with data,
 *    and the file system answers ENOTCONN afterwards.  Fails if requests
 *    in the queue past max_background are not ended by the abort (their
 *    events never come) or the timeout does not see the hung request.
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
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "adio_common.h"

#define NR		24
#define BS		4096
#define SZ		(NR * BS)
#define DELAY_MS	1600
#define TIMEOUT_S	15

FIXTURE(tmo) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;
	void *ref;
};

FIXTURE_SETUP(tmo)
{
	struct fts_stats st;

	self->fd = -1;
	self->ctx = 0;
	self->srv = NULL;
	adio_config(&self->cfg);
	self->cfg.init_flags |= FUSE_REQUEST_TIMEOUT;
	self->cfg.request_timeout = TIMEOUT_S;
	self->cfg.max_background = 1;
	self->cfg.congestion_threshold = 1;
	self->cfg.nthreads = 2;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 43);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(0, io_setup(NR, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	fts_get_stats(self->srv, &st);
	if (!(st.kernel_flags & FUSE_REQUEST_TIMEOUT))
		SKIP(return, "the kernel has no FUSE request timeouts (6.14+)");
	ASSERT_NE(0ULL, st.flags & FUSE_REQUEST_TIMEOUT);
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	self->fd = open(fts_file(self->srv), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(tmo)
{
	if (self->fd >= 0)
		close(self->fd);
	/* server first: io_destroy() waits, unkillably, for every iocb */
	if (self->srv)
		fts_stop(self->srv);
	if (self->ctx)
		io_destroy(self->ctx);
	free(self->buf);
	free(self->ref);
}

/*
 * Answer every READ with action, then NR reads in one io_submit(): what it
 * accepted, and the time it took.
 */
static long tmo_submit(FIXTURE_DATA(tmo) *self, struct fts_action action,
		       struct iocb *cbs, uint64_t *ms)
{
	struct fts_policy pol = { 0 };
	void *bufs[NR];
	off_t off[NR];
	int i;

	pol.rules[0] = (struct fts_rule){ FUSE_READ, 0, action };
	fts_set_policy(self->srv, &pol);

	for (i = 0; i < NR; i++) {
		off[i] = (off_t)i * BS;
		bufs[i] = (char *)self->buf + off[i];
	}
	return adio_submit(self->ctx, cbs, NR, self->fd, bufs, BS, off, false,
			   ms);
}

TEST_F_TIMEOUT(tmo, queued_reads_not_timed_out, 120)
{
	struct iocb cbs[NR];
	struct fts_stats st;
	long res[NR];
	uint64_t ms, t0;
	long long d;
	int bad;

	t0 = fdio_now_ms();
	ASSERT_EQ(NR, tmo_submit(self, (struct fts_action){
					FTS_ACT_DELAY, 0, 0, DELAY_MS },
				 cbs, &ms));
	TH_LOG("io_submit of %d reads: %llu ms", NR, (unsigned long long)ms);
	ASSERT_EQ(NR, adio_reap(self->ctx, NR, res, NR * DELAY_MS + 30000));
	TH_LOG("all done in %llu ms", (unsigned long long)(fdio_now_ms() - t0));
	bad = adio_first_not(res, NR, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld (ENOTCONN/ECONNABORTED: the connection was aborted)",
				  bad, res[bad < 0 ? 0 : bad]);
	d = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, d) TH_LOG("data differs at %lld", d);
	EXPECT_EQ(SZ, adio_size(fts_file(self->srv)));
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(NR, (int)st.reads);
	EXPECT_EQ(1U, st.max_outstanding);
	/* the premise: requests were queued across a timeout check */
	EXPECT_LE(2 * TIMEOUT_S * 1000ULL + 1000, fdio_now_ms() - t0);
}

TEST_F_TIMEOUT(tmo, hung_server_aborts, 120)
{
	struct iocb cbs[NR];
	long res[NR];
	uint64_t ms, t0, took;
	long n;
	int got, i;

	t0 = fdio_now_ms();
	/*
	 * The stock module sleeps in io_submit() at max_background until
	 * the abort; then the rest of the iocbs fail to allocate a request
	 * and io_submit() returns how many it accepted (at least the first).
	 */
	n = tmo_submit(self, (struct fts_action){ FTS_ACT_NO_REPLY, 0, 0, 0 },
		       cbs, &ms);
	TH_LOG("io_submit of %d reads: %ld accepted in %llu ms", NR, n,
	       (unsigned long long)ms);
	ASSERT_LE(1, n);
	ASSERT_GE(NR, n);
	for (i = 0; i < NR; i++)
		res[i] = 1;
	got = adio_reap(self->ctx, n, res, 60000);
	took = fdio_now_ms() - t0;
	TH_LOG("%d of %ld reads completed in %llu ms", got, n,
	       (unsigned long long)took);
	ASSERT_EQ(n, got) TH_LOG("reads queued past max_background never completed");
	for (i = 0; i < n; i++)
		EXPECT_GT(0, res[i]) TH_LOG("read %d: %ld", i, res[i]);
	EXPECT_LE(TIMEOUT_S * 1000ULL, took);
	EXPECT_EQ(-ENOTCONN, adio_size(fts_file(self->srv)));
}

TEST_HARNESS_MAIN
