/* --latency-us delay queue (see delay.h). */
#define _GNU_SOURCE
#include "delay.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "io.h"

struct delay_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC */
	struct io_req **heap;		/* min-heap on due_ns */
	size_t n;
	size_t cap;
	uint64_t latency_ns;
	bool stop;
	bool warned_nomem;
	unsigned int nthreads;		/* reply threads started */
	pthread_t *threads;
};

static void heap_swap(struct io_req **h, size_t a, size_t b)
{
	struct io_req *t = h[a];

	h[a] = h[b];
	h[b] = t;
}

/* Returns the slot the new element ended in. */
static size_t heap_push(struct delay_queue *dq, struct io_req *op)
{
	size_t i = dq->n++;

	dq->heap[i] = op;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (dq->heap[parent]->due_ns <= dq->heap[i]->due_ns)
			break;
		heap_swap(dq->heap, parent, i);
		i = parent;
	}
	return i;
}

static struct io_req *heap_pop(struct delay_queue *dq)
{
	struct io_req *top = dq->heap[0];
	size_t i = 0;

	dq->heap[0] = dq->heap[--dq->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < dq->n && dq->heap[l]->due_ns < dq->heap[m]->due_ns)
			m = l;
		if (r < dq->n && dq->heap[r]->due_ns < dq->heap[m]->due_ns)
			m = r;
		if (m == i)
			break;
		heap_swap(dq->heap, i, m);
		i = m;
	}
	return top;
}

static bool heap_reserve(struct delay_queue *dq)
{
	size_t cap;
	struct io_req **h;

	if (dq->n < dq->cap)
		return true;
	cap = dq->cap ? dq->cap * 2 : 256;
	h = realloc(dq->heap, cap * sizeof(*h));
	if (h == NULL)
		return false;
	dq->heap = h;
	dq->cap = cap;
	return true;
}

void delay_push(struct delay_queue *dq, struct io_req *op)
{
	op->due_ns = now_ns() + dq->latency_ns;
	pthread_mutex_lock(&dq->lock);
	if (!heap_reserve(dq)) {
		bool warn = !dq->warned_nomem;

		dq->warned_nomem = true;
		pthread_mutex_unlock(&dq->lock);
		if (warn)
			fprintf(stderr, "passthrough: out of memory in delay queue, replying without delay\n");
		io_reply(op);
		return;
	}
	/* Only a new earliest deadline changes what the threads wait for. */
	if (heap_push(dq, op) == 0)
		pthread_cond_signal(&dq->cond);
	pthread_mutex_unlock(&dq->lock);
}

static void *delay_thread(void *arg)
{
	struct delay_queue *dq = arg;

	/* Default 50us timer slack would blur short latencies. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	pthread_setname_np(pthread_self(), "pt-reply");

	pthread_mutex_lock(&dq->lock);
	for (;;) {
		struct io_req *op;

		if (dq->n == 0) {
			if (dq->stop)
				break;
			pthread_cond_wait(&dq->cond, &dq->lock);
			continue;
		}
		if (!dq->stop) {
			uint64_t due = dq->heap[0]->due_ns;

			if (due > now_ns()) {
				struct timespec ts = {
					.tv_sec = (time_t)(due / 1000000000u),
					.tv_nsec = (long)(due % 1000000000u),
				};

				pthread_cond_timedwait(&dq->cond, &dq->lock, &ts);
				continue;
			}
		}
		op = heap_pop(dq);
		/* The next one may be due too: another thread replies to it
		 * while this one copies. */
		if (dq->n > 0)
			pthread_cond_signal(&dq->cond);
		pthread_mutex_unlock(&dq->lock);
		io_reply(op);
		pthread_mutex_lock(&dq->lock);
	}
	pthread_mutex_unlock(&dq->lock);
	return NULL;
}

static void delay_join(struct delay_queue *dq)
{
	unsigned int i;

	pthread_mutex_lock(&dq->lock);
	dq->stop = true;
	pthread_cond_broadcast(&dq->cond);
	pthread_mutex_unlock(&dq->lock);
	for (i = 0; i < dq->nthreads; i++)
		pthread_join(dq->threads[i], NULL);
}

static void delay_free(struct delay_queue *dq)
{
	pthread_cond_destroy(&dq->cond);
	pthread_mutex_destroy(&dq->lock);
	free(dq->threads);
	free(dq->heap);
	free(dq);
}

int delay_start(struct delay_queue **out, unsigned int latency_us,
		unsigned int nthreads)
{
	struct delay_queue *dq = calloc(1, sizeof(*dq));
	pthread_condattr_t ca;
	int err;

	if (dq == NULL || nthreads == 0 ||
	    (dq->threads = calloc(nthreads, sizeof(*dq->threads))) == NULL) {
		fprintf(stderr, "passthrough: out of memory for delay queue\n");
		free(dq);
		return -ENOMEM;
	}
	dq->latency_ns = (uint64_t)latency_us * 1000u;
	pthread_mutex_init(&dq->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&dq->cond, &ca);
	pthread_condattr_destroy(&ca);
	for (; dq->nthreads < nthreads; dq->nthreads++) {
		err = pthread_create(&dq->threads[dq->nthreads], NULL,
				     delay_thread, dq);
		if (err) {
			fprintf(stderr, "passthrough: cannot start delay thread %u: %s\n",
				dq->nthreads + 1, strerror(err));
			delay_join(dq);
			delay_free(dq);
			return -err;
		}
	}
	*out = dq;
	return 0;
}

void delay_stop(struct delay_queue *dq)
{
	delay_join(dq);
	delay_free(dq);
}
