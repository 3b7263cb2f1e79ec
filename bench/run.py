#!/usr/bin/env python3
"""systraq benchmark: systraq against find, xxhsum, sha256sum and AIDE on the same trees.

Run by `make bench` (BENCH_ARGS="..." passes options). Medians of warm runs (hyperfine),
peak memory of each systraq run (sum of the process tree's RSS, sampled), and the ratios
the performance targets are stated in. Prints a table and writes it to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTRAQ = [sys.executable, "-m", "systraq"]


def sh(command: str) -> str:
    return command


def hyperfine(name: str, command: str, runs: int, prepare: str | None = None) -> float:
    """Median wall time of `command` over warm runs."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        args = ["hyperfine", "--style", "none", "--warmup", "1", "--runs", str(runs),
                "--export-json", out.name, "--shell", "bash", "-n", name]
        if prepare:
            args += ["--prepare", prepare]
        subprocess.run(args + [command], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        return json.load(open(out.name))["results"][0]["median"]


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants, in KiB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return total


def peak_rss_mb(command: str) -> float:
    """Run once, sampling the process tree's total RSS every 10 ms; the peak in MB."""
    proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kb(proc.pid))
        time.sleep(0.01)
    return peak * 1024 / 1e6


def generate_tree(root: Path, files: int) -> None:
    """Many small files (0-8 KiB) in nested directories, made once and kept."""
    marker = root / ".systraq-bench"
    if marker.exists() and marker.read_text() == str(files):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(files)
    blob = rng.randbytes(8192)
    for i in range(files):
        directory = root / f"d{i // 100_000}" / f"d{i // 1000 % 100}" / f"d{i // 100 % 10}"
        if i % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(0, 4096)
        (directory / f"f{i}").write_bytes(blob[start:start + rng.randrange(0, 4096)])
    marker.write_text(str(files))


def sha256_scaling() -> tuple[float, float]:
    """sha256 throughput (GB/s) with one and with two processes: this machine's ceiling."""
    def rate(workers: int) -> float:
        started = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_hash_zeros, [400] * 4))
        return 4 * 400 * (1 << 20) / (time.perf_counter() - started) / 1e9
    return rate(1), rate(2)


def _hash_zeros(megabytes: int) -> str:
    block, digest = bytes(1 << 20), hashlib.sha256()
    for _ in range(megabytes):
        digest.update(block)
    return digest.hexdigest()


def bench_tree(label: str, tree: Path, runs: int, work: Path) -> list[tuple]:
    mode = "root" if os.geteuid() == 0 else "pub"
    config = work / f"config-{label}"
    config.mkdir(parents=True, exist_ok=True)
    (config / f"snapshot_{mode}.list").write_text(f"{tree}\n")
    (config / "systraq.conf").write_text("[snapshot]\nlock_timeout = 60\n")
    state_sha, state_xxh = work / f"state-{label}-sha256", work / f"state-{label}-xxh3"
    base = " ".join(SYSTRAQ)
    run_sha = f"{base} --config-dir {config} --state-dir {state_sha}"
    run_xxh = f"{base} --config-dir {config} --state-dir {state_xxh}"
    files = f"find {tree} -type f -print0"
    rows: list[tuple] = []

    def measure(name: str, command: str, prepare: str | None = None, rss: bool = False):
        seconds = hyperfine(name, command, runs, prepare)
        memory = peak_rss_mb(command) if rss else None
        rows.append((name, seconds, memory))
        print(f"  {name:<34} {seconds:8.3f} s" + (f"  {memory:7.1f} MB" if memory else ""),
              flush=True)
        return seconds

    print(f"{label}: {tree}", flush=True)
    measure("find -ls", f"find {tree} -ls > /dev/null")
    measure("find | xargs xxhsum -H2", f"{files} | xargs -0 xxhsum -H2 > /dev/null 2>&1 || true")
    measure("find | xargs sha256sum", f"{files} | xargs -0 sha256sum > /dev/null 2>&1 || true")
    if shutil.which("aide"):
        aide_conf = work / f"aide-{label}.conf"
        aide_conf.write_text(
            f"database_out=file:{work}/aide-{label}.db\ngzip_dbout=no\nnum_workers=2\n"
            f"report_url=stdout\nSYSTRAQ = p+u+g+s+m+c+i+n+ftype+l+sha256\n{tree} SYSTRAQ\n")
        measure("aide --init (sha256, 2 workers)",
                f"aide --init --config {aide_conf} > /dev/null 2>&1 || true")
    measure("systraq full sha256", f"{run_sha} snapshot --mode {mode} --full", rss=True)
    measure("systraq full xxh3", f"{run_xxh} snapshot --mode {mode} --full --hash xxh3",
            rss=True)
    subprocess.run(f"{run_sha} snapshot --mode {mode}", shell=True, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    measure("systraq unchanged-tree snapshot", f"{run_sha} snapshot --mode {mode}", rss=True)
    # The hourly cron run: each run's clock reads an hour after the previous snapshot, so
    # the rolling rehash reads the files whose turn came in that hour (about 1/24).
    hourly = (f"{sys.executable} {REPO}/bench/hourly_snapshot.py "
              f"{state_sha}/snapshot_{mode}.stat --config-dir {config} --state-dir {state_sha}")
    measure("systraq hourly snapshot (rolling)", f"{hourly} snapshot --mode {mode}")
    # Extended attributes: what reading every entry's would cost (a snapshot reads those of
    # directories and of the files it hashes; unchanged files keep theirs).
    walk = f"{sys.executable} {REPO}/bench/xattr_walk.py {tree}"
    measure("walk + lstat", walk)
    measure("walk + lstat + xattrs", f"{walk} --xattrs")
    has_diff = subprocess.run(f"{run_sha} diff --help", shell=True, capture_output=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 0
    if has_diff:
        # Settle: the reported copy is the newest snapshot; then time a diff of the two.
        subprocess.run(f"{run_sha} diff --mode {mode} > /dev/null", shell=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        subprocess.run(f"{run_sha} snapshot --mode {mode}", shell=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        measure("systraq diff (unchanged)", f"{run_sha} diff --mode {mode} --no-record",
                rss=True)
    return rows


def bench_sparse(runs: int, work: Path) -> list[tuple]:
    """A file of 15 TiB apparent size holding 128 KiB of data, where a user can put one.

    systraq's time follows the data (snapshot) or filetraq.max_size (filetraq); a reader of
    every byte pays for the apparent size: sha256sum is timed on 1 GiB of holes only.
    """
    tree = work / "sparse-tree"
    tree.mkdir()
    huge = tree / "authorized_keys2"
    with open(huge, "wb") as handle:
        handle.write(os.urandom(64 << 10))
        handle.seek(7 << 40)
        handle.write(os.urandom(64 << 10))
        handle.truncate(15 << 40)
    huge.chmod(0o644)
    holes = work / "holes-1g"
    with open(holes, "wb") as handle:
        handle.truncate(1 << 30)
    mode = "root" if os.geteuid() == 0 else "pub"
    config = work / "config-sparse"
    config.mkdir()
    (config / f"snapshot_{mode}.list").write_text(f"{tree}\n")
    (config / "filetraq.conf").write_text(f"{huge}\n")
    run = f"{' '.join(SYSTRAQ)} --config-dir {config} --state-dir {work}/state-sparse"
    rows = []
    for name, command in (
            ("systraq full snapshot, 15 TiB sparse", f"{run} snapshot --mode {mode} --full"),
            ("systraq filetraq, 15 TiB sparse", f"{run} filetraq > /dev/null || true"),
            ("sha256sum, 1 GiB of holes", f"sha256sum {holes} > /dev/null")):
        seconds = hyperfine(name, command, runs)
        rows.append((name, seconds, None))
        print(f"  {name:<34} {seconds:8.3f} s", flush=True)
    return rows


def ratios(rows: list[tuple]) -> list[tuple[str, float, float]]:
    t = {name: seconds for name, seconds, _ in rows}
    wanted = [
        ("full sha256 / sha256sum pipeline", "systraq full sha256", "find | xargs sha256sum", 0.2),
        ("full sha256 / AIDE --init", "systraq full sha256", "aide --init (sha256, 2 workers)",
         0.12),
        ("full xxh3 / xxhsum pipeline", "systraq full xxh3", "find | xargs xxhsum -H2", 1.3),
        ("unchanged snapshot / find -ls", "systraq unchanged-tree snapshot", "find -ls", 1.5),
        ("hourly snapshot / find -ls", "systraq hourly snapshot (rolling)", "find -ls", 2.0),
        ("diff / unchanged snapshot", "systraq diff (unchanged)",
         "systraq unchanged-tree snapshot", 0.5),
    ]
    found = [(label, t[a] / t[b], target) for label, a, b, target in wanted
             if a in t and b in t]
    if {"walk + lstat", "walk + lstat + xattrs", "systraq unchanged-tree snapshot"} <= set(t):
        # Reading every entry's attributes, against the unchanged snapshot (which reads
        # only those of directories and changed files).
        extra = t["walk + lstat + xattrs"] - t["walk + lstat"]
        found.append(("all xattrs / unchanged snapshot",
                      extra / t["systraq unchanged-tree snapshot"], 1.0))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", nargs="?", default="/usr", help="tree to scan (default /usr)")
    parser.add_argument("--small-files", type=int, default=100_000,
                        help="files in the generated tree (default 100000; 1000000 for the "
                             "memory target); 0 skips it")
    parser.add_argument("--generated-dir", default="/var/tmp/systraq-bench-tree")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument("--out", default=str(REPO / "bench" / "results.txt"))
    args = parser.parse_args()
    if not shutil.which("hyperfine"):
        print("bench: hyperfine is needed (apt-get install hyperfine)", file=sys.stderr)
        return 2
    for tool in ("xxhsum", "sha256sum"):
        if not shutil.which(tool):
            print(f"bench: {tool} is needed (apt-get install xxhash coreutils)", file=sys.stderr)
            return 2
    trees = [("tree", Path(args.tree))]
    if args.small_files:
        generated = Path(args.generated_dir)
        print(f"generating {args.small_files:,} small files in {generated} (kept)", flush=True)
        generate_tree(generated, args.small_files)
        trees.append((f"{args.small_files}-small-files", generated))
    one, two = sha256_scaling()
    lines = [f"systraq benchmark on {socket.gethostname()}, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} cores, median of {args.runs} warm runs (hyperfine)",
             f"hashlib sha256: {one:.2f} GB/s with 1 process, {two:.2f} GB/s with 2 "
             f"(parallel speed-up {two / one:.2f}x: this machine's ceiling for 'both cores')"]
    with tempfile.TemporaryDirectory(prefix="systraq-bench-") as work:
        for label, tree in trees:
            count = int(subprocess.run(f"find {tree} | wc -l", shell=True, capture_output=True,
                                       text=True).stdout)
            rows = bench_tree(label, tree, args.runs, Path(work))
            lines += ["", f"{label}: {tree} ({count:,} entries)",
                      f"  {'command':<34} {'median':>9}  {'peak RSS':>9}"]
            for name, seconds, memory in rows:
                lines.append(f"  {name:<34} {seconds:8.3f}s  " +
                             (f"{memory:7.1f} MB" if memory is not None else ""))
            lines.append(f"  {'ratio':<34} {'measured':>9}  {'target':>9}")
            for label_, value, target in ratios(rows):
                verdict = "met" if value <= target else "NOT met"
                lines.append(f"  {label_:<34} {value:8.3f}   <= {target:<5} {verdict}")
        print("sparse: a 15 TiB file with 128 KiB of data", flush=True)
        lines += ["", "sparse: a 15 TiB file with 128 KiB of data (sha256sum: 1 GiB of holes; "
                  "15 TiB would take ~15000 times as long)",
                  f"  {'command':<34} {'median':>9}"]
        for name, seconds, _ in bench_sparse(args.runs, Path(work)):
            lines.append(f"  {name:<34} {seconds:8.3f}s")
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).write_text(table + "\n")
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
