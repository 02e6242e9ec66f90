// SPDX-License-Identifier: GPL-2.0
/*
 * adio_fault: an async O_DIRECT write past EOF of a normal file (the server
 * opens it without FOPEN_DIRECT_IO) whose user buffer cannot be pinned, so
 * that it fails with EFAULT before any WRITE request is sent.
 *
 * The stock module returns -EFAULT (as io_submit()'s result or as the
 * completion's res) and leaves the file alone.  A completion of the failed
 * write that runs inline, in the submitting task, while that task still
 * holds the inode lock, and that takes the inode lock again (to truncate
 * the failed extending write back), deadlocks the task on itself: it stays
 * in D state for good, and so does every later writer of the file.
 *
 * Every case submits the write in a child process and waits for it for a
 * bounded time, so that the test fails instead of hanging (a task stuck in
 * D state can not be killed; the kernel's lockdep / hung-task reports do the
 * rest).  Then a plain pwrite() from another child must succeed within a
 * bounded time, which shows that the inode lock is free.  Only the children
 * open the file, and they do not keep the test's stdout or stderr: a child
 * stuck for good must not take the test process (whose close() of the file
 * would lock the inode in FLUSH) or the harness' output pipe with it.
 *
 *  - aio_prot_none_buffer: libaio write of 128 KiB at EOF from a PROT_NONE
 *    mapping: -EFAULT, no WRITE at the server, size and data unchanged,
 *    file still writable.
 *  - aio_unmapped_buffer: the same from an address range that was
 *    munmap()ed (in the child, after io_setup()).
 *  - uring_prot_none_buffer: the same write as an io_uring IORING_OP_WRITE
 *    (the CQE's res must be -EFAULT); skipped without io_uring.
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring, SKIP on kernels without it), where every READ/WRITE must
 * have come over a ring queue (checked at teardown).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "adio_common.h"

#define CH	FDIO_CHUNK
#define OLD	(2 * CH)	/* initial size; the write goes to [OLD, OLD + CH) */
#define WAIT_MS	15000		/* for a child that should return at once */

enum { VIA_AIO, VIA_URING };

/* What the submitting child saw, in memory shared with the test. */
struct outcome {
	long submit;		/* io_submit() / io_uring_submit() result */
	long res;		/* event res / CQE res */
	int no_uring;		/* io_uring not usable: skip */
	int done;
};

#define RES_NONE	(-100000L)	/* no event / CQE within the wait */

FIXTURE(fault) {
	struct fts *srv;
	struct fts_config cfg;
	void *old, *got;
	void *bad;		/* the faulting buffer, CH bytes */
	bool bad_mapped;
	struct outcome *out;	/* MAP_SHARED */
};

FDIO_TRANSPORT_VARIANTS(fault);

FIXTURE_SETUP(fault)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	self->old = malloc(OLD);
	ASSERT_NE(NULL, self->old);
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, OLD + CH));
	fts_fill_pattern(self->old, OLD, 0, 81);
	self->out = mmap(NULL, sizeof(*self->out), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->out);
	self->bad = mmap(NULL, CH, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	ASSERT_NE(MAP_FAILED, self->bad);
	self->bad_mapped = true;
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, OLD));
	ASSERT_EQ(OLD, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

FIXTURE_TEARDOWN(fault)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	fts_stop(self->srv);
	if (self->bad_mapped)
		munmap(self->bad, CH);
	if (self->out != MAP_FAILED && self->out)
		munmap(self->out, sizeof(*self->out));
	free(self->old);
	free(self->got);
}

/*
 * Child: the write through libaio; results into *out.  unmap: munmap() the
 * buffer first, after io_setup() (whose ring mapping could otherwise take
 * the freed range).
 */
static void child_aio(int fd, void *buf, bool unmap, struct outcome *out)
{
	struct timespec ts = { 10, 0 };
	struct iocb cb, *p = &cb;
	io_context_t ctx = 0;
	struct io_event ev;
	long r;

	r = io_setup(4, &ctx);
	if (r < 0) {
		out->submit = r;
		return;
	}
	if (unmap && munmap(buf, CH)) {
		out->submit = -errno;
		io_destroy(ctx);
		return;
	}
	io_prep_pwrite(&cb, fd, buf, CH, OLD);
	out->submit = io_submit(ctx, 1, &p);
	if (out->submit == 1) {
		r = io_getevents(ctx, 1, 1, &ev, &ts);
		out->res = r == 1 ? (long)ev.res : RES_NONE;
	}
	io_destroy(ctx);
}

/* Child: the write as an io_uring IORING_OP_WRITE; results into *out. */
static void child_uring(int fd, void *buf, struct outcome *out)
{
	struct __kernel_timespec ts = { .tv_sec = 10 };
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int r;

	r = io_uring_queue_init(4, &ring, 0);
	if (r == -ENOSYS || r == -EPERM) {
		out->no_uring = 1;
		return;
	}
	if (r) {
		out->submit = r;
		return;
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_write(sqe, fd, buf, CH, OLD);
	out->submit = io_uring_submit(&ring);
	if (out->submit == 1) {
		r = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
		if (r) {
			out->res = RES_NONE;
		} else {
			out->res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	io_uring_queue_exit(&ring);
}

/* Describe the tasks of a child that did not return (state and wchan). */
static void log_tasks(pid_t pid)
{
	char path[320], buf[256], wchan[64];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		FILE *f;
		char *p;

		if (de->d_name[0] == '.')
			continue;
		buf[0] = wchan[0] = 0;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", pid,
			 de->d_name);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		snprintf(path, sizeof(path), "/proc/%d/task/%s/wchan", pid,
			 de->d_name);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(wchan, sizeof(wchan), f))
				wchan[0] = 0;
			fclose(f);
		}
		/* "tid (comm) S ...": up to the state letter */
		p = strrchr(buf, ')');
		if (p && p[1] && p[2])
			p[3] = 0;
		ksft_print_msg("stuck task %s: %s wchan %s\n", de->d_name, buf,
			       wchan);
	}
	closedir(d);
}

/*
 * In a child: stop using the test's stdout/stderr (a child stuck for good
 * would keep an output pipe open) and open the file.
 */
static int child_open(FIXTURE_DATA(fault) *self)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return open(fts_file(self->srv), O_RDWR | O_DIRECT);
}

/*
 * The faulting write in a child, bounded; then a plain pwrite() in another
 * child, bounded; then the file must be as before plus that pwrite.
 */
static void fault_write(struct __test_metadata *_metadata,
			FIXTURE_DATA(fault) *self, int via, bool unmap)
{
	struct fts_stats st;
	void *good;
	long long d;
	pid_t pid;
	int status;

	memset(self->out, 0, sizeof(*self->out));
	self->out->res = RES_NONE;
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		int fd = child_open(self);

		if (fd < 0)
			self->out->submit = -1000 - errno;
		else if (via == VIA_AIO)
			child_aio(fd, self->bad, unmap, self->out);
		else
			child_uring(fd, self->bad, self->out);
		__atomic_store_n(&self->out->done, 1, __ATOMIC_RELEASE);
		_exit(0);
	}
	status = fdio_wait_child(pid, WAIT_MS);
	if (status == -1) {
		log_tasks(pid);
		/* if it can die at all; a task in D state stays */
		kill(pid, SIGKILL);
		ASSERT_NE(-1, status)
			TH_LOG("the faulting %s write did not return in %d ms: the submitter is stuck (inode lock taken twice?)",
			       via == VIA_AIO ? "libaio" : "io_uring",
			       WAIT_MS);
	}
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
	ASSERT_EQ(1, self->out->done);
	if (self->out->no_uring)
		SKIP(return, "io_uring not available");

	TH_LOG("%s: submit %ld, res %ld", via == VIA_AIO ? "io_submit" :
	       "io_uring_submit", self->out->submit, self->out->res);
	ASSERT_LT(-1000, self->out->submit)
		TH_LOG("open in the child: %s",
		       strerror((int)(-1000 - self->out->submit)));
	if (via == VIA_AIO && self->out->submit < 0) {
		EXPECT_EQ(-EFAULT, self->out->submit);
	} else {
		ASSERT_EQ(1, self->out->submit);
		EXPECT_EQ(-EFAULT, self->out->res);
	}
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(0, (int)st.writes) TH_LOG("WRITE sent from a faulting buffer");
	EXPECT_EQ(OLD, adio_size(fts_file(self->srv)));
	EXPECT_EQ((size_t)OLD, fts_data_len(self->srv));

	/* the inode lock is free: a plain write goes through */
	ASSERT_EQ(0, posix_memalign(&good, 4096, 4096));
	fts_fill_pattern(good, 4096, 0, 82);
	pid = fork();
	if (pid < 0)
		free(good);
	ASSERT_LE(0, pid);
	if (!pid) {
		int fd = child_open(self);

		_exit(fd >= 0 && pwrite(fd, good, 4096, 0) == 4096 ? 0 : 1);
	}
	status = fdio_wait_child(pid, WAIT_MS);
	if (status == -1) {
		free(good);
		log_tasks(pid);
		kill(pid, SIGKILL);
		ASSERT_NE(-1, status)
			TH_LOG("a pwrite() after the failed write did not return in %d ms: inode lock still held",
			       WAIT_MS);
	}
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("pwrite after the failed write failed");

	/* data: the 4 KiB just written, then the old data */
	ASSERT_EQ((size_t)OLD, fts_get_data(self->srv, self->got, OLD + CH));
	d = fts_first_diff(self->got, good, 4096);
	EXPECT_EQ(-1, d) TH_LOG("pwrite data differs at %lld", d);
	d = fts_first_diff((char *)self->got + 4096, (char *)self->old + 4096,
			   OLD - 4096);
	EXPECT_EQ(-1, d) TH_LOG("old data differs at %lld", 4096 + d);
	free(good);
}

TEST_F_TIMEOUT(fault, aio_prot_none_buffer, 60)
{
	fault_write(_metadata, self, VIA_AIO, false);
}

TEST_F_TIMEOUT(fault, aio_unmapped_buffer, 60)
{
	fault_write(_metadata, self, VIA_AIO, true);
}

TEST_F_TIMEOUT(fault, uring_prot_none_buffer, 60)
{
	fault_write(_metadata, self, VIA_URING, false);
}

TEST_HARNESS_MAIN
