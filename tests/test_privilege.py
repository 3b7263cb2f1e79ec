"""The privilege boundary: work done as another account, and nothing leaks back as root."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from systraq.errors import ConfigError, SystraqError
from systraq.fs.privilege import PrivilegeError, converse_as, run_as, stream_as

from .conftest import REPO, needs_root


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    needs_root()
    return pwd.getpwnam("nobody")


@pytest.fixture
def shared(ws) -> Path:
    """A directory every account may enter and write (pytest's own tmp_path is 0700)."""
    ws.tree.chmod(0o777)
    return ws.tree


def _credentials() -> list[object]:
    return [list(os.getresuid()), list(os.getresgid()), os.getgroups()]


def test_work_runs_as_the_account_with_no_way_back_to_root(nobody) -> None:
    uids, gids, groups = run_as(nobody, _credentials)
    assert uids == [nobody.pw_uid] * 3
    assert gids == [nobody.pw_gid] * 3
    assert groups in ([], [nobody.pw_gid])
    assert os.geteuid() == 0, "the parent keeps its own credentials"


def test_a_file_only_root_may_read_stays_unread(nobody, shared: Path) -> None:
    (shared / "open").write_text("public")
    assert run_as(nobody, (shared / "open").read_text) == "public"
    secret = shared / "secret"
    secret.write_text("hunter2")
    secret.chmod(0o600)
    with pytest.raises(PrivilegeError, match="Permission denied"):
        run_as(nobody, secret.read_text)


def test_the_childs_error_is_raised_as_itself_with_file_and_line(nobody) -> None:
    def refuse() -> None:
        raise ConfigError("bad value", "/etc/systraq/systraq.conf", 7)

    with pytest.raises(ConfigError) as caught:
        run_as(nobody, refuse)
    assert str(caught.value) == "/etc/systraq/systraq.conf:7: bad value"


def test_bytes_and_structures_cross_unchanged(nobody) -> None:
    value = {"paths": [b"/etc/\xff\nx", b""], "count": 3, "nested": [[1, "two", None]]}
    assert run_as(nobody, lambda: value) == value
    assert list(stream_as(nobody, lambda: iter([b"raw", {"k": b"\x00"}]))) == \
        [b"raw", {"k": b"\x00"}]


def test_a_question_waits_for_the_parents_answer(nobody) -> None:
    def ask(channel) -> str:
        answer = channel.ask({"may I": "commit"})
        return f"told {answer}"

    conversation = converse_as(nobody, ask)
    for message in conversation:
        assert message.value == {"may I": "commit"}
        conversation.reply("yes")
    assert conversation.result == "told yes"


def test_the_parent_never_unpickles_what_the_child_sends(nobody) -> None:
    class Opaque:
        pass

    with pytest.raises(SystraqError, match="cannot send Opaque"):
        run_as(nobody, Opaque)


def test_the_child_dies_with_its_parent(shared: Path) -> None:
    needs_root()
    marker = shared / "child.pid"
    # A parent that starts a long piece of work as nobody, then is killed (a cron timeout).
    script = f"""
import os, pwd, sys, time
sys.path.insert(0, {str(REPO)!r})
from systraq.fs.privilege import run_as
def work():
    open({str(marker)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
run_as(pwd.getpwnam("nobody"), work)
"""
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(marker.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    status = Path(f"/proc/{child}/stat")
    assert not status.exists() or status.read_text().split()[2] == "Z", \
        "the unprivileged child outlived its parent"


def test_uid_0_is_no_account_to_drop_to() -> None:
    needs_root()
    with pytest.raises(PrivilegeError, match="uid 0"):
        run_as(pwd.getpwuid(0), lambda: None)
