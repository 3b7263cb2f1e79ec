"""Sorting a report's changes by what dpkg explains.

Every changed path is looked up in the dpkg database. A package's file explains its
change when the file holds exactly what the installed version ships (its md5 from
``md5sums`` or ``Conffiles:``, computed from the file *as the snapshot saw it*: the file's
stat record must still be the snapshot's and its content must still have the snapshot's
hash, so a later edit is never passed off as the upgrade) and dpkg's log shows an operation
on that package inside the report's window. Everything else falls into a group of its own:

- ``outside``: a package's file that does not hold what the package ships (or whose
  permissions or owner changed: dpkg records neither), or that was deleted while dpkg
  still lists it: changed outside dpkg, the report leads with these;
- ``unowned``: files of no package;
- ``conffile``: conffiles that differ from the packaged version (edited by the
  administrator, which is normal but still shown);
- ``removed``: files dpkg took away with ``--remove``/``--purge`` (known from the md5
  cache, which remembers which package shipped each file it checked);
- ``explained``: folded into one line per package operation.

``classify`` is the decision, a pure function; ``attribute`` gathers its inputs from the
database, the logs and the files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from systraq.errors import SystraqError
from systraq.fs.nofollow import DirCache, ThroughSymlink, open_file_at, same_file
from systraq.packages.dpkgdb import Database, Package
from systraq.packages.dpkglog import CHANGES_FILES, Operation, operations_between
from systraq.packages.md5cache import remembered_owners
from systraq.packages.resolve import Resolver, Unsafe
from systraq.snapshot.growing import content_hash

if TYPE_CHECKING:
    from systraq.changes.compare import Change
    from systraq.changes.report import ModeReport, Report
    from systraq.config import Settings

OUTSIDE = "outside"
UNOWNED = "unowned"
CONFFILE = "conffile"
REMOVED = "removed"
EXPLAINED = "explained"
GROUPS = (OUTSIDE, UNOWNED, CONFFILE, REMOVED, EXPLAINED)
# Groups a package operation accounts for (what ``baseline --explained`` accepts).
ACCOUNTED = (EXPLAINED, REMOVED)
GROUP_TITLES = {
    OUTSIDE: "changed outside dpkg",
    UNOWNED: "files of no package",
    CONFFILE: "conffiles that differ from the package",
    REMOVED: "removed by dpkg",
    EXPLAINED: "explained by package operations",
}

# Changed fields that are about the content or the inode, which an upgrade renews.
CONTENT_FIELDS = frozenset({"hash", "size", "mtime", "ctime", "ino", "dev", "nlink", "target"})

ADDED, REMOVED_KIND, CHANGED = "added", "removed", "changed"


@dataclass(frozen=True)
class Owner:
    """A package that lists a path, and what it says about the file there."""

    package: Package
    listed: bytes  # the path as the package lists it
    md5: str | None = None  # from md5sums
    conffile_md5: str | None = None  # set for a conffile ("" when dpkg has none yet)

    @property
    def conffile(self) -> bool:
        return self.conffile_md5 is not None


@dataclass(frozen=True)
class Content:
    """A regular file as it is now; ``as_snapshot``: its stat record and content hash are
    still what the snapshot recorded."""

    md5: str | None
    as_snapshot: bool


@dataclass(frozen=True)
class Explanation:
    """One package's operations inside the window, folded."""

    package: str  # name
    arch: str
    old: str | None
    new: str | None
    at: int
    action: str  # the last action that put files on disk or took them away
    command: str = ""

    def to_json(self) -> dict[str, object]:
        return {"package": self.package, "from": self.old, "to": self.new, "at": self.at,
                "command": self.command or None}


@dataclass(frozen=True)
class Verdict:
    group: str
    reason: str = ""
    package: Package | None = None
    explained_by: Explanation | None = None


def fold(operations: Iterable[Operation]) -> dict[str, Explanation]:
    """One explanation per package (``name:arch``) from its operations, oldest first."""
    by_package: dict[str, list[Operation]] = {}
    for op in sorted(operations, key=lambda o: o.at):
        if op.action in CHANGES_FILES:
            by_package.setdefault(op.package, []).append(op)
    out = {}
    for key, ops in by_package.items():
        unpacks = [op for op in ops if op.action != "configure"] or ops
        last = unpacks[-1]
        name, _, arch = key.partition(":")
        if last.action in ("remove", "purge"):
            old, new = last.old, None  # the version taken away
        else:
            old, new = ops[0].old, last.new or last.old
        out[key] = Explanation(name, arch, old, new, last.at, last.action, last.command)
    return out


def classify(kind: str, fields: Iterable[str], entry_type: str | None,
             owners: Sequence[Owner], content: Content | None,
             explanations: dict[str, Explanation], link_in_package: bool = False,
             previous_owner: str | None = None) -> Verdict:
    """Which group one change belongs to.

    ``kind`` is added/removed/changed, ``fields`` the fields that changed, ``entry_type``
    the type letter of the entry as the newest snapshot has it (None when removed),
    ``owners`` the packages listing the path now, ``content`` the file's md5 as the
    snapshot saw it (regular files), ``explanations`` the folded operations in the window
    by ``name:arch``, ``link_in_package`` whether a symlink points to a file of the same
    package, ``previous_owner`` the package the md5 cache last saw shipping the path.
    """
    fields = set(fields)
    if kind == REMOVED_KIND:
        if owners:
            owner = owners[0]
            if owner.conffile:
                return Verdict(CONFFILE, "conffile deleted", owner.package)
            return Verdict(OUTSIDE, "deleted, but dpkg still lists it", owner.package)
        explanation = explanations.get(previous_owner or "")
        if explanation is None:
            return Verdict(UNOWNED)
        if explanation.action in ("remove", "purge"):
            return Verdict(REMOVED, f"dpkg --{explanation.action}", None, explanation)
        return Verdict(EXPLAINED, "no longer shipped", None, explanation)
    if not owners:
        return Verdict(UNOWNED)
    verdicts = [_owned(kind, fields, entry_type, owner, content, explanations,
                       link_in_package) for owner in owners]
    for group in (EXPLAINED, CONFFILE, OUTSIDE):
        for verdict in verdicts:
            if verdict.group == group:
                return verdict
    return verdicts[0]


def _owned(kind: str, fields: set[str], entry_type: str | None, owner: Owner,
           content: Content | None, explanations: dict[str, Explanation],
           link_in_package: bool) -> Verdict:
    package = owner.package
    explanation = explanations.get(package.key)
    if kind == CHANGED and fields - CONTENT_FIELDS:
        changed = ", ".join(sorted(fields - CONTENT_FIELDS))
        return Verdict(OUTSIDE, f"{changed} changed: dpkg records no {changed}", package)
    if entry_type == "f":
        if content is None or content.md5 is None:
            return Verdict(OUTSIDE, "content could not be checked", package)
        if not content.as_snapshot:
            return Verdict(OUTSIDE, "changed again since the snapshot", package)
        if owner.conffile:
            if content.md5 != owner.conffile_md5:
                return Verdict(CONFFILE, "differs from the packaged version", package)
            if explanation is None:
                return Verdict(CONFFILE, "the packaged version, but no package operation "
                               "in this window", package)
            return Verdict(EXPLAINED, "", package, explanation)
        if owner.md5 is None:
            return Verdict(OUTSIDE, "the package has no md5sum for it", package)
        if content.md5 != owner.md5:
            return Verdict(OUTSIDE, f"differs from what {package.name} {package.version} "
                           "ships", package)
        if explanation is None:
            return Verdict(OUTSIDE, f"what {package.name} ships, but no package operation "
                           "in this window", package)
        return Verdict(EXPLAINED, "", package, explanation)
    if entry_type == "l":
        if not link_in_package:
            return Verdict(OUTSIDE, f"a symlink to a path {package.name} does not ship",
                           package)
        if explanation is None:
            return Verdict(OUTSIDE, "no package operation in this window", package)
        return Verdict(EXPLAINED, "", package, explanation)
    if entry_type == "d":
        if explanation is None:
            return Verdict(OUTSIDE, "no package operation in this window", package)
        return Verdict(EXPLAINED, "", package, explanation)
    return Verdict(OUTSIDE, "not what a package ships", package)


# --- gathering the facts -------------------------------------------------------------------

@dataclass
class Attribution:
    """The verdict on each change of a report, by (mode, path)."""

    verdicts: dict[tuple[str, bytes], Verdict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def verdict(self, mode: str, path: bytes) -> Verdict:
        return self.verdicts.get((mode, path), Verdict(UNOWNED))

    def accounted(self, mode: str) -> set[bytes]:
        """Paths of ``mode`` whose change a package operation accounts for."""
        return {path for (m, path), v in self.verdicts.items()
                if m == mode and v.group in ACCOUNTED}

    @property
    def unexplained(self) -> int:
        return sum(1 for v in self.verdicts.values() if v.group not in ACCOUNTED)

    @property
    def sorts_anything(self) -> bool:
        """Whether any change is a package's (else the report is better left as it is)."""
        return any(v.group != UNOWNED for v in self.verdicts.values())

    def unexplained_in(self, report: Report) -> int:
        """Changes of a report no package operation accounts for."""
        return sum(1 for mode, change in report.changes
                   if self.verdict(mode, change.path).group not in ACCOUNTED)


@dataclass(frozen=True)
class ChangeFacts:
    """What attribution needs of one change (decoupled from the report's classes)."""

    path: bytes
    kind: str
    fields: frozenset[str]
    entry_type: str | None  # of the newest entry; None when removed
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    ino: int = 0
    dev: int = 0
    perms: int = 0
    uid: int = 0
    gid: int = 0
    hash: str = ""
    target: bytes | None = None


class _Tree:
    """The database and files of one root, looked up by path on disk."""

    def __init__(self, root: bytes, admindir: bytes | None,
                 changes: dict[bytes, ChangeFacts]) -> None:
        self.root = root
        self.db = Database.open(root, admindir)
        self.resolver = Resolver(root)
        self.dirs = DirCache(64)
        self.md5sums: dict[str, dict[bytes, str] | None] = {}
        self.owners: dict[bytes, list[tuple[Package, bytes]]] = {}
        self.warnings: list[str] = []
        wanted = set(changes)
        wanted.update(self.link_target(f) for f in changes.values()
                      if f.entry_type == "l" and f.target is not None)
        for package in self.db.packages:
            if not package.on_disk:
                continue
            try:
                listed = self.db.file_list(package) or []
            except SystraqError as err:
                self.warnings.append(str(err))
                continue
            for path in listed:
                on_disk = self.physical(self.db.checked_path(path, package))
                if on_disk in wanted:
                    self.owners.setdefault(on_disk, []).append((package, path))

    def close(self) -> None:
        self.db.close()
        self.dirs.close()

    def physical(self, path: bytes) -> bytes:
        """The symlink-free path of a package path (itself where it cannot be resolved)."""
        parent, _, name = path.rpartition(b"/")
        try:
            directory = self.resolver.directory(parent or b"/")
        except (OSError, Unsafe):
            return path
        return (directory.rstrip(b"/") + b"/" + name) if name else directory

    def owners_of(self, path: bytes) -> list[Owner]:
        out = []
        for package, listed in self.owners.get(path, []):
            if package.key not in self.md5sums:
                try:
                    self.md5sums[package.key] = self.db.md5sums(package)
                except SystraqError as err:
                    self.warnings.append(str(err))
                    self.md5sums[package.key] = None
            sums = self.md5sums[package.key] or {}
            conffile = next((c for c in package.conffiles if c.path == listed), None)
            out.append(Owner(package, listed, sums.get(listed),
                             conffile.md5 if conffile is not None else None))
        return out

    def content(self, facts: ChangeFacts, algorithm: str) -> Content:
        """md5 of the file now, and whether it is still the file the snapshot recorded."""
        from systraq.snapshot.hashing import ALGORITHMS, DEFAULT_LIMIT, hash_fd, plain_digest

        directory, _, name = facts.path.rpartition(b"/")
        real = self.resolver.real(directory or b"/")
        try:
            dir_fd = self.dirs.open(real)
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return Content(None, False)
            fd = open_file_at(dir_fd, name, st)
        except (OSError, ThroughSymlink):
            return Content(None, False)
        try:
            opened = os.fstat(fd)
            if not same_file(opened, st):
                return Content(None, False)
            md5 = plain_digest(fd, ALGORITHMS["md5"], opened.st_size)
            digest = ""
            if facts.hash and algorithm in ALGORITHMS:
                os.lseek(fd, 0, os.SEEK_SET)
                digest = hash_fd(fd, ALGORITHMS[algorithm], opened, DEFAULT_LIMIT).value
            after = os.fstat(fd)
        except OSError:
            return Content(None, False)
        finally:
            os.close(fd)
        record = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                  st.st_ctime_ns, st.st_ino, st.st_dev)
        seen = (facts.perms, facts.uid, facts.gid, facts.size, facts.mtime_ns, facts.ctime_ns,
                facts.ino, facts.dev)
        unchanged = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == \
            (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        as_snapshot = record == seen and unchanged and bool(facts.hash) and digest == facts.hash
        return Content(md5, as_snapshot)

    def link_in_package(self, facts: ChangeFacts, owners: Sequence[Owner]) -> bool:
        """Whether a symlink points at a path one of its owners ships."""
        if facts.target is None:
            return False
        keys = {owner.package.key for owner in owners}
        return any(p.key in keys for p, _ in self.owners.get(self.link_target(facts), []))

    def link_target(self, facts: ChangeFacts) -> bytes:
        """The symlink-free path a symlink entry points to, inside ROOT."""
        assert facts.target is not None
        directory = facts.path.rpartition(b"/")[0] or b"/"
        target = facts.target if facts.target.startswith(b"/") else \
            directory.rstrip(b"/") + b"/" + facts.target
        parts: list[bytes] = []
        for part in target.split(b"/"):
            if part in (b"", b"."):
                continue
            if part == b"..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return self.physical(b"/" + b"/".join(parts))


def attribute(changes: Sequence[ChangeFacts], *, mode: str, window: tuple[int, int],
              algorithm: str, root: str | bytes = b"/", admindir: str | bytes | None = None,
              cache_path: Path | None = None, into: Attribution | None = None
              ) -> Attribution:
    """Verdicts on one mode's changes, for operations logged within ``window`` (seconds).

    Paths are as the snapshot has them (on the host); those outside ROOT are of no package.
    """
    out = into if into is not None else Attribution()
    if not changes:
        return out
    root = os.fsencode(root) or b"/"
    prefix = b"" if root == b"/" else root.rstrip(b"/")
    inside = {}
    for facts in changes:
        if not prefix or facts.path.startswith(prefix + b"/"):
            inside[facts.path[len(prefix):]] = facts
        else:
            out.verdicts[(mode, facts.path)] = Verdict(UNOWNED)
    try:
        tree = _Tree(root, None if admindir is None else os.fsencode(admindir), inside)
    except (SystraqError, OSError) as err:
        out.warnings.append(f"changes not sorted by package: {err}")
        for facts in inside.values():
            out.verdicts[(mode, facts.path)] = Verdict(UNOWNED, "dpkg database not readable")
        return out
    try:
        operations = operations_between(root, window[0], window[1])
        out.warnings.extend(operations.warnings)
        explanations = fold(operations.operations)
        previous: dict[bytes, str] | None = None
        for path, facts in inside.items():
            host_path = facts.path
            facts = replace(facts, path=path)
            owners = tree.owners_of(path)
            content = tree.content(facts, algorithm) if facts.entry_type == "f" and owners \
                else None
            link_ok = tree.link_in_package(facts, owners) if facts.entry_type == "l" and \
                owners else False
            previous_owner = None
            if facts.kind == REMOVED_KIND and not owners and explanations:
                if previous is None:
                    previous = _remembered_owners(tree, cache_path, root, admindir)
                previous_owner = previous.get(path)
            out.verdicts[(mode, host_path)] = classify(
                facts.kind, facts.fields, facts.entry_type, owners, content, explanations,
                link_ok, previous_owner)
        out.warnings.extend(tree.warnings)
    finally:
        tree.close()
    return out


def _remembered_owners(tree: _Tree, cache_path: Path | None, root: bytes,
                       admindir: str | bytes | None) -> dict[bytes, str]:
    """Which package shipped each path when the md5 cache was last written."""
    if cache_path is None:
        return {}
    owners = remembered_owners(cache_path, root, os.fsencode(admindir) if admindir else b"")
    out = {}
    for path, package in owners.items():
        out[tree.physical(path)] = package
        out.setdefault(path, package)
    return out



# --- a report's sections -------------------------------------------------------------------

def facts_of(change: Change) -> ChangeFacts:
    """The facts of a report's change that attribution looks at."""
    new = change.new
    if new is None:
        return ChangeFacts(change.path, change.kind, frozenset(change.fields), None)
    return ChangeFacts(change.path, change.kind, frozenset(change.fields), new.type,
                       new.size, new.mtime_ns, new.ctime_ns, new.ino, new.dev, new.perms,
                       new.uid, new.gid, content_hash(new.hash) if new.status == "ok" else "",
                       new.target)


def attribute_sections(settings: Settings, sections: Iterable[ModeReport]
                       ) -> Attribution | None:
    """Verdicts for every change of a report's mode sections; None without a dpkg
    database (not a Debian system: the report stays as it is).

    The window of a section runs from the copy it is compared with to the newest
    snapshot; a section without a copy (a first report) has nothing to attribute.
    """
    packages = settings.packages
    admindir = packages.admindir or os.path.join(packages.root, "var/lib/dpkg")
    if not os.path.exists(os.path.join(admindir, "status")):
        return None
    out = Attribution()
    for section in sections:
        if section.old is None or not section.changes:
            continue
        # dpkg.log has whole seconds: an operation logged in the second a snapshot was
        # taken may have come after it, so that second belongs to the window.
        window = (section.old.created_ns // 1_000_000_000,
                  section.new.created_ns // 1_000_000_000)
        attribute([facts_of(c) for c in section.changes], mode=section.mode, window=window,
                  algorithm=section.new.hash, root=packages.root,
                  admindir=packages.admindir or None,
                  cache_path=settings.layout.packages_cache, into=out)
    return out
