#!/usr/bin/env python3
"""bench.py - the Python half of scripts/bench (which is the entry point).

  bench.py list [--quick] [--only RX] [--base B]   the workloads, one a line
  bench.py plan --out FILE --reps N --module VARIANT=KO ... [--quick]
                [--pairs N] [--only RX] [--base B] [--meta KEY=VALUE ...]
  bench.py guest --plan FILE --rep K --runs FILE   (inside the guest)
  bench.py report --plan FILE --runs FILE [--json F] [--png F] [--text F]
                                               Markdown table on stdout;
                                               exit 1 if any run failed
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import workloads as wl  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cmd_list(a):
    for w in wl.select(wl.matrix(a.base), a.quick, a.only):
        print(f"{w.id:44} {w.label:36} {w.server.describe()}")


def build_id(ko):
    out = subprocess.run(["readelf", "-n", ko], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split()[-1]
    sys.exit(f"bench.py: {ko} has no build-id note")


def meta_pairs(items):
    """--meta KEY=VALUE arguments as a dict."""
    out = {}
    for kv in items:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            sys.exit(f"bench.py: --meta takes KEY=VALUE, not {kv!r}")
        out[k] = v
    return out


def cmd_plan(a):
    ws = wl.select(wl.matrix(a.base), a.quick, a.only)
    if not ws:
        sys.exit(f"bench.py: no workload matches --only {a.only!r} (see scripts/bench --list)")
    mods = {}
    for m in a.module:
        v, _, ko = m.partition("=")
        if v not in ("stock", "patched") or not ko:
            sys.exit(f"bench.py: --module takes stock=KO or patched=KO, not {m!r}")
        ko = os.path.abspath(ko)
        mods[v] = {"path": ko, "build_id": build_id(ko)}
    if set(mods) != {"stock", "patched"}:
        sys.exit("bench.py: plan needs --module stock=KO and --module patched=KO")
    meta = meta_pairs(a.meta)
    plan = {"top": TOP, "reps": a.reps, "pairs": a.pairs, "quick": a.quick, "modules": mods, "meta": meta,
            "workloads": [w.to_dict() for w in ws]}
    with open(a.out, "w") as f:
        json.dump(plan, f, indent=1)
    print(len(ws))


def cmd_guest(a):
    from benchlib import guest
    return guest.main(["--plan", a.plan, "--rep", str(a.rep), "--runs", a.runs])


def cmd_report(a):
    from benchlib import chart, report
    with open(a.plan) as f:
        plan = json.load(f)
    plan["meta"].update(meta_pairs(a.meta))
    runs, meta = report.load_runs(a.runs) if os.path.exists(a.runs) else ([], [])
    res = report.aggregate(plan, runs, meta)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    if a.text:
        with open(a.text, "w") as f:
            f.write(report.text(res))
    rc = 0
    ok = sum(1 for r in runs if r.get("ok"))
    if a.png and ok:
        m = plan["meta"]
        title = (f"fuse.ko stock vs patched: {m.get('kernel', '?')}, {m.get('machine', '')}, "
                 f"{plan['reps']} rep(s)"
                 + (f" x {plan['pairs']} pairs" if plan.get("pairs", 1) > 1 else ""))
        try:
            chart.png(res, a.png, title)
        except (OSError, RuntimeError) as e:
            print(f"bench: no chart: {e}", file=sys.stderr)
            rc = 1
    elif a.png:
        print("bench: no chart: no run succeeded", file=sys.stderr)
    sys.stdout.write(report.markdown(res))
    # stock and patched, and the tmpfs ceiling where the workload has one
    expected = sum(2 * plan.get("pairs", 1) + d.get("raw_run", True)
                   for d in plan["workloads"]) * plan["reps"]
    if res["failures"] or ok != expected:
        print(f"\nbench: {ok} of {expected} runs succeeded; failed: "
              + ("" if runs else "none recorded (did the guests start?)")
              + "; ".join(f"{f['workload']} [{f['variant']}] rep {f['rep']}: {f['error']}"
                          for f in res["failures"][:10]), file=sys.stderr)
        rc = 1
    # the summary line make check adds up (a run is one test)
    print(f"\n{ok} passed, {expected - ok} failed")
    return rc


def main():
    ap = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only")
    p.add_argument("--base", default="7.3", help="kernel base: 6.12 has no io_uring transport rows")
    p = sub.add_parser("plan")
    p.add_argument("--base", default="7.3")
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, required=True)
    p.add_argument("--pairs", type=int, default=1,
                   help="stock/patched pairs of runs per workload and guest")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only")
    p.add_argument("--module", action="append", default=[])
    p.add_argument("--meta", action="append", default=[])
    p = sub.add_parser("guest")
    p.add_argument("--plan", required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--runs", required=True)
    p = sub.add_parser("report")
    p.add_argument("--plan", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--json")
    p.add_argument("--png")
    p.add_argument("--text")
    p.add_argument("--meta", action="append", default=[],
                   help="KEY=VALUE added to the plan's meta (measured after the guests)")
    a = ap.parse_args()
    return {"list": cmd_list, "plan": cmd_plan, "guest": cmd_guest,
            "report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
