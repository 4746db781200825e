#!/usr/bin/env bash
# Measures what the README's first command costs: a cold build (a fresh
# target directory; crates already downloaded) per profile, the binary's
# size, then `ci --preset sim` run with it. Prints a Markdown table.
#   scripts/build-times.sh [PROFILE...]   (default: release thin-lto dist)
# `thin-lto` is the release profile with `lto = "thin"`, set through Cargo's
# environment; `release` and `dist` are Cargo.toml's.
set -euo pipefail
cd "$(dirname "$0")/.."

profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(release thin-lto dist)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| profile | cold build | binary | ci --preset sim |"
echo "|---|--:|--:|--:|"
for p in "${profiles[@]}"; do
  env=()
  profile=$p
  if [ "$p" = thin-lto ]; then
    env=(CARGO_PROFILE_RELEASE_LTO=thin)
    profile=release
  fi
  target="$work/$p"
  start=$(date +%s.%N)
  env "${env[@]}" CARGO_TARGET_DIR="$target" cargo build --locked --profile "$profile" --quiet
  built=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  bin="$target/$profile/lmcache-e2e"
  size=$(stat -c %s "$bin")
  start=$(date +%s.%N)
  "$bin" ci --preset sim --quiet --results-dir "$work/results-$p" >/dev/null 2>&1
  ran=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '| %s | %d min %02d s | %.1f MiB | %s s |\n' "$p" $((built / 60)) $((built % 60)) \
    "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$ran"
done
