/* --transport uring: FUSE-over-io_uring (Linux 6.14+, CONFIG_FUSE_IO_URING).
 *
 * The kernel hands requests to per-CPU queues of ring entries instead of
 * read(/dev/fuse): each entry is a header buffer plus a payload buffer that
 * the server registers with an IORING_OP_URING_CMD (FUSE_IO_URING_CMD_
 * REGISTER), and a request arrives as the completion of that command.  The
 * server answers in the same buffers and sends FUSE_IO_URING_CMD_COMMIT_
 * AND_FETCH, which both delivers the reply and makes the entry wait for the
 * next request.
 *
 * Here libfuse 3.14 (no io_uring support) still mounts, answers INIT and
 * serves what keeps coming over /dev/fuse (FORGET, INTERRUPT, requests sent
 * before the ring was ready).  One thread per queue, pinned to its CPU,
 * lays each request out as /dev/fuse would have delivered it, in front of
 * the payload without copying it, and passes it to
 * fuse_session_process_buf(); devio.c's writev hook gives every reply to
 * uring_reply(), which commits it when its unique belongs to a ring entry.
 *
 * Invariant: the thread that submits a COMMIT_AND_FETCH owns the fetch that
 * follows, and io_uring cancels the commands of a thread that exits, so
 * only threads that live until uring_stop() may reply to ring requests.
 * Ours do: queue threads (sync backend), the uring backend's completion
 * thread and the --latency-us reply threads; libfuse's workers only ever
 * see /dev/fuse requests.
 */
#ifndef PT_TRANSPORT_URING_H
#define PT_TRANSPORT_URING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct fuse_session;
struct stats;
struct uring_transport;

/* Before mounting: the kernel's fuse has the io_uring transport and it is
 * enabled.  Returns 0, or -1 after printing why and how to fix it. */
int uring_check_kernel(void);

/* Allocates the transport (no threads yet).  Returns 0 or -errno. */
int uring_create(struct uring_transport **out, struct fuse_session *se,
		 unsigned int depth, struct stats *stats);
/* Starts the queue threads; they wait for uring_init_done(). */
int uring_start(struct uring_transport *t);

/* From the writev hook: the kernel's INIT request offered flags; our reply
 * goes out with FUSE_OVER_IO_URING when it did.  Returns false (after
 * printing why) when the kernel did not offer the transport. */
bool uring_init_offered(struct uring_transport *t, uint64_t kernel_flags);
/* The INIT reply was written: the queues may register now.  max_payload
 * is the ring's payload size (max of 8 KiB, max_write, max_pages pages). */
void uring_init_done(struct uring_transport *t, size_t max_payload);

/* If iov is the reply to a request taken from a ring entry, commits it and
 * returns true with *res = bytes or -1/errno; false if the request came
 * from /dev/fuse. */
bool uring_reply(struct uring_transport *t, const struct iovec *iov,
		 int count, ssize_t *res);

/* Stops the queue threads (no new request is taken); replies still due
 * may be committed until uring_destroy(). */
void uring_stop(struct uring_transport *t);
/* Closes the rings (the kernel cancels the waiting fetches), frees. */
void uring_destroy(struct uring_transport *t);

#endif
