#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plots for shmring-bench: latency CDFs (one PNG per round-trip size) and throughput
against message size, from the benchmark's CSV and CDF files.

    shmring-bench --csv --cdf cdf.csv > results.csv
    bench/plot.py results.csv cdf.csv -o plots/

Uses matplotlib; if this interpreter lacks it, re-runs itself with another python3 that
has it (/usr/bin/python3, where Debian's python3-matplotlib lives); failing that, writes
gnuplot scripts and runs gnuplot if it is installed.
"""
import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
from collections import defaultdict

SIZE_NAMES = {3110400: "1080p NV12", 12441600: "4K NV12"}


def size_label(s):
    s = int(s)
    if s in SIZE_NAMES:
        return "%d B (%s)" % (s, SIZE_NAMES[s])
    if s >= 1024 and s % 1024 == 0:
        return "%d KiB" % (s // 1024)
    return "%d B" % s


def series_name(row):
    name = "%s %s" % (row["transport"], row["mode"])
    if row.get("placement") == "same":
        name += " same-CPU"
    if int(row.get("batch") or 1) > 1:
        name += " batch=%s" % row["batch"]
    p, c = int(row.get("producers") or 1), int(row.get("consumers") or 1)
    if p > 1 or c > 1:
        name += " p%dc%d" % (p, c)  # as in shmring-bench's test ids
    return name


RESULT_COLUMNS = ("test", "transport", "size", "mode", "ok", "p50_ns", "msgs_per_s",
                  "bytes_per_s")
CDF_COLUMNS = ("test", "transport", "size", "mode", "q", "ns")


def fail(msg):
    print("plot.py: " + msg, file=sys.stderr)
    sys.exit(2)


def read_csv(path, columns, what):
    """The rows of a shmring-bench CSV file, or one line and exit 2."""
    try:
        with open(path, newline="") as f:
            rd = csv.DictReader(f)
            missing = [c for c in columns if c not in (rd.fieldnames or [])]
            if missing:
                fail("%s is not %s (no column %s)" % (path, what, missing[0]))
            return [r for r in rd]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        fail("%s: %s" % (path, e.strerror if isinstance(e, OSError) and e.strerror else e))


def fnum(v):
    try:
        x = float(v)
        return x if x > 0 and math.isfinite(x) else None
    except (TypeError, ValueError):
        return None


def collect(results, cdf):
    """cdfs[size][series] = [(ns, q)]; thr[metric][series] = [(size, value)]."""
    cdfs = defaultdict(lambda: defaultdict(list))
    for r in cdf:
        if r["test"] != "rtt":
            continue
        q, ns = fnum(r["q"]), fnum(r["ns"])
        if ns is None or r["q"] in ("", None):
            continue
        cdfs[int(r["size"])][series_name(r)].append((ns, float(r["q"])))
    thr = {"bytes_per_s": defaultdict(list), "msgs_per_s": defaultdict(list),
           "rtt_p50_ns": defaultdict(list)}
    for r in results:
        if r.get("ok") not in ("1", "true"):
            continue
        if r["test"] == "stream":
            for m in ("bytes_per_s", "msgs_per_s"):
                v = fnum(r[m])
                if v:
                    thr[m][series_name(r)].append((int(r["size"]), v))
        elif r["test"] == "rtt":
            v = fnum(r["p50_ns"])
            if v:
                thr["rtt_p50_ns"][series_name(r)].append((int(r["size"]), v))
    for m in thr:
        for k in thr[m]:
            thr[m][k].sort()
    return cdfs, thr


def style(name):
    """Classic mechanisms dashed, shmring solid, references dotted."""
    t = name.split()[0]
    if t in ("floor", "futex", "memcpy"):
        return ":"
    if t in ("pipe", "fifo", "uds-stream", "uds-dgram", "tcp", "posix-mq", "sysv-mq"):
        return "--"
    return "-"


def plot_matplotlib(cdfs, thr, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FixedFormatter
    from cycler import cycler
    # many series: 20 colours before any repeats (line styles tell the families apart)
    plt.rcParams["axes.prop_cycle"] = cycler(color=plt.get_cmap("tab20").colors)

    files = []
    for size in sorted(cdfs):
        fig, ax = plt.subplots(figsize=(10, 6))
        for name in sorted(cdfs[size]):
            pts = sorted(cdfs[size][name])
            xs = [p[0] for p in pts]
            # y as "nines": 0.5 -> 0.3, 0.99 -> 2, 0.999 -> 3, so the tail is visible
            ys = [-math.log10(max(1e-5, 1 - p[1])) for p in pts]
            ax.plot(xs, ys, style(name), label=name, linewidth=1.2)
        ax.set_xscale("log")
        ticks = [0, -math.log10(0.5), 1, 2, 3, 4, 5]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FixedFormatter(["0", "50", "90", "99", "99.9",
                                                     "99.99", "max"]))
        ax.set_xlabel("round trip (ns, log)")
        ax.set_ylabel("percentile")
        ax.set_title("Round-trip latency CDF, %s" % size_label(size))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
        f = os.path.join(out, "rtt_cdf_%d.png" % size)
        fig.tight_layout()
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)

    labels = {"bytes_per_s": "bytes/s", "msgs_per_s": "messages/s",
              "rtt_p50_ns": "round trip p50 (ns)"}
    for m, series in thr.items():
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(10, 6))
        for name in sorted(series):
            pts = series[name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style(name), marker="o",
                    markersize=3, label=name, linewidth=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes, log)")
        ax.set_ylabel(labels[m] + " (log)")
        ax.set_title(("Streaming throughput" if m != "rtt_p50_ns" else "Round trip")
                     + " against message size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        f = os.path.join(out, "%s_vs_size.png" % m)
        fig.tight_layout()
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    return files


def plot_gnuplot(cdfs, thr, out):
    gp = shutil.which("gnuplot")
    files = []
    for size in sorted(cdfs):
        dat = os.path.join(out, "rtt_cdf_%d.dat" % size)
        names = sorted(cdfs[size])
        with open(dat, "w") as f:
            for name in names:
                f.write("# %s\n" % name)
                for ns, q in sorted(cdfs[size][name]):
                    f.write("%g %g\n" % (ns, -math.log10(max(1e-5, 1 - q))))
                f.write("\n\n")
        png = os.path.join(out, "rtt_cdf_%d.png" % size)
        script = os.path.join(out, "rtt_cdf_%d.gp" % size)
        with open(script, "w") as f:
            f.write('set terminal pngcairo size 1000,600\nset output "%s"\n' % png)
            f.write('set logscale x\nset xlabel "round trip (ns)"\n')
            f.write('set ylabel "percentile"\nset ytics ("50" 0.301, "90" 1, "99" 2, '
                    '"99.9" 3, "99.99" 4, "max" 5)\n')
            f.write('set title "Round-trip latency CDF, %s"\nset key right bottom font ",7"\n'
                    % size_label(size))
            f.write("plot " + ", ".join('"%s" index %d with lines title "%s"' % (dat, i, n)
                                        for i, n in enumerate(names)) + "\n")
        files.append(script)
        if gp:
            subprocess.run([gp, script], check=False)
            files.append(png)
    for m, series in thr.items():
        if not series:
            continue
        dat = os.path.join(out, "%s_vs_size.dat" % m)
        names = sorted(series)
        with open(dat, "w") as f:
            for name in names:
                f.write("# %s\n" % name)
                for s, v in series[name]:
                    f.write("%d %g\n" % (s, v))
                f.write("\n\n")
        png = os.path.join(out, "%s_vs_size.png" % m)
        script = os.path.join(out, "%s_vs_size.gp" % m)
        with open(script, "w") as f:
            f.write('set terminal pngcairo size 1000,600\nset output "%s"\n' % png)
            f.write('set logscale xy\nset xlabel "message size (bytes)"\nset ylabel "%s"\n' % m)
            f.write('set key font ",7"\n')
            f.write("plot " + ", ".join('"%s" index %d with linespoints title "%s"' % (dat, i, n)
                                        for i, n in enumerate(names)) + "\n")
        files.append(script)
        if gp:
            subprocess.run([gp, script], check=False)
            files.append(png)
    return files


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="CSV from shmring-bench --csv")
    ap.add_argument("cdf", nargs="?", help="CDF file from shmring-bench --cdf FILE")
    ap.add_argument("-o", "--out", default="bench-plots", help="output directory")
    ap.add_argument("--gnuplot", action="store_true", help="use gnuplot even if matplotlib exists")
    a = ap.parse_args()

    if not a.gnuplot and not have_matplotlib() and not os.environ.get("SHMRING_PLOT_REEXEC"):
        for py in ("/usr/bin/python3", "/usr/local/bin/python3"):
            if os.path.exists(py) and os.path.realpath(py) != os.path.realpath(sys.executable):
                r = subprocess.run([py, "-c", "import matplotlib"], capture_output=True)
                if r.returncode == 0:
                    env = dict(os.environ, SHMRING_PLOT_REEXEC="1")
                    os.execve(py, [py] + sys.argv, env)

    os.makedirs(a.out, exist_ok=True)
    cdfs, thr = collect(read_csv(a.results, RESULT_COLUMNS, "shmring-bench --csv output"),
                        read_csv(a.cdf, CDF_COLUMNS, "a shmring-bench --cdf file")
                        if a.cdf else [])
    if not cdfs and not any(thr.values()):
        print("plot.py: nothing to plot: %s has no successful round trip or stream"
              % a.results, file=sys.stderr)
        return 1
    if not a.gnuplot and have_matplotlib():
        files = plot_matplotlib(cdfs, thr, a.out)
    else:
        if not shutil.which("gnuplot"):
            print("plot.py: neither matplotlib nor gnuplot found; writing gnuplot scripts "
                  "only (apt-get install python3-matplotlib or gnuplot)", file=sys.stderr)
        files = plot_gnuplot(cdfs, thr, a.out)
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
