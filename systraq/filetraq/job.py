"""The filetraq job: the content of listed files in a backup store, changes in a report.

    FILELIST ─▶ patterns ─▶ paths (globs, directories; a symlink is never followed)
             ─▶ check: lstat, who may read it, safe open, compare with store and memory
             ─▶ report ─▶ deliver (print, or mail) ─▶ commit: store and memory updated

Nothing is written before the report was delivered: when delivery fails, the store is
left as it was and the next run reports the same changes again. Only regular files that
everyone may read (o+r, and o+x on every directory above) are ever copied or diffed,
whoever runs the job: everything else listed gets a one-line notice when first seen and
when its status changes, remembered in ``BACKUPDIR/.systraq/seen``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from systraq.config import Settings
from systraq.delivery.mail import DeliveryOutcome, deliver, flush_spool
from systraq.errors import ConfigError, SystraqError
from systraq.filetraq import seen
from systraq.filetraq.contentdiff import diff as content_diff
from systraq.filetraq.contentdiff import is_binary
from systraq.filetraq.report import (
    Event,
    FiletraqReport,
    Item,
    Version,
    filetraq_subject,
    format_text,
)
from systraq.filetraq.store import META, Staged, Store, StoreError, dated_name
from systraq.fs.lock import locked
from systraq.fs.nofollow import (
    DirCache,
    ThroughSymlink,
    join,
    open_file_at,
    pseudo_fs_devices,
    same_file,
    split,
)
from systraq.fs.readlimit import read_limited
from systraq.pathcodec import escape
from systraq.snapshot.entry import TYPE_LETTERS, TYPE_NAMES
from systraq.snapshot.listfiles import Pattern, expand, order_key, parse_list

_MAGIC = re.compile(rb"[*?[]")
_READ_ATTEMPTS = 3

Deliver = Callable[[FiletraqReport], None]


@dataclass
class _Found:
    """A path the list names, with what the listing saw."""

    path: bytes
    st: os.stat_result | None
    private: str = ""  # why its content is out of bounds, known from the listing alone


@dataclass
class _Content:
    st: os.stat_result  # fstat of what was read
    sha256: str  # of the content, or of its first max_size bytes when data is None
    size: int
    data: bytes | None  # None: over the size limit, only its first max_size bytes hashed


@dataclass
class _Action:
    """A store update the report announced, done after delivery."""

    path: bytes
    sha256: str
    previous_sha256: str | None  # the orig the report compared with (None: first backup)


@dataclass
class _Listing:
    found: dict[bytes, _Found] = field(default_factory=dict)
    unmatched: list[Pattern] = field(default_factory=list)


class _Gone(Exception):
    """The path no longer exists (or no longer where the listing saw it)."""


class _Raced(Exception):
    """The file changed or was replaced while being read."""


class _NowPrivate(Exception):
    """The file opened is no longer readable by everyone (its mode changed meanwhile)."""


def _resolve_backupdir(settings: Settings, backupdir: Path | None) -> Path:
    if backupdir is not None:
        if not backupdir.is_dir():
            what = "not a directory" if backupdir.exists() else \
                "no such directory (create the backup store first)"
            raise SystraqError(f"backup directory: {what}", backupdir)
        return backupdir
    backupdir = settings.layout.store
    if not backupdir.is_dir():
        try:
            backupdir.mkdir(mode=settings.filetraq.dir_mode, parents=True, exist_ok=True)
            # Made by root, the store still belongs to the state directory's owner (the
            # systraq user the cron job runs as), so that its later runs can write it.
            owner = os.stat(settings.state_dir)
            if os.geteuid() == 0 and owner.st_uid != 0:
                os.chown(backupdir, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except OSError as err:
            raise SystraqError(f"cannot create the backup store: "
                               f"{os.strerror(err.errno or 0)}", backupdir) from None
    return backupdir


def _become_store_owner(backupdir: Path) -> None:
    """Run as the store's owner when root runs the job on another user's store.

    The store then stays the cron user's: no root-owned directory it cannot write later.
    This changes the credentials of the whole process, for good.
    """
    if os.geteuid() != 0:
        return
    st = os.stat(backupdir)
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def mail_filetraq(settings: Settings, filelist: Path | None = None,
                  backupdir: Path | None = None) -> tuple[FiletraqReport, DeliveryOutcome | None]:
    """``run_filetraq`` with the report sent by mail (spooled if the mail system fails).

    A spooled report counts as delivered: the store moves on and the spool sends it later.
    Nothing to report sends nothing (but flushes what waits in the spool).
    """
    outcomes: list[DeliveryOutcome] = []

    def send(report: FiletraqReport) -> None:
        if report.items:
            outcomes.append(deliver(settings, filetraq_subject(report), format_text(report)))
        else:
            outcomes.append(flush_spool(settings))

    report = run_filetraq(settings, filelist, backupdir, deliver=send)
    return report, (outcomes[0] if outcomes else None)


def run_filetraq(settings: Settings, filelist: Path | None = None,
                 backupdir: Path | None = None, *, deliver: Deliver,
                 clock: Callable[[], float] = time.time) -> FiletraqReport:
    """Check the listed files, hand the report to ``deliver``, then update the store.

    ``deliver`` is called once, also with an empty report; if it raises, nothing is
    written. Problems met while updating the store raise a SystraqError after the update.
    """
    started = time.monotonic()
    if filelist is None:
        filelist = settings.layout.filetraq_list
        if not filelist.exists() and not filelist.is_symlink():
            raise ConfigError("no such file: list the files whose content to track there, "
                              "one path or glob a line (systraq filetraq-conf writes one)",
                              filelist)
    patterns = parse_list(filelist)
    backupdir = _resolve_backupdir(settings, backupdir)
    _become_store_owner(backupdir)
    with Store(backupdir, settings.filetraq.dir_mode) as store:
        meta = store.meta_dir()
        try:
            with locked(backupdir / os.fsdecode(META) / "lock",
                        settings.snapshot.lock_timeout):
                memory, warning = seen.load(meta)
                report = FiletraqReport(filelist, backupdir, settings.filetraq.max_size)
                if warning:
                    report.warnings.append(f"{backupdir}/.systraq/seen: {warning}; "
                                           "starting afresh (some notices may repeat)")
                with DirCache() as dirs:
                    job = _Job(settings, store, memory, time.localtime(clock()), report, dirs)
                    job.check(patterns)
                    report.seconds = time.monotonic() - started
                    deliver(report)
                    failures = job.commit()
                if job.memory != memory:
                    seen.save(meta, job.memory)
        finally:
            os.close(meta)
    if failures:
        raise SystraqError(f"{failures[0]}" + (f" (and {len(failures) - 1} more)"
                                               if len(failures) > 1 else "")
                           + "; the change is reported again next run")
    return report


def prune_store(settings: Settings, backupdir: Path | None = None,
                older_than_days: float | None = None,
                clock: Callable[[], float] = time.time):
    """Delete the store's dated copies older than the given days (default from settings)."""
    days = settings.filetraq.prune_days if older_than_days is None else older_than_days
    backupdir = _resolve_backupdir(settings, backupdir)
    _become_store_owner(backupdir)
    with Store(backupdir, settings.filetraq.dir_mode) as store:
        os.close(store.meta_dir())
        with locked(backupdir / os.fsdecode(META) / "lock", settings.snapshot.lock_timeout):
            return store.prune(days, clock())


class _Job:
    """One run over one store: check everything, then commit what the report announced."""

    def __init__(self, settings: Settings, store: Store, memory: seen.Memory,
                 when: time.struct_time, report: FiletraqReport, dirs: DirCache) -> None:
        self.settings = settings
        self.limit = settings.filetraq.max_size
        self.store = store
        self.old = memory
        self.memory = seen.Memory()
        self.when = when
        self.report = report
        self.actions: list[_Action] = []
        self.dirs = dirs
        self._blocking: dict[bytes, bytes | None] = {}
        self._pseudo = pseudo_fs_devices()

    # -- listing ---------------------------------------------------------------------

    def list_paths(self, patterns: Iterable[Pattern]) -> _Listing:
        listing = _Listing()
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
                listing.found.setdefault(pattern.text, _Found(
                    pattern.text, None, private=self._unreachable(pattern.text)))
            if not matched:
                listing.unmatched.append(pattern)
        return listing

    def _lstat(self, path: bytes) -> os.stat_result:
        parent, name = split(path)
        try:
            return os.stat(name, dir_fd=self.dirs.open(parent), follow_symlinks=False)
        except (ThroughSymlink, FileNotFoundError, NotADirectoryError):
            raise _Gone() from None

    def _add(self, listing: _Listing, path: bytes) -> None:
        if path in listing.found:
            return
        try:
            st = self._lstat(path)
        except _Gone:
            return
        except PermissionError:
            listing.found[path] = _Found(path, None, private=self._unreachable(path))
            return
        if not stat.S_ISDIR(st.st_mode):
            listing.found[path] = _Found(path, st)
            return
        blocking = self._blocking_dir(split(path)[0]) if path != b"/" else None
        if blocking is not None:
            listing.found[path] = _Found(path, st, private=self._blocked_by(blocking))
            return
        self._walk(listing, path, st)

    def _walk(self, listing: _Listing, top: bytes, top_st: os.stat_result) -> None:
        """Everything below a listed directory, in order; never into a private one."""
        stack = [(top, top_st)]
        while stack:
            path, st = stack.pop()
            if path in listing.found:
                continue
            if st.st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
                listing.found[path] = _Found(path, st, private=f"directory mode "
                                             f"{stat.S_IMODE(st.st_mode):04o}: the files in "
                                             "it are not tracked")
                continue
            try:
                fd = self.dirs.open(path)
                names = sorted(os.fsencode(n) for n in os.listdir(fd))
            except PermissionError:
                listing.found[path] = _Found(path, st, private="directory cannot be listed: "
                                             "the files in it are not tracked")
                continue
            except (ThroughSymlink, FileNotFoundError, NotADirectoryError):
                continue
            subdirs = []
            for name in names:
                child = join(path, name)
                try:
                    child_st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(child_st.st_mode):
                    listing.found.setdefault(child, _Found(child, child_st))
                elif not (child_st.st_dev != st.st_dev and child_st.st_dev in self._pseudo):
                    subdirs.append((child, child_st))
            stack.extend(reversed(subdirs))

    def _blocking_dir(self, directory: bytes) -> bytes | None:
        """The first directory from / down to ``directory`` that lacks o+x (None: none).

        Decided by mode bits, so root and the systraq user come to the same answer; a
        directory this user cannot open counts as blocking.
        """
        prefix = b"/"
        for part in [b"", *(p for p in directory.split(b"/") if p)]:
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

    def _unreachable(self, pattern: bytes) -> str:
        """Why a path (or the literal part of a glob) cannot be reached by this user."""
        parts = [p for p in pattern.split(b"/") if p][:-1]
        literal = parts[:next((i for i, p in enumerate(parts) if _MAGIC.search(p)),
                              len(parts))]
        blocking = self._blocking_dir(b"/" + b"/".join(literal))
        if blocking is None:
            return "a directory on the way cannot be searched"
        return self._blocked_by(blocking)

    @staticmethod
    def _blocked_by(directory: bytes) -> str:
        return f"directory {escape(directory)} is not searchable by everyone"

    # -- checking --------------------------------------------------------------------

    def check(self, patterns: list[Pattern]) -> None:
        listing = self.list_paths(patterns)
        removed: list[bytes] = []
        for path in sorted(listing.found, key=order_key):
            self.report.checked += 1
            try:
                self._check(listing.found[path])
            except _Gone:
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
            if any(_covers(pattern.text, path) for path in removed):
                self.memory.unmatched.add(pattern.text)
        for pattern in listing.unmatched:
            if pattern.text in self.old.unmatched or pattern.text in self.memory.unmatched:
                self.memory.unmatched.add(pattern.text)
                continue
            self.memory.unmatched.add(pattern.text)
            self._item(pattern.text, Event.UNMATCHED,
                       detail=f"{pattern.source}, line {pattern.line}")

    def _item(self, path: bytes, event: Event, **fields: object) -> None:
        self.report.items.append(Item(path, event, **fields))  # type: ignore[arg-type]

    def _keep(self, path: bytes) -> None:
        """Remember what was known of a path this run could not settle."""
        if path in self.old.files:
            self.memory.files[path] = self.old.files[path]

    def _status(self, path: bytes, record: seen.Record, event: Event, **fields: object
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
        if _MAGIC.search(path) and self.old.files[path].kind == seen.PRIVATE:
            return False  # a list line that could not be expanded, not a path
        try:
            self._lstat(path)
        except _Gone:
            return True
        except OSError:
            pass
        return False

    def _check(self, found: _Found) -> None:
        path, st = found.path, found.st
        if found.private or st is None:
            self._private(path, found.private)
            return
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFLNK:
            self._symlink(path)
        elif kind != stat.S_IFREG:
            name = TYPE_NAMES[TYPE_LETTERS.get(kind, "?")]
            self._status(path, seen.Record(seen.SPECIAL, name), Event.SPECIAL, detail=name)
        elif not st.st_mode & stat.S_IROTH:
            self._private(path, f"mode {stat.S_IMODE(st.st_mode):04o}")
        elif (blocking := self._blocking_dir(split(path)[0])) is not None:
            self._private(path, self._blocked_by(blocking))
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
        self._status(path, seen.Record(seen.PRIVATE), Event.PRIVATE, detail=reason,
                     note=note)

    def _symlink(self, path: bytes) -> None:
        parent, name = split(path)
        try:
            target = os.readlink(name, dir_fd=self.dirs.open(parent))
        except (FileNotFoundError, ThroughSymlink, NotADirectoryError):
            raise _Gone() from None
        except OSError:
            self._item(path, Event.RACED)
            self._keep(path)
            return
        shown = escape(os.fsencode(target))
        before = self.old.files.get(path)
        was = before.detail if before and before.kind == seen.SYMLINK else ""
        self._status(path, seen.Record(seen.SYMLINK, shown), Event.SYMLINK, detail=shown,
                     was=was)

    def _regular(self, path: bytes, st: os.stat_result) -> None:
        try:
            content = self.read(path, st)
        except _Raced:
            self._item(path, Event.RACED)
            self._keep(path)
            return
        except _NowPrivate as err:
            self._private(path, str(err))
            return
        except OSError as err:
            self._unreadable(path, err)
            return
        before = self.old.files.get(path)
        if content.data is None:
            new = Version(content.size, content.sha256, first=self.limit)
            record = seen.Record(seen.LARGE, f"{content.size} {self.limit} {content.sha256}")
            if before is not None and before.kind == seen.LARGE:
                old = _large_version(before)
                # A record from before the limit applied to hashing (the whole file's
                # hash) cannot be compared: it is replaced without a notice.
                if old is not None and before != record:
                    self._item(path, Event.LARGE_CHANGED, old=old, new=new)
                self.memory.files[path] = record
            else:
                self._status(path, record, Event.LARGE, detail=str(self.limit), new=new)
            return
        new = Version(content.size, content.sha256)
        self.memory.files[path] = seen.Record(seen.TRACKED)
        self._compare(path, content, new, before)

    def _unreadable(self, path: bytes, err: OSError) -> None:
        error = os.strerror(err.errno) if err.errno else str(err)
        self._status(path, seen.Record(seen.UNREADABLE, error), Event.UNREADABLE,
                     detail=error)

    def _compare(self, path: bytes, content: _Content, new: Version,
                 before: seen.Record | None) -> None:
        assert content.data is not None
        orig = self.store.read_orig(path, self.limit)
        if orig is None:
            self._item(path, Event.CREATED, new=new)
            self.actions.append(_Action(path, content.sha256, None))
            return
        if before is not None and before.kind != seen.TRACKED:
            self._item(path, Event.TRACKED, was=before.kind)
        if orig.content is not None and orig.sha256 == content.sha256:
            return
        kept = self._next_dated(path)
        old = Version(orig.size, orig.sha256, first=0 if orig.content is not None else self.limit)
        self.actions.append(_Action(path, content.sha256, orig.sha256))
        if orig.content is None or is_binary(orig.content, content.data):
            detail = "" if orig.content is not None else \
                "the previous copy is over the size limit: no diff"
            self._item(path, Event.BINARY_CHANGED, old=old, new=new, kept_as=kept,
                       detail=detail)
            return
        ft = self.settings.filetraq
        lines = content_diff(orig.content, content.data,
                             old_label=escape(self.store.shown(path)),
                             new_label=escape(path), old_time_ns=orig.mtime_ns,
                             new_time_ns=content.st.st_mtime_ns, style=ft.diff_style,
                             order=ft.diff_order)
        self._item(path, Event.CHANGED, old=old, new=new, kept_as=kept, diff=tuple(lines))

    def _next_dated(self, path: bytes) -> bytes:
        """The name the dated copy will get: the first free one for this minute."""
        for copy in range(1, 10000):
            name = dated_name(self.when, copy)
            if not self.store.exists(path, name):
                return name
        raise StoreError("too many dated copies within one minute",
                         escape(self.store.shown(path)))

    # -- reading a listed file -------------------------------------------------------

    def read(self, path: bytes, st: os.stat_result) -> _Content:
        """Read (or, over the limit, hash) a world-readable file safely.

        Never follows a symlink, never opens anything but the regular file the listing
        saw (fstat check), never blocks. Raise _Gone, _Raced, _NowPrivate or OSError.
        """
        parent, name = split(path)
        for _ in range(_READ_ATTEMPTS):
            try:
                parent_fd = self.dirs.open(parent)
                fd = open_file_at(parent_fd, name, st)
            except (FileNotFoundError, ThroughSymlink, NotADirectoryError):
                raise _Gone() from None
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENXIO, errno.EWOULDBLOCK):
                    raise _Raced() from None
                raise
            try:
                opened = os.fstat(fd)
                if not same_file(opened, st) or not stat.S_ISREG(opened.st_mode):
                    raise _Raced()
                if not opened.st_mode & stat.S_IROTH:
                    raise _NowPrivate(f"mode {stat.S_IMODE(opened.st_mode):04o}")
                content = self._read_fd(fd, opened)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == \
                    (opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns) and \
                    after.st_mode & stat.S_IROTH:
                return content
            st = after
        raise _Raced()

    def _read_fd(self, fd: int, opened: os.stat_result) -> _Content:
        got = read_limited(fd, opened.st_size, self.limit)
        return _Content(opened, got.sha256, opened.st_size, got.data)

    # -- committing ------------------------------------------------------------------

    def commit(self) -> list[str]:
        """Do the store updates the report announced; return what failed (as messages).

        Everything is staged first (dated copies, new content aside), flushed to disk once,
        then renamed into place and flushed again.
        """
        failures: list[str] = []
        staged = []
        for action in self.actions:
            try:
                staged.append(self._stage(action))
            except (_Gone, _Raced, _NowPrivate):
                continue  # removed or changed again since the report: reported next run
            except (OSError, StoreError) as err:
                failures.append(self._failure(action.path, err))
        if not staged:
            return failures
        self.store.sync()
        for each in staged:
            try:
                self.store.publish(each)
            except (OSError, StoreError) as err:
                failures.append(self._failure(each.path, err))
        self.store.sync()
        return failures

    @staticmethod
    def _failure(path: bytes, err: Exception) -> str:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return f"{escape(path)}: cannot update the backup store: {reason}"

    def _stage(self, action: _Action) -> Staged:
        st = self._lstat(action.path)
        if not stat.S_ISREG(st.st_mode):
            raise _Raced()
        content = self.read(action.path, st)
        if content.sha256 != action.sha256 or content.data is None:
            raise _Raced()
        if action.previous_sha256 is not None:
            orig = self.store.read_orig(action.path, self.limit)
            if orig is None or orig.sha256 != action.previous_sha256:
                raise _Raced()  # another filetraq recorded something meanwhile
        elif self.store.exists(action.path, b"orig"):
            raise _Raced()
        return self.store.stage(action.path, content.data, content.st,
                                keep_previous=action.previous_sha256 is not None,
                                when=self.when)


def _large_version(record: seen.Record) -> Version | None:
    """The size and first-bytes hash a LARGE record holds (None: an older whole-file record)."""
    parts = record.detail.split(" ")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return Version(int(parts[0]), parts[2], first=int(parts[1]))


def _covers(pattern: bytes, path: bytes) -> bool:
    """Whether a list pattern names ``path`` (or a directory above it)."""
    wanted = [p for p in pattern.split(b"/") if p]
    parts = [p for p in path.split(b"/") if p]
    if len(parts) < len(wanted):
        return False
    for glob, name in zip(wanted, parts, strict=False):
        if name.startswith(b".") and not glob.startswith(b"."):
            return False
        if not fnmatch.fnmatchcase(name, glob):
            return False
    return True
