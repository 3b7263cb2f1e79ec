"""Shared fixtures: a real workspace on disk and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPO = Path(__file__).resolve().parent.parent

# CI runs the same examples every time: a red run can be run again and read, never a
# coin toss. Developers get fresh examples on every run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")
UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@dataclass
class Workspace:
    """A config dir, a state dir and a tree to watch, all reachable by 'nobody'."""

    root: Path
    config: Path
    state: Path
    tree: Path

    def write_list(self, mode: str, *lines: str | bytes, kind: str = "list") -> Path:
        path = self.config / f"snapshot_{mode}.{kind}"
        data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
        path.write_bytes(data)
        return path

    def run(self, *args: str, user: str | None = None, env: dict | None = None,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        """Run the systraq CLI for real, as root or (user='nobody') unprivileged."""
        command = [sys.executable, "-m", "systraq", "--config-dir", str(self.config),
                   "--state-dir", str(self.state), *args]
        if user == "nobody":
            command = UNPRIVILEGED + command
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=full_env, input=input, cwd=self.root)


@pytest.fixture
def ws() -> Iterator[Workspace]:
    # Not under pytest's tmp_path: its parents are 0700, and tests run code as 'nobody'.
    root = Path(tempfile.mkdtemp(prefix="systraq-test-", dir="/tmp"))
    root.chmod(0o755)
    for name in ("config", "state", "tree"):
        (root / name).mkdir(mode=0o755)
        (root / name).chmod(0o755)
    # Runs as root and as nobody share the state dir, as root and the systraq user do.
    (root / "state").chmod(0o777)
    try:
        yield Workspace(root, root / "config", root / "state", root / "tree")
    finally:
        # rm, not shutil.rmtree: some tests nest directories deeper than Python recurses.
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def entries_of(state_file: Path) -> list[str]:
    """The entry lines of a state file (header and trailer left out)."""
    return [ln for ln in state_file.read_text().splitlines() if not ln.startswith("#")]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")
