// SPDX-License-Identifier: GPL-2.0
/*
 * fts_transport_uring - fuse_test_server over FUSE-over-io_uring
 * (fs/fuse/dev_uring.c, CONFIG_FUSE_IO_URING, Linux 6.14+).
 *
 * Protocol, as the kernel implements it:
 *  - the module parameter enable_uring must be Y when the mount sends INIT
 *    and when the server answers it; the kernel then offers
 *    FUSE_OVER_IO_URING and the server asks for it in its answer (the core
 *    does that for us, ops->init_flags);
 *  - once INIT is answered, the ring has one queue per possible CPU; each
 *    queue needs at least one entry registered (IORING_OP_URING_CMD on the
 *    /dev/fuse descriptor, cmd_op FUSE_IO_URING_CMD_REGISTER, sqe->addr
 *    pointing to two iovecs, the headers (struct fuse_uring_req_header)
 *    and the payload buffer, struct fuse_uring_cmd_req in the 128-byte
 *    SQE's command area) before the kernel sends requests over the ring
 *    rather than /dev/fuse.  Until then new requests wait in the kernel;
 *  - a request is sent on the queue of the CPU its task runs on: the
 *    entry's command completes (res 0) with fuse_in_header in
 *    headers.in_out, the first in-arg (the per-opcode header) in
 *    headers.op_in, commit_id and the size of the other in-args in
 *    headers.ring_ent_in_out, and those args (WRITE data) in the payload
 *    buffer;
 *  - the answer is fuse_out_header in headers.in_out, the out args in the
 *    payload buffer and their size in ring_ent_in_out.payload_sz, handed
 *    over with FUSE_IO_URING_CMD_COMMIT_AND_FETCH and the entry's
 *    commit_id, which also makes the entry wait for the next request;
 *  - FORGET and INTERRUPT still come through /dev/fuse: one reader thread
 *    (fts_transport_dev.c) takes them, and INIT, and anything sent before
 *    the ring was ready.
 *
 * Here: a thread per queue, with its own io_uring (IORING_SETUP_SQE128)
 * holding cfg.uring_depth entries and a poll on the stop eventfd.  It
 * registers the entries, then waits for completions and hands each request
 * to fts_handle() in one piece: each entry's payload buffer is preceded by
 * a page of room where fuse_in_header and the per-opcode header are put
 * right before the payload, so the data is not copied.  Answers come from
 * the queue's thread or from the core's deferred thread, so submissions to
 * a queue's io_uring are serialized by a mutex; the kernel takes a commit
 * within io_uring_enter(), so as with writev(2) on /dev/fuse an answer has
 * reached the kernel when reply() returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <liburing.h>

#include "fts_transport.h"

#define ENABLE_URING	"/sys/module/fuse/parameters/enable_uring"

/* Read the module parameter: 'Y', 'N', or -errno. */
static int enable_uring_get(void)
{
	char val[8];
	ssize_t n;
	int fd, err;

	fd = open(ENABLE_URING, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, val, sizeof(val));
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	return n > 0 && (val[0] == 'Y' || val[0] == '1') ? 'Y' : 'N';
}

static int enable_uring_set(char val)
{
	ssize_t n;
	int fd, err;

	fd = open(ENABLE_URING, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, &val, 1);
	err = errno;
	close(fd);
	return n == 1 ? 0 : n < 0 ? -err : -EIO;
}

#ifdef FUSE_OVER_IO_URING

#define STOP_TAG	0	/* user_data of the stop eventfd's poll */
#define ENT_FRONT	4096	/* headers, and room in front of the payload */
#define DEFAULT_PAGES	32	/* the kernel's max_pages without FUSE_MAX_PAGES */
#define MIN_PAYLOAD	8192	/* FUSE_MIN_READ_BUFFER */

_Static_assert(offsetof(struct io_uring_sqe, cmd) +
	       sizeof(struct fuse_uring_cmd_req) <= 2 * sizeof(struct io_uring_sqe),
	       "struct fuse_uring_cmd_req must fit a 128-byte SQE");
_Static_assert(sizeof(struct fuse_uring_req_header) +
	       sizeof(struct fuse_in_header) + FUSE_URING_OP_IN_OUT_SZ <=
	       ENT_FRONT,
	       "the headers and a request's headers must fit before the payload");

struct ring_queue;

struct ring_ent {
	struct ring_queue *q;
	struct fuse_uring_req_header *hdr;	/* at the start of its slot */
	unsigned char *payload;			/* ENT_FRONT into it */
	struct iovec iov[2];			/* what REGISTER hands over */
	uint64_t commit_id;			/* of the request it carries */
	unsigned int idx;
	bool dead;				/* its command failed */
};

struct ring_queue {
	struct fts *s;
	unsigned int qid;
	struct io_uring ring;
	bool have_ring, have_thread;
	pthread_mutex_t lock;		/* get_sqe .. submit */
	pthread_t thread;
	struct ring_ent *ents;
	unsigned int nents, ndead;	/* ndead: queue thread only */
	unsigned char *area;		/* the entries' slots, mmap()ed */
	size_t area_len;
};

struct uring_tp {
	unsigned int nq;
	size_t payload_sz;		/* per entry */
	size_t slot_sz;			/* ENT_FRONT + payload_sz */
	struct ring_queue *qs;
	pthread_mutex_t lock;		/* registration progress: */
	pthread_cond_t cond;
	unsigned int nreported;		/* queues done registering */
	int err;			/* the first failure */
};

/* Number of possible CPUs, which is the kernel's number of queues. */
static int possible_cpus(void)
{
	const char *path = "/sys/devices/system/cpu/possible";
	char buf[256], *p, *end;
	unsigned int n = 0;
	ssize_t len;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fts_log("uring: %s: %s", path, strerror(errno));
		return -errno;
	}
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0) {
		fts_log("uring: %s: %s", path,
			len < 0 ? strerror(errno) : "empty");
		return -EIO;
	}
	buf[len] = '\0';
	/* "0-3", "0", "0-1,4-5" */
	for (p = buf; *p && *p != '\n';) {
		unsigned long a, b;

		a = strtoul(p, &end, 10);
		if (end == p)
			break;
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtoul(p, &end, 10);
			if (end == p || b < a)
				break;
		}
		n += b - a + 1;
		p = *end == ',' ? end + 1 : end;
	}
	if (!n || (*p && *p != '\n')) {
		fts_log("uring: %s: can not parse \"%s\"", path, buf);
		return -EINVAL;
	}
	return n;
}

static void prep_cmd(struct io_uring_sqe *sqe, struct ring_queue *q,
		     struct ring_ent *e, uint32_t cmd_op)
{
	struct fuse_uring_cmd_req req;

	memset(sqe, 0, 2 * sizeof(*sqe));	/* IORING_SETUP_SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = q->s->fd;
	sqe->cmd_op = cmd_op;
	sqe->addr = (uintptr_t)e->iov;
	sqe->len = 2;
	sqe->user_data = (uintptr_t)e;
	memset(&req, 0, sizeof(req));
	req.qid = q->qid;
	if (cmd_op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH)
		req.commit_id = e->commit_id;
	memcpy((char *)sqe + offsetof(struct io_uring_sqe, cmd), &req,
	       sizeof(req));
}

/* Submit what is queued; lock held.  Submitted count or -errno. */
static int submit_locked(struct ring_queue *q)
{
	int ret, tries = 0;

	do {
		ret = io_uring_submit(&q->ring);
	} while ((ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) &&
		 ++tries < 1000 && (ret == -EINTR || !usleep(1000)));
	return ret;
}

/* Hand entry e over to the kernel with cmd_op. */
static int ent_submit(struct ring_ent *e, uint32_t cmd_op)
{
	struct ring_queue *q = e->q;
	struct io_uring_sqe *sqe;
	int ret;

	pthread_mutex_lock(&q->lock);
	sqe = io_uring_get_sqe(&q->ring);
	if (!sqe) {
		pthread_mutex_unlock(&q->lock);
		fts_log("uring queue %u: no free SQE", q->qid);
		return -EBUSY;
	}
	prep_cmd(sqe, q, e, cmd_op);
	ret = submit_locked(q);
	pthread_mutex_unlock(&q->lock);
	if (ret < 0) {
		fts_log("uring queue %u entry %u: submitting %s: %s", q->qid,
			e->idx, cmd_op == FUSE_IO_URING_CMD_REGISTER ?
			"REGISTER" : "COMMIT_AND_FETCH", strerror(-ret));
		return ret;
	}
	return ret == 1 ? 0 : -EIO;
}

static ssize_t uring_reply(struct fts *s, struct fts_src src,
			   const struct iovec *iov, int iovcnt)
{
	struct uring_tp *tp = s->tp;
	struct ring_ent *e = src.ent;
	struct fuse_out_header oh;
	bool too_big = false;
	size_t len = 0;
	int i, ret;

	if (iovcnt < 1 || iov[0].iov_len != sizeof(oh))
		return -EINVAL;
	memcpy(&oh, iov[0].iov_base, sizeof(oh));
	for (i = 1; i < iovcnt; i++) {
		if (iov[i].iov_len > tp->payload_sz - len) {
			/* not to be: the entry would be lost without one */
			fts_log("uring queue %u: answer to %llu: %zu bytes do not fit the %zu-byte payload buffer, answering EIO",
				e->q->qid, (unsigned long long)oh.unique,
				len + iov[i].iov_len, tp->payload_sz);
			oh.error = -EIO;
			len = 0;
			too_big = true;
			break;
		}
		if (iov[i].iov_len)
			memcpy(e->payload + len, iov[i].iov_base,
			       iov[i].iov_len);
		len += iov[i].iov_len;
	}
	oh.len = sizeof(oh) + len;
	memcpy(e->hdr->in_out, &oh, sizeof(oh));
	e->hdr->ring_ent_in_out.payload_sz = len;
	ret = ent_submit(e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
	if (ret)
		return ret;
	return too_big ? -EMSGSIZE : (ssize_t)oh.len;
}

/* Entry e got a request: pass it on in one piece. */
static void ent_request(struct ring_queue *q, struct ring_ent *e)
{
	struct uring_tp *tp = q->s->tp;
	struct fts_src src = { .ent = e, .qid = (int)q->qid };
	struct fuse_uring_ent_in_out eio;
	struct fuse_in_header ih;
	unsigned char *req;
	size_t oplen;

	memcpy(&ih, e->hdr->in_out, sizeof(ih));
	memcpy(&eio, &e->hdr->ring_ent_in_out, sizeof(eio));
	e->commit_id = eio.commit_id;
	if (ih.len < sizeof(ih) || eio.payload_sz > tp->payload_sz ||
	    eio.payload_sz > ih.len - sizeof(ih) ||
	    ih.len - sizeof(ih) - eio.payload_sz > FUSE_URING_OP_IN_OUT_SZ) {
		struct fuse_out_header oh = {
			.len = sizeof(oh),
			.error = -EIO,
			.unique = ih.unique,
		};
		struct iovec iov = { &oh, sizeof(oh) };

		fts_log("uring queue %u: malformed request %llu (opcode %u): length %u, payload %u",
			q->qid, (unsigned long long)ih.unique, ih.opcode,
			ih.len, eio.payload_sz);
		uring_reply(q->s, src, &iov, 1);
		return;
	}
	oplen = ih.len - sizeof(ih) - eio.payload_sz;
	req = e->payload - oplen - sizeof(ih);
	memcpy(req, &ih, sizeof(ih));
	memcpy(req + sizeof(ih), e->hdr->op_in, oplen);
	fts_handle(q->s, src, req, ih.len);
}

/* The entries' memory, the io_uring, REGISTER for all entries and the
 * poll on the stop eventfd.  0 or -errno. */
static int queue_setup(struct ring_queue *q)
{
	struct fts *s = q->s;
	struct uring_tp *tp = s->tp;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned int i, head;
	int ret, err = 0;

	q->nents = s->cfg.uring_depth;
	q->ents = calloc(q->nents, sizeof(*q->ents));
	if (!q->ents)
		return -ENOMEM;
	/* untouched slots cost nothing */
	q->area_len = q->nents * tp->slot_sz;
	q->area = mmap(NULL, q->area_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (q->area == MAP_FAILED) {
		ret = -errno;
		q->area = NULL;
		fts_log("uring queue %u: mmap %zu bytes: %s", q->qid,
			q->area_len, strerror(-ret));
		return ret;
	}
	for (i = 0; i < q->nents; i++) {
		struct ring_ent *e = &q->ents[i];
		unsigned char *slot = q->area + i * tp->slot_sz;

		e->q = q;
		e->idx = i;
		e->hdr = (void *)slot;
		e->payload = slot + ENT_FRONT;
		e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
		e->iov[1] = (struct iovec){ e->payload, tp->payload_sz };
	}

	ret = io_uring_queue_init(q->nents + 1, &q->ring, IORING_SETUP_SQE128);
	if (ret) {
		fts_log("uring queue %u: io_uring_queue_init(%u, SQE128): %s",
			q->qid, q->nents + 1, strerror(-ret));
		return ret;
	}
	q->have_ring = true;

	pthread_mutex_lock(&q->lock);
	sqe = io_uring_get_sqe(&q->ring);
	io_uring_prep_poll_add(sqe, s->stop_efd, POLLIN);
	sqe->user_data = STOP_TAG;
	for (i = 0; i < q->nents; i++) {
		sqe = io_uring_get_sqe(&q->ring);
		prep_cmd(sqe, q, &q->ents[i], FUSE_IO_URING_CMD_REGISTER);
	}
	ret = submit_locked(q);
	pthread_mutex_unlock(&q->lock);
	if (ret != (int)q->nents + 1) {
		fts_log("uring queue %u: submitting %u REGISTER: %s", q->qid,
			q->nents, ret < 0 ? strerror(-ret) : "short");
		return ret < 0 ? ret : -EIO;
	}
	/* the kernel fails a REGISTER within io_uring_enter() */
	io_uring_for_each_cqe(&q->ring, head, cqe) {
		if (cqe->user_data != STOP_TAG && cqe->res < 0 && !err) {
			struct ring_ent *e = (void *)(uintptr_t)cqe->user_data;

			err = cqe->res;
			fts_log("uring queue %u: REGISTER of entry %u: %s%s",
				q->qid, e->idx, strerror(-err),
				err == -EINVAL ? " (see the kernel log)" : "");
		}
	}
	return err;
}

static bool conn_gone(int err)
{
	return err == -ENOTCONN || err == -ECONNABORTED ||
	       err == -ECANCELED || err == -ENODEV;
}

static void *queue_main(void *arg)
{
	struct ring_queue *q = arg;
	struct uring_tp *tp = q->s->tp;
	int ret;

	ret = queue_setup(q);
	pthread_mutex_lock(&tp->lock);
	if (ret && !tp->err)
		tp->err = ret;
	tp->nreported++;
	pthread_cond_broadcast(&tp->cond);
	pthread_mutex_unlock(&tp->lock);
	if (ret)
		return NULL;

	for (;;) {
		struct io_uring_cqe *cqe;
		struct ring_ent *e;
		uint64_t tag;
		int res;

		ret = io_uring_wait_cqe(&q->ring, &cqe);
		if (ret == -EINTR || ret == -EAGAIN)
			continue;
		if (ret) {
			fts_log("uring queue %u: waiting for a completion: %s",
				q->qid, strerror(-ret));
			break;
		}
		tag = cqe->user_data;
		res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (tag == STOP_TAG)
			break;
		e = (void *)(uintptr_t)tag;
		if (res < 0) {
			/* the connection is going away, or this entry */
			e->dead = true;
			if (conn_gone(res))
				break;
			/* ENOENT: the request was gone (the kernel logs it) */
			if (res != -ENOENT)
				fts_log("uring queue %u entry %u: %s", q->qid,
					e->idx, strerror(-res));
			if (++q->ndead == q->nents)
				break;
			continue;
		}
		ent_request(q, e);
	}
	return NULL;
}

static int uring_start(struct fts *s)
{
	struct uring_tp *tp = calloc(1, sizeof(*tp));

	if (!tp) {
		fts_log("uring: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&tp->lock, NULL);
	pthread_cond_init(&tp->cond, NULL);
	s->tp = tp;
	/* INIT, FORGET, INTERRUPT */
	return fts_dev_readers_start(s, 1);
}

/* After INIT was answered: the queues, registered before we return. */
static int uring_init_done(struct fts *s)
{
	struct uring_tp *tp = s->tp;
	size_t page = sysconf(_SC_PAGESIZE);
	size_t pages = s->cfg.max_pages > DEFAULT_PAGES ? s->cfg.max_pages :
			DEFAULT_PAGES;
	size_t payload = MIN_PAYLOAD;
	unsigned int i, started;
	int nq, ret = 0;

	/* at least the ring's max_payload_sz: max(FUSE_MIN_READ_BUFFER,
	 * max_write, max_pages pages), max_pages as the kernel may take it */
	if (s->cfg.max_write > payload)
		payload = s->cfg.max_write;
	if (pages * page > payload)
		payload = pages * page;
	tp->payload_sz = (payload + page - 1) / page * page;
	tp->slot_sz = ENT_FRONT + tp->payload_sz;

	nq = possible_cpus();
	if (nq < 0)
		return nq;
	tp->qs = calloc(nq, sizeof(*tp->qs));
	if (!tp->qs)
		return -ENOMEM;
	tp->nq = nq;
	for (i = 0; i < tp->nq; i++) {
		tp->qs[i].s = s;
		tp->qs[i].qid = i;
		pthread_mutex_init(&tp->qs[i].lock, NULL);
	}
	for (started = 0; started < tp->nq; started++) {
		struct ring_queue *q = &tp->qs[started];

		ret = pthread_create(&q->thread, NULL, queue_main, q);
		if (ret) {
			fts_log("uring: thread of queue %u: %s", started,
				strerror(ret));
			ret = -ret;
			break;
		}
		q->have_thread = true;
	}
	pthread_mutex_lock(&tp->lock);
	while (tp->nreported < started)
		pthread_cond_wait(&tp->cond, &tp->lock);
	if (!ret)
		ret = tp->err;
	pthread_mutex_unlock(&tp->lock);
	if (!ret)
		s->ring_queues = tp->nq;
	return ret;
}

static void uring_join(struct fts *s)
{
	struct uring_tp *tp = s->tp;
	uint64_t one = 1;
	unsigned int i;

	fts_dev_readers_join(s);
	if (!tp)
		return;
	/*
	 * The reader ended: we were asked to stop, or the connection is gone
	 * (and not every queue need have seen that): the queues are done.
	 */
	if (write(s->stop_efd, &one, sizeof(one)) != sizeof(one))
		fts_log("uring: stop eventfd: %s", strerror(errno));
	for (i = 0; i < tp->nq; i++)
		if (tp->qs[i].have_thread)
			pthread_join(tp->qs[i].thread, NULL);
}

/* After the deferred thread, which may answer through the rings, ended. */
static void uring_release(struct fts *s)
{
	struct uring_tp *tp = s->tp;
	unsigned int i;

	if (!tp)
		return;
	for (i = 0; i < tp->nq; i++) {
		struct ring_queue *q = &tp->qs[i];

		/* cancels the entries waiting for requests */
		if (q->have_ring)
			io_uring_queue_exit(&q->ring);
		if (q->area)
			munmap(q->area, q->area_len);
		free(q->ents);
		pthread_mutex_destroy(&q->lock);
	}
	free(tp->qs);
	pthread_mutex_destroy(&tp->lock);
	pthread_cond_destroy(&tp->cond);
	free(tp);
	s->tp = NULL;
}

/* Can the kernel do it: parameter there (or settable), io_uring usable. */
static int uring_probe(struct fts *s, char *why, size_t whylen)
{
	struct io_uring ring;
	int val, ret;

	val = enable_uring_get();
	if (val == -ENOENT) {
		snprintf(why, whylen,
			 "kernel without CONFIG_FUSE_IO_URING (no %s)",
			 ENABLE_URING);
		return -EOPNOTSUPP;
	}
	if (val < 0) {
		snprintf(why, whylen, "%s: %s", ENABLE_URING, strerror(-val));
		return val;
	}
	ret = io_uring_queue_init(1, &ring, IORING_SETUP_SQE128);
	if (ret) {
		snprintf(why, whylen, "no io_uring with 128-byte SQEs: %s",
			 strerror(-ret));
		return ret == -ENOSYS || ret == -EPERM || ret == -EINVAL ?
		       -EOPNOTSUPP : ret;
	}
	io_uring_queue_exit(&ring);
	if (val == 'Y')
		return 0;
	if (!s) {
		/* fts_start() will set it: can it? */
		if (access(ENABLE_URING, W_OK)) {
			ret = -errno;
			snprintf(why, whylen, "%s is N and can not be set: %s",
				 ENABLE_URING, strerror(errno));
			return ret == -EACCES || ret == -EPERM || ret == -EROFS ?
			       -EOPNOTSUPP : ret;
		}
		return 0;
	}
	ret = enable_uring_set('Y');
	if (ret) {
		snprintf(why, whylen, "setting %s to Y: %s", ENABLE_URING,
			 strerror(-ret));
		return ret == -EACCES || ret == -EPERM ? -EOPNOTSUPP : ret;
	}
	s->probe_undo = 'N';
	return 0;
}

#else /* !FUSE_OVER_IO_URING */

/* Built against uapi headers older than FUSE-over-io_uring (7.42). */
static int uring_probe(struct fts *s, char *why, size_t whylen)
{
	(void)s;
	if (enable_uring_get() == -ENOENT)
		snprintf(why, whylen,
			 "kernel without CONFIG_FUSE_IO_URING (no %s)",
			 ENABLE_URING);
	else
		snprintf(why, whylen,
			 "built against a linux/fuse.h without FUSE-over-io_uring (protocol 7.%u < 7.42)",
			 FUSE_KERNEL_MINOR_VERSION);
	return -EOPNOTSUPP;
}

static int uring_start(struct fts *s)
{
	(void)s;
	return -EOPNOTSUPP;
}

static ssize_t uring_reply(struct fts *s, struct fts_src src,
			   const struct iovec *iov, int iovcnt)
{
	(void)s;
	(void)src;
	(void)iov;
	(void)iovcnt;
	return -EOPNOTSUPP;
}

#define uring_init_done	NULL
#define uring_join	fts_dev_readers_join
#define uring_release	NULL
#define FUSE_OVER_IO_URING 0

#endif /* FUSE_OVER_IO_URING */

/* fts_stop(): enable_uring as it was before probe() */
static void uring_unprobe(struct fts *s)
{
	int ret;

	if (s->probe_undo < 0)
		return;
	ret = enable_uring_set((char)s->probe_undo);
	if (ret)
		fts_log("uring: setting %s back to %c: %s", ENABLE_URING,
			s->probe_undo, strerror(-ret));
	s->probe_undo = -1;
}

const struct fts_transport_ops fts_transport_uring = {
	.name = "uring",
	.init_flags = FUSE_OVER_IO_URING,
	.probe = uring_probe,
	.unprobe = uring_unprobe,
	.start = uring_start,
	.init_done = uring_init_done,
	.reply = uring_reply,
	.join = uring_join,
	.release = uring_release,
};
