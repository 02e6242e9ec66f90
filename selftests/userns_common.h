/* SPDX-License-Identifier: GPL-2.0 */
/*
 * userns_common.h - put the calling process (started as root) into a user
 * namespace of an unprivileged uid, so that a FUSE mount made there is an
 * unprivileged one: mounted by a server without CAP_SYS_ADMIN in the
 * initial namespace, whose uid 0 maps to that uid only.
 *
 * Used by adio_userns (kernel work running with the submitter's
 * credentials) and adio_bgqueue (max_user_bgreq caps an unprivileged
 * server).
 */
#ifndef USERNS_COMMON_H
#define USERNS_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define UNS_UID		1000	/* outside uid (and gid) of the namespace */

/* Write s to path; 0 or -errno. */
static inline int uns_write_file(const char *path, const char *s)
{
	ssize_t len = strlen(s), n;
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	if (n != len)
		err = n < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

/* Whether this kernel and user can run uns_enter() at all (else *why). */
static inline int uns_available(const char **why)
{
	if (access("/proc/self/ns/user", F_OK)) {
		*why = "no user namespaces in this kernel (CONFIG_USER_NS)";
		return 0;
	}
	if (geteuid() != 0) {
		*why = "needs root (to switch to an unprivileged uid)";
		return 0;
	}
	return 1;
}

/*
 * Make /dev/fuse usable by UNS_UID (devtmpfs makes it 0600 root: bind a
 * 0666 node of the same device, created at node, over it in a mount
 * namespace of this process, not changing the device for anybody else),
 * hand dir to UNS_UID, become UNS_UID and then root of a new user
 * namespace that maps only UNS_UID, with TMPDIR=dir (fts_start() makes its
 * mount point there).
 *
 * Returns 0, 1 if the case must be skipped (reason in *why), or -errno
 * (the failed step in *why).  The process can not get back to root.
 */
static inline int uns_enter(const char *dir, const char *node,
			    const char **why)
{
	struct stat st;
	char map[32];
	int ret;

	if (stat("/dev/fuse", &st)) {
		*why = "stat /dev/fuse";
		return -errno;
	}
	if ((st.st_mode & 0006) != 0006) {
		if (unshare(CLONE_NEWNS)) {
			*why = "unshare(CLONE_NEWNS)";
			return -errno;
		}
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
			*why = "making / private";
			return -errno;
		}
		if (mknod(node, S_IFCHR | 0666, st.st_rdev) ||
		    chmod(node, 0666)) {
			*why = "mknod";
			return -errno;
		}
		if (mount(node, "/dev/fuse", NULL, MS_BIND, NULL)) {
			*why = "binding over /dev/fuse";
			return -errno;
		}
	}
	if (chown(dir, UNS_UID, UNS_UID)) {
		*why = "chown";
		return -errno;
	}
	if (setgroups(0, NULL) || setresgid(UNS_UID, UNS_UID, UNS_UID) ||
	    setresuid(UNS_UID, UNS_UID, UNS_UID)) {
		*why = "switching to the unprivileged uid";
		return -errno;
	}
	/* setuid made us non-dumpable: /proc/self/uid_map root's then */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS)) {
		*why = "unshare(CLONE_NEWUSER) not allowed for an unprivileged user here";
		return 1;
	}
	ret = uns_write_file("/proc/self/setgroups", "deny");
	if (ret && ret != -ENOENT) {
		*why = "/proc/self/setgroups";
		return ret;
	}
	snprintf(map, sizeof(map), "0 %d 1", UNS_UID);
	ret = uns_write_file("/proc/self/uid_map", map);
	if (!ret)
		ret = uns_write_file("/proc/self/gid_map", map);
	if (ret) {
		*why = "writing uid_map/gid_map";
		return ret;
	}
	if (getuid() != 0 || geteuid() != 0) {
		*why = "not uid 0 in the new user namespace";
		return -EPERM;
	}
	if (setenv("TMPDIR", dir, 1)) {
		*why = "setenv";
		return -errno;
	}
	return 0;
}

#endif /* USERNS_COMMON_H */
