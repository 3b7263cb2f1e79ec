"""Helpers for the diff, baseline and mail tests (not a test module)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from .conftest import Workspace


def settle(ws: Workspace, *extra_args: str) -> None:
    """Watch ws.tree in pub mode, snapshot it and take the first report, so later runs
    report only what changes from here on."""
    ws.write_list("pub", str(ws.tree))
    snap = ws.run("snapshot", *extra_args)
    assert snap.returncode == 0, snap.stderr
    first = ws.run("diff")
    assert first.returncode == 1, first.stderr
    assert "entries recorded" in first.stdout


def snapshot_and_diff(ws: Workspace, *diff_args: str) -> subprocess.CompletedProcess:
    snap = ws.run("snapshot")
    assert snap.returncode == 0, snap.stderr
    return ws.run("diff", *diff_args)


def json_changes(output: str) -> dict[str, dict]:
    """{path: change} of a JSON report."""
    return {c["path"]: c for c in json.loads(output)["changes"]}


def write_config(ws: Workspace, text: str) -> Path:
    return ws.write_config(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
