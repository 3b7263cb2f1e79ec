"""make install and make uninstall, staged under a scratch DESTDIR or PREFIX.

Nothing is installed on the machine itself: every path make writes is under the test's
own directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, UNPRIVILEGED

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="systraq-install-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def make(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def staged(destdir: Path) -> list[str]:
    return [f"DESTDIR={destdir}", "PREFIX=/usr/local", "SYSCONFDIR=/etc"]


def test_install_needs_no_venv_no_network_and_no_test_tools() -> None:
    recipe = make("-n", "install", "DESTDIR=/nonexistent").stdout
    for word in ("pip", ".venv", "pytest", "hypothesis", "aiosmtpd", "ruff", "apt-get install"):
        assert word not in recipe.replace("apt-get install python3-click", ""), word


def test_uninstall_leaves_no_file_install_created(scratch: Path) -> None:
    destdir = scratch / "dest"
    destdir.mkdir()
    before = files_under(destdir)
    make("install", *staged(destdir))
    installed = files_under(destdir)
    assert {"usr/local/bin/systraq", "etc/cron.d/systraq", "etc/apt/apt.conf.d/99systraq",
            "etc/systraq/systraq.conf", "usr/local/share/man/man8/systraq.8",
            "usr/local/share/systraq/examples/snapshot_pub.list",
            "usr/local/lib/systemd/system/systraq-diff.timer",
            "usr/local/lib/systraq/systraq/cli.py"} <= installed
    make("uninstall", *staged(destdir))
    assert files_under(destdir) == before
    left = [p for p in destdir.rglob("*") if "systraq" in p.name]
    assert left == [], left


def test_the_launcher_runs_the_system_python_for_every_account(scratch: Path) -> None:
    # A real prefix (no DESTDIR), inside the scratch directory, so that the launcher's
    # paths are those it runs with.
    prefix = scratch / "prefix"
    make("install", f"PREFIX={prefix}", f"SYSCONFDIR={scratch / 'etc'}")
    launcher = prefix / "bin" / "systraq"
    assert launcher.read_text().splitlines()[0] == f"#!{SYSTEM_PYTHON} -IB"
    for user in ([], UNPRIVILEGED):
        done = subprocess.run([*user, str(launcher), "--version"], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert (done.returncode, done.stdout) == (0, "systraq, version "
                                                  f"{version()}\n"), done.stderr
    # Installed compiled, so the program never writes beside itself when it runs.
    assert list((prefix / "lib" / "systraq" / "systraq").glob("__pycache__/cli.*.pyc"))
    make("uninstall", f"PREFIX={prefix}", f"SYSCONFDIR={scratch / 'etc'}")
    assert files_under(prefix) == set()


def test_install_never_overwrites_and_uninstall_never_deletes_debians_cron_file(
        scratch: Path) -> None:
    destdir = scratch / "dest"
    cron = destdir / "etc" / "cron.d" / "systraq"
    cron.parent.mkdir(parents=True)
    debian = "# /etc/cron.d/systraq - cronjob for systraq jobs\n"
    cron.write_text(debian)
    refused = make("install", *staged(destdir), check=False)
    assert refused.returncode != 0
    assert "is not systraq's" in refused.stderr and "make deb" in refused.stderr
    assert cron.read_text() == debian
    assert not (destdir / "usr").exists(), "nothing installed"
    make("uninstall", *staged(destdir))
    assert cron.read_text() == debian


def test_a_changed_systraq_conf_survives_uninstall(scratch: Path) -> None:
    destdir = scratch / "dest"
    make("install", *staged(destdir))
    conf = destdir / "etc" / "systraq" / "systraq.conf"
    conf.write_text(conf.read_text() + '\n[mail]\nto = ["ops@example.org"]\n')
    said = make("uninstall", *staged(destdir)).stdout
    assert conf.exists() and "kept" in said


def version() -> str:
    namespace: dict[str, str] = {}
    exec((REPO / "systraq" / "__init__.py").read_text(), namespace)
    return namespace["__version__"]


def _modules(top: Path) -> set[str]:
    return {".".join(p.relative_to(top).with_suffix("").parts)
            for p in (top / "systraq").rglob("*.py")}


def test_every_module_ships_in_the_wheel_and_imports_from_it(scratch: Path) -> None:
    """pyproject must find the subpackages: a wheel of the top package alone would ship an
    installation that fails on its first import."""
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(scratch), str(REPO)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = scratch.glob("systraq-*.whl")
    unpacked = scratch / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    assert _modules(unpacked) == _modules(REPO)
    imports = "; ".join(f"import {name}" for name in sorted(_modules(unpacked)))
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(unpacked)!r}); {imports}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_make_install_ships_every_module(scratch: Path) -> None:
    make("install-files", *staged(scratch))
    assert _modules(scratch / "usr/local/lib/systraq") == _modules(REPO)
