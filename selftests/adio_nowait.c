// SPDX-License-Identifier: GPL-2.0
/*
 * adio_nowait: direct IO issued with IOCB_NOWAIT, by io_uring inline from
 * io_uring_enter() and by RWF_NOWAIT (patches 0012-0013 of the 7.3 series).
 *
 * "file" is 1 MiB of a known pattern.  io_uring asks a file without
 * FMODE_NOWAIT whether it is ready (fuse_file_poll()): a server that
 * implements FUSE_POLL and reports nothing ready gets every read and write
 * parked on a poll that only its FUSE_NOTIFY_POLL wakes; one that answers
 * ENOSYS makes the file always ready, and io_uring issues the IO inline
 * with IOCB_NOWAIT, which the stock module ignores (io_uring_enter()
 * sleeps where the IO sleeps).  With the series, files of servers without
 * FUSE_POLL (asked once, at the first open) get FMODE_NOWAIT and lose
 * ->poll; those of servers with it keep stock's poll.  io-wq workers
 * ("iou-wrk-*" threads of the process) run what returned -EAGAIN.  The
 * cases:
 *
 *  - uring_read_no_worker / gap_uring_write_no_worker: FOPEN_DIRECT_IO,
 *    the server holds every READ (WRITE): 8 io_uring reads (writes, two
 *    of them past EOF) of 4 KiB return from io_uring_submit(), reach the
 *    server, and no io-wq worker exists; then the data is right.  Stock
 *    reads pass too; its writes go to io-wq (no FOP_BUFFER_WASYNC).
 *  - uring_odirect_read_no_worker: the reads on a normal file opened with
 *    O_DIRECT.
 *  - uring_poll_server_keeps_poll: a server that implements FUSE_POLL and
 *    reports nothing ready: an io_uring read does not reach the server
 *    (it waits for the poll), as on stock.
 *  - gap_uring_past_max_background: a server without FUSE_POLL (stock
 *    issues inline, ignoring IOCB_NOWAIT) and max_background 4 holds
 *    every READ: 8 io_uring reads return from io_uring_submit(), 4 reach
 *    the server, no io-wq worker; then all 8 complete with the right data.
 *    Stock sleeps in io_uring_submit() at max_background.
 *  - uring_locked_inode_no_block: a sync write past EOF held by the server
 *    keeps the inode locked; an io_uring write must come back from
 *    io_uring_submit() at once (-EAGAIN inside, so io_uring punts it to a
 *    worker) and complete with the right data once the first write is
 *    answered.  Stock passes too: io_uring never issues a write without
 *    O_DIRECT inline on a file without FOP_BUFFER_WASYNC; this guards
 *    0013, which sets it.
 *  - gap_rwf_nowait_locked_inode: the same locked inode, an io_uring write
 *    with RWF_NOWAIT: -EAGAIN at once, nothing sent.
 *  - gap_rwf_nowait_read: io_uring read with RWF_NOWAIT: the data (stock:
 *    -EOPNOTSUPP, the file has no FMODE_NOWAIT).
 *  - gap_rwf_nowait_unmapped_buffer: RWF_NOWAIT read into an anonymous
 *    mapping never touched: -EAGAIN and no READ sent (pinning it would
 *    fault); after a touch the same read returns the data.
 *  - gap_uring_past_max_background_no_opt_in: the same with a server
 *    that did not opt in to FUSE_ASYNC_DIO_ALL: NOWAIT IO queues past
 *    max_background all the same.
 *  - gap_rwf_nowait_queue_full: that server, max_background 4, all
 *    reads held: 260 io_uring reads fill the slots and the overflow
 *    queue behind them (256); one more with RWF_NOWAIT gets -EAGAIN at
 *    once, the server has four READs; then all 260 complete.
 *  - gap_rwf_nowait_multi_request: 128 KiB requests: an io_uring read and
 *    write of 1 MiB with RWF_NOWAIT (8 requests each, built before the
 *    first is sent) return the 1 MiB, 8 READs and 8 WRITEs, right data.
 *  - gap_rwf_nowait_multi_request_unmapped: the same read into a buffer
 *    whose second half was never touched: -EAGAIN with no READ sent (all
 *    pages are pinned before the first request goes), never a short
 *    count; once touched, the 1 MiB.
 *  - uring_multi_request_no_worker: as uring_read_no_worker with 4
 *    io_uring reads of 256 KiB (2 requests each): io_uring_submit()
 *    returns, 8 READs reach the server, no io-wq worker; then the data.
 *  - gap_preadv2_nowait_multi_request: a sync RWF_NOWAIT read of 1 MiB (8
 *    READs) and write of 256 KiB return all of it: a sync NOWAIT IO takes
 *    the serial path and waits for its answers, as on a block device.
 *  - gap_uring_multi_request_past_max_background: max_background 4, READs
 *    held: an io_uring read of 1 MiB (8 requests, 4 past max_background)
 *    returns from io_uring_submit(), 4 READs at the server, no io-wq
 *    worker; then the 1 MiB.
 *  - gap_rwf_nowait_multi_request_no_room: the overflow has room for 6:
 *    an RWF_NOWAIT read of 1 MiB gets -EAGAIN, nothing sent; later the
 *    1 MiB.
 *  - gap_rwf_nowait_one_request_1m: 1 MiB requests (max_pages 256): the
 *    RWF_NOWAIT read and write of 1 MiB complete, one request each, with
 *    the right data.
 *  - gap_nowait_read_at_eof_one_request: an RWF_NOWAIT read of 1 MiB at
 *    EOF - 4 KiB is counted after its trim: one READ.
 *  - gap_preadv2_nowait: preadv2()/pwritev2() with RWF_NOWAIT on a
 *    FOPEN_DIRECT_IO file: the data, one request each (stock:
 *    -EOPNOTSUPP).
 *  - gap_preadv2_nowait_slots_busy: max_background READs of another open
 *    file held: preadv2() with RWF_NOWAIT is neither refused nor made to
 *    wait for a background slot (its READ reaches the server while they
 *    are held); the data once the server answers it.
 *  - gap_preadv2_nowait_no_opt_in: the same without FUSE_ASYNC_DIO_ALL.
 *  - gap_nowait_file_not_pollable: on a server without FUSE_POLL the
 *    FMODE_NOWAIT file has no ->poll, as a regular file of ext4: io_uring's
 *    multishot read is refused (-EBADFD), epoll_ctl() too (EPERM); poll()
 *    reports it ready.  Stock takes it as always ready.
 *  - uring_read_multishot(_no_opt_in, _big_buffers, _untouched,
 *    _slots_busy): on a server with FUSE_POLL that reports the file
 *    readable (no FMODE_NOWAIT: IOCB_NOWAIT ignored in direct IO, as on
 *    stock), the multishot read reads into its 4 provided buffers and
 *    ends with -ENOBUFS, never -ECANCELED or -EAGAIN for good: also with
 *    buffers of two requests, buffers never touched and the background
 *    slots taken by held reads.  Stock reads too.
 *  - gap_nowait_buffered_after_fcntl: a normal file opened with O_DIRECT,
 *    then O_DIRECT cleared: an RWF_NOWAIT write gets -EAGAIN with nothing
 *    sent; an RWF_NOWAIT read of an uncached page -EAGAIN, having started
 *    readahead (background READs, which the server holds until the
 *    read returned), and once that is in, the data with
 *    no READ sent.
 *  - stream_file_no_nowait: FOPEN_STREAM files stay serial and get no
 *    FMODE_NOWAIT: RWF_NOWAIT is -EOPNOTSUPP there, patched or not.
 *
 * Stock fails the gap_* cases, the series passes all.  SKIP on kernels
 * before 7 (the 6.12 backport has no NOWAIT patches).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/utsname.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	(1 << 20)
#define BS	4096
#define NR	8
#define MIB	(1 << 20)

static unsigned char pattern(size_t off)
{
	return (unsigned char)(off * 7 + (off >> 12));
}

static bool pattern_ok(const unsigned char *buf, size_t len, size_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != pattern(off + i))
			return false;
	return true;
}

/* io-wq workers of this process: threads named iou-wrk-<tid> */
static int iowq_workers(void)
{
	struct dirent *e;
	char path[300], comm[32];
	int n = 0, fd;
	ssize_t len;
	DIR *d;

	d = opendir("/proc/self/task");
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (len > 0 && !strncmp(comm, "iou-wrk-", 8))
			n++;
	}
	closedir(d);
	return n;
}

FIXTURE(nw) {
	struct fts *srv;
	struct io_uring ring;
	bool ring_up;
	unsigned char *buf;
	int fd;
	struct fdio_call call;
};

FIXTURE_SETUP(nw)
{
	struct utsname u;

	self->srv = NULL;
	self->ring_up = false;
	self->fd = -1;
	self->call.started = false;
	self->buf = NULL;
	/*
	 * The NOWAIT patches are in the mainline series only.  In the setup:
	 * a SKIP there ends the case, one in a helper only the helper.
	 */
	ASSERT_EQ(0, uname(&u));
	if (atoi(u.release) < 7)
		SKIP(return, "Linux %s: IOCB_NOWAIT is patched in the 7.3 series only",
		     u.release);
	ASSERT_EQ(0, posix_memalign((void **)&self->buf, 4096, 2 * MIB));
	memset(self->buf, 0, 2 * MIB);
}

FIXTURE_TEARDOWN(nw)
{
	if (self->srv)
		fdio_answer_all(self->srv);
	fdio_call_join(&self->call, 5000);
	if (self->ring_up)
		io_uring_queue_exit(&self->ring);
	if (self->fd >= 0)
		close(self->fd);
	if (self->srv)
		fts_stop(self->srv);
	free(self->buf);
}

/* Start the server with cfg over the pattern, open "file", set up a ring. */
static void nw_start(struct __test_metadata *_metadata,
		     FIXTURE_DATA(nw) *self, struct fts_config *cfg, int oflags)
{
	unsigned char *data;
	size_t i;
	int ret;

	data = malloc(SZ);
	ASSERT_NE(NULL, data);
	for (i = 0; i < SZ; i++)
		data[i] = pattern(i);
	ASSERT_EQ(0, fts_start(cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, data, SZ));
	free(data);
	/*
	 * fts_start() forked the server: our buffer's pages are copy-on-write
	 * now, and an IOCB_NOWAIT read would rightly get -EAGAIN (pinning
	 * them for writing would fault).  Write them to own them again.
	 */
	memset(self->buf, 0, 2 * MIB);
	self->fd = open(fts_file(self->srv), O_RDWR | oflags);
	ASSERT_LE(0, self->fd);
	ret = io_uring_queue_init(64, &self->ring, 0);
	ASSERT_EQ(0, ret) {
		TH_LOG("io_uring_queue_init: %s", strerror(-ret));
	}
	self->ring_up = true;
}

static void prep_rw(struct io_uring *ring, int fd, void *buf, size_t len,
		    off_t off, bool write, int rw_flags, int tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (write)
		io_uring_prep_write(sqe, fd, buf, len, off);
	else
		io_uring_prep_read(sqe, fd, buf, len, off);
	sqe->rw_flags = rw_flags;
	io_uring_sqe_set_data64(sqe, tag);
}

/* Reap n CQEs within ms; res[tag] = cqe->res.  Returns how many came. */
static int reap(struct io_uring *ring, int n, int *res, int ms)
{
	struct __kernel_timespec ts = { .tv_sec = ms / 1000,
					.tv_nsec = (ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe;
	int got = 0;

	while (got < n) {
		if (io_uring_wait_cqe_timeout(ring, &cqe, &ts))
			break;
		res[io_uring_cqe_get_data64(cqe)] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	return got;
}

/* One SQE and its CQE: the CQE's res (-ETIME if none within 10 s). */
static int one_rw(struct io_uring *ring, int fd, void *buf, size_t len,
		  off_t off, bool write, int rw_flags)
{
	int res = -ETIME;

	prep_rw(ring, fd, buf, len, off, write, rw_flags, 0);
	if (io_uring_submit(ring) != 1)
		return -EIO;
	reap(ring, 1, &res, 10000);
	return res;
}

static unsigned int nr_ops(struct fts *srv, uint32_t opcode)
{
	struct fts_stats st;

	fts_get_stats(srv, &st);
	return st.ops[opcode];
}

static void hold_all(struct fts *srv, uint32_t opcode)
{
	struct fts_policy pol;

	memset(&pol, 0, sizeof(pol));
	pol.hold_count = 100000;
	pol.hold_opcode = opcode;
	fts_set_policy(srv, &pol);
}

/* A server that implements FUSE_POLL and never reports a file ready. */
static void poll_never_ready(struct fts_config *cfg)
{
	cfg->poll = true;
	cfg->poll_revents = 0;
}

/* One that implements FUSE_POLL and always reports a file readable */
static void poll_ready(struct fts_config *cfg)
{
	cfg->poll = true;
	cfg->poll_revents = POLLIN | POLLRDNORM;
}

static long answer_later(void *srv)
{
	fdio_sleep_ms(1000);
	fdio_answer_all(srv);
	return 0;
}

/* Answer all once n READs reached the server (or after 3 s): 0 if they did */
struct answer_at {
	struct fts *srv;
	unsigned int n;
};

static long answer_at_reads(void *arg)
{
	struct answer_at *a = arg;
	long ret = fts_wait_outstanding(a->srv, a->n, 3000);

	fdio_answer_all(a->srv);
	return ret;
}

static long submit_all(void *arg)
{
	return io_uring_submit(arg);
}

/*
 * NR io_uring IOs of BS bytes, the server holding them: they must come
 * back from io_uring_submit() and reach the server with no io-wq worker;
 * then they complete with the right data.  Writes at [0, NR - 2) within
 * the file, the last two past EOF.
 */
static void uring_no_worker(struct __test_metadata *_metadata,
			    FIXTURE_DATA(nw) *self, bool write,
			    unsigned int at_server)
{
	int res[NR], i, workers;
	off_t off[NR];

	hold_all(self->srv, write ? FUSE_WRITE : FUSE_READ);
	for (i = 0; i < NR; i++) {
		off[i] = write && i >= NR - 2 ? SZ + (i - (NR - 2)) * BS :
						i * 32 * BS;
		if (write)
			memset(self->buf + i * BS, 0xa0 + i, BS);
		prep_rw(&self->ring, self->fd, self->buf + i * BS, BS, off[i],
			write, 0, i);
	}
	ASSERT_EQ(0, fdio_call_start(&self->call, submit_all, &self->ring));
	ASSERT_TRUE(fdio_call_wait(&self->call, 3000)) {
		TH_LOG("io_uring_submit() still blocked after 3 s");
	}
	ASSERT_EQ(NR, self->call.ret);
	EXPECT_EQ(0, fts_wait_outstanding(self->srv, at_server, 3000)) {
		TH_LOG("server got %u of %u requests",
		       nr_ops(self->srv, write ? FUSE_WRITE : FUSE_READ),
		       at_server);
	}
	workers = iowq_workers();
	TH_LOG("io-wq workers while %d IOs are in flight: %d", NR, workers);
	EXPECT_EQ(0, workers);

	fdio_answer_all(self->srv);
	ASSERT_EQ(NR, reap(&self->ring, NR, res, 10000));
	/* only now: the submitter's exit waits for its IOs (io_uring cancel) */
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	for (i = 0; i < NR; i++) {
		EXPECT_EQ(BS, res[i]) {
			TH_LOG("IO %d (offset %lld): %d", i, (long long)off[i], res[i]);
		}
	}
	if (write) {
		unsigned char *data = malloc(SZ + 2 * BS);

		ASSERT_NE(NULL, data);
		ASSERT_EQ((size_t)SZ + 2 * BS,
			  fts_get_data(self->srv, data, SZ + 2 * BS));
		for (i = 0; i < NR; i++)
			EXPECT_EQ(0, memcmp(data + off[i], self->buf + i * BS, BS));
		free(data);
	} else {
		for (i = 0; i < NR; i++)
			EXPECT_TRUE(pattern_ok(self->buf + i * BS, BS, off[i]));
	}
}

TEST_F(nw, uring_read_no_worker)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	uring_no_worker(_metadata, self, false, NR);
}

TEST_F(nw, gap_uring_write_no_worker)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	uring_no_worker(_metadata, self, true, NR);
}

TEST_F(nw, uring_odirect_read_no_worker)
{
	struct fts_config cfg;

	fdio_config(&cfg, 0);
	cfg.attr_timeout_ms = 60000;
	nw_start(_metadata, self, &cfg, O_DIRECT);
	uring_no_worker(_metadata, self, false, NR);
}

/*
 * A server that implements FUSE_POLL and reports the file not ready: its
 * files get no FMODE_NOWAIT, so io_uring keeps asking FUSE_POLL before a
 * read, and the READ does not reach the server (the IO waits for the
 * server's poll notification), as on stock.  With FMODE_NOWAIT the READ of
 * a file polled as an event source would go to the server at once, and a
 * multishot read would drop a short answer.
 */
TEST_F(nw, uring_poll_server_keeps_poll)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	unsigned int polls;

	poll_never_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	polls = nr_ops(self->srv, FUSE_POLL);	/* the series asks at open */
	prep_rw(&self->ring, self->fd, self->buf, BS, 0, false, 0, 0);
	ASSERT_EQ(1, io_uring_submit(&self->ring));
	fdio_sleep_ms(500);
	EXPECT_EQ(0U, nr_ops(self->srv, FUSE_READ));
	EXPECT_LT(polls, nr_ops(self->srv, FUSE_POLL));
	/* the ring's exit in the teardown cancels the poll */
}

/*
 * The common server: no FUSE_POLL (so stock io_uring issues inline with
 * IOCB_NOWAIT), max_background 4.  Stock sleeps in io_uring_submit() on
 * the fifth read; the series queues it past max_background.
 */
TEST_F(nw, gap_uring_past_max_background)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_background = 4;
	cfg.congestion_threshold = 3;
	nw_start(_metadata, self, &cfg, 0);
	uring_no_worker(_metadata, self, false, 4);
}

/*
 * The same with a server that did not opt in to FUSE_ASYNC_DIO_ALL (the
 * libfuse default): NOWAIT IO queues past max_background too, rather than
 * getting -EAGAIN and an io-wq worker that sleeps for the slot.
 */
TEST_F(nw, gap_uring_past_max_background_no_opt_in)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	cfg.max_background = 4;
	cfg.congestion_threshold = 3;
	nw_start(_metadata, self, &cfg, 0);
	uring_no_worker(_metadata, self, false, 4);
}

static long write_past_eof(void *arg)
{
	FIXTURE_DATA(nw) *self = arg;

	memset(self->buf + MIB, 0x5a, BS);
	return pwrite(self->fd, self->buf + MIB, BS, SZ);
}

TEST_F(nw, uring_locked_inode_no_block)
{
	/* static: the thread may outlive a failed test case's frame */
	static struct fdio_call submit;
	struct fts_config cfg;
	unsigned char *data;
	int res = -ETIME;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	hold_all(self->srv, FUSE_WRITE);
	/* a write past EOF takes the inode lock exclusively and waits */
	ASSERT_EQ(0, fdio_call_start(&self->call, write_past_eof, self));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 3000));

	memset(self->buf, 0x3c, BS);
	prep_rw(&self->ring, self->fd, self->buf, BS, 0, true, 0, 0);
	ASSERT_EQ(0, fdio_call_start(&submit, submit_all, &self->ring));
	if (!fdio_call_wait(&submit, 2000)) {
		fdio_answer_all(self->srv);
		fdio_call_join(&submit, 5000);
		ASSERT_TRUE(false) {
			TH_LOG("io_uring_submit() slept on the inode lock");
		}
	}
	/*
	 * Not joined yet: the thread's exit waits for the IO it issued (io_uring
	 * cancels and waits for a task's requests), which waits for the lock.
	 */
	ASSERT_EQ(1, submit.ret);
	EXPECT_EQ(1U, nr_ops(self->srv, FUSE_WRITE)) {
		TH_LOG("the io_uring write reached the server before the lock holder");
	}
	TH_LOG("io-wq workers while the inode is locked: %d", iowq_workers());

	fdio_answer_all(self->srv);
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	EXPECT_EQ(BS, self->call.ret);
	ASSERT_EQ(1, reap(&self->ring, 1, &res, 10000));
	EXPECT_EQ(BS, res);
	ASSERT_TRUE(fdio_call_join(&submit, 5000));
	data = malloc(SZ + BS);
	ASSERT_NE(NULL, data);
	ASSERT_EQ((size_t)SZ + BS, fts_get_data(self->srv, data, SZ + BS));
	EXPECT_EQ(0, memcmp(data, self->buf, BS));
	EXPECT_EQ(0, memcmp(data + SZ, self->buf + MIB, BS));
	EXPECT_TRUE(pattern_ok(data + BS, SZ - BS, BS));
	free(data);
}

TEST_F(nw, gap_rwf_nowait_locked_inode)
{
	struct fts_config cfg;
	unsigned int writes;
	int res = -ETIME;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	hold_all(self->srv, FUSE_WRITE);
	ASSERT_EQ(0, fdio_call_start(&self->call, write_past_eof, self));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 1, 3000));
	writes = nr_ops(self->srv, FUSE_WRITE);

	memset(self->buf, 0x3c, BS);
	prep_rw(&self->ring, self->fd, self->buf, BS, 0, true, RWF_NOWAIT, 0);
	ASSERT_EQ(1, io_uring_submit(&self->ring));
	ASSERT_EQ(1, reap(&self->ring, 1, &res, 3000)) {
		TH_LOG("no completion of the RWF_NOWAIT write while the inode is locked");
	}
	EXPECT_EQ(-EAGAIN, res);
	EXPECT_EQ(writes, nr_ops(self->srv, FUSE_WRITE));
	fdio_answer_all(self->srv);
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	EXPECT_EQ(BS, self->call.ret);
}

TEST_F(nw, gap_rwf_nowait_read)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	ASSERT_EQ(BS, one_rw(&self->ring, self->fd, self->buf, BS, 5 * BS,
			     false, RWF_NOWAIT));
	EXPECT_TRUE(pattern_ok(self->buf, BS, 5 * BS));
	memset(self->buf, 0x77, BS);
	ASSERT_EQ(BS, one_rw(&self->ring, self->fd, self->buf, BS, 9 * BS,
			     true, RWF_NOWAIT));
	ASSERT_EQ(BS, pread(self->fd, self->buf + BS, BS, 9 * BS));
	EXPECT_EQ(0, memcmp(self->buf, self->buf + BS, BS));
}

TEST_F(nw, gap_rwf_nowait_unmapped_buffer)
{
	struct fts_config cfg;
	unsigned int reads;
	unsigned char *m;
	int res;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	m = mmap(NULL, BS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	reads = nr_ops(self->srv, FUSE_READ);
	res = one_rw(&self->ring, self->fd, m, BS, 3 * BS, false, RWF_NOWAIT);
	EXPECT_EQ(-EAGAIN, res);
	EXPECT_EQ(reads, nr_ops(self->srv, FUSE_READ));
	m[0] = 1;	/* now it is mapped */
	EXPECT_EQ(BS, one_rw(&self->ring, self->fd, m, BS, 3 * BS, false,
			     RWF_NOWAIT));
	EXPECT_TRUE(pattern_ok(m, BS, 3 * BS));
	munmap(m, BS);
}

/* in flight (max_background) plus the overflow (FUSE_BG_OVERFLOW_MIN) */
#define QF_BG		4
#define QF_ALL		(QF_BG + 256)

TEST_F(nw, gap_rwf_nowait_queue_full)
{
	static int res[QF_ALL + 1];
	struct fts_config cfg;
	struct io_uring ring;
	int i;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	cfg.max_background = QF_BG;
	cfg.congestion_threshold = QF_BG - 1;
	nw_start(_metadata, self, &cfg, 0);
	ASSERT_EQ(0, io_uring_queue_init(512, &ring, 0));
	hold_all(self->srv, FUSE_READ);
	/* NOWAIT IO queues past max_background until the overflow is full */
	for (i = 0; i < QF_ALL; i++) {
		res[i] = -ETIME;
		prep_rw(&ring, self->fd, self->buf + i * BS, BS,
			(i % (SZ / BS)) * BS, false, 0, i);
	}
	ASSERT_EQ(QF_ALL, io_uring_submit(&ring));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, QF_BG, 3000));

	res[QF_ALL] = -ETIME;
	prep_rw(&ring, self->fd, self->buf + QF_ALL * BS, BS, 0, false,
		RWF_NOWAIT, QF_ALL);
	ASSERT_EQ(1, io_uring_submit(&ring));
	ASSERT_EQ(1, reap(&ring, 1, res, 3000)) {
		TH_LOG("no completion of the RWF_NOWAIT read while the queue is full");
	}
	EXPECT_EQ(-EAGAIN, res[QF_ALL]);
	EXPECT_EQ((unsigned int)QF_BG, nr_ops(self->srv, FUSE_READ));

	fdio_answer_all(self->srv);
	EXPECT_EQ(QF_ALL, reap(&ring, QF_ALL, res, 30000));
	for (i = 0; i < QF_ALL; i++) {
		EXPECT_EQ(BS, res[i]);
		EXPECT_TRUE(pattern_ok(self->buf + i * BS, BS,
				       (i % (SZ / BS)) * BS));
	}
	io_uring_queue_exit(&ring);
}

/*
 * An io_uring read and write of 1 MiB at 0 with RWF_NOWAIT: all of it, in
 * nreq requests each, the right data (the write filled with fill).
 */
static void rwf_nowait_1m(struct __test_metadata *_metadata,
			  FIXTURE_DATA(nw) *self, unsigned int nreq, int fill)
{
	unsigned int reads, writes;

	reads = nr_ops(self->srv, FUSE_READ);
	ASSERT_EQ(MIB, one_rw(&self->ring, self->fd, self->buf, MIB, 0,
			      false, RWF_NOWAIT));
	EXPECT_EQ(reads + nreq, nr_ops(self->srv, FUSE_READ));
	EXPECT_TRUE(pattern_ok(self->buf, MIB, 0));

	memset(self->buf, fill, MIB);
	writes = nr_ops(self->srv, FUSE_WRITE);
	ASSERT_EQ(MIB, one_rw(&self->ring, self->fd, self->buf, MIB, 0, true,
			      RWF_NOWAIT));
	EXPECT_EQ(writes + nreq, nr_ops(self->srv, FUSE_WRITE));
	ASSERT_EQ(MIB, pread(self->fd, self->buf + MIB, MIB, 0));
	EXPECT_EQ(0, memcmp(self->buf, self->buf + MIB, MIB));
}

TEST_F(nw, gap_rwf_nowait_multi_request)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);	/* 128 KiB requests */
	nw_start(_metadata, self, &cfg, 0);
	rwf_nowait_1m(_metadata, self, 8, 0x5a);
}

TEST_F(nw, gap_rwf_nowait_multi_request_unmapped)
{
	struct fts_config cfg;
	unsigned int reads;
	unsigned char *m;

	fdio_config(&cfg, FOPEN_DIRECT_IO);	/* 128 KiB requests */
	nw_start(_metadata, self, &cfg, 0);
	m = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	memset(m, 1, MIB / 2);		/* the first 4 requests' pages only */
	reads = nr_ops(self->srv, FUSE_READ);
	EXPECT_EQ(-EAGAIN, one_rw(&self->ring, self->fd, m, MIB, 0, false,
				  RWF_NOWAIT));
	EXPECT_EQ(reads, nr_ops(self->srv, FUSE_READ)) {
		TH_LOG("READs were sent for a NOWAIT read that was refused");
	}
	memset(m + MIB / 2, 1, MIB / 2);
	EXPECT_EQ(MIB, one_rw(&self->ring, self->fd, m, MIB, 0, false,
			      RWF_NOWAIT));
	EXPECT_EQ(reads + 8, nr_ops(self->srv, FUSE_READ));
	EXPECT_TRUE(pattern_ok(m, MIB, 0));
	munmap(m, MIB);
}

TEST_F(nw, uring_multi_request_no_worker)
{
	const size_t len = 256 << 10;	/* 2 requests of 128 KiB */
	struct fts_config cfg;
	int res[4], i, workers;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	hold_all(self->srv, FUSE_READ);
	for (i = 0; i < 4; i++)
		prep_rw(&self->ring, self->fd, self->buf + i * len, len,
			i * len, false, 0, i);
	ASSERT_EQ(0, fdio_call_start(&self->call, submit_all, &self->ring));
	ASSERT_TRUE(fdio_call_wait(&self->call, 3000)) {
		TH_LOG("io_uring_submit() still blocked after 3 s");
	}
	ASSERT_EQ(4, self->call.ret);
	EXPECT_EQ(0, fts_wait_outstanding(self->srv, 8, 3000)) {
		TH_LOG("server got %u of 8 READs",
		       nr_ops(self->srv, FUSE_READ));
	}
	workers = iowq_workers();
	TH_LOG("io-wq workers while 4 reads of 2 requests are in flight: %d",
	       workers);
	EXPECT_EQ(0, workers);
	fdio_answer_all(self->srv);
	ASSERT_EQ(4, reap(&self->ring, 4, res, 10000));
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	for (i = 0; i < 4; i++)
		EXPECT_EQ((int)len, res[i]);
	EXPECT_TRUE(pattern_ok(self->buf, 4 * len, 0));
}

TEST_F(nw, gap_preadv2_nowait_multi_request)
{
	struct iovec iov = { self->buf, MIB };
	struct fts_config cfg;
	unsigned int reads;
	ssize_t ret;

	fdio_config(&cfg, FOPEN_DIRECT_IO);	/* 128 KiB requests */
	nw_start(_metadata, self, &cfg, 0);
	reads = nr_ops(self->srv, FUSE_READ);
	ret = preadv2(self->fd, &iov, 1, 0, RWF_NOWAIT);
	EXPECT_EQ(MIB, ret) {
		TH_LOG("RWF_NOWAIT read of 1 MiB: %zd (%s)", ret,
		       ret < 0 ? strerror(errno) : "bytes");
	}
	EXPECT_EQ(reads + 8, nr_ops(self->srv, FUSE_READ));
	EXPECT_TRUE(pattern_ok(self->buf, MIB, 0));
	memset(self->buf, 0x3c, 256 << 10);
	iov.iov_len = 256 << 10;
	EXPECT_EQ(256 << 10, pwritev2(self->fd, &iov, 1, 0, RWF_NOWAIT));
	ASSERT_EQ(256 << 10, pread(self->fd, self->buf + MIB, 256 << 10, 0));
	EXPECT_EQ(0, memcmp(self->buf, self->buf + MIB, 256 << 10));
}

/*
 * max_background 4, the server holding every READ: one io_uring read of
 * 1 MiB is 8 requests, 4 of them queued past max_background.  Submission
 * returns, no io-wq worker, 4 READs at the server, then the data.
 */
TEST_F(nw, gap_uring_multi_request_past_max_background)
{
	struct fts_config cfg;
	int res = -ETIME, workers;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_background = 4;
	cfg.congestion_threshold = 3;
	nw_start(_metadata, self, &cfg, 0);
	hold_all(self->srv, FUSE_READ);
	prep_rw(&self->ring, self->fd, self->buf, MIB, 0, false, 0, 0);
	ASSERT_EQ(0, fdio_call_start(&self->call, submit_all, &self->ring));
	ASSERT_TRUE(fdio_call_wait(&self->call, 3000)) {
		TH_LOG("io_uring_submit() still blocked after 3 s");
	}
	ASSERT_EQ(1, self->call.ret);
	EXPECT_EQ(0, fts_wait_outstanding(self->srv, 4, 3000));
	fdio_sleep_ms(100);
	EXPECT_EQ(4U, nr_ops(self->srv, FUSE_READ));
	workers = iowq_workers();
	TH_LOG("io-wq workers while 1 MiB (8 requests) is in flight: %d",
	       workers);
	EXPECT_EQ(0, workers);
	fdio_answer_all(self->srv);
	ASSERT_EQ(1, reap(&self->ring, 1, &res, 10000));
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	EXPECT_EQ(MIB, res);
	EXPECT_EQ(8U, nr_ops(self->srv, FUSE_READ));
	EXPECT_TRUE(pattern_ok(self->buf, MIB, 0));
}

/*
 * The overflow has room for 6 more requests (250 of 256 queued behind 4
 * held READs): an RWF_NOWAIT read of 1 MiB (8 requests) gets -EAGAIN with
 * nothing sent; once the queue drained, the same read returns the 1 MiB.
 */
#define NR_FILL		(4 + 250)

TEST_F(nw, gap_rwf_nowait_multi_request_no_room)
{
	static int res[NR_FILL];
	struct fts_config cfg;
	struct io_uring ring;
	int i;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_background = 4;
	cfg.congestion_threshold = 3;
	nw_start(_metadata, self, &cfg, 0);
	ASSERT_EQ(0, io_uring_queue_init(512, &ring, 0));
	hold_all(self->srv, FUSE_READ);
	for (i = 0; i < NR_FILL; i++) {
		res[i] = -ETIME;
		prep_rw(&ring, self->fd, self->buf + MIB + (i % 64) * BS, BS,
			(i % (SZ / BS)) * BS, false, 0, i);
	}
	ASSERT_EQ(NR_FILL, io_uring_submit(&ring));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, 4, 3000));
	EXPECT_EQ(-EAGAIN, one_rw(&self->ring, self->fd, self->buf, MIB, 0,
				  false, RWF_NOWAIT));
	EXPECT_EQ(4U, nr_ops(self->srv, FUSE_READ));
	fdio_answer_all(self->srv);
	EXPECT_EQ(NR_FILL, reap(&ring, NR_FILL, res, 30000));
	for (i = 0; i < NR_FILL; i++)
		EXPECT_EQ(BS, res[i]);
	io_uring_queue_exit(&ring);
	ASSERT_EQ(MIB, one_rw(&self->ring, self->fd, self->buf, MIB, 0, false,
			      RWF_NOWAIT));
	EXPECT_TRUE(pattern_ok(self->buf, MIB, 0));
}

TEST_F(nw, gap_rwf_nowait_one_request_1m)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_read = 0;
	cfg.max_write = MIB;
	cfg.max_pages = 256;		/* 1 MiB requests */
	nw_start(_metadata, self, &cfg, 0);
	rwf_nowait_1m(_metadata, self, 1, 0x42);
}

/*
 * A NOWAIT read past EOF is counted after its trim at EOF: 1 MiB at
 * EOF - 4 KiB is one 4 KiB READ, not eight 128 KiB ones.  Stock refuses
 * RWF_NOWAIT on FUSE files (-EOPNOTSUPP: no FMODE_NOWAIT).
 */
TEST_F(nw, gap_nowait_read_at_eof_one_request)
{
	struct fts_config cfg;
	unsigned int reads;

	fdio_config(&cfg, 0);			/* i_size is trusted */
	cfg.attr_timeout_ms = 60000;
	nw_start(_metadata, self, &cfg, O_DIRECT);
	reads = nr_ops(self->srv, FUSE_READ);
	ASSERT_EQ(BS, one_rw(&self->ring, self->fd, self->buf, MIB, SZ - BS,
			     false, RWF_NOWAIT));
	EXPECT_TRUE(pattern_ok(self->buf, BS, SZ - BS));
	EXPECT_EQ(reads + 1, nr_ops(self->srv, FUSE_READ));
}

/*
 * preadv2() of BS at rd and pwritev2() of BS (filled with fill) at wr,
 * both with RWF_NOWAIT: one request each, the right data.  A sync NOWAIT
 * IO waits for its own request, as on a block device.
 */
static void preadv2_nowait(struct __test_metadata *_metadata,
			   FIXTURE_DATA(nw) *self, off_t rd, off_t wr, int fill)
{
	struct iovec iov = { self->buf, BS };
	unsigned int reads, writes;

	reads = nr_ops(self->srv, FUSE_READ);
	writes = nr_ops(self->srv, FUSE_WRITE);
	ASSERT_EQ(BS, preadv2(self->fd, &iov, 1, rd, RWF_NOWAIT)) {
		TH_LOG("preadv2(RWF_NOWAIT): %s", strerror(errno));
	}
	EXPECT_TRUE(pattern_ok(self->buf, BS, rd));
	EXPECT_EQ(reads + 1, nr_ops(self->srv, FUSE_READ));
	memset(self->buf, fill, BS);
	ASSERT_EQ(BS, pwritev2(self->fd, &iov, 1, wr, RWF_NOWAIT)) {
		TH_LOG("pwritev2(RWF_NOWAIT): %s", strerror(errno));
	}
	EXPECT_EQ(writes + 1, nr_ops(self->srv, FUSE_WRITE));
	ASSERT_EQ(BS, pread(self->fd, self->buf + BS, BS, wr));
	EXPECT_EQ(0, memcmp(self->buf, self->buf + BS, BS));
}

TEST_F(nw, gap_preadv2_nowait)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	preadv2_nowait(_metadata, self, 6 * BS, 7 * BS, 0x6b);
}

/*
 * max_background READs of another open file held by the server: a sync
 * RWF_NOWAIT read does not wait for a background slot (it takes the
 * serial path, whose synchronous request needs none) and is not refused
 * for one; it returns the data when the server answers it.
 */
TEST_F(nw, gap_preadv2_nowait_slots_busy)
{
	struct iovec iov = { self->buf, BS };
	static int res[QF_BG];
	struct answer_at at;
	struct io_uring ring;
	struct fts_config cfg;
	int fd2, i;
	ssize_t ret;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_background = QF_BG;
	cfg.congestion_threshold = QF_BG - 1;
	nw_start(_metadata, self, &cfg, 0);
	fd2 = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, io_uring_queue_init(64, &ring, 0));
	hold_all(self->srv, FUSE_READ);
	for (i = 0; i < QF_BG; i++)
		prep_rw(&ring, fd2, self->buf + MIB + i * BS, BS, i * BS, false,
			0, i);
	ASSERT_EQ(QF_BG, io_uring_submit(&ring));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, QF_BG, 3000));
	/* its READ must reach the server while the slots are still taken */
	at.srv = self->srv;
	at.n = QF_BG + 1;
	ASSERT_EQ(0, fdio_call_start(&self->call, answer_at_reads, &at));
	ret = preadv2(self->fd, &iov, 1, 8 * BS, RWF_NOWAIT);
	EXPECT_EQ(BS, ret) {
		TH_LOG("preadv2(RWF_NOWAIT) with the slots taken: %zd (%s)",
		       ret, ret < 0 ? strerror(errno) : "bytes");
	}
	ASSERT_TRUE(fdio_call_join(&self->call, 5000));
	EXPECT_EQ(0, self->call.ret) {
		TH_LOG("the READ reached the server only once the slots were free");
	}
	EXPECT_TRUE(pattern_ok(self->buf, BS, 8 * BS));
	EXPECT_EQ(QF_BG, reap(&ring, QF_BG, res, 10000));
	io_uring_queue_exit(&ring);
	close(fd2);
}

TEST_F(nw, gap_preadv2_nowait_no_opt_in)
{
	struct fts_config cfg;

	/*
	 * Without the opt-in, sync IO takes the serial path; a NOWAIT one
	 * takes it with or without, and gets its data all the same.
	 */
	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	nw_start(_metadata, self, &cfg, 0);
	preadv2_nowait(_metadata, self, 3 * BS, 5 * BS, 0x3c);
}

/* not in bookworm's liburing 2.3 */
#define NW_IORING_OP_READ_MULTISHOT	49
#define NW_BGID				7
#define NW_NBUF				4

/*
 * io_uring's multishot read needs ->poll: the series leaves it to the
 * files of servers with FUSE_POLL, which get no FMODE_NOWAIT, and where
 * direct IO ignores the IOCB_NOWAIT of its sync kiocb as stock does.  It
 * must read, from the file position, into the provided buffers until they
 * run out, never end with -ECANCELED or keep getting -EAGAIN.  Not a gap:
 * stock reads too.
 *
 * uring_multishot(): a multishot read of "file" into nbuf provided
 * buffers of bsz bytes at bufs: every buffer gets bsz bytes, in file
 * order, and the read ends with -ENOBUFS (or 0 at EOF).  Fewer buffers
 * than io_uring's 128 re-arms of a multishot read: past them io_uring
 * ends the read without moving the file position past what it returned
 * (stock too; a read armed again returns the same data).
 */
static void arm_multishot(struct __test_metadata *_metadata,
			  FIXTURE_DATA(nw) *self)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&self->ring);

	io_uring_prep_rw(NW_IORING_OP_READ_MULTISHOT, sqe, self->fd, NULL, 0,
			 (__u64)-1);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = NW_BGID;
	ASSERT_EQ(1, io_uring_submit(&self->ring));
}

static void uring_multishot(struct __test_metadata *_metadata,
			    FIXTURE_DATA(nw) *self, unsigned char *bufs,
			    int bsz, int nbuf)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 10 };
	int data = 0, n = 0, filled = 0;
	bool more = true;

	sqe = io_uring_get_sqe(&self->ring);
	io_uring_prep_provide_buffers(sqe, bufs, bsz, nbuf, NW_BGID, 0);
	ASSERT_EQ(1, io_uring_submit(&self->ring));
	ASSERT_EQ(0, io_uring_wait_cqe(&self->ring, &cqe));
	ASSERT_EQ(0, cqe->res) {
		TH_LOG("IORING_OP_PROVIDE_BUFFERS: %s", strerror(-cqe->res));
	}
	io_uring_cqe_seen(&self->ring, cqe);

	arm_multishot(_metadata, self);
	while (more && n < 2 * nbuf) {
		ASSERT_EQ(0, io_uring_wait_cqe_timeout(&self->ring, &cqe, &ts)) {
			TH_LOG("no CQE %d of the multishot read within 10 s (%d buffers filled)",
			       n, filled);
		}
		more = cqe->flags & IORING_CQE_F_MORE;
		if (cqe->res == -EINVAL && !n) {
			io_uring_cqe_seen(&self->ring, cqe);
			SKIP(return, "IORING_OP_READ_MULTISHOT not supported");
		}
		if (cqe->res > 0) {
			unsigned int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

			ASSERT_NE(0U, cqe->flags & IORING_CQE_F_BUFFER);
			ASSERT_LT(bid, (unsigned int)nbuf);
			EXPECT_EQ(bsz, cqe->res);
			EXPECT_TRUE(pattern_ok(bufs + (size_t)bid * bsz,
					       cqe->res, data)) {
				size_t o;

				for (o = 0; o < SZ; o += BS)
					if (pattern_ok(bufs + (size_t)bid * bsz,
						       BS, o))
						break;
				TH_LOG("buffer %u, %d bytes: file data of offset %zu, expected %d",
				       bid, cqe->res, o, data);
			}
			data += cqe->res;
			filled++;
		} else {
			/* the end: out of buffers (or EOF), nothing else */
			EXPECT_FALSE(more);
			EXPECT_TRUE(cqe->res == -ENOBUFS || cqe->res == 0) {
				TH_LOG("multishot read ended with %d (%s) after %d bytes",
				       cqe->res, strerror(-cqe->res), data);
			}
		}
		io_uring_cqe_seen(&self->ring, cqe);
		n++;
	}
	EXPECT_EQ(nbuf, filled);
	TH_LOG("multishot read: %d bytes into %d buffers of %d", data, filled,
	       bsz);
}

/*
 * On a server without FUSE_POLL the series' FMODE_NOWAIT files have no
 * ->poll, as the regular files of ext4: a multishot read is refused
 * (-EBADFD) and so is epoll_ctl() (EPERM); poll() reports them ready.
 * Stock takes them as always ready.
 */
TEST_F(nw, gap_nowait_file_not_pollable)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct pollfd pfd = { .events = POLLIN };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct fts_config cfg;
	int ep;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	nw_start(_metadata, self, &cfg, 0);
	pfd.fd = self->fd;
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	ep = epoll_create1(0);
	ASSERT_LE(0, ep);
	EXPECT_EQ(-1, epoll_ctl(ep, EPOLL_CTL_ADD, self->fd, &ev));
	EXPECT_EQ(EPERM, errno);
	close(ep);

	sqe = io_uring_get_sqe(&self->ring);
	io_uring_prep_provide_buffers(sqe, self->buf, BS, NW_NBUF, NW_BGID, 0);
	ASSERT_EQ(1, io_uring_submit(&self->ring));
	ASSERT_EQ(0, io_uring_wait_cqe(&self->ring, &cqe));
	ASSERT_EQ(0, cqe->res);
	io_uring_cqe_seen(&self->ring, cqe);
	arm_multishot(_metadata, self);
	ASSERT_EQ(0, io_uring_wait_cqe(&self->ring, &cqe));
	if (cqe->res == -EINVAL)
		SKIP(return, "IORING_OP_READ_MULTISHOT not supported");
	EXPECT_EQ(-EBADFD, cqe->res);
	EXPECT_EQ(0U, cqe->flags & IORING_CQE_F_MORE);
	io_uring_cqe_seen(&self->ring, cqe);
	EXPECT_EQ(0, lseek(self->fd, 0, SEEK_CUR));
}

/*
 * On a server with FUSE_POLL that reports the file readable: the file keeps
 * ->poll and gets no FMODE_NOWAIT; io_uring polls, then issues the reads as
 * a sync kiocb with IOCB_NOWAIT, which direct IO ignores there.
 */
TEST_F(nw, uring_read_multishot)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	poll_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	uring_multishot(_metadata, self, self->buf, BS, NW_NBUF);
}

TEST_F(nw, uring_read_multishot_no_opt_in)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	poll_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	uring_multishot(_metadata, self, self->buf, BS, NW_NBUF);
}

/* Buffers of 256 KiB, more than one 128 KiB request each */
TEST_F(nw, uring_read_multishot_big_buffers)
{
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	poll_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	uring_multishot(_metadata, self, self->buf, 256 << 10, NW_NBUF);
}

/* Buffers never touched: pinning them needs faults */
TEST_F(nw, uring_read_multishot_untouched)
{
	struct fts_config cfg;
	unsigned char *m;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	poll_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	m = mmap(NULL, NW_NBUF * BS, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	uring_multishot(_metadata, self, m, BS, NW_NBUF);
	munmap(m, NW_NBUF * BS);
}

/*
 * A multishot read while max_background async reads of another open
 * file are held by the server: it must not end with -ECANCELED or hang,
 * and reads the data once the server answers (stock sends it as a
 * synchronous request, which no background slot limits).
 */
TEST_F(nw, uring_read_multishot_slots_busy)
{
	static int res[QF_BG];
	struct io_uring ring;
	struct fts_config cfg;
	int fd2, i;

	fdio_config(&cfg, FOPEN_DIRECT_IO);
	cfg.max_background = QF_BG;
	cfg.congestion_threshold = QF_BG - 1;
	poll_ready(&cfg);
	nw_start(_metadata, self, &cfg, 0);
	fd2 = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, io_uring_queue_init(64, &ring, 0));
	hold_all(self->srv, FUSE_READ);
	for (i = 0; i < QF_BG; i++)
		prep_rw(&ring, fd2, self->buf + MIB + i * BS, BS, i * BS, false,
			0, i);
	ASSERT_EQ(QF_BG, io_uring_submit(&ring));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, QF_BG, 3000));
	/* the multishot read's READs are held too: answer all in 1 s */
	ASSERT_EQ(0, fdio_call_start(&self->call, answer_later, self->srv));
	uring_multishot(_metadata, self, self->buf, BS, NW_NBUF);
	EXPECT_EQ(QF_BG, reap(&ring, QF_BG, res, 10000));
	io_uring_queue_exit(&ring);
	close(fd2);
}

TEST_F(nw, gap_nowait_buffered_after_fcntl)
{
	struct iovec iov = { self->buf, BS };
	struct fts_config cfg;
	unsigned int reads, writes;
	int fl, i;

	fdio_config(&cfg, 0);
	cfg.attr_timeout_ms = 60000;
	nw_start(_metadata, self, &cfg, O_DIRECT);
	fl = fcntl(self->fd, F_GETFL);
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, fl & ~O_DIRECT));
	reads = nr_ops(self->srv, FUSE_READ);
	writes = nr_ops(self->srv, FUSE_WRITE);

	memset(self->buf, 0x11, BS);
	EXPECT_EQ(-1, pwritev2(self->fd, &iov, 1, 0, RWF_NOWAIT));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(writes, nr_ops(self->srv, FUSE_WRITE));

	/*
	 * An uncached page: -EAGAIN, but readahead is started (background
	 * READs, FUSE_ASYNC_READ, a free slot), so a later NOWAIT read finds
	 * the data.  IOCB_NOIO on every NOWAIT read would leave a sequential
	 * io_uring reader with an -EAGAIN at each readahead window.  The
	 * server holds the READ until the read returned: answered at once,
	 * it may make the page uptodate before the read looks again after
	 * starting readahead, and the read rightly returns the data.
	 */
	hold_all(self->srv, FUSE_READ);
	EXPECT_EQ(-1, preadv2(self->fd, &iov, 1, 32 * BS, RWF_NOWAIT));
	EXPECT_EQ(EAGAIN, errno);
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_READ, reads + 1, 3000)) {
		TH_LOG("no readahead READ sent by the NOWAIT read");
	}
	fdio_answer_all(self->srv);
	memset(self->buf, 0, BS);
	for (i = 0; i < 100; i++) {
		if (preadv2(self->fd, &iov, 1, 32 * BS, RWF_NOWAIT) == BS)
			break;
		ASSERT_EQ(EAGAIN, errno);
		usleep(10000);
	}
	ASSERT_LT(i, 100) {
		TH_LOG("the page read ahead never became readable without waiting");
	}
	EXPECT_TRUE(pattern_ok(self->buf, BS, 32 * BS));
	reads = nr_ops(self->srv, FUSE_READ);
	EXPECT_EQ(BS, preadv2(self->fd, &iov, 1, 32 * BS, RWF_NOWAIT));
	EXPECT_EQ(reads, nr_ops(self->srv, FUSE_READ));
}

TEST_F(nw, stream_file_no_nowait)
{
	struct iovec iov = { self->buf, BS };
	struct fts_config cfg;

	fdio_config(&cfg, FOPEN_DIRECT_IO | FOPEN_STREAM);
	nw_start(_metadata, self, &cfg, 0);
	EXPECT_EQ(-1, preadv2(self->fd, &iov, 1, -1, RWF_NOWAIT));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(-EOPNOTSUPP, one_rw(&self->ring, self->fd, self->buf, BS, -1,
				      false, RWF_NOWAIT));
	EXPECT_EQ(BS, read(self->fd, self->buf, BS));
	EXPECT_TRUE(pattern_ok(self->buf, BS, 0));
}

TEST_HARNESS_MAIN
