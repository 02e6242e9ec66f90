/*
 * aio_stress.h - shared types for aio-stress.
 *
 * aio-stress is a clean re-implementation, on libaio, of Chris Mason's
 * aio-stress benchmark (the version kept in xfstests as ltp/aio-stress.c).
 * It accepts the same flags with the same meaning and prints the same
 * style of result lines; no code was taken from the original.
 *
 * Model: every file named on the command line gets -c "file contexts",
 * each with its own file descriptor and its own region of the file.
 * Contexts are dealt round-robin to -t worker threads.  Each thread owns
 * one kernel aio context, a pool of io units (-d per context) and runs
 * the selected stages (write, read, random write, random read) in that
 * fixed order, all threads in lockstep.
 *
 * Module layout:
 *   options.c  command line parsing, derived settings, usage text
 *   buffers.c  aligned io buffer memory (malloc, SysV shm, /dev/shm)
 *   engine.c   per-thread libaio engine: prepare, submit, reap, check
 *   stage.c    per-thread stage loop and cross-thread stage sync
 *   report.c   timing, latency statistics and the result lines
 *   main.c     file contexts, threads, cleanup, exit status
 */
#ifndef AIO_STRESS_H
#define AIO_STRESS_H

#include <libaio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define PROG_NAME	"aio-stress"
#define PROG_VERSION	"0.21-fuse-adio"

/* byte written by every write when -v is on, and expected by reads */
#define VERIFY_PATTERN	'b'

#define MB		(1024.0 * 1024.0)

enum stage {
	STAGE_WRITE,
	STAGE_READ,
	STAGE_RWRITE,
	STAGE_RREAD,
	NR_STAGES,
};

enum buf_mem {
	MEM_MALLOC,	/* default */
	MEM_SHM,	/* -m shm: SysV shared memory segment */
	MEM_SHMFS,	/* -m shmfs: mmap of an unlinked file in /dev/shm */
};

struct options {
	unsigned long long file_size;	/* -s, bytes per file */
	size_t rec_len;			/* -r, bytes per io */
	size_t align;			/* -a, buffer/random offset alignment */
	int depth;			/* -d, io units per file context */
	int max_submit;			/* -b, iocbs per io_submit (0: derive) */
	int io_iter;			/* -i, ios per context per round */
	long rounds;			/* -I, submit rounds per stage (0: no limit) */
	int contexts;			/* -c, contexts per file */
	unsigned long long context_offset; /* -C, region shift per context */
	int threads;			/* -t */
	unsigned stages;		/* -o, bit per enum stage (0: all) */
	enum buf_mem mem;		/* -m */
	int open_flags;			/* O_DIRECT (-O) | O_SYNC (-S) */
	bool fsync_stages;		/* cleared by -n */
	bool submit_latency;		/* -l */
	bool completion_latency;	/* -L */
	bool stonewall;			/* cleared by -x */
	bool verify;			/* -v */
	bool unlink_files;		/* -u */
	char **files;
	int nr_files;
};

/* latency histogram, milliseconds */
#define NR_LAT_BUCKETS	6
struct latency {
	double min, max, sum;
	uint64_t count;
	uint64_t buckets[NR_LAT_BUCKETS + 1];	/* last one: above all limits */
};

/* one file descriptor working on one region of one file */
struct file_ctx {
	const char *path;
	int fd;
	int index;			/* context number within its file */
	off_t start, end;		/* region [start, end) */
	size_t rec_len;

	/* per-stage state */
	enum stage stage;
	bool in_stage;			/* takes part in the current stage */
	uint64_t total_ios;		/* ios this stage wants */
	uint64_t started_ios;		/* ios handed to the kernel */
	uint64_t pending;		/* ios in flight */
	off_t next_offset;		/* sequential stages */
	bool started;			/* start_time is valid */
	struct timespec start_time;
	bool cut_short;			/* stop submitting (stonewall, -I, error) */
	bool reported;			/* result line printed */
	bool eof_noted;			/* short read at EOF already reported */
	unsigned stage_errors;
	uint64_t stage_verify_errors;

	/* sticky */
	bool failed;			/* had io errors: skip later stages */
};

struct io_unit {
	struct iocb iocb;
	struct file_ctx *ctx;
	char *buf;
	bool holds_read_data;		/* buffer must be refilled before a write */
	struct timespec submit_time;
	struct io_unit *next_free;
};

struct worker;

/* state shared by all worker threads */
struct run {
	const struct options *opt;
	const char *pattern;		/* rec_len bytes of VERIFY_PATTERN */
	pthread_barrier_t barrier;
	atomic_bool stage_done;		/* a thread finished the stage (stonewall) */
	atomic_bool stop;		/* run no further stages */
	struct timespec stage_start;
	struct worker *workers;
	int nr_workers;
};

struct worker {
	struct run *run;
	int id;
	pthread_t tid;

	struct file_ctx **ctxs;		/* contexts served by this thread */
	int nr_ctxs;

	/* engine */
	io_context_t aio;
	bool aio_ready;
	struct io_unit *units;
	int nr_units;
	struct io_unit *free_units;
	uint64_t pending;
	struct iocb **batch;
	int batch_max;			/* iocbs per io_submit */
	int io_iter;			/* ios per context per round */
	struct io_event *events;
	uint64_t rng;

	/* contexts still submitting in the current stage, round-robin */
	struct file_ctx **active;
	int nr_active;
	int rr;

	/* statistics */
	struct latency submit_lat;
	struct latency completion_lat;
	double stage_mb;
	unsigned long errors;		/* io, verify and fsync errors, whole run */
};

/* options.c */
const char *stage_name(enum stage s);
void options_usage(FILE *f);
int options_parse(struct options *o, int argc, char **argv);
int options_finalize(struct options *o);
void options_print(const struct options *o, FILE *f);

/* buffers.c */
struct io_buffers {
	char *base;			/* aligned start */
	size_t len;
	enum buf_mem mem;
	void *map;			/* what to release */
	size_t map_len;
};
int buffers_alloc(struct io_buffers *b, enum buf_mem mem, size_t len,
		  size_t align);
void buffers_free(struct io_buffers *b);

/* engine.c */
int engine_init(struct worker *w, char *bufs, size_t slot_len);
void engine_destroy(struct worker *w);
int engine_submit_round(struct worker *w, bool *idle);
int engine_reap(struct worker *w, int min_nr);
int engine_drain(struct worker *w);
void engine_prune_active(struct worker *w);
void engine_ctx_check_done(struct file_ctx *c, const struct timespec *now);

/* stage.c */
void *worker_main(void *arg);

/* report.c */
struct timespec ts_now(void);
double ts_elapsed(const struct timespec *from, const struct timespec *to);
void latency_add(struct latency *l, const struct timespec *from,
		 const struct timespec *to);
void latency_print(const char *label, struct latency *l);
void report_ctx(const struct file_ctx *c, const struct timespec *now);
void report_thread_totals(const struct worker *w, enum stage s,
			  const struct timespec *stage_start);
void report_global(const struct run *r, enum stage s);
void report_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif /* AIO_STRESS_H */
