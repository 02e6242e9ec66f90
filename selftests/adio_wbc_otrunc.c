// SPDX-License-Identifier: GPL-2.0
/*
 * adio_wbc_otrunc: an O_TRUNC open on a writeback-cache mount while an
 * async direct write is with the server and the page cache over its range
 * is dirty.
 *
 * With FUSE_WRITEBACK_CACHE and FUSE_ATOMIC_O_TRUNC, fuse_open() of an
 * O_TRUNC open holds the inode lock and blocks page writeback of the inode
 * (fuse_set_nowrite()) around the OPEN request.  Anything it waits for in
 * that window must not need writeback: if it waited for the async direct
 * write to end, and ending that write invalidated the page cache over the
 * write's range, a dirty page there would have to be written back first
 * (fuse_launder_folio()), and that WRITE can not go out while writeback is
 * blocked: the open and the write's completion would wait for each other.
 *
 *  - otrunc_open_with_dirty_pages_and_aio_write: "file" of 256 KiB,
 *    writeback cache; a libaio O_DIRECT write of 64 KiB at offset 0 that
 *    the server holds; then a buffered pwrite() of a few bytes at offset 0
 *    through a second fd (the inode lock is free again: the async write
 *    dropped it), which leaves page 0 dirty (checked: no WRITE for it
 *    reaches the server; writeback cache delays writeback); then
 *    open(O_WRONLY | O_TRUNC) in a child process; 300 ms after the child
 *    called open() the held WRITE is answered.  The open must return (within 5 s of the answer;
 *    the stock module returns at once, before the answer) and the write's
 *    AIO event must arrive with the full length.
 *
 * Everything that touches the file runs in a worker process whose output
 * goes to /dev/null, and the test only waits for it with a time limit: if
 * the two wait for each other, every task touching the file hangs for
 * good (uninterruptible), and so would a test process that tried to close
 * the file, destroy its AIO context or exit with them.  The worker reports
 * its progress in shared memory; a hang is reported with the step it
 * hangs in.
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
#include <sys/mman.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "adio_common.h"

#define SZ		(256 << 10)	/* file size */
#define WLEN		(64 << 10)	/* the held direct write */
#define ANSWER_MS	300		/* answer the WRITE this long after
					 * the open started */
#define OPEN_LIMIT_MS	5000		/* open must return by then after */
#define WORKER_LIMIT_MS	30000

enum wstep {
	ST_START,
	ST_OPENED,		/* both fds open, AIO context set up */
	ST_SUBMITTED,		/* direct write submitted, WRITE held */
	ST_DIRTIED,		/* page 0 dirtied by the buffered pwrite */
	ST_OPENING,		/* open(O_TRUNC) started in the child */
	ST_ANSWERED,		/* held WRITE answered */
	ST_OPEN_RETURNED,	/* open(O_TRUNC) child returned */
	ST_REAPED,		/* AIO event collected (or timed out) */
	ST_DONE,
	ST_NSTEPS,
};

static const char *const step_name[ST_NSTEPS] = {
	[ST_START] = "opening the file",
	[ST_OPENED] = "submitting the direct write",
	[ST_SUBMITTED] = "buffered pwrite() at offset 0",
	[ST_DIRTIED] = "starting open(O_TRUNC)",
	[ST_OPENING] = "answering the held WRITE",
	[ST_ANSWERED] = "waiting for open(O_TRUNC) to return",
	[ST_OPEN_RETURNED] = "waiting for the AIO event",
	[ST_REAPED] = "closing the file",
	[ST_DONE] = "done",
};

/* Shared between the test, the worker and the open child. */
struct wshared {
	int step;		/* enum wstep, atomic */
	int err;		/* errno of a failed setup step */
	char what[64];		/* which setup step failed */
	unsigned int writes_after_dirty; /* WRITEs received by then */
	int open_ret;		/* open(O_TRUNC): fd or -errno */
	int open_done;		/* atomic */
	uint64_t open_start_ms, open_end_ms, answer_ms;
	bool open_timed_out;	/* worker gave up waiting for it */
	int events;		/* AIO events collected */
	long res;		/* the write's event */
};

static void set_step(struct wshared *sh, enum wstep s)
{
	__atomic_store_n(&sh->step, s, __ATOMIC_RELEASE);
}

static int get_step(struct wshared *sh)
{
	return __atomic_load_n(&sh->step, __ATOMIC_ACQUIRE);
}

static void quiet_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

static void fail_step(struct wshared *sh, const char *what, int err)
{
	snprintf(sh->what, sizeof(sh->what), "%s", what);
	sh->err = err;
	_exit(1);
}

/* The open child: open(O_WRONLY | O_TRUNC), record when it returned. */
static void open_child(struct fts *srv, struct wshared *sh)
{
	int fd;

	__atomic_store_n(&sh->open_start_ms, fdio_now_ms(), __ATOMIC_RELEASE);
	fd = open(fts_file(srv), O_WRONLY | O_TRUNC);
	sh->open_ret = fd >= 0 ? fd : -errno;
	sh->open_end_ms = fdio_now_ms();
	__atomic_store_n(&sh->open_done, 1, __ATOMIC_RELEASE);
	if (fd >= 0)
		close(fd);
	_exit(0);
}

static void worker(struct fts *srv, struct wshared *sh)
{
	struct iocb cb, *cbs[1] = { &cb };
	struct fts_stats st;
	io_context_t ctx = 0;
	void *buf;
	int dfd, bfd, status;
	long res[1] = { 0 };
	pid_t pid;

	quiet_stdio();
	if (posix_memalign(&buf, 4096, WLEN))
		fail_step(sh, "posix_memalign", ENOMEM);
	fts_fill_pattern(buf, WLEN, 0, 82);
	/* both fds first: a cached open may legitimately wait for the IO */
	dfd = open(fts_file(srv), O_RDWR | O_DIRECT);
	if (dfd < 0)
		fail_step(sh, "open(O_DIRECT)", errno);
	bfd = open(fts_file(srv), O_RDWR);
	if (bfd < 0)
		fail_step(sh, "open (buffered)", errno);
	if (io_setup(4, &ctx))
		fail_step(sh, "io_setup", errno);
	set_step(sh, ST_OPENED);

	io_prep_pwrite(&cb, dfd, buf, WLEN, 0);
	if (io_submit(ctx, 1, cbs) != 1)
		fail_step(sh, "io_submit", errno);
	if (fts_wait_outstanding(srv, 1, 5000))
		fail_step(sh, "WRITE not held by the server", ETIMEDOUT);
	set_step(sh, ST_SUBMITTED);

	if (pwrite(bfd, "dirty", 5, 0) != 5)
		fail_step(sh, "buffered pwrite", errno);
	fdio_sleep_ms(200);
	fts_get_stats(srv, &st);
	sh->writes_after_dirty = st.writes;
	set_step(sh, ST_DIRTIED);

	pid = fork();
	if (pid < 0)
		fail_step(sh, "fork", errno);
	if (pid == 0)
		open_child(srv, sh);
	set_step(sh, ST_OPENING);

	/* from when the child really opens: fork() is slow under emulation */
	for (status = 0; status < 10000; status += 5) {
		if (__atomic_load_n(&sh->open_start_ms, __ATOMIC_ACQUIRE))
			break;
		fdio_sleep_ms(5);
	}
	fdio_sleep_ms(ANSWER_MS);
	fts_release_stalled(srv, 0);
	sh->answer_ms = fdio_now_ms();
	set_step(sh, ST_ANSWERED);

	status = fdio_wait_child(pid, OPEN_LIMIT_MS);
	if (status == -1) {
		/* the open is stuck: so is anything that would close the
		 * file or wait for the AIO; report and leave */
		sh->open_timed_out = true;
		set_step(sh, ST_DONE);
		_exit(2);
	}
	set_step(sh, ST_OPEN_RETURNED);

	sh->events = adio_reap(ctx, 1, res, 5000);
	sh->res = res[0];
	set_step(sh, ST_REAPED);
	if (sh->events != 1) {
		set_step(sh, ST_DONE);
		_exit(3);
	}
	io_destroy(ctx);
	close(dfd);
	close(bfd);
	free(buf);
	set_step(sh, ST_DONE);
	_exit(0);
}

FIXTURE(wbc) {
	struct fts *srv;
	struct fts_config cfg;
	struct wshared *sh;
};

FDIO_TRANSPORT_VARIANTS(wbc);

FIXTURE_SETUP(wbc)
{
	void *data;

	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->srv = NULL;
	self->sh = mmap(NULL, sizeof(*self->sh), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->sh);
	memset(self->sh, 0, sizeof(*self->sh));
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	/* requests in the order sent: the cases pick the nth one */
	if (variant->transport == FTS_TRANSPORT_URING)
		ASSERT_LE(0, fdio_one_queue());
	self->cfg.init_flags |= FUSE_WRITEBACK_CACHE | FUSE_ATOMIC_O_TRUNC;
	data = malloc(SZ);
	ASSERT_NE(NULL, data);
	fts_fill_pattern(data, SZ, 0, 81);
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, data, SZ));
	free(data);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
}

FIXTURE_TEARDOWN(wbc)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	/* a held WRITE, if the test gave up early */
	if (self->srv)
		fts_release_stalled(self->srv, 0);
	fts_stop(self->srv);
	munmap(self->sh, sizeof(*self->sh));
}

TEST_F_TIMEOUT(wbc, otrunc_open_with_dirty_pages_and_aio_write, 90)
{
	struct wshared *sh = self->sh;
	struct fts_policy pol;
	struct fts_stats st;
	uint64_t end;
	int status = -1, step;
	pid_t pid;

	fts_get_stats(self->srv, &st);
	ASSERT_TRUE(!!(st.flags & FUSE_WRITEBACK_CACHE))
		TH_LOG("the kernel did not accept FUSE_WRITEBACK_CACHE");
	ASSERT_TRUE(!!(st.flags & FUSE_ATOMIC_O_TRUNC))
		TH_LOG("the kernel did not accept FUSE_ATOMIC_O_TRUNC");

	/* hold the first WRITE (the direct one) until released */
	memset(&pol, 0, sizeof(pol));
	pol.rules[0].opcode = FUSE_WRITE;
	pol.rules[0].nth = 1;
	pol.rules[0].action.act = FTS_ACT_NO_REPLY;
	fts_reset(self->srv);
	fts_set_policy(self->srv, &pol);

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		worker(self->srv, sh);

	/* wait for the worker's verdict, not for the worker itself */
	end = fdio_now_ms() + WORKER_LIMIT_MS;
	while (fdio_now_ms() < end) {
		status = fdio_wait_child(pid, 20);
		if (status != -1 || get_step(sh) == ST_DONE)
			break;
	}
	step = get_step(sh);
	TH_LOG("worker %s; open(O_TRUNC) %s %lld ms after it started (WRITE answered at %lld ms); AIO event %ld",
	       sh->open_timed_out ? "gave up" :
	       step == ST_DONE ? "finished" : "stuck",
	       sh->open_done ? "returned" : "still blocked",
	       (long long)((sh->open_done ? sh->open_end_ms : fdio_now_ms()) -
			   sh->open_start_ms),
	       sh->answer_ms ? (long long)(sh->answer_ms - sh->open_start_ms) :
	       -1LL, sh->res);
	if (sh->err)
		TH_LOG("worker: %s: %s", sh->what, strerror(sh->err));

	ASSERT_FALSE(sh->open_timed_out) {
		TH_LOG("deadlock: open(O_WRONLY | O_TRUNC) still blocked %d ms after the held direct WRITE was answered (writeback cache, dirty page in the write's range)",
		       OPEN_LIMIT_MS);
	}
	ASSERT_EQ(ST_DONE, step) {
		TH_LOG("worker stuck while %s", step_name[step]);
	}
	ASSERT_EQ(0, sh->err);
	/* the dirty page must still be dirty when the open starts */
	ASSERT_EQ(1U, sh->writes_after_dirty)
		TH_LOG("page 0 was written back at once: the scenario needs it dirty");
	EXPECT_LE(0, sh->open_ret)
		TH_LOG("open(O_TRUNC): %s", strerror(-sh->open_ret));
	ASSERT_EQ(1, sh->events) TH_LOG("no AIO event for the direct write");
	EXPECT_EQ(WLEN, sh->res);

	/* reap the worker (it finished) */
	if (status == -1)
		status = fdio_wait_child(pid, 5000);
	ASSERT_NE(-1, status);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
