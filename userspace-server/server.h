/* The one server context: built in main.c and reached from every request
 * through fuse_req_userdata(). */
#ifndef PT_SERVER_H
#define PT_SERVER_H

#include "pt_fuse.h"
#include "devio.h"
#include "handles.h"
#include "inode.h"
#include "options.h"
#include "stats.h"

struct io_backend;
struct delay_queue;

struct server {
	struct options opt;
	struct inode_table inodes;
	struct handle_list files;	/* open struct pt_file */
	struct handle_list dirs;	/* open struct pt_dir */
	struct stats stats;
	const struct io_backend *backend;
	void *backend_state;
	struct delay_queue *delay;	/* NULL without --latency-us */
	struct fuse_session *se;
	struct devio devio;		/* device IO hook state */
	struct uring_transport *uring;	/* --transport uring, else NULL */
	double timeout;			/* entry/attr cache timeout, s */
	char *source;			/* realpath of SOURCE */
	char *mountpoint;		/* realpath of MOUNTPOINT */
	char *stats_path;		/* absolute --stats FILE, or NULL */
};

static inline struct server *req_server(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* fuse_lowlevel_ops of the file system (ops.c). */
extern const struct fuse_lowlevel_ops pt_ops;
/* At exit: closes files and directories the kernel never released. */
void ops_close_handles(struct server *srv);

#endif
