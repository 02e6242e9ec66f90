/*
 * buffers.c - memory for the io buffers of aio-stress.
 *
 * Part of a clean re-implementation of Chris Mason's aio-stress (see
 * aio_stress.h).  All io units of all threads take their data buffer
 * from one region so that it can be SysV shared memory (-m shm) or a
 * mapping of an unlinked /dev/shm file (-m shmfs) as well as ordinary
 * heap memory.  The region start is aligned to the -a alignment.
 */
#include "aio_stress.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

static char *align_ptr(void *p, size_t align)
{
	uintptr_t v = (uintptr_t)p;

	return (char *)((v + align - 1) & ~(uintptr_t)(align - 1));
}

static int alloc_heap(struct io_buffers *b, size_t len, size_t align)
{
	void *p;
	int err;

	if (align < sizeof(void *))
		align = sizeof(void *);
	err = posix_memalign(&p, align, len);
	if (err) {
		report_error("cannot allocate %zu bytes of io buffers: %s",
			     len, strerror(err));
		return -1;
	}
	b->map = p;
	b->base = p;
	return 0;
}

static int alloc_shm(struct io_buffers *b, size_t len, size_t align)
{
	size_t total = len + align;
	void *p;
	int id;

	id = shmget(IPC_PRIVATE, total, IPC_CREAT | 0600);
	if (id < 0) {
		report_error("shmget of %zu bytes: %s", total, strerror(errno));
		return -1;
	}
	p = shmat(id, NULL, 0);
	/* the segment lives on until shmdt even though it is removed now */
	if (shmctl(id, IPC_RMID, NULL) < 0)
		report_error("shmctl IPC_RMID: %s", strerror(errno));
	if (p == (void *)-1) {
		report_error("shmat: %s", strerror(errno));
		return -1;
	}
	b->map = p;
	b->map_len = total;
	b->base = align_ptr(p, align);
	return 0;
}

static int alloc_shmfs(struct io_buffers *b, size_t len, size_t align)
{
	char name[] = "/dev/shm/aio-stress.XXXXXX";
	size_t total = len + align;
	void *p;
	int fd;

	fd = mkstemp(name);
	if (fd < 0) {
		report_error("mkstemp %s: %s", name, strerror(errno));
		return -1;
	}
	if (unlink(name) < 0)
		report_error("unlink %s: %s", name, strerror(errno));
	if (ftruncate(fd, (off_t)total) < 0) {
		report_error("ftruncate %s to %zu bytes: %s", name, total,
			     strerror(errno));
		close(fd);
		return -1;
	}
	p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		report_error("mmap %s: %s", name, strerror(errno));
		return -1;
	}
	b->map = p;
	b->map_len = total;
	b->base = align_ptr(p, align);
	return 0;
}

int buffers_alloc(struct io_buffers *b, enum buf_mem mem, size_t len,
		  size_t align)
{
	memset(b, 0, sizeof(*b));
	b->mem = mem;
	b->len = len;
	switch (mem) {
	case MEM_SHM:
		return alloc_shm(b, len, align);
	case MEM_SHMFS:
		return alloc_shmfs(b, len, align);
	case MEM_MALLOC:
		break;
	}
	return alloc_heap(b, len, align);
}

void buffers_free(struct io_buffers *b)
{
	if (!b->map)
		return;
	switch (b->mem) {
	case MEM_SHM:
		if (shmdt(b->map) < 0)
			report_error("shmdt: %s", strerror(errno));
		break;
	case MEM_SHMFS:
		if (munmap(b->map, b->map_len) < 0)
			report_error("munmap: %s", strerror(errno));
		break;
	case MEM_MALLOC:
		free(b->map);
		break;
	}
	memset(b, 0, sizeof(*b));
}
