"""A throwaway Debian 12 root for package tests: an overlay on a cached debootstrap.

The cache (``/var/cache/systraq-test``, or ``$SYSTRAQ_TEST_CACHE``) is built once by
``tests/package/make-chroot.sh`` and never written afterwards: every test gets its own
writable layer on top of it. Each command runs in new mount, PID and UTS namespaces
(``unshare``): the overlay and /proc are mounted inside them and vanish with the command,
and so does any process it left behind (a daemon a maintainer script started), so
nothing of a test outlives it on the host, which never sees the package or the accounts
the test creates.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SYSTRAQ_TEST_CACHE", "/var/cache/systraq-test"))
BASE = CACHE / "bookworm"
DEBS = CACHE / "debs"
HOSTNAME = "web1"
FQDN = "web1.example.org"

# Runs inside the new namespaces: mount the overlay and /proc, name the host, enter.
_ENTER = """
set -e
base=$1 upper=$2 work=$3 merged=$4 host=$5 user=$6 script=$7
mount -t overlay overlay -o "lowerdir=$base,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$merged/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$merged/dev/pts"
hostname "$host"
if [ -n "$user" ]; then
  exec chroot "$merged" runuser -u "$user" -- /bin/sh -c "$script"
fi
exec chroot "$merged" /bin/sh -c "$script"
"""

# What cron gives a job: a clean environment, the cron file's variables, the home dir.
_CRON_ENV = "env -i PATH={path} HOME={home} LOGNAME={user} SHELL=/bin/sh"


def ensure_base() -> None:
    """Build the cached chroot if it is not there yet (debootstrap: about a minute)."""
    subprocess.run([str(HERE / "package" / "make-chroot.sh"), str(CACHE)], check=True,
                   timeout=1800)


def usable() -> str | None:
    """Why package tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    for tool in ("unshare", "debootstrap", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"needs {tool} (.ci/run installs it)"
    return None


@dataclass
class Step:
    command: str
    user: str
    returncode: int
    output: str


@dataclass
class Chroot:
    """One test's Debian 12 root: the cached base plus a writable layer of its own."""

    name: str
    layer: Path = field(init=False)
    transcript: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layer = Path(tempfile.mkdtemp(prefix=f"systraq-chroot-{self.name}-", dir="/var/tmp"))
        for part in ("upper", "work", "merged"):
            (self.layer / part).mkdir()
        self.put("etc/hostname", f"{HOSTNAME}\n")
        self.put("etc/mailname", f"{FQDN}\n")
        self.put("etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {FQDN} {HOSTNAME}\n")

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Place a file in the writable layer before (or between) commands."""
        target = self.layer / "upper" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def run(self, script: str, user: str = "", check: bool = True, timeout: float = 600,
            quiet: bool = False, shown: str = "") -> Step:
        """Run a shell script in the root (as ``user``); output is stdout and stderr.
        ``shown`` is what the transcript says was run, when not the script itself."""
        done = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--uts", "--propagation", "private",
             "--", "/bin/sh", "-c", _ENTER, "enter", str(BASE), str(self.layer / "upper"),
             str(self.layer / "work"), str(self.layer / "merged"), HOSTNAME, user, script],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                 "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"})
        step = Step(shown or script, user or "root", done.returncode, done.stdout)
        if not quiet:
            self.transcript.append(step)
        if check and done.returncode != 0:
            raise AssertionError(f"exit {done.returncode} from {script!r} as {step.user}:\n"
                                 f"{done.stdout}")
        return step

    def read(self, path: str) -> str:
        return self.run(f"cat {shlex.quote(path)}", quiet=True).output

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {shlex.quote(path)} || test -L {shlex.quote(path)}",
                        check=False, quiet=True).returncode == 0

    def cron_jobs(self, cron_file: str = "/etc/cron.d/systraq") -> list[tuple[str, str, str]]:
        """(schedule, user, command) of each job, and the file's PATH."""
        jobs = []
        for line in self.read(cron_file).splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if "=" in line.split()[0]:
                continue
            if line.startswith("@"):
                schedule, user, command = line.split(None, 2)
            else:
                fields = line.split(None, 6)
                schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
            jobs.append((schedule, user, command))
        return jobs

    def run_cron_job(self, user: str, command: str, path: str, check: bool = False) -> Step:
        """Run one job as cron would: as its user, in its home, with cron's environment.
        Its output is what cron would mail."""
        home = "/root" if user == "root" else self.run(
            f"getent passwd {shlex.quote(user)} | cut -d: -f6", quiet=True).output.strip()
        env = _CRON_ENV.format(path=path, home=home, user=user)
        script = f"cd {shlex.quote(home)} 2>/dev/null || cd /; exec {env} /bin/sh -c " \
                 f"{shlex.quote(command)}"
        return self.run(script, user="" if user == "root" else user, check=check,
                        shown=f"{command}    [cron, as {user}]")

    def files(self, *skip: str) -> set[str]:
        """Every path in the root (directories included), but under ``skip``."""
        prune = " -o ".join(f"-path {shlex.quote(p)}" for p in ("/proc", *skip))
        listed = self.run(f"find / -xdev \\( {prune} \\) -prune -o -print", quiet=True)
        return set(listed.output.splitlines())

    def write_transcript(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        lines = []
        for step in self.transcript:
            prompt = "#" if step.user == "root" else f"({step.user})$"
            lines.append(f"{prompt} {step.command}")
            if step.output:
                lines.append(step.output.rstrip("\n"))
            if step.returncode:
                lines.append(f"[exit {step.returncode}]")
        (directory / f"{self.name}.txt").write_text("\n".join(lines) + "\n")

    def remove(self) -> None:
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.layer)], check=False)
