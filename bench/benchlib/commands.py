"""Command lines of the workloads, and what the backing file must be.

Every command works on DIR/file (fio with jobs on separate files for
extending writes: DIR/ext.N), where DIR is the FUSE mount or, for the
ceiling, the backing tmpfs itself.
"""

import os

AIO_STRESS = "bench/aio-stress/aio-stress"   # relative to the project dir


def file_prep(w):
    """Size in MiB of the file to lay out before the run, 0 for none (an
    empty directory: the workload creates and extends its files)."""
    if w.tool == "fio" and w.extend:
        return 0
    return w.size_mb


def argv(w, d, top):
    path = os.path.join(d, "file")
    if w.tool == "dd":
        count = w.size_mb // 2
        if w.op == "read":
            a = ["dd", f"of=/dev/null", f"if={path}", "bs=2M", f"count={count}"]
            if w.odirect:
                a.append("iflag=direct")
        else:
            a = ["dd", "if=/dev/zero", f"of={path}", "bs=2M", f"count={count}"]
            if w.odirect:
                a.append("oflag=direct")
            a.append("conv=notrunc")
        return a
    if w.tool == "aio-stress":
        a = [os.path.join(top, AIO_STRESS), "-s", str(w.size_mb), "-a", "4", "-b", "1", "-c", "1"]
        if w.odirect:
            a.append("-O")
        a += ["-o", "1" if w.op == "read" else "0", path]
        return a
    if w.tool == "fio":
        rw = w.op
        if w.touch_buffers:
            rw = {"read": "rw", "randread": "randrw"}[w.op]
        a = ["fio", "--name=bench", f"--ioengine={w.engine}", f"--rw={rw}",
             f"--bs={w.bs}", f"--iodepth={w.iodepth}", f"--numjobs={w.numjobs}",
             f"--direct={1 if w.odirect else 0}", f"--size={w.size_mb}M",
             f"--runtime={w.runtime}", "--fallocate=none", "--group_reporting",
             "--output-format=json"]
        if w.op.startswith("rand"):
            a += ["--norandommap", "--randrepeat=0"]
        if w.count_iowq:
            a.append("--thread")
        if w.touch_buffers:
            a.append("--rwmixread=100")
        if w.extend:
            # Every job writes its own new file from 0 on: each write
            # extends it.  Not time based: a wrap-around would overwrite.
            a += [f"--directory={d}", "--filename_format=ext.$jobnum"]
        else:
            a += [f"--filename={path}", "--time_based"]
            if w.numjobs > 1 and not w.op.startswith("rand"):
                # sequential jobs on one file, each in its own slice
                a += [f"--offset_increment={w.size_mb // w.numjobs}M",
                      f"--size={w.size_mb // w.numjobs}M"]
        return a
    raise ValueError(f"unknown tool {w.tool}")
