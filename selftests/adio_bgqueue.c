// SPDX-License-Identifier: GPL-2.0
/*
 * adio_bgqueue: AIO submission at max_background, and what queueing AIO
 * past max_background must not do to the rest of the connection.
 *
 * Every case: max_background 4 (congestion_threshold 3) at INIT, "file" of
 * 256 KiB opened with O_DIRECT, libaio reads of 4 KiB, and the server
 * answers each READ 100 ms after it arrived.
 *
 *  - gap_submit_past_max_background: 64 reads in one io_submit() (16
 *    rounds of 4: 1.6 s).  io_submit() must return before the server
 *    received half of them, the server must never see more than 4 READs
 *    at once, and all 64 reads
 *    must return the right data.  The stock module sleeps in io_submit()
 *    whenever 4 requests are in flight, so it returns only when the last
 *    round was sent (>= 1.5 s).
 *  - buffered_read_not_starved: a thread submits 64 reads in one
 *    io_submit() and, once that returned, keeps them in flight for 2 s
 *    (each one resubmitted as it completes).  When the server has received
 *    another 4 READs after that io_submit() returned, the test reads 64 KiB
 *    through a second descriptor of the file opened without O_DIRECT.  Readahead sends that read as a background
 *    READ, which the server tells from the AIO by its flags field (no
 *    O_DIRECT).  That READ must reach the server before more than 12
 *    (2 * max_background + 4) further AIO READs: the buffered read may wait
 *    for a background slot, but it must get one of the next few, not wait
 *    until the AIO load is gone.  The test checks the order of the
 *    requests, not the time they took, and prints the read's latency.
 *    Stock passes because the AIO submitter sleeps in the same FIFO queue
 *    as readahead.  A queue past max_background that counts in
 *    num_background fails: fc->blocked stays set as long as the AIO keeps
 *    more than max_background requests queued.
 *  - no_opt_in_submit_waits: the gap case with a server that did not ask
 *    for FUSE_ASYNC_DIO_ALL at INIT, which gets the stock behaviour:
 *    io_submit() of the 64 reads sleeps while 4 are in flight (it must take
 *    at least 700 ms, stock takes about 1.5 s), the server never sees more
 *    than 4 READs, and the data is right.
 *  - gap_dio_not_starved_by_writeback: a server with FUSE_WRITEBACK_CACHE
 *    that holds every READ.  MAXBG + 1 libaio reads are submitted (from a
 *    thread: stock sleeps in io_submit() for the last one): MAXBG take the
 *    slots, the last waits for one (on the overflow, or in fuse_get_req()
 *    on stock).  Then WB_PAGES separate dirty pages of the file are
 *    written back by fsync() (from a thread), whose WRITEs are queued
 *    behind the slots without a limit (writeback is not held back by
 *    max_background).  Once the fusectl "waiting" count shows them all,
 *    the server answers everything.  The last read's READ must reach the
 *    server before more than 2 of the WRITEs: the direct IO and the
 *    writeback share the slots.  Stock and a queue that sends from the
 *    overflow only when nothing else waits send all WB_PAGES WRITEs first,
 *    as they would any number of them while something keeps dirtying the
 *    file; a sync direct write waits for that without being killable.
 *    The reads' data, fsync()'s result and the written data are checked.
 *  - unprivileged_cap: the module parameter max_user_bgreq set to 8
 *    (restored afterwards), the server mounted from a user namespace as in
 *    adio_userns, so it lacks CAP_SYS_ADMIN in the initial one.  Such a
 *    server may have at most max_user_bgreq - max_background = 4 requests
 *    queued past max_background, so io_submit() of the 64 reads must sleep
 *    as in no_opt_in_submit_waits (at least 700 ms), with at most 4 READs
 *    at the server.  SKIP if the kernel has no user namespaces or the
 *    module has no max_user_bgreq parameter.
 *  - gap_two_cpus_submit_past_max_background: the gap case split between
 *    two threads on two CPUs, 32 reads each (one, and once both threads
 *    have sent theirs, so that each CPU's ring queue has a counted
 *    request whichever thread runs first, the other 31 in one
 *    io_submit()), and the server holds every READ until both returned
 *    (10 s at most; stock sleeps in them until answers come).  Both must return,
 *    all reads must return the right data, and the server may see MAXBG
 *    READs at once, plus one for each further ring queue used (see below;
 *    the uring variant must use two).  SKIP with one CPU.
 *
 * Transports (variants): dev serves over /dev/fuse, uring over
 * FUSE-over-io_uring (SKIP on kernels without it), where every READ/WRITE
 * must have come over a ring queue.  The ring sends a request on the queue
 * of the CPU its task runs on and queues background requests per queue;
 * with the series, async direct IO past max_background waits on one
 * overflow of the ring instead, which whichever queue has a slot below
 * max_background draws from, taking turns with its other background
 * requests; and fuse_uring_flush_bg() lets a queue with no background
 * request at the server send one counted request whatever the connection's
 * count.  So in the uring variant the test process is kept on one CPU,
 * which makes every case but the two-CPU one use one queue and hold to the
 * same bounds and orders as /dev/fuse; the two-CPU case allows the
 * per-queue allowance, MAXBG + (queues used - 1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "adio_common.h"
#include "userns_common.h"

#define NR	64
#define BS	4096
#define SZ	(NR * BS)
#define DELAY	100
#define MAXBG	4		/* max_background at INIT */
#define LOAD_MS	2000		/* buffered_read_not_starved: AIO load */
#define BOFF	(128 << 10)	/* ... and its buffered read */
#define BLEN	(64 << 10)
#define BGREQ	"/sys/module/fuse/parameters/max_user_bgreq"
#define USER_BGREQ	8
#define ENABLE_URING	"/sys/module/fuse/parameters/enable_uring"

FIXTURE(bgq) {
	struct fts *srv;
	struct fts_config cfg;
	io_context_t ctx;
	int fd;
	void *buf;
	void *ref;
	cpu_set_t cpus;		/* where the test could run before pinning */
	int cpu;		/* uring: the one it runs on, else -1 */
};

FDIO_TRANSPORT_VARIANTS(bgq);

FIXTURE_SETUP(bgq)
{
	self->fd = -1;
	self->ctx = 0;
	self->cpu = -1;
	FDIO_SKIP_WITHOUT_TRANSPORT(variant->transport);
	ASSERT_EQ(0, sched_getaffinity(0, sizeof(self->cpus), &self->cpus));
	adio_config(&self->cfg);
	self->cfg.transport = variant->transport;
	self->cfg.max_background = MAXBG;
	self->cfg.congestion_threshold = 3;
	self->cfg.policy.rules[0] = (struct fts_rule){
		FUSE_READ, 0, { FTS_ACT_DELAY, 0, 0, DELAY } };
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, SZ));
	self->ref = malloc(SZ);
	ASSERT_NE(NULL, self->ref);
	fts_fill_pattern(self->ref, SZ, 0, 71);
	memset(self->buf, 0, SZ);
	ASSERT_EQ(0, io_setup(NR, &self->ctx));
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	self->fd = open(fts_file(self->srv), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(SZ, adio_size(fts_file(self->srv)));
	fts_reset(self->srv);
	if (variant->transport == FTS_TRANSPORT_URING) {
		/* one ring queue for all our requests, see the top */
		self->cpu = fdio_one_queue();
		ASSERT_LE(0, self->cpu);
	}
}

FIXTURE_TEARDOWN(bgq)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctx)
		io_destroy(self->ctx);
	fts_stop(self->srv);
	free(self->buf);
	free(self->ref);
}

TEST_F_TIMEOUT(bgq, gap_submit_past_max_background, 60)
{
	struct iocb cbs[NR];
	void *bufs[NR];
	off_t off[NR];
	long res[NR];
	struct fts_stats st;
	uint64_t ms, t0, all;
	unsigned int at_return;
	long long d;
	int i, bad;

	for (i = 0; i < NR; i++) {
		off[i] = (off_t)i * BS;
		bufs[i] = (char *)self->buf + off[i];
	}
	t0 = fdio_now_ms();
	ASSERT_EQ(NR, adio_submit(self->ctx, cbs, NR, self->fd, bufs, BS, off,
				  false, &ms));
	fts_get_stats(self->srv, &st);
	at_return = st.reads;
	TH_LOG("io_submit of %d reads: %llu ms (server: %u READs received by then)",
	       NR, (unsigned long long)ms, st.reads);
	ASSERT_EQ(NR, adio_reap(self->ctx, NR, res, 20000));
	all = fdio_now_ms() - t0;
	bad = adio_first_not(res, NR, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	fts_get_stats(self->srv, &st);
	TH_LOG("all done in %llu ms; server: %u READs, max outstanding %u",
	       (unsigned long long)all, st.reads, st.max_outstanding);
	EXPECT_EQ(NR, (int)st.reads);
	EXPECT_LE(st.max_outstanding, 4U);
	/*
	 * By order, not by time (a loaded host can make io_submit() slow):
	 * a submitter that sleeps while 4 are in flight returns only once the
	 * server has received all but the last round.
	 */
	EXPECT_LE(at_return, (unsigned int)NR / 2)
		TH_LOG("io_submit slept while max_background were in flight");
	d = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, d) TH_LOG("data differs at %lld", d);
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
}

/* Restart the server with self->cfg, "file" as before, opened again. */
static void bgq_restart(struct __test_metadata *_metadata,
			FIXTURE_DATA(bgq) *self)
{
	close(self->fd);
	self->fd = -1;
	fts_stop(self->srv);
	self->srv = NULL;
	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->ref, SZ));
	self->fd = open(fts_file(self->srv), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, self->fd);
	fts_reset(self->srv);
}

/*
 * An AIO load: NR reads of BS, read i at i * BS into buf + i * BS, in one
 * io_submit(), then each one submitted again as soon as it completed, for
 * LOAD_MS after that io_submit() returned (until_ms, then "going" is set);
 * the events of the last ones are waited for up to 20 s more.
 */
struct aio_load {
	io_context_t ctx;
	int fd;
	char *buf;
	const char *ref;
	uint64_t until_ms, give_up_ms;
	int going;		/* atomic: the first io_submit() returned */
	struct iocb cbs[NR];
	uint64_t sub_ns[NR];
	/* results */
	int err;		/* first error of io_submit/io_getevents */
	unsigned int done;	/* reads completed */
	unsigned int bad;	/* ... with a wrong result or data */
	int left;		/* reads still in flight at the end */
	unsigned int resubmitted;
	uint64_t start_ns, submit_ns, first_ev_ns;
	uint64_t lat_sum_ns, lat_max_ns;
};

static void aio_load_prep(struct aio_load *l, int i)
{
	io_prep_pread(&l->cbs[i], l->fd, l->buf + (size_t)i * BS, BS,
		      (off_t)i * BS);
	l->cbs[i].data = (void *)(uintptr_t)i;
	l->sub_ns[i] = fdio_now_ns();
}

static void *aio_load_main(void *arg)
{
	struct aio_load *l = arg;
	struct io_event ev[NR];
	struct iocb *ptrs[NR];
	int inflight, i, j, r, s;

	l->start_ns = fdio_now_ns();
	for (i = 0; i < NR; i++) {
		aio_load_prep(l, i);
		ptrs[i] = &l->cbs[i];
	}
	r = io_submit(l->ctx, NR, ptrs);
	l->submit_ns = fdio_now_ns();
	l->until_ms = l->submit_ns / 1000000 + LOAD_MS;
	l->give_up_ms = l->until_ms + 20000;
	__atomic_store_n(&l->going, 1, __ATOMIC_RELEASE);
	if (r != NR)
		l->err = r < 0 ? r : -EAGAIN;
	inflight = r > 0 ? r : 0;
	while (inflight > 0 && fdio_now_ms() < l->give_up_ms) {
		struct timespec ts = { 0, 200 * 1000000L };

		r = io_getevents(l->ctx, 1, NR, ev, &ts);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			l->err = r;
			break;
		}
		for (j = 0; j < r; j++) {
			uint64_t lat;

			i = (uintptr_t)ev[j].data;
			if (!l->first_ev_ns)
				l->first_ev_ns = fdio_now_ns();
			lat = fdio_now_ns() - l->sub_ns[i];
			inflight--;
			l->done++;
			l->lat_sum_ns += lat;
			if (lat > l->lat_max_ns)
				l->lat_max_ns = lat;
			if ((long)ev[j].res != BS ||
			    memcmp(l->buf + (size_t)i * BS,
				   l->ref + (size_t)i * BS, BS))
				l->bad++;
			if (fdio_now_ms() >= l->until_ms)
				continue;
			aio_load_prep(l, i);
			ptrs[0] = &l->cbs[i];
			s = io_submit(l->ctx, 1, ptrs);
			if (s == 1) {
				inflight++;
				l->resubmitted++;
			} else if (!l->err) {
				l->err = s < 0 ? s : -EAGAIN;
			}
		}
	}
	l->left = inflight;
	return NULL;
}

TEST_F_TIMEOUT(bgq, buffered_read_not_starved, 60)
{
	const unsigned int limit = 2 * MAXBG + 4;
	unsigned int n0, ahead = 0, bufreads = 0;
	struct fts_io *ios = NULL;
	struct fts_io *first = NULL;
	struct aio_load *l;
	struct fts_stats st;
	uint64_t t0, t1;
	pthread_t th;
	char *cbuf;
	ssize_t got;
	size_t n, i;
	long long d;
	int bfd;

	bfd = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, bfd);
	cbuf = malloc(BLEN);
	ASSERT_NE(NULL, cbuf);
	l = calloc(1, sizeof(*l));
	ASSERT_NE(NULL, l);
	l->ctx = self->ctx;
	l->fd = self->fd;
	l->buf = self->buf;
	l->ref = self->ref;
	ASSERT_EQ(0, pthread_create(&th, NULL, aio_load_main, l));

	/*
	 * Once all 64 are queued (the stock module returns from io_submit()
	 * only when the last ones went out) and a round was answered since,
	 * the AIO is going round.
	 */
	for (i = 0; i < 2000 && !__atomic_load_n(&l->going, __ATOMIC_ACQUIRE);
	     i++)
		fdio_sleep_ms(10);
	ASSERT_TRUE(__atomic_load_n(&l->going, __ATOMIC_ACQUIRE))
		TH_LOG("io_submit() of %d reads did not return within 20 s", NR);
	fts_get_stats(self->srv, &st);
	ASSERT_EQ(0, fts_wait_ops(self->srv, FUSE_READ, st.reads + MAXBG,
				  10000));
	fts_get_stats(self->srv, &st);
	n0 = st.reads + st.writes;
	t0 = fdio_now_ns();
	got = pread(bfd, cbuf, BLEN, BOFF);
	t1 = fdio_now_ns();
	pthread_join(th, NULL);

	TH_LOG("buffered read of %d KiB under AIO load: %llu ms (the load went on for %lld ms after the read began)",
	       BLEN >> 10, (unsigned long long)(t1 - t0) / 1000000,
	       (long long)l->until_ms - (long long)(t0 / 1000000));
	TH_LOG("AIO: first io_submit %llu ms, first event after %llu ms, %u resubmitted",
	       (unsigned long long)(l->submit_ns - l->start_ns) / 1000000,
	       (unsigned long long)(l->first_ev_ns ?
				    l->first_ev_ns - l->start_ns : 0) / 1000000,
	       l->resubmitted);
	TH_LOG("AIO: %u reads done, %u bad, %d left, latency mean %llu ms, max %llu ms, error %d",
	       l->done, l->bad, l->left,
	       (unsigned long long)(l->done ? l->lat_sum_ns / l->done / 1000000 : 0),
	       (unsigned long long)l->lat_max_ns / 1000000, l->err);
	EXPECT_EQ(BLEN, got) TH_LOG("read: %s", got < 0 ? strerror(errno) : "short");
	d = fts_first_diff(cbuf, (char *)self->ref + BOFF, BLEN);
	EXPECT_EQ(-1, d) TH_LOG("buffered data differs at %lld", d);
	EXPECT_EQ(0, l->err);
	EXPECT_EQ(0U, l->bad);
	EXPECT_EQ(0, l->left);

	n = fts_get_ios(self->srv, &ios);
	for (i = 0; i < n; i++) {
		if (ios[i].opcode != FUSE_READ)
			continue;
		if (!(ios[i].file_flags & O_DIRECT)) {
			bufreads++;
			if (!first)
				first = &ios[i];
		} else if (!first && ios[i].seq > n0) {
			ahead++;
		}
	}
	fts_get_stats(self->srv, &st);
	TH_LOG("server: %u READs (%u buffered), max outstanding %u; %u AIO READs arrived after the read() began and before its first READ",
	       st.reads, bufreads, st.max_outstanding, ahead);
	if (first)
		TH_LOG("the first buffered READ (%u bytes at %llu) arrived %lld ms after the read() began, as READ %u of %zu",
		       first->size, (unsigned long long)first->offset,
		       ((long long)first->recv_ns - (long long)t0) / 1000000,
		       first->seq, n);
	EXPECT_LE(st.max_outstanding, (unsigned int)MAXBG);
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
	ASSERT_NE(NULL, first) TH_LOG("no READ without O_DIRECT reached the server");
	EXPECT_LE(ahead, limit)
		TH_LOG("the buffered read's READ waited behind %u AIO READs (more than %u): readahead starved by AIO queued past max_background",
		       ahead, limit);
	free(ios);
	free(l);
	free(cbuf);
	close(bfd);
}

TEST_F_TIMEOUT(bgq, no_opt_in_submit_waits, 60)
{
	struct iocb cbs[NR];
	void *bufs[NR];
	off_t off[NR];
	long res[NR];
	struct fts_stats st;
	uint64_t ms;
	long long d;
	int i, bad;

	self->cfg.init_flags &= ~FUSE_ASYNC_DIO_ALL;
	bgq_restart(_metadata, self);
	fts_get_stats(self->srv, &st);
	ASSERT_EQ(0ULL, st.flags & FUSE_ASYNC_DIO_ALL);

	for (i = 0; i < NR; i++) {
		off[i] = (off_t)i * BS;
		bufs[i] = (char *)self->buf + off[i];
	}
	ASSERT_EQ(NR, adio_submit(self->ctx, cbs, NR, self->fd, bufs, BS, off,
				  false, &ms));
	fts_get_stats(self->srv, &st);
	TH_LOG("io_submit of %d reads without FUSE_ASYNC_DIO_ALL: %llu ms (server: %u READs received by then)",
	       NR, (unsigned long long)ms, st.reads);
	ASSERT_EQ(NR, adio_reap(self->ctx, NR, res, 20000));
	bad = adio_first_not(res, NR, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	fts_get_stats(self->srv, &st);
	EXPECT_EQ(NR, (int)st.reads);
	EXPECT_LE(st.max_outstanding, (unsigned int)MAXBG);
	EXPECT_GE(ms, (uint64_t)(NR / MAXBG - 2) * DELAY / 2)
		TH_LOG("io_submit did not sleep at max_background, yet the server did not opt in");
	d = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, d) TH_LOG("data differs at %lld", d);
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
}

#define WB_PAGES	16		/* writeback: dirty pages, every other */
#define DOFF		(128 << 10)	/* ... and the direct reads after them */

struct bgq_submit {
	io_context_t ctx;
	int fd;
	int n;
	struct iocb cbs[MAXBG + 1];
	void *bufs[MAXBG + 1];
	off_t off[MAXBG + 1];
	uint64_t ms;
};

static long bgq_submit_main(void *arg)
{
	struct bgq_submit *a = arg;

	return adio_submit(a->ctx, a->cbs, a->n, a->fd, a->bufs, BS, a->off,
			   false, &a->ms);
}

static long bgq_fsync_main(void *arg)
{
	return fsync(*(int *)arg);
}

TEST_F_TIMEOUT(bgq, gap_dio_not_starved_by_writeback, 60)
{
	const unsigned int want = MAXBG + 1 + WB_PAGES;
	struct fdio_call sub, sync;
	struct bgq_submit a;
	struct fts_io *ios = NULL;
	struct fts_stats st;
	unsigned int ahead = 0, writes = 0, last_seq = 0;
	uint64_t last_unique = 0;
	long res[MAXBG + 1];
	char *data, *wref;
	long long d;
	size_t n, i;
	int wfd, w = 0, bad;

	memset(&self->cfg.policy, 0, sizeof(self->cfg.policy));
	self->cfg.policy.rules[0] = (struct fts_rule){
		FUSE_READ, 0, { FTS_ACT_NO_REPLY, 0, 0, 0 } };
	self->cfg.init_flags |= FUSE_WRITEBACK_CACHE;
	bgq_restart(_metadata, self);
	fts_get_stats(self->srv, &st);
	ASSERT_NE(0ULL, st.flags & FUSE_WRITEBACK_CACHE);
	/* stock has no FUSE_ASYNC_DIO_ALL: the last read sleeps for a slot */
	TH_LOG("FUSE_ASYNC_DIO_ALL %s", st.flags & FUSE_ASYNC_DIO_ALL ?
	       "negotiated" : "not offered");
	wfd = open(fts_file(self->srv), O_RDWR);
	ASSERT_LE(0, wfd);
	wref = malloc(SZ);
	ASSERT_NE(NULL, wref);
	fts_fill_pattern(wref, SZ, 0, 72);

	memset(&a, 0, sizeof(a));
	a.ctx = self->ctx;
	a.fd = self->fd;
	a.n = MAXBG + 1;
	for (i = 0; i < (size_t)a.n; i++) {
		a.off[i] = DOFF + (off_t)i * BS;
		a.bufs[i] = (char *)self->buf + a.off[i];
	}
	ASSERT_EQ(0, fdio_call_start(&sub, bgq_submit_main, &a));
	ASSERT_EQ(0, fts_wait_outstanding(self->srv, MAXBG, 10000))
		TH_LOG("the server did not get %d READs", MAXBG);

	for (i = 0; i < WB_PAGES; i++)
		ASSERT_EQ(BS, pwrite(wfd, wref + 2 * i * BS, BS, 2 * i * BS));
	ASSERT_EQ(0, fdio_call_start(&sync, bgq_fsync_main, &wfd));
	for (i = 0; i < 2000; i++) {
		w = fts_waiting(self->srv);
		if (w < 0 || w >= (int)want)
			break;
		fdio_sleep_ms(5);
	}
	if (w < 0) {
		fdio_answer_all(self->srv);
		fts_release_stalled(self->srv, 0);
		ASSERT_TRUE(fdio_call_join(&sync, 20000));
		ASSERT_TRUE(fdio_call_join(&sub, 20000));
		adio_reap(self->ctx, MAXBG + 1, res, 20000);
		free(wref);
		close(wfd);
		SKIP(return, "no fusectl \"waiting\" count: %s", strerror(-w));
	}
	TH_LOG("%d requests waiting (the server holds %d READs)", w, MAXBG);
	EXPECT_GE(w, (int)want)
		TH_LOG("fewer than %u requests (%d READs, %d WRITEs) were queued within 10 s",
		       want, MAXBG + 1, WB_PAGES);

	fdio_answer_all(self->srv);
	fts_release_stalled(self->srv, 0);
	ASSERT_TRUE(fdio_call_join(&sync, 20000)) TH_LOG("fsync() hangs");
	EXPECT_EQ(0, sync.ret) TH_LOG("fsync: %s", strerror(sync.err));
	ASSERT_TRUE(fdio_call_join(&sub, 20000)) TH_LOG("io_submit() hangs");
	ASSERT_EQ(MAXBG + 1, sub.ret);
	ASSERT_EQ(MAXBG + 1, adio_reap(self->ctx, MAXBG + 1, res, 20000));
	bad = adio_first_not(res, MAXBG + 1, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	d = fts_first_diff((char *)self->buf + DOFF, (char *)self->ref + DOFF,
			   (MAXBG + 1) * BS);
	EXPECT_EQ(-1, d) TH_LOG("read data differs at %lld", d);

	/*
	 * The kernel numbers requests (unique) as it sends them; the log's
	 * seq is the order in which the server's threads took them.
	 */
	n = fts_get_ios(self->srv, &ios);
	for (i = 0; i < n; i++)
		if (ios[i].opcode == FUSE_READ &&
		    ios[i].offset == (uint64_t)a.off[MAXBG]) {
			last_seq = ios[i].seq;
			last_unique = ios[i].unique;
		}
	for (i = 0; i < n; i++) {
		if (ios[i].opcode != FUSE_WRITE)
			continue;
		writes++;
		if (last_seq && ios[i].unique < last_unique)
			ahead++;
	}
	TH_LOG("the last read's READ arrived as request %u of %zu, after %u of the %u WRITEs",
	       last_seq, n, ahead, writes);
	ASSERT_NE(0U, last_seq) TH_LOG("no READ of the last read");
	EXPECT_GE(writes, (unsigned int)WB_PAGES);
	EXPECT_LE(ahead, 2U)
		TH_LOG("direct IO waited behind %u writeback WRITEs: starved by writeback",
		       ahead);
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);

	data = malloc(SZ);
	ASSERT_NE(NULL, data);
	ASSERT_EQ((size_t)SZ, fts_get_data(self->srv, data, SZ));
	for (i = 0; i < WB_PAGES; i++) {
		d = fts_first_diff(data + 2 * i * BS, wref + 2 * i * BS, BS);
		EXPECT_EQ(-1, d) TH_LOG("written page %zu differs at %lld",
					2 * i, d);
	}
	free(data);
	free(wref);
	free(ios);
	close(wfd);
}

/* What the unprivileged_cap child saw, in shared memory. */
struct uns_result {
	int ret;		/* 0, 1: skip, or -errno of step why */
	char why[128];
	long submitted;
	uint64_t submit_ms;
	unsigned int reads_by_then;
	int reaped;
	int bad;		/* first read with a wrong result, or -1 */
	long long diff;		/* first wrong byte, or -1 */
	unsigned int reads, max_outstanding;
	unsigned int ring_requests;
};

/* Record that step failed with err (1: skip the case); returns err. */
static int uns_fail(struct uns_result *r, const char *step, int err)
{
	snprintf(r->why, sizeof(r->why), "%s", step);
	r->ret = err;
	return err;
}

/*
 * In a child of the test process: make /dev/fuse usable by UNS_UID if it
 * is not (a 0666 node bound over it in a mount namespace of our own),
 * become UNS_UID, then root of a new user namespace that maps only it,
 * and run the case there with mount points under dir (owned by UNS_UID).
 */
static int uns_child(struct uns_result *r, const struct fts_config *cfg,
		     const char *dir, const char *node, void *buf,
		     const void *ref)
{
	struct iocb cbs[NR];
	void *bufs[NR];
	off_t off[NR];
	long res[NR];
	struct fts_stats st;
	io_context_t ctx = 0;
	struct fts *srv;
	const char *why = "";
	int fd, i, ret;

	ret = uns_enter(dir, node, &why);
	if (ret)
		return uns_fail(r, why, ret);

	ret = fts_start(cfg, &srv);
	if (ret)
		return uns_fail(r, "mounting FUSE in the user namespace", ret);
	ret = fts_set_data(srv, ref, SZ);
	fd = open(fts_file(srv), O_RDONLY | O_DIRECT);
	if (ret || fd < 0) {
		uns_fail(r, "setting up the file", ret ? ret : -errno);
		fts_stop(srv);
		return r->ret;
	}
	ret = io_setup(NR, &ctx);
	if (ret) {
		uns_fail(r, "io_setup", ret);
		close(fd);
		fts_stop(srv);
		return ret;
	}
	fts_reset(srv);
	for (i = 0; i < NR; i++) {
		off[i] = (off_t)i * BS;
		bufs[i] = (char *)buf + off[i];
	}
	r->submitted = adio_submit(ctx, cbs, NR, fd, bufs, BS, off, false,
				   &r->submit_ms);
	fts_get_stats(srv, &st);
	r->reads_by_then = st.reads;
	if (r->submitted > 0)
		r->reaped = adio_reap(ctx, r->submitted, res, 20000);
	r->bad = r->reaped == NR ? adio_first_not(res, NR, BS) : 0;
	r->diff = fts_first_diff(buf, ref, SZ);
	fts_get_stats(srv, &st);
	r->reads = st.reads;
	r->max_outstanding = st.max_outstanding;
	r->ring_requests = st.ring_requests;
	io_destroy(ctx);
	close(fd);
	fts_stop(srv);
	return 0;
}

TEST_F_TIMEOUT(bgq, unprivileged_cap, 90)
{
	const char *tmp = getenv("TMPDIR");
	const char *why = "";
	char dir[256], node[300], old[32], val[16], uring_old[8] = "";
	bool ring = self->cfg.transport == FTS_TRANSPORT_URING;
	struct uns_result *r;
	ssize_t len;
	int pfd, status, ret;
	pid_t pid;

	if (!uns_available(&why))
		SKIP(return, "%s", why);
	pfd = open(BGREQ, O_RDONLY);
	if (pfd < 0)
		SKIP(return, "no %s", BGREQ);
	len = read(pfd, old, sizeof(old) - 1);
	close(pfd);
	ASSERT_LT(0, len);
	old[len] = '\0';

	/* the root-mounted server of the fixture is not needed */
	close(self->fd);
	self->fd = -1;
	fts_stop(self->srv);
	self->srv = NULL;

	r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, r);
	memset(r, 0, sizeof(*r));
	snprintf(dir, sizeof(dir), "%s/adio_bgqueue.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(node, sizeof(node), "%s/fuse", dir);

	snprintf(val, sizeof(val), "%d", USER_BGREQ);
	ret = uns_write_file(BGREQ, val);
	ASSERT_EQ(0, ret) TH_LOG("setting max_user_bgreq: %s", strerror(-ret));
	if (ring) {
		/* the unprivileged server can not set it */
		pfd = open(ENABLE_URING, O_RDONLY);
		ASSERT_LE(0, pfd);
		len = read(pfd, uring_old, 1);
		close(pfd);
		ASSERT_EQ(1, len);
		ret = uns_write_file(ENABLE_URING, "Y");
		ASSERT_EQ(0, ret) TH_LOG("setting enable_uring: %s",
					 strerror(-ret));
	}
	pid = fork();
	if (pid == 0) {
		uns_child(r, &self->cfg, dir, node, self->buf, self->ref);
		_exit(0);
	}
	status = pid > 0 ? fdio_wait_child(pid, 60000) : 0;
	if (status == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	ret = uns_write_file(BGREQ, old);
	unlink(node);
	rmdir(dir);
	EXPECT_EQ(0, ret) TH_LOG("restoring max_user_bgreq to %s", old);
	if (ring) {
		ret = uns_write_file(ENABLE_URING, uring_old);
		EXPECT_EQ(0, ret) TH_LOG("restoring enable_uring to %s",
					 uring_old);
	}
	ASSERT_LT(0, pid);
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("the namespace child did not finish (status %#x)", status);
	if (r->ret == 1)
		SKIP(return, "%s", r->why);
	ASSERT_EQ(0, r->ret) TH_LOG("%s: %s", r->why, strerror(-r->ret));

	TH_LOG("max_user_bgreq %d, unprivileged server: io_submit of %d reads: %llu ms (server: %u READs received by then)",
	       USER_BGREQ, NR, (unsigned long long)r->submit_ms,
	       r->reads_by_then);
	TH_LOG("server: %u READs, max outstanding %u", r->reads,
	       r->max_outstanding);
	EXPECT_EQ(NR, r->submitted);
	EXPECT_EQ(NR, r->reaped);
	EXPECT_EQ(-1, r->bad);
	EXPECT_EQ(-1, r->diff);
	EXPECT_EQ(NR, (int)r->reads);
	/* the READs and nothing else since fts_reset() on the ring */
	EXPECT_TRUE(ring ? (int)r->ring_requests >= NR : !r->ring_requests)
		TH_LOG("%u requests of the %d READs came over io_uring",
		       r->ring_requests, NR);
	EXPECT_LE(r->max_outstanding, (unsigned int)MAXBG);
	EXPECT_GE(r->submit_ms, (uint64_t)(NR / MAXBG - 2) * DELAY / 2)
		TH_LOG("io_submit did not sleep: more than max_user_bgreq - max_background requests were queued for a server without CAP_SYS_ADMIN");
	munmap(r, sizeof(*r));
}

/* One thread's half of gap_two_cpus_submit_past_max_background: reads
 * first .. first + NR / 2 - 1 (iocb data: the read's number). */
struct bgq_half {
	io_context_t ctx;
	int fd, cpu, first;
	char *buf;
	pthread_barrier_t *go;	/* both pinned and ready */
	pthread_barrier_t *one;	/* both submitted their first read */
	int err;		/* pinning: 0 or an errno */
	long ret;		/* io_submit() */
	uint64_t ms;
	int done;		/* atomic: io_submit() returned */
	struct iocb cbs[NR / 2];
};

static void *bgq_half_main(void *arg)
{
	struct bgq_half *h = arg;
	struct iocb *ptrs[NR / 2];
	cpu_set_t one;
	uint64_t t0;
	int i;

	CPU_ZERO(&one);
	CPU_SET(h->cpu, &one);
	h->err = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	for (i = 0; i < NR / 2; i++) {
		off_t off = (off_t)(h->first + i) * BS;

		io_prep_pread(&h->cbs[i], h->fd, h->buf + off, BS, off);
		h->cbs[i].data = (void *)(uintptr_t)(h->first + i);
		ptrs[i] = &h->cbs[i];
	}
	pthread_barrier_wait(h->go);
	/*
	 * One read each first, so that both CPUs' ring queues have a counted
	 * request whichever thread runs first; then the rest, past the limit.
	 */
	t0 = fdio_now_ns();
	h->ret = h->err ? -1 : io_submit(h->ctx, 1, ptrs);
	pthread_barrier_wait(h->one);
	if (h->ret == 1) {
		long r = io_submit(h->ctx, NR / 2 - 1, ptrs + 1);

		h->ret = r < 0 ? r : r + 1;
	}
	h->ms = (fdio_now_ns() - t0) / 1000000;
	__atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool bgq_halves_done(struct bgq_half *h)
{
	return __atomic_load_n(&h[0].done, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&h[1].done, __ATOMIC_ACQUIRE);
}

TEST_F_TIMEOUT(bgq, gap_two_cpus_submit_past_max_background, 60)
{
	bool ring = self->cfg.transport == FTS_TRANSPORT_URING;
	struct bgq_half h[2];
	struct fts_policy pol;
	pthread_barrier_t go, one;
	pthread_t th[2];
	struct fts_io *ios;
	struct fts_stats at, st;
	unsigned int limit, nqueues;
	uint64_t queues = 0, end;
	bool returned;
	long res[NR];
	long long d;
	int cpus[2], n = 0, c, i, bad;
	size_t k, nios;

	for (c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &self->cpus))
			cpus[n++] = c;
	if (n < 2)
		SKIP(return, "only one CPU to run on");
	/* hold every READ until both submissions returned, or 10 s */
	memset(&pol, 0, sizeof(pol));
	adio_hold(&pol, FUSE_READ, 0);
	fts_set_policy(self->srv, &pol);
	ASSERT_EQ(0, pthread_barrier_init(&go, NULL, 2));
	ASSERT_EQ(0, pthread_barrier_init(&one, NULL, 2));
	for (i = 0; i < 2; i++) {
		memset(&h[i], 0, sizeof(h[i]));
		h[i].ctx = self->ctx;
		h[i].fd = self->fd;
		h[i].cpu = cpus[i];
		h[i].first = i * NR / 2;
		h[i].buf = self->buf;
		h[i].go = &go;
		h[i].one = &one;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, bgq_half_main,
					    &h[i]));
	}
	end = fdio_now_ms() + 10000;
	while (!bgq_halves_done(h) && fdio_now_ms() < end)
		fdio_sleep_ms(5);
	returned = bgq_halves_done(h);
	/* what reached the server meanwhile (it has no more to send) */
	fts_wait_outstanding(self->srv, MAXBG + 1, returned ? 300 : 0);
	fts_get_stats(self->srv, &at);
	fdio_answer_all(self->srv);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&one);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, h[i].err) TH_LOG("pinning a thread to CPU %d: %s",
					      h[i].cpu, strerror(h[i].err));
		TH_LOG("CPU %d: io_submit of %d reads: %ld in %llu ms",
		       h[i].cpu, NR / 2, h[i].ret, (unsigned long long)h[i].ms);
	}
	TH_LOG("both io_submit() %s while the server held %u READs (%u answered)",
	       returned ? "returned" : "had not returned after 10 s",
	       at.held, at.reads - at.outstanding);
	ASSERT_EQ(NR / 2, h[0].ret);
	ASSERT_EQ(NR / 2, h[1].ret);
	ASSERT_EQ(NR, adio_reap(self->ctx, NR, res, 20000));
	bad = adio_first_not(res, NR, BS);
	EXPECT_EQ(-1, bad) TH_LOG("read %d: %ld", bad, res[bad < 0 ? 0 : bad]);
	d = fts_first_diff(self->buf, self->ref, SZ);
	EXPECT_EQ(-1, d) TH_LOG("data differs at %lld", d);

	fts_get_stats(self->srv, &st);
	nios = fts_get_ios(self->srv, &ios);
	for (k = 0; k < nios; k++)
		if (ios[k].qid >= 0 && ios[k].qid < 64)
			queues |= 1ULL << ios[k].qid;
	free(ios);
	nqueues = __builtin_popcountll(queues);
	limit = MAXBG + (nqueues > 1 ? nqueues - 1 : 0);
	TH_LOG("server: %u READs over %u ring queues, max outstanding %u (at most %u)",
	       st.reads, nqueues, st.max_outstanding, limit);
	EXPECT_EQ(NR, (int)st.reads);
	if (ring) {
		EXPECT_EQ(2U, nqueues)
			TH_LOG("the two CPUs' READs did not come on two ring queues");
	}
	EXPECT_LE(st.max_outstanding, limit);
	EXPECT_TRUE(returned)
		TH_LOG("io_submit slept while max_background READs were held");
	FDIO_EXPECT_TRANSPORT(self->srv, self->cfg.transport);
}

TEST_HARNESS_MAIN
