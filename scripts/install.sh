#!/bin/sh
# Installs a released lmcache-e2e binary for this platform, verified against
# its sha256.
#
#   scripts/install.sh [VERSION]
#
# Environment:
#   LMCACHE_E2E_VERSION    the release tag, e.g. v0.1.0 (or the first argument)
#   LMCACHE_E2E_BASE_URL   where releases live
#                          (default https://github.com/LMCache/e2e-action/releases/download)
#   LMCACHE_E2E_SHA256     the expected sha256 of the asset; else the one pinned
#                          for it in dist/checksums.txt beside this script (the
#                          release workflow pins every asset there, in the
#                          release's own commit); an asset pinned nowhere is
#                          refused
#   LMCACHE_E2E_ALLOW_UNPINNED=1  trust the release's own .sha256 file instead
#                          (with a warning): it proves the download, not the
#                          release
#   LMCACHE_E2E_CHECKSUMS  a checksums file to use instead of dist/checksums.txt
#   INSTALL_DIR            where the binary goes (default $HOME/.local/bin)
set -eu

die() {
  echo "install.sh: $*" >&2
  exit 1
}

version=${1:-${LMCACHE_E2E_VERSION:-}}
[ -n "$version" ] || die "no version given: pass a release tag (e.g. v0.1.0) or set LMCACHE_E2E_VERSION"
case $version in
  v*) ;;
  *) version="v$version" ;;
esac
base_url=${LMCACHE_E2E_BASE_URL:-https://github.com/LMCache/e2e-action/releases/download}
install_dir=${INSTALL_DIR:-$HOME/.local/bin}
here=$(cd "$(dirname "$0")" && pwd)
checksums=${LMCACHE_E2E_CHECKSUMS:-$here/../dist/checksums.txt}

os=$(uname -s)
arch=$(uname -m)
case "$os/$arch" in
  Linux/x86_64 | Linux/amd64) target=x86_64-unknown-linux-gnu ;;
  Linux/aarch64 | Linux/arm64) target=aarch64-unknown-linux-gnu ;;
  *) die "unsupported platform $os/$arch: releases exist for Linux on x86_64 and aarch64; build from source with 'cargo install --locked --path .'" ;;
esac

asset="lmcache-e2e-$version-$target.tar.gz"
url="$base_url/$version/$asset"

command -v curl >/dev/null 2>&1 || die "curl is needed (Debian: apt-get install curl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed (Debian: apt-get install coreutils)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() {
  # $1 url, $2 destination
  code=$(curl -sSL --retry 3 --retry-delay 1 -o "$2" -w '%{http_code}' "$1") || die "failed to download $1 (network error)"
  [ "$code" = 200 ] || die "failed to download $1 (HTTP $code): is $version released for $target?"
}

expected=${LMCACHE_E2E_SHA256:-}
if [ -z "$expected" ] && [ -f "$checksums" ]; then
  expected=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$checksums")
fi
fetch "$url" "$tmp/$asset"
if [ -z "$expected" ]; then
  [ "${LMCACHE_E2E_ALLOW_UNPINNED:-}" = 1 ] || die "no pinned sha256 for $asset in $checksums: not installing; use an action or plugin tag whose dist/checksums.txt pins it, set LMCACHE_E2E_SHA256 to the sha256 you reviewed, or LMCACHE_E2E_ALLOW_UNPINNED=1 to trust the release's own .sha256"
  echo "install.sh: warning: no pinned sha256 for $asset; using the release's own $asset.sha256 (LMCACHE_E2E_ALLOW_UNPINNED=1)" >&2
  fetch "$url.sha256" "$tmp/$asset.sha256"
  expected=$(awk '{ print $1; exit }' "$tmp/$asset.sha256")
fi
actual=$(sha256sum "$tmp/$asset" | awk '{ print $1 }')
[ "$actual" = "$expected" ] || die "checksum mismatch for $asset: expected $expected, got $actual; not installing"

tar -xzf "$tmp/$asset" -C "$tmp" || die "failed to unpack $asset"
bin="$tmp/lmcache-e2e-$version-$target/lmcache-e2e"
[ -f "$bin" ] || die "$asset does not contain lmcache-e2e-$version-$target/lmcache-e2e"
mkdir -p "$install_dir"
install -m 0755 "$bin" "$install_dir/lmcache-e2e"
echo "install.sh: installed lmcache-e2e $version ($target) to $install_dir/lmcache-e2e"
