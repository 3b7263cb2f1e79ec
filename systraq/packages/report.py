"""What ``systraq packages`` found, as plain text, a path list and JSON.

Paths are shown escaped (``pathcodec.escape``), as every systraq report shows them.
"""

from __future__ import annotations

import json
import os
from itertools import groupby

from systraq.packages.dpkgdb import Package
from systraq.packages.verify import (
    CHANGED,
    MISSING,
    NOT_REGULAR,
    UNREADABLE,
    Finding,
    Verification,
)
from systraq.pathcodec import escape

JSON_VERSION = 1
NO_MD5SUMS_HINT = ("reinstall a package to restore its md5sums (apt-get install --reinstall "
                   "PACKAGE), or check it against its .deb with debsums --generate=missing "
                   "PACKAGE")
_WORDS = {CHANGED: "changed", MISSING: "missing", NOT_REGULAR: "not a file",
          UNREADABLE: "unchecked"}
_CONFFILE_WORDS = {CHANGED: "edited", MISSING: "missing", NOT_REGULAR: "not a file",
                   UNREADABLE: "unchecked"}


def package_label(package: Package, ambiguous: set[str]) -> str:
    """``name version``, with ``:arch`` where more than one architecture is installed."""
    name = f"{package.name}:{package.arch}" if package.name in ambiguous else package.name
    return f"{name} {package.version}"


def _ambiguous(packages: list[Package]) -> set[str]:
    seen: dict[str, int] = {}
    for package in packages:
        seen[package.name] = seen.get(package.name, 0) + 1
    return {name for name, count in seen.items() if count > 1}


def _line(finding: Finding) -> str:
    words = _CONFFILE_WORDS if finding.conffile else _WORDS
    text = f"  {words[finding.problem]:<9} {escape(finding.path)}"
    notes = []
    if finding.listed is not None:
        notes.append(f"diverted from {escape(finding.listed)}")
    if finding.obsolete:
        notes.append("obsolete conffile")
    if finding.detail:
        notes.append(finding.detail)
    return text + (f"  ({'; '.join(notes)})" if notes else "")


def _summary(result: Verification) -> str:
    counts: dict[str, int] = {}
    for finding in result.findings:
        counts[finding.problem] = counts.get(finding.problem, 0) + 1
    words = _CONFFILE_WORDS if result.conffiles else _WORDS
    parts = [f"{counts[p]:,} {words[p]}" for p in (CHANGED, MISSING, NOT_REGULAR, UNREADABLE)
             if counts.get(p)]
    if result.without_md5sums:
        parts.append(f"{len(result.without_md5sums):,} without md5sums")
    what = "conffiles" if result.conffiles else "files"
    return (f"total: {', '.join(parts) or 'nothing'} ({result.packages:,} packages, "
            f"{result.files:,} {what} checked)")


def render_text(result: Verification) -> str:
    """Grouped by package; nothing at all when everything matches."""
    if not result.findings and not result.without_md5sums:
        return ""
    out: list[str] = []
    ambiguous = _ambiguous([f.package for f in result.findings] + result.without_md5sums)
    for package, group in groupby(result.findings, key=lambda f: f.package):
        out.append(package_label(package, ambiguous))
        out.extend(_line(finding) for finding in group)
    if result.without_md5sums:
        if out:
            out.append("")
        out.append(f"packages without md5sums ({len(result.without_md5sums)}): "
                   + ", ".join(package_label(p, ambiguous) for p in result.without_md5sums))
        out.append(f"  {NO_MD5SUMS_HINT}")
    out.append("")
    out.append(_summary(result))
    return "\n".join(out) + "\n"


def render_paths(result: Verification) -> str:
    """One path per line: files that differ from their package (changed or missing)."""
    return "".join(f"{escape(f.path)}\n" for f in result.findings if f.problem != UNREADABLE)


def _package_json(package: Package) -> dict[str, str]:
    return {"package": package.name, "architecture": package.arch, "version": package.version}


def to_json(result: Verification) -> dict[str, object]:
    """The stable JSON document systraq(8) describes."""
    return {
        "version": JSON_VERSION,
        "root": os.fsdecode(result.root),
        "admindir": os.fsdecode(result.admindir),
        "checked": "conffiles" if result.conffiles else "files",
        "packages_checked": result.packages,
        "files_checked": result.files,
        "files_hashed": result.hashed,
        "md5s_reused": result.reused,
        "findings": [{
            **_package_json(f.package),
            "path": escape(f.path),
            "listed_as": escape(f.listed) if f.listed is not None else None,
            "problem": f.problem,
            "conffile": f.conffile,
            "obsolete": f.obsolete,
            "detail": f.detail,
            "expected_md5": f.expected or None,
        } for f in result.findings],
        "without_md5sums": [_package_json(p) for p in result.without_md5sums],
        "problems": result.problems,
    }


def render_json(result: Verification) -> str:
    return json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n"
