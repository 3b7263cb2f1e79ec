"""Accounts and homes that come from the test, not the host (not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Workspace
from .diffkit import write_config


def make_homes(ws: Workspace, *accounts: tuple[str, int, int], mode: int = 0o755,
               extra_config: str = "") -> dict[str, Path]:
    """Homes under ws.root/home for (name, uid, home mode) accounts, listed in a passwd file
    that systraq.conf names as snapshot.passwd; return name → home."""
    homes = {}
    lines = []
    (ws.root / "home").mkdir(mode=0o755, exist_ok=True)
    for name, uid, home_mode in accounts:
        home = ws.root / "home" / name
        home.mkdir(exist_ok=True)
        os.chown(home, uid, uid)
        home.chmod(home_mode or mode)
        homes[name] = home
        lines.append(f"{name}:x:{uid}:{uid}::{home}:/bin/sh\n")
    (ws.config / "passwd").write_text("".join(lines))
    write_config(ws, f'[snapshot]\npasswd = "{ws.config}/passwd"\n{extra_config}')
    return homes


def write_as(path: Path, text: str, uid: int) -> None:
    path.write_text(text)
    os.chown(path, uid, uid)
