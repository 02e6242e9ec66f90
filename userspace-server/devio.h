/* FOPEN_PARALLEL_DIRECT_WRITES and FUSE_ASYNC_DIO_ALL for libfuse versions
 * that cannot send them.
 *
 * libfuse 3.14's fuse_file_info has no parallel_direct_writes bit, and
 * fuse_reply_open()/fuse_reply_create() only encode the bits it knows.
 * When the bit is missing (HAVE_FI_PARALLEL_DIRECT_WRITES == 0) we install
 * a custom writev() on the session (fuse_session_custom_io, after the
 * normal fuse_session_mount) that ORs the flag into the fuse_open_out of
 * the next OPEN/CREATE reply the same thread sends.  Handlers call
 * devio_mark_open_reply() just before fuse_reply_open/create; the reply is
 * written synchronously on that thread, so a thread-local mark suffices.
 *
 * FUSE_ASYNC_DIO_ALL (an INIT flag of the fuse-adio series, bit 48) is not
 * in any libfuse: with async_dio_all the same hook ORs it into flags2 of
 * the first reply the session sends, the INIT reply, when that reply has
 * FUSE_ASYNC_DIO and FUSE_INIT_EXT.  A kernel without the series ignores
 * the bit.
 *
 * --transport uring: the INIT reply also gets FUSE_OVER_IO_URING (when the
 * INIT request, seen by the read hook, offered it; otherwise the mount is
 * refused with EPROTONOSUPPORT and the server exits), the io_uring
 * transport learns the payload size from it once it is written, and every
 * later reply goes to uring_reply() first: replies to requests taken from
 * a ring entry are committed there, the rest written to /dev/fuse.
 */
#ifndef PT_DEVIO_H
#define PT_DEVIO_H

#include <stdbool.h>
#include <stdint.h>

#include "pt_fuse.h"

struct uring_transport;

/* Hook state, in struct server (the session's userdata reaches it). */
struct devio {
	bool want_async_dio_all;
	bool init_seen;			/* the first reply went out */
	bool failed;			/* INIT refused: see above */
	uint64_t kernel_flags;		/* offered in the INIT request */
	struct uring_transport *uring;	/* NULL: /dev/fuse only */
};

#ifndef FUSE_ASYNC_DIO_ALL
#define FUSE_ASYNC_DIO_ALL	(1ULL << 48)
#endif
#ifndef FUSE_OVER_IO_URING	/* protocol 7.42: bookworm's header is older */
#define FUSE_OVER_IO_URING	(1ULL << 41)
#endif

/* Returns 0 or a negative errno (after printing why). */
/* Hooks the session's device IO; the state is the server's devio (set its
 * fields first). */
int devio_install(struct fuse_session *se);
void devio_mark_open_reply(void);

#endif
