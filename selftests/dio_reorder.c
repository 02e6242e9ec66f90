// SPDX-License-Identifier: GPL-2.0
/*
 * dio_reorder: demo of the test server's hold/reorder policy.
 *
 * A 1 MiB O_DIRECT read (or write) is split by the kernel into 128 KiB
 * requests (max_read / max_write).  The server holds them until 8 are held
 * or the oldest waited 500 ms, then answers the batch in reverse order; the
 * data must still come out right.  With FUSE_ASYNC_DIO the kernel has several
 * sub-requests in flight at once; without it they come one at a time (each
 * then waits for the hold timeout).  The observed maximum number of
 * outstanding requests is logged, not asserted: it depends on the kernel.
 * Variant async_dio_uring does it over FUSE-over-io_uring (SKIP on kernels
 * without it): the answers of a batch are then committed to ring entries
 * by the server's deferred thread, and every request must have come over
 * a ring queue.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"

#define SZ	(1 << 20)
#define CHUNK	(128 << 10)

FIXTURE(reorder) {
	struct fts *srv;
	int fd;
	void *buf;
	void *ref;
};

FIXTURE_VARIANT(reorder) {
	bool no_async_dio;
	enum fts_transport transport;
};

FIXTURE_VARIANT_ADD(reorder, async_dio) {
};

FIXTURE_VARIANT_ADD(reorder, no_async_dio) {
	.no_async_dio = true,
};

FIXTURE_VARIANT_ADD(reorder, async_dio_uring) {
	.transport = FTS_TRANSPORT_URING,
};

FIXTURE_SETUP(reorder)
{
	struct fts_config cfg;
	char why[256];

	self->fd = -1;
	if (fts_transport_check(variant->transport, why, sizeof(why)))
		SKIP(return, "%s transport: %s",
		     fts_transport_name(variant->transport), why);
	fts_config_init(&cfg);
	cfg.transport = variant->transport;
	if (variant->no_async_dio)
		cfg.init_flags &= ~FUSE_ASYNC_DIO;
	cfg.max_read = CHUNK;
	cfg.max_write = CHUNK;
	cfg.max_pages = CHUNK / 4096;
	cfg.policy.hold_count = 8;
	cfg.policy.hold_timeout_ms = 500;
	cfg.policy.order = FTS_ORDER_REVERSE;
	ASSERT_EQ(0, fts_start(&cfg, &self->srv));

	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	self->fd = open(fts_file(self->srv), O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

FIXTURE_TEARDOWN(reorder)
{
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

/* Log what the server saw; check every request of opcode was <= CHUNK, was
 * answered successfully, came through the variant's transport and that
 * together they tile [0, SZ). */
static void check_log(struct __test_metadata *_metadata, struct fts *srv,
		      const FIXTURE_VARIANT(reorder) *variant, uint32_t opcode)
{
	bool ring = variant->transport == FTS_TRANSPORT_URING;
	struct fts_io *ios;
	size_t i, n = fts_get_ios(srv, &ios);
	unsigned int out_of_order = 0;
	char why[200] = "";
	struct fts_stats st;

	fts_get_stats(srv, &st);
	for (i = 0; i < n; i++) {
		EXPECT_EQ(opcode, ios[i].opcode);
		EXPECT_GE((uint32_t)CHUNK, ios[i].size);
		EXPECT_TRUE(ios[i].answered);
		EXPECT_EQ((int)ios[i].size, ios[i].result);
		EXPECT_EQ(ring, ios[i].qid >= 0);
		if (i && ios[i].reply_ns < ios[i - 1].reply_ns)
			out_of_order++;
	}
	EXPECT_EQ(0, fts_check_coverage(ios, n, opcode, 0, SZ, why,
					sizeof(why))) {
		TH_LOG("%s", why);
	}
	TH_LOG("%zu %s requests, max %u outstanding at once, %u answered before an earlier one",
	       n, opcode == FUSE_READ ? "READ" : "WRITE", st.max_outstanding,
	       out_of_order);
	free(ios);
}

TEST_F(reorder, read_reverse)
{
	long long diff;

	fts_fill_pattern(self->ref, SZ, 0, 7);
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	memset(self->buf, 0, SZ);
	ASSERT_EQ(SZ, pread(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pread: %s", strerror(errno));
	}
	diff = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, diff) {
		TH_LOG("data read differs at byte %lld", diff);
	}
	check_log(_metadata, self->srv, variant, FUSE_READ);
}

TEST_F(reorder, write_reverse)
{
	long long diff;

	fts_fill_pattern(self->buf, SZ, 0, 8);
	memcpy(self->ref, self->buf, SZ);
	ASSERT_EQ(SZ, pwrite(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pwrite: %s", strerror(errno));
	}
	ASSERT_EQ((size_t)SZ, fts_data_len(self->srv));
	memset(self->buf, 0, SZ);
	fts_get_data(self->srv, self->buf, SZ);
	diff = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, diff) {
		TH_LOG("server data differs at byte %lld", diff);
	}
	check_log(_metadata, self->srv, variant, FUSE_WRITE);
}

TEST_HARNESS_MAIN
