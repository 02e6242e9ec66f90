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
 *   chase:N    a random pointer chase over N MiB (caches and memory:
 *              at a few MiB a shared last-level cache, when other
 *              tenants of the machine evict it, shows here)
 *
 * Each window is calibrated to about --window ms on the first pass.
 *
 *   host-noise [--seconds S] [--window MS] [--duty PCT] [--log FILE]
 *              [alu] [chase:MIB]...          (default: alu chase:8 chase:256)
 *
 * --duty runs a window only every 100/PCT windows' worth of time and
 * sleeps in between, so that the probe can sample beside a benchmark
 * without taking much from it.  --log writes every window as
 * "<unix time> <probe> <ms>".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROBES	8

struct probe {
	char name[32];
	size_t mib;		/* 0: the alu loop */
	uint64_t *ring;		/* chase: a single cycle through the buffer */
	uint64_t iters;		/* work per window, from calibration */
	double *ms;		/* one sample per window */
	size_t n;
};

struct opts {
	double seconds;
	double window_ms;
	double duty;
	const char *log;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static double wall(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
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
	return 0;
}

static volatile uint64_t sink;

static double run_window(const struct probe *p, uint64_t iters)
{
	double t0 = now();
	uint64_t x = 1, k;

	if (p->mib) {
		for (k = 0; k < iters; k++)
			x = p->ring[x];
	} else {
		for (k = 0; k < iters; k++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	}
	sink = x;
	return (now() - t0) * 1e3;
}

static void calibrate(struct probe *p, double window_ms)
{
	uint64_t iters = 1000;
	double ms;

	while ((ms = run_window(p, iters)) < window_ms / 4)
		iters *= 2;
	p->iters = (uint64_t)(iters * window_ms / ms) + 1;
}

static int parse_probe(const char *arg, struct probe *p)
{
	char *end;

	memset(p, 0, sizeof(*p));
	if (!strcmp(arg, "alu")) {
		snprintf(p->name, sizeof(p->name), "alu");
		return 0;
	}
	if (strncmp(arg, "chase:", 6))
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
	if (errno || *end || end == val || *out < lo || *out > hi) {
		fprintf(stderr, "host-noise: %s takes a number from %g to %g, not '%s'\n",
			opt, lo, hi, val);
		return -1;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double quantile(const double *sorted, size_t n, double q)
{
	return sorted[(size_t)(q * (n - 1) + 0.5)];
}

static void report(const struct probe *p)
{
	double *s = malloc(p->n * sizeof(*s));

	if (!s || !p->n) {
		printf("%-10s no samples\n", p->name);
		free(s);
		return;
	}
	memcpy(s, p->ms, p->n * sizeof(*s));
	qsort(s, p->n, sizeof(*s), cmp_double);
	printf("%-10s %5zu windows  median %8.2f ms  p5 %8.2f  p95 %8.2f  min %8.2f  max %8.2f  p95/p5 %5.2f  max/min %5.2f\n",
	       p->name, p->n, quantile(s, p->n, 0.5), quantile(s, p->n, 0.05),
	       quantile(s, p->n, 0.95), s[0], s[p->n - 1],
	       quantile(s, p->n, 0.95) / quantile(s, p->n, 0.05), s[p->n - 1] / s[0]);
	free(s);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: host-noise [--seconds S] [--window MS] [--duty PCT] [--log FILE] "
		   "[alu] [chase:MIB]...\n");
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 60, .window_ms = 100, .duty = 100, .log = NULL };
	struct probe probes[MAX_PROBES];
	size_t np = 0, i, cap;
	FILE *log = NULL;
	double end, sleep_ms;
	int a;

	for (a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(arg, "--seconds")) {
			if (parse_num(arg, val, 0.1, 86400, &o.seconds))
				return 2;
			a++;
		} else if (!strcmp(arg, "--window")) {
			if (parse_num(arg, val, 1, 10000, &o.window_ms))
				return 2;
			a++;
		} else if (!strcmp(arg, "--duty")) {
			if (parse_num(arg, val, 0.1, 100, &o.duty))
				return 2;
			a++;
		} else if (!strcmp(arg, "--log")) {
			if (!val) {
				fprintf(stderr, "host-noise: --log needs a file\n");
				return 2;
			}
			o.log = val;
			a++;
		} else if (arg[0] == '-') {
			fprintf(stderr, "host-noise: unknown option '%s'\n", arg);
			usage(stderr);
			return 2;
		} else {
			if (np == MAX_PROBES) {
				fprintf(stderr, "host-noise: at most %d probes\n", MAX_PROBES);
				return 2;
			}
			if (parse_probe(arg, &probes[np]))
				return 2;
			np++;
		}
	}
	if (!np) {
		const char *def[] = { "alu", "chase:8", "chase:256" };

		for (np = 0; np < 3; np++)
			parse_probe(def[np], &probes[np]);
	}
	if (o.log) {
		log = fopen(o.log, "w");
		if (!log) {
			fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
			return 1;
		}
	}
	/* every probe gets a window in turn: at most this many each */
	cap = (size_t)(o.seconds * 1e3 / o.window_ms) + 2;
	for (i = 0; i < np; i++) {
		probes[i].ms = malloc(cap * sizeof(double));
		if (!probes[i].ms || (probes[i].mib && ring_init(&probes[i]))) {
			if (!probes[i].ms)
				fprintf(stderr, "host-noise: out of memory\n");
			return 1;
		}
		calibrate(&probes[i], o.window_ms);
	}
	sleep_ms = o.window_ms * (100 / o.duty - 1);
	end = now() + o.seconds;
	while (now() < end) {
		for (i = 0; i < np && now() < end; i++) {
			struct probe *p = &probes[i];
			double ms = run_window(p, p->iters);

			if (p->n < cap)
				p->ms[p->n++] = ms;
			/* line by line: another program may follow the log */
			if (log && (fprintf(log, "%.3f %s %.3f\n", wall(), p->name, ms) < 0 ||
				    fflush(log))) {
				fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
				return 1;
			}
			if (sleep_ms > 0) {
				struct timespec ts = {
					.tv_sec = (time_t)(sleep_ms / 1e3),
					.tv_nsec = (long)((sleep_ms - (time_t)(sleep_ms / 1e3) * 1e3) * 1e6),
				};

				nanosleep(&ts, NULL);
			}
		}
	}
	if (log && fclose(log)) {
		fprintf(stderr, "host-noise: %s: %s\n", o.log, strerror(errno));
		return 1;
	}
	for (i = 0; i < np; i++)
		report(&probes[i]);
	return 0;
}
