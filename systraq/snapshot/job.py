"""The snapshot job: listfiles → selection → scan → state file, under a lock per mode."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from systraq.config import Settings
from systraq.errors import ConfigError, SystraqError
from systraq.fs.lock import locked
from systraq.snapshot.hashcache import PreviousSnapshot
from systraq.snapshot.hashing import new_hasher
from systraq.snapshot.listfiles import (
    Pattern,
    home_directories,
    parse_homelist,
    parse_list,
    select,
)
from systraq.snapshot.scan import Scanner, ScanStats
from systraq.snapshot.state import Header, StateWriter

Progress = Callable[[int, int], None]  # entries so far, bytes of regular files


@dataclass
class SnapshotResult:
    mode: str
    path: Path
    entries: int
    stats: ScanStats
    unmatched: list[Pattern] = field(default_factory=list)
    unreachable: int = 0
    seconds: float = 0.0
    scanned_as: str = ""


@dataclass
class _Plan:
    lists: list[Pattern]
    homelists: list[Pattern]
    sources: tuple[bytes, ...]


def _plan(settings: Settings, mode: str) -> _Plan:
    list_file = settings.layout.list_file(mode, "list")
    home_file = settings.layout.list_file(mode, "homelist")
    if not list_file.exists() and not home_file.exists():
        raise ConfigError(f"nothing to snapshot in {mode} mode: create {list_file.name} "
                          f"(and {home_file.name} for paths in homes)", settings.config_dir)
    lists = parse_list(list_file) if list_file.exists() else []
    homelists = parse_homelist(home_file) if home_file.exists() else []
    sources = tuple(os.fsencode(p) for p in (list_file, home_file) if p.exists())
    return _Plan(lists, homelists, sources)


def pub_scan_user(settings: Settings) -> pwd.struct_passwd | None:
    """The unprivileged account a root-run pub scan drops to (None: no drop needed)."""
    if os.geteuid() != 0:
        return None
    for name in (settings.snapshot.pub_user, "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return account if account.pw_uid != 0 else None
    raise SystraqError(f"neither the pub user {settings.snapshot.pub_user!r} nor 'nobody' "
                       "exists: cannot scan pub files unprivileged")


def take_snapshot(settings: Settings, mode: str, *, algorithm: str | None = None,
                  full: bool = False, progress: Progress | None = None) -> SnapshotResult:
    """Scan what the mode's lists name and replace its state file atomically."""
    if mode == "root" and os.geteuid() != 0:
        raise SystraqError("the root snapshot reads files only root can read: run it as root")
    algorithm = algorithm or settings.snapshot.hash
    new_hasher(algorithm)
    plan = _plan(settings, mode)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.layout.snapshot(mode)
    started = time.monotonic()
    drop_to = pub_scan_user(settings) if mode == "pub" else None
    lock = settings.layout.snapshot_lock(mode)
    shared_with = (drop_to.pw_uid, drop_to.pw_gid) if drop_to else None
    with locked(lock, settings.snapshot.lock_timeout, owner=shared_with):
        created_ns = time.time_ns()
        previous = None if full else PreviousSnapshot.open(
            path, algorithm, settings.snapshot.full_rehash_hours, created_ns)
        header = Header(host=socket.gethostname(), mode=mode, created_ns=created_ns,
                        hash=algorithm, lists=plan.sources,
                        rehash_interval_ns=int(settings.snapshot.full_rehash_hours * 3600e9))
        scanner = Scanner(algorithm, settings.snapshot.workers, previous, progress,
                          hash_limit=settings.snapshot.hash_limit)
        # A pub snapshot root takes by hand belongs to the pub account, whose hourly job
        # replaces it next (in a sticky state dir it could not otherwise).
        with contextlib.closing(previous) if previous else contextlib.nullcontext(), \
                StateWriter(path, header, private=(mode == "root"), owner=shared_with) as writer:
            if drop_to is None:
                result = _scan_here(mode, plan, scanner, writer)
            else:
                result = _scan_as(drop_to, mode, plan, scanner, writer, progress)
    result.path = path
    result.entries = writer.count
    result.seconds = time.monotonic() - started
    return result


def _scan_here(mode: str, plan: _Plan, scanner: Scanner, writer: StateWriter
               ) -> SnapshotResult:
    for kind, payload in _scan_events(mode, plan, scanner):
        if kind == "chunk":
            writer.add_chunk(payload)
        else:
            return payload
    raise AssertionError("scan ended without a result")


def _scan_events(mode: str, plan: _Plan, scanner: Scanner) -> Iterator[tuple[str, Any]]:
    selection = select(plan.lists, plan.homelists, home_directories(),
                       record_homes=(mode == "pub"))
    for chunk in scanner.chunks(selection.roots):
        yield "chunk", chunk
    stats = scanner.stats
    yield "result", SnapshotResult(
        mode=mode, path=Path(), entries=0, stats=stats, unmatched=selection.unmatched,
        unreachable=selection.unreachable + stats.unreachable,
        scanned_as=pwd.getpwuid(os.geteuid()).pw_name)


# Frames from the unprivileged scan: kind (1 byte), payload length (8 bytes), payload.
_CHUNK, _RESULT, _ERROR = b"C", b"R", b"E"


def _send(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(kind + len(payload).to_bytes(8, "big") + payload)


def _receive(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    head = stream.read(9)
    if len(head) < 9:
        return None
    payload = stream.read(int.from_bytes(head[1:], "big"))
    return head[:1], payload


def _scan_as(account: pwd.struct_passwd, mode: str, plan: _Plan, scanner: Scanner,
             writer: StateWriter, progress: Progress | None) -> SnapshotResult:
    """Scan in a child process that has dropped root, and write what it streams back."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, checked through its output
        os.close(read_fd)
        status = 0
        with os.fdopen(write_fd, "wb", buffering=1 << 16) as out:
            try:
                os.setgroups([])
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
                os.chdir("/")
                # Progress goes back with each chunk: the parent draws it.
                scanner.progress = None
                for kind, payload in _scan_events(mode, plan, scanner):
                    if kind == "chunk":
                        seen = f"{scanner.stats.entries} {scanner.stats.sizes}\n".encode()
                        _send(out, _CHUNK, seen + b"".join(payload))
                    else:
                        summary = dataclasses.asdict(payload.stats)
                        summary["unmatched"] = [(str(p.source), p.line)
                                                for p in payload.unmatched]
                        summary["unreachable"] = payload.unreachable
                        _send(out, _RESULT, json.dumps(summary).encode())
            except BaseException as err:  # reported to the parent, then exit
                _send(out, _ERROR, str(err).encode(errors="replace"))
                status = 2
        os._exit(status)
    os.close(write_fd)
    result: SnapshotResult | None = None
    error = None
    with os.fdopen(read_fd, "rb", buffering=1 << 16) as stream:
        while (frame := _receive(stream)) is not None:
            kind, payload = frame
            if kind == _CHUNK:
                seen, _, data = payload.partition(b"\n")
                writer.add_chunk(data.splitlines(keepends=True))
                if progress:
                    entries, size = seen.split()
                    progress(int(entries), int(size))
            elif kind == _RESULT:
                summary = json.loads(payload)
                known = {(str(p.source), p.line): p for p in plan.lists + plan.homelists}
                unmatched = [known[tuple(where)] for where in summary.pop("unmatched")]
                unreachable = summary.pop("unreachable")
                result = SnapshotResult(mode=mode, path=Path(), entries=0,
                                        stats=ScanStats(**summary), unmatched=unmatched,
                                        unreachable=unreachable, scanned_as=account.pw_name)
            else:
                error = payload.decode(errors="replace").replace("\n", " ")
    _, status = os.waitpid(pid, 0)
    if error or result is None or os.waitstatus_to_exitcode(status) != 0:
        raise SystraqError(f"pub scan as {account.pw_name} failed: {error or 'no result'}")
    return result
