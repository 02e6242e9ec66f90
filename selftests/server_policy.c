// SPDX-License-Identifier: GPL-2.0
/*
 * server_policy: the test server's per-request policies, seen through a
 * 1 MiB direct read or write split into 128 KiB requests.
 *
 * Checks only what any correct kernel must show: a failed sub-request makes
 * the call fail with that errno or return a correct prefix; a short READ
 * answer ends a FOPEN_DIRECT_IO read there (an O_DIRECT read may go on with
 * buffered IO past it, as may an O_DIRECT call after a failure); delays
 * delay; a stalled request keeps its caller until it is answered, or
 * until the connection is aborted, which fails it.
 * Kernel-dependent details (whether SIGKILL ends a caller whose request is
 * stalled, how many requests are in flight at once) are logged, not asserted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"

#define SZ	(1 << 20)
#define CHUNK	(128 << 10)

FIXTURE(policy) {
	struct fts *srv;
	struct fts_config cfg;
	int fd;
	void *buf;
	void *ref;
};

FIXTURE_VARIANT(policy) {
	bool no_async_dio;	/* server refuses FUSE_ASYNC_DIO */
	uint32_t open_flags;	/* server's FOPEN_*; else client O_DIRECT */
};

FIXTURE_VARIANT_ADD(policy, odirect) {
};

FIXTURE_VARIANT_ADD(policy, odirect_no_async_dio) {
	.no_async_dio = true,
};

FIXTURE_VARIANT_ADD(policy, fopen_direct_io) {
	.open_flags = FOPEN_DIRECT_IO,
};

/* Each test sets self->cfg.policy, then calls start(). */
FIXTURE_SETUP(policy)
{
	self->fd = -1;
	fts_config_init(&self->cfg);
	if (variant->no_async_dio)
		self->cfg.init_flags &= ~FUSE_ASYNC_DIO;
	self->cfg.max_read = CHUNK;
	self->cfg.max_write = CHUNK;
	self->cfg.max_pages = CHUNK / 4096;
	self->cfg.open_flags = variant->open_flags;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 5);
}

FIXTURE_TEARDOWN(policy)
{
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

/* Start the server with self->cfg, give it the reference data, open. */
static void start(struct __test_metadata *_metadata,
		  FIXTURE_DATA(policy) *self)
{
	bool fopen_dio = self->cfg.open_flags & FOPEN_DIRECT_IO;

	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	self->fd = open(fts_file(self->srv),
			O_RDWR | (fopen_dio ? 0 : O_DIRECT));
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

TEST_F(policy, fail_third_read)
{
	struct fts_stats st;
	ssize_t ret;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ, .nth = 3,
		.action = { .act = FTS_ACT_FAIL, .err = EIO },
	};
	start(_metadata, self);
	ret = pread(self->fd, self->buf, SZ, 0);
	TH_LOG("pread: %zd (%s)", ret, ret < 0 ? strerror(errno) : "ok");
	if (ret < 0) {
		EXPECT_EQ(EIO, errno);
	} else {
		if (variant->open_flags & FOPEN_DIRECT_IO) {
			EXPECT_GE(2 * CHUNK, ret);
		}
		EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, ret));
	}
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(1U, st.failed);
}

TEST_F(policy, fail_third_write)
{
	struct fts_stats st;
	ssize_t ret;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_WRITE, .nth = 3,
		.action = { .act = FTS_ACT_FAIL, .err = ENOSPC },
	};
	start(_metadata, self);
	ASSERT_EQ(0, fts_set_data(self->srv, NULL, 0));
	memcpy(self->buf, self->ref, SZ);
	ret = pwrite(self->fd, self->buf, SZ, 0);
	TH_LOG("pwrite: %zd (%s), server has %zu bytes", ret,
	       ret < 0 ? strerror(errno) : "ok", fts_data_len(self->srv));
	if (ret < 0) {
		EXPECT_EQ(ENOSPC, errno);
	} else {
		if (variant->open_flags & FOPEN_DIRECT_IO) {
			EXPECT_GE(2 * CHUNK, ret);
		}
		ASSERT_LE((size_t)ret, fts_data_len(self->srv));
		fts_get_data(self->srv, self->buf, ret);
		EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, ret));
	}
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(1U, st.failed);
}

TEST_F(policy, short_third_read)
{
	ssize_t ret;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ, .nth = 3,
		.action = { .act = FTS_ACT_SHORT, .len = 4096 },
	};
	start(_metadata, self);
	memset(self->buf, 0, SZ);
	ret = pread(self->fd, self->buf, SZ, 0);
	TH_LOG("pread: %zd (%s)", ret, ret < 0 ? strerror(errno) : "ok");
	if (variant->open_flags & FOPEN_DIRECT_IO) {
		ASSERT_EQ(2 * CHUNK + 4096, ret);
	} else {
		/* O_DIRECT: the rest may be read through the page cache */
		ASSERT_LE(2 * CHUNK + 4096, ret);
	}
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, ret));
}

TEST_F(policy, delay_reads)
{
	uint64_t t0, ms;
	struct fts_stats st;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ,
		.action = { .act = FTS_ACT_DELAY, .delay_ms = 200 },
	};
	start(_metadata, self);
	t0 = ms_now();
	ASSERT_EQ(SZ, pread(self->fd, self->buf, SZ, 0));
	ms = ms_now() - t0;
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, SZ));
	EXPECT_LE(200U, ms);
	fts_get_stats(self->srv, &st);
	TH_LOG("%u READs delayed 200 ms each took %llu ms, max %u outstanding",
	       st.reads, (unsigned long long)ms, st.max_outstanding);
}

/* Wait up to ms for pid; returns its status, or -1 if it is still there. */
static int wait_child(pid_t pid, int ms)
{
	uint64_t end = ms_now() + ms;
	int status;

	do {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(5000);
	} while (ms_now() < end);
	return -1;
}

TEST_F(policy, stall_kill_release)
{
	struct fts_stats st;
	uint64_t t0;
	int status;
	pid_t pid;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ, .nth = 1,
		.action = { .act = FTS_ACT_NO_REPLY },
	};
	start(_metadata, self);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		ssize_t ret = pread(self->fd, self->buf, SZ, 0);

		_exit(ret == SZ ? 0 : 1);
	}
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_READ, 1, 5000));
	/* the reader is stuck on its stalled request */
	EXPECT_EQ(-1, wait_child(pid, 200));
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(1U, st.stalled);

	kill(pid, SIGKILL);
	status = wait_child(pid, 500);
	fts_get_stats(self->srv, &st);
	TH_LOG("SIGKILLed reader %s while its READ was stalled; %u INTERRUPT(s)",
	       status == -1 ? "stayed" : "ended", st.interrupts);

	fts_release_stalled(self->srv, EIO);
	if (status == -1)
		status = wait_child(pid, 5000);
	ASSERT_NE(-1, status) {
		kill(pid, SIGKILL);
		TH_LOG("reader still there after the stalled READ was answered");
	}
	EXPECT_TRUE(WIFSIGNALED(status));
	/* a reader that was gone already did not wait for the answer: the
	 * server's deferred thread gives it in its own time */
	for (t0 = ms_now(); ms_now() - t0 < 2000; usleep(5000)) {
		fts_get_stats(self->srv, &st);
		if (!st.stalled && !st.outstanding)
			break;
	}
	EXPECT_EQ(0U, st.stalled);
	EXPECT_EQ(0U, st.outstanding);
}

TEST_F(policy, stall_abort)
{
	int status, ret;
	pid_t pid;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ, .nth = 1,
		.action = { .act = FTS_ACT_NO_REPLY },
	};
	start(_metadata, self);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		ssize_t ret = pread(self->fd, self->buf, SZ, 0);

		_exit(ret < 0 ? errno : 0);
	}
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_READ, 1, 5000));
	ret = fts_abort(self->srv);
	ASSERT_EQ(0, ret) {
		kill(pid, SIGKILL);
		TH_LOG("fts_abort: %s", strerror(-ret));
	}
	/* the aborted connection fails the stalled READ */
	status = wait_child(pid, 5000);
	ASSERT_NE(-1, status) {
		kill(pid, SIGKILL);
		TH_LOG("reader still there after the connection was aborted");
	}
	ASSERT_TRUE(WIFEXITED(status));
	TH_LOG("reader got: %s", strerror(WEXITSTATUS(status)));
	EXPECT_NE(0, WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
