/*
 * report.c - timing, latency statistics and result lines of aio-stress.
 *
 * Part of a clean re-implementation of Chris Mason's aio-stress (see
 * aio_stress.h).  The result lines keep the original's format, on
 * stderr:
 *
 *   write on FILE (X MB/s) M MB in Ts                  one file context
 *   thread N write totals (X MB/s) M MB in Ts          one thread, one stage
 *   write throughput (X MB/s) M MB in Ts min transfer MMB   all threads
 *   latency min A avg B max C                          -l / -L, in ms
 *
 * MB is 2^20 bytes.  A context's time runs from its first io being
 * prepared to its last completion; a thread's time covers its whole stage
 * including the fsync.
 */
#include "aio_stress.h"

#include <stdarg.h>
#include <string.h>

static const int lat_limits_ms[NR_LAT_BUCKETS] = {
	100, 250, 500, 1000, 5000, 10000
};

struct timespec ts_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

double ts_elapsed(const struct timespec *from, const struct timespec *to)
{
	double d = (double)(to->tv_sec - from->tv_sec) +
		   (double)(to->tv_nsec - from->tv_nsec) / 1e9;

	return d > 0 ? d : 0;
}

void report_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one write per message so that threads do not interleave */
	fprintf(stderr, "%s: %s\n", PROG_NAME, msg);
}

void latency_add(struct latency *l, const struct timespec *from,
		 const struct timespec *to)
{
	double ms = ts_elapsed(from, to) * 1000.0;
	int i;

	if (!l->count || ms < l->min)
		l->min = ms;
	if (ms > l->max)
		l->max = ms;
	l->sum += ms;
	l->count++;
	for (i = 0; i < NR_LAT_BUCKETS; i++)
		if (ms < lat_limits_ms[i])
			break;
	l->buckets[i]++;
}

/* print and reset */
void latency_print(const char *label, struct latency *l)
{
	char line[256];
	int i, len;

	if (!l->count)
		return;
	len = snprintf(line, sizeof(line), "%s min %.2f avg %.2f max %.2f\n\t",
		       label, l->min, l->sum / (double)l->count, l->max);
	for (i = 0; i < NR_LAT_BUCKETS; i++)
		len += snprintf(line + len, sizeof(line) - (size_t)len,
				" %llu < %d", (unsigned long long)l->buckets[i],
				lat_limits_ms[i]);
	if (l->buckets[NR_LAT_BUCKETS])
		len += snprintf(line + len, sizeof(line) - (size_t)len,
				" %llu >= %d",
				(unsigned long long)l->buckets[NR_LAT_BUCKETS],
				lat_limits_ms[NR_LAT_BUCKETS - 1]);
	fprintf(stderr, "%s\n", line);
	memset(l, 0, sizeof(*l));
}

void report_ctx(const struct file_ctx *c, const struct timespec *now)
{
	double secs = ts_elapsed(&c->start_time, now);
	double mb = (double)c->started_ios * (double)c->rec_len / MB;

	fprintf(stderr, "%s on %s (%.2f MB/s) %.2f MB in %.2fs\n",
		stage_name(c->stage), c->path, secs > 0 ? mb / secs : 0.0,
		mb, secs);
}

void report_thread_totals(const struct worker *w, enum stage s,
			  const struct timespec *stage_start)
{
	struct timespec now = ts_now();
	double secs = ts_elapsed(stage_start, &now);

	if (w->stage_mb <= 0 || !w->nr_ctxs)
		return;
	fprintf(stderr, "thread %d %s totals (%.2f MB/s) %.2f MB in %.2fs\n",
		w->id, stage_name(s), secs > 0 ? w->stage_mb / secs : 0.0,
		w->stage_mb, secs);
}

void report_global(const struct run *r, enum stage s)
{
	struct timespec now = ts_now();
	double secs = ts_elapsed(&r->stage_start, &now);
	double total = 0, min = -1;
	char tail[64] = "";
	int i;

	for (i = 0; i < r->nr_workers; i++) {
		double mb = r->workers[i].stage_mb;

		total += mb;
		if (min < 0 || mb < min)
			min = mb;
	}
	if (total <= 0)
		return;
	if (r->opt->stonewall)
		snprintf(tail, sizeof(tail), " min transfer %.2fMB", min);
	fprintf(stderr, "%s throughput (%.2f MB/s) %.2f MB in %.2fs%s\n",
		stage_name(s), secs > 0 ? total / secs : 0.0, total, secs,
		tail);
}
