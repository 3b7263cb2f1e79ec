"""systraq packages: the same verdicts as debsums -s, debsums -ce and dpkg --verify.

Every case is a real .deb built with dpkg-deb and installed with dpkg into a scratch root,
then tampered with; the reference tools run on that same root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from systraq.packages.md5cache import due_for_rehash
from systraq.packages.verify import MISSING, NOT_REGULAR, UNREADABLE, verify_packages
from systraq.snapshot.hashcache import RACY_MARGIN_NS
from tests.conftest import Workspace
from tests.debkit import Deb, FakeRoot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root needs root here")


def tampered_root(base: Path) -> FakeRoot:
    root = FakeRoot(base / "root")
    (root.path / "usr/lib").mkdir(parents=True)
    os.symlink("usr/lib", root.path / "lib")  # merged /usr: a package path through a link
    root.install(
        Deb("alpha", "1.0", {"/usr/bin/alpha": b"alpha one\n", "/etc/alpha.conf": b"c1\n",
                             "/etc/alpha-old.conf": b"old\n",
                             "/usr/bin/alpha-link": ("link", "alpha")},
            conffiles=("/etc/alpha.conf", "/etc/alpha-old.conf")),
        Deb("beta", "2.0", {"/usr/bin/beta": b"beta\n", "/usr/share/beta/data": b"data\n",
                            "/usr/share/beta/keep": b"keep\n"}, dirs=("/usr/share/beta-empty",)),
        Deb("delta", "1.0", {"/lib/delta/file": b"delta\n", "/lib/delta/other": b"ok\n"}),
        Deb("gamma", "1.0", {"/usr/lib/x86_64-linux-gnu/gamma/lib.so": b"gamma\n"},
            arch="amd64", multiarch="same"),
        Deb("nosums", "1.0", {"/usr/share/nosums/x": b"x\n"}),
        Deb("clean", "1.0", {"/usr/share/clean/a": b"a\n", "/etc/clean.conf": b"c\n"},
            conffiles=("/etc/clean.conf",)),
    )
    # An upgrade leaves alpha-old.conf behind as an obsolete conffile.
    root.install(Deb("alpha", "1.1", {"/usr/bin/alpha": b"alpha two\n",
                                      "/etc/alpha.conf": b"c1\n",
                                      "/usr/bin/alpha-link": ("link", "alpha")},
                     conffiles=("/etc/alpha.conf",)))
    root.file("/usr/bin/alpha").write_bytes(b"alpha TWO\n")  # same size, other content
    root.file("/usr/share/beta/data").unlink()
    root.file("/usr/share/beta-empty").rmdir()
    root.file("/etc/alpha.conf").write_bytes(b"edited\n")
    root.file("/etc/alpha-old.conf").write_bytes(b"edited too\n")
    root.file("/usr/lib/delta/file").write_bytes(b"changed through /lib\n")
    root.file("/usr/lib/x86_64-linux-gnu/gamma/lib.so").write_bytes(b"GAMMA\n")
    # A local diversion moves beta's file aside; what lies there now is checked.
    root.divert("/usr/bin/beta", "/usr/bin/beta.distrib")
    root.file("/usr/bin/beta").write_bytes(b"local replacement\n")
    root.file("/usr/bin/beta.distrib").write_bytes(b"tampered\n")
    (root.path / "var/lib/dpkg/info/nosums.md5sums").unlink()
    return root


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRoot]:
    base = Path(tempfile.mkdtemp(prefix="systraq-pkg-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield tampered_root(base)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def debsums(root: FakeRoot, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["debsums", f"--root={root.path}", *args], capture_output=True,
                          text=True)


def debsums_silent_set(root: FakeRoot) -> set[tuple[str, str]]:
    out = set()
    for line in debsums(root, "-s").stderr.splitlines():
        match = re.match(r"debsums: (changed|missing) file (\S+) \(from", line)
        if match:
            out.add((match.group(2)[len(str(root.path)):], match.group(1)))
    return out


def dpkg_verify_set(root: FakeRoot) -> set[tuple[str, str, bool]]:
    done = subprocess.run(["dpkg", f"--root={root.path}", "--verify"], capture_output=True,
                          text=True)
    out = set()
    for line in done.stdout.splitlines():
        kind = "missing" if line.startswith("missing") else "changed"
        out.add((line[12:].split(" (")[0], kind, line[10] == "c"))
    return out


def ours(root: FakeRoot, conffiles: bool = False) -> set[tuple[str, str, bool]]:
    result = verify_packages(root.path, conffiles=conffiles, workers=2)
    return {(os.fsdecode(f.path), "missing" if f.problem == MISSING else "changed", f.conffile)
            for f in result.findings}


# Where systraq is stricter than both reference tools: the content of a diverted file.
# dpkg --verify looks up the md5 under the diverted-to name (where it has none) and so
# only checks that the file exists; debsums compares, then drops the mismatch because
# dpkg -S names a diversion rather than the package. systraq checks the diverted-to file
# against the md5 the package shipped, as the diversion rule says it should.
STRICTER = {("/usr/bin/beta.distrib", "changed")}


def test_changed_and_missing_files_are_the_ones_debsums_reports(fake: FakeRoot) -> None:
    result = verify_packages(fake.path, workers=2)
    found = {(os.fsdecode(f.path), "missing" if f.problem == MISSING else "changed")
             for f in result.findings if f.expected}
    assert found - STRICTER == debsums_silent_set(fake)
    assert ("/usr/bin/alpha", "changed") in found
    assert ("/lib/delta/file", "changed") in found
    assert found >= STRICTER


def test_files_and_conffiles_together_are_what_dpkg_verify_reports(fake: FakeRoot) -> None:
    found = ours(fake) | ours(fake, conffiles=True)
    stricter = {(path, kind, False) for path, kind in STRICTER}
    assert found - stricter == dpkg_verify_set(fake)
    assert stricter <= found


def test_conffile_check_lists_what_debsums_ce_lists(fake: FakeRoot) -> None:
    result = verify_packages(fake.path, conffiles=True)
    changed = {os.fsdecode(f.path) for f in result.findings if f.problem != MISSING}
    listed = {line[len(str(fake.path)):] for line in debsums(fake, "-ce").stdout.splitlines()}
    assert changed == listed == {"/etc/alpha.conf", "/etc/alpha-old.conf"}
    obsolete = [f for f in result.findings if f.obsolete]
    assert [os.fsdecode(f.path) for f in obsolete] == ["/etc/alpha-old.conf"]


def test_a_missing_directory_is_reported_like_dpkg_does(fake: FakeRoot) -> None:
    result = verify_packages(fake.path)
    gone = [f for f in result.findings if f.path == b"/usr/share/beta-empty"]
    assert len(gone) == 1 and gone[0].problem == MISSING and not gone[0].expected


def test_a_package_without_md5sums_is_listed_not_a_crash(fake: FakeRoot) -> None:
    result = verify_packages(fake.path)
    assert [p.name for p in result.without_md5sums] == ["nosums"]
    assert "no md5sums for nosums" in debsums(fake, "-s").stderr


def test_diverted_file_is_reported_where_it_was_diverted_to(fake: FakeRoot) -> None:
    result = verify_packages(fake.path)
    diverted = [f for f in result.findings if f.listed == b"/usr/bin/beta"]
    assert [(f.path, f.problem) for f in diverted] == [(b"/usr/bin/beta.distrib", "changed")]


def test_multiarch_package_files_are_read_from_their_qualified_names(fake: FakeRoot) -> None:
    assert (fake.path / "var/lib/dpkg/info/gamma:amd64.list").exists()
    result = verify_packages(fake.path)
    assert any(f.package.name == "gamma" for f in result.findings)


def test_cli_groups_by_package_and_exits_1(fake: FakeRoot, ws: Workspace) -> None:
    done = ws.run("packages", "--root", str(fake.path))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "alpha 1.1"
    assert "  changed   /usr/bin/alpha" in lines
    assert "  missing   /usr/share/beta/data" in lines
    assert "/etc/alpha.conf" not in done.stdout  # conffiles are checked apart
    assert any("debsums --generate=missing" in line for line in lines)


def test_cli_changed_prints_bare_paths(fake: FakeRoot, ws: Workspace) -> None:
    done = ws.run("packages", "--root", str(fake.path), "--conffiles", "--changed")
    assert done.returncode == 1
    assert sorted(done.stdout.splitlines()) == ["/etc/alpha-old.conf", "/etc/alpha.conf"]


def test_cli_json_schema(fake: FakeRoot, ws: Workspace) -> None:
    done = ws.run("packages", "--root", str(fake.path), "--format", "json")
    document = json.loads(done.stdout)
    assert document["version"] == 1 and document["checked"] == "files"
    finding = next(f for f in document["findings"] if f["path"] == "/usr/bin/beta.distrib")
    assert finding == {"package": "beta", "architecture": "all", "version": "2.0",
                       "path": "/usr/bin/beta.distrib", "listed_as": "/usr/bin/beta",
                       "problem": "changed", "conffile": False, "obsolete": False,
                       "detail": "", "expected_md5": finding["expected_md5"]}
    assert document["without_md5sums"] == [{"package": "nosums", "architecture": "all",
                                            "version": "1.0"}]


def test_clean_tree_prints_nothing_and_exits_0(tmp_path: Path, ws: Workspace) -> None:
    root = FakeRoot(ws.root / "clean")
    root.install(Deb("clean", "1.0", {"/usr/share/clean/a": b"a\n"}))
    done = ws.run("packages", "--root", str(root.path))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_second_run_reuses_md5s_and_still_sees_a_same_size_edit(ws: Workspace) -> None:
    root = FakeRoot(ws.root / "cached")
    root.install(Deb("one", "1.0", {f"/usr/share/one/f{i}": b"%d\n" % i for i in range(20)}))
    cache = ws.state / "root" / "packages.cache"
    # Files written within the racy margin before they are hashed are not cached.
    racy = verify_packages(root.path, cache_path=cache)
    assert racy.hashed == 20
    assert verify_packages(root.path, cache_path=cache).reused == 0
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)
    verify_packages(root.path, cache_path=cache)
    second = verify_packages(root.path, cache_path=cache)
    assert (second.hashed, second.reused, second.findings) == (0, 20, [])
    target = root.path / "usr/share/one/f3"
    before = target.stat()
    target.write_bytes(b"X\n")  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime faked; not ctime
    third = verify_packages(root.path, cache_path=cache)
    assert [(f.path, f.problem) for f in third.findings] == [(b"/usr/share/one/f3", "changed")]
    assert (third.hashed, third.reused) == (1, 19)


def test_a_corrupt_cache_is_ignored_and_rebuilt(ws: Workspace) -> None:
    root = FakeRoot(ws.root / "corrupt")
    root.install(Deb("one", "1.0", {"/usr/share/one/f": b"f\n"}))
    cache = ws.state / "root" / "packages.cache"
    cache.parent.mkdir(mode=0o700)
    cache.write_bytes(b"#systraq-packages-cache\t1\ngarbage\n")
    cache.chmod(0o600)
    result = verify_packages(root.path, cache_path=cache)
    assert result.hashed == 1 and not result.findings
    assert cache.read_bytes().endswith(b"\n") and b"#end\t" in cache.read_bytes()


def test_rolling_reverification_spreads_rehashing_over_the_period() -> None:
    day = 86400
    hits = [(1_000 * day + i, i) for i in range(700)]  # all hashed on one day
    now = 1_000 * day + 1000
    # A run right after the last one rehashes nothing; a day later a seventh; the oldest.
    assert due_for_rehash(hits, now, now - 10, 7) == set()
    daily = due_for_rehash(hits, now + day, now, 7)
    assert daily == set(range(100))
    # Nothing is trusted longer than the period, however often it runs.
    assert due_for_rehash(hits, 1_000 * day + 8 * day, 1_000 * day + 8 * day - 60, 7) \
        == set(range(700))


def test_untrusted_symlink_on_the_way_is_not_followed(ws: Workspace) -> None:
    root = FakeRoot(ws.root / "hostile")
    root.install(Deb("victim", "1.0", {"/srv/victim/file": b"v\n"}))
    # Someone else replaces the package's directory with a link to a copy they made.
    copy = ws.root / "elsewhere"
    copy.mkdir()
    (copy / "file").write_bytes(b"v\n")
    (root.path / "srv/victim/file").unlink()
    (root.path / "srv/victim").rmdir()
    os.symlink(copy, root.path / "srv/victim")
    os.lchown(root.path / "srv/victim", 65534, 65534)
    result = verify_packages(root.path)
    [finding] = [f for f in result.findings if f.path == b"/srv/victim/file"]
    assert finding.problem == UNREADABLE and "not followed" in finding.detail


def test_a_file_replaced_by_a_symlink_is_not_read_through_it(ws: Workspace) -> None:
    root = FakeRoot(ws.root / "linked")
    root.install(Deb("victim", "1.0", {"/usr/bin/victim": b"v\n"}))
    secret = ws.root / "secret"
    secret.write_bytes(b"v\n")
    root.file("/usr/bin/victim").unlink()
    os.symlink(secret, root.file("/usr/bin/victim"))
    result = verify_packages(root.path)
    assert [(f.problem, f.detail) for f in result.findings] == [(NOT_REGULAR, "now a symlink")]


def test_unprivileged_run_reports_what_it_cannot_read_and_keeps_no_cache(
        ws: Workspace) -> None:
    root = FakeRoot(ws.root / "private")
    root.install(Deb("secret", "1.0", {"/usr/share/secret/key": b"k\n",
                                       "/usr/share/secret/open": b"o\n"}))
    root.file("/usr/share/secret/key").chmod(0o600)
    done = ws.run("packages", "--root", str(root.path), user="nobody")
    assert done.returncode == 2, done.stderr
    assert "  unchecked /usr/share/secret/key  (Permission denied)" in done.stdout
    assert "/usr/share/secret/open" not in done.stdout
    assert not (ws.state / "root").exists()


def test_architecture_is_shown_only_for_a_name_installed_twice(ws: Workspace) -> None:
    root = FakeRoot(ws.root / "multi")
    root.dpkg("--add-architecture", "i386")
    files = {"/usr/share/doc/twin/a": b"a\n", "/usr/share/doc/twin/b": b"b\n"}
    root.install(Deb("twin", "1.0", files, arch="amd64", multiarch="same"),
                 Deb("twin", "1.0", files, arch="i386", multiarch="same"),
                 Deb("single", "1.0", {"/usr/share/single/a": b"a\n",
                                       "/usr/share/single/b": b"b\n"}, arch="amd64"))
    for path in ("/usr/share/single/a", "/usr/share/single/b"):
        root.file(path).unlink()
    root.file("/usr/share/doc/twin/a").unlink()
    lines = ws.run("packages", "--root", str(root.path)).stdout.splitlines()
    assert "single 1.0" in lines
    assert "twin:amd64 1.0" in lines and "twin:i386 1.0" in lines
