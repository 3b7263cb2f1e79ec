#!/bin/sh
# ours.sh FILE FIRSTLINE: used by make install and uninstall. Exits 0 when FILE does not
# exist, or is one systraq's make install put there (it starts with FIRSTLINE and no
# package owns it); otherwise says whose it is on stderr and exits 1, so that make install
# never overwrites, and make uninstall never deletes, another package's file (such as
# Debian's systraq's /etc/cron.d/systraq).
set -u
file=$1
first=$2
[ -e "$file" ] || [ -L "$file" ] || exit 0
if command -v dpkg-query >/dev/null 2>&1 && owner=$(dpkg-query -S "$file" 2>/dev/null); then
  echo "$file belongs to the package ${owner%%:*}" >&2
  exit 1
fi
if [ -L "$file" ] || [ ! -f "$file" ] || [ "$(head -n 1 "$file")" != "$first" ]; then
  echo "$file is not systraq's (its first line is not: $first)" >&2
  exit 1
fi
exit 0
