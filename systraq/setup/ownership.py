"""The state directory's owners and modes, read off the layout.

Which account writes where follows from where ``Layout`` puts each file: the directory of
the pub snapshot belongs to the pub account, the directories of the root snapshot and of
the reported and baseline copies to root (0700), the backup store to the pub account.
When one directory holds files of both accounts (one flat state directory), it is root's,
group-writable by the pub account's group and sticky, so neither can replace the other's
files. So init follows the layout wherever it moves a file. (The jobs themselves make a
missing directory and refuse one with the wrong owner: systraq.statedir. init is what may
change an owner, since it takes over a state directory another package made.)
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from systraq.config import Settings
from systraq.layout import BASELINE, MODES, REPORTED

ROOT, PUB = "root", "pub"


@dataclass(frozen=True)
class OwnedDir:
    path: Path
    owner: str  # ROOT or PUB
    group: str  # ROOT or PUB
    mode: int

    def ids(self, pub: tuple[int, int]) -> tuple[int, int]:
        uid = 0 if self.owner == ROOT else pub[0]
        gid = 0 if self.group == ROOT else pub[1]
        return uid, gid

    def describe(self, pub_name: str) -> str:
        names = {ROOT: "root", PUB: pub_name}
        return f"{self.path} ({names[self.owner]}:{names[self.group]}, {self.mode:04o})"


def state_dirs(settings: Settings) -> list[OwnedDir]:
    """Every directory init makes under STATE, parents first."""
    layout = settings.layout
    state = layout.state_dir
    pub_dirs = {layout.snapshot("pub").parent}
    root_dirs = {layout.snapshot("root").parent} | {
        layout.copy(kind, mode, 0).parent for kind in (REPORTED, BASELINE) for mode in MODES}
    shared = pub_dirs & root_dirs
    dirs: dict[Path, OwnedDir] = {}
    for path in shared:
        dirs[path] = OwnedDir(path, ROOT, PUB, 0o1775)
    for path in pub_dirs - shared:
        dirs[path] = OwnedDir(path, PUB, PUB, 0o755)
    for path in root_dirs - shared:
        dirs[path] = OwnedDir(path, ROOT, ROOT, 0o700 if path != state else 0o755)
    if state not in dirs:
        dirs[state] = OwnedDir(state, ROOT, ROOT, 0o755)
    dirs[layout.store] = OwnedDir(layout.store, PUB, PUB, settings.filetraq.dir_mode)
    return sorted(dirs.values(), key=lambda d: len(d.path.parts))


def mismatch(directory: OwnedDir, pub: tuple[int, int]) -> str | None:
    """What is wrong with a directory now ("missing", "owner", ...), or None if it is right.

    Raises ``NotADirectoryError`` for anything but a real directory (a symlink included).
    """
    try:
        st = os.lstat(directory.path)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(directory.path)
    uid, gid = directory.ids(pub)
    if (st.st_uid, st.st_gid) != (uid, gid):
        return "owner"
    if stat.S_IMODE(st.st_mode) != directory.mode:
        return "mode"
    return None


def fix(directory: OwnedDir, pub: tuple[int, int]) -> None:
    """Create the directory, or set its owner and mode, without following a symlink."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory.path, 0o700)
    fd = os.open(directory.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, *directory.ids(pub))
        os.fchmod(fd, directory.mode)
    finally:
        os.close(fd)
