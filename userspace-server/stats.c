/* READ/WRITE counters, JSON output and the SIGUSR1/SIGUSR2 thread. */
#define _GNU_SOURCE
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

void stats_init(struct stats *st, const char *path)
{
	memset(st, 0, sizeof(*st));
	st->path = path;
	st->sigfd = -1;
	st->stopfd = -1;
	pthread_mutex_init(&st->emit_lock, NULL);
}

void stats_destroy(struct stats *st)
{
	pthread_mutex_destroy(&st->emit_lock);
}

static void raise_max(atomic_int_fast64_t *max, int_fast64_t cur)
{
	int_fast64_t m = atomic_load(max);

	while (cur > m && !atomic_compare_exchange_weak(max, &m, cur))
		;
}

void stats_begin(struct stats *st, enum io_kind kind)
{
	atomic_fetch_add(&st->requests[kind], 1);
	raise_max(&st->max_inflight[kind],
		  atomic_fetch_add(&st->inflight[kind], 1) + 1);
	raise_max(&st->max_inflight_all,
		  atomic_fetch_add(&st->inflight_all, 1) + 1);
}

void stats_end(struct stats *st, enum io_kind kind, uint64_t bytes)
{
	atomic_fetch_add(&st->bytes[kind], bytes);
	atomic_fetch_sub(&st->inflight[kind], 1);
	atomic_fetch_sub(&st->inflight_all, 1);
}

void stats_reset(struct stats *st)
{
	for (int k = 0; k < 2; k++) {
		atomic_store(&st->requests[k], 0);
		atomic_store(&st->bytes[k], 0);
		atomic_store(&st->max_inflight[k], atomic_load(&st->inflight[k]));
	}
	atomic_store(&st->max_inflight_all, atomic_load(&st->inflight_all));
	atomic_store(&st->ring_requests, 0);
}

static int format(struct stats *st, char *buf, size_t len)
{
	return snprintf(buf, len,
		"{\"read_requests\":%" PRIuFAST64 ",\"write_requests\":%" PRIuFAST64
		",\"read_bytes\":%" PRIuFAST64 ",\"write_bytes\":%" PRIuFAST64
		",\"max_inflight_read\":%" PRIdFAST64 ",\"max_inflight_write\":%" PRIdFAST64
		",\"max_inflight\":%" PRIdFAST64 ",\"ring_requests\":%" PRIuFAST64 "}\n",
		atomic_load(&st->requests[IO_READ]), atomic_load(&st->requests[IO_WRITE]),
		atomic_load(&st->bytes[IO_READ]), atomic_load(&st->bytes[IO_WRITE]),
		atomic_load(&st->max_inflight[IO_READ]),
		atomic_load(&st->max_inflight[IO_WRITE]),
		atomic_load(&st->max_inflight_all),
		atomic_load(&st->ring_requests));
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int emit_file(const char *path, const char *line, size_t len)
{
	char tmp[4096];
	int fd, err;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid())
	    >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	err = write_all(fd, line, len);
	if (close(fd) < 0 && err == 0)
		err = -errno;
	if (err == 0 && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

int stats_emit(struct stats *st)
{
	char line[512];
	int len = format(st, line, sizeof(line));
	int err;

	pthread_mutex_lock(&st->emit_lock);
	if (st->path) {
		err = emit_file(st->path, line, (size_t)len);
		if (err)
			fprintf(stderr, "passthrough: cannot write stats to %s: %s\n",
				st->path, strerror(-err));
	} else {
		err = write_all(STDERR_FILENO, line, (size_t)len);
	}
	pthread_mutex_unlock(&st->emit_lock);
	return err;
}

static void stats_sigset(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
}

int stats_block_signals(void)
{
	sigset_t set;

	stats_sigset(&set);
	return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *stats_thread(void *arg)
{
	struct stats *st = arg;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = st->sigfd, .events = POLLIN },
			{ .fd = st->stopfd, .events = POLLIN },
		};
		struct signalfd_siginfo si;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "passthrough: stats thread: poll: %s\n",
				strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (read(st->sigfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGUSR1)
			stats_emit(st);
		else if (si.ssi_signo == SIGUSR2)
			stats_reset(st);
	}
	return NULL;
}

int stats_signals_start(struct stats *st)
{
	sigset_t set;
	int err;

	stats_sigset(&set);
	st->sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (st->sigfd < 0) {
		err = errno;
		fprintf(stderr, "passthrough: signalfd: %s\n", strerror(err));
		return -err;
	}
	st->stopfd = eventfd(0, EFD_CLOEXEC);
	if (st->stopfd < 0) {
		err = errno;
		fprintf(stderr, "passthrough: eventfd: %s\n", strerror(err));
		goto fail;
	}
	err = pthread_create(&st->thread, NULL, stats_thread, st);
	if (err) {
		fprintf(stderr, "passthrough: cannot start stats thread: %s\n",
			strerror(err));
		goto fail;
	}
	st->thread_running = true;
	return 0;
fail:
	if (st->stopfd >= 0)
		close(st->stopfd);
	close(st->sigfd);
	st->stopfd = st->sigfd = -1;
	return -err;
}

void stats_signals_stop(struct stats *st)
{
	uint64_t one = 1;

	if (!st->thread_running)
		return;
	if (write(st->stopfd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "passthrough: cannot stop stats thread: %s\n",
			strerror(errno));
	else
		pthread_join(st->thread, NULL);
	st->thread_running = false;
	close(st->stopfd);
	close(st->sigfd);
	st->stopfd = st->sigfd = -1;
}
