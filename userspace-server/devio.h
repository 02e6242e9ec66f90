/* FOPEN_PARALLEL_DIRECT_WRITES for libfuse versions that cannot send it.
 *
 * libfuse 3.14's fuse_file_info has no parallel_direct_writes bit, and
 * fuse_reply_open()/fuse_reply_create() only encode the bits it knows.
 * When the bit is missing (HAVE_FI_PARALLEL_DIRECT_WRITES == 0) we install
 * a custom writev() on the session (fuse_session_custom_io, after the
 * normal fuse_session_mount) that ORs the flag into the fuse_open_out of
 * the next OPEN/CREATE reply the same thread sends.  Handlers call
 * devio_mark_open_reply() just before fuse_reply_open/create; the reply is
 * written synchronously on that thread, so a thread-local mark suffices.
 */
#ifndef PT_DEVIO_H
#define PT_DEVIO_H

#include "pt_fuse.h"

/* Returns 0 or a negative errno (after printing why). */
int devio_install(struct fuse_session *se);
void devio_mark_open_reply(void);

#endif
