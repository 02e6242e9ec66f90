/* Backend IO engines behind one ops struct. */
#ifndef PT_BACKEND_H
#define PT_BACKEND_H

#include <stdbool.h>

struct server;
struct io_req;

struct io_backend {
	const char *name;
	/* submit() may return before the IO is done, so WRITE data must
	 * be copied out of libfuse's receive buffer first. */
	bool async;
	/* Returns 0 or a negative errno (after printing why). */
	int (*start)(struct server *srv, void **state);
	/* Performs op, then calls io_complete(op) (now or later, from any
	 * thread).  Never fails: errors end up in op->err. */
	void (*submit)(void *state, struct io_req *op);
	/* Waits for every submitted op to complete, then frees state. */
	void (*stop)(void *state);
};

extern const struct io_backend io_backend_sync;
extern const struct io_backend io_backend_uring;

#endif
