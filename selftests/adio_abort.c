// SPDX-License-Identifier: GPL-2.0
/*
 * adio_abort: libaio O_DIRECT writes to a normal file still with the server
 * when the connection goes away.  Every event must arrive (with an error)
 * within 5 s, and the file system must unmount afterwards (teardown; the
 * runner unloads the module after the suite).  Pass on every module.
 *
 *  - abort_with_writes_in_flight: 4 writes within the file, held by the
 *    server; the connection is aborted through fusectl.
 *  - abort_with_extending_writes_in_flight: 4 writes past EOF (from a
 *    helper thread: the stock module's io_submit() waits for them); abort.
 *  - kill_server_with_extending_writes_in_flight: the same, the server
 *    process is SIGKILLed instead.
 *
 * Each case runs over /dev/fuse (variant dev) and over FUSE-over-io_uring
 * (variant uring: the held WRITEs must have come over ring queues, whose
 * entries the abort tears down; SKIP on kernels without it).
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
#define SZ	(4 * CH)
#define NW	4

FIXTURE(abrt) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;
	struct iocb cbs[NW];
	off_t off[NW];
	long submitted;
};

FDIO_TRANSPORT_VARIANTS(abrt);

FIXTURE_SETUP(abrt)
{
	void *old;

	self->fd = -1;
	self->ctx = 0;
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	adio_hold(&self->cfg.policy, FUSE_WRITE, 0);	/* forever */
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, 2 * SZ));
	old = malloc(SZ);
	ASSERT_NE(NULL, old);
	fts_fill_pattern(old, SZ, 0, 91);
	fts_fill_pattern(self->buf, 2 * SZ, 0, 92);
	ASSERT_EQ(0, io_setup(16, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, old, SZ));
	free(old);
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
}

FIXTURE_TEARDOWN(abrt)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
}

static long do_submit(void *arg)
{
	FIXTURE_DATA(abrt) *self = arg;
	void *bufs[NW];
	uint64_t ms;
	int i;

	for (i = 0; i < NW; i++)
		bufs[i] = (char *)self->buf + self->off[i];
	return adio_submit(self->ctx, self->cbs, NW, self->fd, bufs, CH,
			   self->off, true, &ms);
}

static void run(struct __test_metadata *_metadata, FIXTURE_DATA(abrt) *self,
		off_t base, bool kill_server)
{
	struct fdio_call c;
	long res[NW];
	uint64_t t0;
	int i, got;

	for (i = 0; i < NW; i++)
		self->off[i] = base + (off_t)i * CH;
	ASSERT_EQ(0, fdio_call_start(&c, do_submit, self));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 2000));
	fdio_sleep_ms(50);
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);

	t0 = fdio_now_ms();
	if (kill_server) {
		ASSERT_EQ(0, kill(fts_server_pid(self->srv), SIGKILL));
	} else {
		ASSERT_EQ(0, fts_abort(self->srv));
	}
	ASSERT_TRUE(fdio_call_join(&c, 5000))
		TH_LOG("io_submit still blocked after the connection ended");
	ASSERT_LT(0, c.ret) TH_LOG("io_submit: %ld", c.ret);
	for (i = 0; i < NW; i++)
		res[i] = 1;
	got = adio_reap(self->ctx, c.ret, res, 5000);
	TH_LOG("io_submit %ld; %d events in %llu ms: %ld %ld %ld %ld",
	       c.ret, got, (unsigned long long)(fdio_now_ms() - t0),
	       res[0], res[1], res[2], res[3]);
	ASSERT_EQ(c.ret, got);
	for (i = 0; i < got; i++)
		EXPECT_GT(0, res[i]) TH_LOG("write %d: %ld", i, res[i]);
	close(self->fd);
	self->fd = -1;
}

TEST_F_TIMEOUT(abrt, abort_with_writes_in_flight, 30)
{
	run(_metadata, self, 0, false);
}

TEST_F_TIMEOUT(abrt, abort_with_extending_writes_in_flight, 30)
{
	run(_metadata, self, SZ, false);
}

TEST_F_TIMEOUT(abrt, kill_server_with_extending_writes_in_flight, 30)
{
	run(_metadata, self, SZ, true);
}

TEST_HARNESS_MAIN
