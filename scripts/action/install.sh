#!/usr/bin/env bash
# The action's install step: puts lmcache-e2e on the job's PATH, from a
# release verified against the sha256 pinned in dist/checksums.txt, or built
# from the action's own source (LMCACHE_E2E_VERSION=source).
set -euo pipefail

action_path=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is set by GitHub Actions}
version=${LMCACHE_E2E_VERSION:-source}
bin_dir=${RUNNER_TEMP:-/tmp}/lmcache-e2e-bin
mkdir -p "$bin_dir"

if [ "$version" = source ]; then
  command -v cargo >/dev/null 2>&1 || {
    echo "::error::version: source needs a Rust toolchain (cargo) on the runner; or pick a released version" >&2
    exit 3
  }
  echo "::group::building lmcache-e2e from source"
  cargo build --release --locked --manifest-path "$action_path/Cargo.toml"
  echo "::endgroup::"
  install -m 0755 "$action_path/target/release/lmcache-e2e" "$bin_dir/lmcache-e2e"
else
  INSTALL_DIR=$bin_dir LMCACHE_E2E_VERSION=$version "$action_path/scripts/install.sh"
fi
echo "$bin_dir" >>"${GITHUB_PATH:?GITHUB_PATH is set by GitHub Actions}"
"$bin_dir/lmcache-e2e" --version
