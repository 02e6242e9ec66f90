// SPDX-License-Identifier: GPL-2.0
/*
 * module_check: is the loaded FUSE module the one we built?
 *
 * With FUSE_ADIO_BUILD_ID=<lowercase hex GNU build id of our fuse.ko> in the
 * environment, compare it with the build id the running module exports in
 * /sys/module/fuse/notes/.note.gnu.build-id, and check the module taints the
 * kernel as out-of-tree ('O' in /sys/module/fuse/taint).  Skips when the
 * variable is unset or FUSE is not a loaded module (built in: no
 * /sys/module/fuse/initstate).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "kselftest_harness.h"

#ifndef MOD_DIR		/* -DMOD_DIR=... to try it on a fake tree */
#define MOD_DIR		"/sys/module/fuse"
#endif
#define BUILD_ID_NOTE	MOD_DIR "/notes/.note.gnu.build-id"
/* only loadable modules have it (built-in ones may have parameters/) */
#define MOD_INITSTATE	MOD_DIR "/initstate"
#define NT_GNU_BUILD_ID	3

/* Read up to size bytes of a file; returns bytes read or -errno. */
static ssize_t read_file(const char *path, void *buf, size_t size)
{
	ssize_t n, total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((size_t)total < size) {
		n = read(fd, (char *)buf + total, size - total);
		if (n < 0) {
			n = -errno;
			close(fd);
			return n;
		}
		if (!n)
			break;
		total += n;
	}
	close(fd);
	return total;
}

/* The expected build id, or SKIP the test. */
#define GET_EXPECTED_OR_SKIP(want)					\
	do {								\
		const char *env = getenv("FUSE_ADIO_BUILD_ID");		\
		struct stat st_;					\
		size_t i_;						\
									\
		if (!env || !*env)					\
			SKIP(return, "FUSE_ADIO_BUILD_ID is not set");	\
		if (stat(MOD_INITSTATE, &st_))				\
			SKIP(return, "no %s: FUSE is built in or not loaded", \
			     MOD_INITSTATE);				\
		snprintf(want, sizeof(want), "%s", env);		\
		for (i_ = 0; want[i_]; i_++)				\
			want[i_] = tolower((unsigned char)want[i_]);	\
		while (i_ && isspace((unsigned char)want[i_ - 1]))	\
			want[--i_] = 0;					\
	} while (0)

TEST(build_id)
{
	unsigned char note[512];
	uint32_t namesz, descsz, type;
	char want[256], got[2 * sizeof(note) + 1];
	size_t off, i;
	ssize_t n;

	GET_EXPECTED_OR_SKIP(want);
	n = read_file(BUILD_ID_NOTE, note, sizeof(note));
	ASSERT_LE(0, n) {
		TH_LOG("read %s: %s", BUILD_ID_NOTE, strerror(-n));
	}
	ASSERT_LE(12, n) {
		TH_LOG("%s: only %zd bytes", BUILD_ID_NOTE, n);
	}
	memcpy(&namesz, note, 4);
	memcpy(&descsz, note + 4, 4);
	memcpy(&type, note + 8, 4);
	off = 12 + ((namesz + 3) & ~3u);
	ASSERT_EQ((uint32_t)NT_GNU_BUILD_ID, type);
	ASSERT_EQ(4U, namesz);
	ASSERT_EQ(0, memcmp(note + 12, "GNU", 4));
	ASSERT_LT(0U, descsz);
	ASSERT_GE((size_t)n, off + descsz) {
		TH_LOG("note truncated: %zd bytes, desc needs %zu",
		       n, off + descsz);
	}
	for (i = 0; i < descsz; i++)
		snprintf(got + 2 * i, 3, "%02x", note[off + i]);
	TH_LOG("loaded fuse build id %s", got);
	EXPECT_STREQ(want, got);
}

TEST(taint_out_of_tree)
{
	char want[256], taint[64];
	ssize_t n;

	GET_EXPECTED_OR_SKIP(want);
	n = read_file(MOD_DIR "/taint", taint, sizeof(taint) - 1);
	ASSERT_LE(0, n) {
		TH_LOG("read %s/taint: %s", MOD_DIR, strerror(-n));
	}
	taint[n] = 0;
	while (n && isspace((unsigned char)taint[n - 1]))
		taint[--n] = 0;
	TH_LOG("fuse module taint flags: \"%s\"", taint);
	EXPECT_NE(NULL, strchr(taint, 'O'));
}

TEST_HARNESS_MAIN
