"""The guest side of the benchmark: one repetition of every workload.

For each workload: the raw tmpfs ceiling, then the two modules in turn
(stock, patched or patched, stock; the order alternates per workload and
per repetition, so that consecutive workloads share a module and the
module is reloaded exactly when the variant changes).  With the plan's
"pairs" N above 1 each module runs N times, in the order A B B A A B ...,
which cancels a drift of the guest's speed within the workload.  Each run gets a
fresh tmpfs, a freshly laid out file, dropped caches and a new server;
each writes one JSON line to the runs file as soon as it is done.
"""

import json
import os
import subprocess
import sys
import threading
import time

from . import commands, parse
from .workloads import Server as ServerOpts, from_dict

BASE = "/tmp/bench"
SRC = BASE + "/src"
MNT = BASE + "/mnt"
FUSECTL = "/sys/fs/fuse/connections"
BOOT_OVERHEAD_S = 15          # for the ETA: a guest boot and shutdown


class RunError(Exception):
    pass


def sh(*argv, check=True, timeout=60):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if check and r.returncode:
        raise RunError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout.strip()[-400:]}")
    return r


def mounted(path, fstype_prefix=""):
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if mnt == path and fstype.startswith(fstype_prefix):
                return True
    return False


def fuse_mounts():
    with open("/proc/self/mounts") as f:
        return [l.split()[1] for l in f if l.split()[2].startswith("fuse") and
                l.split()[2] != "fusectl"]


def abort_connections():
    try:
        conns = os.listdir(FUSECTL)
    except OSError:
        return
    for c in conns:
        try:
            with open(os.path.join(FUSECTL, c, "abort"), "w") as f:
                f.write("1")
        except OSError:
            pass


def loaded_build_id():
    try:
        with open("/sys/module/fuse/notes/.note.gnu.build-id", "rb") as f:
            return f.read().hex()
    except OSError:
        return ""


class Modules:
    """Which fuse.ko is loaded, and swapping it."""

    def __init__(self, modules):
        self.modules = modules           # variant -> {"path", "build_id"}
        self.loaded = None               # the variant this guest inserted

    def current(self):
        """The loaded variant: the one inserted last, or until then the
        one whose build-id the module at boot has.  The two variants may
        be one module (scripts/bench --upto 0:0, an A/A run), which is
        still reloaded between them, as any other pair."""
        got = loaded_build_id()
        if self.loaded:
            return self.loaded if got and got.endswith(self.modules[self.loaded]["build_id"]) else None
        for v, m in self.modules.items():
            if got and got.endswith(m["build_id"]):
                return v
        return None

    def load(self, variant, top, logdir):
        if self.current() == variant:
            return
        left = fuse_mounts()
        if left:
            raise RunError(f"cannot reload fuse.ko: FUSE mounts left: {left}")
        if mounted(FUSECTL):
            sh("umount", FUSECTL)
        if os.path.exists("/sys/module/fuse"):
            sh("rmmod", "fuse")
        m = self.modules[variant]
        sh("insmod", m["path"])
        self.loaded = variant
        if self.current() != variant:
            raise RunError(f"/sys/module/fuse is not {m['path']} after insmod "
                           f"(build-id {loaded_build_id()}, expected {m['build_id']})")
        sh("mount", "-t", "fusectl", "fusectl", FUSECTL, check=False)
        enable_uring_transport()
        warm_up(top, logdir)


WARM_UP_MB = 64
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def enable_uring_transport():
    """FUSE-over-io_uring on (7.3): a /dev/fuse server that does not ask
    for it at INIT is served as before, so every row may run with it on."""
    if os.path.exists(URING_PARAM):
        with open(URING_PARAM, "w") as f:
            f.write("Y")


def warm_up(top, logdir):
    """Untimed direct IO through a new module, normal and FOPEN_DIRECT_IO.

    Under TCG the first pass over freshly loaded module code (and the
    first run of each tool in a new guest) is translated on the fly: in
    trials the first run after a reload was up to 2x slower than the next
    ones, whichever module it was.  One pass of dd write and read on each
    open mode makes the timed runs start warm.
    """
    os.makedirs(logdir, exist_ok=True)
    variants = [ServerOpts(), ServerOpts(direct_io=True)]
    if os.path.exists(URING_PARAM):
        variants.append(ServerOpts(direct_io=True, transport="uring"))
    for opts in variants:
        os.makedirs(SRC, exist_ok=True)
        os.makedirs(MNT, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", f"size={WARM_UP_MB + 64}m", "tmpfs", SRC)
        try:
            srv = Server(top, opts, logdir)
            try:
                f = os.path.join(MNT, "warm")
                sh("dd", "if=/dev/zero", f"of={f}", "bs=2M", f"count={WARM_UP_MB // 2}",
                   "oflag=direct", "status=none")
                sh("dd", f"if={f}", "of=/dev/null", "bs=2M", "iflag=direct", "status=none")
            finally:
                srv.stop()
        finally:
            sh("umount", SRC)


def fresh_backing(w):
    """A new tmpfs at SRC with the workload's file laid out.

    No drop_caches: under TCG it made runs slow at random (latency-model
    dd read, 12 runs in one guest: 76-149 MB/s with it, 131-153
    without; the slow runs' time is page clearing in faults).  It frees
    page-cache frames holding code qemu has translated, and qemu takes a
    slow path for stores to such a frame until it has invalidated the
    translations.  The binaries also stay cached from the warm-up on, so
    no timed run reads them over 9p.
    """
    for d in (SRC, MNT):
        os.makedirs(d, exist_ok=True)
    if mounted(SRC):
        sh("umount", SRC)
    sh("mount", "-t", "tmpfs", "-o", "size=1700m,huge=never", "tmpfs", SRC)
    mb = commands.file_prep(w)
    if mb:
        sh("fallocate", "-l", f"{mb}M", os.path.join(SRC, "file"))
    sh("sync")


class Server:
    def __init__(self, top, server, logdir):
        self.stats_path = os.path.join(BASE, "stats.json")
        self.log_path = os.path.join(logdir, "server.log")
        try:
            os.unlink(self.stats_path)
        except FileNotFoundError:
            pass
        argv = [os.path.join(top, "userspace-server/passthrough"), "-f",
                *server.argv(), "--stats", self.stats_path, SRC, MNT]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not mounted(MNT, "fuse"):
            if self.proc.poll() is not None:
                raise RunError(f"passthrough exited with {self.proc.returncode} before mounting: "
                               + open(self.log_path).read().strip()[-400:])
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RunError("passthrough did not mount within 20 s")
            time.sleep(0.05)

    def stop(self):
        """Unmount, wait for the server, return its stats."""
        for _ in range(20):
            if not mounted(MNT, "fuse") or sh("umount", MNT, check=False).returncode == 0:
                break
            time.sleep(0.25)
        else:
            abort_connections()
            sh("umount", "-l", MNT, check=False)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RunError("passthrough did not exit after the unmount")
        finally:
            self.log.close()
        if self.proc.returncode != 0:
            raise RunError(f"passthrough exited with {self.proc.returncode}: "
                           + open(self.log_path).read().strip()[-400:])
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"no server stats: {e}") from None


def cpu_busy_s():
    """The guest's CPU time so far, all CPUs, not idle, iowait or steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def major_faults():
    """Major page faults of the whole guest so far: with the 9p root, reads
    from the host (an icount guest waiting for one idle has its clock moved
    on to the next timer, see bench/README.md)."""
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("pgmajfault "):
                return int(line.split()[1])
    return 0


def task_cpu_s(pid):
    """utime + stime of a process (all its threads), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class IowqCounter(threading.Thread):
    """Counts the io_uring io-wq workers (threads named iou-wrk-*) of one
    process every 50 ms: the most at once, how many different ones and
    their CPU time (as last seen)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.most = pid, 0
        self.ticks = {}                 # tid -> utime + stime, last seen
        self.done = threading.Event()

    def run(self):
        task = f"/proc/{self.pid}/task"
        while not self.done.wait(0.05):
            try:
                tids = os.listdir(task)
            except OSError:
                return
            now = 0
            for t in tids:
                try:
                    with open(f"{task}/{t}/comm") as f:
                        if not f.read().startswith("iou-wrk-"):
                            continue
                    with open(f"{task}/{t}/stat") as f:
                        st = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                now += 1
                self.ticks[t] = int(st[11]) + int(st[12])
            self.most = max(self.most, now)


def run_tool(w, d, top, logdir, server_pid=None, prefix=()):
    """Run the workload's tool in directory d and parse its result.
    prefix: a command to run the tool under (e.g. perf record ... --);
    io-wq workers are then not counted (they would be the prefix's)."""
    argv = [*prefix, *commands.argv(w, d, top)]
    t0 = time.monotonic()
    cpu0 = cpu_busy_s()
    majflt0 = major_faults()
    srv0 = task_cpu_s(server_pid) if server_pid else None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=d)
    iowq = IowqCounter(proc.pid) if w.count_iowq and not prefix else None
    if iowq:
        iowq.start()
    try:
        out = proc.communicate(timeout=w.timeout)[0]
    except subprocess.TimeoutExpired as e:
        proc.kill()
        abort_connections()
        proc.communicate()
        raise RunError(f"timed out after {w.timeout} s: {' '.join(argv)}") from e
    finally:
        if iowq:
            iowq.done.set()
            iowq.join()
    wall = time.monotonic() - t0
    cpu = cpu_busy_s() - cpu0
    majflt = major_faults() - majflt0
    srv1 = task_cpu_s(server_pid) if server_pid else None
    with open(os.path.join(logdir, "tool.log"), "w") as f:
        f.write(" ".join(argv) + "\n" + out)
    if proc.returncode:
        raise RunError(f"{w.tool} exited with {proc.returncode}: {out.strip()[-600:]}")
    try:
        res = parse.result(w.tool, out)
    except ValueError as e:
        raise RunError(f"{e}; output: {out.strip()[-600:]}") from None
    res["wall"] = round(wall, 3)
    # CPU time of the whole guest while the tool ran (fio's start and
    # stop included) and of the server process in it
    res["cpu_s"] = round(cpu, 3)
    res["majflt"] = majflt
    if srv0 is not None and srv1 is not None:
        res["server_cpu_s"] = round(srv1 - srv0, 3)
    if iowq:
        res["iowq_most"], res["iowq_seen"] = iowq.most, len(iowq.ticks)
        res["iowq_cpu_s"] = round(sum(iowq.ticks.values()) / os.sysconf("SC_CLK_TCK"), 3)
    return res


def one_run(w, variant, top, mods, logdir):
    os.makedirs(logdir, exist_ok=True)
    if variant != "raw":
        mods.load(variant, top, os.path.join(logdir, "warm-up"))
    fresh_backing(w)
    if variant == "raw":
        res = run_tool(w, SRC, top, logdir)
        res["server"] = None
    else:
        srv = Server(top, w.server, logdir)
        try:
            res = run_tool(w, MNT, top, logdir, srv.proc.pid)
        finally:
            stats = srv.stop()
        res["server"] = stats
    sh("umount", SRC)
    return res


def fmt_eta(s):
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Eta:
    """Remaining time from the durations of earlier runs: the same run in
    an earlier repetition if there is one, else the mean of all so far."""

    def __init__(self, prior, plan_len, reps, rep):
        self.by_key = {}
        self.all = []
        for r in prior:
            self.add(r)
        self.reps, self.rep, self.plan_len = reps, rep, plan_len

    def add(self, r):
        if r.get("type") == "run":
            self.by_key.setdefault((r["workload"], r["variant"]), r["duration"])
            self.all.append(r["duration"])

    def est(self, key):
        if key in self.by_key:
            return self.by_key[key]
        return sum(self.all) / len(self.all) if self.all else 10.0

    def remaining(self, todo_here, all_keys):
        t = sum(self.est(k) for k in todo_here)
        later = self.reps - self.rep
        return t + later * (sum(self.est(k) for k in all_keys) + BOOT_OVERHEAD_S)


def order(i, rep):
    return ("stock", "patched") if (i + rep) % 2 == 0 else ("patched", "stock")


def variants(i, rep, pairs):
    """Workload i's module runs in repetition rep: A B, B A, A B, ...
    (pairs of them).  An even number of pairs ends where it started, so then
    every workload of the repetition starts with the same module; an odd
    one ends with the other, so then the order alternates per workload:
    either way the next workload starts with the module already loaded."""
    a, b = order(i * pairs, rep)
    out = []
    for k in range(pairs):
        out += [a, b] if k % 2 == 0 else [b, a]
    return out


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="one repetition of the benchmark, in the guest")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--rep", type=int, required=True)
    ap.add_argument("--runs", required=True, help="JSON lines file to append to")
    a = ap.parse_args(argv)
    with open(a.plan) as f:
        plan = json.load(f)
    top = plan["top"]
    reps = plan["reps"]
    pairs = plan.get("pairs", 1)
    workloads = [from_dict(d) for d in plan["workloads"]]
    mods = Modules(plan["modules"])
    prior = []
    if os.path.exists(a.runs):
        with open(a.runs) as f:
            prior = [json.loads(l) for l in f if l.strip()]
    sched = []
    for i, w in enumerate(workloads):
        sched += [(w, "raw")] * w.raw_run + [(w, v) for v in variants(i, a.rep, pairs)]
    all_keys = [(w.id, v) for w, v in sched]
    eta = Eta(prior, len(sched), reps, a.rep)
    total = reps * len(sched)
    done = (a.rep - 1) * len(sched)
    logbase = os.path.join(os.path.dirname(os.path.abspath(a.runs)), f"rep{a.rep}")
    out = open(a.runs, "a")

    def emit(rec):
        out.write(json.dumps(rec, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())

    emit({"type": "meta", "rep": a.rep, "uname": os.uname().release,
          "cpus": os.cpu_count(), "mem_kb": int(open("/proc/meminfo").readline().split()[1]),
          "fio": sh("fio", "--version").stdout.strip(), "time": time.time()})
    # The first FUSE run of a guest is slow whatever the module (in trials
    # 90-110 MB/s where the same dd write later ran at 150-170, after a
    # warm-up through both open modes): run it once more, untimed, so that
    # the variant scheduled first is not penalised.
    w0, v0 = next((w, v) for w, v in sched if v != "raw")
    try:
        one_run(w0, v0, top, mods, os.path.join(logbase, "warm-up"))
    except (RunError, OSError, subprocess.SubprocessError) as e:
        print(f"bench-progress: rep {a.rep}/{reps} warm-up run of {w0.id} [{v0}] "
              f"FAILED: {str(e)[:300]}", flush=True)
        return 1
    failed = 0
    for n, (w, variant) in enumerate(sched):
        t0 = time.monotonic()
        rec = {"type": "run", "rep": a.rep, "workload": w.id, "variant": variant,
               "seq": n, "time": time.time()}
        try:
            res = one_run(w, variant, top, mods, os.path.join(logbase, f"{n:03d}-{w.id}-{variant}"))
            mbps = res["bytes"] / parse.MIB / res["seconds"]
            rec.update(ok=True, mbps=round(mbps, 2), iops=round(res["ios"] / res["seconds"], 1),
                       bytes=res["bytes"], ios=res["ios"], seconds=res["seconds"], wall=res["wall"],
                       server=res["server"],
                       **{k: res[k] for k in ("cpu_s", "majflt", "server_cpu_s", "iowq_most",
                                              "iowq_seen", "iowq_cpu_s", "fio_cpu_s", "slat_us")
                          if k in res})
        except (RunError, OSError, subprocess.SubprocessError) as e:
            failed += 1
            rec.update(ok=False, error=str(e))
            # leave a clean state for the next run
            abort_connections()
            for m in fuse_mounts():
                sh("umount", "-l", m, check=False)
            if mounted(SRC):
                sh("umount", "-l", SRC, check=False)
        rec["duration"] = round(time.monotonic() - t0, 2)
        emit(rec)
        eta.add(rec)
        done += 1
        rem = eta.remaining(all_keys[n + 1:], all_keys)
        if rec["ok"]:
            inflight = rec["server"]["max_inflight"] if rec["server"] else "-"
            what = f"{rec['mbps']:.1f} MB/s {rec['iops']:.0f} IOPS, max_inflight {inflight}"
            if "iowq_most" in rec:
                what += (f", {rec['cpu_s'] * 1e6 / max(rec['ios'], 1):.0f} us CPU/IO"
                         f", io-wq {rec['iowq_most']}")
        else:
            what = "FAILED: " + rec["error"][:300]
        print(f"bench-progress: rep {a.rep}/{reps} run {done}/{total} {w.id} [{variant}] "
              f"{what} ({rec['duration']:.1f} s) ETA {fmt_eta(rem)}", flush=True)
    out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
