/* Delay queue for --latency-us: completed READ/WRITE requests wait here,
 * ordered by due time in a min-heap, and one thread replies to each when
 * it is due.  Workers hand requests over and return at once, so delays of
 * different requests overlap like round trips to network storage do.
 */
#ifndef PT_DELAY_H
#define PT_DELAY_H

#include <stdint.h>
#include <time.h>

struct io_req;
struct delay_queue;

/* Returns 0 or a negative errno (after printing why). */
int delay_start(struct delay_queue **out, unsigned int latency_us);
/* Queues op to be replied latency_us from now. */
void delay_push(struct delay_queue *dq, struct io_req *op);
/* Replies at once to whatever is still queued, stops the thread, frees. */
void delay_stop(struct delay_queue *dq);

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
