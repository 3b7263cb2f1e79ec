"""State files of format version 1, written from its documented layout (not by systraq).

Earlier systraq wrote these; a state dir upgraded in place still holds them, so readers
and comparisons are tested against real version-1 bytes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import xxhash

V1_COLUMNS = ("path", "type", "perms", "uid", "user", "gid", "group", "size", "mtime_ns",
              "ctime_ns", "dev", "ino", "nlink", "status", "hash", "target")


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def write_v1(path: Path, entry_lines: list[str], *, created_ns: int, full_rehash_ns: int,
             mode: str = "pub", algorithm: str = "sha256", host: str = "host",
             lists: tuple[str, ...] = ()) -> None:
    """Write a version-1 state file holding these entry lines (16 tab-separated columns)."""
    for line in entry_lines:
        assert len(line.split("\t")) == len(V1_COLUMNS), line
    header = [
        "#systraq-state\t1", f"#host\t{host}", f"#mode\t{mode}",
        f"#created\t{created_ns}\t{_iso(created_ns)}", f"#hash\t{algorithm}",
        f"#full_rehash\t{full_rehash_ns}\t{_iso(full_rehash_ns)}",
        "\t".join(["#lists", *lists]), "\t".join(["#columns", *V1_COLUMNS]),
    ]
    body = "".join(line + "\n" for line in header + entry_lines).encode()
    trailer = f"#end\tentries={len(entry_lines)}\txxh3_128={xxhash.xxh3_128(body).hexdigest()}\n"
    # A new inode, as systraq replaces its files: a reported copy may share the old one.
    tmp = path.with_name(path.name + ".v1")
    tmp.write_bytes(body + trailer.encode())
    os.chmod(tmp, os.stat(path).st_mode & 0o777 if path.exists() else 0o644)
    os.replace(tmp, path)


def downgrade(path: Path) -> None:
    """Rewrite a state file of this version as earlier systraq wrote it (format 1)."""
    text = path.read_text()
    header = dict(line[1:].split("\t", 1) for line in text.splitlines()
                  if line.startswith("#") and not line.startswith(("#systraq", "#end")))
    created = int(header["created"].split("\t")[0])
    write_v1(path, [as_v1(line) for line in text.splitlines() if line.startswith("/")],
             created_ns=created, full_rehash_ns=created, mode=header["mode"],
             algorithm=header["hash"], host=header["host"],
             lists=tuple(header["lists"].split("\t")) if header["lists"] else ())


def as_v1(line: str) -> str:
    """An entry line of the current format cut down to the version-1 columns."""
    return "\t".join(line.split("\t")[:len(V1_COLUMNS)])
