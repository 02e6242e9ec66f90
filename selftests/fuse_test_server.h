/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuse_test_server - a tiny raw-/dev/fuse server for the fuse-adio selftests.
 *
 * What: mounts a FUSE file system on a fresh temporary directory and serves
 * it from a forked server process.  The file system holds one regular file,
 * "file" (inode 2), backed by an in-memory buffer, under the root directory
 * (inode 1).  No libfuse: requests are read from /dev/fuse and answered with
 * write(2), or exchanged over FUSE-over-io_uring (cfg.transport, see enum
 * fts_transport), so every protocol detail is visible and tunable.
 *
 * How:
 *	struct fts_config cfg;
 *	struct fts *srv;
 *
 *	fts_config_init(&cfg);			// sensible defaults
 *	cfg.open_flags = FOPEN_DIRECT_IO;	// tune INIT/OPEN/size/...
 *	cfg.policy.hold_count = 8;		// and how READ/WRITE are answered
 *	if (fts_start(&cfg, &srv))		// mount, fork server, INIT
 *		...;
 *	fd = open(fts_file(srv), O_RDWR | O_DIRECT);
 *	...
 *	fts_get_stats(srv, &st);		// counters, max outstanding
 *	fts_stop(srv);				// unmount, stop server, free
 *
 * Data requests (READ and WRITE) are logged (struct fts_io) and answered
 * according to a policy (struct fts_policy): immediately by default; held
 * back until hold_count are held or hold_timeout_ms passed and then answered
 * as a batch in FIFO or reverse order; or, per request through rules or a
 * hook, failed with an errno, answered short, delayed, or never answered.
 * Held, delayed and stalled requests are answered by a separate "deferred"
 * thread, so the threads that receive requests keep doing so meanwhile.
 *
 * Processes: the server runs in a child process (worker threads + deferred
 * thread), the only holder of the /dev/fuse descriptor, so that neither side
 * can hang forever when the other dies: a test process exiting with FUSE
 * files open or AIO in flight still gets its FLUSH/IO answered, and a dead
 * server aborts the connection.  The server is SIGKILLed when the thread that
 * called fts_start() exits (PR_SET_PDEATHSIG): call it from the main thread
 * (harness FIXTURE_SETUP does).  Counters, log, policy and file data live in
 * MAP_SHARED memory, so the fts_* calls below work from the test process and
 * from its children forked after fts_start() (fts_stop() only from the one
 * that started it).  A policy hook runs in the server process: what it
 * changes is only seen by the test if it lives in MAP_SHARED memory.
 *
 * By default fts_start() first moves the calling process into a private
 * mount namespace (when it is still single-threaded), so a test process that
 * dies or is killed takes its mount with it (only its empty mount point
 * directory, $TMPDIR/fts.XXXXXX, stays behind then).
 *
 * Functions returning int return 0 or a negative errno.  Errors are also
 * described on stderr as TAP comments ("# fts: ...").
 */
#ifndef FUSE_TEST_SERVER_H
#define FUSE_TEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/fuse.h>

/* The series' INIT flag (patches/0008); absent from the stock uapi header */
#ifndef FUSE_ASYNC_DIO_ALL
#define FUSE_ASYNC_DIO_ALL	(1ULL << 48)
#endif
/* Request timeouts (6.14); absent from 6.12's uapi header */
#ifndef FUSE_REQUEST_TIMEOUT
#define FUSE_REQUEST_TIMEOUT	(1ULL << 42)
#endif

#define FTS_ROOT_INO	1
#define FTS_FILE_INO	2
#define FTS_FILE_NAME	"file"
#define FTS_MAX_RULES	8
#define FTS_MAX_OPCODE	64	/* opcodes below this are counted in ops[] */
#define FTS_LOG_MAX	16384	/* READ/WRITE log entries kept */

/* What to do with one READ/WRITE. */
enum fts_act {
	FTS_ACT_REPLY = 0,	/* normal answer (held first if hold_count) */
	FTS_ACT_FAIL,		/* answer with -err */
	FTS_ACT_SHORT,		/* answer with at most len bytes */
	FTS_ACT_DELAY,		/* normal answer after delay_ms (never held) */
	FTS_ACT_NO_REPLY,	/* never answer (until fts_release_stalled()) */
};

struct fts_action {
	enum fts_act act;
	int err;		/* FTS_ACT_FAIL: positive errno, e.g. EIO */
	uint32_t len;		/* FTS_ACT_SHORT: bytes read / acknowledged */
	unsigned int delay_ms;	/* FTS_ACT_DELAY */
};

/*
 * A rule matches the nth READ (opcode FUSE_READ), the nth WRITE (FUSE_WRITE)
 * or the nth data request of either kind (opcode 0); nth counts from 1 since
 * start or fts_reset(); nth 0 matches every request of that kind.  An unused
 * rule slot is all zeroes (act FTS_ACT_REPLY).  The first matching rule with
 * an act other than FTS_ACT_REPLY wins.
 */
struct fts_rule {
	uint32_t opcode;
	unsigned int nth;
	struct fts_action action;
};

/* Request log entry, one per READ/WRITE received. */
struct fts_io {
	uint64_t unique;
	uint32_t opcode;	/* FUSE_READ or FUSE_WRITE */
	uint64_t fh;
	uint64_t offset;
	uint32_t size;		/* bytes asked to read / write */
	uint32_t io_flags;	/* read_flags / write_flags */
	uint32_t file_flags;	/* open flags of the file (flags field) */
	uint32_t pid;		/* from fuse_in_header */
	unsigned int seq;	/* 1-based among all READ/WRITE */
	unsigned int op_seq;	/* 1-based among requests with this opcode */
	struct fts_action action; /* what the policy decided */
	bool held;		/* was held by the hold policy */
	bool interrupted;	/* an INTERRUPT was received for it */
	bool answered;
	int result;		/* once answered: bytes (>= 0) or -errno */
	uint64_t recv_ns;	/* CLOCK_MONOTONIC at receipt */
	uint64_t reply_ns;	/* CLOCK_MONOTONIC at answer, 0 if none */
	int qid;		/* io_uring queue it came through,
				 * -1: /dev/fuse */
};

enum fts_order {
	FTS_ORDER_FIFO = 0,	/* answer a held batch in arrival order */
	FTS_ORDER_REVERSE,	/* ... in reverse arrival order */
};

/*
 * hook: called for every READ/WRITE after the rules, in the server process
 * with the server lock held; it may change *action.  Keep it short, do not
 * call fts_* from it.
 */
typedef void (*fts_hook_t)(void *arg, const struct fts_io *io,
			   struct fts_action *action);

/*
 * Holding applies to requests whose action is FTS_ACT_REPLY, _FAIL or _SHORT
 * (the action is carried out when the request is answered); a held batch is
 * answered by one thread, one request after the other, in the given order.
 */
struct fts_policy {
	/* hold: > 0 holds READ/WRITE until hold_count are held ... */
	unsigned int hold_count;
	/* ... or the oldest held one waited this long (0: no timeout) */
	unsigned int hold_timeout_ms;
	uint32_t hold_opcode;		/* FUSE_READ/FUSE_WRITE, 0: both */
	enum fts_order order;		/* answer order of a held batch */
	struct fts_rule rules[FTS_MAX_RULES];
	/* answer a held/delayed/stalled request with -EINTR on INTERRUPT */
	bool eintr_on_interrupt;
	fts_hook_t hook;
	void *hook_arg;
};

/*
 * How requests reach the server and answers the kernel.
 *
 * FTS_TRANSPORT_DEV: cfg.nthreads threads read(2) /dev/fuse, answers are
 * written with writev(2).
 *
 * FTS_TRANSPORT_URING: FUSE-over-io_uring (fs/fuse/dev_uring.c, Linux 6.14+
 * with CONFIG_FUSE_IO_URING).  fts_start() sets the fuse module parameter
 * enable_uring to Y if it is N (fts_stop() puts it back), asks for
 * FUSE_OVER_IO_URING at INIT and then, before it returns, registers one
 * queue per possible CPU (the kernel sends a request on the queue of the
 * CPU its task runs on), each with its own thread and io_uring and
 * cfg.uring_depth entries, after which every request but FORGET and
 * INTERRUPT comes over the rings; those two still come through one
 * /dev/fuse reader thread (cfg.nthreads is not used).  An entry carries one
 * request until it is answered: held, delayed and stalled requests keep
 * theirs, and once all entries of a queue are taken, further requests sent
 * on it wait in the kernel, unseen by the server (and by fts_wait_*()).
 * fts_start() fails with -EOPNOTSUPP when the kernel can not do it (see
 * fts_transport_check()).
 */
enum fts_transport {
	FTS_TRANSPORT_DEV = 0,
	FTS_TRANSPORT_URING,
};

struct fts_config {
	/* mount(2) */
	unsigned int max_read;		/* "max_read=" option, 0: omit */
	bool no_private_ns;		/* don't unshare(CLONE_NEWNS) first */
	/* INIT reply */
	uint64_t init_flags;		/* wanted FUSE_* flags, ANDed with
					 * what the kernel offers */
	uint32_t max_write;
	uint16_t max_pages;		/* used with FUSE_MAX_PAGES */
	uint32_t max_readahead;
	uint16_t max_background;
	uint16_t congestion_threshold;
	uint16_t request_timeout;	/* seconds, sent when init_flags has
					 * FUSE_REQUEST_TIMEOUT and the kernel
					 * offers it (6.14+) */
	/* OPEN reply */
	uint32_t open_flags;		/* FOPEN_*, see fts_set_open_flags() */
	/* attributes of "file" */
	bool fixed_size;		/* report size instead of data length */
	uint64_t size;
	unsigned int attr_timeout_ms;	/* entry/attr validity, 0: none */
	/* FUSE_POLL: answered with ENOSYS (false, the kernel then takes the
	 * file as always ready), or with poll_revents (true) */
	bool poll;
	uint32_t poll_revents;
	/* serving */
	enum fts_transport transport;	/* default FTS_TRANSPORT_DEV */
	unsigned int nthreads;		/* FTS_TRANSPORT_DEV: threads reading
					 * /dev/fuse */
	unsigned int uring_depth;	/* FTS_TRANSPORT_URING: entries per
					 * queue, 0: 64 */
	size_t max_data;		/* largest file (shared mapping) */
	struct fts_policy policy;	/* initial READ/WRITE policy */
};

/* Negotiated parameters and counters, see fts_get_stats(). */
struct fts_stats {
	uint32_t proto_minor;		/* kernel's protocol minor */
	uint64_t kernel_flags;		/* INIT flags offered by the kernel */
	uint64_t flags;			/* INIT flags we replied with */
	unsigned int ops[FTS_MAX_OPCODE]; /* requests received per opcode */
	unsigned int unknown_ops;	/* answered ENOSYS */
	unsigned int reads, writes;	/* == ops[FUSE_READ], ops[FUSE_WRITE] */
	unsigned int outstanding;	/* READ/WRITE received, not answered */
	unsigned int max_outstanding;	/* maximum of outstanding */
	unsigned int held;		/* currently held */
	unsigned int stalled;		/* currently never-to-be-answered */
	unsigned int interrupts;	/* INTERRUPT requests received */
	unsigned int failed;		/* READ/WRITE answered with an error */
	unsigned int log_dropped;	/* READ/WRITE not logged: log full */
	uint64_t bytes_read;		/* data returned by READ answers */
	uint64_t bytes_written;		/* data stored by WRITE answers */
	uint64_t last_open_fh;		/* fh of the last OPEN answered, */
	uint32_t last_open_flags;	/* and its FOPEN_* flags */
	uint64_t last_release_fh;	/* fh of the last RELEASE received, */
	uint64_t last_release_ns;	/* when (CLOCK_MONOTONIC), 0: none */
	unsigned int setattr_sizes;	/* SETATTR with FATTR_SIZE received */
	uint64_t last_setattr_size;	/* size of the last one, */
	uint64_t first_setattr_size_ns;	/* when the first one arrived, */
	uint64_t last_setattr_size_ns;	/* and the last (CLOCK_MONOTONIC) */
	unsigned int open_truncs;	/* OPEN with O_TRUNC that truncated
					 * (FUSE_ATOMIC_O_TRUNC negotiated) */
	uint64_t last_open_trunc_ns;	/* when the last one arrived */
	unsigned int ring_queues;	/* io_uring queues registered */
	unsigned int ring_requests;	/* requests received over them */
};

struct fts;

/* Fill *cfg with defaults: FUSE_ASYNC_READ|FUSE_ASYNC_DIO|FUSE_ASYNC_DIO_ALL|
 * FUSE_BIG_WRITES|FUSE_MAX_PAGES|FUSE_INIT_EXT, max_write 1 MiB, max_pages 256,
 * max_background 12, congestion_threshold 9, the /dev/fuse transport with
 * one worker, max_data 256 MiB, no max_read option, open_flags 0, real size,
 * answer at once.  FTS_TRANSPORT=uring in the environment makes
 * FTS_TRANSPORT_URING the default instead, to run any test over the ring. */
void fts_config_init(struct fts_config *cfg);

/* Can this kernel (and this build: the uapi headers) serve with transport
 * t?  0, or -EOPNOTSUPP (-errno) with the reason in why, e.g. to SKIP. */
int fts_transport_check(enum fts_transport t, char *why, size_t whylen);
const char *fts_transport_name(enum fts_transport t);	/* "dev", "uring" */

/* Mount, fork the server, wait (up to 5 s) for INIT to be answered (and
 * the io_uring queues to be registered).  -EOPNOTSUPP: the transport is
 * not available, see fts_transport_check(). */
int fts_start(const struct fts_config *cfg, struct fts **srvp);

/* Unmount (lazily), stop the server process (SIGKILL after 2 s), remove the
 * mount point, free all.  With the server gone the kernel aborts the
 * connection: requests still held or stalled fail (ECONNABORTED/ENOTCONN). */
void fts_stop(struct fts *srv);

/* Abort the connection now via /sys/fs/fuse/connections/N/abort (mounting
 * fusectl there if needed and we are in our private mount namespace). */
int fts_abort(struct fts *srv);
/* The connection's "waiting" count in fusectl (requests allocated and not
 * ended: queued, with the server, or waiting for a slot), or -errno. */
int fts_waiting(struct fts *srv);

const char *fts_mnt(const struct fts *srv);	/* mount point */
const char *fts_file(const struct fts *srv);	/* path of "file" */
pid_t fts_server_pid(const struct fts *srv);	/* the server process */

/* Replace the policy; held requests are re-examined at once. */
void fts_set_policy(struct fts *srv, const struct fts_policy *policy);
/* FOPEN_* flags for the OPEN requests from now on (the initial ones are
 * cfg.open_flags), e.g. to mix FOPEN_DIRECT_IO and cached opens of "file". */
void fts_set_open_flags(struct fts *srv, uint32_t open_flags);
/* Answer everything currently held now, in the policy's order. */
void fts_release_held(struct fts *srv);
/* Answer the stalled (FTS_ACT_NO_REPLY) requests: err 0 normally, else
 * with -err. */
void fts_release_stalled(struct fts *srv, int err);

/* The file contents (not its reported size). */
int fts_set_data(struct fts *srv, const void *buf, size_t len);
size_t fts_get_data(struct fts *srv, void *buf, size_t max); /* -> length */
size_t fts_data_len(struct fts *srv);
/* Report st_size = size (fixed) or the data length (!fixed). */
void fts_set_size(struct fts *srv, bool fixed, uint64_t size);

void fts_get_stats(struct fts *srv, struct fts_stats *st);
/* Copy of the request log into a malloc()ed array (*ios, free() it);
 * returns the number of entries, or 0 with *ios NULL. */
size_t fts_get_ios(struct fts *srv, struct fts_io **ios);
/* Do the logged requests with opcode tile [off, off + len) exactly, with
 * no gap or overlap?  Returns 0, or -1 and describes the problem in why. */
int fts_check_coverage(const struct fts_io *ios, size_t n, uint32_t opcode,
		       uint64_t off, uint64_t len, char *why, size_t whylen);
/* Test data: byte at file offset o depends on o and seed (no short period).
 * fts_first_diff() returns the index of the first differing byte, or -1. */
void fts_fill_pattern(void *buf, size_t len, uint64_t off, unsigned int seed);
long long fts_first_diff(const void *a, const void *b, size_t len);
/* Clear the log, the counters (not outstanding/held) and rule numbering. */
void fts_reset(struct fts *srv);

/* Wait until at least n READ/WRITE are outstanding; -ETIMEDOUT. */
int fts_wait_outstanding(struct fts *srv, unsigned int n, int timeout_ms);
/* Wait until at least n requests with opcode were received; -ETIMEDOUT. */
int fts_wait_ops(struct fts *srv, uint32_t opcode, unsigned int n,
		 int timeout_ms);

#endif /* FUSE_TEST_SERVER_H */
