/* Inode table: one O_PATH fd per backing inode, keyed by (st_dev, st_ino)
 * and counted by the kernel's lookups/forgets.  The fuse_ino_t handed to
 * the kernel is the address of the struct inode (the root is
 * FUSE_ROOT_ID), so finding an inode from a request needs no lookup.
 */
#ifndef PT_INODE_H
#define PT_INODE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "pt_fuse.h"

struct inode {
	int fd;			/* O_PATH | O_NOFOLLOW */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;	/* under the table lock */
	struct inode *next;	/* hash chain */
};

struct inode_table {
	pthread_mutex_t lock;
	struct inode **buckets;
	size_t nbuckets;
	size_t count;
	struct inode root;	/* never forgotten, not in the hash */
};

/* Opens SOURCE as the root; returns 0 or a positive errno. */
int inode_table_init(struct inode_table *t, const char *source);
void inode_table_destroy(struct inode_table *t);

struct inode *inode_get(struct inode_table *t, fuse_ino_t ino);
fuse_ino_t inode_id(struct inode_table *t, struct inode *in);

/* Finds or adds the inode described by st (fd is an O_PATH fd on it, of
 * which the table takes ownership) and counts one lookup on it.
 * Returns NULL only when out of memory (fd closed then). */
struct inode *inode_ref(struct inode_table *t, int fd, const struct stat *st);

/* Drops n lookups; the inode is closed and freed when none remain. */
void inode_forget(struct inode_table *t, struct inode *in, uint64_t n);

#endif
