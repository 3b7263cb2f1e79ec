"""Spreading a scan over processes changes nothing in what it records."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.pathcodec import escape
from systraq.snapshot import hashcache
from systraq.snapshot.hashcache import PreviousSnapshot, ReusePolicy, _first_line_at_or_after
from systraq.snapshot.listfiles import Root, order_key
from systraq.snapshot.scan import Scanner
from systraq.snapshot.state import Header, StateWriter, line_key, parse_entry

from .conftest import Workspace

names = st.sampled_from([b"a", b"b", b"a-b", b"a.b", b"z", b"\xff", b"sp ace", b"n\nl"])
# A tree: directory name → subtree, file name → content (bytes), symlink → ("link", target).
trees = st.recursive(
    st.one_of(st.binary(max_size=100), st.tuples(st.just("link"), names)),
    lambda children: st.dictionaries(names, children, max_size=4), max_leaves=25)


def build(base: bytes, tree: object) -> None:
    if isinstance(tree, dict):
        os.mkdir(base)
        for name, child in tree.items():
            build(base + b"/" + name, child)
    elif isinstance(tree, tuple):
        os.symlink(tree[1], base)
    else:
        with open(base, "wb") as handle:
            handle.write(tree)


def lines_of(scanner: Scanner, root: bytes) -> list[bytes]:
    return [line for chunk in scanner.chunks([Root(root, True)]) for line in chunk]


def write_state(path: Path, lines: list[bytes]) -> Header:
    header = Header(host="h", mode="pub", created_ns=4_000_000_000_000_000_000, hash="sha256")
    with StateWriter(path, header) as writer:
        writer.add_chunk(lines)
    return header


@given(tree=st.dictionaries(names, trees, max_size=5))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_one_process_or_many_the_lines_are_the_same(ws: Workspace, tree) -> None:
    root = os.fsencode(ws.tree) + b"/t"
    build(root, tree)
    try:
        serial = lines_of(Scanner("sha256", workers=1), root)
        parallel_scanner = Scanner("sha256", workers=2)
        assert parallel_scanner.parallel
        assert lines_of(parallel_scanner, root) == serial
        assert parallel_scanner.stats.entries == len(serial)
        # And with a previous snapshot to reuse hashes from (an hour "later": nothing racy).
        state = ws.state / "prev.stat"
        header = write_state(state, serial)
        policy = ReusePolicy(racy_after_ns=header.created_ns - hashcache.RACY_MARGIN_NS)
        previous = PreviousSnapshot(state, header, policy, entries=len(serial))
        reused = Scanner("sha256", workers=2, previous=previous)
        reused.parallel = True  # as after --full with a usable previous snapshot
        assert lines_of(reused, root) == serial
        previous.close()
        files = sum(1 for line in serial if line.split(b"\t")[1] == b"f")
        assert reused.stats.hashes_reused == files
    finally:
        os.system(f"rm -rf '{ws.tree}/t'")


@given(st.lists(st.lists(names, min_size=1, max_size=4), min_size=1, max_size=60,
                unique_by=lambda p: b"/".join(p)), st.lists(names, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_binary_search_finds_the_first_line_at_or_after_a_path(ws: Workspace, paths, probe
                                                             ) -> None:
    hashcache.LINEAR_SCAN = 64  # bisect even these small files
    entries = sorted({b"/" + b"/".join(p) for p in paths}, key=order_key)
    lines = [f"{escape(p)}\tf\t0644\t0\t\t0\t\t0\t0\t0\t0\t0\t1\tok\t\t\n".encode()
             for p in entries]
    state = ws.state / "s.stat"
    write_state(state, lines)
    key = order_key(b"/" + b"/".join(probe))
    data = state.read_bytes()
    with open(state, "rb") as handle:
        offset = _first_line_at_or_after(handle, key)
    hashcache.LINEAR_SCAN = 65536
    following = data[offset:].split(b"\n")[:-1]
    expected = [ln[:-1] for ln in lines if line_key(ln) >= key]
    assert [ln for ln in following if not ln.startswith(b"#")] == expected
    assert all(line_key(ln + b"\n") < key for ln in data[:offset].split(b"\n")[:-1]
               if ln.startswith(b"/"))


def test_entries_are_parsed_lines(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    lines = lines_of(Scanner("sha256", workers=1), os.fsencode(ws.tree))
    entries = list(Scanner("sha256", workers=1).entries([Root(os.fsencode(ws.tree), True)]))
    assert entries == [parse_entry(line[:-1].decode()) for line in lines]
