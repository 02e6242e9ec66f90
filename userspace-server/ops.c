/* File system operations: everything except READ/WRITE (io.c) is done
 * synchronously on the worker thread against the backing tree, through
 * the O_PATH fd of each inode (inode.c) or the fd of an open file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "devio.h"
#include "io.h"
#include "server.h"

/* Path that reopens an O_PATH fd through procfs. */
struct fdpath {
	char s[32];
};

static const char *fd_path(struct fdpath *p, int fd)
{
	snprintf(p->s, sizeof(p->s), "/proc/self/fd/%d", fd);
	return p->s;
}

static struct inode *ino_get(fuse_req_t req, fuse_ino_t ino)
{
	return inode_get(&req_server(req)->inodes, ino);
}

static int ino_fd(fuse_req_t req, fuse_ino_t ino)
{
	return ino_get(req, ino)->fd;
}

static void reply_status(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? errno : 0);
}

/* ---- init / destroy -------------------------------------------------- */

static void pt_init(void *userdata, struct fuse_conn_info *conn)
{
	struct server *srv = userdata;
	const struct options *o = &srv->opt;

	if (o->no_async_dio)
		conn->want &= ~FUSE_CAP_ASYNC_DIO;
	if (o->max_background)
		conn->max_background = o->max_background;
	if (o->max_pages) {
		unsigned int bytes = o->max_pages * (unsigned int)getpagesize();

		/* libfuse answers max_pages = max_write / page size; max_read
		 * must equal the -o max_read given to fuse_session_new(). */
		conn->max_write = bytes;
		conn->max_read = bytes;
	}
	if (o->debug)
		fprintf(stderr, "passthrough: INIT proto %u.%u async_dio=%d max_write=%u max_read=%u max_background=%u\n",
			conn->proto_major, conn->proto_minor,
			!!(conn->want & FUSE_CAP_ASYNC_DIO), conn->max_write,
			conn->max_read, conn->max_background);
}

/* ---- lookup / forget ------------------------------------------------- */

/* Looks name up in parent and fills e, counting one lookup. */
static int do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct server *srv = req_server(req);
	struct inode *in;
	int fd, err;

	memset(e, 0, sizeof(*e));
	fd = openat(ino_fd(req, parent), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		err = errno;
		close(fd);
		return err;
	}
	in = inode_ref(&srv->inodes, fd, &e->attr);
	if (in == NULL)
		return ENOMEM;
	e->ino = inode_id(&srv->inodes, in);
	e->attr_timeout = srv->timeout;
	e->entry_timeout = srv->timeout;
	return 0;
}

static void pt_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(req, parent, name, &e);

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void pt_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(&req_server(req)->inodes, ino_get(req, ino), nlookup);
	fuse_reply_none(req);
}

static void pt_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct server *srv = req_server(req);

	for (size_t i = 0; i < count; i++)
		inode_forget(&srv->inodes,
			     inode_get(&srv->inodes, forgets[i].ino),
			     forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- attributes ------------------------------------------------------ */

static void pt_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (fstatat(ino_fd(req, ino), "", &st,
		    AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, req_server(req)->timeout);
}

static int set_times(int ifd, const struct pt_file *f, const struct stat *attr,
		     int valid)
{
	struct timespec tv[2] = {
		{ .tv_nsec = UTIME_OMIT },
		{ .tv_nsec = UTIME_OMIT },
	};
	struct fdpath p;

	if (valid & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (valid & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;

	if (f)
		return futimens(f->fd, tv);
	if (utimensat(ifd, "", tv, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	/* Kernels without AT_EMPTY_PATH in utimensat: go through procfs. */
	return utimensat(AT_FDCWD, fd_path(&p, ifd), tv, 0);
}

static void pt_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int valid, struct fuse_file_info *fi)
{
	int ifd = ino_fd(req, ino);
	const struct pt_file *f = fi ? fi_file(fi) : NULL;
	struct fdpath p;
	int ret;

	if (valid & FUSE_SET_ATTR_MODE) {
		ret = f ? fchmod(f->fd, attr->st_mode)
			: chmod(fd_path(&p, ifd), attr->st_mode);
		if (ret < 0)
			goto err;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(ifd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			goto err;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		ret = f ? ftruncate(f->fd, attr->st_size)
			: truncate(fd_path(&p, ifd), attr->st_size);
		if (ret < 0)
			goto err;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		if (set_times(ifd, f, attr, valid) < 0)
			goto err;
	}
	pt_getattr(req, ino, fi);
	return;
err:
	fuse_reply_err(req, errno);
}

static void pt_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(ino_fd(req, ino), "", buf, sizeof(buf));

	if (n < 0)
		fuse_reply_err(req, errno);
	else if ((size_t)n >= sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

/* ---- namespace ------------------------------------------------------- */

/* Replies with the entry of a just-created name (ret is the result of the
 * creating syscall). */
static void reply_new_entry(fuse_req_t req, fuse_ino_t parent,
			    const char *name, int ret)
{
	struct fuse_entry_param e;
	int err;

	if (ret < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	err = do_lookup(req, parent, name, &e);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void pt_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	reply_new_entry(req, parent, name,
			mknodat(ino_fd(req, parent), name, mode, rdev));
}

static void pt_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	reply_new_entry(req, parent, name,
			mkdirat(ino_fd(req, parent), name, mode));
}

static void pt_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	reply_new_entry(req, parent, name,
			symlinkat(link, ino_fd(req, parent), name));
}

static void pt_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	int ifd = ino_fd(req, ino), pfd = ino_fd(req, newparent);
	struct fdpath p;
	int ret;

	ret = linkat(ifd, "", pfd, newname, AT_EMPTY_PATH);
	if (ret < 0 && (errno == ENOENT || errno == EPERM))
		/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH */
		ret = linkat(AT_FDCWD, fd_path(&p, ifd), pfd, newname,
			     AT_SYMLINK_FOLLOW);
	reply_new_entry(req, newparent, newname, ret);
}

static void pt_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, unlinkat(ino_fd(req, parent), name, 0));
}

static void pt_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, unlinkat(ino_fd(req, parent), name, AT_REMOVEDIR));
}

static void pt_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	reply_status(req, renameat2(ino_fd(req, parent), name,
				    ino_fd(req, newparent), newname, flags));
}

/* ---- directories ----------------------------------------------------- */

struct pt_dir {
	struct handle link;	/* on server.dirs */
	DIR *dp;
	off_t offset;		/* position dp is at */
	struct dirent *entry;	/* read but not yet returned */
};

static void pt_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct pt_dir *d = calloc(1, sizeof(*d));
	int fd, err;

	if (d == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(ino_fd(req, ino), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		goto err;
	d->dp = fdopendir(fd);
	if (d->dp == NULL) {
		err = errno;
		close(fd);
		errno = err;
		goto err;
	}
	fi->fh = (uintptr_t)d;
	handle_add(&req_server(req)->dirs, &d->link);
	if (fuse_reply_open(req, fi) < 0) {
		handle_del(&req_server(req)->dirs, &d->link);
		closedir(d->dp);
		free(d);
	}
	return;
err:
	err = errno;
	free(d);
	fuse_reply_err(req, err);
}

static void pt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t offset, struct fuse_file_info *fi)
{
	struct pt_dir *d = (struct pt_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t left = size;
	int err = 0;

	(void)ino;
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		size_t len;

		if (d->entry == NULL) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (d->entry == NULL) {
				err = errno;	/* 0 at the end */
				break;
			}
		}
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		len = fuse_add_direntry(req, p, left, d->entry->d_name, &st,
					d->entry->d_off);
		if (len > left)
			break;	/* keep d->entry for the next call */
		p += len;
		left -= len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	/* An error after some entries: return those, the error comes again. */
	if (err && p == buf)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - left);
	free(buf);
}

static void pt_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct pt_dir *d = (struct pt_dir *)(uintptr_t)fi->fh;

	(void)ino;
	handle_del(&req_server(req)->dirs, &d->link);
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void pt_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	int fd = dirfd(((struct pt_dir *)(uintptr_t)fi->fh)->dp);

	(void)ino;
	reply_status(req, datasync ? fdatasync(fd) : fsync(fd));
}

/* ---- open files ------------------------------------------------------ */

/* The kernel honours O_DIRECT itself; the backing file (tmpfs in tests)
 * is opened without it.  O_NOFOLLOW would refuse the procfs link. */
static int backing_flags(int flags)
{
	return (flags & ~(O_DIRECT | O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY))
		| O_CLOEXEC;
}

static void set_open_flags(struct server *srv, struct fuse_file_info *fi)
{
	fi->direct_io = srv->opt.direct_io;
	fi->keep_cache = 0;
#if HAVE_FI_PARALLEL_DIRECT_WRITES
	fi->parallel_direct_writes = srv->opt.parallel_direct_writes;
#else
	if (srv->opt.parallel_direct_writes)
		devio_mark_open_reply();	/* see devio.h */
#endif
}

static void pt_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct server *srv = req_server(req);
	struct fuse_entry_param e;
	struct pt_file *f;
	int fd, err;

	fd = openat(ino_fd(req, parent), name,
		    backing_flags(fi->flags) | O_CREAT | (fi->flags & O_EXCL),
		    mode);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	err = do_lookup(req, parent, name, &e);
	if (err) {
		close(fd);
		fuse_reply_err(req, err);
		return;
	}
	f = file_new(&srv->files, fd);
	if (f == NULL) {
		close(fd);
		inode_forget(&srv->inodes, ino_get(req, e.ino), 1);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)f;
	set_open_flags(srv, fi);
	if (fuse_reply_create(req, &e, fi) < 0) {
		/* interrupted: the kernel will send no RELEASE/FORGET */
		file_put(f);
		inode_forget(&srv->inodes, ino_get(req, e.ino), 1);
	}
}

static void pt_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct server *srv = req_server(req);
	struct fdpath p;
	struct pt_file *f;
	int fd;

	fd = open(fd_path(&p, ino_fd(req, ino)), backing_flags(fi->flags));
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	f = file_new(&srv->files, fd);
	if (f == NULL) {
		close(fd);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)f;
	set_open_flags(srv, fi);
	if (fuse_reply_open(req, fi) < 0)
		file_put(f);
}

static void pt_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	file_put(fi_file(fi));	/* closes once no backend IO holds it */
	fuse_reply_err(req, 0);
}

static void pt_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* close() of a duplicate reports deferred write errors, like the
	 * close() the application is doing. */
	int fd = dup(fi_file(fi)->fd);

	(void)ino;
	if (fd < 0)
		fuse_reply_err(req, errno);
	else
		reply_status(req, close(fd));
}

static void pt_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	int fd = fi_file(fi)->fd;

	(void)ino;
	reply_status(req, datasync ? fdatasync(fd) : fsync(fd));
}

static void pt_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t offset, off_t length, struct fuse_file_info *fi)
{
	(void)ino;
	reply_status(req, fallocate(fi_file(fi)->fd, mode, offset, length));
}

static void pt_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t res = lseek(fi_file(fi)->fd, off, whence);

	(void)ino;
	if (res < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, res);
}

static void pt_copy_file_range(fuse_req_t req, fuse_ino_t ino_in,
			       off_t off_in, struct fuse_file_info *fi_in,
			       fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len,
			       int flags)
{
	ssize_t n;

	(void)ino_in;
	(void)ino_out;
	n = copy_file_range(fi_file(fi_in)->fd, &off_in, fi_file(fi_out)->fd,
			    &off_out, len, (unsigned int)flags);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

static void pt_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(ino_fd(req, ino), &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

void ops_close_handles(struct server *srv)
{
	struct handle *h;

	file_close_all(&srv->files);
	while ((h = handle_pop(&srv->dirs)) != NULL) {
		struct pt_dir *d = container_of(h, struct pt_dir, link);

		closedir(d->dp);
		free(d);
	}
}

const struct fuse_lowlevel_ops pt_ops = {
	.init		 = pt_init,
	.lookup		 = pt_lookup,
	.forget		 = pt_forget,
	.forget_multi	 = pt_forget_multi,
	.getattr	 = pt_getattr,
	.setattr	 = pt_setattr,
	.readlink	 = pt_readlink,
	.mknod		 = pt_mknod,
	.mkdir		 = pt_mkdir,
	.symlink	 = pt_symlink,
	.link		 = pt_link,
	.unlink		 = pt_unlink,
	.rmdir		 = pt_rmdir,
	.rename		 = pt_rename,
	.opendir	 = pt_opendir,
	.readdir	 = pt_readdir,
	.releasedir	 = pt_releasedir,
	.fsyncdir	 = pt_fsyncdir,
	.create		 = pt_create,
	.open		 = pt_open,
	.release	 = pt_release,
	.flush		 = pt_flush,
	.fsync		 = pt_fsync,
	.read		 = io_read,
	.write		 = io_write,
	.fallocate	 = pt_fallocate,
	.lseek		 = pt_lseek,
	.copy_file_range = pt_copy_file_range,
	.statfs		 = pt_statfs,
};
