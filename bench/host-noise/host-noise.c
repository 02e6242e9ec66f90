// SPDX-License-Identifier: GPL-2.0
/*
 * host-noise - how steady this host's CPU and caches are, over time.
 *
 * The bench compares two modules by wall-clock time under TCG, so it can
 * resolve no difference smaller than the host's own swings.  This probe
 * times fixed amounts of work, one window after another, and prints how
 * much the time per window moves:
 *
 *   alu        a chain of dependent multiplies (the core's clock)
 *   chase:N    a random pointer chase over N MiB, continued from window
 *              to window so that the whole buffer is walked (at a few
 *              MiB the last-level cache, at hundreds of MiB memory)
 *
 * The work per window is fixed once, at start: the fastest of three
 * timings of the amount that takes about --window ms.  A window that takes
 * longer later is the host (or the probe's own wait for a core) being
 * slower then.
 *
 *   host-noise [--seconds S] [--window MS] [--duty PCT] [--log FILE]
 *              [alu] [chase:MIB]...          (default: alu chase:8 chase:256)
 *
 * --duty PCT sleeps after each window so that windows take about PCT% of
 * the time, to sample beside a benchmark without taking much from it.
 * --log writes every window as "<unix time> <probe> <ms>".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROBES	8
#define MAX_ITERS	(1ULL << 40)

static const char *const default_probes[] = { "alu", "chase:8", "chase:256" };

struct probe {
	char name[32];
	size_t mib;		/* 0: the alu loop */
	uint64_t *ring;		/* chase: a single cycle through the buffer */
	uint64_t pos;		/* where the chase (or the alu chain) stands */
	uint64_t iters;		/* work per window, from calibration */
	double *ms;		/* one sample per window */
	size_t n, cap;
};

struct opts {
	double seconds;
	double window_ms;
	double duty;
	const char *log;
};

static double clock_s(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One cycle over all slots (Sattolo's shuffle), so the chase visits every slot. */
static int ring_init(struct probe *p)
{
	size_t n = p->mib << 17, i;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	p->ring = malloc(n * sizeof(*p->ring));
	if (!p->ring) {
		fprintf(stderr, "host-noise: %s: cannot allocate %zu MiB\n", p->name, p->mib);
		return -1;
	}
	for (i = 0; i < n; i++)
		p->ring[i] = i;
	for (i = n - 1; i > 0; i--) {
		size_t j = xorshift(&seed) % i;
		uint64_t t = p->ring[i];

		p->ring[i] = p->ring[j];
		p->ring[j] = t;
	}
	p->pos = 0;
	return 0;
}

/* Milliseconds for iters steps, going on from where the last window stopped. */
static double run_window(struct probe *p, uint64_t iters)
{
	double t0 = clock_s(CLOCK_MONOTONIC);
	uint64_t x = p->pos, k;

	if (p->mib) {
		for (k = 0; k < iters; k++)
			x = p->ring[x];
	} else {
		for (k = 0; k < iters; k++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	}
	/* the result is used, so the loop is not optimised away */
	p->pos = x;
	return (clock_s(CLOCK_MONOTONIC) - t0) * 1e3;
}

static int calibrate(struct probe *p, double window_ms)
{
	uint64_t iters = 1000;
	double ms, best;
	int i;

	while ((ms = run_window(p, iters)) < window_ms / 4) {
		if (iters >= MAX_ITERS) {
			fprintf(stderr, "host-noise: %s: %llu steps take only %.3f ms\n",
				p->name, (unsigned long long)iters, ms);
			return -1;
		}
		iters *= 2;
	}
	iters = (uint64_t)(iters * (window_ms / ms)) + 1;
	/* the fastest of three: a preemption now must not shrink every window */
	best = run_window(p, iters);
	for (i = 0; i < 2; i++) {
		ms = run_window(p, iters);
		if (ms < best)
			best = ms;
	}
	p->iters = (uint64_t)(iters * (window_ms / best)) + 1;
	return 0;
}

static int parse_probe(const char *arg, struct probe *p)
{
	char *end;

	memset(p, 0, sizeof(*p));
	if (!strcmp(arg, "alu")) {
		snprintf(p->name, sizeof(p->name), "alu");
		p->pos = 1;
		return 0;
	}
	if (strncmp(arg, "chase:", 6) || !arg[6])
		goto bad;
	errno = 0;
	p->mib = strtoul(arg + 6, &end, 10);
	if (errno || *end || p->mib < 1 || p->mib > 4096)
		goto bad;
	snprintf(p->name, sizeof(p->name), "chase:%zu", p->mib);
	return 0;
bad:
	fprintf(stderr, "host-noise: bad probe '%s': alu or chase:MIB (1 to 4096)\n", arg);
	return -1;
}

static int parse_num(const char *opt, const char *val, double lo, double hi, double *out)
{
	char *end;

	if (!val) {
		fprintf(stderr, "host-noise: %s needs a value\n", opt);
		return -1;
	}
	errno = 0;
	*out = strtod(val, &end);
	/* written so that NaN fails too */
	if (errno || *end || end == val || !(*out >= lo && *out <= hi)) {
		fprintf(stderr, "host-noise: %s takes a number from %g to %g, not '%s'\n",
			opt, lo, hi, val);
		return -1;
	}
	return 0;
}

static int add_sample(struct probe *p, double ms)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;
		double *ms_new = realloc(p->ms, cap * sizeof(*ms_new));

		if (!ms_new) {
			fprintf(stderr, "host-noise: out of memory after %zu windows\n", p->n);
			return -1;
		}
		p->ms = ms_new;
		p->cap = cap;
	}
	p->ms[p->n++] = ms;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* nearest rank */
static double quantile(const double *sorted, size_t n, double q)
{
	return sorted[(size_t)(q * (n - 1) + 0.5)];
}

static int report(const struct probe *p)
{
	double *s;

	if (!p->n) {
		printf("%-10s no windows\n", p->name);
		return 0;
	}
	s = malloc(p->n * sizeof(*s));
	if (!s) {
		fprintf(stderr, "host-noise: out of memory for the summary\n");
		return -1;
	}
	memcpy(s, p->ms, p->n * sizeof(*s));
	qsort(s, p->n, sizeof(*s), cmp_double);
	printf("%-10s %5zu windows of %llu steps (%.2f ns a step at the median)  median %8.2f ms  p5 %8.2f  p95 %8.2f  min %8.2f  max %8.2f  p95/p5 %5.2f  max/min %5.2f\n",
	       p->name, p->n, (unsigned long long)p->iters,
	       quantile(s, p->n, 0.5) * 1e6 / p->iters,
	       quantile(s, p->n, 0.5), quantile(s, p->n, 0.05),
	       quantile(s, p->n, 0.95), s[0], s[p->n - 1],
	       quantile(s, p->n, 0.95) / quantile(s, p->n, 0.05), s[p->n - 1] / s[0]);
	free(s);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: host-noise [--seconds S] [--window MS] [--duty PCT] [--log FILE] "
		   "[alu] [chase:MIB]...\n");
}

static int parse_args(int argc, char **argv, struct opts *o, struct probe *probes, size_t *np)
{
	int a;

	for (a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(arg, "--seconds")) {
			if (parse_num(arg, val, 0.1, 86400, &o->seconds))
				return -1;
			a++;
		} else if (!strcmp(arg, "--window")) {
			if (parse_num(arg, val, 1, 10000, &o->window_ms))
				return -1;
			a++;
		} else if (!strcmp(arg, "--duty")) {
			if (parse_num(arg, val, 0.1, 100, &o->duty))
				return -1;
			a++;
		} else if (!strcmp(arg, "--log")) {
			if (!val || val[0] == '-') {
				fprintf(stderr, "host-noise: --log needs a file\n");
				return -1;
			}
			o->log = val;
			a++;
		} else if (arg[0] == '-') {
			fprintf(stderr, "host-noise: unknown option '%s'\n", arg);
			usage(stderr);
			return -1;
		} else {
			if (*np == MAX_PROBES) {
				fprintf(stderr, "host-noise: at most %d probes\n", MAX_PROBES);
				return -1;
			}
			if (parse_probe(arg, &probes[*np]))
				return -1;
			(*np)++;
		}
	}
	if (!*np) {
		for (; *np < sizeof(default_probes) / sizeof(default_probes[0]); (*np)++)
			parse_probe(default_probes[*np], &probes[*np]);
	}
	return 0;
}

static void pause_for(double ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1e3);
	ts.tv_nsec = (long)((ms - ts.tv_sec * 1e3) * 1e6);
	/* a signal that cuts it short only shortens one pause */
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 60, .window_ms = 100, .duty = 100, .log = NULL };
	struct probe probes[MAX_PROBES];
	size_t np = 0, i;
	FILE *log = NULL;
	double end, t;

	if (parse_args(argc, argv, &o, probes, &np))
		return 2;
	if (o.log) {
		log = fopen(o.log, "w");
		if (!log) {
			fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
			return 1;
		}
	}
	for (i = 0; i < np; i++) {
		if (probes[i].mib && ring_init(&probes[i]))
			return 1;
		if (calibrate(&probes[i], o.window_ms))
			return 1;
	}
	end = clock_s(CLOCK_MONOTONIC) + o.seconds;
	while (clock_s(CLOCK_MONOTONIC) < end) {
		for (i = 0; i < np && clock_s(CLOCK_MONOTONIC) < end; i++) {
			struct probe *p = &probes[i];
			double ms = run_window(p, p->iters);

			if (add_sample(p, ms))
				return 1;
			/* line by line: another program may follow the log */
			if (log && (fprintf(log, "%.3f %s %.3f\n", clock_s(CLOCK_REALTIME),
					    p->name, ms) < 0 || fflush(log))) {
				fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
				return 1;
			}
			/* the duty cycle of what this window really took, not of --window */
			t = end - clock_s(CLOCK_MONOTONIC);
			pause_for(ms * (100 / o.duty - 1) < t * 1e3 ? ms * (100 / o.duty - 1) : t * 1e3);
		}
	}
	if (log && fclose(log)) {
		fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
		return 1;
	}
	for (i = 0; i < np; i++)
		if (report(&probes[i]))
			return 1;
	if (fflush(stdout)) {
		fprintf(stderr, "host-noise: writing the summary: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
