// SPDX-License-Identifier: GPL-2.0
/*
 * dio_roundtrip: direct IO data goes through FUSE intact, both ways.
 *
 * For several server configurations (variants): write 1 MiB with pwrite(),
 * check the server's buffer holds exactly that and that it arrived as WRITE
 * requests tiling the range; then give the server other data, pread() it
 * back and check it arrived through READ requests.  Direct IO either comes
 * from O_DIRECT on the client (server opens normally) or from the server's
 * FOPEN_DIRECT_IO (client opens without O_DIRECT).  max_read/max_write are
 * 256 KiB, so each call becomes several requests.  The *_uring variants
 * serve over FUSE-over-io_uring (SKIP on kernels without it): every READ
 * and WRITE must then have come over a ring queue, none through /dev/fuse.
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

FIXTURE(dio) {
	struct fts *srv;
	int fd;
	void *buf;	/* client side, page aligned */
	void *ref;	/* expected data */
};

FIXTURE_VARIANT(dio) {
	uint32_t open_flags;	/* server's FOPEN_* */
	bool o_direct;		/* client opens with O_DIRECT */
	bool no_async_dio;	/* server refuses FUSE_ASYNC_DIO */
	bool size0;		/* server always reports st_size 0 */
	unsigned int nthreads;	/* server worker threads (0: 1) */
	enum fts_transport transport;
};

FIXTURE_VARIANT_ADD(dio, odirect) {
	.o_direct = true,
};

FIXTURE_VARIANT_ADD(dio, odirect_4_workers) {
	.o_direct = true,
	.nthreads = 4,
};

FIXTURE_VARIANT_ADD(dio, odirect_no_async_dio) {
	.o_direct = true,
	.no_async_dio = true,
};

FIXTURE_VARIANT_ADD(dio, fopen_direct_io) {
	.open_flags = FOPEN_DIRECT_IO,
};

FIXTURE_VARIANT_ADD(dio, fopen_direct_io_odirect) {
	.open_flags = FOPEN_DIRECT_IO,
	.o_direct = true,
};

FIXTURE_VARIANT_ADD(dio, fopen_direct_io_size0) {
	.open_flags = FOPEN_DIRECT_IO,
	.size0 = true,
};

FIXTURE_VARIANT_ADD(dio, fopen_parallel_direct_writes) {
	.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES,
};

FIXTURE_VARIANT_ADD(dio, odirect_uring) {
	.o_direct = true,
	.transport = FTS_TRANSPORT_URING,
};

FIXTURE_VARIANT_ADD(dio, fopen_direct_io_uring) {
	.open_flags = FOPEN_DIRECT_IO,
	.transport = FTS_TRANSPORT_URING,
};

FIXTURE_VARIANT_ADD(dio, fopen_direct_io_odirect_uring) {
	.open_flags = FOPEN_DIRECT_IO,
	.o_direct = true,
	.transport = FTS_TRANSPORT_URING,
};

FIXTURE_SETUP(dio)
{
	struct fts_config cfg;
	struct fts_stats st;
	char why[256];

	self->fd = -1;
	if (fts_transport_check(variant->transport, why, sizeof(why)))
		SKIP(return, "%s transport: %s",
		     fts_transport_name(variant->transport), why);
	fts_config_init(&cfg);
	cfg.transport = variant->transport;
	cfg.open_flags = variant->open_flags;
	if (variant->no_async_dio)
		cfg.init_flags &= ~FUSE_ASYNC_DIO;
	cfg.nthreads = variant->nthreads;
	cfg.fixed_size = variant->size0;
	cfg.size = 0;
	/* several requests per 1 MiB call */
	cfg.max_read = cfg.max_write = 256 << 10;
	ASSERT_EQ(0, fts_start(&cfg, &self->srv));
	fts_get_stats(self->srv, &st);
	TH_LOG("protocol 7.%u, kernel flags %#llx, ours %#llx", st.proto_minor,
	       (unsigned long long)st.kernel_flags,
	       (unsigned long long)st.flags);
	TH_LOG("%s transport, %u io_uring queues", fts_transport_name(
	       variant->transport), st.ring_queues);
	ASSERT_EQ(variant->transport == FTS_TRANSPORT_URING,
		  st.ring_queues > 0);

	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	self->fd = open(fts_file(self->srv),
			O_RDWR | (variant->o_direct ? O_DIRECT : 0));
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

FIXTURE_TEARDOWN(dio)
{
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

/* The log must show requests of opcode covering [off, off + len), which
 * came through the transport of the variant. */
static void check_requests(struct __test_metadata *_metadata, struct fts *srv,
			   const FIXTURE_VARIANT(dio) *variant,
			   uint32_t opcode, uint64_t off, uint64_t len)
{
	bool ring = variant->transport == FTS_TRANSPORT_URING;
	struct fts_io *ios;
	size_t i, n = fts_get_ios(srv, &ios);
	char why[200] = "";
	int ret = fts_check_coverage(ios, n, opcode, off, len, why,
				     sizeof(why));

	EXPECT_EQ(0, ret) {
		TH_LOG("%s", why);
	}
	for (i = 0; i < n; i++) {
		EXPECT_EQ(ring, ios[i].qid >= 0) {
			TH_LOG("request %llu came through %s",
			       (unsigned long long)ios[i].unique,
			       ios[i].qid >= 0 ? "io_uring" : "/dev/fuse");
		}
	}
	free(ios);
}

TEST_F(dio, write_then_read)
{
	struct fts_stats st;
	long long diff;

	/* client -> server */
	fts_fill_pattern(self->buf, SZ, 0, 1);
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
	fts_get_stats(self->srv, &st);
	EXPECT_LT(0U, st.writes);
	EXPECT_EQ((uint64_t)SZ, st.bytes_written);
	check_requests(_metadata, self->srv, variant, FUSE_WRITE, 0, SZ);
	TH_LOG("%u WRITE requests, max %u outstanding", st.writes,
	       st.max_outstanding);

	/* server -> client */
	fts_reset(self->srv);
	fts_fill_pattern(self->ref, SZ, 0, 2);
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	memset(self->buf, 0, SZ);
	ASSERT_EQ(SZ, pread(self->fd, self->buf, SZ, 0)) {
		TH_LOG("pread: %s", strerror(errno));
	}
	diff = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, diff) {
		TH_LOG("data read differs at byte %lld", diff);
	}
	fts_get_stats(self->srv, &st);
	EXPECT_LT(0U, st.reads);
	EXPECT_EQ((uint64_t)SZ, st.bytes_read);
	TH_LOG("%u READ requests, max %u outstanding", st.reads,
	       st.max_outstanding);
}

TEST_F(dio, read_middle)
{
	const uint64_t off = 256 << 10, len = 512 << 10;
	struct fts_stats st;
	long long diff;

	fts_fill_pattern(self->ref, SZ, 0, 3);
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	if (variant->size0)
		fts_set_size(self->srv, true, 0);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(len, pread(self->fd, self->buf, len, off)) {
		TH_LOG("pread: %s", strerror(errno));
	}
	diff = fts_first_diff(self->buf, (char *)self->ref + off, len);
	EXPECT_EQ(-1, diff) {
		TH_LOG("data read differs at byte %lld", diff);
	}
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(len, st.bytes_read);
	check_requests(_metadata, self->srv, variant, FUSE_READ, off, len);
}

TEST_HARNESS_MAIN
