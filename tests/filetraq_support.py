"""Helpers shared by the filetraq tests."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from systraq.config import Settings, load_settings
from systraq.filetraq.job import run_filetraq
from systraq.filetraq.report import FiletraqReport, format_text

from .conftest import Workspace

DATED = re.compile(r"orig(-\d+)?\.\d\d\.\d\d\.\d\d__\d\d\.\d\d")
DEBIAN_FILETRAQ = Path("/usr/sbin/filetraq")


def write_list(ws: Workspace, *lines: str | bytes, name: str = "filetraq.conf") -> Path:
    path = ws.config / name
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n"
                              for ln in lines))
    return path


def write_conf(ws: Workspace, text: str) -> None:
    ws.write_config(text)


def store_of(ws: Workspace) -> Path:
    return ws.state / "filetraq"


def stored(ws: Workspace, path: Path, name: str = "orig") -> Path:
    return Path(str(store_of(ws)) + str(path)) / name


def dated_copies(ws: Workspace, path: Path) -> list[str]:
    directory = stored(ws, path).parent
    return sorted(n for n in os.listdir(directory) if DATED.fullmatch(n))


def settings_of(ws: Workspace) -> Settings:
    return load_settings(ws.config, ws.state)


def run_in_process(ws: Workspace, clock: float | None = None, **kwargs) -> tuple[
        FiletraqReport, str]:
    """Run the job in this process; return the report and the text it delivered."""
    shown: list[FiletraqReport] = []
    run_filetraq(settings_of(ws), show=shown.append,
                 clock=(lambda: clock) if clock is not None else time.time, **kwargs)
    return shown[0], "".join(format_text(r) for r in shown)


def everything_under(root: Path) -> bytes:
    """The bytes of every file below root, and every name: to grep for a secret."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out.append(os.fsencode(dirpath))
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            out.append(os.fsencode(path))
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    out.append(f.read())
    return b"\n".join(out)


def assert_secret_nowhere(secret: bytes, result: subprocess.CompletedProcess,
                          *roots: Path) -> None:
    assert secret not in result.stdout.encode(), "secret in stdout"
    assert secret not in result.stderr.encode(), "secret in stderr"
    for root in roots:
        assert secret not in everything_under(root), f"secret under {root}"
