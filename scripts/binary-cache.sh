#!/usr/bin/env bash
# Shared by the action's install step and the Buildkite plugin (sourced): a
# built or downloaded lmcache-e2e kept per source tree (or release) and
# platform in a cache directory, and reused only while its sha256 matches
# the one recorded when it was stored.
# shellcheck disable=SC2034 # used by the scripts that source this file

# What a build reads: the binary embeds the presets and templates.
cache_inputs=(Cargo.toml Cargo.lock src templates presets)

# The cache key of the source tree at $1: its build inputs hashed, and the
# platform. Costs milliseconds; needs no Rust toolchain.
source_key() {
  local tree
  tree=$(cd "$1" && find "${cache_inputs[@]}" -type f -print0 2>/dev/null |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  printf 'source-%s-%s-%s' "$tree" "$(uname -s | tr '[:upper:]' '[:lower:]')" "$(uname -m)"
}

# The cache key of a release.
release_key() {
  printf 'release-%s-%s-%s' "$1" "$(uname -s | tr '[:upper:]' '[:lower:]')" "$(uname -m)"
}

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

# Prints the cached binary for key $2 in cache directory $1 when there is
# one whose sha256 is the one stored with it; a mismatch (a corrupted or
# replaced file) is removed and reported on stderr.
cached_binary() {
  local dir="$1/$2"
  [ -x "$dir/lmcache-e2e" ] && [ -f "$dir/lmcache-e2e.sha256" ] || return 1
  if [ "$(sha256_of "$dir/lmcache-e2e")" != "$(cat "$dir/lmcache-e2e.sha256")" ]; then
    echo "lmcache-e2e: the cached binary in $dir does not match its recorded sha256; discarding it" >&2
    rm -rf "$dir"
    return 1
  fi
  printf '%s' "$dir/lmcache-e2e"
}

# Stores binary $3 under key $2 in cache directory $1 with its sha256
# (written last, through a rename, so a half-stored entry is never used).
store_binary() {
  local dir="$1/$2"
  mkdir -p "$dir"
  install -m 0755 "$3" "$dir/lmcache-e2e.tmp"
  mv "$dir/lmcache-e2e.tmp" "$dir/lmcache-e2e"
  sha256_of "$dir/lmcache-e2e" >"$dir/lmcache-e2e.sha256.tmp"
  mv "$dir/lmcache-e2e.sha256.tmp" "$dir/lmcache-e2e.sha256"
}

# Seconds since $1 (from `date +%s.%N`), to one decimal.
seconds_since() {
  awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
