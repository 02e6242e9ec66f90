// SPDX-License-Identifier: GPL-2.0
/*
 * fdio_kill_kbuf: SIGKILL a process whose synchronous read of a
 * FOPEN_DIRECT_IO file goes into a buffer of kernel memory, while the
 * server holds one READ; answer that READ (with data) after the kill.
 *
 * A read(2) into user memory pins the user pages for as long as a request
 * points at them, so a sync direct IO whose caller was killed can leave
 * its requests with the server.  A read done by the kernel for itself does
 * not: the request points straight at a vmalloc or kmalloc buffer (ITER_KVEC)
 * or at pages the caller frees on error (ITER_BVEC), and the caller frees
 * that memory as soon as the read returns.  The read must therefore not
 * return while a request still points into it: the killed process may only
 * go once the server answered (stock: an uninterruptible wait for a sent
 * request).  If it returns early, the late answer is copied into freed
 * memory: on a KASAN kernel a use-after-free report or an "unable to handle
 * page fault" oops (freed vmalloc area), which fails the guest run.
 *
 *  - finit_module_killed: finit_module() of the 256 KiB file reads it into
 *    a vmalloc buffer (kernel_read_file()); 1st READ held.
 *  - execve_killed_header_read: execve() of the file (a copy of /bin/true):
 *    the 1st READ, bprm->buf (inside the kmalloc()ed linux_binprm), is held.
 *  - execve_killed_phdr_read: the same, the 2nd READ (the ELF program
 *    headers, load_elf_phdrs()' kmalloc buffer) is held.
 *  - sendfile_pipe_killed: sendfile() from an O_DIRECT fd to a pipe:
 *    copy_splice_read() reads into freshly allocated pages (ITER_BVEC) and
 *    frees them on error; 1st READ held.
 *  - sendfile_file_killed: the same into a file on /tmp (do_splice_direct()
 *    through the internal pipe).
 *
 * Every case: the child must be blocked in the read (server holds a READ,
 * child not exited, its /proc state logged) before the SIGKILL; 200 ms
 * after the kill the held READ is answered with data; the child must then
 * be reaped within a bounded time, killed by SIGKILL (whether it went before
 * or only after the answer is logged, not judged); no READ may stay
 * unanswered; and the file must read back correctly through a fresh fd
 * (nothing on the way was corrupted by the late answer).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "fuse_test_server.h"
#include "fdio_common.h"

#define SZ	(256 << 10)	/* file size for the data cases: 2 READs */
#define EXE	"/bin/true"

enum kbuf_op { OP_MODULE, OP_EXEC, OP_SENDFILE_PIPE, OP_SENDFILE_FILE };

FIXTURE(kbuf) {
	struct fts *srv;
	struct fts_config cfg;
	pid_t child;
	void *data;
	size_t len;
	char tmp[64];
};

FIXTURE_SETUP(kbuf)
{
	self->srv = NULL;
	self->child = 0;
	self->data = NULL;
	self->tmp[0] = '\0';
	fdio_config(&self->cfg, FOPEN_DIRECT_IO);
}

FIXTURE_TEARDOWN(kbuf)
{
	if (self->child > 0) {
		/* answer what it waits for, so that it can go */
		if (self->srv) {
			fdio_answer_all(self->srv);
			fts_release_stalled(self->srv, EIO);
		}
		kill(self->child, SIGKILL);
		if (fdio_wait_child(self->child, 10000) == -1)
			TH_LOG("child %d still there", self->child);
	}
	if (self->srv)
		fts_stop(self->srv);
	if (self->tmp[0])
		unlink(self->tmp);
	free(self->data);
}

/* The contents of a regular file in a malloc()ed buffer; NULL on error. */
static void *slurp(const char *path, size_t *len)
{
	struct stat st;
	void *buf = NULL;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		buf = malloc(st.st_size);
		n = buf ? pread(fd, buf, st.st_size, 0) : -1;
		if (n != st.st_size) {
			free(buf);
			buf = NULL;
		}
		*len = st.st_size;
	}
	close(fd);
	return buf;
}

/* Wait up to ms until the server holds at least one stalled request. */
static int wait_stalled(struct fts *srv, int ms)
{
	uint64_t end = fdio_now_ms() + ms;
	struct fts_stats st;

	do {
		fts_get_stats(srv, &st);
		if (st.stalled)
			return 0;
		fdio_sleep_ms(5);
	} while (fdio_now_ms() < end);
	return -ETIMEDOUT;
}

/* Wait up to ms until no READ/WRITE is outstanding. */
static int wait_idle(struct fts *srv, int ms)
{
	uint64_t end = fdio_now_ms() + ms;
	struct fts_stats st;

	do {
		fts_get_stats(srv, &st);
		if (!st.outstanding)
			return 0;
		fdio_sleep_ms(5);
	} while (fdio_now_ms() < end);
	return -ETIMEDOUT;
}

/* The child: do the kernel-buffer read of the file, exit with a status
 * that says how it ended (it should be killed before). */
static void child_main(enum kbuf_op op, const char *path, const char *tmp)
{
	off_t off = 0;
	int fd, out, p[2];

	switch (op) {
	case OP_MODULE:
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(10);
		syscall(SYS_finit_module, fd, "", 0);
		_exit(11);
	case OP_EXEC: {
		char *argv[] = { (char *)path, NULL };
		char *envp[] = { NULL };

		execve(path, argv, envp);
		_exit(12);
	}
	case OP_SENDFILE_PIPE:
		fd = open(path, O_RDONLY | O_DIRECT);
		if (fd < 0 || pipe(p))
			_exit(10);
		/* room for the whole file: 2 READs in one copy_splice_read() */
		fcntl(p[1], F_SETPIPE_SZ, 2 * SZ);
		sendfile(p[1], fd, &off, SZ);
		_exit(13);
	case OP_SENDFILE_FILE:
		fd = open(path, O_RDONLY | O_DIRECT);
		out = open(tmp, O_WRONLY | O_TRUNC);
		if (fd < 0 || out < 0)
			_exit(10);
		sendfile(out, fd, &off, SZ);
		_exit(13);
	}
	_exit(14);
}

/*
 * The server holds the nth READ (never answers it until released); a child
 * reads the file into kernel memory, is SIGKILLed while the READ is held,
 * and 200 ms later the READ is answered with the file's data.
 */
static void kill_kbuf(struct __test_metadata *_metadata,
		      FIXTURE_DATA(kbuf) *self, enum kbuf_op op,
		      unsigned int nth)
{
	struct fts_stats st;
	struct fts_io *ios;
	uint64_t t0;
	size_t i, n;
	int status, fd, unanswered = 0;
	bool gone_early;
	char state;
	void *got;

	self->cfg.policy.rules[0] = (struct fts_rule){
		.opcode = FUSE_READ,
		.nth = nth,
		.action = { .act = FTS_ACT_NO_REPLY },
	};

	if (op == OP_EXEC) {
		self->data = slurp(EXE, &self->len);
		if (!self->data)
			SKIP(return, "can not read %s", EXE);
	} else {
		self->len = SZ;
		self->data = malloc(SZ);
		ASSERT_NE(NULL, self->data);
		fts_fill_pattern(self->data, SZ, 0, 91);
	}
	if (op == OP_SENDFILE_FILE) {
		strcpy(self->tmp, "/tmp/fdio_kill_kbuf.XXXXXX");
		fd = mkstemp(self->tmp);
		ASSERT_LE(0, fd);
		close(fd);
	}

	ASSERT_EQ(0, fts_start(&self->cfg, &self->srv));
	ASSERT_EQ(0, fts_set_data(self->srv, self->data, self->len));
	if (op == OP_EXEC)
		ASSERT_EQ(0, chmod(fts_file(self->srv), 0755));

	self->child = fork();
	ASSERT_LE(0, self->child);
	if (self->child == 0)
		child_main(op, fts_file(self->srv), self->tmp);

	/* blocked in the read: the server holds a READ, the child is there */
	ASSERT_EQ(0, wait_stalled(self->srv, 10000)) {
		status = fdio_wait_child(self->child, 0);
		TH_LOG("no READ held; child %s (status 0x%x)",
		       status == -1 ? "running" : "exited", status);
	}
	fdio_sleep_ms(50);
	state = fdio_proc_state(self->child);
	status = fdio_wait_child(self->child, 0);
	ASSERT_EQ(-1, status) {
		TH_LOG("child exited (status 0x%x) with a READ held", status);
		self->child = 0;
	}
	fts_get_stats(self->srv, &st);
	TH_LOG("child in state %c, %u READ(s) received, %u held", state,
	       st.reads, st.stalled);
	ASSERT_NE('Z', state);
	ASSERT_NE('X', state);

	t0 = fdio_now_ms();
	ASSERT_EQ(0, kill(self->child, SIGKILL));
	fdio_sleep_ms(200);
	status = fdio_wait_child(self->child, 0);
	gone_early = status != -1;
	TH_LOG("200 ms after SIGKILL the child is %s (state %c)",
	       gone_early ? "gone" : "still there",
	       gone_early ? '-' : fdio_proc_state(self->child));

	/* the late answer, with data */
	fts_release_stalled(self->srv, 0);
	if (status == -1)
		status = fdio_wait_child(self->child, 10000);
	ASSERT_NE(-1, status) {
		TH_LOG("the SIGKILLed child stayed after its READ was answered");
	}
	self->child = 0;
	TH_LOG("child reaped %llu ms after SIGKILL",
	       (unsigned long long)(fdio_now_ms() - t0));
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
		TH_LOG("child status 0x%x, not killed by SIGKILL", status);
	}

	/* every READ answered: nothing is left pointing anywhere */
	EXPECT_EQ(0, wait_idle(self->srv, 5000));
	n = fts_get_ios(self->srv, &ios);
	for (i = 0; i < n; i++) {
		if (!ios[i].answered)
			unanswered++;
		else if (ios[i].action.act == FTS_ACT_NO_REPLY)
			TH_LOG("held READ %u (%u bytes at %llu) answered: %d",
			       ios[i].op_seq, ios[i].size,
			       (unsigned long long)ios[i].offset,
			       ios[i].result);
	}
	free(ios);
	EXPECT_EQ(0, unanswered);

	/* the file reads back right through a fresh fd */
	fdio_answer_all(self->srv);
	got = malloc(self->len);
	ASSERT_NE(NULL, got);
	fd = open(fts_file(self->srv), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ((ssize_t)self->len, pread(fd, got, self->len, 0));
	EXPECT_EQ(-1, fts_first_diff(got, self->data, self->len));
	close(fd);
	free(got);
}

TEST_F_TIMEOUT(kbuf, finit_module_killed, 90)
{
	kill_kbuf(_metadata, self, OP_MODULE, 1);
}

TEST_F_TIMEOUT(kbuf, execve_killed_header_read, 90)
{
	kill_kbuf(_metadata, self, OP_EXEC, 1);
}

TEST_F_TIMEOUT(kbuf, execve_killed_phdr_read, 90)
{
	kill_kbuf(_metadata, self, OP_EXEC, 2);
}

TEST_F_TIMEOUT(kbuf, sendfile_pipe_killed, 90)
{
	kill_kbuf(_metadata, self, OP_SENDFILE_PIPE, 1);
}

TEST_F_TIMEOUT(kbuf, sendfile_file_killed, 90)
{
	kill_kbuf(_metadata, self, OP_SENDFILE_FILE, 1);
}

TEST_HARNESS_MAIN
