#!/usr/bin/env python3
"""systraq packages against dpkg --verify, debsums -s and find -ls, on this host.

Run by `make bench` (or `make bench BENCH=packages`). Times a first run (empty md5 cache)
and a repeated run, the reference tools over the same installed packages, and the peak
memory of systraq's process tree; prints the ratios the targets are stated in, and
whether systraq reports the same files as dpkg --verify and debsums -s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SYSTRAQ = [sys.executable, "-m", "systraq"]

TARGETS = (("first run / dpkg --verify", "systraq packages, first run", "dpkg --verify", 0.4),
           ("repeated run / find -ls", "systraq packages, repeated", "find -ls", 1.5))
RSS_TARGET_MB = 100.0


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return found


def _field(pid: int, name: str, filename: str) -> int:
    try:
        with open(f"/proc/{pid}/{filename}") as status:
            for line in status:
                if line.startswith(name):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def timed(command: list[str], sample: bool = False) -> tuple[float, float, float, str]:
    """Wall time; with ``sample``, peak summed RSS and PSS of the process tree (MB)."""
    # Output goes to a file: a pipe nobody reads while sampling would stall the command.
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=ENV,
                                text=True)
        peak_rss = peak_pss = 0
        if sample:
            while proc.poll() is None:
                pids = process_tree(proc.pid)
                peak_rss = max(peak_rss, sum(_field(p, "VmRSS:", "status") for p in pids))
                peak_pss = max(peak_pss, sum(_field(p, "Pss:", "smaps_rollup") for p in pids))
                time.sleep(0.01)
        proc.wait()
        seconds = time.perf_counter() - started
        output.seek(0)
        return seconds, peak_rss / 1024, peak_pss / 1024, output.read()


def package_dirs() -> list[str]:
    """Top-level directories that hold package files (not symlinks such as /bin)."""
    tops = set()
    for name in os.listdir("/var/lib/dpkg/info"):
        if name.endswith(".md5sums"):
            with open(f"/var/lib/dpkg/info/{name}", "rb") as sums:
                for line in sums:
                    top = line[34:].split(b"/", 1)[0].decode(errors="replace")
                    tops.add(top)
    return sorted(f"/{t}" for t in tops if os.path.isdir(f"/{t}") and not
                  os.path.islink(f"/{t}"))


def systraq_sets(state: Path) -> tuple[set, set]:
    """(files, conffiles) systraq reports: sets of (path, kind)."""
    out = []
    for extra in ([], ["--conffiles"]):
        done = subprocess.run([*SYSTRAQ, "--state-dir", str(state), "packages", "--format",
                               "json", *extra], capture_output=True, text=True, env=ENV)
        document = json.loads(done.stdout)
        out.append({(f["path"], "missing" if f["problem"] == "missing" else "changed",
                     f["conffile"], bool(f["expected_md5"])) for f in document["findings"]})
    return out[0], out[1]


def dpkg_verify_set(output: str) -> set:
    return {(line[12:].split(" (")[0], "missing" if line.startswith("missing") else "changed",
             line[10] == "c") for line in output.splitlines() if len(line) > 12}


def debsums_set(output: str) -> set:
    found = set()
    for line in output.splitlines():
        match = re.match(r"debsums: (changed|missing) file (.+) \(from \S+ package\)$", line)
        if match:
            found.add((match.group(2), match.group(1)))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each quick command")
    parser.add_argument("--no-debsums", action="store_true", help="skip debsums -s (~60 s)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results-packages.txt"))
    args = parser.parse_args()
    for tool in ("dpkg", "find") + (() if args.no_debsums else ("debsums",)):
        if not shutil.which(tool):
            print(f"bench: {tool} is needed (apt-get install debsums)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("bench: run as root (the md5 cache is root's, as in production)", file=sys.stderr)
        return 2
    dirs = package_dirs()
    rows: dict[str, list[float]] = {}
    memory: dict[str, tuple[float, float]] = {}

    def record(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)
        print(f"  {name:<34} {seconds:8.2f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="systraq-bench-pkg-") as work:
        work_dir = Path(work)
        for run in range(args.runs):
            # Warm the page cache the same way for everyone: dpkg --verify reads it all.
            seconds, _, _, verify_out = timed(["dpkg", "--verify"])
            record("dpkg --verify", seconds)
            seconds, _, _, _ = timed(["find", *dirs, "-xdev", "-ls"])
            record("find -ls", seconds)
            state = work_dir / f"state-{run}"
            seconds, rss, pss, _ = timed([*SYSTRAQ, "--state-dir", str(state), "packages"],
                                         sample=True)
            record("systraq packages, first run", seconds)
            memory["first run"] = max(memory.get("first run", (0, 0)), (rss, pss))
            seconds, rss, pss, _ = timed([*SYSTRAQ, "--state-dir", str(state), "packages"],
                                         sample=True)
            record("systraq packages, repeated", seconds)
            memory["repeated"] = max(memory.get("repeated", (0, 0)), (rss, pss))
        debsums_out = ""
        if not args.no_debsums:
            seconds, _, _, debsums_out = timed(["debsums", "-s"])
            record("debsums -s", seconds)
        files, conffiles = systraq_sets(work_dir / "state-0")
    ours_dpkg = {(p, k, c) for p, k, c, _ in files | conffiles}
    reference = dpkg_verify_set(verify_out)
    lines = [f"systraq packages benchmark on {socket.gethostname()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of "
             f"{args.runs} runs (debsums -s: one run); load average "
             f"{os.getloadavg()[0]:.2f}",
             f"find -ls over {' '.join(dirs)}", "",
             f"  {'command':<34} {'median':>9}"]
    median = {name: statistics.median(values) for name, values in rows.items()}
    for name, value in median.items():
        lines.append(f"  {name:<34} {value:8.2f}s")
    lines += ["", f"  {'ratio':<34} {'measured':>9}  {'target':>9}"]
    for label, a, b, target in TARGETS:
        value = median[a] / median[b]
        lines.append(f"  {label:<34} {value:8.2f}   <= {target:<5} "
                     f"{'met' if value <= target else 'NOT met'}")
    if "debsums -s" in median:
        lines.append(f"  {'first run / debsums -s':<34} "
                     f"{median['systraq packages, first run'] / median['debsums -s']:8.2f}")
    for name, (rss, pss) in memory.items():
        lines.append(f"  {'peak memory, ' + name:<34} {rss:6.1f} MB RSS summed over the "
                     f"process tree, {pss:6.1f} MB PSS; target < {RSS_TARGET_MB:.0f} MB: "
                     f"{'met' if pss < RSS_TARGET_MB else 'NOT met'}")
    lines += ["", f"same findings as dpkg --verify (files and conffiles, {len(reference)}): "
              f"{'yes' if ours_dpkg == reference else 'NO'}"]
    if ours_dpkg != reference:
        lines.append(f"  only systraq: {sorted(ours_dpkg - reference)[:5]}")
        lines.append(f"  only dpkg: {sorted(reference - ours_dpkg)[:5]}")
    if debsums_out:
        ours_debsums = {(p, k) for p, k, _, has_md5 in files if has_md5}
        theirs = debsums_set(debsums_out)
        lines.append(f"same files as debsums -s ({len(theirs)}): "
                     f"{'yes' if ours_debsums == theirs else 'NO'}")
        if ours_debsums != theirs:
            lines.append(f"  only systraq: {sorted(ours_debsums - theirs)[:5]}")
            lines.append(f"  only debsums: {sorted(theirs - ours_debsums)[:5]}")
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
