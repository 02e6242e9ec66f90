// SPDX-License-Identifier: GPL-2.0
/*
 * adio_read_hold: a READ that the server holds must not block truncate,
 * opens or fallocate of the file.
 *
 * A FUSE server may legitimately keep a READ unanswered for as long as it
 * likes (event-style files: the read returns when something happens).  A
 * direct read in flight changes nothing in the file, so nothing that
 * changes the file's size or its caching has to wait for it.  Counting
 * direct reads with inode_dio_begin()/inode_dio_end() would make truncate,
 * O_TRUNC opens, fallocate and cached opens wait in inode_dio_wait() (an
 * unkillable sleep) until the server answers.
 *
 * Each case starts a server, has it hold (never answer) the first READ,
 * starts one 128 KiB read of "file" (256 KiB) and, while the READ is held,
 * runs one operation in a child process, which must return within 2 s
 * of the child's start (on the stock module it takes a few ms, some
 * 100 ms under emulation with KASAN).  If it does not, the READ is
 * answered so that the child and the system get unstuck, and the case
 * fails.  Afterwards the READ is answered and the read must complete.
 *
 * The variants aio_*: a normal file (no FOPEN_DIRECT_IO) and a libaio
 * O_DIRECT read; fdio_*: the server opens the file with FOPEN_DIRECT_IO
 * and the read is a plain synchronous pread() in a thread.  The operation:
 *  - ftruncate:   ftruncate() to the current size through a second fd,
 *                 opened before the READ was held;
 *  - open_direct: open(O_RDONLY | O_DIRECT) (aio only);
 *  - open_cached: open(O_RDONLY) that the server answers without
 *                 FOPEN_DIRECT_IO (a page cache open);
 *  - open_trunc:  open(O_WRONLY | O_TRUNC): the file is cut to 0;
 *  - fallocate:   fallocate(mode 0) within the file through a second fd;
 *                 the server answers FALLOCATE with ENOSYS, so it fails
 *                 with EOPNOTSUPP: fine, it must just return.
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

#define LEN		FDIO_CHUNK	/* the held read: one READ */
#define SZ		(2 * LEN)	/* file size */
#define OP_LIMIT_MS	2000		/* the operation must return by then */

enum hold_op {
	OP_FTRUNCATE,
	OP_OPEN_DIRECT,
	OP_OPEN_CACHED,
	OP_OPEN_TRUNC,
	OP_FALLOCATE,
};

static const char *const op_name[] = {
	[OP_FTRUNCATE] = "ftruncate()",
	[OP_OPEN_DIRECT] = "open(O_RDONLY | O_DIRECT)",
	[OP_OPEN_CACHED] = "open(O_RDONLY) (cached)",
	[OP_OPEN_TRUNC] = "open(O_WRONLY | O_TRUNC)",
	[OP_FALLOCATE] = "fallocate()",
};

FIXTURE(hold) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;		/* the reader */
	int opfd;	/* for ftruncate / fallocate */
	void *buf;
	void *want;
	struct fdio_call reader;
	uint64_t *times;	/* shared: the op's start and end (ms) */
};

FIXTURE_VARIANT(hold) {
	bool fdio;	/* FOPEN_DIRECT_IO file, sync pread() */
	enum hold_op op;
};

FIXTURE_VARIANT_ADD(hold, aio_ftruncate) {
	.fdio = false, .op = OP_FTRUNCATE,
};

FIXTURE_VARIANT_ADD(hold, aio_open_direct) {
	.fdio = false, .op = OP_OPEN_DIRECT,
};

FIXTURE_VARIANT_ADD(hold, aio_open_cached) {
	.fdio = false, .op = OP_OPEN_CACHED,
};

FIXTURE_VARIANT_ADD(hold, aio_open_trunc) {
	.fdio = false, .op = OP_OPEN_TRUNC,
};

FIXTURE_VARIANT_ADD(hold, aio_fallocate) {
	.fdio = false, .op = OP_FALLOCATE,
};

FIXTURE_VARIANT_ADD(hold, fdio_ftruncate) {
	.fdio = true, .op = OP_FTRUNCATE,
};

FIXTURE_VARIANT_ADD(hold, fdio_open_cached) {
	.fdio = true, .op = OP_OPEN_CACHED,
};

FIXTURE_VARIANT_ADD(hold, fdio_open_trunc) {
	.fdio = true, .op = OP_OPEN_TRUNC,
};

FIXTURE_VARIANT_ADD(hold, fdio_fallocate) {
	.fdio = true, .op = OP_FALLOCATE,
};

FIXTURE_SETUP(hold)
{
	self->fd = -1;
	self->opfd = -1;
	self->ctx = 0;
	memset(&self->reader, 0, sizeof(self->reader));
	self->times = mmap(NULL, 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->times);
	fdio_config(&self->cfg, variant->fdio ? FOPEN_DIRECT_IO : 0);
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, LEN));
	self->want = malloc(SZ);
	ASSERT_NE(NULL, self->want);
	fts_fill_pattern(self->want, SZ, 0, 71);
	ASSERT_EQ(0, io_setup(4, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->want, SZ));
	self->fd = open(fts_file(self->srv),
			O_RDONLY | (variant->fdio ? 0 : O_DIRECT));
	ASSERT_LE(0, self->fd) TH_LOG("open: %s", strerror(errno));
	self->opfd = open(fts_file(self->srv), O_WRONLY);
	ASSERT_LE(0, self->opfd) TH_LOG("open: %s", strerror(errno));
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
}

FIXTURE_TEARDOWN(hold)
{
	/* answer a READ still held, so that nothing waits for it below */
	if (self->srv)
		fts_release_stalled(self->srv, 0);
	fdio_call_join(&self->reader, 10000);
	if (self->fd >= 0)
		close(self->fd);
	if (self->opfd >= 0)
		close(self->opfd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
	free(self->want);
	if (self->times && self->times != MAP_FAILED)
		munmap(self->times, 2 * sizeof(uint64_t));
}

static int reader_fd;
static void *reader_buf;

static long do_pread(void *arg)
{
	return pread(reader_fd, reader_buf, LEN, 0);
}

/* The operation, in the child: 0 or an errno. */
static int run_op(FIXTURE_DATA(hold) *self, enum hold_op op)
{
	int fd;

	switch (op) {
	case OP_FTRUNCATE:
		return ftruncate(self->opfd, SZ) ? errno : 0;
	case OP_FALLOCATE:
		if (fallocate(self->opfd, 0, 0, 4096) &&
		    errno != EOPNOTSUPP && errno != ENOSYS)
			return errno;
		return 0;
	case OP_OPEN_DIRECT:
		fd = open(fts_file(self->srv), O_RDONLY | O_DIRECT);
		break;
	case OP_OPEN_CACHED:
		fd = open(fts_file(self->srv), O_RDONLY);
		break;
	case OP_OPEN_TRUNC:
		fd = open(fts_file(self->srv), O_WRONLY | O_TRUNC);
		break;
	default:
		return EINVAL;
	}
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

TEST_F_TIMEOUT(hold, op_not_blocked_by_held_read, 60)
{
	struct fts_policy pol;
	struct fts_stats st;
	struct iocb cb;
	void *bufs[1] = { self->buf };
	off_t off[1] = { 0 };
	long res[1] = { 0 };
	uint64_t t0, ms, end;
	uint64_t *times = self->times;
	bool blocked = false;
	int status;
	pid_t pid;

	times[0] = times[1] = 0;

	/* hold the next READ until fts_release_stalled() */
	memset(&pol, 0, sizeof(pol));
	pol.rules[0].opcode = FUSE_READ;
	pol.rules[0].nth = 1;
	pol.rules[0].action.act = FTS_ACT_NO_REPLY;
	fts_reset(self->srv);
	fts_set_policy(self->srv, &pol);
	if (variant->op == OP_OPEN_CACHED)
		fts_set_open_flags(self->srv, 0);

	if (variant->fdio) {
		reader_fd = self->fd;
		reader_buf = self->buf;
		ASSERT_EQ(0, fdio_call_start(&self->reader, do_pread, NULL));
	} else {
		ASSERT_EQ(1, adio_submit(self->ctx, &cb, 1, self->fd, bufs,
					 LEN, off, false, &ms));
	}
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 5000));
	fts_get_stats(self->srv, &st);
	ASSERT_EQ(1U, st.stalled);

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int ret;

		/* time the operation from here: fork() and exit() are slow
		 * under emulation with KASAN */
		__atomic_store_n(&times[0], fdio_now_ms(), __ATOMIC_RELEASE);
		ret = run_op(self, variant->op);
		__atomic_store_n(&times[1], fdio_now_ms(), __ATOMIC_RELEASE);
		_exit(ret);
	}

	/* wait for the child to start, then up to OP_LIMIT_MS for the op */
	end = fdio_now_ms() + 20000;
	while (!__atomic_load_n(&times[1], __ATOMIC_ACQUIRE)) {
		t0 = __atomic_load_n(&times[0], __ATOMIC_ACQUIRE);
		if ((t0 && fdio_now_ms() >= t0 + OP_LIMIT_MS) ||
		    fdio_now_ms() >= end)
			break;
		fdio_sleep_ms(5);
	}
	t0 = __atomic_load_n(&times[0], __ATOMIC_ACQUIRE);
	if (!__atomic_load_n(&times[1], __ATOMIC_ACQUIRE)) {
		/* unstick it (and the system), then report */
		blocked = true;
		fts_release_stalled(self->srv, 0);
	}
	status = fdio_wait_child(pid, 20000);
	ms = (__atomic_load_n(&times[1], __ATOMIC_ACQUIRE) ?: fdio_now_ms()) - t0;
	TH_LOG("%s with a READ held: %s after %llu ms",
	       op_name[variant->op],
	       blocked ? "returned only once the READ was answered" :
	       "returned", (unsigned long long)ms);
	ASSERT_NE(-1, status) {
		TH_LOG("%s still blocked %llu ms after the READ was answered",
		       op_name[variant->op], (unsigned long long)ms);
		kill(pid, SIGKILL);
	}
	EXPECT_FALSE(blocked) {
		TH_LOG("%s waited for a READ the server holds (over %d ms)",
		       op_name[variant->op], OP_LIMIT_MS);
	}
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("%s: %s", op_name[variant->op],
		       strerror(WEXITSTATUS(status)));
	}

	/* now answer the READ: the read completes */
	fts_release_stalled(self->srv, 0);
	if (variant->fdio) {
		ASSERT_TRUE(fdio_call_join(&self->reader, 10000))
			TH_LOG("pread() did not return once its READ was answered");
		res[0] = self->reader.ret;
		if (res[0] < 0)
			res[0] = -self->reader.err;
	} else {
		ASSERT_EQ(1, adio_reap(self->ctx, 1, res, 10000))
			TH_LOG("no AIO event once the READ was answered");
	}
	if (variant->op == OP_OPEN_TRUNC) {
		/* the file was cut to 0 under the read: any length will do */
		EXPECT_LE(0, res[0]);
		EXPECT_GE(LEN, res[0]);
		EXPECT_EQ(0, adio_size(fts_file(self->srv)));
	} else {
		EXPECT_EQ(LEN, res[0]);
		if (res[0] == LEN)
			EXPECT_EQ(-1, fts_first_diff(self->buf, self->want,
						     LEN));
		EXPECT_EQ(SZ, adio_size(fts_file(self->srv)));
	}
}

TEST_HARNESS_MAIN
