/* Delay queue for --latency-us: completed READ/WRITE requests wait here,
 * ordered by due time in a min-heap, and a pool of reply threads (as many
 * as the server has workers) replies to each when it is due.  Workers hand
 * requests over and return at once, so delays of different requests
 * overlap like round trips to network storage do, and so do the replies:
 * a READ reply copies its data into the reader's pages, and one thread
 * copying the replies of a whole batch one after another would add to the
 * latency what the workers do in parallel without it.
 */
#ifndef PT_DELAY_H
#define PT_DELAY_H

#include <stdint.h>
#include <time.h>

struct io_req;
struct delay_queue;

/* Starts nthreads reply threads.  Returns 0 or a negative errno (after
 * printing why). */
int delay_start(struct delay_queue **out, unsigned int latency_us,
		unsigned int nthreads);
/* Queues op to be replied latency_us from now. */
void delay_push(struct delay_queue *dq, struct io_req *op);
/* Replies at once to whatever is still queued, stops the threads, frees. */
void delay_stop(struct delay_queue *dq);

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
