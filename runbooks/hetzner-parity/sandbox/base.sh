#!/usr/bin/env bash
# Builds the sandbox's base root file system once and caches it as a tar:
# Debian minbase (debootstrap) with the packages the stand-in images run:
# Debian's PostgreSQL server, Debian's redis-server, python3 and psycopg2.
# Every sandbox engine imports this tar (`docker import`); nothing is pulled.
#
# usage: base.sh   -> prints the path of the cached tar
# SANDBOX_CACHE: the cache folder (default state/sandbox-base under the repo).
# The tar's name carries a digest of this script, so changing the package
# list builds a new one. Concurrent callers wait on a lock; one builds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${SANDBOX_CACHE:-$repo/state/sandbox-base}
packages=postgresql,redis-server,python3,python3-psycopg2
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
digest=$(cksum < "$0" | cut -d' ' -f1)
out="$cache/base-$digest.tar"
[ -s "$out" ] && { echo "$out"; exit 0; }

[ "$(id -u)" = 0 ] || { echo "sandbox: building the base image needs root (debootstrap); or put a base tar at $out" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "sandbox: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

exec 9>"$cache/lock"
flock 9
[ -s "$out" ] && { echo "$out"; exit 0; }

# The suite and mirror this machine's apt uses (debootstrap's default otherwise).
. /etc/os-release
suite=${SANDBOX_SUITE:-${VERSION_CODENAME:-bookworm}}
mirror=${SANDBOX_MIRROR:-$(grep -hoE '^(URIs: *|deb +)https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1 | sed -E 's/^(URIs: *|deb +)//; s/ *$//' || true)}
mirror=${mirror:-http://deb.debian.org/debian}

tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "sandbox: building the base image ($suite from $mirror: $packages), once" >&2
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1; then
  tail -20 "$tmp/log" >&2
  echo "sandbox: debootstrap failed (log above)" >&2
  exit 1
fi
# Debian's postgresql package made a cluster and started nothing; the
# stand-in makes its own cluster where the compose volume is.
rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"* \
  "$tmp/root/usr/share/doc" "$tmp/root/usr/share/man" "$tmp/root/var/lib/postgresql/"* \
  "$tmp/root/usr/share/locale" "$tmp/root/usr/share/i18n"
# PostgreSQL's JIT (LLVM, z3: 130 MB) is loaded only with jit=on; the
# stand-in runs with jit=off, and the image imports twice as fast without it.
rm -f "$tmp/root/usr/lib/postgresql/"*/lib/llvmjit* "$tmp/root/usr/lib/x86_64-linux-gnu/"libLLVM* "$tmp/root/usr/lib/x86_64-linux-gnu/"libz3*
rm -rf "$tmp/root/usr/lib/postgresql/"*/lib/bitcode
ln -sf python3 "$tmp/root/usr/bin/python"
tar --numeric-owner -C "$tmp/root" -cf "$tmp/base.tar" .
mv "$tmp/base.tar" "$out"
echo "sandbox: base image built in $(( $(date +%s) - start ))s: $out ($(du -h "$out" | cut -f1))" >&2
echo "$out"
