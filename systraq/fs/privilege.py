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

from systraq.config import Settings
from systraq.errors import ConfigError, LockedError, StateError, SystraqError, shown_path
from systraq.fs.oserror import describe

_BYTES, _JSON, _ASK, _DONE, _ERROR = b"B", b"J", b"Q", b"D", b"E"
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


class Channel:
    """The child's side of the pipes: ``send`` streams an item, ``ask`` waits for a reply."""

    def __init__(self, out: BinaryIO, replies: BinaryIO) -> None:
        self._out = out
        self._replies = replies

    def send(self, item: Any) -> None:
        if isinstance(item, bytes | bytearray | memoryview):
            _send(self._out, _BYTES, bytes(item))
        else:
            _send(self._out, _JSON, _encode_json(item))

    def ask(self, question: Any) -> Any:
        _send(self._out, _ASK, _encode_json(question))
        self._out.flush()
        frame = _receive(self._replies)
        if frame is None:  # the parent is gone: stop here, whatever was under way
            os._exit(1)
        return _decode_json(frame[1])


class Question:
    """What the child asked; the parent answers with ``Conversation.reply``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _child(account: pwd.struct_passwd, fn: Callable[..., Any], args: tuple,
           out_fd: int, reply_fd: int, parent: int) -> None:  # pragma: no cover - child
    status = 2
    try:  # the child never leaves: else an error would unwind into the parent's code
        status = 0
        with os.fdopen(out_fd, "wb", buffering=1 << 16) as out, \
                os.fdopen(reply_fd, "rb") as replies:
            try:
                drop_to(account)
                _die_with_parent(parent)  # after the drop, which would clear the request
                os.chdir("/")
                result = fn(Channel(out, replies), *args)
                _send(out, _DONE, _encode_json(result))
            except BaseException as err:  # reported to the parent, then exit
                status = 2
                _send(out, _ERROR, _encode_json(_error_report(err)))
    finally:
        os._exit(status)


def _error_report(err: BaseException) -> list:
    """``[kind, message, path, line]`` of a child's error, for the parent to raise again."""
    if isinstance(err, SystraqError):
        # The path as the message will show it (escaped), whatever its type was.
        path = shown_path(err.path) if err.path is not None else None
        return [type(err).__name__, err.message, path, err.line]
    if isinstance(err, OSError) and err.errno is not None:
        # With its errno and file, so that the message names the file (ENOSPC, EROFS).
        filename = os.fspath(err.filename) if err.filename is not None else None
        return ["OSError", err.strerror or str(err), filename, err.errno]
    return ["", f"{type(err).__name__}: {err}", None, None]


class Conversation:
    """The parent's side: iterate over what the child sends (``Question`` for what it
    asks, to be answered with ``reply``); ``result`` holds what ``fn`` returned."""

    def __init__(self, account: pwd.struct_passwd, fn: Callable[..., Any], args: tuple
                 ) -> None:
        self.account = account
        self.result: Any = None
        read_fd, out_fd = os.pipe()
        reply_read, reply_write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(read_fd)
            os.close(reply_write)
            _child(account, fn, args, out_fd, reply_read, parent)
        os.close(out_fd)
        os.close(reply_read)
        self._pid = pid
        self._stream = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self._replies = os.fdopen(reply_write, "wb")

    def reply(self, answer: Any) -> None:
        _send(self._replies, _JSON, _encode_json(answer))
        self._replies.flush()

    def __iter__(self) -> Iterator[Any]:
        done = False
        error: list | None = None
        try:
            while (frame := _receive(self._stream)) is not None:
                kind, payload = frame
                if kind == _BYTES:
                    yield payload
                elif kind == _JSON:
                    yield _decode_json(payload)
                elif kind == _ASK:
                    yield Question(_decode_json(payload))
                elif kind == _DONE:
                    self.result = _decode_json(payload)
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
                    os.kill(self._pid, signal.SIGKILL)
            self._stream.close()
            self._replies.close()
            _, status = os.waitpid(self._pid, 0)
        if error is not None:
            kind, message, path, line = error
            if kind == "OSError" and isinstance(line, int):
                failed = OSError(line, str(message), path)
                raise PrivilegeError(f"as {self.account.pw_name}: {describe(failed)}")
            cls = _ERRORS.get(kind)
            if cls is not None:
                raise cls(str(message), path, line if isinstance(line, int) else None)
            raise PrivilegeError(f"as {self.account.pw_name}: {message}")
        if not done or os.waitstatus_to_exitcode(status) != 0:
            raise PrivilegeError(f"the child running as {self.account.pw_name} ended "
                                 f"without an answer (status "
                                 f"{os.waitstatus_to_exitcode(status)})")


def converse_as(account: pwd.struct_passwd, fn: Callable[..., Any], *args: Any
                ) -> Conversation:
    """Run ``fn(channel, *args)`` as ``account``; talk with it through the Conversation."""
    return Conversation(account, fn, args)


def stream_as(account: pwd.struct_passwd, fn: Callable[..., Iterable[Any]], *args: Any
              ) -> Iterator[Any]:
    """Run ``fn(*args)`` as ``account`` and yield what it yields (bytes, or JSON values).

    The child's SystraqError is raised here as it was; any other error as a SystraqError
    naming the account. Closing the iterator early kills the child.
    """
    def relay(channel: Channel, *inner: Any) -> None:
        for item in fn(*inner):
            channel.send(item)

    yield from converse_as(account, relay, *args)


def run_as(account: pwd.struct_passwd, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` as ``account`` in a child process; return its result."""
    conversation = converse_as(account, lambda _channel, *inner: fn(*inner), *args)
    for _ in conversation:
        pass
    return conversation.result


def account_named(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def pub_account(settings: Settings) -> pwd.struct_passwd | None:
    """The unprivileged account root drops to for pub work (None: not root, no drop)."""
    if os.geteuid() != 0:
        return None
    for name in (settings.snapshot.pub_user, "nobody"):
        account = account_named(name)
        if account is None:
            continue
        if account.pw_uid == 0:
            raise SystraqError(f"snapshot.pub_user {name!r} has uid 0: pub work must run "
                               "unprivileged; name an unprivileged account")
        return account
    raise SystraqError(f"neither the pub user {settings.snapshot.pub_user!r} nor 'nobody' "
                       "exists: cannot read pub files unprivileged")
