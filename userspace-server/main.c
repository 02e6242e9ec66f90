/*
 * passthrough: a FUSE passthrough server for direct-IO work (fuse-adio)
 *
 * Mounts directory SOURCE at MOUNTPOINT and passes every operation
 * through to it, on libfuse's low-level API.  It is the server side of the
 * fuse-adio tests and benchmarks: it can force FOPEN_DIRECT_IO and
 * FOPEN_PARALLEL_DIRECT_WRITES, switch FUSE_ASYNC_DIO off, bound request
 * size (max_pages) and background requests, add a per-request latency
 * without tying up threads, run the backend IO on io_uring, and count how
 * many READ/WRITE requests the kernel keeps in flight at once.
 *
 * How it is built:
 *   - inode.c   O_PATH fd per backing inode, keyed by (st_dev, st_ino),
 *               refcounted by LOOKUP/FORGET; fuse_ino_t is its address.
 *   - ops.c     metadata operations, synchronous on the worker thread.
 *   - handles.c open files/dirs, closed at exit if never released.
 *   - io.c      READ/WRITE: an io_req goes handler -> backend ->
 *               io_complete() -> reply, or -> delay queue -> reply.
 *   - backend_sync.c / backend_uring.c   pread/pwrite, or io_uring with a
 *               completion thread, behind struct io_backend.
 *   - delay.c   --latency-us: min-heap + one reply thread per worker that
 *               replies when due; replies may be sent from any thread in
 *               libfuse.
 *   - stats.c   atomic counters; SIGUSR1 emits, SIGUSR2 resets.
 *   - devio.c   FOPEN_PARALLEL_DIRECT_WRITES for libfuse < 3.15, the
 *               series' FUSE_ASYNC_DIO_ALL INIT flag (no libfuse has it),
 *               and the reply hook of the io_uring transport.
 *   - transport_uring.c   --transport uring: FUSE-over-io_uring queues,
 *               one thread per CPU, requests dispatched through libfuse.
 *
 * Threads: libfuse's multi-threaded loop (fuse_session_loop_mt) with
 * max_threads = --threads and idle threads never reaped.  It starts a new
 * worker whenever all existing ones are busy, so up to N workers serve
 * requests concurrently.  With --clone-fd each worker reads and replies on
 * its own /dev/fuse fd cloned with FUSE_DEV_IOC_CLONE, i.e. its own
 * processing queue, as in QEMU's multi-queue FUSE export.  We use libfuse's
 * loop rather than our own because struct fuse_chan is opaque in 3.14:
 * only its loop can bind a request to a cloned fd, which replies (sent from
 * other threads too) must go back through.
 *
 * Usage:  passthrough [options] SOURCE MOUNTPOINT   (see --help)
 * Build:  make -C userspace-server
 * Test:   userspace-server/tests/run.sh [--valgrind]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "delay.h"
#include "devio.h"
#include "io.h"
#include "options.h"
#include "server.h"
#include "transport_uring.h"

#define ATTR_TIMEOUT 1.0

static int check_dev_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "passthrough: cannot open /dev/fuse: %s (is FUSE available?)\n",
			strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* Checks that path is a directory; returns its realpath() or NULL. */
static char *check_dir(const char *what, const char *path)
{
	struct stat st;
	char *real;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "passthrough: %s '%s': %s\n", what, path,
			strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "passthrough: %s '%s' is not a directory\n",
			what, path);
		return NULL;
	}
	real = realpath(path, NULL);
	if (real == NULL)
		fprintf(stderr, "passthrough: %s '%s': %s\n", what, path,
			strerror(errno));
	return real;
}

/* --stats FILE made absolute: a daemon runs in "/".  Returns 0 or -1
 * (after printing why). */
static int absolute_stats_path(struct server *srv)
{
	const char *p = srv->opt.stats_path;
	char *cwd = NULL;
	int ret;

	if (p == NULL)
		return 0;
	if (p[0] != '/') {
		cwd = getcwd(NULL, 0);
		if (cwd == NULL) {
			fprintf(stderr, "passthrough: --stats %s: cannot get the current directory: %s\n",
				p, strerror(errno));
			return -1;
		}
	}
	ret = asprintf(&srv->stats_path, "%s%s%s", cwd ? cwd : "",
		       cwd ? "/" : "", p);
	free(cwd);
	if (ret < 0) {
		srv->stats_path = NULL;
		fprintf(stderr, "passthrough: out of memory\n");
		return -1;
	}
	return 0;
}

/* One O_PATH fd per inode the kernel knows: allow as many as we may. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "passthrough: warning: cannot raise RLIMIT_NOFILE: %s\n",
			strerror(errno));
}

/* fsname=SOURCE with fuse_opt's escapes for ',' and '\'. */
static char *mount_opt_string(const char *source, const char *user)
{
	size_t len = strlen(source);
	char *esc = malloc(2 * len + 1), *p = esc, *res;

	if (esc == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (source[i] == ',' || source[i] == '\\')
			*p++ = '\\';
		*p++ = source[i];
	}
	*p = '\0';
	if (asprintf(&res, "fsname=%s,subtype=passthrough,default_permissions%s%s",
		     esc, user ? "," : "", user ? user : "") < 0)
		res = NULL;
	free(esc);
	return res;
}

static struct fuse_session *new_session(struct server *srv,
					const char *source)
{
	char *mopts = mount_opt_string(source, srv->opt.mount_opts);
	char max_read[64];
	char *argv[8];
	int argc = 0;
	struct fuse_args args;
	struct fuse_session *se;

	if (mopts == NULL) {
		fprintf(stderr, "passthrough: out of memory\n");
		return NULL;
	}
	argv[argc++] = "passthrough";
	argv[argc++] = "-o";
	argv[argc++] = mopts;
	if (srv->opt.max_pages) {
		snprintf(max_read, sizeof(max_read), "max_read=%u",
			 srv->opt.max_pages * (unsigned int)getpagesize());
		argv[argc++] = "-o";
		argv[argc++] = max_read;
	}
	if (srv->opt.debug)
		argv[argc++] = "-d";
	argv[argc] = NULL;

	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	/* On failure libfuse has said why, e.g. "fuse: unknown option(s)". */
	se = fuse_session_new(&args, &pt_ops, sizeof(pt_ops), srv);
	fuse_opt_free_args(&args);
	free(mopts);
	return se;
}

static int serve(struct server *srv)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int ret;

	if (cfg == NULL) {
		fprintf(stderr, "passthrough: out of memory\n");
		return -1;
	}
	fuse_loop_cfg_set_max_threads(cfg, srv->opt.threads);
	fuse_loop_cfg_set_clone_fd(cfg, srv->opt.clone_fd);
	ret = fuse_session_loop_mt(srv->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	if (ret < 0) {
		fprintf(stderr, "passthrough: session loop failed: %s\n",
			strerror(-ret));
		return -1;
	}
	return 0;	/* unmounted, or a signal (> 0) asked us to stop */
}

/* Everything between a successful mount and the unmount. */
static int run_mounted(struct server *srv)
{
	int rc = -1;

	if (fuse_daemonize(srv->opt.foreground) < 0) {
		fprintf(stderr, "passthrough: cannot daemonize\n");
		return -1;
	}
	/* Threads only after daemonizing: fork() keeps just one. */
	if (srv->backend->start(srv, &srv->backend_state) < 0)
		return -1;
	if (srv->opt.latency_us &&
	    delay_start(&srv->delay, srv->opt.latency_us, srv->opt.threads) < 0)
		goto stop_backend;
	if (stats_signals_start(&srv->stats) < 0)
		goto stop_io;
	if (srv->uring && uring_start(srv->uring) < 0)
		goto stop_signals;

	rc = serve(srv);

	/* Replies still due go out (to a live mount) before we unmount; the
	 * rings stay open for them, but no queue takes a new request. */
	fuse_session_exit(srv->se);
	uring_stop(srv->uring);
stop_signals:
	stats_signals_stop(&srv->stats);
stop_io:
	srv->backend->stop(srv->backend_state);
	srv->backend_state = NULL;
	if (srv->delay) {
		delay_stop(srv->delay);
		srv->delay = NULL;
	}
	uring_destroy(srv->uring);
	srv->uring = NULL;
	if (srv->devio.failed)
		rc = -1;
	return rc;
stop_backend:
	srv->backend->stop(srv->backend_state);
	srv->backend_state = NULL;
	return -1;
}

static int run(struct server *srv)
{
	int rc = 1, err;

	if (check_dev_fuse() < 0)
		return 1;
	if (srv->opt.transport == TRANSPORT_URING && uring_check_kernel() < 0)
		return 1;
	/* Kept in srv, not in locals: fuse_daemonize()'s parent leaves
	 * through _exit() and valgrind must still see them reachable. */
	srv->source = check_dir("SOURCE", srv->opt.source);
	if (srv->source == NULL)
		return 1;
	srv->mountpoint = check_dir("MOUNTPOINT", srv->opt.mountpoint);
	if (srv->mountpoint == NULL)
		goto out_free;
	if (absolute_stats_path(srv) < 0)
		goto out_free;
	raise_nofile();

	err = inode_table_init(&srv->inodes, srv->source);
	if (err) {
		fprintf(stderr, "passthrough: cannot open SOURCE '%s': %s\n",
			srv->source, strerror(err));
		goto out_free;
	}
	handle_list_init(&srv->files);
	handle_list_init(&srv->dirs);
	stats_init(&srv->stats, srv->stats_path);
	srv->backend = srv->opt.backend == BACKEND_URING ? &io_backend_uring
							 : &io_backend_sync;
	srv->timeout = ATTR_TIMEOUT;

	srv->se = new_session(srv, srv->source);
	if (srv->se == NULL)
		goto out_inodes;
	/* libfuse only takes over signals left at SIG_DFL, and a shell
	 * starts background jobs with SIGINT ignored: make sure that both
	 * SIGINT and SIGTERM unmount cleanly, however we were started. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (fuse_set_signal_handlers(srv->se) < 0) {
		fprintf(stderr, "passthrough: cannot install signal handlers\n");
		goto out_session;
	}
	if (fuse_session_mount(srv->se, srv->mountpoint) < 0) {
		fprintf(stderr, "passthrough: cannot mount on MOUNTPOINT '%s'\n",
			srv->mountpoint);
		goto out_signals;
	}
	srv->devio.want_async_dio_all = !srv->opt.no_async_dio &&
					!srv->opt.no_async_dio_all;
	if (srv->opt.transport == TRANSPORT_URING) {
		err = uring_create(&srv->uring, srv->se, srv->opt.uring_depth,
				   &srv->stats);
		if (err) {
			fprintf(stderr, "passthrough: io_uring transport: %s\n",
				strerror(-err));
			goto out_unmount;
		}
		srv->devio.uring = srv->uring;
	}
	if (devio_install(srv->se) < 0)
		goto out_uring;

	if (run_mounted(srv) == 0)
		rc = 0;
	stats_emit(&srv->stats);

out_uring:
	uring_destroy(srv->uring);	/* on errors before run_mounted() */
	srv->uring = NULL;
out_unmount:
	fuse_session_unmount(srv->se);
out_signals:
	fuse_remove_signal_handlers(srv->se);
out_session:
	fuse_session_destroy(srv->se);
out_inodes:
	ops_close_handles(srv);
	handle_list_destroy(&srv->dirs);
	handle_list_destroy(&srv->files);
	inode_table_destroy(&srv->inodes);
	stats_destroy(&srv->stats);
out_free:
	free(srv->stats_path);
	free(srv->mountpoint);
	free(srv->source);
	return rc;
}

int main(int argc, char **argv)
{
	struct server srv;
	int rc, err;

	memset(&srv, 0, sizeof(srv));
	switch (options_parse(&srv.opt, argc, argv)) {
	case OPTIONS_RUN:
		break;
	case OPTIONS_EXIT:
		options_free(&srv.opt);
		return 0;
	case OPTIONS_ERROR:
	default:
		options_free(&srv.opt);
		return 2;
	}
	err = stats_block_signals();
	if (err) {
		fprintf(stderr, "passthrough: cannot block SIGUSR1/SIGUSR2: %s\n",
			strerror(-err));
		options_free(&srv.opt);
		return 1;
	}
	if (io_buffers_keep())
		fprintf(stderr, "passthrough: warning: mallopt() refused fixed heap thresholds: READ buffers may be faulted in anew per request\n");
	rc = run(&srv);
	options_free(&srv.opt);
	return rc;
}
