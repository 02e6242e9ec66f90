/* Command line parsing: every error is one line on stderr. */
#define _GNU_SOURCE
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pt_fuse.h"

#define PROG "passthrough"
#define PT_VERSION "0.1"

enum {
	OPT_THREADS = 256,
	OPT_CLONE_FD,
	OPT_DIRECT_IO,
	OPT_PARALLEL_DW,
	OPT_NO_ASYNC_DIO,
	OPT_NO_ASYNC_DIO_ALL,
	OPT_MAX_BACKGROUND,
	OPT_MAX_PAGES,
	OPT_LATENCY_US,
	OPT_BACKEND,
	OPT_TRANSPORT,
	OPT_URING_DEPTH,
	OPT_STATS,
};

static const struct option long_opts[] = {
	{ "threads",                required_argument, NULL, OPT_THREADS },
	{ "clone-fd",               no_argument,       NULL, OPT_CLONE_FD },
	{ "direct-io",              no_argument,       NULL, OPT_DIRECT_IO },
	{ "parallel-direct-writes", no_argument,       NULL, OPT_PARALLEL_DW },
	{ "no-async-dio",           no_argument,       NULL, OPT_NO_ASYNC_DIO },
	{ "no-async-dio-all",       no_argument,       NULL, OPT_NO_ASYNC_DIO_ALL },
	{ "max-background",         required_argument, NULL, OPT_MAX_BACKGROUND },
	{ "max-pages",              required_argument, NULL, OPT_MAX_PAGES },
	{ "latency-us",             required_argument, NULL, OPT_LATENCY_US },
	{ "backend",                required_argument, NULL, OPT_BACKEND },
	{ "transport",              required_argument, NULL, OPT_TRANSPORT },
	{ "uring-depth",            required_argument, NULL, OPT_URING_DEPTH },
	{ "stats",                  required_argument, NULL, OPT_STATS },
	{ "foreground",             no_argument,       NULL, 'f' },
	{ "debug",                  no_argument,       NULL, 'd' },
	{ "help",                   no_argument,       NULL, 'h' },
	{ "version",                no_argument,       NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

void options_usage(FILE *out)
{
	fprintf(out,
"usage: " PROG " [options] SOURCE MOUNTPOINT\n"
"\n"
"Passthrough FUSE file system for direct-IO work: mounts directory SOURCE\n"
"at MOUNTPOINT and passes every operation through to it.\n"
"\n"
"options:\n"
"  --threads N              worker threads (default: CPUs, at least 4)\n"
"  --clone-fd               one cloned /dev/fuse queue per worker thread\n"
"  --direct-io              open files with FOPEN_DIRECT_IO\n"
"  --parallel-direct-writes open files with FOPEN_PARALLEL_DIRECT_WRITES\n"
"  --no-async-dio           do not request FUSE_ASYNC_DIO at INIT\n"
"  --no-async-dio-all       do not request FUSE_ASYNC_DIO_ALL at INIT (the\n"
"                           fuse-adio opt-in: concurrent requests for\n"
"                           read()/write() on FOPEN_DIRECT_IO files, async\n"
"                           direct IO queued past max_background)\n"
"  --max-background N       conn max_background, 1..65535\n"
"  --max-pages N            max_read/max_write = N pages, 1..256\n"
"  --latency-us N           delay every READ/WRITE reply by N us, 0..10000000\n"
"                           (the delay does not hold a worker thread)\n"
"  --backend sync|uring     backend IO: preadv/pwritev (default) or io_uring\n"
"  --transport dev|uring    requests by read()/writev() on /dev/fuse (default)\n"
"                           or FUSE-over-io_uring (Linux 6.14+, fuse module\n"
"                           parameter enable_uring=Y): one queue per CPU\n"
"  --uring-depth N          ring entries per queue, 1..1024 (default 64)\n"
"  --stats FILE             write JSON stats to FILE at unmount and on SIGUSR1\n"
"                           (default: print them to stderr at those times)\n"
"  -o OPT[,OPT...]          FUSE mount options, e.g. allow_other\n"
"  -f, --foreground         do not daemonize\n"
"  -d, --debug              libfuse debug output (implies --foreground)\n"
"  -h, --help               this text\n"
"  -V, --version            version\n"
"\n"
"signals: SIGUSR1 emits stats, SIGUSR2 resets the counters (the in-flight\n"
"maxima restart from the current in-flight counts), SIGINT/SIGTERM unmount.\n");
}

static bool parse_uint(const char *name, const char *s, unsigned int min,
		       unsigned int max, unsigned int *out)
{
	unsigned long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		goto bad;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		goto bad;
	*out = (unsigned int)v;
	return true;
bad:
	fprintf(stderr, PROG ": invalid value '%s' for --%s: expected an integer from %u to %u\n",
		s, name, min, max);
	return false;
}

static bool add_mount_opts(struct options *o, const char *arg)
{
	size_t old = o->mount_opts ? strlen(o->mount_opts) : 0;
	char *n;

	if (arg[0] == '\0') {
		fprintf(stderr, PROG ": empty argument for -o\n");
		return false;
	}
	n = realloc(o->mount_opts, old + strlen(arg) + 2);
	if (n == NULL) {
		fprintf(stderr, PROG ": out of memory parsing -o\n");
		return false;
	}
	if (old)
		n[old++] = ',';
	strcpy(n + old, arg);
	o->mount_opts = n;
	return true;
}

static unsigned int default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 4 ? 4 : (unsigned int)(n > 1024 ? 1024 : n);
}

enum options_result options_parse(struct options *o, int argc, char **argv)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->threads = default_threads();
	o->backend = BACKEND_SYNC;
	o->transport = TRANSPORT_DEV;
	o->uring_depth = 64;

	opterr = 0;	/* we print our own one-line errors */
	while ((c = getopt_long(argc, argv, ":fdhVo:", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_THREADS:
			if (!parse_uint("threads", optarg, 1, 1024, &o->threads))
				return OPTIONS_ERROR;
			break;
		case OPT_CLONE_FD:
			o->clone_fd = true;
			break;
		case OPT_DIRECT_IO:
			o->direct_io = true;
			break;
		case OPT_PARALLEL_DW:
			o->parallel_direct_writes = true;
			break;
		case OPT_NO_ASYNC_DIO:
			o->no_async_dio = true;
			break;
		case OPT_NO_ASYNC_DIO_ALL:
			o->no_async_dio_all = true;
			break;
		case OPT_MAX_BACKGROUND:
			if (!parse_uint("max-background", optarg, 1, 65535,
					&o->max_background))
				return OPTIONS_ERROR;
			break;
		case OPT_MAX_PAGES:
			if (!parse_uint("max-pages", optarg, 1, 256, &o->max_pages))
				return OPTIONS_ERROR;
			break;
		case OPT_LATENCY_US:
			if (!parse_uint("latency-us", optarg, 0, 10000000,
					&o->latency_us))
				return OPTIONS_ERROR;
			break;
		case OPT_BACKEND:
			if (strcmp(optarg, "sync") == 0) {
				o->backend = BACKEND_SYNC;
	o->transport = TRANSPORT_DEV;
	o->uring_depth = 64;
			} else if (strcmp(optarg, "uring") == 0) {
				o->backend = BACKEND_URING;
			} else {
				fprintf(stderr, PROG ": invalid value '%s' for --backend: expected sync or uring\n",
					optarg);
				return OPTIONS_ERROR;
			}
			break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "dev") == 0) {
				o->transport = TRANSPORT_DEV;
			} else if (strcmp(optarg, "uring") == 0) {
				o->transport = TRANSPORT_URING;
			} else {
				fprintf(stderr, PROG ": invalid value '%s' for --transport: expected dev or uring\n",
					optarg);
				return OPTIONS_ERROR;
			}
			break;
		case OPT_URING_DEPTH:
			if (!parse_uint("uring-depth", optarg, 1, 1024,
					&o->uring_depth))
				return OPTIONS_ERROR;
			break;
		case OPT_STATS:
			if (optarg[0] == '\0') {
				fprintf(stderr, PROG ": empty file name for --stats\n");
				return OPTIONS_ERROR;
			}
			o->stats_path = optarg;
			break;
		case 'o':
			if (!add_mount_opts(o, optarg))
				return OPTIONS_ERROR;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			o->foreground = true;
			break;
		case 'h':
			options_usage(stdout);
			return OPTIONS_EXIT;
		case 'V':
			printf(PROG " (fuse-adio) " PT_VERSION ", libfuse %s, FUSE API %d\n",
			       fuse_pkgversion(), FUSE_USE_VERSION);
			return OPTIONS_EXIT;
		case ':':
			fprintf(stderr, PROG ": option '%s' needs a value (try --help)\n",
				argv[optind - 1]);
			return OPTIONS_ERROR;
		default:
			if (optopt && optopt < 256)
				fprintf(stderr, PROG ": unknown option '-%c' (try --help)\n",
					optopt);
			else
				fprintf(stderr, PROG ": unknown option '%s' (try --help)\n",
					argv[optind - 1]);
			return OPTIONS_ERROR;
		}
	}

	if (argc - optind < 2) {
		fprintf(stderr, PROG ": missing %s (usage: " PROG " [options] SOURCE MOUNTPOINT)\n",
			argc - optind == 0 ? "SOURCE and MOUNTPOINT" : "MOUNTPOINT");
		return OPTIONS_ERROR;
	}
	if (argc - optind > 2) {
		fprintf(stderr, PROG ": unexpected argument '%s' (usage: " PROG " [options] SOURCE MOUNTPOINT)\n",
			argv[optind + 2]);
		return OPTIONS_ERROR;
	}
	o->source = argv[optind];
	o->mountpoint = argv[optind + 1];
	return OPTIONS_RUN;
}

void options_free(struct options *o)
{
	free(o->mount_opts);
	o->mount_opts = NULL;
}
