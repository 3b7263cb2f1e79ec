"""filetraq's listing: from the list's patterns to the paths it names, and what each is.

Globs expand without following symlinks; a listed directory means everything below it,
never entering one that is not open to everyone. Whether content may be tracked is first
decided from mode bits here (o+r on the file, o+x on every directory above it), so root
and the pub account come to the same answer; the reading itself runs as the pub account,
so the kernel has the last word.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from systraq.fs.nofollow import DirCache, ThroughSymlink, join, pseudo_fs_devices, split
from systraq.fs.walk import walk
from systraq.pathcodec import escape
from systraq.patterns import components, has_glob
from systraq.snapshot.listfiles import Pattern, expand


class Gone(Exception):
    """The path no longer exists (or no longer where the listing saw it)."""


@dataclass
class Listed:
    """A path the list names, with what the listing saw."""

    path: bytes
    st: os.stat_result | None
    private: str = ""  # why its content is out of bounds, known from the listing alone


@dataclass
class Listing:
    found: dict[bytes, Listed] = field(default_factory=dict)
    unmatched: list[Pattern] = field(default_factory=list)


def _not_open_to_everyone(path: bytes, st: os.stat_result) -> str | None:
    if st.st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
        return f"directory mode {stat.S_IMODE(st.st_mode):04o}: the files in it are not tracked"
    return None


class Lister:
    """Expands a list into paths; knows which directories on the way block everyone."""

    def __init__(self, dirs: DirCache) -> None:
        self.dirs = dirs
        self._blocking: dict[bytes, bytes | None] = {}
        self._pseudo = pseudo_fs_devices()

    def list(self, patterns: Iterable[Pattern]) -> Listing:
        listing = Listing()
        done: set[bytes] = set()
        for pattern in patterns:
            if pattern.text in done:
                continue
            done.add(pattern.text)
            matched = False
            try:
                for path in expand(pattern.text, self.dirs):
                    matched = True
                    self._add(listing, path)
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM):
                    raise
                matched = True
                listing.found.setdefault(pattern.text, Listed(
                    pattern.text, None, private=self.unreachable(pattern.text)))
            if not matched:
                listing.unmatched.append(pattern)
        return listing

    def lstat(self, path: bytes) -> os.stat_result:
        """lstat without following a symlink on the way; Gone when it is not there."""
        parent, name = split(path)
        try:
            return os.stat(name, dir_fd=self.dirs.open(parent), follow_symlinks=False)
        except (ThroughSymlink, FileNotFoundError, NotADirectoryError):
            raise Gone() from None

    def _add(self, listing: Listing, path: bytes) -> None:
        if path in listing.found:
            return
        try:
            st = self.lstat(path)
        except Gone:
            return
        except PermissionError:
            listing.found[path] = Listed(path, None, private=self.unreachable(path))
            return
        if not stat.S_ISDIR(st.st_mode):
            listing.found[path] = Listed(path, st)
            return
        blocking = self.blocking_dir(split(path)[0]) if path != b"/" else None
        if blocking is not None:
            listing.found[path] = Listed(path, st, private=self.blocked_by(blocking))
            return
        for found in walk(self.dirs, path, st, may_enter=_not_open_to_everyone,
                          pseudo_devices=self._pseudo):
            reason = found.skipped
            if reason == "directory cannot be listed":
                reason += ": the files in it are not tracked"
            listing.found.setdefault(found.path, Listed(found.path, found.st, reason))

    def blocking_dir(self, directory: bytes) -> bytes | None:
        """The first directory from / down to ``directory`` that lacks o+x (None: none).

        Decided by mode bits, so root and the pub account come to the same answer; a
        directory this account cannot open counts as blocking.
        """
        prefix = b"/"
        for part in [b"", *components(directory)]:
            prefix = join(prefix, part) if part else prefix
            if prefix not in self._blocking:
                try:
                    mode = os.fstat(self.dirs.open(prefix)).st_mode
                    self._blocking[prefix] = None if mode & stat.S_IXOTH else prefix
                except (OSError, ThroughSymlink):
                    self._blocking[prefix] = prefix
            if self._blocking[prefix] is not None:
                return prefix
        return None

    def unreachable(self, pattern: bytes) -> str:
        """Why a path (or the literal part of a glob) cannot be reached by this account."""
        parts = components(pattern)[:-1]
        literal = parts[:next((i for i, p in enumerate(parts) if has_glob(p)), len(parts))]
        blocking = self.blocking_dir(b"/" + b"/".join(literal))
        if blocking is None:
            return "a directory on the way cannot be searched"
        return self.blocked_by(blocking)

    @staticmethod
    def blocked_by(directory: bytes) -> str:
        return f"directory {escape(directory)} is not searchable by everyone"
