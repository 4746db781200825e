#!/usr/bin/env bash
# The action's install step: puts lmcache-e2e on the job's PATH, from the
# binary cache when it holds one for this action's source (or release) and
# platform whose sha256 still matches; else from a release verified against
# the sha256 pinned in dist/checksums.txt, or built from the action's own
# source (LMCACHE_E2E_VERSION=source), then stored in the cache. Says where
# the binary came from and how long that took.
#
# `install.sh key` writes the cache's key and directory as step outputs, for
# the actions/cache steps around this one.
set -euo pipefail

action_path=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is set by GitHub Actions}
# shellcheck source=scripts/binary-cache.sh
. "$action_path/scripts/binary-cache.sh"
version=${LMCACHE_E2E_VERSION:-auto}
cache=${LMCACHE_E2E_CACHE_DIR:-$HOME/.cache/lmcache-e2e}

# `auto`: the release this action's own commit is (its Cargo.toml version)
# when its dist/checksums.txt pins that release's asset for this machine,
# so `uses: LMCache/e2e-action@v1` installs the binary of that tag; else
# the action's source, built.
if [ "$version" = auto ]; then
  own=v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)
  if grep -q "lmcache-e2e-$own-$(uname -m)-" "$action_path/dist/checksums.txt" 2>/dev/null; then
    version=$own
  else
    version=source
  fi
fi

key() {
  if [ "$version" = source ]; then
    source_key "$action_path"
  else
    release_key "$version"
  fi
}

if [ "${1:-}" = key ]; then
  {
    echo "key=lmcache-e2e-$(key)"
    echo "dir=$cache"
  } >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is set by GitHub Actions}"
  exit 0
fi

started=$(date +%s.%N)
bin_dir=${RUNNER_TEMP:-/tmp}/lmcache-e2e-bin
mkdir -p "$bin_dir"
key=$(key)
if found=$(cached_binary "$cache" "$key"); then
  install -m 0755 "$found" "$bin_dir/lmcache-e2e"
  from="the cache ($cache/$key, sha256 checked)"
elif [ "$version" = source ]; then
  command -v cargo >/dev/null 2>&1 || {
    echo "::error::version: source needs a Rust toolchain (cargo) on the runner; or pick a released version" >&2
    exit 3
  }
  echo "::group::building lmcache-e2e from source (release profile)"
  cargo build --release --locked --manifest-path "$action_path/Cargo.toml"
  echo "::endgroup::"
  install -m 0755 "${CARGO_TARGET_DIR:-$action_path/target}/release/lmcache-e2e" "$bin_dir/lmcache-e2e"
  store_binary "$cache" "$key" "$bin_dir/lmcache-e2e"
  from="source, built with cargo"
else
  INSTALL_DIR=$bin_dir LMCACHE_E2E_VERSION=$version "$action_path/scripts/install.sh"
  store_binary "$cache" "$key" "$bin_dir/lmcache-e2e"
  from="release $version (sha256 verified)"
fi
echo "$bin_dir" >>"${GITHUB_PATH:?GITHUB_PATH is set by GitHub Actions}"
echo "$("$bin_dir/lmcache-e2e" --version) from $from in $(seconds_since "$started") s"
