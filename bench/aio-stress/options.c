/*
 * options.c - command line parsing for aio-stress.
 *
 * Part of a clean re-implementation of Chris Mason's aio-stress (see
 * aio_stress.h).  Flags and defaults follow the original:
 *
 *   -s file size (MB unless suffixed, default 1024MB)
 *   -r record size (KB unless suffixed, default 64KB)
 *   -a buffer alignment (KB unless suffixed, default page size)
 *   -d io units per file context (default 64)
 *   -i ios per context before moving to the next one (default 8)
 *   -b iocbs per io_submit (default files * contexts * -i)
 *   -I submit rounds per stage (default: until the stage is done)
 *   -c contexts per file, -C offset between contexts (default 2MB)
 *   -o stage to run, repeatable (default: all four)
 *   -t threads, -m shm|shmfs, -O, -S, -n, -l, -L, -x, -v, -u, -h
 *
 * Unlike the original, malformed numbers and impossible combinations are
 * rejected with a message instead of being silently misread.
 */
#include "aio_stress.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* upper bounds that keep every derived product far from overflow */
#define MAX_COUNT	(1 << 20)
#define MAX_REC_LEN	(1ULL << 30)

static const char *const stage_names[NR_STAGES] = {
	[STAGE_WRITE]	= "write",
	[STAGE_READ]	= "read",
	[STAGE_RWRITE]	= "random write",
	[STAGE_RREAD]	= "random read",
};

const char *stage_name(enum stage s)
{
	return (unsigned)s < NR_STAGES ? stage_names[s] : "unknown";
}

void options_usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-s size] [-r size] [-a size] [-d num] [-b num]\n"
		"                  [-i num] [-I num] [-t num] [-c num] [-C size]\n"
		"                  [-o stage]... [-m shm|shmfs] [-nlLxvuOSh]\n"
		"                  file1 [file2 ...]\n"
		"\t-a size in KB at which to align buffers (default page size)\n"
		"\t-b max number of iocbs to give io_submit at once\n"
		"\t   (default files * contexts * ios per iteration)\n"
		"\t-c number of io contexts per file\n"
		"\t-C offset between contexts, default 2MB\n"
		"\t-s size in MB of the test file(s), default 1024MB\n"
		"\t-r record size in KB used for each io, default 64KB\n"
		"\t-d number of pending aio requests for each file, default 64\n"
		"\t-i number of ios per file sent before switching\n"
		"\t   to the next file, default 8\n"
		"\t-I number of submit rounds per stage, default until done;\n"
		"\t   no further stages run once the limit was hit\n"
		"\t-O Use O_DIRECT\n"
		"\t-S Use O_SYNC\n"
		"\t-o add an operation to the list: write=0, read=1,\n"
		"\t   random write=2, random read=3.\n"
		"\t   repeat -o to specify multiple ops: -o 0 -o 1 etc.\n"
		"\t   stages always run in that order; default all four\n"
		"\t-m shm use ipc shared memory for io buffers instead of malloc\n"
		"\t-m shmfs mmap a file in /dev/shm for io buffers\n"
		"\t-n no fsyncs between stages\n"
		"\t-l print io_submit latencies after each stage\n"
		"\t-L print io completion latencies after each stage\n"
		"\t-t number of threads to run\n"
		"\t-u unlink files after completion\n"
		"\t-v verification of bytes written (and of reads)\n"
		"\t-x turn off thread stonewalling\n"
		"\t-h this message\n"
		"\n\t   the size options (-a -s -r -C) allow modifiers -s 400{b,k,m,g}\n"
		"\t   translate to 400 bytes, 400KB, 400MB and 400GB\n"
		"version %s\n", PROG_NAME, PROG_VERSION);
}

/* "<digits>[bkmgBKMG]"; a bare number is in units of @unit bytes */
static int parse_size(const char *arg, char opt, unsigned long long unit,
		      unsigned long long *out)
{
	unsigned long long v, mult = unit;
	char *end;

	if (!isdigit((unsigned char)arg[0]))
		goto bad;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno)
		goto bad;
	if (*end) {
		switch (tolower((unsigned char)*end)) {
		case 'b': mult = 1; break;
		case 'k': mult = 1ULL << 10; break;
		case 'm': mult = 1ULL << 20; break;
		case 'g': mult = 1ULL << 30; break;
		default: goto bad;
		}
		if (end[1])
			goto bad;
	}
	if (v > ULLONG_MAX / mult || v * mult > (unsigned long long)LLONG_MAX) {
		report_error("size '%s' for -%c is too large", arg, opt);
		return -1;
	}
	*out = v * mult;
	return 0;
bad:
	report_error("invalid size '%s' for -%c (expected a number with an "
		     "optional b, k, m or g suffix)", arg, opt);
	return -1;
}

static int parse_count(const char *arg, char opt, long min, long max,
		       long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		report_error("invalid value '%s' for -%c (expected an integer "
			     "from %ld to %ld)", arg, opt, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_int(const char *arg, char opt, int *out)
{
	long v;

	if (parse_count(arg, opt, 1, MAX_COUNT, &v))
		return -1;
	*out = (int)v;
	return 0;
}

static void set_defaults(struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->file_size = 1024ULL << 20;
	o->rec_len = 64 << 10;
	o->align = (size_t)sysconf(_SC_PAGESIZE);
	o->depth = 64;
	o->io_iter = 8;
	o->contexts = 1;
	o->context_offset = 2ULL << 20;
	o->threads = 1;
	o->mem = MEM_MALLOC;
	o->fsync_stages = true;
	o->stonewall = true;
}

/*
 * Returns 0 when the program should run, 1 after -h (usage printed),
 * -1 on a usage error (message printed).
 */
int options_parse(struct options *o, int argc, char **argv)
{
	unsigned long long size;
	long v;
	int c;

	set_defaults(o);
	opterr = 0;
	while ((c = getopt(argc, argv,
			   ":a:b:c:C:m:s:r:d:i:I:o:t:lLnhOSxvu")) != -1) {
		switch (c) {
		case 'a':
			if (parse_size(optarg, 'a', 1024, &size))
				return -1;
			if (size == 0 || (size & (size - 1)) ||
			    size > MAX_REC_LEN) {
				report_error("alignment '%s' for -a must be a "
					     "power of two, at most 1g", optarg);
				return -1;
			}
			o->align = (size_t)size;
			break;
		case 'b':
			if (parse_int(optarg, 'b', &o->max_submit))
				return -1;
			break;
		case 'c':
			if (parse_int(optarg, 'c', &o->contexts))
				return -1;
			break;
		case 'C':
			if (parse_size(optarg, 'C', 1024 * 1024,
				       &o->context_offset))
				return -1;
			break;
		case 'd':
			if (parse_int(optarg, 'd', &o->depth))
				return -1;
			break;
		case 'i':
			if (parse_int(optarg, 'i', &o->io_iter))
				return -1;
			break;
		case 'I':
			if (parse_count(optarg, 'I', 1, LONG_MAX, &v))
				return -1;
			o->rounds = v;
			break;
		case 'm':
			if (!strcmp(optarg, "shm")) {
				fprintf(stderr, "using ipc shm\n");
				o->mem = MEM_SHM;
			} else if (!strcmp(optarg, "shmfs")) {
				fprintf(stderr, "using /dev/shm for buffers\n");
				o->mem = MEM_SHMFS;
			} else {
				report_error("invalid value '%s' for -m "
					     "(expected shm or shmfs)", optarg);
				return -1;
			}
			break;
		case 'o':
			if (parse_count(optarg, 'o', 0, NR_STAGES - 1, &v)) {
				report_error("stages: 0=write 1=read "
					     "2=random write 3=random read");
				return -1;
			}
			o->stages |= 1u << v;
			fprintf(stderr, "adding stage %s\n",
				stage_name((enum stage)v));
			break;
		case 'r':
			if (parse_size(optarg, 'r', 1024, &size))
				return -1;
			if (size == 0 || size > MAX_REC_LEN) {
				report_error("record size '%s' for -r must be "
					     "between 1 byte and 1g", optarg);
				return -1;
			}
			o->rec_len = (size_t)size;
			break;
		case 's':
			if (parse_size(optarg, 's', 1024 * 1024,
				       &o->file_size))
				return -1;
			break;
		case 't':
			if (parse_int(optarg, 't', &o->threads))
				return -1;
			break;
		case 'l': o->submit_latency = true; break;
		case 'L': o->completion_latency = true; break;
		case 'n': o->fsync_stages = false; break;
		case 'O': o->open_flags |= O_DIRECT; break;
		case 'S': o->open_flags |= O_SYNC; break;
		case 'x': o->stonewall = false; break;
		case 'v': o->verify = true; break;
		case 'u': o->unlink_files = true; break;
		case 'h':
			options_usage(stdout);
			return 1;
		case ':':
			report_error("option -%c requires an argument", optopt);
			return -1;
		default:
			report_error("unknown option -%c", optopt);
			return -1;
		}
	}

	if (optind >= argc) {
		report_error("no file given");
		return -1;
	}
	o->files = argv + optind;
	o->nr_files = argc - optind;
	return 0;
}

/*
 * Derive the dependent settings the way the original does, printing the
 * same "dropping ..." notes, and reject layouts that cannot work.
 */
int options_finalize(struct options *o)
{
	unsigned long long shift, start, end;
	long total_ctxs = (long)o->nr_files * o->contexts;
	int i;

	if (o->depth < o->io_iter) {
		o->io_iter = o->depth;
		fprintf(stderr, "dropping io_iter to %d\n", o->io_iter);
	}
	if (o->threads > total_ctxs) {
		o->threads = (int)total_ctxs;
		fprintf(stderr, "dropping thread count to the number of "
			"contexts %d\n", o->threads);
	}
	/* io units (and iocbs, buffers) a single thread needs */
	if (total_ctxs > MAX_COUNT ||
	    (total_ctxs + o->threads - 1) / o->threads * o->depth > MAX_COUNT) {
		report_error("too many io units per thread: %ld file contexts "
			     "on %d threads with depth %d", total_ctxs,
			     o->threads, o->depth);
		return -1;
	}
	if (!o->max_submit) {
		long dflt = total_ctxs * o->io_iter;

		o->max_submit = dflt > MAX_COUNT ? MAX_COUNT : (int)dflt;
	}
	if (o->max_submit < o->io_iter) {
		o->io_iter = o->max_submit;
		fprintf(stderr, "dropping io_iter to %d\n", o->io_iter);
	}

	if (!o->stages) {
		o->stages = (1u << NR_STAGES) - 1;
	} else {
		for (i = 0; i < NR_STAGES; i++) {
			if (o->stages & (1u << i)) {
				fprintf(stderr, "starting with %s\n",
					stage_name((enum stage)i));
				break;
			}
		}
	}

	/*
	 * Context j works on [j * C, size - j * C): each context starts C
	 * further in and stops C earlier than the previous one.  The last
	 * context must still have room for one record.
	 */
	shift = (unsigned long long)(o->contexts - 1) * o->context_offset;
	if (o->context_offset && shift / o->context_offset !=
	    (unsigned long long)(o->contexts - 1))
		shift = ULLONG_MAX;
	start = shift;
	end = o->file_size > shift ? o->file_size - shift : 0;
	if (end <= start || end - start < o->rec_len) {
		report_error("file size %lluMB too small for %d contexts "
			     "%lluMB apart with %zuKB records",
			     o->file_size >> 20, o->contexts,
			     o->context_offset >> 20, o->rec_len >> 10);
		return -1;
	}
	return 0;
}

void options_print(const struct options *o, FILE *f)
{
	fprintf(f, "file size %lluMB, record size %zuKB, depth %d, "
		"ios per iteration %d\n",
		o->file_size >> 20, o->rec_len >> 10, o->depth, o->io_iter);
	fprintf(f, "max io_submit %d, buffer alignment set to %zuKB\n",
		o->max_submit, o->align >> 10);
	fprintf(f, "threads %d files %d contexts %d context offset %lluMB "
		"verification %s\n", o->threads, o->nr_files, o->contexts,
		o->context_offset >> 20, o->verify ? "on" : "off");
}
