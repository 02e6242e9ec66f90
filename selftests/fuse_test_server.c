// SPDX-License-Identifier: GPL-2.0
/*
 * fuse_test_server - a tiny raw-/dev/fuse server, see fuse_test_server.h.
 *
 * Structure: fts_start() mounts, then forks the server process, which alone
 * keeps the /dev/fuse descriptor.  In it, the threads of a transport
 * (fts_transport.h: /dev/fuse readers, or io_uring queues) receive requests
 * and hand each to fts_handle(), which answers it on the spot, except
 * READ/WRITE requests the policy holds, delays or stalls: those are copied
 * onto srv->pend and answered later by the deferred thread (held batches,
 * delays) or never (stalled, until fts_release_stalled()), through the
 * transport they came from.
 *
 * Why a process and not just threads of the test: a process exiting with a
 * FUSE file open sends FLUSH (and waits for in-flight AIO) before its own
 * /dev/fuse descriptor is released, so if it is its own server it can hang
 * forever in exit.  With a separate server, whoever dies first, the other
 * side finishes (the server is killed with its parent via PR_SET_PDEATHSIG,
 * and its death aborts the connection).
 *
 * Shared between the test and the server process (MAP_SHARED): struct
 * fts_shm (stats, request log, policy, flags), protected by a robust,
 * process-shared mutex, and the file data.  Answers are sent outside of the
 * lock.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "fuse_test_server.h"
#include "fts_transport.h"

#define FTS_DEFAULT_MAX_DATA	(256ULL << 20)
#define FTS_INIT_TIMEOUT_MS	5000
#define FTS_STOP_TIMEOUT_MS	2000
#define FUSECTL_DIR		"/sys/fs/fuse/connections"
#define FUSECTL_SUPER_MAGIC	0x65735543
#define FTS_URING_DEPTH		64	/* default cfg.uring_depth */

enum pend_kind { PEND_HELD, PEND_DELAYED, PEND_STALLED };

/* A READ/WRITE whose answer was deferred, with a copy of the request. */
struct fts_pend {
	struct fts_pend *next;
	struct fts_src src;	/* where the answer goes */
	enum pend_kind kind;
	struct fts_action action;
	uint64_t due_ns;	/* held: deadline (0: none); delayed: due */
	size_t idx;		/* log index, valid if epoch is current */
	unsigned int epoch;
	size_t len;
	unsigned char req[];
};

/* State shared by the test and the server process. */
struct fts_shm {
	pthread_mutex_t lock;	/* robust, process-shared: all below */
	pthread_cond_t cond;	/* any state change, for fts_wait_*() */
	pthread_cond_t dcond;	/* wakes the deferred thread */
	bool inited, stopping, release_held;
	int start_err;		/* set with inited: INIT or transport failed */
	int release_stalled;	/* -1, or errno to answer stalled with */
	struct fts_policy policy;
	bool fixed_size;
	uint64_t size;
	uint32_t file_mode;
	uint32_t open_flags;	/* FOPEN_* of the next OPEN answers */
	uint64_t next_fh;
	size_t len;		/* file data length */
	unsigned int epoch;	/* bumped by fts_reset() */
	size_t nlog;
	struct fts_stats st;
	struct fts_io log[FTS_LOG_MAX];
};

void fts_log(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "# fts: %s\n", msg);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static struct timespec ns_to_ts(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = ns / 1000000000ULL,
		.tv_nsec = ns % 1000000000ULL,
	};
	return ts;
}

/* The lock survives the death of its holder (robust mutex). */
static void lock(struct fts *s)
{
	if (pthread_mutex_lock(&s->shm->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&s->shm->lock);
}

static void unlock(struct fts *s)
{
	pthread_mutex_unlock(&s->shm->lock);
}

/* Wait on c until deadline (CLOCK_MONOTONIC ns, 0: none); lock held. */
static int wait_on(struct fts *s, pthread_cond_t *c, uint64_t deadline)
{
	struct timespec ts = ns_to_ts(deadline);
	int ret;

	ret = deadline ? pthread_cond_timedwait(c, &s->shm->lock, &ts)
		       : pthread_cond_wait(c, &s->shm->lock);
	if (ret == EOWNERDEAD) {
		pthread_mutex_consistent(&s->shm->lock);
		ret = 0;
	}
	return ret;
}

void fts_config_init(struct fts_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->init_flags = FUSE_ASYNC_READ | FUSE_ASYNC_DIO | FUSE_ASYNC_DIO_ALL |
			  FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT;
	cfg->max_write = 1 << 20;
	cfg->max_pages = 256;
	cfg->max_readahead = UINT32_MAX;
	cfg->max_background = 12;
	cfg->congestion_threshold = 9;
	cfg->nthreads = 1;
	cfg->max_data = FTS_DEFAULT_MAX_DATA;
	/* to run any test over the ring (a variant's choice overrides it) */
	if (getenv("FTS_TRANSPORT") && !strcmp(getenv("FTS_TRANSPORT"), "uring"))
		cfg->transport = FTS_TRANSPORT_URING;
}

/* ---- answering ---------------------------------------------------------- */

/* Answer the request that came through src. */
static void send_reply(struct fts *s, struct fts_src src, uint64_t unique,
		       int err, const void *arg, size_t argsz,
		       const void *data, size_t datasz)
{
	struct fuse_out_header oh = { .error = -err, .unique = unique };
	struct iovec iov[3] = {
		{ &oh, sizeof(oh) },
		{ (void *)arg, err ? 0 : argsz },
		{ (void *)data, err ? 0 : datasz },
	};
	ssize_t ret;

	oh.len = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
	ret = src.ent ? s->ops->reply(s, src, iov, 3) : fts_dev_reply(s, iov, 3);
	if (ret < 0) {
		/* ENOENT: request gone (interrupted); ENODEV: aborted;
		 * ENOTCONN: the ring is gone */
		if (ret != -ENOENT && ret != -ENODEV && ret != -ECONNABORTED &&
		    ret != -ENOTCONN)
			fts_log("answer to request %llu (%s): %s",
				(unsigned long long)unique,
				src.ent ? s->ops->name : "dev",
				strerror((int)-ret));
	} else if ((size_t)ret != oh.len) {
		fts_log("answer to request %llu: short write %zd of %u",
			(unsigned long long)unique, ret, oh.len);
	}
}

/* Set the data length, zeroing what growing exposes; lock held. */
static int data_resize(struct fts *s, uint64_t len)
{
	if (len > s->cfg.max_data)
		return -EFBIG;
	if (len > s->shm->len)
		memset(s->data + s->shm->len, 0, len - s->shm->len);
	s->shm->len = len;
	return 0;
}

/* Answer one READ/WRITE according to action a. */
static void answer_data(struct fts *s, struct fts_src src,
			const unsigned char *req, size_t len,
			const struct fts_action *a, size_t idx,
			unsigned int epoch)
{
	const struct fuse_in_header *ih = (const void *)req;
	struct fts_shm *m = s->shm;
	struct fuse_write_out wo = { 0 };
	const void *arg = NULL;
	size_t argsz = 0, n = 0, datasz = 0;
	void *buf = NULL;
	int err = 0;

	lock(s);
	if (a->act == FTS_ACT_FAIL) {
		err = a->err > 0 ? a->err : EIO;
	} else if (ih->opcode == FUSE_READ) {
		const struct fuse_read_in *in = (const void *)(ih + 1);

		n = in->size;
		if (a->act == FTS_ACT_SHORT && a->len < n)
			n = a->len;
		if (in->offset >= m->len)
			n = 0;
		else if (n > m->len - in->offset)
			n = m->len - in->offset;
		buf = malloc(n ? n : 1);
		if (!buf) {
			err = ENOMEM;
		} else {
			if (n)
				memcpy(buf, s->data + in->offset, n);
			m->st.bytes_read += n;
			datasz = n;
		}
	} else {
		const struct fuse_write_in *in = (const void *)(ih + 1);
		size_t have = len - sizeof(*ih) - sizeof(*in);

		n = in->size;
		if (n > have) {
			fts_log("WRITE %llu: size %zu but only %zu data bytes",
				(unsigned long long)ih->unique, n, have);
			err = EIO;
		} else {
			if (a->act == FTS_ACT_SHORT && a->len < n)
				n = a->len;
			if (in->offset > s->cfg.max_data ||
			    n > s->cfg.max_data - in->offset)
				err = EFBIG;
			else if (in->offset > m->len)
				data_resize(s, in->offset);
		}
		if (!err) {
			memcpy(s->data + in->offset, in + 1, n);
			if (in->offset + n > m->len)
				m->len = in->offset + n;
			m->st.bytes_written += n;
			wo.size = n;
			arg = &wo;
			argsz = sizeof(wo);
		}
	}
	if (err)
		m->st.failed++;
	if (epoch == m->epoch && idx < m->nlog) {
		struct fts_io *io = &m->log[idx];

		io->answered = true;
		io->result = err ? -err : (int)n;
		io->reply_ns = now_ns();
	}
	/* count it answered before the kernel can react to the answer */
	m->st.outstanding--;
	pthread_cond_broadcast(&m->cond);
	unlock(s);

	send_reply(s, src, ih->unique, err, arg, argsz, buf, datasz);
	free(buf);
}

/* ---- the deferred thread ------------------------------------------------ */

/* Unlink the held entries, in the order they must be answered; lock held. */
static struct fts_pend *take_held(struct fts *s)
{
	struct fts_pend **pp = &s->pend, *batch = NULL, **tail = &batch, *p;

	while ((p = *pp)) {
		if (p->kind != PEND_HELD) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->next = NULL;
		if (s->shm->policy.order == FTS_ORDER_REVERSE) {
			p->next = batch;	/* push: last in, first out */
			batch = p;
		} else {
			*tail = p;
			tail = &p->next;
		}
	}
	s->shm->st.held = 0;
	return batch;
}

/* Turn a held/stalled entry into one to answer now with action a. */
static void pend_now(struct fts *s, struct fts_pend *p, struct fts_action a)
{
	if (p->kind == PEND_HELD)
		s->shm->st.held--;
	else if (p->kind == PEND_STALLED)
		s->shm->st.stalled--;
	p->kind = PEND_DELAYED;
	p->due_ns = 0;
	p->action = a;
}

static void *deferred_main(void *arg)
{
	struct fts *s = arg;
	struct fts_shm *m = s->shm;

	lock(s);
	while (!m->stopping) {
		uint64_t now = now_ns(), wake = 0;
		struct fts_pend *batch = NULL, **tail, **pp, *p;

		if (m->release_stalled >= 0) {
			struct fts_action a = {
				.act = m->release_stalled ? FTS_ACT_FAIL
							  : FTS_ACT_REPLY,
				.err = m->release_stalled,
			};

			for (p = s->pend; p; p = p->next)
				if (p->kind == PEND_STALLED)
					pend_now(s, p, a);
			m->release_stalled = -1;
		}
		if (m->st.held) {
			bool go = m->release_held || !m->policy.hold_count ||
				  m->st.held >= m->policy.hold_count;
			uint64_t deadline = 0;

			for (p = s->pend; p; p = p->next) {
				if (p->kind == PEND_HELD) {
					deadline = p->due_ns; /* oldest */
					break;
				}
			}
			if (deadline && deadline <= now)
				go = true;
			if (go)
				batch = take_held(s);
			else
				wake = deadline;
		}
		m->release_held = false;

		tail = &batch;
		while (*tail)
			tail = &(*tail)->next;
		pp = &s->pend;
		while ((p = *pp)) {
			if (p->kind == PEND_DELAYED && p->due_ns <= now) {
				*pp = p->next;
				p->next = NULL;
				*tail = p;
				tail = &p->next;
				continue;
			}
			if (p->kind == PEND_DELAYED && (!wake || p->due_ns < wake))
				wake = p->due_ns;
			pp = &p->next;
		}

		if (batch) {
			pthread_cond_broadcast(&m->cond);
			unlock(s);
			while ((p = batch)) {
				batch = p->next;
				answer_data(s, p->src, p->req, p->len,
					    &p->action, p->idx, p->epoch);
				free(p);
			}
			lock(s);
			continue;
		}
		wait_on(s, &m->dcond, wake);
	}
	unlock(s);
	return NULL;
}

/* ---- request handlers --------------------------------------------------- */

/* Decide what to do with a logged READ/WRITE; lock held. */
static struct fts_action decide(struct fts *s, const struct fts_io *io)
{
	const struct fts_policy *pol = &s->shm->policy;
	struct fts_action a = { .act = FTS_ACT_REPLY };
	int i;

	for (i = 0; i < FTS_MAX_RULES; i++) {
		const struct fts_rule *r = &pol->rules[i];
		unsigned int seq = r->opcode ? io->op_seq : io->seq;

		if (r->action.act == FTS_ACT_REPLY)
			continue;
		if (r->opcode && r->opcode != io->opcode)
			continue;
		if (r->nth && r->nth != seq)
			continue;
		a = r->action;
		break;
	}
	if (pol->hook)
		pol->hook(pol->hook_arg, io, &a);
	return a;
}

static void handle_data(struct fts *s, struct fts_src src, unsigned char *req,
			size_t len)
{
	const struct fuse_in_header *ih = (const void *)req;
	const struct fuse_read_in *rin = (const void *)(ih + 1);
	const struct fuse_write_in *win = (const void *)(ih + 1);
	bool is_read = ih->opcode == FUSE_READ;
	size_t need = sizeof(*ih) + (is_read ? sizeof(*rin) : sizeof(*win));
	struct fts_shm *m = s->shm;
	struct fts_io tmp, *io = &tmp;
	const struct fts_policy *pol = &m->policy;
	struct fts_pend *p = NULL;
	struct fts_action a;
	unsigned int epoch;
	bool hold;
	size_t idx;

	if (len < need) {
		fts_log("%s %llu: request too short (%zu bytes)",
			is_read ? "READ" : "WRITE",
			(unsigned long long)ih->unique, len);
		send_reply(s, src, ih->unique, EIO, NULL, 0, NULL, 0);
		return;
	}

	lock(s);
	epoch = m->epoch;
	idx = m->nlog;
	if (idx < FTS_LOG_MAX) {
		io = &m->log[idx];
		m->nlog++;
	} else {
		m->st.log_dropped++;
	}
	memset(io, 0, sizeof(*io));
	io->unique = ih->unique;
	io->opcode = ih->opcode;
	io->pid = ih->pid;
	io->qid = src.qid;
	io->recv_ns = now_ns();
	if (is_read) {
		io->fh = rin->fh;
		io->offset = rin->offset;
		io->size = rin->size;
		io->io_flags = rin->read_flags;
		io->file_flags = rin->flags;
		io->op_seq = ++m->st.reads;
	} else {
		io->fh = win->fh;
		io->offset = win->offset;
		io->size = win->size;
		io->io_flags = win->write_flags;
		io->file_flags = win->flags;
		io->op_seq = ++m->st.writes;
	}
	io->seq = m->st.reads + m->st.writes;
	m->st.ops[ih->opcode]++;
	if (src.ent)
		m->st.ring_requests++;
	if (++m->st.outstanding > m->st.max_outstanding)
		m->st.max_outstanding = m->st.outstanding;

	a = decide(s, io);
	io->action = a;
	hold = pol->hold_count &&
	       (!pol->hold_opcode || pol->hold_opcode == ih->opcode);
	if (a.act == FTS_ACT_DELAY || a.act == FTS_ACT_NO_REPLY || hold) {
		p = malloc(sizeof(*p) + len);
		if (!p)
			fts_log("deferring request %llu: %s, answering now",
				(unsigned long long)ih->unique,
				strerror(ENOMEM));
	}
	if (p) {
		struct fts_pend **pp = &s->pend;

		p->next = NULL;
		p->src = src;
		p->action = a;
		p->idx = idx;
		p->epoch = epoch;
		p->len = len;
		memcpy(p->req, req, len);
		if (a.act == FTS_ACT_NO_REPLY) {
			p->kind = PEND_STALLED;
			p->due_ns = 0;
			m->st.stalled++;
		} else if (a.act == FTS_ACT_DELAY) {
			p->kind = PEND_DELAYED;
			p->due_ns = io->recv_ns + a.delay_ms * 1000000ULL;
		} else {
			p->kind = PEND_HELD;
			p->due_ns = pol->hold_timeout_ms ?
				io->recv_ns + pol->hold_timeout_ms * 1000000ULL
				: 0;
			io->held = true;
			m->st.held++;
		}
		while (*pp)
			pp = &(*pp)->next;
		*pp = p;
		pthread_cond_signal(&m->dcond);
	}
	pthread_cond_broadcast(&m->cond);
	unlock(s);

	if (!p)
		answer_data(s, src, req, len, &a, idx, epoch);
}

static void handle_interrupt(struct fts *s, const struct fuse_in_header *ih,
			     size_t len)
{
	const struct fuse_interrupt_in *in = (const void *)(ih + 1);
	struct fts_shm *m = s->shm;
	struct fts_pend *p;
	size_t i;

	if (len < sizeof(*ih) + sizeof(*in))
		return;
	lock(s);
	m->st.interrupts++;
	for (i = m->nlog; i-- > 0;) {
		if (m->log[i].unique == in->unique) {
			m->log[i].interrupted = true;
			break;
		}
	}
	for (p = s->pend; p && m->policy.eintr_on_interrupt; p = p->next) {
		const struct fuse_in_header *pih = (const void *)p->req;

		if (pih->unique != in->unique)
			continue;
		pend_now(s, p, (struct fts_action){ .act = FTS_ACT_FAIL,
						    .err = EINTR });
		pthread_cond_signal(&m->dcond);
		break;
	}
	pthread_cond_broadcast(&m->cond);
	unlock(s);
}

static void handle_init(struct fts *s, struct fts_src src,
			const struct fuse_in_header *ih, size_t len)
{
	const struct fuse_init_in *in = (const void *)(ih + 1);
	uint64_t tflags = s->ops->init_flags;
	struct fuse_init_out out = { 0 };
	uint64_t kflags, flags;
	int err = 0;

	if (len < sizeof(*ih) + offsetof(struct fuse_init_in, flags2)) {
		fts_log("INIT: request too short (%zu bytes)", len);
		send_reply(s, src, ih->unique, EIO, NULL, 0, NULL, 0);
		return;
	}
	kflags = in->flags;
	if ((in->flags & FUSE_INIT_EXT) &&
	    len >= sizeof(*ih) + offsetof(struct fuse_init_in, unused))
		kflags |= (uint64_t)in->flags2 << 32;
	/* what the transport needs: all of it, or none */
	if ((kflags & tflags) != tflags) {
		fts_log("INIT: the kernel offers flags %#llx, without %#llx that the %s transport needs",
			(unsigned long long)kflags,
			(unsigned long long)(tflags & ~kflags), s->ops->name);
		tflags = 0;
		err = -EOPNOTSUPP;
	}
	flags = kflags & (s->cfg.init_flags | tflags);

	out.major = FUSE_KERNEL_VERSION;
	out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ?
		    in->minor : FUSE_KERNEL_MINOR_VERSION;
	out.max_readahead = in->max_readahead < s->cfg.max_readahead ?
			    in->max_readahead : s->cfg.max_readahead;
	out.flags = (uint32_t)flags;
	out.flags2 = (uint32_t)(flags >> 32);
	out.max_background = s->cfg.max_background;
	out.congestion_threshold = s->cfg.congestion_threshold;
	out.max_write = s->cfg.max_write;
	out.time_gran = 1;
	out.max_pages = s->cfg.max_pages;
	if (flags & FUSE_REQUEST_TIMEOUT) {
		/*
		 * init_out.request_timeout follows max_stack_depth; 6.12's
		 * header calls those bytes unused, so place it by offset.
		 */
		uint16_t t = s->cfg.request_timeout;

		memcpy((char *)&out + offsetof(struct fuse_init_out,
					       max_stack_depth) +
		       sizeof(out.max_stack_depth), &t, sizeof(t));
	}

	if (in->major != FUSE_KERNEL_VERSION)
		fts_log("INIT: kernel protocol %u.%u, we speak %u.%u",
			in->major, in->minor, out.major, out.minor);
	send_reply(s, src, ih->unique, 0, &out, sizeof(out), NULL, 0);

	/* the kernel has taken the answer: the connection is initialized */
	s->init_flags = flags;
	if (!err && s->ops->init_done)
		err = s->ops->init_done(s);

	lock(s);
	s->shm->st.proto_minor = in->minor;
	s->shm->st.kernel_flags = kflags;
	s->shm->st.flags = flags;
	s->shm->st.ring_queues = s->ring_queues;
	s->shm->start_err = err;
	s->shm->inited = true;
	pthread_cond_broadcast(&s->shm->cond);
	unlock(s);
}

/* Attributes of inode ino; lock held. */
static void fill_attr(struct fts *s, uint64_t ino, struct fuse_attr *a)
{
	struct fts_shm *m = s->shm;

	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->atime = a->mtime = a->ctime = s->t0.tv_sec;
	a->atimensec = a->mtimensec = a->ctimensec = s->t0.tv_nsec;
	a->blksize = 4096;
	if (ino == FTS_ROOT_INO) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
	} else {
		a->mode = S_IFREG | m->file_mode;
		a->nlink = 1;
		a->size = m->fixed_size ? m->size : m->len;
		a->blocks = (m->len + 511) / 512;
	}
}

/* Everything but READ, WRITE, INIT, INTERRUPT and FORGET. */
static void handle_meta(struct fts *s, struct fts_src src, unsigned char *req,
			size_t len)
{
	const struct fuse_in_header *ih = (const void *)req;
	const void *in = ih + 1;
	size_t inlen = len - sizeof(*ih);
	uint64_t valid_s = s->cfg.attr_timeout_ms / 1000;
	uint32_t valid_ns = (s->cfg.attr_timeout_ms % 1000) * 1000000;
	bool known_ino = ih->nodeid == FTS_ROOT_INO ||
			 ih->nodeid == FTS_FILE_INO;
	union {
		struct fuse_entry_out entry;
		struct fuse_attr_out attr;
		struct fuse_open_out open;
		struct fuse_statfs_out statfs;
		struct fuse_poll_out poll;
	} out;
	size_t outsz = 0;
	int err = 0;

	memset(&out, 0, sizeof(out));
	switch (ih->opcode) {
	case FUSE_LOOKUP:
		if (ih->nodeid != FTS_ROOT_INO ||
		    strnlen(in, inlen) != strlen(FTS_FILE_NAME) ||
		    memcmp(in, FTS_FILE_NAME, strlen(FTS_FILE_NAME))) {
			err = ENOENT;
			break;
		}
		out.entry.nodeid = FTS_FILE_INO;
		out.entry.generation = 1;
		out.entry.entry_valid = out.entry.attr_valid = valid_s;
		out.entry.entry_valid_nsec = valid_ns;
		out.entry.attr_valid_nsec = valid_ns;
		lock(s);
		fill_attr(s, FTS_FILE_INO, &out.entry.attr);
		unlock(s);
		outsz = sizeof(out.entry);
		break;
	case FUSE_SETATTR:
	case FUSE_GETATTR:
		if (!known_ino) {
			err = ENOENT;
			break;
		}
		lock(s);
		if (ih->opcode == FUSE_SETATTR) {
			const struct fuse_setattr_in *sa = in;

			if (inlen < sizeof(*sa))
				err = EIO;
			else if ((sa->valid & FATTR_SIZE) &&
				 ih->nodeid == FTS_FILE_INO)
				err = -data_resize(s, sa->size);
			if (!err && (sa->valid & FATTR_MODE) &&
			    ih->nodeid == FTS_FILE_INO)
				s->shm->file_mode = sa->mode & 07777;
		}
		fill_attr(s, ih->nodeid, &out.attr.attr);
		unlock(s);
		out.attr.attr_valid = valid_s;
		out.attr.attr_valid_nsec = valid_ns;
		outsz = sizeof(out.attr);
		break;
	case FUSE_OPEN:
		if (ih->nodeid != FTS_FILE_INO) {
			err = ih->nodeid == FTS_ROOT_INO ? EISDIR : ENOENT;
			break;
		}
		lock(s);
		/* atomic_o_trunc: the server truncates in OPEN */
		if (inlen >= sizeof(struct fuse_open_in) &&
		    (((const struct fuse_open_in *)in)->flags & O_TRUNC) &&
		    (s->shm->st.flags & FUSE_ATOMIC_O_TRUNC)) {
			err = -data_resize(s, 0);
			s->shm->st.open_truncs++;
			s->shm->st.last_open_trunc_ns = now_ns();
			if (err) {
				unlock(s);
				break;
			}
		}
		out.open.fh = ++s->shm->next_fh;
		out.open.open_flags = s->shm->open_flags;
		s->shm->st.last_open_fh = out.open.fh;
		s->shm->st.last_open_flags = out.open.open_flags;
		unlock(s);
		outsz = sizeof(out.open);
		break;
	case FUSE_STATFS:
		out.statfs.st.blocks = s->cfg.max_data / 4096;
		out.statfs.st.bfree = out.statfs.st.blocks;
		out.statfs.st.bavail = out.statfs.st.blocks;
		out.statfs.st.files = 2;
		out.statfs.st.bsize = 4096;
		out.statfs.st.frsize = 4096;
		out.statfs.st.namelen = 255;
		outsz = sizeof(out.statfs);
		break;
	case FUSE_POLL:
		if (!s->cfg.poll) {
			err = ENOSYS;
			break;
		}
		out.poll.revents = s->cfg.poll_revents;
		outsz = sizeof(out.poll);
		break;
	case FUSE_FLUSH:
	case FUSE_RELEASE:	/* recorded by handle() */
	case FUSE_FSYNC:
	case FUSE_RELEASEDIR:
	case FUSE_FSYNCDIR:
	case FUSE_DESTROY:
		break;
	default:
		lock(s);
		s->shm->st.unknown_ops++;
		unlock(s);
		err = ENOSYS;
		break;
	}
	send_reply(s, src, ih->unique, err, &out, outsz, NULL, 0);
}

void fts_handle(struct fts *s, struct fts_src src, unsigned char *req,
		size_t len)
{
	const struct fuse_in_header *ih = (const void *)req;

	if (len < sizeof(*ih) || ih->len != len) {
		fts_log("malformed request: %zu bytes, header says %u",
			len, len >= sizeof(*ih) ? ih->len : 0);
		/* a ring entry stays with us until answered */
		if (src.ent && len >= sizeof(*ih))
			send_reply(s, src, ih->unique, EIO, NULL, 0, NULL, 0);
		return;
	}
	if (ih->opcode == FUSE_READ || ih->opcode == FUSE_WRITE) {
		handle_data(s, src, req, len);	/* counts it itself */
		return;
	}

	lock(s);
	if (ih->opcode < FTS_MAX_OPCODE)
		s->shm->st.ops[ih->opcode]++;
	if (src.ent)
		s->shm->st.ring_requests++;
	/* with the count, so that fts_wait_ops(FUSE_RELEASE) sees it */
	if (ih->opcode == FUSE_RELEASE &&
	    len >= sizeof(*ih) + sizeof(struct fuse_release_in)) {
		const struct fuse_release_in *ri = (const void *)(ih + 1);

		s->shm->st.last_release_fh = ri->fh;
		s->shm->st.last_release_ns = now_ns();
	}
	/* likewise, for fts_wait_ops(FUSE_SETATTR) */
	if (ih->opcode == FUSE_SETATTR &&
	    len >= sizeof(*ih) + sizeof(struct fuse_setattr_in)) {
		const struct fuse_setattr_in *sa = (const void *)(ih + 1);

		if (sa->valid & FATTR_SIZE) {
			struct fts_stats *st = &s->shm->st;

			st->last_setattr_size = sa->size;
			st->last_setattr_size_ns = now_ns();
			if (!st->setattr_sizes++)
				st->first_setattr_size_ns =
					st->last_setattr_size_ns;
		}
	}
	pthread_cond_broadcast(&s->shm->cond);
	unlock(s);

	switch (ih->opcode) {
	case FUSE_INIT:
		handle_init(s, src, ih, len);
		break;
	case FUSE_INTERRUPT:
		handle_interrupt(s, ih, len);
		break;
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
		break;			/* no answer */
	default:
		handle_meta(s, src, req, len);
		break;
	}
}

/* ---- the server process ------------------------------------------------- */

/* Runs in the forked server process; never returns. */
static void server_main(struct fts *s)
{
	int ret;

	/* die with the test process (rather: with the thread that forked) */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != s->owner)
		_exit(1);
	ret = pthread_create(&s->deferred, NULL, deferred_main, s);
	if (ret) {
		fts_log("server: deferred thread: %s", strerror(ret));
		_exit(1);
	}
	if (s->ops->start(s))
		_exit(1);
	/* they end on the stop eventfd or when the connection is gone */
	s->ops->join(s);
	lock(s);
	s->shm->stopping = true;
	pthread_cond_signal(&s->shm->dcond);
	unlock(s);
	pthread_join(s->deferred, NULL);
	if (s->ops->release)
		s->ops->release(s);
	_exit(0);
}

/* ---- setup and teardown (the test process) ------------------------------ */

static bool fusectl_mounted(void)
{
	struct statfs sfs;

	return statfs(FUSECTL_DIR, &sfs) == 0 &&
	       sfs.f_type == FUSECTL_SUPER_MAGIC;
}

/*
 * Open the connection's control file name in fusectl (mounted first if need
 * be): the descriptor, or -errno (-ENOENT: the connection is gone).
 */
static int fusectl_open(struct fts *s, const char *name, int flags)
{
	char path[64];
	int fd;

	if (!s->have_conn_id)
		return -ENOENT;
	if (!fusectl_mounted() && s->private_ns && !s->fusectl_mounted) {
		/* only in our own mount namespace: it vanishes with us */
		if (mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL))
			return -errno;
		s->fusectl_mounted = true;
	}
	snprintf(path, sizeof(path), FUSECTL_DIR "/%u/%s", s->conn_id, name);
	fd = open(path, flags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int fts_abort(struct fts *s)
{
	int fd, ret = 0;

	fd = fusectl_open(s, "abort", O_WRONLY);
	if (fd < 0)
		return fd;
	if (write(fd, "1", 1) != 1)
		ret = -errno;
	close(fd);
	return ret;
}

int fts_waiting(struct fts *s)
{
	char buf[32];
	ssize_t n;
	int fd, err;

	fd = fusectl_open(s, "waiting", O_RDONLY);
	if (fd < 0)
		return fd;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	if (n == 0)
		return -EIO;
	buf[n] = '\0';
	return atoi(buf);
}

/* Stop the server process: ask, then insist. */
static void stop_server(struct fts *s)
{
	uint64_t one = 1, end = now_ns() + FTS_STOP_TIMEOUT_MS * 1000000ULL;
	int status;
	pid_t ret;

	if (write(s->stop_efd, &one, sizeof(one)) != sizeof(one))
		fts_log("stop eventfd: %s", strerror(errno));
	while ((ret = waitpid(s->pid, &status, WNOHANG)) == 0 &&
	       now_ns() < end)
		usleep(5000);
	if (ret == 0) {
		fts_log("server process %d did not stop, killing it", s->pid);
		kill(s->pid, SIGKILL);
		ret = waitpid(s->pid, &status, 0);
	}
	if (ret < 0)
		fts_log("waitpid server %d: %s", s->pid, strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fts_log("server process %d ended with status %#x", s->pid,
			status);
	s->pid = 0;
}

void fts_stop(struct fts *s)
{
	if (!s)
		return;
	if (getpid() != s->owner) {
		fts_log("fts_stop() from pid %d, not from %d that started it",
			getpid(), s->owner);
		return;
	}
	/* if files are still open the connection lives on, until ... */
	if (s->mounted && umount2(s->mnt, MNT_DETACH))
		fts_log("umount %s: %s", s->mnt, strerror(errno));
	s->mounted = false;
	/* ... the server process exits: the last /dev/fuse reference
	 * goes, the kernel aborts the connection, pending requests fail */
	if (s->pid > 0)
		stop_server(s);
	if (s->fd >= 0)
		close(s->fd);
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	if (s->have_dir && rmdir(s->mnt))
		fts_log("rmdir %s: %s", s->mnt, strerror(errno));
	if (s->ops && s->ops->unprobe)
		s->ops->unprobe(s);
	if (s->data)
		munmap(s->data, s->cfg.max_data);
	if (s->shm)
		munmap(s->shm, sizeof(*s->shm));
	free(s);
}

static int wait_cond(struct fts *s, bool (*done)(struct fts *, const void *),
		     const void *arg, int timeout_ms)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ULL;
	int ret = 0;

	lock(s);
	while (!done(s, arg)) {
		if (wait_on(s, &s->shm->cond, deadline) == ETIMEDOUT) {
			ret = done(s, arg) ? 0 : -ETIMEDOUT;
			break;
		}
	}
	unlock(s);
	return ret;
}

static bool is_inited(struct fts *s, const void *arg)
{
	(void)arg;
	return s->shm->inited;
}

static const struct fts_transport_ops *transport_ops(enum fts_transport t)
{
	switch (t) {
	case FTS_TRANSPORT_DEV:
		return &fts_transport_dev;
	case FTS_TRANSPORT_URING:
		return &fts_transport_uring;
	}
	return NULL;
}

const char *fts_transport_name(enum fts_transport t)
{
	const struct fts_transport_ops *ops = transport_ops(t);

	return ops ? ops->name : "unknown";
}

int fts_transport_check(enum fts_transport t, char *why, size_t whylen)
{
	const struct fts_transport_ops *ops = transport_ops(t);
	int fd, ret;

	if (!ops) {
		snprintf(why, whylen, "no transport %d", (int)t);
		return -EINVAL;
	}
	if (!ops->probe)
		return 0;
	/* loads the module (and its parameters) if need be */
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "open /dev/fuse: %s", strerror(errno));
		return ret;
	}
	close(fd);
	return ops->probe(NULL, why, whylen);
}

/* The shared state: mapping, robust process-shared lock and conditions. */
static int shm_init(struct fts *s)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;

	s->shm = mmap(NULL, sizeof(*s->shm), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s->shm == MAP_FAILED) {
		s->shm = NULL;
		fts_log("mmap state (%zu bytes): %s", sizeof(*s->shm),
			strerror(errno));
		return -ENOMEM;
	}
	s->data = mmap(NULL, s->cfg.max_data, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->data == MAP_FAILED) {
		s->data = NULL;
		fts_log("mmap data (%zu bytes): %s", s->cfg.max_data,
			strerror(errno));
		return -ENOMEM;
	}
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&s->shm->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->shm->cond, &ca);
	pthread_cond_init(&s->shm->dcond, &ca);
	pthread_condattr_destroy(&ca);

	s->shm->policy = s->cfg.policy;
	s->shm->release_stalled = -1;
	s->shm->fixed_size = s->cfg.fixed_size;
	s->shm->size = s->cfg.size;
	s->shm->file_mode = 0644;
	s->shm->open_flags = s->cfg.open_flags;
	return 0;
}

/* Private mount namespace, temp dir, /dev/fuse, mount(2). */
static int do_mount(struct fts *s)
{
	const char *tmp = getenv("TMPDIR");
	char opts[256];
	int n;

	if (!s->cfg.no_private_ns) {
		/* fails with EINVAL once we have threads: then share */
		if (unshare(CLONE_NEWNS) == 0) {
			if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
				fts_log("make / private: %s", strerror(errno));
				return -errno;
			}
			s->private_ns = true;
		} else if (errno != EINVAL) {
			fts_log("unshare(CLONE_NEWNS): %s, using the shared namespace",
				strerror(errno));
		}
	}

	if ((size_t)snprintf(s->mnt, sizeof(s->mnt), "%s/fts.XXXXXX",
			     tmp && *tmp ? tmp : "/tmp") >= sizeof(s->mnt)) {
		fts_log("TMPDIR %s: too long", tmp);
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(s->mnt)) {
		fts_log("mkdtemp %s: %s", s->mnt, strerror(errno));
		return -errno;
	}
	s->have_dir = true;
	snprintf(s->file, sizeof(s->file), "%s/" FTS_FILE_NAME, s->mnt);

	s->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (s->fd < 0) {
		fts_log("open /dev/fuse: %s", strerror(errno));
		return -errno;
	}
	/* the module is loaded now; INIT is sent at mount(2) */
	if (s->ops->probe) {
		char why[256];
		int ret = s->ops->probe(s, why, sizeof(why));

		if (ret) {
			fts_log("%s transport: %s", s->ops->name, why);
			return ret;
		}
	}
	n = snprintf(opts, sizeof(opts),
		     "fd=%d,rootmode=40000,user_id=0,group_id=0", s->fd);
	if (s->cfg.max_read)
		snprintf(opts + n, sizeof(opts) - n, ",max_read=%u",
			 s->cfg.max_read);
	if (mount("fts", s->mnt, "fuse", MS_NOSUID | MS_NODEV, opts)) {
		fts_log("mount fuse on %s (%s): %s", s->mnt, opts,
			strerror(errno));
		return -errno;
	}
	s->mounted = true;
	return 0;
}

int fts_start(const struct fts_config *cfg, struct fts **srvp)
{
	long page = sysconf(_SC_PAGESIZE);
	struct stat st;
	struct fts *s;
	size_t big;
	int ret;

	*srvp = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->fd = s->stop_efd = -1;
	s->probe_undo = -1;
	s->owner = getpid();
	s->ops = transport_ops(cfg->transport);
	if (!s->ops) {
		fts_log("no transport %d", (int)cfg->transport);
		free(s);
		return -EINVAL;
	}
	clock_gettime(CLOCK_REALTIME, &s->t0);
	if (!s->cfg.nthreads)
		s->cfg.nthreads = 1;
	if (s->cfg.max_write < 4096)
		s->cfg.max_write = 4096;
	if (!s->cfg.max_data)
		s->cfg.max_data = FTS_DEFAULT_MAX_DATA;
	if (!s->cfg.uring_depth)
		s->cfg.uring_depth = FTS_URING_DEPTH;
	big = s->cfg.max_write;
	if ((size_t)s->cfg.max_pages * page > big)
		big = (size_t)s->cfg.max_pages * page;
	s->bufsize = big + 2 * page;	/* headers, FUSE_MIN_READ_BUFFER */

	ret = shm_init(s);
	if (!ret)
		ret = do_mount(s);
	if (ret)
		goto fail;
	s->stop_efd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_efd < 0) {
		ret = -errno;
		fts_log("eventfd: %s", strerror(errno));
		goto fail;
	}

	fflush(stdout);
	fflush(stderr);
	s->pid = fork();
	if (s->pid < 0) {
		ret = -errno;
		fts_log("fork server: %s", strerror(errno));
		goto fail;
	}
	if (s->pid == 0)
		server_main(s);
	/* only the server may keep /dev/fuse open, see the top comment */
	close(s->fd);
	s->fd = -1;

	/* mount(2) queued INIT already; wait for it to be answered, so
	 * that fts_get_stats() shows what was negotiated */
	ret = wait_cond(s, is_inited, NULL, FTS_INIT_TIMEOUT_MS);
	if (ret) {
		fts_log("no INIT answered within %d ms", FTS_INIT_TIMEOUT_MS);
		goto fail;
	}
	ret = s->shm->start_err;
	if (ret) {
		fts_log("%s transport: setting up after INIT failed: %s",
			s->ops->name, strerror(-ret));
		goto fail;
	}
	if (stat(s->mnt, &st)) {
		ret = -errno;
		fts_log("stat %s: %s", s->mnt, strerror(errno));
		goto fail;
	}
	/* fusectl names a connection by the kernel's dev_t (major << 20) */
	s->conn_id = (major(st.st_dev) << 20) | minor(st.st_dev);
	s->have_conn_id = true;
	*srvp = s;
	return 0;

fail:
	fts_stop(s);
	return ret;
}

/* ---- accessors ---------------------------------------------------------- */

const char *fts_mnt(const struct fts *s)
{
	return s->mnt;
}

const char *fts_file(const struct fts *s)
{
	return s->file;
}

pid_t fts_server_pid(const struct fts *s)
{
	return s->pid;
}

void fts_set_policy(struct fts *s, const struct fts_policy *policy)
{
	lock(s);
	s->shm->policy = *policy;
	pthread_cond_signal(&s->shm->dcond);
	unlock(s);
}

void fts_set_open_flags(struct fts *s, uint32_t open_flags)
{
	lock(s);
	s->shm->open_flags = open_flags;
	unlock(s);
}

void fts_release_held(struct fts *s)
{
	lock(s);
	s->shm->release_held = true;
	pthread_cond_signal(&s->shm->dcond);
	unlock(s);
}

void fts_release_stalled(struct fts *s, int err)
{
	lock(s);
	s->shm->release_stalled = err > 0 ? err : 0;
	pthread_cond_signal(&s->shm->dcond);
	unlock(s);
}

int fts_set_data(struct fts *s, const void *buf, size_t len)
{
	if (len > s->cfg.max_data)
		return -EFBIG;
	lock(s);
	if (len)
		memcpy(s->data, buf, len);
	s->shm->len = len;
	unlock(s);
	return 0;
}

size_t fts_get_data(struct fts *s, void *buf, size_t max)
{
	size_t len;

	lock(s);
	len = s->shm->len;
	if (len && max)
		memcpy(buf, s->data, len < max ? len : max);
	unlock(s);
	return len;
}

size_t fts_data_len(struct fts *s)
{
	size_t len;

	lock(s);
	len = s->shm->len;
	unlock(s);
	return len;
}

void fts_set_size(struct fts *s, bool fixed, uint64_t size)
{
	lock(s);
	s->shm->fixed_size = fixed;
	s->shm->size = size;
	unlock(s);
}

void fts_get_stats(struct fts *s, struct fts_stats *st)
{
	lock(s);
	*st = s->shm->st;
	unlock(s);
}

size_t fts_get_ios(struct fts *s, struct fts_io **ios)
{
	size_t n;

	lock(s);
	n = s->shm->nlog;
	*ios = n ? malloc(n * sizeof(**ios)) : NULL;
	if (*ios)
		memcpy(*ios, s->shm->log, n * sizeof(**ios));
	else
		n = 0;
	unlock(s);
	return n;
}

void fts_reset(struct fts *s)
{
	struct fts_stats *st = &s->shm->st, keep;

	lock(s);
	keep = *st;
	memset(st, 0, sizeof(*st));
	st->proto_minor = keep.proto_minor;
	st->kernel_flags = keep.kernel_flags;
	st->flags = keep.flags;
	st->ring_queues = keep.ring_queues;
	st->outstanding = keep.outstanding;
	st->max_outstanding = keep.outstanding;
	st->held = keep.held;
	st->stalled = keep.stalled;
	s->shm->nlog = 0;
	s->shm->epoch++;
	unlock(s);
}

static bool enough_outstanding(struct fts *s, const void *arg)
{
	return s->shm->st.outstanding >= *(const unsigned int *)arg;
}

int fts_wait_outstanding(struct fts *s, unsigned int n, int timeout_ms)
{
	return wait_cond(s, enough_outstanding, &n, timeout_ms);
}

struct ops_arg {
	uint32_t opcode;
	unsigned int n;
};

static bool enough_ops(struct fts *s, const void *arg)
{
	const struct ops_arg *a = arg;

	return s->shm->st.ops[a->opcode] >= a->n;
}

int fts_wait_ops(struct fts *s, uint32_t opcode, unsigned int n,
		 int timeout_ms)
{
	struct ops_arg a = { opcode, n };

	if (opcode >= FTS_MAX_OPCODE)
		return -EINVAL;
	return wait_cond(s, enough_ops, &a, timeout_ms);
}

/* ---- helpers for tests -------------------------------------------------- */

void fts_fill_pattern(void *buf, size_t len, uint64_t off, unsigned int seed)
{
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t o = off + i;

		p[i] = o ^ (o >> 8) ^ (o >> 16) ^ (o >> 24) ^ seed;
	}
}

long long fts_first_diff(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;
	size_t i;

	for (i = 0; i < len; i++)
		if (x[i] != y[i])
			return i;
	return -1;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct fts_io *x = *(const struct fts_io *const *)a;
	const struct fts_io *y = *(const struct fts_io *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int fts_check_coverage(const struct fts_io *ios, size_t n, uint32_t opcode,
		       uint64_t off, uint64_t len, char *why, size_t whylen)
{
	const struct fts_io **v = calloc(n ? n : 1, sizeof(*v));
	uint64_t pos = off;
	size_t i, m = 0;
	int ret = 0;

	if (!v) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++)
		if (ios[i].opcode == opcode)
			v[m++] = &ios[i];
	qsort(v, m, sizeof(*v), cmp_offset);
	for (i = 0; i < m && !ret; i++) {
		if (v[i]->offset != pos) {
			snprintf(why, whylen,
				 "%s at %llu+%u, expected one at %llu",
				 opcode == FUSE_READ ? "READ" : "WRITE",
				 (unsigned long long)v[i]->offset, v[i]->size,
				 (unsigned long long)pos);
			ret = -1;
		}
		pos += v[i]->size;
	}
	if (!ret && pos != off + len) {
		snprintf(why, whylen, "%zu requests cover %llu..%llu, not ..%llu",
			 m, (unsigned long long)off, (unsigned long long)pos,
			 (unsigned long long)(off + len));
		ret = -1;
	}
	free(v);
	return ret;
}
