"""The comparison rules: what counts as a change, and the streaming merge by path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.changes.compare import ADDED, CHANGED, REMOVED, compare, compare_states
from systraq.changes.compare import DEFAULT_FIELDS as DEFAULT_REPORT_FIELDS
from systraq.changes.report import ModeReport, Report, describe_change, render_text
from systraq.snapshot.entry import RACED, UNREADABLE, Entry
from systraq.snapshot.state import Header, StateReader, StateWriter

from .test_state import HEADER, sorted_unique
from .test_state import entries as state_entries

FIELDS = DEFAULT_REPORT_FIELDS


def entry(path: bytes, type_: str = "f", **changes: object) -> Entry:
    base = Entry(path=path, type=type_, perms=0o777 if type_ == "l" else 0o644, uid=0,
                 user="root", gid=0, group="root", size=3, mtime_ns=10**18, ctime_ns=10**18,
                 dev=1, ino=100, nlink=1, hash="ab" * 32 if type_ == "f" else "",
                 target=b"t" if type_ == "l" else None)
    return replace(base, **changes)  # type: ignore[arg-type]


def diff(old: list[Entry], new: list[Entry], **kw: object) -> dict[bytes, tuple[str, dict]]:
    return {c.path: (c.kind, c.fields) for c in compare(old, new, FIELDS, **kw)}  # type: ignore[arg-type]


def test_touch_and_a_new_inode_alone_are_not_changes() -> None:
    old = [entry(b"/f")]
    new = [entry(b"/f", mtime_ns=2 * 10**18, ctime_ns=2 * 10**18, ino=7, dev=2, nlink=2)]
    assert diff(old, new) == {}


def test_extra_fields_from_the_settings_are_compared() -> None:
    old, new = [entry(b"/f")], [entry(b"/f", mtime_ns=5)]
    changes = list(compare(old, new, ("perms", "mtime")))
    assert [(c.kind, c.fields) for c in changes] == [(CHANGED, {"mtime": (10**18, 5)})]


def test_directory_size_is_not_a_change_but_its_perms_are() -> None:
    old = [entry(b"/d", "d", size=4096, hash="")]
    assert diff(old, [entry(b"/d", "d", size=8192, hash="")]) == {}
    assert diff(old, [entry(b"/d", "d", size=8192, hash="", perms=0o1777)]) == {
        b"/d": (CHANGED, {"perms": (0o644, 0o1777)})}


def test_symlink_target_counts_its_perms_do_not() -> None:
    old = [entry(b"/l", "l")]
    assert diff(old, [entry(b"/l", "l", perms=0o755)]) == {}
    assert diff(old, [entry(b"/l", "l", target=b"u")]) == {
        b"/l": (CHANGED, {"target": (b"t", b"u")})}
    assert diff(old, [entry(b"/l", "l", uid=5)]) == {b"/l": (CHANGED, {"uid": (0, 5)})}


def test_file_replaced_by_symlink_is_one_change_with_its_type() -> None:
    changes = diff([entry(b"/f")], [entry(b"/f", "l", target=b"/etc/shadow")])
    assert changes == {b"/f": (CHANGED, {"type": ("f", "l"),
                                         "target": (None, b"/etc/shadow")})}


def test_same_size_new_content_is_a_change() -> None:
    assert diff([entry(b"/f")], [entry(b"/f", hash="cd" * 32)]) == {
        b"/f": (CHANGED, {"hash": ("ab" * 32, "cd" * 32)})}


def test_content_is_not_compared_across_hash_algorithms() -> None:
    new = [entry(b"/f", hash="cd" * 16, size=4)]
    assert diff([entry(b"/f")], new, compare_hash=False) == {
        b"/f": (CHANGED, {"size": (3, 4)})}


def test_unreadable_and_raced_entries_are_reported_once_as_such() -> None:
    ok = [entry(b"/f")]
    unreadable = [entry(b"/f", status=UNREADABLE, hash="")]
    assert diff(ok, unreadable) == {b"/f": (CHANGED, {"status": ("ok", UNREADABLE)})}
    assert diff(unreadable, unreadable) == {}
    raced = [entry(b"/f", status=RACED, hash="", size=9)]
    assert diff(unreadable, raced) == {
        b"/f": (CHANGED, {"size": (3, 9), "status": (UNREADABLE, RACED)})}
    assert diff(raced, ok) == {b"/f": (CHANGED, {"size": (9, 3), "status": (RACED, "ok")})}


def test_added_and_removed_entries_carry_their_values() -> None:
    changes = diff([entry(b"/gone")], [entry(b"/new", "l")])
    kind, fields = changes[b"/gone"]
    assert kind == REMOVED
    assert fields == {"type": ("f", None), "perms": (0o644, None), "uid": (0, None),
                      "gid": (0, None), "size": (3, None), "hash": ("ab" * 32, None)}
    kind, fields = changes[b"/new"]
    assert kind == ADDED
    assert fields == {"type": (None, "l"), "uid": (None, 0), "gid": (None, 0),
                      "target": (None, b"t")}
    unreadable = diff([], [entry(b"/u", status=UNREADABLE, hash="")])[b"/u"][1]
    assert unreadable["status"] == (None, UNREADABLE) and "hash" not in unreadable


def test_merge_follows_the_state_files_path_order() -> None:
    # '/' sorts before every other byte: a directory's subtree stays together.
    old = [entry(b"/a"), entry(b"/a/b"), entry(b"/a-b")]
    new = [entry(b"/a"), entry(b"/a/b", perms=0o600), entry(b"/a/c"), entry(b"/a-b")]
    changes = list(compare(old, new, FIELDS))
    assert [(c.path, c.kind) for c in changes] == [(b"/a/b", CHANGED), (b"/a/c", ADDED)]


def test_compare_streams_without_reading_ahead() -> None:
    def tree(changed_at: int) -> Iterator[Entry]:
        for n in itertools.count():
            yield entry(b"/%09d" % n, perms=0o600 if n == changed_at else 0o644)

    first = next(compare(tree(-1), tree(1000), FIELDS))  # endless streams: must be lazy
    assert first.path == b"/000001000" and first.kind == CHANGED


def test_changed_fields_read_as_words() -> None:
    [change] = compare([entry(b"/f")], [entry(b"/f", perms=0o4755, uid=65534, user="nobody",
                                               gid=4242, group="", size=10, hash="cd" * 32)],
                       FIELDS)
    assert describe_change(change) == ["content changed (size 3 → 10)", "perms 0644 → 4755",
                                       "owner root → nobody", "group root → 4242"]


def test_text_report_shows_host_span_groups_and_totals() -> None:
    header = Header(host="db1", mode="pub", created_ns=0, hash="sha256")
    changes = list(compare([entry(b"/etc/a"), entry(b"/etc/gone")],
                           [entry(b"/etc/a", perms=0o666), entry(b"/etc/new\n", "l")], FIELDS))
    text = render_text(Report("db1", "reported", [ModeReport("pub", new=header, old=header,
                                                             changes=changes)]))
    lines = text.splitlines()
    assert lines[0] == "systraq on db1: changes since the last report"
    assert lines[2].startswith("pub: ") and " → " in lines[2]
    assert lines[3:] == [
        "changed (1):", "  /etc/a", "      perms 0644 → 0666",
        "added (1):", "  /etc/new\\n  (symlink root:root, → t)",
        "removed (1):", "  /etc/gone  (file 0644 root:root, 3 bytes)",
        "", "total: 1 changed, 1 added, 1 removed"]


TWEAKS = [lambda e: e, lambda e: replace(e, perms=e.perms ^ 0o002),
          lambda e: replace(e, mtime_ns=e.mtime_ns + 1), lambda e: replace(e, hash="cd" * 32),
          lambda e: replace(e, type="l", target=b"x"), lambda e: replace(e, status=RACED)]


@given(old=st.lists(state_entries, max_size=12), new=st.lists(state_entries, max_size=12),
       tweaks=st.lists(st.sampled_from(TWEAKS), max_size=12))
@settings(max_examples=80, deadline=None)
def test_comparing_state_files_line_by_line_agrees_with_comparing_entries(
        tmp_path_factory, old, new, tweaks) -> None:
    # Share paths between both sides, unchanged or changed, as real snapshots do.
    new = new + [tweak(e) for e, tweak in zip(old, tweaks, strict=False)]
    old, new = sorted_unique(old), sorted_unique(new)
    directory = tmp_path_factory.mktemp("cmp")
    for name, items in (("old", old), ("new", new)):
        with StateWriter(directory / name, HEADER) as writer:
            for item in items:
                writer.add(item)
    expected = list(compare(old, new, FIELDS))
    with StateReader(directory / "old") as a, StateReader(directory / "new") as b:
        assert list(compare_states(a, b, FIELDS)) == expected
