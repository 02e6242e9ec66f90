// SPDX-License-Identifier: GPL-2.0
/*
 * adio_userns: async direct IO on a FUSE mount made inside a user
 * namespace, where the kernel's own credentials (global uid 0) have no
 * mapping.
 *
 * FUSE puts the caller's fsuid/fsgid, translated into the mount's user
 * namespace, into every request; a request made by a task whose ids are
 * not mapped there (a kworker runs as global root) fails with EOVERFLOW
 * before it is sent.  So whatever the kernel must send on behalf of an IO
 * has to be sent from the IO submitter's context (or with its
 * credentials), or it is silently lost on such mounts.
 *
 * Setup of each case: the test process (root) makes a temporary directory
 * owned by an unprivileged uid (UNS_UID), makes /dev/fuse usable by it if
 * it is not (a private mount namespace with a 0666 device node bound over
 * /dev/fuse), drops to that uid, creates a user namespace mapping its uid
 * 0 to UNS_UID only (plus a mount namespace) and starts the test server
 * there: the mount's user namespace is the new one.  No user namespaces in
 * the kernel (CONFIG_USER_NS), or not for unprivileged users: SKIP.
 *
 *  - failed_extending_write_truncated_back: "file" of 256 KiB (old size
 *    S), a libaio O_DIRECT write of 512 KiB at S (4 WRITEs, extending the
 *    file); the server fails the 1st WRITE (at S) with EIO and stores the
 *    3 others.  The event must be -EIO, a SETATTR(size = S) must reach the
 *    server and the file must be back at S there and in the kernel.  (The
 *    stock module makes an extending AIO write blocking and cuts the file
 *    back in the submitter's context, which is mapped.)
 *  - extending_write_ok: the same write, all WRITEs succeed: the event is
 *    the full length and the file ends at S + 512 KiB with the data (no
 *    request of the kernel's own is needed for that).
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
#include "userns_common.h"

#define CH		FDIO_CHUNK
#define OLD		(2 * CH)	/* initial file size */
#define BIG		(4 * CH)	/* the extending write */

FIXTURE(uns) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	char dir[256];		/* temp dir owned by UNS_UID */
	char node[300];		/* our /dev/fuse node, if one was needed */
	void *buf;
	void *old;
	void *got;
};

FIXTURE_SETUP(uns)
{
	self->srv = NULL;
	self->fd = -1;
	self->ctx = 0;
	self->dir[0] = self->node[0] = '\0';
	adio_config(&self->cfg);
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, BIG));
	ASSERT_EQ(0, posix_memalign(&self->got, 4096, OLD + BIG));
	self->old = malloc(OLD);
	ASSERT_NE(NULL, self->old);
	fts_fill_pattern(self->old, OLD, 0, 91);
	fts_fill_pattern(self->buf, BIG, OLD, 92);
}

FIXTURE_TEARDOWN(uns)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	/* as UNS_UID (root in the namespace): the dir is ours */
	if (self->node[0])
		unlink(self->node);
	if (self->dir[0])
		rmdir(self->dir);
	free(self->buf);
	free(self->old);
	free(self->got);
}

/*
 * Root of a new user namespace that maps only UNS_UID, with a temporary
 * dir for the mount point: 0, or 1 if the case was skipped (reason in
 * *why), or -errno (step in *why).
 */
static int enter_userns(FIXTURE_DATA(uns) *self, const char **why)
{
	const char *tmp = getenv("TMPDIR");

	if (!uns_available(why))
		return 1;
	snprintf(self->dir, sizeof(self->dir), "%s/adio_userns.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(self->dir)) {
		self->dir[0] = '\0';
		*why = "mkdtemp";
		return -errno;
	}
	snprintf(self->node, sizeof(self->node), "%s/fuse", self->dir);
	return uns_enter(self->dir, self->node, why);
}

static uint64_t fail_off;	/* copied into the server at fork */

/* Into the namespace, start the server with "file" = old data, open it. */
static void start(struct __test_metadata *_metadata, FIXTURE_DATA(uns) *self)
{
	const char *why = "";
	int ret;

	ret = enter_userns(self, &why);
	if (ret == 1)
		SKIP(return, "%s", why);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s", why, strerror(-ret));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv))
		TH_LOG("mounting FUSE in the user namespace failed");
	ASSERT_EQ(0, fts_set_data(self->srv, self->old, OLD));
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd) TH_LOG("open: %s", strerror(errno));
	ASSERT_EQ(0, io_setup(8, &self->ctx));
	ASSERT_EQ(OLD, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
}

/* The BIG write at OLD, one io_submit(); its event in *res. */
static void big_write(struct __test_metadata *_metadata,
		      FIXTURE_DATA(uns) *self, long *res)
{
	struct iocb cb;
	void *bufs[1] = { self->buf };
	off_t off[1] = { OLD };
	uint64_t ms;

	ASSERT_EQ(1, adio_submit(self->ctx, &cb, 1, self->fd, bufs, BIG, off,
				 true, &ms));
	ASSERT_EQ(1, adio_reap(self->ctx, 1, res, 10000))
		TH_LOG("no AIO event within 10 s");
}

TEST_F_TIMEOUT(uns, failed_extending_write_truncated_back, 60)
{
	struct fts_stats st;
	long res[1];

	fail_off = OLD;
	self->cfg.policy.hook = adio_fail_write_at;
	self->cfg.policy.hook_arg = &fail_off;
	start(_metadata, self);
	if (_metadata->exit_code == KSFT_SKIP)
		return;

	big_write(_metadata, self, res);
	/* the cut-back may follow the event: give it a moment */
	fts_wait_ops(self->srv, FUSE_SETATTR, 1, 3000);
	fts_get_stats(self->srv, &st);
	TH_LOG("event %ld; server: %u WRITEs, %u failed, %u SETATTR(size), last %llu, data %zu bytes",
	       res[0], st.writes, st.failed, st.setattr_sizes,
	       (unsigned long long)st.last_setattr_size,
	       fts_data_len(self->srv));
	/* Sending may stop once the failure came back (v2), not before */
	EXPECT_LE(1, (int)st.writes);
	EXPECT_GE(BIG / CH, (int)st.writes);
	EXPECT_EQ(-EIO, res[0]);
	ASSERT_LE(1, (int)st.setattr_sizes) {
		TH_LOG("the failed extending write was not cut back: no SETATTR(size) reached the server");
	}
	EXPECT_EQ((uint64_t)OLD, st.last_setattr_size);
	EXPECT_EQ((size_t)OLD, fts_data_len(self->srv));
	EXPECT_EQ(OLD, adio_size(fts_file(self->srv)));
}

TEST_F_TIMEOUT(uns, extending_write_ok, 60)
{
	struct fts_stats st;
	long res[1];
	long long d;

	start(_metadata, self);
	if (_metadata->exit_code == KSFT_SKIP)
		return;

	big_write(_metadata, self, res);
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(BIG, res[0]);
	EXPECT_EQ(0U, st.setattr_sizes);
	EXPECT_EQ(OLD + BIG, adio_size(fts_file(self->srv)));
	ASSERT_EQ((size_t)(OLD + BIG), fts_data_len(self->srv));
	ASSERT_EQ((size_t)(OLD + BIG),
		  fts_get_data(self->srv, self->got, OLD + BIG));
	d = fts_first_diff(self->got, self->old, OLD);
	EXPECT_EQ(-1, d) TH_LOG("old data differs at %lld", d);
	d = fts_first_diff((char *)self->got + OLD, self->buf, BIG);
	EXPECT_EQ(-1, d) TH_LOG("new data differs at %lld", OLD + d);
}

TEST_HARNESS_MAIN
