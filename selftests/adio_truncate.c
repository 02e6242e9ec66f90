// SPDX-License-Identifier: GPL-2.0
/*
 * adio_truncate: truncate while async direct writes are with the server.
 *
 *  - gap_truncate_waits_for_aio_writes: 4 libaio O_DIRECT writes of
 *    128 KiB within a 1 MiB normal file, held by the server for 400 ms;
 *    meanwhile a thread truncates the file to 128 KiB.  The SETATTR(size)
 *    must reach the server only after all 4 WRITEs were answered, the
 *    ftruncate() must still be waiting 100 ms after it started, and the
 *    file must end at 128 KiB (the WRITEs beyond it came first).  The stock
 *    module does not count async direct IO in flight: SETATTR goes out at
 *    once, and the held WRITEs answered after it grow the file back.
 *  - gap_otrunc_open_waits_for_aio_writes: the same, with open(O_TRUNC)
 *    on a FUSE_ATOMIC_O_TRUNC connection (the server truncates in OPEN)
 *    instead of ftruncate(): OPEN must reach the server after the WRITEs
 *    were answered, and the file must end empty.  The stock module (and
 *    v1 of the series, which waited only with writeback_cache) sends OPEN
 *    at once.
 *  - truncate_wait_killable, otrunc_open_wait_killable: one WRITE held by
 *    the server until the test lets it go; a child process truncates the
 *    file (ftruncate(), or open(O_TRUNC)) and, once seen in D state, is
 *    sent SIGKILL.  The child must be gone within 3 s while the WRITE is
 *    still held, and a child killed while it waited must not have
 *    truncated anything.  The wait for writes in flight is up to the
 *    server, so it must be killable.  Stock passes (it does not wait at
 *    all), and so would a kernel that stopped waiting: the gap_* cases
 *    above catch that.
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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "adio_common.h"

#define CH	FDIO_CHUNK
#define SZ	(8 * CH)
#define NW	4
#define CUT	CH

FIXTURE(trunc) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;
};

FDIO_TRANSPORT_VARIANTS(trunc);

FIXTURE_SETUP(trunc)
{
	void *old;

	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd = -1;
	self->ctx = 0;
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	/* the server truncates in OPEN (gap_otrunc_open_waits_...) */
	self->cfg.init_flags |= FUSE_ATOMIC_O_TRUNC;
	adio_hold(&self->cfg.policy, FUSE_WRITE, 400);
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	old = malloc(SZ);
	ASSERT_NE(NULL, old);
	fts_fill_pattern(old, SZ, 0, 61);
	fts_fill_pattern(self->buf, SZ, 0, 62);
	ASSERT_EQ(0, io_setup(16, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, old, SZ));
	free(old);
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(trunc)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->fd >= 0)
		close(self->fd);
	/*
	 * Server first: io_destroy() waits, unkillably, for every iocb, and
	 * a test that failed may have left a WRITE held; stopping the server
	 * aborts the connection, which ends it.
	 */
	fts_stop(self->srv);
	if (self->ctx)
		io_destroy(self->ctx);
	free(self->buf);
}

static int trunc_fd;
static const char *otrunc_path;

static long do_truncate(void *arg)
{
	return ftruncate(trunc_fd, CUT);
}

static long do_open_trunc(void *arg)
{
	int fd = open(otrunc_path, O_WRONLY | O_TRUNC);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/*
 * NW writes inside the file, held by the server; cut() (named what) runs in
 * a thread meanwhile and must still be waiting 100 ms later.  Reaps the
 * writes and sets *last to when the server answered the last WRITE (0:
 * never).  Returns false if the writes or the call could not run at all.
 */
static bool cut_during_writes(struct __test_metadata *_metadata,
			      FIXTURE_DATA(trunc) *self, long (*cut)(void *),
			      const char *what, uint64_t *last)
{
	struct iocb cbs[NW];
	void *bufs[NW];
	off_t off[NW];
	long res[NW];
	struct fts_io *ios = NULL;
	struct fdio_call c;
	uint64_t ms, first;
	bool waited;
	size_t n;
	int i, bad;

	for (i = 0; i < NW; i++) {
		off[i] = 2 * CH + (off_t)i * CH;
		bufs[i] = (char *)self->buf + off[i];
	}
	EXPECT_EQ(NW, adio_submit(self->ctx, cbs, NW, self->fd, bufs, CH, off,
				  true, &ms));
	EXPECT_EQ(0, fts_wait_outstanding(self->srv, NW, 2000));
	if (_metadata->exit_code)
		return false;

	EXPECT_EQ(0, fdio_call_start(&c, cut, NULL));
	if (_metadata->exit_code)
		return false;
	fdio_sleep_ms(100);
	waited = !fdio_call_done(&c);
	if (!fdio_call_join(&c, 5000)) {
		TH_LOG("%s did not return", what);
		return false;
	}
	EXPECT_EQ(0, c.ret) TH_LOG("%s: %s", what, strerror(c.err));
	EXPECT_TRUE(waited) TH_LOG("%s returned while WRITEs were held", what);

	if (adio_reap(self->ctx, NW, res, 10000) != NW) {
		TH_LOG("the writes did not complete");
		return false;
	}
	bad = adio_first_not(res, NW, CH);
	EXPECT_EQ(-1, bad) TH_LOG("write %d: %ld", bad, res[bad < 0 ? 0 : bad]);

	n = fts_get_ios(self->srv, &ios);
	*last = 0;
	fdio_reply_span(ios, n, FUSE_WRITE, &first, last);
	free(ios);
	TH_LOG("io_submit %llu ms", (unsigned long long)ms);
	return true;
}

TEST_F_TIMEOUT(trunc, gap_truncate_waits_for_aio_writes, 30)
{
	struct fts_stats st;
	uint64_t last;

	trunc_fd = self->fd;
	ASSERT_TRUE(cut_during_writes(_metadata, self, do_truncate,
				      "ftruncate", &last));

	fts_get_stats(self->srv, &st);
	TH_LOG("SETATTR(size) %u, size %llu, %+lld ms after the last WRITE answer",
	       st.setattr_sizes, (unsigned long long)st.last_setattr_size,
	       ((long long)st.first_setattr_size_ns - (long long)last) /
	       1000000);
	ASSERT_EQ(1U, st.setattr_sizes);
	EXPECT_EQ((uint64_t)CUT, st.last_setattr_size);
	EXPECT_NE(0ULL, last);
	EXPECT_GT(st.first_setattr_size_ns, last)
		TH_LOG("SETATTR reached the server before the WRITEs were answered");
	EXPECT_EQ((size_t)CUT, fts_data_len(self->srv));
	EXPECT_EQ(CUT, adio_size(fts_file(self->srv)));
}

TEST_F_TIMEOUT(trunc, gap_otrunc_open_waits_for_aio_writes, 30)
{
	struct fts_stats st;
	uint64_t last;

	otrunc_path = fts_file(self->srv);
	ASSERT_TRUE(cut_during_writes(_metadata, self, do_open_trunc,
				      "open(O_TRUNC)", &last));

	fts_get_stats(self->srv, &st);
	TH_LOG("OPEN(O_TRUNC) truncated %u time(s), %+lld ms after the last WRITE answer; server data %zu bytes",
	       st.open_truncs,
	       ((long long)st.last_open_trunc_ns - (long long)last) / 1000000,
	       fts_data_len(self->srv));
	ASSERT_EQ(1U, st.open_truncs);
	EXPECT_NE(0ULL, last);
	EXPECT_GT(st.last_open_trunc_ns, last)
		TH_LOG("OPEN(O_TRUNC) reached the server before the WRITEs were answered");
	EXPECT_EQ(0U, fts_data_len(self->srv))
		TH_LOG("the held WRITEs grew the truncated file back");
	EXPECT_EQ(0, adio_size(fts_file(self->srv)));
}

/*
 * One WRITE held until released; a child runs cut() and, once it sleeps in
 * D state (within 2 s), gets SIGKILL: it must be reaped within 3 s with the
 * WRITE still held.  *waited: the child was seen in D state.
 */
static void kill_cut_during_write(struct __test_metadata *_metadata,
				  FIXTURE_DATA(trunc) *self,
				  long (*cut)(void *), bool *waited)
{
	struct fts_policy pol = { 0 };
	struct iocb cb;
	void *bufs[1] = { self->buf };
	off_t off[1] = { 2 * CH };
	long res[1];
	uint64_t ms, t0;
	pid_t pid, r = 0;
	int status;

	adio_hold(&pol, FUSE_WRITE, 0);
	fts_set_policy(self->srv, &pol);
	ASSERT_EQ(1, adio_submit(self->ctx, &cb, 1, self->fd, bufs, CH, off,
				 true, &ms));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 2000));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(cut(NULL) ? 1 : 0);
	/* waiting: in D state (a killable wait shows as D too) */
	t0 = fdio_now_ms();
	*waited = false;
	while ((r = waitpid(pid, &status, WNOHANG)) == 0 &&
	       fdio_now_ms() - t0 < 2000) {
		*waited = fdio_proc_state(pid) == 'D';
		if (*waited)
			break;
		fdio_sleep_ms(10);
	}
	if (*waited) {
		ASSERT_EQ(0, kill(pid, SIGKILL));
		t0 = fdio_now_ms();
		while ((r = waitpid(pid, &status, WNOHANG)) == 0 &&
		       fdio_now_ms() - t0 < 3000)
			fdio_sleep_ms(10);
		TH_LOG("child %s %llu ms after SIGKILL",
		       r == pid ? "gone" : "still there",
		       (unsigned long long)(fdio_now_ms() - t0));
	} else if (r != pid) {
		kill(pid, SIGKILL);	/* not waiting for the WRITE */
	}
	/* the held WRITE is what the child waits for: let it go either way */
	fts_set_policy(self->srv, &(struct fts_policy){ 0 });
	fts_release_held(self->srv);
	if (r != pid)
		waitpid(pid, &status, 0);
	EXPECT_EQ(1, adio_reap(self->ctx, 1, res, 10000));
	EXPECT_EQ(CH, res[0]);
	EXPECT_TRUE(!*waited || r == pid)
		TH_LOG("SIGKILL did not end a wait for a held WRITE");
}

TEST_F_TIMEOUT(trunc, truncate_wait_killable, 30)
{
	struct fts_stats st;
	bool waited;

	trunc_fd = self->fd;
	kill_cut_during_write(_metadata, self, do_truncate, &waited);
	fts_get_stats(self->srv, &st);
	TH_LOG("child %s; SETATTR(size) %u", waited ? "waited" : "did not wait",
	       st.setattr_sizes);
	if (waited) {
		EXPECT_EQ(0U, st.setattr_sizes);
		EXPECT_EQ(SZ, adio_size(fts_file(self->srv)));
	}
}

TEST_F_TIMEOUT(trunc, otrunc_open_wait_killable, 30)
{
	struct fts_stats st;
	bool waited;

	otrunc_path = fts_file(self->srv);
	kill_cut_during_write(_metadata, self, do_open_trunc, &waited);
	fts_get_stats(self->srv, &st);
	TH_LOG("child %s; OPEN(O_TRUNC) truncated %u time(s)",
	       waited ? "waited" : "did not wait", st.open_truncs);
	if (waited) {
		EXPECT_EQ(0U, st.open_truncs);
		EXPECT_EQ(SZ, adio_size(fts_file(self->srv)));
	}
}

TEST_HARNESS_MAIN
