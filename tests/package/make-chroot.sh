#!/bin/sh
# Build the Debian 12 chroot the package tests install into, once, under CACHE (default
# /var/cache/systraq-test): a debootstrap minbase with what Debian's systraq and filetraq
# need (so that both, and systraq's package, install offline), and those two packages'
# .debs. Reused by every later run; delete CACHE to rebuild it.
set -eu
cache=${1:-/var/cache/systraq-test}
# The Debian mirror this machine's apt uses (its first non-security Debian source).
mirror=${SYSTRAQ_TEST_MIRROR:-$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+/debian( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n 1)}
[ -n "$mirror" ] || { echo "no Debian mirror in the apt sources: set SYSTRAQ_TEST_MIRROR" >&2; exit 1; }
root=$cache/bookworm
if [ -e "$root/.complete" ]; then
  exit 0
fi
mkdir -p "$cache"
rm -rf "$root" "$cache/debs"
# What Debian's systraq 20201231-1 depends on (an MTA: exim4, as default-mta), and what
# systraq's package depends on.
include=python3,python3-click,python3-xxhash,python3-rich,adduser,exim4-daemon-light,bsd-mailx,debsums,make,procps,net-tools,passwd,diffutils
debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 || {
  tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
mkdir -p "$cache/debs"
(cd "$cache/debs" && apt-get download systraq filetraq > /dev/null 2>&1) || {
  echo "make-chroot: cannot download Debian's systraq and filetraq packages" >&2; exit 1; }
# Nothing in the chroot may start a daemon: maintainer scripts ask policy-rc.d first.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
rm -f "$root"/var/cache/apt/archives/*.deb
touch "$root/.complete"
