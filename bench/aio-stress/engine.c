/*
 * engine.c - per-thread libaio engine of aio-stress.
 *
 * Part of a clean re-implementation of Chris Mason's aio-stress (see
 * aio_stress.h).
 *
 * Each worker thread owns one kernel aio context and a pool of io units
 * (an iocb plus an aligned buffer), -d units for every file context the
 * thread serves; the pool is shared by those contexts.  A submission
 * round walks the active contexts round-robin and prepares up to -i
 * iocbs for each, waiting for completions whenever the pool runs dry,
 * until one more context would exceed the -b batch limit; the batch then
 * goes to io_submit.  Every completion is checked for errors and short
 * transfers, reads are compared with the -v pattern, and the unit goes
 * back to the pool.  When a context's last io completes its result line
 * is printed.
 */
#include "aio_stress.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* verify mismatches reported in full per context and stage */
#define MAX_VERIFY_REPORTS	10
/* differing bytes listed per mismatching record */
#define MAX_VERIFY_BYTES	16

static bool stage_writes(enum stage s)
{
	return s == STAGE_WRITE || s == STAGE_RWRITE;
}

static bool stage_random(enum stage s)
{
	return s == STAGE_RWRITE || s == STAGE_RREAD;
}

/* xorshift64*: small, per-thread, deterministic */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

int engine_init(struct worker *w, char *bufs, size_t slot_len)
{
	const struct options *o = w->run->opt;
	int i, ret;

	w->nr_units = w->nr_ctxs * o->depth;
	w->batch_max = o->max_submit < w->nr_units ? o->max_submit
						   : w->nr_units;
	w->io_iter = o->io_iter < w->batch_max ? o->io_iter : w->batch_max;
	w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(w->id + 1);

	w->units = calloc((size_t)w->nr_units, sizeof(*w->units));
	w->events = calloc((size_t)w->nr_units, sizeof(*w->events));
	w->batch = calloc((size_t)w->batch_max, sizeof(*w->batch));
	w->active = calloc((size_t)w->nr_ctxs, sizeof(*w->active));
	if (!w->units || !w->events || !w->batch || !w->active) {
		report_error("thread %d: out of memory for %d io units",
			     w->id, w->nr_units);
		return -1;
	}

	for (i = 0; i < w->nr_units; i++) {
		struct io_unit *u = &w->units[i];

		u->buf = bufs + (size_t)i * slot_len;
		memset(u->buf, o->verify ? VERIFY_PATTERN : 0, o->rec_len);
		u->next_free = w->free_units;
		w->free_units = u;
	}

	ret = io_queue_init(w->nr_units, &w->aio);
	if (ret < 0) {
		report_error("thread %d: io_setup(%d): %s%s", w->id,
			     w->nr_units, strerror(-ret),
			     ret == -EAGAIN ? " (see fs.aio-max-nr)" : "");
		return -1;
	}
	w->aio_ready = true;
	return 0;
}

void engine_destroy(struct worker *w)
{
	int ret;

	if (w->aio_ready) {
		ret = io_queue_release(w->aio);
		if (ret < 0)
			report_error("thread %d: io_destroy: %s", w->id,
				     strerror(-ret));
		w->aio_ready = false;
	}
	free(w->units);
	free(w->events);
	free(w->batch);
	free(w->active);
	w->units = NULL;
	w->events = NULL;
	w->batch = NULL;
	w->active = NULL;
}

/* print the context's result line once its stage work is over */
void engine_ctx_check_done(struct file_ctx *c, const struct timespec *now)
{
	if (c->reported || !c->in_stage || c->pending)
		return;
	if (c->started_ios < c->total_ios && !c->cut_short)
		return;
	c->reported = true;
	if (c->started)
		report_ctx(c, now);
}

/* an io error: report the first one, stop the context from submitting */
static void ctx_io_error(struct worker *w, struct file_ctx *c,
			 const struct io_unit *u, const char *what)
{
	w->errors++;
	if (c->stage_errors++ == 0)
		report_error("%s on %s (context %d) at offset %lld, %lu "
			     "bytes: %s", stage_name(c->stage), c->path,
			     c->index, (long long)u->iocb.u.c.offset,
			     u->iocb.u.c.nbytes, what);
	c->failed = true;
	c->cut_short = true;
}

static void verify_failed(struct worker *w, struct file_ctx *c)
{
	w->errors++;
	if (++c->stage_verify_errors == MAX_VERIFY_REPORTS + 1)
		fprintf(stderr, "further verify errors on %s (context %d) "
			"not shown\n", c->path, c->index);
}

static void verify_read(struct worker *w, struct io_unit *u, size_t len)
{
	const char *want = w->run->pattern;
	struct file_ctx *c = u->ctx;
	size_t i, shown = 0, bad = 0;

	if (!memcmp(u->buf, want, len))
		return;
	verify_failed(w, c);
	if (c->stage_verify_errors > MAX_VERIFY_REPORTS)
		return;

	fprintf(stderr, "verify error, file %s offset %lld contents "
		"(offset:bad:good):\n", c->path,
		(long long)u->iocb.u.c.offset);
	for (i = 0; i < len; i++) {
		if (u->buf[i] == want[i])
			continue;
		if (shown++ < MAX_VERIFY_BYTES)
			fprintf(stderr, "%zu:%02x:%02x ", i,
				(unsigned char)u->buf[i],
				(unsigned char)want[i]);
		bad++;
	}
	fprintf(stderr, "(%zu of %zu bytes differ)\n", bad, len);
}

static void check_result(struct worker *w, struct io_unit *u, long res)
{
	const struct options *o = w->run->opt;
	struct file_ctx *c = u->ctx;
	size_t len = u->iocb.u.c.nbytes;
	long long off = u->iocb.u.c.offset;
	char what[160];
	struct stat st;

	if (res < 0) {
		ctx_io_error(w, c, u, strerror((int)-res));
		return;
	}
	if ((size_t)res < len) {
		if (stage_writes(c->stage)) {
			snprintf(what, sizeof(what), "short write of %ld bytes",
				 res);
			ctx_io_error(w, c, u, what);
			return;
		}
		if (fstat(c->fd, &st) < 0) {
			snprintf(what, sizeof(what), "short read of %ld bytes, "
				 "then fstat: %s", res, strerror(errno));
			ctx_io_error(w, c, u, what);
			return;
		}
		if (off + res < (long long)st.st_size) {
			snprintf(what, sizeof(what), "short read of %ld bytes "
				 "before end of file at %lld", res,
				 (long long)st.st_size);
			ctx_io_error(w, c, u, what);
			return;
		}
		/* reading past the end of the file, as the original allows */
		if (o->verify) {
			verify_failed(w, c);
			if (c->stage_verify_errors <= MAX_VERIFY_REPORTS)
				fprintf(stderr, "verify error, file %s offset "
					"%lld: end of file at %lld, record "
					"missing\n", c->path, off,
					(long long)st.st_size);
		} else if (!c->eof_noted) {
			c->eof_noted = true;
			fprintf(stderr, "%s on %s (context %d): end of file at "
				"%lld, reads beyond it return nothing\n",
				stage_name(c->stage), c->path, c->index,
				(long long)st.st_size);
		}
	}
	if (o->verify && !stage_writes(c->stage) && res > 0)
		verify_read(w, u, (size_t)res);
}

static void complete_unit(struct worker *w, struct io_unit *u, long res,
			  const struct timespec *now)
{
	struct file_ctx *c = u->ctx;

	latency_add(&w->completion_lat, &u->submit_time, now);
	c->pending--;
	w->pending--;
	check_result(w, u, res);
	u->next_free = w->free_units;
	w->free_units = u;
	engine_ctx_check_done(c, now);
}

/* wait for at least @min_nr completions and process all that are ready */
int engine_reap(struct worker *w, int min_nr)
{
	struct timespec now;
	int nr, i;

	do {
		nr = io_getevents(w->aio, min_nr, w->nr_units, w->events, NULL);
	} while (nr == -EINTR);
	if (nr < 0) {
		report_error("thread %d: io_getevents: %s", w->id,
			     strerror(-nr));
		return -1;
	}
	now = ts_now();
	for (i = 0; i < nr; i++)
		complete_unit(w, w->events[i].data, (long)w->events[i].res,
			      &now);
	return nr;
}

int engine_drain(struct worker *w)
{
	while (w->pending)
		if (engine_reap(w, 1) < 0)
			return -1;
	return 0;
}

static struct io_unit *get_unit(struct worker *w)
{
	struct io_unit *u;

	while (!w->free_units) {
		/* batch_max <= nr_units, so an empty pool means ios in flight */
		int min_nr = w->pending < (uint64_t)w->io_iter ?
			     (int)w->pending : w->io_iter;

		if (engine_reap(w, min_nr) < 0)
			return NULL;
	}
	u = w->free_units;
	w->free_units = u->next_free;
	return u;
}

/* a uniformly chosen, -a aligned record inside the context's region */
static off_t random_offset(struct worker *w, const struct file_ctx *c)
{
	off_t align = (off_t)w->run->opt->align;
	off_t lo = (c->start + align - 1) / align * align;
	off_t hi = c->end - (off_t)c->rec_len;
	uint64_t slots;

	if (hi < lo)
		return c->start;
	slots = (uint64_t)(hi - lo) / (uint64_t)align + 1;
	return lo + (off_t)(rng_next(&w->rng) % slots) * align;
}

static struct iocb *prepare_io(struct worker *w, struct file_ctx *c)
{
	struct io_unit *u = get_unit(w);
	off_t off;

	if (!u)
		return NULL;
	if (stage_random(c->stage)) {
		off = random_offset(w, c);
	} else {
		off = c->next_offset;
		c->next_offset += (off_t)c->rec_len;
	}
	if (stage_writes(c->stage)) {
		if (u->holds_read_data) {
			memset(u->buf, w->run->opt->verify ? VERIFY_PATTERN : 0,
			       c->rec_len);
			u->holds_read_data = false;
		}
		io_prep_pwrite(&u->iocb, c->fd, u->buf, c->rec_len, off);
	} else {
		io_prep_pread(&u->iocb, c->fd, u->buf, c->rec_len, off);
		u->holds_read_data = true;
	}
	u->iocb.data = u;
	u->ctx = c;
	if (!c->started) {
		c->started = true;
		c->start_time = ts_now();
	}
	return &u->iocb;
}

/*
 * In the sequential write stage a context that starts inside the file
 * waits until the file has grown to its start, so that contexts do not
 * leave holes behind them (as in the original).
 */
static bool ctx_runnable(const struct file_ctx *c)
{
	struct stat st;

	if (c->cut_short)
		return false;
	if (c->stage != STAGE_WRITE || c->start == 0 || c->started_ios)
		return true;
	if (fstat(c->fd, &st) < 0)
		return true;	/* let the io itself report the problem */
	return !S_ISREG(st.st_mode) || st.st_size >= c->start;
}

static void account_submitted(struct worker *w, struct iocb **iocbs, int n,
			      const struct timespec *now)
{
	int i;

	for (i = 0; i < n; i++) {
		struct io_unit *u = iocbs[i]->data;

		u->submit_time = *now;
		u->ctx->pending++;
		u->ctx->started_ios++;
	}
	w->pending += (uint64_t)n;
}

/* io_submit refused the batch from @iocbs on: fail the contexts involved */
static void fail_unsubmitted(struct worker *w, struct iocb **iocbs, int n,
			     int err)
{
	char what[80];
	int i;

	snprintf(what, sizeof(what), "io_submit: %s", strerror(err));
	for (i = 0; i < n; i++) {
		struct io_unit *u = iocbs[i]->data;

		ctx_io_error(w, u->ctx, u, what);
		u->next_free = w->free_units;
		w->free_units = u;
	}
}

static int submit_batch(struct worker *w, int n)
{
	struct iocb **iocbs = w->batch;
	struct timespec t0, t1;
	int ret;

	while (n > 0) {
		t0 = ts_now();
		ret = io_submit(w->aio, n, iocbs);
		t1 = ts_now();
		latency_add(&w->submit_lat, &t0, &t1);
		if (ret > 0) {
			account_submitted(w, iocbs, ret, &t1);
			iocbs += ret;
			n -= ret;
			if (!n)
				break;
		} else if (ret != -EAGAIN && ret != -EINTR) {
			fail_unsubmitted(w, iocbs, n, ret ? -ret : EIO);
			return 0;
		}
		/* the kernel took only part of the batch: make room, retry */
		if (!w->pending) {
			fail_unsubmitted(w, iocbs, n, EAGAIN);
			return 0;
		}
		if (engine_reap(w, 1) < 0)
			return -1;
	}
	return 0;
}

/*
 * One submission round.  Sets *idle when no context could submit (all
 * waiting for the file to grow).  Returns -1 on a fatal engine error.
 */
int engine_submit_round(struct worker *w, bool *idle)
{
	int built = 0, visited;

	*idle = false;
	for (visited = 0; visited < w->nr_active; visited++) {
		struct file_ctx *c = w->active[w->rr];
		uint64_t n, left;

		w->rr = (w->rr + 1) % w->nr_active;
		if (!ctx_runnable(c))
			continue;
		left = c->total_ios - c->started_ios;
		n = left < (uint64_t)w->io_iter ? left : (uint64_t)w->io_iter;
		/* waiting for a free unit may complete an io that failed c */
		while (n-- && !c->cut_short) {
			struct iocb *iocb = prepare_io(w, c);

			if (!iocb)
				return -1;
			w->batch[built++] = iocb;
		}
		if (built + w->io_iter > w->batch_max)
			break;
	}
	if (!built) {
		*idle = true;
		return 0;
	}
	return submit_batch(w, built);
}

/* drop contexts that submitted everything or were cut short */
void engine_prune_active(struct worker *w)
{
	int i, kept = 0, rr = 0;

	for (i = 0; i < w->nr_active; i++) {
		struct file_ctx *c = w->active[i];

		if (c->cut_short || c->started_ios >= c->total_ios)
			continue;
		if (i < w->rr)
			rr++;
		w->active[kept++] = c;
	}
	w->nr_active = kept;
	w->rr = kept ? rr % kept : 0;
}
