"""Where a package's path really is inside ROOT, following only symlinks nobody else planted.

Packages list paths through directory symlinks the system itself made (``/lib`` →
``usr/lib`` on a merged-/usr system), so a directory symlink on the way is followed, as
debsums does, but only when root or the owner of ROOT owns it, and never above ROOT (an
absolute target means ROOT's own tree). The last component is never followed: a package
file that became a symlink is reported as such. The result is a path with no symlink in it,
which ``nofollow.DirCache`` then opens component by component.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 40


class Unsafe(Exception):
    """A path that cannot be reached without a symlink systraq does not trust."""

    def __init__(self, message: str, code: int = errno.ELOOP) -> None:
        super().__init__(message)
        self.errno = code


class Resolver:
    """Resolve package paths inside one root; directories are remembered."""

    def __init__(self, root: bytes) -> None:
        self.root = os.path.realpath(os.fsencode(root)).rstrip(b"/")  # b"" for "/"
        st = os.stat(self.root or b"/")
        self.trusted = {0, st.st_uid}
        self._dirs: dict[bytes, bytes] = {b"/": b"/"}

    def real(self, resolved: bytes) -> bytes:
        """The host path of a resolved path (ROOT prefixed)."""
        if resolved == b"/":
            return self.root or b"/"
        return self.root + resolved if self.root else resolved

    def split(self, path: bytes) -> tuple[bytes, bytes]:
        """(resolved directory, name) of a package path; raise Unsafe or OSError."""
        parent, _, name = path.rpartition(b"/")
        if not name or name in (b".", b".."):
            raise Unsafe("not a file path", errno.EINVAL)
        return self.directory(parent or b"/"), name

    def directory(self, path: bytes) -> bytes:
        """The symlink-free path (inside ROOT) of directory ``path``."""
        known = self._dirs.get(path)
        if known is not None:
            return known
        todo = [p for p in path.split(b"/") if p and p != b"."]
        parts: list[bytes] = []
        links = 0
        while todo:
            part = todo.pop(0)
            if part == b"..":
                if parts:
                    parts.pop()
                continue
            candidate = b"/" + b"/".join([*parts, part])
            cached = self._dirs.get(candidate)
            if cached is not None:
                parts = [p for p in cached.split(b"/") if p]
                continue
            st = os.lstat(self.real(candidate))
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in self.trusted:
                    raise Unsafe(f"{os.fsdecode(candidate)} is a symlink owned by uid "
                                 f"{st.st_uid}: not followed")
                links += 1
                if links > MAX_SYMLINKS:
                    raise Unsafe("too many levels of symbolic links")
                target = os.readlink(self.real(candidate))
                if target.startswith(b"/"):
                    parts = []
                todo[:0] = [p for p in target.split(b"/") if p and p != b"."]
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, "Not a directory", candidate)
            parts.append(part)
            self._dirs[candidate] = candidate
        resolved = b"/" + b"/".join(parts)
        self._dirs[path] = resolved
        return resolved
