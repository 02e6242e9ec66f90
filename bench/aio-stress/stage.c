/*
 * stage.c - the stage loop of an aio-stress worker thread.
 *
 * Part of a clean re-implementation of Chris Mason's aio-stress (see
 * aio_stress.h).
 *
 * The selected stages run in the fixed order write, read, random write,
 * random read.  All threads start a stage together (barrier).  Within a
 * stage a thread runs submission rounds over its contexts until each has
 * submitted its region's worth of records, then waits for everything in
 * flight, fsyncs (unless -n) and prints its totals.  With stonewalling
 * (default, see -x) the first thread to finish a stage makes the others
 * stop submitting; the last thread out prints the combined throughput.
 * A context that hit an io error drops out of the following stages; the
 * -I round limit ends the run after the stage in which it was reached.
 */
#include "aio_stress.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void stage_prepare(struct worker *w, enum stage s)
{
	int i;

	w->nr_active = 0;
	w->rr = 0;
	w->stage_mb = 0;
	for (i = 0; i < w->nr_ctxs; i++) {
		struct file_ctx *c = w->ctxs[i];

		c->in_stage = !c->failed;
		if (!c->in_stage)
			continue;
		c->stage = s;
		c->total_ios = (uint64_t)(c->end - c->start) / c->rec_len;
		c->started_ios = 0;
		c->next_offset = c->start;
		c->started = false;
		c->cut_short = false;
		c->reported = false;
		c->eof_noted = false;
		c->stage_errors = 0;
		c->stage_verify_errors = 0;
		w->active[w->nr_active++] = c;
	}
}

/* stop all contexts still submitting; their results count as they are */
static void cut_active(struct worker *w)
{
	struct timespec now = ts_now();
	int i;

	for (i = 0; i < w->nr_active; i++) {
		w->active[i]->cut_short = true;
		engine_ctx_check_done(w->active[i], &now);
	}
	w->nr_active = 0;
}

/* nothing could be submitted: wait for a completion, or briefly */
static int idle_wait(struct worker *w)
{
	const struct timespec pause = { .tv_nsec = 1000 * 1000 };

	if (w->pending)
		return engine_reap(w, 1) < 0 ? -1 : 0;
	nanosleep(&pause, NULL);
	return 0;
}

/* submit until every context is done or cut short; -1 on engine failure */
static int submit_all(struct worker *w)
{
	struct run *r = w->run;
	const struct options *o = r->opt;
	long rounds = 0;
	bool idle;

	while (w->nr_active) {
		if (o->stonewall && atomic_load(&r->stage_done)) {
			cut_active(w);
			break;
		}
		if (o->rounds && rounds >= o->rounds) {
			cut_active(w);
			atomic_store(&r->stop, true);
			break;
		}
		if (engine_submit_round(w, &idle) < 0)
			return -1;
		if (!idle)
			rounds++;
		else if (idle_wait(w) < 0)
			return -1;
		engine_prune_active(w);
	}
	return 0;
}

static void finish_stage(struct worker *w, enum stage s)
{
	const struct options *o = w->run->opt;
	struct timespec now = ts_now();
	int i;

	for (i = 0; i < w->nr_ctxs; i++) {
		struct file_ctx *c = w->ctxs[i];

		if (!c->in_stage)
			continue;
		engine_ctx_check_done(c, &now);
		if (c->stage_errors > 1)
			report_error("%s (context %d): %u io errors in %s stage",
				     c->path, c->index, c->stage_errors,
				     stage_name(s));
		if (c->stage_verify_errors)
			report_error("%s (context %d): %llu records failed "
				     "verification in %s stage", c->path,
				     c->index,
				     (unsigned long long)c->stage_verify_errors,
				     stage_name(s));
		/* EINVAL: a special file that cannot be synced, not an error */
		if (o->fsync_stages && fsync(c->fd) < 0 && errno != EINVAL) {
			report_error("fsync %s (context %d) after %s stage: %s",
				     c->path, c->index, stage_name(s),
				     strerror(errno));
			w->errors++;
		}
		w->stage_mb += (double)c->started_ios * (double)c->rec_len / MB;
	}
}

static void run_stage(struct worker *w, enum stage s)
{
	const struct options *o = w->run->opt;
	struct timespec stage_start = ts_now();

	stage_prepare(w, s);
	if (submit_all(w) < 0 || engine_drain(w) < 0) {
		/* the aio context itself failed: nothing more can run */
		cut_active(w);
		w->errors++;
		atomic_store(&w->run->stop, true);
	}
	if (o->submit_latency)
		latency_print("latency", &w->submit_lat);
	if (o->completion_latency)
		latency_print("completion latency", &w->completion_lat);
	finish_stage(w, s);
	report_thread_totals(w, s, &stage_start);
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	int s;

	for (s = 0; s < NR_STAGES; s++) {
		if (!(r->opt->stages & (1u << s)))
			continue;

		if (pthread_barrier_wait(&r->barrier) ==
		    PTHREAD_BARRIER_SERIAL_THREAD)
			r->stage_start = ts_now();

		run_stage(w, (enum stage)s);

		/* first one here stonewalls the others */
		atomic_store(&r->stage_done, true);
		if (pthread_barrier_wait(&r->barrier) ==
		    PTHREAD_BARRIER_SERIAL_THREAD) {
			if (r->nr_workers > 1)
				report_global(r, (enum stage)s);
			/* nobody reads it again before the next barrier */
			atomic_store(&r->stage_done, false);
		}
		/* set before the barrier, so every thread agrees */
		if (atomic_load(&r->stop))
			break;
	}
	return NULL;
}
