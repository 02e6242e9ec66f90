"""PNG chart of the results with gnuplot: MB/s of stock and patched
(median, min-max bars) and the raw tmpfs figure per workload, log scale, and
below it the patched/stock ratio."""

import os
import subprocess
import tempfile


def _row(i, e):
    def trio(v):
        s = e[v]["mbps"]
        return (s["median"], s["min"], s["max"]) if s else ("NaN",) * 3
    raw = e["raw"]["mbps"]["median"] if e["raw"]["mbps"] else "NaN"
    return " ".join(str(x) for x in (i, *trio("stock"), *trio("patched"), raw,
                                      e["ratio"] if e["ratio"] else "NaN", f'"{e["id"]}"'))


def png(res, path, title):
    ws = res["workloads"]
    n = len(ws)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        with open(data, "w") as f:
            for i, e in enumerate(ws):
                f.write(_row(i, e) + "\n")
        width = max(1000, 30 * n + 200)
        script = f"""
set terminal pngcairo size {width},1000 font "sans,10" background rgb "white" noenhanced
set output "{path}"
set multiplot layout 2,1 title "{title}" font ",12"
set lmargin 10
set rmargin 2
set xrange [-0.7:{n - 0.3}]
set grid ytics
set key top left horizontal
set style fill solid 0.8 border -1
set boxwidth 0.35
set logscale y
set ylabel "MB/s (median, min-max)"
set format x ""
set xtics 1
set bmargin 1
plot "{data}" using ($1-0.18):2:3:4:(0.175) with boxerrorbars lc rgb "#8c8c8c" title "stock", \\
     "" using ($1+0.18):5:6:7:(0.175) with boxerrorbars lc rgb "#1f6fb4" title "patched", \\
     "" using 1:8 with points pt 7 ps 0.6 lc rgb "#d62728" title "raw tmpfs, same command"
unset logscale y
set logscale y 2
set ylabel "patched / stock"
set format x "%s"
set xtics rotate by 60 right font ",9" nomirror
set bmargin 18
set boxwidth 0.6
set key off
plot "{data}" using 1:9:xtic(10) with boxes lc rgb "#1f6fb4", \\
     1 with lines lc rgb "black" dt 2
unset multiplot
"""
        r = subprocess.run(["gnuplot"], input=script, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            raise RuntimeError(f"gnuplot failed: {r.stdout.strip()[-800:]}")
