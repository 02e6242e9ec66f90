/* Single place that selects the libfuse API level: 3.12 is the first
 * with fuse_loop_cfg_*() (max_threads for the multi-threaded loop). */
#ifndef PT_FUSE_H
#define PT_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "config.h"

#endif
