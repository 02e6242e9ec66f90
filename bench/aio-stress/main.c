/*
 * main.c - aio-stress: asynchronous io stress and throughput benchmark.
 *
 * A clean re-implementation, on libaio, of Chris Mason's aio-stress (the
 * version kept in xfstests as ltp/aio-stress.c), written for the
 * fuse-adio benchmarks.  Same flags, same meaning, same style of result
 * lines; see README.md and "aio-stress -h".
 *
 * What it does: opens (creating if needed, never truncating) every file
 * given, -c times each ("file contexts": one fd per context; context j
 * covers bytes [j * C, size - j * C) where C is the -C offset), deals the
 * contexts round-robin to -t threads and runs the selected stages over
 * them with libaio io_submit/io_getevents: sequential write, sequential
 * read, random write, random read.  Each context reports its own
 * throughput when it finishes a stage, each thread its stage totals.
 *
 * How: options.c parses, buffers.c provides aligned io memory,
 * engine.c drives libaio for one thread, stage.c sequences the stages,
 * report.c prints.  This file wires them together.
 *
 * Exit status: 0 on success, 1 on usage errors, setup failures, io
 * errors, fsync errors and (with -v) data mismatches.
 */
#include "aio_stress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct setup {
	struct options opt;
	struct run run;
	struct file_ctx *ctxs;
	int nr_ctxs;
	struct worker *workers;
	struct io_buffers bufs;
	char *pattern;
	bool barrier_ready;
};

static int open_contexts(struct setup *st)
{
	const struct options *o = &st->opt;
	int f, j, n = 0;

	for (f = 0; f < o->nr_files; f++) {
		for (j = 0; j < o->contexts; j++, n++) {
			struct file_ctx *c = &st->ctxs[n];
			off_t shift = (off_t)j * (off_t)o->context_offset;

			c->path = o->files[f];
			c->index = j;
			c->start = shift;
			c->end = (off_t)o->file_size - shift;
			c->rec_len = o->rec_len;
			c->fd = open(c->path, O_CREAT | O_RDWR | o->open_flags,
				     0600);
			if (c->fd < 0) {
				report_error("open %s%s%s: %s", c->path,
					     o->open_flags & O_DIRECT ?
					     " with O_DIRECT" : "",
					     o->open_flags & O_SYNC ?
					     " with O_SYNC" : "",
					     strerror(errno));
				return -1;
			}
		}
	}
	return 0;
}

/* context n goes to thread n % threads, as in the original */
static int assign_contexts(struct setup *st)
{
	int i, t, nr_workers = st->opt.threads;

	for (t = 0; t < nr_workers; t++) {
		struct worker *w = &st->workers[t];

		w->run = &st->run;
		w->id = t;
		w->ctxs = calloc((size_t)(st->nr_ctxs / nr_workers + 1),
				 sizeof(*w->ctxs));
		if (!w->ctxs) {
			report_error("out of memory");
			return -1;
		}
	}
	for (i = 0; i < st->nr_ctxs; i++) {
		struct worker *w = &st->workers[i % nr_workers];

		w->ctxs[w->nr_ctxs++] = &st->ctxs[i];
	}
	return 0;
}

static int setup_buffers(struct setup *st)
{
	const struct options *o = &st->opt;
	size_t slot = (o->rec_len + o->align - 1) / o->align * o->align;
	size_t units = 0, off = 0;
	int t;

	for (t = 0; t < o->threads; t++)
		units += (size_t)st->workers[t].nr_ctxs * (size_t)o->depth;
	if (buffers_alloc(&st->bufs, o->mem, units * slot, o->align))
		return -1;

	st->pattern = malloc(o->rec_len);
	if (!st->pattern) {
		report_error("out of memory for the verify pattern");
		return -1;
	}
	memset(st->pattern, VERIFY_PATTERN, o->rec_len);
	st->run.pattern = st->pattern;

	for (t = 0; t < o->threads; t++) {
		struct worker *w = &st->workers[t];

		if (engine_init(w, st->bufs.base + off, slot))
			return -1;
		off += (size_t)w->nr_units * slot;
	}
	return 0;
}

static int run_threads(struct setup *st)
{
	int t, err;

	if (st->opt.threads > 1)
		printf("Running multi thread version num_threads:%d\n",
		       st->opt.threads);
	else
		printf("Running single thread version \n");
	fflush(stdout);

	for (t = 0; t < st->opt.threads; t++) {
		err = pthread_create(&st->workers[t].tid, NULL, worker_main,
				     &st->workers[t]);
		if (err) {
			/* the others would wait forever at the first barrier */
			report_error("pthread_create: %s", strerror(err));
			exit(1);
		}
	}
	for (t = 0; t < st->opt.threads; t++) {
		err = pthread_join(st->workers[t].tid, NULL);
		if (err) {
			report_error("pthread_join: %s", strerror(err));
			return -1;
		}
	}
	return 0;
}

static unsigned long teardown(struct setup *st)
{
	unsigned long errors = 0;
	int i;

	if (st->barrier_ready)
		pthread_barrier_destroy(&st->run.barrier);
	for (i = 0; st->workers && i < st->opt.threads; i++) {
		errors += st->workers[i].errors;
		engine_destroy(&st->workers[i]);
		free(st->workers[i].ctxs);
	}
	for (i = 0; st->ctxs && i < st->nr_ctxs; i++) {
		if (st->ctxs[i].fd >= 0 && close(st->ctxs[i].fd) < 0) {
			report_error("close %s: %s", st->ctxs[i].path,
				     strerror(errno));
			errors++;
		}
	}
	buffers_free(&st->bufs);
	free(st->pattern);
	free(st->workers);
	free(st->ctxs);
	return errors;
}

static unsigned long unlink_files(const struct options *o)
{
	unsigned long errors = 0;
	int f;

	for (f = 0; f < o->nr_files; f++) {
		printf("Cleaning up file %s \n", o->files[f]);
		if (unlink(o->files[f]) < 0 && errno != ENOENT) {
			report_error("unlink %s: %s", o->files[f],
				     strerror(errno));
			errors++;
		}
	}
	return errors;
}

int main(int argc, char **argv)
{
	struct setup st;
	unsigned long errors;
	int i, rc;

	memset(&st, 0, sizeof(st));
	rc = options_parse(&st.opt, argc, argv);
	if (rc > 0)
		return 0;
	if (rc < 0 || options_finalize(&st.opt) < 0) {
		fprintf(stderr, "Try '%s -h' for more information.\n",
			PROG_NAME);
		return 1;
	}
	options_print(&st.opt, stderr);

	st.run.opt = &st.opt;
	st.run.nr_workers = st.opt.threads;
	st.nr_ctxs = st.opt.nr_files * st.opt.contexts;
	st.ctxs = calloc((size_t)st.nr_ctxs, sizeof(*st.ctxs));
	st.workers = calloc((size_t)st.opt.threads, sizeof(*st.workers));
	if (!st.ctxs || !st.workers) {
		report_error("out of memory");
		teardown(&st);
		return 1;
	}
	for (i = 0; i < st.nr_ctxs; i++)
		st.ctxs[i].fd = -1;
	st.run.workers = st.workers;

	rc = pthread_barrier_init(&st.run.barrier, NULL,
				  (unsigned)st.opt.threads);
	if (rc) {
		report_error("pthread_barrier_init: %s", strerror(rc));
		teardown(&st);
		return 1;
	}
	st.barrier_ready = true;

	if (open_contexts(&st) || assign_contexts(&st) || setup_buffers(&st)) {
		teardown(&st);
		return 1;
	}

	rc = run_threads(&st);
	errors = teardown(&st);
	if (st.opt.unlink_files)
		errors += unlink_files(&st.opt);
	if (rc || errors) {
		if (errors)
			report_error("%lu error%s", errors,
				     errors == 1 ? "" : "s");
		return 1;
	}
	return 0;
}
