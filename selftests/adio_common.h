/* SPDX-License-Identifier: GPL-2.0 */
/*
 * adio_common.h - helpers shared by the adio_* selftests (libaio direct IO
 * on files the server opened WITHOUT FOPEN_DIRECT_IO, opened with
 * O_DIRECT: part 2 of the series).  Same conventions as fdio_common.h:
 * 128 KiB requests, a case named gap_* (gap612_*, gap73_*: on that base
 * only) fails on the stock fuse.ko and
 * passes on the patched one, every other case passes on both.
 */
#ifndef ADIO_COMMON_H
#define ADIO_COMMON_H

#include <libaio.h>
#include <sys/stat.h>

#include "fdio_common.h"

#define ADIO_MAX_IOCB	128

/* fdio_config() for a normal (page cache) file. */
static inline void adio_config(struct fts_config *cfg)
{
	fdio_config(cfg, 0);
}

/*
 * Policy hook: fail the WRITE at file offset *(uint64_t *)arg with EIO,
 * whichever order the requests of one IO arrive in.  The offset lives in
 * the test's memory, which the server inherits at fork.
 */
static inline void adio_fail_write_at(void *arg, const struct fts_io *io,
				      struct fts_action *action)
{
	if (io->opcode == FUSE_WRITE && io->offset == *(uint64_t *)arg) {
		action->act = FTS_ACT_FAIL;
		action->err = EIO;
	}
}

/* Hold every WRITE (or READ) until timeout_ms after the oldest held one. */
static inline void adio_hold(struct fts_policy *pol, uint32_t opcode,
			     unsigned int timeout_ms)
{
	pol->hold_count = 100000;
	pol->hold_timeout_ms = timeout_ms;
	pol->hold_opcode = opcode;
}

/*
 * n iocbs in one io_submit(): returns what io_submit() returned and the time
 * it took in *ms.  iocb i is a read or write of len bytes at off[i] from
 * bufs[i].
 */
static inline long adio_submit(io_context_t ctx, struct iocb *cbs, int n,
			       int fd, void **bufs, size_t len,
			       const off_t *off, bool write, uint64_t *ms)
{
	struct iocb *ptrs[ADIO_MAX_IOCB];
	uint64_t t0;
	long ret;
	int i;

	for (i = 0; i < n && i < ADIO_MAX_IOCB; i++) {
		if (write)
			io_prep_pwrite(&cbs[i], fd, bufs[i], len, off[i]);
		else
			io_prep_pread(&cbs[i], fd, bufs[i], len, off[i]);
		cbs[i].data = (void *)(uintptr_t)i;
		ptrs[i] = &cbs[i];
	}
	t0 = fdio_now_ns();
	ret = io_submit(ctx, n, ptrs);
	*ms = (fdio_now_ns() - t0) / 1000000;
	return ret;
}

/* Collect n events within ms into res[iocb index]; the number collected. */
static inline int adio_reap(io_context_t ctx, int n, long *res, int ms)
{
	struct io_event ev[ADIO_MAX_IOCB];
	uint64_t end = fdio_now_ms() + ms;
	int got = 0, r, i;

	while (got < n) {
		uint64_t now = fdio_now_ms();
		struct timespec ts;

		if (now >= end)
			break;
		ts.tv_sec = (end - now) / 1000;
		ts.tv_nsec = ((end - now) % 1000) * 1000000;
		r = io_getevents(ctx, 1, n - got, ev, &ts);
		if (r < 0 && r != -EINTR)
			break;
		for (i = 0; i < r; i++)
			res[(uintptr_t)ev[i].data] = (long)ev[i].res;
		if (r > 0)
			got += r;
	}
	return got;
}

/* Index of the first res[i] != want, or -1. */
static inline int adio_first_not(const long *res, int n, long want)
{
	int i;

	for (i = 0; i < n; i++)
		if (res[i] != want)
			return i;
	return -1;
}

/* st_size of path (-errno on error). */
static inline long long adio_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	return st.st_size;
}

#endif /* ADIO_COMMON_H */
