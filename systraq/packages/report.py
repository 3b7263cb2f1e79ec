"""What ``systraq packages`` found, as plain text, a path list and JSON.

Paths are shown escaped (``pathcodec.escape``), as every systraq report shows them.
"""

from __future__ import annotations

import json
import os
import time
from itertools import groupby
from typing import TYPE_CHECKING

from systraq.packages.attribution import (
    CONFFILE,
    EXPLAINED,
    GROUP_TITLES,
    OUTSIDE,
    REMOVED,
    UNOWNED,
    Attribution,
    Explanation,
    Verdict,
)
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

if TYPE_CHECKING:
    from systraq.changes.report import ModeReport, Report

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
    """Names installed for more than one architecture."""
    arches: dict[str, set[str]] = {}
    for package in packages:
        arches.setdefault(package.name, set()).add(package.arch)
    return {name for name, found in arches.items() if len(found) > 1}


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


# --- change reports sorted by package operations (diff, check, baseline) ------------------

_SIGNS = {"changed": "~", "added": "+", "removed": "-"}


def explanation_line(explanation: Explanation) -> str:
    """``openssl 3.0.11-1 → 3.0.13-1 (apt-get upgrade, 2026-11-23 10:02)``."""
    if explanation.action in ("remove", "purge"):
        what = f"{explanation.package} {explanation.old or ''} " \
               f"{'purged' if explanation.action == 'purge' else 'removed'}"
    elif explanation.old is None:
        what = f"{explanation.package} {explanation.new} installed"
    elif explanation.old == explanation.new:
        what = f"{explanation.package} {explanation.new} reinstalled"
    else:
        what = f"{explanation.package} {explanation.old} → {explanation.new}"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(explanation.at))
    return f"{what} ({explanation.command or 'dpkg'}, {when})"


def _reason(verdict: Verdict) -> str:
    words = []
    if verdict.package is not None:
        words.append(f"{verdict.package.name} {verdict.package.version}")
    if verdict.reason:
        words.append(verdict.reason)
    return f"  [{': '.join(words)}]" if words else ""


def _folded(section: ModeReport, attribution: Attribution, group: str
            ) -> list[tuple[Explanation, int]]:
    counts: dict[Explanation, int] = {}
    for change in section.changes:
        verdict = attribution.verdict(section.mode, change.path)
        if verdict.group == group and verdict.explained_by is not None:
            counts[verdict.explained_by] = counts.get(verdict.explained_by, 0) + 1
    return sorted(counts.items(), key=lambda item: (item[0].at, item[0].package))


def grouped_sections(report: Report) -> list[str]:
    """The body of a change report sorted by what dpkg explains: unexplained changes
    first (outside dpkg, no package, conffiles), then one line per package operation."""
    from systraq.changes.report import describe_change, describe_entry, span
    from systraq.pathcodec import escape

    attribution: Attribution = report.attribution  # type: ignore[attr-defined]
    out: list[str] = []
    for section in report.modes:
        if not section.has_news:
            continue
        out.append("")
        out.append(f"{section.mode}: {span(section)}")
        if section.first:
            out.append(f"  first report: {section.entries} entries recorded; changes to them "
                       "will be reported from now on")
        out.extend(f"  note: {note}" for note in section.notes)
        for group in (OUTSIDE, UNOWNED, CONFFILE):
            changes = [c for c in section.changes
                       if attribution.verdict(section.mode, c.path).group == group]
            if not changes:
                continue
            out.append(f"{GROUP_TITLES[group]} ({len(changes)}):")
            for change in changes:
                reason = _reason(attribution.verdict(section.mode, change.path))
                sign = _SIGNS.get(change.kind, "?")
                if change.kind == "changed":
                    out.append(f"  {sign} {escape(change.path)}{reason}")
                    out.extend(f"      {line}" for line in describe_change(change))
                else:
                    entry = change.new if change.new is not None else change.old
                    assert entry is not None
                    out.append(f"  {sign} {escape(change.path)}  "
                               f"({describe_entry(entry, change.fields)}){reason}")
        for group in (REMOVED, EXPLAINED):
            folded = _folded(section, attribution, group)
            if not folded:
                continue
            files = sum(count for _, count in folded)
            out.append(f"{GROUP_TITLES[group]} ({files} file{'s' if files != 1 else ''}):")
            for explanation, count in folded:
                out.append(f"  {explanation_line(explanation)}: {count} "
                           f"file{'s' if count != 1 else ''}")
    if attribution.warnings:
        out.append("")
        out.extend(f"note: {warning}" for warning in attribution.warnings[:5])
        if len(attribution.warnings) > 5:
            out.append(f"note: and {len(attribution.warnings) - 5} more")
    return out


def grouped_summary(report: Report) -> str:
    attribution: Attribution = report.attribution  # type: ignore[attr-defined]
    total = report.total
    if not total:
        return ""
    unexplained = attribution.unexplained_in(report)
    return f"total: {total} change{'s' if total != 1 else ''}, {unexplained} unexplained, " \
           f"{total - unexplained} explained by package operations"


def grouped_subject_words(report: Report) -> str:
    """``15 changes, 1 unexplained`` for the mail's subject."""
    attribution: Attribution = report.attribution  # type: ignore[attr-defined]
    total = report.total
    return f"{total} change{'s' if total != 1 else ''}, " \
           f"{attribution.unexplained_in(report)} unexplained"


def annotate_json(document: dict[str, object], report: Report) -> None:
    """Add each change's group and explanation, and the folded operations, to the JSON."""
    attribution: Attribution = report.attribution  # type: ignore[attr-defined]
    changes = document["changes"]
    assert isinstance(changes, list)
    for item, (mode, change) in zip(changes, report.changes, strict=True):
        verdict = attribution.verdict(mode, change.path)
        item["group"] = verdict.group
        item["package"] = verdict.package.name if verdict.package is not None else None
        item["reason"] = verdict.reason or None
        item["explained_by"] = _explained_json(verdict.explained_by)
    operations = []
    for section in report.modes:
        for group in (REMOVED, EXPLAINED):
            for explanation, count in _folded(section, attribution, group):
                operations.append({"mode": section.mode, **_explained_json(explanation),
                                   "files": count})
    document["unexplained"] = attribution.unexplained_in(report)
    document["operations"] = operations
    document["warnings"] = attribution.warnings


def _explained_json(explanation: Explanation | None) -> dict[str, object] | None:
    if explanation is None:
        return None
    data = explanation.to_json()
    data["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(explanation.at))
    return data
