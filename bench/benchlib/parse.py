"""Throughput out of the tools' output.  Each parser returns
{"bytes": N, "seconds": S, "ios": N} or raises ValueError saying what it
did not find.  MB/s in this benchmark are MiB/s, as aio-stress prints
them."""

import json
import re

MIB = 1 << 20

_DD = re.compile(r"^(\d+) bytes .* copied, ([0-9.]+) s, ", re.M)
_AIO = re.compile(r"^(read|write|random read|random write) on \S+ \(([0-9.]+) MB/s\) "
                  r"([0-9.]+) MB in ([0-9.]+)s", re.M)


def dd(out, bs=2 * MIB):
    m = _DD.findall(out)
    if not m:
        raise ValueError("no 'bytes ... copied' line in dd's output")
    nbytes, secs = int(m[-1][0]), float(m[-1][1])
    return {"bytes": nbytes, "seconds": secs, "ios": nbytes // bs}


def aio_stress(out, record=64 * 1024):
    # "read on FILE (X MB/s) Y MB in Zs": first submit to last
    # completion, without the fsync that the thread totals include.
    m = _AIO.findall(out)
    if not m:
        raise ValueError("no 'read|write on FILE (X MB/s)' line in aio-stress's output")
    _, _, mb, secs = m[-1]
    nbytes = int(float(mb) * MIB)
    return {"bytes": nbytes, "seconds": float(secs), "ios": nbytes // record}


def fio(out):
    start = out.find("{")
    if start < 0:
        raise ValueError("no JSON in fio's output")
    try:
        doc = json.JSONDecoder().raw_decode(out[start:])[0]
    except json.JSONDecodeError as e:
        raise ValueError(f"fio's JSON does not parse: {e}") from None
    jobs = doc.get("jobs") or []
    if not jobs:
        raise ValueError("fio's JSON has no jobs")
    nbytes = ios = 0
    runtime_ms = 0
    cpu_s = slat_ns = 0.0
    for j in jobs:
        if j.get("error"):
            raise ValueError(f"fio job error {j['error']}")
        # usr_cpu and sys_cpu are percent of the job's run time
        cpu_s += (j.get("usr_cpu", 0) + j.get("sys_cpu", 0)) / 100 * j.get("job_runtime", 0) / 1000
        for d in ("read", "write"):
            s = j.get(d, {})
            nbytes += s.get("io_bytes", 0)
            ios += s.get("total_ios", 0)
            runtime_ms = max(runtime_ms, s.get("runtime", 0))
            # submission latency: the time io_uring_enter() / io_submit() took
            slat_ns += s.get("slat_ns", {}).get("mean", 0) * s.get("total_ios", 0)
    if runtime_ms <= 0 or nbytes <= 0:
        raise ValueError("fio moved no data")
    return {"bytes": nbytes, "seconds": runtime_ms / 1000.0, "ios": ios,
            "fio_cpu_s": round(cpu_s, 3), "slat_us": round(slat_ns / ios / 1000, 2) if ios else None}


def result(tool, out):
    return {"dd": dd, "aio-stress": aio_stress, "fio": fio}[tool](out)
