"""The privilege boundary: run a function as another account in a child process.

``run_as(account, fn)`` forks; the child drops to the account (supplementary groups, gid,
uid, in that order, then checks that root cannot be regained), runs ``fn`` and sends its
result back over a pipe in frames; the parent returns it, or raises the child's error as
its own. ``stream_as`` does the same for a function that yields items as it goes. Nothing
else in systraq changes its own uid.

What crosses the pipe comes from a process another account could tamper with (ptrace by
the same uid), so the parent never unpickles it: items are raw bytes or JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from systraq.errors import ConfigError, LockedError, StateError, SystraqError, shown_path

_BYTES, _JSON, _DONE, _ERROR = b"B", b"J", b"D", b"E"
_HEAD = 9  # kind (1 byte) + payload length (8 bytes)
_PR_SET_PDEATHSIG = 1
# Errors the child may report as themselves; anything else becomes a SystraqError.
_ERRORS: dict[str, type[SystraqError]] = {
    cls.__name__: cls for cls in (SystraqError, ConfigError, StateError, LockedError)}


class PrivilegeError(SystraqError):
    """The child could not become the account, or ended without an answer."""


def _encode_json(value: object) -> bytes:
    def tag(obj: object) -> object:
        if isinstance(obj, bytes):
            return {"__bytes__": obj.decode("latin-1")}
        raise TypeError(f"cannot send {type(obj).__name__} across the privilege boundary")

    return json.dumps(value, default=tag).encode()


def _decode_json(data: bytes) -> object:
    def untag(obj: dict) -> object:
        if len(obj) == 1 and "__bytes__" in obj:
            return obj["__bytes__"].encode("latin-1")
        return obj

    return json.loads(data, object_hook=untag)


def _send(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(kind + len(payload).to_bytes(8, "big"))
    out.write(payload)


def _receive(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    head = stream.read(_HEAD)
    if len(head) < _HEAD:
        return None
    size = int.from_bytes(head[1:], "big")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return head[:1], payload


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (a killed cron job's scan)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def drop_to(account: pwd.struct_passwd) -> None:
    """Become ``account`` for good: no supplementary groups, its gid, its uid; verified."""
    uid, gid = account.pw_uid, account.pw_gid
    if uid == 0:
        raise PrivilegeError("refusing to 'drop' to uid 0")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) \
            or os.getgroups() not in ([], [gid]):
        raise PrivilegeError(f"could not become {account.pw_name}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError(f"root could be regained after dropping to {account.pw_name}")


def _child(account: pwd.struct_passwd, fn: Callable[..., Iterable[Any]], args: tuple,
           write_fd: int, parent: int) -> None:  # pragma: no cover - runs in the child
    status = 2
    try:  # the child never leaves: else an error would unwind into the parent's code
        status = 0
        with os.fdopen(write_fd, "wb", buffering=1 << 16) as out:
            try:
                _die_with_parent(parent)
                drop_to(account)
                os.chdir("/")
                for item in fn(*args):
                    if isinstance(item, bytes | bytearray | memoryview):
                        _send(out, _BYTES, bytes(item))
                    else:
                        _send(out, _JSON, _encode_json(item))
                _send(out, _DONE, b"")
            except BaseException as err:  # reported to the parent, then exit
                kind = type(err).__name__ if isinstance(err, SystraqError) else ""
                message = str(err) if kind else f"{type(err).__name__}: {err}"
                if isinstance(err, SystraqError):
                    message, path, line = err.message, err.path, err.line
                else:
                    path = line = None
                path = shown_path(path) if path is not None else None
                status = 2
                _send(out, _ERROR, _encode_json([kind, message, path, line]))
    finally:
        os._exit(status)


def stream_as(account: pwd.struct_passwd, fn: Callable[..., Iterable[Any]], *args: Any
              ) -> Iterator[Any]:
    """Run ``fn(*args)`` as ``account`` and yield what it yields (bytes, or JSON values).

    The child's SystraqError is raised here as it was; any other error as a SystraqError
    naming the account. Closing the iterator early kills the child.
    """
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        _child(account, fn, args, write_fd, parent)
    os.close(write_fd)
    done = False
    error: list | None = None
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 16) as stream:
            while (frame := _receive(stream)) is not None:
                kind, payload = frame
                if kind == _BYTES:
                    yield payload
                elif kind == _JSON:
                    yield _decode_json(payload)
                elif kind == _DONE:
                    done = True
                    break
                else:
                    decoded = _decode_json(payload)
                    error = decoded if isinstance(decoded, list) and len(decoded) == 4 \
                        else ["", "malformed error report", None, None]
                    break
    finally:
        if not done and error is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if error is not None:
        kind, message, path, line = error
        cls = _ERRORS.get(kind)
        if cls is not None:
            raise cls(str(message), path, line if isinstance(line, int) else None)
        raise PrivilegeError(f"as {account.pw_name}: {message}")
    if not done or os.waitstatus_to_exitcode(status) != 0:
        raise PrivilegeError(f"the child running as {account.pw_name} ended without an "
                             f"answer (status {os.waitstatus_to_exitcode(status)})")


def run_as(account: pwd.struct_passwd, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` as ``account`` in a child process; return its result."""
    def once(*inner: Any) -> Iterator[Any]:
        yield fn(*inner)

    results = list(stream_as(account, once, *args))
    return results[0]


def account_named(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None
