#!/usr/bin/env python3
"""Content diff benchmark: systraq's bounded diff against GNU `diff -u` on crafted input.

Run by `make bench`. The crafted input is the attack on content diffs: 100 distinct lines
repeated to the size limit, shuffled in the old file and shuffled again in the new one, so
that every line matches thousands of others. Also times an ordinary edit of a large file
and, with --difflib, the difflib.SequenceMatcher that filetraq used before (minutes).
Prints a table and writes it to bench/results-contentdiff.txt.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from systraq.filetraq.contentdiff import TooCostly, diff  # noqa: E402
from systraq.filetraq.linediff import WORK_LIMIT, edit_script  # noqa: E402


def crafted(size: int, seed: int) -> bytes:
    lines = [b"line %03d of a file anyone may write\n" % n for n in range(100)]
    out = lines * (size // sum(map(len, lines)) + 1)
    random.Random(seed).shuffle(out)
    return b"".join(out)[:size]


def ordinary(size: int) -> tuple[bytes, bytes]:
    """A large config-like file and the same with ten lines changed."""
    lines = [b"option_%06d = value %07d\n" % (n, n * 7) for n in range(size // 32)]
    old = b"".join(lines)
    for n in range(10):
        at = (n + 1) * len(lines) // 11
        lines[at] = b"option_%06d = changed\n" % at
    return old, b"".join(lines)


def median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gnu_diff(old: Path, new: Path) -> Callable[[], object]:
    return lambda: subprocess.run(["diff", "-u", str(old), str(new)],
                                  stdout=subprocess.DEVNULL, check=False)


def systraq_diff(old: bytes, new: bytes) -> tuple[Callable[[], object], str]:
    """The in-process content diff, and what it gave: lines, or the fallback."""
    def run() -> str:
        try:
            lines = diff(old, new, old_label="old", new_label="new", old_time_ns=0,
                         new_time_ns=0)
            return f"{len(lines)} lines"
        except TooCostly:
            return "sizes and hashes only"
    return run, run()


def filetraq_run(work: Path, old: bytes, new: bytes) -> float:
    """One `systraq filetraq` run that finds the change, end to end (CLI, store, report)."""
    config, state, tree = work / "config", work / "state", work / "tree"
    for directory in (config, state, tree):
        directory.mkdir(exist_ok=True)
    target = tree / "authorized_keys"
    (config / "filetraq.conf").write_text(f"{target}\n")
    command = [sys.executable, "-m", "systraq", "--config-dir", str(config), "--state-dir",
               str(state), "filetraq"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    target.write_bytes(old)
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
    target.write_bytes(new)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 1 or not result.stdout.startswith(("Changes in", "File")):
        raise SystemExit("bench: filetraq did not report the change: "
                         f"{result.stdout[:300]}{result.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20,
                        help="bytes per file (default 1 MiB, filetraq.max_size's default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--difflib", action="store_true",
                        help="also time difflib.SequenceMatcher on 46 KB (takes minutes)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results-contentdiff.txt"))
    args = parser.parse_args()
    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="systraq-bench-diff-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # filetraq reads only what everyone may read
        cases = [(f"crafted {args.size // 1024} KiB", crafted(args.size, 1),
                  crafted(args.size, 2)),
                 ("crafted 46 KB (the reported case)", crafted(46_000, 1), crafted(46_000, 2)),
                 (f"ordinary {args.size // 1024} KiB, 10 lines changed", *ordinary(args.size))]
        for label, old, new in cases:
            (work / "old").write_bytes(old)
            (work / "new").write_bytes(new)
            print(label, flush=True)
            rows.append((label, "diff -u (GNU diffutils)",
                         median_seconds(gnu_diff(work / "old", work / "new"), args.runs), ""))
            action, outcome = systraq_diff(old, new)
            rows.append((label, "systraq content diff", median_seconds(action, args.runs),
                         outcome))
            try:
                steps = f"{edit_script(old, new, horizon=3).work:,} steps"
            except TooCostly:
                steps = f"over {WORK_LIMIT:,} steps"
            rows[-1] = (*rows[-1][:3], f"{outcome}; {steps}")
            run_dir = work / label.split()[0]
            run_dir.mkdir(exist_ok=True)
            rows.append((label, "systraq filetraq run (CLI)",
                         filetraq_run(run_dir, old, new), ""))
        if args.difflib:
            from difflib import SequenceMatcher
            a, b = crafted(46_000, 1).splitlines(True), crafted(46_000, 2).splitlines(True)
            rows.append(("crafted 46 KB (the reported case)", "difflib (systraq before)",
                         median_seconds(lambda: list(SequenceMatcher(None, a, b)
                                                     .get_grouped_opcodes(3)), 1), ""))
    lines = [f"content diff benchmark on {socket.gethostname()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of "
             f"{args.runs} runs; work limit {WORK_LIMIT:,} steps",
             f"  {'input':<36} {'command':<28} {'seconds':>8}  result"]
    for label, command, seconds, outcome in rows:
        lines.append(f"  {label:<36} {command:<28} {seconds:8.3f}  {outcome}")
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
