#!/usr/bin/env bash
# The release workflow's steps that need no GitHub, so a test can run them:
#
#   scripts/release.sh pin VERSION DIR   pins the sha256 of every release
#                                        asset of VERSION in DIR in
#                                        dist/checksums.txt (replacing an
#                                        older pin of the same asset)
#   scripts/release.sh tag VERSION       commits that file, tags the commit
#                                        VERSION and moves the major tag
#                                        (v1 for v1.2.3) to it
#
# The assets are built from the commit before the tagged one, which differs
# only in dist/checksums.txt (no build input), so the tag holds the sha256
# of its own binaries and the action and plugin at that tag install only
# those.
set -euo pipefail

die() {
  echo "release.sh: $*" >&2
  exit 1
}

root=$(cd "$(dirname "$0")/.." && pwd)
checksums=$root/dist/checksums.txt

check_version() {
  [[ $1 =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "version $1 is not vMAJOR.MINOR.PATCH"
  local cargo
  cargo=v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
  [ "$cargo" = "$1" ] || die "Cargo.toml says $cargo, not $1: bump it first"
}

pin() {
  local version=$1 dir=$2 found=0 asset name sha
  check_version "$version"
  for asset in "$dir"/lmcache-e2e-"$version"-*.tar.gz; do
    [ -f "$asset" ] || continue
    name=$(basename "$asset")
    sha=$(sha256sum "$asset" | cut -d' ' -f1)
    # The build job's own .sha256 must agree with what arrived here.
    if [ -f "$asset.sha256" ] && [ "$(cut -d' ' -f1 <"$asset.sha256")" != "$sha" ]; then
      die "$name does not match its $name.sha256: the artifact changed between jobs"
    fi
    grep -v "  $name\$" "$checksums" >"$checksums.tmp" || true
    printf '%s  %s\n' "$sha" "$name" >>"$checksums.tmp"
    mv "$checksums.tmp" "$checksums"
    echo "pinned $sha  $name"
    found=$((found + 1))
  done
  [ "$found" -gt 0 ] || die "no lmcache-e2e-$version-*.tar.gz in $dir"
}

tag() {
  local version=$1 major
  check_version "$version"
  major=${version%%.*}
  grep -q "lmcache-e2e-$version-" "$checksums" || die "dist/checksums.txt pins nothing of $version: run pin first"
  git -C "$root" add dist/checksums.txt
  git -C "$root" commit -q -m "Release $version: pin the sha256 of its binaries"
  git -C "$root" tag -a "$version" -m "lmcache-e2e $version"
  git -C "$root" tag -f -a "$major" -m "lmcache-e2e $version (latest $major.x)" >/dev/null
  echo "tagged $version and moved $major to $(git -C "$root" rev-parse --short HEAD)"
}

case ${1:-} in
  pin) [ $# -eq 3 ] || die "usage: release.sh pin VERSION DIR"; pin "$2" "$3" ;;
  tag) [ $# -eq 2 ] || die "usage: release.sh tag VERSION"; tag "$2" ;;
  *) die "usage: release.sh pin VERSION DIR | tag VERSION" ;;
esac
