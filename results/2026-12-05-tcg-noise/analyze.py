#!/usr/bin/env python3
"""Noise figures of bench runs (runs.jsonl, or a result JSON's runs).

  analyze.py RUNS                 per-repetition log sd of patched/stock,
                                  rows under 0.95x / over 1.05x (ratio of
                                  medians), the raw column's scatter
  analyze.py RUNS --probe LOG     and each run's speed against the
                                  host-noise windows measured during it
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


def noise(runs):
    by = {}
    for r in runs:
        by.setdefault(r["workload"], {}).setdefault(r["variant"], {}).setdefault(r["rep"], []).append(r["mbps"])
    logs, under, over, rows = [], 0, 0, 0
    for w, v in by.items():
        s, p = v.get("stock", {}), v.get("patched", {})
        reps = sorted(set(s) & set(p))
        if not reps:
            continue
        rows += 1
        sm = {k: st.median(s[k]) for k in reps}
        pm = {k: st.median(p[k]) for k in reps}
        logs += [math.log(pm[k] / sm[k]) for k in reps]
        ratio = st.median(pm.values()) / st.median(sm.values())
        under += ratio < 0.95
        over += ratio > 1.05
    print(f"{rows} rows, {len(logs)} repetition pairs: per-repetition log sd of patched/stock "
          f"{st.pstdev(logs):.3f}; ratio of medians under 0.95x: {under}, over 1.05x: {over}")
    for col in ("raw", "stock", "patched"):
        sds = [st.pstdev([math.log(x) for xs in v[col].values() for x in xs])
               for v in by.values() if len(v.get(col, {})) > 1]
        if sds:
            print(f"  {col:8s} runs of a row across repetitions: pooled log sd "
                  f"{math.sqrt(sum(x * x for x in sds) / len(sds)):.3f} ({len(sds)} rows)")


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
    base = {}
    for r in runs:
        base.setdefault((r["workload"], r["variant"]), []).append(r["mbps"])
    base = {k: st.median(v) for k, v in base.items()}
    for name, samples in probe.items():
        med = st.median(ms for _, ms in samples)
        pts = []
        for r in runs:
            if "time" not in r:
                raise SystemExit("--probe needs the runs.jsonl of the run (times of each run)")
            # the tool ran in the last `seconds` of the run's duration
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
    a = ap.parse_args()
    runs = load_runs(a.runs)
    noise(runs)
    if a.probe:
        against_probe(runs, a.probe)


if __name__ == "__main__":
    main()
