// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_kill: SIGKILL a process blocked in a 2 MiB read() or write() of a
 * FOPEN_DIRECT_IO file (opened without O_DIRECT) whose server does not
 * answer the READs or WRITEs.
 *
 *  - gap_kill_sync_read_stalled: the server ignores INTERRUPT.  The stock
 *    serial path waits uninterruptibly for a request the server has read;
 *    the series waits killably for the sub-requests of a read into user
 *    memory, so the process must be gone within a few seconds.
 *  - kill_sync_write_stalled_waits: the same for a write: a killed writer
 *    must stay until its WRITEs are answered (on every module), or they
 *    could land after, and overwrite, a later write that was reported
 *    done.
 *  - kill_sync_{read,write}_interrupt: the server answers an interrupted
 *    request with EINTR (as a well behaved server does): the process ends
 *    on every module.  The write runs without FUSE_ASYNC_DIO_ALL: with it,
 *    its WRITEs are background requests, which get no INTERRUPT, and a
 *    killed writer waits for their answers (see above).
 *  - kill_sync_read_abort: the connection is aborted after the kill, with
 *    the requests still unanswered: the process ends, nothing hangs (on
 *    every module; the killed process may only go with the abort).
 *
 * The file's only opener is the killed process, and the server must not
 * see RELEASE for its file handle before every request on it was answered:
 * the series pins the file while sub-requests of a killed caller are in
 * flight.  Then the requests are answered and RELEASE must come.
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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	FDIO_SZ
#define CHUNK	FDIO_CHUNK

FIXTURE(kill) {
	struct fts *srv;
	struct fts_config cfg;
	pid_t child;
	void *ref;
};

FDIO_TRANSPORT_VARIANTS(kill);

FIXTURE_SETUP(kill)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->child = 0;
	fdio_config(&self->cfg, FOPEN_DIRECT_IO);
	self->cfg.transport = variant->transport;
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 21);
}

FIXTURE_TEARDOWN(kill)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->child > 0) {
		/* answer what it waits for, so that it can go */
		if (self->srv) {
			fdio_answer_all(self->srv);
			fts_release_stalled(self->srv, EIO);
		}
		kill(self->child, SIGKILL);
		if (fdio_wait_child(self->child, 5000) == -1)
			TH_LOG("child %d still there", self->child);
	}
	fts_stop(self->srv);
	free(self->ref);
}

enum after { ANSWER, ABORT };

/*
 * A child opens the file and reads (or writes: an empty file, so the write
 * extends it) 2 MiB; the server never answers its requests.  SIGKILL it.
 */
static void kill_blocked(struct __test_metadata *_metadata,
			 FIXTURE_DATA(kill) *self, bool write, bool eintr,
			 bool must_die, bool must_stay, enum after after)
{
	uint32_t op = write ? FUSE_WRITE : FUSE_READ;
	const char *name = write ? "WRITE" : "READ";
	struct fts_stats st;
	struct fts_io *ios;
	uint64_t first, last, fh = 0;
	uint64_t t0, kill_ms;
	size_t i, n;
	int status;

	/* no request is ever answered, until released */
	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = op,
		.action = { .act = FTS_ACT_NO_REPLY },
	};
	self->cfg.policy.eintr_on_interrupt = eintr;
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, write ? 0 : SZ));

	self->child = fork();
	ASSERT_LE(0, self->child);
	if (self->child == 0) {
		void *buf = malloc(SZ);
		int fd = open(fts_file(self->srv), write ? O_WRONLY : O_RDONLY);
		ssize_t ret;

		if (!buf || fd < 0)
			_exit(2);
		memcpy(buf, self->ref, SZ);
		ret = write ? pwrite(fd, buf, SZ, 0) : pread(fd, buf, SZ, 0);
		_exit(ret == SZ ? 0 : 1);
	}
	ASSERT_EQ(0, fts_wait_ops(self->srv, op, 1, 5000));
	/* it is blocked on its requests */
	EXPECT_EQ(-1, fdio_wait_child(self->child, 200));
	fts_get_stats(self->srv, &st);
	TH_LOG("child blocked with %u %ss stalled", st.stalled, name);
	ASSERT_LT(0U, st.stalled);
	ASSERT_EQ(0U, st.ops[FUSE_RELEASE]);

	t0 = fdio_now_ms();
	kill(self->child, SIGKILL);
	status = fdio_wait_child(self->child, 3000);
	kill_ms = fdio_now_ms() - t0;
	fts_get_stats(self->srv, &st);
	TH_LOG("SIGKILLed child %s after %llu ms; %u INTERRUPT(s), %u %ss still stalled, %u RELEASE",
	       status == -1 ? "still there" : "gone",
	       (unsigned long long)kill_ms, st.interrupts, st.stalled, name,
	       st.ops[FUSE_RELEASE]);
	if (must_die) {
		ASSERT_NE(-1, status) {
			TH_LOG("a SIGKILLed process stayed while its %ss were with the server",
			       name);
		}
	}
	if (must_stay) {
		ASSERT_EQ(-1, status) {
			TH_LOG("a SIGKILLed writer went while its %ss were with the server: they could land after later writes",
			       name);
		}
	}

	/* requests still with the server: the file handle must stay */
	if (st.stalled) {
		fdio_sleep_ms(200);
		fts_get_stats(self->srv, &st);
		EXPECT_EQ(0U, st.ops[FUSE_RELEASE]) {
			TH_LOG("RELEASE of fh %llu while %u %ss were not answered",
			       (unsigned long long)st.last_release_fh,
			       st.stalled, name);
		}
	}

	if (after == ABORT) {
		ASSERT_EQ(0, fts_abort(self->srv));
		if (status == -1)
			status = fdio_wait_child(self->child, 5000);
		ASSERT_NE(-1, status) {
			TH_LOG("the SIGKILLed process stayed after the abort");
		}
		self->child = 0;
		EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		return;
	}
	/* answer them (and any still queued) now: then RELEASE comes */
	fdio_answer_all(self->srv);
	fts_release_stalled(self->srv, 0);
	if (status == -1)
		status = fdio_wait_child(self->child, 5000);
	ASSERT_NE(-1, status);
	self->child = 0;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_RELEASE, 1, 5000)) {
		TH_LOG("no RELEASE after the %ss were answered", name);
	}
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(0U, st.outstanding);
	n = fts_get_ios(self->srv, &ios);
	for (i = 0; i < n; i++) {
		EXPECT_TRUE(ios[i].answered);
		fh = ios[i].fh;
	}
	fdio_reply_span(ios, n, op, &first, &last);
	free(ios);
	EXPECT_EQ(fh, st.last_release_fh);
	EXPECT_LE(last, st.last_release_ns) {
		TH_LOG("RELEASE %.1f ms before the last %s answer",
		       ((double)last - st.last_release_ns) / 1e6, name);
	}
	TH_LOG("%zu %ss, RELEASE %.1f ms after the last answer", n, name,
	       ((double)st.last_release_ns - last) / 1e6);
}

TEST_F(kill, gap_kill_sync_read_stalled)
{
	kill_blocked(_metadata, self, false, false, true, false, ANSWER);
}

TEST_F(kill, kill_sync_write_stalled_waits)
{
	kill_blocked(_metadata, self, true, false, false, true, ANSWER);
}

TEST_F(kill, kill_sync_read_interrupt)
{
	kill_blocked(_metadata, self, false, true, true, false, ANSWER);
}

TEST_F(kill, kill_sync_write_interrupt)
{
	/* with the opt-in, WRITEs are background requests: no INTERRUPT */
	self->cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	kill_blocked(_metadata, self, true, true, true, false, ANSWER);
}

TEST_F(kill, kill_sync_read_abort)
{
	kill_blocked(_metadata, self, false, false, false, false, ABORT);
}

TEST_HARNESS_MAIN
