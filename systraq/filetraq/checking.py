"""filetraq's check: what each listed path is now, against the store and the memory.

Every path gets at most one report item; content changes become actions for the commit,
which runs only after the report was delivered. Nothing is written here.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from typing import Any

from systraq.config import Settings
from systraq.filetraq import seen
from systraq.filetraq.budget import Budget, cost
from systraq.filetraq.contentdiff import TooCostly, is_binary
from systraq.filetraq.contentdiff import diff as content_diff
from systraq.filetraq.listing import Gone, Listed, Lister
from systraq.filetraq.report import Event, FiletraqReport, Item, Version
from systraq.filetraq.store import Orig, Store, StoreError, dated_name
from systraq.fs.nofollow import ThroughSymlink, open_file_at, same_file, split
from systraq.fs.readlimit import read_limited
from systraq.pathcodec import escape
from systraq.patterns import covers, has_glob, order_key
from systraq.snapshot.entry import TYPE_LETTERS, TYPE_NAMES
from systraq.snapshot.listfiles import Pattern

_CHUNK = 1 << 20
_READ_ATTEMPTS = 3


class Raced(Exception):
    """The file changed or was replaced while being read."""


class NowPrivate(Exception):
    """The file opened is no longer readable by everyone (its mode changed meanwhile)."""


@dataclass
class Content:
    st: os.stat_result  # fstat of what was read
    sha256: str  # of the content, or of its first max_size bytes when data is None
    size: int
    data: bytes | None  # None: over the size limit, only its first max_size bytes hashed


@dataclass
class Action:
    """A store update the report announced, done after delivery."""

    path: bytes
    sha256: str
    previous_sha256: str | None  # the orig the report compared with (None: first backup)
    # An earlier listed name of the same file, whose content the store holds (or will):
    # the content is stored once, as a hard link.
    same_as: bytes | None = None


class Checker:
    """One check over one store: report items, the new memory, and the actions to commit."""

    def __init__(self, settings: Settings, store: Store, memory: seen.Memory,
                 when: time.struct_time, report: FiletraqReport, lister: Lister) -> None:
        self.settings = settings
        self.limit = settings.filetraq.max_size
        self.store = store
        self.old = memory
        self.memory = seen.Memory()
        self.when = when
        self.report = report
        self.actions: list[Action] = []
        self.lister = lister
        self.budget = Budget(settings.filetraq.store_budget, store.usage)
        # (dev, ino) of each file whose content the store holds or will hold after this
        # run: its path there and the content's sha256.
        self.stored_inodes: dict[tuple[int, int], tuple[bytes, str]] = {}

    def check(self, patterns: list[Pattern]) -> None:
        listing = self.lister.list(patterns)
        removed: list[bytes] = []
        for path in sorted(listing.found, key=order_key):
            self.report.checked += 1
            try:
                self._check(listing.found[path])
            except Gone:
                if self._forget_removed(path):
                    removed.append(path)
                else:
                    self._item(path, Event.VANISHED)
            except StoreError as err:
                self.report.problems.append(str(err))
                self._keep(path)
        for path in sorted(self.old.files, key=order_key):
            if path not in listing.found and self._is_gone(path):
                self._forget_removed(path)
                removed.append(path)
        # A line whose file was reported removed is not reported again as matching nothing.
        for pattern in patterns:
            if any(covers(pattern.text, path) for path in removed):
                self.memory.unmatched.add(pattern.text)
        for pattern in listing.unmatched:
            if pattern.text in self.old.unmatched or pattern.text in self.memory.unmatched:
                self.memory.unmatched.add(pattern.text)
                continue
            self.memory.unmatched.add(pattern.text)
            self._item(pattern.text, Event.UNMATCHED,
                       where=f"{pattern.source}, line {pattern.line}"
                       + (f": {pattern.problem}" if pattern.problem else ""))

    def _item(self, path: bytes, event: Event, **fields: Any) -> None:
        self.report.items.append(Item(path, event, **fields))

    def _keep(self, path: bytes) -> None:
        """Remember what was known of a path this run could not settle."""
        if path in self.old.files:
            self.memory.files[path] = self.old.files[path]

    def _status(self, path: bytes, record: seen.Record, event: Event, **fields: Any
                ) -> None:
        """Remember the path's status; tell it when it is new or changed."""
        self.memory.files[path] = record
        if self.old.files.get(path) != record:
            self._item(path, event, **fields)

    def _forget_removed(self, path: bytes) -> bool:
        """Report a known path as removed (once); False if it was never seen."""
        if path not in self.old.files:
            return False
        self.memory.files.pop(path, None)
        self._item(path, Event.REMOVED)
        return True

    def _is_gone(self, path: bytes) -> bool:
        if has_glob(path) and self.old.files[path].kind == seen.PRIVATE:
            return False  # a list line that could not be expanded, not a path
        try:
            self.lister.lstat(path)
        except Gone:
            return True
        except OSError:
            pass
        return False

    def _check(self, found: Listed) -> None:
        path, st = found.path, found.st
        if found.private or st is None:
            self._private(path, found.private)
            return
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFLNK:
            self._symlink(path)
        elif kind != stat.S_IFREG:
            name = TYPE_NAMES[TYPE_LETTERS.get(kind, "?")]
            self._status(path, seen.Record(seen.SPECIAL, name), Event.SPECIAL, file_type=name)
        elif not st.st_mode & stat.S_IROTH:
            self._private(path, f"mode {stat.S_IMODE(st.st_mode):04o}")
        elif (blocking := self.lister.blocking_dir(split(path)[0])) is not None:
            self._private(path, self.lister.blocked_by(blocking))
        else:
            self._regular(path, st)

    def _private(self, path: bytes, reason: str) -> None:
        note = ""
        if self.old.files.get(path, seen.Record("")).kind != seen.PRIVATE:
            try:
                if self.store.has_orig(path):
                    note = "the backup store holds an earlier copy"
            except StoreError:
                pass
        self._status(path, seen.Record(seen.PRIVATE), Event.PRIVATE, reason=reason,
                     note=note)

    def _symlink(self, path: bytes) -> None:
        parent, name = split(path)
        try:
            target = os.readlink(name, dir_fd=self.lister.dirs.open(parent))
        except (FileNotFoundError, ThroughSymlink, NotADirectoryError):
            raise Gone() from None
        except OSError:
            self._item(path, Event.RACED)
            self._keep(path)
            return
        shown = escape(os.fsencode(target))
        before = self.old.files.get(path)
        was = before.detail if before and before.kind == seen.SYMLINK else ""
        self._status(path, seen.Record(seen.SYMLINK, shown), Event.SYMLINK, target=shown,
                     was=was)

    def _regular(self, path: bytes, st: os.stat_result) -> None:
        try:
            content = self.read(path, st)
        except Raced:
            self._item(path, Event.RACED)
            self._keep(path)
            return
        except NowPrivate as err:
            self._private(path, str(err))
            return
        except OSError as err:
            self._unreadable(path, err)
            return
        before = self.old.files.get(path)
        if content.data is None:
            new = Version(content.size, content.sha256, first=self.limit)
            record = seen.Record(seen.LARGE, size=content.size, sha256=content.sha256,
                                 first=self.limit)
            if before is not None and before.kind == seen.LARGE:
                # A record from before the limit applied to hashing (the whole file's
                # hash) cannot be compared: it is replaced without a notice.
                if before.first and before != record:
                    self._item(path, Event.LARGE_CHANGED, new=new,
                               old=Version(before.size, before.sha256, first=before.first))
                self.memory.files[path] = record
            else:
                self._status(path, record, Event.LARGE, limit=self.limit, new=new)
            return
        new = Version(content.size, content.sha256)
        self.memory.files[path] = seen.Record(seen.TRACKED)
        self._compare(path, content, new, before)

    def _unreadable(self, path: bytes, err: OSError) -> None:
        error = os.strerror(err.errno) if err.errno else str(err)
        self._status(path, seen.Record(seen.UNREADABLE, error), Event.UNREADABLE,
                     reason=error)

    def _compare(self, path: bytes, content: Content, new: Version,
                 before: seen.Record | None) -> None:
        assert content.data is not None
        orig = self.store.read_orig(path, self.limit)
        inode = (content.st.st_dev, content.st.st_ino)
        same = self.stored_inodes.get(inode)
        same_as = same[0] if same is not None and same[1] == content.sha256 else None
        unchanged = orig is not None and orig.content is not None and \
            orig.sha256 == content.sha256
        if before is not None and before.kind == seen.UNSTORED:
            if not unchanged and before.sha256 == content.sha256:
                # Told of already, not stored then: stored silently once there is room.
                if self._room(content, orig is None, same_as):
                    self._act(path, content, orig, same_as)
                else:
                    self._unstored(path, content)
                return
            if unchanged:
                self.stored_inodes.setdefault(inode, (path, content.sha256))
                return
        if orig is None:
            if not self._room(content, True, same_as):
                told = Version(before.size, before.sha256) if before is not None and \
                    before.kind == seen.UNSTORED else None
                self._item(path, Event.NOT_STORED, old=told, new=new,
                           reason=self.budget.reason())
                self._unstored(path, content)
                return
            self._item(path, Event.CREATED, new=new)
            self._act(path, content, None, same_as)
            return
        if before is not None and before.kind not in (seen.TRACKED, seen.UNSTORED):
            self._item(path, Event.TRACKED, was=before.kind)
        if unchanged:
            self.stored_inodes.setdefault(inode, (path, content.sha256))
            return
        old = Version(orig.size, orig.sha256, first=0 if orig.content is not None else self.limit)
        if self._room(content, False, same_as):
            kept: bytes | None = self._next_dated(path)
            note = ""
            self._act(path, content, orig, same_as)
        else:
            kept, note = None, f"new version not stored: {self.budget.reason()}"
            self._unstored(path, content)
        if orig.content is None or is_binary(orig.content, content.data):
            reason = "" if orig.content is not None else \
                "the previous copy is over the size limit: no diff"
            self._item(path, Event.BINARY_CHANGED, old=old, new=new, kept_as=kept,
                       reason=reason, note=note)
            return
        ft = self.settings.filetraq
        try:
            lines = content_diff(orig.content, content.data,
                                 old_label=escape(self.store.shown(path)),
                                 new_label=escape(path), old_time_ns=orig.mtime_ns,
                                 new_time_ns=content.st.st_mtime_ns, style=ft.diff_style,
                                 order=ft.diff_order)
        except TooCostly as err:
            # Content anyone can write must not stall the run: say less instead.
            self._item(path, Event.BINARY_CHANGED, old=old, new=new, kept_as=kept,
                       reason=f"too many differences to diff within {err.limit:,} steps",
                       note=note)
            return
        self._item(path, Event.CHANGED, old=old, new=new, kept_as=kept, diff=tuple(lines),
                   note=note)

    def _room(self, content: Content, new_entry: bool, same_as: bytes | None) -> bool:
        """Whether the budget lets this content be stored (a hard link costs no data)."""
        return self.budget.take(cost(0 if same_as is not None else content.size, new_entry))

    def _act(self, path: bytes, content: Content, orig: Orig | None,
             same_as: bytes | None) -> None:
        """Store this content after delivery (a hard link to ``same_as``'s, if given)."""
        self.actions.append(Action(path, content.sha256, orig.sha256 if orig else None,
                                   same_as))
        self.stored_inodes.setdefault((content.st.st_dev, content.st.st_ino),
                                      (path, content.sha256))

    def _unstored(self, path: bytes, content: Content) -> None:
        """Track a content the store had no room for by its size and sha256."""
        self.memory.files[path] = seen.Record(seen.UNSTORED, size=content.size,
                                              sha256=content.sha256)

    def _next_dated(self, path: bytes) -> bytes:
        """The name the dated copy will get: the first free one for this minute."""
        for copy in range(1, 10000):
            name = dated_name(self.when, copy)
            if not self.store.exists(path, name):
                return name
        raise StoreError("too many dated copies within one minute",
                         escape(self.store.shown(path)))

    # -- reading a listed file ---------------------------------------------------

    def read(self, path: bytes, st: os.stat_result) -> Content:
        """Read (or, over the limit, hash) a world-readable file safely.

        Never follows a symlink, never opens anything but the regular file the listing
        saw (fstat check), never blocks. Raise _Gone, Raced, NowPrivate or OSError.
        """
        parent, name = split(path)
        for _ in range(_READ_ATTEMPTS):
            try:
                parent_fd = self.lister.dirs.open(parent)
                fd = open_file_at(parent_fd, name, st)
            except (FileNotFoundError, ThroughSymlink, NotADirectoryError):
                raise Gone() from None
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENXIO, errno.EWOULDBLOCK):
                    raise Raced() from None
                raise
            try:
                opened = os.fstat(fd)
                if not same_file(opened, st) or not stat.S_ISREG(opened.st_mode):
                    raise Raced()
                if not opened.st_mode & stat.S_IROTH:
                    raise NowPrivate(f"mode {stat.S_IMODE(opened.st_mode):04o}")
                content = self._read_fd(fd, opened)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == \
                    (opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns) and \
                    after.st_mode & stat.S_IROTH:
                return content
            st = after
        raise Raced()

    def _read_fd(self, fd: int, opened: os.stat_result) -> Content:
        got = read_limited(fd, opened.st_size, self.limit)
        return Content(opened, got.sha256, opened.st_size, got.data)

