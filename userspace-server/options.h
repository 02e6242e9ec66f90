/* Command line of the passthrough server. */
#ifndef PT_OPTIONS_H
#define PT_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

enum transport_kind {
	TRANSPORT_DEV,		/* read()/writev() on /dev/fuse (libfuse) */
	TRANSPORT_URING,	/* FUSE-over-io_uring queues */
};

enum backend_kind {
	BACKEND_SYNC,
	BACKEND_URING,
};

struct options {
	const char *source;
	const char *mountpoint;
	unsigned int threads;		/* max worker threads of the loop */
	unsigned int max_background;	/* 0: leave the kernel default */
	unsigned int max_pages;		/* 0: leave the libfuse default */
	unsigned int latency_us;	/* 0: reply at once */
	enum backend_kind backend;
	enum transport_kind transport;
	unsigned int uring_depth;	/* ring entries per queue */
	const char *stats_path;		/* NULL: stats go to stderr */
	char *mount_opts;		/* comma list from -o, or NULL */
	bool clone_fd;
	bool direct_io;
	bool parallel_direct_writes;
	bool no_async_dio;
	bool no_async_dio_all;
	bool foreground;
	bool debug;
};

enum options_result {
	OPTIONS_RUN,	/* parsed, go on and mount */
	OPTIONS_EXIT,	/* --help / --version printed, exit 0 */
	OPTIONS_ERROR,	/* error printed, exit 2 */
};

enum options_result options_parse(struct options *o, int argc, char **argv);
void options_free(struct options *o);
void options_usage(FILE *out);

#endif
