#!/usr/bin/env python3
"""Noise figures of bench runs (runs.jsonl, or a result JSON's runs).

  analyze.py RUNS                 per-repetition log sd of patched/stock,
                                  rows under 0.95x / over 1.05x (ratio of
                                  medians), the raw column's scatter
  analyze.py RUNS --probe LOG     and each run's speed against the
                                  host-noise windows measured during it
  analyze.py RUNS --rows          per row: patched/stock of the medians and
                                  the per-repetition ratios, lowest first
"""
import argparse
import json
import math
import statistics as st


def load_runs(path):
    """Runs from a runs.jsonl, or (MB/s and repetition only) from a result JSON."""
    with open(path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "workloads" in doc:
        runs = []
        for w in doc["workloads"]:
            for v in ("raw", "stock", "patched"):
                col = w.get(v) or {}
                for rep, mbps in zip(col.get("reps", []), col.get("mbps", {}).get("values", [])):
                    runs.append({"type": "run", "ok": True, "workload": w["id"], "variant": v,
                                 "rep": rep, "mbps": mbps})
        return runs
    runs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in runs if r.get("type") == "run" and r.get("ok")]


def by_row(runs):
    """workload -> variant -> repetition -> [MB/s of its runs]"""
    by = {}
    for r in runs:
        by.setdefault(r["workload"], {}).setdefault(r["variant"], {}).setdefault(r["rep"], []).append(r["mbps"])
    return by


def row_ratios(by):
    """Per row: (patched/stock of the medians, workload, per-repetition ratios),
    a repetition's figure being the median of its runs."""
    rows = []
    for w, v in by.items():
        s = {k: st.median(x) for k, x in v.get("stock", {}).items()}
        p = {k: st.median(x) for k, x in v.get("patched", {}).items()}
        reps = sorted(set(s) & set(p))
        if reps:
            rows.append((st.median(p[k] for k in reps) / st.median(s[k] for k in reps), w,
                         [p[k] / s[k] for k in reps]))
    return rows


def noise(runs):
    by = by_row(runs)
    rows = row_ratios(by)
    logs = [math.log(x) for _, _, per in rows for x in per]
    row_logs = [math.log(ratio) for ratio, _, _ in rows]
    under = sum(ratio < 0.95 for ratio, _, _ in rows)
    over = sum(ratio > 1.05 for ratio, _, _ in rows)
    n = len(logs)
    # 95% interval of a standard deviation from n values (normal approximation)
    lo, hi = 1 / (1 + 1.96 / math.sqrt(2 * (n - 1))), 1 / (1 - 1.96 / math.sqrt(2 * (n - 1)))
    print(f"{len(rows)} rows, {n} repetition pairs: per-repetition log sd of patched/stock "
          f"{st.pstdev(logs):.3f} (95% interval {st.pstdev(logs) * lo:.3f}-{st.pstdev(logs) * hi:.3f}); "
          f"ratio of medians: under 0.95x {under}, over 1.05x {over}, log sd across rows "
          f"{st.pstdev(row_logs):.3f}")
    for col in ("raw", "stock", "patched"):
        sds = [st.pstdev([math.log(x) for xs in v[col].values() for x in xs])
               for v in by.values() if len(v.get(col, {})) > 1]
        if sds:
            print(f"  {col:8s} runs of a row across repetitions: pooled log sd "
                  f"{math.sqrt(sum(x * x for x in sds) / len(sds)):.3f} ({len(sds)} rows)")


def per_row(runs):
    print(f"{'row':46s} {'n':>3s} {'ratio':>6s}  per repetition (patched/stock)")
    for ratio, w, per in sorted(row_ratios(by_row(runs))):
        print(f"{w:46s} {len(per):3d} {ratio:6.3f}  [{' '.join(f'{x:.3f}' for x in per)}]")


def rank(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0] * len(xs)
    for j, i in enumerate(order):
        r[i] = j
    return r


def spearman(a, b):
    ra, rb = rank(a), rank(b)
    ma, mb = st.mean(ra), st.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def against_probe(runs, path):
    probe = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                probe.setdefault(parts[1], []).append((float(parts[0]), float(parts[2])))
    if any("time" not in r for r in runs):
        raise SystemExit("--probe needs the runs.jsonl of the run (times of each run)")
    # only the windows taken while the bench ran; the runs' times are the
    # guest's clock (set from the emulated RTC at boot: within about 1 s
    # of the host's)
    t0 = min(r["time"] for r in runs)
    t1 = max(r["time"] + r["duration"] for r in runs)
    probe = {k: [(t, ms) for t, ms in v if t0 <= t <= t1] for k, v in probe.items()}
    base = {}
    for r in runs:
        base.setdefault((r["workload"], r["variant"]), []).append(r["mbps"])
    base = {k: st.median(v) for k, v in base.items()}
    for name, samples in probe.items():
        if not samples:
            print(f"{name}: no window while the bench ran")
            continue
        med = st.median(ms for _, ms in samples)
        q = sorted(ms for _, ms in samples)
        print(f"{name}: {len(q)} windows while the bench ran, p95/p5 "
              f"{q[round(0.95 * (len(q) - 1))] / q[round(0.05 * (len(q) - 1))]:.2f}")
        pts = []
        for r in runs:
            # the tool ran in the last `seconds` of the run's duration, give
            # or take the server's stop and an unmount after it (0.5 s)
            end = r["time"] + r["duration"]
            inside = [ms for t, ms in samples if end - r["seconds"] - 0.5 <= t <= end]
            if inside:
                pts.append((math.log(st.mean(inside) / med),
                            math.log(r["mbps"] / base[(r["workload"], r["variant"])])))
        if len(pts) < 6:
            print(f"{name}: only {len(pts)} runs with a sample")
            continue
        pts.sort()
        k = len(pts) // 3
        fast = st.median(math.exp(y) for _, y in pts[:k])
        slow = st.median(math.exp(y) for _, y in pts[-k:])
        print(f"{name}: {len(pts)} runs with a sample; Spearman (probe time, run speed) "
              f"{spearman([x for x, _ in pts], [y for _, y in pts]):+.2f}; run speed over its "
              f"row's median: {fast:.3f} in the third of runs with the fastest probe, {slow:.3f} "
              f"in the slowest third; probe time {math.exp(pts[0][0]):.2f}-{math.exp(pts[-1][0]):.2f}x its median")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs")
    ap.add_argument("--probe")
    ap.add_argument("--rows", action="store_true")
    a = ap.parse_args()
    runs = load_runs(a.runs)
    if a.rows:
        per_row(runs)
        return
    noise(runs)
    if a.probe:
        against_probe(runs, a.probe)


if __name__ == "__main__":
    main()
