"""The benchmark matrix: what runs, on which server, in which order.

A workload is one command (dd, aio-stress or fio) on one server
configuration.  Each is run on the stock and the patched fuse.ko and,
for the ceiling, straight on the backing tmpfs.  The matrix is a chosen
subset of the full product (see bench/README.md for why each is there);
QUICK marks the few that `make bench QUICK=1` runs.
"""

from dataclasses import asdict, dataclass, field, replace

MIB = 1 << 20


@dataclass(frozen=True)
class Server:
    """userspace-server/passthrough options."""
    threads: int = 4
    clone_fd: bool = False
    direct_io: bool = False          # FOPEN_DIRECT_IO
    latency_us: int = 0
    max_pages: int = 32              # 128 KiB requests, the 2012 default
    max_background: int = 0          # 0: the kernel's default (12)
    transport: str = "dev"           # dev (/dev/fuse) | uring (FUSE-over-io_uring)

    def argv(self):
        a = ["--threads", str(self.threads), "--max-pages", str(self.max_pages)]
        if self.transport != "dev":
            a += ["--transport", self.transport]
        if self.clone_fd:
            a.append("--clone-fd")
        if self.direct_io:
            a.append("--direct-io")
        if self.latency_us:
            a += ["--latency-us", str(self.latency_us)]
        if self.max_background:
            a += ["--max-background", str(self.max_background)]
        return a

    def describe(self):
        parts = ["FOPEN_DIRECT_IO" if self.direct_io else "normal files"]
        parts.append(f"lat {self.latency_us} us" if self.latency_us else "tmpfs")
        parts.append(f"{self.threads} thr" + (" clone-fd" if self.clone_fd else ""))
        if self.max_pages != 32:
            parts.append(f"max_pages {self.max_pages}")
        if self.max_background:
            parts.append(f"max_bg {self.max_background}")
        if self.transport == "uring":
            parts.append("io_uring transport")
        return ", ".join(parts)


@dataclass(frozen=True)
class Workload:
    id: str                  # unique, stable: results are keyed by it
    group: str               # table section
    label: str               # short row name
    tool: str                # dd | aio-stress | fio
    op: str                  # read | write | randread | randwrite
    server: Server = field(default_factory=Server)
    odirect: bool = True     # O_DIRECT (dd iflag/oflag, aio-stress -O, fio direct=1)
    size_mb: int = 512       # dd: bs 2M * count; aio-stress -s; fio: file size
    # fio only
    engine: str = ""         # libaio | io_uring
    bs: str = ""
    iodepth: int = 1
    numjobs: int = 1
    extend: bool = False     # write to an empty file: every write extends it
    runtime: int = 2
    quick: bool = False
    timeout: int = 240       # seconds, per run
    # fio jobs as threads of one process (--thread), whose io_uring io-wq
    # workers (iou-wrk-*) the guest counts during the run
    count_iowq: bool = False
    # fio writes its buffers before the first IO (a read-only mix of a
    # read-write job: fio fills the buffers of jobs that may write); plain
    # read jobs never touch them, so the first read into each buffer page
    # faults
    touch_buffers: bool = False
    # latency model (report.model): the stock module sends model_k requests
    # of a model_unit_kib unit one after the other, the patched one all at
    # once; model_twin is the same workload at zero latency, whose times
    # give each module's fixed cost C per unit.
    model_k: int = 0
    model_unit_kib: int = 0
    model_twin: str = ""
    # run it straight on tmpfs too (the ceiling); the io_uring transport
    # rows share the one of their /dev/fuse twin
    raw_run: bool = True

    def to_dict(self):
        d = asdict(self)
        d["server_desc"] = self.server.describe()
        d["server_argv"] = self.server.argv()
        return d


TMPFS = Server()
DIO = Server(direct_io=True)
LAT1 = Server(latency_us=1000)
DIO_LAT1 = Server(direct_io=True, latency_us=1000)
# the latency-model rows: 10 ms, and enough background slots (32) for all
# 16 requests of a 2 MiB unit at once
DIO_BG32 = Server(direct_io=True, max_background=32)
DIO_LAT10_BG32 = Server(direct_io=True, latency_us=10000, max_background=32)


def _2012(prefix, group, server, size_mb=512, odirect=True, which="dd-read dd-write aio-read aio-write",
          quick=()):
    """The four commands of the 2012 cover letter (dd bs=2M, aio-stress
    -s 512 -a 4 -b 1 -c 1), 512 MiB unless size_mb says otherwise."""
    out = []
    for name in which.split():
        tool, op = name.split("-")
        tool = "aio-stress" if tool == "aio" else "dd"
        label = ("dd" if tool == "dd" else "aio-stress") + " " + op
        out.append(Workload(id=f"{prefix}-{name}", group=group, label=label,
                            tool=tool, op=op, server=server, odirect=odirect,
                            size_mb=size_mb, quick=name in quick))
    return out


def _fio(engine, op, bs, iodepth, numjobs=1, server=DIO_LAT1, odirect=None,
         extend=False, group=None, quick=False, size_mb=512):
    if odirect is None:
        # FOPEN_DIRECT_IO files are normally opened without O_DIRECT
        # (the server chose direct IO); normal files need it.
        odirect = not server.direct_io
    short = {"read": "r", "write": "w", "randread": "rr", "randwrite": "rw"}[op]
    wid = (f"fio-{'uring' if engine == 'io_uring' else 'aio'}-{short}-{bs}-qd{iodepth}-j{numjobs}"
           + ("-ext" if extend else "")
           + ("-dio" if server.direct_io else "-file")
           + (f"-lat{server.latency_us}" if server.latency_us else "-tmpfs"))
    label = (f"{engine} {op} {bs} qd{iodepth}" + (f" x{numjobs} jobs" if numjobs > 1 else "")
             + (" extending" if extend else ""))
    if group is None:
        group = f"fio direct={1 if odirect else 0}, " + server.describe()
    if extend:
        size_mb = 512 // numjobs     # per job; stops at runtime or size
    return Workload(id=wid, group=group, label=label, tool="fio", op=op,
                    server=server, odirect=odirect, engine=engine, bs=bs,
                    iodepth=iodepth, numjobs=numjobs, extend=extend,
                    size_mb=size_mb, quick=quick)


def _model(group, server, twin_server):
    """FOPEN_DIRECT_IO dd 2 MiB read and write (16 requests of 128 KiB per
    dd block) and extending libaio writes of 128 KiB at iodepth 16 (16
    requests per unit), at the latency of server, each with its twin on
    twin_server (zero latency) that gives the model's C."""
    rows, twins = [], []
    for op in ("read", "write"):
        dd = Workload(id=f"model-dd-{op}", group=group, label=f"dd {op} 2M", tool="dd",
                      op=op, server=server, size_mb=64)
        rows.append(dd)
        twins.append(replace(dd, id=f"model-c-dd-{op}", server=twin_server, size_mb=256))
    f = replace(_fio("libaio", "write", "128k", 16, server=server, extend=True, group=group),
                id="model-fio-ext-write", runtime=4)
    rows.append(f)
    twins.append(replace(f, id="model-c-fio-ext-write", server=twin_server))
    twin_group = group + ": zero-latency twins (the model's C)"
    return ([replace(r, model_k=16, model_unit_kib=2048, model_twin=t.id)
             for r, t in zip(rows, twins)]
            + [replace(t, group=twin_group) for t in twins])


def _threads(base, server, what):
    """base with another server thread configuration."""
    tag = f"t{server.threads}" + ("c" if server.clone_fd else "")
    return replace(base, id=f"{base.id}-{tag}", server=server,
                   group="server threads: " + what,
                   label=f"{base.label}, {server.threads} thr" + (" clone-fd" if server.clone_fd else ""),
                   quick=False)


def _transport(base_id, w, transport, group):
    """w on the given transport, in a group that holds both."""
    tr = "uring" if transport == "uring" else "dev"
    label = w.label + (", io_uring transport" if tr == "uring" else ", /dev/fuse")
    return replace(w, id=f"xport-{tr}-{base_id}", group=group, label=label,
                   server=replace(w.server, transport=transport), quick=False,
                   raw_run=tr == "dev")


def transport_rows():
    """FUSE-over-io_uring (7.3's dev_uring.c) against /dev/fuse: the
    FOPEN_DIRECT_IO dd, fio 4k randread qd32 and extending-write workloads
    at tmpfs speed and at 1 ms, and the seed-004 row (1 MiB O_DIRECT reads
    of a normal file, 1 and 4 jobs) at tmpfs speed."""
    out = []
    for server, size in ((DIO, 256), (DIO_LAT1, 64)):
        lat = f"lat {server.latency_us} us" if server.latency_us else "tmpfs"
        group = f"transport: /dev/fuse vs io_uring, FOPEN_DIRECT_IO, {lat}"
        tag = f"lat{server.latency_us}" if server.latency_us else "tmpfs"
        base = [Workload(id=f"dd-read-{tag}", group=group, label="dd read 2M", tool="dd",
                         op="read", server=server, size_mb=size),
                Workload(id=f"dd-write-{tag}", group=group, label="dd write 2M", tool="dd",
                         op="write", server=server, size_mb=size),
                replace(_fio("libaio", "randread", "4k", 32, server=server), id=f"rr4k-qd32-{tag}"),
                replace(_fio("libaio", "write", "1M", 32, server=server, extend=True),
                        id=f"ext1m-qd32-{tag}")]
        for b in base:
            out += [_transport(b.id, b, t, group) for t in ("dev", "uring")]
    group = "transport: seed 004, fio read 1M direct=1, normal files, tmpfs"
    for jobs in (1, 4):
        b = replace(_fio("libaio", "read", "1M", 1, numjobs=jobs, server=TMPFS),
                    id=f"seed004-read1m-j{jobs}")
        out += [_transport(b.id, b, t, group) for t in ("dev", "uring")]
    return out


def has_uring_transport(base):
    """FUSE-over-io_uring is in Linux 6.14 and later."""
    major, minor = (int(x) for x in base.split(".")[:2])
    return (major, minor) >= (6, 14)


def matrix(base="7.3"):
    w = []
    # 1. the 2012 commands, exactly, on normal files (no FOPEN_DIRECT_IO)
    w += _2012("2012", "2012 commands, normal files, tmpfs", TMPFS, quick=("aio-write",))
    # 2. the same on FOPEN_DIRECT_IO files: sync dd is serial in 6.12
    w += _2012("dio", "2012 commands, FOPEN_DIRECT_IO, tmpfs", DIO, quick=("dd-read",))
    # 4. latency backend (network storage stand-in), 128 MiB and 32 MiB
    w += _2012("dio-lat1k", "2012 commands (128 MiB), FOPEN_DIRECT_IO, lat 1000 us", DIO_LAT1,
               size_mb=128, which="dd-read dd-write", quick=("dd-write",))
    #    FOPEN_DIRECT_IO files opened without O_DIRECT (the usual case)
    w += _2012("dio-buf-lat1k", "2012 commands (128 MiB) without O_DIRECT, FOPEN_DIRECT_IO, lat 1000 us",
               DIO_LAT1, size_mb=128, odirect=False, which="aio-read aio-write")
    # 5. the latency model: 10 ms, max_background 32, 128 KiB requests
    w += _model("latency model: FOPEN_DIRECT_IO, lat 10000 us, max_bg 32",
                DIO_LAT10_BG32, DIO_BG32)
    # 3. fio, libaio and io_uring (FOPEN_DIRECT_IO files without O_DIRECT,
    #    normal files with it)
    w += [
        _fio("libaio", "randread", "4k", 32, quick=True),
        _fio("libaio", "randwrite", "4k", 32),
        _fio("io_uring", "randread", "4k", 32),
        _fio("libaio", "randread", "4k", 1, numjobs=4),
        _fio("libaio", "read", "1M", 1),
        _fio("libaio", "write", "1M", 32, extend=True),
        _fio("io_uring", "write", "1M", 32, numjobs=4, extend=True, quick=True),
        _fio("libaio", "read", "1M", 32, numjobs=4, server=DIO),
        _fio("io_uring", "randwrite", "4k", 32, numjobs=4, server=DIO),
        _fio("libaio", "write", "1M", 32, server=LAT1, extend=True),
    ]
    # 6. io_uring inline issue (patches 12-13): the same io_uring jobs on
    #    FOPEN_DIRECT_IO files (direct=0) and O_DIRECT on normal files, at
    #    tmpfs speed where the submitter's CPU time shows
    for server in (DIO, TMPFS):
        group = ("io_uring inline issue (NOWAIT), "
                 + ("FOPEN_DIRECT_IO, direct=0" if server.direct_io else "normal files, direct=1")
                 + ", tmpfs")
        w += [replace(_fio("io_uring", op, bs, qd, server=server, group=group), count_iowq=True,
                      id=_fio("io_uring", op, bs, qd, server=server).id + "-nw", runtime=4)
              for op, bs, qd in (("randread", "4k", 32), ("randwrite", "4k", 32),
                                 ("read", "1M", 8), ("write", "1M", 8))]
        if server.direct_io:
            # the reads again into buffers already faulted in: under
            # IOCB_NOWAIT patch 12 pins pages without faulting them in, so
            # a never-touched buffer page costs one IO on an io-wq worker
            w += [replace(x, id=x.id + "-touched", touch_buffers=True,
                          label=x.label + ", buffers written first")
                  for x in w[-4:] if x.op.endswith("read")]
    # 4. server threads 1 / 4 / 8, with and without --clone-fd
    dd = next(x for x in w if x.id == "dio-dd-read")
    w += [_threads(dd, replace(DIO, threads=t, clone_fd=c), "sync dd read, FOPEN_DIRECT_IO, tmpfs")
          for t, c in ((1, False), (8, False), (4, True), (8, True))]
    rr = next(x for x in w if x.id == "fio-aio-rr-4k-qd32-j1-dio-lat1000")
    w += [_threads(rr, replace(DIO_LAT1, threads=t, clone_fd=c),
                   "libaio randread 4k qd32, FOPEN_DIRECT_IO, lat 1000 us")
          for t, c in ((1, False), (8, True))]
    # 7. the FUSE-over-io_uring transport against /dev/fuse
    if has_uring_transport(base):
        w += transport_rows()
    ids = [x.id for x in w]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate workload ids: {dup}"
    assert all(x.model_twin in ids for x in w if x.model_twin), "model twin missing"
    return w


def from_dict(d):
    """A Workload back from Workload.to_dict() (the plan file)."""
    d = dict(d)
    d.pop("server_desc", None)
    d.pop("server_argv", None)
    d["server"] = Server(**d["server"])
    return Workload(**d)


def select(workloads, quick=False, only=None):
    """The workloads to run: QUICK ones, and/or those whose id matches the
    regular expression only."""
    import re
    out = [w for w in workloads if w.quick or not quick]
    if only:
        rx = re.compile(only)
        out = [w for w in out if rx.search(w.id)]
    # a model row needs its twin in the same guests
    ids = {w.id for w in out}
    need = {w.model_twin for w in out if w.model_twin} - ids
    return [w for w in workloads if w in out or w.id in need]
