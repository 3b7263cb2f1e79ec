"""Files that may only grow (the ``growing`` rule): a log that is appended to is not a change,
one truncated and rewritten is.

Each snapshot hashes such a file whole and, in the same pass, up to the length the previous
snapshot recorded. When that prefix hash is the previous content hash, the old content is
still there: the file was only appended to, and the chain of such snapshots goes on. The
hash column then records where the chain started (systraq-state(5))::

    appended=NS:HEX

``HEX`` is the whole content's hash as usual; ``NS`` the creation time of the earliest
snapshot whose content every later one (this one included) kept as a prefix. A report
against a copy made at or after ``NS`` with no larger size sees only growth: not a change.
A chain starts afresh (``NS`` this snapshot's start) when there was nothing to compare
with, the prefix differs, the file shrank, or the file was hashed in part or by its data
extents only.
"""

from __future__ import annotations

from dataclasses import dataclass

from systraq.snapshot.entry import OK, Entry
from systraq.snapshot.hashing import Digest

MARK = "appended="
# Columns of an entry line (systraq.snapshot.state.COLUMNS) read here.
_TYPE, _SIZE, _STATUS, _HASH = 1, 7, 13, 14


@dataclass(frozen=True, slots=True)
class Prior:
    """What the previous snapshot recorded of a growing file."""

    size: int
    digest: str  # its content hash, without the mark
    since_ns: int  # where its chain started


@dataclass(frozen=True, slots=True)
class Growth:
    """The two snapshots a chain links: this one and the one before (None: none)."""

    created_ns: int
    previous_created_ns: int | None


def split_mark(value: str) -> tuple[int | None, str]:
    """(chain start or None, content hash) of a hash column's value."""
    if not value.startswith(MARK):
        return None, value
    since, _, digest = value[len(MARK):].partition(":")
    try:
        return int(since), digest
    except ValueError:
        return None, value


def content_hash(value: str) -> str:
    """A hash column's value without the growing mark (what is compared and shown)."""
    return split_mark(value)[1] if value.startswith(MARK) else value


def prior_of(line: bytes | None, growth: Growth) -> Prior | None:
    """The previous line of a growing file as a Prior (None: nothing to chain to)."""
    if line is None or growth.previous_created_ns is None:
        return None
    fields = line.split(b"\t", _HASH + 1)
    if len(fields) <= _HASH or fields[_TYPE] != b"f" or fields[_STATUS] != OK.encode():
        return None
    value = fields[_HASH].decode("ascii", "replace")
    since, digest = split_mark(value)
    if not digest or digest.startswith(("sparse:", "first=")):
        return None
    try:
        size = int(fields[_SIZE])
    except ValueError:
        return None
    # A line without a mark was written, or kept unchanged, by the previous snapshot: its
    # content was there when that snapshot started.
    return Prior(size, digest, since if since is not None else growth.previous_created_ns)


def marked(digest: Digest, prior: Prior | None, growth: Growth) -> str:
    """The hash column of a growing file just hashed whole."""
    appended = prior is not None and digest.prefix is not None and \
        digest.prefix == prior.digest
    since = prior.since_ns if appended and prior is not None else growth.created_ns
    return f"{MARK}{since}:{digest.value}"


def only_appended(old: Entry, new: Entry, old_created_ns: int) -> bool:
    """Whether ``new`` holds ``old``'s content as a prefix (the copy ``old`` came from was
    made at ``old_created_ns``): then size and content are not a change."""
    if old.type != "f" or new.type != "f" or old.status != OK or new.status != OK:
        return False
    since, _ = split_mark(new.hash)
    return since is not None and since <= old_created_ns and new.size >= old.size
