"""Property: every change to a reported field appears in exactly one report, with the right
kind and fields; a run after no change reports nothing.

Random file-system mutations are interleaved with snapshot + diff runs (the core functions,
in process, for speed). What each report should say is worked out independently: the tree
is observed with plain lstat/read/readlink before each snapshot, and two observations are
compared field by field.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from systraq.changes.diff import run_diff
from systraq.changes.report import Report, render_json, render_text
from systraq.config import Settings
from systraq.snapshot.job import take_snapshot

PATHS = ["a", "b", "c", "d", "d/x", "d/y", "d/e", "d/e/z"]
MODES = [0o644, 0o600, 0o755, 0o666, 0o4755, 0o000]
OWNERS = [(0, 0), (65534, 65534), (0, 65534)]
TARGETS = ["a", "d/x", "missing", "../outside"]

path_names = st.sampled_from(PATHS)
Observed = dict[bytes, dict[str, object]]


def observe(root: Path) -> Observed:
    """What the reported fields of every entry under root are, read independently."""
    view: Observed = {}

    def visit(path: bytes) -> None:
        st_ = os.lstat(path)
        record: dict[str, object] = {"type": "?", "uid": st_.st_uid, "gid": st_.st_gid}
        if stat.S_ISREG(st_.st_mode):
            with open(path, "rb") as f:
                record.update(type="f", perms=stat.S_IMODE(st_.st_mode), size=st_.st_size,
                              content=f.read())
        elif stat.S_ISLNK(st_.st_mode):
            record.update(type="l", target=os.readlink(path))
        elif stat.S_ISDIR(st_.st_mode):
            record.update(type="d", perms=stat.S_IMODE(st_.st_mode))
        view[path] = record
        if stat.S_ISDIR(st_.st_mode):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name))

    visit(os.fsencode(root))
    return view


def expected_changes(old: Observed, new: Observed) -> dict[bytes, tuple[str, set[str]]]:
    out: dict[bytes, tuple[str, set[str]]] = {}
    for path in old.keys() | new.keys():
        if path not in new:
            out[path] = ("removed", set())
        elif path not in old:
            out[path] = ("added", set())
        else:
            a, b = old[path], new[path]
            fields = {name for name in ("type", "uid", "gid", "target")
                      if a.get(name) != b.get(name)}
            if "l" not in (a["type"], b["type"]):
                fields.discard("target")
                if a["perms"] != b["perms"]:
                    fields.add("perms")
            if a["type"] == b["type"] == "f":
                if a["size"] != b["size"]:
                    fields.add("size")
                if a["content"] != b["content"]:
                    fields.add("hash")
            if fields:
                out[path] = ("changed", fields)
    return out


class DiffReportsEveryChangeOnce(RuleBasedStateMachine):
    """The stateful test: see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="systraq-prop-", dir="/tmp"))
        self.tree = self.workdir / "tree"
        self.tree.mkdir()
        (self.workdir / "config").mkdir()
        (self.workdir / "config" / "snapshot_root.list").write_text(f"{self.tree}\n")
        self.settings = Settings(config_dir=self.workdir / "config",
                                 state_dir=self.workdir / "state")
        self.reported: Observed = {}
        self.reports: list[Report] = []

    def teardown(self) -> None:
        try:
            if self.reported:  # every example ends with a check of what it left pending
                self.snapshot_and_diff()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def at(self, name: str) -> str:
        return str(self.tree / name)

    def diff(self) -> Report | None:
        self.reports.clear()
        result = run_diff(self.settings, ("root",), show=self.reports.append)
        assert len(self.reports) <= 1
        if self.reports:
            assert int(result.status) == 1
            return self.reports[0]
        assert int(result.status) == 0
        return None

    @initialize()
    def first_run(self) -> None:
        # Start from a tree holding every type, so that mutations meet existing entries.
        (self.tree / "a").write_bytes(b"alpha")
        (self.tree / "b").write_bytes(b"")
        (self.tree / "c").symlink_to("a")
        (self.tree / "d" / "e").mkdir(parents=True)
        (self.tree / "d" / "x").write_bytes(b"x")
        (self.tree / "d" / "e" / "z").write_bytes(b"zz")
        take_snapshot(self.settings, "root")
        first = self.diff()
        assert first is not None and first.modes[0].first
        self.reported = observe(self.tree)

    # --- mutations: each may fail (missing parent, wrong type): that is a no-op ---------

    def write(self, name: str, data: bytes) -> None:
        if not os.path.islink(self.at(name)):
            with open(self.at(name), "wb") as out:
                out.write(data)

    def append(self, name: str, data: bytes) -> None:
        if os.path.isfile(self.at(name)) and not os.path.islink(self.at(name)):
            with open(self.at(name), "ab") as out:
                out.write(data or b"+")

    def chmod(self, name: str, mode: int) -> None:
        if not os.path.islink(self.at(name)):
            os.chmod(self.at(name), mode)

    def chown(self, name: str, owner: tuple[int, int]) -> None:
        os.chown(self.at(name), *owner, follow_symlinks=False)

    def touch(self, name: str) -> None:
        os.utime(self.at(name), (1, 1), follow_symlinks=False)

    def delete(self, name: str) -> None:
        path = self.at(name)
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)

    def rename(self, name: str, other: str) -> None:
        os.rename(self.at(name), self.at(other))

    def replace_by_symlink(self, name: str, link_to: str) -> None:
        path = self.at(name)
        if os.path.isdir(path) and not os.path.islink(path):
            return
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(link_to, path)

    def mkdir(self, name: str) -> None:
        os.mkdir(self.at(name))

    def rmdir(self, name: str) -> None:
        os.rmdir(self.at(name))

    @rule(op=st.sampled_from(["write", "append", "chmod", "chown", "touch", "delete",
                              "rename", "replace_by_symlink", "mkdir", "rmdir"]),
          name=path_names, other=path_names, data=st.binary(max_size=6),
          mode=st.sampled_from(MODES), owner=st.sampled_from(OWNERS),
          link_to=st.sampled_from(TARGETS))
    def mutate(self, op: str, name: str, other: str, data: bytes, mode: int,
               owner: tuple[int, int], link_to: str) -> None:
        arguments = {"write": (data,), "append": (data,), "chmod": (mode,), "chown": (owner,),
                     "rename": (other,), "replace_by_symlink": (link_to,)}.get(op, ())
        with contextlib.suppress(OSError):
            getattr(self, op)(name, *arguments)

    # --- runs ---------------------------------------------------------------------------

    @rule()
    def snapshot_and_diff(self) -> None:
        now = observe(self.tree)
        take_snapshot(self.settings, "root")
        report = self.diff()
        expected = expected_changes(self.reported, now)
        if not expected:
            assert report is None, render_text(report)
        else:
            assert report is not None, expected
            got = {c.path: (c.kind, set(c.fields) if c.kind == "changed" else set())
                   for _, c in report.changes}
            assert got == expected
            for _, change in report.changes:
                self.check_values(change, now, self.reported)
            self.check_rendered(report, expected)
        self.reported = now

    @rule()
    def diff_again_without_a_snapshot(self) -> None:
        assert self.diff() is None

    def check_values(self, change, now: Observed, before: Observed) -> None:
        for name, (old, new) in change.fields.items():
            for value, view in ((old, before), (new, now)):
                if value is None or name == "hash":
                    continue
                record = view[change.path]
                expected = os.fsencode(record[name]) if name == "target" else record[name]
                assert value == expected, (change.path, name)

    def check_rendered(self, report: Report, expected: dict) -> None:
        document = json.loads(render_json(report))
        assert len(document["changes"]) == len(expected)
        text = render_text(report)
        for path in expected:
            assert text.count(os.fsdecode(path) + "\n") + text.count(
                os.fsdecode(path) + "  (") == 1

    @invariant()
    def no_temporary_files_are_left_behind(self) -> None:
        state = self.settings.state_dir
        if state.exists():
            assert not [p for p in os.listdir(state) if p.endswith((".pin", ".tmp"))]


DiffReportsEveryChangeOnce.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestDiffReportsEveryChangeOnce = pytest.mark.skipif(
    os.geteuid() != 0, reason="chown and the root-mode scan need root")(
    DiffReportsEveryChangeOnce.TestCase)
