/* --transport uring: FUSE-over-io_uring queues (see transport_uring.h). */
#define _GNU_SOURCE
#include "transport_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <liburing.h>
#include <linux/fuse.h>

#include "pt_fuse.h"
#include "stats.h"

#ifdef FUSE_URING_IN_OUT_HEADER_SZ

#define ENABLE_URING_PARAM "/sys/module/fuse/parameters/enable_uring"
#define POSSIBLE_CPUS "/sys/devices/system/cpu/possible"
/* Room in front of each payload for fuse_in_header + the per-op header,
 * so that a request is contiguous as on /dev/fuse; a page keeps the
 * payload page-aligned. */
#define PREFIX_SZ 4096
#define STOP_TAG ((uint64_t)0)	/* user_data of the NOP that stops a queue */
#define MAP_BUCKETS 1024	/* unique -> entry, power of two */

struct uring_queue;

/* One ring entry: headers, payload, and the request it holds. */
struct uring_ent {
	struct uring_queue *q;
	struct fuse_uring_req_header *hdr;
	char *payload;			/* PREFIX_SZ after the entry's area */
	struct iovec iov[2];		/* registered: headers, payload */
	uint64_t unique;		/* request being served, if mapped */
	struct uring_ent *hnext;	/* unique map chain */
};

struct uring_queue {
	struct uring_transport *t;
	unsigned int qid;
	struct io_uring ring;
	bool ring_ok;
	int efd;			/* eventfd: a CQE was posted */
	pthread_mutex_t sq_lock;	/* the SQ: any replying thread */
	pthread_t thread;
	bool thread_ok;
	struct uring_ent *ents;
	char *area;			/* mmap of depth * stride bytes */
	size_t area_len;
};

struct uring_transport {
	struct fuse_session *se;
	struct stats *stats;
	int dev_fd;
	unsigned int nqueues, depth;
	struct uring_queue *queues;
	size_t max_payload;

	pthread_mutex_t lock;		/* init/stop state below */
	pthread_cond_t cond;
	bool init_done, stopping;

	pthread_mutex_t map_lock;
	struct uring_ent *map[MAP_BUCKETS];
};

static void fatal(struct uring_transport *t, const char *what, int err)
{
	fprintf(stderr, "passthrough: io_uring transport: %s: %s\n", what,
		strerror(err));
	/* libfuse's handler ends the session; main() unmounts. */
	fuse_session_exit(t->se);
	kill(getpid(), SIGTERM);
}

int uring_check_kernel(void)
{
	char c = 0;
	int fd = open(ENABLE_URING_PARAM, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "passthrough: --transport uring: %s: %s (the kernel's fuse has no io_uring transport: CONFIG_FUSE_IO_URING, Linux 6.14+)\n",
			ENABLE_URING_PARAM, strerror(errno));
		return -1;
	}
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	if (c != 'Y') {
		fprintf(stderr, "passthrough: --transport uring: FUSE-over-io_uring is off (%s is not Y): echo Y > %s, or load fuse with enable_uring=1\n",
			ENABLE_URING_PARAM, ENABLE_URING_PARAM);
		return -1;
	}
	return 0;
}

/* num_possible_cpus(): the kernel has one queue per possible CPU. */
static int possible_cpus(unsigned int *n)
{
	char buf[256], *p = buf, *end;
	unsigned long a, b, count = 0;
	FILE *f = fopen(POSSIBLE_CPUS, "re");

	if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
		int err = f ? EIO : errno;

		if (f)
			fclose(f);
		fprintf(stderr, "passthrough: %s: %s\n", POSSIBLE_CPUS,
			strerror(err));
		return -err;
	}
	fclose(f);
	while (*p && *p != '\n') {
		a = strtoul(p, &end, 10);
		if (end == p)
			goto bad;
		b = a;
		p = end;
		if (*p == '-') {
			b = strtoul(p + 1, &end, 10);
			if (end == p + 1 || b < a)
				goto bad;
			p = end;
		}
		count += b - a + 1;
		if (*p == ',')
			p++;
	}
	if (count == 0 || count > 4096)
		goto bad;
	*n = count;
	return 0;
bad:
	fprintf(stderr, "passthrough: %s: cannot parse '%s'\n", POSSIBLE_CPUS,
		buf);
	return -EINVAL;
}

int uring_create(struct uring_transport **out, struct fuse_session *se,
		 unsigned int depth, struct stats *stats)
{
	struct uring_transport *t;
	unsigned int i;
	int ret;

	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->se = se;
	t->stats = stats;
	t->dev_fd = fuse_session_fd(se);
	t->depth = depth;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	pthread_mutex_init(&t->map_lock, NULL);
	ret = possible_cpus(&t->nqueues);
	if (ret)
		goto err;
	t->queues = calloc(t->nqueues, sizeof(*t->queues));
	if (t->queues == NULL) {
		ret = -ENOMEM;
		goto err;
	}
	for (i = 0; i < t->nqueues; i++) {
		t->queues[i].t = t;
		t->queues[i].qid = i;
		t->queues[i].efd = -1;
		pthread_mutex_init(&t->queues[i].sq_lock, NULL);
	}
	*out = t;
	return 0;
err:
	uring_destroy(t);
	return ret;
}

/* ---- unique -> entry ---------------------------------------------------- */

static struct uring_ent **map_slot(struct uring_transport *t, uint64_t unique)
{
	return &t->map[(unique ^ (unique >> 17)) & (MAP_BUCKETS - 1)];
}

static void map_add(struct uring_transport *t, struct uring_ent *ent)
{
	struct uring_ent **slot = map_slot(t, ent->unique);

	pthread_mutex_lock(&t->map_lock);
	ent->hnext = *slot;
	*slot = ent;
	pthread_mutex_unlock(&t->map_lock);
}

static struct uring_ent *map_take(struct uring_transport *t, uint64_t unique)
{
	struct uring_ent **p, *ent;

	pthread_mutex_lock(&t->map_lock);
	for (p = map_slot(t, unique); (ent = *p) != NULL; p = &ent->hnext) {
		if (ent->unique == unique) {
			*p = ent->hnext;
			break;
		}
	}
	pthread_mutex_unlock(&t->map_lock);
	return ent;
}

/* ---- commands ------------------------------------------------------------ */

/* A free SQE of q (submitting what is queued once if there is none);
 * q->sq_lock held. */
static struct io_uring_sqe *queue_sqe(struct uring_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (sqe == NULL) {	/* depth + 1 SQEs: cannot be full for long */
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	return sqe;
}

/* Queues one FUSE uring command for ent and submits it; any thread. */
static int submit_cmd(struct uring_ent *ent, uint32_t cmd_op,
		      uint64_t commit_id)
{
	struct uring_queue *q = ent->q;
	struct fuse_uring_cmd_req *req;
	struct io_uring_sqe *sqe;
	int ret;

	pthread_mutex_lock(&q->sq_lock);
	sqe = queue_sqe(q);
	if (sqe == NULL) {
		pthread_mutex_unlock(&q->sq_lock);
		return -EBUSY;
	}
	memset(sqe, 0, 2 * sizeof(*sqe));	/* SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = q->t->dev_fd;
	sqe->cmd_op = cmd_op;
	sqe->addr = (uint64_t)(uintptr_t)ent->iov;
	sqe->len = 2;
	io_uring_sqe_set_data(sqe, ent);
	req = (struct fuse_uring_cmd_req *)sqe->cmd;
	req->qid = q->qid;
	req->commit_id = commit_id;
	ret = io_uring_submit(&q->ring);
	pthread_mutex_unlock(&q->sq_lock);
	return ret < 0 ? ret : 0;
}

bool uring_reply(struct uring_transport *t, const struct iovec *iov,
		 int count, ssize_t *res)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct fuse_uring_ent_in_out *io;
	struct fuse_out_header *dst;
	struct uring_ent *ent;
	size_t len = 0;
	int i, ret;

	if (t == NULL || count < 1 || iov[0].iov_len != sizeof(*oh) ||
	    oh->unique == 0)
		return false;
	ent = map_take(t, oh->unique);
	if (ent == NULL)
		return false;	/* came from /dev/fuse */

	dst = (struct fuse_out_header *)ent->hdr->in_out;
	*dst = *oh;
	for (i = 1; i < count && !oh->error; i++) {
		if (len + iov[i].iov_len > t->max_payload) {
			/* cannot happen: replies are bounded by max_read */
			dst->error = -EIO;
			len = 0;
			break;
		}
		if (iov[i].iov_base != ent->payload + len)
			memcpy(ent->payload + len, iov[i].iov_base,
			       iov[i].iov_len);
		len += iov[i].iov_len;
	}
	dst->len = sizeof(*dst) + len;
	io = &ent->hdr->ring_ent_in_out;
	io->payload_sz = len;

	ret = submit_cmd(ent, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, oh->unique);
	if (ret < 0) {
		errno = -ret;
		*res = -1;
	} else {
		*res = sizeof(*oh) + len;
	}
	return true;
}

/* ---- queue threads ------------------------------------------------------- */

static int queue_alloc(struct uring_queue *q)
{
	struct uring_transport *t = q->t;
	size_t stride = (PREFIX_SZ + t->max_payload + 4095) & ~(size_t)4095;
	unsigned int i;

	q->ents = calloc(t->depth, sizeof(*q->ents));
	if (q->ents == NULL)
		return -ENOMEM;
	q->area_len = stride * t->depth;
	/* untouched pages cost nothing: most payloads never see 1 MiB */
	q->area = mmap(NULL, q->area_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q->area == MAP_FAILED) {
		q->area = NULL;
		return -errno;
	}
	for (i = 0; i < t->depth; i++) {
		struct uring_ent *ent = &q->ents[i];
		char *base = q->area + i * stride;

		ent->q = q;
		/* the header sits in the prefix page, before the slot the
		 * request headers are laid out in */
		ent->hdr = (struct fuse_uring_req_header *)base;
		ent->payload = base + PREFIX_SZ;
		ent->iov[0] = (struct iovec){ ent->hdr, sizeof(*ent->hdr) };
		ent->iov[1] = (struct iovec){ ent->payload, t->max_payload };
	}
	return 0;
}

/* A request arrived in ent: hand it to libfuse as /dev/fuse would. */
static void serve_ent(struct uring_ent *ent)
{
	struct uring_transport *t = ent->q->t;
	const struct fuse_in_header *ih =
		(const struct fuse_in_header *)ent->hdr->in_out;
	uint32_t payload_sz = ent->hdr->ring_ent_in_out.payload_sz;
	size_t op_sz;
	char *start;
	struct fuse_buf buf = { 0 };

	if (ih->len < sizeof(*ih) + payload_sz ||
	    (op_sz = ih->len - sizeof(*ih) - payload_sz) >
			FUSE_URING_OP_IN_OUT_SZ ||
	    payload_sz > t->max_payload) {
		fprintf(stderr, "passthrough: io_uring transport: queue %u: malformed request (opcode %u, len %u, payload %u)\n",
			ent->q->qid, ih->opcode, ih->len, payload_sz);
		return;	/* left unanswered: the kernel ends it at abort */
	}
	start = ent->payload - op_sz - sizeof(*ih);
	/* never overlaps the header: it is at the start of the prefix page */
	memcpy(start + sizeof(*ih), ent->hdr->op_in, op_sz);
	memcpy(start, ih, sizeof(*ih));
	ent->unique = ih->unique;
	map_add(t, ent);
	stats_ring_request(t->stats);
	buf.mem = start;
	buf.size = ih->len;
	fuse_session_process_buf(t->se, &buf);
}

static bool wait_init(struct uring_transport *t)
{
	bool go;

	pthread_mutex_lock(&t->lock);
	while (!t->init_done && !t->stopping)
		pthread_cond_wait(&t->cond, &t->lock);
	go = !t->stopping;
	pthread_mutex_unlock(&t->lock);
	return go;
}

static void *queue_main(void *arg)
{
	struct uring_queue *q = arg;
	struct uring_transport *t = q->t;
	struct io_uring_cqe *cqe;
	cpu_set_t cpus;
	unsigned int i;
	int ret;

	/* requests come to the queue of the CPU they were issued on */
	CPU_ZERO(&cpus);
	CPU_SET(q->qid, &cpus);
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);

	if (!wait_init(t))
		return NULL;
	ret = queue_alloc(q);
	if (ret) {
		fatal(t, "ring entry buffers", -ret);
		return NULL;
	}
	for (i = 0; i < t->depth; i++) {
		ret = submit_cmd(&q->ents[i], FUSE_IO_URING_CMD_REGISTER, 0);
		if (ret) {
			fatal(t, "FUSE_IO_URING_CMD_REGISTER", -ret);
			return NULL;
		}
	}
	for (;;) {
		struct uring_ent *ent;
		uint64_t n;
		int res;

		/*
		 * Sleep in read() on the ring's eventfd rather than in
		 * io_uring_enter(): valgrind takes that one for non-blocking
		 * and would stop every other thread while we wait.  The task
		 * work that hands us a request runs in the thread that
		 * submitted the entry's last command, and posts the CQE.
		 */
		if (io_uring_peek_cqe(&q->ring, &cqe) != 0) {
			if (read(q->efd, &n, sizeof(n)) < 0 && errno != EINTR) {
				fatal(t, "read of the ring's eventfd", errno);
				break;
			}
			continue;
		}
		ent = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (ent == (void *)(uintptr_t)STOP_TAG)
			break;
		if (res < 0) {
			/* -ENOTCONN: unmounted or aborted, the ring is gone */
			if (res == -ENOTCONN || res == -ECONNABORTED ||
			    res == -ECANCELED)
				break;
			fatal(t, "FUSE io_uring command", -res);
			break;
		}
		if (fuse_session_exited(t->se))
			break;	/* the kernel ends it when we unmount */
		serve_ent(ent);
	}
	return NULL;
}

int uring_start(struct uring_transport *t)
{
	unsigned int i;
	int ret;

	for (i = 0; i < t->nqueues; i++) {
		struct uring_queue *q = &t->queues[i];

		/* a REGISTER or COMMIT per entry, plus the stop NOP */
		ret = io_uring_queue_init(t->depth + 1, &q->ring,
					  IORING_SETUP_SQE128);
		if (ret < 0) {
			fprintf(stderr, "passthrough: io_uring transport: queue %u: io_uring_queue_init: %s\n",
				i, strerror(-ret));
			uring_stop(t);
			return ret;
		}
		q->ring_ok = true;
		q->efd = eventfd(0, EFD_CLOEXEC);
		if (q->efd < 0 ||
		    (ret = io_uring_register_eventfd(&q->ring, q->efd)) < 0) {
			ret = q->efd < 0 ? -errno : ret;
			fprintf(stderr, "passthrough: io_uring transport: queue %u: eventfd: %s\n",
				i, strerror(-ret));
			uring_stop(t);
			return ret;
		}
		ret = pthread_create(&q->thread, NULL, queue_main, q);
		if (ret) {
			fprintf(stderr, "passthrough: io_uring transport: queue %u thread: %s\n",
				i, strerror(ret));
			uring_stop(t);
			return -ret;
		}
		q->thread_ok = true;
	}
	return 0;
}

bool uring_init_offered(struct uring_transport *t, uint64_t kernel_flags)
{
	(void)t;
	if (kernel_flags & FUSE_OVER_IO_URING)
		return true;
	fprintf(stderr, "passthrough: --transport uring: the kernel did not offer FUSE_OVER_IO_URING at INIT (enable_uring was off when the file system was mounted?)\n");
	return false;
}

void uring_init_done(struct uring_transport *t, size_t max_payload)
{
	pthread_mutex_lock(&t->lock);
	t->max_payload = max_payload;
	t->init_done = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void uring_stop(struct uring_transport *t)
{
	unsigned int i;

	if (t == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	for (i = 0; i < t->nqueues; i++) {
		struct uring_queue *q = &t->queues[i];
		struct io_uring_sqe *sqe;

		if (!q->thread_ok)
			continue;
		pthread_mutex_lock(&q->sq_lock);
		sqe = queue_sqe(q);
		if (sqe) {
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, STOP_TAG);
			io_uring_submit(&q->ring);
		}
		pthread_mutex_unlock(&q->sq_lock);
		if (sqe)
			pthread_join(q->thread, NULL);
		else
			fprintf(stderr, "passthrough: io_uring transport: queue %u: cannot stop its thread\n",
				i);
		q->thread_ok = false;
	}
}

void uring_destroy(struct uring_transport *t)
{
	unsigned int i;

	if (t == NULL)
		return;
	uring_stop(t);
	for (i = 0; t->queues && i < t->nqueues; i++) {
		struct uring_queue *q = &t->queues[i];

		if (q->ring_ok)
			io_uring_queue_exit(&q->ring);
		if (q->efd >= 0)
			close(q->efd);
		if (q->area)
			munmap(q->area, q->area_len);
		free(q->ents);
		pthread_mutex_destroy(&q->sq_lock);
	}
	free(t->queues);
	pthread_mutex_destroy(&t->map_lock);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

#else /* !FUSE_URING_IN_OUT_HEADER_SZ */

/* Built with a linux/fuse.h older than protocol 7.42: no ring structures. */
int uring_check_kernel(void)
{
	fprintf(stderr, "passthrough: --transport uring: built without FUSE-over-io_uring (linux/fuse.h older than 7.42): rebuild with the 7.3 uapi headers (scripts/build-userspace server)\n");
	return -1;
}

int uring_create(struct uring_transport **out, struct fuse_session *se,
		 unsigned int depth, struct stats *stats)
{
	(void)out; (void)se; (void)depth; (void)stats;
	return -EOPNOTSUPP;
}

int uring_start(struct uring_transport *t)
{
	(void)t;
	return -EOPNOTSUPP;
}

bool uring_init_offered(struct uring_transport *t, uint64_t kernel_flags)
{
	(void)t; (void)kernel_flags;
	return false;
}

void uring_init_done(struct uring_transport *t, size_t max_payload)
{
	(void)t; (void)max_payload;
}

bool uring_reply(struct uring_transport *t, const struct iovec *iov,
		 int count, ssize_t *res)
{
	(void)t; (void)iov; (void)count; (void)res;
	return false;
}

void uring_stop(struct uring_transport *t)
{
	(void)t;
}

void uring_destroy(struct uring_transport *t)
{
	(void)t;
}

#endif /* FUSE_URING_IN_OUT_HEADER_SZ */
