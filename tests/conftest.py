"""Shared fixtures: a real workspace on disk, with its own accounts, and the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from .runner import REPO, UNPRIVILEGED, Launcher, install_copy, run_in_process

__all__ = ["REPO", "UNPRIVILEGED", "Workspace", "entries_of", "needs_root"]

# CI runs the same examples every time: a red run can be run again and read, never a
# coin toss. Developers get fresh examples on every run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@dataclass
class Workspace:
    """A config dir, a state dir and a tree to watch, all reachable by 'nobody'.

    Its systraq.conf names the pub account (nobody) and a passwd file of its own, whose
    homes are inside the workspace: nothing depends on the accounts of the machine.
    """

    root: Path
    config: Path
    state: Path
    tree: Path
    launcher: Launcher

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    def account_settings(self) -> dict[str, str]:
        return {"pub_user": '"nobody"', "passwd": f'"{self.passwd}"'}

    def write_config(self, text: str, config_dir: Path | None = None) -> Path:
        """Write systraq.conf, keeping the workspace's accounts in its [snapshot] section.

        They go at the end of that section (or of the file), so that the lines of the
        text's own keys keep their numbers; a key the text sets itself is left to it.
        """
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        start = next((i for i, ln in enumerate(lines) if ln.strip() == "[snapshot]"), None)
        if start is None:
            lines.append("[snapshot]\n")
            start = end = len(lines)
        else:
            end = next((i for i in range(start + 1, len(lines))
                        if lines[i].lstrip().startswith("[")), len(lines))
        section = "".join(lines[start:end])
        added = [f"{key} = {value}\n" for key, value in self.account_settings().items()
                 if not re.search(rf"^\s*{key}\s*=", section, re.MULTILINE)]
        path = (config_dir or self.config) / "systraq.conf"
        path.write_text("".join(lines[:end] + added + lines[end:]))
        return path

    def add_home(self, user: str) -> Path:
        """A home directory in the workspace, listed in its passwd file."""
        home = self.root / "home" / user
        home.mkdir(parents=True)
        for path in (home, home.parent):
            path.chmod(0o755)
        with self.passwd.open("a") as passwd:
            passwd.write(f"{user}:x:4242:4242:{user}:{home}:/bin/sh\n")
        return home

    def write_list(self, mode: str, *lines: str | bytes, kind: str = "list") -> Path:
        path = self.config / f"snapshot_{mode}.{kind}"
        data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
        path.write_bytes(data)
        return path

    def argv(self, *args: str) -> list[str]:
        return ["--config-dir", str(self.config), "--state-dir", str(self.state), *args]

    def run(self, *args: str, user: str | None = None, env: dict | None = None,
            timeout: float = 120, input: str | None = None,
            process: bool = False) -> subprocess.CompletedProcess:
        """Run the systraq CLI: in this process, or in a real one as root (process=True)
        or unprivileged (user='nobody')."""
        if user is None and not process:
            return run_in_process(self.argv(*args), cwd=self.root, env=env, input=input,
                                  timeout=timeout)
        return subprocess.run(self.launcher.command(*self.argv(*args), user=user),
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, input=input, cwd=self.root)

    def spawn(self, *args: str, **popen: object) -> subprocess.Popen:
        """Start the systraq CLI in a real process, as root, and return at once."""
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
        return subprocess.Popen(self.launcher.command(*self.argv(*args)), text=True,
                                cwd=self.root, **options)  # type: ignore[call-overload]


# The variables systraq itself reads (the suite's own, SYSTRAQ_TRANSCRIPTS, stay).
SYSTRAQ_VARIABLES = ("SYSTRAQ_CONFIG_DIR", "SYSTRAQ_STATE_DIR", "SYSTRAQ_DEBUG")


@pytest.fixture(scope="session", autouse=True)
def _environment_of_our_own() -> Iterator[None]:
    """The caller's settings for systraq must not steer the runs under test."""
    saved = {k: os.environ.pop(k) for k in SYSTRAQ_VARIABLES if k in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    """systraq and its dependencies copied where every account can read them."""
    directory = Path(tempfile.mkdtemp(prefix="systraq-test-lib-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        installed = install_copy(directory)
        if os.geteuid() == 0:
            probe = subprocess.run(
                [*UNPRIVILEGED, installed.python, "-I", "-c",
                 f"import sys; sys.path.insert(0, {str(directory)!r}); "
                 "import click, rich.console, xxhash, systraq.cli"],
                capture_output=True, text=True, cwd="/")
            if probe.returncode != 0:
                pytest.fail(f"nobody cannot run systraq with {installed.python} from "
                            f"{directory}: {probe.stderr.strip()}")
        yield installed
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(directory)], check=False)


@pytest.fixture
def ws(launcher: Launcher) -> Iterator[Workspace]:
    # Not under pytest's tmp_path: its parents are 0700, and tests run code as 'nobody'.
    root = Path(tempfile.mkdtemp(prefix="systraq-test-", dir="/tmp"))
    root.chmod(0o755)
    for name in ("config", "state", "tree"):
        (root / name).mkdir(mode=0o755)
        (root / name).chmod(0o755)
    # Runs as root and as nobody share the state dir, as root and the systraq user do.
    (root / "state").chmod(0o777)
    workspace = Workspace(root, root / "config", root / "state", root / "tree", launcher)
    # Homes that do not exist: a pub snapshot records none unless a test makes one.
    workspace.passwd.write_text(f"root:x:0:0:root:{root}/home/root:/bin/sh\n"
                                f"nobody:x:65534:65534:nobody:{root}/home/nobody:/bin/false\n")
    workspace.write_config("")
    try:
        yield workspace
    finally:
        # rm, not shutil.rmtree: some tests nest directories deeper than Python recurses.
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def entries_of(state_file: Path) -> list[str]:
    """The entry lines of a state file (header and trailer left out)."""
    return [ln for ln in state_file.read_text().splitlines() if not ln.startswith("#")]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")
