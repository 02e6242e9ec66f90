// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_semantics: what read()/write(), io_submit() and io_uring return on a
 * FOPEN_DIRECT_IO file (opened without O_DIRECT) when a sub-request fails
 * or is answered short, and when the server reports a stale st_size.
 *
 * The serial path of the stock module stops at the first failed or short
 * request and returns the bytes before it, and never looks at i_size; the
 * series sends the requests together but must return the same.  These
 * cases pass on every module but 7.3's stock one, whose AIO and io_uring
 * on these files take the async engine since cc23d537e561 and return what
 * the gap_* cases describe (gap73_*).  The gap_* cases are the same IO on a file
 * also opened with O_DIRECT, which the stock module always sent through
 * its async engine: there it returned the error of the whole IO instead of
 * the prefix, and 0 for a read at a stale st_size of 0.
 *
 * io_uring re-issues the rest of a short read of a regular file when it
 * ran the read inline (the stock module does: fuse files poll readable),
 * so its failure case fails the READ at 256 KiB every time it is asked,
 * and there is no io_uring case of a short answer.
 *
 * One server thread answering at once: requests are received, numbered and
 * answered in the order the kernel queued them, so "the 3rd READ" is the
 * one at offset 256 KiB.
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
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	FDIO_SZ
#define CHUNK	FDIO_CHUNK

FIXTURE(sem) {
	struct fts *srv;
	struct fts_config cfg;
	int fd;
	void *buf;
	void *ref;	/* the file's data before the test */
	void *new;	/* what a write writes */
};

FDIO_TRANSPORT_VARIANTS(sem);

FIXTURE_SETUP(sem)
{
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	self->fd = -1;
	fdio_config(&self->cfg, FOPEN_DIRECT_IO);
	self->cfg.transport = variant->transport;
	/* requests in the order sent: the cases pick the nth one */
	if (variant->transport == FTS_TRANSPORT_URING)
		ASSERT_LE(0, fdio_one_queue());
	self->cfg.nthreads = 1;
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	ASSERT_EQ(0, posix_memalign(&self->new, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 11);
	fts_fill_pattern(self->new, SZ, 0, 12);
}

FIXTURE_TEARDOWN(sem)
{
	if (self->srv)
		FDIO_EXPECT_TRANSPORT(self->srv, variant->transport);
	if (self->fd >= 0)
		close(self->fd);
	fts_stop(self->srv);
	free(self->buf);
	free(self->new);
	free(self->ref);
}

/* Start with self->cfg, len bytes of self->ref as the file, open it. */
static void start(struct __test_metadata *_metadata,
		  FIXTURE_DATA(sem) *self, size_t len, int oflags)
{
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, len));
	self->fd = open(fts_file(self->srv), O_RDWR | oflags);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s", fts_file(self->srv), strerror(errno));
	}
}

static void rule(FIXTURE_DATA(sem) *self, uint32_t op, unsigned int nth,
		 struct fts_action a)
{
	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = op, .nth = nth, .action = a,
	};
}

static const struct fts_action fail_eio = { .act = FTS_ACT_FAIL, .err = EIO };
static const struct fts_action short_1000 = { .act = FTS_ACT_SHORT,
					      .len = 1000 };

enum how { SYNC, AIO, URING };

static const char *how_name(enum how how)
{
	return how == SYNC ? "sync" : how == AIO ? "libaio" : "io_uring";
}

/* One len byte read or write at 0; the result like read(2) (-errno). */
static long do_io(struct __test_metadata *_metadata, FIXTURE_DATA(sem) *self,
		  enum how how, bool write, size_t len)
{
	void *buf = write ? self->new : self->buf;
	long ret;

	if (!write)
		memset(self->buf, 0, len);
	switch (how) {
	case SYNC:
		ret = write ? pwrite(self->fd, buf, len, 0)
			    : pread(self->fd, buf, len, 0);
		if (ret < 0)
			ret = -errno;
		break;
	case AIO:
		ret = fdio_aio_rw(self->fd, buf, len, 0, write);
		break;
	default:
		ret = fdio_uring_rw(self->fd, buf, len, 0, write);
		break;
	}
	TH_LOG("%s %s of %zu bytes: %ld%s%s", how_name(how),
	       write ? "write" : "read", len, ret, ret < 0 ? " " : "",
	       ret < 0 ? strerror(-ret) : "");
	return ret;
}

/* The requests of opcode that the policy did something to: one (or, if
 * several, at least one), at offset off. */
static void check_acted(struct __test_metadata *_metadata, struct fts *srv,
			uint32_t op, enum fts_act act, uint64_t off,
			bool several)
{
	struct fts_io *ios;
	size_t i, n = fts_get_ios(srv, &ios);
	unsigned int hits = 0;

	for (i = 0; i < n; i++) {
		if (ios[i].opcode != op || ios[i].action.act != act)
			continue;
		hits++;
		EXPECT_EQ(off, ios[i].offset);
		EXPECT_TRUE(ios[i].answered);
	}
	if (several) {
		EXPECT_LE(1U, hits);
	} else {
		EXPECT_EQ(1U, hits);
	}
	TH_LOG("server: %zu requests, %u at %llu %s", n, hits,
	       (unsigned long long)off,
	       act == FTS_ACT_FAIL ? "failed" : "answered short");
	free(ios);
}

/* ---- a failed sub-request ------------------------------------------------ */

/* Fail every READ that covers offset 2 * CHUNK (a bad block, not a
 * one-off): io_uring re-issues the rest of a short read on a regular file,
 * which a one-off failure of the 3rd READ would let succeed. */
static void fail_bad_block(void *arg, const struct fts_io *io,
			   struct fts_action *a)
{
	(void)arg;
	if (io->opcode == FUSE_READ && io->offset <= 2 * CHUNK &&
	    io->offset + io->size > 2 * CHUNK)
		*a = fail_eio;
}

/* READ 3 of 16 fails: the bytes before it are returned and right. */
static void read_fail_third(struct __test_metadata *_metadata,
			    FIXTURE_DATA(sem) *self, enum how how, int oflags)
{
	long ret;

	if (how == URING)
		self->cfg.policy.hook = fail_bad_block;
	else
		rule(self, FUSE_READ, 3, fail_eio);
	start(_metadata, self, SZ, oflags);
	ret = do_io(_metadata, self, how, false, SZ);
	if (how == URING && ret == FDIO_NO_URING)
		SKIP(return, "io_uring not available");
	ASSERT_EQ(2 * CHUNK, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, ret));
	check_acted(_metadata, self->srv, FUSE_READ, FTS_ACT_FAIL, 2 * CHUNK,
		    how == URING);
}

/* WRITE 3 of 16 fails: the bytes before it are reported and written. */
static void write_fail_third(struct __test_metadata *_metadata,
			     FIXTURE_DATA(sem) *self, enum how how,
			     size_t have, int oflags)
{
	long ret;

	rule(self, FUSE_WRITE, 3, fail_eio);
	start(_metadata, self, have, oflags);
	ret = do_io(_metadata, self, how, true, SZ);
	ASSERT_EQ(2 * CHUNK, ret);
	ASSERT_LE((size_t)ret, fts_data_len(self->srv));
	fts_get_data(self->srv, self->buf, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->new, ret));
	check_acted(_metadata, self->srv, FUSE_WRITE, FTS_ACT_FAIL,
		    2 * CHUNK, false);
}

TEST_F(sem, sync_read_fail_third)
{
	read_fail_third(_metadata, self, SYNC, 0);
}

/* extending: the sync write of an empty file */
TEST_F(sem, sync_write_fail_third)
{
	write_fail_third(_metadata, self, SYNC, 0, 0);
}

TEST_F(sem, gap73_aio_read_fail_third)
{
	read_fail_third(_metadata, self, AIO, 0);
}

/* within the file: the one async write (an extending one would block) */
TEST_F(sem, gap73_aio_write_fail_third)
{
	write_fail_third(_metadata, self, AIO, SZ, 0);
}

TEST_F(sem, gap73_uring_read_fail_third)
{
	read_fail_third(_metadata, self, URING, 0);
}

/* O_DIRECT AIO always took the async engine: the stock module returned
 * -EIO for the whole IO there. */
TEST_F(sem, gap_aio_odirect_read_fail_third)
{
	read_fail_third(_metadata, self, AIO, O_DIRECT);
}

TEST_F(sem, gap_aio_odirect_write_fail_third)
{
	write_fail_third(_metadata, self, AIO, SZ, O_DIRECT);
}

/* ---- a short answer ------------------------------------------------------ */

static void read_short_third(struct __test_metadata *_metadata,
			     FIXTURE_DATA(sem) *self, enum how how,
			     int oflags)
{
	long ret;

	rule(self, FUSE_READ, 3, short_1000);
	start(_metadata, self, SZ, oflags);
	ret = do_io(_metadata, self, how, false, SZ);
	if (how == URING && ret == FDIO_NO_URING)
		SKIP(return, "io_uring not available");
	ASSERT_EQ(2 * CHUNK + 1000, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, ret));
	check_acted(_metadata, self->srv, FUSE_READ, FTS_ACT_SHORT,
		    2 * CHUNK, false);
}

TEST_F(sem, sync_read_short_third)
{
	read_short_third(_metadata, self, SYNC, 0);
}

TEST_F(sem, aio_read_short_third)
{
	read_short_third(_metadata, self, AIO, 0);
}

/* A short WRITE answer ends the write there, as for the serial path; the
 * stock async engine (O_DIRECT AIO) turned it into -EIO. */
TEST_F(sem, gap_aio_odirect_write_short_third)
{
	long ret;

	rule(self, FUSE_WRITE, 3, short_1000);
	start(_metadata, self, SZ, O_DIRECT);
	ret = do_io(_metadata, self, AIO, true, SZ);
	ASSERT_EQ(2 * CHUNK + 1000, ret);
	fts_get_data(self->srv, self->buf, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->new, ret));
	check_acted(_metadata, self->srv, FUSE_WRITE, FTS_ACT_SHORT,
		    2 * CHUNK, false);
}

TEST_F(sem, gap73_aio_write_short_third)
{
	long ret;

	rule(self, FUSE_WRITE, 3, short_1000);
	start(_metadata, self, SZ, 0);
	ret = do_io(_metadata, self, AIO, true, SZ);
	ASSERT_EQ(2 * CHUNK + 1000, ret);
	fts_get_data(self->srv, self->buf, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->new, ret));
	check_acted(_metadata, self->srv, FUSE_WRITE, FTS_ACT_SHORT,
		    2 * CHUNK, false);
}

/* ---- st_size 0, 1 MiB of data -------------------------------------------- */

/*
 * The server reports st_size 0 for a file with 1 MiB of data: a 2 MiB read
 * returns the 1 MiB, as the server answered it (READs past it are answered
 * with 0 bytes).  The server must have been asked for [0, 1 MiB).
 */
static void stale_size_read(struct __test_metadata *_metadata,
			    FIXTURE_DATA(sem) *self, enum how how,
			    int oflags)
{
	const size_t len = 1 << 20;
	struct fts_io *ios;
	uint64_t asked = 0;
	struct stat sb;
	size_t i, n;
	long ret;

	self->cfg.fixed_size = true;
	self->cfg.size = 0;
	start(_metadata, self, len, oflags);
	ASSERT_EQ(0, fstat(self->fd, &sb));
	ASSERT_EQ(0, sb.st_size);
	ret = do_io(_metadata, self, how, false, SZ);
	if (how == URING && ret == FDIO_NO_URING)
		SKIP(return, "io_uring not available");
	n = fts_get_ios(self->srv, &ios);
	for (i = 0; i < n; i++)
		if (ios[i].opcode == FUSE_READ && ios[i].offset < len)
			asked += ios[i].size;
	free(ios);
	TH_LOG("server asked for %llu bytes below 1 MiB in %zu READs",
	       (unsigned long long)asked, n);
	ASSERT_EQ((long)len, ret);
	EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, len));
	EXPECT_EQ(len, asked);
}

TEST_F(sem, stale_size_sync_read)
{
	stale_size_read(_metadata, self, SYNC, 0);
}

TEST_F(sem, gap73_stale_size_aio_read)
{
	stale_size_read(_metadata, self, AIO, 0);
}

TEST_F(sem, gap73_stale_size_uring_read)
{
	stale_size_read(_metadata, self, URING, 0);
}

/* The stock async engine trusted i_size: 0 without asking the server. */
TEST_F(sem, gap_stale_size_aio_odirect_read)
{
	stale_size_read(_metadata, self, AIO, O_DIRECT);
}

/* ---- a buffer that ends early ------------------------------------------- */

/*
 * A 2 MiB read() or write() whose buffer's second MiB is not accessible:
 * the first MiB is transferred and reported, the server is asked for
 * exactly that, as the serial path stops where it cannot get the pages.
 */
static void fault_tail(struct __test_metadata *_metadata,
		       FIXTURE_DATA(sem) *self, bool wr)
{
	const size_t len = 1 << 20;
	char why[200] = "";
	struct fts_io *ios;
	ssize_t ret;
	size_t n;
	char *p;

	start(_metadata, self, wr ? 0 : SZ, 0);
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, mprotect(p + len, SZ - len, PROT_NONE));
	if (wr)
		memcpy(p, self->new, len);
	ret = wr ? pwrite(self->fd, p, SZ, 0) : pread(self->fd, p, SZ, 0);
	TH_LOG("%s of 2 MiB, the second not accessible: %zd%s%s",
	       wr ? "pwrite" : "pread", ret, ret < 0 ? " " : "",
	       ret < 0 ? strerror(errno) : "");
	EXPECT_EQ((ssize_t)len, ret);
	if (ret > 0) {
		if (wr) {
			ASSERT_LE((size_t)ret, fts_data_len(self->srv));
			fts_get_data(self->srv, self->buf, ret);
			EXPECT_EQ(-1, fts_first_diff(self->buf, self->new, ret));
		} else {
			EXPECT_EQ(-1, fts_first_diff(p, self->ref, ret));
		}
	}
	munmap(p, SZ);
	n = fts_get_ios(self->srv, &ios);
	EXPECT_EQ(0, fts_check_coverage(ios, n, wr ? FUSE_WRITE : FUSE_READ,
					0, len, why, sizeof(why))) {
		TH_LOG("%s", why);
	}
	free(ios);
}

TEST_F(sem, sync_read_fault_tail)
{
	fault_tail(_metadata, self, false);
}

TEST_F(sem, sync_write_fault_tail)
{
	fault_tail(_metadata, self, true);
}

/* ---- the file position ---------------------------------------------------- */

/*
 * Two 1 MiB read()s, or write()s, one after the other: the second goes on
 * where the first ended, and the file position ends at 2 MiB.
 *
 * Not tested with io_uring at offset -1 ("at the file position, and move
 * it"): io_uring moves the position only for an IO that completed inline,
 * never for one that completes later (-EIOCBQUEUED).  On the stock module
 * every IO on FOPEN_DIRECT_IO files without O_DIRECT completed inline; with
 * the series they complete asynchronously, as O_DIRECT ones always did, so
 * the position stays (a documented change, see patch 0007).
 */
static void io_at_current_position(struct __test_metadata *_metadata,
				   FIXTURE_DATA(sem) *self, enum how how,
				   bool wr)
{
	const size_t len = 1 << 20;
	struct fts_io *ios;
	size_t i, n;
	long ret;
	int k;

	/* within the file: an extending write completes inline anyway */
	start(_metadata, self, SZ, 0);
	for (k = 0; k < 2; k++) {
		char *p = (char *)(wr ? self->new : self->buf) + k * len;

		if (how == URING)	/* offset -1: at the file position */
			ret = fdio_uring_rw(self->fd, p, len, -1, wr);
		else
			ret = wr ? write(self->fd, p, len)
				    : read(self->fd, p, len);
		if (how == URING && ret == FDIO_NO_URING)
			SKIP(return, "io_uring not available");
		if (how != URING && ret < 0)
			ret = -errno;
		TH_LOG("%s %s %d of %zu bytes at the file position: %ld",
		       how_name(how), wr ? "write" : "read", k + 1, len,
		       ret);
		ASSERT_EQ((long)len, ret);
	}
	n = fts_get_ios(self->srv, &ios);
	{
		char offs[512] = "";
		size_t o = 0;

		for (i = 0; i < n && o < sizeof(offs) - 16; i++)
			o += snprintf(offs + o, sizeof(offs) - o, " %llu",
				      (unsigned long long)ios[i].offset >> 10);
		TH_LOG("server: %zu %ss at KiB%s", n, wr ? "WRITE" : "READ",
		       offs);
	}
	free(ios);
	EXPECT_EQ((off_t)SZ, lseek(self->fd, 0, SEEK_CUR));
	if (wr) {
		ASSERT_EQ((size_t)SZ, fts_data_len(self->srv));
		fts_get_data(self->srv, self->buf, SZ);
		EXPECT_EQ(-1, fts_first_diff(self->buf, self->new, SZ));
	} else {
		EXPECT_EQ(-1, fts_first_diff(self->buf, self->ref, SZ));
	}
}

TEST_F(sem, sync_read_position)
{
	io_at_current_position(_metadata, self, SYNC, false);
}

TEST_F(sem, sync_write_position)
{
	io_at_current_position(_metadata, self, SYNC, true);
}

TEST_HARNESS_MAIN
