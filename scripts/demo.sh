#!/usr/bin/env bash
# make demo: run systraq's hourly job on the shipped example configuration against this
# machine, with state under ./demo (not /var/lib), then make a visible change in a scratch
# file the demo owns and show what systraq reports about it.
set -euo pipefail
cd "$(dirname "$0")/.."
systraq=${SYSTRAQ:-.venv/bin/systraq}
rm -rf demo && mkdir -p demo/config demo/state
cp etc/* demo/config/ 2>/dev/null || true
# The scratch tree lives in /tmp so that the pub scan, which drops to an unprivileged user
# when root runs it, can read it wherever this checkout is.
scratch=$(mktemp -d /tmp/systraq-demo.XXXXXX)
chmod 755 "$scratch"
trap 'rm -rf "$scratch"' EXIT
printf 'PermitRootLogin no\n' > "$scratch/sshd_config"
printf '%s\n' "$scratch" >> demo/config/snapshot_pub.list
run() { echo "\$ systraq $*"; "$systraq" --config-dir demo/config --state-dir demo/state "$@"; }

echo "== 1. the hourly snapshot of world-readable files (example lists + $scratch)"
run snapshot --mode pub
entries=$(grep -vc '^#' demo/state/pub/snapshot_pub.stat)
echo "recorded $entries entries in demo/state/pub/snapshot_pub.stat, for example:"
grep -v '^#' demo/state/pub/snapshot_pub.stat | grep -F -e "/etc/passwd	" -e "$scratch" | cut -f1-8,14,15 | head -n 4
echo
if "$systraq" diff --help >/dev/null 2>&1; then
  run diff --mode pub >/dev/null || true
  echo "== 2. a change: chmod 666 and an edit of $scratch/sshd_config"
  chmod 666 "$scratch/sshd_config"
  printf 'PermitRootLogin yes\n' > "$scratch/sshd_config"
  run snapshot --mode pub
  run diff --mode pub || test $? -eq 1
  echo
  echo "== 3. the next run has nothing new to say (exit 0, no output)"
  run diff --mode pub && echo "(nothing printed, exit status $?)"
else
  echo "== 2. a change: chmod 666 and an edit of $scratch/sshd_config"
  chmod 666 "$scratch/sshd_config"
  printf 'PermitRootLogin yes\n' > "$scratch/sshd_config"
  run snapshot --mode pub
  grep -F "$scratch/sshd_config" demo/state/pub/snapshot_pub.stat | cut -f1-8,14,15
fi
