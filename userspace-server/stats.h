/* READ/WRITE accounting, as seen from the server side.
 *
 * A request is in flight from the moment its handler starts (the worker
 * has just received it from /dev/fuse) until its reply is written back,
 * including any --latency-us delay.  It stops counting just before the
 * reply write, so that a serial request stream (next request sent only
 * after the previous reply) never shows two in flight.  The maxima are what shows the
 * kernel's concurrency from user space.  Everything is lock-free atomics.
 */
#ifndef PT_STATS_H
#define PT_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum io_kind {
	IO_READ = 0,
	IO_WRITE = 1,
};

struct stats {
	atomic_uint_fast64_t requests[2];
	atomic_uint_fast64_t bytes[2];
	atomic_int_fast64_t inflight[2];
	atomic_int_fast64_t inflight_all;
	atomic_int_fast64_t max_inflight[2];
	atomic_int_fast64_t max_inflight_all;
	atomic_uint_fast64_t ring_requests;	/* --transport uring: all opcodes */

	const char *path;		/* --stats FILE or NULL for stderr */
	pthread_mutex_t emit_lock;	/* one writer of FILE at a time */

	/* SIGUSR1/SIGUSR2 service thread */
	int sigfd;
	int stopfd;
	pthread_t thread;
	bool thread_running;
};

void stats_init(struct stats *st, const char *path);
void stats_destroy(struct stats *st);

void stats_begin(struct stats *st, enum io_kind kind);
void stats_end(struct stats *st, enum io_kind kind, uint64_t bytes);
void stats_reset(struct stats *st);
/* A request (any opcode) was taken from a FUSE-over-io_uring entry. */
static inline void stats_ring_request(struct stats *st)
{
	atomic_fetch_add(&st->ring_requests, 1);
}
/* Writes the JSON line to FILE (atomically, via rename) or stderr. */
int stats_emit(struct stats *st);

/* Block SIGUSR1/SIGUSR2 in the calling thread; call before any thread
 * is created so that only the stats thread ever sees them. */
int stats_block_signals(void);
int stats_signals_start(struct stats *st);
void stats_signals_stop(struct stats *st);

#endif
