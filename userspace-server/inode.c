/* Hash table of backing inodes (see inode.h). */
#define _GNU_SOURCE
#include "inode.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INITIAL_BUCKETS 1024

static size_t hash(dev_t dev, ino_t ino, size_t nbuckets)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev;

	return (size_t)(h ^ (h >> 29)) & (nbuckets - 1);
}

int inode_table_init(struct inode_table *t, const char *source)
{
	struct stat st;
	int err;

	memset(t, 0, sizeof(*t));
	t->root.fd = open(source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (t->root.fd < 0)
		return errno;
	if (fstat(t->root.fd, &st) < 0) {
		err = errno;
		close(t->root.fd);
		return err;
	}
	t->root.dev = st.st_dev;
	t->root.ino = st.st_ino;
	t->root.nlookup = 1;
	t->nbuckets = INITIAL_BUCKETS;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		close(t->root.fd);
		return ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void inode_table_destroy(struct inode_table *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct inode *in = t->buckets[i];

		while (in) {
			struct inode *next = in->next;

			close(in->fd);
			free(in);
			in = next;
		}
	}
	free(t->buckets);
	close(t->root.fd);
	pthread_mutex_destroy(&t->lock);
}

struct inode *inode_get(struct inode_table *t, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &t->root;
	return (struct inode *)(uintptr_t)ino;
}

fuse_ino_t inode_id(struct inode_table *t, struct inode *in)
{
	return in == &t->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in;
}

/* Doubles the bucket array; keeps the old one when out of memory. */
static void grow(struct inode_table *t)
{
	size_t n = t->nbuckets * 2;
	struct inode **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct inode *in = t->buckets[i];

		while (in) {
			struct inode *next = in->next;
			size_t h = hash(in->dev, in->ino, n);

			in->next = b[h];
			b[h] = in;
			in = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

struct inode *inode_ref(struct inode_table *t, int fd, const struct stat *st)
{
	struct inode *in;
	size_t h;

	if (st->st_dev == t->root.dev && st->st_ino == t->root.ino) {
		close(fd);
		return &t->root;
	}

	pthread_mutex_lock(&t->lock);
	h = hash(st->st_dev, st->st_ino, t->nbuckets);
	for (in = t->buckets[h]; in; in = in->next) {
		if (in->dev == st->st_dev && in->ino == st->st_ino) {
			in->nlookup++;
			pthread_mutex_unlock(&t->lock);
			close(fd);
			return in;
		}
	}
	in = calloc(1, sizeof(*in));
	if (in == NULL) {
		pthread_mutex_unlock(&t->lock);
		close(fd);
		return NULL;
	}
	in->fd = fd;
	in->dev = st->st_dev;
	in->ino = st->st_ino;
	in->nlookup = 1;
	in->next = t->buckets[h];
	t->buckets[h] = in;
	if (++t->count > 2 * t->nbuckets)
		grow(t);
	pthread_mutex_unlock(&t->lock);
	return in;
}

void inode_forget(struct inode_table *t, struct inode *in, uint64_t n)
{
	struct inode **pp;

	if (in == &t->root)
		return;

	pthread_mutex_lock(&t->lock);
	if (n < in->nlookup) {
		in->nlookup -= n;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	pp = &t->buckets[hash(in->dev, in->ino, t->nbuckets)];
	while (*pp && *pp != in)
		pp = &(*pp)->next;
	if (*pp)
		*pp = in->next;
	t->count--;
	pthread_mutex_unlock(&t->lock);
	close(in->fd);
	free(in);
}
