"""The systraq CLI for tests: in this process as a fresh process would run, or for real.

In this process, ``systraq.cli.run`` gets streams of its own, and everything process-wide
that a run could read or change (systraq's caches, the working directory, the environment
and time zone, the umask, stdin, signal handlers, the credentials) starts as a new process
would have it and is put back afterwards. A real process is for what needs one: another
account (setpriv), signals, closed streams, runs at the same time. It runs the system's
interpreter on a copy of the package that every account can read, made once per session,
so that the checkout itself may sit where other accounts cannot enter.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from systraq import cli
from systraq.render import Terminal

REPO = Path(__file__).resolve().parent.parent
UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


# --- in this process -----------------------------------------------------------------------

class RunTimedOut(BaseException):
    """A run in this process outlived its timeout (BaseException: no handler takes it)."""


def run_in_process(argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None,
                   input: str | None = None, timeout: float = 120
                   ) -> subprocess.CompletedProcess:
    """``systraq ARGV`` in this process; returns what subprocess.run(text=True) would."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("runs in this process go one at a time from the main thread; "
                           "runs at the same time need real processes (process=True)")
    # As a real process has them under a UTF-8 locale.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with as_a_fresh_process(cwd, env or {}, input, timeout):
        status = cli.run(argv, Terminal(out, err))
    return subprocess.CompletedProcess(["systraq", *argv], status, _read_back(out),
                                       _read_back(err))


def _read_back(stream: io.TextIOWrapper) -> str:
    """The text a parent reading this stream through a pipe with text=True would get."""
    stream.flush()
    data = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def _credentials() -> tuple[object, ...]:
    return os.getresuid(), os.getresgid(), sorted(os.getgroups())


def clear_systraq_caches() -> None:
    """Empty every cache in systraq's modules (user and group names, the host name...)."""
    for name, module in list(sys.modules.items()):
        if name != "systraq" and not name.startswith("systraq."):
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) == name and hasattr(value, "cache_clear"):
                value.cache_clear()


def _signal_handlers() -> dict[signal.Signals, object]:
    """The handlers Python set or knows of (None: set outside Python, left as it is)."""
    handlers = {}
    for number in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            handler = signal.getsignal(number)
            if handler is not None:
                handlers[number] = handler
    return handlers


def _timed_out(signum: int, frame: object) -> None:
    raise RunTimedOut("the run in this process took too long")


@contextlib.contextmanager
def as_a_fresh_process(cwd: Path, env: Mapping[str, str], input: str | None,
                       timeout: float) -> Iterator[None]:
    pid, credentials, handlers = os.getpid(), _credentials(), _signal_handlers()
    saved_env, here, stdin = dict(os.environ), os.getcwd(), sys.stdin
    umask = os.umask(0o022)
    os.umask(umask)
    clear_systraq_caches()
    os.environ.update(env)
    time.tzset()
    os.chdir(cwd)
    sys.stdin = io.StringIO(input or "")
    alarm = signal.signal(signal.SIGALRM, _timed_out)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        if os.getpid() != pid:
            # A child the run forked came back up to here: it must not go on with the tests.
            os._exit(70)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        for number, handler in handlers.items():
            if signal.getsignal(number) is not handler:
                signal.signal(number, handler)
        sys.stdin = stdin
        os.chdir(here)
        os.umask(umask)
        os.environ.clear()
        os.environ.update(saved_env)
        time.tzset()
        if _credentials() != credentials:
            pytest.exit("a systraq run in the test process changed its credentials: that "
                        "test must run systraq in a real process (process=True)", 3)


# --- in a real process ---------------------------------------------------------------------

@dataclass(frozen=True)
class Launcher:
    """Starts systraq as a real process that any account can run."""

    python: str
    library: Path

    def command(self, *args: str, user: str | None = None) -> list[str]:
        boot = (f"import sys; sys.path.insert(0, {str(self.library)!r}); "
                "from systraq.cli import main; main()")
        command = [self.python, "-I", "-c", boot, *args]
        if user is None:
            return command
        assert user == "nobody", "only nobody has a setpriv line here"
        return UNPRIVILEGED + command


def install_copy(target: Path) -> Launcher:
    """Copy systraq and the distributions it runs on into target (an existing 0755 dir)."""
    _copy_tree(REPO / "systraq", target / "systraq")
    for dist in _runtime_distributions("systraq"):
        for file in dist.files or ():
            top = file.parts[0]
            if top == ".." or top.endswith((".dist-info", ".egg-info", ".data")) \
                    or file.suffix == ".pyc":
                continue
            _copy_file(Path(str(dist.locate_file(file))), target / file)
    return Launcher(_interpreter(), target)


def _interpreter() -> str:
    """This Python's interpreter, or the system's of the same version where other accounts
    cannot reach this one (a pyenv build under a 0700 home)."""
    ours = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (ours, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.path.isfile(candidate) and _reachable_by_everyone(Path(candidate)):
            return candidate
    return ours  # the session's probe says so if nobody cannot run it


def _reachable_by_everyone(path: Path) -> bool:
    path = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _copy_tree(source: Path, target: Path) -> None:
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".pyc"):
                path = Path(directory, name)
                _copy_file(path, target / path.relative_to(source))


def _copy_file(source: Path, target: Path) -> None:
    """A world-readable copy, in world-searchable directories (whatever the umask)."""
    missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    for directory in missing:
        directory.chmod(0o755)
    shutil.copyfile(source, target)
    target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)


def _runtime_distributions(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``name`` needs to run (no extras), name's own left out."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [name]
    while pending:
        dist = importlib.metadata.distribution(pending.pop())
        for requirement in dist.requires or ():
            if "extra ==" in requirement:
                continue
            needed = re.match(r"[A-Za-z0-9._-]+", requirement)
            if needed is None or needed[0].lower() in found:
                continue
            try:
                found[needed[0].lower()] = importlib.metadata.distribution(needed[0])
            except importlib.metadata.PackageNotFoundError:
                if ";" in requirement:  # a marker this interpreter does not meet
                    continue
                raise
            pending.append(needed[0])
    return list(found.values())


def wait_until_all_have_open(path: Path, runs: list[subprocess.Popen],
                             timeout: float = 60) -> None:
    """Return once every run (or a process it forked: a job run as another account) holds
    ``path`` open: while the caller holds the lock that is that file, they are all waiting
    at it, and will race for it when it is released."""
    target = os.path.realpath(path)
    deadline = time.monotonic() + timeout
    while True:
        children = _children()
        waiting = sum(any(_has_open(pid, target) for pid in _family(run.pid, children))
                      for run in runs)
        if waiting == len(runs):
            return
        ended = [run for run in runs if run.poll() is not None]
        if ended or time.monotonic() > deadline:
            details = [run.communicate() for run in ended]
            raise AssertionError(f"only {waiting} of {len(runs)} runs got to {path}: {details}")
        time.sleep(0.01)


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/PID/stat (its fourth field is the parent)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                stat_line = Path(f"/proc/{name}/stat").read_text()
                parent = int(stat_line.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(name))
    return children


def _family(pid: int, children: dict[int, list[int]]) -> list[int]:
    family, pending = [], [pid]
    while pending:
        family.append(pending.pop())
        pending.extend(children.get(family[-1], []))
    return family


def _has_open(pid: int, target: str) -> bool:
    fds = f"/proc/{pid}/fd"
    with contextlib.suppress(FileNotFoundError):
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fds}/{fd}") == target:
                    return True
    return False


@contextlib.contextmanager
def lock_held_by_its_owner(path: Path) -> Iterator[None]:
    """Hold the lock file ``path`` from a process of the account that owns it, as a run of
    that account would (a lock another account opens is refused)."""
    from systraq.fs.lock import holder_of

    st = os.stat(path)
    holder = subprocess.Popen(["setpriv", f"--reuid={st.st_uid}", f"--regid={st.st_gid}",
                               "--clear-groups", "flock", "--exclusive", "--close", str(path),
                               "sleep", "300"])
    try:
        deadline = time.monotonic() + 60
        while holder_of(st) != holder.pid:
            assert holder.poll() is None and time.monotonic() < deadline, "flock did not lock"
            time.sleep(0.01)
        yield
    finally:
        holder.kill()
        holder.wait()
