"""Real .deb packages built with dpkg-deb and installed with dpkg into a scratch root."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Deb:
    """A package to build: files by absolute path (bytes content, or ('link', target))."""

    name: str
    version: str
    files: dict[str, bytes | tuple[str, str]] = field(default_factory=dict)
    conffiles: tuple[str, ...] = ()
    arch: str = "all"
    multiarch: str = ""
    md5sums: bool = True
    dirs: tuple[str, ...] = ()

    def build(self, where: Path) -> Path:
        tree = where / f"build-{self.name}-{self.version}-{self.arch}"
        (tree / "DEBIAN").mkdir(parents=True)
        for path, content in self.files.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, tuple):
                os.symlink(content[1], target)
            else:
                target.write_bytes(content)
                target.chmod(0o755 if "/bin/" in path else 0o644)
        for directory in self.dirs:
            (tree / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        control = (f"Package: {self.name}\nVersion: {self.version}\nArchitecture: {self.arch}\n"
                   "Maintainer: Test <test@example.org>\nDescription: test package\n")
        if self.multiarch:
            control += f"Multi-Arch: {self.multiarch}\n"
        (tree / "DEBIAN" / "control").write_text(control)
        if self.conffiles:
            (tree / "DEBIAN" / "conffiles").write_text("".join(f"{c}\n" for c in self.conffiles))
        if self.md5sums:
            lines = [f"{hashlib.md5(c).hexdigest()}  {p.lstrip('/')}\n"
                     for p, c in sorted(self.files.items())
                     if isinstance(c, bytes) and p not in self.conffiles]
            (tree / "DEBIAN" / "md5sums").write_text("".join(lines))
        out = where / f"{self.name}_{self.version}_{self.arch}.deb"
        subprocess.run(["dpkg-deb", "--build", "--root-owner-group", "-Zgzip", str(tree),
                        str(out)], check=True, capture_output=True)
        return out


class FakeRoot:
    """A directory with its own dpkg database; dpkg runs on it with --root, logging inside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for directory in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log/apt"):
            (path / directory).mkdir(parents=True, exist_ok=True)
        (path / "var/lib/dpkg/status").touch()
        self.debs = path.parent / f"{path.name}-debs"
        self.debs.mkdir(exist_ok=True)

    @property
    def log(self) -> Path:
        return self.path / "var/log/dpkg.log"

    def dpkg(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["dpkg", f"--root={self.path}", f"--log={self.log}",
                               "--force-not-root", "--force-script-chrootless",
                               "--force-confnew", *args],
                              check=True, capture_output=True, text=True)

    def install(self, *debs: Deb) -> None:
        self.dpkg("-i", *(str(d.build(self.debs)) for d in debs))

    def remove(self, name: str, purge: bool = False) -> None:
        self.dpkg("--purge" if purge else "--remove", name)

    def divert(self, path: str, to: str, package: str | None = None) -> None:
        who = ["--package", package] if package else ["--local"]
        subprocess.run(["dpkg-divert", f"--root={self.path}", *who, "--rename", "--divert",
                        to, "--add", path], check=True, capture_output=True)

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")
