"""Runs (JSON lines written by the guests) -> per-workload statistics,
the results JSON, the Markdown table and the plain-text table of the
cover letter."""

import json
import statistics

from .workloads import from_dict
from . import commands

VARIANTS = ("stock", "patched", "raw")


def load_runs(path):
    runs, meta = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            (meta if r.get("type") == "meta" else runs).append(r)
    return runs, meta


def summary(values):
    if not values:
        return None
    return {"median": round(statistics.median(values), 2), "min": min(values),
            "max": max(values), "n": len(values), "values": values}


def _per_rep(by_rep, f):
    """A repetition's value of f: the median of its runs (a guest runs each
    module once per workload, or --pairs times), in the order of the
    repetitions; repetitions where f has no value are left out."""
    out = []
    for rep in sorted(by_rep):
        vals = [x for x in (f(r) for r in by_rep[rep]) if x is not None]
        if vals:
            out.append(round(statistics.median(vals), 2))
    return out


def _per_io(key):
    def f(r):
        ios = r.get("ios") or r["iops"] * r["seconds"]
        return round(r[key] * 1e6 / ios, 2) if r.get(key) is not None and ios else None
    return f


# per-run figures besides MB/s and IOPS, where the run recorded them
_EXTRA = {
    "cpu_us_per_io": _per_io("cpu_s"),            # the whole guest's CPU time
    "server_cpu_us_per_io": _per_io("server_cpu_s"),
    "fio_cpu_us_per_io": _per_io("fio_cpu_s"),
    "slat_us": lambda r: r.get("slat_us"),
    "iowq_most": lambda r: r.get("iowq_most"),
    "iowq_seen": lambda r: r.get("iowq_seen"),
    "iowq_cpu_ms": lambda r: None if r.get("iowq_cpu_s") is None else r["iowq_cpu_s"] * 1e3,
}


def aggregate(plan, runs, meta):
    out = []
    failures = [r for r in runs if not r.get("ok")]
    for d in plan["workloads"]:
        w = from_dict(d)
        e = {"id": w.id, "group": w.group, "label": w.label, "tool": w.tool,
             "raw_run": w.raw_run,
             "server": w.server.describe(), "server_argv": w.server.argv(),
             "command": " ".join(commands.argv(w, "MNT", "."))}
        for v in VARIANTS:
            ok = [r for r in runs if r["workload"] == w.id and r["variant"] == v and r.get("ok")]
            by_rep = {}
            for r in ok:
                by_rep.setdefault(r["rep"], []).append(r)
            reps = sorted(by_rep)
            e[v] = {
                "mbps": summary(_per_rep(by_rep, lambda r: r["mbps"])),
                "iops": summary(_per_rep(by_rep, lambda r: r["iops"])),
                "reps": reps,
                "runs": len(ok),
                "failed": sum(1 for r in failures if r["workload"] == w.id and r["variant"] == v),
            }
            for key, f in _EXTRA.items():
                vals = _per_rep(by_rep, f)
                if vals:
                    e[v][key] = summary(vals)
            if v != "raw":
                e[v]["max_inflight"] = _per_rep(by_rep, lambda r: r["server"]["max_inflight"])
                e[v]["max_inflight_median"] = (statistics.median(e[v]["max_inflight"])
                                               if ok else None)
        s, p = e["stock"]["mbps"], e["patched"]["mbps"]
        e["ratio"] = round(p["median"] / s["median"], 3) if s and p and s["median"] else None
        # per repetition (paired A/B in the same guest): spread of the ratio
        pairs = []
        if s and p:
            sv = dict(zip(e["stock"]["reps"], s["values"]))
            pairs = [round(pv / sv[rep], 3) for rep, pv in zip(e["patched"]["reps"], p["values"])
                     if sv.get(rep)]
        e["ratio_per_rep"] = pairs
        out.append(e)
    by_id = {e["id"]: e for e in out}
    for d in plan["workloads"]:
        w = from_dict(d)
        if w.model_k and w.model_twin in by_id:
            by_id[w.id]["model"] = model(w, by_id[w.id], by_id[w.model_twin])
    return {"meta": {**plan["meta"], "guest": meta[0] if meta else None,
                     "reps": plan["reps"], "pairs": plan.get("pairs", 1),
                     "quick": plan["quick"]},
            "workloads": out,
            "failures": [{k: r.get(k) for k in ("rep", "workload", "variant", "error")}
                         for r in failures]}


def model(w, e, twin):
    """The row's limit from a latency model.  Per unit of model_unit_kib
    (one dd block, or one iodepth's worth of writes), with L the server's
    latency and C each module's time per unit at zero latency (the twin,
    same guests): the stock module sends the k requests of a unit one after
    the other, k * L + C_stock; the patched one all at once, L + C_patched.
    The limit of the ratio is the quotient; share is how much of it the
    medians reached."""
    unit = w.model_unit_kib / 1024          # MiB, as the MB/s figures
    lat = w.server.latency_us / 1e6
    c = {}
    for v in ("stock", "patched"):
        t = twin[v]["mbps"]
        if not t or not t["median"]:
            return None
        c[v] = unit / t["median"]
    lim_s = unit / (w.model_k * lat + c["stock"])
    lim_p = unit / (lat + c["patched"])
    m = {"k": w.model_k, "latency_ms": lat * 1e3, "unit_kib": w.model_unit_kib,
         "c_ms": {v: round(c[v] * 1e3, 2) for v in c},
         "limit_mbps": {"stock": round(lim_s, 2), "patched": round(lim_p, 2)},
         "limit_ratio": round(lim_p / lim_s, 2)}
    s, p = e["stock"]["mbps"], e["patched"]["mbps"]
    if s and p:
        m["share"] = {"stock": round(s["median"] / lim_s, 3),
                      "patched": round(p["median"] / lim_p, 3)}
        if e["ratio"]:
            m["ratio_share"] = round(e["ratio"] / m["limit_ratio"], 3)
    return m


def model_markdown(res):
    """The latency-model table ('' when no row has a model)."""
    rows = [e for e in res["workloads"] if e.get("model")]
    if not rows:
        return ""
    lines = ["", "**latency model** (per 2 MiB unit: stock k * L + C, patched L + C; "
             "C from the zero-latency twin in the same guests)", "",
             "| workload | L ms | k | C stock / patched ms | limit MB/s stock / patched "
             "| limit ratio | measured ratio | share of limit |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for e in rows:
        m = e["model"]
        ratio = f"{e['ratio']:.2f}" if e["ratio"] else "-"
        share = f"{m['ratio_share'] * 100:.0f}%" if m.get("ratio_share") else "-"
        lines.append(f"| {e['label']} | {m['latency_ms']:g} | {m['k']} "
                     f"| {_num(m['c_ms']['stock'])} / {_num(m['c_ms']['patched'])} "
                     f"| {_num(m['limit_mbps']['stock'])} / {_num(m['limit_mbps']['patched'])} "
                     f"| {m['limit_ratio']:.2f} | {ratio} | {share} |")
    return "\n".join(lines) + "\n"


def _iowq_rows(res):
    return [e for e in res["workloads"]
            if e["stock"].get("iowq_most") or e["patched"].get("iowq_most")]


def _med(e, v, key, fmt=None):
    x = e[v].get(key)
    if not x:
        return "-"
    return fmt(x["median"]) if fmt else _num(x["median"])


def nowait_markdown(res):
    """The io_uring table: IOPS, CPU time per IO, submission latency and
    io-wq workers ('' when no run counted io-wq workers)."""
    rows = _iowq_rows(res)
    if not rows:
        return ""

    def pair(e, key):
        return " / ".join(_num(e[v][key]["median"]) if e[v].get(key) else "-"
                          for v in ("stock", "patched"))

    def workers(e):
        return " / ".join(f"{e[v]['iowq_most']['median']:g} ({e[v]['iowq_most']['max']:g})"
                          if e[v].get("iowq_most") else "-" for v in ("stock", "patched"))

    lines = ["", "**io_uring: CPU time per IO and io-wq workers** (medians; guest CPU: all "
             "of the guest's non-idle time while fio ran, its start included, divided by the IOs; "
             "submit: fio's slat; io-wq: the most iou-wrk threads of fio's process at once, "
             "median (max) of the repetitions, and their CPU time), stock / patched", "",
             "| workload | group | IOPS | guest CPU us/IO | server CPU us/IO | fio CPU us/IO "
             "| submit us | io-wq workers | io-wq CPU ms |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for e in rows:
        lines.append(f"| {e['label']} | {e['group']} | {_iops(e)} | {pair(e, 'cpu_us_per_io')} "
                     f"| {pair(e, 'server_cpu_us_per_io')} | {pair(e, 'fio_cpu_us_per_io')} "
                     f"| {pair(e, 'slat_us')} | {workers(e)} | {pair(e, 'iowq_cpu_ms')} |")
    return "\n".join(lines) + "\n"


def _num(x):
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _mm(s):
    """median (min-max)"""
    if not s:
        return "FAIL"
    if s["n"] == 1:
        return _num(s["median"])
    return f"{_num(s['median'])} ({_num(s['min'])}-{_num(s['max'])})"


def _inflight(e):
    a, b = e["stock"].get("max_inflight_median"), e["patched"].get("max_inflight_median")
    return f"{'-' if a is None else f'{a:g}'} / {'-' if b is None else f'{b:g}'}"


def _iops(e):
    a, b = e["stock"]["iops"], e["patched"]["iops"]
    return f"{_num(a['median']) if a else '-'} / {_num(b['median']) if b else '-'}"


def markdown(res):
    lines = []
    group = None
    head = ("| workload | stock MB/s | patched MB/s | patched/stock | IOPS stock / patched "
            "| max in flight stock / patched | tmpfs MB/s |")
    for e in res["workloads"]:
        if e["group"] != group:
            group = e["group"]
            lines += ["", f"**{group}**", "", head, "|---|--:|--:|--:|--:|--:|--:|"]
        ratio = f"{e['ratio']:.2f}" if e["ratio"] else "-"
        lines.append(f"| {e['label']} | {_mm(e['stock']['mbps'])} | {_mm(e['patched']['mbps'])} "
                     f"| **{ratio}** | {_iops(e)} | {_inflight(e)} "
                     f"| {_raw(e)} |")
    return ("\n".join(lines).lstrip("\n") + "\n" + model_markdown(res) + nowait_markdown(res)
            + transport_markdown(res))


def _raw(e):
    if e["raw"]["mbps"]:
        return _num(e["raw"]["mbps"]["median"])
    return "FAIL" if e.get("raw_run", True) else "(above)"


def _ratio_mm(num, den):
    """Per-repetition ratios num/den of two rows' MB/s: median (min-max)."""
    if not num or not den:
        return "-"
    by_rep = dict(zip(den.get("reps", []), den.get("values", [])))
    vals = [v / by_rep[r] for r, v in zip(num.get("reps", []), num.get("values", []))
            if by_rep.get(r)]
    if not vals:
        return "-"
    return _mm(summary([round(v, 2) for v in vals]))


def transport_markdown(res):
    """The io_uring transport against /dev/fuse, per module, from the
    xport-uring-* rows and their xport-dev-* twins ('' without them)."""
    by_id = {e["id"]: e for e in res["workloads"]}
    rows = []
    for e in res["workloads"]:
        if not e["id"].startswith("xport-uring-"):
            continue
        d = by_id.get("xport-dev-" + e["id"][len("xport-uring-"):])
        if not d:
            continue
        cells = []
        for v in ("stock", "patched"):
            u, x = e[v]["mbps"], d[v]["mbps"]
            cells.append(f"{_num(x['median']) if x else '-'} / {_num(u['median']) if u else '-'}")
            cells.append(_ratio_mm(dict(u or {}, reps=e[v]["reps"]),
                                   dict(x or {}, reps=d[v]["reps"])))
        server = e["group"].split(", ", 1)[1] if ", " in e["group"] else e["group"]
        rows.append(f"| {d['label'].rsplit(', ', 1)[0]} ({server}) | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    return ("\n**FUSE-over-io_uring transport against /dev/fuse** (MB/s medians; "
            "uring/dev: median (min-max) of the per-repetition ratios)\n\n"
            "| workload | stock dev / uring MB/s | stock uring/dev | patched dev / uring MB/s "
            "| patched uring/dev |\n|---|--:|--:|--:|--:|\n" + "\n".join(rows) + "\n")


def text(res, width=40):
    """Fixed-width table for the cover letter: original / patched."""
    lines = []
    group = None
    for e in res["workloads"]:
        if e["group"] != group:
            group = e["group"]
            lines += ["", f"{group}:",
                      f"  {'':{width}} {'original / patched':>21}  ratio  in flight"]
        s, p = e["stock"]["mbps"], e["patched"]["mbps"]
        sp = f"{_num(s['median']) if s else 'FAIL':>9} / {_num(p['median']) if p else 'FAIL':<9}"
        ratio = f"{e['ratio']:.2f}" if e["ratio"] else "-"
        lines.append(f"  {e['label']:{width}} {sp}  {ratio:>5}  {_inflight(e)}")
        m = e.get("model")
        if m:
            share = f", {m['ratio_share'] * 100:.0f}% of it" if m.get("ratio_share") else ""
            lines.append(f"  {'':{width}} model limit {m['limit_ratio']:.2f}x{share}"
                         f" (C {_num(m['c_ms']['stock'])} / {_num(m['c_ms']['patched'])} ms)")
    rows = _iowq_rows(res)
    if rows:
        lines += ["", "io_uring, CPU time of the guest per IO and io-wq workers (most at once):",
                  f"  {'':{width}} {'IOPS':>15}  {'CPU us/IO':>13}  io-wq"]
        for e in rows:
            iops = f"{_med(e, 'stock', 'iops')} / {_med(e, 'patched', 'iops')}"
            cpu = f"{_med(e, 'stock', 'cpu_us_per_io')} / {_med(e, 'patched', 'cpu_us_per_io')}"
            wq = " / ".join(_med(e, v, "iowq_most", lambda x: f"{x:g}") for v in ("stock", "patched"))
            name = e["label"] + (" (dio)" if "FOPEN_DIRECT_IO" in e["group"] else " (O_DIRECT)")
            lines.append(f"  {name:{width}} {iops:>15}  {cpu:>13}  {wq}")
    return "\n".join(lines).lstrip("\n") + "\n"
